/*
 * call.c - struct call, the one call a worker serves: its state, its
 * timers and call_end(), the only way a call ends.  call_end() is
 * idempotent: it closes the Twilio socket with 1000, waits (bounded)
 * for the close to go out, writes one summary line, reports DONE and
 * the worker exits.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "redis.h"
#include "util.h"
#include "worker.h"

#define START_TIMEOUT_SECS	10
#define FLUSH_MAX_MS		2000

static void	call_no_start(int, short, void *);
static void	call_too_long(int, short, void *);
static void	call_flush(int, short, void *);
static void	call_finish(struct call *);

static const char *const cs_names[] = {
	"handshake", "wait_start", "binding", "active", "ending"
};

#define BIND_TIMEOUT_MS	3000

static void	call_bind_query(struct call *);
static void	call_activate(struct call *);
static void	call_bind_got(const redisReply *, const char *, void *);
static void	call_bind_state(int, void *);
static void	call_bind_late(int, short, void *);

struct call *
call_new(int fd, const struct msg_handoff *ho, const uint8_t *head,
    size_t len)
{
	struct call	*c;
	struct timeval	 tv = { START_TIMEOUT_SECS, 0 };

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->c_fd = fd;
	c->c_t_begin = now_mono_ns();
	c->c_t_handoff = ho->ho_t_accept_ns;
	c->c_state = CS_HANDSHAKE;
	c->c_t_start = evtimer_new(wk.wk_base, call_no_start, c);
	c->c_t_max = evtimer_new(wk.wk_base, call_too_long, c);
	c->c_t_flush = evtimer_new(wk.wk_base, call_flush, c);
	c->c_t_bind = evtimer_new(wk.wk_base, call_bind_late, c);
	if (c->c_t_start == NULL || c->c_t_max == NULL ||
	    c->c_t_flush == NULL || c->c_t_bind == NULL) {
		free(c);
		return NULL;
	}
	wk.wk_call = c;
	if (twilio_ws_accept(c, fd, head, len) == -1) {
		call_end(c, "handshake refused");
		return c;
	}
	call_set_state(c, CS_WAIT_START);
	evtimer_add(c->c_t_start, &tv);
	tv.tv_sec = wk.wk_cf->max_call_seconds;
	evtimer_add(c->c_t_max, &tv);
	return c;
}

/* The only place a call changes state; a move backwards is a bug. */
void
call_set_state(struct call *c, enum call_state to)
{
	if (to <= c->c_state)
		log_panic("call state %s to %s", cs_names[c->c_state],
		    cs_names[to]);
	log_debug("call %s -> %s", cs_names[c->c_state], cs_names[to]);
	c->c_state = to;
	if (to >= CS_BINDING)
		evtimer_del(c->c_t_start);
	if (to > CS_BINDING)
		evtimer_del(c->c_t_bind);
}

/*
 * The stream must belong to a call we placed: the nonce Twilio carried
 * in <Parameter name="nonce"> must equal the one POST /call stored in
 * call:{callSid}.  Nothing else (ElevenLabs, the database) happens
 * before this passes.
 */
void
call_bind(struct call *c, const char *type, const char *nonce)
{
	struct timeval	tv = { BIND_TIMEOUT_MS / 1000,
			    (BIND_TIMEOUT_MS % 1000) * 1000 };

	strlcpy_n(c->c_call_type, type, sizeof(c->c_call_type));
	if (nonce == NULL || nonce[0] == '\0' ||
	    strlen(nonce) >= sizeof(c->c_nonce)) {
		log_warnx("stream refused: no nonce parameter, not a call we "
		    "placed");
		call_end(c, "stream not bound");
		return;
	}
	strlcpy_n(c->c_nonce, nonce, sizeof(c->c_nonce));
	call_set_state(c, CS_BINDING);
	evtimer_add(c->c_t_bind, &tv);
	if (rds_connected(wk.wk_rds))
		call_bind_query(c);
	else
		rds_on_state(wk.wk_rds, call_bind_state, c);
}

static void
call_bind_state(int up, void *arg)
{
	struct call	*c = arg;

	if (up && c->c_state == CS_BINDING)
		call_bind_query(c);
}

static void
call_bind_late(int fd, short ev, void *arg)
{
	(void)fd, (void)ev;
	log_warnx("stream refused: Redis did not answer within %d ms, the "
	    "call cannot be checked", BIND_TIMEOUT_MS);
	call_end(arg, "stream not bound");
}

static void
call_bind_query(struct call *c)
{
	char	key[160];

	if (key_call(key, sizeof(key), c->c_call_sid) == -1 ||
	    rds_cmdf(wk.wk_rds, call_bind_got, c, "GET %s", key) == -1) {
		log_warnx("stream refused: cannot look up call:%s",
		    c->c_call_sid);
		call_end(c, "stream not bound");
	}
}

static void
call_bind_got(const redisReply *rep, const char *err, void *arg)
{
	struct call	*c = arg;
	json_t		*o = NULL;
	const char	*nonce, *type, *phone;

	if (c->c_state != CS_BINDING)
		return;
	if (rep == NULL || rep->type != REDIS_REPLY_STRING ||
	    (o = json_loadb(rep->str, rep->len, 0, NULL)) == NULL) {
		log_warnx("stream refused: %s", rep == NULL ? err :
		    rep->type == REDIS_REPLY_NIL ? "no call:{callSid}: not a "
		    "call we placed (or it expired)" : "unreadable context");
		call_end(c, "stream not bound");
		return;
	}
	nonce = json_string_value(json_object_get(o, "nonce"));
	type = json_string_value(json_object_get(o, "callType"));
	phone = json_string_value(json_object_get(o, "phone"));
	if (nonce == NULL || !ct_streq(c->c_nonce, nonce)) {
		log_warnx("stream refused: nonce does not match the call we "
		    "placed");
		json_decref(o);
		call_end(c, "stream not bound");
		return;
	}
	if (type != NULL && (strcmp(type, "general") == 0 ||
	    strcmp(type, "health_check") == 0))
		strlcpy_n(c->c_call_type, type, sizeof(c->c_call_type));
	if (phone != NULL)
		strlcpy_n(c->c_phone, phone, sizeof(c->c_phone));
	json_decref(o);
	call_activate(c);
}

/* Bound to our call: tell the supervisor, start carrying audio. */
static void
call_activate(struct call *c)
{
	struct msg_call_info	ci;

	memset(&ci, 0, sizeof(ci));
	strlcpy_n(ci.ci_call_sid, c->c_call_sid, sizeof(ci.ci_call_sid));
	strlcpy_n(ci.ci_stream_sid, c->c_stream_sid, sizeof(ci.ci_stream_sid));
	strlcpy_n(ci.ci_call_type, c->c_call_type, sizeof(ci.ci_call_type));
	strlcpy_n(ci.ci_phone, c->c_phone, sizeof(ci.ci_phone));
	worker_report_info(&ci);
	log_info("stream bound: type=%s", c->c_call_type);
	call_set_state(c, CS_ACTIVE);
}

static void
call_no_start(int fd, short ev, void *arg)
{
	(void)fd, (void)ev;
	call_end(arg, "no start event");
}

static void
call_too_long(int fd, short ev, void *arg)
{
	(void)fd, (void)ev;
	call_end(arg, "max call seconds");
}

void
call_twilio_closed(struct call *c, int code)
{
	(void)code;
	call_end(c, "closed");
}

void
call_end(struct call *c, const char *reason)
{
	struct timeval	tv = { FLUSH_MAX_MS / 1000, 0 };

	if (c->c_state == CS_ENDING)
		return;
	strlcpy_n(c->c_reason, reason, sizeof(c->c_reason));
	c->c_state = CS_ENDING;
	evtimer_del(c->c_t_start);
	evtimer_del(c->c_t_max);
	if (c->c_tw == NULL || ws_done(c->c_tw)) {
		call_finish(c);
		return;
	}
	twilio_ws_close(c);
	event_add(c->c_t_flush, &tv);
}

/* The Twilio socket has nothing left to do. */
void
call_twilio_done(struct call *c)
{
	if (c->c_state == CS_ENDING)
		call_finish(c);
}

/* Our close frame did not get out in time: give up on it. */
static void
call_flush(int fd, short ev, void *arg)
{
	(void)fd, (void)ev;
	log_info("Twilio socket did not close in %d ms", FLUSH_MAX_MS);
	call_finish(arg);
}

static void
call_finish(struct call *c)
{
	struct msg_done	*d = &c->c_cnt;

	d->dn_duration_ms = (now_mono_ns() - c->c_t_begin) / 1000000;
	strlcpy_n(d->dn_reason, c->c_reason, sizeof(d->dn_reason));
	log_info("call ended: reason=%s duration_ms=%llu frames_in=%llu "
	    "frames_out=%llu dropped=%llu bad=%llu", c->c_reason,
	    (unsigned long long)d->dn_duration_ms,
	    (unsigned long long)d->dn_frames_in,
	    (unsigned long long)d->dn_frames_out,
	    (unsigned long long)d->dn_frames_dropped,
	    (unsigned long long)d->dn_bad_messages);
	close(c->c_fd);
	worker_finish(d);
}
