/* The set of nodes, kept in line with the configuration, and the read API over their caches. */
#include "hx_log.h"
#include "hx_util.h"
#include "node.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

struct hx_cluster {
    pthread_mutex_t lock; /* guards nodes */
    hx_node **nodes;      /* sorted by name */
    size_t n_nodes;
    _Atomic uint64_t version;
    hx_change_fn fn;
    void *opaque;
};

const char *hx_node_status_str(hx_node_status s)
{
    switch (s) {
    case HX_NODE_ONLINE:
        return "online";
    case HX_NODE_OFFLINE:
        return "offline";
    default:
        return "connecting";
    }
}

uint64_t hx_cluster_stamp(hx_cluster *cl)
{
    return atomic_fetch_add(&cl->version, 1) + 1;
}

uint64_t hx_cluster_version(hx_cluster *cl)
{
    return atomic_load(&cl->version);
}

void hx_cluster_emit(hx_cluster *cl, const hx_change *c)
{
    if (cl->fn)
        cl->fn(c, cl->opaque);
}

hx_cluster *hx_cluster_new(hx_change_fn fn, void *opaque)
{
    hx_cluster *cl = calloc(1, sizeof(*cl));
    if (!cl)
        return NULL;
    pthread_mutex_init(&cl->lock, NULL);
    atomic_init(&cl->version, 1);
    cl->fn = fn;
    cl->opaque = opaque;
    return cl;
}

void hx_cluster_free(hx_cluster *cl)
{
    if (!cl)
        return;
    pthread_mutex_lock(&cl->lock);
    for (size_t i = 0; i < cl->n_nodes; i++)
        hx_node_stop_begin(cl->nodes[i]);
    /* Each node unsubscribes and closes its connection before the process ends (see
     * hx_node_stop_finish); a node stuck in a call is not waited for beyond the deadline. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += HX_NODE_EXIT_WAIT_S;
    for (size_t i = 0; i < cl->n_nodes; i++) {
        hx_node_stop_finish(cl->nodes[i], &deadline);
        hx_node_unref(cl->nodes[i]);
    }
    free(cl->nodes);
    cl->nodes = NULL;
    cl->n_nodes = 0;
    cl->fn = NULL;
    pthread_mutex_unlock(&cl->lock);
    /* A node thread that missed the deadline may still be finishing a libvirt call; it holds
     * its own reference to its node but uses cl for stamps and (now disabled) emits, so cl
     * stays allocated for the life of the process. */
}

static int hx_node_cmp(const void *a, const void *b)
{
    return strcmp((*(hx_node *const *)a)->name, (*(hx_node *const *)b)->name);
}

/* Returns the node with a reference, or NULL. */
hx_node *hx_cluster_get(hx_cluster *cl, const char *name)
{
    hx_node *found = NULL;
    pthread_mutex_lock(&cl->lock);
    for (size_t i = 0; i < cl->n_nodes && !found; i++)
        if (strcmp(cl->nodes[i]->name, name) == 0) {
            found = cl->nodes[i];
            hx_node_ref(found);
        }
    pthread_mutex_unlock(&cl->lock);
    return found;
}

static void hx_node_unrefp(hx_node **n)
{
    if (*n)
        hx_node_unref(*n);
}
#define hx_autonode __attribute__((cleanup(hx_node_unrefp)))

void hx_cluster_configure(hx_cluster *cl, const hx_conf *conf)
{
    char removed[64][HX_NODE_NAME_MAX];
    size_t n_removed = 0;
    char added[64][HX_NODE_NAME_MAX];
    size_t n_added = 0;
    pthread_mutex_lock(&cl->lock);
    /* Stop nodes that left the configuration or whose URI changed. */
    for (size_t i = 0; i < cl->n_nodes;) {
        hx_node *n = cl->nodes[i];
        const hx_conf_node *c = NULL;
        for (size_t j = 0; j < conf->n_nodes && !c; j++)
            if (strcmp(conf->nodes[j].name, n->name) == 0)
                c = &conf->nodes[j];
        if (c && strcmp(c->uri, n->uri) == 0) {
            i++;
            continue;
        }
        hx_info("node %s %s", n->name, c ? "changes its URI: reconnecting" : "is removed");
        if (n_removed < 64)
            hx_strlcpy(removed[n_removed++], n->name, HX_NODE_NAME_MAX);
        hx_node_stop(n);
        hx_node_unref(n);
        memmove(&cl->nodes[i], &cl->nodes[i + 1], (cl->n_nodes - i - 1) * sizeof(hx_node *));
        cl->n_nodes--;
    }
    for (size_t j = 0; j < conf->n_nodes; j++) {
        int have = 0;
        for (size_t i = 0; i < cl->n_nodes && !have; i++)
            have = strcmp(cl->nodes[i]->name, conf->nodes[j].name) == 0;
        if (have)
            continue;
        hx_node **nn = realloc(cl->nodes, (cl->n_nodes + 1) * sizeof(hx_node *));
        if (!nn) {
            hx_err("node %s: out of memory adding it", conf->nodes[j].name);
            continue;
        }
        cl->nodes = nn;
        hx_node *n = hx_node_start(cl, conf->nodes[j].name, conf->nodes[j].uri);
        if (!n)
            continue;
        hx_info("node %s is added (%s)", n->name, n->uri);
        cl->nodes[cl->n_nodes++] = n;
        if (n_added < 64)
            hx_strlcpy(added[n_added++], n->name, HX_NODE_NAME_MAX);
    }
    qsort(cl->nodes, cl->n_nodes, sizeof(hx_node *), hx_node_cmp);
    pthread_mutex_unlock(&cl->lock);
    if (n_removed || n_added)
        hx_cluster_stamp(cl);
    for (size_t i = 0; i < n_removed; i++) {
        hx_change c = {.kind = HX_CHANGE_NODES, .node = removed[i], .vanished = 1};
        hx_cluster_emit(cl, &c);
    }
    for (size_t i = 0; i < n_added; i++) {
        hx_change c = {.kind = HX_CHANGE_NODES, .node = added[i], .appeared = 1};
        hx_cluster_emit(cl, &c);
    }
}

void hx_strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

char **hx_cluster_node_names(hx_cluster *cl, size_t *n)
{
    pthread_mutex_lock(&cl->lock);
    char **v = calloc(cl->n_nodes + 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; v && i < cl->n_nodes; i++)
        if ((v[k] = strdup(cl->nodes[i]->name)))
            k++;
    pthread_mutex_unlock(&cl->lock);
    if (n)
        *n = k;
    return v;
}

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
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += HX_NODE_CALL_TIMEOUT_MS / 1000;
        ts.tv_nsec += (HX_NODE_CALL_TIMEOUT_MS % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
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

int hx_cluster_vm_lookup(hx_cluster *cl, const char *node, const char *name, char uuid[HX_UUID_LEN])
{
    hx_node *n;
    int r = hx_cluster_online(cl, node, &n);
    if (r < 0)
        return r;
    ssize_t i = hx_node_find_dom(n, name, NULL);
    if (i >= 0)
        hx_strlcpy(uuid, n->doms[i].v.uuid, HX_UUID_LEN);
    hx_cluster_release(n);
    return i >= 0 ? 0 : -ENOENT;
}

int hx_cluster_vm_version(hx_cluster *cl, const char *node, const char *name, const char *uuid,
                          uint64_t *version, long long *changed_ns)
{
    hx_node *n;
    int r = hx_cluster_online(cl, node, &n);
    if (r < 0)
        return r;
    ssize_t i = hx_node_find_dom(n, name, uuid);
    if (i >= 0) {
        *version = n->doms[i].v.version;
        if (changed_ns)
            *changed_ns = n->doms[i].v.changed_ns;
    }
    hx_cluster_release(n);
    return i >= 0 ? 0 : -ENOENT;
}

static char *hx_strdup0(const char *s)
{
    return s ? strdup(s) : NULL;
}

int hx_cluster_vm_view(hx_cluster *cl, const char *node, const char *name, const char *uuid,
                       hx_vm_view *out)
{
    memset(out, 0, sizeof(*out));
    hx_node *n;
    int r = hx_cluster_online(cl, node, &n);
    if (r < 0)
        return r;
    ssize_t i = hx_node_find_dom(n, name, uuid);
    if (i >= 0) {
        const hx_vm_view *v = &n->doms[i].v;
        *out = *v;
        out->xml_config = hx_strdup0(v->xml_config);
        out->xml_live = hx_strdup0(v->xml_live);
        out->config_json = hx_strdup0(v->config_json);
        out->config_error = hx_strdup0(v->config_error);
        out->live_json = hx_strdup0(v->live_json);
    }
    hx_cluster_release(n);
    return i >= 0 ? 0 : -ENOENT;
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

void hx_cluster_counts_get(hx_cluster *cl, hx_cluster_counts *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_lock(&cl->lock);
    for (size_t i = 0; i < cl->n_nodes; i++) {
        hx_node *n = cl->nodes[i];
        c->nodes++;
        pthread_mutex_lock(&n->lock);
        if (n->status == HX_NODE_ONLINE)
            c->online++;
        else if (n->status == HX_NODE_OFFLINE)
            c->offline++;
        else
            c->connecting++;
        for (size_t j = 0; j < n->n_doms; j++) {
            c->vms++;
            int st = n->doms[j].v.state;
            if (st == VIR_DOMAIN_RUNNING || st == VIR_DOMAIN_BLOCKED)
                c->running++;
        }
        pthread_mutex_unlock(&n->lock);
    }
    pthread_mutex_unlock(&cl->lock);
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
