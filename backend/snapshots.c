/* Snapshots of VMs through libvirt (see hx_snapshots.h). */
#include "hx_snapshots.h"
#include "hx_log.h"
#include "hx_stats.h"
#include "hx_util.h"
#include "hx_vmops.h"
#include "node.h"

#include <ctype.h>
#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlstring.h>
#include <libxml/xpath.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* Which snapshots were taken with the guest's filesystems frozen ("application" consistency).
 * libvirt's snapshot XML has no place for it, so the domain's own metadata keeps a map
 * name -> consistency in this namespace; a snapshot missing from it is crash-consistent. */
#define HX_SNAP_NS "https://horcrux.dev/xmlns/snapshots/1"
#define HX_SNAP_PREFIX "hxsnap"
#define HX_MIB (1024ULL * 1024ULL)
#define HX_SNAP_DESC_MAX (64 * 1024)

/* ---- scoped cleanup ---- */

static void hx_domp(virDomainPtr *d)
{
    if (*d)
        virDomainFree(*d);
}
static void hx_snapp(virDomainSnapshotPtr *s)
{
    if (*s)
        virDomainSnapshotFree(*s);
}
static void hx_poolp(virStoragePoolPtr *p)
{
    if (*p)
        virStoragePoolFree(*p);
}
static void hx_volp(virStorageVolPtr *v)
{
    if (*v)
        virStorageVolFree(*v);
}
static void hx_jsonp(json_t **j)
{
    json_decref(*j);
}
static void hx_xmldocp(xmlDocPtr *d)
{
    if (*d)
        xmlFreeDoc(*d);
}
static void hx_xpctxp(xmlXPathContextPtr *c)
{
    if (*c)
        xmlXPathFreeContext(*c);
}
static void hx_xpobjp(xmlXPathObjectPtr *o)
{
    if (*o)
        xmlXPathFreeObject(*o);
}
static void hx_xmlfreep(xmlChar **s)
{
    if (*s)
        xmlFree(*s);
}
#define hx_autodom __attribute__((cleanup(hx_domp)))
#define hx_autosnap __attribute__((cleanup(hx_snapp)))
#define hx_autopool __attribute__((cleanup(hx_poolp)))
#define hx_autovol __attribute__((cleanup(hx_volp)))
#define hx_autojson __attribute__((cleanup(hx_jsonp)))
#define hx_autoxml __attribute__((cleanup(hx_xmldocp)))
#define hx_autoxpctx __attribute__((cleanup(hx_xpctxp)))
#define hx_autoxpobj __attribute__((cleanup(hx_xpobjp)))
#define hx_autoxmlstr __attribute__((cleanup(hx_xmlfreep)))

static int __attribute__((format(printf, 3, 4))) hx_fail(char **msg, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (msg && vasprintf(msg, fmt, ap) < 0)
        *msg = NULL;
    va_end(ap);
    return err;
}

static int hx_snap_virt_errno(void)
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
    case VIR_ERR_NO_CONNECT:
    case VIR_ERR_INVALID_CONN:
    case VIR_ERR_RPC:
        return -EHOSTDOWN;
    default:
        return -EIO;
    }
}

static xmlDocPtr hx_xml_read(const char *xml, const char *what)
{
    return xml ? xmlReadMemory(xml, (int)strlen(xml), what, NULL,
                               XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
               : NULL;
}

static char *hx_xml_dump_node(xmlDocPtr doc, xmlNodePtr node)
{
    xmlBufferPtr buf = xmlBufferCreate();
    if (!buf)
        return NULL;
    char *out = NULL;
    if (xmlNodeDump(buf, doc, node, 0, 0) >= 0)
        out = strdup((const char *)xmlBufferContent(buf));
    xmlBufferFree(buf);
    return out;
}

static xmlNodePtr hx_xml_child(xmlNodePtr parent, const char *name)
{
    for (xmlNodePtr c = parent ? parent->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST name))
            return c;
    return NULL;
}

/* ---- the version and the per-VM cache of names ---- */

static _Atomic uint64_t hx_snap_ver = 1;

uint64_t hx_snap_version(void)
{
    return atomic_load(&hx_snap_ver);
}

typedef struct hx_snap_cache {
    char uuid[HX_UUID_LEN];
    json_t *list; /* {"names": [...], "current": name or null} */
    long long at_ns;
} hx_snap_cache;

static pthread_mutex_t hx_sc_mu = PTHREAD_MUTEX_INITIALIZER;
static hx_snap_cache *hx_sc;
static size_t hx_n_sc, hx_cap_sc;
#define HX_SNAP_CACHE_MAX 4096

static ssize_t hx_sc_find(const char *uuid)
{
    for (size_t i = 0; i < hx_n_sc; i++)
        if (strcmp(hx_sc[i].uuid, uuid) == 0)
            return (ssize_t)i;
    return -1;
}

/* A copy of the cached listing if it is at most max_age_ms old, else NULL. */
static json_t *hx_sc_get(const char *uuid, int max_age_ms)
{
    json_t *out = NULL;
    long long now = hx_now_mono_ns();
    pthread_mutex_lock(&hx_sc_mu);
    ssize_t i = hx_sc_find(uuid);
    if (i >= 0 && max_age_ms > 0 && now - hx_sc[i].at_ns < (long long)max_age_ms * 1000000LL)
        out = json_deep_copy(hx_sc[i].list);
    pthread_mutex_unlock(&hx_sc_mu);
    return out;
}

static void hx_sc_put(const char *uuid, json_t *list)
{
    pthread_mutex_lock(&hx_sc_mu);
    ssize_t i = hx_sc_find(uuid);
    if (i < 0 && hx_n_sc >= HX_SNAP_CACHE_MAX) {
        for (size_t j = 0; j < hx_n_sc; j++)
            json_decref(hx_sc[j].list);
        hx_n_sc = 0;
    }
    if (i < 0 && hx_n_sc == hx_cap_sc) {
        size_t cap = hx_cap_sc ? hx_cap_sc * 2 : 16;
        hx_snap_cache *nc = realloc(hx_sc, cap * sizeof(*hx_sc));
        if (!nc) {
            pthread_mutex_unlock(&hx_sc_mu);
            return;
        }
        hx_sc = nc;
        hx_cap_sc = cap;
    }
    if (i < 0) {
        i = (ssize_t)hx_n_sc++;
        hx_strlcpy(hx_sc[i].uuid, uuid, sizeof(hx_sc[i].uuid));
        hx_sc[i].list = NULL;
    }
    /* A listing that differs from the last one is a change nobody announced (virsh). */
    if (hx_sc[i].list && !json_equal(hx_sc[i].list, list))
        atomic_fetch_add(&hx_snap_ver, 1);
    json_decref(hx_sc[i].list);
    hx_sc[i].list = json_deep_copy(list);
    hx_sc[i].at_ns = hx_now_mono_ns();
    pthread_mutex_unlock(&hx_sc_mu);
}

/* After a change of ours: the next read asks libvirt again, and documents render again. */
static void hx_sc_changed(const char *uuid)
{
    pthread_mutex_lock(&hx_sc_mu);
    ssize_t i = hx_sc_find(uuid);
    if (i >= 0) {
        json_decref(hx_sc[i].list);
        hx_sc[i] = hx_sc[--hx_n_sc];
    }
    pthread_mutex_unlock(&hx_sc_mu);
    atomic_fetch_add(&hx_snap_ver, 1);
}

/* ---- reads, on the node's thread ---- */

static int hx_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted names of a snapshot array (freed here) as a JSON array. */
static json_t *hx_snap_names_json(virDomainSnapshotPtr *snaps, int n)
{
    json_t *arr = json_array();
    const char **names = calloc(n > 0 ? (size_t)n : 1, sizeof(char *));
    for (int i = 0; names && i < n; i++)
        names[i] = virDomainSnapshotGetName(snaps[i]);
    if (names && n > 0)
        qsort(names, (size_t)n, sizeof(char *), hx_cmp_str);
    for (int i = 0; names && i < n; i++)
        json_array_append_new(arr, json_string(names[i]));
    free(names);
    for (int i = 0; i < n; i++)
        virDomainSnapshotFree(snaps[i]);
    free(snaps);
    return arr;
}

static int hx_snap_exec_list(hx_virconn conn, const json_t *in, json_t **out)
{
    const char *uuid = json_string_value(json_object_get(in, "uuid"));
    hx_autodom virDomainPtr dom = virDomainLookupByUUIDString(conn, uuid);
    if (!dom)
        return hx_snap_virt_errno();
    virDomainSnapshotPtr *snaps = NULL;
    int n = virDomainListAllSnapshots(dom, &snaps, 0);
    if (n < 0)
        return hx_snap_virt_errno();
    json_t *doc = json_object();
    json_object_set_new(doc, "names", hx_snap_names_json(snaps, n));
    json_t *cur = json_null();
    if (virDomainHasCurrentSnapshot(dom, 0) == 1) {
        hx_autosnap virDomainSnapshotPtr s = virDomainSnapshotCurrent(dom, 0);
        if (s)
            cur = json_string(virDomainSnapshotGetName(s));
    }
    json_object_set_new(doc, "current", cur);
    *out = doc;
    return 0;
}

/* The consistency recorded for a snapshot in a domain's metadata ("crash" when none). */
static const char *hx_snap_recorded(virDomainPtr dom, const char *snap)
{
    hx_autofree char *meta = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, HX_SNAP_NS, 0);
    hx_autoxml xmlDocPtr doc = hx_xml_read(meta, "metadata.xml");
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    for (xmlNodePtr c = root ? root->children : NULL; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || !xmlStrEqual(c->name, BAD_CAST "snapshot"))
            continue;
        hx_autoxmlstr xmlChar *name = xmlGetProp(c, BAD_CAST "name");
        hx_autoxmlstr xmlChar *cons = xmlGetProp(c, BAD_CAST "consistency");
        if (name && cons && xmlStrEqual(name, BAD_CAST snap) &&
            xmlStrEqual(cons, BAD_CAST "application"))
            return "application";
    }
    return "crash";
}

static int hx_snap_exec_info(hx_virconn conn, const json_t *in, json_t **out)
{
    const char *uuid = json_string_value(json_object_get(in, "uuid"));
    const char *name = json_string_value(json_object_get(in, "snap"));
    hx_autodom virDomainPtr dom = virDomainLookupByUUIDString(conn, uuid);
    if (!dom)
        return hx_snap_virt_errno();
    hx_autosnap virDomainSnapshotPtr s = virDomainSnapshotLookupByName(dom, name, 0);
    if (!s)
        return hx_snap_virt_errno();
    hx_autofree char *xml = virDomainSnapshotGetXMLDesc(s, 0);
    if (!xml)
        return hx_snap_virt_errno();
    int current = virDomainSnapshotIsCurrent(s, 0);
    virDomainSnapshotPtr *kids = NULL;
    int n = virDomainSnapshotListAllChildren(s, &kids, 0);
    if (n < 0)
        return hx_snap_virt_errno();
    hx_autojson json_t *children = hx_snap_names_json(kids, n);
    json_t *doc = hx_snap_info_from_xml(xml, current == 1, children, hx_snap_recorded(dom, name));
    if (!doc)
        return -EIO;
    *out = doc;
    return 0;
}

static int hx_snap_fetch(hx_cluster *cl, const char *node, const char *uuid, json_t **out)
{
    hx_autojson json_t *in = json_pack("{s:s}", "uuid", uuid);
    int r = hx_cluster_node_exec(cl, node, hx_snap_exec_list, in, out);
    if (r == 0)
        hx_sc_put(uuid, *out);
    return r;
}

int hx_snap_list(hx_cluster *cl, const char *node, const char *vm, const char *uuid, int max_age_ms,
                 char ***names, char **current)
{
    char u[HX_UUID_LEN];
    int r = hx_cluster_vm_lookup(cl, node, vm, u);
    if (r < 0)
        return r;
    if (uuid && *uuid && strcmp(u, uuid) != 0)
        return -ENOENT;
    hx_autojson json_t *list = hx_sc_get(u, max_age_ms);
    if (!list) {
        r = hx_snap_fetch(cl, node, u, &list);
        if (r < 0)
            return r;
    }
    if (names) {
        json_t *arr = json_object_get(list, "names");
        char **v = calloc(json_array_size(arr) + 1, sizeof(char *));
        if (!v)
            return -ENOMEM;
        for (size_t i = 0; i < json_array_size(arr); i++)
            v[i] = strdup(json_string_value(json_array_get(arr, i)));
        *names = v;
    }
    if (current) {
        const char *c = json_string_value(json_object_get(list, "current"));
        *current = c ? strdup(c) : NULL;
    }
    return 0;
}

static int hx_snap_in_list(json_t *list, const char *snap)
{
    size_t i;
    json_t *v;
    json_array_foreach (json_object_get(list, "names"), i, v)
        if (strcmp(json_string_value(v), snap) == 0)
            return 1;
    return 0;
}

int hx_snap_exists(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                   const char *snap)
{
    char u[HX_UUID_LEN];
    int r = hx_cluster_vm_lookup(cl, node, vm, u);
    if (r < 0)
        return r;
    if (uuid && *uuid && strcmp(u, uuid) != 0)
        return -ENOENT;
    hx_autojson json_t *list = hx_sc_get(u, 1000);
    if (list && hx_snap_in_list(list, snap))
        return 0;
    json_decref(list);
    list = NULL;
    r = hx_snap_fetch(cl, node, u, &list);
    if (r < 0)
        return r;
    return hx_snap_in_list(list, snap) ? 0 : -ENOENT;
}

int hx_snap_info(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                 const char *snap, json_t **out)
{
    char u[HX_UUID_LEN];
    int r = hx_cluster_vm_lookup(cl, node, vm, u);
    if (r < 0)
        return r;
    if (uuid && *uuid && strcmp(u, uuid) != 0)
        return -ENOENT;
    hx_autojson json_t *in = json_pack("{s:s,s:s}", "uuid", u, "snap", snap);
    return hx_cluster_node_exec(cl, node, hx_snap_exec_info, in, out);
}

int hx_snap_description(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                        const char *snap, char **out)
{
    hx_autojson json_t *info = NULL;
    int r = hx_snap_info(cl, node, vm, uuid, snap, &info);
    if (r < 0)
        return r;
    const char *d = json_string_value(json_object_get(info, "description"));
    *out = strdup(d ? d : "");
    return *out ? 0 : -ENOMEM;
}

/* ---- pure helpers ---- */

int hx_snap_check_name(const char *name, const char **why)
{
    size_t len = strlen(name);
    if (len == 0 || len > HX_SNAP_NAME_MAX) {
        *why = "a snapshot name has 1 to 64 bytes";
        return -EINVAL;
    }
    if (name[0] == '.') {
        *why = "a snapshot name cannot start with '.'";
        return -EINVAL;
    }
    /* The symbolic link snapshots/current has that name. */
    if (strcmp(name, "current") == 0) {
        *why = "\"current\" is the link to the current snapshot";
        return -EINVAL;
    }
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '/') {
            *why = "a snapshot name cannot hold '/' or control characters";
            return -EINVAL;
        }
    if (!xmlCheckUTF8((const unsigned char *)name)) {
        *why = "a snapshot name must be UTF-8";
        return -EINVAL;
    }
    return 0;
}

uint64_t hx_snap_space_needed(uint64_t mem_bytes, uint64_t disk_bytes, unsigned n_disks)
{
    /* qemu writes the whole guest RAM into the vmstate area of the first qcow2 disk (zero pages
     * take little, but the worst case counts) plus device state: 1/16 more is the margin. The
     * disks grow by copy-on-write right after the snapshot: 1/32 of their virtual size, at
     * least 1 MiB each, before anyone notices a full pool. */
    uint64_t need = mem_bytes ? mem_bytes + mem_bytes / 16 : 0;
    uint64_t grow = disk_bytes / 32;
    if (grow < (uint64_t)n_disks * HX_MIB)
        grow = (uint64_t)n_disks * HX_MIB;
    return need + grow;
}

static json_t *hx_xpath_str(xmlXPathContextPtr ctx, const char *expr)
{
    hx_autoxpobj xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST expr, ctx);
    if (!o || !o->nodesetval || o->nodesetval->nodeNr == 0)
        return NULL;
    hx_autoxmlstr xmlChar *s = xmlNodeGetContent(o->nodesetval->nodeTab[0]);
    return s ? json_string((const char *)s) : NULL;
}

json_t *hx_snap_info_from_xml(const char *xml, int current, json_t *children,
                              const char *consistency)
{
    hx_autoxml xmlDocPtr doc = hx_xml_read(xml, "snapshot.xml");
    if (!doc)
        return NULL;
    hx_autoxpctx xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    if (!ctx)
        return NULL;
    json_t *name = hx_xpath_str(ctx, "/domainsnapshot/name");
    if (!name)
        return NULL;
    json_t *out = json_object();
    json_object_set_new(out, "name", name);
    json_t *parent = hx_xpath_str(ctx, "/domainsnapshot/parent/name");
    json_object_set_new(out, "parent", parent ? parent : json_null());
    json_object_set_new(out, "children", children ? json_deep_copy(children) : json_array());
    hx_autojson json_t *ct = hx_xpath_str(ctx, "/domainsnapshot/creationTime");
    long long secs = ct ? strtoll(json_string_value(ct), NULL, 10) : 0;
    char when[40];
    hx_stats_iso_time(secs * 1000000000LL, when, sizeof(when));
    json_object_set_new(out, "created", json_string(when));
    json_t *state = hx_xpath_str(ctx, "/domainsnapshot/state");
    const char *st = json_string_value(state);
    json_object_set_new(out, "state", state ? state : json_string("unknown"));
    /* <memory snapshot='internal|external|no'>; older XML omits it for running snapshots,
     * where libvirt's internal snapshots always hold the memory. */
    hx_autojson json_t *mem = hx_xpath_str(ctx, "/domainsnapshot/memory/@snapshot");
    int has_mem = mem ? strcmp(json_string_value(mem), "no") != 0
                      : (st && (strcmp(st, "running") == 0 || strcmp(st, "paused") == 0));
    json_object_set_new(out, "memory", json_boolean(has_mem));
    json_object_set_new(out, "disk_only", json_boolean(st && strcmp(st, "disk-snapshot") == 0));
    json_object_set_new(out, "consistency", json_string(consistency ? consistency : "crash"));
    json_t *desc = hx_xpath_str(ctx, "/domainsnapshot/description");
    json_object_set_new(out, "description", desc ? desc : json_string(""));
    json_object_set_new(out, "current", json_boolean(current));
    json_t *disks = json_array();
    hx_autoxpobj xmlXPathObjectPtr o =
        xmlXPathEvalExpression(BAD_CAST "/domainsnapshot/disks/disk", ctx);
    for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
        xmlNodePtr d = o->nodesetval->nodeTab[i];
        hx_autoxmlstr xmlChar *target = xmlGetProp(d, BAD_CAST "name");
        hx_autoxmlstr xmlChar *type = xmlGetProp(d, BAD_CAST "snapshot");
        json_array_append_new(disks, json_pack("{s:s,s:s}", "target", target ? (char *)target : "",
                                               "snapshot", type ? (char *)type : "internal"));
    }
    json_object_set_new(out, "disks", disks);
    return out;
}

/* ---- changes: the common preamble ---- */

typedef struct hx_snapctx {
    hx_node *n;
    virConnectPtr conn;
    virDomainPtr dom;
    hx_vm_view view;
    char locked[HX_UUID_LEN];
} hx_snapctx;

static void hx_snapctx_clear(hx_snapctx *c)
{
    if (c->dom)
        virDomainFree(c->dom);
    if (c->conn)
        virConnectClose(c->conn);
    if (c->n) {
        /* Every change ends with the node's cache of this VM up to date. */
        if (c->locked[0] &&
            hx_node_call(c->n, HX_REQ_REFRESH, c->view.name, c->view.uuid, NULL) < 0)
            hx_warn("node %s: cannot refresh VM %s after a snapshot change", c->n->name,
                    c->view.name);
        hx_node_unref(c->n);
    }
    if (c->locked[0]) {
        hx_sc_changed(c->locked);
        hx_vm_unlock(c->locked);
    }
    hx_vm_view_clear(&c->view);
    memset(c, 0, sizeof(*c));
}
#define hx_autoctx __attribute__((cleanup(hx_snapctx_clear)))

static int hx_snapctx_open(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                           hx_snapctx *c, char **msg)
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
    hx_strlcpy(c->locked, c->view.uuid, sizeof(c->locked));
    c->conn = hx_node_conn(c->n);
    if (!c->conn)
        return hx_fail(msg, -EHOSTDOWN, "node %s is offline", node);
    c->dom = virDomainLookupByUUIDString(c->conn, c->view.uuid);
    if (!c->dom)
        return hx_fail(msg, hx_snap_virt_errno(), "VM %s on node %s: %s", vm, node,
                       virGetLastErrorMessage());
    return 0;
}

static virDomainSnapshotPtr hx_snap_get(hx_snapctx *c, const char *vm, const char *snap, char **msg,
                                        int *err)
{
    virDomainSnapshotPtr s = virDomainSnapshotLookupByName(c->dom, snap, 0);
    if (!s)
        *err = hx_fail(msg, hx_snap_virt_errno(), "snapshot %s of VM %s: %s", snap, vm,
                       virGetLastErrorMessage());
    return s;
}

/* Records (consistency != NULL) or forgets a snapshot in the domain's Horcrux metadata. */
static void hx_snap_record(virDomainPtr dom, const char *vm, const char *snap,
                           const char *consistency)
{
    hx_autofree char *meta = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, HX_SNAP_NS,
                                                  VIR_DOMAIN_AFFECT_CONFIG);
    if (!meta && !consistency)
        return;
    hx_autoxml xmlDocPtr doc = hx_xml_read(meta, "metadata.xml");
    if (!doc) {
        doc = xmlNewDoc(BAD_CAST "1.0");
        if (!doc)
            return;
        xmlDocSetRootElement(doc, xmlNewNode(NULL, BAD_CAST "snapshots"));
    }
    xmlNodePtr root = xmlDocGetRootElement(doc);
    int changed = 0, left = 0;
    for (xmlNodePtr c = root->children, next; c; c = next) {
        next = c->next;
        if (c->type != XML_ELEMENT_NODE)
            continue;
        hx_autoxmlstr xmlChar *name = xmlGetProp(c, BAD_CAST "name");
        if (name && xmlStrEqual(name, BAD_CAST snap)) {
            xmlUnlinkNode(c);
            xmlFreeNode(c);
            changed = 1;
        } else {
            left++;
        }
    }
    if (consistency) {
        xmlNodePtr e = xmlNewChild(root, root->ns, BAD_CAST "snapshot", NULL);
        xmlNewProp(e, BAD_CAST "name", BAD_CAST snap);
        xmlNewProp(e, BAD_CAST "consistency", BAD_CAST consistency);
        changed = 1;
        left++;
    }
    if (!changed)
        return;
    hx_autofree char *xml = left ? hx_xml_dump_node(doc, root) : NULL;
    unsigned flags =
        VIR_DOMAIN_AFFECT_CONFIG | (virDomainIsActive(dom) == 1 ? VIR_DOMAIN_AFFECT_LIVE : 0);
    if (virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, xml, xml ? HX_SNAP_PREFIX : NULL,
                             HX_SNAP_NS, flags) < 0)
        hx_warn("VM %s: cannot record snapshot %s in the domain metadata: %s", vm, snap,
                virGetLastErrorMessage());
}

/* ---- free space ---- */

typedef struct hx_pool_need {
    char name[256];
    uint64_t mem, disk;
    unsigned n;
} hx_pool_need;

/* The pool holding a disk (by <source file> or <source pool volume>), and the disk's virtual
 * size; NULL when no pool of the node knows it (then nothing can be checked). */
static virStoragePoolPtr hx_disk_pool(virConnectPtr conn, xmlNodePtr disk, uint64_t *capacity)
{
    xmlNodePtr src = hx_xml_child(disk, "source");
    if (!src)
        return NULL;
    hx_autoxmlstr xmlChar *file = xmlGetProp(src, BAD_CAST "file");
    hx_autoxmlstr xmlChar *pool = xmlGetProp(src, BAD_CAST "pool");
    hx_autoxmlstr xmlChar *volume = xmlGetProp(src, BAD_CAST "volume");
    hx_autovol virStorageVolPtr vol = NULL;
    if (file) {
        vol = virStorageVolLookupByPath(conn, (const char *)file);
    } else if (pool && volume) {
        hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(conn, (const char *)pool);
        vol = p ? virStorageVolLookupByName(p, (const char *)volume) : NULL;
    }
    virStorageVolInfo vi;
    if (!vol || virStorageVolGetInfo(vol, &vi) < 0)
        return NULL;
    *capacity = vi.capacity;
    return virStoragePoolLookupByVolume(vol);
}

/* ENOSPC when a pool holding one of the VM's qcow2 disks has less room than the estimate. */
static int hx_snap_space_check(hx_snapctx *c, const char *vm, const char *snap, int with_memory,
                               char **msg)
{
    hx_autofree char *xml = virDomainGetXMLDesc(c->dom, 0);
    hx_autoxml xmlDocPtr doc = hx_xml_read(xml, "domain.xml");
    if (!doc)
        return hx_fail(msg, hx_snap_virt_errno(), "VM %s: cannot read its XML: %s", vm,
                       virGetLastErrorMessage());
    uint64_t mem = 0;
    virDomainInfo info;
    if (with_memory && virDomainGetInfo(c->dom, &info) == 0)
        mem = (uint64_t)info.maxMem * 1024;
    hx_autoxpctx xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    hx_autoxpobj xmlXPathObjectPtr o =
        ctx ? xmlXPathEvalExpression(BAD_CAST
                                     "/domain/devices/disk[not(@device) or "
                                     "@device='disk'][driver/@type='qcow2'][not(readonly)]",
                                     ctx)
            : NULL;
    hx_pool_need needs[16];
    size_t n_needs = 0;
    for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
        uint64_t cap = 0;
        hx_autopool virStoragePoolPtr p = hx_disk_pool(c->conn, o->nodesetval->nodeTab[i], &cap);
        const char *pname = p ? virStoragePoolGetName(p) : NULL;
        if (!pname)
            continue;
        size_t k = 0;
        while (k < n_needs && strcmp(needs[k].name, pname) != 0)
            k++;
        if (k == n_needs) {
            if (n_needs == sizeof(needs) / sizeof(needs[0]))
                continue;
            memset(&needs[k], 0, sizeof(needs[k]));
            hx_strlcpy(needs[k].name, pname, sizeof(needs[k].name));
            n_needs++;
        }
        /* qemu's savevm puts the memory on the first disk that takes internal snapshots. */
        if (i == 0)
            needs[k].mem = mem;
        needs[k].disk += cap;
        needs[k].n++;
    }
    for (size_t k = 0; k < n_needs; k++) {
        hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(c->conn, needs[k].name);
        virStoragePoolInfo pi;
        /* The pool's numbers are as fresh as its last refresh: ask for a new one first. */
        if (p)
            virStoragePoolRefresh(p, 0);
        if (!p || virStoragePoolGetInfo(p, &pi) < 0) {
            hx_warn("VM %s: cannot check the free space of pool %s: %s", vm, needs[k].name,
                    virGetLastErrorMessage());
            continue;
        }
        uint64_t need = hx_snap_space_needed(needs[k].mem, needs[k].disk, needs[k].n);
        if (pi.available < need)
            return hx_fail(
                msg, -ENOSPC,
                "VM %s: snapshot %s needs about %llu MiB in storage pool %s "
                "(%s%llu MiB of disk growth) but the pool has %llu MiB free",
                vm, snap, (unsigned long long)((need + HX_MIB - 1) / HX_MIB), needs[k].name,
                needs[k].mem ? "the VM's memory and " : "",
                (unsigned long long)((need -
                                      (needs[k].mem ? needs[k].mem + needs[k].mem / 16 : 0)) /
                                     HX_MIB),
                (unsigned long long)(pi.available / HX_MIB));
    }
    return 0;
}

/* ---- guest agent ---- */

/* Whether the live XML shows a connected guest agent channel. */
static int hx_agent_connected(const char *live_xml)
{
    hx_autoxml xmlDocPtr doc = hx_xml_read(live_xml, "domain.xml");
    hx_autoxpctx xmlXPathContextPtr ctx = doc ? xmlXPathNewContext(doc) : NULL;
    hx_autoxpobj xmlXPathObjectPtr o =
        ctx ? xmlXPathEvalExpression(
                  BAD_CAST "/domain/devices/channel/target[@name='org.qemu.guest_agent.0']"
                           "[@state='connected']",
                  ctx)
            : NULL;
    return o && o->nodesetval && o->nodesetval->nodeNr > 0;
}

/* ---- create, delete, revert, describe ---- */

static char *hx_snap_xml_new(const char *name)
{
    hx_autoxml xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    if (!doc)
        return NULL;
    xmlNodePtr root = xmlNewNode(NULL, BAD_CAST "domainsnapshot");
    xmlDocSetRootElement(doc, root);
    xmlNewTextChild(root, NULL, BAD_CAST "name", BAD_CAST name);
    return hx_xml_dump_node(doc, root);
}

int hx_snap_create(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                   const char *name, char **msg)
{
    const char *why = NULL;
    if (hx_snap_check_name(name, &why) < 0)
        return hx_fail(msg, -EINVAL, "VM %s: cannot take snapshot \"%s\": %s", vm, name, why);
    hx_autoctx hx_snapctx c;
    int r = hx_snapctx_open(cl, node, vm, uuid, &c, msg);
    if (r < 0)
        return r;
    hx_autosnap virDomainSnapshotPtr old = virDomainSnapshotLookupByName(c.dom, name, 0);
    if (old)
        return hx_fail(msg, -EEXIST, "VM %s already has a snapshot %s", vm, name);
    int st = c.view.state, reason;
    if (virDomainGetState(c.dom, &st, &reason, 0) < 0)
        st = c.view.state;
    /* libvirt takes internal snapshots of a running (or paused) qemu VM with savevm, which
     * always saves the memory; of a shut-off VM, the disks alone. */
    int with_memory =
        st == VIR_DOMAIN_RUNNING || st == VIR_DOMAIN_PAUSED || st == VIR_DOMAIN_BLOCKED;
    r = hx_snap_space_check(&c, vm, name, with_memory, msg);
    if (r < 0)
        return r;
    hx_autofree char *xml = hx_snap_xml_new(name);
    if (!xml)
        return hx_fail(msg, -ENOMEM, "VM %s: snapshot %s: out of memory", vm, name);
    /* Application consistency: libvirt's QUIESCE flag works with disk-only (external)
     * snapshots alone, so the filesystems are frozen through the agent around the snapshot. */
    int frozen = 0;
    if (with_memory && hx_agent_connected(c.view.xml_live)) {
        frozen = virDomainFSFreeze(c.dom, NULL, 0, 0) >= 0;
        if (!frozen)
            hx_info("VM %s: the guest agent did not freeze the filesystems (%s): snapshot %s is "
                    "crash-consistent",
                    vm, virGetLastErrorMessage(), name);
    }
    hx_autosnap virDomainSnapshotPtr s =
        virDomainSnapshotCreateXML(c.dom, xml, VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC);
    if (!s)
        r = hx_fail(msg, hx_snap_virt_errno() == -EBUSY ? -EIO : hx_snap_virt_errno(),
                    "VM %s: cannot take snapshot %s: %s", vm, name, virGetLastErrorMessage());
    if (frozen && virDomainFSThaw(c.dom, NULL, 0, 0) < 0)
        hx_err("VM %s: cannot thaw the guest's filesystems after snapshot %s: %s", vm, name,
               virGetLastErrorMessage());
    if (!s) {
        /* ATOMIC asks libvirt to leave nothing behind; check anyway. */
        hx_autosnap virDomainSnapshotPtr half = virDomainSnapshotLookupByName(c.dom, name, 0);
        if (half && virDomainSnapshotDelete(half, 0) < 0)
            hx_err("VM %s: cannot delete the half-made snapshot %s: %s", vm, name,
                   virGetLastErrorMessage());
        return r;
    }
    if (frozen)
        hx_snap_record(c.dom, vm, name, "application");
    hx_info("node %s: VM %s: took snapshot %s (%s, %s)", node, vm, name,
            with_memory ? "memory" : "disks",
            frozen ? "application-consistent" : "crash-consistent");
    return 0;
}

int hx_snap_delete(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                   const char *snap, char **msg)
{
    hx_autoctx hx_snapctx c;
    int r = hx_snapctx_open(cl, node, vm, uuid, &c, msg);
    if (r < 0)
        return r;
    hx_autosnap virDomainSnapshotPtr s = hx_snap_get(&c, vm, snap, msg, &r);
    if (!s)
        return r;
    /* Flags 0: this snapshot alone; libvirt re-parents its children to its parent. */
    if (virDomainSnapshotDelete(s, 0) < 0)
        return hx_fail(msg, hx_snap_virt_errno() == -EBUSY ? -EIO : hx_snap_virt_errno(),
                       "VM %s: cannot delete snapshot %s: %s", vm, snap, virGetLastErrorMessage());
    hx_snap_record(c.dom, vm, snap, NULL);
    hx_info("node %s: VM %s: deleted snapshot %s", node, vm, snap);
    return 0;
}

int hx_snap_revert(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                   const char *snap, const char *cmd, size_t len, char **msg)
{
    while (len > 0 && isspace((unsigned char)cmd[len - 1]))
        len--;
    while (len > 0 && isspace((unsigned char)*cmd)) {
        cmd++;
        len--;
    }
    if (!((len == 1 && cmd[0] == '1') || (len == 6 && memcmp(cmd, "revert", 6) == 0)))
        return hx_fail(msg, -EINVAL, "snapshot %s of VM %s: write 1 or revert to revert to it",
                       snap, vm);
    hx_autoctx hx_snapctx c;
    int r = hx_snapctx_open(cl, node, vm, uuid, &c, msg);
    if (r < 0)
        return r;
    hx_autosnap virDomainSnapshotPtr s = hx_snap_get(&c, vm, snap, msg, &r);
    if (!s)
        return r;
    /* Reverting replaces the domain's definition with the snapshot's copy, which lacks the
     * consistency records made after it: keep them across. */
    hx_autofree char *meta = virDomainGetMetadata(c.dom, VIR_DOMAIN_METADATA_ELEMENT, HX_SNAP_NS,
                                                  VIR_DOMAIN_AFFECT_CONFIG);
    /* Flags 0: the VM ends in the snapshot's state (running when its memory was saved while
     * running, shut off for a snapshot of a shut-off VM). */
    if (virDomainRevertToSnapshot(s, 0) < 0)
        return hx_fail(msg, hx_snap_virt_errno() == -EBUSY ? -EIO : hx_snap_virt_errno(),
                       "VM %s: cannot revert to snapshot %s: %s", vm, snap,
                       virGetLastErrorMessage());
    if (meta) {
        unsigned flags =
            VIR_DOMAIN_AFFECT_CONFIG | (virDomainIsActive(c.dom) == 1 ? VIR_DOMAIN_AFFECT_LIVE : 0);
        if (virDomainSetMetadata(c.dom, VIR_DOMAIN_METADATA_ELEMENT, meta, HX_SNAP_PREFIX,
                                 HX_SNAP_NS, flags) < 0)
            hx_warn("VM %s: cannot keep the snapshot records after reverting to %s: %s", vm, snap,
                    virGetLastErrorMessage());
    }
    hx_info("node %s: VM %s: reverted to snapshot %s", node, vm, snap);
    return 0;
}

int hx_snap_set_description(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                            const char *snap, const char *text, size_t len, char **msg)
{
    if (len > 0 && text[len - 1] == '\n')
        len--;
    if (len > HX_SNAP_DESC_MAX)
        return hx_fail(msg, -EFBIG, "snapshot %s of VM %s: a description has at most %d bytes",
                       snap, vm, HX_SNAP_DESC_MAX);
    hx_autofree char *desc = strndup(text, len);
    if (!desc)
        return hx_fail(msg, -ENOMEM, "snapshot %s of VM %s: out of memory", snap, vm);
    int bad = strlen(desc) != len || !xmlCheckUTF8((const unsigned char *)desc);
    for (const unsigned char *p = (const unsigned char *)desc; !bad && *p; p++)
        bad = (*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f;
    if (bad)
        return hx_fail(msg, -EINVAL,
                       "snapshot %s of VM %s: a description is UTF-8 text without control "
                       "characters",
                       snap, vm);
    hx_autoctx hx_snapctx c;
    int r = hx_snapctx_open(cl, node, vm, uuid, &c, msg);
    if (r < 0)
        return r;
    hx_autosnap virDomainSnapshotPtr s = hx_snap_get(&c, vm, snap, msg, &r);
    if (!s)
        return r;
    hx_autofree char *xml = virDomainSnapshotGetXMLDesc(s, VIR_DOMAIN_XML_SECURE);
    int current = virDomainSnapshotIsCurrent(s, 0) == 1;
    hx_autoxml xmlDocPtr doc = hx_xml_read(xml, "snapshot.xml");
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root)
        return hx_fail(msg, -EIO, "snapshot %s of VM %s: cannot read its XML: %s", snap, vm,
                       xml ? "not XML" : virGetLastErrorMessage());
    xmlNodePtr d = hx_xml_child(root, "description");
    if (!d && *desc) {
        xmlNodePtr nm = hx_xml_child(root, "name");
        d = xmlNewDocNode(doc, NULL, BAD_CAST "description", NULL);
        if (nm)
            xmlAddNextSibling(nm, d);
        else
            xmlAddChild(root, d);
    }
    if (d && *desc) {
        xmlNodeSetContent(d, NULL);
        xmlNodeAddContent(d, BAD_CAST desc); /* escapes as text */
    } else if (d) {
        xmlUnlinkNode(d);
        xmlFreeNode(d);
    }
    hx_autofree char *nxml = hx_xml_dump_node(doc, root);
    /* REDEFINE replaces the metadata of an existing snapshot (as virsh snapshot-edit does);
     * CURRENT keeps it current, which a redefinition would otherwise not. */
    unsigned flags =
        VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE | (current ? VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT : 0);
    hx_autosnap virDomainSnapshotPtr ns =
        nxml ? virDomainSnapshotCreateXML(c.dom, nxml, flags) : NULL;
    if (!ns)
        return hx_fail(msg, nxml ? hx_snap_virt_errno() : -ENOMEM,
                       "snapshot %s of VM %s: cannot set the description: %s", snap, vm,
                       nxml ? virGetLastErrorMessage() : "out of memory");
    return 0;
}
