/* config.json -> XML: editing the domain tree in place so that the result stays indented like
   libvirt's output (placing, dropping and creating elements, setting attributes and text), and
   dumping an element. */
#include "domxml_apply_priv.h"

#include <string.h>

bool hx_dxa_is_elem(const xmlNode *n, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && !n->ns && xmlStrEqual(n->name, BAD_CAST name);
}

xmlNode *hx_dxa_child(const xmlNode *parent, const char *name)
{
    for (xmlNode *n = parent ? parent->children : NULL; n; n = n->next)
        if (hx_dxa_is_elem(n, name))
            return n;
    return NULL;
}

xmlNode *hx_dxa_last_elem(const xmlNode *parent)
{
    xmlNode *last = NULL;
    for (xmlNode *n = parent->children; n; n = n->next)
        if (n->type == XML_ELEMENT_NODE)
            last = n;
    return last;
}

static bool is_blank(const xmlNode *n)
{
    return n && n->type == XML_TEXT_NODE && xmlIsBlankNode((xmlNode *)n);
}

/* Indents the children of a new element like the document around it: `ws` is the white space
   before the element ("\n" and its indentation), NULL when the surroundings are not indented. */
static int indent(hx_dxa *a, xmlNode *node, const xmlChar *ws)
{
    if (!ws || !node->children || node->children->type != XML_ELEMENT_NODE)
        return 0;
    AUTO_STR *inner = NULL;
    if (asprintf(&inner, "%s  ", (const char *)ws) < 0) {
        inner = NULL;
        return hx_dxa_oom(a);
    }
    for (xmlNode *c = node->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        xmlNode *t = xmlNewDocText(a->doc, BAD_CAST inner);
        if (!t || !xmlAddPrevSibling(c, t) || indent(a, c, BAD_CAST inner)) {
            xmlFreeNode(t);
            return hx_dxa_oom(a);
        }
    }
    xmlNode *t = xmlNewDocText(a->doc, ws);
    if (!t || !xmlAddChild(node, t)) {
        xmlFreeNode(t);
        return hx_dxa_oom(a);
    }
    return 0;
}

/* Puts node after ref (ref NULL: after the last element child of parent), copying ref's leading
   white space so that the output stays indented. node may be linked elsewhere: it is moved. */
int hx_dxa_place(hx_dxa *a, xmlNode *parent, xmlNode *ref, xmlNode *node)
{
    if (!ref)
        ref = hx_dxa_last_elem(parent);
    if (node->parent) {
        if (is_blank(node->prev)) {
            xmlNode *ws = node->prev;
            xmlUnlinkNode(ws);
            xmlFreeNode(ws);
        }
        xmlUnlinkNode(node);
    }
    a->changed = true;
    if (!node->parent && indent(a, node, ref && is_blank(ref->prev) ? ref->prev->content : NULL))
        return a->rc;
    if (!ref) {
        if (!xmlAddChild(parent, node)) {
            xmlFreeNode(node);
            return hx_dxa_oom(a);
        }
        return 0;
    }
    if (!xmlAddNextSibling(ref, node)) {
        xmlFreeNode(node);
        return hx_dxa_oom(a);
    }
    if (is_blank(ref->prev)) {
        xmlNode *ws = xmlNewDocText(a->doc, ref->prev->content);
        if (!ws || !xmlAddPrevSibling(node, ws)) {
            xmlFreeNode(ws);
            return hx_dxa_oom(a);
        }
    }
    return 0;
}

/* Unlinks and frees node with the white space before it. */
void hx_dxa_drop(hx_dxa *a, xmlNode *node)
{
    if (!node)
        return;
    if (is_blank(node->prev)) {
        xmlNode *ws = node->prev;
        xmlUnlinkNode(ws);
        xmlFreeNode(ws);
    }
    xmlUnlinkNode(node);
    xmlFreeNode(node);
    a->changed = true;
}

void hx_dxa_drop_children(hx_dxa *a, xmlNode *parent, const char *name)
{
    for (xmlNode *n = parent ? parent->children : NULL, *next; n; n = next) {
        next = n->next;
        if (hx_dxa_is_elem(n, name))
            hx_dxa_drop(a, n);
    }
}

xmlNode *hx_dxa_new_elem(hx_dxa *a, const char *name)
{
    xmlNode *n = xmlNewDocNode(a->doc, NULL, BAD_CAST name, NULL);
    if (!n)
        hx_dxa_oom(a);
    return n;
}

/* Sets (value non-NULL) or removes an attribute; touches nothing when it already is so. */
int hx_dxa_set_attr(hx_dxa *a, xmlNode *node, const char *name, const char *value)
{
    AUTO_XSTR *old = xmlGetNoNsProp(node, BAD_CAST name);
    if (!value) {
        if (old) {
            xmlUnsetProp(node, BAD_CAST name);
            a->changed = true;
        }
        return 0;
    }
    if (old && !strcmp((const char *)old, value))
        return 0;
    a->changed = true;
    return xmlSetProp(node, BAD_CAST name, BAD_CAST value) ? 0 : hx_dxa_oom(a);
}

/* Replaces the content of node with the literal text s (no entity interpretation). */
int hx_dxa_set_text(hx_dxa *a, xmlNode *node, const char *s)
{
    AUTO_XSTR *old = xmlNodeGetContent(node);
    if (old && !strcmp((const char *)old, s) && node->children && !node->children->next &&
        node->children->type == XML_TEXT_NODE)
        return 0;
    while (node->children) {
        xmlNode *c = node->children;
        xmlUnlinkNode(c);
        xmlFreeNode(c);
    }
    a->changed = true;
    xmlNode *t = xmlNewDocText(a->doc, BAD_CAST s);
    if (!t || !xmlAddChild(node, t)) {
        xmlFreeNode(t);
        return hx_dxa_oom(a);
    }
    return 0;
}

/* The child `name` of parent, created after the first existing element named in `after` (a
   NULL-terminated list, most preferred first) or at the end. */
xmlNode *hx_dxa_ensure_child(hx_dxa *a, xmlNode *parent, const char *name, const char *const *after)
{
    xmlNode *n = hx_dxa_child(parent, name);
    if (n)
        return n;
    xmlNode *ref = NULL;
    for (; after && *after && !ref; after++)
        ref = hx_dxa_child(parent, *after);
    n = hx_dxa_new_elem(a, name);
    if (!n || hx_dxa_place(a, parent, ref, n))
        return NULL;
    return n;
}

void hx_dxa_replace(hx_dxa *a, xmlNode *old, xmlNode *node)
{
    xmlReplaceNode(old, node);
    xmlFreeNode(old);
    a->changed = true;
}

int hx_dxa_set_int_text(hx_dxa *a, xmlNode *node, long long v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", v);
    return hx_dxa_set_text(a, node, buf);
}

char *hx_dxa_dump(xmlDoc *doc, xmlNode *node)
{
    xmlBuffer *buf = xmlBufferCreate();
    if (!buf)
        return NULL;
    char *out = NULL;
    if (xmlNodeDump(buf, doc, node, 0, 0) >= 0) {
        const char *s = (const char *)xmlBufferContent(buf);
        size_t len = strlen(s);
        out = malloc(len + 2);
        if (out) {
            memcpy(out, s, len);
            out[len] = '\n';
            out[len + 1] = '\0';
        }
    }
    xmlBufferFree(buf);
    return out;
}
