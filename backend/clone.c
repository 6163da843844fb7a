/* Clones of VMs as jobs: checks on the caller's thread, the copy on the job's thread. */
#include "auto.h"
#include "hx_clone.h"
#include "hx_domxml.h"
#include "hx_jobs.h"
#include "hx_log.h"
#include "hx_pools.h"
#include "hx_vmops.h"
#include "vmops_priv.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* libvirt's stream messages carry at most 256 KiB of data; a larger buffer gains nothing. */
#define HX_CLONE_CHUNK (256 * 1024)
/* How long the cleanup of an interrupted clone waits for its node after a daemon start. */
#define HX_CLONE_UNDO_WAIT_MS 60000
/* The namespace of snapshot records (backend/snapshots.c). */
#define HX_CLONE_SNAP_NS "https://horcrux.dev/xmlns/snapshots/1"

static hx_cluster *hx_clone_cl;

/* ---- scoped cleanup ---- */

static void hx_cl_viewp(hx_vm_view *v)
{
    hx_vm_view_clear(v);
}

static xmlDocPtr hx_clone_parse(const char *xml)
{
    return xml ? xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
                               XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
               : NULL;
}

/* ---- names being cloned to: unique in the cluster while their job runs ---- */

static pthread_mutex_t hx_clone_mu = PTHREAD_MUTEX_INITIALIZER;
static json_t *hx_clone_names; /* array of strings */

static int hx_clone_name_reserve(const char *name)
{
    pthread_mutex_lock(&hx_clone_mu);
    if (!hx_clone_names)
        hx_clone_names = json_array();
    size_t i;
    json_t *v;
    int r = 0;
    json_array_foreach (hx_clone_names, i, v)
        if (strcmp(json_string_value(v), name) == 0)
            r = -EEXIST;
    if (r == 0)
        json_array_append_new(hx_clone_names, json_string(name));
    pthread_mutex_unlock(&hx_clone_mu);
    return r;
}

int hx_clone_name_busy(const char *name)
{
    pthread_mutex_lock(&hx_clone_mu);
    size_t i;
    json_t *v;
    int busy = 0;
    json_array_foreach (hx_clone_names, i, v)
        busy |= strcmp(json_string_value(v), name) == 0;
    pthread_mutex_unlock(&hx_clone_mu);
    return busy;
}

static void hx_clone_name_release(const char *name)
{
    pthread_mutex_lock(&hx_clone_mu);
    for (size_t i = 0; i < json_array_size(hx_clone_names); i++)
        if (strcmp(json_string_value(json_array_get(hx_clone_names, i)), name) == 0) {
            json_array_remove(hx_clone_names, i);
            break;
        }
    pthread_mutex_unlock(&hx_clone_mu);
}

/* ---- the job's argument ---- */

typedef struct hx_clone_req {
    char src_node[HX_NODE_NAME_MAX];
    char dst_node[HX_NODE_NAME_MAX];
    char vm[HX_VM_NAME_MAX];
    char uuid[HX_UUID_LEN];
    char name[HX_VM_NAME_MAX];
    char new_uuid[HX_UUID_LEN];
    int linked, start, keep_macs;
    char *xml;     /* the source's persistent domain XML */
    json_t *disks; /* [{"target","src_pool","src_vol","src_path","format","capacity","bytes",
                       "dst_pool","dst_vol","dst_format","reflink"}] */
} hx_clone_req;

static void hx_clone_req_free(void *p)
{
    hx_clone_req *q = p;
    if (!q)
        return;
    hx_vm_unlock(q->uuid);
    hx_clone_name_release(q->name);
    free(q->xml);
    json_decref(q->disks);
    free(q);
}

static void hx_clone_reqp(hx_clone_req **q)
{
    hx_clone_req_free(*q);
}

/* ---- checks ---- */

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

/* The format of a volume from its XML ("raw" when it says nothing). */
static char *hx_clone_vol_format(virStorageVolPtr v)
{
    hx_autofree char *xml = virStorageVolGetXMLDesc(v, 0);
    hx_autoxml xmlDocPtr doc = hx_clone_parse(xml);
    if (!doc)
        return strdup("raw");
    hx_autoxpctx xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    char *f = ctx ? hx_clone_xp_str(ctx, xmlDocGetRootElement(doc), "target/format/@type") : NULL;
    return f ? f : strdup("raw");
}

/* The backing file of a volume (a linked clone's template disk), or NULL. */
static char *hx_clone_vol_backing(virStorageVolPtr v)
{
    hx_autofree char *xml = virStorageVolGetXMLDesc(v, 0);
    hx_autoxml xmlDocPtr doc = hx_clone_parse(xml);
    if (!doc)
        return NULL;
    hx_autoxpctx xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    char *b = ctx ? hx_clone_xp_str(ctx, xmlDocGetRootElement(doc), "backingStore/path") : NULL;
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

/* Fills q->disks from the source XML: every disk of device "disk" backed by a storage volume.
 * Other disks (CD-ROMs) stay as they are. */
static int hx_clone_plan_disks(hx_clone_req *q, virConnectPtr sc, virConnectPtr dc, char **msg)
{
    hx_autoxml xmlDocPtr doc = hx_clone_parse(q->xml);
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

/* A new random (version 4) UUID. */
static int hx_clone_new_uuid(char out[HX_UUID_LEN])
{
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        return -EIO;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    snprintf(out, HX_UUID_LEN,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return 0;
}

/* Whether a VM of that name exists on any node. */
static const char *hx_clone_name_taken(hx_cluster *cl, const char *name, char *node_out,
                                       size_t size)
{
    char **nodes = hx_cluster_node_names(cl, NULL);
    const char *found = NULL;
    for (char **p = nodes; p && *p && !found; p++) {
        char u[HX_UUID_LEN];
        if (hx_cluster_vm_lookup(cl, *p, name, u) == 0) {
            hx_strlcpy(node_out, *p, size);
            found = node_out;
        }
    }
    hx_strv_free(nodes);
    return found;
}

static int hx_clone_parse_req(hx_clone_req *q, const char *vm, const char *req, size_t len,
                              char **msg)
{
    json_error_t je;
    hx_autojson json_t *r = json_loadb(req, len, JSON_REJECT_DUPLICATES, &je);
    if (!r)
        return hx_fail(msg, -EINVAL, "clone of VM %s: line %d column %d: %s", vm, je.line,
                       je.column, je.text);
    if (!json_is_object(r))
        return hx_fail(msg, -EINVAL, "clone of VM %s: the request must be a JSON object", vm);
    const char *key;
    json_t *v;
    json_object_foreach (r, key, v) {
        static const char *const known[] = {"name", "node", "mode", "start", "keep_macs", NULL};
        int ok = 0;
        for (const char *const *k = known; *k; k++)
            ok |= strcmp(*k, key) == 0;
        if (!ok)
            return hx_fail(msg, -EINVAL,
                           "clone of VM %s: unknown field \"%s\" (name, node, mode, start, "
                           "keep_macs)",
                           vm, key);
    }
    json_t *name = json_object_get(r, "name"), *node = json_object_get(r, "node");
    json_t *mode = json_object_get(r, "mode");
    if (!json_is_string(name))
        return hx_fail(msg, -EINVAL, "clone of VM %s: field \"name\" must be a string", vm);
    hx_autofree char *err = NULL;
    if (hx_domxml_check_name(json_string_value(name), &err) < 0)
        return hx_fail(msg, -EINVAL, "clone of VM %s: field \"name\": %s", vm,
                       err ? err : "invalid");
    if (node && (!json_is_string(node) || strlen(json_string_value(node)) >= sizeof(q->dst_node)))
        return hx_fail(msg, -EINVAL, "clone of VM %s: field \"node\" must be a node name", vm);
    if (mode && (!json_is_string(mode) || (strcmp(json_string_value(mode), "full") != 0 &&
                                           strcmp(json_string_value(mode), "linked") != 0)))
        return hx_fail(msg, -EINVAL,
                       "clone of VM %s: field \"mode\" must be \"full\" or \"linked\"", vm);
    static const char *const bools[] = {"start", "keep_macs"};
    for (size_t i = 0; i < 2; i++) {
        json_t *b = json_object_get(r, bools[i]);
        if (b && !json_is_boolean(b))
            return hx_fail(msg, -EINVAL, "clone of VM %s: field \"%s\" must be true or false", vm,
                           bools[i]);
    }
    hx_strlcpy(q->name, json_string_value(name), sizeof(q->name));
    if (node)
        hx_strlcpy(q->dst_node, json_string_value(node), sizeof(q->dst_node));
    q->linked = mode && strcmp(json_string_value(mode), "linked") == 0;
    q->start = json_is_true(json_object_get(r, "start"));
    q->keep_macs = json_is_true(json_object_get(r, "keep_macs"));
    return 0;
}

/* ---- the copy ---- */

static void hx_clone_hex(const unsigned char *md, unsigned n, char *out)
{
    for (unsigned i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

/* The content digest of a disk: SHA-256 over the SHA-256 of each 1 MiB block (the last one may
 * be shorter). Equal content gives equal digests whatever its holes, and a block of zeros (a
 * hole, or zeros sent as data) costs a comparison instead of a hash: a mostly empty 1 GiB disk
 * hashes in the time of its data. */
#define HX_SUM_BLOCK (1u << 20)

typedef struct hx_sum {
    EVP_MD_CTX *outer;
    unsigned char *block;
    size_t fill;
    unsigned char zero[32]; /* digest of a whole block of zeros */
} hx_sum;

static const unsigned char hx_sum_zeros[HX_SUM_BLOCK];

static void hx_sum_clear(hx_sum *s)
{
    EVP_MD_CTX_free(s->outer);
    free(s->block);
}

static int hx_sum_init(hx_sum *s)
{
    memset(s, 0, sizeof(*s));
    s->outer = EVP_MD_CTX_new();
    s->block = malloc(HX_SUM_BLOCK);
    unsigned zl = 0;
    return s->outer && s->block && EVP_DigestInit_ex(s->outer, EVP_sha256(), NULL) == 1 &&
                   EVP_Digest(hx_sum_zeros, HX_SUM_BLOCK, s->zero, &zl, EVP_sha256(), NULL) == 1
               ? 0
               : -1;
}

static void hx_sum_block(hx_sum *s)
{
    unsigned char d[32];
    unsigned dl = 0;
    if (s->fill == HX_SUM_BLOCK && memcmp(s->block, hx_sum_zeros, HX_SUM_BLOCK) == 0)
        memcpy(d, s->zero, sizeof(d));
    else
        EVP_Digest(s->block, s->fill, d, &dl, EVP_sha256(), NULL);
    EVP_DigestUpdate(s->outer, d, sizeof(d));
    s->fill = 0;
}

static void hx_sum_update(hx_sum *s, const void *data, size_t n)
{
    const unsigned char *p = data;
    while (n > 0) {
        size_t k = HX_SUM_BLOCK - s->fill < n ? HX_SUM_BLOCK - s->fill : n;
        memcpy(s->block + s->fill, p, k);
        s->fill += k;
        p += k;
        n -= k;
        if (s->fill == HX_SUM_BLOCK)
            hx_sum_block(s);
    }
}

static void hx_sum_zeros_n(hx_sum *s, unsigned long long n)
{
    while (n > 0 && s->fill > 0) {
        size_t k = HX_SUM_BLOCK - s->fill < n ? HX_SUM_BLOCK - s->fill : (size_t)n;
        hx_sum_update(s, hx_sum_zeros, k);
        n -= k;
    }
    for (; n >= HX_SUM_BLOCK; n -= HX_SUM_BLOCK)
        EVP_DigestUpdate(s->outer, s->zero, sizeof(s->zero));
    if (n > 0)
        hx_sum_update(s, hx_sum_zeros, (size_t)n);
}

static void hx_sum_final(hx_sum *s, char hex[65])
{
    if (s->fill > 0)
        hx_sum_block(s);
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned hl = 0;
    EVP_DigestFinal_ex(s->outer, h, &hl);
    hx_clone_hex(h, hl, hex);
}

/* Reads the whole of a volume through a download stream, sparse, hashing its content (holes as
 * zeros); when out is not NULL, sends every chunk and hole to it. done counts the bytes, and
 * progress is reported for copies. Returns 0, -ECANCELED, or -errno with *msg. */
static int hx_clone_stream(hx_job *j, virStreamPtr in, virStreamPtr out, uint64_t *done,
                           uint64_t total, char hex[65], const char *what, char **msg)
{
    __attribute__((cleanup(hx_sum_clear))) hx_sum sum;
    hx_autofree char *buf = malloc(HX_CLONE_CHUNK);
    if (hx_sum_init(&sum) < 0 || !buf)
        return hx_fail(msg, -ENOMEM, "%s: out of memory", what);
    for (;;) {
        if (hx_job_check(j) < 0)
            return -ECANCELED;
        /* STOP_AT_HOLE: -3 says a hole comes next, whose length virStreamRecvHole gives. */
        int n = virStreamRecvFlags(in, buf, HX_CLONE_CHUNK, VIR_STREAM_RECV_STOP_AT_HOLE);
        if (n == 0)
            break;
        if (n == -3) {
            long long hole = 0;
            if (virStreamRecvHole(in, &hole, 0) < 0)
                return hx_fail(msg, -EIO, "%s: %s", what, virGetLastErrorMessage());
            if (out && virStreamSendHole(out, hole, 0) < 0)
                return hx_fail(msg, -EIO, "%s: %s", what, virGetLastErrorMessage());
            hx_sum_zeros_n(&sum, (unsigned long long)hole);
            *done += (uint64_t)hole;
        } else if (n < 0) {
            return hx_fail(msg, -EIO, "%s: %s", what, virGetLastErrorMessage());
        } else {
            hx_sum_update(&sum, buf, (size_t)n);
            for (int sent = 0; out && sent < n;) {
                int s = virStreamSend(out, buf + sent, (size_t)(n - sent));
                if (s < 0)
                    return hx_fail(msg, -EIO, "%s: %s", what, virGetLastErrorMessage());
                sent += s;
            }
            *done += (uint64_t)n;
        }
        if (out)
            hx_job_progress(j, *done, *done > total ? *done : total);
    }
    hx_sum_final(&sum, hex);
    return 0;
}

/* Ends two streams: finished when r is 0, aborted otherwise. */
static int hx_clone_streams_end(int r, virStreamPtr in, virStreamPtr out, const char *what,
                                char **msg)
{
    if (r < 0) {
        if (in)
            virStreamAbort(in);
        if (out)
            virStreamAbort(out);
        return r;
    }
    if (virStreamFinish(in) < 0) {
        if (out)
            virStreamAbort(out);
        return hx_fail(msg, -EIO, "%s: %s", what, virGetLastErrorMessage());
    }
    if (out && virStreamFinish(out) < 0)
        return hx_fail(msg, -EIO, "%s: %s", what, virGetLastErrorMessage());
    return 0;
}

static virStorageVolPtr hx_clone_vol(virConnectPtr c, const char *pool, const char *name)
{
    hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(c, pool);
    return p ? virStorageVolLookupByName(p, name) : NULL;
}

/* Deletes a volume that a failed reflink copy may have left (libvirt removes it itself). */
static void hx_clone_undo_vol(virConnectPtr c, const char *pool, const char *vol)
{
    hx_autovol virStorageVolPtr v = hx_clone_vol(c, pool, vol);
    if (v && virStorageVolDelete(v, 0) < 0)
        hx_err("clone: cannot delete volume %s/%s after a failed reflink copy: %s", pool, vol,
               virGetLastErrorMessage());
}

/* Copies one disk from the source node to its new volume, then reads the copy back and
 * compares the SHA-256 of both. After a reflink copy (reflinked) the source is only read and
 * hashed: the copy was made by the filesystem, and the verification checks it the same way. */
static int hx_clone_copy_disk(hx_job *j, virConnectPtr sc, virConnectPtr dc, json_t *d,
                              int reflinked, uint64_t *done, uint64_t *total, char **msg)
{
    const char *t = json_string_value(json_object_get(d, "target"));
    hx_autovol virStorageVolPtr sv =
        hx_clone_vol(sc, json_string_value(json_object_get(d, "src_pool")),
                     json_string_value(json_object_get(d, "src_vol")));
    hx_autovol virStorageVolPtr dv =
        hx_clone_vol(dc, json_string_value(json_object_get(d, "dst_pool")),
                     json_string_value(json_object_get(d, "dst_vol")));
    if (!sv || !dv)
        return hx_fail(msg, -EIO, "disk %s: %s", t, virGetLastErrorMessage());
    char what[64];
    snprintf(what, sizeof(what), reflinked ? "hashing disk %s" : "copying disk %s", t);
    hx_job_phase(j, what);
    uint64_t expect = (uint64_t)json_integer_value(json_object_get(d, "bytes"));
    uint64_t start = *done;
    char src_hash[65] = "", copy_hash[65] = "";
    {
        hx_autostream virStreamPtr in = virStreamNew(sc, 0);
        hx_autostream virStreamPtr out = virStreamNew(dc, 0);
        /* Sparse streams: holes of the source travel as their length, and the upload seeks
         * over them, so the copy keeps the source's holes. */
        if (!in || !out ||
            virStorageVolDownload(sv, in, 0, 0, VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM) < 0)
            return hx_fail(msg, -EIO, "disk %s: cannot read the source: %s", t,
                           virGetLastErrorMessage());
        if (!reflinked &&
            virStorageVolUpload(dv, out, 0, 0, VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM) < 0) {
            virStreamAbort(in);
            return hx_fail(msg, -EIO, "disk %s: cannot write the copy: %s", t,
                           virGetLastErrorMessage());
        }
        virStreamPtr to = reflinked ? NULL : out;
        int r = hx_clone_stream(j, in, to, done, *total, src_hash, what, msg);
        r = hx_clone_streams_end(r, in, to, what, msg);
        if (r < 0)
            return r;
    }
    uint64_t copied = *done - start;
    /* The total follows what was measured: a file can grow between the check and the copy. */
    *total = *total - expect + copied;
    hx_job_progress(j, *done, *total);
    hx_job_log(j, "disk %s: %s %llu bytes, sha256 %s", t, reflinked ? "hashed" : "copied",
               (unsigned long long)copied, src_hash);

    snprintf(what, sizeof(what), "verifying disk %s", t);
    hx_job_phase(j, what);
    {
        hx_autostream virStreamPtr in = virStreamNew(dc, 0);
        if (!in || virStorageVolDownload(dv, in, 0, 0, VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM) < 0)
            return hx_fail(msg, -EIO, "disk %s: cannot read the copy: %s", t,
                           virGetLastErrorMessage());
        uint64_t n = 0;
        int r = hx_clone_stream(j, in, NULL, &n, 0, copy_hash, what, msg);
        r = hx_clone_streams_end(r, in, NULL, what, msg);
        if (r < 0)
            return r;
    }
    json_object_set_new(d, "sha256_source", json_string(src_hash));
    json_object_set_new(d, "sha256_copy", json_string(copy_hash));
    json_object_set_new(d, "copied", json_integer((json_int_t)copied));
    if (strcmp(src_hash, copy_hash) != 0)
        return hx_fail(msg, -EIO, "disk %s: the copy differs from the source (sha256 %s, %s)", t,
                       src_hash, copy_hash);
    hx_job_log(j, "disk %s: verified, the copy hashes the same", t);
    return 0;
}

/* The clone's domain XML: new name and UUID, new MACs, disks on the new volumes, the Horcrux
 * metadata of the new volumes and, for linked clones, of the template it hangs on. */
static char *hx_clone_domxml(hx_clone_req *q, virConnectPtr dc)
{
    hx_autoxml xmlDocPtr doc = hx_clone_parse(q->xml);
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root)
        return NULL;
    hx_autoxpctx xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    xmlXPathRegisterNs(ctx, BAD_CAST "v", BAD_CAST HX_VOLS_NS);
    xmlXPathRegisterNs(ctx, BAD_CAST "hx", BAD_CAST HX_DOMXML_NS);
    xmlXPathRegisterNs(ctx, BAD_CAST "s", BAD_CAST HX_CLONE_SNAP_NS);
    ctx->node = root;
    /* Elements to drop: the UUID (set below), MACs, per-VM NVRAM, the source's volume list,
     * its snapshot records (their btrfs copies belong to the source: rmdir of the clone must
     * not delete them), the template flag, disks' backing chains (libvirt reads them from the
     * new images). */
    static const char *const drop[] = {"uuid",
                                       "os/nvram",
                                       "metadata/v:volumes",
                                       "metadata/s:snapshots",
                                       "metadata/hx:vm/*[local-name()='template']",
                                       "metadata/hx:vm/*[local-name()='linked_from']",
                                       "devices/disk/backingStore",
                                       "devices/interface/target",
                                       NULL};
    for (const char *const *x = drop; *x; x++) {
        hx_autoxpobj xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST * x, ctx);
        for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
            xmlUnlinkNode(o->nodesetval->nodeTab[i]);
            xmlFreeNode(o->nodesetval->nodeTab[i]);
            o->nodesetval->nodeTab[i] = NULL;
        }
    }
    if (!q->keep_macs) {
        ctx->node = root;
        hx_autoxpobj xmlXPathObjectPtr o =
            xmlXPathEvalExpression(BAD_CAST "devices/interface/mac", ctx);
        for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
            xmlUnlinkNode(o->nodesetval->nodeTab[i]);
            xmlFreeNode(o->nodesetval->nodeTab[i]);
            o->nodesetval->nodeTab[i] = NULL;
        }
    }
    for (xmlNodePtr c = root->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "name"))
            xmlNodeSetContent(c, BAD_CAST q->name);
    xmlNodePtr u = xmlNewNode(NULL, BAD_CAST "uuid");
    xmlNodeSetContent(u, BAD_CAST q->new_uuid);
    xmlAddChild(root, u);
    size_t i;
    json_t *d;
    json_array_foreach (q->disks, i, d) {
        char xp[160];
        snprintf(xp, sizeof(xp), "devices/disk[target/@dev='%s']",
                 json_string_value(json_object_get(d, "target")));
        ctx->node = root;
        hx_autoxpobj xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST xp, ctx);
        if (!o || !o->nodesetval || o->nodesetval->nodeNr != 1)
            return NULL;
        xmlNodePtr disk = o->nodesetval->nodeTab[0];
        const char *pool = json_string_value(json_object_get(d, "dst_pool"));
        const char *vol = json_string_value(json_object_get(d, "dst_vol"));
        hx_autovol virStorageVolPtr nv = hx_clone_vol(dc, pool, vol);
        hx_autofree char *path = nv ? virStorageVolGetPath(nv) : NULL;
        if (!path)
            return NULL;
        for (xmlNodePtr c = disk->children; c; c = c->next) {
            if (c->type != XML_ELEMENT_NODE)
                continue;
            if (xmlStrEqual(c->name, BAD_CAST "driver"))
                xmlSetProp(c, BAD_CAST "type",
                           BAD_CAST json_string_value(json_object_get(d, "dst_format")));
            if (!xmlStrEqual(c->name, BAD_CAST "source"))
                continue;
            xmlUnsetProp(c, BAD_CAST "file");
            xmlUnsetProp(c, BAD_CAST "dev");
            xmlUnsetProp(c, BAD_CAST "pool");
            xmlUnsetProp(c, BAD_CAST "volume");
            xmlChar *type = xmlGetProp(disk, BAD_CAST "type");
            if (type && xmlStrEqual(type, BAD_CAST "volume")) {
                xmlSetProp(c, BAD_CAST "pool", BAD_CAST pool);
                xmlSetProp(c, BAD_CAST "volume", BAD_CAST vol);
            } else {
                xmlSetProp(disk, BAD_CAST "type", BAD_CAST "file");
                xmlSetProp(c, BAD_CAST "file", BAD_CAST path);
            }
            xmlFree(type);
        }
    }
    /* Reflink copies share extents but hang on nothing: only qcow2 overlays tie the clone to
     * its template. */
    int hangs = 0;
    json_array_foreach (q->disks, i, d)
        hangs |= q->linked && !json_is_true(json_object_get(d, "reflink"));
    if (hangs) {
        /* Remembered so that the template refuses rmdir while a clone hangs on its disks. */
        ctx->node = root;
        hx_autoxpobj xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST "metadata/hx:vm", ctx);
        xmlNodePtr vm =
            o && o->nodesetval && o->nodesetval->nodeNr ? o->nodesetval->nodeTab[0] : NULL;
        if (!vm) {
            xmlNodePtr md = NULL;
            for (xmlNodePtr c = root->children; c && !md; c = c->next)
                if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "metadata"))
                    md = c;
            if (!md)
                md = xmlNewChild(root, NULL, BAD_CAST "metadata", NULL);
            vm = xmlNewChild(md, NULL, BAD_CAST "vm", NULL);
            xmlSetNs(vm, xmlNewNs(vm, BAD_CAST HX_DOMXML_NS, BAD_CAST "horcrux"));
        }
        xmlNewTextChild(vm, vm->ns, BAD_CAST "linked_from", BAD_CAST q->uuid);
    }
    hx_autofree char *xml = hx_xml_dump(doc, NULL);
    hx_autojson json_t *vols = json_array();
    json_array_foreach (q->disks, i, d)
        json_array_append_new(vols, json_pack("{s:O,s:O}", "pool", json_object_get(d, "dst_pool"),
                                              "name", json_object_get(d, "dst_vol")));
    return xml ? hx_volumes_record(xml, vols) : NULL;
}

/* ---- the job ---- */

static int hx_clone_run(hx_job *j, void *arg, char **msg)
{
    hx_clone_req *q = arg;
    hx_autonode hx_node *sn = hx_cluster_get(hx_clone_cl, q->src_node);
    hx_autonode hx_node *dn = hx_cluster_get(hx_clone_cl, q->dst_node);
    hx_autoconn virConnectPtr sc = sn ? hx_node_conn(sn) : NULL;
    hx_autoconn virConnectPtr dc = dn ? hx_node_conn(dn) : NULL;
    if (!sc || !dc)
        return hx_fail(msg, -EHOSTDOWN, "clone %s: node %s is offline", q->name,
                       sc ? q->dst_node : q->src_node);
    hx_job_log(j, "%s clone of VM %s on node %s to %s on node %s", q->linked ? "linked" : "full",
               q->vm, q->src_node, q->name, q->dst_node);
    /* What the job creates, recorded before it is created: the cleanup's only source. */
    hx_autojson json_t *undo =
        json_pack("{s:s,s:s,s:[]}", "node", q->dst_node, "name", q->name, "volumes");
    json_t *made = json_object_get(undo, "volumes");
    uint64_t done = 0, total = 0;
    size_t i;
    json_t *d;
    json_array_foreach (q->disks, i, d)
        total += q->linked ? 0 : (uint64_t)json_integer_value(json_object_get(d, "bytes"));
    hx_job_progress(j, 0, total);
    json_array_foreach (q->disks, i, d) {
        const char *pool = json_string_value(json_object_get(d, "dst_pool"));
        const char *vol = json_string_value(json_object_get(d, "dst_vol"));
        char phase[600];
        snprintf(phase, sizeof(phase), "creating %s", vol);
        hx_job_phase(j, phase);
        json_array_append_new(made, json_pack("{s:s,s:s}", "pool", pool, "name", vol));
        hx_job_set_undo(j, undo);
        hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(dc, pool);
        const char *fmt = json_string_value(json_object_get(d, "dst_format"));
        int overlay = q->linked && !json_is_true(json_object_get(d, "reflink"));
        /* Sparse (allocation 0); for linked clones, a qcow2 over a backing file. */
        hx_autofree char *xml = hx_volume_xml(
            vol, (unsigned long long)json_integer_value(json_object_get(d, "capacity")), fmt, 1,
            overlay ? json_string_value(json_object_get(d, "src_path")) : NULL,
            json_string_value(json_object_get(d, "format")));
        hx_autovol virStorageVolPtr nv = NULL;
        const char *method = overlay ? "backing" : "stream";
        if (json_is_true(json_object_get(d, "reflink")) && p && xml) {
            /* libvirt clones the file's extents (FICLONE) and fails rather than falling back
             * to a byte copy when the filesystem cannot: then the copy is streamed. */
            hx_autovol virStorageVolPtr sv =
                hx_clone_vol(sc, json_string_value(json_object_get(d, "src_pool")),
                             json_string_value(json_object_get(d, "src_vol")));
            nv = sv ? virStorageVolCreateXMLFrom(p, xml, sv, VIR_STORAGE_VOL_CREATE_REFLINK) : NULL;
            if (nv) {
                method = "reflink";
                hx_job_log(j, "created volume %s/%s as a reflink copy of %s (shared extents)", pool,
                           vol, json_string_value(json_object_get(d, "src_vol")));
            } else {
                hx_job_log(j, "disk %s: no reflink copy (%s): the copy is streamed",
                           json_string_value(json_object_get(d, "target")),
                           virGetLastErrorMessage());
                hx_clone_undo_vol(dc, pool, vol);
                if (q->linked)
                    total += (uint64_t)json_integer_value(json_object_get(d, "bytes"));
            }
        }
        if (!nv) {
            nv = p && xml ? virStorageVolCreateXML(p, xml, 0) : NULL;
            if (!nv)
                return hx_fail(msg, -EIO, "clone %s: cannot create volume %s/%s on node %s: %s",
                               q->name, pool, vol, q->dst_node, virGetLastErrorMessage());
            hx_job_log(j, "created volume %s/%s", pool, vol);
        }
        json_object_set_new(d, "method", json_string(method));
        if (!overlay && !(q->linked && strcmp(method, "reflink") == 0)) {
            int r = hx_clone_copy_disk(j, sc, dc, d, strcmp(method, "reflink") == 0, &done, &total,
                                       msg);
            if (r < 0)
                return r;
        }
        if (hx_job_check(j) < 0)
            return -ECANCELED;
    }
    hx_job_phase(j, "defining");
    hx_autofree char *xml = hx_clone_domxml(q, dc);
    if (!xml)
        return hx_fail(msg, -EIO, "clone %s: cannot build its domain XML", q->name);
    /* mkdir checks running clones' names, but one may have passed its check before ours. */
    char where[HX_NODE_NAME_MAX];
    if (hx_clone_name_taken(hx_clone_cl, q->name, where, sizeof(where)))
        return hx_fail(msg, -EEXIST, "clone %s: the name was taken on node %s meanwhile", q->name,
                       where);
    json_object_set_new(undo, "domain", json_string(q->new_uuid));
    hx_job_set_undo(j, undo);
    if (hx_job_check(j) < 0)
        return -ECANCELED;
    hx_autodom virDomainPtr dom = virDomainDefineXML(dc, xml);
    if (!dom)
        return hx_fail(msg, -EIO, "clone %s: libvirt refused its definition on node %s: %s",
                       q->name, q->dst_node, virGetLastErrorMessage());
    hx_job_log(j, "defined VM %s (%s) on node %s", q->name, q->new_uuid, q->dst_node);
    if (q->start) {
        hx_job_phase(j, "starting");
        if (virDomainCreate(dom) < 0)
            return hx_fail(msg, -EIO, "clone %s: cannot start: %s", q->name,
                           virGetLastErrorMessage());
    }
    hx_vm_refresh(dn, q->name, q->new_uuid);
    /* Complete: nothing to undo any more. */
    hx_job_set_undo(j, json_null());
    hx_autojson json_t *disks = json_array();
    const char *method = NULL;
    json_array_foreach (q->disks, i, d) {
        char src[600], copy[600];
        snprintf(src, sizeof(src), "%s/%s", json_string_value(json_object_get(d, "src_pool")),
                 json_string_value(json_object_get(d, "src_vol")));
        snprintf(copy, sizeof(copy), "%s/%s", json_string_value(json_object_get(d, "dst_pool")),
                 json_string_value(json_object_get(d, "dst_vol")));
        json_array_append_new(disks, json_pack("{s:O,s:s,s:s,s:O,s:O?,s:O?,s:O?}", "target",
                                               json_object_get(d, "target"), "source", src, "copy",
                                               copy, "method", json_object_get(d, "method"),
                                               "bytes", json_object_get(d, "copied"),
                                               "sha256_source", json_object_get(d, "sha256_source"),
                                               "sha256_copy", json_object_get(d, "sha256_copy")));
        const char *m = json_string_value(json_object_get(d, "method"));
        method = !method || strcmp(method, m) == 0 ? m : "mixed";
    }
    hx_job_set_result(j,
                      json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:O}", "vm", q->name, "node", q->dst_node,
                                "uuid", q->new_uuid, "mode", q->linked ? "linked" : "full",
                                "method", method ? method : "none", "verified",
                                q->linked ? json_null() : json_true(), "disks", disks));
    hx_job_progress(j, done, total);
    return 0;
}

/* Removes what an unfinished clone created: its domain (by the UUID it was given), then its
 * volumes. Waits for the node after a daemon start. */
static int hx_clone_undo(const json_t *undo)
{
    const char *node = json_string_value(json_object_get(undo, "node"));
    const char *name = json_string_value(json_object_get(undo, "name"));
    const char *uuid = json_string_value(json_object_get(undo, "domain"));
    if (!node)
        return 0;
    /* After a start the node may not even be configured yet, let alone connected. */
    hx_node *n0 = NULL;
    virConnectPtr c0 = NULL;
    for (int waited = 0;; waited += 100) {
        n0 = hx_cluster_get(hx_clone_cl, node);
        c0 = n0 ? hx_node_conn(n0) : NULL;
        if (c0)
            break;
        if (n0)
            hx_node_unref(n0);
        n0 = NULL;
        if (waited >= HX_CLONE_UNDO_WAIT_MS || hx_jobs_stopping())
            break;
        usleep(100000);
    }
    hx_autonode hx_node *n = n0;
    hx_autoconn virConnectPtr c = c0;
    if (!c) {
        hx_err("clone %s: node %s is offline: cannot remove what the clone created", name, node);
        return -1;
    }
    if (uuid) {
        hx_autodom virDomainPtr d = virDomainLookupByUUIDString(c, uuid);
        if (d) {
            virDomainDestroy(d);
            if (virDomainUndefineFlags(d, VIR_DOMAIN_UNDEFINE_NVRAM |
                                              VIR_DOMAIN_UNDEFINE_MANAGED_SAVE) < 0)
                hx_err("clone %s: cannot undefine it on node %s: %s", name, node,
                       virGetLastErrorMessage());
            else
                hx_info("clone %s: undefined the unfinished VM on node %s", name, node);
        }
    }
    if (uuid && name)
        hx_vm_refresh(n, name, uuid);
    /* libvirtd refuses to delete a volume while a stream of a client that went away (a daemon
     * that died mid-upload) still holds it: it lets go within a moment, so try a few times. */
    for (int attempt = 0; attempt < 20; attempt++) {
        hx_volumes_delete(c, json_object_get(undo, "volumes"), name ? name : "clone");
        int left = 0;
        size_t i;
        json_t *v;
        json_array_foreach (json_object_get(undo, "volumes"), i, v) {
            hx_autovol virStorageVolPtr vol =
                hx_clone_vol(c, json_string_value(json_object_get(v, "pool")),
                             json_string_value(json_object_get(v, "name")));
            left |= vol != NULL;
        }
        if (!left)
            return 0;
        usleep(250000);
    }
    return -1;
}

void hx_clone_init(hx_cluster *cl)
{
    hx_clone_cl = cl;
    hx_jobs_register("clone", hx_clone_undo);
}

int hx_clone_start(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                   const char *req, size_t len, char **msg)
{
    hx_clone_req *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    hx_strlcpy(q->src_node, node, sizeof(q->src_node));
    hx_strlcpy(q->dst_node, node, sizeof(q->dst_node));
    hx_strlcpy(q->vm, vm, sizeof(q->vm));
    int r = hx_clone_parse_req(q, vm, req, len, msg);
    if (r < 0) {
        free(q);
        return r;
    }
    if (q->linked && strcmp(q->dst_node, node) != 0) {
        free(q);
        return hx_fail(msg, -EINVAL,
                       "clone of VM %s: field \"node\": a linked clone stays on node %s", vm, node);
    }
    hx_autonode hx_node *sn = hx_cluster_get(cl, node);
    hx_autonode hx_node *dn = hx_cluster_get(cl, q->dst_node);
    if (!sn || !dn) {
        r = hx_fail(msg, -ENOENT, "clone of VM %s: node %s does not exist", vm,
                    sn ? q->dst_node : node);
        free(q);
        return r;
    }
    __attribute__((cleanup(hx_cl_viewp))) hx_vm_view view = {0};
    r = hx_cluster_vm_view(cl, node, vm, uuid, &view);
    if (r < 0) {
        free(q);
        return hx_fail(msg, r, r == -EHOSTDOWN ? "node %s is offline" : "VM %s does not exist",
                       r == -EHOSTDOWN ? node : vm);
    }
    /* From here the source is locked and the name reserved; hx_clone_req_free undoes both. */
    r = hx_vm_trylock(view.uuid);
    if (r < 0) {
        free(q);
        return hx_fail(msg, r, "VM %s is busy with another operation", vm);
    }
    hx_strlcpy(q->uuid, view.uuid, sizeof(q->uuid));
    if (hx_clone_name_reserve(q->name) < 0) {
        hx_vm_unlock(q->uuid);
        r = hx_fail(msg, -EEXIST, "cannot clone VM %s to %s: a clone of that name is running", vm,
                    q->name);
        free(q);
        return r;
    }
    __attribute__((cleanup(hx_clone_reqp))) hx_clone_req *held = q;
    char where[HX_NODE_NAME_MAX];
    if (hx_clone_name_taken(cl, q->name, where, sizeof(where)))
        return hx_fail(msg, -EEXIST, "cannot clone VM %s to %s: the name is taken on node %s", vm,
                       q->name, where);
    int template = hx_vm_is_template(view.config_json);
    if (q->linked && !template)
        return hx_fail(msg, -EINVAL,
                       "clone of VM %s: field \"mode\": linked clones need a template "
                       "(\"template\": true in config.json)",
                       vm);
    if (view.state != VIR_DOMAIN_SHUTOFF)
        return hx_fail(msg, -EBUSY,
                       "cannot clone VM %s: it is not shut off (its disks would change under the "
                       "copy)",
                       vm);
    q->xml = view.xml_config ? strdup(view.xml_config) : NULL;
    if (!q->xml)
        return hx_fail(msg, -EIO, "VM %s: no domain XML", vm);
    if (hx_clone_new_uuid(q->new_uuid) < 0)
        return hx_fail(msg, -EIO, "clone of VM %s: no random bytes for a UUID", vm);
    hx_autoconn virConnectPtr sc = hx_node_conn(sn);
    hx_autoconn virConnectPtr dc = hx_node_conn(dn);
    if (!sc || !dc)
        return hx_fail(msg, -EHOSTDOWN, "clone of VM %s: node %s is offline", vm,
                       sc ? q->dst_node : node);
    r = hx_clone_plan_disks(q, sc, dc, msg);
    if (r < 0)
        return r;
    char target[HX_NODE_NAME_MAX + HX_VM_NAME_MAX + 16];
    snprintf(target, sizeof(target), "/nodes/%s/vms/%s", q->dst_node, q->name);
    char id[HX_JOB_ID_LEN];
    return hx_jobs_submit("clone", target, q->uuid, hx_clone_run, hx_steal(&held),
                          hx_clone_req_free, id, msg);
}
