/*
 * metrics.c - the supervisor's counters and histograms, merged from the
 * workers' DONE reports, rendered as Prometheus text for GET /metrics.
 * Runs in the supervisor only; workers keep their own counters and
 * report them once, at the end of their call.
 */
#include <stdio.h>
#include <stdlib.h>

#include "jobs.h"
#include "supervisor.h"

struct metrics metrics;

/* Handoff latency bucket bounds in nanoseconds. */
static const uint64_t handoff_le[] = {
	50000, 100000, 250000, 500000, 1000000, 2500000, 5000000,
	10000000, 25000000, 50000000, 100000000
};
#define NHANDOFF_LE	(sizeof(handoff_le) / sizeof(handoff_le[0]))

/* Set-up (Twilio start to first agent audio) bucket bounds, ns. */
static const uint64_t setup_le[] = {
	10000000, 25000000, 50000000, 100000000, 250000000, 500000000,
	1000000000, 2500000000ULL, 5000000000ULL, 10000000000ULL
};
#define NSETUP_LE	(sizeof(setup_le) / sizeof(setup_le[0]))

static void	histogram(FILE *, const char *, const char *,
		    const uint64_t *, size_t, const uint64_t *, uint64_t,
		    uint64_t);

void
metrics_handoff(uint64_t ns)
{
	size_t	i;

	for (i = 0; i < NHANDOFF_LE; i++)
		if (ns <= handoff_le[i])
			metrics.m_handoff_hist[i]++;
	metrics.m_handoff_sum_ns += ns;
	metrics.m_handoff_count++;
}

void
metrics_warm(uint64_t ns)
{
	metrics.m_warm_sum_ns += ns;
	metrics.m_warm_count++;
}

void
metrics_done(const struct msg_done *d)
{
	metrics.m_calls_done++;
	metrics.m_frames_in += d->dn_frames_in;
	metrics.m_frames_out += d->dn_frames_out;
	metrics.m_frames_dropped += d->dn_frames_dropped;
	metrics.m_bad_messages += d->dn_bad_messages;
	metrics.m_pongs += d->dn_pongs;
	metrics.m_clears += d->dn_clears;
	if (d->dn_setup_ns > 0) {
		size_t	i;

		for (i = 0; i < NSETUP_LE; i++)
			if (d->dn_setup_ns <= setup_le[i])
				metrics.m_setup_hist[i]++;
		metrics.m_setup_sum_ns += d->dn_setup_ns;
		metrics.m_setup_count++;
	}
}

void
metrics_http(int code)
{
	int	c = code / 100;

	metrics.m_http[c >= 1 && c <= 5 ? c : 0]++;
}

#define COUNTER(name, help, val)					\
	fprintf(fp, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n",	\
	    name, help, name, name, (unsigned long long)(val))
#define GAUGE(name, help, val)						\
	fprintf(fp, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n",	\
	    name, help, name, name, (unsigned long long)(val))

static void
histogram(FILE *fp, const char *name, const char *help, const uint64_t *le,
    size_t nle, const uint64_t *hist, uint64_t sum_ns, uint64_t count)
{
	size_t	i;

	fprintf(fp, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (i = 0; i < nle; i++)
		fprintf(fp, "%s_bucket{le=\"%g\"} %llu\n", name,
		    (double)le[i] / 1e9, (unsigned long long)hist[i]);
	fprintf(fp, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9f\n"
	    "%s_count %llu\n", name, (unsigned long long)count, name,
	    (double)sum_ns / 1e9, name, (unsigned long long)count);
}

static void
metrics_histogram(FILE *fp)
{
	histogram(fp, "naiberd_handoff_seconds", "Accept to worker owning "
	    "the stream socket.", handoff_le, NHANDOFF_LE,
	    metrics.m_handoff_hist, metrics.m_handoff_sum_ns,
	    metrics.m_handoff_count);
	histogram(fp, "naiberd_setup_seconds", "Twilio start to the first "
	    "agent audio sent to the caller, per call that had any.",
	    setup_le, NSETUP_LE, metrics.m_setup_hist,
	    metrics.m_setup_sum_ns, metrics.m_setup_count);
}

static void
metrics_outcomes(FILE *fp)
{
	static const char *const names[] = { "completed", "busy",
	    "no-answer", "failed", "canceled" };
	int	i;

	fprintf(fp, "# HELP naiberd_call_outcomes_total Final call statuses "
	    "reported by Twilio.\n# TYPE naiberd_call_outcomes_total "
	    "counter\n");
	for (i = 0; i < 5; i++)
		fprintf(fp, "naiberd_call_outcomes_total{outcome=\"%s\"} "
		    "%llu\n", names[i],
		    (unsigned long long)metrics.m_outcome[i]);
}

/* Returns malloc'd text; caller frees. */
char *
metrics_render(size_t *len)
{
	char	*buf = NULL;
	FILE	*fp;
	int	 i;

	if ((fp = open_memstream(&buf, len)) == NULL)
		return NULL;
	fprintf(fp, "# HELP naiberd_workers Worker processes by state.\n"
	    "# TYPE naiberd_workers gauge\n"
	    "naiberd_workers{state=\"idle\"} %u\n"
	    "naiberd_workers{state=\"busy\"} %u\n"
	    "naiberd_workers{state=\"exiting\"} %u\n"
	    "naiberd_workers{state=\"starting\"} %u\n",
	    pool_count(W_IDLE), pool_count(W_BUSY), pool_count(W_EXITING),
	    pool_count(W_STARTING));
	fprintf(fp, "# HELP naiberd_worker_warmup_seconds Worker start to "
	    "ready (Redis, PostgreSQL, HTTP client made).\n"
	    "# TYPE naiberd_worker_warmup_seconds summary\n"
	    "naiberd_worker_warmup_seconds_sum %.9f\n"
	    "naiberd_worker_warmup_seconds_count %llu\n",
	    (double)metrics.m_warm_sum_ns / 1e9,
	    (unsigned long long)metrics.m_warm_count);
	GAUGE("naiberd_calls_active", "Calls being served by a worker.",
	    pool_count(W_BUSY));
	GAUGE("naiberd_connections", "Open HTTP connections.",
	    listener_nconns());
	COUNTER("naiberd_handoffs_total", "Streams handed to a worker.",
	    metrics.m_handoffs);
	COUNTER("naiberd_handoff_failures_total", "Streams no worker took.",
	    metrics.m_handoff_fail);
	COUNTER("naiberd_worker_crashes_total", "Workers that died during a "
	    "call without reporting DONE.", metrics.m_crashes);
	COUNTER("naiberd_worker_stalls_total", "Busy workers killed after "
	    "worker_stall seconds without a heartbeat (also counted as "
	    "crashes).", metrics.m_worker_stalls);
	COUNTER("naiberd_workers_spawned_total", "Workers forked.",
	    metrics.m_workers_spawned);
	COUNTER("naiberd_calls_done_total", "Calls that ended normally.",
	    metrics.m_calls_done);
	COUNTER("naiberd_frames_in_total", "Twilio media frames received.",
	    metrics.m_frames_in);
	COUNTER("naiberd_frames_out_total", "Media frames sent to Twilio.",
	    metrics.m_frames_out);
	COUNTER("naiberd_frames_dropped_total", "Audio frames dropped.",
	    metrics.m_frames_dropped);
	COUNTER("naiberd_bad_messages_total", "Malformed peer messages.",
	    metrics.m_bad_messages);
	COUNTER("naiberd_stream_refused_signature_total", "Stream upgrades "
	    "with a bad X-Twilio-Signature.", metrics.m_refused_sig);
	COUNTER("naiberd_stream_refused_capacity_total", "Stream upgrades "
	    "refused at max calls.", metrics.m_refused_capacity);
	COUNTER("naiberd_calls_placed_total", "Calls dialled through Twilio.",
	    metrics.m_calls_placed);
	fprintf(fp, "# HELP naiberd_calls_refused_total POST /call refusals by "
	    "cause.\n# TYPE naiberd_calls_refused_total counter\n"
	    "naiberd_calls_refused_total{cause=\"twilio\"} %llu\n"
	    "naiberd_calls_refused_total{cause=\"redis\"} %llu\n"
	    "naiberd_calls_refused_total{cause=\"capacity\"} %llu\n"
	    "naiberd_calls_refused_total{cause=\"input\"} %llu\n"
	    "naiberd_calls_refused_total{cause=\"headroom\"} %llu\n",
	    (unsigned long long)metrics.m_call_refused[0],
	    (unsigned long long)metrics.m_call_refused[1],
	    (unsigned long long)metrics.m_call_refused[2],
	    (unsigned long long)metrics.m_call_refused[3],
	    (unsigned long long)metrics.m_call_refused[4]);
	COUNTER("naiberd_calls_admitted_total", "POST /call requests admitted "
	    "(then dialled).", metrics.m_calls_admitted);
	headroom_metrics(fp);
	metrics_outcomes(fp);
	COUNTER("naiberd_pongs_total", "ElevenLabs pings answered.",
	    metrics.m_pongs);
	COUNTER("naiberd_clears_total", "Barge-in clears sent to Twilio.",
	    metrics.m_clears);
	COUNTER("naiberd_jobs_enqueued_total", "Post-call jobs in Redis "
	    "(added or already there).", metrics.m_jobs_enqueued);
	COUNTER("naiberd_jobs_spooled_total", "Post-call jobs written to the "
	    "spool.", metrics.m_jobs_spooled);
	COUNTER("naiberd_jobs_replayed_total", "Spooled jobs replayed.",
	    metrics.m_jobs_replayed);
	COUNTER("naiberd_jobs_lost_total", "Post-call jobs neither queued nor "
	    "spooled.", metrics.m_jobs_lost);
	GAUGE("naiberd_jobs_held", "Post-call jobs held in memory: neither "
	    "Redis nor the spool took them yet.", jobs_held());
	COUNTER("naiberd_redis_errors_total", "Redis failures seen by the "
	    "supervisor.", metrics.m_redis_errors);
	COUNTER("naiberd_http_client_errors_total", "Outbound HTTP requests "
	    "that failed.", metrics.m_http_client_errors);
	fprintf(fp, "# HELP naiberd_conns_closed_total HTTP connections "
	    "closed to protect the front: shed at the cap, over "
	    "max_conns_per_ip, under request_min_rate.\n"
	    "# TYPE naiberd_conns_closed_total counter\n"
	    "naiberd_conns_closed_total{reason=\"shed\"} %llu\n"
	    "naiberd_conns_closed_total{reason=\"per_ip\"} %llu\n"
	    "naiberd_conns_closed_total{reason=\"slow\"} %llu\n",
	    (unsigned long long)metrics.m_conns_shed,
	    (unsigned long long)metrics.m_conns_refused_ip,
	    (unsigned long long)metrics.m_conns_slow);
	fprintf(fp, "# HELP naiberd_http_responses_total HTTP responses by "
	    "status class.\n# TYPE naiberd_http_responses_total counter\n");
	for (i = 1; i <= 5; i++)
		fprintf(fp, "naiberd_http_responses_total{code=\"%dxx\"} "
		    "%llu\n", i, (unsigned long long)metrics.m_http[i]);
	metrics_histogram(fp);
	if (fclose(fp) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
