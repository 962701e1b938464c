/*
 * dns.h - host names resolved on the process's event loop (evdns), and
 * connections that try every address a name returns, in order.
 */
#ifndef NAIBER_DNS_H
#define NAIBER_DNS_H

#include <sys/socket.h>

#include <event2/event.h>
#include <event2/bufferevent.h>
#include <openssl/ssl.h>

#define DNS_MAXADDRS	8

struct dns_addrs {
	int			 n;
	struct sockaddr_storage	 ss[DNS_MAXADDRS];
	socklen_t		 len[DNS_MAXADDRS];
};

struct dns_req;
struct evdns_base;

/* err is NULL on success (a->n >= 1), else why (a is NULL). */
typedef void	(*dns_cb)(const struct dns_addrs *a, const char *err,
		    void *arg);

int		 dns_setup(struct event_base *, const char *, long);
/* libevent's once-only resolver registration, before forking workers. */
void		 dns_prewarm(void);
struct evdns_base *dns_base(void);
long		 dns_timeout_ms(void);
struct dns_req	*dns_lookup(struct event_base *, const char *, int, dns_cb,
		    void *);
void		 dns_cancel(struct dns_req *);
int		 dns_is_numeric(const char *);
void		 dns_prefetch_url(struct event_base *, const char *);
void		 dns_addr_str(const struct sockaddr *, char *, size_t);

/*
 * A TCP connection to host:port: every address tried in order, each
 * for at most timeout_ms; TLS (certificate and host name checked)
 * when ctx is not NULL.  cb gets the connected bufferevent (the
 * caller's from then on, its callbacks to be set) or NULL and why;
 * never from inside nc_connect().  nc_cancel() before the callback
 * stops it: no callback follows.
 */
struct nc;
typedef void	(*nc_cb)(struct bufferevent *, const char *err, void *arg);

struct nc	*nc_connect(struct event_base *, const char *, int, int,
		    SSL_CTX *, long, nc_cb, void *);
void		 nc_cancel(struct nc *);
void		 bev_error_str(struct bufferevent *, short, const char *,
		    char *, size_t);

#endif
