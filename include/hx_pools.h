/* Storage pools and volumes of a node.
 *
 * Pools have libvirt events (lifecycle, refresh): the node's thread keeps a cache of their
 * names, UUIDs and states, and every event stamps the pool with a new version. Volumes have no
 * events: listings and facts are read live through the node's thread (hx_cluster_node_exec).
 *
 * Owns: the node's pool cache (hx_pool_cache in backend/pools.h, kept by the node's thread,
 * read and written under the node's lock) and the pool and volume documents. Callers: worker
 * threads holding a connection (hx_pool_space, hx_pool_backing: no lock taken), the tree from
 * FUSE workers (hx_cluster_*: they take the node's lock briefly, never across a libvirt call,
 * and run libvirt reads on the node's thread). Files: backend/pools_cache.c (cache and events),
 * pools_backing.c (backing filesystem, space), pools_query.c (pool names, versions, status),
 * pools_volumes.c (volume reads); shared declarations in backend/pools_priv.h.
 */
#pragma once

#include "hx_cluster.h"

#include <jansson.h>
#include <libvirt/libvirt.h>
#include <stddef.h>
#include <stdint.h>

/* ---- for worker threads holding a connection (hx_node_conn) ---- */

/* Bytes still free in a pool (virStoragePoolGetInfo's available). 0, -ENOENT (no such pool),
 * -EIO (libvirt failed; logged). */
int hx_pool_space(virConnectPtr c, const char *pool, unsigned long long *available);

/* Filesystem under a pool's target path, as the node sees it: fs is "btrfs", "ext4", "xfs",
 * ... or "" when unknown (a remote node, a pool without a filesystem); *reflink is 1 when
 * copies there can share extents (btrfs). 0, -ENOENT, -EIO. */
int hx_pool_backing(virConnectPtr c, const char *pool, char *fs, size_t fs_size, int *reflink);

/* ---- for the tree (FUSE workers): -ENOENT, -EHOSTDOWN, -ETIMEDOUT, -EIO ---- */

/* Sorted names of the node's pools (from the cache). */
int hx_cluster_pool_names(hx_cluster *cl, const char *node, char ***names);
/* Whether the pool exists, and the version its events moved. */
int hx_cluster_pool_version(hx_cluster *cl, const char *node, const char *pool, uint64_t *version,
                            long long *changed_ns);
/* status.json of a pool, read now (docs/tree.md). */
int hx_cluster_pool_status(hx_cluster *cl, const char *node, const char *pool, json_t **out);
/* Sorted volume names of a pool, read now; empty when the pool is not running. */
int hx_cluster_vol_names(hx_cluster *cl, const char *node, const char *pool, char ***names);
/* Whether a volume exists now. */
int hx_cluster_vol_exists(hx_cluster *cl, const char *node, const char *pool, const char *vol);
/* info.json of a volume, read now, with used_by from the node's VM cache. */
int hx_cluster_vol_info(hx_cluster *cl, const char *node, const char *pool, const char *vol,
                        json_t **out);
