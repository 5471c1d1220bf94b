# jobworker build. `make` builds the three binaries into build/<variant>/bin;
# `make test` runs every tier; `make SANITIZE=address,undefined test-unit` the sanitizer build.

SHELL := /bin/bash
CC ?= gcc
SANITIZE ?=
comma := ,
VARIANT := $(if $(SANITIZE),san-$(subst $(comma),-,$(SANITIZE)),release)
BUILD ?= build/$(VARIANT)
GEN := $(BUILD)/gen
PKGS := grpc libprotobuf-c openssl libcap sqlite3 inih

CFLAGS_BASE := -std=gnu17 -O2 -g -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
	-Wmissing-prototypes -Wstrict-prototypes -D_GNU_SOURCE -fno-strict-aliasing \
	-Iinternal -I$(GEN)
ifneq ($(SANITIZE),)
CFLAGS_BASE += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS_SAN := -fsanitize=$(SANITIZE)
endif
# Evaluated once, on first use (after the deps step may have installed the packages).
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(shell pkg-config --cflags $(PKGS) 2>/dev/null))$(PKG_CFLAGS)
PKG_LIBS = $(eval PKG_LIBS := $$(shell pkg-config --libs $(PKGS) 2>/dev/null))$(PKG_LIBS)
CFLAGS_ALL = $(CFLAGS_BASE) $(PKG_CFLAGS) $(CFLAGS)
LDLIBS_ALL = -Wl,--as-needed $(PKG_LIBS) -lpthread $(LDFLAGS_SAN)

PROTO := proto/jobworker/v1/jobworker.proto
PB_C := $(GEN)/jobworker/v1/jobworker.pb-c.c
PB_H := $(GEN)/jobworker/v1/jobworker.pb-c.h

LIB_SRCS := $(sort $(wildcard internal/*/*.c))
LIB_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS)) $(BUILD)/obj/gen/jobworker.pb-c.o
LIB := $(BUILD)/libjobworker.a

BINS := $(BUILD)/bin/jobworker-server $(BUILD)/bin/jobctl $(BUILD)/bin/job-init
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
# Helpers the integration and vm tiers spawn as jobs (writers of exact byte patterns etc.).
TESTBIN_SRCS := $(sort $(wildcard tests/bin/*.c))
TESTBINS := $(patsubst tests/bin/%.c,$(BUILD)/testbin/%,$(TESTBIN_SRCS))

.PHONY: all deps test test-unit test-integration test-vm demo bench fuzz format format-check clean certs
all: deps $(BINS) $(TESTBINS)

# Installs missing Debian packages once; the stamp is removed by `make clean`.
deps: build/.deps-ok
build/.deps-ok: scripts/install-deps.sh scripts/deps.txt
	@if ! scripts/check-deps.sh >/dev/null 2>&1; then scripts/install-deps.sh; fi
	@scripts/check-deps.sh
	@mkdir -p build && touch $@

$(PB_C) $(PB_H) &: $(PROTO) | build/.deps-ok
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) -Iproto $(PROTO)

$(BUILD)/obj/gen/jobworker.pb-c.o: $(PB_C)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS_ALL) -Wno-missing-prototypes -c -o $@ $<

$(BUILD)/obj/%.o: %.c $(PB_H) | build/.deps-ok
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS_ALL) -MMD -MP -c -o $@ $<

$(LIB): $(LIB_OBJS)
	@rm -f $@
	@echo "  AR      $@"
	@ar rcs $@ $^

define BIN_RULE
$(BUILD)/bin/$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard cmd/$(1)/*.c)) $(LIB)
	@mkdir -p $$(dir $$@)
	@echo "  LINK    $$@"
	@$$(CC) $$(CFLAGS_ALL) -o $$@ $$(filter %.o,$$^) $(LIB) $$(LDLIBS_ALL)
endef
$(foreach b,jobworker-server jobctl job-init,$(eval $(call BIN_RULE,$(b))))

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(CFLAGS_ALL) -o $@ $< $(LIB) $(LDLIBS_ALL) -lcmocka

$(BUILD)/testbin/%: tests/bin/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(CC) $(CFLAGS_ALL) -o $@ $< $(LDFLAGS_SAN)

certs: all
	@scripts/gen-certs.sh certs

test: test-unit test-integration test-vm

# Extra unit-tier steps (e.g. fuzz corpus replay) are added by tests/*/*.mk through UNIT_EXTRA.
UNIT_EXTRA :=
-include $(wildcard tests/*/*.mk)
-include bench/bench.mk

test-unit: all $(UNIT_BINS) $(UNIT_EXTRA)
	@BUILD=$(BUILD) tests/run-unit.sh $(UNIT_BINS)

test-integration: all $(UNIT_BINS)
	@BUILD=$(BUILD) tests/integration/run.sh

test-vm: all
	@BUILD=$(BUILD) tests/vm/run.sh

demo: all
	@BUILD=$(BUILD) scripts/demo.sh

bench: all
	@BUILD=$(BUILD) bench/run.sh

FORMAT_SRCS = $(shell find cmd internal tests bench -name '*.[ch]' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRCS)
format-check:
	clang-format --dry-run --Werror $(FORMAT_SRCS)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)

# ---- static analysis and shell lint (docs/testing.md, "Static analysis") ----
# make analyze: clang-tidy over the product sources (internal/, cmd/) with the check list below;
# fails on any finding. It needs the generated protobuf header, hence the normal build first.
CLANG_TIDY ?= clang-tidy
ANALYZE_JOBS ?= 2
ANALYZE_SRCS = $(sort $(wildcard internal/*/*.c cmd/*/*.c))
# Why each exclusion: docs/testing.md.
ANALYZE_CHECKS := -*,clang-analyzer-*,bugprone-*,cert-*,$\
	-clang-analyzer-security.insecureAPI.DeprecatedOrUnsafeBufferHandling,$\
	-clang-analyzer-security.insecureAPI.strcpy,$\
	-clang-analyzer-unix.Malloc,$\
	-bugprone-easily-swappable-parameters,-bugprone-implicit-widening-of-multiplication-result,$\
	-bugprone-reserved-identifier,-cert-dcl37-c,-cert-dcl51-cpp,-bugprone-sizeof-expression,$\
	-cert-err33-c
ANALYZE_CFLAGS = $(filter-out -fsanitize=% -fno-sanitize-recover=%,$(CFLAGS_ALL))
.PHONY: analyze shellcheck
analyze: all
	@command -v $(CLANG_TIDY) >/dev/null || \
		{ echo "analyze: FAILED: $(CLANG_TIDY) is not installed (apt-get install clang-tidy)" >&2; exit 1; }
	@rm -rf $(BUILD)/analyze && mkdir -p $(BUILD)/analyze
	@t0=$$(date +%s); rc=0; \
	printf '%s\n' $(ANALYZE_SRCS) | xargs -P $(ANALYZE_JOBS) -I{} sh -c \
		'$(CLANG_TIDY) --quiet --checks="$(ANALYZE_CHECKS)" --header-filter="(internal|cmd)/" {} \
		-- $(ANALYZE_CFLAGS) >"$(BUILD)/analyze/$$(echo {} | tr / _).log" 2>&1' || rc=$$?; \
	cat $(BUILD)/analyze/*.log | sed 's|^$(CURDIR)/||' | \
		grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error):' | sort -t: -k1,1 -k2,2n -u \
		>$(BUILD)/analyze/findings.txt; \
	n=$$(wc -l <$(BUILD)/analyze/findings.txt); \
	cat $(BUILD)/analyze/findings.txt; \
	echo "analyze: $$n finding(s) in $(words $(ANALYZE_SRCS)) files, $$(($$(date +%s) - t0)) s (logs: $(BUILD)/analyze/)"; \
	if [ "$$n" -ne 0 ] || [ "$$rc" -ne 0 ]; then echo "analyze: FAILED" >&2; exit 1; fi

# make shellcheck: every shell script of scripts/, tests/, bench/ and .ci/run; fails on any finding.
SHELLCHECK_SRCS = $(sort $(shell find scripts tests bench -name '*.sh' 2>/dev/null)) .ci/run
shellcheck:
	@command -v shellcheck >/dev/null || \
		{ echo "shellcheck: FAILED: shellcheck is not installed (apt-get install shellcheck)" >&2; exit 1; }
	@shellcheck --external-sources --source-path=SCRIPTDIR $(SHELLCHECK_SRCS) && \
		echo "shellcheck: $(words $(SHELLCHECK_SRCS)) scripts, no finding"

# make bench-stop-storm: jobctl list latency while eight stops wait out --stop-grace 5s (issue 9).
.PHONY: bench-stop-storm
bench-stop-storm: all
	@BUILD=$(BUILD) bench/stop-storm.sh
