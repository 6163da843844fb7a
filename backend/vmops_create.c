/* Creation and deletion of VMs: names unique in the cluster, the documented defaults for a new
 * VM, and a delete that takes the volumes Horcrux made for the VM (and nothing else) with it. */
#include "auto.h"
#include "hx_clone.h"
#include "hx_domxml.h"
#include "hx_log.h"
#include "hx_snapshots.h"
#include "hx_util.h"
#include "node.h"
#include "vmops_priv.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <pthread.h>
#include <string.h>

const char *hx_vm_name_taken(hx_cluster *cl, const char *name, char *node_out, size_t size)
{
    char **nodes = hx_cluster_node_names(cl, NULL);
    const char *found = NULL;
    for (char **p = nodes; p && *p && !found; p++) {
        char u[HX_UUID_LEN];
        if (hx_cluster_vm_lookup(cl, *p, name, u) == 0) {
            hx_strlcpy(node_out, *p, size);
            found = node_out;
        }
    }
    hx_strv_free(nodes);
    return found;
}

/* "kvm" when the node offers hardware virtualization for x86_64 guests, else "qemu". */
static const char *hx_vm_default_type(virConnectPtr conn)
{
    hx_autofree char *caps = virConnectGetCapabilities(conn);
    hx_autoxml xmlDocPtr doc = hx_vm_xml_read(caps, "capabilities.xml");
    if (!doc)
        return "qemu";
    hx_autoxpctx xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    hx_autoxpobj xmlXPathObjectPtr o =
        ctx ? xmlXPathEvalExpression(
                  BAD_CAST "/capabilities/guest[arch/@name='x86_64']/arch/domain[@type='kvm']", ctx)
            : NULL;
    return o && o->nodesetval && o->nodesetval->nodeNr > 0 ? "kvm" : "qemu";
}

static pthread_mutex_t hx_create_mu = PTHREAD_MUTEX_INITIALIZER;

static void hx_unlockp(pthread_mutex_t **m)
{
    if (*m)
        pthread_mutex_unlock(*m);
}

int hx_vm_create(hx_cluster *cl, const char *node, const char *name, char **msg)
{
    hx_autofree char *err = NULL;
    if (hx_domxml_check_name(name, &err) < 0)
        return hx_fail(msg, -EINVAL, "cannot create VM: %s", err ? err : "invalid name");
    hx_autonode hx_node *n = hx_cluster_get(cl, node);
    if (!n)
        return hx_fail(msg, -ENOENT, "node %s does not exist", node);
    /* Names are unique in the whole cluster; creates through this daemon are serialized so two
     * mkdirs of one name on two nodes cannot both pass the check. */
    pthread_mutex_lock(&hx_create_mu);
    __attribute__((cleanup(hx_unlockp))) pthread_mutex_t *held = &hx_create_mu;
    char where[HX_NODE_NAME_MAX];
    if (hx_vm_name_taken(cl, name, where, sizeof(where)))
        return hx_fail(msg, -EEXIST, "cannot create VM %s: the name is taken on node %s", name,
                       where);
    if (hx_clone_name_busy(name))
        return hx_fail(msg, -EEXIST, "cannot create VM %s: a clone of that name is being made",
                       name);
    hx_autoconn virConnectPtr conn = hx_node_conn(n);
    if (!conn)
        return hx_fail(msg, -EHOSTDOWN, "cannot create VM %s: node %s is offline", name, node);
    hx_autofree char *xml = hx_domxml_new(name, hx_vm_default_type(conn), &err);
    if (!xml)
        return hx_fail(msg, -EIO, "cannot create VM %s: %s", name, err ? err : "no XML");
    hx_autodom virDomainPtr d = virDomainDefineXML(conn, xml);
    if (!d) {
        int r = hx_virt_errno();
        if (virGetLastErrorCode() == VIR_ERR_DOM_EXIST ||
            virGetLastErrorCode() == VIR_ERR_OPERATION_FAILED)
            r = -EEXIST;
        return hx_fail(msg, r, "cannot create VM %s on node %s: %s", name, node,
                       virGetLastErrorMessage());
    }
    char uuid[VIR_UUID_STRING_BUFLEN];
    virDomainGetUUIDString(d, uuid);
    hx_info("node %s: created VM %s (%s)", node, name, uuid);
    hx_vm_refresh(n, name, uuid);
    return 0;
}

int hx_vm_delete(hx_cluster *cl, const char *node, const char *vm, const char *uuid, char **msg)
{
    hx_vm_autoctx hx_vmctx c;
    int r = hx_vmctx_open(cl, node, vm, uuid, &c, msg);
    if (r < 0)
        return r;
    if (c.view.state != VIR_DOMAIN_SHUTOFF)
        return hx_fail(msg, -EBUSY, "VM %s is not shut off: stop it first", vm);
    hx_autojson json_t *cfg = c.view.config_json ? json_loads(c.view.config_json, 0, NULL) : NULL;
    if (json_is_true(json_object_get(cfg, "protected")))
        return hx_fail(msg, -EPERM, "VM %s is protected (\"protected\": true in config.json)", vm);
    char clone[HX_VM_NAME_MAX];
    if (json_is_true(json_object_get(cfg, "template")) &&
        hx_vm_linked_clone(cl, node, &c.view, clone, sizeof(clone)))
        return hx_fail(msg, -EBUSY,
                       "VM %s is a template with linked clones (%s uses its disks): delete them "
                       "first",
                       vm, clone);
    hx_autojson json_t *vols = hx_volumes_recorded(c.view.xml_config);
    /* The copies of its btrfs snapshots go with it (libvirt knows them as plain volumes). */
    hx_autojson json_t *snapvols = hx_snap_btrfs_volumes(c.view.xml_config);
    json_array_extend(vols, snapvols);
    unsigned flags = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                     VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | VIR_DOMAIN_UNDEFINE_NVRAM;
    if (virDomainUndefineFlags(c.dom, flags) < 0) {
        r = hx_virt_errno();
        return hx_fail(msg, r, "cannot delete VM %s: %s", vm, virGetLastErrorMessage());
    }
    /* The domain is gone first: a failure above leaves every disk in place. */
    hx_volumes_delete(c.conn, vols, vm);
    hx_info("node %s: deleted VM %s", node, vm);
    hx_vm_refresh(c.n, vm, c.view.uuid);
    return 0;
}
