/*
 * pgaddr.c - DATABASE_URL's host names, resolved on the loop.
 *
 * libpq resolves a host name with a blocking getaddrinfo(3) inside
 * PQconnectStartParams()/PQconnectPoll().  Instead, each process looks
 * the names up with evdns (pgaddr_start(), at start and again in the
 * background when the answer is older than PGADDR_TTL), and every
 * connection is started with host= and hostaddr= lists: each name
 * repeated once per address, in the resolver's order, so libpq tries
 * them in turn and still checks the certificate against the name
 * (sslmode=verify-full).  Unix sockets, IP literals and a hostaddr=
 * the operator gave need no lookup and are left to libpq.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "dns.h"
#include "log.h"
#include "pgaddr.h"
#include "pgurl.h"
#include "util.h"

#define PGADDR_HOSTS	8		/* names in host= */
#define PGADDR_TTL_NS	(30ULL * 1000000000ULL)
#define PGADDR_LIST	2048

struct pga_host {
	char			 name[256];
	int			 port;
	int			 lookup;	/* a name to resolve */
	int			 done;
	char			 err[320];
	struct dns_addrs	 a;
};

static struct {
	struct event_base	*base;
	char			*url;
	int			 nhosts;
	int			 portlist;	/* port= is a list */
	int			 pending;	/* lookups under way */
	int			 resolved;	/* a full answer is here */
	int			 needed;	/* some host is a name */
	uint64_t		 t_done;
	char			 err[320];
	void			(*done)(void *);
	void			*arg;
	struct dns_req		*req[PGADDR_HOSTS];
	/*
	 * Last, so that the fields every look-up writes share a page with
	 * the first hosts, not one 13 KiB further on (a page per worker).
	 */
	struct pga_host		 h[PGADDR_HOSTS];
} pga;

static int	pga_parse(const char *);
static void	pga_lookup_all(void);
static void	pga_resolved(const struct dns_addrs *, const char *, void *);

/*
 * Begin (or begin again) resolving url's host names on base; done(arg),
 * if given, is called from the loop once the answer (or the failure) is
 * in, or at once when there is nothing to resolve.  -1: url unusable.
 */
int
pgaddr_start(struct event_base *base, const char *url, void (*done)(void *),
    void *arg)
{
	int	i;

	if (pga.base != NULL && pga.base != base) {
		/* Inherited from the parent: its lookups are not ours. */
		memset(pga.req, 0, sizeof(pga.req));
		pga.resolved = 0;
		pga.t_done = 0;
	}
	for (i = 0; i < PGADDR_HOSTS; i++)
		if (pga.req[i] != NULL) {
			dns_cancel(pga.req[i]);
			pga.req[i] = NULL;
		}
	if (pga.url != NULL && strcmp(pga.url, url) != 0) {
		free(pga.url);
		pga.url = NULL;
	}
	if (pga.url == NULL && (pga.url = strdup(url)) == NULL)
		return -1;
	pga.base = base;
	pga.done = done;
	pga.arg = arg;
	pga.pending = 0;
	if (pga_parse(url) == -1)
		return -1;
	if (!pga.needed) {
		pga.resolved = 1;
		if (done != NULL) {
			pga.done = NULL;
			done(arg);
		}
		return 0;
	}
	pga.resolved = 0;
	pga_lookup_all();
	return 0;
}

/* host, port and hostaddr (if any) of the URL, as libpq reads them. */
static int
pga_parse(const char *url)
{
	PQconninfoOption	*ci, *o;
	char			*clean, *emsg = NULL, schema[64];
	const char		*host = NULL, *port = NULL, *hostaddr = NULL;
	const char		*p, *q, *pp;
	size_t			 n;
	int			 i;

	/*
	 * Only the hosts named are cleared, as they are parsed: nothing
	 * reads past nhosts, and a worker that wrote all of h[] (13 KiB)
	 * would copy four pages of it for one host.
	 */
	pga.nhosts = 0;
	pga.needed = 0;
	pga.portlist = 0;
	if ((clean = pgurl_clean(url, schema, sizeof(schema))) == NULL)
		return -1;
	ci = PQconninfoParse(clean, &emsg);
	explicit_bzero(clean, strlen(clean));
	free(clean);
	if (ci == NULL) {
		PQfreemem(emsg);	/* may quote the password */
		return -1;
	}
	for (o = ci; o->keyword != NULL; o++) {
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			hostaddr = o->val;
	}
	if (port == NULL || port[0] == '\0')
		port = getenv("PGPORT");
	if (host == NULL || host[0] == '\0')
		host = getenv("PGHOST");
	if (hostaddr == NULL || hostaddr[0] == '\0')
		hostaddr = getenv("PGHOSTADDR");
	pga.portlist = port != NULL && strchr(port, ',') != NULL;
	if (host != NULL && (hostaddr == NULL || hostaddr[0] == '\0'))
		for (p = host, pp = port, i = 0; i < PGADDR_HOSTS; i++) {
			n = strcspn(p, ",");
			memset(&pga.h[i], 0, sizeof(pga.h[i]));
			if (n < sizeof(pga.h[i].name)) {
				memcpy(pga.h[i].name, p, n);
				pga.h[i].name[n] = '\0';
			}
			pga.h[i].port = pp != NULL && *pp >= '0' &&
			    *pp <= '9' ? atoi(pp) : 5432;
			if (pga.h[i].port <= 0 || pga.h[i].port > 65535)
				pga.h[i].port = 5432;
			pga.h[i].lookup = n > 0 && n < sizeof(pga.h[i].name) &&
			    p[0] != '/' && p[0] != '@' &&
			    !dns_is_numeric(pga.h[i].name);
			if (pga.h[i].lookup)
				pga.needed = 1;
			pga.nhosts = i + 1;
			if (pp != NULL && (q = strchr(pp, ',')) != NULL)
				pp = q + 1;
			if (p[n] == '\0')
				break;
			p += n + 1;
		}
	if (pga.nhosts == PGADDR_HOSTS && host != NULL &&
	    (int)strlen(host) > 0 && strchr(host, ',') != NULL) {
		/* More names than we track: leave them all to libpq. */
		n = 1;
		for (p = host; *p != '\0'; p++)
			n += *p == ',';
		if (n > PGADDR_HOSTS)
			pga.needed = 0;
	}
	for (o = ci; o->keyword != NULL; o++)
		if (o->val != NULL)
			explicit_bzero(o->val, strlen(o->val));
	PQconninfoFree(ci);
	return 0;
}

static void
pga_lookup_all(void)
{
	char	e[320];
	int	i;

	pga.err[0] = '\0';
	for (i = 0; i < pga.nhosts; i++) {
		pga.h[i].done = !pga.h[i].lookup;
		if (!pga.h[i].lookup)
			continue;
		pga.pending++;
		pga.req[i] = dns_lookup(pga.base, pga.h[i].name,
		    pga.h[i].port, pga_resolved, &pga.h[i]);
		if (pga.req[i] == NULL) {
			pga.pending--;
			pga.h[i].done = 1;
			snprintf(e, sizeof(e), "cannot resolve %s: out of "
			    "memory", pga.h[i].name);
			strlcpy_n(pga.h[i].err, e, sizeof(pga.h[i].err));
		}
	}
	if (pga.pending == 0)
		pga_resolved(NULL, NULL, NULL);
}

static void
pga_resolved(const struct dns_addrs *a, const char *err, void *arg)
{
	struct pga_host	*h = arg;
	void		(*done)(void *) = pga.done;
	int		 i, ok = 0;

	if (h != NULL) {
		pga.req[h - pga.h] = NULL;
		h->done = 1;
		if (a != NULL) {
			h->a = *a;
			h->err[0] = '\0';
		} else {
			h->a.n = 0;
			strlcpy_n(h->err, err, sizeof(h->err));
		}
		if (--pga.pending > 0)
			return;
	}
	/* Usable if any name resolved (libpq tries the rest in turn). */
	pga.err[0] = '\0';
	for (i = 0; i < pga.nhosts; i++) {
		if (!pga.h[i].lookup || pga.h[i].a.n > 0)
			ok = 1;
		else if (pga.err[0] == '\0')
			strlcpy_n(pga.err, pga.h[i].err, sizeof(pga.err));
	}
	if (ok)
		pga.resolved = 1;
	else if (pga.resolved)
		log_warnx("database: %s; the last answer stays in use",
		    pga.err);
	else
		log_warnx("database: %s", pga.err);
	pga.t_done = now_mono_ns();
	pga.done = NULL;
	if (done != NULL)
		done(pga.arg);
}

/*
 * keys/vals (PGADDR_KEYS entries, NULL-terminated after them by the
 * caller) get host=, hostaddr= and, when port= is a list, port=, from
 * the last answer; buf holds the strings.  Returns how many were set
 * (0: nothing to add, leave it to libpq), or -1 with the reason in buf
 * when no answer is here (none yet, or the names do not resolve).  An
 * answer older than PGADDR_TTL starts a new lookup in the background.
 */
int
pgaddr_params(const char **keys, const char **vals, char *buf, size_t len)
{
	char	 hosts[PGADDR_LIST], addrs[PGADDR_LIST], ports[PGADDR_LIST];
	char	 a[64], pn[8];
	size_t	 off;
	int	 i, j, n = 0, cnt;

	if (!pga.needed)
		return 0;
	if (pga.pending == 0 && pga.base != NULL &&
	    now_mono_ns() - pga.t_done > PGADDR_TTL_NS)
		pga_lookup_all();
	if (!pga.resolved) {
		snprintf(buf, len, "%s", pga.err[0] ? pga.err :
		    "host name not resolved yet");
		return -1;
	}
	hosts[0] = addrs[0] = ports[0] = '\0';
	for (i = 0; i < pga.nhosts; i++) {
		cnt = pga.h[i].lookup ? pga.h[i].a.n : 1;
		for (j = 0; j < cnt; j++) {
			if (pga.h[i].lookup) {
				dns_addr_str((const struct sockaddr *)
				    &pga.h[i].a.ss[j], a, sizeof(a));
				/* "[v6]:port" or "v4:port": the address. */
				if (a[0] == '[') {
					memmove(a, a + 1, strlen(a));
					a[strcspn(a, "]")] = '\0';
				} else
					a[strcspn(a, ":")] = '\0';
			} else if (dns_is_numeric(pga.h[i].name))
				strlcpy_n(a, pga.h[i].name, sizeof(a));
			else
				a[0] = '\0';	/* a socket: libpq's */
			snprintf(pn, sizeof(pn), "%d", pga.h[i].port);
			off = strlen(hosts);
			if (snprintf(hosts + off, sizeof(hosts) - off, "%s%s",
			    off ? "," : "", pga.h[i].name) >=
			    (int)(sizeof(hosts) - off))
				goto toolong;
			off = strlen(addrs);
			if (snprintf(addrs + off, sizeof(addrs) - off, "%s%s",
			    n ? "," : "", a) >= (int)(sizeof(addrs) - off))
				goto toolong;
			off = strlen(ports);
			if (snprintf(ports + off, sizeof(ports) - off, "%s%s",
			    n ? "," : "", pn) >= (int)(sizeof(ports) - off))
				goto toolong;
			n++;
		}
	}
	if (strlen(hosts) + strlen(addrs) + strlen(ports) + 3 > len)
		goto toolong;
	off = 0;
	i = 0;
	keys[i] = "host";
	vals[i++] = memcpy(buf + off, hosts, strlen(hosts) + 1);
	off += strlen(hosts) + 1;
	keys[i] = "hostaddr";
	vals[i++] = memcpy(buf + off, addrs, strlen(addrs) + 1);
	off += strlen(addrs) + 1;
	if (pga.portlist) {
		keys[i] = "port";
		vals[i++] = memcpy(buf + off, ports, strlen(ports) + 1);
	}
	return i;
toolong:
	snprintf(buf, len, "too many database addresses");
	return -1;
}
