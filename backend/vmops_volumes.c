/* The volumes Horcrux creates for a VM: their XML, their creation (space checked first) and
 * deletion, and their record in the domain's own metadata, so that rmdir deletes exactly those
 * and never a disk someone attached by hand. */
#include "auto.h"
#include "hx_log.h"
#include "hx_util.h"
#include "vmops_priv.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <stdio.h>
#include <string.h>

char *hx_volume_xml(const char *name, unsigned long long bytes, const char *format, int sparse,
                    const char *backing, const char *backing_format)
{
    xmlNodePtr root = NULL;
    hx_autoxml xmlDocPtr doc = hx_vm_xml_new("volume", name, &root);
    if (!doc)
        return NULL;
    char cap[32];
    snprintf(cap, sizeof(cap), "%llu", bytes);
    xmlNewProp(xmlNewTextChild(root, NULL, BAD_CAST "capacity", BAD_CAST cap), BAD_CAST "unit",
               BAD_CAST "bytes");
    if (sparse)
        xmlNewProp(xmlNewTextChild(root, NULL, BAD_CAST "allocation", BAD_CAST "0"),
                   BAD_CAST "unit", BAD_CAST "bytes");
    if (format && *format) {
        xmlNodePtr t = xmlNewChild(root, NULL, BAD_CAST "target", NULL);
        xmlNewProp(xmlNewChild(t, NULL, BAD_CAST "format", NULL), BAD_CAST "type", BAD_CAST format);
    }
    if (backing) {
        xmlNodePtr bs = xmlNewChild(root, NULL, BAD_CAST "backingStore", NULL);
        xmlNewTextChild(bs, NULL, BAD_CAST "path", BAD_CAST backing);
        xmlNewProp(xmlNewChild(bs, NULL, BAD_CAST "format", NULL), BAD_CAST "type",
                   BAD_CAST backing_format);
    }
    return hx_xml_dump(doc, root);
}

void hx_vm_volume_delete(virStorageVolPtr vol, const char *vm, const char *pool, const char *name,
                         hx_log_level fail_level)
{
    if (virStorageVolDelete(vol, 0) < 0)
        hx_log(fail_level, "VM %s: cannot delete volume %s/%s: %s", vm, pool, name,
               virGetLastErrorMessage());
    else
        hx_info("VM %s: deleted volume %s/%s", vm, pool, name);
}

void hx_volumes_delete(virConnectPtr conn, json_t *vols, const char *vm)
{
    size_t i;
    json_t *v;
    json_array_foreach (vols, i, v) {
        const char *pool = json_string_value(json_object_get(v, "pool"));
        const char *name = json_string_value(json_object_get(v, "name"));
        if (!pool || !name)
            continue;
        hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(conn, pool);
        hx_autovol virStorageVolPtr vol = p ? virStorageVolLookupByName(p, name) : NULL;
        if (!vol) {
            if (virGetLastErrorCode() != VIR_ERR_NO_STORAGE_VOL)
                hx_warn("VM %s: cannot find volume %s/%s to delete: %s", vm, pool, name,
                        virGetLastErrorMessage());
            continue;
        }
        hx_vm_volume_delete(vol, vm, pool, name, HX_LOG_ERROR);
    }
}

int hx_volumes_create(virConnectPtr conn, json_t *vols, const char *vm, char **msg)
{
    size_t i;
    json_t *v;
    json_array_foreach (vols, i, v) {
        const char *pool = json_string_value(json_object_get(v, "pool"));
        const char *name = json_string_value(json_object_get(v, "name"));
        const char *fmt = json_string_value(json_object_get(v, "format"));
        json_int_t size = json_integer_value(json_object_get(v, "size_bytes"));
        hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(conn, pool);
        virStoragePoolInfo pi;
        int r = 0;
        if (!p || virStoragePoolGetInfo(p, &pi) < 0) {
            r = hx_virt_errno();
            hx_fail(msg, r, "VM %s: storage pool %s: %s", vm, pool, virGetLastErrorMessage());
        } else if ((!fmt || strcmp(fmt, "qcow2") != 0) && (unsigned long long)size > pi.available) {
            /* A raw volume may fill all of its size; qcow2 grows from almost nothing. */
            r = hx_fail(msg, -ENOSPC,
                        "VM %s: volume %s/%s needs %lld bytes but pool %s has %llu free", vm, pool,
                        name, (long long)size, pool, pi.available);
        } else {
            hx_autofree char *xml =
                hx_volume_xml(name, (unsigned long long)size, fmt, 0, NULL, NULL);
            hx_autovol virStorageVolPtr vol = xml ? virStorageVolCreateXML(p, xml, 0) : NULL;
            if (!vol) {
                r = xml ? hx_virt_errno() : -ENOMEM;
                hx_fail(msg, r == -EBUSY ? -EIO : r, "VM %s: cannot create volume %s/%s: %s", vm,
                        pool, name, xml ? virGetLastErrorMessage() : "out of memory");
                r = r == -EBUSY ? -EIO : r;
            } else {
                hx_info("VM %s: created volume %s/%s (%lld bytes)", vm, pool, name,
                        (long long)size);
            }
        }
        if (r < 0) {
            hx_autojson json_t *made = json_array();
            for (size_t j = 0; j < i; j++)
                json_array_append(made, json_array_get(vols, j));
            hx_volumes_delete(conn, made, vm);
            return r;
        }
    }
    return 0;
}

json_t *hx_volumes_recorded(const char *xml)
{
    json_t *out = json_array();
    hx_autoxml xmlDocPtr doc = hx_vm_xml_read(xml, "domain.xml");
    if (!doc)
        return out;
    hx_autoxpctx xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    if (!ctx || xmlXPathRegisterNs(ctx, BAD_CAST "v", BAD_CAST HX_VOLS_NS) < 0)
        return out;
    hx_autoxpobj xmlXPathObjectPtr o =
        xmlXPathEvalExpression(BAD_CAST "/domain/metadata/v:volumes/*[local-name()='volume']", ctx);
    for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
        xmlNodePtr n = o->nodesetval->nodeTab[i];
        xmlChar *pool = xmlGetProp(n, BAD_CAST "pool");
        xmlChar *name = xmlGetProp(n, BAD_CAST "name");
        if (pool && name)
            json_array_append_new(out, json_pack("{s:s,s:s}", "pool", (const char *)pool, "name",
                                                 (const char *)name));
        xmlFree(pool);
        xmlFree(name);
    }
    return out;
}

char *hx_volumes_record(const char *xml, json_t *vols)
{
    hx_autoxml xmlDocPtr doc = hx_vm_xml_read(xml, "domain.xml");
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root)
        return NULL;
    xmlNodePtr meta = hx_vm_xml_metadata(root), list = NULL;
    for (xmlNodePtr c = meta->children; c && !list; c = c->next)
        if (c->type == XML_ELEMENT_NODE && c->ns && xmlStrEqual(c->ns->href, BAD_CAST HX_VOLS_NS) &&
            xmlStrEqual(c->name, BAD_CAST "volumes"))
            list = c;
    if (!list) {
        list = xmlNewChild(meta, NULL, BAD_CAST "volumes", NULL);
        xmlNsPtr ns = xmlNewNs(list, BAD_CAST HX_VOLS_NS, BAD_CAST HX_VOLS_PREFIX);
        xmlSetNs(list, ns);
    }
    size_t i;
    json_t *v;
    json_array_foreach (vols, i, v) {
        xmlNodePtr e = xmlNewChild(list, list->ns, BAD_CAST "volume", NULL);
        xmlNewProp(e, BAD_CAST "pool", BAD_CAST json_string_value(json_object_get(v, "pool")));
        xmlNewProp(e, BAD_CAST "name", BAD_CAST json_string_value(json_object_get(v, "name")));
    }
    return hx_xml_dump(doc, NULL);
}
