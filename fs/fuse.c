/* The FUSE front end on libfuse's low-level API.
 *
 * Documents follow file-semantics.md section 1: the rendering is made at lookup/getattr, pinned
 * in the file handle at open, and served through the page cache, so stat, read, cp, rsync,
 * Python, mmap and sendfile all see the same bytes and the true size. Kernel caches are dropped
 * by fs/notify.c when the backend reports a change.
 */
#include "apply.h"
#include "fuse_priv.h"
#include "hx_log.h"

#include <poll.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

/* How long the kernel may trust a name or attributes without asking. Changes reported by
 * libvirt events are pushed out at once (fs/notify.c); this bounds what events cannot cover,
 * like counters in metrics.json. */
#define HX_ENTRY_TIMEOUT 1.0
#define HX_ATTR_TIMEOUT 1.0

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

typedef struct hx_dirh {
    hx_tree_list list;
    uint64_t self, parent;
} hx_dirh;

/* The rendering an open document handle pinned, or NULL (no handle, or not a document). */
static hx_blob *hx_fuse_pinned(const hx_obj *o, struct fuse_file_info *fi)
{
    return fi && fi->fh && hx_kinds[o->kind].type == HX_FT_DOC ? ((hx_fh *)(uintptr_t)fi->fh)->blob
                                                               : NULL;
}

/* Documents re-rendered on a timer (metrics) change without an event to invalidate the kernel's
 * copy, so their attributes are never cached: each read then refreshes the size from the open
 * handle's pinned rendering (FUSE_CAP_AUTO_INVAL_DATA), and size and bytes agree. */
static double hx_fuse_attr_timeout(int kind)
{
    return hx_kinds[kind].ttl_ms > 0 ? 0.0 : HX_ATTR_TIMEOUT;
}

/* Attributes for a reply; records the size the kernel is told. */
int hx_fuse_stat(hx_inode *e, hx_blob *pinned, struct stat *st, double *timeout)
{
    int r = hx_inode_stat(e, pinned, st);
    if (r < 0)
        return r;
    int kind = hx_inode_kind(e);
    if (hx_kinds[kind].type == HX_FT_DOC)
        hx_inode_reported(e, st->st_size);
    *timeout = hx_fuse_attr_timeout(kind);
    /* The kernel keeps one size per inode. While files opened before the last change are still
     * read, no size is cached: each read then asks again through its own handle and gets the
     * size of the rendering that handle pinned. */
    if (*timeout > 0 && hx_inode_old_readers(e))
        *timeout = 0;
    return 0;
}

int hx_fuse_entry(hx_inode *e, struct fuse_entry_param *ep)
{
    memset(ep, 0, sizeof(*ep));
    int r = hx_fuse_stat(e, NULL, &ep->attr, &ep->attr_timeout);
    if (r < 0)
        return r;
    ep->ino = hx_inode_ino(e);
    /* Inode numbers are never reused (fs/ino.c), so one generation serves for all. */
    ep->generation = 1;
    ep->entry_timeout = HX_ENTRY_TIMEOUT;
    return 0;
}

/* Looks ino up in the tree when this daemon has not handed it out yet: NFS clients keep file
 * handles across a daemon restart. Inode numbers derive from identity, so a walk finds it. */
static hx_inode *hx_fuse_find_walk(const hx_obj *dir, uint64_t ino, int depth)
{
    hx_tree_list l;
    if (depth > 8 || hx_tree_list_dir(dir, &l) < 0)
        return NULL;
    hx_inode *found = NULL;
    for (size_t i = 0; i < l.n && !found; i++) {
        if (hx_tree_ino(&l.objs[i]) == ino)
            found = hx_inodes_intern(&l.objs[i]);
        else if (hx_kinds[l.objs[i].kind].type == HX_FT_DIR)
            found = hx_fuse_find_walk(&l.objs[i], ino, depth + 1);
    }
    hx_tree_list_free(&l);
    return found;
}

hx_inode *hx_fuse_inode(fuse_ino_t ino)
{
    if (ino & HX_SCRATCH_INO_BIT) {
        /* A scratch file renamed over a document stands for that document. */
        hx_scratch *s = hx_scratch_find(ino);
        hx_obj alias;
        int a = s && hx_scratch_alias(s, &alias);
        hx_scratch_unref(s);
        return a ? hx_inodes_intern(&alias) : NULL;
    }
    hx_inode *e = hx_inodes_find(ino);
    if (e)
        return e;
    hx_obj root = {.kind = HX_KIND_ROOT};
    if (ino == FUSE_ROOT_ID)
        return hx_inodes_intern(&root);
    return hx_fuse_find_walk(&root, ino, 0);
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

static void hx_fuse_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    hx_inode *pe = hx_fuse_inode(parent);
    if (!pe) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    hx_obj dir, child;
    hx_inode_obj(pe, &dir);
    int r;
    if (strcmp(name, ".") == 0) {
        child = dir;
        r = 0;
    } else if (strcmp(name, "..") == 0) {
        hx_tree_parent(&dir, &child);
        r = 0;
    } else {
        r = hx_tree_lookup(&dir, name, &child);
    }
    if (r == -ENOENT && (hx_kinds[dir.kind].flags & HX_KF_SCRATCH)) {
        hx_scratch *sc = hx_scratch_lookup(parent, name);
        if (sc) {
            struct fuse_entry_param ep;
            hx_fuse_scratch_entry(sc, &ep);
            hx_scratch_unref(sc);
            fuse_reply_entry(req, &ep);
            return;
        }
    }
    if (r == -ENOENT) {
        /* A negative entry with a timeout: the kernel remembers the miss for a second, and a
         * VM that appears is announced by an invalidation anyway. */
        struct fuse_entry_param ep = {.ino = 0, .entry_timeout = HX_ENTRY_TIMEOUT};
        fuse_reply_entry(req, &ep);
        return;
    }
    hx_inode *ce = r == 0 ? hx_inodes_intern(&child) : NULL;
    if (r == 0 && !ce)
        r = -ENOMEM;
    struct fuse_entry_param ep;
    if (r == 0)
        r = hx_fuse_entry(ce, &ep);
    if (r < 0)
        fuse_reply_err(req, -r);
    else
        fuse_reply_entry(req, &ep);
}

static void hx_fuse_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    /* Entries are kept (see fs/inodes.h): nothing to release. */
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

static void hx_fuse_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    hx_scratch *sc = hx_scratch_find(ino);
    hx_obj alias;
    if (sc && !hx_scratch_alias(sc, &alias)) {
        struct stat st;
        hx_scratch_stat(sc, &st);
        hx_scratch_unref(sc);
        fuse_reply_attr(req, &st, 1.0);
        return;
    }
    hx_scratch_unref(sc);
    if (fi && fi->fh && hx_fuse_fh(fi)->kind == HX_FH_SCRATCH) {
        struct stat st;
        hx_scratch_stat(hx_fuse_fh(fi)->sc, &st);
        fuse_reply_attr(req, &st, 0);
        return;
    }
    hx_inode *e = hx_fuse_inode(ino);
    if (!e) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    hx_obj o;
    hx_inode_obj(e, &o);
    /* A getattr from an open document (fstat, or the kernel refreshing i_size before a read)
     * reports the pinned rendering, so size and content agree for that reader. */
    hx_blob *pinned = hx_fuse_pinned(&o, fi);
    struct stat st;
    double timeout;
    int r = hx_fuse_stat(e, pinned, &st, &timeout);
    if (r < 0)
        fuse_reply_err(req, -r);
    else
        fuse_reply_attr(req, &st, timeout);
}

static void hx_fuse_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                            struct fuse_file_info *fi)
{
    if (hx_fuse_setattr_write(req, ino, attr, to_set, fi))
        return;
    hx_inode *e = hx_fuse_inode(ino);
    if (!e) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    hx_obj o;
    hx_inode_obj(e, &o);
    hx_blob *pinned = hx_fuse_pinned(&o, fi);
    struct stat st;
    double timeout;
    int r = hx_fuse_stat(e, pinned, &st, &timeout);
    if (r < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    /* Attributes of tree files are the tree's: a change that changes nothing succeeds (tools
     * like cp -p, rsync and Salt ask for it), anything else is refused. */
    if (((to_set & FUSE_SET_ATTR_MODE) && (attr->st_mode & 07777) != (st.st_mode & 07777)) ||
        ((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != st.st_uid) ||
        ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != st.st_gid) ||
        ((to_set & FUSE_SET_ATTR_SIZE) && attr->st_size != st.st_size) ||
        ((to_set & FUSE_SET_ATTR_MTIME) && (to_set & FUSE_SET_ATTR_MTIME_NOW)) ||
        ((to_set & FUSE_SET_ATTR_MTIME) && !(to_set & FUSE_SET_ATTR_MTIME_NOW) &&
         (attr->st_mtim.tv_sec != st.st_mtim.tv_sec ||
          attr->st_mtim.tv_nsec != st.st_mtim.tv_nsec))) {
        fuse_reply_err(req, EPERM);
        return;
    }
    fuse_reply_attr(req, &st, timeout);
}

static void hx_fuse_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    hx_scratch *sc = hx_scratch_find(ino);
    hx_obj alias;
    if (sc && !hx_scratch_alias(sc, &alias)) {
        hx_fuse_open_scratch(req, sc, fi);
        return;
    }
    hx_scratch_unref(sc);
    hx_inode *e = hx_fuse_inode(ino);
    if (!e) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    hx_obj o;
    hx_inode_obj(e, &o);
    if (hx_kinds[o.kind].type == HX_FT_DIR) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        hx_fuse_open_write(req, e, &o, fi);
        return;
    }
    if (hx_kinds[o.kind].type == HX_FT_STREAM) {
        hx_events *ev = hx_apply_events();
        hx_fh *h = ev ? hx_fuse_fh_new(HX_FH_STREAM, e) : NULL;
        if (h)
            h->st = hx_stream_open(ev);
        if (!h || !h->st) {
            if (h)
                hx_fuse_fh_free(h);
            fuse_reply_err(req, ev ? ENOMEM : ENOTSUP);
            return;
        }
        fi->direct_io = 1;
        fi->nonseekable = 1;
        fi->noflush = 1;
        fi->fh = (uint64_t)(uintptr_t)h;
        if (fuse_reply_open(req, fi) != 0)
            hx_fuse_fh_free(h);
        return;
    }
    hx_fh *h = hx_fuse_fh_new(HX_FH_DOC, e);
    if (!h) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    int r = hx_inode_content(e, &h->blob);
    if (r < 0) {
        hx_fuse_fh_free(h);
        fuse_reply_err(req, -r);
        return;
    }
    int keep = 0;
    if (hx_inode_open_cached(e, h->blob, &keep)) {
        /* Older open files read other bytes through the page cache: leave it to them. */
        fi->direct_io = 1;
    } else {
        h->cached = 1;
        /* When the page cache may hold exactly these bytes it serves the read; otherwise
         * the kernel drops it at open. */
        fi->keep_cache = keep;
        /* The content changed after the kernel last got this file's size (an event raced
         * with this open, its invalidation still queued): the kernel would cut reads at the
         * old size. This open then bypasses the page cache and reads to the pinned end. */
        long long told = hx_inode_reported(e, -1);
        fi->direct_io = !keep && told >= 0 && (size_t)told != h->blob->len;
    }
    /* Nothing to flush on close of a read-only document: without this the kernel sends a
     * FLUSH request on every close, one more round trip per `cat` (FOPEN_NOFLUSH, Linux 5.15). */
    fi->noflush = 1;
    fi->fh = (uint64_t)(uintptr_t)h;
    if (fuse_reply_open(req, fi) != 0)
        hx_fuse_fh_free(h); /* the open was interrupted: no release will come */
}

static void hx_fuse_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                         struct fuse_file_info *fi)
{
    (void)ino;
    hx_fh *h = hx_fuse_fh(fi);
    if (h->kind == HX_FH_STREAM) {
        hx_stream_read(h->st, req, size, (fi->flags & O_NONBLOCK) != 0);
        return;
    }
    if (h->kind == HX_FH_SCRATCH) {
        hx_autofree char *buf = malloc(size ? size : 1);
        if (!buf) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
        fuse_reply_buf(req, buf, hx_scratch_read(h->sc, buf, size, off));
        return;
    }
    if (h->kind == HX_FH_WDOC) {
        /* What this handle has written so far. */
        pthread_mutex_lock(&h->lock);
        size_t len = h->wbuf.len;
        size_t n = off >= 0 && (size_t)off < len ? len - (size_t)off : 0;
        fuse_reply_buf(req, n ? h->wbuf.data + off : NULL, n < size ? n : size);
        pthread_mutex_unlock(&h->lock);
        return;
    }
    hx_blob *b = h->blob;
    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if ((size_t)off >= b->len) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    size_t n = b->len - (size_t)off;
    fuse_reply_buf(req, b->data + off, n < size ? n : size);
}

static void hx_fuse_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    hx_fuse_fh_free((hx_fh *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void hx_fuse_readlink(fuse_req_t req, fuse_ino_t ino)
{
    hx_inode *e = hx_fuse_inode(ino);
    if (!e) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    hx_obj o;
    hx_inode_obj(e, &o);
    const hx_kind *k = &hx_kinds[o.kind];
    char target[1024];
    int r = k->type == HX_FT_LINK && k->link ? k->link(&o, target, sizeof(target)) : -EINVAL;
    if (r < 0)
        fuse_reply_err(req, -r);
    else
        fuse_reply_readlink(req, target);
}

static void hx_fuse_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                         struct fuse_pollhandle *ph)
{
    (void)ino;
    hx_fh *h = hx_fuse_fh(fi);
    if (h->kind == HX_FH_STREAM) {
        hx_stream_poll(h->st, req, ph);
        return;
    }
    /* Everything else is always ready, like a regular file. */
    if (ph)
        fuse_pollhandle_destroy(ph);
    fuse_reply_poll(req, POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM);
}

static void hx_fuse_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    hx_inode *e = hx_fuse_inode(ino);
    if (!e) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    hx_obj o, parent;
    hx_inode_obj(e, &o);
    hx_dirh *d = calloc(1, sizeof(*d));
    if (!d) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* The listing is taken once, at opendir: a reader sees one consistent set of names. */
    int r = hx_tree_list_dir(&o, &d->list);
    if (r < 0) {
        free(d);
        fuse_reply_err(req, -r);
        return;
    }
    hx_tree_parent(&o, &parent);
    d->self = hx_inode_ino(e);
    d->parent = hx_tree_ino(&parent);
    fi->fh = (uint64_t)(uintptr_t)d;
    if (fuse_reply_open(req, fi) != 0) {
        hx_tree_list_free(&d->list);
        free(d);
    }
}

static void hx_fuse_readdir_common(fuse_req_t req, size_t size, off_t off,
                                   struct fuse_file_info *fi, int plus)
{
    hx_dirh *d = (hx_dirh *)(uintptr_t)fi->fh;
    hx_autofree char *buf = malloc(size);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    size_t used = 0;
    /* Offsets: 1 is ".", 2 is "..", 2 + i + 1 is the i-th child. */
    for (off_t i = off; (size_t)i < d->list.n + 2; i++) {
        const char *name;
        struct fuse_entry_param ep;
        memset(&ep, 0, sizeof(ep));
        hx_inode *e = NULL;
        if (i < 2) {
            name = i == 0 ? "." : "..";
            ep.ino = i == 0 ? d->self : d->parent;
            ep.attr.st_ino = ep.ino;
            ep.attr.st_mode = S_IFDIR;
        } else {
            size_t k = (size_t)i - 2;
            name = d->list.names[k];
            e = hx_inodes_intern(&d->list.objs[k]);
            if (!e)
                continue;
            if (!plus || hx_fuse_entry(e, &ep) < 0) {
                /* An entry whose attributes cannot be had (offline node, vanished VM) is
                 * listed without them: the kernel then looks it up by itself. */
                memset(&ep, 0, sizeof(ep));
                ep.attr.st_ino = hx_inode_ino(e);
                ep.attr.st_mode = hx_kinds[d->list.objs[k].kind].mode;
            }
        }
        size_t rest = size - used;
        size_t n = plus ? fuse_add_direntry_plus(req, buf + used, rest, name, &ep, i + 1)
                        : fuse_add_direntry(req, buf + used, rest, name, &ep.attr, i + 1);
        if (n > rest)
            break;
        used += n;
    }
    fuse_reply_buf(req, buf, used);
}

static void hx_fuse_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                            struct fuse_file_info *fi)
{
    (void)ino;
    hx_fuse_readdir_common(req, size, off, fi, 0);
}

static void hx_fuse_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                                struct fuse_file_info *fi)
{
    (void)ino;
    hx_fuse_readdir_common(req, size, off, fi, 1);
}

static void hx_fuse_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    hx_dirh *d = (hx_dirh *)(uintptr_t)fi->fh;
    hx_tree_list_free(&d->list);
    free(d);
    fuse_reply_err(req, 0);
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
