/*
 * jobs.c - the post-call job (DESIGN §4 and §6, docs/bullmq.md).  Owns
 * the Lua script that adds a delayed BullMQ job to <prefix>:post-call-
 * processing:* in one atomic step, deduplicated by de:<conversationId>
 * for 5 minutes, and the spool directory that takes the job when Redis
 * cannot: <name>.job files (temp file, fsync, rename, directory fsync),
 * replayed by the supervisor, corrupt ones renamed <name>.bad; and the
 * jobs the supervisor holds in memory while neither Redis nor the spool
 * takes them.  Used by the worker (call end) and the supervisor
 * (orphaned calls, replay, held jobs); it touches only that queue's keys
 * and the spool directory.
 */
#include <sys/queue.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "jobs.h"
#include "log.h"
#include "redis.h"

/*
 * Contracts (the header is shorter):
 * - jobs_enqueue() returns -1, and never calls cb, only when its
 *   arguments are unusable (a field that is not a short, control-free
 *   string, an unknown call type, a bad prefix).  Otherwise cb runs
 *   exactly once: later, from the Redis reply, or before jobs_enqueue()
 *   returns when Redis refuses the command at once (not connected, or
 *   a NULL rds).
 *   cb's string is the BullMQ job id (ADDED, DUPLICATE), the spool file
 *   (SPOOLED) or NULL (FAILED).  A job whose command rds_free() drops is
 *   lost and cb never runs: free the rds only after every cb.
 * - Redis unavailable (refused, timeout, disconnection, or an error
 *   reply that means "not now": LOADING, BUSY, READONLY...) -> spooled.
 *   Any other error reply is a bug of ours: a log line, and the job is
 *   spooled all the same so that it is not lost (JOB_SPOOLED).
 *   JOB_FAILED means only that the spool failed too: no copy but the
 *   caller's (the worker's goes to the supervisor, which holds it).
 * - A timeout does not prove the script did not run; the replay then
 *   finds the dedup key and answers DUPLICATE.  Exactly once holds while
 *   the replay comes within the 5 minutes of the key.
 * - jobs_replay() returns 0 iff its cb will run, never from inside
 *   jobs_replay() itself.  Jobs go one at a time; the first that Redis
 *   does not take stops the run and the rest stay for the next one.
 * - A spool file records the prefix it was meant for; jobs_spool(),
 *   which is not told, records "" and the replay uses its own prefix.
 * - Held jobs leave the queue only once Redis answered added or
 *   duplicate, or their spool file is in place: never twice in flight,
 *   never dropped but past JOBS_HOLD_MAX or at exit, both logged at
 *   error level with the job's data so that it can be added by hand.
 */

#define JOBS_ATTEMPTS	3
#define JOBS_BACKOFF_MS	1000
#define JOBS_KEEP_DONE	100		/* removeOnComplete */
#define JOBS_KEEP_FAIL	50		/* removeOnFail */
#define JOBS_MAXEVENTS	10000
#define JOBS_PREFIX_MAX	64
#define JOBS_KEY_MAX	256
#define JOBS_FNAME_MAX	200		/* encoded name, before ".job" */
#define JOBS_FILE_MAX	8192		/* a spool file, in bytes */
#define JOBS_REPLAY_MAX	10000		/* files per replay run */
#define JOBS_TS_MAX	9007199254740991ULL	/* 2^53 - 1: exact in JS */
#define JOBS_NKEYS	6
#define JOBS_NARGV	8

struct jobs_req {
	struct rds	*jr_rds;
	struct job	 jr_job;
	char		 jr_spool[PATH_MAX];	/* "": replay, no re-spool */
	char		 jr_prefix[JOBS_PREFIX_MAX + 1];
	char		 jr_keys[JOBS_NKEYS][JOBS_KEY_MAX];
	char		 jr_qprefix[JOBS_KEY_MAX];
	char		*jr_data;
	char		*jr_opts;
	int		 jr_eval;		/* the script text was sent */
	job_cb		 jr_cb;
	void		*jr_arg;
};

struct jobs_replay {
	struct rds	*rp_rds;
	char		 rp_prefix[JOBS_PREFIX_MAX + 1];
	char		 rp_dir[PATH_MAX];
	int		 rp_dfd;		/* rp_dir, while names remain */
	char		**rp_names;
	size_t		 rp_n;
	size_t		 rp_next;
	unsigned	 rp_done;
	unsigned	 rp_more;		/* .job files past the bound */
	unsigned	 rp_unread;		/* files not readable now */
	int		 rp_starting;		/* inside jobs_replay() */
	void		(*rp_cb)(unsigned, unsigned, void *);
	void		*rp_arg;
};

struct jobs_hentry {
	TAILQ_ENTRY(jobs_hentry)	 he_entry;
	struct job			 he_job;
};

/* The held jobs and the one pass that may be under way. */
static struct {
	TAILQ_HEAD(, jobs_hentry)	 h_q;
	unsigned			 h_n;
	int				 h_init;
	int				 h_running;
	int				 h_spool_failing;	/* said once */
	struct rds			*h_rds;
	char				 h_prefix[JOBS_PREFIX_MAX + 1];
	char				 h_spool[PATH_MAX];
	unsigned			 h_to_redis;
	unsigned			 h_to_spool;
	void				(*h_cb)(unsigned, unsigned, unsigned,
					    void *);
	void				*h_arg;
} held;

static int	str_ok(const char *, size_t, int);
static int	prefix_ok(const char *);
static int	job_ok(const struct job *);
static json_t	*job_data_obj(const struct job *);
static char	*job_opts_json(const struct job *);
static const char *script_sha(void);
static void	script_load(struct rds *);
static void	script_loaded(const redisReply *, const char *, void *);
static struct jobs_req *req_new(const char *, const char *,
		    const struct job *, job_cb, void *);
static void	req_free(struct jobs_req *);
static int	req_send(struct jobs_req *);
static void	req_reply(const redisReply *, const char *, void *);
static int	reply_busy(const redisReply *);
static int	reply_result(const redisReply *, char *, size_t);
static void	req_finish(struct jobs_req *, enum job_outcome,
		    const char *, const char *);
static int	spool_name(const char *, char *, size_t);
static char	*spool_text(const char *, const struct job *);
static int	spool_write(const char *, const char *, const struct job *,
		    char *, size_t, int);
static void	spool_warn(int, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
static int	write_all(int, const char *, size_t);
static int	fsync_dir(const char *);
static int	spool_parse(const char *, size_t, struct job *, char *,
		    size_t);
static int	spool_parse_data(json_t *, struct job *);
static int	spool_read(int, const char *, struct job *, char *, size_t,
		    const char **);
static int	replay_scan(struct jobs_replay *);
static int	replay_cmp(const void *, const void *);
static int	replay_next(struct jobs_replay *);
static int	replay_one(struct jobs_replay *, const char *);
static void	replay_bad(struct jobs_replay *, const char *, const char *);
static void	replay_job_done(enum job_outcome, const char *, void *);
static void	replay_pinged(const redisReply *, const char *, void *);
static void	replay_end(struct jobs_replay *);
static void	replay_free(struct jobs_replay *);
static void	held_init(void);
static void	held_pop(void);
static int	held_send(void);
static void	held_done(enum job_outcome, const char *, void *);
static void	held_spool(void);
static void	held_end(void);

/*
 * KEYS: id meta events delayed marker de:<conversationId>
 * ARGV: queue prefix (P), name, data, opts, delay, dedup id, dedup ttl,
 * default events MAXLEN.  Returns {1, id} (added) or {0, id} (the
 * dedup key's job).  The id is taken as GET id + 1 and only INCRed once
 * the dedup key is ours, so a duplicate leaves no gap in the counter.
 * Delayed jobs only: a Worker promotes them into wait, or into paused
 * while meta.paused is set (BullMQ's own delayed add does not look at
 * paused either).  TIME needs effects replication (default since 5.0).
 * Every key is checked before the first write, so an error reply never
 * leaves a dedup key behind without its job.
 */
static const char jobs_script[] =
"if redis.replicate_commands then redis.replicate_commands() end\n"
"local rcall = redis.call\n"
"local P, name, data, opts = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
"local delay = tonumber(ARGV[5])\n"
"local deid, dettl = ARGV[6], tonumber(ARGV[7])\n"
"local maxEvents = tonumber(ARGV[8])\n"
"if not delay or delay <= 0 or not dettl or not maxEvents then\n"
"  return redis.error_reply('ERR naiberd jobs: bad arguments')\n"
"end\n"
"local function bad(k, want)\n"
"  local t = rcall('TYPE', k)['ok']\n"
"  return t ~= 'none' and t ~= want\n"
"end\n"
"local refusal = 'ERR naiberd jobs: a queue key holds something else '\n"
"  .. 'than BullMQ puts there'\n"
"if bad(KEYS[1], 'string') or bad(KEYS[2], 'hash') or\n"
"    bad(KEYS[3], 'stream') or bad(KEYS[4], 'zset') or\n"
"    bad(KEYS[5], 'zset') or bad(KEYS[6], 'string') then\n"
"  return redis.error_reply(refusal)\n"
"end\n"
"local last = rcall('GET', KEYS[1])\n"
"if last and not string.match(last, '^%d+$') then\n"
"  return redis.error_reply(refusal)\n"
"end\n"
"local t = rcall('TIME')\n"
"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
"if rcall('EXISTS', KEYS[2]) == 0 then\n"
"  rcall('HSET', KEYS[2], 'opts.maxLenEvents', maxEvents)\n"
"else\n"
"  local m = rcall('HGET', KEYS[2], 'opts.maxLenEvents')\n"
"  if m and string.match(m, '^%d+$') then maxEvents = tonumber(m) end\n"
"end\n"
"local id = (tonumber(last) or 0) + 1\n"
"if not rcall('SET', KEYS[6], id, 'PX', dettl, 'NX') then\n"
"  local cur = rcall('GET', KEYS[6])\n"
"  rcall('XADD', KEYS[3], 'MAXLEN', '~', maxEvents, '*', 'event',\n"
"    'deduplicated', 'jobId', cur, 'deduplicationId', deid,\n"
"    'deduplicatedJobId', id)\n"
"  return {0, cur}\n"
"end\n"
"id = rcall('INCR', KEYS[1])\n"
"rcall('HSET', P .. id, 'name', name, 'data', data, 'opts', opts,\n"
"  'timestamp', now, 'delay', delay, 'priority', 0, 'deid', deid)\n"
"rcall('XADD', KEYS[3], 'MAXLEN', '~', maxEvents, '*', 'event', 'added',\n"
"  'jobId', id, 'name', name)\n"
"local due = now + delay\n"
"rcall('ZADD', KEYS[4], due * 4096 + id % 4096, id)\n"
"rcall('XADD', KEYS[3], 'MAXLEN', '~', maxEvents, '*', 'event',\n"
"  'delayed', 'jobId', id, 'delay', due)\n"
"local first = rcall('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')\n"
"rcall('ZADD', KEYS[5], math.floor(tonumber(first[2]) / 4096), '1')\n"
"return {1, tostring(id)}\n";

/* KEYS[1..5]; KEYS[6] is de:<conversationId>. */
static const char *const jobs_key_names[JOBS_NKEYS - 1] = {
	"id", "meta", "events", "delayed", "marker"
};

/* Error replies that mean "Redis cannot take it now", not a bug. */
static const char *const jobs_busy_errors[] = {
	"LOADING", "BUSY", "MASTERDOWN", "READONLY", "OOM", "MISCONF",
	"TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "NOAUTH"
};

/* --- the job -------------------------------------------------------- */

/* A NUL within size, no control byte, not empty if nonempty. */
static int
str_ok(const char *s, size_t size, int nonempty)
{
	size_t	i;

	for (i = 0; i < size && s[i] != '\0'; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return i < size && (!nonempty || i > 0);
}

static int
prefix_ok(const char *p)
{
	size_t	i;

	if (p == NULL || !str_ok(p, JOBS_PREFIX_MAX + 1, 1))
		return 0;
	for (i = 0; p[i] != '\0'; i++)
		if (p[i] == ' ')
			return 0;
	return 1;
}

static int
job_ok(const struct job *j)
{
	return j != NULL &&
	    str_ok(j->j_conversation_id, sizeof(j->j_conversation_id), 1) &&
	    str_ok(j->j_user_id, sizeof(j->j_user_id), 0) &&
	    str_ok(j->j_call_type, sizeof(j->j_call_type), 1) &&
	    (strcmp(j->j_call_type, "general") == 0 ||
	    strcmp(j->j_call_type, "health_check") == 0) &&
	    j->j_timestamp_ms <= JOBS_TS_MAX;
}

/* NULL if the job is unusable (jansson also refuses bad UTF-8). */
static json_t *
job_data_obj(const struct job *j)
{
	if (!job_ok(j))
		return NULL;
	return json_pack("{s:s, s:s, s:b, s:s, s:I}",
	    "conversationId", j->j_conversation_id,
	    "userId", j->j_user_id,
	    "isFirstCall", j->j_is_first_call != 0,
	    "callType", j->j_call_type,
	    "timestamp", (json_int_t)j->j_timestamp_ms);
}

char *
job_data_json(const struct job *j)
{
	json_t	*o;
	char	*s;

	if ((o = job_data_obj(j)) == NULL)
		return NULL;
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

/*
 * removeOnComplete/removeOnFail as plain counts: what BullMQ 5.81 and
 * 6.7 store for the original's `removeOnComplete: 100` (their Workers
 * read a number or {count}).
 */
static char *
job_opts_json(const struct job *j)
{
	json_t	*o;
	char	*s;

	o = json_pack("{s:i, s:{s:s, s:i}, s:i, s:i, s:i, s:{s:s, s:i}}",
	    "attempts", JOBS_ATTEMPTS,
	    "backoff", "type", "exponential", "delay", JOBS_BACKOFF_MS,
	    "removeOnComplete", JOBS_KEEP_DONE,
	    "removeOnFail", JOBS_KEEP_FAIL,
	    "delay", JOBS_DELAY_MS,
	    "de", "id", j->j_conversation_id, "ttl", JOBS_DEDUP_MS);
	if (o == NULL)
		return NULL;
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

/* --- the script ----------------------------------------------------- */

static const char *
script_sha(void)
{
	static char	hex[2 * EVP_MAX_MD_SIZE + 1];
	unsigned char	md[EVP_MAX_MD_SIZE];
	unsigned int	n, i;

	if (hex[0] != '\0')
		return hex;
	if (EVP_Digest(jobs_script, sizeof(jobs_script) - 1, md, &n,
	    EVP_sha1(), NULL) != 1)
		return NULL;
	for (i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return hex;
}

/* Once per process; after a Redis restart NOSCRIPT sends it again. */
static void
script_load(struct rds *r)
{
	static int	 sent;
	const char	*argv[3] = { "SCRIPT", "LOAD", jobs_script };
	size_t		 lens[3] = { 6, 4, sizeof(jobs_script) - 1 };

	if (sent)
		return;
	if (rds_cmd(r, script_loaded, NULL, 3, argv, lens) == 0)
		sent = 1;
}

static void
script_loaded(const redisReply *rep, const char *err, void *arg)
{
	const char	*sha = script_sha();

	(void)arg;
	if (rep == NULL)
		log_debug("jobs: SCRIPT LOAD: %s", err ? err : "no reply");
	else if (rep->type == REDIS_REPLY_ERROR)
		log_warnx("jobs: SCRIPT LOAD refused: %s", rep->str);
	else if (rep->type != REDIS_REPLY_STRING || sha == NULL ||
	    strcmp(rep->str, sha) != 0)
		log_warnx("jobs: SCRIPT LOAD answered another SHA1 than ours");
}

/* --- enqueue -------------------------------------------------------- */

int
jobs_enqueue(struct rds *r, const char *prefix, const char *spool,
    const struct job *j, job_cb cb, void *arg)
{
	struct jobs_req	*q;

	if (spool == NULL || spool[0] == '\0' ||
	    strlen(spool) >= sizeof(q->jr_spool)) {
		log_warnx("jobs: no usable spool directory");
		return -1;
	}
	if ((q = req_new(prefix, spool, j, cb, arg)) == NULL)
		return -1;
	q->jr_rds = r;
	if (r != NULL)
		script_load(r);
	if (r == NULL || req_send(q) == -1)
		req_finish(q, JOB_SPOOLED, NULL, "not connected");
	return 0;
}

/* spool "": a replay (no spooling again). */
static struct jobs_req *
req_new(const char *prefix, const char *spool, const struct job *j,
    job_cb cb, void *arg)
{
	struct jobs_req	*q;
	int		 i, n;

	if (!prefix_ok(prefix) || !job_ok(j)) {
		log_warnx("jobs: refusing a job with a bad prefix or field");
		return NULL;
	}
	if ((q = calloc(1, sizeof(*q))) == NULL) {
		log_warn("jobs: calloc");
		return NULL;
	}
	q->jr_job = *j;
	q->jr_cb = cb;
	q->jr_arg = arg;
	snprintf(q->jr_spool, sizeof(q->jr_spool), "%s", spool);
	snprintf(q->jr_prefix, sizeof(q->jr_prefix), "%s", prefix);
	snprintf(q->jr_qprefix, sizeof(q->jr_qprefix), "%s:%s:", q->jr_prefix,
	    JOBS_QUEUE);
	for (i = 0; i < JOBS_NKEYS - 1; i++)
		snprintf(q->jr_keys[i], JOBS_KEY_MAX, "%s:%s:%s", q->jr_prefix,
		    JOBS_QUEUE, jobs_key_names[i]);
	n = snprintf(q->jr_keys[JOBS_NKEYS - 1], JOBS_KEY_MAX, "%s:%s:de:%s",
	    q->jr_prefix, JOBS_QUEUE, q->jr_job.j_conversation_id);
	q->jr_data = job_data_json(j);
	q->jr_opts = job_opts_json(j);
	if (n < 0 || n >= JOBS_KEY_MAX || q->jr_data == NULL ||
	    q->jr_opts == NULL) {
		log_warnx("jobs: conversation %s: cannot build the job",
		    j->j_conversation_id);
		req_free(q);
		return NULL;
	}
	return q;
}

static void
req_free(struct jobs_req *q)
{
	if (q == NULL)
		return;
	free(q->jr_data);
	free(q->jr_opts);
	free(q);
}

/* EVALSHA, or EVAL once NOSCRIPT was seen; rds_cmd()'s answer. */
static int
req_send(struct jobs_req *q)
{
	const char	*argv[3 + JOBS_NKEYS + JOBS_NARGV];
	size_t		 lens[3 + JOBS_NKEYS + JOBS_NARGV];
	char		 nkeys[8], delay[24], ttl[24], maxev[24];
	const char	*sha = q->jr_eval ? NULL : script_sha();
	int		 i, argc = 0;

	snprintf(nkeys, sizeof(nkeys), "%d", JOBS_NKEYS);
	snprintf(delay, sizeof(delay), "%d", JOBS_DELAY_MS);
	snprintf(ttl, sizeof(ttl), "%d", JOBS_DEDUP_MS);
	snprintf(maxev, sizeof(maxev), "%d", JOBS_MAXEVENTS);
	argv[argc++] = sha != NULL ? "EVALSHA" : "EVAL";
	argv[argc++] = sha != NULL ? sha : jobs_script;
	argv[argc++] = nkeys;
	for (i = 0; i < JOBS_NKEYS; i++)
		argv[argc++] = q->jr_keys[i];
	argv[argc++] = q->jr_qprefix;
	argv[argc++] = JOBS_NAME;
	argv[argc++] = q->jr_data;
	argv[argc++] = q->jr_opts;
	argv[argc++] = delay;
	argv[argc++] = q->jr_job.j_conversation_id;
	argv[argc++] = ttl;
	argv[argc++] = maxev;
	for (i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	q->jr_eval = sha == NULL;
	return rds_cmd(q->jr_rds, req_reply, q, argc, argv, lens);
}

static void
req_reply(const redisReply *rep, const char *err, void *arg)
{
	struct jobs_req	*q = arg;
	char		 id[32];
	int		 added;

	if (rep == NULL) {
		req_finish(q, JOB_SPOOLED, NULL, err != NULL ? err : "gone");
		return;
	}
	if (rep->type == REDIS_REPLY_ERROR && !q->jr_eval &&
	    strncmp(rep->str, "NOSCRIPT", 8) == 0) {
		q->jr_eval = 1;
		if (req_send(q) == -1)
			req_finish(q, JOB_SPOOLED, NULL, "not connected");
		return;
	}
	if (reply_busy(rep)) {
		req_finish(q, JOB_SPOOLED, NULL, rep->str);
		return;
	}
	if ((added = reply_result(rep, id, sizeof(id))) == -1) {
		req_finish(q, JOB_FAILED, NULL, rep->type ==
		    REDIS_REPLY_ERROR ? rep->str : "an unexpected reply");
		return;
	}
	req_finish(q, added ? JOB_ADDED : JOB_DUPLICATE, id, NULL);
}

static int
reply_busy(const redisReply *rep)
{
	size_t	i, n;

	if (rep->type != REDIS_REPLY_ERROR || rep->str == NULL)
		return 0;
	for (i = 0; i < sizeof(jobs_busy_errors) /
	    sizeof(jobs_busy_errors[0]); i++) {
		n = strlen(jobs_busy_errors[i]);
		if (strncmp(rep->str, jobs_busy_errors[i], n) == 0 &&
		    (rep->str[n] == ' ' || rep->str[n] == '\0'))
			return 1;
	}
	return 0;
}

/* The script's {added, id}: 1 added, 0 duplicate, -1 malformed. */
static int
reply_result(const redisReply *rep, char *id, size_t idsz)
{
	const redisReply	*a, *b;
	size_t			 i;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2)
		return -1;
	a = rep->element[0];
	b = rep->element[1];
	if (a->type != REDIS_REPLY_INTEGER || (a->integer != 0 &&
	    a->integer != 1))
		return -1;
	if (b->type == REDIS_REPLY_INTEGER)
		snprintf(id, idsz, "%lld", b->integer);
	else if (b->type == REDIS_REPLY_STRING && b->len > 0 &&
	    b->len < idsz) {
		memcpy(id, b->str, b->len);
		id[b->len] = '\0';
	} else
		return -1;
	for (i = 0; id[i] != '\0'; i++)
		if (id[i] < '0' || id[i] > '9')
			return -1;
	return (int)a->integer;
}

/*
 * The end of a request: spool it if Redis did not take it (not for a
 * replay, whose file is still there), one log line, then cb (last: it
 * may free anything, the rds included).
 */
static void
req_finish(struct jobs_req *q, enum job_outcome o, const char *id,
    const char *why)
{
	char		 path[PATH_MAX];
	const char	*cid = q->jr_job.j_conversation_id, *s = id;
	job_cb		 cb = q->jr_cb;
	void		*arg = q->jr_arg;

	if (o == JOB_FAILED)
		log_warnx("jobs: conversation %s: Redis refused our add "
		    "script (a bug): %s", cid, why);
	if ((o == JOB_SPOOLED || o == JOB_FAILED) && q->jr_spool[0] != '\0') {
		s = NULL;
		if (spool_write(q->jr_spool, q->jr_prefix, &q->jr_job, path,
		    sizeof(path), 0) == -1) {
			log_warnx("jobs: conversation %s: Redis did not take it "
			    "(%s) and the spool failed: not saved", cid, why);
			o = JOB_FAILED;
		} else {
			if (o == JOB_SPOOLED)
				log_warnx("jobs: conversation %s: Redis "
				    "unavailable (%s): spooled to %s", cid, why,
				    path);
			else
				log_warnx("jobs: conversation %s: kept in %s",
				    cid, path);
			o = JOB_SPOOLED;
			s = path;
		}
	} else if (o == JOB_ADDED || o == JOB_DUPLICATE)
		log_debug("jobs: conversation %s: job %s %s", cid, id,
		    o == JOB_ADDED ? "added" : "already there");
	req_free(q);
	if (cb != NULL)
		cb(o, s, arg);
}

/* --- the spool ------------------------------------------------------ */

int
jobs_spool(const char *dir, const struct job *j)
{
	char	path[PATH_MAX];

	if (dir == NULL || dir[0] == '\0' || !job_ok(j)) {
		log_warnx("jobs: cannot spool: no directory or a bad job");
		return -1;
	}
	return spool_write(dir, "", j, path, sizeof(path), 0);
}

/*
 * One name per conversationId, and never the same for two: bytes
 * other than [A-Za-z0-9_-] become %XX; a name too long keeps its head
 * and gets "~" and a 64-bit FNV-1a hash of the whole id.
 */
static int
spool_name(const char *cid, char *out, size_t outsz)
{
	static const char	 hex[] = "0123456789ABCDEF";
	const unsigned char	*p;
	uint64_t		 h = 0xcbf29ce484222325ULL;
	size_t			 o = 0, cut = 0;

	if (outsz < JOBS_FNAME_MAX + 1)
		return -1;
	for (p = (const unsigned char *)cid; *p != '\0'; p++) {
		h = (h ^ *p) * 0x100000001b3ULL;
		if (o + 3 > JOBS_FNAME_MAX - 17) {
			if (cut == 0)
				cut = o;
			continue;
		}
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || *p == '_' || *p == '-')
			out[o++] = (char)*p;
		else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	if (cut != 0)
		o = cut + (size_t)snprintf(out + cut, outsz - cut, "~%016llx",
		    (unsigned long long)h);
	out[o] = '\0';
	return o > 0 ? 0 : -1;
}

/* {"prefix":"bull","data":{...the job's data...}} and a newline. */
static char *
spool_text(const char *prefix, const struct job *j)
{
	json_t	*o, *d;
	char	*s, *t;

	if ((d = job_data_obj(j)) == NULL)
		return NULL;
	if ((o = json_pack("{s:s, s:o}", "prefix", prefix, "data", d)) ==
	    NULL)
		return NULL;
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (s == NULL || asprintf(&t, "%s\n", s) == -1)
		t = NULL;
	free(s);
	return t;
}

/*
 * quiet: failures are logged at debug level (the held jobs' retries,
 * which say once that the spool still fails).  errno is kept for the
 * caller on failure.
 */
static int
spool_write(const char *dir, const char *prefix, const struct job *j,
    char *path, size_t pathsz, int quiet)
{
	char	 name[JOBS_FNAME_MAX + 1], tmp[PATH_MAX], *text;
	int	 fd = -1, n, saved;

	if (spool_name(j->j_conversation_id, name, sizeof(name)) == -1 ||
	    (text = spool_text(prefix, j)) == NULL) {
		log_warnx("jobs: conversation %s: cannot encode the spool "
		    "file", j->j_conversation_id);
		errno = EINVAL;
		return -1;
	}
	n = snprintf(path, pathsz, "%s/%s.job", dir, name);
	if (n < 0 || (size_t)n >= pathsz || (size_t)snprintf(tmp,
	    sizeof(tmp), "%s/.%s.XXXXXX", dir, name) >= sizeof(tmp)) {
		log_warnx("jobs: spool path too long in %s", dir);
		errno = ENAMETOOLONG;
		goto fail;
	}
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		spool_warn(quiet, "jobs: spool directory %s", dir);
		goto fail;
	}
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		spool_warn(quiet, "jobs: spool %s", tmp);
		goto fail;
	}
	if (write_all(fd, text, strlen(text)) == -1 || fsync(fd) == -1) {
		spool_warn(quiet, "jobs: spool %s", tmp);
		goto unlink;
	}
	n = close(fd);
	fd = -1;
	if (n == -1) {
		spool_warn(quiet, "jobs: spool %s", tmp);
		goto unlink;
	}
	if (rename(tmp, path) == -1) {
		spool_warn(quiet, "jobs: spool rename to %s", path);
		goto unlink;
	}
	/* The file is there; only its survival of a power cut is doubtful. */
	if (fsync_dir(dir) == -1)
		log_warn("jobs: spool directory %s: fsync", dir);
	free(text);
	return 0;
unlink:
	saved = errno;
	unlink(tmp);
	errno = saved;
fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	free(text);
	errno = saved;
	return -1;
}

/* log_warn(), or log_debug() with the same text when quiet. */
static void
spool_warn(int quiet, const char *fmt, ...)
{
	int	saved = errno;
	va_list	ap;

	va_start(ap, fmt);
	vlog(quiet ? LL_DEBUG : LL_WARN, saved, fmt, ap);
	va_end(ap);
	errno = saved;
}

static int
write_all(int fd, const char *p, size_t n)
{
	ssize_t	w;

	while (n > 0) {
		if ((w = write(fd, p, n)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
fsync_dir(const char *dir)
{
	int	fd, rc;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* Exactly {"prefix": string, "data": {the five fields}}; else -1. */
static int
spool_parse(const char *text, size_t len, struct job *j, char *prefix,
    size_t prefixsz)
{
	json_error_t	 e;
	json_t		*o, *p, *d;
	int		 rc = -1;

	o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
	if (o == NULL)
		return -1;
	p = json_object_get(o, "prefix");
	d = json_object_get(o, "data");
	if (json_is_object(o) && json_object_size(o) == 2 &&
	    json_is_string(p) && json_string_length(p) < prefixsz &&
	    strlen(json_string_value(p)) == json_string_length(p) &&
	    (json_string_length(p) == 0 || prefix_ok(json_string_value(p))) &&
	    json_is_object(d) && spool_parse_data(d, j) == 0) {
		snprintf(prefix, prefixsz, "%s", json_string_value(p));
		rc = 0;
	}
	json_decref(o);
	return rc;
}

static int
spool_parse_data(json_t *d, struct job *j)
{
	json_t		*c = json_object_get(d, "conversationId");
	json_t		*u = json_object_get(d, "userId");
	json_t		*f = json_object_get(d, "isFirstCall");
	json_t		*t = json_object_get(d, "callType");
	json_t		*ts = json_object_get(d, "timestamp");

	memset(j, 0, sizeof(*j));
	if (json_object_size(d) != 5 || !json_is_string(c) ||
	    !json_is_string(u) || !json_is_boolean(f) ||
	    !json_is_string(t) || !json_is_integer(ts) ||
	    json_integer_value(ts) < 0)
		return -1;
	if (json_string_length(c) >= sizeof(j->j_conversation_id) ||
	    json_string_length(u) >= sizeof(j->j_user_id) ||
	    json_string_length(t) >= sizeof(j->j_call_type))
		return -1;
	memcpy(j->j_conversation_id, json_string_value(c),
	    json_string_length(c));
	memcpy(j->j_user_id, json_string_value(u), json_string_length(u));
	memcpy(j->j_call_type, json_string_value(t), json_string_length(t));
	j->j_is_first_call = json_is_true(f);
	j->j_timestamp_ms = (uint64_t)json_integer_value(ts);
	/* An embedded NUL shows as a shorter C string. */
	if (strlen(j->j_conversation_id) != json_string_length(c) ||
	    strlen(j->j_user_id) != json_string_length(u) || !job_ok(j))
		return -1;
	return 0;
}

/*
 * 0 and the job, 1 if the file is corrupt (*why says how), -1 if it
 * cannot be read now (gone, permissions: not its fault).
 */
static int
spool_read(int dfd, const char *name, struct job *j, char *prefix,
    size_t prefixsz, const char **why)
{
	char		 buf[JOBS_FILE_MAX + 1];
	struct stat	 st;
	size_t		 len = 0;
	ssize_t		 n;
	int		 fd, rc = 1;

	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC);
	if (fd == -1) {
		*why = "not a readable file";
		return errno == ELOOP ? 1 : -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		*why = "not a regular file";
		goto out;
	}
	while (len < sizeof(buf) && (n = read(fd, buf + len,
	    sizeof(buf) - len)) != 0) {
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			*why = "read error";
			rc = -1;
			goto out;
		}
		len += (size_t)n;
	}
	*why = "larger than 8 KiB";
	if (len > JOBS_FILE_MAX)
		goto out;
	*why = "not the expected JSON";
	if (spool_parse(buf, len, j, prefix, prefixsz) == 0)
		rc = 0;
out:
	close(fd);
	return rc;
}

/* --- replay --------------------------------------------------------- */

int
jobs_replay(struct rds *r, const char *prefix, const char *dir,
    void (*cb)(unsigned, unsigned, void *), void *arg)
{
	struct jobs_replay	*rp;

	if (r == NULL || !prefix_ok(prefix) || dir == NULL ||
	    dir[0] == '\0' || strlen(dir) >= sizeof(rp->rp_dir) ||
	    cb == NULL) {
		log_warnx("jobs: replay: bad arguments");
		return -1;
	}
	if (!rds_connected(r))
		return -1;
	if ((rp = calloc(1, sizeof(*rp))) == NULL) {
		log_warn("jobs: replay: calloc");
		return -1;
	}
	rp->rp_rds = r;
	rp->rp_dfd = -1;
	snprintf(rp->rp_prefix, sizeof(rp->rp_prefix), "%s", prefix);
	snprintf(rp->rp_dir, sizeof(rp->rp_dir), "%s", dir);
	rp->rp_cb = cb;
	rp->rp_arg = arg;
	if (replay_scan(rp) == -1 || (rp->rp_n > 0 && (rp->rp_dfd =
	    open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)) {
		if (rp->rp_n > 0 && rp->rp_dfd == -1)
			log_warn("jobs: replay: %s", dir);
		replay_free(rp);
		return -1;
	}
	script_load(r);
	rp->rp_starting = 1;
	if (replay_next(rp) == -1) {
		replay_free(rp);
		return -1;
	}
	rp->rp_starting = 0;
	return 0;
}

/* The *.job names, sorted, at most JOBS_REPLAY_MAX; a missing dir is empty. */
static int
replay_scan(struct jobs_replay *rp)
{
	DIR		*d;
	struct dirent	*de;
	char		**v;
	size_t		 len, cap = 0;

	if ((d = opendir(rp->rp_dir)) == NULL) {
		if (errno == ENOENT)
			return 0;
		log_warn("jobs: replay: %s", rp->rp_dir);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (de->d_name[0] == '.' || len <= 4 ||
		    strcmp(de->d_name + len - 4, ".job") != 0)
			continue;
		if (rp->rp_n == JOBS_REPLAY_MAX) {
			rp->rp_more++;
			continue;
		}
		if (rp->rp_n == cap) {
			cap = cap ? 2 * cap : 64;
			if ((v = reallocarray(rp->rp_names, cap,
			    sizeof(*v))) == NULL)
				goto nomem;
			rp->rp_names = v;
		}
		if ((rp->rp_names[rp->rp_n] = strdup(de->d_name)) == NULL)
			goto nomem;
		rp->rp_n++;
	}
	closedir(d);
	if (rp->rp_n > 0)
		qsort(rp->rp_names, rp->rp_n, sizeof(*rp->rp_names),
		    replay_cmp);
	return 0;
nomem:
	log_warn("jobs: replay: out of memory");
	closedir(d);
	return -1;
}

static int
replay_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Sends the next good file's job, renaming corrupt ones on the way.
 * -1 only while starting, when Redis refused: the caller says -1 too.
 * Otherwise 0: a command is out, or the run is over and cb has run.
 */
static int
replay_next(struct jobs_replay *rp)
{
	const char	*argv[1] = { "PING" };
	int		 rc = 1;

	while (rc == 1 && rp->rp_next < rp->rp_n) {
		rc = replay_one(rp, rp->rp_names[rp->rp_next]);
		if (rc != -1)
			rp->rp_next++;
	}
	if (rc == 0)
		return 0;
	if (rp->rp_starting) {
		/* Nothing out yet: cb must not run inside jobs_replay(). */
		if (rc == -1 || rds_cmd(rp->rp_rds, replay_pinged, rp, 1,
		    argv, NULL) == -1)
			return -1;
		return 0;
	}
	replay_end(rp);
	return 0;
}

/* 0 sent, 1 skipped (corrupt or unreadable), -1 Redis refused. */
static int
replay_one(struct jobs_replay *rp, const char *name)
{
	struct jobs_req	*q;
	struct job	 j;
	char		 prefix[JOBS_PREFIX_MAX + 1];
	const char	*why = NULL;
	int		 rc;

	if ((rc = spool_read(rp->rp_dfd, name, &j, prefix, sizeof(prefix),
	    &why)) == 1) {
		replay_bad(rp, name, why);
		return 1;
	}
	if (rc == -1) {
		if (errno != ENOENT) {
			log_warn("jobs: replay: %s/%s", rp->rp_dir, name);
			rp->rp_unread++;
		}
		return 1;
	}
	q = req_new(prefix[0] != '\0' ? prefix : rp->rp_prefix, "", &j,
	    replay_job_done, rp);
	if (q == NULL) {
		rp->rp_unread++;
		return 1;
	}
	q->jr_rds = rp->rp_rds;
	if (req_send(q) == -1) {
		req_free(q);
		return -1;
	}
	return 0;
}

static void
replay_bad(struct jobs_replay *rp, const char *name, const char *why)
{
	char	bad[NAME_MAX + 1];

	if ((size_t)snprintf(bad, sizeof(bad), "%s.bad", name) >=
	    sizeof(bad) || renameat(rp->rp_dfd, name, rp->rp_dfd, bad) == -1) {
		log_warn("jobs: replay: corrupt spool file %s/%s (%s) "
		    "could not be renamed", rp->rp_dir, name, why);
		rp->rp_unread++;
		return;
	}
	(void)fsync(rp->rp_dfd);
	log_warnx("jobs: replay: corrupt spool file %s/%s (%s): renamed "
	    "%s", rp->rp_dir, name, why, bad);
}

static void
replay_job_done(enum job_outcome o, const char *id, void *arg)
{
	struct jobs_replay	*rp = arg;
	const char		*name = rp->rp_names[rp->rp_next - 1];

	if (o != JOB_ADDED && o != JOB_DUPLICATE) {
		log_warnx("jobs: replay: stopped at %s/%s: Redis did not take "
		    "it", rp->rp_dir, name);
		rp->rp_next--;
		replay_end(rp);
		return;
	}
	if (unlinkat(rp->rp_dfd, name, 0) == -1 && errno != ENOENT)
		log_warn("jobs: replay: job %s queued, but %s/%s stays", id,
		    rp->rp_dir, name);
	rp->rp_done++;
	log_debug("jobs: replay: %s -> job %s%s", name, id,
	    o == JOB_DUPLICATE ? " (already queued)" : "");
	(void)replay_next(rp);
}

static void
replay_pinged(const redisReply *rep, const char *err, void *arg)
{
	(void)rep;
	(void)err;
	replay_end(arg);
}

static void
replay_end(struct jobs_replay *rp)
{
	unsigned	left;

	left = (unsigned)(rp->rp_n - rp->rp_next) + rp->rp_more +
	    rp->rp_unread;
	rp->rp_cb(rp->rp_done, left, rp->rp_arg);
	replay_free(rp);
}

static void
replay_free(struct jobs_replay *rp)
{
	size_t	i;

	for (i = 0; i < rp->rp_n; i++)
		free(rp->rp_names[i]);
	free(rp->rp_names);
	if (rp->rp_dfd != -1)
		close(rp->rp_dfd);
	free(rp);
}

/* --- held in memory ------------------------------------------------- */

static void
held_init(void)
{
	if (!held.h_init) {
		TAILQ_INIT(&held.h_q);
		held.h_init = 1;
	}
}

int
jobs_hold(const struct job *j)
{
	struct jobs_hentry	*he;
	char			*data;

	held_init();
	if (!job_ok(j)) {
		log_error("jobs: a bad job cannot be held");
		return -1;
	}
	if (held.h_n >= JOBS_HOLD_MAX || (he = calloc(1, sizeof(*he))) ==
	    NULL) {
		data = job_data_json(j);
		log_error("jobs: conversation %s: LOST: %s; its data: %s",
		    j->j_conversation_id, held.h_n >= JOBS_HOLD_MAX ?
		    "as many jobs as can be are held in memory already" :
		    "out of memory", data != NULL ? data : "?");
		free(data);
		return -1;
	}
	he->he_job = *j;
	TAILQ_INSERT_TAIL(&held.h_q, he, he_entry);
	held.h_n++;
	log_warnx("jobs: conversation %s: neither Redis nor the spool took "
	    "it: held in memory (%u held)", j->j_conversation_id, held.h_n);
	return 0;
}

unsigned
jobs_held(void)
{
	return held.h_n;
}

static void
held_pop(void)
{
	struct jobs_hentry	*he = TAILQ_FIRST(&held.h_q);

	TAILQ_REMOVE(&held.h_q, he, he_entry);
	free(he);
	held.h_n--;
}

int
jobs_held_retry(struct rds *r, const char *prefix, const char *spool,
    void (*cb)(unsigned, unsigned, unsigned, void *), void *arg)
{
	held_init();
	if (held.h_running || held.h_n == 0)
		return -1;
	if (!prefix_ok(prefix) || spool == NULL || spool[0] == '\0' ||
	    strlen(spool) >= sizeof(held.h_spool) || cb == NULL) {
		log_warnx("jobs: held jobs: bad arguments");
		return -1;
	}
	held.h_running = 1;
	held.h_rds = r;
	snprintf(held.h_prefix, sizeof(held.h_prefix), "%s", prefix);
	snprintf(held.h_spool, sizeof(held.h_spool), "%s", spool);
	held.h_to_redis = held.h_to_spool = 0;
	held.h_cb = cb;
	held.h_arg = arg;
	if (r != NULL && rds_connected(r)) {
		script_load(r);
		if (held_send() == 0)
			return 0;
	}
	held_spool();
	held_end();
	return 0;
}

/* The first held job to Redis; -1 if Redis refused the command. */
static int
held_send(void)
{
	struct jobs_req	*q;

	q = req_new(held.h_prefix, "", &TAILQ_FIRST(&held.h_q)->he_job,
	    held_done, NULL);
	if (q == NULL)
		return -1;
	q->jr_rds = held.h_rds;
	if (req_send(q) == -1) {
		req_free(q);
		return -1;
	}
	return 0;
}

static void
held_done(enum job_outcome o, const char *id, void *arg)
{
	struct job	*j;

	(void)arg;
	if (!held.h_running || held.h_n == 0)
		return;		/* jobs_held_flush() came first */
	j = &TAILQ_FIRST(&held.h_q)->he_job;
	if (o == JOB_ADDED || o == JOB_DUPLICATE) {
		log_info("jobs: conversation %s: held job %s as job %s",
		    j->j_conversation_id, o == JOB_ADDED ? "added" :
		    "already queued", id);
		held_pop();
		held.h_to_redis++;
		if (held.h_n > 0 && held_send() == 0)
			return;
	}
	held_spool();
	held_end();
}

/* Held jobs to the spool, oldest first, until a write fails. */
static void
held_spool(void)
{
	struct job	*j;
	char		 path[PATH_MAX];

	while (held.h_n > 0) {
		j = &TAILQ_FIRST(&held.h_q)->he_job;
		if (spool_write(held.h_spool, held.h_prefix, j, path,
		    sizeof(path), 1) == -1) {
			if (!held.h_spool_failing)
				log_warnx("jobs: %u post-call jobs held in "
				    "memory: the spool %s still fails (%s); "
				    "retrying", held.h_n, held.h_spool,
				    strerror(errno));
			held.h_spool_failing = 1;
			return;
		}
		held.h_spool_failing = 0;
		log_info("jobs: conversation %s: held job spooled to %s",
		    j->j_conversation_id, path);
		held_pop();
		held.h_to_spool++;
	}
}

static void
held_end(void)
{
	held.h_running = 0;
	if (held.h_n == 0)
		held.h_spool_failing = 0;
	held.h_cb(held.h_to_redis, held.h_to_spool, held.h_n, held.h_arg);
}

unsigned
jobs_held_flush(const char *prefix, const char *spool)
{
	struct job	*j;
	char		 path[PATH_MAX], *data;
	unsigned	 lost = 0;

	held_init();
	while (held.h_n > 0) {
		j = &TAILQ_FIRST(&held.h_q)->he_job;
		if (spool != NULL && spool[0] != '\0' && prefix_ok(prefix) &&
		    spool_write(spool, prefix, j, path, sizeof(path), 1) == 0)
			log_info("jobs: conversation %s: held job spooled to "
			    "%s at exit", j->j_conversation_id, path);
		else {
			data = job_data_json(j);
			log_error("jobs: conversation %s: LOST at exit: "
			    "neither Redis nor the spool took it; its data: %s",
			    j->j_conversation_id, data != NULL ? data : "?");
			free(data);
			lost++;
		}
		held_pop();
	}
	held.h_running = 0;
	held.h_spool_failing = 0;
	return lost;
}
