/*
 * call.c - struct call, the one call a worker serves: its state, its
 * timers, the binding to a call we placed, and the endings.  An agent
 * or server-side ending (call_agent_hangup) sends a Twilio mark after
 * the last audio, waits for its echo (at most 5 s) so the goodbye is
 * heard, ends the call by REST, then call_end().  call_end() is the only
 * way a call ends and is idempotent: both sockets closed (bounded wait),
 * one summary line, DONE, exit.  From the handoff to DONE a 1 s timer
 * sends MSG_LOAD, the supervisor's heartbeat, and ends a call whose
 * Twilio stream went silent for worker_stall seconds.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "evcurl.h"
#include "jobs.h"
#include "log.h"
#include "redis.h"
#include "session.h"
#include "twilio_rest.h"
#include "util.h"
#include "profile.h"
#include "worker.h"

#define START_TIMEOUT_SECS	10
#define START_TIMEOUT_SHARED	2
#define MARK_WAIT_SECS		5
#define APOLOGY_TWIML	"<Response><Say>I am sorry, I cannot talk right " \
	"now. Please expect a call later. Goodbye.</Say><Hangup/></Response>"
#define FLUSH_MAX_MS		2000

static void	call_no_start(int, short, void *);
static void	call_too_long(int, short, void *);
static void	call_flush(int, short, void *);
static void	call_finish(struct call *);
static void	call_summary(struct call *);

static const char *const cs_names[] = {
	"handshake", "wait_start", "binding", "active", "ending"
};

#define BIND_TIMEOUT_MS	3000

static void	call_bind_query(struct call *);
static void	call_profile_got(enum profile_status, struct profile *,
		    const char *, void *);
static void	call_first_poll(int, short, void *);
static void	call_first_got(const redisReply *, const char *, void *);

#define FIRST_POLL_MS	100
static void	call_load_tick(int, short, void *);
static void	call_tw_watch(struct call *);
static void	call_write_session(struct call *);
static void	call_activate(struct call *);
static void	call_mark_late(int, short, void *);
static void	call_rest_done(const struct twilio_result *, void *);
static void	call_hangup_rest(struct call *);
static void	call_maybe_finish(struct call *);
static void	call_job_done(enum job_outcome, const char *, void *);
static void	call_keys_done(int, void *);
static void	call_post_late(int, short, void *);
static void	call_session_written(int, void *);
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
	c->c_t_mark = evtimer_new(wk.wk_base, call_mark_late, c);
	c->c_t_post = evtimer_new(wk.wk_base, call_post_late, c);
	c->c_t_load = event_new(wk.wk_base, -1, EV_PERSIST, call_load_tick,
	    c);
	c->c_interrupted = -1;
	if (c->c_t_start == NULL || c->c_t_max == NULL ||
	    c->c_t_flush == NULL || c->c_t_bind == NULL ||
	    c->c_t_mark == NULL || c->c_t_post == NULL ||
	    c->c_t_load == NULL) {
		free(c);
		return NULL;
	}
	wk.wk_call = c;
	tv.tv_sec = 1;
	event_add(c->c_t_load, &tv);	/* the heartbeat, until DONE */
	tv.tv_sec = START_TIMEOUT_SECS;
	if (twilio_ws_accept(c, fd, head, len) == -1) {
		call_end(c, "handshake refused");
		return c;
	}
	call_set_state(c, CS_WAIT_START);
	/*
	 * Twilio sends start right after the upgrade.  On the shared URL
	 * (whose signature is the same for every call) a stream that
	 * never starts holds its worker START_TIMEOUT_SHARED at most.
	 */
	if (c->c_url_sid[0] == '\0')
		tv.tv_sec = START_TIMEOUT_SHARED;
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
	if (json_is_string(json_object_get(o, "firstMessage")) &&
	    json_string_length(json_object_get(o, "firstMessage")) > 0)
		c->c_first = strdup(json_string_value(json_object_get(o,
		    "firstMessage")));
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
	log_info("stream bound: type=%s%s", c->c_call_type, c->c_first ?
	    " (first message prepared while ringing)" : "");
	call_set_state(c, CS_ACTIVE);
	c->c_t_bound = now_mono_ns();
	/* In parallel: the person, ElevenLabs, the prepared message. */
	if (profile_load_on(wk.wk_pg, wk.wk_base, wk.wk_cf->database_url,
	    c->c_phone, wk.wk_cf->database_timeout, call_profile_got, c)
	    == -1) {
		call_apologise(c, "database unavailable");
		return;
	}
	if (eleven_start(c) == -1) {
		call_apologise(c, "elevenlabs unavailable");
		return;
	}
	if (c->c_first != NULL)
		c->c_first_ready = 1;
	else
		call_first_poll(-1, 0, c);
}

/* The person the call is for, or an apology instead of dead air. */
static void
call_profile_got(enum profile_status st, struct profile *p, const char *err,
    void *arg)
{
	struct call	*c = arg;

	/*
	 * The database is not needed again in this call: its connection
	 * goes back now, so only idle workers and calls being set up hold
	 * one, not every live call.
	 */
	profile_conn_close(wk.wk_pg);
	wk.wk_pg = NULL;
	if (c->c_state == CS_ENDING || c->c_agent_ending) {
		profile_free(p);
		return;
	}
	if (st != PROFILE_OK) {
		log_warnx("no profile for %s: %s", c->c_phone,
		    st == PROFILE_UNKNOWN ? "unknown person" : err);
		call_apologise(c, st == PROFILE_UNKNOWN ? "unknown person" :
		    "database unavailable");
		return;
	}
	c->c_profile = p;
	strlcpy_n(c->c_user_id, p->p_id, sizeof(c->c_user_id));
	c->c_is_first_call = p->p_is_first_call;
	if ((c->c_pe = malloc(sizeof(*c->c_pe))) == NULL) {
		call_apologise(c, "out of memory");
		return;
	}
	persona_build(c->c_pe, p, c->c_phone, c->c_call_type);
	if ((c->c_system = persona_system(c->c_pe, c->c_call_type)) == NULL) {
		call_apologise(c, "prompt error");
		return;
	}
	log_info("profile loaded: user %s (%s call) in %llu ms", p->p_id,
	    p->p_is_first_call ? "first" : "returning",
	    (unsigned long long)((now_mono_ns() - c->c_t_bound) / 1000000));
	call_try_init(c);
}

/*
 * Wait (bounded by --first-message-wait) for the message a PREPARE
 * worker is writing into call:{sid}; then fall back to the template.
 */
static void
call_first_poll(int fd, short ev, void *arg)
{
	struct call	*c = arg;
	struct timeval	 tv = { 0, FIRST_POLL_MS * 1000 };
	char		 key[160];

	(void)fd, (void)ev;
	if (c->c_first_ready || c->c_state != CS_ACTIVE)
		return;
	if ((now_mono_ns() - c->c_t_bound) / 1000000 >=
	    (uint64_t)wk.wk_cf->first_message_wait) {
		log_info("no prepared first message within %ld ms: template",
		    wk.wk_cf->first_message_wait);
		c->c_first_ready = 1;
		call_try_init(c);
		return;
	}
	if ((ev & EV_TIMEOUT) && key_call(key, sizeof(key), c->c_call_sid) == 0)
		(void)rds_cmdf(wk.wk_rds, call_first_got, c, "GET %s", key);
	if (c->c_t_first == NULL)
		c->c_t_first = evtimer_new(wk.wk_base, call_first_poll, c);
	if (c->c_t_first != NULL)
		evtimer_add(c->c_t_first, &tv);
}

static void
call_first_got(const redisReply *r, const char *err, void *arg)
{
	struct call	*c = arg;
	json_t		*o;
	const char	*fm;

	(void)err;
	if (c->c_first_ready || r == NULL || r->type != REDIS_REPLY_STRING ||
	    (o = json_loadb(r->str, r->len, 0, NULL)) == NULL)
		return;
	fm = json_string_value(json_object_get(o, "firstMessage"));
	if (fm != NULL && fm[0] != '\0' && (c->c_first = strdup(fm))) {
		c->c_first_ready = 1;
		if (c->c_t_first != NULL)
			evtimer_del(c->c_t_first);
		log_info("prepared first message arrived");
		call_try_init(c);
	}
	json_decref(o);
}

/* Send the init message once all three are there. */
void
call_try_init(struct call *c)
{
	if (c->c_el_state != EL_OPEN || c->c_system == NULL ||
	    !c->c_first_ready || c->c_agent_ending)
		return;
	if (c->c_first == NULL &&
	    (c->c_pe == NULL ||
	    (c->c_first = persona_first_template(c->c_pe)) == NULL)) {
		call_apologise(c, "prompt error");
		return;
	}
	(void)eleven_send_init(c);
}

/*
 * The init message is sent: the person's profile, the template
 * variables, the system prompt and the first message are not read
 * again, and worker_settle() gives their pages back.
 */
void
call_setup_free(struct call *c)
{
	profile_free(c->c_profile);
	c->c_profile = NULL;
	free(c->c_pe);
	c->c_pe = NULL;
	free(c->c_system);
	c->c_system = NULL;
	free(c->c_first);
	c->c_first = NULL;
}

/* The conversation is up: report its id for orphan clean-up. */
void
call_el_ready(struct call *c)
{
	struct msg_call_info	ci;
	struct timeval		tv = { 30, 0 };

	memset(&ci, 0, sizeof(ci));
	strlcpy_n(ci.ci_call_sid, c->c_call_sid, sizeof(ci.ci_call_sid));
	strlcpy_n(ci.ci_stream_sid, c->c_stream_sid, sizeof(ci.ci_stream_sid));
	strlcpy_n(ci.ci_call_type, c->c_call_type, sizeof(ci.ci_call_type));
	strlcpy_n(ci.ci_phone, c->c_phone, sizeof(ci.ci_phone));
	strlcpy_n(ci.ci_conversation_id, c->c_conv_id,
	    sizeof(ci.ci_conversation_id));
	strlcpy_n(ci.ci_user_id, c->c_user_id, sizeof(ci.ci_user_id));
	ci.ci_is_first_call = c->c_is_first_call;
	worker_report_info(&ci);
	evtimer_add(c->c_t_el, &tv);	/* WebSocket keepalive */
	call_write_session(c);
}

/*
 * Each second from the handoff until DONE, whatever the call's state
 * (set-up, bridge, goodbye, post-call steps): MSG_LOAD.  It is the
 * supervisor's heartbeat (a busy worker silent for worker_stall seconds
 * is killed) and, with frames, the worst relay lag of the second for
 * admission control.  One send a second, nothing on the audio path.
 */
static void
call_load_tick(int fd, short ev, void *arg)
{
	struct call	*c = arg;
	uint64_t	 us = c->c_lag_max_ns / 1000;

	(void)fd, (void)ev;
	worker_report_load(us > UINT32_MAX ? UINT32_MAX : (uint32_t)us,
	    c->c_lag_frames);
	c->c_lag_max_ns = 0;
	c->c_lag_frames = 0;
	call_tw_watch(c);
}

/*
 * Twilio sends media every 20 ms while a call is up, silence included.
 * A stream that sent nothing (no media, no mark) for worker_stall
 * seconds once the call is bound is dead even if its socket is not:
 * complete the call by REST (no goodbye mark: nobody would echo it),
 * then end it.  Before the start event and while an ending we began
 * runs, their own timers bound the wait.
 */
static void
call_tw_watch(struct call *c)
{
	if (c->c_tw_rx != c->c_tw_seen || c->c_state < CS_BINDING ||
	    c->c_state == CS_ENDING || c->c_agent_ending) {
		c->c_tw_seen = c->c_tw_rx;
		c->c_tw_idle = 0;
		return;
	}
	if (++c->c_tw_idle < wk.wk_cf->worker_stall)
		return;
	log_warnx("no media from Twilio for %ld s: ending the call",
	    c->c_tw_idle);
	c->c_agent_ending = 1;
	strlcpy_n(c->c_reason, "no media from Twilio", sizeof(c->c_reason));
	if (c->c_t_quiet != NULL)
		evtimer_del(c->c_t_quiet);
	eleven_close(c, 1000);
	call_hangup_rest(c);
}

/* session:{id} and the rag:* pointers the LLM service resolves. */
static void
call_write_session(struct call *c)
{
	struct session	s;

	memset(&s, 0, sizeof(s));
	strlcpy_n(s.s_call_sid, c->c_call_sid, sizeof(s.s_call_sid));
	strlcpy_n(s.s_conversation_id, c->c_conv_id,
	    sizeof(s.s_conversation_id));
	strlcpy_n(s.s_user_id, c->c_user_id, sizeof(s.s_user_id));
	strlcpy_n(s.s_phone, c->c_phone, sizeof(s.s_phone));
	strlcpy_n(s.s_stream_sid, c->c_stream_sid, sizeof(s.s_stream_sid));
	strlcpy_n(s.s_call_type, c->c_call_type, sizeof(s.s_call_type));
	s.s_started_ms = c->c_t_started_ms;
	s.s_last_message_ms = now_real_ms();
	c->c_session_written = 1;	/* delete at the end, whatever */
	if (session_write(wk.wk_rds, &s, call_session_written, c) == -1)
		log_warnx("session keys not written: Redis unavailable");
}

static void
call_session_written(int ok, void *arg)
{
	(void)arg;
	if (!ok)
		log_warnx("session keys not (all) written");
	else
		log_debug("session keys written");
}

/* ElevenLabs went away during the conversation. */
void
call_el_closed(struct call *c, int code, const char *why)
{
	char	reason[64];

	if (code != 1000)
		log_warnx("elevenlabs closed the conversation: %d (%s)%s%s",
		    code, why, c->c_el_error[0] ? ": " : "", c->c_el_error);
	else
		log_info("elevenlabs ended the conversation");
	snprintf(reason, sizeof(reason), code == 1000 ? "agent hung up" :
	    "elevenlabs closed %d", code);
	call_agent_hangup(c, reason);
}

void
call_el_done(struct call *c)
{
	if (c->c_state == CS_ENDING)
		call_maybe_finish(c);
}

/*
 * The agent called end_call: its goodbye may still be streaming, so wait
 * until no agent audio came for QUIET_MS (at most QUIET_MAX_MS, or until
 * ElevenLabs closes), then hang up with the mark after the last audio.
 */
#define QUIET_MS	800
#define QUIET_MAX_MS	5000

static void
call_quiet(int fd, short ev, void *arg)
{
	(void)fd, (void)ev;
	call_agent_hangup(arg, "agent ended the call");
}

void
call_agent_end_tool(struct call *c)
{
	struct timeval	tv = { 0, QUIET_MS * 1000 };

	if (c->c_end_tool || c->c_agent_ending || c->c_state == CS_ENDING)
		return;
	log_info("elevenlabs: the agent ended the call (end_call); waiting "
	    "for the goodbye to finish");
	c->c_end_tool = 1;
	c->c_t_end_tool = now_mono_ns();
	if (c->c_t_quiet == NULL &&
	    (c->c_t_quiet = evtimer_new(wk.wk_base, call_quiet, c)) == NULL) {
		call_agent_hangup(c, "agent ended the call");
		return;
	}
	evtimer_add(c->c_t_quiet, &tv);
}

/* More goodbye audio: push the quiet deadline, within QUIET_MAX_MS. */
void
call_agent_audio_seen(struct call *c)
{
	struct timeval	tv = { 0, QUIET_MS * 1000 };

	if (c->c_agent_ending || c->c_t_quiet == NULL ||
	    (now_mono_ns() - c->c_t_end_tool) / 1000000 > QUIET_MAX_MS)
		return;
	evtimer_add(c->c_t_quiet, &tv);
}

/*
 * End the call from our side with the goodbye heard: close ElevenLabs,
 * mark after the last audio, wait for the echo (bounded), end by REST.
 */
void
call_agent_hangup(struct call *c, const char *reason)
{
	struct timeval	tv = { MARK_WAIT_SECS, 0 };

	if (c->c_state == CS_ENDING || c->c_agent_ending)
		return;
	c->c_agent_ending = 1;
	if (c->c_t_quiet != NULL)
		evtimer_del(c->c_t_quiet);
	strlcpy_n(c->c_reason, c->c_end_tool && strcmp(reason, "agent hung up")
	    == 0 ? "agent ended the call" : reason, sizeof(c->c_reason));
	eleven_close(c, 1000);
	if (c->c_tw == NULL || c->c_state < CS_ACTIVE) {
		call_hangup_rest(c);
		return;
	}
	snprintf(c->c_mark, sizeof(c->c_mark), "naiber-end");
	if (bridge_mark(c, c->c_mark) == -1) {
		call_hangup_rest(c);
		return;
	}
	evtimer_add(c->c_t_mark, &tv);
}

void
call_twilio_mark(struct call *c, const char *name)
{
	if (c->c_agent_ending && !c->c_rest_pending &&
	    strcmp(name, c->c_mark) == 0) {
		evtimer_del(c->c_t_mark);
		call_hangup_rest(c);
	}
}

static void
call_mark_late(int fd, short ev, void *arg)
{
	(void)fd, (void)ev;
	log_info("goodbye mark not echoed within %d s", MARK_WAIT_SECS);
	call_hangup_rest(arg);
}

static void
call_hangup_rest(struct call *c)
{
	if (c->c_rest_pending)
		return;
	c->c_rest_pending = 1;
	if (c->c_call_sid[0] == '\0' || twilio_end_call(worker_http(), wk.wk_cf,
	    c->c_call_sid, call_rest_done, c) == -1)
		call_end(c, c->c_reason[0] ? c->c_reason : "ended");
}

static void
call_rest_done(const struct twilio_result *r, void *arg)
{
	struct call	*c = arg;

	if (!r->tr_ok)
		log_warnx("ending the call by REST failed: %s", r->tr_error);
	else
		log_debug("call ended by REST%s", r->tr_already_over ?
		    " (it was already over)" : "");
	call_end(c, c->c_reason[0] ? c->c_reason : "ended");
}

/*
 * Before the conversation began something failed: say a short sentence
 * instead of leaving dead air, by redirecting the live call to TwiML.
 */
void
call_apologise(struct call *c, const char *reason)
{
	if (c->c_state == CS_ENDING || c->c_agent_ending)
		return;
	c->c_agent_ending = 1;
	c->c_rest_pending = 1;
	strlcpy_n(c->c_reason, reason, sizeof(c->c_reason));
	eleven_close(c, 1000);
	log_warnx("apologising to the caller and hanging up: %s", reason);
	if (c->c_call_sid[0] == '\0' || twilio_redirect_call(worker_http(),
	    wk.wk_cf, c->c_call_sid, APOLOGY_TWIML, call_rest_done, c) == -1)
		call_end(c, reason);
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
	log_info("call reached max_call_seconds (%ld s)",
	    wk.wk_cf->max_call_seconds);
	call_agent_hangup(arg, "max call seconds");
}

void
call_twilio_closed(struct call *c, int code)
{
	(void)code;
	call_end(c, c->c_agent_ending && c->c_reason[0] ? c->c_reason :
	    "closed");
}

void
call_end(struct call *c, const char *reason)
{
	struct timeval	tv = { FLUSH_MAX_MS / 1000, 0 };

	if (c->c_state == CS_ENDING)
		return;
	/* An ending we started keeps its reason over the socket's. */
	if (!c->c_agent_ending || c->c_reason[0] == '\0')
		strlcpy_n(c->c_reason, reason, sizeof(c->c_reason));
	c->c_state = CS_ENDING;
	evtimer_del(c->c_t_start);
	evtimer_del(c->c_t_max);
	evtimer_del(c->c_t_bind);
	evtimer_del(c->c_t_mark);
	eleven_close(c, 1000);
	if (c->c_tw != NULL && !ws_done(c->c_tw))
		twilio_ws_close(c);
	event_add(c->c_t_flush, &tv);
	call_maybe_finish(c);
}

/* Finish once both sockets have nothing left to do. */
static void
call_maybe_finish(struct call *c)
{
	if ((c->c_tw == NULL || ws_done(c->c_tw)) &&
	    (c->c_el == NULL || ws_done(c->c_el)))
		call_finish(c);
}

/* The Twilio socket has nothing left to do. */
void
call_twilio_done(struct call *c)
{
	if (c->c_state == CS_ENDING)
		call_maybe_finish(c);
}

/* Our close frame did not get out in time: give up on it. */
static void
call_flush(int fd, short ev, void *arg)
{
	struct call	*c = arg;

	(void)fd, (void)ev;
	log_info("%s did not close within %d ms",
	    c->c_tw != NULL && !ws_done(c->c_tw) ? "the Twilio socket" :
	    "the ElevenLabs socket", FLUSH_MAX_MS);
	call_finish(c);
}

/*
 * Both sockets are closed: enqueue (or spool) the post-call job, delete
 * the session keys, report DONE, exit.  Bounded by POST_MAX_SECS.
 */
#define POST_MAX_SECS	8

static void
call_finish(struct call *c)
{
	struct msg_done	*d = &c->c_cnt;
	struct timeval	 tv = { POST_MAX_SECS, 0 };
	struct job	 j;

	if (c->c_finishing)
		return;
	c->c_finishing = 1;
	evtimer_del(c->c_t_flush);
	call_summary(c);
	evtimer_add(c->c_t_post, &tv);
	if (c->c_conv_id[0] == '\0') {
		call_keys_done(1, c);
		return;
	}
	memset(&j, 0, sizeof(j));
	strlcpy_n(j.j_conversation_id, c->c_conv_id,
	    sizeof(j.j_conversation_id));
	strlcpy_n(j.j_user_id, c->c_user_id, sizeof(j.j_user_id));
	strlcpy_n(j.j_call_type, c->c_call_type, sizeof(j.j_call_type));
	j.j_is_first_call = c->c_is_first_call;
	j.j_timestamp_ms = now_real_ms();
	if (jobs_enqueue(wk.wk_rds, wk.wk_cf->bullmq_prefix,
	    wk.wk_cf->spool_dir, &j, call_job_done, c) == -1) {
		d->dn_job = (jobs_spool(wk.wk_cf->spool_dir, &j) == 0 ?
		    JOB_SPOOLED : JOB_FAILED) + 1;
		call_job_done(d->dn_job - 1, NULL, c);
	}
}

static void
call_job_done(enum job_outcome o, const char *id, void *arg)
{
	struct call	*c = arg;
	static const char *const names[] = { "added", "duplicate", "spooled",
	    "FAILED" };

	c->c_cnt.dn_job = (uint32_t)o + 1;
	if (o == JOB_FAILED)
		log_warnx("post-call job for %s could not be queued or "
		    "spooled", c->c_conv_id);
	else
		log_info("post-call job %s%s%s", names[o], id ? " as " : "",
		    id ? id : "");
	if (!c->c_session_written || session_delete(wk.wk_rds, c->c_conv_id,
	    c->c_user_id, c->c_phone, call_keys_done, c) == -1)
		call_keys_done(c->c_session_written ? 0 : 1, c);
}

static void
call_keys_done(int ok, void *arg)
{
	struct call	*c = arg;

	if (c->c_session_written) {
		c->c_cnt.dn_keys_deleted = (uint32_t)ok;
		if (!ok)
			log_warnx("session keys not deleted (they expire in "
			    "an hour)");
	}
	bridge_free(c);
	close(c->c_fd);
	worker_finish(&c->c_cnt);
}

static void
call_post_late(int fd, short ev, void *arg)
{
	struct call	*c = arg;

	(void)fd, (void)ev;
	log_warnx("post-call steps did not finish in %d s", POST_MAX_SECS);
	if (c->c_cnt.dn_job == 0 && c->c_conv_id[0] != '\0') {
		struct job j;
		memset(&j, 0, sizeof(j));
		strlcpy_n(j.j_conversation_id, c->c_conv_id,
		    sizeof(j.j_conversation_id));
		strlcpy_n(j.j_user_id, c->c_user_id, sizeof(j.j_user_id));
		strlcpy_n(j.j_call_type, c->c_call_type,
		    sizeof(j.j_call_type));
		j.j_is_first_call = c->c_is_first_call;
		j.j_timestamp_ms = now_real_ms();
		c->c_cnt.dn_job = (jobs_spool(wk.wk_cf->spool_dir, &j) == 0 ?
		    JOB_SPOOLED : JOB_FAILED) + 1;
	}
	call_keys_done(0, c);
}

static void
call_summary(struct call *c)
{
	struct msg_done	*d = &c->c_cnt;

	d->dn_duration_ms = (now_mono_ns() - c->c_t_begin) / 1000000;
	strlcpy_n(d->dn_call_sid, c->c_call_sid, sizeof(d->dn_call_sid));
	strlcpy_n(d->dn_reason, c->c_reason, sizeof(d->dn_reason));
	log_info("call ended: reason=%s duration_ms=%llu frames_in=%llu "
	    "frames_out=%llu dropped=%llu bad=%llu pongs=%llu clears=%llu",
	    c->c_reason, (unsigned long long)d->dn_duration_ms,
	    (unsigned long long)d->dn_frames_in,
	    (unsigned long long)d->dn_frames_out,
	    (unsigned long long)d->dn_frames_dropped,
	    (unsigned long long)d->dn_bad_messages,
	    (unsigned long long)d->dn_pongs,
	    (unsigned long long)d->dn_clears);
}
