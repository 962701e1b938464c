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
 * Start loading the person whose "phone" equals phone.  timeout_ms
 * bounds connect + all queries.  0 if started, -1 if not (no callback).
 */
int	profile_load(struct event_base *, const char *, const char *, long,
	    profile_cb, void *);
void	profile_free(struct profile *);

#endif
