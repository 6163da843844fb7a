/* tools/bench: open + read + close a file N times, or stat it N times, and print ns per
 * operation. Usage: readloop read|stat N PATH */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char *argv[])
{
    if (argc != 4)
        return 2;
    int do_stat = strcmp(argv[1], "stat") == 0;
    long n = strtol(argv[2], NULL, 10);
    const char *path = argv[3];
    char buf[65536];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        if (do_stat) {
            struct stat st;
            if (stat(path, &st) < 0) {
                perror(path);
                return 1;
            }
            continue;
        }
        int fd = open(path, O_RDONLY);
        if (fd < 0) {
            perror(path);
            return 1;
        }
        while (read(fd, buf, sizeof(buf)) > 0)
            ;
        close(fd);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)n;
    printf("%.0f\n", ns);
    return 0;
}
