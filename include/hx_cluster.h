/* The backend's view of the cluster: nodes, their libvirt connections and the VMs on them
 * (backend/cluster.c, backend/cluster_read.c; the nodes themselves are backend/node*.c,
 * include/hx_node.h).
 *
 * Each node has one thread that owns its libvirt connection (connect, keepalive, reconnect with
 * backoff, event-driven refresh of its VM cache). Readers never touch libvirt directly: they copy
 * out of the node's cache under its lock, or, for live counters, hand a call to the node's thread
 * and wait a bounded time. A slow or dead node therefore never blocks readers of another node.
 *
 * Owns: the set of nodes (kept in line with the configuration), the cluster-wide version
 * counter, and the change listener. Who calls: the tree and the front ends (fs/), and the
 * backend modules that act on VMs, pools and snapshots.
 *
 * Locking: the cluster's lock guards its node set only, and is taken before a node's lock,
 * never after. Every call here may be made from any thread with no lock held; views are copies
 * the caller frees (hx_*_view_clear). Change listeners run on backend threads with no lock held
 * and must not block.
 */
#pragma once

#include "hx_conf.h"
#include "hx_evloop.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define HX_UUID_LEN 37 /* VIR_UUID_STRING_BUFLEN */
#define HX_VM_NAME_MAX 256
/* How long a reader waits for a node's thread before ETIMEDOUT. */
#define HX_NODE_CALL_TIMEOUT_MS 1000

typedef struct hx_cluster hx_cluster;

typedef enum { HX_NODE_CONNECTING = 0, HX_NODE_ONLINE, HX_NODE_OFFLINE } hx_node_status;
const char *hx_node_status_str(hx_node_status s);

/* What changed; delivered from backend threads. The listener must not block. */
typedef enum { HX_CHANGE_NODES, HX_CHANGE_NODE, HX_CHANGE_VM, HX_CHANGE_POOL } hx_change_kind;
typedef struct hx_change {
    hx_change_kind kind;
    const char *node;    /* NODE, VM, POOL */
    const char *vm_name; /* VM */
    const char *vm_uuid; /* VM */
    const char *pool;    /* POOL: its name */
    int appeared;        /* the object is new */
    int vanished;        /* the object is gone */
    const char *state;   /* VM: its state word; NODE: its status word; POOL: its state */
    int state_changed;   /* VM, POOL: the state moved; NODE: always */
    int config_changed;  /* VM: the persistent configuration (or autostart) changed */
} hx_change;
typedef void (*hx_change_fn)(const hx_change *c, void *opaque);

hx_cluster *hx_cluster_new(hx_change_fn fn, void *opaque);
/* Stops every node thread and frees the cluster. */
void hx_cluster_free(hx_cluster *cl);
/* Brings the node set in line with conf: starts new nodes, stops removed ones, restarts nodes
 * whose URI changed. */
void hx_cluster_configure(hx_cluster *cl, const hx_conf *conf);

/* Versions move whenever what they cover changes (a cluster-wide counter stamps each change). */
uint64_t hx_cluster_version(hx_cluster *cl);
/* Version of a node's own data and of its VM list, and its status (any pointer may be NULL
 * but version). -ENOENT when the node is unknown. */
int hx_cluster_node_version(hx_cluster *cl, const char *node, uint64_t *version,
                            long long *changed_ns, hx_node_status *status);

typedef struct hx_node_view {
    char name[HX_NODE_NAME_MAX];
    char *uri;
    hx_node_status status;
    char *last_error;          /* why it is offline, or NULL */
    long long status_since_ns; /* wall clock of the last status change */
    json_t *info;              /* host facts gathered at connect; NULL before the first connect */
} hx_node_view;

/* Sorted node names, NULL-terminated; free with hx_strv_free. */
char **hx_cluster_node_names(hx_cluster *cl, size_t *n);
void hx_strv_free(char **v);
int hx_cluster_node_view(hx_cluster *cl, const char *node, hx_node_view *out);
void hx_node_view_clear(hx_node_view *v);

typedef struct hx_vm_view {
    char name[HX_VM_NAME_MAX];
    char uuid[HX_UUID_LEN];
    int state;  /* virDomainState */
    int reason; /* state reason, per virDomainState */
    int id;     /* -1 when not running */
    int persistent;
    int autostart;
    char *xml_config;  /* VIR_DOMAIN_XML_INACTIVE */
    char *xml_live;    /* live XML, NULL when not running */
    char *config_json; /* rendered config.json bytes, NULL when the XML could not be converted */
    char *config_error;
    char *live_json; /* the running config, NULL when not running */
    uint64_t version;
    long long changed_ns;
} hx_vm_view;

/* Sorted VM names of a node: -EHOSTDOWN when it is not online, -ENOENT when unknown. */
int hx_cluster_vm_names(hx_cluster *cl, const char *node, char ***names, size_t *n);
/* Names and UUIDs of a node's VMs, sorted by name, in one pass under the node's lock (a listing
 * of 10000 VMs need not look each name up again). Free *out with free(). -EHOSTDOWN, -ENOENT. */
typedef struct hx_vm_ident {
    char name[HX_VM_NAME_MAX];
    char uuid[HX_UUID_LEN];
} hx_vm_ident;
int hx_cluster_vm_idents(hx_cluster *cl, const char *node, hx_vm_ident **out, size_t *n);
/* Finds a VM by name on a node; fills uuid. -ENOENT, -EHOSTDOWN. */
int hx_cluster_vm_lookup(hx_cluster *cl, const char *node, const char *name,
                         char uuid[HX_UUID_LEN]);
/* Version of one VM (by name, checked against uuid). -ENOENT, -EHOSTDOWN. */
int hx_cluster_vm_version(hx_cluster *cl, const char *node, const char *name, const char *uuid,
                          uint64_t *version, long long *changed_ns);
int hx_cluster_vm_view(hx_cluster *cl, const char *node, const char *name, const char *uuid,
                       hx_vm_view *out);
void hx_vm_view_clear(hx_vm_view *v);
/* Live counters from libvirt's bulk stats, fetched by the node's thread now.
 * -EHOSTDOWN, -ENOENT, -ETIMEDOUT, -EIO. */
int hx_cluster_vm_stats(hx_cluster *cl, const char *node, const char *name, const char *uuid,
                        json_t **out);
int hx_cluster_node_stats(hx_cluster *cl, const char *node, json_t **out);
/* Runs fn on a node's own thread with its libvirt connection, for reads that need libvirt
 * now (listings without events: volumes, snapshots). in is borrowed (a reference is taken),
 * *out is what fn produced (new reference). Waits at most HX_NODE_CALL_TIMEOUT_MS: a slow node
 * answers -ETIMEDOUT and the call still finishes on its own later. -ENOENT (no such node),
 * -EHOSTDOWN, -ETIMEDOUT, or fn's own -errno. fn must not block long. */
typedef struct _virConnect *hx_virconn;
typedef int (*hx_node_fn)(hx_virconn conn, const json_t *in, json_t **out);
int hx_cluster_node_exec(hx_cluster *cl, const char *node, hx_node_fn fn, json_t *in, json_t **out);

/* Counts for cluster/status. */
typedef struct hx_cluster_counts {
    unsigned nodes, online, offline, connecting, vms, running;
} hx_cluster_counts;
void hx_cluster_counts_get(hx_cluster *cl, hx_cluster_counts *c);
