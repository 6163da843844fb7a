/* config.json -> XML: writing one device list (disks, nics, graphics): matching items with the
   current elements, dropping the others and putting the elements in config order. */
#include "domxml_apply_priv.h"

#include <string.h>
#include <strings.h>

/* ---- the lists --------------------------------------------------------------------------- */

struct list_kind {
    const char *name;        /* config.json key and message prefix: "disks" */
    const char *xpath;       /* the elements, relative to <domain> */
    const char *keyexpr;     /* an element's key, kept when the list is not written (NULL: not) */
    const char *key;         /* the item field that matches it with a current item */
    bool nocase;             /* keys compare case-insensitively */
    const char *dup_what;    /* "target" in "duplicate target ..."; NULL: duplicates allowed */
    const char *const *keys; /* the fields an item may have */
    size_t max;              /* most items */
};

static const struct list_kind kinds[] = {
    [HX_DXA_DISKS] = {"disks", "devices/disk", "target/@dev", "target", false, "target",
                      hx_domxml_disk_keys, MAX_DEVICES},
    [HX_DXA_NICS] = {"nics", "devices/interface", "mac/@address", "mac", true, "MAC address",
                     hx_domxml_nic_keys, MAX_DEVICES},
    /* Matched by type: libvirt allows one display of each kind per domain. */
    [HX_DXA_GRAPHICS] = {"graphics", "devices/graphics", NULL, "type", false, NULL,
                         hx_domxml_graphics_keys, 8},
};

/* ---- placing the elements ---------------------------------------------------------------- */

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
static int arrange(hx_dxa *a, xmlNode *devices, hx_dxa_devs *d, xmlNodeSet *cur)
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
        if (hx_dxa_place(a, devices, ref, d->elem[i]))
            return a->rc;
    }
    bool ordered = true;
    for (size_t i = 1; i < d->n && ordered; i++)
        ordered = follows(d->elem[i - 1], d->elem[i]);
    for (size_t i = 1; i < d->n && !ordered; i++)
        if (hx_dxa_place(a, devices, d->elem[i - 1], d->elem[i]))
            return a->rc;
    return 0;
}

static xmlNode *devices_elem(hx_dxa *a)
{
    static const char *const after[] = {"on_crash", "on_reboot", "on_poweroff", "os", NULL};
    return hx_dxa_ensure_child(a, a->root, "devices", after);
}

/* Fills d with the current elements and keys (when the list is not written). */
static int current_devs(hx_dxa *a, const char *expr, const char *keyexpr, hx_dxa_devs *d)
{
    AUTO_XPOBJ *o = xmlXPathNodeEval(a->root, BAD_CAST expr, a->xp);
    if (!o)
        return hx_dxa_oom(a);
    size_t n = o->nodesetval ? (size_t)o->nodesetval->nodeNr : 0;
    d->n = n;
    d->elem = calloc(n + 1, sizeof(*d->elem));
    d->key = calloc(n + 1, sizeof(*d->key));
    if (!d->elem || !d->key)
        return hx_dxa_oom(a);
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

/* ---- writing a list ---------------------------------------------------------------------- */

static bool same(const struct list_kind *kind, const char *x, const char *y)
{
    return !(kind->nocase ? strcasecmp(x, y) : strcmp(x, y));
}

/* Index of the first current item not yet used whose kind->key is key, or -1. The current items
   (cur_list, from hx_domxml_to_config) are in the order of the elements. */
static int find_current(const struct list_kind *kind, const json_t *cur_list, int ncur,
                        const bool *used, const char *key)
{
    for (int j = 0; j < ncur; j++) {
        const char *k = json_string_value(json_object_get(json_array_get(cur_list, j), kind->key));
        if (!used[j] && k && same(kind, k, key))
            return j;
    }
    return -1;
}

int hx_dxa_apply_list(hx_dxa *a, const json_t *config, hx_dxa_list which,
                      const hx_dxa_list_ops *ops, hx_dxa_devs *d)
{
    const struct list_kind *kind = &kinds[which];
    json_t *list = json_object_get(config, kind->name);
    if (!list)
        return kind->keyexpr ? current_devs(a, kind->xpath, kind->keyexpr, d) : 0;
    if (!json_is_array(list))
        return hx_dxa_bad(a, kind->name, "must be an array");
    size_t n = json_array_size(list);
    if (n > kind->max)
        return hx_dxa_bad(a, kind->name, "must have at most %zu entries", kind->max);
    AUTO_XPOBJ *o = xmlXPathNodeEval(a->root, BAD_CAST kind->xpath, a->xp);
    if (!o)
        return hx_dxa_oom(a);
    xmlNodeSet *cur = o->nodesetval;
    int ncur = cur ? cur->nodeNr : 0;
    const json_t *cur_list = json_object_get(a->cur, kind->name);
    AUTO_MEM bool *used = calloc((size_t)ncur + 1, sizeof(bool));
    d->elem = calloc(n + 1, sizeof(xmlNode *));
    d->key = calloc(n + 1, sizeof(char *));
    if (!used || !d->elem || !d->key)
        return hx_dxa_oom(a);
    d->n = n;
    for (size_t i = 0; i < n; i++) {
        char path[32], f[48];
        snprintf(path, sizeof(path), "%s[%zu]", kind->name, i);
        const json_t *item = json_array_get(list, i);
        if (!json_is_object(item))
            return hx_dxa_bad(a, path, "must be an object");
        if (hx_dxa_unknown_keys(a, path, item, kind->keys))
            return a->rc;
        snprintf(f, sizeof(f), "%s.%s", path, kind->key);
        const char *key = NULL;
        if (ops->read_key(a, f, json_object_get(item, kind->key), &key))
            return a->rc;
        int match = -1;
        if (key) {
            for (size_t j = 0; kind->dup_what && j < i; j++)
                if (d->key[j] && same(kind, d->key[j], key))
                    return hx_dxa_bad(a, f, "duplicate %s \"%s\" (also %s[%zu])", kind->dup_what,
                                      key, kind->name, j);
            match = find_current(kind, cur_list, ncur, used, key);
            if (match < 0 && ops->check_new(a, f, key))
                return a->rc;
        }
        d->key[i] = key;
        if (match >= 0) {
            used[match] = true;
            d->elem[i] = cur->nodeTab[match];
        }
        if (ops->one(a, path, item, match >= 0 ? json_array_get(cur_list, match) : NULL,
                     &d->elem[i]))
            return a->rc;
    }
    for (int j = 0; j < ncur; j++)
        if (!used[j])
            hx_dxa_drop(a, cur->nodeTab[j]);
    if (!n)
        return 0;
    xmlNode *devices = devices_elem(a);
    if (!devices)
        return a->rc;
    if (ncur == 0 && ops->first_ref && !d->elem[0]->parent &&
        hx_dxa_place(a, devices, ops->first_ref(a, devices), d->elem[0]))
        return a->rc;
    return arrange(a, devices, d, cur);
}
