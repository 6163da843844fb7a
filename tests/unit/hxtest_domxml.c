/* The fixtures the domain XML tests share (see hxtest_domxml.h). */
#include "hxtest_domxml.h"

#include <string.h>

static int hxt_network_exists(const char *name, void *opaque)
{
    (void)opaque;
    if (!strcmp(name, "broken"))
        return -1;
    return !strcmp(name, "default") || !strcmp(name, "lan") || !strcmp(name, "provisioning");
}

static int hxt_bridge_exists(const char *name, void *opaque)
{
    (void)opaque;
    return !strcmp(name, "br0");
}

static int hxt_pool_exists(const char *pool, void *opaque)
{
    (void)opaque;
    return !strcmp(pool, "default") || !strcmp(pool, "fast");
}

static int64_t hxt_volume_size(const char *pool, const char *vol, void *opaque)
{
    (void)opaque;
    if (!strcmp(pool, "default") && !strcmp(vol, "app1-data"))
        return 10737418240;
    if (!strcmp(pool, "default") && !strcmp(vol, "store1-root.qcow2"))
        return 21474836480;
    if (!strcmp(vol, "broken"))
        return -5;
    return -1;
}

const hx_domxml_env hxt_node = {hxt_network_exists, hxt_bridge_exists, hxt_pool_exists,
                                hxt_volume_size, NULL};

json_t *hxt_to_config(const char *xml)
{
    char *err = NULL;
    json_t *c = hx_domxml_to_config(xml, 0, NULL, NULL, &err);
    if (!c)
        fail_msg("to_config: %s", err ? err : "?");
    return c;
}

json_t *hxt_patched(const char *xml, const char *patch)
{
    json_t *c = hxt_to_config(xml);
    AUTO_JSON *p = hxt_json(patch);
    assert_int_equal(json_object_update(c, p), 0);
    return c;
}

char *hxt_apply_ok(const char *name, const char *patch, json_t **vols)
{
    AUTO_STR *xml = hxt_load(name);
    AUTO_JSON *config = hxt_patched(xml, patch);
    char *out = NULL, *err = NULL;
    json_t *v = NULL;
    int rc = hx_domxml_apply(xml, config, &hxt_node, &out, &v, &err);
    if (rc)
        fail_msg("%s %s: rc %d: %s", name, patch, rc, err ? err : "?");
    assert_non_null(out);
    assert_true(json_is_array(v));
    if (vols)
        *vols = v;
    else
        json_decref(v);
    return out;
}

json_t *hxt_change(const char *name, const char *patch)
{
    AUTO_STR *out = hxt_apply_ok(name, patch, NULL);
    return hxt_to_config(out);
}
