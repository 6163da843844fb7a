/* Unit tests for backend/domxml.c (libvirt domain XML -> config.json). */
#include "hxtest.h"

#include "hx_domxml.h"

#include <string.h>

/* Converts data file `name`; fails the test on error. */
static json_t *convert(const char *name, int autostart, hx_domxml_size_fn fn, void *opaque)
{
    AUTO_STR *xml = hxt_load(name);
    char *err = NULL;
    json_t *config = hx_domxml_to_config(xml, autostart, fn, opaque, &err);
    if (!config)
        fail_msg("%s: %s", name, err ? err : "(no message)");
    assert_null(err);
    return config;
}

/* Converts data file `name` (no sizes): the config holds expect (see hxt_expect). */
static void expect_config(const char *name, int autostart, const char *expect)
{
    AUTO_JSON *c = convert(name, autostart, NULL, NULL);
    hxt_expect(c, name, expect);
}

/* Converts data file `name`, expecting failure with exactly `message`. */
static void expect_error(const char *name, const char *message)
{
    AUTO_STR *xml = hxt_load(name);
    AUTO_STR *err = NULL;
    json_t *config = hx_domxml_to_config(xml, 0, NULL, NULL, &err);
    assert_null(config);
    assert_non_null(err);
    assert_string_equal(err, message);
}

static void test_q35_kvm(void **state)
{
    (void)state;
    expect_config("q35-kvm.xml", 1,
                  "{'name': 'web1', 'uuid': '0f6c2a55-3f4b-4c1e-9b8e-2d8f1c7a9e01',"
                  " 'description': 'Front-end web server', 'type': 'kvm', 'vcpus': 2,"
                  " 'max_vcpus': 4, 'memory_mib': 2048, 'max_memory_mib': 4096,"
                  " 'machine': 'pc-q35-7.2', 'arch': 'x86_64', 'firmware': 'bios',"
                  " 'boot': ['hd', 'cdrom'], 'autostart': true,"
                  " 'disks#': 2, 'disks[0].target': 'vda', 'disks[0].bus': 'virtio',"
                  " 'disks[0].device': 'disk',"
                  " 'disks[0].source': '/var/lib/libvirt/images/web1.qcow2',"
                  " 'disks[0].source_type': 'file', 'disks[0].format': 'qcow2',"
                  " 'disks[0].readonly': false, 'disks[0].size_bytes': null,"
                  " 'disks[1].target': 'sda', 'disks[1].bus': 'sata', 'disks[1].device': 'cdrom',"
                  " 'disks[1].format': 'raw', 'disks[1].readonly': true,"
                  " 'nics#': 1, 'nics[0].mac': '52:54:00:6b:3c:58', 'nics[0].type': 'user',"
                  " 'nics[0].network': null, 'nics[0].bridge': null, 'nics[0].model': 'virtio',"
                  " 'graphics#': 1, 'graphics[0].type': 'vnc', 'graphics[0].port': -1,"
                  " 'graphics[0].listen': '127.0.0.1',"
                  /* Foreign metadata (libosinfo) is ignored. */
                  " 'tags': [], 'protected': false, 'template': false}");
}

static void test_uefi_firmware_attribute(void **state)
{
    (void)state;
    expect_config("uefi-firmware.xml", 0,
                  "{'firmware': 'uefi', 'autostart': false, 'vcpus': 2, 'max_vcpus': 2,"
                  " 'nics[0].type': 'network', 'nics[0].network': 'default',"
                  /* spice with autoport and no port attribute, listen element without an
                     address */
                  " 'graphics[0].type': 'spice', 'graphics[0].port': null,"
                  " 'graphics[0].listen': null}");
}

static void test_uefi_pflash_loader(void **state)
{
    (void)state;
    expect_config("uefi-pflash.xml", 1,
                  "{'firmware': 'uefi', 'boot': ['network', 'hd'], 'disks': [],"
                  " 'nics[0].type': 'bridge', 'nics[0].network': null, 'nics[0].bridge': 'br0',"
                  " 'nics[0].model': 'e1000e', 'graphics[0].port': 5901,"
                  " 'graphics[0].listen': '0.0.0.0'}");
}

static void test_per_device_boot_order(void **state)
{
    (void)state;
    expect_config("boot-order.xml", 0,
                  "{'boot': ['net:52:54:00:01:02:03', 'hdc', 'vda'], 'disks#': 3,"
                  " 'disks[2].bus': 'ide'}");
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
        assert_int_equal(hxt_int(c, "memory_mib"), cases[i].current);
        assert_int_equal(hxt_int(c, "max_memory_mib"), cases[i].max);
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
    expect_config("no-description.xml", 0,
                  "{'description': '', 'type': 'qemu', 'arch': 'aarch64', 'machine': 'virt-7.2',"
                  /* libvirt's default without <vcpu> */
                  " 'vcpus': 1, 'max_vcpus': 1, 'firmware': 'bios', 'boot': [], 'disks': [],"
                  " 'nics': [], 'graphics': [], 'tags': [], 'protected': false,"
                  " 'template': false}");
}

static void test_metadata(void **state)
{
    (void)state;
    /* metadata.xml has the children prefixed, as virDomainSetMetadata stores them;
       metadata-plain.xml has them unprefixed, as a hand-written define often does. */
    static const char *const files[] = {"metadata.xml", "metadata-plain.xml"};
    for (size_t i = 0; i < 2; i++)
        /* Only the Horcrux namespace counts (the look-alike in another one is ignored), tags are
           trimmed and empty ones dropped. */
        expect_config(files[i], 0,
                      "{'tags': ['prod', 'db'], 'protected': true, 'template': true,"
                      " 'description': ''}");
}

static void test_storage_sources(void **state)
{
    (void)state;
    expect_config(
        "storage.xml", 0,
        "{'disks[0].source_type': 'volume', 'disks[0].source': 'default/store1-root.qcow2',"
        " 'disks[1].source_type': 'block', 'disks[1].source': '/dev/vg0/store1-data',"
        " 'disks[2].source_type': 'network', 'disks[2].source': 'rbdpool/store1-log',"
        " 'disks[4].format': null, 'disks[4].readonly': true}");
}

static void test_empty_cdrom(void **state)
{
    (void)state;
    expect_config("storage.xml", 0,
                  "{'disks[3].target': 'sda', 'disks[3].device': 'cdrom', 'disks[3].source': null,"
                  " 'disks[3].source_type': 'file', 'disks[3].readonly': true,"
                  " 'disks[3].size_bytes': null}");
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
    hxt_expect(c, "storage.xml",
               "{'disks[0].size_bytes': 21474836480, 'disks[1].size_bytes': 0,"
               " 'disks[2].size_bytes': null, 'disks[3].size_bytes': null,"
               " 'disks[4].size_bytes': null}");
}

static void test_malformed(void **state)
{
    (void)state;
    AUTO_STR *xml = hxt_load("malformed.xml");
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

HXT_MAIN(cmocka_unit_test(test_q35_kvm), cmocka_unit_test(test_uefi_firmware_attribute),
         cmocka_unit_test(test_uefi_pflash_loader), cmocka_unit_test(test_per_device_boot_order),
         cmocka_unit_test(test_memory_units), cmocka_unit_test(test_memory_unknown_unit),
         cmocka_unit_test(test_missing_optional_parts), cmocka_unit_test(test_metadata),
         cmocka_unit_test(test_storage_sources), cmocka_unit_test(test_empty_cdrom),
         cmocka_unit_test(test_size_fn), cmocka_unit_test(test_malformed),
         cmocka_unit_test(test_not_a_domain), cmocka_unit_test(test_no_name),
         cmocka_unit_test(test_doctype_rejected), cmocka_unit_test(test_errors_name_domain_once),
         cmocka_unit_test(test_null_arguments), cmocka_unit_test(test_dump_exact_bytes),
         cmocka_unit_test(test_dump_reorders_keys))
