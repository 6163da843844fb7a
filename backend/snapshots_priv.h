/* Shared between the files of the snapshots module (backend/snapshot*.c) and nobody else.
 *
 * snapshots.c          the change entry points: VM context, dispatch by kind, guest freeze
 * snapshot_cache.c     hx_snap_version() and the per-VM cache of names (its own mutex)
 * snapshot_list.c      the reads, on the node's thread
 * snapshot_xml.c       pure XML work (libvirt's snapshot XML, names), libxml2 helpers
 * snapshot_meta.c      the domain's Horcrux metadata: consistency and btrfs records
 * snapshot_space.c     free space checks before a snapshot
 * snapshot_internal.c  libvirt's internal (qcow2) snapshots
 * snapshot_btrfs.c     btrfs snapshots: reflink copies of raw volumes
 *
 * Changes run with an open hx_snapctx (the VM's operation lock held); nothing here takes
 * another lock but the cache's mutex, which is held for no libvirt call. Functions returning
 * -errno with a char **msg set *msg (hx_fail) and report nothing else. A libvirt object is
 * freed only after its error message is read: freeing one resets libvirt's last error.
 */
#pragma once

#include "auto.h"
#include "hx_snapshots.h"
#include "hx_util.h"
#include "vmops_priv.h"

#include <jansson.h>
#include <libvirt/libvirt.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <stdint.h>

#define HX_SNAP_PREFIX "hxsnap"
#define HX_MIB (1024ULL * 1024ULL)

/* ---- snapshots.c: the context of a change ---- */

typedef hx_vmctx hx_snapctx;

/* What a change of one existing snapshot names; desc: the new description (set_description). */
typedef struct hx_snap_req {
    const char *node, *vm, *snap, *desc;
} hx_snap_req;

/* libvirt's errors as errnos (vmops_ctx.c), except that a snapshot's only input is its name: what
 * libvirt refuses in the configuration is the backend's failure (EIO), not the caller's. */
int hx_snap_virt_errno(void);
/* The same for a change that libvirt refused: a busy VM is an I/O error (EIO), not EBUSY
 * (which says the VM's operation lock is held). */
int hx_snap_change_errno(void);
/* The VM's state now (the cached one when libvirt cannot say). */
int hx_snap_state(hx_snapctx *c);
/* Freezes the guest's filesystems when its agent is connected: 1 when frozen (else the
 * snapshot is crash-consistent, logged). */
int hx_snap_freeze(hx_snapctx *c, const char *vm, const char *snap);
/* Thaws them again; an error is logged naming snap (when not NULL). */
void hx_snap_thaw(hx_snapctx *c, const char *vm, const char *snap);

/* ---- snapshot_cache.c ---- */

/* A copy of the cached listing of a VM if it is at most max_age_ms old, else NULL. */
json_t *hx_snap_cache_get(const char *uuid, int max_age_ms);
/* Caches a listing {"names": [...], "current": name or null} (copied). */
void hx_snap_cache_put(const char *uuid, json_t *list);
/* After a change of ours: the next read asks libvirt again, and documents render again. */
void hx_snap_cache_changed(const char *uuid);

/* ---- snapshot_list.c ---- */

/* A sorted copy of an array of strings. */
json_t *hx_snap_sorted(json_t *arr);

/* ---- snapshot_xml.c ---- */

xmlDocPtr hx_snap_xml_read(const char *xml, const char *what);
/* The first element named name (any name when NULL) at or after from, among its siblings. */
xmlNodePtr hx_snap_xml_next(xmlNodePtr from, const char *name);
/* The first child element of parent named name. */
xmlNodePtr hx_snap_xml_child(xmlNodePtr parent, const char *name);
/* The XML of a new snapshot named name (libvirt's <domainsnapshot>), malloc'd. */
char *hx_snap_xml_new(const char *name);

/* ---- snapshot_meta.c: the Horcrux metadata of a domain (HX_SNAP_NS) ---- */

/* The metadata (flags: libvirt's VIR_DOMAIN_AFFECT_*), a new empty document when none. */
xmlDocPtr hx_snap_meta_load(virDomainPtr dom, unsigned flags);
/* Writes it back (removes it when empty); libvirt's result. */
int hx_snap_meta_save(virDomainPtr dom, xmlDocPtr doc);
/* Sets it to xml (removes it when NULL), live too when the domain runs; libvirt's result. */
int hx_snap_meta_set(virDomainPtr dom, const char *xml);
/* The consistency recorded for an internal snapshot ("crash" when none). */
const char *hx_snap_consistency(xmlDocPtr doc, const char *snap);
/* Records (consistency != NULL) or forgets an internal snapshot; a failure is logged. */
void hx_snap_record(virDomainPtr dom, const char *vm, const char *snap, const char *consistency);
/* The btrfs record of snapshot name, or NULL. */
xmlNodePtr hx_snap_bt_find(xmlDocPtr doc, const char *name);
/* The name of the current btrfs snapshot (a record that exists), malloc'd, or NULL. */
char *hx_snap_bt_current(xmlDocPtr doc);
/* Names of the btrfs records (the children of parent when not NULL), appended to arr. */
void hx_snap_bt_names(xmlDocPtr doc, const char *parent, json_t *arr);
/* info.json of a btrfs record (docs/tree.md). */
json_t *hx_snap_bt_info(xmlDocPtr doc, xmlNodePtr rec);
/* The snapshot copies a record names, as [{"pool","name"}]. */
json_t *hx_snap_bt_copies(xmlNodePtr rec);
/* Adds the record of a new btrfs snapshot (disks [{"target","pool","volume","copy"}]), child
 * of the current one, and makes it current. -ENOMEM when doc has no root. */
int hx_snap_bt_add(xmlDocPtr doc, const char *name, const char *consistency, const char *state,
                   json_t *disks);
/* Removes a record: its children move to its parent, which becomes current if it was. */
void hx_snap_bt_remove(xmlDocPtr doc, xmlNodePtr rec, const char *snap);

/* ---- snapshot_space.c ---- */

/* The pool holding a disk (by <source file> or <source pool volume>), and the disk's virtual
 * size; NULL when no pool of the node knows it (then nothing can be checked). */
virStoragePoolPtr hx_snap_disk_pool(virConnectPtr conn, xmlNodePtr disk, uint64_t *capacity);
/* ENOSPC when a pool holding one of the VM's qcow2 disks has less room than the estimate. */
int hx_snap_space_check(hx_snapctx *c, const char *vm, const char *snap, int with_memory,
                        char **msg);
/* ENOSPC when a pool of the disks to copy by reflink lacks room for their growth. */
int hx_snap_bt_space_check(hx_snapctx *c, const char *vm, const char *snap, json_t *disks,
                           char **msg);

/* ---- snapshot_internal.c: libvirt's internal snapshots ---- */

int hx_snap_int_create(hx_snapctx *c, const char *node, const char *vm, const char *name,
                       char **msg);
int hx_snap_int_delete(hx_snapctx *c, virDomainSnapshotPtr s, const hx_snap_req *q, char **msg);
int hx_snap_int_revert(hx_snapctx *c, virDomainSnapshotPtr s, const hx_snap_req *q, char **msg);
int hx_snap_int_describe(hx_snapctx *c, virDomainSnapshotPtr s, const hx_snap_req *q, char **msg);

/* ---- snapshot_btrfs.c: btrfs snapshots ---- */

/* The VM's disks when every one is a raw volume of a btrfs-backed pool: 1 and *out
 * [{"target","pool","volume","capacity"}]; 0 when not (libvirt's snapshots apply). */
int hx_snap_bt_disks(hx_snapctx *c, json_t **out);
int hx_snap_bt_create(hx_snapctx *c, const char *node, const char *vm, const char *name,
                      json_t *disks, char **msg);
int hx_snap_bt_delete(hx_snapctx *c, xmlDocPtr doc, xmlNodePtr rec, const hx_snap_req *q,
                      char **msg);
int hx_snap_bt_revert(hx_snapctx *c, xmlDocPtr doc, xmlNodePtr rec, const hx_snap_req *q,
                      char **msg);
int hx_snap_bt_describe(hx_snapctx *c, xmlDocPtr doc, xmlNodePtr rec, const hx_snap_req *q,
                        char **msg);
