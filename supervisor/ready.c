/*
 * ready.c - GET /ready: 200 only when this instance can take a call now:
 * running (not draining), Redis connected, PostgreSQL answering (an
 * asynchronous libpq connect, at most one in flight, its result kept
 * for READY_CACHE_MS), workers not throttled, capacity left, no
 * post-call job held in memory.  Otherwise 503 with the reason.  Runs in
 * the supervisor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "jobs.h"
#include "log.h"
#include "pgaddr.h"
#include "pgurl.h"
#include "redis.h"
#include "util.h"
#include "supervisor.h"

#define READY_CACHE_MS		2000
#define READY_PG_TIMEOUT_MS	2000
#define READY_MAX_WAITERS	64

static PGconn		*rd_conn;
static struct event	*rd_ev, *rd_timer;
static int		 rd_pg_ok;
static uint64_t		 rd_checked_ms;
static struct conn	*rd_waiters[READY_MAX_WAITERS];
static int		 rd_nwait;

static void	ready_poll(int, short, void *);
static void	ready_timeout(int, short, void *);
static void	ready_fail(void);

static void
ready_cancel(void *arg)
{
	int	i;

	for (i = 0; i < rd_nwait; i++)
		if (rd_waiters[i] == arg)
			rd_waiters[i] = NULL;
}

/* Everything but the database, which ready_answer() adds. */
static const char *
ready_reason(void)
{
	if (sv.sv_state != SV_RUNNING)
		return "shutting down";
	if (jobs_held() > 0)
		return "post-call jobs held in memory (spool unwritable)";
	if (!rds_connected(sv.sv_rds))
		return "Redis unavailable";
	if (pool_throttled())
		return "workers cannot start";
	if (sv.sv_cf->stream_url == NULL || sv.sv_cf->twilio_url == NULL)
		return "public URLs not known yet";
	if (placed_count() + placed_reserved() + pool_count(W_BUSY) >=
	    (unsigned)sv.sv_cf->max_calls)
		return "at capacity";
	if (!headroom_open())
		return "no headroom";
	return NULL;
}

static void
ready_answer(struct conn *cn)
{
	const char	*why = ready_reason();
	char		 body[200];

	if (why == NULL && !rd_pg_ok)
		why = "PostgreSQL unavailable";
	if (why != NULL && strcmp(why, "no headroom") == 0) {
		char	extra[64];

		snprintf(body, sizeof(body), "{\"success\":false,\"error\":"
		    "\"no headroom\",\"reason\":\"%s\"}", headroom_reason());
		snprintf(extra, sizeof(extra), "Retry-After: %u\r\n",
		    headroom_retry_after());
		conn_respond(cn, 503, "application/json", body, strlen(body),
		    extra);
		return;
	}
	if (why != NULL) {
		conn_respond_json_error(cn, 503, why);
		return;
	}
	snprintf(body, sizeof(body), "{\"status\":\"ready\",\"idle\":%u,"
	    "\"busy\":%u}", pool_count(W_IDLE), pool_count(W_BUSY));
	conn_respond(cn, 200, "application/json", body, strlen(body), NULL);
}

/*
 * why: the failure, said once when the answer turns to no (the first
 * check included: a database that never answered is worth a line).
 */
static void
ready_finish(int ok, const char *why)
{
	int	i, n = rd_nwait;

	if (rd_ev != NULL)
		event_free(rd_ev);
	rd_ev = NULL;
	evtimer_del(rd_timer);
	if (rd_conn != NULL)
		PQfinish(rd_conn);
	rd_conn = NULL;
	if (ok && !rd_pg_ok && rd_checked_ms != 0)
		log_info("ready: PostgreSQL answers again");
	else if (!ok && (rd_pg_ok || rd_checked_ms == 0))
		log_warnx("ready: PostgreSQL does not answer: %s", why);
	rd_pg_ok = ok;
	rd_checked_ms = now_real_ms();
	rd_nwait = 0;
	for (i = 0; i < n; i++)
		if (rd_waiters[i] != NULL)
			ready_answer(rd_waiters[i]);
}

/* Follow PQconnectPoll, re-watching the socket it names each time. */
static void
ready_watch(PostgresPollingStatusType st)
{
	if (st == PGRES_POLLING_OK) {
		ready_finish(1, NULL);
		return;
	}
	if (st == PGRES_POLLING_FAILED || PQsocket(rd_conn) < 0) {
		ready_fail();
		return;
	}
	if (rd_ev != NULL)
		event_free(rd_ev);
	rd_ev = event_new(sv.sv_base, PQsocket(rd_conn),
	    st == PGRES_POLLING_WRITING ? EV_WRITE : EV_READ, ready_poll, NULL);
	if (rd_ev == NULL || event_add(rd_ev, NULL) == -1)
		ready_finish(0, "cannot watch the connection");
}

/*
 * libpq's reason (e.g. "SSL error: certificate verify failed") on one
 * line, bounded; withheld if it would show the password.
 */
static void
ready_fail(void)
{
	const char	*msg = PQerrorMessage(rd_conn), *pw = PQpass(rd_conn);
	char		 why[256];
	size_t		 i, j;

	if (pw != NULL && *pw != '\0' && strstr(msg, pw) != NULL)
		msg = "(details withheld)";
	for (i = j = 0; msg[i] != '\0' && j + 1 < sizeof(why); i++) {
		if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f) {
			if (j > 0 && why[j - 1] != ' ')
				why[j++] = ' ';
		} else
			why[j++] = msg[i];
	}
	while (j > 0 && why[j - 1] == ' ')
		j--;
	why[j] = '\0';
	ready_finish(0, j > 0 ? why : "connect failed");
}

static void
ready_poll(int fd, short ev, void *arg)
{
	(void)fd, (void)ev, (void)arg;
	ready_watch(PQconnectPoll(rd_conn));
}

static void
ready_timeout(int fd, short ev, void *arg)
{
	char	why[48];

	(void)fd, (void)ev, (void)arg;
	snprintf(why, sizeof(why), "no answer within %d ms",
	    READY_PG_TIMEOUT_MS);
	ready_finish(0, why);
}

static int
ready_check(void)
{
	const char	*keys[4 + PGADDR_KEYS] = { "dbname", "connect_timeout",
			    "application_name", NULL };
	const char	*vals[4 + PGADDR_KEYS];
	char		 schema[64], *url;
	static char	 abuf[4608];
	struct timeval	 tv = { READY_PG_TIMEOUT_MS / 1000, 0 };
	int		 k;

	if (rd_timer == NULL &&
	    (rd_timer = evtimer_new(sv.sv_base, ready_timeout, NULL)) == NULL)
		return -1;
	/* Host names resolved on this loop (pgaddr.c), never by libpq. */
	if ((k = pgaddr_params(keys + 3, vals + 3, abuf, sizeof(abuf))) ==
	    -1) {
		ready_finish(0, abuf);
		return 0;
	}
	if ((url = pgurl_clean(sv.sv_cf->database_url, schema,
	    sizeof(schema))) == NULL)
		return -1;
	vals[0] = url;
	vals[1] = "2";
	vals[2] = "naiberd-ready";
	keys[3 + k] = NULL;
	vals[3 + k] = NULL;
	rd_conn = PQconnectStartParams(keys, vals, 1);
	explicit_bzero(url, strlen(url));
	free(url);
	if (rd_conn == NULL)
		return -1;
	evtimer_add(rd_timer, &tv);
	ready_watch(PQstatus(rd_conn) == CONNECTION_BAD ?
	    PGRES_POLLING_FAILED : PGRES_POLLING_WRITING);
	return 0;
}

void
api_ready(struct conn *cn, struct hhead *h)
{
	(void)h;
	if (ready_reason() != NULL ||
	    now_real_ms() - rd_checked_ms < READY_CACHE_MS) {
		ready_answer(cn);
		return;
	}
	if (rd_nwait == READY_MAX_WAITERS) {
		ready_answer(cn);	/* the last known answer */
		return;
	}
	rd_waiters[rd_nwait++] = cn;
	cn->cn_op = cn;
	cn->cn_op_cancel = ready_cancel;
	if (rd_conn == NULL && ready_check() == -1)
		ready_finish(0, "cannot start a connection");
}
