/* Shared between the files of the pools module only (see hx_pools.h, backend/pools.h):
 * pools_cache.c (the cache and its events), pools_backing.c (the backing filesystem),
 * pools_query.c (the tree's side and status.json), pools_volumes.c (volume reads). The
 * cache is read and written under the node's lock; the *_fn readers run on the node's thread. */
#pragma once

#include "hx_pools.h"
#include "node.h"

#include <jansson.h>
#include <libvirt/libvirt.h>
#include <libxml/tree.h>
#include <stddef.h>
#include <sys/types.h>

#define HX_POOL_NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* names[v] of a table indexed by a libvirt enum, or "unknown" for a value it does not name. */
static inline const char *hx_pool_enum_str(const char *const *names, size_t n, int v)
{
    return v >= 0 && (size_t)v < n && names[v] ? names[v] : "unknown";
}

/* ---- pools_cache.c ---- */

/* A virStoragePoolState as status.json and the changes name it. */
const char *hx_pool_state_str(int state);
/* Index of the pool named name in the cache (node lock held), or -1. */
ssize_t hx_pools_find_name(const hx_pool_cache *pc, const char *name);

/* ---- pools_backing.c ---- */

/* Backing filesystem of the pool whose XML is doc (fs gets "" when unknown). */
void hx_pool_backing_of(virConnectPtr c, xmlDocPtr doc, char *fs, size_t fs_size, int *reflink);

/* ---- pools_query.c: helpers of the live reads ---- */

/* libvirt's XML of a pool or volume parsed, without network or error output; NULL when bad. */
xmlDocPtr hx_pool_parse(const char *xml, const char *what);
/* A JSON string, or null for NULL. */
json_t *hx_pool_str0(const char *s);
/* The string member key of a request ("node", "pool", "vol"), "" when missing. */
const char *hx_pool_in(const json_t *in, const char *key);
/* The pool named in in, or NULL with *rc set (-ENOENT, or -EIO logged). */
virStoragePoolPtr hx_pool_open(virConnectPtr c, const json_t *in, int *rc);

/* The node, referenced and locked, when online. -ENOENT, -EHOSTDOWN. */
int hx_pools_online(hx_cluster *cl, const char *node, hx_node **out);
/* Unlocks and unreferences what hx_pools_online gave. */
void hx_pools_release(hx_node *n);
/* Runs fn on the node's thread with {"node", "pool", "vol"} once the pool is known. */
int hx_pools_exec(hx_cluster *cl, const char *node, const char *pool, const char *vol,
                  hx_node_fn fn, json_t **out);
