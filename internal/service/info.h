/* The host's load as GetServerInfo reports it (service/info.c). */
#ifndef JW_SERVICE_INFO_H
#define JW_SERVICE_INFO_H

#include <stdbool.h>
#include <stdint.h>

/* Load averages (1, 5, 15 min), MemAvailable in bytes and the "some avg10" pressure of cpu,
 * memory and io in percent; -1 for what the host does not offer. */
void service_read_load(double ret_load[3], int64_t *ret_mem_available, double ret_pressure[3]);

#endif
