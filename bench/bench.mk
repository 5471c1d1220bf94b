# Benchmark helpers (bench/*.c), linked against the library like the programs; `make bench`
# builds them before bench/run.sh runs. Included by the Makefile.
BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))

bench: $(BENCH_BINS)

$(BUILD)/bench/%: bench/%.c $(LIB) $(PB_H)
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(CC) $(CFLAGS_ALL) -o $@ $< $(LIB) $(LDLIBS_ALL)
