/* The table of node kinds: the whole tree, declared. Only the table lives here; the callbacks
 * it names are in fs/tree/tree_cluster.c, fs/tree/tree_storage.c, fs/tree/tree_snapshots.c and
 * fs/tree/tree_jobs.c, and resolution over it in fs/tree/tree_lookup.c and fs/tree/tree_list.c. */
#include "render.h"
#include "tree_priv.h"

#include <sys/stat.h>

#define DIR_MODE (S_IFDIR | 0555)
#define DOC_MODE (S_IFREG | 0444)
#define WDIR_MODE (S_IFDIR | 0755) /* root may create or remove entries */
#define WDOC_MODE (S_IFREG | 0644) /* root may write */
#define STREAM_MODE (S_IFREG | 0444)
#define LINK_MODE (S_IFLNK | 0777)
#define CTL_MODE (S_IFREG | 0200) /* write-only command file */

/* One entry: the positional fields, then any of .ctl, .commit, .mkdir, .rmdir, .version, .flags.
 * A .version serves the kind and every kind below it that sets none of its own. */
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
      "a job: what it does, how far it got, how it ended", .list = hx_tree_job_list,
      .capture = hx_tree_job_capture),
    K("/cluster/jobs/{job}/status.json", HX_FT_DOC, DOC_MODE, HX_SCOPE_STATIC, 500,
      hx_render_job_status, "the job's state, phase, measured progress and result (JSON)"),
    K("/cluster/jobs/{job}/log", HX_FT_DOC, DOC_MODE, HX_SCOPE_STATIC, 500, hx_render_job_log,
      "what the job did, one line per step"),
    K("/cluster/jobs/{job}/cancel", HX_FT_DOC, WDOC_MODE, HX_SCOPE_STATIC, 0, hx_render_empty,
      "write 1 to cancel the job", .ctl = hx_tree_job_cancel_ctl),
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
      hx_render_pool_status, "the pool's type, state, path, sizes and backing filesystem (JSON)"),
    K("/nodes/{node}/storage/{pool}/volumes", HX_FT_DIR, DIR_MODE, HX_SCOPE_ONLINE, 0, NULL,
      "one directory per volume of the pool"),
    K("/nodes/{node}/storage/{pool}/volumes/{vol}", HX_FT_DIR, DIR_MODE, HX_SCOPE_ONLINE, 0, NULL,
      "a storage volume", .list = hx_tree_vol_list, .capture = hx_tree_vol_capture,
      .version = hx_tree_vol_version),
    K("/nodes/{node}/storage/{pool}/volumes/{vol}/info.json", HX_FT_DOC, DOC_MODE, HX_SCOPE_ONLINE,
      1000, hx_render_vol_info,
      "the volume's path, format, sizes, backing store and the VMs using it (JSON)"),
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
      SNAP_TTL_MS, hx_render_snap_info,
      "parent, children, time, state, memory, consistency (JSON)"),
    K("/nodes/{node}/vms/{vm}/snapshots/{snap}/description", HX_FT_DOC, WDOC_MODE, HX_SCOPE_VM,
      SNAP_TTL_MS, hx_render_snap_description, "the snapshot's description; write a new one",
      .commit = hx_tree_snap_desc_commit, .flags = HX_KF_EMPTY_OK),
    K("/nodes/{node}/vms/{vm}/snapshots/{snap}/revert", HX_FT_DOC, CTL_MODE, HX_SCOPE_VM, 0,
      hx_render_empty, "write 1 to revert the VM to this snapshot", .ctl = hx_tree_snap_revert_ctl),
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

_Static_assert(sizeof(hx_kinds) / sizeof(hx_kinds[0]) <= HX_KINDS_MAX,
               "the table outgrew HX_KINDS_MAX (fs/tree/tree_priv.h)");
