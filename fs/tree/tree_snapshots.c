/* The table's callbacks for a VM's snapshots: the listing, the current link, and the changes
 * (take, delete, revert, describe), after which the kernel's copies are dropped. */
#include "hx_tree_apply.h"
#include "hx_snapshots.h"
#include "tree_priv.h"

#include <errno.h>
#include <string.h>

/* Drops the kernel's copies after a snapshot change through the tree: the listing, the
 * current link (and a cached miss of it), and the snapshot's own files. */
static void hx_tree_snaps_changed(const hx_obj *o, const char *snap)
{
    hx_obj d = *o;
    d.item[0] = '\0';
    d.kind = hx_tree_kind("/nodes/{node}/vms/{vm}/snapshots");
    hx_apply_changed(&d, NULL);
    hx_apply_changed(&d, "current");
    hx_obj c = d;
    c.kind = hx_tree_kind("/nodes/{node}/vms/{vm}/snapshots/current");
    hx_apply_changed(&c, NULL);
    if (!snap)
        return;
    static const char *const files[] = {"/nodes/{node}/vms/{vm}/snapshots/{snap}",
                                        "/nodes/{node}/vms/{vm}/snapshots/{snap}/info.json",
                                        "/nodes/{node}/vms/{vm}/snapshots/{snap}/description"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        hx_obj s = d;
        hx_strlcpy(s.item, snap, sizeof(s.item));
        s.kind = hx_tree_kind(files[i]);
        hx_apply_changed(&s, NULL);
    }
}

int hx_tree_snap_mkdir(const hx_obj *dir, const char *name, char **msg)
{
    int r = hx_snap_create(hx_tree_cluster(), dir->node, dir->vm, dir->vm_uuid, name, msg);
    hx_tree_snaps_changed(dir, NULL);
    return r;
}

int hx_tree_snap_rmdir(const hx_obj *o, char **msg)
{
    int r = hx_snap_delete(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, o->item, msg);
    hx_tree_snaps_changed(o, o->item);
    return r;
}

int hx_tree_snap_revert_ctl(const hx_obj *o, const char *cmd, size_t len, char **msg)
{
    int r = hx_snap_revert(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, o->item, cmd, len, msg);
    hx_tree_snaps_changed(o, o->item);
    return r;
}

int hx_tree_snap_desc_commit(const hx_obj *o, const char *doc, size_t len, char **msg)
{
    int r = hx_snap_set_description(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, o->item, doc,
                                    len, msg);
    hx_tree_snaps_changed(o, o->item);
    return r;
}

/* The VM's version, moved also by every snapshot change; once exists finds what o names. */
static int hx_tree_snap_vm_version(const hx_obj *o, uint64_t *version, long long *changed_ns,
                                   int (*exists)(const hx_obj *o))
{
    int r =
        hx_cluster_vm_version(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, version, changed_ns);
    if (r == 0)
        r = exists(o);
    /* Both counters only grow, so their sum moves whenever either does. */
    if (r == 0)
        *version += hx_snap_version();
    return r;
}

/* The link exists only while the VM has a current snapshot. */
int hx_tree_snap_current_list(const hx_obj *dir, char ***names)
{
    hx_autofree char *cur = NULL;
    /* Listings are taken fresh at opendir; the {snap} listing right after reuses this fetch. */
    int r = hx_snap_list(hx_tree_cluster(), dir->node, dir->vm, dir->vm_uuid, 0, NULL, &cur);
    if (r < 0)
        return r;
    *names = calloc(2, sizeof(char *));
    if (!*names)
        return -ENOMEM;
    if (cur)
        (*names)[0] = strdup("current");
    return 0;
}

static int hx_tree_snap_current_name(const hx_obj *o, char **cur)
{
    int r = hx_snap_list(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, SNAP_TTL_MS, NULL, cur);
    if (r == 0 && !*cur)
        r = -ENOENT;
    return r;
}

static int hx_tree_snap_current_exists(const hx_obj *o)
{
    hx_autofree char *cur = NULL;
    return hx_tree_snap_current_name(o, &cur);
}

int hx_tree_snap_current_capture(hx_obj *o, const char *name)
{
    if (strcmp(name, "current") != 0)
        return -ENOENT;
    return hx_tree_snap_current_exists(o);
}

int hx_tree_snap_current_link(const hx_obj *o, char *buf, size_t size)
{
    hx_autofree char *cur = NULL;
    int r = hx_tree_snap_current_name(o, &cur);
    if (r < 0)
        return r;
    return hx_strlcpy(buf, cur, size) < 0 ? -ENAMETOOLONG : 0;
}

int hx_tree_snap_current_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    return hx_tree_snap_vm_version(o, version, changed_ns, hx_tree_snap_current_exists);
}

int hx_tree_snap_list(const hx_obj *dir, char ***names)
{
    int r = hx_snap_list(hx_tree_cluster(), dir->node, dir->vm, dir->vm_uuid, 200, names, NULL);
    /* A snapshot made elsewhere and named "current" is hidden by the link. */
    char **w = r == 0 ? *names : NULL;
    for (char **p = w; p && *p; p++) {
        if (strcmp(*p, "current") == 0)
            free(*p);
        else
            *w++ = *p;
    }
    if (w)
        *w = NULL;
    return r;
}

static int hx_tree_snap_check(hx_obj *o, const char *name)
{
    if (strcmp(name, "current") == 0)
        return -ENOENT;
    int r = hx_snap_exists(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, name);
    if (r < 0)
        return r == -EHOSTDOWN ? r : -ENOENT;
    return 0;
}

int hx_tree_snap_capture(hx_obj *o, const char *name)
{
    return hx_tree_capture_field(o, o->item, sizeof(o->item), name, hx_tree_snap_check);
}

static int hx_tree_snap_exists(const hx_obj *o)
{
    return hx_snap_exists(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, o->item);
}

int hx_tree_snap_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    return hx_tree_snap_vm_version(o, version, changed_ns, hx_tree_snap_exists);
}
