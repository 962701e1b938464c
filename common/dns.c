/*
 * dns.c - the process's resolver and its connections.  Host names in
 * REDIS_URL, DATABASE_URL and the peers' URLs are looked up with evdns
 * on the process's own event loop (never getaddrinfo(3) there), with
 * the nameservers and /etc/hosts named by resolv_conf, each lookup
 * bounded by dns_timeout.  nc_connect() turns a name into a connected
 * (and, with a context, TLS-verified) bufferevent, trying the
 * addresses in the order the resolver gave them.
 *
 * One resolver per process: the supervisor makes it at start, a worker
 * after its fork (the inherited one belongs to the supervisor's loop
 * and is left alone).  Numeric hosts are answered without a query.
 * Answers are kept DNS_CACHE_SECS (evdns keeps none), so a worker that
 * looked its peers up while idle (dns_prefetch_url()) does not wait
 * for the resolver when its call comes.
 */
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/dns.h>
#include <event2/bufferevent_ssl.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "dns.h"
#include "log.h"
#include "tls.h"
#include "util.h"

struct dns_req {
	struct evdns_getaddrinfo_request *d_gai;
	struct event	*d_timer;	/* the lookup's bound, then delivery */
	dns_cb		 d_cb;
	void		*d_arg;
	char		 d_host[256];
	int		 d_port;
	int		 d_inside;	/* in evdns_getaddrinfo() */
	int		 d_cancelled;
	int		 d_ready;	/* result stored, delivery due */
	char		 d_err[320];
	struct dns_addrs d_addrs;
};

#define DNS_CACHE_N	8
#define DNS_CACHE_SECS	120

static struct dns_cached {
	char			 dc_host[256];
	int			 dc_port;
	uint64_t		 dc_t;		/* 0: empty */
	struct dns_addrs	 dc_addrs;
} dns_cache[DNS_CACHE_N];

static struct evdns_base	*dns_cur;
static struct evdns_base	*dns_inherited;	/* another loop's; kept */
static struct event_base	*dns_evbase;
static long			 dns_tmo = 5000;

static void	dns_gai_cb(int, struct evutil_addrinfo *, void *);
static void	dns_timer_cb(evutil_socket_t, short, void *);
static void	dns_deliver(struct dns_req *);
static int	dns_numeric(const char *, int, struct dns_addrs *);
static int	dns_cached(const char *, int, struct dns_addrs *);
static void	dns_cache_put(const char *, int, const struct dns_addrs *);
static void	dns_prefetched(const struct dns_addrs *, const char *, void *);

/*
 * The first evdns_base_new() in a process registers evdns as libevent's
 * resolver: two pointers in libevent's data page.  Done once in the fork
 * server, no worker writes (and so copies) that page.
 */
void
dns_prewarm(void)
{
	struct event_base	*b;
	struct evdns_base	*db;

	if ((b = event_base_new()) == NULL)
		return;
	if ((db = evdns_base_new(b, 0)) != NULL)
		evdns_base_free(db, 0);
	event_base_free(b);
}

int
dns_setup(struct event_base *base, const char *resolv_conf, long timeout_ms)
{
	struct evdns_base	*db;
	char			 v[32];
	int			 rc;

	if (resolv_conf == NULL || resolv_conf[0] == '\0')
		resolv_conf = "/etc/resolv.conf";
	if ((db = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE))
	    == NULL) {
		log_warnx("resolver: evdns_base_new failed");
		return -1;
	}
	/* Also reads /etc/hosts (DNS_OPTION_HOSTSFILE). */
	rc = evdns_base_resolv_conf_parse(db, DNS_OPTIONS_ALL, resolv_conf);
	if (rc == 6)
		log_warnx("resolver: %s names no nameserver; asking 127.0.0.1",
		    resolv_conf);
	else if (rc != 0)
		log_warnx("resolver: cannot read %s (%d); asking 127.0.0.1",
		    resolv_conf, rc);
	if (timeout_ms > 0)
		dns_tmo = timeout_ms;
	/* Two tries per nameserver inside the bound. */
	snprintf(v, sizeof(v), "%.3f", dns_tmo / 2000.0 < 0.1 ? 0.1 :
	    dns_tmo / 2000.0);
	(void)evdns_base_set_option(db, "timeout:", v);
	(void)evdns_base_set_option(db, "attempts:", "2");
	/*
	 * randomize-case stays on (the default): with it off, evdns 2.1
	 * compares the answer's question case-sensitively and refuses a
	 * resolver that lower-cases it.
	 */
	if (dns_cur != NULL && dns_evbase != base)
		dns_inherited = dns_cur;
	else if (dns_cur != NULL)
		evdns_base_free(dns_cur, 1);
	dns_cur = db;
	dns_evbase = base;
	return 0;
}

struct evdns_base *
dns_base(void)
{
	return dns_cur;
}

long
dns_timeout_ms(void)
{
	return dns_tmo;
}

int
dns_is_numeric(const char *host)
{
	unsigned char	buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 ||
	    inet_pton(AF_INET6, host, buf) == 1;
}

/* An IP literal as the one address of a, or -1 for a name. */
static int
dns_numeric(const char *host, int port, struct dns_addrs *a)
{
	struct sockaddr_in	*s4 = (void *)&a->ss[0];
	struct sockaddr_in6	*s6 = (void *)&a->ss[0];

	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		a->len[0] = sizeof(*s4);
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		a->len[0] = sizeof(*s6);
	} else
		return -1;
	a->n = 1;
	return 0;
}

/* A fresh enough answer for host:port into a; -1 if none. */
static int
dns_cached(const char *host, int port, struct dns_addrs *a)
{
	uint64_t	now = now_mono_ns();
	int		i;

	for (i = 0; i < DNS_CACHE_N; i++)
		if (dns_cache[i].dc_t != 0 && dns_cache[i].dc_port == port &&
		    now - dns_cache[i].dc_t < DNS_CACHE_SECS * 1000000000ULL &&
		    strcasecmp(dns_cache[i].dc_host, host) == 0) {
			*a = dns_cache[i].dc_addrs;
			return 0;
		}
	return -1;
}

/* Keep an answer, in the slot of the same name or the oldest one. */
static void
dns_cache_put(const char *host, int port, const struct dns_addrs *a)
{
	struct dns_cached	*c = &dns_cache[0];
	int			 i;

	for (i = 0; i < DNS_CACHE_N; i++) {
		if (dns_cache[i].dc_port == port &&
		    strcasecmp(dns_cache[i].dc_host, host) == 0) {
			c = &dns_cache[i];
			break;
		}
		if (dns_cache[i].dc_t < c->dc_t)
			c = &dns_cache[i];
	}
	strlcpy_n(c->dc_host, host, sizeof(c->dc_host));
	c->dc_port = port;
	c->dc_addrs = *a;
	c->dc_t = now_mono_ns();
}

/*
 * Look up the host of url (http, https, ws, wss) now, for a request
 * that will come later: the answer waits in the cache.  Errors are the
 * later request's to report.
 */
void
dns_prefetch_url(struct event_base *base, const char *url)
{
	const char	*p, *e;
	char		 host[256];
	int		 port, tls;
	size_t		 n;

	if (url == NULL || (p = strstr(url, "://")) == NULL)
		return;
	tls = (p - url == 5 && strncasecmp(url, "https", 5) == 0) ||
	    (p - url == 3 && strncasecmp(url, "wss", 3) == 0);
	p += 3;
	if (*p == '[')
		return;			/* an IPv6 literal: nothing to ask */
	n = strcspn(p, ":/?#");
	if (n == 0 || n >= sizeof(host))
		return;
	memcpy(host, p, n);
	host[n] = '\0';
	e = p + n;
	port = *e == ':' ? atoi(e + 1) : tls ? 443 : 80;
	if (port <= 0 || port > 65535 || dns_is_numeric(host) ||
	    dns_cached(host, port, &(struct dns_addrs){ 0 }) == 0)
		return;
	(void)dns_lookup(base, host, port, dns_prefetched, NULL);
}

static void
dns_prefetched(const struct dns_addrs *a, const char *err, void *arg)
{
	(void)a, (void)arg;
	if (err != NULL)
		log_debug("resolver: prefetch: %s", err);
}

void
dns_addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char	a[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		snprintf(buf, len, "[%s]:%d", a, ntohs(s6->sin6_port));
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		snprintf(buf, len, "%s:%d", a, ntohs(s4->sin_port));
	} else
		snprintf(buf, len, "(family %d)", sa->sa_family);
}

/*
 * Look up host (port goes into the addresses).  The callback runs
 * exactly once, later, from the loop, unless dns_cancel() comes first.
 */
struct dns_req *
dns_lookup(struct event_base *base, const char *host, int port, dns_cb cb,
    void *arg)
{
	struct evutil_addrinfo	 hints;
	struct dns_req		*d;
	struct timeval		 tv;
	char			 ps[8];

	if (base == NULL || host == NULL || cb == NULL ||
	    strlen(host) >= sizeof(d->d_host))
		return NULL;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	if ((d->d_timer = evtimer_new(base, dns_timer_cb, d)) == NULL) {
		free(d);
		return NULL;
	}
	d->d_cb = cb;
	d->d_arg = arg;
	strlcpy_n(d->d_host, host, sizeof(d->d_host));
	d->d_port = port;
	if (dns_numeric(host, port, &d->d_addrs) == 0 ||
	    dns_cached(host, port, &d->d_addrs) == 0) {
		/* No query needed: delivered from the loop. */
		d->d_ready = 1;
		tv.tv_sec = tv.tv_usec = 0;
		evtimer_add(d->d_timer, &tv);
		return d;
	}
	/* A process's first name on this loop: the default resolver. */
	if ((dns_cur == NULL || dns_evbase != base) &&
	    dns_setup(base, NULL, 0) == -1) {
		event_free(d->d_timer);
		free(d);
		return NULL;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	snprintf(ps, sizeof(ps), "%d", port);
	tv.tv_sec = dns_tmo / 1000;
	tv.tv_usec = (dns_tmo % 1000) * 1000;
	evtimer_add(d->d_timer, &tv);
	d->d_inside = 1;
	d->d_gai = evdns_getaddrinfo(dns_cur, host, ps, &hints, dns_gai_cb,
	    d);
	d->d_inside = 0;
	if (d->d_ready) {
		/* Answered at once (a numeric host, /etc/hosts): later. */
		d->d_gai = NULL;
		tv.tv_sec = tv.tv_usec = 0;
		evtimer_add(d->d_timer, &tv);
	}
	return d;
}

void
dns_cancel(struct dns_req *d)
{
	if (d == NULL)
		return;
	if (d->d_gai != NULL && !d->d_ready) {
		/* evdns calls dns_gai_cb(EVUTIL_EAI_CANCEL) later: frees d. */
		d->d_cancelled = 1;
		evtimer_del(d->d_timer);
		evdns_getaddrinfo_cancel(d->d_gai);
		return;
	}
	event_free(d->d_timer);
	explicit_bzero(d, sizeof(*d));
	free(d);
}

static void
dns_gai_cb(int err, struct evutil_addrinfo *res, void *arg)
{
	struct dns_req		*d = arg;
	struct evutil_addrinfo	*ai;
	int			 i;

	d->d_gai = NULL;
	if (d->d_cancelled) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		event_free(d->d_timer);
		free(d);
		return;
	}
	if (err != 0)
		snprintf(d->d_err, sizeof(d->d_err), "cannot resolve %s: %s",
		    d->d_host, evutil_gai_strerror(err));
	else {
		for (ai = res; ai != NULL && d->d_addrs.n < DNS_MAXADDRS;
		    ai = ai->ai_next) {
			if (ai->ai_addrlen > sizeof(struct sockaddr_storage) ||
			    (ai->ai_family != AF_INET &&
			    ai->ai_family != AF_INET6))
				continue;
			for (i = 0; i < d->d_addrs.n; i++)
				if (d->d_addrs.len[i] == ai->ai_addrlen &&
				    memcmp(&d->d_addrs.ss[i], ai->ai_addr,
				    ai->ai_addrlen) == 0)
					break;
			if (i < d->d_addrs.n)
				continue;
			memcpy(&d->d_addrs.ss[i], ai->ai_addr, ai->ai_addrlen);
			d->d_addrs.len[i] = (socklen_t)ai->ai_addrlen;
			d->d_addrs.n++;
		}
		if (d->d_addrs.n == 0)
			snprintf(d->d_err, sizeof(d->d_err),
			    "cannot resolve %s: no address", d->d_host);
		else
			dns_cache_put(d->d_host, d->d_port, &d->d_addrs);
	}
	if (res != NULL)
		evutil_freeaddrinfo(res);
	d->d_ready = 1;
	if (d->d_inside)
		return;		/* delivered by the caller's frame */
	evtimer_del(d->d_timer);
	dns_deliver(d);
}

static void
dns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_req	*d = arg;
	dns_cb		 cb = d->d_cb;
	void		*cbarg = d->d_arg;
	char		 err[sizeof(d->d_err)];

	(void)fd;
	(void)what;
	if (d->d_ready || d->d_gai == NULL) {
		dns_deliver(d);
		return;
	}
	/*
	 * No answer in time.  evdns reports the cancellation later,
	 * through dns_gai_cb(), which frees d then.
	 */
	snprintf(err, sizeof(err), "cannot resolve %s: no answer within "
	    "%ld ms", d->d_host, dns_tmo);
	d->d_cancelled = 1;
	evdns_getaddrinfo_cancel(d->d_gai);
	cb(NULL, err, cbarg);
}

static void
dns_deliver(struct dns_req *d)
{
	dns_cb	 cb = d->d_cb;
	void	*arg = d->d_arg;

	if (d->d_err[0] != '\0')
		cb(NULL, d->d_err, arg);
	else
		cb(&d->d_addrs, NULL, arg);
	event_free(d->d_timer);
	explicit_bzero(d, sizeof(*d));
	free(d);
}

/* --- connections ---------------------------------------------------- */

struct nc {
	struct event_base	*n_base;
	char			 n_host[256];
	int			 n_port;
	int			 n_family;	/* AF_UNSPEC: any */
	SSL_CTX			*n_ctx;
	long			 n_tmo;
	nc_cb			 n_cb;
	void			*n_arg;
	struct dns_req		*n_dns;
	struct dns_addrs	 n_addrs;
	int			 n_i;		/* address being tried */
	struct bufferevent	*n_bev;
	struct event		*n_timer;
	char			 n_err[400];
};

static void	nc_resolved(const struct dns_addrs *, const char *, void *);
static void	nc_try(struct nc *);
static void	nc_event(struct bufferevent *, short, void *);
static void	nc_timeout(evutil_socket_t, short, void *);
static void	nc_next(struct nc *);
static void	nc_done(struct nc *, struct bufferevent *);

struct nc *
nc_connect(struct event_base *base, const char *host, int port, int family,
    SSL_CTX *ctx, long timeout_ms, nc_cb cb, void *arg)
{
	struct nc	*n;

	if (host == NULL || strlen(host) >= sizeof(n->n_host) ||
	    (n = calloc(1, sizeof(*n))) == NULL)
		return NULL;
	n->n_base = base;
	strlcpy_n(n->n_host, host, sizeof(n->n_host));
	n->n_port = port;
	n->n_family = family;
	n->n_ctx = ctx;
	n->n_tmo = timeout_ms > 0 ? timeout_ms : 5000;
	n->n_cb = cb;
	n->n_arg = arg;
	if ((n->n_timer = evtimer_new(base, nc_timeout, n)) == NULL ||
	    (n->n_dns = dns_lookup(base, host, port, nc_resolved, n)) ==
	    NULL) {
		if (n->n_timer != NULL)
			event_free(n->n_timer);
		free(n);
		return NULL;
	}
	return n;
}

void
nc_cancel(struct nc *n)
{
	if (n == NULL)
		return;
	if (n->n_dns != NULL)
		dns_cancel(n->n_dns);
	if (n->n_bev != NULL)
		bufferevent_free(n->n_bev);
	event_free(n->n_timer);
	free(n);
}

static void
nc_resolved(const struct dns_addrs *a, const char *err, void *arg)
{
	struct nc	*n = arg;
	int		 i;

	n->n_dns = NULL;
	if (a == NULL) {
		strlcpy_n(n->n_err, err, sizeof(n->n_err));
		nc_done(n, NULL);
		return;
	}
	n->n_addrs.n = 0;
	for (i = 0; i < a->n; i++) {
		if (n->n_family != AF_UNSPEC &&
		    a->ss[i].ss_family != n->n_family)
			continue;
		n->n_addrs.ss[n->n_addrs.n] = a->ss[i];
		n->n_addrs.len[n->n_addrs.n++] = a->len[i];
	}
	if (n->n_addrs.n == 0) {
		snprintf(n->n_err, sizeof(n->n_err), "%s has no IPv%d address",
		    n->n_host, n->n_family == AF_INET6 ? 6 : 4);
		nc_done(n, NULL);
		return;
	}
	n->n_i = 0;
	nc_try(n);
}

static void
nc_try(struct nc *n)
{
	const struct sockaddr	*sa;
	struct timeval		 tv;
	SSL			*ssl;
	char			 as[64];

	for (; n->n_i < n->n_addrs.n; n->n_i++) {
		sa = (const struct sockaddr *)&n->n_addrs.ss[n->n_i];
		dns_addr_str(sa, as, sizeof(as));
		if (n->n_ctx != NULL) {
			if ((ssl = SSL_new(n->n_ctx)) == NULL ||
			    tls_set_peer(ssl, n->n_host) == -1) {
				SSL_free(ssl);
				snprintf(n->n_err, sizeof(n->n_err),
				    "TLS set-up for %s failed", n->n_host);
				break;
			}
			n->n_bev = bufferevent_openssl_socket_new(n->n_base,
			    -1, ssl, BUFFEREVENT_SSL_CONNECTING,
			    BEV_OPT_CLOSE_ON_FREE);
			if (n->n_bev == NULL)
				SSL_free(ssl);
			else
				bufferevent_openssl_set_allow_dirty_shutdown(
				    n->n_bev, 1);
		} else
			n->n_bev = bufferevent_socket_new(n->n_base, -1,
			    BEV_OPT_CLOSE_ON_FREE);
		if (n->n_bev == NULL) {
			snprintf(n->n_err, sizeof(n->n_err), "out of memory");
			break;
		}
		bufferevent_setcb(n->n_bev, NULL, NULL, nc_event, n);
		bufferevent_enable(n->n_bev, EV_READ | EV_WRITE);
		if (bufferevent_socket_connect(n->n_bev, (struct sockaddr *)
		    (uintptr_t)sa, (int)n->n_addrs.len[n->n_i]) == -1) {
			snprintf(n->n_err, sizeof(n->n_err), "connect to %s "
			    "(%s): %s", as, n->n_host, strerror(errno));
			bufferevent_free(n->n_bev);
			n->n_bev = NULL;
			continue;
		}
		tv.tv_sec = n->n_tmo / 1000;
		tv.tv_usec = (n->n_tmo % 1000) * 1000;
		evtimer_add(n->n_timer, &tv);
		return;
	}
	nc_done(n, NULL);
}

static void
nc_event(struct bufferevent *bev, short what, void *arg)
{
	struct nc	*n = arg;
	SSL		*ssl;
	unsigned long	 e;
	long		 vr;
	char		 as[64];
	int		 tlsfail = 0;

	if (what & BEV_EVENT_CONNECTED) {
		evtimer_del(n->n_timer);
		n->n_bev = NULL;
		bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
		nc_done(n, bev);
		return;
	}
	dns_addr_str((const struct sockaddr *)&n->n_addrs.ss[n->n_i], as,
	    sizeof(as));
	ssl = n->n_ctx != NULL ? bufferevent_openssl_get_ssl(bev) : NULL;
	if (ssl != NULL && (vr = SSL_get_verify_result(ssl)) != X509_V_OK) {
		snprintf(n->n_err, sizeof(n->n_err), "TLS with %s (%s): "
		    "certificate not accepted: %s", as, n->n_host,
		    X509_verify_cert_error_string(vr));
		tlsfail = 1;
	} else if ((e = bufferevent_get_openssl_error(bev)) != 0) {
		snprintf(n->n_err, sizeof(n->n_err), "TLS with %s (%s): %s",
		    as, n->n_host, ERR_reason_error_string(e));
		tlsfail = 1;
	} else if (what & BEV_EVENT_EOF)
		snprintf(n->n_err, sizeof(n->n_err), "%s (%s) closed the "
		    "connection%s", as, n->n_host, n->n_ctx != NULL ?
		    " during the TLS handshake" : "");
	else
		snprintf(n->n_err, sizeof(n->n_err), "connect to %s (%s): %s",
		    as, n->n_host,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	if (tlsfail) {
		/* The certificate is the problem, not the address. */
		bufferevent_free(n->n_bev);
		n->n_bev = NULL;
		evtimer_del(n->n_timer);
		nc_done(n, NULL);
		return;
	}
	nc_next(n);
}

static void
nc_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct nc	*n = arg;
	char		 as[64];

	(void)fd;
	(void)what;
	dns_addr_str((const struct sockaddr *)&n->n_addrs.ss[n->n_i], as,
	    sizeof(as));
	snprintf(n->n_err, sizeof(n->n_err), "connect to %s (%s): no answer "
	    "within %ld ms", as, n->n_host, n->n_tmo);
	nc_next(n);
}

static void
nc_next(struct nc *n)
{
	evtimer_del(n->n_timer);
	if (n->n_bev != NULL)
		bufferevent_free(n->n_bev);
	n->n_bev = NULL;
	if (n->n_i + 1 < n->n_addrs.n)
		log_debug("connect: %s; trying the next address", n->n_err);
	n->n_i++;
	nc_try(n);
}

static void
nc_done(struct nc *n, struct bufferevent *bev)
{
	nc_cb	 cb = n->n_cb;
	void	*arg = n->n_arg;
	char	 err[sizeof(n->n_err)];

	strlcpy_n(err, n->n_err[0] ? n->n_err : "no address", sizeof(err));
	event_free(n->n_timer);
	free(n);
	cb(bev, bev != NULL ? NULL : err, arg);
}

/* Why a connected bufferevent failed: TLS, eof_text, or the socket. */
void
bev_error_str(struct bufferevent *bev, short what, const char *eof_text,
    char *buf, size_t len)
{
	unsigned long	e;

	if ((e = bufferevent_get_openssl_error(bev)) != 0)
		snprintf(buf, len, "TLS: %s", ERR_reason_error_string(e));
	else if (what & BEV_EVENT_EOF)
		snprintf(buf, len, "%s", eof_text);
	else
		snprintf(buf, len, "%s",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}
