/* Storage pools: the node's pool cache and the libvirt pool events that keep it (see
 * hx_pools.h, backend/pools.h). Loaded at connect, then one pool refreshed per libvirt pool event
 * (lifecycle: defined, undefined, started, stopped, created, deleted; refresh:
 * virStoragePoolRefresh). The node's thread writes the cache under the node's lock; every
 * change stamps a version and emits a change. */
#include "auto.h"
#include "hx_log.h"
#include "hx_util.h"
#include "node.h"
#include "pools_priv.h"

#include <libvirt/virterror.h>
#include <string.h>

static const char *const hx_pool_states[] = {
    [VIR_STORAGE_POOL_INACTIVE] = "inactive",         [VIR_STORAGE_POOL_BUILDING] = "building",
    [VIR_STORAGE_POOL_RUNNING] = "running",           [VIR_STORAGE_POOL_DEGRADED] = "degraded",
    [VIR_STORAGE_POOL_INACCESSIBLE] = "inaccessible",
};

const char *hx_pool_state_str(int state)
{
    return hx_pool_enum_str(hx_pool_states, HX_POOL_NELEM(hx_pool_states), state);
}

/* ---- the cache (node thread writes, readers copy under the node's lock) ---- */

void hx_pools_clear(hx_pool_cache *pc)
{
    free(pc->v);
    pc->v = NULL;
    pc->n = pc->cap = 0;
}

ssize_t hx_pools_find_name(const hx_pool_cache *pc, const char *name)
{
    for (size_t i = 0; i < pc->n; i++)
        if (strcmp(pc->v[i].name, name) == 0)
            return (ssize_t)i;
    return -1;
}

static ssize_t hx_pools_find_uuid(const hx_pool_cache *pc, const char *uuid)
{
    for (size_t i = 0; i < pc->n; i++)
        if (strcmp(pc->v[i].uuid, uuid) == 0)
            return (ssize_t)i;
    return -1;
}

static void hx_pools_forget(hx_node *n, const char *uuid)
{
    char name[HX_POOL_NAME_MAX] = "";
    pthread_mutex_lock(&n->lock);
    hx_pool_cache *pc = &n->pools;
    ssize_t i = hx_pools_find_uuid(pc, uuid);
    if (i >= 0) {
        hx_strlcpy(name, pc->v[i].name, sizeof(name));
        memmove(&pc->v[i], &pc->v[i + 1], (pc->n - (size_t)i - 1) * sizeof(*pc->v));
        pc->n--;
        n->version = hx_cluster_stamp(n->cl);
        n->changed_ns = hx_now_real_ns();
    }
    pthread_mutex_unlock(&n->lock);
    if (name[0])
        hx_node_emit(n, (hx_change){.kind = HX_CHANGE_POOL, .pool = name, .vanished = 1});
}

/* Stores e; with force, stamps a new version even when nothing we keep changed (a refresh
 * event: capacity and volumes may have moved). */
static void hx_pools_store(hx_node *n, const hx_pool_entry *e, int force)
{
    int appeared = 0, state_changed = 0, changed = force;
    pthread_mutex_lock(&n->lock);
    hx_pool_cache *pc = &n->pools;
    ssize_t i = hx_pools_find_uuid(pc, e->uuid);
    if (i >= 0 && strcmp(pc->v[i].name, e->name) != 0) {
        /* Renamed (libvirt cannot do it today, but a define over the same UUID could). */
        memmove(&pc->v[i], &pc->v[i + 1], (pc->n - (size_t)i - 1) * sizeof(*pc->v));
        pc->n--;
        i = -1;
    }
    if (i < 0) {
        if (pc->n == pc->cap) {
            size_t cap = pc->cap ? pc->cap * 2 : 8;
            hx_pool_entry *nv = realloc(pc->v, cap * sizeof(*nv));
            if (!nv) {
                pthread_mutex_unlock(&n->lock);
                hx_err("node %s: out of memory storing pool %s", n->name, e->name);
                return;
            }
            pc->v = nv;
            pc->cap = cap;
        }
        size_t pos = 0;
        while (pos < pc->n && strcmp(pc->v[pos].name, e->name) < 0)
            pos++;
        memmove(&pc->v[pos + 1], &pc->v[pos], (pc->n - pos) * sizeof(*pc->v));
        pc->v[pos] = *e;
        pc->n++;
        i = (ssize_t)pos;
        appeared = changed = state_changed = 1;
        n->version = hx_cluster_stamp(n->cl);
        n->changed_ns = hx_now_real_ns();
    } else if (pc->v[i].state != e->state) {
        pc->v[i].state = e->state;
        changed = state_changed = 1;
    }
    if (changed) {
        pc->v[i].version = hx_cluster_stamp(n->cl);
        pc->v[i].changed_ns = hx_now_real_ns();
    }
    pthread_mutex_unlock(&n->lock);
    if (changed)
        hx_node_emit(n, (hx_change){.kind = HX_CHANGE_POOL,
                                    .pool = e->name,
                                    .state = hx_pool_state_str(e->state),
                                    .appeared = appeared,
                                    .state_changed = state_changed});
}

/* Reads what the cache keeps of pool p. -1 when libvirt failed (logged). */
static int hx_pools_load(hx_node *n, virStoragePoolPtr p, hx_pool_entry *e)
{
    memset(e, 0, sizeof(*e));
    const char *name = virStoragePoolGetName(p);
    virStoragePoolInfo info;
    if (!name || virStoragePoolGetUUIDString(p, e->uuid) < 0 ||
        virStoragePoolGetInfo(p, &info) < 0) {
        hx_err("node %s: cannot read pool %s: %s", n->name, name ? name : "?",
               virGetLastErrorMessage());
        return -1;
    }
    hx_strlcpy(e->name, name, sizeof(e->name));
    e->state = info.state;
    return 0;
}

void hx_pools_refresh(hx_node *n, const char *uuid)
{
    hx_autopool virStoragePoolPtr p = virStoragePoolLookupByUUIDString(n->conn, uuid);
    if (!p) {
        if (virGetLastErrorCode() == VIR_ERR_NO_STORAGE_POOL)
            hx_pools_forget(n, uuid);
        else
            hx_err("node %s: cannot look up pool %s: %s", n->name, uuid, virGetLastErrorMessage());
        return;
    }
    hx_pool_entry e;
    if (hx_pools_load(n, p, &e) == 0)
        hx_pools_store(n, &e, 1);
}

void hx_pools_refresh_all(hx_node *n)
{
    virStoragePoolPtr *pools = NULL;
    int np = virConnectListAllStoragePools(n->conn, &pools, 0);
    if (np < 0) {
        hx_err("node %s: cannot list storage pools: %s", n->name, virGetLastErrorMessage());
        return;
    }
    hx_pool_entry *seen = calloc((size_t)np + 1, sizeof(*seen));
    size_t ns = 0;
    for (int i = 0; i < np; i++) {
        if (seen && hx_pools_load(n, pools[i], &seen[ns]) == 0)
            hx_pools_store(n, &seen[ns++], 0);
        virStoragePoolFree(pools[i]);
    }
    free(pools);
    /* Forget what libvirt no longer has. */
    for (;;) {
        char gone[HX_UUID_LEN] = "";
        pthread_mutex_lock(&n->lock);
        for (size_t i = 0; seen && i < n->pools.n && !gone[0]; i++) {
            int found = 0;
            for (size_t j = 0; j < ns && !found; j++)
                found = strcmp(seen[j].uuid, n->pools.v[i].uuid) == 0;
            if (!found)
                hx_strlcpy(gone, n->pools.v[i].uuid, sizeof(gone));
        }
        pthread_mutex_unlock(&n->lock);
        if (!gone[0])
            break;
        hx_pools_forget(n, gone);
    }
    free(seen);
}

/* ---- libvirt callbacks: on libvirt's event loop thread, they only queue work ---- */

/* A pool changed (refreshed, or any lifecycle event): the node's thread reads it again. */
static void hx_pools_on_refresh(virConnectPtr c, virStoragePoolPtr p, void *opaque)
{
    (void)c;
    char uuid[VIR_UUID_STRING_BUFLEN];
    if (virStoragePoolGetUUIDString(p, uuid) == 0)
        hx_node_enqueue_work(opaque, HX_REQ_POOL, uuid);
}

static void hx_pools_on_lifecycle(virConnectPtr c, virStoragePoolPtr p, int event, int detail,
                                  void *opaque)
{
    hx_debug("node %s: pool %s lifecycle event %d/%d", ((hx_node *)opaque)->name,
             virStoragePoolGetName(p), event, detail);
    hx_pools_on_refresh(c, p, opaque);
}

void hx_pools_subscribe(hx_node *n)
{
    hx_pool_cache *pc = &n->pools;
    struct {
        int id;
        virConnectStoragePoolEventGenericCallback cb;
    } subs[] = {
        {VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE,
         VIR_STORAGE_POOL_EVENT_CALLBACK(hx_pools_on_lifecycle)},
        {VIR_STORAGE_POOL_EVENT_ID_REFRESH, VIR_STORAGE_POOL_EVENT_CALLBACK(hx_pools_on_refresh)},
    };
    pc->n_cb = 0;
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        int id =
            virConnectStoragePoolEventRegisterAny(n->conn, NULL, subs[i].id, subs[i].cb, n, NULL);
        if (id < 0)
            hx_warn("node %s: cannot subscribe to storage pool event %d: %s", n->name, subs[i].id,
                    virGetLastErrorMessage());
        else
            pc->cb_ids[pc->n_cb++] = id;
    }
}

void hx_pools_unsubscribe(hx_node *n)
{
    hx_pool_cache *pc = &n->pools;
    for (int i = 0; i < pc->n_cb; i++)
        virConnectStoragePoolEventDeregisterAny(n->conn, pc->cb_ids[i]);
    pc->n_cb = 0;
}
