/* Snapshots of VMs through libvirt (see hx_snapshots.h). */
#include "auto.h"
#include "hx_snapshots.h"
#include "hx_log.h"
#include "hx_pools.h"
#include "hx_stats.h"
#include "hx_util.h"
#include "hx_vmops.h"
#include "node.h"
#include "vmops_priv.h"

#include <ctype.h>
#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlstring.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
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

/* libvirt's errors as errnos (vmops.c), except that a snapshot's only input is its name: what
 * libvirt refuses in the configuration is the backend's failure (EIO), not the caller's. */
static int hx_snap_virt_errno(void)
{
    int e = hx_virt_errno();
    return e == -EINVAL ? -EIO : e;
}

static xmlDocPtr hx_xml_read(const char *xml, const char *what)
{
    return xml ? xmlReadMemory(xml, (int)strlen(xml), what, NULL,
                               XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
               : NULL;
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

/* btrfs snapshot records (defined below). */
static xmlDocPtr hx_bt_meta_load(virDomainPtr dom, unsigned flags);
static xmlNodePtr hx_bt_find(xmlDocPtr doc, const char *name);
static char *hx_bt_current(xmlDocPtr doc);
static void hx_bt_names(xmlDocPtr doc, json_t *arr);
static json_t *hx_bt_sorted(json_t *arr);
static json_t *hx_bt_info(xmlDocPtr doc, xmlNodePtr rec);

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
    /* libvirt's snapshots and the btrfs snapshots of the domain's metadata, in one listing. */
    hx_autojson json_t *names = hx_snap_names_json(snaps, n);
    hx_autoxml xmlDocPtr meta = hx_bt_meta_load(dom, 0);
    hx_bt_names(meta, names);
    json_object_set_new(doc, "names", hx_bt_sorted(names));
    json_t *cur = json_null();
    if (virDomainHasCurrentSnapshot(dom, 0) == 1) {
        hx_autosnap virDomainSnapshotPtr s = virDomainSnapshotCurrent(dom, 0);
        if (s)
            cur = json_string(virDomainSnapshotGetName(s));
    }
    hx_autofree char *bcur = json_is_null(cur) ? hx_bt_current(meta) : NULL;
    if (bcur)
        cur = json_string(bcur);
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
    hx_autoxml xmlDocPtr meta = hx_bt_meta_load(dom, 0);
    xmlNodePtr rec = hx_bt_find(meta, name);
    if (rec) {
        *out = hx_bt_info(meta, rec);
        return 0;
    }
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

typedef hx_vmctx hx_snapctx;

/* Ends a snapshot change: the node's cache of the VM refreshed, the kernel's copies of the
 * snapshot files dropped, then the shared cleanup (lock released last). */
static void hx_snapctx_clear(hx_snapctx *c)
{
    if (c->n && c->uuid[0] &&
        hx_node_call(c->n, HX_REQ_REFRESH, c->view.name, c->view.uuid, NULL) < 0)
        hx_warn("node %s: cannot refresh VM %s after a snapshot change", c->n->name, c->view.name);
    if (c->uuid[0])
        hx_sc_changed(c->uuid);
    hx_vmctx_clear(c);
}
#define hx_autoctx __attribute__((cleanup(hx_snapctx_clear)))

static int hx_snapctx_open(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                           hx_snapctx *c, char **msg)
{
    return hx_vmctx_open(cl, node, vm, uuid, c, msg);
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
    hx_autofree char *xml = left ? hx_xml_dump(doc, root) : NULL;
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

/* ---- btrfs snapshots: reflink copies of raw volumes ----
 *
 * libvirt's internal snapshots need qcow2. A VM whose every disk is a raw volume of a
 * btrfs-backed pool gets Horcrux snapshots instead: each disk volume is copied by reflink
 * (virStorageVolCreateXMLFrom with VIR_STORAGE_VOL_CREATE_REFLINK: FICLONE, shared extents, no
 * data copied) to a hidden volume ".<volume>@<snapshot>" of the same pool, and the snapshot is a
 * record in the domain's metadata (HX_SNAP_NS):
 *
 *   <snapshots current="b">
 *     <snapshot name="a" kind="btrfs" consistency="crash" created="1700000000" state="running"
 *               parent="">
 *       <description>text</description>
 *       <disk target="vda" pool="fast" volume="vm.img" copy=".vm.img@a"/>
 *     </snapshot>
 *   </snapshots>
 *
 * The record names the copies exactly: deletion never guesses from names. */

/* The Horcrux snapshot metadata of a domain (a new empty document when it has none). */
static xmlDocPtr hx_bt_meta_load(virDomainPtr dom, unsigned flags)
{
    hx_autofree char *meta =
        virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, HX_SNAP_NS, flags);
    xmlDocPtr doc = hx_xml_read(meta, "metadata.xml");
    if (doc && xmlDocGetRootElement(doc))
        return doc;
    if (doc)
        xmlFreeDoc(doc);
    doc = xmlNewDoc(BAD_CAST "1.0");
    if (doc)
        xmlDocSetRootElement(doc, xmlNewNode(NULL, BAD_CAST "snapshots"));
    return doc;
}

static int hx_bt_meta_save(virDomainPtr dom, xmlDocPtr doc)
{
    xmlNodePtr root = xmlDocGetRootElement(doc);
    hx_autofree char *xml =
        root && (root->children || root->properties) ? hx_xml_dump(doc, root) : NULL;
    unsigned flags =
        VIR_DOMAIN_AFFECT_CONFIG | (virDomainIsActive(dom) == 1 ? VIR_DOMAIN_AFFECT_LIVE : 0);
    return virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, xml, xml ? HX_SNAP_PREFIX : NULL,
                                HX_SNAP_NS, flags);
}

static int hx_bt_attr_is(xmlNodePtr n, const char *attr, const char *value)
{
    hx_autoxmlstr xmlChar *v = xmlGetProp(n, BAD_CAST attr);
    return v && xmlStrEqual(v, BAD_CAST value);
}

/* The btrfs record of snapshot name, or NULL. */
static xmlNodePtr hx_bt_find(xmlDocPtr doc, const char *name)
{
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    for (xmlNodePtr c = root ? root->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "snapshot") &&
            hx_bt_attr_is(c, "kind", "btrfs") && hx_bt_attr_is(c, "name", name))
            return c;
    return NULL;
}

static json_t *hx_bt_prop(xmlNodePtr n, const char *attr)
{
    hx_autoxmlstr xmlChar *v = xmlGetProp(n, BAD_CAST attr);
    return v && *v ? json_string((const char *)v) : json_null();
}

/* The name of the current btrfs snapshot (a record that exists), malloc'd, or NULL. */
static char *hx_bt_current(xmlDocPtr doc)
{
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    hx_autoxmlstr xmlChar *cur = root ? xmlGetProp(root, BAD_CAST "current") : NULL;
    return cur && hx_bt_find(doc, (const char *)cur) ? strdup((const char *)cur) : NULL;
}

/* Names of the btrfs records, appended to arr. */
static void hx_bt_names(xmlDocPtr doc, json_t *arr)
{
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    for (xmlNodePtr c = root ? root->children : NULL; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || !xmlStrEqual(c->name, BAD_CAST "snapshot") ||
            !hx_bt_attr_is(c, "kind", "btrfs"))
            continue;
        hx_autoxmlstr xmlChar *n = xmlGetProp(c, BAD_CAST "name");
        if (n)
            json_array_append_new(arr, json_string((const char *)n));
    }
}

static int hx_bt_cmp_json(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

/* A sorted copy of an array of strings. */
static json_t *hx_bt_sorted(json_t *arr)
{
    size_t n = json_array_size(arr);
    json_t **v = calloc(n ? n : 1, sizeof(*v));
    json_t *out = json_array();
    for (size_t i = 0; v && i < n; i++)
        v[i] = json_array_get(arr, i);
    if (v && n)
        qsort(v, n, sizeof(*v), hx_bt_cmp_json);
    for (size_t i = 0; v && i < n; i++)
        json_array_append(out, v[i]);
    free(v);
    return out;
}

/* info.json of a btrfs record (docs/tree.md). */
static json_t *hx_bt_info(xmlDocPtr doc, xmlNodePtr rec)
{
    hx_autoxmlstr xmlChar *name = xmlGetProp(rec, BAD_CAST "name");
    json_t *out = json_object();
    json_object_set_new(out, "name", json_string((const char *)name));
    json_object_set_new(out, "parent", hx_bt_prop(rec, "parent"));
    hx_autojson json_t *kids = json_array();
    for (xmlNodePtr c = xmlDocGetRootElement(doc)->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || !hx_bt_attr_is(c, "kind", "btrfs") ||
            !hx_bt_attr_is(c, "parent", (const char *)name))
            continue;
        hx_autoxmlstr xmlChar *k = xmlGetProp(c, BAD_CAST "name");
        if (k)
            json_array_append_new(kids, json_string((const char *)k));
    }
    json_object_set_new(out, "children", hx_bt_sorted(kids));
    hx_autoxmlstr xmlChar *created = xmlGetProp(rec, BAD_CAST "created");
    char when[40];
    hx_stats_iso_time((created ? strtoll((const char *)created, NULL, 10) : 0) * 1000000000LL, when,
                      sizeof(when));
    json_object_set_new(out, "created", json_string(when));
    json_t *state = hx_bt_prop(rec, "state");
    json_object_set_new(out, "state", json_is_null(state) ? json_string("unknown") : state);
    json_object_set_new(out, "memory", json_false());
    json_object_set_new(out, "disk_only", json_true());
    json_object_set_new(out, "method", json_string("btrfs-reflink"));
    json_t *cons = hx_bt_prop(rec, "consistency");
    json_object_set_new(out, "consistency", json_is_null(cons) ? json_string("crash") : cons);
    xmlNodePtr d = hx_xml_child(rec, "description");
    hx_autoxmlstr xmlChar *desc = d ? xmlNodeGetContent(d) : NULL;
    json_object_set_new(out, "description", json_string(desc ? (const char *)desc : ""));
    hx_autofree char *cur = hx_bt_current(doc);
    json_object_set_new(out, "current", json_boolean(cur && xmlStrEqual(name, BAD_CAST cur)));
    json_t *disks = json_array();
    for (xmlNodePtr c = rec->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "disk"))
            json_array_append_new(
                disks, json_pack("{s:o,s:s,s:o,s:o,s:o}", "target", hx_bt_prop(c, "target"),
                                 "snapshot", "btrfs-reflink", "pool", hx_bt_prop(c, "pool"),
                                 "volume", hx_bt_prop(c, "volume"), "copy", hx_bt_prop(c, "copy")));
    json_object_set_new(out, "disks", disks);
    return out;
}

json_t *hx_snap_btrfs_volumes(const char *domain_xml)
{
    json_t *out = json_array();
    hx_autoxml xmlDocPtr doc = hx_xml_read(domain_xml, "domain.xml");
    hx_autoxpctx xmlXPathContextPtr ctx = doc ? xmlXPathNewContext(doc) : NULL;
    if (!ctx)
        return out;
    xmlXPathRegisterNs(ctx, BAD_CAST "s", BAD_CAST HX_SNAP_NS);
    hx_autoxpobj xmlXPathObjectPtr o = xmlXPathEvalExpression(
        BAD_CAST "/domain/metadata/s:snapshots/s:snapshot[@kind='btrfs']/s:disk", ctx);
    for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
        xmlNodePtr d = o->nodesetval->nodeTab[i];
        json_t *pool = hx_bt_prop(d, "pool"), *copy = hx_bt_prop(d, "copy");
        if (json_is_string(pool) && json_is_string(copy))
            json_array_append_new(out, json_pack("{s:o,s:o}", "pool", pool, "name", copy));
        else {
            json_decref(pool);
            json_decref(copy);
        }
    }
    return out;
}

/* The VM's disks when every one is a raw volume of a btrfs-backed pool: 1 and *out
 * [{"target","pool","volume","capacity"}]; 0 when not (libvirt's snapshots apply). */
static int hx_bt_disks(hx_snapctx *c, json_t **out)
{
    hx_autofree char *xml = virDomainGetXMLDesc(c->dom, 0);
    hx_autoxml xmlDocPtr doc = hx_xml_read(xml, "domain.xml");
    hx_autoxpctx xmlXPathContextPtr ctx = doc ? xmlXPathNewContext(doc) : NULL;
    hx_autoxpobj xmlXPathObjectPtr o =
        ctx ? xmlXPathEvalExpression(
                  BAD_CAST "/domain/devices/disk[not(@device) or @device='disk']", ctx)
            : NULL;
    if (!o || !o->nodesetval || o->nodesetval->nodeNr == 0)
        return 0;
    hx_autojson json_t *disks = json_array();
    for (int i = 0; i < o->nodesetval->nodeNr; i++) {
        xmlNodePtr d = o->nodesetval->nodeTab[i];
        xmlNodePtr drv = hx_xml_child(d, "driver");
        hx_autoxmlstr xmlChar *fmt = drv ? xmlGetProp(drv, BAD_CAST "type") : NULL;
        xmlNodePtr tgt = hx_xml_child(d, "target");
        hx_autoxmlstr xmlChar *dev = tgt ? xmlGetProp(tgt, BAD_CAST "dev") : NULL;
        uint64_t cap = 0;
        hx_autopool virStoragePoolPtr p =
            fmt && xmlStrEqual(fmt, BAD_CAST "raw") && dev ? hx_disk_pool(c->conn, d, &cap) : NULL;
        if (!p)
            return 0;
        char fs[32];
        int reflink = 0;
        if (hx_pool_backing(c->conn, virStoragePoolGetName(p), fs, sizeof(fs), &reflink) < 0 ||
            !reflink)
            return 0;
        /* The volume's own name, whether the disk names a file or a pool volume. */
        xmlNodePtr src = hx_xml_child(d, "source");
        hx_autoxmlstr xmlChar *file = src ? xmlGetProp(src, BAD_CAST "file") : NULL;
        hx_autoxmlstr xmlChar *vname = src ? xmlGetProp(src, BAD_CAST "volume") : NULL;
        hx_autovol virStorageVolPtr v = file
                                            ? virStorageVolLookupByPath(c->conn, (const char *)file)
                                            : virStorageVolLookupByName(p, (const char *)vname);
        if (!v)
            return 0;
        json_array_append_new(disks,
                              json_pack("{s:s,s:s,s:s,s:I}", "target", (const char *)dev, "pool",
                                        virStoragePoolGetName(p), "volume", virStorageVolGetName(v),
                                        "capacity", (json_int_t)cap));
    }
    *out = hx_steal(&disks);
    return 1;
}

/* A reflink copy of volume from in pool as a new volume named to; NULL with libvirt's error. */
static virStorageVolPtr hx_bt_reflink(virConnectPtr conn, const char *pool, const char *from,
                                      const char *to)
{
    hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(conn, pool);
    hx_autovol virStorageVolPtr src = p ? virStorageVolLookupByName(p, from) : NULL;
    virStorageVolInfo vi;
    if (!src || virStorageVolGetInfo(src, &vi) < 0)
        return NULL;
    hx_autofree char *xml = hx_volume_xml(to, vi.capacity, "raw", 0, NULL, NULL);
    /* FICLONE of the whole file: no data moves, the copy shares every extent. libvirt reports
     * an error instead of copying bytes when the filesystem cannot clone. */
    return xml ? virStorageVolCreateXMLFrom(p, xml, src, VIR_STORAGE_VOL_CREATE_REFLINK) : NULL;
}

/* Deletes volumes [{"pool","name"}] of a snapshot; the number that could not be deleted. */
static int hx_bt_delete_vols(virConnectPtr conn, json_t *vols, const char *vm, const char *snap)
{
    int failed = 0;
    size_t i;
    json_t *v;
    json_array_foreach (vols, i, v) {
        const char *pool = json_string_value(json_object_get(v, "pool"));
        const char *name = json_string_value(json_object_get(v, "name"));
        hx_autopool virStoragePoolPtr p = pool ? virStoragePoolLookupByName(conn, pool) : NULL;
        hx_autovol virStorageVolPtr vol = p && name ? virStorageVolLookupByName(p, name) : NULL;
        if (!vol && virGetLastErrorCode() == VIR_ERR_NO_STORAGE_VOL)
            continue;
        if (!vol || virStorageVolDelete(vol, 0) < 0) {
            hx_err("VM %s: snapshot %s: cannot delete volume %s/%s: %s", vm, snap,
                   pool ? pool : "?", name ? name : "?", virGetLastErrorMessage());
            failed++;
        }
    }
    return failed;
}

/* The snapshot copies a record names, as [{"pool","name"}]. */
static json_t *hx_bt_copies(xmlNodePtr rec)
{
    json_t *out = json_array();
    for (xmlNodePtr c = rec->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "disk"))
            json_array_append_new(out, json_pack("{s:o,s:o}", "pool", hx_bt_prop(c, "pool"), "name",
                                                 hx_bt_prop(c, "copy")));
    return out;
}

static const char *hx_bt_state_name(int st)
{
    switch (st) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
        return "running";
    case VIR_DOMAIN_PAUSED:
        return "paused";
    default:
        return "shutoff";
    }
}

static int hx_bt_create(hx_snapctx *c, const char *node, const char *vm, const char *name,
                        json_t *disks, char **msg)
{
    /* Free space: a reflink copy shares every extent with its disk, so it costs metadata
     * only; what costs is the copy-on-write that follows, when the disk is written and the
     * snapshot keeps the old extents. Counted like for internal snapshots without memory. */
    size_t i;
    json_t *d;
    hx_autojson json_t *per_pool = json_object(); /* pool -> [bytes, n] */
    json_array_foreach (disks, i, d) {
        const char *pool = json_string_value(json_object_get(d, "pool"));
        json_t *e = json_object_get(per_pool, pool);
        if (!e)
            json_object_set_new(per_pool, pool,
                                e = json_pack("[I,I]", (json_int_t)0, (json_int_t)0));
        json_array_set_new(e, 0,
                           json_integer(json_integer_value(json_array_get(e, 0)) +
                                        json_integer_value(json_object_get(d, "capacity"))));
        json_array_set_new(e, 1, json_integer(json_integer_value(json_array_get(e, 1)) + 1));
    }
    const char *pname;
    json_t *e;
    json_object_foreach (per_pool, pname, e) {
        hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(c->conn, pname);
        virStoragePoolInfo pi;
        if (p)
            virStoragePoolRefresh(p, 0);
        if (!p || virStoragePoolGetInfo(p, &pi) < 0)
            return hx_fail(msg, hx_snap_virt_errno(), "VM %s: snapshot %s: storage pool %s: %s", vm,
                           name, pname, virGetLastErrorMessage());
        uint64_t need = hx_snap_space_needed(0, (uint64_t)json_integer_value(json_array_get(e, 0)),
                                             (unsigned)json_integer_value(json_array_get(e, 1)));
        if (pi.available < need)
            return hx_fail(msg, -ENOSPC,
                           "VM %s: snapshot %s needs about %llu MiB in storage pool %s for the "
                           "disks' growth but the pool has %llu MiB free",
                           vm, name, (unsigned long long)((need + HX_MIB - 1) / HX_MIB), pname,
                           (unsigned long long)(pi.available / HX_MIB));
    }
    /* The copies' names: ".<volume>@<snapshot>", hidden in listings (ls) yet listed by
     * libvirt. A volume already of that name is never overwritten (EEXIST). */
    json_array_foreach (disks, i, d) {
        char copy[512];
        int n = snprintf(copy, sizeof(copy), ".%s@%s",
                         json_string_value(json_object_get(d, "volume")), name);
        if (n < 0 || n > 255)
            return hx_fail(msg, -ENAMETOOLONG,
                           "VM %s: snapshot %s: the copy of volume %s would need a name longer "
                           "than 255 bytes",
                           vm, name, json_string_value(json_object_get(d, "volume")));
        hx_autopool virStoragePoolPtr p =
            virStoragePoolLookupByName(c->conn, json_string_value(json_object_get(d, "pool")));
        hx_autovol virStorageVolPtr old = p ? virStorageVolLookupByName(p, copy) : NULL;
        if (old)
            return hx_fail(msg, -EEXIST, "VM %s: snapshot %s: volume %s/%s already exists", vm,
                           name, json_string_value(json_object_get(d, "pool")), copy);
        json_object_set_new(d, "copy", json_string(copy));
    }
    int st = c->view.state, reason;
    if (virDomainGetState(c->dom, &st, &reason, 0) < 0)
        st = c->view.state;
    int running = st == VIR_DOMAIN_RUNNING || st == VIR_DOMAIN_BLOCKED;
    int frozen = 0, paused = 0;
    if (running && hx_agent_connected(c->view.xml_live)) {
        frozen = virDomainFSFreeze(c->dom, NULL, 0, 0) >= 0;
        if (!frozen)
            hx_info("VM %s: the guest agent did not freeze the filesystems (%s): snapshot %s is "
                    "crash-consistent",
                    vm, virGetLastErrorMessage(), name);
    }
    /* qemu's stop drains and flushes every disk: the files hold what the guest wrote. */
    long long t0 = hx_now_mono_ns();
    if (running) {
        if (virDomainSuspend(c->dom) < 0) {
            int r = hx_fail(msg, hx_snap_virt_errno() == -EBUSY ? -EIO : hx_snap_virt_errno(),
                            "VM %s: snapshot %s: cannot pause it: %s", vm, name,
                            virGetLastErrorMessage());
            if (frozen && virDomainFSThaw(c->dom, NULL, 0, 0) < 0)
                hx_err("VM %s: cannot thaw the guest's filesystems: %s", vm,
                       virGetLastErrorMessage());
            return r;
        }
        paused = 1;
    }
    hx_autojson json_t *made = json_array();
    int r = 0;
    json_array_foreach (disks, i, d) {
        const char *pool = json_string_value(json_object_get(d, "pool"));
        const char *copy = json_string_value(json_object_get(d, "copy"));
        hx_autovol virStorageVolPtr v =
            hx_bt_reflink(c->conn, pool, json_string_value(json_object_get(d, "volume")), copy);
        if (!v) {
            r = hx_fail(msg, -EIO, "VM %s: snapshot %s: cannot reflink disk %s to %s/%s: %s", vm,
                        name, json_string_value(json_object_get(d, "target")), pool, copy,
                        virGetLastErrorMessage());
            break;
        }
        json_array_append_new(made, json_pack("{s:s,s:s}", "pool", pool, "name", copy));
    }
    long long paused_ns = hx_now_mono_ns() - t0;
    if (paused && virDomainResume(c->dom) < 0)
        hx_err("VM %s: cannot resume it after snapshot %s: %s", vm, name, virGetLastErrorMessage());
    if (frozen && virDomainFSThaw(c->dom, NULL, 0, 0) < 0)
        hx_err("VM %s: cannot thaw the guest's filesystems after snapshot %s: %s", vm, name,
               virGetLastErrorMessage());
    if (r == 0) {
        hx_autoxml xmlDocPtr doc = hx_bt_meta_load(c->dom, VIR_DOMAIN_AFFECT_CONFIG);
        xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
        if (!root) {
            r = hx_fail(msg, -ENOMEM, "VM %s: snapshot %s: out of memory", vm, name);
        } else {
            hx_autofree char *parent = hx_bt_current(doc);
            xmlNodePtr rec = xmlNewChild(root, root->ns, BAD_CAST "snapshot", NULL);
            char created[32];
            snprintf(created, sizeof(created), "%lld", hx_now_real_ns() / 1000000000LL);
            xmlNewProp(rec, BAD_CAST "name", BAD_CAST name);
            xmlNewProp(rec, BAD_CAST "kind", BAD_CAST "btrfs");
            xmlNewProp(rec, BAD_CAST "consistency", BAD_CAST(frozen ? "application" : "crash"));
            xmlNewProp(rec, BAD_CAST "created", BAD_CAST created);
            xmlNewProp(rec, BAD_CAST "state", BAD_CAST hx_bt_state_name(st));
            xmlNewProp(rec, BAD_CAST "parent", BAD_CAST(parent ? parent : ""));
            json_array_foreach (disks, i, d) {
                xmlNodePtr x = xmlNewChild(rec, root->ns, BAD_CAST "disk", NULL);
                static const char *const keys[] = {"target", "pool", "volume", "copy"};
                for (size_t k = 0; k < 4; k++)
                    xmlNewProp(x, BAD_CAST keys[k],
                               BAD_CAST json_string_value(json_object_get(d, keys[k])));
            }
            xmlSetProp(root, BAD_CAST "current", BAD_CAST name);
            if (hx_bt_meta_save(c->dom, doc) < 0)
                r = hx_fail(msg, hx_snap_virt_errno(),
                            "VM %s: snapshot %s: cannot record it in the domain metadata: %s", vm,
                            name, virGetLastErrorMessage());
        }
    }
    if (r < 0) {
        /* Nothing half-made stays: the copies made so far go. */
        hx_bt_delete_vols(c->conn, made, vm, name);
        return r;
    }
    hx_info("node %s: VM %s: took btrfs snapshot %s (%zu disks by reflink, %s, paused %lld ms)",
            node, vm, name, json_array_size(disks),
            frozen ? "application-consistent" : "crash-consistent",
            paused ? paused_ns / 1000000 : 0LL);
    return 0;
}

static int hx_bt_delete(hx_snapctx *c, xmlDocPtr doc, xmlNodePtr rec, const char *node,
                        const char *vm, const char *snap, char **msg)
{
    hx_autojson json_t *copies = hx_bt_copies(rec);
    if (hx_bt_delete_vols(c->conn, copies, vm, snap) > 0)
        return hx_fail(msg, -EIO, "VM %s: snapshot %s: cannot delete all of its volumes", vm, snap);
    /* Like libvirt's: the children move to the parent, which becomes current if this was. */
    hx_autoxmlstr xmlChar *parent = xmlGetProp(rec, BAD_CAST "parent");
    xmlNodePtr root = xmlDocGetRootElement(doc);
    for (xmlNodePtr k = root->children; k; k = k->next)
        if (k->type == XML_ELEMENT_NODE && hx_bt_attr_is(k, "kind", "btrfs") &&
            hx_bt_attr_is(k, "parent", snap))
            xmlSetProp(k, BAD_CAST "parent", parent ? parent : BAD_CAST "");
    if (hx_bt_attr_is(root, "current", snap)) {
        if (parent && *parent)
            xmlSetProp(root, BAD_CAST "current", parent);
        else
            xmlUnsetProp(root, BAD_CAST "current");
    }
    xmlUnlinkNode(rec);
    xmlFreeNode(rec);
    if (hx_bt_meta_save(c->dom, doc) < 0)
        return hx_fail(msg, hx_snap_virt_errno(),
                       "VM %s: snapshot %s: its volumes are deleted but its record stays: %s", vm,
                       snap, virGetLastErrorMessage());
    hx_info("node %s: VM %s: deleted btrfs snapshot %s", node, vm, snap);
    return 0;
}

static int hx_bt_revert(hx_snapctx *c, xmlDocPtr doc, xmlNodePtr rec, const char *node,
                        const char *vm, const char *snap, char **msg)
{
    /* Every copy first: a revert that cannot finish does not start. */
    for (xmlNodePtr d = rec->children; d; d = d->next) {
        if (d->type != XML_ELEMENT_NODE || !xmlStrEqual(d->name, BAD_CAST "disk"))
            continue;
        hx_autoxmlstr xmlChar *pool = xmlGetProp(d, BAD_CAST "pool");
        hx_autoxmlstr xmlChar *copy = xmlGetProp(d, BAD_CAST "copy");
        hx_autopool virStoragePoolPtr p =
            pool ? virStoragePoolLookupByName(c->conn, (const char *)pool) : NULL;
        hx_autovol virStorageVolPtr v =
            p && copy ? virStorageVolLookupByName(p, (const char *)copy) : NULL;
        if (!v)
            return hx_fail(msg, -EIO, "VM %s: snapshot %s: its volume %s/%s is missing: %s", vm,
                           snap, pool ? (const char *)pool : "?", copy ? (const char *)copy : "?",
                           virGetLastErrorMessage());
    }
    /* The disks are replaced under the VM: a running one is powered off first (what it wrote
     * since the snapshot is dropped anyway) and started again afterwards, booting from the
     * snapshot's disks; the snapshot holds no memory to resume from. */
    int active = virDomainIsActive(c->dom) == 1;
    if (active && virDomainDestroy(c->dom) < 0)
        return hx_fail(msg, hx_snap_virt_errno() == -EBUSY ? -EIO : hx_snap_virt_errno(),
                       "VM %s: cannot power it off to revert to snapshot %s: %s", vm, snap,
                       virGetLastErrorMessage());
    for (xmlNodePtr d = rec->children; d; d = d->next) {
        if (d->type != XML_ELEMENT_NODE || !xmlStrEqual(d->name, BAD_CAST "disk"))
            continue;
        hx_autoxmlstr xmlChar *pool = xmlGetProp(d, BAD_CAST "pool");
        hx_autoxmlstr xmlChar *vol = xmlGetProp(d, BAD_CAST "volume");
        hx_autoxmlstr xmlChar *copy = xmlGetProp(d, BAD_CAST "copy");
        if (!pool || !vol || !copy)
            continue;
        /* libvirt cannot clone onto an existing volume: the disk's volume is deleted and made
         * again from the copy under its name (same path). The copy stays, so a failure here
         * loses nothing: the error names it. */
        hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(c->conn, (const char *)pool);
        hx_autovol virStorageVolPtr cur =
            p ? virStorageVolLookupByName(p, (const char *)vol) : NULL;
        if (cur && virStorageVolDelete(cur, 0) < 0)
            return hx_fail(msg, -EIO,
                           "VM %s: revert to snapshot %s: cannot replace volume %s/%s: %s", vm,
                           snap, pool, vol, virGetLastErrorMessage());
        hx_autovol virStorageVolPtr nv =
            hx_bt_reflink(c->conn, (const char *)pool, (const char *)copy, (const char *)vol);
        if (!nv)
            return hx_fail(msg, -EIO,
                           "VM %s: revert to snapshot %s: cannot reflink %s/%s back to %s (the "
                           "snapshot's copy is intact): %s",
                           vm, snap, pool, copy, vol, virGetLastErrorMessage());
    }
    xmlSetProp(xmlDocGetRootElement(doc), BAD_CAST "current", BAD_CAST snap);
    if (hx_bt_meta_save(c->dom, doc) < 0)
        hx_warn("VM %s: cannot record snapshot %s as current: %s", vm, snap,
                virGetLastErrorMessage());
    if (active && virDomainCreate(c->dom) < 0)
        return hx_fail(msg, -EIO, "VM %s: reverted to snapshot %s but cannot start it again: %s",
                       vm, snap, virGetLastErrorMessage());
    hx_info("node %s: VM %s: reverted to btrfs snapshot %s%s", node, vm, snap,
            active ? " (powered off and started again)" : "");
    return 0;
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
    return hx_xml_dump(doc, root);
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
    hx_autoxml xmlDocPtr meta = hx_bt_meta_load(c.dom, VIR_DOMAIN_AFFECT_CONFIG);
    if (old || hx_bt_find(meta, name))
        return hx_fail(msg, -EEXIST, "VM %s already has a snapshot %s", vm, name);
    /* Raw disks on btrfs: reflink copies instead of libvirt's internal (qcow2) snapshots. */
    hx_autojson json_t *bdisks = NULL;
    if (hx_bt_disks(&c, &bdisks) == 1)
        return hx_bt_create(&c, node, vm, name, bdisks, msg);
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
    hx_autoxml xmlDocPtr meta = hx_bt_meta_load(c.dom, VIR_DOMAIN_AFFECT_CONFIG);
    xmlNodePtr rec = hx_bt_find(meta, snap);
    if (rec)
        return hx_bt_delete(&c, meta, rec, node, vm, snap, msg);
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
    hx_autoxml xmlDocPtr bmeta = hx_bt_meta_load(c.dom, VIR_DOMAIN_AFFECT_CONFIG);
    xmlNodePtr rec = hx_bt_find(bmeta, snap);
    if (rec)
        return hx_bt_revert(&c, bmeta, rec, node, vm, snap, msg);
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
    hx_autoxml xmlDocPtr meta = hx_bt_meta_load(c.dom, VIR_DOMAIN_AFFECT_CONFIG);
    xmlNodePtr rec = hx_bt_find(meta, snap);
    if (rec) {
        xmlNodePtr d = hx_xml_child(rec, "description");
        if (d) {
            xmlUnlinkNode(d);
            xmlFreeNode(d);
        }
        if (*desc)
            xmlNewTextChild(rec, rec->ns, BAD_CAST "description", BAD_CAST desc); /* escapes */
        if (hx_bt_meta_save(c.dom, meta) < 0)
            return hx_fail(msg, hx_snap_virt_errno(),
                           "snapshot %s of VM %s: cannot set the description: %s", snap, vm,
                           virGetLastErrorMessage());
        return 0;
    }
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
    hx_autofree char *nxml = hx_xml_dump(doc, root);
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
