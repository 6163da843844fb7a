/* Snapshots of VMs: list, describe, take, revert, delete (the snapshots/ directory of a VM).
 *
 * Owns libvirt's internal qcow2 snapshots of the VMs, the btrfs snapshots (reflink copies of
 * raw volumes, for VMs whose disks are all raw volumes of btrfs-backed pools) and the Horcrux
 * snapshot metadata in each domain (namespace HX_SNAP_NS: consistency records and btrfs
 * records). Callers: the tree (fs/tree/tree.c, fs/tree/render.c) for everything, vmops (rmdir of a
 * VM) for hx_snap_btrfs_volumes; the pure helpers at the end are unit tested.
 *
 * libvirt sends no events for snapshots, so reads go to libvirt through the node's own thread
 * (hx_cluster_node_exec, bounded wait) and the names are cached per VM for at most a short time
 * (the cache has its own mutex, held for no libvirt call); every change made here drops that
 * cache and moves hx_snap_version(). Changes run on the caller's thread under the VM's
 * operation lock, like the other VM actions (hx_vmops.h). Every failure returns -errno and a
 * malloc'd sentence in *msg naming the VM and the snapshot.
 */
#pragma once

#include "hx_cluster.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define HX_SNAP_NAME_MAX 64
/* The namespace of the Horcrux snapshot metadata in a domain's <metadata>. */
#define HX_SNAP_NS "https://horcrux.dev/xmlns/snapshots/1"

/* Moves on every change made through the tree (and when a fetch finds the list changed). */
uint64_t hx_snap_version(void);

/* Snapshot names of a VM (sorted, NULL-terminated, hx_strv_free) and the current snapshot
 * (malloc'd, NULL when none), from a fetch at most max_age_ms old (0: fetch now).
 * Either out pointer may be NULL. -ENOENT, -EHOSTDOWN, -ETIMEDOUT, -EIO. */
int hx_snap_list(hx_cluster *cl, const char *node, const char *vm, const char *uuid, int max_age_ms,
                 char ***names, char **current);
/* 0 when the snapshot exists (a cached positive answer may be up to 1 s old; a negative one
 * is always checked again), -ENOENT, or another -errno. */
int hx_snap_exists(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                   const char *snap);
/* info.json of one snapshot (docs/tree.md), new reference. */
int hx_snap_info(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                 const char *snap, json_t **out);
/* The description of a snapshot (malloc'd, "" when none). */
int hx_snap_description(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                        const char *snap, char **out);

/* Takes snapshot name: memory included when the VM is running or paused, filesystems frozen
 * first when a guest agent is connected. -EINVAL bad name, -EEXIST taken, -EBUSY locked,
 * -ENOSPC a pool lacks room, -EIO libvirt failed (nothing half-made remains). */
int hx_snap_create(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                   const char *name, char **msg);
/* Deletes a snapshot (its children move to its parent). */
int hx_snap_delete(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                   const char *snap, char **msg);
/* Reverts the VM to a snapshot; cmd is "1" or "revert" (blanks and a newline ignored). */
int hx_snap_revert(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                   const char *snap, const char *cmd, size_t len, char **msg);
/* Replaces the description (one trailing newline dropped). -EINVAL not UTF-8 text. */
int hx_snap_set_description(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                            const char *snap, const char *text, size_t len, char **msg);

/* The snapshot volumes of the btrfs snapshots recorded in a domain XML, as
 * [{"pool","name"}] (rmdir of the VM deletes them with its disks). New reference. */
json_t *hx_snap_btrfs_volumes(const char *domain_xml);

/* ---- pure helpers (unit tested) ---- */

/* 0 when name may name a new snapshot, else -EINVAL with *why (static text). */
int hx_snap_check_name(const char *name, const char **why);
/* Bytes a new internal snapshot may need in one pool: the guest's memory when it is included
 * (mem_bytes, 0 when not) plus room for copy-on-write growth of the disks in that pool (their
 * virtual sizes summed in disk_bytes, n_disks of them). */
uint64_t hx_snap_space_needed(uint64_t mem_bytes, uint64_t disk_bytes, unsigned n_disks);
/* info.json from a snapshot's XML (libvirt's virDomainSnapshotGetXMLDesc) and what the XML
 * does not hold. children is borrowed. NULL when the XML cannot be read. */
json_t *hx_snap_info_from_xml(const char *xml, int current, json_t *children,
                              const char *consistency);
