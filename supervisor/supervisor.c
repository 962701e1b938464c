/*
 * supervisor.c - the supervisor's event loop: signal events, sd_notify,
 * reload (build, validate, swap) and the two-stage shutdown; when the
 * spool is replayed and the jobs held in memory are retried.  Runs in
 * the supervisor process only; everything else hangs off sv.sv_base.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "dns.h"
#include "evcurl.h"
#include "log.h"
#include "jobs.h"
#include "pgaddr.h"
#include "prompt.h"
#include "redis.h"
#include "tls.h"
#include "util.h"
#include "supervisor.h"

#define SV_MMAP_THRESHOLD	(16 * 1024)

#define KILL_GRACE_SECS	25	/* mark 5 s + REST 10 s + flush + job */

struct supervisor sv = { .sv_listen_fd = -1, .sv_ready_fd = -1 };

static void	sv_sigterm(int, short, void *);
static void	sv_sighup(int, short, void *);
static void	sv_sigchld(int, short, void *);
static void	sv_drain_expired(int, short, void *);
static void	sv_kill_expired(int, short, void *);
static void	sv_watchdog(int, short, void *);
static void	sv_reload(void);
static void	sv_apply_logging(const struct config *);

static struct event	*ev_drain, *ev_kill, *ev_watchdog, *ev_sweep;

#define REDIS_TIMEOUT_MS	2000

static int	sv_replaying;
static int	sv_held_running;	/* a pass over the held jobs */
static int	sv_held_last;		/* the shutdown's pass was made */

static void
sv_replayed(unsigned done, unsigned left, void *arg)
{
	(void)arg;
	sv_replaying = 0;
	metrics.m_jobs_replayed += done;
	if (done > 0 || left > 0)
		log_info("spool: %u post-call jobs replayed, %u left", done,
		    left);
}

/* Spooled jobs go to Redis as soon as it answers again. */
static void
sv_replay(void)
{
	if (sv_replaying || !rds_connected(sv.sv_rds))
		return;
	if (jobs_replay(sv.sv_rds, sv.sv_cf->bullmq_prefix,
	    sv.sv_cf->spool_dir, sv_replayed, NULL) == 0)
		sv_replaying = 1;
}

static void
sv_held_done(unsigned to_redis, unsigned to_spool, unsigned left, void *arg)
{
	int	async = sv_held_running == 2;

	(void)arg;
	sv_held_running = 0;
	metrics.m_jobs_enqueued += to_redis;
	metrics.m_jobs_spooled += to_spool;
	if (left == 0 && to_redis + to_spool > 0)
		log_info("jobs: no post-call job held in memory any more");
	if (async && sv.sv_state != SV_RUNNING && pool_total() == 0)
		supervisor_workers_gone();
}

/*
 * Jobs held in memory (neither Redis nor the spool took them) go to
 * Redis if it is there, else to the spool: on each sweep (5 s) and on a
 * Redis reconnect.  1 if the pass is still talking to Redis.
 */
static int
sv_held_retry(void)
{
	if (sv_held_running || jobs_held() == 0)
		return sv_held_running;
	sv_held_running = 1;
	if (jobs_held_retry(sv.sv_rds, sv.sv_cf->bullmq_prefix,
	    sv.sv_cf->spool_dir, sv_held_done, NULL) == -1)
		sv_held_running = 0;
	else if (sv_held_running)
		sv_held_running = 2;	/* sv_held_done() comes later */
	return sv_held_running;
}

static void
sv_redis_state(int up, void *arg)
{
	(void)arg;
	if (up) {
		log_info("redis: connected");
		(void)sv_held_retry();
		sv_replay();
	} else
		log_warnx("redis: connection lost; POST /call answers 503 "
		    "until it is back");
}

static void
sv_sweep(int fd, short ev, void *arg)
{
	static unsigned	n;

	(void)fd, (void)ev, (void)arg;
	placed_expire(now_mono_ns());
	(void)sv_held_retry();
	if (++n % 6 == 0)	/* every 30 s */
		sv_replay();
}

/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. */
void
supervisor_notify(const char *msg)
{
	const char		*path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un	 sun;
	socklen_t		 len;
	int			 fd;

	if (path == NULL || path[0] == '\0' ||
	    strlen(path) >= sizeof(sun.sun_path))
		return;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	if (sun.sun_path[0] == '@')
		sun.sun_path[0] = '\0';
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
	    strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return;
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL,
	    (struct sockaddr *)&sun, len) == -1)
		log_debug("sd_notify: %s", strerror(errno));
	close(fd);
}

static void
sv_apply_logging(const struct config *cf)
{
	log_init(log_format_parse(cf->log_format),
	    log_target_parse(cf->log_target), log_level_parse(cf->log_level));
}

int
supervisor_run(void)
{
	struct event	*ev_term, *ev_int, *ev_hup, *ev_chld;
	struct timeval	 tv;
	const char	*wd;
	long		 usec;
	unsigned	 held, lost;

	/*
	 * Every heap page the supervisor writes after a fork becomes a
	 * private copy in each worker forked before (copy-on-write).  Its
	 * big per-request blocks (struct conn 24 KiB, the Twilio signature
	 * context 88 KiB) would reuse the same old heap pages for every
	 * call; mmap'd they are fresh pages the workers never shared.
	 * Workers inherit the setting: libpq's and curl's 16 KiB buffers go
	 * back to the kernel when freed.
	 */
	mallopt(M_MMAP_THRESHOLD, SV_MMAP_THRESHOLD);
	signal(SIGPIPE, SIG_IGN);
	event_set_log_callback(log_libevent);
	if ((sv.sv_base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	ev_term = evsignal_new(sv.sv_base, SIGTERM, sv_sigterm, NULL);
	ev_int = evsignal_new(sv.sv_base, SIGINT, sv_sigterm, NULL);
	ev_hup = evsignal_new(sv.sv_base, SIGHUP, sv_sighup, NULL);
	ev_chld = evsignal_new(sv.sv_base, SIGCHLD, sv_sigchld, NULL);
	ev_drain = evtimer_new(sv.sv_base, sv_drain_expired, NULL);
	ev_kill = evtimer_new(sv.sv_base, sv_kill_expired, NULL);
	if (ev_term == NULL || ev_int == NULL || ev_hup == NULL ||
	    ev_chld == NULL || ev_drain == NULL || ev_kill == NULL ||
	    evsignal_add(ev_term, NULL) || evsignal_add(ev_int, NULL) ||
	    evsignal_add(ev_hup, NULL) || evsignal_add(ev_chld, NULL))
		fatalx("cannot install signal events");
	{
		char	 err[2048];
		SSL_CTX	*ctx;

		/* Built once here, before any fork: workers share it. */
		if ((ctx = tls_client_ctx_new(sv.sv_cf->tls_ca_file, err,
		    sizeof(err))) == NULL)
			fatalx("TLS client context: %s", err);
		tls_set_client_ctx(ctx);
		/* Prompts too: loaded once, inherited by every worker. */
		if ((sv.sv_cf->cf_prompts = prompt_load(sv.sv_cf->prompts_dir,
		    err, sizeof(err))) == NULL)
			fatalx("prompts in %s: %s", sv.sv_cf->prompts_dir, err);
		log_info("prompts from %s", sv.sv_cf->prompts_dir);
	}
	/*
	 * Workers are forked by the fork server, made now, before the
	 * supervisor's own connections exist; the supervisor adopts any
	 * worker the fork server could only make through a middle child.
	 */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1)
		log_warn("prctl(PR_SET_CHILD_SUBREAPER)");
	if (forksrv_start() == -1)
		fatalx("cannot start the fork server");
	/* Host names are looked up on this loop, never with getaddrinfo. */
	if (dns_setup(sv.sv_base, sv.sv_cf->resolv_conf,
	    sv.sv_cf->dns_timeout) == -1)
		fatalx("cannot set up the resolver");
	if (pgaddr_start(sv.sv_base, sv.sv_cf->database_url, NULL, NULL) ==
	    -1)
		log_warnx("database_url cannot be parsed");
	if ((sv.sv_ec = evcurl_new(sv.sv_base, sv.sv_cf->tls_ca_file)) == NULL)
		fatalx("cannot set up the HTTP client (tls_ca_file %s?)",
		    sv.sv_cf->tls_ca_file ? sv.sv_cf->tls_ca_file : "unset");
	if ((sv.sv_rds = rds_new(sv.sv_base, sv.sv_cf->redis_url,
	    REDIS_TIMEOUT_MS)) == NULL)
		fatalx("redis_url is not a usable redis:// URL");
	rds_on_state(sv.sv_rds, sv_redis_state, NULL);
	ev_sweep = event_new(sv.sv_base, -1, EV_PERSIST, sv_sweep, NULL);
	tv.tv_sec = 5;
	tv.tv_usec = 0;
	if (ev_sweep == NULL || event_add(ev_sweep, &tv) == -1)
		fatalx("cannot add the sweep timer");
	if (sv.sv_cf->use_dynamic_ngrok)
		ngrok_start();
	if (listener_start(sv.sv_listen_fd) == -1)
		fatalx("cannot watch the listening socket");
	if (pool_start() == -1)
		fatalx("cannot start workers");
	headroom_start();
	sv.sv_t_start_ms = now_real_ms();
	if (!config_has_api_token(sv.sv_cf))
		log_warnx("api_token (NAIBER_API_TOKEN) is not set: /call, "
		    "/sessions and /metrics answer loopback clients only");
	log_info("naiberd %s listening on %s:%ld (workers %ld, max calls %ld)",
	    NAIBER_VERSION, sv.sv_cf->listen_addr, sv.sv_cf->port,
	    sv.sv_cf->workers, sv.sv_cf->max_calls);
	if ((wd = getenv("WATCHDOG_USEC")) != NULL &&
	    (usec = strtol(wd, NULL, 10)) > 0) {
		ev_watchdog = event_new(sv.sv_base, -1, EV_PERSIST,
		    sv_watchdog, NULL);
		tv.tv_sec = usec / 2 / 1000000;
		tv.tv_usec = usec / 2 % 1000000;
		if (ev_watchdog != NULL)
			event_add(ev_watchdog, &tv);
	}
	supervisor_notify("READY=1");
	if (sv.sv_ready_fd != -1) {
		(void)!write(sv.sv_ready_fd, "R", 1);
		close(sv.sv_ready_fd);
		sv.sv_ready_fd = -1;
	}
	event_base_dispatch(sv.sv_base);
	if ((held = jobs_held()) > 0 && (lost = jobs_held_flush(
	    sv.sv_cf->bullmq_prefix, sv.sv_cf->spool_dir)) > 0)
		log_error("jobs: %u of the %u post-call jobs held in memory "
		    "at exit are lost", lost, held);
	forksrv_stop();
	forksrv_wait(1000);
	log_info("shutdown complete");
	return 0;
}

static void
sv_watchdog(int fd, short ev, void *arg)
{
	(void)fd, (void)ev, (void)arg;
	supervisor_notify("WATCHDOG=1");
}

/*
 * The last worker is gone.  Clean-up after crashed workers may still be
 * talking to Redis or Twilio (bounded by their own timeouts): wait for
 * it, at most ORPHAN_WAIT_SECS, so no job or hang-up is lost at exit.
 * Jobs held in memory get one last pass (Redis, spool); what is left
 * after it is spooled or logged with its data at exit.
 */
#define ORPHAN_WAIT_SECS	12

void
supervisor_workers_gone(void)
{
	struct timeval	tv = { ORPHAN_WAIT_SECS, 0 };
	int		held;

	if (!sv_held_last && !sv_held_running) {
		sv_held_last = 1;
		(void)sv_held_retry();
	}
	held = sv_held_running == 2;
	if (orphan_pending() > 0 || held) {
		if (orphan_pending() > 0)
			log_info("waiting for the clean-up of %u crashed calls",
			    orphan_pending());
		if (held)
			log_info("waiting for Redis to take %u post-call jobs "
			    "held in memory", jobs_held());
		event_base_loopexit(sv.sv_base, &tv);
		return;
	}
	event_base_loopexit(sv.sv_base, NULL);
}

static void
sv_sigterm(int sig, short ev, void *arg)
{
	struct timeval	tv = { sv.sv_cf->drain_timeout, 0 };

	(void)ev, (void)arg;
	if (sv.sv_state == SV_RUNNING) {
		sv.sv_state = SV_DRAINING;
		supervisor_notify("STOPPING=1");
		listener_stop();
		pool_drain_idle();
		forksrv_stop();
		log_info("SIG%s: draining %u live calls for up to %ld s",
		    sigabbrev_np(sig), pool_count(W_BUSY),
		    sv.sv_cf->drain_timeout);
		evtimer_add(ev_drain, &tv);
		if (pool_total() == 0)
			supervisor_workers_gone();
		return;
	}
	log_info("SIG%s again: ending live calls now", sigabbrev_np(sig));
	evtimer_del(ev_drain);
	sv_drain_expired(-1, 0, NULL);
}

static void
sv_drain_expired(int fd, short ev, void *arg)
{
	struct timeval	tv = { KILL_GRACE_SECS, 0 };

	(void)fd, (void)ev, (void)arg;
	if (sv.sv_state == SV_STOPPING)
		return;
	sv.sv_state = SV_STOPPING;
	if (pool_count(W_BUSY) > 0)
		log_info("ending %u live calls", pool_count(W_BUSY));
	pool_signal_busy(SIGTERM);
	evtimer_add(ev_kill, &tv);
	if (pool_total() == 0)
		supervisor_workers_gone();
}

static void
sv_kill_expired(int fd, short ev, void *arg)
{
	(void)fd, (void)ev, (void)arg;
	if (pool_total() > 0) {
		log_warnx("%u workers did not stop in %d s: killing them",
		    pool_total(), KILL_GRACE_SECS);
		pool_signal_busy(SIGKILL);
	}
}

static void
sv_sigchld(int sig, short ev, void *arg)
{
	(void)sig, (void)ev, (void)arg;
	pool_reap();
}

static void
sv_sighup(int sig, short ev, void *arg)
{
	(void)sig, (void)ev, (void)arg;
	if (sv.sv_state != SV_RUNNING) {
		log_info("SIGHUP ignored while shutting down");
		return;
	}
	if (sv.sv_reloading) {
		log_info("SIGHUP ignored: a reload is in progress");
		return;
	}
	sv.sv_reloading = 1;
	sv_reload();
	sv.sv_reloading = 0;
}

/*
 * Build and validate a new configuration; on any error keep the old one
 * and log every problem.  On success swap it in and replace the idle
 * workers, so only calls that start from now on see the new settings.
 */
static void
sv_reload(void)
{
	struct cfg_errors	 errs;
	struct config		*ncf, *ocf = sv.sv_cf;
	char			 names[512], buf[64];
	size_t			 i;

	snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)(now_mono_ns() / 1000));
	supervisor_notify(buf);
	ncf = config_build(sv.sv_cfpath, sv.sv_cf_must_exist, sv.sv_ov,
	    sv.sv_nov, &errs);
	if (ncf == NULL) {
		for (i = 0; i < (size_t)errs.ce_n; i++)
			log_warnx("reload failed: %s", errs.ce_msg[i]);
		log_warnx("reload failed: keeping the old configuration");
		supervisor_notify("READY=1");
		return;
	}
	{
		char	 err[2048];

		if ((ncf->cf_prompts = prompt_load(ncf->prompts_dir, err,
		    sizeof(err))) == NULL) {
			log_warnx("reload failed: prompts in %s: %s",
			    ncf->prompts_dir, err);
			log_warnx("reload failed: keeping the old configuration "
			    "and prompts");
			config_free(ncf);
			supervisor_notify("READY=1");
			return;
		}
		/* Live workers have their own copies of the old ones. */
		prompt_free(ocf->cf_prompts);
		ocf->cf_prompts = NULL;
	}
	if (config_noreload_changed(ocf, ncf, names, sizeof(names)))
		log_warnx("reload: %s cannot change without a restart; "
		    "keeping the running values", names);
	for (i = 0; i < config_nopts; i++) {
		const struct opt *o = &config_opts[i];
		char tmp[sizeof(char *) > sizeof(long) ? sizeof(char *) :
		    sizeof(long)];
		size_t sz = o->o_type == OT_INT ? sizeof(long) :
		    o->o_type == OT_BOOL ? sizeof(int) : sizeof(char *);
		if (!(o->o_flags & OF_NORELOAD))
			continue;
		memcpy(tmp, (char *)ncf + o->o_off, sz);
		memcpy((char *)ncf + o->o_off, (char *)ocf + o->o_off, sz);
		memcpy((char *)ocf + o->o_off, tmp, sz);
	}
	if (ncf->use_dynamic_ngrok && ncf->stream_url == NULL) {
		/* Keep what ngrok told us. */
		ncf->base_url = ocf->base_url, ocf->base_url = NULL;
		ncf->twilio_url = ocf->twilio_url, ocf->twilio_url = NULL;
		ncf->stream_url = ocf->stream_url, ocf->stream_url = NULL;
	}
	sv.sv_cf = ncf;
	config_free(ocf);
	sv_apply_logging(ncf);
	headroom_config();
	/* New workers from a fork server holding the new configuration. */
	if (forksrv_start() == -1)
		log_warnx("reload: cannot start a new fork server");
	pool_drain_idle();
	pool_refill();
	log_info("SIGHUP: configuration reloaded");
	supervisor_notify("READY=1");
}
