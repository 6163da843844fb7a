/* Private header of the domxml module (backend/domxml.c, domxml_xpath.c, domxml_read_*.c,
   domxml_dump.c: libvirt domain XML -> config.json). The first part is shared with the
   domxml_apply module (config.json -> XML, backend/domxml_apply_priv.h): scoped cleanup, the
   parser and the schema's key lists. The second part is the conversion state that only the
   reading files use. Not part of the public API (include/hx_domxml.h). No locking: every object
   here belongs to one call. */
#ifndef HX_DOMXML_PRIV_H
#define HX_DOMXML_PRIV_H

#include "auto.h"
#include "hx_domxml.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
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

/* The text fmt and ap make, malloc'd; NULL when memory runs out. */
static inline char *hx_domxml_vfmt(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    return s;
}

/* ---- shared with domxml_apply ------------------------------------------------------------ */

/* config.json keys in schema order (NULL-terminated). */
extern const char *const hx_domxml_top_keys[];
extern const char *const hx_domxml_disk_keys[];
extern const char *const hx_domxml_nic_keys[];
extern const char *const hx_domxml_graphics_keys[];

/* Parses a domain XML document the way hx_domxml_to_config does (no network, no DTD, no entity
   expansion, DOCTYPE rejected). Returns the document, or NULL with *err malloc'd. */
xmlDoc *hx_domxml_parse(const char *xml, char **err);

/* ---- the conversion (reading files only) ------------------------------------------------- */

/* State of one hx_domxml_to_config call. */
typedef struct hx_dxr {
    xmlXPathContext *xp;
    const char *name; /* domain name for messages, NULL until known */
    char *msg;        /* the first error; later ones are dropped so each is reported once */
    hx_domxml_size_fn size_fn;
    void *opaque;
} hx_dxr;

/* backend/domxml_xpath.c: errors and XPath readers. Each reports its failure with hx_dxr_fail. */

/* Records "domain NAME: <text>" (or "domain XML: <text>" before the name is known) unless an
   error is already recorded. */
__attribute__((format(printf, 2, 3))) void hx_dxr_fail(hx_dxr *c, const char *fmt, ...);
/* Records "out of memory"; returns NULL. */
void *hx_dxr_oom(hx_dxr *c);
/* Number of nodes in o (NULL: 0). */
int hx_dxr_count(const xmlXPathObject *o);
xmlXPathObject *hx_dxr_eval(hx_dxr *c, xmlNode *node, const char *expr);
/* First node matching expr relative to node (owned by the document), or NULL. */
xmlNode *hx_dxr_node(hx_dxr *c, xmlNode *node, const char *expr);
/* Text content of node (an attribute's value), malloc'd; NULL when node is NULL. */
char *hx_dxr_text(hx_dxr *c, xmlNode *node);
/* Text of the first node matching expr, malloc'd; NULL when nothing matches. */
char *hx_dxr_str(hx_dxr *c, xmlNode *node, const char *expr);
/* Strips leading and trailing white space in place. */
char *hx_dxr_trim(char *s);
/* Reads the integer at expr into *out; false when absent or malformed (the latter reported). */
bool hx_dxr_int(hx_dxr *c, xmlNode *node, const char *expr, const char *what, long long *out);

/* backend/domxml_read_scalars.c: memory, firmware and the Horcrux metadata. */

/* MiB (rounded down) in the memory element `elem`; -1 when absent or on error (reported). */
int64_t hx_dxr_read_mib(hx_dxr *c, xmlNode *root, const char *elem);
const char *hx_dxr_read_firmware(hx_dxr *c, xmlNode *root);
/* vm is <horcrux:vm>, or NULL when the domain has none. */
json_t *hx_dxr_read_tags(hx_dxr *c, xmlNode *vm);
/* A boolean child of <horcrux:vm> (protected, template); false when absent. */
bool hx_dxr_read_flag(hx_dxr *c, xmlNode *vm, const char *name);

/* backend/domxml_read_devices.c: the device lists and the boot order. */

json_t *hx_dxr_read_disks(hx_dxr *c, xmlNode *root);
json_t *hx_dxr_read_nics(hx_dxr *c, xmlNode *root);
json_t *hx_dxr_read_graphics(hx_dxr *c, xmlNode *root);
/* Runs after the disks and nics were read, so every device here has a target or a MAC. */
json_t *hx_dxr_read_boot(hx_dxr *c, xmlNode *root);

#endif /* HX_DOMXML_PRIV_H */
