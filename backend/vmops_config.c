/* Commits of a VM's configuration: config.json (validated against the node's networks, bridges,
 * pools and volumes, new volumes created, applied live where the running VM can take it) and
 * the cloud-init documents. */
#include "auto.h"
#include "hx_cloudinit.h"
#include "hx_domxml.h"
#include "hx_log.h"
#include "hx_util.h"
#include "node.h"
#include "vmops_priv.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <string.h>

int hx_vm_json_object(const char *doc, size_t len, const char *what, const char *vm,
                      const char *not_object, json_t **out, char **msg)
{
    json_error_t je;
    hx_autojson json_t *j = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return hx_fail(msg, -EINVAL, "%s %s: line %d column %d: %s", what, vm, je.line, je.column,
                       je.text);
    if (!json_is_object(j))
        return hx_fail(msg, -EINVAL, "%s %s: %s", what, vm, not_object);
    *out = hx_steal(&j);
    return 0;
}

/* ---- references on the node, for config.json validation ---- */

HX_AUTO_FN(hx_vm_netp, virNetworkPtr, virNetworkFree)
HX_AUTO_FN(hx_vm_ifacep, virInterfacePtr, virInterfaceFree)

/* What a lookup by name says: 1 found (obj), 0 when libvirt's error says there is none
 * (missing), -1 for any other failure. Called before obj's cleanup, which resets the error. */
static int hx_env_found(const void *obj, int missing)
{
    return obj ? 1 : virGetLastErrorCode() == missing ? 0 : -1;
}

static int hx_env_network(const char *name, void *opaque)
{
    __attribute__((cleanup(hx_vm_netp))) virNetworkPtr o = virNetworkLookupByName(opaque, name);
    return hx_env_found(o, VIR_ERR_NO_NETWORK);
}

static int hx_env_bridge(const char *name, void *opaque)
{
    __attribute__((cleanup(hx_vm_ifacep))) virInterfacePtr o =
        virInterfaceLookupByName(opaque, name);
    return hx_env_found(o, VIR_ERR_NO_INTERFACE);
}

static int hx_env_pool(const char *name, void *opaque)
{
    hx_autopool virStoragePoolPtr o = virStoragePoolLookupByName(opaque, name);
    return hx_env_found(o, VIR_ERR_NO_STORAGE_POOL);
}

static int64_t hx_env_volume(const char *pool, const char *vol, void *opaque)
{
    hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(opaque, pool);
    if (!p)
        return virGetLastErrorCode() == VIR_ERR_NO_STORAGE_POOL ? -1 : -2;
    hx_autovol virStorageVolPtr v = virStorageVolLookupByName(p, vol);
    if (!v)
        return virGetLastErrorCode() == VIR_ERR_NO_STORAGE_VOL ? -1 : -2;
    virStorageVolInfo info;
    if (virStorageVolGetInfo(v, &info) < 0)
        return -2;
    return (int64_t)info.capacity;
}

/* ---- config.json ---- */

/* Applies to the running VM what it can take now; the rest waits for the next boot (live.json
 * shows the difference). Failures here are not errors of the commit. */
static void hx_vm_apply_live(hx_vmctx *c, const char *vm, const char *old_live_xml)
{
    hx_autofree char *new_xml = virDomainGetXMLDesc(c->dom, VIR_DOMAIN_XML_INACTIVE);
    if (!new_xml || !old_live_xml)
        return;
    hx_autofree char *e1 = NULL;
    hx_autofree char *e2 = NULL;
    hx_autojson json_t *now = hx_domxml_to_config(old_live_xml, 0, NULL, NULL, &e1);
    hx_autojson json_t *want = hx_domxml_to_config(new_xml, 0, NULL, NULL, &e2);
    if (!now || !want)
        return;
    json_int_t vc = json_integer_value(json_object_get(want, "vcpus"));
    if (vc > 0 && vc != json_integer_value(json_object_get(now, "vcpus")) &&
        virDomainSetVcpusFlags(c->dom, (unsigned)vc, VIR_DOMAIN_AFFECT_LIVE) < 0)
        hx_info("VM %s: %d vCPUs at the next boot: %s", vm, (int)vc, virGetLastErrorMessage());
    json_int_t mem = json_integer_value(json_object_get(want, "memory_mib"));
    if (mem > 0 && mem != json_integer_value(json_object_get(now, "memory_mib")) &&
        virDomainSetMemoryFlags(c->dom, (unsigned long)mem * 1024, VIR_DOMAIN_AFFECT_LIVE) < 0)
        hx_info("VM %s: %lld MiB at the next boot: %s", vm, (long long)mem,
                virGetLastErrorMessage());
    /* Devices: disks by target, NICs by MAC; hot-plug what is new, unplug what went away. */
    static const struct {
        const char *list, *key, *which;
    } devs[] = {{"disks", "target", "disk"}, {"nics", "mac", "interface"}};
    for (size_t d = 0; d < 2; d++) {
        json_t *a = json_object_get(want, devs[d].list), *b = json_object_get(now, devs[d].list);
        for (int pass = 0; pass < 2; pass++) {
            json_t *from = pass ? b : a, *other = pass ? a : b;
            size_t i, j;
            json_t *x, *y;
            json_array_foreach (from, i, x) {
                const char *key = json_string_value(json_object_get(x, devs[d].key));
                int found = 0;
                json_array_foreach (other, j, y)
                    found |=
                        key && hx_vm_streq(key, json_string_value(json_object_get(y, devs[d].key)));
                if (found || !key)
                    continue;
                hx_autofree char *dx =
                    hx_domxml_device(pass ? old_live_xml : new_xml, devs[d].which, key);
                int r = !dx    ? -1
                        : pass ? virDomainDetachDeviceFlags(c->dom, dx, VIR_DOMAIN_AFFECT_LIVE)
                               : virDomainAttachDeviceFlags(c->dom, dx, VIR_DOMAIN_AFFECT_LIVE);
                if (r < 0)
                    hx_info("VM %s: %s %s %s at the next boot: %s", vm, devs[d].which, key,
                            pass ? "leaves" : "arrives", dx ? virGetLastErrorMessage() : "");
            }
        }
    }
}

int hx_vm_apply_config(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                       const char *doc, size_t len, char **msg)
{
    hx_autojson json_t *cfg = NULL;
    int r =
        hx_vm_json_object(doc, len, "config.json of VM", vm, "must be a JSON object", &cfg, msg);
    if (r < 0)
        return r;
    hx_vm_autoctx hx_vmctx c;
    r = hx_vmctx_open(cl, node, vm, uuid, &c, msg);
    if (r < 0)
        return r;
    /* A template's disks are the backing files of its linked clones: it must not start. */
    char clone[HX_VM_NAME_MAX];
    if (json_is_false(json_object_get(cfg, "template")) && hx_vm_is_template(c.view.config_json) &&
        hx_vm_linked_clone(cl, node, &c.view, clone, sizeof(clone)))
        return hx_fail(msg, -EBUSY,
                       "VM %s stays a template while linked clones use its disks (%s does)", vm,
                       clone);
    hx_domxml_env env = {.network_exists = hx_env_network,
                         .bridge_exists = hx_env_bridge,
                         .pool_exists = hx_env_pool,
                         .volume_size = hx_env_volume,
                         .opaque = c.conn};
    hx_autofree char *new_xml = NULL;
    hx_autofree char *err = NULL;
    json_t *vols_raw = NULL;
    r = hx_domxml_apply(c.view.xml_config, cfg, &env, &new_xml, &vols_raw, &err);
    hx_autojson json_t *vols = vols_raw;
    if (r < 0)
        return hx_fail(msg, r, "config.json of VM %s: %s", vm, err ? err : "invalid");
    json_t *autostart = json_object_get(cfg, "autostart");
    if (json_array_size(vols) > 0) {
        r = hx_volumes_create(c.conn, vols, vm, msg);
        if (r < 0)
            return r;
        char *rec = hx_volumes_record(new_xml, vols);
        if (!rec) {
            hx_volumes_delete(c.conn, vols, vm);
            return hx_fail(msg, -EIO, "VM %s: cannot record its new volumes", vm);
        }
        free(new_xml);
        new_xml = rec;
    }
    hx_autodom virDomainPtr nd = virDomainDefineXML(c.conn, new_xml);
    if (!nd) {
        r = hx_virt_errno();
        hx_fail(msg, r == -EBUSY ? -EINVAL : r, "VM %s: libvirt refused the configuration: %s", vm,
                virGetLastErrorMessage());
        hx_volumes_delete(c.conn, vols, vm);
        hx_vm_refresh(c.n, vm, c.view.uuid);
        return r == -EBUSY ? -EINVAL : r;
    }
    if (json_is_boolean(autostart) && json_is_true(autostart) != !!c.view.autostart &&
        virDomainSetAutostart(c.dom, json_is_true(autostart)) < 0)
        hx_warn("VM %s: cannot set autostart: %s", vm, virGetLastErrorMessage());
    if (c.view.id >= 0)
        hx_vm_apply_live(&c, vm, c.view.xml_live);
    hx_vm_refresh(c.n, vm, c.view.uuid);
    return 0;
}

/* ---- cloud-init documents ---- */

int hx_vm_set_cloudinit(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                        const char *file, const char *doc, size_t len, char **msg)
{
    if (len > HX_CI_MAX_BYTES)
        return hx_fail(msg, -EFBIG, "cloudinit/%s of VM %s: %zu bytes, at most %d", file, vm, len,
                       HX_CI_MAX_BYTES);
    hx_vm_autoctx hx_vmctx c;
    int r = hx_vmctx_open(cl, node, vm, uuid, &c, msg);
    if (r < 0)
        return r;
    r = hx_ci_store(c.dom, vm, file, doc, len, msg);
    hx_vm_refresh(c.n, vm, c.view.uuid);
    return r;
}
