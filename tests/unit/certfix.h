/* Certificate fixtures shared by the auth unit tests: find the repository (JW_REPO_ROOT, the
 * test binary's ancestors, or the cwd), run scripts/gen-certs.sh into a directory, remove it. */
#ifndef JW_TESTS_CERTFIX_H
#define JW_TESTS_CERTFIX_H

#include "util/error.h"
#include "util/rmtree.h"

#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static inline bool certfix_has_script(const char *root)
{
    char p[PATH_MAX];
    int n = snprintf(p, sizeof(p), "%s/scripts/gen-certs.sh", root);
    return n > 0 && (size_t)n < sizeof(p) && access(p, R_OK) == 0;
}

static inline void certfix_find_repo_root(char *root, size_t size)
{
    const char *env = getenv("JW_REPO_ROOT");
    if (env && certfix_has_script(env)) {
        snprintf(root, size, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (char *slash; (slash = strrchr(exe, '/')) && slash != exe;) {
            *slash = '\0';
            if (certfix_has_script(exe)) {
                snprintf(root, size, "%s", exe);
                return;
            }
        }
    }
    if (!getcwd(root, size))
        snprintf(root, size, ".");
}

/* Runs <root>/scripts/gen-certs.sh DIR with its chatter sent to /dev/null. */
static inline int certfix_gen_certs(const char *root, const char *dir)
{
    char script[PATH_MAX + 32];
    snprintf(script, sizeof(script), "%s/scripts/gen-certs.sh", root);
    char *argv[] = {"bash", script, (char *)dir, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int r = posix_spawnp(&pid, "bash", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0) {
        char ebuf[128];
        fprintf(stderr, "spawn bash %s: %s\n", script, jw_strerror(r, ebuf, sizeof(ebuf)));
        return -1;
    }
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s %s failed (status 0x%x)\n", script, dir, status);
        return -1;
    }
    return 0;
}

static inline void certfix_rm_rf(const char *path)
{
    (void)rm_tree_at(AT_FDCWD, path);
}

#endif
