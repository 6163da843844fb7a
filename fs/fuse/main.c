/* horcruxfs: mounts the Horcrux tree.
 *
 *   horcruxfs [-f] [-d] [-o config=FILE,loglevel=LEVEL,allow_other,...] [SOURCE] MOUNTPOINT
 *
 * SOURCE is what mount.fuse3 passes from the first field of /etc/fstab; it is ignored unless it
 * names a file and no config= is given, in which case it is the configuration file.
 */
#include "hx_tree_apply.h"
#include "fuse_priv.h"
#include "hx_conf.h"
#include "hx_clone.h"
#include "hx_fuse.h"
#include "hx_jobs.h"
#include "hx_log.h"
#include "hx_tree.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <libgen.h>
#include <libxml/parser.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define HX_DEFAULT_CONFIG "/etc/horcrux/horcrux.conf"
#define HX_DEFAULT_AUDIT "/var/lib/horcrux/audit.db"
/* Lines /events keeps for readers that fall behind. */
#define HX_EVENTS_RING 4096

struct hx_opts {
    char *config;
    char *audit;
    char *loglevel;
    char *logfile;
    char *nonopt[3];
    int n_nonopt;
    int help;
    int version;
};

static const struct fuse_opt hx_opt_spec[] = {
    {"config=%s", offsetof(struct hx_opts, config), 0},
    {"audit=%s", offsetof(struct hx_opts, audit), 0},
    {"loglevel=%s", offsetof(struct hx_opts, loglevel), 0},
    {"logfile=%s", offsetof(struct hx_opts, logfile), 0},
    FUSE_OPT_KEY("-h", 1),
    FUSE_OPT_KEY("--help", 1),
    FUSE_OPT_KEY("-V", 2),
    FUSE_OPT_KEY("--version", 2),
    FUSE_OPT_END,
};

static int hx_opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    (void)outargs;
    struct hx_opts *o = data;
    if (key == 1) {
        o->help = 1;
        return 0;
    }
    if (key == 2) {
        o->version = 1;
        return 0;
    }
    if (key == FUSE_OPT_KEY_NONOPT) {
        if (o->n_nonopt >= 2) {
            fprintf(stderr, "horcruxfs: unexpected argument '%s'\n", arg);
            return -1;
        }
        o->nonopt[o->n_nonopt++] = strdup(arg);
        return 0;
    }
    return 1;
}

static void hx_usage(void)
{
    printf("usage: horcruxfs [options] [SOURCE] MOUNTPOINT\n"
           "\n"
           "Horcrux options:\n"
           "    -o config=FILE        cluster configuration (default " HX_DEFAULT_CONFIG ")\n"
           "    -o loglevel=LEVEL     error, warn, info (default) or debug\n"
           "    -o logfile=FILE       append the log to FILE (default: stderr, which is\n"
           "                          /dev/null once the daemon runs in the background)\n"
           "    -o audit=FILE         audit database (SQLite, default " HX_DEFAULT_AUDIT ")\n"
           "\n"
           "FUSE options:\n");
    fuse_cmdline_help();
    fuse_lowlevel_help();
}

/* A job's record changed: drop the kernel's copy of the jobs listing and of the job's files. */
static void hx_main_job_changed(const char *id)
{
    hx_obj o = {.kind = hx_tree_kind("/cluster/jobs")};
    hx_notify_object(&o);
    if (!id)
        return;
    hx_strlcpy(o.sub, id, sizeof(o.sub));
    static const char *const kinds[] = {"/cluster/jobs/{job}", "/cluster/jobs/{job}/status.json",
                                        "/cluster/jobs/{job}/log"};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        o.kind = hx_tree_kind(kinds[i]);
        hx_notify_object(&o);
    }
}

/* ---- configuration file watch ---- */

static char hx_conf_path[PATH_MAX];
static hx_cluster *hx_main_cl;
static int hx_watch_pipe[2] = {-1, -1};
static pthread_t hx_watch_thread;

static int hx_load_and_apply(void)
{
    hx_conf c = {0};
    char *err = NULL;
    if (hx_conf_load(hx_conf_path, &c, &err) < 0) {
        hx_err("%s", err ? err : "cannot load the configuration");
        free(err);
        return -1;
    }
    hx_cluster_configure(hx_main_cl, &c);
    hx_conf_clear(&c);
    return 0;
}

/* Watches the file's directory, not the file: editors and config management replace it by
 * rename, which a watch on the old inode would never see. */
static void *hx_watch_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "conf-watch");
    char dir[PATH_MAX], base[NAME_MAX + 1];
    hx_strlcpy(dir, hx_conf_path, sizeof(dir));
    hx_strlcpy(base, hx_conf_path, sizeof(base));
    hx_strlcpy(base, basename(base), sizeof(base));
    int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (fd < 0 || inotify_add_watch(fd, dirname(dir),
                                    IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE |
                                        IN_MOVED_FROM) < 0) {
        hx_err("cannot watch configuration %s: %s", hx_conf_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
                              {.fd = hx_watch_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
        ssize_t n = read(fd, buf, sizeof(buf));
        int hit = 0, gone = 0;
        for (char *q = buf; n > 0 && q < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)q;
            if (ev->len && strcmp(ev->name, base) == 0) {
                if (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO))
                    hit = 1;
                if (ev->mask & (IN_DELETE | IN_MOVED_FROM))
                    gone = 1;
            }
            q += sizeof(*ev) + ev->len;
        }
        if (hit) {
            hx_info("configuration %s changed: reloading", hx_conf_path);
            hx_load_and_apply();
        } else if (gone) {
            hx_warn("configuration %s was removed; keeping the current nodes", hx_conf_path);
        }
    }
    close(fd);
    return NULL;
}

static void hx_default_signals(void)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    struct sigaction sa = {.sa_handler = SIG_DFL};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (sigaction(sigs[i], &sa, NULL) != 0)
            hx_warn("horcruxfs: cannot reset the disposition of signal %d: %s", sigs[i],
                    strerror(errno));
}

int main(int argc, char *argv[])
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct hx_opts opts = {0};
    if (fuse_opt_parse(&args, &opts, hx_opt_spec, hx_opt_proc) < 0)
        return 2;
    if (opts.help) {
        hx_usage();
        return 0;
    }
    if (opts.version) {
        printf("horcruxfs %s\n", HX_VERSION);
        fuse_lowlevel_version();
        return 0;
    }
    if (opts.loglevel) {
        int l = hx_log_parse_level(opts.loglevel);
        if (l < 0) {
            fprintf(stderr, "horcruxfs: unknown loglevel '%s' (error, warn, info, debug)\n",
                    opts.loglevel);
            return 2;
        }
        hx_log_set_level((hx_log_level)l);
    }
    if (opts.n_nonopt == 0) {
        fprintf(stderr, "horcruxfs: no mount point given (see horcruxfs --help)\n");
        return 2;
    }
    const char *mountpoint = opts.nonopt[opts.n_nonopt - 1];
    const char *source = opts.n_nonopt == 2 ? opts.nonopt[0] : NULL;
    struct stat sst;
    const char *conf = opts.config ? opts.config
                       : source && stat(source, &sst) == 0 && S_ISREG(sst.st_mode)
                           ? source
                           : HX_DEFAULT_CONFIG;
    if (!realpath(conf, hx_conf_path)) {
        fprintf(stderr, "horcruxfs: configuration %s: %s\n", conf, strerror(errno));
        return 1;
    }
    /* The kernel checks permission bits (files here are 0444, directories 0555); the name and
     * type show in /proc/mounts and df. */
    fuse_opt_add_arg(&args, "-odefault_permissions,fsname=horcrux,subtype=horcruxfs");
    fuse_opt_add_arg(&args, mountpoint);

    struct fuse_cmdline_opts cl;
    if (fuse_parse_cmdline(&args, &cl) != 0)
        return 2;

    /* Check the configuration before mounting: a broken file fails the mount, not later. */
    {
        hx_conf c = {0};
        char *err = NULL;
        if (hx_conf_load(hx_conf_path, &c, &err) < 0) {
            fprintf(stderr, "horcruxfs: %s\n", err ? err : "cannot load the configuration");
            return 1;
        }
        hx_conf_clear(&c);
    }
    /* Changes are audited or not made: without its database the daemon does not mount. It is
     * opened here to fail early, and again after daemonizing (an SQLite connection must not
     * cross a fork: its POSIX locks stay with the parent). */
    const char *audit_path = opts.audit ? opts.audit : HX_DEFAULT_AUDIT;
    {
        hx_autofree char *audit_err = NULL;
        hx_audit *a = hx_audit_open(audit_path, &audit_err);
        if (!a) {
            fprintf(stderr, "horcruxfs: %s\n", audit_err ? audit_err : "cannot open the audit log");
            return 1;
        }
        hx_audit_close(a);
    }
    hx_events *events = hx_events_new(HX_EVENTS_RING);
    if (!events)
        return 1;

    struct fuse_session *se = fuse_session_new(&args, &hx_fuse_ops, sizeof(hx_fuse_ops), NULL);
    if (!se)
        return 1;
    /* libfuse installs its SIGTERM/SIGINT/SIGHUP handlers only where the disposition is still
     * SIG_DFL (fuse_set_signal_handlers leaves an inherited SIG_IGN alone), and `nohup` or `&` in
     * a non-interactive shell start us with SIGINT ignored: so the daemon sets them itself. */
    hx_default_signals();
    if (fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, cl.mountpoint) != 0) {
        fuse_session_destroy(se);
        return 1;
    }
    /* Threads start after daemonizing: fork keeps only the calling thread. */
    fuse_daemonize(cl.foreground);
    /* Our own threads (node, events, notify, config watch) must never take SIGTERM/SIGINT:
     * libfuse's handler only marks the session exited, which wakes the session loop when the
     * signal lands on the main thread or a FUSE worker, but not on another thread. So they
     * start with those signals blocked, and the main thread unblocks them for the loop. */
    sigset_t quit, old;
    sigemptyset(&quit);
    sigaddset(&quit, SIGTERM);
    sigaddset(&quit, SIGINT);
    sigaddset(&quit, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &quit, &old);
    if (opts.logfile) {
        int lfd = open(opts.logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (lfd < 0 || dup2(lfd, STDERR_FILENO) < 0)
            hx_err("cannot open log file %s: %s", opts.logfile, strerror(errno));
        if (lfd > STDERR_FILENO)
            close(lfd);
    }
    pthread_setname_np(pthread_self(), "main");
    xmlInitParser();
    int rc = 1;
    hx_autofree char *audit_err = NULL;
    hx_audit *audit = hx_audit_open(audit_path, &audit_err);
    if (!audit)
        hx_err("%s", audit_err ? audit_err : "cannot open the audit log");
    hx_apply_init(events, audit);
    hx_apply_set_changed(hx_notify_object);
    hx_apply_set_entry_changed(hx_notify_entry);
    /* Jobs live in the audit database file, in tables of their own, through a connection of
     * their own (docs/architecture.md, "Jobs"). */
    hx_autofree char *jobs_err = NULL;
    int jobs_ok = audit && hx_jobs_open(audit_path, events, &jobs_err) == 0;
    if (audit && !jobs_ok)
        hx_err("%s", jobs_err ? jobs_err : "cannot open the jobs database");
    hx_jobs_set_changed(hx_main_job_changed);
    if (jobs_ok && hx_evloop_start() == 0) {
        hx_main_cl = hx_cluster_new(hx_notify_change, NULL);
        hx_tree_init(hx_main_cl);
        hx_clone_init(hx_main_cl);
        if (hx_notify_start(se) == 0 && hx_stream_start(events) == 0) {
            hx_load_and_apply();
            /* After the nodes are configured: cleanups wait for their node to connect. */
            hx_jobs_recover();
            if (pipe2(hx_watch_pipe, O_CLOEXEC) == 0)
                pthread_create(&hx_watch_thread, NULL, hx_watch_main, NULL);
            hx_info("horcruxfs %s serving %s from %s", HX_VERSION, cl.mountpoint, hx_conf_path);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            struct fuse_loop_config *lc = fuse_loop_cfg_create();
            fuse_loop_cfg_set_clone_fd(lc, cl.clone_fd);
            /* libfuse leaves max_idle_threads at UINT_MAX when -o max_idle_threads is not
             * given, and warns when that is passed on. */
            if (cl.max_idle_threads != UINT_MAX)
                fuse_loop_cfg_set_idle_threads(lc, cl.max_idle_threads);
            /* libfuse leaves max_threads at UINT_MAX when -o max_threads is not given. */
            if (cl.max_threads > 0 && cl.max_threads <= 100000)
                fuse_loop_cfg_set_max_threads(lc, cl.max_threads);
            rc = cl.singlethread ? fuse_session_loop(se) : fuse_session_loop_mt(se, lc);
            fuse_loop_cfg_destroy(lc);
            /* libfuse 3.14 returns the number of the signal that ended the loop. */
            if (rc == SIGTERM || rc == SIGINT || rc == SIGHUP)
                rc = 0;
            hx_info("horcruxfs: unmounting %s", cl.mountpoint);
            if (hx_watch_pipe[1] >= 0) {
                if (write(hx_watch_pipe[1], "q", 1) == 1)
                    pthread_join(hx_watch_thread, NULL);
            }
            hx_notify_stop();
            hx_stream_stop();
        }
        /* Running jobs stop and clean up while the nodes are still connected. */
        hx_jobs_set_changed(NULL);
        hx_jobs_close();
        hx_cluster_free(hx_main_cl);
    }
    hx_apply_init(NULL, NULL);
    hx_events_set_wake(events, NULL, NULL);
    fuse_remove_signal_handlers(se);
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    free(cl.mountpoint);
    fuse_opt_free_args(&args);
    for (int i = 0; i < opts.n_nonopt; i++)
        free(opts.nonopt[i]);
    free(opts.config);
    free(opts.audit);
    if (audit)
        hx_audit_close(audit);
    hx_events_free(events);
    free(opts.loglevel);
    free(opts.logfile);
    return rc == 0 ? 0 : 1;
}
