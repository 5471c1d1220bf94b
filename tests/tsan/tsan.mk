# ThreadSanitizer pass over the store and the streaming/supervisor engine (see docs/testing.md).
#
#   make test-tsan [TSAN_BUILD=...]
#
# Builds the library and tests/unit/test_store.c, tests/unit/test_engine.c with
# SANITIZE=thread into $(TSAN_BUILD) (a recursive make, so every object is instrumented), links
# them with tests/tsan/clone-shim.c (why: see that file) and runs them. job-init and the test
# helper programs come from the normal build ($(BUILD)): they are single-threaded and TSan has
# nothing to say about them. Any TSan report fails the run (halt_on_error).

TSAN_BUILD ?= $(BUILD)-tsan
TSAN_TESTS := test_store test_engine test_service test_listenwatch
TSAN_OPTIONS_DEFAULT := halt_on_error=1 second_deadlock_stack=1 history_size=4

.PHONY: test-tsan tsan-bins

test-tsan: all
	@$(MAKE) --no-print-directory BUILD=$(TSAN_BUILD) SANITIZE=thread \
		$(patsubst %,$(TSAN_BUILD)/tsan-tests/%,$(TSAN_TESTS))
	@TSAN_OPTIONS="$(TSAN_OPTIONS_DEFAULT) $${TSAN_OPTIONS:-}" JW_JOB_INIT=$(BUILD)/bin/job-init \
		JW_TESTBIN=$(BUILD)/testbin BUILD=$(TSAN_BUILD) \
		tests/tsan/run.sh $(patsubst %,$(TSAN_BUILD)/tsan-tests/%,$(TSAN_TESTS))

# These two rules only make sense in the SANITIZE=thread sub-make above, where BUILD is
# $(TSAN_BUILD) and CFLAGS_ALL / LDLIBS_ALL carry -fsanitize=thread.
$(BUILD)/tsan-tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB) $(BUILD)/obj/tests/tsan/clone-shim.o
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(CFLAGS_ALL) -o $@ $< $(BUILD)/obj/tests/tsan/clone-shim.o $(LIB) $(LDLIBS_ALL) \
		-lcmocka -ldl

# Not instrumented: it must run before TSan's own view of the child exists.
$(BUILD)/obj/tests/tsan/clone-shim.o: tests/tsan/clone-shim.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) -std=gnu17 -O1 -g -Wall -Wextra -Werror -c -o $@ $<
