/* A node's connection: connect, keepalive, the close callback, event subscriptions, and
 * disconnect. Runs on the node's thread, except the libvirt callbacks (libvirt's event loop).
 *
 * When libvirt reports the connection closed (libvirtd died, keepalive timed out) the node goes
 * offline at once and its thread reconnects with a capped backoff (node_thread.c).
 */
#include "node_priv.h"
#include "hx_log.h"
#include "hx_util.h"

#include <libvirt/virterror.h>
#include <stdio.h>
#include <string.h>

/* libvirt keepalive: a probe every 2 s, connection closed after 3 unanswered ones. */
#define HX_KEEPALIVE_INTERVAL 2
#define HX_KEEPALIVE_COUNT 3

/* ---- libvirt callbacks: they run on libvirt's event loop thread and only queue work. ---- */

static void hx_node_dom_changed(hx_node *n, virDomainPtr dom)
{
    char uuid[VIR_UUID_STRING_BUFLEN];
    if (virDomainGetUUIDString(dom, uuid) == 0)
        hx_node_enqueue_work(n, HX_REQ_REFRESH, uuid);
}

static int hx_node_on_lifecycle(virConnectPtr c, virDomainPtr dom, int event, int detail,
                                void *opaque)
{
    (void)c;
    hx_debug("node %s: domain %s lifecycle event %d/%d", ((hx_node *)opaque)->name,
             virDomainGetName(dom), event, detail);
    hx_node_dom_changed(opaque, dom);
    return 0;
}

static void hx_node_on_device(virConnectPtr c, virDomainPtr dom, const char *alias, void *opaque)
{
    (void)c;
    (void)alias;
    hx_node_dom_changed(opaque, dom);
}

static void hx_node_on_metadata(virConnectPtr c, virDomainPtr dom, int type, const char *nsuri,
                                void *opaque)
{
    (void)c;
    (void)type;
    (void)nsuri;
    hx_node_dom_changed(opaque, dom);
}

static void hx_node_on_balloon(virConnectPtr c, virDomainPtr dom, unsigned long long actual,
                               void *opaque)
{
    (void)c;
    (void)actual;
    hx_node_dom_changed(opaque, dom);
}

static void hx_node_on_close(virConnectPtr c, int reason, void *opaque)
{
    (void)c;
    hx_node *n = opaque;
    pthread_mutex_lock(&n->lock);
    n->closed = 1;
    n->close_reason = reason;
    pthread_cond_signal(&n->cond);
    pthread_mutex_unlock(&n->lock);
}

static void hx_node_subscribe(hx_node *n)
{
    struct {
        int id;
        virConnectDomainEventGenericCallback cb;
    } subs[] = {
        {VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(hx_node_on_lifecycle)},
        {VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, VIR_DOMAIN_EVENT_CALLBACK(hx_node_on_device)},
        {VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, VIR_DOMAIN_EVENT_CALLBACK(hx_node_on_device)},
        {VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, VIR_DOMAIN_EVENT_CALLBACK(hx_node_on_metadata)},
        {VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE, VIR_DOMAIN_EVENT_CALLBACK(hx_node_on_balloon)},
    };
    n->n_cb = 0;
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        int id = virConnectDomainEventRegisterAny(n->conn, NULL, subs[i].id, subs[i].cb, n, NULL);
        if (id < 0)
            hx_warn("node %s: cannot subscribe to domain event %d: %s", n->name, subs[i].id,
                    virGetLastErrorMessage());
        else
            n->cb_ids[n->n_cb++] = id;
    }
    hx_pools_subscribe(n);
}

int hx_node_connect(hx_node *n)
{
    virConnectPtr c = virConnectOpen(n->uri);
    if (!c) {
        hx_autofree char *why = NULL;
        if (asprintf(&why, "cannot connect to %s: %s", n->uri, virGetLastErrorMessage()) < 0)
            why = NULL;
        hx_node_set_status(n, HX_NODE_OFFLINE, why);
        return -1;
    }
    pthread_mutex_lock(&n->lock);
    n->conn = c;
    pthread_mutex_unlock(&n->lock);
    /* Keepalive needs libvirt's event loop (hx_evloop_start); it turns a silent peer into a
     * close callback instead of calls that hang. */
    if (virConnectSetKeepAlive(c, HX_KEEPALIVE_INTERVAL, HX_KEEPALIVE_COUNT) < 0)
        hx_warn("node %s: keepalive not available: %s", n->name, virGetLastErrorMessage());
    pthread_mutex_lock(&n->lock);
    n->closed = 0;
    pthread_mutex_unlock(&n->lock);
    if (virConnectRegisterCloseCallback(c, hx_node_on_close, n, NULL) < 0)
        hx_warn("node %s: cannot register close callback: %s", n->name, virGetLastErrorMessage());
    hx_node_subscribe(n);
    json_t *info = hx_node_gather_info(n);
    hx_node_refresh_all(n);
    hx_pools_refresh_all(n);
    pthread_mutex_lock(&n->lock);
    json_decref(n->info);
    n->info = info;
    pthread_mutex_unlock(&n->lock);
    hx_node_set_status(n, HX_NODE_ONLINE, NULL);
    return 0;
}

/* libvirt's reason for closing a connection, as a sentence for the node's log and status. */
static const char *hx_close_reason_str(int reason)
{
    static const char *const reasons[] = {
        [VIR_CONNECT_CLOSE_REASON_ERROR] = "connection error",
        [VIR_CONNECT_CLOSE_REASON_EOF] = "libvirtd closed the connection",
        [VIR_CONNECT_CLOSE_REASON_KEEPALIVE] = "libvirtd stopped answering keepalive probes",
        [VIR_CONNECT_CLOSE_REASON_CLIENT] = "closed by client"};
    return reason >= 0 && (size_t)reason < sizeof(reasons) / sizeof(reasons[0]) && reasons[reason]
               ? reasons[reason]
               : "connection closed";
}

static void hx_node_disconnect(hx_node *n, const char *why)
{
    if (!n->conn)
        return;
    for (int i = 0; i < n->n_cb; i++)
        virConnectDomainEventDeregisterAny(n->conn, n->cb_ids[i]);
    n->n_cb = 0;
    hx_pools_unsubscribe(n);
    virConnectUnregisterCloseCallback(n->conn, hx_node_on_close);
    pthread_mutex_lock(&n->lock);
    virConnectClose(n->conn);
    n->conn = NULL;
    for (size_t i = 0; i < n->n_doms; i++)
        hx_dom_clear(&n->doms[i]);
    n->n_doms = 0;
    hx_pools_clear(&n->pools);
    pthread_mutex_unlock(&n->lock);
    if (why)
        hx_node_set_status(n, HX_NODE_OFFLINE, why);
}

void hx_node_lost(hx_node *n, int reason)
{
    hx_autofree char *why = NULL;
    if (asprintf(&why, "%s (%s)", hx_close_reason_str(reason), n->uri) < 0)
        why = NULL;
    hx_node_disconnect(n, why);
}

int hx_node_finish_conn(hx_node *n)
{
    pthread_mutex_lock(&n->lock);
    int exiting = n->exiting && n->conn;
    pthread_mutex_unlock(&n->lock);
    if (exiting) {
        /* The process ends: the connection is left to it, and the socket's end is all libvirtd
         * needs to drop this client and its callbacks. Unsubscribing or closing would only
         * put more calls in flight if the node hangs, and libvirt 9.0's libvirtd runs its
         * client close handler without the client's lock: a CONNECT_CLOSE call handled
         * together with the socket's end runs it twice at once ("unexpected incomplete domain
         * callback" in its log, a corrupted heap). The node stays allocated for the rest of
         * the process, so that a late event callback still finds it. */
        virConnectUnregisterCloseCallback(n->conn, hx_node_on_close);
    } else {
        hx_node_disconnect(n, NULL);
    }
    return exiting;
}
