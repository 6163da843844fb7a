/* The table of node kinds, and path resolution over it. */
#include "hx_tree.h"
#include "apply.h"
#include "hx_pools.h"
#include "hx_snapshots.h"
#include "hx_clone.h"
#include "hx_jobs.h"
#include "hx_vmops.h"
#include "render.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#define DIR_MODE (S_IFDIR | 0555)
#define DOC_MODE (S_IFREG | 0444)
#define WDIR_MODE (S_IFDIR | 0755) /* root may create or remove entries */
#define WDOC_MODE (S_IFREG | 0644) /* root may write */
#define STREAM_MODE (S_IFREG | 0444)
#define LINK_MODE (S_IFLNK | 0777)
#define CTL_MODE (S_IFREG | 0200) /* write-only command file */

static int hx_tree_vm_state_ctl(const hx_obj *o, const char *cmd, size_t len, char **msg)
{
    return hx_vm_action(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, cmd, len, msg);
}

static int hx_tree_vm_config_commit(const hx_obj *o, const char *doc, size_t len, char **msg)
{
    return hx_vm_apply_config(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, doc, len, msg);
}

static int hx_tree_vm_cloudinit_commit(const hx_obj *o, const char *doc, size_t len, char **msg)
{
    return hx_vm_set_cloudinit(hx_tree_cluster(), o->node, o->vm, o->vm_uuid,
                               hx_tree_segment(o->kind), doc, len, msg);
}

static int hx_tree_vm_mkdir(const hx_obj *dir, const char *name, char **msg)
{
    return hx_vm_create(hx_tree_cluster(), dir->node, name, msg);
}

static int hx_tree_vm_rmdir(const hx_obj *o, char **msg)
{
    return hx_vm_delete(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, msg);
}

static int hx_tree_node_list(const hx_obj *dir, char ***names)
{
    (void)dir;
    *names = hx_cluster_node_names(hx_tree_cluster(), NULL);
    return *names ? 0 : -ENOMEM;
}

static int hx_tree_node_capture(hx_obj *o, const char *name)
{
    uint64_t v;
    if (strlen(name) >= sizeof(o->node) ||
        hx_cluster_node_version(hx_tree_cluster(), name, &v, NULL, NULL) < 0)
        return -ENOENT;
    hx_strlcpy(o->node, name, sizeof(o->node));
    return 0;
}

static int hx_tree_vm_capture(hx_obj *o, const char *name)
{
    if (strlen(name) >= sizeof(o->vm))
        return -ENOENT;
    int r = hx_cluster_vm_lookup(hx_tree_cluster(), o->node, name, o->vm_uuid);
    if (r < 0)
        return r;
    hx_strlcpy(o->vm, name, sizeof(o->vm));
    return 0;
}

static int hx_tree_list_reserve(hx_tree_list *l, size_t *cap, size_t more);
static int hx_tree_list_add(hx_tree_list *l, size_t *cap, const hx_obj *o, const char *name);

static int hx_tree_vm_list_all(const hx_obj *child, hx_tree_list *out, size_t *cap)
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

static int hx_tree_pool_list(const hx_obj *dir, char ***names)
{
    return hx_cluster_pool_names(hx_tree_cluster(), dir->node, names);
}

static int hx_tree_pool_capture(hx_obj *o, const char *name)
{
    uint64_t v;
    if (strlen(name) >= sizeof(o->sub))
        return -ENOENT;
    int r = hx_cluster_pool_version(hx_tree_cluster(), o->node, name, &v, NULL);
    if (r == 0)
        hx_strlcpy(o->sub, name, sizeof(o->sub));
    return r;
}

/* Everything below a pool follows the pool's own version, moved by its libvirt events. */
static int hx_tree_pool_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    return hx_cluster_pool_version(hx_tree_cluster(), o->node, o->sub, version, changed_ns);
}

/* Volumes have no libvirt events: listed and checked live on the node's thread. */
static int hx_tree_vol_list(const hx_obj *dir, char ***names)
{
    return hx_cluster_vol_names(hx_tree_cluster(), dir->node, dir->sub, names);
}

static int hx_tree_vol_capture(hx_obj *o, const char *name)
{
    if (strlen(name) >= sizeof(o->item))
        return -ENOENT;
    int r = hx_cluster_vol_exists(hx_tree_cluster(), o->node, o->sub, name);
    if (r == 0)
        hx_strlcpy(o->item, name, sizeof(o->item));
    return r;
}

static int hx_tree_vol_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    int r = hx_tree_pool_version(o, version, changed_ns);
    if (r == 0)
        r = hx_cluster_vol_exists(hx_tree_cluster(), o->node, o->sub, o->item);
    return r;
}

/* last_error follows its own counter, once the object it belongs to is known to exist. */
static int hx_tree_lasterr_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    hx_obj d;
    hx_tree_parent(o, &d);
    int r = hx_tree_version(&d, version, changed_ns);
    if (r == 0)
        *version = hx_lasterr_version();
    return r;
}

static int hx_tree_audit_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    (void)o;
    *version = hx_apply_audit() ? hx_audit_count(hx_apply_audit()) : 0;
    *changed_ns = hx_now_real_ns();
    return 0;
}

/* ---- snapshots ---- */

#define SNAP_TTL_MS 1000 /* libvirt has no snapshot events: virsh's changes show within this */

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

static int hx_tree_snap_mkdir(const hx_obj *dir, const char *name, char **msg)
{
    int r = hx_snap_create(hx_tree_cluster(), dir->node, dir->vm, dir->vm_uuid, name, msg);
    hx_tree_snaps_changed(dir, NULL);
    return r;
}

static int hx_tree_snap_rmdir(const hx_obj *o, char **msg)
{
    int r = hx_snap_delete(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, o->item, msg);
    hx_tree_snaps_changed(o, o->item);
    return r;
}

static int hx_tree_snap_revert_ctl(const hx_obj *o, const char *cmd, size_t len, char **msg)
{
    int r = hx_snap_revert(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, o->item, cmd, len, msg);
    hx_tree_snaps_changed(o, o->item);
    return r;
}

static int hx_tree_snap_desc_commit(const hx_obj *o, const char *doc, size_t len, char **msg)
{
    int r = hx_snap_set_description(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, o->item, doc,
                                    len, msg);
    hx_tree_snaps_changed(o, o->item);
    return r;
}

/* The link exists only while the VM has a current snapshot. */
static int hx_tree_snap_current_list(const hx_obj *dir, char ***names)
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

static int hx_tree_snap_current_capture(hx_obj *o, const char *name)
{
    if (strcmp(name, "current") != 0)
        return -ENOENT;
    hx_autofree char *cur = NULL;
    return hx_tree_snap_current_name(o, &cur);
}

static int hx_tree_snap_current_link(const hx_obj *o, char *buf, size_t size)
{
    hx_autofree char *cur = NULL;
    int r = hx_tree_snap_current_name(o, &cur);
    if (r < 0)
        return r;
    return hx_strlcpy(buf, cur, size) < 0 ? -ENAMETOOLONG : 0;
}

static int hx_tree_snap_current_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    int r =
        hx_cluster_vm_version(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, version, changed_ns);
    hx_autofree char *cur = NULL;
    if (r == 0)
        r = hx_tree_snap_current_name(o, &cur);
    /* Both counters only grow, so their sum moves whenever either does. */
    if (r == 0)
        *version += hx_snap_version();
    return r;
}

static int hx_tree_snap_list(const hx_obj *dir, char ***names)
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

static int hx_tree_snap_capture(hx_obj *o, const char *name)
{
    if (strlen(name) >= sizeof(o->item) || strcmp(name, "current") == 0)
        return -ENOENT;
    int r = hx_snap_exists(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, name);
    if (r < 0)
        return r == -EHOSTDOWN ? r : -ENOENT;
    hx_strlcpy(o->item, name, sizeof(o->item));
    return 0;
}

static int hx_tree_snap_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    int r =
        hx_cluster_vm_version(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, version, changed_ns);
    if (r == 0)
        r = hx_snap_exists(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, o->item);
    if (r == 0)
        *version += hx_snap_version();
    return r;
}

/* ---- jobs ---- */

static int hx_tree_jobs_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    if (o->sub[0] && !hx_jobs_exists(o->sub))
        return -ENOENT;
    *version = hx_jobs_version();
    *changed_ns = hx_now_real_ns();
    return 0;
}

static int hx_tree_job_list(const hx_obj *dir, char ***names)
{
    (void)dir;
    *names = hx_jobs_list();
    return *names ? 0 : -ENOMEM;
}

static int hx_tree_job_capture(hx_obj *o, const char *name)
{
    if (strlen(name) >= sizeof(o->sub) || !hx_jobs_exists(name))
        return -ENOENT;
    hx_strlcpy(o->sub, name, sizeof(o->sub));
    return 0;
}

static int hx_tree_job_cancel_ctl(const hx_obj *o, const char *cmd, size_t len, char **msg)
{
    while (len > 0 && (cmd[len - 1] == '\n' || cmd[len - 1] == ' '))
        len--;
    if (!(len == 1 && cmd[0] == '1') && !(len == 6 && memcmp(cmd, "cancel", 6) == 0)) {
        if (asprintf(msg, "job %s: write 1 (or cancel) to cancel it", o->sub) < 0)
            *msg = NULL;
        return -EINVAL;
    }
    return hx_jobs_cancel(o->sub, msg);
}

/* The VM's clone file follows the VM and the jobs. */
static int hx_tree_vm_clone_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    hx_obj d;
    hx_tree_parent(o, &d);
    int r = hx_tree_version(&d, version, changed_ns);
    if (r == 0)
        *version = *version * 1000003u + hx_jobs_version();
    return r;
}

static int hx_tree_vm_clone_ctl(const hx_obj *o, const char *cmd, size_t len, char **msg)
{
    return hx_clone_start(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, cmd, len, msg);
}

/* One entry: the positional fields, then any of .ctl, .commit, .mkdir, .rmdir, .version, .flags. */
#define K(pat, ty, mo, sc, ttl, rend, dc, ...)                                                     \
    {                                                                                              \
        .pattern = pat, .type = ty, .mode = mo, .scope = sc, .ttl_ms = ttl, .render = rend,        \
        .doc = dc, __VA_ARGS__                                                                     \
    }

/* The whole tree. Order is listing order inside each directory. The doc strings are a summary;
 * docs/tree.md has the full entry for every pattern (a unit test checks it is there). */
const hx_kind hx_kinds[] = {
    K("/", HX_FT_DIR, DIR_MODE, HX_SCOPE_STATIC, 0, NULL, "the root of the tree"),
    K("/README", HX_FT_DOC, DOC_MODE, HX_SCOPE_STATIC, 0, hx_render_readme,
      "what this tree is and where to read more"),
    K("/version", HX_FT_DOC, DOC_MODE, HX_SCOPE_STATIC, 0, hx_render_version,
      "daemon and tree format versions (JSON)"),
    K("/cluster", HX_FT_DIR, DIR_MODE, HX_SCOPE_STATIC, 0, NULL, "cluster-wide files"),
    K("/events", HX_FT_STREAM, STREAM_MODE, HX_SCOPE_STATIC, 0, NULL,
      "every change in the cluster as it happens, one JSON object per line (stream)"),
    K("/cluster/status", HX_FT_DOC, DOC_MODE, HX_SCOPE_CLUSTER, 0, hx_render_cluster_status,
      "node and VM counts and health (JSON)"),
    K("/cluster/audit", HX_FT_DOC, DOC_MODE, HX_SCOPE_STATIC, 0, hx_render_audit,
      "the newest changes made through the tree, one JSON object per line",
      .version = hx_tree_audit_version),
    K("/cluster/jobs", HX_FT_DIR, DIR_MODE, HX_SCOPE_STATIC, 0, NULL,
      "one directory per long operation (job), oldest first", .version = hx_tree_jobs_version),
    K("/cluster/jobs/{job}", HX_FT_DIR, DIR_MODE, HX_SCOPE_STATIC, 0, NULL,
      "a job: what it does, how far it got, how it ended", .version = hx_tree_jobs_version,
      .list = hx_tree_job_list, .capture = hx_tree_job_capture),
    K("/cluster/jobs/{job}/status.json", HX_FT_DOC, DOC_MODE, HX_SCOPE_STATIC, 500,
      hx_render_job_status, "the job's state, phase, measured progress and result (JSON)",
      .version = hx_tree_jobs_version),
    K("/cluster/jobs/{job}/log", HX_FT_DOC, DOC_MODE, HX_SCOPE_STATIC, 500, hx_render_job_log,
      "what the job did, one line per step", .version = hx_tree_jobs_version),
    K("/cluster/jobs/{job}/cancel", HX_FT_DOC, WDOC_MODE, HX_SCOPE_STATIC, 0, hx_render_empty,
      "write 1 to cancel the job", .ctl = hx_tree_job_cancel_ctl, .version = hx_tree_jobs_version),
    K("/nodes", HX_FT_DIR, DIR_MODE, HX_SCOPE_CLUSTER, 0, NULL, "one directory per node"),
    K("/nodes/{node}", HX_FT_DIR, DIR_MODE, HX_SCOPE_NODE, 0, NULL, "a node of the cluster",
      .list = hx_tree_node_list, .capture = hx_tree_node_capture),
    K("/nodes/{node}/uri", HX_FT_DOC, DOC_MODE, HX_SCOPE_NODE, 0, hx_render_node_uri,
      "the node's libvirt URI"),
    K("/nodes/{node}/status", HX_FT_DOC, DOC_MODE, HX_SCOPE_NODE, 0, hx_render_node_status,
      "online, offline or connecting"),
    K("/nodes/{node}/info.json", HX_FT_DOC, DOC_MODE, HX_SCOPE_NODE, 0, hx_render_node_info,
      "host facts and connection state (JSON)"),
    K("/nodes/{node}/metrics.json", HX_FT_DOC, DOC_MODE, HX_SCOPE_ONLINE, 1000,
      hx_render_node_metrics, "host CPU and memory counters (JSON)"),
    K("/nodes/{node}/last_error", HX_FT_DOC, DOC_MODE, HX_SCOPE_NODE, 0, hx_render_last_error,
      "the last change through this directory that failed, and why",
      .version = hx_tree_lasterr_version),
    K("/nodes/{node}/storage", HX_FT_DIR, DIR_MODE, HX_SCOPE_ONLINE, 0, NULL,
      "one directory per libvirt storage pool of the node"),
    K("/nodes/{node}/storage/{pool}", HX_FT_DIR, DIR_MODE, HX_SCOPE_ONLINE, 0, NULL,
      "a storage pool", .list = hx_tree_pool_list, .capture = hx_tree_pool_capture,
      .version = hx_tree_pool_version),
    K("/nodes/{node}/storage/{pool}/status.json", HX_FT_DOC, DOC_MODE, HX_SCOPE_ONLINE, 1000,
      hx_render_pool_status, "the pool's type, state, path, sizes and backing filesystem (JSON)",
      .version = hx_tree_pool_version),
    K("/nodes/{node}/storage/{pool}/volumes", HX_FT_DIR, DIR_MODE, HX_SCOPE_ONLINE, 0, NULL,
      "one directory per volume of the pool", .version = hx_tree_pool_version),
    K("/nodes/{node}/storage/{pool}/volumes/{vol}", HX_FT_DIR, DIR_MODE, HX_SCOPE_ONLINE, 0, NULL,
      "a storage volume", .list = hx_tree_vol_list, .capture = hx_tree_vol_capture,
      .version = hx_tree_vol_version),
    K("/nodes/{node}/storage/{pool}/volumes/{vol}/info.json", HX_FT_DOC, DOC_MODE, HX_SCOPE_ONLINE,
      1000, hx_render_vol_info,
      "the volume's path, format, sizes, backing store and the VMs using it (JSON)",
      .version = hx_tree_vol_version),
    K("/nodes/{node}/vms", HX_FT_DIR, WDIR_MODE, HX_SCOPE_ONLINE, 0, NULL,
      "one directory per VM on the node; mkdir creates a VM", .mkdir = hx_tree_vm_mkdir),
    K("/nodes/{node}/vms/{vm}", HX_FT_DIR, WDIR_MODE, HX_SCOPE_VM, 0, NULL,
      "a VM; rmdir deletes it", .rmdir = hx_tree_vm_rmdir, .flags = HX_KF_SCRATCH,
      .list_all = hx_tree_vm_list_all, .capture = hx_tree_vm_capture),
    K("/nodes/{node}/vms/{vm}/state", HX_FT_DOC, WDOC_MODE, HX_SCOPE_VM, 0, hx_render_vm_state,
      "the VM's state word; write an action", .ctl = hx_tree_vm_state_ctl),
    K("/nodes/{node}/vms/{vm}/config.json", HX_FT_DOC, WDOC_MODE, HX_SCOPE_VM, 0,
      hx_render_vm_config, "the VM's persistent configuration (JSON); write a new one to apply it",
      .commit = hx_tree_vm_config_commit),
    K("/nodes/{node}/vms/{vm}/clone", HX_FT_DOC, WDOC_MODE, HX_SCOPE_VM, 500, hx_render_vm_clone,
      "write a JSON request to clone the VM; reads the status of its last clone job",
      .ctl = hx_tree_vm_clone_ctl, .version = hx_tree_vm_clone_version),
    K("/nodes/{node}/vms/{vm}/live.json", HX_FT_DOC, DOC_MODE, HX_SCOPE_VM, 0, hx_render_vm_live,
      "what the running VM has now (JSON)"),
    K("/nodes/{node}/vms/{vm}/domain.xml", HX_FT_DOC, DOC_MODE, HX_SCOPE_VM, 0, hx_render_vm_domxml,
      "libvirt's domain XML"),
    K("/nodes/{node}/vms/{vm}/metrics.json", HX_FT_DOC, DOC_MODE, HX_SCOPE_VM, 1000,
      hx_render_vm_metrics, "live counters from libvirt's bulk stats (JSON)"),
    K("/nodes/{node}/vms/{vm}/last_error", HX_FT_DOC, DOC_MODE, HX_SCOPE_VM, 0,
      hx_render_last_error, "the last change to this VM that failed, and why",
      .version = hx_tree_lasterr_version),
    K("/nodes/{node}/vms/{vm}/snapshots", HX_FT_DIR, WDIR_MODE, HX_SCOPE_VM, 0, NULL,
      "the VM's snapshots; mkdir takes one", .mkdir = hx_tree_snap_mkdir),
    K("/nodes/{node}/vms/{vm}/snapshots/current", HX_FT_LINK, LINK_MODE, HX_SCOPE_VM, SNAP_TTL_MS,
      NULL, "symbolic link to the snapshot the VM runs from (absent when none)",
      .list = hx_tree_snap_current_list, .capture = hx_tree_snap_current_capture,
      .link = hx_tree_snap_current_link, .version = hx_tree_snap_current_version),
    K("/nodes/{node}/vms/{vm}/snapshots/{snap}", HX_FT_DIR, WDIR_MODE, HX_SCOPE_VM, 0, NULL,
      "a snapshot; rmdir deletes it", .rmdir = hx_tree_snap_rmdir, .list = hx_tree_snap_list,
      .capture = hx_tree_snap_capture, .version = hx_tree_snap_version, .flags = HX_KF_SCRATCH),
    K("/nodes/{node}/vms/{vm}/snapshots/{snap}/info.json", HX_FT_DOC, DOC_MODE, HX_SCOPE_VM,
      SNAP_TTL_MS, hx_render_snap_info, "parent, children, time, state, memory, consistency (JSON)",
      .version = hx_tree_snap_version),
    K("/nodes/{node}/vms/{vm}/snapshots/{snap}/description", HX_FT_DOC, WDOC_MODE, HX_SCOPE_VM,
      SNAP_TTL_MS, hx_render_snap_description, "the snapshot's description; write a new one",
      .commit = hx_tree_snap_desc_commit, .version = hx_tree_snap_version, .flags = HX_KF_EMPTY_OK),
    K("/nodes/{node}/vms/{vm}/snapshots/{snap}/revert", HX_FT_DOC, CTL_MODE, HX_SCOPE_VM, 0,
      hx_render_empty, "write 1 to revert the VM to this snapshot", .ctl = hx_tree_snap_revert_ctl,
      .version = hx_tree_snap_version),
    K("/nodes/{node}/vms/{vm}/cloudinit", HX_FT_DIR, WDIR_MODE, HX_SCOPE_VM, 0, NULL,
      "the VM's cloud-init NoCloud data, attached as a cdrom at each start",
      .flags = HX_KF_SCRATCH),
    K("/nodes/{node}/vms/{vm}/cloudinit/user-data", HX_FT_DOC, WDOC_MODE, HX_SCOPE_VM, 0,
      hx_render_vm_cloudinit, "cloud-init user-data; write it, empty it or remove it to clear it",
      .commit = hx_tree_vm_cloudinit_commit, .flags = HX_KF_UNLINK_CLEARS | HX_KF_EMPTY_OK),
    K("/nodes/{node}/vms/{vm}/cloudinit/meta-data", HX_FT_DOC, WDOC_MODE, HX_SCOPE_VM, 0,
      hx_render_vm_cloudinit, "cloud-init meta-data; write it, empty it or remove it to clear it",
      .commit = hx_tree_vm_cloudinit_commit, .flags = HX_KF_UNLINK_CLEARS | HX_KF_EMPTY_OK),
    K("/nodes/{node}/vms/{vm}/cloudinit/network-config", HX_FT_DOC, WDOC_MODE, HX_SCOPE_VM, 0,
      hx_render_vm_cloudinit,
      "cloud-init network-config; write it, empty it or remove it to clear it",
      .commit = hx_tree_vm_cloudinit_commit, .flags = HX_KF_UNLINK_CLEARS | HX_KF_EMPTY_OK),
};
const size_t hx_n_kinds = sizeof(hx_kinds) / sizeof(hx_kinds[0]);

static int hx_parent_of[sizeof(hx_kinds) / sizeof(hx_kinds[0])];
static hx_cluster *hx_tree_cl;
static long long hx_tree_started_ns;

static void hx_tree_compute_parents(void)
{
    for (size_t k = 0; k < hx_n_kinds; k++) {
        const char *p = hx_kinds[k].pattern;
        const char *slash = strrchr(p, '/');
        size_t plen = (size_t)(slash - p);
        hx_parent_of[k] = -1;
        if (k == HX_KIND_ROOT)
            continue;
        for (size_t j = 0; j < hx_n_kinds; j++) {
            const char *q = hx_kinds[j].pattern;
            if ((plen == 0 && strcmp(q, "/") == 0) ||
                (plen > 0 && strlen(q) == plen && strncmp(q, p, plen) == 0)) {
                hx_parent_of[k] = (int)j;
                break;
            }
        }
    }
}

void hx_tree_init(hx_cluster *cl)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, hx_tree_compute_parents);
    hx_tree_cl = cl;
    hx_tree_started_ns = hx_now_real_ns();
}

hx_cluster *hx_tree_cluster(void)
{
    return hx_tree_cl;
}

int hx_tree_parent_kind(int kind)
{
    return hx_parent_of[kind];
}

int hx_tree_kind(const char *pattern)
{
    for (size_t k = 0; k < hx_n_kinds; k++)
        if (strcmp(hx_kinds[k].pattern, pattern) == 0)
            return (int)k;
    return HX_KIND_ROOT;
}

const char *hx_tree_segment(int kind)
{
    return strrchr(hx_kinds[kind].pattern, '/') + 1;
}

void hx_tree_parent(const hx_obj *o, hx_obj *out)
{
    *out = *o;
    int p = hx_parent_of[o->kind];
    out->kind = p < 0 ? HX_KIND_ROOT : p;
    /* Clear the identities the parent does not capture. */
    const char *pat = hx_kinds[out->kind].pattern;
    if (!strstr(pat, "{vm}")) {
        out->vm[0] = '\0';
        out->vm_uuid[0] = '\0';
    }
    if (!strstr(pat, "{node}"))
        out->node[0] = '\0';
    if (!strstr(pat, "{pool}") && !strstr(pat, "{job}"))
        out->sub[0] = '\0';
    if (!strstr(pat, "{vol}") && !strstr(pat, "{snap}"))
        out->item[0] = '\0';
}

int hx_tree_child_kind(int dir_kind, const char *segment)
{
    for (size_t k = 0; k < hx_n_kinds; k++)
        if (hx_parent_of[k] == dir_kind && strcmp(hx_tree_segment((int)k), segment) == 0)
            return (int)k;
    return -1;
}

int hx_tree_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    const hx_kind *k = &hx_kinds[o->kind];
    hx_node_status st;
    int r;
    if (k->version)
        return k->version(o, version, changed_ns);
    switch (k->scope) {
    case HX_SCOPE_STATIC:
        *version = 0;
        *changed_ns = hx_tree_started_ns;
        return 0;
    case HX_SCOPE_CLUSTER:
        *version = hx_cluster_version(hx_tree_cl);
        *changed_ns = hx_tree_started_ns;
        return 0;
    case HX_SCOPE_NODE:
        return hx_cluster_node_version(hx_tree_cl, o->node, version, changed_ns, NULL);
    case HX_SCOPE_ONLINE:
        r = hx_cluster_node_version(hx_tree_cl, o->node, version, changed_ns, &st);
        if (r == 0 && st != HX_NODE_ONLINE)
            return -EHOSTDOWN;
        return r;
    case HX_SCOPE_VM:
        return hx_cluster_vm_version(hx_tree_cl, o->node, o->vm, o->vm_uuid, version, changed_ns);
    }
    return -ENOENT;
}

int hx_tree_render(const hx_obj *o, hx_buf *out)
{
    const hx_kind *k = &hx_kinds[o->kind];
    if (!k->render)
        return -EISDIR;
    return k->render(o, out);
}

/* Fills the wildcard that kind k captures from name; 0, -ENOENT or -EHOSTDOWN. */
static int hx_tree_capture(int k, const char *name, hx_obj *out)
{
    if (hx_kinds[k].capture)
        return hx_kinds[k].capture(out, name);
    return strcmp(hx_tree_segment(k), name) == 0 ? 0 : -ENOENT;
}

int hx_tree_lookup(const hx_obj *dir, const char *name, hx_obj *out)
{
    if (hx_kinds[dir->kind].type != HX_FT_DIR)
        return -ENOTDIR;
    uint64_t v;
    long long t;
    int r = hx_tree_version(dir, &v, &t);
    if (r < 0)
        return r;
    int result = -ENOENT;
    for (size_t k = 0; k < hx_n_kinds; k++) {
        if (hx_parent_of[k] != dir->kind)
            continue;
        hx_obj o = *dir;
        o.kind = (int)k;
        r = hx_tree_capture((int)k, name, &o);
        if (r == 0) {
            *out = o;
            return 0;
        }
        if (r == -EHOSTDOWN)
            result = r;
    }
    return result;
}

/* Room for more entries: *cap doubled, or exactly what a caller that knows its count asks. */
static int hx_tree_list_reserve(hx_tree_list *l, size_t *cap, size_t more)
{
    if (l->n + more > *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        if (nc < l->n + more)
            nc = l->n + more;
        hx_obj *no = realloc(l->objs, nc * sizeof(hx_obj));
        if (!no)
            return -ENOMEM;
        l->objs = no;
        char **nn = realloc(l->names, nc * sizeof(char *));
        if (!nn)
            return -ENOMEM;
        l->names = nn;
        *cap = nc;
    }
    return 0;
}

static int hx_tree_list_add(hx_tree_list *l, size_t *cap, const hx_obj *o, const char *name)
{
    if (hx_tree_list_reserve(l, cap, 1) < 0)
        return -ENOMEM;
    l->names[l->n] = strdup(name);
    if (!l->names[l->n])
        return -ENOMEM;
    l->objs[l->n++] = *o;
    return 0;
}

void hx_tree_list_free(hx_tree_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    free(l->objs);
    memset(l, 0, sizeof(*l));
}

int hx_tree_list_dir(const hx_obj *dir, hx_tree_list *out)
{
    memset(out, 0, sizeof(*out));
    if (hx_kinds[dir->kind].type != HX_FT_DIR)
        return -ENOTDIR;
    uint64_t v;
    long long t;
    int r = hx_tree_version(dir, &v, &t);
    if (r < 0)
        return r;
    size_t cap = 0;
    for (size_t k = 0; k < hx_n_kinds && r == 0; k++) {
        if (hx_parent_of[k] != dir->kind)
            continue;
        const char *seg = hx_tree_segment((int)k);
        hx_obj o = *dir;
        o.kind = (int)k;
        char **names = NULL;
        if (hx_kinds[k].list_all) {
            r = hx_kinds[k].list_all(&o, out, &cap);
            continue;
        } else if (hx_kinds[k].list) {
            r = hx_kinds[k].list(dir, &names);
        } else {
            r = hx_tree_list_add(out, &cap, &o, seg);
            continue;
        }
        for (char **p = names; r == 0 && p && *p; p++) {
            /* Skip what vanished between the listing and the capture. */
            if (hx_tree_capture((int)k, *p, &o) == 0)
                r = hx_tree_list_add(out, &cap, &o, *p);
        }
        hx_strv_free(names);
    }
    if (r < 0)
        hx_tree_list_free(out);
    return r;
}
