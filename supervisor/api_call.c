/*
 * api_call.c - POST /call and POST /call/health-check: validate, dial
 * through Twilio's REST API (evcurl, never blocking the loop), store the
 * call's context in Redis (call_type:{sid} EX 60, call:{sid} EX 300 with
 * a random nonce the stream must present), answer {success, callSid}.
 * Runs in the supervisor.  Each request is one struct dial, owned here;
 * if the client goes away first the dial finishes without answering.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "evcurl.h"
#include "log.h"
#include "redis.h"
#include "twilio_rest.h"
#include "util.h"
#include "supervisor.h"

#define NONCE_BYTES	16

struct dial {
	struct conn	*dl_conn;	/* NULL once the client is gone */
	char		 dl_phone[32];
	char		 dl_type[16];
	char		 dl_nonce[NONCE_BYTES * 2 + 1];
	char		 dl_sid[64];
	int		 dl_sets;	/* SETs outstanding */
	int		 dl_set_failed;
	uint64_t	 dl_t0;
};

static void	api_call_common(struct conn *, struct hhead *, const char *);
static int	dial_parse(struct conn *, struct hhead *, struct dial *);
static void	dial_created(const struct twilio_result *, void *);
static void	dial_stored(const redisReply *, const char *, void *);
static void	dial_answer(struct dial *, int, const char *);
static void	dial_cancel(void *);
static void	dial_ended(const struct twilio_result *, void *);

void
api_call(struct conn *cn, struct hhead *h)
{
	api_call_common(cn, h, NULL);
}

void
api_call_health(struct conn *cn, struct hhead *h)
{
	api_call_common(cn, h, "health_check");
}

static void
dial_cancel(void *arg)
{
	((struct dial *)arg)->dl_conn = NULL;
}

/* Answer the client if it is still there. */
static void
dial_answer(struct dial *d, int code, const char *error)
{
	char	body[256];

	if (d->dl_conn == NULL)
		return;
	if (error != NULL)
		conn_respond_json_error(d->dl_conn, code, error);
	else {
		snprintf(body, sizeof(body), "{\"success\":true,\"callSid\":"
		    "\"%s\"}", d->dl_sid);
		conn_respond(d->dl_conn, code, "application/json", body,
		    strlen(body), NULL);
	}
	d->dl_conn = NULL;
}

/* Body: optional JSON object {"phone": E.164, "callType": ...}. */
static int
dial_parse(struct conn *cn, struct hhead *h, struct dial *d)
{
	json_t		*o = NULL, *v;
	json_error_t	 err;
	const char	*phone = sv.sv_cf->phone_number, *type = "general";

	if (h->hh_bodylen > 0) {
		o = json_loadb(h->hh_body, h->hh_bodylen,
		    JSON_REJECT_DUPLICATES, &err);
		if (o == NULL || !json_is_object(o)) {
			conn_respond_json_error(cn, 400, "body is not a JSON "
			    "object");
			json_decref(o);
			return -1;
		}
		if ((v = json_object_get(o, "phone")) != NULL &&
		    !json_is_null(v))
			phone = json_is_string(v) ? json_string_value(v) : "";
		if ((v = json_object_get(o, "callType")) != NULL &&
		    !json_is_null(v))
			type = json_is_string(v) ? json_string_value(v) : "";
	}
	if (d->dl_type[0] == '\0' && strcmp(type, "general") != 0 &&
	    strcmp(type, "health_check") != 0) {
		json_decref(o);
		conn_respond_json_error(cn, 400, "callType must be general or "
		    "health_check");
		return -1;
	}
	if (phone == NULL || !e164_ok(phone)) {
		json_decref(o);
		conn_respond_json_error(cn, 400, phone == NULL ? "no phone "
		    "given and PHONE_NUMBER is not set" : "phone must be an "
		    "E.164 number such as +15551234567");
		return -1;
	}
	strlcpy_n(d->dl_phone, phone, sizeof(d->dl_phone));
	if (d->dl_type[0] == '\0')
		strlcpy_n(d->dl_type, type, sizeof(d->dl_type));
	json_decref(o);
	return 0;
}

static void
api_call_common(struct conn *cn, struct hhead *h, const char *type)
{
	struct dial	*d;

	if ((d = calloc(1, sizeof(*d))) == NULL) {
		conn_respond_json_error(cn, 503, "out of memory");
		return;
	}
	if (type != NULL)
		strlcpy_n(d->dl_type, type, sizeof(d->dl_type));
	if (dial_parse(cn, h, d) == -1) {
		metrics.m_call_refused[3]++;
		free(d);
		return;
	}
	if (sv.sv_state != SV_RUNNING) {
		conn_respond_json_error(cn, 503, "shutting down");
		free(d);
		return;
	}
	if (placed_count() + placed_reserved() + pool_count(W_BUSY) >=
	    (unsigned)sv.sv_cf->max_calls) {
		metrics.m_call_refused[2]++;
		log_warnx("POST %s refused: %ld calls in progress (max calls)",
		    h->hh_path, sv.sv_cf->max_calls);
		conn_respond_json_error(cn, 503, "at capacity: too many calls "
		    "in progress");
		free(d);
		return;
	}
	if (!headroom_open()) {
		char	body[256], extra[64];

		metrics.m_call_refused[4]++;
		log_warnx("POST %s refused: no headroom (%s)", h->hh_path,
		    headroom_reason());
		snprintf(body, sizeof(body), "{\"success\":false,\"error\":"
		    "\"no headroom for another call now; try later\","
		    "\"reason\":\"%s\",\"retryAfter\":%u}", headroom_reason(),
		    headroom_retry_after());
		snprintf(extra, sizeof(extra), "Retry-After: %u\r\n",
		    headroom_retry_after());
		conn_respond(cn, 503, "application/json", body, strlen(body),
		    extra);
		free(d);
		return;
	}
	if (!rds_connected(sv.sv_rds)) {
		metrics.m_call_refused[1]++;
		log_warnx("POST %s refused: Redis is unavailable", h->hh_path);
		conn_respond_json_error(cn, 503, "Redis is unavailable; the "
		    "call was not placed");
		free(d);
		return;
	}
	if (sv.sv_cf->twilio_url == NULL || sv.sv_cf->stream_url == NULL) {
		conn_respond_json_error(cn, 503, "public URLs are not known "
		    "yet");
		free(d);
		return;
	}
	if (random_hex(d->dl_nonce, NONCE_BYTES) == -1 ||
	    twilio_create_call(sv.sv_ec, sv.sv_cf, d->dl_phone, dial_created,
	    d) == -1) {
		conn_respond_json_error(cn, 503, "cannot start the Twilio "
		    "request");
		free(d);
		return;
	}
	metrics.m_calls_admitted++;
	d->dl_conn = cn;
	d->dl_t0 = now_mono_ns();
	cn->cn_op = d;
	cn->cn_op_cancel = dial_cancel;
	placed_reserve(1);
}

static int
dial_store(struct dial *d)
{
	char	 k1[160], k2[160], ts[32], *ctx;
	json_t	*o;
	int	 rc = -1;

	iso8601_ms(now_real_ms(), ts);
	o = json_pack("{s:s, s:s, s:s, s:s}", "callType", d->dl_type,
	    "phone", d->dl_phone, "nonce", d->dl_nonce, "createdAt", ts);
	ctx = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (ctx == NULL || key_call_type(k1, sizeof(k1), d->dl_sid) == -1 ||
	    key_call(k2, sizeof(k2), d->dl_sid) == -1)
		goto out;
	d->dl_sets = 2;
	if (rds_cmdf(sv.sv_rds, dial_stored, d, "SET %s %s EX 60", k1,
	    d->dl_type) == -1) {
		d->dl_sets = 0;
		goto out;
	}
	if (rds_cmdf(sv.sv_rds, dial_stored, d, "SET %s %s EX 300", k2,
	    ctx) == -1) {
		d->dl_sets = 1;
		d->dl_set_failed = 1;
	}
	rc = 0;
out:
	free(ctx);
	return rc;
}

static void
dial_created(const struct twilio_result *r, void *arg)
{
	struct dial	*d = arg;

	placed_reserve(-1);
	if (!r->tr_ok || !twilio_sid_ok(r->tr_call_sid, "CA")) {
		metrics.m_call_refused[0]++;
		if (r->tr_status == 0)
			metrics.m_http_client_errors++;
		log_warnx("call to %s not placed: %s", d->dl_phone,
		    r->tr_ok ? "Twilio answered without a call sid" :
		    r->tr_error);
		dial_answer(d, 502, r->tr_ok ? "Twilio answered without a "
		    "call sid" : r->tr_error);
		free(d);
		return;
	}
	strlcpy_n(d->dl_sid, r->tr_call_sid, sizeof(d->dl_sid));
	if (placed_add(d->dl_sid) == -1)
		log_warnx("call %s: cannot count it (out of memory)", d->dl_sid);
	if (dial_store(d) == -1) {
		dial_stored(NULL, "cannot queue", d);
		return;
	}
}

static void
dial_stored(const redisReply *rep, const char *err, void *arg)
{
	struct dial	*d = arg;

	if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
		d->dl_set_failed = 1;
		metrics.m_redis_errors++;
		if (rep == NULL)
			log_warnx("call %s: storing its context failed: %s",
			    d->dl_sid, err ? err : "error");
	}
	if (--d->dl_sets > 0)
		return;
	if (d->dl_set_failed) {
		/* Ringing with no context: hang it up, say so. */
		metrics.m_call_refused[1]++;
		placed_remove(d->dl_sid);
		if (twilio_end_call(sv.sv_ec, sv.sv_cf, d->dl_sid, dial_ended,
		    NULL) == -1)
			log_warnx("call %s: cannot end it", d->dl_sid);
		dial_answer(d, 503, "Redis is unavailable; the call was "
		    "cancelled");
		free(d);
		return;
	}
	metrics.m_calls_placed++;
	log_info("call %s placed to %s (type %s, %.0f ms)", d->dl_sid,
	    d->dl_phone, d->dl_type, (double)(now_mono_ns() - d->dl_t0) / 1e6);
	dial_answer(d, 200, NULL);
	pool_prepare(d->dl_sid);
	free(d);
}

static void
dial_ended(const struct twilio_result *r, void *arg)
{
	(void)arg;
	if (!r->tr_ok)
		log_warnx("ending a call without context failed: %s",
		    r->tr_error);
}
