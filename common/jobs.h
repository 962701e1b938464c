/*
 * jobs.h - the post-call job: added to BullMQ's Redis layout by one Lua
 * script of our own (queue post-call-processing, job process-post-call,
 * delayed 3 s, 3 attempts, exponential back-off), at most once per
 * conversationId within 5 minutes across every process and host (the
 * decision is made inside Redis).  If Redis cannot take it, the job is
 * written to the spool directory (temp file, fsync, rename) and replayed
 * later by the supervisor.  If the spool fails too, the supervisor holds
 * the job in memory and retries both until one takes it.
 */
#ifndef NAIBER_JOBS_H
#define NAIBER_JOBS_H

#include <stdint.h>

struct rds;

#define JOBS_QUEUE	"post-call-processing"
#define JOBS_NAME	"process-post-call"
#define JOBS_PREFIX	"bull"
#define JOBS_DELAY_MS	3000
#define JOBS_DEDUP_MS	300000
#define JOBS_HOLD_MAX	1000		/* jobs held in memory */

struct job {
	char		j_conversation_id[128];
	char		j_user_id[64];
	int		j_is_first_call;
	char		j_call_type[16];	/* general | health_check */
	uint64_t	j_timestamp_ms;
};

enum job_outcome {
	JOB_ADDED,		/* a new BullMQ job */
	JOB_DUPLICATE,		/* one exists for this conversation */
	JOB_SPOOLED,		/* Redis did not take it; on disk */
	JOB_FAILED		/* neither: the caller's copy is the only one */
};

typedef void	(*job_cb)(enum job_outcome, const char *, void *);

/* The job's data as JSON (exact types of the original), malloc'd. */
char	*job_data_json(const struct job *);
/*
 * Enqueue, or spool if Redis fails; cb exactly once (may be NULL).
 * prefix: "bull" unless configured.  Returns 0 if cb will be called.
 */
int	jobs_enqueue(struct rds *, const char *, const char *,
	    const struct job *, job_cb, void *);
/* Write a job to the spool directory synchronously; 0 or -1. */
int	jobs_spool(const char *, const struct job *);
/*
 * Replay every spooled job (supervisor, when Redis is back): enqueue
 * each, delete its file once Redis answered (added or duplicate);
 * corrupt files are renamed *.bad with a log line.  cb once at the end
 * with the number replayed.
 */
int	jobs_replay(struct rds *, const char *, const char *,
	    void (*)(unsigned, unsigned, void *), void *);

/*
 * Jobs held in memory (the supervisor's): each one neither Redis nor
 * the spool took, in arrival order, at most JOBS_HOLD_MAX.
 * jobs_hold(): 0 held; -1 past the bound (or a bad job): not held,
 * logged at error level with its data.
 */
int	jobs_hold(const struct job *);
unsigned jobs_held(void);
/*
 * One pass over the held jobs: to Redis while it takes them (added or
 * duplicate), then, if Redis is not there or stopped taking them, to
 * the spool until a write fails.  cb runs once, with the numbers that
 * went to Redis, to the spool, and still held, possibly before
 * jobs_held_retry() returns (nothing sent to Redis).  -1, and no cb,
 * if a pass is under way or nothing is held.
 */
int	jobs_held_retry(struct rds *, const char *, const char *,
	    void (*)(unsigned, unsigned, unsigned, void *), void *);
/*
 * At exit: spool every held job that can be, log each other one with
 * its data at error level, hold nothing.  Returns the number lost.
 */
unsigned jobs_held_flush(const char *, const char *);

#endif
