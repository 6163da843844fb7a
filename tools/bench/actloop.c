/* Times pause/resume through libvirt's API and through the tree's state file, interleaved
 * pair by pair so that both see the same machine (TCG guests make libvirt's own time drift):
 *   actloop URI DOMAIN STATEFILE N   -> "median_virt_ns median_tree_ns" per action
 */
#include <fcntl.h>
#include <libvirt/libvirt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int tree_action(const char *path, const char *word)
{
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, word, strlen(word));
    close(fd);
    return n == (ssize_t)strlen(word) ? 0 : -1;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: actloop URI DOMAIN STATEFILE N\n");
        return 2;
    }
    int n = atoi(argv[4]);
    virConnectPtr c = virConnectOpen(argv[1]);
    virDomainPtr d = c ? virDomainLookupByName(c, argv[2]) : NULL;
    long long *tv = calloc((size_t)n, sizeof(*tv)), *tt = calloc((size_t)n, sizeof(*tt));
    if (!d || !tv || !tt || n < 1)
        return 1;
    for (int i = 0; i < n; i++) {
        long long t0 = now_ns();
        if (virDomainSuspend(d) < 0 || virDomainResume(d) < 0)
            return 1;
        long long t1 = now_ns();
        if (tree_action(argv[3], "pause\n") < 0 || tree_action(argv[3], "resume\n") < 0) {
            fprintf(stderr, "actloop: tree action failed at %d\n", i);
            return 1;
        }
        long long t2 = now_ns();
        tv[i] = (t1 - t0) / 2;
        tt[i] = (t2 - t1) / 2;
    }
    qsort(tv, (size_t)n, sizeof(*tv), cmp_ll);
    qsort(tt, (size_t)n, sizeof(*tt), cmp_ll);
    printf("%lld %lld\n", tv[n / 2], tt[n / 2]);
    virDomainFree(d);
    virConnectClose(c);
    free(tv);
    free(tt);
    return 0;
}
