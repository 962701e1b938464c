# naiberd - telephony daemon.  `make` builds build/naiberd.
# Targets: all deps check unit integ lint-man demo bench install clean
# fuzz fuzz-short fuzz-regress check-memcheck check-asan bench-handoff

PREFIX	?= /usr/local
DESTDIR	?=
BINDIR	 = $(PREFIX)/sbin
MANDIR	 = $(PREFIX)/share/man
DATADIR	 = $(PREFIX)/share/naiberd
SYSCONFDIR ?= /etc

CC	?= cc
# Library flags come from pkg-config and are read when make parses this
# file.  On a machine that does not have the packages yet they are empty,
# so the goals that install them first (demo, check, bench) run `make
# deps` and then do the rest of their work in a second make, which reads
# the flags anew.  A plain `make` without them stops with a clear message.
PKGS	 = libevent libevent_openssl jansson libcrypto libssl libcurl hiredis \
	   libpq
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
PKG_MISSING := $(shell pkg-config --exists $(PKGS) 2>/dev/null || echo yes)
WARN	 = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	   -Wmissing-prototypes -Wpointer-arith -Wformat=2
CFLAGS	?= -O2 -g
CFLAGS	+= -std=c11 -D_GNU_SOURCE $(WARN) -Icommon $(PKG_CFLAGS) \
	   -DNAIBER_DATADIR='"$(DATADIR)"'
LDLIBS	 = $(PKG_LIBS) -lwslay -lhttp_parser -lm

B	 = build
COMMON	 = common/log.c common/util.c common/config.c common/channel.c \
	   common/httphead.c common/twilio.c common/twilio_rest.c \
	   common/evcurl.c common/redis.c common/tls.c common/session.c \
	   common/jobs.c common/prompt.c common/pgurl.c common/jscan.c \
	   common/dns.c common/pgaddr.c common/redisurl.c \
	   common/streamtok.c
SUPERV	 = supervisor/main.c supervisor/supervisor.c supervisor/listener.c \
	   supervisor/router.c supervisor/api_ops.c supervisor/pool.c \
	   supervisor/metrics.c supervisor/api_call.c supervisor/api_twilio.c \
	   supervisor/placed.c supervisor/ngrok.c supervisor/orphan.c \
	   supervisor/ready.c supervisor/forksrv.c supervisor/admission.c \
	   supervisor/headroom.c
WORKER	 = worker/worker.c worker/call.c worker/ws.c worker/twilio_ws.c \
	   worker/twilio_event.c worker/eleven_ws.c worker/bridge.c \
	   worker/transcode.c worker/prepare.c worker/profile.c \
	   worker/pgconn.c worker/eleven_event.c
SRCS	 = $(COMMON) $(SUPERV) $(WORKER)
OBJS	 = $(SRCS:%.c=$(B)/%.o)

# Unit tests: cmocka, under ASan and UBSan.
SAN	 = -fsanitize=address,undefined -fno-omit-frame-pointer \
	   -fno-sanitize-recover=all
UCFLAGS	 = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -O1 $(SAN) \
	   -Icommon -Iworker -Isupervisor $(PKG_CFLAGS)
ULIBS	 = $(PKG_LIBS) -lcmocka -lwslay -lhttp_parser -lm
UNITS	 = test_channel test_config test_httphead test_twilio_sig \
	   test_twilio_event test_util test_router test_evcurl test_redis \
	   test_twilio_rest test_transcode test_prompt test_profile test_jobs \
	   test_eleven_event test_ws test_admission test_streamtok

DEB_PKGS = build-essential pkg-config libevent-dev libwslay-dev \
	   libjansson-dev libssl-dev libhttp-parser-dev libcmocka-dev \
	   libcurl4-openssl-dev libhiredis-dev libpq-dev \
	   redis-server postgresql pgbouncer mandoc python3 procps \
	   ca-certificates \
	   openssl valgrind clang libclang-rt-14-dev systemd prometheus


.PHONY: deps-debian need-libs check-nodeps demo-nodeps check-first-run lint-ops
.PHONY: all deps check unit integ lint-man demo bench install clean \
	check-memcheck check-asan

all: $(B)/naiberd

need-libs:
	@if [ -n "$(PKG_MISSING)" ]; then \
	  echo "naiberd: the build needs libraries that pkg-config cannot" \
	    "find:" >&2; \
	  pkg-config --print-errors --exists $(PKGS) 2>&1 | sed 's/^/  /' >&2 \
	    || true; \
	  echo "run 'make deps' first (as root: it uses apt-get), or" \
	    "'make demo' / 'make check', which do." >&2; \
	  exit 1; fi

$(B)/naiberd: $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

# Each role sees its own header and common/, never the other role's.
$(B)/common/%.o: common/%.c common/*.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/supervisor/%.o: supervisor/%.c common/*.h supervisor/*.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isupervisor -c -o $@ $<

$(B)/worker/%.o: worker/%.c common/*.h worker/*.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iworker -c -o $@ $<

NPM_DIRS = tests/peers tests/peers/bullmq5 tests/peers/bullmq6
NPM_STAMPS = $(NPM_DIRS:%=%/node_modules/.naiberd-stamp)

deps: deps-debian $(NPM_STAMPS)

deps-debian:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | \
	    grep -q 'ok installed' || missing="$$missing $$p"; done; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -z "$$missing" ]; then echo "all Debian packages present"; \
	  exit 0; fi; \
	echo "installing:$$missing"; \
	sudo=""; if [ "$$(id -u)" != 0 ]; then \
	  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else \
	    echo "make deps: not root and no sudo: install$$missing" >&2; \
	    exit 1; fi; fi; \
	$$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y --no-install-recommends $$missing

# npm ci only when a lock file changed (it empties node_modules first).
%/node_modules/.naiberd-stamp: %/package-lock.json %/package.json
	cd $* && npm ci --no-audit --no-fund
	touch $@

# The whole daemon under ASan+UBSan, for the integration suite.
ASAN_OBJS = $(SRCS:%.c=$(B)/asan/%.o)

$(OBJS) $(ASAN_OBJS) $(UNITS:%=$(B)/test/%) $(B)/jobs_cli: | need-libs

$(B)/asan/naiberd: $(ASAN_OBJS)
	$(CC) $(CFLAGS) $(SAN) $(LDFLAGS) -o $@ $(ASAN_OBJS) $(LDLIBS)

$(B)/asan/common/%.o: common/%.c common/*.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -O1 -c -o $@ $<

$(B)/asan/supervisor/%.o: supervisor/%.c common/*.h supervisor/*.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -O1 -Isupervisor -c -o $@ $<

$(B)/asan/worker/%.o: worker/%.c common/*.h worker/*.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -O1 -Iworker -c -o $@ $<

# --- tests ------------------------------------------------------------

$(B)/test/test_channel: tests/unit/test_channel.c common/channel.c common/util.c
$(B)/test/test_config: tests/unit/test_config.c common/config.c \
	common/redisurl.c common/util.c
$(B)/test/test_httphead: tests/unit/test_httphead.c common/httphead.c
$(B)/test/test_twilio_sig: tests/unit/test_twilio_sig.c common/twilio.c \
	common/util.c
$(B)/test/test_twilio_event: tests/unit/test_twilio_event.c \
	worker/twilio_event.c common/jscan.c common/util.c
$(B)/test/test_util: tests/unit/test_util.c common/util.c
$(B)/test/test_profile: tests/unit/test_profile.c tests/unit/testlib.c \
	worker/profile.c worker/pgconn.c common/log.c common/util.c \
	common/pgurl.c common/pgaddr.c common/dns.c common/tls.c
$(B)/test/test_jobs: tests/unit/test_jobs.c tests/unit/testlib.c \
	common/jobs.c common/redis.c common/redisurl.c common/dns.c common/tls.c \
	common/log.c common/util.c
$(B)/test/test_eleven_event: tests/unit/test_eleven_event.c \
	worker/eleven_event.c common/jscan.c common/util.c
$(B)/test/test_prompt: tests/unit/test_prompt.c common/prompt.c
$(B)/test/test_transcode: tests/unit/test_transcode.c worker/transcode.c
$(B)/test/test_evcurl: tests/unit/test_evcurl.c common/evcurl.c \
	common/dns.c common/tls.c common/log.c common/util.c
$(B)/test/test_redis: tests/unit/test_redis.c tests/unit/testlib.c \
	common/redis.c common/redisurl.c common/dns.c common/tls.c common/log.c common/util.c
$(B)/test/test_twilio_rest: tests/unit/test_twilio_rest.c \
	common/twilio_rest.c common/evcurl.c common/util.c common/dns.c \
	common/tls.c common/log.c
$(B)/test/test_ws: tests/unit/test_ws.c worker/ws.c common/util.c \
	common/tls.c common/dns.c common/log.c
$(B)/test/test_admission: tests/unit/test_admission.c supervisor/admission.c
$(B)/test/test_streamtok: tests/unit/test_streamtok.c common/streamtok.c \
	common/util.c
$(B)/test/test_router: tests/unit/test_router.c supervisor/router.c \
	common/redisurl.c common/streamtok.c \
	common/httphead.c common/twilio.c common/config.c common/util.c

$(B)/test/%:
	@mkdir -p $(B)/test
	$(CC) $(UCFLAGS) -o $@ $^ $(ULIBS)

$(B)/test/sig-vectors.tsv: tests/peers/gen-sig-vectors.mjs
	@mkdir -p $(B)/test
	node tests/peers/gen-sig-vectors.mjs $@

unit: $(UNITS:%=$(B)/test/%) $(B)/test/sig-vectors.tsv
	@fail=0; for t in $(UNITS); do \
	  echo "== $$t"; \
	  TWILIO_VECTORS=$(B)/test/sig-vectors.tsv \
	    ASAN_OPTIONS=detect_leaks=1 $(B)/test/$$t || fail=1; \
	done; exit $$fail

# Test-only driver for the BullMQ test; not sanitized because it is timed.
$(B)/jobs_cli: tests/unit/jobs_cli.c common/jobs.c common/redis.c \
	common/redisurl.c common/dns.c common/tls.c common/log.c common/util.c
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

integ: $(B)/naiberd $(B)/jobs_cli
	NAIBERD=$(CURDIR)/$(B)/naiberd JOBS_CLI=$(CURDIR)/$(B)/jobs_cli \
	  node --test --test-concurrency=1 tests/integ/

lint-man: $(B)/naiberd
	mandoc -Tlint -W warning man/naiberd.8 man/naiberd.conf.5
	sh tests/check-man.sh $(B)/naiberd man/naiberd.8 man/naiberd.conf.5

# The README's two commands: packages first, then a second make that
# sees their flags (see PKG_CFLAGS above).
check: deps
	@$(MAKE) --no-print-directory check-nodeps

check-nodeps: all unit lint-man lint-ops fuzz-regress integ

# The operator files: promtool on the alerting rules, and every series
# the dashboard and the rules name against a live naiberd's /metrics.
lint-ops: $(B)/naiberd
	promtool check rules etc/naiberd-alerts.yml
	NAIBERD=$(CURDIR)/$(B)/naiberd node tests/check-ops.mjs \
	  etc/grafana-naiberd.json etc/naiberd-alerts.yml

demo: deps
	@$(MAKE) --no-print-directory demo-nodeps

demo-nodeps: all
	node tests/demo/demo.mjs

# `make demo` on a machine whose packages are not there yet (CI's guard).
check-first-run:
	sh tests/check-first-run.sh

# Paths in the unit and the sample configuration follow BINDIR, DATADIR
# and SYSCONFDIR; an existing naiberd.conf is never overwritten.  The
# spool stays root's here: the unit hands it to the -u user at start.
install: $(B)/naiberd
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 \
	  $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(DATADIR)/prompts \
	  $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(SYSCONFDIR)/naiber
	install -d -m 700 $(DESTDIR)/var/spool/naiberd
	install -m 755 $(B)/naiberd $(DESTDIR)$(BINDIR)/naiberd
	install -m 644 man/naiberd.8 $(DESTDIR)$(MANDIR)/man8/naiberd.8
	install -m 644 man/naiberd.conf.5 $(DESTDIR)$(MANDIR)/man5/naiberd.conf.5
	install -m 644 prompts/* $(DESTDIR)$(DATADIR)/prompts/
	sed -e 's|/usr/local/sbin/naiberd|$(BINDIR)/naiberd|g' \
	  -e 's|/etc/naiber/|$(SYSCONFDIR)/naiber/|g' etc/naiberd.service \
	  > $(DESTDIR)$(PREFIX)/lib/systemd/system/naiberd.service
	chmod 644 $(DESTDIR)$(PREFIX)/lib/systemd/system/naiberd.service
	@conf=$(DESTDIR)$(SYSCONFDIR)/naiber/naiberd.conf; \
	if [ -e $$conf ]; then echo "keeping the existing $$conf"; else \
	  echo "installing the sample $$conf"; \
	  sed -e 's|/usr/local/share/naiberd|$(DATADIR)|g' \
	    -e 's|/etc/naiber/|$(SYSCONFDIR)/naiber/|g' etc/naiberd.conf \
	    > $$conf && chmod 644 $$conf; \
	fi
	install -m 600 etc/naiberd.env.example \
	  $(DESTDIR)$(SYSCONFDIR)/naiber/naiberd.env.example

clean:
	rm -rf $(B)

# Whole calls with the supervisor and workers under valgrind memcheck.
check-memcheck: $(B)/naiberd
	@mkdir -p $(B)/memcheck
	VG_DIR=$(CURDIR)/$(B)/memcheck NAIBER_TEST_ADMISSION_LAG=10000 \
	NAIBERD=$(CURDIR)/tests/memcheck/valgrind-naiberd.sh \
	  node --test tests/memcheck/

# The integration suite against the ASan+UBSan build of the daemon (a
# representative subset: whole calls, bridge, faults, crash, bad input).
ASAN_TESTS = tests/integ/t_call_e2e.test.mjs tests/integ/t_bridge.test.mjs \
	tests/integ/t_bridge_faults.test.mjs tests/integ/t_bridge_formats.test.mjs \
	tests/integ/t_badinput.test.mjs tests/integ/t_crash.test.mjs \
	tests/integ/t_coalesce.test.mjs
check-asan: $(B)/asan/naiberd $(B)/jobs_cli
	NAIBERD=$(CURDIR)/$(B)/asan/naiberd JOBS_CLI=$(CURDIR)/$(B)/jobs_cli \
	  NAIBER_TEST_ADMISSION_LAG=2000 \
	  ASAN_OPTIONS=abort_on_error=1 \
	  node --test --test-concurrency=1 $(ASAN_TESTS)

include tests/fuzz/fuzz.mk
include tests/bench/bench.mk

# Smaller benchmarks behind the figures in the issue notes.
bench-call: $(B)/naiberd
	NAIBERD=$(CURDIR)/$(B)/naiberd node tests/bench/call_rt.mjs 500

bench-setup: $(B)/naiberd
	NAIBERD=$(CURDIR)/$(B)/naiberd node tests/bench/setup.mjs 30
