/* config.json -> XML: reporting the first error, the small value checks, and reading a field
   of the written config against the current one (type checks, defaults, "changed"). */
#include "domxml_apply_priv.h"

#include <errno.h>
#include <string.h>

/* ---- errors ------------------------------------------------------------------------------ */

static int vbad(hx_dxa *a, const char *field, const char *fmt, va_list ap)
{
    if (a->rc)
        return a->rc;
    char *what = hx_domxml_vfmt(fmt, ap);
    if (!what || asprintf(&a->err, "%s: %s", field, what) < 0) {
        a->err = NULL;
        a->rc = -EIO;
    } else {
        a->rc = -EINVAL;
    }
    free(what);
    return a->rc;
}

int hx_dxa_bad(hx_dxa *a, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vbad(a, field, fmt, ap);
    va_end(ap);
    return rc;
}

int hx_dxa_bad_at(hx_dxa *a, const char *path, const char *key, const char *fmt, ...)
{
    char f[256];
    snprintf(f, sizeof(f), "%s%s%s", path, *path ? "." : "", key);
    va_list ap;
    va_start(ap, fmt);
    int rc = vbad(a, f, fmt, ap);
    va_end(ap);
    return rc;
}

int hx_dxa_io_err(hx_dxa *a, const char *what)
{
    if (a->rc)
        return a->rc;
    a->err = strdup(what);
    a->rc = -EIO;
    return a->rc;
}

int hx_dxa_oom(hx_dxa *a)
{
    return hx_dxa_io_err(a, "out of memory");
}

/* ---- small checks ------------------------------------------------------------------------ */

bool hx_dxa_in_list(const char *s, const char *const *list)
{
    for (; s && *list; list++)
        if (!strcmp(s, *list))
            return true;
    return false;
}

const char *hx_dxa_list_text(const char *const *list, char *buf, size_t size)
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

bool hx_dxa_has_ctrl(const char *s, bool allow_newline)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p < 0x20 || *p == 0x7f) && !(allow_newline && (*p == '\n' || *p == '\t')))
            return true;
    return false;
}

int hx_dxa_check_ref(hx_dxa *a, const char *field, int (*exists)(const char *, void *),
                     const char *what, const char *name)
{
    if (!exists)
        return 0;
    int r = exists(name, a->env->opaque);
    if (r < 0)
        return hx_dxa_bad(a, field, "cannot check whether %s \"%s\" exists", what, name);
    if (!r)
        return hx_dxa_bad(a, field, "%s \"%s\" does not exist on this node", what, name);
    return 0;
}

/* ---- fields ------------------------------------------------------------------------------ */

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

json_t *hx_dxa_field(hx_dxa *a, const char *path, const json_t *item, const json_t *cur,
                     const char *key, unsigned types, json_t *def, bool *changed)
{
    if (a->rc)
        return NULL;
    json_t *v = json_object_get(item, key);
    json_t *cv = cur ? json_object_get(cur, key) : NULL;
    *changed = !cur;
    if (!v)
        return cur ? (cv ? cv : json_null()) : (def ? def : json_null());
    if (cur && cv && json_equal(v, cv))
        return v;
    *changed = true;
    if (!type_ok(v, types)) {
        hx_dxa_bad_at(a, path, key, "must be %s", type_text(types));
        return NULL;
    }
    return v;
}

int hx_dxa_unknown_keys(hx_dxa *a, const char *path, const json_t *obj, const char *const *known)
{
    const char *k;
    json_t *v;
    json_object_foreach ((json_t *)obj, k, v) {
        if (!hx_dxa_in_list(k, known))
            return hx_dxa_bad_at(a, path, k, "unknown field");
    }
    return 0;
}
