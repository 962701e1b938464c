/*
 * log.c - the logger of both roles: text or JSON lines on stderr, or
 * syslog.  Each line is written with one write(2) so lines from the
 * supervisor and its workers never interleave mid-line.  A worker
 * records its callSid/conversationId with log_setcall() and every line
 * after that carries them.  Callers never pass secrets.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define LOG_LINE_MAX	4096

static enum log_format	log_fmt = LF_TEXT;
static enum log_target	log_tgt = LT_STDERR;
static enum log_level	log_lvl = LL_INFO;
static char		log_proc[16] = "naiberd";
static char		log_callsid[64];
static char		log_convid[128];

static const char *const log_names[] = { "error", "warn", "info", "debug" };
static const int log_prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

static void	log_emit(enum log_level, const char *);

void
log_init(enum log_format f, enum log_target t, enum log_level l)
{
	if (log_tgt == LT_SYSLOG && t != LT_SYSLOG)
		closelog();
	log_fmt = f;
	log_lvl = l;
	if (t == LT_SYSLOG && log_tgt != LT_SYSLOG)
		openlog("naiberd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	log_tgt = t;
}

void
log_setproc(const char *proc)
{
	strlcpy_n(log_proc, proc, sizeof(log_proc));
}

void
log_setcall(const char *callsid, const char *convid)
{
	if (callsid != NULL)
		strlcpy_n(log_callsid, callsid, sizeof(log_callsid));
	if (convid != NULL)
		strlcpy_n(log_convid, convid, sizeof(log_convid));
}

enum log_level
log_getlevel(void)
{
	return log_lvl;
}

int
log_level_parse(const char *s)
{
	int	i;

	for (i = 0; i <= LL_DEBUG; i++)
		if (strcasecmp(s, log_names[i]) == 0)
			return i;
	return -1;
}

int
log_format_parse(const char *s)
{
	if (strcasecmp(s, "text") == 0)
		return LF_TEXT;
	if (strcasecmp(s, "json") == 0)
		return LF_JSON;
	return -1;
}

int
log_target_parse(const char *s)
{
	if (strcasecmp(s, "stderr") == 0)
		return LT_STDERR;
	if (strcasecmp(s, "syslog") == 0)
		return LT_SYSLOG;
	return -1;
}

static void
log_emit(enum log_level l, const char *msg)
{
	char	 line[LOG_LINE_MAX + 512], ts[32], em[LOG_LINE_MAX * 2];
	char	 ec[160], ev[300];
	int	 n;

	if (log_tgt == LT_SYSLOG) {
		if (log_callsid[0] != '\0')
			syslog(log_prio[l], "%s: callSid=%s%s%s %s", log_proc,
			    log_callsid, log_convid[0] ? " conversationId=" :
			    "", log_convid, msg);
		else
			syslog(log_prio[l], "%s: %s", log_proc, msg);
		return;
	}
	iso8601_ms(now_real_ms(), ts);
	if (log_fmt == LF_JSON) {
		if (json_escape(msg, em, sizeof(em)) == -1)
			strlcpy_n(em, "(message too long)", sizeof(em));
		ec[0] = ev[0] = '\0';
		if (log_callsid[0] != '\0' &&
		    json_escape(log_callsid, ec + 12, sizeof(ec) - 14) == 0)
			memcpy(ec, ",\"callSid\":\"", 12), strcat(ec, "\"");
		if (log_convid[0] != '\0' &&
		    json_escape(log_convid, ev + 19, sizeof(ev) - 21) == 0)
			memcpy(ev, ",\"conversationId\":\"", 19),
			    strcat(ev, "\"");
		n = snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s"
		    "\",\"proc\":\"%s\",\"pid\":%ld%s%s,\"msg\":\"%s\"}\n", ts,
		    log_names[l], log_proc, (long)getpid(), ec, ev, em);
	} else if (log_callsid[0] != '\0') {
		n = snprintf(line, sizeof(line), "%s %s[%ld] %s: callSid=%s"
		    "%s%s %s\n", ts, log_proc, (long)getpid(), log_names[l],
		    log_callsid, log_convid[0] ? " conversationId=" : "",
		    log_convid, msg);
	} else {
		n = snprintf(line, sizeof(line), "%s %s[%ld] %s: %s\n", ts,
		    log_proc, (long)getpid(), log_names[l], msg);
	}
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	(void)!write(STDERR_FILENO, line, (size_t)n);
}

void
vlog(enum log_level l, int errnum, const char *fmt, va_list ap)
{
	char	msg[LOG_LINE_MAX];
	size_t	n;
	char	*p;

	if (l > log_lvl)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (errnum != 0) {
		n = strlen(msg);
		snprintf(msg + n, sizeof(msg) - n, ": %s", strerror(errnum));
	}
	/* One event, one line. */
	for (p = msg; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	log_emit(l, msg);
}

#define LOG_FN(name, lvl, witherr)					\
void									\
name(const char *fmt, ...)						\
{									\
	int	saved = errno;						\
	va_list	ap;							\
									\
	va_start(ap, fmt);						\
	vlog(lvl, witherr ? saved : 0, fmt, ap);			\
	va_end(ap);							\
	errno = saved;							\
}

LOG_FN(log_warn, LL_WARN, 1)
LOG_FN(log_warnx, LL_WARN, 0)
LOG_FN(log_info, LL_INFO, 0)
LOG_FN(log_debug, LL_DEBUG, 0)
LOG_FN(log_error, LL_ERROR, 0)

void
fatal(const char *fmt, ...)
{
	int	saved = errno;
	va_list	ap;

	va_start(ap, fmt);
	vlog(LL_ERROR, saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vlog(LL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}

void
log_panic(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vlog(LL_ERROR, 0, fmt, ap);
	va_end(ap);
	abort();
}

/* libevent's own warnings, as our lines (event_set_log_callback). */
void
log_libevent(int severity, const char *msg)
{
	enum log_level l = severity >= 2 ? LL_WARN : LL_DEBUG;

	if (l <= log_lvl)
		log_emit(l, msg);
}
