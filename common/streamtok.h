/*
 * streamtok.h - per-call Media Stream URLs.  The TwiML naiberd serves
 * points Twilio at STREAM_PATH "/" token, token = CallSid "." MAC, so
 * the URL Twilio signs is the call's own: a captured upgrade replays
 * for that call only, and naiberd can check it before a worker is used.
 */
#ifndef NAIBER_STREAMTOK_H
#define NAIBER_STREAMTOK_H

#include <stddef.h>

#define STREAM_PATH		"/outbound-media-stream"
#define STREAM_TOKEN_MAX	96

enum stream_route {
	SR_NONE = 0,		/* not a stream path */
	SR_SHARED,		/* STREAM_PATH: TwiML from elsewhere */
	SR_CALL			/* STREAM_PATH "/" token */
};

int		 stream_token(const char *, const char *, char *, size_t);
int		 stream_token_check(const char *, const char *, char *,
		    size_t);
enum stream_route stream_route(const char *, const char **);

#endif
