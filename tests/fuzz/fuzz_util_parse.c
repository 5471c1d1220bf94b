/* The parsers of user-facing values (internal/util/parse.h): sizes, durations and bounded
 * integers, as they come from server flags and jobctl options.
 *
 * Properties: only 0, -EINVAL or -ERANGE; *ret written only on success; results in range;
 * a plain decimal parses to the same value whichever parser reads it. */
#include "fuzz.h"

#include "util/parse.h"

#include <errno.h>
#include <inttypes.h>

#define SENTINEL (-7)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_strndup(data, size);
    int64_t size_v = SENTINEL, dur_v = SENTINEL, int_v = SENTINEL;

    int rs = parse_size(s, &size_v);
    FUZZ_CHECK(rs == 0 || rs == -EINVAL || rs == -ERANGE);
    FUZZ_CHECK(rs == 0 ? size_v >= 0 : size_v == SENTINEL);

    int rd = parse_duration_ms(s, &dur_v);
    FUZZ_CHECK(rd == 0 || rd == -EINVAL || rd == -ERANGE);
    FUZZ_CHECK(rd == 0 ? dur_v >= 0 : dur_v == SENTINEL);

    int ri = parse_int64(s, INT64_MIN, INT64_MAX, &int_v);
    FUZZ_CHECK(ri == 0 || ri == -EINVAL || ri == -ERANGE);
    if (ri < 0)
        FUZZ_CHECK(int_v == SENTINEL);

    /* Bounds are honoured. */
    int64_t b = SENTINEL;
    int rb = parse_int64(s, -100, 100, &b);
    FUZZ_CHECK(rb == 0 ? (b >= -100 && b <= 100) : b == SENTINEL);
    if (ri == 0)
        FUZZ_CHECK((int_v >= -100 && int_v <= 100) ? (rb == 0 && b == int_v) : rb == -ERANGE);

    /* A plain decimal number: bytes for parse_size, seconds for parse_duration_ms. */
    size_t n = strlen(s);
    if (n > 0 && strspn(s, "0123456789") == n) {
        FUZZ_CHECK(ri == 0 || ri == -ERANGE);
        if (ri == 0) {
            FUZZ_CHECK(rs == 0 && size_v == int_v);
            if (int_v <= INT64_MAX / 3600000)
                FUZZ_CHECK(rd == 0 && dur_v == int_v * 1000);
        }
    }
    /* Canonical forms parse back to the same value. */
    if (rs == 0) {
        char buf[32];
        int64_t back = SENTINEL;
        snprintf(buf, sizeof(buf), "%" PRId64, size_v);
        FUZZ_CHECK(parse_size(buf, &back) == 0 && back == size_v);
    }
    if (rd == 0) {
        /* parse_duration_ms bounds every number by the range of hours whatever its unit, so the
         * canonical form spells out hours, minutes, seconds and milliseconds. */
        char buf[96];
        int64_t back = SENTINEL;
        snprintf(buf, sizeof(buf), "%" PRId64 "h%" PRId64 "m%" PRId64 "s%" PRId64 "ms",
                 dur_v / 3600000, dur_v / 60000 % 60, dur_v / 1000 % 60, dur_v % 1000);
        FUZZ_CHECK(parse_duration_ms(buf, &back) == 0 && back == dur_v);
    }
    free(s);
    return 0;
}
