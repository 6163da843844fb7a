/* Actions on VMs: lifecycle words, config.json and cloud-init commits, create and delete
 * (backend/vmops_*.c). The tree (fs/tree/tree.c) calls them; the backend modules that change VMs
 * (snapshots, clones) take the same per-VM operation lock through hx_vm_trylock.
 *
 * Each call runs on the caller's thread with a reference to the node's libvirt connection, holds
 * the VM's operation lock for its whole duration (a second operation on the same VM fails at once
 * with EBUSY), and before it returns refreshes the node's cache, so a read right after sees the
 * result. Every failure returns -errno and a malloc'd sentence in *msg naming the VM.
 */
#pragma once

#include "hx_cluster.h"

#include <stddef.h>

/* Volumes Horcrux created for a VM, remembered in the domain's own metadata so that rmdir
 * deletes exactly those and never a disk someone attached by hand. */
#define HX_VOLS_NS "https://horcrux.dev/xmlns/volumes/1"
#define HX_VOLS_PREFIX "hxvol"

/* Lifecycle: start, shutdown, stop, reboot, reset, pause, resume (a trailing newline and
 * surrounding blanks are ignored). -EINVAL unknown word; -EBUSY the VM is locked or its state
 * forbids the action; -ENOENT, -EHOSTDOWN, -EIO. */
int hx_vm_action(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                 const char *word, size_t len, char **msg);

/* Applies a whole config.json document (docs/config-json.md, "Writing config.json"). Nothing
 * changes unless everything validates; changes that a running VM can take are applied live. */
int hx_vm_apply_config(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                       const char *doc, size_t len, char **msg);

/* Replaces one cloud-init document (cloudinit/user-data, meta-data, network-config) of a VM;
 * an empty one clears it. -EFBIG over HX_CI_MAX_BYTES; -EBUSY locked; -ENOENT, -EHOSTDOWN, -EIO. */
int hx_vm_set_cloudinit(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                        const char *file, const char *doc, size_t len, char **msg);

/* Defines a new shut-off VM with the documented defaults. -EINVAL bad name; -EEXIST the name is
 * taken on any node; -EHOSTDOWN, -EIO. */
int hx_vm_create(hx_cluster *cl, const char *node, const char *name, char **msg);

/* Deletes a shut-off VM and the volumes Horcrux created for it. -EBUSY running or locked;
 * -EPERM protected. */
int hx_vm_delete(hx_cluster *cl, const char *node, const char *vm, const char *uuid, char **msg);

/* The VM operation lock, by UUID, for other modules' changes to a VM (snapshots, clones):
 * 0, or -EBUSY at once when another operation holds it. */
int hx_vm_trylock(const char *uuid);
void hx_vm_unlock(const char *uuid);

/* The words hx_vm_action knows, for documentation and messages. */
extern const char *const hx_vm_action_words[];
