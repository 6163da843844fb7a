/* Private helpers shared by backend/domxml.c (XML -> config.json) and backend/domxml_apply.c
   (config.json -> XML). Not part of the public API. */
#ifndef HX_DOMXML_PRIV_H
#define HX_DOMXML_PRIV_H

#include "auto.h"

#include <stdlib.h>

#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

/* ---- scoped cleanup ---------------------------------------------------------------------- */

HX_AUTO_FN(free_parser, xmlParserCtxt *, xmlFreeParserCtxt)

static inline void free_str(char **p)
{
    free(*p);
}

static inline void free_mem(void *p)
{
    free(*(void **)p);
}

#define AUTO_PARSER __attribute__((cleanup(free_parser))) xmlParserCtxt
#define AUTO_DOC __attribute__((cleanup(hx_xmldocp))) xmlDoc
#define AUTO_XPCTX __attribute__((cleanup(hx_xpctxp))) xmlXPathContext
#define AUTO_XPOBJ __attribute__((cleanup(hx_xpobjp))) xmlXPathObject
#define AUTO_JSON __attribute__((cleanup(hx_jsonp))) json_t
#define AUTO_STR __attribute__((cleanup(free_str))) char
#define AUTO_XSTR __attribute__((cleanup(hx_xmlfreep))) xmlChar
#define AUTO_MEM __attribute__((cleanup(free_mem)))

/* Hands over a reference held by an AUTO_JSON variable. */
static inline json_t *take(json_t **p)
{
    json_t *v = *p;
    *p = NULL;
    return v;
}

/* ---- shared with domxml.c ---------------------------------------------------------------- */

/* config.json keys in schema order (NULL-terminated). */
extern const char *const hx_domxml_top_keys[];
extern const char *const hx_domxml_disk_keys[];
extern const char *const hx_domxml_nic_keys[];
extern const char *const hx_domxml_graphics_keys[];

/* Parses a domain XML document the way hx_domxml_to_config does (no network, no DTD, no entity
   expansion, DOCTYPE rejected). Returns the document, or NULL with *err malloc'd. */
xmlDoc *hx_domxml_parse(const char *xml, char **err);

#endif /* HX_DOMXML_PRIV_H */
