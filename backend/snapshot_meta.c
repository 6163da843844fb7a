/* The Horcrux snapshot metadata kept in a domain (namespace HX_SNAP_NS): which internal
 * snapshots were taken with the guest's filesystems frozen, and the records of the btrfs
 * snapshots. Read and written on the caller's thread (under the VM's operation lock for a
 * write); no lock of its own.
 *
 * libvirt's snapshot XML has no place for the consistency of a snapshot, so the domain's own
 * metadata keeps a map name -> consistency; a snapshot missing from it is crash-consistent.
 * A btrfs snapshot (snapshot_btrfs.c) is a record in the same document:
 *
 *   <snapshots current="b">
 *     <snapshot name="a" kind="btrfs" consistency="crash" created="1700000000" state="running"
 *               parent="">
 *       <description>text</description>
 *       <disk target="vda" pool="fast" volume="vm.img" copy=".vm.img@a"/>
 *     </snapshot>
 *   </snapshots>
 *
 * The record names the copies exactly: deletion never guesses from names. */
#include "hx_log.h"
#include "hx_stats.h"
#include "snapshots_priv.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/xmlstring.h>
#include <libxml/xpathInternals.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether attribute attr of n is value. */
static int hx_snap_xml_is(xmlNodePtr n, const char *attr, const char *value)
{
    hx_autoxmlstr xmlChar *v = xmlGetProp(n, BAD_CAST attr);
    return v && xmlStrEqual(v, BAD_CAST value);
}

/* Attribute attr of n as a JSON string, null when missing or empty. */
static json_t *hx_snap_xml_prop(xmlNodePtr n, const char *attr)
{
    hx_autoxmlstr xmlChar *v = xmlGetProp(n, BAD_CAST attr);
    return v && *v ? json_string((const char *)v) : json_null();
}

/* A metadata document from its XML (a new empty one when there is none or it cannot be read). */
static xmlDocPtr hx_snap_meta_parse(const char *meta)
{
    xmlDocPtr doc = hx_snap_xml_read(meta, "metadata.xml");
    if (doc && xmlDocGetRootElement(doc))
        return doc;
    if (doc)
        xmlFreeDoc(doc);
    doc = xmlNewDoc(BAD_CAST "1.0");
    if (doc)
        xmlDocSetRootElement(doc, xmlNewNode(NULL, BAD_CAST "snapshots"));
    return doc;
}

xmlDocPtr hx_snap_meta_load(virDomainPtr dom, unsigned flags)
{
    hx_autofree char *meta =
        virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, HX_SNAP_NS, flags);
    return hx_snap_meta_parse(meta);
}

int hx_snap_meta_set(virDomainPtr dom, const char *xml)
{
    unsigned flags =
        VIR_DOMAIN_AFFECT_CONFIG | (virDomainIsActive(dom) == 1 ? VIR_DOMAIN_AFFECT_LIVE : 0);
    return virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, xml, xml ? HX_SNAP_PREFIX : NULL,
                                HX_SNAP_NS, flags);
}

int hx_snap_meta_save(virDomainPtr dom, xmlDocPtr doc)
{
    xmlNodePtr root = xmlDocGetRootElement(doc);
    hx_autofree char *xml =
        root && (root->children || root->properties) ? hx_xml_dump(doc, root) : NULL;
    return hx_snap_meta_set(dom, xml);
}

/* ---- consistency of internal snapshots ---- */

const char *hx_snap_consistency(xmlDocPtr doc, const char *snap)
{
    for (xmlNodePtr c = hx_snap_xml_child(doc ? xmlDocGetRootElement(doc) : NULL, "snapshot"); c;
         c = hx_snap_xml_next(c->next, "snapshot"))
        if (hx_snap_xml_is(c, "name", snap) && hx_snap_xml_is(c, "consistency", "application"))
            return "application";
    return "crash";
}

void hx_snap_record(virDomainPtr dom, const char *vm, const char *snap, const char *consistency)
{
    hx_autofree char *meta = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, HX_SNAP_NS,
                                                  VIR_DOMAIN_AFFECT_CONFIG);
    if (!meta && !consistency)
        return;
    hx_autoxml xmlDocPtr doc = hx_snap_meta_parse(meta);
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root)
        return;
    int changed = 0, left = 0;
    for (xmlNodePtr c = hx_snap_xml_child(root, NULL), next; c; c = next) {
        next = hx_snap_xml_next(c->next, NULL);
        if (hx_snap_xml_is(c, "name", snap)) {
            xmlUnlinkNode(c);
            xmlFreeNode(c);
            changed = 1;
        } else {
            left++;
        }
    }
    if (consistency) {
        xmlNodePtr e = xmlNewChild(root, root->ns, BAD_CAST "snapshot", NULL);
        xmlNewProp(e, BAD_CAST "name", BAD_CAST snap);
        xmlNewProp(e, BAD_CAST "consistency", BAD_CAST consistency);
        changed = 1;
        left++;
    }
    if (!changed)
        return;
    hx_autofree char *xml = left ? hx_xml_dump(doc, root) : NULL;
    if (hx_snap_meta_set(dom, xml) < 0)
        hx_warn("VM %s: cannot record snapshot %s in the domain metadata: %s", vm, snap,
                virGetLastErrorMessage());
}

/* ---- btrfs records ---- */

/* The first btrfs record at or after from, among its siblings. */
static xmlNodePtr hx_snap_bt_next(xmlNodePtr from)
{
    for (xmlNodePtr c = hx_snap_xml_next(from, "snapshot"); c;
         c = hx_snap_xml_next(c->next, "snapshot"))
        if (hx_snap_xml_is(c, "kind", "btrfs"))
            return c;
    return NULL;
}

/* The first btrfs record of doc. */
static xmlNodePtr hx_snap_bt_first(xmlDocPtr doc)
{
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    return hx_snap_bt_next(root ? root->children : NULL);
}

xmlNodePtr hx_snap_bt_find(xmlDocPtr doc, const char *name)
{
    for (xmlNodePtr c = hx_snap_bt_first(doc); c; c = hx_snap_bt_next(c->next))
        if (hx_snap_xml_is(c, "name", name))
            return c;
    return NULL;
}

char *hx_snap_bt_current(xmlDocPtr doc)
{
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    hx_autoxmlstr xmlChar *cur = root ? xmlGetProp(root, BAD_CAST "current") : NULL;
    return cur && hx_snap_bt_find(doc, (const char *)cur) ? strdup((const char *)cur) : NULL;
}

void hx_snap_bt_names(xmlDocPtr doc, const char *parent, json_t *arr)
{
    for (xmlNodePtr c = hx_snap_bt_first(doc); c; c = hx_snap_bt_next(c->next)) {
        if (parent && !hx_snap_xml_is(c, "parent", parent))
            continue;
        hx_autoxmlstr xmlChar *n = xmlGetProp(c, BAD_CAST "name");
        if (n)
            json_array_append_new(arr, json_string((const char *)n));
    }
}

json_t *hx_snap_bt_info(xmlDocPtr doc, xmlNodePtr rec)
{
    hx_autoxmlstr xmlChar *name = xmlGetProp(rec, BAD_CAST "name");
    json_t *out = json_object();
    json_object_set_new(out, "name", json_string((const char *)name));
    json_object_set_new(out, "parent", hx_snap_xml_prop(rec, "parent"));
    hx_autojson json_t *kids = json_array();
    hx_snap_bt_names(doc, (const char *)name, kids);
    json_object_set_new(out, "children", hx_snap_sorted(kids));
    hx_autoxmlstr xmlChar *created = xmlGetProp(rec, BAD_CAST "created");
    char when[40];
    hx_stats_iso_time((created ? strtoll((const char *)created, NULL, 10) : 0) * 1000000000LL, when,
                      sizeof(when));
    json_object_set_new(out, "created", json_string(when));
    json_t *state = hx_snap_xml_prop(rec, "state");
    json_object_set_new(out, "state", json_is_null(state) ? json_string("unknown") : state);
    json_object_set_new(out, "memory", json_false());
    json_object_set_new(out, "disk_only", json_true());
    json_object_set_new(out, "method", json_string("btrfs-reflink"));
    json_t *cons = hx_snap_xml_prop(rec, "consistency");
    json_object_set_new(out, "consistency", json_is_null(cons) ? json_string("crash") : cons);
    xmlNodePtr d = hx_snap_xml_child(rec, "description");
    hx_autoxmlstr xmlChar *desc = d ? xmlNodeGetContent(d) : NULL;
    json_object_set_new(out, "description", json_string(desc ? (const char *)desc : ""));
    hx_autofree char *cur = hx_snap_bt_current(doc);
    json_object_set_new(out, "current", json_boolean(cur && xmlStrEqual(name, BAD_CAST cur)));
    json_t *disks = json_array();
    for (xmlNodePtr c = hx_snap_xml_child(rec, "disk"); c; c = hx_snap_xml_next(c->next, "disk"))
        json_array_append_new(disks, json_pack("{s:o,s:s,s:o,s:o,s:o}", "target",
                                               hx_snap_xml_prop(c, "target"), "snapshot",
                                               "btrfs-reflink", "pool", hx_snap_xml_prop(c, "pool"),
                                               "volume", hx_snap_xml_prop(c, "volume"), "copy",
                                               hx_snap_xml_prop(c, "copy")));
    json_object_set_new(out, "disks", disks);
    return out;
}

json_t *hx_snap_bt_copies(xmlNodePtr rec)
{
    json_t *out = json_array();
    for (xmlNodePtr c = hx_snap_xml_child(rec, "disk"); c; c = hx_snap_xml_next(c->next, "disk"))
        json_array_append_new(out, json_pack("{s:o,s:o}", "pool", hx_snap_xml_prop(c, "pool"),
                                             "name", hx_snap_xml_prop(c, "copy")));
    return out;
}

int hx_snap_bt_add(xmlDocPtr doc, const char *name, const char *consistency, const char *state,
                   json_t *disks)
{
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root)
        return -ENOMEM;
    hx_autofree char *parent = hx_snap_bt_current(doc);
    xmlNodePtr rec = xmlNewChild(root, root->ns, BAD_CAST "snapshot", NULL);
    char created[32];
    snprintf(created, sizeof(created), "%lld", hx_now_real_ns() / 1000000000LL);
    const char *const props[][2] = {
        {"name", name},       {"kind", "btrfs"}, {"consistency", consistency},
        {"created", created}, {"state", state},  {"parent", parent ? parent : ""},
    };
    for (size_t k = 0; k < sizeof(props) / sizeof(props[0]); k++)
        xmlNewProp(rec, BAD_CAST props[k][0], BAD_CAST props[k][1]);
    size_t i;
    json_t *d;
    json_array_foreach (disks, i, d) {
        xmlNodePtr x = xmlNewChild(rec, root->ns, BAD_CAST "disk", NULL);
        static const char *const keys[] = {"target", "pool", "volume", "copy"};
        for (size_t k = 0; k < 4; k++)
            xmlNewProp(x, BAD_CAST keys[k],
                       BAD_CAST json_string_value(json_object_get(d, keys[k])));
    }
    xmlSetProp(root, BAD_CAST "current", BAD_CAST name);
    return 0;
}

void hx_snap_bt_remove(xmlDocPtr doc, xmlNodePtr rec, const char *snap)
{
    /* Like libvirt's: the children move to the parent, which becomes current if this was. */
    hx_autoxmlstr xmlChar *parent = xmlGetProp(rec, BAD_CAST "parent");
    xmlNodePtr root = xmlDocGetRootElement(doc);
    for (xmlNodePtr k = hx_snap_bt_first(doc); k; k = hx_snap_bt_next(k->next))
        if (hx_snap_xml_is(k, "parent", snap))
            xmlSetProp(k, BAD_CAST "parent", parent ? parent : BAD_CAST "");
    if (hx_snap_xml_is(root, "current", snap)) {
        if (parent && *parent)
            xmlSetProp(root, BAD_CAST "current", parent);
        else
            xmlUnsetProp(root, BAD_CAST "current");
    }
    xmlUnlinkNode(rec);
    xmlFreeNode(rec);
}

json_t *hx_snap_btrfs_volumes(const char *domain_xml)
{
    json_t *out = json_array();
    hx_autoxml xmlDocPtr doc = hx_snap_xml_read(domain_xml, "domain.xml");
    hx_autoxpctx xmlXPathContextPtr ctx = doc ? xmlXPathNewContext(doc) : NULL;
    if (!ctx)
        return out;
    xmlXPathRegisterNs(ctx, BAD_CAST "s", BAD_CAST HX_SNAP_NS);
    hx_autoxpobj xmlXPathObjectPtr o = xmlXPathEvalExpression(
        BAD_CAST "/domain/metadata/s:snapshots/s:snapshot[@kind='btrfs']/s:disk", ctx);
    for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
        xmlNodePtr d = o->nodesetval->nodeTab[i];
        json_t *pool = hx_snap_xml_prop(d, "pool"), *copy = hx_snap_xml_prop(d, "copy");
        if (json_is_string(pool) && json_is_string(copy))
            json_array_append_new(out, json_pack("{s:o,s:o}", "pool", pool, "name", copy));
        else {
            json_decref(pool);
            json_decref(copy);
        }
    }
    return out;
}
