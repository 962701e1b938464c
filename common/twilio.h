/*
 * twilio.h - Twilio request signatures (X-Twilio-Signature) and form
 * bodies.  Pure functions: no I/O, no allocation visible to callers.
 * (The Twilio REST client joins this module later.)
 */
#ifndef NAIBER_TWILIO_H
#define NAIBER_TWILIO_H

#include <stddef.h>

#define TWILIO_SIG_LEN	29	/* base64 of 20 bytes + NUL */

struct tw_param {
	const char	*tp_name;
	const char	*tp_value;
};

/*
 * base64(HMAC-SHA1(token, url + name1 value1 + ...)) with names sorted
 * bytewise and, for a repeated name, its values sorted and duplicates
 * dropped (as twilio-node).  Returns 0, or -1 on allocation failure.
 * ("Bytewise" precisely: JavaScript sort() order, UTF-16 code units;
 * it differs only for characters above U+FFFF.  Also -1 for a NULL
 * token, URL, name or value, or more than 256 params.)
 */
int	twilio_sig_compute(const char *, const char *, const struct tw_param *,
	    size_t, char [TWILIO_SIG_LEN]) __attribute__((warn_unused_result));
/*
 * twilio-node validateRequest(): accepts the signature computed over
 * the URL as given, with its port removed, with the scheme's default
 * port added, and the last two with the query string re-encoded the
 * legacy way.  Constant-time compare.  Returns 1 if valid, else 0.
 */
int	twilio_sig_check(const char *, const char *, const struct tw_param *,
	    size_t, const char *);
/*
 * JSON-bodied webhook: the URL carries bodySHA256; checks the hash of
 * body and the signature over the URL alone.  1 if valid, else 0.
 */
int	twilio_sig_check_body(const char *, const char *, const void *,
	    size_t, const char *);
/*
 * Media Streams upgrade: no parameters; tries the configured wss:// URL,
 * then the https:// form, each with and without :443.  1 if valid.
 */
int	twilio_sig_check_stream(const char *, const char *, const char *);
/*
 * Parse an application/x-www-form-urlencoded body in place ('+' and
 * %XX decoded).  Returns the number of pairs, or -1 if malformed or
 * more than max pairs.  (buf must hold len + 1 bytes: a NUL may be
 * written at buf[len].  Malformed: a bad %-escape, a NUL or %00.  max
 * is capped at 256; empty pieces ("a=1&&b=2") are skipped.)
 */
int	twilio_form_parse(char *, size_t, struct tw_param *, size_t)
	    __attribute__((warn_unused_result));

#endif
