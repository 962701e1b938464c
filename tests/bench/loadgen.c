/*
 * loadgen.c - the load generator behind `make bench` (tests/bench/bench.mjs
 * drives it).  One process, one epoll event loop, plus one sampler thread
 * that reads /proc so the loop never stalls on it.  It plays both peers of
 * naiberd at once, for N calls:
 *
 *  Twilio side (client): plain TCP to naiberd, WebSocket upgrade of
 *  /outbound-media-stream signed with X-Twilio-Signature (base64
 *  HMAC-SHA1 of STREAM_URL keyed by the auth token), client-masked text
 *  frames: `connected`, `start` (callSid, streamSid, nonce from the calls
 *  file), then one `media` frame every 20 ms, 160 bytes of mu-law whose
 *  first 24 bytes carry a magic, the call index, a sequence number and the
 *  send time (CLOCK_MONOTONIC ns).  Agent audio arriving as `media` is
 *  measured here (agent -> caller latency, gaps, setup time).
 *
 *  ElevenLabs side (server): one plain listener serves
 *  GET /v1/convai/conversation/get-signed-url (answers a ws:// signed URL
 *  back to itself) and the WebSocket /v1/convai/conversation.  It expects
 *  conversation_initiation_client_data first (its user_id names the call:
 *  the driver gives person i the id "bu<i>"), answers
 *  conversation_initiation_metadata (ulaw_8000 both ways) and from then on
 *  sends an `audio` event every 20 ms with the same in-band header.
 *  Every user_audio_chunk is measured (caller -> agent latency, gaps).
 *  Any other HTTP request (e.g. a Twilio REST call naiberd makes when a
 *  call fails) is answered 200 {} and counted.
 *
 * Phases: ramp (calls started at --ramp per second), wait for every setup
 * (bounded), settle, measurement window (--seconds), drain grace, PSS
 * sample with the calls still live, stop (Twilio `stop` + close on every
 * stream), wait for the sockets to close.  Only frames *sent* inside the
 * window count for latency and loss: lost = sent in window - received.
 * Set-up figures cover every call, all of which start during the ramp:
 * upgrade = upgrade request written -> 101 received (kernel receive
 * time), setup = `start` sent -> first agent `media` received.
 * CPU of the server (supervisor + all its children, utime+stime from
 * /proc/PID/stat; reaped children through cutime+cstime) is sampled at
 * the window's edges by the sampler thread; PSS from smaps_rollup.
 * Prints one JSON object on stdout.
 *
 * Usage: loadgen -p NAIBERD_PORT -e EL_PORT -f CALLS_FILE -t AUTH_TOKEN
 *    -u STREAM_URL [-s SECONDS] [-r RAMP_PER_S] [-S SETTLE_S]
 *    [-P SERVER_PID] [-l LABEL] [-T SETUP_TIMEOUT_S] [-q] [-c US]
 *    [-n MAX_CALLS]
 * -c: the loop makes at most one pass per US microseconds (default 500),
 * reading every ready socket in one go; latency uses the kernel's
 * receive timestamps (SO_TIMESTAMPNS), so the pass period does not add
 * to the measured latency.  0: wake on every event.
 * -q: the fake ElevenLabs acknowledges every read at once (TCP_QUICKACK),
 * so a sender without TCP_NODELAY is not held back by Nagle's algorithm
 * waiting for a delayed ACK (the real service gives no such guarantee).
 * CALLS_FILE: one call per line: "callSid streamSid nonce [person]"; line
 * i (from 0) is call index i and its person is "bu<person>" (default
 * "bu<i>"); the fake ElevenLabs finds the call by that person.
 * -f - (follow mode, needs -n): the calls arrive on stdin while the run
 * goes on (the overload level of bench.mjs writes one line per call
 * naiberd admitted); each call is started as soon as its line is read,
 * -r is ignored, and the ramp ends at end of input (at most MAX_CALLS
 * lines; zero calls is a valid run).  Slots: call i sends in tick i % 20.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/eventfd.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define FRAME_NS	20000000ULL	/* 20 ms of audio per frame */
#define TICK_NS		1000000ULL	/* scheduler tick: 1 ms */
#define NSLOTS		20		/* ticks per frame period */
#define AUDIO_BYTES	160
#define HDR_BYTES	24		/* in-band header: 32 base64 chars */
#define B64_AUDIO	216
#define MAGIC0		0x4e		/* 'N' */
#define MAGIC1		0x42		/* 'B' */
#define RBUF_INIT	4096
#define WBUF_MAX	(1U << 20)	/* beyond this a peer is stalled */
#define HEAD_MAX	8192
#define ACCOUNT_SID	"AC00000000000000000000000000000000"
#define GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define SIGNED_URL_REQ	"GET /v1/convai/conversation/get-signed-url?"
#define CONV_REQ	"GET /v1/convai/conversation?"

enum { UP = 0, DOWN = 1 };	/* caller->agent, agent->caller */

enum kind { K_TW, K_ACC, K_EL, K_HTTP, K_LISTEN, K_TIMER, K_SAMPLER,
    K_INPUT };

enum tw_state { TW_IDLE, TW_CONNECTING, TW_UPGRADING, TW_STREAMING,
    TW_STOPPING, TW_CLOSED, TW_FAILED };

enum phase { PH_RAMP, PH_SETUP, PH_SETTLE, PH_WINDOW, PH_DRAIN, PH_PSS,
    PH_STOP, PH_DONE };

struct call;

struct conn {
	int		 fd;
	enum kind	 kind;
	struct call	*call;
	uint8_t		*rb;
	size_t		 rlen, rcap;
	uint8_t		*wb;
	size_t		 wlen, woff, wcap;
	uint8_t		*frag;		/* fragmented message being built */
	size_t		 fraglen, fragcap;
	int		 fragging;
	int		 epout;		/* EPOLLOUT registered */
	int		 closing;	/* close after the output drains */
	int		 close_sent;
	int		 dead;
	size_t		 http_need;	/* K_ACC: bytes of body still to read */
	uint64_t	 t_accept;
};

struct call {
	int		 idx;
	int		 person;	/* user_id "bu<person>" */
	char		 call_sid[48], stream_sid[48], nonce[96];
	struct conn	*tw, *el;
	enum tw_state	 tw_state;
	int		 el_state;	/* 0 none, 1 waiting init, 2 streaming,
					   3 closed */
	int		 tw_slot, el_slot;
	uint64_t	 t_connect, t_upg_sent, t_upgraded, t_start, t_setup;
	uint64_t	 t_el_ready;
	uint64_t	 t_end;
	uint32_t	 seq_sent[2];	/* last frame number sent per direction */
	uint32_t	 exp[2];	/* next expected frame number, 0 unknown */
	uint64_t	 gaps[2], reorder[2], recv[2];
	uint64_t	 sent_win[2], recv_win[2];
	char		 fail[96];
};

struct hist {
	uint32_t	 fine[20000];	/* 1 us buckets, 0..20 ms */
	uint32_t	 coarse[100000];	/* 1 ms buckets, 20 ms..100 s */
	uint64_t	 n, over;
	uint64_t	 max_ns;
	double		 sum_us;
};

/* What the sampler thread measured. */
struct cpu_sample {
	uint64_t	 t_ns;
	double		 sup_s;		/* supervisor utime+stime */
	double		 reaped_s;	/* supervisor cutime+cstime */
	double		 kids_s;	/* live children utime+stime */
	int		 nkids;
	double		 machine_s;	/* all CPUs busy (/proc/stat) */
	double		 self_s;	/* this process (loadgen) */
	int		 ok;
};

struct pss_sample {
	uint64_t	 pss_kib, rss_kib, anon_kib, file_kib, sup_pss_kib;
	int		 procs;
	int		 ok;
	double		 read_ms;
};

/* options */
static int		 o_port, o_el_port, o_seconds = 60, o_settle = 2;
static int		 o_setup_timeout = 15, o_quickack, o_coalesce_us = 500;
static int		 o_max_calls;	/* -n: follow mode's capacity */
static double		 o_ramp = 50;
static const char	*o_file, *o_token, *o_stream_url, *o_label = "";
static pid_t		 o_server_pid;

static struct call	*calls;
static int		 ncalls;
static int		 calls_cap;
static int		 follow, input_eof;	/* -f -: calls from stdin */
static char		 inbuf[4096];
static size_t		 inlen;
static int		*by_person;	/* person -> call index, -1 none */
static int		 nby_person;
static int		*slot_tw[NSLOTS], *slot_el[NSLOTS];
static int		 nslot_tw[NSLOTS], nslot_el[NSLOTS];
static int		 ep;
static enum phase	 phase = PH_RAMP;
static uint64_t		 t0, t_phase, t_win0, t_win1, t_stop;
static uint64_t		 t_ramp_end, t_setup_end;	/* last call started, all set up */
static uint64_t		 tick_done;
static int		 started, live_conns;
static char		 sig_b64[64];
static char		 tmpl_b64[B64_AUDIO + 1];
static struct hist	 hist[2];
static struct hist	 lag;	/* tick lateness inside the window */
static uint64_t		 misrouted[2], bad_msgs, http_signed, http_other;
static uint64_t		 el_unknown, el_dup, wbuf_overflow, ws_errors;
static char		 other_req[3][160];
static uint64_t		 win_frames_late;	/* sends > 1 frame late */
static uint64_t		 skipped_ms, skipped_win_ms;	/* ticks skipped */
static struct rusage	 ru_main[2], ru_self[2];
static uint64_t		 el_conns, tw_refused;

/* sampler thread */
static int		 samp_req[2];	/* pipe main -> sampler */
static int		 samp_done;	/* eventfd sampler -> main */
static struct cpu_sample cpu_s[4];	/* 0 run start, 1 win start,
					   2 win end, 3 run end */
static struct pss_sample pss_s;
static volatile int	 samp_busy;
static long		 clk_tck;

static void	fatal(const char *, ...) __attribute__((format(printf, 1, 2)));

static void
fatal(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	fprintf(stderr, "loadgen: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static inline uint64_t
now_ns(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ base64 */

static const char b64c[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static int8_t b64d[256];

static size_t
b64_enc(const uint8_t *in, size_t n, char *out)
{
	size_t	i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
		    in[i + 2];
		out[o++] = b64c[v >> 18];
		out[o++] = b64c[(v >> 12) & 63];
		out[o++] = b64c[(v >> 6) & 63];
		out[o++] = b64c[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		out[o++] = b64c[v >> 18];
		out[o++] = b64c[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64c[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

/* Exactly 32 chars -> 24 bytes; -1 on a bad character. */
static int
b64_dec32(const char *in, uint8_t *out)
{
	int	i;

	for (i = 0; i < 8; i++) {
		int8_t a = b64d[(uint8_t)in[4 * i]], b = b64d[(uint8_t)in[4 * i + 1]],
		    c = b64d[(uint8_t)in[4 * i + 2]], d = b64d[(uint8_t)in[4 * i + 3]];
		if ((a | b | c | d) < 0)
			return -1;
		uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 |
		    (uint32_t)c << 6 | (uint32_t)d;
		out[3 * i] = v >> 16;
		out[3 * i + 1] = (v >> 8) & 0xff;
		out[3 * i + 2] = v & 0xff;
	}
	return 0;
}

static void
b64_init(void)
{
	uint8_t	audio[AUDIO_BYTES];
	int	i;

	memset(b64d, -1, sizeof(b64d));
	for (i = 0; i < 64; i++)
		b64d[(uint8_t)b64c[i]] = (int8_t)i;
	/* A quiet mu-law pattern after the header (0xff is silence). */
	for (i = 0; i < AUDIO_BYTES; i++)
		audio[i] = (uint8_t)(0xf0 | (i & 0x0f));
	memset(audio, 0, HDR_BYTES);
	b64_enc(audio, AUDIO_BYTES, tmpl_b64);
}

/* The in-band header: magic, direction, call index, frame number, time. */
static void
hdr_encode(char out[32], int dir, uint32_t idx, uint32_t seq, uint64_t ts)
{
	uint8_t	h[HDR_BYTES];

	memset(h, 0, sizeof(h));
	h[0] = MAGIC0;
	h[1] = MAGIC1;
	h[2] = (uint8_t)dir;
	memcpy(h + 4, &idx, 4);
	memcpy(h + 8, &seq, 4);
	memcpy(h + 16, &ts, 8);
	{
		char tmp[40];
		b64_enc(h, HDR_BYTES, tmp);
		memcpy(out, tmp, 32);
	}
}

static int
hdr_decode(const char *b64, int *dir, uint32_t *idx, uint32_t *seq,
    uint64_t *ts)
{
	uint8_t	h[HDR_BYTES];

	if (b64_dec32(b64, h) == -1 || h[0] != MAGIC0 || h[1] != MAGIC1)
		return -1;
	*dir = h[2];
	memcpy(idx, h + 4, 4);
	memcpy(seq, h + 8, 4);
	memcpy(ts, h + 16, 8);
	return 0;
}

/* --------------------------------------------------------- histograms */

static void
hist_add(struct hist *h, uint64_t ns)
{
	uint64_t	us = ns / 1000;

	h->n++;
	h->sum_us += (double)ns / 1000.0;
	if (ns > h->max_ns)
		h->max_ns = ns;
	if (us < 20000)
		h->fine[us]++;
	else if ((us - 20000) / 1000 < 100000)
		h->coarse[(us - 20000) / 1000]++;
	else
		h->over++;
}

/* The value (us) at quantile q; upper edge of the bucket. */
static double
hist_q(const struct hist *h, double q)
{
	uint64_t	want, acc = 0;
	int		i;

	if (h->n == 0)
		return 0;
	want = (uint64_t)(q * (double)h->n);
	if (want >= h->n)
		want = h->n - 1;
	for (i = 0; i < 20000; i++) {
		acc += h->fine[i];
		if (acc > want)
			return i + 1;
	}
	for (i = 0; i < 100000; i++) {
		acc += h->coarse[i];
		if (acc > want)
			return 20000 + (i + 1) * 1000.0;
	}
	return (double)h->max_ns / 1000.0;
}

/* ------------------------------------------------------------ sockets */

static void
ep_mod(struct conn *c, int out)
{
	struct epoll_event	e;

	if (c->epout == out)
		return;
	e.events = EPOLLIN | (out ? EPOLLOUT : 0);
	e.data.ptr = c;
	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) == -1)
		fatal("epoll_ctl mod: %s", strerror(errno));
	c->epout = out;
}

static struct conn *
conn_new(int fd, enum kind k, struct call *cl, uint32_t events)
{
	struct conn		*c;
	struct epoll_event	 e;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		fatal("out of memory");
	c->fd = fd;
	c->kind = k;
	c->call = cl;
	e.events = events;
	e.data.ptr = c;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == -1)
		fatal("epoll_ctl add: %s", strerror(errno));
	c->epout = (events & EPOLLOUT) != 0;
	if (k == K_TW || k == K_ACC || k == K_EL || k == K_HTTP)
		live_conns++;
	return c;
}

static void	call_conn_gone(struct conn *);

/* Close now; the conn memory is freed at the end of the loop pass. */
static struct conn	*graveyard[65536];
static int		 ngrave;

static void
conn_close(struct conn *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	live_conns--;
	call_conn_gone(c);
	if (ngrave < (int)(sizeof(graveyard) / sizeof(graveyard[0])))
		graveyard[ngrave++] = c;
}

static void
bury(void)
{
	int	i;

	for (i = 0; i < ngrave; i++) {
		free(graveyard[i]->rb);
		free(graveyard[i]->wb);
		free(graveyard[i]->frag);
		free(graveyard[i]);
	}
	ngrave = 0;
}

static void
conn_flush(struct conn *c)
{
	ssize_t	n;

	while (c->woff < c->wlen) {
		n = send(c->fd, c->wb + c->woff, c->wlen - c->woff,
		    MSG_NOSIGNAL);
		if (n > 0) {
			c->woff += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN) {
			ep_mod(c, 1);
			return;
		}
		conn_close(c);
		return;
	}
	c->woff = c->wlen = 0;
	ep_mod(c, 0);
	if (c->closing) {
		shutdown(c->fd, SHUT_WR);
		if (c->kind == K_HTTP)
			conn_close(c);
	}
}

/* Write or queue; returns -1 if the peer is stalled beyond WBUF_MAX. */
static int
conn_write(struct conn *c, const void *buf, size_t len)
{
	ssize_t	n = 0;

	if (c->dead)
		return -1;
	if (c->wlen == 0) {
		n = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (n == (ssize_t)len)
			return 0;
		if (n == -1) {
			if (errno != EAGAIN && errno != EINTR) {
				conn_close(c);
				return -1;
			}
			n = 0;
		}
	}
	if (c->wlen - c->woff + len - (size_t)n > WBUF_MAX) {
		wbuf_overflow++;
		return -1;
	}
	if (c->woff > 0 && c->woff == c->wlen)
		c->woff = c->wlen = 0;
	if (c->wlen + len - (size_t)n > c->wcap) {
		size_t cap = c->wcap ? c->wcap : 4096;
		while (cap < c->wlen + len - (size_t)n)
			cap *= 2;
		if ((c->wb = realloc(c->wb, cap)) == NULL)
			fatal("out of memory");
		c->wcap = cap;
	}
	memcpy(c->wb + c->wlen, (const uint8_t *)buf + n, len - (size_t)n);
	c->wlen += len - (size_t)n;
	ep_mod(c, 1);
	return 0;
}

static void
set_nodelay(int fd)
{
	int	one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* Kernel receive timestamps: arrival time, not our read time. */
	setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
}

/* CLOCK_REALTIME - CLOCK_MONOTONIC, refreshed every tick. */
static int64_t	real_off_ns;

static void
real_off_update(void)
{
	struct timespec	r, m;

	clock_gettime(CLOCK_MONOTONIC, &m);
	clock_gettime(CLOCK_REALTIME, &r);
	real_off_ns = ((int64_t)r.tv_sec - m.tv_sec) * 1000000000LL +
	    (r.tv_nsec - m.tv_nsec);
}

static uint64_t	rx_ts_kernel, rx_ts_user;

/*
 * recv() that also returns when the kernel queued the data (the newest
 * segment read; SO_TIMESTAMPNS, CLOCK_REALTIME, turned into MONOTONIC),
 * so a late read by this loop does not count as relay latency.
 */
static ssize_t
recv_ts(int fd, void *buf, size_t len, uint64_t *ts)
{
	struct msghdr	 mh;
	struct iovec	 iov = { buf, len };
	struct cmsghdr	*cm;
	union {
		char		b[CMSG_SPACE(sizeof(struct timespec)) + 64];
		struct cmsghdr	align;
	}		 ctl;
	ssize_t		 n;

	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl.b;
	mh.msg_controllen = sizeof(ctl.b);
	n = recvmsg(fd, &mh, 0);
	if (n <= 0)
		return n;
	for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET &&
		    cm->cmsg_type == SCM_TIMESTAMPNS) {
			struct timespec t;
			memcpy(&t, CMSG_DATA(cm), sizeof(t));
			*ts = (uint64_t)((int64_t)t.tv_sec * 1000000000LL +
			    t.tv_nsec - real_off_ns);
			rx_ts_kernel++;
			return n;
		}
	*ts = now_ns();
	rx_ts_user++;
	return n;
}

/* ------------------------------------------------------ WebSocket out */

static uint64_t	xs_state = 0x9e3779b97f4a7c15ULL;

static uint32_t
xs32(void)
{
	xs_state ^= xs_state << 13;
	xs_state ^= xs_state >> 7;
	xs_state ^= xs_state << 17;
	return (uint32_t)xs_state;
}

static uint8_t	obuf[256 * 1024];

/* One frame; masked when we are the client (Twilio side). */
static int
ws_send(struct conn *c, int op, const void *data, size_t len, int mask)
{
	uint8_t		*p = obuf;
	size_t		 h = 2, i;
	uint32_t	 key;
	uint8_t		 k[4];

	if (len + 14 > sizeof(obuf))
		return -1;
	p[0] = (uint8_t)(0x80 | op);
	if (len < 126)
		p[1] = (uint8_t)len;
	else if (len < 65536) {
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
	if (mask) {
		p[1] |= 0x80;
		key = xs32() | 1;
		memcpy(k, &key, 4);
		memcpy(p + h, k, 4);
		h += 4;
		for (i = 0; i < len; i++)
			p[h + i] = ((const uint8_t *)data)[i] ^ k[i & 3];
	} else
		memcpy(p + h, data, len);
	return conn_write(c, p, h + len);
}

static int
ws_text(struct conn *c, const char *s, size_t len)
{
	return ws_send(c, 1, s, len, c->kind == K_TW);
}

static void
ws_close_frame(struct conn *c, uint16_t code)
{
	uint8_t	b[2] = { (uint8_t)(code >> 8), (uint8_t)code };

	if (c->close_sent || c->dead)
		return;
	c->close_sent = 1;
	(void)ws_send(c, 8, b, 2, c->kind == K_TW);
}

/* ------------------------------------------------------------- calls */

static void
call_fail(struct call *cl, const char *why)
{
	if (cl->fail[0] == '\0')
		snprintf(cl->fail, sizeof(cl->fail), "%s", why);
	if (cl->tw_state < TW_STOPPING)
		cl->tw_state = TW_FAILED;
}

static void
call_conn_gone(struct conn *c)
{
	struct call	*cl = c->call;

	if (cl == NULL)
		return;
	if (c->kind == K_TW && cl->tw == c) {
		cl->tw = NULL;
		if (cl->t_end == 0)
			cl->t_end = now_ns();
		if (cl->tw_state < TW_STOPPING)
			call_fail(cl, cl->tw_state == TW_STREAMING ?
			    "stream closed by naiberd" : "connection lost "
			    "before the upgrade");
		else if (cl->tw_state == TW_STOPPING)
			cl->tw_state = TW_CLOSED;
	} else if (c->kind == K_EL && cl->el == c) {
		cl->el = NULL;
		if (cl->el_state < 3 && phase < PH_STOP && cl->tw_state ==
		    TW_STREAMING)
			call_fail(cl, "naiberd closed the ElevenLabs socket");
		cl->el_state = 3;
	}
}

static void
call_connect(struct call *cl)
{
	struct sockaddr_in	sin;
	int			fd;

	cl->t_connect = now_ns();
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		call_fail(cl, "socket() failed");
		return;
	}
	set_nodelay(fd);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)o_port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 &&
	    errno != EINPROGRESS) {
		close(fd);
		call_fail(cl, "connect() failed");
		return;
	}
	cl->tw = conn_new(fd, K_TW, cl, EPOLLIN | EPOLLOUT);
	cl->tw_state = TW_CONNECTING;
}

static void
tw_send_upgrade(struct call *cl)
{
	char	req[1024], key[32];
	uint8_t	nonce[16];
	int	i, n;

	for (i = 0; i < 16; i++)
		nonce[i] = (uint8_t)xs32();
	b64_enc(nonce, 16, key);
	n = snprintf(req, sizeof(req), "GET /outbound-media-stream HTTP/1.1\r\n"
	    "Host: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
	    "X-Twilio-Signature: %s\r\nUser-Agent: TwilioProxy/1.1\r\n\r\n",
	    o_port, key, sig_b64);
	cl->tw_state = TW_UPGRADING;
	cl->t_upg_sent = now_ns();
	(void)conn_write(cl->tw, req, (size_t)n);
}

static void
tw_send_start(struct call *cl)
{
	char	m[1024];
	int	n;

	n = snprintf(m, sizeof(m), "{\"event\":\"connected\",\"protocol\":"
	    "\"Call\",\"version\":\"1.0.0\"}");
	ws_text(cl->tw, m, (size_t)n);
	n = snprintf(m, sizeof(m), "{\"event\":\"start\",\"sequenceNumber\":"
	    "\"1\",\"streamSid\":\"%s\",\"start\":{\"streamSid\":\"%s\","
	    "\"accountSid\":\"" ACCOUNT_SID "\",\"callSid\":\"%s\","
	    "\"tracks\":[\"inbound\"],\"customParameters\":{\"call_type\":"
	    "\"general\",\"nonce\":\"%s\"},\"mediaFormat\":{\"encoding\":"
	    "\"audio/x-mulaw\",\"sampleRate\":8000,\"channels\":1}}}",
	    cl->stream_sid, cl->stream_sid, cl->call_sid, cl->nonce);
	cl->t_start = now_ns();
	ws_text(cl->tw, m, (size_t)n);
	cl->tw_state = TW_STREAMING;
}

static int
in_window(uint64_t ts)
{
	return t_win0 != 0 && ts >= t_win0 && (t_win1 == 0 || ts < t_win1);
}

/* One 20 ms caller frame, Twilio -> naiberd. */
static void
tw_send_media(struct call *cl)
{
	char		 m[512];
	uint32_t	 seq = ++cl->seq_sent[UP];
	uint64_t	 ts;
	int		 n;

	n = snprintf(m, sizeof(m), "{\"event\":\"media\",\"sequenceNumber\":"
	    "\"%u\",\"streamSid\":\"%s\",\"media\":{\"track\":\"inbound\","
	    "\"chunk\":\"%u\",\"timestamp\":\"%u\",\"payload\":\"", seq + 1,
	    cl->stream_sid, seq, seq * 20);
	memcpy(m + n + 32, tmpl_b64 + 32, B64_AUDIO - 32);
	memcpy(m + n + B64_AUDIO, "\"}}", 3);
	ts = now_ns();
	hdr_encode(m + n, UP, (uint32_t)cl->idx, seq, ts);
	if (ws_text(cl->tw, m, (size_t)n + B64_AUDIO + 3) == 0 &&
	    in_window(ts))
		cl->sent_win[UP]++;
}

/* One 20 ms agent frame, ElevenLabs -> naiberd. */
static void
el_send_audio(struct call *cl)
{
	char		 m[512];
	uint32_t	 seq = ++cl->seq_sent[DOWN];
	uint64_t	 ts;
	int		 n, k;

	n = snprintf(m, sizeof(m), "{\"type\":\"audio\",\"audio_event\":"
	    "{\"audio_base_64\":\"");
	memcpy(m + n + 32, tmpl_b64 + 32, B64_AUDIO - 32);
	k = snprintf(m + n + B64_AUDIO, 64, "\",\"event_id\":%u}}", seq);
	ts = now_ns();
	hdr_encode(m + n, DOWN, (uint32_t)cl->idx, seq, ts);
	if (ws_text(cl->el, m, (size_t)(n + B64_AUDIO + k)) == 0 &&
	    in_window(ts))
		cl->sent_win[DOWN]++;
}

static void
tw_send_stop(struct call *cl)
{
	char	m[512];
	int	n;

	if (cl->tw == NULL || cl->tw_state != TW_STREAMING) {
		if (cl->tw != NULL && cl->tw_state != TW_STOPPING)
			conn_close(cl->tw);
		return;
	}
	n = snprintf(m, sizeof(m), "{\"event\":\"stop\",\"sequenceNumber\":"
	    "\"%u\",\"streamSid\":\"%s\",\"stop\":{\"accountSid\":\""
	    ACCOUNT_SID "\",\"callSid\":\"%s\"}}", cl->seq_sent[UP] + 2,
	    cl->stream_sid, cl->call_sid);
	cl->tw_state = TW_STOPPING;
	ws_text(cl->tw, m, (size_t)n);
	ws_close_frame(cl->tw, 1000);
}

/* A frame with our header arrived at `dir`'s receiving end. */
static void
frame_in(struct call *cl, int dir, const char *b64, size_t avail, uint64_t now)
{
	int		 d;
	uint32_t	 idx, seq;
	uint64_t	 ts;

	if (avail < 32 || hdr_decode(b64, &d, &idx, &seq, &ts) == -1 ||
	    d != dir) {
		bad_msgs++;
		return;
	}
	if ((int)idx != cl->idx) {
		misrouted[dir]++;
		return;
	}
	cl->recv[dir]++;
	if (cl->exp[dir] == 0)
		cl->exp[dir] = seq + 1;
	else if (seq >= cl->exp[dir]) {
		cl->gaps[dir] += seq - cl->exp[dir];
		cl->exp[dir] = seq + 1;
	} else
		cl->reorder[dir]++;
	if (dir == DOWN && cl->t_setup == 0) {
		cl->t_setup = now;
		if (seq != 1)
			cl->gaps[dir] += seq - 1;
	}
	if (in_window(ts)) {
		cl->recv_win[dir]++;
		hist_add(&hist[dir], now > ts ? now - ts : 0);	/* now: the wake-up's */
	}
}

/* ------------------------------------------------------ text messages */

static void
tw_message(struct conn *c, const char *m, size_t len, uint64_t now)
{
	const char	*p;
	static const char key[] = "\"payload\":\"";

	if ((p = memmem(m, len, key, sizeof(key) - 1)) != NULL) {
		p += sizeof(key) - 1;
		frame_in(c->call, DOWN, p, len - (size_t)(p - m), now);
		return;
	}
	/* clear / mark: ignored (counted as nothing). */
	if (memmem(m, len, "\"event\":\"clear\"", 15) == NULL &&
	    memmem(m, len, "\"event\":\"mark\"", 14) == NULL)
		bad_msgs++;
}

static void
el_start(struct conn *c, const char *m, size_t len)
{
	static const char key[] = "\"user_id\":\"bu";
	static const char typ[] =
	    "\"type\":\"conversation_initiation_client_data\"";
	const char	*p;
	char		 meta[512];
	long		 idx;
	int		 n;
	struct call	*cl;

	if (memmem(m, len, typ, sizeof(typ) - 1) == NULL ||
	    (p = memmem(m, len, key, sizeof(key) - 1)) == NULL) {
		el_unknown++;
		ws_close_frame(c, 1008);
		c->closing = 1;
		return;
	}
	idx = strtol(p + sizeof(key) - 1, NULL, 10);
	if (idx < 0 || idx >= nby_person || by_person[idx] < 0) {
		el_unknown++;
		ws_close_frame(c, 1008);
		return;
	}
	cl = &calls[by_person[idx]];
	idx = cl->idx;
	if (cl->el != NULL) {
		el_dup++;
		ws_close_frame(c, 1008);
		return;
	}
	c->call = cl;
	cl->el = c;
	cl->el_state = 2;
	cl->t_el_ready = now_ns();
	n = snprintf(meta, sizeof(meta), "{\"type\":"
	    "\"conversation_initiation_metadata\","
	    "\"conversation_initiation_metadata_event\":{\"conversation_id\":"
	    "\"conv_%s_%ld_%08x\",\"agent_output_audio_format\":\"ulaw_8000\","
	    "\"user_input_audio_format\":\"ulaw_8000\"}}", o_label[0] ?
	    o_label : "b", idx, xs32());
	ws_text(c, meta, (size_t)n);
	/* The agent speaks at once (the first message): first frame now. */
	el_send_audio(cl);
}

static void
el_message(struct conn *c, const char *m, size_t len, uint64_t now)
{
	static const char key[] = "{\"user_audio_chunk\":\"";

	if (c->call == NULL) {
		el_start(c, m, len);
		return;
	}
	if (len > sizeof(key) - 1 && memcmp(m, key, sizeof(key) - 1) == 0) {
		frame_in(c->call, UP, m + sizeof(key) - 1,
		    len - (sizeof(key) - 1), now);
		return;
	}
	/* pong or anything else: not expected, counted. */
	bad_msgs++;
}

/* ------------------------------------------------------ frame parsing */

static void
ws_message(struct conn *c, int op, uint8_t *p, size_t len, uint64_t now)
{
	if (op == 1) {
		if (c->kind == K_TW)
			tw_message(c, (const char *)p, len, now);
		else
			el_message(c, (const char *)p, len, now);
	} else
		bad_msgs++;	/* binary */
}

/* Parse whole frames from c->rb; returns -1 on a protocol error. */
static int
ws_input(struct conn *c, uint64_t now)
{
	size_t		 off = 0;
	int		 masked_in = (c->kind == K_EL);

	while (!c->dead) {
		uint8_t		*p = c->rb + off;
		size_t		 avail = c->rlen - off, h = 2, i;
		uint64_t	 len;
		int		 fin, op, masked;
		uint8_t		 k[4];

		if (avail < 2)
			break;
		fin = p[0] & 0x80;
		op = p[0] & 0x0f;
		masked = (p[1] & 0x80) != 0;
		len = p[1] & 0x7f;
		if (len == 126) {
			if (avail < 4)
				break;
			len = (uint64_t)p[2] << 8 | p[3];
			h = 4;
		} else if (len == 127) {
			if (avail < 10)
				break;
			len = 0;
			for (i = 0; i < 8; i++)
				len = len << 8 | p[2 + i];
			h = 10;
		}
		if (masked != masked_in || len > (64ULL << 20))
			return -1;
		if (masked) {
			if (avail < h + 4)
				break;
			memcpy(k, p + h, 4);
			h += 4;
		}
		if (avail < h + len)
			break;
		if (masked)
			for (i = 0; i < len; i++)
				p[h + i] ^= k[i & 3];
		off += h + (size_t)len;
		if (op >= 8) {
			if (op == 8) {		/* close: answer, then go */
				uint16_t code = len >= 2 ?
				    (uint16_t)(p[h] << 8 | p[h + 1]) : 1005;
				ws_close_frame(c, code == 1005 ? 1000 : code);
				c->closing = 1;
				if (c->wlen == 0)
					shutdown(c->fd, SHUT_WR);
				if (c->kind == K_EL && c->call != NULL &&
				    c->call->el_state == 2)
					c->call->el_state = 3;
			} else if (op == 9)
				(void)ws_send(c, 10, p + h, (size_t)len,
				    c->kind == K_TW);
			continue;
		}
		if (op != 0 && !c->fragging && fin) {
			ws_message(c, op, p + h, (size_t)len, now);
			continue;
		}
		/* Fragments: gather. */
		if (op != 0) {
			c->fragging = op;
			c->fraglen = 0;
		} else if (!c->fragging)
			return -1;
		if (c->fraglen + len > c->fragcap) {
			size_t cap = c->fragcap ? c->fragcap : 4096;
			while (cap < c->fraglen + len)
				cap *= 2;
			if ((c->frag = realloc(c->frag, cap)) == NULL)
				fatal("out of memory");
			c->fragcap = cap;
		}
		memcpy(c->frag + c->fraglen, p + h, (size_t)len);
		c->fraglen += (size_t)len;
		if (fin) {
			ws_message(c, c->fragging, c->frag, c->fraglen, now);
			c->fragging = 0;
		}
	}
	if (off > 0 && !c->dead) {
		memmove(c->rb, c->rb + off, c->rlen - off);
		c->rlen -= off;
	}
	return 0;
}

/* --------------------------------------------------- HTTP: the EL side */

static void
http_reply(struct conn *c, int status, const char *ctype, const char *body)
{
	char	buf[2048];
	int	n;

	n = snprintf(buf, sizeof(buf), "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", status,
	    status == 200 ? "OK" : "Not Found", ctype, strlen(body), body);
	c->kind = K_HTTP;
	c->closing = 1;
	(void)conn_write(c, buf, (size_t)n);
	if (!c->dead && c->wlen == 0) {
		shutdown(c->fd, SHUT_WR);
		conn_close(c);
	}
}

static const char *
hdr_find(const char *head, const char *name)
{
	const char	*p = head;
	size_t		 nl = strlen(name);

	while ((p = strchr(p, '\n')) != NULL) {
		p++;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			p += nl + 1;
			while (*p == ' ' || *p == '\t')
				p++;
			return p;
		}
	}
	return NULL;
}

static void
accept_key(const char *key, size_t klen, char out[32])
{
	uint8_t		md[EVP_MAX_MD_SIZE];
	char		buf[256];
	unsigned int	mdlen = 0;

	if (klen > sizeof(buf) - sizeof(GUID))
		klen = sizeof(buf) - sizeof(GUID);
	memcpy(buf, key, klen);
	memcpy(buf + klen, GUID, sizeof(GUID) - 1);
	EVP_Digest(buf, klen + sizeof(GUID) - 1, md, &mdlen, EVP_sha1(), NULL);
	b64_enc(md, mdlen, out);
}

/* A request head arrived on the EL listener. */
static void
acc_input(struct conn *c)
{
	char		*head, *e, line[160];
	const char	*k, *cl;
	size_t		 hl;
	char		 acc[32], resp[256], body[512];
	int		 n;

	if (c->http_need > 0) {		/* swallowing a body */
		if (c->rlen < c->http_need)
			return;
		c->rlen = 0;
		c->http_need = 0;
		http_reply(c, 200, "application/json",
		    "{\"sid\":\"CA00000000000000000000000000000000\","
		    "\"status\":\"completed\"}");
		return;
	}
	if ((e = memmem(c->rb, c->rlen, "\r\n\r\n", 4)) == NULL) {
		if (c->rlen > HEAD_MAX)
			conn_close(c);
		return;
	}
	hl = (size_t)(e - (char *)c->rb) + 4;
	head = (char *)c->rb;
	head[hl - 2] = '\0';
	snprintf(line, sizeof(line), "%.*s", (int)strcspn(head, "\r\n"), head);
	if (strncmp(head, SIGNED_URL_REQ, sizeof(SIGNED_URL_REQ) - 1) == 0) {
		http_signed++;
		snprintf(body, sizeof(body), "{\"signed_url\":\"ws://127.0.0.1:"
		    "%d/v1/convai/conversation?agent_id=agent_bench&token="
		    "tk%08x\"}", o_el_port, xs32());
		c->rlen = 0;
		http_reply(c, 200, "application/json", body);
		return;
	}
	if (strncmp(head, CONV_REQ, sizeof(CONV_REQ) - 1) == 0 &&
	    (k = hdr_find(head, "Sec-WebSocket-Key")) != NULL) {
		size_t kl = strcspn(k, "\r\n ");
		accept_key(k, kl, acc);
		n = snprintf(resp, sizeof(resp), "HTTP/1.1 101 Switching "
		    "Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Accept: %s\r\n\r\n", acc);
		memmove(c->rb, c->rb + hl, c->rlen - hl);
		c->rlen -= hl;
		c->kind = K_EL;
		el_conns++;
		(void)conn_write(c, resp, (size_t)n);
		return;
	}
	/* Anything else (Twilio REST on a failing call): 200, counted. */
	if (http_other < 3)
		snprintf(other_req[http_other], sizeof(other_req[0]), "%s",
		    line);
	http_other++;
	cl = hdr_find(head, "Content-Length");
	memmove(c->rb, c->rb + hl, c->rlen - hl);
	c->rlen -= hl;
	if (cl != NULL && strtoul(cl, NULL, 10) > c->rlen) {
		c->http_need = strtoul(cl, NULL, 10);
		return;
	}
	c->rlen = 0;
	http_reply(c, 200, "application/json",
	    "{\"sid\":\"CA00000000000000000000000000000000\","
	    "\"status\":\"completed\"}");
}

/* The 101 from naiberd on a Twilio stream; now: its kernel receive time. */
static void
tw_upgrade_input(struct conn *c, uint64_t now)
{
	struct call	*cl = c->call;
	uint8_t		*e;
	size_t		 hl;
	char		 line[80];

	if ((e = memmem(c->rb, c->rlen, "\r\n\r\n", 4)) == NULL) {
		if (c->rlen > HEAD_MAX) {
			call_fail(cl, "oversized upgrade answer");
			conn_close(c);
		}
		return;
	}
	hl = (size_t)(e - c->rb) + 4;
	if (c->rlen < 12 || memcmp(c->rb, "HTTP/1.1 101", 12) != 0) {
		snprintf(line, sizeof(line), "upgrade answered: %.40s",
		    (char *)c->rb);
		line[strcspn(line, "\r\n")] = '\0';
		call_fail(cl, line);
		tw_refused++;
		conn_close(c);
		return;
	}
	memmove(c->rb, c->rb + hl, c->rlen - hl);
	c->rlen -= hl;
	cl->t_upgraded = now;
	tw_send_start(cl);
}

/* -------------------------------------------------------------- input */

static void
conn_read(struct conn *c, uint64_t now)
{
	ssize_t	n;

	for (;;) {
		if (c->rcap - c->rlen < 2048) {
			size_t cap = c->rcap ? c->rcap * 2 : RBUF_INIT;
			if (cap > (80U << 20)) {
				conn_close(c);
				return;
			}
			if ((c->rb = realloc(c->rb, cap)) == NULL)
				fatal("out of memory");
			c->rcap = cap;
		}
		n = recv_ts(c->fd, c->rb + c->rlen, c->rcap - c->rlen - 1,
		    &now);
		if (n > 0) {
			c->rlen += (size_t)n;
			c->rb[c->rlen] = '\0';
			switch (c->kind) {
			case K_TW:
				if (c->call->tw_state == TW_UPGRADING)
					tw_upgrade_input(c, now);
				if (!c->dead && c->call->tw_state >=
				    TW_STREAMING && ws_input(c, now) == -1) {
					ws_errors++;
					call_fail(c->call, "bad WebSocket "
					    "framing from naiberd");
					conn_close(c);
				}
				break;
			case K_ACC:
				acc_input(c);
				if (!c->dead && c->kind == K_EL && c->rlen > 0
				    && ws_input(c, now) == -1) {
					ws_errors++;
					conn_close(c);
				}
				break;
			case K_EL:
				if (o_quickack) {
					int one = 1;
					setsockopt(c->fd, IPPROTO_TCP,
					    TCP_QUICKACK, &one, sizeof(one));
				}
				if (ws_input(c, now) == -1) {
					ws_errors++;
					conn_close(c);
				}
				break;
			case K_HTTP:
				c->rlen = 0;
				break;
			default:
				break;
			}
			if (c->dead)
				return;
			if ((size_t)n < c->rcap - c->rlen - 1)
				return;		/* drained */
			continue;
		}
		if (n == 0) {
			conn_close(c);
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			conn_close(c);
		return;
	}
}

static void
listen_accept(struct conn *l)
{
	int	fd;

	for (;;) {
		fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR)
				continue;
			return;
		}
		set_nodelay(fd);
		conn_new(fd, K_ACC, NULL, EPOLLIN)->t_accept = now_ns();
	}
}

/* ------------------------------------------------------------ sampler */

static int
read_file(const char *path, char *buf, size_t cap)
{
	int	fd;
	ssize_t	n, off = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	while ((size_t)off < cap - 1 &&
	    (n = read(fd, buf + off, cap - 1 - (size_t)off)) > 0)
		off += n;
	close(fd);
	buf[off] = '\0';
	return (int)off;
}

/* utime+stime (and cutime+cstime) in seconds from /proc/PID/stat. */
static int
proc_cpu(pid_t pid, double *self, double *reaped)
{
	char	path[64], buf[1024], *p;
	unsigned long long ut, st;
	long long cut, cst;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_file(path, buf, sizeof(buf)) <= 0 ||
	    (p = strrchr(buf, ')')) == NULL)
		return -1;
	/* fields after ")": 3 state ... 14 utime 15 stime 16 cutime 17 cstime */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
	    "%lld %lld", &ut, &st, &cut, &cst) != 4)
		return -1;
	*self = (double)(ut + st) / (double)clk_tck;
	if (reaped != NULL)
		*reaped = (double)(cut + cst) / (double)clk_tck;
	return 0;
}

/* The supervisor's children (its threads' children lists). */
static int
proc_children(pid_t pid, pid_t *out, int cap)
{
	char		 path[320], *buf, *p, *e;
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	if ((buf = malloc(1 << 20)) == NULL)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if ((d = opendir(path)) == NULL) {
		free(buf);
		return 0;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/children",
		    (int)pid, de->d_name);
		if (read_file(path, buf, 1 << 20) <= 0)
			continue;
		for (p = buf; *p; p = e) {
			long v = strtol(p, &e, 10);
			if (e == p)
				break;
			if (n < cap)
				out[n++] = (pid_t)v;
		}
	}
	closedir(d);
	free(buf);
	return n;
}

static pid_t	kids[65536];

/* Busy time of all CPUs: user+nice+system+irq+softirq+steal. */
static double
machine_busy_s(void)
{
	char			buf[512];
	unsigned long long	v[8];

	if (read_file("/proc/stat", buf, sizeof(buf)) <= 0 ||
	    sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
	    &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) != 8)
		return 0;
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) /
	    (double)clk_tck;
}

static void
sample_cpu(struct cpu_sample *s)
{
	int		i, n;
	double		c;
	struct rusage	ru;

	memset(s, 0, sizeof(*s));
	if (o_server_pid <= 0)
		return;
	s->t_ns = now_ns();
	s->machine_s = machine_busy_s();
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		s->self_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec
		    + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
	if (proc_cpu(o_server_pid, &s->sup_s, &s->reaped_s) == -1)
		return;
	n = proc_children(o_server_pid, kids, 65536);
	for (i = 0; i < n; i++)
		if (proc_cpu(kids[i], &c, NULL) == 0) {
			s->kids_s += c;
			s->nkids++;
		}
	/* The reaped total again: a child reaped meanwhile is not lost. */
	{
		double sup2, reaped2;
		if (proc_cpu(o_server_pid, &sup2, &reaped2) == 0) {
			s->sup_s = sup2;
			s->reaped_s = reaped2;
		}
	}
	s->t_ns = (s->t_ns + now_ns()) / 2;
	s->ok = 1;
}

static int
smaps_kib(pid_t pid, uint64_t *pss, uint64_t *rss, uint64_t *anon,
    uint64_t *file)
{
	char		 path[64], buf[4096], *p;
	unsigned long long v;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	if (read_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	*pss = *rss = *anon = *file = 0;
	if ((p = strstr(buf, "\nRss:")) && sscanf(p + 5, "%llu", &v) == 1)
		*rss = v;
	if ((p = strstr(buf, "\nPss:")) && sscanf(p + 5, "%llu", &v) == 1)
		*pss = v;
	if ((p = strstr(buf, "\nPss_Anon:")) && sscanf(p + 10, "%llu", &v) == 1)
		*anon = v;
	if ((p = strstr(buf, "\nPss_File:")) && sscanf(p + 10, "%llu", &v) == 1)
		*file = v;
	return 0;
}

static void
sample_pss(struct pss_sample *s)
{
	uint64_t	t = now_ns(), a, b, c, d;
	int		i, n;

	memset(s, 0, sizeof(*s));
	if (o_server_pid <= 0)
		return;
	if (smaps_kib(o_server_pid, &a, &b, &c, &d) == -1)
		return;
	s->pss_kib = s->sup_pss_kib = a;
	s->rss_kib = b;
	s->anon_kib = c;
	s->file_kib = d;
	s->procs = 1;
	n = proc_children(o_server_pid, kids, 65536);
	for (i = 0; i < n; i++)
		if (smaps_kib(kids[i], &a, &b, &c, &d) == 0) {
			s->pss_kib += a;
			s->rss_kib += b;
			s->anon_kib += c;
			s->file_kib += d;
			s->procs++;
		}
	s->read_ms = (double)(now_ns() - t) / 1e6;
	s->ok = 1;
}

static void *
sampler_main(void *arg)
{
	char		cmd;
	uint64_t	one = 1;

	(void)arg;
	while (read(samp_req[0], &cmd, 1) == 1) {
		if (cmd >= '0' && cmd <= '3')
			sample_cpu(&cpu_s[cmd - '0']);
		else if (cmd == 'p')
			sample_pss(&pss_s);
		else if (cmd == 'q')
			break;
		if (write(samp_done, &one, sizeof(one)) != sizeof(one))
			break;
	}
	return NULL;
}

static void
sampler_ask(char cmd)
{
	samp_busy = 1;
	if (write(samp_req[1], &cmd, 1) != 1)
		fatal("sampler pipe: %s", strerror(errno));
}

/* ------------------------------------------------------------- phases */

static int
all_set_up(void)
{
	int	i;

	for (i = 0; i < ncalls; i++)
		if (calls[i].tw_state != TW_FAILED && calls[i].t_setup == 0)
			return 0;
	return 1;
}

static uint64_t	drain_ms;

/* Window frames sent but not (yet) received, both directions. */
static uint64_t
window_outstanding(void)
{
	uint64_t	n = 0;
	int		i, d;

	for (i = 0; i < ncalls; i++)
		for (d = 0; d < 2; d++)
			if (calls[i].sent_win[d] > calls[i].recv_win[d])
				n += calls[i].sent_win[d] - calls[i].recv_win[d];
	return n;
}

static void
set_phase(enum phase p, uint64_t now)
{
	phase = p;
	t_phase = now;
	fprintf(stderr, "loadgen[%s]: t=%.1fs phase %d\n", o_label,
	    (double)(now - t0) / 1e9, (int)p);
}

static void
tick(uint64_t now)
{
	uint64_t	cur = (now - t0) / TICK_NS;
	int		i, s;

	real_off_update();

	/* Follow mode: start each call as soon as its line was read. */
	if (phase == PH_RAMP && follow) {
		while (started < ncalls)
			call_connect(&calls[started++]);
		if (input_eof) {
			t_ramp_end = now;
			set_phase(PH_SETUP, now);
		}
	}
	/* Ramp: start calls at o_ramp per second. */
	if (phase == PH_RAMP && !follow) {
		int want = (int)((double)(now - t0) / 1e9 * o_ramp) + 1;
		if (want > ncalls)
			want = ncalls;
		while (started < want)
			call_connect(&calls[started++]);
		if (started == ncalls) {
			t_ramp_end = now;
			set_phase(PH_SETUP, now);
		}
	}
	if (phase < PH_STOP) {
		/*
		 * More than two frame periods behind (the machine is
		 * saturated): skip the missed ticks rather than burst, so the
		 * peers stay real-time; the frames are never sent (no gap in
		 * the sequence numbers) and the skip is reported.
		 */
		if (cur > tick_done + 2 * NSLOTS) {
			uint64_t skip = cur - 2 * NSLOTS - tick_done;
			skip -= skip % NSLOTS;	/* keep the slot phase */
			tick_done += skip;
			skipped_ms += skip;
			if (phase == PH_WINDOW)
				skipped_win_ms += skip;
		}
		while (tick_done <= cur) {
			uint64_t due = t0 + tick_done * TICK_NS;
			s = (int)(tick_done % NSLOTS);
			if (phase == PH_WINDOW) {
				hist_add(&lag, now > due ? now - due : 0);
				if (now - due > FRAME_NS)
					win_frames_late++;
			}
			for (i = 0; i < nslot_tw[s]; i++) {
				struct call *cl = &calls[slot_tw[s][i]];
				if (cl->tw_state == TW_STREAMING &&
				    cl->tw != NULL)
					tw_send_media(cl);
			}
			for (i = 0; i < nslot_el[s]; i++) {
				struct call *cl = &calls[slot_el[s][i]];
				if (cl->el_state == 2 && cl->el != NULL &&
				    !cl->el->closing)
					el_send_audio(cl);
			}
			tick_done++;
		}
	} else
		tick_done = cur + 1;

	switch (phase) {
	case PH_SETUP:
		if (all_set_up() || now - t_phase > (uint64_t)o_setup_timeout *
		    1000000000ULL) {
			t_setup_end = now;
			set_phase(PH_SETTLE, now);
		}
		break;
	case PH_SETTLE:
		if (now - t_phase >= (uint64_t)o_settle * 1000000000ULL &&
		    !samp_busy) {
			set_phase(PH_WINDOW, now);
			t_win0 = now_ns();	/* after this tick's sends */
			getrusage(RUSAGE_THREAD, &ru_main[0]);
			getrusage(RUSAGE_SELF, &ru_self[0]);
			sampler_ask('1');
		}
		break;
	case PH_WINDOW:
		if (now - t_win0 >= (uint64_t)o_seconds * 1000000000ULL &&
		    !samp_busy) {
			t_win1 = now_ns();
			getrusage(RUSAGE_THREAD, &ru_main[1]);
			getrusage(RUSAGE_SELF, &ru_self[1]);
			sampler_ask('2');
			set_phase(PH_DRAIN, now);
		}
		break;
	case PH_DRAIN:
		/*
		 * In-flight window frames get at least 1 s, and up to 10 s
		 * while some are still missing, so `lost` means lost (or
		 * later than 10 s), not merely late.
		 */
		if (now - t_phase >= 1000000000ULL && !samp_busy &&
		    (now - t_phase >= 10000000000ULL || window_outstanding() == 0)) {
			drain_ms = (now - t_phase) / 1000000;
			sampler_ask('p');
			set_phase(PH_PSS, now);
		}
		break;
	case PH_PSS:
		if (!samp_busy) {
			set_phase(PH_STOP, now);
			t_stop = now;
			for (i = 0; i < ncalls; i++)
				tw_send_stop(&calls[i]);
		}
		break;
	case PH_STOP:
		if (live_conns == 0 || now - t_stop > 15000000000ULL) {
			if (!samp_busy) {
				sampler_ask('3');
				set_phase(PH_DONE, now);
			}
		}
		break;
	default:
		break;
	}
}

/* ------------------------------------------------------------- output */

static double
tv_s(const struct timeval *tv)
{
	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static double
ru_cpu(const struct rusage *r)
{
	return tv_s(&r->ru_utime) + tv_s(&r->ru_stime);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double
pct_ms(uint64_t *v, int n, double q)
{
	int	i;

	if (n == 0)
		return 0;
	i = (int)(q * n);
	if (i >= n)
		i = n - 1;
	return (double)v[i] / 1e6;
}

static void
json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		if ((unsigned char)*s < 0x20)
			fputc(' ', f);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

static void
report(void)
{
	uint64_t	*setup, *upg, *cupg, sent[2] = { 0, 0 }, rcv[2] = { 0, 0 };
	uint64_t	 gaps[2] = { 0, 0 }, reord[2] = { 0, 0 }, tot[2] = {0, 0};
	int		 i, d, nset = 0, nupg = 0, ncupg = 0, failed = 0;
	double		 win_s, srv, sup, call_min = 0, tot_srv = 0;
	FILE		*f = stdout;
	static const char *dn[2] = { "up", "down" };
	/* distinct failure reasons */
	char		 reasons[8][96];
	int		 rcount[8], nr = 0;

	setup = calloc((size_t)ncalls + 1, sizeof(*setup));
	upg = calloc((size_t)ncalls + 1, sizeof(*upg));
	cupg = calloc((size_t)ncalls + 1, sizeof(*cupg));
	for (i = 0; i < ncalls; i++) {
		struct call *cl = &calls[i];
		if (cl->t_setup && cl->t_start)
			setup[nset++] = cl->t_setup - cl->t_start;
		/* upgrade round trip: request written -> 101 received */
		if (cl->t_upgraded && cl->t_upg_sent)
			upg[nupg++] = cl->t_upgraded > cl->t_upg_sent ?
			    cl->t_upgraded - cl->t_upg_sent : 0;
		if (cl->t_upgraded && cl->t_connect)
			cupg[ncupg++] = cl->t_upgraded - cl->t_connect;
		if (cl->fail[0] && (cl->t_setup == 0 || cl->t_end < t_stop)) {
			int j;
			failed++;
			for (j = 0; j < nr; j++)
				if (strcmp(reasons[j], cl->fail) == 0)
					break;
			if (j == nr && nr < 8) {
				snprintf(reasons[nr], sizeof(reasons[0]), "%s",
				    cl->fail);
				rcount[nr++] = 0;
			}
			if (j < nr)
				rcount[j]++;
		}
		if (cl->t_start) {
			uint64_t end = cl->t_end ? cl->t_end : now_ns();
			call_min += (double)(end - cl->t_start) / 60e9;
		}
		for (d = 0; d < 2; d++) {
			sent[d] += cl->sent_win[d];
			rcv[d] += cl->recv_win[d];
			gaps[d] += cl->gaps[d];
			reord[d] += cl->reorder[d];
			tot[d] += cl->recv[d];
		}
	}
	qsort(setup, (size_t)nset, sizeof(*setup), cmp_u64);
	qsort(upg, (size_t)nupg, sizeof(*upg), cmp_u64);
	qsort(cupg, (size_t)ncupg, sizeof(*cupg), cmp_u64);
	win_s = (double)(t_win1 - t_win0) / 1e9;

	fprintf(f, "{\"label\":");
	json_str(f, o_label);
	fprintf(f, ",\"calls\":%d,\"set_up\":%d,\"failed\":%d", ncalls, nset,
	    failed);
	fprintf(f, ",\"fail_reasons\":{");
	for (i = 0; i < nr; i++) {
		if (i)
			fputc(',', f);
		json_str(f, reasons[i]);
		fprintf(f, ":%d", rcount[i]);
	}
	fprintf(f, "},\"ramp_per_s\":%.1f,\"window_s\":%.3f,\"drain_ms\":%" PRIu64,
	    o_ramp, win_s, drain_ms);
	for (d = 0; d < 2; d++) {
		const struct hist *h = &hist[d];
		fprintf(f, ",\"%s\":{\"sent\":%" PRIu64 ",\"received\":%" PRIu64
		    ",\"lost\":%" PRId64 ",\"p50_us\":%.0f,\"p90_us\":%.0f,"
		    "\"p99_us\":%.0f,\"p999_us\":%.0f,\"max_us\":%.0f,"
		    "\"mean_us\":%.1f,\"gaps_after_setup\":%" PRIu64
		    ",\"reordered\":%" PRIu64 ",\"misrouted\":%" PRIu64
		    ",\"frames_total\":%" PRIu64 "}", dn[d], sent[d], rcv[d],
		    (int64_t)sent[d] - (int64_t)rcv[d], hist_q(h, .5),
		    hist_q(h, .9), hist_q(h, .99), hist_q(h, .999),
		    (double)h->max_ns / 1000.0, h->n ? h->sum_us / (double)h->n :
		    0, gaps[d], reord[d], misrouted[d], tot[d]);
	}
	/*
	 * Every call is started during the ramp, so these cover the ramp's
	 * set-ups (while the calls already up relay audio).
	 */
	fprintf(f, ",\"ramp_s\":%.2f,\"setup_phase_s\":%.2f",
	    t_ramp_end ? (double)(t_ramp_end - t0) / 1e9 : 0,
	    t_setup_end && t_ramp_end ? (double)(t_setup_end - t_ramp_end) /
	    1e9 : 0);
	fprintf(f, ",\"setup_ms\":{\"n\":%d,\"p50\":%.2f,\"p99\":%.2f,"
	    "\"max\":%.2f},\"upgrade_ms\":{\"n\":%d,\"p50\":%.3f,"
	    "\"p99\":%.3f,\"max\":%.3f},\"connect_upgrade_ms\":{\"p50\":%.3f,"
	    "\"p99\":%.3f,\"max\":%.3f}", nset, pct_ms(setup, nset, .5),
	    pct_ms(setup, nset, .99), nset ? (double)setup[nset - 1] / 1e6 : 0,
	    nupg, pct_ms(upg, nupg, .5), pct_ms(upg, nupg, .99),
	    nupg ? (double)upg[nupg - 1] / 1e6 : 0,
	    pct_ms(cupg, ncupg, .5), pct_ms(cupg, ncupg, .99),
	    ncupg ? (double)cupg[ncupg - 1] / 1e6 : 0);
	if (cpu_s[1].ok && cpu_s[2].ok) {
		double cw = (double)(cpu_s[2].t_ns - cpu_s[1].t_ns) / 1e9;
		sup = cpu_s[2].sup_s - cpu_s[1].sup_s;
		srv = (cpu_s[2].sup_s + cpu_s[2].reaped_s + cpu_s[2].kids_s) -
		    (cpu_s[1].sup_s + cpu_s[1].reaped_s + cpu_s[1].kids_s);
		fprintf(f, ",\"cpu\":{\"window_s\":%.3f,\"server_s\":%.3f,"
		    "\"supervisor_s\":%.3f,\"workers_s\":%.3f,"
		    "\"server_cores\":%.3f,\"per_call_minute_s\":%.5f,"
		    "\"procs\":%d,\"machine_busy_cores\":%.3f,"
		    "\"loadgen_cores\":%.3f,\"other_cores\":%.3f", cw, srv,
		    sup, srv - sup, srv / cw,
		    ncalls ? srv / ((double)ncalls * cw / 60.0) : 0,
		    cpu_s[2].nkids + 1,
		    (cpu_s[2].machine_s - cpu_s[1].machine_s) / cw,
		    (cpu_s[2].self_s - cpu_s[1].self_s) / cw,
		    (cpu_s[2].machine_s - cpu_s[1].machine_s - srv -
		    (cpu_s[2].self_s - cpu_s[1].self_s)) / cw);
		if (cpu_s[0].ok && cpu_s[3].ok) {
			tot_srv = (cpu_s[3].sup_s + cpu_s[3].reaped_s +
			    cpu_s[3].kids_s) - (cpu_s[0].sup_s +
			    cpu_s[0].reaped_s + cpu_s[0].kids_s);
			fprintf(f, ",\"run_server_s\":%.3f,\"run_call_minutes\":"
			    "%.3f,\"run_per_call_minute_s\":%.5f", tot_srv,
			    call_min, call_min > 0 ? tot_srv / call_min : 0);
		}
		fputc('}', f);
	}
	if (pss_s.ok)
		fprintf(f, ",\"pss\":{\"procs\":%d,\"total_kib\":%" PRIu64
		    ",\"per_call_kib\":%.1f,\"supervisor_kib\":%" PRIu64
		    ",\"anon_kib\":%" PRIu64 ",\"file_kib\":%" PRIu64
		    ",\"rss_total_kib\":%" PRIu64 ",\"read_ms\":%.1f}",
		    pss_s.procs, pss_s.pss_kib, ncalls ? (double)pss_s.pss_kib /
		    ncalls : 0, pss_s.sup_pss_kib, pss_s.anon_kib,
		    pss_s.file_kib, pss_s.rss_kib, pss_s.read_ms);
	{
		double m = ru_cpu(&ru_main[1]) - ru_cpu(&ru_main[0]);
		double a = ru_cpu(&ru_self[1]) - ru_cpu(&ru_self[0]);
		fprintf(f, ",\"loadgen\":{\"main_cpu_pct\":%.1f,"
		    "\"process_cpu_pct\":%.1f,\"tick_lag_p50_us\":%.0f,"
		    "\"tick_lag_p99_us\":%.0f,\"tick_lag_max_us\":%.0f,"
		    "\"ticks_late_20ms\":%" PRIu64 ",\"skipped_ms\":%" PRIu64
		    ",\"skipped_window_ms\":%" PRIu64 ",\"vol_ctxsw\":%ld,"
		    "\"invol_ctxsw\":%ld}", win_s > 0 ? 100 * m / win_s : 0,
		    win_s > 0 ? 100 * a / win_s : 0, hist_q(&lag, .5),
		    hist_q(&lag, .99), (double)lag.max_ns / 1000.0,
		    win_frames_late, skipped_ms, skipped_win_ms,
		    ru_main[1].ru_nvcsw - ru_main[0].ru_nvcsw,
		    ru_main[1].ru_nivcsw - ru_main[0].ru_nivcsw);
	}
	fprintf(f, ",\"el\":{\"signed_url_requests\":%" PRIu64 ",\"ws_conns\":%"
	    PRIu64 ",\"unknown_init\":%" PRIu64 ",\"duplicate\":%" PRIu64
	    "},\"other_http\":%" PRIu64 ",\"other_http_sample\":[", http_signed,
	    el_conns, el_unknown, el_dup, http_other);
	for (i = 0; i < 3 && i < (int)http_other; i++) {
		if (i)
			fputc(',', f);
		json_str(f, other_req[i]);
	}
	fprintf(f, "],\"rx_kernel_ts\":%" PRIu64 ",\"rx_user_ts\":%" PRIu64,
	    rx_ts_kernel, rx_ts_user);
	fprintf(f, ",\"bad_messages\":%" PRIu64 ",\"ws_errors\":%" PRIu64
	    ",\"stalled_writes\":%" PRIu64 ",\"refused_upgrades\":%" PRIu64
	    ",\"open_at_exit\":%d}\n", bad_msgs, ws_errors, wbuf_overflow,
	    tw_refused, live_conns);
	fflush(f);
	free(setup);
	free(upg);
	free(cupg);
}

/* -------------------------------------------------------------- setup */

/* One line of the calls file: "callSid streamSid nonce [person]". */
static void
add_call(const char *line, const char *what)
{
	struct call	*cl;
	int		 n, cap;

	if (line[0] == '\n' || line[0] == '\0' || line[0] == '#')
		return;
	if (follow && ncalls == o_max_calls)
		fatal("%s: more than -n %d calls", what, o_max_calls);
	if (!follow && ncalls == calls_cap) {
		/* File mode: read before any conn points into calls[]. */
		calls_cap = calls_cap ? calls_cap * 2 : 256;
		if ((calls = realloc(calls, (size_t)calls_cap *
		    sizeof(*calls))) == NULL)
			fatal("out of memory");
	}
	cl = &calls[ncalls];
	memset(cl, 0, sizeof(*cl));
	cl->person = -1;
	n = sscanf(line, "%47s %47s %95s %d", cl->call_sid, cl->stream_sid,
	    cl->nonce, &cl->person);
	if (n < 3 || (n == 4 && cl->person < 0))
		fatal("%s: bad line: %s", what, line);
	cl->idx = ncalls;
	if (cl->person < 0)
		cl->person = cl->idx;
	if (cl->person >= nby_person) {
		cap = nby_person ? nby_person : 256;
		while (cap <= cl->person)
			cap *= 2;
		if ((by_person = realloc(by_person, (size_t)cap *
		    sizeof(*by_person))) == NULL)
			fatal("out of memory");
		for (n = nby_person; n < cap; n++)
			by_person[n] = -1;
		nby_person = cap;
	}
	if (by_person[cl->person] >= 0)
		fatal("%s: person %d named twice", what, cl->person);
	by_person[cl->person] = cl->idx;
	if (follow) {
		/* Spread the calls over the 20 ms period as they come. */
		cl->tw_slot = cl->idx % NSLOTS;
		cl->el_slot = (cl->tw_slot + NSLOTS / 2) % NSLOTS;
		slot_tw[cl->tw_slot][nslot_tw[cl->tw_slot]++] = cl->idx;
		slot_el[cl->el_slot][nslot_el[cl->el_slot]++] = cl->idx;
	}
	ncalls++;
}

static void
load_calls(const char *path)
{
	FILE	*f;
	char	 line[512];

	if ((f = fopen(path, "r")) == NULL)
		fatal("%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL)
		add_call(line, path);
	fclose(f);
	if (ncalls == 0)
		fatal("%s: no calls", path);
}

/* Follow mode: whole lines from stdin, then end of input. */
static void
input_read(struct conn *c)
{
	ssize_t	 n;
	char	*nl, *p;

	for (;;) {
		n = read(c->fd, inbuf + inlen, sizeof(inbuf) - 1 - inlen);
		if (n > 0) {
			inlen += (size_t)n;
			inbuf[inlen] = '\0';
			p = inbuf;
			while ((nl = strchr(p, '\n')) != NULL) {
				*nl = '\0';
				add_call(p, "stdin");
				p = nl + 1;
			}
			inlen -= (size_t)(p - inbuf);
			memmove(inbuf, p, inlen);
			if (inlen == sizeof(inbuf) - 1)
				fatal("stdin: line too long");
			continue;
		}
		if (n == 0) {
			if (inlen > 0) {
				inbuf[inlen] = '\0';
				add_call(inbuf, "stdin");
				inlen = 0;
			}
			input_eof = 1;
			c->dead = 1;
			epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
			fprintf(stderr, "loadgen[%s]: end of input: %d calls\n",
			    o_label, ncalls);
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			fatal("stdin: %s", strerror(errno));
		return;
	}
}

static void
build_slots(void)
{
	int	i, s, cap = follow ? o_max_calls : ncalls;

	for (s = 0; s < NSLOTS; s++) {
		slot_tw[s] = calloc((size_t)cap + 1, sizeof(int));
		slot_el[s] = calloc((size_t)cap + 1, sizeof(int));
		if (slot_tw[s] == NULL || slot_el[s] == NULL)
			fatal("out of memory");
	}
	if (follow) {
		if ((calls = calloc((size_t)cap + 1, sizeof(*calls))) == NULL)
			fatal("out of memory");
		return;
	}
	for (i = 0; i < ncalls; i++) {
		/* Spread the calls evenly over the 20 ms period. */
		s = (int)((long)i * NSLOTS / ncalls);
		calls[i].tw_slot = s;
		calls[i].el_slot = (s + NSLOTS / 2) % NSLOTS;
		slot_tw[s][nslot_tw[s]++] = i;
		slot_el[calls[i].el_slot][nslot_el[calls[i].el_slot]++] = i;
	}
}

static int
listen_on(int port)
{
	struct sockaddr_in	sin;
	int			fd, one = 1;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1)
		fatal("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		fatal("bind 127.0.0.1:%d: %s", port, strerror(errno));
	if (listen(fd, 4096) == -1)
		fatal("listen: %s", strerror(errno));
	return fd;
}

static void
usage(void)
{
	fprintf(stderr, "usage: loadgen -p NAIBERD_PORT -e EL_PORT -f CALLS "
	    "-t AUTH_TOKEN -u STREAM_URL [-s SECONDS] [-r RAMP_PER_S]\n"
	    "       [-S SETTLE_S] [-T SETUP_TIMEOUT_S] [-P SERVER_PID] "
	    "[-l LABEL] [-q] [-c COALESCE_US] [-n MAX_CALLS]\n"
	    "       -f - -n MAX_CALLS: the calls arrive on stdin during the "
	    "run\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct epoll_event	 evs[1024];
	struct itimerspec	 its;
	struct rlimit		 rl;
	struct conn		*lc, *tc, *sc;
	pthread_t		 th;
	unsigned char		 md[EVP_MAX_MD_SIZE];
	unsigned int		 mdlen = 0;
	int			 ch, i, n, tfd;

	while ((ch = getopt(argc, argv, "p:e:f:t:u:s:r:S:T:P:l:qc:n:")) != -1) {
		switch (ch) {
		case 'p': o_port = atoi(optarg); break;
		case 'e': o_el_port = atoi(optarg); break;
		case 'f': o_file = optarg; break;
		case 't': o_token = optarg; break;
		case 'u': o_stream_url = optarg; break;
		case 's': o_seconds = atoi(optarg); break;
		case 'r': o_ramp = atof(optarg); break;
		case 'S': o_settle = atoi(optarg); break;
		case 'T': o_setup_timeout = atoi(optarg); break;
		case 'P': o_server_pid = (pid_t)atoi(optarg); break;
		case 'l': o_label = optarg; break;
		case 'q': o_quickack = 1; break;
		case 'c': o_coalesce_us = atoi(optarg); break;
		case 'n': o_max_calls = atoi(optarg); break;
		default: usage();
		}
	}
	if (o_port <= 0 || o_el_port <= 0 || o_file == NULL ||
	    o_token == NULL || o_stream_url == NULL || o_seconds <= 0 ||
	    o_ramp <= 0)
		usage();
	follow = strcmp(o_file, "-") == 0;
	if (follow && o_max_calls <= 0)
		usage();
	signal(SIGPIPE, SIG_IGN);
	clk_tck = sysconf(_SC_CLK_TCK);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	b64_init();
	if (!follow)
		load_calls(o_file);
	build_slots();
	xs_state ^= now_ns() ^ ((uint64_t)getpid() << 32);

	/* X-Twilio-Signature: base64(HMAC-SHA1(token, STREAM_URL)). */
	if (HMAC(EVP_sha1(), o_token, (int)strlen(o_token),
	    (const unsigned char *)o_stream_url, strlen(o_stream_url), md,
	    &mdlen) == NULL)
		fatal("HMAC failed");
	b64_enc(md, mdlen, sig_b64);

	if ((ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("epoll_create1: %s", strerror(errno));
	lc = conn_new(listen_on(o_el_port), K_LISTEN, NULL, EPOLLIN);
	if ((tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK |
	    TFD_CLOEXEC)) == -1)
		fatal("timerfd: %s", strerror(errno));
	tc = conn_new(tfd, K_TIMER, NULL, EPOLLIN);
	if (pipe2(samp_req, O_CLOEXEC) == -1 ||
	    (samp_done = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
		fatal("pipe/eventfd: %s", strerror(errno));
	sc = conn_new(samp_done, K_SAMPLER, NULL, EPOLLIN);
	if (pthread_create(&th, NULL, sampler_main, NULL) != 0)
		fatal("pthread_create failed");
	if (follow) {
		if (fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK) == -1)
			fatal("stdin: %s", strerror(errno));
		(void)conn_new(0, K_INPUT, NULL, EPOLLIN);	/* a pipe */
	}
	(void)lc;
	(void)tc;
	(void)sc;

	real_off_update();
	/* Run-start CPU sample, synchronously (nothing is running yet). */
	sample_cpu(&cpu_s[0]);
	t0 = now_ns();
	t_phase = t0;
	memset(&its, 0, sizeof(its));
	its.it_value.tv_nsec = (long)TICK_NS;
	its.it_interval.tv_nsec = (long)TICK_NS;
	if (timerfd_settime(tfd, 0, &its, NULL) == -1)
		fatal("timerfd_settime: %s", strerror(errno));
	if (follow)
		fprintf(stderr, "loadgen[%s]: up to %d calls from stdin, window "
		    "%d s\n", o_label, o_max_calls, o_seconds);
	else
		fprintf(stderr, "loadgen[%s]: %d calls, ramp %.0f/s, window "
		    "%d s\n", o_label, ncalls, o_ramp, o_seconds);

	while (phase != PH_DONE || samp_busy) {
		n = epoll_wait(ep, evs, 1024, 100);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			fatal("epoll_wait: %s", strerror(errno));
		}
		uint64_t now = now_ns();
		for (i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			uint64_t x;
			if (c->dead)
				continue;
			switch (c->kind) {
			case K_LISTEN:
				listen_accept(c);
				continue;
			case K_TIMER:
				while (read(c->fd, &x, sizeof(x)) > 0)
					;
				tick(now_ns());
				continue;
			case K_SAMPLER:
				while (read(c->fd, &x, sizeof(x)) > 0)
					;
				samp_busy = 0;
				continue;
			case K_INPUT:
				input_read(c);
				continue;
			default:
				break;
			}
			if (evs[i].events & EPOLLOUT) {
				if (c->kind == K_TW && c->call->tw_state ==
				    TW_CONNECTING) {
					int err = 0;
					socklen_t el = sizeof(err);
					getsockopt(c->fd, SOL_SOCKET, SO_ERROR,
					    &err, &el);
					if (err != 0) {
						call_fail(c->call, "connect "
						    "refused");
						conn_close(c);
						continue;
					}
					ep_mod(c, 0);
					tw_send_upgrade(c->call);
				} else
					conn_flush(c);
			}
			if (!c->dead && (evs[i].events & (EPOLLIN | EPOLLHUP |
			    EPOLLERR)))
				conn_read(c, now);
		}
		bury();
		/*
		 * Coalesce: at most one pass per o_coalesce_us, so one pass
		 * reads many sockets instead of waking per packet.  Arrival
		 * times come from the kernel, so this costs no accuracy.
		 */
		if (o_coalesce_us > 0) {
			uint64_t spent = now_ns() - now;
			if (spent < (uint64_t)o_coalesce_us * 1000) {
				struct timespec ts = { 0, (long)((uint64_t)
				    o_coalesce_us * 1000 - spent) };
				nanosleep(&ts, NULL);
			}
		}
	}
	report();
	sampler_ask('q');
	pthread_join(th, NULL);
	return 0;
}
