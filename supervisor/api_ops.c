/*
 * api_ops.c - operational routes served by the supervisor itself:
 * GET /health (the original's shape, exactly), GET /metrics
 * (Prometheus text) and GET /sessions (Redis SCAN + MGET).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "redis.h"
#include "util.h"
#include "supervisor.h"

void
api_health(struct conn *cn, struct hhead *h)
{
	char	body[160], ts[32];
	int	n;

	(void)h;
	iso8601_ms(now_real_ms(), ts);
	n = snprintf(body, sizeof(body), "{\"status\":\"healthy\","
	    "\"service\":\"naiber-server\",\"timestamp\":\"%s\"}", ts);
	conn_respond(cn, 200, "application/json", body, (size_t)n, NULL);
}

void
api_metrics(struct conn *cn, struct hhead *h)
{
	char	*text;
	size_t	 len;

	(void)h;
	if ((text = metrics_render(&len)) == NULL) {
		conn_respond_json_error(cn, 500, "out of memory");
		return;
	}
	conn_respond(cn, 200, "text/plain; version=0.0.4; charset=utf-8",
	    text, len, NULL);
	free(text);
}

/*
 * GET /sessions: SCAN (never KEYS) for session:*, then MGET them.  At
 * most SESS_MAX sessions and SESS_ROUNDS SCAN round trips.
 */
#define SESS_MAX	10000
#define SESS_ROUNDS	1000

struct sess_op {
	struct conn	*so_conn;
	char		 so_cursor[32];
	char		**so_keys;
	size_t		 so_n;
	int		 so_rounds;
};

static void	sess_scanned(const redisReply *, const char *, void *);
static void	sess_got(const redisReply *, const char *, void *);

static void
sess_free(struct sess_op *so)
{
	size_t	i;

	for (i = 0; i < so->so_n; i++)
		free(so->so_keys[i]);
	free(so->so_keys);
	free(so);
}

static void
sess_cancel(void *arg)
{
	((struct sess_op *)arg)->so_conn = NULL;
}

static int
sess_scan(struct sess_op *so)
{
	return rds_cmdf(sv.sv_rds, sess_scanned, so,
	    "SCAN %s MATCH session:* COUNT 200", so->so_cursor);
}

void
api_sessions(struct conn *cn, struct hhead *h)
{
	struct sess_op	*so;

	(void)h;
	if ((so = calloc(1, sizeof(*so))) == NULL) {
		conn_respond_json_error(cn, 503, "out of memory");
		return;
	}
	strlcpy_n(so->so_cursor, "0", sizeof(so->so_cursor));
	if (sess_scan(so) == -1) {
		free(so);
		conn_respond_json_error(cn, 503, "Redis is unavailable");
		return;
	}
	so->so_conn = cn;
	cn->cn_op = so;
	cn->cn_op_cancel = sess_cancel;
}

static int
sess_add_keys(struct sess_op *so, const redisReply *arr)
{
	char	**nk;
	size_t	  i;

	if (so->so_n + arr->elements > SESS_MAX)
		return -1;
	if ((nk = realloc(so->so_keys, (so->so_n + arr->elements + 1) *
	    sizeof(*nk))) == NULL)
		return -1;
	so->so_keys = nk;
	for (i = 0; i < arr->elements; i++) {
		if (arr->element[i]->type != REDIS_REPLY_STRING ||
		    (nk[so->so_n] = strdup(arr->element[i]->str)) == NULL)
			return -1;
		so->so_n++;
	}
	return 0;
}

static void
sess_fail(struct sess_op *so, const char *why)
{
	metrics.m_redis_errors++;
	if (so->so_conn != NULL)
		conn_respond_json_error(so->so_conn, 503, why);
	sess_free(so);
}

static void
sess_scanned(const redisReply *rep, const char *err, void *arg)
{
	struct sess_op	*so = arg;

	(void)err;
	if (so->so_conn == NULL) {
		sess_free(so);
		return;
	}
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY ||
	    rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
	    rep->element[1]->type != REDIS_REPLY_ARRAY ||
	    rep->element[0]->len >= sizeof(so->so_cursor) ||
	    sess_add_keys(so, rep->element[1]) == -1) {
		sess_fail(so, "Redis SCAN failed or too many sessions");
		return;
	}
	strlcpy_n(so->so_cursor, rep->element[0]->str, sizeof(so->so_cursor));
	if (strcmp(so->so_cursor, "0") != 0) {
		if (++so->so_rounds > SESS_ROUNDS || sess_scan(so) == -1)
			sess_fail(so, "Redis SCAN did not finish");
		return;
	}
	if (so->so_n == 0) {
		sess_got(NULL, NULL, so);
		return;
	}
	{
		const char **argv;
		size_t i;
		int r;
		if ((argv = calloc(so->so_n + 1, sizeof(*argv))) == NULL) {
			sess_fail(so, "out of memory");
			return;
		}
		argv[0] = "MGET";
		for (i = 0; i < so->so_n; i++)
			argv[i + 1] = so->so_keys[i];
		r = rds_cmd(sv.sv_rds, sess_got, so, (int)so->so_n + 1, argv,
		    NULL);
		free(argv);
		if (r == -1)
			sess_fail(so, "Redis is unavailable");
	}
}

static void
sess_got(const redisReply *rep, const char *err, void *arg)
{
	struct sess_op	*so = arg;
	json_t		*out, *arr, *o;
	char		*text;
	size_t		 i;

	(void)err;
	if (so->so_conn == NULL) {
		sess_free(so);
		return;
	}
	if (so->so_n > 0 && (rep == NULL || rep->type != REDIS_REPLY_ARRAY)) {
		sess_fail(so, "Redis MGET failed");
		return;
	}
	arr = json_array();
	for (i = 0; rep != NULL && i < rep->elements; i++) {
		if (rep->element[i]->type != REDIS_REPLY_STRING)
			continue;	/* expired between SCAN and MGET */
		o = json_loadb(rep->element[i]->str, rep->element[i]->len, 0,
		    NULL);
		if (json_is_object(o))
			json_array_append_new(arr, o);
		else
			json_decref(o);
	}
	out = json_pack("{s:I, s:o}", "count", (json_int_t)json_array_size(arr),
	    "sessions", arr);
	text = out ? json_dumps(out, JSON_COMPACT) : NULL;
	json_decref(out);
	if (text == NULL)
		conn_respond_json_error(so->so_conn, 500, "out of memory");
	else
		conn_respond(so->so_conn, 200, "application/json", text,
		    strlen(text), NULL);
	free(text);
	sess_free(so);
}
