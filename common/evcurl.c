/*
 * evcurl.c - owns struct evcurl (one curl multi handle driven by a
 * libevent base: one event per socket curl asks for, one timer) and
 * struct ec_xfer (one easy handle per request, its header list and its
 * bounded response body).  Runs in whichever process makes outbound
 * HTTP(S) calls (the Twilio REST API, webhooks); peers are the remote
 * servers only.  TLS_CA_FILE certificates are read once in evcurl_new()
 * and added to each new SSL_CTX's store next to the system anchors; or,
 * from evcurl_new_store(), every SSL_CTX uses one shared store instead.
 * Logs nothing: URLs may carry credentials and bodies carry call data,
 * so errors go back to the caller as short fixed strings.
 */
#include <sys/queue.h>
#include <sys/time.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "dns.h"
#include "evcurl.h"
#include "util.h"

#define EC_CONNECT_TIMEOUT_MS	5000L
#define EC_DEFAULT_TIMEOUT_MS	30000L
#define EC_BODY_CHUNK		4096

/* One socket curl asked us to watch; lives in ec_socks until REMOVE. */
struct ec_sock {
	struct event		*es_ev;
	TAILQ_ENTRY(ec_sock)	 es_entry;
};

/* One started request; lives in ec_xfers until its callback has run. */
struct ec_xfer {
	struct evcurl		*ex_ec;
	CURL			*ex_easy;
	struct dns_req		*ex_dns;	/* host name being resolved */
	struct curl_slist	*ex_resolve;	/* its answer, for curl */
	char			 ex_err[320];
	char			 ex_host[256];
	int			 ex_port;
	struct curl_slist	*ex_headers;
	evcurl_cb		 ex_cb;
	void			*ex_arg;
	char			*ex_body;
	size_t			 ex_len;
	size_t			 ex_cap;
	int			 ex_toobig;
	TAILQ_ENTRY(ec_xfer)	 ex_entry;
};

struct evcurl {
	struct event_base	*ec_base;
	CURLM			*ec_multi;
	struct event		*ec_timer;
	STACK_OF(X509)		*ec_cas;	/* extra anchors, or NULL */
	X509_STORE		*ec_store;	/* shared anchors, or NULL */
	TAILQ_HEAD(, ec_xfer)	 ec_xfers;
	TAILQ_HEAD(, ec_sock)	 ec_socks;
	unsigned		 ec_pending;
	int			 ec_busy;	/* inside ec_done() */
	int			 ec_dead;	/* freed from a callback */
};

static STACK_OF(X509)	*ec_load_cas(const char *);
static int		 ec_ssl_ctx_ok(void);
static CURLcode		 ec_ssl_ctx(CURL *, void *, void *);
static CURLcode		 ec_ssl_ctx_store(CURL *, void *, void *);
static int		 ec_sock_cb(CURL *, curl_socket_t, int, void *,
			    void *);
static int		 ec_timer_cb(CURLM *, long, void *);
static void		 ec_sock_event(evutil_socket_t, short, void *);
static void		 ec_timer_event(evutil_socket_t, short, void *);
static void		 ec_done(struct evcurl *);
static void		 ec_complete(struct evcurl *, CURL *, CURLcode);
static const char	*ec_errstr(CURLcode, int);
static void		 ec_cancel_all(struct evcurl *);
static void		 ec_destroy(struct evcurl *);
static size_t		 ec_write(char *, size_t, size_t, void *);
static int		 ec_token(const char *);
static int		 ec_check_req(const struct evcurl_req *);
static int		 ec_set_common(struct evcurl *, struct ec_xfer *,
			    const struct evcurl_req *);
static int		 ec_set_method(CURL *, const struct evcurl_req *);
static int		 ec_set_headers(struct ec_xfer *,
			    const struct evcurl_req *);
static void		 ec_xfer_free(struct ec_xfer *);
static int		 ec_host(const char *, char *, size_t, int *);
static void		 ec_resolved(const struct dns_addrs *, const char *,
			    void *);

static int	ec_initialized;

static const struct {
	CURLcode	 code;
	const char	*text;
} ec_errors[] = {
	{ CURLE_OPERATION_TIMEDOUT,	"timeout" },
	{ CURLE_COULDNT_CONNECT,	"could not connect" },
	{ CURLE_COULDNT_RESOLVE_HOST,	"could not resolve host" },
	{ CURLE_COULDNT_RESOLVE_PROXY,	"could not resolve proxy" },
	{ CURLE_PEER_FAILED_VERIFICATION, "TLS verification failed" },
	{ CURLE_SSL_CONNECT_ERROR,	"TLS handshake failed" },
	{ CURLE_SSL_CACERT_BADFILE,	"TLS trust store unreadable" },
	{ CURLE_SSL_CERTPROBLEM,	"TLS setup failed" },
	{ CURLE_FILESIZE_EXCEEDED,	"response too large" },
	{ CURLE_UNSUPPORTED_PROTOCOL,	"unsupported protocol" },
	{ CURLE_URL_MALFORMAT,		"malformed URL" },
	{ CURLE_GOT_NOTHING,		"empty reply" },
	{ CURLE_SEND_ERROR,		"send failed" },
	{ CURLE_RECV_ERROR,		"receive failed" },
	{ CURLE_WEIRD_SERVER_REPLY,	"bad reply" },
	{ CURLE_OUT_OF_MEMORY,		"out of memory" },
};

/*
 * Once per process, never undone: curl_global_cleanup() would pull
 * OpenSSL state from under any other evcurl.  Not thread safe; the
 * daemon's processes are single threaded.
 */
int
evcurl_global_init(void)
{
	if (ec_initialized)
		return 0;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -1;
	ec_initialized = 1;
	return 0;
}

/* Every certificate in a PEM file; NULL if unreadable or none in it. */
static STACK_OF(X509) *
ec_load_cas(const char *path)
{
	STACK_OF(X509)	*cas;
	X509		*x;
	FILE		*fp;
	unsigned long	 e;

	if ((fp = fopen(path, "r")) == NULL)
		return NULL;
	if ((cas = sk_X509_new_null()) == NULL) {
		fclose(fp);
		return NULL;
	}
	ERR_clear_error();
	while ((x = PEM_read_X509(fp, NULL, NULL, NULL)) != NULL) {
		if (sk_X509_push(cas, x) == 0) {
			X509_free(x);
			goto bad;
		}
	}
	/* The loop ends on "no start line" at EOF; anything else is bad. */
	e = ERR_peek_last_error();
	if (e != 0 && !(ERR_GET_LIB(e) == ERR_LIB_PEM &&
	    ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
		goto bad;
	if (ferror(fp) || sk_X509_num(cas) == 0)
		goto bad;
	ERR_clear_error();
	fclose(fp);
	return cas;
bad:
	ERR_clear_error();
	sk_X509_pop_free(cas, X509_free);
	fclose(fp);
	return NULL;
}

/* Whether this libcurl's TLS backend takes CURLOPT_SSL_CTX_FUNCTION. */
static int
ec_ssl_ctx_ok(void)
{
	CURL	*e;
	int	 ok;

	if ((e = curl_easy_init()) == NULL)
		return 0;
	ok = curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, ec_ssl_ctx) ==
	    CURLE_OK;
	curl_easy_cleanup(e);
	return ok;
}

/*
 * CURLOPT_SSL_CTX_FUNCTION: add our anchors to the SSL_CTX's store.
 * curl 7.88 fills that store with the system anchors only after this
 * call (after the ClientHello), adding to what we put there, and then
 * caches it per multi handle for later connections, which get the
 * cached store in place of their own; every request of this evcurl
 * adds the same certificates, so either way both sets are trusted.
 * Adding a certificate the store already holds is harmless.
 */
static CURLcode
ec_ssl_ctx(CURL *easy, void *sslctx, void *arg)
{
	struct evcurl	*ec = arg;
	X509_STORE	*st;
	int		 i;

	(void)easy;
	if ((st = SSL_CTX_get_cert_store(sslctx)) == NULL)
		return CURLE_SSL_CERTPROBLEM;
	for (i = 0; i < sk_X509_num(ec->ec_cas); i++) {
		if (X509_STORE_add_cert(st, sk_X509_value(ec->ec_cas, i))
		    != 1) {
			ERR_clear_error();
			return CURLE_SSL_CERTPROBLEM;
		}
	}
	return CURLE_OK;
}

/*
 * CURLOPT_SSL_CTX_FUNCTION with a shared store: the SSL_CTX takes a
 * reference to it.  curl has no CA file to add (CURLOPT_CAINFO and
 * CURLOPT_CAPATH are NULL) and later connections get the same store
 * from curl's cache.
 */
static CURLcode
ec_ssl_ctx_store(CURL *easy, void *sslctx, void *arg)
{
	struct evcurl	*ec = arg;

	(void)easy;
	SSL_CTX_set1_cert_store(sslctx, ec->ec_store);
	return CURLE_OK;
}

struct evcurl *
evcurl_new_store(struct event_base *base, X509_STORE *store,
    const char *cafile)
{
	struct evcurl	*ec;

	if (store == NULL || !ec_ssl_ctx_ok())
		return evcurl_new(base, cafile);
	if ((ec = evcurl_new(base, NULL)) != NULL)
		ec->ec_store = store;
	return ec;
}

struct evcurl *
evcurl_new(struct event_base *base, const char *cafile)
{
	struct evcurl	*ec;

	if (base == NULL || evcurl_global_init() == -1)
		return NULL;
	if ((ec = calloc(1, sizeof(*ec))) == NULL)
		return NULL;
	ec->ec_base = base;
	TAILQ_INIT(&ec->ec_xfers);
	TAILQ_INIT(&ec->ec_socks);
	if (cafile != NULL && *cafile != '\0' &&
	    ((ec->ec_cas = ec_load_cas(cafile)) == NULL || !ec_ssl_ctx_ok()))
		goto bad;
	if ((ec->ec_timer = evtimer_new(base, ec_timer_event, ec)) == NULL)
		goto bad;
	if ((ec->ec_multi = curl_multi_init()) == NULL)
		goto bad;
	if (curl_multi_setopt(ec->ec_multi, CURLMOPT_SOCKETFUNCTION,
	    ec_sock_cb) != CURLM_OK ||
	    curl_multi_setopt(ec->ec_multi, CURLMOPT_SOCKETDATA, ec)
	    != CURLM_OK ||
	    curl_multi_setopt(ec->ec_multi, CURLMOPT_TIMERFUNCTION,
	    ec_timer_cb) != CURLM_OK ||
	    curl_multi_setopt(ec->ec_multi, CURLMOPT_TIMERDATA, ec)
	    != CURLM_OK)
		goto bad;
	return ec;
bad:
	ec_destroy(ec);
	return NULL;
}

/*
 * Safe from inside a request's callback: the remaining requests are
 * cancelled at once and the rest is torn down when ec_done() unwinds.
 */
void
evcurl_free(struct evcurl *ec)
{
	if (ec == NULL || ec->ec_dead)
		return;
	ec_cancel_all(ec);
	if (ec->ec_busy) {
		ec->ec_dead = 1;
		return;
	}
	ec_destroy(ec);
}

unsigned
evcurl_pending(const struct evcurl *ec)
{
	return ec->ec_pending;
}

/* Drop every request in flight; their callbacks never run. */
static void
ec_cancel_all(struct evcurl *ec)
{
	struct ec_xfer	*x;

	while ((x = TAILQ_FIRST(&ec->ec_xfers)) != NULL) {
		TAILQ_REMOVE(&ec->ec_xfers, x, ex_entry);
		ec->ec_pending--;
		curl_multi_remove_handle(ec->ec_multi, x->ex_easy);
		ec_xfer_free(x);
	}
}

/* No requests left; curl may still call back while it closes sockets. */
static void
ec_destroy(struct evcurl *ec)
{
	struct ec_sock	*es;

	if (ec->ec_multi != NULL)
		curl_multi_cleanup(ec->ec_multi);
	while ((es = TAILQ_FIRST(&ec->ec_socks)) != NULL) {
		TAILQ_REMOVE(&ec->ec_socks, es, es_entry);
		if (es->es_ev != NULL)
			event_free(es->es_ev);
		free(es);
	}
	if (ec->ec_timer != NULL)
		event_free(ec->ec_timer);
	if (ec->ec_cas != NULL)
		sk_X509_pop_free(ec->ec_cas, X509_free);
	free(ec);
}

/*
 * CURLMOPT_SOCKETFUNCTION: (re)arm one persistent event per socket with
 * the directions curl wants, or drop it.  The event's argument is the
 * evcurl, not the ec_sock, which curl may remove while we dispatch.
 */
static int
ec_sock_cb(CURL *easy, curl_socket_t s, int what, void *arg, void *sockp)
{
	struct evcurl	*ec = arg;
	struct ec_sock	*es = sockp;
	short		 ev = EV_PERSIST;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (es != NULL) {
			TAILQ_REMOVE(&ec->ec_socks, es, es_entry);
			if (es->es_ev != NULL)
				event_free(es->es_ev);
			free(es);
		}
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev |= EV_READ;
	if (what & CURL_POLL_OUT)
		ev |= EV_WRITE;
	if (es == NULL) {
		if ((es = calloc(1, sizeof(*es))) == NULL)
			return -1;
		TAILQ_INSERT_TAIL(&ec->ec_socks, es, es_entry);
		curl_multi_assign(ec->ec_multi, s, es);
	} else if (es->es_ev != NULL)
		event_free(es->es_ev);
	es->es_ev = event_new(ec->ec_base, s, ev, ec_sock_event, ec);
	if (es->es_ev == NULL || event_add(es->es_ev, NULL) == -1)
		return -1;	/* curl fails the transfers on this socket */
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 disarms, 0 means "as soon as possible". */
static int
ec_timer_cb(CURLM *multi, long ms, void *arg)
{
	struct evcurl	*ec = arg;
	struct timeval	 tv;

	(void)multi;
	if (ms < 0) {
		evtimer_del(ec->ec_timer);
		return 0;
	}
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return evtimer_add(ec->ec_timer, &tv) == -1 ? -1 : 0;
}

static void
ec_sock_event(evutil_socket_t fd, short what, void *arg)
{
	struct evcurl	*ec = arg;
	int		 flags = 0, running;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(ec->ec_multi, fd, flags, &running);
	ec_done(ec);
}

static void
ec_timer_event(evutil_socket_t fd, short what, void *arg)
{
	struct evcurl	*ec = arg;
	int		 running;

	(void)fd;
	(void)what;
	curl_multi_socket_action(ec->ec_multi, CURL_SOCKET_TIMEOUT, 0,
	    &running);
	ec_done(ec);
}

/* Run the callback of every finished transfer; ec may be gone after. */
static void
ec_done(struct evcurl *ec)
{
	CURLMsg		*m;
	CURL		*easy;
	CURLcode	 rc;
	int		 left;

	ec->ec_busy++;
	while (!ec->ec_dead &&
	    (m = curl_multi_info_read(ec->ec_multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		/* m is invalid once the handle leaves the multi */
		easy = m->easy_handle;
		rc = m->data.result;
		ec_complete(ec, easy, rc);
	}
	ec->ec_busy--;
	if (ec->ec_dead && ec->ec_busy == 0)
		ec_destroy(ec);
}

static void
ec_complete(struct evcurl *ec, CURL *easy, CURLcode rc)
{
	struct evcurl_resp	 r;
	struct ec_xfer		*x;
	void			*p = NULL;
	curl_off_t		 us = 0;

	if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p) != CURLE_OK ||
	    p == NULL)
		abort();	/* every easy handle here is ours */
	x = p;
	memset(&r, 0, sizeof(r));
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.er_status);
	if (curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &us) == CURLE_OK)
		r.er_seconds = (double)us / 1e6;
	r.er_body = "";
	if (rc != CURLE_OK || x->ex_toobig) {
		r.er_failed = 1;
		r.er_error = ec_errstr(rc, x->ex_toobig);
	} else if (x->ex_body != NULL) {
		r.er_body = x->ex_body;
		r.er_len = x->ex_len;
	}
	TAILQ_REMOVE(&ec->ec_xfers, x, ex_entry);
	ec->ec_pending--;
	curl_multi_remove_handle(ec->ec_multi, easy);
	x->ex_cb(&r, x->ex_arg);
	ec_xfer_free(x);
}

/* Fixed text only: curl's error buffer may quote the URL. */
static const char *
ec_errstr(CURLcode rc, int toobig)
{
	size_t	i;

	if (toobig)
		return "response too large";
	for (i = 0; i < sizeof(ec_errors) / sizeof(ec_errors[0]); i++)
		if (ec_errors[i].code == rc)
			return ec_errors[i].text;
	return curl_easy_strerror(rc);
}

/* CURLOPT_WRITEFUNCTION: keep at most EVCURL_BODY_MAX bytes, plus NUL. */
static size_t
ec_write(char *data, size_t size, size_t n, void *arg)
{
	struct ec_xfer	*x = arg;
	size_t		 len = size * n, cap;
	char		*p;

	if (len > EVCURL_BODY_MAX - x->ex_len) {
		x->ex_toobig = 1;
		return 0;	/* anything but len aborts the transfer */
	}
	if (x->ex_len + len + 1 > x->ex_cap) {
		cap = x->ex_cap ? x->ex_cap : EC_BODY_CHUNK;
		while (cap < x->ex_len + len + 1)
			cap *= 2;
		if (cap > EVCURL_BODY_MAX + 1)
			cap = EVCURL_BODY_MAX + 1;
		if ((p = realloc(x->ex_body, cap)) == NULL)
			return 0;
		x->ex_body = p;
		x->ex_cap = cap;
	}
	memcpy(x->ex_body + x->ex_len, data, len);
	x->ex_len += len;
	x->ex_body[x->ex_len] = '\0';
	return len;
}

/* An RFC 9110 token, so a method cannot smuggle a request line. */
static int
ec_token(const char *s)
{
	static const char	 extra[] = "!#$%&'*+-.^_`|~";

	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++) {
		if ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		    (*s >= '0' && *s <= '9'))
			continue;
		if (strchr(extra, *s) == NULL)
			return 0;
	}
	return 1;
}

static int
ec_check_req(const struct evcurl_req *rq)
{
	size_t	i;

	if (rq->rq_url == NULL || rq->rq_timeout_ms < 0 ||
	    rq->rq_connect_timeout_ms < 0)
		return -1;
	if (rq->rq_method != NULL && !ec_token(rq->rq_method))
		return -1;
	if (rq->rq_body == NULL && rq->rq_bodylen != 0)
		return -1;
	for (i = 0; i < EVCURL_MAX_HEADERS && rq->rq_headers[i]; i++)
		if (strpbrk(rq->rq_headers[i], "\r\n") != NULL)
			return -1;
	return 0;
}

int
evcurl_start(struct evcurl *ec, const struct evcurl_req *rq,
    evcurl_cb cb, void *arg)
{
	struct ec_xfer	*x;
	char		 host[256];
	int		 port;

	if (ec == NULL || ec->ec_dead || rq == NULL || cb == NULL ||
	    ec_check_req(rq) == -1)
		return -1;
	if ((x = calloc(1, sizeof(*x))) == NULL)
		return -1;
	x->ex_cb = cb;
	x->ex_arg = arg;
	if ((x->ex_easy = curl_easy_init()) == NULL)
		goto bad;
	if (ec_set_common(ec, x, rq) == -1 ||
	    ec_set_method(x->ex_easy, rq) == -1 ||
	    ec_set_headers(x, rq) == -1)
		goto bad;
	x->ex_ec = ec;
	/*
	 * A host name is resolved on this loop first (dns.c) and handed to
	 * curl as CURLOPT_RESOLVE, so curl never looks it up itself.
	 */
	if (ec_host(rq->rq_url, host, sizeof(host), &port) == -1)
		goto bad;
	if (!dns_is_numeric(host)) {
		memcpy(x->ex_host, host, sizeof(x->ex_host));
		x->ex_port = port;
		x->ex_dns = dns_lookup(ec->ec_base, host, port, ec_resolved, x);
		if (x->ex_dns == NULL)
			goto bad;
	/* Never completes inside this call: curl only arms its timer. */
	} else if (curl_multi_add_handle(ec->ec_multi, x->ex_easy) !=
	    CURLM_OK)
		goto bad;
	TAILQ_INSERT_TAIL(&ec->ec_xfers, x, ex_entry);
	ec->ec_pending++;
	return 0;
bad:
	ec_xfer_free(x);
	return -1;
}

/* The URL's host (IPv6 without brackets) and port, as curl reads them. */
static int
ec_host(const char *url, char *host, size_t len, int *port)
{
	CURLU	*u;
	char	*h = NULL, *p = NULL;
	int	 rc = -1;
	size_t	 n;

	if ((u = curl_url()) == NULL)
		return -1;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) ==
	    CURLUE_OK) {
		n = strlen(h);
		if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
			memmove(h, h + 1, n - 2);
			h[n - 2] = '\0';
		}
		*port = atoi(p);
		if (strlen(h) < len && *port > 0 && *port < 65536) {
			memcpy(host, h, strlen(h) + 1);
			rc = 0;
		}
	}
	curl_free(h);
	curl_free(p);
	curl_url_cleanup(u);
	return rc;
}

static void
ec_resolved(const struct dns_addrs *a, const char *err, void *arg)
{
	struct ec_xfer		*x = arg;
	struct evcurl		*ec = x->ex_ec;
	struct evcurl_resp	 r;
	char			 entry[1024], as[64], *c;
	size_t			 off;
	int			 i;

	x->ex_dns = NULL;
	if (a != NULL) {
		off = (size_t)snprintf(entry, sizeof(entry), "%s:%d:",
		    x->ex_host, x->ex_port);
		for (i = 0; i < a->n && off < sizeof(entry); i++) {
			dns_addr_str((const struct sockaddr *)&a->ss[i], as,
			    sizeof(as));
			/* "[v6]:port" or "v4:port": curl wants [v6] or v4. */
			if ((c = strrchr(as, ':')) != NULL)
				*c = '\0';
			off += (size_t)snprintf(entry + off,
			    sizeof(entry) - off, "%s%s", i ? "," : "", as);
		}
		if (off < sizeof(entry) &&
		    (x->ex_resolve = curl_slist_append(NULL, entry)) != NULL &&
		    curl_easy_setopt(x->ex_easy, CURLOPT_RESOLVE,
		    x->ex_resolve) == CURLE_OK &&
		    curl_multi_add_handle(ec->ec_multi, x->ex_easy) ==
		    CURLM_OK)
			return;
		err = "cannot hand the addresses to curl";
	}
	strlcpy_n(x->ex_err, err != NULL ? err : "cannot resolve the host",
	    sizeof(x->ex_err));
	memset(&r, 0, sizeof(r));
	r.er_failed = 1;
	r.er_error = x->ex_err;
	r.er_body = "";
	TAILQ_REMOVE(&ec->ec_xfers, x, ex_entry);
	ec->ec_pending--;
	ec->ec_busy++;
	x->ex_cb(&r, x->ex_arg);
	ec_xfer_free(x);
	ec->ec_busy--;
	if (ec->ec_dead && ec->ec_busy == 0)
		ec_destroy(ec);
}


/* Transport, limits and TLS: the same for every request. */
static int
ec_set_common(struct evcurl *ec, struct ec_xfer *x,
    const struct evcurl_req *rq)
{
	CURL	*e = x->ex_easy;
	long	 to, cto;
	int	 bad = 0;

	to = rq->rq_timeout_ms ? rq->rq_timeout_ms : EC_DEFAULT_TIMEOUT_MS;
	cto = rq->rq_connect_timeout_ms ? rq->rq_connect_timeout_ms :
	    EC_CONNECT_TIMEOUT_MS;
	bad |= curl_easy_setopt(e, CURLOPT_URL, rq->rq_url);
	bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)x);
	bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, to);
	bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, cto);
	bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	/*
	 * A request that must not happen twice gets its own connection:
	 * curl silently re-sends a request whose reused connection turned
	 * out dead, and for "create a call" that would dial twice.
	 */
	if (rq->rq_once) {
		bad |= curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
		bad |= curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
	}
#if LIBCURL_VERSION_NUM >= 0x075500
	bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS,
	    (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	bad |= curl_easy_setopt(e, CURLOPT_SSLVERSION,
	    (long)CURL_SSLVERSION_TLSv1_2);
	bad |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
	    (curl_off_t)EVCURL_BODY_MAX);
	bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, ec_write);
	bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)x);
	if (ec->ec_store != NULL) {
		bad |= curl_easy_setopt(e, CURLOPT_CAINFO, (char *)NULL);
		bad |= curl_easy_setopt(e, CURLOPT_CAPATH, (char *)NULL);
		/* curl would set X509_V_FLAG_PARTIAL_CHAIN on the store. */
		bad |= curl_easy_setopt(e, CURLOPT_SSL_OPTIONS,
		    (long)CURLSSLOPT_NO_PARTIALCHAIN);
		bad |= curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION,
		    ec_ssl_ctx_store);
		bad |= curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, (void *)ec);
	} else if (ec->ec_cas != NULL) {
		bad |= curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION,
		    ec_ssl_ctx);
		bad |= curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, (void *)ec);
	}
	if (rq->rq_user != NULL) {
		bad |= curl_easy_setopt(e, CURLOPT_HTTPAUTH,
		    (long)CURLAUTH_BASIC);
		bad |= curl_easy_setopt(e, CURLOPT_USERNAME, rq->rq_user);
		bad |= curl_easy_setopt(e, CURLOPT_PASSWORD,
		    rq->rq_password ? rq->rq_password : "");
	}
	return bad ? -1 : 0;
}

/*
 * GET and POST by their own options, anything else by name.  A body is
 * always given to curl when POSTing, even an empty one: without
 * POSTFIELDS curl would read the body from stdin.
 */
static int
ec_set_method(CURL *e, const struct evcurl_req *rq)
{
	const char	*m = rq->rq_method ? rq->rq_method : "GET";
	const char	*body = rq->rq_body ? rq->rq_body : "";
	int		 bad = 0, post, get, head;

	get = strcmp(m, "GET") == 0;
	post = strcmp(m, "POST") == 0;
	head = strcmp(m, "HEAD") == 0;
	if ((get || head) && rq->rq_bodylen != 0)
		return -1;
	if (get)
		return curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) ? -1 : 0;
	if (head)
		return curl_easy_setopt(e, CURLOPT_NOBODY, 1L) ? -1 : 0;
	if (post || rq->rq_body != NULL) {
		/* the size must be set before the copy is made */
		bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)rq->rq_bodylen);
		bad |= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
	}
	if (!post)
		bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
	return bad ? -1 : 0;
}

/* The caller's headers, and no "Expect: 100-continue" round trip. */
static int
ec_set_headers(struct ec_xfer *x, const struct evcurl_req *rq)
{
	struct curl_slist	*l;
	size_t			 i;
	int			 expect = 0;

	for (i = 0; i < EVCURL_MAX_HEADERS && rq->rq_headers[i]; i++) {
		if (strncasecmp(rq->rq_headers[i], "Expect:", 7) == 0)
			expect = 1;
		if ((l = curl_slist_append(x->ex_headers,
		    rq->rq_headers[i])) == NULL)
			return -1;
		x->ex_headers = l;
	}
	if (!expect) {
		if ((l = curl_slist_append(x->ex_headers, "Expect:")) == NULL)
			return -1;
		x->ex_headers = l;
	}
	if (curl_easy_setopt(x->ex_easy, CURLOPT_HTTPHEADER,
	    x->ex_headers) != CURLE_OK)
		return -1;
	return 0;
}

/* The easy handle must already be out of the multi handle. */
static void
ec_xfer_free(struct ec_xfer *x)
{
	if (x->ex_dns != NULL)
		dns_cancel(x->ex_dns);
	if (x->ex_easy != NULL)
		curl_easy_cleanup(x->ex_easy);
	curl_slist_free_all(x->ex_resolve);
	curl_slist_free_all(x->ex_headers);
	free(x->ex_body);
	free(x);
}
