/* The inactive XML of a new VM (hx_domxml_new). */
#include "hx_domxml.h"
#include "domxml_priv.h"

#include <string.h>

char *hx_domxml_new(const char *name, const char *type, char **err)
{
    AUTO_DOC *doc = xmlNewDoc(BAD_CAST "1.0");
    xmlNode *root = doc ? xmlNewDocNode(doc, NULL, BAD_CAST "domain", NULL) : NULL;
    if (!root) {
        if (err)
            *err = strdup("out of memory");
        return NULL;
    }
    xmlDocSetRootElement(doc, root);
    xmlSetProp(root, BAD_CAST "type", BAD_CAST(type ? type : "kvm"));
    bool ok = xmlNewTextChild(root, NULL, BAD_CAST "name", BAD_CAST name);
    xmlNode *mem = xmlNewChild(root, NULL, BAD_CAST "memory", BAD_CAST "524288");
    xmlNode *cmem = xmlNewChild(root, NULL, BAD_CAST "currentMemory", BAD_CAST "524288");
    xmlNode *vcpu = xmlNewChild(root, NULL, BAD_CAST "vcpu", BAD_CAST "1");
    xmlNode *os = xmlNewChild(root, NULL, BAD_CAST "os", NULL);
    xmlNode *ostype = os ? xmlNewChild(os, NULL, BAD_CAST "type", BAD_CAST "hvm") : NULL;
    xmlNode *boot = os ? xmlNewChild(os, NULL, BAD_CAST "boot", NULL) : NULL;
    xmlNode *features = xmlNewChild(root, NULL, BAD_CAST "features", NULL);
    ok = ok && mem && cmem && vcpu && ostype && boot && features &&
         xmlSetProp(mem, BAD_CAST "unit", BAD_CAST "KiB") &&
         xmlSetProp(cmem, BAD_CAST "unit", BAD_CAST "KiB") &&
         xmlSetProp(vcpu, BAD_CAST "placement", BAD_CAST "static") &&
         xmlSetProp(ostype, BAD_CAST "arch", BAD_CAST "x86_64") &&
         xmlSetProp(boot, BAD_CAST "dev", BAD_CAST "hd") &&
         xmlNewChild(features, NULL, BAD_CAST "acpi", NULL) &&
         xmlNewChild(features, NULL, BAD_CAST "apic", NULL) &&
         xmlNewChild(root, NULL, BAD_CAST "on_poweroff", BAD_CAST "destroy") &&
         xmlNewChild(root, NULL, BAD_CAST "on_reboot", BAD_CAST "restart") &&
         xmlNewChild(root, NULL, BAD_CAST "on_crash", BAD_CAST "destroy") &&
         xmlNewChild(root, NULL, BAD_CAST "devices", NULL);
    xmlChar *mem_out = NULL;
    int len = 0;
    if (ok)
        xmlDocDumpFormatMemory(doc, &mem_out, &len, 1);
    char *out = mem_out ? strdup((const char *)mem_out) : NULL;
    xmlFree(mem_out);
    if (!out && err)
        *err = strdup("out of memory");
    return out;
}
