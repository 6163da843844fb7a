/* XML -> config.json: the device sections (disks, nics, graphics) and the boot order, which
   names those devices. */
#include "hx_domxml.h"
#include "domxml_priv.h"

#include <string.h>

/* ---- devices ----------------------------------------------------------------------------- */

/* json_pack of fmt, or NULL: when an error is already recorded, or after recording
   "<kind> <name>: <jansson's reason>". */
static json_t *pack(hx_dxr *c, const char *kind, const char *name, const char *fmt, ...)
{
    if (c->msg)
        return NULL;
    json_error_t jerr;
    va_list ap;
    va_start(ap, fmt);
    json_t *j = json_vpack_ex(&jerr, 0, fmt, ap);
    va_end(ap);
    if (!j)
        hx_dxr_fail(c, "%s %s: %s", kind, name, jerr.text);
    return j;
}

static char *disk_source(hx_dxr *c, xmlNode *disk, const char *type)
{
    xmlNode *src = hx_dxr_node(c, disk, "source");
    if (!src) /* an empty cdrom or floppy drive */
        return NULL;
    if (!strcmp(type, "file"))
        return hx_dxr_str(c, src, "@file");
    if (!strcmp(type, "block"))
        return hx_dxr_str(c, src, "@dev");
    if (!strcmp(type, "dir"))
        return hx_dxr_str(c, src, "@dir");
    if (!strcmp(type, "network")) /* e.g. rbd "pool/image", iscsi "iqn.../lun" */
        return hx_dxr_str(c, src, "@name");
    if (!strcmp(type, "volume")) {
        AUTO_STR *pool = hx_dxr_str(c, src, "@pool");
        AUTO_STR *vol = hx_dxr_str(c, src, "@volume");
        char *s = NULL;
        if (pool && vol && asprintf(&s, "%s/%s", pool, vol) < 0)
            return hx_dxr_oom(c);
        return s;
    }
    return NULL; /* nvme, vhostuser: no single source string */
}

static json_t *read_disk(hx_dxr *c, xmlNode *disk, const char *target)
{
    AUTO_STR *bus = hx_dxr_str(c, disk, "target/@bus");
    AUTO_STR *device = hx_dxr_str(c, disk, "@device");
    AUTO_STR *type = hx_dxr_str(c, disk, "@type");
    AUTO_STR *format = hx_dxr_str(c, disk, "driver/@type");
    /* libvirt defaults both attributes when parsing, so they only lack in hand-written XML. */
    const char *dev = device ? device : "disk";
    const char *stype = type ? type : "file";
    AUTO_STR *source = disk_source(c, disk, stype);
    /* libvirt forces cdroms read-only whether or not <readonly/> is present. */
    bool readonly = !strcmp(dev, "cdrom") || hx_dxr_node(c, disk, "readonly");
    int64_t size = c->size_fn && source ? c->size_fn(source, c->opaque) : -1;
    AUTO_JSON *size_j = size >= 0 ? json_integer(size) : NULL;
    return pack(c, "disk", target, "{s:s, s:s?, s:s, s:s?, s:s, s:s?, s:b, s:O?}", "target", target,
                "bus", bus, "device", dev, "source", source, "source_type", stype, "format", format,
                "readonly", readonly, "size_bytes", size_j);
}

static json_t *read_nic(hx_dxr *c, xmlNode *nic, const char *mac)
{
    AUTO_STR *type = hx_dxr_str(c, nic, "@type");
    AUTO_STR *network = hx_dxr_str(c, nic, "source/@network");
    AUTO_STR *bridge = hx_dxr_str(c, nic, "source/@bridge");
    AUTO_STR *model = hx_dxr_str(c, nic, "model/@type");
    return pack(c, "interface", mac, "{s:s, s:s?, s:s?, s:s?, s:s?}", "mac", mac, "type", type,
                "network", network, "bridge", bridge, "model", model);
}

static json_t *read_graphics(hx_dxr *c, xmlNode *gfx, const char *key)
{
    (void)key;
    AUTO_STR *type = hx_dxr_str(c, gfx, "@type");
    long long port;
    /* Inactive XML with autoport='yes' carries port='-1'; the live XML has the real port. */
    AUTO_JSON *port_j =
        hx_dxr_int(c, gfx, "@port", "graphics port", &port) ? json_integer(port) : NULL;
    /* libvirt writes both the legacy listen attribute and <listen> children; a socket listen
       (VNC on a UNIX socket) has only the child. */
    AUTO_STR *listen = hx_dxr_str(c, gfx, "@listen");
    if (!listen)
        listen = hx_dxr_str(c, gfx, "listen/@address");
    if (!listen)
        listen = hx_dxr_str(c, gfx, "listen/@socket");
    return pack(c, "graphics", type ? type : "device", "{s:s?, s:O?, s:s?}", "type", type, "port",
                port_j, "listen", listen);
}

/* A device list: the elements expr selects, each read by fn, with the key (keyexpr, NULL for
   none) it must have; "<what> <n> has no <missing>" when it has not. */
struct list {
    const char *expr, *keyexpr, *what, *missing;
    json_t *(*fn)(hx_dxr *c, xmlNode *node, const char *key);
};

static const struct list disks = {"devices/disk", "target/@dev", "disk", "target device",
                                  read_disk};
/* libvirt generates a MAC on define, so only hand-written XML lacks one. */
static const struct list nics = {"devices/interface", "mac/@address", "interface", "MAC address",
                                 read_nic};
static const struct list graphics = {"devices/graphics", NULL, NULL, NULL, read_graphics};

static json_t *read_list(hx_dxr *c, xmlNode *root, const struct list *l)
{
    AUTO_XPOBJ *o = hx_dxr_eval(c, root, l->expr);
    AUTO_JSON *list = json_array();
    if (!o || !list)
        return hx_dxr_oom(c);
    for (int i = 0; i < hx_dxr_count(o); i++) {
        xmlNode *node = o->nodesetval->nodeTab[i];
        AUTO_STR *key = l->keyexpr ? hx_dxr_str(c, node, l->keyexpr) : NULL;
        if (l->keyexpr && !key) {
            hx_dxr_fail(c, "%s %d has no %s", l->what, i + 1, l->missing);
            return NULL;
        }
        json_t *item = l->fn(c, node, key);
        if (!item || json_array_append_new(list, item))
            return hx_dxr_oom(c);
    }
    return take(&list);
}

json_t *hx_dxr_read_disks(hx_dxr *c, xmlNode *root)
{
    return read_list(c, root, &disks);
}

json_t *hx_dxr_read_nics(hx_dxr *c, xmlNode *root)
{
    return read_list(c, root, &nics);
}

json_t *hx_dxr_read_graphics(hx_dxr *c, xmlNode *root)
{
    return read_list(c, root, &graphics);
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

static json_t *boot_label(hx_dxr *c, xmlNode *dev)
{
    if (xmlStrEqual(dev->name, BAD_CAST "disk")) {
        AUTO_STR *target = hx_dxr_str(c, dev, "target/@dev");
        return target ? json_string(target) : NULL;
    }
    AUTO_STR *mac = hx_dxr_str(c, dev, "mac/@address");
    return mac ? json_sprintf("net:%s", mac) : NULL;
}

json_t *hx_dxr_read_boot(hx_dxr *c, xmlNode *root)
{
    AUTO_JSON *boot = json_array();
    AUTO_XPOBJ *devs = hx_dxr_eval(c, root, "os/boot/@dev");
    if (!boot || !devs)
        return hx_dxr_oom(c);
    for (int i = 0; i < hx_dxr_count(devs); i++) {
        AUTO_STR *dev = hx_dxr_text(c, devs->nodesetval->nodeTab[i]);
        if (!dev || json_array_append_new(boot, json_string(dev)))
            return hx_dxr_oom(c);
    }
    if (hx_dxr_count(devs))
        return take(&boot);

    /* libvirt rejects <os><boot> together with per-device <boot order>, so this is the other
       way. Only disks and interfaces are listed; hostdev/redirdev boot entries are skipped. */
    AUTO_XPOBJ *per =
        hx_dxr_eval(c, root, "devices/disk[boot/@order] | devices/interface[boot/@order]");
    int n = hx_dxr_count(per);
    AUTO_MEM struct boot_ent *ents = calloc(n ? n : 1, sizeof(*ents));
    if (!per || !ents)
        return hx_dxr_oom(c);
    for (int i = 0; i < n; i++) {
        ents[i] = (struct boot_ent){.pos = i, .dev = per->nodesetval->nodeTab[i]};
        if (!hx_dxr_int(c, ents[i].dev, "boot/@order", "boot order", &ents[i].order))
            return NULL;
    }
    qsort(ents, n, sizeof(*ents), boot_cmp);
    for (int i = 0; i < n; i++) {
        json_t *label = boot_label(c, ents[i].dev);
        if (!label || json_array_append_new(boot, label))
            return hx_dxr_oom(c);
    }
    return take(&boot);
}
