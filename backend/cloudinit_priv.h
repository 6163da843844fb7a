/* Shared between the files of the cloudinit module only (see hx_cloudinit.h): the three files'
 * contents, the domain XML helpers, the cdrom edit, the ISO build and the volume upload that
 * hx_ci_prepare (cloudinit_prepare.c) strings together. Nothing here takes a lock: the callers
 * of hx_ci_store and hx_ci_prepare hold the VM's operation lock. */
#pragma once

#include "hx_cloudinit.h"

#include <libvirt/libvirt.h>
#include <libxml/tree.h>
#include <stddef.h>

/* Indexes into hx_ci_files. */
enum { HX_CI_USER, HX_CI_META, HX_CI_NET, HX_CI_N };

/* ---- the documents (cloudinit_docs.c) ---- */

/* The three files' contents. */
typedef struct hx_ci_set {
    char *data[HX_CI_N];
    size_t len[HX_CI_N];
} hx_ci_set;

void hx_ci_set_clear(hx_ci_set *s);
#define hx_ci_autoset __attribute__((cleanup(hx_ci_set_clear)))

/* Sets *msg to the formatted sentence (when msg is not NULL) and returns err. */

/* A domain XML parsed (NULL for NULL or text that does not parse). */
xmlDocPtr hx_ci_parse(const char *xml);
/* The first element child of parent named name, in namespace ns when ns is not NULL. */
xmlNodePtr hx_ci_child(xmlNodePtr parent, const char *ns, const char *name);
/* doc as text, malloc'd, or NULL. */
char *hx_ci_dump(xmlDocPtr doc);
/* Fills s from a domain XML's metadata (every file empty when it has none). 0, -ENOMEM. */
int hx_ci_from_xml(const char *xml, hx_ci_set *s);

/* ---- what the last start attached, and the edit of the definition (cloudinit_cdrom.c) ---- */

typedef struct hx_ci_state {
    char *hash;       /* recorded hash of the files, NULL when nothing is recorded */
    int recorded;     /* the ISO record exists */
    int vol_recorded; /* the volume is in Horcrux's volume list */
    int cdrom;        /* the domain has our cdrom */
} hx_ci_state;

void hx_ci_state_read(xmlDocPtr doc, const char *vol, hx_ci_state *st);
void hx_ci_state_clear(hx_ci_state *st);
/* The domain XML with our cdrom, volume entry and ISO record added (attach) or removed. */
char *hx_ci_edit(xmlDocPtr doc, const char *vol, const char *hash, int attach, char **why);

/* ---- building the ISO (cloudinit_iso.c) ---- */

/* A temporary directory and the files in it, removed when it leaves scope. */
typedef struct hx_ci_tmp {
    char dir[256];
} hx_ci_tmp;

void hx_ci_tmp_clear(hx_ci_tmp *t);
#define hx_ci_autotmp __attribute__((cleanup(hx_ci_tmp_clear)))

/* SHA-256 (hex) of the files as they go on the ISO: name, length, bytes of each. */
int hx_ci_hash(const hx_ci_set *s, char hex[65]);
/* Builds the NoCloud ISO of s in tmp; the image's bytes in *iso. */
int hx_ci_build(const hx_ci_set *s, hx_ci_tmp *tmp, char **iso, size_t *iso_len, char **why);

/* ---- the volume in HX_CI_POOL (cloudinit_volume.c) ---- */

/* Creates the volume and uploads the image through a libvirt stream (so a remote node gets it
 * too). On failure nothing is left. */
int hx_ci_upload(virConnectPtr conn, virStoragePoolPtr pool, const char *name, const char *data,
                 size_t len, char **why);
void hx_ci_volume_delete(virStoragePoolPtr pool, const char *vm, const char *name);
