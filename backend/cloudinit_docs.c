/* Cloud-init NoCloud documents (see hx_cloudinit.h): the three files kept base64-encoded in the
 * domain's persistent metadata, read from a domain XML and stored back with their size checked;
 * and the small domain XML helpers the other files of the module share. */
#include "auto.h"
#include "cloudinit_priv.h"
#include "hx_log.h"
#include "hx_util.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *const hx_ci_files[] = {"user-data", "meta-data", "network-config", NULL};

#define HX_CI_PREFIX "hxci"

void hx_ci_set_clear(hx_ci_set *s)
{
    for (int i = 0; i < HX_CI_N; i++)
        free(s->data[i]);
    memset(s, 0, sizeof(*s));
}

static int hx_ci_index(const char *name)
{
    for (int i = 0; hx_ci_files[i]; i++)
        if (strcmp(hx_ci_files[i], name) == 0)
            return i;
    return -1;
}

int hx_ci_is_file(const char *name)
{
    return hx_ci_index(name) >= 0;
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

xmlDocPtr hx_ci_parse(const char *xml)
{
    return xml ? xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
                               XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
               : NULL;
}

/* The first element child of parent named name, in namespace ns when ns is not NULL. */
xmlNodePtr hx_ci_child(xmlNodePtr parent, const char *ns, const char *name)
{
    for (xmlNodePtr c = parent ? parent->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST name) &&
            (!ns || (c->ns && xmlStrEqual(c->ns->href, BAD_CAST ns))))
            return c;
    return NULL;
}

char *hx_ci_dump(xmlDocPtr doc)
{
    xmlChar *mem = NULL;
    int size = 0;
    xmlDocDumpMemory(doc, &mem, &size);
    char *out = mem ? strndup((const char *)mem, (size_t)size) : NULL;
    xmlFree(mem);
    return out;
}

/* Fills s from a <cloudinit> element (children matched by name: libvirt stores our element with
 * its namespace on the element itself only). */
static int hx_ci_from_element(xmlNodePtr ci, hx_ci_set *s)
{
    for (int i = 0; i < HX_CI_N; i++) {
        xmlNodePtr f = hx_ci_child(ci, NULL, hx_ci_files[i]);
        hx_autoxmlstr xmlChar *txt = f ? xmlNodeGetContent(f) : NULL;
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

int hx_ci_from_xml(const char *xml, hx_ci_set *s)
{
    hx_autoxml xmlDocPtr doc = hx_ci_parse(xml);
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
        return hx_fail(msg, -EINVAL, "VM %s: no cloud-init file %s", vm, file);
    if (len > HX_CI_MAX_BYTES)
        return hx_fail(msg, -EFBIG, "cloudinit/%s of VM %s: %zu bytes, at most %d", file, vm, len,
                       HX_CI_MAX_BYTES);
    /* The current element from libvirt, not the cache: the other two files are kept as they are. */
    hx_autofree char *cur =
        virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, HX_CI_NS, VIR_DOMAIN_AFFECT_CONFIG);
    if (!cur && virGetLastErrorCode() != VIR_ERR_NO_DOMAIN_METADATA)
        return hx_fail(msg, -EIO, "VM %s: cannot read its cloud-init metadata: %s", vm,
                       virGetLastErrorMessage());
    hx_ci_autoset hx_ci_set s = {0};
    hx_autoxml xmlDocPtr cd = hx_ci_parse(cur);
    if (hx_ci_from_element(cd ? xmlDocGetRootElement(cd) : NULL, &s) < 0)
        return hx_fail(msg, -ENOMEM, "VM %s: out of memory", vm);
    free(s.data[i]);
    s.data[i] = malloc(len + 1);
    if (!s.data[i])
        return hx_fail(msg, -ENOMEM, "VM %s: out of memory", vm);
    memcpy(s.data[i], data, len);
    s.data[i][len] = '\0';
    s.len[i] = len;

    hx_autoxml xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    xmlNodePtr root = doc ? xmlNewNode(NULL, BAD_CAST "cloudinit") : NULL;
    if (!root)
        return hx_fail(msg, -ENOMEM, "VM %s: out of memory", vm);
    xmlDocSetRootElement(doc, root);
    int any = 0;
    for (int j = 0; j < HX_CI_N; j++) {
        if (s.len[j] == 0)
            continue;
        hx_autofree char *b = hx_ci_b64_encode(s.data[j], s.len[j]);
        if (!b || !xmlNewTextChild(root, NULL, BAD_CAST hx_ci_files[j], BAD_CAST b))
            return hx_fail(msg, -ENOMEM, "VM %s: out of memory", vm);
        any = 1;
    }
    xmlChar *mem = NULL;
    if (any) {
        xmlBufferPtr buf = xmlBufferCreate();
        if (buf && xmlNodeDump(buf, doc, root, 0, 0) >= 0)
            mem = xmlStrdup(xmlBufferContent(buf));
        xmlBufferFree(buf);
        if (!mem)
            return hx_fail(msg, -ENOMEM, "VM %s: out of memory", vm);
    }
    hx_autoxmlstr xmlChar *el = mem;
    /* A NULL element removes ours: a VM with no cloud-init data has no trace of it. Only the
     * persistent definition changes; a running VM sees the data at its next start. */
    if (virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, (const char *)el,
                             el ? HX_CI_PREFIX : NULL, HX_CI_NS, VIR_DOMAIN_AFFECT_CONFIG) < 0)
        return hx_fail(msg, -EIO, "VM %s: cannot store cloudinit/%s: %s", vm, file,
                       virGetLastErrorMessage());
    hx_info("VM %s: cloudinit/%s %s (%zu bytes)", vm, file, len ? "set" : "cleared", len);
    return 0;
}
