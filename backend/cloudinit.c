/* Cloud-init NoCloud data: the documents in the domain's metadata, and the ISO made from them at
 * each start (see hx_cloudinit.h). */
#include "hx_cloudinit.h"
#include "hx_log.h"
#include "hx_util.h"
#include "hx_vmops.h"

#include <errno.h>
#include <fcntl.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

const char *const hx_ci_files[] = {"user-data", "meta-data", "network-config", NULL};
enum { HX_CI_USER, HX_CI_META, HX_CI_NET, HX_CI_N };

#define HX_CI_PREFIX "hxci"

/* ---- scoped cleanup ---- */

static void hx_ci_docp(xmlDocPtr *d)
{
    if (*d)
        xmlFreeDoc(*d);
}
static void hx_ci_poolp(virStoragePoolPtr *p)
{
    if (*p)
        virStoragePoolFree(*p);
}
static void hx_ci_volp(virStorageVolPtr *v)
{
    if (*v)
        virStorageVolFree(*v);
}
static void hx_ci_domp(virDomainPtr *d)
{
    if (*d)
        virDomainFree(*d);
}
static void hx_ci_xmlcharp(xmlChar **s)
{
    if (*s)
        xmlFree(*s);
}
#define hx_ci_autodoc __attribute__((cleanup(hx_ci_docp)))
#define hx_ci_autopool __attribute__((cleanup(hx_ci_poolp)))
#define hx_ci_autovol __attribute__((cleanup(hx_ci_volp)))
#define hx_ci_autodom __attribute__((cleanup(hx_ci_domp)))
#define hx_ci_autoxstr __attribute__((cleanup(hx_ci_xmlcharp)))

/* The three files' contents. */
typedef struct hx_ci_set {
    char *data[HX_CI_N];
    size_t len[HX_CI_N];
} hx_ci_set;

static void hx_ci_set_clear(hx_ci_set *s)
{
    for (int i = 0; i < HX_CI_N; i++)
        free(s->data[i]);
    memset(s, 0, sizeof(*s));
}
#define hx_ci_autoset __attribute__((cleanup(hx_ci_set_clear)))

/* A temporary directory and the files in it, removed when it leaves scope. */
typedef struct hx_ci_tmp {
    char dir[256];
} hx_ci_tmp;

static void hx_ci_tmp_clear(hx_ci_tmp *t)
{
    if (!t->dir[0])
        return;
    static const char *const names[] = {"user-data", "meta-data", "network-config", "cidata.iso",
                                        "tool.log"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", t->dir, names[i]);
        unlink(p);
    }
    rmdir(t->dir);
    t->dir[0] = '\0';
}
#define hx_ci_autotmp __attribute__((cleanup(hx_ci_tmp_clear)))

static int __attribute__((format(printf, 3, 4)))
hx_ci_fail(char **msg, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (msg && vasprintf(msg, fmt, ap) < 0)
        *msg = NULL;
    va_end(ap);
    return err;
}

int hx_ci_is_file(const char *name)
{
    for (int i = 0; hx_ci_files[i]; i++)
        if (strcmp(hx_ci_files[i], name) == 0)
            return 1;
    return 0;
}

static int hx_ci_index(const char *name)
{
    for (int i = 0; hx_ci_files[i]; i++)
        if (strcmp(hx_ci_files[i], name) == 0)
            return i;
    return -1;
}

/* ---- base64: the metadata holds any bytes (gzip'd user-data too), XML text cannot ---- */

static const char hx_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *hx_ci_b64_encode(const char *data, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)data;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        out[o++] = hx_b64[(v >> 18) & 63];
        out[o++] = hx_b64[(v >> 12) & 63];
        out[o++] = i + 1 < len ? hx_b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? hx_b64[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* Decodes, skipping blanks; NULL on a character outside the alphabet. */
static char *hx_ci_b64_decode(const char *in, size_t *len)
{
    size_t n = strlen(in);
    char *out = malloc(n / 4 * 3 + 4);
    if (!out)
        return NULL;
    unsigned v = 0;
    int bits = 0;
    size_t o = 0;
    for (const char *p = in; *p; p++) {
        if (*p == '=' || *p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
            continue;
        const char *c = strchr(hx_b64, *p);
        if (!c) {
            free(out);
            return NULL;
        }
        v = (v << 6) | (unsigned)(c - hx_b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((v >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    *len = o;
    return out;
}

/* ---- reading the metadata ---- */

static xmlDocPtr hx_ci_parse(const char *xml)
{
    return xml ? xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
                               XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
               : NULL;
}

/* The first element child of parent named name, in namespace ns when ns is not NULL. */
static xmlNodePtr hx_ci_child(xmlNodePtr parent, const char *ns, const char *name)
{
    for (xmlNodePtr c = parent ? parent->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST name) &&
            (!ns || (c->ns && xmlStrEqual(c->ns->href, BAD_CAST ns))))
            return c;
    return NULL;
}

/* Fills s from a <cloudinit> element (children matched by name: libvirt stores our element with
 * its namespace on the element itself only). */
static int hx_ci_from_element(xmlNodePtr ci, hx_ci_set *s)
{
    for (int i = 0; i < HX_CI_N; i++) {
        xmlNodePtr f = hx_ci_child(ci, NULL, hx_ci_files[i]);
        hx_ci_autoxstr xmlChar *txt = f ? xmlNodeGetContent(f) : NULL;
        s->data[i] = txt ? hx_ci_b64_decode((const char *)txt, &s->len[i]) : strdup("");
        if (!s->data[i]) {
            /* Not base64 (edited by hand): taken as an empty file rather than failing reads. */
            s->data[i] = strdup("");
            s->len[i] = 0;
            if (!s->data[i])
                return -ENOMEM;
        }
    }
    return 0;
}

static int hx_ci_from_xml(const char *xml, hx_ci_set *s)
{
    hx_ci_autodoc xmlDocPtr doc = hx_ci_parse(xml);
    xmlNodePtr meta = doc ? hx_ci_child(xmlDocGetRootElement(doc), NULL, "metadata") : NULL;
    return hx_ci_from_element(hx_ci_child(meta, HX_CI_NS, "cloudinit"), s);
}

int hx_ci_read(const char *xml, const char *file, char **out, size_t *len)
{
    int i = hx_ci_index(file);
    if (i < 0)
        return -EINVAL;
    hx_ci_autoset hx_ci_set s = {0};
    int r = hx_ci_from_xml(xml, &s);
    if (r < 0)
        return r;
    *out = s.data[i];
    *len = s.len[i];
    s.data[i] = NULL;
    return 0;
}

/* ---- writing the metadata ---- */

int hx_ci_store(virDomainPtr dom, const char *vm, const char *file, const char *data, size_t len,
                char **msg)
{
    int i = hx_ci_index(file);
    if (i < 0)
        return hx_ci_fail(msg, -EINVAL, "VM %s: no cloud-init file %s", vm, file);
    if (len > HX_CI_MAX_BYTES)
        return hx_ci_fail(msg, -EFBIG, "cloudinit/%s of VM %s: %zu bytes, at most %d", file, vm,
                          len, HX_CI_MAX_BYTES);
    /* The current element from libvirt, not the cache: the other two files are kept as they are. */
    hx_autofree char *cur =
        virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, HX_CI_NS, VIR_DOMAIN_AFFECT_CONFIG);
    if (!cur && virGetLastErrorCode() != VIR_ERR_NO_DOMAIN_METADATA)
        return hx_ci_fail(msg, -EIO, "VM %s: cannot read its cloud-init metadata: %s", vm,
                          virGetLastErrorMessage());
    hx_ci_autoset hx_ci_set s = {0};
    hx_ci_autodoc xmlDocPtr cd = hx_ci_parse(cur);
    if (hx_ci_from_element(cd ? xmlDocGetRootElement(cd) : NULL, &s) < 0)
        return hx_ci_fail(msg, -ENOMEM, "VM %s: out of memory", vm);
    free(s.data[i]);
    s.data[i] = malloc(len + 1);
    if (!s.data[i])
        return hx_ci_fail(msg, -ENOMEM, "VM %s: out of memory", vm);
    memcpy(s.data[i], data, len);
    s.data[i][len] = '\0';
    s.len[i] = len;

    hx_ci_autodoc xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    xmlNodePtr root = doc ? xmlNewNode(NULL, BAD_CAST "cloudinit") : NULL;
    if (!root)
        return hx_ci_fail(msg, -ENOMEM, "VM %s: out of memory", vm);
    xmlDocSetRootElement(doc, root);
    int any = 0;
    for (int j = 0; j < HX_CI_N; j++) {
        if (s.len[j] == 0)
            continue;
        hx_autofree char *b = hx_ci_b64_encode(s.data[j], s.len[j]);
        if (!b || !xmlNewTextChild(root, NULL, BAD_CAST hx_ci_files[j], BAD_CAST b))
            return hx_ci_fail(msg, -ENOMEM, "VM %s: out of memory", vm);
        any = 1;
    }
    xmlChar *mem = NULL;
    if (any) {
        xmlBufferPtr buf = xmlBufferCreate();
        if (buf && xmlNodeDump(buf, doc, root, 0, 0) >= 0)
            mem = xmlStrdup(xmlBufferContent(buf));
        xmlBufferFree(buf);
        if (!mem)
            return hx_ci_fail(msg, -ENOMEM, "VM %s: out of memory", vm);
    }
    hx_ci_autoxstr xmlChar *el = mem;
    /* A NULL element removes ours: a VM with no cloud-init data has no trace of it. Only the
     * persistent definition changes; a running VM sees the data at its next start. */
    if (virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, (const char *)el,
                             el ? HX_CI_PREFIX : NULL, HX_CI_NS, VIR_DOMAIN_AFFECT_CONFIG) < 0)
        return hx_ci_fail(msg, -EIO, "VM %s: cannot store cloudinit/%s: %s", vm, file,
                          virGetLastErrorMessage());
    hx_info("VM %s: cloudinit/%s %s (%zu bytes)", vm, file, len ? "set" : "cleared", len);
    return 0;
}

/* ---- what the last start attached ---- */

typedef struct hx_ci_state {
    char *hash;       /* recorded hash of the files, NULL when nothing is recorded */
    int recorded;     /* the ISO record exists */
    int vol_recorded; /* the volume is in Horcrux's volume list */
    int cdrom;        /* the domain has our cdrom */
} hx_ci_state;

static int hx_ci_is_ours(xmlNodePtr disk, const char *vol)
{
    if (disk->type != XML_ELEMENT_NODE || !xmlStrEqual(disk->name, BAD_CAST "disk"))
        return 0;
    hx_ci_autoxstr xmlChar *dev = xmlGetProp(disk, BAD_CAST "device");
    xmlNodePtr src = hx_ci_child(disk, NULL, "source");
    hx_ci_autoxstr xmlChar *pool = src ? xmlGetProp(src, BAD_CAST "pool") : NULL;
    hx_ci_autoxstr xmlChar *v = src ? xmlGetProp(src, BAD_CAST "volume") : NULL;
    return dev && xmlStrEqual(dev, BAD_CAST "cdrom") && pool &&
           xmlStrEqual(pool, BAD_CAST HX_CI_POOL) && v && xmlStrEqual(v, BAD_CAST vol);
}

static xmlNodePtr hx_ci_vol_entry(xmlNodePtr list, const char *vol)
{
    for (xmlNodePtr c = list ? list->children : NULL; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || !xmlStrEqual(c->name, BAD_CAST "volume"))
            continue;
        hx_ci_autoxstr xmlChar *pool = xmlGetProp(c, BAD_CAST "pool");
        hx_ci_autoxstr xmlChar *name = xmlGetProp(c, BAD_CAST "name");
        if (pool && name && xmlStrEqual(pool, BAD_CAST HX_CI_POOL) &&
            xmlStrEqual(name, BAD_CAST vol))
            return c;
    }
    return NULL;
}

static void hx_ci_state_read(xmlDocPtr doc, const char *vol, hx_ci_state *st)
{
    memset(st, 0, sizeof(*st));
    xmlNodePtr root = xmlDocGetRootElement(doc);
    xmlNodePtr meta = hx_ci_child(root, NULL, "metadata");
    xmlNodePtr iso = hx_ci_child(meta, HX_CI_ISO_NS, "iso");
    if (iso) {
        st->recorded = 1;
        xmlChar *h = xmlGetProp(iso, BAD_CAST "sha256");
        st->hash = h ? strdup((const char *)h) : NULL;
        xmlFree(h);
    }
    st->vol_recorded = hx_ci_vol_entry(hx_ci_child(meta, HX_VOLS_NS, "volumes"), vol) != NULL;
    for (xmlNodePtr d = hx_ci_child(root, NULL, "devices"); d && !st->cdrom; d = NULL)
        for (xmlNodePtr c = d->children; c && !st->cdrom; c = c->next)
            st->cdrom = hx_ci_is_ours(c, vol);
}

/* A free target for the cdrom: SATA on q35 (it has no IDE), IDE elsewhere (i440fx, where the
 * guest's ata_piix sees it without an extra controller). */
static int hx_ci_pick_target(xmlNodePtr root, char *dev, size_t size, const char **bus)
{
    xmlNodePtr os = hx_ci_child(root, NULL, "os");
    xmlNodePtr type = hx_ci_child(os, NULL, "type");
    hx_ci_autoxstr xmlChar *machine = type ? xmlGetProp(type, BAD_CAST "machine") : NULL;
    int q35 = machine && strstr((const char *)machine, "q35");
    *bus = q35 ? "sata" : "ide";
    const char *prefix = q35 ? "sd" : "hd";
    for (char l = q35 ? 'z' : 'd'; l >= 'a'; l--) {
        snprintf(dev, size, "%s%c", prefix, l);
        int used = 0;
        xmlNodePtr devs = hx_ci_child(root, NULL, "devices");
        for (xmlNodePtr c = devs ? devs->children : NULL; c && !used; c = c->next) {
            if (c->type != XML_ELEMENT_NODE || !xmlStrEqual(c->name, BAD_CAST "disk"))
                continue;
            xmlNodePtr t = hx_ci_child(c, NULL, "target");
            hx_ci_autoxstr xmlChar *td = t ? xmlGetProp(t, BAD_CAST "dev") : NULL;
            used = td && xmlStrEqual(td, BAD_CAST dev);
        }
        if (!used)
            return 0;
    }
    return -ENOSPC;
}

static xmlNodePtr hx_ci_ns_child(xmlNodePtr parent, const char *ns, const char *prefix,
                                 const char *name)
{
    xmlNodePtr n = hx_ci_child(parent, ns, name);
    if (n)
        return n;
    n = xmlNewChild(parent, NULL, BAD_CAST name, NULL);
    if (n)
        xmlSetNs(n, xmlNewNs(n, BAD_CAST ns, BAD_CAST prefix));
    return n;
}

/* The domain XML with our cdrom, volume entry and ISO record added (attach) or removed. */
static char *hx_ci_edit(xmlDocPtr doc, const char *vol, const char *hash, int attach, char **why)
{
    xmlNodePtr root = xmlDocGetRootElement(doc);
    xmlNodePtr devs = hx_ci_child(root, NULL, "devices");
    if (!devs)
        devs = xmlNewChild(root, NULL, BAD_CAST "devices", NULL);
    xmlNodePtr meta = hx_ci_child(root, NULL, "metadata");
    if (!meta)
        meta = xmlNewChild(root, NULL, BAD_CAST "metadata", NULL);
    if (!devs || !meta) {
        *why = strdup("out of memory");
        return NULL;
    }
    xmlNodePtr ours = NULL;
    for (xmlNodePtr c = devs->children; c && !ours; c = c->next)
        if (hx_ci_is_ours(c, vol))
            ours = c;
    xmlNodePtr list = hx_ci_child(meta, HX_VOLS_NS, "volumes");
    xmlNodePtr entry = hx_ci_vol_entry(list, vol);
    xmlNodePtr iso = hx_ci_child(meta, HX_CI_ISO_NS, "iso");
    if (!attach) {
        xmlNodePtr gone[] = {ours, entry, iso};
        for (size_t i = 0; i < 3; i++)
            if (gone[i]) {
                xmlUnlinkNode(gone[i]);
                xmlFreeNode(gone[i]);
            }
    } else {
        char dev[8];
        const char *bus = NULL;
        if (!ours && hx_ci_pick_target(root, dev, sizeof(dev), &bus) < 0) {
            *why = strdup("no free drive letter for its cdrom");
            return NULL;
        }
        if (!ours) {
            xmlNodePtr d = xmlNewChild(devs, NULL, BAD_CAST "disk", NULL);
            xmlNodePtr drv = d ? xmlNewChild(d, NULL, BAD_CAST "driver", NULL) : NULL;
            xmlNodePtr src = d ? xmlNewChild(d, NULL, BAD_CAST "source", NULL) : NULL;
            xmlNodePtr tgt = d ? xmlNewChild(d, NULL, BAD_CAST "target", NULL) : NULL;
            if (!drv || !src || !tgt || !xmlNewChild(d, NULL, BAD_CAST "readonly", NULL)) {
                *why = strdup("out of memory");
                return NULL;
            }
            xmlSetProp(d, BAD_CAST "type", BAD_CAST "volume");
            xmlSetProp(d, BAD_CAST "device", BAD_CAST "cdrom");
            xmlSetProp(drv, BAD_CAST "name", BAD_CAST "qemu");
            xmlSetProp(drv, BAD_CAST "type", BAD_CAST "raw");
            xmlSetProp(src, BAD_CAST "pool", BAD_CAST HX_CI_POOL);
            xmlSetProp(src, BAD_CAST "volume", BAD_CAST vol);
            xmlSetProp(tgt, BAD_CAST "dev", BAD_CAST dev);
            xmlSetProp(tgt, BAD_CAST "bus", BAD_CAST bus);
        }
        if (!entry) {
            list = hx_ci_ns_child(meta, HX_VOLS_NS, HX_VOLS_PREFIX, "volumes");
            entry = list ? xmlNewChild(list, list->ns, BAD_CAST "volume", NULL) : NULL;
            if (!entry) {
                *why = strdup("out of memory");
                return NULL;
            }
            xmlSetProp(entry, BAD_CAST "pool", BAD_CAST HX_CI_POOL);
            xmlSetProp(entry, BAD_CAST "name", BAD_CAST vol);
        }
        iso = hx_ci_ns_child(meta, HX_CI_ISO_NS, "hxciso", "iso");
        if (!iso) {
            *why = strdup("out of memory");
            return NULL;
        }
        xmlSetProp(iso, BAD_CAST "pool", BAD_CAST HX_CI_POOL);
        xmlSetProp(iso, BAD_CAST "volume", BAD_CAST vol);
        xmlSetProp(iso, BAD_CAST "sha256", BAD_CAST hash);
    }
    xmlChar *mem = NULL;
    int size = 0;
    xmlDocDumpMemory(doc, &mem, &size);
    char *out = mem ? strndup((const char *)mem, (size_t)size) : NULL;
    xmlFree(mem);
    if (!out)
        *why = strdup("out of memory");
    return out;
}

/* ---- building the ISO ---- */

/* SHA-256 (hex) of the files as they go on the ISO: name, length, bytes of each. */
static int hx_ci_hash(const hx_ci_set *s, char hex[65])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (int i = 0; ok && i < HX_CI_N; i++) {
        unsigned long long l = s->len[i];
        ok = EVP_DigestUpdate(ctx, hx_ci_files[i], strlen(hx_ci_files[i]) + 1) &&
             EVP_DigestUpdate(ctx, &l, sizeof(l)) && EVP_DigestUpdate(ctx, s->data[i], s->len[i]);
    }
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -EIO;
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* The ISO tool's full path: genisoimage, else xorriso (as mkisofs). */
static int hx_ci_find_tool(char *path, size_t size, int *xorriso)
{
    const char *env = getenv("PATH");
    static const char *const tools[] = {"genisoimage", "xorriso"};
    for (size_t t = 0; t < 2; t++) {
        const char *p = env && *env ? env : "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
        while (*p) {
            size_t n = strcspn(p, ":");
            if (n > 0 && snprintf(path, size, "%.*s/%s", (int)n, p, tools[t]) < (int)size &&
                access(path, X_OK) == 0) {
                *xorriso = t == 1;
                return 0;
            }
            p += n;
            if (*p == ':')
                p++;
        }
    }
    return -ENOENT;
}

static int hx_ci_write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        off += (size_t)w;
    }
    return close(fd) < 0 ? -errno : 0;
}

/* Reads a whole file (at most max bytes); NULL on failure. */
static char *hx_ci_slurp(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    hx_autobuf hx_buf b = {0};
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || b.len + (size_t)n > max || hx_buf_append(&b, chunk, (size_t)n) < 0) {
            if (n == 0)
                break;
            close(fd);
            return NULL;
        }
    }
    close(fd);
    if (!b.data && hx_buf_append(&b, "", 0) < 0)
        return NULL;
    return hx_buf_steal(&b, len);
}

/* Runs argv (no shell) with stdout and stderr into logpath, for at most timeout_ms.
 * 0, or -errno with *why a malloc'd reason. */
static int hx_ci_run(char *const argv[], const char *logpath, int timeout_ms, char **why)
{
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa) != 0) {
        *why = strdup("out of memory");
        return -ENOMEM;
    }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    /* The daemon's own descriptors (/dev/fuse, libvirt sockets) stay out of the child. */
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    pid_t pid;
    int e = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0) {
        if (asprintf(why, "cannot run %s: %s", argv[0], strerror(e)) < 0)
            *why = NULL;
        return -EIO;
    }
    long long deadline = hx_now_mono_ns() + (long long)timeout_ms * 1000000;
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            if (asprintf(why, "cannot wait for %s: %s", argv[0], strerror(errno)) < 0)
                *why = NULL;
            return -EIO;
        }
        if (hx_now_mono_ns() > deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            if (asprintf(why, "%s did not finish within %d ms", argv[0], timeout_ms) < 0)
                *why = NULL;
            return -EIO;
        }
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    size_t n = 0;
    hx_autofree char *out = hx_ci_slurp(logpath, 1 << 20, &n);
    /* Its last line says why. */
    while (out && n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    const char *last = out ? strrchr(out, '\n') : NULL;
    last = last ? last + 1 : out ? out : "";
    if (asprintf(why, "%s %s %d: %.200s", argv[0], WIFEXITED(status) ? "exited with" : "killed by",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), last) < 0)
        *why = NULL;
    return -EIO;
}

/* Builds the NoCloud ISO of s in tmp; the image's bytes in *iso. */
static int hx_ci_build(const hx_ci_set *s, hx_ci_tmp *tmp, char **iso, size_t *iso_len, char **why)
{
    char tool[512];
    int xorriso = 0;
    if (hx_ci_find_tool(tool, sizeof(tool), &xorriso) < 0) {
        *why = strdup("neither genisoimage nor xorriso is installed on the daemon's host");
        return -EIO;
    }
    const char *td = getenv("TMPDIR");
    snprintf(tmp->dir, sizeof(tmp->dir), "%s/horcrux-ci-XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(tmp->dir)) {
        int e = errno;
        tmp->dir[0] = '\0';
        if (asprintf(why, "cannot make a temporary directory: %s", strerror(e)) < 0)
            *why = NULL;
        return -EIO;
    }
    char paths[HX_CI_N][512], out[512], log[512];
    char *argv[32];
    int a = 0;
    argv[a++] = tool;
    if (xorriso) {
        argv[a++] = "-as";
        argv[a++] = "mkisofs";
    }
    snprintf(out, sizeof(out), "%s/cidata.iso", tmp->dir);
    snprintf(log, sizeof(log), "%s/tool.log", tmp->dir);
    /* NoCloud finds the data by the volume label "cidata"; Joliet and Rock Ridge keep the
     * lower-case names with their dash. */
    argv[a++] = "-quiet";
    argv[a++] = "-output";
    argv[a++] = out;
    argv[a++] = "-volid";
    argv[a++] = "cidata";
    argv[a++] = "-joliet";
    argv[a++] = "-rock";
    for (int i = 0; i < HX_CI_N; i++) {
        /* network-config only when set: an empty one would tell cloud-init "no network". */
        if (i == HX_CI_NET && s->len[i] == 0)
            continue;
        snprintf(paths[i], sizeof(paths[i]), "%s/%s", tmp->dir, hx_ci_files[i]);
        int r = hx_ci_write_file(paths[i], s->data[i], s->len[i]);
        if (r < 0) {
            if (asprintf(why, "cannot write %s: %s", paths[i], strerror(-r)) < 0)
                *why = NULL;
            return -EIO;
        }
        argv[a++] = paths[i];
    }
    argv[a] = NULL;
    int r = hx_ci_run(argv, log, HX_CI_TOOL_TIMEOUT_MS, why);
    if (r < 0)
        return r;
    *iso = hx_ci_slurp(out, 64u << 20, iso_len);
    if (!*iso || *iso_len == 0) {
        if (asprintf(why, "%s made no image", tool) < 0)
            *why = NULL;
        return -EIO;
    }
    return 0;
}

/* ---- the volume ---- */

static char *hx_ci_volume_xml(const char *name, size_t bytes)
{
    hx_ci_autodoc xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    xmlNodePtr root = doc ? xmlNewNode(NULL, BAD_CAST "volume") : NULL;
    if (!root)
        return NULL;
    xmlDocSetRootElement(doc, root);
    char cap[32];
    snprintf(cap, sizeof(cap), "%zu", bytes);
    xmlNewTextChild(root, NULL, BAD_CAST "name", BAD_CAST name);
    xmlNodePtr c = xmlNewTextChild(root, NULL, BAD_CAST "capacity", BAD_CAST cap);
    xmlNodePtr t = xmlNewChild(root, NULL, BAD_CAST "target", NULL);
    xmlNodePtr f = t ? xmlNewChild(t, NULL, BAD_CAST "format", NULL) : NULL;
    if (!c || !f)
        return NULL;
    xmlSetProp(c, BAD_CAST "unit", BAD_CAST "bytes");
    xmlSetProp(f, BAD_CAST "type", BAD_CAST "raw");
    xmlChar *mem = NULL;
    int size = 0;
    xmlDocDumpMemory(doc, &mem, &size);
    char *out = mem ? strndup((const char *)mem, (size_t)size) : NULL;
    xmlFree(mem);
    return out;
}

/* Creates the volume and uploads the image through a libvirt stream (so a remote node gets it
 * too). On failure nothing is left. */
static int hx_ci_upload(virConnectPtr conn, virStoragePoolPtr pool, const char *name,
                        const char *data, size_t len, char **why)
{
    hx_autofree char *xml = hx_ci_volume_xml(name, len);
    hx_ci_autovol virStorageVolPtr vol = xml ? virStorageVolCreateXML(pool, xml, 0) : NULL;
    if (!vol) {
        if (asprintf(why, "cannot create volume %s/%s: %s", HX_CI_POOL, name,
                     xml ? virGetLastErrorMessage() : "out of memory") < 0)
            *why = NULL;
        return -EIO;
    }
    virStreamPtr st = virStreamNew(conn, 0);
    int ok = st && virStorageVolUpload(vol, st, 0, len, 0) == 0;
    size_t off = 0;
    while (ok && off < len) {
        size_t chunk = len - off > 256 * 1024 ? 256 * 1024 : len - off;
        int n = virStreamSend(st, data + off, chunk);
        if (n <= 0)
            ok = 0;
        else
            off += (size_t)n;
    }
    ok = ok && virStreamFinish(st) == 0;
    if (!ok) {
        if (asprintf(why, "cannot upload volume %s/%s: %s", HX_CI_POOL, name,
                     virGetLastErrorMessage()) < 0)
            *why = NULL;
        if (st)
            virStreamAbort(st);
    }
    if (st)
        virStreamFree(st);
    if (!ok) {
        virStorageVolDelete(vol, 0);
        return -EIO;
    }
    return 0;
}

static void hx_ci_volume_delete(virStoragePoolPtr pool, const char *vm, const char *name)
{
    hx_ci_autovol virStorageVolPtr v = pool ? virStorageVolLookupByName(pool, name) : NULL;
    if (!v)
        return;
    if (virStorageVolDelete(v, 0) < 0)
        hx_warn("VM %s: cannot delete volume %s/%s: %s", vm, HX_CI_POOL, name,
                virGetLastErrorMessage());
    else
        hx_info("VM %s: deleted volume %s/%s", vm, HX_CI_POOL, name);
}

/* ---- at start ---- */

static void hx_ci_state_clear(hx_ci_state *st)
{
    free(st->hash);
    st->hash = NULL;
}

int hx_ci_prepare(virConnectPtr conn, virDomainPtr dom, const char *vm, char **msg)
{
    /* SECURE: the definition goes back to libvirt, passwords (graphics) included. */
    hx_autofree char *xml =
        virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
    if (!xml)
        return hx_ci_fail(msg, -EIO, "VM %s: cannot read its configuration: %s", vm,
                          virGetLastErrorMessage());
    hx_ci_autodoc xmlDocPtr doc = hx_ci_parse(xml);
    if (!doc)
        return hx_ci_fail(msg, -EIO, "VM %s: cannot parse its configuration", vm);
    hx_autofree char *vol = NULL;
    if (asprintf(&vol, "%s-cidata.iso", virDomainGetName(dom)) < 0)
        return hx_ci_fail(msg, -ENOMEM, "VM %s: out of memory", vm);
    hx_ci_autoset hx_ci_set s = {0};
    if (hx_ci_from_xml(xml, &s) < 0)
        return hx_ci_fail(msg, -ENOMEM, "VM %s: out of memory", vm);
    __attribute__((cleanup(hx_ci_state_clear))) hx_ci_state st;
    hx_ci_state_read(doc, vol, &st);
    int have = s.len[HX_CI_USER] || s.len[HX_CI_META] || s.len[HX_CI_NET];
    hx_autofree char *why = NULL;

    if (!have) {
        if (!st.recorded && !st.cdrom)
            return 0;
        /* Detach: the definition first, then the volume (a failure leaves it all attached). */
        hx_autofree char *nx = hx_ci_edit(doc, vol, NULL, 0, &why);
        hx_ci_autodom virDomainPtr nd = nx ? virDomainDefineXML(conn, nx) : NULL;
        if (!nd)
            return hx_ci_fail(msg, -EIO, "VM %s: cannot detach its cloud-init cdrom: %s", vm,
                              nx ? virGetLastErrorMessage() : why);
        hx_info("VM %s: cloud-init cdrom detached", vm);
        hx_ci_autopool virStoragePoolPtr pool = virStoragePoolLookupByName(conn, HX_CI_POOL);
        if (st.vol_recorded)
            hx_ci_volume_delete(pool, vm, vol);
        return 0;
    }

    /* meta-data is required by NoCloud: a minimal one when none is set. */
    if (s.len[HX_CI_META] == 0) {
        char uuid[VIR_UUID_STRING_BUFLEN];
        free(s.data[HX_CI_META]);
        s.data[HX_CI_META] = NULL;
        if (virDomainGetUUIDString(dom, uuid) < 0 ||
            asprintf(&s.data[HX_CI_META], "instance-id: %s\nlocal-hostname: %s\n", uuid,
                     virDomainGetName(dom)) < 0) {
            s.data[HX_CI_META] = NULL;
            return hx_ci_fail(msg, -EIO, "VM %s: cannot make its meta-data", vm);
        }
        s.len[HX_CI_META] = strlen(s.data[HX_CI_META]);
    }
    char hash[65] = "";
    if (hx_ci_hash(&s, hash) < 0)
        return hx_ci_fail(msg, -EIO, "VM %s: cannot hash its cloud-init data", vm);
    hx_ci_autopool virStoragePoolPtr pool = virStoragePoolLookupByName(conn, HX_CI_POOL);
    if (!pool)
        return hx_ci_fail(msg, -EIO, "VM %s: cloud-init needs the storage pool %s: %s", vm,
                          HX_CI_POOL, virGetLastErrorMessage());
    /* A pool can miss a file someone removed behind libvirt's back: look again. */
    virStoragePoolRefresh(pool, 0);
    hx_ci_autovol virStorageVolPtr old = virStorageVolLookupByName(pool, vol);
    if (st.recorded && st.cdrom && st.vol_recorded && old && st.hash && !strcmp(st.hash, hash))
        return 0; /* built at an earlier start from the same data */
    if (old && !st.vol_recorded)
        return hx_ci_fail(msg, -EEXIST,
                          "VM %s: volume %s/%s exists and was not made by Horcrux for this VM", vm,
                          HX_CI_POOL, vol);

    hx_ci_autotmp hx_ci_tmp tmp = {0};
    hx_autofree char *iso = NULL;
    size_t iso_len = 0;
    if (hx_ci_build(&s, &tmp, &iso, &iso_len, &why) < 0)
        return hx_ci_fail(msg, -EIO, "VM %s: cannot build its cloud-init ISO: %s", vm,
                          why ? why : "unknown error");
    hx_autofree char *nx = hx_ci_edit(doc, vol, hash, 1, &why);
    if (!nx)
        return hx_ci_fail(msg, -EIO, "VM %s: cannot attach its cloud-init ISO: %s", vm,
                          why ? why : "unknown error");
    /* The image is replaced whole: libvirt volumes cannot be renamed, and the size may change. */
    if (old && virStorageVolDelete(old, 0) < 0)
        return hx_ci_fail(msg, -EIO, "VM %s: cannot replace volume %s/%s: %s", vm, HX_CI_POOL, vol,
                          virGetLastErrorMessage());
    if (hx_ci_upload(conn, pool, vol, iso, iso_len, &why) < 0)
        return hx_ci_fail(msg, -EIO, "VM %s: %s", vm, why ? why : "cannot upload its ISO");
    hx_ci_autodom virDomainPtr nd = virDomainDefineXML(conn, nx);
    if (!nd) {
        int r = hx_ci_fail(msg, -EIO, "VM %s: cannot attach its cloud-init ISO: %s", vm,
                           virGetLastErrorMessage());
        hx_ci_volume_delete(pool, vm, vol);
        return r;
    }
    hx_info("VM %s: cloud-init ISO %s/%s built (%zu bytes) and attached", vm, HX_CI_POOL, vol,
            iso_len);
    return 0;
}
