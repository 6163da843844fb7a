/* Times pause/resume pairs: through libvirt's API directly, or through the tree's state file.
 *   actloop virt URI DOMAIN N     -> ns per action (virDomainSuspend / virDomainResume)
 *   actloop tree STATEFILE N      -> ns per action (open, write "pause"/"resume", close)
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

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: actloop virt URI DOMAIN N | actloop tree STATEFILE N\n");
        return 2;
    }
    int virt = strcmp(argv[1], "virt") == 0;
    int n = atoi(argv[virt ? 4 : 3]);
    virConnectPtr c = NULL;
    virDomainPtr d = NULL;
    if (virt) {
        c = virConnectOpen(argv[2]);
        d = c ? virDomainLookupByName(c, argv[3]) : NULL;
        if (!d)
            return 1;
    }
    long long t0 = now_ns();
    for (int i = 0; i < n; i++) {
        int r = virt ? virDomainSuspend(d) : tree_action(argv[2], "pause\n");
        if (r == 0)
            r = virt ? virDomainResume(d) : tree_action(argv[2], "resume\n");
        if (r < 0) {
            fprintf(stderr, "actloop: action failed at %d\n", i);
            return 1;
        }
    }
    printf("%.0f\n", (double)(now_ns() - t0) / (2.0 * n));
    if (d)
        virDomainFree(d);
    if (c)
        virConnectClose(c);
    return 0;
}
