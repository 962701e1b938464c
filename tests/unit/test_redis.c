/*
 * test_redis.c - unit tests for common/redis.c: the REDIS_URL parser
 * (every accepted form, rejects, field bounds) and the key builders of
 * DESIGN §4; then, against a real redis-server this file starts on a
 * free loopback port in a temporary directory (killed at the end, and
 * by PR_SET_PDEATHSIG if the test dies): AUTH and SELECT, a wrong
 * password, refused connections, per-command timeouts with DEBUG SLEEP,
 * three timeouts in a row, the server killed and restarted, and
 * rds_free() with commands pending and from inside callbacks.
 * Every wait runs the event loop under a deadline timer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "testlib.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "redis.h"

#define SRV_PW		"t3st-Pw_0"
#define WRONG_PW	"wrong-Pa55word-xyz"

struct res {
	int	n;			/* callbacks so far */
	int	has_reply;
	int	type;
	char	str[64];
	char	err[32];
	long	ms;			/* since t0 */
	struct timespec	t0;
	struct rds	*free_me;	/* rds_free() this from the callback */
};

struct st {
	int		 ups;
	int		 downs;
	struct rds	*free_on_up;
};

static struct {
	pid_t	pid;
	int	port;
	char	dir[64];
} srv = { -1, 0, "" };

static int	srv_start(void);
static void	srv_kill(void);
static int	srv_ping(void);
static redisContext *sync_connect(void);
static int	sync_get(int, const char *, char *, size_t);
static int	grp_setup(void **);
static int	grp_teardown(void **);
static void	run_for(struct event_base *, long);
static void	res_cb(const redisReply *, const char *, void *);
static void	res_arm(struct res *);
static void	state_cb(int, void *);
static struct rds *live_new(struct event_base *, const char *, long,
		    struct st *);
static void	cap_begin(int *);
static void	cap_end(int, char *, size_t);
static int	count(const char *, const char *);
static void	test_url_forms(void **);
static void	test_url_bounds(void **);
static void	test_url_rejects(void **);
static void	test_keys_good(void **);
static void	test_keys_bad(void **);
static void	test_keys_small_buffer(void **);
static void	test_new_invalid(void **);
static void	test_live_setget(void **);
static void	test_live_user(void **);
static void	test_live_wrong_password(void **);
static void	test_live_refused(void **);
static void	test_live_timeout(void **);
static void	test_live_timeouts_reconnect(void **);
static void	test_live_free_pending(void **);
static void	test_live_free_in_callback(void **);
static void	test_live_kill_restart(void **);

static const struct {
	const char	*url;
	const char	*host;
	int		 port;
	const char	*user;
	const char	*password;
	int		 db;
	int		 tls;
	int		 family;
	const char	*ignored;
} good_urls[] = {
	{ "redis://", "localhost", 6379, "", "", 0, 0, 0, "" },
	{ "redis://localhost:6379", "localhost", 6379, "", "", 0, 0, 0, "" },
	{ "redis://example.com", "example.com", 6379, "", "", 0, 0, 0, "" },
	{ "REDIS://Cache-1.internal", "Cache-1.internal", 6379, "", "", 0, 0, 0, "" },
	{ "redis://my_host.x:6380/2", "my_host.x", 6380, "", "", 2, 0, 0, "" },
	{ "redis://127.0.0.1:1/15", "127.0.0.1", 1, "", "", 15, 0, 0, "" },
	{ "redis://h:65535/", "h", 65535, "", "", 0, 0, 0, "" },
	{ "redis://h/1000000", "h", 6379, "", "", 1000000, 0, 0, "" },
	{ "redis://h/007", "h", 6379, "", "", 7, 0, 0, "" },
	{ "redis://:6380", "localhost", 6380, "", "", 0, 0, 0, "" },
	{ "redis:///5", "localhost", 6379, "", "", 5, 0, 0, "" },
	{ "redis://:secret@host", "host", 6379, "", "secret", 0, 0, 0, "" },
	{ "redis://:secret@host:7000/3", "host", 7000, "", "secret", 3, 0, 0, "" },
	{ "redis://user:secret@h/1", "h", 6379, "user", "secret", 1, 0, 0, "" },
	{ "redis://default:pw@h:6379", "h", 6379, "default", "pw", 0, 0, 0, "" },
	{ "redis://:@h", "h", 6379, "", "", 0, 0, 0, "" },
	{ "redis://u:@h", "h", 6379, "u", "", 0, 0, 0, "" },
	{ "redis://us%65r:p%40ss%2Fw%3a%25@h", "h", 6379, "user",
	    "p@ss/w:%", 0, 0, 0, "" },
	{ "redis://:%E2%82%AC@h", "h", 6379, "", "\xe2\x82\xac", 0, 0, 0, "" },
	{ "redis://u:p@ss@h", "h", 6379, "u", "p@ss", 0, 0, 0, "" },
	{ "redis://:a:b@h", "h", 6379, "", "a:b", 0, 0, 0, "" },
	{ "redis://[::1]", "::1", 6379, "", "", 0, 0, 0, "" },
	{ "redis://[::1]:6390/4", "::1", 6390, "", "", 4, 0, 0, "" },
	{ "redis://:pw@[2001:db8::7]/0", "2001:db8::7", 6379, "", "pw", 0, 0, 0, "" },
	{ "redis://[::ffff:127.0.0.1]:7", "::ffff:127.0.0.1", 7, "", "", 0, 0, 0, "" },
	/* TLS, and what ioredis takes from the URL. */
	{ "rediss://h", "h", 6379, "", "", 0, 1, 0, "" },
	{ "REDISS://h", "h", 6379, "", "", 0, 1, 0, "" },
	{ "rediss://:pw@h:6380/1", "h", 6380, "", "pw", 1, 1, 0, "" },
	{ "rediss://app:s3cret@cache.example:6380/2?family=6", "cache.example",
	    6380, "app", "s3cret", 2, 1, 6, "" },
	{ "redis://user@h", "h", 6379, "user", "", 0, 0, 0, "" },
	{ "redis://@h", "h", 6379, "", "", 0, 0, 0, "" },
	{ "redis://pw@h:1/2", "h", 1, "pw", "", 2, 0, 0, "" },
	{ "redis://h?db=1", "h", 6379, "", "", 1, 0, 0, "" },
	{ "redis://h/3?db=1", "h", 6379, "", "", 3, 0, 0, "" },
	{ "redis://h?family=4&connectTimeout=2500", "h", 6379, "", "", 0, 0,
	    4, "" },
	{ "redis://h?password=p%40ss&username=u", "h", 6379, "u", "p@ss", 0,
	    0, 0, "" },
	{ "redis://a:b@h?password=x&username=y", "h", 6379, "a", "b", 0, 0,
	    0, "" },
	{ "redis://h?maxRetriesPerRequest=3&lazyConnect=1", "h", 6379, "",
	    "", 0, 0, 0, "maxRetriesPerRequest" },
	{ "redis://h?&family=0&", "h", 6379, "", "", 0, 0, 0, "" },
};

static const char *const bad_urls[] = {
	"", "localhost", "redis:", "redis:/h", "redis//h", "http://h",
	"unix:///tmp/redis.sock", "rediss:/h", "redis+tls://h",
	"redis://h:0", "redis://h:65536", "redis://h:", "redis://h:abc",
	"redis://h:-1", "redis://h:+1", "redis://h:12345678", "redis://h:1:2",
	"redis://h/-1", "redis://h/+1", "redis://h/1000001", "redis://h/x",
	"redis://h/1/", "redis://h/1/2", "redis://h/99999999",
	"redis://h#x", "redis://h/1?x", "redis://h?family=5",
	"redis://h?db=x", "redis://h?db=1000001", "redis://h?connectTimeout=0",
	"redis://h?connectTimeout=600001", "redis://h?%66amily=4",
	"redis://h?x-y=1", "redis://h?password=%00",
	"redis://::1", "redis://[::1", "redis://[::1]x", "redis://[::1]:",
	"redis://[]", "redis://[zz::1]", "redis://[127.0.0.1]",
	"redis://[::1%25eth0]", "redis://::1]",
	"redis://h h", "redis://h\n", "redis://h\t/1", " redis://h",
	"redis://:p w@h", "redis://ho$t", "redis://ho%74", "redis://-h",
	"redis://.h", "redis://h,i", "redis://h\\i", "redis://h\x7f",
	"redis://:p%zz@h", "redis://:p%4@h", "redis://:p%@h",
	"redis://:p%00@h", "redis://u%0:p@h", "redis://%00:p@h",
};

/* --- helpers -------------------------------------------------------- */

/* Starts redis-server on srv.port and waits (5 s at most) for PONG. */
static int
srv_start(void)
{
	char	port[16];
	pid_t	parent = getpid();
	int	fd, i;

	snprintf(port, sizeof(port), "%d", srv.port);
	if ((srv.pid = fork()) == -1)
		return -1;
	if (srv.pid == 0) {
		/* Dies with the test, even when the test crashes. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		if ((fd = open("/dev/null", O_RDWR)) != -1) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("redis-server", "redis-server", "--port", port,
		    "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		    "--dir", srv.dir, "--requirepass", SRV_PW,
		    "--enable-debug-command", "yes", "--logfile", "",
		    (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 100; i++) {
		if (srv_ping() == 0)
			return 0;
		usleep(50 * 1000);
	}
	srv_kill();
	return -1;
}

static void
srv_kill(void)
{
	if (srv.pid > 0) {
		kill(srv.pid, SIGKILL);
		while (waitpid(srv.pid, NULL, 0) == -1 && errno == EINTR)
			;
	}
	srv.pid = -1;
}

static int
srv_ping(void)
{
	redisContext	*c;
	redisReply	*rep;
	int		 rc = -1;

	if ((c = sync_connect()) == NULL)
		return -1;
	rep = redisCommand(c, "PING");
	if (rep != NULL && rep->type == REDIS_REPLY_STATUS &&
	    strcmp(rep->str, "PONG") == 0)
		rc = 0;
	if (rep != NULL)
		freeReplyObject(rep);
	redisFree(c);
	return rc;
}

/* A plain blocking client, authenticated, 5 s socket timeouts. */
static redisContext *
sync_connect(void)
{
	struct timeval	 tv = { 1, 0 }, tv5 = { 5, 0 };
	redisContext	*c;
	redisReply	*rep;

	c = redisConnectWithTimeout("127.0.0.1", srv.port, tv);
	if (c == NULL || c->err) {
		if (c != NULL)
			redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv5);
	rep = redisCommand(c, "AUTH %s", SRV_PW);
	if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
		if (rep != NULL)
			freeReplyObject(rep);
		redisFree(c);
		return NULL;
	}
	freeReplyObject(rep);
	return c;
}

/* GET key in db: 1 and the value, 0 if nil, -1 on error. */
static int
sync_get(int db, const char *key, char *out, size_t outsz)
{
	redisContext	*c;
	redisReply	*rep;
	int		 rc = -1;

	if ((c = sync_connect()) == NULL)
		return -1;
	rep = redisCommand(c, "SELECT %d", db);
	if (rep != NULL)
		freeReplyObject(rep);
	rep = redisCommand(c, "GET %s", key);
	if (rep != NULL && rep->type == REDIS_REPLY_NIL)
		rc = 0;
	else if (rep != NULL && rep->type == REDIS_REPLY_STRING) {
		snprintf(out, outsz, "%s", rep->str);
		rc = 1;
	}
	if (rep != NULL)
		freeReplyObject(rep);
	redisFree(c);
	return rc;
}

static int
grp_setup(void **state)
{
	(void)state;
	snprintf(srv.dir, sizeof(srv.dir), "/tmp/test_redis.XXXXXX");
	if (mkdtemp(srv.dir) == NULL)
		return -1;
	if ((srv.port = tl_free_port()) == -1)
		return -1;
	return srv_start();
}

static int
grp_teardown(void **state)
{
	char	path[128];

	(void)state;
	srv_kill();
	snprintf(path, sizeof(path), "%s/dump.rdb", srv.dir);
	unlink(path);
	rmdir(srv.dir);
	return 0;
}

static void
run_for(struct event_base *b, long ms)
{
	int	never = 0;

	(void)tl_wait_until(b, &never, 1, ms);
}

static void
res_cb(const redisReply *rep, const char *err, void *arg)
{
	struct res	*r = arg;

	r->n++;
	r->ms = tl_ms_since(&r->t0);
	r->has_reply = rep != NULL;
	r->type = rep != NULL ? rep->type : -1;
	r->str[0] = '\0';
	if (rep != NULL && rep->str != NULL)
		snprintf(r->str, sizeof(r->str), "%.*s", (int)rep->len,
		    rep->str);
	snprintf(r->err, sizeof(r->err), "%s", err != NULL ? err : "");
	if (r->free_me != NULL)
		rds_free(r->free_me);
}

static void
res_arm(struct res *r)
{
	memset(r, 0, sizeof(*r));
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
}

static void
state_cb(int up, void *arg)
{
	struct st	*s = arg;

	if (up)
		s->ups++;
	else
		s->downs++;
	if (up && s->free_on_up != NULL)
		rds_free(s->free_on_up);
}

static struct rds *
live_new(struct event_base *b, const char *fmt, long timeout_ms,
    struct st *s)
{
	char		 url[256];
	struct rds	*r;

	snprintf(url, sizeof(url), fmt, srv.port);
	r = rds_new(b, url, timeout_ms);
	assert_non_null(r);
	memset(s, 0, sizeof(*s));
	rds_on_state(r, state_cb, s);
	return r;
}

/* Sends stderr (the log) to a file until cap_end(). */
static void
cap_begin(int *saved)
{
	char	path[128];
	int	fd;

	snprintf(path, sizeof(path), "%s/log.txt", srv.dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd != -1);
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

	dup2(saved, STDERR_FILENO);
	close(saved);
	snprintf(path, sizeof(path), "%s/log.txt", srv.dir);
	fd = open(path, O_RDONLY);
	assert_true(fd != -1);
	n = read(fd, buf, size - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
}

static int
count(const char *hay, const char *needle)
{
	int	n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

/* --- URL parser ----------------------------------------------------- */

static void
test_url_forms(void **state)
{
	struct rds_url	u;
	size_t		i;

	(void)state;
	for (i = 0; i < sizeof(good_urls) / sizeof(good_urls[0]); i++) {
		memset(&u, 0xa5, sizeof(u));
		if (rds_url_parse(good_urls[i].url, &u) != 0)
			fail_msg("rejected: %s", good_urls[i].url);
		assert_string_equal(u.ru_host, good_urls[i].host);
		assert_int_equal(u.ru_port, good_urls[i].port);
		assert_string_equal(u.ru_user, good_urls[i].user);
		assert_string_equal(u.ru_password, good_urls[i].password);
		assert_int_equal(u.ru_db, good_urls[i].db);
		assert_int_equal(u.ru_tls, good_urls[i].tls);
		assert_int_equal(u.ru_family, good_urls[i].family);
		assert_string_equal(u.ru_ignored, good_urls[i].ignored ?
		    good_urls[i].ignored : "");
	}
}

/* Longest fields accepted, one byte more rejected. */
static void
test_url_bounds(void **state)
{
	static char	url[4096], f[1024];
	struct rds_url	u;

	(void)state;
	memset(f, 'h', 255);
	f[255] = '\0';
	snprintf(url, sizeof(url), "redis://%s:1/2", f);
	assert_int_equal(rds_url_parse(url, &u), 0);
	assert_int_equal(strlen(u.ru_host), 255);
	snprintf(url, sizeof(url), "redis://%sh:1/2", f);
	assert_int_equal(rds_url_parse(url, &u), -1);

	memset(f, 'u', 127);
	f[127] = '\0';
	snprintf(url, sizeof(url), "redis://%s:p@h", f);
	assert_int_equal(rds_url_parse(url, &u), 0);
	assert_int_equal(strlen(u.ru_user), 127);
	snprintf(url, sizeof(url), "redis://%su:p@h", f);
	assert_int_equal(rds_url_parse(url, &u), -1);

	/* 255 decoded bytes written as 765 escaped ones. */
	for (f[0] = '\0'; strlen(f) < 765; )
		strcat(f, "%41");
	snprintf(url, sizeof(url), "redis://:%s@h", f);
	assert_int_equal(rds_url_parse(url, &u), 0);
	assert_int_equal(strlen(u.ru_password), 255);
	snprintf(url, sizeof(url), "redis://:%sA@h", f);
	assert_int_equal(rds_url_parse(url, &u), -1);

	/* The whole URL: at most 2048 bytes. */
	memset(url, '0', sizeof(url));
	memcpy(url, "redis://h/", 10);
	url[2048] = '\0';
	assert_int_equal(rds_url_parse(url, &u), -1);
	assert_int_equal(rds_url_parse(NULL, &u), -1);
	assert_int_equal(rds_url_parse("redis://h", NULL), -1);
}

static void
test_url_rejects(void **state)
{
	struct rds_url	u, zero;
	size_t		i;

	(void)state;
	memset(&zero, 0, sizeof(zero));
	for (i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
		memset(&u, 0xa5, sizeof(u));
		if (rds_url_parse(bad_urls[i], &u) != -1)
			fail_msg("accepted: \"%s\"", bad_urls[i]);
		/* Nothing half-parsed, no password left behind. */
		assert_memory_equal(&u, &zero, sizeof(u));
	}
}

/* --- key builders --------------------------------------------------- */

static void
test_keys_good(void **state)
{
	char	k[300], id[129];

	(void)state;
	assert_int_equal(key_call_type(k, sizeof(k), "CA0123abcdef"), 0);
	assert_string_equal(k, "call_type:CA0123abcdef");
	assert_int_equal(key_call(k, sizeof(k), "CA0123abcdef"), 0);
	assert_string_equal(k, "call:CA0123abcdef");
	assert_int_equal(key_session(k, sizeof(k), "conv_01.x-y:z"), 0);
	assert_string_equal(k, "session:conv_01.x-y:z");
	assert_int_equal(key_rag_user(k, sizeof(k), "user-42"), 0);
	assert_string_equal(k, "rag:user:user-42");
	assert_int_equal(key_rag_phone(k, sizeof(k), "+447700900123"), 0);
	assert_string_equal(k, "rag:phone:+447700900123");
	memset(id, 'a', 128);
	id[128] = '\0';
	assert_int_equal(key_session(k, sizeof(k), id), 0);
	assert_int_equal(strlen(k), strlen("session:") + 128);
}

static void
test_keys_bad(void **state)
{
	static const char *const bad[] = {
		"", "a b", "a{b", "a}b", "{x}", "a\nb", "a*", "*", "a?b",
		"a/b", "a\"b", "a\\b", "a\rb", "a\tb", "a%b", "a@b", "a,b",
		"caf\xc3\xa9", "a\x7f", "a[b]",
	};
	char	k[300], id[130];
	size_t	i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		strcpy(k, "junk");
		assert_int_equal(key_call_type(k, sizeof(k), bad[i]), -1);
		assert_string_equal(k, "");
		assert_int_equal(key_call(k, sizeof(k), bad[i]), -1);
		assert_int_equal(key_session(k, sizeof(k), bad[i]), -1);
		assert_int_equal(key_rag_user(k, sizeof(k), bad[i]), -1);
		assert_int_equal(key_rag_phone(k, sizeof(k), bad[i]), -1);
	}
	memset(id, 'a', 129);
	id[129] = '\0';
	assert_int_equal(key_call(k, sizeof(k), id), -1);
	assert_string_equal(k, "");
	assert_int_equal(key_rag_phone(k, sizeof(k), NULL), -1);
	assert_int_equal(key_call(NULL, 10, "CA1"), -1);
}

static void
test_keys_small_buffer(void **state)
{
	char	k[16];

	(void)state;
	/* "call:CA123" and its NUL: 11 bytes. */
	assert_int_equal(key_call(k, 11, "CA123"), 0);
	assert_string_equal(k, "call:CA123");
	strcpy(k, "junk");
	assert_int_equal(key_call(k, 10, "CA123"), -1);
	assert_string_equal(k, "");
	assert_int_equal(key_call(k, 0, "CA123"), -1);
	assert_int_equal(key_rag_user(k, sizeof(k), "0123456789"), -1);
}

static void
test_new_invalid(void **state)
{
	struct event_base	*b = event_base_new();

	(void)state;
	assert_non_null(b);
	assert_null(rds_new(b, "rediss://:pw@127.0.0.1:6380#x", 1000));
	assert_null(rds_new(b, "redis://h:99999", 1000));
	assert_null(rds_new(b, "redis://127.0.0.1", 0));
	assert_null(rds_new(NULL, "redis://127.0.0.1", 1000));
	assert_null(rds_new(b, NULL, 1000));
	assert_int_equal(rds_connected(NULL), 0);
	rds_free(NULL);
	event_base_free(b);
}

/* --- against a real redis-server ------------------------------------ */

static void
test_live_setget(void **state)
{
	struct event_base	*b = event_base_new();
	const char		*argv[3] = { "GET", "naiber:t1", NULL };
	struct res		 a, g;
	struct st		 s;
	struct rds		*r;
	char			 v[64];

	(void)state;
	r = live_new(b, "redis://:" SRV_PW "@127.0.0.1:%d/3", 1000, &s);
	/* Not connected yet: refused at once, no callback, ever. */
	res_arm(&a);
	assert_int_equal(rds_connected(r), 0);
	assert_int_equal(rds_cmdf(r, res_cb, &a, "PING"), -1);
	assert_int_equal(rds_cmd(r, res_cb, &a, 2, argv, NULL), -1);
	assert_true(tl_wait_until(b, &s.ups, 1, 3000));
	assert_int_equal(rds_connected(r), 1);
	assert_int_equal(a.n, 0);

	res_arm(&a);
	assert_int_equal(rds_cmdf(r, res_cb, &a, "SET %s %s EX 60",
	    "naiber:t1", "{\"a\": 1}"), 0);
	assert_true(tl_wait_until(b, &a.n, 1, 2000));
	assert_int_equal(a.type, REDIS_REPLY_STATUS);
	assert_string_equal(a.str, "OK");
	res_arm(&g);
	assert_int_equal(rds_cmd(r, res_cb, &g, 2, argv, NULL), 0);
	assert_true(tl_wait_until(b, &g.n, 1, 2000));
	assert_int_equal(g.type, REDIS_REPLY_STRING);
	assert_string_equal(g.str, "{\"a\": 1}");
	assert_string_equal(g.err, "");

	/* In db 3, not in db 0, says another client. */
	assert_int_equal(sync_get(3, "naiber:t1", v, sizeof(v)), 1);
	assert_string_equal(v, "{\"a\": 1}");
	assert_int_equal(sync_get(0, "naiber:t1", v, sizeof(v)), 0);

	/* An error reply is a reply; SELECT is refused. */
	res_arm(&a);
	assert_int_equal(rds_cmdf(r, res_cb, &a, "INCR naiber:t1"), 0);
	assert_true(tl_wait_until(b, &a.n, 1, 2000));
	assert_int_equal(a.type, REDIS_REPLY_ERROR);
	assert_int_equal(rds_cmdf(r, res_cb, &a, "SELECT 0"), -1);
	assert_int_equal(rds_cmdf(r, res_cb, &a, " subscribe x"), -1);
	run_for(b, 50);
	assert_int_equal(a.n, 1);
	assert_int_equal(s.ups, 1);
	assert_int_equal(s.downs, 0);
	rds_free(r);
	event_base_free(b);
}

static void
test_live_user(void **state)
{
	struct event_base	*b = event_base_new();
	struct res		 a;
	struct st		 s;
	struct rds		*r;

	(void)state;
	r = live_new(b, "redis://default:" SRV_PW "@127.0.0.1:%d", 1000, &s);
	assert_true(tl_wait_until(b, &s.ups, 1, 3000));
	res_arm(&a);
	assert_int_equal(rds_cmdf(r, res_cb, &a, "PING"), 0);
	assert_true(tl_wait_until(b, &a.n, 1, 2000));
	assert_string_equal(a.str, "PONG");
	rds_free(r);
	event_base_free(b);
}

static void
test_live_wrong_password(void **state)
{
	static char		 log[65536];
	struct event_base	*b = event_base_new();
	struct res		 a;
	struct st		 s;
	struct rds		*r;
	int			 saved;

	(void)state;
	cap_begin(&saved);
	r = live_new(b, "redis://:" WRONG_PW "@127.0.0.1:%d/3", 1000, &s);
	/* Attempts at about 0, 100, 300, 700 and 1500 ms. */
	run_for(b, 1700);
	res_arm(&a);
	assert_int_equal(rds_cmdf(r, res_cb, &a, "PING"), -1);
	assert_int_equal(rds_connected(r), 0);
	rds_free(r);
	event_base_free(b);
	cap_end(saved, log, sizeof(log));
	assert_int_equal(s.ups, 0);
	assert_int_equal(s.downs, 0);
	assert_int_equal(a.n, 0);
	/* Logged once, as an error, not once per attempt; no password. */
	assert_int_equal(count(log, "WRONGPASS"), 1);
	assert_int_equal(count(log, "error: redis 127.0.0.1:"), 1);
	assert_int_equal(count(log, WRONG_PW), 0);
	assert_int_equal(count(log, "connected"), 0);
}

static void
test_live_refused(void **state)
{
	static char		 log[65536];
	struct event_base	*b = event_base_new();
	struct st		 s;
	struct rds		*r;
	int			 saved, port;

	(void)state;
	/* Nothing listens there: refused at every attempt. */
	port = srv.port;
	assert_true((srv.port = tl_free_port()) > 0);
	cap_begin(&saved);
	r = live_new(b, "redis://127.0.0.1:%d/1", 200, &s);
	srv.port = port;
	run_for(b, 800);
	assert_int_equal(rds_connected(r), 0);
	rds_free(r);
	event_base_free(b);
	cap_end(saved, log, sizeof(log));
	assert_int_equal(s.ups + s.downs, 0);
	assert_int_equal(count(log, "Connection refused"), 1);
}

static void
test_live_timeout(void **state)
{
	struct event_base	*b = event_base_new();
	redisContext		*c;
	redisReply		*rep;
	struct res		 a;
	struct st		 s;
	struct rds		*r;
	int			 done = 0;

	(void)state;
	r = live_new(b, "redis://:" SRV_PW "@127.0.0.1:%d", 200, &s);
	assert_true(tl_wait_until(b, &s.ups, 1, 3000));
	assert_non_null(c = sync_connect());
	redisAppendCommand(c, "DEBUG SLEEP 2");
	while (!done)
		assert_int_equal(redisBufferWrite(c, &done), REDIS_OK);
	run_for(b, 100);

	res_arm(&a);
	assert_int_equal(rds_cmdf(r, res_cb, &a, "GET naiber:t2"), 0);
	assert_true(tl_wait_until(b, &a.n, 1, 1000));
	assert_int_equal(a.has_reply, 0);
	assert_string_equal(a.err, "timeout");
	assert_true(a.ms >= 190 && a.ms < 600);
	/* One timeout is not a dead connection; the late reply is dropped. */
	run_for(b, 2200);
	assert_int_equal(a.n, 1);
	assert_int_equal(rds_connected(r), 1);
	assert_int_equal(s.downs, 0);
	res_arm(&a);
	assert_int_equal(rds_cmdf(r, res_cb, &a, "PING"), 0);
	assert_true(tl_wait_until(b, &a.n, 1, 1000));
	assert_string_equal(a.str, "PONG");

	assert_int_equal(redisGetReply(c, (void **)&rep), REDIS_OK);
	assert_int_equal(rep->type, REDIS_REPLY_STATUS);
	freeReplyObject(rep);
	redisFree(c);
	rds_free(r);
	event_base_free(b);
}

static void
test_live_timeouts_reconnect(void **state)
{
	struct event_base	*b = event_base_new();
	redisContext		*c;
	redisReply		*rep;
	struct res		 a[3];
	struct st		 s;
	struct rds		*r;
	int			 i, done = 0;

	(void)state;
	r = live_new(b, "redis://:" SRV_PW "@127.0.0.1:%d/2", 200, &s);
	assert_true(tl_wait_until(b, &s.ups, 1, 3000));
	assert_non_null(c = sync_connect());
	redisAppendCommand(c, "DEBUG SLEEP 2");
	while (!done)
		assert_int_equal(redisBufferWrite(c, &done), REDIS_OK);
	run_for(b, 100);

	for (i = 0; i < 3; i++) {
		res_arm(&a[i]);
		assert_int_equal(rds_cmdf(r, res_cb, &a[i], "PING"), 0);
	}
	assert_true(tl_wait_until(b, &a[2].n, 1, 1000));
	assert_true(tl_wait_until(b, &s.downs, 1, 500));
	assert_int_equal(rds_connected(r), 0);
	assert_int_equal(rds_cmdf(r, res_cb, &a[0], "PING"), -1);
	/* Back once redis wakes up: handshakes time out until then. */
	assert_true(tl_wait_until(b, &s.ups, 2, 8000));
	for (i = 0; i < 3; i++) {
		assert_int_equal(a[i].n, 1);
		assert_string_equal(a[i].err, "timeout");
	}
	assert_int_equal(s.downs, 1);
	res_arm(&a[0]);
	assert_int_equal(rds_cmdf(r, res_cb, &a[0], "PING"), 0);
	assert_true(tl_wait_until(b, &a[0].n, 1, 1000));
	assert_string_equal(a[0].str, "PONG");

	assert_int_equal(redisGetReply(c, (void **)&rep), REDIS_OK);
	freeReplyObject(rep);
	redisFree(c);
	rds_free(r);
	event_base_free(b);
}

static void
test_live_free_pending(void **state)
{
	struct event_base	*b = event_base_new();
	struct res		 a;
	struct st		 s;
	struct rds		*r;

	(void)state;
	/* Freed while connecting: the handshake is still queued. */
	r = live_new(b, "redis://:" SRV_PW "@127.0.0.1:%d/1", 1000, &s);
	rds_free(r);
	run_for(b, 100);
	assert_int_equal(s.ups, 0);

	/* Freed with a command pending: no callback, nothing leaks. */
	r = live_new(b, "redis://:" SRV_PW "@127.0.0.1:%d/1", 1000, &s);
	assert_true(tl_wait_until(b, &s.ups, 1, 3000));
	res_arm(&a);
	assert_int_equal(rds_cmdf(r, res_cb, &a, "BLPOP naiber:q 0"), 0);
	run_for(b, 100);
	rds_free(r);
	run_for(b, 100);
	assert_int_equal(a.n, 0);
	assert_int_equal(s.downs, 0);

	/* Freed by the state callback itself. */
	r = live_new(b, "redis://:" SRV_PW "@127.0.0.1:%d/1", 1000, &s);
	s.free_on_up = r;
	assert_true(tl_wait_until(b, &s.ups, 1, 3000));
	run_for(b, 100);
	assert_int_equal(s.ups, 1);
	event_base_free(b);
}

/* rds_free() from a reply callback, inside hiredis's own callback. */
static void
test_live_free_in_callback(void **state)
{
	struct event_base	*b = event_base_new();
	struct res		 a, p;
	struct st		 s;
	struct rds		*r;

	(void)state;
	r = live_new(b, "redis://:" SRV_PW "@127.0.0.1:%d", 1000, &s);
	assert_true(tl_wait_until(b, &s.ups, 1, 3000));
	res_arm(&a);
	res_arm(&p);
	a.free_me = r;
	assert_int_equal(rds_cmdf(r, res_cb, &a, "PING"), 0);
	assert_int_equal(rds_cmdf(r, res_cb, &p, "BLPOP naiber:q2 0"), 0);
	assert_true(tl_wait_until(b, &a.n, 1, 2000));
	assert_string_equal(a.str, "PONG");
	run_for(b, 300);
	assert_int_equal(p.n, 0);
	assert_int_equal(s.downs, 0);
	event_base_free(b);
}

static void
test_live_kill_restart(void **state)
{
	struct event_base	*b = event_base_new();
	struct res		 p1, p2, f1, f2, a;
	struct st		 s, s2;
	struct rds		*r, *r2;
	char			 v[16];

	(void)state;
	r = live_new(b, "redis://:" SRV_PW "@127.0.0.1:%d/4", 3000, &s);
	r2 = live_new(b, "redis://:" SRV_PW "@127.0.0.1:%d", 3000, &s2);
	assert_true(tl_wait_until(b, &s.ups, 1, 3000));
	assert_true(tl_wait_until(b, &s2.ups, 1, 3000));
	res_arm(&p1);
	res_arm(&p2);
	res_arm(&f1);
	res_arm(&f2);
	f1.free_me = r2;	/* frees r2 amid its "disconnected" calls */
	assert_int_equal(rds_cmdf(r, res_cb, &p1, "BLPOP naiber:k1 0"), 0);
	assert_int_equal(rds_cmdf(r, res_cb, &p2, "BLPOP naiber:k2 0"), 0);
	assert_int_equal(rds_cmdf(r2, res_cb, &f1, "BLPOP naiber:k3 0"), 0);
	assert_int_equal(rds_cmdf(r2, res_cb, &f2, "BLPOP naiber:k4 0"), 0);
	run_for(b, 100);
	assert_int_equal(p1.n + p2.n + f1.n + f2.n, 0);

	srv_kill();
	assert_true(tl_wait_until(b, &p2.n, 1, 1000));
	assert_true(tl_wait_until(b, &s.downs, 1, 1000));
	assert_int_equal(p1.n, 1);
	assert_int_equal(p1.has_reply, 0);
	assert_string_equal(p1.err, "disconnected");
	assert_string_equal(p2.err, "disconnected");
	assert_int_equal(rds_connected(r), 0);
	res_arm(&a);
	assert_int_equal(rds_cmdf(r, res_cb, &a, "PING"), -1);
	assert_int_equal(f1.n, 1);
	assert_int_equal(f2.n, 0);

	/* Same port again: reconnects on its own, db 4 selected again. */
	run_for(b, 300);
	assert_int_equal(srv_start(), 0);
	assert_true(tl_wait_until(b, &s.ups, 2, 8000));
	assert_int_equal(rds_cmdf(r, res_cb, &a, "SET naiber:t5 back"), 0);
	assert_true(tl_wait_until(b, &a.n, 1, 1000));
	assert_string_equal(a.str, "OK");
	assert_int_equal(sync_get(4, "naiber:t5", v, sizeof(v)), 1);
	assert_string_equal(v, "back");
	assert_int_equal(p1.n + p2.n, 2);
	assert_int_equal(s.downs, 1);
	assert_int_equal(f2.n, 0);
	rds_free(r);
	event_base_free(b);
}

int
main(void)
{
	const struct CMUnitTest pure[] = {
		cmocka_unit_test(test_url_forms),
		cmocka_unit_test(test_url_bounds),
		cmocka_unit_test(test_url_rejects),
		cmocka_unit_test(test_keys_good),
		cmocka_unit_test(test_keys_bad),
		cmocka_unit_test(test_keys_small_buffer),
		cmocka_unit_test(test_new_invalid),
	};
	const struct CMUnitTest live[] = {
		cmocka_unit_test(test_live_setget),
		cmocka_unit_test(test_live_user),
		cmocka_unit_test(test_live_wrong_password),
		cmocka_unit_test(test_live_refused),
		cmocka_unit_test(test_live_timeout),
		cmocka_unit_test(test_live_timeouts_reconnect),
		cmocka_unit_test(test_live_free_pending),
		cmocka_unit_test(test_live_free_in_callback),
		cmocka_unit_test(test_live_kill_restart),
	};
	int	rc;

	/* hiredis 0.14 writes with write(2). */
	signal(SIGPIPE, SIG_IGN);
	log_init(LF_TEXT, LT_STDERR, LL_INFO);
	rc = cmocka_run_group_tests_name("redis pure", pure, NULL, NULL);
	rc += cmocka_run_group_tests_name("redis live", live, grp_setup,
	    grp_teardown);
	return rc;
}
