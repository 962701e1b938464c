# tests/fuzz/fuzz.mk - libFuzzer targets for the pure modules; included
# by the Makefile.  Needs clang with its libFuzzer runtime (Debian:
# clang-14 and libclang-rt-14-dev).
#
#   make fuzz [FUZZ_SECONDS=60]	every target on a copy of its corpus
#   make fuzz-short		the same, 10 s each (CI)
#   make fuzz-regress		every target once over regress/ and corpus/
#
# The checked-in corpus (tests/fuzz/corpus/<t>/) is only read: each run
# copies it, with tests/fuzz/regress/<t>/, to build/fuzz/corpus-<t>/.
# A crash leaves its input in build/fuzz/artifacts-<t>/; copy it into
# tests/fuzz/regress/<t>/ so fuzz-regress replays it from then on.

_fuzz_goal := $(.DEFAULT_GOAL)

FUZZ_CC		?= clang
FUZZ_SECONDS	?= 60
FUZZ_B		 = build/fuzz
FUZZ_D		 = tests/fuzz
FUZZ_PKG_CFLAGS	:= $(shell pkg-config --cflags jansson libcrypto \
		   2>/dev/null)
FUZZ_CFLAGS	 = -g -O1 -fsanitize=fuzzer,address,undefined \
		   -fno-sanitize-recover=all -fno-omit-frame-pointer \
		   -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
		   -Icommon -Iworker -Isupervisor $(FUZZ_PKG_CFLAGS)
FUZZ_JANSSON	:= $(shell pkg-config --libs jansson 2>/dev/null || \
		   echo -ljansson)
FUZZ_CRYPTO	:= $(shell pkg-config --libs libcrypto 2>/dev/null || \
		   echo -lcrypto)
FUZZ_EVENT	:= $(shell pkg-config --libs libevent libevent_openssl \
		   libssl libcrypto 2>/dev/null || \
		   echo -levent_openssl -levent -lssl -lcrypto)
# Lines of a failed run's log worth showing.
FUZZ_WHY	 = ERROR: |^SUMMARY|invariant failed|runtime error
# -timeout: an input running this long is a hang, and fails the run.
FUZZ_FLAGS	 = -timeout=10 -print_final_stats=1

FUZZERS	 = fuzz_httphead fuzz_channel fuzz_twilio_event \
	   fuzz_eleven_event fuzz_audio fuzz_prompt fuzz_twilio_sig fuzz_ws

# -max_len per target, a little over the most each path reads: httphead
# CONN_IN_MAX + 2 control bytes; channel header + CHAN_MAX_PAYLOAD + 1;
# a Twilio start with 16 long parameters; 40 ms of 48 kHz audio (the
# filters are slow); a URL of TW_URLMAX and a form body.
FUZZ_MAXLEN_fuzz_httphead	= 12290
FUZZ_MAXLEN_fuzz_channel	= 16420
FUZZ_MAXLEN_fuzz_twilio_event	= 12288
FUZZ_MAXLEN_fuzz_eleven_event	= 8192
FUZZ_MAXLEN_fuzz_audio		= 4096
FUZZ_MAXLEN_fuzz_prompt		= 8192
FUZZ_MAXLEN_fuzz_twilio_sig	= 8192
FUZZ_MAXLEN_fuzz_ws		= 140000

$(FUZZ_B)/fuzz_httphead: $(FUZZ_D)/fuzz_httphead.c common/httphead.c \
	supervisor/router.c common/twilio.c common/config.c common/redisurl.c common/streamtok.c common/util.c
$(FUZZ_B)/fuzz_httphead: FUZZ_LIBS = -lhttp_parser $(FUZZ_CRYPTO)
$(FUZZ_B)/fuzz_channel: $(FUZZ_D)/fuzz_channel.c common/channel.c \
	common/util.c
$(FUZZ_B)/fuzz_twilio_event: $(FUZZ_D)/fuzz_twilio_event.c \
	worker/twilio_event.c common/jscan.c common/util.c
$(FUZZ_B)/fuzz_twilio_event: FUZZ_LIBS = $(FUZZ_JANSSON)
$(FUZZ_B)/fuzz_eleven_event: $(FUZZ_D)/fuzz_eleven_event.c \
	worker/eleven_event.c common/jscan.c common/util.c
$(FUZZ_B)/fuzz_eleven_event: FUZZ_LIBS = $(FUZZ_JANSSON)
$(FUZZ_B)/fuzz_audio: $(FUZZ_D)/fuzz_audio.c common/util.c \
	worker/transcode.c
$(FUZZ_B)/fuzz_audio: FUZZ_LIBS = -lm
$(FUZZ_B)/fuzz_prompt: $(FUZZ_D)/fuzz_prompt.c common/prompt.c
$(FUZZ_B)/fuzz_twilio_sig: $(FUZZ_D)/fuzz_twilio_sig.c common/twilio.c \
	common/util.c
$(FUZZ_B)/fuzz_twilio_sig: FUZZ_LIBS = $(FUZZ_CRYPTO)
# tls.c only for the client context that client mode names.
$(FUZZ_B)/fuzz_ws: $(FUZZ_D)/fuzz_ws.c worker/ws.c common/util.c \
	common/tls.c common/dns.c common/log.c
$(FUZZ_B)/fuzz_ws: FUZZ_LIBS = $(FUZZ_EVENT) -lwslay

$(FUZZERS:%=$(FUZZ_B)/%): common/*.h worker/*.h supervisor/*.h \
	$(FUZZ_D)/fuzz.mk
	@mkdir -p $(FUZZ_B)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^) $(FUZZ_LIBS)

.PHONY: fuzz fuzz-short fuzz-regress fuzz-build

fuzz-build: $(FUZZERS:%=$(FUZZ_B)/%)

# Per target: fresh corpus copy, run, one summary line from libFuzzer's
# final stats (stat::number_of_executed_units, else the "#N DONE" line).
define FUZZ_RUN
	@total=0; fail=""; \
	for tm in $(foreach t,$(FUZZERS),$(t):$(FUZZ_MAXLEN_$(t))); do \
	  t=$${tm%%:*}; m=$${tm##*:}; \
	  c=$(FUZZ_B)/corpus-$$t; a=$(FUZZ_B)/artifacts-$$t; \
	  log=$(FUZZ_B)/$$t.log; \
	  rm -rf $$c; mkdir -p $$c $$a; \
	  for d in $(FUZZ_D)/corpus/$$t $(FUZZ_D)/regress/$$t; do \
	    [ -d $$d ] && find $$d -type f ! -name '.*' \
	      -exec cp {} $$c/ \; ; \
	  done; \
	  echo "== $$t: $(FUZZ_SECONDS) s, max_len $$m"; \
	  $(FUZZ_B)/$$t $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
	    -max_len=$$m -artifact_prefix=$$a/ $$c >$$log 2>&1; rc=$$?; \
	  n=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log | \
	    tail -1); \
	  [ -n "$$n" ] || n=$$(sed -n 's/^#\([0-9]*\).*DONE.*/\1/p' $$log | \
	    tail -1); \
	  [ -n "$$n" ] || n=0; \
	  total=$$((total + n)); \
	  if [ $$rc -ne 0 ]; then \
	    fail="$$fail $$t"; \
	    grep -E "$(FUZZ_WHY)" $$log | head -5; \
	    echo "$$t: FAILED (exit $$rc) after $$n executions; log $$log"; \
	    ls $$a/* 2>/dev/null | sed "s|^|$$t: reproducer |"; \
	  else \
	    echo "$$t: $$n executions, $$(ls $$c | wc -l) corpus inputs"; \
	  fi; \
	done; \
	echo "fuzz: $$total executions in total"; \
	if [ -n "$$fail" ]; then echo "fuzz: FAILED:$$fail"; exit 1; fi
endef

fuzz: $(FUZZERS:%=$(FUZZ_B)/%)
	$(FUZZ_RUN)

fuzz-short: FUZZ_SECONDS = 10
fuzz-short: $(FUZZERS:%=$(FUZZ_B)/%)
	$(FUZZ_RUN)

# Each reproducer and seed once, no fuzzing: a crash fixed stays fixed.
fuzz-regress: $(FUZZERS:%=$(FUZZ_B)/%)
	@fail=""; for t in $(FUZZERS); do \
	  files=$$(find $(FUZZ_D)/regress/$$t $(FUZZ_D)/corpus/$$t \
	    -type f ! -name '.*' 2>/dev/null | sort); \
	  [ -n "$$files" ] || continue; \
	  log=$(FUZZ_B)/$$t.regress.log; \
	  if $(FUZZ_B)/$$t -runs=0 $$files >$$log 2>&1; then \
	    echo "$$t: $$(echo "$$files" | wc -l) inputs ok"; \
	  else \
	    fail="$$fail $$t"; \
	    grep -E "^Running:|$(FUZZ_WHY)" $$log | tail -4; \
	    echo "$$t: FAILED; log $$log"; \
	  fi; \
	done; \
	if [ -n "$$fail" ]; then echo "fuzz-regress: FAILED:$$fail"; exit 1; fi

# Including this file must not change the Makefile's default goal.
ifneq ($(_fuzz_goal),)
.DEFAULT_GOAL := $(_fuzz_goal)
else
.DEFAULT_GOAL :=
endif
