/*
 * fuzz_prompt.c - libFuzzer target for prompt_render() in
 * common/prompt.c.  The input is the template, then NUL-separated
 * values for the fixed variable set the worker gives (prepare.c); byte
 * 0 sizes the error buffer (exact, on the heap), byte 1 drops a
 * variable or adds a NULL value or name.  The result is compared with
 * a reference renderer written from the grammar in prompt.c: "{{",
 * blanks, a name of 1 to 32 of [a-z_], blanks, "}}"; a value is copied
 * verbatim and never expanded; at most 256 KiB out.  Links
 * common/prompt.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prompt.h"

#define FZ_CHECK(c)	do { if (!(c)) fz_fail(__LINE__, #c); } while (0)
#define FZ_OUT_MAX	(256 * 1024)
#define FZ_NAME_MAX	32
#define FZ_NAMES	"abcdefghijklmnopqrstuvwxyz_"
#define FZ_NVARS	16

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

struct fz_out {
	char	*fo_s;
	size_t	 fo_len;
	int	 fo_err;
};

static void	fz_fail(int, const char *) __attribute__((noreturn));
static void	fz_add(struct fz_out *, const char *, size_t);
static const char *fz_lookup(const struct prompt_var *, size_t,
		    const char *, size_t, int *);
static char	*fz_ref(const char *, const struct prompt_var *, size_t);
static size_t	fz_vars(struct prompt_var *, uint8_t, const char *,
		    const char *);

/* prepare.c's names (prompt.c's pr_vars). */
static const char *const fz_names[] = {
	"user_id", "phone", "name", "age", "gender", "interests", "dislikes",
	"last_summary", "recent_summaries", "part_of_day", "is_first_call",
	"call_type", "health_conditions", "medications"
};

static void
fz_fail(int line, const char *what)
{
	fprintf(stderr, "fuzz_prompt.c:%d: invariant failed: %s\n", line,
	    what);
	abort();
}

static void
fz_add(struct fz_out *o, const char *s, size_t n)
{
	char	*t;

	if (o->fo_err)
		return;
	if (n > FZ_OUT_MAX - o->fo_len) {
		o->fo_err = 1;
		return;
	}
	if ((t = realloc(o->fo_s, o->fo_len + n + 1)) == NULL)
		abort();
	o->fo_s = t;
	memcpy(o->fo_s + o->fo_len, s, n);
	o->fo_len += n;
	o->fo_s[o->fo_len] = '\0';
}

static const char *
fz_lookup(const struct prompt_var *v, size_t nv, const char *name,
    size_t len, int *found)
{
	size_t	i;

	*found = 0;
	for (i = 0; i < nv; i++)
		if (v[i].pv_name != NULL && strlen(v[i].pv_name) == len &&
		    strncmp(v[i].pv_name, name, len) == 0) {
			*found = 1;
			return v[i].pv_value != NULL ? v[i].pv_value : "";
		}
	return NULL;
}

/* The reference: NULL where prompt_render() must fail. */
static char *
fz_ref(const char *text, const struct prompt_var *v, size_t nv)
{
	struct fz_out	 o = { NULL, 0, 0 };
	const char	*s = text, *p, *name, *val;
	size_t		 len;
	int		 found;

	fz_add(&o, "", 0);
	while ((p = strstr(s, "{{")) != NULL) {
		fz_add(&o, s, (size_t)(p - s));
		p += 2;
		p += strspn(p, " \t");
		name = p;
		len = strspn(p, FZ_NAMES);
		p += len;
		p += strspn(p, " \t");
		if (len == 0 || len > FZ_NAME_MAX || strncmp(p, "}}", 2) != 0)
			o.fo_err = 1;
		else if ((val = fz_lookup(v, nv, name, len, &found)) == NULL)
			o.fo_err = 1;
		else
			fz_add(&o, val, strlen(val));
		if (o.fo_err) {
			free(o.fo_s);
			return NULL;
		}
		s = p + 2;
	}
	fz_add(&o, s, strlen(s));
	if (o.fo_err) {
		free(o.fo_s);
		return NULL;
	}
	return o.fo_s;
}

/* Values: NUL-separated pieces of [vals, end), reused in turn. */
static size_t
fz_vars(struct prompt_var *v, uint8_t sel, const char *vals,
    const char *end)
{
	const char	*p = vals;
	size_t		 i, n = 0;

	for (i = 0; i < sizeof(fz_names) / sizeof(fz_names[0]); i++) {
		if ((size_t)(sel & 0x0f) == i + 1)
			continue;	/* a name the template may still use */
		v[n].pv_name = fz_names[i];
		v[n].pv_value = "";
		if (vals < end) {
			v[n].pv_value = p;
			p += strlen(p) + 1;
			if (p >= end)
				p = vals;
		}
		n++;
	}
	if (sel & 0x10)
		v[n - 1].pv_value = NULL;
	if (sel & 0x20)
		v[n++] = (struct prompt_var){ NULL, "ignored" };
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct prompt_var	 vars[FZ_NVARS];
	char			*in, *tmpl, *err = NULL, *out, *ref;
	size_t			 n, tlen, errlen, nv;

	if (size < 2)
		return 0;
	n = size - 2;
	/* One NUL-terminated copy: template, NUL, values. */
	if ((in = malloc(n + 1)) == NULL)
		abort();
	memcpy(in, data + 2, n);
	in[n] = '\0';
	tlen = strlen(in);
	if ((tmpl = malloc(tlen + 1)) == NULL)
		abort();
	memcpy(tmpl, in, tlen + 1);
	nv = fz_vars(vars, data[1], in + tlen + 1, in + n + 1);
	errlen = data[0] % 80;
	if (errlen > 0 && (err = malloc(errlen)) == NULL)
		abort();
	out = prompt_render(tmpl, vars, nv, err, errlen);
	ref = fz_ref(tmpl, vars, nv);
	FZ_CHECK((out == NULL) == (ref == NULL));
	if (out != NULL)
		FZ_CHECK(strcmp(out, ref) == 0);
	else if (errlen > 0)
		FZ_CHECK(memchr(err, '\0', errlen) != NULL &&
		    (errlen == 1 || err[0] != '\0'));
	free(ref);
	free(out);
	free(err);
	free(tmpl);
	free(in);
	return 0;
}
