# Fuzzing (tests/fuzz/, see docs/testing.md). Included by the top-level Makefile.
#
#   make fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS="cgroup_parse ..."]
#       builds the libFuzzer targets with clang and runs each for FUZZ_SECONDS on a scratch copy
#       of its committed corpus; fails on the first crash, leak or violated property (the
#       reproducer is left in $(FUZZ_BUILD)/artifacts/<target>/).
#   make fuzz-replay  (part of `make test-unit` through UNIT_EXTRA)
#       runs every committed corpus once through its target: the libFuzzer binaries when clang
#       can link -fsanitize=fuzzer, otherwise the same targets built with $(CC) around
#       tests/fuzz/standalone.c. ASan and UBSan are always on.
#
# Only the product sources a target exercises are compiled (with sanitizer and coverage
# instrumentation of their own), into $(FUZZ_BUILD), so this never touches the main build.

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD ?= $(BUILD)/fuzz
FUZZ_ALL_TARGETS := create_job rpc_messages cgroup_parse auth_pem auth_der util_parse client_format
FUZZ_TARGETS ?= $(FUZZ_ALL_TARGETS)
FUZZ_ENGINE ?= auto

# Product sources per target (the generated protobuf code is linked into every target).
FUZZ_SRCS_create_job := internal/rpc/codec.c internal/job/job.c internal/cgroup/cgroup-parse.c \
	internal/util/error.c
FUZZ_SRCS_rpc_messages := internal/rpc/codec.c internal/util/misc.c internal/util/error.c \
	internal/service/page.c
FUZZ_SRCS_cgroup_parse := internal/cgroup/cgroup-parse.c internal/util/error.c
FUZZ_SRCS_auth_pem := internal/auth/auth.c internal/util/fileio.c internal/util/error.c
FUZZ_SRCS_auth_der := $(FUZZ_SRCS_auth_pem)
FUZZ_SRCS_util_parse := internal/util/parse.c
FUZZ_SRCS_client_format := internal/client/format.c

FUZZ_PKGS := grpc libprotobuf-c openssl
FUZZ_CFLAGS = -std=gnu17 -O1 -g -fno-omit-frame-pointer -D_GNU_SOURCE -fno-strict-aliasing \
	-Wall -Wextra -Wno-unused-parameter -Iinternal -I$(GEN) -Itests/fuzz \
	$(shell pkg-config --cflags $(FUZZ_PKGS) 2>/dev/null)
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_LIBS = -Wl,--as-needed $(shell pkg-config --libs $(FUZZ_PKGS) 2>/dev/null) -lpthread

# $(call FUZZ_ENGINE_RULES,dir,compiler,compile flags,link flags,driver object)
define FUZZ_ENGINE_RULES
$(FUZZ_BUILD)/$(1)/obj/%.o: %.c $(PB_H) | build/.deps-ok
	@mkdir -p $$(dir $$@)
	@echo "  CC      $$@"
	@$(2) $$(FUZZ_CFLAGS) $(3) -MMD -MP -c -o $$@ $$<

$(FUZZ_BUILD)/$(1)/obj/jobworker.pb-c.o: $(PB_C)
	@mkdir -p $$(dir $$@)
	@echo "  CC      $$@"
	@$(2) $$(FUZZ_CFLAGS) $(3) -c -o $$@ $$<

$(foreach t,$(FUZZ_ALL_TARGETS),$(eval $(call FUZZ_LINK_RULE,$(1),$(2),$(4),$(5),$(t))))
endef

# $(call FUZZ_LINK_RULE,dir,compiler,link flags,driver object,target)
define FUZZ_LINK_RULE
$(FUZZ_BUILD)/$(1)/fuzz_$(5): $(FUZZ_BUILD)/$(1)/obj/tests/fuzz/fuzz_$(5).o \
		$(patsubst %.c,$(FUZZ_BUILD)/$(1)/obj/%.o,$(FUZZ_SRCS_$(5))) \
		$(FUZZ_BUILD)/$(1)/obj/jobworker.pb-c.o $(4)
	@echo "  LINK    $$@"
	@$(2) $(3) -o $$@ $$^ $$(FUZZ_LIBS)
endef

$(eval $(call FUZZ_ENGINE_RULES,libfuzzer,$(FUZZ_CC),$(FUZZ_SAN) -fsanitize=fuzzer-no-link,\
	$(FUZZ_SAN) -fsanitize=fuzzer,))
$(eval $(call FUZZ_ENGINE_RULES,standalone,$(CC),$(FUZZ_SAN),$(FUZZ_SAN),\
	$(FUZZ_BUILD)/standalone/obj/tests/fuzz/standalone.o))

FUZZ_LF_BINS = $(patsubst %,$(FUZZ_BUILD)/libfuzzer/fuzz_%,$(FUZZ_TARGETS))
FUZZ_SA_BINS = $(patsubst %,$(FUZZ_BUILD)/standalone/fuzz_%,$(FUZZ_TARGETS))

.PHONY: fuzz fuzz-build fuzz-replay fuzz-replay-libfuzzer fuzz-replay-standalone fuzz-seeds

fuzz-build: $(FUZZ_LF_BINS)

fuzz: $(FUZZ_LF_BINS)
	@tests/fuzz/run.sh fuzz $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The engine is chosen when the recipe runs, so that plain `make` never probes the compiler.
fuzz-replay: $(PB_C) $(PB_H)
	@engine=$(FUZZ_ENGINE); \
	if [ "$$engine" = auto ]; then \
		if tests/fuzz/run.sh have-libfuzzer $(FUZZ_CC); then engine=libfuzzer; else \
			echo "fuzz-replay: $(FUZZ_CC) cannot link -fsanitize=fuzzer, replaying with $(CC) and tests/fuzz/standalone.c"; \
			engine=standalone; fi; \
	fi; \
	$(MAKE) --no-print-directory fuzz-replay-$$engine

fuzz-replay-libfuzzer: $(FUZZ_LF_BINS)
	@tests/fuzz/run.sh replay $(FUZZ_BUILD)/libfuzzer $(FUZZ_TARGETS)

fuzz-replay-standalone: $(FUZZ_SA_BINS)
	@tests/fuzz/run.sh replay $(FUZZ_BUILD)/standalone $(FUZZ_TARGETS)

# Regenerates the synthetic seeds (not the certificates; see tests/fuzz/make-seeds.sh).
fuzz-seeds:
	@tests/fuzz/make-seeds.sh

UNIT_EXTRA += fuzz-replay
