/* Actions on VMs through libvirt: lifecycle, config.json commits, create, delete. */
#include "auto.h"
#include "hx_vmops.h"
#include "hx_snapshots.h"
#include "hx_cloudinit.h"
#include "hx_clone.h"
#include "hx_domxml.h"
#include "hx_log.h"
#include "hx_util.h"
#include "node.h"
#include "vmops_priv.h"

#include <ctype.h>
#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- scoped cleanup ---- */

static int hx_str_same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* Sets *msg to a formatted sentence and returns err (negative errno). */
int hx_fail(char **msg, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (msg && vasprintf(msg, fmt, ap) < 0)
        *msg = NULL;
    va_end(ap);
    return err;
}

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
#define hx_autoctx __attribute__((cleanup(hx_vmctx_clear)))

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

/* ---- lifecycle ---- */

#define ST(s) (1u << (s))
#define ST_RUN (ST(VIR_DOMAIN_RUNNING) | ST(VIR_DOMAIN_BLOCKED))

typedef struct hx_action {
    const char *word;
    unsigned allowed;      /* virDomainState bits in which the action makes sense */
    const char *forbidden; /* why not, for the message */
} hx_action;

static const hx_action hx_actions[] = {
    {"start", ST(VIR_DOMAIN_SHUTOFF), "it is not shut off"},
    {"shutdown", ST_RUN, "it is not running"},
    {"stop",
     ST_RUN | ST(VIR_DOMAIN_PAUSED) | ST(VIR_DOMAIN_SHUTDOWN) | ST(VIR_DOMAIN_CRASHED) |
         ST(VIR_DOMAIN_PMSUSPENDED),
     "it is already shut off"},
    {"reboot", ST_RUN, "it is not running"},
    {"reset", ST_RUN | ST(VIR_DOMAIN_PAUSED), "it is not running"},
    {"pause", ST_RUN, "it is not running"},
    {"resume", ST(VIR_DOMAIN_PAUSED), "it is not paused"},
};

const char *const hx_vm_action_words[] = {"start", "shutdown", "stop",   "reboot",
                                          "reset", "pause",    "resume", NULL};

static int hx_action_run(virDomainPtr d, const char *word)
{
    if (strcmp(word, "start") == 0)
        return virDomainCreate(d);
    if (strcmp(word, "shutdown") == 0)
        return virDomainShutdown(d); /* ACPI: returns once the guest was asked */
    if (strcmp(word, "stop") == 0)
        return virDomainDestroy(d);
    if (strcmp(word, "reboot") == 0)
        return virDomainReboot(d, 0);
    if (strcmp(word, "reset") == 0)
        return virDomainReset(d, 0);
    if (strcmp(word, "pause") == 0)
        return virDomainSuspend(d);
    return virDomainResume(d);
}

/* Whether the VM is a template (config.json "template": true), from its metadata. */
int hx_vm_is_template(const char *config_json)
{
    hx_autojson json_t *cfg = config_json ? json_loads(config_json, 0, NULL) : NULL;
    return json_is_true(json_object_get(cfg, "template"));
}

int hx_vm_action(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                 const char *word, size_t len, char **msg)
{
    /* One command per write: blanks and one trailing newline around the word are fine. */
    while (len > 0 && isspace((unsigned char)word[len - 1]))
        len--;
    while (len > 0 && isspace((unsigned char)*word)) {
        word++;
        len--;
    }
    const hx_action *a = NULL;
    for (size_t i = 0; i < sizeof(hx_actions) / sizeof(hx_actions[0]) && !a; i++)
        if (strlen(hx_actions[i].word) == len && memcmp(hx_actions[i].word, word, len) == 0)
            a = &hx_actions[i];
    if (!a)
        return hx_fail(msg, -EINVAL,
                       "VM %s: unknown action \"%.*s\" (start, shutdown, stop, reboot, reset, "
                       "pause, resume)",
                       vm, (int)(len > 64 ? 64 : len), word);
    hx_autoctx hx_vmctx c;
    int r = hx_vmctx_open(cl, node, vm, uuid, &c, msg);
    if (r < 0)
        return r;
    int st = c.view.state, reason;
    /* The cache can trail libvirt by a refresh still in flight; a refusal asks libvirt. */
    if ((st < 0 || st >= 32 || !(a->allowed & ST(st))) &&
        virDomainGetState(c.dom, &st, &reason, 0) < 0)
        st = c.view.state;
    if (st < 0 || st >= 32 || !(a->allowed & ST(st)))
        return hx_fail(msg, -EBUSY, "VM %s cannot %s: %s", vm, a->word, a->forbidden);
    if (strcmp(a->word, "start") == 0 && hx_vm_is_template(c.view.config_json))
        return hx_fail(msg, -EPERM, "VM %s is a template and cannot be started", vm);
    /* The cloud-init ISO is made (or removed) now, from the documents as they are at this
     * start: QEMU opens the cdrom's file when the domain starts. */
    if (strcmp(a->word, "start") == 0) {
        r = hx_ci_prepare(c.conn, c.dom, vm, msg);
        if (r < 0) {
            hx_vm_refresh(c.n, vm, c.view.uuid);
            return r;
        }
    }
    if (hx_action_run(c.dom, a->word) < 0) {
        int e = hx_virt_errno();
        r = hx_fail(msg, e, "VM %s: %s failed: %s", vm, a->word, virGetLastErrorMessage());
        hx_vm_refresh(c.n, vm, c.view.uuid);
        return r;
    }
    /* pause and resume change the state alone: the cache takes the known result now (a
     * refresh costs several libvirt round trips, more than the action itself), and libvirt's
     * lifecycle event refreshes the rest as usual. Other actions change the live XML too. */
    if (strcmp(a->word, "pause") == 0)
        hx_node_note_state(c.n, c.view.uuid, VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_USER);
    else if (strcmp(a->word, "resume") == 0)
        hx_node_note_state(c.n, c.view.uuid, VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_UNPAUSED);
    else
        hx_vm_refresh(c.n, vm, c.view.uuid);
    return 0;
}

/* ---- references on the node, for config.json validation ---- */

static int hx_env_network(const char *name, void *opaque)
{
    virNetworkPtr net = virNetworkLookupByName(opaque, name);
    if (net) {
        virNetworkFree(net);
        return 1;
    }
    return virGetLastErrorCode() == VIR_ERR_NO_NETWORK ? 0 : -1;
}

static int hx_env_bridge(const char *name, void *opaque)
{
    virInterfacePtr i = virInterfaceLookupByName(opaque, name);
    if (i) {
        virInterfaceFree(i);
        return 1;
    }
    return virGetLastErrorCode() == VIR_ERR_NO_INTERFACE ? 0 : -1;
}

static int hx_env_pool(const char *name, void *opaque)
{
    hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(opaque, name);
    if (p)
        return 1;
    return virGetLastErrorCode() == VIR_ERR_NO_STORAGE_POOL ? 0 : -1;
}

static int64_t hx_env_volume(const char *pool, const char *vol, void *opaque)
{
    hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(opaque, pool);
    if (!p)
        return virGetLastErrorCode() == VIR_ERR_NO_STORAGE_POOL ? -1 : -2;
    hx_autovol virStorageVolPtr v = virStorageVolLookupByName(p, vol);
    if (!v)
        return virGetLastErrorCode() == VIR_ERR_NO_STORAGE_VOL ? -1 : -2;
    virStorageVolInfo info;
    if (virStorageVolGetInfo(v, &info) < 0)
        return -2;
    return (int64_t)info.capacity;
}

/* ---- volumes Horcrux creates ---- */

char *hx_xml_dump(xmlDocPtr doc, xmlNodePtr node)
{
    xmlBufferPtr buf = xmlBufferCreate();
    if (!buf)
        return NULL;
    char *out = NULL;
    if (node ? xmlNodeDump(buf, doc, node, 0, 0) >= 0 : 1) {
        if (!node) {
            xmlChar *mem = NULL;
            int size = 0;
            xmlDocDumpMemory(doc, &mem, &size);
            out = mem ? strndup((const char *)mem, (size_t)size) : NULL;
            xmlFree(mem);
        } else {
            out = strdup((const char *)xmlBufferContent(buf));
        }
    }
    xmlBufferFree(buf);
    return out;
}

char *hx_volume_xml(const char *name, unsigned long long bytes, const char *format, int sparse,
                    const char *backing, const char *backing_format)
{
    hx_autoxml xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    if (!doc)
        return NULL;
    xmlNodePtr root = xmlNewNode(NULL, BAD_CAST "volume");
    xmlDocSetRootElement(doc, root);
    xmlNewTextChild(root, NULL, BAD_CAST "name", BAD_CAST name);
    char cap[32];
    snprintf(cap, sizeof(cap), "%llu", bytes);
    xmlNewProp(xmlNewTextChild(root, NULL, BAD_CAST "capacity", BAD_CAST cap), BAD_CAST "unit",
               BAD_CAST "bytes");
    if (sparse)
        xmlNewProp(xmlNewTextChild(root, NULL, BAD_CAST "allocation", BAD_CAST "0"),
                   BAD_CAST "unit", BAD_CAST "bytes");
    if (format && *format) {
        xmlNodePtr t = xmlNewChild(root, NULL, BAD_CAST "target", NULL);
        xmlNewProp(xmlNewChild(t, NULL, BAD_CAST "format", NULL), BAD_CAST "type", BAD_CAST format);
    }
    if (backing) {
        xmlNodePtr bs = xmlNewChild(root, NULL, BAD_CAST "backingStore", NULL);
        xmlNewTextChild(bs, NULL, BAD_CAST "path", BAD_CAST backing);
        xmlNewProp(xmlNewChild(bs, NULL, BAD_CAST "format", NULL), BAD_CAST "type",
                   BAD_CAST backing_format);
    }
    return hx_xml_dump(doc, root);
}

void hx_volumes_delete(virConnectPtr conn, json_t *vols, const char *vm)
{
    size_t i;
    json_t *v;
    json_array_foreach (vols, i, v) {
        const char *pool = json_string_value(json_object_get(v, "pool"));
        const char *name = json_string_value(json_object_get(v, "name"));
        if (!pool || !name)
            continue;
        hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(conn, pool);
        hx_autovol virStorageVolPtr vol = p ? virStorageVolLookupByName(p, name) : NULL;
        if (!vol) {
            if (virGetLastErrorCode() != VIR_ERR_NO_STORAGE_VOL)
                hx_warn("VM %s: cannot find volume %s/%s to delete: %s", vm, pool, name,
                        virGetLastErrorMessage());
            continue;
        }
        if (virStorageVolDelete(vol, 0) < 0)
            hx_err("VM %s: cannot delete volume %s/%s: %s", vm, pool, name,
                   virGetLastErrorMessage());
        else
            hx_info("VM %s: deleted volume %s/%s", vm, pool, name);
    }
}

/* Creates the volumes of vols; on failure deletes those it made and returns -errno. */
static int hx_volumes_create(virConnectPtr conn, json_t *vols, const char *vm, char **msg)
{
    size_t i;
    json_t *v;
    json_array_foreach (vols, i, v) {
        const char *pool = json_string_value(json_object_get(v, "pool"));
        const char *name = json_string_value(json_object_get(v, "name"));
        const char *fmt = json_string_value(json_object_get(v, "format"));
        json_int_t size = json_integer_value(json_object_get(v, "size_bytes"));
        hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(conn, pool);
        virStoragePoolInfo pi;
        int r = 0;
        if (!p || virStoragePoolGetInfo(p, &pi) < 0) {
            r = hx_virt_errno();
            hx_fail(msg, r, "VM %s: storage pool %s: %s", vm, pool, virGetLastErrorMessage());
        } else if ((!fmt || strcmp(fmt, "qcow2") != 0) && (unsigned long long)size > pi.available) {
            /* A raw volume may fill all of its size; qcow2 grows from almost nothing. */
            r = hx_fail(msg, -ENOSPC,
                        "VM %s: volume %s/%s needs %lld bytes but pool %s has %llu free", vm, pool,
                        name, (long long)size, pool, pi.available);
        } else {
            hx_autofree char *xml =
                hx_volume_xml(name, (unsigned long long)size, fmt, 0, NULL, NULL);
            hx_autovol virStorageVolPtr vol = xml ? virStorageVolCreateXML(p, xml, 0) : NULL;
            if (!vol) {
                r = xml ? hx_virt_errno() : -ENOMEM;
                hx_fail(msg, r == -EBUSY ? -EIO : r, "VM %s: cannot create volume %s/%s: %s", vm,
                        pool, name, xml ? virGetLastErrorMessage() : "out of memory");
                r = r == -EBUSY ? -EIO : r;
            } else {
                hx_info("VM %s: created volume %s/%s (%lld bytes)", vm, pool, name,
                        (long long)size);
            }
        }
        if (r < 0) {
            hx_autojson json_t *made = json_array();
            for (size_t j = 0; j < i; j++)
                json_array_append(made, json_array_get(vols, j));
            hx_volumes_delete(conn, made, vm);
            return r;
        }
    }
    return 0;
}

/* The volumes recorded in a domain XML's Horcrux volume metadata, as a JSON array. */
static json_t *hx_volumes_recorded(const char *xml)
{
    json_t *out = json_array();
    hx_autoxml xmlDocPtr doc =
        xml ? xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
            : NULL;
    if (!doc)
        return out;
    __attribute__((cleanup(hx_xpctxp))) xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    if (!ctx || xmlXPathRegisterNs(ctx, BAD_CAST "v", BAD_CAST HX_VOLS_NS) < 0)
        return out;
    __attribute__((cleanup(hx_xpobjp))) xmlXPathObjectPtr o =
        xmlXPathEvalExpression(BAD_CAST "/domain/metadata/v:volumes/*[local-name()='volume']", ctx);
    for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
        xmlNodePtr n = o->nodesetval->nodeTab[i];
        xmlChar *pool = xmlGetProp(n, BAD_CAST "pool");
        xmlChar *name = xmlGetProp(n, BAD_CAST "name");
        if (pool && name)
            json_array_append_new(out, json_pack("{s:s,s:s}", "pool", (const char *)pool, "name",
                                                 (const char *)name));
        xmlFree(pool);
        xmlFree(name);
    }
    return out;
}

/* Adds vols to the volume metadata of a domain XML; returns the new XML or NULL. */
char *hx_volumes_record(const char *xml, json_t *vols)
{
    hx_autoxml xmlDocPtr doc =
        xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
                      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root)
        return NULL;
    xmlNodePtr meta = NULL, list = NULL;
    for (xmlNodePtr c = root->children; c && !meta; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "metadata"))
            meta = c;
    if (!meta)
        meta = xmlNewChild(root, NULL, BAD_CAST "metadata", NULL);
    for (xmlNodePtr c = meta->children; c && !list; c = c->next)
        if (c->type == XML_ELEMENT_NODE && c->ns && xmlStrEqual(c->ns->href, BAD_CAST HX_VOLS_NS) &&
            xmlStrEqual(c->name, BAD_CAST "volumes"))
            list = c;
    if (!list) {
        list = xmlNewChild(meta, NULL, BAD_CAST "volumes", NULL);
        xmlNsPtr ns = xmlNewNs(list, BAD_CAST HX_VOLS_NS, BAD_CAST HX_VOLS_PREFIX);
        xmlSetNs(list, ns);
    }
    size_t i;
    json_t *v;
    json_array_foreach (vols, i, v) {
        xmlNodePtr e = xmlNewChild(list, list->ns, BAD_CAST "volume", NULL);
        xmlNewProp(e, BAD_CAST "pool", BAD_CAST json_string_value(json_object_get(v, "pool")));
        xmlNewProp(e, BAD_CAST "name", BAD_CAST json_string_value(json_object_get(v, "name")));
    }
    return hx_xml_dump(doc, NULL);
}

static int hx_vm_linked_clone(hx_cluster *cl, const char *node, const hx_vm_view *tmpl, char *out,
                              size_t size);

/* ---- config.json ---- */

/* Applies to the running VM what it can take now; the rest waits for the next boot (live.json
 * shows the difference). Failures here are not errors of the commit. */
static void hx_vm_apply_live(hx_vmctx *c, const char *vm, const char *old_live_xml)
{
    hx_autofree char *new_xml = virDomainGetXMLDesc(c->dom, VIR_DOMAIN_XML_INACTIVE);
    if (!new_xml || !old_live_xml)
        return;
    hx_autofree char *e1 = NULL;
    hx_autofree char *e2 = NULL;
    hx_autojson json_t *now = hx_domxml_to_config(old_live_xml, 0, NULL, NULL, &e1);
    hx_autojson json_t *want = hx_domxml_to_config(new_xml, 0, NULL, NULL, &e2);
    if (!now || !want)
        return;
    json_int_t vc = json_integer_value(json_object_get(want, "vcpus"));
    if (vc > 0 && vc != json_integer_value(json_object_get(now, "vcpus")) &&
        virDomainSetVcpusFlags(c->dom, (unsigned)vc, VIR_DOMAIN_AFFECT_LIVE) < 0)
        hx_info("VM %s: %d vCPUs at the next boot: %s", vm, (int)vc, virGetLastErrorMessage());
    json_int_t mem = json_integer_value(json_object_get(want, "memory_mib"));
    if (mem > 0 && mem != json_integer_value(json_object_get(now, "memory_mib")) &&
        virDomainSetMemoryFlags(c->dom, (unsigned long)mem * 1024, VIR_DOMAIN_AFFECT_LIVE) < 0)
        hx_info("VM %s: %lld MiB at the next boot: %s", vm, (long long)mem,
                virGetLastErrorMessage());
    /* Devices: disks by target, NICs by MAC; hot-plug what is new, unplug what went away. */
    static const struct {
        const char *list, *key, *which;
    } devs[] = {{"disks", "target", "disk"}, {"nics", "mac", "interface"}};
    for (size_t d = 0; d < 2; d++) {
        json_t *a = json_object_get(want, devs[d].list), *b = json_object_get(now, devs[d].list);
        for (int pass = 0; pass < 2; pass++) {
            json_t *from = pass ? b : a, *other = pass ? a : b;
            size_t i, j;
            json_t *x, *y;
            json_array_foreach (from, i, x) {
                const char *key = json_string_value(json_object_get(x, devs[d].key));
                int found = 0;
                json_array_foreach (other, j, y)
                    found |=
                        key && hx_str_same(key, json_string_value(json_object_get(y, devs[d].key)));
                if (found || !key)
                    continue;
                hx_autofree char *dx =
                    hx_domxml_device(pass ? old_live_xml : new_xml, devs[d].which, key);
                int r = !dx    ? -1
                        : pass ? virDomainDetachDeviceFlags(c->dom, dx, VIR_DOMAIN_AFFECT_LIVE)
                               : virDomainAttachDeviceFlags(c->dom, dx, VIR_DOMAIN_AFFECT_LIVE);
                if (r < 0)
                    hx_info("VM %s: %s %s %s at the next boot: %s", vm, devs[d].which, key,
                            pass ? "leaves" : "arrives", dx ? virGetLastErrorMessage() : "");
            }
        }
    }
}

int hx_vm_apply_config(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                       const char *doc, size_t len, char **msg)
{
    json_error_t je;
    hx_autojson json_t *cfg = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &je);
    if (!cfg)
        return hx_fail(msg, -EINVAL, "config.json of VM %s: line %d column %d: %s", vm, je.line,
                       je.column, je.text);
    if (!json_is_object(cfg))
        return hx_fail(msg, -EINVAL, "config.json of VM %s: must be a JSON object", vm);
    hx_autoctx hx_vmctx c;
    int r = hx_vmctx_open(cl, node, vm, uuid, &c, msg);
    if (r < 0)
        return r;
    /* A template's disks are the backing files of its linked clones: it must not start. */
    char clone[HX_VM_NAME_MAX];
    if (json_is_false(json_object_get(cfg, "template")) && hx_vm_is_template(c.view.config_json) &&
        hx_vm_linked_clone(cl, node, &c.view, clone, sizeof(clone)))
        return hx_fail(msg, -EBUSY,
                       "VM %s stays a template while linked clones use its disks (%s does)", vm,
                       clone);
    hx_domxml_env env = {.network_exists = hx_env_network,
                         .bridge_exists = hx_env_bridge,
                         .pool_exists = hx_env_pool,
                         .volume_size = hx_env_volume,
                         .opaque = c.conn};
    hx_autofree char *new_xml = NULL;
    hx_autofree char *err = NULL;
    json_t *vols_raw = NULL;
    r = hx_domxml_apply(c.view.xml_config, cfg, &env, &new_xml, &vols_raw, &err);
    hx_autojson json_t *vols = vols_raw;
    if (r < 0)
        return hx_fail(msg, r, "config.json of VM %s: %s", vm, err ? err : "invalid");
    json_t *autostart = json_object_get(cfg, "autostart");
    if (json_array_size(vols) > 0) {
        r = hx_volumes_create(c.conn, vols, vm, msg);
        if (r < 0)
            return r;
        char *rec = hx_volumes_record(new_xml, vols);
        if (!rec) {
            hx_volumes_delete(c.conn, vols, vm);
            return hx_fail(msg, -EIO, "VM %s: cannot record its new volumes", vm);
        }
        free(new_xml);
        new_xml = rec;
    }
    hx_autodom virDomainPtr nd = virDomainDefineXML(c.conn, new_xml);
    if (!nd) {
        r = hx_virt_errno();
        hx_fail(msg, r == -EBUSY ? -EINVAL : r, "VM %s: libvirt refused the configuration: %s", vm,
                virGetLastErrorMessage());
        hx_volumes_delete(c.conn, vols, vm);
        hx_vm_refresh(c.n, vm, c.view.uuid);
        return r == -EBUSY ? -EINVAL : r;
    }
    if (json_is_boolean(autostart) && json_is_true(autostart) != !!c.view.autostart &&
        virDomainSetAutostart(c.dom, json_is_true(autostart)) < 0)
        hx_warn("VM %s: cannot set autostart: %s", vm, virGetLastErrorMessage());
    if (c.view.id >= 0)
        hx_vm_apply_live(&c, vm, c.view.xml_live);
    hx_vm_refresh(c.n, vm, c.view.uuid);
    return 0;
}

/* ---- cloud-init documents ---- */

int hx_vm_set_cloudinit(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                        const char *file, const char *doc, size_t len, char **msg)
{
    if (len > HX_CI_MAX_BYTES)
        return hx_fail(msg, -EFBIG, "cloudinit/%s of VM %s: %zu bytes, at most %d", file, vm, len,
                       HX_CI_MAX_BYTES);
    hx_autoctx hx_vmctx c;
    int r = hx_vmctx_open(cl, node, vm, uuid, &c, msg);
    if (r < 0)
        return r;
    r = hx_ci_store(c.dom, vm, file, doc, len, msg);
    hx_vm_refresh(c.n, vm, c.view.uuid);
    return r;
}

/* ---- create and delete ---- */

/* "kvm" when the node offers hardware virtualization for x86_64 guests, else "qemu". */
static const char *hx_vm_default_type(virConnectPtr conn)
{
    hx_autofree char *caps = virConnectGetCapabilities(conn);
    hx_autoxml xmlDocPtr doc =
        caps ? xmlReadMemory(caps, (int)strlen(caps), "capabilities.xml", NULL,
                             XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
             : NULL;
    if (!doc)
        return "qemu";
    __attribute__((cleanup(hx_xpctxp))) xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    __attribute__((cleanup(hx_xpobjp))) xmlXPathObjectPtr o =
        ctx ? xmlXPathEvalExpression(
                  BAD_CAST "/capabilities/guest[arch/@name='x86_64']/arch/domain[@type='kvm']", ctx)
            : NULL;
    return o && o->nodesetval && o->nodesetval->nodeNr > 0 ? "kvm" : "qemu";
}

static pthread_mutex_t hx_create_mu = PTHREAD_MUTEX_INITIALIZER;

static void hx_unlockp(pthread_mutex_t **m)
{
    if (*m)
        pthread_mutex_unlock(*m);
}

int hx_vm_create(hx_cluster *cl, const char *node, const char *name, char **msg)
{
    hx_autofree char *err = NULL;
    if (hx_domxml_check_name(name, &err) < 0)
        return hx_fail(msg, -EINVAL, "cannot create VM: %s", err ? err : "invalid name");
    hx_autonode hx_node *n = hx_cluster_get(cl, node);
    if (!n)
        return hx_fail(msg, -ENOENT, "node %s does not exist", node);
    /* Names are unique in the whole cluster; creates through this daemon are serialized so two
     * mkdirs of one name on two nodes cannot both pass the check. */
    pthread_mutex_lock(&hx_create_mu);
    __attribute__((cleanup(hx_unlockp))) pthread_mutex_t *held = &hx_create_mu;
    char **nodes = hx_cluster_node_names(cl, NULL);
    for (char **p = nodes; p && *p; p++) {
        char u[HX_UUID_LEN];
        if (hx_cluster_vm_lookup(cl, *p, name, u) == 0) {
            int r = hx_fail(msg, -EEXIST, "cannot create VM %s: the name is taken on node %s", name,
                            *p);
            hx_strv_free(nodes);
            return r;
        }
    }
    hx_strv_free(nodes);
    if (hx_clone_name_busy(name))
        return hx_fail(msg, -EEXIST, "cannot create VM %s: a clone of that name is being made",
                       name);
    hx_autoconn virConnectPtr conn = hx_node_conn(n);
    if (!conn)
        return hx_fail(msg, -EHOSTDOWN, "cannot create VM %s: node %s is offline", name, node);
    hx_autofree char *xml = hx_domxml_new(name, hx_vm_default_type(conn), &err);
    if (!xml)
        return hx_fail(msg, -EIO, "cannot create VM %s: %s", name, err ? err : "no XML");
    hx_autodom virDomainPtr d = virDomainDefineXML(conn, xml);
    if (!d) {
        int r = hx_virt_errno();
        if (virGetLastErrorCode() == VIR_ERR_DOM_EXIST ||
            virGetLastErrorCode() == VIR_ERR_OPERATION_FAILED)
            r = -EEXIST;
        return hx_fail(msg, r, "cannot create VM %s on node %s: %s", name, node,
                       virGetLastErrorMessage());
    }
    char uuid[VIR_UUID_STRING_BUFLEN];
    virDomainGetUUIDString(d, uuid);
    hx_info("node %s: created VM %s (%s)", node, name, uuid);
    hx_vm_refresh(n, name, uuid);
    return 0;
}

/* Whether the domain XML names template_uuid as the template it is linked to, or has a disk
 * whose backing file is one of paths (the template's disk files). */
static int hx_vm_hangs_on(const char *xml, const char *template_uuid, json_t *paths)
{
    hx_autoxml xmlDocPtr doc =
        xml ? xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
            : NULL;
    __attribute__((cleanup(hx_xpctxp))) xmlXPathContextPtr ctx =
        doc ? xmlXPathNewContext(doc) : NULL;
    if (!ctx)
        return 0;
    __attribute__((cleanup(hx_xpobjp))) xmlXPathObjectPtr o = xmlXPathEvalExpression(
        BAD_CAST "/domain/metadata/*[local-name()='vm']/*[local-name()='linked_from'] |"
                 " /domain/devices/disk//backingStore/source/@file",
        ctx);
    int found = 0;
    for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr && !found; i++) {
        xmlChar *t = xmlNodeGetContent(o->nodesetval->nodeTab[i]);
        if (t && hx_str_same((const char *)t, template_uuid))
            found = 1;
        size_t j;
        json_t *p;
        json_array_foreach (paths, j, p)
            found |= t && hx_str_same((const char *)t, json_string_value(p));
        xmlFree(t);
    }
    return found;
}

/* The name of a VM on the node whose disks hang on the template's, into out; 0 when none. */
static int hx_vm_linked_clone(hx_cluster *cl, const char *node, const hx_vm_view *tmpl, char *out,
                              size_t size)
{
    hx_autojson json_t *paths = json_array();
    hx_autoxml xmlDocPtr doc =
        tmpl->xml_config
            ? xmlReadMemory(tmpl->xml_config, (int)strlen(tmpl->xml_config), "domain.xml", NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
            : NULL;
    __attribute__((cleanup(hx_xpctxp))) xmlXPathContextPtr ctx =
        doc ? xmlXPathNewContext(doc) : NULL;
    __attribute__((cleanup(hx_xpobjp))) xmlXPathObjectPtr o =
        ctx ? xmlXPathEvalExpression(BAD_CAST "/domain/devices/disk/source/@file", ctx) : NULL;
    for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
        xmlChar *t = xmlNodeGetContent(o->nodesetval->nodeTab[i]);
        if (t)
            json_array_append_new(paths, json_string((const char *)t));
        xmlFree(t);
    }
    char **names = NULL;
    if (hx_cluster_vm_names(cl, node, &names, NULL) < 0)
        return 0;
    int found = 0;
    for (char **p = names; p && *p && !found; p++) {
        hx_vm_view v = {0};
        if (strcmp(*p, tmpl->name) != 0 && hx_cluster_vm_view(cl, node, *p, NULL, &v) == 0 &&
            hx_vm_hangs_on(v.xml_config, tmpl->uuid, paths)) {
            hx_strlcpy(out, *p, size);
            found = 1;
        }
        hx_vm_view_clear(&v);
    }
    hx_strv_free(names);
    return found;
}

int hx_vm_delete(hx_cluster *cl, const char *node, const char *vm, const char *uuid, char **msg)
{
    hx_autoctx hx_vmctx c;
    int r = hx_vmctx_open(cl, node, vm, uuid, &c, msg);
    if (r < 0)
        return r;
    if (c.view.state != VIR_DOMAIN_SHUTOFF)
        return hx_fail(msg, -EBUSY, "VM %s is not shut off: stop it first", vm);
    hx_autojson json_t *cfg = c.view.config_json ? json_loads(c.view.config_json, 0, NULL) : NULL;
    if (json_is_true(json_object_get(cfg, "protected")))
        return hx_fail(msg, -EPERM, "VM %s is protected (\"protected\": true in config.json)", vm);
    char clone[HX_VM_NAME_MAX];
    if (json_is_true(json_object_get(cfg, "template")) &&
        hx_vm_linked_clone(cl, node, &c.view, clone, sizeof(clone)))
        return hx_fail(msg, -EBUSY,
                       "VM %s is a template with linked clones (%s uses its disks): delete them "
                       "first",
                       vm, clone);
    hx_autojson json_t *vols = hx_volumes_recorded(c.view.xml_config);
    /* The copies of its btrfs snapshots go with it (libvirt knows them as plain volumes). */
    hx_autojson json_t *snapvols = hx_snap_btrfs_volumes(c.view.xml_config);
    json_array_extend(vols, snapvols);
    unsigned flags = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                     VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | VIR_DOMAIN_UNDEFINE_NVRAM;
    if (virDomainUndefineFlags(c.dom, flags) < 0) {
        r = hx_virt_errno();
        return hx_fail(msg, r, "cannot delete VM %s: %s", vm, virGetLastErrorMessage());
    }
    /* The domain is gone first: a failure above leaves every disk in place. */
    hx_volumes_delete(c.conn, vols, vm);
    hx_info("node %s: deleted VM %s", node, vm);
    hx_vm_refresh(c.n, vm, c.view.uuid);
    return 0;
}
