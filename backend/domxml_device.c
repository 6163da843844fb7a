/* One device element of a domain XML, for live attach and detach (hx_domxml_device). */
#include "domxml_apply_priv.h"

#include <string.h>
#include <strings.h>

char *hx_domxml_device(const char *xml, const char *which, const char *key)
{
    if (!xml || !which || !key)
        return NULL;
    const char *expr = !strcmp(which, "disk")        ? "target/@dev"
                       : !strcmp(which, "interface") ? "mac/@address"
                                                     : NULL;
    if (!expr)
        return NULL;
    AUTO_STR *perr = NULL;
    AUTO_DOC *doc = hx_domxml_parse(xml, &perr);
    xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
    xmlNode *devices = root ? hx_dxa_child(root, "devices") : NULL;
    for (xmlNode *n = devices ? devices->children : NULL; n; n = n->next) {
        if (!hx_dxa_is_elem(n, which))
            continue;
        xmlNode *sub = hx_dxa_child(n, !strcmp(which, "disk") ? "target" : "mac");
        AUTO_XSTR *v =
            sub ? xmlGetNoNsProp(sub, BAD_CAST(which[0] == 'd' ? "dev" : "address")) : NULL;
        bool match = v && (which[0] == 'd' ? !strcmp((const char *)v, key)
                                           : !strcasecmp((const char *)v, key));
        if (match)
            return hx_dxa_dump(doc, n);
    }
    return NULL;
}
