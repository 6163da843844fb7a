/* State of the XML -> config.json conversion: the first error, reported once with the domain's
   name, and the XPath readers the section readers use. */
#include "hx_domxml.h"
#include "domxml_priv.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

/* ---- errors ------------------------------------------------------------------------------ */

void hx_dxr_fail(hx_dxr *c, const char *fmt, ...)
{
    if (c->msg)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *what = hx_domxml_vfmt(fmt, ap);
    va_end(ap);
    const char *text = what ? what : "out of memory";
    int n = c->name ? asprintf(&c->msg, "domain %s: %s", c->name, text)
                    : asprintf(&c->msg, "domain XML: %s", text);
    if (n < 0)
        c->msg = strdup("out of memory"); /* best effort; NULL is handled by the caller */
    free(what);
}

void *hx_dxr_oom(hx_dxr *c)
{
    hx_dxr_fail(c, "out of memory");
    return NULL;
}

/* ---- XPath and text helpers -------------------------------------------------------------- */

int hx_dxr_count(const xmlXPathObject *o)
{
    return o && o->nodesetval ? o->nodesetval->nodeNr : 0;
}

xmlXPathObject *hx_dxr_eval(hx_dxr *c, xmlNode *node, const char *expr)
{
    xmlXPathObject *o = xmlXPathNodeEval(node, BAD_CAST expr, c->xp);
    if (!o)
        hx_dxr_fail(c, "cannot evaluate XPath %s", expr);
    return o;
}

xmlNode *hx_dxr_node(hx_dxr *c, xmlNode *node, const char *expr)
{
    AUTO_XPOBJ *o = hx_dxr_eval(c, node, expr);
    return hx_dxr_count(o) ? o->nodesetval->nodeTab[0] : NULL;
}

char *hx_dxr_text(hx_dxr *c, xmlNode *node)
{
    if (!node)
        return NULL;
    xmlChar *x = xmlNodeGetContent(node);
    char *s = x ? strdup((const char *)x) : NULL;
    xmlFree(x);
    return s ? s : hx_dxr_oom(c);
}

char *hx_dxr_str(hx_dxr *c, xmlNode *node, const char *expr)
{
    return hx_dxr_text(c, hx_dxr_node(c, node, expr));
}

char *hx_dxr_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

bool hx_dxr_int(hx_dxr *c, xmlNode *node, const char *expr, const char *what, long long *out)
{
    AUTO_STR *s = hx_dxr_str(c, node, expr);
    if (!s)
        return false;
    char *t = hx_dxr_trim(s), *end = NULL;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    if (errno || end == t || *end) {
        hx_dxr_fail(c, "%s '%s' is not an integer", what, t);
        return false;
    }
    *out = v;
    return true;
}
