/*
 * fuzz_twilio_event.c - libFuzzer target for twilio_event_parse() and
 * twilio_event_free() in worker/twilio_event.c: the input is one text
 * frame from the Twilio side, in a buffer of its own size (no NUL).
 * A parsed event must hold only terminated strings within their
 * arrays, a media payload the worker can base64-decode as it does, and
 * nothing once freed (LeakSanitizer checks every run).  Each frame is
 * parsed twice into the same struct, as twilio_ws.c reuses it.
 *
 * Differential: every frame is also parsed by the jansson path alone
 * (twilio_event_parse_slow), and the two must agree on accept or
 * refuse, the reason, the type and every field and payload byte; a
 * fast-path hit (te_root NULL) must leave te_payload inside the frame.
 * Links worker/twilio_event.c, common/jscan.c, common/util.c, jansson.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "worker.h"

#define FZ_CHECK(c)	do { if (!(c)) fz_fail(__LINE__, #c); } while (0)
#define FZ_STR(a)	(memchr((a), '\0', sizeof(a)) != NULL)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void	fz_fail(int, const char *) __attribute__((noreturn));
static void	fz_check_event(const struct tw_event *);
static void	fz_media(const struct tw_event *);
static void	fz_same(const struct tw_event *, const struct tw_event *);
static void	fz_equal(const struct tw_event *, const struct tw_event *);

static void
fz_fail(int line, const char *what)
{
	fprintf(stderr, "fuzz_twilio_event.c:%d: invariant failed: %s\n",
	    line, what);
	abort();
}

static void
fz_check_event(const struct tw_event *ev)
{
	int	i;

	FZ_CHECK(ev->te_root != NULL || ev->te_type == TWE_MEDIA);
	FZ_CHECK(ev->te_type >= TWE_CONNECTED && ev->te_type <= TWE_UNKNOWN);
	FZ_CHECK(FZ_STR(ev->te_stream_sid) && FZ_STR(ev->te_call_sid) &&
	    FZ_STR(ev->te_account_sid) && FZ_STR(ev->te_encoding) &&
	    FZ_STR(ev->te_track) && FZ_STR(ev->te_name) &&
	    FZ_STR(ev->te_digit));
	FZ_CHECK(ev->te_nparams >= 0 && ev->te_nparams <= TW_MAX_PARAMS);
	for (i = 0; i < ev->te_nparams; i++) {
		FZ_CHECK(FZ_STR(ev->te_pname[i]) && FZ_STR(ev->te_pvalue[i]));
		FZ_CHECK(twilio_event_param(ev, ev->te_pname[i]) != NULL);
	}
	if (ev->te_type == TWE_START)
		FZ_CHECK(ev->te_call_sid[0] != '\0' &&
		    ev->te_stream_sid[0] != '\0');
	if (ev->te_type == TWE_MEDIA)
		fz_media(ev);
	else
		FZ_CHECK(ev->te_payload == NULL);
}

/*
 * twilio_ws.c: b64_check() of the payload, which must give
 * b64_decode()'s verdict and length.
 */
static void
fz_media(const struct tw_event *ev)
{
	uint8_t	*raw;
	size_t	 cap = ev->te_payload_len / 4 * 3;
	long	 n;

	FZ_CHECK(ev->te_payload != NULL);
	if ((raw = malloc(cap + 1)) == NULL)
		abort();
	n = b64_decode(ev->te_payload, ev->te_payload_len, raw, cap);
	FZ_CHECK(n >= -1 && (n == -1 || (size_t)n <= cap));
	FZ_CHECK(b64_check(ev->te_payload, ev->te_payload_len) == n);
	free(raw);
}

/* The fast path and the jansson path: the same event, byte for byte. */
static void
fz_equal(const struct tw_event *a, const struct tw_event *b)
{
	int	i;

	FZ_CHECK(a->te_type == b->te_type && a->te_seq == b->te_seq);
	FZ_CHECK(strcmp(a->te_stream_sid, b->te_stream_sid) == 0);
	FZ_CHECK(strcmp(a->te_call_sid, b->te_call_sid) == 0);
	FZ_CHECK(strcmp(a->te_account_sid, b->te_account_sid) == 0);
	FZ_CHECK(strcmp(a->te_encoding, b->te_encoding) == 0);
	FZ_CHECK(a->te_rate == b->te_rate && a->te_channels == b->te_channels);
	FZ_CHECK(a->te_chunk == b->te_chunk &&
	    a->te_timestamp == b->te_timestamp);
	FZ_CHECK(strcmp(a->te_track, b->te_track) == 0);
	FZ_CHECK(strcmp(a->te_name, b->te_name) == 0);
	FZ_CHECK(strcmp(a->te_digit, b->te_digit) == 0);
	FZ_CHECK(a->te_nparams == b->te_nparams);
	for (i = 0; i < a->te_nparams; i++)
		FZ_CHECK(strcmp(a->te_pname[i], b->te_pname[i]) == 0 &&
		    strcmp(a->te_pvalue[i], b->te_pvalue[i]) == 0);
	FZ_CHECK((a->te_payload == NULL) == (b->te_payload == NULL));
	FZ_CHECK(a->te_payload_len == b->te_payload_len);
	if (a->te_payload != NULL)
		FZ_CHECK(memcmp(a->te_payload, b->te_payload,
		    a->te_payload_len) == 0);
}

static void
fz_same(const struct tw_event *a, const struct tw_event *b)
{
	int	i;

	FZ_CHECK(a->te_type == b->te_type && a->te_seq == b->te_seq);
	FZ_CHECK(strcmp(a->te_stream_sid, b->te_stream_sid) == 0);
	FZ_CHECK(strcmp(a->te_call_sid, b->te_call_sid) == 0);
	FZ_CHECK(a->te_nparams == b->te_nparams);
	for (i = 0; i < a->te_nparams; i++)
		FZ_CHECK(strcmp(a->te_pvalue[i], b->te_pvalue[i]) == 0);
	FZ_CHECK(a->te_payload_len == b->te_payload_len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tw_event	*ev, *first, *slow;
	const char	*why = NULL, *swhy = NULL;
	char		*buf;
	int		 rc, rc2, rcs;

	if ((buf = malloc(size)) == NULL ||
	    (ev = malloc(sizeof(*ev))) == NULL ||
	    (first = malloc(sizeof(*first))) == NULL ||
	    (slow = malloc(sizeof(*slow))) == NULL)
		abort();
	memcpy(buf, data, size);
	memset(ev, 0x5a, sizeof(*ev));
	memset(slow, 0xa5, sizeof(*slow));
	rc = twilio_event_parse(size > 0 ? buf : NULL, size, ev, &why);
	FZ_CHECK(rc == 0 || rc == -1);
	rcs = twilio_event_parse_slow(size > 0 ? buf : NULL, size, slow,
	    &swhy);
	FZ_CHECK(rcs == rc);
	if (rc == 0) {
		fz_check_event(ev);
		fz_equal(ev, slow);
		FZ_CHECK(slow->te_root != NULL);
		if (ev->te_root == NULL)
			FZ_CHECK(ev->te_payload >= buf && ev->te_payload +
			    ev->te_payload_len <= buf + size);
		memcpy(first, ev, sizeof(*first));
	} else {
		FZ_CHECK(ev->te_root == NULL && why != NULL && *why != '\0');
		FZ_CHECK(swhy != NULL && strcmp(why, swhy) == 0);
	}
	twilio_event_free(slow);
	/* Again into the same struct: the same answer. */
	rc2 = twilio_event_parse(size > 0 ? buf : NULL, size, ev, &why);
	FZ_CHECK(rc2 == rc);
	if (rc == 0) {
		fz_check_event(ev);
		fz_same(first, ev);
		twilio_event_free(first);
		twilio_event_free(ev);
		FZ_CHECK(ev->te_root == NULL && ev->te_payload == NULL);
	}
	free(slow);
	free(first);
	free(ev);
	free(buf);
	return 0;
}
