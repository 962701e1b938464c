/*
 * test_eleven_event.c - the ElevenLabs server message parser: the
 * documented examples (docs/protocols.md 2.4), unknown types, and
 * malformed or mistyped messages rejected with a reason.  The
 * non-allocating fast path for audio and ping must take the usual
 * messages, give up on everything odd, and always agree with the
 * jansson path (eleven_event_parse_slow).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "worker.h"

/* What fast() expects of eleven_event_parse(). */
#define F_HIT		1	/* accepted in place, ee_root NULL */
#define F_SLOW		0	/* accepted by the jansson path */
#define F_REJECT	-1

static int
parse(const char *s, struct el_event *ev, const char **why)
{
	return eleven_event_parse(s, strlen(s), ev, why);
}

static void
test_documented(void **state)
{
	struct el_event	 ev;
	const char	*why;

	(void)state;
	assert_int_equal(parse("{\"type\":\"conversation_initiation_metadata\","
	    "\"conversation_initiation_metadata_event\":{\"conversation_id\":"
	    "\"conv_01jx\",\"agent_output_audio_format\":\"pcm_16000\","
	    "\"user_input_audio_format\":\"ulaw_8000\"}}", &ev, &why), 0);
	assert_int_equal(ev.ee_type, ELE_METADATA);
	assert_string_equal(ev.ee_conv_id, "conv_01jx");
	assert_string_equal(ev.ee_fmt_out, "pcm_16000");
	assert_string_equal(ev.ee_fmt_in, "ulaw_8000");
	eleven_event_free(&ev);
	assert_int_equal(parse("{\"type\":\"audio\",\"audio_event\":{"
	    "\"audio_base_64\":\"fn5+fHx7\",\"event_id\":7}}", &ev, &why), 0);
	assert_int_equal(ev.ee_type, ELE_AUDIO);
	assert_int_equal(ev.ee_audio_len, 8);
	assert_memory_equal(ev.ee_audio, "fn5+fHx7", 8);
	assert_int_equal(ev.ee_event_id, 7);
	eleven_event_free(&ev);
	assert_int_equal(parse("{\"type\":\"ping\",\"ping_event\":{\"event_id\""
	    ":142,\"ping_ms\":61}}", &ev, &why), 0);
	assert_int_equal(ev.ee_type, ELE_PING);
	assert_int_equal(ev.ee_event_id, 142);
	eleven_event_free(&ev);
	assert_int_equal(parse("{\"type\":\"ping\",\"ping_event\":{\"event_id\""
	    ":1,\"ping_ms\":null}}", &ev, &why), 0);
	eleven_event_free(&ev);
	assert_int_equal(parse("{\"type\":\"interruption\",\"interruption_event"
	    "\":{\"event_id\":7}}", &ev, &why), 0);
	assert_int_equal(ev.ee_type, ELE_INTERRUPTION);
	eleven_event_free(&ev);
	assert_int_equal(parse("{\"type\":\"agent_tool_response\","
	    "\"agent_tool_response\":{\"tool_name\":\"end_call\",\"tool_call_id"
	    "\":\"x\",\"tool_type\":\"system\",\"is_error\":false,\"is_called\":"
	    "true,\"event_id\":31}}", &ev, &why), 0);
	assert_string_equal(ev.ee_tool, "end_call");
	eleven_event_free(&ev);
	assert_int_equal(parse("{\"type\":\"error\",\"error_event\":{\"code\":"
	    "1002,\"error_type\":\"llm_timeout\",\"message\":\"LLM did not "
	    "answer in time\",\"reason\":\"timeout\"}}", &ev, &why), 0);
	assert_string_equal(ev.ee_error_type, "llm_timeout");
	eleven_event_free(&ev);
	assert_int_equal(parse("{\"type\":\"vad_score\",\"vad_score_event\":"
	    "{\"vad_score\":0.5}}", &ev, &why), 0);
	assert_int_equal(ev.ee_type, ELE_OTHER);
	assert_string_equal(ev.ee_type_name, "vad_score");
	eleven_event_free(&ev);
}

static void
test_rejected(void **state)
{
	static const char *const bad[] = {
		"", "null", "[]", "\"audio\"", "{", "{\"type\":1}",
		"{\"no\":\"type\"}",
		"{\"type\":\"audio\"}",
		"{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":5}}",
		"{\"type\":\"ping\",\"ping_event\":{}}",
		"{\"type\":\"ping\",\"ping_event\":{\"event_id\":\"142\"}}",
		"{\"type\":\"interruption\"}",
		"{\"type\":\"conversation_initiation_metadata\"}",
		"{\"type\":\"conversation_initiation_metadata\","
		"\"conversation_initiation_metadata_event\":{\"conversation_id\":"
		"\"\"}}",
		"{\"type\":\"audio\",\"type\":\"ping\"}",
	};
	struct el_event	 ev;
	const char	*why;
	size_t		 i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		assert_int_equal(eleven_event_parse(bad[i], strlen(bad[i]),
		    &ev, &why), -1);
		assert_non_null(why);
	}
	assert_int_equal(eleven_event_parse(NULL, 0, &ev, &why), -1);
}

/*
 * Parses s (copied to a buffer of its own size, no NUL) both ways:
 * the outcome must be want, and the two results equal.
 */
static void
fast(const char *s, int want)
{
	struct el_event	 ev, slow;
	const char	*why = NULL, *swhy = NULL;
	size_t		 len = strlen(s);
	char		*buf;
	int		 rc;

	buf = malloc(len);
	assert_non_null(buf);
	memcpy(buf, s, len);
	rc = eleven_event_parse(buf, len, &ev, &why);
	assert_int_equal(eleven_event_parse_slow(buf, len, &slow, &swhy), rc);
	if (want == F_REJECT) {
		if (rc != -1)
			fail_msg("accepted: %s", s);
		assert_string_equal(why, swhy);
	} else {
		if (rc != 0)
			fail_msg("refused (%s): %s", why, s);
		assert_int_equal(ev.ee_type, slow.ee_type);
		assert_string_equal(ev.ee_type_name, slow.ee_type_name);
		assert_int_equal(ev.ee_event_id, slow.ee_event_id);
		assert_string_equal(ev.ee_conv_id, slow.ee_conv_id);
		assert_string_equal(ev.ee_fmt_in, slow.ee_fmt_in);
		assert_string_equal(ev.ee_fmt_out, slow.ee_fmt_out);
		assert_string_equal(ev.ee_tool, slow.ee_tool);
		assert_string_equal(ev.ee_error_type, slow.ee_error_type);
		assert_string_equal(ev.ee_error_msg, slow.ee_error_msg);
		assert_int_equal(ev.ee_audio == NULL, slow.ee_audio == NULL);
		assert_int_equal(ev.ee_audio_len, slow.ee_audio_len);
		if (ev.ee_audio != NULL)
			assert_memory_equal(ev.ee_audio, slow.ee_audio,
			    ev.ee_audio_len);
		if ((ev.ee_root == NULL) != (want == F_HIT))
			fail_msg("%s path: %s", ev.ee_root == NULL ? "fast" :
			    "slow", s);
		if (want == F_HIT && ev.ee_audio != NULL)
			assert_true(ev.ee_audio >= buf &&
			    ev.ee_audio + ev.ee_audio_len <= buf + len);
	}
	eleven_event_free(&ev);
	eleven_event_free(&slow);
	free(buf);
}

static void
test_fast_hit(void **state)
{
	struct el_event	 ev;
	const char	*why, *s;

	(void)state;
	s = "{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"fn5+fHx7\",\"event_id\":7}}";
	assert_int_equal(parse(s, &ev, &why), 0);
	assert_null(ev.ee_root);
	assert_int_equal(ev.ee_type, ELE_AUDIO);
	assert_string_equal(ev.ee_type_name, "audio");
	assert_int_equal(ev.ee_event_id, 7);
	assert_ptr_equal(ev.ee_audio, strstr(s, "fn5+fHx7"));
	assert_int_equal(ev.ee_audio_len, 8);
	eleven_event_free(&ev);
	assert_null(ev.ee_audio);
	fast(s, F_HIT);
	/* Key order, the optional alignment, odd event_id types. */
	fast("{\"audio_event\":{\"event_id\":8,\"audio_base_64\":\"AAAA\"},"
	    "\"type\":\"audio\"}", F_HIT);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"fn5+fHx7\",\"alignment\":{\"chars\":[\"H\",\"i\",\" \"],"
	    "\"char_start_times_ms\":[0,3,7],\"char_durations_ms\":[3,4,1]},"
	    "\"event_id\":9}}", F_HIT);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":\"\","
	    "\"alignment\":null}}", F_HIT);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":\"A\","
	    "\"event_id\":\"7\"}}", F_HIT);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":\"A\","
	    "\"event_id\":null}}", F_HIT);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":\"A\","
	    "\"event_id\":-12}}", F_HIT);
	/* ping, with and without a latency figure. */
	s = "{\"type\":\"ping\",\"ping_event\":{\"event_id\":142,"
	    "\"ping_ms\":61}}";
	assert_int_equal(parse(s, &ev, &why), 0);
	assert_null(ev.ee_root);
	assert_int_equal(ev.ee_type, ELE_PING);
	assert_string_equal(ev.ee_type_name, "ping");
	assert_int_equal(ev.ee_event_id, 142);
	assert_null(ev.ee_audio);
	eleven_event_free(&ev);
	fast(s, F_HIT);
	fast("{\"ping_event\":{\"ping_ms\":null,\"event_id\":1},"
	    "\"type\":\"ping\"}", F_HIT);
	fast("{\"type\":\"ping\",\"ping_event\":{\"event_id\":0}}", F_HIT);
}

static void
test_fast_fallback(void **state)
{
	(void)state;
	/* Escapes, non-ASCII, in audio or in an alignment character. */
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AA\\/A\"}}", F_SLOW);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AAAA\",\"alignment\":{\"chars\":[\"\\\"\"]}}}", F_SLOW);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AAAA\",\"alignment\":{\"chars\":[\"\xc3\xa9\"]}}}", F_SLOW);
	/* Reals, long integers. */
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AAAA\",\"event_id\":7.0}}", F_SLOW);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AAAA\",\"event_id\":1234567890123456789}}", F_SLOW);
	fast("{\"type\":\"ping\",\"ping_event\":{\"event_id\":1,"
	    "\"ping_ms\":61.5}}", F_SLOW);
	/* Unknown keys; the other type's body; a body of another type. */
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AAAA\",\"extra\":1}}", F_SLOW);
	fast("{\"type\":\"audio\",\"extra\":1,\"audio_event\":"
	    "{\"audio_base_64\":\"AAAA\"}}", F_SLOW);
	fast("{\"type\":\"audio\",\"ping_event\":{\"event_id\":1},"
	    "\"audio_event\":{\"audio_base_64\":\"AAAA\"}}", F_SLOW);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AAAA\",\"event_id\":[1]}}", F_SLOW);
	/* Too deep for the scanner. */
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AAAA\",\"alignment\":[[[[[[[[1]]]]]]]]}}", F_SLOW);
	/* Other types are never on the fast path. */
	fast("{\"type\":\"interruption\",\"interruption_event\":"
	    "{\"event_id\":7}}", F_SLOW);
	fast("{\"type\":\"vad_score\",\"vad_score_event\":"
	    "{\"vad_score\":0.5}}", F_SLOW);
	fast("{\"type\":\"Audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AAAA\"}}", F_SLOW);
}

static void
test_fast_reject(void **state)
{
	(void)state;
	/* Duplicate keys, down in the alignment too. */
	fast("{\"type\":\"audio\",\"type\":\"audio\",\"audio_event\":"
	    "{\"audio_base_64\":\"AAAA\"}}", F_REJECT);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AAAA\",\"audio_base_64\":\"AAAA\"}}", F_REJECT);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AAAA\",\"alignment\":{\"chars\":[],\"chars\":[]}}}", F_REJECT);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AAAA\",\"alignment\":[{\"a\":1,\"a\":2}]}}", F_REJECT);
	/* Missing or mistyped fields. */
	fast("{\"type\":\"audio\"}", F_REJECT);
	fast("{\"type\":\"audio\",\"audio_event\":{}}", F_REJECT);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":5}}",
	    F_REJECT);
	fast("{\"type\":\"audio\",\"audio_event\":[]}", F_REJECT);
	fast("{\"type\":\"ping\",\"ping_event\":{\"event_id\":\"1\"}}",
	    F_REJECT);
	fast("{\"type\":\"ping\",\"ping_event\":{\"ping_ms\":1}}",
	    F_REJECT);
	fast("{\"type\":\"ping\",\"ping_event\":{\"event_id\":null}}",
	    F_REJECT);
	/* Broken JSON, control characters, NUL. */
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AAAA\"}", F_REJECT);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AAAA\"}}}", F_REJECT);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AA\nA\"}}", F_REJECT);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AAAA\",\"alignment\":[1,]}}", F_REJECT);
	fast("{\"type\":\"audio\",\"audio_event\":{\"audio_base_64\":"
	    "\"AAAA\",\"event_id\":007}}", F_REJECT);
	fast("{\"type\":\"ping\",\"ping_event\":{\"event_id\":"
	    "99999999999999999999999}}", F_REJECT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_documented),
		cmocka_unit_test(test_rejected),
		cmocka_unit_test(test_fast_hit),
		cmocka_unit_test(test_fast_fallback),
		cmocka_unit_test(test_fast_reject),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
