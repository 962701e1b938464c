/*
 * fuzz_twilio_sig.c - libFuzzer target for common/twilio.c: the form
 * body parser and the X-Twilio-Signature checks, which see every
 * webhook before anything else does.  Input: byte 0 flags, byte 1 the
 * most pairs allowed (x2), then URL, NUL, signature, NUL, form body.
 * The body is parsed in a NUL-terminated copy of len + 1 bytes into an
 * exact-size pair array; the pairs must lie in the buffer, terminated,
 * and survive re-encoding.  Then the checks run on the input's
 * signature and, with flag 1, on one computed over the URL as given,
 * which must pass (and fail with one character changed).  Links
 * common/twilio.c, libcrypto.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twilio.h"

#define FZ_CHECK(c)	do { if (!(c)) fz_fail(__LINE__, #c); } while (0)
/* The auth token of protocols.md 1.10 */
#define FZ_TOKEN	"f3a1c0de5eed0ddba11c0ffee0dd5ea1"
#define FZ_URLMAX	4096	/* twilio.c's TW_URLMAX */
#define FZ_PMAX		256	/* twilio.c's TW_MAXPARAMS */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void	fz_fail(int, const char *) __attribute__((noreturn));
static char	*fz_piece(const uint8_t **, const uint8_t *);
static int	fz_in(const char *, const char *, size_t);
static void	fz_enc(char *, size_t *, const char *);
static void	fz_reparse(const struct tw_param *, int);
static int	fz_form(const uint8_t *, size_t, size_t, char **,
		    struct tw_param **);
static void	fz_signed(const char *, const struct tw_param *, int);

static void
fz_fail(int line, const char *what)
{
	fprintf(stderr, "fuzz_twilio_sig.c:%d: invariant failed: %s\n",
	    line, what);
	abort();
}

/* The bytes up to the next NUL (or the end), as an exact-size string. */
static char *
fz_piece(const uint8_t **p, const uint8_t *end)
{
	const uint8_t	*nul = memchr(*p, '\0', (size_t)(end - *p));
	size_t		 n;
	char		*s;

	n = (size_t)((nul != NULL ? nul : end) - *p);
	if ((s = malloc(n + 1)) == NULL)
		abort();
	memcpy(s, *p, n);
	s[n] = '\0';
	*p += nul != NULL ? n + 1 : n;
	return s;
}

/* s is a terminated string inside buf[0, size). */
static int
fz_in(const char *s, const char *buf, size_t size)
{
	uintptr_t	a = (uintptr_t)buf, p = (uintptr_t)s;

	return p >= a && p < a + size && memchr(s, '\0', size - (p - a));
}

static void
fz_enc(char *out, size_t *o, const char *s)
{
	static const char	hex[] = "0123456789ABCDEF";
	unsigned char		c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9')) {
			out[(*o)++] = (char)c;
			continue;
		}
		out[(*o)++] = '%';
		out[(*o)++] = hex[c >> 4];
		out[(*o)++] = hex[c & 15];
	}
}

/* Encoded again and parsed again: the same pairs. */
static void
fz_reparse(const struct tw_param *p, int n)
{
	struct tw_param	*q;
	size_t		 cap = 1, o = 0;
	char		*buf;
	int		 i;

	for (i = 0; i < n; i++)
		cap += 3 * (strlen(p[i].tp_name) + strlen(p[i].tp_value)) + 2;
	if ((buf = malloc(cap)) == NULL ||
	    (q = malloc(sizeof(*q) * (size_t)(n + 1))) == NULL)
		abort();
	for (i = 0; i < n; i++) {
		if (i > 0)
			buf[o++] = '&';
		fz_enc(buf, &o, p[i].tp_name);
		buf[o++] = '=';
		fz_enc(buf, &o, p[i].tp_value);
	}
	FZ_CHECK(o < cap);
	FZ_CHECK(twilio_form_parse(buf, o, q, (size_t)n) == n);
	for (i = 0; i < n; i++)
		FZ_CHECK(strcmp(q[i].tp_name, p[i].tp_name) == 0 &&
		    strcmp(q[i].tp_value, p[i].tp_value) == 0);
	free(q);
	free(buf);
}

/* Parse body into *pbuf / *pp; returns the parser's answer. */
static int
fz_form(const uint8_t *body, size_t len, size_t max, char **pbuf,
    struct tw_param **pp)
{
	int	n, i;

	if ((*pbuf = malloc(len + 1)) == NULL ||
	    (*pp = malloc(sizeof(**pp) * (max > 0 ? max : 1))) == NULL)
		abort();
	memcpy(*pbuf, body, len);
	(*pbuf)[len] = '\0';
	n = twilio_form_parse(*pbuf, len, *pp, max);
	FZ_CHECK(n >= -1 && n <= (int)(max < FZ_PMAX ? max : FZ_PMAX));
	if (len > 0 && memchr(body, '\0', len) != NULL)
		FZ_CHECK(n == -1);
	for (i = 0; i < n; i++) {
		FZ_CHECK(fz_in((*pp)[i].tp_name, *pbuf, len + 1));
		FZ_CHECK((*pp)[i].tp_value[0] == '\0' ||
		    fz_in((*pp)[i].tp_value, *pbuf, len + 1));
	}
	if (n > 0)
		fz_reparse(*pp, n);
	return n;
}

/* A signature over the URL as given is always accepted. */
static void
fz_signed(const char *url, const struct tw_param *p, int n)
{
	char	sig[TWILIO_SIG_LEN];

	if (strlen(url) > FZ_URLMAX)
		return;
	FZ_CHECK(twilio_sig_compute(FZ_TOKEN, url, p, (size_t)n, sig) == 0);
	FZ_CHECK(strlen(sig) == TWILIO_SIG_LEN - 1);
	FZ_CHECK(twilio_sig_check(FZ_TOKEN, url, p, (size_t)n, sig) == 1);
	FZ_CHECK(twilio_sig_check("", url, p, (size_t)n, sig) == 0);
	sig[3] = sig[3] == 'A' ? 'B' : 'A';
	FZ_CHECK(twilio_sig_check(FZ_TOKEN, url, p, (size_t)n, sig) == 0);
	FZ_CHECK(twilio_sig_compute(FZ_TOKEN, url, NULL, 0, sig) == 0);
	FZ_CHECK(twilio_sig_check_stream(FZ_TOKEN, url, sig) == 1);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t	*p, *end = data + size;
	struct tw_param	*params;
	char		*url, *sig, *buf;
	size_t		 blen;
	int		 n, r;

	if (size < 2)
		return 0;
	p = data + 2;
	url = fz_piece(&p, end);
	sig = fz_piece(&p, end);
	blen = (size_t)(end - p);
	n = fz_form(p, blen, (size_t)data[1] * 2, &buf, &params);
	r = twilio_sig_check(FZ_TOKEN, url, params, n > 0 ? (size_t)n : 0,
	    sig);
	FZ_CHECK(r == 0 || r == 1);
	r = twilio_sig_check_stream(FZ_TOKEN, url, sig);
	FZ_CHECK(r == 0 || r == 1);
	r = twilio_sig_check_body(FZ_TOKEN, url, p, blen, sig);
	FZ_CHECK(r == 0 || r == 1);
	if ((data[0] & 1) && n >= 0)
		fz_signed(url, params, n);
	free(params);
	free(buf);
	free(sig);
	free(url);
	return 0;
}
