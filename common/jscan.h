/*
 * jscan.h - a strict, non-allocating scanner for one JSON object in a
 * caller's buffer, for the hot messages (audio, 50 a second each way).
 *
 * It accepts only a subset of what jansson accepts: strings of
 * printable ASCII without escapes, integers of at most 18 digits,
 * true, false, null, objects and arrays nested at most JS_DEPTH deep
 * with at most JS_KEYS keys open at once.  Anything else, including a
 * duplicate key at any depth, makes it give up (-1): the caller then
 * hands the message to jansson, which decides.  A scan that reaches
 * jscan_end() without giving up therefore read the text as jansson
 * with JSON_REJECT_DUPLICATES would.  The returned strings and keys
 * point into the buffer and are not NUL-terminated.
 */
#ifndef NAIBER_JSCAN_H
#define NAIBER_JSCAN_H

#include <stddef.h>
#include <string.h>

#define JS_DEPTH	8
#define JS_KEYS		32

enum jtype {
	JT_STR,
	JT_INT,
	JT_NULL,
	JT_TRUE,
	JT_FALSE,
	JT_OBJ,			/* opened: read with jscan_next or jscan_skip */
	JT_ARR			/* opened: jscan_skip */
};

struct jval {
	enum jtype	 jv_type;
	const char	*jv_str;	/* JT_STR: the bytes between the quotes */
	size_t		 jv_len;
	long long	 jv_int;	/* JT_INT */
};

struct jkey {
	const char	*jk_s;
	size_t		 jk_len;
};

struct jscan {
	const char	*js_p;
	const char	*js_end;
	int		 js_depth;
	int		 js_nkeys;
	int		 js_base[JS_DEPTH];	/* this level's first key */
	int		 js_count[JS_DEPTH];	/* members or elements read */
	char		 js_arr[JS_DEPTH];
	struct jkey	 js_keys[JS_KEYS];	/* keys of the open objects */
};

int	jscan_begin(struct jscan *, const char *, size_t);
int	jscan_next(struct jscan *, struct jkey *, struct jval *);
int	jscan_skip(struct jscan *);
int	jscan_end(struct jscan *);

/* A key or string value equal to a literal. */
static inline int
jscan_eq(const char *s, size_t n, const char *lit)
{
	return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

#endif
