/*
 * test_router.c - the supervisor's route table and its auth decisions,
 * with the connection layer replaced by recorders: what status each
 * request would be answered with, and whether a stream upgrade would be
 * handed to a worker.  Links supervisor/router.c, common/httphead.c,
 * common/twilio.c, common/config.c and common/util.c.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "log.h"
#include "twilio.h"
#include "supervisor.h"

/* --- recorders standing in for listener.c, pool.c and friends --- */
struct supervisor sv;
struct metrics metrics;
static int	last_status;
static int	handled;	/* 1 health, 2 metrics */
static int	handed_off;
static int	detached;
static unsigned	busy;
static int	handoff_rc;

static const char *last_extra;
void conn_respond(struct conn *c, int code, const char *t, const char *b,
    size_t l, const char *x) { (void)c, (void)t, (void)b, (void)l;
	last_status = code; last_extra = x; }
void conn_respond_json_error(struct conn *c, int code, const char *m)
{ (void)c, (void)m; last_status = code; }
void conn_detach(struct conn *c) { (void)c; detached = 1; }
void api_health(struct conn *c, struct hhead *h) { (void)c, (void)h;
	handled = 1; last_status = 200; }
void api_metrics(struct conn *c, struct hhead *h) { (void)c, (void)h;
	handled = 2; last_status = 200; }
void api_ready(struct conn *c, struct hhead *h) { (void)c, (void)h;
	handled = 8; last_status = 200; }
void api_sessions(struct conn *c, struct hhead *h) { (void)c, (void)h;
	handled = 3; last_status = 200; }
void api_call(struct conn *c, struct hhead *h) { (void)c, (void)h;
	handled = 4; last_status = 200; }
void api_call_health(struct conn *c, struct hhead *h) { (void)c, (void)h;
	handled = 5; last_status = 200; }
void api_twiml(struct conn *c, struct hhead *h) { (void)c, (void)h;
	handled = 6; last_status = 200; }
void api_status_callback(struct conn *c, struct hhead *h) { (void)c,
	(void)h; handled = 7; last_status = 204; }
unsigned pool_count(enum w_state s) { return s == W_BUSY ? busy : 0; }
int pool_handoff(struct conn *c) { (void)c; handed_off = 1;
	return handoff_rc; }
void log_warnx(const char *f, ...) { (void)f; }
void log_info(const char *f, ...) { (void)f; }

static struct config	cf;
static struct conn	cn;
static struct hhead	hh;

static int
setup(void **state)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&cn.cn_peer;

	(void)state;
	memset(&cf, 0, sizeof(cf));
	cf.twilio_auth_token = "f3a1c0de5eed0ddba11c0ffee0dd5ea1";
	cf.stream_url = "wss://bridge.example.org/outbound-media-stream";
	cf.api_token = "s3cret";
	cf.max_calls = 2;
	sv.sv_cf = &cf;
	sv.sv_state = SV_RUNNING;
	memset(&cn, 0, sizeof(cn));
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, "192.0.2.7", &sin->sin_addr);
	last_status = handled = handed_off = detached = 0;
	busy = 0;
	handoff_rc = 0;
	return 0;
}

/* Parse a request into hh; returns the parser state. */
static enum hh_state
req(const char *text)
{
	size_t	used;

	hh_reset(&hh);
	hh_init(&hh);
	return hh_feed(&hh, text, strlen(text), &used);
}

static void
dispatch(const char *text)
{
	enum hh_state st = req(text);

	if (st == HH_UPGRADE)
		router_upgrade(&cn, &hh);
	else {
		assert_int_equal(st, HH_DONE);
		router_dispatch(&cn, &hh);
	}
	hh_reset(&hh);
}

static void
test_health_and_unknown(void **state)
{
	(void)state;
	dispatch("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_int_equal(last_status, 200);
	assert_int_equal(handled, 1);
	dispatch("GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_int_equal(last_status, 404);
	dispatch("POST /health HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(last_status, 405);
	dispatch("DELETE /metrics HTTP/1.1\r\n\r\n");
	assert_int_equal(last_status, 405);
	dispatch("GET /health?x=1 HTTP/1.1\r\n\r\n");
	assert_int_equal(last_status, 200);
}

static void
test_api_routes(void **state)
{
	(void)state;
	dispatch("GET /call HTTP/1.1\r\n\r\n");
	assert_int_equal(last_status, 405);
	dispatch("POST /call HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
	assert_int_equal(last_status, 401);
	assert_int_equal(handled, 0);
	dispatch("POST /call HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n"
	    "Content-Length: 2\r\n\r\n{}");
	assert_int_equal(handled, 4);
	dispatch("POST /call/health-check HTTP/1.1\r\nAuthorization: Bearer "
	    "s3cret\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(handled, 5);
	dispatch("GET /sessions HTTP/1.1\r\n\r\n");
	assert_int_equal(last_status, 401);
	dispatch("GET /sessions HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n"
	    "\r\n");
	assert_int_equal(handled, 3);
	/* Twilio webhooks: no token; the handlers check the signature. */
	dispatch("POST /twiml HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(handled, 6);
	dispatch("POST /status-callback HTTP/1.1\r\nContent-Length: 0\r\n"
	    "\r\n");
	assert_int_equal(handled, 7);
	dispatch("GET /twiml HTTP/1.1\r\n\r\n");
	assert_int_equal(last_status, 405);
}

static void
test_metrics_token(void **state)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&cn.cn_peer;

	(void)state;
	dispatch("GET /metrics HTTP/1.1\r\n\r\n");
	assert_int_equal(last_status, 401);
	dispatch("GET /metrics HTTP/1.1\r\nAuthorization: Bearer wrong\r\n\r\n");
	assert_int_equal(last_status, 401);
	dispatch("GET /metrics HTTP/1.1\r\nAuthorization: Bearer s3cre\r\n\r\n");
	assert_int_equal(last_status, 401);
	dispatch("GET /metrics HTTP/1.1\r\nAuthorization: Basic s3cret\r\n\r\n");
	assert_int_equal(last_status, 401);
	assert_int_equal(handled, 0);
	dispatch("GET /metrics HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n");
	assert_int_equal(last_status, 200);
	assert_int_equal(handled, 2);
	/* No token configured: loopback only. */
	cf.api_token = NULL;
	handled = 0;
	dispatch("GET /metrics HTTP/1.1\r\n\r\n");
	assert_int_equal(last_status, 403);
	assert_int_equal(handled, 0);
	inet_pton(AF_INET, "127.0.0.1", &sin->sin_addr);
	dispatch("GET /metrics HTTP/1.1\r\n\r\n");
	assert_int_equal(last_status, 200);
}

#define UPG(sig) "GET /outbound-media-stream HTTP/1.1\r\nHost: 127.0.0.1\r\n" \
	"Upgrade: websocket\r\nConnection: Upgrade\r\n" \
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" \
	"Sec-WebSocket-Version: 13\r\n" sig "\r\n"
/* protocols.md 1.10 V2 */
#define GOODSIG "X-Twilio-Signature: wSyspFgci7zouuPCv9sDcrZGLwE=\r\n"

static void
test_stream_upgrade(void **state)
{
	(void)state;
	dispatch(UPG(GOODSIG));
	assert_int_equal(handed_off, 1);
	assert_int_equal(detached, 1);
	assert_int_equal(last_status, 0);	/* nothing written */
}

static void
test_stream_refusals(void **state)
{
	(void)state;
	dispatch(UPG(""));
	assert_int_equal(last_status, 403);
	dispatch(UPG("X-Twilio-Signature: wSyspFgci7zouuPCv9sDcrZGLwF=\r\n"));
	assert_int_equal(last_status, 403);
	cf.stream_url = "wss://other.example.org/outbound-media-stream";
	dispatch(UPG(GOODSIG));
	assert_int_equal(last_status, 403);
	cf.stream_url = "wss://bridge.example.org/outbound-media-stream";
	assert_int_equal(handed_off, 0);
	/* Plain GET without upgrade. */
	dispatch("GET /outbound-media-stream HTTP/1.1\r\n\r\n");
	assert_int_equal(last_status, 426);
	/* Wrong WebSocket version (RFC 6455 4.4: 426) / missing key. */
	dispatch("GET /outbound-media-stream HTTP/1.1\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" GOODSIG "\r\n");
	assert_int_equal(last_status, 426);
	dispatch("GET /outbound-media-stream HTTP/1.1\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
	    GOODSIG "\r\n");
	assert_int_equal(last_status, 400);
	assert_int_equal(handed_off, 0);
	/* Capacity, draining, no worker. */
	busy = 2;
	dispatch(UPG(GOODSIG));
	assert_int_equal(last_status, 503);
	busy = 0;
	sv.sv_state = SV_DRAINING;
	dispatch(UPG(GOODSIG));
	assert_int_equal(last_status, 503);
	assert_int_equal(handed_off, 0);
	sv.sv_state = SV_RUNNING;
	handoff_rc = -1;
	dispatch(UPG(GOODSIG));
	assert_int_equal(handed_off, 1);
	assert_int_equal(detached, 0);
	assert_int_equal(last_status, 503);
}

/* RFC 6455 4.2.1 and 4.4, one deviation at a time from UPG(GOODSIG). */
static void
test_ws_handshake(void **state)
{
	static const struct {
		const char	*req;
		int		 status;
	} cases[] = {
		{ "GET /outbound-media-stream HTTP/1.0\r\nUpgrade: websocket\r\n"
		    "Connection: Upgrade\r\n"
		    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		    "Sec-WebSocket-Version: 13\r\n" GOODSIG "\r\n", 400 },
		{ "GET /outbound-media-stream HTTP/1.1\r\nUpgrade: websocket\r\n"
		    "Connection: Upgrade\r\n"
		    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		    "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
		    "Sec-WebSocket-Version: 13\r\n" GOODSIG "\r\n", 400 },
		{ "GET /outbound-media-stream HTTP/1.1\r\nUpgrade: websocket\r\n"
		    "Connection: Upgrade\r\n"
		    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ!==\r\n"
		    "Sec-WebSocket-Version: 13\r\n" GOODSIG "\r\n", 400 },
		{ "GET /outbound-media-stream HTTP/1.1\r\nUpgrade: websocket\r\n"
		    "Connection: Upgrade\r\n"
		    "Sec-WebSocket-Key: 0123456789abcdefghijklmn\r\n"
		    "Sec-WebSocket-Version: 13\r\n" GOODSIG "\r\n", 400 },
		{ "GET /outbound-media-stream HTTP/1.1\r\nUpgrade: h2c\r\n"
		    "Connection: Upgrade\r\n"
		    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		    "Sec-WebSocket-Version: 13\r\n" GOODSIG "\r\n", 400 },
		{ "GET /outbound-media-stream HTTP/1.1\r\nUpgrade: websocket\r\n"
		    "Connection: Upgrade\r\n"
		    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		    "Sec-WebSocket-Version: 13\r\n"
		    "Sec-WebSocket-Version: 13\r\n" GOODSIG "\r\n", 426 },
		{ "GET /outbound-media-stream HTTP/1.1\r\nUpgrade: websocket\r\n"
		    "Connection: Upgrade\r\n"
		    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		    GOODSIG "\r\n", 426 },
		/* Repeated Upgrade and Connection make one list each. */
		{ "GET /outbound-media-stream HTTP/1.1\r\nUpgrade: h2c\r\n"
		    "Connection: keep-alive\r\nUpgrade: WebSocket\r\n"
		    "Connection: upgrade\r\n"
		    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		    "Sec-WebSocket-Version: 13\r\n" GOODSIG "\r\n", 0 },
	};
	size_t	i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		last_status = handed_off = 0;
		last_extra = NULL;
		dispatch(cases[i].req);
		if (last_status != cases[i].status ||
		    handed_off != (cases[i].status == 0))
			fail_msg("#%zu: status %d (want %d), handed off %d", i,
			    last_status, cases[i].status, handed_off);
		if (cases[i].status == 426 && (last_extra == NULL ||
		    strstr(last_extra, "Sec-WebSocket-Version: 13\r\n") ==
		    NULL))
			fail_msg("#%zu: 426 without Sec-WebSocket-Version", i);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_health_and_unknown, setup),
		cmocka_unit_test_setup(test_metrics_token, setup),
		cmocka_unit_test_setup(test_api_routes, setup),
		cmocka_unit_test_setup(test_stream_upgrade, setup),
		cmocka_unit_test_setup(test_stream_refusals, setup),
		cmocka_unit_test_setup(test_ws_handshake, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
