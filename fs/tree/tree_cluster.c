/* The table's callbacks for nodes and their VMs, the last_error files and the audit. */
#include "hx_tree_apply.h"
#include "hx_vmops.h"
#include "tree_priv.h"

#include <errno.h>
#include <string.h>

int hx_tree_vm_state_ctl(const hx_obj *o, const char *cmd, size_t len, char **msg)
{
    return hx_vm_action(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, cmd, len, msg);
}

int hx_tree_vm_config_commit(const hx_obj *o, const char *doc, size_t len, char **msg)
{
    return hx_vm_apply_config(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, doc, len, msg);
}

int hx_tree_vm_cloudinit_commit(const hx_obj *o, const char *doc, size_t len, char **msg)
{
    return hx_vm_set_cloudinit(hx_tree_cluster(), o->node, o->vm, o->vm_uuid,
                               hx_tree_segment(o->kind), doc, len, msg);
}

int hx_tree_vm_mkdir(const hx_obj *dir, const char *name, char **msg)
{
    return hx_vm_create(hx_tree_cluster(), dir->node, name, msg);
}

int hx_tree_vm_rmdir(const hx_obj *o, char **msg)
{
    return hx_vm_delete(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, msg);
}

int hx_tree_node_list(const hx_obj *dir, char ***names)
{
    (void)dir;
    *names = hx_cluster_node_names(hx_tree_cluster(), NULL);
    return *names ? 0 : -ENOMEM;
}

static int hx_tree_node_check(hx_obj *o, const char *name)
{
    (void)o;
    uint64_t v;
    return hx_cluster_node_version(hx_tree_cluster(), name, &v, NULL, NULL) < 0 ? -ENOENT : 0;
}

int hx_tree_node_capture(hx_obj *o, const char *name)
{
    return hx_tree_capture_field(o, o->node, sizeof(o->node), name, hx_tree_node_check);
}

/* Fills the VM's UUID as it finds it. */
static int hx_tree_vm_check(hx_obj *o, const char *name)
{
    int r = hx_cluster_vm_lookup(hx_tree_cluster(), o->node, name, o->vm_uuid);
    return r < 0 ? r : 0;
}

int hx_tree_vm_capture(hx_obj *o, const char *name)
{
    return hx_tree_capture_field(o, o->vm, sizeof(o->vm), name, hx_tree_vm_check);
}

int hx_tree_vm_list_all(const hx_obj *child, hx_tree_list *out, size_t *cap)
{
    hx_autofree hx_vm_ident *v = NULL;
    size_t n = 0;
    int r = hx_cluster_vm_idents(hx_tree_cluster(), child->node, &v, &n);
    if (r == 0)
        r = hx_tree_list_reserve(out, cap, n);
    hx_obj o = *child;
    for (size_t i = 0; r == 0 && i < n; i++) {
        hx_strlcpy(o.vm, v[i].name, sizeof(o.vm));
        hx_strlcpy(o.vm_uuid, v[i].uuid, sizeof(o.vm_uuid));
        r = hx_tree_list_add(out, cap, &o, v[i].name);
    }
    return r;
}

/* last_error follows its own counter, once the object it belongs to is known to exist. */
int hx_tree_lasterr_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    int r = hx_tree_parent_version(o, version, changed_ns);
    if (r == 0)
        *version = hx_lasterr_version();
    return r;
}

int hx_tree_audit_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    (void)o;
    *version = hx_apply_audit() ? hx_audit_count(hx_apply_audit()) : 0;
    *changed_ns = hx_now_real_ns();
    return 0;
}
