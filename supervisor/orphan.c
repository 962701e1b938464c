/*
 * orphan.c - clean-up after a worker that died during a call without
 * reporting DONE (signal, abort, OOM kill, exit status other than 0).
 * Runs in the supervisor with what CALL_INFO told it: delete the call's
 * session keys (same compare-and-delete rule as a worker), enqueue or
 * spool the post-call job if a conversation existed, and end the Twilio
 * call by REST so nobody is left on a silent line.  Also where a job
 * that neither Redis nor the spool took, the worker's (DONE said so) or
 * its own, is held in memory (jobs_hold(), retried by supervisor.c).
 */
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "log.h"
#include "redis.h"
#include "session.h"
#include "twilio_rest.h"
#include "util.h"
#include "supervisor.h"

struct orphan {
	char		or_call_sid[64];
	char		or_conv[128];
	struct job	or_job;
};

static void	orphan_job_of(const struct msg_call_info *, struct job *);
static int	orphan_keep(const struct job *);
static void	orphan_job(enum job_outcome, const char *, void *);
static void	orphan_settled(void);

static unsigned	orphan_inflight;	/* requests not answered yet */

/* Clean-up requests still in flight (shutdown waits for them). */
unsigned
orphan_pending(void)
{
	return orphan_inflight;
}

static void
orphan_settled(void)
{
	if (orphan_inflight > 0)
		orphan_inflight--;
	if (orphan_inflight == 0 && sv.sv_state != SV_RUNNING &&
	    pool_total() == 0)
		supervisor_workers_gone();
}
static void	orphan_keys(int, void *);
static void	orphan_ended(const struct twilio_result *, void *);

void
orphan_cleanup(const struct msg_call_info *ci)
{
	struct orphan	*o;
	struct job	 j;

	if ((o = calloc(1, sizeof(*o))) == NULL) {
		log_warnx("orphan clean-up for %s: out of memory",
		    ci->ci_call_sid);
		return;
	}
	strlcpy_n(o->or_call_sid, ci->ci_call_sid, sizeof(o->or_call_sid));
	strlcpy_n(o->or_conv, ci->ci_conversation_id, sizeof(o->or_conv));
	if (twilio_sid_ok(ci->ci_call_sid, "CA")) {
		if (twilio_end_call(sv.sv_ec, sv.sv_cf, ci->ci_call_sid,
		    orphan_ended, strdup(ci->ci_call_sid)) == -1)
			log_warnx("call %s: cannot end it by REST",
			    ci->ci_call_sid);
		else
			orphan_inflight++;
	}
	if (ci->ci_conversation_id[0] == '\0') {
		free(o);
		return;
	}
	if (session_delete(sv.sv_rds, ci->ci_conversation_id,
	    ci->ci_user_id[0] ? ci->ci_user_id : NULL,
	    ci->ci_phone[0] ? ci->ci_phone : NULL, orphan_keys,
	    strdup(ci->ci_conversation_id)) == -1)
		log_warnx("call %s: session keys not deleted (Redis "
		    "unavailable; they expire in an hour)", ci->ci_call_sid);
	else
		orphan_inflight++;
	orphan_job_of(ci, &j);
	o->or_job = j;
	orphan_inflight++;
	if (jobs_enqueue(sv.sv_rds, sv.sv_cf->bullmq_prefix,
	    sv.sv_cf->spool_dir, &j, orphan_job, o) == -1) {
		orphan_job(jobs_spool(sv.sv_cf->spool_dir, &j) == 0 ?
		    JOB_SPOOLED : JOB_FAILED, NULL, o);
	}
}

/* The job of the call CALL_INFO describes, ended now. */
static void
orphan_job_of(const struct msg_call_info *ci, struct job *j)
{
	memset(j, 0, sizeof(*j));
	strlcpy_n(j->j_conversation_id, ci->ci_conversation_id,
	    sizeof(j->j_conversation_id));
	strlcpy_n(j->j_user_id, ci->ci_user_id, sizeof(j->j_user_id));
	strlcpy_n(j->j_call_type, ci->ci_call_type[0] ? ci->ci_call_type :
	    "general", sizeof(j->j_call_type));
	j->j_is_first_call = ci->ci_is_first_call;
	j->j_timestamp_ms = now_real_ms();
}

/* Neither Redis nor the spool took it: hold it, or count it lost. */
static int
orphan_keep(const struct job *j)
{
	if (jobs_hold(j) == 0)
		return 0;
	metrics.m_jobs_lost++;
	return -1;
}

/*
 * A worker's DONE said its job went neither to Redis nor to the spool
 * (JOB_FAILED): the supervisor holds it, from what CALL_INFO told.
 */
void
orphan_hold(const struct msg_call_info *ci)
{
	struct job	j;

	if (ci->ci_conversation_id[0] == '\0') {
		log_error("call %s: its worker could not save the post-call "
		    "job and never said which conversation it was: LOST",
		    ci->ci_call_sid[0] ? ci->ci_call_sid : "unknown");
		metrics.m_jobs_lost++;
		return;
	}
	orphan_job_of(ci, &j);
	(void)orphan_keep(&j);
}

static void
orphan_job(enum job_outcome out, const char *id, void *arg)
{
	struct orphan	*o = arg;

	(void)id;
	if (out == JOB_ADDED || out == JOB_DUPLICATE)
		metrics.m_jobs_enqueued++;
	else if (out == JOB_SPOOLED)
		metrics.m_jobs_spooled++;
	log_info("call %s conversation %s: post-call job %s after the "
	    "worker died", o->or_call_sid, o->or_conv, out == JOB_ADDED ?
	    "added" : out == JOB_DUPLICATE ? "already queued" :
	    out == JOB_SPOOLED ? "spooled" : orphan_keep(&o->or_job) == 0 ?
	    "held in memory" : "LOST");
	free(o);
	orphan_settled();
}

static void
orphan_keys(int ok, void *arg)
{
	if (!ok)
		log_warnx("conversation %s: session keys not deleted",
		    (char *)arg);
	free(arg);
	orphan_settled();
}

static void
orphan_ended(const struct twilio_result *r, void *arg)
{
	if (r->tr_ok)
		log_info("call %s ended by REST after its worker died%s",
		    (char *)arg, r->tr_already_over ? " (already over)" : "");
	else
		log_warnx("call %s: ending it by REST failed: %s", (char *)arg,
		    r->tr_error);
	free(arg);
	orphan_settled();
}
