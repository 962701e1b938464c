/*
 * session.h - the live-session keys the LLM service reads (DESIGN §4):
 * session:{conversationId}, rag:user:{userId}, rag:phone:{phone}, all
 * EX 3600, and their removal at call end, where a rag:* key is deleted
 * only if it still names this conversation (one atomic script), so a
 * newer call for the same person is not clobbered.  Used by workers and
 * by the supervisor's orphan clean-up.
 */
#ifndef NAIBER_SESSION_H
#define NAIBER_SESSION_H

#include <stdint.h>

struct rds;

struct session {
	char		s_call_sid[64];
	char		s_conversation_id[128];
	char		s_user_id[64];
	char		s_phone[32];
	char		s_stream_sid[64];
	char		s_call_type[16];
	uint64_t	s_started_ms;
	uint64_t	s_last_message_ms;
};

/* The session JSON exactly as the original wrote it; malloc'd. */
char	*session_json(const struct session *);
/* cb(ok, arg) once; 0 if started, -1 if Redis refused at once. */
int	 session_write(struct rds *, const struct session *,
	    void (*)(int, void *), void *);
int	 session_delete(struct rds *, const char *, const char *,
	    const char *, void (*)(int, void *), void *);

#endif
