/*
 * test_eleven_event.c - the ElevenLabs server message parser: the
 * documented examples (docs/protocols.md 2.4), unknown types, and
 * malformed or mistyped messages rejected with a reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "worker.h"

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_documented),
		cmocka_unit_test(test_rejected),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
