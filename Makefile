# C build and test entry points. The Python extension is built by setup.py;
# this Makefile builds the C unit tests, their sanitizer build and the fuzzers.
CC ?= cc
CLANG ?= clang
PKGS := libngtcp2 libngtcp2_crypto_gnutls gnutls libuv
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS := $(shell pkg-config --libs $(PKGS))

INCLUDES := -Icsrc/core -Icsrc/net -Icsrc/engine -Icsrc/sim -Icsrc/tests
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g $(WARN) $(INCLUDES) $(PKG_CFLAGS)
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
TSAN := -fsanitize=thread -fno-omit-frame-pointer

CORE_SRCS := $(wildcard csrc/core/*.c)
NET_SRCS := $(wildcard csrc/net/*.c)
ENGINE_SRCS := $(wildcard csrc/engine/*.c)
SIM_SRCS := $(wildcard csrc/sim/*.c)
LIB_SRCS := $(CORE_SRCS) $(NET_SRCS) $(ENGINE_SRCS) $(SIM_SRCS)
TEST_SRCS := $(wildcard csrc/tests/*.c)
HDRS := $(wildcard csrc/*/*.h)
FUZZ_SRCS := $(wildcard csrc/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst csrc/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
# The library, compiled once for every fuzzer: coverage-instrumented, with
# the transport's fuzz hooks (cm_net_int.h).
FUZZ_CFLAGS := $(CFLAGS_BASE) -O1 -fsanitize=address,undefined \
  -fno-sanitize-recover=undefined -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
FUZZ_OBJS := $(patsubst csrc/%.c,build/fuzz/obj/%.o,$(LIB_SRCS))
# The Python fuzzer (atheris) of the agent's control endpoint; it imports
# the package from the tree, its extension built in place (scripts/setup.sh).
PY ?= python3
FUZZ_PY := fuzz_control
FUZZ_NAMES := $(notdir $(FUZZ_BINS)) $(FUZZ_PY)
FUZZ_SECONDS ?= 60

.PHONY: all ctest ctest-asan ctest-tsan valgrind coverage coverage-report fuzz fuzz-build \
  fuzz-long format format-check clean

all: build/cm_tests

build/cm_tests: $(LIB_SRCS) $(TEST_SRCS) $(HDRS)
	@mkdir -p build
	$(CC) $(CFLAGS_BASE) -O2 -o $@ $(LIB_SRCS) $(TEST_SRCS) $(PKG_LIBS) -lm -lpthread

build/asan/cm_tests: $(LIB_SRCS) $(TEST_SRCS) $(HDRS)
	@mkdir -p build/asan
	$(CLANG) $(CFLAGS_BASE) -O1 $(SAN) -o $@ $(LIB_SRCS) $(TEST_SRCS) $(PKG_LIBS) -lm -lpthread

ctest: build/cm_tests
	./build/cm_tests $(T)

ctest-asan: build/asan/cm_tests
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ./build/asan/cm_tests $(T)

build/tsan/cm_tests: $(LIB_SRCS) $(TEST_SRCS) $(HDRS)
	@mkdir -p build/tsan
	$(CLANG) $(CFLAGS_BASE) -O1 $(TSAN) -o $@ $(LIB_SRCS) $(TEST_SRCS) $(PKG_LIBS) -lm -lpthread

# The engine tests under ThreadSanitizer: those that use the engine from
# more than one thread at a time, about 10 s in all. Callers' threads
# against the loop: commands, event queues and snapshots while a cluster
# forms, changes tags, fails and leaves (five_nodes_over_quic), a join and
# a leave racing their results (full_event_queue, second_leave), start and
# stop cycles, and refused peers (security_cluster_key); several callers
# at once against a shutdown (start_stop_race_shutdown) and against one
# snapshot (snapshot_find_from_racing_threads); a user event sent from
# the caller's thread and read from others (user_event_reaches). Left out:
# tests that only wait (timeouts, 60 s of loss) or load the transport (flood), which
# exercise no cross-thread path the others miss. The first report fails
# the run. T= picks other tests.
TSAN_TESTS := engine_five_nodes_over_quic engine_full_event_queue \
  engine_second_leave engine_start_stop_cycles engine_security_cluster_key \
  engine_start_stop_race_shutdown engine_snapshot_find_from_racing_threads \
  engine_user_event_reaches
ctest-tsan: build/tsan/cm_tests
	TSAN_OPTIONS=halt_on_error=1 ./build/tsan/cm_tests $(or $(T),$(TSAN_TESTS))

# Engine start/stop, a five-node cluster's lifecycle, transport set-up and
# tear-down, the input limits, and the broadcast queue's slots after it grows
# (directly, and through a reap) under valgrind: leaks (definite, indirect
# and possible) and invalid accesses fail the run. The plain build is used:
# valgrind needs no instrumentation, and this checks the optimised code that
# ships. No suppressions are needed: GnuTLS, ngtcp2 and libuv free what they
# allocate once the engine has stopped.
VALGRIND_TESTS ?= engine_start_stop_cycles engine_join_timeout \
  engine_five_nodes_over_quic engine_user_event_reaches net_create_close_cycles \
  net_datagrams_both_ways net_stream_limit_at_its_edge \
  net_accepts_per_source net_half_open_ net_retry_ net_initial_ \
  net_known_peer_ net_garbage_initials net_config_derived \
  net_stream_memory_bounded net_stream_write_order net_refused_initials \
  net_forged_member net_stranger_gets net_small_pool limit_ \
  bcast_forget_aux_after_growth rule_left_member_is_reaped_after_queue_growth \
  theap_ rule_left_and_failed_members_are_reaped_on_time \
  rule_confirmations_shorten_the_suspicion_timeout node_counters_match_the_table
valgrind: build/cm_tests
	valgrind -q --error-exitcode=1 --leak-check=full \
	  --errors-for-leak-kinds=definite,indirect,possible \
	  --show-leak-kinds=definite,indirect,possible \
	  ./build/cm_tests $(VALGRIND_TESTS)

# Coverage (docs/testing.md): the C unit tests built by clang with its
# source-based coverage, at -O2 as the plain build; scripts/test.sh runs this
# build for its plain run of the unit tests. `make coverage` runs every test
# in it (T= picks some) and prints each layer's lines and branches covered
# by them alone.
# coverage-report reports on the profiles in build/cov/profiles: the unit
# tests', and those of pytest on the extension built with coverage
# (scripts/cov_pytest.sh) if it ran since. COV_CHECK=--check fails the report
# if a layer is below its floor (scripts/coverage_summary.py), which
# scripts/test.sh does once both have run.
COVERAGE := -fprofile-instr-generate -fcoverage-mapping
LLVM_PROFDATA ?= llvm-profdata
LLVM_COV ?= llvm-cov
COV_EXT = $(wildcard build/cov/ext/clustermember/_core*.so)

build/cov/cm_tests: $(LIB_SRCS) $(TEST_SRCS) $(HDRS)
	@mkdir -p build/cov
	$(CLANG) $(CFLAGS_BASE) -O2 $(COVERAGE) -o $@ $(LIB_SRCS) $(TEST_SRCS) $(PKG_LIBS) -lm -lpthread

coverage: build/cov/cm_tests
	rm -rf build/cov/profiles
	LLVM_PROFILE_FILE=build/cov/profiles/%p.profraw ./build/cov/cm_tests $(T)
	@$(MAKE) -s coverage-report COV_EXT=

coverage-report:
	$(LLVM_PROFDATA) merge -sparse -o build/cov/cm.profdata build/cov/profiles/*.profraw
	$(LLVM_COV) export -summary-only -instr-profile build/cov/cm.profdata \
	  build/cov/cm_tests $(addprefix -object ,$(COV_EXT)) >build/cov/summary.json
	$(PY) scripts/coverage_summary.py build/cov/summary.json $(COV_CHECK)

build/fuzz/obj/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/%: csrc/fuzz/%.c $(FUZZ_OBJS) $(HDRS)
	@mkdir -p build/fuzz
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJS) \
	  $(PKG_LIBS) -lm -lpthread

# The fuzzers, built only (scripts/test.sh builds them while other tests run).
fuzz-build: $(FUZZ_BINS)

# How to run fuzzer $$name (in a recipe's shell loop).
FUZZ_CMD = case $$name in $(FUZZ_PY)) \
	    cmd="env PYTHONPATH=$(CURDIR) $(PY) tests/$$name.py";; \
	  *) cmd=build/fuzz/$$name;; esac

# Each fuzzer runs for FUZZ_SECONDS from its committed corpus
# (csrc/fuzz/corpus/NAME, minimised) and its hand-made seeds; what it finds
# goes to build/fuzz/corpus-NAME, never into the tree. Any crash fails.
fuzz: $(FUZZ_BINS)
	@for name in $(FUZZ_NAMES); do \
	  $(FUZZ_CMD); corpus=build/fuzz/corpus-$$name; \
	  mkdir -p $$corpus; \
	  seeds=csrc/fuzz/seeds/$$name; [ -d $$seeds ] || seeds=; \
	  kept=csrc/fuzz/corpus/$$name; [ -d $$kept ] || kept=; \
	  echo "fuzz: $$name for $(FUZZ_SECONDS)s"; \
	  $$cmd -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=build/fuzz/$$name- $$corpus $$kept $$seeds \
	    >build/fuzz/$$name.log 2>&1 || { tail -50 build/fuzz/$$name.log; exit 1; }; \
	  grep -E 'stat::number_of_executed_units' build/fuzz/$$name.log; \
	done

# The long run: FUZZ_LONG_TOTAL seconds (an hour) in all, shared by the
# fuzzers one after another (FUZZ_LONG_SECONDS each, 720 for five), then
# for each a minimising merge of what it found into the committed corpus:
# commit csrc/fuzz/corpus afterwards to keep what it learned. Any crash
# fails and leaves its input in build/fuzz/. A merge that fails, or keeps
# nothing, fails too and leaves that fuzzer's corpus as it was (its log:
# build/fuzz/NAME-merge.log).
FUZZ_LONG_TOTAL ?= 3600
FUZZ_LONG_SECONDS ?= $(shell echo $$(( $(FUZZ_LONG_TOTAL) / $(words $(FUZZ_NAMES)) )))
fuzz-long: $(FUZZ_BINS)
	@for name in $(FUZZ_NAMES); do \
	  $(FUZZ_CMD); corpus=build/fuzz/corpus-$$name; \
	  kept=csrc/fuzz/corpus/$$name; mkdir -p $$corpus $$kept; \
	  echo "fuzz-long: $$name for $(FUZZ_LONG_SECONDS)s"; \
	  $$cmd -max_total_time=$(FUZZ_LONG_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=build/fuzz/$$name- $$corpus $$kept \
	    csrc/fuzz/seeds/$$name >build/fuzz/$$name-long.log 2>&1 \
	    || { tail -50 build/fuzz/$$name-long.log; exit 1; }; \
	  log=build/fuzz/$$name-merge.log; \
	  rm -rf $$kept.new && mkdir -p $$kept.new && \
	  $$cmd -merge=1 $$kept.new $$kept $$corpus >$$log 2>&1 \
	    || { tail -50 $$log; rm -rf $$kept.new; \
	         echo "fuzz-long: merging $$name's corpus failed; $$kept left as it was"; \
	         exit 1; }; \
	  [ -n "$$(ls $$kept.new)" ] \
	    || { tail -50 $$log; rm -rf $$kept.new; \
	         echo "fuzz-long: merging $$name's corpus kept nothing; $$kept left as it was"; \
	         exit 1; }; \
	  rm -rf $$kept && mv $$kept.new $$kept; \
	  echo "fuzz-long: $$name corpus $$(ls $$kept | wc -l) inputs"; \
	done

format:
	clang-format -i csrc/*/*.c csrc/*/*.h

format-check:
	clang-format --dry-run --Werror csrc/*/*.c csrc/*/*.h

clean:
	rm -rf build

# Benchmarks (docs/benchmarks.md, "Transport and engine"): transport figures,
# the one-node-per-process driver that bench/engine_bench.py launches, the
# injector that fills a node's registry for bench/event_bench.py, and the
# keyless flood of bench/flood_bench.py, and the wake-up floor without Python
# beside bench/api_bench.py's.
BENCH_BINS := build/bench/net_bench build/bench/cm_node_run build/bench/cm_pp_inject \
  build/bench/cm_flood build/bench/cm_wake
.PHONY: bench
bench: $(BENCH_BINS)

# The keyless flood of QUIC Initials (docs/security.md): GnuTLS only.
build/bench/cm_flood: bench/cm_flood.c
	@mkdir -p build/bench
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) $(shell pkg-config --cflags gnutls) \
	  -o $@ $< $(shell pkg-config --libs gnutls)

# The wake-up floor: libc only.
build/bench/cm_wake: bench/cm_wake.c
	@mkdir -p build/bench
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -o $@ $< -lm

build/bench/%: bench/%.c $(LIB_SRCS) $(HDRS)
	@mkdir -p build/bench
	$(CC) $(CFLAGS_BASE) -O2 -o $@ $< $(LIB_SRCS) $(PKG_LIBS) -lm -lpthread
