/*
 * evcurl.h - HTTP(S) client requests on a libevent loop, with libcurl's
 * multi-socket interface: never a blocking transfer inside the loop.
 * One struct evcurl per event base (per process).  TLS peer and host
 * verification always on; an extra trust anchor (TLS_CA_FILE) is added
 * to the system store, not swapped for it.  Response bodies are bounded.
 */
#ifndef NAIBER_EVCURL_H
#define NAIBER_EVCURL_H

#include <stddef.h>

#include <event2/event.h>

#define EVCURL_BODY_MAX	(1024 * 1024)
#define EVCURL_MAX_HEADERS 8

struct evcurl;

struct evcurl_resp {
	long		 er_status;	/* HTTP status, 0 if none arrived */
	int		 er_failed;	/* transport error or timeout */
	const char	*er_error;	/* short text when er_failed */
	const char	*er_body;	/* NUL-terminated, maybe empty */
	size_t		 er_len;
	double		 er_seconds;	/* total time */
};

/* Called once per request, from the loop; resp valid during the call. */
typedef void	(*evcurl_cb)(const struct evcurl_resp *, void *);

struct evcurl_req {
	const char	*rq_method;	/* "GET", "POST" */
	const char	*rq_url;
	const char	*rq_headers[EVCURL_MAX_HEADERS]; /* "Name: value", NULL end */
	const char	*rq_body;	/* copied; may be NULL */
	size_t		 rq_bodylen;
	const char	*rq_user;	/* HTTP Basic user, or NULL */
	const char	*rq_password;
	long		 rq_timeout_ms;	/* whole request */
	long		 rq_connect_timeout_ms;
	int		 rq_once;	/* not idempotent: fresh connection */
};

/*
 * curl_global_init() once per process; evcurl_new() calls it too.  The
 * fork server calls it so that no worker writes libcurl's, libssh2's and
 * OpenSSL's once-only state (pages each worker would copy).
 */
int		 evcurl_global_init(void);
struct evcurl	*evcurl_new(struct event_base *, const char *);
/*
 * Trusting exactly the anchors of store (a shared X509_STORE built
 * before fork, e.g. the TLS client context's), never loading a CA file:
 * a worker does not parse the system bundle again (~0.5 MB per process).
 * With store NULL, the same as evcurl_new(base, cafile).
 */
struct x509_store_st;
struct evcurl	*evcurl_new_store(struct event_base *,
		    struct x509_store_st *, const char *);
void		 evcurl_free(struct evcurl *);
/* 0 if started (cb will run exactly once), -1 if it could not start. */
int		 evcurl_start(struct evcurl *, const struct evcurl_req *,
		    evcurl_cb, void *) __attribute__((warn_unused_result));
/* Requests in flight. */
unsigned	 evcurl_pending(const struct evcurl *);

#endif
