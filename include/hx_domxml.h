/* hx_domxml: libvirt domain XML -> Horcrux config.json (see docs/config-json.md). */
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

#endif /* HX_DOMXML_H */
