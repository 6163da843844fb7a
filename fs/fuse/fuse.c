/* The FUSE front end on libfuse's low-level API: the table of operations, the connection's
 * options, open file handles, and the operations that have no state of their own.
 *
 * Documents follow file-semantics.md section 1: the rendering is made at lookup/getattr, pinned
 * in the file handle at open, and served through the page cache, so stat, read, cp, rsync,
 * Python, mmap and sendfile all see the same bytes and the true size. Kernel caches are dropped
 * by fs/fuse/notify.c when the backend reports a change. The operations live in
 * fs/fuse/fuse_lookup.c (names and attributes), fs/fuse/fuse_read.c (open and read),
 * fs/fuse/fuse_readdir.c (listings) and fs/fuse/fuse_write.c (every change).
 */
#include "fuse_priv.h"

#include <errno.h>
#include <string.h>

void hx_fuse_fh_free(hx_fh *h)
{
    if (h->cached)
        hx_inode_close_cached(h->e);
    hx_blob_unref(h->blob);
    hx_buf_clear(&h->wbuf);
    hx_scratch_unref(h->sc);
    if (h->st)
        hx_stream_close(h->st);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

hx_fh *hx_fuse_fh_new(hx_fh_kind kind, hx_inode *e)
{
    hx_fh *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->kind = kind;
    h->e = e;
    pthread_mutex_init(&h->lock, NULL);
    return h;
}

hx_fh *hx_fuse_fh_pinned(fuse_req_t req, hx_fh_kind kind, hx_inode *e)
{
    hx_fh *h = hx_fuse_fh_new(kind, e);
    if (!h) {
        fuse_reply_err(req, ENOMEM);
        return NULL;
    }
    int r = hx_inode_content(e, &h->blob);
    if (r < 0) {
        hx_fuse_fh_free(h);
        fuse_reply_err(req, -r);
        return NULL;
    }
    return h;
}

void hx_fuse_reply_open(fuse_req_t req, hx_fh *h, struct fuse_file_info *fi)
{
    fi->fh = (uint64_t)(uintptr_t)h;
    if (fuse_reply_open(req, fi) != 0)
        hx_fuse_fh_free(h); /* the open was interrupted: no release will come */
}

static void hx_fuse_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    /* Lookups of "." and ".." make the mount exportable (NFS file handles). */
    if (conn->capable & FUSE_CAP_EXPORT_SUPPORT)
        conn->want |= FUSE_CAP_EXPORT_SUPPORT;
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    /* Always READDIRPLUS: `ls -l` and find get attributes with the names. */
    if (conn->capable & FUSE_CAP_READDIRPLUS)
        conn->want |= FUSE_CAP_READDIRPLUS;
    conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
    /* Writeback caching turns write errors into close-time EIO that shells ignore. */
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    /* Reads re-check attributes once they expire, so a changed size is seen before reading. */
    if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA)
        conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
}

static void hx_fuse_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    /* Entries are kept (see fs/fuse/inodes.h): nothing to release. */
    (void)ino;
    (void)nlookup;
    fuse_reply_none(req);
}

static void hx_fuse_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    (void)count;
    (void)forgets;
    fuse_reply_none(req);
}

static void hx_fuse_statfs(fuse_req_t req, fuse_ino_t ino)
{
    (void)ino;
    struct statvfs sv = {.f_bsize = 4096, .f_frsize = 4096, .f_namemax = 255};
    fuse_reply_statfs(req, &sv);
}

static void hx_fuse_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    (void)ino;
    (void)name;
    (void)size;
    fuse_reply_err(req, ENOTSUP);
}

static void hx_fuse_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    (void)ino;
    /* No extended attributes: an empty list. */
    if (size == 0)
        fuse_reply_xattr(req, 0);
    else
        fuse_reply_buf(req, NULL, 0);
}

const struct fuse_lowlevel_ops hx_fuse_ops = {
    .init = hx_fuse_init,
    .lookup = hx_fuse_lookup,
    .forget = hx_fuse_forget,
    .forget_multi = hx_fuse_forget_multi,
    .getattr = hx_fuse_getattr,
    .setattr = hx_fuse_setattr,
    .open = hx_fuse_open,
    .read = hx_fuse_read,
    .release = hx_fuse_release,
    .write = hx_fuse_write,
    .flush = hx_fuse_flush,
    .fsync = hx_fuse_fsync,
    .create = hx_fuse_create,
    .unlink = hx_fuse_unlink,
    .rename = hx_fuse_rename,
    .mkdir = hx_fuse_mkdir,
    .rmdir = hx_fuse_rmdir,
    .poll = hx_fuse_poll,
    .readlink = hx_fuse_readlink,
    .opendir = hx_fuse_opendir,
    .readdir = hx_fuse_readdir,
    .readdirplus = hx_fuse_readdirplus,
    .releasedir = hx_fuse_releasedir,
    .statfs = hx_fuse_statfs,
    .getxattr = hx_fuse_getxattr,
    .listxattr = hx_fuse_listxattr,
};
