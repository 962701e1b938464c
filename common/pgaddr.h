/*
 * pgaddr.h - the host names of DATABASE_URL resolved on the process's
 * loop (dns.c) and handed to libpq as hostaddr=, so that libpq never
 * calls getaddrinfo(3) on an event loop.
 */
#ifndef NAIBER_PGADDR_H
#define NAIBER_PGADDR_H

#include <event2/event.h>

#define PGADDR_KEYS	3	/* host, hostaddr, port */

int	pgaddr_start(struct event_base *, const char *, void (*)(void *),
	    void *);
int	pgaddr_params(const char **, const char **, char *, size_t);

#endif
