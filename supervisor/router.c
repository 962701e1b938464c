/*
 * router.c - the route table of the supervisor's HTTP API, API token
 * and Twilio signature checks, and the stream-upgrade decision.  Runs
 * in the supervisor.  Answers 404 for an unknown path, 405 (with Allow)
 * for a known path and the wrong method, 401/403 for failed auth.
 */
#include <string.h>
#include <strings.h>

#include "log.h"
#include "twilio.h"
#include "util.h"
#include "supervisor.h"

#define STREAM_PATH	"/outbound-media-stream"

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
	size_t	i;
	int	path_known = 0;

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
	const char	*key, *ver, *sig;

	if (strcmp(h->hh_method, "GET") != 0) {
		conn_respond_json_error(cn, 405, "method not allowed");
		return 0;
	}
	key = hh_get(h, "Sec-WebSocket-Key");
	ver = hh_get(h, "Sec-WebSocket-Version");
	if (!hh_has_token(hh_get(h, "Upgrade"), "websocket") ||
	    key == NULL || strlen(key) != 24 || ver == NULL ||
	    strcmp(ver, "13") != 0) {
		log_info("%s: stream upgrade refused: not a WebSocket "
		    "version 13 handshake", cn->cn_addr);
		conn_respond(cn, 400, "text/plain", "bad WebSocket handshake\n",
		    24, "Sec-WebSocket-Version: 13\r\n");
		return 0;
	}
	sig = hh_get(h, "X-Twilio-Signature");
	if (sig == NULL || !twilio_sig_check_stream(sv.sv_cf->twilio_auth_token,
	    sv.sv_cf->stream_url, sig)) {
		metrics.m_refused_sig++;
		log_warnx("%s: stream upgrade refused: bad X-Twilio-Signature",
		    cn->cn_addr);
		conn_respond_json_error(cn, 403, "forbidden");
		return 0;
	}
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

/* A complete Upgrade head: hand the stream to a worker, or answer. */
void
router_upgrade(struct conn *cn, struct hhead *h)
{
	cn->cn_close_after = 1;
	if (strcmp(h->hh_path, STREAM_PATH) != 0) {
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
	conn_detach(cn);
}
