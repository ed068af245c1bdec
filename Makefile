# redqd: the only entry point (STYLE R19). `make run` and `make test` are the two
# commands of the README; both install what they need first (`deps`).
#
#   make            build everything into build/
#   make run        build and start the daemon on 127.0.0.1:8470 (data in ./redqd-data);
#                   PORT=8471 listens elsewhere, ARGS="--log-level debug" adds options
#   make test       unit tests, the same under ASan+UBSan, the learning test
#   make bench      performance against PyTorch and the sgemm peak (docs/BENCHMARKS.md)
#   make bench-learn  REDQ against SAC on MuJoCo through the daemon (hours; resumable)
#   make bench-longrun  10^7 transitions through one agent: disk, restart, ingest (minutes)
#   make bench-cluster  act and ingest through HAProxy against direct to a node
#   make bench-dashboard  the dashboard's load and redraw times (headless Chromium)
#   make clean      remove build/
#
# Objects live under $(BUILD)/obj (or obj-san for SAN=...), with -MMD -MP header tracking.
# CFLAGS from the command line add to the project's flags, never replace them.
#
# The daemon that ships -- $(BUILD)/redqd, which `make run`, `make install` and the
# integration tests use -- is a release build: -DNDEBUG, so that ALWAYS()/NEVER() keep
# their defensive branch and carry on (common/rqd_attrs.h) instead of aborting a server
# many people share. Its objects live apart, under $(BUILD)/obj-rel. The unit, learning
# and fuzz tests, the benchmark and every SAN= build ($(BUILD)/san/redqd included) keep
# their assertions.

BUILD   ?= build
SAN     ?=
V       ?= 0
Q       := $(if $(filter 1,$(V)),,@)
OBJDIR  := $(BUILD)/obj$(if $(SAN),-san)
BINDIR  := $(BUILD)$(if $(SAN),/san)
RELDIR  := $(BUILD)/obj-rel
DAEMON_DIR := $(if $(SAN),$(OBJDIR),$(RELDIR))
OPT     ?= -O2

# Debian packages needed to build; `deps` installs the missing ones. The tests also need
# Python 3 (the integration tests and clients are stdlib only), Chromium (the
# dashboard is checked in a real headless browser), for the client's install test
# and the tutorial's commands python3-venv and python3-matplotlib, and HAProxy (three
# nodes behind the router, tests/integration/test_cluster.py): `deps-test`.
DEB_PKGS := gcc make pkg-config libmicrohttpd-dev libcjson-dev libsqlite3-dev \
            libopenblas-dev libuv1-dev check zlib1g-dev libmujoco-dev libcurl4-openssl-dev \
            libjs-dygraphs
DEB_TEST_PKGS := python3 chromium sqlite3 python3-venv python3-matplotlib haproxy
PC_PKGS  := libcjson openblas zlib sqlite3 libmicrohttpd libuv libcurl

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wwrite-strings -Wno-unused-parameter
SANFLAGS := $(if $(SAN),-fsanitize=$(SAN) -fno-omit-frame-pointer -fno-sanitize-recover=all)
# Recursive (=) so that pkg-config runs when a recipe needs it, after `deps`.
PC_CFLAGS = $(shell pkg-config --cflags $(PC_PKGS) 2>/dev/null)
PC_LIBS   = $(shell pkg-config --libs $(PC_PKGS) 2>/dev/null)
CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   = $(shell pkg-config --libs check 2>/dev/null)
FINAL_CFLAGS = -std=c11 -D_GNU_SOURCE $(DEFS) -pthread $(WARN) $(OPT) -g $(SANFLAGS) \
               $(PC_CFLAGS) $(CHECK_CFLAGS) $(CFLAGS)
FINAL_LDFLAGS = -pthread $(SANFLAGS) $(LDFLAGS)

COMMON_SRC := $(wildcard common/*.c)
REDQ_SRC   := $(wildcard redq/*.c)
STORE_SRC  := $(wildcard storage/*.c)
CORE_SRC   := $(COMMON_SRC) $(REDQ_SRC) $(STORE_SRC)
DAEMON_SRC := $(filter-out daemon/main.c,$(wildcard daemon/*.c)) $(wildcard api/*.c)
# Files linked into the binary as they are (ld -r -b binary): served by api/h_service.c.
EMBED      := docs/openapi.json
# The dashboard and its chart library, dygraphs from Debian's libjs-dygraphs (the page says
# why dygraphs), with the licence the package ships: copied or made under $(GEN) with their
# repository paths, and linked in from there, so that the symbol names do not depend on
# where Debian keeps the files. Served at / and /assets/{name}.
GEN        := $(BUILD)/gen
DYGRAPHS_DIR ?= /usr/share/javascript/dygraphs
DYGRAPHS_COPYRIGHT ?= /usr/share/doc/libjs-dygraphs/copyright
DASH_LIB   := $(GEN)/api/assets/dygraph.min.js $(GEN)/api/assets/dygraph.min.css
DASH_GEN   := $(GEN)/api/assets/dashboard.html $(DASH_LIB) $(GEN)/api/assets/dygraphs-copyright.txt
UNIT_SRC   := $(wildcard tests/unit/*.c) tests/env/pendulum.c api/json_scan.c api/json_in.c
# The daemon's registry without HTTP (build/test_daemon), with allocation failures
# injected through the linker (-Wl,--wrap: tests/daemon/fail_alloc.c).
DTEST_SRC  := $(wildcard tests/daemon/*.c)
LEARN_SRC  := tests/learn/test_pendulum.c tests/env/pendulum.c
BENCH_SRC  := bench/bench_update.c daemon/pool.c
FUZZ_SRC   := tests/fuzz/fuzz_request.c tests/fuzz/fuzz_ckpt.c api/json_in.c api/json_scan.c
# The MuJoCo client (clients/mujoco/): its models are linked in like EMBED; its tests
# (tests/mujoco/) check the environments without a daemon.
MJ_MODELS  := clients/mujoco/models/hopper.xml clients/mujoco/models/halfcheetah.xml
MJ_ENV_SRC := clients/mujoco/env.c common/rqd_err.c
MJ_SRC     := $(MJ_ENV_SRC) clients/mujoco/http.c clients/mujoco/main.c
MJ_TEST_SRC := tests/mujoco/test_envs.c $(MJ_ENV_SRC)

obj = $(patsubst %.c,$(OBJDIR)/%.o,$(1))
CORE_OBJ  := $(call obj,$(CORE_SRC))
UNIT_OBJ  := $(call obj,$(UNIT_SRC))
DTEST_OBJ := $(call obj,$(DTEST_SRC) $(filter-out daemon/main.c,$(wildcard daemon/*.c)))
LEARN_OBJ := $(call obj,$(LEARN_SRC))
BENCH_OBJ := $(call obj,$(BENCH_SRC))
FUZZ_OBJ  := $(call obj,$(FUZZ_SRC) tests/fuzz/test_fuzz.c)
EMBED_OBJ := $(patsubst %,$(OBJDIR)/embed/%.o,$(EMBED)) $(patsubst $(GEN)/%,$(OBJDIR)/embed-gen/%.o,$(DASH_GEN))
# The daemon's own objects and core library: release, or the SAN= build's.
DAEMON_OBJ := $(patsubst %.c,$(DAEMON_DIR)/%.o,daemon/main.c $(DAEMON_SRC))
DAEMON_LIB := $(if $(SAN),$(BINDIR),$(RELDIR))/libredq.a
REL_CORE_OBJ := $(patsubst %.c,$(RELDIR)/%.o,$(CORE_SRC))
MJ_OBJ    := $(call obj,$(MJ_SRC)) $(patsubst %,$(OBJDIR)/embed/%.o,$(MJ_MODELS))
MJ_TEST_OBJ := $(call obj,$(MJ_TEST_SRC)) $(patsubst %,$(OBJDIR)/embed/%.o,$(MJ_MODELS))
ALL_OBJ   := $(CORE_OBJ) $(UNIT_OBJ) $(DTEST_OBJ) $(LEARN_OBJ) $(BENCH_OBJ) $(DAEMON_OBJ) $(FUZZ_OBJ) \
             $(REL_CORE_OBJ) $(MJ_OBJ) $(MJ_TEST_OBJ)

PY ?= /usr/bin/python3

# A bare `make` builds; only `make run` starts the daemon.
.DEFAULT_GOAL := all

.PHONY: all deps deps-test install-pkgs build test test-unit test-large test-san test-learn run bench clean check-deps install uninstall fuzz fuzz-tools soak bench-http bench-learn bench-dashboard bench-longrun bench-cluster

# The daemon in the foreground on 127.0.0.1:$(PORT) with ./redqd-data (Ctrl-C stops it
# cleanly: every agent is checkpointed). ARGS adds options (`build/redqd --help`), e.g.
# make run PORT=8471 ARGS="--data-dir /tmp/other --trainer-threads 1"; a later
# --data-dir wins over the default one.
PORT ?= 8470
ARGS ?=
run: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD)/redqd
	$(BUILD)/redqd --bind 127.0.0.1 --port $(PORT) --data-dir ./redqd-data $(ARGS)

all: build

build: $(BINDIR)/redqd $(BINDIR)/test_unit $(BINDIR)/test_daemon $(BINDIR)/test_learn \
       $(BINDIR)/bench_update $(BINDIR)/redq-mujoco $(BINDIR)/test_mujoco_envs

# The learning core's loops want the vectoriser at full strength.
$(OBJDIR)/redq/%.o $(RELDIR)/redq/%.o: OPT := -O3
$(RELDIR)/%.o: DEFS := -DNDEBUG

define compile
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<$(if $(DEFS), (release))",true)
	$(Q)$(CC) $(FINAL_CFLAGS) -MMD -MP -c $< -o $@
endef
$(OBJDIR)/%.o: %.c
	$(compile)
$(RELDIR)/%.o: %.c
	$(compile)

$(BINDIR)/libredq.a: $(CORE_OBJ)
	@mkdir -p $(@D)
	$(Q)$(AR) rcs $@ $^

$(RELDIR)/libredq.a: $(REL_CORE_OBJ)
	@mkdir -p $(@D)
	$(Q)$(AR) rcs $@ $^

$(OBJDIR)/embed/%.o: %
	@mkdir -p $(@D)
	$(Q)ld -r -b binary -z noexecstack -o $@ $<

$(OBJDIR)/embed-gen/%.o: $(GEN)/%
	@mkdir -p $(@D)
	$(Q)cd $(GEN) && ld -r -b binary -z noexecstack -o $(abspath $@) $*

$(GEN)/api/assets/dygraph.min.%: $(DYGRAPHS_DIR)/dygraph.min.%
	@mkdir -p $(@D)
	$(Q)cp $< $@

# The package's copyright file (MIT), or, where dpkg was told not to install /usr/share/doc,
# a note naming it.
$(GEN)/api/assets/dygraphs-copyright.txt: $(DASH_LIB)
	@mkdir -p $(@D)
	$(Q)if [ -r $(DYGRAPHS_COPYRIGHT) ]; then cp $(DYGRAPHS_COPYRIGHT) $@; else \
	  echo "dygraphs, from Debian's libjs-dygraphs: MIT licence; the full notice is $(DYGRAPHS_COPYRIGHT) of that package." > $@; fi

# The page names its assets /assets/NAME?v=TAG, TAG a hash of their bytes, so that they can
# be cached for a year and a daemon with another library still gets its own.
$(GEN)/api/assets/dashboard.html: api/assets/dashboard.html $(DASH_LIB)
	@mkdir -p $(@D)
	$(Q)tag=$$(cat $(DASH_LIB) | sha256sum | cut -c1-16) && sed "s/@ASSET_TAG@/$$tag/g" $< > $@

$(DYGRAPHS_DIR)/%:
	@echo "missing $@: the dashboard's chart library comes from Debian's libjs-dygraphs (make deps)" >&2
	@exit 1

$(BINDIR)/redqd: $(DAEMON_OBJ) $(EMBED_OBJ) $(DAEMON_LIB)
	@$(if $(Q),echo "  LD      $@",true)
	$(Q)$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(PC_LIBS) -lm

$(BINDIR)/test_unit: $(UNIT_OBJ) $(BINDIR)/libredq.a
	@$(if $(Q),echo "  LD      $@",true)
	$(Q)$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(PC_LIBS) $(CHECK_LIBS) -lm

$(BINDIR)/test_daemon: $(DTEST_OBJ) $(BINDIR)/libredq.a
	@$(if $(Q),echo "  LD      $@",true)
	$(Q)$(CC) $(FINAL_LDFLAGS) -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc -o $@ $^ \
	  $(PC_LIBS) $(CHECK_LIBS) -lm

$(BINDIR)/test_learn: $(LEARN_OBJ) $(BINDIR)/libredq.a
	@$(if $(Q),echo "  LD      $@",true)
	$(Q)$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(PC_LIBS) $(CHECK_LIBS) -lm

$(BINDIR)/test_fuzz: $(FUZZ_OBJ) $(BINDIR)/libredq.a
	@$(if $(Q),echo "  LD      $@",true)
	$(Q)$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(PC_LIBS) $(CHECK_LIBS) -lm

$(BINDIR)/bench_update: $(BENCH_OBJ) $(BINDIR)/libredq.a
	@$(if $(Q),echo "  LD      $@",true)
	$(Q)$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(PC_LIBS) -lm

# The MuJoCo client links libcurl (HTTP) and MuJoCo; Debian's MuJoCo 2.2.2 ships no
# pkg-config file (headers <mujoco/mujoco.h>, library -lmujoco).
$(OBJDIR)/clients/mujoco/http.o: PC_CFLAGS += $(shell pkg-config --cflags libcurl 2>/dev/null)

$(BINDIR)/redq-mujoco: $(MJ_OBJ)
	@$(if $(Q),echo "  LD      $@",true)
	$(Q)$(CC) $(FINAL_LDFLAGS) -o $@ $^ -lmujoco $(shell pkg-config --libs libcurl libcjson 2>/dev/null) -lm

$(BINDIR)/test_mujoco_envs: $(MJ_TEST_OBJ)
	@$(if $(Q),echo "  LD      $@",true)
	$(Q)$(CC) $(FINAL_LDFLAGS) -o $@ $^ -lmujoco $(CHECK_LIBS) -lm

-include $(ALL_OBJ:.o=.d)

# Installs the missing Debian packages; a no-op when all are there.
deps:
	@$(MAKE) --no-print-directory install-pkgs PKGS="$(DEB_PKGS)"

deps-test: deps
	@$(MAKE) --no-print-directory install-pkgs PKGS="$(DEB_TEST_PKGS)"

install-pkgs:
	@missing=""; for p in $(PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	fi

# `make test`: every suite; tests/run_suites.sh lists the skipped tests and why, then
# prints the closing "N passed, N failed, N skipped".
test: deps-test
	$(Q)$(MAKE) --no-print-directory build check-deps
	$(Q)$(MAKE) --no-print-directory SAN=address,undefined $(BUILD)/san/test_unit $(BUILD)/san/test_fuzz \
	  $(BUILD)/san/test_daemon $(BUILD)/san/redqd
	$(Q)tests/run_suites.sh \
	  "unit" "$(BUILD)/test_unit" \
	  "unit (ASan+UBSan)" "$(BUILD)/san/test_unit" \
	  "daemon registry" "$(BUILD)/test_daemon" \
	  "daemon registry (ASan+UBSan)" "$(BUILD)/san/test_daemon" \
	  "fuzz corpus and mutations (ASan+UBSan)" "$(BUILD)/san/test_fuzz" \
	  "learning (Pendulum)" "$(BUILD)/test_learn" \
	  "MuJoCo environments (clients/mujoco)" "$(BUILD)/test_mujoco_envs" \
	  "Python client and HTTP integration (the real daemon)" \
	  "REDQD_BIN=$(BUILD)/redqd $(PY) tests/integration/run.py $(sort $(wildcard tests/clients/test_*.py)) $(sort $(wildcard tests/integration/test_*.py)) tests/crash/test_sigkill.py tests/load/test_load.py" \
	  "HTTP integration against the ASan+UBSan daemon" \
	  "REDQD_BIN=$(BUILD)/san/redqd $(PY) tests/integration/run.py"

# The long fault runs: 200 SIGKILLs under load (make test does 20).
soak: deps-test
	$(Q)$(MAKE) --no-print-directory $(BUILD)/redqd
	$(Q)tests/run_suites.sh "crash soak (200 kills)" \
	  "CRASH_ROUNDS=200 REDQD_BIN=$(BUILD)/redqd $(PY) tests/integration/run.py --timeout 1800 tests/crash/test_sigkill.py"

# The large-agent test at full scale: a 1.4 GB learner state over SQLite's default 1e9-byte
# limit, checkpointed, reloaded, downloaded and imported (3.5-8 min, a 4.3 GB peak; make
# test runs it at 195 MiB under a lowered limit).
test-large: deps-test
	$(Q)$(MAKE) --no-print-directory $(BUILD)/redqd
	$(Q)tests/run_suites.sh "large agent (1.4 GB state)" \
	  "REDQD_TEST_LARGE=full REDQD_BIN=$(BUILD)/redqd $(PY) tests/integration/run.py tests/integration/test_large_agent.py"

test-unit: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD)/test_unit && tests/run_suites.sh "unit" "$(BUILD)/test_unit"

test-san: deps
	$(Q)$(MAKE) --no-print-directory SAN=address,undefined $(BUILD)/san/test_unit && \
	  tests/run_suites.sh "unit (ASan+UBSan)" "$(BUILD)/san/test_unit"

test-learn: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD)/test_learn && tests/run_suites.sh "learning" "$(BUILD)/test_learn"

bench: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD)/bench_update
	$(Q)bench/run_bench.sh
	$(Q)$(MAKE) --no-print-directory bench-http

# Act requests/s and latency with wrk against a bare libmicrohttpd server on the same
# machine, and transitions ingested per second (bench/results/http-latest.md).
bench-http: deps
	@$(MAKE) --no-print-directory install-pkgs PKGS="wrk curl python3"
	$(Q)$(MAKE) --no-print-directory $(BUILD)/redqd $(BUILD)/bench/bare_mhd
	$(Q)BUILD=$(BUILD) REDQD_BIN=$(BUILD)/redqd bench/bench_http.sh

# Three nodes behind HAProxy (deploy/haproxy/redqd.cfg): act and ingest throughput
# through the router against straight to the node, the cluster-wide list, a move
# (bench/results/cluster-latest.md). CLUSTER_ARGS adds options of bench/bench_cluster.py.
CLUSTER_ARGS ?=
bench-cluster: deps
	@$(MAKE) --no-print-directory install-pkgs PKGS="haproxy wrk python3"
	$(Q)$(MAKE) --no-print-directory $(BUILD)/redqd
	$(Q)REDQD_BIN=$(BUILD)/redqd $(PY) bench/bench_cluster.py $(CLUSTER_ARGS)

# The dashboard's load and redraw times with 3 agents x 10^5 stats rows, in headless
# Chromium (bench/results/dashboard-latest.md; about a minute).
bench-dashboard: deps-test
	$(Q)$(MAKE) --no-print-directory $(BUILD)/redqd
	$(Q)$(PY) bench/bench_dashboard.py --redqd $(BUILD)/redqd

# REDQ (the daemon's defaults) against SAC (N 2, UTD 1) on Hopper and HalfCheetah,
# trained through the daemon by build/redq-mujoco: LEARN_STEPS environment steps for
# each of the LEARN_SEEDS, one run at a time (the ensemble split over both cores);
# LEARN_ARGS adds options of bench/bench_learn.py (e.g. --tasks hopper). Hours; not part
# of `make test`. Interrupted, it resumes where it stopped when run
# again (runs and the daemon's data under LEARN_OUT). LEARN_QUICK=1: the pipeline check
# (minutes). Report: bench/results/learn-latest.{md,png,csv} (learn-quick.* for the check).
LEARN_STEPS ?= 50000
LEARN_SEEDS ?= 0,1,2
LEARN_ARGS  ?=
LEARN_OUT   ?= $(BUILD)/bench-learn$(if $(filter 1,$(LEARN_QUICK)),-quick)
bench-learn: deps
	@$(MAKE) --no-print-directory install-pkgs PKGS="python3 python3-matplotlib"
	$(Q)$(MAKE) --no-print-directory $(BUILD)/redqd $(BUILD)/redq-mujoco
	$(Q)$(PY) bench/bench_learn.py --redqd $(BUILD)/redqd --client $(BUILD)/redq-mujoco \
	  --out $(LEARN_OUT) $(if $(filter 1,$(LEARN_QUICK)),--quick,--steps $(LEARN_STEPS) --seeds $(LEARN_SEEDS)) \
	  $(LEARN_ARGS)

# The stored replay buffer as a ring over a long run (issue 10): LONGRUN_TOTAL transitions
# through one agent with buffer_size LONGRUN_BUFFER, the database's size, a restart's time
# and the ingest rate at 10^6, 5 x 10^6 and 10^7 (docs/BENCHMARKS.md). Not part of `make
# test`; LONGRUN_TOTAL=1000000 is a quick look. Report: bench/results/longrun-latest.md.
LONGRUN_TOTAL  ?= 10000000
LONGRUN_BUFFER ?= 100000
bench-longrun: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD)/redqd
	$(Q)$(PY) bench/bench_longrun.py --redqd $(BUILD)/redqd --total $(LONGRUN_TOTAL) \
	  --buffer $(LONGRUN_BUFFER) --out bench/results/longrun-latest.md

$(BUILD)/bench/bare_mhd: bench/bare_mhd.c
	@mkdir -p $(@D)
	$(Q)$(CC) -std=c11 -O2 $(WARN) -pthread -o $@ $< $(shell pkg-config --cflags --libs libmicrohttpd)

# Coverage-guided fuzzing with clang's libFuzzer, each target for FUZZ_SECONDS: the
# request parsers (corpus tests/fuzz/corpus) and the checkpoint loader (tests/fuzz/
# corpus-ckpt). New inputs go to build/fuzz-corpus-<target>, crashes to
# build/fuzz-crash-<target>-*. Undefined behaviour is a finding (-fno-sanitize-recover),
# and so is an input that takes over FUZZ_TIMEOUT seconds.
FUZZ_SECONDS ?= 120
FUZZ_TIMEOUT ?= 30
FUZZ_CC   = clang -std=c11 -D_GNU_SOURCE -DFUZZ_LIBFUZZER -g -O1 \
            -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
            $(shell pkg-config --cflags libcjson zlib openblas)
FUZZ_LIBS = $(shell pkg-config --libs libcjson zlib openblas) -lm -lpthread
FUZZ_DEPS := $(COMMON_SRC) $(REDQ_SRC) $(wildcard common/*.h redq/*.h tests/fuzz/*.h)
define fuzz_run
	@mkdir -p $(BUILD)/fuzz-corpus-$(1)
	$(BUILD)/fuzz_$(1) -max_total_time=$(FUZZ_SECONDS) -timeout=$(FUZZ_TIMEOUT) \
	  -artifact_prefix=$(BUILD)/fuzz-crash-$(1)- $(BUILD)/fuzz-corpus-$(1) $(2)
endef

fuzz: $(BUILD)/fuzz_request $(BUILD)/fuzz_ckpt
	$(call fuzz_run,request,tests/fuzz/corpus)
	$(call fuzz_run,ckpt,tests/fuzz/corpus-ckpt)

fuzz-tools: deps
	@command -v clang >/dev/null && [ -n "$$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a 2>/dev/null)" ] || { \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq clang libclang-rt-14-dev >/dev/null; }

$(BUILD)/fuzz_request: tests/fuzz/fuzz_request.c api/json_in.c api/json_scan.c api/json_in.h \
                       $(FUZZ_DEPS) | fuzz-tools
$(BUILD)/fuzz_ckpt: tests/fuzz/fuzz_ckpt.c $(FUZZ_DEPS) | fuzz-tools
$(BUILD)/fuzz_request $(BUILD)/fuzz_ckpt:
	@mkdir -p $(@D)
	@$(if $(Q),echo "  FUZZCC  $@",true)
	$(Q)$(FUZZ_CC) -o $@ $(filter %.c,$^) $(FUZZ_LIBS)

# The dependency rule of DESIGN.md: redq/ and storage/ know nothing of each other or
# of HTTP; common/ depends on nothing.
check-deps:
	@! grep -n '#include "\.\./\(api\|daemon\|storage\)/' redq/*.[ch] common/*.[ch] 2>/dev/null
	@! grep -n '#include "\.\./\(api\|daemon\|redq\)/' storage/*.[ch] common/*.[ch] 2>/dev/null
	@! grep -n 'microhttpd\|sqlite3\.h' redq/*.[ch] 2>/dev/null
	@# api/ reaches SQLite only through daemon/: no storage handle, no store_* call but
	@# the row types' frees
	@! grep -n 'store \*\|sqlite3\|store_[a-z_]*(' api/*.[ch] 2>/dev/null | grep -v '_rows_free('
	@echo "check-deps: ok"

# `make install PREFIX=/usr/local` (DESTDIR for packaging): the binary, the systemd unit
# with its paths filled in, the example config (never over an existing one), the docs.
PREFIX     ?= /usr/local
BINDIR_I   := $(PREFIX)/bin
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR    ?= $(PREFIX)/lib/systemd/system
DOCDIR     ?= $(PREFIX)/share/doc/redqd

install: $(BUILD)/redqd
	install -D -m 0755 $(BUILD)/redqd $(DESTDIR)$(BINDIR_I)/redqd
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/redqd $(DESTDIR)$(DOCDIR)
	sed -e 's|@BINDIR@|$(BINDIR_I)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	    -e 's|@DOCDIR@|$(DOCDIR)|g' systemd/redqd.service > $(DESTDIR)$(UNITDIR)/redqd.service
	[ -e $(DESTDIR)$(SYSCONFDIR)/redqd/redqd.conf ] || \
	  install -m 0644 systemd/redqd.conf.example $(DESTDIR)$(SYSCONFDIR)/redqd/redqd.conf
	install -m 0644 systemd/redqd.conf.example $(DESTDIR)$(SYSCONFDIR)/redqd/redqd.conf.example
	install -m 0644 docs/*.md docs/openapi.json $(DESTDIR)$(DOCDIR)/

# Removes what install put there, except a config the administrator may have edited.
uninstall:
	rm -f $(DESTDIR)$(BINDIR_I)/redqd $(DESTDIR)$(UNITDIR)/redqd.service
	rm -f $(DESTDIR)$(SYSCONFDIR)/redqd/redqd.conf.example
	rm -rf $(DESTDIR)$(DOCDIR)

clean:
	rm -rf $(BUILD)
