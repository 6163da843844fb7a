/* A node's cache of its VMs: store, forget, find, and the changes each store emits.
 *
 * Everything libvirt says about a domain arrives here (from node_refresh.c, on the node's
 * thread); readers copy out of the cache under n->lock (backend/cluster_read.c).
 */
#include "node_priv.h"
#include "hx_log.h"
#include "hx_stats.h"
#include "hx_util.h"

#include <stdlib.h>
#include <string.h>

void hx_dom_clear(hx_dom *d)
{
    hx_vm_view_clear(&d->v);
    if (d->dom)
        virDomainFree(d->dom);
    d->dom = NULL;
}

void hx_node_emit(hx_node *n, hx_change c)
{
    c.node = n->name;
    hx_cluster_emit(n->cl, &c);
}

static int hx_str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int hx_dom_same(const hx_dom *a, const hx_dom *b)
{
    return strcmp(a->v.name, b->v.name) == 0 && a->v.state == b->v.state &&
           a->v.reason == b->v.reason && a->v.id == b->v.id && a->v.persistent == b->v.persistent &&
           a->v.autostart == b->v.autostart && hx_str_eq(a->v.xml_config, b->v.xml_config) &&
           hx_str_eq(a->v.xml_live, b->v.xml_live);
}

static int hx_dom_cmp_name(const void *a, const void *b)
{
    return strcmp(((const hx_dom *)a)->v.name, ((const hx_dom *)b)->v.name);
}

ssize_t hx_node_find_dom(hx_node *n, const char *name, const char *uuid)
{
    hx_dom key;
    hx_strlcpy(key.v.name, name, sizeof(key.v.name));
    hx_dom *d = bsearch(&key, n->doms, n->n_doms, sizeof(hx_dom), hx_dom_cmp_name);
    if (!d || (uuid && strcmp(d->v.uuid, uuid) != 0))
        return -1;
    return d - n->doms;
}

ssize_t hx_node_find_uuid(hx_node *n, const char *uuid)
{
    for (size_t i = 0; i < n->n_doms; i++)
        if (strcmp(n->doms[i].v.uuid, uuid) == 0)
            return (ssize_t)i;
    return -1;
}

static void hx_node_remove_at(hx_node *n, size_t i)
{
    hx_dom_clear(&n->doms[i]);
    memmove(&n->doms[i], &n->doms[i + 1], (n->n_doms - i - 1) * sizeof(hx_dom));
    n->n_doms--;
}

void hx_node_store_dom(hx_node *n, hx_dom *d, uint64_t read_stamp)
{
    char name[HX_VM_NAME_MAX], old_name[HX_VM_NAME_MAX] = "";
    hx_strlcpy(name, d->v.name, sizeof(name));
    int appeared = 0, changed = 1, state_changed = 1, config_changed = 1;
    const char *state = hx_stats_state_name(d->v.state, d->v.reason);
    pthread_mutex_lock(&n->lock);
    ssize_t i = hx_node_find_uuid(n, d->v.uuid);
    if (i >= 0) {
        hx_dom *old = &n->doms[i];
        d->noted_stamp = old->noted_stamp;
        if (old->noted_stamp > read_stamp) {
            /* Our own action noted a newer state after this refresh read libvirt; libvirt's
             * event for that action refreshes again. */
            d->v.state = old->v.state;
            d->v.reason = old->v.reason;
            state = hx_stats_state_name(d->v.state, d->v.reason);
        }
        state_changed = old->v.state != d->v.state || old->v.reason != d->v.reason;
        config_changed =
            !hx_str_eq(old->v.xml_config, d->v.xml_config) || old->v.autostart != d->v.autostart;
        if (hx_dom_same(old, d)) {
            changed = 0;
            hx_dom_clear(d);
        } else {
            d->prev_cpu_ns = old->prev_cpu_ns;
            d->prev_wall_ns = old->prev_wall_ns;
            if (strcmp(old->v.name, d->v.name) != 0)
                hx_strlcpy(old_name, old->v.name, sizeof(old_name));
            hx_node_remove_at(n, (size_t)i);
        }
    } else {
        appeared = 1;
    }
    if (changed) {
        if (n->n_doms == n->cap_doms) {
            size_t cap = n->cap_doms ? n->cap_doms * 2 : 16;
            hx_dom *nd = realloc(n->doms, cap * sizeof(hx_dom));
            if (!nd) {
                pthread_mutex_unlock(&n->lock);
                hx_err("node %s: out of memory storing domain %s", n->name, name);
                hx_dom_clear(d);
                return;
            }
            n->doms = nd;
            n->cap_doms = cap;
        }
        d->v.version = hx_cluster_stamp(n->cl);
        d->v.changed_ns = hx_now_real_ns();
        size_t pos = 0;
        while (pos < n->n_doms && strcmp(n->doms[pos].v.name, d->v.name) < 0)
            pos++;
        memmove(&n->doms[pos + 1], &n->doms[pos], (n->n_doms - pos) * sizeof(hx_dom));
        n->doms[pos] = *d;
        n->n_doms++;
        if (appeared || old_name[0]) {
            n->version = d->v.version;
            n->changed_ns = d->v.changed_ns;
        }
    }
    char uuid[HX_UUID_LEN];
    hx_strlcpy(uuid, d->v.uuid, sizeof(uuid));
    pthread_mutex_unlock(&n->lock);
    if (old_name[0])
        hx_node_emit(
            n,
            (hx_change){.kind = HX_CHANGE_VM, .vm_name = old_name, .vm_uuid = uuid, .vanished = 1});
    if (changed) {
        hx_node_emit(n, (hx_change){.kind = HX_CHANGE_VM,
                                    .vm_name = name,
                                    .vm_uuid = uuid,
                                    .appeared = appeared || old_name[0],
                                    .state = state,
                                    .state_changed = state_changed,
                                    .config_changed = config_changed && !appeared});
    }
}

void hx_node_forget_uuid(hx_node *n, const char *uuid)
{
    char name[HX_VM_NAME_MAX] = "";
    pthread_mutex_lock(&n->lock);
    ssize_t i = hx_node_find_uuid(n, uuid);
    if (i >= 0) {
        hx_strlcpy(name, n->doms[i].v.name, sizeof(name));
        hx_node_remove_at(n, (size_t)i);
        n->version = hx_cluster_stamp(n->cl);
        n->changed_ns = hx_now_real_ns();
    }
    pthread_mutex_unlock(&n->lock);
    if (name[0])
        hx_node_emit(
            n, (hx_change){.kind = HX_CHANGE_VM, .vm_name = name, .vm_uuid = uuid, .vanished = 1});
}

void hx_node_note_state(hx_node *n, const char *uuid, int state, int reason)
{
    char name[HX_VM_NAME_MAX] = "";
    pthread_mutex_lock(&n->lock);
    ssize_t i = hx_node_find_uuid(n, uuid);
    if (i >= 0 && (n->doms[i].v.state != state || n->doms[i].v.reason != reason)) {
        hx_dom *d = &n->doms[i];
        d->v.state = state;
        d->v.reason = reason;
        d->v.version = hx_cluster_stamp(n->cl);
        d->noted_stamp = d->v.version;
        d->v.changed_ns = hx_now_real_ns();
        hx_strlcpy(name, d->v.name, sizeof(name));
    }
    pthread_mutex_unlock(&n->lock);
    if (!name[0])
        return;
    hx_change c = {.kind = HX_CHANGE_VM,
                   .node = n->name,
                   .vm_name = name,
                   .vm_uuid = uuid,
                   .state = hx_stats_state_name(state, reason),
                   .state_changed = 1};
    hx_cluster_emit(n->cl, &c);
}

virDomainPtr hx_node_dom(hx_node *n, const char *uuid)
{
    pthread_mutex_lock(&n->lock);
    ssize_t i = n->status == HX_NODE_ONLINE ? hx_node_find_uuid(n, uuid) : -1;
    virDomainPtr d = i >= 0 ? n->doms[i].dom : NULL;
    if (d && virDomainRef(d) < 0)
        d = NULL;
    pthread_mutex_unlock(&n->lock);
    return d;
}
