/*
 * httphead.h - HTTP/1.x request parsing with hard limits, on top of
 * Node's http_parser (libhttp-parser).  Used by the supervisor for every
 * connection (incrementally) and by a worker to re-read the upgrade head
 * it was handed.  Header names and values live in a fixed arena sized to
 * the head limit; the body is malloc'd once, at most HH_BODY_MAX bytes.
 */
#ifndef NAIBER_HTTPHEAD_H
#define NAIBER_HTTPHEAD_H

#include <stddef.h>
#include <http_parser.h>

#define HH_HEAD_MAX	8192
#define HH_BODY_MAX	65536
#define HH_MAX_HEADERS	64
#define HH_URL_MAX	2048

enum hh_state {
	HH_MORE = 0,	/* need more bytes */
	HH_UPGRADE,	/* complete head of an Upgrade request; no body */
	HH_DONE,	/* complete request with body */
	HH_ERROR	/* hh_status: 400, 413, 414, 417, 431, 501, 505 */
};

struct hh_header {
	const char	*hd_name;
	const char	*hd_value;
};

struct hhead {
	http_parser	 hh_parser;
	enum hh_state	 hh_state;
	int		 hh_status;	/* HTTP status to answer on error */
	const char	*hh_error;	/* short reason for the log */
	size_t		 hh_headbytes;	/* bytes of the head seen so far */
	int		 hh_in_head;
	int		 hh_last_was_value;
	int		 hh_headers_done;
	size_t		 hh_urllen;
	/* the request line as received, to check what http_parser lets by */
	char		 hh_line[HH_URL_MAX + 64];
	size_t		 hh_linelen;
	int		 hh_line_done;
	/* our own scan of the head's line endings (CRLF only, no obs-fold) */
	size_t		 hh_scancol;	/* bytes on the current line */
	int		 hh_scanlines;	/* lines ended (not leading empty) */
	int		 hh_scancr;	/* the last byte was CR */
	int		 hh_scandone;	/* the head's empty line seen */
	/* results */
	char		 hh_method[16];
	const char	*hh_url;
	const char	*hh_path;	/* hh_url without the query */
	const char	*hh_query;	/* after '?', or NULL */
	struct hh_header hh_hdr[HH_MAX_HEADERS];
	int		 hh_nhdr;
	int		 hh_minor;	/* HTTP/1.x: x, 0 or 1 */
	int		 hh_keepalive;
	int		 hh_upgrade;
	/*
	 * Set with the end of the head (hh_headers_done) when the request
	 * is HTTP/1.1, has "Expect: 100-continue" and announces a body
	 * (Content-Length > 0 or chunked): the body may be waited for only
	 * after "HTTP/1.1 100 Continue".  Any other expectation is a 417.
	 * Cleared by hh_reset(); the caller may clear it once it answered.
	 */
	int		 hh_expect_continue;
	char		*hh_body;	/* NUL-terminated, or NULL */
	size_t		 hh_bodylen;
	/* arena for url and header strings */
	char		 hh_arena[HH_HEAD_MAX + HH_MAX_HEADERS * 2 + 8];
	size_t		 hh_arenalen;
};

void		 hh_init(struct hhead *);
/* The parser's process-wide limit, once (hh_init calls it too). */
void		 hh_global_init(void);
void		 hh_reset(struct hhead *);	/* frees the body */
/* Feed bytes; *used says how many were consumed.  Returns the state. */
enum hh_state	 hh_feed(struct hhead *, const char *, size_t, size_t *);
/* The first header of that name (case-insensitive), or NULL. */
const char	*hh_get(const struct hhead *, const char *);
/* How many times a header name occurs. */
int		 hh_count(const struct hhead *, const char *);
/* Case-insensitive token search in a comma-separated header value. */
int		 hh_has_token(const char *, const char *);
/* hh_has_token over every header of that name: one list (RFC 9110 5.3). */
int		 hh_list_has_token(const struct hhead *, const char *,
		    const char *);
/* A Sec-WebSocket-Key: base64 of 16 bytes, canonical (RFC 6455 4.1). */
int		 hh_ws_key_ok(const char *);

#endif
