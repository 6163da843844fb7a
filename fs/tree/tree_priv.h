/* Shared only between the files of the tree (fs/tree/tree*.c): the callbacks the table in
 * fs/tree/tree.c names, and the listing helpers they use. Nothing outside the tree includes this.
 */
#pragma once

#include "hx_tree.h"

/* Room for the table: fs/tree/tree.c checks at compile time that it fits. */
#define HX_KINDS_MAX 64

#define SNAP_TTL_MS 1000 /* libvirt has no snapshot events: virsh's changes show within this */

/* fs/tree/tree_list.c: appending to a listing. *cap is the room allocated so far. */
int hx_tree_list_reserve(hx_tree_list *l, size_t *cap, size_t more);
int hx_tree_list_add(hx_tree_list *l, size_t *cap, const hx_obj *o, const char *name);

/* fs/tree/tree_lookup.c: fills the wildcard that kind k captures from name; 0, -ENOENT or
 * -EHOSTDOWN. */
int hx_tree_capture(int k, const char *name, hx_obj *out);
/* Whether dir is a directory that exists now: 0, -ENOTDIR, -ENOENT, -EHOSTDOWN. */
int hx_tree_dir_check(const hx_obj *dir);
/* The version of the directory that holds o. */
int hx_tree_parent_version(const hx_obj *o, uint64_t *version, long long *changed_ns);
/* A capture into one identity field of o: -ENOENT when name cannot fit in it, else what check
 * says (0: name exists, and the field gets it; -ENOENT, -EHOSTDOWN). */
typedef int (*hx_tree_check_fn)(hx_obj *o, const char *name);
int hx_tree_capture_field(hx_obj *o, char *field, size_t size, const char *name,
                          hx_tree_check_fn check);

/* fs/tree/tree_cluster.c: nodes, VMs, last_error and the audit. */
int hx_tree_node_list(const hx_obj *dir, char ***names);
int hx_tree_node_capture(hx_obj *o, const char *name);
int hx_tree_vm_list_all(const hx_obj *child, hx_tree_list *out, size_t *cap);
int hx_tree_vm_capture(hx_obj *o, const char *name);
int hx_tree_vm_state_ctl(const hx_obj *o, const char *cmd, size_t len, char **msg);
int hx_tree_vm_config_commit(const hx_obj *o, const char *doc, size_t len, char **msg);
int hx_tree_vm_cloudinit_commit(const hx_obj *o, const char *doc, size_t len, char **msg);
int hx_tree_vm_mkdir(const hx_obj *dir, const char *name, char **msg);
int hx_tree_vm_rmdir(const hx_obj *o, char **msg);
int hx_tree_lasterr_version(const hx_obj *o, uint64_t *version, long long *changed_ns);
int hx_tree_audit_version(const hx_obj *o, uint64_t *version, long long *changed_ns);

/* fs/tree/tree_storage.c: pools and volumes. */
int hx_tree_pool_list(const hx_obj *dir, char ***names);
int hx_tree_pool_capture(hx_obj *o, const char *name);
int hx_tree_pool_version(const hx_obj *o, uint64_t *version, long long *changed_ns);
int hx_tree_vol_list(const hx_obj *dir, char ***names);
int hx_tree_vol_capture(hx_obj *o, const char *name);
int hx_tree_vol_version(const hx_obj *o, uint64_t *version, long long *changed_ns);

/* fs/tree/tree_snapshots.c: a VM's snapshots and its current link. */
int hx_tree_snap_mkdir(const hx_obj *dir, const char *name, char **msg);
int hx_tree_snap_rmdir(const hx_obj *o, char **msg);
int hx_tree_snap_revert_ctl(const hx_obj *o, const char *cmd, size_t len, char **msg);
int hx_tree_snap_desc_commit(const hx_obj *o, const char *doc, size_t len, char **msg);
int hx_tree_snap_current_list(const hx_obj *dir, char ***names);
int hx_tree_snap_current_capture(hx_obj *o, const char *name);
int hx_tree_snap_current_link(const hx_obj *o, char *buf, size_t size);
int hx_tree_snap_current_version(const hx_obj *o, uint64_t *version, long long *changed_ns);
int hx_tree_snap_list(const hx_obj *dir, char ***names);
int hx_tree_snap_capture(hx_obj *o, const char *name);
int hx_tree_snap_version(const hx_obj *o, uint64_t *version, long long *changed_ns);

/* fs/tree/tree_jobs.c: long operations, and a VM's clone file. */
int hx_tree_jobs_version(const hx_obj *o, uint64_t *version, long long *changed_ns);
int hx_tree_job_list(const hx_obj *dir, char ***names);
int hx_tree_job_capture(hx_obj *o, const char *name);
int hx_tree_job_cancel_ctl(const hx_obj *o, const char *cmd, size_t len, char **msg);
int hx_tree_vm_clone_version(const hx_obj *o, uint64_t *version, long long *changed_ns);
int hx_tree_vm_clone_ctl(const hx_obj *o, const char *cmd, size_t len, char **msg);
