/*
 * test_jobs.c - unit tests for common/jobs.c: the job's data JSON (exact
 * bytes and types, refusals), spool files (name, content, mode, no temp
 * left) and then, against a real redis-server this file starts on a
 * free loopback port in a temporary directory (killed at the end, and
 * by PR_SET_PDEATHSIG if the test dies): the BullMQ layout the script
 * writes, dedup (ADDED then DUPLICATE, one job, no id gap), NOSCRIPT,
 * a script error (SPOOLED all the same), corrupt spool files (*.bad),
 * Redis stopped (timeout) or killed (SPOOLED), replay after a restart,
 * replay twice, a replay that stops when Redis does; jobs held in
 * memory: Redis and spool both failing (FAILED), the bound, retries to
 * the spool and to Redis (added, duplicate, timeout), the exit flush.
 * Every wait runs the event loop under a deadline timer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "testlib.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "jobs.h"
#include "log.h"
#include "redis.h"
#include "util.h"

#define Q	"bull:post-call-processing:"

struct out {
	int			n;
	int			in_call;	/* set around jobs_enqueue() */
	int			sync;		/* cb ran inside it */
	enum job_outcome	o;
	char			id[PATH_MAX];
};

struct rpl {
	int		n;
	unsigned	done;
	unsigned	left;
};

struct hres {
	int		n;
	int		in_call;
	int		sync;
	unsigned	to_redis;
	unsigned	to_spool;
	unsigned	left;
};

struct lv {
	struct event_base	*base;
	struct rds		*rds;
	char			 spool[200];
};

static struct {
	pid_t	pid;
	int	port;
	char	dir[64];
	char	url[64];
} srv = { -1, 0, "", "" };

static int	srv_start(void);
static void	srv_kill(void);
static redisReply *rds_sync(const char *, ...);
static long long rint_(const char *, ...);
static int	rstr(char *, size_t, const char *, ...);
static int	grp_setup(void **);
static int	grp_teardown(void **);
static int	rm_entry(const char *, const struct stat *, int, struct FTW *);
static void	rm_tree(const char *);
static int	count_suffix(const char *, const char *);
static int	read_file(const char *, char *, size_t);
static void	write_file(const char *, const char *, const char *);
static void	mkjob(struct job *, const char *, int, const char *,
		    uint64_t);
static void	out_cb(enum job_outcome, const char *, void *);
static void	rpl_cb(unsigned, unsigned, void *);
static void	lv_open(struct lv *, long);
static void	lv_close(struct lv *);
static void	enqueue(struct lv *, const struct job *, struct out *);
static void	replay(struct lv *, struct rpl *);
static void	cap_begin(int *);
static void	cap_end(int, char *, size_t);
static void	test_data_json_exact(void **);
static void	test_data_json_rejects(void **);
static void	test_spool_file(void **);
static void	test_spool_names(void **);
static void	test_live_layout(void **);
static void	test_live_noscript(void **);
static void	test_live_script_error(void **);
static void	test_live_corrupt(void **);
static void	test_live_replay_empty(void **);
static void	test_live_timeout(void **);
static void	test_live_killed_replay(void **);
static void	test_live_replay_stops(void **);
static void	test_live_replay_bound(void **);
static void	held_cb(unsigned, unsigned, unsigned, void *);
static void	held_retry(struct rds *, const char *, struct hres *);
static void	bad_spool(const char *, char *, size_t);
static void	test_held_unsaved(void **);
static void	test_held_spool(void **);
static void	test_held_bound_flush(void **);
static void	test_live_held(void **);
static void	test_live_held_timeout(void **);

/* --- helpers -------------------------------------------------------- */

/* redis-server on srv.port, empty; waits (5 s at most) for PING. */
static int
srv_start(void)
{
	char		 port[16];
	pid_t		 parent = getpid();
	redisReply	*rep;
	int		 fd, i;

	snprintf(port, sizeof(port), "%d", srv.port);
	if ((srv.pid = fork()) == -1)
		return -1;
	if (srv.pid == 0) {
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
		    "--dir", srv.dir, "--logfile", "", (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 100; i++) {
		if ((rep = rds_sync("PING")) != NULL) {
			freeReplyObject(rep);
			return 0;
		}
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

/* One command on a fresh blocking connection; NULL if none. */
static redisReply *
rds_sync(const char *fmt, ...)
{
	struct timeval	 tv = { 1, 0 };
	redisContext	*c;
	redisReply	*rep;
	va_list		 ap;

	c = redisConnectWithTimeout("127.0.0.1", srv.port, tv);
	if (c == NULL || c->err) {
		if (c != NULL)
			redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	va_start(ap, fmt);
	rep = redisvCommand(c, fmt, ap);
	va_end(ap);
	redisFree(c);
	return rep;
}

/* An integer reply, or a string reply holding one; else -1. */
static long long
rint_(const char *fmt, ...)
{
	struct timeval	 tv = { 1, 0 };
	redisContext	*c;
	redisReply	*rep;
	long long	 v = -1;
	va_list		 ap;

	c = redisConnectWithTimeout("127.0.0.1", srv.port, tv);
	assert_true(c != NULL && !c->err);
	va_start(ap, fmt);
	rep = redisvCommand(c, fmt, ap);
	va_end(ap);
	redisFree(c);
	assert_non_null(rep);
	if (rep->type == REDIS_REPLY_INTEGER)
		v = rep->integer;
	else if (rep->type == REDIS_REPLY_STRING)
		v = strtoll(rep->str, NULL, 10);
	freeReplyObject(rep);
	return v;
}

/* A string reply into buf: 1, or 0 for nil. */
static int
rstr(char *buf, size_t size, const char *fmt, ...)
{
	struct timeval	 tv = { 1, 0 };
	redisContext	*c;
	redisReply	*rep;
	int		 rc = 0;
	va_list		 ap;

	c = redisConnectWithTimeout("127.0.0.1", srv.port, tv);
	assert_true(c != NULL && !c->err);
	va_start(ap, fmt);
	rep = redisvCommand(c, fmt, ap);
	va_end(ap);
	redisFree(c);
	assert_non_null(rep);
	buf[0] = '\0';
	if (rep->type == REDIS_REPLY_STRING) {
		snprintf(buf, size, "%.*s", (int)rep->len, rep->str);
		rc = 1;
	} else
		assert_int_equal(rep->type, REDIS_REPLY_NIL);
	freeReplyObject(rep);
	return rc;
}

static int
grp_setup(void **state)
{
	(void)state;
	snprintf(srv.dir, sizeof(srv.dir), "/tmp/test_jobs.XXXXXX");
	if (mkdtemp(srv.dir) == NULL || (srv.port = tl_free_port()) == -1)
		return -1;
	snprintf(srv.url, sizeof(srv.url), "redis://127.0.0.1:%d", srv.port);
	return srv_start();
}

static int
grp_teardown(void **state)
{
	(void)state;
	srv_kill();
	rm_tree(srv.dir);
	return 0;
}

static int
rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	remove(p);
	return 0;
}

static void
rm_tree(const char *dir)
{
	if (dir[0] != '\0')
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Entries of dir whose name ends in suffix ("" counts all). */
static int
count_suffix(const char *dir, const char *suffix)
{
	DIR		*d;
	struct dirent	*de;
	size_t		 n, s = strlen(suffix);
	int		 c = 0;

	if ((d = opendir(dir)) == NULL)
		return errno == ENOENT ? 0 : -1;
	while ((de = readdir(d)) != NULL) {
		n = strlen(de->d_name);
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (n >= s && strcmp(de->d_name + n - s, suffix) == 0)
			c++;
	}
	closedir(d);
	return c;
}

static int
read_file(const char *path, char *buf, size_t size)
{
	ssize_t	n;
	int	fd;

	if ((fd = open(path, O_RDONLY)) == -1)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return (int)n;
}

static void
write_file(const char *dir, const char *name, const char *text)
{
	char	path[PATH_MAX];
	int	fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd != -1);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void
mkjob(struct job *j, const char *cid, int first, const char *type,
    uint64_t ts)
{
	memset(j, 0, sizeof(*j));
	snprintf(j->j_conversation_id, sizeof(j->j_conversation_id), "%s",
	    cid);
	snprintf(j->j_user_id, sizeof(j->j_user_id), "user-42");
	snprintf(j->j_call_type, sizeof(j->j_call_type), "%s", type);
	j->j_is_first_call = first;
	j->j_timestamp_ms = ts;
}

static void
out_cb(enum job_outcome o, const char *id, void *arg)
{
	struct out	*r = arg;

	r->n++;
	r->o = o;
	r->sync = r->in_call;
	snprintf(r->id, sizeof(r->id), "%s", id != NULL ? id : "");
}

static void
rpl_cb(unsigned done, unsigned left, void *arg)
{
	struct rpl	*r = arg;

	r->n++;
	r->done = done;
	r->left = left;
}

/* A connected rds (timeout_ms per command), an empty Redis, a spool. */
static void
lv_open(struct lv *l, long timeout_ms)
{
	redisReply	*rep;
	int		 i;

	memset(l, 0, sizeof(*l));
	rep = rds_sync("FLUSHALL");
	assert_non_null(rep);
	freeReplyObject(rep);
	snprintf(l->spool, sizeof(l->spool), "%s/spool.XXXXXX", srv.dir);
	assert_non_null(mkdtemp(l->spool));
	l->base = event_base_new();
	assert_non_null(l->base);
	l->rds = rds_new(l->base, srv.url, timeout_ms);
	assert_non_null(l->rds);
	for (i = 0; i < 50 && !rds_connected(l->rds); i++) {
		struct timeval tv = { 0, 100000 };
		event_base_loopexit(l->base, &tv);
		event_base_dispatch(l->base);
	}
	assert_true(rds_connected(l->rds));
}

static void
lv_close(struct lv *l)
{
	rds_free(l->rds);
	event_base_free(l->base);
	rm_tree(l->spool);
}

static void
enqueue(struct lv *l, const struct job *j, struct out *r)
{
	memset(r, 0, sizeof(*r));
	r->in_call = 1;
	assert_int_equal(jobs_enqueue(l->rds, JOBS_PREFIX, l->spool, j,
	    out_cb, r), 0);
	r->in_call = 0;
	assert_true(tl_wait_until(l->base, &r->n, 1, 5000));
	assert_int_equal(r->n, 1);
}

static void
replay(struct lv *l, struct rpl *r)
{
	memset(r, 0, sizeof(*r));
	assert_int_equal(jobs_replay(l->rds, JOBS_PREFIX, l->spool, rpl_cb,
	    r), 0);
	assert_int_equal(r->n, 0);	/* never from inside jobs_replay() */
	assert_true(tl_wait_until(l->base, &r->n, 1, 10000));
	assert_int_equal(r->n, 1);
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

	dup2(saved, STDERR_FILENO);
	close(saved);
	snprintf(path, sizeof(path), "%s/log.txt", srv.dir);
	assert_true(read_file(path, buf, size) >= 0);
	unlink(path);
	fputs(buf, stderr);
}

/* --- data JSON ------------------------------------------------------ */

static void
test_data_json_exact(void **state)
{
	struct job	 j;
	json_t		*o;
	char		*s;

	(void)state;
	mkjob(&j, "conv_01jabc", 1, "general", 1764000000000ULL);
	s = job_data_json(&j);
	assert_string_equal(s, "{\"conversationId\":\"conv_01jabc\","
	    "\"userId\":\"user-42\",\"isFirstCall\":true,"
	    "\"callType\":\"general\",\"timestamp\":1764000000000}");
	free(s);
	mkjob(&j, "c2", 0, "health_check", 0);
	j.j_user_id[0] = '\0';
	s = job_data_json(&j);
	assert_string_equal(s, "{\"conversationId\":\"c2\",\"userId\":\"\","
	    "\"isFirstCall\":false,\"callType\":\"health_check\","
	    "\"timestamp\":0}");
	free(s);
	/* Any non-zero is true; escapes; UTF-8 as is; 2^53 - 1 exact. */
	mkjob(&j, "a\"b\\c/d", 7, "general", 9007199254740991ULL);
	snprintf(j.j_user_id, sizeof(j.j_user_id), "Zo\xc3\xab");
	s = job_data_json(&j);
	assert_string_equal(s, "{\"conversationId\":\"a\\\"b\\\\c/d\","
	    "\"userId\":\"Zo\xc3\xab\",\"isFirstCall\":true,"
	    "\"callType\":\"general\",\"timestamp\":9007199254740991}");
	o = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
	assert_non_null(o);
	assert_int_equal(json_object_size(o), 5);
	assert_string_equal(json_string_value(json_object_get(o,
	    "conversationId")), "a\"b\\c/d");
	assert_true(json_is_true(json_object_get(o, "isFirstCall")));
	assert_true(json_is_integer(json_object_get(o, "timestamp")));
	assert_true(json_integer_value(json_object_get(o, "timestamp")) ==
	    9007199254740991LL);
	assert_true(json_is_string(json_object_get(o, "callType")));
	json_decref(o);
	free(s);
}

static void
test_data_json_rejects(void **state)
{
	struct job	j;
	struct out	r;
	char		dir[] = "/tmp/test_jobs_rej.XXXXXX";
	size_t		i;
	static const struct {
		const char	*cid;
		const char	*user;
		const char	*type;
		uint64_t	 ts;
	} bad[] = {
		{ "", "u", "general", 1 },
		{ "c", "u", "other", 1 },
		{ "c", "u", "General", 1 },
		{ "c", "u", "", 1 },
		{ "c\n", "u", "general", 1 },
		{ "c\x7f", "u", "general", 1 },
		{ "c", "u\t", "general", 1 },
		{ "c", "u\xff", "general", 1 },
		{ "c", "u", "general", 9007199254740992ULL },
	};

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_null(job_data_json(NULL));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		mkjob(&j, bad[i].cid, 1, bad[i].type, bad[i].ts);
		snprintf(j.j_user_id, sizeof(j.j_user_id), "%s", bad[i].user);
		assert_null(job_data_json(&j));
		assert_int_equal(jobs_spool(dir, &j), -1);
		memset(&r, 0, sizeof(r));
		assert_int_equal(jobs_enqueue(NULL, JOBS_PREFIX, dir, &j,
		    out_cb, &r), -1);
		assert_int_equal(r.n, 0);
	}
	/* Not NUL-terminated within its field. */
	mkjob(&j, "c", 1, "general", 1);
	memset(j.j_conversation_id, 'a', sizeof(j.j_conversation_id));
	assert_null(job_data_json(&j));
	/* Bad prefix or spool directory: refused, no callback. */
	mkjob(&j, "c", 1, "general", 1);
	assert_int_equal(jobs_enqueue(NULL, "", dir, &j, out_cb, &r), -1);
	assert_int_equal(jobs_enqueue(NULL, "a b", dir, &j, out_cb, &r), -1);
	assert_int_equal(jobs_enqueue(NULL, JOBS_PREFIX, NULL, &j, out_cb,
	    &r), -1);
	assert_int_equal(jobs_enqueue(NULL, JOBS_PREFIX, "", &j, out_cb, &r),
	    -1);
	assert_int_equal(r.n, 0);
	assert_int_equal(count_suffix(dir, ""), 0);
	rm_tree(dir);
}

/* --- spool files ---------------------------------------------------- */

static void
test_spool_file(void **state)
{
	struct job	 j;
	struct out	 r;
	struct stat	 st;
	char		 dir[] = "/tmp/test_jobs_spool.XXXXXX";
	char		 path[PATH_MAX], buf[1024], *data;

	(void)state;
	assert_non_null(mkdtemp(dir));
	mkjob(&j, "conv_1", 1, "general", 1764000000000ULL);
	assert_int_equal(jobs_spool(dir, &j), 0);
	snprintf(path, sizeof(path), "%s/conv_1.job", dir);
	assert_true(read_file(path, buf, sizeof(buf)) > 0);
	data = job_data_json(&j);
	assert_non_null(data);
	assert_true(strncmp(buf, "{\"prefix\":\"\",\"data\":", 20) == 0);
	assert_true(strncmp(buf + 20, data, strlen(data)) == 0);
	assert_string_equal(buf + 20 + strlen(data), "}\n");
	free(data);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(count_suffix(dir, ""), 1);	/* no temp file */
	/* The same conversation again: one file, the newer content. */
	j.j_timestamp_ms = 5;
	assert_int_equal(jobs_spool(dir, &j), 0);
	assert_int_equal(count_suffix(dir, ""), 1);
	assert_true(read_file(path, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "\"timestamp\":5}"));
	/* No Redis at all: spooled before jobs_enqueue() returns. */
	mkjob(&j, "conv_2", 0, "health_check", 9);
	memset(&r, 0, sizeof(r));
	r.in_call = 1;
	assert_int_equal(jobs_enqueue(NULL, "{bull}", dir, &j, out_cb, &r),
	    0);
	assert_int_equal(r.n, 1);
	assert_true(r.sync);
	assert_int_equal(r.o, JOB_SPOOLED);
	snprintf(path, sizeof(path), "%s/conv_2.job", dir);
	assert_string_equal(r.id, path);
	assert_true(read_file(path, buf, sizeof(buf)) > 0);
	assert_true(strncmp(buf, "{\"prefix\":\"{bull}\",\"data\":", 26) == 0);
	/* A missing spool directory is made (one level), 0700. */
	snprintf(path, sizeof(path), "%s/sub", dir);
	assert_int_equal(jobs_spool(path, &j), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	snprintf(path, sizeof(path), "%s/no/such", dir);
	assert_int_equal(jobs_spool(path, &j), -1);
	rm_tree(dir);
}

static void
test_spool_names(void **state)
{
	struct job	 j;
	char		 dir[] = "/tmp/test_jobs_names.XXXXXX";
	char		 path[PATH_MAX], cid[128];
	DIR		*d;
	struct dirent	*de;
	int		 longs = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	mkjob(&j, "a/b.c", 1, "general", 1);
	assert_int_equal(jobs_spool(dir, &j), 0);
	snprintf(path, sizeof(path), "%s/a%%2Fb%%2Ec.job", dir);
	assert_int_equal(access(path, F_OK), 0);
	mkjob(&j, "../x", 1, "general", 1);
	assert_int_equal(jobs_spool(dir, &j), 0);
	snprintf(path, sizeof(path), "%s/%%2E%%2E%%2Fx.job", dir);
	assert_int_equal(access(path, F_OK), 0);
	/* Never one name for two ids. */
	mkjob(&j, "a.b", 1, "general", 1);
	assert_int_equal(jobs_spool(dir, &j), 0);
	mkjob(&j, "a_b", 1, "general", 1);
	assert_int_equal(jobs_spool(dir, &j), 0);
	mkjob(&j, "a%2Eb", 1, "general", 1);
	assert_int_equal(jobs_spool(dir, &j), 0);
	assert_int_equal(count_suffix(dir, ".job"), 5);
	/* Long encodings: a head and a hash, still distinct. */
	memset(cid, '/', sizeof(cid) - 1);
	cid[sizeof(cid) - 1] = '\0';
	mkjob(&j, cid, 1, "general", 1);
	assert_int_equal(jobs_spool(dir, &j), 0);
	cid[sizeof(cid) - 2] = 'x';
	mkjob(&j, cid, 1, "general", 1);
	assert_int_equal(jobs_spool(dir, &j), 0);
	assert_int_equal(count_suffix(dir, ".job"), 7);
	assert_non_null(d = opendir(dir));
	while ((de = readdir(d)) != NULL)
		if (strchr(de->d_name, '~') != NULL) {
			assert_true(strlen(de->d_name) <= 204);
			longs++;
		}
	closedir(d);
	assert_int_equal(longs, 2);
	rm_tree(dir);
}

/* --- against redis-server ------------------------------------------- */

static void
test_live_layout(void **state)
{
	struct lv	 l;
	struct job	 j, j2;
	struct out	 r;
	json_t		*o, *b, *de;
	redisReply	*rep, *f;
	char		 buf[1024], *data;
	long long	 ts, t0 = (long long)now_real_ms();

	(void)state;
	lv_open(&l, 2000);
	mkjob(&j, "conv_layout", 1, "general", 1764000000000ULL);
	enqueue(&l, &j, &r);
	assert_int_equal(r.o, JOB_ADDED);
	assert_false(r.sync);
	assert_string_equal(r.id, "1");
	enqueue(&l, &j, &r);
	assert_int_equal(r.o, JOB_DUPLICATE);
	assert_string_equal(r.id, "1");
	mkjob(&j2, "conv_other", 0, "health_check", 1764000000001ULL);
	enqueue(&l, &j2, &r);
	assert_int_equal(r.o, JOB_ADDED);
	assert_string_equal(r.id, "2");
	assert_int_equal(rint_("GET " Q "id"), 2);	/* no gap */
	assert_int_equal(count_suffix(l.spool, ""), 0);

	/* The job hash: exactly the fields BullMQ writes. */
	assert_int_equal(rint_("HLEN " Q "1"), 7);
	assert_int_equal(rstr(buf, sizeof(buf), "HGET " Q "1 name"), 1);
	assert_string_equal(buf, "process-post-call");
	assert_int_equal(rstr(buf, sizeof(buf), "HGET " Q "1 data"), 1);
	data = job_data_json(&j);
	assert_string_equal(buf, data);
	free(data);
	assert_int_equal(rstr(buf, sizeof(buf), "HGET " Q "1 delay"), 1);
	assert_string_equal(buf, "3000");
	assert_int_equal(rstr(buf, sizeof(buf), "HGET " Q "1 priority"), 1);
	assert_string_equal(buf, "0");
	assert_int_equal(rstr(buf, sizeof(buf), "HGET " Q "1 deid"), 1);
	assert_string_equal(buf, "conv_layout");
	ts = rint_("HGET " Q "1 timestamp");
	assert_true(ts >= t0 - 1000 && ts <= (long long)now_real_ms() + 1000);
	assert_int_equal(rstr(buf, sizeof(buf), "HGET " Q "1 opts"), 1);
	o = json_loads(buf, JSON_REJECT_DUPLICATES, NULL);
	assert_non_null(o);
	assert_int_equal(json_object_size(o), 6);
	assert_int_equal(json_integer_value(json_object_get(o, "attempts")),
	    3);
	b = json_object_get(o, "backoff");
	assert_string_equal(json_string_value(json_object_get(b, "type")),
	    "exponential");
	assert_int_equal(json_integer_value(json_object_get(b, "delay")),
	    1000);
	assert_int_equal(json_integer_value(json_object_get(o,
	    "removeOnComplete")), 100);
	assert_int_equal(json_integer_value(json_object_get(o,
	    "removeOnFail")), 50);
	assert_int_equal(json_integer_value(json_object_get(o, "delay")),
	    3000);
	de = json_object_get(o, "de");
	assert_string_equal(json_string_value(json_object_get(de, "id")),
	    "conv_layout");
	assert_int_equal(json_integer_value(json_object_get(de, "ttl")),
	    300000);
	json_decref(o);

	/* Delayed (due x 4096 + id mod 4096), marker, dedup key, meta. */
	assert_true(rint_("ZSCORE " Q "delayed 1") == (ts + 3000) * 4096 + 1);
	assert_true(rint_("ZSCORE " Q "marker 1") == ts + 3000);
	assert_int_equal(rint_("ZCARD " Q "marker"), 1);
	assert_int_equal(rint_("EXISTS " Q "wait"), 0);
	assert_int_equal(rint_("GET " Q "de:conv_layout"), 1);
	assert_true(rint_("PTTL " Q "de:conv_layout") > 290000);
	assert_int_equal(rint_("HGET " Q "meta opts.maxLenEvents"), 10000);
	assert_int_equal(rint_("HLEN " Q "meta"), 1);

	/* Events: added, delayed, deduplicated, added, delayed. */
	assert_int_equal(rint_("XLEN " Q "events"), 5);
	rep = rds_sync("XRANGE " Q "events - +");
	assert_non_null(rep);
	assert_int_equal(rep->elements, 5);
	f = rep->element[2]->element[1];
	assert_int_equal(f->elements, 8);
	assert_string_equal(f->element[1]->str, "deduplicated");
	assert_string_equal(f->element[3]->str, "1");
	assert_string_equal(f->element[5]->str, "conv_layout");
	assert_string_equal(f->element[7]->str, "2");	/* would have been */
	f = rep->element[1]->element[1];
	assert_string_equal(f->element[1]->str, "delayed");
	assert_true(strtoll(f->element[5]->str, NULL, 10) == ts + 3000);
	freeReplyObject(rep);

	/* An existing meta is left alone. */
	freeReplyObject(rds_sync("HSET " Q "meta opts.maxLenEvents 500"));
	mkjob(&j, "conv_third", 1, "general", 1);
	enqueue(&l, &j, &r);
	assert_int_equal(r.o, JOB_ADDED);
	assert_int_equal(rint_("HGET " Q "meta opts.maxLenEvents"), 500);
	lv_close(&l);
}

/* After a Redis restart (empty script cache): EVAL, then EVALSHA. */
static void
test_live_noscript(void **state)
{
	struct lv	l;
	struct job	j;
	struct out	r;

	(void)state;
	lv_open(&l, 2000);
	freeReplyObject(rds_sync("SCRIPT FLUSH"));
	mkjob(&j, "conv_ns1", 1, "general", 1);
	enqueue(&l, &j, &r);
	assert_int_equal(r.o, JOB_ADDED);
	mkjob(&j, "conv_ns2", 1, "general", 1);
	enqueue(&l, &j, &r);
	assert_int_equal(r.o, JOB_ADDED);
	assert_string_equal(r.id, "2");
	lv_close(&l);
}

/* An error reply: FAILED, logged, and the job spooled all the same. */
static void
test_live_script_error(void **state)
{
	struct lv	l;
	struct job	j;
	struct out	r;
	struct rpl	p;
	char		log[4096], buf[256], path[PATH_MAX];
	int		saved;

	(void)state;
	lv_open(&l, 2000);
	freeReplyObject(rds_sync("SET " Q "id abc"));
	mkjob(&j, "conv_err", 1, "general", 1);
	cap_begin(&saved);
	enqueue(&l, &j, &r);
	cap_end(saved, log, sizeof(log));
	/* Spooled all the same: not FAILED, which means "nowhere". */
	assert_int_equal(r.o, JOB_SPOOLED);
	snprintf(path, sizeof(path), "%s/conv_err.job", l.spool);
	assert_string_equal(r.id, path);
	assert_non_null(strstr(log, "a bug"));
	assert_non_null(strstr(log, "conv_err"));
	assert_int_equal(count_suffix(l.spool, ".job"), 1);
	/* Refused before any write: no dedup key left without a job. */
	assert_int_equal(rint_("EXISTS " Q "de:conv_err"), 0);
	freeReplyObject(rds_sync("SET " Q "events x"));
	mkjob(&j, "conv_err2", 1, "general", 1);
	enqueue(&l, &j, &r);
	assert_int_equal(r.o, JOB_SPOOLED);
	assert_int_equal(rint_("EXISTS " Q "de:conv_err2"), 0);
	assert_int_equal(count_suffix(l.spool, ".job"), 2);
	/* Repaired: the replay adds both. */
	freeReplyObject(rds_sync("DEL " Q "id " Q "events"));
	replay(&l, &p);
	assert_int_equal(p.done, 2);
	assert_int_equal(p.left, 0);
	assert_int_equal(count_suffix(l.spool, ""), 0);
	assert_int_equal(rint_("GET " Q "id"), 2);
	assert_int_equal(rstr(buf, sizeof(buf), "HGET " Q "1 name"), 1);
	assert_string_equal(buf, "process-post-call");
	lv_close(&l);
}

static void
test_live_corrupt(void **state)
{
	static const char *const good =
	    "{\"prefix\":\"bull\",\"data\":{\"conversationId\":\"c_good\","
	    "\"userId\":\"u\",\"isFirstCall\":false,\"callType\":\"general\","
	    "\"timestamp\":1}}\n";
	static const struct {
		const char	*name;
		const char	*text;
	} bad[] = {
		{ "notjson.job", "hello" },
		{ "empty.job", "" },
		{ "array.job", "[1,2]" },
		{ "extratop.job", "{\"prefix\":\"bull\",\"x\":1,\"data\":{}}" },
		{ "extra.job", "{\"prefix\":\"bull\",\"data\":{\"conversationId"
		    "\":\"c\",\"userId\":\"u\",\"isFirstCall\":false,\"callType"
		    "\":\"general\",\"timestamp\":1,\"x\":0}}" },
		{ "missing.job", "{\"prefix\":\"bull\",\"data\":{\"conversation"
		    "Id\":\"c\",\"isFirstCall\":false,\"callType\":\"general\","
		    "\"timestamp\":1}}" },
		{ "boolstr.job", "{\"prefix\":\"bull\",\"data\":{\"conversation"
		    "Id\":\"c\",\"userId\":\"u\",\"isFirstCall\":\"false\","
		    "\"callType\":\"general\",\"timestamp\":1}}" },
		{ "float.job", "{\"prefix\":\"bull\",\"data\":{\"conversationId"
		    "\":\"c\",\"userId\":\"u\",\"isFirstCall\":false,\"callType"
		    "\":\"general\",\"timestamp\":1.0}}" },
		{ "neg.job", "{\"prefix\":\"bull\",\"data\":{\"conversationId"
		    "\":\"c\",\"userId\":\"u\",\"isFirstCall\":false,\"callType"
		    "\":\"general\",\"timestamp\":-1}}" },
		{ "type.job", "{\"prefix\":\"bull\",\"data\":{\"conversationId"
		    "\":\"c\",\"userId\":\"u\",\"isFirstCall\":false,\"callType"
		    "\":\"other\",\"timestamp\":1}}" },
		{ "nul.job", "{\"prefix\":\"bull\",\"data\":{\"conversationId"
		    "\":\"c\\u0000d\",\"userId\":\"u\",\"isFirstCall\":false,"
		    "\"callType\":\"general\",\"timestamp\":1}}" },
		{ "prefix.job", "{\"prefix\":\"a b\",\"data\":{\"conversationId"
		    "\":\"c\",\"userId\":\"u\",\"isFirstCall\":false,\"callType"
		    "\":\"general\",\"timestamp\":1}}" },
		{ "dupkey.job", "{\"prefix\":\"bull\",\"prefix\":\"bull\"}" },
		{ "trail.job", "{\"prefix\":\"bull\",\"data\":{\"conversationId"
		    "\":\"c\",\"userId\":\"u\",\"isFirstCall\":false,\"callType"
		    "\":\"general\",\"timestamp\":1}} x" },
	};
	struct lv	 l;
	struct rpl	 p;
	char		 path[PATH_MAX], target[PATH_MAX], log[16384];
	char		 big[9000], buf[256];
	size_t		 i;
	int		 saved;

	(void)state;
	lv_open(&l, 2000);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		write_file(l.spool, bad[i].name, bad[i].text);
	/* Good JSON, but over 8 KiB. */
	snprintf(big, sizeof(big), "%s", good);
	memset(big + strlen(good) - 1, ' ', sizeof(big) - strlen(good));
	big[sizeof(big) - 1] = '\0';
	write_file(l.spool, "big.job", big);
	snprintf(path, sizeof(path), "%s/link.job", l.spool);
	snprintf(target, sizeof(target), "%s/good.job", l.spool);
	assert_int_equal(symlink(target, path), 0);
	snprintf(path, sizeof(path), "%s/dir.job", l.spool);
	assert_int_equal(mkdir(path, 0700), 0);
	write_file(l.spool, "good.job", good);
	/* prefix "": the replay's own. */
	write_file(l.spool, "good2.job", "{\"prefix\":\"\",\"data\":{\"conversa"
	    "tionId\":\"c_good2\",\"userId\":\"\",\"isFirstCall\":true,\"call"
	    "Type\":\"health_check\",\"timestamp\":9007199254740991}}");
	/* Not ours to replay. */
	write_file(l.spool, ".conv.job", good);
	write_file(l.spool, ".conv.abc123", good);
	write_file(l.spool, "old.bad", good);

	cap_begin(&saved);
	replay(&l, &p);
	cap_end(saved, log, sizeof(log));
	assert_int_equal(p.done, 2);
	assert_int_equal(p.left, 0);
	assert_int_equal(count_suffix(l.spool, ".bad"), (int)(sizeof(bad) /
	    sizeof(bad[0])) + 3 + 1);
	assert_int_equal(count_suffix(l.spool, ".job"), 1);	/* .conv.job */
	assert_int_equal(count_suffix(l.spool, ""),
	    (int)(sizeof(bad) / sizeof(bad[0])) + 3 + 3);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s.bad", l.spool, bad[i].name);
		assert_true(read_file(path, big, sizeof(big)) >= 0);
		assert_string_equal(big, bad[i].text);	/* kept as it was */
		assert_non_null(strstr(log, bad[i].name));
	}
	assert_int_equal(rint_("GET " Q "id"), 2);
	assert_int_equal(rstr(buf, sizeof(buf), "HGET " Q "1 data"), 1);
	assert_non_null(strstr(buf, "c_good"));
	assert_int_equal(rstr(buf, sizeof(buf), "HGET " Q "2 data"), 1);
	assert_string_equal(buf, "{\"conversationId\":\"c_good2\",\"userId\":"
	    "\"\",\"isFirstCall\":true,\"callType\":\"health_check\","
	    "\"timestamp\":9007199254740991}");
	lv_close(&l);
}

static void
test_live_replay_empty(void **state)
{
	struct lv	l;
	struct rpl	p;
	char		keep[sizeof(l.spool)];

	(void)state;
	lv_open(&l, 2000);
	replay(&l, &p);
	assert_int_equal(p.done, 0);
	assert_int_equal(p.left, 0);
	/* A spool directory not made yet is empty too. */
	memcpy(keep, l.spool, sizeof(keep));
	assert_true(strlen(l.spool) + 6 <= sizeof(l.spool));
	strcat(l.spool, "/none");
	replay(&l, &p);
	assert_int_equal(p.done, 0);
	memcpy(l.spool, keep, sizeof(keep));
	assert_int_equal(jobs_replay(l.rds, "", l.spool, rpl_cb, &p), -1);
	assert_int_equal(jobs_replay(NULL, JOBS_PREFIX, l.spool, rpl_cb, &p),
	    -1);
	assert_int_equal(jobs_replay(l.rds, JOBS_PREFIX, l.spool, NULL, &p),
	    -1);
	lv_close(&l);
}

/*
 * Redis stopped: the command times out, the job is spooled; the script
 * still runs when Redis wakes, and the replay finds it: one job.
 */
static void
test_live_timeout(void **state)
{
	struct lv	l;
	struct job	j;
	struct out	r;
	struct rpl	p;
	char		path[PATH_MAX];
	int		i;

	(void)state;
	lv_open(&l, 300);
	mkjob(&j, "conv_slow", 1, "general", 1);
	kill(srv.pid, SIGSTOP);
	enqueue(&l, &j, &r);
	kill(srv.pid, SIGCONT);
	assert_int_equal(r.o, JOB_SPOOLED);
	assert_false(r.sync);
	snprintf(path, sizeof(path), "%s/conv_slow.job", l.spool);
	assert_string_equal(r.id, path);
	assert_int_equal(access(path, F_OK), 0);
	for (i = 0; i < 40 && rint_("EXISTS " Q "1") != 1; i++)
		usleep(50 * 1000);
	assert_int_equal(rint_("EXISTS " Q "1"), 1);
	replay(&l, &p);
	assert_int_equal(p.done, 1);
	assert_int_equal(p.left, 0);
	assert_int_equal(count_suffix(l.spool, ""), 0);
	assert_int_equal(rint_("GET " Q "id"), 1);
	assert_int_equal(rint_("EXISTS " Q "2"), 0);
	lv_close(&l);
}

/*
 * Redis killed: SPOOLED at once; no replay while it is down; after a
 * restart the replay adds the job once, and a second copy of the file
 * replayed later is a duplicate: still one job, spool empty.
 */
static void
test_live_killed_replay(void **state)
{
	struct lv	 l;
	struct job	 j;
	struct out	 r;
	struct rpl	 p;
	char		 path[PATH_MAX], buf[256], *data;
	int		 i;

	(void)state;
	lv_open(&l, 2000);
	srv_kill();
	for (i = 0; i < 30 && rds_connected(l.rds); i++) {
		struct timeval tv = { 0, 100000 };
		event_base_loopexit(l.base, &tv);
		event_base_dispatch(l.base);
	}
	assert_false(rds_connected(l.rds));
	mkjob(&j, "conv_down", 0, "health_check", 1764000000000ULL);
	memset(&r, 0, sizeof(r));
	r.in_call = 1;
	assert_int_equal(jobs_enqueue(l.rds, JOBS_PREFIX, l.spool, &j,
	    out_cb, &r), 0);
	assert_int_equal(r.n, 1);
	assert_true(r.sync);
	assert_int_equal(r.o, JOB_SPOOLED);
	snprintf(path, sizeof(path), "%s/conv_down.job", l.spool);
	assert_string_equal(r.id, path);
	assert_int_equal(access(path, F_OK), 0);
	memset(&p, 0, sizeof(p));
	assert_int_equal(jobs_replay(l.rds, JOBS_PREFIX, l.spool, rpl_cb,
	    &p), -1);
	assert_int_equal(p.n, 0);

	assert_int_equal(srv_start(), 0);
	for (i = 0; i < 80 && !rds_connected(l.rds); i++) {
		struct timeval tv = { 0, 100000 };
		event_base_loopexit(l.base, &tv);
		event_base_dispatch(l.base);
	}
	assert_true(rds_connected(l.rds));
	replay(&l, &p);
	assert_int_equal(p.done, 1);
	assert_int_equal(p.left, 0);
	assert_int_equal(count_suffix(l.spool, ""), 0);
	assert_int_equal(rint_("GET " Q "id"), 1);
	assert_int_equal(rstr(buf, sizeof(buf), "HGET " Q "1 data"), 1);
	data = job_data_json(&j);
	assert_string_equal(buf, data);
	free(data);

	assert_int_equal(jobs_spool(l.spool, &j), 0);
	replay(&l, &p);
	assert_int_equal(p.done, 1);		/* a duplicate, file gone */
	assert_int_equal(count_suffix(l.spool, ""), 0);
	assert_int_equal(rint_("GET " Q "id"), 1);
	assert_int_equal(rint_("EXISTS " Q "2"), 0);
	lv_close(&l);
}

/* The first job Redis does not take stops the run; the rest stay. */
static void
test_live_replay_stops(void **state)
{
	struct lv	l;
	struct job	j;
	struct rpl	p;
	int		i;

	(void)state;
	lv_open(&l, 300);
	mkjob(&j, "conv_s1", 1, "general", 1);
	assert_int_equal(jobs_spool(l.spool, &j), 0);
	mkjob(&j, "conv_s2", 1, "general", 1);
	assert_int_equal(jobs_spool(l.spool, &j), 0);
	mkjob(&j, "conv_s3", 1, "general", 1);
	assert_int_equal(jobs_spool(l.spool, &j), 0);
	kill(srv.pid, SIGSTOP);
	replay(&l, &p);
	kill(srv.pid, SIGCONT);
	assert_int_equal(p.done, 0);
	assert_int_equal(p.left, 3);
	assert_int_equal(count_suffix(l.spool, ".job"), 3);
	for (i = 0; i < 40 && rint_("EXISTS " Q "1") != 1; i++)
		usleep(50 * 1000);
	replay(&l, &p);
	assert_int_equal(p.done, 3);
	assert_int_equal(p.left, 0);
	assert_int_equal(count_suffix(l.spool, ""), 0);
	assert_int_equal(rint_("GET " Q "id"), 3);
	lv_close(&l);
}

/* At most 10000 files per run; the next run takes the rest. */
static void
test_live_replay_bound(void **state)
{
	struct lv	l;
	struct rpl	p;
	char		name[32], text[256];
	int		i;

	(void)state;
	lv_open(&l, 2000);
	for (i = 0; i < 10003; i++) {
		snprintf(name, sizeof(name), "c%05d.job", i);
		snprintf(text, sizeof(text), "{\"prefix\":\"bull\",\"data\":"
		    "{\"conversationId\":\"c%05d\",\"userId\":\"u\","
		    "\"isFirstCall\":true,\"callType\":\"general\","
		    "\"timestamp\":%d}}", i, i);
		write_file(l.spool, name, text);
	}
	replay(&l, &p);
	assert_int_equal(p.done, 10000);
	assert_int_equal(p.left, 3);
	assert_int_equal(count_suffix(l.spool, ".job"), 3);
	replay(&l, &p);
	assert_int_equal(p.done, 3);
	assert_int_equal(p.left, 0);
	assert_int_equal(count_suffix(l.spool, ""), 0);
	assert_int_equal(rint_("GET " Q "id"), 10003);
	lv_close(&l);
}

/* --- held in memory ------------------------------------------------- */

static void
held_cb(unsigned to_redis, unsigned to_spool, unsigned left, void *arg)
{
	struct hres	*h = arg;

	h->n++;
	h->sync = h->in_call;
	h->to_redis = to_redis;
	h->to_spool = to_spool;
	h->left = left;
}

/* One pass that ends before jobs_held_retry() returns (no Redis). */
static void
held_retry(struct rds *r, const char *spool, struct hres *h)
{
	memset(h, 0, sizeof(*h));
	h->in_call = 1;
	assert_int_equal(jobs_held_retry(r, JOBS_PREFIX, spool, held_cb, h),
	    0);
	h->in_call = 0;
	assert_int_equal(h->n, 1);
	assert_true(h->sync);
}

/* A spool path under a regular file: ENOTDIR, even for root. */
static void
bad_spool(const char *dir, char *out, size_t size)
{
	write_file(dir, "file", "");
	snprintf(out, size, "%s/file/spool", dir);
}

/* Redis gone and the spool unwritable: FAILED, and nothing on disk. */
static void
test_held_unsaved(void **state)
{
	struct job	j;
	struct out	r;
	char		dir[200], bad[300], log[4096];
	int		saved;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/unsaved.XXXXXX", srv.dir);
	assert_non_null(mkdtemp(dir));
	bad_spool(dir, bad, sizeof(bad));
	mkjob(&j, "conv_nowhere", 1, "general", 1);
	memset(&r, 0, sizeof(r));
	cap_begin(&saved);
	assert_int_equal(jobs_enqueue(NULL, JOBS_PREFIX, bad, &j, out_cb, &r),
	    0);
	cap_end(saved, log, sizeof(log));
	assert_int_equal(r.n, 1);
	assert_int_equal(r.o, JOB_FAILED);
	assert_string_equal(r.id, "");
	assert_non_null(strstr(log, "conv_nowhere: Redis did not take it "
	    "(not connected) and the spool failed: not saved"));
	assert_non_null(strstr(log, "Not a directory"));
	assert_int_equal(count_suffix(dir, ""), 1);	/* "file" only */
	rm_tree(dir);
}

/*
 * Held while the spool fails (said once, not on every pass), then
 * spooled oldest first once it works; the files are what the replay
 * reads, with the pass's prefix.
 */
static void
test_held_spool(void **state)
{
	struct hres	h;
	struct job	j;
	char		dir[200], bad[300], good[300];
	char		log[8192], path[PATH_MAX], buf[1024], want[1024], *data;
	int		saved, i;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/held.XXXXXX", srv.dir);
	assert_non_null(mkdtemp(dir));
	bad_spool(dir, bad, sizeof(bad));
	snprintf(good, sizeof(good), "%s/spool", dir);
	assert_int_equal(jobs_held(), 0);
	memset(&h, 0, sizeof(h));
	assert_int_equal(jobs_held_retry(NULL, JOBS_PREFIX, good, held_cb,
	    &h), -1);				/* nothing held */
	assert_int_equal(h.n, 0);
	cap_begin(&saved);
	for (i = 0; i < 3; i++) {
		snprintf(buf, sizeof(buf), "conv_held%d", i);
		mkjob(&j, buf, i & 1, i == 2 ? "health_check" : "general",
		    1764000000000ULL + (uint64_t)i);
		assert_int_equal(jobs_hold(&j), 0);
	}
	assert_int_equal(jobs_held(), 3);
	held_retry(NULL, bad, &h);
	assert_int_equal(h.to_redis, 0);
	assert_int_equal(h.to_spool, 0);
	assert_int_equal(h.left, 3);
	held_retry(NULL, bad, &h);
	assert_int_equal(h.left, 3);
	cap_end(saved, log, sizeof(log));
	assert_non_null(strstr(log, "conv_held0: neither Redis nor the spool "
	    "took it: held in memory (1 held)"));
	assert_non_null(strstr(log, "conv_held2: neither Redis nor the spool "
	    "took it: held in memory (3 held)"));
	assert_non_null(strstr(log, "3 post-call jobs held in memory: the "
	    "spool"));
	assert_non_null(strstr(log, "still fails (Not a directory)"));
	assert_null(strstr(strstr(log, "still fails") + 1, "still fails"));
	assert_int_equal(jobs_held(), 3);

	cap_begin(&saved);
	held_retry(NULL, good, &h);
	cap_end(saved, log, sizeof(log));
	assert_int_equal(h.to_redis, 0);
	assert_int_equal(h.to_spool, 3);
	assert_int_equal(h.left, 0);
	assert_int_equal(jobs_held(), 0);
	assert_int_equal(count_suffix(good, ".job"), 3);
	assert_int_equal(count_suffix(good, ""), 3);
	assert_true(strstr(log, "conv_held0: held job spooled") <
	    strstr(log, "conv_held1: held job spooled"));
	for (i = 0; i < 3; i++) {
		snprintf(buf, sizeof(buf), "conv_held%d", i);
		mkjob(&j, buf, i & 1, i == 2 ? "health_check" : "general",
		    1764000000000ULL + (uint64_t)i);
		data = job_data_json(&j);
		snprintf(want, sizeof(want), "{\"prefix\":\"bull\",\"data\":"
		    "%s}\n", data);
		free(data);
		snprintf(path, sizeof(path), "%s/conv_held%d.job", good, i);
		assert_true(read_file(path, buf, sizeof(buf)) > 0);
		assert_string_equal(buf, want);
	}
	memset(&h, 0, sizeof(h));
	assert_int_equal(jobs_held_retry(NULL, JOBS_PREFIX, good, held_cb,
	    &h), -1);
	assert_int_equal(h.n, 0);
	rm_tree(dir);
}

/*
 * At most JOBS_HOLD_MAX: the next one is refused and logged at error
 * level with its data.  At exit, what cannot be spooled is logged the
 * same way; what can be is spooled.
 */
static void
test_held_bound_flush(void **state)
{
	struct job	j;
	char		dir[200], bad[300], good[300];
	char		cid[32], *log, *data, *p;
	size_t		logsz = 1 << 20;
	int		saved, i, n;

	(void)state;
	assert_non_null(log = malloc(logsz));
	snprintf(dir, sizeof(dir), "%s/bound.XXXXXX", srv.dir);
	assert_non_null(mkdtemp(dir));
	bad_spool(dir, bad, sizeof(bad));
	snprintf(good, sizeof(good), "%s/spool", dir);
	cap_begin(&saved);
	for (i = 0; i < JOBS_HOLD_MAX; i++) {
		snprintf(cid, sizeof(cid), "conv_b%04d", i);
		mkjob(&j, cid, 1, "general", (uint64_t)i);
		assert_int_equal(jobs_hold(&j), 0);
	}
	mkjob(&j, "conv_over", 0, "health_check", 7);
	assert_int_equal(jobs_hold(&j), -1);
	mkjob(&j, "bad\n", 0, "general", 7);
	assert_int_equal(jobs_hold(&j), -1);
	cap_end(saved, log, logsz);
	assert_int_equal(jobs_held(), JOBS_HOLD_MAX);
	mkjob(&j, "conv_over", 0, "health_check", 7);
	data = job_data_json(&j);
	assert_non_null(p = strstr(log, "error: jobs: conversation conv_over: "
	    "LOST: as many jobs as can be are held in memory already; its "
	    "data: "));
	assert_non_null(strstr(p, data));
	free(data);

	/* Exit, the spool unwritable: every one logged with its data. */
	cap_begin(&saved);
	assert_int_equal(jobs_held_flush(JOBS_PREFIX, bad), JOBS_HOLD_MAX);
	cap_end(saved, log, logsz);
	assert_int_equal(jobs_held(), 0);
	for (n = 0, p = log; (p = strstr(p, "LOST at exit")) != NULL; p++)
		n++;
	assert_int_equal(n, JOBS_HOLD_MAX);
	assert_non_null(strstr(log, "conv_b0999: LOST at exit: neither Redis "
	    "nor the spool took it; its data: {\"conversationId\":"
	    "\"conv_b0999\""));

	/* Exit, the spool writable: spooled, nothing lost. */
	mkjob(&j, "conv_exit1", 1, "general", 1);
	assert_int_equal(jobs_hold(&j), 0);
	mkjob(&j, "conv_exit2", 1, "general", 2);
	assert_int_equal(jobs_hold(&j), 0);
	assert_int_equal(jobs_held_flush(JOBS_PREFIX, good), 0);
	assert_int_equal(jobs_held(), 0);
	assert_int_equal(count_suffix(good, ".job"), 2);
	free(log);
	rm_tree(dir);
}

/*
 * Redis there: held jobs go to it one at a time, oldest first, never
 * from inside jobs_held_retry(); one already queued is a duplicate and
 * leaves the queue too.  No second pass while one is under way.
 */
static void
test_live_held(void **state)
{
	struct lv	 l;
	struct job	 j;
	struct out	 r;
	struct hres	 h, h2;
	char		 buf[256], *data;

	(void)state;
	lv_open(&l, 2000);
	mkjob(&j, "conv_h1", 1, "general", 1);
	enqueue(&l, &j, &r);
	assert_int_equal(r.o, JOB_ADDED);
	assert_int_equal(jobs_hold(&j), 0);
	mkjob(&j, "conv_h2", 0, "health_check", 2);
	assert_int_equal(jobs_hold(&j), 0);
	mkjob(&j, "conv_h3", 1, "general", 3);
	assert_int_equal(jobs_hold(&j), 0);
	memset(&h, 0, sizeof(h));
	assert_int_equal(jobs_held_retry(l.rds, JOBS_PREFIX, l.spool, held_cb,
	    &h), 0);
	assert_int_equal(h.n, 0);
	memset(&h2, 0, sizeof(h2));
	assert_int_equal(jobs_held_retry(l.rds, JOBS_PREFIX, l.spool, held_cb,
	    &h2), -1);
	assert_true(tl_wait_until(l.base, &h.n, 1, 5000));
	assert_int_equal(h.n, 1);
	assert_int_equal(h2.n, 0);
	assert_int_equal(h.to_redis, 3);
	assert_int_equal(h.to_spool, 0);
	assert_int_equal(h.left, 0);
	assert_int_equal(jobs_held(), 0);
	assert_int_equal(rint_("GET " Q "id"), 3);
	assert_int_equal(rstr(buf, sizeof(buf), "HGET " Q "2 data"), 1);
	mkjob(&j, "conv_h2", 0, "health_check", 2);
	data = job_data_json(&j);
	assert_string_equal(buf, data);
	free(data);
	assert_int_equal(rstr(buf, sizeof(buf), "HGET " Q "3 data"), 1);
	assert_non_null(strstr(buf, "conv_h3"));
	assert_int_equal(count_suffix(l.spool, ""), 0);
	lv_close(&l);
}

/*
 * Redis hung: the first held job times out, the pass turns to the
 * spool and spools all of them; the script that ran late and the
 * replay make one job each.
 */
static void
test_live_held_timeout(void **state)
{
	struct lv	l;
	struct job	j;
	struct hres	h;
	struct rpl	p;
	int		i;

	(void)state;
	lv_open(&l, 300);
	mkjob(&j, "conv_ht1", 1, "general", 1);
	assert_int_equal(jobs_hold(&j), 0);
	mkjob(&j, "conv_ht2", 1, "general", 2);
	assert_int_equal(jobs_hold(&j), 0);
	kill(srv.pid, SIGSTOP);
	memset(&h, 0, sizeof(h));
	assert_int_equal(jobs_held_retry(l.rds, JOBS_PREFIX, l.spool, held_cb,
	    &h), 0);
	assert_true(tl_wait_until(l.base, &h.n, 1, 5000));
	kill(srv.pid, SIGCONT);
	assert_int_equal(h.to_redis, 0);
	assert_int_equal(h.to_spool, 2);
	assert_int_equal(h.left, 0);
	assert_int_equal(jobs_held(), 0);
	assert_int_equal(count_suffix(l.spool, ".job"), 2);
	for (i = 0; i < 40 && rint_("EXISTS " Q "1") != 1; i++)
		usleep(50 * 1000);
	for (i = 0; i < 40 && !rds_connected(l.rds); i++) {
		struct timeval tv = { 0, 100000 };
		event_base_loopexit(l.base, &tv);
		event_base_dispatch(l.base);
	}
	replay(&l, &p);
	assert_int_equal(p.done, 2);
	assert_int_equal(p.left, 0);
	assert_int_equal(count_suffix(l.spool, ""), 0);
	assert_int_equal(rint_("GET " Q "id"), 2);
	lv_close(&l);
}

int
main(void)
{
	const struct CMUnitTest pure[] = {
		cmocka_unit_test(test_data_json_exact),
		cmocka_unit_test(test_data_json_rejects),
		cmocka_unit_test(test_spool_file),
		cmocka_unit_test(test_spool_names),
	};
	const struct CMUnitTest live[] = {
		cmocka_unit_test(test_live_layout),
		cmocka_unit_test(test_live_noscript),
		cmocka_unit_test(test_live_script_error),
		cmocka_unit_test(test_live_corrupt),
		cmocka_unit_test(test_live_replay_empty),
		cmocka_unit_test(test_live_timeout),
		cmocka_unit_test(test_live_killed_replay),
		cmocka_unit_test(test_live_replay_stops),
		cmocka_unit_test(test_live_replay_bound),
		cmocka_unit_test(test_held_unsaved),
		cmocka_unit_test(test_held_spool),
		cmocka_unit_test(test_held_bound_flush),
		cmocka_unit_test(test_live_held),
		cmocka_unit_test(test_live_held_timeout),
	};
	int	rc;

	/* hiredis 0.14 writes with write(2). */
	signal(SIGPIPE, SIG_IGN);
	log_init(LF_TEXT, LT_STDERR, LL_INFO);
	rc = cmocka_run_group_tests_name("jobs pure", pure, NULL, NULL);
	rc += cmocka_run_group_tests_name("jobs live", live, grp_setup,
	    grp_teardown);
	return rc;
}
