/* config.json -> XML: the Horcrux metadata in <metadata><horcrux:vm> (tags, protected,
   template). */
#include "domxml_apply_priv.h"

#include <ctype.h>
#include <string.h>

#define MAX_TAGS 64
#define MAX_TAG_LEN 64 /* bytes */

static bool local_is(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST name);
}

/* Sets a boolean child of <horcrux:vm> (protected, template). */
static int set_flag(hx_dxa *a, xmlNode *vm, const char *name, const json_t *value)
{
    const char *v = json_is_true(value) ? "true" : "false";
    xmlNode *p = NULL;
    for (xmlNode *n = vm->children; n && !p; n = n->next)
        if (local_is(n, name))
            p = n;
    if (!p) {
        p = xmlNewDocNode(a->doc, vm->ns, BAD_CAST name, NULL);
        if (!p || hx_dxa_place(a, vm, NULL, p))
            return p ? a->rc : hx_dxa_oom(a);
    }
    return hx_dxa_set_text(a, p, v);
}

int hx_dxa_apply_metadata(hx_dxa *a, const json_t *config)
{
    bool c_tags, c_prot, c_tmpl;
    json_t *tags = hx_dxa_field(a, "", config, a->cur, "tags", T_ARR, NULL, &c_tags);
    json_t *prot = hx_dxa_field(a, "", config, a->cur, "protected", T_BOOL, NULL, &c_prot);
    json_t *tmpl = hx_dxa_field(a, "", config, a->cur, "template", T_BOOL, NULL, &c_tmpl);
    if (a->rc)
        return a->rc;
    if (!c_tags && !c_prot && !c_tmpl)
        return 0;
    if (json_array_size(tags) > MAX_TAGS)
        return hx_dxa_bad(a, "tags", "must have at most %d entries", MAX_TAGS);
    for (size_t i = 0; i < json_array_size(tags); i++) {
        char f[32];
        snprintf(f, sizeof(f), "tags[%zu]", i);
        const char *s = json_string_value(json_array_get(tags, i));
        if (!s)
            return hx_dxa_bad(a, f, "must be a string");
        size_t len = strlen(s);
        if (!len || len > MAX_TAG_LEN || isspace((unsigned char)s[0]) ||
            isspace((unsigned char)s[len - 1]) || hx_dxa_has_ctrl(s, false))
            return hx_dxa_bad(
                a, f,
                "must be 1 to %d bytes without control characters or leading or trailing "
                "white space",
                MAX_TAG_LEN);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(s, json_string_value(json_array_get(tags, j))))
                return hx_dxa_bad(a, f, "duplicate tag \"%s\"", s);
    }
    AUTO_XPOBJ *o = xmlXPathNodeEval(a->root, BAD_CAST "metadata/hx:vm", a->xp);
    if (!o)
        return hx_dxa_oom(a);
    xmlNode *vm = o->nodesetval && o->nodesetval->nodeNr ? o->nodesetval->nodeTab[0] : NULL;
    if (!vm) {
        static const char *const after[] = {"description", "title", "uuid", "name", NULL};
        xmlNode *md = hx_dxa_ensure_child(a, a->root, "metadata", after);
        vm = md ? hx_dxa_new_elem(a, "vm") : NULL;
        if (!vm)
            return a->rc;
        xmlNs *ns = xmlNewNs(vm, BAD_CAST HX_DOMXML_NS, BAD_CAST "horcrux");
        if (!ns) {
            xmlFreeNode(vm);
            return hx_dxa_oom(a);
        }
        xmlSetNs(vm, ns);
        if (hx_dxa_place(a, md, NULL, vm))
            return a->rc;
    }
    if (c_tags) {
        for (xmlNode *n = vm->children, *next; n; n = next) {
            next = n->next;
            if (local_is(n, "tags"))
                hx_dxa_drop(a, n);
        }
        if (json_array_size(tags)) {
            xmlNode *t = xmlNewDocNode(a->doc, vm->ns, BAD_CAST "tags", NULL);
            if (!t)
                return hx_dxa_oom(a);
            for (size_t i = 0; i < json_array_size(tags); i++)
                if (!xmlNewTextChild(t, vm->ns, BAD_CAST "tag",
                                     BAD_CAST json_string_value(json_array_get(tags, i)))) {
                    xmlFreeNode(t);
                    return hx_dxa_oom(a);
                }
            if (hx_dxa_place(a, vm, NULL, t))
                return a->rc;
        }
    }
    if (c_prot && set_flag(a, vm, "protected", prot))
        return a->rc;
    if (c_tmpl && set_flag(a, vm, "template", tmpl))
        return a->rc;
    return 0;
}
