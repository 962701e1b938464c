/*
 * pool.c - struct worker: the pre-forked worker processes, their
 * states and lists, spawning with brakes, reaping, the stream handoff
 * (SCM_RIGHTS over the worker's channel) and the messages workers send
 * back (READY, ACCEPTED, CALL_INFO, LOAD, DONE).  Runs in the
 * supervisor.  A worker changes state only through pool_set_state().
 * A busy worker sends LOAD each second as its heartbeat; one silent for
 * worker_stall seconds is killed (pool_watch) and its call cleaned up
 * like any other that lost its worker.
 *
 * Workers are forked by the fork server (forksrv.c), never here: a
 * spawn is a socketpair and one message, and the worker is STARTING
 * until it reports READY (Redis, PostgreSQL and the HTTP client made),
 * then IDLE.  Its pid arrives with SPAWNED from the fork server or with
 * READY, whichever comes first.  A stream may be handed to a STARTING
 * worker when no IDLE one is left: it reads the HANDOFF once it runs.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "supervisor.h"

#define BACKOFF_MIN_MS	1000
#define BACKOFF_MAX_MS	30000

static struct worker	*pool_spawn(void);
static void		 pool_set_state(struct worker *, enum w_state);
static void		 pool_chan(int, short, void *);
static int		 pool_msg(struct worker *, struct chan_msg *);
static void		 pool_died(struct worker *, int);
static void		 pool_throttle(const char *);
static void		 pool_unthrottle(int, short, void *);
static void		 pool_free(struct worker *);
static void		 pool_refill_cb(int, short, void *);
static void		 pool_watch(int, short, void *);
static void		 pool_early_dead(pid_t, int);
static int		 pool_early_take(pid_t, int *);

static TAILQ_HEAD(wlist, worker) wl[W_NSTATES];
static unsigned		 wn[W_NSTATES];
static uint32_t		 next_ref = 1;
static struct event	*ev_throttle;
static struct event	*ev_refill;	/* refill after pending handoffs */
static struct event	*ev_watch;	/* busy workers' heartbeats, 1 s */
static long		 backoff_ms;
static int		 throttled;

/* Children reaped before their SPAWNED said who they were. */
#define EARLY_MAX	16
static struct {
	pid_t	pid;
	int	status;
}			 early[EARLY_MAX];
static unsigned		 nearly;

static const char *const w_state_names[] = { "idle", "busy", "exiting",
    "starting" };

int
pool_start(void)
{
	struct timeval	tv = { 1, 0 };
	int		i;

	for (i = 0; i < W_NSTATES; i++)
		TAILQ_INIT(&wl[i]);
	if ((ev_throttle = evtimer_new(sv.sv_base, pool_unthrottle, NULL))
	    == NULL || (ev_refill = evtimer_new(sv.sv_base, pool_refill_cb,
	    NULL)) == NULL || (ev_watch = event_new(sv.sv_base, -1,
	    EV_PERSIST, pool_watch, NULL)) == NULL ||
	    event_add(ev_watch, &tv) == -1)
		return -1;
	pool_refill();
	return pool_count(W_IDLE) + pool_count(W_STARTING) > 0 ? 0 : -1;
}

unsigned
pool_count(enum w_state s)
{
	return wn[s];
}

unsigned
pool_total(void)
{
	return wn[W_IDLE] + wn[W_BUSY] + wn[W_EXITING];
}

int
pool_throttled(void)
{
	return throttled;
}

/* The only place a worker changes state.  -1 as old state: new worker. */
static void
pool_set_state(struct worker *w, enum w_state to)
{
	int	from = w->w_state;

	if (w->w_listed && (from == (int)to || to == W_STARTING ||
	    (from == W_BUSY && to == W_IDLE) || from == W_EXITING))
		log_panic("worker %d (ref %u): impossible move %s to %s",
		    w->w_pid, w->w_ref, w_state_names[from],
		    w_state_names[to]);
	if (w->w_listed) {
		TAILQ_REMOVE(&wl[from], w, w_entry);
		wn[from]--;
	}
	w->w_listed = 1;
	w->w_state = to;
	TAILQ_INSERT_TAIL(&wl[to], w, w_entry);
	wn[to]++;
}

/*
 * Ask the fork server for a worker on a new channel.  No fork here: the
 * supervisor's loop only makes the socketpair and sends one message.
 */
static struct worker *
pool_spawn(void)
{
	struct worker	*w;
	int		 sp[2];

	if ((w = calloc(1, sizeof(*w))) == NULL) {
		log_warn("worker");
		return NULL;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == -1) {
		log_warn("socketpair");
		free(w);
		pool_throttle("socketpair failed");
		return NULL;
	}
	w->w_ref = next_ref++;
	if (forksrv_spawn(w->w_ref, sp[1]) == -1) {
		log_warn("fork server: SPAWN");
		close(sp[0]);
		close(sp[1]);
		free(w);
		pool_throttle("the fork server does not answer");
		return NULL;
	}
	close(sp[1]);
	w->w_fd = sp[0];
	w->w_t_spawn = now_mono_ns();
	w->w_ev = event_new(sv.sv_base, w->w_fd, EV_READ | EV_PERSIST,
	    pool_chan, w);
	if (w->w_ev == NULL || event_add(w->w_ev, NULL) == -1)
		log_warnx("worker ref %u: cannot watch its channel", w->w_ref);
	pool_set_state(w, W_STARTING);
	metrics.m_workers_spawned++;
	return w;
}

static struct worker *
pool_find_ref(uint32_t ref)
{
	struct worker	*w;
	int		 s;

	for (s = 0; s < W_NSTATES; s++)
		TAILQ_FOREACH(w, &wl[s], w_entry)
			if (w->w_ref == ref)
				return w;
	return NULL;
}

/* The fork server's answer to SPAWN: the worker's pid, or why not. */
void
pool_spawned(uint32_t ref, pid_t pid, int err)
{
	struct worker	*w;
	int		 status;

	if ((w = pool_find_ref(ref)) == NULL) {
		log_debug("SPAWNED for a worker already gone (ref %u)", ref);
		return;
	}
	if (pid <= 0) {
		errno = err;
		log_warn("fork server: cannot fork a worker");
		if (w->w_state == W_BUSY)
			log_warnx("the stream handed to it is lost");
		pool_free(w);
		pool_throttle("fork failed");
		return;
	}
	if (w->w_pid != pid && w->w_pid != 0)
		log_warnx("worker ref %u said it was %d; the fork server says "
		    "%d", ref, w->w_pid, pid);
	w->w_pid = pid;		/* the fork server knows best */
	log_debug("worker %d started (ref %u)", pid, ref);
	if (pool_early_take(pid, &status)) {
		pool_chan(w->w_fd, EV_READ, w);
		pool_died(w, status);
		pool_free(w);
		pool_refill();
	}
}

static void
pool_early_dead(pid_t pid, int status)
{
	if (nearly == EARLY_MAX) {
		log_warnx("reaped unknown child %d", early[0].pid);
		memmove(early, early + 1, sizeof(early[0]) * (EARLY_MAX - 1));
		nearly--;
	}
	early[nearly].pid = pid;
	early[nearly].status = status;
	nearly++;
}

static int
pool_early_take(pid_t pid, int *status)
{
	unsigned	i;

	for (i = 0; i < nearly; i++)
		if (early[i].pid == pid) {
			*status = early[i].status;
			memmove(early + i, early + i + 1,
			    sizeof(early[0]) * (nearly - i - 1));
			nearly--;
			return 1;
		}
	return 0;
}

/* The fork server died: the workers it never made will not come. */
void
pool_forksrv_gone(void)
{
	struct worker	*w, *next;

	int		 s;

	for (s = 0; s < W_NSTATES; s++)
		for (w = TAILQ_FIRST(&wl[s]); w != NULL; w = next) {
			next = TAILQ_NEXT(w, w_entry);
			if (w->w_pid != 0)
				continue;
			if (s == W_BUSY)
				log_warnx("a stream handed to a worker the "
				    "fork server never made is lost");
			pool_free(w);
		}
	pool_throttle("the fork server died");
}

/* Keep `workers` idle ones, never more than capacity allows. */
void
pool_refill(void)
{
	long	want;

	if (sv.sv_state != SV_RUNNING || throttled)
		return;
	if (forksrv_pid() == 0 && forksrv_start() == -1) {
		pool_throttle("cannot start the fork server");
		return;
	}
	want = sv.sv_cf->workers;
	if (want > sv.sv_cf->max_calls - (long)wn[W_BUSY])
		want = sv.sv_cf->max_calls - (long)wn[W_BUSY];
	while ((long)(wn[W_IDLE] + wn[W_STARTING]) < want && !throttled)
		if (pool_spawn() == NULL)
			break;
}

static void
pool_refill_cb(int fd, short ev, void *arg)
{
	(void)fd, (void)ev, (void)arg;
	pool_refill();
}

static void
pool_throttle(const char *why)
{
	struct timeval	tv;

	if (throttled)
		return;
	backoff_ms = backoff_ms == 0 ? BACKOFF_MIN_MS :
	    (backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms * 2);
	throttled = 1;
	tv.tv_sec = backoff_ms / 1000;
	tv.tv_usec = (backoff_ms % 1000) * 1000;
	evtimer_add(ev_throttle, &tv);
	log_warnx("%s: not starting workers for %ld ms (check the lines "
	    "above; a worker that cannot start exits with status 2)", why,
	    backoff_ms);
}

static void
pool_unthrottle(int fd, short ev, void *arg)
{
	(void)fd, (void)ev, (void)arg;
	throttled = 0;
	pool_refill();
}

/*
 * Give the upgraded connection to an idle worker, else to one still
 * warming up, else to one asked for now (it reads the HANDOFF when it
 * runs).  On success the worker holds the socket and the caller closes
 * its copy.  Returns 0 or -1.
 */
int
pool_handoff(struct conn *cn)
{
	struct worker	*w;
	int		 tries;

	for (tries = 0; tries < 3; tries++) {
		if ((w = TAILQ_FIRST(&wl[W_IDLE])) == NULL &&
		    (w = TAILQ_FIRST(&wl[W_STARTING])) == NULL &&
		    (throttled || (w = pool_spawn()) == NULL))
			return -1;
		if (chan_send_handoff(w->w_fd, w->w_ref, cn->cn_fd,
		    (struct sockaddr *)&cn->cn_peer, cn->cn_peerlen,
		    cn->cn_t_accept, cn->cn_in + cn->cn_reqstart,
		    cn->cn_inlen - cn->cn_reqstart) == -1) {
			log_warn("worker %d: handoff", w->w_pid);
			w->w_asked_exit = 1;
			if (w->w_pid > 0)
				kill(w->w_pid, SIGKILL);
			pool_set_state(w, W_EXITING);
			continue;
		}
		pool_set_state(w, W_BUSY);
		w->w_took_call = 1;
		w->w_t_busy = w->w_t_heard = now_mono_ns();
		metrics.m_handoffs++;
		/* Fork the replacement once the loop is idle, not now. */
		if (!evtimer_pending(ev_refill, NULL)) {
			struct timeval tv = { 0, 0 };
			evtimer_add(ev_refill, &tv);
		}
		return 0;
	}
	return -1;
}

static void
pool_chan(int fd, short ev, void *arg)
{
	struct worker	*w = arg;
	struct chan_msg	 m;
	const char	*why;
	int		 r;

	(void)ev;
	for (;;) {
		r = chan_recv(fd, &m, &why);
		if (r == -1 && errno == EAGAIN)
			return;
		if (r == 0 || (r == -1 && errno == ECONNRESET)) {
			/* Worker gone; SIGCHLD does the rest. */
			event_del(w->w_ev);
			if (w->w_pid == 0 && w->w_state != W_BUSY) {
				/* Never heard of: its SPAWNED is lost. */
				log_warnx("worker ref %u gone before it said "
				    "who it was", w->w_ref);
				pool_free(w);
				pool_refill();
			}
			return;
		}
		if (r == 1)
			w->w_t_heard = now_mono_ns();
		if (r == -1 || pool_msg(w, &m) == -1) {
			log_warnx("worker %d: bad message (%s): killing it",
			    w->w_pid, r == -1 ? why : "unexpected type");
			event_del(w->w_ev);
			if (w->w_pid > 0)
				kill(w->w_pid, SIGKILL);
			return;
		}
	}
}

static int
pool_msg(struct worker *w, struct chan_msg *m)
{
	const struct msg_done	*d = &m->cm_u.done;

	/* Handed a stream while starting, it may speak before SPAWNED. */
	if (w->w_pid == 0 && m->cm_hdr.mh_pid > 0)
		w->w_pid = m->cm_hdr.mh_pid;
	switch (m->cm_hdr.mh_type) {
	case MSG_READY:
		if (w->w_pid == 0)
			w->w_pid = m->cm_u.ready.rd_pid;
		else if (w->w_pid != m->cm_u.ready.rd_pid)
			return -1;
		metrics_warm(m->cm_u.ready.rd_warm_ns);
		log_debug("worker %d ready in %llu us%s%s%s", w->w_pid,
		    (unsigned long long)(m->cm_u.ready.rd_warm_ns / 1000),
		    m->cm_u.ready.rd_flags & READY_REDIS ? "" :
		    " (Redis not connected)",
		    m->cm_u.ready.rd_flags & READY_DATABASE ? "" :
		    " (PostgreSQL not connected)",
		    m->cm_u.ready.rd_flags & READY_HTTP ? "" :
		    " (no HTTP client)");
		if (w->w_state == W_STARTING)
			pool_set_state(w, W_IDLE);
		return 0;
	case MSG_LOAD:
		if (m->cm_u.load.ld_frames > 0)
			headroom_lag(m->cm_u.load.ld_lag_max_us);
		return 0;
	case MSG_ACCEPTED:
		metrics_handoff(m->cm_u.accepted.ac_handoff_ns);
		backoff_ms = 0;
		log_info("worker %d accepted stream (handoff %llu us, channel "
		    "%llu us)", w->w_pid, (unsigned long long)
		    (m->cm_u.accepted.ac_handoff_ns / 1000),
		    (unsigned long long)(m->cm_u.accepted.ac_channel_ns / 1000));
		return 0;
	case MSG_CALL_INFO:
		w->w_ci = m->cm_u.call_info;
		placed_remove(w->w_ci.ci_call_sid);	/* now a busy worker */
		log_info("worker %d call %s stream %s type %s%s%s", w->w_pid,
		    w->w_ci.ci_call_sid, w->w_ci.ci_stream_sid,
		    w->w_ci.ci_call_type,
		    w->w_ci.ci_conversation_id[0] ? " conversation " : "",
		    w->w_ci.ci_conversation_id);
		return 0;
	case MSG_DONE:
		if (w->w_got_done)
			return -1;
		w->w_done = *d;
		w->w_got_done = 1;
		metrics_done(d);
		if (d->dn_job == 1 || d->dn_job == 2)
			metrics.m_jobs_enqueued++;
		else if (d->dn_job == 3)
			metrics.m_jobs_spooled++;
		else if (d->dn_job == 4)
			orphan_hold(&w->w_ci);	/* neither Redis nor the spool */
		log_info("worker %d call %s done: reason=%s frames_in=%llu "
		    "frames_out=%llu dropped=%llu bad=%llu duration_ms=%llu",
		    w->w_pid, w->w_ci.ci_call_sid[0] ? w->w_ci.ci_call_sid :
		    d->dn_call_sid[0] ? d->dn_call_sid : "-", d->dn_reason, (unsigned long long)d->dn_frames_in,
		    (unsigned long long)d->dn_frames_out,
		    (unsigned long long)d->dn_frames_dropped,
		    (unsigned long long)d->dn_bad_messages,
		    (unsigned long long)d->dn_duration_ms);
		return 0;
	default:
		return -1;	/* s->w types never come back */
	}
}

/*
 * Each second: every busy worker must have been heard from within
 * worker_stall seconds (its LOAD heartbeat).  One that was not is
 * stopped or stuck in a loop: SIGKILL, which a stopped process cannot
 * ignore or postpone as it would SIGTERM.  pool_reap() then cleans up
 * after its call as after any worker that died during one.  What is
 * queued on the channel is read first, so a supervisor that was itself
 * late does not blame its workers.
 */
static void
pool_watch(int fd, short ev, void *arg)
{
	struct worker	*w, *next;
	uint64_t	 stall, quiet;

	(void)fd, (void)ev, (void)arg;
	stall = (uint64_t)sv.sv_cf->worker_stall * 1000000000ULL;
	for (w = TAILQ_FIRST(&wl[W_BUSY]); w != NULL; w = next) {
		next = TAILQ_NEXT(w, w_entry);
		if (w->w_pid <= 0 || now_mono_ns() - w->w_t_heard < stall)
			continue;
		pool_chan(w->w_fd, EV_READ, w);
		if ((quiet = now_mono_ns() - w->w_t_heard) < stall)
			continue;
		log_warnx("worker %d call %s stalled: no heartbeat for %llu s; "
		    "killed", w->w_pid, w->w_ci.ci_call_sid[0] ?
		    w->w_ci.ci_call_sid : "unknown",
		    (unsigned long long)(quiet / 1000000000ULL));
		metrics.m_worker_stalls++;
		w->w_asked_exit = 1;
		if (kill(w->w_pid, SIGKILL) == -1)
			log_warn("worker %d: kill", w->w_pid);
		pool_set_state(w, W_EXITING);
	}
}

static struct worker *
pool_find(pid_t pid)
{
	struct worker	*w;
	int		 s;

	for (s = 0; s < W_NSTATES; s++)
		TAILQ_FOREACH(w, &wl[s], w_entry)
			if (w->w_pid == pid)
				return w;
	return NULL;
}

void
pool_reap(void)
{
	struct worker	*w;
	pid_t		 pid;
	int		 status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (forksrv_reaped(pid, status))
			continue;
		if ((w = pool_find(pid)) == NULL) {
			pool_early_dead(pid, status);
			continue;
		}
		pool_chan(w->w_fd, EV_READ, w);	/* DONE may be queued */
		pool_died(w, status);
		pool_free(w);
	}
	if (pid == -1 && errno != ECHILD)
		log_warn("waitpid");
	pool_refill();
	if (sv.sv_state != SV_RUNNING && pool_total() == 0)
		supervisor_workers_gone();
}

static void
pool_died(struct worker *w, int status)
{
	const char	*sid = w->w_ci.ci_call_sid[0] ? w->w_ci.ci_call_sid :
			    "unknown";
	int		 lost = w->w_took_call && !w->w_got_done;

	if (WIFSIGNALED(status)) {
		log_warnx("worker %d (call %s) killed by signal %d (%s)%s",
		    w->w_pid, w->w_took_call ? sid : "none", WTERMSIG(status),
		    strsignal(WTERMSIG(status)),
		    WCOREDUMP(status) ? ", core dumped" : "");
	} else if (WEXITSTATUS(status) != 0) {
		log_warnx("worker %d (call %s) exited with status %d",
		    w->w_pid, w->w_took_call ? sid : "none",
		    WEXITSTATUS(status));
	} else
		log_debug("worker %d exited", w->w_pid);
	if (lost) {
		metrics.m_crashes++;
		log_warnx("call %s (stream %s, conversation %s) lost its worker "
		    "%d without an ending report: cleaning up", sid,
		    w->w_ci.ci_stream_sid[0] ? w->w_ci.ci_stream_sid :
		    "unknown", w->w_ci.ci_conversation_id[0] ?
		    w->w_ci.ci_conversation_id : "none", w->w_pid);
		orphan_cleanup(&w->w_ci);
	}
	if (!w->w_took_call && !w->w_asked_exit && sv.sv_state == SV_RUNNING)
		pool_throttle(WIFEXITED(status) && WEXITSTATUS(status) == 2 ?
		    "a worker cannot start" :
		    "a worker died before taking a call");
}

static void
pool_free(struct worker *w)
{
	TAILQ_REMOVE(&wl[w->w_state], w, w_entry);
	wn[w->w_state]--;
	if (w->w_ev != NULL)
		event_free(w->w_ev);
	close(w->w_fd);
	free(w);
}

/*
 * While the phone rings: an idle worker loads the person and renders
 * the first message into call:{sid}, then exits.  Best effort.
 */
void
pool_prepare(const char *sid)
{
	struct worker	*w;
	struct timeval	 tv = { 0, 0 };

	if ((w = TAILQ_FIRST(&wl[W_IDLE])) == NULL &&
	    (w = TAILQ_FIRST(&wl[W_STARTING])) == NULL) {
		log_debug("call %s: no idle worker to prepare it", sid);
		return;
	}
	if (chan_send_prepare(w->w_fd, w->w_ref, sid) == -1) {
		log_warn("worker %d: PREPARE", w->w_pid);
		return;
	}
	w->w_asked_exit = 1;
	pool_set_state(w, W_EXITING);
	if (!evtimer_pending(ev_refill, NULL))
		evtimer_add(ev_refill, &tv);
}

/* Ask idle workers to exit (drain or reload). */
void
pool_drain_idle(void)
{
	struct worker	*w;

	int	s;

	for (s = W_IDLE; s < W_NSTATES; s++) {
		if (s != W_IDLE && s != W_STARTING)
			continue;
		while ((w = TAILQ_FIRST(&wl[s])) != NULL) {
			w->w_asked_exit = 1;
			if (chan_send_drain(w->w_fd, w->w_ref) == -1 &&
			    w->w_pid > 0)
				kill(w->w_pid, SIGTERM);
			pool_set_state(w, W_EXITING);
		}
	}
}

/* SIGTERM: end calls cleanly.  SIGKILL: the last resort. */
void
pool_signal_busy(int sig)
{
	struct worker	*w;
	int		 s;

	for (s = 0; s < W_NSTATES; s++)
		TAILQ_FOREACH(w, &wl[s], w_entry) {
			if ((s == W_IDLE || s == W_STARTING) &&
			    sig != SIGKILL)
				continue;
			w->w_asked_exit = 1;
			if (w->w_pid > 0)
				kill(w->w_pid, sig);
		}
}
