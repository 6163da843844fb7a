/* config.json -> XML: the disks list (disks[]), with the checks of volume disks against the
   node's pools and volumes. */
#include "domxml_apply_priv.h"

#include <ctype.h>
#include <inttypes.h>
#include <string.h>

#define MAX_PATH_LEN 4096

static const char *const disk_buses[] = {"virtio", "sata", "scsi", "ide", "usb", "fdc", NULL};
static const char *const disk_devices[] = {"disk", "cdrom", "floppy", "lun", NULL};
static const char *const disk_stypes[] = {"file", "block", "volume", NULL};
static const char *const disk_formats[] = {"raw", "qcow2", "qcow", "qed", "vmdk",
                                           "vdi", "vpc",   "vhdx", "iso", NULL};

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

/* ---- volumes ----------------------------------------------------------------------------- */

static int split_volume(hx_dxa *a, const char *path, const char *src, char **pool, char **vol)
{
    const char *slash = strchr(src, '/');
    if (!slash || slash == src || !slash[1] || strchr(slash + 1, '/') ||
        hx_dxa_has_ctrl(src, false))
        return hx_dxa_bad(a, path, "must be \"<pool>/<volume>\" for a volume disk (got \"%s\")",
                          src);
    *pool = strndup(src, (size_t)(slash - src));
    *vol = strdup(slash + 1);
    return *pool && *vol ? 0 : hx_dxa_oom(a);
}

/* Checks the volume of a volume disk; adds it to a->vols when it is to be created. */
static int check_volume(hx_dxa *a, const char *path, const char *src, bool src_changed,
                        const json_t *size, const char *format)
{
    char f[160];
    snprintf(f, sizeof(f), "%s.source", path);
    AUTO_STR *pool = NULL;
    AUTO_STR *vol = NULL;
    if (split_volume(a, f, src, &pool, &vol))
        return a->rc;
    const hx_domxml_env *e = a->env;
    if (src_changed && hx_dxa_check_ref(a, f, e->pool_exists, "pool", pool))
        return a->rc;
    if (!e->volume_size || (!src_changed && json_is_null(size)))
        return 0;
    int64_t have = e->volume_size(pool, vol, e->opaque);
    if (have < -1)
        return hx_dxa_bad_at(a, path, "size_bytes", "cannot check the size of volume \"%s\"", src);
    if (have >= 0) {
        if (json_is_integer(size) && json_integer_value(size) != have)
            return hx_dxa_bad_at(
                a, path, "size_bytes",
                "resizing is not supported here (volume \"%s\" has %" PRId64 " bytes)", src, have);
        return 0;
    }
    if (!json_is_integer(size) || json_integer_value(size) <= 0)
        return hx_dxa_bad(a, f, "volume \"%s\" does not exist; give size_bytes to create it", src);
    json_t *v = json_pack("{s:s, s:s, s:I, s:s}", "pool", pool, "name", vol, "size_bytes",
                          json_integer_value(size), "format", format ? format : "raw");
    if (!v || json_array_append_new(a->vols, v))
        return hx_dxa_oom(a);
    return 0;
}

/* Builds a fresh <source> for the disk type, replacing the old one (NULL src: no source). */
static int disk_source(hx_dxa *a, xmlNode *disk, const char *stype, const char *src)
{
    xmlNode *old = hx_dxa_child(disk, "source");
    if (!src) {
        hx_dxa_drop(a, old);
        return 0;
    }
    xmlNode *s = hx_dxa_new_elem(a, "source");
    if (!s)
        return a->rc;
    if (!strcmp(stype, "volume")) {
        const char *slash = strchr(src, '/');
        AUTO_STR *pool = strndup(src, (size_t)(slash - src));
        if (!pool || hx_dxa_set_attr(a, s, "pool", pool) ||
            hx_dxa_set_attr(a, s, "volume", slash + 1)) {
            xmlFreeNode(s);
            return hx_dxa_oom(a);
        }
    } else if (hx_dxa_set_attr(a, s, strcmp(stype, "block") ? "file" : "dev", src)) {
        xmlFreeNode(s);
        return a->rc;
    }
    if (old) {
        hx_dxa_replace(a, old, s);
        return 0;
    }
    static const char *const after[] = {"driver", NULL};
    xmlNode *ref = hx_dxa_child(disk, after[0]);
    return hx_dxa_place(a, disk, ref, s);
}

/* ---- one disk ---------------------------------------------------------------------------- */

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
static int disk_one(hx_dxa *a, const char *path, const json_t *item, const json_t *cur,
                    xmlNode **elem)
{
    const char *target = json_string_value(json_object_get(item, "target"));
    char lt[128];
    bool c_dev, c_bus, c_st, c_src, c_fmt, c_ro, c_size;
    AUTO_JSON *d_bus = json_string(default_bus(target));
    AUTO_JSON *d_dev = json_string("disk");
    AUTO_JSON *d_st = json_string("file");
    AUTO_JSON *d_fmt = json_string("raw");
    json_t *dev = hx_dxa_field(a, path, item, cur, "device", T_STR, d_dev, &c_dev);
    json_t *bus = hx_dxa_field(a, path, item, cur, "bus", T_STR, d_bus, &c_bus);
    json_t *st = hx_dxa_field(a, path, item, cur, "source_type", T_STR, d_st, &c_st);
    json_t *src = hx_dxa_field(a, path, item, cur, "source", T_STR | T_NULL, NULL, &c_src);
    json_t *fmt = hx_dxa_field(a, path, item, cur, "format", T_STR | T_NULL, d_fmt, &c_fmt);
    const char *devs = json_string_value(dev);
    bool cdrom = devs && !strcmp(devs, "cdrom");
    json_t *ro = hx_dxa_field(a, path, item, cur, "readonly", T_BOOL,
                              cdrom ? json_true() : json_false(), &c_ro);
    json_t *size = hx_dxa_field(a, path, item, cur, "size_bytes", T_INT | T_NULL, NULL, &c_size);
    if (a->rc)
        return a->rc;
    const char *sts = json_string_value(st), *srcs = json_string_value(src);
    const char *fmts = json_string_value(fmt);
    if (c_dev && !hx_dxa_in_list(devs, disk_devices))
        return hx_dxa_bad_at(a, path, "device", "must be one of %s (got \"%s\")",
                             hx_dxa_list_text(disk_devices, lt, sizeof(lt)), devs);
    if (c_bus && !hx_dxa_in_list(json_string_value(bus), disk_buses))
        return hx_dxa_bad_at(a, path, "bus", "must be one of %s (got \"%s\")",
                             hx_dxa_list_text(disk_buses, lt, sizeof(lt)), json_string_value(bus));
    if (c_st && !hx_dxa_in_list(sts, disk_stypes))
        return hx_dxa_bad_at(a, path, "source_type",
                             "must be one of %s (got \"%s\"; other kinds can only be kept as they "
                             "are)",
                             hx_dxa_list_text(disk_stypes, lt, sizeof(lt)), sts);
    if ((c_src || c_st) && !hx_dxa_in_list(sts, disk_stypes))
        return hx_dxa_bad_at(a, path, "source", "cannot be changed for a %s disk", sts);
    if ((c_src || c_st || c_dev) && !srcs && strcmp(devs, "cdrom") && strcmp(devs, "floppy"))
        return hx_dxa_bad_at(a, path, "source",
                             "must be a string (only a cdrom or floppy drive can be empty)");
    if ((c_src || c_st) && srcs && strcmp(sts, "volume")) {
        if (srcs[0] != '/' || strlen(srcs) > MAX_PATH_LEN || hx_dxa_has_ctrl(srcs, false))
            return hx_dxa_bad_at(a, path, "source",
                                 "must be an absolute path for a %s disk (got \"%s\")", sts, srcs);
    }
    if (c_fmt && fmts && !hx_dxa_in_list(fmts, disk_formats))
        return hx_dxa_bad_at(a, path, "format", "must be one of %s or null (got \"%s\")",
                             hx_dxa_list_text(disk_formats, lt, sizeof(lt)), fmts);
    if ((c_ro || c_dev) && cdrom && !json_is_true(ro))
        return hx_dxa_bad_at(a, path, "readonly", "must be true for a cdrom");
    if (c_size && json_is_integer(size) && json_integer_value(size) < 0)
        return hx_dxa_bad_at(a, path, "size_bytes", "must be a non-negative integer or null");
    if (srcs && !strcmp(sts, "volume") && check_volume(a, path, srcs, c_src || c_st, size, fmts))
        return a->rc;

    xmlNode *disk = *elem;
    if (!disk) {
        disk = *elem = hx_dxa_new_elem(a, "disk");
        xmlNode *drv = disk ? xmlNewChild(disk, NULL, BAD_CAST "driver", NULL) : NULL;
        if (!drv || hx_dxa_set_attr(a, drv, "name", "qemu"))
            return hx_dxa_oom(a);
        c_dev = c_st = c_src = c_fmt = c_ro = c_bus = true;
    }
    if (c_st && hx_dxa_set_attr(a, disk, "type", sts))
        return a->rc;
    if (c_dev && hx_dxa_set_attr(a, disk, "device", devs))
        return a->rc;
    if (c_fmt) {
        xmlNode *drv = hx_dxa_child(disk, "driver");
        if (!drv && fmts) {
            drv = hx_dxa_new_elem(a, "driver");
            if (!drv || hx_dxa_set_attr(a, drv, "name", "qemu"))
                return a->rc;
            if (!disk->children || !xmlAddPrevSibling(disk->children, drv))
                xmlAddChild(disk, drv);
        }
        if (drv && hx_dxa_set_attr(a, drv, "type", fmts))
            return a->rc;
    }
    if ((c_src || c_st) && disk_source(a, disk, sts, srcs))
        return a->rc;
    if (c_bus || !hx_dxa_child(disk, "target")) {
        static const char *const after[] = {"source", "driver", NULL};
        xmlNode *t = hx_dxa_ensure_child(a, disk, "target", after);
        if (!t || hx_dxa_set_attr(a, t, "dev", target) ||
            hx_dxa_set_attr(a, t, "bus", json_string_value(bus)))
            return a->rc;
    }
    if (c_ro || c_dev) {
        /* libvirt makes a cdrom read-only by itself: no element needed, an existing one kept. */
        xmlNode *r = hx_dxa_child(disk, "readonly");
        static const char *const after[] = {"target", NULL};
        if (json_is_true(ro) && !r && !cdrom && !hx_dxa_ensure_child(a, disk, "readonly", after))
            return a->rc;
        if (!json_is_true(ro) && r)
            hx_dxa_drop(a, r);
    }
    return 0;
}

/* ---- the list ---------------------------------------------------------------------------- */

static int disk_key(hx_dxa *a, const char *field, const json_t *v, const char **key)
{
    *key = json_string_value(v);
    if (*key)
        return 0;
    return hx_dxa_bad(a, field, "must be a string (the disk's target device, e.g. \"vda\")");
}

static int disk_new(hx_dxa *a, const char *field, const char *key)
{
    if (is_target(key))
        return 0;
    return hx_dxa_bad(a, field,
                      "must be hd, sd or vd followed by 1 to 3 letters, or fd0 to fd9 (got \"%s\")",
                      key);
}

/* New disks go after the last disk, or, with none, before the first interface or at the end. */
static xmlNode *disk_first_ref(hx_dxa *a, xmlNode *devices)
{
    (void)a;
    xmlNode *emu = hx_dxa_child(devices, "emulator");
    return emu ? emu : hx_dxa_last_elem(devices);
}

static const hx_dxa_list_ops ops = {
    .read_key = disk_key, .check_new = disk_new, .one = disk_one, .first_ref = disk_first_ref};

int hx_dxa_apply_disks(hx_dxa *a, const json_t *config)
{
    return hx_dxa_apply_list(a, config, HX_DXA_DISKS, &ops, &a->disks);
}
