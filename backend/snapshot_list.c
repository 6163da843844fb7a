/* The reads of the snapshots module: names, existence, info.json and descriptions (see
 * hx_snapshots.h). libvirt is asked on the node's own thread (hx_cluster_node_exec, bounded
 * wait); listings go through the cache of snapshot_cache.c. */
#include "snapshots_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int hx_snap_cmp_json(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

json_t *hx_snap_sorted(json_t *arr)
{
    size_t n = json_array_size(arr);
    json_t **v = calloc(n ? n : 1, sizeof(*v));
    json_t *out = json_array();
    for (size_t i = 0; v && i < n; i++)
        v[i] = json_array_get(arr, i);
    if (v && n)
        qsort(v, n, sizeof(*v), hx_snap_cmp_json);
    for (size_t i = 0; v && i < n; i++)
        json_array_append(out, v[i]);
    free(v);
    return out;
}

/* Sorted names of a snapshot array (freed here) as a JSON array. */
static json_t *hx_snap_names_json(virDomainSnapshotPtr *snaps, int n)
{
    hx_autojson json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_string(virDomainSnapshotGetName(snaps[i])));
    for (int i = 0; i < n; i++)
        virDomainSnapshotFree(snaps[i]);
    free(snaps);
    return hx_snap_sorted(arr);
}

/* The domain named by the request's "uuid" (NULL with libvirt's error). */
static virDomainPtr hx_snap_exec_dom(hx_virconn conn, const json_t *in)
{
    return virDomainLookupByUUIDString(conn, json_string_value(json_object_get(in, "uuid")));
}

static int hx_snap_exec_list(hx_virconn conn, const json_t *in, json_t **out)
{
    hx_autodom virDomainPtr dom = hx_snap_exec_dom(conn, in);
    if (!dom)
        return hx_snap_virt_errno();
    virDomainSnapshotPtr *snaps = NULL;
    int n = virDomainListAllSnapshots(dom, &snaps, 0);
    if (n < 0)
        return hx_snap_virt_errno();
    json_t *doc = json_object();
    /* libvirt's snapshots and the btrfs snapshots of the domain's metadata, in one listing. */
    hx_autojson json_t *names = hx_snap_names_json(snaps, n);
    hx_autoxml xmlDocPtr meta = hx_snap_meta_load(dom, 0);
    hx_snap_bt_names(meta, NULL, names);
    json_object_set_new(doc, "names", hx_snap_sorted(names));
    json_t *cur = json_null();
    if (virDomainHasCurrentSnapshot(dom, 0) == 1) {
        hx_autosnap virDomainSnapshotPtr s = virDomainSnapshotCurrent(dom, 0);
        if (s)
            cur = json_string(virDomainSnapshotGetName(s));
    }
    hx_autofree char *bcur = json_is_null(cur) ? hx_snap_bt_current(meta) : NULL;
    if (bcur)
        cur = json_string(bcur);
    json_object_set_new(doc, "current", cur);
    *out = doc;
    return 0;
}

static int hx_snap_exec_info(hx_virconn conn, const json_t *in, json_t **out)
{
    const char *name = json_string_value(json_object_get(in, "snap"));
    hx_autodom virDomainPtr dom = hx_snap_exec_dom(conn, in);
    if (!dom)
        return hx_snap_virt_errno();
    hx_autoxml xmlDocPtr meta = hx_snap_meta_load(dom, 0);
    xmlNodePtr rec = hx_snap_bt_find(meta, name);
    if (rec) {
        *out = hx_snap_bt_info(meta, rec);
        return 0;
    }
    hx_autosnap virDomainSnapshotPtr s = virDomainSnapshotLookupByName(dom, name, 0);
    if (!s)
        return hx_snap_virt_errno();
    hx_autofree char *xml = virDomainSnapshotGetXMLDesc(s, 0);
    if (!xml)
        return hx_snap_virt_errno();
    int current = virDomainSnapshotIsCurrent(s, 0);
    virDomainSnapshotPtr *kids = NULL;
    int n = virDomainSnapshotListAllChildren(s, &kids, 0);
    if (n < 0)
        return hx_snap_virt_errno();
    hx_autojson json_t *children = hx_snap_names_json(kids, n);
    json_t *doc =
        hx_snap_info_from_xml(xml, current == 1, children, hx_snap_consistency(meta, name));
    if (!doc)
        return -EIO;
    *out = doc;
    return 0;
}

/* The UUID of VM vm of node in u, checked against uuid when one is given. */
static int hx_snap_vm_uuid(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                           char u[HX_UUID_LEN])
{
    int r = hx_cluster_vm_lookup(cl, node, vm, u);
    if (r < 0)
        return r;
    if (uuid && *uuid && strcmp(u, uuid) != 0)
        return -ENOENT;
    return 0;
}

static int hx_snap_fetch(hx_cluster *cl, const char *node, const char *uuid, json_t **out)
{
    hx_autojson json_t *in = json_pack("{s:s}", "uuid", uuid);
    int r = hx_cluster_node_exec(cl, node, hx_snap_exec_list, in, out);
    if (r == 0)
        hx_snap_cache_put(uuid, *out);
    return r;
}

int hx_snap_list(hx_cluster *cl, const char *node, const char *vm, const char *uuid, int max_age_ms,
                 char ***names, char **current)
{
    char u[HX_UUID_LEN];
    int r = hx_snap_vm_uuid(cl, node, vm, uuid, u);
    if (r < 0)
        return r;
    hx_autojson json_t *list = hx_snap_cache_get(u, max_age_ms);
    if (!list) {
        r = hx_snap_fetch(cl, node, u, &list);
        if (r < 0)
            return r;
    }
    if (names) {
        json_t *arr = json_object_get(list, "names");
        char **v = calloc(json_array_size(arr) + 1, sizeof(char *));
        if (!v)
            return -ENOMEM;
        for (size_t i = 0; i < json_array_size(arr); i++)
            v[i] = strdup(json_string_value(json_array_get(arr, i)));
        *names = v;
    }
    if (current) {
        const char *c = json_string_value(json_object_get(list, "current"));
        *current = c ? strdup(c) : NULL;
    }
    return 0;
}

static int hx_snap_in_list(json_t *list, const char *snap)
{
    size_t i;
    json_t *v;
    json_array_foreach (json_object_get(list, "names"), i, v)
        if (strcmp(json_string_value(v), snap) == 0)
            return 1;
    return 0;
}

int hx_snap_exists(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                   const char *snap)
{
    char u[HX_UUID_LEN];
    int r = hx_snap_vm_uuid(cl, node, vm, uuid, u);
    if (r < 0)
        return r;
    hx_autojson json_t *list = hx_snap_cache_get(u, 1000);
    if (list && hx_snap_in_list(list, snap))
        return 0;
    json_decref(list);
    list = NULL;
    r = hx_snap_fetch(cl, node, u, &list);
    if (r < 0)
        return r;
    return hx_snap_in_list(list, snap) ? 0 : -ENOENT;
}

int hx_snap_info(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                 const char *snap, json_t **out)
{
    char u[HX_UUID_LEN];
    int r = hx_snap_vm_uuid(cl, node, vm, uuid, u);
    if (r < 0)
        return r;
    hx_autojson json_t *in = json_pack("{s:s,s:s}", "uuid", u, "snap", snap);
    return hx_cluster_node_exec(cl, node, hx_snap_exec_info, in, out);
}

int hx_snap_description(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                        const char *snap, char **out)
{
    hx_autojson json_t *info = NULL;
    int r = hx_snap_info(cl, node, vm, uuid, snap, &info);
    if (r < 0)
        return r;
    const char *d = json_string_value(json_object_get(info, "description"));
    *out = strdup(d ? d : "");
    return *out ? 0 : -ENOMEM;
}
