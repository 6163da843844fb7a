/* Cloud-init: the NoCloud ISO image built from the three files by genisoimage or xorriso, run
 * without a shell in a temporary directory, with a time limit; and the hash that tells whether
 * the files changed since the last build. */
#include "cloudinit_priv.h"
#include "hx_util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

void hx_ci_tmp_clear(hx_ci_tmp *t)
{
    if (!t->dir[0])
        return;
    static const char *const names[] = {"user-data", "meta-data", "network-config", "cidata.iso",
                                        "tool.log"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", t->dir, names[i]);
        unlink(p);
    }
    rmdir(t->dir);
    t->dir[0] = '\0';
}

/* ---- building the ISO ---- */

/* SHA-256 (hex) of the files as they go on the ISO: name, length, bytes of each. */
int hx_ci_hash(const hx_ci_set *s, char hex[65])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (int i = 0; ok && i < HX_CI_N; i++) {
        unsigned long long l = s->len[i];
        ok = EVP_DigestUpdate(ctx, hx_ci_files[i], strlen(hx_ci_files[i]) + 1) &&
             EVP_DigestUpdate(ctx, &l, sizeof(l)) && EVP_DigestUpdate(ctx, s->data[i], s->len[i]);
    }
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -EIO;
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* The ISO tool's full path: genisoimage, else xorriso (as mkisofs). */
static int hx_ci_find_tool(char *path, size_t size, int *xorriso)
{
    const char *env = getenv("PATH");
    static const char *const tools[] = {"genisoimage", "xorriso"};
    for (size_t t = 0; t < 2; t++) {
        const char *p = env && *env ? env : "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
        while (*p) {
            size_t n = strcspn(p, ":");
            if (n > 0 && snprintf(path, size, "%.*s/%s", (int)n, p, tools[t]) < (int)size &&
                access(path, X_OK) == 0) {
                *xorriso = t == 1;
                return 0;
            }
            p += n;
            if (*p == ':')
                p++;
        }
    }
    return -ENOENT;
}

static int hx_ci_write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        off += (size_t)w;
    }
    return close(fd) < 0 ? -errno : 0;
}

/* Reads a whole file (at most max bytes); NULL on failure. */
static char *hx_ci_slurp(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    hx_autobuf hx_buf b = {0};
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || b.len + (size_t)n > max || hx_buf_append(&b, chunk, (size_t)n) < 0) {
            if (n == 0)
                break;
            close(fd);
            return NULL;
        }
    }
    close(fd);
    if (!b.data && hx_buf_append(&b, "", 0) < 0)
        return NULL;
    return hx_buf_steal(&b, len);
}

/* Runs argv (no shell) with stdout and stderr into logpath, for at most timeout_ms.
 * 0, or -errno with *why a malloc'd reason. */
static int hx_ci_run(char *const argv[], const char *logpath, int timeout_ms, char **why)
{
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa) != 0) {
        *why = strdup("out of memory");
        return -ENOMEM;
    }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    /* The daemon's own descriptors (/dev/fuse, libvirt sockets) stay out of the child. */
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    pid_t pid;
    int e = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0) {
        if (asprintf(why, "cannot run %s: %s", argv[0], strerror(e)) < 0)
            *why = NULL;
        return -EIO;
    }
    long long deadline = hx_now_mono_ns() + (long long)timeout_ms * 1000000;
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            if (asprintf(why, "cannot wait for %s: %s", argv[0], strerror(errno)) < 0)
                *why = NULL;
            return -EIO;
        }
        if (hx_now_mono_ns() > deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            if (asprintf(why, "%s did not finish within %d ms", argv[0], timeout_ms) < 0)
                *why = NULL;
            return -EIO;
        }
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    size_t n = 0;
    hx_autofree char *out = hx_ci_slurp(logpath, 1 << 20, &n);
    /* Its last line says why. */
    while (out && n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    const char *last = out ? strrchr(out, '\n') : NULL;
    last = last ? last + 1 : out ? out : "";
    if (asprintf(why, "%s %s %d: %.200s", argv[0], WIFEXITED(status) ? "exited with" : "killed by",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), last) < 0)
        *why = NULL;
    return -EIO;
}

/* Builds the NoCloud ISO of s in tmp; the image's bytes in *iso. */
int hx_ci_build(const hx_ci_set *s, hx_ci_tmp *tmp, char **iso, size_t *iso_len, char **why)
{
    char tool[512];
    int xorriso = 0;
    if (hx_ci_find_tool(tool, sizeof(tool), &xorriso) < 0) {
        *why = strdup("neither genisoimage nor xorriso is installed on the daemon's host");
        return -EIO;
    }
    const char *td = getenv("TMPDIR");
    snprintf(tmp->dir, sizeof(tmp->dir), "%s/horcrux-ci-XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(tmp->dir)) {
        int e = errno;
        tmp->dir[0] = '\0';
        if (asprintf(why, "cannot make a temporary directory: %s", strerror(e)) < 0)
            *why = NULL;
        return -EIO;
    }
    char paths[HX_CI_N][512], out[512], log[512];
    char *argv[32];
    int a = 0;
    argv[a++] = tool;
    if (xorriso) {
        argv[a++] = "-as";
        argv[a++] = "mkisofs";
    }
    snprintf(out, sizeof(out), "%s/cidata.iso", tmp->dir);
    snprintf(log, sizeof(log), "%s/tool.log", tmp->dir);
    /* NoCloud finds the data by the volume label "cidata"; Joliet and Rock Ridge keep the
     * lower-case names with their dash. */
    argv[a++] = "-quiet";
    argv[a++] = "-output";
    argv[a++] = out;
    argv[a++] = "-volid";
    argv[a++] = "cidata";
    argv[a++] = "-joliet";
    argv[a++] = "-rock";
    for (int i = 0; i < HX_CI_N; i++) {
        /* network-config only when set: an empty one would tell cloud-init "no network". */
        if (i == HX_CI_NET && s->len[i] == 0)
            continue;
        snprintf(paths[i], sizeof(paths[i]), "%s/%s", tmp->dir, hx_ci_files[i]);
        int r = hx_ci_write_file(paths[i], s->data[i], s->len[i]);
        if (r < 0) {
            if (asprintf(why, "cannot write %s: %s", paths[i], strerror(-r)) < 0)
                *why = NULL;
            return -EIO;
        }
        argv[a++] = paths[i];
    }
    argv[a] = NULL;
    int r = hx_ci_run(argv, log, HX_CI_TOOL_TIMEOUT_MS, why);
    if (r < 0)
        return r;
    *iso = hx_ci_slurp(out, 64u << 20, iso_len);
    if (!*iso || *iso_len == 0) {
        if (asprintf(why, "%s made no image", tool) < 0)
            *why = NULL;
        return -EIO;
    }
    return 0;
}
