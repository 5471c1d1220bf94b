/* One audit line per RPC: who (certificate CN and role), what (method, job), the outcome. */
#ifndef JW_RPC_AUDIT_H
#define JW_RPC_AUDIT_H

#include "auth/auth.h"
#include "util/error.h"

#include <stddef.h>
#include <stdio.h>

/* Writes the line to `f` with a UTC timestamp, or through the log (stderr) when f is NULL.
 * Every client-controlled byte (CN, job id, message) is escaped: '"', '\\', control bytes, DEL
 * and bytes >= 0x80 become \xHH, so one record is always exactly one line that cannot be forged.
 * `id` NULL means the caller had no usable certificate. Thread-safe. */
void audit_write(FILE *f, const auth_identity *id, auth_method m, const char *job_id, jw_code code,
                 const char *msg);

/* The escaping used above, into buf (always NUL-terminated; cut at size). Returns buf. */
char *audit_escape(const char *s, char *buf, size_t size);

#endif
