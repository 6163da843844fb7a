/* The bytes of config.json (hx_domxml_config_dump) and the schema's key order they follow,
   which hx_domxml_apply also uses to reject unknown keys. */
#include "hx_domxml.h"
#include "domxml_priv.h"

#include <string.h>

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
