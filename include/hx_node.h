/* One node of the cluster (backend/node*.c): the thread that owns its libvirt connection, and
 * the cache of its VMs.
 *
 * Owns: the node's connection (connect, keepalive, reconnect with backoff, event
 * subscriptions), its cache of VMs (refreshed by events), its host facts, and the queue of
 * requests its thread runs (refreshes, live counters, hx_node_exec calls).
 *
 * Who calls: the backend only (backend/cluster.c, pools, vmops, snapshots, clone). The tree
 * reaches nodes through hx_cluster.h and never includes this header.
 *
 * Locking: each node has one lock, n->lock (layout in backend/node.h), taken after the
 * cluster's lock when both are held, never the other way round. Nothing here is called with
 * n->lock held unless it says so; change listeners (hx_cluster_emit) run without it. Only the
 * node's thread uses the connection without the lock (other threads take a reference with
 * hx_node_conn). A node is reference counted: the cluster holds one, the thread another.
 */
#pragma once

#include "hx_cluster.h"

#include <jansson.h>
#include <libvirt/libvirt.h>
#include <sys/types.h>
#include <time.h>

typedef struct hx_node hx_node;

typedef enum {
    HX_REQ_REFRESH,
    HX_REQ_REFRESH_ALL,
    HX_REQ_VM_STATS,
    HX_REQ_NODE_STATS,
    HX_REQ_EXEC,
    HX_REQ_POOL /* refresh one storage pool (uuid) */
} hx_req_type;

/* How long the daemon waits at exit for its nodes to unsubscribe and disconnect. */
#define HX_NODE_EXIT_WAIT_S 5

/* Starts the node's thread; the node comes with two references, the caller's and the
 * thread's. NULL when it cannot start (logged). */
hx_node *hx_node_start(hx_cluster *cl, const char *name, const char *uri);
/* Asks the thread to stop without waiting for it (a node removed by a reconfiguration); the
 * thread drops its own reference when it has stopped. */
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
/* Queues work (no caller waits) for the node's thread; for libvirt event callbacks. */
void hx_node_enqueue_work(hx_node *n, hx_req_type type, const char *uuid);

/* Provided by cluster.c. The node with that name, referenced (hx_node_unref), or NULL. */
hx_node *hx_cluster_get(hx_cluster *cl, const char *name);
/* For the node threads. */
uint64_t hx_cluster_stamp(hx_cluster *cl);
void hx_cluster_emit(hx_cluster *cl, const hx_change *c);
/* Tells the change listeners about c as a change of node n (this sets c.node); without n->lock. */
void hx_node_emit(hx_node *n, hx_change c);
