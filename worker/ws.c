/*
 * ws.c - RFC 6455 with wslay's event API driven by the worker's libevent
 * loop.  Owns struct ws.  Server mode (Twilio) works on the raw socket
 * the supervisor handed over, replaying the bytes it read past the
 * request head first.  Client mode (ElevenLabs) runs over a bufferevent,
 * TLS with the process's client context, and does its own upgrade.
 * Callbacks report whole text messages, the close, and when nothing is
 * left to send or read; binary messages are reported as bad.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/random.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <wslay/wslay.h>

#include "config.h"
#include "tls.h"

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
	/* client mode */
	struct bufferevent	*ws_bev;
	struct evbuffer		*ws_req;
	size_t			 ws_maxmsg;
	int			 ws_open;
	int			 ws_close_code;
	char			 ws_host[256];
	char			 ws_key[32];
	char			 ws_expect[32];
	char			 ws_why[200];
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
static void	ws_bev_check_done(struct ws *);
static void	ws_client_fail(struct ws *, const char *);

#define WS_OUT_MAX	(4 * 1024 * 1024)

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
	if (ws->ws_bev != NULL)
		bufferevent_free(ws->ws_bev);
	if (ws->ws_req != NULL)
		evbuffer_free(ws->ws_req);
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
	if (ws->ws_bev != NULL) {
		n = (ssize_t)evbuffer_remove(bufferevent_get_input(ws->ws_bev),
		    buf, len);
		if (n > 0)
			return n;
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
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
	if (ws->ws_bev != NULL) {
		struct evbuffer *out = bufferevent_get_output(ws->ws_bev);
		if (evbuffer_get_length(out) > WS_OUT_MAX ||
		    bufferevent_write(ws->ws_bev, data, len) == -1) {
			wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
			return -1;
		}
		return (ssize_t)len;
	}
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
		ws->ws_close_code = a->status_code;
		ws_report_close(ws, a->status_code, "close frame received");
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
	if (ws->ws_bev != NULL) {
		if (ws->ws_ctx == NULL || ws->ws_eof)
			return;
		if (wslay_event_want_write(ws->ws_ctx) &&
		    wslay_event_send(ws->ws_ctx) != 0) {
			ws->ws_eof = 1;
			return;
		}
		ws_bev_check_done(ws);
		return;
	}
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
	if (ws->ws_bev != NULL || ws->ws_ctx == NULL)
		return ws->ws_eof || ws->ws_ctx == NULL;
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

	if (ws->ws_ctx == NULL || ws->ws_eof)
		return -1;
	m.opcode = WSLAY_TEXT_FRAME;
	m.msg = (const uint8_t *)data;
	m.msg_length = len;
	if (wslay_event_queue_msg(ws->ws_ctx, &m) != 0)
		return -1;
	/*
	 * Raw socket: write now (the socket almost always has room), which
	 * saves a loop turn and two epoll_ctl calls per audio frame; what
	 * does not fit waits for EV_WRITE as usual.
	 */
	if (ws->ws_bev == NULL && !ws->ws_eof &&
	    wslay_event_send(ws->ws_ctx) != 0) {
		ws->ws_eof = 1;
		return -1;
	}
	ws_update(ws);
	return 0;
}

void
ws_close(struct ws *ws, uint16_t code, const char *reason)
{
	if (ws->ws_ctx == NULL || ws->ws_eof) {
		/* Not open yet: just drop the connection. */
		if (!ws->ws_eof)
			ws_client_fail(ws, "closed before open");
		return;
	}
	wslay_event_queue_close(ws->ws_ctx, code, (const uint8_t *)reason,
	    reason ? strlen(reason) : 0);
	ws_update(ws);
}

/* --- client mode: TLS (or plain) bufferevent, wslay client ----------- */

#define WS_HEAD_MAX	8192

static void	ws_bev_read(struct bufferevent *, void *);
static void	ws_bev_write(struct bufferevent *, void *);
static void	ws_bev_event(struct bufferevent *, short, void *);
static int	ws_genmask_cb(wslay_event_context_ptr, uint8_t *, size_t,
		    void *);

static const struct wslay_event_callbacks ws_client_callbacks = {
	.recv_callback = ws_recv_cb,
	.send_callback = ws_send_cb,
	.genmask_callback = ws_genmask_cb,
	.on_msg_recv_callback = ws_msg_cb,
};

static int
ws_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
    void *arg)
{
	(void)arg, (void)ctx;
	/* Buffered ChaCha from glibc: no getrandom(2) per audio frame. */
	arc4random_buf(buf, len);
	return 0;
}

/* wss://host[:port]/path?query -> parts; returns 0 or -1. */
static int
ws_url_split(const char *url, int *tls, char *host, size_t hcap, int *port,
    const char **path)
{
	const char	*h, *e, *c;
	size_t		 n;

	if (strncasecmp(url, "wss://", 6) == 0)
		*tls = 1, h = url + 6;
	else if (strncasecmp(url, "ws://", 5) == 0)
		*tls = 0, h = url + 5;
	else
		return -1;
	e = h + strcspn(h, "/?#");
	*path = *e == '\0' ? "/" : e;
	if (**path == '?' || **path == '#')
		return -1;
	*port = *tls ? 443 : 80;
	if (*h == '[') {
		if ((c = memchr(h, ']', (size_t)(e - h))) == NULL)
			return -1;
		n = (size_t)(c - h - 1);
		h++;
		c++;
	} else {
		c = memchr(h, ':', (size_t)(e - h));
		n = (size_t)((c != NULL ? c : e) - h);
	}
	if (n == 0 || n >= hcap)
		return -1;
	memcpy(host, h, n);
	host[n] = '\0';
	if (c != NULL && c < e && *c == ':') {
		char *end;
		long p = strtol(c + 1, &end, 10);
		if (end != e || p < 1 || p > 65535)
			return -1;
		*port = (int)p;
	}
	return strpbrk(*path, " \r\n") == NULL ? 0 : -1;
}

/*
 * Connect to a ws:// or wss:// URL (TLS with the process's client
 * context, SNI and host verification), upgrade, then report on_open.
 * Failures before that are reported through on_close (code 1006).
 */
struct ws *
ws_client_new(struct event_base *base, struct evdns_base *dns,
    const char *url, size_t maxmsg, const struct ws_cb *cb, void *arg,
    char *err, size_t errlen)
{
	struct ws	*ws;
	SSL		*ssl = NULL;
	uint8_t		 nonce[16];
	int		 tls, port;
	const char	*path;

	if ((ws = calloc(1, sizeof(*ws))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ws->ws_fd = -1;
	ws->ws_cb = cb;
	ws->ws_arg = arg;
	ws->ws_maxmsg = maxmsg;
	if (ws_url_split(url, &tls, ws->ws_host, sizeof(ws->ws_host), &port,
	    &path) == -1) {
		snprintf(err, errlen, "not a usable ws(s):// URL");
		goto fail;
	}
	if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
		goto fail;
	b64_encode(nonce, sizeof(nonce), ws->ws_key);
	if (ws_accept_key(ws->ws_key, ws->ws_expect) == -1)
		goto fail;
	if (tls) {
		if (tls_client_ctx() == NULL ||
		    (ssl = SSL_new(tls_client_ctx())) == NULL ||
		    tls_set_peer(ssl, ws->ws_host) == -1) {
			snprintf(err, errlen, "TLS setup failed");
			SSL_free(ssl);
			goto fail;
		}
		ws->ws_bev = bufferevent_openssl_socket_new(base, -1, ssl,
		    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
		if (ws->ws_bev == NULL)
			SSL_free(ssl);
		else
			bufferevent_openssl_set_allow_dirty_shutdown(
			    ws->ws_bev, 1);
	} else
		ws->ws_bev = bufferevent_socket_new(base, -1,
		    BEV_OPT_CLOSE_ON_FREE);
	if (ws->ws_bev == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	ws->ws_req = evbuffer_new();
	if (ws->ws_req == NULL || evbuffer_add_printf(ws->ws_req,
	    "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
	    "Sec-WebSocket-Version: 13\r\nUser-Agent: naiberd/%s\r\n\r\n",
	    path, ws->ws_host, port, ws->ws_key, NAIBER_VERSION) == -1)
		goto fail;
	bufferevent_setcb(ws->ws_bev, ws_bev_read, ws_bev_write,
	    ws_bev_event, ws);
	bufferevent_enable(ws->ws_bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect_hostname(ws->ws_bev, dns, AF_UNSPEC,
	    ws->ws_host, port) == -1) {
		snprintf(err, errlen, "cannot start connecting to %s",
		    ws->ws_host);
		goto fail;
	}
	return ws;
fail:
	ws_free(ws);
	return NULL;
}

static void
ws_client_fail(struct ws *ws, const char *why)
{
	ws->ws_eof = 1;
	if (ws->ws_bev != NULL)
		bufferevent_disable(ws->ws_bev, EV_READ | EV_WRITE);
	snprintf(ws->ws_why, sizeof(ws->ws_why), "%s", why);
	ws_report_close(ws, 1006, ws->ws_why);
	if (ws->ws_cb->on_done != NULL)
		ws->ws_cb->on_done(ws->ws_arg);
}

/* The 101 answer: status, Upgrade and the accept key. */
static int
ws_client_head(struct ws *ws)
{
	struct evbuffer		*in = bufferevent_get_input(ws->ws_bev);
	struct evbuffer_ptr	 p;
	char			 head[WS_HEAD_MAX + 1], *acc;
	size_t			 n;

	p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (p.pos == -1) {
		if (evbuffer_get_length(in) > WS_HEAD_MAX)
			return -1;
		return 0;
	}
	n = (size_t)p.pos + 4;
	if (n > WS_HEAD_MAX)
		return -1;
	evbuffer_remove(in, head, n);
	head[n] = '\0';
	if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
		head[strcspn(head, "\r\n")] = '\0';
		snprintf(ws->ws_why, sizeof(ws->ws_why), "upgrade refused: "
		    "%.100s", head);
		return -1;
	}
	acc = strcasestr(head, "\r\nSec-WebSocket-Accept:");
	if (acc == NULL)
		return -1;
	acc += 23;
	acc += strspn(acc, " \t");
	if (strncmp(acc, ws->ws_expect, 28) != 0)
		return -1;
	if (wslay_event_context_client_init(&ws->ws_ctx, &ws_client_callbacks,
	    ws) != 0)
		return -1;
	wslay_event_config_set_max_recv_msg_length(ws->ws_ctx, ws->ws_maxmsg);
	return 1;
}

static void
ws_bev_read(struct bufferevent *bev, void *arg)
{
	struct ws	*ws = arg;
	int		 r;

	(void)bev;
	if (ws->ws_ctx == NULL) {
		if ((r = ws_client_head(ws)) == 0)
			return;
		if (r == -1) {
			ws_client_fail(ws, ws->ws_why[0] ? ws->ws_why :
			    "bad WebSocket handshake answer");
			return;
		}
		ws->ws_open = 1;
		if (ws->ws_cb->on_open != NULL)
			ws->ws_cb->on_open(ws->ws_arg);
		if (ws->ws_eof || ws->ws_closed)
			return;
	}
	if (wslay_event_recv(ws->ws_ctx) != 0 ||
	    wslay_event_send(ws->ws_ctx) != 0) {
		ws_client_fail(ws, "protocol error");
		return;
	}
	ws_bev_check_done(ws);
}

static void
ws_bev_write(struct bufferevent *bev, void *arg)
{
	struct ws	*ws = arg;

	(void)bev;
	ws_bev_check_done(ws);
}

static void
ws_bev_event(struct bufferevent *bev, short what, void *arg)
{
	struct ws	*ws = arg;
	unsigned long	 e;
	char		 why[200];

	if (what & BEV_EVENT_CONNECTED) {
		int one = 1;
		/* 20 ms audio frames: never wait for Nagle. */
		(void)setsockopt(bufferevent_getfd(bev), IPPROTO_TCP,
		    TCP_NODELAY, &one, sizeof(one));
		bufferevent_write_buffer(bev, ws->ws_req);
		return;
	}
	if ((e = bufferevent_get_openssl_error(bev)) != 0)
		snprintf(why, sizeof(why), "TLS: %s",
		    ERR_reason_error_string(e));
	else if (what & BEV_EVENT_EOF)
		snprintf(why, sizeof(why), "connection closed by peer");
	else if (bufferevent_socket_get_dns_error(bev) != 0)
		snprintf(why, sizeof(why), "cannot resolve %.100s: %.60s",
		    ws->ws_host,
		    evutil_gai_strerror(bufferevent_socket_get_dns_error(bev)));
	else
		snprintf(why, sizeof(why), "%s",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	ws_client_fail(ws, why);
}

/* Client side is done once wslay has nothing to do and output drained. */
static void
ws_bev_check_done(struct ws *ws)
{
	if (ws->ws_ctx == NULL || ws->ws_eof)
		return;
	if (!wslay_event_want_read(ws->ws_ctx) &&
	    !wslay_event_want_write(ws->ws_ctx) &&
	    evbuffer_get_length(bufferevent_get_output(ws->ws_bev)) == 0) {
		ws->ws_eof = 1;
		ws_report_close(ws, ws->ws_close_code ? ws->ws_close_code :
		    1000, "closed");
		if (ws->ws_cb->on_done != NULL)
			ws->ws_cb->on_done(ws->ws_arg);
	}
}

int
ws_ping(struct ws *ws)
{
	struct wslay_event_msg	m = { WSLAY_PING, NULL, 0 };

	if (ws->ws_ctx == NULL || wslay_event_queue_msg(ws->ws_ctx, &m) != 0)
		return -1;
	ws_update(ws);
	return 0;
}
