/* Small libxml2 helpers shared by the backend modules that read libvirt's XML (xmltext.h). */
#include "xmltext.h"

#include <libxml/xpath.h>
#include <stdlib.h>
#include <string.h>

char *hx_xml_text(xmlDocPtr doc, const char *xpath)
{
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    if (!ctx)
        return NULL;
    char *out = NULL;
    xmlXPathObjectPtr o = xmlXPathEvalExpression((const xmlChar *)xpath, ctx);
    if (o && o->nodesetval && o->nodesetval->nodeNr > 0) {
        xmlChar *t = xmlNodeGetContent(o->nodesetval->nodeTab[0]);
        if (t) {
            out = strdup((const char *)t);
            xmlFree(t);
        }
    }
    xmlXPathFreeObject(o);
    xmlXPathFreeContext(ctx);
    return out;
}
