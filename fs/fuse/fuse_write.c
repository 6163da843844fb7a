/* The FUSE front end's write side: control files, writable documents, scratch files, rename,
 * mkdir and rmdir (file-semantics.md sections 1-3). Every change goes through hx_apply. */
#include "hx_tree_apply.h"
#include "fuse_priv.h"
#include "hx_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#define HX_SCRATCH_TIMEOUT 1.0

hx_caller hx_fuse_caller(fuse_req_t req)
{
    const struct fuse_ctx *c = fuse_req_ctx(req);
    hx_caller who = {.uid = c->uid, .gid = c->gid, .pid = c->pid};
    return who;
}

void hx_fuse_scratch_entry(hx_scratch *s, struct fuse_entry_param *ep)
{
    memset(ep, 0, sizeof(*ep));
    hx_scratch_stat(s, &ep->attr);
    ep->ino = hx_scratch_ino(s);
    ep->generation = 1;
    ep->entry_timeout = HX_SCRATCH_TIMEOUT;
    ep->attr_timeout = HX_SCRATCH_TIMEOUT;
}

/* hx_apply on behalf of the caller of req. */
static int hx_fuse_apply(fuse_req_t req, hx_op op, const hx_obj *o, const char *name,
                         const char *data, size_t len)
{
    hx_caller who = hx_fuse_caller(req);
    return hx_apply(op, o, name, data, len, &who);
}

/* Zeros appended to b up to len (a hole, like in a regular file). 0 or -ENOMEM. */
static int hx_fuse_zero_fill(hx_buf *b, size_t len)
{
    size_t gap = len - b->len;
    char *z = calloc(1, gap);
    int r = z && hx_buf_append(b, z, gap) == 0 ? 0 : -ENOMEM;
    free(z);
    return r;
}

void hx_fuse_open_write(fuse_req_t req, hx_inode *e, const hx_obj *o, struct fuse_file_info *fi)
{
    const hx_kind *k = &hx_kinds[o->kind];
    if (!k->ctl && !k->commit) {
        fuse_reply_err(req, EACCES);
        return;
    }
    hx_fh *h = hx_fuse_fh_pinned(req, k->ctl ? HX_FH_CTL : HX_FH_WDOC, e);
    if (!h)
        return;
    if (h->kind == HX_FH_WDOC && !(fi->flags & O_TRUNC)) {
        /* Edited in place (O_RDWR, or O_WRONLY then ftruncate): starts from what it shows. */
        if (hx_buf_append(&h->wbuf, h->blob->data, h->blob->len) < 0) {
            hx_fuse_fh_free(h);
            fuse_reply_err(req, ENOMEM);
            return;
        }
    }
    /* O_TRUNC: an empty buffer. Shells open, dup2 and close the first descriptor before the
     * command writes (bash `cat f > doc`), so that first close commits the empty document only
     * where empty is a valid content (`: > user-data` clears it); a config.json is not
     * committed empty on the way to its new content. */
    if (h->kind == HX_FH_WDOC && (fi->flags & O_TRUNC) && (k->flags & HX_KF_EMPTY_OK))
        h->dirty = 1;
    /* Writes and reads go to this handle, never through the page cache. */
    fi->direct_io = 1;
    if (h->kind == HX_FH_CTL) {
        fi->nonseekable = 1;
        fi->noflush = 1; /* each write was its command: nothing waits for close */
    }
    hx_fuse_reply_open(req, h, fi);
}

void hx_fuse_open_scratch(fuse_req_t req, hx_scratch *s, struct fuse_file_info *fi)
{
    hx_fh *h = hx_fuse_fh_new(HX_FH_SCRATCH, NULL);
    if (!h) {
        hx_scratch_unref(s);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    h->sc = s; /* takes the caller's reference */
    if ((fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY)
        hx_scratch_truncate(s, 0);
    fi->direct_io = 1;
    hx_fuse_reply_open(req, h, fi);
}

/* Commits a written document if it changed; returns 0 or -errno (also on later calls). */
static int hx_fuse_commit(fuse_req_t req, fuse_ino_t ino, hx_fh *h)
{
    pthread_mutex_lock(&h->lock);
    int r = -h->werr;
    if (h->dirty) {
        hx_obj o;
        hx_inode_obj(h->e, &o);
        r = hx_fuse_apply(req, HX_OP_COMMIT, &o, NULL, h->wbuf.data ? h->wbuf.data : "",
                          h->wbuf.len);
        h->dirty = 0;
        h->werr = -r;
    }
    pthread_mutex_unlock(&h->lock);
    (void)ino;
    return r;
}

void hx_fuse_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                   struct fuse_file_info *fi)
{
    hx_fh *h = hx_fuse_fh(fi);
    int r = 0;
    switch (h->kind) {
    case HX_FH_CTL: {
        /* One command per write(2); the offset means nothing here. */
        if (size > HX_CTL_MAX_WRITE) {
            r = -EFBIG;
            break;
        }
        hx_obj o;
        hx_inode_obj(h->e, &o);
        r = hx_fuse_apply(req, HX_OP_CTL, &o, NULL, buf, size);
        break;
    }
    case HX_FH_WDOC:
        if (off < 0 || (size_t)off + size > HX_DOC_MAX_BYTES) {
            r = -EFBIG;
            break;
        }
        pthread_mutex_lock(&h->lock);
        if ((size_t)off > h->wbuf.len)
            r = hx_fuse_zero_fill(&h->wbuf, (size_t)off);
        if (r == 0) {
            size_t end = (size_t)off + size;
            if (end > h->wbuf.len)
                r = hx_buf_append(&h->wbuf, buf + (h->wbuf.len - (size_t)off), end - h->wbuf.len) <
                            0
                        ? -ENOMEM
                        : 0;
            if (r == 0)
                memcpy(h->wbuf.data + off, buf, size);
        }
        h->dirty = 1;
        h->werr = 0;
        pthread_mutex_unlock(&h->lock);
        break;
    case HX_FH_SCRATCH:
        r = hx_scratch_write(h->sc, buf, size, off);
        break;
    default:
        r = -EBADF;
    }
    (void)ino;
    if (r < 0)
        fuse_reply_err(req, -r);
    else
        fuse_reply_write(req, size);
}

void hx_fuse_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    hx_fh *h = hx_fuse_fh(fi);
    int r = h->kind == HX_FH_WDOC ? hx_fuse_commit(req, ino, h) : 0;
    fuse_reply_err(req, -r);
}

void hx_fuse_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)datasync;
    hx_fh *h = hx_fuse_fh(fi);
    int r = h->kind == HX_FH_WDOC ? hx_fuse_commit(req, ino, h) : 0;
    fuse_reply_err(req, -r);
}

int hx_fuse_setattr_write(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                          struct fuse_file_info *fi)
{
    hx_fh *h = fi && fi->fh ? hx_fuse_fh(fi) : NULL;
    hx_scratch *s = hx_scratch_find(ino);
    if (s) {
        hx_obj alias;
        if (hx_scratch_alias(s, &alias)) {
            hx_scratch_unref(s);
            return 0; /* the document's own rules */
        }
        int r = 0;
        if (to_set & FUSE_SET_ATTR_SIZE)
            r = hx_scratch_truncate(s, attr->st_size);
        if (r == 0)
            hx_scratch_setattr(s, attr, to_set);
        struct stat st;
        hx_scratch_stat(s, &st);
        hx_scratch_unref(s);
        if (r < 0)
            fuse_reply_err(req, -r);
        else
            fuse_reply_attr(req, &st, HX_SCRATCH_TIMEOUT);
        return 1;
    }
    if (!(to_set & FUSE_SET_ATTR_SIZE))
        return 0;
    hx_inode *e = hx_fuse_inode(ino);
    if (!e)
        return 0;
    hx_obj o;
    hx_inode_obj(e, &o);
    const hx_kind *k = &hx_kinds[o.kind];
    int r = 0;
    if (h && h->kind == HX_FH_WDOC) {
        /* ftruncate of a document opened for writing: part of the new content. */
        if (attr->st_size < 0 || (size_t)attr->st_size > HX_DOC_MAX_BYTES) {
            r = -EFBIG;
        } else {
            pthread_mutex_lock(&h->lock);
            if ((size_t)attr->st_size <= h->wbuf.len) {
                h->wbuf.len = (size_t)attr->st_size;
                if (h->wbuf.data)
                    h->wbuf.data[h->wbuf.len] = '\0';
            } else {
                r = hx_fuse_zero_fill(&h->wbuf, (size_t)attr->st_size);
            }
            h->dirty = 1;
            h->werr = 0;
            pthread_mutex_unlock(&h->lock);
        }
    } else if (k->ctl && attr->st_size == 0) {
        r = 0; /* truncating a control file to 0 is how shells open it: nothing to do */
    } else if ((k->flags & HX_KF_UNLINK_CLEARS) && attr->st_size == 0) {
        /* truncate -s0 of a document that may be empty: commits the empty document. */
        r = hx_fuse_apply(req, HX_OP_COMMIT, &o, NULL, "", 0);
    } else {
        return 0;
    }
    if (r < 0) {
        fuse_reply_err(req, -r);
        return 1;
    }
    struct stat st;
    double timeout;
    r = hx_fuse_stat(e, h ? h->blob : NULL, &st, &timeout);
    if (r < 0) {
        fuse_reply_err(req, -r);
        return 1;
    }
    if (h && h->kind == HX_FH_WDOC)
        st.st_size = (off_t)h->wbuf.len;
    fuse_reply_attr(req, &st, 0);
    return 1;
}

/* The directory object of a parent inode, or an errno. */
static int hx_fuse_dir(fuse_ino_t parent, hx_obj *dir)
{
    hx_inode *pe = hx_fuse_inode(parent);
    if (!pe)
        return -ESTALE;
    hx_inode_obj(pe, dir);
    return hx_kinds[dir->kind].type == HX_FT_DIR ? 0 : -ENOTDIR;
}

void hx_fuse_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                    struct fuse_file_info *fi)
{
    hx_obj dir, child;
    int r = hx_fuse_dir(parent, &dir);
    if (r == 0 && hx_tree_lookup(&dir, name, &child) == 0)
        r = -EEXIST;
    if (r == 0 && !(hx_kinds[dir.kind].flags & HX_KF_SCRATCH)) {
        /* Only directories of writable documents hold scratch files: a refused change, audited. */
        r = hx_fuse_apply(req, HX_OP_CREATE, &dir, name, NULL, 0);
        r = r == 0 ? -EPERM : r;
    }
    hx_scratch *s = NULL;
    const struct fuse_ctx *c = fuse_req_ctx(req);
    if (r == 0)
        r = hx_scratch_create(parent, &dir, name, c->uid, c->gid, mode & ~c->umask, &s);
    if (r < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    hx_fh *h = hx_fuse_fh_new(HX_FH_SCRATCH, NULL);
    if (!h) {
        hx_scratch_unlink(parent, name);
        hx_scratch_unref(s);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    h->sc = s;
    struct fuse_entry_param ep;
    hx_fuse_scratch_entry(s, &ep);
    fi->direct_io = 1;
    fi->fh = (uint64_t)(uintptr_t)h;
    if (fuse_reply_create(req, &ep, fi) != 0)
        hx_fuse_fh_free(h);
}

void hx_fuse_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (hx_scratch_unlink(parent, name) == 0) {
        fuse_reply_err(req, 0);
        return;
    }
    hx_obj dir, child;
    int r = hx_fuse_dir(parent, &dir);
    if (r == 0)
        r = hx_tree_lookup(&dir, name, &child);
    if (r == 0) {
        /* Removing a cloud-init file clears it (the name stays, showing an empty document);
         * other live files stay: a refused change, audited either way. */
        r = hx_fuse_apply(req, HX_OP_UNLINK, &child, NULL, "", 0);
        if (r == 0)
            hx_notify_entry(parent, name);
    }
    fuse_reply_err(req, -r);
}

void hx_fuse_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                    const char *newname, unsigned int flags)
{
    if (flags & RENAME_EXCHANGE) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    hx_obj dir, ndir, child;
    int r = hx_fuse_dir(parent, &dir);
    if (r == 0)
        r = hx_fuse_dir(newparent, &ndir);
    hx_scratch *s = r == 0 ? hx_scratch_lookup(parent, name) : NULL;
    if (r == 0 && !s) {
        /* Live files keep their names (vim then writes in place): a refused change, audited. */
        r = hx_tree_lookup(&dir, name, &child);
        if (r == 0) {
            r = hx_fuse_apply(req, HX_OP_RENAME, &child, NULL, NULL, 0);
            r = r == 0 ? -EPERM : r;
        }
    }
    if (r < 0) {
        hx_scratch_unref(s);
        fuse_reply_err(req, -r);
        return;
    }
    int tr = hx_tree_lookup(&ndir, newname, &child);
    if (tr == 0) {
        const hx_kind *k = &hx_kinds[child.kind];
        if (flags & RENAME_NOREPLACE)
            r = -EEXIST;
        else if (k->type == HX_FT_DIR)
            r = -EISDIR;
        else if (!k->commit || parent != newparent)
            r = -EPERM;
        if (r == 0) {
            /* The atomic, validated commit: the rename's errno is the validation's. */
            size_t len = 0;
            hx_autofree char *data = hx_scratch_data(s, &len);
            r = data ? hx_fuse_apply(req, HX_OP_COMMIT, &child, NULL, data, len) : -ENOMEM;
            if (r == 0) {
                hx_scratch_committed(s, &child);
                /* The kernel moves the scratch dentry to the target name; it serves the
                 * document as an alias until this invalidation makes the kernel look again. */
                hx_notify_entry(newparent, newname);
            }
        }
    } else if (!(hx_kinds[ndir.kind].flags & HX_KF_SCRATCH)) {
        r = -EPERM;
    } else {
        hx_scratch *t = hx_scratch_lookup(newparent, newname);
        if (t && (flags & RENAME_NOREPLACE))
            r = -EEXIST;
        hx_scratch_unref(t);
        if (r == 0)
            r = hx_scratch_rename(s, newparent, newname);
    }
    hx_scratch_unref(s);
    fuse_reply_err(req, -r);
}

void hx_fuse_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    (void)mode;
    hx_obj dir, child;
    int r = hx_fuse_dir(parent, &dir);
    if (r == 0 && hx_tree_lookup(&dir, name, &child) == 0)
        r = -EEXIST;
    if (r == 0)
        r = hx_fuse_apply(req, HX_OP_MKDIR, &dir, name, NULL, 0);
    if (r == 0)
        r = hx_tree_lookup(&dir, name, &child);
    hx_fuse_reply_entry(req, r, &child);
}

void hx_fuse_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    hx_obj dir, child;
    int r = hx_fuse_dir(parent, &dir);
    if (r == 0)
        r = hx_tree_lookup(&dir, name, &child);
    if (r == 0 && hx_kinds[child.kind].type != HX_FT_DIR)
        r = -ENOTDIR;
    if (r == -ENOENT) {
        hx_scratch *s = hx_scratch_lookup(parent, name);
        if (s)
            r = -ENOTDIR;
        hx_scratch_unref(s);
    }
    if (r == 0)
        r = hx_fuse_apply(req, HX_OP_RMDIR, &child, NULL, NULL, 0);
    fuse_reply_err(req, -r);
}
