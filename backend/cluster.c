/* The set of nodes, kept in line with the configuration; the cluster-wide version stamps and
 * change listener; counts for cluster/status. The read API over the nodes' caches is
 * cluster_read.c. */
#include "auto.h"
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
