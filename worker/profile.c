/*
 * profile.c - loads the person a call is for from PostgreSQL.
 *
 * Runs in a worker (answering or PREPARE) on its event base.  A load
 * either opens its own libpq connection (profile_load) or borrows the
 * worker's warm one (profile_load_on), opened and prepared before the
 * worker went idle (profile_conn_open), so the call pays one round
 * trip; the connections themselves are pgconn.c's.  A load runs under
 * one deadline timer and falls back from a warm connection that fails
 * to a fresh one.  One parameterised query reads the original's Prisma
 * tables (DESIGN §4): "users" by "phone", the five newest
 * "conversation_summaries", the active "user_health_conditions" and
 * "user_medications"; lists come back as JSON so no array literal is
 * parsed here.  Owns struct pl_load, the statement (pl_sql, pl_stmt)
 * and turning its one row into a struct profile.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "log.h"
#include "util.h"
#include "profile.h"
#include "pgconn.h"

#define PL_ID_MAX	256	/* bytes; a longer id is refused, not cut */
#define PL_FIELD_MAX	1024	/* bytes; names, items: cut on UTF-8 */
#define PL_SUMMARY_MAX	65536	/* bytes per summary, cut on UTF-8 */
#define PL_AGE_MAX	150

enum pl_state {
	PLS_CONNECT,		/* PQconnectPoll() */
	PLS_SEND,		/* warm: the query goes out from the loop */
	PLS_QUERY		/* sent: PQflush(), then the results */
};

/* Columns of pl_sql, in order. */
enum pl_col {
	PLC_ID, PLC_NAME, PLC_PHONE, PLC_AGE, PLC_GENDER, PLC_INTERESTS,
	PLC_DISLIKES, PLC_FIRST, PLC_LAST, PLC_SUMMARIES, PLC_CONDITIONS,
	PLC_MEDICATIONS, PLC_NCOLS
};

struct pl_load {
	struct pg_sock		 pl_sock;	/* ps_io is one-shot */
	struct profile_conn	*pl_pc;		/* lender, or NULL */
	int			 pl_warm;	/* may fall back */
	struct event		*pl_timer;	/* the whole load */
	enum pl_state		 pl_state;
	const char		*pl_early;	/* failed at once */
	PGresult		*pl_res;	/* the first result */
	int			 pl_flushing;
	int			 pl_named;	/* sent pl_stmt */
	int			 pl_idle;	/* every result read */
	char			*pl_phone;
	char			*pl_url;	/* warm: the fallback's */
	profile_cb		 pl_cb;
	void			*pl_arg;
	long			 pl_timeout_ms;
	uint64_t		 pl_t0;
};

static struct pl_load *pl_new(struct event_base *, const char *, long,
		    profile_cb, void *);
static int	 pl_start_fresh(struct pl_load *, const char *);
static void	 pl_start_warm(struct pl_load *, struct profile_conn *,
		    PGconn *);
static void	 pl_notice(void *, const char *);
static void	 pl_orphan(void *);
static void	 pl_io_cb(evutil_socket_t, short, void *);
static void	 pl_timer_cb(evutil_socket_t, short, void *);
static void	 pl_connect_poll(struct pl_load *);
static void	 pl_send(struct pl_load *);
static void	 pl_query(struct pl_load *, short);
static void	 pl_done(struct pl_load *);
static void	 pl_unnamed_retry(struct pl_load *);
static void	 pl_fallback(struct pl_load *, const char *);
static enum profile_status pl_result(struct pl_load *, struct profile **,
		    const char **);
static void	 pl_fail(struct pl_load *, const char *);
static void	 pl_deliver(struct pl_load *, enum profile_status,
		    struct profile *, const char *);
static void	 pl_free(struct pl_load *);
static struct profile *pl_row(const PGresult *);
static int	 pl_row_lists(struct profile *, const PGresult *);
static int	 pl_col(const PGresult *, int, size_t, int, char **);
static json_t	*pl_json(const PGresult *, int, int *);
static char	*pl_strndup_utf8(const char *, size_t, size_t);
static int	 pl_strings(json_t *, char **, size_t, size_t *, size_t);
static int	 pl_conditions(json_t *, struct profile *);
static int	 pl_medications(json_t *, struct profile *);
static int	 pl_item(json_t *, size_t, char **);

/*
 * Lists are cut and counted by the server (LIMIT, left()) so a hostile
 * row cannot make the reply large; the C side bounds bytes again.
 * "lastCallAt" is TIMESTAMP(3) without time zone holding UTC (Prisma):
 * to_char() on it directly is exact; TimeZone=UTC on the session makes a
 * timestamptz column print as UTC too.
 */
static const char pl_sql[] =
    "SELECT u.\"id\", left(u.\"name\", 1024), u.\"phone\", u.\"age\"::text,"
    " u.\"gender\"::text,"
    " (SELECT json_agg(left(t.e, 1024) ORDER BY t.n)::text FROM"
    "  (SELECT x.e, x.n FROM unnest(u.\"interests\") WITH ORDINALITY"
    "   AS x(e, n) WHERE x.e IS NOT NULL ORDER BY x.n LIMIT 32) t),"
    " (SELECT json_agg(left(t.e, 1024) ORDER BY t.n)::text FROM"
    "  (SELECT x.e, x.n FROM unnest(u.\"dislikes\") WITH ORDINALITY"
    "   AS x(e, n) WHERE x.e IS NOT NULL ORDER BY x.n LIMIT 32) t),"
    " u.\"isFirstCall\","
    " to_char(u.\"lastCallAt\", 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    " (SELECT json_agg(left(t.s, 65536) ORDER BY t.c DESC)::text FROM"
    "  (SELECT s.\"summaryText\" AS s, s.\"createdAt\" AS c"
    "   FROM \"conversation_summaries\" s WHERE s.\"userId\" = u.\"id\""
    "   ORDER BY s.\"createdAt\" DESC LIMIT 5) t),"
    " (SELECT json_agg(json_build_array(left(t.c, 1024), left(t.s, 1024))"
    "   ORDER BY t.c)::text FROM"
    "  (SELECT c.\"condition\" AS c, c.\"severity\" AS s"
    "   FROM \"user_health_conditions\" c"
    "   WHERE c.\"userId\" = u.\"id\" AND c.\"isActive\""
    "   ORDER BY c.\"condition\" LIMIT 32) t),"
    " (SELECT json_agg(json_build_array(left(t.n, 1024), left(t.d, 1024),"
    "   left(t.f, 1024)) ORDER BY t.n)::text FROM"
    "  (SELECT m.\"name\" AS n, m.\"dosage\" AS d, m.\"frequency\" AS f"
    "   FROM \"user_medications\" m"
    "   WHERE m.\"userId\" = u.\"id\" AND m.\"isActive\""
    "   ORDER BY m.\"name\" LIMIT 32) t)"
    " FROM \"users\" u WHERE u.\"phone\" = $1 LIMIT 2";

/*
 * What a warm connection prepares.  st_unnamed is set for the rest of
 * the process once a server (a pooler in transaction mode, which runs
 * each transaction on any backend) lost it: from then on every load
 * sends the unnamed statement, one round trip still.
 */
static struct pg_stmt pl_stmt = { "naiber_profile", pl_sql, 0 };

int
profile_load(struct event_base *base, const char *url, const char *phone,
    long timeout_ms, profile_cb cb, void *arg)
{
	return profile_load_on(NULL, base, url, phone, timeout_ms, cb, arg);
}

int
profile_load_on(struct profile_conn *pc, struct event_base *base,
    const char *url, const char *phone, long timeout_ms, profile_cb cb,
    void *arg)
{
	struct pl_load	*pl;
	PGconn		*conn;

	if (base == NULL || url == NULL || phone == NULL || *phone == '\0' ||
	    timeout_ms <= 0 || cb == NULL ||
	    (pc != NULL && pc_base(pc) != base)) {
		log_warnx("profile: bad arguments");
		return -1;
	}
	if ((pl = pl_new(base, phone, timeout_ms, cb, arg)) == NULL)
		return -1;
	if (pc != NULL && (pl->pl_url = strdup(url)) == NULL) {
		log_warnx("profile: out of memory");
		pl_free(pl);
		return -1;
	}
	if (pc != NULL && (conn = pc_take(pc, pl_orphan, pl)) != NULL)
		pl_start_warm(pl, pc, conn);
	else if (pl_start_fresh(pl, url) == -1) {
		pl_free(pl);
		return -1;
	}
	return 0;
}

/* The warm connection is pgconn.c's; the statement is ours. */
struct profile_conn *
profile_conn_open(struct event_base *base, const char *url, long timeout_ms,
    void (*ready_cb)(int, const char *, void *), void *arg)
{
	return pc_open(base, url, timeout_ms, &pl_stmt, ready_cb, arg);
}

void
profile_free(struct profile *p)
{
	size_t	i;

	if (p == NULL)
		return;
	free(p->p_id);
	free(p->p_name);
	free(p->p_phone);
	free(p->p_gender);
	free(p->p_last_call_at);
	for (i = 0; i < p->p_ninterests; i++)
		free(p->p_interests[i]);
	for (i = 0; i < p->p_ndislikes; i++)
		free(p->p_dislikes[i]);
	for (i = 0; i < p->p_nsummaries; i++)
		free(p->p_summaries[i]);
	for (i = 0; i < p->p_nconditions; i++) {
		free(p->p_conditions[i].pc_condition);
		free(p->p_conditions[i].pc_severity);
	}
	for (i = 0; i < p->p_nmedications; i++) {
		free(p->p_medications[i].pm_name);
		free(p->p_medications[i].pm_dosage);
		free(p->p_medications[i].pm_frequency);
	}
	free(p);
}

/* --- one load --------------------------------------------------------- */

/* A load with its timer armed and no connection yet; NULL logged. */
static struct pl_load *
pl_new(struct event_base *base, const char *phone, long timeout_ms,
    profile_cb cb, void *arg)
{
	struct pl_load	*pl;
	struct timeval	 tv;

	if ((pl = calloc(1, sizeof(*pl))) == NULL ||
	    (pl->pl_phone = strdup(phone)) == NULL ||
	    (pl->pl_timer = evtimer_new(base, pl_timer_cb, pl)) == NULL) {
		log_warnx("profile: out of memory");
		pl_free(pl);
		return NULL;
	}
	ps_init(&pl->pl_sock, base, pl_io_cb, pl);
	pl->pl_cb = cb;
	pl->pl_arg = arg;
	pl->pl_timeout_ms = timeout_ms;
	pl->pl_t0 = now_mono_ns();
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	if (evtimer_add(pl->pl_timer, &tv) == -1) {
		log_warnx("profile: cannot arm the timer");
		pl_free(pl);
		return NULL;
	}
	return pl;
}

/*
 * A connection of its own, for a new load or a warm one's fallback.
 * Never calls back from here: a failure now is reported from the loop.
 * -1 (logged) if there is no PGconn at all.
 */
static int
pl_start_fresh(struct pl_load *pl, const char *url)
{
	int	bad = 0;

	pl->pl_state = PLS_CONNECT;
	pl->pl_sock.ps_conn = pgconn_connect(url, pl->pl_timeout_ms, &bad);
	if (pl->pl_sock.ps_conn == NULL && !bad)
		return -1;
	if (pl->pl_sock.ps_conn == NULL) {
		/* No address (logged): failed, from the loop. */
		pl->pl_early = "cannot resolve the host";
		event_active(pl->pl_timer, EV_TIMEOUT, 1);
		return 0;
	}
	PQsetNoticeProcessor(pl->pl_sock.ps_conn, pl_notice, pl);
	/* libpq: begin as if PQconnectPoll() had said WRITING. */
	if (bad || ps_watch(&pl->pl_sock, EV_WRITE) == -1) {
		pl->pl_early = "connect failed";
		event_active(pl->pl_timer, EV_TIMEOUT, 1);
	}
	return 0;
}

/* The query goes out when the socket is writable: from the loop. */
static void
pl_start_warm(struct pl_load *pl, struct profile_conn *pc, PGconn *conn)
{
	pl->pl_pc = pc;
	pl->pl_warm = 1;
	pl->pl_sock.ps_conn = conn;
	pl->pl_state = PLS_SEND;
	if (ps_watch(&pl->pl_sock, EV_WRITE) == -1)
		pl_fallback(pl, "cannot watch it");
}

/* libpq would print notices on stderr: one debug line instead. */
static void
pl_notice(void *arg, const char *msg)
{
	struct pl_load	*pl = arg;
	char		 why[256];

	pgconn_detail(pl->pl_sock.ps_conn, msg, why, sizeof(why));
	log_debug("profile: server notice: %s", why);
}

/* The lender was closed under this load: the PGconn is pl's now. */
static void
pl_orphan(void *arg)
{
	struct pl_load	*pl = arg;

	pl->pl_pc = NULL;
	PQsetNoticeProcessor(pl->pl_sock.ps_conn, pl_notice, pl);
}

static void
pl_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pl_load	*pl = arg;

	(void)fd;
	switch (pl->pl_state) {
	case PLS_CONNECT:
		pl_connect_poll(pl);
		break;
	case PLS_SEND:
		pl_send(pl);
		break;
	case PLS_QUERY:
		pl_query(pl, what);
		break;
	}
}

static void
pl_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pl_load	*pl = arg;

	(void)fd;
	(void)what;
	if (pl->pl_early != NULL) {
		pl_deliver(pl, PROFILE_ERROR, NULL, pl->pl_early);
		return;
	}
	log_warnx("profile: timeout after %ld ms (%s)", pl->pl_timeout_ms,
	    pl->pl_state == PLS_CONNECT ? "connecting" : "querying");
	pl_deliver(pl, PROFILE_ERROR, NULL, "timeout");
}

static void
pl_connect_poll(struct pl_load *pl)
{
	switch (ps_connect_poll(&pl->pl_sock)) {
	case 1:
		pl_send(pl);
		break;
	case -1:
		pl_fail(pl, "connect failed");
		break;
	}
}

/* pl_stmt on a warm connection unless the server lost one before. */
static void
pl_send(struct pl_load *pl)
{
	PGconn		*conn = pl->pl_sock.ps_conn;
	const char	*params[1];
	int		 ok;

	params[0] = pl->pl_phone;
	pl->pl_named = pl->pl_warm && !pl_stmt.st_unnamed;
	if (PQsetnonblocking(conn, 1) == -1)
		ok = 0;
	else if (pl->pl_named)
		ok = PQsendQueryPrepared(conn, pl_stmt.st_name, 1, params,
		    NULL, NULL, 0);
	else
		ok = PQsendQueryParams(conn, pl_sql, 1, NULL, params, NULL,
		    NULL, 0);
	if (!ok) {
		pl_fail(pl, "query failed");
		return;
	}
	pl->pl_state = PLS_QUERY;
	pl->pl_flushing = 1;
	pl_query(pl, 0);
}

static void
pl_query(struct pl_load *pl, short what)
{
	switch (ps_pump(&pl->pl_sock, what, &pl->pl_flushing, &pl->pl_res)) {
	case -1:
		pl_fail(pl, "query failed");
		break;
	case 1:
		pl->pl_idle = 1;
		pl_done(pl);
		break;
	}
}

static void
pl_done(struct pl_load *pl)
{
	struct profile		*p = NULL;
	const char		*why = NULL;
	char			 detail[256];
	enum profile_status	 st;

	if (pl->pl_warm && pgconn_gone(pl->pl_sock.ps_conn, pl->pl_res)) {
		pgconn_detail(pl->pl_sock.ps_conn, pl->pl_res != NULL ?
		    PQresultErrorMessage(pl->pl_res) : NULL, detail,
		    sizeof(detail));
		pl_fallback(pl, detail);
		return;
	}
	/* 26000: no such prepared statement, here (pooler) or anywhere. */
	if (pl->pl_named && pgconn_is(pl->pl_res, "26000")) {
		pl_unnamed_retry(pl);
		return;
	}
	st = pl_result(pl, &p, &why);
	if (st == PROFILE_OK)
		log_debug("profile: loaded %s in %llu ms%s", p->p_id,
		    (unsigned long long)((now_mono_ns() - pl->pl_t0) /
		    1000000), pl->pl_warm ? " (warm)" : "");
	pl_deliver(pl, st, p, why);
}

/* Same load, same connection, same deadline, the unnamed statement. */
static void
pl_unnamed_retry(struct pl_load *pl)
{
	if (!pl_stmt.st_unnamed)
		log_info("profile: the server does not keep prepared"
		    " statements (a pooler in transaction mode?): using"
		    " unnamed ones");
	pl_stmt.st_unnamed = 1;
	PQclear(pl->pl_res);
	pl->pl_res = NULL;
	pl->pl_idle = 0;
	pl_send(pl);
}

/*
 * The warm connection failed under this load: the load goes on with a
 * fresh one under the same deadline.  The warm one is dropped, not
 * replaced: profile_conn_check() does that, so a worker never holds two.
 */
static void
pl_fallback(struct pl_load *pl, const char *why)
{
	struct profile_conn	*pc = pl->pl_pc;

	log_info("profile: the warm connection failed (%s): using a fresh"
	    " one", why);
	PQclear(pl->pl_res);
	pl->pl_res = NULL;
	pl->pl_warm = 0;
	pl->pl_pc = NULL;
	ps_release(&pl->pl_sock, pc == NULL);
	if (pc != NULL)
		pc_give_back(pc, 0);
	/* From the loop: this may run inside profile_load_on(). */
	if (pl_start_fresh(pl, pl->pl_url) == -1) {
		pl->pl_early = "connect failed";
		event_active(pl->pl_timer, EV_TIMEOUT, 1);
	}
}

static enum profile_status
pl_result(struct pl_load *pl, struct profile **pp, const char **why)
{
	const PGresult	*res = pl->pl_res;
	const char	*state, *msg;

	*why = "bad result";
	if (res != NULL && PQresultStatus(res) == PGRES_FATAL_ERROR) {
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		log_warnx("profile: query failed: %s (SQLSTATE %s)",
		    msg ? msg : "?", state ? state : "?");
		/* 57014: query_canceled, here by statement_timeout. */
		*why = state && strcmp(state, "57014") == 0 ? "timeout" :
		    "query failed";
		return PROFILE_ERROR;
	}
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK ||
	    PQnfields(res) != PLC_NCOLS) {
		log_warnx("profile: unexpected result");
		return PROFILE_ERROR;
	}
	if (PQntuples(res) == 0) {
		*why = "no person with that phone";
		return PROFILE_UNKNOWN;
	}
	if (PQntuples(res) > 1) {
		log_warnx("profile: phone matches more than one person");
		*why = "ambiguous phone";
		return PROFILE_ERROR;
	}
	if ((*pp = pl_row(res)) == NULL)
		return PROFILE_ERROR;
	*why = NULL;
	return PROFILE_OK;
}

/* libpq failed: a warm connection falls back, a fresh one reports. */
static void
pl_fail(struct pl_load *pl, const char *reason)
{
	char	why[256];

	pgconn_detail(pl->pl_sock.ps_conn, NULL, why, sizeof(why));
	if (pl->pl_warm) {
		pl_fallback(pl, why);
		return;
	}
	log_warnx("profile: %s: %s%s", reason, why, pgconn_hint(why));
	pl_deliver(pl, PROFILE_ERROR, NULL, reason);
}

/*
 * The one way out: events off, a lent connection given back (reusable
 * only if every result was read), callback, then free.
 */
static void
pl_deliver(struct pl_load *pl, enum profile_status st, struct profile *p,
    const char *why)
{
	struct profile_conn	*pc = pl->pl_pc;
	PGconn			*conn = pl->pl_sock.ps_conn;
	int			 idle;

	if (pl->pl_sock.ps_io != NULL)
		event_del(pl->pl_sock.ps_io);
	event_del(pl->pl_timer);
	if (pc != NULL) {
		idle = pl->pl_idle && PQstatus(conn) == CONNECTION_OK &&
		    PQtransactionStatus(conn) == PQTRANS_IDLE;
		pl->pl_pc = NULL;
		ps_release(&pl->pl_sock, 0);
		pc_give_back(pc, idle);
	}
	pl->pl_cb(st, st == PROFILE_OK ? p : NULL,
	    st == PROFILE_OK ? NULL : why, pl->pl_arg);
	if (st != PROFILE_OK)
		profile_free(p);
	pl_free(pl);
}

static void
pl_free(struct pl_load *pl)
{
	if (pl == NULL)
		return;
	if (pl->pl_pc != NULL) {
		ps_release(&pl->pl_sock, 0);
		pc_give_back(pl->pl_pc, 0);
	}
	ps_release(&pl->pl_sock, 1);
	if (pl->pl_timer != NULL)
		event_free(pl->pl_timer);
	if (pl->pl_res != NULL)
		PQclear(pl->pl_res);
	if (pl->pl_url != NULL) {
		explicit_bzero(pl->pl_url, strlen(pl->pl_url));
		free(pl->pl_url);
	}
	free(pl->pl_phone);
	free(pl);
}


/* --- the row ---------------------------------------------------------- */

/* The one row as a profile; NULL (logged) if it does not fit. */
static struct profile *
pl_row(const PGresult *res)
{
	struct profile	*p;
	const char	*v;
	char		*end;
	long		 age;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		log_warnx("profile: out of memory");
		return NULL;
	}
	p->p_age = -1;
	if (pl_col(res, PLC_ID, PL_ID_MAX, 1, &p->p_id) == -1 ||
	    pl_col(res, PLC_NAME, PL_FIELD_MAX, 0, &p->p_name) == -1 ||
	    pl_col(res, PLC_PHONE, PL_ID_MAX, 1, &p->p_phone) == -1 ||
	    pl_col(res, PLC_GENDER, PL_FIELD_MAX, 0, &p->p_gender) == -1 ||
	    pl_col(res, PLC_LAST, PL_FIELD_MAX, 0, &p->p_last_call_at) == -1 ||
	    (p->p_name == NULL && (p->p_name = strdup("")) == NULL) ||
	    pl_row_lists(p, res) == -1) {
		profile_free(p);
		return NULL;
	}
	if (!PQgetisnull(res, 0, PLC_AGE)) {
		v = PQgetvalue(res, 0, PLC_AGE);
		age = strtol(v, &end, 10);
		if (end != v && *end == '\0' && age >= 0 && age <= PL_AGE_MAX)
			p->p_age = (int)age;
	}
	/* Prisma's default; a NULL would be a hand-made row. */
	p->p_is_first_call = PQgetisnull(res, 0, PLC_FIRST) ||
	    PQgetvalue(res, 0, PLC_FIRST)[0] == 't';
	return p;
}

static int
pl_row_lists(struct profile *p, const PGresult *res)
{
	json_t	*a[5];
	int	 i, bad = 0, rc = -1;

	a[0] = pl_json(res, PLC_INTERESTS, &bad);
	a[1] = pl_json(res, PLC_DISLIKES, &bad);
	a[2] = pl_json(res, PLC_SUMMARIES, &bad);
	a[3] = pl_json(res, PLC_CONDITIONS, &bad);
	a[4] = pl_json(res, PLC_MEDICATIONS, &bad);
	if (!bad &&
	    pl_strings(a[0], p->p_interests, PROFILE_MAX_LIST,
	    &p->p_ninterests, PL_FIELD_MAX) == 0 &&
	    pl_strings(a[1], p->p_dislikes, PROFILE_MAX_LIST,
	    &p->p_ndislikes, PL_FIELD_MAX) == 0 &&
	    pl_strings(a[2], p->p_summaries, PROFILE_SUMMARIES,
	    &p->p_nsummaries, PL_SUMMARY_MAX) == 0 &&
	    pl_conditions(a[3], p) == 0 && pl_medications(a[4], p) == 0)
		rc = 0;
	else
		log_warnx("profile: %s", bad ? "a list is not JSON" :
		    "out of memory");
	for (i = 0; i < 5; i++)
		json_decref(a[i]);
	return rc;
}

/*
 * Column col as a string in *out (NULL if SQL NULL and not required),
 * cut at max bytes on a UTF-8 boundary, or refused if exact.  -1 logged.
 */
static int
pl_col(const PGresult *res, int col, size_t max, int exact, char **out)
{
	size_t	len;

	*out = NULL;
	if (PQgetisnull(res, 0, col)) {
		if (!exact)
			return 0;
		log_warnx("profile: column %d is NULL", col);
		return -1;
	}
	len = (size_t)PQgetlength(res, 0, col);
	if (exact && len > max) {
		log_warnx("profile: column %d too long", col);
		return -1;
	}
	if ((*out = pl_strndup_utf8(PQgetvalue(res, 0, col), len,
	    max)) == NULL) {
		log_warnx("profile: out of memory");
		return -1;
	}
	return 0;
}

/* The JSON array in col, NULL if SQL NULL; *bad = 1 if not one. */
static json_t *
pl_json(const PGresult *res, int col, int *bad)
{
	json_t	*j;

	if (PQgetisnull(res, 0, col))
		return NULL;
	j = json_loadb(PQgetvalue(res, 0, col),
	    (size_t)PQgetlength(res, 0, col), 0, NULL);
	if (j == NULL || !json_is_array(j)) {
		json_decref(j);
		*bad = 1;
		return NULL;
	}
	return j;
}

/* s[0..len) cut to at most max bytes, never inside a UTF-8 sequence. */
static char *
pl_strndup_utf8(const char *s, size_t len, size_t max)
{
	char	*d;

	if (len > max) {
		len = max;
		while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
			len--;
	}
	if ((d = malloc(len + 1)) == NULL)
		return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

/* The strings of a (NULL: none) into out[], at most max; others skipped. */
static int
pl_strings(json_t *a, char **out, size_t max, size_t *n, size_t bytes)
{
	size_t	 i;

	for (i = 0; i < json_array_size(a) && *n < max; i++) {
		if (!json_is_string(json_array_get(a, i)))
			continue;
		if (pl_item(json_array_get(a, i), bytes, &out[*n]) == -1)
			return -1;
		(*n)++;
	}
	return 0;
}

/* [[condition, severity|null], ...] */
static int
pl_conditions(json_t *a, struct profile *p)
{
	struct profile_condition	*c;
	json_t				*e;
	size_t				 i;

	for (i = 0; i < json_array_size(a) &&
	    p->p_nconditions < PROFILE_MAX_LIST; i++) {
		e = json_array_get(a, i);
		if (!json_is_string(json_array_get(e, 0)))
			continue;
		c = &p->p_conditions[p->p_nconditions++];
		if (pl_item(json_array_get(e, 0), PL_FIELD_MAX,
		    &c->pc_condition) == -1 ||
		    pl_item(json_array_get(e, 1), PL_FIELD_MAX,
		    &c->pc_severity) == -1)
			return -1;
	}
	return 0;
}

/* [[name, dosage|null, frequency|null], ...] */
static int
pl_medications(json_t *a, struct profile *p)
{
	struct profile_medication	*m;
	json_t				*e;
	size_t				 i;

	for (i = 0; i < json_array_size(a) &&
	    p->p_nmedications < PROFILE_MAX_LIST; i++) {
		e = json_array_get(a, i);
		if (!json_is_string(json_array_get(e, 0)))
			continue;
		m = &p->p_medications[p->p_nmedications++];
		if (pl_item(json_array_get(e, 0), PL_FIELD_MAX,
		    &m->pm_name) == -1 ||
		    pl_item(json_array_get(e, 1), PL_FIELD_MAX,
		    &m->pm_dosage) == -1 ||
		    pl_item(json_array_get(e, 2), PL_FIELD_MAX,
		    &m->pm_frequency) == -1)
			return -1;
	}
	return 0;
}

/* *out = copy of the JSON string v (bounded), NULL if v is not one. */
static int
pl_item(json_t *v, size_t max, char **out)
{
	*out = NULL;
	if (!json_is_string(v))
		return 0;
	*out = pl_strndup_utf8(json_string_value(v), json_string_length(v),
	    max);
	return *out == NULL ? -1 : 0;
}
