/* The domain XML of a clone, from its source's: new name, UUID and MACs, the disks on their new
 * volumes, the source's per-VM records dropped, and the marks of what the clone owns (its
 * volumes) and hangs on (the template of a linked clone). */
#include "auto.h"
#include "clone_priv.h"
#include "hx_domxml.h"
#include "vmops_priv.h"

#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <stdio.h>
#include <string.h>

/* The namespace of snapshot records (backend/snapshot_meta.c). */
#define HX_CLONE_SNAP_NS "https://horcrux.dev/xmlns/snapshots/1"

/* Removes from the document every node xpath finds from ctx's node. */
static void hx_clone_xml_drop(xmlXPathContextPtr ctx, const char *xpath)
{
    hx_autoxpobj xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST xpath, ctx);
    for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
        xmlUnlinkNode(o->nodesetval->nodeTab[i]);
        xmlFreeNode(o->nodesetval->nodeTab[i]);
        o->nodesetval->nodeTab[i] = NULL;
    }
}

/* The clone's domain XML: new name and UUID, new MACs, disks on the new volumes, the Horcrux
 * metadata of the new volumes and, for linked clones, of the template it hangs on. */
char *hx_clone_domxml(hx_clone_req *q, virConnectPtr dc)
{
    hx_autoxml xmlDocPtr doc = hx_vm_xml_read(q->xml, "domain.xml");
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root)
        return NULL;
    hx_autoxpctx xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    xmlXPathRegisterNs(ctx, BAD_CAST "v", BAD_CAST HX_VOLS_NS);
    xmlXPathRegisterNs(ctx, BAD_CAST "hx", BAD_CAST HX_DOMXML_NS);
    xmlXPathRegisterNs(ctx, BAD_CAST "s", BAD_CAST HX_CLONE_SNAP_NS);
    ctx->node = root;
    /* Elements to drop: the UUID (set below), MACs, per-VM NVRAM, the source's volume list,
     * its snapshot records (their btrfs copies belong to the source: rmdir of the clone must
     * not delete them), the template flag, disks' backing chains (libvirt reads them from the
     * new images). */
    static const char *const drop[] = {"uuid",
                                       "os/nvram",
                                       "metadata/v:volumes",
                                       "metadata/s:snapshots",
                                       "metadata/hx:vm/*[local-name()='template']",
                                       "metadata/hx:vm/*[local-name()='linked_from']",
                                       "devices/disk/backingStore",
                                       "devices/interface/target",
                                       NULL};
    for (const char *const *x = drop; *x; x++)
        hx_clone_xml_drop(ctx, *x);
    if (!q->keep_macs) {
        ctx->node = root;
        hx_clone_xml_drop(ctx, "devices/interface/mac");
    }
    for (xmlNodePtr c = root->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "name"))
            xmlNodeSetContent(c, BAD_CAST q->name);
    xmlNodePtr u = xmlNewNode(NULL, BAD_CAST "uuid");
    xmlNodeSetContent(u, BAD_CAST q->new_uuid);
    xmlAddChild(root, u);
    size_t i;
    json_t *d;
    json_array_foreach (q->disks, i, d) {
        char xp[160];
        snprintf(xp, sizeof(xp), "devices/disk[target/@dev='%s']",
                 json_string_value(json_object_get(d, "target")));
        ctx->node = root;
        hx_autoxpobj xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST xp, ctx);
        if (!o || !o->nodesetval || o->nodesetval->nodeNr != 1)
            return NULL;
        xmlNodePtr disk = o->nodesetval->nodeTab[0];
        const char *pool = json_string_value(json_object_get(d, "dst_pool"));
        const char *vol = json_string_value(json_object_get(d, "dst_vol"));
        hx_autovol virStorageVolPtr nv = hx_clone_vol(dc, pool, vol);
        hx_autofree char *path = nv ? virStorageVolGetPath(nv) : NULL;
        if (!path)
            return NULL;
        for (xmlNodePtr c = disk->children; c; c = c->next) {
            if (c->type != XML_ELEMENT_NODE)
                continue;
            if (xmlStrEqual(c->name, BAD_CAST "driver"))
                xmlSetProp(c, BAD_CAST "type",
                           BAD_CAST json_string_value(json_object_get(d, "dst_format")));
            if (!xmlStrEqual(c->name, BAD_CAST "source"))
                continue;
            xmlUnsetProp(c, BAD_CAST "file");
            xmlUnsetProp(c, BAD_CAST "dev");
            xmlUnsetProp(c, BAD_CAST "pool");
            xmlUnsetProp(c, BAD_CAST "volume");
            xmlChar *type = xmlGetProp(disk, BAD_CAST "type");
            if (type && xmlStrEqual(type, BAD_CAST "volume")) {
                xmlSetProp(c, BAD_CAST "pool", BAD_CAST pool);
                xmlSetProp(c, BAD_CAST "volume", BAD_CAST vol);
            } else {
                xmlSetProp(disk, BAD_CAST "type", BAD_CAST "file");
                xmlSetProp(c, BAD_CAST "file", BAD_CAST path);
            }
            xmlFree(type);
        }
    }
    /* Reflink copies share extents but hang on nothing: only qcow2 overlays tie the clone to
     * its template. */
    int hangs = 0;
    json_array_foreach (q->disks, i, d)
        hangs |= q->linked && !json_is_true(json_object_get(d, "reflink"));
    if (hangs) {
        /* Remembered so that the template refuses rmdir while a clone hangs on its disks. */
        ctx->node = root;
        hx_autoxpobj xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST "metadata/hx:vm", ctx);
        xmlNodePtr vm =
            o && o->nodesetval && o->nodesetval->nodeNr ? o->nodesetval->nodeTab[0] : NULL;
        if (!vm) {
            vm = xmlNewChild(hx_vm_xml_metadata(root), NULL, BAD_CAST "vm", NULL);
            xmlSetNs(vm, xmlNewNs(vm, BAD_CAST HX_DOMXML_NS, BAD_CAST "horcrux"));
        }
        xmlNewTextChild(vm, vm->ns, BAD_CAST "linked_from", BAD_CAST q->uuid);
    }
    hx_autofree char *xml = hx_xml_dump(doc, NULL);
    hx_autojson json_t *vols = json_array();
    json_array_foreach (q->disks, i, d)
        json_array_append_new(vols, json_pack("{s:O,s:O}", "pool", json_object_get(d, "dst_pool"),
                                              "name", json_object_get(d, "dst_vol")));
    return xml ? hx_volumes_record(xml, vols) : NULL;
}
