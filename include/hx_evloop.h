/* libvirt's event loop on a thread of its own (backend/evloop.c).
 *
 * Owns: the thread that runs libvirt's default event loop, which delivers domain and pool
 * events, keepalive probes and close callbacks. Who calls: the front end (fs/fuse/main.c), once at
 * start and once at exit; the callbacks it runs belong to the node module and only queue work.
 * Locking: none; start and stop are called from the main thread, in that order.
 */
#pragma once

/* Starts libvirt's event loop thread; call once before hx_cluster_new. */
int hx_evloop_start(void);
void hx_evloop_stop(void);
