/* The node object: its references, its status, its start and its stop.
 *
 * A node is created with two references, the cluster's and its thread's (node_thread.c); its
 * status changes are logged and emitted here, once each.
 */
#include "node_priv.h"
#include "hx_log.h"
#include "hx_util.h"

#include <errno.h>
#include <string.h>
#include <time.h>

void hx_node_cond_init(pthread_cond_t *c)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
}

void hx_node_deadline(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

void hx_node_ref(hx_node *n)
{
    atomic_fetch_add(&n->refs, 1);
}

static void hx_node_free(hx_node *n)
{
    for (size_t i = 0; i < n->n_doms; i++)
        hx_dom_clear(&n->doms[i]);
    free(n->doms);
    hx_pools_clear(&n->pools);
    free(n->uri);
    free(n->last_error);
    json_decref(n->info);
    pthread_mutex_destroy(&n->lock);
    pthread_cond_destroy(&n->cond);
    pthread_cond_destroy(&n->status_cond);
    free(n);
}

void hx_node_unref(hx_node *n)
{
    if (atomic_fetch_sub(&n->refs, 1) == 1)
        hx_node_free(n);
}

void hx_node_set_status(hx_node *n, hx_node_status st, const char *why)
{
    pthread_mutex_lock(&n->lock);
    int same = n->status == st && ((!why && !n->last_error) ||
                                   (why && n->last_error && strcmp(why, n->last_error) == 0));
    if (!same) {
        if (n->status != st)
            n->status_since_ns = hx_now_real_ns();
        n->status = st;
        free(n->last_error);
        n->last_error = why ? strdup(why) : NULL;
        n->version = hx_cluster_stamp(n->cl);
        n->changed_ns = hx_now_real_ns();
        pthread_cond_broadcast(&n->status_cond);
    }
    pthread_mutex_unlock(&n->lock);
    if (same)
        return;
    if (st == HX_NODE_ONLINE)
        hx_info("node %s is online (%s)", n->name, n->uri);
    else
        hx_warn("node %s is %s: %s", n->name, hx_node_status_str(st), why ? why : "");
    hx_change c = {.kind = HX_CHANGE_NODE,
                   .node = n->name,
                   .state = hx_node_status_str(st),
                   .state_changed = 1};
    hx_cluster_emit(n->cl, &c);
}

int hx_node_stopping(hx_node *n)
{
    pthread_mutex_lock(&n->lock);
    int stop = n->stop;
    pthread_mutex_unlock(&n->lock);
    return stop;
}

hx_node *hx_node_start(hx_cluster *cl, const char *name, const char *uri)
{
    hx_node *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    atomic_init(&n->refs, 2); /* the cluster's and the thread's */
    n->cl = cl;
    hx_strlcpy(n->name, name, sizeof(n->name));
    n->uri = strdup(uri);
    n->status = HX_NODE_CONNECTING;
    n->status_since_ns = hx_now_real_ns();
    pthread_mutex_init(&n->lock, NULL);
    hx_node_cond_init(&n->cond);
    hx_node_cond_init(&n->status_cond);
    n->version = hx_cluster_stamp(cl);
    n->changed_ns = hx_now_real_ns();
    if (!n->uri || pthread_create(&n->thread, NULL, hx_node_main, n) != 0) {
        hx_err("node %s: cannot start its thread", name);
        hx_node_free(n);
        return NULL;
    }
    return n;
}

virConnectPtr hx_node_conn(hx_node *n)
{
    pthread_mutex_lock(&n->lock);
    virConnectPtr c = n->status == HX_NODE_ONLINE && !n->stop ? n->conn : NULL;
    if (c)
        virConnectRef(c);
    pthread_mutex_unlock(&n->lock);
    return c;
}

static void hx_node_signal_stop(hx_node *n)
{
    pthread_mutex_lock(&n->lock);
    n->stop = 1;
    pthread_cond_broadcast(&n->cond);
    pthread_cond_broadcast(&n->status_cond);
    pthread_mutex_unlock(&n->lock);
}

void hx_node_stop(hx_node *n)
{
    hx_node_signal_stop(n);
    /* Nobody joins: a thread stuck in a libvirt call must not hold up a reconfiguration. */
    pthread_detach(n->thread);
}

void hx_node_stop_begin(hx_node *n)
{
    pthread_mutex_lock(&n->lock);
    n->exiting = 1;
    pthread_mutex_unlock(&n->lock);
    hx_node_signal_stop(n);
}

/* libvirtd 9.0 corrupts its heap when a client goes away while one of its event
 * (de)registration calls is still being handled: the close handler and the registration race
 * over the client's callback list ("unexpected incomplete storage callback", "could not find
 * event callback N for deletion" in libvirtd's log, then a segfault in its event loop). A
 * process that exits while its node threads subscribe does exactly that, so the daemon lets
 * each node thread finish connecting before it exits, up to the deadline (the connection itself
 * is then left to the process's end: hx_node_main). */
void hx_node_stop_finish(hx_node *n, const struct timespec *deadline)
{
    int r = pthread_timedjoin_np(n->thread, NULL, deadline);
    if (r == 0)
        return;
    hx_warn("node %s: still in a libvirt call at exit (%s); not waiting for it", n->name,
            strerror(r));
    pthread_detach(n->thread);
}
