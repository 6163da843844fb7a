/* xmltext: small libxml2 helpers shared by the backend modules that read libvirt's XML
 * (node_info.c, pools_*.c). Owns no state; no locking (each call works on the document it is given,
 * which the caller must not modify meanwhile). */
#pragma once

#include <libxml/tree.h>

/* Text of the first node xpath selects in doc (an element's content or an attribute's value),
 * malloc'd, or NULL. */
char *hx_xml_text(xmlDocPtr doc, const char *xpath);
