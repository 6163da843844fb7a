/* Clones of VMs, as jobs (hx_jobs.h): full copies of every disk through libvirt's storage volume
 * streams (same node or across nodes), or linked clones of a template over qcow2 backing files.
 * See docs/tree.md, /nodes/{node}/vms/{vm}/clone. The module is backend/clone_*.c.
 *
 * Callers: the daemon's start (hx_clone_init), the tree (hx_clone_start), VM creation
 * (hx_clone_name_busy). Locking: hx_clone_start takes the source VM's operation lock
 * (hx_vm_trylock) and reserves the clone's name; both are held until the job ends, so other
 * operations on the source fail with EBUSY meanwhile.
 */
#pragma once

#include "hx_cluster.h"

#include <stddef.h>

/* Registers the clone job type's cleanup; call once after hx_jobs_open. */
void hx_clone_init(hx_cluster *cl);

/* Validates a clone request (JSON: name, node, mode, start, keep_macs), checks the name, the
 * source disks and the space on the target pool, locks the source VM and starts the job; returns
 * as soon as the job is accepted. -EINVAL (naming the field), -EEXIST, -ENOSPC, -EBUSY, -ENOENT,
 * -EHOSTDOWN, -EIO, with *msg. */
int hx_clone_start(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                   const char *req, size_t len, char **msg);

/* 1 when a running clone job will define a VM of that name (mkdir checks it too). */
int hx_clone_name_busy(const char *name);
