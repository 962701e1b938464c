/*
 * router.c - the route table of the supervisor's HTTP API, API token
 * and Twilio signature checks, and the stream-upgrade decision.  Runs
 * in the supervisor.  Answers 404 for an unknown path, 405 (with Allow)
 * for a known path and the wrong method, 401/403 for failed auth.
 */
#include <string.h>
#include <strings.h>

#include "log.h"
#include "streamtok.h"
#include "twilio.h"
#include "util.h"
#include "supervisor.h"

/* Per-call stream URLs handed to a worker, each taken once. */
#define TAKEN_MAX	4096
#define TAKEN_TTL_NS	(6ULL * 3600 * 1000000000ULL)

static struct taken {
	char		 tk_sid[40];
	uint64_t	 tk_t;
} taken[TAKEN_MAX];
static size_t	 taken_next;

enum route_auth {
	RA_NONE,
	RA_TOKEN
};

struct route {
	const char	*rt_method;
	const char	*rt_path;
	enum route_auth	 rt_auth;
	void		(*rt_fn)(struct conn *, struct hhead *);
};

static const struct route routes[] = {
	{ "GET", "/health", RA_NONE, api_health },
	{ "GET", "/ready", RA_NONE, api_ready },
	{ "GET", "/metrics", RA_TOKEN, api_metrics },
	{ "GET", "/sessions", RA_TOKEN, api_sessions },
	{ "POST", "/call", RA_TOKEN, api_call },
	{ "POST", "/call/health-check", RA_TOKEN, api_call_health },
	{ "POST", "/twiml", RA_NONE, api_twiml },	/* Twilio-signed */
	{ "POST", "/status-callback", RA_NONE, api_status_callback },
	{ "GET", STREAM_PATH, RA_NONE, NULL },	/* upgrade only */
};

static int	router_upgrade_ok(struct conn *, struct hhead *);
static int	router_stream_auth(struct conn *, struct hhead *);
static struct taken *taken_find(const char *);

int
router_token_ok(struct conn *cn, struct hhead *h)
{
	const char	*auth;

	if (!config_has_api_token(sv.sv_cf)) {
		if (is_loopback_addr(&cn->cn_peer))
			return 1;
		conn_respond_json_error(cn, 403, "API token not configured: "
		    "loopback clients only");
		return 0;
	}
	auth = hh_get(h, "Authorization");
	if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0 ||
	    !ct_streq(auth + 7, sv.sv_cf->api_token)) {
		log_info("%s: %s %s: missing or wrong API token", cn->cn_addr,
		    h->hh_method, h->hh_path);
		conn_respond_json_error(cn, 401, "unauthorized");
		return 0;
	}
	return 1;
}

void
router_dispatch(struct conn *cn, struct hhead *h)
{
	const char	*tok;
	size_t		 i;
	int		 path_known = 0;

	if (stream_route(h->hh_path, &tok) == SR_CALL) {
		if (strcmp(h->hh_method, "GET") != 0)
			conn_respond_json_error(cn, 405, "method not allowed");
		else
			conn_respond(cn, 426, "text/plain",
			    "WebSocket upgrade required\n", 27,
			    "Upgrade: websocket\r\n");
		return;
	}
	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *rt = &routes[i];
		if (strcmp(rt->rt_path, h->hh_path) != 0)
			continue;
		path_known = 1;
		if (strcmp(rt->rt_method, h->hh_method) != 0)
			continue;
		if (rt->rt_fn == NULL) {
			conn_respond(cn, 426, "text/plain",
			    "WebSocket upgrade required\n", 27,
			    "Upgrade: websocket\r\n");
			return;
		}
		if (rt->rt_auth == RA_TOKEN && !router_token_ok(cn, h))
			return;
		rt->rt_fn(cn, h);
		return;
	}
	if (path_known)
		conn_respond_json_error(cn, 405, "method not allowed");
	else
		conn_respond_json_error(cn, 404, "not found");
}

static int
router_upgrade_ok(struct conn *cn, struct hhead *h)
{
	const char	*key, *ver, *why = NULL;

	if (strcmp(h->hh_method, "GET") != 0) {
		conn_respond_json_error(cn, 405, "method not allowed");
		return 0;
	}
	/* RFC 6455 4.2.1; Upgrade and Connection are lists (RFC 9110 5.3). */
	key = hh_get(h, "Sec-WebSocket-Key");
	ver = hh_get(h, "Sec-WebSocket-Version");
	if (h->hh_minor < 1)
		why = "not HTTP/1.1";
	else if (!hh_list_has_token(h, "Upgrade", "websocket"))
		why = "Upgrade without websocket";
	else if (!hh_list_has_token(h, "Connection", "Upgrade"))
		why = "Connection without Upgrade";
	else if (hh_count(h, "Sec-WebSocket-Version") != 1 ||
	    strcmp(ver, "13") != 0) {
		/* RFC 6455 4.4: say which version we speak. */
		log_info("%s: stream upgrade refused: not WebSocket version 13",
		    cn->cn_addr);
		conn_respond(cn, 426, "text/plain",
		    "WebSocket version 13 only\n", 26,
		    "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
		return 0;
	} else if (hh_count(h, "Sec-WebSocket-Key") != 1 || !hh_ws_key_ok(key))
		why = "bad Sec-WebSocket-Key";
	if (why != NULL) {
		log_info("%s: stream upgrade refused: %s", cn->cn_addr, why);
		conn_respond(cn, 400, "text/plain", "bad WebSocket handshake\n",
		    24, NULL);
		return 0;
	}
	if (!router_stream_auth(cn, h))
		return 0;
	if (sv.sv_state != SV_RUNNING) {
		conn_respond_json_error(cn, 503, "shutting down");
		return 0;
	}
	if (pool_count(W_BUSY) >= (unsigned)sv.sv_cf->max_calls) {
		metrics.m_refused_capacity++;
		log_warnx("%s: stream refused: %ld calls in progress (max "
		    "calls)", cn->cn_addr, sv.sv_cf->max_calls);
		conn_respond_json_error(cn, 503, "at capacity");
		return 0;
	}
	return 1;
}

/*
 * The Twilio signature over the URL the stream came to.  A per-call
 * URL must also carry a token this auth token made, for a call whose
 * stream has not been taken yet: a replayed upgrade is refused here,
 * before a worker is used.
 */
static int
router_stream_auth(struct conn *cn, struct hhead *h)
{
	const char	*sig, *tok, *why = NULL;
	char		 url[1400], sid[40];
	sig = hh_get(h, "X-Twilio-Signature");
	if (stream_route(h->hh_path, &tok) == SR_CALL) {
		if (snprintf(url, sizeof(url), "%s/%s", sv.sv_cf->stream_url,
		    tok) >= (int)sizeof(url))
			why = "URL too long";
		else if (!stream_token_check(sv.sv_cf->twilio_auth_token, tok,
		    sid, sizeof(sid)))
			why = "not a stream URL of ours";
	} else
		strlcpy_n(url, sv.sv_cf->stream_url, sizeof(url));
	if (why == NULL && (sig == NULL ||
	    !twilio_sig_check_stream(sv.sv_cf->twilio_auth_token, url, sig)))
		why = "bad X-Twilio-Signature";
	if (why == NULL && tok != NULL && taken_find(sid) != NULL)
		why = "this call's stream was taken already (a replay?)";
	if (why == NULL)
		return 1;
	metrics.m_refused_sig++;
	log_warnx("%s: stream upgrade refused: %s", cn->cn_addr, why);
	conn_respond_json_error(cn, 403, "forbidden");
	return 0;
}

static struct taken *
taken_find(const char *sid)
{
	uint64_t	now = now_mono_ns();
	size_t		i;

	for (i = 0; i < TAKEN_MAX; i++)
		if (taken[i].tk_sid[0] != '\0' &&
		    now - taken[i].tk_t < TAKEN_TTL_NS &&
		    strcmp(taken[i].tk_sid, sid) == 0)
			return &taken[i];
	return NULL;
}

/* A complete Upgrade head: hand the stream to a worker, or answer. */
void
router_upgrade(struct conn *cn, struct hhead *h)
{
	const char	*tok;
	char		 sid[40];
	enum stream_route r;

	cn->cn_close_after = 1;
	if ((r = stream_route(h->hh_path, &tok)) == SR_NONE) {
		router_dispatch(cn, h);
		return;
	}
	if (!router_upgrade_ok(cn, h))
		return;
	if (pool_handoff(cn) == -1) {
		metrics.m_handoff_fail++;
		conn_respond_json_error(cn, 503, "no worker available");
		return;
	}
	if (r == SR_CALL && stream_token_check(sv.sv_cf->twilio_auth_token,
	    tok, sid, sizeof(sid))) {
		strlcpy_n(taken[taken_next].tk_sid, sid,
		    sizeof(taken[taken_next].tk_sid));
		taken[taken_next].tk_t = now_mono_ns();
		taken_next = (taken_next + 1) % TAKEN_MAX;
	}
	conn_detach(cn);
}
