/*
 * listener.c - the listening socket and struct conn, one per accepted
 * HTTP connection.  Runs in the supervisor.  Reads request heads and
 * bodies within limits (httphead.c) and times, hands complete requests
 * to the router, writes responses, keeps connections alive.  A stream
 * upgrade leaves through conn_detach(): the router has passed the fd
 * to a worker, so the conn goes away without touching the socket's
 * state (no shutdown(2), no bytes written).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "supervisor.h"

/* A connection that has sent nothing waits in the kernel this long. */
#define DEFER_ACCEPT_SECS	5
/* A request may start slowly: request_min_rate applies after this. */
#define RATE_GRACE_NS		2000000000ULL
/* At most one line per this many seconds per kind of refusal. */
#define REFUSE_LOG_SECS		10

static void	listener_accept(int, short, void *);
static void	listener_resume(int, short, void *);
static void	conn_new(int, struct sockaddr_storage *, socklen_t);
static void	conn_read(int, short, void *);
static void	conn_write(int, short, void *);
static void	conn_timeout(int, short, void *);
static void	conn_process(struct conn *);
static void	conn_arm_timer(struct conn *, long);
static void	conn_free(struct conn *);
static int	conn_admit(int, const struct sockaddr_storage *);
static int	conn_rate_ok(struct conn *, size_t);
static int	conn_shed(void);
static int	same_addr(const struct sockaddr_storage *,
		    const struct sockaddr_storage *);

static TAILQ_HEAD(, conn) conns = TAILQ_HEAD_INITIALIZER(conns);
static unsigned		nconns;
static struct event	*ev_listen;
static struct event	*ev_resume;
static int		 listen_paused;

static const char *
status_text(int code)
{
	switch (code) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 426: return "Upgrade Required";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* Bound before privileges are dropped; returns the fd or -1. */
int
listener_open(const char *addr, long port)
{
	struct addrinfo	 hints, *res = NULL;
	char		 ps[16];
	int		 fd, one = 1, rc, defer = DEFER_ACCEPT_SECS;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
	snprintf(ps, sizeof(ps), "%ld", port);
	if ((rc = getaddrinfo(addr, ps, &hints, &res)) != 0) {
		log_warnx("listen address %s: %s", addr, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("socket");
		freeaddrinfo(res);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 ||
	    listen(fd, 1024) == -1) {
		log_warn("listen on %s:%ld", addr, port);
		close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	/*
	 * Every client of ours speaks first: the kernel hands a connection
	 * over once its first bytes are in (or after DEFER_ACCEPT_SECS), so
	 * the head is usually read in the same turn as the accept and a
	 * connection that never sends costs the supervisor nothing.
	 */
	if (setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer,
	    sizeof(defer)) == -1)
		log_debug("TCP_DEFER_ACCEPT: %s", strerror(errno));
	return fd;
}

int
listener_start(int fd)
{
	ev_listen = event_new(sv.sv_base, fd, EV_READ | EV_PERSIST,
	    listener_accept, NULL);
	ev_resume = evtimer_new(sv.sv_base, listener_resume, NULL);
	if (ev_listen == NULL || ev_resume == NULL ||
	    event_add(ev_listen, NULL) == -1)
		return -1;
	return 0;
}

/* Drain: close the listening socket; open connections finish. */
void
listener_stop(void)
{
	if (ev_listen != NULL) {
		event_free(ev_listen);
		ev_listen = NULL;
	}
	if (sv.sv_listen_fd != -1) {
		close(sv.sv_listen_fd);
		sv.sv_listen_fd = -1;
	}
}

unsigned
listener_nconns(void)
{
	return nconns;
}

static void
listener_pause(int secs)
{
	struct timeval	tv = { secs, 0 };

	if (ev_listen == NULL || listen_paused)
		return;
	event_del(ev_listen);
	listen_paused = 1;
	if (secs > 0)
		evtimer_add(ev_resume, &tv);
}

static void
listener_resume(int fd, short ev, void *arg)
{
	(void)fd, (void)ev, (void)arg;
	if (ev_listen == NULL || !listen_paused || nconns >= CONN_MAX)
		return;
	listen_paused = 0;
	event_add(ev_listen, NULL);
}

static void
listener_accept(int lfd, short ev, void *arg)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len;
	int			 fd, i;

	(void)ev, (void)arg;
	for (i = 0; i < 64; i++) {
		len = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				log_warn("accept: pausing for a second");
				listener_pause(1);
			} else if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("accept");
			return;
		}
		if (conn_admit(fd, &ss) == -1)
			continue;
		conn_new(fd, &ss, len);
		if (nconns >= CONN_MAX && conn_shed() == -1) {
			log_warnx("%u connections open, all answering: not "
			    "accepting more until some close", nconns);
			listener_pause(0);
			return;
		}
	}
}

/*
 * Per source address at most max_conns_per_ip connections: the new one
 * is closed at once (nothing read, nothing written).  -1: refused.
 */
static int
conn_admit(int fd, const struct sockaddr_storage *ss)
{
	static uint64_t	 last_log;
	struct conn	*cn;
	long		 n = 0, cap = sv.sv_cf->max_conns_per_ip;
	uint64_t	 now;
	char		 host[INET6_ADDRSTRLEN] = "?";

	if (cap <= 0)
		return 0;
	TAILQ_FOREACH(cn, &conns, cn_entry)
		if (same_addr(&cn->cn_peer, ss) && ++n >= cap)
			break;
	if (n < cap)
		return 0;
	close(fd);
	metrics.m_conns_refused_ip++;
	now = now_mono_ns();
	if (now - last_log > REFUSE_LOG_SECS * 1000000000ULL) {
		last_log = now;
		if (ss->ss_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->
			    sin_addr, host, sizeof(host));
		else if (ss->ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)
			    ss)->sin6_addr, host, sizeof(host));
		log_warnx("%s: %ld connections open from this address "
		    "(max_conns_per_ip): new ones closed", host, cap);
	}
	return -1;
}

static int
same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		    ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		    &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
	return 0;
}

/*
 * At the connection cap, the oldest connection not being answered
 * (an idle keep-alive one, or a request still arriving: nothing of it
 * has been checked or acted on) is closed to make room, so a flood of
 * slow or silent connections cannot keep /health, signed webhooks or
 * POST /call out.  -1 if every connection is being answered.
 */
static int
conn_shed(void)
{
	static uint64_t	 last_log;
	struct conn	*cn;
	uint64_t	 now;

	TAILQ_FOREACH(cn, &conns, cn_entry)
		if (!cn->cn_busy)
			break;
	if (cn == NULL)
		return -1;
	metrics.m_conns_shed++;
	now = now_mono_ns();
	if (now - last_log > REFUSE_LOG_SECS * 1000000000ULL) {
		last_log = now;
		log_warnx("%u connections open (the cap): closing the oldest "
		    "unanswered ones to make room (%s first)", nconns,
		    cn->cn_addr);
	}
	if (cn->cn_t_req != 0 && (cn->cn_pos > cn->cn_reqstart ||
	    cn->cn_req.hh_in_head || cn->cn_req.hh_headers_done)) {
		/* A request half-received: say why, as for a timeout. */
		cn->cn_close_after = 1;
		conn_respond(cn, 503, "text/plain", "overloaded\n", 11,
		    NULL);
		/* Not waiting for the write: the slot is needed now. */
		(void)evbuffer_write(cn->cn_out, cn->cn_fd);
	}
	conn_close(cn, "shed at the connection cap");
	return 0;
}

static void
conn_new(int fd, struct sockaddr_storage *ss, socklen_t len)
{
	struct conn	*cn;
	char		 host[INET6_ADDRSTRLEN] = "?";
	int		 one = 1;

	if ((cn = calloc(1, sizeof(*cn))) == NULL) {
		log_warn("conn");
		close(fd);
		return;
	}
	cn->cn_fd = fd;
	memcpy(&cn->cn_peer, ss, len);
	cn->cn_peerlen = len;
	cn->cn_t_accept = now_mono_ns();
	cn->cn_t_req = cn->cn_t_accept;	/* deferred accept: it has begun */
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)ss)->sin_addr,
		    host, sizeof(host));
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ss)->sin6_addr,
		    host, sizeof(host));
	snprintf(cn->cn_addr, sizeof(cn->cn_addr), "%s", host);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	hh_init(&cn->cn_req);
	cn->cn_rev = event_new(sv.sv_base, fd, EV_READ | EV_PERSIST,
	    conn_read, cn);
	cn->cn_wev = event_new(sv.sv_base, fd, EV_WRITE, conn_write, cn);
	cn->cn_timer = evtimer_new(sv.sv_base, conn_timeout, cn);
	cn->cn_out = evbuffer_new();
	TAILQ_INSERT_TAIL(&conns, cn, cn_entry);
	nconns++;
	if (cn->cn_rev == NULL || cn->cn_wev == NULL ||
	    cn->cn_timer == NULL || cn->cn_out == NULL ||
	    event_add(cn->cn_rev, NULL) == -1) {
		conn_close(cn, "out of memory");
		return;
	}
	conn_arm_timer(cn, sv.sv_cf->head_timeout);
	conn_read(fd, EV_READ, cn);	/* deferred accept: bytes are here */
}

static void
conn_arm_timer(struct conn *cn, long secs)
{
	struct timeval	tv = { secs, 0 };

	evtimer_add(cn->cn_timer, &tv);
}

static void
conn_timeout(int fd, short ev, void *arg)
{
	struct conn	*cn = arg;

	(void)fd, (void)ev;
	if (cn->cn_busy) {
		conn_close(cn, "response not taken in time");
		return;
	}
	if (cn->cn_pos > cn->cn_reqstart || cn->cn_req.hh_in_head ||
	    cn->cn_req.hh_headers_done || cn->cn_req_bytes > 0) {
		log_info("%s: request not received within %ld s (%zu bytes)",
		    cn->cn_addr, sv.sv_cf->head_timeout, cn->cn_req_bytes);
		cn->cn_close_after = 1;
		conn_respond(cn, 408, "text/plain", "request timeout\n", 16,
		    NULL);
		return;
	}
	conn_close(cn, NULL);	/* idle keep-alive connection */
}

static void
conn_read(int fd, short ev, void *arg)
{
	struct conn	*cn = arg;
	ssize_t		 n;
	size_t		 room;

	(void)ev;
	if (cn->cn_busy || cn->cn_close_after)
		return;
	/* Keep at most the current request's unparsed bytes. */
	if (cn->cn_reqstart > 0 && cn->cn_req.hh_headers_done == 0) {
		memmove(cn->cn_in, cn->cn_in + cn->cn_reqstart,
		    cn->cn_inlen - cn->cn_reqstart);
		cn->cn_inlen -= cn->cn_reqstart;
		cn->cn_pos -= cn->cn_reqstart;
		cn->cn_reqstart = 0;
	}
	room = sizeof(cn->cn_in) - cn->cn_inlen;
	if (room == 0) {
		conn_close(cn, "input buffer full");
		return;
	}
	n = read(fd, cn->cn_in + cn->cn_inlen, room);
	if (n == -1) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		conn_close(cn, NULL);
		return;
	}
	if (n == 0) {
		conn_close(cn, NULL);
		return;
	}
	cn->cn_inlen += (size_t)n;
	if (conn_rate_ok(cn, (size_t)n) == -1)
		return;
	conn_process(cn);
}

/*
 * The whole request (head and body) has head_timeout from its first
 * byte, which later bytes do not extend; past RATE_GRACE_NS it must
 * also keep up request_min_rate.  -1: too slow, answered 408.
 */
static int
conn_rate_ok(struct conn *cn, size_t n)
{
	static uint64_t	 last_log;
	uint64_t	 now = now_mono_ns(), el;
	long		 rate = sv.sv_cf->request_min_rate;

	if (cn->cn_t_req == 0) {
		cn->cn_t_req = now;
		cn->cn_req_bytes = 0;
		conn_arm_timer(cn, sv.sv_cf->head_timeout);
	}
	cn->cn_req_bytes += n;
	el = now - cn->cn_t_req;
	if (rate <= 0 || el <= RATE_GRACE_NS || (double)cn->cn_req_bytes >=
	    (double)rate * (double)(el - RATE_GRACE_NS) / 1e9)
		return 0;
	metrics.m_conns_slow++;
	if (now - last_log > REFUSE_LOG_SECS * 1000000000ULL) {
		last_log = now;
		log_info("%s: request too slow: %zu bytes in %.1f s "
		    "(request_min_rate %ld)", cn->cn_addr, cn->cn_req_bytes,
		    (double)el / 1e9, rate);
	}
	cn->cn_close_after = 1;
	conn_respond(cn, 408, "text/plain", "request too slow\n", 17, NULL);
	return -1;
}

/* Parse what we hold; dispatch at most one request at a time. */
static void
conn_process(struct conn *cn)
{
	struct hhead	*h = &cn->cn_req;
	enum hh_state	 st;
	size_t		 used;

	while (!cn->cn_busy && !cn->cn_close_after &&
	    cn->cn_pos < cn->cn_inlen) {
		st = hh_feed(h, cn->cn_in + cn->cn_pos,
		    cn->cn_inlen - cn->cn_pos, &used);
		cn->cn_pos += used;
		if (h->hh_headers_done && st == HH_MORE && !h->hh_upgrade) {
			/* Body bytes are copied out: forget them. */
			size_t keep = cn->cn_inlen - cn->cn_pos;
			memmove(cn->cn_in, cn->cn_in + cn->cn_pos, keep);
			cn->cn_inlen = keep;
			cn->cn_pos = cn->cn_reqstart = 0;
		}
		switch (st) {
		case HH_MORE:
			/* The request's deadline stands: no re-arming. */
			if (h->hh_headers_done && h->hh_expect_continue) {
				/* RFC 9110 10.1.1: the client waits for it. */
				h->hh_expect_continue = 0;
				evbuffer_add(cn->cn_out,
				    "HTTP/1.1 100 Continue\r\n\r\n", 25);
				(void)evbuffer_write(cn->cn_out, cn->cn_fd);
				/* 25 bytes on a fresh socket: all or bust. */
				if (evbuffer_get_length(cn->cn_out) > 0) {
					conn_close(cn, "cannot send 100 "
					    "Continue");
					return;
				}
			}
			return;
		case HH_ERROR:
			log_info("%s: bad request: %s", cn->cn_addr,
			    h->hh_error);
			cn->cn_close_after = 1;
			conn_respond_json_error(cn, h->hh_status, h->hh_error);
			return;
		case HH_UPGRADE:
			cn->cn_busy = 1;
			event_del(cn->cn_rev);
			evtimer_del(cn->cn_timer);
			router_upgrade(cn, h);
			return;
		case HH_DONE:
			cn->cn_busy = 1;
			event_del(cn->cn_rev);
			cn->cn_nreq++;
			if (!h->hh_keepalive || sv.sv_state != SV_RUNNING)
				cn->cn_close_after = 1;
			conn_arm_timer(cn, CONN_ANSWER_SECS);
			router_dispatch(cn, h);
			return;
		}
	}
}

void
conn_respond(struct conn *cn, int code, const char *ctype, const char *body,
    size_t len, const char *extra)
{
	cn->cn_op = NULL;
	cn->cn_op_cancel = NULL;
	metrics_http(code);
	if (code == 413 || code == 431 || (code >= 500 && code != 503))
		cn->cn_close_after = 1;
	evbuffer_add_printf(cn->cn_out, "HTTP/1.1 %d %s\r\n"
	    "Content-Length: %zu\r\n%s%s%s%s"
	    "Connection: %s\r\n\r\n", code, status_text(code), len,
	    ctype ? "Content-Type: " : "", ctype ? ctype : "",
	    ctype ? "\r\n" : "", extra ? extra : "",
	    cn->cn_close_after ? "close" : "keep-alive");
	if (len > 0)
		evbuffer_add(cn->cn_out, body, len);
	cn->cn_busy = 1;
	event_del(cn->cn_rev);
	conn_arm_timer(cn, sv.sv_cf->head_timeout);
	event_add(cn->cn_wev, NULL);
}

void
conn_respond_json_error(struct conn *cn, int code, const char *msg)
{
	char	body[512], esc[300];

	if (json_escape(msg, esc, sizeof(esc)) == -1)
		snprintf(esc, sizeof(esc), "error");
	snprintf(body, sizeof(body), "{\"success\":false,\"error\":\"%s\"}",
	    esc);
	conn_respond(cn, code, "application/json", body, strlen(body),
	    code == 405 ? "Allow: GET, POST\r\n" : NULL);
}

static void
conn_write(int fd, short ev, void *arg)
{
	struct conn	*cn = arg;
	int		 n;

	(void)ev;
	n = evbuffer_write(cn->cn_out, fd);
	if (n == -1 && errno != EAGAIN && errno != EINTR) {
		conn_close(cn, NULL);
		return;
	}
	if (evbuffer_get_length(cn->cn_out) > 0) {
		event_add(cn->cn_wev, NULL);
		return;
	}
	/* Response sent. */
	if (cn->cn_close_after) {
		conn_close(cn, NULL);
		return;
	}
	hh_reset(&cn->cn_req);
	cn->cn_reqstart = cn->cn_pos;
	cn->cn_busy = 0;
	event_add(cn->cn_rev, NULL);
	conn_arm_timer(cn, sv.sv_cf->head_timeout);
	/* Idle until the next request's first byte, unless it is here. */
	cn->cn_t_req = cn->cn_pos < cn->cn_inlen ? now_mono_ns() : 0;
	cn->cn_req_bytes = cn->cn_inlen - cn->cn_pos;
	conn_process(cn);	/* a pipelined request may be waiting */
}

static void
conn_free(struct conn *cn)
{
	if (cn->cn_op != NULL && cn->cn_op_cancel != NULL)
		cn->cn_op_cancel(cn->cn_op);
	TAILQ_REMOVE(&conns, cn, cn_entry);
	nconns--;
	if (cn->cn_rev)
		event_free(cn->cn_rev);
	if (cn->cn_wev)
		event_free(cn->cn_wev);
	if (cn->cn_timer)
		event_free(cn->cn_timer);
	if (cn->cn_out)
		evbuffer_free(cn->cn_out);
	hh_reset(&cn->cn_req);
	free(cn);
	if (listen_paused && nconns < CONN_MAX && !evtimer_pending(ev_resume,
	    NULL))
		listener_resume(-1, 0, NULL);
}

void
conn_close(struct conn *cn, const char *reason)
{
	if (reason != NULL)
		log_debug("%s: connection closed: %s", cn->cn_addr, reason);
	close(cn->cn_fd);
	conn_free(cn);
}

/* The fd now belongs to a worker: close our copy, write nothing. */
void
conn_detach(struct conn *cn)
{
	close(cn->cn_fd);
	conn_free(cn);
}
