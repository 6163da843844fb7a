/* Templates and their linked clones: whether a VM is a template, and which VM's disks hang on a
 * template's (a qcow2 overlay over its files, or the linked_from mark a clone carries). */
#include "auto.h"
#include "hx_util.h"
#include "node.h"
#include "vmops_priv.h"

#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <string.h>

/* Whether the VM is a template (config.json "template": true), from its metadata. */
int hx_vm_is_template(const char *config_json)
{
    hx_autojson json_t *cfg = config_json ? json_loads(config_json, 0, NULL) : NULL;
    return json_is_true(json_object_get(cfg, "template"));
}

/* The text of every node xpath finds in a domain XML, as a JSON array of strings (empty when
 * the XML does not parse). */
static json_t *hx_vm_xml_texts(const char *xml, const char *xpath)
{
    json_t *out = json_array();
    hx_autoxml xmlDocPtr doc = hx_vm_xml_read(xml, "domain.xml");
    hx_autoxpctx xmlXPathContextPtr ctx = doc ? xmlXPathNewContext(doc) : NULL;
    hx_autoxpobj xmlXPathObjectPtr o = ctx ? xmlXPathEvalExpression(BAD_CAST xpath, ctx) : NULL;
    for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
        xmlChar *t = xmlNodeGetContent(o->nodesetval->nodeTab[i]);
        if (t)
            json_array_append_new(out, json_string((const char *)t));
        xmlFree(t);
    }
    return out;
}

/* Whether the domain XML names template_uuid as the template it is linked to, or has a disk
 * whose backing file is one of paths (the template's disk files). */
static int hx_vm_hangs_on(const char *xml, const char *template_uuid, json_t *paths)
{
    hx_autojson json_t *refs =
        hx_vm_xml_texts(xml, "/domain/metadata/*[local-name()='vm']/*[local-name()='linked_from'] |"
                             " /domain/devices/disk//backingStore/source/@file");
    int found = 0;
    size_t i, j;
    json_t *t, *p;
    json_array_foreach (refs, i, t) {
        found |= hx_vm_streq(json_string_value(t), template_uuid);
        json_array_foreach (paths, j, p)
            found |= hx_vm_streq(json_string_value(t), json_string_value(p));
    }
    return found;
}

int hx_vm_linked_clone(hx_cluster *cl, const char *node, const hx_vm_view *tmpl, char *out,
                       size_t size)
{
    hx_autojson json_t *paths =
        hx_vm_xml_texts(tmpl->xml_config, "/domain/devices/disk/source/@file");
    char **names = NULL;
    if (hx_cluster_vm_names(cl, node, &names, NULL) < 0)
        return 0;
    int found = 0;
    for (char **p = names; p && *p && !found; p++) {
        hx_vm_view v = {0};
        if (strcmp(*p, tmpl->name) != 0 && hx_cluster_vm_view(cl, node, *p, NULL, &v) == 0 &&
            hx_vm_hangs_on(v.xml_config, tmpl->uuid, paths)) {
            hx_strlcpy(out, *p, size);
            found = 1;
        }
        hx_vm_view_clear(&v);
    }
    hx_strv_free(names);
    return found;
}
