/* Clocks and identifiers. */
#ifndef JW_UTIL_MISC_H
#define JW_UTIL_MISC_H

#include <stdint.h>

#define UUID_STR_LEN 37 /* 36 characters and the NUL */

/* Nanoseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t now_realtime_ns(void);
/* Nanoseconds of CLOCK_MONOTONIC. */
int64_t now_monotonic_ns(void);
/* A random version 4 UUID from getrandom(), lower-case with dashes. */
int uuid4_new(char ret[UUID_STR_LEN]);
/* Whether s has the canonical form of a UUID (any version); used to reject bad ids early. */
int uuid_is_valid(const char *s);

#endif
