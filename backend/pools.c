/* Storage pools and volumes (see hx_pools.h).
 *
 * The node's thread keeps the pool cache: loaded at connect, then one pool refreshed per
 * libvirt pool event (lifecycle: defined, undefined, started, stopped, created, deleted;
 * refresh: virStoragePoolRefresh). Documents (status.json, info.json) and volume listings are
 * read live on the node's thread: capacity, allocation and volumes change without any event.
 */
#include "auto.h"
#include "hx_pools.h"
#include "hx_log.h"
#include "hx_util.h"
#include "node.h"
#include "xmltext.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/uri.h>
#include <libxml/xpath.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- scoped cleanup ---- */

static void hx_pool_urip(xmlURIPtr *u)
{
    if (*u)
        xmlFreeURI(*u);
}
static void hx_pool_fdp(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}
#define hx_autouri __attribute__((cleanup(hx_pool_urip)))
#define hx_autofd __attribute__((cleanup(hx_pool_fdp)))

static const char *hx_pool_state_str(int state)
{
    switch (state) {
    case VIR_STORAGE_POOL_INACTIVE:
        return "inactive";
    case VIR_STORAGE_POOL_BUILDING:
        return "building";
    case VIR_STORAGE_POOL_RUNNING:
        return "running";
    case VIR_STORAGE_POOL_DEGRADED:
        return "degraded";
    case VIR_STORAGE_POOL_INACCESSIBLE:
        return "inaccessible";
    default:
        return "unknown";
    }
}

static const char *hx_vol_type_str(int type)
{
    switch (type) {
    case VIR_STORAGE_VOL_FILE:
        return "file";
    case VIR_STORAGE_VOL_BLOCK:
        return "block";
    case VIR_STORAGE_VOL_DIR:
        return "dir";
    case VIR_STORAGE_VOL_NETWORK:
        return "network";
    case VIR_STORAGE_VOL_NETDIR:
        return "netdir";
    case VIR_STORAGE_VOL_PLOOP:
        return "ploop";
    default:
        return "unknown";
    }
}

static xmlDocPtr hx_pool_parse(const char *xml, const char *what)
{
    return xmlReadMemory(xml, (int)strlen(xml), what, NULL,
                         XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

static json_t *hx_pool_str0(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* ---- the cache (node thread writes, readers copy under the node's lock) ---- */

void hx_pools_clear(hx_pool_cache *pc)
{
    free(pc->v);
    pc->v = NULL;
    pc->n = pc->cap = 0;
}

static ssize_t hx_pools_find_name(const hx_pool_cache *pc, const char *name)
{
    for (size_t i = 0; i < pc->n; i++)
        if (strcmp(pc->v[i].name, name) == 0)
            return (ssize_t)i;
    return -1;
}

static ssize_t hx_pools_find_uuid(const hx_pool_cache *pc, const char *uuid)
{
    for (size_t i = 0; i < pc->n; i++)
        if (strcmp(pc->v[i].uuid, uuid) == 0)
            return (ssize_t)i;
    return -1;
}

static void hx_pools_emit(hx_node *n, const char *pool, const char *state, int appeared,
                          int vanished, int state_changed)
{
    hx_change c = {.kind = HX_CHANGE_POOL,
                   .node = n->name,
                   .pool = pool,
                   .state = state,
                   .appeared = appeared,
                   .vanished = vanished,
                   .state_changed = state_changed};
    hx_cluster_emit(n->cl, &c);
}

static void hx_pools_forget(hx_node *n, const char *uuid)
{
    char name[HX_POOL_NAME_MAX] = "";
    pthread_mutex_lock(&n->lock);
    hx_pool_cache *pc = &n->pools;
    ssize_t i = hx_pools_find_uuid(pc, uuid);
    if (i >= 0) {
        hx_strlcpy(name, pc->v[i].name, sizeof(name));
        memmove(&pc->v[i], &pc->v[i + 1], (pc->n - (size_t)i - 1) * sizeof(*pc->v));
        pc->n--;
        n->version = hx_cluster_stamp(n->cl);
        n->changed_ns = hx_now_real_ns();
    }
    pthread_mutex_unlock(&n->lock);
    if (name[0])
        hx_pools_emit(n, name, NULL, 0, 1, 0);
}

/* Stores e; with force, stamps a new version even when nothing we keep changed (a refresh
 * event: capacity and volumes may have moved). */
static void hx_pools_store(hx_node *n, const hx_pool_entry *e, int force)
{
    int appeared = 0, state_changed = 0, changed = force;
    pthread_mutex_lock(&n->lock);
    hx_pool_cache *pc = &n->pools;
    ssize_t i = hx_pools_find_uuid(pc, e->uuid);
    if (i >= 0 && strcmp(pc->v[i].name, e->name) != 0) {
        /* Renamed (libvirt cannot do it today, but a define over the same UUID could). */
        memmove(&pc->v[i], &pc->v[i + 1], (pc->n - (size_t)i - 1) * sizeof(*pc->v));
        pc->n--;
        i = -1;
    }
    if (i < 0) {
        if (pc->n == pc->cap) {
            size_t cap = pc->cap ? pc->cap * 2 : 8;
            hx_pool_entry *nv = realloc(pc->v, cap * sizeof(*nv));
            if (!nv) {
                pthread_mutex_unlock(&n->lock);
                hx_err("node %s: out of memory storing pool %s", n->name, e->name);
                return;
            }
            pc->v = nv;
            pc->cap = cap;
        }
        size_t pos = 0;
        while (pos < pc->n && strcmp(pc->v[pos].name, e->name) < 0)
            pos++;
        memmove(&pc->v[pos + 1], &pc->v[pos], (pc->n - pos) * sizeof(*pc->v));
        pc->v[pos] = *e;
        pc->n++;
        i = (ssize_t)pos;
        appeared = changed = state_changed = 1;
        n->version = hx_cluster_stamp(n->cl);
        n->changed_ns = hx_now_real_ns();
    } else if (pc->v[i].state != e->state) {
        pc->v[i].state = e->state;
        changed = state_changed = 1;
    }
    if (changed) {
        pc->v[i].version = hx_cluster_stamp(n->cl);
        pc->v[i].changed_ns = hx_now_real_ns();
    }
    pthread_mutex_unlock(&n->lock);
    if (changed)
        hx_pools_emit(n, e->name, hx_pool_state_str(e->state), appeared, 0, state_changed);
}

/* Reads what the cache keeps of pool p. -1 when libvirt failed (logged). */
static int hx_pools_load(hx_node *n, virStoragePoolPtr p, hx_pool_entry *e)
{
    memset(e, 0, sizeof(*e));
    const char *name = virStoragePoolGetName(p);
    virStoragePoolInfo info;
    if (!name || virStoragePoolGetUUIDString(p, e->uuid) < 0 ||
        virStoragePoolGetInfo(p, &info) < 0) {
        hx_err("node %s: cannot read pool %s: %s", n->name, name ? name : "?",
               virGetLastErrorMessage());
        return -1;
    }
    hx_strlcpy(e->name, name, sizeof(e->name));
    e->state = info.state;
    return 0;
}

void hx_pools_refresh(hx_node *n, const char *uuid)
{
    hx_autopool virStoragePoolPtr p = virStoragePoolLookupByUUIDString(n->conn, uuid);
    if (!p) {
        if (virGetLastErrorCode() == VIR_ERR_NO_STORAGE_POOL)
            hx_pools_forget(n, uuid);
        else
            hx_err("node %s: cannot look up pool %s: %s", n->name, uuid, virGetLastErrorMessage());
        return;
    }
    hx_pool_entry e;
    if (hx_pools_load(n, p, &e) == 0)
        hx_pools_store(n, &e, 1);
}

void hx_pools_refresh_all(hx_node *n)
{
    virStoragePoolPtr *pools = NULL;
    int np = virConnectListAllStoragePools(n->conn, &pools, 0);
    if (np < 0) {
        hx_err("node %s: cannot list storage pools: %s", n->name, virGetLastErrorMessage());
        return;
    }
    hx_pool_entry *seen = calloc((size_t)np + 1, sizeof(*seen));
    size_t ns = 0;
    for (int i = 0; i < np; i++) {
        if (seen && hx_pools_load(n, pools[i], &seen[ns]) == 0)
            hx_pools_store(n, &seen[ns++], 0);
        virStoragePoolFree(pools[i]);
    }
    free(pools);
    /* Forget what libvirt no longer has. */
    for (;;) {
        char gone[HX_UUID_LEN] = "";
        pthread_mutex_lock(&n->lock);
        for (size_t i = 0; seen && i < n->pools.n && !gone[0]; i++) {
            int found = 0;
            for (size_t j = 0; j < ns && !found; j++)
                found = strcmp(seen[j].uuid, n->pools.v[i].uuid) == 0;
            if (!found)
                hx_strlcpy(gone, n->pools.v[i].uuid, sizeof(gone));
        }
        pthread_mutex_unlock(&n->lock);
        if (!gone[0])
            break;
        hx_pools_forget(n, gone);
    }
    free(seen);
}

/* ---- libvirt callbacks: on libvirt's event loop thread, they only queue work ---- */

static void hx_pools_changed(hx_node *n, virStoragePoolPtr p)
{
    char uuid[VIR_UUID_STRING_BUFLEN];
    if (virStoragePoolGetUUIDString(p, uuid) == 0)
        hx_node_enqueue_work(n, HX_REQ_POOL, uuid);
}

static void hx_pools_on_lifecycle(virConnectPtr c, virStoragePoolPtr p, int event, int detail,
                                  void *opaque)
{
    (void)c;
    hx_debug("node %s: pool %s lifecycle event %d/%d", ((hx_node *)opaque)->name,
             virStoragePoolGetName(p), event, detail);
    hx_pools_changed(opaque, p);
}

static void hx_pools_on_refresh(virConnectPtr c, virStoragePoolPtr p, void *opaque)
{
    (void)c;
    hx_pools_changed(opaque, p);
}

void hx_pools_subscribe(hx_node *n)
{
    hx_pool_cache *pc = &n->pools;
    struct {
        int id;
        virConnectStoragePoolEventGenericCallback cb;
    } subs[] = {
        {VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE,
         VIR_STORAGE_POOL_EVENT_CALLBACK(hx_pools_on_lifecycle)},
        {VIR_STORAGE_POOL_EVENT_ID_REFRESH, VIR_STORAGE_POOL_EVENT_CALLBACK(hx_pools_on_refresh)},
    };
    pc->n_cb = 0;
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        int id =
            virConnectStoragePoolEventRegisterAny(n->conn, NULL, subs[i].id, subs[i].cb, n, NULL);
        if (id < 0)
            hx_warn("node %s: cannot subscribe to storage pool event %d: %s", n->name, subs[i].id,
                    virGetLastErrorMessage());
        else
            pc->cb_ids[pc->n_cb++] = id;
    }
}

void hx_pools_unsubscribe(hx_node *n)
{
    hx_pool_cache *pc = &n->pools;
    for (int i = 0; i < pc->n_cb; i++)
        virConnectStoragePoolEventDeregisterAny(n->conn, pc->cb_ids[i]);
    pc->n_cb = 0;
}

/* ---- what a pool's storage is, as the node sees it ---- */

static const char *hx_pool_fs_name(long type)
{
    static const struct {
        long magic;
        const char *name;
    } fs[] = {
        {BTRFS_SUPER_MAGIC, "btrfs"},       {EXT4_SUPER_MAGIC, "ext4"},
        {XFS_SUPER_MAGIC, "xfs"},           {TMPFS_MAGIC, "tmpfs"},
        {OVERLAYFS_SUPER_MAGIC, "overlay"}, {NFS_SUPER_MAGIC, "nfs"},
        {F2FS_SUPER_MAGIC, "f2fs"},         {0x2fc12fc1, "zfs"},
        {SQUASHFS_MAGIC, "squashfs"},       {0xff534d42, "cifs"},
    };
    for (size_t i = 0; i < sizeof(fs) / sizeof(fs[0]); i++)
        if ((unsigned long)fs[i].magic == (unsigned long)type)
            return fs[i].name;
    return NULL;
}

/* The value of key in a URI query ("socket=/run/x&mode=legacy"), unescaped, or NULL. */
static char *hx_pool_query_param(const char *query, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = query; p && *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=')
            return xmlURIUnescapeString(p + kl + 1, (int)(len - kl - 1), NULL);
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

/* Where the node's own paths are seen from this host: "/proc/<pid>/root" of the libvirt
 * daemon at the other end of a local unix socket (so a daemon in its own mount namespace is
 * looked at through its eyes). 0, or -1 when the node is not local or its daemon not found. */
static int hx_pool_node_root(virConnectPtr c, char *root, size_t size)
{
    hx_autofree char *uri_s = virConnectGetURI(c);
    hx_autouri xmlURIPtr uri = uri_s ? xmlParseURI(uri_s) : NULL;
    if (!uri || !uri->scheme)
        return -1;
    /* Only the unix transport (given, or implied by a URI without a host) is local. */
    const char *plus = strchr(uri->scheme, '+');
    if ((uri->server && uri->server[0]) || (plus && strcmp(plus, "+unix") != 0))
        return -1;
    hx_autofree char *sock = hx_pool_query_param(uri->query_raw, "socket");
    /* libvirt's defaults: the monolithic daemon's socket, then the modular QEMU daemon's. */
    const char *paths[] = {sock, "/run/libvirt/libvirt-sock", "/run/libvirt/virtqemud-sock"};
    for (size_t i = sock ? 0 : 1; i < sizeof(paths) / sizeof(paths[0]); i++) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (hx_strlcpy(sa.sun_path, paths[i], sizeof(sa.sun_path)) < 0)
            continue;
        hx_autofd int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct ucred cr;
        socklen_t cl = sizeof(cr);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 || cr.pid <= 0)
            continue;
        snprintf(root, size, "/proc/%d/root", (int)cr.pid);
        return 0;
    }
    return -1;
}

/* Backing filesystem of pool p (fs gets "" when unknown). */
static void hx_pool_backing_of(virConnectPtr c, xmlDocPtr doc, char *fs, size_t fs_size,
                               int *reflink)
{
    fs[0] = '\0';
    *reflink = 0;
    hx_autofree char *type = hx_xml_text(doc, "/pool/@type");
    hx_autofree char *path = hx_xml_text(doc, "/pool/target/path");
    hx_autofree char *format = hx_xml_text(doc, "/pool/source/format/@type");
    /* Only these pool types keep volumes as files on a filesystem at the target path. */
    if (!type || !path ||
        (strcmp(type, "dir") != 0 && strcmp(type, "fs") != 0 && strcmp(type, "netfs") != 0))
        return;
    /* fs and netfs pools name their filesystem in the XML, unless it is left to mount. */
    if (strcmp(type, "dir") != 0 && format && strcmp(format, "auto") != 0) {
        hx_strlcpy(fs, format, fs_size);
    } else {
        char root[64], full[4200];
        struct statfs sf;
        if (hx_pool_node_root(c, root, sizeof(root)) < 0)
            return;
        snprintf(full, sizeof(full), "%s%s", root, path);
        const char *name = statfs(full, &sf) == 0 ? hx_pool_fs_name((long)sf.f_type) : NULL;
        if (name)
            hx_strlcpy(fs, name, fs_size);
    }
    /* btrfs always clones extents (FICLONE, cp --reflink); XFS only when made with reflink=1,
     * which statfs cannot tell: not claimed. */
    *reflink = strcmp(fs, "btrfs") == 0;
}

int hx_pool_backing(virConnectPtr c, const char *pool, char *fs, size_t fs_size, int *reflink)
{
    hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(c, pool);
    if (!p)
        return virGetLastErrorCode() == VIR_ERR_NO_STORAGE_POOL ? -ENOENT : -EIO;
    hx_autofree char *xml = virStoragePoolGetXMLDesc(p, 0);
    hx_autoxml xmlDocPtr doc = xml ? hx_pool_parse(xml, "pool.xml") : NULL;
    if (!doc) {
        hx_err("pool %s: cannot read its XML: %s", pool, virGetLastErrorMessage());
        return -EIO;
    }
    hx_pool_backing_of(c, doc, fs, fs_size, reflink);
    return 0;
}

int hx_pool_space(virConnectPtr c, const char *pool, unsigned long long *available)
{
    hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(c, pool);
    if (!p)
        return virGetLastErrorCode() == VIR_ERR_NO_STORAGE_POOL ? -ENOENT : -EIO;
    virStoragePoolInfo info;
    if (virStoragePoolGetInfo(p, &info) < 0) {
        hx_err("pool %s: cannot read its size: %s", pool, virGetLastErrorMessage());
        return -EIO;
    }
    *available = info.available;
    return 0;
}

/* ---- live reads on the node's thread (hx_node_fn) ---- */

static const char *hx_in_str(const json_t *in, const char *key)
{
    const char *s = json_string_value(json_object_get(in, key));
    return s ? s : "";
}

/* The pool named in in, or NULL with *rc set (-ENOENT, or -EIO logged). */
static virStoragePoolPtr hx_pool_open(virConnectPtr c, const json_t *in, int *rc)
{
    virStoragePoolPtr p = virStoragePoolLookupByName(c, hx_in_str(in, "pool"));
    if (!p) {
        *rc = virGetLastErrorCode() == VIR_ERR_NO_STORAGE_POOL ? -ENOENT : -EIO;
        if (*rc == -EIO)
            hx_err("node %s: cannot look up pool %s: %s", hx_in_str(in, "node"),
                   hx_in_str(in, "pool"), virGetLastErrorMessage());
    }
    return p;
}

static int hx_pool_status_fn(virConnectPtr c, const json_t *in, json_t **out)
{
    int rc = 0;
    const char *node = hx_in_str(in, "node");
    hx_autopool virStoragePoolPtr p = hx_pool_open(c, in, &rc);
    if (!p)
        return rc;
    const char *name = virStoragePoolGetName(p);
    char uuid[VIR_UUID_STRING_BUFLEN];
    virStoragePoolInfo info;
    int autostart = 0;
    int persistent = virStoragePoolIsPersistent(p);
    hx_autofree char *xml = virStoragePoolGetXMLDesc(p, 0);
    if (virStoragePoolGetUUIDString(p, uuid) < 0 || virStoragePoolGetInfo(p, &info) < 0 ||
        virStoragePoolGetAutostart(p, &autostart) < 0 || persistent < 0 || !xml) {
        hx_err("node %s: cannot read pool %s: %s", node, name, virGetLastErrorMessage());
        return -EIO;
    }
    hx_autoxml xmlDocPtr doc = hx_pool_parse(xml, "pool.xml");
    if (!doc) {
        hx_err("node %s: pool %s: libvirt's XML does not parse", node, name);
        return -EIO;
    }
    hx_autofree char *type = hx_xml_text(doc, "/pool/@type");
    hx_autofree char *path = hx_xml_text(doc, "/pool/target/path");
    /* Volumes can be counted only while the pool runs (libvirt refuses otherwise). */
    int nvol = info.state == VIR_STORAGE_POOL_RUNNING ? virStoragePoolNumOfVolumes(p) : -1;
    char fs[32];
    int reflink;
    hx_pool_backing_of(c, doc, fs, sizeof(fs), &reflink);
    json_t *d = json_object();
    json_object_set_new(d, "name", json_string(name));
    json_object_set_new(d, "uuid", json_string(uuid));
    json_object_set_new(d, "type", hx_pool_str0(type));
    json_object_set_new(d, "state", json_string(hx_pool_state_str(info.state)));
    json_object_set_new(d, "autostart", json_boolean(autostart));
    json_object_set_new(d, "persistent", json_boolean(persistent));
    json_object_set_new(d, "path", hx_pool_str0(path));
    json_object_set_new(d, "capacity_bytes", json_integer((json_int_t)info.capacity));
    json_object_set_new(d, "allocation_bytes", json_integer((json_int_t)info.allocation));
    json_object_set_new(d, "available_bytes", json_integer((json_int_t)info.available));
    json_object_set_new(d, "volumes", nvol >= 0 ? json_integer(nvol) : json_null());
    json_object_set_new(d, "backing", fs[0] ? json_string(fs) : json_null());
    json_object_set_new(d, "cheap_copy", reflink ? json_string("reflink") : json_null());
    *out = d;
    return 0;
}

static int hx_str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int hx_vol_names_fn(virConnectPtr c, const json_t *in, json_t **out)
{
    int rc = 0;
    hx_autopool virStoragePoolPtr p = hx_pool_open(c, in, &rc);
    if (!p)
        return rc;
    json_t *names = json_array();
    /* An inactive pool has no volume list (libvirt refuses): it shows none. */
    if (virStoragePoolIsActive(p) != 1) {
        *out = names;
        return 0;
    }
    virStorageVolPtr *vols = NULL;
    int nv = virStoragePoolListAllVolumes(p, &vols, 0);
    if (nv < 0) {
        hx_err("node %s: cannot list the volumes of pool %s: %s", hx_in_str(in, "node"),
               hx_in_str(in, "pool"), virGetLastErrorMessage());
        json_decref(names);
        return -EIO;
    }
    const char **v = calloc((size_t)nv + 1, sizeof(char *));
    for (int i = 0; v && i < nv; i++)
        v[i] = virStorageVolGetName(vols[i]);
    if (v) {
        qsort(v, (size_t)nv, sizeof(char *), hx_str_cmp);
        for (int i = 0; i < nv; i++)
            json_array_append_new(names, json_string(v[i]));
    }
    free(v);
    for (int i = 0; i < nv; i++)
        virStorageVolFree(vols[i]);
    free(vols);
    *out = names;
    return 0;
}

/* The volume named in in, or NULL with *rc set. */
static virStorageVolPtr hx_vol_open(virStoragePoolPtr p, const json_t *in, int *rc)
{
    virStorageVolPtr v = virStorageVolLookupByName(p, hx_in_str(in, "vol"));
    if (!v) {
        int code = virGetLastErrorCode();
        /* An inactive pool answers "operation invalid": its volumes are not there either. */
        *rc = code == VIR_ERR_NO_STORAGE_VOL || code == VIR_ERR_OPERATION_INVALID ? -ENOENT : -EIO;
        if (*rc == -EIO)
            hx_err("node %s: cannot look up volume %s/%s: %s", hx_in_str(in, "node"),
                   hx_in_str(in, "pool"), hx_in_str(in, "vol"), virGetLastErrorMessage());
    }
    return v;
}

static int hx_vol_exists_fn(virConnectPtr c, const json_t *in, json_t **out)
{
    int rc = 0;
    hx_autopool virStoragePoolPtr p = hx_pool_open(c, in, &rc);
    hx_autovol virStorageVolPtr v = p ? hx_vol_open(p, in, &rc) : NULL;
    if (!v)
        return rc;
    *out = json_true();
    return 0;
}

static int hx_vol_info_fn(virConnectPtr c, const json_t *in, json_t **out)
{
    int rc = 0;
    hx_autopool virStoragePoolPtr p = hx_pool_open(c, in, &rc);
    hx_autovol virStorageVolPtr v = p ? hx_vol_open(p, in, &rc) : NULL;
    if (!v)
        return rc;
    virStorageVolInfo info;
    hx_autofree char *path = virStorageVolGetPath(v);
    const char *key = virStorageVolGetKey(v);
    hx_autofree char *xml = virStorageVolGetXMLDesc(v, 0);
    hx_autoxml xmlDocPtr doc = xml ? hx_pool_parse(xml, "volume.xml") : NULL;
    if (virStorageVolGetInfo(v, &info) < 0 || !path || !doc) {
        hx_err("node %s: cannot read volume %s/%s: %s", hx_in_str(in, "node"),
               hx_in_str(in, "pool"), hx_in_str(in, "vol"), virGetLastErrorMessage());
        return -EIO;
    }
    hx_autofree char *format = hx_xml_text(doc, "/volume/target/format/@type");
    hx_autofree char *backing = hx_xml_text(doc, "/volume/backingStore/path");
    json_t *d = json_object();
    json_object_set_new(d, "name", json_string(virStorageVolGetName(v)));
    json_object_set_new(d, "key", hx_pool_str0(key));
    json_object_set_new(d, "path", json_string(path));
    json_object_set_new(d, "type", json_string(hx_vol_type_str(info.type)));
    json_object_set_new(d, "format", hx_pool_str0(format));
    json_object_set_new(d, "capacity_bytes", json_integer((json_int_t)info.capacity));
    json_object_set_new(d, "allocation_bytes", json_integer((json_int_t)info.allocation));
    json_object_set_new(d, "backing_store", hx_pool_str0(backing));
    *out = d;
    return 0;
}

/* ---- the tree's side ---- */

/* The node, referenced and locked, when online. -ENOENT, -EHOSTDOWN. */
static int hx_pools_online(hx_cluster *cl, const char *node, hx_node **out)
{
    hx_node *n = hx_cluster_get(cl, node);
    if (!n)
        return -ENOENT;
    pthread_mutex_lock(&n->lock);
    if (n->status != HX_NODE_ONLINE) {
        pthread_mutex_unlock(&n->lock);
        hx_node_unref(n);
        return -EHOSTDOWN;
    }
    *out = n;
    return 0;
}

static void hx_pools_release(hx_node *n)
{
    pthread_mutex_unlock(&n->lock);
    hx_node_unref(n);
}

int hx_cluster_pool_names(hx_cluster *cl, const char *node, char ***names)
{
    hx_node *n;
    int r = hx_pools_online(cl, node, &n);
    if (r < 0)
        return r;
    char **v = calloc(n->pools.n + 1, sizeof(char *));
    for (size_t i = 0, k = 0; v && i < n->pools.n; i++)
        if ((v[k] = strdup(n->pools.v[i].name)))
            k++;
    hx_pools_release(n);
    *names = v;
    return v ? 0 : -ENOMEM;
}

int hx_cluster_pool_version(hx_cluster *cl, const char *node, const char *pool, uint64_t *version,
                            long long *changed_ns)
{
    hx_node *n;
    int r = hx_pools_online(cl, node, &n);
    if (r < 0)
        return r;
    ssize_t i = hx_pools_find_name(&n->pools, pool);
    if (i >= 0) {
        *version = n->pools.v[i].version;
        if (changed_ns)
            *changed_ns = n->pools.v[i].changed_ns;
    }
    hx_pools_release(n);
    return i >= 0 ? 0 : -ENOENT;
}

/* Runs fn on the node's thread with {"node", "pool", "vol"} once the pool is known. */
static int hx_pools_exec(hx_cluster *cl, const char *node, const char *pool, const char *vol,
                         hx_node_fn fn, json_t **out)
{
    uint64_t v;
    int r = hx_cluster_pool_version(cl, node, pool, &v, NULL);
    if (r < 0)
        return r;
    hx_autojson json_t *in = json_pack("{s:s,s:s}", "node", node, "pool", pool);
    if (!in)
        return -ENOMEM;
    if (vol)
        json_object_set_new(in, "vol", json_string(vol));
    return hx_cluster_node_exec(cl, node, fn, in, out);
}

int hx_cluster_pool_status(hx_cluster *cl, const char *node, const char *pool, json_t **out)
{
    return hx_pools_exec(cl, node, pool, NULL, hx_pool_status_fn, out);
}

int hx_cluster_vol_names(hx_cluster *cl, const char *node, const char *pool, char ***names)
{
    hx_autojson json_t *arr = NULL;
    int r = hx_pools_exec(cl, node, pool, NULL, hx_vol_names_fn, &arr);
    if (r < 0)
        return r;
    char **v = calloc(json_array_size(arr) + 1, sizeof(char *));
    size_t i, k = 0;
    json_t *s;
    json_array_foreach (arr, i, s)
        if (v && (v[k] = strdup(json_string_value(s))))
            k++;
    *names = v;
    return v ? 0 : -ENOMEM;
}

int hx_cluster_vol_exists(hx_cluster *cl, const char *node, const char *pool, const char *vol)
{
    hx_autojson json_t *yes = NULL;
    return hx_pools_exec(cl, node, pool, vol, hx_vol_exists_fn, &yes);
}

/* Whether one of the disks of a config.json (text) has source path or "pool/vol". */
static int hx_pools_disk_uses(const char *config, const char *path, const char *pool_vol)
{
    hx_autojson json_t *cfg = config ? json_loads(config, 0, NULL) : NULL;
    size_t i;
    json_t *disk;
    json_array_foreach (json_object_get(cfg, "disks"), i, disk) {
        const char *src = json_string_value(json_object_get(disk, "source"));
        if (src && (strcmp(src, path) == 0 || strcmp(src, pool_vol) == 0))
            return 1;
    }
    return 0;
}

int hx_cluster_vol_info(hx_cluster *cl, const char *node, const char *pool, const char *vol,
                        json_t **out)
{
    hx_autojson json_t *d = NULL;
    int r = hx_pools_exec(cl, node, pool, vol, hx_vol_info_fn, &d);
    if (r < 0)
        return r;
    /* used_by: the VMs of the node whose persistent or running configuration has a disk on
     * this volume, by path or as a pool/volume pair. From the cache: no libvirt call. */
    const char *path = json_string_value(json_object_get(d, "path"));
    hx_autofree char *pool_vol = NULL;
    if (asprintf(&pool_vol, "%s/%s", pool, vol) < 0)
        return -ENOMEM;
    json_t *users = json_array();
    json_object_set_new(d, "used_by", users);
    hx_node *n;
    r = hx_pools_online(cl, node, &n);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n->n_doms; i++) {
        const hx_vm_view *v = &n->doms[i].v;
        if (hx_pools_disk_uses(v->config_json, path, pool_vol) ||
            hx_pools_disk_uses(v->live_json, path, pool_vol))
            json_array_append_new(users, json_string(v->name));
    }
    hx_pools_release(n);
    *out = hx_steal(&d);
    return 0;
}
