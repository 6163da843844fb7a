/* XML -> config.json: the scalar sections read from the domain XML (memory sizes with libvirt's
   units, firmware) and the Horcrux metadata (<horcrux:vm>: tags, protected, template). */
#include "hx_domxml.h"
#include "domxml_priv.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* ---- scalars ----------------------------------------------------------------------------- */

/* Bytes per unit as libvirt's virScaleInteger reads them (case-insensitive): "b", "byte",
   "bytes"; a letter k/m/g/t/p/e alone or followed by "iB" for powers of 1024, or followed by "B"
   for powers of 1000. No unit means KiB for memory elements. 0 for an unknown unit. */
static uint64_t unit_scale(const char *unit)
{
    static const char letters[] = "kmgtpe";
    if (!unit || !*unit)
        return 1024;
    if (!strcasecmp(unit, "b") || !strcasecmp(unit, "byte") || !strcasecmp(unit, "bytes"))
        return 1;
    uint64_t base;
    if (!unit[1] || !strcasecmp(unit + 1, "iB"))
        base = 1024;
    else if (tolower((unsigned char)unit[1]) == 'b' && !unit[2])
        base = 1000;
    else
        return 0;
    const char *p = strchr(letters, tolower((unsigned char)unit[0]));
    if (!p)
        return 0;
    uint64_t scale = base;
    for (const char *q = letters; q < p; q++)
        scale *= base;
    return scale;
}

int64_t hx_dxr_read_mib(hx_dxr *c, xmlNode *root, const char *elem)
{
    xmlNode *node = hx_dxr_node(c, root, elem);
    long long value;
    if (!node || !hx_dxr_int(c, node, ".", elem, &value))
        return -1;
    AUTO_STR *unit = hx_dxr_str(c, node, "@unit");
    uint64_t scale = unit_scale(unit);
    if (!scale) {
        hx_dxr_fail(c, "%s unit '%s' is unknown", elem, unit);
        return -1;
    }
    if (value < 0) {
        hx_dxr_fail(c, "%s %lld is negative", elem, value);
        return -1;
    }
    /* value < 2^63 and scale <= 2^60, so the product fits in 128 bits. */
    unsigned __int128 mib = ((unsigned __int128)value * scale) >> 20;
    if (mib > INT64_MAX) {
        hx_dxr_fail(c, "%s %lld %s is too large", elem, value, unit ? unit : "KiB");
        return -1;
    }
    return (int64_t)mib;
}

const char *hx_dxr_read_firmware(hx_dxr *c, xmlNode *root)
{
    /* With firmware autoselection libvirt 9.0 keeps <os firmware='efi'> in both the inactive
       and the live XML. A manually configured UEFI guest has only a <loader>, which for OVMF
       and AAVMF is type='pflash' readonly='yes'; SeaBIOS needs no loader element. */
    AUTO_STR *fw = hx_dxr_str(c, root, "os/@firmware");
    if (fw)
        return strcmp(fw, "efi") ? "bios" : "uefi";
    return hx_dxr_node(c, root, "os/loader[@type='pflash' or @readonly='yes']") ? "uefi" : "bios";
}

/* ---- Horcrux metadata -------------------------------------------------------------------- */

/* Children of <horcrux:vm> are matched by local name only: virDomainSetMetadata puts every
   descendant in the namespace (<horcrux:tags>), but XML given to virDomainDefineXML is stored as
   written, where the children are often unprefixed and so in no namespace. */
json_t *hx_dxr_read_tags(hx_dxr *c, xmlNode *vm)
{
    AUTO_JSON *tags = json_array();
    AUTO_XPOBJ *o = vm ? hx_dxr_eval(c, vm, "*[local-name()='tags']/*[local-name()='tag']") : NULL;
    if (!tags || (vm && !o))
        return hx_dxr_oom(c);
    for (int i = 0; i < hx_dxr_count(o); i++) {
        AUTO_STR *tag = hx_dxr_text(c, o->nodesetval->nodeTab[i]);
        if (!tag)
            return NULL;
        const char *t = hx_dxr_trim(tag);
        if (*t && json_array_append_new(tags, json_string(t)))
            return hx_dxr_oom(c);
    }
    return take(&tags);
}

bool hx_dxr_read_flag(hx_dxr *c, xmlNode *vm, const char *name)
{
    char xp[64];
    snprintf(xp, sizeof(xp), "*[local-name()='%s']", name);
    AUTO_STR *s = vm ? hx_dxr_str(c, vm, xp) : NULL;
    if (!s)
        return false;
    const char *t = hx_dxr_trim(s);
    if (!strcmp(t, "true") || !strcmp(t, "1"))
        return true;
    if (!strcmp(t, "false") || !strcmp(t, "0") || !*t)
        return false;
    hx_dxr_fail(c, "metadata %s value '%s' is not true or false", name, t);
    return false;
}
