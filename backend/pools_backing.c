/* Storage pools: what a pool's storage is, as the node sees it (the filesystem under its target
 * path, whether copies there can share extents) and the room left in it. For worker threads
 * holding a connection (see hx_pools.h); no lock. */
#include "auto.h"
#include "hx_log.h"
#include "hx_util.h"
#include "pools_priv.h"
#include "xmltext.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/uri.h>
#include <linux/magic.h>
#include <stdio.h>
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
void hx_pool_backing_of(virConnectPtr c, xmlDocPtr doc, char *fs, size_t fs_size, int *reflink)
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
