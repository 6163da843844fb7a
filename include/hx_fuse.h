/* The FUSE front end and the thread that invalidates the kernel's caches. */
#pragma once

#include "hx_cluster.h"

#include <fuse_lowlevel.h>

extern const struct fuse_lowlevel_ops hx_fuse_ops;

/* Starts the invalidation thread for session se. */
int hx_notify_start(struct fuse_session *se);
void hx_notify_stop(void);
/* The backend's change listener (hx_cluster_new): queues invalidations, never blocks. */
void hx_notify_change(const hx_change *c, void *opaque);
