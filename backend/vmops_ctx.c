/* The frame of every change to a VM: error sentences and libvirt's errnos, the per-VM operation
 * locks, the context a change holds (node, connection, view, domain, lock), the cache refresh. */
#include "auto.h"
#include "hx_log.h"
#include "hx_util.h"
#include "node.h"
#include "vmops_priv.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The errno for libvirt's last error. */
int hx_virt_errno(void)
{
    switch (virGetLastErrorCode()) {
    case VIR_ERR_NO_DOMAIN:
    case VIR_ERR_NO_DOMAIN_SNAPSHOT:
    case VIR_ERR_NO_STORAGE_POOL:
    case VIR_ERR_NO_STORAGE_VOL:
        return -ENOENT;
    case VIR_ERR_OPERATION_INVALID:
    case VIR_ERR_OPERATION_ABORTED:
        return -EBUSY;
    case VIR_ERR_OPERATION_TIMEOUT:
    case VIR_ERR_AGENT_UNRESPONSIVE:
        return -ETIMEDOUT;
    case VIR_ERR_NO_SUPPORT:
    case VIR_ERR_OPERATION_UNSUPPORTED:
    case VIR_ERR_ARGUMENT_UNSUPPORTED:
        return -ENOTSUP;
    case VIR_ERR_XML_ERROR:
    case VIR_ERR_XML_DETAIL:
    case VIR_ERR_CONFIG_UNSUPPORTED:
    case VIR_ERR_INVALID_ARG:
        return -EINVAL;
    case VIR_ERR_NO_CONNECT:
    case VIR_ERR_INVALID_CONN:
    case VIR_ERR_RPC:
        return -EHOSTDOWN;
    default:
        return -EIO;
    }
}

/* ---- per-VM operation locks: one operation at a time, a second one gets EBUSY at once ---- */

static pthread_mutex_t hx_locks_mu = PTHREAD_MUTEX_INITIALIZER;
static char (*hx_locks)[HX_UUID_LEN];
static size_t hx_n_locks, hx_cap_locks;

int hx_vm_trylock(const char *uuid)
{
    pthread_mutex_lock(&hx_locks_mu);
    for (size_t i = 0; i < hx_n_locks; i++)
        if (strcmp(hx_locks[i], uuid) == 0) {
            pthread_mutex_unlock(&hx_locks_mu);
            return -EBUSY;
        }
    if (hx_n_locks == hx_cap_locks) {
        size_t cap = hx_cap_locks ? hx_cap_locks * 2 : 16;
        void *nl = realloc(hx_locks, cap * HX_UUID_LEN);
        if (!nl) {
            pthread_mutex_unlock(&hx_locks_mu);
            return -ENOMEM;
        }
        hx_locks = nl;
        hx_cap_locks = cap;
    }
    hx_strlcpy(hx_locks[hx_n_locks++], uuid, HX_UUID_LEN);
    pthread_mutex_unlock(&hx_locks_mu);
    return 0;
}

void hx_vm_unlock(const char *uuid)
{
    pthread_mutex_lock(&hx_locks_mu);
    for (size_t i = 0; i < hx_n_locks; i++)
        if (strcmp(hx_locks[i], uuid) == 0) {
            memmove(&hx_locks[i], &hx_locks[i + 1], (hx_n_locks - i - 1) * HX_UUID_LEN);
            hx_n_locks--;
            break;
        }
    pthread_mutex_unlock(&hx_locks_mu);
}

/* ---- common preamble: node, connection, lock, cached view, domain ---- */

void hx_vmctx_clear(hx_vmctx *c)
{
    if (c->dom)
        virDomainFree(c->dom);
    if (c->conn)
        virConnectClose(c->conn);
    if (c->n)
        hx_node_unref(c->n);
    hx_vm_view_clear(&c->view);
    if (c->uuid[0])
        hx_vm_unlock(c->uuid);
    memset(c, 0, sizeof(*c));
}

int hx_vmctx_open(hx_cluster *cl, const char *node, const char *vm, const char *uuid, hx_vmctx *c,
                  char **msg)
{
    memset(c, 0, sizeof(*c));
    c->n = hx_cluster_get(cl, node);
    if (!c->n)
        return hx_fail(msg, -ENOENT, "node %s does not exist", node);
    int r = hx_cluster_vm_view(cl, node, vm, uuid, &c->view);
    if (r == -EHOSTDOWN)
        return hx_fail(msg, r, "node %s is offline", node);
    if (r < 0)
        return hx_fail(msg, r, "VM %s does not exist on node %s", vm, node);
    r = hx_vm_trylock(c->view.uuid);
    if (r == -EBUSY)
        return hx_fail(msg, r, "VM %s is busy with another operation", vm);
    if (r < 0)
        return hx_fail(msg, r, "VM %s: out of memory", vm);
    hx_strlcpy(c->uuid, c->view.uuid, sizeof(c->uuid));
    c->conn = hx_node_conn(c->n);
    if (!c->conn)
        return hx_fail(msg, -EHOSTDOWN, "node %s is offline", node);
    /* The node's cache holds a domain handle: no lookup round trip on the action's path. */
    c->dom = hx_node_dom(c->n, c->view.uuid);
    if (!c->dom)
        c->dom = virDomainLookupByUUIDString(c->conn, c->view.uuid);
    if (!c->dom) {
        int e = hx_virt_errno();
        return hx_fail(msg, e, "VM %s on node %s: %s", vm, node, virGetLastErrorMessage());
    }
    return 0;
}

/* Brings the node's cache up to date for this VM before the call returns. */
void hx_vm_refresh(hx_node *n, const char *name, const char *uuid)
{
    int r = hx_node_call(n, HX_REQ_REFRESH, name, uuid, NULL);
    if (r < 0)
        hx_warn("node %s: cannot refresh VM %s after a change: %s", n->name, name, strerror(-r));
}
