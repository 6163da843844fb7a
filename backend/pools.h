/* Internal to the backend: the pool cache a node's thread keeps (see hx_pools.h; the functions
 * are in backend/pools_cache.c). */
#pragma once

#include "hx_cluster.h"

#include <stddef.h>
#include <stdint.h>

#define HX_POOL_NAME_MAX 256

typedef struct hx_pool_entry {
    char name[HX_POOL_NAME_MAX];
    char uuid[HX_UUID_LEN];
    int state; /* virStoragePoolState */
    uint64_t version;
    long long changed_ns;
} hx_pool_entry;

typedef struct hx_pool_cache {
    hx_pool_entry *v; /* sorted by name; under the node's lock */
    size_t n, cap;
    int cb_ids[2]; /* owned by the node's thread */
    int n_cb;
} hx_pool_cache;

struct hx_node;

/* Node thread: after connecting, subscribe to pool events and load every pool. */
void hx_pools_subscribe(struct hx_node *n);
void hx_pools_refresh_all(struct hx_node *n);
/* Node thread: one pool (by UUID) after one of its events. */
void hx_pools_refresh(struct hx_node *n, const char *uuid);
/* Node thread, before closing the connection. */
void hx_pools_unsubscribe(struct hx_node *n);
/* Empties the cache (node lock held, or the node unused). */
void hx_pools_clear(hx_pool_cache *pc);
