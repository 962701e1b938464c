/*
 * jscan.c - the strict, non-allocating JSON object scanner (jscan.h).
 * Every function returns -1 for "give up": malformed text and text
 * that is merely unusual (escapes, reals, deep nesting) alike, since
 * the caller falls back to jansson either way.
 */
#include <stddef.h>
#include <string.h>

#include "jscan.h"

#define JS_MAXDIG	18	/* no long long overflow to mirror */

static int	js_peek(struct jscan *);
static int	js_str(struct jscan *, const char **, size_t *);
static int	js_int(struct jscan *, long long *);
static int	js_word(struct jscan *, const char *);
static int	js_push(struct jscan *, int);
static void	js_pop(struct jscan *);
static int	js_value(struct jscan *, struct jval *);
static int	js_elem(struct jscan *);

/* The next byte after JSON whitespace, as jansson skips it; -1 at end. */
static int
js_peek(struct jscan *js)
{
	while (js->js_p < js->js_end && (*js->js_p == ' ' ||
	    *js->js_p == '\t' || *js->js_p == '\n' || *js->js_p == '\r'))
		js->js_p++;
	return js->js_p < js->js_end ? (unsigned char)*js->js_p : -1;
}

/*
 * Printable ASCII only: no escapes to decode, no UTF-8 to validate,
 * no control characters (which jansson rejects).  The closing quote by
 * memchr, then one table load per byte and no branch on the data: most
 * of a media message is its base64 payload.
 */
static const unsigned char js_plain[256] = {
	[' '] = 1, ['!'] = 1, ['"'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1,
	['&'] = 1, ['\''] = 1, ['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1,
	[','] = 1, ['-'] = 1, ['.'] = 1, ['/'] = 1, ['0'] = 1, ['1'] = 1,
	['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
	['8'] = 1, ['9'] = 1, [':'] = 1, [';'] = 1, ['<'] = 1, ['='] = 1,
	['>'] = 1, ['?'] = 1, ['@'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1,
	['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1,
	['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1,
	['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
	['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['['] = 1,
	[']'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['a'] = 1, ['b'] = 1,
	['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
	['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
	['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
	['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
	['{'] = 1, ['|'] = 1, ['}'] = 1, ['~'] = 1,
};

static int
js_str(struct jscan *js, const char **s, size_t *n)
{
	const char	*p = ++js->js_p, *q;
	unsigned char	 ok = 1;

	if ((q = memchr(p, '"', (size_t)(js->js_end - p))) == NULL)
		return -1;
	for (; p < q; p++)
		ok &= js_plain[(unsigned char)*p];
	if (!ok)
		return -1;
	*s = js->js_p;
	*n = (size_t)(q - js->js_p);
	js->js_p = q + 1;
	return 0;
}

/*
 * -?(0|[1-9][0-9]*).  A fraction, exponent or leading zero leaves a
 * byte that no caller accepts after a value, so those give up there.
 */
static int
js_int(struct jscan *js, long long *v)
{
	const char	*p = js->js_p;
	int		 neg = 0, dig = 0;

	*v = 0;
	if (p < js->js_end && *p == '-') {
		neg = 1;
		p++;
	}
	while (p < js->js_end && *p >= '0' && *p <= '9') {
		if (++dig > JS_MAXDIG || (dig == 2 && *v == 0))
			return -1;
		*v = *v * 10 + (*p++ - '0');
	}
	if (dig == 0)
		return -1;
	if (neg)
		*v = -*v;
	js->js_p = p;
	return 0;
}

static int
js_word(struct jscan *js, const char *w)
{
	size_t	n = strlen(w);

	if ((size_t)(js->js_end - js->js_p) < n || memcmp(js->js_p, w, n) != 0)
		return -1;
	js->js_p += n;
	return 0;
}

static int
js_push(struct jscan *js, int arr)
{
	if (js->js_depth == JS_DEPTH)
		return -1;
	js->js_base[js->js_depth] = js->js_nkeys;
	js->js_count[js->js_depth] = 0;
	js->js_arr[js->js_depth] = (char)arr;
	js->js_depth++;
	return 0;
}

static void
js_pop(struct jscan *js)
{
	js->js_depth--;
	js->js_nkeys = js->js_base[js->js_depth];
}

static int
js_value(struct jscan *js, struct jval *jv)
{
	memset(jv, 0, sizeof(*jv));
	switch (js_peek(js)) {
	case '"':
		jv->jv_type = JT_STR;
		return js_str(js, &jv->jv_str, &jv->jv_len);
	case '{':
		js->js_p++;
		jv->jv_type = JT_OBJ;
		return js_push(js, 0);
	case '[':
		js->js_p++;
		jv->jv_type = JT_ARR;
		return js_push(js, 1);
	case 't':
		jv->jv_type = JT_TRUE;
		return js_word(js, "true");
	case 'f':
		jv->jv_type = JT_FALSE;
		return js_word(js, "false");
	case 'n':
		jv->jv_type = JT_NULL;
		return js_word(js, "null");
	default:
		jv->jv_type = JT_INT;
		return js_int(js, &jv->jv_int);
	}
}

/* Starts the scan: the buffer must hold an object, nothing else. */
int
jscan_begin(struct jscan *js, const char *buf, size_t len)
{
	js->js_p = buf;
	js->js_end = buf + len;
	js->js_depth = js->js_nkeys = 0;
	if (js_peek(js) != '{')
		return -1;
	js->js_p++;
	return js_push(js, 0);
}

/*
 * One member of the innermost open object: 1 with key and value, 0
 * when the object closed, -1 to give up.  An object or array value is
 * left open: read it with jscan_next or jscan_skip before going on.
 */
int
jscan_next(struct jscan *js, struct jkey *k, struct jval *jv)
{
	int	 lvl = js->js_depth - 1, c, i;

	if (lvl < 0 || js->js_arr[lvl])
		return -1;
	c = js_peek(js);
	if (c == '}') {
		js->js_p++;
		js_pop(js);
		return 0;
	}
	if (js->js_count[lvl] > 0) {
		if (c != ',')
			return -1;
		js->js_p++;
		c = js_peek(js);
	}
	if (c != '"' || js_str(js, &k->jk_s, &k->jk_len) == -1)
		return -1;
	/* JSON_REJECT_DUPLICATES: leave a duplicate for jansson to refuse. */
	for (i = js->js_base[lvl]; i < js->js_nkeys; i++)
		if (js->js_keys[i].jk_len == k->jk_len &&
		    memcmp(js->js_keys[i].jk_s, k->jk_s, k->jk_len) == 0)
			return -1;
	if (js->js_nkeys == JS_KEYS)
		return -1;
	js->js_keys[js->js_nkeys++] = *k;
	js->js_count[lvl]++;
	if (js_peek(js) != ':')
		return -1;
	js->js_p++;
	return js_value(js, jv) == -1 ? -1 : 1;
}

/* One element of the innermost open array: 1, 0 when closed, or -1. */
static int
js_elem(struct jscan *js)
{
	struct jval	jv;
	int		lvl = js->js_depth - 1, c;

	c = js_peek(js);
	if (c == ']') {
		js->js_p++;
		js_pop(js);
		return 0;
	}
	if (js->js_count[lvl]++ > 0) {
		if (c != ',')
			return -1;
		js->js_p++;
	}
	return js_value(js, &jv) == -1 ? -1 : 1;
}

/* Consumes the rest of the innermost open object or array. */
int
jscan_skip(struct jscan *js)
{
	struct jkey	k;
	struct jval	jv;
	int		stop = js->js_depth - 1, r;

	if (stop < 0)
		return -1;
	while (js->js_depth > stop) {
		if (js->js_arr[js->js_depth - 1])
			r = js_elem(js);
		else
			r = jscan_next(js, &k, &jv);
		if (r == -1)
			return -1;
	}
	return 0;
}

/* After the outer object closed: only whitespace may follow. */
int
jscan_end(struct jscan *js)
{
	return js->js_depth == 0 && js_peek(js) == -1 ? 0 : -1;
}
