/*
 * streamtok.c - per-call Media Stream URL tokens: CallSid "." the first
 * 16 bytes of HMAC-SHA256(Twilio auth token, "naiberd stream " CallSid),
 * base64url without padding.  Every instance sharing the auth token
 * makes and accepts the same token, so a stream may land on an
 * instance other than the one that served its TwiML.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "streamtok.h"
#include "util.h"

#define TOK_MAC_BYTES	16
#define TOK_MAC_CHARS	22		/* base64url of 16 bytes, no '=' */
#define TOK_LABEL	"naiberd stream "

static int	sid_ok(const char *, size_t);
static int	tok_mac(const char *, const char *, size_t, char *);

/* "CA" and 32 hex digits, as Twilio's CallSids are. */
static int
sid_ok(const char *s, size_t n)
{
	size_t	i;

	if (n != 34 || s[0] != 'C' || s[1] != 'A')
		return 0;
	for (i = 2; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f') ||
		    (s[i] >= 'A' && s[i] <= 'F')))
			return 0;
	return 1;
}

static int
tok_mac(const char *secret, const char *sid, size_t sidlen, char *out)
{
	static const char	 b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char		 msg[64], md[EVP_MAX_MD_SIZE];
	unsigned int		 mdlen = 0;
	size_t			 ll = sizeof(TOK_LABEL) - 1, i, o = 0;
	uint32_t		 v;

	if (secret == NULL || secret[0] == '\0' || ll + sidlen > sizeof(msg))
		return -1;
	memcpy(msg, TOK_LABEL, ll);
	memcpy(msg + ll, sid, sidlen);
	if (HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, ll + sidlen,
	    md, &mdlen) == NULL || mdlen < TOK_MAC_BYTES)
		return -1;
	/* 16 bytes: five groups of three, then one byte. */
	for (i = 0; i + 3 <= TOK_MAC_BYTES; i += 3) {
		v = (uint32_t)md[i] << 16 | (uint32_t)md[i + 1] << 8 | md[i + 2];
		out[o++] = b64u[v >> 18 & 63];
		out[o++] = b64u[v >> 12 & 63];
		out[o++] = b64u[v >> 6 & 63];
		out[o++] = b64u[v & 63];
	}
	v = (uint32_t)md[15] << 16;
	out[o++] = b64u[v >> 18 & 63];
	out[o++] = b64u[v >> 12 & 63];
	out[o] = '\0';
	explicit_bzero(md, sizeof(md));
	return 0;
}

/* The token for call_sid into out; -1 if call_sid is not a CallSid. */
int
stream_token(const char *secret, const char *call_sid, char *out, size_t len)
{
	char	mac[TOK_MAC_CHARS + 1];
	size_t	n;

	if (call_sid == NULL || !sid_ok(call_sid, (n = strlen(call_sid))) ||
	    len < n + 1 + TOK_MAC_CHARS + 1 ||
	    tok_mac(secret, call_sid, n, mac) == -1)
		return -1;
	snprintf(out, len, "%s.%s", call_sid, mac);
	return 0;
}

/*
 * 1 if tok is a token this secret made, its CallSid copied to sid;
 * 0 otherwise (compared in constant time).
 */
int
stream_token_check(const char *secret, const char *tok, char *sid,
    size_t sidlen)
{
	const char	*dot;
	char		 mac[TOK_MAC_CHARS + 1];
	size_t		 n;

	if (tok == NULL || (dot = strchr(tok, '.')) == NULL)
		return 0;
	n = (size_t)(dot - tok);
	if (!sid_ok(tok, n) || strlen(dot + 1) != TOK_MAC_CHARS ||
	    sidlen < n + 1 || tok_mac(secret, tok, n, mac) == -1 ||
	    !ct_streq(dot + 1, mac))
		return 0;
	memcpy(sid, tok, n);
	sid[n] = '\0';
	return 1;
}

/* Which stream route path is; for SR_CALL *tok points at the token. */
enum stream_route
stream_route(const char *path, const char **tok)
{
	size_t	n = sizeof(STREAM_PATH) - 1;

	*tok = NULL;
	if (path == NULL || strncmp(path, STREAM_PATH, n) != 0)
		return SR_NONE;
	if (path[n] == '\0')
		return SR_SHARED;
	if (path[n] != '/' || path[n + 1] == '\0' ||
	    strlen(path + n + 1) > STREAM_TOKEN_MAX ||
	    strchr(path + n + 1, '/') != NULL)
		return SR_NONE;
	*tok = path + n + 1;
	return SR_CALL;
}
