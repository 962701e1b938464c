/*
 * pgconn.c - libpq connections driven by libevent, for profile.c.
 *
 * Owns struct pg_sock (one PGconn and the event on its socket: every
 * libpq step, PQconnectPoll, PQflush, PQconsumeInput, runs on
 * PQsocket() readiness), starting a connection from DATABASE_URL with
 * our session options, and struct profile_conn: a worker's warm
 * connection, opened and its statement prepared before the worker is
 * idle, watched while idle for the server closing it, and lent to one
 * load at a time (pc_take, pc_give_back).  Also libpq's messages made
 * safe to log.  Knows no SQL but the statement profile.c hands it, and
 * no row.  Peer: DATABASE_URL, directly or through a pooler (pgbouncer,
 * transaction mode included).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "log.h"
#include "util.h"
#include "pgaddr.h"
#include "pgurl.h"
#include "profile.h"
#include "pgconn.h"

enum pc_state {
	PCS_CONNECT,		/* PQconnectPoll() */
	PCS_PREPARE,		/* PQsendPrepare() sent */
	PCS_IDLE,		/* ready; watched for the server closing it */
	PCS_BUSY,		/* lent by pc_take */
	PCS_BROKEN		/* none; profile_conn_check() retries */
};

struct profile_conn {
	struct pg_sock		 pc_sock;
	struct event		*pc_timer;	/* connect + prepare */
	enum pc_state		 pc_state;
	const char		*pc_early;	/* failed at once */
	PGresult		*pc_res;	/* PQsendPrepare's */
	int			 pc_flushing;
	int			 pc_noticed;	/* spoke unasked */
	int			 pc_fails;	/* failures in a row */
	int			 pc_told;	/* pc_ready_cb called */
	struct pg_stmt		*pc_stmt;	/* the caller's */
	void			(*pc_orphan)(void *); /* if PCS_BUSY */
	void			*pc_borrower;	/* pc_orphan's argument */
	char			*pc_url;	/* holds the password */
	long			 pc_timeout_ms;
	uint64_t		 pc_t0;
	void			(*pc_ready_cb)(int, const char *, void *);
	void			*pc_arg;
};

static char	*pgconn_options(const char *, long, const char *);

static char	 pgconn_abuf[4608];	/* host=, hostaddr=, port= lists */
static PGconn	*pgconn_params(const char *, const char *, int, long, int *);
static int	 pc_start(struct profile_conn *);
static void	 pc_notice(void *, const char *);
static void	 pc_io_cb(evutil_socket_t, short, void *);
static void	 pc_timer_cb(evutil_socket_t, short, void *);
static void	 pc_connect_poll(struct profile_conn *);
static void	 pc_prepare(struct profile_conn *);
static void	 pc_prepared(struct profile_conn *, short);
static void	 pc_ready(struct profile_conn *);
static void	 pc_fail(struct profile_conn *, const char *, const char *);
static void	 pc_lost(struct profile_conn *, const char *);
static void	 pc_tell(struct profile_conn *, int, const char *);
static int	 pc_alive(struct profile_conn *);
static void	 pc_drop(struct profile_conn *);
static void	 pc_free(struct profile_conn *);

int
profile_conn_ready(const struct profile_conn *pc)
{
	return pc != NULL && pc->pc_state == PCS_IDLE;
}

/*
 * A connection found dead is replaced at once; a broken one is retried
 * here only, so a database that is down costs one attempt per check.
 */
void
profile_conn_check(struct profile_conn *pc)
{
	if (pc == NULL)
		return;
	if (pc->pc_state == PCS_IDLE) {
		if (pc_alive(pc))
			return;
		log_info("profile: the warm connection is gone: reconnecting");
		pc_drop(pc);
	}
	if (pc->pc_state == PCS_BROKEN)
		pc_start(pc);
}

/* A load in flight keeps the connection, and finishes it itself. */
void
profile_conn_close(struct profile_conn *pc)
{
	if (pc == NULL)
		return;
	if (pc->pc_orphan != NULL) {
		pc->pc_orphan(pc->pc_borrower);
		ps_release(&pc->pc_sock, 0);
	}
	pc_free(pc);
}

/* --- any connection: a load's own or the warm one ------------------ */

/*
 * One PQconnectPoll() step: 1 connected, 0 waiting (the socket watched
 * for what libpq wants), -1 failed.
 */
int
ps_connect_poll(struct pg_sock *ps)
{
	short	what;

	switch (PQconnectPoll(ps->ps_conn)) {
	case PGRES_POLLING_READING:
		what = EV_READ;
		break;
	case PGRES_POLLING_WRITING:
		what = EV_WRITE;
		break;
	case PGRES_POLLING_OK:
		return 1;
	default:
		return -1;
	}
	return ps_watch(ps, what) == -1 ? -1 : 0;
}

/* An unconnected socket watcher calling cb(fd, what, arg). */
void
ps_init(struct pg_sock *ps, struct event_base *base, event_callback_fn cb,
    void *arg)
{
	memset(ps, 0, sizeof(*ps));
	ps->ps_base = base;
	ps->ps_fd = -1;
	ps->ps_cb = cb;
	ps->ps_arg = arg;
}

/*
 * Waits for what on libpq's current socket.  libpq may close and open
 * sockets while connecting (next address, SSL retry), so the event is
 * rebuilt when the fd changes; it is deleted before libpq runs again
 * (one-shot) or freed before any PQfinish (ps_release), so a reused fd
 * number is safe.
 */
int
ps_watch(struct pg_sock *ps, short what)
{
	int	fd;

	if ((fd = PQsocket(ps->ps_conn)) < 0)
		return -1;
	if (ps->ps_io == NULL || fd != ps->ps_fd || what != ps->ps_what) {
		if (ps->ps_io != NULL)
			event_free(ps->ps_io);
		ps->ps_io = event_new(ps->ps_base, fd, what, ps->ps_cb,
		    ps->ps_arg);
		if (ps->ps_io == NULL)
			return -1;
		ps->ps_fd = fd;
		ps->ps_what = what;
	}
	return event_add(ps->ps_io, NULL);
}

/* The event off and freed; the PGconn finished if finish, else let go. */
void
ps_release(struct pg_sock *ps, int finish)
{
	if (ps->ps_io != NULL)
		event_free(ps->ps_io);
	ps->ps_io = NULL;
	ps->ps_fd = -1;
	if (finish && ps->ps_conn != NULL)
		PQfinish(ps->ps_conn);
	ps->ps_conn = NULL;
}

/*
 * Drives a query sent on ps: PQflush() until all is out (consuming
 * input meanwhile, as libpq asks), then results until PQgetResult()
 * says NULL, the first kept in *first.  1 when done (the connection is
 * idle again), 0 when waiting (watch armed), -1 on failure.
 */
int
ps_pump(struct pg_sock *ps, short what, int *flushing, PGresult **first)
{
	PGconn		*conn = ps->ps_conn;
	PGresult	*res;
	int		 r;

	if ((what & EV_READ) && !PQconsumeInput(conn))
		return -1;
	if (*flushing) {
		if ((r = PQflush(conn)) == -1)
			return -1;
		if (r == 1)
			return ps_watch(ps, EV_READ | EV_WRITE) == -1 ? -1 : 0;
		*flushing = 0;
	}
	while (!PQisBusy(conn)) {
		if ((res = PQgetResult(conn)) == NULL)
			return 1;
		if (*first == NULL)
			*first = res;
		else
			PQclear(res);
	}
	return ps_watch(ps, EV_READ) == -1 ? -1 : 0;
}

/*
 * 1 if the session is over: libpq says so, or the server ended it
 * (class 08, 57P: shutdown, terminated, idle timeout), or an error
 * carries no SQLSTATE (libpq's own, "server closed the connection").
 */
int
pgconn_gone(PGconn *conn, const PGresult *res)
{
	const char	*st;

	if (PQstatus(conn) != CONNECTION_OK)
		return 1;
	if (res == NULL || PQresultStatus(res) != PGRES_FATAL_ERROR)
		return 0;
	st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	return st == NULL || strncmp(st, "08", 2) == 0 ||
	    strncmp(st, "57P", 3) == 0;
}

/* 1 if res is an error with that SQLSTATE. */
int
pgconn_is(const PGresult *res, const char *sqlstate)
{
	const char	*st;

	if (res == NULL || PQresultStatus(res) != PGRES_FATAL_ERROR)
		return 0;
	st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	return st != NULL && strcmp(st, sqlstate) == 0;
}

/* theirs (the URL's own options, may be NULL) plus ours; NULL if no memory. */
static char *
pgconn_options(const char *theirs, long timeout_ms, const char *schema)
{
	char	*s;
	int	 n;

	if (*schema != '\0')
		n = asprintf(&s, "%s%s-c statement_timeout=%ld -c TimeZone=UTC"
		    " -c search_path=\"%s\"", theirs ? theirs : "",
		    theirs && *theirs ? " " : "", timeout_ms, schema);
	else
		n = asprintf(&s, "%s%s-c statement_timeout=%ld -c TimeZone=UTC",
		    theirs ? theirs : "", theirs && *theirs ? " " : "",
		    timeout_ms);
	return n == -1 ? NULL : s;
}

/*
 * A connection to url, started (PQconnectStartParams), with our session
 * options; NULL (logged) if the URL does not parse or no memory; *bad
 * set (logged) if libpq failed at once.
 * Host names come resolved (pgaddr.c): libpq is given hostaddr= and
 * never looks a name up itself.  NULL with *bad set (logged) when the
 * names have no answer.
 */
PGconn *
pgconn_connect(const char *url, long timeout_ms, int *bad)
{
	PQconninfoOption	*ci, *o;
	PGconn			*conn = NULL;
	char			*clean, *opts = NULL, *emsg = NULL;
	char			 schema[64];
	const char		*theirs = NULL;
	int			 gss = getenv("PGGSSENCMODE") != NULL;

	if ((clean = pgurl_clean(url, schema, sizeof(schema))) == NULL) {
		log_warnx("profile: out of memory");
		return NULL;
	}
	/* Its message may quote the password: never logged. */
	if ((ci = PQconninfoParse(clean, &emsg)) == NULL) {
		log_warnx("profile: DATABASE_URL cannot be parsed");
		PQfreemem(emsg);
		explicit_bzero(clean, strlen(clean));
		free(clean);
		return NULL;
	}
	for (o = ci; o->keyword != NULL; o++) {
		if (strcmp(o->keyword, "options") == 0)
			theirs = o->val;
		if (strcmp(o->keyword, "gssencmode") == 0 && o->val != NULL)
			gss = 1;
	}
	if ((opts = pgconn_options(theirs, timeout_ms, schema)) != NULL)
		conn = pgconn_params(clean, opts, gss, timeout_ms, bad);
	else
		log_warnx("profile: out of memory");
	for (o = ci; o->keyword != NULL; o++)
		if (o->val != NULL)
			explicit_bzero(o->val, strlen(o->val));
	PQconninfoFree(ci);
	explicit_bzero(clean, strlen(clean));
	free(clean);
	free(opts);
	return conn;
}

/*
 * DATABASE_URL first, expanded, so the keywords after it override it.
 * Unless the URL or PGGSSENCMODE says otherwise (gss set), GSSAPI
 * encryption is not tried: with libpq's default "prefer" every worker
 * would ask Kerberos for credentials first (krb5 configuration, ccache
 * lookups, ~80 KiB of private memory per call) for a server that in
 * practice never offers it.
 */
static PGconn *
pgconn_params(const char *url, const char *opts, int gss,
    long timeout_ms, int *bad)
{
	PGconn		*conn;
	const char	*keys[7 + PGADDR_KEYS], *vals[7 + PGADDR_KEYS];
	int		 n = 5, k;
	char		 ct[24], why[512];

	/* Ignored by PQconnectPoll(): the caller's timer is the bound. */
	snprintf(ct, sizeof(ct), "%ld", timeout_ms < 2000 ? 2 :
	    (timeout_ms + 999) / 1000);
	keys[0] = "dbname";		vals[0] = url;
	keys[1] = "connect_timeout";	vals[1] = ct;
	keys[2] = "options";		vals[2] = opts;
	keys[3] = "application_name";	vals[3] = "naiberd";
	keys[4] = "client_encoding";	vals[4] = "UTF8";
	if (!gss) {
		keys[n] = "gssencmode";	vals[n++] = "disable";
	}
	/* Host names resolved on the loop, never by libpq. */
	if ((k = pgaddr_params(keys + n, vals + n, pgconn_abuf,
	    sizeof(pgconn_abuf))) == -1) {
		log_warnx("profile: connect failed: %s", pgconn_abuf);
		*bad = 1;
		return NULL;
	}
	n += k;
	keys[n] = NULL;			vals[n] = NULL;
	if ((conn = PQconnectStartParams(keys, vals, 1)) == NULL) {
		log_warnx("profile: out of memory");
		return NULL;
	}
	if (PQstatus(conn) == CONNECTION_BAD) {
		pgconn_detail(conn, NULL, why, sizeof(why));
		log_warnx("profile: connect failed: %s", why);
		*bad = 1;
	}
	return conn;
}

/* Advice for a refusal we can explain (pgbouncer refusing our options). */
const char *
pgconn_hint(const char *why)
{
	if (strstr(why, "unsupported startup parameter") != NULL)
		return " (a pooler? pgbouncer needs ignore_startup_parameters"
		    " = options)";
	return "";
}

/*
 * libpq's message on one line, bounded; withheld if it would show the
 * password (a server or libpq quoting it back).
 */
void
pgconn_detail(PGconn *conn, const char *msg, char *out, size_t outsz)
{
	const char	*pw;
	size_t		 i, j;

	if (msg == NULL)
		msg = conn != NULL ? PQerrorMessage(conn) : "";
	pw = conn != NULL ? PQpass(conn) : NULL;
	if (pw != NULL && *pw != '\0' && strstr(msg, pw) != NULL) {
		strlcpy_n(out, "(details withheld)", outsz);
		return;
	}
	for (i = j = 0; msg[i] != '\0' && j + 1 < outsz; i++) {
		if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f) {
			if (j > 0 && out[j - 1] != ' ')
				out[j++] = ' ';
		} else
			out[j++] = msg[i];
	}
	while (j > 0 && out[j - 1] == ' ')
		j--;
	out[j] = '\0';
	if (j == 0)
		strlcpy_n(out, "no detail", outsz);
}

/* --- the warm connection ------------------------------------------- */

/*
 * profile_conn_open(), with the statement to prepare (kept, not copied:
 * static storage).  NULL (logged) on bad arguments, a URL that does not
 * parse, no memory.
 */
struct profile_conn *
pc_open(struct event_base *base, const char *url, long timeout_ms,
    struct pg_stmt *stmt, void (*ready_cb)(int, const char *, void *),
    void *arg)
{
	struct profile_conn	*pc;

	if (base == NULL || url == NULL || timeout_ms <= 0 || stmt == NULL ||
	    ready_cb == NULL) {
		log_warnx("profile: bad arguments");
		return NULL;
	}
	if ((pc = calloc(1, sizeof(*pc))) == NULL ||
	    (pc->pc_url = strdup(url)) == NULL ||
	    (pc->pc_timer = evtimer_new(base, pc_timer_cb, pc)) == NULL) {
		log_warnx("profile: out of memory");
		pc_free(pc);
		return NULL;
	}
	ps_init(&pc->pc_sock, base, pc_io_cb, pc);
	pc->pc_state = PCS_BROKEN;
	pc->pc_stmt = stmt;
	pc->pc_timeout_ms = timeout_ms;
	pc->pc_ready_cb = ready_cb;
	pc->pc_arg = arg;
	if (pc_start(pc) == -1) {
		pc_free(pc);
		return NULL;
	}
	return pc;
}

struct event_base *
pc_base(const struct profile_conn *pc)
{
	return pc->pc_sock.ps_base;
}

/*
 * (Re)connects in the background under pc_timer.  Never calls back from
 * here.  -1 (logged, PCS_BROKEN) if there is no PGconn at all.
 */
static int
pc_start(struct profile_conn *pc)
{
	struct timeval	tv;
	int		bad = 0;

	pc->pc_early = NULL;
	pc->pc_noticed = 0;
	pc->pc_t0 = now_mono_ns();
	pc->pc_sock.ps_conn = pgconn_connect(pc->pc_url, pc->pc_timeout_ms,
	    &bad);
	if (pc->pc_sock.ps_conn == NULL && !bad)
		return -1;
	if (pc->pc_sock.ps_conn == NULL) {
		/* No address (logged): failed, from the loop. */
		pc->pc_state = PCS_CONNECT;
		pc->pc_early = "cannot resolve the host";
		event_active(pc->pc_timer, EV_TIMEOUT, 1);
		return 0;
	}
	PQsetNoticeProcessor(pc->pc_sock.ps_conn, pc_notice, pc);
	tv.tv_sec = pc->pc_timeout_ms / 1000;
	tv.tv_usec = (pc->pc_timeout_ms % 1000) * 1000;
	if (evtimer_add(pc->pc_timer, &tv) == -1) {
		log_warnx("profile: cannot arm the timer");
		pc_drop(pc);
		return -1;
	}
	pc->pc_state = PCS_CONNECT;
	if (bad || ps_watch(&pc->pc_sock, EV_WRITE) == -1) {
		pc->pc_early = "connect failed";
		event_active(pc->pc_timer, EV_TIMEOUT, 1);
	}
	return 0;
}

/*
 * While idle the server has nothing to say but goodbye: libpq hands an
 * ErrorResponse outside a query (FATAL: terminating connection) to the
 * notice processor.
 */
static void
pc_notice(void *arg, const char *msg)
{
	struct profile_conn	*pc = arg;
	char			 why[256];

	if (pc->pc_state == PCS_IDLE)
		pc->pc_noticed = 1;
	pgconn_detail(pc->pc_sock.ps_conn, msg, why, sizeof(why));
	log_debug("profile: server notice: %s", why);
}

static void
pc_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct profile_conn	*pc = arg;

	(void)fd;
	switch (pc->pc_state) {
	case PCS_CONNECT:
		pc_connect_poll(pc);
		break;
	case PCS_PREPARE:
		pc_prepared(pc, what);
		break;
	case PCS_IDLE:
		/* Readable while idle: the server closes, or talks. */
		profile_conn_check(pc);
		break;
	case PCS_BUSY:
	case PCS_BROKEN:
		break;
	}
}

static void
pc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct profile_conn	*pc = arg;

	(void)fd;
	(void)what;
	if (pc->pc_state != PCS_CONNECT && pc->pc_state != PCS_PREPARE)
		return;
	/* pgconn_connect() logged it. */
	if (pc->pc_early != NULL) {
		pc_lost(pc, pc->pc_early);
		return;
	}
	if (pc->pc_fails == 0)
		log_warnx("profile: warm connection: timeout after %ld ms (%s)",
		    pc->pc_timeout_ms, pc->pc_state == PCS_CONNECT ?
		    "connecting" : "preparing");
	pc_lost(pc, "timeout");
}

static void
pc_connect_poll(struct profile_conn *pc)
{
	switch (ps_connect_poll(&pc->pc_sock)) {
	case 1:
		pc_prepare(pc);
		break;
	case -1:
		pc_fail(pc, "connect failed", "connect failed");
		break;
	}
}

static void
pc_prepare(struct profile_conn *pc)
{
	PGconn	*conn = pc->pc_sock.ps_conn;

	if (PQsetnonblocking(conn, 1) == -1) {
		pc_fail(pc, "connect failed", "connect failed");
		return;
	}
	if (pc->pc_stmt->st_unnamed) {
		pc_ready(pc);
		return;
	}
	if (!PQsendPrepare(conn, pc->pc_stmt->st_name, pc->pc_stmt->st_sql, 1,
	    NULL)) {
		pc_fail(pc, "prepare failed", "prepare failed");
		return;
	}
	pc->pc_state = PCS_PREPARE;
	pc->pc_flushing = 1;
	pc_prepared(pc, 0);
}

/*
 * 42P05 (already exists) is success: behind a pooler this backend got
 * the statement from another of our connections.
 */
static void
pc_prepared(struct profile_conn *pc, short what)
{
	PGresult	*res;
	const char	*st;
	char		 why[256];

	switch (ps_pump(&pc->pc_sock, what, &pc->pc_flushing, &pc->pc_res)) {
	case -1:
		pc_fail(pc, "prepare failed", "prepare failed");
		return;
	case 0:
		return;
	}
	res = pc->pc_res;
	pc->pc_res = NULL;
	if (pgconn_is(res, "42P05"))
		log_debug("profile: the statement was prepared already (a"
		    " pooler?)");
	if (res != NULL && (PQresultStatus(res) == PGRES_COMMAND_OK ||
	    pgconn_is(res, "42P05"))) {
		PQclear(res);
		pc_ready(pc);
		return;
	}
	st = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	pgconn_detail(pc->pc_sock.ps_conn, res != NULL ?
	    PQresultErrorMessage(res) : "no result", why, sizeof(why));
	if (pc->pc_fails == 0)
		log_warnx("profile: cannot prepare the statement: %s"
		    " (SQLSTATE %s)", why, st != NULL ? st : "?");
	PQclear(res);
	pc_lost(pc, "prepare failed");
}

static void
pc_ready(struct profile_conn *pc)
{
	event_del(pc->pc_timer);
	pc->pc_state = PCS_IDLE;
	pc->pc_noticed = 0;
	if (ps_watch(&pc->pc_sock, EV_READ | EV_PERSIST) == -1) {
		pc_fail(pc, "cannot watch it", "connect failed");
		return;
	}
	if (pc->pc_fails > 0)
		log_info("profile: the warm connection is back");
	pc->pc_fails = 0;
	log_debug("profile: warm connection ready in %llu ms",
	    (unsigned long long)((now_mono_ns() - pc->pc_t0) / 1000000));
	pc_tell(pc, 1, NULL);
}

/*
 * Connecting or preparing failed: PCS_BROKEN until the next check.  A
 * database that stays down is logged as a warning once, then at debug
 * (pc_fails counts the failures in a row).
 */
static void
pc_fail(struct profile_conn *pc, const char *what, const char *err)
{
	char	why[256];

	pgconn_detail(pc->pc_sock.ps_conn, NULL, why, sizeof(why));
	if (pc->pc_fails == 0)
		log_warnx("profile: warm connection: %s: %s%s", what, why,
		    pgconn_hint(why));
	else
		log_debug("profile: warm connection: %s: %s", what, why);
	pc_lost(pc, err);
}

static void
pc_lost(struct profile_conn *pc, const char *err)
{
	pc->pc_fails++;
	pc_drop(pc);
	pc_tell(pc, 0, err);
}

/* ready_cb, once ever; last, as it may close pc. */
static void
pc_tell(struct profile_conn *pc, int ok, const char *err)
{
	if (pc->pc_told)
		return;
	pc->pc_told = 1;
	pc->pc_ready_cb(ok, ok ? NULL : err, pc->pc_arg);
}

/*
 * Reads what the server sent the idle connection; 0 if it closed it,
 * spoke unasked (a notice, a notification) or left a transaction open.
 */
static int
pc_alive(struct profile_conn *pc)
{
	PGconn		*conn = pc->pc_sock.ps_conn;
	PGnotify	*n;
	int		 ok;

	ok = PQconsumeInput(conn) && PQstatus(conn) == CONNECTION_OK &&
	    PQtransactionStatus(conn) == PQTRANS_IDLE;
	while ((n = PQnotifies(conn)) != NULL) {
		PQfreemem(n);
		pc->pc_noticed = 1;
	}
	return ok && !pc->pc_noticed;
}

/*
 * Lends the idle connection's PGconn to a load; NULL if it is not idle,
 * or is found dead (then dropped: the load goes fresh,
 * profile_conn_check() reconnects).  If pc is closed before it is given
 * back, orphan(arg) is called and the PGconn is the borrower's.
 */
PGconn *
pc_take(struct profile_conn *pc, void (*orphan)(void *), void *arg)
{
	if (pc->pc_state != PCS_IDLE)
		return NULL;
	if (!pc_alive(pc)) {
		log_info("profile: the warm connection is gone: using a fresh"
		    " one");
		pc_drop(pc);
		return NULL;
	}
	/* Its idle watch off: the borrower watches the socket meanwhile. */
	event_del(pc->pc_sock.ps_io);
	pc->pc_state = PCS_BUSY;
	pc->pc_orphan = orphan;
	pc->pc_borrower = arg;
	return pc->pc_sock.ps_conn;
}

/* From the borrower; idle: every result read, nothing left open. */
void
pc_give_back(struct profile_conn *pc, int idle)
{
	pc->pc_orphan = NULL;
	pc->pc_borrower = NULL;
	if (!idle) {
		pc_drop(pc);
		return;
	}
	pc->pc_state = PCS_IDLE;
	pc->pc_noticed = 0;
	if (ps_watch(&pc->pc_sock, EV_READ | EV_PERSIST) == -1)
		pc_drop(pc);
}

static void
pc_drop(struct profile_conn *pc)
{
	event_del(pc->pc_timer);
	PQclear(pc->pc_res);
	pc->pc_res = NULL;
	ps_release(&pc->pc_sock, 1);
	pc->pc_state = PCS_BROKEN;
}

static void
pc_free(struct profile_conn *pc)
{
	if (pc == NULL)
		return;
	ps_release(&pc->pc_sock, 1);
	if (pc->pc_timer != NULL)
		event_free(pc->pc_timer);
	PQclear(pc->pc_res);
	if (pc->pc_url != NULL) {
		explicit_bzero(pc->pc_url, strlen(pc->pc_url));
		free(pc->pc_url);
	}
	free(pc);
}
