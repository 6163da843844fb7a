/* Cloud-init: what the last start attached (the cdrom, Horcrux's volume entry and the ISO record
 * in the domain's metadata), and the edit of the domain XML that adds or removes them. */
#include "auto.h"
#include "cloudinit_priv.h"
#include "hx_vmops.h"

#include <errno.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <string.h>

/* ---- what the last start attached ---- */

static int hx_ci_is_ours(xmlNodePtr disk, const char *vol)
{
    if (disk->type != XML_ELEMENT_NODE || !xmlStrEqual(disk->name, BAD_CAST "disk"))
        return 0;
    hx_autoxmlstr xmlChar *dev = xmlGetProp(disk, BAD_CAST "device");
    xmlNodePtr src = hx_ci_child(disk, NULL, "source");
    hx_autoxmlstr xmlChar *pool = src ? xmlGetProp(src, BAD_CAST "pool") : NULL;
    hx_autoxmlstr xmlChar *v = src ? xmlGetProp(src, BAD_CAST "volume") : NULL;
    return dev && xmlStrEqual(dev, BAD_CAST "cdrom") && pool &&
           xmlStrEqual(pool, BAD_CAST HX_CI_POOL) && v && xmlStrEqual(v, BAD_CAST vol);
}

static xmlNodePtr hx_ci_vol_entry(xmlNodePtr list, const char *vol)
{
    for (xmlNodePtr c = list ? list->children : NULL; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || !xmlStrEqual(c->name, BAD_CAST "volume"))
            continue;
        hx_autoxmlstr xmlChar *pool = xmlGetProp(c, BAD_CAST "pool");
        hx_autoxmlstr xmlChar *name = xmlGetProp(c, BAD_CAST "name");
        if (pool && name && xmlStrEqual(pool, BAD_CAST HX_CI_POOL) &&
            xmlStrEqual(name, BAD_CAST vol))
            return c;
    }
    return NULL;
}

void hx_ci_state_read(xmlDocPtr doc, const char *vol, hx_ci_state *st)
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
    hx_autoxmlstr xmlChar *machine = type ? xmlGetProp(type, BAD_CAST "machine") : NULL;
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
            hx_autoxmlstr xmlChar *td = t ? xmlGetProp(t, BAD_CAST "dev") : NULL;
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
char *hx_ci_edit(xmlDocPtr doc, const char *vol, const char *hash, int attach, char **why)
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
    char *out = hx_ci_dump(doc);
    if (!out)
        *why = strdup("out of memory");
    return out;
}

void hx_ci_state_clear(hx_ci_state *st)
{
    free(st->hash);
    st->hash = NULL;
}
