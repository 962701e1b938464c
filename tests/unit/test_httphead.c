/*
 * test_httphead.c - unit tests for common/httphead.c, the bounded HTTP
 * request head parser on http_parser.  Whole requests, bodies (plain
 * and chunked), byte-at-a-time feeding, keep-alive and pipelining,
 * upgrades, every limit (431, 414, 413) and malformed input, the RFC
 * 9112 strictness (CRLF only, no obs-fold, one chunked coding and no
 * Content-Length with it, Expect: 100-continue or 417).  Each test
 * ends with hh_reset(), which frees the body, so LeakSanitizer sees
 * nothing left.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "httphead.h"

static enum hh_state	feed_all(struct hhead *, const char *, size_t,
			    size_t *);
static enum hh_state	feed_str(struct hhead *, const char *);
static enum hh_state	feed_bytes(struct hhead *, const char *, size_t,
			    size_t *);
static void	expect_error(const char *, size_t, int);
static void	expect_error_bytes(const char *, size_t, int);
static char	*req_with_url(char *, size_t);
static char	*req_with_headers(int);
static void	same_request(const char *);
static void	test_get(void **);
static void	test_post_body(void **);
static void	test_chunked_body(void **);
static void	test_bytewise(void **);
static void	test_header_lookup(void **);
static void	test_empty_header_value(void **);
static void	test_has_token(void **);
static void	test_query(void **);
static void	test_keepalive(void **);
static void	test_pipelining(void **);
static void	test_pipelined_long_urls(void **);
static void	test_upgrade(void **);
static void	test_upgrade_bytewise(void **);
static void	test_head_too_large(void **);
static void	test_too_many_headers(void **);
static void	test_url_too_long(void **);
static void	test_content_length_too_large(void **);
static void	test_chunked_too_large(void **);
static void	expect_statuses(const char *const *, size_t, int, int);
static void	test_bad_request_line(void **);
static void	test_bad_version(void **);
static void	test_space_before_colon(void **);
static void	test_nul_in_header(void **);
static void	test_bad_target(void **);
static void	test_reset_after_error(void **);
static void	expect_why(const char *, int, const char *);
static void	test_bare_lf(void **);
static void	test_obs_fold(void **);
static void	test_transfer_encoding(void **);
static void	test_expect_continue(void **);
static void	test_expect_other(void **);
static void	test_lists_and_keys(void **);

#define GET_REQ \
	"GET /health HTTP/1.1\r\n" \
	"Host: example.test\r\n" \
	"User-Agent: unit/1.0\r\n" \
	"Accept: */*\r\n" \
	"\r\n"
#define POST_REQ \
	"POST /call HTTP/1.1\r\n" \
	"Host: example.test\r\n" \
	"Content-Type: application/json\r\n" \
	"Content-Length: 17\r\n" \
	"\r\n" \
	"{\"phone\":\"+1555\"}"
#define CHUNKED_REQ \
	"POST /status-callback HTTP/1.1\r\n" \
	"Host: example.test\r\n" \
	"Transfer-Encoding: chunked\r\n" \
	"\r\n" \
	"5\r\nhello\r\n" \
	"6\r\n world\r\n" \
	"0\r\n\r\n"
#define UPGRADE_HEAD \
	"GET /outbound-media-stream HTTP/1.1\r\n" \
	"Host: example.test\r\n" \
	"Upgrade: websocket\r\n" \
	"Connection: keep-alive, Upgrade\r\n" \
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" \
	"Sec-WebSocket-Version: 13\r\n" \
	"X-Twilio-Signature: abc=\r\n" \
	"\r\n"

/*
 * Feed until the parser stops asking for more or the bytes run out;
 * hh_feed() may take fewer bytes than offered while in the head.
 */
static enum hh_state
feed_all(struct hhead *h, const char *buf, size_t len, size_t *used)
{
	enum hh_state	st = HH_MORE;
	size_t		n, off = 0;

	while (off < len) {
		st = hh_feed(h, buf + off, len - off, &n);
		assert_true(n <= len - off);
		off += n;
		if (st != HH_MORE)
			break;
		assert_true(n > 0);
	}
	*used = off;
	return st;
}

static enum hh_state
feed_str(struct hhead *h, const char *s)
{
	size_t	used;

	return feed_all(h, s, strlen(s), &used);
}

/* One byte per call; each byte offered is taken until the end. */
static enum hh_state
feed_bytes(struct hhead *h, const char *buf, size_t len, size_t *used)
{
	enum hh_state	st = HH_MORE;
	size_t		n, off;

	for (off = 0; off < len; off++) {
		st = hh_feed(h, buf + off, 1, &n);
		if (st != HH_MORE) {
			*used = off + n;
			return st;
		}
		assert_int_equal(n, 1);
	}
	*used = len;
	return st;
}

static void
expect_error(const char *buf, size_t len, int status)
{
	struct hhead	h;
	size_t		used;

	hh_init(&h);
	if (feed_all(&h, buf, len, &used) != HH_ERROR)
		fail_msg("not rejected: %.60s", buf);
	assert_int_equal(h.hh_status, status);
	assert_non_null(h.hh_error);
	/* The state sticks. */
	assert_int_equal(hh_feed(&h, "GET / HTTP/1.1\r\n\r\n", 18, &used),
	    HH_ERROR);
	assert_int_equal(used, 0);
	hh_reset(&h);
}

static void
expect_error_bytes(const char *buf, size_t len, int status)
{
	struct hhead	h;
	size_t		used;

	hh_init(&h);
	if (feed_bytes(&h, buf, len, &used) != HH_ERROR)
		fail_msg("not rejected bytewise: %.60s", buf);
	assert_int_equal(h.hh_status, status);
	hh_reset(&h);
}

static void
test_get(void **state)
{
	struct hhead	h;
	size_t		used;

	(void)state;
	hh_init(&h);
	assert_int_equal(feed_all(&h, GET_REQ, strlen(GET_REQ), &used),
	    HH_DONE);
	assert_int_equal(used, strlen(GET_REQ));
	assert_string_equal(h.hh_method, "GET");
	assert_string_equal(h.hh_url, "/health");
	assert_string_equal(h.hh_path, "/health");
	assert_null(h.hh_query);
	assert_int_equal(h.hh_nhdr, 3);
	assert_string_equal(h.hh_hdr[0].hd_name, "Host");
	assert_string_equal(h.hh_hdr[0].hd_value, "example.test");
	assert_string_equal(h.hh_hdr[1].hd_name, "User-Agent");
	assert_string_equal(h.hh_hdr[1].hd_value, "unit/1.0");
	assert_string_equal(h.hh_hdr[2].hd_value, "*/*");
	assert_int_equal(h.hh_keepalive, 1);
	assert_int_equal(h.hh_upgrade, 0);
	assert_null(h.hh_body);
	assert_int_equal(h.hh_bodylen, 0);
	assert_int_equal(h.hh_status, 0);
	hh_reset(&h);

	/* A head alone, without its blank line, is not complete. */
	hh_init(&h);
	assert_int_equal(feed_str(&h, "GET / HTTP/1.1\r\nHost: x\r\n"),
	    HH_MORE);
	assert_int_equal(feed_str(&h, "\r\n"), HH_DONE);
	assert_string_equal(h.hh_url, "/");
	hh_reset(&h);
}

static void
test_post_body(void **state)
{
	struct hhead	h;
	size_t		used;

	(void)state;
	hh_init(&h);
	assert_int_equal(feed_all(&h, POST_REQ, strlen(POST_REQ), &used),
	    HH_DONE);
	assert_int_equal(used, strlen(POST_REQ));
	assert_string_equal(h.hh_method, "POST");
	assert_string_equal(h.hh_path, "/call");
	assert_non_null(h.hh_body);
	assert_int_equal(h.hh_bodylen, 17);
	assert_string_equal(h.hh_body, "{\"phone\":\"+1555\"}");
	assert_string_equal(hh_get(&h, "content-length"), "17");
	hh_reset(&h);
	assert_null(h.hh_body);

	/* A head then a body that arrives later, in two pieces. */
	hh_init(&h);
	assert_int_equal(feed_str(&h, "POST /x HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 10\r\n\r\n0123"), HH_MORE);
	assert_int_equal(feed_str(&h, "456789"), HH_DONE);
	assert_int_equal(h.hh_bodylen, 10);
	assert_string_equal(h.hh_body, "0123456789");
	hh_reset(&h);
}

static void
test_chunked_body(void **state)
{
	struct hhead	h;
	size_t		used;

	(void)state;
	hh_init(&h);
	assert_int_equal(feed_all(&h, CHUNKED_REQ, strlen(CHUNKED_REQ),
	    &used), HH_DONE);
	assert_int_equal(used, strlen(CHUNKED_REQ));
	assert_int_equal(h.hh_bodylen, 11);
	assert_string_equal(h.hh_body, "hello world");
	assert_string_equal(h.hh_path, "/status-callback");
	hh_reset(&h);
}

/* Whole buffer and one byte at a time give the same request. */
static void
same_request(const char *req)
{
	struct hhead	a, b;
	size_t		ua, ub, len = strlen(req);
	int		i;

	hh_init(&a);
	hh_init(&b);
	assert_int_equal(feed_all(&a, req, len, &ua), HH_DONE);
	assert_int_equal(feed_bytes(&b, req, len, &ub), HH_DONE);
	assert_int_equal(ua, len);
	assert_int_equal(ub, len);
	assert_string_equal(a.hh_method, b.hh_method);
	assert_string_equal(a.hh_url, b.hh_url);
	assert_string_equal(a.hh_path, b.hh_path);
	assert_true((a.hh_query == NULL) == (b.hh_query == NULL));
	if (a.hh_query != NULL)
		assert_string_equal(a.hh_query, b.hh_query);
	assert_int_equal(a.hh_nhdr, b.hh_nhdr);
	for (i = 0; i < a.hh_nhdr; i++) {
		assert_string_equal(a.hh_hdr[i].hd_name, b.hh_hdr[i].hd_name);
		assert_string_equal(a.hh_hdr[i].hd_value,
		    b.hh_hdr[i].hd_value);
	}
	assert_int_equal(a.hh_keepalive, b.hh_keepalive);
	assert_int_equal(a.hh_bodylen, b.hh_bodylen);
	if (a.hh_bodylen > 0)
		assert_memory_equal(a.hh_body, b.hh_body, a.hh_bodylen);
	hh_reset(&a);
	hh_reset(&b);
}

static void
test_bytewise(void **state)
{
	(void)state;
	same_request(GET_REQ);
	same_request(POST_REQ);
	same_request(CHUNKED_REQ);
	same_request("GET /sessions?limit=10&offset=20 HTTP/1.0\r\n"
	    "Connection: keep-alive\r\nX-Long-Header-Name-For-Split: "
	    "a value, with commas; and = signs\r\n\r\n");
}

static void
test_header_lookup(void **state)
{
	struct hhead	h;

	(void)state;
	hh_init(&h);
	assert_int_equal(feed_str(&h, POST_REQ), HH_DONE);
	assert_string_equal(hh_get(&h, "Content-Type"), "application/json");
	assert_string_equal(hh_get(&h, "content-type"), "application/json");
	assert_string_equal(hh_get(&h, "CONTENT-TYPE"), "application/json");
	assert_string_equal(hh_get(&h, "cOnTeNt-LeNgTh"), "17");
	assert_string_equal(hh_get(&h, "host"), "example.test");
	assert_null(hh_get(&h, "Content"));
	assert_null(hh_get(&h, "Content-Type2"));
	assert_null(hh_get(&h, "X-Missing"));
	assert_null(hh_get(&h, ""));
	hh_reset(&h);
}

/* An empty value must not glue the next header name onto this one. */
static void
test_empty_header_value(void **state)
{
	struct hhead	h;

	(void)state;
	hh_init(&h);
	assert_int_equal(feed_str(&h, "GET / HTTP/1.1\r\nX-Empty:\r\n"
	    "Host: h\r\nX-Blank: \r\nAccept: a\r\n\r\n"), HH_DONE);
	assert_int_equal(h.hh_nhdr, 4);
	assert_string_equal(hh_get(&h, "Host"), "h");
	assert_string_equal(hh_get(&h, "Accept"), "a");
	assert_non_null(hh_get(&h, "X-Empty"));
	assert_string_equal(hh_get(&h, "X-Empty"), "");
	assert_non_null(hh_get(&h, "X-Blank"));
	assert_string_equal(hh_get(&h, "X-Blank"), "");
	hh_reset(&h);
}

static void
test_has_token(void **state)
{
	(void)state;
	assert_true(hh_has_token("keep-alive, Upgrade", "upgrade"));
	assert_true(hh_has_token("keep-alive, Upgrade", "Upgrade"));
	assert_true(hh_has_token("keep-alive, Upgrade", "keep-alive"));
	assert_true(hh_has_token("keep-alive, Upgrade", "KEEP-ALIVE"));
	assert_true(hh_has_token("Upgrade", "upgrade"));
	assert_true(hh_has_token("  upgrade  ", "upgrade"));
	assert_true(hh_has_token("a,b,\tupgrade", "upgrade"));
	assert_true(hh_has_token(",,upgrade,,", "upgrade"));
	assert_false(hh_has_token("keep-alive, Upgrade", "keep"));
	assert_false(hh_has_token("keep-alive, Upgrade", "alive"));
	assert_false(hh_has_token("keep-alive, Upgrade", "upgrad"));
	assert_false(hh_has_token("keep-alive, Upgrades", "upgrade"));
	assert_false(hh_has_token("keep-alive, xUpgrade", "upgrade"));
	assert_false(hh_has_token("", "upgrade"));
	assert_false(hh_has_token(NULL, "upgrade"));
	assert_false(hh_has_token("close", "upgrade"));
}

static void
test_query(void **state)
{
	struct hhead	h;

	(void)state;
	hh_init(&h);
	assert_int_equal(feed_str(&h, "GET /sessions?limit=10&x=%20y "
	    "HTTP/1.1\r\nHost: h\r\n\r\n"), HH_DONE);
	assert_string_equal(h.hh_path, "/sessions");
	assert_string_equal(h.hh_query, "limit=10&x=%20y");
	hh_reset(&h);

	hh_init(&h);
	assert_int_equal(feed_str(&h, "GET /a? HTTP/1.1\r\n\r\n"), HH_DONE);
	assert_string_equal(h.hh_path, "/a");
	assert_non_null(h.hh_query);
	assert_string_equal(h.hh_query, "");
	hh_reset(&h);

	hh_init(&h);
	assert_int_equal(feed_str(&h, "GET /a?b?c HTTP/1.1\r\n\r\n"),
	    HH_DONE);
	assert_string_equal(h.hh_path, "/a");
	assert_string_equal(h.hh_query, "b?c");
	hh_reset(&h);

	hh_init(&h);
	assert_int_equal(feed_str(&h, "GET /plain HTTP/1.1\r\n\r\n"),
	    HH_DONE);
	assert_string_equal(h.hh_path, "/plain");
	assert_null(h.hh_query);
	hh_reset(&h);
}

static void
test_keepalive(void **state)
{
	static const struct {
		const char	*req;
		int		 ka;
	} cases[] = {
		{ "GET / HTTP/1.1\r\n\r\n", 1 },
		{ "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0 },
		{ "GET / HTTP/1.0\r\n\r\n", 0 },
		{ "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1 },
	};
	struct hhead	h;
	size_t		i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		hh_init(&h);
		assert_int_equal(feed_str(&h, cases[i].req), HH_DONE);
		assert_int_equal(h.hh_keepalive, cases[i].ka);
		hh_reset(&h);
	}
}

static void
test_pipelining(void **state)
{
	const char	*two = POST_REQ "GET /second?q=2 HTTP/1.1\r\n"
			    "Host: other.test\r\n\r\n";
	struct hhead	h;
	size_t		used, first = strlen(POST_REQ), rest;

	(void)state;
	hh_init(&h);
	assert_int_equal(feed_all(&h, two, strlen(two), &used), HH_DONE);
	assert_int_equal(used, first);
	assert_string_equal(h.hh_path, "/call");
	assert_string_equal(h.hh_body, "{\"phone\":\"+1555\"}");
	/* Until hh_reset() the parser takes nothing more. */
	assert_int_equal(hh_feed(&h, two + first, strlen(two) - first,
	    &used), HH_DONE);
	assert_int_equal(used, 0);
	hh_reset(&h);
	assert_null(h.hh_body);
	rest = strlen(two) - first;
	assert_int_equal(feed_all(&h, two + first, rest, &used), HH_DONE);
	assert_int_equal(used, rest);
	assert_string_equal(h.hh_method, "GET");
	assert_string_equal(h.hh_path, "/second");
	assert_string_equal(h.hh_query, "q=2");
	assert_int_equal(h.hh_nhdr, 1);
	assert_string_equal(hh_get(&h, "host"), "other.test");
	assert_null(hh_get(&h, "content-length"));
	assert_null(h.hh_body);
	assert_int_equal(h.hh_keepalive, 1);
	hh_reset(&h);

	/* Three in a row, each after its own reset. */
	hh_init(&h);
	assert_int_equal(feed_str(&h, GET_REQ), HH_DONE);
	hh_reset(&h);
	assert_int_equal(feed_str(&h, CHUNKED_REQ), HH_DONE);
	assert_string_equal(h.hh_body, "hello world");
	hh_reset(&h);
	assert_int_equal(feed_str(&h, GET_REQ), HH_DONE);
	assert_string_equal(h.hh_path, "/health");
	assert_int_equal(h.hh_nhdr, 3);
	hh_reset(&h);
}

/*
 * The URL limit applies to each request on its own: a keep-alive
 * connection's earlier URL must not count against the next one.
 */
static void
test_pipelined_long_urls(void **state)
{
	static char	a[1500 + 64], b[1000 + 64];
	struct hhead	h;

	(void)state;
	req_with_url(a, 1500);
	req_with_url(b, 1000);
	hh_init(&h);
	assert_int_equal(feed_str(&h, a), HH_DONE);
	assert_int_equal(strlen(h.hh_url), 1500);
	hh_reset(&h);
	assert_int_equal(feed_str(&h, b), HH_DONE);
	assert_int_equal(h.hh_status, 0);
	assert_int_equal(strlen(h.hh_url), 1000);
	hh_reset(&h);
}

static void
test_upgrade(void **state)
{
	const char	*trail = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
	char		 buf[1024];
	struct hhead	 h;
	size_t		 used, hl = strlen(UPGRADE_HEAD);

	(void)state;
	snprintf(buf, sizeof(buf), "%s%s", UPGRADE_HEAD, trail);
	hh_init(&h);
	assert_int_equal(feed_all(&h, buf, strlen(buf), &used), HH_UPGRADE);
	assert_int_equal(used, hl);
	assert_int_equal(h.hh_upgrade, 1);
	assert_string_equal(h.hh_path, "/outbound-media-stream");
	assert_string_equal(hh_get(&h, "upgrade"), "websocket");
	assert_true(hh_has_token(hh_get(&h, "connection"), "upgrade"));
	assert_string_equal(hh_get(&h, "sec-websocket-key"),
	    "dGhlIHNhbXBsZSBub25jZQ==");
	assert_null(h.hh_body);
	/* Sticky: the frame bytes stay with the caller. */
	assert_int_equal(hh_feed(&h, buf + used, strlen(buf) - used, &used),
	    HH_UPGRADE);
	assert_int_equal(used, 0);
	hh_reset(&h);

	/* Upgrade: without Connection: upgrade is a plain request. */
	hh_init(&h);
	assert_int_equal(feed_str(&h, "GET /outbound-media-stream HTTP/1.1"
	    "\r\nUpgrade: websocket\r\n\r\n"), HH_DONE);
	assert_int_equal(h.hh_upgrade, 0);
	hh_reset(&h);
}

static void
test_upgrade_bytewise(void **state)
{
	char		 buf[1024];
	struct hhead	 h;
	size_t		 used, hl = strlen(UPGRADE_HEAD);

	(void)state;
	snprintf(buf, sizeof(buf), "%sXYZ", UPGRADE_HEAD);
	hh_init(&h);
	assert_int_equal(feed_bytes(&h, buf, strlen(buf), &used), HH_UPGRADE);
	assert_int_equal(used, hl);
	assert_int_equal(h.hh_upgrade, 1);
	assert_string_equal(hh_get(&h, "Sec-WebSocket-Version"), "13");
	hh_reset(&h);
}

/*
 * "GET /uuu... HTTP/1.1" with a path of n bytes, '/' included, in buf
 * (n + 64 bytes).
 */
static char *
req_with_url(char *buf, size_t n)
{
	const char	*tail = " HTTP/1.1\r\nHost: h\r\n\r\n";

	memcpy(buf, "GET ", 4);
	memset(buf + 4, 'u', n);
	buf[4] = '/';
	memcpy(buf + 4 + n, tail, strlen(tail) + 1);
	return buf;
}

/* n headers "X-Hnn: v" after the request line. */
static char *
req_with_headers(int n)
{
	size_t	cap = 64 + (size_t)n * 16, o;
	char	*s = malloc(cap);
	int	 i;

	assert_non_null(s);
	o = (size_t)snprintf(s, cap, "GET / HTTP/1.1\r\n");
	for (i = 0; i < n; i++)
		o += (size_t)snprintf(s + o, cap - o, "X-H%d: v\r\n", i);
	snprintf(s + o, cap - o, "\r\n");
	return s;
}

static void
test_head_too_large(void **state)
{
	static char	s[20000];
	struct hhead	h;
	size_t		i, o;

	(void)state;
	/* One header value of 9000 bytes. */
	o = (size_t)snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nX-Big: ");
	memset(s + o, 'b', 9000);
	o += 9000;
	memcpy(s + o, "\r\n\r\n", 5);
	expect_error(s, strlen(s), 431);
	expect_error_bytes(s, strlen(s), 431);
	/* Many small headers adding up past 8 KiB (under 64 of them). */
	o = (size_t)snprintf(s, sizeof(s), "GET / HTTP/1.1\r\n");
	for (i = 0; i < 60; i++) {
		o += (size_t)snprintf(s + o, sizeof(s) - o, "X-H%02zu: ", i);
		memset(s + o, 'v', 150);
		o += 150;
		o += (size_t)snprintf(s + o, sizeof(s) - o, "\r\n");
	}
	snprintf(s + o, sizeof(s) - o, "\r\n");
	assert_true(strlen(s) > 8192);
	expect_error(s, strlen(s), 431);
	expect_error_bytes(s, strlen(s), 431);
	/* A header that never ends, fed in pieces of 1000 bytes. */
	hh_init(&h);
	assert_int_equal(feed_str(&h, "GET / HTTP/1.1\r\nX-A: "), HH_MORE);
	memset(s, 'a', 1000);
	for (i = 0; i < 20; i++)
		if (hh_feed(&h, s, 1000, &o) != HH_MORE)
			break;
	assert_true(i < 20);
	assert_int_equal(h.hh_state, HH_ERROR);
	assert_int_equal(h.hh_status, 431);
	hh_reset(&h);

	/* Just under the limit is fine. */
	o = (size_t)snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nX-Big: ");
	memset(s + o, 'b', 8000);
	o += 8000;
	memcpy(s + o, "\r\n\r\n", 5);
	hh_init(&h);
	assert_int_equal(feed_str(&h, s), HH_DONE);
	assert_int_equal(strlen(hh_get(&h, "x-big")), 8000);
	hh_reset(&h);
}

static void
test_too_many_headers(void **state)
{
	struct hhead	h;
	char		*s;

	(void)state;
	s = req_with_headers(HH_MAX_HEADERS);
	hh_init(&h);
	assert_int_equal(feed_str(&h, s), HH_DONE);
	assert_int_equal(h.hh_nhdr, HH_MAX_HEADERS);
	assert_string_equal(hh_get(&h, "x-h63"), "v");
	hh_reset(&h);
	free(s);
	s = req_with_headers(HH_MAX_HEADERS + 1);
	expect_error(s, strlen(s), 431);
	expect_error_bytes(s, strlen(s), 431);
	free(s);
	s = req_with_headers(200);
	expect_error(s, strlen(s), 431);
	free(s);
}

static void
test_url_too_long(void **state)
{
	static char	s[5000 + 64];
	struct hhead	h;

	(void)state;
	req_with_url(s, HH_URL_MAX);
	hh_init(&h);
	assert_int_equal(feed_str(&h, s), HH_DONE);
	assert_int_equal(strlen(h.hh_url), HH_URL_MAX);
	hh_reset(&h);
	req_with_url(s, HH_URL_MAX + 1);
	expect_error(s, strlen(s), 414);
	expect_error_bytes(s, strlen(s), 414);
	req_with_url(s, 5000);
	expect_error(s, strlen(s), 414);
}

static void
test_content_length_too_large(void **state)
{
	const char	*head = "POST /call HTTP/1.1\r\nHost: h\r\n"
			    "Content-Length: 70000\r\n\r\n";
	struct hhead	 h;
	size_t		 used;

	(void)state;
	/* Refused at the head: no body byte was sent. */
	hh_init(&h);
	assert_int_equal(feed_all(&h, head, strlen(head), &used), HH_ERROR);
	assert_int_equal(h.hh_status, 413);
	assert_null(h.hh_body);
	hh_reset(&h);
	expect_error_bytes(head, strlen(head), 413);
	/* The largest allowed body is only waited for. */
	hh_init(&h);
	assert_int_equal(feed_str(&h, "POST /call HTTP/1.1\r\n"
	    "Content-Length: 65536\r\n\r\n"), HH_MORE);
	assert_int_equal(h.hh_status, 0);
	hh_reset(&h);
}

static void
test_chunked_too_large(void **state)
{
	struct hhead	 h;
	char		*chunk;
	size_t		 clen = 16384 + 16, o, i;
	enum hh_state	 st = HH_MORE;

	(void)state;
	chunk = malloc(clen);
	assert_non_null(chunk);
	o = (size_t)snprintf(chunk, clen, "4000\r\n");
	memset(chunk + o, 'c', 16384);
	o += 16384;
	memcpy(chunk + o, "\r\n", 2);
	o += 2;
	hh_init(&h);
	assert_int_equal(feed_str(&h, "POST /status-callback HTTP/1.1\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n"), HH_MORE);
	/* Four chunks make exactly 64 KiB, the fifth is one too many. */
	for (i = 0; i < 4; i++) {
		assert_int_equal(hh_feed(&h, chunk, o, &clen), HH_MORE);
		assert_int_equal(clen, o);
	}
	assert_int_equal(h.hh_bodylen, 65536);
	st = hh_feed(&h, chunk, o, &clen);
	assert_int_equal(st, HH_ERROR);
	assert_int_equal(h.hh_status, 413);
	hh_reset(&h);
	free(chunk);
}

/*
 * Feed each request whole and byte by byte; every one must end in
 * HH_ERROR with status st1 or st2.  All misses are listed together.
 */
static void
expect_statuses(const char *const *reqs, size_t n, int st1, int st2)
{
	struct hhead	h;
	char		msg[1024];
	size_t		i, used, o = 0;
	int		pass, st;

	msg[0] = '\0';
	for (i = 0; i < n; i++) {
		for (pass = 0; pass < 2; pass++) {
			hh_init(&h);
			st = pass == 0 ?
			    feed_all(&h, reqs[i], strlen(reqs[i]), &used) :
			    feed_bytes(&h, reqs[i], strlen(reqs[i]), &used);
			if ((st != HH_ERROR || (h.hh_status != st1 &&
			    h.hh_status != st2)) && o < sizeof(msg))
				o += (size_t)snprintf(msg + o, sizeof(msg) - o,
				    "\n  #%zu \"%.*s\"%s: state %d status %d",
				    i, (int)strcspn(reqs[i], "\r"), reqs[i],
				    pass ? " bytewise" : "", st, h.hh_status);
			hh_reset(&h);
		}
	}
	if (o > 0)
		fail_msg("not rejected with %d/%d:%s", st1, st2, msg);
}

static void
test_bad_request_line(void **state)
{
	static const char *const bad[] = {
		"GET / \r\n\r\n",
		"GET /a b HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 1\r\n"
		    "Content-Length: 2\r\n\r\nab",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
		    "zz\r\n",
	};
	/* Garbage where the method goes: 400, or 501 as for BREW. */
	static const char *const badmethod[] = {
		"GET\r\n\r\n",
		" GET / HTTP/1.1\r\n\r\n",
		"get / HTTP/1.1\r\n\r\n",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
	};
	/* Garbage where the version goes: 400 or 505. */
	static const char *const badtail[] = {
		"GET / HTTP/1.1 extra\r\n\r\n",
		"\r\n\r\n\r\nGET / HTTP/1.1 x\r\n\r\n",
	};

	(void)state;
	expect_statuses(bad, sizeof(bad) / sizeof(bad[0]), 400, 400);
	expect_statuses(badmethod, sizeof(badmethod) / sizeof(badmethod[0]),
	    400, 501);
	expect_statuses(badtail, sizeof(badtail) / sizeof(badtail[0]), 400,
	    505);
	expect_error("BREW /pot HTTP/1.1\r\n\r\n", 22, 501);
}

/* Only HTTP/1.0 and HTTP/1.1 are spoken here. */
static void
test_bad_version(void **state)
{
	static const char *const bad[] = {
		"GET / HTTP/1.x\r\n\r\n",
		"GET / HTTP/11\r\n\r\n",
		"GET / HTTP/1.10\r\n\r\n",
		"GET / FOO\r\n\r\n",
		"GET / http/1.1\r\n\r\n",
		"GET / HTTP/9.9\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n",
		"GET / HTTP/3.1\r\n\r\n",
		"GET / HTTP/0.9\r\n\r\n",
		"GET / HTTX/1.1\r\n\r\n",
		"GET /\r\n\r\n",			/* HTTP/0.9 form */
	};

	(void)state;
	expect_statuses(bad, sizeof(bad) / sizeof(bad[0]), 400, 505);
}

/* RFC 9112 5.1: whitespace between name and colon MUST get a 400. */
static void
test_space_before_colon(void **state)
{
	static const char *const bad[] = {
		"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length\t: 1\r\n\r\nx",
	};

	(void)state;
	expect_statuses(bad, sizeof(bad) / sizeof(bad[0]), 400, 400);
}

static void
test_nul_in_header(void **state)
{
	static const char name[] = "GET / HTTP/1.1\r\nX-\0A: v\r\n\r\n";
	static const char value[] = "GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n";
	static const char url[] = "GET /a\0b HTTP/1.1\r\n\r\n";
	struct hhead	h;
	size_t		used;

	(void)state;
	hh_init(&h);
	assert_int_equal(feed_all(&h, value, sizeof(value) - 1, &used),
	    HH_ERROR);
	assert_true(h.hh_status >= 400 && h.hh_status < 500);
	hh_reset(&h);
	hh_init(&h);
	assert_int_equal(feed_bytes(&h, value, sizeof(value) - 1, &used),
	    HH_ERROR);
	hh_reset(&h);
	hh_init(&h);
	assert_int_equal(feed_all(&h, name, sizeof(name) - 1, &used),
	    HH_ERROR);
	assert_true(h.hh_status >= 400 && h.hh_status < 500);
	hh_reset(&h);
	hh_init(&h);
	assert_int_equal(feed_all(&h, url, sizeof(url) - 1, &used),
	    HH_ERROR);
	assert_true(h.hh_status >= 400 && h.hh_status < 500);
	hh_reset(&h);
}

static void
test_bad_target(void **state)
{
	static const char *const bad[] = {
		"GET http://example.test/health HTTP/1.1\r\n\r\n",
		"GET * HTTP/1.1\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\n\r\n",
		"GET health HTTP/1.1\r\n\r\n",
		"GET ?x=1 HTTP/1.1\r\n\r\n",
		"CONNECT example.test:443 HTTP/1.1\r\n\r\n",
	};
	size_t	i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_error(bad[i], strlen(bad[i]), 400);
}

/*
 * hh_reset() is how a connection's parser is recycled and freed
 * (listener.c conn_free(), twilio_ws.c) and must work whatever state
 * the parser ended in.  Each case runs in a child so that an abort()
 * fails this test only.
 */
static void
test_reset_after_error(void **state)
{
	static const char *const bad[] = {
		"GET / HTTP/1.1 extra\r\n\r\n",		/* parser error */
		"BREW /pot HTTP/1.1\r\n\r\n",		/* 501 */
		"GET * HTTP/1.1\r\n\r\n",		/* callback: 400 */
		"POST / HTTP/1.1\r\nContent-Length: 70000\r\n\r\n",
	};
	struct hhead	h;
	char		msg[512];
	size_t		i, o = 0;
	pid_t		pid;
	int		status;

	(void)state;
	msg[0] = '\0';
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fflush(NULL);
		pid = fork();
		assert_true(pid != -1);
		if (pid == 0) {
			hh_init(&h);
			if (feed_str(&h, bad[i]) != HH_ERROR)
				_exit(3);
			hh_reset(&h);
			/* Recycled: a good request parses again. */
			if (feed_str(&h, GET_REQ) != HH_DONE)
				_exit(4);
			hh_reset(&h);
			_exit(0);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if ((!WIFEXITED(status) || WEXITSTATUS(status) != 0) &&
		    o < sizeof(msg))
			o += (size_t)snprintf(msg + o, sizeof(msg) - o,
			    "\n  \"%.*s\": %s %d",
			    (int)strcspn(bad[i], "\r"), bad[i],
			    WIFSIGNALED(status) ? "signal" : "exit",
			    WIFSIGNALED(status) ? WTERMSIG(status) :
			    WEXITSTATUS(status));
	}
	if (o > 0)
		fail_msg("hh_reset after HH_ERROR:%s", msg);
}

/* Whole and bytewise: HH_ERROR, this status, this reason. */
static void
expect_why(const char *req, int status, const char *why)
{
	struct hhead	h;
	size_t		used;
	int		pass;

	for (pass = 0; pass < 2; pass++) {
		hh_init(&h);
		if ((pass == 0 ? feed_all(&h, req, strlen(req), &used) :
		    feed_bytes(&h, req, strlen(req), &used)) != HH_ERROR)
			fail_msg("not rejected%s: \"%s\"", pass ?
			    " bytewise" : "", req);
		assert_int_equal(h.hh_status, status);
		if (why != NULL && strcmp(h.hh_error, why) != 0)
			fail_msg("\"%s\"%s: reason \"%s\", not \"%s\"", req,
			    pass ? " bytewise" : "", h.hh_error, why);
		hh_reset(&h);
	}
}

/* RFC 9112 2.2: CRLF ends every line of the head; a bare LF is a 400. */
static void
test_bare_lf(void **state)
{
	struct hhead	h;

	(void)state;
	expect_why("GET / HTTP/1.1\nHost: x\r\n\r\n", 400, "bare LF");
	expect_why("GET / HTTP/1.1\r\nHost: x\n\r\n", 400, "bare LF");
	expect_why("GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\n", 400,
	    "bare LF");
	expect_why("GET / HTTP/1.1\n\n", 400, "bare LF");
	expect_why("\nGET / HTTP/1.1\r\n\r\n", 400, "bare LF");
	expect_why("POST / HTTP/1.1\r\nContent-Length: 1\nX: y\r\n\r\nz",
	    400, "bare LF");
	/* A CR that no LF follows. */
	expect_why("GET / HTTP/1.1\r\nA: x\ry\r\n\r\n", 400, "bare CR");
	expect_why("GET / HTTP/1.1\rHost: x\r\n\r\n", 400, "bare CR");
	/* Empty lines (CRLF) before the request line are still skipped. */
	hh_init(&h);
	assert_int_equal(feed_str(&h, "\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
	    HH_DONE);
	hh_reset(&h);
	/* A body may hold any bytes, LF included. */
	hh_init(&h);
	assert_int_equal(feed_str(&h, "POST / HTTP/1.1\r\nContent-Length: 4"
	    "\r\n\r\na\nb\n"), HH_DONE);
	assert_int_equal(h.hh_bodylen, 4);
	hh_reset(&h);
	/* And a pipelined request after a good one is scanned afresh. */
	hh_init(&h);
	assert_int_equal(feed_str(&h, "GET /a HTTP/1.1\r\n\r\n"), HH_DONE);
	hh_reset(&h);
	assert_int_equal(feed_str(&h, "GET /b HTTP/1.1\nA: b\r\n\r\n"),
	    HH_ERROR);
	assert_string_equal(h.hh_error, "bare LF");
	hh_reset(&h);
}

/* RFC 9112 5.2 lets a server refuse obs-fold: it does, with a 400. */
static void
test_obs_fold(void **state)
{
	(void)state;
	expect_why("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400,
	    "obs-fold (a folded header line)");
	expect_why("GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n", 400,
	    "obs-fold (a folded header line)");
	expect_why("GET / HTTP/1.1\r\nA: b\r\nB: c\r\n   d\r\n\r\n", 400,
	    "obs-fold (a folded header line)");
	/* RFC 9112 2.2: whitespace between request line and first header. */
	expect_why("GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400,
	    "whitespace before the first header");
	/* Whitespace before the colon (RFC 9112 5.1). */
	expect_why("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, NULL);
	expect_why("POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n"
	    "0\r\n\r\n", 400, NULL);
}

/* RFC 9112 6.1 and 6.3: one "chunked", in HTTP/1.1, alone. */
static void
test_transfer_encoding(void **state)
{
	static const char *const ok[] = {
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
		    "3\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked \r\n\r\n"
		    "3\r\nabc\r\n0\r\n\r\n",
	};
	struct hhead	h;
	size_t		i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		hh_init(&h);
		assert_int_equal(feed_str(&h, ok[i]), HH_DONE);
		assert_int_equal(h.hh_bodylen, 3);
		assert_string_equal(h.hh_body, "abc");
		hh_reset(&h);
	}
	/* Folded: refused as obs-fold before the coding is looked at. */
	expect_why("POST / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
	    "0\r\n\r\n", 400, "obs-fold (a folded header line)");
	expect_why("POST / HTTP/1.1\r\nTransfer-Encoding: gzip,\r\n chunked"
	    "\r\n\r\n0\r\n\r\n", 400, "obs-fold (a folded header line)");
	expect_why("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
	    "Transfer-Encoding repeated");
	expect_why("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, NULL);
	/* With Content-Length, in either order. */
	expect_why("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
	    "Content-Length: 5\r\n\r\n0\r\n\r\n", 400, NULL);
	expect_why("POST / HTTP/1.1\r\nContent-Length: 5\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, NULL);
	expect_why("POST / HTTP/1.1\r\nContent-Length: 0\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, NULL);
	/* Codings other than chunked, lists, HTTP/1.0. */
	expect_why("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n"
	    "\r\n0\r\n\r\n", 400, "transfer coding other than chunked");
	expect_why("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked"
	    "\r\n\r\n0\r\n\r\n", 400, NULL);
	expect_why("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
	    400, NULL);
	expect_why("POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
	    400, NULL);
	expect_why("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "0\r\n\r\n", 400, "Transfer-Encoding in HTTP/1.0");
}

/* hh_expect_continue: HTTP/1.1, a body coming, 100-continue. */
static void
test_expect_continue(void **state)
{
	static const struct {
		const char	*req;
		int		 flag;
	} cases[] = {
		{ "POST / HTTP/1.1\r\nContent-Length: 3\r\n"
		    "Expect: 100-continue\r\n\r\n", 1 },
		{ "POST / HTTP/1.1\r\nExpect: 100-Continue \r\n"
		    "Transfer-Encoding: chunked\r\n\r\n", 1 },
		{ "POST / HTTP/1.1\r\nExpect: ,100-CONTINUE,\r\n"
		    "Content-Length: 3\r\n\r\n", 1 },
		/* no body: nothing to wait for */
		{ "POST / HTTP/1.1\r\nContent-Length: 0\r\n"
		    "Expect: 100-continue\r\n\r\n", 0 },
		{ "GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", 0 },
		/* RFC 9110 10.1.1: HTTP/1.0 ignores it */
		{ "POST / HTTP/1.0\r\nContent-Length: 3\r\n"
		    "Expect: 100-continue\r\n\r\n", 0 },
		/* no expectation, or an empty one */
		{ "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n", 0 },
		{ "POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect:\r\n\r\n",
		    0 },
	};
	struct hhead	h;
	size_t		i, used;
	enum hh_state	st;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		hh_init(&h);
		st = feed_str(&h, cases[i].req);
		if (st == HH_ERROR || !h.hh_headers_done ||
		    h.hh_expect_continue != cases[i].flag)
			fail_msg("#%zu: state %d status %d flag %d", i, st,
			    h.hh_status, h.hh_expect_continue);
		hh_reset(&h);
		assert_int_equal(h.hh_expect_continue, 0);
	}
	/* Set with the head, before any body byte; the body then comes. */
	hh_init(&h);
	assert_int_equal(feed_bytes(&h, cases[0].req, strlen(cases[0].req),
	    &used), HH_MORE);
	assert_int_equal(h.hh_expect_continue, 1);
	assert_int_equal(h.hh_headers_done, 1);
	assert_int_equal(feed_str(&h, "abc"), HH_DONE);
	assert_string_equal(h.hh_body, "abc");
	hh_reset(&h);
}

/* RFC 9110 10.1.1: any other expectation may get a 417; it does. */
static void
test_expect_other(void **state)
{
	(void)state;
	expect_why("POST / HTTP/1.1\r\nContent-Length: 3\r\n"
	    "Expect: 100-continued\r\n\r\nabc", 417, "unknown expectation");
	expect_why("POST / HTTP/1.1\r\nContent-Length: 3\r\n"
	    "Expect: 100-continue, foo\r\n\r\nabc", 417, NULL);
	expect_why("POST / HTTP/1.1\r\nContent-Length: 3\r\n"
	    "Expect: 100-continue\r\nExpect: bar\r\n\r\nabc", 417, NULL);
	expect_why("POST / HTTP/1.1\r\nContent-Length: 3\r\n"
	    "Expect: 100-continue=1\r\n\r\nabc", 417, NULL);
	expect_why("POST / HTTP/1.1\r\nContent-Length: 3\r\n"
	    "Expect: 100-continue x\r\n\r\nabc", 417, NULL);
	expect_why("GET / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", 417, NULL);
	expect_why("GET / HTTP/1.0\r\nExpect: foo\r\n\r\n", 417, NULL);
}

/* hh_count, lists over repeated headers, trimmed values, the WS key. */
static void
test_lists_and_keys(void **state)
{
	static const char *const badkeys[] = {
		"dGhlIHNhbXBsZSBub25jZQ=",		/* 23 */
		"dGhlIHNhbXBsZSBub25jZQ===",		/* 25 */
		"dGhlIHNhbXBsZSBub25jZQ",		/* no padding */
		"dGhlIHNhbXBsZSBub25jZR==",		/* bits in the pad */
		"dGhlIHNhbXBsZSBub25j-Q==",		/* base64url */
		"dGhlIHNhbXBsZSBub25j_Q==",
		"dGhlIHNhbXBsZSBub25jZQ=A",
		"dGhlIHNhbXBsZSBub2 jZQ==",
		"dGhlIHNhbXBsZSBub25jZXh4",		/* 18 bytes */
		"",
	};
	struct hhead	h;
	size_t		i;

	(void)state;
	hh_init(&h);
	assert_int_equal(feed_str(&h, "GET / HTTP/1.1\r\n"
	    "Upgrade: h2c\r\nConnection: keep-alive \r\n"
	    "Upgrade: foo, WebSocket\r\nConnection: upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==  \r\n\r\n"),
	    HH_UPGRADE);
	assert_int_equal(hh_count(&h, "upgrade"), 2);
	assert_int_equal(hh_count(&h, "Connection"), 2);
	assert_int_equal(hh_count(&h, "Host"), 0);
	assert_true(hh_list_has_token(&h, "Upgrade", "websocket"));
	assert_true(hh_list_has_token(&h, "connection", "Upgrade"));
	assert_false(hh_list_has_token(&h, "Connection", "close"));
	assert_false(hh_list_has_token(&h, "Host", "x"));
	/* hh_get is the first; trailing whitespace is not kept. */
	assert_string_equal(hh_get(&h, "Upgrade"), "h2c");
	assert_string_equal(hh_get(&h, "Connection"), "keep-alive");
	assert_true(hh_ws_key_ok(hh_get(&h, "Sec-WebSocket-Key")));
	assert_int_equal(h.hh_minor, 1);
	hh_reset(&h);
	assert_true(hh_ws_key_ok("AAAAAAAAAAAAAAAAAAAAAA=="));
	assert_true(hh_ws_key_ok("/+/+/+/+/+/+/+/+/+/+/w=="));
	assert_false(hh_ws_key_ok(NULL));
	for (i = 0; i < sizeof(badkeys) / sizeof(badkeys[0]); i++)
		if (hh_ws_key_ok(badkeys[i]))
			fail_msg("key \"%s\" taken", badkeys[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get),
		cmocka_unit_test(test_post_body),
		cmocka_unit_test(test_chunked_body),
		cmocka_unit_test(test_bytewise),
		cmocka_unit_test(test_header_lookup),
		cmocka_unit_test(test_empty_header_value),
		cmocka_unit_test(test_has_token),
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_keepalive),
		cmocka_unit_test(test_pipelining),
		cmocka_unit_test(test_pipelined_long_urls),
		cmocka_unit_test(test_upgrade),
		cmocka_unit_test(test_upgrade_bytewise),
		cmocka_unit_test(test_head_too_large),
		cmocka_unit_test(test_too_many_headers),
		cmocka_unit_test(test_url_too_long),
		cmocka_unit_test(test_content_length_too_large),
		cmocka_unit_test(test_chunked_too_large),
		cmocka_unit_test(test_bad_request_line),
		cmocka_unit_test(test_bad_version),
		cmocka_unit_test(test_space_before_colon),
		cmocka_unit_test(test_nul_in_header),
		cmocka_unit_test(test_bad_target),
		cmocka_unit_test(test_reset_after_error),
		cmocka_unit_test(test_bare_lf),
		cmocka_unit_test(test_obs_fold),
		cmocka_unit_test(test_transfer_encoding),
		cmocka_unit_test(test_expect_continue),
		cmocka_unit_test(test_expect_other),
		cmocka_unit_test(test_lists_and_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
