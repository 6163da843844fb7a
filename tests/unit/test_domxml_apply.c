/* Unit tests for backend/domxml_apply.c (config.json -> libvirt domain XML). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hx_domxml.h"

static void free_str(char **p)
{
    free(*p);
}

static void free_json(json_t **p)
{
    json_decref(*p);
}

#define AUTO_STR __attribute__((cleanup(free_str))) char
#define AUTO_JSON __attribute__((cleanup(free_json))) json_t

static char *load(const char *name)
{
    const char *dir = getenv("HX_TEST_DATA");
#ifdef HX_TEST_DATA
    if (!dir)
        dir = HX_TEST_DATA;
#endif
    if (!dir)
        dir = "tests/unit/data";
    AUTO_STR *path = NULL;
    assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    assert_non_null(mem);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, mem);
    fclose(f);
    fclose(mem);
    return buf;
}

/* ---- a fake node ------------------------------------------------------------------------- */

static int network_exists(const char *name, void *opaque)
{
    (void)opaque;
    if (!strcmp(name, "broken"))
        return -1;
    return !strcmp(name, "default") || !strcmp(name, "lan") || !strcmp(name, "provisioning");
}

static int bridge_exists(const char *name, void *opaque)
{
    (void)opaque;
    return !strcmp(name, "br0");
}

static int pool_exists(const char *pool, void *opaque)
{
    (void)opaque;
    return !strcmp(pool, "default") || !strcmp(pool, "fast");
}

static int64_t volume_size(const char *pool, const char *vol, void *opaque)
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

static const hx_domxml_env env = {network_exists, bridge_exists, pool_exists, volume_size, NULL};

/* ---- helpers ----------------------------------------------------------------------------- */

static json_t *to_config(const char *xml)
{
    char *err = NULL;
    json_t *c = hx_domxml_to_config(xml, 0, NULL, NULL, &err);
    if (!c)
        fail_msg("to_config: %s", err ? err : "?");
    return c;
}

/* to_config(base) with the keys of `patch` (JSON text) replaced. */
static json_t *patched(const char *xml, const char *patch)
{
    json_t *c = to_config(xml);
    json_error_t jerr;
    AUTO_JSON *p = json_loads(patch, 0, &jerr);
    if (!p)
        fail_msg("bad patch %s: %s", patch, jerr.text);
    assert_int_equal(json_object_update(c, p), 0);
    return c;
}

/* Applies patch to data file `name`; returns the new XML (fails the test on error). */
static char *apply_ok(const char *name, const char *patch, json_t **vols)
{
    AUTO_STR *xml = load(name);
    AUTO_JSON *config = patched(xml, patch);
    char *out = NULL, *err = NULL;
    json_t *v = NULL;
    int rc = hx_domxml_apply(xml, config, &env, &out, &v, &err);
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

/* Applies patch and returns to_config of the result. */
static json_t *change(const char *name, const char *patch)
{
    AUTO_STR *out = apply_ok(name, patch, NULL);
    return to_config(out);
}

static int count_str(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* ---- round trips ------------------------------------------------------------------------- */

static const char *const samples[] = {
    "apply-base.xml",  "boot-order.xml",    "mem-binary.xml",     "mem-bytes.xml",
    "mem-decimal.xml", "mem-kb.xml",        "mem-short.xml",      "metadata-plain.xml",
    "metadata.xml",    "minimal.xml",       "no-description.xml", "q35-kvm.xml",
    "storage.xml",     "uefi-firmware.xml", "uefi-pflash.xml",    NULL};

static void test_round_trip_identity(void **state)
{
    (void)state;
    for (const char *const *s = samples; *s; s++) {
        AUTO_STR *xml = load(*s);
        AUTO_JSON *before = to_config(xml);
        AUTO_STR *out = NULL;
        AUTO_STR *err = NULL;
        AUTO_JSON *vols = NULL;
        int rc = hx_domxml_apply(xml, before, &env, &out, &vols, &err);
        if (rc)
            fail_msg("%s: %s", *s, err ? err : "?");
        assert_string_equal(out, xml); /* nothing changed: byte-identical */
        assert_int_equal(json_array_size(vols), 0);
        AUTO_JSON *after = to_config(out);
        assert_true(json_equal(before, after));
    }
}

/* The tree renders config.json with sizes: writing it back must not look like a resize. */
static int64_t size_of(const char *source, void *opaque)
{
    (void)opaque;
    if (!strcmp(source, "default/store1-root.qcow2"))
        return 21474836480;
    if (!strcmp(source, "default/app1-data"))
        return 10737418240;
    return source[0] == '/' ? 4096 : -1;
}

static void test_round_trip_with_sizes(void **state)
{
    (void)state;
    static const char *const files[] = {"storage.xml", "apply-base.xml", "q35-kvm.xml", NULL};
    for (const char *const *f = files; *f; f++) {
        AUTO_STR *xml = load(*f);
        AUTO_STR *err = NULL;
        AUTO_JSON *c = hx_domxml_to_config(xml, 1, size_of, NULL, &err);
        assert_non_null(c);
        AUTO_STR *out = NULL;
        AUTO_JSON *vols = NULL;
        if (hx_domxml_apply(xml, c, &env, &out, &vols, &err))
            fail_msg("%s: %s", *f, err);
        assert_string_equal(out, xml);
        assert_int_equal(json_array_size(vols), 0);
    }
}

/* Round trip through an edit: everything config.json does not model survives. */
static void test_round_trip_keeps_unknown(void **state)
{
    (void)state;
    for (const char *const *s = samples; *s; s++) {
        AUTO_STR *xml = load(*s);
        AUTO_JSON *before = to_config(xml);
        AUTO_JSON *config = json_deep_copy(before);
        json_object_set_new(config, "description", json_string("edited & <escaped>"));
        AUTO_STR *out = NULL;
        AUTO_STR *err = NULL;
        AUTO_JSON *vols = NULL;
        if (hx_domxml_apply(xml, config, &env, &out, &vols, &err))
            fail_msg("%s: %s", *s, err);
        AUTO_JSON *after = to_config(out);
        assert_true(json_equal(config, after));
        /* Apply the original back: the old config comes back. */
        AUTO_STR *back = NULL;
        AUTO_STR *err2 = NULL;
        AUTO_JSON *vols2 = NULL;
        assert_int_equal(hx_domxml_apply(out, before, &env, &back, &vols2, &err2), 0);
        AUTO_JSON *again = to_config(back);
        assert_true(json_equal(before, again));
        /* The same elements as before (bar <description>). */
        static const char *const elems[] = {
            "<serial",   "<channel",  "<controller", "<libosinfo:os", "<address", "<emulator",
            "<features", "<on_crash", "<listen",     "<horcrux:tag>", NULL};
        for (const char *const *e = elems; *e; e++)
            assert_int_equal(count_str(back, *e), count_str(xml, *e));
        if (strstr(xml, "discard='unmap'"))
            assert_non_null(strstr(back, "discard=\"unmap\""));
    }
}

static void test_reorder_and_mac_less_nic(void **state)
{
    (void)state;
    AUTO_STR *out = apply_ok("apply-base.xml",
                             "{\"disks\":[{\"target\":\"vdb\"},{\"target\":\"vda\"},{\"target\":"
                             "\"sda\"}],\"nics\":[{\"mac\":null,\"network\":\"lan\"},"
                             "{\"mac\":\"52:54:00:00:00:01\"}]}",
                             NULL);
    /* Kept elements keep their unknown parts. */
    assert_non_null(strstr(out, "discard=\"unmap\""));
    assert_non_null(strstr(out, "bus=\"0x04\""));
    assert_int_equal(count_str(out, "<interface"), 2);
    assert_int_equal(count_str(out, "<mac "), 1);
    /* vdb now comes first; the MAC-less NIC comes first (libvirt assigns its MAC). */
    assert_true(strstr(out, "app1-data") < strstr(out, "app1.qcow2"));
    assert_true(strstr(out, "network=\"lan\"") < strstr(out, "52:54:00:00:00:01"));
    /* hx_domxml_to_config refuses a NIC without MAC (libvirt always has one). */
    AUTO_STR *err = NULL;
    assert_null(hx_domxml_to_config(out, 0, NULL, NULL, &err));
    AUTO_STR *out2 = apply_ok("apply-base.xml",
                              "{\"disks\":[{\"target\":\"vdb\"},{\"target\":\"sda\"},{\"target\":"
                              "\"vda\"}]}",
                              NULL);
    AUTO_JSON *c = to_config(out2);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(c, "disks"), 2), "target")),
                        "vda");
    AUTO_JSON *c2 = to_config(out2);
    AUTO_STR *out3 = NULL;
    AUTO_STR *err3 = NULL;
    AUTO_JSON *vols = NULL;
    assert_int_equal(hx_domxml_apply(out2, c2, &env, &out3, &vols, &err3), 0);
    assert_string_equal(out3, out2);
}

/* ---- changing one field at a time -------------------------------------------------------- */

static const char *cstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    if (!s)
        fail_msg("%s is not a string", k);
    return s;
}

static json_int_t cint(const json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v))
        fail_msg("%s is not an integer", k);
    return json_integer_value(v);
}

static const json_t *citem(const json_t *o, const char *k, size_t i)
{
    const json_t *v = json_array_get(json_object_get(o, k), i);
    assert_true(json_is_object(v));
    return v;
}

static void test_change_scalars(void **state)
{
    (void)state;
    AUTO_JSON *a = change("apply-base.xml", "{\"description\":\"new text\"}");
    assert_string_equal(cstr(a, "description"), "new text");
    AUTO_JSON *b = change("apply-base.xml", "{\"description\":\"\"}");
    assert_string_equal(cstr(b, "description"), "");
    AUTO_JSON *c = change("apply-base.xml", "{\"vcpus\":4}");
    assert_int_equal(cint(c, "vcpus"), 4);
    assert_int_equal(cint(c, "max_vcpus"), 4);
    AUTO_JSON *d = change("apply-base.xml", "{\"max_vcpus\":8}");
    assert_int_equal(cint(d, "vcpus"), 2);
    assert_int_equal(cint(d, "max_vcpus"), 8);
    AUTO_JSON *e = change("apply-base.xml", "{\"memory_mib\":2048}");
    assert_int_equal(cint(e, "memory_mib"), 2048);
    assert_int_equal(cint(e, "max_memory_mib"), 2048);
    /* Raising the current amount alone raises the maximum with it. */
    AUTO_JSON *raised = change("apply-base.xml", "{\"memory_mib\":4096, \"vcpus\":6}");
    assert_int_equal(cint(raised, "memory_mib"), 4096);
    assert_int_equal(cint(raised, "max_memory_mib"), 4096);
    assert_int_equal(cint(raised, "vcpus"), 6);
    assert_int_equal(cint(raised, "max_vcpus"), 6);
    AUTO_JSON *f = change("apply-base.xml", "{\"max_memory_mib\":8192, \"memory_mib\":4096}");
    assert_int_equal(cint(f, "memory_mib"), 4096);
    assert_int_equal(cint(f, "max_memory_mib"), 8192);
    AUTO_JSON *g = change("apply-base.xml", "{\"machine\":\"pc-q35-8.0\"}");
    assert_string_equal(cstr(g, "machine"), "pc-q35-8.0");
    AUTO_JSON *h = change("apply-base.xml", "{\"machine\":null}");
    assert_true(json_is_null(json_object_get(h, "machine")));
    AUTO_JSON *i = change("apply-base.xml", "{\"firmware\":\"uefi\"}");
    assert_string_equal(cstr(i, "firmware"), "uefi");
    AUTO_JSON *j = change("uefi-pflash.xml", "{\"firmware\":\"bios\"}");
    assert_string_equal(cstr(j, "firmware"), "bios");
    AUTO_JSON *k = change("uefi-firmware.xml", "{\"firmware\":\"bios\"}");
    assert_string_equal(cstr(k, "firmware"), "bios");
    AUTO_JSON *l = change("apply-base.xml", "{\"tags\":[\"a\",\"b c\"], \"protected\":true}");
    assert_int_equal(json_array_size(json_object_get(l, "tags")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(l, "tags"), 1)), "b c");
    assert_true(json_is_true(json_object_get(l, "protected")));
    AUTO_JSON *m = change("minimal.xml", "{\"tags\":[\"x\"]}");
    assert_string_equal(json_string_value(json_array_get(json_object_get(m, "tags"), 0)), "x");
    AUTO_JSON *n = change("minimal.xml", "{\"protected\":true}");
    assert_true(json_is_true(json_object_get(n, "protected")));
    assert_true(json_is_false(json_object_get(n, "template")));
    AUTO_JSON *t = change("apply-base.xml", "{\"template\":true}");
    assert_true(json_is_true(json_object_get(t, "template")));
    assert_true(json_is_false(json_object_get(t, "protected")));
    AUTO_JSON *t2 = change("minimal.xml", "{\"template\":true, \"protected\":true}");
    assert_true(json_is_true(json_object_get(t2, "template")));
    assert_true(json_is_true(json_object_get(t2, "protected")));
    AUTO_JSON *o = change("apply-base.xml", "{\"tags\":[]}");
    assert_int_equal(json_array_size(json_object_get(o, "tags")), 0);
    AUTO_JSON *p = change("apply-base.xml", "{\"autostart\":true, \"uuid\":null}");
    assert_string_equal(cstr(p, "uuid"), "7d1c9a3e-5b2f-4e8a-9c6d-1f0e2b3a4c5d");
}

static void test_change_boot(void **state)
{
    (void)state;
    AUTO_JSON *a = change("apply-base.xml", "{\"boot\":[\"network\",\"cdrom\",\"hd\"]}");
    assert_int_equal(json_array_size(json_object_get(a, "boot")), 3);
    assert_string_equal(json_string_value(json_array_get(json_object_get(a, "boot"), 0)),
                        "network");
    /* Per-device form: the same list is fine, a new one is written as <boot order>. */
    AUTO_JSON *b = change("boot-order.xml", "{\"boot\":[\"vda\",\"net:52:54:00:01:02:03\"]}");
    json_t *bb = json_object_get(b, "boot");
    assert_int_equal(json_array_size(bb), 2);
    assert_string_equal(json_string_value(json_array_get(bb, 0)), "vda");
    assert_string_equal(json_string_value(json_array_get(bb, 1)), "net:52:54:00:01:02:03");
    AUTO_JSON *c = change("boot-order.xml", "{\"boot\":[\"hd\"]}");
    assert_int_equal(json_array_size(json_object_get(c, "boot")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "boot"), 0)), "hd");
    AUTO_JSON *d = change("apply-base.xml", "{\"boot\":[]}");
    assert_int_equal(json_array_size(json_object_get(d, "boot")), 0);
}

static void test_change_disks(void **state)
{
    (void)state;
    AUTO_JSON *a = change("apply-base.xml", "{\"disks\":[{\"target\":\"vda\",\"bus\":\"sata\","
                                            "\"format\":\"raw\",\"readonly\":true},"
                                            "{\"target\":\"vdb\"},{\"target\":\"sda\"}]}");
    const json_t *d0 = citem(a, "disks", 0);
    assert_string_equal(cstr(d0, "bus"), "sata");
    assert_string_equal(cstr(d0, "format"), "raw");
    assert_true(json_is_true(json_object_get(d0, "readonly")));
    assert_string_equal(cstr(d0, "source"), "/var/lib/libvirt/images/app1.qcow2");
    /* Source, source type and device changes. */
    AUTO_JSON *b =
        change("apply-base.xml", "{\"disks\":[{\"target\":\"vda\",\"source_type\":\"block\","
                                 "\"source\":\"/dev/vg/app1\"},{\"target\":\"sda\","
                                 "\"source\":\"/srv/iso/debian.iso\"}]}");
    assert_int_equal(json_array_size(json_object_get(b, "disks")), 2);
    assert_string_equal(cstr(citem(b, "disks", 0), "source_type"), "block");
    assert_string_equal(cstr(citem(b, "disks", 0), "source"), "/dev/vg/app1");
    assert_string_equal(cstr(citem(b, "disks", 1), "source"), "/srv/iso/debian.iso");
    assert_string_equal(cstr(citem(b, "disks", 1), "device"), "cdrom");
    /* Removing all. */
    AUTO_JSON *c = change("apply-base.xml", "{\"disks\":[]}");
    assert_int_equal(json_array_size(json_object_get(c, "disks")), 0);
    /* A new file disk with defaults, and a volume disk on an existing volume. */
    AUTO_JSON *d =
        change("minimal.xml", "{\"disks\":[{\"target\":\"vda\",\"source\":\"/srv/"
                              "x.img\"},{\"target\":\"sdb\",\"source_type\":\"volume\","
                              "\"source\":\"default/app1-data\",\"format\":\"qcow2\"}]}");
    const json_t *n0 = citem(d, "disks", 0), *n1 = citem(d, "disks", 1);
    assert_string_equal(cstr(n0, "bus"), "virtio");
    assert_string_equal(cstr(n0, "format"), "raw");
    assert_string_equal(cstr(n0, "source_type"), "file");
    assert_string_equal(cstr(n0, "device"), "disk");
    assert_string_equal(cstr(n1, "bus"), "sata");
    assert_string_equal(cstr(n1, "source"), "default/app1-data");
    assert_string_equal(cstr(n1, "format"), "qcow2");
    /* Inserted in order before the existing ones. */
    AUTO_JSON *e = change("apply-base.xml", "{\"disks\":[{\"target\":\"hda\",\"device\":\"cdrom\"},"
                                            "{\"target\":\"vda\"},{\"target\":\"vdb\"},"
                                            "{\"target\":\"sda\"}]}");
    assert_string_equal(cstr(citem(e, "disks", 0), "target"), "hda");
    assert_string_equal(cstr(citem(e, "disks", 0), "bus"), "ide");
    assert_true(json_is_null(json_object_get(citem(e, "disks", 0), "source")));
    assert_string_equal(cstr(citem(e, "disks", 3), "target"), "sda");
}

static void test_new_volumes(void **state)
{
    (void)state;
    json_t *vols = NULL;
    AUTO_STR *out = apply_ok("apply-base.xml",
                             "{\"disks\":[{\"target\":\"vda\"},{\"target\":\"vdb\",\"size_bytes\":"
                             "10737418240},{\"target\":\"vdc\",\"source_type\":\"volume\","
                             "\"source\":\"fast/app1-new\",\"format\":\"qcow2\",\"size_bytes\":"
                             "1073741824}]}",
                             &vols);
    AUTO_JSON *v = vols;
    assert_int_equal(json_array_size(v), 1);
    json_t *nv = json_array_get(v, 0);
    assert_string_equal(cstr(nv, "pool"), "fast");
    assert_string_equal(cstr(nv, "name"), "app1-new");
    assert_string_equal(cstr(nv, "format"), "qcow2");
    assert_int_equal(cint(nv, "size_bytes"), 1073741824);
    AUTO_JSON *c = to_config(out);
    assert_string_equal(cstr(citem(c, "disks", 2), "source"), "fast/app1-new");
    assert_string_equal(cstr(citem(c, "disks", 2), "source_type"), "volume");
}

static void test_change_nics_and_graphics(void **state)
{
    (void)state;
    AUTO_JSON *a =
        change("apply-base.xml", "{\"nics\":[{\"mac\":\"52:54:00:00:00:01\",\"type\":\"bridge\","
                                 "\"network\":null,\"bridge\":\"br0\",\"model\":\"e1000e\"},"
                                 "{\"mac\":\"52:54:00:aa:bb:cc\",\"network\":\"lan\"}]}");
    const json_t *n0 = citem(a, "nics", 0), *n1 = citem(a, "nics", 1);
    assert_string_equal(cstr(n0, "type"), "bridge");
    assert_string_equal(cstr(n0, "bridge"), "br0");
    assert_true(json_is_null(json_object_get(n0, "network")));
    assert_string_equal(cstr(n0, "model"), "e1000e");
    assert_string_equal(cstr(n1, "type"), "network");
    assert_string_equal(cstr(n1, "network"), "lan");
    assert_string_equal(cstr(n1, "model"), "virtio");
    AUTO_JSON *b = change("apply-base.xml", "{\"nics\":[{\"mac\":\"52:54:00:00:00:01\","
                                            "\"network\":\"lan\",\"model\":null}]}");
    assert_string_equal(cstr(citem(b, "nics", 0), "network"), "lan");
    assert_true(json_is_null(json_object_get(citem(b, "nics", 0), "model")));
    AUTO_JSON *c = change("apply-base.xml", "{\"nics\":[]}");
    assert_int_equal(json_array_size(json_object_get(c, "nics")), 0);
    AUTO_JSON *d =
        change("apply-base.xml", "{\"graphics\":[{\"type\":\"vnc\",\"port\":5905,\"listen\":"
                                 "\"0.0.0.0\"},{\"type\":\"spice\"}]}");
    assert_int_equal(cint(citem(d, "graphics", 0), "port"), 5905);
    assert_string_equal(cstr(citem(d, "graphics", 0), "listen"), "0.0.0.0");
    assert_string_equal(cstr(citem(d, "graphics", 1), "type"), "spice");
    assert_int_equal(cint(citem(d, "graphics", 1), "port"), -1);
    AUTO_JSON *e = change("apply-base.xml", "{\"graphics\":[]}");
    assert_int_equal(json_array_size(json_object_get(e, "graphics")), 0);
    AUTO_JSON *f = change("minimal.xml", "{\"nics\":[{\"mac\":\"52:54:00:aa:bb:01\",\"type\":"
                                         "\"user\"}],\"graphics\":[{\"type\":\"vnc\"}]}");
    assert_string_equal(cstr(citem(f, "nics", 0), "type"), "user");
    assert_int_equal(json_array_size(json_object_get(f, "graphics")), 1);
}

/* ---- invalid documents ------------------------------------------------------------------- */

struct bad_case {
    const char *file;
    const char *patch;
    const char *field; /* the message must start with "<field>: " */
};

static const struct bad_case bad_cases[] = {
    {"apply-base.xml", "{\"frobnicate\":1}", "frobnicate"},
    {"apply-base.xml", "{\"name\":\"other\"}", "name"},
    {"apply-base.xml", "{\"name\":5}", "name"},
    {"apply-base.xml", "{\"uuid\":\"00000000-0000-0000-0000-000000000000\"}", "uuid"},
    {"apply-base.xml", "{\"uuid\":7}", "uuid"},
    {"apply-base.xml", "{\"type\":\"qemu\"}", "type"},
    {"apply-base.xml", "{\"arch\":\"aarch64\"}", "arch"},
    {"apply-base.xml", "{\"description\":5}", "description"},
    {"apply-base.xml", "{\"description\":\"a\\u0001b\"}", "description"},
    {"apply-base.xml", "{\"vcpus\":\"2\"}", "vcpus"},
    {"apply-base.xml", "{\"vcpus\":0}", "vcpus"},
    {"apply-base.xml", "{\"vcpus\":300}", "vcpus"},
    {"apply-base.xml", "{\"vcpus\":2.5}", "vcpus"},
    {"apply-base.xml", "{\"max_vcpus\":1000}", "max_vcpus"},
    {"apply-base.xml", "{\"max_vcpus\":null}", "max_vcpus"},
    {"apply-base.xml", "{\"max_vcpus\":1}", "vcpus"},
    {"apply-base.xml", "{\"memory_mib\":8}", "memory_mib"},
    {"apply-base.xml", "{\"memory_mib\":true}", "memory_mib"},
    {"apply-base.xml", "{\"memory_mib\":4096, \"max_memory_mib\":3072}", "memory_mib"},
    {"apply-base.xml", "{\"vcpus\":4, \"max_vcpus\":3}", "vcpus"},
    {"apply-base.xml", "{\"max_memory_mib\":99999999999}", "max_memory_mib"},
    {"apply-base.xml", "{\"max_memory_mib\":512}", "memory_mib"},
    {"apply-base.xml", "{\"machine\":\"pc q35\"}", "machine"},
    {"apply-base.xml", "{\"machine\":3}", "machine"},
    {"apply-base.xml", "{\"firmware\":\"coreboot\"}", "firmware"},
    {"apply-base.xml", "{\"firmware\":null}", "firmware"},
    {"apply-base.xml", "{\"boot\":\"hd\"}", "boot"},
    {"apply-base.xml", "{\"boot\":[\"floppy\"]}", "boot[0]"},
    {"apply-base.xml", "{\"boot\":[\"hd\",1]}", "boot[1]"},
    {"apply-base.xml", "{\"boot\":[\"hd\",\"hd\"]}", "boot[1]"},
    {"apply-base.xml", "{\"boot\":[\"hd\",\"vda\"]}", "boot[1]"},
    {"apply-base.xml", "{\"autostart\":\"yes\"}", "autostart"},
    {"apply-base.xml", "{\"protected\":1}", "protected"},
    {"apply-base.xml", "{\"template\":\"yes\"}", "template"},
    {"apply-base.xml", "{\"tags\":[1]}", "tags[0]"},
    {"apply-base.xml", "{\"tags\":\"prod\"}", "tags"},
    {"apply-base.xml", "{\"tags\":[\"a\",\"\"]}", "tags[1]"},
    {"apply-base.xml", "{\"tags\":[\"a\",\"a\"]}", "tags[1]"},
    {"apply-base.xml", "{\"disks\":{}}", "disks"},
    {"apply-base.xml", "{\"disks\":[1]}", "disks[0]"},
    {"apply-base.xml", "{\"disks\":[{\"target\":\"vda\",\"foo\":1}]}", "disks[0].foo"},
    {"apply-base.xml", "{\"disks\":[{\"bus\":\"virtio\"}]}", "disks[0].target"},
    {"apply-base.xml", "{\"disks\":[{\"target\":\"vda\"},{\"target\":\"vda\"}]}",
     "disks[1].target"},
    {"apply-base.xml", "{\"disks\":[{\"target\":\"vda\"},{\"target\":\"xyz1\"}]}",
     "disks[1].target"},
    {"apply-base.xml", "{\"disks\":[{\"target\":\"vda\"},{\"target\":\"vdb\",\"bus\":\"foo\"}]}",
     "disks[1].bus"},
    {"apply-base.xml", "{\"disks\":[{\"target\":\"vda\",\"device\":\"tape\"}]}", "disks[0].device"},
    {"apply-base.xml", "{\"disks\":[{\"target\":\"vda\",\"source_type\":\"network\"}]}",
     "disks[0].source_type"},
    {"apply-base.xml", "{\"disks\":[{\"target\":\"vda\",\"source\":\"relative.img\"}]}",
     "disks[0].source"},
    {"apply-base.xml", "{\"disks\":[{\"target\":\"vda\",\"source\":null}]}", "disks[0].source"},
    {"apply-base.xml", "{\"disks\":[{\"target\":\"vda\",\"format\":\"zip\"}]}", "disks[0].format"},
    {"apply-base.xml", "{\"disks\":[{\"target\":\"vda\",\"readonly\":\"no\"}]}",
     "disks[0].readonly"},
    {"apply-base.xml", "{\"disks\":[{\"target\":\"sda\",\"readonly\":false}]}",
     "disks[0].readonly"},
    {"apply-base.xml", "{\"disks\":[{\"target\":\"vda\",\"size_bytes\":-5}]}",
     "disks[0].size_bytes"},
    {"apply-base.xml", "{\"disks\":[{\"target\":\"vdb\",\"size_bytes\":1}]}",
     "disks[0].size_bytes"},
    {"apply-base.xml",
     "{\"disks\":[{\"target\":\"vdc\",\"source_type\":\"volume\",\"source\":\"nopool/x\","
     "\"size_bytes\":1000}]}",
     "disks[0].source"},
    {"apply-base.xml",
     "{\"disks\":[{\"target\":\"vdc\",\"source_type\":\"volume\",\"source\":\"default/missing\"}]}",
     "disks[0].source"},
    {"apply-base.xml",
     "{\"disks\":[{\"target\":\"vdc\",\"source_type\":\"volume\",\"source\":\"default/broken\"}]}",
     "disks[0].size_bytes"},
    {"apply-base.xml",
     "{\"disks\":[{\"target\":\"vdc\",\"source_type\":\"volume\",\"source\":\"novolume\"}]}",
     "disks[0].source"},
    {"storage.xml", "{\"disks\":[{\"target\":\"vdc\",\"source\":\"other/img\"}]}",
     "disks[0].source"},
    {"apply-base.xml", "{\"nics\":[{\"mac\":\"52:54:00:00:00:zz\",\"network\":\"lan\"}]}",
     "nics[0].mac"},
    {"apply-base.xml", "{\"nics\":[{\"mac\":\"01:00:5e:00:00:01\",\"network\":\"lan\"}]}",
     "nics[0].mac"},
    {"apply-base.xml",
     "{\"nics\":[{\"mac\":\"52:54:00:00:00:01\"},{\"mac\":\"52:54:00:00:00:01\"}]}", "nics[1].mac"},
    {"apply-base.xml", "{\"nics\":[{\"mac\":7}]}", "nics[0].mac"},
    {"apply-base.xml", "{\"nics\":[{\"mac\":\"52:54:00:00:00:01\",\"network\":\"nope\"}]}",
     "nics[0].network"},
    {"apply-base.xml", "{\"nics\":[{\"mac\":\"52:54:00:00:00:01\",\"network\":\"broken\"}]}",
     "nics[0].network"},
    {"apply-base.xml", "{\"nics\":[{\"mac\":null}]}", "nics[0].network"},
    {"apply-base.xml",
     "{\"nics\":[{\"mac\":\"52:54:00:00:00:01\",\"type\":\"bridge\",\"network\":null,"
     "\"bridge\":\"br9\"}]}",
     "nics[0].bridge"},
    {"apply-base.xml", "{\"nics\":[{\"mac\":\"52:54:00:00:00:01\",\"type\":\"vdpa\"}]}",
     "nics[0].type"},
    {"apply-base.xml", "{\"nics\":[{\"mac\":\"52:54:00:00:00:01\",\"model\":\"Bad Model\"}]}",
     "nics[0].model"},
    {"apply-base.xml", "{\"nics\":[{\"mac\":\"52:54:00:00:00:01\",\"speed\":10}]}",
     "nics[0].speed"},
    {"apply-base.xml", "{\"graphics\":[{\"type\":\"vnc\",\"port\":80}]}", "graphics[0].port"},
    {"apply-base.xml", "{\"graphics\":[{\"type\":\"vnc\",\"port\":70000}]}", "graphics[0].port"},
    {"apply-base.xml", "{\"graphics\":[{\"type\":\"rdp\"}]}", "graphics[0].type"},
    {"apply-base.xml", "{\"graphics\":[{\"type\":\"vnc\",\"listen\":5}]}", "graphics[0].listen"},
    {"apply-base.xml", "{\"graphics\":[{\"type\":\"vnc\",\"password\":\"x\"}]}",
     "graphics[0].password"},
};

static void test_invalid_documents(void **state)
{
    (void)state;
    AUTO_STR *long_desc = malloc(5000);
    memset(long_desc, 'x', 4999);
    long_desc[4999] = '\0';
    size_t n = sizeof(bad_cases) / sizeof(bad_cases[0]);
    assert_true(n >= 35);
    for (size_t i = 0; i <= n; i++) {
        AUTO_STR *xml = load(i < n ? bad_cases[i].file : "apply-base.xml");
        AUTO_JSON *config = NULL;
        const char *field;
        if (i < n) {
            config = patched(xml, bad_cases[i].patch);
            field = bad_cases[i].field;
        } else {
            config = to_config(xml);
            json_object_set_new(config, "description", json_string(long_desc));
            field = "description";
        }
        AUTO_STR *out = NULL;
        AUTO_STR *err = NULL;
        json_t *vols = NULL;
        int rc = hx_domxml_apply(xml, config, &env, &out, &vols, &err);
        if (rc != -EINVAL)
            fail_msg("case %zu (%s): rc %d, err %s", i, i < n ? bad_cases[i].patch : "long", rc,
                     err ? err : "(none)");
        assert_null(out);
        assert_null(vols);
        assert_non_null(err);
        size_t fl = strlen(field);
        if (strncmp(err, field, fl) || strncmp(err + fl, ": ", 2))
            fail_msg("case %zu: message \"%s\" does not start with \"%s: \"", i, err, field);
    }
}

static void test_not_an_object_and_bad_xml(void **state)
{
    (void)state;
    AUTO_STR *xml = load("apply-base.xml");
    AUTO_JSON *arr = json_array();
    char *out = NULL, *err = NULL;
    json_t *vols = NULL;
    assert_int_equal(hx_domxml_apply(xml, arr, &env, &out, &vols, &err), -EINVAL);
    assert_non_null(strstr(err, "must be a JSON object"));
    free(err);
    AUTO_JSON *c = to_config(xml);
    assert_int_equal(hx_domxml_apply("<domain><oops", c, &env, &out, &vols, &err), -EIO);
    assert_non_null(err);
    free(err);
    /* No env: no reference checks. */
    AUTO_JSON *c2 = patched(xml, "{\"nics\":[{\"mac\":\"52:54:00:00:00:01\",\"network\":\"x\"}]}");
    assert_int_equal(hx_domxml_apply(xml, c2, NULL, &out, &vols, NULL), 0);
    free(out);
    json_decref(vols);
}

/* ---- new VMs, devices, names ------------------------------------------------------------- */

static void test_new_vm(void **state)
{
    (void)state;
    char *err = NULL;
    AUTO_STR *xml = hx_domxml_new("fresh & <new>", "kvm", &err);
    assert_non_null(xml);
    AUTO_JSON *c = to_config(xml);
    assert_string_equal(cstr(c, "name"), "fresh & <new>");
    assert_string_equal(cstr(c, "type"), "kvm");
    assert_int_equal(cint(c, "vcpus"), 1);
    assert_int_equal(cint(c, "max_vcpus"), 1);
    assert_int_equal(cint(c, "memory_mib"), 512);
    assert_int_equal(cint(c, "max_memory_mib"), 512);
    assert_true(json_is_null(json_object_get(c, "machine")));
    assert_string_equal(cstr(c, "arch"), "x86_64");
    assert_string_equal(cstr(c, "firmware"), "bios");
    assert_int_equal(json_array_size(json_object_get(c, "boot")), 1);
    assert_int_equal(json_array_size(json_object_get(c, "disks")), 0);
    assert_int_equal(json_array_size(json_object_get(c, "nics")), 0);
    assert_int_equal(json_array_size(json_object_get(c, "graphics")), 0);
    assert_non_null(strstr(xml, "<on_poweroff>destroy</on_poweroff>"));
    assert_non_null(strstr(xml, "<on_reboot>restart</on_reboot>"));
    assert_non_null(strstr(xml, "<on_crash>destroy</on_crash>"));
    /* And it can be configured by writing config.json. */
    AUTO_JSON *w = json_deep_copy(c);
    json_object_set_new(w, "disks", json_pack("[{s:s, s:s}]", "target", "vda", "source", "/x.img"));
    AUTO_STR *out = NULL;
    AUTO_STR *err2 = NULL;
    AUTO_JSON *vols = NULL;
    assert_int_equal(hx_domxml_apply(xml, w, &env, &out, &vols, &err2), 0);
    AUTO_JSON *c2 = to_config(out);
    assert_string_equal(cstr(citem(c2, "disks", 0), "source"), "/x.img");
}

static void test_device(void **state)
{
    (void)state;
    AUTO_STR *xml = load("apply-base.xml");
    AUTO_STR *d = hx_domxml_device(xml, "disk", "vdb");
    assert_non_null(d);
    assert_true(!strncmp(d, "<disk type=\"volume\"", 19));
    assert_non_null(strstr(d, "app1-data"));
    assert_null(strstr(d, "<interface"));
    AUTO_STR *n = hx_domxml_device(xml, "interface", "52:54:00:00:00:01");
    assert_non_null(n);
    assert_true(!strncmp(n, "<interface", 10));
    assert_non_null(strstr(n, "<source network=\"default\"/>"));
    AUTO_STR *n2 = hx_domxml_device(xml, "interface", "52:54:00:00:00:01");
    assert_string_equal(n, n2);
    assert_null(hx_domxml_device(xml, "disk", "vdz"));
    assert_null(hx_domxml_device(xml, "interface", "52:54:00:00:00:02"));
    assert_null(hx_domxml_device(xml, "graphics", "vnc"));
    assert_null(hx_domxml_device("<bad", "disk", "vda"));
}

static void test_check_name(void **state)
{
    (void)state;
    static const char *const good[] = {"web1", "a", "my vm", "db-01.prod", "ünïcödé", "x.", NULL};
    for (const char *const *g = good; *g; g++) {
        char *err = NULL;
        if (hx_domxml_check_name(*g, &err))
            fail_msg("%s refused: %s", *g, err);
    }
    char big[HX_DOMXML_NAME_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    const char *bad[] = {"",
                         ".",
                         "..",
                         ".hidden",
                         "a/b",
                         "tab\there",
                         "nl\n",
                         "del\x7f",
                         "bad\xff"
                         "utf8",
                         "\xc0\xaf",
                         big,
                         NULL};
    for (const char **b = bad; *b; b++) {
        char *err = NULL;
        assert_int_equal(hx_domxml_check_name(*b, &err), -EINVAL);
        assert_non_null(err);
        assert_true(!strncmp(err, "name: ", 6));
        free(err);
    }
    big[HX_DOMXML_NAME_MAX] = '\0';
    assert_int_equal(hx_domxml_check_name(big, NULL), 0);
    assert_int_equal(hx_domxml_check_name(NULL, NULL), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_identity),
        cmocka_unit_test(test_round_trip_with_sizes),
        cmocka_unit_test(test_round_trip_keeps_unknown),
        cmocka_unit_test(test_reorder_and_mac_less_nic),
        cmocka_unit_test(test_change_scalars),
        cmocka_unit_test(test_change_boot),
        cmocka_unit_test(test_change_disks),
        cmocka_unit_test(test_new_volumes),
        cmocka_unit_test(test_change_nics_and_graphics),
        cmocka_unit_test(test_invalid_documents),
        cmocka_unit_test(test_not_an_object_and_bad_xml),
        cmocka_unit_test(test_new_vm),
        cmocka_unit_test(test_device),
        cmocka_unit_test(test_check_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
