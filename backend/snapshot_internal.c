/* libvirt's internal (qcow2) snapshots: take, delete, revert to, describe. Called by
 * snapshots.c with the change's context open (the VM's operation lock held), on the caller's
 * thread; the consistency of each snapshot is kept in the domain's metadata (snapshot_meta.c). */
#include "hx_log.h"
#include "snapshots_priv.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <string.h>

int hx_snap_int_create(hx_snapctx *c, const char *node, const char *vm, const char *name,
                       char **msg)
{
    int st = hx_snap_state(c);
    /* libvirt takes internal snapshots of a running (or paused) qemu VM with savevm, which
     * always saves the memory; of a shut-off VM, the disks alone. */
    int with_memory =
        st == VIR_DOMAIN_RUNNING || st == VIR_DOMAIN_PAUSED || st == VIR_DOMAIN_BLOCKED;
    int r = hx_snap_space_check(c, vm, name, with_memory, msg);
    if (r < 0)
        return r;
    hx_autofree char *xml = hx_snap_xml_new(name);
    if (!xml)
        return hx_fail(msg, -ENOMEM, "VM %s: snapshot %s: out of memory", vm, name);
    /* Application consistency: libvirt's QUIESCE flag works with disk-only (external)
     * snapshots alone, so the filesystems are frozen through the agent around the snapshot. */
    int frozen = with_memory ? hx_snap_freeze(c, vm, name) : 0;
    hx_autosnap virDomainSnapshotPtr s =
        virDomainSnapshotCreateXML(c->dom, xml, VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC);
    if (!s)
        r = hx_fail(msg, hx_snap_change_errno(), "VM %s: cannot take snapshot %s: %s", vm, name,
                    virGetLastErrorMessage());
    if (frozen)
        hx_snap_thaw(c, vm, name);
    if (!s) {
        /* ATOMIC asks libvirt to leave nothing behind; check anyway. */
        hx_autosnap virDomainSnapshotPtr half = virDomainSnapshotLookupByName(c->dom, name, 0);
        if (half && virDomainSnapshotDelete(half, 0) < 0)
            hx_err("VM %s: cannot delete the half-made snapshot %s: %s", vm, name,
                   virGetLastErrorMessage());
        return r;
    }
    if (frozen)
        hx_snap_record(c->dom, vm, name, "application");
    hx_info("node %s: VM %s: took snapshot %s (%s, %s)", node, vm, name,
            with_memory ? "memory" : "disks",
            frozen ? "application-consistent" : "crash-consistent");
    return 0;
}

int hx_snap_int_delete(hx_snapctx *c, virDomainSnapshotPtr s, const hx_snap_req *q, char **msg)
{
    /* Flags 0: this snapshot alone; libvirt re-parents its children to its parent. */
    if (virDomainSnapshotDelete(s, 0) < 0)
        return hx_fail(msg, hx_snap_change_errno(), "VM %s: cannot delete snapshot %s: %s", q->vm,
                       q->snap, virGetLastErrorMessage());
    hx_snap_record(c->dom, q->vm, q->snap, NULL);
    hx_info("node %s: VM %s: deleted snapshot %s", q->node, q->vm, q->snap);
    return 0;
}

int hx_snap_int_revert(hx_snapctx *c, virDomainSnapshotPtr s, const hx_snap_req *q, char **msg)
{
    /* Reverting replaces the domain's definition with the snapshot's copy, which lacks the
     * consistency records made after it: keep them across. */
    hx_autofree char *meta = virDomainGetMetadata(c->dom, VIR_DOMAIN_METADATA_ELEMENT, HX_SNAP_NS,
                                                  VIR_DOMAIN_AFFECT_CONFIG);
    /* Flags 0: the VM ends in the snapshot's state (running when its memory was saved while
     * running, shut off for a snapshot of a shut-off VM). */
    if (virDomainRevertToSnapshot(s, 0) < 0)
        return hx_fail(msg, hx_snap_change_errno(), "VM %s: cannot revert to snapshot %s: %s",
                       q->vm, q->snap, virGetLastErrorMessage());
    if (meta && hx_snap_meta_set(c->dom, meta) < 0)
        hx_warn("VM %s: cannot keep the snapshot records after reverting to %s: %s", q->vm, q->snap,
                virGetLastErrorMessage());
    hx_info("node %s: VM %s: reverted to snapshot %s", q->node, q->vm, q->snap);
    return 0;
}

/* Sets (or removes, when desc is "") the <description> of a snapshot's XML. */
static void hx_snap_xml_describe(xmlDocPtr doc, xmlNodePtr root, const char *desc)
{
    xmlNodePtr d = hx_snap_xml_child(root, "description");
    if (!d && *desc) {
        xmlNodePtr nm = hx_snap_xml_child(root, "name");
        d = xmlNewDocNode(doc, NULL, BAD_CAST "description", NULL);
        if (nm)
            xmlAddNextSibling(nm, d);
        else
            xmlAddChild(root, d);
    }
    if (d && *desc) {
        xmlNodeSetContent(d, NULL);
        xmlNodeAddContent(d, BAD_CAST desc); /* escapes as text */
    } else if (d) {
        xmlUnlinkNode(d);
        xmlFreeNode(d);
    }
}

int hx_snap_int_describe(hx_snapctx *c, virDomainSnapshotPtr s, const hx_snap_req *q, char **msg)
{
    hx_autofree char *xml = virDomainSnapshotGetXMLDesc(s, VIR_DOMAIN_XML_SECURE);
    int current = virDomainSnapshotIsCurrent(s, 0) == 1;
    hx_autoxml xmlDocPtr doc = hx_snap_xml_read(xml, "snapshot.xml");
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root)
        return hx_fail(msg, -EIO, "snapshot %s of VM %s: cannot read its XML: %s", q->snap, q->vm,
                       xml ? "not XML" : virGetLastErrorMessage());
    hx_snap_xml_describe(doc, root, q->desc);
    hx_autofree char *nxml = hx_xml_dump(doc, root);
    /* REDEFINE replaces the metadata of an existing snapshot (as virsh snapshot-edit does);
     * CURRENT keeps it current, which a redefinition would otherwise not. */
    unsigned flags =
        VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE | (current ? VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT : 0);
    hx_autosnap virDomainSnapshotPtr ns =
        nxml ? virDomainSnapshotCreateXML(c->dom, nxml, flags) : NULL;
    if (!ns)
        return hx_fail(msg, nxml ? hx_snap_virt_errno() : -ENOMEM,
                       "snapshot %s of VM %s: cannot set the description: %s", q->snap, q->vm,
                       nxml ? virGetLastErrorMessage() : "out of memory");
    return 0;
}
