/* Scoped cleanup for the libvirt, jansson and libxml2 objects the backend modules hold:
 * `hx_autodom virDomainPtr d = ...;` frees d when it leaves scope. */
#pragma once

#include "node.h"

#include <jansson.h>
#include <libvirt/libvirt.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

static inline void hx_connp(virConnectPtr *c)
{
    if (*c)
        virConnectClose(*c);
}
static inline void hx_domp(virDomainPtr *d)
{
    if (*d)
        virDomainFree(*d);
}
static inline void hx_snapp(virDomainSnapshotPtr *s)
{
    if (*s)
        virDomainSnapshotFree(*s);
}
static inline void hx_poolp(virStoragePoolPtr *p)
{
    if (*p)
        virStoragePoolFree(*p);
}
static inline void hx_volp(virStorageVolPtr *v)
{
    if (*v)
        virStorageVolFree(*v);
}
static inline void hx_streamp(virStreamPtr *s)
{
    if (*s)
        virStreamFree(*s);
}
static inline void hx_nodep(hx_node **n)
{
    if (*n)
        hx_node_unref(*n);
}
static inline void hx_jsonp(json_t **j)
{
    json_decref(*j);
}
static inline void hx_xmldocp(xmlDocPtr *d)
{
    if (*d)
        xmlFreeDoc(*d);
}
static inline void hx_xpctxp(xmlXPathContextPtr *c)
{
    if (*c)
        xmlXPathFreeContext(*c);
}
static inline void hx_xpobjp(xmlXPathObjectPtr *o)
{
    if (*o)
        xmlXPathFreeObject(*o);
}
static inline void hx_xmlfreep(xmlChar **s)
{
    if (*s)
        xmlFree(*s);
}

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
