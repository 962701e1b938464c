/*
 * twilio_ws.c - the Twilio side of a call, in a worker: re-validates
 * the upgrade head the supervisor handed over (WebSocket version 13,
 * X-Twilio-Signature against the configured STREAM_URL), answers 101,
 * then turns each Media Streams message into call events.  Malformed
 * messages are dropped and counted, never fatal to the call.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httphead.h"
#include "log.h"
#include "streamtok.h"
#include "twilio.h"
#include "util.h"
#include "worker.h"

#define TW_MAX_MSG	(64 * 1024)
#define TW_AUDIO_MAX	(16 * 1024)

static void	tw_on_text(void *, const uint8_t *, size_t);
static void	tw_on_close(void *, int, const char *);
static int	tw_write_all(int, const char *, size_t);
static void	tw_start(struct call *, struct tw_event *);
static void	tw_bad(struct call *, const char *);

static void	tw_on_done(void *);

static const struct ws_cb tw_cb = { tw_on_text, tw_on_close, tw_on_done,
    NULL };

/* A fresh socket takes a short reply at once; bound the wait anyway. */
static int
tw_write_all(int fd, const char *buf, size_t len)
{
	struct pollfd	pfd = { fd, POLLOUT, 0 };
	ssize_t		n;

	while (len > 0) {
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n == -1 && errno != EAGAIN && errno != EINTR)
			return -1;
		if (poll(&pfd, 1, 1000) <= 0)
			return -1;
	}
	return 0;
}

static int
tw_refuse(int fd, int code, const char *why)
{
	char	buf[160];
	int	n;

	log_warnx("stream refused by worker: %s", why);
	n = snprintf(buf, sizeof(buf), "HTTP/1.1 %d %s\r\nContent-Length: 0"
	    "\r\nConnection: close\r\n\r\n", code, code == 403 ? "Forbidden" :
	    "Bad Request");
	(void)tw_write_all(fd, buf, (size_t)n);
	return -1;
}

/* Returns 0 when the WebSocket is up, -1 after answering an error. */
int
twilio_ws_accept(struct call *c, int fd, const uint8_t *head, size_t len)
{
	struct hhead	*h;
	const char	*key, *ver, *sig, *tok;
	char		 url[1400];
	enum stream_route route;
	char		 accept[29], resp[256];
	size_t		 used;
	int		 n, rc = -1;

	if ((h = malloc(sizeof(*h))) == NULL)
		return tw_refuse(fd, 400, "out of memory");
	hh_init(h);
	if (hh_feed(h, (const char *)head, len, &used) != HH_UPGRADE ||
	    strcmp(h->hh_method, "GET") != 0 ||
	    (route = stream_route(h->hh_path, &tok)) == SR_NONE) {
		tw_refuse(fd, 400, "not an upgrade of " STREAM_PATH);
		goto out;
	}
	/* A per-call URL (checked by the supervisor too) names its call. */
	if (route == SR_CALL && (!stream_token_check(
	    wk.wk_cf->twilio_auth_token, tok, c->c_url_sid,
	    sizeof(c->c_url_sid)) || snprintf(url, sizeof(url), "%s/%s",
	    wk.wk_cf->stream_url, tok) >= (int)sizeof(url))) {
		tw_refuse(fd, 403, "not a stream URL of ours");
		goto out;
	}
	if (route == SR_SHARED)
		strlcpy_n(url, wk.wk_cf->stream_url, sizeof(url));
	key = hh_get(h, "Sec-WebSocket-Key");
	ver = hh_get(h, "Sec-WebSocket-Version");
	sig = hh_get(h, "X-Twilio-Signature");
	if (h->hh_minor < 1 ||
	    !hh_list_has_token(h, "Upgrade", "websocket") ||
	    hh_count(h, "Sec-WebSocket-Key") != 1 || !hh_ws_key_ok(key) ||
	    hh_count(h, "Sec-WebSocket-Version") != 1 ||
	    strcmp(ver, "13") != 0 || ws_accept_key(key, accept) == -1) {
		tw_refuse(fd, 400, "not a WebSocket version 13 handshake");
		goto out;
	}
	if (wk.wk_cf->twilio_auth_token != NULL && (sig == NULL ||
	    !twilio_sig_check_stream(wk.wk_cf->twilio_auth_token, url,
	    sig))) {
		tw_refuse(fd, 403, "bad X-Twilio-Signature");
		goto out;
	}
	n = snprintf(resp, sizeof(resp), "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n\r\n", accept);
	if (tw_write_all(fd, resp, (size_t)n) == -1) {
		log_warn("stream handshake reply");
		goto out;
	}
	c->c_tw = ws_server_new(wk.wk_base, fd, head + used, len - used,
	    TW_MAX_MSG, &tw_cb, c);
	if (c->c_tw == NULL)
		log_warnx("stream: out of memory");
	else {
		rc = 0;
		if (ws_rx_stamp(c->c_tw) == -1)
			log_debug("stream: no kernel receive times (%s)",
			    strerror(errno));
	}
out:
	hh_reset(h);
	free(h);
	return rc;
}

static void
tw_bad(struct call *c, const char *why)
{
	if (c->c_cnt.dn_bad_messages++ == 0)
		log_warnx("dropped a malformed Twilio message: %s (further "
		    "ones are only counted)", why);
}

static void
tw_start(struct call *c, struct tw_event *ev)
{
	const char	*type = twilio_event_param(ev, "call_type");

	if (c->c_state != CS_WAIT_START) {
		tw_bad(c, "second start");
		return;
	}
	if (c->c_url_sid[0] != '\0' &&
	    strcmp(c->c_url_sid, ev->te_call_sid) != 0) {
		log_warnx("stream URL of call %s, start of call %.64s: "
		    "refused", c->c_url_sid, ev->te_call_sid);
		call_end(c, "stream URL of another call");
		return;
	}
	strlcpy_n(c->c_call_sid, ev->te_call_sid, sizeof(c->c_call_sid));
	strlcpy_n(c->c_stream_sid, ev->te_stream_sid, sizeof(c->c_stream_sid));
	if (type == NULL || (strcmp(type, "general") != 0 &&
	    strcmp(type, "health_check") != 0))
		type = "general";
	strlcpy_n(c->c_call_type, type, sizeof(c->c_call_type));
	log_setcall(c->c_call_sid, NULL);
	c->c_t_started = now_mono_ns();
	c->c_t_started_ms = now_real_ms();
	log_info("stream started: streamSid=%s type=%s format=%s/%ld",
	    c->c_stream_sid, c->c_call_type, ev->te_encoding[0] ?
	    ev->te_encoding : "?", ev->te_rate);
	call_bind(c, c->c_call_type, twilio_event_param(ev, "nonce"));
}

static void
tw_on_text(void *arg, const uint8_t *data, size_t len)
{
	struct call	*c = arg;
	struct tw_event	 ev;
	const char	*why;
	long		 n;

	c->c_tw_rx++;		/* alive, for call_tw_watch() */
	if (twilio_event_parse((const char *)data, len, &ev, &why) == -1) {
		tw_bad(c, why);
		return;
	}
	if (ev.te_type != TWE_CONNECTED && ev.te_type != TWE_START &&
	    c->c_state == CS_ACTIVE &&
	    strcmp(ev.te_stream_sid, c->c_stream_sid) != 0) {
		tw_bad(c, "message for another streamSid");
		twilio_event_free(&ev);
		return;
	}
	switch (ev.te_type) {
	case TWE_CONNECTED:
		log_debug("stream connected");
		break;
	case TWE_START:
		tw_start(c, &ev);
		break;
	case TWE_MEDIA:
		if (c->c_state != CS_ACTIVE) {
			c->c_cnt.dn_frames_dropped++;
			break;
		}
		/* Checked, not decoded: pass-through or bridge_convert(). */
		n = b64_check(ev.te_payload, ev.te_payload_len);
		if (n < 0 || n > TW_AUDIO_MAX) {
			tw_bad(c, "media payload is not base64");
			break;
		}
		bridge_caller_audio(c, ev.te_payload, ev.te_payload_len);
		break;
	case TWE_MARK:
		log_debug("mark %s played", ev.te_name);
		call_twilio_mark(c, ev.te_name);
		break;
	case TWE_DTMF:
		log_info("caller pressed %s", ev.te_digit);
		break;
	case TWE_STOP:
		twilio_event_free(&ev);
		call_end(c, "stop");
		return;
	case TWE_UNKNOWN:
		log_debug("ignored an unknown Twilio event");
		break;
	}
	twilio_event_free(&ev);
}

static void
tw_on_close(void *arg, int code, const char *why)
{
	struct call	*c = arg;

	log_debug("Twilio socket closed (%d, %s)", code, why);
	call_twilio_closed(c, code);
}

static void
tw_on_done(void *arg)
{
	call_twilio_done(arg);
}

int
twilio_ws_send(struct call *c, const char *msg, size_t len)
{
	if (c->c_tw == NULL)
		return -1;
	return ws_send_text(c->c_tw, msg, len);
}

void
twilio_ws_close(struct call *c)
{
	if (c->c_tw != NULL)
		ws_close(c->c_tw, 1000, NULL);
}
