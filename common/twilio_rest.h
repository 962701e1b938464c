/*
 * twilio_rest.h - the Twilio REST calls naiberd makes: create a call,
 * end it, redirect it to inline TwiML.  Asynchronous on evcurl; Twilio's
 * error JSON is turned into one clear message.  Used by the supervisor
 * (dialling, orphan clean-up) and by workers (hang-up, apology).
 */
#ifndef NAIBER_TWILIO_REST_H
#define NAIBER_TWILIO_REST_H

#include <stddef.h>

#include "config.h"
#include "evcurl.h"

#define TWILIO_RING_SECONDS	30

struct twilio_result {
	int	tr_ok;			/* 2xx, or "already over" for an end */
	int	tr_already_over;	/* 20404 / 21220 on end */
	long	tr_status;		/* HTTP status, 0 if none */
	long	tr_code;		/* Twilio error code, 0 if none */
	char	tr_call_sid[64];	/* create: the new call's sid */
	char	tr_call_status[24];	/* the resource's status field */
	char	tr_error[256];		/* clear message when !tr_ok */
	double	tr_seconds;
};

typedef void	(*twilio_cb)(const struct twilio_result *, void *);

int	twilio_create_call(struct evcurl *, const struct config *,
	    const char *, twilio_cb, void *) __attribute__((warn_unused_result));
int	twilio_end_call(struct evcurl *, const struct config *, const char *,
	    twilio_cb, void *) __attribute__((warn_unused_result));
int	twilio_redirect_call(struct evcurl *, const struct config *,
	    const char *, const char *, twilio_cb, void *)
	    __attribute__((warn_unused_result));
/* Pure helpers, exposed for tests. */
int	twilio_form_append(char *, size_t, size_t *, const char *,
	    const char *) __attribute__((warn_unused_result));
void	twilio_parse_result(long, const char *, size_t, int,
	    struct twilio_result *);
int	twilio_sid_ok(const char *, const char *);

#endif
