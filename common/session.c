/*
 * session.c - writing and removing the session keys of one call.  The
 * removal is one Lua script: DEL session:{id}, then DEL each rag:* key
 * only if its value is still this conversation id.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "redis.h"
#include "session.h"
#include "util.h"

#define SESSION_TTL	3600

static const char session_del_lua[] =
    "redis.call('DEL', KEYS[1]) "
    "local n = 0 "
    "for i = 2, #KEYS do "
    "  if redis.call('GET', KEYS[i]) == ARGV[1] then "
    "    redis.call('DEL', KEYS[i]) n = n + 1 "
    "  end "
    "end "
    "return n";

struct sess_op {
	void	(*so_cb)(int, void *);
	void	 *so_arg;
	int	  so_left;
	int	  so_ok;
};

char *
session_json(const struct session *s)
{
	char	 a[32], b[32], *out;
	json_t	*o;

	iso8601_ms(s->s_started_ms, a);
	iso8601_ms(s->s_last_message_ms, b);
	o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
	    "callSid", s->s_call_sid, "conversationId", s->s_conversation_id,
	    "userId", s->s_user_id, "phone", s->s_phone,
	    "streamSid", s->s_stream_sid, "startedAt", a,
	    "lastMessageAt", b, "callType", s->s_call_type);
	if (o == NULL)
		return NULL;
	out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return out;
}

static void
sess_reply(const redisReply *r, const char *err, void *arg)
{
	struct sess_op	*op = arg;

	(void)err;
	if (r == NULL || r->type == REDIS_REPLY_ERROR)
		op->so_ok = 0;
	if (--op->so_left > 0)
		return;
	if (op->so_cb != NULL)
		op->so_cb(op->so_ok, op->so_arg);
	free(op);
}

int
session_write(struct rds *r, const struct session *s,
    void (*cb)(int, void *), void *arg)
{
	struct sess_op	*op;
	char		 k[200], *js;
	int		 sent = 0;

	if ((op = calloc(1, sizeof(*op))) == NULL ||
	    (js = session_json(s)) == NULL) {
		free(op);
		return -1;
	}
	op->so_cb = cb;
	op->so_arg = arg;
	op->so_ok = 1;
	op->so_left = 3;
	if (key_session(k, sizeof(k), s->s_conversation_id) == 0 &&
	    rds_cmdf(r, sess_reply, op, "SET %s %s EX %d", k, js,
	    SESSION_TTL) == 0)
		sent++;
	if (key_rag_user(k, sizeof(k), s->s_user_id) == 0 &&
	    rds_cmdf(r, sess_reply, op, "SET %s %s EX %d", k,
	    s->s_conversation_id, SESSION_TTL) == 0)
		sent++;
	if (key_rag_phone(k, sizeof(k), s->s_phone) == 0 &&
	    rds_cmdf(r, sess_reply, op, "SET %s %s EX %d", k,
	    s->s_conversation_id, SESSION_TTL) == 0)
		sent++;
	free(js);
	if (sent == 0) {
		free(op);
		return -1;
	}
	op->so_ok = (sent == 3);
	op->so_left = sent;
	return 0;
}

int
session_delete(struct rds *r, const char *conv, const char *user,
    const char *phone, void (*cb)(int, void *), void *arg)
{
	struct sess_op	*op;
	char		 k1[200], k2[200], k3[200];
	const char	*argv[7];
	int		 argc = 0;

	if (key_session(k1, sizeof(k1), conv) == -1)
		return -1;
	argv[argc++] = "EVAL";
	argv[argc++] = session_del_lua;
	argv[argc++] = "0";	/* patched below */
	argv[argc++] = k1;
	if (user != NULL && key_rag_user(k2, sizeof(k2), user) == 0)
		argv[argc++] = k2;
	if (phone != NULL && key_rag_phone(k3, sizeof(k3), phone) == 0)
		argv[argc++] = k3;
	argv[2] = argc == 4 ? "1" : argc == 5 ? "2" : "3";
	argv[argc++] = conv;
	if ((op = calloc(1, sizeof(*op))) == NULL)
		return -1;
	op->so_cb = cb;
	op->so_arg = arg;
	op->so_ok = 1;
	op->so_left = 1;
	if (rds_cmd(r, sess_reply, op, argc, argv, NULL) == -1) {
		free(op);
		return -1;
	}
	return 0;
}
