/* Storage volumes of a pool (see hx_pools.h): listings, existence and info.json, read live on
 * the node's thread (volumes have no libvirt events), used_by from the node's VM cache. */
#include "auto.h"
#include "hx_log.h"
#include "hx_util.h"
#include "node.h"
#include "pools_priv.h"
#include "xmltext.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <string.h>

static const char *const hx_vol_types[] = {
    [VIR_STORAGE_VOL_FILE] = "file",     [VIR_STORAGE_VOL_BLOCK] = "block",
    [VIR_STORAGE_VOL_DIR] = "dir",       [VIR_STORAGE_VOL_NETWORK] = "network",
    [VIR_STORAGE_VOL_NETDIR] = "netdir", [VIR_STORAGE_VOL_PLOOP] = "ploop",
};

static const char *hx_vol_type_str(int type)
{
    return hx_pool_enum_str(hx_vol_types, HX_POOL_NELEM(hx_vol_types), type);
}

/* ---- live reads on the node's thread (hx_node_fn) ---- */

static int hx_str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int hx_vol_names_fn(virConnectPtr c, const json_t *in, json_t **out)
{
    int rc = 0;
    hx_autopool virStoragePoolPtr p = hx_pool_open(c, in, &rc);
    if (!p)
        return rc;
    json_t *names = json_array();
    /* An inactive pool has no volume list (libvirt refuses): it shows none. */
    if (virStoragePoolIsActive(p) != 1) {
        *out = names;
        return 0;
    }
    virStorageVolPtr *vols = NULL;
    int nv = virStoragePoolListAllVolumes(p, &vols, 0);
    if (nv < 0) {
        hx_err("node %s: cannot list the volumes of pool %s: %s", hx_pool_in(in, "node"),
               hx_pool_in(in, "pool"), virGetLastErrorMessage());
        json_decref(names);
        return -EIO;
    }
    const char **v = calloc((size_t)nv + 1, sizeof(char *));
    for (int i = 0; v && i < nv; i++)
        v[i] = virStorageVolGetName(vols[i]);
    if (v) {
        qsort(v, (size_t)nv, sizeof(char *), hx_str_cmp);
        for (int i = 0; i < nv; i++)
            json_array_append_new(names, json_string(v[i]));
    }
    free(v);
    for (int i = 0; i < nv; i++)
        virStorageVolFree(vols[i]);
    free(vols);
    *out = names;
    return 0;
}

/* The volume named in in (in the pool named in in), or NULL with *rc set. */
static virStorageVolPtr hx_vol_open(virConnectPtr c, const json_t *in, int *rc)
{
    hx_autopool virStoragePoolPtr p = hx_pool_open(c, in, rc);
    if (!p)
        return NULL;
    virStorageVolPtr v = virStorageVolLookupByName(p, hx_pool_in(in, "vol"));
    if (!v) {
        int code = virGetLastErrorCode();
        /* An inactive pool answers "operation invalid": its volumes are not there either. */
        *rc = code == VIR_ERR_NO_STORAGE_VOL || code == VIR_ERR_OPERATION_INVALID ? -ENOENT : -EIO;
        if (*rc == -EIO)
            hx_err("node %s: cannot look up volume %s/%s: %s", hx_pool_in(in, "node"),
                   hx_pool_in(in, "pool"), hx_pool_in(in, "vol"), virGetLastErrorMessage());
    }
    return v;
}

static int hx_vol_exists_fn(virConnectPtr c, const json_t *in, json_t **out)
{
    int rc = 0;
    hx_autovol virStorageVolPtr v = hx_vol_open(c, in, &rc);
    if (!v)
        return rc;
    *out = json_true();
    return 0;
}

static int hx_vol_info_fn(virConnectPtr c, const json_t *in, json_t **out)
{
    int rc = 0;
    hx_autovol virStorageVolPtr v = hx_vol_open(c, in, &rc);
    if (!v)
        return rc;
    virStorageVolInfo info;
    hx_autofree char *path = virStorageVolGetPath(v);
    const char *key = virStorageVolGetKey(v);
    hx_autofree char *xml = virStorageVolGetXMLDesc(v, 0);
    hx_autoxml xmlDocPtr doc = xml ? hx_pool_parse(xml, "volume.xml") : NULL;
    if (virStorageVolGetInfo(v, &info) < 0 || !path || !doc) {
        hx_err("node %s: cannot read volume %s/%s: %s", hx_pool_in(in, "node"),
               hx_pool_in(in, "pool"), hx_pool_in(in, "vol"), virGetLastErrorMessage());
        return -EIO;
    }
    hx_autofree char *format = hx_xml_text(doc, "/volume/target/format/@type");
    hx_autofree char *backing = hx_xml_text(doc, "/volume/backingStore/path");
    json_t *d = json_object();
    json_object_set_new(d, "name", json_string(virStorageVolGetName(v)));
    json_object_set_new(d, "key", hx_pool_str0(key));
    json_object_set_new(d, "path", json_string(path));
    json_object_set_new(d, "type", json_string(hx_vol_type_str(info.type)));
    json_object_set_new(d, "format", hx_pool_str0(format));
    json_object_set_new(d, "capacity_bytes", json_integer((json_int_t)info.capacity));
    json_object_set_new(d, "allocation_bytes", json_integer((json_int_t)info.allocation));
    json_object_set_new(d, "backing_store", hx_pool_str0(backing));
    *out = d;
    return 0;
}

/* ---- the tree's side ---- */

int hx_cluster_vol_names(hx_cluster *cl, const char *node, const char *pool, char ***names)
{
    hx_autojson json_t *arr = NULL;
    int r = hx_pools_exec(cl, node, pool, NULL, hx_vol_names_fn, &arr);
    if (r < 0)
        return r;
    char **v = calloc(json_array_size(arr) + 1, sizeof(char *));
    size_t i, k = 0;
    json_t *s;
    json_array_foreach (arr, i, s)
        if (v && (v[k] = strdup(json_string_value(s))))
            k++;
    *names = v;
    return v ? 0 : -ENOMEM;
}

int hx_cluster_vol_exists(hx_cluster *cl, const char *node, const char *pool, const char *vol)
{
    hx_autojson json_t *yes = NULL;
    return hx_pools_exec(cl, node, pool, vol, hx_vol_exists_fn, &yes);
}

/* Whether one of the disks of a config.json (text) has source path or "pool/vol". */
static int hx_pools_disk_uses(const char *config, const char *path, const char *pool_vol)
{
    hx_autojson json_t *cfg = config ? json_loads(config, 0, NULL) : NULL;
    size_t i;
    json_t *disk;
    json_array_foreach (json_object_get(cfg, "disks"), i, disk) {
        const char *src = json_string_value(json_object_get(disk, "source"));
        if (src && (strcmp(src, path) == 0 || strcmp(src, pool_vol) == 0))
            return 1;
    }
    return 0;
}

int hx_cluster_vol_info(hx_cluster *cl, const char *node, const char *pool, const char *vol,
                        json_t **out)
{
    hx_autojson json_t *d = NULL;
    int r = hx_pools_exec(cl, node, pool, vol, hx_vol_info_fn, &d);
    if (r < 0)
        return r;
    /* used_by: the VMs of the node whose persistent or running configuration has a disk on
     * this volume, by path or as a pool/volume pair. From the cache: no libvirt call. */
    const char *path = json_string_value(json_object_get(d, "path"));
    hx_autofree char *pool_vol = NULL;
    if (asprintf(&pool_vol, "%s/%s", pool, vol) < 0)
        return -ENOMEM;
    json_t *users = json_array();
    json_object_set_new(d, "used_by", users);
    hx_node *n;
    r = hx_pools_online(cl, node, &n);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n->n_doms; i++) {
        const hx_vm_view *v = &n->doms[i].v;
        if (hx_pools_disk_uses(v->config_json, path, pool_vol) ||
            hx_pools_disk_uses(v->live_json, path, pool_vol))
            json_array_append_new(users, json_string(v->name));
    }
    hx_pools_release(n);
    *out = hx_steal(&d);
    return 0;
}
