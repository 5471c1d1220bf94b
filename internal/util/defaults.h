/* Every default of the server, defined once. The flags' help text prints these, the daemon
 * starts from them, and a module that is given 0 for a setting falls back to the same value. */
#ifndef JW_UTIL_DEFAULTS_H
#define JW_UTIL_DEFAULTS_H

/* The version this tree builds (GetServerInfo, --version). */
#define JW_VERSION "0.6.0"
#if defined(__clang__)
#define JW_COMPILER "clang"
#else
#define JW_COMPILER "gcc"
#endif

#define JW_DEFAULT_LISTEN                 "0.0.0.0:50051"
#define JW_DEFAULT_CERT                   "certs/server.crt"
#define JW_DEFAULT_KEY                    "certs/server.key"
#define JW_DEFAULT_CA                     "certs/ca.crt"
#define JW_DEFAULT_CONFIG                 "/etc/jobworker/server.conf"
#define JW_DEFAULT_DATA_DIR               "/var/lib/jobworker"
#define JW_DEFAULT_CPU_PERCENT            100 /* one core */
#define JW_DEFAULT_MEMORY_BYTES           (512LL * 1024 * 1024)
#define JW_DEFAULT_MEMORY_TEXT            "512M"
#define JW_DEFAULT_STOP_GRACE_MS          100
#define JW_DEFAULT_MAX_JOBS               100000
#define JW_DEFAULT_MAX_STREAMS            1024
#define JW_DEFAULT_MAX_STREAMS_PER_JOB    256
#define JW_DEFAULT_MAX_STREAMS_PER_CLIENT 256
#define JW_DEFAULT_MAX_OUTPUT_BYTES       (1LL << 30)
#define JW_DEFAULT_MAX_OUTPUT_TEXT        "1G"
#define JW_DEFAULT_WORKERS                4
#define JW_DEFAULT_CHUNK_BYTES            (128 * 1024)
#define JW_DEFAULT_JOB_USER               "nobody"
/* 0x70000000 + 64 Ki: outside systemd's system, dynamic (61184-65519), container
 * (524288-1879048191) and foreign (0x7FFE0000...) ranges, below 2^31. */
#define JW_DEFAULT_JOB_UID_RANGE "1879048192-1879113727"
#define JW_DEFAULT_NETWORK       "host"

/* History (store/store.h): finished jobs are kept until one of these is exceeded. */
#define JW_DEFAULT_RETAIN_AGE_MS       (7LL * 24 * 3600 * 1000)
#define JW_DEFAULT_RETAIN_AGE_TEXT     "7d"
#define JW_DEFAULT_RETAIN_OUTPUT_BYTES (10LL << 30)
#define JW_DEFAULT_RETAIN_OUTPUT_TEXT  "10G"
#define JW_DEFAULT_RETAIN_JOBS         1000000
/* Admission (sched/queue.h): max running = CPUs x 4, cpu capacity = CPUs x 200 %, memory
 * capacity = MemTotal - 10 % (or the server cgroup's memory.max when lower). */
#define JW_DEFAULT_RUNNING_PER_CPU      4
#define JW_DEFAULT_CPU_PCT_PER_CPU      200
#define JW_DEFAULT_MAX_QUEUED           10000
#define JW_DEFAULT_RETAIN_INTERVAL_MS   60000
#define JW_DEFAULT_RETAIN_INTERVAL_TEXT "1m"
#define JW_DEFAULT_DB_SYNC              "normal"

#endif
