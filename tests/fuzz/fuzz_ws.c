/*
 * fuzz_ws.c - libFuzzer target for worker/ws.c: its own frame parser
 * (ws_parse) with the in-place fast path, and the hand-over of every
 * other frame to wslay.  The input is what the peer sends; a real
 * event_base drives a struct ws and the harness plays the peer.
 * Server mode (the Twilio side) runs over a unix socketpair; client
 * mode (the ElevenLabs side) connects to a loopback listener with
 * ws_client_new (plain ws://, no TLS), and the harness answers the
 * upgrade itself.
 *
 * Byte 0 chooses the variant, byte 1 seeds it, the rest is the stream:
 *   byte 0 bits 0-1  0 all of it at once: ws_server_new's "pre" bytes,
 *                    or in the write carrying the 101; 1 all of it in
 *                    pseudo-random pieces; 2 a prefix at once, the
 *                    rest in pieces; 3 one byte per write for the first
 *                    512 bytes, the rest in one write
 *          bits 2-3  maxmsg: 64 KiB (Twilio's), 130, 1000, 200000
 *          bit 4     shut the peer's write side after the stream (EOF)
 *          bit 5     on_text echoes each text message with ws_send_text
 *          bit 6     ws_close(1000) from on_text after (byte 1 & 7)
 *                    messages
 *          bit 7     ws_ping before the stream
 *   byte 1 bit 7     client mode; bits 0-6 the piece sizes, the prefix
 *                    (n/128 of the stream) and the message count above
 * An independent decoder (fz_ref_run) says which messages a correct
 * RFC 6455 endpoint delivers before it stops (end of input, a close
 * frame, or a definite protocol error); delivered messages must equal
 * them exactly, callbacks must come in order and once.  What ws.c
 * writes back must be well-formed frames, masked exactly in client
 * mode; pongs echo the pings, echoes come back intact and in order.
 * Links worker/ws.c, common/util.c (base64) and common/tls.c (client
 * mode's TLS context, unused with ws://).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "worker.h"

#define FZ_CHECK(c)	do { if (!(c)) fz_fail(__LINE__, #c); } while (0)
#define FZ_MAXMSGS	4096
#define FZ_PIECES	64
#define FZ_BYTEWISE	512

static int	fz_lfd = -1;	/* client mode connects here */
static int	fz_port;

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

enum fz_stop {
	FZ_END,		/* ran out of input, no error seen */
	FZ_CLOSE,	/* a complete close frame */
	FZ_ERR_FULL,	/* a complete frame that must fail the connection */
	FZ_ERR_PART,	/* the same, seen before the frame was complete */
	FZ_UNSURE	/* too many messages to follow: check no more */
};

struct fz_msg {
	int		 m_text;	/* else binary */
	size_t		 m_off, m_len;	/* in the owner's store */
};

/* What a correct server delivers, per the independent decoder. */
struct fz_ref {
	struct fz_msg	 r_msgs[FZ_MAXMSGS];
	size_t		 r_nmsgs;
	struct fz_msg	 r_pings[FZ_MAXMSGS];
	size_t		 r_npings;
	uint8_t		*r_bytes;	/* unmasked message payloads */
	size_t		 r_nbytes;
	uint8_t		*r_pbytes;	/* the pings' */
	size_t		 r_npbytes;
	enum fz_stop	 r_stop;
	int		 r_code;	/* close code, if a definite one */
	/* decoding state */
	size_t		 r_cap, r_pcap;
	int		 r_open, r_text;	/* a data message is open */
	uint64_t	 r_msglen;
	size_t		 r_msgoff;
	int		 r_need, r_lo, r_hi;	/* UTF-8, see fz_utf8 */
};

/* One frame header as the reference reads it. */
struct fz_hdr {
	int		 h_fin, h_rsv, h_op, h_mask, h_l7;
	size_t		 h_hl;
	uint64_t	 h_plen;
	const uint8_t	*h_key, *h_pl;
};

/* What the struct ws under test did. */
struct fz_run {
	struct fz_msg	 u_got[FZ_MAXMSGS];
	int		 u_null[FZ_MAXMSGS];	/* on_text(NULL, 0) */
	size_t		 u_ngot;
	struct fz_msg	 u_echo[FZ_MAXMSGS];	/* ws_send_text took */
	size_t		 u_necho;
	uint8_t		*u_bytes;
	size_t		 u_nbytes, u_cap;
	int		 u_closes, u_dones, u_code;
	int		 u_echo_on, u_close_after, u_closed_by_us;
	int		 u_client, u_opened;
	size_t		 u_maxmsg;
	struct ws	*u_ws;
	uint8_t		*u_out;		/* what the peer read */
	size_t		 u_outlen, u_outcap;
	int		 u_progress;
};

static void	fz_fail(int, const char *) __attribute__((noreturn));
static size_t	fz_store(uint8_t **, size_t *, size_t *, const uint8_t *,
		    size_t);
static int	fz_utf8(int *, int *, int *, uint8_t);
static int	fz_hdr(struct fz_hdr *, const uint8_t *, size_t);
static int	fz_hdr_bad(const struct fz_hdr *, const struct fz_ref *, int,
		    size_t);
static int	fz_ref_payload(struct fz_ref *, const struct fz_hdr *,
		    size_t);
static int	fz_ref_ping(struct fz_ref *, const struct fz_hdr *);
static int	fz_ref_frame(struct fz_ref *, const struct fz_hdr *);
static void	fz_ref_run(struct fz_ref *, const uint8_t *, size_t, size_t,
		    int);
static void	fz_on_text(void *, const uint8_t *, size_t);
static void	fz_on_close(void *, int, const char *);
static void	fz_on_done(void *);
static void	fz_on_open(void *);
static void	fz_listen(void);
static int	fz_client_open(struct event_base *, struct fz_run *,
		    const struct ws_cb *, const uint8_t *, size_t);
static void	fz_drain(struct fz_run *, int);
static void	fz_spin(struct event_base *, struct fz_run *, int, int);
static int	fz_write(struct event_base *, struct fz_run *, int,
		    const uint8_t *, size_t);
static void	fz_feed(struct event_base *, struct fz_run *, int,
		    const uint8_t *, size_t, int, uint32_t *);
static void	fz_check_msgs(const struct fz_ref *, const struct fz_run *);
static size_t	fz_out_frame(const uint8_t *, size_t, int, int *,
		    const uint8_t **, uint64_t *, uint8_t **);
static void	fz_check_out(const struct fz_ref *, const struct fz_run *,
		    int, int);
static int	fz_open(struct event_base *, struct fz_run *,
		    const struct ws_cb *, const uint8_t *, size_t, int *);
static void	fz_verify(const struct fz_ref *, const struct fz_run *, int,
		    int);

static void
fz_fail(int line, const char *what)
{
	fprintf(stderr, "fuzz_ws.c:%d: invariant failed: %s\n", line, what);
	abort();
}

/* Append to a growing byte store; returns the offset of the copy. */
static size_t
fz_store(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *p,
    size_t n)
{
	size_t	off = *len;

	if (*cap - *len < n) {
		size_t c = *cap ? *cap : 4096;
		while (c - *len < n)
			c *= 2;
		FZ_CHECK((*buf = realloc(*buf, c)) != NULL);
		*cap = c;
	}
	if (n > 0)
		memcpy(*buf + *len, p, n);
	*len += n;
	return off;
}

/*
 * One byte of UTF-8 (RFC 3629, Unicode table 3-7) against the state
 * (continuation bytes still needed, bounds for the next one).  Returns
 * -1 as soon as no valid string can have this prefix.
 */
static int
fz_utf8(int *need, int *lo, int *hi, uint8_t c)
{
	if (*need > 0) {
		if (c < *lo || c > *hi)
			return -1;
		(*need)--;
		*lo = 0x80, *hi = 0xbf;
		return 0;
	}
	*lo = 0x80, *hi = 0xbf;
	if (c < 0x80)
		return 0;
	if (c >= 0xc2 && c <= 0xdf)
		*need = 1;
	else if (c >= 0xe0 && c <= 0xef) {
		*need = 2;
		if (c == 0xe0)
			*lo = 0xa0;
		else if (c == 0xed)
			*hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		*need = 3;
		if (c == 0xf0)
			*lo = 0x90;
		else if (c == 0xf4)
			*hi = 0x8f;
	} else
		return -1;
	return 0;
}

/* The header at p, 0 if not all here. */
static int
fz_hdr(struct fz_hdr *h, const uint8_t *p, size_t len)
{
	static const uint8_t	nokey[4];
	size_t			i;

	if (len < 2)
		return 0;
	h->h_fin = p[0] >> 7;
	h->h_rsv = (p[0] >> 4) & 7;
	h->h_op = p[0] & 15;
	h->h_mask = p[1] >> 7;
	h->h_l7 = p[1] & 0x7f;
	h->h_hl = 2 + (h->h_l7 == 126 ? 2 : h->h_l7 == 127 ? 8 : 0) +
	    4 * (size_t)h->h_mask;
	if (len < h->h_hl)
		return 0;
	h->h_plen = (uint64_t)h->h_l7;
	if (h->h_l7 >= 126)
		for (h->h_plen = 0, i = 2; i < (h->h_l7 == 126 ? 4u : 10u);
		    i++)
			h->h_plen = h->h_plen << 8 | p[i];
	h->h_key = h->h_mask ? p + h->h_hl - 4 : nokey;
	h->h_pl = p + h->h_hl;
	return 1;
}

/*
 * RFC 6455 section 5 for an endpoint with no extensions, written
 * without looking at ws.c: masked exactly when the sender is a client,
 * known opcodes, minimal lengths and 64-bit ones below 2^63, control
 * frames whole and at most 125 bytes, continuations only inside a
 * message, and no message longer than maxmsg (1009).
 */
static int
fz_hdr_bad(const struct fz_hdr *h, const struct fz_ref *r, int client,
    size_t maxmsg)
{
	if (h->h_rsv != 0 || h->h_mask == client ||
	    (h->h_op > 2 && h->h_op < 8) || h->h_op > 10)
		return 1;
	if ((h->h_l7 == 126 && h->h_plen < 126) || (h->h_l7 == 127 &&
	    (h->h_plen <= 0xffff || h->h_plen >> 63)))
		return 1;
	if (h->h_op >= 8)
		return !h->h_fin || h->h_plen > 125;
	if ((h->h_op == 0) != r->r_open)
		return 1;
	return h->h_plen > maxmsg - (h->h_op == 0 ? r->r_msglen : 0);
}

/* Unmask what is here, keep a message's, check UTF-8: -1 if invalid. */
static int
fz_ref_payload(struct fz_ref *r, const struct fz_hdr *h, size_t avail)
{
	size_t	i;
	uint8_t	c;
	int	bad = 0;

	if (h->h_op == 1 || h->h_op == 8)
		r->r_need = 0, r->r_lo = 0x80, r->r_hi = 0xbf;
	if (h->h_op == 1 || h->h_op == 2) {
		r->r_open = 1, r->r_text = h->h_op == 1, r->r_msglen = 0;
		r->r_msgoff = r->r_nbytes;
	}
	for (i = 0; i < h->h_plen && i < avail; i++) {
		c = h->h_pl[i] ^ h->h_key[i & 3];
		if (h->h_op < 8)
			fz_store(&r->r_bytes, &r->r_nbytes, &r->r_cap, &c, 1);
		if (((h->h_op < 8 && r->r_text) || (h->h_op == 8 && i >= 2)) &&
		    fz_utf8(&r->r_need, &r->r_lo, &r->r_hi, c) == -1)
			bad = 1;
	}
	return bad ? -1 : 0;
}

static int
fz_ref_ping(struct fz_ref *r, const struct fz_hdr *h)
{
	struct fz_msg	*m = &r->r_pings[r->r_npings];
	size_t		 i;
	uint8_t		 c;

	if (r->r_npings == FZ_MAXMSGS) {
		r->r_stop = FZ_UNSURE;
		return -1;
	}
	m->m_off = r->r_npbytes;
	for (i = 0; i < h->h_plen; i++) {
		c = h->h_pl[i] ^ h->h_key[i & 3];
		fz_store(&r->r_pbytes, &r->r_npbytes, &r->r_pcap, &c, 1);
	}
	m->m_len = (size_t)h->h_plen;
	r->r_npings++;
	return 0;
}

/* A whole, valid frame: -1 when it ends the stream. */
static int
fz_ref_frame(struct fz_ref *r, const struct fz_hdr *h)
{
	struct fz_msg	*m = &r->r_msgs[r->r_nmsgs];
	int		 code;

	if (h->h_op == 8) {
		r->r_stop = FZ_CLOSE;
		if (h->h_plen < 2 || r->r_need != 0)
			return -1;
		code = (h->h_pl[0] ^ h->h_key[0]) << 8 |
		    (h->h_pl[1] ^ h->h_key[1]);
		if ((code >= 1000 && code <= 1003) ||
		    (code >= 1007 && code <= 1011) ||
		    (code >= 3000 && code <= 4999))
			r->r_code = code;
		return -1;
	}
	if (h->h_op == 9)
		return fz_ref_ping(r, h);
	if (h->h_op == 10)
		return 0;
	r->r_msglen += h->h_plen;
	if (!h->h_fin)
		return 0;
	if (r->r_text && r->r_need != 0)
		return -1;		/* ends inside a character */
	if (r->r_nmsgs == FZ_MAXMSGS) {
		r->r_stop = FZ_UNSURE;
		return -1;
	}
	m->m_text = r->r_text;
	m->m_off = r->r_msgoff;
	m->m_len = (size_t)r->r_msglen;
	r->r_nmsgs++;
	r->r_open = 0;
	return 0;
}

/*
 * The reference: the messages a correct endpoint delivers from the
 * stream, and why it stops (see enum fz_stop).
 */
static void
fz_ref_run(struct fz_ref *r, const uint8_t *p, size_t len, size_t maxmsg,
    int client)
{
	struct fz_hdr	h;
	size_t		pos = 0, avail;

	r->r_stop = FZ_END;
	while (fz_hdr(&h, p + pos, len - pos)) {
		avail = len - pos - h.h_hl;
		r->r_stop = h.h_plen > avail ? FZ_ERR_PART : FZ_ERR_FULL;
		if (fz_hdr_bad(&h, r, client, maxmsg) ||
		    fz_ref_payload(r, &h, avail) == -1)
			return;
		if (h.h_plen > avail) {
			r->r_stop = FZ_END;
			return;
		}
		if (fz_ref_frame(r, &h) == -1)
			return;
		r->r_stop = FZ_END;
		pos += h.h_hl + (size_t)h.h_plen;
	}
}

static void
fz_on_text(void *arg, const uint8_t *p, size_t len)
{
	struct fz_run	*u = arg;
	struct fz_msg	*m;

	u->u_progress = 1;
	FZ_CHECK(u->u_closes == 0);
	FZ_CHECK(len <= u->u_maxmsg);
	FZ_CHECK(p != NULL || len == 0);
	if (u->u_ngot == FZ_MAXMSGS)
		return;
	m = &u->u_got[u->u_ngot];
	u->u_null[u->u_ngot] = p == NULL;
	m->m_off = fz_store(&u->u_bytes, &u->u_nbytes, &u->u_cap, p, len);
	m->m_len = len;
	u->u_ngot++;
	/* What the Twilio side may do from here: answer, or end the call. */
	if (u->u_echo_on && p != NULL && u->u_necho < FZ_MAXMSGS &&
	    ws_send_text(u->u_ws, (const char *)p, len) == 0) {
		m = &u->u_echo[u->u_necho++];
		m->m_off = fz_store(&u->u_bytes, &u->u_nbytes, &u->u_cap, p,
		    len);
		m->m_len = len;
	}
	if (u->u_close_after >= 0 && u->u_ngot == (size_t)u->u_close_after) {
		u->u_closed_by_us = 1;
		ws_close(u->u_ws, 1000, NULL);
	}
}

static void
fz_on_close(void *arg, int code, const char *why)
{
	struct fz_run	*u = arg;

	FZ_CHECK(why != NULL);
	u->u_progress = 1;
	u->u_closes++;
	u->u_code = code;
	FZ_CHECK(u->u_closes == 1);
	FZ_CHECK(u->u_dones == 0);
}

static void
fz_on_done(void *arg)
{
	struct fz_run	*u = arg;

	u->u_progress = 1;
	u->u_dones++;
	FZ_CHECK(u->u_dones == 1);
	FZ_CHECK(u->u_closes == 1);
}

static void
fz_on_open(void *arg)
{
	struct fz_run	*u = arg;

	FZ_CHECK(u->u_client && !u->u_opened);
	u->u_opened = 1;
}

static void
fz_listen(void)
{
	struct sockaddr_in	sin;
	socklen_t		sl = sizeof(sin);

	if (fz_lfd != -1)
		return;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	FZ_CHECK((fz_lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0))
	    != -1);
	FZ_CHECK(bind(fz_lfd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	FZ_CHECK(listen(fz_lfd, 16) == 0);
	FZ_CHECK(getsockname(fz_lfd, (struct sockaddr *)&sin, &sl) == 0);
	fz_port = ntohs(sin.sin_port);
}

/*
 * Client mode: ws_client_new to our loopback listener, its upgrade
 * answered with a 101 and the first npre bytes of the stream in one
 * write (so they reach ws.c inside the bufferevent's input, the
 * takeover path).  Returns our end; it resets on close (SO_LINGER 0)
 * so no run leaves a TIME_WAIT behind, and sends at once (no Nagle).
 */
static int
fz_client_open(struct event_base *base, struct fz_run *u,
    const struct ws_cb *cb, const uint8_t *pre, size_t npre)
{
	static const struct linger lg = { 1, 0 };
	char		 url[64], err[128], head[4096], acc[29], *k, *e;
	uint8_t		*resp;
	size_t		 hlen = 0, rlen;
	ssize_t		 n;
	int		 cfd = -1, i, one = 1;

	fz_listen();
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/v1/convai", fz_port);
	u->u_ws = ws_client_new(base, url, u->u_maxmsg, cb, u, err,
	    sizeof(err));
	FZ_CHECK(u->u_ws != NULL);
	for (i = 0; cfd == -1 && i < 1000; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		cfd = accept4(fz_lfd, NULL, NULL, SOCK_NONBLOCK);
	}
	FZ_CHECK(cfd != -1);
	FZ_CHECK(setsockopt(cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
	/* Nagle would hold small pieces for a delayed ACK: not "sent". */
	FZ_CHECK(setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one,
	    sizeof(one)) == 0);
	for (i = 0; i < 1000 && memmem(head, hlen, "\r\n\r\n", 4) == NULL;
	    i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		if ((n = read(cfd, head + hlen, sizeof(head) - 1 - hlen)) > 0)
			hlen += (size_t)n;
	}
	head[hlen] = '\0';
	FZ_CHECK((k = strstr(head, "\r\nSec-WebSocket-Key: ")) != NULL);
	k += 21;
	FZ_CHECK((e = strstr(k, "\r\n")) != NULL);
	*e = '\0';
	FZ_CHECK(ws_accept_key(k, acc) == 0);
	FZ_CHECK((resp = malloc(256 + npre)) != NULL);
	rlen = (size_t)snprintf((char *)resp, 256, "HTTP/1.1 101 Switching "
	    "Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n\r\n", acc);
	if (npre > 0)
		memcpy(resp + rlen, pre, npre);
	(void)fz_write(base, u, cfd, resp, rlen + npre);
	free(resp);
	fz_spin(base, u, cfd, 8);
	FZ_CHECK(u->u_opened);
	return cfd;
}

/* Read whatever the server end wrote. */
static void
fz_drain(struct fz_run *u, int fd)
{
	uint8_t	buf[65536];
	ssize_t	n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		fz_store(&u->u_out, &u->u_outlen, &u->u_outcap, buf,
		    (size_t)n);
		u->u_progress = 1;
	}
}

/* Run the loop without blocking until nothing happens three times. */
static void
fz_spin(struct event_base *base, struct fz_run *u, int cfd, int max)
{
	int	idle = 0;

	while (idle < 3 && max-- > 0) {
		u->u_progress = 0;
		event_base_loop(base, EVLOOP_NONBLOCK);
		fz_drain(u, cfd);
		idle = u->u_progress ? 0 : idle + 1;
	}
}

/*
 * Write all of it, or stop (-1) when the socket stays full: the server
 * no longer reads (after a close or an error; if it stopped wrongly,
 * the messages it missed fail the check against the reference).
 */
static int
fz_write(struct event_base *base, struct fz_run *u, int cfd,
    const uint8_t *p, size_t len)
{
	ssize_t	n;
	int	full = 0;

	while (len > 0) {
		n = write(cfd, p, len);
		if (n == -1) {
			FZ_CHECK(errno == EAGAIN || errno == EINTR);
			if (++full == 16)
				return -1;
			fz_spin(base, u, cfd, 1);
			continue;
		}
		full = 0;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The stream in pieces, the loop run after each. */
static void
fz_feed(struct event_base *base, struct fz_run *u, int cfd,
    const uint8_t *p, size_t len, int bytewise, uint32_t *seed)
{
	size_t	n, pieces = 0;

	while (len > 0) {
		if (bytewise)
			n = (pieces < FZ_BYTEWISE) ? 1 : len;
		else if (pieces + 1 >= FZ_PIECES)
			n = len;
		else {
			*seed ^= *seed << 13, *seed ^= *seed >> 17;
			*seed ^= *seed << 5;
			n = 1 + *seed % ((*seed >> 8) & 1 ? 16 : 4096);
		}
		if (n > len)
			n = len;
		if (fz_write(base, u, cfd, p, n) == -1)
			return;
		fz_spin(base, u, cfd, 4);
		p += n;
		len -= n;
		pieces++;
	}
}

static void
fz_check_msgs(const struct fz_ref *r, const struct fz_run *u)
{
	size_t	i;

	FZ_CHECK(u->u_ngot == r->r_nmsgs);
	for (i = 0; i < r->r_nmsgs; i++) {
		const struct fz_msg *w = &r->r_msgs[i], *g = &u->u_got[i];
		if (!w->m_text || w->m_len == 0) {
			/* Binary is reported as (NULL, 0); so is an empty
			 * text message that came through wslay. */
			FZ_CHECK(g->m_len == 0);
			FZ_CHECK(w->m_text || u->u_null[i]);
			continue;
		}
		FZ_CHECK(!u->u_null[i]);
		FZ_CHECK(g->m_len == w->m_len);
		FZ_CHECK(memcmp(u->u_bytes + g->m_off, r->r_bytes + w->m_off,
		    w->m_len) == 0);
	}
}

/*
 * One frame of what ws.c wrote: its length, 0 if cut short.  Frames
 * are unfragmented and minimal, masked exactly in client mode; the
 * payload comes back unmasked (in *un when it was masked).
 */
static size_t
fz_out_frame(const uint8_t *o, size_t len, int mk, int *op,
    const uint8_t **pl, uint64_t *plen, uint8_t **un)
{
	size_t	hl, i;
	int	l7;

	FZ_CHECK((o[0] & 0xf0) == 0x80);	/* FIN, no RSV */
	FZ_CHECK((o[1] & 0x80) == mk);
	*op = o[0] & 15;
	l7 = o[1] & 0x7f;
	hl = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + (mk ? 4 : 0);
	if (len < hl)
		return 0;
	*plen = (uint64_t)l7;
	if (l7 >= 126)
		for (*plen = 0, i = 2; i < (l7 == 126 ? 4u : 10u); i++)
			*plen = *plen << 8 | o[i];
	FZ_CHECK(l7 != 126 || *plen >= 126);
	FZ_CHECK(l7 != 127 || (*plen > 0xffff && *plen >> 63 == 0));
	FZ_CHECK(*op == 1 || *op == 8 || *op == 9 || *op == 10);
	FZ_CHECK(*op < 8 || *plen <= 125);
	if (len - hl < *plen)
		return 0;
	*pl = o + hl;
	if (mk) {
		FZ_CHECK((*un = realloc(*un, (size_t)*plen + 1)) != NULL);
		for (i = 0; i < *plen; i++)
			(*un)[i] = o[hl + i] ^ o[hl - 4 + (i & 3)];
		*pl = *un;
	}
	return hl + (size_t)*plen;
}

/*
 * What ws.c wrote: pongs equal to the pings, echoes equal to what
 * ws_send_text accepted, nothing after a close.  When the run was
 * clean, all of them and whole frames only.
 */
static void
fz_check_out(const struct fz_ref *r, const struct fz_run *u, int pinged,
    int clean)
{
	const struct fz_msg	*m;
	const uint8_t		*pl = NULL;
	uint8_t			*un = NULL;
	size_t			 pos = 0, n, npong = 0, ntext = 0;
	size_t			 nping = 0;
	uint64_t		 plen = 0;
	int			 op, closed = 0;

	while (u->u_outlen - pos >= 2 && (n = fz_out_frame(u->u_out + pos,
	    u->u_outlen - pos, u->u_client ? 0x80 : 0, &op, &pl, &plen,
	    &un)) > 0) {
		FZ_CHECK(!closed);
		if (op == 1) {
			FZ_CHECK(ntext < u->u_necho);
			m = &u->u_echo[ntext++];
			FZ_CHECK(plen == m->m_len && (plen == 0 ||
			    memcmp(pl, u->u_bytes + m->m_off, m->m_len) == 0));
		} else if (op == 10) {
			FZ_CHECK(npong < r->r_npings);
			m = &r->r_pings[npong++];
			FZ_CHECK(plen == m->m_len && (plen == 0 ||
			    memcmp(pl, r->r_pbytes + m->m_off, m->m_len) == 0));
		} else if (op == 9)
			FZ_CHECK(pinged && ++nping == 1);
		else {
			closed = 1;
			FZ_CHECK(plen != 1);
			if (r->r_stop == FZ_CLOSE && r->r_code != 0 &&
			    !u->u_closed_by_us)
				FZ_CHECK(plen >= 2 &&
				    (pl[0] << 8 | pl[1]) == r->r_code);
		}
		pos += n;
	}
	free(un);
	if (!clean)
		return;
	FZ_CHECK(pos == u->u_outlen);
	FZ_CHECK(ntext == u->u_necho);
	/*
	 * wslay drops the pongs it has queued when a close is queued in
	 * the same read (its own or the peer's): all pongs only when no
	 * close was involved.
	 */
	if (!u->u_closed_by_us && r->r_stop == FZ_END)
		FZ_CHECK(npong == r->r_npings);
	FZ_CHECK(nping == (size_t)pinged);
}

/* The struct ws under test, on a socketpair or connected; our end. */
static int
fz_open(struct event_base *base, struct fz_run *u, const struct ws_cb *cb,
    const uint8_t *pre, size_t npre, int *wsfd)
{
	int	sv[2];

	*wsfd = -1;
	if (u->u_client)
		return fz_client_open(base, u, cb, pre, npre);
	FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	FZ_CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
	FZ_CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
	u->u_ws = ws_server_new(base, sv[0], pre, npre, u->u_maxmsg, cb, u);
	FZ_CHECK(u->u_ws != NULL);
	*wsfd = sv[0];
	return sv[1];
}

/* Against the reference: messages, callbacks, output. */
static void
fz_verify(const struct fz_ref *r, const struct fz_run *u, int eof,
    int pinged)
{
	if (r->r_stop == FZ_UNSURE)
		return;
	fz_check_msgs(r, u);
	if (eof || r->r_stop == FZ_CLOSE || r->r_stop == FZ_ERR_FULL)
		FZ_CHECK(u->u_dones == 1);
	else if (r->r_stop == FZ_END)
		FZ_CHECK(u->u_dones == 0 && u->u_closes == 0);
	if (r->r_stop == FZ_CLOSE && r->r_code != 0)
		FZ_CHECK(u->u_code == r->r_code);
	fz_check_out(r, u, pinged, (r->r_stop == FZ_END ||
	    r->r_stop == FZ_CLOSE) && u->u_code != 1006);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t	 maxmsgs[4] = { 65536, 130, 1000, 200000 };
	static const struct ws_cb cb = { fz_on_text, fz_on_close, fz_on_done,
				    fz_on_open };
	static struct fz_ref	 r;
	static struct fz_run	 u;
	struct event_base	*base;
	int			 fd, wsfd, mode, pinged;
	uint32_t		 seed;
	size_t			 npre;

	if (size < 2)
		return 0;
	mode = data[0];
	seed = 0x9e3779b9u ^ data[1];
	memset(&r, 0, sizeof(r));
	memset(&u, 0, sizeof(u));
	u.u_maxmsg = maxmsgs[(mode >> 2) & 3];
	u.u_echo_on = (mode & 0x20) != 0;
	u.u_close_after = (mode & 0x40) ? data[1] & 7 : -1;
	u.u_client = (data[1] & 0x80) != 0;
	npre = (mode & 3) == 0 ? size - 2 : (mode & 3) == 2 ?
	    (size - 2) * (data[1] & 0x7f) / 128 : 0;
	data += 2, size -= 2;
	fz_ref_run(&r, data, size, u.u_maxmsg, u.u_client);
	/*
	 * wslay checks a close reason's UTF-8 from byte 2 of each piece
	 * it reads, not of the payload: a close split across reads may be
	 * taken as an error or the reverse.  Its code is checked only when
	 * the frame surely comes in one piece.
	 */
	if ((mode & 3) != 0 || u.u_client)
		r.r_code = 0;

	FZ_CHECK((base = event_base_new()) != NULL);
	fd = fz_open(base, &u, &cb, data, npre, &wsfd);
	/* Client mode may have seen all of a short stream already. */
	pinged = (mode & 0x80) && ws_ping(u.u_ws) == 0;
	FZ_CHECK(pinged || !(mode & 0x80) || u.u_client);
	if (u.u_close_after == 0) {
		u.u_closed_by_us = 1;
		ws_close(u.u_ws, 1000, NULL);
	}
	fz_spin(base, &u, fd, 8);
	fz_feed(base, &u, fd, data + npre, size - npre, (mode & 3) == 3,
	    &seed);
	if (mode & 0x10)
		FZ_CHECK(shutdown(fd, SHUT_WR) == 0);
	fz_spin(base, &u, fd, 64);
	fz_verify(&r, &u, (mode & 0x10) != 0, pinged);

	close(fd);		/* first: a reset, no TIME_WAIT */
	ws_free(u.u_ws);	/* client: closes its socket */
	if (wsfd != -1)
		close(wsfd);
	event_base_free(base);
	free(r.r_bytes);
	free(r.r_pbytes);
	free(u.u_bytes);
	free(u.u_out);
	return 0;
}
