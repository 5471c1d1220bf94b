/* The host's load for GetServerInfo, read from /proc: load average, available memory and the
 * pressure stall information. */
#include "service/info.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The number that starts at *p (after blanks); false when there is none. Moves *p past it. */
static bool next_double(const char **p, double *ret)
{
    char *end;
    errno = 0;
    double v = strtod(*p, &end);
    if (end == *p || errno != 0)
        return false;
    *p = end;
    *ret = v;
    return true;
}

/* "some avg10=1.23 ..." of /proc/pressure/<what>; -1 when the kernel offers none. */
static double pressure_some_avg10(const char *what)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/pressure/%s", what);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    double v = -1;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        static const char prefix[] = "some avg10=";
        const char *p = line;
        if (strncmp(p, prefix, sizeof(prefix) - 1) != 0)
            continue;
        p += sizeof(prefix) - 1;
        if (!next_double(&p, &v))
            v = -1;
    }
    fclose(f);
    return v;
}

void service_read_load(double ret_load[3], int64_t *ret_mem_available, double ret_pressure[3])
{
    ret_load[0] = ret_load[1] = ret_load[2] = -1;
    char line[256];
    FILE *f = fopen("/proc/loadavg", "re");
    if (f) {
        const char *p = line;
        if (!fgets(line, sizeof(line), f) || !next_double(&p, &ret_load[0]) ||
            !next_double(&p, &ret_load[1]) || !next_double(&p, &ret_load[2]))
            ret_load[0] = ret_load[1] = ret_load[2] = -1;
        fclose(f);
    }
    *ret_mem_available = -1;
    f = fopen("/proc/meminfo", "re");
    if (f) {
        static const char key[] = "MemAvailable:";
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, key, sizeof(key) - 1) != 0)
                continue;
            char *end;
            errno = 0;
            long long kib = strtoll(line + sizeof(key) - 1, &end, 10);
            if (end != line + sizeof(key) - 1 && errno == 0 && kib >= 0)
                *ret_mem_available = (int64_t)kib * 1024;
            break;
        }
        fclose(f);
    }
    ret_pressure[0] = pressure_some_avg10("cpu");
    ret_pressure[1] = pressure_some_avg10("memory");
    ret_pressure[2] = pressure_some_avg10("io");
}
