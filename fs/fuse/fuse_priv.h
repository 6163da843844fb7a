/* Shared only between the FUSE front end's files (fs/fuse/fuse*.c): open file handles, the inode
 * helpers, and the operations the table in fs/fuse/fuse.c names. Every function here runs on a
 * libfuse worker thread, inside one request; a handle's fields are guarded by its lock (WDOC). */
#pragma once

#include "hx_fuse.h"
#include "inodes.h"
#include "scratch.h"
#include "stream.h"

#include <pthread.h>

#define HX_CTL_MAX_WRITE 4096          /* a command longer than this is refused (EFBIG) */
#define HX_DOC_MAX_BYTES (1024 * 1024) /* a written document longer than this: EFBIG */

typedef enum {
    HX_FH_DOC,     /* read-only document: the rendering pinned at open */
    HX_FH_CTL,     /* control file opened for writing: each write is a command */
    HX_FH_WDOC,    /* writable document opened for writing: buffered, committed at fsync/close */
    HX_FH_STREAM,  /* stream: its own cursor */
    HX_FH_SCRATCH, /* scratch file */
} hx_fh_kind;

typedef struct hx_fh {
    hx_fh_kind kind;
    hx_inode *e;   /* tree files */
    hx_blob *blob; /* DOC, CTL, WDOC: rendering pinned at open */
    int cached;    /* counted by hx_inode_open_cached */
    pthread_mutex_t lock;
    hx_buf wbuf; /* WDOC: the new content */
    int dirty;   /* WDOC: wbuf differs from what was committed */
    int werr;    /* WDOC: errno of a failed commit, returned again at close */
    hx_scratch *sc;
    hx_stream *st;
} hx_fh;

/* fs/fuse/fuse.c */
hx_fh *hx_fuse_fh_new(hx_fh_kind kind, hx_inode *e);
void hx_fuse_fh_free(hx_fh *h);
static inline hx_fh *hx_fuse_fh(struct fuse_file_info *fi)
{
    return (hx_fh *)(uintptr_t)fi->fh;
}
/* A new handle holding the document's current rendering; or replies the error and gives NULL. */
hx_fh *hx_fuse_fh_pinned(fuse_req_t req, hx_fh_kind kind, hx_inode *e);
/* Replies the open with h as its handle (freed when the reply fails: no release will come). */
void hx_fuse_reply_open(fuse_req_t req, hx_fh *h, struct fuse_file_info *fi);

/* fs/fuse/fuse_lookup.c */
/* The tree inode for ino (an aliased scratch inode gives its document), or NULL. */
hx_inode *hx_fuse_inode(fuse_ino_t ino);
/* The same with its object in *o; or replies ESTALE and gives NULL. */
hx_inode *hx_fuse_req_inode(fuse_req_t req, fuse_ino_t ino, hx_obj *o);
/* The scratch file at ino (a reference), or NULL: none, or renamed over a document. */
hx_scratch *hx_fuse_scratch_file(fuse_ino_t ino);
int hx_fuse_stat(hx_inode *e, hx_blob *pinned, struct stat *st, double *timeout);
int hx_fuse_entry(hx_inode *e, struct fuse_entry_param *ep);
/* Replies the entry of child when r is 0, else the error -r. */
void hx_fuse_reply_entry(fuse_req_t req, int r, const hx_obj *child);
void hx_fuse_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void hx_fuse_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void hx_fuse_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                     struct fuse_file_info *fi);

/* fs/fuse/fuse_read.c */
void hx_fuse_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void hx_fuse_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                  struct fuse_file_info *fi);
void hx_fuse_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void hx_fuse_readlink(fuse_req_t req, fuse_ino_t ino);
void hx_fuse_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                  struct fuse_pollhandle *ph);

/* fs/fuse/fuse_readdir.c */
void hx_fuse_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void hx_fuse_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi);
void hx_fuse_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                         struct fuse_file_info *fi);
void hx_fuse_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

/* fs/fuse/fuse_write.c */
void hx_fuse_scratch_entry(hx_scratch *s, struct fuse_entry_param *ep);
hx_caller hx_fuse_caller(fuse_req_t req);
void hx_fuse_open_write(fuse_req_t req, hx_inode *e, const hx_obj *o, struct fuse_file_info *fi);
void hx_fuse_open_scratch(fuse_req_t req, hx_scratch *s, struct fuse_file_info *fi);
void hx_fuse_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                   struct fuse_file_info *fi);
void hx_fuse_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void hx_fuse_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void hx_fuse_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                    struct fuse_file_info *fi);
void hx_fuse_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void hx_fuse_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                    const char *newname, unsigned int flags);
void hx_fuse_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void hx_fuse_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
/* setattr of a scratch inode, or of a document opened for writing (truncate). Returns 1 when it
 * replied. */
int hx_fuse_setattr_write(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                          struct fuse_file_info *fi);
/* fs/fuse/notify.c: the kernel's copy of o is stale (queued to the invalidation thread). */
void hx_notify_object(const hx_obj *o);
void hx_notify_entry(uint64_t parent, const char *name);
