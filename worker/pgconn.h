/*
 * pgconn.h - libpq connections driven by libevent, for worker/profile.c
 * only (and pgconn.c, which owns all of it).  Never included elsewhere:
 * the worker sees struct profile_conn through profile.h.
 */
#ifndef NAIBER_PGCONN_H
#define NAIBER_PGCONN_H

#include <stddef.h>

#include <event2/event.h>
#include <libpq-fe.h>

struct profile_conn;

/* One PGconn and the event waiting on its socket. */
struct pg_sock {
	struct event_base	*ps_base;
	PGconn			*ps_conn;
	struct event		*ps_io;		/* on ps_fd */
	int			 ps_fd;
	short			 ps_what;
	event_callback_fn	 ps_cb;
	void			*ps_arg;
};

/*
 * The statement a warm connection prepares, in static storage of its
 * caller (profile.c), which sets st_unnamed once a server lost it.
 */
struct pg_stmt {
	const char		*st_name;
	const char		*st_sql;
	int			 st_unnamed;	/* prepare nothing */
};

/* pgconn.c: any connection */
void		 ps_init(struct pg_sock *, struct event_base *,
		    event_callback_fn, void *);
int		 ps_watch(struct pg_sock *, short);
int		 ps_connect_poll(struct pg_sock *);
void		 ps_release(struct pg_sock *, int);
int		 ps_pump(struct pg_sock *, short, int *, PGresult **);
PGconn		*pgconn_connect(const char *, long, int *);
int		 pgconn_gone(PGconn *, const PGresult *);
int		 pgconn_is(const PGresult *, const char *);
void		 pgconn_detail(PGconn *, const char *, char *, size_t);
const char	*pgconn_hint(const char *);

/* pgconn.c: the warm connection (profile_conn_open's) */
struct profile_conn *pc_open(struct event_base *, const char *, long,
		    struct pg_stmt *, void (*)(int, const char *, void *),
		    void *);
struct event_base *pc_base(const struct profile_conn *);
PGconn		*pc_take(struct profile_conn *, void (*)(void *), void *);
void		 pc_give_back(struct profile_conn *, int);

#endif
