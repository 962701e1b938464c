/*
 * forksrv.c - the fork server: a process made from the supervisor once
 * the configuration, the TLS context and the prompts are loaded (and
 * again after each reload), that only forks workers.  It does nothing
 * else, so its pages stay as they were and every worker shares them;
 * and no fork ever runs on the supervisor's loop, which accepts and
 * hands off streams.
 *
 * The supervisor makes each worker's channel (a socketpair) itself and
 * sends the worker's end in a SPAWN message; the fork server forks a
 * child that becomes the worker on that end and answers SPAWNED with
 * the child's pid.  The child is made with clone(CLONE_PARENT), so it
 * is the supervisor's child, not ours: the supervisor reaps it, gets its
 * SIGCHLD and owns it exactly as if it had forked it.  Where the kernel
 * or a tool (valgrind) refuses CLONE_PARENT, a short-lived middle child
 * forks the worker and exits, and the worker is re-parented to the
 * supervisor, a child subreaper.
 *
 * Supervisor side: forksrv_start(), forksrv_spawn(), forksrv_stop(),
 * forksrv_pid(), forksrv_reaped(); the answers go to pool_spawned().
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "dns.h"
#include "evcurl.h"
#include "httphead.h"
#include "log.h"
#include "tls.h"
#include "util.h"
#include "supervisor.h"

#define FS_CTL_FD	3	/* the control socket, in the fork server */

static pid_t		 fs_pid;
static pid_t		 fs_old[4];	/* told to go, not reaped yet */
static int		 fs_fd = -1;
static struct event	*fs_ev;

static void	forksrv_main(int, struct config *) __attribute__((noreturn));
static pid_t	forksrv_clone(int, struct config *);
static void	forksrv_read(int, short, void *);

/*
 * Fork the fork server with the configuration now in force.  An old one
 * is told to go first (its workers are not affected).  0 or -1.
 */
int
forksrv_start(void)
{
	int		 sp[2];
	sigset_t	 all, old;
	pid_t		 pid;

	forksrv_stop();
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == -1) {
		log_warn("fork server: socketpair");
		return -1;
	}
	malloc_trim(0);
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	if ((pid = fork()) == -1) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		log_warn("fork server: fork");
		close(sp[0]);
		close(sp[1]);
		return -1;
	}
	if (pid == 0) {
		close(sp[0]);
		forksrv_main(sp[1], sv.sv_cf);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(sp[1]);
	if (fcntl(sp[0], F_SETFL, O_NONBLOCK) == -1 ||
	    (fs_ev = event_new(sv.sv_base, sp[0], EV_READ | EV_PERSIST,
	    forksrv_read, NULL)) == NULL || event_add(fs_ev, NULL) == -1) {
		log_warnx("fork server: cannot watch its socket");
		if (fs_ev != NULL)
			event_free(fs_ev);
		fs_ev = NULL;
		close(sp[0]);
		kill(pid, SIGKILL);
		return -1;
	}
	fs_fd = sp[0];
	fs_pid = pid;
	log_info("fork server %d started", pid);
	return 0;
}

/* Close our end: the fork server exits when it reads EOF. */
void
forksrv_stop(void)
{
	if (fs_ev != NULL)
		event_free(fs_ev);
	fs_ev = NULL;
	if (fs_fd != -1)
		close(fs_fd);
	fs_fd = -1;
	if (fs_pid > 0) {
		memmove(fs_old + 1, fs_old, sizeof(fs_old) - sizeof(fs_old[0]));
		fs_old[0] = fs_pid;
	}
	fs_pid = 0;
}

pid_t
forksrv_pid(void)
{
	return fs_pid;
}

/* Ask for a worker on chan (the worker's end); 0 or -1. */
int
forksrv_spawn(uint32_t ref, int chan)
{
	if (fs_fd == -1) {
		errno = ENOTCONN;
		return -1;
	}
	return chan_send_spawn(fs_fd, ref, chan);
}

static void
forksrv_read(int fd, short ev, void *arg)
{
	struct chan_msg	 m;
	const char	*why;
	int		 r;

	(void)ev, (void)arg;
	for (;;) {
		r = chan_recv(fd, &m, &why);
		if (r == -1 && errno == EAGAIN)
			return;
		if (r == 0 || (r == -1 && errno != EBADMSG)) {
			/* It died: SIGCHLD tells pool_reap(). */
			event_del(fs_ev);
			return;
		}
		if (r == -1 || m.cm_hdr.mh_type != MSG_SPAWNED) {
			log_warnx("fork server: bad message (%s)", r == -1 ?
			    why : chan_type_name(m.cm_hdr.mh_type));
			continue;
		}
		pool_spawned(m.cm_hdr.mh_ref, m.cm_u.spawned.sp_pid,
		    m.cm_u.spawned.sp_errno);
	}
}

/* At exit: let fork servers told to go finish, for at most ms. */
void
forksrv_wait(int ms)
{
	size_t	i, left;
	int	st;

	for (; ms >= 0; ms -= 10) {
		for (i = 0, left = 0; i < sizeof(fs_old) / sizeof(fs_old[0]);
		    i++) {
			if (fs_old[i] > 0 &&
			    waitpid(fs_old[i], &st, WNOHANG) == 0)
				left++;
			else
				fs_old[i] = 0;
		}
		if (left == 0)
			return;
		usleep(10000);
	}
}

/*
 * pool_reap() found pid: 1 if it was a fork server (an old one told to
 * go, or the current one, which died: logged, and pool_forksrv_gone()),
 * else 0.
 */
int
forksrv_reaped(pid_t pid, int status)
{
	size_t	i;

	for (i = 0; i < sizeof(fs_old) / sizeof(fs_old[0]); i++)
		if (fs_old[i] == pid) {
			fs_old[i] = 0;
			log_debug("old fork server %d exited", pid);
			return 1;
		}
	if (pid != fs_pid || pid == 0)
		return 0;
	if (fs_fd != -1)
		forksrv_read(fs_fd, EV_READ, NULL);	/* SPAWNED queued */
	if (WIFSIGNALED(status))
		log_warnx("fork server %d killed by signal %d (%s)", fs_pid,
		    WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		log_warnx("fork server %d exited with status %d", fs_pid,
		    WEXITSTATUS(status));
	fs_pid = 0;
	forksrv_stop();
	pool_forksrv_gone();
	return 1;
}

/* --- in the fork server ---------------------------------------------- */

/*
 * What every worker would otherwise do first, once here, so that it stays
 * in pages the workers share.  A library's once-only state lives in its
 * data page: the first worker write copies the whole page, in every
 * worker, busy or idle (measured with pagemap against this process: six
 * such pages, 24 KiB per worker).  In order: OpenSSL's algorithm tables;
 * curl_global_init (libcurl's and libssh2's init counters, OpenSSL's
 * engine list); jansson's hash seed (one seed for all workers, as one
 * process would have: it is still random per fork server) and its calls
 * into libc; http_parser's header limit; libevent's resolver
 * registration.
 */
static void
forksrv_prewarm(void)
{
	static const char doc[] =
	    "{\"a\":[1,-2.5e3,\"\\u00e9\\n\",true,false,null],\"b\":{}}";
	json_error_t	 e;
	json_t		*j;
	char		*s;

	tls_prewarm();
	(void)evcurl_global_init();
	json_object_seed(0);
	/* Binds jansson's calls into libc (its lazily bound GOT, same page). */
	j = json_loadb(doc, sizeof(doc) - 1, 0, &e);
	if (j != NULL) {
		(void)json_object_set_new(j, "c", json_pack("{s:s,s:i,s:b}",
		    "d", "e", "f", 1, "g", 0));
		if ((s = json_dumps(j, JSON_COMPACT)) != NULL)
			free(s);
		json_decref(j);
	}
	hh_global_init();
	dns_prewarm();
}

/*
 * Default signals, only stdio and the control socket open, and gone as
 * soon as the supervisor is.  Then one SPAWN at a time, blocking: there
 * is nothing else to do.
 */
static void
forksrv_main(int ctl, struct config *cf)
{
	struct chan_msg		*m;
	struct pollfd		 pfd;
	const char		*why;
	sigset_t		 none;
	pid_t			 pid;
	int			 r;

	if (child_scrub(ctl, FS_CTL_FD) == -1)
		_exit(2);
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(0);
	log_setproc("forkserver");
	(void)prctl(PR_SET_NAME, "naiberd-fork");
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	forksrv_prewarm();
	/* The 16 KiB HANDOFF-sized buffer once, not on every request. */
	if ((m = malloc(sizeof(*m))) == NULL)
		_exit(2);
	pfd.fd = FS_CTL_FD;
	pfd.events = POLLIN;
	for (;;) {
		r = chan_recv(FS_CTL_FD, m, &why);
		if (r == -1 && errno == EAGAIN) {
			if (poll(&pfd, 1, -1) == -1 && errno != EINTR)
				_exit(2);
			continue;
		}
		if (r == 0 || (r == -1 && errno != EBADMSG))
			_exit(0);	/* the supervisor closed or is gone */
		if (r == -1 || m->cm_hdr.mh_type != MSG_SPAWN) {
			log_warnx("bad request from the supervisor: %s",
			    r == -1 ? why : chan_type_name(m->cm_hdr.mh_type));
			if (r == 1 && m->cm_fd != -1)
				close(m->cm_fd);
			continue;
		}
		pid = forksrv_clone(m->cm_fd, cf);
		close(m->cm_fd);
		if (chan_send_spawned(FS_CTL_FD, m->cm_hdr.mh_ref,
		    pid > 0 ? pid : 0, pid > 0 ? 0 : errno) == -1)
			_exit(2);	/* the supervisor will see us gone */
	}
}

/*
 * A worker on chan, as the supervisor's child.  clone() with only
 * CLONE_PARENT and the exit signal is fork() for everything we rely on:
 * this process has one thread and holds no lock here, so there is
 * nothing for fork()'s handlers to do.  Returns its pid, or -1.
 */
static pid_t
forksrv_clone(int chan, struct config *cf)
{
	static int	 no_clone_parent;
	int		 pp[2], st;
	pid_t		 pid, mid;
	ssize_t		 n;

	if (!no_clone_parent) {
		pid = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0,
		    0);
		if (pid == 0)
			worker_main(chan, cf);
		if (pid > 0)
			return pid;
		if (errno != EINVAL)
			return -1;
		no_clone_parent = 1;
		log_info("clone(CLONE_PARENT) refused: workers are forked "
		    "through a middle process");
	}
	if (pipe2(pp, O_CLOEXEC) == -1)
		return -1;
	if ((mid = fork()) == -1) {
		close(pp[0]);
		close(pp[1]);
		return -1;
	}
	if (mid == 0) {
		close(pp[0]);
		if ((pid = fork()) == 0) {
			close(pp[1]);
			worker_main(chan, cf);
		}
		if (write(pp[1], &pid, sizeof(pid)) != (ssize_t)sizeof(pid))
			_exit(1);
		_exit(0);
	}
	close(pp[1]);
	do
		n = read(pp[0], &pid, sizeof(pid));
	while (n == -1 && errno == EINTR);
	close(pp[0]);
	while (waitpid(mid, &st, 0) == -1 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(pid) || pid <= 0) {
		errno = EAGAIN;
		return -1;
	}
	return pid;
}
