# bench.mk - the load benchmark (DESIGN section 11), included by the
# Makefile.  `make bench` builds build/naiberd and build/loadgen and runs
# tests/bench/bench.mjs (redis-server, PostgreSQL, naiberd and the load
# generator on this machine; rewrites tests/bench/RESULTS.md).  Shorter:
#   make bench BENCH_CALLS="1 50 200" BENCH_SECONDS=20
# `make bench-handoff` runs the small handoff-only benchmark.

LOADGEN_CFLAGS	= -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wshadow \
		  $(shell pkg-config --cflags libcrypto 2>/dev/null)
LOADGEN_LIBS	= $(shell pkg-config --libs libcrypto 2>/dev/null || echo -lcrypto) \
		  -lpthread

.PHONY: bench bench-handoff

$(B)/loadgen: tests/bench/loadgen.c
	@mkdir -p $(B)
	$(CC) $(LOADGEN_CFLAGS) $(LDFLAGS) -o $@ tests/bench/loadgen.c $(LOADGEN_LIBS)

bench: $(B)/naiberd $(B)/loadgen
	ulimit -n "$$(ulimit -Hn)" 2>/dev/null; \
	NAIBERD=$(CURDIR)/$(B)/naiberd LOADGEN=$(CURDIR)/$(B)/loadgen \
	  $(if $(BENCH_CALLS),BENCH_CALLS="$(BENCH_CALLS)") \
	  $(if $(BENCH_SECONDS),BENCH_SECONDS=$(BENCH_SECONDS)) \
	  node tests/bench/bench.mjs

bench-handoff: $(B)/naiberd
	NAIBERD=$(CURDIR)/$(B)/naiberd node tests/bench/handoff.mjs
