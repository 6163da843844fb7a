/* Listing a directory of the tree: its children in table order, each with its identity. */
#include "tree_priv.h"

#include <errno.h>
#include <string.h>

/* Room for more entries: *cap doubled, or exactly what a caller that knows its count asks. */
int hx_tree_list_reserve(hx_tree_list *l, size_t *cap, size_t more)
{
    if (l->n + more > *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        if (nc < l->n + more)
            nc = l->n + more;
        hx_obj *no = realloc(l->objs, nc * sizeof(hx_obj));
        if (!no)
            return -ENOMEM;
        l->objs = no;
        char **nn = realloc(l->names, nc * sizeof(char *));
        if (!nn)
            return -ENOMEM;
        l->names = nn;
        *cap = nc;
    }
    return 0;
}

int hx_tree_list_add(hx_tree_list *l, size_t *cap, const hx_obj *o, const char *name)
{
    if (hx_tree_list_reserve(l, cap, 1) < 0)
        return -ENOMEM;
    l->names[l->n] = strdup(name);
    if (!l->names[l->n])
        return -ENOMEM;
    l->objs[l->n++] = *o;
    return 0;
}

void hx_tree_list_free(hx_tree_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    free(l->objs);
    memset(l, 0, sizeof(*l));
}

int hx_tree_list_dir(const hx_obj *dir, hx_tree_list *out)
{
    memset(out, 0, sizeof(*out));
    int r = hx_tree_dir_check(dir);
    if (r < 0)
        return r;
    size_t cap = 0;
    for (size_t k = 0; k < hx_n_kinds && r == 0; k++) {
        if (hx_tree_parent_kind((int)k) != dir->kind)
            continue;
        const char *seg = hx_tree_segment((int)k);
        hx_obj o = *dir;
        o.kind = (int)k;
        char **names = NULL;
        if (hx_kinds[k].list_all) {
            r = hx_kinds[k].list_all(&o, out, &cap);
            continue;
        } else if (hx_kinds[k].list) {
            r = hx_kinds[k].list(dir, &names);
        } else {
            r = hx_tree_list_add(out, &cap, &o, seg);
            continue;
        }
        for (char **p = names; r == 0 && p && *p; p++) {
            /* Skip what vanished between the listing and the capture. */
            if (hx_tree_capture((int)k, *p, &o) == 0)
                r = hx_tree_list_add(out, &cap, &o, *p);
        }
        hx_strv_free(names);
    }
    if (r < 0)
        hx_tree_list_free(out);
    return r;
}
