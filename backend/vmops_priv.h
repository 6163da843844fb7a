/* The vmops module's own declarations, shared between its files (backend/vmops_*.c), and the
 * helpers it lends to the other backend modules that change VMs (snapshots, clones).
 *
 * Locking: hx_vmctx_open takes the VM's operation lock (hx_vm_trylock, hx_vmops.h) and
 * hx_vmctx_clear releases it; the lock table's mutex is held only inside those two calls, never
 * across a libvirt call. No helper here takes any other lock.
 */
#pragma once

#include "hx_vmops.h"
#include "hx_util.h"
#include "hx_log.h"
#include "node.h"

#include <jansson.h>
#include <libxml/tree.h>
#include <string.h>

/* ---- for the modules that change VMs (vmops, snapshots, clones) ---- */

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
/* Deletes one volume of VM vm (pool/name name it in the log); a failure is logged at fail_level. */
void hx_vm_volume_delete(virStorageVolPtr vol, const char *vm, const char *pool, const char *name,
                         hx_log_level fail_level);
/* Adds vols to the Horcrux volume metadata of a domain XML; the new XML or NULL. */
char *hx_volumes_record(const char *xml, json_t *vols);
/* Whether a config.json document says "template": true. */
int hx_vm_is_template(const char *config_json);

/* An XML document parsed from xml (what names it in libxml2's errors), without network access
 * or error output; NULL when xml is NULL or not well-formed. */
xmlDocPtr hx_vm_xml_read(const char *xml, const char *what);
/* A new document whose root element is root_name with one child <name>name</name>; *root is
 * set to that root. NULL when out of memory. */
xmlDocPtr hx_vm_xml_new(const char *root_name, const char *name, xmlNodePtr *root);
/* The <metadata> element of a domain's root element, added when it has none. */
xmlNodePtr hx_vm_xml_metadata(xmlNodePtr root);
/* Parses a JSON document that must be an object (duplicate keys refused) into *out: 0, or
 * -EINVAL with *msg "<what> <vm>: line L column C: ..." or "<what> <vm>: <not_object>". */
int hx_vm_json_object(const char *doc, size_t len, const char *what, const char *vm,
                      const char *not_object, json_t **out, char **msg);
/* The node on which a VM of that name exists, copied into node_out; NULL when none has one. */
const char *hx_vm_name_taken(hx_cluster *cl, const char *name, char *node_out, size_t size);

/* ---- between the files of vmops only ---- */

#define hx_vm_autoctx __attribute__((cleanup(hx_vmctx_clear)))

/* Whether a and b are both set and equal. */
static inline int hx_vm_streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* Creates the volumes of vols; on failure deletes those it made and returns -errno. */
int hx_volumes_create(virConnectPtr conn, json_t *vols, const char *vm, char **msg);
/* The volumes recorded in a domain XML's Horcrux volume metadata, as a JSON array. */
json_t *hx_volumes_recorded(const char *xml);
/* The name of a VM on the node whose disks hang on the template's, into out; 0 when none. */
int hx_vm_linked_clone(hx_cluster *cl, const char *node, const hx_vm_view *tmpl, char *out,
                       size_t size);
