/* Cloud-init: the ISO's volume in the pool HX_CI_POOL, created and uploaded through a libvirt
 * stream, or deleted. */
#include "auto.h"
#include "cloudinit_priv.h"
#include "vmops_priv.h"
#include "hx_log.h"
#include "hx_util.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <string.h>

/* ---- the volume ---- */

static char *hx_ci_volume_xml(const char *name, size_t bytes)
{
    hx_autoxml xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
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
    char *out = hx_ci_dump(doc);
    return out;
}

/* Creates the volume and uploads the image through a libvirt stream (so a remote node gets it
 * too). On failure nothing is left. */
int hx_ci_upload(virConnectPtr conn, virStoragePoolPtr pool, const char *name, const char *data,
                 size_t len, char **why)
{
    hx_autofree char *xml = hx_ci_volume_xml(name, len);
    hx_autovol virStorageVolPtr vol = xml ? virStorageVolCreateXML(pool, xml, 0) : NULL;
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

void hx_ci_volume_delete(virStoragePoolPtr pool, const char *vm, const char *name)
{
    hx_autovol virStorageVolPtr v = pool ? virStorageVolLookupByName(pool, name) : NULL;
    if (!v)
        return;
    hx_vm_volume_delete(v, vm, HX_CI_POOL, name, HX_LOG_WARN);
}
