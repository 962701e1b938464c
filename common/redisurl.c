/*
 * redisurl.c - REDIS_URL as the original (ioredis) accepts it:
 * redis:// or rediss:// (TLS), [[user][:password]@]host[:port][/db],
 * and the query parameters ioredis reads from a URL.  Pure parsing,
 * shared by the configuration check and the connection (redis.c).
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "redis.h"
#include "util.h"

#define RDS_URL_MAX	2048
#define RDS_DB_MAX	1000000

static int	url_parse(const char *, struct rds_url *, const char **);
static int	url_rest(const char *, struct rds_url *, const char **);
static int	url_query(const char *, struct rds_url *, int, const char **);
static int	url_userinfo(const char *, size_t, struct rds_url *);
static int	url_hostport(const char *, size_t, struct rds_url *);
static int	url_host(const char *, size_t, struct rds_url *);
static int	url_number(const char *, size_t, long, long *);
static int	url_pct_decode(const char *, size_t, char *, size_t);

/* --- REDIS_URL ------------------------------------------------------ */

int
rds_url_parse(const char *s, struct rds_url *u)
{
	const char	*why;

	return url_parse(s, u, &why);
}

/* NULL if url is usable, else what is wrong with it (no secret). */
const char *
rds_url_error(const char *url)
{
	struct rds_url	 u;
	const char	*why;
	int		 rc;

	rc = url_parse(url, &u, &why);
	explicit_bzero(&u, sizeof(u));
	return rc == 0 ? NULL : why;
}

/* On failure *out is zeroed and *why says what was wrong (no secret). */
static int
url_parse(const char *s, struct rds_url *out, const char **why)
{
	struct rds_url	 u;
	const char	*p;
	int		 rc;

	*why = "no URL";
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (s == NULL || out == NULL)
		return -1;
	if (strnlen(s, RDS_URL_MAX + 1) > RDS_URL_MAX) {
		*why = "too long";
		return -1;
	}
	for (p = s; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
			*why = "space or control character";
			return -1;
		}
	memset(&u, 0, sizeof(u));
	if (strncasecmp(s, "rediss://", 9) == 0) {
		u.ru_tls = 1;
		p = s + 9;
	} else if (strncasecmp(s, "redis://", 8) == 0)
		p = s + 8;
	else {
		*why = "the scheme is not redis:// or rediss://";
		return -1;
	}
	if ((rc = url_rest(p, &u, why)) == 0)
		*out = u;
	explicit_bzero(&u, sizeof(u));
	return rc;
}

/* [[user][:password]@]host[:port][/db][?name=value&...] */
static int
url_rest(const char *p, struct rds_url *u, const char **why)
{
	const char	*slash, *at, *q, *end;
	size_t		 n, plen;
	long		 v;
	int		 have_db = 0;

	if (strchr(p, '#') != NULL) {
		*why = "fragment";
		return -1;
	}
	q = strchr(p, '?');
	plen = q != NULL ? (size_t)(q - p) : strlen(p);
	end = p + plen;
	slash = memchr(p, '/', plen);
	n = slash != NULL ? (size_t)(slash - p) : plen;
	/* The last '@' ends the user information, as WHATWG URLs do. */
	if ((at = memrchr(p, '@', n)) != NULL) {
		if (url_userinfo(p, (size_t)(at - p), u) == -1) {
			*why = "bad user or password";
			return -1;
		}
		n -= (size_t)(at + 1 - p);
		p = at + 1;
	}
	if (url_hostport(p, n, u) == -1) {
		*why = "bad host or port";
		return -1;
	}
	if (slash != NULL && slash + 1 < end) {
		if (url_number(slash + 1, (size_t)(end - slash - 1),
		    RDS_DB_MAX, &v) == -1) {
			*why = "bad database number";
			return -1;
		}
		u->ru_db = (int)v;
		have_db = 1;
	}
	if (q != NULL)
		return url_query(q + 1, u, have_db, why);
	return 0;
}

/*
 * The query parameters ioredis takes from a URL: family, db, username,
 * password (the URL's own parts win, as there) and connectTimeout;
 * other names are options of ioredis that mean nothing here: the first
 * is kept in ru_ignored for a warning.
 */
static int
url_query(const char *q, struct rds_url *u, int have_db, const char **why)
{
	const char	*amp, *eq;
	char		 val[256];
	size_t		 n, kl;
	long		 v;

	for (; *q != '\0'; q = *amp != '\0' ? amp + 1 : amp) {
		amp = q + strcspn(q, "&");
		n = (size_t)(amp - q);
		if (n == 0)
			continue;
		if ((eq = memchr(q, '=', n)) == NULL) {
			*why = "query parameter without a value";
			return -1;
		}
		kl = (size_t)(eq - q);
		if (url_pct_decode(eq + 1, n - kl - 1, val, sizeof(val)) ==
		    -1) {
			*why = "bad query parameter value";
			return -1;
		}
#define KEY(k)	(kl == sizeof(k) - 1 && strncmp(q, k, kl) == 0)
		if (KEY("family")) {
			if (strcmp(val, "4") == 0)
				u->ru_family = 4;
			else if (strcmp(val, "6") == 0)
				u->ru_family = 6;
			else if (strcmp(val, "0") != 0) {
				*why = "family is not 4, 6 or 0";
				return -1;
			}
		} else if (KEY("db")) {
			if (url_number(val, strlen(val), RDS_DB_MAX, &v) ==
			    -1) {
				*why = "bad database number";
				return -1;
			}
			if (!have_db)
				u->ru_db = (int)v;
		} else if (KEY("connectTimeout")) {
			if (url_number(val, strlen(val), 600000, &v) == -1 ||
			    v == 0) {
				*why = "bad connectTimeout";
				return -1;
			}
			u->ru_connect_ms = v;
		} else if (KEY("password")) {
			if (u->ru_password[0] == '\0')
				strlcpy_n(u->ru_password, val,
				    sizeof(u->ru_password));
		} else if (KEY("username")) {
			if (u->ru_user[0] == '\0')
				strlcpy_n(u->ru_user, val,
				    sizeof(u->ru_user));
		} else if (u->ru_ignored[0] == '\0') {
			if (kl == 0 || kl >= sizeof(u->ru_ignored) ||
			    strspn(q, "abcdefghijklmnopqrstuvwxyz"
			    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") < kl) {
				*why = "bad query parameter name";
				return -1;
			}
			memcpy(u->ru_ignored, q, kl);
			u->ru_ignored[kl] = '\0';
		}
#undef KEY
	}
	explicit_bzero(val, sizeof(val));
	return 0;
}

/* user[:password] or :password; a bare name is a user (ioredis). */
static int
url_userinfo(const char *p, size_t n, struct rds_url *u)
{
	const char	*colon;

	if ((colon = memchr(p, ':', n)) == NULL)
		return url_pct_decode(p, n, u->ru_user, sizeof(u->ru_user));
	if (url_pct_decode(p, (size_t)(colon - p), u->ru_user,
	    sizeof(u->ru_user)) == -1)
		return -1;
	return url_pct_decode(colon + 1, n - (size_t)(colon + 1 - p),
	    u->ru_password, sizeof(u->ru_password));
}

static int
url_hostport(const char *p, size_t n, struct rds_url *u)
{
	const char	*rest;
	size_t		 hlen;
	long		 v;

	if (n > 0 && p[0] == '[') {
		if ((rest = memchr(p, ']', n)) == NULL)
			return -1;
		if (url_host(p, (size_t)(rest - p) + 1, u) == -1)
			return -1;
		rest++;
	} else {
		if ((rest = memchr(p, ':', n)) == NULL)
			rest = p + n;
		if (url_host(p, (size_t)(rest - p), u) == -1)
			return -1;
	}
	hlen = (size_t)(rest - p);
	u->ru_port = 6379;
	if (hlen == n)
		return 0;
	if (rest[0] != ':' ||
	    url_number(rest + 1, n - hlen - 1, 65535, &v) == -1 || v == 0)
		return -1;
	u->ru_port = (int)v;
	return 0;
}

/* A name or IPv4 address, or an IPv6 address in brackets (kept bare). */
static int
url_host(const char *p, size_t n, struct rds_url *u)
{
	unsigned char	 a6[16];
	size_t		 i;

	if (n == 0) {
		strlcpy_n(u->ru_host, "localhost", sizeof(u->ru_host));
		return 0;
	}
	if (p[0] == '[') {
		if (n < 3 || n - 2 >= INET6_ADDRSTRLEN)
			return -1;
		memcpy(u->ru_host, p + 1, n - 2);
		u->ru_host[n - 2] = '\0';
		return inet_pton(AF_INET6, u->ru_host, a6) == 1 ? 0 : -1;
	}
	if (n >= sizeof(u->ru_host) || p[0] == '-' || p[0] == '.')
		return -1;
	for (i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') ||
		    (p[i] >= 'A' && p[i] <= 'Z') ||
		    (p[i] >= '0' && p[i] <= '9') ||
		    p[i] == '-' || p[i] == '.' || p[i] == '_'))
			return -1;
	memcpy(u->ru_host, p, n);
	u->ru_host[n] = '\0';
	return 0;
}

/* Decimal digits only, at most 7 of them, at most max. */
static int
url_number(const char *p, size_t n, long max, long *v)
{
	if (dec_digits(p, n, 7, v) == -1)
		return -1;
	return *v <= max ? 0 : -1;
}

/* %XX decoding into out (NUL-terminated); %00 and bad escapes fail. */
static int
url_pct_decode(const char *p, size_t n, char *out, size_t outsz)
{
	size_t	i, j = 0;
	int	c, hi, lo;

	for (i = 0; i < n; i++) {
		c = (unsigned char)p[i];
		if (c == '%') {
			if (i + 2 >= n)
				return -1;
			if ((hi = hex_digit(p[i + 1])) == -1 ||
			    (lo = hex_digit(p[i + 2])) == -1)
				return -1;
			c = hi * 16 + lo;
			i += 2;
		}
		if (c == 0 || j + 1 >= outsz)
			return -1;
		out[j++] = (char)c;
	}
	out[j] = '\0';
	return 0;
}

