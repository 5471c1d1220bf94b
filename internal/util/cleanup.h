/* Scope-bound cleanup helpers in the style of systemd's fd-util.h.
 *
 * _cleanup_free_ char *p = malloc(...);  freed when p leaves scope
 * _cleanup_close_ int fd = open(...);    closed when fd leaves scope (if >= 0)
 * return TAKE_PTR(p); / return TAKE_FD(fd);   hand ownership to the caller
 *
 * Any other type gets the same with two lines, next to its free function:
 *
 *   JW_DEFINE_POINTER_CLEANUP(BIO, BIO_free_all)        defines BIO_free_allp(BIO **)
 *   #define _cleanup_bio_ _cleanup_(BIO_free_allp)      or write _cleanup_(BIO_free_allp) inline
 *
 * The generated function calls the free function only for a non-NULL pointer, so free
 * functions that do not accept NULL work too.
 */
#ifndef JW_UTIL_CLEANUP_H
#define JW_UTIL_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Runs f(&var) when var leaves scope; f takes a pointer to the variable's type. (Spelled
 * exactly like the interim copy in cgroup/cgroup-internal.h, so both may be included.) */
#define _cleanup_(f) __attribute__((cleanup(f)))

/* Defines `static inline void <fn>p(type **p)` that calls fn(*p) when *p is not NULL. */
#define JW_DEFINE_POINTER_CLEANUP(type, fn)                                                        \
    /* NOLINTNEXTLINE(bugprone-macro-parentheses): a type cannot be parenthesised */               \
    static inline void fn##p(type **p)                                                             \
    {                                                                                              \
        if (*p)                                                                                    \
            fn(*p);                                                                                \
    }

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

#define _cleanup_free_   _cleanup_(jw_freep)
#define _cleanup_close_  _cleanup_(jw_closep)
#define _cleanup_fclose_ _cleanup_(jw_fclosep)

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
