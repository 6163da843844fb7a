/* Private header of the domxml_apply module (backend/domxml_apply.c and the section files it
   drives: domxml_fields.c, domxml_edit.c, domxml_scalars.c, domxml_devlist.c, domxml_disks.c,
   domxml_nics.c, domxml_graphics.c, domxml_boot.c, domxml_metadata.c; also domxml_device.c).
   The state of one hx_domxml_apply call and the helpers the section files share. Not part of
   the public API (include/hx_domxml.h). No locking: every object here belongs to one call. */
#ifndef HX_DOMXML_APPLY_PRIV_H
#define HX_DOMXML_APPLY_PRIV_H

#include "hx_domxml.h"
#include "domxml_priv.h"

#include <stdbool.h>
#include <stddef.h>

/* ---- limits shared by several sections --------------------------------------------------- */

#define MAX_DEVICES 256
#define MAX_TOKEN 64

/* ---- state ------------------------------------------------------------------------------- */

/* JSON types a field may have (hx_dxa_field). */
enum { T_STR = 1, T_INT = 2, T_BOOL = 4, T_NULL = 8, T_ARR = 16, T_OBJ = 32 };

/* A device list as it will be: the element of each listed item, in config order. */
typedef struct hx_dxa_devs {
    size_t n;
    xmlNode **elem;
    const char **key; /* disk target, NIC MAC (NULL for a NIC without one) or graphics type */
} hx_dxa_devs;

/* State of one hx_domxml_apply call. */
typedef struct hx_dxa {
    xmlDoc *doc;
    xmlNode *root;
    xmlXPathContext *xp;
    const json_t *cur; /* the current config, from hx_domxml_to_config */
    const hx_domxml_env *env;
    json_t *vols;
    bool changed; /* the tree was modified */
    int rc;
    char *err;
    hx_dxa_devs disks, nics;
} hx_dxa;

/* ---- backend/domxml_fields.c: errors, checks and reading fields -------------------------- */

/* Each records the first error only (a->err, a->rc) and returns a->rc. */
/* -EINVAL, "<field>: <text>" (-EIO when memory runs out). */
__attribute__((format(printf, 3, 4))) int hx_dxa_bad(hx_dxa *a, const char *field, const char *fmt,
                                                     ...);
/* The same for the field `key` of the item at `path` ("disks[1]" and "bus": "disks[1].bus";
   path "" names a top-level field). */
__attribute__((format(printf, 4, 5))) int hx_dxa_bad_at(hx_dxa *a, const char *path,
                                                        const char *key, const char *fmt, ...);
/* -EIO with the message `what`. */
int hx_dxa_io_err(hx_dxa *a, const char *what);
int hx_dxa_oom(hx_dxa *a);

bool hx_dxa_in_list(const char *s, const char *const *list);
/* "a, b, c" for messages, in buf. */
const char *hx_dxa_list_text(const char *const *list, char *buf, size_t size);
/* Whether s has control characters (newline and tab allowed when allow_newline). */
bool hx_dxa_has_ctrl(const char *s, bool allow_newline);

/* Whether the node has `name` (what: "network", "bridge", "pool"), with the env callback exists
   (NULL: not checked); an error on `field` when it has not or cannot tell. */
int hx_dxa_check_ref(hx_dxa *a, const char *field, int (*exists)(const char *, void *),
                     const char *what, const char *name);

/* The value of `key` to use: the one given in `item` if present (type-checked), else the current
   one (`cur`, NULL for a new item) or, for new items, `def`. *changed tells whether the value
   differs from the current one (always true for new items). Returns NULL only on a type error
   or when an error is already recorded (a->rc set), so that a function reading several fields
   checks a->rc once after them; absent values with no default come back as JSON null. */
json_t *hx_dxa_field(hx_dxa *a, const char *path, const json_t *item, const json_t *cur,
                     const char *key, unsigned types, json_t *def, bool *changed);
/* Rejects a key of obj that is not in `known`. */
int hx_dxa_unknown_keys(hx_dxa *a, const char *path, const json_t *obj, const char *const *known);

/* ---- backend/domxml_edit.c: editing the tree, keeping its indentation -------------------- */

/* Whether n is the element `name` in no namespace. */
bool hx_dxa_is_elem(const xmlNode *n, const char *name);
/* The first child element `name` of parent (NULL parent: NULL). */
xmlNode *hx_dxa_child(const xmlNode *parent, const char *name);
xmlNode *hx_dxa_last_elem(const xmlNode *parent);
/* Puts node after ref (ref NULL: after the last element child of parent), copying ref's leading
   white space so that the output stays indented. node may be linked elsewhere: it is moved. */
int hx_dxa_place(hx_dxa *a, xmlNode *parent, xmlNode *ref, xmlNode *node);
/* Unlinks and frees node with the white space before it. */
void hx_dxa_drop(hx_dxa *a, xmlNode *node);
void hx_dxa_drop_children(hx_dxa *a, xmlNode *parent, const char *name);
xmlNode *hx_dxa_new_elem(hx_dxa *a, const char *name);
/* Sets (value non-NULL) or removes an attribute; touches nothing when it already is so. */
int hx_dxa_set_attr(hx_dxa *a, xmlNode *node, const char *name, const char *value);
/* Replaces the content of node with the literal text s (no entity interpretation). */
int hx_dxa_set_text(hx_dxa *a, xmlNode *node, const char *s);
/* Puts node in the place of old, which is freed. */
void hx_dxa_replace(hx_dxa *a, xmlNode *old, xmlNode *node);
int hx_dxa_set_int_text(hx_dxa *a, xmlNode *node, long long v);
/* The child `name` of parent, created after the first existing element named in `after` (a
   NULL-terminated list, most preferred first) or at the end. */
xmlNode *hx_dxa_ensure_child(hx_dxa *a, xmlNode *parent, const char *name,
                             const char *const *after);
/* The XML of node and its subtree with a trailing newline, malloc'd; NULL when out of memory. */
char *hx_dxa_dump(xmlDoc *doc, xmlNode *node);

/* ---- backend/domxml_devlist.c: writing a device list ------------------------------------- */

/* Validates item (cur: its current config, NULL for a new item) and applies it to *elem (NULL
   for a new item: then a new element is built, not yet linked). */
typedef int (*hx_dxa_one_fn)(hx_dxa *a, const char *path, const json_t *item, const json_t *cur,
                             xmlNode **elem);

/* The device lists of config.json (the table in backend/domxml_devlist.c says how each is
   stored in the XML and how its items are matched with the current ones). */
typedef enum { HX_DXA_DISKS, HX_DXA_NICS, HX_DXA_GRAPHICS } hx_dxa_list;

/* What differs between the lists beyond that table. */
typedef struct hx_dxa_list_ops {
    /* Type-checks the key field v of an item (NULL when absent) and gives its string (or NULL). */
    int (*read_key)(hx_dxa *a, const char *field, const json_t *v, const char **key);
    /* Checks the key of an item that matches no current one. */
    int (*check_new)(hx_dxa *a, const char *field, const char *key);
    hx_dxa_one_fn one;
    /* Where the first new element goes when there were none of this kind (NULL: no rule). */
    xmlNode *(*first_ref)(hx_dxa *a, xmlNode *devices);
} hx_dxa_list_ops;

/* Writes the list `which` of config into d: matches each item with a current element, checks
   and applies it, drops the current elements left over and puts the list in config order. When
   config has no such list, d receives the current elements (disks, NICs) or stays empty. */
int hx_dxa_apply_list(hx_dxa *a, const json_t *config, hx_dxa_list which,
                      const hx_dxa_list_ops *ops, hx_dxa_devs *d);

/* ---- the sections, in the order hx_domxml_apply runs them -------------------------------- */

/* backend/domxml_scalars.c */
int hx_dxa_check_readonly(hx_dxa *a, const json_t *config);
int hx_dxa_apply_description(hx_dxa *a, const json_t *config);
int hx_dxa_apply_memory(hx_dxa *a, const json_t *config);
int hx_dxa_apply_vcpus(hx_dxa *a, const json_t *config);
int hx_dxa_apply_machine(hx_dxa *a, const json_t *config);
int hx_dxa_apply_firmware(hx_dxa *a, const json_t *config);
/* <os><type>, created (with <os>) when missing. */
xmlNode *hx_dxa_os_type(hx_dxa *a);
/* backend/domxml_disks.c, domxml_nics.c, domxml_graphics.c */
int hx_dxa_apply_disks(hx_dxa *a, const json_t *config);
int hx_dxa_apply_nics(hx_dxa *a, const json_t *config);
int hx_dxa_apply_graphics(hx_dxa *a, const json_t *config);
/* backend/domxml_boot.c: runs after the disks and NICs (a->disks, a->nics). */
int hx_dxa_apply_boot(hx_dxa *a, const json_t *config);
/* backend/domxml_metadata.c */
int hx_dxa_apply_metadata(hx_dxa *a, const json_t *config);

#endif /* HX_DOMXML_APPLY_PRIV_H */
