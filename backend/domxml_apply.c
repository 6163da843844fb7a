/* Applies a written config.json to a domain's inactive XML (rules: docs/config-json.md,
   "Writing config.json"), builds new-VM XML, extracts device XML and checks VM names. */
#include "hx_domxml.h"
#include "domxml_priv.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- limits ------------------------------------------------------------------------------ */

#define MAX_VCPUS 256
#define MIN_MEM_MIB 16
#define MAX_MEM_MIB 16777216 /* 16 TiB */
#define MAX_DESC 4096        /* bytes */
#define MAX_TAGS 64
#define MAX_TAG_LEN 64 /* bytes */
#define MAX_DEVICES 256
#define MAX_PATH_LEN 4096
#define MAX_TOKEN 64

static const char *const disk_buses[] = {"virtio", "sata", "scsi", "ide", "usb", "fdc", NULL};
static const char *const disk_devices[] = {"disk", "cdrom", "floppy", "lun", NULL};
static const char *const disk_stypes[] = {"file", "block", "volume", NULL};
static const char *const disk_formats[] = {"raw", "qcow2", "qcow", "qed", "vmdk",
                                           "vdi", "vpc",   "vhdx", "iso", NULL};
static const char *const nic_types[] = {"network", "bridge", "user", NULL};
static const char *const gfx_types[] = {"vnc", "spice", NULL};
static const char *const boot_devs[] = {"hd", "cdrom", "network", "fd", NULL};
static const char *const firmwares[] = {"bios", "uefi", NULL};

/* ---- state and errors -------------------------------------------------------------------- */

enum { T_STR = 1, T_INT = 2, T_BOOL = 4, T_NULL = 8, T_ARR = 16, T_OBJ = 32 };

/* A device list as it will be: the element of each listed item, in config order. */
struct devs {
    size_t n;
    xmlNode **elem;
    const char **key; /* disk target or NIC MAC (NULL for a NIC without one) */
};

struct ap {
    xmlDoc *doc;
    xmlNode *root;
    xmlXPathContext *xp;
    const json_t *cur; /* the current config, from hx_domxml_to_config */
    const hx_domxml_env *env;
    json_t *vols;
    bool changed; /* the tree was modified */
    int rc;
    char *err;
    struct devs disks, nics;
};

__attribute__((format(printf, 3, 4))) static int bad(struct ap *a, const char *field,
                                                     const char *fmt, ...)
{
    if (a->rc)
        return a->rc;
    char *what = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&what, fmt, ap) < 0)
        what = NULL;
    va_end(ap);
    if (!what || asprintf(&a->err, "%s: %s", field, what) < 0) {
        a->err = NULL;
        a->rc = -EIO;
    } else {
        a->rc = -EINVAL;
    }
    free(what);
    return a->rc;
}

static int io_err(struct ap *a, const char *what)
{
    if (a->rc)
        return a->rc;
    a->err = strdup(what);
    a->rc = -EIO;
    return a->rc;
}

static int oom(struct ap *a)
{
    return io_err(a, "out of memory");
}

/* ---- small checks ------------------------------------------------------------------------ */

static bool in_list(const char *s, const char *const *list)
{
    for (; s && *list; list++)
        if (!strcmp(s, *list))
            return true;
    return false;
}

/* "a, b, c" for messages. */
static const char *list_text(const char *const *list, char *buf, size_t size)
{
    size_t off = 0;
    buf[0] = '\0';
    for (const char *const *p = list; *p && off < size; p++) {
        int n = snprintf(buf + off, size - off, "%s%s", p == list ? "" : ", ", *p);
        if (n < 0)
            break;
        off += (size_t)n;
    }
    return buf;
}

static bool has_ctrl(const char *s, bool allow_newline)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p < 0x20 || *p == 0x7f) && !(allow_newline && (*p == '\n' || *p == '\t')))
            return true;
    return false;
}

/* Non-empty, at most MAX_TOKEN bytes, only [a-z0-9] and the characters in `extra`. */
static bool is_token(const char *s, const char *extra)
{
    if (!*s || strlen(s) > MAX_TOKEN)
        return false;
    for (; *s; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && !strchr(extra, *s))
            return false;
    return true;
}

static bool is_mac(const char *s)
{
    if (strlen(s) != 17)
        return false;
    for (int i = 0; i < 17; i++)
        if (i % 3 == 2 ? s[i] != ':' : !isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

static bool is_unicast_mac(const char *s)
{
    unsigned first = (unsigned)strtoul(s, NULL, 16); /* stops at the first ':' */
    return !(first & 1) && strcasecmp(s, "00:00:00:00:00:00");
}

/* hd/sd/vd followed by 1..3 letters, or fd0..fd9. */
static bool is_target(const char *s)
{
    if (!strncmp(s, "fd", 2))
        return isdigit((unsigned char)s[2]) && !s[3];
    if (strlen(s) < 3 || strlen(s) > 5 || !strchr("hsv", s[0]) || s[1] != 'd')
        return false;
    for (s += 2; *s; s++)
        if (!islower((unsigned char)*s))
            return false;
    return true;
}

static const char *type_text(unsigned types)
{
    switch (types) {
    case T_STR:
        return "a string";
    case T_STR | T_NULL:
        return "a string or null";
    case T_INT:
        return "an integer";
    case T_INT | T_NULL:
        return "an integer or null";
    case T_BOOL:
        return "a boolean";
    case T_ARR:
        return "an array";
    default:
        return "of another type";
    }
}

static bool type_ok(const json_t *v, unsigned types)
{
    return ((types & T_STR) && json_is_string(v)) || ((types & T_INT) && json_is_integer(v)) ||
           ((types & T_BOOL) && json_is_boolean(v)) || ((types & T_NULL) && json_is_null(v)) ||
           ((types & T_ARR) && json_is_array(v)) || ((types & T_OBJ) && json_is_object(v));
}

/* The value of `key` to use: the one given in `item` if present (type-checked), else the current
   one (`cur`, NULL for a new item) or, for new items, `def`. *changed tells whether the value
   differs from the current one (always true for new items). Returns NULL only on a type error
   (a->rc set); absent values with no default come back as JSON null. */
static json_t *field(struct ap *a, const char *path, const json_t *item, const json_t *cur,
                     const char *key, unsigned types, json_t *def, bool *changed)
{
    json_t *v = json_object_get(item, key);
    json_t *cv = cur ? json_object_get(cur, key) : NULL;
    *changed = !cur;
    if (!v)
        return cur ? (cv ? cv : json_null()) : (def ? def : json_null());
    if (cur && cv && json_equal(v, cv))
        return v;
    *changed = true;
    if (!type_ok(v, types)) {
        char f[128];
        snprintf(f, sizeof(f), "%s%s%s", path, *path ? "." : "", key);
        bad(a, f, "must be %s", type_text(types));
        return NULL;
    }
    return v;
}

static int unknown_keys(struct ap *a, const char *path, const json_t *obj, const char *const *known)
{
    const char *k;
    json_t *v;
    json_object_foreach ((json_t *)obj, k, v) {
        if (!in_list(k, known)) {
            char f[256];
            snprintf(f, sizeof(f), "%s%s%s", path, *path ? "." : "", k);
            return bad(a, f, "unknown field");
        }
    }
    return 0;
}

/* ---- tree helpers ------------------------------------------------------------------------ */

static bool is_elem(const xmlNode *n, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && !n->ns && xmlStrEqual(n->name, BAD_CAST name);
}

static xmlNode *child(const xmlNode *parent, const char *name)
{
    for (xmlNode *n = parent ? parent->children : NULL; n; n = n->next)
        if (is_elem(n, name))
            return n;
    return NULL;
}

static xmlNode *last_elem(const xmlNode *parent)
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
static int indent(struct ap *a, xmlNode *node, const xmlChar *ws)
{
    if (!ws || !node->children || node->children->type != XML_ELEMENT_NODE)
        return 0;
    AUTO_STR *inner = NULL;
    if (asprintf(&inner, "%s  ", (const char *)ws) < 0) {
        inner = NULL;
        return oom(a);
    }
    for (xmlNode *c = node->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        xmlNode *t = xmlNewDocText(a->doc, BAD_CAST inner);
        if (!t || !xmlAddPrevSibling(c, t) || indent(a, c, BAD_CAST inner)) {
            xmlFreeNode(t);
            return oom(a);
        }
    }
    xmlNode *t = xmlNewDocText(a->doc, ws);
    if (!t || !xmlAddChild(node, t)) {
        xmlFreeNode(t);
        return oom(a);
    }
    return 0;
}

/* Puts node after ref (ref NULL: after the last element child of parent), copying ref's leading
   white space so that the output stays indented. node may be linked elsewhere: it is moved. */
static int place(struct ap *a, xmlNode *parent, xmlNode *ref, xmlNode *node)
{
    if (!ref)
        ref = last_elem(parent);
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
            return oom(a);
        }
        return 0;
    }
    if (!xmlAddNextSibling(ref, node)) {
        xmlFreeNode(node);
        return oom(a);
    }
    if (is_blank(ref->prev)) {
        xmlNode *ws = xmlNewDocText(a->doc, ref->prev->content);
        if (!ws || !xmlAddPrevSibling(node, ws)) {
            xmlFreeNode(ws);
            return oom(a);
        }
    }
    return 0;
}

/* Unlinks and frees node with the white space before it. */
static void drop(struct ap *a, xmlNode *node)
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

static void drop_children(struct ap *a, xmlNode *parent, const char *name)
{
    for (xmlNode *n = parent ? parent->children : NULL, *next; n; n = next) {
        next = n->next;
        if (is_elem(n, name))
            drop(a, n);
    }
}

static xmlNode *new_elem(struct ap *a, const char *name)
{
    xmlNode *n = xmlNewDocNode(a->doc, NULL, BAD_CAST name, NULL);
    if (!n)
        oom(a);
    return n;
}

/* Sets (value non-NULL) or removes an attribute; touches nothing when it already is so. */
static int set_attr(struct ap *a, xmlNode *node, const char *name, const char *value)
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
    return xmlSetProp(node, BAD_CAST name, BAD_CAST value) ? 0 : oom(a);
}

/* Replaces the content of node with the literal text s (no entity interpretation). */
static int set_text(struct ap *a, xmlNode *node, const char *s)
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
        return oom(a);
    }
    return 0;
}

/* The child `name` of parent, created after the first existing element named in `after` (a
   NULL-terminated list, most preferred first) or at the end. */
static xmlNode *ensure_child(struct ap *a, xmlNode *parent, const char *name,
                             const char *const *after)
{
    xmlNode *n = child(parent, name);
    if (n)
        return n;
    xmlNode *ref = NULL;
    for (; after && *after && !ref; after++)
        ref = child(parent, *after);
    n = new_elem(a, name);
    if (!n || place(a, parent, ref, n))
        return NULL;
    return n;
}

static int set_int_text(struct ap *a, xmlNode *node, long long v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", v);
    return set_text(a, node, buf);
}

/* ---- top-level scalars ------------------------------------------------------------------- */

static int check_readonly(struct ap *a, const json_t *config)
{
    bool chg;
    json_t *name = field(a, "", config, a->cur, "name", T_STR, NULL, &chg);
    if (!name)
        return a->rc;
    if (chg)
        return bad(a, "name",
                   "cannot be changed by writing config.json (renaming is a separate "
                   "operation); it must stay \"%s\"",
                   json_string_value(json_object_get(a->cur, "name")));
    json_t *uuid = field(a, "", config, a->cur, "uuid", T_STR | T_NULL, NULL, &chg);
    if (!uuid)
        return a->rc;
    const char *cu = json_string_value(json_object_get(a->cur, "uuid"));
    if (chg && json_is_string(uuid) && !(cu && !strcasecmp(cu, json_string_value(uuid))))
        return bad(a, "uuid", "cannot be changed (it is \"%s\")", cu ? cu : "");
    static const char *const ro[] = {"type", "arch", NULL};
    for (const char *const *k = ro; *k; k++) {
        json_t *v = field(a, "", config, a->cur, *k, T_STR | T_NULL, NULL, &chg);
        if (!v)
            return a->rc;
        if (chg) {
            const char *c = json_string_value(json_object_get(a->cur, *k));
            return bad(a, *k, "cannot be changed by writing config.json (it is %s%s%s)",
                       c ? "\"" : "", c ? c : "null", c ? "\"" : "");
        }
    }
    json_t *autostart = json_object_get(config, "autostart");
    if (autostart && !json_is_boolean(autostart))
        return bad(a, "autostart", "must be a boolean");
    return 0;
}

static int apply_description(struct ap *a, const json_t *config)
{
    bool chg;
    json_t *d = field(a, "", config, a->cur, "description", T_STR, NULL, &chg);
    if (!d || !chg)
        return a->rc;
    const char *s = json_string_value(d);
    if (strlen(s) > MAX_DESC)
        return bad(a, "description", "must be at most %d bytes", MAX_DESC);
    if (has_ctrl(s, true))
        return bad(a, "description",
                   "must not contain control characters other than newline "
                   "and tab");
    if (!*s) {
        drop(a, child(a->root, "description"));
        return 0;
    }
    static const char *const after[] = {"title", "uuid", "name", NULL};
    xmlNode *n = ensure_child(a, a->root, "description", after);
    return n ? set_text(a, n, s) : a->rc;
}

static int apply_vcpus(struct ap *a, const json_t *config)
{
    bool chg_max, chg_cur;
    json_t *max = field(a, "", config, a->cur, "max_vcpus", T_INT, NULL, &chg_max);
    if (!max)
        return a->rc;
    json_t *cur = field(a, "", config, a->cur, "vcpus", T_INT, NULL, &chg_cur);
    if (!cur)
        return a->rc;
    if (!chg_max && !chg_cur)
        return 0;
    json_int_t m = json_integer_value(max), v = json_integer_value(cur);
    /* Raising vcpus alone raises the maximum with it (`jq '.vcpus = 4'` just works). */
    if (!chg_max && v > m && v <= MAX_VCPUS) {
        m = v;
        chg_max = true;
    }
    if (chg_max && (m < 1 || m > MAX_VCPUS))
        return bad(a, "max_vcpus", "must be an integer between 1 and %d", MAX_VCPUS);
    if (v < 1 || v > m)
        return bad(a, "vcpus",
                   "must be an integer between 1 and max_vcpus (%" JSON_INTEGER_FORMAT ")", m);
    static const char *const after[] = {"currentMemory", "memory", "name", NULL};
    xmlNode *n = ensure_child(a, a->root, "vcpu", after);
    if (!n || set_int_text(a, n, m))
        return a->rc;
    char buf[32];
    snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, v);
    return set_attr(a, n, "current", v == m ? NULL : buf);
}

static int write_mem(struct ap *a, const char *elem, json_int_t mib)
{
    static const char *const after[] = {"memory", "vcpu", "name", NULL};
    xmlNode *n = ensure_child(a, a->root, elem, after);
    if (!n || set_int_text(a, n, (long long)mib * 1024))
        return a->rc;
    return set_attr(a, n, "unit", "KiB");
}

static int apply_memory(struct ap *a, const json_t *config)
{
    bool chg_max, chg_cur;
    json_t *max = field(a, "", config, a->cur, "max_memory_mib", T_INT, NULL, &chg_max);
    if (!max)
        return a->rc;
    json_t *cur = field(a, "", config, a->cur, "memory_mib", T_INT, NULL, &chg_cur);
    if (!cur)
        return a->rc;
    if (!chg_max && !chg_cur)
        return 0;
    json_int_t m = json_integer_value(max), v = json_integer_value(cur);
    /* Raising memory_mib alone raises the maximum with it (`jq '.memory_mib = 1024'`). */
    if (!chg_max && json_is_integer(cur) && (!json_is_integer(max) || v > m) && v <= MAX_MEM_MIB) {
        m = v;
        max = cur;
        chg_max = true;
    }
    if (chg_max && (!json_is_integer(max) || m < MIN_MEM_MIB || m > MAX_MEM_MIB))
        return bad(a, "max_memory_mib", "must be an integer between %d and %d", MIN_MEM_MIB,
                   MAX_MEM_MIB);
    if (chg_cur && (!json_is_integer(cur) || v < MIN_MEM_MIB || v > MAX_MEM_MIB))
        return bad(a, "memory_mib", "must be an integer between %d and %d", MIN_MEM_MIB,
                   MAX_MEM_MIB);
    if (json_is_integer(max) && json_is_integer(cur) && v > m)
        return bad(a, "memory_mib",
                   "must not exceed max_memory_mib (%" JSON_INTEGER_FORMAT
                   " > %" JSON_INTEGER_FORMAT ")",
                   v, m);
    if (chg_max && write_mem(a, "memory", m))
        return a->rc;
    /* Without <currentMemory> the current amount follows <memory>: write it to keep it. */
    if ((chg_cur || !child(a->root, "currentMemory")) && json_is_integer(cur))
        return write_mem(a, "currentMemory", v);
    return 0;
}

static xmlNode *os_type(struct ap *a)
{
    static const char *const after[] = {"vcpu", "currentMemory", "memory", NULL};
    xmlNode *os = ensure_child(a, a->root, "os", after);
    if (!os)
        return NULL;
    xmlNode *t = child(os, "type");
    if (t)
        return t;
    t = new_elem(a, "type");
    if (!t || set_text(a, t, "hvm"))
        return NULL;
    if (!os->children || !xmlAddPrevSibling(os->children, t)) {
        if (!xmlAddChild(os, t)) {
            xmlFreeNode(t);
            oom(a);
            return NULL;
        }
    }
    return t;
}

static int apply_machine(struct ap *a, const json_t *config)
{
    bool chg;
    json_t *m = field(a, "", config, a->cur, "machine", T_STR | T_NULL, NULL, &chg);
    if (!m || !chg)
        return a->rc;
    const char *s = json_string_value(m);
    bool ok = !s || (*s && strlen(s) <= MAX_TOKEN);
    for (const char *p = s; ok && p && *p; p++)
        ok = isalnum((unsigned char)*p) || strchr("._-", *p);
    if (!ok)
        return bad(a, "machine", "must be a machine type such as \"pc-q35-7.2\" or null");
    xmlNode *t = os_type(a);
    return t ? set_attr(a, t, "machine", s) : a->rc;
}

static int apply_firmware(struct ap *a, const json_t *config)
{
    bool chg;
    json_t *f = field(a, "", config, a->cur, "firmware", T_STR, NULL, &chg);
    if (!f || !chg)
        return a->rc;
    const char *s = json_string_value(f);
    if (!in_list(s, firmwares))
        return bad(a, "firmware", "must be one of bios, uefi (got \"%s\")", s);
    xmlNode *t = os_type(a);
    if (!t)
        return a->rc;
    xmlNode *os = t->parent;
    /* Either way the old firmware configuration goes: a manual loader/nvram or a feature list. */
    drop_children(a, os, "loader");
    drop_children(a, os, "nvram");
    drop_children(a, os, "firmware");
    return set_attr(a, os, "firmware", strcmp(s, "uefi") ? NULL : "efi");
}

/* ---- disks ------------------------------------------------------------------------------- */

static int split_volume(struct ap *a, const char *path, const char *src, char **pool, char **vol)
{
    const char *slash = strchr(src, '/');
    if (!slash || slash == src || !slash[1] || strchr(slash + 1, '/') || has_ctrl(src, false))
        return bad(a, path, "must be \"<pool>/<volume>\" for a volume disk (got \"%s\")", src);
    *pool = strndup(src, (size_t)(slash - src));
    *vol = strdup(slash + 1);
    return *pool && *vol ? 0 : oom(a);
}

/* Checks the volume of a volume disk; adds it to a->vols when it is to be created. */
static int check_volume(struct ap *a, const char *path, const char *src, bool src_changed,
                        const json_t *size, const char *format)
{
    char f[160];
    snprintf(f, sizeof(f), "%s.source", path);
    AUTO_STR *pool = NULL;
    AUTO_STR *vol = NULL;
    if (split_volume(a, f, src, &pool, &vol))
        return a->rc;
    const hx_domxml_env *e = a->env;
    if (src_changed && e->pool_exists) {
        int r = e->pool_exists(pool, e->opaque);
        if (r < 0)
            return bad(a, f, "cannot check whether pool \"%s\" exists", pool);
        if (!r)
            return bad(a, f, "pool \"%s\" does not exist on this node", pool);
    }
    if (!e->volume_size || (!src_changed && json_is_null(size)))
        return 0;
    int64_t have = e->volume_size(pool, vol, e->opaque);
    snprintf(f, sizeof(f), "%s.size_bytes", path);
    if (have < -1)
        return bad(a, f, "cannot check the size of volume \"%s\"", src);
    if (have >= 0) {
        if (json_is_integer(size) && json_integer_value(size) != have)
            return bad(a, f, "resizing is not supported here (volume \"%s\" has %" PRId64 " bytes)",
                       src, have);
        return 0;
    }
    if (!json_is_integer(size) || json_integer_value(size) <= 0) {
        snprintf(f, sizeof(f), "%s.source", path);
        return bad(a, f, "volume \"%s\" does not exist; give size_bytes to create it", src);
    }
    json_t *v = json_pack("{s:s, s:s, s:I, s:s}", "pool", pool, "name", vol, "size_bytes",
                          json_integer_value(size), "format", format ? format : "raw");
    if (!v || json_array_append_new(a->vols, v))
        return oom(a);
    return 0;
}

/* Builds a fresh <source> for the disk type, replacing the old one (NULL src: no source). */
static int disk_source(struct ap *a, xmlNode *disk, const char *stype, const char *src)
{
    xmlNode *old = child(disk, "source");
    if (!src) {
        drop(a, old);
        return 0;
    }
    xmlNode *s = new_elem(a, "source");
    if (!s)
        return a->rc;
    if (!strcmp(stype, "volume")) {
        const char *slash = strchr(src, '/');
        AUTO_STR *pool = strndup(src, (size_t)(slash - src));
        if (!pool || set_attr(a, s, "pool", pool) || set_attr(a, s, "volume", slash + 1)) {
            xmlFreeNode(s);
            return oom(a);
        }
    } else if (set_attr(a, s, strcmp(stype, "block") ? "file" : "dev", src)) {
        xmlFreeNode(s);
        return a->rc;
    }
    if (old) {
        xmlReplaceNode(old, s);
        xmlFreeNode(old);
        a->changed = true;
        return 0;
    }
    static const char *const after[] = {"driver", NULL};
    xmlNode *ref = child(disk, after[0]);
    return place(a, disk, ref, s);
}

static const char *default_bus(const char *target)
{
    switch (target[0]) {
    case 'v':
        return "virtio";
    case 's':
        return "sata";
    case 'h':
        return "ide";
    default:
        return "fdc";
    }
}

/* Validates disk `item` (cur: its current config, NULL for a new disk) and applies it to *elem
   (NULL for a new disk: then a new element is built, not yet linked). */
static int disk_one(struct ap *a, const char *path, const json_t *item, const json_t *cur,
                    xmlNode **elem)
{
    const char *target = json_string_value(json_object_get(item, "target"));
    char f[160], lt[128];
    bool c_dev, c_bus, c_st, c_src, c_fmt, c_ro, c_size;
    AUTO_JSON *d_bus = json_string(default_bus(target));
    AUTO_JSON *d_dev = json_string("disk");
    AUTO_JSON *d_st = json_string("file");
    AUTO_JSON *d_fmt = json_string("raw");
    json_t *dev = field(a, path, item, cur, "device", T_STR, d_dev, &c_dev);
    json_t *bus = dev ? field(a, path, item, cur, "bus", T_STR, d_bus, &c_bus) : NULL;
    json_t *st = bus ? field(a, path, item, cur, "source_type", T_STR, d_st, &c_st) : NULL;
    json_t *src = st ? field(a, path, item, cur, "source", T_STR | T_NULL, NULL, &c_src) : NULL;
    json_t *fmt = src ? field(a, path, item, cur, "format", T_STR | T_NULL, d_fmt, &c_fmt) : NULL;
    const char *devs = json_string_value(dev);
    bool cdrom = devs && !strcmp(devs, "cdrom");
    json_t *ro = fmt ? field(a, path, item, cur, "readonly", T_BOOL,
                             cdrom ? json_true() : json_false(), &c_ro)
                     : NULL;
    json_t *size =
        ro ? field(a, path, item, cur, "size_bytes", T_INT | T_NULL, NULL, &c_size) : NULL;
    if (!size)
        return a->rc;
    const char *sts = json_string_value(st), *srcs = json_string_value(src);
    const char *fmts = json_string_value(fmt);
    if (c_dev && !in_list(devs, disk_devices)) {
        snprintf(f, sizeof(f), "%s.device", path);
        return bad(a, f, "must be one of %s (got \"%s\")", list_text(disk_devices, lt, sizeof(lt)),
                   devs);
    }
    if (c_bus && !in_list(json_string_value(bus), disk_buses)) {
        snprintf(f, sizeof(f), "%s.bus", path);
        return bad(a, f, "must be one of %s (got \"%s\")", list_text(disk_buses, lt, sizeof(lt)),
                   json_string_value(bus));
    }
    if (c_st && !in_list(sts, disk_stypes)) {
        snprintf(f, sizeof(f), "%s.source_type", path);
        return bad(a, f, "must be one of %s (got \"%s\"; other kinds can only be kept as they are)",
                   list_text(disk_stypes, lt, sizeof(lt)), sts);
    }
    snprintf(f, sizeof(f), "%s.source", path);
    if ((c_src || c_st) && !in_list(sts, disk_stypes))
        return bad(a, f, "cannot be changed for a %s disk", sts);
    if ((c_src || c_st || c_dev) && !srcs && strcmp(devs, "cdrom") && strcmp(devs, "floppy"))
        return bad(a, f, "must be a string (only a cdrom or floppy drive can be empty)");
    if ((c_src || c_st) && srcs && strcmp(sts, "volume")) {
        if (srcs[0] != '/' || strlen(srcs) > MAX_PATH_LEN || has_ctrl(srcs, false))
            return bad(a, f, "must be an absolute path for a %s disk (got \"%s\")", sts, srcs);
    }
    if (c_fmt && fmts && !in_list(fmts, disk_formats)) {
        snprintf(f, sizeof(f), "%s.format", path);
        return bad(a, f, "must be one of %s or null (got \"%s\")",
                   list_text(disk_formats, lt, sizeof(lt)), fmts);
    }
    if ((c_ro || c_dev) && cdrom && !json_is_true(ro)) {
        snprintf(f, sizeof(f), "%s.readonly", path);
        return bad(a, f, "must be true for a cdrom");
    }
    if (c_size && json_is_integer(size) && json_integer_value(size) < 0) {
        snprintf(f, sizeof(f), "%s.size_bytes", path);
        return bad(a, f, "must be a non-negative integer or null");
    }
    if (srcs && !strcmp(sts, "volume") && check_volume(a, path, srcs, c_src || c_st, size, fmts))
        return a->rc;

    xmlNode *disk = *elem;
    if (!disk) {
        disk = *elem = new_elem(a, "disk");
        xmlNode *drv = disk ? xmlNewChild(disk, NULL, BAD_CAST "driver", NULL) : NULL;
        if (!drv || set_attr(a, drv, "name", "qemu"))
            return oom(a);
        c_dev = c_st = c_src = c_fmt = c_ro = c_bus = true;
    }
    if (c_st && set_attr(a, disk, "type", sts))
        return a->rc;
    if (c_dev && set_attr(a, disk, "device", devs))
        return a->rc;
    if (c_fmt) {
        xmlNode *drv = child(disk, "driver");
        if (!drv && fmts) {
            drv = new_elem(a, "driver");
            if (!drv || set_attr(a, drv, "name", "qemu"))
                return a->rc;
            if (!disk->children || !xmlAddPrevSibling(disk->children, drv))
                xmlAddChild(disk, drv);
        }
        if (drv && set_attr(a, drv, "type", fmts))
            return a->rc;
    }
    if ((c_src || c_st) && disk_source(a, disk, sts, srcs))
        return a->rc;
    if (c_bus || !child(disk, "target")) {
        static const char *const after[] = {"source", "driver", NULL};
        xmlNode *t = ensure_child(a, disk, "target", after);
        if (!t || set_attr(a, t, "dev", target) || set_attr(a, t, "bus", json_string_value(bus)))
            return a->rc;
    }
    if (c_ro || c_dev) {
        /* libvirt makes a cdrom read-only by itself: no element needed, an existing one kept. */
        xmlNode *r = child(disk, "readonly");
        static const char *const after[] = {"target", NULL};
        if (json_is_true(ro) && !r && !cdrom && !ensure_child(a, disk, "readonly", after))
            return a->rc;
        if (!json_is_true(ro) && r)
            drop(a, r);
    }
    return 0;
}

/* Whether b follows a (same parent) in document order. */
static bool follows(const xmlNode *a, const xmlNode *b)
{
    for (const xmlNode *n = a->next; n; n = n->next)
        if (n == b)
            return true;
    return false;
}

/* Links the new elements of a device list and puts all of them in config order, touching the
   tree only where needed. `cur` are the current elements of that kind (some already dropped). */
static int arrange(struct ap *a, xmlNode *devices, struct devs *d, xmlNodeSet *cur)
{
    xmlNode *last_cur = NULL;
    for (int i = 0; cur && i < cur->nodeNr; i++)
        for (size_t j = 0; j < d->n; j++)
            if (d->elem[j] == cur->nodeTab[i])
                last_cur = cur->nodeTab[i];
    for (size_t i = 0; i < d->n; i++) {
        if (d->elem[i]->parent)
            continue;
        xmlNode *ref = i ? d->elem[i - 1] : last_cur;
        if (place(a, devices, ref, d->elem[i]))
            return a->rc;
    }
    bool ordered = true;
    for (size_t i = 1; i < d->n && ordered; i++)
        ordered = follows(d->elem[i - 1], d->elem[i]);
    for (size_t i = 1; i < d->n && !ordered; i++)
        if (place(a, devices, d->elem[i - 1], d->elem[i]))
            return a->rc;
    return 0;
}

static xmlNode *devices_elem(struct ap *a)
{
    static const char *const after[] = {"on_crash", "on_reboot", "on_poweroff", "os", NULL};
    return ensure_child(a, a->root, "devices", after);
}

/* Fills d with the current elements and keys (when the list is not written). */
static int current_devs(struct ap *a, const char *expr, const char *keyexpr, struct devs *d)
{
    AUTO_XPOBJ *o = xmlXPathNodeEval(a->root, BAD_CAST expr, a->xp);
    if (!o)
        return oom(a);
    size_t n = o->nodesetval ? (size_t)o->nodesetval->nodeNr : 0;
    d->n = n;
    d->elem = calloc(n + 1, sizeof(*d->elem));
    d->key = calloc(n + 1, sizeof(*d->key));
    if (!d->elem || !d->key)
        return oom(a);
    for (size_t i = 0; i < n; i++) {
        d->elem[i] = o->nodesetval->nodeTab[i];
        AUTO_XPOBJ *k = xmlXPathNodeEval(d->elem[i], BAD_CAST keyexpr, a->xp);
        if (k && k->nodesetval && k->nodesetval->nodeNr) {
            /* attribute values live as long as the document */
            xmlNode *attr = k->nodesetval->nodeTab[0];
            d->key[i] = attr->children ? (const char *)attr->children->content : NULL;
        }
    }
    return 0;
}

static int apply_disks(struct ap *a, const json_t *config)
{
    json_t *list = json_object_get(config, "disks");
    if (!list)
        return current_devs(a, "devices/disk", "target/@dev", &a->disks);
    if (!json_is_array(list))
        return bad(a, "disks", "must be an array");
    size_t n = json_array_size(list);
    if (n > MAX_DEVICES)
        return bad(a, "disks", "must have at most %d entries", MAX_DEVICES);
    AUTO_XPOBJ *o = xmlXPathNodeEval(a->root, BAD_CAST "devices/disk", a->xp);
    if (!o)
        return oom(a);
    xmlNodeSet *cur = o->nodesetval;
    int ncur = cur ? cur->nodeNr : 0;
    const json_t *cur_list = json_object_get(a->cur, "disks");
    AUTO_MEM bool *used = calloc((size_t)ncur + 1, sizeof(bool));
    a->disks.elem = calloc(n + 1, sizeof(xmlNode *));
    a->disks.key = calloc(n + 1, sizeof(char *));
    if (!used || !a->disks.elem || !a->disks.key)
        return oom(a);
    a->disks.n = n;
    for (size_t i = 0; i < n; i++) {
        char path[32], f[48];
        snprintf(path, sizeof(path), "disks[%zu]", i);
        const json_t *item = json_array_get(list, i);
        if (!json_is_object(item))
            return bad(a, path, "must be an object");
        if (unknown_keys(a, path, item, hx_domxml_disk_keys))
            return a->rc;
        snprintf(f, sizeof(f), "%s.target", path);
        const char *target = json_string_value(json_object_get(item, "target"));
        if (!target)
            return bad(a, f, "must be a string (the disk's target device, e.g. \"vda\")");
        for (size_t j = 0; j < i; j++)
            if (!strcmp(a->disks.key[j], target))
                return bad(a, f, "duplicate target \"%s\" (also disks[%zu])", target, j);
        a->disks.key[i] = target;
        int match = -1;
        for (int j = 0; j < ncur && match < 0; j++) {
            const char *t =
                json_string_value(json_object_get(json_array_get(cur_list, j), "target"));
            if (!used[j] && t && !strcmp(t, target))
                match = j;
        }
        if (match < 0 && !is_target(target))
            return bad(a, f,
                       "must be hd, sd or vd followed by 1 to 3 letters, or fd0 to fd9 "
                       "(got \"%s\")",
                       target);
        if (match >= 0) {
            used[match] = true;
            a->disks.elem[i] = cur->nodeTab[match];
        }
        if (disk_one(a, path, item, match >= 0 ? json_array_get(cur_list, match) : NULL,
                     &a->disks.elem[i]))
            return a->rc;
    }
    for (int j = 0; j < ncur; j++)
        if (!used[j])
            drop(a, cur->nodeTab[j]);
    xmlNode *devices = n ? devices_elem(a) : NULL;
    if (n && !devices)
        return a->rc;
    /* New disks go after the last disk, or, with none, before the first interface or at the
       end. */
    if (n && ncur == 0) {
        xmlNode *first_unlinked = a->disks.elem[0];
        if (!first_unlinked->parent) {
            xmlNode *emu = child(devices, "emulator");
            if (place(a, devices, emu ? emu : last_elem(devices), first_unlinked))
                return a->rc;
        }
    }
    return n ? arrange(a, devices, &a->disks, cur) : 0;
}

/* ---- NICs -------------------------------------------------------------------------------- */

static int check_ref(struct ap *a, const char *f, int (*fn)(const char *, void *), const char *what,
                     const char *name)
{
    if (!fn)
        return 0;
    int r = fn(name, a->env->opaque);
    if (r < 0)
        return bad(a, f, "cannot check whether %s \"%s\" exists", what, name);
    if (!r)
        return bad(a, f, "%s \"%s\" does not exist on this node", what, name);
    return 0;
}

static int nic_one(struct ap *a, const char *path, const json_t *item, const json_t *cur,
                   xmlNode **elem)
{
    char f[160], lt[128];
    bool c_type, c_net, c_br, c_model, c_mac = false;
    AUTO_JSON *d_type = json_string("network");
    AUTO_JSON *d_model = json_string("virtio");
    json_t *type = field(a, path, item, cur, "type", T_STR, d_type, &c_type);
    json_t *net = type ? field(a, path, item, cur, "network", T_STR | T_NULL, NULL, &c_net) : NULL;
    json_t *br = net ? field(a, path, item, cur, "bridge", T_STR | T_NULL, NULL, &c_br) : NULL;
    json_t *model =
        br ? field(a, path, item, cur, "model", T_STR | T_NULL, d_model, &c_model) : NULL;
    if (!model)
        return a->rc;
    const char *ts = json_string_value(type), *nets = json_string_value(net);
    const char *brs = json_string_value(br), *models = json_string_value(model);
    if (c_type && !in_list(ts, nic_types)) {
        snprintf(f, sizeof(f), "%s.type", path);
        return bad(a, f, "must be one of %s (got \"%s\"; other kinds can only be kept as they are)",
                   list_text(nic_types, lt, sizeof(lt)), ts);
    }
    bool known = in_list(ts, nic_types);
    if (!known && (c_net || c_br)) {
        snprintf(f, sizeof(f), "%s.%s", path, c_net ? "network" : "bridge");
        return bad(a, f, "cannot be changed for a %s interface", ts);
    }
    bool is_net = known && !strcmp(ts, "network"), is_br = known && !strcmp(ts, "bridge");
    snprintf(f, sizeof(f), "%s.network", path);
    if (is_net && !nets)
        return bad(a, f, "must be a string for a network interface");
    if (known && !is_net && nets)
        return bad(a, f, "must be null for a %s interface", ts);
    if (is_net && (c_net || c_type) &&
        (!*nets || has_ctrl(nets, false) || strlen(nets) > MAX_TOKEN * 4))
        return bad(a, f, "must be a network name (got \"%s\")", nets);
    if (is_net && (c_net || c_type) && check_ref(a, f, a->env->network_exists, "network", nets))
        return a->rc;
    snprintf(f, sizeof(f), "%s.bridge", path);
    if (is_br && !brs)
        return bad(a, f, "must be a string for a bridge interface");
    /* The live XML of a network interface names its bridge too: accept it unchanged. */
    if (known && !is_br && brs && (c_br || c_type))
        return bad(a, f, "must be null for a %s interface", ts);
    if (is_br && (c_br || c_type) && (!*brs || has_ctrl(brs, false) || strlen(brs) > MAX_TOKEN))
        return bad(a, f, "must be a bridge name (got \"%s\")", brs);
    if (is_br && (c_br || c_type) && check_ref(a, f, a->env->bridge_exists, "bridge", brs))
        return a->rc;
    if (c_model && models && !is_token(models, "-_")) {
        snprintf(f, sizeof(f), "%s.model", path);
        return bad(a, f,
                   "must be a model name such as \"virtio\" or \"e1000e\" or null (got \"%s\")",
                   models);
    }

    xmlNode *nic = *elem;
    if (!nic) {
        nic = *elem = new_elem(a, "interface");
        if (!nic)
            return a->rc;
        const char *mac = json_string_value(json_object_get(item, "mac"));
        if (mac) {
            xmlNode *m = xmlNewChild(nic, NULL, BAD_CAST "mac", NULL);
            if (!m || set_attr(a, m, "address", mac))
                return oom(a);
        }
        c_type = c_net = c_br = c_model = c_mac = true;
    }
    (void)c_mac;
    if (c_type && set_attr(a, nic, "type", ts))
        return a->rc;
    if (known && (c_type || c_net || c_br)) {
        xmlNode *src = child(nic, "source");
        if (!is_net && !is_br) {
            drop(a, src);
        } else {
            if (!src) {
                static const char *const after[] = {"mac", NULL};
                src = ensure_child(a, nic, "source", after);
                if (!src)
                    return a->rc;
            } else if (c_type) { /* a fresh source: the old one's attributes belong to its type */
                xmlNode *s = new_elem(a, "source");
                if (!s)
                    return a->rc;
                xmlReplaceNode(src, s);
                xmlFreeNode(src);
                src = s;
                a->changed = true;
            }
            if (set_attr(a, src, "network", is_net ? nets : NULL) ||
                set_attr(a, src, "bridge", brs))
                return a->rc;
        }
    }
    if (c_model) {
        xmlNode *m = child(nic, "model");
        if (!models) {
            drop(a, m);
        } else {
            static const char *const after[] = {"source", "mac", NULL};
            m = ensure_child(a, nic, "model", after);
            if (!m || set_attr(a, m, "type", models))
                return a->rc;
        }
    }
    return 0;
}

static int apply_nics(struct ap *a, const json_t *config)
{
    json_t *list = json_object_get(config, "nics");
    if (!list)
        return current_devs(a, "devices/interface", "mac/@address", &a->nics);
    if (!json_is_array(list))
        return bad(a, "nics", "must be an array");
    size_t n = json_array_size(list);
    if (n > MAX_DEVICES)
        return bad(a, "nics", "must have at most %d entries", MAX_DEVICES);
    AUTO_XPOBJ *o = xmlXPathNodeEval(a->root, BAD_CAST "devices/interface", a->xp);
    if (!o)
        return oom(a);
    xmlNodeSet *cur = o->nodesetval;
    int ncur = cur ? cur->nodeNr : 0;
    const json_t *cur_list = json_object_get(a->cur, "nics");
    AUTO_MEM bool *used = calloc((size_t)ncur + 1, sizeof(bool));
    a->nics.elem = calloc(n + 1, sizeof(xmlNode *));
    a->nics.key = calloc(n + 1, sizeof(char *));
    if (!used || !a->nics.elem || !a->nics.key)
        return oom(a);
    a->nics.n = n;
    for (size_t i = 0; i < n; i++) {
        char path[32], f[48];
        snprintf(path, sizeof(path), "nics[%zu]", i);
        const json_t *item = json_array_get(list, i);
        if (!json_is_object(item))
            return bad(a, path, "must be an object");
        if (unknown_keys(a, path, item, hx_domxml_nic_keys))
            return a->rc;
        snprintf(f, sizeof(f), "%s.mac", path);
        const json_t *macj = json_object_get(item, "mac");
        if (macj && !json_is_string(macj) && !json_is_null(macj))
            return bad(a, f, "must be a string or null");
        const char *mac = json_string_value(macj);
        int match = -1;
        if (mac) {
            for (size_t j = 0; j < i; j++)
                if (a->nics.key[j] && !strcasecmp(a->nics.key[j], mac))
                    return bad(a, f, "duplicate MAC address \"%s\" (also nics[%zu])", mac, j);
            for (int j = 0; j < ncur && match < 0; j++) {
                const char *m =
                    json_string_value(json_object_get(json_array_get(cur_list, j), "mac"));
                if (!used[j] && m && !strcasecmp(m, mac))
                    match = j;
            }
            if (match < 0 && (!is_mac(mac) || !is_unicast_mac(mac)))
                return bad(a, f,
                           "must be a unicast MAC address such as \"52:54:00:12:34:56\" "
                           "or null (got \"%s\")",
                           mac);
        }
        a->nics.key[i] = mac;
        if (match >= 0) {
            used[match] = true;
            a->nics.elem[i] = cur->nodeTab[match];
        }
        if (nic_one(a, path, item, match >= 0 ? json_array_get(cur_list, match) : NULL,
                    &a->nics.elem[i]))
            return a->rc;
    }
    for (int j = 0; j < ncur; j++)
        if (!used[j])
            drop(a, cur->nodeTab[j]);
    if (!n)
        return 0;
    xmlNode *devices = devices_elem(a);
    if (!devices)
        return a->rc;
    if (ncur == 0 && !a->nics.elem[0]->parent) {
        xmlNode *ref = a->disks.n ? a->disks.elem[a->disks.n - 1] : child(devices, "emulator");
        if (place(a, devices, ref && ref->parent == devices ? ref : NULL, a->nics.elem[0]))
            return a->rc;
    }
    return arrange(a, devices, &a->nics, cur);
}

/* ---- graphics ---------------------------------------------------------------------------- */

static int gfx_one(struct ap *a, const char *path, const json_t *item, const json_t *cur,
                   xmlNode **elem)
{
    char f[160];
    bool c_port, c_listen, c_type;
    AUTO_JSON *d_port = json_integer(-1);
    json_t *type = field(a, path, item, cur, "type", T_STR, NULL, &c_type);
    json_t *port = type ? field(a, path, item, cur, "port", T_INT | T_NULL, d_port, &c_port) : NULL;
    json_t *listen =
        port ? field(a, path, item, cur, "listen", T_STR | T_NULL, NULL, &c_listen) : NULL;
    if (!listen)
        return a->rc;
    json_int_t p = json_integer_value(port);
    const char *ls = json_string_value(listen);
    if (c_port && json_is_integer(port) && p != -1 && (p < 5900 || p > 65535)) {
        snprintf(f, sizeof(f), "%s.port", path);
        return bad(a, f, "must be -1 (automatic) or between 5900 and 65535");
    }
    if (c_listen && ls && (!*ls || strlen(ls) > 255 || has_ctrl(ls, false))) {
        snprintf(f, sizeof(f), "%s.listen", path);
        return bad(a, f, "must be an address (at most 255 bytes, no control characters) or null");
    }
    xmlNode *g = *elem;
    if (!g) {
        g = *elem = new_elem(a, "graphics");
        if (!g || set_attr(a, g, "type", json_string_value(type)))
            return a->rc;
        c_port = c_listen = true;
    }
    if (c_port) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, p);
        if (set_attr(a, g, "port", json_is_integer(port) ? buf : NULL) ||
            set_attr(a, g, "autoport", json_is_integer(port) && p != -1 ? "no" : "yes"))
            return a->rc;
    }
    if (c_listen) {
        if (set_attr(a, g, "listen", ls))
            return a->rc;
        for (xmlNode *n = g->children, *next; n; n = next) {
            next = n->next;
            if (!is_elem(n, "listen"))
                continue;
            AUTO_XSTR *lt = xmlGetNoNsProp(n, BAD_CAST "type");
            if (ls && lt && !strcmp((const char *)lt, "address")) {
                if (set_attr(a, n, "address", ls))
                    return a->rc;
            } else {
                drop(a, n);
            }
        }
    }
    return 0;
}

static int apply_graphics(struct ap *a, const json_t *config)
{
    json_t *list = json_object_get(config, "graphics");
    if (!list)
        return 0;
    if (!json_is_array(list))
        return bad(a, "graphics", "must be an array");
    size_t n = json_array_size(list);
    if (n > 8)
        return bad(a, "graphics", "must have at most 8 entries");
    AUTO_XPOBJ *o = xmlXPathNodeEval(a->root, BAD_CAST "devices/graphics", a->xp);
    if (!o)
        return oom(a);
    xmlNodeSet *cur = o->nodesetval;
    int ncur = cur ? cur->nodeNr : 0;
    const json_t *cur_list = json_object_get(a->cur, "graphics");
    AUTO_MEM bool *used = calloc((size_t)ncur + 1, sizeof(bool));
    struct devs d = {.n = n, .elem = calloc(n + 1, sizeof(xmlNode *))};
    AUTO_MEM xmlNode **elems = d.elem;
    if (!used || !d.elem)
        return oom(a);
    char lt[64];
    for (size_t i = 0; i < n; i++) {
        char path[32], f[48];
        snprintf(path, sizeof(path), "graphics[%zu]", i);
        const json_t *item = json_array_get(list, i);
        if (!json_is_object(item))
            return bad(a, path, "must be an object");
        if (unknown_keys(a, path, item, hx_domxml_graphics_keys))
            return a->rc;
        snprintf(f, sizeof(f), "%s.type", path);
        const char *type = json_string_value(json_object_get(item, "type"));
        if (!type)
            return bad(a, f, "must be a string (%s)", list_text(gfx_types, lt, sizeof(lt)));
        /* Matched by type: libvirt allows one display of each kind per domain. */
        int match = -1;
        for (int j = 0; j < ncur && match < 0; j++) {
            const char *t = json_string_value(json_object_get(json_array_get(cur_list, j), "type"));
            if (!used[j] && t && !strcmp(t, type))
                match = j;
        }
        if (match < 0 && !in_list(type, gfx_types))
            return bad(a, f, "must be one of %s (got \"%s\")", list_text(gfx_types, lt, sizeof(lt)),
                       type);
        if (match >= 0) {
            used[match] = true;
            d.elem[i] = cur->nodeTab[match];
        }
        if (gfx_one(a, path, item, match >= 0 ? json_array_get(cur_list, match) : NULL, &d.elem[i]))
            return a->rc;
    }
    for (int j = 0; j < ncur; j++)
        if (!used[j])
            drop(a, cur->nodeTab[j]);
    if (!n)
        return 0;
    xmlNode *devices = devices_elem(a);
    if (!devices)
        return a->rc;
    return arrange(a, devices, &d, cur);
}

/* ---- boot order -------------------------------------------------------------------------- */

/* The element an entry of the per-device form names, or NULL. */
static xmlNode *boot_device(struct ap *a, const char *entry)
{
    if (!strncmp(entry, "net:", 4)) {
        for (size_t i = 0; i < a->nics.n; i++)
            if (a->nics.key[i] && !strcasecmp(a->nics.key[i], entry + 4))
                return a->nics.elem[i];
        return NULL;
    }
    for (size_t i = 0; i < a->disks.n; i++)
        if (a->disks.key[i] && !strcmp(a->disks.key[i], entry))
            return a->disks.elem[i];
    return NULL;
}

static int apply_boot(struct ap *a, const json_t *config)
{
    json_t *boot = json_object_get(config, "boot");
    if (!boot)
        return 0;
    if (!json_is_array(boot))
        return bad(a, "boot", "must be an array of strings");
    size_t n = json_array_size(boot);
    if (n > 16)
        return bad(a, "boot", "must have at most 16 entries");
    int forms = 0; /* 1: os/boot devices, 2: per-device entries */
    for (size_t i = 0; i < n; i++) {
        char f[32];
        snprintf(f, sizeof(f), "boot[%zu]", i);
        const char *s = json_string_value(json_array_get(boot, i));
        if (!s)
            return bad(a, f, "must be a string");
        for (size_t j = 0; j < i; j++)
            if (!strcmp(s, json_string_value(json_array_get(boot, j))))
                return bad(a, f, "duplicate entry \"%s\"", s);
        if (in_list(s, boot_devs))
            forms |= 1;
        else if (boot_device(a, s))
            forms |= 2;
        else
            return bad(a, f,
                       "must be one of hd, cdrom, network, fd, the target of a listed disk or "
                       "\"net:\" and the MAC of a listed NIC (got \"%s\")",
                       s);
        if (forms == 3)
            return bad(a, f, "cannot mix hd/cdrom/network/fd with per-device entries");
    }
    if (json_equal(boot, json_object_get(a->cur, "boot")))
        return 0;
    xmlNode *t = os_type(a);
    if (!t)
        return a->rc;
    xmlNode *os = t->parent;
    drop_children(a, os, "boot");
    xmlNode *devices = child(a->root, "devices");
    for (xmlNode *d = devices ? devices->children : NULL; d; d = d->next)
        if (d->type == XML_ELEMENT_NODE)
            drop_children(a, d, "boot");
    xmlNode *ref = t;
    for (const char *const *k = (const char *const[]){"loader", "nvram", NULL}; *k; k++)
        if (child(os, *k))
            ref = child(os, *k);
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(boot, i));
        xmlNode *b = new_elem(a, "boot");
        if (!b)
            return a->rc;
        if (forms == 1) {
            if (place(a, os, ref, b) || set_attr(a, b, "dev", s))
                return a->rc;
            ref = b;
        } else {
            char order[32];
            snprintf(order, sizeof(order), "%zu", i + 1);
            if (place(a, boot_device(a, s), NULL, b) || set_attr(a, b, "order", order))
                return a->rc;
        }
    }
    return 0;
}

/* ---- Horcrux metadata -------------------------------------------------------------------- */

static bool local_is(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST name);
}

/* Sets a boolean child of <horcrux:vm> (protected, template). */
static int set_flag(struct ap *a, xmlNode *vm, const char *name, const json_t *value)
{
    const char *v = json_is_true(value) ? "true" : "false";
    xmlNode *p = NULL;
    for (xmlNode *n = vm->children; n && !p; n = n->next)
        if (local_is(n, name))
            p = n;
    if (!p) {
        p = xmlNewDocNode(a->doc, vm->ns, BAD_CAST name, NULL);
        if (!p || place(a, vm, NULL, p))
            return p ? a->rc : oom(a);
    }
    return set_text(a, p, v);
}

static int apply_metadata(struct ap *a, const json_t *config)
{
    bool c_tags, c_prot, c_tmpl;
    json_t *tags = field(a, "", config, a->cur, "tags", T_ARR, NULL, &c_tags);
    json_t *prot = tags ? field(a, "", config, a->cur, "protected", T_BOOL, NULL, &c_prot) : NULL;
    json_t *tmpl = prot ? field(a, "", config, a->cur, "template", T_BOOL, NULL, &c_tmpl) : NULL;
    if (!tmpl)
        return a->rc;
    if (!c_tags && !c_prot && !c_tmpl)
        return 0;
    if (json_array_size(tags) > MAX_TAGS)
        return bad(a, "tags", "must have at most %d entries", MAX_TAGS);
    for (size_t i = 0; i < json_array_size(tags); i++) {
        char f[32];
        snprintf(f, sizeof(f), "tags[%zu]", i);
        const char *s = json_string_value(json_array_get(tags, i));
        if (!s)
            return bad(a, f, "must be a string");
        size_t len = strlen(s);
        if (!len || len > MAX_TAG_LEN || isspace((unsigned char)s[0]) ||
            isspace((unsigned char)s[len - 1]) || has_ctrl(s, false))
            return bad(a, f,
                       "must be 1 to %d bytes without control characters or leading or trailing "
                       "white space",
                       MAX_TAG_LEN);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(s, json_string_value(json_array_get(tags, j))))
                return bad(a, f, "duplicate tag \"%s\"", s);
    }
    AUTO_XPOBJ *o = xmlXPathNodeEval(a->root, BAD_CAST "metadata/hx:vm", a->xp);
    if (!o)
        return oom(a);
    xmlNode *vm = o->nodesetval && o->nodesetval->nodeNr ? o->nodesetval->nodeTab[0] : NULL;
    if (!vm) {
        static const char *const after[] = {"description", "title", "uuid", "name", NULL};
        xmlNode *md = ensure_child(a, a->root, "metadata", after);
        vm = md ? new_elem(a, "vm") : NULL;
        if (!vm)
            return a->rc;
        xmlNs *ns = xmlNewNs(vm, BAD_CAST HX_DOMXML_NS, BAD_CAST "horcrux");
        if (!ns) {
            xmlFreeNode(vm);
            return oom(a);
        }
        xmlSetNs(vm, ns);
        if (place(a, md, NULL, vm))
            return a->rc;
    }
    if (c_tags) {
        for (xmlNode *n = vm->children, *next; n; n = next) {
            next = n->next;
            if (local_is(n, "tags"))
                drop(a, n);
        }
        if (json_array_size(tags)) {
            xmlNode *t = xmlNewDocNode(a->doc, vm->ns, BAD_CAST "tags", NULL);
            if (!t)
                return oom(a);
            for (size_t i = 0; i < json_array_size(tags); i++)
                if (!xmlNewTextChild(t, vm->ns, BAD_CAST "tag",
                                     BAD_CAST json_string_value(json_array_get(tags, i)))) {
                    xmlFreeNode(t);
                    return oom(a);
                }
            if (place(a, vm, NULL, t))
                return a->rc;
        }
    }
    if (c_prot && set_flag(a, vm, "protected", prot))
        return a->rc;
    if (c_tmpl && set_flag(a, vm, "template", tmpl))
        return a->rc;
    return 0;
}

/* ---- entry points ------------------------------------------------------------------------ */

static char *dump_root(xmlDoc *doc, xmlNode *root)
{
    xmlBuffer *buf = xmlBufferCreate();
    if (!buf)
        return NULL;
    char *out = NULL;
    if (xmlNodeDump(buf, doc, root, 0, 0) >= 0) {
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

static int run(struct ap *a, const json_t *config)
{
    if (unknown_keys(a, "", config, hx_domxml_top_keys) || check_readonly(a, config) ||
        apply_description(a, config) || apply_memory(a, config) || apply_vcpus(a, config) ||
        apply_machine(a, config) || apply_firmware(a, config) || apply_disks(a, config) ||
        apply_nics(a, config) || apply_graphics(a, config) || apply_boot(a, config) ||
        apply_metadata(a, config))
        return a->rc ? a->rc : -EIO;
    return 0;
}

static const hx_domxml_env no_env;

int hx_domxml_apply(const char *xml, const json_t *config, const hx_domxml_env *env, char **out_xml,
                    json_t **new_volumes, char **err)
{
    *out_xml = NULL;
    *new_volumes = NULL;
    if (err)
        *err = NULL;
    struct ap a = {.env = env ? env : &no_env};
    AUTO_STR *perr = NULL;
    AUTO_JSON *cur = hx_domxml_to_config(xml, 0, NULL, NULL, &perr);
    AUTO_DOC *doc = NULL;
    AUTO_XPCTX *xp = NULL;
    AUTO_JSON *vols = json_array();
    if (!cur) {
        io_err(&a, perr ? perr : "out of memory");
    } else if (!json_is_object(config)) {
        bad(&a, "config.json", "must be a JSON object");
    } else if (!(doc = hx_domxml_parse(xml, &perr)) || !vols) {
        io_err(&a, perr ? perr : "out of memory");
    } else {
        a.doc = doc;
        a.root = xmlDocGetRootElement(doc);
        a.cur = cur;
        a.vols = vols;
        a.xp = xp = xmlXPathNewContext(doc);
        if (!xp || xmlXPathRegisterNs(xp, BAD_CAST "hx", BAD_CAST HX_DOMXML_NS))
            oom(&a);
        else
            run(&a, config);
    }
    free(a.disks.elem);
    free(a.disks.key);
    free(a.nics.elem);
    free(a.nics.key);
    if (!a.rc) {
        *out_xml = a.changed ? dump_root(doc, a.root) : strdup(xml);
        if (!*out_xml)
            oom(&a);
    }
    if (a.rc) {
        if (err)
            *err = a.err;
        else
            free(a.err);
        return a.rc;
    }
    *new_volumes = take(&vols);
    return 0;
}

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
    xmlNode *devices = root ? child(root, "devices") : NULL;
    for (xmlNode *n = devices ? devices->children : NULL; n; n = n->next) {
        if (!is_elem(n, which))
            continue;
        xmlNode *sub = child(n, !strcmp(which, "disk") ? "target" : "mac");
        AUTO_XSTR *v =
            sub ? xmlGetNoNsProp(sub, BAD_CAST(which[0] == 'd' ? "dev" : "address")) : NULL;
        bool match = v && (which[0] == 'd' ? !strcmp((const char *)v, key)
                                           : !strcasecmp((const char *)v, key));
        if (match)
            return dump_root(doc, n);
    }
    return NULL;
}

/* Length of the valid UTF-8 sequence at s, or 0 (overlong forms, surrogates and code points
   above U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (!n || s[0] > 0xf4)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return n;
}

static int name_err(char **err, const char *msg)
{
    if (err)
        *err = strdup(msg);
    return -EINVAL;
}

int hx_domxml_check_name(const char *name, char **err)
{
    if (err)
        *err = NULL;
    if (!name || !*name)
        return name_err(err, "name: must not be empty");
    if (strlen(name) > HX_DOMXML_NAME_MAX)
        return name_err(err, "name: must be at most 200 bytes");
    if (name[0] == '.')
        return name_err(err, "name: must not start with '.'");
    for (const unsigned char *p = (const unsigned char *)name; *p;) {
        if (*p == '/')
            return name_err(err, "name: must not contain '/'");
        if (*p < 0x20 || *p == 0x7f)
            return name_err(err, "name: must not contain control characters");
        size_t n = utf8_len(p);
        if (!n)
            return name_err(err, "name: must be valid UTF-8");
        p += n;
    }
    return 0;
}
