/*
 * log.h - one logger for both process roles.
 *
 * Lines go to stderr (text or JSON, one event per line) or to syslog.
 * log_warn() appends strerror(errno), log_warnx() does not; fatal() and
 * fatalx() log and exit(1); log_panic() logs and abort()s for a core.
 * A worker sets its call identifiers once known and every later line
 * carries them.  Nothing here knows secrets: callers never pass them.
 */
#ifndef NAIBER_LOG_H
#define NAIBER_LOG_H

#include <stdarg.h>

enum log_level {
	LL_ERROR = 0,
	LL_WARN,
	LL_INFO,
	LL_DEBUG
};

enum log_format {
	LF_TEXT = 0,
	LF_JSON
};

enum log_target {
	LT_STDERR = 0,
	LT_SYSLOG
};

void	log_init(enum log_format, enum log_target, enum log_level);
void	log_setproc(const char *);
void	log_setcall(const char *, const char *);
enum log_level log_getlevel(void);
int	log_level_parse(const char *);
int	log_format_parse(const char *);
int	log_target_parse(const char *);

void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_error(const char *, ...) __attribute__((format(printf, 1, 2)));
void	vlog(enum log_level, int, const char *, va_list)
	    __attribute__((format(printf, 3, 0)));

void	log_libevent(int, const char *);

void	fatal(const char *, ...)
	    __attribute__((noreturn, format(printf, 1, 2)));
void	fatalx(const char *, ...)
	    __attribute__((noreturn, format(printf, 1, 2)));
void	log_panic(const char *, ...)
	    __attribute__((noreturn, format(printf, 1, 2)));

#endif
