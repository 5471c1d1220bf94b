/* Parsers for user-facing values: sizes ("64M"), durations ("1m30s"), integers. Each returns 0
 * and writes *ret only on success, -EINVAL for malformed text and -ERANGE for overflow. */
#ifndef JW_UTIL_PARSE_H
#define JW_UTIL_PARSE_H

#include <stdint.h>

/* Decimal bytes with an optional binary suffix K, M, G, T (also KiB/MiB/..., case-insensitive). */
int parse_size(const char *s, int64_t *ret);
/* Plain seconds ("30") or a sequence of number+unit with units ms, s, m, h, d ("1m30s", "7d"). */
int parse_duration_ms(const char *s, int64_t *ret);
/* A decimal integer within [min, max]. */
int parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret);

#endif
