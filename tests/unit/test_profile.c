/*
 * test_profile.c - worker/profile.c against a real PostgreSQL that this
 * file starts with tests/lib/pg.sh in a temporary directory on a free
 * loopback port, loads tests/lib/schema.sql into and fills with
 * fixtures.  A reaper child stops the server and removes the directory
 * when this process ends, whatever the way (pass, failed test, crash,
 * SIGKILL): it waits for EOF on a pipe only this process holds.
 * Covered: first-time and returning people, the five newest summaries,
 * NULLs, arrays with quotes, commas, backslashes and unicode, bounds,
 * hostile arrays, ages and ids, inactive rows, unknown, huge and
 * injection-shaped phones, Prisma URL parameters, SQL errors, duplicate
 * phones, refused ports, failover to a second host on a new socket, a
 * peer that never answers, a query that never ends (statement_timeout,
 * application_name), concurrent loads, and no password in the log.
 * Warm connections (profile_conn_*): a load on one makes no new
 * connection and leaves it reusable, a load on one not ready falls
 * back, a statement that cannot be prepared, the server ending the idle
 * session (before a check, with a check, noticed by the loop) or the
 * busy one, a peer that never answers, closing one under a load; last,
 * through a pgbouncer in transaction mode (skipped without the binary):
 * 42P05 on prepare, 26000 on execute, loads over many backends.
 * Needs pg.sh and schema.sql: run from the source tree or set
 * NAIBERD_SRCDIR.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "testlib.h"

#include <libpq-fe.h>

#include <event2/event.h>

#include "log.h"
#include "profile.h"

#define SELF		"tests/unit/test_profile.c"
#define NPAR		8
#define BIG_PHONE	(8 << 20)

struct res {
	int			 n;	/* callbacks so far */
	enum profile_status	 st;
	struct profile		*p;
	char			 err[64];
	long			 ms;	/* since t0 */
	struct timespec		 t0;
};

static struct {
	char	root[1024];		/* the repository, from __FILE__ */
	char	pgsh[PATH_MAX];
	char	schema[PATH_MAX];
	char	dir[64];
	int	port;
	char	portstr[16];
	char	url[128];
	pid_t	reaper;
	int	reaper_fd;		/* its EOF stops the server */
	long	start_ms;
} srv = { .reaper = -1, .reaper_fd = -1 };

static int	cb_total;	/* callbacks, all loads */

/* What a profile_conn_open() ready_cb was told. */
struct rdy {
	int	n;
	int	ok;
	char	err[64];
};

static int	sh_run(char *, size_t, const char *, ...);
static int	reaper_start(void);
static int	psql(const char *, char *, size_t);
static int	grp_setup(void **);
static int	grp_teardown(void **);
static void	res_cb(enum profile_status, struct profile *, const char *,
		    void *);
static int	wait_n(struct event_base *, const int *, int, long);
static void	load_on(struct event_base *, int, const char *, const char *,
		    long, struct res *);
static void	load(const char *, const char *, long, struct res *);
static void	load_ok(const char *, struct res *);
static void	res_done(struct res *);
static void	within(long, long);
static int	utf8_ok(const char *);
static void	cap_begin(int *);
static void	cap_end(int, char *, size_t);
static void	test_first_time(void **);
static void	test_returning(void **);
static void	test_nulls(void **);
static void	test_bounds(void **);
static void	test_hostile(void **);
static void	test_unknown(void **);
static void	test_injection(void **);
static void	test_prisma_url(void **);
static void	test_url_params(void **);
static void	test_query_error(void **);
static void	test_bad_row(void **);
static void	test_ambiguous(void **);
static void	rst_cb(evutil_socket_t, short, void *);
static void	test_failover(void **);
static void	test_parallel(void **);
static void	test_wrong_port(void **);
static void	test_unix_refused(void **);
static void	test_silent_peer(void **);
static void	test_slow_query(void **);
static void	test_bad_args(void **);
static void	test_no_password_logged(void **);
static int	psql_db(const char *, const char *, char *, size_t);
static int	naiberd_backends(const char *, char *, size_t);
static void	wait_backends(const char *, const char *);
static void	rdy_cb(int, const char *, void *);
static struct profile_conn *warm_open(struct event_base *, const char *,
		    long, struct rdy *);
static void	wait_ready(struct event_base *, struct profile_conn *, long);
static void	load_warm(struct event_base *, struct profile_conn *,
		    const char *, const char *, long, struct res *);
static void	warm_url(char *, size_t);
static void	dead_url(char *, size_t);
static void	test_warm_load(void **);
static void	test_warm_not_ready(void **);
static void	test_warm_terminated(void **);
static void	test_warm_break_busy(void **);
static void	test_warm_silent(void **);
static void	test_warm_close_busy(void **);
static void	test_warm_bad_args(void **);
static void	terminate_warm(void);
static int	count_of(const char *, const char *);
static void	pgb_lost_statement(struct event_base *,
		    struct profile_conn *, const char *, const char *);
static void	pgb_rounds(struct event_base *, struct profile_conn **,
		    const char *, int);
static void	test_pgbouncer(void **);

/*
 * u-ret has seven summaries (c1 oldest .. c7 newest) and one inactive
 * condition and medication; u-first's summaries do not exist; other
 * people's rows must not leak in (u-null has one).  The database's
 * TimeZone is not UTC, so a session default would shift "lastCallAt".
 */
static const char fixtures[] =
    "ALTER DATABASE postgres SET timezone TO 'Pacific/Auckland';"
    "INSERT INTO users (\"id\", \"name\", \"age\", \"phone\", \"gender\","
    " \"interests\", \"dislikes\", \"isFirstCall\", \"lastCallAt\") VALUES"
    " ('u-first', 'Ada First', 81, '+15550000001', 'FEMALE',"
    "  ARRAY['gardening'], ARRAY[]::text[], true, NULL),"
    " ('u-ret', 'Seán O''Brien', 77, '+15550000002', 'MALE',"
    "  ARRAY['crochet, \"knitting\"', 'café', '日本', 'back\\slash',"
    "  NULL, '{braces}', 'NULL', '', 'tab\there'],"
    "  ARRAY['loud \"music\"', 'it''s cold'], false,"
    "  '2024-03-05 14:07:09.123'),"
    " ('u-null', 'Nobody Null', NULL, '+15550000003', NULL, NULL, NULL,"
    "  true, NULL),"
    " ('u-big', 'Big', 70, '+15550000004', 'NON_BINARY',"
    "  (SELECT array_agg('i' || g ORDER BY g) FROM generate_series(1, 40) g)"
    "  || repeat('z', 5000) || repeat('é', 600), NULL, false, NULL),"
    " ('u-odd', 'Odd', -5, '+15550000005', 'PREFER_NOT_TO_SAY',"
    "  '{{a,b},{c,d}}', '[5:6]={x,y}', false, '1999-12-31 23:59:59'),"
    " ('u-old', 'Old', 9999, '+15550000006', NULL, ARRAY[NULL]::text[],"
    "  NULL, false, NULL),"
    " (repeat('x', 300), 'Long id', 1, '+15550000007', NULL, NULL, NULL,"
    "  true, NULL);"
    "INSERT INTO conversation_summaries (\"userId\", \"conversationId\","
    " \"summaryText\", \"createdAt\")"
    " SELECT 'u-ret', 'c' || g, 'summary ' || g,"
    "  '2024-03-01 10:00:00'::timestamp + g * interval '1 hour'"
    "  FROM generate_series(1, 7) g;"
    "INSERT INTO conversation_summaries (\"userId\", \"conversationId\","
    " \"summaryText\", \"createdAt\") VALUES"
    " ('u-null', 'n1', 'not yours', '2030-01-01'),"
    " ('u-big', 'b1', repeat('x', 100000), '2024-01-02'),"
    " ('u-big', 'b2', repeat('日', 30000), '2024-01-01');"
    "INSERT INTO user_health_conditions (\"userId\", \"condition\","
    " \"severity\", \"isActive\") VALUES"
    " ('u-ret', 'hypertension', 'moderate', true),"
    " ('u-ret', 'old flu', NULL, false),"
    " ('u-ret', 'arthritis', NULL, true),"
    " ('u-null', 'not yours', NULL, true);"
    "INSERT INTO user_health_conditions (\"userId\", \"condition\")"
    " SELECT 'u-big', 'cond' || lpad(g::text, 2, '0')"
    "  FROM generate_series(1, 40) g;"
    "INSERT INTO user_medications (\"userId\", \"name\", \"dosage\","
    " \"frequency\", \"isActive\") VALUES"
    " ('u-ret', 'Lisinopril', '10 mg', 'daily', true),"
    " ('u-ret', 'Aspirin', NULL, NULL, true),"
    " ('u-ret', 'Old pill', '5 mg', 'weekly', false);"
    "INSERT INTO user_medications (\"userId\", \"name\")"
    " SELECT 'u-big', 'med' || lpad(g::text, 2, '0')"
    "  FROM generate_series(1, 40) g;";

/* Another schema for Prisma's ?schema=, holding someone else. */
static const char alt_fixture[] =
    "INSERT INTO alt.users (\"id\", \"name\", \"phone\") VALUES"
    " ('alt-1', 'Alt Person', '+15550000002');";

/* Prisma's ?schema=dup: a table that lost its unique index. */
static const char dup_fixture[] =
    "DROP INDEX dup.users_phone_key;"
    "INSERT INTO dup.users (\"id\", \"name\", \"phone\") VALUES"
    " ('d-1', 'One', '+15550000002'), ('d-2', 'Two', '+15550000002');";

/* A database whose users never answer: the query outlives any timeout. */
static const char slow_fixture[] =
    "ALTER TABLE users RENAME TO users_real;"
    "INSERT INTO users_real (\"id\", \"name\", \"phone\") VALUES"
    " ('s-1', 'Slow', '+15550000002');"
    "CREATE VIEW users AS SELECT u.* FROM users_real u,"
    " LATERAL (SELECT pg_sleep(30)) s;";

/*
 * Database "warm" for warm connections: one person, behind a view that
 * sleeps 30 s while table "stall" holds a row (a query to interrupt).
 */
static const char warm_fixture[] =
    "ALTER TABLE users RENAME TO users_real;"
    "CREATE TABLE stall (x int);"
    "INSERT INTO users_real (\"id\", \"name\", \"phone\") VALUES"
    " ('w-1', 'Warm', '+15550000002');"
    "CREATE VIEW users AS SELECT u.* FROM users_real u,"
    " LATERAL (SELECT count(pg_sleep(30)) FROM stall) s;";

/* --- helpers -------------------------------------------------------- */

/*
 * sh -c script with $0 = pg.sh and $1... = the NULL-ended arguments; its
 * stdout into out (if not NULL, trailing newline cut).  Exit status.
 */
static int
sh_run(char *out, size_t outsz, const char *script, ...)
{
	const char	*argv[16];
	va_list		 ap;
	size_t		 n = 0, i = 3;
	ssize_t		 r;
	pid_t		 pid;
	int		 fds[2], st;

	argv[0] = "sh";
	argv[1] = "-c";
	argv[2] = script;
	argv[i++] = srv.pgsh;
	va_start(ap, script);
	while (i < 15 && (argv[i] = va_arg(ap, const char *)) != NULL)
		i++;
	va_end(ap);
	argv[i] = NULL;
	if (pipe(fds) == -1 || (pid = fork()) == -1)
		return -1;
	if (pid == 0) {
		close(fds[0]);
		if (out != NULL)
			dup2(fds[1], STDOUT_FILENO);
		execv("/bin/sh", (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	while (out != NULL && n + 1 < outsz &&
	    (r = read(fds[0], out + n, outsz - n - 1)) != 0)
		if (r > 0)
			n += (size_t)r;
		else if (errno != EINTR)
			break;
	close(fds[0]);
	if (out != NULL) {
		out[n] = '\0';
		while (n > 0 && out[n - 1] == '\n')
			out[--n] = '\0';
	}
	while (waitpid(pid, &st, 0) == -1)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/*
 * The reaper: its own session (a ^C to our group spares it), it reads
 * until EOF, i.e. until every copy of the write end is closed, then
 * stops the server and removes the directory.  The write end is
 * close-on-exec so no shell we run keeps the server alive.
 */
static int
reaper_start(void)
{
	int	fds[2];
	char	c;

	if (pipe2(fds, O_CLOEXEC) == -1)
		return -1;
	if ((srv.reaper = fork()) == -1)
		return -1;
	if (srv.reaper == 0) {
		close(fds[1]);
		setsid();
		while (read(fds[0], &c, 1) != 0 && (errno == EINTR ||
		    errno == 0))
			errno = 0;
		execl("/bin/sh", "sh", "-c", ". \"$0\"; pgb_stop \"$1\";"
		    " pg_stop \"$1\"; rm -rf \"$1\"", srv.pgsh, srv.dir,
		    (char *)NULL);
		_exit(127);
	}
	close(fds[0]);
	srv.reaper_fd = fds[1];
	return 0;
}

static int
psql(const char *sql, char *out, size_t outsz)
{
	return sh_run(out, outsz, ". \"$0\" && pg_psql \"$1\" \"$2\"",
	    srv.portstr, sql, NULL) == 0 ? 0 : -1;
}

static int
grp_setup(void **state)
{
	struct timespec	t0;
	const char	*f;
	size_t		n;

	(void)state;
	/* The source tree: NAIBERD_SRCDIR, else as this file was compiled. */
	f = __FILE__;
	n = strlen(f) - strlen(SELF);
	if (strlen(f) < strlen(SELF) || strcmp(f + n, SELF) != 0)
		n = 0;
	if (getenv("NAIBERD_SRCDIR") != NULL)
		snprintf(srv.root, sizeof(srv.root), "%s/",
		    getenv("NAIBERD_SRCDIR"));
	else
		snprintf(srv.root, sizeof(srv.root), "%.*s", (int)n, f);
	snprintf(srv.pgsh, sizeof(srv.pgsh), "%stests/lib/pg.sh", srv.root);
	snprintf(srv.schema, sizeof(srv.schema), "%stests/lib/schema.sql",
	    srv.root);
	if (access(srv.pgsh, R_OK) == -1 || access(srv.schema, R_OK) == -1) {
		fprintf(stderr, "%s: not found (run from the source tree or"
		    " set NAIBERD_SRCDIR)\n", srv.pgsh);
		return -1;
	}
	snprintf(srv.dir, sizeof(srv.dir), "/tmp/test_profile.XXXXXX");
	if (mkdtemp(srv.dir) == NULL || (srv.port = tl_free_port()) == -1)
		return -1;
	snprintf(srv.portstr, sizeof(srv.portstr), "%d", srv.port);
	snprintf(srv.url, sizeof(srv.url),
	    "postgres://postgres@127.0.0.1:%d/postgres", srv.port);
	/* Before the server exists, so nothing can outlive us. */
	if (reaper_start() == -1)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (sh_run(NULL, 0, ". \"$0\" && pg_start \"$1\" \"$2\"", srv.dir,
	    srv.portstr, NULL) != 0)
		return -1;
	srv.start_ms = tl_ms_since(&t0);
	/* $2 schema.sql; public, then schemas alt and dup, then db slow. */
	if (sh_run(NULL, 0, ". \"$0\" && pg_psql \"$1\" < \"$2\" &&"
	    " pg_psql \"$1\" \"$3\" &&"
	    " for s in alt dup; do pg_psql \"$1\" \"CREATE SCHEMA $s\" &&"
	    " { echo \"SET search_path TO $s;\"; cat \"$2\"; } |"
	    " pg_psql \"$1\" || exit 1; done &&"
	    " pg_psql \"$1\" \"$4\" && pg_psql \"$1\" \"$5\" &&"
	    " pg_psql \"$1\" 'CREATE DATABASE slow' && PG_DB=slow &&"
	    " pg_psql \"$1\" < \"$2\" && pg_psql \"$1\" \"$6\" &&"
	    " pg_psql \"$1\" 'CREATE DATABASE warm' && PG_DB=warm &&"
	    " pg_psql \"$1\" < \"$2\" && pg_psql \"$1\" \"$7\"",
	    srv.portstr, srv.schema, fixtures, alt_fixture, dup_fixture,
	    slow_fixture, warm_fixture, NULL) != 0)
		return -1;
	return 0;
}

static int
grp_teardown(void **state)
{
	struct timespec	t0;

	(void)state;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (srv.reaper_fd != -1)
		close(srv.reaper_fd);
	srv.reaper_fd = -1;
	if (srv.reaper > 0)
		while (waitpid(srv.reaper, NULL, 0) == -1 && errno == EINTR)
			;
	srv.reaper = -1;
	fprintf(stderr, "# postgres: start (initdb + pg_ctl -w) %ld ms,"
	    " stop (pg_ctl -m immediate) and rm -rf %ld ms\n", srv.start_ms,
	    tl_ms_since(&t0));
	return 0;
}

static void
res_cb(enum profile_status st, struct profile *p, const char *err,
    void *arg)
{
	struct res	*r = arg;

	r->n++;
	cb_total++;
	r->ms = tl_ms_since(&r->t0);
	r->st = st;
	if (r->p != NULL)
		profile_free(r->p);
	r->p = p;
	snprintf(r->err, sizeof(r->err), "%s", err != NULL ? err : "");
}

/* Runs the loop until *v >= want or ms pass; 1 if *v got there. */
static int
wait_n(struct event_base *b, const int *v, int want, long ms)
{
	struct timeval	 tv = { ms / 1000, (ms % 1000) * 1000 };
	struct event	*t;
	int		 expired = 0;

	t = evtimer_new(b, tl_deadline_cb, &expired);
	assert_non_null(t);
	evtimer_add(t, &tv);
	while (*v < want && !expired)
		event_base_loop(b, EVLOOP_ONCE);
	event_free(t);
	return *v >= want;
}

/*
 * One load on b, which holds others events of the caller: never calls
 * back from inside profile_load, calls back once, leaves no event behind.
 */
static void
load_on(struct event_base *b, int others, const char *url,
    const char *phone, long timeout_ms, struct res *r)
{
	memset(r, 0, sizeof(*r));
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	assert_int_equal(profile_load(b, url, phone, timeout_ms, res_cb, r),
	    0);
	assert_int_equal(r->n, 0);
	assert_true(wait_n(b, &r->n, 1, timeout_ms + 3000));
	event_base_loop(b, EVLOOP_NONBLOCK);
	assert_int_equal(r->n, 1);
	assert_int_equal(event_base_get_num_events(b,
	    EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE), others);
}

static void
load(const char *url, const char *phone, long timeout_ms, struct res *r)
{
	struct event_base	*b;

	assert_non_null(b = event_base_new());
	load_on(b, 0, url, phone, timeout_ms, r);
	event_base_free(b);
}

static void
load_ok(const char *phone, struct res *r)
{
	load(srv.url, phone, 3000, r);
	if (r->st != PROFILE_OK)
		fail_msg("%s: status %d (%s)", phone, r->st, r->err);
	assert_non_null(r->p);
}

static void
res_done(struct res *r)
{
	profile_free(r->p);
	r->p = NULL;
}

/*
 * A deadline of want ms, as seen from here: libevent reads a coarse
 * clock (a few ms early at most); a loaded machine runs it late.
 */
static void
within(long ms, long want)
{
	if (ms < want - 20 || ms > want + 500)
		fail_msg("answered after %ld ms, want %ld", ms, want);
}

static int
utf8_ok(const char *s)
{
	const unsigned char	*u = (const unsigned char *)s;
	int			 k;

	while (*u != '\0') {
		k = *u < 0x80 ? 0 : (*u & 0xe0) == 0xc0 ? 1 :
		    (*u & 0xf0) == 0xe0 ? 2 : (*u & 0xf8) == 0xf0 ? 3 : -1;
		if (k < 0)
			return 0;
		for (u++; k > 0; k--, u++)
			if ((*u & 0xc0) != 0x80)
				return 0;
	}
	return 1;
}

/* Sends stderr (the log) to a file until cap_end(). */
static void
cap_begin(int *saved)
{
	char	path[128];
	int	fd;

	snprintf(path, sizeof(path), "%s.log", srv.dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd != -1);
	fflush(stderr);
	*saved = dup(STDERR_FILENO);
	assert_true(*saved != -1);
	dup2(fd, STDERR_FILENO);
	close(fd);
}

static void
cap_end(int saved, char *buf, size_t size)
{
	char	path[128];
	ssize_t	n;
	int	fd;

	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	snprintf(path, sizeof(path), "%s.log", srv.dir);
	fd = open(path, O_RDONLY);
	assert_true(fd != -1);
	n = read(fd, buf, size - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
}

/* --- tests ---------------------------------------------------------- */

static void
test_first_time(void **state)
{
	struct res	r;

	(void)state;
	load_ok("+15550000001", &r);
	assert_string_equal(r.p->p_id, "u-first");
	assert_string_equal(r.p->p_name, "Ada First");
	assert_string_equal(r.p->p_phone, "+15550000001");
	assert_int_equal(r.p->p_age, 81);
	assert_string_equal(r.p->p_gender, "FEMALE");
	assert_true(r.p->p_is_first_call);
	assert_null(r.p->p_last_call_at);
	assert_int_equal(r.p->p_nsummaries, 0);
	assert_int_equal(r.p->p_ninterests, 1);
	assert_string_equal(r.p->p_interests[0], "gardening");
	assert_int_equal(r.p->p_ndislikes, 0);
	assert_int_equal(r.p->p_nconditions, 0);
	assert_int_equal(r.p->p_nmedications, 0);
	assert_string_equal(r.err, "");
	res_done(&r);
}

static void
test_returning(void **state)
{
	static const char *const want[] = { "crochet, \"knitting\"",
	    "café", "日本", "back\\slash", "{braces}", "NULL", "",
	    "tab\there" };
	struct res	r;
	size_t		i;

	(void)state;
	load_ok("+15550000002", &r);
	assert_string_equal(r.p->p_id, "u-ret");
	assert_string_equal(r.p->p_name, "Seán O'Brien");
	assert_int_equal(r.p->p_age, 77);
	assert_string_equal(r.p->p_gender, "MALE");
	assert_false(r.p->p_is_first_call);
	assert_string_equal(r.p->p_last_call_at, "2024-03-05T14:07:09.123Z");
	/* Seven stored: the five newest, newest first. */
	assert_int_equal(r.p->p_nsummaries, 5);
	for (i = 0; i < 5; i++) {
		char	s[32];

		snprintf(s, sizeof(s), "summary %zu", 7 - i);
		assert_string_equal(r.p->p_summaries[i], s);
	}
	/* The NULL element is skipped, the string "NULL" is not. */
	assert_int_equal(r.p->p_ninterests, 8);
	for (i = 0; i < 8; i++)
		assert_string_equal(r.p->p_interests[i], want[i]);
	assert_int_equal(r.p->p_ndislikes, 2);
	assert_string_equal(r.p->p_dislikes[0], "loud \"music\"");
	assert_string_equal(r.p->p_dislikes[1], "it's cold");
	assert_int_equal(r.p->p_nconditions, 2);
	assert_string_equal(r.p->p_conditions[0].pc_condition, "arthritis");
	assert_null(r.p->p_conditions[0].pc_severity);
	assert_string_equal(r.p->p_conditions[1].pc_condition,
	    "hypertension");
	assert_string_equal(r.p->p_conditions[1].pc_severity, "moderate");
	assert_int_equal(r.p->p_nmedications, 2);
	assert_string_equal(r.p->p_medications[0].pm_name, "Aspirin");
	assert_null(r.p->p_medications[0].pm_dosage);
	assert_null(r.p->p_medications[0].pm_frequency);
	assert_string_equal(r.p->p_medications[1].pm_name, "Lisinopril");
	assert_string_equal(r.p->p_medications[1].pm_dosage, "10 mg");
	assert_string_equal(r.p->p_medications[1].pm_frequency, "daily");
	res_done(&r);
}

static void
test_nulls(void **state)
{
	struct res	r;

	(void)state;
	load_ok("+15550000003", &r);
	assert_string_equal(r.p->p_id, "u-null");
	assert_int_equal(r.p->p_age, -1);
	assert_null(r.p->p_gender);
	assert_null(r.p->p_last_call_at);
	assert_true(r.p->p_is_first_call);
	assert_int_equal(r.p->p_ninterests, 0);
	assert_int_equal(r.p->p_ndislikes, 0);
	assert_int_equal(r.p->p_nsummaries, 1);
	assert_string_equal(r.p->p_summaries[0], "not yours");
	assert_int_equal(r.p->p_nconditions, 1);
	assert_int_equal(r.p->p_nmedications, 0);
	res_done(&r);
}

static void
test_bounds(void **state)
{
	struct res	r;
	char		s[16];
	size_t		i;

	(void)state;
	load_ok("+15550000004", &r);
	assert_int_equal(r.p->p_ninterests, PROFILE_MAX_LIST);
	for (i = 0; i < PROFILE_MAX_LIST; i++) {
		snprintf(s, sizeof(s), "i%zu", i + 1);
		assert_string_equal(r.p->p_interests[i], s);
	}
	assert_int_equal(r.p->p_nconditions, PROFILE_MAX_LIST);
	assert_string_equal(r.p->p_conditions[0].pc_condition, "cond01");
	assert_string_equal(r.p->p_conditions[31].pc_condition, "cond32");
	assert_int_equal(r.p->p_nmedications, PROFILE_MAX_LIST);
	assert_string_equal(r.p->p_medications[31].pm_name, "med32");
	/* 100000 'x': cut to 64 KiB; 30000 three-byte chars: 21845 kept. */
	assert_int_equal(r.p->p_nsummaries, 2);
	assert_int_equal(strlen(r.p->p_summaries[0]), 65536);
	assert_int_equal(strspn(r.p->p_summaries[0], "x"), 65536);
	assert_int_equal(strlen(r.p->p_summaries[1]), 65535);
	assert_true(utf8_ok(r.p->p_summaries[1]));
	res_done(&r);
}

/* Items past the 32nd are not read; long ones in an array are cut. */
static void
test_hostile(void **state)
{
	struct res	r;

	(void)state;
	load_ok("+15550000005", &r);
	assert_int_equal(r.p->p_age, -1);
	assert_string_equal(r.p->p_gender, "PREFER_NOT_TO_SAY");
	assert_string_equal(r.p->p_last_call_at, "1999-12-31T23:59:59.000Z");
	/* A two-dimensional array is read flat, in order. */
	assert_int_equal(r.p->p_ninterests, 4);
	assert_string_equal(r.p->p_interests[0], "a");
	assert_string_equal(r.p->p_interests[3], "d");
	/* Lower bound 5, not 1. */
	assert_int_equal(r.p->p_ndislikes, 2);
	assert_string_equal(r.p->p_dislikes[0], "x");
	assert_string_equal(r.p->p_dislikes[1], "y");
	res_done(&r);

	load_ok("+15550000006", &r);
	assert_int_equal(r.p->p_age, -1);
	assert_int_equal(r.p->p_ninterests, 0);
	res_done(&r);
}

static void
test_unknown(void **state)
{
	struct res	r;
	char		*big;

	(void)state;
	load(srv.url, "+15559999999", 3000, &r);
	assert_int_equal(r.st, PROFILE_UNKNOWN);
	assert_null(r.p);
	assert_true(r.err[0] != '\0');
	load(srv.url, "+", 3000, &r);
	assert_int_equal(r.st, PROFILE_UNKNOWN);
	/* Not E.164, not even ASCII: still only a parameter. */
	load(srv.url, "日本 \"'\\", 3000, &r);
	assert_int_equal(r.st, PROFILE_UNKNOWN);
	/* Larger than a socket buffer: PQflush() must be waited on. */
	assert_non_null(big = malloc(BIG_PHONE + 1));
	memset(big, '9', BIG_PHONE);
	big[0] = '+';
	big[BIG_PHONE] = '\0';
	load(srv.url, big, 5000, &r);
	free(big);
	assert_int_equal(r.st, PROFILE_UNKNOWN);
}

static void
test_injection(void **state)
{
	static const char *const phones[] = {
	    "+1' OR '1'='1",
	    "+15550000001' OR '1'='1",
	    "' OR 1=1 --",
	    "+15550000001'; DROP TABLE users; --",
	    "$1",
	    "+15550000001\\' OR 1=1 --",
	};
	struct res	r;
	char		before[32], after[32];
	size_t		i;

	(void)state;
	assert_int_equal(psql("SELECT count(*) FROM users", before,
	    sizeof(before)), 0);
	assert_string_equal(before, "7");
	for (i = 0; i < sizeof(phones) / sizeof(phones[0]); i++) {
		load(srv.url, phones[i], 3000, &r);
		if (r.st != PROFILE_UNKNOWN)
			fail_msg("%s: status %d", phones[i], r.st);
	}
	assert_int_equal(psql("SELECT count(*) FROM users", after,
	    sizeof(after)), 0);
	assert_string_equal(after, before);
	/* Still the real people. */
	load_ok("+15550000001", &r);
	res_done(&r);
}

/* The original's Prisma URL: its own parameters must not break libpq. */
static void
test_prisma_url(void **state)
{
	char		url[256];
	struct res	r;

	(void)state;
	snprintf(url, sizeof(url), "%s?schema=public&connection_limit=5"
	    "&pool_timeout=10&sslmode=disable", srv.url);
	load(url, "+15550000002", 3000, &r);
	assert_int_equal(r.st, PROFILE_OK);
	assert_string_equal(r.p->p_id, "u-ret");
	res_done(&r);

	snprintf(url, sizeof(url), "%s?connection_limit=1&schema=alt",
	    srv.url);
	load(url, "+15550000002", 3000, &r);
	assert_int_equal(r.st, PROFILE_OK);
	assert_string_equal(r.p->p_id, "alt-1");
	res_done(&r);

	/* Keyword/value form works too. */
	snprintf(url, sizeof(url), "host=127.0.0.1 port=%d user=postgres"
	    " dbname=postgres", srv.port);
	load(url, "+15550000001", 3000, &r);
	assert_int_equal(r.st, PROFILE_OK);
	res_done(&r);
}

/* Other parameters kept; the URL's own options kept, ours after. */
static void
test_url_params(void **state)
{
	char		url[256], log[4096];
	struct res	r;
	int		saved;

	(void)state;
	/* Kept parameters stay; a schema that is no identifier is not used. */
	snprintf(url, sizeof(url), "%s?sslmode=disable&schema=no-such\"x"
	    "&application_name=other&connect_timeout=5", srv.url);
	cap_begin(&saved);
	load(url, "+15550000002", 3000, &r);
	cap_end(saved, log, sizeof(log));
	assert_int_equal(r.st, PROFILE_OK);
	assert_string_equal(r.p->p_id, "u-ret");
	assert_non_null(strstr(log, "schema ignored"));
	res_done(&r);

	/* Theirs then ours: their 1 ms statement_timeout is overridden. */
	snprintf(url, sizeof(url), "%s?options=-c%%20statement_timeout%%3D1"
	    "&schema=alt", srv.url);
	load(url, "+15550000002", 3000, &r);
	assert_int_equal(r.st, PROFILE_OK);
	assert_string_equal(r.p->p_id, "alt-1");
	res_done(&r);

	/* The URL's own options are kept, ours added after them. */
	snprintf(url, sizeof(url), "%s?options=-c%%20search_path%%3Dalt",
	    srv.url);
	load(url, "+15550000002", 3000, &r);
	assert_int_equal(r.st, PROFILE_OK);
	assert_string_equal(r.p->p_id, "alt-1");
	res_done(&r);
}

/* The server refuses the query: no such table in that database. */
static void
test_query_error(void **state)
{
	char		url[128], log[4096];
	struct res	r;
	int		saved;

	(void)state;
	snprintf(url, sizeof(url), "postgres://postgres@127.0.0.1:%d/template1",
	    srv.port);
	cap_begin(&saved);
	load(url, "+15550000002", 3000, &r);
	cap_end(saved, log, sizeof(log));
	assert_int_equal(r.st, PROFILE_ERROR);
	assert_null(r.p);
	assert_string_equal(r.err, "query failed");
	assert_non_null(strstr(log, "42P01"));
}

/* An id too long to be one is refused, not cut. */
static void
test_bad_row(void **state)
{
	struct res	r;

	(void)state;
	load(srv.url, "+15550000007", 3000, &r);
	assert_int_equal(r.st, PROFILE_ERROR);
	assert_null(r.p);
	assert_string_equal(r.err, "bad result");
}

static void
test_ambiguous(void **state)
{
	char		url[160];
	struct res	r;

	(void)state;
	snprintf(url, sizeof(url), "%s?schema=dup", srv.url);
	load(url, "+15550000002", 3000, &r);
	assert_int_equal(r.st, PROFILE_ERROR);
	assert_string_equal(r.err, "ambiguous phone");
}

static void
rst_cb(evutil_socket_t fd, short what, void *arg)
{
	struct linger	l = { 1, 0 };
	int		c;

	(void)what;
	if ((c = accept(fd, NULL, NULL)) == -1)
		return;
	setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(c);
	(*(int *)arg)++;
}

/*
 * Two hosts, the first resets every connection: libpq moves to the
 * second on a new socket, which the loader must follow.
 */
static void
test_failover(void **state)
{
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof(sin);
	struct event_base	*b;
	struct event		*ev;
	char			 url[160];
	struct res		 r;
	int			 s, resets = 0;

	(void)state;
	assert_true((s = socket(AF_INET, SOCK_STREAM, 0)) != -1);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(s, 16), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &len), 0);
	assert_non_null(b = event_base_new());
	ev = event_new(b, s, EV_READ | EV_PERSIST, rst_cb, &resets);
	assert_non_null(ev);
	event_add(ev, NULL);
	snprintf(url, sizeof(url), "postgres://postgres@127.0.0.1:%d,"
	    "127.0.0.1:%d/postgres", ntohs(sin.sin_port), srv.port);
	load_on(b, 1, url, "+15550000002", 3000, &r);
	event_free(ev);
	event_base_free(b);
	close(s);
	assert_int_equal(resets, 1);
	if (r.st != PROFILE_OK)
		fail_msg("status %d (%s)", r.st, r.err);
	assert_string_equal(r.p->p_id, "u-ret");
	res_done(&r);
}

/* Loads on one base at once, each answered once and with its own row. */
static void
test_parallel(void **state)
{
	static const char *const phones[NPAR] = { "+15550000001",
	    "+15550000002", "+15559999999", "+15550000003", "+15550000004",
	    "+15550000005", "+1' OR '1'='1", "+15550000006" };
	struct event_base	*b;
	struct res		 r[NPAR];
	int			 i;

	(void)state;
	assert_non_null(b = event_base_new());
	cb_total = 0;
	for (i = 0; i < NPAR; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		clock_gettime(CLOCK_MONOTONIC, &r[i].t0);
		assert_int_equal(profile_load(b, srv.url, phones[i], 5000,
		    res_cb, &r[i]), 0);
	}
	assert_int_equal(cb_total, 0);
	assert_true(wait_n(b, &cb_total, NPAR, 6000));
	event_base_loop(b, EVLOOP_NONBLOCK);
	for (i = 0; i < NPAR; i++) {
		assert_int_equal(r[i].n, 1);
		assert_int_equal(r[i].st, i == 2 || i == 6 ? PROFILE_UNKNOWN :
		    PROFILE_OK);
	}
	assert_string_equal(r[1].p->p_id, "u-ret");
	assert_string_equal(r[4].p->p_id, "u-big");
	assert_string_equal(r[7].p->p_id, "u-old");
	for (i = 0; i < NPAR; i++)
		res_done(&r[i]);
	event_base_free(b);
}

static void
test_wrong_port(void **state)
{
	char		url[128];
	struct res	r;

	(void)state;
	snprintf(url, sizeof(url), "postgres://postgres@127.0.0.1:%d/postgres",
	    tl_free_port());
	load(url, "+15550000001", 2000, &r);
	assert_int_equal(r.st, PROFILE_ERROR);
	assert_null(r.p);
	assert_string_equal(r.err, "connect failed");
	assert_true(r.ms < 2000);
}

/* Fails inside PQconnectStartParams(): still called back later. */
static void
test_unix_refused(void **state)
{
	char		url[128];
	struct res	r;

	(void)state;
	snprintf(url, sizeof(url), "postgresql:///postgres?host=%s/none",
	    srv.dir);
	load(url, "+15550000001", 2000, &r);
	assert_int_equal(r.st, PROFILE_ERROR);
	assert_string_equal(r.err, "connect failed");
	assert_true(r.ms < 2000);
}

/* A listener that accepts (the kernel does) and never says a word. */
static void
test_silent_peer(void **state)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof(sin);
	char			url[128];
	struct res		r;
	int			s;

	(void)state;
	assert_true((s = socket(AF_INET, SOCK_STREAM, 0)) != -1);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(s, 16), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &len), 0);
	snprintf(url, sizeof(url), "postgres://postgres@127.0.0.1:%d/postgres",
	    ntohs(sin.sin_port));
	load(url, "+15550000001", 400, &r);
	close(s);
	assert_int_equal(r.st, PROFILE_ERROR);
	assert_string_equal(r.err, "timeout");
	within(r.ms, 400);
}

/*
 * The query never ends: the timer answers at timeout_ms, and the server
 * drops the query itself (statement_timeout from the options) instead of
 * sleeping its 30 s; application_name shows who it was.
 */
static void
test_slow_query(void **state)
{
	struct event_base	*b;
	struct timespec		 t;
	char			 url[160], out[32];
	struct res		 r;
	static const char	 q[] = "SELECT count(*) FROM pg_stat_activity"
	    " WHERE application_name = 'naiberd' AND state = 'active'"
	    " AND datname = 'slow'";

	(void)state;
	snprintf(url, sizeof(url), "postgres://postgres@127.0.0.1:%d/slow",
	    srv.port);
	memset(&r, 0, sizeof(r));
	assert_non_null(b = event_base_new());
	clock_gettime(CLOCK_MONOTONIC, &r.t0);
	assert_int_equal(profile_load(b, url, "+15550000002", 4000, res_cb,
	    &r), 0);
	/* The query runs (poll: a loaded machine connects slowly). */
	for (;;) {
		assert_false(wait_n(b, &r.n, 1, 200));
		assert_int_equal(psql(q, out, sizeof(out)), 0);
		if (strcmp(out, "1") == 0)
			break;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - r.t0.tv_sec > 3)
			fail_msg("the query never showed up in pg_stat_activity");
	}
	assert_true(wait_n(b, &r.n, 1, 6000));
	assert_int_equal(r.st, PROFILE_ERROR);
	assert_string_equal(r.err, "timeout");
	within(r.ms, 4000);
	event_base_free(b);
	clock_gettime(CLOCK_MONOTONIC, &t);
	do {
		assert_int_equal(psql(q, out, sizeof(out)), 0);
		if (strcmp(out, "0") == 0)
			break;
		usleep(100 * 1000);
	} while (tl_ms_since(&t) < 5000);
	assert_string_equal(out, "0");
}

static void
test_bad_args(void **state)
{
	struct event_base	*b;
	struct res		 r;
	char			 log[4096];
	int			 saved;

	(void)state;
	memset(&r, 0, sizeof(r));
	assert_non_null(b = event_base_new());
	assert_int_equal(profile_load(NULL, srv.url, "+1", 100, res_cb, &r),
	    -1);
	assert_int_equal(profile_load(b, NULL, "+1", 100, res_cb, &r), -1);
	assert_int_equal(profile_load(b, srv.url, NULL, 100, res_cb, &r), -1);
	assert_int_equal(profile_load(b, srv.url, "", 100, res_cb, &r), -1);
	assert_int_equal(profile_load(b, srv.url, "+1", 0, res_cb, &r), -1);
	assert_int_equal(profile_load(b, srv.url, "+1", 100, NULL, &r), -1);
	/* libpq would quote the bad token, here the password. */
	cap_begin(&saved);
	assert_int_equal(profile_load(b, "postgres://u:S3cr%zzEt@h/db", "+1",
	    100, res_cb, &r), -1);
	assert_int_equal(profile_load(b, "postgres://h/db?bogus=1", "+1",
	    100, res_cb, &r), -1);
	cap_end(saved, log, sizeof(log));
	assert_null(strstr(log, "S3cr"));
	assert_non_null(strstr(log, "DATABASE_URL"));
	event_base_loop(b, EVLOOP_NONBLOCK);
	assert_int_equal(r.n, 0);
	assert_int_equal(event_base_get_num_events(b,
	    EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE), 0);
	event_base_free(b);
}

static void
test_no_password_logged(void **state)
{
	char		url[160], log[8192];
	struct res	r;
	int		saved;

	(void)state;
	snprintf(url, sizeof(url), "postgres://naiber:Pw-Secret-42@127.0.0.1"
	    ":%d/postgres", tl_free_port());
	cap_begin(&saved);
	load(url, "+15550000001", 1000, &r);
	cap_end(saved, log, sizeof(log));
	assert_int_equal(r.st, PROFILE_ERROR);
	assert_null(strstr(r.err, "Pw-Secret"));
	assert_non_null(strstr(log, "connect failed"));
	assert_null(strstr(log, "Pw-Secret"));
	/* One line per event. */
	assert_non_null(strchr(log, '\n'));
	assert_null(strchr(strchr(log, '\n') + 1, '\n'));

	/* The server quotes the database name, here equal to the password. */
	snprintf(url, sizeof(url), "postgres://postgres:Zq9-Secret@127.0.0.1"
	    ":%d/Zq9-Secret", srv.port);
	cap_begin(&saved);
	load(url, "+15550000001", 3000, &r);
	cap_end(saved, log, sizeof(log));
	assert_int_equal(r.st, PROFILE_ERROR);
	assert_string_equal(r.err, "connect failed");
	assert_null(strstr(log, "Zq9"));
	assert_non_null(strstr(log, "withheld"));
}

/* --- warm connections ----------------------------------------------- */

static int
psql_db(const char *db, const char *sql, char *out, size_t outsz)
{
	return sh_run(out, outsz, ". \"$0\" && PG_DB=\"$3\" pg_psql \"$1\""
	    " \"$2\"", srv.portstr, sql, db, NULL) == 0 ? 0 : -1;
}

/* Pids of our sessions in db, one a line. */
static int
naiberd_backends(const char *db, char *out, size_t outsz)
{
	char	sql[256];

	snprintf(sql, sizeof(sql), "SELECT pid FROM pg_stat_activity"
	    " WHERE datname = '%s' AND application_name = 'naiberd'"
	    " ORDER BY pid", db);
	return psql_db("postgres", sql, out, outsz);
}

/* Until naiberd_backends(db) says want (a backend exits after us). */
static void
wait_backends(const char *db, const char *want)
{
	struct timespec	t0;
	char		out[256];

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		assert_int_equal(naiberd_backends(db, out, sizeof(out)), 0);
		if (strcmp(out, want) == 0)
			return;
		usleep(20 * 1000);
	} while (tl_ms_since(&t0) < 5000);
	fail_msg("backends in %s: \"%s\", want \"%s\"", db, out, want);
}

static void
rdy_cb(int ok, const char *err, void *arg)
{
	struct rdy	*r = arg;

	r->n++;
	r->ok = ok;
	snprintf(r->err, sizeof(r->err), "%s", err != NULL ? err : "");
}

/* Opens one and waits for its ready_cb: never from inside, once. */
static struct profile_conn *
warm_open(struct event_base *b, const char *url, long ms, struct rdy *r)
{
	struct profile_conn	*pc;

	memset(r, 0, sizeof(*r));
	assert_non_null(pc = profile_conn_open(b, url, ms, rdy_cb, r));
	assert_int_equal(r->n, 0);
	assert_false(profile_conn_ready(pc));
	assert_true(wait_n(b, &r->n, 1, ms + 3000));
	event_base_loop(b, EVLOOP_NONBLOCK);
	assert_int_equal(r->n, 1);
	assert_int_equal(profile_conn_ready(pc), r->ok);
	return pc;
}

static void
wait_ready(struct event_base *b, struct profile_conn *pc, long ms)
{
	struct timeval	 tv = { ms / 1000, (ms % 1000) * 1000 };
	struct event	*t;
	int		 expired = 0;

	assert_non_null(t = evtimer_new(b, tl_deadline_cb, &expired));
	evtimer_add(t, &tv);
	while (!profile_conn_ready(pc) && !expired)
		event_base_loop(b, EVLOOP_ONCE);
	event_free(t);
	assert_true(profile_conn_ready(pc));
}

/*
 * As load_on(), on pc: no event left behind but pc's idle watch, there
 * while it is ready.
 */
static void
load_warm(struct event_base *b, struct profile_conn *pc, const char *url,
    const char *phone, long ms, struct res *r)
{
	int	n0, ready0;

	n0 = event_base_get_num_events(b,
	    EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE);
	ready0 = profile_conn_ready(pc);
	memset(r, 0, sizeof(*r));
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	assert_int_equal(profile_load_on(pc, b, url, phone, ms, res_cb, r),
	    0);
	assert_int_equal(r->n, 0);
	assert_true(wait_n(b, &r->n, 1, ms + 3000));
	event_base_loop(b, EVLOOP_NONBLOCK);
	assert_int_equal(r->n, 1);
	assert_int_equal(event_base_get_num_events(b,
	    EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE),
	    n0 - ready0 + profile_conn_ready(pc));
}

static void
warm_url(char *url, size_t size)
{
	snprintf(url, size, "postgres://postgres@127.0.0.1:%d/warm",
	    srv.port);
}

/*
 * Nothing listens there: a load given it as its fallback URL that
 * succeeds must have used the warm connection.
 */
static void
dead_url(char *url, size_t size)
{
	snprintf(url, size, "postgres://postgres@127.0.0.1:%d/warm",
	    tl_free_port());
}

/*
 * Loads on the warm connection: the row, no new backend (the fallback
 * URL leads nowhere, the one backend keeps its pid), reusable after a
 * person, an unknown phone and an injection-shaped one.
 */
static void
test_warm_load(void **state)
{
	struct event_base	*b;
	struct profile_conn	*pc;
	struct rdy		 rd;
	struct res		 r;
	char			 url[128], dead[128], before[64], after[64];
	int			 i;

	(void)state;
	warm_url(url, sizeof(url));
	dead_url(dead, sizeof(dead));
	wait_backends("warm", "");
	assert_non_null(b = event_base_new());
	pc = warm_open(b, url, 3000, &rd);
	assert_true(rd.ok);
	assert_string_equal(rd.err, "");
	assert_int_equal(naiberd_backends("warm", before, sizeof(before)), 0);
	assert_true(before[0] != '\0' && strchr(before, '\n') == NULL);
	for (i = 0; i < 3; i++) {
		load_warm(b, pc, dead, "+15550000002", 3000, &r);
		if (r.st != PROFILE_OK)
			fail_msg("load %d: status %d (%s)", i, r.st, r.err);
		assert_string_equal(r.p->p_id, "w-1");
		assert_string_equal(r.p->p_name, "Warm");
		assert_true(profile_conn_ready(pc));
		res_done(&r);
	}
	load_warm(b, pc, dead, "+15559999999", 3000, &r);
	assert_int_equal(r.st, PROFILE_UNKNOWN);
	load_warm(b, pc, dead, "+1' OR '1'='1", 3000, &r);
	assert_int_equal(r.st, PROFILE_UNKNOWN);
	assert_true(profile_conn_ready(pc));
	assert_int_equal(naiberd_backends("warm", after, sizeof(after)), 0);
	assert_string_equal(after, before);
	/* A check on a healthy one changes nothing. */
	profile_conn_check(pc);
	assert_true(profile_conn_ready(pc));
	profile_conn_close(pc);
	assert_int_equal(event_base_get_num_events(b,
	    EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE), 0);
	event_base_free(b);
	wait_backends("warm", "");
	assert_int_equal(rd.n, 1);
}

/*
 * Not ready yet, or never (the statement does not prepare in template1,
 * which has no users): each load goes fresh and answers as profile_load.
 */
static void
test_warm_not_ready(void **state)
{
	struct event_base	*b;
	struct profile_conn	*pc;
	struct rdy		 rd;
	struct res		 r;
	char			 url[128], log[4096];
	int			 saved;

	(void)state;
	warm_url(url, sizeof(url));
	assert_non_null(b = event_base_new());
	memset(&rd, 0, sizeof(rd));
	assert_non_null(pc = profile_conn_open(b, url, 3000, rdy_cb, &rd));
	memset(&r, 0, sizeof(r));
	assert_int_equal(profile_load_on(pc, b, url, "+15550000002", 3000,
	    res_cb, &r), 0);
	assert_true(wait_n(b, &r.n, 1, 6000));
	assert_int_equal(r.st, PROFILE_OK);
	assert_string_equal(r.p->p_id, "w-1");
	res_done(&r);
	assert_true(wait_n(b, &rd.n, 1, 3000));
	assert_true(rd.ok);
	profile_conn_close(pc);

	/* No pc at all: profile_load. */
	load_warm(b, NULL, url, "+15550000002", 3000, &r);
	assert_int_equal(r.st, PROFILE_OK);
	res_done(&r);

	snprintf(url, sizeof(url), "postgres://postgres@127.0.0.1:%d/template1",
	    srv.port);
	cap_begin(&saved);
	pc = warm_open(b, url, 3000, &rd);
	load_warm(b, pc, url, "+15550000002", 3000, &r);
	cap_end(saved, log, sizeof(log));
	assert_false(rd.ok);
	assert_string_equal(rd.err, "prepare failed");
	assert_non_null(strstr(log, "cannot prepare"));
	assert_int_equal(r.st, PROFILE_ERROR);
	assert_string_equal(r.err, "query failed");
	assert_non_null(strstr(log, "42P01"));
	profile_conn_close(pc);
	event_base_free(b);
	wait_backends("warm", "");
}

static void
terminate_warm(void)
{
	char	out[32];

	assert_int_equal(psql_db("postgres", "SELECT count("
	    "pg_terminate_backend(pid)) FROM pg_stat_activity WHERE"
	    " datname = 'warm' AND application_name = 'naiberd'", out,
	    sizeof(out)), 0);
	assert_string_equal(out, "1");
	/* Gone: its FATAL and FIN are on our socket. */
	wait_backends("warm", "");
}

/*
 * The server ends the idle session (pg_terminate_backend): a load right
 * after still succeeds on a fresh connection and drops the dead one; a
 * check reconnects; and the loop alone notices the next time.
 */
static void
test_warm_terminated(void **state)
{
	struct event_base	*b;
	struct profile_conn	*pc;
	struct rdy		 rd;
	struct res		 r;
	char			 url[128], dead[128], pid1[64], pid2[64];
	char			 log[4096];
	int			 saved;

	(void)state;
	warm_url(url, sizeof(url));
	dead_url(dead, sizeof(dead));
	assert_non_null(b = event_base_new());
	pc = warm_open(b, url, 3000, &rd);
	assert_true(rd.ok);
	terminate_warm();
	cap_begin(&saved);
	load_warm(b, pc, url, "+15550000002", 3000, &r);
	cap_end(saved, log, sizeof(log));
	if (r.st != PROFILE_OK)
		fail_msg("status %d (%s)", r.st, r.err);
	assert_string_equal(r.p->p_id, "w-1");
	res_done(&r);
	assert_non_null(strstr(log, "warm connection is gone"));
	assert_false(profile_conn_ready(pc));

	profile_conn_check(pc);
	wait_ready(b, pc, 3000);
	load_warm(b, pc, dead, "+15550000002", 3000, &r);
	assert_int_equal(r.st, PROFILE_OK);
	res_done(&r);
	assert_int_equal(naiberd_backends("warm", pid1, sizeof(pid1)), 0);

	/* No check: its idle watch sees the end and reconnects. */
	terminate_warm();
	assert_false(wait_n(b, &rd.n, 2, 300));
	wait_ready(b, pc, 3000);
	assert_int_equal(naiberd_backends("warm", pid2, sizeof(pid2)), 0);
	assert_true(pid2[0] != '\0');
	assert_string_not_equal(pid1, pid2);
	load_warm(b, pc, dead, "+15550000002", 3000, &r);
	assert_int_equal(r.st, PROFILE_OK);
	res_done(&r);
	/* ready_cb was for the first open only. */
	assert_int_equal(rd.n, 1);
	profile_conn_close(pc);
	event_base_free(b);
	wait_backends("warm", "");
}

/*
 * The session ends during the query (it sleeps on "stall"): the load
 * goes on with a fresh connection within its deadline.
 */
static void
test_warm_break_busy(void **state)
{
	struct event_base	*b;
	struct profile_conn	*pc;
	struct timespec		 t;
	struct rdy		 rd;
	struct res		 r;
	char			 url[128], out[32];
	static const char	 q[] = "SELECT count(*) FROM pg_stat_activity"
	    " WHERE application_name = 'naiberd' AND state = 'active'"
	    " AND datname = 'warm'";

	(void)state;
	warm_url(url, sizeof(url));
	assert_int_equal(psql_db("warm", "INSERT INTO stall VALUES (1)",
	    NULL, 0), 0);
	assert_non_null(b = event_base_new());
	pc = warm_open(b, url, 3000, &rd);
	memset(&r, 0, sizeof(r));
	clock_gettime(CLOCK_MONOTONIC, &r.t0);
	assert_int_equal(profile_load_on(pc, b, url, "+15550000002", 5000,
	    res_cb, &r), 0);
	for (;;) {
		assert_false(wait_n(b, &r.n, 1, 100));
		assert_int_equal(psql_db("postgres", q, out, sizeof(out)), 0);
		if (strcmp(out, "1") == 0)
			break;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - r.t0.tv_sec > 3)
			fail_msg("the query never showed up as active");
	}
	assert_int_equal(psql_db("warm", "DELETE FROM stall", NULL, 0), 0);
	terminate_warm();
	assert_true(wait_n(b, &r.n, 1, 6000));
	if (r.st != PROFILE_OK)
		fail_msg("status %d (%s)", r.st, r.err);
	assert_string_equal(r.p->p_id, "w-1");
	assert_true(r.ms < 5000);
	res_done(&r);
	assert_false(profile_conn_ready(pc));
	profile_conn_check(pc);
	wait_ready(b, pc, 3000);
	profile_conn_close(pc);
	event_base_free(b);
	wait_backends("warm", "");
}

/*
 * A peer that accepts and never answers: ready_cb says timeout at the
 * deadline; a load then goes fresh and times out too; a check tries
 * again, silently (ready_cb is told once).
 */
static void
test_warm_silent(void **state)
{
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof(sin);
	struct event_base	*b;
	struct profile_conn	*pc;
	struct timespec		 t0;
	struct rdy		 rd;
	struct res		 r;
	char			 url[128];
	int			 s;

	(void)state;
	assert_true((s = socket(AF_INET, SOCK_STREAM, 0)) != -1);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(s, 16), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &len), 0);
	snprintf(url, sizeof(url), "postgres://postgres@127.0.0.1:%d/postgres",
	    ntohs(sin.sin_port));
	assert_non_null(b = event_base_new());
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pc = warm_open(b, url, 400, &rd);
	within(tl_ms_since(&t0), 400);
	assert_false(rd.ok);
	assert_string_equal(rd.err, "timeout");
	load_warm(b, pc, url, "+15550000001", 400, &r);
	assert_int_equal(r.st, PROFILE_ERROR);
	assert_string_equal(r.err, "timeout");
	within(r.ms, 400);
	profile_conn_check(pc);
	assert_false(profile_conn_ready(pc));
	assert_false(wait_n(b, &rd.n, 2, 800));
	assert_false(profile_conn_ready(pc));
	assert_int_equal(event_base_get_num_events(b,
	    EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE), 0);
	profile_conn_close(pc);
	event_base_free(b);
	close(s);
}

/* Closed while lent: the load finishes, on that connection. */
static void
test_warm_close_busy(void **state)
{
	struct event_base	*b;
	struct profile_conn	*pc;
	struct rdy		 rd;
	struct res		 r;
	char			 url[128], dead[128];

	(void)state;
	warm_url(url, sizeof(url));
	dead_url(dead, sizeof(dead));
	assert_non_null(b = event_base_new());
	pc = warm_open(b, url, 3000, &rd);
	memset(&r, 0, sizeof(r));
	assert_int_equal(profile_load_on(pc, b, dead, "+15550000002", 3000,
	    res_cb, &r), 0);
	profile_conn_close(pc);
	assert_true(wait_n(b, &r.n, 1, 6000));
	event_base_loop(b, EVLOOP_NONBLOCK);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.st, PROFILE_OK);
	res_done(&r);
	assert_int_equal(event_base_get_num_events(b,
	    EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE), 0);
	event_base_free(b);
	wait_backends("warm", "");
}

static void
test_warm_bad_args(void **state)
{
	struct event_base	*b, *b2;
	struct profile_conn	*pc;
	struct rdy		 rd;
	struct res		 r;
	char			 url[128], log[4096];
	int			 saved;

	(void)state;
	warm_url(url, sizeof(url));
	memset(&rd, 0, sizeof(rd));
	memset(&r, 0, sizeof(r));
	assert_non_null(b = event_base_new());
	assert_non_null(b2 = event_base_new());
	cap_begin(&saved);
	assert_null(profile_conn_open(NULL, url, 100, rdy_cb, &rd));
	assert_null(profile_conn_open(b, NULL, 100, rdy_cb, &rd));
	assert_null(profile_conn_open(b, url, 0, rdy_cb, &rd));
	assert_null(profile_conn_open(b, url, 100, NULL, &rd));
	assert_null(profile_conn_open(b, "postgres://u:S3cr%zzEt@h/db", 100,
	    rdy_cb, &rd));
	cap_end(saved, log, sizeof(log));
	assert_null(strstr(log, "S3cr"));
	assert_non_null(strstr(log, "DATABASE_URL"));
	assert_false(profile_conn_ready(NULL));
	profile_conn_check(NULL);
	profile_conn_close(NULL);
	/* Another base than its own. */
	pc = warm_open(b, url, 3000, &rd);
	assert_int_equal(profile_load_on(pc, b2, url, "+1", 100, res_cb, &r),
	    -1);
	assert_int_equal(profile_load_on(pc, b, url, "", 100, res_cb, &r),
	    -1);
	assert_true(profile_conn_ready(pc));
	profile_conn_close(pc);
	event_base_loop(b, EVLOOP_NONBLOCK);
	assert_int_equal(r.n, 0);
	assert_int_equal(rd.n, 1);
	assert_int_equal(event_base_get_num_events(b,
	    EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE), 0);
	event_base_free(b2);
	event_base_free(b);
	wait_backends("warm", "");
}

/* Occurrences of needle in hay. */
static int
count_of(const char *hay, const char *needle)
{
	int	n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay++;
	}
	return n;
}

#define NPGB	4

/*
 * The first load on pc while another client's transaction holds the
 * backend that every warm connection prepared on (the pool's only one):
 * the Execute lands on a new backend, which says 26000.
 */
static void
pgb_lost_statement(struct event_base *b, struct profile_conn *pc,
    const char *url, const char *dead)
{
	struct res	 r;
	PGconn		*hold;
	PGresult	*res;

	hold = PQconnectdb(url);
	assert_int_equal(PQstatus(hold), CONNECTION_OK);
	PQclear(PQexec(hold, "BEGIN"));
	res = PQexec(hold, "SELECT 1");
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);
	load_warm(b, pc, dead, "+15550000002", 3000, &r);
	PQclear(PQexec(hold, "COMMIT"));
	PQfinish(hold);
	if (r.st != PROFILE_OK)
		fail_msg("status %d (%s)", r.st, r.err);
	assert_string_equal(r.p->p_id, "u-ret");
	res_done(&r);
}

/* Concurrent loads on every pc, rounds times: each its own row. */
static void
pgb_rounds(struct event_base *b, struct profile_conn **pc,
    const char *dead, int rounds)
{
	struct res	r[NPGB];
	int		i, round;

	for (round = 0; round < rounds; round++) {
		cb_total = 0;
		for (i = 0; i < NPGB; i++) {
			memset(&r[i], 0, sizeof(r[i]));
			assert_int_equal(profile_load_on(pc[i], b, dead,
			    i == 1 ? "+15550000001" : "+15550000002", 3000,
			    res_cb, &r[i]), 0);
		}
		assert_true(wait_n(b, &cb_total, NPGB, 6000));
		for (i = 0; i < NPGB; i++) {
			if (r[i].st != PROFILE_OK)
				fail_msg("round %d, %d: status %d (%s)", round,
				    i, r[i].st, r[i].err);
			assert_string_equal(r[i].p->p_id, i == 1 ? "u-first" :
			    "u-ret");
			assert_true(profile_conn_ready(pc[i]));
			res_done(&r[i]);
		}
	}
}

/*
 * pgbouncer 1.18, transaction mode: each transaction runs on any of its
 * server connections.  Warm connections 2..4 prepare on the backend the
 * first did (42P05: fine); a load that lands elsewhere gets 26000 and is
 * redone unnamed, once, logged once; from then on every load, concurrent
 * ones on several warm connections spread over the backends, succeeds
 * without a fallback, and a new warm connection skips the prepare.
 * Last in the list: pl_unnamed stays set for the process.
 */
static void
test_pgbouncer(void **state)
{
	struct event_base	*b;
	struct profile_conn	*pc[NPGB];
	struct rdy		 rd[NPGB];
	struct res		 r;
	char			 url[128], dead[128], port[16], log[8192];
	char			 pids[256];
	int			 i, saved, pgb;

	(void)state;
	/* An argument: pg.sh sourced with none shows its usage. */
	if (sh_run(NULL, 0, ". \"$0\" && pgb_bin >/dev/null 2>&1", srv.dir,
	    NULL) != 0) {
		fprintf(stderr, "# no pgbouncer (apt-get install pgbouncer):"
		    " skipped\n");
		skip();
	}
	pgb = tl_free_port();
	snprintf(port, sizeof(port), "%d", pgb);
	assert_int_equal(sh_run(NULL, 0, ". \"$0\" && pgb_start \"$1\" \"$2\""
	    " \"$3\"", srv.dir, port, srv.portstr, NULL), 0);
	snprintf(url, sizeof(url), "postgres://postgres@127.0.0.1:%d/postgres",
	    pgb);
	dead_url(dead, sizeof(dead));
	assert_non_null(b = event_base_new());

	cap_begin(&saved);
	/* A plain load: our startup options are ignored, not refused. */
	load_warm(b, NULL, url, "+15550000002", 3000, &r);
	assert_int_equal(r.st, PROFILE_OK);
	res_done(&r);
	for (i = 0; i < NPGB; i++) {
		pc[i] = warm_open(b, url, 3000, &rd[i]);
		assert_true(rd[i].ok);
	}
	pgb_lost_statement(b, pc[0], url, dead);
	pgb_rounds(b, pc, dead, 3);
	profile_conn_close(pc[0]);
	pc[0] = warm_open(b, url, 3000, &rd[0]);
	pgb_rounds(b, pc, dead, 1);
	cap_end(saved, log, sizeof(log));
	assert_int_equal(count_of(log, "does not keep prepared statements"),
	    1);
	assert_int_equal(count_of(log, "warm connection failed"), 0);
	assert_int_equal(count_of(log, "warm connection is gone"), 0);
	assert_int_equal(count_of(log, " warn: "), 0);
	/* pgbouncer's server connections: the loads used several. */
	assert_int_equal(naiberd_backends("postgres", pids, sizeof(pids)), 0);
	if (count_of(pids, "\n") < 1)
		fail_msg("one backend behind pgbouncer: %s", pids);
	for (i = 0; i < NPGB; i++)
		profile_conn_close(pc[i]);
	event_base_free(b);
	assert_int_equal(sh_run(NULL, 0, ". \"$0\" && pgb_stop \"$1\"",
	    srv.dir, NULL), 0);
}

int
main(void)
{
	const struct CMUnitTest live[] = {
		cmocka_unit_test(test_first_time),
		cmocka_unit_test(test_returning),
		cmocka_unit_test(test_nulls),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_unknown),
		cmocka_unit_test(test_injection),
		cmocka_unit_test(test_prisma_url),
		cmocka_unit_test(test_url_params),
		cmocka_unit_test(test_query_error),
		cmocka_unit_test(test_bad_row),
		cmocka_unit_test(test_ambiguous),
		cmocka_unit_test(test_failover),
		cmocka_unit_test(test_parallel),
		cmocka_unit_test(test_wrong_port),
		cmocka_unit_test(test_unix_refused),
		cmocka_unit_test(test_silent_peer),
		cmocka_unit_test(test_slow_query),
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_no_password_logged),
		cmocka_unit_test(test_warm_load),
		cmocka_unit_test(test_warm_not_ready),
		cmocka_unit_test(test_warm_terminated),
		cmocka_unit_test(test_warm_break_busy),
		cmocka_unit_test(test_warm_silent),
		cmocka_unit_test(test_warm_close_busy),
		cmocka_unit_test(test_warm_bad_args),
		/* Last: it leaves the process on unnamed statements. */
		cmocka_unit_test(test_pgbouncer),
	};

	signal(SIGPIPE, SIG_IGN);
	log_init(LF_TEXT, LT_STDERR, LL_INFO);
	return cmocka_run_group_tests_name("profile", live, grp_setup,
	    grp_teardown);
}
