/* Scope-bound cleanup helpers in the style of systemd's fd-util.h.
 *
 * _cleanup_free_ char *p = malloc(...);  freed when p leaves scope
 * _cleanup_close_ int fd = open(...);    closed when fd leaves scope (if >= 0)
 * return TAKE_PTR(p); / return TAKE_FD(fd);   hand ownership to the caller
 */
#ifndef JW_UTIL_CLEANUP_H
#define JW_UTIL_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void jw_freep(void *p)
{
    free(*(void **)p);
}
static inline void jw_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}
static inline void jw_fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

#define _cleanup_free_   __attribute__((cleanup(jw_freep)))
#define _cleanup_close_  __attribute__((cleanup(jw_closep)))
#define _cleanup_fclose_ __attribute__((cleanup(jw_fclosep)))

#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _tp = (p);                                                                   \
        (p) = NULL;                                                                                \
        _tp;                                                                                       \
    })
#define TAKE_FD(fd)                                                                                \
    ({                                                                                             \
        int _tfd = (fd);                                                                           \
        (fd) = -1;                                                                                 \
        _tfd;                                                                                      \
    })

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
