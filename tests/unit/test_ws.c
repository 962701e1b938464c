/*
 * test_ws.c - unit tests for the server side of worker/ws.c, the
 * Twilio WebSocket.  Each test drives a struct ws over a unix
 * socketpair with a real event_base run without blocking; the test
 * plays the client on the other end with its own frame encoder and
 * decoder (written from RFC 6455, not from ws.c): bursts, frames split
 * at every byte, ping/pong, fragments, UTF-8 through wslay, protocol
 * errors (a close with the RFC's code, never a bare drop), the close
 * handshake, ws_send_text's framing, output
 * backpressure up to WS_OUT_MAX, EOF, and a message larger than the
 * input buffer.  Runs under ASan and UBSan.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <event2/event.h>

#include "worker.h"

#define OUT_MAX		(4 * 1024 * 1024)	/* ws.c's WS_OUT_MAX */
#define MAXMSG		(64 * 1024)	/* twilio_ws.c's TW_MAX_MSG */
#define NBURST		200

struct got {
	uint8_t		*g_p;
	size_t		 g_len;
	int		 g_null;
};

struct t {
	struct event_base	*t_base;
	int			 t_sv[2];	/* [0] the ws, [1] peer */
	struct ws		*t_ws;
	struct got		*t_got;
	size_t			 t_ngot, t_capgot;
	int			 t_closes, t_code, t_dones;
	uint8_t			*t_in;	/* what the peer read */
	size_t			 t_inlen, t_incap, t_inoff;
};

/* One frame as the client decodes it. */
struct frame {
	int		 f_fin, f_rsv, f_op, f_masked;
	size_t		 f_hlen;
	uint64_t	 f_len;
	const uint8_t	*f_p;
};

static int	setup(void **);
static int	teardown(void **);
static void	on_text(void *, const uint8_t *, size_t);
static void	on_close(void *, int, const char *);
static void	on_done(void *);
static size_t	enc(uint8_t *, int, int, int, const void *, size_t);
static size_t	dec(const uint8_t *, size_t, struct frame *);
static void	spin(struct t *, int);
static void	peer_read(struct t *);
static void	peer_write(struct t *, const void *, size_t);
static int	next_frame(struct t *, struct frame *);
static void	expect_close(struct t *, int);
static void	expect_done(struct t *);
static size_t	burst_msg(char *, size_t, int);
static void	test_burst(void **);
static void	test_bytewise(void **);
static void	test_ping(void **);
static void	test_fragmented(void **);
static void	test_utf8(void **);
static void	test_bad_utf8(void **);
static void	test_unmasked(void **);
static void	test_bad_control(void **);
static void	test_close(void **);
static void	test_send_lengths(void **);
static void	test_backpressure(void **);
static void	test_eof(void **);
static void	test_big(void **);

static const struct ws_cb cb = { on_text, on_close, on_done, NULL };

static int
setup(void **state)
{
	struct t	*t;

	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->t_base = event_base_new()) == NULL ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, t->t_sv) == -1 ||
	    fcntl(t->t_sv[0], F_SETFL, O_NONBLOCK) == -1 ||
	    fcntl(t->t_sv[1], F_SETFL, O_NONBLOCK) == -1)
		return -1;
	t->t_ws = ws_server_new(t->t_base, t->t_sv[0], NULL, 0, MAXMSG, &cb,
	    t);
	if (t->t_ws == NULL)
		return -1;
	*state = t;
	return 0;
}

static int
teardown(void **state)
{
	struct t	*t = *state;
	size_t		 i;

	ws_free(t->t_ws);
	close(t->t_sv[0]);
	close(t->t_sv[1]);
	event_base_free(t->t_base);
	for (i = 0; i < t->t_ngot; i++)
		free(t->t_got[i].g_p);
	free(t->t_got);
	free(t->t_in);
	free(t);
	return 0;
}

static void
on_text(void *arg, const uint8_t *p, size_t len)
{
	struct t	*t = arg;
	struct got	*g;

	assert_int_equal(t->t_closes, 0);
	if (t->t_ngot == t->t_capgot) {
		t->t_capgot = t->t_capgot ? t->t_capgot * 2 : 64;
		t->t_got = realloc(t->t_got, t->t_capgot * sizeof(*g));
		assert_non_null(t->t_got);
	}
	g = &t->t_got[t->t_ngot++];
	g->g_null = p == NULL;
	g->g_len = len;
	g->g_p = malloc(len + 1);
	assert_non_null(g->g_p);
	if (len > 0)
		memcpy(g->g_p, p, len);
}

static void
on_close(void *arg, int code, const char *why)
{
	struct t	*t = arg;

	assert_non_null(why);
	assert_int_equal(t->t_dones, 0);
	t->t_closes++;
	t->t_code = code;
}

static void
on_done(void *arg)
{
	struct t	*t = arg;

	assert_int_equal(t->t_closes, 1);
	t->t_dones++;
}

/* A client frame: masked (or not), minimal length, a varying key. */
static size_t
enc(uint8_t *out, int fin, int op, int mask, const void *data, size_t len)
{
	static uint32_t	 k = 0x5a17c3e1;
	const uint8_t	*p = data;
	uint8_t		 key[4];
	size_t		 h = 2, i;

	out[0] = (uint8_t)((fin ? 0x80 : 0) | op);
	if (len < 126)
		out[1] = (uint8_t)len;
	else if (len < 65536) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		h = 4;
	} else {
		out[1] = 127;
		for (i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
		h = 10;
	}
	if (!mask) {
		memcpy(out + h, p, len);
		return h + len;
	}
	k = k * 1103515245u + 12345u;
	memcpy(key, &k, 4);
	out[1] |= 0x80;
	memcpy(out + h, key, 4);
	h += 4;
	for (i = 0; i < len; i++)
		out[h + i] = p[i] ^ key[i & 3];
	return h + len;
}

/* Bytes one whole frame takes, 0 if not all here yet. */
static size_t
dec(const uint8_t *p, size_t len, struct frame *f)
{
	size_t	i;
	int	l7;

	if (len < 2)
		return 0;
	f->f_fin = p[0] >> 7;
	f->f_rsv = (p[0] >> 4) & 7;
	f->f_op = p[0] & 15;
	f->f_masked = p[1] >> 7;
	l7 = p[1] & 0x7f;
	f->f_hlen = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) +
	    (f->f_masked ? 4 : 0);
	if (len < f->f_hlen)
		return 0;
	f->f_len = (uint64_t)l7;
	if (l7 >= 126)
		for (f->f_len = 0, i = 2; i < (l7 == 126 ? 4u : 10u); i++)
			f->f_len = f->f_len << 8 | p[i];
	if (len - f->f_hlen < f->f_len)
		return 0;
	f->f_p = p + f->f_hlen;
	return f->f_hlen + (size_t)f->f_len;
}

/* Run the loop n times without blocking. */
static void
spin(struct t *t, int n)
{
	while (n-- > 0)
		assert_int_not_equal(event_base_loop(t->t_base,
		    EVLOOP_NONBLOCK), -1);
}

static void
peer_read(struct t *t)
{
	ssize_t	n;

	for (;;) {
		if (t->t_incap - t->t_inlen < 65536) {
			t->t_incap = t->t_incap ? t->t_incap * 2 : 131072;
			t->t_in = realloc(t->t_in, t->t_incap);
			assert_non_null(t->t_in);
		}
		n = read(t->t_sv[1], t->t_in + t->t_inlen,
		    t->t_incap - t->t_inlen);
		if (n <= 0)
			break;
		t->t_inlen += (size_t)n;
	}
}

static void
peer_write(struct t *t, const void *data, size_t len)
{
	const uint8_t	*p = data;
	ssize_t		 n;

	while (len > 0) {
		n = write(t->t_sv[1], p, len);
		if (n == -1) {
			assert_true(errno == EAGAIN);
			spin(t, 1);
			peer_read(t);
			continue;
		}
		p += n;
		len -= (size_t)n;
	}
}

/* The next whole frame the server wrote; 0 if none (yet). */
static int
next_frame(struct t *t, struct frame *f)
{
	size_t	n;

	spin(t, 3);
	peer_read(t);
	n = dec(t->t_in + t->t_inoff, t->t_inlen - t->t_inoff, f);
	if (n == 0)
		return 0;
	t->t_inoff += n;
	/* Everything a server sends: unmasked, whole, no RSV bits. */
	assert_int_equal(f->f_masked, 0);
	assert_int_equal(f->f_fin, 1);
	assert_int_equal(f->f_rsv, 0);
	return 1;
}

/* The server's next frame is a close with this code, and the last. */
static void
expect_close(struct t *t, int code)
{
	struct frame	f;

	assert_true(next_frame(t, &f));
	assert_int_equal(f.f_op, 8);
	assert_true(f.f_len >= 2);
	assert_int_equal(f.f_p[0] << 8 | f.f_p[1], code);
	spin(t, 3);
	peer_read(t);
	assert_int_equal(t->t_inoff, t->t_inlen);
}

/* on_close and on_done once each, and never again. */
static void
expect_done(struct t *t)
{
	spin(t, 5);
	assert_int_equal(t->t_closes, 1);
	assert_int_equal(t->t_dones, 1);
	assert_true(ws_done(t->t_ws));
	spin(t, 5);
	assert_int_equal(t->t_closes, 1);
	assert_int_equal(t->t_dones, 1);
}

/* Message i of a burst: JSON-ish ASCII of a length that varies. */
static size_t
burst_msg(char *buf, size_t cap, int i)
{
	size_t	len = (size_t)(i * 97 % 700), n;

	n = (size_t)snprintf(buf, cap, "{\"event\":\"media\",\"n\":%d,\"p\":\"",
	    i);
	for (; n < len + 30 && n < cap - 3; n++)
		buf[n] = (char)('A' + (i + (int)n) % 26);
	buf[n++] = '"';
	buf[n++] = '}';
	return n;
}

/* (a) 200 masked text frames in one write: 200 on_text, in order. */
static void
test_burst(void **state)
{
	struct t	*t = *state;
	uint8_t		*wire = malloc(NBURST * 1024);
	char		 m[1000];
	size_t		 off = 0, n;
	int		 i;

	assert_non_null(wire);
	for (i = 0; i < NBURST; i++) {
		n = burst_msg(m, sizeof(m), i);
		off += enc(wire + off, 1, 1, 1, m, n);
	}
	peer_write(t, wire, off);
	spin(t, 5);
	assert_int_equal(t->t_ngot, NBURST);
	for (i = 0; i < NBURST; i++) {
		n = burst_msg(m, sizeof(m), i);
		assert_int_equal(t->t_got[i].g_len, n);
		assert_memory_equal(t->t_got[i].g_p, m, n);
	}
	assert_int_equal(t->t_closes, 0);
	free(wire);
}

/* (b) The same frames, one byte per write, the loop run after each. */
static void
test_bytewise(void **state)
{
	struct t	*t = *state;
	uint8_t		*wire = malloc(NBURST * 1024);
	char		 m[1000];
	size_t		 off = 0, n, i;
	int		 k;

	assert_non_null(wire);
	for (k = 0; k < NBURST; k++) {
		n = burst_msg(m, sizeof(m), k);
		off += enc(wire + off, 1, 1, 1, m, n);
	}
	for (i = 0; i < off; i++) {
		peer_write(t, wire + i, 1);
		spin(t, 1);
	}
	spin(t, 3);
	assert_int_equal(t->t_ngot, NBURST);
	for (k = 0; k < NBURST; k++) {
		n = burst_msg(m, sizeof(m), k);
		assert_int_equal(t->t_got[k].g_len, n);
		assert_memory_equal(t->t_got[k].g_p, m, n);
	}
	free(wire);
}

/* (c) A ping is answered with a pong carrying the same payload. */
static void
test_ping(void **state)
{
	struct t	*t = *state;
	uint8_t		 wire[200], pl[125];
	struct frame	 f;
	size_t		 i;

	peer_write(t, wire, enc(wire, 1, 9, 1, "are you there?", 14));
	assert_true(next_frame(t, &f));
	assert_int_equal(f.f_op, 10);
	assert_int_equal(f.f_len, 14);
	assert_memory_equal(f.f_p, "are you there?", 14);
	/* The longest a control frame may be, and an empty one. */
	for (i = 0; i < sizeof(pl); i++)
		pl[i] = (uint8_t)(i * 7);
	peer_write(t, wire, enc(wire, 1, 9, 1, pl, sizeof(pl)));
	peer_write(t, wire, enc(wire, 1, 9, 1, "", 0));
	assert_true(next_frame(t, &f));
	assert_int_equal(f.f_op, 10);
	assert_int_equal(f.f_len, sizeof(pl));
	assert_memory_equal(f.f_p, pl, sizeof(pl));
	assert_true(next_frame(t, &f));
	assert_int_equal(f.f_op, 10);
	assert_int_equal(f.f_len, 0);
	assert_false(next_frame(t, &f));
	assert_int_equal(t->t_ngot, 0);
	assert_int_equal(t->t_closes, 0);
}

/* (d) Three fragments with a ping between: one message, one pong. */
static void
test_fragmented(void **state)
{
	struct t	*t = *state;
	uint8_t		 wire[512];
	size_t		 off = 0;
	struct frame	 f;

	off += enc(wire + off, 0, 1, 1, "{\"event\":", 9);
	off += enc(wire + off, 1, 9, 1, "mid", 3);
	off += enc(wire + off, 0, 0, 1, "\"mark\",", 7);
	off += enc(wire + off, 1, 0, 1, "\"x\":1}", 6);
	off += enc(wire + off, 1, 1, 1, "after", 5);
	peer_write(t, wire, off);
	spin(t, 3);
	assert_int_equal(t->t_ngot, 2);
	assert_int_equal(t->t_got[0].g_len, 22);
	assert_memory_equal(t->t_got[0].g_p,
	    "{\"event\":\"mark\",\"x\":1}", 22);
	assert_int_equal(t->t_got[1].g_len, 5);
	assert_memory_equal(t->t_got[1].g_p, "after", 5);
	assert_true(next_frame(t, &f));
	assert_int_equal(f.f_op, 10);
	assert_int_equal(f.f_len, 3);
	assert_memory_equal(f.f_p, "mid", 3);
	assert_int_equal(t->t_closes, 0);
}

/* (e) Valid UTF-8 goes through wslay and arrives byte for byte. */
static void
test_utf8(void **state)
{
	struct t	*t = *state;
	static const char s[] = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x82\xac "
	    "\xf0\x9d\x84\x9e";
	uint8_t		 wire[256];
	size_t		 off = 0;

	off += enc(wire + off, 1, 1, 1, s, sizeof(s) - 1);
	off += enc(wire + off, 1, 1, 1, "ascii", 5);
	off += enc(wire + off, 1, 1, 1, s, sizeof(s) - 1);
	peer_write(t, wire, off);
	spin(t, 3);
	assert_int_equal(t->t_ngot, 3);
	assert_int_equal(t->t_got[0].g_len, sizeof(s) - 1);
	assert_memory_equal(t->t_got[0].g_p, s, sizeof(s) - 1);
	assert_memory_equal(t->t_got[1].g_p, "ascii", 5);
	assert_int_equal(t->t_got[2].g_len, sizeof(s) - 1);
	assert_memory_equal(t->t_got[2].g_p, s, sizeof(s) - 1);
	assert_int_equal(t->t_closes, 0);
}

/* (e) Invalid UTF-8: close 1007 to the peer, nothing after delivered. */
static void
test_bad_utf8(void **state)
{
	struct t	*t = *state;
	uint8_t		 wire[256];
	size_t		 off = 0;

	off += enc(wire + off, 1, 1, 1, "good", 4);
	off += enc(wire + off, 1, 1, 1, "bad \xc3\x28", 6);
	off += enc(wire + off, 1, 1, 1, "never", 5);
	peer_write(t, wire, off);
	expect_close(t, 1007);
	assert_int_equal(t->t_ngot, 1);
	assert_memory_equal(t->t_got[0].g_p, "good", 4);
	expect_done(t);
}

/* (f) A client frame without a mask: close 1002. */
static void
test_unmasked(void **state)
{
	struct t	*t = *state;
	uint8_t		 wire[64];
	size_t		 off = 0;

	off += enc(wire + off, 1, 1, 1, "masked", 6);
	off += enc(wire + off, 1, 1, 0, "unmasked", 8);
	off += enc(wire + off, 1, 1, 1, "never", 5);
	peer_write(t, wire, off);
	expect_close(t, 1002);
	assert_int_equal(t->t_ngot, 1);
	assert_memory_equal(t->t_got[0].g_p, "masked", 6);
	assert_int_equal(ws_send_text(t->t_ws, "late", 4), -1);
	expect_done(t);
}

/*
 * (f2) RFC 6455 5.5 and 5.2, which wslay alone fails without a close
 * frame: a ping of 126 bytes, a ping with FIN clear, a pong of 200, a
 * close of 126, a length in a longer form than needed.  Each: the
 * frames before are delivered, then a close 1002 and nothing more.
 */
static void
test_bad_control(void **state)
{
	static const uint8_t	 longer[] = { 0x81, 0x80 | 126, 0, 5,
	    0, 0, 0, 0, 'h', 'e', 'l', 'l', 'o' };
	struct t		*t = *state;
	uint8_t			 wire[512], pl[200];
	size_t			 off, i, k;
	struct frame		 f;

	memset(pl, 'p', sizeof(pl));
	for (k = 0; k < 5; k++) {
		off = enc(wire, 1, 1, 1, "before", 6);
		switch (k) {
		case 0:
			off += enc(wire + off, 1, 9, 1, pl, 126);
			break;
		case 1:
			off += enc(wire + off, 0, 9, 1, "frag", 4);
			break;
		case 2:
			off += enc(wire + off, 1, 10, 1, pl, 200);
			break;
		case 3:
			off += enc(wire + off, 1, 8, 1, pl, 126);
			break;
		default:
			memcpy(wire + off, longer, sizeof(longer));
			off += sizeof(longer);
			break;
		}
		off += enc(wire + off, 1, 1, 1, "never", 5);
		peer_write(t, wire, off);
		expect_close(t, 1002);
		assert_int_equal(t->t_ngot, 1);
		assert_memory_equal(t->t_got[0].g_p, "before", 6);
		expect_done(t);
		assert_false(next_frame(t, &f));
		/* A fresh connection for the next case. */
		teardown(state);
		assert_int_equal(setup(state), 0);
		t = *state;
	}
	/* Split at every byte, the close still comes. */
	off = enc(wire, 0, 9, 1, "frag", 4);
	for (i = 0; i < off; i++) {
		peer_write(t, wire + i, 1);
		spin(t, 1);
	}
	expect_close(t, 1002);
	expect_done(t);
}

/* (g) The peer closes: on_close(code), the close echoed, on_done. */
static void
test_close(void **state)
{
	struct t	*t = *state;
	uint8_t		 wire[64];
	size_t		 off = 0;

	off += enc(wire + off, 1, 1, 1, "last", 4);
	off += enc(wire + off, 1, 8, 1, "\x0f\xa0going away", 12);
	off += enc(wire + off, 1, 1, 1, "after close", 11);
	peer_write(t, wire, off);
	expect_close(t, 4000);
	assert_int_equal(t->t_ngot, 1);
	assert_int_equal(t->t_code, 4000);
	assert_int_equal(ws_send_text(t->t_ws, "late", 4), -1);
	expect_done(t);
}

/* (h) ws_send_text: one unmasked frame, minimal header, per message. */
static void
test_send_lengths(void **state)
{
	struct t	*t = *state;
	static const size_t lens[] = { 0, 1, 125, 126, 65535, 65536, 100000 };
	char		*m = malloc(100000);
	const uint8_t	*p;
	size_t		 i, j, h, len;

	assert_non_null(m);
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		len = lens[i];
		for (j = 0; j < len; j++)
			m[j] = (char)('a' + (i + j) % 26);
		assert_int_equal(ws_send_text(t->t_ws, m, len), 0);
		h = len < 126 ? 2 : len < 65536 ? 4 : 10;
		spin(t, 3);
		peer_read(t);
		/* Exactly one frame: header and payload, nothing more. */
		assert_int_equal(t->t_inlen - t->t_inoff, h + len);
		p = t->t_in + t->t_inoff;
		assert_int_equal(p[0], 0x81);
		if (h == 2)
			assert_int_equal(p[1], len);
		else if (h == 4) {
			assert_int_equal(p[1], 126);
			assert_int_equal(p[2] << 8 | p[3], len);
		} else {
			assert_int_equal(p[1], 127);
			for (j = 0; j < 8; j++)
				assert_int_equal(p[2 + j],
				    (uint8_t)((uint64_t)len >> (56 - 8 * j)));
		}
		assert_memory_equal(p + h, m, len);
		t->t_inoff += h + len;
	}
	free(m);
}

/*
 * (i) The peer stops reading: ws_send_text takes frames until WS_OUT_MAX
 * of them wait, then fails without harm; once the peer drains, every
 * accepted frame arrives intact and in order.
 */
static void
test_backpressure(void **state)
{
	struct t	*t = *state;
	enum { LEN = 60000 };
	char		*m = malloc(LEN);
	struct frame	 f;
	int		 i, n = 0, k = 0;

	assert_non_null(m);
	for (;;) {
		memset(m, 'a' + n % 26, LEN);
		memcpy(m, &n, sizeof(n));
		if (ws_send_text(t->t_ws, m, LEN) == -1)
			break;
		n++;
		assert_true(n < 10000);
		spin(t, 1);
	}
	/* Refused only once the buffer had no room for one more. */
	assert_true((size_t)n * (LEN + 4) > OUT_MAX - (LEN + 14));
	assert_int_equal(ws_send_text(t->t_ws, m, LEN), -1);
	assert_int_equal(t->t_closes, 0);
	for (i = 0; k < n && i < 100000; i++) {
		while (next_frame(t, &f)) {
			int idx;
			assert_int_equal(f.f_op, 1);
			assert_int_equal(f.f_len, LEN);
			memcpy(&idx, f.f_p, sizeof(idx));
			assert_int_equal(idx, k);
			assert_true(f.f_p[LEN - 1] == 'a' + k % 26);
			k++;
		}
	}
	assert_int_equal(k, n);
	/* Room again. */
	assert_int_equal(ws_send_text(t->t_ws, "again", 5), 0);
	assert_true(next_frame(t, &f));
	assert_int_equal(f.f_len, 5);
	assert_memory_equal(f.f_p, "again", 5);
	assert_int_equal(t->t_closes, 0);
	free(m);
}

/* (j) EOF from the peer: on_close(1006) and on_done, exactly once. */
static void
test_eof(void **state)
{
	struct t	*t = *state;
	uint8_t		 wire[64];

	peer_write(t, wire, enc(wire, 1, 1, 1, "before eof", 10));
	assert_int_equal(shutdown(t->t_sv[1], SHUT_WR), 0);
	spin(t, 3);
	assert_int_equal(t->t_ngot, 1);
	assert_int_equal(t->t_code, 1006);
	expect_done(t);
	assert_int_equal(ws_send_text(t->t_ws, "late", 4), -1);
	spin(t, 3);
	assert_int_equal(t->t_dones, 1);
}

/*
 * A message of exactly maxmsg is longer, with its header, than ws.c's
 * 64 KiB input buffer: it goes through wslay and still arrives whole.
 * One byte more is refused with 1009.
 */
static void
test_big(void **state)
{
	struct t	*t = *state;
	uint8_t		*m = malloc(MAXMSG + 1);
	uint8_t		*wire = malloc(MAXMSG + 64);
	size_t		 i, n;

	assert_non_null(m);
	assert_non_null(wire);
	for (i = 0; i <= MAXMSG; i++)
		m[i] = (uint8_t)('0' + i % 10);
	n = enc(wire, 1, 1, 1, m, MAXMSG);
	peer_write(t, wire, n);
	spin(t, 5);
	assert_int_equal(t->t_ngot, 1);
	assert_int_equal(t->t_got[0].g_len, MAXMSG);
	assert_memory_equal(t->t_got[0].g_p, m, MAXMSG);
	n = enc(wire, 1, 1, 1, m, MAXMSG + 1);
	peer_write(t, wire, n);
	expect_close(t, 1009);
	assert_int_equal(t->t_ngot, 1);
	expect_done(t);
	free(m);
	free(wire);
}

#define T(f)	cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_burst),
		T(test_bytewise),
		T(test_ping),
		T(test_fragmented),
		T(test_utf8),
		T(test_bad_utf8),
		T(test_unmasked),
		T(test_bad_control),
		T(test_close),
		T(test_send_lengths),
		T(test_backpressure),
		T(test_eof),
		T(test_big),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
