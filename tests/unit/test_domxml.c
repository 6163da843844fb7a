/* Unit tests for backend/domxml.c (libvirt domain XML -> config.json). */
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

/* Reads tests/unit/data/<name>; the directory comes from $HX_TEST_DATA or -DHX_TEST_DATA. */
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

/* Converts data file `name`; fails the test on error. */
static json_t *convert(const char *name, int autostart, hx_domxml_size_fn fn, void *opaque)
{
    AUTO_STR *xml = load(name);
    char *err = NULL;
    json_t *config = hx_domxml_to_config(xml, autostart, fn, opaque, &err);
    if (!config)
        fail_msg("%s: %s", name, err ? err : "(no message)");
    assert_null(err);
    return config;
}

/* Converts data file `name`, expecting failure with exactly `message`. */
static void expect_error(const char *name, const char *message)
{
    AUTO_STR *xml = load(name);
    AUTO_STR *err = NULL;
    json_t *config = hx_domxml_to_config(xml, 0, NULL, NULL, &err);
    assert_null(config);
    assert_non_null(err);
    assert_string_equal(err, message);
}

static const char *str(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        fail_msg("%s is not a string", key);
    return json_string_value(v);
}

static json_int_t num(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        fail_msg("%s is not an integer", key);
    return json_integer_value(v);
}

static void assert_null_key(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_null(v))
        fail_msg("%s is not null", key);
}

/* Asserts that array `key` of obj holds exactly the given strings (NULL-terminated). */
static void assert_strings(const json_t *obj, const char *key, ...)
{
    json_t *arr = json_object_get(obj, key);
    assert_true(json_is_array(arr));
    va_list ap;
    va_start(ap, key);
    size_t i = 0;
    for (const char *s; (s = va_arg(ap, const char *)); i++) {
        assert_true(i < json_array_size(arr));
        assert_string_equal(json_string_value(json_array_get(arr, i)), s);
    }
    va_end(ap);
    assert_int_equal(json_array_size(arr), i);
}

static json_t *item(const json_t *obj, const char *key, size_t index)
{
    json_t *v = json_array_get(json_object_get(obj, key), index);
    assert_true(json_is_object(v));
    return v;
}

static void test_q35_kvm(void **state)
{
    (void)state;
    AUTO_JSON *c = convert("q35-kvm.xml", 1, NULL, NULL);
    assert_string_equal(str(c, "name"), "web1");
    assert_string_equal(str(c, "uuid"), "0f6c2a55-3f4b-4c1e-9b8e-2d8f1c7a9e01");
    assert_string_equal(str(c, "description"), "Front-end web server");
    assert_string_equal(str(c, "type"), "kvm");
    assert_int_equal(num(c, "vcpus"), 2);
    assert_int_equal(num(c, "max_vcpus"), 4);
    assert_int_equal(num(c, "memory_mib"), 2048);
    assert_int_equal(num(c, "max_memory_mib"), 4096);
    assert_string_equal(str(c, "machine"), "pc-q35-7.2");
    assert_string_equal(str(c, "arch"), "x86_64");
    assert_string_equal(str(c, "firmware"), "bios");
    assert_strings(c, "boot", "hd", "cdrom", NULL);
    assert_true(json_is_true(json_object_get(c, "autostart")));

    assert_int_equal(json_array_size(json_object_get(c, "disks")), 2);
    json_t *vda = item(c, "disks", 0);
    assert_string_equal(str(vda, "target"), "vda");
    assert_string_equal(str(vda, "bus"), "virtio");
    assert_string_equal(str(vda, "device"), "disk");
    assert_string_equal(str(vda, "source"), "/var/lib/libvirt/images/web1.qcow2");
    assert_string_equal(str(vda, "source_type"), "file");
    assert_string_equal(str(vda, "format"), "qcow2");
    assert_true(json_is_false(json_object_get(vda, "readonly")));
    assert_null_key(vda, "size_bytes");
    json_t *sda = item(c, "disks", 1);
    assert_string_equal(str(sda, "target"), "sda");
    assert_string_equal(str(sda, "bus"), "sata");
    assert_string_equal(str(sda, "device"), "cdrom");
    assert_string_equal(str(sda, "format"), "raw");
    assert_true(json_is_true(json_object_get(sda, "readonly")));

    assert_int_equal(json_array_size(json_object_get(c, "nics")), 1);
    json_t *nic = item(c, "nics", 0);
    assert_string_equal(str(nic, "mac"), "52:54:00:6b:3c:58");
    assert_string_equal(str(nic, "type"), "user");
    assert_null_key(nic, "network");
    assert_null_key(nic, "bridge");
    assert_string_equal(str(nic, "model"), "virtio");

    assert_int_equal(json_array_size(json_object_get(c, "graphics")), 1);
    json_t *vnc = item(c, "graphics", 0);
    assert_string_equal(str(vnc, "type"), "vnc");
    assert_int_equal(num(vnc, "port"), -1);
    assert_string_equal(str(vnc, "listen"), "127.0.0.1");

    /* Foreign metadata (libosinfo) is ignored. */
    assert_strings(c, "tags", NULL);
    assert_true(json_is_false(json_object_get(c, "protected")));
    assert_true(json_is_false(json_object_get(c, "template")));
}

static void test_uefi_firmware_attribute(void **state)
{
    (void)state;
    AUTO_JSON *c = convert("uefi-firmware.xml", 0, NULL, NULL);
    assert_string_equal(str(c, "firmware"), "uefi");
    assert_true(json_is_false(json_object_get(c, "autostart")));
    assert_int_equal(num(c, "vcpus"), 2);
    assert_int_equal(num(c, "max_vcpus"), 2);
    json_t *nic = item(c, "nics", 0);
    assert_string_equal(str(nic, "type"), "network");
    assert_string_equal(str(nic, "network"), "default");
    /* spice with autoport and no port attribute, listen element without an address */
    json_t *spice = item(c, "graphics", 0);
    assert_string_equal(str(spice, "type"), "spice");
    assert_null_key(spice, "port");
    assert_null_key(spice, "listen");
}

static void test_uefi_pflash_loader(void **state)
{
    (void)state;
    AUTO_JSON *c = convert("uefi-pflash.xml", 1, NULL, NULL);
    assert_string_equal(str(c, "firmware"), "uefi");
    assert_strings(c, "boot", "network", "hd", NULL);
    assert_strings(c, "disks", NULL);
    json_t *nic = item(c, "nics", 0);
    assert_string_equal(str(nic, "type"), "bridge");
    assert_null_key(nic, "network");
    assert_string_equal(str(nic, "bridge"), "br0");
    assert_string_equal(str(nic, "model"), "e1000e");
    json_t *vnc = item(c, "graphics", 0);
    assert_int_equal(num(vnc, "port"), 5901);
    assert_string_equal(str(vnc, "listen"), "0.0.0.0");
}

static void test_per_device_boot_order(void **state)
{
    (void)state;
    AUTO_JSON *c = convert("boot-order.xml", 0, NULL, NULL);
    assert_strings(c, "boot", "net:52:54:00:01:02:03", "hdc", "vda", NULL);
    assert_int_equal(json_array_size(json_object_get(c, "disks")), 3);
    assert_string_equal(str(item(c, "disks", 2), "bus"), "ide");
}

static void test_memory_units(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        json_int_t current, max;
    } cases[] = {
        {"mem-bytes.xml", 511, 1024},       /* bytes, b; 1 byte short of 512 MiB rounds down */
        {"mem-decimal.xml", 2861, 7629},    /* MB, GB are powers of 1000 */
        {"mem-binary.xml", 16384, 1048576}, /* G, TiB */
        {"mem-short.xml", 1023, 2048},      /* k, M */
        {"mem-kb.xml", 2, 3814},            /* KiB, KB */
        {"no-description.xml", 256, 256},   /* no unit means KiB; no currentMemory */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        AUTO_JSON *c = convert(cases[i].file, 0, NULL, NULL);
        assert_int_equal(num(c, "memory_mib"), cases[i].current);
        assert_int_equal(num(c, "max_memory_mib"), cases[i].max);
    }
}

static void test_memory_unknown_unit(void **state)
{
    (void)state;
    expect_error("mem-badunit.xml", "domain mem-badunit: memory unit 'furlongs' is unknown");
}

static void test_missing_optional_parts(void **state)
{
    (void)state;
    AUTO_JSON *c = convert("no-description.xml", 0, NULL, NULL);
    assert_string_equal(str(c, "description"), "");
    assert_string_equal(str(c, "type"), "qemu");
    assert_string_equal(str(c, "arch"), "aarch64");
    assert_string_equal(str(c, "machine"), "virt-7.2");
    assert_int_equal(num(c, "vcpus"), 1); /* libvirt's default without <vcpu> */
    assert_int_equal(num(c, "max_vcpus"), 1);
    assert_string_equal(str(c, "firmware"), "bios");
    assert_strings(c, "boot", NULL);
    assert_strings(c, "disks", NULL);
    assert_strings(c, "nics", NULL);
    assert_strings(c, "graphics", NULL);
    assert_strings(c, "tags", NULL);
    assert_true(json_is_false(json_object_get(c, "protected")));
    assert_true(json_is_false(json_object_get(c, "template")));
}

static void test_metadata(void **state)
{
    (void)state;
    /* metadata.xml has the children prefixed, as virDomainSetMetadata stores them;
       metadata-plain.xml has them unprefixed, as a hand-written define often does. */
    static const char *const files[] = {"metadata.xml", "metadata-plain.xml"};
    for (size_t i = 0; i < 2; i++) {
        AUTO_JSON *c = convert(files[i], 0, NULL, NULL);
        /* Only the Horcrux namespace counts (the look-alike in another one is ignored), tags are
           trimmed and empty ones dropped. */
        assert_strings(c, "tags", "prod", "db", NULL);
        assert_true(json_is_true(json_object_get(c, "protected")));
        assert_true(json_is_true(json_object_get(c, "template")));
        assert_string_equal(str(c, "description"), "");
    }
}

static void test_storage_sources(void **state)
{
    (void)state;
    AUTO_JSON *c = convert("storage.xml", 0, NULL, NULL);
    json_t *vol = item(c, "disks", 0);
    assert_string_equal(str(vol, "source_type"), "volume");
    assert_string_equal(str(vol, "source"), "default/store1-root.qcow2");
    json_t *blk = item(c, "disks", 1);
    assert_string_equal(str(blk, "source_type"), "block");
    assert_string_equal(str(blk, "source"), "/dev/vg0/store1-data");
    json_t *net = item(c, "disks", 2);
    assert_string_equal(str(net, "source_type"), "network");
    assert_string_equal(str(net, "source"), "rbdpool/store1-log");
    json_t *ro = item(c, "disks", 4);
    assert_null_key(ro, "format");
    assert_true(json_is_true(json_object_get(ro, "readonly")));
}

static void test_empty_cdrom(void **state)
{
    (void)state;
    AUTO_JSON *c = convert("storage.xml", 0, NULL, NULL);
    json_t *cd = item(c, "disks", 3);
    assert_string_equal(str(cd, "target"), "sda");
    assert_string_equal(str(cd, "device"), "cdrom");
    assert_null_key(cd, "source");
    assert_string_equal(str(cd, "source_type"), "file");
    assert_true(json_is_true(json_object_get(cd, "readonly")));
    assert_null_key(cd, "size_bytes");
}

struct size_mock {
    int calls;
};

static int64_t mock_size(const char *source, void *opaque)
{
    struct size_mock *m = opaque;
    m->calls++;
    if (!strcmp(source, "default/store1-root.qcow2"))
        return 21474836480;
    if (!strcmp(source, "/dev/vg0/store1-data"))
        return 0;
    return -1;
}

static void test_size_fn(void **state)
{
    (void)state;
    struct size_mock m = {0};
    AUTO_JSON *c = convert("storage.xml", 0, mock_size, &m);
    assert_int_equal(m.calls, 4); /* not called for the empty cdrom */
    assert_int_equal(num(item(c, "disks", 0), "size_bytes"), 21474836480);
    assert_int_equal(num(item(c, "disks", 1), "size_bytes"), 0);
    assert_null_key(item(c, "disks", 2), "size_bytes");
    assert_null_key(item(c, "disks", 3), "size_bytes");
    assert_null_key(item(c, "disks", 4), "size_bytes");
}

static void test_malformed(void **state)
{
    (void)state;
    AUTO_STR *xml = load("malformed.xml");
    AUTO_STR *err = NULL;
    assert_null(hx_domxml_to_config(xml, 0, NULL, NULL, &err));
    assert_non_null(err);
    assert_non_null(strstr(err, "domain XML: not well-formed XML (line 5: "));
    assert_null(strchr(err, '\n'));
}

static void test_not_a_domain(void **state)
{
    (void)state;
    expect_error("not-a-domain.xml", "domain XML: root element is <network>, not <domain>");
}

static void test_no_name(void **state)
{
    (void)state;
    expect_error("no-name.xml", "domain XML: no <name>");
}

static void test_doctype_rejected(void **state)
{
    (void)state;
    /* Entity bombs and external entities never get looked at, nor does a harmless DOCTYPE. */
    expect_error("doctype.xml", "domain XML: a DOCTYPE is not allowed");
    expect_error("doctype-plain.xml", "domain XML: a DOCTYPE is not allowed");
}

static void test_errors_name_domain_once(void **state)
{
    (void)state;
    /* Two disks lack a target: only the first is reported. */
    expect_error("disk-no-target.xml", "domain notarget: disk 2 has no target device");
    expect_error("bad-vcpu.xml", "domain badcpu: vcpu count 'four' is not an integer");
}

static void test_null_arguments(void **state)
{
    (void)state;
    AUTO_STR *err = NULL;
    assert_null(hx_domxml_to_config(NULL, 0, NULL, NULL, &err));
    assert_string_equal(err, "domain XML: no document");
    assert_null(hx_domxml_to_config("<domain/>", 0, NULL, NULL, NULL)); /* err may be NULL */
    AUTO_JSON *arr = json_array();
    assert_null(hx_domxml_config_dump(arr));
}

static void test_dump_exact_bytes(void **state)
{
    (void)state;
    AUTO_JSON *c = convert("minimal.xml", 1, NULL, NULL);
    AUTO_STR *text = hx_domxml_config_dump(c);
    assert_non_null(text);
    assert_string_equal(text, "{\n"
                              "  \"name\": \"tiny\",\n"
                              "  \"uuid\": \"11111111-2222-3333-4444-555555555555\",\n"
                              "  \"description\": \"\",\n"
                              "  \"type\": \"qemu\",\n"
                              "  \"vcpus\": 1,\n"
                              "  \"max_vcpus\": 1,\n"
                              "  \"memory_mib\": 512,\n"
                              "  \"max_memory_mib\": 512,\n"
                              "  \"machine\": \"pc-i440fx-7.2\",\n"
                              "  \"arch\": \"x86_64\",\n"
                              "  \"firmware\": \"bios\",\n"
                              "  \"boot\": [\n"
                              "    \"hd\"\n"
                              "  ],\n"
                              "  \"autostart\": true,\n"
                              "  \"disks\": [\n"
                              "    {\n"
                              "      \"target\": \"vda\",\n"
                              "      \"bus\": \"virtio\",\n"
                              "      \"device\": \"disk\",\n"
                              "      \"source\": \"/srv/tiny.img\",\n"
                              "      \"source_type\": \"file\",\n"
                              "      \"format\": \"raw\",\n"
                              "      \"readonly\": false,\n"
                              "      \"size_bytes\": null\n"
                              "    }\n"
                              "  ],\n"
                              "  \"nics\": [\n"
                              "    {\n"
                              "      \"mac\": \"52:54:00:00:00:01\",\n"
                              "      \"type\": \"network\",\n"
                              "      \"network\": \"default\",\n"
                              "      \"bridge\": null,\n"
                              "      \"model\": null\n"
                              "    }\n"
                              "  ],\n"
                              "  \"graphics\": [],\n"
                              "  \"tags\": [],\n"
                              "  \"protected\": false,\n"
                              "  \"template\": false\n"
                              "}\n");
}

static void test_dump_reorders_keys(void **state)
{
    (void)state;
    /* An object built in another order (e.g. edited by a caller) comes out in schema order,
       with keys unknown to the schema last. */
    AUTO_JSON *c = json_pack("{s:b, s:s, s:i, s:[{s:s, s:s}], s:s}", "protected", 1, "extra", "x",
                             "vcpus", 2, "disks", "format", "raw", "target", "vdz", "name", "n");
    assert_non_null(c);
    AUTO_STR *text = hx_domxml_config_dump(c);
    assert_non_null(text);
    assert_string_equal(text, "{\n"
                              "  \"name\": \"n\",\n"
                              "  \"vcpus\": 2,\n"
                              "  \"disks\": [\n"
                              "    {\n"
                              "      \"target\": \"vdz\",\n"
                              "      \"format\": \"raw\"\n"
                              "    }\n"
                              "  ],\n"
                              "  \"protected\": true,\n"
                              "  \"extra\": \"x\"\n"
                              "}\n");
    /* The caller's object is left as it was. */
    const char *first = json_object_iter_key(json_object_iter(c));
    assert_string_equal(first, "protected");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q35_kvm),
        cmocka_unit_test(test_uefi_firmware_attribute),
        cmocka_unit_test(test_uefi_pflash_loader),
        cmocka_unit_test(test_per_device_boot_order),
        cmocka_unit_test(test_memory_units),
        cmocka_unit_test(test_memory_unknown_unit),
        cmocka_unit_test(test_missing_optional_parts),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_storage_sources),
        cmocka_unit_test(test_empty_cdrom),
        cmocka_unit_test(test_size_fn),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_not_a_domain),
        cmocka_unit_test(test_no_name),
        cmocka_unit_test(test_doctype_rejected),
        cmocka_unit_test(test_errors_name_domain_once),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_dump_exact_bytes),
        cmocka_unit_test(test_dump_reorders_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
