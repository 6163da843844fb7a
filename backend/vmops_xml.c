/* The XML plumbing of the modules that change VMs: parsing a document, dumping one, building a
 * small one (volumes, snapshots), finding a domain's <metadata>. */
#include "auto.h"
#include "hx_util.h"
#include "vmops_priv.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <string.h>

xmlDocPtr hx_vm_xml_read(const char *xml, const char *what)
{
    return xml ? xmlReadMemory(xml, (int)strlen(xml), what, NULL,
                               XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
               : NULL;
}

char *hx_xml_dump(xmlDocPtr doc, xmlNodePtr node)
{
    xmlBufferPtr buf = xmlBufferCreate();
    if (!buf)
        return NULL;
    char *out = NULL;
    if (node ? xmlNodeDump(buf, doc, node, 0, 0) >= 0 : 1) {
        if (!node) {
            xmlChar *mem = NULL;
            int size = 0;
            xmlDocDumpMemory(doc, &mem, &size);
            out = mem ? strndup((const char *)mem, (size_t)size) : NULL;
            xmlFree(mem);
        } else {
            out = strdup((const char *)xmlBufferContent(buf));
        }
    }
    xmlBufferFree(buf);
    return out;
}

xmlDocPtr hx_vm_xml_new(const char *root_name, const char *name, xmlNodePtr *root)
{
    xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    if (!doc)
        return NULL;
    *root = xmlNewNode(NULL, BAD_CAST root_name);
    xmlDocSetRootElement(doc, *root);
    xmlNewTextChild(*root, NULL, BAD_CAST "name", BAD_CAST name);
    return doc;
}

xmlNodePtr hx_vm_xml_metadata(xmlNodePtr root)
{
    for (xmlNodePtr c = root->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "metadata"))
            return c;
    return xmlNewChild(root, NULL, BAD_CAST "metadata", NULL);
}
