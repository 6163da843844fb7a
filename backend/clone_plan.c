/* The plan of a clone, on the caller's thread: which disks are copied and how (stream, reflink
 * or qcow2 overlay), their new volumes' names and formats, and whether the target pools have
 * the space. */
#include "auto.h"
#include "clone_priv.h"
#include "hx_pools.h"
#include "hx_util.h"
#include "vmops_priv.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <stdio.h>
#include <string.h>

/* The value of an attribute of the first node xpath finds under ctx's node, or NULL. */
static char *hx_clone_xp_str(xmlXPathContextPtr ctx, xmlNodePtr at, const char *xpath)
{
    ctx->node = at;
    hx_autoxpobj xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST xpath, ctx);
    if (!o || !o->nodesetval || o->nodesetval->nodeNr == 0)
        return NULL;
    xmlChar *v = xmlNodeGetContent(o->nodesetval->nodeTab[0]);
    char *out = v ? strdup((const char *)v) : NULL;
    xmlFree(v);
    return out;
}

/* The value xpath finds in a volume's XML (from its root element), or NULL. */
static char *hx_clone_vol_field(virStorageVolPtr v, const char *xpath)
{
    hx_autofree char *xml = virStorageVolGetXMLDesc(v, 0);
    hx_autoxml xmlDocPtr doc = hx_vm_xml_read(xml, "domain.xml");
    if (!doc)
        return NULL;
    hx_autoxpctx xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    return ctx ? hx_clone_xp_str(ctx, xmlDocGetRootElement(doc), xpath) : NULL;
}

/* The format of a volume from its XML ("raw" when it says nothing). */
static char *hx_clone_vol_format(virStorageVolPtr v)
{
    char *f = hx_clone_vol_field(v, "target/format/@type");
    return f ? f : strdup("raw");
}

/* The backing file of a volume (a linked clone's template disk), or NULL. */
static char *hx_clone_vol_backing(virStorageVolPtr v)
{
    char *b = hx_clone_vol_field(v, "backingStore/path");
    if (b && !*b) {
        free(b);
        b = NULL;
    }
    return b;
}

/* Whether the first byte of a volume can be read through libvirt (a download stream of 1 byte). */
static int hx_clone_readable(virConnectPtr conn, virStorageVolPtr v)
{
    hx_autostream virStreamPtr st = virStreamNew(conn, 0);
    if (!st || virStorageVolDownload(v, st, 0, 1, 0) < 0)
        return -1;
    char b[1];
    int n;
    do
        n = virStreamRecv(st, b, sizeof(b));
    while (n > 0);
    if (n < 0) {
        virStreamAbort(st);
        return -1;
    }
    return virStreamFinish(st);
}

/* Whether each pool of need (pool -> bytes) on the target node has that many bytes free. */
static int hx_clone_check_space(const hx_clone_req *q, virConnectPtr dc, json_t *need, char **msg)
{
    const char *pname;
    json_t *v;
    json_object_foreach (need, pname, v) {
        hx_autopool virStoragePoolPtr dp = virStoragePoolLookupByName(dc, pname);
        virStoragePoolInfo pi;
        if (!dp || virStoragePoolGetInfo(dp, &pi) < 0)
            return hx_fail(msg, -EIO, "clone %s: storage pool %s on node %s: %s", q->name, pname,
                           q->dst_node, virGetLastErrorMessage());
        if ((unsigned long long)json_integer_value(v) > pi.available)
            return hx_fail(msg, -ENOSPC,
                           "clone %s: needs %lld bytes in storage pool %s on node %s, which has "
                           "%llu free",
                           q->name, (long long)json_integer_value(v), pname, q->dst_node,
                           pi.available);
    }
    return 0;
}

/* Fills q->disks from the source XML: every disk of device "disk" backed by a storage volume.
 * Other disks (CD-ROMs) stay as they are. */
int hx_clone_plan_disks(hx_clone_req *q, virConnectPtr sc, virConnectPtr dc, char **msg)
{
    hx_autoxml xmlDocPtr doc = hx_vm_xml_read(q->xml, "domain.xml");
    if (!doc)
        return hx_fail(msg, -EIO, "VM %s: cannot parse its domain XML", q->vm);
    hx_autoxpctx xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    ctx->node = xmlDocGetRootElement(doc);
    hx_autoxpobj xmlXPathObjectPtr o =
        xmlXPathEvalExpression(BAD_CAST "devices/disk[not(@device) or @device='disk']", ctx);
    q->disks = json_array();
    json_t *need = json_object(); /* pool -> bytes */
    hx_autojson json_t *need_ref = need;
    for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
        xmlNodePtr d = o->nodesetval->nodeTab[i];
        hx_autofree char *target = hx_clone_xp_str(ctx, d, "target/@dev");
        hx_autofree char *type = hx_clone_xp_str(ctx, d, "@type");
        hx_autofree char *pool = hx_clone_xp_str(ctx, d, "source/@pool");
        hx_autofree char *volname = hx_clone_xp_str(ctx, d, "source/@volume");
        hx_autofree char *file = hx_clone_xp_str(ctx, d, "source/@file");
        hx_autofree char *dev = hx_clone_xp_str(ctx, d, "source/@dev");
        const char *t = target ? target : "?";
        hx_autopool virStoragePoolPtr sp = NULL;
        hx_autovol virStorageVolPtr sv = NULL;
        if (pool && volname) {
            sp = virStoragePoolLookupByName(sc, pool);
            sv = sp ? virStorageVolLookupByName(sp, volname) : NULL;
        } else if (file || dev) {
            sv = virStorageVolLookupByPath(sc, file ? file : dev);
            sp = sv ? virStoragePoolLookupByVolume(sv) : NULL;
        }
        if (!sv || !sp)
            return hx_fail(msg, -EINVAL,
                           "VM %s: disk %s (%s) is not a storage volume of node %s: only volumes "
                           "can be cloned",
                           q->vm, t,
                           file   ? file
                           : dev  ? dev
                           : type ? type
                                  : "no source",
                           q->src_node);
        virStorageVolInfo info;
        /* VIR_STORAGE_VOL_GET_PHYSICAL: the file's size, which is what a download sends. */
        if (virStorageVolGetInfoFlags(sv, &info, VIR_STORAGE_VOL_GET_PHYSICAL) < 0 ||
            hx_clone_readable(sc, sv) < 0)
            return hx_fail(msg, -EIO, "VM %s: disk %s cannot be read: %s", q->vm, t,
                           virGetLastErrorMessage());
        unsigned long long physical = info.allocation; /* GET_PHYSICAL fills "allocation" */
        if (virStorageVolGetInfo(sv, &info) < 0)
            return hx_fail(msg, -EIO, "VM %s: disk %s: %s", q->vm, t, virGetLastErrorMessage());
        hx_autofree char *format = hx_clone_vol_format(sv);
        hx_autofree char *backing = hx_clone_vol_backing(sv);
        if (backing && !q->linked)
            return hx_fail(msg, -EINVAL,
                           "VM %s: disk %s has a backing file (%s): a full copy of its file "
                           "would still depend on it, which is not supported",
                           q->vm, t, backing);
        hx_autofree char *path = virStorageVolGetPath(sv);
        const char *spool = virStoragePoolGetName(sp);
        /* A reflink copy (btrfs): the same pool on the same node, and a raw source. libvirt
         * copies raw files with FICLONE when asked (VIR_STORAGE_VOL_CREATE_REFLINK) but any
         * other format through qemu-img convert, which refuses that flag: those are streamed. */
        char fs[32];
        int reflink = 0;
        if (strcmp(q->src_node, q->dst_node) != 0 || strcmp(format, "raw") != 0 ||
            hx_pool_backing(sc, spool, fs, sizeof(fs), &reflink) < 0)
            reflink = 0;
        /* A linked clone of a raw disk on btrfs is a reflink copy of it, in its format: it
         * shares the template's extents without hanging on its file. */
        const char *fmt = q->linked && !reflink ? "qcow2" : format;
        char dvol[512];
        snprintf(dvol, sizeof(dvol), "%s-%s.%s", q->name, t,
                 strcmp(fmt, "qcow2") == 0 ? "qcow2" : "img");
        hx_autopool virStoragePoolPtr dp = virStoragePoolLookupByName(dc, spool);
        if (!dp)
            return hx_fail(msg, virGetLastErrorCode() == VIR_ERR_NO_STORAGE_POOL ? -ENOENT : -EIO,
                           "clone %s: node %s has no storage pool %s for disk %s", q->name,
                           q->dst_node, spool, t);
        hx_autovol virStorageVolPtr exists = virStorageVolLookupByName(dp, dvol);
        if (exists)
            return hx_fail(msg, -EEXIST, "clone %s: volume %s/%s already exists on node %s",
                           q->name, spool, dvol, q->dst_node);
        /* A full copy of a raw disk may fill its whole capacity; a qcow2 file is copied as it
         * is; a linked clone and a reflink copy start nearly empty (shared extents). */
        unsigned long long bytes = q->linked || reflink           ? 0
                                   : strcmp(format, "qcow2") == 0 ? physical
                                                                  : info.capacity;
        json_object_set_new(
            need, spool,
            json_integer(json_integer_value(json_object_get(need, spool)) + (json_int_t)bytes));
        json_array_append_new(
            q->disks,
            json_pack("{s:s,s:s,s:s,s:s?,s:s,s:I,s:I,s:s,s:s,s:s,s:b}", "target", t, "src_pool",
                      spool, "src_vol", virStorageVolGetName(sv), "src_path", path, "format",
                      format, "capacity", (json_int_t)info.capacity, "bytes", (json_int_t)physical,
                      "dst_pool", spool, "dst_vol", dvol, "dst_format", fmt, "reflink", reflink));
    }
    return hx_clone_check_space(q, dc, need, msg);
}
