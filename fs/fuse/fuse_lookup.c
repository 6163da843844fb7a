/* The FUSE front end's names and attributes: which inode a request means (also one this daemon
 * has not handed out yet), lookup, getattr and setattr of tree files. */
#include "fuse_priv.h"

#include <errno.h>
#include <string.h>

/* How long the kernel may trust a name or attributes without asking. Changes reported by
 * libvirt events are pushed out at once (fs/fuse/notify.c); this bounds what events cannot cover,
 * like counters in metrics.json. */
#define HX_ENTRY_TIMEOUT 1.0
#define HX_ATTR_TIMEOUT 1.0

/* The rendering an open document handle pinned, or NULL (no handle, or not a document). */
static hx_blob *hx_fuse_pinned(int kind, struct fuse_file_info *fi)
{
    return fi && fi->fh && hx_kinds[kind].type == HX_FT_DOC ? ((hx_fh *)(uintptr_t)fi->fh)->blob
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
    /* Inode numbers are never reused (fs/tree/ino.c), so one generation serves for all. */
    ep->generation = 1;
    ep->entry_timeout = HX_ENTRY_TIMEOUT;
    return 0;
}

void hx_fuse_reply_entry(fuse_req_t req, int r, const hx_obj *child)
{
    hx_inode *ce = r == 0 ? hx_inodes_intern(child) : NULL;
    struct fuse_entry_param ep;
    if (r == 0)
        r = ce ? hx_fuse_entry(ce, &ep) : -ENOMEM;
    if (r < 0)
        fuse_reply_err(req, -r);
    else
        fuse_reply_entry(req, &ep);
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

hx_inode *hx_fuse_req_inode(fuse_req_t req, fuse_ino_t ino, hx_obj *o)
{
    hx_inode *e = hx_fuse_inode(ino);
    if (!e) {
        fuse_reply_err(req, ESTALE);
        return NULL;
    }
    hx_inode_obj(e, o);
    return e;
}

hx_scratch *hx_fuse_scratch_file(fuse_ino_t ino)
{
    hx_scratch *sc = hx_scratch_find(ino);
    hx_obj alias;
    if (sc && !hx_scratch_alias(sc, &alias))
        return sc;
    hx_scratch_unref(sc);
    return NULL;
}

void hx_fuse_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    hx_obj dir, child;
    if (!hx_fuse_req_inode(req, parent, &dir))
        return;
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
    hx_fuse_reply_entry(req, r, &child);
}

/* The attributes of tree file ino; or replies the error and returns -1. */
static int hx_fuse_tree_attr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                             struct stat *st, double *timeout)
{
    hx_inode *e = hx_fuse_inode(ino);
    if (!e) {
        fuse_reply_err(req, ESTALE);
        return -1;
    }
    /* A getattr from an open document (fstat, or the kernel refreshing i_size before a read)
     * reports the pinned rendering, so size and content agree for that reader. */
    int r = hx_fuse_stat(e, hx_fuse_pinned(hx_inode_kind(e), fi), st, timeout);
    if (r < 0) {
        fuse_reply_err(req, -r);
        return -1;
    }
    return 0;
}

void hx_fuse_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat st;
    hx_scratch *sc = hx_fuse_scratch_file(ino);
    if (sc) {
        hx_scratch_stat(sc, &st);
        hx_scratch_unref(sc);
        fuse_reply_attr(req, &st, 1.0);
        return;
    }
    if (fi && fi->fh && hx_fuse_fh(fi)->kind == HX_FH_SCRATCH) {
        hx_scratch_stat(hx_fuse_fh(fi)->sc, &st);
        fuse_reply_attr(req, &st, 0);
        return;
    }
    double timeout;
    if (hx_fuse_tree_attr(req, ino, fi, &st, &timeout) == 0)
        fuse_reply_attr(req, &st, timeout);
}

void hx_fuse_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                     struct fuse_file_info *fi)
{
    if (hx_fuse_setattr_write(req, ino, attr, to_set, fi))
        return;
    struct stat st;
    double timeout;
    if (hx_fuse_tree_attr(req, ino, fi, &st, &timeout) < 0)
        return;
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
