/*
 * profile.c - loads the person a call is for from PostgreSQL.
 *
 * Runs in a worker (answering or PREPARE) on its event base: one libpq
 * connection per load, connected with PQconnectStartParams/PQconnectPoll
 * and queried with PQsendQueryParams, every step driven by libevent
 * readiness on PQsocket(), under one deadline timer.  One parameterised
 * query reads the original's Prisma tables (DESIGN §4): "users" by
 * "phone", the five newest "conversation_summaries", the active
 * "user_health_conditions" and "user_medications"; lists come back as
 * JSON so no array literal is parsed here.  Owns struct pl_load and its
 * PGconn; both are finished after the callback.  Peer: DATABASE_URL.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "log.h"
#include "util.h"
#include "pgurl.h"
#include "profile.h"

#define PL_ID_MAX	256	/* bytes; a longer id is refused, not cut */
#define PL_FIELD_MAX	1024	/* bytes; names, items: cut on UTF-8 */
#define PL_SUMMARY_MAX	65536	/* bytes per summary, cut on UTF-8 */
#define PL_AGE_MAX	150

enum pl_state {
	PLS_CONNECT,		/* PQconnectPoll() */
	PLS_FLUSH,		/* query sent, PQflush() pending */
	PLS_READ		/* waiting for the result */
};

/* Columns of pl_sql, in order. */
enum pl_col {
	PLC_ID, PLC_NAME, PLC_PHONE, PLC_AGE, PLC_GENDER, PLC_INTERESTS,
	PLC_DISLIKES, PLC_FIRST, PLC_LAST, PLC_SUMMARIES, PLC_CONDITIONS,
	PLC_MEDICATIONS, PLC_NCOLS
};

struct pl_load {
	struct event_base	*pl_base;
	PGconn			*pl_conn;
	struct event		*pl_io;		/* one-shot, on pl_fd */
	int			 pl_fd;
	short			 pl_what;
	struct event		*pl_timer;	/* the whole load */
	enum pl_state		 pl_state;
	const char		*pl_early;	/* failed at once */
	PGresult		*pl_res;	/* the first result */
	char			*pl_phone;
	profile_cb		 pl_cb;
	void			*pl_arg;
	long			 pl_timeout_ms;
	uint64_t		 pl_t0;
};

static char	*pl_options(const char *, long, const char *);
static int	 pl_connect_start(struct pl_load *, const char *);
static void	 pl_connect_params(struct pl_load *, const char *,
		    const char *, int);
static int	 pl_watch(struct pl_load *, short);
static void	 pl_io_cb(evutil_socket_t, short, void *);
static void	 pl_timer_cb(evutil_socket_t, short, void *);
static void	 pl_connect_poll(struct pl_load *);
static void	 pl_send(struct pl_load *);
static void	 pl_flush(struct pl_load *, short);
static void	 pl_read(struct pl_load *);
static void	 pl_done(struct pl_load *);
static enum profile_status pl_result(struct pl_load *, struct profile **,
		    const char **);
static void	 pl_fail(struct pl_load *, const char *);
static void	 pl_deliver(struct pl_load *, enum profile_status,
		    struct profile *, const char *);
static void	 pl_free(struct pl_load *);
static void	 pl_detail(PGconn *, const char *, char *, size_t);
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


int
profile_load(struct event_base *base, const char *url, const char *phone,
    long timeout_ms, profile_cb cb, void *arg)
{
	struct pl_load	*pl;
	struct timeval	 tv;

	if (base == NULL || url == NULL || phone == NULL || *phone == '\0' ||
	    timeout_ms <= 0 || cb == NULL) {
		log_warnx("profile: bad arguments");
		return -1;
	}
	if ((pl = calloc(1, sizeof(*pl))) == NULL ||
	    (pl->pl_phone = strdup(phone)) == NULL ||
	    (pl->pl_timer = evtimer_new(base, pl_timer_cb, pl)) == NULL) {
		log_warnx("profile: out of memory");
		goto fail;
	}
	pl->pl_base = base;
	pl->pl_fd = -1;
	pl->pl_cb = cb;
	pl->pl_arg = arg;
	pl->pl_timeout_ms = timeout_ms;
	pl->pl_t0 = now_mono_ns();
	if (pl_connect_start(pl, url) == -1)
		goto fail;
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	if (evtimer_add(pl->pl_timer, &tv) == -1) {
		log_warnx("profile: cannot arm the timer");
		goto fail;
	}
	/* libpq: begin as if PQconnectPoll() had said WRITING. */
	if (pl->pl_early == NULL && pl_watch(pl, EV_WRITE) == -1)
		pl->pl_early = "connect failed";
	/* Never call back from inside profile_load(). */
	if (pl->pl_early != NULL)
		event_active(pl->pl_timer, EV_TIMEOUT, 1);
	return 0;
fail:
	pl_free(pl);
	return -1;
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

/* theirs (the URL's own options, may be NULL) plus ours; NULL if no memory. */
static char *
pl_options(const char *theirs, long timeout_ms, const char *schema)
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
 * XXX libpq resolves host names with a blocking getaddrinfo() (inside
 * PQconnectStartParams() and PQconnectPoll()); use an address or a name
 * in /etc/hosts.  Doing better needs an evdns base and hostaddr=.
 * 0 if pl_conn exists (pl_early set if it already failed), -1 if not.
 */
static int
pl_connect_start(struct pl_load *pl, const char *url)
{
	PQconninfoOption	*ci, *o;
	char			*clean, *opts = NULL, *emsg = NULL;
	char			 schema[64];
	const char		*theirs = NULL;
	int			 gss = getenv("PGGSSENCMODE") != NULL;

	if ((clean = pgurl_clean(url, schema, sizeof(schema))) == NULL) {
		log_warnx("profile: out of memory");
		return -1;
	}
	/* Its message may quote the password: never logged. */
	if ((ci = PQconninfoParse(clean, &emsg)) == NULL) {
		log_warnx("profile: DATABASE_URL cannot be parsed");
		PQfreemem(emsg);
		explicit_bzero(clean, strlen(clean));
		free(clean);
		return -1;
	}
	for (o = ci; o->keyword != NULL; o++) {
		if (strcmp(o->keyword, "options") == 0)
			theirs = o->val;
		if (strcmp(o->keyword, "gssencmode") == 0 && o->val != NULL)
			gss = 1;
	}
	if ((opts = pl_options(theirs, pl->pl_timeout_ms, schema)) != NULL)
		pl_connect_params(pl, clean, opts, gss);
	else
		log_warnx("profile: out of memory");
	for (o = ci; o->keyword != NULL; o++)
		if (o->val != NULL)
			explicit_bzero(o->val, strlen(o->val));
	PQconninfoFree(ci);
	explicit_bzero(clean, strlen(clean));
	free(clean);
	free(opts);
	return pl->pl_conn == NULL ? -1 : 0;
}

/*
 * DATABASE_URL first, expanded, so the keywords after it override it.
 * Unless the URL or PGGSSENCMODE says otherwise (gss set), GSSAPI
 * encryption is not tried: with libpq's default "prefer" every worker
 * would ask Kerberos for credentials first (krb5 configuration, ccache
 * lookups, ~80 KiB of private memory per call) for a server that in
 * practice never offers it.
 */
static void
pl_connect_params(struct pl_load *pl, const char *url, const char *opts,
    int gss)
{
	const char	*keys[7], *vals[7];
	int		 n = 5;
	char		 ct[24], why[256];

	/* Ignored by PQconnectPoll(): pl_timer is the real bound. */
	snprintf(ct, sizeof(ct), "%ld", pl->pl_timeout_ms < 2000 ? 2 :
	    (pl->pl_timeout_ms + 999) / 1000);
	keys[0] = "dbname";		vals[0] = url;
	keys[1] = "connect_timeout";	vals[1] = ct;
	keys[2] = "options";		vals[2] = opts;
	keys[3] = "application_name";	vals[3] = "naiberd";
	keys[4] = "client_encoding";	vals[4] = "UTF8";
	if (!gss) {
		keys[n] = "gssencmode";	vals[n++] = "disable";
	}
	keys[n] = NULL;			vals[n] = NULL;
	if ((pl->pl_conn = PQconnectStartParams(keys, vals, 1)) == NULL) {
		log_warnx("profile: out of memory");
		return;
	}
	if (PQstatus(pl->pl_conn) == CONNECTION_BAD) {
		pl_detail(pl->pl_conn, NULL, why, sizeof(why));
		log_warnx("profile: connect failed: %s", why);
		pl->pl_early = "connect failed";
	}
}

/*
 * Waits once for what on libpq's current socket.  libpq may close and
 * open sockets while connecting (next address, SSL retry), so the event
 * is rebuilt when the fd changes; it is never pending while libpq runs
 * (one-shot, deleted before any PQfinish), so a reused fd number is safe.
 */
static int
pl_watch(struct pl_load *pl, short what)
{
	int	fd;

	if ((fd = PQsocket(pl->pl_conn)) < 0)
		return -1;
	if (pl->pl_io == NULL || fd != pl->pl_fd || what != pl->pl_what) {
		if (pl->pl_io != NULL)
			event_free(pl->pl_io);
		pl->pl_io = event_new(pl->pl_base, fd, what, pl_io_cb, pl);
		if (pl->pl_io == NULL)
			return -1;
		pl->pl_fd = fd;
		pl->pl_what = what;
	}
	return event_add(pl->pl_io, NULL);
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
	case PLS_FLUSH:
		pl_flush(pl, what);
		break;
	case PLS_READ:
		pl_read(pl);
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
	short	what;

	switch (PQconnectPoll(pl->pl_conn)) {
	case PGRES_POLLING_READING:
		what = EV_READ;
		break;
	case PGRES_POLLING_WRITING:
		what = EV_WRITE;
		break;
	case PGRES_POLLING_OK:
		pl_send(pl);
		return;
	default:
		pl_fail(pl, "connect failed");
		return;
	}
	if (pl_watch(pl, what) == -1)
		pl_fail(pl, "connect failed");
}

static void
pl_send(struct pl_load *pl)
{
	const char	*params[1];

	params[0] = pl->pl_phone;
	if (PQsetnonblocking(pl->pl_conn, 1) == -1 ||
	    !PQsendQueryParams(pl->pl_conn, pl_sql, 1, NULL, params, NULL,
	    NULL, 0)) {
		pl_fail(pl, "query failed");
		return;
	}
	pl->pl_state = PLS_FLUSH;
	pl_flush(pl, 0);
}

/* libpq: while PQflush() says 1, wait for either; on read, consume. */
static void
pl_flush(struct pl_load *pl, short what)
{
	int	r;

	if ((what & EV_READ) && !PQconsumeInput(pl->pl_conn)) {
		pl_fail(pl, "query failed");
		return;
	}
	if ((r = PQflush(pl->pl_conn)) == -1) {
		pl_fail(pl, "query failed");
		return;
	}
	if (r == 1) {
		if (pl_watch(pl, EV_READ | EV_WRITE) == -1)
			pl_fail(pl, "query failed");
		return;
	}
	pl->pl_state = PLS_READ;
	pl_read(pl);
}

/* Keeps the first result, drains the rest until PQgetResult() says NULL. */
static void
pl_read(struct pl_load *pl)
{
	PGresult	*res;

	if (!PQconsumeInput(pl->pl_conn)) {
		pl_fail(pl, "query failed");
		return;
	}
	while (!PQisBusy(pl->pl_conn)) {
		if ((res = PQgetResult(pl->pl_conn)) == NULL) {
			pl_done(pl);
			return;
		}
		if (pl->pl_res == NULL)
			pl->pl_res = res;
		else
			PQclear(res);
	}
	if (pl_watch(pl, EV_READ) == -1)
		pl_fail(pl, "query failed");
}

static void
pl_done(struct pl_load *pl)
{
	struct profile		*p = NULL;
	const char		*why = NULL;
	enum profile_status	 st;

	st = pl_result(pl, &p, &why);
	if (st == PROFILE_OK)
		log_debug("profile: loaded %s in %llu ms", p->p_id,
		    (unsigned long long)((now_mono_ns() - pl->pl_t0) /
		    1000000));
	pl_deliver(pl, st, p, why);
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

static void
pl_fail(struct pl_load *pl, const char *reason)
{
	char	why[256];

	pl_detail(pl->pl_conn, NULL, why, sizeof(why));
	log_warnx("profile: %s: %s", reason, why);
	pl_deliver(pl, PROFILE_ERROR, NULL, reason);
}

/* The one way out: events off, callback, then PQfinish and free. */
static void
pl_deliver(struct pl_load *pl, enum profile_status st, struct profile *p,
    const char *why)
{
	if (pl->pl_io != NULL)
		event_del(pl->pl_io);
	event_del(pl->pl_timer);
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
	if (pl->pl_io != NULL)
		event_free(pl->pl_io);
	if (pl->pl_timer != NULL)
		event_free(pl->pl_timer);
	if (pl->pl_res != NULL)
		PQclear(pl->pl_res);
	if (pl->pl_conn != NULL)
		PQfinish(pl->pl_conn);
	free(pl->pl_phone);
	free(pl);
}

/*
 * libpq's message on one line, bounded; withheld if it would show the
 * password (a server or libpq quoting it back).
 */
static void
pl_detail(PGconn *conn, const char *msg, char *out, size_t outsz)
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
