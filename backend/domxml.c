/* Converts libvirt domain XML to Horcrux's config.json (schema: docs/config-json.md): parses the
   document safely, checks its root and assembles the sections that domxml_read_*.c read. */
#include "hx_domxml.h"
#include "domxml_priv.h"

#include <limits.h>
#include <string.h>

/* SAX hook for "<!DOCTYPE": stops the parser before it reads any entity declaration. */
static void on_doctype(void *ctx, const xmlChar *name, const xmlChar *ext, const xmlChar *sys)
{
    (void)name, (void)ext, (void)sys;
    xmlParserCtxt *pctx = ctx;
    pctx->_private = pctx; /* any non-NULL marker */
    xmlStopParser(pctx);
}

static xmlDoc *parse(hx_dxr *c, const char *xml)
{
    size_t len = strlen(xml);
    if (len > INT_MAX) {
        hx_dxr_fail(c, "document is too large");
        return NULL;
    }
    AUTO_PARSER *pctx = xmlNewParserCtxt();
    if (!pctx)
        return hx_dxr_oom(c);
    /* The XML can come from any libvirtd: no network, no DTD loading, no XML_PARSE_NOENT (so no
       entity substitution), and since libvirt never writes a DOCTYPE, parsing stops at one, before
       any entity is declared. */
    pctx->sax->internalSubset = on_doctype;
    xmlDoc *doc = xmlCtxtReadMemory(pctx, xml, (int)len, "domain.xml", NULL,
                                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (pctx->_private) {
        xmlFreeDoc(doc);
        hx_dxr_fail(c, "a DOCTYPE is not allowed");
        return NULL;
    }
    if (!doc) {
        const xmlError *e = xmlCtxtGetLastError(pctx);
        const char *m = e && e->message ? e->message : "parse error";
        int mlen = (int)strcspn(m, "\n");
        hx_dxr_fail(c, "not well-formed XML (line %d: %.*s)", e ? e->line : 0, mlen, m);
        return NULL;
    }
    return doc;
}

static json_t *convert(hx_dxr *c, const char *xml, int autostart)
{
    if (!xml) {
        hx_dxr_fail(c, "no document");
        return NULL;
    }
    AUTO_DOC *doc = parse(c, xml);
    if (!doc)
        return NULL;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || !xmlStrEqual(root->name, BAD_CAST "domain")) {
        hx_dxr_fail(c, "root element is <%s>, not <domain>", root ? (const char *)root->name : "");
        return NULL;
    }
    if (root->ns) { /* libvirt's <domain> is in no namespace */
        hx_dxr_fail(c, "root element <domain> is in namespace %s", (const char *)root->ns->href);
        return NULL;
    }
    AUTO_XPCTX *xp = xmlXPathNewContext(doc);
    if (!xp || xmlXPathRegisterNs(xp, BAD_CAST "hx", BAD_CAST HX_DOMXML_NS))
        return hx_dxr_oom(c);
    c->xp = xp;

    AUTO_STR *name = hx_dxr_str(c, root, "name");
    if (!name || !*name) {
        hx_dxr_fail(c, "no <name>");
        return NULL;
    }
    c->name = name;

    AUTO_STR *uuid = hx_dxr_str(c, root, "uuid");
    AUTO_STR *desc = hx_dxr_str(c, root, "description");
    AUTO_STR *type = hx_dxr_str(c, root, "@type");
    AUTO_STR *machine = hx_dxr_str(c, root, "os/type/@machine");
    AUTO_STR *arch = hx_dxr_str(c, root, "os/type/@arch");

    /* Without <vcpu> libvirt defaults to one vCPU; current= defaults to the maximum. */
    long long max_vcpus = 1, vcpus;
    hx_dxr_int(c, root, "vcpu", "vcpu count", &max_vcpus);
    if (!hx_dxr_int(c, root, "vcpu/@current", "current vcpu count", &vcpus))
        vcpus = max_vcpus;

    /* <currentMemory> defaults to <memory> (libvirt always writes both). */
    int64_t max_mem = hx_dxr_read_mib(c, root, "memory");
    int64_t mem = hx_dxr_read_mib(c, root, "currentMemory");
    if (mem < 0)
        mem = max_mem;
    AUTO_JSON *mem_j = mem >= 0 ? json_integer(mem) : NULL;
    AUTO_JSON *max_mem_j = max_mem >= 0 ? json_integer(max_mem) : NULL;

    const char *firmware = hx_dxr_read_firmware(c, root);
    AUTO_JSON *disks = hx_dxr_read_disks(c, root);
    AUTO_JSON *nics = hx_dxr_read_nics(c, root);
    AUTO_JSON *graphics = hx_dxr_read_graphics(c, root);
    AUTO_JSON *boot = c->msg ? NULL : hx_dxr_read_boot(c, root);
    xmlNode *vm = hx_dxr_node(c, root, "metadata/hx:vm");
    AUTO_JSON *tags = hx_dxr_read_tags(c, vm);
    bool protect = hx_dxr_read_flag(c, vm, "protected");
    bool template = hx_dxr_read_flag(c, vm, "template");
    if (c->msg)
        return NULL;

    json_error_t jerr;
    json_t *config = json_pack_ex(
        &jerr, 0,
        "{s:s, s:s?, s:s, s:s?, s:I, s:I, s:O?, s:O?, s:s?, s:s?, s:s, s:O, s:b, s:O, s:O, s:O,"
        " s:O, s:b, s:b}",
        "name", name, "uuid", uuid, "description", desc ? desc : "", "type", type, "vcpus",
        (json_int_t)vcpus, "max_vcpus", (json_int_t)max_vcpus, "memory_mib", mem_j,
        "max_memory_mib", max_mem_j, "machine", machine, "arch", arch, "firmware", firmware, "boot",
        boot, "autostart", autostart != 0, "disks", disks, "nics", nics, "graphics", graphics,
        "tags", tags, "protected", protect, "template", template);
    if (!config)
        hx_dxr_fail(c, "cannot build config.json (%s)", jerr.text);
    return config;
}

xmlDoc *hx_domxml_parse(const char *xml, char **err)
{
    hx_dxr c = {0};
    xmlDoc *doc = xml ? parse(&c, xml) : NULL;
    if (!xml)
        hx_dxr_fail(&c, "no document");
    if (doc)
        free(c.msg);
    else
        *err = c.msg;
    return doc;
}

json_t *hx_domxml_to_config(const char *xml, int autostart, hx_domxml_size_fn size_fn, void *opaque,
                            char **err)
{
    hx_dxr c = {.size_fn = size_fn, .opaque = opaque};
    json_t *config = convert(&c, xml, autostart);
    if (config) /* a failure after a value was built cannot happen, but never leak one */
        free(c.msg);
    else if (err)
        *err = c.msg;
    else
        free(c.msg);
    return config;
}
