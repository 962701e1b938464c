/*
 * twilio_event.c - parse one Twilio Media Streams message (a JSON text
 * frame) into struct tw_event.  Pure: no I/O, used by twilio_ws.c and
 * the unit tests.  Tolerant where Twilio is loose (sequenceNumber,
 * chunk and timestamp may be strings or numbers), strict where a wrong
 * value would do harm (types of SIDs, sizes of every copied string).
 *
 * Media messages, 50 a second, first go through a non-allocating fast
 * path (tw_fast_media, over jscan.c) that leaves te_payload inside the
 * caller's buffer.  It only takes messages it understands completely
 * and fills the event exactly as the jansson path would; anything else
 * falls through to jansson, which alone accepts or refuses.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "jscan.h"
#include "util.h"
#include "worker.h"

#define TW_MSG_MAX	(256 * 1024)
#define TW_NUM_MAX	32	/* longest numeric string the fast path reads */

static const struct {
	const char	*name;
	enum tw_ev	 type;
} tw_types[] = {
	{ "connected", TWE_CONNECTED },
	{ "start", TWE_START },
	{ "media", TWE_MEDIA },
	{ "mark", TWE_MARK },
	{ "dtmf", TWE_DTMF },
	{ "stop", TWE_STOP },
};

static long	tw_strnum(const char *);
static int	tw_fast_num(const struct jval *, long *);
static int	tw_fast_str(const struct jval *, char *, size_t);
static int	tw_fast_body(struct jscan *, struct tw_event *);
static int	tw_fast_media(const char *, size_t, struct tw_event *);
static void	tw_clear(struct tw_event *);

/* A string holding only a decimal integer (strtol's idea of one). */
static long
tw_strnum(const char *s)
{
	char	*end;
	long	 n;

	errno = 0;
	n = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || n < 0)
		return -1;
	return n;
}

/* A JSON integer, or a string holding only a decimal integer. */
static long
tw_num(json_t *v)
{
	if (json_is_integer(v))
		return (long)json_integer_value(v);
	if (!json_is_string(v))
		return -1;
	return tw_strnum(json_string_value(v));
}

/* Copy a string member; absent is fine, wrong type or too long is not. */
static int
tw_str(json_t *obj, const char *key, char *dst, size_t cap)
{
	json_t	*v = json_object_get(obj, key);

	dst[0] = '\0';
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v) || json_string_length(v) >= cap ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return -1;
	memcpy(dst, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static int
tw_start(json_t *st, struct tw_event *ev, const char **why)
{
	json_t		*cp, *mf, *v;
	const char	*k;

	if (!json_is_object(st) ||
	    tw_str(st, "callSid", ev->te_call_sid, sizeof(ev->te_call_sid)) ||
	    tw_str(st, "accountSid", ev->te_account_sid,
	    sizeof(ev->te_account_sid))) {
		*why = "bad start object";
		return -1;
	}
	if (ev->te_stream_sid[0] == '\0' && tw_str(st, "streamSid",
	    ev->te_stream_sid, sizeof(ev->te_stream_sid))) {
		*why = "bad start.streamSid";
		return -1;
	}
	if (ev->te_call_sid[0] == '\0' || ev->te_stream_sid[0] == '\0') {
		*why = "start without callSid or streamSid";
		return -1;
	}
	if ((mf = json_object_get(st, "mediaFormat")) != NULL) {
		if (!json_is_object(mf) || tw_str(mf, "encoding",
		    ev->te_encoding, sizeof(ev->te_encoding))) {
			*why = "bad start.mediaFormat";
			return -1;
		}
		ev->te_rate = tw_num(json_object_get(mf, "sampleRate"));
		ev->te_channels = tw_num(json_object_get(mf, "channels"));
	}
	cp = json_object_get(st, "customParameters");
	if (cp != NULL && !json_is_object(cp)) {
		*why = "bad start.customParameters";
		return -1;
	}
	json_object_foreach(cp, k, v) {
		int i = ev->te_nparams;
		if (i == TW_MAX_PARAMS || strlen(k) >= sizeof(ev->te_pname[0]) ||
		    !json_is_string(v) ||
		    json_string_length(v) >= sizeof(ev->te_pvalue[0]) ||
		    strlen(json_string_value(v)) != json_string_length(v)) {
			*why = "bad or too many customParameters";
			return -1;
		}
		strlcpy_n(ev->te_pname[i], k, sizeof(ev->te_pname[i]));
		strlcpy_n(ev->te_pvalue[i], json_string_value(v),
		    sizeof(ev->te_pvalue[i]));
		ev->te_nparams++;
	}
	return 0;
}

static int
tw_media(json_t *m, struct tw_event *ev, const char **why)
{
	json_t	*p;

	if (!json_is_object(m) || (p = json_object_get(m, "payload")) == NULL ||
	    !json_is_string(p)) {
		*why = "media without a payload";
		return -1;
	}
	ev->te_payload = json_string_value(p);
	ev->te_payload_len = json_string_length(p);
	ev->te_chunk = tw_num(json_object_get(m, "chunk"));
	ev->te_timestamp = tw_num(json_object_get(m, "timestamp"));
	if (tw_str(m, "track", ev->te_track, sizeof(ev->te_track))) {
		*why = "bad media.track";
		return -1;
	}
	return 0;
}

static int
tw_body(json_t *root, struct tw_event *ev, const char **why)
{
	json_t	*o;

	switch (ev->te_type) {
	case TWE_START:
		return tw_start(json_object_get(root, "start"), ev, why);
	case TWE_MEDIA:
		return tw_media(json_object_get(root, "media"), ev, why);
	case TWE_MARK:
		o = json_object_get(root, "mark");
		if (!json_is_object(o) || tw_str(o, "name", ev->te_name,
		    sizeof(ev->te_name))) {
			*why = "bad mark";
			return -1;
		}
		return 0;
	case TWE_DTMF:
		o = json_object_get(root, "dtmf");
		if (!json_is_object(o) || tw_str(o, "digit", ev->te_digit,
		    sizeof(ev->te_digit))) {
			*why = "bad dtmf";
			return -1;
		}
		return 0;
	case TWE_STOP:
		o = json_object_get(root, "stop");
		if (o != NULL && (!json_is_object(o) || tw_str(o, "callSid",
		    ev->te_call_sid, sizeof(ev->te_call_sid)))) {
			*why = "bad stop";
			return -1;
		}
		return 0;
	default:
		return 0;
	}
}

/* tw_num() of a scalar the fast path met; -1 to give up. */
static int
tw_fast_num(const struct jval *v, long *n)
{
	char	s[TW_NUM_MAX];

	switch (v->jv_type) {
	case JT_INT:
		*n = (long)v->jv_int;
		return 0;
	case JT_STR:
		if (v->jv_len >= sizeof(s))
			return -1;
		/* Twilio's usual digit strings without strtol's locale. */
		if (dec_digits(v->jv_str, v->jv_len, 18, n) == 0)
			return 0;
		memcpy(s, v->jv_str, v->jv_len);
		s[v->jv_len] = '\0';
		*n = tw_strnum(s);
		return 0;
	case JT_NULL:
	case JT_TRUE:
	case JT_FALSE:
		*n = -1;
		return 0;
	default:
		return -1;
	}
}

/* tw_str() of a value the fast path met; -1 to give up. */
static int
tw_fast_str(const struct jval *v, char *dst, size_t cap)
{
	if (v->jv_type == JT_NULL) {
		dst[0] = '\0';
		return 0;
	}
	if (v->jv_type != JT_STR || v->jv_len >= cap)
		return -1;
	memcpy(dst, v->jv_str, v->jv_len);
	dst[v->jv_len] = '\0';
	return 0;
}

/* The members of "media", each known, the payload required. */
static int
tw_fast_body(struct jscan *js, struct tw_event *ev)
{
	struct jkey	k;
	struct jval	v;
	int		r;

	ev->te_chunk = ev->te_timestamp = -1;	/* tw_num() of absent */
	while ((r = jscan_next(js, &k, &v)) == 1) {
		if (jscan_eq(k.jk_s, k.jk_len, "payload")) {
			if (v.jv_type != JT_STR)
				return -1;
			ev->te_payload = v.jv_str;
			ev->te_payload_len = v.jv_len;
		} else if (jscan_eq(k.jk_s, k.jk_len, "track")) {
			if (tw_fast_str(&v, ev->te_track, sizeof(ev->te_track)))
				return -1;
		} else if (jscan_eq(k.jk_s, k.jk_len, "chunk")) {
			if (tw_fast_num(&v, &ev->te_chunk))
				return -1;
		} else if (jscan_eq(k.jk_s, k.jk_len, "timestamp")) {
			if (tw_fast_num(&v, &ev->te_timestamp))
				return -1;
		} else
			return -1;
	}
	return r == 0 && ev->te_payload != NULL ? 0 : -1;
}

/*
 * A media message read in place: 0 with ev filled as tw_media() would
 * fill it, or -1 (ev half filled) for anything else or anything
 * unusual: other events, unknown keys, escapes, non-ASCII, sizes.
 */
static int
tw_fast_media(const char *buf, size_t len, struct tw_event *ev)
{
	struct jscan	js;
	struct jkey	k;
	struct jval	v;
	int		r, media = 0, body = 0;

	if (jscan_begin(&js, buf, len) == -1)
		return -1;
	while ((r = jscan_next(&js, &k, &v)) == 1) {
		if (jscan_eq(k.jk_s, k.jk_len, "event")) {
			if (v.jv_type != JT_STR ||
			    !jscan_eq(v.jv_str, v.jv_len, "media"))
				return -1;
			media = 1;
		} else if (jscan_eq(k.jk_s, k.jk_len, "sequenceNumber")) {
			if (tw_fast_num(&v, &ev->te_seq))
				return -1;
		} else if (jscan_eq(k.jk_s, k.jk_len, "streamSid")) {
			if (tw_fast_str(&v, ev->te_stream_sid,
			    sizeof(ev->te_stream_sid)))
				return -1;
		} else if (jscan_eq(k.jk_s, k.jk_len, "media")) {
			if (v.jv_type != JT_OBJ || tw_fast_body(&js, ev))
				return -1;
			body = 1;
		} else
			return -1;
	}
	if (r == -1 || !media || !body || jscan_end(&js) == -1)
		return -1;
	ev->te_type = TWE_MEDIA;
	return 0;
}

static void
tw_clear(struct tw_event *ev)
{
	memset(ev, 0, offsetof(struct tw_event, te_pname));
	ev->te_seq = -1;
	ev->te_type = TWE_UNKNOWN;
}

/*
 * Returns 0 with ev filled (free with twilio_event_free), or -1.  On
 * the fast path te_root stays NULL and te_payload points into buf, so
 * it is only valid as long as buf and is not NUL-terminated.
 */
int
twilio_event_parse(const char *buf, size_t len, struct tw_event *ev,
    const char **why)
{
	tw_clear(ev);
	if (buf != NULL && len > 0 && len <= TW_MSG_MAX &&
	    tw_fast_media(buf, len, ev) == 0)
		return 0;
	return twilio_event_parse_slow(buf, len, ev, why);
}

/* The jansson path alone: the fallback, and the fuzzer's reference. */
int
twilio_event_parse_slow(const char *buf, size_t len, struct tw_event *ev,
    const char **why)
{
	json_error_t	 err;
	json_t		*root, *e;
	const char	*name;
	size_t		 i;

	tw_clear(ev);
	if (buf == NULL || len == 0 || len > TW_MSG_MAX) {
		*why = buf == NULL ? "binary frame" : "empty or oversized message";
		return -1;
	}
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
	if (root == NULL || !json_is_object(root)) {
		json_decref(root);
		*why = "not a JSON object";
		return -1;
	}
	ev->te_root = root;
	e = json_object_get(root, "event");
	if (!json_is_string(e)) {
		*why = "no event name";
		goto fail;
	}
	name = json_string_value(e);
	for (i = 0; i < sizeof(tw_types) / sizeof(tw_types[0]); i++)
		if (strcmp(name, tw_types[i].name) == 0)
			ev->te_type = tw_types[i].type;
	ev->te_seq = tw_num(json_object_get(root, "sequenceNumber"));
	if (tw_str(root, "streamSid", ev->te_stream_sid,
	    sizeof(ev->te_stream_sid))) {
		*why = "bad streamSid";
		goto fail;
	}
	if (tw_body(root, ev, why) == -1)
		goto fail;
	return 0;
fail:
	twilio_event_free(ev);
	return -1;
}

void
twilio_event_free(struct tw_event *ev)
{
	json_decref(ev->te_root);
	ev->te_root = NULL;
	ev->te_payload = NULL;
}

const char *
twilio_event_param(const struct tw_event *ev, const char *name)
{
	int	i;

	for (i = 0; i < ev->te_nparams; i++)
		if (strcmp(ev->te_pname[i], name) == 0)
			return ev->te_pvalue[i];
	return NULL;
}
