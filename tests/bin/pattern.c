/* pattern SIZE [SEED]: writes SIZE bytes of a deterministic pseudo-random pattern (every byte
 * value occurs) to stdout, no trailing newline. `pattern --check SIZE [SEED] < FILE` verifies a
 * copy and exits 0 only when it is byte-exact. `pattern --split SIZE SEED_OUT SEED_ERR` writes
 * SIZE bytes of SEED_OUT's pattern to stdout and SIZE of SEED_ERR's to stderr, alternating in
 * 64 KiB blocks (each stream checks with --check SIZE SEED). Tests and benchmarks use it to prove
 * that output arrived complete and unaltered. Sizes accept K, M and G suffixes. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t parse(const char *s)
{
    char *end;
    uint64_t v = strtoull(s, &end, 10);
    switch (*end) {
    case 'K': return v << 10;
    case 'M': return v << 20;
    case 'G': return v << 30;
    default: return v;
    }
}

static void fill(uint8_t *buf, size_t n, uint64_t *state)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        size_t k = n - i < 8 ? n - i : 8;
        memcpy(buf + i, &x, k);
    }
}

static int write_all(int fd, const uint8_t *buf, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, buf + off, n - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        off += (size_t)w;
    }
    return 0;
}

static int split(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: pattern --split SIZE SEED_OUT SEED_ERR\n");
        return 2;
    }
    uint64_t size = parse(argv[2]);
    uint64_t st[2] = {parse(argv[3]) | 1, parse(argv[4]) | 1};
    static uint8_t buf[1 << 16];
    for (uint64_t done = 0; done < size;) {
        size_t n = size - done < sizeof(buf) ? (size_t)(size - done) : sizeof(buf);
        for (int s = 0; s < 2; s++) {
            fill(buf, n, &st[s]);
            if (write_all(1 + s, buf, n))
                return 1;
        }
        done += n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--split") == 0)
        return split(argc, argv);
    int check = argc > 1 && strcmp(argv[1], "--check") == 0;
    if (argc < 2 + check) {
        fprintf(stderr, "usage: pattern [--check] SIZE [SEED]\n");
        return 2;
    }
    uint64_t size = parse(argv[1 + check]);
    uint64_t state = argc > 2 + check ? parse(argv[2 + check]) | 1 : 0x9e3779b97f4a7c15ULL;
    static uint8_t buf[1 << 16], got[1 << 16];
    uint64_t done = 0;
    while (done < size) {
        size_t n = size - done < sizeof(buf) ? (size_t)(size - done) : sizeof(buf);
        fill(buf, n, &state);
        if (check) {
            size_t have = 0;
            while (have < n) {
                ssize_t r = read(0, got + have, n - have);
                if (r <= 0) {
                    fprintf(stderr, "pattern: short input at byte %llu\n",
                            (unsigned long long)(done + have));
                    return 1;
                }
                have += (size_t)r;
            }
            if (memcmp(buf, got, n) != 0) {
                size_t i = 0;
                while (buf[i] == got[i])
                    i++;
                fprintf(stderr, "pattern: mismatch at byte %llu\n", (unsigned long long)(done + i));
                return 1;
            }
        } else if (write_all(1, buf, n)) {
            return 1;
        }
        done += n;
    }
    if (check) {
        char extra;
        if (read(0, &extra, 1) > 0) {
            fprintf(stderr, "pattern: input longer than %llu bytes\n", (unsigned long long)size);
            return 1;
        }
    }
    return 0;
}
