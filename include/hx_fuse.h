/* The FUSE front end and the thread that invalidates the kernel's caches.
 *
 * Owns: the low-level operations (fs/fuse/fuse.c, fuse_lookup.c, fuse_read.c, fuse_readdir.c,
 * fuse_write.c), the inode table (fs/fuse/inodes.c), scratch files (fs/fuse/scratch.c), /events
 * readers (fs/fuse/stream.c) and the invalidation queue (fs/fuse/notify.c). Callers: fs/fuse/main.c
 * only (the session and the backend's change listener). Locking: the operations run on libfuse's
 * worker threads and take the inode table's, the scratch files' and each handle's locks;
 * hx_notify_change only takes the queue's lock and never blocks; notifications to the kernel are
 * sent from the notify thread alone.
 */
#pragma once

#include "hx_cluster.h"

#include <fuse_lowlevel.h>

extern const struct fuse_lowlevel_ops hx_fuse_ops;

/* Starts the invalidation thread for session se. */
int hx_notify_start(struct fuse_session *se);
void hx_notify_stop(void);
/* The backend's change listener (hx_cluster_new): queues invalidations, never blocks. */
void hx_notify_change(const hx_change *c, void *opaque);
