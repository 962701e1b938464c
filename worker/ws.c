/*
 * ws.c - RFC 6455 on a non-blocking socket: wslay's event API driven by
 * the worker's libevent loop.  Owns struct ws.  The Twilio side uses it
 * as a server on the socket the supervisor handed over; bytes the
 * supervisor read past the request head are replayed first.  Callbacks
 * report whole text messages and the close; binary messages are
 * refused (Twilio never sends them).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <wslay/wslay.h>

#include "log.h"
#include "util.h"
#include "worker.h"

struct ws {
	wslay_event_context_ptr	 ws_ctx;
	int			 ws_fd;
	struct event		*ws_rev;
	struct event		*ws_wev;
	uint8_t			*ws_pre;	/* replayed before reading */
	size_t			 ws_prelen, ws_preoff;
	const struct ws_cb	*ws_cb;
	void			*ws_arg;
	int			 ws_closed;	/* on_close reported */
	int			 ws_eof;
};

static ssize_t	ws_recv_cb(wslay_event_context_ptr, uint8_t *, size_t, int,
		    void *);
static ssize_t	ws_send_cb(wslay_event_context_ptr, const uint8_t *, size_t,
		    int, void *);
static void	ws_msg_cb(wslay_event_context_ptr,
		    const struct wslay_event_on_msg_recv_arg *, void *);
static void	ws_io(int, short, void *);
static void	ws_update(struct ws *);
static void	ws_report_close(struct ws *, int, const char *);

static const struct wslay_event_callbacks ws_callbacks = {
	.recv_callback = ws_recv_cb,
	.send_callback = ws_send_cb,
	.on_msg_recv_callback = ws_msg_cb,
};

/* Sec-WebSocket-Accept for a client key. */
int
ws_accept_key(const char *key, char out[29])
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	unsigned char	  md[EVP_MAX_MD_SIZE];
	unsigned int	  mdlen = 0;
	EVP_MD_CTX	 *ctx;
	int		  ok;

	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return -1;
	ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) &&
	    EVP_DigestUpdate(ctx, key, strlen(key)) &&
	    EVP_DigestUpdate(ctx, guid, sizeof(guid) - 1) &&
	    EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	if (!ok || mdlen != 20)
		return -1;
	b64_encode(md, 20, out);
	return 0;
}

struct ws *
ws_server_new(struct event_base *base, int fd, const uint8_t *pre,
    size_t prelen, size_t maxmsg, const struct ws_cb *cb, void *arg)
{
	struct ws	*ws;

	if ((ws = calloc(1, sizeof(*ws))) == NULL)
		return NULL;
	ws->ws_fd = fd;
	ws->ws_cb = cb;
	ws->ws_arg = arg;
	if (prelen > 0) {
		if ((ws->ws_pre = malloc(prelen)) == NULL)
			goto fail;
		memcpy(ws->ws_pre, pre, prelen);
		ws->ws_prelen = prelen;
	}
	if (wslay_event_context_server_init(&ws->ws_ctx, &ws_callbacks, ws))
		goto fail;
	wslay_event_config_set_max_recv_msg_length(ws->ws_ctx, maxmsg);
	ws->ws_rev = event_new(base, fd, EV_READ | EV_PERSIST, ws_io, ws);
	ws->ws_wev = event_new(base, fd, EV_WRITE, ws_io, ws);
	if (ws->ws_rev == NULL || ws->ws_wev == NULL)
		goto fail;
	ws_update(ws);
	if (ws->ws_prelen > 0)
		event_active(ws->ws_rev, EV_READ, 0);
	return ws;
fail:
	ws_free(ws);
	return NULL;
}

void
ws_free(struct ws *ws)
{
	if (ws == NULL)
		return;
	if (ws->ws_rev != NULL)
		event_free(ws->ws_rev);
	if (ws->ws_wev != NULL)
		event_free(ws->ws_wev);
	if (ws->ws_ctx != NULL)
		wslay_event_context_free(ws->ws_ctx);
	free(ws->ws_pre);
	free(ws);
}

static ssize_t
ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
    void *arg)
{
	struct ws	*ws = arg;
	ssize_t		 n;

	(void)flags;
	if (ws->ws_preoff < ws->ws_prelen) {
		n = (ssize_t)(ws->ws_prelen - ws->ws_preoff);
		if ((size_t)n > len)
			n = (ssize_t)len;
		memcpy(buf, ws->ws_pre + ws->ws_preoff, (size_t)n);
		ws->ws_preoff += (size_t)n;
		return n;
	}
	n = read(ws->ws_fd, buf, len);
	if (n > 0)
		return n;
	if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	ws->ws_eof = 1;
	wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static ssize_t
ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
    int flags, void *arg)
{
	struct ws	*ws = arg;
	ssize_t		 n;

	(void)flags;
	n = send(ws->ws_fd, data, len, MSG_NOSIGNAL);
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EINTR)
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
	else {
		ws->ws_eof = 1;
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	}
	return -1;
}

static void
ws_msg_cb(wslay_event_context_ptr ctx,
    const struct wslay_event_on_msg_recv_arg *a, void *arg)
{
	struct ws	*ws = arg;

	(void)ctx;
	switch (a->opcode) {
	case WSLAY_TEXT_FRAME:
		ws->ws_cb->on_text(ws->ws_arg, a->msg, a->msg_length);
		break;
	case WSLAY_BINARY_FRAME:
		ws->ws_cb->on_text(ws->ws_arg, NULL, 0);	/* counted bad */
		break;
	case WSLAY_CONNECTION_CLOSE:
		ws_report_close(ws, a->status_code, "peer closed");
		break;
	default:
		break;		/* ping: wslay queued the pong */
	}
}

static void
ws_report_close(struct ws *ws, int code, const char *why)
{
	if (ws->ws_closed)
		return;
	ws->ws_closed = 1;
	ws->ws_cb->on_close(ws->ws_arg, code, why);
}

static void
ws_update(struct ws *ws)
{
	if (wslay_event_want_read(ws->ws_ctx))
		event_add(ws->ws_rev, NULL);
	else
		event_del(ws->ws_rev);
	if (wslay_event_want_write(ws->ws_ctx))
		event_add(ws->ws_wev, NULL);
	else
		event_del(ws->ws_wev);
}

int
ws_done(const struct ws *ws)
{
	return ws->ws_eof || (!wslay_event_want_read(ws->ws_ctx) &&
	    !wslay_event_want_write(ws->ws_ctx));
}

static void
ws_io(int fd, short ev, void *arg)
{
	struct ws	*ws = arg;

	(void)fd;
	if (((ev & EV_READ) && wslay_event_recv(ws->ws_ctx) != 0) ||
	    ((ev & EV_WRITE) && wslay_event_send(ws->ws_ctx) != 0)) {
		ws->ws_eof = 1;
		event_del(ws->ws_rev);
		event_del(ws->ws_wev);
		ws_report_close(ws, 1006, "connection lost or protocol error");
		if (ws->ws_cb->on_done != NULL)
			ws->ws_cb->on_done(ws->ws_arg);
		return;
	}
	ws_update(ws);
	if (ws_done(ws)) {
		ws_report_close(ws, 1000, "closed");
		if (ws->ws_cb->on_done != NULL)
			ws->ws_cb->on_done(ws->ws_arg);
	}
}

/* Queue one text message; it goes out when the socket can take it. */
int
ws_send_text(struct ws *ws, const char *data, size_t len)
{
	struct wslay_event_msg	m;

	m.opcode = WSLAY_TEXT_FRAME;
	m.msg = (const uint8_t *)data;
	m.msg_length = len;
	if (wslay_event_queue_msg(ws->ws_ctx, &m) != 0)
		return -1;
	ws_update(ws);
	return 0;
}

void
ws_close(struct ws *ws, uint16_t code, const char *reason)
{
	wslay_event_queue_close(ws->ws_ctx, code, (const uint8_t *)reason,
	    reason ? strlen(reason) : 0);
	ws_update(ws);
}
