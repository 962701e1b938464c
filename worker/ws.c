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
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/random.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/buffer.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <wslay/wslay.h>

#include "config.h"
#include "dns.h"
#include "tls.h"

#include "log.h"
#include "util.h"
#include "worker.h"

struct ws {
	wslay_event_context_ptr	 ws_ctx;
	int			 ws_fd;
	SSL			*ws_ssl;	/* client over TLS, once open */
	int			 ws_client;
	struct event		*ws_rev;
	struct event		*ws_wev;
	int			 ws_rev_on, ws_wev_on;
	/* input: read, not yet consumed */
	uint8_t			*ws_in;
	size_t			 ws_inoff, ws_inlen, ws_incap;
	uint64_t		 ws_wslay_left;	/* of a frame wslay reads */
	const uint8_t		*ws_feed;	/* what ws_recv_cb hands it */
	size_t			 ws_feedlen;
	int			 ws_frag;	/* a fragmented message is open */
	/* output: frames not yet written */
	uint8_t			*ws_out;
	size_t			 ws_outoff, ws_outlen, ws_outcap;
	int			 ws_rd_wants_w;	/* TLS: SSL_read wants writable */
	int			 ws_wr_wants_r;	/* TLS: SSL_write wants readable */
	const struct ws_cb	*ws_cb;
	void			*ws_arg;
	int			 ws_closed;	/* on_close reported */
	int			 ws_done_told;	/* on_done reported */
	int			 ws_close_queued;
	int			 ws_eof;
	int			 ws_stamp;	/* SO_TIMESTAMPNS is on */
	uint64_t		 ws_rx_ns;	/* newest data's arrival */
	size_t			 ws_maxmsg;
	/* coalesced reading (ws_follow) */
	struct ws		*ws_follower;	/* lead: read it after our reads */
	struct ws		*ws_leader;	/* follower: whose reads pace us */
	struct event		*ws_poll_ev;	/* follower: when the lead is quiet */
	struct timeval		 ws_poll_tv;
	/* client mode, until the upgrade is done */
	struct event_base	*ws_base;
	struct bufferevent	*ws_bev;
	struct nc		*ws_nc;		/* client, connecting */
	struct evbuffer		*ws_req;
	int			 ws_close_code;
	char			 ws_host[256];
	char			 ws_key[32];
	char			 ws_expect[32];
	char			 ws_why[200];
};

static ssize_t	ws_recv_stamped(struct ws *, size_t);
static ssize_t	ws_recv_cb(wslay_event_context_ptr, uint8_t *, size_t, int,
		    void *);
static ssize_t	ws_send_cb(wslay_event_context_ptr, const uint8_t *, size_t,
		    int, void *);
static void	ws_msg_cb(wslay_event_context_ptr,
		    const struct wslay_event_on_msg_recv_arg *, void *);
static void	ws_io(int, short, void *);
static int	ws_start_io(struct ws *, const uint8_t *, size_t);
static void	ws_update(struct ws *);
static void	ws_report_close(struct ws *, int, const char *);
static void	ws_client_fail(struct ws *, const char *);
static void	ws_poll(struct ws *);
static void	ws_poll_cb(int, short, void *);

/*
 * Input buffer: an audio message (a few hundred bytes to a few KiB) is
 * always read and handed over in place; frames larger than this go
 * through wslay, which assembles them itself.  Output grows to at most
 * WS_OUT_MAX of frames the peer has not taken (~100 s of audio).
 */
#define WS_IN_SIZE	(64 * 1024)
#define WS_OUT_INIT	(16 * 1024)
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
	ws->ws_base = base;
	ws->ws_maxmsg = maxmsg;
	if (wslay_event_context_server_init(&ws->ws_ctx, &ws_callbacks, ws))
		goto fail;
	wslay_event_config_set_max_recv_msg_length(ws->ws_ctx, maxmsg);
	if (ws_start_io(ws, pre, prelen) == -1)
		goto fail;
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
	if (ws->ws_leader != NULL)
		ws->ws_leader->ws_follower = NULL;
	if (ws->ws_follower != NULL)
		ws_follow(ws, ws->ws_follower, 0);
	if (ws->ws_poll_ev != NULL)
		event_free(ws->ws_poll_ev);
	if (ws->ws_rev != NULL)
		event_free(ws->ws_rev);
	if (ws->ws_wev != NULL)
		event_free(ws->ws_wev);
	if (ws->ws_nc != NULL)
		nc_cancel(ws->ws_nc);
	if (ws->ws_bev != NULL)
		bufferevent_free(ws->ws_bev);	/* closes the socket, SSL */
	if (ws->ws_req != NULL)
		evbuffer_free(ws->ws_req);
	if (ws->ws_ctx != NULL)
		wslay_event_context_free(ws->ws_ctx);
	free(ws->ws_in);
	free(ws->ws_out);
	free(ws);
}

/*
 * The socket is ours from here on (server: from the start; client: after
 * the 101), with pre read past the head.  Reading and writing go straight
 * to the socket (or SSL) through our own buffers.
 */
static int
ws_start_io(struct ws *ws, const uint8_t *pre, size_t prelen)
{
	ws->ws_incap = prelen > WS_IN_SIZE ? prelen : WS_IN_SIZE;
	if ((ws->ws_in = malloc(ws->ws_incap)) == NULL)
		return -1;
	if (prelen > 0)
		memcpy(ws->ws_in, pre, prelen);
	ws->ws_inlen = prelen;
	ws->ws_rev = event_new(ws->ws_base, ws->ws_fd, EV_READ | EV_PERSIST,
	    ws_io, ws);
	ws->ws_wev = event_new(ws->ws_base, ws->ws_fd, EV_WRITE | EV_PERSIST,
	    ws_io, ws);
	if (ws->ws_rev == NULL || ws->ws_wev == NULL)
		return -1;
	ws_update(ws);
	/* Bytes already here (or inside SSL) will not wake epoll. */
	if (prelen > 0 || ws->ws_ssl != NULL)
		event_active(ws->ws_rev, EV_READ, 0);
	return 0;
}

/* wslay reads only the bytes of the frames we route to it. */
static ssize_t
ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
    void *arg)
{
	struct ws	*ws = arg;
	size_t		 n = ws->ws_feedlen;

	(void)flags;
	if (n == 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (n > len)
		n = len;
	memcpy(buf, ws->ws_feed, n);
	ws->ws_feed += n;
	ws->ws_feedlen -= n;
	return (ssize_t)n;
}

/* Room for n more output bytes, or -1 past WS_OUT_MAX. */
static int
ws_out_reserve(struct ws *ws, size_t n)
{
	size_t	 cap;
	uint8_t	*p;

	if (ws->ws_out != NULL && ws->ws_outcap - ws->ws_outlen >= n)
		return 0;
	if (ws->ws_outoff > 0) {
		memmove(ws->ws_out, ws->ws_out + ws->ws_outoff,
		    ws->ws_outlen - ws->ws_outoff);
		ws->ws_outlen -= ws->ws_outoff;
		ws->ws_outoff = 0;
		if (ws->ws_outcap - ws->ws_outlen >= n)
			return 0;
	}
	if (n > WS_OUT_MAX - ws->ws_outlen)
		return -1;
	cap = ws->ws_outcap ? ws->ws_outcap : WS_OUT_INIT;
	while (cap - ws->ws_outlen < n)
		cap *= 2;
	if (cap > WS_OUT_MAX)
		cap = WS_OUT_MAX;
	if ((p = realloc(ws->ws_out, cap)) == NULL)
		return -1;
	ws->ws_out = p;
	ws->ws_outcap = cap;
	return 0;
}

/* wslay's frames join the output buffer; ws_flush writes them. */
static ssize_t
ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
    int flags, void *arg)
{
	struct ws	*ws = arg;

	(void)flags;
	if (ws->ws_eof) {
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	if (ws_out_reserve(ws, len) == -1) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	memcpy(ws->ws_out + ws->ws_outlen, data, len);
	ws->ws_outlen += len;
	return (ssize_t)len;
}

/* Write what the socket takes: one send per call when it has room. */
static int
ws_flush(struct ws *ws)
{
	ssize_t	n;
	int	e;

	ws->ws_wr_wants_r = 0;
	while (ws->ws_outoff < ws->ws_outlen) {
		size_t len = ws->ws_outlen - ws->ws_outoff;
		if (ws->ws_ssl != NULL) {
			ERR_clear_error();
			n = SSL_write(ws->ws_ssl, ws->ws_out + ws->ws_outoff,
			    (int)(len > INT_MAX ? INT_MAX : len));
			if (n <= 0) {
				e = SSL_get_error(ws->ws_ssl, (int)n);
				if (e == SSL_ERROR_WANT_WRITE)
					break;
				if (e == SSL_ERROR_WANT_READ) {
					ws->ws_wr_wants_r = 1;
					break;
				}
				return -1;
			}
		} else {
			n = send(ws->ws_fd, ws->ws_out + ws->ws_outoff, len,
			    MSG_NOSIGNAL);
			if (n == -1) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN)
					break;
				return -1;
			}
		}
		ws->ws_outoff += (size_t)n;
	}
	if (ws->ws_outoff == ws->ws_outlen)
		ws->ws_outoff = ws->ws_outlen = 0;
	return 0;
}

/*
 * One read.  Returns bytes read, 0 if none now, -1 on end or error.
 * With TLS, more may wait inside SSL: the caller asks SSL_has_pending.
 */
static ssize_t
ws_fill(struct ws *ws)
{
	size_t	room;
	ssize_t	n;
	int	e;

	if (ws->ws_inoff > 0) {
		memmove(ws->ws_in, ws->ws_in + ws->ws_inoff,
		    ws->ws_inlen - ws->ws_inoff);
		ws->ws_inlen -= ws->ws_inoff;
		ws->ws_inoff = 0;
	}
	if ((room = ws->ws_incap - ws->ws_inlen) == 0)
		return 0;
	ws->ws_rd_wants_w = 0;
	if (ws->ws_ssl != NULL) {
		ERR_clear_error();
		n = SSL_read(ws->ws_ssl, ws->ws_in + ws->ws_inlen,
		    (int)(room > INT_MAX ? INT_MAX : room));
		if (n <= 0) {
			e = SSL_get_error(ws->ws_ssl, (int)n);
			if (e == SSL_ERROR_WANT_READ)
				return 0;
			if (e == SSL_ERROR_WANT_WRITE) {
				ws->ws_rd_wants_w = 1;
				return 0;
			}
			snprintf(ws->ws_why, sizeof(ws->ws_why), "%s",
			    e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL &&
			    ERR_peek_error() == 0) ? "connection closed by peer" :
			    "TLS read failed");
			return -1;
		}
	} else if (ws->ws_stamp) {
		n = ws_recv_stamped(ws, room);
		if (n == -2)
			return -1;
		if (n == -1)
			return 0;
	} else {
		n = read(ws->ws_fd, ws->ws_in + ws->ws_inlen, room);
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
			snprintf(ws->ws_why, sizeof(ws->ws_why), "%s",
			    n == 0 ? "connection closed by peer" :
			    "connection lost");
			return -1;
		}
		if (n == -1)
			return 0;
	}
	ws->ws_inlen += (size_t)n;
	return n;
}

/* Unmask in place; nonzero if any byte is outside 7-bit ASCII. */
static int
ws_unmask(uint8_t *p, size_t len, const uint8_t key[4])
{
	uint64_t	k8, w, hi = 0;
	uint8_t		hib = 0;
	size_t		i = 0;

	memcpy(&k8, key, 4);
	memcpy((uint8_t *)&k8 + 4, key, 4);
	for (; i + 8 <= len; i += 8) {
		memcpy(&w, p + i, 8);
		w ^= k8;
		hi |= w;
		memcpy(p + i, &w, 8);
	}
	for (; i < len; i++) {
		p[i] ^= key[i & 3];
		hib |= p[i];
	}
	return ((hi & 0x8080808080808080ULL) != 0) || (hib & 0x80);
}

static int
ws_ascii(const uint8_t *p, size_t len)
{
	uint8_t	hib = 0;
	size_t	i;

	for (i = 0; i < len; i++)
		hib |= p[i];
	return (hib & 0x80) == 0;
}

/*
 * What RFC 6455 5.2 and 5.5 forbid in a frame header that wslay 1.1.1
 * only fails the read for (WSLAY_ERR_PROTO: it queues a close without
 * a status and the caller must drop the connection): a control frame
 * over 125 bytes or fragmented, a length not in its shortest form.
 */
static const char *
ws_bad_header(int op, int fin, int len7, uint64_t plen)
{
	if ((op & 0x8) && len7 > 125)
		return "control frame over 125 bytes";
	if ((op & 0x8) && !fin)
		return "fragmented control frame";
	if ((len7 == 126 && plen < 126) || (len7 == 127 &&
	    (plen <= 0xffff || (plen >> 63) != 0)))
		return "frame length not in its shortest form";
	return NULL;
}

/* Fail the connection (RFC 6455 7.1.7): close 1002, read no more. */
static void
ws_proto_close(struct ws *ws, const char *why)
{
	snprintf(ws->ws_why, sizeof(ws->ws_why), "%s", why);
	wslay_event_shutdown_read(ws->ws_ctx);
	(void)wslay_event_queue_close(ws->ws_ctx, WSLAY_CODE_PROTOCOL_ERROR,
	    NULL, 0);
	ws->ws_inoff = ws->ws_inlen = 0;
	ws->ws_wslay_left = 0;
}

/*
 * Consume the frames in the input buffer.  A complete, unfragmented,
 * correctly masked text frame of ASCII (every audio message) is handed
 * to on_text where it lies: no copy, no allocation.  Every other frame
 * (control frames, fragments, binary, non-ASCII text, oversized, bad
 * bits) goes to wslay byte for byte, which applies RFC 6455 to it as it
 * always did.  Returns -1 when the connection must be dropped.
 */
static int
ws_parse(struct ws *ws)
{
	uint8_t		*p, *pl;
	size_t		 avail, hlen, used, n;
	uint64_t	 plen, total;
	const char	*why;
	int		 fin, op, masked, len7, fast;

	while (ws->ws_inoff < ws->ws_inlen && !ws->ws_eof) {
		if (!wslay_event_get_read_enabled(ws->ws_ctx)) {
			/* Close received or protocol error: ignore the rest. */
			ws->ws_inoff = ws->ws_inlen = 0;
			ws->ws_wslay_left = 0;
			return 0;
		}
		p = ws->ws_in + ws->ws_inoff;
		avail = ws->ws_inlen - ws->ws_inoff;
		if (ws->ws_wslay_left > 0) {
			n = avail < ws->ws_wslay_left ? avail :
			    (size_t)ws->ws_wslay_left;
			ws->ws_feed = p;
			ws->ws_feedlen = n;
			if (wslay_event_recv(ws->ws_ctx) != 0)
				return -1;
			used = n - ws->ws_feedlen;
			ws->ws_feed = NULL;
			ws->ws_feedlen = 0;
			ws->ws_inoff += used;
			ws->ws_wslay_left -= used;
			if (used < n && wslay_event_get_read_enabled(ws->ws_ctx))
				return -1;	/* cannot happen: wslay reads all */
			continue;
		}
		if (avail < 2)
			break;
		fin = p[0] & 0x80;
		op = p[0] & 0x0f;
		masked = (p[1] & 0x80) != 0;
		len7 = p[1] & 0x7f;
		hlen = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) +
		    (masked ? 4 : 0);
		if (avail < hlen)
			break;
		if (len7 == 126)
			plen = (uint64_t)p[2] << 8 | p[3];
		else if (len7 == 127) {
			int i;
			for (plen = 0, i = 2; i < 10; i++)
				plen = plen << 8 | p[i];
		} else
			plen = (uint64_t)len7;
		if ((why = ws_bad_header(op, fin, len7, plen)) != NULL) {
			ws_proto_close(ws, why);
			return 0;
		}
		total = plen > UINT64_MAX - hlen ? UINT64_MAX : plen + hlen;
		fast = fin && (p[0] & 0x70) == 0 && op == WSLAY_TEXT_FRAME &&
		    !ws->ws_frag && masked == !ws->ws_client &&
		    !(len7 == 126 && plen < 126) &&
		    !(len7 == 127 && plen <= 0xffff) &&
		    plen <= ws->ws_maxmsg && total <= ws->ws_incap;
		if (fast) {
			if (avail < total)
				break;		/* wait for the rest */
			pl = p + hlen;
			if (masked && ws_unmask(pl, (size_t)plen, pl - 4)) {
				(void)ws_unmask(pl, (size_t)plen, pl - 4);
				fast = 0;	/* back as it came, for wslay */
			} else if (!masked && !ws_ascii(pl, (size_t)plen))
				fast = 0;
		}
		if (fast) {
			ws->ws_inoff += (size_t)total;
			ws->ws_cb->on_text(ws->ws_arg, pl, (size_t)plen);
			continue;
		}
		/*
		 * A control frame (at most 139 bytes when valid) goes to wslay
		 * whole: wslay 1.1.1 restarts its UTF-8 check of a close
		 * reason with every piece it reads.
		 */
		if ((op & 0x8) && total <= 139 && avail < total)
			break;
		if (op <= WSLAY_BINARY_FRAME)
			ws->ws_frag = !fin;
		ws->ws_wslay_left = total;
	}
	return 0;
}

/* Read and consume until the socket (and SSL) has nothing more now. */
static int
ws_read(struct ws *ws)
{
	ssize_t	n;
	size_t	room;

	if (ws_parse(ws) == -1)
		return -1;
	while (!ws->ws_eof && wslay_event_get_read_enabled(ws->ws_ctx)) {
		room = ws->ws_incap - ws->ws_inlen + ws->ws_inoff;
		if ((n = ws_fill(ws)) == -1)
			return -1;
		if (ws_parse(ws) == -1)
			return -1;
		if (n == 0)
			break;
		if ((size_t)n < room && (ws->ws_ssl == NULL ||
		    !SSL_has_pending(ws->ws_ssl)))
			break;		/* drained: no read just for EAGAIN */
	}
	return 0;
}

static void
ws_msg_cb(wslay_event_context_ptr ctx,
    const struct wslay_event_on_msg_recv_arg *a, void *arg)
{
	struct ws	*ws = arg;

	(void)ctx;
	switch (a->opcode) {
	case WSLAY_TEXT_FRAME:
		/* An empty message is not a binary one (NULL). */
		ws->ws_cb->on_text(ws->ws_arg, a->msg != NULL ? a->msg :
		    (const uint8_t *)"", a->msg_length);
		break;
	case WSLAY_BINARY_FRAME:
		ws->ws_cb->on_text(ws->ws_arg, NULL, 0);	/* counted bad */
		break;
	case WSLAY_CONNECTION_CLOSE:
		/* No status in the frame: 1005, as RFC 6455 7.1.5 says. */
		ws->ws_close_code = a->status_code ? a->status_code : 1005;
		ws_report_close(ws, ws->ws_close_code, "close frame received");
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
ws_tell_done(struct ws *ws)
{
	if (ws->ws_done_told)
		return;
	ws->ws_done_told = 1;
	if (ws->ws_cb->on_done != NULL)
		ws->ws_cb->on_done(ws->ws_arg);
}

/* Arm the read and write events for what is wanted now. */
static void
ws_update(struct ws *ws)
{
	int	r, w;

	if (ws->ws_rev == NULL)
		return;			/* client still upgrading */
	r = !ws->ws_eof && ((wslay_event_want_read(ws->ws_ctx) &&
	    ws->ws_leader == NULL) || ws->ws_wr_wants_r);
	w = !ws->ws_eof && (ws->ws_outlen > ws->ws_outoff ||
	    ws->ws_rd_wants_w) && !ws->ws_wr_wants_r;
	if (r != ws->ws_rev_on) {
		if (r)
			event_add(ws->ws_rev, NULL);
		else
			event_del(ws->ws_rev);
		ws->ws_rev_on = r;
	}
	if (w != ws->ws_wev_on) {
		if (w)
			event_add(ws->ws_wev, NULL);
		else
			event_del(ws->ws_wev);
		ws->ws_wev_on = w;
	}
}

/*
 * Kernel receive times on a plain socket (the caller's): the same one
 * syscall per read, as recvmsg with a SCM_TIMESTAMPNS control message.
 */
int
ws_rx_stamp(struct ws *ws)
{
	int	on = 1;

	if (ws->ws_ssl != NULL || setsockopt(ws->ws_fd, SOL_SOCKET,
	    SO_TIMESTAMPNS, &on, sizeof(on)) == -1)
		return -1;
	ws->ws_stamp = 1;
	return 0;
}

/* CLOCK_REALTIME ns at which the newest bytes read arrived; 0: unknown. */
uint64_t
ws_rx_ns(const struct ws *ws)
{
	return ws->ws_rx_ns;
}

/* read() with the arrival time: n, -1 for EAGAIN, -2 for an error. */
static ssize_t
ws_recv_stamped(struct ws *ws, size_t room)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(struct timespec))];
	} cm;
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*c;
	struct timespec	 ts;
	ssize_t		 n;

	iov.iov_base = ws->ws_in + ws->ws_inlen;
	iov.iov_len = room;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	n = recvmsg(ws->ws_fd, &mh, 0);
	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
		snprintf(ws->ws_why, sizeof(ws->ws_why), "%s", n == 0 ?
		    "connection closed by peer" : "connection lost");
		return -2;
	}
	if (n == -1)
		return -1;
	for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET &&
		    c->cmsg_type == SCM_TIMESTAMPNS &&
		    c->cmsg_len >= CMSG_LEN(sizeof(ts))) {
			memcpy(&ts, CMSG_DATA(c), sizeof(ts));
			ws->ws_rx_ns = (uint64_t)ts.tv_sec * 1000000000ULL +
			    (uint64_t)ts.tv_nsec;
		}
	return n;
}

int
ws_done(const struct ws *ws)
{
	if (ws->ws_ctx == NULL)
		return 1;		/* client never opened */
	return ws->ws_eof || (!wslay_event_want_read(ws->ws_ctx) &&
	    !wslay_event_want_write(ws->ws_ctx) &&
	    ws->ws_outlen == ws->ws_outoff);
}

/* Lost connection or protocol error: report, stop. */
static void
ws_fail_io(struct ws *ws)
{
	ws->ws_eof = 1;
	ws_update(ws);
	ws_report_close(ws, 1006, ws->ws_why[0] ? ws->ws_why :
	    "connection lost or protocol error");
	ws_tell_done(ws);
}

/* The close frame we sent for the peer's error is out: log it, once. */
static void
ws_report_broken(struct ws *ws, int code)
{
	const char	*why = ws->ws_why;

	if (ws->ws_closed)
		return;
	if (why[0] == '\0')
		why = code == WSLAY_CODE_MESSAGE_TOO_BIG ? "message too big" :
		    code == WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA ?
		    "text not UTF-8" : "protocol error";
	log_warnx("WebSocket %s broke RFC 6455 (%s): sent close %d",
	    ws->ws_client ? "server" : "client", why, code);
	ws_report_close(ws, code, "closed by us: the peer broke RFC 6455");
}

/* Send what wslay queued (pongs, close), write, re-arm, maybe done. */
static void
ws_after(struct ws *ws)
{
	if (ws->ws_eof)
		return;
	if ((wslay_event_want_write(ws->ws_ctx) &&
	    wslay_event_send(ws->ws_ctx) != 0) || ws_flush(ws) == -1) {
		ws_fail_io(ws);
		return;
	}
	ws_update(ws);
	if (ws_done(ws)) {
		ws->ws_eof = 1;
		ws_update(ws);
		if (ws->ws_close_code == 0 && !ws->ws_close_queued &&
		    wslay_event_get_close_sent(ws->ws_ctx))
			/* We (or wslay) closed on the peer's protocol error. */
			ws_report_broken(ws,
			    wslay_event_get_status_code_sent(ws->ws_ctx));
		else
			ws_report_close(ws, ws->ws_close_code ?
			    ws->ws_close_code : 1000, "closed");
		ws_tell_done(ws);
	}
}

static void
ws_io(int fd, short ev, void *arg)
{
	struct ws	*ws = arg;
	int		 rd;

	(void)fd;
	if (ws->ws_eof)
		return;
	rd = (ev & EV_READ) || ((ev & EV_WRITE) && ws->ws_rd_wants_w);
	if ((ev & EV_WRITE) || ws->ws_wr_wants_r) {
		if (ws_flush(ws) == -1) {
			ws_fail_io(ws);
			return;
		}
	}
	if (rd && ws_read(ws) == -1)
		ws_fail_io(ws);
	else
		ws_after(ws);
	if (ws->ws_follower != NULL) {
		if (ws->ws_eof)
			ws_follow(ws, ws->ws_follower, 0);
		else if (rd)
			ws_poll(ws->ws_follower);
	}
}

/*
 * The call is set up (worker_settle): the output buffer, if empty, goes
 * back to the allocator (it grew with the set-up's large messages, the
 * agent's first message and prompt; the next frame takes a fresh one
 * and touches only what it uses), and the input buffer's whole pages
 * past the unread bytes go back to the kernel (a burst during the
 * set-up wrote them).  Nothing is lost: no byte in either is live.
 */
void
ws_settle(struct ws *ws)
{
	uintptr_t	lo, hi, pg = (uintptr_t)sysconf(_SC_PAGESIZE);

	if (ws == NULL)
		return;
	if (ws->ws_outlen == 0 && ws->ws_out != NULL) {
		free(ws->ws_out);
		ws->ws_out = NULL;
		ws->ws_outcap = ws->ws_outoff = 0;
	}
	if (ws->ws_in == NULL)
		return;
	lo = ((uintptr_t)ws->ws_in + ws->ws_inlen + pg - 1) & ~(pg - 1);
	hi = ((uintptr_t)ws->ws_in + ws->ws_incap) & ~(pg - 1);
	if (lo < hi)
		(void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/*
 * Coalesced reading: follow's socket leaves epoll and is read right
 * after each read of lead's, whose messages (a caller's frames, every
 * 20 ms) pace it, and by a timer at most ms after its last read, so a
 * quiet lead delays it by no more than that.  One process wake-up then
 * serves a frame each way.  ms 0 (or the lead's end) undoes it.
 */
int
ws_follow(struct ws *lead, struct ws *follow, int ms)
{
	if (ms <= 0) {
		if (follow->ws_leader != NULL)
			follow->ws_leader->ws_follower = NULL;
		follow->ws_leader = NULL;
		if (follow->ws_poll_ev != NULL)
			evtimer_del(follow->ws_poll_ev);
		ws_update(follow);
		return 0;
	}
	if (lead == follow || lead->ws_rev == NULL || follow->ws_rev == NULL ||
	    lead->ws_eof || follow->ws_eof || lead->ws_leader != NULL ||
	    follow->ws_follower != NULL)
		return -1;
	if (follow->ws_poll_ev == NULL && (follow->ws_poll_ev =
	    evtimer_new(follow->ws_base, ws_poll_cb, follow)) == NULL)
		return -1;
	follow->ws_poll_tv.tv_sec = ms / 1000;
	follow->ws_poll_tv.tv_usec = (ms % 1000) * 1000;
	lead->ws_follower = follow;
	follow->ws_leader = lead;
	evtimer_add(follow->ws_poll_ev, &follow->ws_poll_tv);
	ws_update(follow);
	return 0;
}

/* A follower's turn: read what is there (often nothing: one EAGAIN). */
static void
ws_poll(struct ws *ws)
{
	if (ws->ws_eof)
		return;
	evtimer_add(ws->ws_poll_ev, &ws->ws_poll_tv);
	ws_io(ws->ws_fd, EV_READ, ws);
}

static void
ws_poll_cb(int fd, short ev, void *arg)
{
	(void)fd, (void)ev;
	ws_poll(arg);
}

/*
 * Masking keys come from the kernel's CSPRNG, 4 KiB at a time: one
 * getrandom(2) per ~1000 frames instead of one per frame (glibc 2.36's
 * arc4random is a getrandom call each time).  Filled lazily in the
 * worker, so no two processes share a pool.
 */
static void
ws_mask_bytes(uint8_t *buf, size_t len)
{
	static uint8_t	pool[4096];
	static size_t	off = sizeof(pool);

	if (len > sizeof(pool)) {
		arc4random_buf(buf, len);
		return;
	}
	if (sizeof(pool) - off < len) {
		if (getrandom(pool, sizeof(pool), 0) != (ssize_t)sizeof(pool))
			arc4random_buf(pool, sizeof(pool));
		off = 0;
	}
	memcpy(buf, pool + off, len);
	explicit_bzero(pool + off, len);
	off += len;
}

/* Our own frame header (and mask) for a text message: no wslay queue. */
static int
ws_frame_text(struct ws *ws, const char *data, size_t len)
{
	uint8_t	*p, key[4];
	size_t	 h, i;

	if (ws_out_reserve(ws, len + 14) == -1)
		return -1;
	p = ws->ws_out + ws->ws_outlen;
	p[0] = 0x80 | WSLAY_TEXT_FRAME;
	if (len < 126) {
		p[1] = (uint8_t)len;
		h = 2;
	} else if (len <= 0xffff) {
		p[1] = 126;
		p[2] = (uint8_t)(len >> 8);
		p[3] = (uint8_t)len;
		h = 4;
	} else {
		p[1] = 127;
		for (i = 0; i < 8; i++)
			p[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
		h = 10;
	}
	if (ws->ws_client) {
		ws_mask_bytes(key, sizeof(key));
		p[1] |= 0x80;
		memcpy(p + h, key, 4);
		h += 4;
		for (i = 0; i < len; i++)
			p[h + i] = (uint8_t)data[i] ^ key[i & 3];
	} else
		memcpy(p + h, data, len);
	ws->ws_outlen += h + len;
	return 0;
}

/*
 * Send one text message.  When wslay has nothing queued the frame is
 * built straight into the output buffer and written at once (one send
 * per audio frame); otherwise it queues behind wslay's, keeping order.
 */
int
ws_send_text(struct ws *ws, const char *data, size_t len)
{
	struct wslay_event_msg	m;

	if (ws->ws_ctx == NULL || ws->ws_eof || ws->ws_rev == NULL ||
	    ws->ws_close_queued ||
	    wslay_event_get_close_received(ws->ws_ctx) ||
	    !wslay_event_get_write_enabled(ws->ws_ctx))
		return -1;
	if (!wslay_event_want_write(ws->ws_ctx)) {
		if (ws_frame_text(ws, data, len) == -1)
			return -1;
	} else {
		m.opcode = WSLAY_TEXT_FRAME;
		m.msg = (const uint8_t *)data;
		m.msg_length = len;
		if (wslay_event_queue_msg(ws->ws_ctx, &m) != 0)
			return -1;	/* e.g. wslay has queued a close */
		if (wslay_event_send(ws->ws_ctx) != 0) {
			ws_fail_io(ws);
			return -1;
		}
	}
	if (ws_flush(ws) == -1) {
		ws_fail_io(ws);
		return -1;
	}
	ws_update(ws);
	return 0;
}

void
ws_close(struct ws *ws, uint16_t code, const char *reason)
{
	if (ws->ws_ctx == NULL || ws->ws_eof || ws->ws_rev == NULL) {
		/* Not open yet: just drop the connection. */
		if (!ws->ws_eof)
			ws_client_fail(ws, "closed before open");
		return;
	}
	if (wslay_event_queue_close(ws->ws_ctx, code, (const uint8_t *)reason,
	    reason ? strlen(reason) : 0) == 0)
		ws->ws_close_queued = 1;
	ws_after(ws);
}

/* --- client mode: TLS (or plain) bufferevent, wslay client ----------- */

#define WS_HEAD_MAX	8192
#define WS_CONNECT_MS	5000		/* per address */

static void	ws_bev_read(struct bufferevent *, void *);
static void	ws_bev_event(struct bufferevent *, short, void *);
static void	ws_on_connected(struct bufferevent *, const char *, void *);
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
	ws_mask_bytes(buf, len);
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
ws_client_new(struct event_base *base, const char *url, size_t maxmsg,
    const struct ws_cb *cb, void *arg, char *err, size_t errlen)
{
	struct ws	*ws;
	uint8_t		 nonce[16];
	int		 tls, port;
	const char	*path;

	if ((ws = calloc(1, sizeof(*ws))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ws->ws_fd = -1;
	ws->ws_client = 1;
	ws->ws_base = base;
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
	if (tls && tls_client_ctx() == NULL) {
		snprintf(err, errlen, "no TLS client context");
		goto fail;
	}
	ws->ws_req = evbuffer_new();
	if (ws->ws_req == NULL || evbuffer_add_printf(ws->ws_req,
	    "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
	    "Sec-WebSocket-Version: 13\r\nUser-Agent: naiberd/%s\r\n\r\n",
	    path, ws->ws_host, port, ws->ws_key, NAIBER_VERSION) == -1)
		goto fail;
	/* Resolved on this loop; every address tried in order. */
	ws->ws_nc = nc_connect(base, ws->ws_host, port, AF_UNSPEC,
	    tls ? tls_client_ctx() : NULL, WS_CONNECT_MS, ws_on_connected, ws);
	if (ws->ws_nc == NULL) {
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
	ws_update(ws);
	if (why != ws->ws_why)
		snprintf(ws->ws_why, sizeof(ws->ws_why), "%s", why);
	ws_report_close(ws, 1006, ws->ws_why);
	ws_tell_done(ws);
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

/*
 * Upgraded: from here the socket (and its SSL) is driven directly, like
 * the server side; the bufferevent only stays to be freed with them.
 * Anything it read past the 101 (SSL's pending records included: it
 * drains SSL before calling us) is handed over first.
 */
static int
ws_client_takeover(struct ws *ws)
{
	struct evbuffer	*in = bufferevent_get_input(ws->ws_bev);
	size_t		 n = evbuffer_get_length(in);
	int		 rc;

	ws->ws_fd = bufferevent_getfd(ws->ws_bev);
	ws->ws_ssl = bufferevent_openssl_get_ssl(ws->ws_bev);
	if (ws->ws_ssl != NULL)
		SSL_set_mode(ws->ws_ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
		    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	bufferevent_setcb(ws->ws_bev, NULL, NULL, NULL, NULL);
	bufferevent_disable(ws->ws_bev, EV_READ | EV_WRITE);
	rc = ws_start_io(ws, n > 0 ? evbuffer_pullup(in, -1) : NULL, n);
	evbuffer_drain(in, n);
	return rc;
}

static void
ws_bev_read(struct bufferevent *bev, void *arg)
{
	struct ws	*ws = arg;
	int		 r;

	(void)bev;
	if ((r = ws_client_head(ws)) == 0)
		return;
	if (r == -1 || ws_client_takeover(ws) == -1) {
		ws_client_fail(ws, ws->ws_why[0] ? ws->ws_why :
		    "bad WebSocket handshake answer");
		return;
	}
	if (ws->ws_cb->on_open != NULL)
		ws->ws_cb->on_open(ws->ws_arg);
}

static void
ws_on_connected(struct bufferevent *bev, const char *err, void *arg)
{
	struct ws	*ws = arg;
	int		 one = 1;

	ws->ws_nc = NULL;
	if (bev == NULL) {
		ws_client_fail(ws, err);
		return;
	}
	ws->ws_bev = bev;
	/* 20 ms audio frames: never wait for Nagle. */
	(void)setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY,
	    &one, sizeof(one));
	bufferevent_setcb(bev, ws_bev_read, NULL, ws_bev_event, ws);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	bufferevent_write_buffer(bev, ws->ws_req);
}

static void
ws_bev_event(struct bufferevent *bev, short what, void *arg)
{
	struct ws	*ws = arg;
	char		 why[200];

	bev_error_str(bev, what, "connection closed by peer", why,
	    sizeof(why));
	ws_client_fail(ws, why);
}

int
ws_ping(struct ws *ws)
{
	struct wslay_event_msg	m = { WSLAY_PING, NULL, 0 };

	if (ws->ws_ctx == NULL || ws->ws_rev == NULL || ws->ws_eof ||
	    wslay_event_queue_msg(ws->ws_ctx, &m) != 0)
		return -1;
	ws_after(ws);
	return 0;
}
