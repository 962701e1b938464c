/*
 * util.h - small helpers shared by both roles: time, base64, strings.
 */
#ifndef NAIBER_UTIL_H
#define NAIBER_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define MUST_CHECK	__attribute__((warn_unused_result))

uint64_t	now_mono_ns(void);
int		child_scrub(int, int);
uint64_t	now_real_ms(void);
/* ISO 8601 UTC with milliseconds, as JavaScript's toISOString(). */
void		iso8601_ms(uint64_t, char [32]);

size_t		strlcpy_n(char *, const char *, size_t);
int		ct_streq(const char *, const char *);
int		hex_digit(int);

/* Standard alphabet with padding. */
size_t		b64_enc_len(size_t);
int		sched_set_slice(long);
size_t		b64_encode(const uint8_t *, size_t, char *);
/* Strict: rejects bad characters and bad padding; returns -1 or length. */
long		b64_decode(const char *, size_t, uint8_t *, size_t) MUST_CHECK;
/* b64_decode()'s verdict without output: -1 or the decoded length. */
long		b64_check(const char *, size_t) MUST_CHECK;
/* Only decimal digits, 1 to maxdig (<= 18) of them: 0 and *v, or -1. */
int		dec_digits(const char *, size_t, size_t, long *) MUST_CHECK;

/* Write JSON string escape of s into out (bounded); returns -1 if short. */
int		json_escape(const char *, char *, size_t) MUST_CHECK;

int		is_loopback_addr(const void *sockaddr);
/* "+" then 7 to 15 digits, the first not 0. */
int		e164_ok(const char *);
/* n random bytes as 2n lower-case hex digits; -1 if no entropy. */
int		random_hex(char *, size_t) MUST_CHECK;
/* XML text/attribute escape of s into out; -1 if out is too short. */
int		xml_escape(const char *, char *, size_t) MUST_CHECK;

#endif
