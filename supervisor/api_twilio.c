/*
 * api_twilio.c - the webhooks Twilio calls: POST /twiml (answered with
 * the <Connect><Stream> document built from call:{CallSid}) and POST
 * /status-callback (call progress: log, count, forget the call's context
 * once it is over).  Both are checked against X-Twilio-Signature over
 * the configured public TWILIO_URL, never the Host header.  Runs in the
 * supervisor; reads and deletes Redis keys.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "log.h"
#include "streamtok.h"
#include "redis.h"
#include "twilio.h"
#include "twilio_rest.h"
#include "util.h"
#include "supervisor.h"

#define TW_MAX_FORM	128
#define TWIML_APOLOGY	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>"	\
	"<Response><Say>Sorry, we cannot take this call right now. "	\
	"Goodbye.</Say><Hangup/></Response>"

struct twiml_op {
	struct conn	*to_conn;
	char		 to_sid[64];
};

static const char *const outcomes[] = {
	"completed", "busy", "no-answer", "failed", "canceled"
};

static void	twiml_cancel(void *);
static void	twiml_got(const redisReply *, const char *, void *);
static int	twiml_build(const char *, const char *, char *, size_t);
static void	status_deleted(const redisReply *, const char *, void *);

/* Parse the form and check the signature; answers 400/403 itself. */
static int
webhook_verify(struct conn *cn, struct hhead *h, const char *route,
    struct tw_param *p, int *np)
{
	char		 url[1200];
	const char	*sig = hh_get(h, "X-Twilio-Signature");
	static char	 empty[1];

	*np = twilio_form_parse(h->hh_body != NULL ? h->hh_body : empty,
	    h->hh_bodylen, p, TW_MAX_FORM);
	if (*np == -1) {
		conn_respond_json_error(cn, 400, "malformed form body");
		return -1;
	}
	snprintf(url, sizeof(url), "%s%s%s%s", sv.sv_cf->twilio_url, route,
	    h->hh_query ? "?" : "", h->hh_query ? h->hh_query : "");
	if (sig == NULL || !twilio_sig_check(sv.sv_cf->twilio_auth_token, url,
	    p, (size_t)*np, sig)) {
		metrics.m_refused_sig++;
		log_warnx("%s: POST %s refused: bad X-Twilio-Signature",
		    cn->cn_addr, route);
		conn_respond_json_error(cn, 403, "forbidden");
		return -1;
	}
	return 0;
}

static const char *
form_get(const struct tw_param *p, int n, const char *name)
{
	int	i;

	for (i = 0; i < n; i++)
		if (strcmp(p[i].tp_name, name) == 0)
			return p[i].tp_value;
	return NULL;
}

static void
twiml_reply(struct conn *cn, const char *doc)
{
	conn_respond(cn, 200, "text/xml", doc, strlen(doc), NULL);
}

void
api_twiml(struct conn *cn, struct hhead *h)
{
	struct tw_param	 p[TW_MAX_FORM];
	struct twiml_op	*op;
	const char	*sid;
	char		 key[160];
	int		 np;

	if (webhook_verify(cn, h, "/twiml", p, &np) == -1)
		return;
	sid = form_get(p, np, "CallSid");
	if (!twilio_sid_ok(sid, "CA") || key_call(key, sizeof(key), sid) == -1) {
		log_warnx("POST /twiml without a valid CallSid: apology");
		twiml_reply(cn, TWIML_APOLOGY);
		return;
	}
	if ((op = calloc(1, sizeof(*op))) == NULL) {
		twiml_reply(cn, TWIML_APOLOGY);
		return;
	}
	op->to_conn = cn;
	strlcpy_n(op->to_sid, sid, sizeof(op->to_sid));
	if (rds_cmdf(sv.sv_rds, twiml_got, op, "GET %s", key) == -1) {
		metrics.m_redis_errors++;
		log_warnx("call %s: TwiML wanted but Redis is unavailable: "
		    "apology", sid);
		free(op);
		twiml_reply(cn, TWIML_APOLOGY);
		return;
	}
	cn->cn_op = op;
	cn->cn_op_cancel = twiml_cancel;
}

static void
twiml_cancel(void *arg)
{
	((struct twiml_op *)arg)->to_conn = NULL;
}

static void
twiml_got(const redisReply *rep, const char *err, void *arg)
{
	struct twiml_op	*op = arg;
	char		 doc[4096];

	if (op->to_conn == NULL) {
		free(op);
		return;
	}
	if (rep == NULL || rep->type != REDIS_REPLY_STRING) {
		if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
			metrics.m_redis_errors++;
		log_warnx("call %s: no context (%s): answering with an apology",
		    op->to_sid, rep == NULL ? err : rep->type ==
		    REDIS_REPLY_NIL ? "unknown or expired call" : "bad reply");
		twiml_reply(op->to_conn, TWIML_APOLOGY);
	} else if (twiml_build(op->to_sid, rep->str, doc, sizeof(doc)) ==
	    -1) {
		log_warnx("call %s: unusable context: answering with an "
		    "apology", op->to_sid);
		twiml_reply(op->to_conn, TWIML_APOLOGY);
	} else {
		log_info("call %s answered: streaming to %s/%s...",
		    op->to_sid, sv.sv_cf->stream_url, op->to_sid);
		twiml_reply(op->to_conn, doc);
	}
	free(op);
}

/*
 * The <Connect><Stream> document; every attribute value escaped.  The
 * stream URL is the call's own (streamtok.c): Twilio signs it, so the
 * supervisor can tell this call's stream from a replayed one.
 */
static int
twiml_build(const char *sid, const char *ctx, char *doc, size_t cap)
{
	json_t		*o;
	json_error_t	 err;
	const char	*type, *nonce;
	char		 e_url[1400], e_type[64], e_nonce[200], e_agent[400];
	char		 url[1300], tok[STREAM_TOKEN_MAX + 1];
	int		 n, rc = -1;

	if (stream_token(sv.sv_cf->twilio_auth_token, sid, tok,
	    sizeof(tok)) == -1 || snprintf(url, sizeof(url), "%s/%s",
	    sv.sv_cf->stream_url, tok) >= (int)sizeof(url))
		return -1;
	if ((o = json_loads(ctx, JSON_REJECT_DUPLICATES, &err)) == NULL)
		return -1;
	type = json_string_value(json_object_get(o, "callType"));
	nonce = json_string_value(json_object_get(o, "nonce"));
	if (type == NULL || nonce == NULL ||
	    xml_escape(url, e_url, sizeof(e_url)) == -1 ||
	    xml_escape(type, e_type, sizeof(e_type)) == -1 ||
	    xml_escape(nonce, e_nonce, sizeof(e_nonce)) == -1 ||
	    xml_escape(sv.sv_cf->elevenlabs_agent_id, e_agent,
	    sizeof(e_agent)) == -1)
		goto out;
	n = snprintf(doc, cap, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
	    "<Response><Connect><Stream url=\"%s\">"
	    "<Parameter name=\"call_type\" value=\"%s\"/>"
	    "<Parameter name=\"nonce\" value=\"%s\"/>"
	    "<Parameter name=\"agent_id\" value=\"%s\"/>"
	    "<Parameter name=\"stream_format\" value=\"mulaw\"/>"
	    "<Parameter name=\"stream_sample_rate\" value=\"8000\"/>"
	    "</Stream></Connect></Response>", e_url, e_type, e_nonce,
	    e_agent);
	if (n > 0 && (size_t)n < cap)
		rc = 0;
out:
	json_decref(o);
	return rc;
}

void
api_status_callback(struct conn *cn, struct hhead *h)
{
	struct tw_param	 p[TW_MAX_FORM];
	const char	*sid, *status, *seq, *dur;
	char		 k1[160], k2[160];
	size_t		 i;
	int		 np, final = 0;

	if (webhook_verify(cn, h, "/status-callback", p, &np) == -1)
		return;
	sid = form_get(p, np, "CallSid");
	status = form_get(p, np, "CallStatus");
	seq = form_get(p, np, "SequenceNumber");
	dur = form_get(p, np, "CallDuration");
	if (!twilio_sid_ok(sid, "CA") || status == NULL) {
		conn_respond_json_error(cn, 400, "CallSid and CallStatus "
		    "required");
		return;
	}
	for (i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++)
		if (strcmp(status, outcomes[i]) == 0) {
			metrics.m_outcome[i]++;
			final = 1;
		}
	log_info("call %s status %s (sequence %s%s%s)", sid, status,
	    seq ? seq : "?", dur ? ", duration " : "", dur ? dur : "");
	if (final) {
		placed_remove(sid);
		/* Over: its context is of no use to anyone now. */
		if (key_call(k1, sizeof(k1), sid) == 0 &&
		    key_call_type(k2, sizeof(k2), sid) == 0 &&
		    rds_cmdf(sv.sv_rds, status_deleted, NULL, "DEL %s %s", k1,
		    k2) == -1)
			log_info("call %s: context not deleted (Redis "
			    "unavailable); it expires by itself", sid);
	}
	conn_respond(cn, 204, NULL, NULL, 0, NULL);
}

static void
status_deleted(const redisReply *rep, const char *err, void *arg)
{
	(void)arg;
	if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
		metrics.m_redis_errors++;
		log_info("deleting a finished call's context failed: %s",
		    rep == NULL ? err : rep->str);
	}
}
