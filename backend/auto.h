/* Scoped cleanup for the libvirt, jansson and libxml2 objects the backend modules hold:
 * `hx_autodom virDomainPtr d = ...;` frees d when it leaves scope. */
#pragma once

#include "node.h"

#include <jansson.h>
#include <libvirt/libvirt.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

/* Defines fn(type *p): releases *p with release() unless it is NULL. */
#define HX_AUTO_FN(fn, type, release)                                                              \
    static inline void fn(type *p)                                                                 \
    {                                                                                              \
        if (*p)                                                                                    \
            release(*p);                                                                           \
    }

HX_AUTO_FN(hx_connp, virConnectPtr, virConnectClose)
HX_AUTO_FN(hx_domp, virDomainPtr, virDomainFree)
HX_AUTO_FN(hx_snapp, virDomainSnapshotPtr, virDomainSnapshotFree)
HX_AUTO_FN(hx_poolp, virStoragePoolPtr, virStoragePoolFree)
HX_AUTO_FN(hx_volp, virStorageVolPtr, virStorageVolFree)
HX_AUTO_FN(hx_streamp, virStreamPtr, virStreamFree)
HX_AUTO_FN(hx_nodep, hx_node *, hx_node_unref)
HX_AUTO_FN(hx_jsonp, json_t *, json_decref)
HX_AUTO_FN(hx_xmldocp, xmlDocPtr, xmlFreeDoc)
HX_AUTO_FN(hx_xpctxp, xmlXPathContextPtr, xmlXPathFreeContext)
HX_AUTO_FN(hx_xpobjp, xmlXPathObjectPtr, xmlXPathFreeObject)
HX_AUTO_FN(hx_xmlfreep, xmlChar *, xmlFree)

#define hx_autoconn __attribute__((cleanup(hx_connp)))
#define hx_autodom __attribute__((cleanup(hx_domp)))
#define hx_autosnap __attribute__((cleanup(hx_snapp)))
#define hx_autopool __attribute__((cleanup(hx_poolp)))
#define hx_autovol __attribute__((cleanup(hx_volp)))
#define hx_autostream __attribute__((cleanup(hx_streamp)))
#define hx_autonode __attribute__((cleanup(hx_nodep)))
#define hx_autojson __attribute__((cleanup(hx_jsonp)))
#define hx_autoxml __attribute__((cleanup(hx_xmldocp)))
#define hx_autoxpctx __attribute__((cleanup(hx_xpctxp)))
#define hx_autoxpobj __attribute__((cleanup(hx_xpobjp)))
#define hx_autoxmlstr __attribute__((cleanup(hx_xmlfreep)))
