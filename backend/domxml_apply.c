/* Applies a written config.json to a domain's inactive XML (rules: docs/config-json.md,
   "Writing config.json"): runs the section files over a parsed copy of the XML, then dumps it
   (or copies the input byte for byte when nothing modelled changed). */
#include "domxml_apply_priv.h"

#include <errno.h>
#include <string.h>

typedef int (*section_fn)(hx_dxa *a, const json_t *config);

static int top_keys(hx_dxa *a, const json_t *config)
{
    return hx_dxa_unknown_keys(a, "", config, hx_domxml_top_keys);
}

/* In this order: the boot order names the disks and NICs as they will be. */
static const section_fn sections[] = {
    top_keys,           hx_dxa_check_readonly, hx_dxa_apply_description, hx_dxa_apply_memory,
    hx_dxa_apply_vcpus, hx_dxa_apply_machine,  hx_dxa_apply_firmware,    hx_dxa_apply_disks,
    hx_dxa_apply_nics,  hx_dxa_apply_graphics, hx_dxa_apply_boot,        hx_dxa_apply_metadata,
};

static int run(hx_dxa *a, const json_t *config)
{
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
        if (sections[i](a, config))
            return a->rc ? a->rc : -EIO;
    return 0;
}

static const hx_domxml_env no_env;

int hx_domxml_apply(const char *xml, const json_t *config, const hx_domxml_env *env, char **out_xml,
                    json_t **new_volumes, char **err)
{
    *out_xml = NULL;
    *new_volumes = NULL;
    if (err)
        *err = NULL;
    hx_dxa a = {.env = env ? env : &no_env};
    AUTO_STR *perr = NULL;
    AUTO_JSON *cur = hx_domxml_to_config(xml, 0, NULL, NULL, &perr);
    AUTO_DOC *doc = NULL;
    AUTO_XPCTX *xp = NULL;
    AUTO_JSON *vols = json_array();
    if (!cur) {
        hx_dxa_io_err(&a, perr ? perr : "out of memory");
    } else if (!json_is_object(config)) {
        hx_dxa_bad(&a, "config.json", "must be a JSON object");
    } else if (!(doc = hx_domxml_parse(xml, &perr)) || !vols) {
        hx_dxa_io_err(&a, perr ? perr : "out of memory");
    } else {
        a.doc = doc;
        a.root = xmlDocGetRootElement(doc);
        a.cur = cur;
        a.vols = vols;
        a.xp = xp = xmlXPathNewContext(doc);
        if (!xp || xmlXPathRegisterNs(xp, BAD_CAST "hx", BAD_CAST HX_DOMXML_NS))
            hx_dxa_oom(&a);
        else
            run(&a, config);
    }
    free(a.disks.elem);
    free(a.disks.key);
    free(a.nics.elem);
    free(a.nics.key);
    if (!a.rc) {
        *out_xml = a.changed ? hx_dxa_dump(doc, a.root) : strdup(xml);
        if (!*out_xml)
            hx_dxa_oom(&a);
    }
    if (a.rc) {
        if (err)
            *err = a.err;
        else
            free(a.err);
        return a.rc;
    }
    *new_volumes = take(&vols);
    return 0;
}
