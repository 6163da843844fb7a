/* Internal to the backend: the layout of a node and of its cached VMs, for the backend modules
 * that read the cache under n->lock (cluster.c, pools). The node module's contract (what it
 * owns, who calls it, its locking) is include/hx_node.h; the declarations its own files share
 * are in node_priv.h. */
#pragma once

#include "hx_node.h"
#include "pools.h"

#include <libvirt/libvirt.h>
#include <pthread.h>
#include <stdatomic.h>

typedef struct hx_dom {
    hx_vm_view v;
    /* Previous CPU sample, for cpu_percent in metrics.json. */
    unsigned long long prev_cpu_ns;
    long long prev_wall_ns;
    /* Stamp of the last state noted by hx_node_note_state: a refresh that read libvirt before
     * it must not put the older state back. */
    uint64_t noted_stamp;
    /* libvirt's handle of the domain on the node's connection (a reference). */
    virDomainPtr dom;
} hx_dom;

typedef struct hx_req hx_req; /* node_priv.h */

struct hx_node {
    _Atomic int refs;
    hx_cluster *cl;
    char name[HX_NODE_NAME_MAX];
    char *uri;
    pthread_t thread;

    pthread_mutex_t lock; /* guards everything below but conn and the callback ids */
    pthread_cond_t cond;
    pthread_cond_t status_cond; /* broadcast on every status change */
    int stop;
    int exiting; /* the process ends: the connection is left to it */
    int closed;  /* set by libvirt's close callback */
    int close_reason;
    hx_node_status status;
    char *last_error;
    long long status_since_ns;
    json_t *info;
    uint64_t version; /* node facts and VM list */
    long long changed_ns;
    hx_dom *doms; /* sorted by name */
    size_t n_doms, cap_doms;
    hx_req *q_head, *q_tail;
    unsigned long long prev_busy_ns, prev_total_ns;
    hx_pool_cache pools; /* backend/pools_cache.c */

    /* Owned by the node's thread alone. */
    virConnectPtr conn;
    int cb_ids[8];
    int n_cb;
};

/* Index of the VM with that name (and uuid when not NULL) in n->doms, or -1. Lock held. */
ssize_t hx_node_find_dom(hx_node *n, const char *name, const char *uuid);
void hx_dom_clear(hx_dom *d);
/* The CLOCK_MONOTONIC time ms milliseconds from now, for timed waits on a node's conditions
 * (they all use CLOCK_MONOTONIC). */
void hx_node_deadline(struct timespec *ts, long ms);
