/*
 * redis.c - the Redis connection of a process, on its libevent loop.
 * Owns struct rds (hiredis 0.14 async context, the AUTH/SELECT
 * handshake, reconnect with back-off) and struct rds_req (one per
 * command: its timeout timer and the exactly-once call of its
 * callback); also the REDIS_URL parser and the key builders of DESIGN
 * §4.  Used by whichever process calls rds_new(); it touches keys only
 * on its callers' behalf.  hiredis 0.14 sends with write(2): the
 * process must ignore SIGPIPE.  The password is never logged.
 */
#include <sys/queue.h>

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "log.h"
#include "redis.h"
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
 * hiredis is never freed from inside its own callbacks: a dead or
 * condemned context is freed by the zero timer r_lost.
 */

#define RDS_BACKOFF_MIN	100		/* ms, doubled per failure */
#define RDS_BACKOFF_MAX	5000
#define RDS_MAXTIMEOUTS	3
#define RDS_URL_MAX	2048
#define RDS_DB_MAX	1000000
#define RDS_ID_MAX	128

enum rds_state {
	RS_IDLE = 0,		/* no context; r_retry armed */
	RS_CONNECTING,		/* context, handshake replies due */
	RS_UP,			/* handshake done: commands accepted */
	RS_DOWN			/* context dead or condemned; r_lost armed */
};

struct rds_req {
	TAILQ_ENTRY(rds_req)	 q_entry;
	struct rds		*q_r;		/* NULL: orphaned by rds_free */
	rds_cb			 q_cb;
	void			*q_arg;
	struct event		*q_timer;
	int			 q_done;	/* q_cb has run */
	int			 q_hdone;	/* hiredis has let go of it */
};

TAILQ_HEAD(rds_reqs, rds_req);

struct rds {
	struct event_base	*r_base;
	struct rds_url		 r_url;
	char			 r_name[300];	/* host:port/db, for logs */
	long			 r_timeout_ms;
	redisAsyncContext	*r_ac;
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

static int	url_parse(const char *, struct rds_url *, const char **);
static int	url_rest(const char *, struct rds_url *, const char **);
static int	url_userinfo(const char *, size_t, struct rds_url *);
static int	url_hostport(const char *, size_t, struct rds_url *);
static int	url_host(const char *, size_t, struct rds_url *);
static int	url_number(const char *, size_t, long, long *);
static int	url_pct_decode(const char *, size_t, char *, size_t);
static int	hexval(int);
static int	key_id_ok(const char *);
static int	key_build(char *, size_t, const char *, const char *);
static void	rds_connect(struct rds *);
static int	rds_handshake(struct rds *);
static void	rds_hs_auth(const redisReply *, const char *, void *);
static void	rds_hs_select(const redisReply *, const char *, void *);
static void	rds_hs_ping(const redisReply *, const char *, void *);
static void	rds_hs_reply(struct rds *, const redisReply *, const char *,
		    const char *);
static void	rds_on_connect(const redisAsyncContext *, int);
static void	rds_on_disconnect(const redisAsyncContext *, int);
static void	rds_down(struct rds *, enum log_level, const char *);
static void	rds_lost_cb(evutil_socket_t, short, void *);
static void	rds_retry_cb(evutil_socket_t, short, void *);
static void	rds_retry_arm(struct rds *);
static void	rds_logerr(struct rds *, enum log_level, const char *);
static void	rds_notify(struct rds *, int);
static void	rds_enter(struct rds *);
static int	rds_leave(struct rds *);
static void	rds_destroy(struct rds *);
static struct rds_req *rds_req_new(struct rds *, rds_cb, void *);
static int	rds_req_start(struct rds *, struct rds_req *, int);
static void	rds_req_free(struct rds *, struct rds_req *);
static int	rds_deliver(struct rds_req *, const redisReply *,
		    const char *);
static void	rds_hcb(redisAsyncContext *, void *, void *);
static void	rds_timeout_cb(evutil_socket_t, short, void *);
static int	rds_send_argv(struct rds *, rds_cb, void *, int,
		    const char **, const size_t *);
static int	rds_cmd_refused(const char *, size_t);

static const struct timeval rds_zero_tv = { 0, 0 };

/* --- REDIS_URL ------------------------------------------------------ */

int
rds_url_parse(const char *s, struct rds_url *u)
{
	const char	*why;

	return url_parse(s, u, &why);
}

/* On failure *out is zeroed and *why says what was wrong (no secret). */
static int
url_parse(const char *s, struct rds_url *out, const char **why)
{
	struct rds_url	 u;
	const char	*p;
	int		 rc;

	*why = "no URL";
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (s == NULL || out == NULL)
		return -1;
	if (strnlen(s, RDS_URL_MAX + 1) > RDS_URL_MAX) {
		*why = "too long";
		return -1;
	}
	for (p = s; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
			*why = "space or control character";
			return -1;
		}
	if (strncasecmp(s, "rediss://", 9) == 0) {
		*why = "rediss:// (TLS) is not supported by this hiredis";
		return -1;
	}
	if (strncasecmp(s, "redis://", 8) != 0) {
		*why = "the scheme is not redis://";
		return -1;
	}
	memset(&u, 0, sizeof(u));
	if ((rc = url_rest(s + 8, &u, why)) == 0)
		*out = u;
	explicit_bzero(&u, sizeof(u));
	return rc;
}

/* [[user]:password@]host[:port][/db] */
static int
url_rest(const char *p, struct rds_url *u, const char **why)
{
	const char	*slash, *at;
	size_t		 n;
	long		 v;

	if (strpbrk(p, "?#") != NULL) {
		*why = "query or fragment";
		return -1;
	}
	slash = strchr(p, '/');
	n = slash != NULL ? (size_t)(slash - p) : strlen(p);
	/* The last '@' ends the user information, as WHATWG URLs do. */
	if ((at = memrchr(p, '@', n)) != NULL) {
		if (url_userinfo(p, (size_t)(at - p), u) == -1) {
			*why = "bad user or password";
			return -1;
		}
		n -= (size_t)(at + 1 - p);
		p = at + 1;
	}
	if (url_hostport(p, n, u) == -1) {
		*why = "bad host or port";
		return -1;
	}
	if (slash != NULL && slash[1] != '\0') {
		if (url_number(slash + 1, strlen(slash + 1), RDS_DB_MAX,
		    &v) == -1) {
			*why = "bad database number";
			return -1;
		}
		u->ru_db = (int)v;
	}
	return 0;
}

static int
url_userinfo(const char *p, size_t n, struct rds_url *u)
{
	const char	*colon;

	if ((colon = memchr(p, ':', n)) == NULL)
		return -1;
	if (url_pct_decode(p, (size_t)(colon - p), u->ru_user,
	    sizeof(u->ru_user)) == -1)
		return -1;
	return url_pct_decode(colon + 1, n - (size_t)(colon + 1 - p),
	    u->ru_password, sizeof(u->ru_password));
}

static int
url_hostport(const char *p, size_t n, struct rds_url *u)
{
	const char	*rest;
	size_t		 hlen;
	long		 v;

	if (n > 0 && p[0] == '[') {
		if ((rest = memchr(p, ']', n)) == NULL)
			return -1;
		if (url_host(p, (size_t)(rest - p) + 1, u) == -1)
			return -1;
		rest++;
	} else {
		if ((rest = memchr(p, ':', n)) == NULL)
			rest = p + n;
		if (url_host(p, (size_t)(rest - p), u) == -1)
			return -1;
	}
	hlen = (size_t)(rest - p);
	u->ru_port = 6379;
	if (hlen == n)
		return 0;
	if (rest[0] != ':' ||
	    url_number(rest + 1, n - hlen - 1, 65535, &v) == -1 || v == 0)
		return -1;
	u->ru_port = (int)v;
	return 0;
}

/* A name or IPv4 address, or an IPv6 address in brackets (kept bare). */
static int
url_host(const char *p, size_t n, struct rds_url *u)
{
	unsigned char	 a6[16];
	size_t		 i;

	if (n == 0) {
		strlcpy_n(u->ru_host, "localhost", sizeof(u->ru_host));
		return 0;
	}
	if (p[0] == '[') {
		if (n < 3 || n - 2 >= INET6_ADDRSTRLEN)
			return -1;
		memcpy(u->ru_host, p + 1, n - 2);
		u->ru_host[n - 2] = '\0';
		return inet_pton(AF_INET6, u->ru_host, a6) == 1 ? 0 : -1;
	}
	if (n >= sizeof(u->ru_host) || p[0] == '-' || p[0] == '.')
		return -1;
	for (i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') ||
		    (p[i] >= 'A' && p[i] <= 'Z') ||
		    (p[i] >= '0' && p[i] <= '9') ||
		    p[i] == '-' || p[i] == '.' || p[i] == '_'))
			return -1;
	memcpy(u->ru_host, p, n);
	u->ru_host[n] = '\0';
	return 0;
}

/* Decimal digits only, at most 7 of them, at most max. */
static int
url_number(const char *p, size_t n, long max, long *v)
{
	size_t	i;

	if (n == 0 || n > 7)
		return -1;
	*v = 0;
	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		*v = *v * 10 + (p[i] - '0');
	}
	return *v <= max ? 0 : -1;
}

/* %XX decoding into out (NUL-terminated); %00 and bad escapes fail. */
static int
url_pct_decode(const char *p, size_t n, char *out, size_t outsz)
{
	size_t	i, j = 0;
	int	c, hi, lo;

	for (i = 0; i < n; i++) {
		c = (unsigned char)p[i];
		if (c == '%') {
			if (i + 2 >= n)
				return -1;
			if ((hi = hexval(p[i + 1])) == -1 ||
			    (lo = hexval(p[i + 2])) == -1)
				return -1;
			c = hi * 16 + lo;
			i += 2;
		}
		if (c == 0 || j + 1 >= outsz)
			return -1;
		out[j++] = (char)c;
	}
	out[j] = '\0';
	return 0;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

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
	if (url_parse(url, &r->r_url, &why) == -1) {
		log_warnx("redis: invalid URL: %s", why);
		free(r);
		return NULL;
	}
	r->r_base = base;
	r->r_timeout_ms = timeout_ms;
	r->r_backoff_ms = RDS_BACKOFF_MIN;
	TAILQ_INIT(&r->r_reqs);
	snprintf(r->r_name, sizeof(r->r_name), "%s%s%s:%d/%d",
	    strchr(r->r_url.ru_host, ':') ? "[" : "", r->r_url.ru_host,
	    strchr(r->r_url.ru_host, ':') ? "]" : "", r->r_url.ru_port,
	    r->r_url.ru_db);
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

/*
 * Requests still held by hiredis are orphaned (q_r = NULL): freeing
 * the context, now or, inside a hiredis callback, when that returns,
 * hands them to rds_hcb(), which frees them.
 */
static void
rds_destroy(struct rds *r)
{
	redisAsyncContext	*ac = r->r_ac;
	struct rds_req		*q;

	r->r_ac = NULL;
	while ((q = TAILQ_FIRST(&r->r_reqs)) != NULL) {
		TAILQ_REMOVE(&r->r_reqs, q, q_entry);
		if (q->q_timer != NULL)
			event_free(q->q_timer);
		q->q_timer = NULL;
		if (q->q_hdone)
			free(q);
		else
			q->q_r = NULL;
	}
	if (ac != NULL) {
		ac->data = NULL;
		redisAsyncFree(ac);
	}
	if (r->r_lost != NULL)
		event_free(r->r_lost);
	if (r->r_retry != NULL)
		event_free(r->r_retry);
	log_debug("redis %s: closed", r->r_name);
	explicit_bzero(&r->r_url, sizeof(r->r_url));
	free(r);
}

/*
 * XXX hiredis 0.14 resolves the host name with a blocking
 * getaddrinfo(); use an address or a name in /etc/hosts.
 */
static void
rds_connect(struct rds *r)
{
	redisAsyncContext	*ac;

	log_debug("redis %s: connecting", r->r_name);
	ac = redisAsyncConnect(r->r_url.ru_host, r->r_url.ru_port);
	if (ac == NULL || ac->err ||
	    redisLibeventAttach(ac, r->r_base) != REDIS_OK) {
		rds_logerr(r, LL_WARN, ac == NULL ? "out of memory" :
		    ac->err ? ac->errstr : "cannot attach to the loop");
		if (ac != NULL)
			redisAsyncFree(ac);
		rds_retry_arm(r);
		return;
	}
	ac->data = r;
	redisAsyncSetConnectCallback(ac, rds_on_connect);
	redisAsyncSetDisconnectCallback(ac, rds_on_disconnect);
	r->r_ac = ac;
	r->r_state = RS_CONNECTING;
	r->r_timeouts = 0;
	/* Queued now, sent by hiredis as soon as the socket connects. */
	if (rds_handshake(r) == -1)
		rds_down(r, LL_WARN, "cannot queue the handshake");
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
	if (u->ru_user[0] != '\0' || u->ru_password[0] != '\0') {
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
			    (int)rep->len, rep->str);
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

/* hiredis frees the context when this returns with an error. */
static void
rds_on_connect(const redisAsyncContext *ac, int status)
{
	struct rds	*r = ac->data;

	if (r == NULL || status == REDIS_OK)
		return;
	r->r_ac = NULL;
	rds_down(r, LL_WARN, ac->errstr[0] ? ac->errstr : "cannot connect");
}

/* hiredis frees the context when this returns. */
static void
rds_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rds	*r = ac->data;

	if (r == NULL)
		return;
	r->r_ac = NULL;
	rds_down(r, LL_WARN, status == REDIS_OK || ac->errstr[0] == '\0' ?
	    "closed" : ac->errstr);
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
	evtimer_add(r->r_lost, &rds_zero_tv);
}

static void
rds_lost_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rds		*r = arg;
	redisAsyncContext	*ac;
	struct rds_req		*q;

	(void)fd;
	(void)what;
	if ((ac = r->r_ac) != NULL) {
		r->r_ac = NULL;
		ac->data = NULL;
		redisAsyncFree(ac);	/* its requests become q_hdone */
	}
	r->r_state = RS_IDLE;
	r->r_handshake = 0;
	rds_retry_arm(r);
	rds_enter(r);
	if (r->r_reported)
		rds_notify(r, 0);
	while (!r->r_dying) {
		TAILQ_FOREACH(q, &r->r_reqs, q_entry)
			if (q->q_hdone && !q->q_done)
				break;
		if (q == NULL)
			break;
		(void)rds_deliver(q, NULL, "disconnected");
	}
	(void)rds_leave(r);
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
	struct rds_req	*q;
	const char	*w;
	va_list		 ap;
	int		 status;

	if (!rds_connected(r) || fmt == NULL)
		return -1;
	w = fmt + strspn(fmt, " ");
	if (rds_cmd_refused(w, strcspn(w, " ")))
		return -1;
	if ((q = rds_req_new(r, cb, arg)) == NULL)
		return -1;
	va_start(ap, fmt);
	status = redisvAsyncCommand(r->r_ac, rds_hcb, q, fmt, ap);
	va_end(ap);
	return rds_req_start(r, q, status);
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
	struct rds_req	*q;

	if ((q = rds_req_new(r, cb, arg)) == NULL)
		return -1;
	return rds_req_start(r, q, redisAsyncCommandArgv(r->r_ac, rds_hcb,
	    q, argc, argv, lens));
}

static struct rds_req *
rds_req_new(struct rds *r, rds_cb cb, void *arg)
{
	struct rds_req	*q;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	if ((q->q_timer = evtimer_new(r->r_base, rds_timeout_cb, q)) ==
	    NULL) {
		free(q);
		return NULL;
	}
	q->q_r = r;
	q->q_cb = cb;
	q->q_arg = arg;
	return q;
}

/* status is hiredis's answer to queueing q; on failure q is freed. */
static int
rds_req_start(struct rds *r, struct rds_req *q, int status)
{
	struct timeval	tv;

	if (status != REDIS_OK) {
		event_free(q->q_timer);
		free(q);
		return -1;
	}
	TAILQ_INSERT_TAIL(&r->r_reqs, q, q_entry);
	tv.tv_sec = r->r_timeout_ms / 1000;
	tv.tv_usec = (r->r_timeout_ms % 1000) * 1000;
	if (evtimer_add(q->q_timer, &tv) == -1)
		log_warnx("redis %s: cannot arm a command timeout",
		    r->r_name);
	return 0;
}

static void
rds_req_free(struct rds *r, struct rds_req *q)
{
	TAILQ_REMOVE(&r->r_reqs, q, q_entry);
	if (q->q_timer != NULL)
		event_free(q->q_timer);
	free(q);
}

/* Calls q's callback once; returns -1 if r was freed meanwhile. */
static int
rds_deliver(struct rds_req *q, const redisReply *rep, const char *err)
{
	struct rds	*r = q->q_r;

	q->q_done = 1;
	if (q->q_timer != NULL) {
		event_free(q->q_timer);
		q->q_timer = NULL;
	}
	rds_enter(r);
	if (q->q_cb != NULL)
		q->q_cb(rep, err, q->q_arg);
	if (q->q_hdone)
		rds_req_free(r, q);
	return rds_leave(r);
}

/*
 * hiredis calls this once per command: with the reply, or with NULL
 * while it frees the context.  A NULL for a live request waits for
 * r_lost, which the context's death has armed.
 */
static void
rds_hcb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rds_req	*q = priv;
	struct rds	*r = q->q_r;

	(void)ac;
	q->q_hdone = 1;
	if (r == NULL) {
		free(q);
		return;
	}
	if (q->q_done) {
		rds_req_free(r, q);
		return;
	}
	if (reply == NULL)
		return;
	r->r_timeouts = 0;
	(void)rds_deliver(q, reply, NULL);
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
	(void)rds_deliver(q, NULL, "timeout");
}
