/* Internal to the backend: one node of the cluster and the thread that owns its connection. */
#pragma once

#include "hx_cluster.h"
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

typedef enum {
    HX_REQ_REFRESH,
    HX_REQ_REFRESH_ALL,
    HX_REQ_VM_STATS,
    HX_REQ_NODE_STATS,
    HX_REQ_EXEC,
    HX_REQ_POOL /* refresh one storage pool (uuid) */
} hx_req_type;

typedef struct hx_req {
    struct hx_req *next;
    hx_req_type type;
    char uuid[HX_UUID_LEN];
    char name[HX_VM_NAME_MAX];
    /* For calls: the caller waits on done_cond; refs is 2 while both sides hold it. */
    int is_call;
    int refs;
    int done;
    int rc;
    json_t *out;
    pthread_cond_t done_cond;
    /* HX_REQ_EXEC */
    hx_node_fn fn;
    json_t *in;
} hx_req;

typedef struct hx_node {
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
    hx_pool_cache pools; /* backend/pools.c */

    /* Owned by the node's thread alone. */
    virConnectPtr conn;
    int cb_ids[8];
    int n_cb;
} hx_node;

hx_node *hx_node_start(hx_cluster *cl, const char *name, const char *uri);
/* Asks the thread to stop; it drops its own reference when it has. */
/* How long the daemon waits at exit for its nodes to unsubscribe and disconnect. */
#define HX_NODE_EXIT_WAIT_S 5

/* Stops the node's thread without waiting for it (a node removed by a reconfiguration). */
void hx_node_stop(hx_node *n);
/* At exit: tell the thread to stop, then wait until it disconnected or the deadline
 * (CLOCK_REALTIME) passed. */
void hx_node_stop_begin(hx_node *n);
void hx_node_stop_finish(hx_node *n, const struct timespec *deadline);
/* A reference to the node's connection while it is online (NULL otherwise), for calls made
 * from other threads: libvirt connections are thread-safe, and a call on a connection whose
 * libvirtd died fails once keepalive closes it. Release with virConnectClose. */
virConnectPtr hx_node_conn(hx_node *n);
/* A reference to the cached domain handle of that UUID (virDomainFree), or NULL. */
virDomainPtr hx_node_dom(hx_node *n, const char *uuid);
/* Records a VM's new state after an action of ours whose only effect is the state (pause,
 * resume), ahead of libvirt's event, which then refreshes the rest as usual. */
void hx_node_note_state(hx_node *n, const char *uuid, int state, int reason);
void hx_node_ref(hx_node *n);
void hx_node_unref(hx_node *n);
/* Runs a request on the node's thread and waits up to HX_NODE_CALL_TIMEOUT_MS. */
int hx_node_exec(hx_node *n, hx_node_fn fn, json_t *in, json_t **out);
int hx_node_call(hx_node *n, hx_req_type type, const char *name, const char *uuid, json_t **out);
/* Index of the VM with that name (and uuid when not NULL) in n->doms, or -1. Lock held. */
ssize_t hx_node_find_dom(hx_node *n, const char *name, const char *uuid);
void hx_dom_clear(hx_dom *d);
/* Queues work (no caller waits) for the node's thread; for libvirt event callbacks. */
void hx_node_enqueue_work(hx_node *n, hx_req_type type, const char *uuid);

/* Provided by cluster.c. The node with that name, referenced (hx_node_unref), or NULL. */
hx_node *hx_cluster_get(hx_cluster *cl, const char *name);
/* For the node threads. */
uint64_t hx_cluster_stamp(hx_cluster *cl);
void hx_cluster_emit(hx_cluster *cl, const hx_change *c);
