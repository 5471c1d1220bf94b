# valgrind tier (see docs/testing.md and tests/valgrind/run.sh): the real server under memcheck
# through a subset of the integration scenarios; fails on any memcheck error or definite leak.
# It needs a build without SANITIZE: valgrind cannot run ASan/TSan binaries.
.PHONY: test-valgrind
test-valgrind: all $(BUILD)/valgrind/pidfd-shim.so
	@if [ -n "$(SANITIZE)" ]; then \
		echo "test-valgrind: run it on a build without SANITIZE (valgrind cannot run sanitized binaries)" >&2; \
		exit 1; fi
	@BUILD=$(BUILD) tests/valgrind/run.sh

# Test-only syscall() wrapper that valgrind 3.19 needs for pidfd_send_signal (see the file).
$(BUILD)/valgrind/pidfd-shim.so: tests/valgrind/pidfd-shim.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(CC) -std=gnu17 -O1 -g -Wall -Wextra -Werror -shared -fPIC -o $@ $< -ldl
