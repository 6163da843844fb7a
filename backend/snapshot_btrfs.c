/* btrfs snapshots: reflink copies of raw volumes.
 *
 * libvirt's internal snapshots need qcow2. A VM whose every disk is a raw volume of a
 * btrfs-backed pool gets Horcrux snapshots instead: each disk volume is copied by reflink
 * (virStorageVolCreateXMLFrom with VIR_STORAGE_VOL_CREATE_REFLINK: FICLONE, shared extents, no
 * data copied) to a hidden volume ".<volume>@<snapshot>" of the same pool, and the snapshot is a
 * record in the domain's metadata (snapshot_meta.c). Called by snapshots.c with the change's
 * context open (the VM's operation lock held), on the caller's thread. */
#include "hx_log.h"
#include "hx_pools.h"
#include "snapshots_priv.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <string.h>

int hx_snap_bt_disks(hx_snapctx *c, json_t **out)
{
    hx_autofree char *xml = virDomainGetXMLDesc(c->dom, 0);
    hx_autoxml xmlDocPtr doc = hx_snap_xml_read(xml, "domain.xml");
    hx_autoxpctx xmlXPathContextPtr ctx = doc ? xmlXPathNewContext(doc) : NULL;
    hx_autoxpobj xmlXPathObjectPtr o =
        ctx ? xmlXPathEvalExpression(
                  BAD_CAST "/domain/devices/disk[not(@device) or @device='disk']", ctx)
            : NULL;
    if (!o || !o->nodesetval || o->nodesetval->nodeNr == 0)
        return 0;
    hx_autojson json_t *disks = json_array();
    for (int i = 0; i < o->nodesetval->nodeNr; i++) {
        xmlNodePtr d = o->nodesetval->nodeTab[i];
        xmlNodePtr drv = hx_snap_xml_child(d, "driver");
        hx_autoxmlstr xmlChar *fmt = drv ? xmlGetProp(drv, BAD_CAST "type") : NULL;
        xmlNodePtr tgt = hx_snap_xml_child(d, "target");
        hx_autoxmlstr xmlChar *dev = tgt ? xmlGetProp(tgt, BAD_CAST "dev") : NULL;
        uint64_t cap = 0;
        hx_autopool virStoragePoolPtr p = fmt && xmlStrEqual(fmt, BAD_CAST "raw") && dev
                                              ? hx_snap_disk_pool(c->conn, d, &cap)
                                              : NULL;
        if (!p)
            return 0;
        char fs[32];
        int reflink = 0;
        if (hx_pool_backing(c->conn, virStoragePoolGetName(p), fs, sizeof(fs), &reflink) < 0 ||
            !reflink)
            return 0;
        /* The volume's own name, whether the disk names a file or a pool volume. */
        xmlNodePtr src = hx_snap_xml_child(d, "source");
        hx_autoxmlstr xmlChar *file = src ? xmlGetProp(src, BAD_CAST "file") : NULL;
        hx_autoxmlstr xmlChar *vname = src ? xmlGetProp(src, BAD_CAST "volume") : NULL;
        hx_autovol virStorageVolPtr v = file
                                            ? virStorageVolLookupByPath(c->conn, (const char *)file)
                                            : virStorageVolLookupByName(p, (const char *)vname);
        if (!v)
            return 0;
        json_array_append_new(disks,
                              json_pack("{s:s,s:s,s:s,s:I}", "target", (const char *)dev, "pool",
                                        virStoragePoolGetName(p), "volume", virStorageVolGetName(v),
                                        "capacity", (json_int_t)cap));
    }
    *out = hx_steal(&disks);
    return 1;
}

/* A reflink copy of volume from in pool as a new volume named to; NULL with libvirt's error. */
static virStorageVolPtr hx_bt_reflink(virConnectPtr conn, const char *pool, const char *from,
                                      const char *to)
{
    hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(conn, pool);
    hx_autovol virStorageVolPtr src = p ? virStorageVolLookupByName(p, from) : NULL;
    virStorageVolInfo vi;
    if (!src || virStorageVolGetInfo(src, &vi) < 0)
        return NULL;
    hx_autofree char *xml = hx_volume_xml(to, vi.capacity, "raw", 0, NULL, NULL);
    /* FICLONE of the whole file: no data moves, the copy shares every extent. libvirt reports
     * an error instead of copying bytes when the filesystem cannot clone. */
    return xml ? virStorageVolCreateXMLFrom(p, xml, src, VIR_STORAGE_VOL_CREATE_REFLINK) : NULL;
}

/* Deletes volumes [{"pool","name"}] of a snapshot; the number that could not be deleted. */
static int hx_bt_delete_vols(virConnectPtr conn, json_t *vols, const char *vm, const char *snap)
{
    int failed = 0;
    size_t i;
    json_t *v;
    json_array_foreach (vols, i, v) {
        const char *pool = json_string_value(json_object_get(v, "pool"));
        const char *name = json_string_value(json_object_get(v, "name"));
        hx_autopool virStoragePoolPtr p = pool ? virStoragePoolLookupByName(conn, pool) : NULL;
        hx_autovol virStorageVolPtr vol = p && name ? virStorageVolLookupByName(p, name) : NULL;
        if (!vol && virGetLastErrorCode() == VIR_ERR_NO_STORAGE_VOL)
            continue;
        if (!vol || virStorageVolDelete(vol, 0) < 0) {
            hx_err("VM %s: snapshot %s: cannot delete volume %s/%s: %s", vm, snap,
                   pool ? pool : "?", name ? name : "?", virGetLastErrorMessage());
            failed++;
        }
    }
    return failed;
}

static const char *hx_bt_state_name(int st)
{
    switch (st) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
        return "running";
    case VIR_DOMAIN_PAUSED:
        return "paused";
    default:
        return "shutoff";
    }
}

/* Names the copy of each disk ("copy"), none of them taken yet. */
static int hx_bt_name_copies(hx_snapctx *c, const char *vm, const char *name, json_t *disks,
                             char **msg)
{
    /* The copies' names: ".<volume>@<snapshot>", hidden in listings (ls) yet listed by
     * libvirt. A volume already of that name is never overwritten (EEXIST). */
    size_t i;
    json_t *d;
    json_array_foreach (disks, i, d) {
        char copy[512];
        int n = snprintf(copy, sizeof(copy), ".%s@%s",
                         json_string_value(json_object_get(d, "volume")), name);
        if (n < 0 || n > 255)
            return hx_fail(msg, -ENAMETOOLONG,
                           "VM %s: snapshot %s: the copy of volume %s would need a name longer "
                           "than 255 bytes",
                           vm, name, json_string_value(json_object_get(d, "volume")));
        hx_autopool virStoragePoolPtr p =
            virStoragePoolLookupByName(c->conn, json_string_value(json_object_get(d, "pool")));
        hx_autovol virStorageVolPtr old = p ? virStorageVolLookupByName(p, copy) : NULL;
        if (old)
            return hx_fail(msg, -EEXIST, "VM %s: snapshot %s: volume %s/%s already exists", vm,
                           name, json_string_value(json_object_get(d, "pool")), copy);
        json_object_set_new(d, "copy", json_string(copy));
    }
    return 0;
}

/* Copies each disk by reflink, the copies made appended to made ([{"pool","name"}]). */
static int hx_bt_copy_disks(hx_snapctx *c, const char *vm, const char *name, json_t *disks,
                            json_t *made, char **msg)
{
    size_t i;
    json_t *d;
    json_array_foreach (disks, i, d) {
        const char *pool = json_string_value(json_object_get(d, "pool"));
        const char *copy = json_string_value(json_object_get(d, "copy"));
        hx_autovol virStorageVolPtr v =
            hx_bt_reflink(c->conn, pool, json_string_value(json_object_get(d, "volume")), copy);
        if (!v)
            return hx_fail(msg, -EIO, "VM %s: snapshot %s: cannot reflink disk %s to %s/%s: %s", vm,
                           name, json_string_value(json_object_get(d, "target")), pool, copy,
                           virGetLastErrorMessage());
        json_array_append_new(made, json_pack("{s:s,s:s}", "pool", pool, "name", copy));
    }
    return 0;
}

/* Records the new snapshot in the domain's metadata as the current one. */
static int hx_bt_record(hx_snapctx *c, const char *vm, const char *name, int frozen, int st,
                        json_t *disks, char **msg)
{
    hx_autoxml xmlDocPtr doc = hx_snap_meta_load(c->dom, VIR_DOMAIN_AFFECT_CONFIG);
    if (hx_snap_bt_add(doc, name, frozen ? "application" : "crash", hx_bt_state_name(st), disks) <
        0)
        return hx_fail(msg, -ENOMEM, "VM %s: snapshot %s: out of memory", vm, name);
    if (hx_snap_meta_save(c->dom, doc) < 0)
        return hx_fail(msg, hx_snap_virt_errno(),
                       "VM %s: snapshot %s: cannot record it in the domain metadata: %s", vm, name,
                       virGetLastErrorMessage());
    return 0;
}

int hx_snap_bt_create(hx_snapctx *c, const char *node, const char *vm, const char *name,
                      json_t *disks, char **msg)
{
    int r = hx_snap_bt_space_check(c, vm, name, disks, msg);
    if (r == 0)
        r = hx_bt_name_copies(c, vm, name, disks, msg);
    if (r < 0)
        return r;
    int st = hx_snap_state(c);
    int running = st == VIR_DOMAIN_RUNNING || st == VIR_DOMAIN_BLOCKED;
    int frozen = running ? hx_snap_freeze(c, vm, name) : 0, paused = 0;
    /* qemu's stop drains and flushes every disk: the files hold what the guest wrote. */
    long long t0 = hx_now_mono_ns();
    if (running) {
        if (virDomainSuspend(c->dom) < 0) {
            r = hx_fail(msg, hx_snap_change_errno(), "VM %s: snapshot %s: cannot pause it: %s", vm,
                        name, virGetLastErrorMessage());
            if (frozen)
                hx_snap_thaw(c, vm, NULL);
            return r;
        }
        paused = 1;
    }
    hx_autojson json_t *made = json_array();
    r = hx_bt_copy_disks(c, vm, name, disks, made, msg);
    long long paused_ns = hx_now_mono_ns() - t0;
    if (paused && virDomainResume(c->dom) < 0)
        hx_err("VM %s: cannot resume it after snapshot %s: %s", vm, name, virGetLastErrorMessage());
    if (frozen)
        hx_snap_thaw(c, vm, name);
    if (r == 0)
        r = hx_bt_record(c, vm, name, frozen, st, disks, msg);
    if (r < 0) {
        /* Nothing half-made stays: the copies made so far go. */
        hx_bt_delete_vols(c->conn, made, vm, name);
        return r;
    }
    hx_info("node %s: VM %s: took btrfs snapshot %s (%zu disks by reflink, %s, paused %lld ms)",
            node, vm, name, json_array_size(disks),
            frozen ? "application-consistent" : "crash-consistent",
            paused ? paused_ns / 1000000 : 0LL);
    return 0;
}

int hx_snap_bt_delete(hx_snapctx *c, xmlDocPtr doc, xmlNodePtr rec, const hx_snap_req *q,
                      char **msg)
{
    hx_autojson json_t *copies = hx_snap_bt_copies(rec);
    if (hx_bt_delete_vols(c->conn, copies, q->vm, q->snap) > 0)
        return hx_fail(msg, -EIO, "VM %s: snapshot %s: cannot delete all of its volumes", q->vm,
                       q->snap);
    hx_snap_bt_remove(doc, rec, q->snap);
    if (hx_snap_meta_save(c->dom, doc) < 0)
        return hx_fail(msg, hx_snap_virt_errno(),
                       "VM %s: snapshot %s: its volumes are deleted but its record stays: %s",
                       q->vm, q->snap, virGetLastErrorMessage());
    hx_info("node %s: VM %s: deleted btrfs snapshot %s", q->node, q->vm, q->snap);
    return 0;
}

/* Every copy of a record first: a revert that cannot finish does not start. */
static int hx_bt_check_copies(hx_snapctx *c, xmlNodePtr rec, const hx_snap_req *q, char **msg)
{
    for (xmlNodePtr d = hx_snap_xml_child(rec, "disk"); d; d = hx_snap_xml_next(d->next, "disk")) {
        hx_autoxmlstr xmlChar *pool = xmlGetProp(d, BAD_CAST "pool");
        hx_autoxmlstr xmlChar *copy = xmlGetProp(d, BAD_CAST "copy");
        hx_autopool virStoragePoolPtr p =
            pool ? virStoragePoolLookupByName(c->conn, (const char *)pool) : NULL;
        hx_autovol virStorageVolPtr v =
            p && copy ? virStorageVolLookupByName(p, (const char *)copy) : NULL;
        if (!v)
            return hx_fail(msg, -EIO, "VM %s: snapshot %s: its volume %s/%s is missing: %s", q->vm,
                           q->snap, pool ? (const char *)pool : "?",
                           copy ? (const char *)copy : "?", virGetLastErrorMessage());
    }
    return 0;
}

/* Makes each disk of a record again from its copy. */
static int hx_bt_restore_disks(hx_snapctx *c, xmlNodePtr rec, const hx_snap_req *q, char **msg)
{
    for (xmlNodePtr d = hx_snap_xml_child(rec, "disk"); d; d = hx_snap_xml_next(d->next, "disk")) {
        hx_autoxmlstr xmlChar *pool = xmlGetProp(d, BAD_CAST "pool");
        hx_autoxmlstr xmlChar *vol = xmlGetProp(d, BAD_CAST "volume");
        hx_autoxmlstr xmlChar *copy = xmlGetProp(d, BAD_CAST "copy");
        if (!pool || !vol || !copy)
            continue;
        /* libvirt cannot clone onto an existing volume: the disk's volume is deleted and made
         * again from the copy under its name (same path). The copy stays, so a failure here
         * loses nothing: the error names it. */
        hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(c->conn, (const char *)pool);
        hx_autovol virStorageVolPtr cur =
            p ? virStorageVolLookupByName(p, (const char *)vol) : NULL;
        if (cur && virStorageVolDelete(cur, 0) < 0)
            return hx_fail(msg, -EIO,
                           "VM %s: revert to snapshot %s: cannot replace volume %s/%s: %s", q->vm,
                           q->snap, pool, vol, virGetLastErrorMessage());
        hx_autovol virStorageVolPtr nv =
            hx_bt_reflink(c->conn, (const char *)pool, (const char *)copy, (const char *)vol);
        if (!nv)
            return hx_fail(msg, -EIO,
                           "VM %s: revert to snapshot %s: cannot reflink %s/%s back to %s (the "
                           "snapshot's copy is intact): %s",
                           q->vm, q->snap, pool, copy, vol, virGetLastErrorMessage());
    }
    return 0;
}

int hx_snap_bt_revert(hx_snapctx *c, xmlDocPtr doc, xmlNodePtr rec, const hx_snap_req *q,
                      char **msg)
{
    int r = hx_bt_check_copies(c, rec, q, msg);
    if (r < 0)
        return r;
    /* The disks are replaced under the VM: a running one is powered off first (what it wrote
     * since the snapshot is dropped anyway) and started again afterwards, booting from the
     * snapshot's disks; the snapshot holds no memory to resume from. */
    int active = virDomainIsActive(c->dom) == 1;
    if (active && virDomainDestroy(c->dom) < 0)
        return hx_fail(msg, hx_snap_change_errno(),
                       "VM %s: cannot power it off to revert to snapshot %s: %s", q->vm, q->snap,
                       virGetLastErrorMessage());
    r = hx_bt_restore_disks(c, rec, q, msg);
    if (r < 0)
        return r;
    xmlSetProp(xmlDocGetRootElement(doc), BAD_CAST "current", BAD_CAST q->snap);
    if (hx_snap_meta_save(c->dom, doc) < 0)
        hx_warn("VM %s: cannot record snapshot %s as current: %s", q->vm, q->snap,
                virGetLastErrorMessage());
    if (active && virDomainCreate(c->dom) < 0)
        return hx_fail(msg, -EIO, "VM %s: reverted to snapshot %s but cannot start it again: %s",
                       q->vm, q->snap, virGetLastErrorMessage());
    hx_info("node %s: VM %s: reverted to btrfs snapshot %s%s", q->node, q->vm, q->snap,
            active ? " (powered off and started again)" : "");
    return 0;
}

int hx_snap_bt_describe(hx_snapctx *c, xmlDocPtr doc, xmlNodePtr rec, const hx_snap_req *q,
                        char **msg)
{
    xmlNodePtr d = hx_snap_xml_child(rec, "description");
    if (d) {
        xmlUnlinkNode(d);
        xmlFreeNode(d);
    }
    if (*q->desc)
        xmlNewTextChild(rec, rec->ns, BAD_CAST "description", BAD_CAST q->desc); /* escapes */
    if (hx_snap_meta_save(c->dom, doc) < 0)
        return hx_fail(msg, hx_snap_virt_errno(),
                       "snapshot %s of VM %s: cannot set the description: %s", q->snap, q->vm,
                       virGetLastErrorMessage());
    return 0;
}
