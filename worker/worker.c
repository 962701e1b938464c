/*
 * worker.c - a worker process: the scrub after fork, the warm-up, the
 * channel from the supervisor (HANDOFF, PREPARE, DRAIN), signals, and
 * the exit.  One worker serves one call and exits 0; it exits 2 if it
 * cannot start.  Reports READY, ACCEPTED, CALL_INFO and DONE on its
 * channel, and LOAD each second while busy (the heartbeat, call.c).
 *
 * The warm-up does, before any call, everything that does not depend on
 * one: Redis connected and authenticated, PostgreSQL connected with the
 * profile statement prepared, the HTTP client and the resolver made, the
 * call thread's stack and arena touched.  READY follows when all of it
 * is done or WARM_MAX_MS passed (what failed is retried by its owner:
 * Redis reconnects, a load without the warm connection opens its own).
 * A HANDOFF that arrives first is served at once with what is there.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <event2/dns.h>

#include "dns.h"
#include "evcurl.h"
#include "log.h"
#include "pgaddr.h"
#include "profile.h"
#include "redis.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

#define WK_CHAN_FD	3
#define WK_MMAP_THRESHOLD	(128 * 1024)	/* glibc's initial value */
#define WK_TRIM_DEFAULT		(128 * 1024)	/* M_TRIM_THRESHOLD, M_TOP_PAD */
#define WK_TOP_PROBE		(120 * 1024)	/* below WK_MMAP_THRESHOLD */
#define WK_STACK_WINDOW		(64 * 1024)	/* worker_settle_stack() */
#define WARM_MAX_MS		3000	/* READY even if not all is up */
#define WARM_CHECK_SECS		30	/* idle PostgreSQL health check */
#define WARM_STACK		(32 * 1024)	/* stack a call uses, touched */
#define WARM_HEAP		(96 * 1024)	/* arena a call uses, touched */

struct wk wk = { .wk_chan = -1 };

static void	worker_after_fork(int);
static void	worker_drop_stack(void) __attribute__((noinline));
static void	*worker_loop(void *);
static void	worker_chan(int, short, void *);
static void	worker_signal(int, short, void *);
static void	worker_handoff(struct chan_msg *);
static void	worker_warm_start(void);
static void	worker_warm_touch(void) __attribute__((noinline));
static void	worker_warm_redis(int, void *);
static void	worker_warm_db(int, const char *, void *);
static void	worker_warm_pg(void *);
static void	worker_warm_check(int, short, void *);
static void	worker_prefetch(void);
static void	worker_warm_late(int, short, void *);
static void	worker_warm_done(unsigned, int);
static void	worker_trim_stack(void);
static void	worker_trim_top(void);
static void	worker_drop_below(uintptr_t) __attribute__((noinline));

static uint64_t		 wk_t_start;
static unsigned		 wk_warm;	/* READY_* done so far */
static int		 wk_ready_sent;
static struct event	*wk_ev_warm;	/* deadline, then health checks */

/*
 * Turn the supervisor's copy into a worker: default signal handlers,
 * only stdio and our channel open, a fresh event base (the inherited
 * one is abandoned, never freed: its epoll fd is closed with the rest).
 */
static void
worker_after_fork(int chan)
{
	sigset_t		none;

	if (child_scrub(chan, WK_CHAN_FD) == -1 ||
	    fcntl(WK_CHAN_FD, F_SETFL, O_NONBLOCK) == -1)
		_exit(2);
	log_setproc("worker");
	(void)prctl(PR_SET_NAME, "naiberd-worker");
	/*
	 * The supervisor's 16 KiB mmap threshold is for its own heap; here
	 * a large agent audio message must not cost an mmap and munmap.
	 */
	mallopt(M_MMAP_THRESHOLD, WK_MMAP_THRESHOLD);
	worker_drop_stack();
	sigemptyset(&none);
	sigaddset(&none, SIGTERM);	/* read through a signalfd */
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/*
 * The stack below our frame holds the supervisor's dead frames, as deep
 * as it ever went (the 16 KiB HANDOFF buffer, libevent, OpenSSL).  Each
 * of those pages it writes again after the fork would become our private
 * copy: give them back (the kernel maps zero pages if ever touched
 * again).  One page below our frame stays for the red zone and this
 * call.  The bounds come from the [stack] line of /proc/self/maps, read
 * without stdio (no allocation here).
 */
static void
worker_drop_stack(void)
{
	char		 buf[512], *nl, *line;
	uintptr_t	 lo = 0, a, b;
	size_t		 have = 0;
	ssize_t		 n;
	int		 fd;

	if ((fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)) == -1)
		return;
	while (lo == 0 && (n = read(fd, buf + have, sizeof(buf) - 1 - have))
	    > 0) {
		have += (size_t)n;
		buf[have] = '\0';
		line = buf;
		while (lo == 0 && (nl = strchr(line, '\n')) != NULL) {
			*nl = '\0';
			if (strstr(line, "[stack]") != NULL &&
			    sscanf(line, "%lx-%lx", &a, &b) == 2)
				lo = a;
			line = nl + 1;
		}
		have = strlen(line);
		memmove(buf, line, have);
		if (have == sizeof(buf) - 1)
			have = 0;	/* no line is that long */
	}
	close(fd);
	worker_drop_below(lo);
}

/*
 * Give back the stack pages from lo up to the page below this frame:
 * they hold only dead frames.  One page stays for the red zone and the
 * madvise call itself.
 */
static void
worker_drop_below(uintptr_t lo)
{
	volatile char	here;
	uintptr_t	pg = (uintptr_t)sysconf(_SC_PAGESIZE), top;

	top = ((uintptr_t)&here & ~(pg - 1)) - pg;
	if (lo != 0 && lo < top)
		(void)madvise((void *)lo, top - lo, MADV_DONTNEED);
}

/*
 * The call runs on a second thread for its malloc arena alone: glibc
 * gives a new thread a fresh arena, so the call's allocations land on
 * fresh pages instead of in the free chunks scattered through the heap
 * inherited from the supervisor, each of which would copy a shared page
 * (~0.7 MB per worker).  The thread and its event base are made
 * before any call arrives: starting them on the handoff instead saves
 * ~50 KiB per idle worker but adds ~110 us to every handoff.  The first
 * thread only waits; nothing else runs concurrently, and every exit is
 * _exit() from the call thread.
 */
void
worker_main(int chan, struct config *cf)
{
	pthread_t	 t;
	sigset_t	 set;
	int		 sfd;

	wk_t_start = now_mono_ns();
	chan_set_pid((int32_t)getpid());
	worker_after_fork(chan);
	/*
	 * SIGTERM comes through a signalfd, not evsignal: libevent's signal
	 * state is process-global and still names the supervisor's base.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	if ((sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		_exit(2);
	wk.wk_chan = WK_CHAN_FD;
	wk.wk_cf = cf;
	if (pthread_create(&t, NULL, worker_loop, (void *)(intptr_t)sfd)
	    != 0) {
		log_warnx("worker: cannot start the call thread");
		_exit(2);
	}
	pthread_join(t, NULL);
	_exit(0);
}

static void *
worker_loop(void *arg)
{
	struct event	*ev_chan, *ev_term;
	int		 sfd = (int)(intptr_t)arg;

	if ((wk.wk_base = event_base_new()) == NULL) {
		log_warnx("worker: event_base_new failed");
		_exit(2);
	}
	ev_chan = event_new(wk.wk_base, wk.wk_chan, EV_READ | EV_PERSIST,
	    worker_chan, NULL);
	ev_term = event_new(wk.wk_base, sfd, EV_READ | EV_PERSIST,
	    worker_signal, NULL);
	if (ev_chan == NULL || ev_term == NULL ||
	    event_add(ev_chan, NULL) == -1 || event_add(ev_term, NULL) == -1)
		_exit(2);
	worker_warm_start();
	event_base_dispatch(wk.wk_base);
	_exit(0);
}

static void
worker_signal(int fd, short ev, void *arg)
{
	struct signalfd_siginfo	si;

	(void)ev, (void)arg;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		;
	if (wk.wk_call == NULL)
		_exit(0);
	call_agent_hangup(wk.wk_call, "shutdown");
}

static void
worker_chan(int fd, short ev, void *arg)
{
	struct chan_msg	*m;
	const char	*why;
	int		 r;
	static struct chan_msg msgbuf;

	(void)ev, (void)arg;
	m = &msgbuf;
	for (;;) {
		r = chan_recv(fd, m, &why);
		if (r == -1 && errno == EAGAIN)
			return;
		if (r == 0 || (r == -1 && errno != EBADMSG)) {
			/* The supervisor is gone. */
			if (wk.wk_call == NULL)
				_exit(0);
			call_agent_hangup(wk.wk_call, "supervisor gone");
			return;
		}
		if (r == -1) {
			log_warnx("bad message from the supervisor: %s", why);
			continue;
		}
		wk.wk_ref = m->cm_hdr.mh_ref;
		switch (m->cm_hdr.mh_type) {
		case MSG_HANDOFF:
			if (wk.wk_preparing) {
				log_warnx("HANDOFF while preparing: refused");
				close(m->cm_fd);
				break;
			}
			worker_handoff(m);
			break;
		case MSG_DRAIN:
			if (wk.wk_call == NULL)
				_exit(0);
			wk.wk_draining = 1;
			break;
		case MSG_PREPARE:
			if (wk.wk_call != NULL || wk.wk_preparing) {
				log_warnx("PREPARE while busy: ignored");
				break;
			}
			wk.wk_preparing = 1;
			prepare_start(m->cm_u.prepare.pr_call_sid);
			break;
		default:
			log_warnx("unexpected %s from the supervisor",
			    chan_type_name(m->cm_hdr.mh_type));
		}
	}
}

static void
worker_handoff(struct chan_msg *m)
{
	const struct msg_handoff *ho = &m->cm_u.handoff;
	uint64_t		  now = now_mono_ns();

	if (wk.wk_call != NULL) {
		log_warnx("second HANDOFF while busy: refused");
		close(m->cm_fd);
		return;
	}
	if (chan_send_accepted(wk.wk_chan, wk.wk_ref, now - ho->ho_t_accept_ns,
	    now - ho->ho_t_send_ns) == -1)
		log_warn("ACCEPTED");
	/* Made by the warm-up; only what it could not make is tried again. */
	if (wk.wk_rds == NULL)
		wk.wk_rds = rds_new(wk.wk_base, wk.wk_cf->redis_url, 2000);
	(void)worker_http();
	if (wk.wk_dns == NULL && dns_setup(wk.wk_base, wk.wk_cf->resolv_conf,
	    wk.wk_cf->dns_timeout) == 0)
		wk.wk_dns = dns_base();
	if (wk.wk_ec == NULL || wk.wk_dns == NULL)
		log_warnx("worker: HTTP client or resolver unavailable");
	if (wk_ev_warm != NULL)
		evtimer_del(wk_ev_warm);	/* no health checks in a call */
	wk.wk_call = call_new(m->cm_fd, ho, chan_handoff_head(m),
	    ho->ho_headlen);
	if (wk.wk_call == NULL) {
		struct msg_done d;
		memset(&d, 0, sizeof(d));
		strlcpy_n(d.dn_reason, "out of memory", sizeof(d.dn_reason));
		close(m->cm_fd);
		worker_finish(&d);
	}
}

/* --- warm-up -------------------------------------------------------- */

static void
worker_warm_start(void)
{
	struct timeval	tv = { WARM_MAX_MS / 1000, (WARM_MAX_MS % 1000) * 1000 };

	worker_warm_touch();
	wk_ev_warm = evtimer_new(wk.wk_base, worker_warm_late, NULL);
	/* First: Redis, PostgreSQL and the peers' names go through it. */
	if (dns_setup(wk.wk_base, wk.wk_cf->resolv_conf,
	    wk.wk_cf->dns_timeout) == 0)
		wk.wk_dns = dns_base();
	if ((wk.wk_rds = rds_new(wk.wk_base, wk.wk_cf->redis_url, 2000))
	    != NULL)
		rds_on_state(wk.wk_rds, worker_warm_redis, NULL);
	wk.wk_ec = worker_evcurl();
	worker_prefetch();
	if (wk.wk_ec != NULL && wk.wk_dns != NULL)
		wk_warm |= READY_HTTP;
	/* PostgreSQL once its host names are resolved (pgaddr.c). */
	if (pgaddr_start(wk.wk_base, wk.wk_cf->database_url, worker_warm_pg,
	    NULL) == -1)
		worker_warm_pg(NULL);
	if (wk_ev_warm != NULL)
		evtimer_add(wk_ev_warm, &tv);
	worker_warm_done(0, 0);
}

static void
worker_warm_pg(void *arg)
{
	(void)arg;
	if (wk.wk_pg == NULL && wk.wk_call == NULL)
		wk.wk_pg = profile_conn_open(wk.wk_base,
		    wk.wk_cf->database_url, wk.wk_cf->database_timeout,
		    worker_warm_db, NULL);
}

/*
 * Fault in now the stack and the arena pages every call writes, so the
 * first frames of a call do not pay for them.  The heap block is freed
 * back to this thread's arena, which keeps it (below the trim
 * threshold) for the call's own allocations.
 */
static void
worker_warm_touch(void)
{
	volatile char	 stack[WARM_STACK];
	char		*p;

	memset((char *)stack, 0, sizeof(stack));
	if ((p = malloc(WARM_HEAP)) != NULL) {
		memset(p, 0, WARM_HEAP);
		free(p);
	}
}

static void
worker_warm_redis(int up, void *arg)
{
	(void)arg;
	if (up)
		worker_warm_done(READY_REDIS, 0);
}

static void
worker_warm_db(int ok, const char *err, void *arg)
{
	(void)arg;
	if (ok)
		worker_warm_done(READY_DATABASE, 0);
	else
		log_debug("warm-up: PostgreSQL not ready: %s", err);
}

/* READY once all of it is there, or when forced by the deadline. */
static void
worker_warm_done(unsigned what, int force)
{
	struct msg_ready	rd;
	struct timeval		tv = { WARM_CHECK_SECS, 0 };

	wk_warm |= what;
	if (wk_ready_sent || wk.wk_call != NULL || wk.wk_preparing ||
	    (!force && wk_warm != (READY_REDIS | READY_DATABASE | READY_HTTP)))
		return;
	wk_ready_sent = 1;
	memset(&rd, 0, sizeof(rd));
	rd.rd_pid = (int32_t)getpid();
	rd.rd_flags = wk_warm & (READY_REDIS | READY_DATABASE | READY_HTTP);
	rd.rd_warm_ns = now_mono_ns() - wk_t_start;
	if (chan_send_ready(wk.wk_chan, wk.wk_ref, &rd) == -1)
		log_warn("READY");
	if (wk_ev_warm != NULL) {
		event_free(wk_ev_warm);
		wk_ev_warm = event_new(wk.wk_base, -1, EV_PERSIST,
		    worker_warm_check, NULL);
		if (wk_ev_warm != NULL)
			event_add(wk_ev_warm, &tv);
	}
}

static void
worker_warm_late(int fd, short ev, void *arg)
{
	(void)fd, (void)ev, (void)arg;
	log_debug("warm-up: not all up within %d ms (Redis %s, PostgreSQL "
	    "%s): ready anyway", WARM_MAX_MS, wk_warm & READY_REDIS ? "up" :
	    "down", wk_warm & READY_DATABASE ? "up" : "down");
	worker_warm_done(0, 1);
}

/* An idle worker's PostgreSQL connection, re-made if it was dropped. */
static void
worker_warm_check(int fd, short ev, void *arg)
{
	(void)fd, (void)ev, (void)arg;
	if (wk.wk_call == NULL && !wk.wk_preparing && wk.wk_pg != NULL)
		profile_conn_check(wk.wk_pg);
	if (wk.wk_call == NULL)
		worker_prefetch();
}

/*
 * The peers a call talks to, looked up while idle (dns.c keeps the
 * answers), so the call does not wait for the resolver: ElevenLabs (its
 * API and, in practice, its WebSocket host), Twilio's REST API, OpenAI.
 */
static void
worker_prefetch(void)
{
	dns_prefetch_url(wk.wk_base, wk.wk_cf->elevenlabs_base_url);
	dns_prefetch_url(wk.wk_base, wk.wk_cf->twilio_api_base);
	if (wk.wk_cf->openai_api_key != NULL)
		dns_prefetch_url(wk.wk_base, wk.wk_cf->openai_base_url);
}

/*
 * The call is set up: its init message went to ElevenLabs, and no audio
 * is relayed until the conversation's metadata comes back, so a stall
 * here delays no frame.  Give back what only the set-up needed, so a
 * live call holds little more than its relay uses: the HTTP client and
 * its kept-alive connection to ElevenLabs (~55 KiB of allocations, its
 * 16 KiB buffer included; the end of the call makes a new client if it
 * needs Twilio's REST API), the arena's free pages
 * (the PostgreSQL connection, the profile, the prompt and the first
 * message were freed before this, ws_settle() the buffers' unused pages)
 * and the call thread's stack below this frame (OpenSSL and libpq went
 * deepest).  Measured on a busy bench worker (2-vCPU VM, N = 50):
 * private dirty 388 -> 308 KiB with ws_settle() and call_setup_free(),
 * then 304 -> ~250 KiB with worker_trim_top(), worker_settle_stack() and
 * the fork server's prewarm; it takes 0.2-0.3 ms, most of it libcurl's
 * clean-up.
 */
void
worker_settle(void)
{
	uint64_t	t0 = now_mono_ns();

	if (wk.wk_ec != NULL && evcurl_pending(wk.wk_ec) == 0) {
		evcurl_free(wk.wk_ec);
		wk.wk_ec = NULL;
	}
	(void)malloc_trim(0);
	worker_trim_top();
	worker_trim_stack();
	log_debug("call set up: its set-up memory given back in %llu us",
	    (unsigned long long)((now_mono_ns() - t0) / 1000));
}

/*
 * malloc_trim() gives back the whole pages inside free chunks, but in a
 * thread's arena never the top chunk's, where the set-up's last freed
 * allocations lie (5 resident pages, measured).  Free one chunk of
 * WK_TOP_PROBE (more than any free chunk, so carved from the top) with
 * no top pad and a page of trim threshold: glibc then shrinks the arena
 * to its last chunk in use and drops every page after it.  The chunk's
 * own pages are dropped first, in case a free chunk served it.  Then
 * glibc's defaults again, for the rest of the call.
 */
static void
worker_trim_top(void)
{
	uintptr_t	 pg = (uintptr_t)sysconf(_SC_PAGESIZE), lo, hi;
	char		*p;

	(void)mallopt(M_TOP_PAD, 0);
	(void)mallopt(M_TRIM_THRESHOLD, (int)pg);
	if ((p = malloc(WK_TOP_PROBE)) != NULL) {
		lo = ((uintptr_t)p + pg - 1) & ~(pg - 1);
		hi = ((uintptr_t)p + WK_TOP_PROBE) & ~(pg - 1);
		if (hi > lo)
			(void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
		free(p);
	}
	(void)mallopt(M_TRIM_THRESHOLD, WK_TRIM_DEFAULT);
	(void)mallopt(M_TOP_PAD, WK_TRIM_DEFAULT);
}

/* The call thread's stack below the caller's frame (see worker_settle). */
static void
worker_trim_stack(void)
{
	pthread_attr_t	 a;
	void		*lo;
	size_t		 sz;

	if (pthread_getattr_np(pthread_self(), &a) != 0)
		return;
	if (pthread_attr_getstack(&a, &lo, &sz) != 0)
		lo = NULL;
	(void)pthread_attr_destroy(&a);
	worker_drop_below((uintptr_t)lo);
}

/*
 * Once more at the first agent audio, whose log line (and the one for the
 * conversation's metadata before it) came after worker_settle(): a log
 * line runs ~17 KiB below its caller (vlog and log_emit's buffers,
 * vsnprintf), and the relay never goes that deep again.  Only a window
 * below this frame, so the madvise call costs a few microseconds.
 */
void
worker_settle_stack(void)
{
	volatile char	here;

	worker_drop_below(((uintptr_t)&here - WK_STACK_WINDOW) &
	    ~(uintptr_t)(sysconf(_SC_PAGESIZE) - 1));
}

/* The HTTP client, made again if worker_settle() let it go. */
struct evcurl *
worker_http(void)
{
	if (wk.wk_ec == NULL)
		wk.wk_ec = worker_evcurl();
	return wk.wk_ec;
}

/*
 * The HTTP client trusts the CA store of the TLS context the supervisor
 * built before forking (system anchors plus TLS_CA_FILE) instead of
 * parsing the system bundle once more in this process.
 */
struct evcurl *
worker_evcurl(void)
{
	SSL_CTX	*ctx = tls_client_ctx();

	return evcurl_new_store(wk.wk_base, ctx != NULL ?
	    SSL_CTX_get_cert_store(ctx) : NULL, wk.wk_cf->tls_ca_file);
}

void
worker_report_load(uint32_t lag_us, uint32_t frames)
{
	if (chan_send_load(wk.wk_chan, wk.wk_ref, lag_us, frames) == -1)
		log_warn("LOAD");
}

void
worker_report_info(const struct msg_call_info *ci)
{
	if (chan_send_call_info(wk.wk_chan, wk.wk_ref, ci) == -1)
		log_warn("CALL_INFO");
}

/* The last act of a worker: report, then leave without atexit hooks. */
void
worker_finish(const struct msg_done *d)
{
	if (chan_send_done(wk.wk_chan, wk.wk_ref, d) == -1)
		log_warn("DONE");
	profile_conn_close(wk.wk_pg);	/* a pooler sees a clean goodbye */
	_exit(0);
}
