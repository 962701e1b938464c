/*
 * httphead.c - bounded HTTP/1.x request parsing on http_parser.
 *
 * Owns struct hhead.  Runs in the supervisor (every connection) and in
 * a worker (the handed-over upgrade head).  One request at a time: the
 * parser pauses at the end of each message so pipelined bytes wait for
 * hh_reset().  Limits: HH_HEAD_MAX bytes of head, HH_MAX_HEADERS
 * headers, HH_URL_MAX of URL, HH_BODY_MAX of body.  As strict as RFC
 * 9112 lets a server be: CRLF only, no obs-fold, no whitespace before
 * a colon, chunked as the only transfer coding, once and without
 * Content-Length; Expect: 100-continue or 417.
 */
#include <ctype.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "httphead.h"

static int	hh_on_begin(http_parser *);
static int	hh_on_url(http_parser *, const char *, size_t);
static int	hh_on_field(http_parser *, const char *, size_t);
static int	hh_on_value(http_parser *, const char *, size_t);
static int	hh_on_headers(http_parser *);
static int	hh_on_body(http_parser *, const char *, size_t);
static int	hh_on_complete(http_parser *);
static int	hh_fail(struct hhead *, int, const char *);
static int	hh_append(struct hhead *, const char *, size_t, int);
static int	hh_line_ok(const struct hhead *);
static void	hh_trim(struct hhead *, struct hh_header *);
static int	hh_check_framing(struct hhead *, const http_parser *);
static int	hh_check_expect(struct hhead *, const http_parser *);
static size_t	hh_scan(struct hhead *, const char *, size_t,
		    const char **);

static const http_parser_settings hh_settings = {
	.on_message_begin = hh_on_begin,
	.on_url = hh_on_url,
	.on_header_field = hh_on_field,
	.on_header_value = hh_on_value,
	.on_headers_complete = hh_on_headers,
	.on_body = hh_on_body,
	.on_message_complete = hh_on_complete,
};

/*
 * http_parser's header limit is one global in its data page: set once per
 * process (the fork server sets it for every worker), never rewritten, so
 * a worker's parse does not copy that page.
 */
static int	hh_limit_set;

void
hh_global_init(void)
{
	if (!hh_limit_set) {
		http_parser_set_max_header_size(HH_HEAD_MAX);
		hh_limit_set = 1;
	}
}

void
hh_init(struct hhead *h)
{
	memset(h, 0, sizeof(*h));
	hh_global_init();
	http_parser_init(&h->hh_parser, HTTP_REQUEST);
	h->hh_parser.data = h;
}

void
hh_reset(struct hhead *h)
{
	http_parser saved = h->hh_parser;

	free(h->hh_body);
	memset(h, 0, offsetof(struct hhead, hh_arena));
	h->hh_arenalen = 0;
	h->hh_parser = saved;
	h->hh_parser.data = h;
	/* Only a paused parser may be resumed; one in error starts over. */
	if (HTTP_PARSER_ERRNO(&h->hh_parser) == HPE_PAUSED)
		http_parser_pause(&h->hh_parser, 0);
	else if (HTTP_PARSER_ERRNO(&h->hh_parser) != HPE_OK)
		http_parser_init(&h->hh_parser, HTTP_REQUEST);
}

/* RFC 9110 token characters, for header names. */
static int
hh_token(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) &&
		    strchr("!#$%&'*+-.^_`|~", *s) == NULL)
			return 0;
	return 1;
}

static int
hh_fail(struct hhead *h, int status, const char *why)
{
	if (h->hh_status == 0) {
		h->hh_status = status;
		h->hh_error = why;
	}
	return -1;
}

/*
 * Append to the arena.  start: begin a new string (closing the previous
 * one); else continue the open string.  Strings are NUL-terminated.
 */
static int
hh_append(struct hhead *h, const char *s, size_t n, int start)
{
	size_t	need = n + 1 + (start ? 1 : 0);

	if (h->hh_arenalen + need > sizeof(h->hh_arena))
		return -1;
	if (start && h->hh_arenalen > 0)
		h->hh_arenalen++;	/* keep the previous NUL */
	if (memchr(s, '\0', n) != NULL)
		return -1;
	memcpy(h->hh_arena + h->hh_arenalen, s, n);
	h->hh_arenalen += n;
	h->hh_arena[h->hh_arenalen] = '\0';
	return 0;
}

static int
hh_on_begin(http_parser *p)
{
	struct hhead *h = p->data;

	h->hh_in_head = 1;
	return 0;
}

static int
hh_on_url(http_parser *p, const char *at, size_t len)
{
	struct hhead *h = p->data;
	int start = (h->hh_url == NULL);

	if (start)
		h->hh_url = h->hh_arena + h->hh_arenalen +
		    (h->hh_arenalen > 0 ? 1 : 0);
	if (h->hh_urllen + len > HH_URL_MAX)
		return hh_fail(h, 414, "request URL too long");
	h->hh_urllen += len;
	if (hh_append(h, at, len, start) == -1)
		return hh_fail(h, 431, "request head too large");
	return 0;
}

static int
hh_on_field(http_parser *p, const char *at, size_t len)
{
	struct hhead *h = p->data;
	int start = (h->hh_nhdr == 0 || h->hh_last_was_value);

	if (start) {
		if (h->hh_nhdr == HH_MAX_HEADERS)
			return hh_fail(h, 431, "too many headers");
		h->hh_hdr[h->hh_nhdr].hd_name = h->hh_arena +
		    h->hh_arenalen + (h->hh_arenalen > 0 ? 1 : 0);
		h->hh_hdr[h->hh_nhdr].hd_value = "";
		h->hh_nhdr++;
	}
	h->hh_last_was_value = 0;
	if (hh_append(h, at, len, start) == -1)
		return hh_fail(h, 431, "request head too large");
	return 0;
}

static int
hh_on_value(http_parser *p, const char *at, size_t len)
{
	struct hhead *h = p->data;
	struct hh_header *hd = &h->hh_hdr[h->hh_nhdr - 1];
	int start = !h->hh_last_was_value;

	if (h->hh_nhdr == 0)
		return hh_fail(h, 400, "header value without a name");
	if (start)
		hd->hd_value = h->hh_arena + h->hh_arenalen +
		    (h->hh_arenalen > 0 ? 1 : 0);
	h->hh_last_was_value = 1;
	if (hh_append(h, at, len, start) == -1)
		return hh_fail(h, 431, "request head too large");
	return 0;
}

static int
hh_on_headers(http_parser *p)
{
	struct hhead *h = p->data;
	char *q;
	int	i;

	h->hh_headers_done = 1;

	h->hh_in_head = 0;
	snprintf(h->hh_method, sizeof(h->hh_method), "%s",
	    http_method_str(p->method));
	if (p->http_major == 0 || !hh_line_ok(h))
		return hh_fail(h, 400, "malformed request line");
	if (p->http_major != 1 || p->http_minor > 1)
		return hh_fail(h, 505, "only HTTP/1.0 and HTTP/1.1");
	if (h->hh_url == NULL || h->hh_url[0] != '/')
		return hh_fail(h, 400, "bad request target");
	for (i = 0; i < h->hh_nhdr; i++)
		if (!hh_token(h->hh_hdr[i].hd_name))
			return hh_fail(h, 400, "bad header name");
	for (i = 0; i < h->hh_nhdr; i++)
		hh_trim(h, &h->hh_hdr[i]);
	h->hh_minor = p->http_minor;
	h->hh_path = h->hh_url;
	if ((q = strchr(h->hh_url, '?')) != NULL) {
		*q = '\0';
		h->hh_query = q + 1;
	}
	if (hh_check_framing(h, p) == -1)
		return -1;
	if ((p->flags & F_CONTENTLENGTH) &&
	    p->content_length > HH_BODY_MAX)
		return hh_fail(h, 413, "request body too large");
	/* An upgrade hands the socket over right after the head. */
	if (p->upgrade && ((p->flags & F_CHUNKED) ||
	    ((p->flags & F_CONTENTLENGTH) && p->content_length > 0)))
		return hh_fail(h, 400, "upgrade request with a body");
	if (hh_check_expect(h, p) == -1)
		return -1;
	h->hh_keepalive = http_should_keep_alive(p);
	return 0;
}

/* http_parser drops a value's leading whitespace; drop the trailing. */
static void
hh_trim(struct hhead *h, struct hh_header *hd)
{
	size_t	 n = strlen(hd->hd_value);
	char	*v;

	if (n == 0)
		return;			/* maybe the "" literal */
	v = h->hh_arena + (hd->hd_value - h->hh_arena);
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		v[--n] = '\0';
}

/*
 * RFC 9112 6.1 and 6.3: a body is framed by one Content-Length (which
 * http_parser checks) or by one "Transfer-Encoding: chunked" in an
 * HTTP/1.1 request, never by both.  Any other coding, a list, a repeat:
 * 400 (6.1 would allow 501 for a coding we do not know).
 */
static int
hh_check_framing(struct hhead *h, const http_parser *p)
{
	int	n = hh_count(h, "Transfer-Encoding");

	if (n == 0)
		return 0;
	if (n > 1)
		return hh_fail(h, 400, "Transfer-Encoding repeated");
	if (hh_count(h, "Content-Length") > 0)
		return hh_fail(h, 400, "Transfer-Encoding with Content-Length");
	if (p->http_minor == 0)
		return hh_fail(h, 400, "Transfer-Encoding in HTTP/1.0");
	if (strcasecmp(hh_get(h, "Transfer-Encoding"), "chunked") != 0)
		return hh_fail(h, 400, "transfer coding other than chunked");
	return 0;
}

/*
 * RFC 9110 10.1.1: 100-continue is the only expectation there is (417
 * for any other; empty list elements do not count).  It asks for "100
 * Continue" from an HTTP/1.1 server only, and only before a body.
 */
static int
hh_check_expect(struct hhead *h, const http_parser *p)
{
	const char	*s;
	size_t		 n;
	int		 i, any = 0;

	for (i = 0; i < h->hh_nhdr; i++) {
		if (strcasecmp(h->hh_hdr[i].hd_name, "Expect") != 0)
			continue;
		for (s = h->hh_hdr[i].hd_value; *s != '\0'; s += n) {
			s += strspn(s, " \t,");
			n = strcspn(s, ",");
			if (n == 0)
				continue;
			if (strcspn(s, " \t,") != 12 ||
			    strncasecmp(s, "100-continue", 12) != 0 ||
			    s[12 + strspn(s + 12, " \t")] != s[n])
				return hh_fail(h, 417, "unknown expectation");
			any = 1;
		}
	}
	if (any && p->http_minor == 1 && ((p->flags & F_CHUNKED) ||
	    ((p->flags & F_CONTENTLENGTH) && p->content_length > 0)))
		h->hh_expect_continue = 1;
	return 0;
}

static int
hh_on_body(http_parser *p, const char *at, size_t len)
{
	struct hhead *h = p->data;

	if (h->hh_bodylen + len > HH_BODY_MAX)
		return hh_fail(h, 413, "request body too large");
	if (h->hh_body == NULL &&
	    (h->hh_body = malloc(HH_BODY_MAX + 1)) == NULL)
		return hh_fail(h, 503, "out of memory");
	memcpy(h->hh_body + h->hh_bodylen, at, len);
	h->hh_bodylen += len;
	h->hh_body[h->hh_bodylen] = '\0';
	return 0;
}

static int
hh_on_complete(http_parser *p)
{
	struct hhead *h = p->data;

	h->hh_keepalive = http_should_keep_alive(p);
	h->hh_state = HH_DONE;
	http_parser_pause(p, 1);
	return 0;
}

/*
 * Keep the request line (bounded) until its end is seen.  Empty lines
 * before it are skipped, as http_parser does (RFC 9112 2.2).
 */
static void
hh_keep_line(struct hhead *h, const char *buf, size_t len)
{
	size_t	i;

	for (i = 0; i < len && !h->hh_line_done; i++) {
		if (h->hh_linelen == 0 && (buf[i] == '\r' || buf[i] == '\n'))
			continue;
		if (buf[i] == '\n') {
			h->hh_line_done = 1;
			break;
		}
		if (h->hh_linelen < sizeof(h->hh_line) - 1)
			h->hh_line[h->hh_linelen++] = buf[i];
	}
	h->hh_line[h->hh_linelen] = '\0';
}

/* http_parser (non-strict build) lets "HTTX/1.1" by: insist on HTTP/. */
static int
hh_line_ok(const struct hhead *h)
{
	const char	*v = strrchr(h->hh_line, ' ');

	return v != NULL && strncmp(v + 1, "HTTP/", 5) == 0;
}

/* "METHOD /target HTTP/1.x" with an upper-case method: a 501, not 400. */
static int
hh_looks_like_line(const char *buf, size_t len)
{
	size_t	i = 0;

	while (i < len && buf[i] >= 'A' && buf[i] <= 'Z')
		i++;
	if (i == 0 || i + 2 >= len || buf[i] != ' ' || buf[i + 1] != '/')
		return 0;
	for (i += 2; i < len && buf[i] != ' ' && buf[i] != '\r'; i++)
		if ((unsigned char)buf[i] <= 0x20)
			return 0;
	return len - i >= 9 && memcmp(buf + i, " HTTP/1.", 8) == 0;
}

/*
 * RFC 9112 2.2 and 5.2 on the raw bytes, as http_parser (a non-strict
 * build) takes a bare LF for CRLF and unfolds obs-fold: each line of the
 * head ends in CRLF and no line after the request line starts with SP
 * or HTAB.  Empty lines before the request line are allowed (2.2).
 * Returns how many bytes are good; *why says what stopped the scan, or
 * is NULL.  Nothing is scanned past the empty line that ends the head.
 */
static size_t
hh_scan(struct hhead *h, const char *buf, size_t len, const char **why)
{
	size_t	i;

	*why = NULL;
	for (i = 0; i < len && !h->hh_scandone; i++) {
		if (h->hh_scancr && buf[i] != '\n') {
			*why = "bare CR";
			return i;
		}
		if (buf[i] == '\r') {
			h->hh_scancr = 1;
			continue;
		}
		if (buf[i] == '\n') {
			if (!h->hh_scancr) {
				*why = "bare LF";
				return i;
			}
			h->hh_scancr = 0;
			if (h->hh_scancol > 0)
				h->hh_scanlines++;
			else if (h->hh_scanlines > 0)
				h->hh_scandone = 1;
			h->hh_scancol = 0;
			continue;
		}
		if (h->hh_scancol == 0 && h->hh_scanlines > 0 &&
		    (buf[i] == ' ' || buf[i] == '\t')) {
			*why = h->hh_scanlines == 1 ? "whitespace before the "
			    "first header" : "obs-fold (a folded header line)";
			return i;
		}
		h->hh_scancol++;
	}
	return i;
}

enum hh_state
hh_feed(struct hhead *h, const char *buf, size_t len, size_t *used)
{
	http_parser	*p = &h->hh_parser;
	size_t		 n = 0, room, good, full = len;
	enum http_errno	 e;
	const char	*bad = NULL;
	int		 was_done = h->hh_headers_done;

	*used = 0;
	if (h->hh_state != HH_MORE)
		return h->hh_state;
	if (!h->hh_line_done)
		hh_keep_line(h, buf, len);
	/* Count head bytes ourselves: http_parser's limit is per line set. */
	if (!h->hh_headers_done) {
		room = HH_HEAD_MAX - h->hh_headbytes;
		if (len > room) {
			len = room + 1;	/* let the parser or us trip */
		}
	}
	/* http_parser sees the bytes before a bad one (if any) only. */
	if (!h->hh_scandone) {
		good = hh_scan(h, buf, len, &bad);
		if (bad != NULL)
			len = good;
	}
	/* Not 0 bytes: that tells http_parser the stream ended. */
	if (len > 0)
		n = http_parser_execute(p, &hh_settings, buf, len);
	if (!was_done)
		h->hh_headbytes += n;
	/* The head ended inside the clamped piece: parse the body too. */
	if (!was_done && h->hh_headers_done && !p->upgrade && n == len &&
	    len < full && bad == NULL && h->hh_status == 0 &&
	    HTTP_PARSER_ERRNO(p) == HPE_OK && h->hh_state == HH_MORE)
		n += http_parser_execute(p, &hh_settings, buf + n, full - n);
	*used = n;
	e = HTTP_PARSER_ERRNO(p);
	if (bad != NULL && h->hh_status == 0 && (e == HPE_OK ||
	    e == HPE_PAUSED))
		hh_fail(h, 400, bad);
	if (h->hh_status != 0) {
		h->hh_state = HH_ERROR;
		return HH_ERROR;
	}
	if (p->upgrade && h->hh_headers_done) {
		h->hh_upgrade = 1;
		h->hh_state = HH_UPGRADE;
		return HH_UPGRADE;
	}
	if (e != HPE_OK && e != HPE_PAUSED) {
		if (e == HPE_HEADER_OVERFLOW)
			hh_fail(h, 431, "request head too large");
		else if (e == HPE_INVALID_METHOD && h->hh_line_done &&
		    hh_looks_like_line(h->hh_line, h->hh_linelen))
			hh_fail(h, 501, "unknown method");
		else if (e == HPE_INVALID_METHOD)
			hh_fail(h, 400, "malformed request line");
		else

			hh_fail(h, 400, http_errno_description(e));
		h->hh_state = HH_ERROR;
		return HH_ERROR;
	}
	if (!h->hh_headers_done && h->hh_headbytes > HH_HEAD_MAX) {
		hh_fail(h, 431, "request head too large");
		h->hh_state = HH_ERROR;
	}
	return h->hh_state;
}

const char *
hh_get(const struct hhead *h, const char *name)
{
	int	i;

	for (i = 0; i < h->hh_nhdr; i++)
		if (strcasecmp(h->hh_hdr[i].hd_name, name) == 0)
			return h->hh_hdr[i].hd_value;
	return NULL;
}

int
hh_count(const struct hhead *h, const char *name)
{
	int	i, n = 0;

	for (i = 0; i < h->hh_nhdr; i++)
		if (strcasecmp(h->hh_hdr[i].hd_name, name) == 0)
			n++;
	return n;
}

int
hh_list_has_token(const struct hhead *h, const char *name,
    const char *token)
{
	int	i;

	for (i = 0; i < h->hh_nhdr; i++)
		if (strcasecmp(h->hh_hdr[i].hd_name, name) == 0 &&
		    hh_has_token(h->hh_hdr[i].hd_value, token))
			return 1;
	return 0;
}

/*
 * 24 characters of the RFC 4648 alphabet ending in "==", the last data
 * character with the 4 padding bits zero: exactly what encoding 16
 * bytes gives, and nothing else.
 */
int
hh_ws_key_ok(const char *key)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t	i;

	if (key == NULL || strlen(key) != 24 || strcmp(key + 22, "==") != 0)
		return 0;
	for (i = 0; i < 22; i++)
		if (strchr(b64, key[i]) == NULL)
			return 0;
	return strchr("AQgw", key[21]) != NULL;
}

int
hh_has_token(const char *value, const char *token)
{
	size_t	tl = strlen(token), n;
	const char *s = value;

	if (value == NULL)
		return 0;
	while (*s != '\0') {
		while (*s == ' ' || *s == '\t' || *s == ',')
			s++;
		n = strcspn(s, ", \t");
		if (n == tl && strncasecmp(s, token, tl) == 0)
			return 1;
		s += n;
		while (*s != '\0' && *s != ',')
			s++;
	}
	return 0;
}
