/* The queue of requests a node's thread runs: work queued by libvirt's event callbacks (nobody
 * waits), and calls from other threads, which wait a bounded time for the answer.
 */
#include "node_priv.h"
#include "hx_log.h"
#include "hx_util.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

static void hx_node_enqueue(hx_node *n, hx_req *r)
{
    r->next = NULL;
    if (n->q_tail)
        n->q_tail->next = r;
    else
        n->q_head = r;
    n->q_tail = r;
    pthread_cond_signal(&n->cond);
}

void hx_node_enqueue_work(hx_node *n, hx_req_type type, const char *uuid)
{
    hx_req *r = calloc(1, sizeof(*r));
    if (!r) {
        hx_err("node %s: out of memory queueing a refresh of %s", n->name, uuid);
        return;
    }
    r->type = type;
    hx_strlcpy(r->uuid, uuid, sizeof(r->uuid));
    pthread_mutex_lock(&n->lock);
    hx_node_enqueue(n, r);
    pthread_mutex_unlock(&n->lock);
}

/* Frees a call once neither its caller nor the node's thread holds it. */
static void hx_req_free(hx_req *r)
{
    json_decref(r->out);
    json_decref(r->in);
    pthread_cond_destroy(&r->done_cond);
    free(r);
}

void hx_req_finish(hx_node *n, hx_req *r, int rc)
{
    if (!r->is_call) {
        free(r);
        return;
    }
    pthread_mutex_lock(&n->lock);
    r->rc = rc;
    r->done = 1;
    pthread_cond_signal(&r->done_cond);
    int last = --r->refs == 0;
    pthread_mutex_unlock(&n->lock);
    if (last)
        hx_req_free(r);
}

/* Queues r (type and arguments set) as a call and waits for it. */
static int hx_node_call_req(hx_node *n, hx_req *r, json_t **out)
{
    r->is_call = 1;
    r->refs = 2;
    hx_node_cond_init(&r->done_cond);
    struct timespec ts;
    hx_node_deadline(&ts, HX_NODE_CALL_TIMEOUT_MS);
    pthread_mutex_lock(&n->lock);
    if (n->status != HX_NODE_ONLINE || n->stop) {
        pthread_mutex_unlock(&n->lock);
        hx_req_free(r);
        return -EHOSTDOWN;
    }
    hx_node_enqueue(n, r);
    while (!r->done)
        if (pthread_cond_timedwait(&r->done_cond, &n->lock, &ts) == ETIMEDOUT)
            break;
    int rc = r->done ? r->rc : -ETIMEDOUT;
    if (r->done && rc == 0 && out) {
        *out = r->out;
        r->out = NULL;
    }
    int last = --r->refs == 0;
    pthread_mutex_unlock(&n->lock);
    if (rc == -ETIMEDOUT)
        hx_warn("node %s: no answer within %d ms", n->name, HX_NODE_CALL_TIMEOUT_MS);
    if (last)
        hx_req_free(r);
    return rc;
}

int hx_node_exec(hx_node *n, hx_node_fn fn, json_t *in, json_t **out)
{
    hx_req *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->type = HX_REQ_EXEC;
    r->fn = fn;
    r->in = json_incref(in);
    return hx_node_call_req(n, r, out);
}

int hx_node_call(hx_node *n, hx_req_type type, const char *name, const char *uuid, json_t **out)
{
    hx_req *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->type = type;
    if (name)
        hx_strlcpy(r->name, name, sizeof(r->name));
    if (uuid)
        hx_strlcpy(r->uuid, uuid, sizeof(r->uuid));
    return hx_node_call_req(n, r, out);
}
