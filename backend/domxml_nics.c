/* config.json -> XML: the network interfaces list (nics[]), with the checks of networks and
   bridges against the node. */
#include "domxml_apply_priv.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static const char *const nic_types[] = {"network", "bridge", "user", NULL};

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

/* ---- one NIC ----------------------------------------------------------------------------- */

/* Checks the source field `key` ("network" or "bridge", also the kind of name) of a NIC of type
   ts: when `want` (the NIC is of that type) a name of at most max bytes, checked against the
   node when changed (chg) with exists; when `must_null`, null. */
static int source_name(hx_dxa *a, const char *path, const char *key, bool want, bool must_null,
                       const char *ts, const char *name, bool chg, size_t max,
                       int (*exists)(const char *, void *))
{
    char f[160];
    snprintf(f, sizeof(f), "%s.%s", path, key);
    if (want && !name)
        return hx_dxa_bad(a, f, "must be a string for a %s interface", key);
    if (must_null && name)
        return hx_dxa_bad(a, f, "must be null for a %s interface", ts);
    if (want && chg && (!*name || hx_dxa_has_ctrl(name, false) || strlen(name) > max))
        return hx_dxa_bad(a, f, "must be a %s name (got \"%s\")", key, name);
    if (want && chg)
        return hx_dxa_check_ref(a, f, exists, key, name);
    return 0;
}

static int nic_one(hx_dxa *a, const char *path, const json_t *item, const json_t *cur,
                   xmlNode **elem)
{
    char lt[128];
    bool c_type, c_net, c_br, c_model, c_mac = false;
    AUTO_JSON *d_type = json_string("network");
    AUTO_JSON *d_model = json_string("virtio");
    json_t *type = hx_dxa_field(a, path, item, cur, "type", T_STR, d_type, &c_type);
    json_t *net = hx_dxa_field(a, path, item, cur, "network", T_STR | T_NULL, NULL, &c_net);
    json_t *br = hx_dxa_field(a, path, item, cur, "bridge", T_STR | T_NULL, NULL, &c_br);
    json_t *model = hx_dxa_field(a, path, item, cur, "model", T_STR | T_NULL, d_model, &c_model);
    if (a->rc)
        return a->rc;
    const char *ts = json_string_value(type), *nets = json_string_value(net);
    const char *brs = json_string_value(br), *models = json_string_value(model);
    if (c_type && !hx_dxa_in_list(ts, nic_types))
        return hx_dxa_bad_at(a, path, "type",
                             "must be one of %s (got \"%s\"; other kinds can only be kept as they "
                             "are)",
                             hx_dxa_list_text(nic_types, lt, sizeof(lt)), ts);
    bool known = hx_dxa_in_list(ts, nic_types);
    if (!known && (c_net || c_br))
        return hx_dxa_bad_at(a, path, c_net ? "network" : "bridge",
                             "cannot be changed for a %s interface", ts);
    bool is_net = known && !strcmp(ts, "network"), is_br = known && !strcmp(ts, "bridge");
    if (source_name(a, path, "network", is_net, known && !is_net, ts, nets, c_net || c_type,
                    MAX_TOKEN * 4, a->env->network_exists))
        return a->rc;
    /* The live XML of a network interface names its bridge too: accept it unchanged. */
    if (source_name(a, path, "bridge", is_br, known && !is_br && (c_br || c_type), ts, brs,
                    c_br || c_type, MAX_TOKEN, a->env->bridge_exists))
        return a->rc;
    if (c_model && models && !is_token(models, "-_"))
        return hx_dxa_bad_at(
            a, path, "model",
            "must be a model name such as \"virtio\" or \"e1000e\" or null (got \"%s\")", models);

    xmlNode *nic = *elem;
    if (!nic) {
        nic = *elem = hx_dxa_new_elem(a, "interface");
        if (!nic)
            return a->rc;
        const char *mac = json_string_value(json_object_get(item, "mac"));
        if (mac) {
            xmlNode *m = xmlNewChild(nic, NULL, BAD_CAST "mac", NULL);
            if (!m || hx_dxa_set_attr(a, m, "address", mac))
                return hx_dxa_oom(a);
        }
        c_type = c_net = c_br = c_model = c_mac = true;
    }
    (void)c_mac;
    if (c_type && hx_dxa_set_attr(a, nic, "type", ts))
        return a->rc;
    if (known && (c_type || c_net || c_br)) {
        xmlNode *src = hx_dxa_child(nic, "source");
        if (!is_net && !is_br) {
            hx_dxa_drop(a, src);
        } else {
            if (!src) {
                static const char *const after[] = {"mac", NULL};
                src = hx_dxa_ensure_child(a, nic, "source", after);
                if (!src)
                    return a->rc;
            } else if (c_type) { /* a fresh source: the old one's attributes belong to its type */
                xmlNode *s = hx_dxa_new_elem(a, "source");
                if (!s)
                    return a->rc;
                hx_dxa_replace(a, src, s);
                src = s;
            }
            if (hx_dxa_set_attr(a, src, "network", is_net ? nets : NULL) ||
                hx_dxa_set_attr(a, src, "bridge", brs))
                return a->rc;
        }
    }
    if (c_model) {
        xmlNode *m = hx_dxa_child(nic, "model");
        if (!models) {
            hx_dxa_drop(a, m);
        } else {
            static const char *const after[] = {"source", "mac", NULL};
            m = hx_dxa_ensure_child(a, nic, "model", after);
            if (!m || hx_dxa_set_attr(a, m, "type", models))
                return a->rc;
        }
    }
    return 0;
}

/* ---- the list ---------------------------------------------------------------------------- */

static int nic_key(hx_dxa *a, const char *field, const json_t *v, const char **key)
{
    if (v && !json_is_string(v) && !json_is_null(v))
        return hx_dxa_bad(a, field, "must be a string or null");
    *key = json_string_value(v);
    return 0;
}

static int nic_new(hx_dxa *a, const char *field, const char *key)
{
    if (is_mac(key) && is_unicast_mac(key))
        return 0;
    return hx_dxa_bad(a, field,
                      "must be a unicast MAC address such as \"52:54:00:12:34:56\" or null (got "
                      "\"%s\")",
                      key);
}

/* The first NIC goes after the last disk, else after the emulator, else at the end. */
static xmlNode *nic_first_ref(hx_dxa *a, xmlNode *devices)
{
    xmlNode *ref = a->disks.n ? a->disks.elem[a->disks.n - 1] : hx_dxa_child(devices, "emulator");
    return ref && ref->parent == devices ? ref : NULL;
}

static const hx_dxa_list_ops ops = {
    .read_key = nic_key, .check_new = nic_new, .one = nic_one, .first_ref = nic_first_ref};

int hx_dxa_apply_nics(hx_dxa *a, const json_t *config)
{
    return hx_dxa_apply_list(a, config, HX_DXA_NICS, &ops, &a->nics);
}
