/* The FUSE front end's read side: open (a document's rendering pinned in its handle, a stream's
 * cursor), read, poll, readlink and release. Opens for writing go to fs/fuse/fuse_write.c. */
#include "hx_tree_apply.h"
#include "fuse_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>

/* /events: each open file has its own cursor on the event stream. */
static void hx_fuse_open_stream(fuse_req_t req, hx_inode *e, struct fuse_file_info *fi)
{
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
    hx_fuse_reply_open(req, h, fi);
}

static void hx_fuse_open_doc(fuse_req_t req, hx_inode *e, struct fuse_file_info *fi)
{
    hx_fh *h = hx_fuse_fh_pinned(req, HX_FH_DOC, e);
    if (!h)
        return;
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
    hx_fuse_reply_open(req, h, fi);
}

void hx_fuse_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    hx_scratch *sc = hx_fuse_scratch_file(ino);
    if (sc) {
        hx_fuse_open_scratch(req, sc, fi);
        return;
    }
    hx_obj o;
    hx_inode *e = hx_fuse_req_inode(req, ino, &o);
    if (!e)
        return;
    if (hx_kinds[o.kind].type == HX_FT_DIR)
        fuse_reply_err(req, EISDIR);
    else if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
        hx_fuse_open_write(req, e, &o, fi);
    else if (hx_kinds[o.kind].type == HX_FT_STREAM)
        hx_fuse_open_stream(req, e, fi);
    else
        hx_fuse_open_doc(req, e, fi);
}

void hx_fuse_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
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

void hx_fuse_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    hx_fuse_fh_free((hx_fh *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

void hx_fuse_readlink(fuse_req_t req, fuse_ino_t ino)
{
    hx_obj o;
    if (!hx_fuse_req_inode(req, ino, &o))
        return;
    const hx_kind *k = &hx_kinds[o.kind];
    char target[1024];
    int r = k->type == HX_FT_LINK && k->link ? k->link(&o, target, sizeof(target)) : -EINVAL;
    if (r < 0)
        fuse_reply_err(req, -r);
    else
        fuse_reply_readlink(req, target);
}

void hx_fuse_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
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
