/* config.json -> XML: the graphics list (graphics[]: VNC and SPICE displays). */
#include "domxml_apply_priv.h"

#include <string.h>

static const char *const gfx_types[] = {"vnc", "spice", NULL};

/* ---- one display ------------------------------------------------------------------------- */

static int gfx_one(hx_dxa *a, const char *path, const json_t *item, const json_t *cur,
                   xmlNode **elem)
{
    bool c_port, c_listen, c_type;
    AUTO_JSON *d_port = json_integer(-1);
    json_t *type = hx_dxa_field(a, path, item, cur, "type", T_STR, NULL, &c_type);
    json_t *port = hx_dxa_field(a, path, item, cur, "port", T_INT | T_NULL, d_port, &c_port);
    json_t *listen = hx_dxa_field(a, path, item, cur, "listen", T_STR | T_NULL, NULL, &c_listen);
    if (a->rc)
        return a->rc;
    json_int_t p = json_integer_value(port);
    const char *ls = json_string_value(listen);
    if (c_port && json_is_integer(port) && p != -1 && (p < 5900 || p > 65535))
        return hx_dxa_bad_at(a, path, "port", "must be -1 (automatic) or between 5900 and 65535");
    if (c_listen && ls && (!*ls || strlen(ls) > 255 || hx_dxa_has_ctrl(ls, false)))
        return hx_dxa_bad_at(a, path, "listen",
                             "must be an address (at most 255 bytes, no control characters) or "
                             "null");
    xmlNode *g = *elem;
    if (!g) {
        g = *elem = hx_dxa_new_elem(a, "graphics");
        if (!g || hx_dxa_set_attr(a, g, "type", json_string_value(type)))
            return a->rc;
        c_port = c_listen = true;
    }
    if (c_port) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, p);
        if (hx_dxa_set_attr(a, g, "port", json_is_integer(port) ? buf : NULL) ||
            hx_dxa_set_attr(a, g, "autoport", json_is_integer(port) && p != -1 ? "no" : "yes"))
            return a->rc;
    }
    if (c_listen) {
        if (hx_dxa_set_attr(a, g, "listen", ls))
            return a->rc;
        for (xmlNode *n = g->children, *next; n; n = next) {
            next = n->next;
            if (!hx_dxa_is_elem(n, "listen"))
                continue;
            AUTO_XSTR *lt = xmlGetNoNsProp(n, BAD_CAST "type");
            if (ls && lt && !strcmp((const char *)lt, "address")) {
                if (hx_dxa_set_attr(a, n, "address", ls))
                    return a->rc;
            } else {
                hx_dxa_drop(a, n);
            }
        }
    }
    return 0;
}

/* ---- the list ---------------------------------------------------------------------------- */

static int gfx_key(hx_dxa *a, const char *field, const json_t *v, const char **key)
{
    char lt[64];
    *key = json_string_value(v);
    if (*key)
        return 0;
    return hx_dxa_bad(a, field, "must be a string (%s)",
                      hx_dxa_list_text(gfx_types, lt, sizeof(lt)));
}

static int gfx_new(hx_dxa *a, const char *field, const char *key)
{
    char lt[64];
    if (hx_dxa_in_list(key, gfx_types))
        return 0;
    return hx_dxa_bad(a, field, "must be one of %s (got \"%s\")",
                      hx_dxa_list_text(gfx_types, lt, sizeof(lt)), key);
}

static const hx_dxa_list_ops ops = {.read_key = gfx_key, .check_new = gfx_new, .one = gfx_one};

int hx_dxa_apply_graphics(hx_dxa *a, const json_t *config)
{
    hx_dxa_devs d = {0};
    int rc = hx_dxa_apply_list(a, config, HX_DXA_GRAPHICS, &ops, &d);
    free(d.elem);
    free(d.key);
    return rc;
}
