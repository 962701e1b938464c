/*
 * eleven_event.c - parse one ElevenLabs ConvAI server message into
 * struct el_event.  Pure: no I/O, used by eleven_ws.c, the unit tests
 * and the fuzzer.  Unknown types parse fine (ELE_OTHER); a known type
 * with missing or mistyped fields is an error with a reason.
 */
#include <string.h>

#include <jansson.h>

#include "util.h"
#include "worker.h"

#define EL_MSG_MAX	(16 * 1024 * 1024)

static const struct {
	const char	*name;
	enum el_ev	 type;
} el_types[] = {
	{ "audio", ELE_AUDIO },
	{ "ping", ELE_PING },
	{ "interruption", ELE_INTERRUPTION },
	{ "conversation_initiation_metadata", ELE_METADATA },
	{ "agent_tool_response", ELE_TOOL_RESPONSE },
	{ "error", ELE_ERROR },
};

/* A string member; absent, not a string or holding NUL: empty. */
static void
el_copy(json_t *o, const char *key, char *dst, size_t cap)
{
	json_t		*v = json_object_get(o, key);
	const char	*s = json_string_value(v);

	dst[0] = '\0';
	if (s != NULL && strlen(s) == json_string_length(v))
		strlcpy_n(dst, s, cap);
}

static int
el_body(json_t *root, struct el_event *ev, const char **why)
{
	json_t	*e, *v;

	switch (ev->ee_type) {
	case ELE_AUDIO:
		e = json_object_get(root, "audio_event");
		v = json_object_get(e, "audio_base_64");
		if (!json_is_string(v)) {
			*why = "audio without audio_base_64";
			return -1;
		}
		ev->ee_audio = json_string_value(v);
		ev->ee_audio_len = json_string_length(v);
		v = json_object_get(e, "event_id");
		ev->ee_event_id = json_is_integer(v) ? json_integer_value(v) : -1;
		return 0;
	case ELE_PING:
	case ELE_INTERRUPTION:
		e = json_object_get(root, ev->ee_type == ELE_PING ?
		    "ping_event" : "interruption_event");
		v = json_object_get(e, "event_id");
		if (!json_is_integer(v)) {
			*why = "event without an integer event_id";
			return -1;
		}
		ev->ee_event_id = json_integer_value(v);
		return 0;
	case ELE_METADATA:
		e = json_object_get(root,
		    "conversation_initiation_metadata_event");
		el_copy(e, "conversation_id", ev->ee_conv_id,
		    sizeof(ev->ee_conv_id));
		el_copy(e, "user_input_audio_format", ev->ee_fmt_in,
		    sizeof(ev->ee_fmt_in));
		el_copy(e, "agent_output_audio_format", ev->ee_fmt_out,
		    sizeof(ev->ee_fmt_out));
		if (ev->ee_conv_id[0] == '\0' || strlen(json_string_value(
		    json_object_get(e, "conversation_id"))) >=
		    sizeof(ev->ee_conv_id)) {
			*why = "metadata without a usable conversation_id";
			return -1;
		}
		return 0;
	case ELE_TOOL_RESPONSE:
		el_copy(json_object_get(root, "agent_tool_response"),
		    "tool_name", ev->ee_tool, sizeof(ev->ee_tool));
		return 0;
	case ELE_ERROR:
		e = json_object_get(root, "error_event");
		el_copy(e, "error_type", ev->ee_error_type,
		    sizeof(ev->ee_error_type));
		el_copy(e, "message", ev->ee_error_msg,
		    sizeof(ev->ee_error_msg));
		return 0;
	default:
		return 0;
	}
}

/* 0 with ev filled (free with eleven_event_free), or -1 and why. */
int
eleven_event_parse(const char *buf, size_t len, struct el_event *ev,
    const char **why)
{
	json_t		*root;
	const char	*type;
	size_t		 i;

	memset(ev, 0, sizeof(*ev));
	ev->ee_event_id = -1;
	if (buf == NULL || len == 0 || len > EL_MSG_MAX) {
		*why = buf == NULL ? "binary frame" : "empty or oversized";
		return -1;
	}
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	if (root == NULL || !json_is_object(root)) {
		json_decref(root);
		*why = "not a JSON object";
		return -1;
	}
	ev->ee_root = root;
	if ((type = json_string_value(json_object_get(root, "type"))) == NULL) {
		*why = "no type";
		eleven_event_free(ev);
		return -1;
	}
	ev->ee_type = ELE_OTHER;
	for (i = 0; i < sizeof(el_types) / sizeof(el_types[0]); i++)
		if (strcmp(type, el_types[i].name) == 0)
			ev->ee_type = el_types[i].type;
	strlcpy_n(ev->ee_type_name, type, sizeof(ev->ee_type_name));
	if (el_body(root, ev, why) == -1) {
		eleven_event_free(ev);
		return -1;
	}
	return 0;
}

void
eleven_event_free(struct el_event *ev)
{
	json_decref(ev->ee_root);
	ev->ee_root = NULL;
	ev->ee_audio = NULL;
}
