/* Reading domains from libvirt into the node's cache: one domain after its event, or every
 * domain at connect. Runs on the node's thread.
 */
#include "node_priv.h"
#include "hx_domxml.h"
#include "hx_log.h"
#include "hx_util.h"

#include <libvirt/virterror.h>
#include <stdlib.h>
#include <string.h>

static int64_t hx_node_disk_size(const char *source, void *opaque)
{
    hx_node *n = opaque;
    virStorageVolPtr vol = virStorageVolLookupByPath(n->conn, source);
    const char *slash = strchr(source, '/');
    if (!vol && slash && slash != source) {
        /* A volume disk: "pool/volume". */
        char pool[256];
        if ((size_t)(slash - source) < sizeof(pool)) {
            memcpy(pool, source, (size_t)(slash - source));
            pool[slash - source] = '\0';
            virStoragePoolPtr p = virStoragePoolLookupByName(n->conn, pool);
            if (p) {
                vol = virStorageVolLookupByName(p, slash + 1);
                virStoragePoolFree(p);
            }
        }
    }
    if (!vol)
        return -1; /* not in any pool of this node: size unknown, shown as null */
    virStorageVolInfo info;
    int r = virStorageVolGetInfo(vol, &info);
    virStorageVolFree(vol);
    return r < 0 ? -1 : (int64_t)info.capacity;
}

static char *hx_node_config_json(hx_node *n, const char *xml, int autostart, char **err)
{
    json_t *cfg = hx_domxml_to_config(xml, autostart, hx_node_disk_size, n, err);
    if (!cfg)
        return NULL;
    char *s = hx_domxml_config_dump(cfg);
    json_decref(cfg);
    return s;
}

/* Reads one domain's facts into d. Returns -1 when libvirt failed (message logged). */
static int hx_node_load_dom(hx_node *n, virDomainPtr dom, hx_dom *d)
{
    memset(d, 0, sizeof(*d));
    if (virDomainRef(dom) == 0)
        d->dom = dom;
    hx_strlcpy(d->v.name, virDomainGetName(dom), sizeof(d->v.name));
    virDomainGetUUIDString(dom, d->v.uuid);
    if (virDomainGetState(dom, &d->v.state, &d->v.reason, 0) < 0)
        goto fail;
    d->v.id = d->v.state == VIR_DOMAIN_SHUTOFF ? -1 : (int)virDomainGetID(dom);
    d->v.persistent = virDomainIsPersistent(dom) == 1;
    if (d->v.persistent && virDomainGetAutostart(dom, &d->v.autostart) < 0)
        goto fail;
    d->v.xml_config = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE);
    if (!d->v.xml_config)
        goto fail;
    d->v.config_json = hx_node_config_json(n, d->v.xml_config, d->v.autostart, &d->v.config_error);
    if (!d->v.config_json)
        hx_err("node %s: domain %s: %s", n->name, d->v.name,
               d->v.config_error ? d->v.config_error : "cannot render config.json");
    if (d->v.id >= 0) {
        d->v.xml_live = virDomainGetXMLDesc(dom, 0);
        if (!d->v.xml_live)
            goto fail;
        hx_autofree char *lerr = NULL;
        d->v.live_json = hx_node_config_json(n, d->v.xml_live, d->v.autostart, &lerr);
    }
    return 0;
fail:
    hx_err("node %s: cannot read domain %s: %s", n->name, d->v.name, virGetLastErrorMessage());
    hx_dom_clear(d);
    return -1;
}

void hx_node_refresh(hx_node *n, const char *uuid)
{
    uint64_t read_stamp = hx_cluster_version(n->cl);
    hx_autodom virDomainPtr dom = virDomainLookupByUUIDString(n->conn, uuid);
    if (!dom) {
        if (virGetLastErrorCode() == VIR_ERR_NO_DOMAIN)
            hx_node_forget_uuid(n, uuid);
        else
            hx_err("node %s: cannot look up domain %s: %s", n->name, uuid,
                   virGetLastErrorMessage());
        return;
    }
    hx_dom d;
    if (hx_node_load_dom(n, dom, &d) == 0)
        hx_node_store_dom(n, &d, read_stamp);
}

static int hx_uuid_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

void hx_node_refresh_all(hx_node *n)
{
    virDomainPtr *doms = NULL;
    /* Stamped before libvirt is asked: a state our own action notes from here on is newer than
     * what this load reads (hx_node_store_dom keeps it). */
    uint64_t read_stamp = hx_cluster_version(n->cl);
    int nd = virConnectListAllDomains(n->conn, &doms, 0);
    if (nd < 0) {
        hx_err("node %s: cannot list domains: %s", n->name, virGetLastErrorMessage());
        return;
    }
    char(*seen)[HX_UUID_LEN] = calloc((size_t)nd + 1, HX_UUID_LEN);
    /* A node with thousands of domains takes a while to load: a stop (the daemon exits) ends
     * the load early, and then nothing is forgotten. */
    int complete = seen != NULL;
    for (int i = 0; i < nd; i++) {
        if (complete && !hx_node_stopping(n)) {
            hx_dom d;
            virDomainGetUUIDString(doms[i], seen[i]);
            if (hx_node_load_dom(n, doms[i], &d) == 0)
                hx_node_store_dom(n, &d, read_stamp);
        } else {
            complete = 0;
        }
        virDomainFree(doms[i]);
    }
    free(doms);
    if (!complete) {
        free(seen);
        return;
    }
    /* Forget what libvirt no longer has (sorted, so 10000 domains are not compared with
     * 10000 each). */
    qsort(seen, (size_t)nd, HX_UUID_LEN, hx_uuid_cmp);
    for (;;) {
        char gone[HX_UUID_LEN] = "";
        pthread_mutex_lock(&n->lock);
        for (size_t i = 0; i < n->n_doms && !gone[0]; i++)
            if (!bsearch(n->doms[i].v.uuid, seen, (size_t)nd, HX_UUID_LEN, hx_uuid_cmp))
                hx_strlcpy(gone, n->doms[i].v.uuid, sizeof(gone));
        pthread_mutex_unlock(&n->lock);
        if (!gone[0])
            break;
        hx_node_forget_uuid(n, gone);
    }
    free(seen);
}
