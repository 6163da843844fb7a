/* The read API over the nodes' caches: node and VM versions, copy-out views made under the
 * node's lock, and live counters and calls handed to a node's thread. */
#include "auto.h"
#include "hx_util.h"
#include "node.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int hx_cluster_node_version(hx_cluster *cl, const char *node, uint64_t *version,
                            long long *changed_ns, hx_node_status *status)
{
    hx_autonode hx_node *n = hx_cluster_get(cl, node);
    if (!n)
        return -ENOENT;
    pthread_mutex_lock(&n->lock);
    *version = n->version;
    if (changed_ns)
        *changed_ns = n->changed_ns;
    if (status)
        *status = n->status;
    pthread_mutex_unlock(&n->lock);
    return 0;
}

int hx_cluster_node_view(hx_cluster *cl, const char *node, hx_node_view *out)
{
    memset(out, 0, sizeof(*out));
    hx_autonode hx_node *n = hx_cluster_get(cl, node);
    if (!n)
        return -ENOENT;
    hx_strlcpy(out->name, n->name, sizeof(out->name));
    pthread_mutex_lock(&n->lock);
    out->uri = strdup(n->uri);
    out->status = n->status;
    out->last_error = n->last_error ? strdup(n->last_error) : NULL;
    out->status_since_ns = n->status_since_ns;
    out->info = n->info ? json_deep_copy(n->info) : NULL;
    pthread_mutex_unlock(&n->lock);
    return 0;
}

void hx_node_view_clear(hx_node_view *v)
{
    free(v->uri);
    free(v->last_error);
    json_decref(v->info);
    memset(v, 0, sizeof(*v));
}

/* Gets the node, locked, when it is online. Returns -ENOENT or -EHOSTDOWN otherwise.
 * While a node makes its first connection (right after mount or after it was added) a reader
 * waits for the outcome, at most HX_NODE_CALL_TIMEOUT_MS, so `mount && ls` sees the VMs. */
static int hx_cluster_online(hx_cluster *cl, const char *node, hx_node **out)
{
    hx_node *n = hx_cluster_get(cl, node);
    if (!n)
        return -ENOENT;
    pthread_mutex_lock(&n->lock);
    if (n->status == HX_NODE_CONNECTING) {
        struct timespec ts;
        hx_node_deadline(&ts, HX_NODE_CALL_TIMEOUT_MS);
        while (n->status == HX_NODE_CONNECTING && !n->stop)
            if (pthread_cond_timedwait(&n->status_cond, &n->lock, &ts) == ETIMEDOUT)
                break;
    }
    if (n->status != HX_NODE_ONLINE) {
        pthread_mutex_unlock(&n->lock);
        hx_node_unref(n);
        return -EHOSTDOWN;
    }
    *out = n;
    return 0;
}

static void hx_cluster_release(hx_node *n)
{
    pthread_mutex_unlock(&n->lock);
    hx_node_unref(n);
}

int hx_cluster_vm_names(hx_cluster *cl, const char *node, char ***names, size_t *count)
{
    hx_node *n;
    int r = hx_cluster_online(cl, node, &n);
    if (r < 0)
        return r;
    char **v = calloc(n->n_doms + 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; v && i < n->n_doms; i++)
        if ((v[k] = strdup(n->doms[i].v.name)))
            k++;
    hx_cluster_release(n);
    if (!v)
        return -ENOMEM;
    *names = v;
    if (count)
        *count = k;
    return 0;
}

int hx_cluster_vm_idents(hx_cluster *cl, const char *node, hx_vm_ident **out, size_t *count)
{
    hx_node *n;
    int r = hx_cluster_online(cl, node, &n);
    if (r < 0)
        return r;
    hx_vm_ident *v = malloc((n->n_doms ? n->n_doms : 1) * sizeof(*v));
    size_t k = v ? n->n_doms : 0;
    for (size_t i = 0; i < k; i++) {
        hx_strlcpy(v[i].name, n->doms[i].v.name, sizeof(v[i].name));
        hx_strlcpy(v[i].uuid, n->doms[i].v.uuid, sizeof(v[i].uuid));
    }
    hx_cluster_release(n);
    if (!v)
        return -ENOMEM;
    *out = v;
    *count = k;
    return 0;
}

/* Calls copy with the cached view of VM name (checked against uuid when not NULL) on an online
 * node, under the node's lock. 0, -ENOENT, -EHOSTDOWN. */
static int hx_cluster_vm_copy(hx_cluster *cl, const char *node, const char *name, const char *uuid,
                              void (*copy)(const hx_vm_view *v, void *arg), void *arg)
{
    hx_node *n;
    int r = hx_cluster_online(cl, node, &n);
    if (r < 0)
        return r;
    ssize_t i = hx_node_find_dom(n, name, uuid);
    if (i >= 0)
        copy(&n->doms[i].v, arg);
    hx_cluster_release(n);
    return i >= 0 ? 0 : -ENOENT;
}

static void hx_copy_uuid(const hx_vm_view *v, void *arg)
{
    hx_strlcpy(arg, v->uuid, HX_UUID_LEN);
}

int hx_cluster_vm_lookup(hx_cluster *cl, const char *node, const char *name, char uuid[HX_UUID_LEN])
{
    return hx_cluster_vm_copy(cl, node, name, NULL, hx_copy_uuid, uuid);
}

typedef struct hx_version_out {
    uint64_t *version;
    long long *changed_ns;
} hx_version_out;

static void hx_copy_version(const hx_vm_view *v, void *arg)
{
    hx_version_out *o = arg;
    *o->version = v->version;
    if (o->changed_ns)
        *o->changed_ns = v->changed_ns;
}

int hx_cluster_vm_version(hx_cluster *cl, const char *node, const char *name, const char *uuid,
                          uint64_t *version, long long *changed_ns)
{
    hx_version_out o = {.version = version, .changed_ns = changed_ns};
    return hx_cluster_vm_copy(cl, node, name, uuid, hx_copy_version, &o);
}

static char *hx_strdup0(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void hx_copy_view(const hx_vm_view *v, void *arg)
{
    hx_vm_view *out = arg;
    *out = *v;
    out->xml_config = hx_strdup0(v->xml_config);
    out->xml_live = hx_strdup0(v->xml_live);
    out->config_json = hx_strdup0(v->config_json);
    out->config_error = hx_strdup0(v->config_error);
    out->live_json = hx_strdup0(v->live_json);
}

int hx_cluster_vm_view(hx_cluster *cl, const char *node, const char *name, const char *uuid,
                       hx_vm_view *out)
{
    memset(out, 0, sizeof(*out));
    return hx_cluster_vm_copy(cl, node, name, uuid, hx_copy_view, out);
}

void hx_vm_view_clear(hx_vm_view *v)
{
    free(v->xml_config);
    free(v->xml_live);
    free(v->config_json);
    free(v->config_error);
    free(v->live_json);
    v->xml_config = v->xml_live = v->config_json = v->config_error = v->live_json = NULL;
}

int hx_cluster_vm_stats(hx_cluster *cl, const char *node, const char *name, const char *uuid,
                        json_t **out)
{
    hx_node *n;
    int r = hx_cluster_online(cl, node, &n);
    if (r < 0)
        return r;
    int found = hx_node_find_dom(n, name, uuid) >= 0;
    hx_node_ref(n);
    hx_cluster_release(n);
    hx_autonode hx_node *held = n;
    if (!found)
        return -ENOENT;
    return hx_node_call(held, HX_REQ_VM_STATS, name, uuid, out);
}

int hx_cluster_node_stats(hx_cluster *cl, const char *node, json_t **out)
{
    hx_autonode hx_node *n = hx_cluster_get(cl, node);
    if (!n)
        return -ENOENT;
    return hx_node_call(n, HX_REQ_NODE_STATS, NULL, NULL, out);
}

int hx_cluster_node_exec(hx_cluster *cl, const char *node, hx_node_fn fn, json_t *in, json_t **out)
{
    hx_node *n;
    int r = hx_cluster_online(cl, node, &n);
    if (r < 0)
        return r;
    /* hx_node_exec takes the node's lock itself. */
    hx_node_ref(n);
    hx_cluster_release(n);
    r = hx_node_exec(n, fn, in, out);
    hx_node_unref(n);
    return r;
}
