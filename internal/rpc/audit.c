#include "rpc/audit.h"

#include "util/log.h"
#include "util/misc.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

char *audit_escape(const char *s, char *buf, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        bool plain = *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\';
        size_t need = plain ? 1 : 4;
        if (o + need + 1 > size)
            break;
        if (plain) {
            buf[o++] = (char)*p;
        } else {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[*p >> 4];
            buf[o++] = hex[*p & 15];
        }
    }
    if (size)
        buf[o < size ? o : size - 1] = '\0';
    return buf;
}

void audit_write(FILE *f, const auth_identity *id, auth_method m, const char *job_id, jw_code code,
                 const char *msg)
{
    char cn[AUTH_CN_MAX * 4], job[160], text[JW_ERROR_MSG_MAX * 2], line[4096];
    audit_escape(id ? id->cn : "", cn, sizeof(cn));
    audit_escape(job_id && *job_id ? job_id : "-", job, sizeof(job));
    audit_escape(msg && *msg ? msg : "", text, sizeof(text));
    snprintf(line, sizeof(line), "audit cn=\"%s\" role=%s method=%s job=%s outcome=%s%s%s%s", cn,
             id ? auth_role_name(id->role) : "none", auth_method_name(m), job, jw_code_name(code),
             text[0] ? " msg=\"" : "", text, text[0] ? "\"" : "");
    if (!f) {
        log_info("%s", line);
        return;
    }
    char ts[64];
    int64_t now = now_realtime_ns();
    time_t sec = (time_t)(now / 1000000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    /* One fprintf per line under the FILE's own lock: lines of concurrent calls never mix. */
    fprintf(f, "%s.%03dZ %s\n", ts, (int)(now / 1000000 % 1000), line);
    fflush(f);
}
