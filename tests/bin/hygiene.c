/* hygiene: prints what a job inherited, from the job's own point of view, without forking (a
 * shell pipeline would show its own transient fds and signal mask):
 *   fds: 0 1 2
 *   SigBlk/SigIgn/NoNewPrivs/Cap* lines of /proc/self/status
 *   sid==pid: yes|no
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 1;
    int self = dirfd(d);
    int fds[64], n = 0;
    for (struct dirent *de; (de = readdir(d)) && n < 64;) {
        if (de->d_name[0] == '.')
            continue;
        int fd = atoi(de->d_name);
        if (fd != self)
            fds[n++] = fd;
    }
    closedir(d);
    for (int i = 0; i < n; i++) /* readdir order is not numeric order */
        for (int j = i + 1; j < n; j++)
            if (fds[j] < fds[i]) {
                int t = fds[i];
                fds[i] = fds[j];
                fds[j] = t;
            }
    printf("fds:");
    for (int i = 0; i < n; i++)
        printf(" %d", fds[i]);
    printf("\n");
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 1;
    char line[256];
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "SigBlk:", 7) == 0 || strncmp(line, "SigIgn:", 7) == 0 ||
            strncmp(line, "NoNewPrivs:", 11) == 0)
            fputs(line, stdout);
    fclose(f);
    printf("sid==pid: %s\n", getsid(0) == getpid() ? "yes" : "no");
    return 0;
}
