/*
 * fuzz_eleven_event.c - libFuzzer target for eleven_event_parse() and
 * eleven_event_free() in worker/eleven_event.c: the input is one text
 * frame from the ElevenLabs side, in a buffer of its own size (no NUL).
 * A parsed event must hold only terminated strings, the fields its type
 * promises, audio the bridge can base64-decode as it does, and nothing
 * once freed (LeakSanitizer checks every run).  Links
 * worker/eleven_event.c, common/util.c, jansson.
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
	FZ_CHECK(ev->ee_root != NULL);
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
	if ((raw = malloc(cap)) == NULL)
		abort();
	n = b64_decode(ev->ee_audio, ev->ee_audio_len, raw, cap);
	FZ_CHECK(n == -1 || (n >= 0 && (size_t)n <= cap));
	free(raw);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct el_event	*ev;
	const char	*why = NULL;
	char		*buf;
	int		 rc;

	if ((buf = malloc(size)) == NULL || (ev = malloc(sizeof(*ev))) == NULL)
		abort();
	memcpy(buf, data, size);
	memset(ev, 0x5a, sizeof(*ev));
	rc = eleven_event_parse(size > 0 ? buf : NULL, size, ev, &why);
	FZ_CHECK(rc == 0 || rc == -1);
	if (rc == 0) {
		fz_check_event(ev);
		eleven_event_free(ev);
		FZ_CHECK(ev->ee_root == NULL && ev->ee_audio == NULL);
	} else
		FZ_CHECK(ev->ee_root == NULL && why != NULL && *why != '\0');
	free(ev);
	free(buf);
	return 0;
}
