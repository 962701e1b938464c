/*
 * eleven_event.c - parse one ElevenLabs ConvAI server message into
 * struct el_event.  Pure: no I/O, used by eleven_ws.c, the unit tests
 * and the fuzzer.  Unknown types parse fine (ELE_OTHER); a known type
 * with missing or mistyped fields is an error with a reason.
 *
 * audio and ping messages first go through a non-allocating fast path
 * (el_fast, over jscan.c) that leaves ee_audio inside the caller's
 * buffer.  It takes only messages it understands completely and fills
 * the event exactly as the jansson path would; anything else falls
 * through to jansson, which alone accepts or refuses.
 */
#include <string.h>

#include <jansson.h>

#include "jscan.h"
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

static int	el_fast_audio(struct jscan *, struct el_event *);
static int	el_fast_ping(struct jscan *, struct el_event *);
static int	el_fast(const char *, size_t, struct el_event *);
static void	el_clear(struct el_event *);

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

/* audio_event: audio_base_64 required, event_id, alignment ignored. */
static int
el_fast_audio(struct jscan *js, struct el_event *ev)
{
	struct jkey	k;
	struct jval	v;
	int		r;

	while ((r = jscan_next(js, &k, &v)) == 1) {
		if (jscan_eq(k.jk_s, k.jk_len, "audio_base_64")) {
			if (v.jv_type != JT_STR)
				return -1;
			ev->ee_audio = v.jv_str;
			ev->ee_audio_len = v.jv_len;
		} else if (jscan_eq(k.jk_s, k.jk_len, "event_id")) {
			/* As json_is_integer(): any other scalar is absent. */
			if (v.jv_type == JT_OBJ || v.jv_type == JT_ARR)
				return -1;
			ev->ee_event_id = v.jv_type == JT_INT ? v.jv_int : -1;
		} else if (jscan_eq(k.jk_s, k.jk_len, "alignment")) {
			if ((v.jv_type == JT_OBJ || v.jv_type == JT_ARR) &&
			    jscan_skip(js) == -1)
				return -1;
		} else
			return -1;
	}
	return r == 0 && ev->ee_audio != NULL ? 0 : -1;
}

/* ping_event: an integer event_id required, ping_ms ignored. */
static int
el_fast_ping(struct jscan *js, struct el_event *ev)
{
	struct jkey	k;
	struct jval	v;
	int		r, id = 0;

	while ((r = jscan_next(js, &k, &v)) == 1) {
		if (jscan_eq(k.jk_s, k.jk_len, "event_id")) {
			if (v.jv_type != JT_INT)
				return -1;
			ev->ee_event_id = v.jv_int;
			id = 1;
		} else if (jscan_eq(k.jk_s, k.jk_len, "ping_ms")) {
			if ((v.jv_type == JT_OBJ || v.jv_type == JT_ARR) &&
			    jscan_skip(js) == -1)
				return -1;
		} else
			return -1;
	}
	return r == 0 && id ? 0 : -1;
}

/*
 * An audio or ping message read in place: 0 with ev filled as
 * el_body() would fill it, or -1 (ev half filled) for anything else
 * or anything unusual: other types, unknown keys, escapes, sizes.
 */
static int
el_fast(const char *buf, size_t len, struct el_event *ev)
{
	struct jscan	 js;
	struct jkey	 k;
	struct jval	 v;
	enum el_ev	 type = ELE_OTHER, body = ELE_OTHER;
	int		 r;

	if (jscan_begin(&js, buf, len) == -1)
		return -1;
	while ((r = jscan_next(&js, &k, &v)) == 1) {
		if (jscan_eq(k.jk_s, k.jk_len, "type")) {
			if (v.jv_type != JT_STR)
				return -1;
			if (jscan_eq(v.jv_str, v.jv_len, "audio"))
				type = ELE_AUDIO;
			else if (jscan_eq(v.jv_str, v.jv_len, "ping"))
				type = ELE_PING;
			else
				return -1;
		} else if (body == ELE_OTHER && v.jv_type == JT_OBJ &&
		    jscan_eq(k.jk_s, k.jk_len, "audio_event")) {
			if (el_fast_audio(&js, ev) == -1)
				return -1;
			body = ELE_AUDIO;
		} else if (body == ELE_OTHER && v.jv_type == JT_OBJ &&
		    jscan_eq(k.jk_s, k.jk_len, "ping_event")) {
			if (el_fast_ping(&js, ev) == -1)
				return -1;
			body = ELE_PING;
		} else
			return -1;
	}
	if (r == -1 || type == ELE_OTHER || body != type ||
	    jscan_end(&js) == -1)
		return -1;
	ev->ee_type = type;
	strlcpy_n(ev->ee_type_name, type == ELE_AUDIO ? "audio" : "ping",
	    sizeof(ev->ee_type_name));
	return 0;
}

static void
el_clear(struct el_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->ee_event_id = -1;
}

/*
 * 0 with ev filled (free with eleven_event_free), or -1 and why.  On
 * the fast path ee_root stays NULL and ee_audio points into buf, so it
 * is only valid as long as buf and is not NUL-terminated.
 */
int
eleven_event_parse(const char *buf, size_t len, struct el_event *ev,
    const char **why)
{
	el_clear(ev);
	if (buf != NULL && len > 0 && len <= EL_MSG_MAX &&
	    el_fast(buf, len, ev) == 0)
		return 0;
	return eleven_event_parse_slow(buf, len, ev, why);
}

/* The jansson path alone: the fallback, and the fuzzer's reference. */
int
eleven_event_parse_slow(const char *buf, size_t len, struct el_event *ev,
    const char **why)
{
	json_t		*root;
	const char	*type;
	size_t		 i;

	el_clear(ev);
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
