/*
 * forkcost.c - what a process costs on this machine, for the Machine
 * section of tests/bench/RESULTS.md (bench.mjs runs it once per run).
 *
 *   forkcost [ITERS]
 *
 * fork + _exit + waitpid of this small process, ITERS times (default 200)
 * after 20 unmeasured ones, each timed with CLOCK_MONOTONIC from before
 * fork() to after waitpid() returned; and one trivial syscall (getppid)
 * as a fallback when relayfloor is not there.  One line on stdout:
 *   forkcost iters=200 p50_us=... p90_us=... min_us=... max_us=...
 *   getppid_ns=...
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sys/syscall.h>
#include <sys/wait.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static uint64_t
now_ns(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t
fork_once(void)
{
	uint64_t	t = now_ns();
	pid_t		p;
	int		st;

	if ((p = fork()) == -1) {
		perror("forkcost: fork");
		exit(1);
	}
	if (p == 0)
		_exit(0);
	while (waitpid(p, &st, 0) == -1)
		;
	return now_ns() - t;
}

int
main(int argc, char **argv)
{
	int		 iters = argc > 1 ? atoi(argv[1]) : 200, i;
	uint64_t	*v, t;
	long		 k, sc = 200000;

	if (iters < 1) {
		fprintf(stderr, "usage: forkcost [ITERS]\n");
		return 2;
	}
	if ((v = calloc((size_t)iters, sizeof(*v))) == NULL)
		return 1;
	for (i = 0; i < 20; i++)
		(void)fork_once();
	for (i = 0; i < iters; i++)
		v[i] = fork_once();
	qsort(v, (size_t)iters, sizeof(*v), cmp_u64);
	t = now_ns();
	for (k = 0; k < sc; k++)
		(void)syscall(SYS_getppid);
	t = now_ns() - t;
	printf("forkcost iters=%d p50_us=%.1f p90_us=%.1f min_us=%.1f "
	    "max_us=%.1f getppid_ns=%.0f\n", iters, (double)v[iters / 2] / 1e3,
	    (double)v[iters * 9 / 10] / 1e3, (double)v[0] / 1e3,
	    (double)v[iters - 1] / 1e3, (double)t / (double)sc);
	free(v);
	return 0;
}
