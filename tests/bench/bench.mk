# bench.mk - the load benchmark (DESIGN section 11), included by the
# Makefile.  `make bench` builds build/naiberd, build/loadgen,
# build/forkcost and (when ../shared/bench/floor is there) build/relayfloor,
# installs gnuplot if it is missing, and runs tests/bench/bench.mjs
# (redis-server, PostgreSQL, naiberd, the load generator and, at each
# level, relayfloor's process-per-call relay on this machine; rewrites
# tests/bench/RESULTS.md, results.dat and results.svg).  Shorter:
#   make bench BENCH_CALLS="1 50 200" BENCH_SECONDS=20
# After the levels an overload level offers 2 x the capacity found through
# POST /call (BENCH_OVERLOAD=0 skips it, =only runs nothing else;
# BENCH_OVERLOAD_CALLS=N offers N; BENCH_ADMISSION_ENV="NAIBER_ADMISSION_CPU=5"
# lowers naiberd's limits there; see tests/bench/bench.mjs), e.g.
#   make bench BENCH_CALLS=20 BENCH_SECONDS=8 BENCH_OVERLOAD_CALLS=200 \
#     BENCH_ADMISSION_ENV="NAIBER_ADMISSION_CPU=10" BENCH_RESULTS=/tmp/r.md
# `make bench-handoff` runs the small handoff-only benchmark.

LOADGEN_CFLAGS	= -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wshadow \
		  $(shell pkg-config --cflags libcrypto 2>/dev/null)
LOADGEN_LIBS	= $(shell pkg-config --libs libcrypto 2>/dev/null || echo -lcrypto) \
		  -lpthread

# relayfloor: the CPU floor (a bare process-per-call relay), kept outside
# this tree; built with the flags of its own Makefile.  Without it the
# bench says so and reports no floor columns.
FLOOR_DIR	?= ../shared/bench/floor
FLOOR_CFLAGS	= -O2 -Wall -Wextra -Werror -std=gnu11
FLOOR_BIN	= $(if $(wildcard $(FLOOR_DIR)/relayfloor.c),$(B)/relayfloor)

.PHONY: bench bench-nodeps bench-handoff bench-deps

$(B)/loadgen: tests/bench/loadgen.c
	@mkdir -p $(B)
	$(CC) $(LOADGEN_CFLAGS) $(LDFLAGS) -o $@ tests/bench/loadgen.c $(LOADGEN_LIBS)

$(B)/forkcost: tests/bench/forkcost.c
	@mkdir -p $(B)
	$(CC) $(LOADGEN_CFLAGS) $(LDFLAGS) -o $@ tests/bench/forkcost.c

$(B)/relayfloor: $(FLOOR_DIR)/relayfloor.c
	@mkdir -p $(B)
	$(CC) $(FLOOR_CFLAGS) -o $@ $(FLOOR_DIR)/relayfloor.c

# gnuplot draws tests/bench/results.svg (gnuplot-nox: no X libraries).
bench-deps:
	@command -v gnuplot >/dev/null 2>&1 && exit 0; \
	echo "installing: gnuplot-nox"; \
	sudo=""; if [ "$$(id -u)" != 0 ]; then \
	  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else \
	    echo "make bench-deps: not root and no sudo: install gnuplot-nox" >&2; \
	    exit 1; fi; fi; \
	$$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y --no-install-recommends gnuplot-nox

# Packages first, then a second make that reads their flags (as check and
# demo do: see PKG_CFLAGS in the Makefile).
bench: deps
	@$(MAKE) --no-print-directory bench-nodeps

bench-nodeps: bench-deps $(B)/naiberd $(B)/loadgen $(B)/forkcost $(FLOOR_BIN)
	@[ -n "$(FLOOR_BIN)" ] || echo "bench: $(FLOOR_DIR)/relayfloor.c not found:" \
	  "running without the relayfloor columns" >&2
	ulimit -n "$$(ulimit -Hn)" 2>/dev/null; \
	NAIBERD=$(CURDIR)/$(B)/naiberd LOADGEN=$(CURDIR)/$(B)/loadgen \
	  FORKCOST=$(CURDIR)/$(B)/forkcost \
	  RELAYFLOOR=$(if $(FLOOR_BIN),$(CURDIR)/$(FLOOR_BIN)) \
	  $(if $(BENCH_CALLS),BENCH_CALLS="$(BENCH_CALLS)") \
	  $(if $(BENCH_SECONDS),BENCH_SECONDS=$(BENCH_SECONDS)) \
	  node tests/bench/bench.mjs

bench-handoff: $(B)/naiberd
	NAIBERD=$(CURDIR)/$(B)/naiberd node tests/bench/handoff.mjs
