/* The changes of snapshots (see hx_snapshots.h): the checks of what the caller wrote, the
 * context of a change (the VM's operation lock, the node's cache refreshed and the names'
 * cache dropped at its end), and the choice between a btrfs snapshot (snapshot_btrfs.c) and
 * libvirt's internal one (snapshot_internal.c). Also the helpers both kinds share: errnos,
 * the VM's state, the guest agent's freeze. */
#include "hx_log.h"
#include "node.h"
#include "snapshots_priv.h"

#include <ctype.h>
#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/xmlstring.h>
#include <string.h>

#define HX_SNAP_DESC_MAX (64 * 1024)

int hx_snap_virt_errno(void)
{
    int e = hx_virt_errno();
    return e == -EINVAL ? -EIO : e;
}

int hx_snap_change_errno(void)
{
    int e = hx_snap_virt_errno();
    return e == -EBUSY ? -EIO : e;
}

int hx_snap_state(hx_snapctx *c)
{
    int st = c->view.state, reason;
    if (virDomainGetState(c->dom, &st, &reason, 0) < 0)
        st = c->view.state;
    return st;
}

/* Whether the live XML shows a connected guest agent channel. */
static int hx_agent_connected(const char *live_xml)
{
    hx_autoxml xmlDocPtr doc = hx_snap_xml_read(live_xml, "domain.xml");
    hx_autoxpctx xmlXPathContextPtr ctx = doc ? xmlXPathNewContext(doc) : NULL;
    hx_autoxpobj xmlXPathObjectPtr o =
        ctx ? xmlXPathEvalExpression(
                  BAD_CAST "/domain/devices/channel/target[@name='org.qemu.guest_agent.0']"
                           "[@state='connected']",
                  ctx)
            : NULL;
    return o && o->nodesetval && o->nodesetval->nodeNr > 0;
}

int hx_snap_freeze(hx_snapctx *c, const char *vm, const char *snap)
{
    if (!hx_agent_connected(c->view.xml_live))
        return 0;
    int frozen = virDomainFSFreeze(c->dom, NULL, 0, 0) >= 0;
    if (!frozen)
        hx_info("VM %s: the guest agent did not freeze the filesystems (%s): snapshot %s is "
                "crash-consistent",
                vm, virGetLastErrorMessage(), snap);
    return frozen;
}

void hx_snap_thaw(hx_snapctx *c, const char *vm, const char *snap)
{
    if (virDomainFSThaw(c->dom, NULL, 0, 0) >= 0)
        return;
    if (snap)
        hx_err("VM %s: cannot thaw the guest's filesystems after snapshot %s: %s", vm, snap,
               virGetLastErrorMessage());
    else
        hx_err("VM %s: cannot thaw the guest's filesystems: %s", vm, virGetLastErrorMessage());
}

/* ---- the context of a change ---- */

/* Ends a snapshot change: the node's cache of the VM refreshed, the kernel's copies of the
 * snapshot files dropped, then the shared cleanup (lock released last). */
static void hx_snapctx_clear(hx_snapctx *c)
{
    if (c->n && c->uuid[0] &&
        hx_node_call(c->n, HX_REQ_REFRESH, c->view.name, c->view.uuid, NULL) < 0)
        hx_warn("node %s: cannot refresh VM %s after a snapshot change", c->n->name, c->view.name);
    if (c->uuid[0])
        hx_snap_cache_changed(c->uuid);
    hx_vmctx_clear(c);
}
#define hx_snap_autoctx __attribute__((cleanup(hx_snapctx_clear)))

/* A change of an existing snapshot, by the kind of the snapshot. */
typedef struct hx_snap_op {
    int (*btrfs)(hx_snapctx *c, xmlDocPtr doc, xmlNodePtr rec, const hx_snap_req *q, char **msg);
    int (*internal)(hx_snapctx *c, virDomainSnapshotPtr s, const hx_snap_req *q, char **msg);
} hx_snap_op;

static const hx_snap_op hx_snap_op_delete = {hx_snap_bt_delete, hx_snap_int_delete};
static const hx_snap_op hx_snap_op_revert = {hx_snap_bt_revert, hx_snap_int_revert};
static const hx_snap_op hx_snap_op_describe = {hx_snap_bt_describe, hx_snap_int_describe};

/* Runs op on snapshot q->snap of VM q->vm within a change: its btrfs record when it has one,
 * else libvirt's snapshot of that name. */
static int hx_snap_change(hx_cluster *cl, const char *uuid, const hx_snap_req *q,
                          const hx_snap_op *op, char **msg)
{
    hx_snap_autoctx hx_snapctx c;
    int r = hx_vmctx_open(cl, q->node, q->vm, uuid, &c, msg);
    if (r < 0)
        return r;
    hx_autoxml xmlDocPtr meta = hx_snap_meta_load(c.dom, VIR_DOMAIN_AFFECT_CONFIG);
    xmlNodePtr rec = hx_snap_bt_find(meta, q->snap);
    if (rec)
        return op->btrfs(&c, meta, rec, q, msg);
    hx_autosnap virDomainSnapshotPtr s = virDomainSnapshotLookupByName(c.dom, q->snap, 0);
    if (!s)
        return hx_fail(msg, hx_snap_virt_errno(), "snapshot %s of VM %s: %s", q->snap, q->vm,
                       virGetLastErrorMessage());
    return op->internal(&c, s, q, msg);
}

/* ---- the entry points ---- */

int hx_snap_create(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                   const char *name, char **msg)
{
    const char *why = NULL;
    if (hx_snap_check_name(name, &why) < 0)
        return hx_fail(msg, -EINVAL, "VM %s: cannot take snapshot \"%s\": %s", vm, name, why);
    hx_snap_autoctx hx_snapctx c;
    int r = hx_vmctx_open(cl, node, vm, uuid, &c, msg);
    if (r < 0)
        return r;
    hx_autosnap virDomainSnapshotPtr old = virDomainSnapshotLookupByName(c.dom, name, 0);
    hx_autoxml xmlDocPtr meta = hx_snap_meta_load(c.dom, VIR_DOMAIN_AFFECT_CONFIG);
    if (old || hx_snap_bt_find(meta, name))
        return hx_fail(msg, -EEXIST, "VM %s already has a snapshot %s", vm, name);
    /* Raw disks on btrfs: reflink copies instead of libvirt's internal (qcow2) snapshots. */
    hx_autojson json_t *bdisks = NULL;
    if (hx_snap_bt_disks(&c, &bdisks) == 1)
        return hx_snap_bt_create(&c, node, vm, name, bdisks, msg);
    return hx_snap_int_create(&c, node, vm, name, msg);
}

int hx_snap_delete(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                   const char *snap, char **msg)
{
    hx_snap_req q = {node, vm, snap, NULL};
    return hx_snap_change(cl, uuid, &q, &hx_snap_op_delete, msg);
}

int hx_snap_revert(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                   const char *snap, const char *cmd, size_t len, char **msg)
{
    while (len > 0 && isspace((unsigned char)cmd[len - 1]))
        len--;
    while (len > 0 && isspace((unsigned char)*cmd)) {
        cmd++;
        len--;
    }
    if (!((len == 1 && cmd[0] == '1') || (len == 6 && memcmp(cmd, "revert", 6) == 0)))
        return hx_fail(msg, -EINVAL, "snapshot %s of VM %s: write 1 or revert to revert to it",
                       snap, vm);
    hx_snap_req q = {node, vm, snap, NULL};
    return hx_snap_change(cl, uuid, &q, &hx_snap_op_revert, msg);
}

int hx_snap_set_description(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                            const char *snap, const char *text, size_t len, char **msg)
{
    if (len > 0 && text[len - 1] == '\n')
        len--;
    if (len > HX_SNAP_DESC_MAX)
        return hx_fail(msg, -EFBIG, "snapshot %s of VM %s: a description has at most %d bytes",
                       snap, vm, HX_SNAP_DESC_MAX);
    hx_autofree char *desc = strndup(text, len);
    if (!desc)
        return hx_fail(msg, -ENOMEM, "snapshot %s of VM %s: out of memory", snap, vm);
    int bad = strlen(desc) != len || !xmlCheckUTF8((const unsigned char *)desc);
    for (const unsigned char *p = (const unsigned char *)desc; !bad && *p; p++)
        bad = (*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f;
    if (bad)
        return hx_fail(msg, -EINVAL,
                       "snapshot %s of VM %s: a description is UTF-8 text without control "
                       "characters",
                       snap, vm);
    hx_snap_req q = {node, vm, snap, desc};
    return hx_snap_change(cl, uuid, &q, &hx_snap_op_describe, msg);
}
