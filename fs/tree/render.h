/* Render functions named by the tree table (fs/tree/tree.c). Each returns 0 or -errno. */
#pragma once

#include "hx_tree.h"

#include <jansson.h>

/* Bumped when a path, a format or a behaviour of the tree changes incompatibly. */
#define HX_TREE_FORMAT 1

int hx_render_readme(const hx_obj *o, hx_buf *out);
int hx_render_version(const hx_obj *o, hx_buf *out);
int hx_render_cluster_status(const hx_obj *o, hx_buf *out);
int hx_render_node_uri(const hx_obj *o, hx_buf *out);
int hx_render_node_status(const hx_obj *o, hx_buf *out);
int hx_render_node_info(const hx_obj *o, hx_buf *out);
int hx_render_node_metrics(const hx_obj *o, hx_buf *out);
int hx_render_vm_state(const hx_obj *o, hx_buf *out);
int hx_render_vm_config(const hx_obj *o, hx_buf *out);
int hx_render_vm_live(const hx_obj *o, hx_buf *out);
int hx_render_vm_domxml(const hx_obj *o, hx_buf *out);
int hx_render_vm_metrics(const hx_obj *o, hx_buf *out);
int hx_render_vm_cloudinit(const hx_obj *o, hx_buf *out);
int hx_render_last_error(const hx_obj *o, hx_buf *out);
int hx_render_audit(const hx_obj *o, hx_buf *out);
int hx_render_pool_status(const hx_obj *o, hx_buf *out);
int hx_render_vol_info(const hx_obj *o, hx_buf *out);
int hx_render_snap_info(const hx_obj *o, hx_buf *out);
int hx_render_snap_description(const hx_obj *o, hx_buf *out);
/* Nothing: write-only command files. */
int hx_render_empty(const hx_obj *o, hx_buf *out);
int hx_render_job_status(const hx_obj *o, hx_buf *out);
int hx_render_job_log(const hx_obj *o, hx_buf *out);
int hx_render_vm_clone(const hx_obj *o, hx_buf *out);
