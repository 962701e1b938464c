/*
 * profile.h - the person a call is for, read from PostgreSQL (the
 * original's Prisma tables) asynchronously on the worker's loop.
 */
#ifndef NAIBER_PROFILE_H
#define NAIBER_PROFILE_H

#include <stddef.h>

#include <event2/event.h>

#define PROFILE_MAX_LIST	32	/* interests, dislikes, conditions... */
#define PROFILE_SUMMARIES	5

struct profile_condition {
	char	*pc_condition;
	char	*pc_severity;		/* may be NULL */
};

struct profile_medication {
	char	*pm_name;
	char	*pm_dosage;		/* may be NULL */
	char	*pm_frequency;		/* may be NULL */
};

struct profile {
	char			*p_id;
	char			*p_name;
	char			*p_phone;
	int			 p_age;		/* -1 if NULL */
	char			*p_gender;	/* enum label, NULL if NULL */
	char			*p_interests[PROFILE_MAX_LIST];
	size_t			 p_ninterests;
	char			*p_dislikes[PROFILE_MAX_LIST];
	size_t			 p_ndislikes;
	int			 p_is_first_call;
	char			*p_last_call_at; /* ISO 8601, NULL if NULL */
	char			*p_summaries[PROFILE_SUMMARIES]; /* newest first */
	size_t			 p_nsummaries;
	struct profile_condition p_conditions[PROFILE_MAX_LIST];
	size_t			 p_nconditions;
	struct profile_medication p_medications[PROFILE_MAX_LIST];
	size_t			 p_nmedications;
};

enum profile_status {
	PROFILE_OK,
	PROFILE_UNKNOWN,	/* no person with that phone */
	PROFILE_ERROR		/* database down, timeout, bad data */
};

/*
 * Called exactly once: p is valid only with PROFILE_OK and belongs to
 * the callee (free with profile_free); err says why otherwise.
 */
typedef void	(*profile_cb)(enum profile_status, struct profile *,
		    const char *, void *);

/*
 * Start loading the person whose "phone" equals phone on a connection of
 * its own, closed after.  timeout_ms bounds connect + all queries.  0 if
 * started, -1 if not (no callback).  Never calls back from inside.
 */
int	profile_load(struct event_base *, const char *, const char *, long,
	    profile_cb, void *);
void	profile_free(struct profile *);

/*
 * A worker's warm connection: opened, with the same session options as
 * profile_load's, and the profile statement prepared before the worker
 * is idle, so a call's load is one Bind/Execute round trip.  Each holds
 * one PostgreSQL connection (server or pooler) while it lives.
 */
struct profile_conn;

/*
 * Start connecting to url on base (non-blocking) and preparing the
 * statement.  ready_cb(ok, err, arg) is called once ever, from the loop,
 * when that succeeded, failed or timeout_ms passed; later reconnects are
 * silent (see profile_conn_ready).  ready_cb may close the connection.
 * NULL (logged) on bad arguments, a URL that does not parse, no memory.
 */
struct profile_conn *profile_conn_open(struct event_base *, const char *,
	    long, void (*)(int, const char *, void *), void *);

/* 1 if connected, prepared and idle: a load now needs no new connection. */
int	profile_conn_ready(const struct profile_conn *);

/*
 * Cheap health check, for a timer of the worker: if the server closed
 * the idle connection (or said anything unasked), reconnect in the
 * background; if a connect or a load left it broken, try again.  The
 * connection also notices by itself when an idle one is closed.
 */
void	profile_conn_check(struct profile_conn *);

/*
 * Close it (NULL is fine); a load in flight on it goes on and finishes
 * the connection itself.
 */
void	profile_conn_close(struct profile_conn *);

/*
 * As profile_load, on pc if it is ready (pc may be NULL): one round trip
 * on the prepared statement.  Otherwise, or if pc turns out dead, or
 * breaks during the load, a fresh connection to url within the same
 * deadline.  A server that lost the prepared statement (SQLSTATE 26000:
 * pgbouncer in transaction mode) gets the same load once more with the
 * unnamed statement, which every later load of this process uses too.
 * pc goes back to idle after the load unless it broke.  pc must be on
 * base.  Same contract as profile_load.
 */
int	profile_load_on(struct profile_conn *, struct event_base *,
	    const char *, const char *, long, profile_cb, void *);

#endif
