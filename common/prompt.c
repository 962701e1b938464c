/*
 * prompt.c - prompt templates: prompts/sections.conf and the template
 * files it names, loaded and checked as one set; strict {{variable}}
 * rendering of a call type's system prompt and of a first message.
 *
 * Owns struct prompt_set.  The supervisor loads a set before forking
 * and builds a new one on SIGHUP, swapped in only if it loaded clean;
 * a worker renders from the set it inherited and does no file I/O here.
 * No messages, keys or peers.  Values come from PostgreSQL: they are
 * copied verbatim in one pass, so text inside a value is never expanded.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "prompt.h"

#define PR_FILE_MAX	(64 * 1024)	/* one template or sections.conf */
#define PR_OUT_MAX	(256 * 1024)	/* one rendered prompt */
#define PR_SECT_MAX	32		/* sections of one call type */
#define PR_TYPE_MAX	16		/* call types in sections.conf */
#define PR_TMPL_MAX	64		/* distinct template files */
#define PR_NAME_MAX	32		/* names are [a-z_]+ */
#define PR_NAME_CHARS	"abcdefghijklmnopqrstuvwxyz_"
#define PR_FIRST_KEY	"first"		/* the first-message line */
#define PR_PROBE_ID	"00000000-0000-4000-8000-000000000000"
#define PR_PROBE_PHONE	"+15550100000"

#define nitems(a)	(sizeof(a) / sizeof((a)[0]))

struct pr_tmpl {
	char	 pt_name[PR_NAME_MAX + 1];
	char	*pt_text;		/* NULL if it did not load */
};

/* One sections.conf line: a call type, or the first-message list. */
struct pr_list {
	char	 pl_name[PR_NAME_MAX + 1];
	size_t	 pl_idx[PR_SECT_MAX];	/* into ps_tmpl */
	size_t	 pl_n;
};

struct prompt_set {
	struct pr_tmpl	 ps_tmpl[PR_TMPL_MAX];
	size_t		 ps_ntmpl;
	struct pr_list	 ps_type[PR_TYPE_MAX];
	size_t		 ps_ntype;
	struct pr_list	 ps_first;
	int		 ps_have_first;
};

/* Problems gathered into the caller's buffer, joined by "; ". */
struct pr_err {
	char	*pe_buf;
	size_t	 pe_size;
	size_t	 pe_len;
	int	 pe_n;
};

struct pr_buf {
	char	*pb_s;
	size_t	 pb_len;
	size_t	 pb_cap;
};

static void	pr_err_init(struct pr_err *, char *, size_t);
static void	pr_err_add(struct pr_err *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
static int	pr_name_ok(const char *);
static int	pr_known(const char *, size_t);
static size_t	pr_lineno(const char *, const char *);
static const char *pr_next(const char *, const char **, size_t *,
		    const char **, const char **);
static const struct prompt_var *pr_lookup(const struct prompt_var *, size_t,
		    const char *, size_t);
static int	pr_buf_add(struct pr_buf *, const char *, size_t,
		    struct pr_err *);
static int	pr_render_into(struct pr_buf *, const char *, const char *,
		    const struct prompt_var *, size_t, struct pr_err *);
static char	*pr_render_list(const struct prompt_set *,
		    const struct pr_list *, const char *,
		    const struct prompt_var *, size_t, struct pr_err *);
static char	*pr_read(const char *, const char *, struct pr_err *);
static char	*pr_read_fd(int, const char *, struct pr_err *);
static void	pr_parse_conf(struct prompt_set *, char *, struct pr_err *);
static void	pr_parse_line(struct prompt_set *, char *, size_t,
		    struct pr_err *);
static struct pr_list *pr_new_list(struct prompt_set *, const char *,
		    size_t, struct pr_err *);
static int	pr_add_section(struct prompt_set *, struct pr_list *,
		    const char *, size_t, struct pr_err *);
static const struct pr_list *pr_find_type(const struct prompt_set *,
		    const char *);
static void	pr_load_templates(struct prompt_set *, const char *,
		    struct pr_err *);
static void	pr_check_tmpl(const char *, const char *, struct pr_err *);
static void	pr_check_required(const struct prompt_set *, struct pr_err *);
static const char *pr_contract(const char *);
static void	pr_check_contract(const struct prompt_set *, struct pr_err *);

/*
 * The variables a template may name.  Keep in step with the comment in
 * prompts/sections.conf; the worker gives a value for each.
 */
static const char *const pr_vars[] = {
	"user_id", "phone", "name", "age", "gender", "interests", "dislikes",
	"last_summary", "recent_summaries", "part_of_day", "is_first_call",
	"call_type", "health_conditions", "medications"
};

static const char *const pr_req_types[] = { "general", "health_check" };
static const char *const pr_req_first[] = {
	"first_new", "first_returning", "first_health"
};

static void
pr_err_init(struct pr_err *e, char *buf, size_t size)
{
	e->pe_buf = size > 0 ? buf : NULL;
	e->pe_size = e->pe_buf != NULL ? size : 0;
	e->pe_len = 0;
	e->pe_n = 0;
	if (e->pe_buf != NULL)
		e->pe_buf[0] = '\0';
}

static void
pr_err_add(struct pr_err *e, const char *fmt, ...)
{
	va_list	 ap;
	size_t	 room;
	int	 n;

	if (e->pe_n++ > 0 && e->pe_buf != NULL) {
		room = e->pe_size - e->pe_len;
		n = snprintf(e->pe_buf + e->pe_len, room, "; ");
		e->pe_len += (size_t)n < room ? (size_t)n : room - 1;
	}
	if (e->pe_buf == NULL)
		return;
	room = e->pe_size - e->pe_len;
	va_start(ap, fmt);
	n = vsnprintf(e->pe_buf + e->pe_len, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		e->pe_len += (size_t)n < room ? (size_t)n : room - 1;
}

static int
pr_name_ok(const char *s)
{
	size_t	 n = strspn(s, PR_NAME_CHARS);

	return n > 0 && n <= PR_NAME_MAX && s[n] == '\0';
}

static int
pr_known(const char *name, size_t len)
{
	size_t	 i;

	for (i = 0; i < nitems(pr_vars); i++)
		if (strlen(pr_vars[i]) == len &&
		    memcmp(pr_vars[i], name, len) == 0)
			return 1;
	return 0;
}

static size_t
pr_lineno(const char *text, const char *at)
{
	size_t	 n = 1;

	for (; text < at; text++)
		if (*text == '\n')
			n++;
	return n;
}

/*
 * The next "{{ name }}" at or after s (blanks allowed inside the
 * braces): returns where its "{{" is, NULL if none is left, with the
 * name in *name and *len and the text after "}}" in *end.  A malformed
 * one returns its "{{" with *why saying what is wrong (*end unset).
 * A lone "{" or "}", or a stray "}}", is plain text.
 */
static const char *
pr_next(const char *s, const char **name, size_t *len, const char **end,
    const char **why)
{
	const char	*o, *p;

	*why = NULL;
	if ((o = strstr(s, "{{")) == NULL)
		return NULL;
	p = o + 2;
	p += strspn(p, " \t");
	*name = p;
	p += strspn(p, PR_NAME_CHARS);
	*len = (size_t)(p - *name);
	p += strspn(p, " \t");
	if (*len > 0 && *len <= PR_NAME_MAX && strncmp(p, "}}", 2) == 0) {
		*end = p + 2;
		return o;
	}
	if (strstr(o + 2, "}}") == NULL)
		*why = "\"{{\" without a closing \"}}\"";
	else
		*why = "malformed variable (want {{name}}, name [a-z_]+)";
	return o;
}

static const struct prompt_var *
pr_lookup(const struct prompt_var *vars, size_t nvars, const char *name,
    size_t len)
{
	size_t	 i;

	for (i = 0; i < nvars; i++)
		if (vars[i].pv_name != NULL &&
		    strlen(vars[i].pv_name) == len &&
		    memcmp(vars[i].pv_name, name, len) == 0)
			return &vars[i];
	return NULL;
}

/* Append n bytes, keeping the buffer NUL-ended and within PR_OUT_MAX. */
static int
pr_buf_add(struct pr_buf *b, const char *s, size_t n, struct pr_err *e)
{
	size_t	 cap;
	char	*t;

	if (n > PR_OUT_MAX - b->pb_len) {
		pr_err_add(e, "rendered prompt longer than %d bytes",
		    PR_OUT_MAX);
		return -1;
	}
	if (b->pb_len + n + 1 > b->pb_cap) {
		cap = b->pb_cap > 0 ? b->pb_cap : 4096;
		while (cap < b->pb_len + n + 1)
			cap *= 2;
		if ((t = realloc(b->pb_s, cap)) == NULL) {
			pr_err_add(e, "out of memory");
			return -1;
		}
		b->pb_s = t;
		b->pb_cap = cap;
	}
	memcpy(b->pb_s + b->pb_len, s, n);
	b->pb_len += n;
	b->pb_s[b->pb_len] = '\0';
	return 0;
}

/*
 * One pass over text: literal runs and values are appended, and the
 * scan resumes after the "}}", never inside a value just copied.
 */
static int
pr_render_into(struct pr_buf *b, const char *label, const char *text,
    const struct prompt_var *vars, size_t nvars, struct pr_err *e)
{
	const struct prompt_var	*v;
	const char		*s, *o, *name, *end, *why, *val;
	size_t			 len;

	for (s = text;; s = end) {
		if ((o = pr_next(s, &name, &len, &end, &why)) == NULL)
			return pr_buf_add(b, s, strlen(s), e);
		if (why != NULL) {
			pr_err_add(e, "%s:%zu: %s", label,
			    pr_lineno(text, o), why);
			return -1;
		}
		if (pr_buf_add(b, s, (size_t)(o - s), e) == -1)
			return -1;
		if ((v = pr_lookup(vars, nvars, name, len)) == NULL) {
			pr_err_add(e, "%s:%zu: unknown variable \"%.*s\"",
			    label, pr_lineno(text, o), (int)len, name);
			return -1;
		}
		val = v->pv_value != NULL ? v->pv_value : "";
		if (pr_buf_add(b, val, strlen(val), e) == -1)
			return -1;
	}
}

char *
prompt_render(const char *text, const struct prompt_var *vars, size_t nvars,
    char *err, size_t errlen)
{
	struct pr_err	 e;
	struct pr_buf	 b = { NULL, 0, 0 };

	pr_err_init(&e, err, errlen);
	if (text == NULL) {
		pr_err_add(&e, "no template text");
		return NULL;
	}
	if (pr_render_into(&b, "template", text, vars, nvars, &e) == -1) {
		free(b.pb_s);
		return NULL;
	}
	return b.pb_s;
}

/* The list's templates rendered in order, a blank line between them. */
static char *
pr_render_list(const struct prompt_set *ps, const struct pr_list *l,
    const char *sep, const struct prompt_var *vars, size_t nvars,
    struct pr_err *e)
{
	const struct pr_tmpl	*t;
	struct pr_buf		 b = { NULL, 0, 0 };
	char			 label[PR_NAME_MAX + 8];
	size_t			 i;

	for (i = 0; i < l->pl_n; i++) {
		t = &ps->ps_tmpl[l->pl_idx[i]];
		snprintf(label, sizeof(label), "%s.txt", t->pt_name);
		if ((i > 0 && pr_buf_add(&b, sep, strlen(sep), e) == -1) ||
		    pr_render_into(&b, label, t->pt_text, vars, nvars,
		    e) == -1) {
			free(b.pb_s);
			return NULL;
		}
	}
	return b.pb_s;
}

static const struct pr_list *
pr_find_type(const struct prompt_set *ps, const char *type)
{
	size_t	 i;

	for (i = 0; i < ps->ps_ntype; i++)
		if (strcmp(ps->ps_type[i].pl_name, type) == 0)
			return &ps->ps_type[i];
	return NULL;
}

char *
prompt_system(const struct prompt_set *ps, const char *type,
    const struct prompt_var *vars, size_t nvars, char *err, size_t errlen)
{
	const struct pr_list	*l;
	struct pr_err		 e;

	pr_err_init(&e, err, errlen);
	if (ps == NULL || type == NULL ||
	    (l = pr_find_type(ps, type)) == NULL) {
		pr_err_add(&e, "unknown call type \"%.*s\"", PR_NAME_MAX,
		    type != NULL ? type : "(null)");
		return NULL;
	}
	return pr_render_list(ps, l, "\n\n", vars, nvars, &e);
}

char *
prompt_first(const struct prompt_set *ps, const char *name,
    const struct prompt_var *vars, size_t nvars, char *err, size_t errlen)
{
	struct pr_list	 one;
	struct pr_err	 e;
	size_t		 i;

	pr_err_init(&e, err, errlen);
	for (i = 0; ps != NULL && name != NULL && i < ps->ps_first.pl_n; i++)
		if (strcmp(ps->ps_tmpl[ps->ps_first.pl_idx[i]].pt_name,
		    name) == 0)
			break;
	if (ps == NULL || name == NULL || i == ps->ps_first.pl_n) {
		pr_err_add(&e, "unknown first message \"%.*s\"", PR_NAME_MAX,
		    name != NULL ? name : "(null)");
		return NULL;
	}
	one.pl_idx[0] = ps->ps_first.pl_idx[i];
	one.pl_n = 1;
	return pr_render_list(ps, &one, "", vars, nvars, &e);
}

void
prompt_free(struct prompt_set *ps)
{
	size_t	 i;

	if (ps == NULL)
		return;
	for (i = 0; i < ps->ps_ntmpl; i++)
		free(ps->ps_tmpl[i].pt_text);
	free(ps);
}

/* dir/file as a NUL-ended string; label is file, for messages. */
static char *
pr_read(const char *dir, const char *file, struct pr_err *e)
{
	char	 path[PATH_MAX];
	char	*s;
	int	 fd, n;

	n = snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		pr_err_add(e, "%s: path too long", file);
		return NULL;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		pr_err_add(e, "%s: %s", file, strerror(errno));
		return NULL;
	}
	s = pr_read_fd(fd, file, e);
	close(fd);
	return s;
}

static char *
pr_read_fd(int fd, const char *file, struct pr_err *e)
{
	struct stat	 st;
	char		*s;
	size_t		 len = 0;
	ssize_t		 n = 0;

	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		pr_err_add(e, "%s: not a regular file", file);
		return NULL;
	}
	if ((s = malloc(PR_FILE_MAX + 2)) == NULL) {
		pr_err_add(e, "%s: out of memory", file);
		return NULL;
	}
	while (len <= PR_FILE_MAX) {
		n = read(fd, s + len, PR_FILE_MAX + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (n == -1)
		pr_err_add(e, "%s: %s", file, strerror(errno));
	else if (len > PR_FILE_MAX)
		pr_err_add(e, "%s: larger than %d bytes", file, PR_FILE_MAX);
	else if (memchr(s, '\0', len) != NULL)
		pr_err_add(e, "%s: contains a NUL byte", file);
	else {
		s[len] = '\0';
		return s;
	}
	free(s);
	return NULL;
}

/* Line by line; "#" starts a comment, blank lines are skipped. */
static void
pr_parse_conf(struct prompt_set *ps, char *conf, struct pr_err *e)
{
	char	*line, *nl, *c;
	size_t	 lineno = 0;

	for (line = conf; line != NULL; line = nl) {
		lineno++;
		if ((nl = strchr(line, '\n')) != NULL)
			*nl++ = '\0';
		if ((c = strchr(line, '#')) != NULL)
			*c = '\0';
		line += strspn(line, " \t\r");
		if (*line == '\0')
			continue;
		pr_parse_line(ps, line, lineno, e);
	}
}

/* "key: name name ..." with key a call type or "first". */
static void
pr_parse_line(struct prompt_set *ps, char *line, size_t lineno,
    struct pr_err *e)
{
	struct pr_list	*l;
	char		*colon, *key, *tok, *sp;

	if ((colon = strchr(line, ':')) == NULL) {
		pr_err_add(e, "sections.conf:%zu: expected "
		    "\"key: section ...\"", lineno);
		return;
	}
	*colon = '\0';
	key = strtok_r(line, " \t", &sp);
	if (key == NULL || !pr_name_ok(key) ||
	    strtok_r(NULL, " \t", &sp) != NULL) {
		pr_err_add(e, "sections.conf:%zu: bad key (want [a-z_]+, "
		    "at most %d)", lineno, PR_NAME_MAX);
		return;
	}
	if ((l = pr_new_list(ps, key, lineno, e)) == NULL)
		return;
	for (tok = strtok_r(colon + 1, " \t\r", &sp); tok != NULL;
	    tok = strtok_r(NULL, " \t\r", &sp))
		if (pr_add_section(ps, l, tok, lineno, e) == -1)
			break;
	if (l->pl_n == 0)
		pr_err_add(e, "sections.conf:%zu: \"%s\" names no template",
		    lineno, key);
}

static struct pr_list *
pr_new_list(struct prompt_set *ps, const char *key, size_t lineno,
    struct pr_err *e)
{
	struct pr_list	*l;

	if (strcmp(key, PR_FIRST_KEY) == 0) {
		if (ps->ps_have_first) {
			pr_err_add(e, "sections.conf:%zu: second \"%s\" line",
			    lineno, key);
			return NULL;
		}
		ps->ps_have_first = 1;
		l = &ps->ps_first;
	} else {
		if (pr_find_type(ps, key) != NULL) {
			pr_err_add(e, "sections.conf:%zu: call type \"%s\" "
			    "given twice", lineno, key);
			return NULL;
		}
		if (ps->ps_ntype == PR_TYPE_MAX) {
			pr_err_add(e, "sections.conf:%zu: more than %d call "
			    "types", lineno, PR_TYPE_MAX);
			return NULL;
		}
		l = &ps->ps_type[ps->ps_ntype++];
	}
	strcpy(l->pl_name, key);	/* pr_name_ok() bounded it */
	return l;
}

/*
 * Append template name to l, adding it to the set's templates if new;
 * -1 when l or the set is full (the rest of the line is not read).
 */
static int
pr_add_section(struct prompt_set *ps, struct pr_list *l, const char *name,
    size_t lineno, struct pr_err *e)
{
	size_t	 i;

	if (!pr_name_ok(name)) {
		pr_err_add(e, "sections.conf:%zu: bad template name \"%.*s\" "
		    "(want [a-z_]+, at most %d)", lineno, PR_NAME_MAX, name,
		    PR_NAME_MAX);
		return 0;
	}
	for (i = 0; i < l->pl_n; i++)
		if (strcmp(ps->ps_tmpl[l->pl_idx[i]].pt_name, name) == 0) {
			pr_err_add(e, "sections.conf:%zu: \"%s\" listed twice",
			    lineno, name);
			return 0;
		}
	if (l->pl_n == PR_SECT_MAX) {
		pr_err_add(e, "sections.conf:%zu: more than %d sections",
		    lineno, PR_SECT_MAX);
		return -1;
	}
	for (i = 0; i < ps->ps_ntmpl; i++)
		if (strcmp(ps->ps_tmpl[i].pt_name, name) == 0)
			break;
	if (i == ps->ps_ntmpl) {
		if (ps->ps_ntmpl == PR_TMPL_MAX) {
			pr_err_add(e, "sections.conf:%zu: more than %d "
			    "templates", lineno, PR_TMPL_MAX);
			return -1;
		}
		strcpy(ps->ps_tmpl[ps->ps_ntmpl++].pt_name, name);
	}
	l->pl_idx[l->pl_n++] = i;
	return 0;
}

/* Read each named template, check it, drop trailing blank space. */
static void
pr_load_templates(struct prompt_set *ps, const char *dir, struct pr_err *e)
{
	struct pr_tmpl	*t;
	char		 file[PR_NAME_MAX + 8];
	size_t		 i, len;

	for (i = 0; i < ps->ps_ntmpl; i++) {
		t = &ps->ps_tmpl[i];
		snprintf(file, sizeof(file), "%s.txt", t->pt_name);
		if ((t->pt_text = pr_read(dir, file, e)) == NULL)
			continue;
		len = strlen(t->pt_text);
		while (len > 0 && strchr(" \t\r\n", t->pt_text[len - 1]))
			t->pt_text[--len] = '\0';
		if (len == 0)
			pr_err_add(e, "%s: empty", file);
		pr_check_tmpl(file, t->pt_text, e);
	}
}

/* Every problem in one template: syntax, and names outside pr_vars. */
static void
pr_check_tmpl(const char *file, const char *text, struct pr_err *e)
{
	const char	*s, *o, *name, *end, *why;
	size_t		 len;

	for (s = text; (o = pr_next(s, &name, &len, &end, &why)) != NULL;) {
		if (why != NULL) {
			pr_err_add(e, "%s:%zu: %s", file, pr_lineno(text, o),
			    why);
			s = o + 2;
			continue;
		}
		if (!pr_known(name, len))
			pr_err_add(e, "%s:%zu: unknown variable \"%.*s\"",
			    file, pr_lineno(text, o), (int)len, name);
		s = end;
	}
}

static void
pr_check_required(const struct prompt_set *ps, struct pr_err *e)
{
	size_t	 i, j;

	for (i = 0; i < nitems(pr_req_types); i++)
		if (pr_find_type(ps, pr_req_types[i]) == NULL)
			pr_err_add(e, "sections.conf: no line for call type "
			    "\"%s\"", pr_req_types[i]);
	for (i = 0; i < nitems(pr_req_first); i++) {
		for (j = 0; j < ps->ps_first.pl_n; j++)
			if (strcmp(ps->ps_tmpl[ps->ps_first.pl_idx[j]].pt_name,
			    pr_req_first[i]) == 0)
				break;
		if (j == ps->ps_first.pl_n)
			pr_err_add(e, "sections.conf: first message \"%s\" "
			    "not on the \"%s:\" line", pr_req_first[i],
			    PR_FIRST_KEY);
	}
}

/*
 * What is wrong with a call type's first section rendered with probe
 * values, NULL if nothing.  The LLM service takes the id with
 * /user\s*ID[:\s]+([a-f0-9\-]+)/i and the number with
 * /phone[:\s]+(\+?[\d\s\-()]+)/i, first match wins: the prompt must
 * begin with the two lines, and what follows must not extend the number.
 */
static const char *
pr_contract(const char *out)
{
	static const char	 want[] = "User ID: " PR_PROBE_ID "\n"
				    "Phone: " PR_PROBE_PHONE;
	const char		*p;

	if (strncmp(out, want, sizeof(want) - 1) != 0)
		return "must begin with the lines \"User ID: {{user_id}}\" "
		    "and \"Phone: {{phone}}\"";
	p = out + sizeof(want) - 1;
	if (*p != '\n' && *p != '\0')
		return "must end the line after {{phone}}";
	p += strspn(p, " \t\r\n\f\v");
	if (*p != '\0' && strchr("0123456789()-", *p) != NULL)
		return "must not follow the Phone line with a digit, "
		    "\"(\", \")\" or \"-\" (read as part of the number)";
	return NULL;
}

static void
pr_check_contract(const struct prompt_set *ps, struct pr_err *e)
{
	struct prompt_var	 vars[nitems(pr_vars)];
	const struct pr_tmpl	*t;
	const char		*why;
	char			*out, buf[256];
	size_t			 i;

	for (i = 0; i < nitems(pr_vars); i++) {
		vars[i].pv_name = pr_vars[i];
		vars[i].pv_value = strcmp(pr_vars[i], "user_id") == 0 ?
		    PR_PROBE_ID : strcmp(pr_vars[i], "phone") == 0 ?
		    PR_PROBE_PHONE : "x";
	}
	for (i = 0; i < ps->ps_ntype; i++) {
		if (ps->ps_type[i].pl_n == 0)
			continue;
		t = &ps->ps_tmpl[ps->ps_type[i].pl_idx[0]];
		if (t->pt_text == NULL)
			continue;
		out = prompt_render(t->pt_text, vars, nitems(vars), buf,
		    sizeof(buf));
		if (out != NULL && (why = pr_contract(out)) != NULL)
			pr_err_add(e, "%s: first section %s.txt %s",
			    ps->ps_type[i].pl_name, t->pt_name, why);
		free(out);
	}
}

struct prompt_set *
prompt_load(const char *dir, char *err, size_t errlen)
{
	struct prompt_set	*ps;
	struct pr_err		 e;
	char			*conf;

	pr_err_init(&e, err, errlen);
	if ((ps = calloc(1, sizeof(*ps))) == NULL) {
		pr_err_add(&e, "out of memory");
		return NULL;
	}
	if ((conf = pr_read(dir, "sections.conf", &e)) != NULL) {
		pr_parse_conf(ps, conf, &e);
		free(conf);
		pr_load_templates(ps, dir, &e);
		pr_check_required(ps, &e);
		pr_check_contract(ps, &e);
	}
	if (e.pe_n > 0) {
		prompt_free(ps);
		return NULL;
	}
	return ps;
}
