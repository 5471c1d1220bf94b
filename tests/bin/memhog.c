/* memhog MIB [HOLD_SECONDS]: allocates MIB mebibytes one at a time and writes to every page so
 * the memory is really charged to the caller's cgroup, then holds it HOLD_SECONDS (default 0) and
 * exits 0. The vm tier runs it as a job under memory.max to provoke an OOM kill. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB (1024L * 1024L)

/* Every block is linked from here so the compiler cannot treat the allocations as dead. */
static void *volatile blocks;

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: memhog MIB [HOLD_SECONDS]\n");
        return 2;
    }
    char *end;
    long mib = strtol(argv[1], &end, 10);
    if (*end != '\0' || mib <= 0 || mib > 1024L * 1024L) {
        fprintf(stderr, "memhog: bad size '%s'\n", argv[1]);
        return 2;
    }
    long hold = argc == 3 ? strtol(argv[2], NULL, 10) : 0;

    for (long i = 0; i < mib; i++) {
        char *p = malloc(MIB);
        if (p == NULL) {
            fprintf(stderr, "memhog: malloc failed after %ld MiB\n", i);
            return 1;
        }
        /* Touch every byte: a zero-filled fresh mapping is not charged until written. */
        memset(p, (int)(i & 0xff) | 1, MIB);
        *(void **)p = blocks;
        blocks = p;
    }
    printf("memhog: touched %ld MiB\n", mib);
    fflush(stdout);
    if (hold > 0)
        sleep((unsigned)hold);
    return 0;
}
