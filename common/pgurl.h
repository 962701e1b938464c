/*
 * pgurl.h - DATABASE_URL as the original wrote it (a Prisma URL) made
 * acceptable to libpq: Prisma-only query parameters removed, its
 * "schema" returned for search_path.  Used by workers (profiles) and the
 * supervisor (readiness).
 */
#ifndef NAIBER_PGURL_H
#define NAIBER_PGURL_H

#include <stddef.h>

char	*pgurl_clean(const char *, char *, size_t);

#endif
