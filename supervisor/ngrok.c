/*
 * ngrok.c - USE_DYNAMIC_NGROK: ask the local ngrok agent's API for the
 * https tunnel to our port and derive BASE_URL, TWILIO_URL and
 * STREAM_URL from it, as the original did for development.  Runs in the
 * supervisor at start, retrying a bounded number of times; until it
 * succeeds POST /call answers 503 and streams are refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "evcurl.h"
#include "log.h"
#include "util.h"
#include "supervisor.h"

#define NGROK_TRIES	15
#define NGROK_WAIT_MS	1000

static struct event	*ev_retry;
static int		 tries;

static void	ngrok_ask(int, short, void *);
static void	ngrok_got(const struct evcurl_resp *, void *);

/* The https tunnel whose local address ends in ":port" (or is "port"). */
int
ngrok_pick(const char *body, size_t len, long port, char *out, size_t cap)
{
	json_t		*o, *t, *tun;
	const char	*pub, *addr;
	char		 suffix[16];
	size_t		 i, al, sl;
	int		 rc = -1;

	snprintf(suffix, sizeof(suffix), ":%ld", port);
	sl = strlen(suffix);
	if ((o = json_loadb(body, len, 0, NULL)) == NULL)
		return -1;
	t = json_object_get(o, "tunnels");
	for (i = 0; json_is_array(t) && i < json_array_size(t); i++) {
		tun = json_array_get(t, i);
		pub = json_string_value(json_object_get(tun, "public_url"));
		addr = json_string_value(json_object_get(json_object_get(tun,
		    "config"), "addr"));
		if (pub == NULL || addr == NULL ||
		    strncmp(pub, "https://", 8) != 0)
			continue;
		al = strlen(addr);
		if ((al >= sl && strcmp(addr + al - sl, suffix) == 0) ||
		    strcmp(addr, suffix + 1) == 0) {
			if (strlen(pub) < cap && strchr(pub + 8, '/') == NULL) {
				strlcpy_n(out, pub, cap);
				rc = 0;
			}
			break;
		}
	}
	json_decref(o);
	return rc;
}

void
ngrok_start(void)
{
	if ((ev_retry = evtimer_new(sv.sv_base, ngrok_ask, NULL)) == NULL)
		fatalx("ngrok: cannot add a timer");
	ngrok_ask(-1, 0, NULL);
}

static void
ngrok_retry(const char *why)
{
	struct timeval	tv = { NGROK_WAIT_MS / 1000, 0 };

	if (++tries >= NGROK_TRIES) {
		log_warnx("ngrok: no https tunnel to port %ld after %d tries "
		    "(%s): POST /call stays unavailable; set STREAM_URL and "
		    "TWILIO_URL or start ngrok, then reload", sv.sv_cf->port,
		    tries, why);
		return;
	}
	evtimer_add(ev_retry, &tv);
}

static void
ngrok_ask(int fd, short ev, void *arg)
{
	struct evcurl_req	rq;
	char			url[1024];

	(void)fd, (void)ev, (void)arg;
	memset(&rq, 0, sizeof(rq));
	snprintf(url, sizeof(url), "%s/api/tunnels", sv.sv_cf->ngrok_api_url);
	rq.rq_method = "GET";
	rq.rq_url = url;
	rq.rq_headers[0] = "Accept: application/json";
	rq.rq_timeout_ms = 2000;
	if (evcurl_start(sv.sv_ec, &rq, ngrok_got, NULL) == -1)
		ngrok_retry("request not started");
}

static void
ngrok_got(const struct evcurl_resp *r, void *arg)
{
	struct config	*cf = sv.sv_cf;
	char		 pub[512], stream[600];

	(void)arg;
	if (r->er_failed || r->er_status != 200) {
		ngrok_retry(r->er_failed ? r->er_error : "bad status");
		return;
	}
	if (ngrok_pick(r->er_body, r->er_len, cf->port, pub, sizeof(pub)) ==
	    -1) {
		ngrok_retry("no matching tunnel");
		return;
	}
	snprintf(stream, sizeof(stream), "wss://%s/outbound-media-stream",
	    pub + 8);
	free(cf->base_url);
	free(cf->twilio_url);
	free(cf->stream_url);
	cf->base_url = strdup(pub);
	cf->twilio_url = strdup(pub);
	cf->stream_url = strdup(stream);
	if (cf->base_url == NULL || cf->twilio_url == NULL ||
	    cf->stream_url == NULL)
		fatalx("ngrok: out of memory");
	log_info("ngrok: public URL %s, stream URL %s", pub, stream);
	/* The fork server and idle workers hold the old URLs: replace. */
	if (forksrv_start() == -1)
		log_warnx("ngrok: cannot start a new fork server");
	pool_drain_idle();
	pool_refill();
}
