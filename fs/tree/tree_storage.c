/* The table's callbacks for a node's storage pools and their volumes. */
#include "hx_pools.h"
#include "tree_priv.h"

int hx_tree_pool_list(const hx_obj *dir, char ***names)
{
    return hx_cluster_pool_names(hx_tree_cluster(), dir->node, names);
}

static int hx_tree_pool_check(hx_obj *o, const char *name)
{
    uint64_t v;
    return hx_cluster_pool_version(hx_tree_cluster(), o->node, name, &v, NULL);
}

int hx_tree_pool_capture(hx_obj *o, const char *name)
{
    return hx_tree_capture_field(o, o->sub, sizeof(o->sub), name, hx_tree_pool_check);
}

/* Everything below a pool follows the pool's own version, moved by its libvirt events. */
int hx_tree_pool_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    return hx_cluster_pool_version(hx_tree_cluster(), o->node, o->sub, version, changed_ns);
}

/* Volumes have no libvirt events: listed and checked live on the node's thread. */
int hx_tree_vol_list(const hx_obj *dir, char ***names)
{
    return hx_cluster_vol_names(hx_tree_cluster(), dir->node, dir->sub, names);
}

static int hx_tree_vol_check(hx_obj *o, const char *name)
{
    return hx_cluster_vol_exists(hx_tree_cluster(), o->node, o->sub, name);
}

int hx_tree_vol_capture(hx_obj *o, const char *name)
{
    return hx_tree_capture_field(o, o->item, sizeof(o->item), name, hx_tree_vol_check);
}

int hx_tree_vol_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    int r = hx_tree_pool_version(o, version, changed_ns);
    if (r == 0)
        r = hx_cluster_vol_exists(hx_tree_cluster(), o->node, o->sub, o->item);
    return r;
}
