/* The FUSE front end's listings: opendir takes the directory's listing once, readdir and
 * readdirplus serve it by offset, releasedir drops it. */
#include "fuse_priv.h"

#include <errno.h>
#include <string.h>

typedef struct hx_dirh {
    hx_tree_list list;
    uint64_t self, parent;
} hx_dirh;

void hx_fuse_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    hx_obj o, parent;
    hx_inode *e = hx_fuse_req_inode(req, ino, &o);
    if (!e)
        return;
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

void hx_fuse_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    (void)ino;
    hx_fuse_readdir_common(req, size, off, fi, 0);
}

void hx_fuse_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                         struct fuse_file_info *fi)
{
    (void)ino;
    hx_fuse_readdir_common(req, size, off, fi, 1);
}

void hx_fuse_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    hx_dirh *d = (hx_dirh *)(uintptr_t)fi->fh;
    hx_tree_list_free(&d->list);
    free(d);
    fuse_reply_err(req, 0);
}
