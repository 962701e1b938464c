/*
 * testlib.h - helpers shared by the unit tests that run real servers
 * (redis-server, PostgreSQL) and a libevent loop: test_redis, test_jobs,
 * test_profile.
 */
#ifndef TESTLIB_H
#define TESTLIB_H

#include <time.h>

#include <event2/event.h>

int	tl_free_port(void);
long	tl_ms_since(const struct timespec *);
void	tl_deadline_cb(evutil_socket_t, short, void *);
int	tl_wait_until(struct event_base *, const int *, int, long);

#endif
