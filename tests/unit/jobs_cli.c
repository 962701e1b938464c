/*
 * jobs_cli.c - test driver for common/jobs.c, run by
 * tests/integ/t_jobs_bullmq.test.mjs: enqueues post-call jobs (one per
 * conversationId on the command line, one at a time) against a Redis
 * URL and prints one JSON line per outcome; -r replays the spool
 * instead; -l N enqueues N fresh jobs and prints the enqueue latency
 * (jobs_enqueue() to its callback) percentiles.  Not installed.
 *
 * usage: jobs_cli [-f] [-l n] [-P prefix] [-r] [-s spooldir]
 *	    [-t general|health_check] [-T timeout_ms] [-u userId]
 *	    [-W connect_wait_ms] redis-url [conversationId ...]
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "jobs.h"
#include "log.h"
#include "redis.h"
#include "util.h"

struct cli {
	struct event_base	*base;
	struct rds		*rds;
	int			 done;
	int			 expired;
	enum job_outcome	 outcome;
	char			 id[4096];
	unsigned		 replayed;
	unsigned		 left;
};

static void	usage(void) __attribute__((noreturn));
static void	deadline_cb(evutil_socket_t, short, void *);
static int	run_until(struct cli *, const int *, long);
static void	job_done(enum job_outcome, const char *, void *);
static void	replay_done(unsigned, unsigned, void *);
static int	enqueue_one(struct cli *, const char *, const char *,
		    const struct job *);
static int	latency(struct cli *, const char *, const char *,
		    struct job *, int);
static int	cmp_u64(const void *, const void *);
static void	wait_connected(struct cli *, long);
static int	run_replay(struct cli *, const char *, const char *);
static int	run_ids(struct cli *, const char *, const char *, struct job *,
		    int, char **);

static const char *const outcome_names[] = {
	"added", "duplicate", "spooled", "failed"
};

static void
usage(void)
{
	fprintf(stderr, "usage: jobs_cli [-f] [-l n] [-P prefix] [-r] "
	    "[-s spooldir]\n\t[-t general|health_check] [-T timeout_ms] "
	    "[-u userId]\n\t[-W connect_wait_ms] redis-url "
	    "[conversationId ...]\n");
	exit(2);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	((struct cli *)arg)->expired = 1;
}

/* Runs the loop until *flag or ms pass; 0 if *flag got set. */
static int
run_until(struct cli *c, const int *flag, long ms)
{
	struct timeval	 tv = { ms / 1000, (ms % 1000) * 1000 };
	struct event	*t;

	c->expired = 0;
	if ((t = evtimer_new(c->base, deadline_cb, c)) == NULL)
		return -1;
	evtimer_add(t, &tv);
	while (!*flag && !c->expired)
		event_base_loop(c->base, EVLOOP_ONCE);
	event_free(t);
	return *flag ? 0 : -1;
}

static void
job_done(enum job_outcome o, const char *id, void *arg)
{
	struct cli	*c = arg;

	c->outcome = o;
	snprintf(c->id, sizeof(c->id), "%s", id != NULL ? id : "");
	c->done = 1;
}

static void
replay_done(unsigned done, unsigned left, void *arg)
{
	struct cli	*c = arg;

	c->replayed = done;
	c->left = left;
	c->done = 1;
}

static int
enqueue_one(struct cli *c, const char *prefix, const char *spool,
    const struct job *j)
{
	c->done = 0;
	if (jobs_enqueue(c->rds, prefix, spool, j, job_done, c) == -1) {
		printf("{\"conversationId\":\"%s\",\"outcome\":\"refused\"}\n",
		    j->j_conversation_id);
		return -1;
	}
	if (run_until(c, &c->done, 30000) == -1) {
		printf("{\"conversationId\":\"%s\","
		    "\"outcome\":\"no answer\"}\n", j->j_conversation_id);
		return -1;
	}
	return 0;
}

/* n enqueues of fresh conversations, one at a time: percentiles in us. */
static int
latency(struct cli *c, const char *prefix, const char *spool,
    struct job *j, int n)
{
	uint64_t	*v, t0;
	int		 i, bad = 0;

	if ((v = calloc((size_t)n, sizeof(*v))) == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		snprintf(j->j_conversation_id, sizeof(j->j_conversation_id),
		    "lat-%ld-%d", (long)getpid(), i);
		t0 = now_mono_ns();
		if (enqueue_one(c, prefix, spool, j) == -1 ||
		    c->outcome != JOB_ADDED)
			bad++;
		v[i] = now_mono_ns() - t0;
	}
	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	/* Nearest rank: the ceil(p * n)-th smallest. */
	printf("{\"latency\":true,\"n\":%d,\"notAdded\":%d,\"p50_us\":%.1f,"
	    "\"p99_us\":%.1f,\"max_us\":%.1f}\n", n, bad,
	    v[(n * 50 + 99) / 100 - 1] / 1e3, v[(n * 99 + 99) / 100 - 1] / 1e3,
	    v[n - 1] / 1e3);
	free(v);
	return bad ? -1 : 0;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t	x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void
wait_connected(struct cli *c, long ms)
{
	long	i;

	for (i = 0; i < ms / 100 && !rds_connected(c->rds); i++) {
		struct timeval tv = { 0, 100000 };
		event_base_loopexit(c->base, &tv);
		event_base_dispatch(c->base);
	}
}

static int
run_replay(struct cli *c, const char *prefix, const char *spool)
{
	if (jobs_replay(c->rds, prefix, spool, replay_done, c) == -1) {
		printf("{\"replay\":\"refused\"}\n");
		return 1;
	}
	if (run_until(c, &c->done, 60000) == -1) {
		printf("{\"replay\":\"no answer\"}\n");
		return 1;
	}
	printf("{\"replayed\":%u,\"left\":%u}\n", c->replayed, c->left);
	return 0;
}

static int
run_ids(struct cli *c, const char *prefix, const char *spool, struct job *j,
    int n, char **ids)
{
	int	i, rc = 0;

	for (i = 0; i < n; i++) {
		snprintf(j->j_conversation_id, sizeof(j->j_conversation_id),
		    "%s", ids[i]);
		j->j_timestamp_ms = now_real_ms();
		if (enqueue_one(c, prefix, spool, j) == -1) {
			rc = 1;
			continue;
		}
		printf("{\"conversationId\":\"%s\",\"outcome\":\"%s\","
		    "\"id\":\"%s\"}\n", j->j_conversation_id,
		    outcome_names[c->outcome], c->id);
		fflush(stdout);
	}
	return rc;
}

int
main(int argc, char *argv[])
{
	struct cli	 c;
	struct job	 j;
	const char	*prefix = JOBS_PREFIX, *spool = "spool";
	long		 timeout_ms = 2000, wait_ms = 5000;
	int		 ch, rc, replay = 0, lat = 0;

	memset(&c, 0, sizeof(c));
	memset(&j, 0, sizeof(j));
	snprintf(j.j_user_id, sizeof(j.j_user_id), "user-1");
	snprintf(j.j_call_type, sizeof(j.j_call_type), "general");
	while ((ch = getopt(argc, argv, "fl:P:rs:t:T:u:W:")) != -1) {
		switch (ch) {
		case 'f':
			j.j_is_first_call = 1;
			break;
		case 'l':
			lat = atoi(optarg);
			break;
		case 'P':
			prefix = optarg;
			break;
		case 'r':
			replay = 1;
			break;
		case 's':
			spool = optarg;
			break;
		case 't':
			snprintf(j.j_call_type, sizeof(j.j_call_type), "%s",
			    optarg);
			break;
		case 'T':
			timeout_ms = atol(optarg);
			break;
		case 'u':
			snprintf(j.j_user_id, sizeof(j.j_user_id), "%s",
			    optarg);
			break;
		case 'W':
			wait_ms = atol(optarg);
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1 || lat < 0 || lat > 1000000)
		usage();
	signal(SIGPIPE, SIG_IGN);
	log_init(LF_TEXT, LT_STDERR, LL_INFO);
	log_setproc("jobs_cli");
	if ((c.base = event_base_new()) == NULL ||
	    (c.rds = rds_new(c.base, argv[0], timeout_ms)) == NULL)
		return 1;
	/* Up to wait_ms for the connection; then jobs get spooled. */
	wait_connected(&c, wait_ms);
	if (replay)
		rc = run_replay(&c, prefix, spool);
	else if (lat > 0)
		rc = latency(&c, prefix, spool, &j, lat) == -1;
	else
		rc = run_ids(&c, prefix, spool, &j, argc - 1, argv + 1);
	rds_free(c.rds);
	event_base_free(c.base);
	return rc;
}
