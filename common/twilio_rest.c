/*
 * twilio_rest.c - Twilio REST requests over evcurl: create a call, end
 * it (Status=completed; 20404 and 21220 mean it is already over),
 * redirect a live call to inline TwiML.  Runs in whichever process owns
 * the evcurl.  Credentials travel only in the Basic auth of the request;
 * error messages carry Twilio's code and message, never the request.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "twilio_rest.h"
#include "util.h"

#define TW_TIMEOUT_MS		10000
#define TW_FORM_MAX		8192

struct tw_pending {
	twilio_cb	 tp_cb;
	void		*tp_arg;
	int		 tp_is_end;
};

static int	tw_post(struct evcurl *, const struct config *, const char *,
		    const char *, size_t, int, twilio_cb, void *);
static void	tw_done(const struct evcurl_resp *, void *);

/* "CA" + 32 hex digits, or any two-letter prefix given. */
int
twilio_sid_ok(const char *sid, const char *prefix)
{
	size_t	i;

	if (sid == NULL || strlen(sid) != 34 || strncmp(sid, prefix, 2) != 0)
		return 0;
	for (i = 2; i < 34; i++)
		if (!isxdigit((unsigned char)sid[i]))
			return 0;
	return 1;
}

/* Append name=value, percent-encoded (RFC 3986 unreserved kept). */
int
twilio_form_append(char *buf, size_t cap, size_t *len, const char *name,
    const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	const char	*parts[2] = { name, value };
	size_t		 n = *len;
	int		 p;

	if (n > 0) {
		if (n + 1 >= cap)
			return -1;
		buf[n++] = '&';
	}
	for (p = 0; p < 2; p++) {
		const unsigned char *s = (const unsigned char *)parts[p];
		for (; *s != '\0'; s++) {
			if (n + 4 >= cap)
				return -1;
			if (isalnum(*s) || *s == '-' || *s == '.' ||
			    *s == '_' || *s == '~')
				buf[n++] = (char)*s;
			else {
				buf[n++] = '%';
				buf[n++] = hex[*s >> 4];
				buf[n++] = hex[*s & 15];
			}
		}
		if (p == 0) {
			if (n + 1 >= cap)
				return -1;
			buf[n++] = '=';
		}
	}
	buf[n] = '\0';
	*len = n;
	return 0;
}

static void
tw_copy(json_t *o, const char *key, char *dst, size_t cap)
{
	json_t	*v = json_object_get(o, key);

	if (json_is_string(v))
		strlcpy_n(dst, json_string_value(v), cap);
}

/* Turn Twilio's answer into a result; pure, for tests. */
void
twilio_parse_result(long status, const char *body, size_t len, int is_end,
    struct twilio_result *r)
{
	json_t		*o;
	json_error_t	 err;
	json_t		*code;

	memset(r, 0, sizeof(*r));
	r->tr_status = status;
	o = json_loadb(body != NULL ? body : "", len, 0, &err);
	if (o != NULL && !json_is_object(o)) {
		json_decref(o);
		o = NULL;
	}
	if (status >= 200 && status < 300) {
		if (o != NULL) {
			tw_copy(o, "sid", r->tr_call_sid, sizeof(r->tr_call_sid));
			tw_copy(o, "status", r->tr_call_status,
			    sizeof(r->tr_call_status));
		}
		r->tr_ok = 1;
		json_decref(o);
		return;
	}
	if (o != NULL && json_is_integer(code = json_object_get(o, "code")))
		r->tr_code = (long)json_integer_value(code);
	if (o != NULL && json_is_string(json_object_get(o, "message")))
		snprintf(r->tr_error, sizeof(r->tr_error), "Twilio %ld: %s "
		    "(code %ld)", status, json_string_value(json_object_get(o,
		    "message")), r->tr_code);
	else
		snprintf(r->tr_error, sizeof(r->tr_error), "Twilio answered "
		    "HTTP %ld", status);
	if (is_end && (r->tr_code == 20404 || r->tr_code == 21220 ||
	    (status == 404 && r->tr_code == 0))) {
		r->tr_ok = 1;
		r->tr_already_over = 1;
	}
	json_decref(o);
}

static void
tw_done(const struct evcurl_resp *resp, void *arg)
{
	struct tw_pending	*tp = arg;
	struct twilio_result	 r;

	if (resp->er_failed) {
		memset(&r, 0, sizeof(r));
		snprintf(r.tr_error, sizeof(r.tr_error), "Twilio unreachable: "
		    "%s", resp->er_error ? resp->er_error : "error");
	} else
		twilio_parse_result(resp->er_status, resp->er_body,
		    resp->er_len, tp->tp_is_end, &r);
	r.tr_seconds = resp->er_seconds;
	tp->tp_cb(&r, tp->tp_arg);
	free(tp);
}

static int
tw_post(struct evcurl *ec, const struct config *cf, const char *path,
    const char *form, size_t len, int is_end, twilio_cb cb, void *arg)
{
	struct evcurl_req	 rq;
	struct tw_pending	*tp;
	char			 url[1024];

	if (cf->twilio_account_sid == NULL || cf->twilio_auth_token == NULL)
		return -1;
	if ((size_t)snprintf(url, sizeof(url), "%s/2010-04-01/Accounts/%s/%s",
	    cf->twilio_api_base, cf->twilio_account_sid, path) >= sizeof(url))
		return -1;
	if ((tp = calloc(1, sizeof(*tp))) == NULL)
		return -1;
	tp->tp_cb = cb;
	tp->tp_arg = arg;
	tp->tp_is_end = is_end;
	memset(&rq, 0, sizeof(rq));
	rq.rq_method = "POST";
	rq.rq_url = url;
	rq.rq_headers[0] = "Accept: application/json";
	rq.rq_headers[1] = "Content-Type: application/x-www-form-urlencoded";
	rq.rq_body = form;
	rq.rq_bodylen = len;
	rq.rq_user = cf->twilio_account_sid;
	rq.rq_password = cf->twilio_auth_token;
	rq.rq_timeout_ms = TW_TIMEOUT_MS;
	rq.rq_connect_timeout_ms = 5000;
	rq.rq_once = !is_end;	/* never dial twice */
	if (evcurl_start(ec, &rq, tw_done, tp) == -1) {
		free(tp);
		return -1;
	}
	return 0;
}

int
twilio_create_call(struct evcurl *ec, const struct config *cf,
    const char *to, twilio_cb cb, void *arg)
{
	static const char *const events[] = { "initiated", "ringing",
	    "answered", "completed" };
	char	form[TW_FORM_MAX], url[1024], cb_url[1024], ring[16];
	size_t	len = 0, i;
	int	bad = 0;

	if (cf->twilio_url == NULL || cf->twilio_number == NULL)
		return -1;
	snprintf(url, sizeof(url), "%s/twiml", cf->twilio_url);
	snprintf(cb_url, sizeof(cb_url), "%s/status-callback", cf->twilio_url);
	snprintf(ring, sizeof(ring), "%d", TWILIO_RING_SECONDS);
	bad |= twilio_form_append(form, sizeof(form), &len, "To", to);
	bad |= twilio_form_append(form, sizeof(form), &len, "From",
	    cf->twilio_number);
	bad |= twilio_form_append(form, sizeof(form), &len, "Url", url);
	bad |= twilio_form_append(form, sizeof(form), &len, "StatusCallback",
	    cb_url);
	bad |= twilio_form_append(form, sizeof(form), &len,
	    "StatusCallbackMethod", "POST");
	for (i = 0; i < sizeof(events) / sizeof(events[0]); i++)
		bad |= twilio_form_append(form, sizeof(form), &len,
		    "StatusCallbackEvent", events[i]);
	bad |= twilio_form_append(form, sizeof(form), &len, "Timeout", ring);
	if (bad)
		return -1;
	return tw_post(ec, cf, "Calls.json", form, len, 0, cb, arg);
}

int
twilio_end_call(struct evcurl *ec, const struct config *cf,
    const char *sid, twilio_cb cb, void *arg)
{
	char	form[64], path[128];
	size_t	len = 0;

	if (!twilio_sid_ok(sid, "CA") || twilio_form_append(form,
	    sizeof(form), &len, "Status", "completed") == -1)
		return -1;
	snprintf(path, sizeof(path), "Calls/%s.json", sid);
	return tw_post(ec, cf, path, form, len, 1, cb, arg);
}

int
twilio_redirect_call(struct evcurl *ec, const struct config *cf,
    const char *sid, const char *twiml, twilio_cb cb, void *arg)
{
	char	form[TW_FORM_MAX], path[128];
	size_t	len = 0;

	if (!twilio_sid_ok(sid, "CA") || strlen(twiml) > 4000 ||
	    twilio_form_append(form, sizeof(form), &len, "Twiml", twiml) == -1)
		return -1;
	snprintf(path, sizeof(path), "Calls/%s.json", sid);
	return tw_post(ec, cf, path, form, len, 1, cb, arg);
}
