/* A node's thread: the one that owns its libvirt connection.
 *
 * The thread connects, subscribes to domain events, loads every domain once, and from then on
 * refreshes a single domain per event. Between connections it sleeps with a capped backoff,
 * answering the calls that arrive meanwhile.
 */
#include "node_priv.h"
#include "hx_log.h"
#include "hx_util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define HX_BACKOFF_MIN_MS 100
/* Capped low so a node whose libvirtd comes back shows online within about a second. */
#define HX_BACKOFF_MAX_MS 1000

static void hx_node_run(hx_node *n, hx_req *r)
{
    switch (r->type) {
    case HX_REQ_REFRESH:
        hx_node_refresh(n, r->uuid);
        hx_req_finish(n, r, 0);
        break;
    case HX_REQ_REFRESH_ALL:
        hx_node_refresh_all(n);
        hx_req_finish(n, r, 0);
        break;
    case HX_REQ_VM_STATS:
        hx_req_finish(n, r, n->conn ? hx_node_vm_stats(n, r) : -EHOSTDOWN);
        break;
    case HX_REQ_NODE_STATS:
        hx_req_finish(n, r, n->conn ? hx_node_node_stats(n, r) : -EHOSTDOWN);
        break;
    case HX_REQ_EXEC:
        hx_req_finish(n, r, n->conn ? r->fn(n->conn, r->in, &r->out) : -EHOSTDOWN);
        break;
    case HX_REQ_POOL:
        if (n->conn)
            hx_pools_refresh(n, r->uuid);
        hx_req_finish(n, r, 0);
        break;
    }
}

/* Waits for work and does it; returns when the connection closed or the node stops. */
static void hx_node_serve(hx_node *n)
{
    pthread_mutex_lock(&n->lock);
    while (!n->stop && !n->closed && !n->q_head)
        pthread_cond_wait(&n->cond, &n->lock);
    int closed = n->closed, reason = n->close_reason;
    hx_req *batch = n->stop || closed ? NULL : n->q_head;
    if (batch)
        n->q_head = n->q_tail = NULL;
    pthread_mutex_unlock(&n->lock);
    if (closed) {
        hx_node_lost(n, reason);
        return;
    }
    while (batch) {
        hx_req *next = batch->next;
        /* Events come in bursts (define + start + resume): refresh a domain once a batch. */
        int dup = 0;
        /* A caller waiting for its refresh (after an action) gets its own run. */
        if (batch->type == HX_REQ_REFRESH && !batch->is_call)
            for (hx_req *o = next; o && !dup; o = o->next)
                dup = o->type == HX_REQ_REFRESH && strcmp(o->uuid, batch->uuid) == 0;
        if (dup)
            hx_req_finish(n, batch, 0);
        else
            hx_node_run(n, batch);
        batch = next;
    }
}

static void hx_node_sleep(hx_node *n, long ms)
{
    struct timespec ts;
    hx_node_deadline(&ts, ms);
    pthread_mutex_lock(&n->lock);
    while (!n->stop && pthread_cond_timedwait(&n->cond, &n->lock, &ts) != ETIMEDOUT) {
        /* Calls that arrive while offline are answered at once. */
        while (n->q_head) {
            hx_req *r = n->q_head;
            n->q_head = r->next;
            if (!n->q_head)
                n->q_tail = NULL;
            pthread_mutex_unlock(&n->lock);
            hx_req_finish(n, r, -EHOSTDOWN);
            pthread_mutex_lock(&n->lock);
        }
    }
    pthread_mutex_unlock(&n->lock);
}

void *hx_node_main(void *arg)
{
    hx_node *n = arg;
    char tname[16];
    snprintf(tname, sizeof(tname), "node-%.10s", n->name);
    pthread_setname_np(pthread_self(), tname);
    long backoff = HX_BACKOFF_MIN_MS;
    for (;;) {
        if (hx_node_stopping(n))
            break;
        if (!n->conn) {
            if (hx_node_connect(n) < 0) {
                hx_node_sleep(n, backoff);
                backoff = backoff * 2 > HX_BACKOFF_MAX_MS ? HX_BACKOFF_MAX_MS : backoff * 2;
                continue;
            }
            backoff = HX_BACKOFF_MIN_MS;
        }
        hx_node_serve(n);
    }
    int exiting = hx_node_finish_conn(n);
    pthread_mutex_lock(&n->lock);
    hx_req *r = n->q_head;
    n->q_head = n->q_tail = NULL;
    pthread_mutex_unlock(&n->lock);
    while (r) {
        hx_req *next = r->next;
        hx_req_finish(n, r, -EHOSTDOWN);
        r = next;
    }
    if (!exiting)
        hx_node_unref(n);
    return NULL;
}
