/*
 * fuzz_httphead.c - libFuzzer target for common/httphead.c and the
 * supervisor's route table, supervisor/router.c.  Byte 0 says where the
 * input is split into two reads, byte 1 picks the configuration (API
 * token, peer, drain, capacity, handoff result); the rest is parsed as
 * listener.c does: one request at a time, hh_reset() between pipelined
 * ones, each read in its own exact-size buffer.  Complete heads are
 * routed with the connection layer replaced by recorders, as
 * tests/unit/test_router.c does; an upgrade head is parsed once more in
 * one piece, as the worker re-reads it.  Links supervisor/router.c,
 * common/httphead.c, common/twilio.c, common/config.c, common/util.c.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "twilio.h"
#include "supervisor.h"

#define FZ_CHECK(c)	do { if (!(c)) fz_fail(__LINE__, #c); } while (0)
#define FZ_MAXREQ	64	/* pipelined requests per input */
/* The auth token of protocols.md 1.10 */
#define FZ_TOKEN	"f3a1c0de5eed0ddba11c0ffee0dd5ea1"
#define FZ_STREAM	"wss://bridge.example.org/outbound-media-stream"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void	fz_fail(int, const char *) __attribute__((noreturn));
static void	fz_answer(int);
static void	fz_setup(uint8_t);
static int	fz_in_arena(const struct hhead *, const char *);
static void	fz_check_head(const struct hhead *, enum hh_state);
static enum hh_state fz_feed(struct hhead *, const char *, size_t,
		    size_t *);
static void	fz_route(struct hhead *, enum hh_state);
static void	fz_reparse(const struct hhead *, const char *, size_t,
		    size_t);
static void	fz_session(const char *, size_t, size_t);

/* --- recorders for listener.c, pool.c, the api_* files and log.c --- */
struct supervisor sv;
struct metrics	metrics;
static struct config	fz_cf;
static struct conn	fz_cn;
static int		fz_answers;	/* responses and handler calls */
static int		fz_handed, fz_detached;
static unsigned		fz_busy;
static int		fz_handoff_rc;

void
conn_respond(struct conn *cn, int code, const char *ctype, const char *body,
    size_t len, const char *extra)
{
	FZ_CHECK(cn == &fz_cn);
	FZ_CHECK(ctype == NULL || *ctype != '\0');
	FZ_CHECK(len == 0 || (body != NULL && strlen(body) == len));
	FZ_CHECK(extra == NULL || (strlen(extra) >= 2 &&
	    strcmp(extra + strlen(extra) - 2, "\r\n") == 0));
	fz_answer(code);
}

void
conn_respond_json_error(struct conn *cn, int code, const char *msg)
{
	FZ_CHECK(cn == &fz_cn);
	FZ_CHECK(msg != NULL && *msg != '\0');
	fz_answer(code);
}

void
conn_detach(struct conn *cn)
{
	FZ_CHECK(cn == &fz_cn);
	fz_detached++;
}

/* Every handler gets a complete, well-formed head. */
#define FZ_HANDLER(fn)							\
void									\
fn(struct conn *cn, struct hhead *h)					\
{									\
	FZ_CHECK(cn == &fz_cn);						\
	fz_check_head(h, h->hh_state);					\
	FZ_CHECK(h->hh_state == HH_DONE || h->hh_state == HH_UPGRADE);	\
	fz_answer(200);							\
}
FZ_HANDLER(api_health)
FZ_HANDLER(api_ready)
FZ_HANDLER(api_metrics)
FZ_HANDLER(api_sessions)
FZ_HANDLER(api_call)
FZ_HANDLER(api_call_health)
FZ_HANDLER(api_twiml)
FZ_HANDLER(api_status_callback)

unsigned
pool_count(enum w_state s)
{
	return s == W_BUSY ? fz_busy : 0;
}

int
pool_handoff(struct conn *cn)
{
	FZ_CHECK(cn == &fz_cn);
	fz_handed++;
	return fz_handoff_rc;
}

/* Format for real: a bad format or argument shows up under ASan. */
void
log_warnx(const char *fmt, ...)
{
	char	buf[512];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	char	buf[512];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
}

static void
fz_fail(int line, const char *what)
{
	fprintf(stderr, "fuzz_httphead.c:%d: invariant failed: %s\n", line,
	    what);
	abort();
}

static void
fz_answer(int code)
{
	FZ_CHECK(code >= 200 && code <= 599);
	fz_answers++;
}

/* Bits of byte 1: the world the request arrives in. */
static void
fz_setup(uint8_t b)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)&fz_cn.cn_peer;
	static const char	*tokens[] = { "s3cret", NULL, "", "s3cret" };

	memset(&fz_cf, 0, sizeof(fz_cf));
	fz_cf.twilio_auth_token = FZ_TOKEN;
	fz_cf.stream_url = FZ_STREAM;
	fz_cf.api_token = (char *)tokens[b & 3];
	fz_cf.max_calls = 2;
	memset(&sv, 0, sizeof(sv));
	sv.sv_cf = &fz_cf;
	sv.sv_state = (b & 4) ? SV_DRAINING : SV_RUNNING;
	memset(&fz_cn, 0, sizeof(fz_cn));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl((b & 8) ? INADDR_LOOPBACK : 0xc0000207);
	fz_cn.cn_peerlen = sizeof(*sin);
	snprintf(fz_cn.cn_addr, sizeof(fz_cn.cn_addr), "%s:40000",
	    (b & 8) ? "127.0.0.1" : "192.0.2.7");
	fz_busy = (b >> 4) & 3;
	fz_handoff_rc = (b & 0x40) ? -1 : 0;
}

/* s is a NUL-terminated string inside h's arena. */
static int
fz_in_arena(const struct hhead *h, const char *s)
{
	uintptr_t	a = (uintptr_t)h->hh_arena, p = (uintptr_t)s;
	size_t		n = sizeof(h->hh_arena);

	return s != NULL && p >= a && p < a + n &&
	    memchr(s, '\0', n - (p - a)) != NULL;
}

static void
fz_check_head(const struct hhead *h, enum hh_state st)
{
	int	i;

	FZ_CHECK(h->hh_state == st);
	FZ_CHECK(h->hh_nhdr >= 0 && h->hh_nhdr <= HH_MAX_HEADERS);
	FZ_CHECK(h->hh_arenalen < sizeof(h->hh_arena));
	if (st == HH_ERROR) {
		FZ_CHECK(h->hh_status >= 400 && h->hh_status <= 505);
		FZ_CHECK(h->hh_error != NULL && *h->hh_error != '\0');
		return;
	}
	FZ_CHECK(h->hh_status == 0);
	FZ_CHECK(h->hh_body == NULL || (h->hh_bodylen <= HH_BODY_MAX &&
	    h->hh_body[h->hh_bodylen] == '\0'));
	for (i = 0; i < h->hh_nhdr; i++) {
		FZ_CHECK(fz_in_arena(h, h->hh_hdr[i].hd_name));
		FZ_CHECK(*h->hh_hdr[i].hd_value == '\0' ||
		    fz_in_arena(h, h->hh_hdr[i].hd_value));
	}
	if (st == HH_MORE)
		return;
	FZ_CHECK(h->hh_headers_done);
	FZ_CHECK(memchr(h->hh_method, '\0', sizeof(h->hh_method)) != NULL);
	FZ_CHECK(h->hh_method[0] != '\0');
	FZ_CHECK(fz_in_arena(h, h->hh_url) && h->hh_path == h->hh_url);
	FZ_CHECK(h->hh_path[0] == '/' && strlen(h->hh_path) <= HH_URL_MAX);
	FZ_CHECK(h->hh_query == NULL || fz_in_arena(h, h->hh_query));
	/* httphead.h: an upgrade is a complete head and no body. */
	FZ_CHECK(st != HH_UPGRADE || (h->hh_upgrade && h->hh_body == NULL));
}

/* One read: the bytes in a buffer of their own, so ASan sees overreads. */
static enum hh_state
fz_feed(struct hhead *h, const char *p, size_t n, size_t *used)
{
	enum hh_state	 st;
	char		*c;

	if ((c = malloc(n)) == NULL)
		abort();
	memcpy(c, p, n);
	*used = (size_t)-1;
	st = hh_feed(h, c, n, used);
	free(c);
	FZ_CHECK(*used <= n);
	FZ_CHECK(st >= HH_MORE && st <= HH_ERROR);
	/* "Need more bytes" with bytes left over would stall the listener. */
	FZ_CHECK(st != HH_MORE || *used == n);
	fz_check_head(h, st);
	return st;
}

/* Each request is answered exactly once, or handed to a worker. */
static void
fz_route(struct hhead *h, enum hh_state st)
{
	fz_answers = fz_handed = fz_detached = 0;
	fz_cn.cn_close_after = 0;
	if (st == HH_UPGRADE) {
		router_upgrade(&fz_cn, h);
		FZ_CHECK(fz_cn.cn_close_after);
	} else
		router_dispatch(&fz_cn, h);
	FZ_CHECK(fz_handed <= 1 && fz_detached <= 1);
	if (fz_detached)
		FZ_CHECK(fz_handed && fz_handoff_rc == 0 && fz_answers == 0);
	else
		FZ_CHECK(fz_answers == 1);
	fz_check_head(h, st);
}

/*
 * The worker parses the handed-over bytes (head and what followed) in
 * one piece: it must see the same upgrade head, ending at the same byte.
 */
static void
fz_reparse(const struct hhead *h, const char *in, size_t len, size_t head)
{
	struct hhead	*w;
	size_t		 used;
	int		 i;

	if ((w = malloc(sizeof(*w))) == NULL)
		abort();
	hh_init(w);
	FZ_CHECK(fz_feed(w, in, len, &used) == HH_UPGRADE);
	FZ_CHECK(used == head);
	FZ_CHECK(strcmp(w->hh_method, h->hh_method) == 0);
	FZ_CHECK(strcmp(w->hh_path, h->hh_path) == 0);
	FZ_CHECK((w->hh_query == NULL) == (h->hh_query == NULL));
	FZ_CHECK(w->hh_query == NULL || strcmp(w->hh_query, h->hh_query) == 0);
	FZ_CHECK(w->hh_nhdr == h->hh_nhdr);
	for (i = 0; i < w->hh_nhdr; i++) {
		FZ_CHECK(strcmp(w->hh_hdr[i].hd_name,
		    h->hh_hdr[i].hd_name) == 0);
		FZ_CHECK(strcmp(w->hh_hdr[i].hd_value,
		    h->hh_hdr[i].hd_value) == 0);
	}
	hh_reset(w);
	free(w);
}

/*
 * listener.c's conn_process(): bytes [0, split) arrive, then the rest.
 * An error or an upgrade ends the connection; so does a request that
 * is not keep-alive.
 */
static void
fz_session(const char *in, size_t len, size_t split)
{
	struct hhead	*h;
	enum hh_state	 st;
	size_t		 pos = 0, start = 0, avail = split, used;
	int		 nreq = 0;

	if ((h = malloc(sizeof(*h))) == NULL)
		abort();
	hh_init(h);
	for (;;) {
		while (pos < avail) {
			st = fz_feed(h, in + pos, avail - pos, &used);
			pos += used;
			if (st == HH_MORE)
				continue;
			if (st == HH_ERROR)
				goto out;
			fz_route(h, st);
			if (st == HH_UPGRADE) {
				fz_reparse(h, in + start, avail - start,
				    pos - start);
				goto out;
			}
			FZ_CHECK(used > 0);
			if (!h->hh_keepalive || ++nreq == FZ_MAXREQ)
				goto out;
			hh_reset(h);
			start = pos;
		}
		if (avail == len)
			break;
		avail = len;
	}
out:
	hh_reset(h);
	free(h);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t	len;

	if (size < 2)
		return 0;
	len = size - 2;
	fz_setup(data[1]);
	fz_session((const char *)data + 2, len, data[0] * len / 255);
	return 0;
}
