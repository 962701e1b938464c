/*
 * fuzz_eleven_event.c - libFuzzer target for eleven_event_parse() and
 * eleven_event_free() in worker/eleven_event.c: the input is one text
 * frame from the ElevenLabs side, in a buffer of its own size (no NUL).
 * A parsed event must hold only terminated strings, the fields its type
 * promises, audio the bridge can base64-decode as it does, and nothing
 * once freed (LeakSanitizer checks every run).
 *
 * Differential: every frame is also parsed by the jansson path alone
 * (eleven_event_parse_slow), and the two must agree on accept or
 * refuse, the reason, the type and every field and audio byte; a
 * fast-path hit (ee_root NULL) must leave ee_audio inside the frame.
 * Links worker/eleven_event.c, common/jscan.c, common/util.c, jansson.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util.h"
#include "worker.h"

#define FZ_CHECK(c)	do { if (!(c)) fz_fail(__LINE__, #c); } while (0)
#define FZ_STR(a)	(memchr((a), '\0', sizeof(a)) != NULL)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void	fz_fail(int, const char *) __attribute__((noreturn));
static void	fz_check_event(const struct el_event *);
static void	fz_audio(const struct el_event *);
static void	fz_metadata(const struct el_event *);
static void	fz_equal(const struct el_event *, const struct el_event *);

static void
fz_fail(int line, const char *what)
{
	fprintf(stderr, "fuzz_eleven_event.c:%d: invariant failed: %s\n",
	    line, what);
	abort();
}

static void
fz_check_event(const struct el_event *ev)
{
	FZ_CHECK(ev->ee_root != NULL || ev->ee_type == ELE_AUDIO ||
	    ev->ee_type == ELE_PING);
	FZ_CHECK(ev->ee_type >= ELE_OTHER && ev->ee_type <= ELE_ERROR);
	FZ_CHECK(FZ_STR(ev->ee_type_name) && FZ_STR(ev->ee_conv_id) &&
	    FZ_STR(ev->ee_fmt_in) && FZ_STR(ev->ee_fmt_out) &&
	    FZ_STR(ev->ee_tool) && FZ_STR(ev->ee_error_type) &&
	    FZ_STR(ev->ee_error_msg));
	switch (ev->ee_type) {
	case ELE_AUDIO:
		fz_audio(ev);
		break;
	case ELE_METADATA:
		fz_metadata(ev);
		break;
	default:
		FZ_CHECK(ev->ee_audio == NULL);
		break;
	}
}

/* The conversation id is never cut short: it names the call's keys. */
static void
fz_metadata(const struct el_event *ev)
{
	json_t	*e;

	e = json_object_get(ev->ee_root,
	    "conversation_initiation_metadata_event");
	FZ_CHECK(ev->ee_conv_id[0] != '\0');
	FZ_CHECK(strcmp(ev->ee_conv_id, json_string_value(json_object_get(e,
	    "conversation_id"))) == 0);
}

/* bridge.c: b64_decode() of the audio, bounded as it bounds it. */
static void
fz_audio(const struct el_event *ev)
{
	uint8_t	*raw;
	size_t	 cap = ev->ee_audio_len / 4 * 3;
	long	 n;

	FZ_CHECK(ev->ee_audio != NULL);
	if ((raw = malloc(cap + 1)) == NULL)
		abort();
	n = b64_decode(ev->ee_audio, ev->ee_audio_len, raw, cap);
	FZ_CHECK(n == -1 || (n >= 0 && (size_t)n <= cap));
	FZ_CHECK(b64_check(ev->ee_audio, ev->ee_audio_len) == n);
	free(raw);
}

/* The fast path and the jansson path: the same event, byte for byte. */
static void
fz_equal(const struct el_event *a, const struct el_event *b)
{
	FZ_CHECK(a->ee_type == b->ee_type);
	FZ_CHECK(strcmp(a->ee_type_name, b->ee_type_name) == 0);
	FZ_CHECK(a->ee_event_id == b->ee_event_id);
	FZ_CHECK(strcmp(a->ee_conv_id, b->ee_conv_id) == 0);
	FZ_CHECK(strcmp(a->ee_fmt_in, b->ee_fmt_in) == 0);
	FZ_CHECK(strcmp(a->ee_fmt_out, b->ee_fmt_out) == 0);
	FZ_CHECK(strcmp(a->ee_tool, b->ee_tool) == 0);
	FZ_CHECK(strcmp(a->ee_error_type, b->ee_error_type) == 0);
	FZ_CHECK(strcmp(a->ee_error_msg, b->ee_error_msg) == 0);
	FZ_CHECK((a->ee_audio == NULL) == (b->ee_audio == NULL));
	FZ_CHECK(a->ee_audio_len == b->ee_audio_len);
	if (a->ee_audio != NULL)
		FZ_CHECK(memcmp(a->ee_audio, b->ee_audio, a->ee_audio_len) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct el_event	*ev, *slow;
	const char	*why = NULL, *swhy = NULL;
	char		*buf;
	int		 rc, rcs;

	if ((buf = malloc(size)) == NULL || (ev = malloc(sizeof(*ev))) == NULL ||
	    (slow = malloc(sizeof(*slow))) == NULL)
		abort();
	memcpy(buf, data, size);
	memset(ev, 0x5a, sizeof(*ev));
	memset(slow, 0xa5, sizeof(*slow));
	rc = eleven_event_parse(size > 0 ? buf : NULL, size, ev, &why);
	FZ_CHECK(rc == 0 || rc == -1);
	rcs = eleven_event_parse_slow(size > 0 ? buf : NULL, size, slow, &swhy);
	FZ_CHECK(rcs == rc);
	if (rc == 0) {
		fz_check_event(ev);
		fz_equal(ev, slow);
		FZ_CHECK(slow->ee_root != NULL);
		if (ev->ee_root == NULL && ev->ee_audio != NULL)
			FZ_CHECK(ev->ee_audio >= buf && ev->ee_audio +
			    ev->ee_audio_len <= buf + size);
		eleven_event_free(ev);
		FZ_CHECK(ev->ee_root == NULL && ev->ee_audio == NULL);
	} else {
		FZ_CHECK(ev->ee_root == NULL && why != NULL && *why != '\0');
		FZ_CHECK(swhy != NULL && strcmp(why, swhy) == 0);
	}
	eleven_event_free(slow);
	free(slow);
	free(ev);
	free(buf);
	return 0;
}
