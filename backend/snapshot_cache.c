/* The version of the snapshots and the per-VM cache of their names (see hx_snapshots.h).
 * libvirt sends no events for snapshots: the listing of a VM is kept here for a short time, a
 * change of ours drops it and moves the version. hx_sc_mu guards the cache; it is held for no
 * libvirt call. */
#include "snapshots_priv.h"

#include <pthread.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

static _Atomic uint64_t hx_snap_ver = 1;

uint64_t hx_snap_version(void)
{
    return atomic_load(&hx_snap_ver);
}

typedef struct hx_snap_cache {
    char uuid[HX_UUID_LEN];
    json_t *list; /* {"names": [...], "current": name or null} */
    long long at_ns;
} hx_snap_cache;

static pthread_mutex_t hx_sc_mu = PTHREAD_MUTEX_INITIALIZER;
static hx_snap_cache *hx_sc;
static size_t hx_n_sc, hx_cap_sc;
#define HX_SNAP_CACHE_MAX 4096

static ssize_t hx_sc_find(const char *uuid)
{
    for (size_t i = 0; i < hx_n_sc; i++)
        if (strcmp(hx_sc[i].uuid, uuid) == 0)
            return (ssize_t)i;
    return -1;
}

json_t *hx_snap_cache_get(const char *uuid, int max_age_ms)
{
    json_t *out = NULL;
    long long now = hx_now_mono_ns();
    pthread_mutex_lock(&hx_sc_mu);
    ssize_t i = hx_sc_find(uuid);
    if (i >= 0 && max_age_ms > 0 && now - hx_sc[i].at_ns < (long long)max_age_ms * 1000000LL)
        out = json_deep_copy(hx_sc[i].list);
    pthread_mutex_unlock(&hx_sc_mu);
    return out;
}

void hx_snap_cache_put(const char *uuid, json_t *list)
{
    pthread_mutex_lock(&hx_sc_mu);
    ssize_t i = hx_sc_find(uuid);
    if (i < 0 && hx_n_sc >= HX_SNAP_CACHE_MAX) {
        for (size_t j = 0; j < hx_n_sc; j++)
            json_decref(hx_sc[j].list);
        hx_n_sc = 0;
    }
    if (i < 0 && hx_n_sc == hx_cap_sc) {
        size_t cap = hx_cap_sc ? hx_cap_sc * 2 : 16;
        hx_snap_cache *nc = realloc(hx_sc, cap * sizeof(*hx_sc));
        if (!nc) {
            pthread_mutex_unlock(&hx_sc_mu);
            return;
        }
        hx_sc = nc;
        hx_cap_sc = cap;
    }
    if (i < 0) {
        i = (ssize_t)hx_n_sc++;
        hx_strlcpy(hx_sc[i].uuid, uuid, sizeof(hx_sc[i].uuid));
        hx_sc[i].list = NULL;
    }
    /* A listing that differs from the last one is a change nobody announced (virsh). */
    if (hx_sc[i].list && !json_equal(hx_sc[i].list, list))
        atomic_fetch_add(&hx_snap_ver, 1);
    json_decref(hx_sc[i].list);
    hx_sc[i].list = json_deep_copy(list);
    hx_sc[i].at_ns = hx_now_mono_ns();
    pthread_mutex_unlock(&hx_sc_mu);
}

void hx_snap_cache_changed(const char *uuid)
{
    pthread_mutex_lock(&hx_sc_mu);
    ssize_t i = hx_sc_find(uuid);
    if (i >= 0) {
        json_decref(hx_sc[i].list);
        hx_sc[i] = hx_sc[--hx_n_sc];
    }
    pthread_mutex_unlock(&hx_sc_mu);
    atomic_fetch_add(&hx_snap_ver, 1);
}
