/*
 * pgurl.c - cleaning a Prisma DATABASE_URL for libpq (see pgurl.h).
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pgurl.h"

static void	pg_schema(const char *, size_t, char *, size_t);

/* Query parameters Prisma accepts in DATABASE_URL and libpq refuses. */
static const char *const pg_prisma_params[] = {
	"schema", "connection_limit", "pool_timeout", "pgbouncer",
	"statement_cache_size", "socket_timeout", "sslaccept", "sslidentity",
	"max_connection_lifetime", "max_idle_connection_lifetime", NULL
};

/*
 * A copy of url without the query parameters only Prisma knows, so the
 * original's DATABASE_URL works unchanged; Prisma's "schema" goes into
 * schema (empty if absent or not a plain identifier).  NULL if out of
 * memory.  The copy holds the password: the caller wipes it.
 */
char *
pgurl_clean(const char *url, char *schema, size_t schemasz)
{
	char	*out, *q, *p, *next, *w;
	size_t	 len, klen;
	int	 k;

	schema[0] = '\0';
	if ((out = strdup(url)) == NULL)
		return NULL;
	if ((strncmp(out, "postgres://", 11) != 0 &&
	    strncmp(out, "postgresql://", 13) != 0) ||
	    (q = strchr(out, '?')) == NULL)
		return out;
	/* w never passes p: the kept parameters move left in place. */
	for (p = w = q + 1; *p != '\0'; p = next) {
		len = strcspn(p, "&");
		next = p[len] == '&' ? p + len + 1 : p + len;
		klen = strcspn(p, "=&");
		for (k = 0; pg_prisma_params[k] != NULL; k++)
			if (strlen(pg_prisma_params[k]) == klen &&
			    strncmp(p, pg_prisma_params[k], klen) == 0)
				break;
		if (k == 0)
			pg_schema(p + klen, len - klen, schema, schemasz);
		if (pg_prisma_params[k] != NULL || len == 0)
			continue;
		if (w != q + 1)
			*w++ = '&';
		memmove(w, p, len);
		w += len;
	}
	*w = '\0';
	if (w == q + 1)
		*q = '\0';
	return out;
}

/* v is "=value" (len bytes) of Prisma's schema parameter. */
static void
pg_schema(const char *v, size_t len, char *schema, size_t schemasz)
{
	static const char	ident[] = "abcdefghijklmnopqrstuvwxyz"
				    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";

	if (len >= 2 && len - 1 < schemasz && v[0] == '=' &&
	    strspn(v + 1, ident) >= len - 1) {
		memcpy(schema, v + 1, len - 1);
		schema[len - 1] = '\0';
	} else
		log_warnx("DATABASE_URL schema ignored: "
		    "not a plain identifier");
}

