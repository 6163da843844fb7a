/* Snapshot XML without libvirt: the rule for names, libvirt's snapshot XML read as info.json
 * and written for a new snapshot, and the small libxml2 helpers of the snapshots module. Pure
 * functions, no lock (hx_snap_check_name and hx_snap_info_from_xml are unit tested). */
#include "hx_stats.h"
#include "snapshots_priv.h"

#include <errno.h>
#include <libxml/parser.h>
#include <libxml/xmlstring.h>
#include <stdlib.h>
#include <string.h>

xmlDocPtr hx_snap_xml_read(const char *xml, const char *what)
{
    return xml ? xmlReadMemory(xml, (int)strlen(xml), what, NULL,
                               XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
               : NULL;
}

xmlNodePtr hx_snap_xml_next(xmlNodePtr from, const char *name)
{
    for (xmlNodePtr c = from; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && (!name || xmlStrEqual(c->name, BAD_CAST name)))
            return c;
    return NULL;
}

xmlNodePtr hx_snap_xml_child(xmlNodePtr parent, const char *name)
{
    return hx_snap_xml_next(parent ? parent->children : NULL, name);
}

char *hx_snap_xml_new(const char *name)
{
    hx_autoxml xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    if (!doc)
        return NULL;
    xmlNodePtr root = xmlNewNode(NULL, BAD_CAST "domainsnapshot");
    xmlDocSetRootElement(doc, root);
    xmlNewTextChild(root, NULL, BAD_CAST "name", BAD_CAST name);
    return hx_xml_dump(doc, root);
}

int hx_snap_check_name(const char *name, const char **why)
{
    size_t len = strlen(name);
    if (len == 0 || len > HX_SNAP_NAME_MAX) {
        *why = "a snapshot name has 1 to 64 bytes";
        return -EINVAL;
    }
    if (name[0] == '.') {
        *why = "a snapshot name cannot start with '.'";
        return -EINVAL;
    }
    /* The symbolic link snapshots/current has that name. */
    if (strcmp(name, "current") == 0) {
        *why = "\"current\" is the link to the current snapshot";
        return -EINVAL;
    }
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '/') {
            *why = "a snapshot name cannot hold '/' or control characters";
            return -EINVAL;
        }
    if (!xmlCheckUTF8((const unsigned char *)name)) {
        *why = "a snapshot name must be UTF-8";
        return -EINVAL;
    }
    return 0;
}

static json_t *hx_xpath_str(xmlXPathContextPtr ctx, const char *expr)
{
    hx_autoxpobj xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST expr, ctx);
    if (!o || !o->nodesetval || o->nodesetval->nodeNr == 0)
        return NULL;
    hx_autoxmlstr xmlChar *s = xmlNodeGetContent(o->nodesetval->nodeTab[0]);
    return s ? json_string((const char *)s) : NULL;
}

json_t *hx_snap_info_from_xml(const char *xml, int current, json_t *children,
                              const char *consistency)
{
    hx_autoxml xmlDocPtr doc = hx_snap_xml_read(xml, "snapshot.xml");
    if (!doc)
        return NULL;
    hx_autoxpctx xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    if (!ctx)
        return NULL;
    json_t *name = hx_xpath_str(ctx, "/domainsnapshot/name");
    if (!name)
        return NULL;
    json_t *out = json_object();
    json_object_set_new(out, "name", name);
    json_t *parent = hx_xpath_str(ctx, "/domainsnapshot/parent/name");
    json_object_set_new(out, "parent", parent ? parent : json_null());
    json_object_set_new(out, "children", children ? json_deep_copy(children) : json_array());
    hx_autojson json_t *ct = hx_xpath_str(ctx, "/domainsnapshot/creationTime");
    long long secs = ct ? strtoll(json_string_value(ct), NULL, 10) : 0;
    char when[40];
    hx_stats_iso_time(secs * 1000000000LL, when, sizeof(when));
    json_object_set_new(out, "created", json_string(when));
    json_t *state = hx_xpath_str(ctx, "/domainsnapshot/state");
    const char *st = json_string_value(state);
    json_object_set_new(out, "state", state ? state : json_string("unknown"));
    /* <memory snapshot='internal|external|no'>; older XML omits it for running snapshots,
     * where libvirt's internal snapshots always hold the memory. */
    hx_autojson json_t *mem = hx_xpath_str(ctx, "/domainsnapshot/memory/@snapshot");
    int has_mem = mem ? strcmp(json_string_value(mem), "no") != 0
                      : (st && (strcmp(st, "running") == 0 || strcmp(st, "paused") == 0));
    json_object_set_new(out, "memory", json_boolean(has_mem));
    json_object_set_new(out, "disk_only", json_boolean(st && strcmp(st, "disk-snapshot") == 0));
    json_object_set_new(out, "consistency", json_string(consistency ? consistency : "crash"));
    json_t *desc = hx_xpath_str(ctx, "/domainsnapshot/description");
    json_object_set_new(out, "description", desc ? desc : json_string(""));
    json_object_set_new(out, "current", json_boolean(current));
    json_t *disks = json_array();
    hx_autoxpobj xmlXPathObjectPtr o =
        xmlXPathEvalExpression(BAD_CAST "/domainsnapshot/disks/disk", ctx);
    for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
        xmlNodePtr d = o->nodesetval->nodeTab[i];
        hx_autoxmlstr xmlChar *target = xmlGetProp(d, BAD_CAST "name");
        hx_autoxmlstr xmlChar *type = xmlGetProp(d, BAD_CAST "snapshot");
        json_array_append_new(disks, json_pack("{s:s,s:s}", "target", target ? (char *)target : "",
                                               "snapshot", type ? (char *)type : "internal"));
    }
    json_object_set_new(out, "disks", disks);
    return out;
}
