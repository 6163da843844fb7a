/* The baseline for tools/bench: the most trivial low-level FUSE filesystem, one file "file" with
 * fixed content, cached like Horcrux documents (1 s attributes, page cache, keep_cache). */
#include <errno.h>
#include <fuse_lowlevel.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char hx_content[] = "running\n";

static void tfs_stat(fuse_ino_t ino, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = ino;
    if (ino == 1) {
        st->st_mode = S_IFDIR | 0555;
        st->st_nlink = 2;
    } else {
        st->st_mode = S_IFREG | 0444;
        st->st_nlink = 1;
        st->st_size = sizeof(hx_content) - 1;
    }
}

static void tfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (parent != 1 || strcmp(name, "file") != 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct fuse_entry_param e = {.ino = 2, .attr_timeout = 1.0, .entry_timeout = 1.0};
    tfs_stat(2, &e.attr);
    fuse_reply_entry(req, &e);
}

static void tfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    struct stat st;
    tfs_stat(ino, &st);
    fuse_reply_attr(req, &st, 1.0);
}

static void tfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
}

static void tfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    (void)ino;
    (void)fi;
    size_t len = sizeof(hx_content) - 1;
    if ((size_t)off >= len) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    size_t n = len - (size_t)off;
    fuse_reply_buf(req, hx_content + off, n < size ? n : size);
}

static const struct fuse_lowlevel_ops tfs_ops = {
    .lookup = tfs_lookup, .getattr = tfs_getattr, .open = tfs_open, .read = tfs_read};

int main(int argc, char *argv[])
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct fuse_cmdline_opts opts;
    if (fuse_parse_cmdline(&args, &opts) != 0 || !opts.mountpoint)
        return 2;
    struct fuse_session *se = fuse_session_new(&args, &tfs_ops, sizeof(tfs_ops), NULL);
    if (!se || fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, opts.mountpoint) != 0)
        return 1;
    fuse_daemonize(opts.foreground);
    struct fuse_loop_config *lc = fuse_loop_cfg_create();
    int r = fuse_session_loop_mt(se, lc);
    fuse_loop_cfg_destroy(lc);
    fuse_remove_signal_handlers(se);
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    free(opts.mountpoint);
    fuse_opt_free_args(&args);
    return r ? 1 : 0;
}
