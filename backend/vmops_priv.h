/* Helpers of backend/vmops.c shared with the other modules that change VMs (clones). */
#pragma once

#include "node.h"

#include <jansson.h>
#include <libxml/tree.h>

/* Volumes Horcrux created for a VM, remembered in the domain's own metadata so that rmdir
 * deletes exactly those and never a disk someone attached by hand. */
#define HX_VOLS_NS "https://horcrux.dev/xmlns/volumes/1"
#define HX_VOLS_PREFIX "hxvol"

/* What a change to one VM holds while it runs: the node, a connection reference, the domain
 * handle, the cached view, and the VM's operation lock (uuid, released by hx_vmctx_clear). */
typedef struct hx_vmctx {
    hx_node *n;
    virConnectPtr conn;
    virDomainPtr dom;
    hx_vm_view view;
    char uuid[HX_UUID_LEN];
} hx_vmctx;
/* Fills c for VM vm on node (checked against uuid): -ENOENT, -EHOSTDOWN, -EBUSY (locked),
 * libvirt's errno; *msg names the VM. Clear it with hx_vmctx_clear even on failure. */
int hx_vmctx_open(hx_cluster *cl, const char *node, const char *vm, const char *uuid, hx_vmctx *c,
                  char **msg);
void hx_vmctx_clear(hx_vmctx *c);

/* Sets *msg to a formatted sentence and returns err (negative errno). */
int hx_fail(char **msg, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The errno for libvirt's last error. */
int hx_virt_errno(void);
/* Brings the node's cache up to date for this VM before the caller returns. */
void hx_vm_refresh(hx_node *n, const char *name, const char *uuid);
/* The XML of node (or of the whole document when node is NULL), malloc'd. */
char *hx_xml_dump(xmlDocPtr doc, xmlNodePtr node);
/* Storage volume XML (libxml2): capacity in bytes, target format when given, allocation 0 when
 * sparse, and a backing store when backing is given. malloc'd or NULL. */
char *hx_volume_xml(const char *name, unsigned long long bytes, const char *format, int sparse,
                    const char *backing, const char *backing_format);
/* Deletes the volumes of vols ([{"pool","name"}]); a volume already gone is fine. */
void hx_volumes_delete(virConnectPtr conn, json_t *vols, const char *vm);
/* Adds vols to the Horcrux volume metadata of a domain XML; the new XML or NULL. */
char *hx_volumes_record(const char *xml, json_t *vols);
/* Whether a config.json document says "template": true. */
int hx_vm_is_template(const char *config_json);
