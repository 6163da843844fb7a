/* One node: the thread that owns its libvirt connection, and the cache of its VMs.
 *
 * The thread connects, subscribes to domain events, loads every domain once, and from then on
 * refreshes a single domain per event. Everything libvirt says arrives here; readers copy out of
 * the cache under n->lock. When libvirt reports the connection closed (libvirtd died, keepalive
 * timed out) the node goes offline at once and the thread reconnects with a capped backoff.
 */
#include "node.h"
#include "xmltext.h"
#include "hx_domxml.h"
#include "hx_log.h"
#include "hx_stats.h"
#include "hx_util.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <string.h>
#include <time.h>

#define HX_BACKOFF_MIN_MS 100
/* Capped low so a node whose libvirtd comes back shows online within about a second. */
#define HX_BACKOFF_MAX_MS 1000
/* libvirt keepalive: a probe every 2 s, connection closed after 3 unanswered ones. */
#define HX_KEEPALIVE_INTERVAL 2
#define HX_KEEPALIVE_COUNT 3

static void hx_virdomp(virDomainPtr *d)
{
    if (*d)
        virDomainFree(*d);
}
#define hx_autodom __attribute__((cleanup(hx_virdomp)))

void hx_dom_clear(hx_dom *d)
{
    hx_vm_view_clear(&d->v);
    if (d->dom)
        virDomainFree(d->dom);
    d->dom = NULL;
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

static void hx_node_emit(hx_node *n, hx_change_kind kind, const char *vm, const char *uuid,
                         int appeared, int vanished)
{
    hx_change c = {.kind = kind,
                   .node = n->name,
                   .vm_name = vm,
                   .vm_uuid = uuid,
                   .appeared = appeared,
                   .vanished = vanished};
    hx_cluster_emit(n->cl, &c);
}

/* Sets status and reason; logs and emits only on a real change. Lock not held. */
static void hx_node_set_status(hx_node *n, hx_node_status st, const char *why)
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

/* ---- loading what libvirt knows ---- */

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

static int hx_str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int hx_dom_same(const hx_dom *a, const hx_dom *b)
{
    return strcmp(a->v.name, b->v.name) == 0 && a->v.state == b->v.state &&
           a->v.reason == b->v.reason && a->v.id == b->v.id && a->v.persistent == b->v.persistent &&
           a->v.autostart == b->v.autostart && hx_str_eq(a->v.xml_config, b->v.xml_config) &&
           hx_str_eq(a->v.xml_live, b->v.xml_live);
}

static int hx_dom_cmp_name(const void *a, const void *b)
{
    return strcmp(((const hx_dom *)a)->v.name, ((const hx_dom *)b)->v.name);
}

ssize_t hx_node_find_dom(hx_node *n, const char *name, const char *uuid)
{
    hx_dom key;
    hx_strlcpy(key.v.name, name, sizeof(key.v.name));
    hx_dom *d = bsearch(&key, n->doms, n->n_doms, sizeof(hx_dom), hx_dom_cmp_name);
    if (!d || (uuid && strcmp(d->v.uuid, uuid) != 0))
        return -1;
    return d - n->doms;
}

static ssize_t hx_node_find_uuid(hx_node *n, const char *uuid)
{
    for (size_t i = 0; i < n->n_doms; i++)
        if (strcmp(n->doms[i].v.uuid, uuid) == 0)
            return (ssize_t)i;
    return -1;
}

static void hx_node_remove_at(hx_node *n, size_t i)
{
    hx_dom_clear(&n->doms[i]);
    memmove(&n->doms[i], &n->doms[i + 1], (n->n_doms - i - 1) * sizeof(hx_dom));
    n->n_doms--;
}

/* Stores d (taking its strings) in the cache; emits a change when something differs. */
static void hx_node_store_dom(hx_node *n, hx_dom *d, uint64_t read_stamp)
{
    char name[HX_VM_NAME_MAX], old_name[HX_VM_NAME_MAX] = "";
    hx_strlcpy(name, d->v.name, sizeof(name));
    int appeared = 0, changed = 1, state_changed = 1, config_changed = 1;
    const char *state = hx_stats_state_name(d->v.state, d->v.reason);
    pthread_mutex_lock(&n->lock);
    ssize_t i = hx_node_find_uuid(n, d->v.uuid);
    if (i >= 0) {
        hx_dom *old = &n->doms[i];
        d->noted_stamp = old->noted_stamp;
        if (old->noted_stamp > read_stamp) {
            /* Our own action noted a newer state after this refresh read libvirt; libvirt's
             * event for that action refreshes again. */
            d->v.state = old->v.state;
            d->v.reason = old->v.reason;
            state = hx_stats_state_name(d->v.state, d->v.reason);
        }
        state_changed = old->v.state != d->v.state || old->v.reason != d->v.reason;
        config_changed =
            !hx_str_eq(old->v.xml_config, d->v.xml_config) || old->v.autostart != d->v.autostart;
        if (hx_dom_same(old, d)) {
            changed = 0;
            hx_dom_clear(d);
        } else {
            d->prev_cpu_ns = old->prev_cpu_ns;
            d->prev_wall_ns = old->prev_wall_ns;
            if (strcmp(old->v.name, d->v.name) != 0)
                hx_strlcpy(old_name, old->v.name, sizeof(old_name));
            hx_node_remove_at(n, (size_t)i);
        }
    } else {
        appeared = 1;
    }
    if (changed) {
        if (n->n_doms == n->cap_doms) {
            size_t cap = n->cap_doms ? n->cap_doms * 2 : 16;
            hx_dom *nd = realloc(n->doms, cap * sizeof(hx_dom));
            if (!nd) {
                pthread_mutex_unlock(&n->lock);
                hx_err("node %s: out of memory storing domain %s", n->name, name);
                hx_dom_clear(d);
                return;
            }
            n->doms = nd;
            n->cap_doms = cap;
        }
        d->v.version = hx_cluster_stamp(n->cl);
        d->v.changed_ns = hx_now_real_ns();
        size_t pos = 0;
        while (pos < n->n_doms && strcmp(n->doms[pos].v.name, d->v.name) < 0)
            pos++;
        memmove(&n->doms[pos + 1], &n->doms[pos], (n->n_doms - pos) * sizeof(hx_dom));
        n->doms[pos] = *d;
        n->n_doms++;
        if (appeared || old_name[0]) {
            n->version = d->v.version;
            n->changed_ns = d->v.changed_ns;
        }
    }
    char uuid[HX_UUID_LEN];
    hx_strlcpy(uuid, d->v.uuid, sizeof(uuid));
    pthread_mutex_unlock(&n->lock);
    if (old_name[0])
        hx_node_emit(n, HX_CHANGE_VM, old_name, uuid, 0, 1);
    if (changed) {
        hx_change c = {.kind = HX_CHANGE_VM,
                       .node = n->name,
                       .vm_name = name,
                       .vm_uuid = uuid,
                       .appeared = appeared || old_name[0],
                       .state = state,
                       .state_changed = state_changed,
                       .config_changed = config_changed && !appeared};
        hx_cluster_emit(n->cl, &c);
    }
}

static void hx_node_forget_uuid(hx_node *n, const char *uuid)
{
    char name[HX_VM_NAME_MAX] = "";
    pthread_mutex_lock(&n->lock);
    ssize_t i = hx_node_find_uuid(n, uuid);
    if (i >= 0) {
        hx_strlcpy(name, n->doms[i].v.name, sizeof(name));
        hx_node_remove_at(n, (size_t)i);
        n->version = hx_cluster_stamp(n->cl);
        n->changed_ns = hx_now_real_ns();
    }
    pthread_mutex_unlock(&n->lock);
    if (name[0])
        hx_node_emit(n, HX_CHANGE_VM, name, uuid, 0, 1);
}

static void hx_node_refresh(hx_node *n, const char *uuid)
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

static int hx_node_stopping(hx_node *n)
{
    pthread_mutex_lock(&n->lock);
    int stop = n->stop;
    pthread_mutex_unlock(&n->lock);
    return stop;
}

static void hx_node_refresh_all(hx_node *n)
{
    virDomainPtr *doms = NULL;
    int nd = virConnectListAllDomains(n->conn, &doms, 0);
    if (nd < 0) {
        hx_err("node %s: cannot list domains: %s", n->name, virGetLastErrorMessage());
        return;
    }
    uint64_t read_stamp = hx_cluster_version(n->cl);
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

static void hx_xml_freedocp(xmlDocPtr *d)
{
    if (*d)
        xmlFreeDoc(*d);
}

static void hx_json_set_str(json_t *o, const char *k, const char *v)
{
    json_object_set_new(o, k, v ? json_string(v) : json_null());
}

static json_t *hx_version_json(unsigned long v)
{
    char s[48];
    snprintf(s, sizeof(s), "%lu.%lu.%lu", v / 1000000, (v / 1000) % 1000, v % 1000);
    return json_string(s);
}

/* Host facts for info.json, gathered once per connection. */
static json_t *hx_node_gather_info(hx_node *n)
{
    virConnectPtr c = n->conn;
    json_t *info = json_object();
    hx_autofree char *host = virConnectGetHostname(c);
    hx_json_set_str(info, "hostname", host);
    hx_autofree char *caps = virConnectGetCapabilities(c);
    __attribute__((cleanup(hx_xml_freedocp))) xmlDocPtr doc =
        caps ? xmlReadMemory(caps, (int)strlen(caps), "capabilities.xml", NULL,
                             XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
             : NULL;
    hx_autofree char *host_uuid = doc ? hx_xml_text(doc, "/capabilities/host/uuid") : NULL;
    hx_autofree char *cpu_model = doc ? hx_xml_text(doc, "/capabilities/host/cpu/model") : NULL;
    hx_autofree char *cpu_vendor = doc ? hx_xml_text(doc, "/capabilities/host/cpu/vendor") : NULL;
    hx_json_set_str(info, "host_uuid", host_uuid);
    virNodeInfo ni;
    if (virNodeGetInfo(c, &ni) == 0) {
        json_t *cpu = json_object();
        json_object_set_new(cpu, "arch", json_string(ni.model));
        hx_json_set_str(cpu, "model", cpu_model);
        hx_json_set_str(cpu, "vendor", cpu_vendor);
        json_object_set_new(cpu, "cpus", json_integer(ni.cpus));
        json_object_set_new(cpu, "mhz", json_integer(ni.mhz));
        json_object_set_new(cpu, "numa_nodes", json_integer(ni.nodes));
        json_object_set_new(cpu, "sockets", json_integer(ni.sockets));
        json_object_set_new(cpu, "cores", json_integer(ni.cores));
        json_object_set_new(cpu, "threads", json_integer(ni.threads));
        json_object_set_new(info, "cpu", cpu);
        json_object_set_new(info, "memory_mib", json_integer((json_int_t)(ni.memory / 1024)));
    } else {
        hx_warn("node %s: cannot read node info: %s", n->name, virGetLastErrorMessage());
    }
    unsigned long lib = 0, hv = 0;
    if (virConnectGetLibVersion(c, &lib) == 0)
        json_object_set_new(info, "libvirt_version", hx_version_json(lib));
    const char *type = virConnectGetType(c);
    hx_json_set_str(info, "hypervisor", type);
    if (virConnectGetVersion(c, &hv) == 0)
        json_object_set_new(info, "hypervisor_version", hx_version_json(hv));
    char when[40];
    hx_stats_iso_time(hx_now_real_ns(), when, sizeof(when));
    json_object_set_new(info, "connected_at", json_string(when));
    return info;
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

static int hx_node_connect(hx_node *n)
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

static const char *hx_close_reason_str(int reason)
{
    switch (reason) {
    case VIR_CONNECT_CLOSE_REASON_ERROR:
        return "connection error";
    case VIR_CONNECT_CLOSE_REASON_EOF:
        return "libvirtd closed the connection";
    case VIR_CONNECT_CLOSE_REASON_KEEPALIVE:
        return "libvirtd stopped answering keepalive probes";
    case VIR_CONNECT_CLOSE_REASON_CLIENT:
        return "closed by client";
    default:
        return "connection closed";
    }
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

/* ---- live calls ---- */

static int hx_node_vm_stats(hx_node *n, hx_req *r)
{
    hx_autodom virDomainPtr dom = virDomainLookupByUUIDString(n->conn, r->uuid);
    if (!dom)
        return virGetLastErrorCode() == VIR_ERR_NO_DOMAIN ? -ENOENT : -EIO;
    virDomainPtr list[2] = {dom, NULL};
    virDomainStatsRecordPtr *recs = NULL;
    unsigned int what = VIR_DOMAIN_STATS_STATE | VIR_DOMAIN_STATS_CPU_TOTAL |
                        VIR_DOMAIN_STATS_BALLOON | VIR_DOMAIN_STATS_VCPU |
                        VIR_DOMAIN_STATS_INTERFACE | VIR_DOMAIN_STATS_BLOCK;
    long long wall = hx_now_real_ns();
    int nr = virDomainListGetStats(list, what, &recs, 0);
    if (nr < 1) {
        hx_err("node %s: cannot read statistics of domain %s: %s", n->name, r->name,
               virGetLastErrorMessage());
        if (recs)
            virDomainStatsRecordListFree(recs);
        return -EIO;
    }
    json_t *doc = hx_stats_group(recs[0]->params, recs[0]->nparams);
    virDomainStatsRecordListFree(recs);
    json_t *st = json_object_get(doc, "state");
    int state = (int)json_integer_value(json_object_get(st, "state"));
    int reason = (int)json_integer_value(json_object_get(st, "reason"));
    json_object_set_new(doc, "state", json_string(hx_stats_state_name(state, reason)));
    json_t *cpu = json_object_get(doc, "cpu");
    json_t *t = json_object_get(cpu, "time");
    double pct = -1;
    if (json_is_integer(t)) {
        unsigned long long now_cpu = (unsigned long long)json_integer_value(t);
        pthread_mutex_lock(&n->lock);
        ssize_t i = hx_node_find_uuid(n, r->uuid);
        if (i >= 0) {
            hx_dom *d = &n->doms[i];
            pct = hx_stats_cpu_percent(d->prev_cpu_ns, d->prev_wall_ns, now_cpu, wall);
            d->prev_cpu_ns = now_cpu;
            d->prev_wall_ns = wall;
        }
        pthread_mutex_unlock(&n->lock);
    }
    json_object_set_new(doc, "cpu_percent", pct < 0 ? json_null() : json_real(pct));
    char when[40];
    hx_stats_iso_time(wall, when, sizeof(when));
    json_object_set_new(doc, "sampled_at", json_string(when));
    r->out = doc;
    return 0;
}

static int hx_node_node_stats(hx_node *n, hx_req *r)
{
    int np = 0;
    if (virNodeGetCPUStats(n->conn, VIR_NODE_CPU_STATS_ALL_CPUS, NULL, &np, 0) < 0 || np <= 0)
        goto fail;
    virNodeCPUStats cpu[16];
    if (np > 16)
        np = 16;
    if (virNodeGetCPUStats(n->conn, VIR_NODE_CPU_STATS_ALL_CPUS, cpu, &np, 0) < 0)
        goto fail;
    int nm = 0;
    if (virNodeGetMemoryStats(n->conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, NULL, &nm, 0) < 0)
        goto fail;
    virNodeMemoryStats mem[16];
    if (nm > 16)
        nm = 16;
    if (virNodeGetMemoryStats(n->conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, mem, &nm, 0) < 0)
        goto fail;
    long long wall = hx_now_real_ns();
    json_t *doc = json_object();
    json_t *jc = json_object();
    unsigned long long busy = 0, total = 0;
    for (int i = 0; i < np; i++) {
        char key[VIR_NODE_CPU_STATS_FIELD_LENGTH + 4];
        snprintf(key, sizeof(key), "%.*s_ns", VIR_NODE_CPU_STATS_FIELD_LENGTH - 1, cpu[i].field);
        json_object_set_new(jc, key, json_integer((json_int_t)cpu[i].value));
        if (strcmp(cpu[i].field, VIR_NODE_CPU_STATS_IDLE) != 0 &&
            strcmp(cpu[i].field, VIR_NODE_CPU_STATS_IOWAIT) != 0)
            busy += cpu[i].value;
        total += cpu[i].value;
    }
    json_object_set_new(doc, "cpu", jc);
    pthread_mutex_lock(&n->lock);
    double pct = -1;
    if (n->prev_total_ns && total > n->prev_total_ns && busy >= n->prev_busy_ns)
        pct = (double)(busy - n->prev_busy_ns) * 100.0 / (double)(total - n->prev_total_ns);
    n->prev_busy_ns = busy;
    n->prev_total_ns = total;
    pthread_mutex_unlock(&n->lock);
    json_object_set_new(doc, "cpu_percent", pct < 0 ? json_null() : json_real(pct));
    json_t *jm = json_object();
    unsigned long long mtotal = 0, mfree = 0, mbuf = 0, mcache = 0;
    for (int i = 0; i < nm; i++) {
        char key[VIR_NODE_MEMORY_STATS_FIELD_LENGTH + 5];
        snprintf(key, sizeof(key), "%.*s_kib", VIR_NODE_MEMORY_STATS_FIELD_LENGTH - 1,
                 mem[i].field);
        json_object_set_new(jm, key, json_integer((json_int_t)mem[i].value));
        if (strcmp(mem[i].field, VIR_NODE_MEMORY_STATS_TOTAL) == 0)
            mtotal = mem[i].value;
        else if (strcmp(mem[i].field, VIR_NODE_MEMORY_STATS_FREE) == 0)
            mfree = mem[i].value;
        else if (strcmp(mem[i].field, VIR_NODE_MEMORY_STATS_BUFFERS) == 0)
            mbuf = mem[i].value;
        else if (strcmp(mem[i].field, VIR_NODE_MEMORY_STATS_CACHED) == 0)
            mcache = mem[i].value;
    }
    if (mtotal >= mfree + mbuf + mcache)
        json_object_set_new(jm, "used_kib",
                            json_integer((json_int_t)(mtotal - mfree - mbuf - mcache)));
    json_object_set_new(doc, "memory", jm);
    char when[40];
    hx_stats_iso_time(wall, when, sizeof(when));
    json_object_set_new(doc, "sampled_at", json_string(when));
    r->out = doc;
    return 0;
fail:
    hx_err("node %s: cannot read host statistics: %s", n->name, virGetLastErrorMessage());
    return -EIO;
}

/* ---- the thread ---- */

static void hx_req_finish(hx_node *n, hx_req *r, int rc)
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
    if (last) {
        json_decref(r->out);
        json_decref(r->in);
        pthread_cond_destroy(&r->done_cond);
        free(r);
    }
}

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
        hx_autofree char *why = NULL;
        if (asprintf(&why, "%s (%s)", hx_close_reason_str(reason), n->uri) < 0)
            why = NULL;
        hx_node_disconnect(n, why);
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
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
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

static void *hx_node_main(void *arg)
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
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->cond, &ca);
    pthread_cond_init(&n->status_cond, &ca);
    pthread_condattr_destroy(&ca);
    n->version = hx_cluster_stamp(cl);
    n->changed_ns = hx_now_real_ns();
    if (!n->uri || pthread_create(&n->thread, NULL, hx_node_main, n) != 0) {
        hx_err("node %s: cannot start its thread", name);
        hx_node_free(n);
        return NULL;
    }
    return n;
}

void hx_node_note_state(hx_node *n, const char *uuid, int state, int reason)
{
    char name[HX_VM_NAME_MAX] = "";
    pthread_mutex_lock(&n->lock);
    ssize_t i = hx_node_find_uuid(n, uuid);
    if (i >= 0 && (n->doms[i].v.state != state || n->doms[i].v.reason != reason)) {
        hx_dom *d = &n->doms[i];
        d->v.state = state;
        d->v.reason = reason;
        d->v.version = hx_cluster_stamp(n->cl);
        d->noted_stamp = d->v.version;
        d->v.changed_ns = hx_now_real_ns();
        hx_strlcpy(name, d->v.name, sizeof(name));
    }
    pthread_mutex_unlock(&n->lock);
    if (!name[0])
        return;
    hx_change c = {.kind = HX_CHANGE_VM,
                   .node = n->name,
                   .vm_name = name,
                   .vm_uuid = uuid,
                   .state = hx_stats_state_name(state, reason),
                   .state_changed = 1};
    hx_cluster_emit(n->cl, &c);
}

virDomainPtr hx_node_dom(hx_node *n, const char *uuid)
{
    pthread_mutex_lock(&n->lock);
    ssize_t i = n->status == HX_NODE_ONLINE ? hx_node_find_uuid(n, uuid) : -1;
    virDomainPtr d = i >= 0 ? n->doms[i].dom : NULL;
    if (d && virDomainRef(d) < 0)
        d = NULL;
    pthread_mutex_unlock(&n->lock);
    return d;
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

static int hx_node_call_req(hx_node *n, hx_req *r, json_t **out);

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

/* Queues r (type and arguments set) as a call and waits for it. */
static int hx_node_call_req(hx_node *n, hx_req *r, json_t **out)
{
    r->is_call = 1;
    r->refs = 2;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->done_cond, &ca);
    pthread_condattr_destroy(&ca);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += HX_NODE_CALL_TIMEOUT_MS / 1000;
    ts.tv_nsec += (HX_NODE_CALL_TIMEOUT_MS % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&n->lock);
    if (n->status != HX_NODE_ONLINE || n->stop) {
        pthread_mutex_unlock(&n->lock);
        pthread_cond_destroy(&r->done_cond);
        json_decref(r->in);
        free(r);
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
    if (last) {
        json_decref(r->out);
        json_decref(r->in);
        pthread_cond_destroy(&r->done_cond);
        free(r);
    }
    return rc;
}
