/*
 * eleven_ws.c - the ElevenLabs ConvAI side of a call, in a worker: the
 * signed URL (GET .../get-signed-url with xi-api-key, over evcurl), the
 * TLS WebSocket, conversation_initiation_client_data as the first
 * message (documented overrides only), then every server event: the
 * metadata (conversation id, formats), audio, interruption, ping (pong
 * at once), the end_call tool, errors.  Unknown events are ignored.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <jansson.h>

#include "evcurl.h"
#include "log.h"
#include "util.h"
#include "worker.h"

#define EL_MAX_MSG		(16 * 1024 * 1024)
#define EL_KEEPALIVE_SECS	30

static void	el_url_got(const struct evcurl_resp *, void *);
static void	el_on_open(void *);
static void	el_on_text(void *, const uint8_t *, size_t);
static void	el_on_close(void *, int, const char *);
static void	el_on_done(void *);
static void	el_timer(int, short, void *);
static void	el_event(struct call *, const struct el_event *);

static const struct ws_cb el_cb = {
	el_on_text, el_on_close, el_on_done, el_on_open
};


int
eleven_start(struct call *c)
{
	struct evcurl_req	rq;
	char			url[1024], hdr[600];
	struct timeval		tv;

	if (c->c_t_el == NULL &&
	    (c->c_t_el = evtimer_new(wk.wk_base, el_timer, c)) == NULL)
		return -1;
	memset(&rq, 0, sizeof(rq));
	snprintf(url, sizeof(url), "%s/v1/convai/conversation/get-signed-url"
	    "?agent_id=%s", wk.wk_cf->elevenlabs_base_url,
	    wk.wk_cf->elevenlabs_agent_id);
	snprintf(hdr, sizeof(hdr), "xi-api-key: %s",
	    wk.wk_cf->elevenlabs_api_key);
	rq.rq_method = "GET";
	rq.rq_url = url;
	rq.rq_headers[0] = hdr;
	rq.rq_headers[1] = "Accept: application/json";
	rq.rq_timeout_ms = wk.wk_cf->elevenlabs_timeout;
	tv.tv_sec = wk.wk_cf->elevenlabs_timeout * 2 / 1000;
	tv.tv_usec = wk.wk_cf->elevenlabs_timeout * 2 % 1000 * 1000;
	if (evcurl_start(wk.wk_ec, &rq, el_url_got, c) == -1)
		return -1;
	c->c_el_state = EL_URL;
	evtimer_add(c->c_t_el, &tv);
	return 0;
}

static void
el_fail(struct call *c, const char *why)
{
	log_warnx("elevenlabs: %s", why);
	eleven_close(c, 1000);	/* a client ending the session: 1000 */
	call_apologise(c, "elevenlabs unavailable");
}

static void
el_url_got(const struct evcurl_resp *r, void *arg)
{
	struct call	*c = arg;
	json_t		*o;
	const char	*u;
	char		 err[200];

	if (c->c_el_state != EL_URL)
		return;
	if (r->er_failed || r->er_status != 200) {
		snprintf(err, sizeof(err), "signed URL request failed: %s",
		    r->er_failed ? r->er_error : "bad HTTP status");
		if (!r->er_failed)
			snprintf(err, sizeof(err), "signed URL request "
			    "answered HTTP %ld", r->er_status);
		el_fail(c, err);
		return;
	}
	o = json_loadb(r->er_body, r->er_len, 0, NULL);
	u = json_string_value(json_object_get(o, "signed_url"));
	if (u == NULL) {
		json_decref(o);
		el_fail(c, "signed URL answer without signed_url");
		return;
	}
	c->c_el = ws_client_new(wk.wk_base, u, EL_MAX_MSG, &el_cb,
	    c, err, sizeof(err));
	json_decref(o);
	if (c->c_el == NULL) {
		el_fail(c, err);
		return;
	}
	c->c_el_state = EL_CONNECTING;
}

/* The first message: documented overrides only, nothing empty or null. */
static char *
el_init_message(struct call *c)
{
	const struct config	*cf = wk.wk_cf;
	json_t			*o, *ov, *agent, *tts = NULL, *extra;
	char			*s;

	/* The system prompt begins with the User ID / Phone lines. */
	agent = json_pack("{s:{s:s}, s:s}", "prompt", "prompt", c->c_system,
	    "first_message", c->c_first);
	if (agent == NULL)
		return NULL;
	if (cf->elevenlabs_language != NULL)
		json_object_set_new(agent, "language",
		    json_string(cf->elevenlabs_language));
	ov = json_pack("{s:o}", "agent", agent);
	if (ov != NULL && cf->elevenlabs_voice_id != NULL &&
	    (tts = json_pack("{s:s}", "voice_id", cf->elevenlabs_voice_id)))
		json_object_set_new(ov, "tts", tts);
	extra = json_pack("{s:s, s:s}", "naiber_user_id", c->c_user_id,
	    "call_type", c->c_call_type);
	o = json_pack("{s:s, s:o, s:o, s:s}", "type",
	    "conversation_initiation_client_data",
	    "conversation_config_override", ov, "custom_llm_extra_body", extra,
	    "user_id", c->c_user_id);
	if (o == NULL)
		return NULL;
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

static void
el_on_open(void *arg)
{
	struct call	*c = arg;

	c->c_el_state = EL_OPEN;
	log_debug("elevenlabs: connected");
	call_try_init(c);
}

/* Once connected, with the system prompt and the first message. */
int
eleven_send_init(struct call *c)
{
	char		*msg;

	if (c->c_el_state != EL_OPEN)
		return -1;
	if ((msg = el_init_message(c)) == NULL ||
	    ws_send_text(c->c_el, msg, strlen(msg)) == -1) {
		free(msg);
		el_fail(c, "cannot send the init message");
		return -1;
	}
	log_info("elevenlabs: init sent (%zu bytes, %llu ms after start)",
	    strlen(msg), (unsigned long long)((now_mono_ns() -
	    c->c_t_started) / 1000000));
	free(msg);
	c->c_el_state = EL_WAIT_META;
	/*
	 * The set-up is over: what only it needed goes back now, while
	 * no audio is relayed yet (caller audio waits for the metadata).
	 */
	call_setup_free(c);
	ws_settle(c->c_tw);
	ws_settle(c->c_el);
	worker_settle();
	return 0;
}

static void
el_timer(int fd, short ev, void *arg)
{
	struct call	*c = arg;
	struct timeval	 tv = { EL_KEEPALIVE_SECS, 0 };

	(void)fd, (void)ev;
	if (c->c_el_state == EL_READY) {
		if (ws_ping(c->c_el) == 0)	/* as the original: 30 s */
			evtimer_add(c->c_t_el, &tv);
		return;
	}
	if (c->c_el_state < EL_READY)
		el_fail(c, "no conversation within twice elevenlabs_timeout");
}

static void
el_on_text(void *arg, const uint8_t *data, size_t len)
{
	struct call	*c = arg;
	struct el_event	 ev;
	const char	*why;

	if (eleven_event_parse((const char *)data, len, &ev, &why) == -1) {
		if (c->c_cnt.dn_bad_messages++ == 0)
			log_warnx("elevenlabs: dropped a malformed message: %s "
			    "(further ones are only counted)", why);
		return;
	}
	el_event(c, &ev);
	eleven_event_free(&ev);
}

static void
el_metadata(struct call *c, const struct el_event *ev)
{
	const char	*fin = ev->ee_fmt_in[0] ? ev->ee_fmt_in : "ulaw_8000";
	const char	*fout = ev->ee_fmt_out[0] ? ev->ee_fmt_out : "ulaw_8000";

	if (c->c_el_state != EL_WAIT_META) {
		c->c_cnt.dn_bad_messages++;
		return;
	}
	strlcpy_n(c->c_conv_id, ev->ee_conv_id, sizeof(c->c_conv_id));
	log_setcall(NULL, c->c_conv_id);
	log_info("elevenlabs: conversation %s formats in=%s out=%s",
	    c->c_conv_id, fin, fout);
	if (bridge_formats(c, fin, fout) == -1) {
		log_warnx("elevenlabs: agent audio formats in=%s out=%s are "
		    "not supported; set both to ulaw_8000 in the agent", fin,
		    fout);
		call_agent_hangup(c, "unsupported audio format");
		return;
	}
	c->c_el_state = EL_READY;
	call_el_ready(c);
}

static void
el_event(struct call *c, const struct el_event *ev)
{
	char	pong[64];
	int	n;

	switch (ev->ee_type) {
	case ELE_AUDIO:
		if (c->c_el_state != EL_READY) {
			c->c_cnt.dn_frames_dropped++;
			return;
		}
		bridge_agent_audio(c, ev->ee_audio, ev->ee_audio_len,
		    ev->ee_event_id);
		return;
	case ELE_PING:
		/* At once, with the same id (the original never did). */
		n = snprintf(pong, sizeof(pong), "{\"type\":\"pong\","
		    "\"event_id\":%lld}", ev->ee_event_id);
		if (ws_send_text(c->c_el, pong, (size_t)n) == 0)
			c->c_cnt.dn_pongs++;
		return;
	case ELE_INTERRUPTION:
		bridge_interruption(c, ev->ee_event_id);
		return;
	case ELE_METADATA:
		el_metadata(c, ev);
		return;
	case ELE_TOOL_RESPONSE:
		if (strcmp(ev->ee_tool, "end_call") == 0)
			call_agent_end_tool(c);
		return;
	case ELE_ERROR:
		snprintf(c->c_el_error, sizeof(c->c_el_error), "%.60s: %.130s",
		    ev->ee_error_type[0] ? ev->ee_error_type : "?",
		    ev->ee_error_msg[0] ? ev->ee_error_msg : "?");
		log_warnx("elevenlabs: error event %s", c->c_el_error);
		return;
	case ELE_OTHER:
		log_debug("elevenlabs: ignored %s event", ev->ee_type_name);
		return;
	}
}

static void
el_on_close(void *arg, int code, const char *why)
{
	struct call	*c = arg;

	c->c_el_close_code = code;
	if (c->c_el_state == EL_CLOSING || c->c_el_state == EL_CLOSED) {
		c->c_el_state = EL_CLOSED;
		return;
	}
	if (c->c_el_state < EL_READY) {
		char err[300];
		snprintf(err, sizeof(err), "connection failed before the "
		    "conversation began (%d %s%s%s)", code, why,
		    c->c_el_error[0] ? "; " : "", c->c_el_error);
		el_fail(c, err);
		return;
	}
	c->c_el_state = EL_CLOSED;
	call_el_closed(c, code, why);
}

static void
el_on_done(void *arg)
{
	call_el_done(arg);
}

/* Our side ends the conversation (caller gone, limits, shutdown). */
void
eleven_close(struct call *c, uint16_t code)
{
	if (c->c_t_el != NULL)
		evtimer_del(c->c_t_el);
	if (c->c_el == NULL || c->c_el_state == EL_CLOSED) {
		c->c_el_state = EL_CLOSED;
		return;
	}
	c->c_el_state = EL_CLOSING;
	ws_close(c->c_el, code, code == 1000 ? "User ended conversation" :
	    NULL);
}

int
eleven_send_audio(struct call *c, const char *msg, size_t len)
{
	if (c->c_el_state != EL_READY)
		return -1;
	return ws_send_text(c->c_el, msg, len);
}
