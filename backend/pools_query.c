/* Storage pools, the tree's side (see hx_pools.h): the node online and its pool cache read under
 * the node's lock (names, versions), and the live reads run on the node's thread through
 * hx_cluster_node_exec (status.json), with the helpers the volume reads share. */
#include "auto.h"
#include "hx_log.h"
#include "hx_util.h"
#include "node.h"
#include "pools_priv.h"
#include "xmltext.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <string.h>

xmlDocPtr hx_pool_parse(const char *xml, const char *what)
{
    return xmlReadMemory(xml, (int)strlen(xml), what, NULL,
                         XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

json_t *hx_pool_str0(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* ---- live reads on the node's thread (hx_node_fn) ---- */

const char *hx_pool_in(const json_t *in, const char *key)
{
    const char *s = json_string_value(json_object_get(in, key));
    return s ? s : "";
}

/* The pool named in in, or NULL with *rc set (-ENOENT, or -EIO logged). */
virStoragePoolPtr hx_pool_open(virConnectPtr c, const json_t *in, int *rc)
{
    virStoragePoolPtr p = virStoragePoolLookupByName(c, hx_pool_in(in, "pool"));
    if (!p) {
        *rc = virGetLastErrorCode() == VIR_ERR_NO_STORAGE_POOL ? -ENOENT : -EIO;
        if (*rc == -EIO)
            hx_err("node %s: cannot look up pool %s: %s", hx_pool_in(in, "node"),
                   hx_pool_in(in, "pool"), virGetLastErrorMessage());
    }
    return p;
}

static int hx_pool_status_fn(virConnectPtr c, const json_t *in, json_t **out)
{
    int rc = 0;
    const char *node = hx_pool_in(in, "node");
    hx_autopool virStoragePoolPtr p = hx_pool_open(c, in, &rc);
    if (!p)
        return rc;
    const char *name = virStoragePoolGetName(p);
    char uuid[VIR_UUID_STRING_BUFLEN];
    virStoragePoolInfo info;
    int autostart = 0;
    int persistent = virStoragePoolIsPersistent(p);
    hx_autofree char *xml = virStoragePoolGetXMLDesc(p, 0);
    if (virStoragePoolGetUUIDString(p, uuid) < 0 || virStoragePoolGetInfo(p, &info) < 0 ||
        virStoragePoolGetAutostart(p, &autostart) < 0 || persistent < 0 || !xml) {
        hx_err("node %s: cannot read pool %s: %s", node, name, virGetLastErrorMessage());
        return -EIO;
    }
    hx_autoxml xmlDocPtr doc = hx_pool_parse(xml, "pool.xml");
    if (!doc) {
        hx_err("node %s: pool %s: libvirt's XML does not parse", node, name);
        return -EIO;
    }
    hx_autofree char *type = hx_xml_text(doc, "/pool/@type");
    hx_autofree char *path = hx_xml_text(doc, "/pool/target/path");
    /* Volumes can be counted only while the pool runs (libvirt refuses otherwise). */
    int nvol = info.state == VIR_STORAGE_POOL_RUNNING ? virStoragePoolNumOfVolumes(p) : -1;
    char fs[32];
    int reflink;
    hx_pool_backing_of(c, doc, fs, sizeof(fs), &reflink);
    json_t *d = json_object();
    json_object_set_new(d, "name", json_string(name));
    json_object_set_new(d, "uuid", json_string(uuid));
    json_object_set_new(d, "type", hx_pool_str0(type));
    json_object_set_new(d, "state", json_string(hx_pool_state_str(info.state)));
    json_object_set_new(d, "autostart", json_boolean(autostart));
    json_object_set_new(d, "persistent", json_boolean(persistent));
    json_object_set_new(d, "path", hx_pool_str0(path));
    json_object_set_new(d, "capacity_bytes", json_integer((json_int_t)info.capacity));
    json_object_set_new(d, "allocation_bytes", json_integer((json_int_t)info.allocation));
    json_object_set_new(d, "available_bytes", json_integer((json_int_t)info.available));
    json_object_set_new(d, "volumes", nvol >= 0 ? json_integer(nvol) : json_null());
    json_object_set_new(d, "backing", fs[0] ? json_string(fs) : json_null());
    json_object_set_new(d, "cheap_copy", reflink ? json_string("reflink") : json_null());
    *out = d;
    return 0;
}

/* ---- the tree's side ---- */

/* The node, referenced and locked, when online. -ENOENT, -EHOSTDOWN. */
int hx_pools_online(hx_cluster *cl, const char *node, hx_node **out)
{
    hx_node *n = hx_cluster_get(cl, node);
    if (!n)
        return -ENOENT;
    pthread_mutex_lock(&n->lock);
    if (n->status != HX_NODE_ONLINE) {
        pthread_mutex_unlock(&n->lock);
        hx_node_unref(n);
        return -EHOSTDOWN;
    }
    *out = n;
    return 0;
}

void hx_pools_release(hx_node *n)
{
    pthread_mutex_unlock(&n->lock);
    hx_node_unref(n);
}

int hx_cluster_pool_names(hx_cluster *cl, const char *node, char ***names)
{
    hx_node *n;
    int r = hx_pools_online(cl, node, &n);
    if (r < 0)
        return r;
    char **v = calloc(n->pools.n + 1, sizeof(char *));
    for (size_t i = 0, k = 0; v && i < n->pools.n; i++)
        if ((v[k] = strdup(n->pools.v[i].name)))
            k++;
    hx_pools_release(n);
    *names = v;
    return v ? 0 : -ENOMEM;
}

int hx_cluster_pool_version(hx_cluster *cl, const char *node, const char *pool, uint64_t *version,
                            long long *changed_ns)
{
    hx_node *n;
    int r = hx_pools_online(cl, node, &n);
    if (r < 0)
        return r;
    ssize_t i = hx_pools_find_name(&n->pools, pool);
    if (i >= 0) {
        *version = n->pools.v[i].version;
        if (changed_ns)
            *changed_ns = n->pools.v[i].changed_ns;
    }
    hx_pools_release(n);
    return i >= 0 ? 0 : -ENOENT;
}

/* Runs fn on the node's thread with {"node", "pool", "vol"} once the pool is known. */
int hx_pools_exec(hx_cluster *cl, const char *node, const char *pool, const char *vol,
                  hx_node_fn fn, json_t **out)
{
    uint64_t v;
    int r = hx_cluster_pool_version(cl, node, pool, &v, NULL);
    if (r < 0)
        return r;
    hx_autojson json_t *in = json_pack("{s:s,s:s}", "node", node, "pool", pool);
    if (!in)
        return -ENOMEM;
    if (vol)
        json_object_set_new(in, "vol", json_string(vol));
    return hx_cluster_node_exec(cl, node, fn, in, out);
}

int hx_cluster_pool_status(hx_cluster *cl, const char *node, const char *pool, json_t **out)
{
    return hx_pools_exec(cl, node, pool, NULL, hx_pool_status_fn, out);
}
