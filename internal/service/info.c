/* The host's load for GetServerInfo, read from /proc: load average, available memory and the
 * pressure stall information. */
#include "service/info.h"

#include <stdio.h>
#include <string.h>

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
        if (strncmp(line, "some ", 5) == 0 && sscanf(line, "some avg10=%lf", &v) != 1)
            v = -1;
    }
    fclose(f);
    return v;
}

void service_read_load(double ret_load[3], int64_t *ret_mem_available, double ret_pressure[3])
{
    ret_load[0] = ret_load[1] = ret_load[2] = -1;
    FILE *f = fopen("/proc/loadavg", "re");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &ret_load[0], &ret_load[1], &ret_load[2]) != 3)
            ret_load[0] = ret_load[1] = ret_load[2] = -1;
        fclose(f);
    }
    *ret_mem_available = -1;
    f = fopen("/proc/meminfo", "re");
    if (f) {
        char line[256];
        long long kib;
        while (fgets(line, sizeof(line), f)) {
            if (sscanf(line, "MemAvailable: %lld kB", &kib) == 1) {
                *ret_mem_available = (int64_t)kib * 1024;
                break;
            }
        }
        fclose(f);
    }
    ret_pressure[0] = pressure_some_avg10("cpu");
    ret_pressure[1] = pressure_some_avg10("memory");
    ret_pressure[2] = pressure_some_avg10("io");
}
