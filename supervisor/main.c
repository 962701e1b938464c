/*
 * main.c - naiberd's entry: command line, configuration, -t, binding,
 * -D and the pid file, privilege drop, then supervisor_run().  Runs in
 * the supervisor before its event loop exists; err-style exits only.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "supervisor.h"

#define META_SHORT	"c:DfhtV"

static void	usage(FILE *);
static int	pidfile_write(const char *);
static int	daemonize(void);
static int	drop_privileges(const char *);
static void	raise_nofile(void);

static struct cfg_override overrides[64];
static size_t		   noverrides;

static void
usage(FILE *fp)
{
	size_t	i;
	char	c;

	fprintf(fp, "usage: naiberd [-DfhtV] [-c file]");
	/* Short flags with arguments, alphabetically. */
	for (c = 'a'; c <= 'z'; c++) {
		int k = config_find_short(c);
		if (k >= 0)
			fprintf(fp, " [-%c %s]", c, config_opts[k].o_arg);
	}
	for (i = 0; i < config_nopts; i++)
		if (config_opts[i].o_long != NULL)
			fprintf(fp, " [--%s %s]", config_opts[i].o_long,
			    config_opts[i].o_arg);
	fprintf(fp, "\n");
}

/*
 * Hidden --dump-options: the option table, one line per key, for the
 * man-page check: key TAB env TAB type TAB default TAB flags.
 */
static void
dump_options(void)
{
	static const char *const types[] = { "string", "integer", "boolean",
	    "url", "choice" };
	size_t	i;

	for (i = 0; i < config_nopts; i++) {
		const struct opt *o = &config_opts[i];
		printf("%s\t%s\t%s\t%s\t%s%s%s%s\n", o->o_key,
		    o->o_env ? o->o_env : "-", types[o->o_type],
		    o->o_def ? o->o_def : "-",
		    o->o_flags & OF_SECRET ? "secret," : "",
		    o->o_flags & OF_NORELOAD ? "noreload," : "",
		    o->o_flags & OF_REQUIRED ? "required," : "", "-");
	}
}

static int
parse_args(int argc, char **argv, const char **cfpath, int *must_exist,
    int *test, int *daemon_mode)
{
	struct option	 lopts[64];
	char		 sopts[64] = META_SHORT;
	size_t		 i, nl = 0, ns = strlen(sopts);
	int		 ch, li, k;

	for (i = 0; i < config_nopts; i++) {
		const struct opt *o = &config_opts[i];
		if (o->o_short != 0) {
			sopts[ns++] = (char)o->o_short;
			sopts[ns++] = ':';
		}
		if (o->o_long != NULL) {
			lopts[nl].name = o->o_long;
			lopts[nl].has_arg = required_argument;
			lopts[nl].flag = NULL;
			lopts[nl].val = 1000 + (int)i;
			nl++;
		}
	}
	sopts[ns] = '\0';
	lopts[nl].name = "dump-options";
	lopts[nl].has_arg = no_argument;
	lopts[nl].flag = NULL;
	lopts[nl].val = 999;
	nl++;
	memset(&lopts[nl], 0, sizeof(lopts[nl]));
	while ((ch = getopt_long(argc, argv, sopts, lopts, &li)) != -1) {
		switch (ch) {
		case 'c':
			*cfpath = optarg;
			*must_exist = 1;
			break;
		case 'D':
			*daemon_mode = 1;
			break;
		case 'f':
			*daemon_mode = 0;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 't':
			*test = 1;
			break;
		case 'V':
			printf("naiberd %s\n", NAIBER_VERSION);
			exit(0);
		case 999:
			dump_options();
			exit(0);
		default:
			k = ch >= 1000 ? ch - 1000 : config_find_short(ch);
			if (k < 0 || noverrides == 64) {
				usage(stderr);
				exit(1);
			}
			overrides[noverrides].co_opt = k;
			overrides[noverrides].co_val = optarg;
			noverrides++;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "naiberd: unexpected argument \"%s\"\n",
		    argv[optind]);
		usage(stderr);
		exit(1);
	}
	return 0;
}

/*
 * The connection cap (1024), the workers' channels and the listening
 * socket need more descriptors than systemd's default soft limit of
 * 1024: take the hard limit (up to 65536).  Workers inherit it.
 */
static void
raise_nofile(void)
{
	struct rlimit	rl;
	rlim_t		want = 65536;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
		want = rl.rlim_max;
	if (rl.rlim_cur >= want)
		return;
	rl.rlim_cur = want;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		log_warn("setrlimit(RLIMIT_NOFILE, %llu)",
		    (unsigned long long)want);
	else if (want < CONN_MAX + 256)
		log_warnx("open file limit %llu: fewer than the connection "
		    "cap (%d) needs", (unsigned long long)want, CONN_MAX);
}

int
main(int argc, char **argv)
{
	struct cfg_errors	 errs;
	struct config		*cf;
	const char		*cfpath = CONFIG_DEFAULT_FILE;
	int			 must_exist = 0, test = 0, daemon_mode = 0, i;

	parse_args(argc, argv, &cfpath, &must_exist, &test, &daemon_mode);
	if ((cf = config_build(cfpath, must_exist, overrides, noverrides,
	    &errs)) == NULL) {
		for (i = 0; i < errs.ce_n; i++)
			fprintf(stderr, "naiberd: %s\n", errs.ce_msg[i]);
		if (errs.ce_n == CONFIG_MAX_ERRORS)
			fprintf(stderr, "naiberd: (more errors not shown)\n");
		return 1;
	}
	if (test) {
		printf("configuration OK\n");
		return 0;
	}
	if (geteuid() == 0 && cf->user == NULL &&
	    (daemon_mode || cf->port < 1024)) {
		fprintf(stderr, "naiberd: refusing to run as root: give -u "
		    "user (or run in the foreground on a port >= 1024)\n");
		return 1;
	}
	log_init(log_format_parse(cf->log_format),
	    log_target_parse(cf->log_target), log_level_parse(cf->log_level));
	log_setproc("supervisor");
	sv.sv_cf = cf;
	sv.sv_cfpath = cfpath;
	sv.sv_cf_must_exist = must_exist;
	sv.sv_ov = overrides;
	sv.sv_nov = noverrides;
	raise_nofile();
	if ((sv.sv_listen_fd = listener_open(cf->listen_addr, cf->port)) == -1)
		return 1;
	if (daemon_mode && daemonize() == -1)
		return 1;
	if (cf->pidfile != NULL && pidfile_write(cf->pidfile) == -1)
		return 1;
	if (cf->user != NULL && drop_privileges(cf->user) == -1)
		return 1;
	if (sched_set_slice(cf->sched_slice) == -1)
		log_debug("sched_slice %ld us not applied: %s", cf->sched_slice,
		    strerror(errno));
	return supervisor_run();
}

/*
 * Detach.  The launching process stays until the daemon says it serves
 * (a byte on ready_fd, written by supervisor_run()) or dies, and exits 0
 * or 1 accordingly, so an init script sees a failed start.
 */
static int
daemonize(void)
{
	int	p[2], fd;
	pid_t	pid;
	char	c;

	if (pipe2(p, O_CLOEXEC) == -1 || (pid = fork()) == -1) {
		log_warn("daemonize");
		return -1;
	}
	if (pid != 0) {
		close(p[1]);
		_exit(read(p[0], &c, 1) == 1 && c == 'R' ? 0 : 1);
	}
	close(p[0]);
	sv.sv_ready_fd = p[1];
	if (setsid() == -1 || (pid = fork()) == -1) {
		log_warn("daemonize");
		return -1;
	}
	if (pid != 0)
		_exit(0);
	if (chdir("/") == -1)
		log_warn("chdir /");
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return 0;
}

/*
 * Lock and write the pid file; refuses to start if another naiberd
 * holds the lock.  The descriptor stays open (and locked) for the life
 * of the supervisor; workers close their copy after fork.
 */
static int
pidfile_write(const char *path)
{
	char	buf[32];
	int	fd, n;

	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) == -1) {
		log_warn("pid file %s", path);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		n = (int)read(fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		log_warnx("pid file %s: naiberd already running as pid %s", path,
		    buf[0] ? buf : "?");
		close(fd);
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t)n, 0) != n) {
		log_warn("pid file %s", path);
		close(fd);
		return -1;
	}
	return 0;
}

static int
drop_privileges(const char *user)
{
	struct passwd	*pw;

	if ((pw = getpwnam(user)) == NULL) {
		log_warnx("unknown user %s", user);
		return -1;
	}
	if (geteuid() != 0) {
		if (geteuid() == pw->pw_uid)
			return 0;
		log_warnx("-u %s needs to start as root", user);
		return -1;
	}
	if (setgroups(1, &pw->pw_gid) == -1 || setgid(pw->pw_gid) == -1 ||
	    setuid(pw->pw_uid) == -1) {
		log_warn("cannot become %s", user);
		return -1;
	}
	if (setuid(0) != -1) {
		log_warnx("privileges could be regained after dropping");
		return -1;
	}
	log_info("running as %s (uid %u)", user, (unsigned)pw->pw_uid);
	return 0;
}
