/* Shared helpers of the fuzz targets in tests/fuzz/. Each target defines LLVMFuzzerTestOneInput;
 * it is linked either with libFuzzer (clang -fsanitize=fuzzer) or with standalone.c, which replays
 * files through the same entry point (any compiler). A target signals a broken property with
 * FUZZ_CHECK, which aborts like a sanitizer report does, so both drivers count it as a crash. */
#ifndef JW_TESTS_FUZZ_H
#define JW_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A NUL-terminated copy of the input (the parsers under test take C strings); free() it. */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Whether s[0..len) is well-formed UTF-8 (RFC 3629: no overlongs, surrogates or values above
 * U+10FFFF). When ret_c1 is not NULL it is set when a C1 control (U+0080..U+009F) occurs. */
static inline int fuzz_utf8_valid(const unsigned char *s, size_t len, int *ret_c1)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t v, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 2, v = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3, v = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4, v = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (len - i < n)
            return 0;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            v = (v << 6) | (s[i + k] & 0x3f);
        }
        if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
            return 0;
        if (ret_c1 && v >= 0x80 && v <= 0x9f)
            *ret_c1 = 1;
        i += n;
    }
    return 1;
}

#endif
