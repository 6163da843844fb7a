/* Resolution over the table of node kinds (fs/tree/tree.c): each kind's parent, the kind of a name
 * inside a directory, the version an object follows, and its rendering. */
#include "tree_priv.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

static int hx_parent_of[HX_KINDS_MAX];
/* The version callback each kind follows: its own, or the nearest one above it (NULL: none). */
static hx_version_fn hx_version_of[HX_KINDS_MAX];
static hx_cluster *hx_tree_cl;
static long long hx_tree_started_ns;

static void hx_tree_compute_parents(void)
{
    for (size_t k = 0; k < hx_n_kinds; k++) {
        const char *p = hx_kinds[k].pattern;
        const char *slash = strrchr(p, '/');
        size_t plen = (size_t)(slash - p);
        hx_parent_of[k] = -1;
        if (k == HX_KIND_ROOT)
            continue;
        for (size_t j = 0; j < hx_n_kinds; j++) {
            const char *q = hx_kinds[j].pattern;
            if ((plen == 0 && strcmp(q, "/") == 0) ||
                (plen > 0 && strlen(q) == plen && strncmp(q, p, plen) == 0)) {
                hx_parent_of[k] = (int)j;
                break;
            }
        }
    }
    for (size_t k = 0; k < hx_n_kinds; k++)
        for (int a = (int)k; a >= 0 && !hx_version_of[k]; a = hx_parent_of[a])
            hx_version_of[k] = hx_kinds[a].version;
}

void hx_tree_init(hx_cluster *cl)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, hx_tree_compute_parents);
    hx_tree_cl = cl;
    hx_tree_started_ns = hx_now_real_ns();
}

hx_cluster *hx_tree_cluster(void)
{
    return hx_tree_cl;
}

int hx_tree_parent_kind(int kind)
{
    return hx_parent_of[kind];
}

int hx_tree_kind(const char *pattern)
{
    for (size_t k = 0; k < hx_n_kinds; k++)
        if (strcmp(hx_kinds[k].pattern, pattern) == 0)
            return (int)k;
    return HX_KIND_ROOT;
}

const char *hx_tree_segment(int kind)
{
    return strrchr(hx_kinds[kind].pattern, '/') + 1;
}

void hx_tree_parent(const hx_obj *o, hx_obj *out)
{
    *out = *o;
    int p = hx_parent_of[o->kind];
    out->kind = p < 0 ? HX_KIND_ROOT : p;
    /* Clear the identities the parent does not capture. */
    const char *pat = hx_kinds[out->kind].pattern;
    if (!strstr(pat, "{vm}")) {
        out->vm[0] = '\0';
        out->vm_uuid[0] = '\0';
    }
    if (!strstr(pat, "{node}"))
        out->node[0] = '\0';
    if (!strstr(pat, "{pool}") && !strstr(pat, "{job}"))
        out->sub[0] = '\0';
    if (!strstr(pat, "{vol}") && !strstr(pat, "{snap}"))
        out->item[0] = '\0';
}

int hx_tree_child_kind(int dir_kind, const char *segment)
{
    for (size_t k = 0; k < hx_n_kinds; k++)
        if (hx_parent_of[k] == dir_kind && strcmp(hx_tree_segment((int)k), segment) == 0)
            return (int)k;
    return -1;
}

int hx_tree_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    const hx_kind *k = &hx_kinds[o->kind];
    hx_node_status st;
    int r;
    if (hx_version_of[o->kind])
        return hx_version_of[o->kind](o, version, changed_ns);
    switch (k->scope) {
    case HX_SCOPE_STATIC:
        *version = 0;
        *changed_ns = hx_tree_started_ns;
        return 0;
    case HX_SCOPE_CLUSTER:
        *version = hx_cluster_version(hx_tree_cl);
        *changed_ns = hx_tree_started_ns;
        return 0;
    case HX_SCOPE_NODE:
        return hx_cluster_node_version(hx_tree_cl, o->node, version, changed_ns, NULL);
    case HX_SCOPE_ONLINE:
        r = hx_cluster_node_version(hx_tree_cl, o->node, version, changed_ns, &st);
        if (r == 0 && st != HX_NODE_ONLINE)
            return -EHOSTDOWN;
        return r;
    case HX_SCOPE_VM:
        return hx_cluster_vm_version(hx_tree_cl, o->node, o->vm, o->vm_uuid, version, changed_ns);
    }
    return -ENOENT;
}

int hx_tree_parent_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    hx_obj d;
    hx_tree_parent(o, &d);
    return hx_tree_version(&d, version, changed_ns);
}

int hx_tree_render(const hx_obj *o, hx_buf *out)
{
    const hx_kind *k = &hx_kinds[o->kind];
    if (!k->render)
        return -EISDIR;
    return k->render(o, out);
}

int hx_tree_capture_field(hx_obj *o, char *field, size_t size, const char *name,
                          hx_tree_check_fn check)
{
    if (strlen(name) >= size)
        return -ENOENT;
    int r = check(o, name);
    if (r == 0)
        hx_strlcpy(field, name, size);
    return r;
}

int hx_tree_capture(int k, const char *name, hx_obj *out)
{
    if (hx_kinds[k].capture)
        return hx_kinds[k].capture(out, name);
    return strcmp(hx_tree_segment(k), name) == 0 ? 0 : -ENOENT;
}

int hx_tree_dir_check(const hx_obj *dir)
{
    if (hx_kinds[dir->kind].type != HX_FT_DIR)
        return -ENOTDIR;
    uint64_t v;
    long long t;
    return hx_tree_version(dir, &v, &t);
}

int hx_tree_lookup(const hx_obj *dir, const char *name, hx_obj *out)
{
    int r = hx_tree_dir_check(dir);
    if (r < 0)
        return r;
    int result = -ENOENT;
    for (size_t k = 0; k < hx_n_kinds; k++) {
        if (hx_parent_of[k] != dir->kind)
            continue;
        hx_obj o = *dir;
        o.kind = (int)k;
        r = hx_tree_capture((int)k, name, &o);
        if (r == 0) {
            *out = o;
            return 0;
        }
        if (r == -EHOSTDOWN)
            result = r;
    }
    return result;
}
