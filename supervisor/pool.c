/*
 * pool.c - struct worker: the pre-forked worker processes, their
 * states and lists, spawning with brakes, reaping, the stream handoff
 * (SCM_RIGHTS over the worker's channel) and the messages workers send
 * back (ACCEPTED, CALL_INFO, DONE).  Runs in the supervisor.  A worker
 * changes state only through pool_set_state().
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

static TAILQ_HEAD(wlist, worker) wl[W_NSTATES];
static unsigned		 wn[W_NSTATES];
static uint32_t		 next_ref = 1;
static struct event	*ev_throttle;
static struct event	*ev_refill;	/* refill after pending handoffs */
static long		 backoff_ms;
static int		 throttled;

static const char *const w_state_names[] = { "idle", "busy", "exiting" };

int
pool_start(void)
{
	int	i;

	for (i = 0; i < W_NSTATES; i++)
		TAILQ_INIT(&wl[i]);
	if ((ev_throttle = evtimer_new(sv.sv_base, pool_unthrottle, NULL))
	    == NULL || (ev_refill = evtimer_new(sv.sv_base, pool_refill_cb,
	    NULL)) == NULL)
		return -1;
	pool_refill();
	return pool_count(W_IDLE) > 0 ? 0 : -1;
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

	if (w->w_pid != 0 && from == (int)to)
		log_panic("worker %d: %s to %s", w->w_pid,
		    w_state_names[from], w_state_names[to]);
	if (w->w_pid != 0 && ((from == W_BUSY && to == W_IDLE) ||
	    from == W_EXITING))
		log_panic("worker %d: impossible move %s to %s", w->w_pid,
		    w_state_names[from], w_state_names[to]);
	if (w->w_pid != 0) {
		TAILQ_REMOVE(&wl[from], w, w_entry);
		wn[from]--;
	}
	w->w_state = to;
	TAILQ_INSERT_TAIL(&wl[to], w, w_entry);
	wn[to]++;
}

static struct worker *
pool_spawn(void)
{
	struct worker	*w;
	int		 sp[2];
	sigset_t	 all, old;
	pid_t		 pid;

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
	/*
	 * Hand whole free heap pages back first: a page the child never
	 * shared cannot become its private copy when we reuse it later.
	 */
	malloc_trim(0);
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	if ((pid = fork()) == -1) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		log_warn("fork");
		close(sp[0]);
		close(sp[1]);
		free(w);
		pool_throttle("fork failed");
		return NULL;
	}
	if (pid == 0) {
		close(sp[0]);
		worker_main(sp[1], sv.sv_cf);	/* unblocks signals */
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(sp[1]);
	w->w_fd = sp[0];
	w->w_ref = next_ref++;
	w->w_t_spawn = now_mono_ns();
	w->w_ev = event_new(sv.sv_base, w->w_fd, EV_READ | EV_PERSIST,
	    pool_chan, w);
	if (w->w_ev == NULL || event_add(w->w_ev, NULL) == -1)
		log_warnx("worker %d: cannot watch its channel", pid);
	pool_set_state(w, W_IDLE);
	w->w_pid = pid;
	metrics.m_workers_spawned++;
	log_debug("worker %d started", pid);
	return w;
}

/* Keep `workers` idle ones, never more than capacity allows. */
void
pool_refill(void)
{
	long	want;

	if (sv.sv_state != SV_RUNNING || throttled)
		return;
	want = sv.sv_cf->workers;
	if (want > sv.sv_cf->max_calls - (long)wn[W_BUSY])
		want = sv.sv_cf->max_calls - (long)wn[W_BUSY];
	while ((long)wn[W_IDLE] < want && !throttled)
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
 * Give the upgraded connection to an idle worker (spawning one if none
 * is idle).  On success the worker holds the socket and the caller
 * closes its copy.  Returns 0 or -1.
 */
int
pool_handoff(struct conn *cn)
{
	struct worker	*w;
	int		 tries;

	for (tries = 0; tries < 3; tries++) {
		if ((w = TAILQ_FIRST(&wl[W_IDLE])) == NULL &&
		    (throttled || (w = pool_spawn()) == NULL))
			return -1;
		if (chan_send_handoff(w->w_fd, w->w_ref, cn->cn_fd,
		    (struct sockaddr *)&cn->cn_peer, cn->cn_peerlen,
		    cn->cn_t_accept, cn->cn_in + cn->cn_reqstart,
		    cn->cn_inlen - cn->cn_reqstart) == -1) {
			log_warn("worker %d: handoff", w->w_pid);
			w->w_asked_exit = 1;
			kill(w->w_pid, SIGKILL);
			pool_set_state(w, W_EXITING);
			continue;
		}
		pool_set_state(w, W_BUSY);
		w->w_took_call = 1;
		w->w_t_busy = now_mono_ns();
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
		if (r == 0) {
			/* Worker gone; SIGCHLD does the rest. */
			event_del(w->w_ev);
			return;
		}
		if (r == -1 || pool_msg(w, &m) == -1) {
			log_warnx("worker %d: bad message (%s): killing it",
			    w->w_pid, r == -1 ? why : "unexpected type");
			event_del(w->w_ev);
			kill(w->w_pid, SIGKILL);
			return;
		}
	}
}

static int
pool_msg(struct worker *w, struct chan_msg *m)
{
	const struct msg_done	*d = &m->cm_u.done;

	switch (m->cm_hdr.mh_type) {
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
			metrics.m_jobs_lost++;
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
		if ((w = pool_find(pid)) == NULL) {
			log_debug("reaped unknown child %d", pid);
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

	if ((w = TAILQ_FIRST(&wl[W_IDLE])) == NULL) {
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

	while ((w = TAILQ_FIRST(&wl[W_IDLE])) != NULL) {
		w->w_asked_exit = 1;
		if (chan_send_drain(w->w_fd, w->w_ref) == -1)
			kill(w->w_pid, SIGTERM);
		pool_set_state(w, W_EXITING);
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
			if (s == W_IDLE && sig != SIGKILL)
				continue;
			w->w_asked_exit = 1;
			kill(w->w_pid, sig);
		}
}
