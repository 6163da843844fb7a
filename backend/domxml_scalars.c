/* config.json -> XML: the top-level scalars (name, uuid, type and arch are read-only;
   description, memory, vCPUs, machine type and firmware are written). */
#include "domxml_apply_priv.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#define MAX_VCPUS 256
#define MIN_MEM_MIB 16
#define MAX_MEM_MIB 16777216 /* 16 TiB */
#define MAX_DESC 4096        /* bytes */

static const char *const firmwares[] = {"bios", "uefi", NULL};

int hx_dxa_check_readonly(hx_dxa *a, const json_t *config)
{
    bool chg;
    json_t *name = hx_dxa_field(a, "", config, a->cur, "name", T_STR, NULL, &chg);
    if (!name)
        return a->rc;
    if (chg)
        return hx_dxa_bad(a, "name",
                          "cannot be changed by writing config.json (renaming is a separate "
                          "operation); it must stay \"%s\"",
                          json_string_value(json_object_get(a->cur, "name")));
    json_t *uuid = hx_dxa_field(a, "", config, a->cur, "uuid", T_STR | T_NULL, NULL, &chg);
    if (!uuid)
        return a->rc;
    const char *cu = json_string_value(json_object_get(a->cur, "uuid"));
    if (chg && json_is_string(uuid) && !(cu && !strcasecmp(cu, json_string_value(uuid))))
        return hx_dxa_bad(a, "uuid", "cannot be changed (it is \"%s\")", cu ? cu : "");
    static const char *const ro[] = {"type", "arch", NULL};
    for (const char *const *k = ro; *k; k++) {
        json_t *v = hx_dxa_field(a, "", config, a->cur, *k, T_STR | T_NULL, NULL, &chg);
        if (!v)
            return a->rc;
        if (chg) {
            const char *c = json_string_value(json_object_get(a->cur, *k));
            return hx_dxa_bad(a, *k, "cannot be changed by writing config.json (it is %s%s%s)",
                              c ? "\"" : "", c ? c : "null", c ? "\"" : "");
        }
    }
    json_t *autostart = json_object_get(config, "autostart");
    if (autostart && !json_is_boolean(autostart))
        return hx_dxa_bad(a, "autostart", "must be a boolean");
    return 0;
}

/* Whether the written config changes the top-level string field key (types: T_STR, maybe with
   T_NULL); *s is the value to write (NULL for null). false on a type error too (a->rc set). */
static bool changed_str(hx_dxa *a, const json_t *config, const char *key, unsigned types,
                        const char **s)
{
    bool chg;
    json_t *v = hx_dxa_field(a, "", config, a->cur, key, types, NULL, &chg);
    *s = json_string_value(v);
    return v && chg;
}

int hx_dxa_apply_description(hx_dxa *a, const json_t *config)
{
    const char *s;
    if (!changed_str(a, config, "description", T_STR, &s))
        return a->rc;
    if (strlen(s) > MAX_DESC)
        return hx_dxa_bad(a, "description", "must be at most %d bytes", MAX_DESC);
    if (hx_dxa_has_ctrl(s, true))
        return hx_dxa_bad(a, "description",
                          "must not contain control characters other than newline "
                          "and tab");
    if (!*s) {
        hx_dxa_drop(a, hx_dxa_child(a->root, "description"));
        return 0;
    }
    static const char *const after[] = {"title", "uuid", "name", NULL};
    xmlNode *n = hx_dxa_ensure_child(a, a->root, "description", after);
    return n ? hx_dxa_set_text(a, n, s) : a->rc;
}

/* A maximum and the current value as written (max_vcpus and vcpus, max_memory_mib and
   memory_mib). */
struct pair {
    json_t *max, *cur;
    json_int_t m, v; /* their values, 0 for null */
    bool chg_max, chg_cur;
};

/* Reads the pair max_key/cur_key into p. Raising the current value alone raises the maximum
   with it, up to limit (`jq '.vcpus = 4'` and `jq '.memory_mib = 1024'` just work). Returns 1
   when either changed, 0 when neither did, a->rc on a type error. */
static int read_pair(hx_dxa *a, const json_t *config, const char *max_key, const char *cur_key,
                     json_int_t limit, struct pair *p)
{
    p->max = hx_dxa_field(a, "", config, a->cur, max_key, T_INT, NULL, &p->chg_max);
    p->cur = hx_dxa_field(a, "", config, a->cur, cur_key, T_INT, NULL, &p->chg_cur);
    if (a->rc)
        return a->rc;
    if (!p->chg_max && !p->chg_cur)
        return 0;
    p->m = json_integer_value(p->max);
    p->v = json_integer_value(p->cur);
    if (!p->chg_max && json_is_integer(p->cur) && (!json_is_integer(p->max) || p->v > p->m) &&
        p->v <= limit) {
        p->m = p->v;
        p->max = p->cur;
        p->chg_max = true;
    }
    return 1;
}

int hx_dxa_apply_vcpus(hx_dxa *a, const json_t *config)
{
    struct pair p;
    if (read_pair(a, config, "max_vcpus", "vcpus", MAX_VCPUS, &p) <= 0)
        return a->rc;
    json_int_t m = p.m, v = p.v;
    if (p.chg_max && (m < 1 || m > MAX_VCPUS))
        return hx_dxa_bad(a, "max_vcpus", "must be an integer between 1 and %d", MAX_VCPUS);
    if (v < 1 || v > m)
        return hx_dxa_bad(
            a, "vcpus", "must be an integer between 1 and max_vcpus (%" JSON_INTEGER_FORMAT ")", m);
    static const char *const after[] = {"currentMemory", "memory", "name", NULL};
    xmlNode *n = hx_dxa_ensure_child(a, a->root, "vcpu", after);
    if (!n || hx_dxa_set_int_text(a, n, m))
        return a->rc;
    char buf[32];
    snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, v);
    return hx_dxa_set_attr(a, n, "current", v == m ? NULL : buf);
}

static int write_mem(hx_dxa *a, const char *elem, json_int_t mib)
{
    static const char *const after[] = {"memory", "vcpu", "name", NULL};
    xmlNode *n = hx_dxa_ensure_child(a, a->root, elem, after);
    if (!n || hx_dxa_set_int_text(a, n, (long long)mib * 1024))
        return a->rc;
    return hx_dxa_set_attr(a, n, "unit", "KiB");
}

int hx_dxa_apply_memory(hx_dxa *a, const json_t *config)
{
    struct pair p;
    if (read_pair(a, config, "max_memory_mib", "memory_mib", MAX_MEM_MIB, &p) <= 0)
        return a->rc;
    bool max_int = json_is_integer(p.max), cur_int = json_is_integer(p.cur);
    if (p.chg_max && (!max_int || p.m < MIN_MEM_MIB || p.m > MAX_MEM_MIB))
        return hx_dxa_bad(a, "max_memory_mib", "must be an integer between %d and %d", MIN_MEM_MIB,
                          MAX_MEM_MIB);
    if (p.chg_cur && (!cur_int || p.v < MIN_MEM_MIB || p.v > MAX_MEM_MIB))
        return hx_dxa_bad(a, "memory_mib", "must be an integer between %d and %d", MIN_MEM_MIB,
                          MAX_MEM_MIB);
    if (max_int && cur_int && p.v > p.m)
        return hx_dxa_bad(a, "memory_mib",
                          "must not exceed max_memory_mib (%" JSON_INTEGER_FORMAT
                          " > %" JSON_INTEGER_FORMAT ")",
                          p.v, p.m);
    if (p.chg_max && write_mem(a, "memory", p.m))
        return a->rc;
    /* Without <currentMemory> the current amount follows <memory>: write it to keep it. */
    if ((p.chg_cur || !hx_dxa_child(a->root, "currentMemory")) && cur_int)
        return write_mem(a, "currentMemory", p.v);
    return 0;
}

xmlNode *hx_dxa_os_type(hx_dxa *a)
{
    static const char *const after[] = {"vcpu", "currentMemory", "memory", NULL};
    xmlNode *os = hx_dxa_ensure_child(a, a->root, "os", after);
    if (!os)
        return NULL;
    xmlNode *t = hx_dxa_child(os, "type");
    if (t)
        return t;
    t = hx_dxa_new_elem(a, "type");
    if (!t || hx_dxa_set_text(a, t, "hvm"))
        return NULL;
    if (!os->children || !xmlAddPrevSibling(os->children, t)) {
        if (!xmlAddChild(os, t)) {
            xmlFreeNode(t);
            hx_dxa_oom(a);
            return NULL;
        }
    }
    return t;
}

int hx_dxa_apply_machine(hx_dxa *a, const json_t *config)
{
    const char *s;
    if (!changed_str(a, config, "machine", T_STR | T_NULL, &s))
        return a->rc;
    bool ok = !s || (*s && strlen(s) <= MAX_TOKEN);
    for (const char *p = s; ok && p && *p; p++)
        ok = isalnum((unsigned char)*p) || strchr("._-", *p);
    if (!ok)
        return hx_dxa_bad(a, "machine", "must be a machine type such as \"pc-q35-7.2\" or null");
    xmlNode *t = hx_dxa_os_type(a);
    return t ? hx_dxa_set_attr(a, t, "machine", s) : a->rc;
}

int hx_dxa_apply_firmware(hx_dxa *a, const json_t *config)
{
    const char *s;
    if (!changed_str(a, config, "firmware", T_STR, &s))
        return a->rc;
    if (!hx_dxa_in_list(s, firmwares))
        return hx_dxa_bad(a, "firmware", "must be one of bios, uefi (got \"%s\")", s);
    xmlNode *t = hx_dxa_os_type(a);
    if (!t)
        return a->rc;
    xmlNode *os = t->parent;
    /* Either way the old firmware configuration goes: a manual loader/nvram or a feature list. */
    hx_dxa_drop_children(a, os, "loader");
    hx_dxa_drop_children(a, os, "nvram");
    hx_dxa_drop_children(a, os, "firmware");
    return hx_dxa_set_attr(a, os, "firmware", strcmp(s, "uefi") ? NULL : "efi");
}
