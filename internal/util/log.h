/* The logging layer. Only mains and the server's top layer (rpc) log; library modules return
 * errors instead. Lines go to stderr as "LEVEL message". log_*_errno() return the negative
 * errno they were given so that `return log_error_errno(r, "open '%s': %m", p);` works
 * (errno is set from r before formatting, so %m prints it).
 */
#ifndef JW_UTIL_LOG_H
#define JW_UTIL_LOG_H

enum { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARNING = 1, LOG_LEVEL_INFO = 2, LOG_LEVEL_DEBUG = 3 };

void log_set_level(int level);
int log_get_level(void);
int log_emit(int level, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_error(...)            log_emit(LOG_LEVEL_ERROR, 0, __VA_ARGS__)
#define log_warning(...)          log_emit(LOG_LEVEL_WARNING, 0, __VA_ARGS__)
#define log_info(...)             log_emit(LOG_LEVEL_INFO, 0, __VA_ARGS__)
#define log_debug(...)            log_emit(LOG_LEVEL_DEBUG, 0, __VA_ARGS__)
#define log_error_errno(e, ...)   log_emit(LOG_LEVEL_ERROR, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_emit(LOG_LEVEL_WARNING, (e), __VA_ARGS__)

#endif
