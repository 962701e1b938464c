/*
 * test_twilio_event.c - unit tests for worker/twilio_event.c, the parser
 * of Twilio Media Streams text frames.  The accepted messages are the
 * examples of docs/protocols.md section 1.2, with strings and with JSON
 * numbers; every rejection must give a reason and leak nothing (the
 * test binary runs under LeakSanitizer).  The non-allocating fast path
 * for media must take the usual messages, give up on everything odd,
 * and always agree with the jansson path (twilio_event_parse_slow).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "worker.h"

static int	parse(const char *, struct tw_event *, const char **);
static void	reject(const char *);
static char	*start_with_params(int, size_t, size_t);
static void	test_connected(void **);
static void	test_start(void **);
static void	test_start_numbers(void **);
static void	test_media(void **);
static void	test_media_numbers(void **);
static void	test_dtmf(void **);
static void	test_mark(void **);
static void	test_stop(void **);
static void	test_unknown_event(void **);
static void	test_reject_json(void **);
static void	test_reject_event(void **);
static void	test_reject_media(void **);
static void	test_reject_start(void **);
static void	test_params_limit(void **);
static void	test_param_value_limit(void **);
static void	test_sid_limit(void **);
static void	test_duplicate_keys(void **);
static void	test_oversized(void **);
static void	test_binary_frame(void **);
static void	test_free_twice(void **);
static void	same_event(const struct tw_event *, const struct tw_event *);
static void	fast(const char *, int);
static void	test_fast_hit(void **);
static void	test_fast_fallback(void **);
static void	test_fast_reject(void **);
static void	test_fast_numbers(void **);

/* What fast() expects of twilio_event_parse(). */
#define F_HIT		1	/* accepted in place, te_root NULL */
#define F_SLOW		0	/* accepted by the jansson path */
#define F_REJECT	-1

/* docs/protocols.md section 1.2, verbatim (SIDs shortened with "…"). */
#define EX_CONNECTED \
	"{\"event\":\"connected\",\"protocol\":\"Call\"," \
	"\"version\":\"1.0.0\"}"
#define EX_START \
	"{\"event\":\"start\",\"sequenceNumber\":\"1\"," \
	"\"streamSid\":\"MZ7d1e…\",\n" \
	" \"start\":{\"streamSid\":\"MZ7d1e…\",\"accountSid\":\"AC03c2…\"," \
	"\"callSid\":\"CA9a44…\",\n" \
	"          \"tracks\":[\"inbound\"],\n" \
	"          \"customParameters\":{\"call_type\":\"health_check\"," \
	"\"nonce\":\"q8Zr1\"},\n" \
	"          \"mediaFormat\":{\"encoding\":\"audio/x-mulaw\"," \
	"\"sampleRate\":8000,\"channels\":1}}}"
#define EX_MEDIA \
	"{\"event\":\"media\",\"sequenceNumber\":\"2\"," \
	"\"streamSid\":\"MZ7d1e…\",\n" \
	" \"media\":{\"track\":\"inbound\",\"chunk\":\"1\"," \
	"\"timestamp\":\"20\",\"payload\":\"/////38A…\"}}"
#define EX_DTMF \
	"{\"event\":\"dtmf\",\"sequenceNumber\":\"57\"," \
	"\"streamSid\":\"MZ7d1e…\",\n" \
	" \"dtmf\":{\"track\":\"inbound_track\",\"digit\":\"5\"}}"
#define EX_MARK \
	"{\"event\":\"mark\",\"sequenceNumber\":\"88\"," \
	"\"streamSid\":\"MZ7d1e…\",\"mark\":{\"name\":\"ag-17\"}}"
#define EX_STOP \
	"{\"event\":\"stop\",\"sequenceNumber\":\"912\"," \
	"\"streamSid\":\"MZ7d1e…\",\n" \
	" \"stop\":{\"accountSid\":\"AC03c2…\",\"callSid\":\"CA9a44…\"}}"

static int
parse(const char *s, struct tw_event *ev, const char **why)
{
	*why = NULL;
	return twilio_event_parse(s, strlen(s), ev, why);
}

/* Must fail with a reason; the event must hold nothing to free. */
static void
reject(const char *s)
{
	struct tw_event	*ev;
	const char	*why = NULL;

	ev = calloc(1, sizeof(*ev));
	assert_non_null(ev);
	if (parse(s, ev, &why) != -1)
		fail_msg("accepted: %.200s", s);
	assert_non_null(why);
	assert_null(ev->te_root);
	assert_null(ev->te_payload);
	twilio_event_free(ev);
	free(ev);
}

static void
test_connected(void **state)
{
	struct tw_event	 ev;
	const char	*why;

	(void)state;
	assert_int_equal(parse(EX_CONNECTED, &ev, &why), 0);
	assert_int_equal(ev.te_type, TWE_CONNECTED);
	assert_int_equal(ev.te_seq, -1);
	assert_string_equal(ev.te_stream_sid, "");
	assert_int_equal(ev.te_nparams, 0);
	assert_non_null(ev.te_root);
	twilio_event_free(&ev);
	assert_null(ev.te_root);
}

static void
test_start(void **state)
{
	struct tw_event	 ev;
	const char	*why;

	(void)state;
	assert_int_equal(parse(EX_START, &ev, &why), 0);
	assert_int_equal(ev.te_type, TWE_START);
	assert_int_equal(ev.te_seq, 1);
	assert_string_equal(ev.te_stream_sid, "MZ7d1e…");
	assert_string_equal(ev.te_call_sid, "CA9a44…");
	assert_string_equal(ev.te_account_sid, "AC03c2…");
	assert_string_equal(ev.te_encoding, "audio/x-mulaw");
	assert_int_equal(ev.te_rate, 8000);
	assert_int_equal(ev.te_channels, 1);
	assert_int_equal(ev.te_nparams, 2);
	assert_string_equal(twilio_event_param(&ev, "call_type"),
	    "health_check");
	assert_string_equal(twilio_event_param(&ev, "nonce"), "q8Zr1");
	assert_null(twilio_event_param(&ev, "missing"));
	assert_null(twilio_event_param(&ev, "Nonce"));
	assert_null(twilio_event_param(&ev, ""));
	twilio_event_free(&ev);
}

static void
test_start_numbers(void **state)
{
	struct tw_event	 ev;
	const char	*why;

	(void)state;
	/* Numbers where the example has strings, stream SID only inside. */
	assert_int_equal(parse("{\"event\":\"start\",\"sequenceNumber\":1,"
	    "\"start\":{\"streamSid\":\"MZ1\",\"accountSid\":\"AC1\","
	    "\"callSid\":\"CA1\",\"customParameters\":{},"
	    "\"mediaFormat\":{\"encoding\":\"audio/x-mulaw\","
	    "\"sampleRate\":\"8000\",\"channels\":\"1\"}}}", &ev, &why), 0);
	assert_int_equal(ev.te_type, TWE_START);
	assert_int_equal(ev.te_seq, 1);
	assert_string_equal(ev.te_stream_sid, "MZ1");
	assert_string_equal(ev.te_call_sid, "CA1");
	assert_int_equal(ev.te_rate, 8000);
	assert_int_equal(ev.te_channels, 1);
	assert_int_equal(ev.te_nparams, 0);
	assert_null(twilio_event_param(&ev, "call_type"));
	twilio_event_free(&ev);

	/* A second parse into the same struct starts afresh. */
	assert_int_equal(parse(EX_START, &ev, &why), 0);
	assert_int_equal(ev.te_nparams, 2);
	twilio_event_free(&ev);
	assert_int_equal(parse(EX_CONNECTED, &ev, &why), 0);
	assert_int_equal(ev.te_nparams, 0);
	assert_null(twilio_event_param(&ev, "nonce"));
	assert_string_equal(ev.te_call_sid, "");
	twilio_event_free(&ev);
}

static void
test_media(void **state)
{
	struct tw_event	 ev;
	const char	*why;

	(void)state;
	assert_int_equal(parse(EX_MEDIA, &ev, &why), 0);
	assert_int_equal(ev.te_type, TWE_MEDIA);
	assert_int_equal(ev.te_seq, 2);
	assert_string_equal(ev.te_stream_sid, "MZ7d1e…");
	assert_string_equal(ev.te_track, "inbound");
	assert_int_equal(ev.te_chunk, 1);
	assert_int_equal(ev.te_timestamp, 20);
	assert_non_null(ev.te_payload);
	assert_int_equal(ev.te_payload_len, strlen("/////38A…"));
	assert_memory_equal(ev.te_payload, "/////38A…", ev.te_payload_len);
	twilio_event_free(&ev);
	assert_null(ev.te_payload);
}

static void
test_media_numbers(void **state)
{
	struct tw_event	 ev;
	const char	*why;

	(void)state;
	assert_int_equal(parse("{\"event\":\"media\",\"sequenceNumber\":2,"
	    "\"streamSid\":\"MZ7d1e…\",\"media\":{\"track\":\"inbound\","
	    "\"chunk\":1,\"timestamp\":20,\"payload\":\"/////38A\"}}",
	    &ev, &why), 0);
	assert_int_equal(ev.te_type, TWE_MEDIA);
	assert_int_equal(ev.te_seq, 2);
	assert_int_equal(ev.te_chunk, 1);
	assert_int_equal(ev.te_timestamp, 20);
	assert_int_equal(ev.te_payload_len, 8);
	assert_memory_equal(ev.te_payload, "/////38A", 8);
	twilio_event_free(&ev);

	/* Non-numeric counters read as absent, not as an error. */
	assert_int_equal(parse("{\"event\":\"media\",\"sequenceNumber\":\"x\","
	    "\"media\":{\"chunk\":\"1a\",\"timestamp\":1.5,"
	    "\"payload\":\"\"}}", &ev, &why), 0);
	assert_int_equal(ev.te_seq, -1);
	assert_int_equal(ev.te_chunk, -1);
	assert_int_equal(ev.te_timestamp, -1);
	assert_int_equal(ev.te_payload_len, 0);
	twilio_event_free(&ev);
}

static void
test_dtmf(void **state)
{
	struct tw_event	 ev;
	const char	*why;

	(void)state;
	assert_int_equal(parse(EX_DTMF, &ev, &why), 0);
	assert_int_equal(ev.te_type, TWE_DTMF);
	assert_int_equal(ev.te_seq, 57);
	assert_string_equal(ev.te_digit, "5");
	twilio_event_free(&ev);
	assert_int_equal(parse("{\"event\":\"dtmf\",\"sequenceNumber\":57,"
	    "\"streamSid\":\"MZ7d1e…\",\"dtmf\":{\"track\":\"inbound_track\","
	    "\"digit\":\"#\"}}", &ev, &why), 0);
	assert_int_equal(ev.te_seq, 57);
	assert_string_equal(ev.te_digit, "#");
	twilio_event_free(&ev);
}

static void
test_mark(void **state)
{
	struct tw_event	 ev;
	const char	*why;

	(void)state;
	assert_int_equal(parse(EX_MARK, &ev, &why), 0);
	assert_int_equal(ev.te_type, TWE_MARK);
	assert_int_equal(ev.te_seq, 88);
	assert_string_equal(ev.te_stream_sid, "MZ7d1e…");
	assert_string_equal(ev.te_name, "ag-17");
	twilio_event_free(&ev);
	assert_int_equal(parse("{\"event\":\"mark\",\"sequenceNumber\":88,"
	    "\"streamSid\":\"MZ7d1e…\",\"mark\":{\"name\":\"ag-17\"}}",
	    &ev, &why), 0);
	assert_int_equal(ev.te_seq, 88);
	assert_string_equal(ev.te_name, "ag-17");
	twilio_event_free(&ev);
}

static void
test_stop(void **state)
{
	struct tw_event	 ev;
	const char	*why;

	(void)state;
	assert_int_equal(parse(EX_STOP, &ev, &why), 0);
	assert_int_equal(ev.te_type, TWE_STOP);
	assert_int_equal(ev.te_seq, 912);
	assert_string_equal(ev.te_stream_sid, "MZ7d1e…");
	assert_string_equal(ev.te_call_sid, "CA9a44…");
	twilio_event_free(&ev);
	assert_int_equal(parse("{\"event\":\"stop\",\"sequenceNumber\":912,"
	    "\"streamSid\":\"MZ7d1e…\",\"stop\":{\"accountSid\":\"AC03c2…\","
	    "\"callSid\":\"CA9a44…\"}}", &ev, &why), 0);
	assert_int_equal(ev.te_seq, 912);
	assert_string_equal(ev.te_call_sid, "CA9a44…");
	twilio_event_free(&ev);
}

static void
test_unknown_event(void **state)
{
	struct tw_event	 ev;
	const char	*why;

	(void)state;
	assert_int_equal(parse("{\"event\":\"transcription\","
	    "\"sequenceNumber\":\"3\",\"streamSid\":\"MZ1\","
	    "\"whatever\":[1,2,{}]}", &ev, &why), 0);
	assert_int_equal(ev.te_type, TWE_UNKNOWN);
	assert_int_equal(ev.te_seq, 3);
	assert_string_equal(ev.te_stream_sid, "MZ1");
	twilio_event_free(&ev);
	/* Event names are case-sensitive. */
	assert_int_equal(parse("{\"event\":\"Media\"}", &ev, &why), 0);
	assert_int_equal(ev.te_type, TWE_UNKNOWN);
	twilio_event_free(&ev);
	assert_int_equal(parse("{\"event\":\"\"}", &ev, &why), 0);
	assert_int_equal(ev.te_type, TWE_UNKNOWN);
	twilio_event_free(&ev);
}

static void
test_reject_json(void **state)
{
	(void)state;
	reject("{");
	reject("{\"event\":\"media\"");
	reject("{\"event\":\"connected\",}");
	reject("not json");
	reject("{\"event\":\"connected\"} trailing");
	reject("[]");
	reject("[{\"event\":\"connected\"}]");
	reject("\"connected\"");
	reject("42");
	reject("null");
	reject(" ");
	reject("{\"event\":\"conn\\u0000ected\"}");
	reject("{\"event\":\"\xff\xfe\"}");
}

static void
test_reject_event(void **state)
{
	(void)state;
	reject("{}");
	reject("{\"protocol\":\"Call\",\"version\":\"1.0.0\"}");
	reject("{\"event\":null}");
	reject("{\"event\":1}");
	reject("{\"event\":[\"media\"]}");
	reject("{\"event\":{\"name\":\"media\"}}");
	reject("{\"event\":true}");
	reject("{\"event\":\"connected\",\"streamSid\":7}");
	reject("{\"event\":\"mark\",\"mark\":\"ag-17\"}");
	reject("{\"event\":\"mark\"}");
	reject("{\"event\":\"mark\",\"mark\":{\"name\":5}}");
	reject("{\"event\":\"dtmf\"}");
	reject("{\"event\":\"dtmf\",\"dtmf\":{\"digit\":\"123456789\"}}");
	reject("{\"event\":\"stop\",\"stop\":[]}");
	reject("{\"event\":\"stop\",\"stop\":{\"callSid\":1}}");
}

static void
test_reject_media(void **state)
{
	(void)state;
	reject("{\"event\":\"media\"}");
	reject("{\"event\":\"media\",\"media\":null}");
	reject("{\"event\":\"media\",\"media\":\"abc\"}");
	reject("{\"event\":\"media\",\"media\":{}}");
	reject("{\"event\":\"media\",\"media\":{\"track\":\"inbound\"}}");
	reject("{\"event\":\"media\",\"media\":{\"payload\":null}}");
	reject("{\"event\":\"media\",\"media\":{\"payload\":12}}");
	reject("{\"event\":\"media\",\"media\":{\"payload\":[\"AA==\"]}}");
	reject("{\"event\":\"media\",\"media\":{\"payload\":{}}}");
	reject("{\"event\":\"media\",\"media\":{\"payload\":\"AA==\","
	    "\"track\":\"inbound_track_is_long\"}}");
}

static void
test_reject_start(void **state)
{
	(void)state;
	/* The example without callSid. */
	reject("{\"event\":\"start\",\"sequenceNumber\":\"1\","
	    "\"streamSid\":\"MZ1\",\"start\":{\"streamSid\":\"MZ1\","
	    "\"accountSid\":\"AC1\",\"tracks\":[\"inbound\"]}}");
	reject("{\"event\":\"start\",\"streamSid\":\"MZ1\","
	    "\"start\":{\"callSid\":\"\"}}");
	reject("{\"event\":\"start\",\"streamSid\":\"MZ1\","
	    "\"start\":{\"callSid\":42}}");
	/* No stream SID anywhere. */
	reject("{\"event\":\"start\",\"start\":{\"callSid\":\"CA1\"}}");
	reject("{\"event\":\"start\",\"streamSid\":\"MZ1\"}");
	reject("{\"event\":\"start\",\"streamSid\":\"MZ1\",\"start\":[]}");
	reject("{\"event\":\"start\",\"streamSid\":\"MZ1\","
	    "\"start\":{\"callSid\":\"CA1\",\"accountSid\":[]}}");
	/* customParameters not an object. */
	reject("{\"event\":\"start\",\"streamSid\":\"MZ1\","
	    "\"start\":{\"callSid\":\"CA1\",\"customParameters\":[]}}");
	reject("{\"event\":\"start\",\"streamSid\":\"MZ1\","
	    "\"start\":{\"callSid\":\"CA1\",\"customParameters\":\"a=b\"}}");
	/* A customParameters value not a string. */
	reject("{\"event\":\"start\",\"streamSid\":\"MZ1\","
	    "\"start\":{\"callSid\":\"CA1\",\"customParameters\":"
	    "{\"call_type\":\"x\",\"n\":1}}}");
	reject("{\"event\":\"start\",\"streamSid\":\"MZ1\","
	    "\"start\":{\"callSid\":\"CA1\",\"customParameters\":"
	    "{\"n\":null}}}");
	reject("{\"event\":\"start\",\"streamSid\":\"MZ1\","
	    "\"start\":{\"callSid\":\"CA1\",\"customParameters\":"
	    "{\"n\":{\"a\":\"b\"}}}}");
	/* mediaFormat not an object, encoding too long. */
	reject("{\"event\":\"start\",\"streamSid\":\"MZ1\","
	    "\"start\":{\"callSid\":\"CA1\",\"mediaFormat\":\"mulaw\"}}");
	reject("{\"event\":\"start\",\"streamSid\":\"MZ1\","
	    "\"start\":{\"callSid\":\"CA1\",\"mediaFormat\":"
	    "{\"encoding\":\"audio/x-mulaw-but-much-longer-than-32\"}}}");
}

/* A start message with n parameters of the given name and value sizes. */
static char *
start_with_params(int n, size_t namelen, size_t vallen)
{
	size_t	cap = 256 + (size_t)n * (namelen + vallen + 16), o;
	char	*s = malloc(cap);
	int	 i;

	assert_non_null(s);
	o = (size_t)snprintf(s, cap, "{\"event\":\"start\",\"streamSid\":"
	    "\"MZ1\",\"start\":{\"callSid\":\"CA1\",\"customParameters\":{");
	for (i = 0; i < n; i++) {
		if (i > 0)
			s[o++] = ',';
		s[o++] = '"';
		memset(s + o, 'k', namelen - 2);
		o += namelen - 2;
		o += (size_t)snprintf(s + o, cap - o, "%02d", i);
		s[o++] = '"';
		s[o++] = ':';
		s[o++] = '"';
		memset(s + o, 'v', vallen);
		o += vallen;
		s[o++] = '"';
	}
	snprintf(s + o, cap - o, "}}}");
	return s;
}

static void
test_params_limit(void **state)
{
	struct tw_event	 ev;
	const char	*why;
	char		*s;

	(void)state;
	s = start_with_params(TW_MAX_PARAMS, 8, 4);
	assert_int_equal(parse(s, &ev, &why), 0);
	assert_int_equal(ev.te_nparams, TW_MAX_PARAMS);
	assert_string_equal(twilio_event_param(&ev, "kkkkkk00"), "vvvv");
	assert_string_equal(twilio_event_param(&ev, "kkkkkk15"), "vvvv");
	twilio_event_free(&ev);
	free(s);
	s = start_with_params(TW_MAX_PARAMS + 1, 8, 4);
	reject(s);
	free(s);
	s = start_with_params(40, 8, 4);
	reject(s);
	free(s);
	/* Parameter names up to 63 bytes. */
	s = start_with_params(1, 63, 1);
	assert_int_equal(parse(s, &ev, &why), 0);
	assert_int_equal(strlen(ev.te_pname[0]), 63);
	twilio_event_free(&ev);
	free(s);
	s = start_with_params(1, 64, 1);
	reject(s);
	free(s);
}

static void
test_param_value_limit(void **state)
{
	struct tw_event	 ev;
	const char	*why;
	char		*s;

	(void)state;
	s = start_with_params(2, 4, 511);
	assert_int_equal(parse(s, &ev, &why), 0);
	assert_int_equal(ev.te_nparams, 2);
	assert_int_equal(strlen(twilio_event_param(&ev, "kk01")), 511);
	twilio_event_free(&ev);
	free(s);
	s = start_with_params(1, 4, 512);
	reject(s);
	free(s);
	s = start_with_params(3, 4, 4000);
	reject(s);
	free(s);
}

static void
test_sid_limit(void **state)
{
	static const char *const fmt[] = {
	    "{\"event\":\"media\",\"streamSid\":\"%s\","
	    "\"media\":{\"payload\":\"\"}}",
	    "{\"event\":\"start\",\"start\":{\"streamSid\":\"%s\","
	    "\"callSid\":\"CA1\"}}",
	    "{\"event\":\"start\",\"streamSid\":\"MZ1\","
	    "\"start\":{\"callSid\":\"%s\"}}",
	    "{\"event\":\"start\",\"streamSid\":\"MZ1\","
	    "\"start\":{\"callSid\":\"CA1\",\"accountSid\":\"%s\"}}",
	    "{\"event\":\"stop\",\"streamSid\":\"MZ1\","
	    "\"stop\":{\"callSid\":\"%s\"}}",
	};
	struct tw_event	 ev;
	const char	*why;
	char		 sid[80], msg[512];
	size_t		 i;

	(void)state;
	for (i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
		memset(sid, 'A', sizeof(sid));
		sid[63] = '\0';
		snprintf(msg, sizeof(msg), fmt[i], sid);
		assert_int_equal(parse(msg, &ev, &why), 0);
		twilio_event_free(&ev);
		sid[63] = 'A';
		sid[64] = '\0';
		snprintf(msg, sizeof(msg), fmt[i], sid);
		reject(msg);
		sid[64] = 'A';
		sid[79] = '\0';
		snprintf(msg, sizeof(msg), fmt[i], sid);
		reject(msg);
	}
}

static void
test_duplicate_keys(void **state)
{
	(void)state;
	reject("{\"event\":\"media\",\"event\":\"stop\"}");
	reject("{\"event\":\"media\",\"media\":{\"payload\":\"AA==\","
	    "\"payload\":\"AQ==\"}}");
	reject("{\"event\":\"start\",\"streamSid\":\"MZ1\","
	    "\"start\":{\"callSid\":\"CA1\",\"callSid\":\"CA2\"}}");
	reject("{\"event\":\"start\",\"streamSid\":\"MZ1\","
	    "\"start\":{\"callSid\":\"CA1\",\"customParameters\":"
	    "{\"a\":\"1\",\"a\":\"2\"}}}");
}

static void
test_oversized(void **state)
{
	struct tw_event	 ev;
	const char	*why;
	const char	*head =
			    "{\"event\":\"media\",\"media\":{\"payload\":\"";
	size_t		 max = 256 * 1024, hl = strlen(head), pl;
	char		*s;

	(void)state;
	s = malloc(max + 2);
	assert_non_null(s);
	/* Exactly 256 KiB: accepted. */
	pl = max - hl - 3;
	memcpy(s, head, hl);
	memset(s + hl, 'A', pl);
	memcpy(s + hl + pl, "\"}}", 4);
	assert_int_equal(strlen(s), max);
	assert_int_equal(twilio_event_parse(s, max, &ev, &why), 0);
	assert_int_equal(ev.te_payload_len, pl);
	twilio_event_free(&ev);
	/* One byte more: refused before parsing. */
	memset(s + hl, 'A', pl + 1);
	memcpy(s + hl + pl + 1, "\"}}", 4);
	why = NULL;
	assert_int_equal(twilio_event_parse(s, max + 1, &ev, &why), -1);
	assert_non_null(why);
	assert_null(ev.te_root);
	twilio_event_free(&ev);
	free(s);
	/* Empty text frame. */
	why = NULL;
	assert_int_equal(twilio_event_parse("", 0, &ev, &why), -1);
	assert_non_null(why);
	twilio_event_free(&ev);
}

static void
test_binary_frame(void **state)
{
	struct tw_event	 ev;
	const char	*why = NULL;

	(void)state;
	assert_int_equal(twilio_event_parse(NULL, 10, &ev, &why), -1);
	assert_non_null(why);
	assert_null(ev.te_root);
	twilio_event_free(&ev);
	why = NULL;
	assert_int_equal(twilio_event_parse(NULL, 0, &ev, &why), -1);
	assert_non_null(why);
	twilio_event_free(&ev);
}

/* twilio_event_free() after a failed parse or twice is harmless. */
static void
test_free_twice(void **state)
{
	struct tw_event	 ev;
	const char	*why;

	(void)state;
	assert_int_equal(parse(EX_MEDIA, &ev, &why), 0);
	twilio_event_free(&ev);
	twilio_event_free(&ev);
	assert_int_equal(parse("{\"event\":\"media\"}", &ev, &why), -1);
	twilio_event_free(&ev);
}

static void
same_event(const struct tw_event *a, const struct tw_event *b)
{
	int	i;

	assert_int_equal(a->te_type, b->te_type);
	assert_int_equal(a->te_seq, b->te_seq);
	assert_string_equal(a->te_stream_sid, b->te_stream_sid);
	assert_string_equal(a->te_call_sid, b->te_call_sid);
	assert_string_equal(a->te_account_sid, b->te_account_sid);
	assert_string_equal(a->te_encoding, b->te_encoding);
	assert_int_equal(a->te_rate, b->te_rate);
	assert_int_equal(a->te_channels, b->te_channels);
	assert_int_equal(a->te_chunk, b->te_chunk);
	assert_int_equal(a->te_timestamp, b->te_timestamp);
	assert_string_equal(a->te_track, b->te_track);
	assert_string_equal(a->te_name, b->te_name);
	assert_string_equal(a->te_digit, b->te_digit);
	assert_int_equal(a->te_nparams, b->te_nparams);
	for (i = 0; i < a->te_nparams; i++) {
		assert_string_equal(a->te_pname[i], b->te_pname[i]);
		assert_string_equal(a->te_pvalue[i], b->te_pvalue[i]);
	}
	assert_int_equal(a->te_payload == NULL, b->te_payload == NULL);
	assert_int_equal(a->te_payload_len, b->te_payload_len);
	if (a->te_payload != NULL)
		assert_memory_equal(a->te_payload, b->te_payload,
		    a->te_payload_len);
}

/*
 * Parses s (copied to a buffer of its own size, no NUL) both ways:
 * the outcome must be want, and the two results equal.
 */
static void
fast(const char *s, int want)
{
	struct tw_event	 ev, slow;
	const char	*why = NULL, *swhy = NULL;
	size_t		 len = strlen(s);
	char		*buf;
	int		 rc;

	buf = malloc(len);
	assert_non_null(buf);
	memcpy(buf, s, len);
	rc = twilio_event_parse(buf, len, &ev, &why);
	assert_int_equal(twilio_event_parse_slow(buf, len, &slow, &swhy), rc);
	if (want == F_REJECT) {
		if (rc != -1)
			fail_msg("accepted: %s", s);
		assert_string_equal(why, swhy);
	} else {
		if (rc != 0)
			fail_msg("refused (%s): %s", why, s);
		same_event(&ev, &slow);
		if ((ev.te_root == NULL) != (want == F_HIT))
			fail_msg("%s path: %s", ev.te_root == NULL ? "fast" :
			    "slow", s);
		if (want == F_HIT)
			assert_true(ev.te_payload >= buf &&
			    ev.te_payload + ev.te_payload_len <= buf + len);
	}
	twilio_event_free(&ev);
	twilio_event_free(&slow);
	free(buf);
}

static void
test_fast_hit(void **state)
{
	struct tw_event	 ev;
	const char	*why, *s;

	(void)state;
	/* What Twilio sends, as in protocols.md with ASCII SIDs. */
	s = "{\"event\":\"media\",\"sequenceNumber\":\"2\","
	    "\"streamSid\":\"MZ7d1e\",\n \"media\":{\"track\":\"inbound\","
	    "\"chunk\":\"1\",\"timestamp\":\"20\",\"payload\":\"/////38A\"}}";
	assert_int_equal(parse(s, &ev, &why), 0);
	assert_null(ev.te_root);
	assert_int_equal(ev.te_type, TWE_MEDIA);
	assert_int_equal(ev.te_seq, 2);
	assert_string_equal(ev.te_stream_sid, "MZ7d1e");
	assert_string_equal(ev.te_track, "inbound");
	assert_int_equal(ev.te_chunk, 1);
	assert_int_equal(ev.te_timestamp, 20);
	assert_ptr_equal(ev.te_payload, strstr(s, "/////38A"));
	assert_int_equal(ev.te_payload_len, 8);
	twilio_event_free(&ev);
	assert_null(ev.te_payload);
	fast(s, F_HIT);
	/* Any key order, whitespace, numbers, nulls, absent members. */
	fast("{\"media\":{\"payload\":\"fn98fQ==\",\"timestamp\":\"60\","
	    "\"chunk\":\"3\",\"track\":\"inbound\"},\"streamSid\":\"MZ1\","
	    "\"event\":\"media\",\"sequenceNumber\":\"4\"}", F_HIT);
	fast(" \t\r\n{ \"event\" : \"media\" , \"media\" : { \"payload\" :"
	    " \"AAAA\" } } \n", F_HIT);
	fast("{\"event\":\"media\",\"sequenceNumber\":null,\"streamSid\":"
	    "null,\"media\":{\"track\":null,\"chunk\":true,\"timestamp\":"
	    "false,\"payload\":\"\"}}", F_HIT);
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"%%not base64\"}}",
	    F_HIT);
	/* Sizes just within the struct. */
	fast("{\"event\":\"media\",\"streamSid\":\"MZ01234567890123456789"
	    "012345678901234567890123456789012345678901\",\"media\":{"
	    "\"track\":\"inbound_track_ab\",\"payload\":\"AAAA\"}}", F_REJECT);
	fast("{\"event\":\"media\",\"streamSid\":\"MZ01234567890123456789"
	    "01234567890123456789012345678901234567890\",\"media\":{"
	    "\"track\":\"inbound_track_a\",\"payload\":\"AAAA\"}}", F_HIT);
}

/* Each reason to give up, on messages jansson accepts. */
static void
test_fast_fallback(void **state)
{
	(void)state;
	/* An escape in a string, or in a key. */
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"AA\\/A\"}}",
	    F_SLOW);
	fast("{\"event\":\"med\\u0069a\",\"media\":{\"payload\":\"AAAA\"}}",
	    F_SLOW);
	fast("{\"ev\\u0065nt\":\"media\",\"media\":{\"payload\":\"AAAA\"}}",
	    F_SLOW);
	/* Non-ASCII (the documented example's "…") or DEL. */
	fast(EX_MEDIA, F_SLOW);
	fast("{\"event\":\"media\",\"streamSid\":\"MZ\x7f\",\"media\":"
	    "{\"payload\":\"AAAA\"}}", F_SLOW);
	/* Unknown keys, at the top or inside media. */
	fast("{\"event\":\"media\",\"extra\":[1,{\"a\":2}],\"media\":"
	    "{\"payload\":\"AAAA\"}}", F_SLOW);
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"AAAA\","
	    "\"extra\":1}}", F_SLOW);
	/* Types the fast path leaves to jansson. */
	fast("{\"event\":\"media\",\"sequenceNumber\":[1],\"media\":"
	    "{\"payload\":\"AAAA\"}}", F_SLOW);
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"AAAA\","
	    "\"chunk\":{}}}", F_SLOW);
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"AAAA\","
	    "\"timestamp\":1.5}}", F_SLOW);
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"AAAA\","
	    "\"timestamp\":2e1}}", F_SLOW);
	fast("{\"event\":\"media\",\"sequenceNumber\":1234567890123456789,"
	    "\"media\":{\"payload\":\"AAAA\"}}", F_SLOW);
	fast("{\"event\":\"media\",\"sequenceNumber\":\"000000000000000000"
	    "000000000000000000012\",\"media\":{\"payload\":\"AAAA\"}}",
	    F_SLOW);
	/* Other events are never on the fast path. */
	fast(EX_CONNECTED, F_SLOW);
	fast(EX_START, F_SLOW);
	fast(EX_MARK, F_SLOW);
	fast(EX_STOP, F_SLOW);
	fast("{\"event\":\"Media\",\"media\":{\"payload\":\"AAAA\"}}",
	    F_SLOW);
}

/* Each reason to give up, on messages jansson refuses. */
static void
test_fast_reject(void **state)
{
	char	deep[128];

	(void)state;
	/* Duplicate keys, at either level. */
	fast("{\"event\":\"media\",\"event\":\"media\",\"media\":"
	    "{\"payload\":\"AAAA\"}}", F_REJECT);
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"AAAA\","
	    "\"payload\":\"AAAA\"}}", F_REJECT);
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"AAAA\"},"
	    "\"media\":{\"payload\":\"AAAA\"}}", F_REJECT);
	/* Wrong types and sizes. */
	fast("{\"event\":\"media\",\"streamSid\":7,\"media\":"
	    "{\"payload\":\"AAAA\"}}", F_REJECT);
	fast("{\"event\":\"media\",\"media\":{\"payload\":7}}", F_REJECT);
	fast("{\"event\":\"media\",\"media\":[\"AAAA\"]}", F_REJECT);
	fast("{\"event\":\"media\",\"media\":{\"track\":\"inbound\"}}",
	    F_REJECT);
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"AAAA\","
	    "\"track\":\"inbound_track_is_long\"}}", F_REJECT);
	/* Control characters, invalid UTF-8, NUL escapes. */
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"AA\tA\"}}",
	    F_REJECT);
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"AA\xff" "A\"}}",
	    F_REJECT);
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"A\\u0000\"}}",
	    F_REJECT);
	/* Broken JSON around a good media message. */
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"AAAA\"}} x",
	    F_REJECT);
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"AAAA\"},}",
	    F_REJECT);
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"AAAA\"}",
	    F_REJECT);
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"AAAA\","
	    "\"chunk\":01}}", F_REJECT);
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"AAAA\","
	    "\"chunk\":-}}", F_REJECT);
	fast("{\"event\":\"media\",\"media\":{\"payload\":\"AAAA\","
	    "\"chunk\":tru}}", F_REJECT);
	fast("{\"event\":\"media\",\"sequenceNumber\":"
	    "123456789012345678901234567890,\"media\":{\"payload\":\"A\"}}",
	    F_REJECT);
	/* Deeper than the scanner goes and broken: jansson says no. */
	snprintf(deep, sizeof(deep), "{\"event\":\"media\",\"x\":%s}",
	    "[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]");
	fast(deep, F_REJECT);
}

/* tw_num() rules on the fast path: strtol()'s view of strings. */
static void
test_fast_numbers(void **state)
{
	static const char *const v[] = {
		"0", "-0", "7", "-7", "123456789012345678", "\"0\"", "\"-0\"",
		"\"+7\"", "\" 7\"", "\"7 \"", "\"-7\"", "\"\"", "\"x\"",
		"\"1a\"", "\"0x10\"", "\"9223372036854775807\"",
		"\"9223372036854775808\"", "\"0000000000000000000000000000017\"",
		"null", "true", "false",
	};
	char	msg[256];
	size_t	i;

	(void)state;
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		snprintf(msg, sizeof(msg), "{\"event\":\"media\","
		    "\"sequenceNumber\":%s,\"media\":{\"chunk\":%s,"
		    "\"timestamp\":%s,\"payload\":\"AAAA\"}}", v[i], v[i], v[i]);
		fast(msg, F_HIT);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connected),
		cmocka_unit_test(test_start),
		cmocka_unit_test(test_start_numbers),
		cmocka_unit_test(test_media),
		cmocka_unit_test(test_media_numbers),
		cmocka_unit_test(test_dtmf),
		cmocka_unit_test(test_mark),
		cmocka_unit_test(test_stop),
		cmocka_unit_test(test_unknown_event),
		cmocka_unit_test(test_reject_json),
		cmocka_unit_test(test_reject_event),
		cmocka_unit_test(test_reject_media),
		cmocka_unit_test(test_reject_start),
		cmocka_unit_test(test_params_limit),
		cmocka_unit_test(test_param_value_limit),
		cmocka_unit_test(test_sid_limit),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_binary_frame),
		cmocka_unit_test(test_free_twice),
		cmocka_unit_test(test_fast_hit),
		cmocka_unit_test(test_fast_fallback),
		cmocka_unit_test(test_fast_reject),
		cmocka_unit_test(test_fast_numbers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
