/* Converts libvirt domain XML to Horcrux's config.json (schema: docs/config-json.md). */
#include "hx_domxml.h"
#include "domxml_priv.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- conversion state and errors --------------------------------------------------------- */

struct conv {
    xmlXPathContext *xp;
    const char *name; /* domain name for messages, NULL until known */
    char *msg;        /* the first error; later ones are dropped so each is reported once */
    hx_domxml_size_fn size_fn;
    void *opaque;
};

__attribute__((format(printf, 2, 3))) static void fail(struct conv *c, const char *fmt, ...)
{
    if (c->msg)
        return;
    char *what = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&what, fmt, ap) < 0)
        what = NULL;
    va_end(ap);
    const char *text = what ? what : "out of memory";
    int n = c->name ? asprintf(&c->msg, "domain %s: %s", c->name, text)
                    : asprintf(&c->msg, "domain XML: %s", text);
    if (n < 0)
        c->msg = strdup("out of memory"); /* best effort; NULL is handled by the caller */
    free(what);
}

static void *oom(struct conv *c)
{
    fail(c, "out of memory");
    return NULL;
}

/* ---- XPath and text helpers -------------------------------------------------------------- */

static int count(const xmlXPathObject *o)
{
    return o && o->nodesetval ? o->nodesetval->nodeNr : 0;
}

static xmlXPathObject *xp_eval(struct conv *c, xmlNode *node, const char *expr)
{
    xmlXPathObject *o = xmlXPathNodeEval(node, BAD_CAST expr, c->xp);
    if (!o)
        fail(c, "cannot evaluate XPath %s", expr);
    return o;
}

/* First node matching expr relative to node (owned by the document), or NULL. */
static xmlNode *xp_node(struct conv *c, xmlNode *node, const char *expr)
{
    AUTO_XPOBJ *o = xp_eval(c, node, expr);
    return count(o) ? o->nodesetval->nodeTab[0] : NULL;
}

/* Text content of node (an attribute's value), malloc'd; NULL when node is NULL. */
static char *node_text(struct conv *c, xmlNode *node)
{
    if (!node)
        return NULL;
    xmlChar *x = xmlNodeGetContent(node);
    char *s = x ? strdup((const char *)x) : NULL;
    xmlFree(x);
    return s ? s : oom(c);
}

/* Text of the first node matching expr, malloc'd; NULL when nothing matches. */
static char *xp_str(struct conv *c, xmlNode *node, const char *expr)
{
    return node_text(c, xp_node(c, node, expr));
}

/* Strips leading and trailing white space in place. */
static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Reads the integer at expr into *out; false when absent or malformed (the latter reported). */
static bool xp_int(struct conv *c, xmlNode *node, const char *expr, const char *what,
                   long long *out)
{
    AUTO_STR *s = xp_str(c, node, expr);
    if (!s)
        return false;
    char *t = trim(s), *end = NULL;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    if (errno || end == t || *end) {
        fail(c, "%s '%s' is not an integer", what, t);
        return false;
    }
    *out = v;
    return true;
}

/* ---- scalars ----------------------------------------------------------------------------- */

/* Bytes per unit as libvirt's virScaleInteger reads them (case-insensitive): "b", "byte",
   "bytes"; a letter k/m/g/t/p/e alone or followed by "iB" for powers of 1024, or followed by "B"
   for powers of 1000. No unit means KiB for memory elements. 0 for an unknown unit. */
static uint64_t unit_scale(const char *unit)
{
    static const char letters[] = "kmgtpe";
    if (!unit || !*unit)
        return 1024;
    if (!strcasecmp(unit, "b") || !strcasecmp(unit, "byte") || !strcasecmp(unit, "bytes"))
        return 1;
    uint64_t base;
    if (!unit[1] || !strcasecmp(unit + 1, "iB"))
        base = 1024;
    else if (tolower((unsigned char)unit[1]) == 'b' && !unit[2])
        base = 1000;
    else
        return 0;
    const char *p = strchr(letters, tolower((unsigned char)unit[0]));
    if (!p)
        return 0;
    uint64_t scale = base;
    for (const char *q = letters; q < p; q++)
        scale *= base;
    return scale;
}

/* MiB (rounded down) in the memory element `elem`; -1 when absent or on error (reported). */
static int64_t read_mib(struct conv *c, xmlNode *root, const char *elem)
{
    xmlNode *node = xp_node(c, root, elem);
    long long value;
    if (!node || !xp_int(c, node, ".", elem, &value))
        return -1;
    AUTO_STR *unit = xp_str(c, node, "@unit");
    uint64_t scale = unit_scale(unit);
    if (!scale) {
        fail(c, "%s unit '%s' is unknown", elem, unit);
        return -1;
    }
    if (value < 0) {
        fail(c, "%s %lld is negative", elem, value);
        return -1;
    }
    /* value < 2^63 and scale <= 2^60, so the product fits in 128 bits. */
    unsigned __int128 mib = ((unsigned __int128)value * scale) >> 20;
    if (mib > INT64_MAX) {
        fail(c, "%s %lld %s is too large", elem, value, unit ? unit : "KiB");
        return -1;
    }
    return (int64_t)mib;
}

static const char *read_firmware(struct conv *c, xmlNode *root)
{
    /* With firmware autoselection libvirt 9.0 keeps <os firmware='efi'> in both the inactive
       and the live XML. A manually configured UEFI guest has only a <loader>, which for OVMF
       and AAVMF is type='pflash' readonly='yes'; SeaBIOS needs no loader element. */
    AUTO_STR *fw = xp_str(c, root, "os/@firmware");
    if (fw)
        return strcmp(fw, "efi") ? "bios" : "uefi";
    return xp_node(c, root, "os/loader[@type='pflash' or @readonly='yes']") ? "uefi" : "bios";
}

/* ---- devices ----------------------------------------------------------------------------- */

static char *disk_source(struct conv *c, xmlNode *disk, const char *type)
{
    xmlNode *src = xp_node(c, disk, "source");
    if (!src) /* an empty cdrom or floppy drive */
        return NULL;
    if (!strcmp(type, "file"))
        return xp_str(c, src, "@file");
    if (!strcmp(type, "block"))
        return xp_str(c, src, "@dev");
    if (!strcmp(type, "dir"))
        return xp_str(c, src, "@dir");
    if (!strcmp(type, "network")) /* e.g. rbd "pool/image", iscsi "iqn.../lun" */
        return xp_str(c, src, "@name");
    if (!strcmp(type, "volume")) {
        AUTO_STR *pool = xp_str(c, src, "@pool");
        AUTO_STR *vol = xp_str(c, src, "@volume");
        char *s = NULL;
        if (pool && vol && asprintf(&s, "%s/%s", pool, vol) < 0)
            return oom(c);
        return s;
    }
    return NULL; /* nvme, vhostuser: no single source string */
}

static json_t *read_disk(struct conv *c, xmlNode *disk, int index)
{
    AUTO_STR *target = xp_str(c, disk, "target/@dev");
    if (!target) {
        fail(c, "disk %d has no target device", index + 1);
        return NULL;
    }
    AUTO_STR *bus = xp_str(c, disk, "target/@bus");
    AUTO_STR *device = xp_str(c, disk, "@device");
    AUTO_STR *type = xp_str(c, disk, "@type");
    AUTO_STR *format = xp_str(c, disk, "driver/@type");
    /* libvirt defaults both attributes when parsing, so they only lack in hand-written XML. */
    const char *dev = device ? device : "disk";
    const char *stype = type ? type : "file";
    AUTO_STR *source = disk_source(c, disk, stype);
    /* libvirt forces cdroms read-only whether or not <readonly/> is present. */
    bool readonly = !strcmp(dev, "cdrom") || xp_node(c, disk, "readonly");
    int64_t size = c->size_fn && source ? c->size_fn(source, c->opaque) : -1;
    if (c->msg)
        return NULL;
    AUTO_JSON *size_j = size >= 0 ? json_integer(size) : NULL;
    json_error_t jerr;
    json_t *j = json_pack_ex(&jerr, 0, "{s:s, s:s?, s:s, s:s?, s:s, s:s?, s:b, s:O?}", "target",
                             target, "bus", bus, "device", dev, "source", source, "source_type",
                             stype, "format", format, "readonly", readonly, "size_bytes", size_j);
    if (!j)
        fail(c, "disk %s: %s", target, jerr.text);
    return j;
}

static json_t *read_nic(struct conv *c, xmlNode *nic, int index)
{
    AUTO_STR *mac = xp_str(c, nic, "mac/@address");
    if (!mac) { /* libvirt generates one on define, so only hand-written XML lacks it */
        fail(c, "interface %d has no MAC address", index + 1);
        return NULL;
    }
    AUTO_STR *type = xp_str(c, nic, "@type");
    AUTO_STR *network = xp_str(c, nic, "source/@network");
    AUTO_STR *bridge = xp_str(c, nic, "source/@bridge");
    AUTO_STR *model = xp_str(c, nic, "model/@type");
    if (c->msg)
        return NULL;
    json_error_t jerr;
    json_t *j = json_pack_ex(&jerr, 0, "{s:s, s:s?, s:s?, s:s?, s:s?}", "mac", mac, "type", type,
                             "network", network, "bridge", bridge, "model", model);
    if (!j)
        fail(c, "interface %s: %s", mac, jerr.text);
    return j;
}

static json_t *read_graphics(struct conv *c, xmlNode *gfx, int index)
{
    (void)index;
    AUTO_STR *type = xp_str(c, gfx, "@type");
    long long port;
    /* Inactive XML with autoport='yes' carries port='-1'; the live XML has the real port. */
    AUTO_JSON *port_j = xp_int(c, gfx, "@port", "graphics port", &port) ? json_integer(port) : NULL;
    /* libvirt writes both the legacy listen attribute and <listen> children; a socket listen
       (VNC on a UNIX socket) has only the child. */
    AUTO_STR *listen = xp_str(c, gfx, "@listen");
    if (!listen)
        listen = xp_str(c, gfx, "listen/@address");
    if (!listen)
        listen = xp_str(c, gfx, "listen/@socket");
    if (c->msg)
        return NULL;
    json_error_t jerr;
    json_t *j = json_pack_ex(&jerr, 0, "{s:s?, s:O?, s:s?}", "type", type, "port", port_j, "listen",
                             listen);
    if (!j)
        fail(c, "graphics %s: %s", type ? type : "device", jerr.text);
    return j;
}

typedef json_t *(*item_fn)(struct conv *c, xmlNode *node, int index);

static json_t *read_list(struct conv *c, xmlNode *root, const char *expr, item_fn fn)
{
    AUTO_XPOBJ *o = xp_eval(c, root, expr);
    AUTO_JSON *list = json_array();
    if (!o || !list)
        return oom(c);
    for (int i = 0; i < count(o); i++) {
        json_t *item = fn(c, o->nodesetval->nodeTab[i], i);
        if (!item || json_array_append_new(list, item))
            return oom(c);
    }
    return take(&list);
}

/* ---- boot order -------------------------------------------------------------------------- */

struct boot_ent {
    long long order;
    int pos;
    xmlNode *dev;
};

static int boot_cmp(const void *a, const void *b)
{
    const struct boot_ent *x = a, *y = b;
    if (x->order != y->order)
        return x->order < y->order ? -1 : 1;
    return x->pos - y->pos;
}

static json_t *boot_label(struct conv *c, xmlNode *dev)
{
    if (xmlStrEqual(dev->name, BAD_CAST "disk")) {
        AUTO_STR *target = xp_str(c, dev, "target/@dev");
        return target ? json_string(target) : NULL;
    }
    AUTO_STR *mac = xp_str(c, dev, "mac/@address");
    return mac ? json_sprintf("net:%s", mac) : NULL;
}

/* Runs after the disks and nics were read, so every device here has a target or a MAC. */
static json_t *read_boot(struct conv *c, xmlNode *root)
{
    AUTO_JSON *boot = json_array();
    AUTO_XPOBJ *devs = xp_eval(c, root, "os/boot/@dev");
    if (!boot || !devs)
        return oom(c);
    for (int i = 0; i < count(devs); i++) {
        AUTO_STR *dev = node_text(c, devs->nodesetval->nodeTab[i]);
        if (!dev || json_array_append_new(boot, json_string(dev)))
            return oom(c);
    }
    if (count(devs))
        return take(&boot);

    /* libvirt rejects <os><boot> together with per-device <boot order>, so this is the other
       way. Only disks and interfaces are listed; hostdev/redirdev boot entries are skipped. */
    AUTO_XPOBJ *per =
        xp_eval(c, root, "devices/disk[boot/@order] | devices/interface[boot/@order]");
    int n = count(per);
    AUTO_MEM struct boot_ent *ents = calloc(n ? n : 1, sizeof(*ents));
    if (!per || !ents)
        return oom(c);
    for (int i = 0; i < n; i++) {
        ents[i] = (struct boot_ent){.pos = i, .dev = per->nodesetval->nodeTab[i]};
        if (!xp_int(c, ents[i].dev, "boot/@order", "boot order", &ents[i].order))
            return NULL;
    }
    qsort(ents, n, sizeof(*ents), boot_cmp);
    for (int i = 0; i < n; i++) {
        json_t *label = boot_label(c, ents[i].dev);
        if (!label || json_array_append_new(boot, label))
            return oom(c);
    }
    return take(&boot);
}

/* ---- Horcrux metadata -------------------------------------------------------------------- */

/* Children of <horcrux:vm> are matched by local name only: virDomainSetMetadata puts every
   descendant in the namespace (<horcrux:tags>), but XML given to virDomainDefineXML is stored as
   written, where the children are often unprefixed and so in no namespace. */
static json_t *read_tags(struct conv *c, xmlNode *vm)
{
    AUTO_JSON *tags = json_array();
    AUTO_XPOBJ *o = vm ? xp_eval(c, vm, "*[local-name()='tags']/*[local-name()='tag']") : NULL;
    if (!tags || (vm && !o))
        return oom(c);
    for (int i = 0; i < count(o); i++) {
        AUTO_STR *tag = node_text(c, o->nodesetval->nodeTab[i]);
        if (!tag)
            return NULL;
        const char *t = trim(tag);
        if (*t && json_array_append_new(tags, json_string(t)))
            return oom(c);
    }
    return take(&tags);
}

/* A boolean child of <horcrux:vm> (protected, template); false when absent. */
static bool read_flag(struct conv *c, xmlNode *vm, const char *name)
{
    char xp[64];
    snprintf(xp, sizeof(xp), "*[local-name()='%s']", name);
    AUTO_STR *s = vm ? xp_str(c, vm, xp) : NULL;
    if (!s)
        return false;
    const char *t = trim(s);
    if (!strcmp(t, "true") || !strcmp(t, "1"))
        return true;
    if (!strcmp(t, "false") || !strcmp(t, "0") || !*t)
        return false;
    fail(c, "metadata %s value '%s' is not true or false", name, t);
    return false;
}

/* ---- entry points ------------------------------------------------------------------------ */

/* SAX hook for "<!DOCTYPE": stops the parser before it reads any entity declaration. */
static void on_doctype(void *ctx, const xmlChar *name, const xmlChar *ext, const xmlChar *sys)
{
    (void)name, (void)ext, (void)sys;
    xmlParserCtxt *pctx = ctx;
    pctx->_private = pctx; /* any non-NULL marker */
    xmlStopParser(pctx);
}

static xmlDoc *parse(struct conv *c, const char *xml)
{
    size_t len = strlen(xml);
    if (len > INT_MAX) {
        fail(c, "document is too large");
        return NULL;
    }
    AUTO_PARSER *pctx = xmlNewParserCtxt();
    if (!pctx)
        return oom(c);
    /* The XML can come from any libvirtd: no network, no DTD loading, no XML_PARSE_NOENT (so no
       entity substitution), and since libvirt never writes a DOCTYPE, parsing stops at one, before
       any entity is declared. */
    pctx->sax->internalSubset = on_doctype;
    xmlDoc *doc = xmlCtxtReadMemory(pctx, xml, (int)len, "domain.xml", NULL,
                                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (pctx->_private) {
        xmlFreeDoc(doc);
        fail(c, "a DOCTYPE is not allowed");
        return NULL;
    }
    if (!doc) {
        const xmlError *e = xmlCtxtGetLastError(pctx);
        const char *m = e && e->message ? e->message : "parse error";
        int mlen = (int)strcspn(m, "\n");
        fail(c, "not well-formed XML (line %d: %.*s)", e ? e->line : 0, mlen, m);
        return NULL;
    }
    return doc;
}

static json_t *convert(struct conv *c, const char *xml, int autostart)
{
    if (!xml) {
        fail(c, "no document");
        return NULL;
    }
    AUTO_DOC *doc = parse(c, xml);
    if (!doc)
        return NULL;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || !xmlStrEqual(root->name, BAD_CAST "domain")) {
        fail(c, "root element is <%s>, not <domain>", root ? (const char *)root->name : "");
        return NULL;
    }
    if (root->ns) { /* libvirt's <domain> is in no namespace */
        fail(c, "root element <domain> is in namespace %s", (const char *)root->ns->href);
        return NULL;
    }
    AUTO_XPCTX *xp = xmlXPathNewContext(doc);
    if (!xp || xmlXPathRegisterNs(xp, BAD_CAST "hx", BAD_CAST HX_DOMXML_NS))
        return oom(c);
    c->xp = xp;

    AUTO_STR *name = xp_str(c, root, "name");
    if (!name || !*name) {
        fail(c, "no <name>");
        return NULL;
    }
    c->name = name;

    AUTO_STR *uuid = xp_str(c, root, "uuid");
    AUTO_STR *desc = xp_str(c, root, "description");
    AUTO_STR *type = xp_str(c, root, "@type");
    AUTO_STR *machine = xp_str(c, root, "os/type/@machine");
    AUTO_STR *arch = xp_str(c, root, "os/type/@arch");

    /* Without <vcpu> libvirt defaults to one vCPU; current= defaults to the maximum. */
    long long max_vcpus = 1, vcpus;
    xp_int(c, root, "vcpu", "vcpu count", &max_vcpus);
    if (!xp_int(c, root, "vcpu/@current", "current vcpu count", &vcpus))
        vcpus = max_vcpus;

    /* <currentMemory> defaults to <memory> (libvirt always writes both). */
    int64_t max_mem = read_mib(c, root, "memory");
    int64_t mem = read_mib(c, root, "currentMemory");
    if (mem < 0)
        mem = max_mem;
    AUTO_JSON *mem_j = mem >= 0 ? json_integer(mem) : NULL;
    AUTO_JSON *max_mem_j = max_mem >= 0 ? json_integer(max_mem) : NULL;

    const char *firmware = read_firmware(c, root);
    AUTO_JSON *disks = read_list(c, root, "devices/disk", read_disk);
    AUTO_JSON *nics = read_list(c, root, "devices/interface", read_nic);
    AUTO_JSON *graphics = read_list(c, root, "devices/graphics", read_graphics);
    AUTO_JSON *boot = c->msg ? NULL : read_boot(c, root);
    xmlNode *vm = xp_node(c, root, "metadata/hx:vm");
    AUTO_JSON *tags = read_tags(c, vm);
    bool protect = read_flag(c, vm, "protected");
    bool template = read_flag(c, vm, "template");
    if (c->msg)
        return NULL;

    json_error_t jerr;
    json_t *config = json_pack_ex(
        &jerr, 0,
        "{s:s, s:s?, s:s, s:s?, s:I, s:I, s:O?, s:O?, s:s?, s:s?, s:s, s:O, s:b, s:O, s:O, s:O,"
        " s:O, s:b, s:b}",
        "name", name, "uuid", uuid, "description", desc ? desc : "", "type", type, "vcpus",
        (json_int_t)vcpus, "max_vcpus", (json_int_t)max_vcpus, "memory_mib", mem_j,
        "max_memory_mib", max_mem_j, "machine", machine, "arch", arch, "firmware", firmware, "boot",
        boot, "autostart", autostart != 0, "disks", disks, "nics", nics, "graphics", graphics,
        "tags", tags, "protected", protect, "template", template);
    if (!config)
        fail(c, "cannot build config.json (%s)", jerr.text);
    return config;
}

xmlDoc *hx_domxml_parse(const char *xml, char **err)
{
    struct conv c = {0};
    xmlDoc *doc = xml ? parse(&c, xml) : NULL;
    if (!xml)
        fail(&c, "no document");
    if (doc)
        free(c.msg);
    else
        *err = c.msg;
    return doc;
}

json_t *hx_domxml_to_config(const char *xml, int autostart, hx_domxml_size_fn size_fn, void *opaque,
                            char **err)
{
    struct conv c = {.size_fn = size_fn, .opaque = opaque};
    json_t *config = convert(&c, xml, autostart);
    if (config) /* a failure after a value was built cannot happen, but never leak one */
        free(c.msg);
    else if (err)
        *err = c.msg;
    else
        free(c.msg);
    return config;
}

/* ---- dump -------------------------------------------------------------------------------- */

const char *const hx_domxml_top_keys[] = {
    "name",           "uuid",     "description", "type",      "vcpus",    "max_vcpus", "memory_mib",
    "max_memory_mib", "machine",  "arch",        "firmware",  "boot",     "autostart", "disks",
    "nics",           "graphics", "tags",        "protected", "template", NULL};
const char *const hx_domxml_disk_keys[] = {
    "target", "bus", "device", "source", "source_type", "format", "readonly", "size_bytes", NULL};
const char *const hx_domxml_nic_keys[] = {"mac", "type", "network", "bridge", "model", NULL};
const char *const hx_domxml_graphics_keys[] = {"type", "port", "listen", NULL};

static const char *const *item_keys(const char *key)
{
    if (!strcmp(key, "disks"))
        return hx_domxml_disk_keys;
    if (!strcmp(key, "nics"))
        return hx_domxml_nic_keys;
    if (!strcmp(key, "graphics"))
        return hx_domxml_graphics_keys;
    return NULL;
}

static json_t *ordered(const json_t *obj, const char *const *keys);

/* A copy of an array whose objects have their keys in `keys` order. */
static json_t *ordered_array(const json_t *arr, const char *const *keys)
{
    AUTO_JSON *out = json_array();
    if (!out)
        return NULL;
    size_t i;
    json_t *v;
    json_array_foreach (arr, i, v) {
        json_t *item = json_is_object(v) ? ordered(v, keys) : json_incref(v);
        if (!item || json_array_append_new(out, item))
            return NULL;
    }
    return take(&out);
}

/* A shallow copy of obj with the schema keys first, in schema order, then any others. At the
   top level (keys == hx_domxml_top_keys) the device arrays are reordered too. */
static json_t *ordered(const json_t *obj, const char *const *keys)
{
    AUTO_JSON *out = json_object();
    if (!out)
        return NULL;
    for (const char *const *k = keys; *k; k++) {
        json_t *v = json_object_get(obj, *k);
        const char *const *sub = keys == hx_domxml_top_keys ? item_keys(*k) : NULL;
        json_t *copy = !v ? NULL : sub && json_is_array(v) ? ordered_array(v, sub) : json_incref(v);
        if (v && (!copy || json_object_set_new(out, *k, copy)))
            return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach ((json_t *)obj, k, v) {
        if (!json_object_get(out, k) && json_object_set(out, k, v))
            return NULL;
    }
    return take(&out);
}

char *hx_domxml_config_dump(const json_t *config)
{
    if (!json_is_object(config))
        return NULL;
    AUTO_JSON *copy = ordered(config, hx_domxml_top_keys);
    if (!copy)
        return NULL;
    /* jansson keeps insertion order; JSON_PRESERVE_ORDER documents the intent. */
    char *text = json_dumps(copy, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *out = realloc(text, n + 2);
    if (!out) {
        free(text);
        return NULL;
    }
    out[n] = '\n';
    out[n + 1] = '\0';
    return out;
}
