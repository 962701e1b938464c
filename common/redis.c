/*
 * redis.c - the Redis connection of a process, on its libevent loop.
 * Owns struct rds (the connection: host name resolved on the loop,
 * every address tried in order, TLS for rediss:// with certificate and
 * host name checked, the AUTH/SELECT handshake, reconnect with
 * back-off) and struct rds_req (one per command, in the order sent:
 * its timeout timer and the exactly-once call of its callback); also
 * the REDIS_URL parser and the key builders of DESIGN §4.  hiredis is
 * used only to format commands and parse replies (its reader); the
 * transport is a bufferevent (libevent, with OpenSSL for TLS), since
 * Debian's hiredis 0.14 can neither resolve without blocking nor speak
 * TLS.  The password is never logged.
 */
#include <sys/queue.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>
#include <hiredis/hiredis.h>
#include <openssl/err.h>

#include "dns.h"
#include "log.h"
#include "redis.h"
#include "tls.h"
#include "util.h"

/*
 * Contracts (see also redis.h):
 * - rds_cmd()/rds_cmdf() return -1 at once, and never call back, while
 *   not connected, which includes the AUTH/SELECT handshake: nothing is
 *   queued behind it.  They also refuse SELECT, MONITOR and the
 *   (P|S)(UN)SUBSCRIBE family (one reply per command is assumed).
 * - A command they accept (0) gets its callback exactly once, never
 *   from inside rds_cmd(): the reply, or (NULL, "timeout") when
 *   r_timeout_ms passes first (the late reply is dropped), or (NULL,
 *   "disconnected") from the loop shortly after the connection died.
 *   A NULL callback is allowed (fire and forget).  Callbacks may call
 *   rds_cmd(), rds_cmdf() and rds_free().
 * - RDS_MAXTIMEOUTS timeouts in a row condemn the connection.
 * - rds_free() calls no further callbacks: pending commands are
 *   dropped silently.  It may be called from inside any rds callback.
 * - The state callback sees only transitions: 1 once the handshake is
 *   done, 0 when a connection that was reported up is gone.
 * A dead or condemned connection is freed by the zero timer r_lost,
 * never from inside the callback that found it dead.
 */

#define RDS_BACKOFF_MIN	100		/* ms, doubled per failure */
#define RDS_BACKOFF_MAX	5000
#define RDS_MAXTIMEOUTS	3
#define RDS_ID_MAX	128
#define RDS_REPLY_MAX	(64 * 1024 * 1024)	/* bytes of one reply */

enum rds_state {
	RS_IDLE = 0,		/* no connection; r_retry armed */
	RS_CONNECTING,		/* resolving, connecting, handshake due */
	RS_UP,			/* handshake done: commands accepted */
	RS_DOWN			/* connection dead or condemned; r_lost armed */
};

struct rds_req {
	TAILQ_ENTRY(rds_req)	 q_entry;
	struct rds		*q_r;		/* NULL: orphaned by rds_free */
	rds_cb			 q_cb;
	void			*q_arg;
	struct event		*q_timer;
	int			 q_done;	/* q_cb has run (timeout) */
};

TAILQ_HEAD(rds_reqs, rds_req);

struct rds {
	struct event_base	*r_base;
	struct rds_url		 r_url;
	char			 r_name[300];	/* host:port/db, for logs */
	long			 r_timeout_ms;
	struct nc		*r_nc;		/* connecting */
	struct bufferevent	*r_bev;		/* connected */
	redisReader		*r_reader;
	size_t			 r_fed;		/* bytes since the last reply */
	enum rds_state		 r_state;
	int			 r_reported;	/* last state told r_state_fn */
	int			 r_handshake;	/* handshake replies due */
	int			 r_timeouts;	/* in a row */
	long			 r_backoff_ms;
	int			 r_depth;	/* callbacks running */
	int			 r_dying;	/* rds_free() while r_depth */
	char			 r_lasterr[256];
	struct event		*r_lost;
	struct event		*r_retry;
	void			(*r_state_fn)(int, void *);
	void			*r_state_arg;
	struct rds_reqs		 r_reqs;
};

static int	key_id_ok(const char *);
static int	key_build(char *, size_t, const char *, const char *);
static void	rds_connect(struct rds *);
static int	rds_handshake(struct rds *);
static void	rds_hs_auth(const redisReply *, const char *, void *);
static void	rds_hs_select(const redisReply *, const char *, void *);
static void	rds_hs_ping(const redisReply *, const char *, void *);
static void	rds_hs_reply(struct rds *, const redisReply *, const char *,
		    const char *);
static void	rds_on_nc(struct bufferevent *, const char *, void *);
static void	rds_read_cb(struct bufferevent *, void *);
static void	rds_event_cb(struct bufferevent *, short, void *);
static void	rds_close(struct rds *);
static void	rds_fail_all(struct rds *, const char *);
static void	rds_down(struct rds *, enum log_level, const char *);
static void	rds_lost_cb(evutil_socket_t, short, void *);
static void	rds_retry_cb(evutil_socket_t, short, void *);
static void	rds_retry_arm(struct rds *);
static void	rds_logerr(struct rds *, enum log_level, const char *);
static void	rds_notify(struct rds *, int);
static void	rds_enter(struct rds *);
static int	rds_leave(struct rds *);
static void	rds_destroy(struct rds *);
static int	rds_queue(struct rds *, rds_cb, void *, char *, int);
static void	rds_req_free(struct rds_req *);
static int	rds_deliver(struct rds *, struct rds_req *,
		    const redisReply *, const char *);
static void	rds_timeout_cb(evutil_socket_t, short, void *);
static int	rds_send_argv(struct rds *, rds_cb, void *, int,
		    const char **, const size_t *);
static int	rds_cmd_refused(const char *, size_t);

static const struct timeval rds_zero_tv = { 0, 0 };

/* --- key builders (DESIGN §4) --------------------------------------- */

int
key_call_type(char *buf, size_t len, const char *call_sid)
{
	return key_build(buf, len, "call_type:", call_sid);
}

int
key_call(char *buf, size_t len, const char *call_sid)
{
	return key_build(buf, len, "call:", call_sid);
}

int
key_session(char *buf, size_t len, const char *conversation_id)
{
	return key_build(buf, len, "session:", conversation_id);
}

int
key_rag_user(char *buf, size_t len, const char *user_id)
{
	return key_build(buf, len, "rag:user:", user_id);
}

int
key_rag_phone(char *buf, size_t len, const char *phone)
{
	return key_build(buf, len, "rag:phone:", phone);
}

/* Ids come from outside: 1..128 bytes of [A-Za-z0-9_+.:-]. */
static int
key_id_ok(const char *id)
{
	size_t	i;
	char	c;

	for (i = 0; (c = id[i]) != '\0'; i++) {
		if (i >= RDS_ID_MAX)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '+' ||
		    c == '.' || c == ':' || c == '-'))
			return 0;
	}
	return i > 0;
}

/* 0, or -1 with buf emptied (when it has room for that). */
static int
key_build(char *buf, size_t len, const char *prefix, const char *id)
{
	int	n;

	if (buf == NULL || len == 0)
		return -1;
	buf[0] = '\0';
	if (id == NULL || !key_id_ok(id))
		return -1;
	n = snprintf(buf, len, "%s%s", prefix, id);
	if (n < 0 || (size_t)n >= len) {
		buf[0] = '\0';
		return -1;
	}
	return 0;
}

/* --- the connection ------------------------------------------------- */

struct rds *
rds_new(struct event_base *base, const char *url, long timeout_ms)
{
	struct rds	*r;
	const char	*why;

	if (base == NULL || url == NULL || timeout_ms <= 0) {
		log_warnx("redis: no event base, URL or command timeout");
		return NULL;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		log_warn("redis: calloc");
		return NULL;
	}
	if ((why = rds_url_error(url)) != NULL ||
	    rds_url_parse(url, &r->r_url) == -1) {
		log_warnx("redis: invalid URL: %s", why);
		free(r);
		return NULL;
	}
	r->r_base = base;
	r->r_timeout_ms = timeout_ms;
	r->r_backoff_ms = RDS_BACKOFF_MIN;
	TAILQ_INIT(&r->r_reqs);
	snprintf(r->r_name, sizeof(r->r_name), "%s%s%s%s:%d/%d",
	    r->r_url.ru_tls ? "tls:" : "",
	    strchr(r->r_url.ru_host, ':') ? "[" : "", r->r_url.ru_host,
	    strchr(r->r_url.ru_host, ':') ? "]" : "", r->r_url.ru_port,
	    r->r_url.ru_db);
	if (r->r_url.ru_ignored[0] != '\0')
		log_warnx("redis %s: URL parameter %s ignored (an ioredis "
		    "option naiberd has no use for)", r->r_name,
		    r->r_url.ru_ignored);
	r->r_lost = evtimer_new(base, rds_lost_cb, r);
	r->r_retry = evtimer_new(base, rds_retry_cb, r);
	if (r->r_lost == NULL || r->r_retry == NULL) {
		log_warnx("redis %s: cannot create timers", r->r_name);
		rds_destroy(r);
		return NULL;
	}
	rds_connect(r);
	return r;
}

void
rds_free(struct rds *r)
{
	if (r == NULL)
		return;
	if (r->r_depth > 0) {
		/* Inside one of our callbacks: its frame finishes this. */
		r->r_dying = 1;
		return;
	}
	rds_destroy(r);
}

int
rds_connected(const struct rds *r)
{
	return r != NULL && r->r_state == RS_UP && !r->r_dying;
}

void
rds_on_state(struct rds *r, void (*fn)(int, void *), void *arg)
{
	r->r_state_fn = fn;
	r->r_state_arg = arg;
}

/* No callback runs from here on; pending commands are dropped. */
static void
rds_destroy(struct rds *r)
{
	struct rds_req	*q;

	rds_close(r);
	while ((q = TAILQ_FIRST(&r->r_reqs)) != NULL) {
		TAILQ_REMOVE(&r->r_reqs, q, q_entry);
		rds_req_free(q);
	}
	if (r->r_lost != NULL)
		event_free(r->r_lost);
	if (r->r_retry != NULL)
		event_free(r->r_retry);
	log_debug("redis %s: closed", r->r_name);
	explicit_bzero(&r->r_url, sizeof(r->r_url));
	free(r);
}

/* Drop the transport (any stage) without touching the requests. */
static void
rds_close(struct rds *r)
{
	if (r->r_nc != NULL)
		nc_cancel(r->r_nc);
	r->r_nc = NULL;
	if (r->r_bev != NULL)
		bufferevent_free(r->r_bev);
	r->r_bev = NULL;
	if (r->r_reader != NULL)
		redisReaderFree(r->r_reader);
	r->r_reader = NULL;
	r->r_fed = 0;
}

static void
rds_connect(struct rds *r)
{
	const struct rds_url	*u = &r->r_url;
	SSL_CTX			*ctx = NULL;
	int			 fam;

	log_debug("redis %s: connecting", r->r_name);
	if (u->ru_tls && (ctx = tls_client_ctx()) == NULL) {
		rds_logerr(r, LL_ERROR, "no TLS client context");
		rds_retry_arm(r);
		return;
	}
	fam = u->ru_family == 4 ? AF_INET : u->ru_family == 6 ? AF_INET6 :
	    AF_UNSPEC;
	r->r_nc = nc_connect(r->r_base, u->ru_host, u->ru_port, fam, ctx,
	    u->ru_connect_ms > 0 ? u->ru_connect_ms : r->r_timeout_ms,
	    rds_on_nc, r);
	if (r->r_nc == NULL) {
		rds_logerr(r, LL_WARN, "cannot start connecting");
		rds_retry_arm(r);
		return;
	}
	r->r_state = RS_CONNECTING;
	r->r_timeouts = 0;
}

static void
rds_on_nc(struct bufferevent *bev, const char *err, void *arg)
{
	struct rds	*r = arg;
	int		 one = 1;

	r->r_nc = NULL;
	if (bev == NULL) {
		/* A certificate refused is a configuration error. */
		rds_down(r, strncmp(err, "TLS", 3) == 0 ? LL_ERROR : LL_WARN,
		    err);
		return;
	}
	r->r_bev = bev;
	if ((r->r_reader = redisReaderCreate()) == NULL) {
		rds_down(r, LL_WARN, "out of memory");
		return;
	}
	(void)setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY,
	    &one, sizeof(one));
	bufferevent_setcb(bev, rds_read_cb, NULL, rds_event_cb, r);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	if (rds_handshake(r) == -1)
		rds_down(r, LL_WARN, "cannot send the handshake");
}

static int
rds_handshake(struct rds *r)
{
	const struct rds_url	*u = &r->r_url;
	const char		*argv[3];
	size_t			 lens[3];
	char			 db[16];
	int			 argc = 0, i;

	r->r_handshake = 0;
	if (u->ru_password[0] != '\0') {
		argv[argc++] = "AUTH";
		if (u->ru_user[0] != '\0')
			argv[argc++] = u->ru_user;
		argv[argc++] = u->ru_password;
		for (i = 0; i < argc; i++)
			lens[i] = strlen(argv[i]);
		if (rds_send_argv(r, rds_hs_auth, r, argc, argv, lens) == -1)
			return -1;
		r->r_handshake++;
	}
	if (u->ru_db != 0) {
		snprintf(db, sizeof(db), "%d", u->ru_db);
		argv[0] = "SELECT";
		argv[1] = db;
		if (rds_send_argv(r, rds_hs_select, r, 2, argv, NULL) == -1)
			return -1;
		r->r_handshake++;
	}
	if (r->r_handshake == 0) {
		argv[0] = "PING";
		if (rds_send_argv(r, rds_hs_ping, r, 1, argv, NULL) == -1)
			return -1;
		r->r_handshake++;
	}
	return 0;
}

static void
rds_hs_auth(const redisReply *rep, const char *err, void *arg)
{
	rds_hs_reply(arg, rep, err, "AUTH");
}

static void
rds_hs_select(const redisReply *rep, const char *err, void *arg)
{
	rds_hs_reply(arg, rep, err, "SELECT");
}

static void
rds_hs_ping(const redisReply *rep, const char *err, void *arg)
{
	rds_hs_reply(arg, rep, err, "PING");
}

/* Runs inside rds_deliver(), so r_depth > 0: r cannot vanish here. */
static void
rds_hs_reply(struct rds *r, const redisReply *rep, const char *err,
    const char *what)
{
	char	msg[200];

	if (r->r_state != RS_CONNECTING)
		return;		/* "disconnected": r_lost is on it */
	if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
		if (rep == NULL)
			snprintf(msg, sizeof(msg), "%s failed: %s", what, err);
		else
			snprintf(msg, sizeof(msg), "%s refused: %.*s", what,
			    (int)(rep->len > 150 ? 150 : rep->len), rep->str);
		/* A refusal is a configuration error: say it louder. */
		rds_down(r, rep == NULL ? LL_WARN : LL_ERROR, msg);
		return;
	}
	if (--r->r_handshake > 0)
		return;
	r->r_state = RS_UP;
	r->r_timeouts = 0;
	r->r_backoff_ms = RDS_BACKOFF_MIN;
	r->r_lasterr[0] = '\0';
	log_info("redis %s: connected", r->r_name);
	rds_notify(r, 1);
}

/* Replies, in the order the commands were sent. */
static void
rds_read_cb(struct bufferevent *bev, void *arg)
{
	struct rds		*r = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	struct evbuffer_iovec	 v[8];
	struct rds_req		*q;
	void			*rep;
	size_t			 len;
	int			 i, nv, rc;

	while ((len = evbuffer_get_length(in)) > 0) {
		nv = evbuffer_peek(in, -1, NULL, v, 8);
		if (nv > 8)
			nv = 8;
		len = 0;
		for (i = 0; i < nv; i++) {
			if (redisReaderFeed(r->r_reader, v[i].iov_base,
			    v[i].iov_len) != REDIS_OK) {
				rds_down(r, LL_WARN, "out of memory");
				return;
			}
			len += v[i].iov_len;
		}
		evbuffer_drain(in, len);
		r->r_fed += len;
	}
	rds_enter(r);
	while (!r->r_dying && r->r_state != RS_DOWN) {
		rep = NULL;
		if ((rc = redisReaderGetReply(r->r_reader, &rep)) !=
		    REDIS_OK) {
			rds_down(r, LL_WARN, "protocol error in a reply");
			break;
		}
		if (rep == NULL) {
			if (r->r_fed > RDS_REPLY_MAX)
				rds_down(r, LL_WARN, "a reply larger than "
				    "64 MiB");
			break;
		}
		r->r_fed = 0;
		if ((q = TAILQ_FIRST(&r->r_reqs)) == NULL) {
			freeReplyObject(rep);
			rds_down(r, LL_WARN, "a reply to no command");
			break;
		}
		TAILQ_REMOVE(&r->r_reqs, q, q_entry);
		r->r_timeouts = 0;
		if (!q->q_done)
			(void)rds_deliver(r, q, rep, NULL);
		rds_req_free(q);
		freeReplyObject(rep);
	}
	(void)rds_leave(r);
}

static void
rds_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct rds	*r = arg;
	char		 why[200];

	bev_error_str(bev, what, "closed by the server", why, sizeof(why));
	rds_down(r, LL_WARN, why);
}

/* Condemn the connection; r_lost frees it and fails what was pending. */
static void
rds_down(struct rds *r, enum log_level l, const char *why)
{
	if (r->r_state != RS_UP && r->r_state != RS_CONNECTING)
		return;
	if (r->r_state == RS_UP) {
		log_warnx("redis %s: connection lost: %s", r->r_name, why);
		r->r_lasterr[0] = '\0';
	} else
		rds_logerr(r, l, why);
	r->r_state = RS_DOWN;
	if (r->r_bev != NULL)
		bufferevent_disable(r->r_bev, EV_READ | EV_WRITE);
	evtimer_add(r->r_lost, &rds_zero_tv);
}

static void
rds_lost_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rds	*r = arg;

	(void)fd;
	(void)what;
	rds_close(r);
	r->r_state = RS_IDLE;
	r->r_handshake = 0;
	rds_retry_arm(r);
	rds_enter(r);
	if (r->r_reported)
		rds_notify(r, 0);
	rds_fail_all(r, "disconnected");
	(void)rds_leave(r);
}

/* The caller holds r_depth. */
static void
rds_fail_all(struct rds *r, const char *why)
{
	struct rds_req	*q;

	while (!r->r_dying && (q = TAILQ_FIRST(&r->r_reqs)) != NULL) {
		TAILQ_REMOVE(&r->r_reqs, q, q_entry);
		if (!q->q_done)
			(void)rds_deliver(r, q, NULL, why);
		rds_req_free(q);
	}
}

static void
rds_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	rds_connect(arg);
}

static void
rds_retry_arm(struct rds *r)
{
	struct timeval	tv;

	tv.tv_sec = r->r_backoff_ms / 1000;
	tv.tv_usec = (r->r_backoff_ms % 1000) * 1000;
	log_debug("redis %s: next attempt in %ld ms", r->r_name,
	    r->r_backoff_ms);
	evtimer_add(r->r_retry, &tv);
	r->r_backoff_ms *= 2;
	if (r->r_backoff_ms > RDS_BACKOFF_MAX)
		r->r_backoff_ms = RDS_BACKOFF_MAX;
}

/* One line per distinct failure while down, not one per retry. */
static void
rds_logerr(struct rds *r, enum log_level l, const char *why)
{
	if (strcmp(r->r_lasterr, why) == 0) {
		log_debug("redis %s: cannot connect: %s", r->r_name, why);
		return;
	}
	strlcpy_n(r->r_lasterr, why, sizeof(r->r_lasterr));
	if (l == LL_ERROR)
		log_error("redis %s: cannot connect: %s", r->r_name, why);
	else
		log_warnx("redis %s: cannot connect: %s", r->r_name, why);
}

/* The caller holds r_depth, so r outlives the callback. */
static void
rds_notify(struct rds *r, int up)
{
	r->r_reported = up;
	if (r->r_state_fn == NULL)
		return;
	rds_enter(r);
	r->r_state_fn(up, r->r_state_arg);
	(void)rds_leave(r);
}

static void
rds_enter(struct rds *r)
{
	r->r_depth++;
}

/* -1 if rds_free() was called meanwhile and r is now gone. */
static int
rds_leave(struct rds *r)
{
	if (--r->r_depth == 0 && r->r_dying) {
		rds_destroy(r);
		return -1;
	}
	return 0;
}

/* --- commands ------------------------------------------------------- */

int
rds_cmd(struct rds *r, rds_cb cb, void *arg, int argc, const char **argv,
    const size_t *lens)
{
	if (!rds_connected(r) || argc <= 0 || argv == NULL ||
	    argv[0] == NULL)
		return -1;
	if (rds_cmd_refused(argv[0], lens != NULL ? lens[0] :
	    strlen(argv[0])))
		return -1;
	return rds_send_argv(r, cb, arg, argc, argv, lens);
}

int
rds_cmdf(struct rds *r, rds_cb cb, void *arg, const char *fmt, ...)
{
	const char	*w;
	va_list		 ap;
	char		*cmd = NULL;
	int		 len;

	if (!rds_connected(r) || fmt == NULL)
		return -1;
	w = fmt + strspn(fmt, " ");
	if (rds_cmd_refused(w, strcspn(w, " ")))
		return -1;
	va_start(ap, fmt);
	len = redisvFormatCommand(&cmd, fmt, ap);
	va_end(ap);
	return rds_queue(r, cb, arg, cmd, len);
}

static int
rds_cmd_refused(const char *name, size_t n)
{
	static const char *const refused[] = {
		"SELECT", "MONITOR", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE",
		"UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE"
	};
	size_t	i;

	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (strlen(refused[i]) == n &&
		    strncasecmp(name, refused[i], n) == 0)
			return 1;
	return 0;
}

static int
rds_send_argv(struct rds *r, rds_cb cb, void *arg, int argc,
    const char **argv, const size_t *lens)
{
	char	*cmd = NULL;
	int	 len;

	len = redisFormatCommandArgv(&cmd, argc, argv, lens);
	return rds_queue(r, cb, arg, cmd, len);
}

/* Send the formatted command cmd (freed here) and queue its request. */
static int
rds_queue(struct rds *r, rds_cb cb, void *arg, char *cmd, int len)
{
	struct rds_req	*q;
	struct timeval	 tv;

	if (cmd == NULL || len <= 0 || r->r_bev == NULL ||
	    (q = calloc(1, sizeof(*q))) == NULL) {
		if (cmd != NULL)
			redisFreeCommand(cmd);
		return -1;
	}
	if ((q->q_timer = evtimer_new(r->r_base, rds_timeout_cb, q)) ==
	    NULL || bufferevent_write(r->r_bev, cmd, (size_t)len) == -1) {
		redisFreeCommand(cmd);
		rds_req_free(q);
		return -1;
	}
	redisFreeCommand(cmd);
	q->q_r = r;
	q->q_cb = cb;
	q->q_arg = arg;
	TAILQ_INSERT_TAIL(&r->r_reqs, q, q_entry);
	tv.tv_sec = r->r_timeout_ms / 1000;
	tv.tv_usec = (r->r_timeout_ms % 1000) * 1000;
	if (evtimer_add(q->q_timer, &tv) == -1)
		log_warnx("redis %s: cannot arm a command timeout",
		    r->r_name);
	return 0;
}

static void
rds_req_free(struct rds_req *q)
{
	if (q->q_timer != NULL)
		event_free(q->q_timer);
	free(q);
}

/*
 * Calls q's callback once (q stays queued until its reply or the end of
 * the connection); returns -1 if r was freed meanwhile.
 */
static int
rds_deliver(struct rds *r, struct rds_req *q, const redisReply *rep,
    const char *err)
{
	q->q_done = 1;
	if (q->q_timer != NULL) {
		event_free(q->q_timer);
		q->q_timer = NULL;
	}
	rds_enter(r);
	if (q->q_cb != NULL)
		q->q_cb(rep, err, q->q_arg);
	return rds_leave(r);
}

static void
rds_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rds_req	*q = arg;
	struct rds	*r = q->q_r;
	char		 msg[64];

	(void)fd;
	(void)what;
	if (r->r_state == RS_UP && ++r->r_timeouts >= RDS_MAXTIMEOUTS) {
		snprintf(msg, sizeof(msg), "%d commands in a row timed out",
		    r->r_timeouts);
		rds_down(r, LL_WARN, msg);
	}
	(void)rds_deliver(r, q, NULL, "timeout");
}
