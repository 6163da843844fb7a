/* hx_domxml: libvirt domain XML <-> Horcrux config.json (schema and rules: docs/config-json.md).
 *
 * Owns the translation both ways and nothing else: reading (backend/domxml.c and its
 * domxml_xpath.c, domxml_read_*.c, domxml_dump.c), writing a config.json back into the inactive
 * XML (backend/domxml_apply.c and its section files, see backend/domxml_apply_priv.h), the XML of
 * a new VM (domxml_new.c), one device's XML (domxml_device.c) and VM name checks
 * (domxml_name.c). It never talks to libvirt: callers pass the XML in, and what the node has
 * through the callbacks below.
 *
 * Callers: backend modules (node, vmops, clone). Locking: none; every call works on its own
 * copies and may run in any thread at the same time as others, once the main thread has called
 * xmlInitParser(). The callbacks are called from the calling thread. */
#ifndef HX_DOMXML_H
#define HX_DOMXML_H

#include <jansson.h>
#include <stdint.h>

/* Namespace URI of Horcrux's own element in the domain's <metadata> (<horcrux:vm>). */
#define HX_DOMXML_NS "https://horcrux.dev/xmlns/vm/1"

/* Size in bytes of the disk image at `source` (virtual capacity), or -1 when unknown.
   `source` is the disk's "source" string as it appears in config.json (a path, a
   "pool/volume" pair or a network name); it is never NULL. */
typedef int64_t (*hx_domxml_size_fn)(const char *source, void *opaque);

/* Converts a libvirt domain XML document (as from virDomainGetXMLDesc with
   VIR_DOMAIN_XML_INACTIVE, or the live XML) to the config.json object. autostart is not in the
   XML: the caller passes it. size_fn may be NULL (then size_bytes is null). Returns a new
   reference, or NULL with *err set to a malloc'd sentence naming the domain.
   The document is parsed without network access, DTDs or entity expansion; a document with a
   DOCTYPE is rejected. libxml2 must have been initialised (xmlInitParser()) once by the main
   thread before this is called from several threads. */
json_t *hx_domxml_to_config(const char *xml, int autostart, hx_domxml_size_fn size_fn, void *opaque,
                            char **err);

/* Dumps a config object as the bytes of config.json: indented by 2, keys in schema order,
   trailing newline. malloc'd. Keys unknown to the schema follow the known ones in their
   original order. Returns NULL when config is not an object or memory runs out. */
char *hx_domxml_config_dump(const json_t *config);

/* ---- writing config.json (backend/domxml_apply.c; rules in docs/config-json.md) ----------- */

/* What the node has, for reference checks. Each callback returns 1 (exists), 0 (does not), or
   <0 (cannot tell: an error "cannot check"). Any callback may be NULL: then that reference is
   not checked. */
typedef struct hx_domxml_env {
    int (*network_exists)(const char *name, void *opaque);
    int (*bridge_exists)(const char *name, void *opaque);
    int (*pool_exists)(const char *pool, void *opaque);
    /* Virtual size of pool/vol in bytes, -1 when the volume does not exist, <-1 on error. */
    int64_t (*volume_size)(const char *pool, const char *vol, void *opaque);
    void *opaque;
} hx_domxml_env;

/* Longest VM name hx_domxml_check_name accepts, in bytes. */
#define HX_DOMXML_NAME_MAX 200

/* Validates `config` (a parsed config.json object) against the current inactive domain XML
   `xml` and produces the new inactive XML in *out_xml (malloc'd). Everything config.json does
   not model is kept untouched; when nothing modelled changes, *out_xml is a byte-identical copy
   of `xml`. *new_volumes receives a JSON array (possibly empty) of volumes to create before
   defining: objects {"pool", "name", "size_bytes", "format"}. env may be NULL (no reference
   checks).
   Returns 0; -EINVAL with *err a malloc'd one-sentence message that starts with the offending
   field ("disks[1].bus: must be one of ..."); or -EIO for internal failures (unparseable old
   XML, out of memory) with *err set too. err may be NULL. On failure *out_xml and *new_volumes
   are NULL. */
int hx_domxml_apply(const char *xml, const json_t *config, const hx_domxml_env *env, char **out_xml,
                    json_t **new_volumes, char **err);

/* A minimal inactive domain XML for a new VM (see docs/config-json.md, "New VMs"): domain type
   `type` (e.g. "kvm"; NULL means "kvm"), 1 vCPU, 512 MiB, arch x86_64, hvm without a machine
   (libvirt picks its default), boot hd, no disks, NICs or graphics, on_poweroff destroy,
   on_reboot restart, on_crash destroy. The name must already be valid (hx_domxml_check_name).
   malloc'd, or NULL with *err malloc'd. */
char *hx_domxml_new(const char *name, const char *type, char **err);

/* The XML of one device element of a full domain XML, for live attach/detach: which is "disk"
   (key: target dev, e.g. "vda") or "interface" (key: MAC address, case-insensitive). malloc'd,
   or NULL when absent or the document cannot be parsed. */
char *hx_domxml_device(const char *xml, const char *which, const char *key);

/* Checks a VM name: 1..HX_DOMXML_NAME_MAX bytes of valid UTF-8, no '/', no control characters
   (U+0000..U+001F, U+007F), not starting with '.' (which also excludes "." and ".."). Returns 0,
   or -EINVAL with *err a malloc'd message (err may be NULL). */
int hx_domxml_check_name(const char *name, char **err);

#endif /* HX_DOMXML_H */
