/*
 * test_prompt.c - unit tests for common/prompt.c, the prompt template
 * set and its strict renderer.  The real prompts/ directory (PROMPTS_DIR,
 * default "prompts") is loaded and both call types rendered: section
 * order, the leading User ID / Phone lines the LLM service parses (with
 * its two regular expressions, in POSIX form), first messages.  Broken
 * copies of the directory in a temp dir must fail with every problem
 * listed.  Hostile values are copied verbatim and never expanded.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>

#include "prompt.h"

#define USER_ID		"3f2a9c4e-1b7d-4e8a-9c0f-5d6e7f8a9b0c"
#define PHONE		"+447700900123"
#define nitems(a)	(sizeof(a) / sizeof((a)[0]))

static const char	*prompts_dir(void);
static struct prompt_set *load_real(void);
static struct prompt_set *load_dir_ok(const char *);
static void	set_var(struct prompt_var *, size_t, const char *,
		    const char *);
static char	*slurp(const char *, const char *);
static void	spew(const char *, const char *, const char *);
static void	spew_append(const char *, const char *, const char *);
static char	*copy_dir(void);
static void	remove_dir(char *);
static int	count_char_seq(const char *, const char *);
static void	check_order(const char *, const char *const *, size_t);
static void	check_contract(const char *);
static char	*regex_group(const char *, const char *);
static void	test_load_real(void **);
static void	test_general(void **);
static void	test_health_check(void **);
static void	test_llm_regexes(void **);
static void	test_unknown_variable(void **);
static void	test_unknown_names(void **);
static void	test_syntax(void **);
static void	test_no_reexpansion(void **);
static void	test_verbatim(void **);
static void	test_null_value(void **);
static void	test_first_messages(void **);
static void	test_broken_templates(void **);
static void	test_broken_conf(void **);
static void	test_contract_enforced(void **);
static void	test_limits(void **);
static void	test_missing_dir(void **);
static void	test_small_err(void **);

static struct prompt_var vars_full[] = {
	{ "user_id",		USER_ID },
	{ "phone",		PHONE },
	{ "name",		"Margaret" },
	{ "age",		"82" },
	{ "gender",		"FEMALE" },
	{ "interests",		"gardening, baking and the radio" },
	{ "dislikes",		"politics" },
	{ "last_summary",	"Margaret talked about her roses." },
	{ "recent_summaries",	"Margaret talked about her roses.\n"
				"Margaret's grandson visited." },
	{ "part_of_day",	"evening" },
	{ "is_first_call",	"no" },
	{ "call_type",		"general" },
	{ "health_conditions",	"arthritis (mild)" },
	{ "medications",	"paracetamol 500 mg when needed" },
};

static const char *const general_order[] = {
	"user_context", "persona", "tone", "culture", "emergency", "cognitive"
};
static const char *const health_order[] = {
	"user_context", "health_checkin", "tone", "culture", "emergency"
};

static const char *
prompts_dir(void)
{
	const char	*d = getenv("PROMPTS_DIR");

	return d != NULL && *d != '\0' ? d : "prompts";
}

static struct prompt_set *
load_real(void)
{
	return load_dir_ok(prompts_dir());
}

static struct prompt_set *
load_dir_ok(const char *dir)
{
	struct prompt_set	*ps;
	char			 err[2048];

	ps = prompt_load(dir, err, sizeof(err));
	if (ps == NULL)
		fail_msg("prompt_load(%s): %s", dir, err);
	return ps;
}

static void
set_var(struct prompt_var *v, size_t n, const char *name, const char *val)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (strcmp(v[i].pv_name, name) == 0) {
			v[i].pv_value = val;
			return;
		}
	fail_msg("no variable %s", name);
}

static char *
slurp(const char *dir, const char *file)
{
	char	 path[1024], *s;
	FILE	*f;
	long	 n;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	assert_non_null(f = fopen(path, "r"));
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	assert_non_null(s = calloc(1, (size_t)n + 1));
	assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return s;
}

static void
spew(const char *dir, const char *file, const char *text)
{
	char	 path[1024];
	FILE	*f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void
spew_append(const char *dir, const char *file, const char *text)
{
	char	 path[1024];
	FILE	*f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	assert_non_null(f = fopen(path, "a"));
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* A temp copy of the real prompts directory (plain files only). */
static char *
copy_dir(void)
{
	char		*tmp, *s;
	DIR		*d;
	struct dirent	*de;

	assert_non_null(tmp = strdup("/tmp/test_prompt.XXXXXX"));
	assert_non_null(mkdtemp(tmp));
	assert_non_null(d = opendir(prompts_dir()));
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		s = slurp(prompts_dir(), de->d_name);
		spew(tmp, de->d_name, s);
		free(s);
	}
	closedir(d);
	return tmp;
}

static void
remove_dir(char *dir)
{
	char		 path[1024];
	DIR		*d;
	struct dirent	*de;

	assert_non_null(d = opendir(dir));
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	assert_int_equal(rmdir(dir), 0);
	free(dir);
}

static int
count_char_seq(const char *s, const char *needle)
{
	int	 n = 0;

	while ((s = strstr(s, needle)) != NULL) {
		n++;
		s += strlen(needle);
	}
	return n;
}

/*
 * Each section's first line (rendered: user_context's starts with a
 * variable) is found at the start of a line, after the previous one.
 */
static void
check_order(const char *out, const char *const *names, size_t n)
{
	const char	*at = out, *p;
	char		 file[64], err[256], *text, *nl, *line;
	size_t		 i;

	for (i = 0; i < n; i++) {
		snprintf(file, sizeof(file), "%s.txt", names[i]);
		text = slurp(prompts_dir(), file);
		if ((nl = strchr(text, '\n')) != NULL)
			*nl = '\0';
		line = prompt_render(text, vars_full, nitems(vars_full), err,
		    sizeof(err));
		assert_non_null(line);
		assert_true(strlen(line) > 0);
		p = strstr(at, line);
		if (p == NULL)
			fail_msg("section %s (\"%s\") missing or out of order",
			    names[i], line);
		assert_true(p == out || p[-1] == '\n');
		at = p + strlen(line);
		free(line);
		free(text);
	}
}

/* The leading two lines, nothing before them saying "phone", no "{{". */
static void
check_contract(const char *out)
{
	const char	*want = "User ID: " USER_ID "\nPhone: " PHONE "\n";
	const char	*ph;
	size_t		 i;

	assert_memory_equal(out, want, strlen(want));
	assert_non_null(ph = strstr(out, "\nPhone: "));
	for (i = 0; out + i + 5 <= ph; i++)
		assert_int_not_equal(strncasecmp(out + i, "phone", 5), 0);
	assert_null(strstr(out, "{{"));
	assert_null(strstr(out, "}}"));
}

/* The first group of an extended, case-blind regex match, or NULL. */
static char *
regex_group(const char *re, const char *s)
{
	regex_t		 rx;
	regmatch_t	 m[2];
	char		*g = NULL;
	size_t		 len;

	assert_int_equal(regcomp(&rx, re, REG_EXTENDED | REG_ICASE), 0);
	if (regexec(&rx, s, 2, m, 0) == 0 && m[1].rm_so != -1) {
		len = (size_t)(m[1].rm_eo - m[1].rm_so);
		/* The service's phone class takes trailing blank space. */
		while (len > 0 && isspace((unsigned char)s[m[1].rm_so +
		    (regoff_t)len - 1]))
			len--;
		g = strndup(s + m[1].rm_so, len);
	}
	regfree(&rx);
	return g;
}

static void
test_load_real(void **state)
{
	(void)state;
	prompt_free(load_real());
	prompt_free(NULL);
}

static void
test_general(void **state)
{
	struct prompt_set	*ps = load_real();
	char			 err[256], *out;

	(void)state;
	out = prompt_system(ps, "general", vars_full, nitems(vars_full), err,
	    sizeof(err));
	if (out == NULL)
		fail_msg("%s", err);
	check_contract(out);
	check_order(out, general_order, nitems(general_order));
	assert_non_null(strstr(out, "Margaret"));
	assert_non_null(strstr(out, "gardening, baking and the radio"));
	assert_non_null(strstr(out, "999"));
	assert_non_null(strstr(out, "911"));
	assert_non_null(strstr(out, "112"));
	assert_null(strstr(out, "# Health check-in"));
	free(out);
	prompt_free(ps);
}

static void
test_health_check(void **state)
{
	struct prompt_var	 v[nitems(vars_full)];
	struct prompt_set	*ps = load_real();
	char			 err[256], *out;

	(void)state;
	memcpy(v, vars_full, sizeof(v));
	set_var(v, nitems(v), "call_type", "health_check");
	out = prompt_system(ps, "health_check", v, nitems(v), err,
	    sizeof(err));
	if (out == NULL)
		fail_msg("%s", err);
	check_contract(out);
	check_order(out, health_order, nitems(health_order));
	assert_non_null(strstr(out, "arthritis (mild)"));
	assert_non_null(strstr(out, "paracetamol 500 mg when needed"));
	assert_non_null(strstr(out, "health_check"));
	assert_null(strstr(out, "# Who you are"));
	free(out);
	prompt_free(ps);
}

static void
test_llm_regexes(void **state)
{
	static const char *const types[] = { "general", "health_check" };
	struct prompt_set	*ps = load_real();
	char			 err[256], *out, *g;
	size_t			 i;

	(void)state;
	for (i = 0; i < nitems(types); i++) {
		out = prompt_system(ps, types[i], vars_full, nitems(vars_full),
		    err, sizeof(err));
		assert_non_null(out);
		/* /user\s*ID[:\s]+([a-f0-9\-]+)/i */
		g = regex_group("user[[:space:]]*ID[:[:space:]]+([a-f0-9-]+)",
		    out);
		assert_non_null(g);
		assert_string_equal(g, USER_ID);
		free(g);
		/* /phone[:\s]+(\+?[\d\s\-()]+)/i */
		g = regex_group("phone[:[:space:]]+(\\+?[0-9[:space:]()-]+)",
		    out);
		assert_non_null(g);
		assert_string_equal(g, PHONE);
		free(g);
		free(out);
	}
	prompt_free(ps);
}

static void
test_unknown_variable(void **state)
{
	struct prompt_var	 v[nitems(vars_full) - 1];
	struct prompt_set	*ps = load_real();
	char			 err[256], *out;
	size_t			 i, j;

	(void)state;
	out = prompt_render("Hello {{nope}}.", vars_full, nitems(vars_full),
	    err, sizeof(err));
	assert_null(out);
	assert_non_null(strstr(err, "\"nope\""));
	assert_non_null(strstr(err, "template:1"));
	/* Drop "medications": only the health check-in names it. */
	for (i = j = 0; i < nitems(vars_full); i++)
		if (strcmp(vars_full[i].pv_name, "medications") != 0)
			v[j++] = vars_full[i];
	assert_int_equal(j, nitems(v));
	out = prompt_system(ps, "general", v, nitems(v), err, sizeof(err));
	assert_non_null(out);
	free(out);
	out = prompt_system(ps, "health_check", v, nitems(v), err,
	    sizeof(err));
	assert_null(out);
	assert_non_null(strstr(err, "\"medications\""));
	assert_non_null(strstr(err, "health_checkin.txt"));
	out = prompt_system(ps, "general", NULL, 0, err, sizeof(err));
	assert_null(out);
	assert_non_null(strstr(err, "user_context.txt:1"));
	assert_non_null(strstr(err, "\"user_id\""));
	prompt_free(ps);
}

static void
test_unknown_names(void **state)
{
	struct prompt_set	*ps = load_real();
	char			 err[256];

	(void)state;
	assert_null(prompt_system(ps, "cognitive_check", vars_full,
	    nitems(vars_full), err, sizeof(err)));
	assert_non_null(strstr(err, "cognitive_check"));
	assert_null(prompt_system(ps, NULL, vars_full, nitems(vars_full), err,
	    sizeof(err)));
	/* A section is not a first message, nor the reverse. */
	assert_null(prompt_first(ps, "persona", vars_full, nitems(vars_full),
	    err, sizeof(err)));
	assert_non_null(strstr(err, "persona"));
	assert_null(prompt_system(ps, "first", vars_full, nitems(vars_full),
	    err, sizeof(err)));
	assert_null(prompt_first(ps, NULL, vars_full, nitems(vars_full), err,
	    sizeof(err)));
	assert_null(prompt_system(NULL, "general", vars_full,
	    nitems(vars_full), err, sizeof(err)));
	prompt_free(ps);
}

static void
test_syntax(void **state)
{
	static const struct {
		const char	*in;
		const char	*out;	/* NULL: an error naming "why" */
		const char	*why;
	} t[] = {
		{ "", "", NULL },
		{ "plain", "plain", NULL },
		{ "{{name}}", "Margaret", NULL },
		{ "{{ name }}|{{\tage\t}}", "Margaret|82", NULL },
		{ "a { b } c {x} }} {", "a { b } c {x} }} {", NULL },
		{ "{name}}", "{name}}", NULL },
		{ "x\n{{name", NULL, "template:2: \"{{\" without" },
		{ "{{name}} {{", NULL, "without a closing" },
		{ "{{Name}}", NULL, "malformed" },
		{ "{{}}", NULL, "malformed" },
		{ "{{ }}", NULL, "malformed" },
		{ "{{na me}}", NULL, "malformed" },
		{ "{{name-x}}", NULL, "malformed" },
		{ "{{{name}}}", NULL, "malformed" },
		{ "{{name}", NULL, "without a closing" },
	};
	char	 err[256], *out;
	size_t	 i;

	(void)state;
	for (i = 0; i < nitems(t); i++) {
		out = prompt_render(t[i].in, vars_full, nitems(vars_full), err,
		    sizeof(err));
		if (t[i].out == NULL) {
			if (out != NULL)
				fail_msg("\"%s\" rendered as \"%s\"", t[i].in,
				    out);
			if (strstr(err, t[i].why) == NULL)
				fail_msg("\"%s\": err \"%s\"", t[i].in, err);
			continue;
		}
		if (out == NULL)
			fail_msg("\"%s\": %s", t[i].in, err);
		assert_string_equal(out, t[i].out);
		free(out);
	}
	assert_null(prompt_render(NULL, NULL, 0, err, sizeof(err)));
}

static void
test_no_reexpansion(void **state)
{
	struct prompt_var	 v[nitems(vars_full)];
	struct prompt_set	*ps = load_real();
	char			 err[256], *out;

	(void)state;
	memcpy(v, vars_full, sizeof(v));
	set_var(v, nitems(v), "name", "{{user_id}}");
	set_var(v, nitems(v), "interests", "{{ phone }} {{nope}} {{");
	out = prompt_render("[{{name}}][{{interests}}]", v, nitems(v), err,
	    sizeof(err));
	assert_non_null(out);
	assert_string_equal(out, "[{{user_id}}][{{ phone }} {{nope}} {{]");
	free(out);
	out = prompt_system(ps, "general", v, nitems(v), err, sizeof(err));
	assert_non_null(out);
	assert_non_null(strstr(out, "Name: {{user_id}}\n"));
	assert_int_equal(count_char_seq(out, USER_ID), 1);
	free(out);
	prompt_free(ps);
}

static void
test_verbatim(void **state)
{
	static const char	 hostile[] = "Zo\xc3\xab O'Brien \"Nana\" "
	    "\xe6\x9d\x8e \\n %s %n $1 & <b> \xf0\x9f\x8c\xb9 `x` ${name}";
	struct prompt_var	 v[nitems(vars_full)];
	struct prompt_set	*ps = load_real();
	char			 err[256], *out;

	(void)state;
	memcpy(v, vars_full, sizeof(v));
	set_var(v, nitems(v), "name", hostile);
	set_var(v, nitems(v), "last_summary", "line one\nline two\r\n\ttab");
	out = prompt_render("<{{name}}>", v, nitems(v), err, sizeof(err));
	assert_non_null(out);
	assert_int_equal(strlen(out), strlen(hostile) + 2);
	assert_memory_equal(out + 1, hostile, strlen(hostile));
	free(out);
	out = prompt_system(ps, "general", v, nitems(v), err, sizeof(err));
	assert_non_null(out);
	assert_non_null(strstr(out, hostile));
	assert_non_null(strstr(out, "line one\nline two\r\n\ttab"));
	free(out);
	out = prompt_first(ps, "first_new", v, nitems(v), err, sizeof(err));
	assert_non_null(out);
	assert_non_null(strstr(out, hostile));
	free(out);
	prompt_free(ps);
}

static void
test_null_value(void **state)
{
	struct prompt_var	 v[] = { { "name", NULL }, { NULL, "x" },
				    { "age", "90" }, { "age", "91" } };
	char			 err[64], *out;

	(void)state;
	out = prompt_render("[{{name}}|{{age}}]", v, nitems(v), err,
	    sizeof(err));
	assert_non_null(out);
	assert_string_equal(out, "[|90]");	/* the first of a name wins */
	free(out);
}

static void
test_first_messages(void **state)
{
	struct prompt_var	 v[nitems(vars_full)];
	struct prompt_set	*ps = load_real();
	char			 err[256], *nw, *ret, *hc;

	(void)state;
	memcpy(v, vars_full, sizeof(v));
	set_var(v, nitems(v), "part_of_day", "morning");
	nw = prompt_first(ps, "first_new", v, nitems(v), err, sizeof(err));
	ret = prompt_first(ps, "first_returning", v, nitems(v), err,
	    sizeof(err));
	hc = prompt_first(ps, "first_health", v, nitems(v), err, sizeof(err));
	assert_non_null(nw);
	assert_non_null(ret);
	assert_non_null(hc);
	assert_non_null(strstr(nw, "Good morning, Margaret"));
	assert_non_null(strstr(ret, "Good morning, Margaret"));
	assert_non_null(strstr(ret, "gardening, baking and the radio"));
	assert_non_null(strstr(ret, "again"));
	assert_null(strstr(nw, "again"));
	assert_non_null(strstr(hc, "Margaret"));
	assert_non_null(strstr(hc, "health check-in"));
	assert_string_not_equal(nw, ret);
	assert_null(strstr(nw, "{{"));
	assert_null(strstr(ret, "{{"));
	assert_null(strstr(hc, "{{"));
	assert_null(strchr(nw, '\n'));	/* trailing newline dropped */
	free(nw);
	free(ret);
	free(hc);
	prompt_free(ps);
}

static void
test_broken_templates(void **state)
{
	struct prompt_set	*ps, *good;
	char			*dir, *s, path[1024], err[4096];

	(void)state;
	good = load_real();
	dir = copy_dir();
	s = slurp(dir, "persona.txt");
	spew(dir, "persona.txt", "Say {{nope}} and {{ also_nope }}.\n");
	spew_append(dir, "persona.txt", s);
	free(s);
	spew(dir, "tone.txt", "# How you speak\nfine\nthen {{name\n");
	spew(dir, "culture.txt", "\n\n  \n");
	snprintf(path, sizeof(path), "%s/cognitive.txt", dir);
	assert_int_equal(unlink(path), 0);
	ps = prompt_load(dir, err, sizeof(err));
	assert_null(ps);
	assert_non_null(strstr(err,
	    "persona.txt:1: unknown variable \"nope\""));
	assert_non_null(strstr(err, "\"also_nope\""));
	assert_non_null(strstr(err, "tone.txt:3: \"{{\" without"));
	assert_non_null(strstr(err, "culture.txt: empty"));
	assert_non_null(strstr(err, "cognitive.txt: No such file"));
	assert_int_equal(count_char_seq(err, "; "), 4);
	remove_dir(dir);
	/* The old set still renders: what SIGHUP relies on. */
	s = prompt_system(good, "general", vars_full, nitems(vars_full), err,
	    sizeof(err));
	assert_non_null(s);
	free(s);
	prompt_free(good);
}

static void
test_broken_conf(void **state)
{
	char	*dir, err[4096];

	(void)state;
	dir = copy_dir();
	spew(dir, "sections.conf",
	    "# a comment\n"
	    "\n"
	    "general: user_context persona Tone missing_one  # trailing\r\n"
	    "general: user_context\n"
	    "no colon here\n"
	    "Bad key: persona\n"
	    "empty:\n"
	    "other: user_context persona persona\n"
	    "first: first_new first_health\n"
	    "first: first_returning\n");
	assert_null(prompt_load(dir, err, sizeof(err)));
	assert_non_null(strstr(err, "sections.conf:3: bad template name "
	    "\"Tone\""));
	assert_non_null(strstr(err, "sections.conf:4: call type \"general\" "
	    "given twice"));
	assert_non_null(strstr(err, "sections.conf:5: expected"));
	assert_non_null(strstr(err, "sections.conf:6: bad key"));
	assert_non_null(strstr(err, "sections.conf:7: \"empty\" names no"));
	assert_non_null(strstr(err, "sections.conf:8: \"persona\" listed "
	    "twice"));
	assert_non_null(strstr(err, "sections.conf:10: second \"first\""));
	assert_non_null(strstr(err, "missing_one.txt: No such file"));
	assert_non_null(strstr(err, "call type \"health_check\""));
	assert_non_null(strstr(err, "first message \"first_returning\""));
	assert_null(strstr(err, "first message \"first_new\""));
	assert_int_equal(count_char_seq(err, "; "), 9);
	remove_dir(dir);
}

static void
test_contract_enforced(void **state)
{
	char	*dir, err[2048];

	(void)state;
	dir = copy_dir();
	spew(dir, "sections.conf",
	    "general: persona user_context\n"
	    "health_check: user_context health_checkin\n"
	    "first: first_new first_returning first_health\n");
	assert_null(prompt_load(dir, err, sizeof(err)));
	assert_non_null(strstr(err, "general: first section persona.txt"));
	assert_null(strstr(err, "health_check:"));
	/* "Phone" said before the lines is also refused. */
	spew(dir, "sections.conf",
	    "general: user_context\n"
	    "health_check: user_context\n"
	    "first: first_new first_returning first_health\n");
	spew(dir, "user_context.txt", "Phone call for:\nUser ID: "
	    "{{user_id}}\nPhone: {{phone}}\n");
	assert_null(prompt_load(dir, err, sizeof(err)));
	assert_non_null(strstr(err, "general: first section "
	    "user_context.txt"));
	assert_non_null(strstr(err, "health_check: first section "
	    "user_context.txt"));
	/* Text that the service's phone pattern would run on into. */
	spew(dir, "user_context.txt", "User ID: {{user_id}}\n"
	    "Phone: {{phone}}\n (mobile)\n");
	assert_null(prompt_load(dir, err, sizeof(err)));
	assert_non_null(strstr(err, "part of the number"));
	spew(dir, "user_context.txt", "User ID: {{user_id}}\n"
	    "Phone: {{phone}} (mobile)\n");
	assert_null(prompt_load(dir, err, sizeof(err)));
	assert_non_null(strstr(err, "must end the line"));
	/* Blanks inside the braces are fine; the lines alone are enough. */
	spew(dir, "user_context.txt", "User ID: {{ user_id }}\n"
	    "Phone: {{phone}}\n");
	prompt_free(load_dir_ok(dir));
	remove_dir(dir);
}

static void
test_limits(void **state)
{
	struct prompt_var	 v[1];
	struct prompt_set	*ps;
	char			*big, *dir, *out, err[512];
	size_t			 n = 300 * 1024;

	(void)state;
	assert_non_null(big = malloc(n + 1));
	memset(big, 'a', n);
	big[n] = '\0';
	v[0].pv_name = "name";
	v[0].pv_value = big;
	out = prompt_render("{{name}}", v, 1, err, sizeof(err));
	assert_null(out);
	assert_non_null(strstr(err, "longer than"));
	v[0].pv_value = big + n - 200 * 1024;
	out = prompt_render("{{name}}", v, 1, err, sizeof(err));
	assert_non_null(out);
	assert_int_equal(strlen(out), 200 * 1024);
	free(out);
	dir = copy_dir();
	big[64 * 1024 + 1] = '\0';
	spew(dir, "cognitive.txt", big);
	ps = prompt_load(dir, err, sizeof(err));
	assert_null(ps);
	assert_non_null(strstr(err, "cognitive.txt: larger than 65536"));
	big[64 * 1024] = '\0';
	spew(dir, "cognitive.txt", big);
	ps = prompt_load(dir, err, sizeof(err));
	assert_non_null(ps);
	prompt_free(ps);
	remove_dir(dir);
	free(big);
}

static void
test_missing_dir(void **state)
{
	char	 err[256];

	(void)state;
	assert_null(prompt_load("/nonexistent/prompts", err, sizeof(err)));
	assert_string_equal(err, "sections.conf: No such file or directory");
}

static void
test_small_err(void **state)
{
	char	*dir, err[8];

	(void)state;
	dir = copy_dir();
	spew(dir, "tone.txt", "{{a}} {{b}} {{c}} {{d}}");
	memset(err, 'x', sizeof(err));
	assert_null(prompt_load(dir, err, sizeof(err)));
	assert_int_equal(strlen(err), sizeof(err) - 1);
	assert_null(prompt_load(dir, NULL, 0));
	assert_null(prompt_render("{{zz}}", NULL, 0, err, 1));
	assert_string_equal(err, "");
	remove_dir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_real),
		cmocka_unit_test(test_general),
		cmocka_unit_test(test_health_check),
		cmocka_unit_test(test_llm_regexes),
		cmocka_unit_test(test_unknown_variable),
		cmocka_unit_test(test_unknown_names),
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_no_reexpansion),
		cmocka_unit_test(test_verbatim),
		cmocka_unit_test(test_null_value),
		cmocka_unit_test(test_first_messages),
		cmocka_unit_test(test_broken_templates),
		cmocka_unit_test(test_broken_conf),
		cmocka_unit_test(test_contract_enforced),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_missing_dir),
		cmocka_unit_test(test_small_err),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
