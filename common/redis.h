/*
 * redis.h - Redis on a libevent loop: hiredis's async API, a URL parser
 * for REDIS_URL (redis://[user:password@]host[:port][/db]), reconnect
 * with back-off, a timeout on every command, and the key builders for
 * every key of DESIGN §4.  One struct rds per process.
 */
#ifndef NAIBER_REDIS_H
#define NAIBER_REDIS_H

#include <stddef.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

struct rds;

struct rds_url {
	char	ru_host[256];
	int	ru_port;
	char	ru_user[128];
	char	ru_password[256];
	int	ru_db;
	int	ru_tls;			/* rediss:// */
	int	ru_family;		/* ?family=4|6; 0: any */
	long	ru_connect_ms;		/* ?connectTimeout=; 0: default */
	char	ru_ignored[32];		/* first other ?name, for a warning */
};

/*
 * Reply callback: reply is NULL on timeout, disconnection or when not
 * connected (err says which); otherwise a hiredis reply (which may be
 * REDIS_REPLY_ERROR).  Called exactly once per accepted command.
 */
typedef void	(*rds_cb)(const redisReply *, const char *err, void *);

int		 rds_url_parse(const char *, struct rds_url *)
		    __attribute__((warn_unused_result));
const char	*rds_url_error(const char *);
struct rds	*rds_new(struct event_base *, const char *, long);
void		 rds_free(struct rds *);
int		 rds_connected(const struct rds *);
/* argv form; 0 if queued (cb runs once), -1 if refused at once. */
int		 rds_cmd(struct rds *, rds_cb, void *, int, const char **,
		    const size_t *);
/* printf form (hiredis format). */
int		 rds_cmdf(struct rds *, rds_cb, void *, const char *, ...);
/* Called on every connect (after AUTH/SELECT) and disconnect. */
void		 rds_on_state(struct rds *, void (*)(int, void *), void *);

/* Key builders (DESIGN §4); return -1 if the key does not fit. */
int	key_call_type(char *, size_t, const char *);
int	key_call(char *, size_t, const char *);
int	key_session(char *, size_t, const char *);
int	key_rag_user(char *, size_t, const char *);
int	key_rag_phone(char *, size_t, const char *);

#endif
