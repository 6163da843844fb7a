/* config.json -> XML: the boot order (boot[]), either <os><boot dev> entries or per-device
   <boot order> for the listed disks and NICs. */
#include "domxml_apply_priv.h"

#include <string.h>
#include <strings.h>

static const char *const boot_devs[] = {"hd", "cdrom", "network", "fd", NULL};

/* The element an entry of the per-device form names, or NULL. */
static xmlNode *boot_device(hx_dxa *a, const char *entry)
{
    if (!strncmp(entry, "net:", 4)) {
        for (size_t i = 0; i < a->nics.n; i++)
            if (a->nics.key[i] && !strcasecmp(a->nics.key[i], entry + 4))
                return a->nics.elem[i];
        return NULL;
    }
    for (size_t i = 0; i < a->disks.n; i++)
        if (a->disks.key[i] && !strcmp(a->disks.key[i], entry))
            return a->disks.elem[i];
    return NULL;
}

int hx_dxa_apply_boot(hx_dxa *a, const json_t *config)
{
    json_t *boot = json_object_get(config, "boot");
    if (!boot)
        return 0;
    if (!json_is_array(boot))
        return hx_dxa_bad(a, "boot", "must be an array of strings");
    size_t n = json_array_size(boot);
    if (n > 16)
        return hx_dxa_bad(a, "boot", "must have at most 16 entries");
    int forms = 0; /* 1: os/boot devices, 2: per-device entries */
    for (size_t i = 0; i < n; i++) {
        char f[32];
        snprintf(f, sizeof(f), "boot[%zu]", i);
        const char *s = json_string_value(json_array_get(boot, i));
        if (!s)
            return hx_dxa_bad(a, f, "must be a string");
        for (size_t j = 0; j < i; j++)
            if (!strcmp(s, json_string_value(json_array_get(boot, j))))
                return hx_dxa_bad(a, f, "duplicate entry \"%s\"", s);
        if (hx_dxa_in_list(s, boot_devs))
            forms |= 1;
        else if (boot_device(a, s))
            forms |= 2;
        else
            return hx_dxa_bad(
                a, f,
                "must be one of hd, cdrom, network, fd, the target of a listed disk or "
                "\"net:\" and the MAC of a listed NIC (got \"%s\")",
                s);
        if (forms == 3)
            return hx_dxa_bad(a, f, "cannot mix hd/cdrom/network/fd with per-device entries");
    }
    if (json_equal(boot, json_object_get(a->cur, "boot")))
        return 0;
    xmlNode *t = hx_dxa_os_type(a);
    if (!t)
        return a->rc;
    xmlNode *os = t->parent;
    hx_dxa_drop_children(a, os, "boot");
    xmlNode *devices = hx_dxa_child(a->root, "devices");
    for (xmlNode *d = devices ? devices->children : NULL; d; d = d->next)
        if (d->type == XML_ELEMENT_NODE)
            hx_dxa_drop_children(a, d, "boot");
    xmlNode *ref = t;
    for (const char *const *k = (const char *const[]){"loader", "nvram", NULL}; *k; k++)
        if (hx_dxa_child(os, *k))
            ref = hx_dxa_child(os, *k);
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(boot, i));
        xmlNode *b = hx_dxa_new_elem(a, "boot");
        if (!b)
            return a->rc;
        if (forms == 1) {
            if (hx_dxa_place(a, os, ref, b) || hx_dxa_set_attr(a, b, "dev", s))
                return a->rc;
            ref = b;
        } else {
            char order[32];
            snprintf(order, sizeof(order), "%zu", i + 1);
            if (hx_dxa_place(a, boot_device(a, s), NULL, b) ||
                hx_dxa_set_attr(a, b, "order", order))
                return a->rc;
        }
    }
    return 0;
}
