/*
 * api_ops.c - operational routes served by the supervisor itself:
 * GET /health (the original's shape, exactly) and GET /metrics
 * (Prometheus text).  No I/O beyond the connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
