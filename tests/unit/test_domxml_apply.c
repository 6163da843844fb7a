/* Unit tests for backend/domxml_apply.c (config.json -> libvirt domain XML): round trips, and
 * changing one field at a time. */
#include "hxtest_domxml.h"

#include <string.h>

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
        AUTO_STR *xml = hxt_load(*s);
        AUTO_JSON *before = hxt_to_config(xml);
        AUTO_STR *out = NULL;
        AUTO_STR *err = NULL;
        AUTO_JSON *vols = NULL;
        int rc = hx_domxml_apply(xml, before, &hxt_node, &out, &vols, &err);
        if (rc)
            fail_msg("%s: %s", *s, err ? err : "?");
        assert_string_equal(out, xml); /* nothing changed: byte-identical */
        assert_int_equal(json_array_size(vols), 0);
        AUTO_JSON *after = hxt_to_config(out);
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
        AUTO_STR *xml = hxt_load(*f);
        AUTO_STR *err = NULL;
        AUTO_JSON *c = hx_domxml_to_config(xml, 1, size_of, NULL, &err);
        assert_non_null(c);
        AUTO_STR *out = NULL;
        AUTO_JSON *vols = NULL;
        if (hx_domxml_apply(xml, c, &hxt_node, &out, &vols, &err))
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
        AUTO_STR *xml = hxt_load(*s);
        AUTO_JSON *before = hxt_to_config(xml);
        AUTO_JSON *config = json_deep_copy(before);
        json_object_set_new(config, "description", json_string("edited & <escaped>"));
        AUTO_STR *out = NULL;
        AUTO_STR *err = NULL;
        AUTO_JSON *vols = NULL;
        if (hx_domxml_apply(xml, config, &hxt_node, &out, &vols, &err))
            fail_msg("%s: %s", *s, err);
        AUTO_JSON *after = hxt_to_config(out);
        assert_true(json_equal(config, after));
        /* Apply the original back: the old config comes back. */
        AUTO_STR *back = NULL;
        AUTO_STR *err2 = NULL;
        AUTO_JSON *vols2 = NULL;
        assert_int_equal(hx_domxml_apply(out, before, &hxt_node, &back, &vols2, &err2), 0);
        AUTO_JSON *again = hxt_to_config(back);
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
    AUTO_STR *out =
        hxt_apply_ok("apply-base.xml",
                     "{'disks':[{'target':'vdb'},{'target':'vda'},{'target':'sda'}],"
                     "'nics':[{'mac':null,'network':'lan'},{'mac':'52:54:00:00:00:01'}]}",
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
    AUTO_STR *out2 = hxt_apply_ok(
        "apply-base.xml", "{'disks':[{'target':'vdb'},{'target':'sda'},{'target':'vda'}]}", NULL);
    AUTO_JSON *c = hxt_to_config(out2);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(c, "disks"), 2), "target")),
                        "vda");
    AUTO_JSON *c2 = hxt_to_config(out2);
    AUTO_STR *out3 = NULL;
    AUTO_STR *err3 = NULL;
    AUTO_JSON *vols = NULL;
    assert_int_equal(hx_domxml_apply(out2, c2, &hxt_node, &out3, &vols, &err3), 0);
    assert_string_equal(out3, out2);
}

/* ---- changing one field at a time -------------------------------------------------------- */

/* Applying patch to file gives a config that holds expect (see hxt_expect). */
struct change_case {
    const char *file;
    const char *patch;
    const char *expect;
};

static void run_changes(const struct change_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        AUTO_JSON *c = hxt_change(cases[i].file, cases[i].patch);
        hxt_expect(c, cases[i].patch, cases[i].expect);
    }
}

static const struct change_case scalar_changes[] = {
    {"apply-base.xml", "{'description':'new text'}", "{'description': 'new text'}"},
    {"apply-base.xml", "{'description':''}", "{'description': ''}"},
    {"apply-base.xml", "{'vcpus':4}", "{'vcpus': 4, 'max_vcpus': 4}"},
    {"apply-base.xml", "{'max_vcpus':8}", "{'vcpus': 2, 'max_vcpus': 8}"},
    {"apply-base.xml", "{'memory_mib':2048}", "{'memory_mib': 2048, 'max_memory_mib': 2048}"},
    /* Raising the current amount alone raises the maximum with it. */
    {"apply-base.xml", "{'memory_mib':4096, 'vcpus':6}",
     "{'memory_mib': 4096, 'max_memory_mib': 4096, 'vcpus': 6, 'max_vcpus': 6}"},
    {"apply-base.xml", "{'max_memory_mib':8192, 'memory_mib':4096}",
     "{'memory_mib': 4096, 'max_memory_mib': 8192}"},
    {"apply-base.xml", "{'machine':'pc-q35-8.0'}", "{'machine': 'pc-q35-8.0'}"},
    {"apply-base.xml", "{'machine':null}", "{'machine': null}"},
    {"apply-base.xml", "{'firmware':'uefi'}", "{'firmware': 'uefi'}"},
    {"uefi-pflash.xml", "{'firmware':'bios'}", "{'firmware': 'bios'}"},
    {"uefi-firmware.xml", "{'firmware':'bios'}", "{'firmware': 'bios'}"},
    {"apply-base.xml", "{'tags':['a','b c'], 'protected':true}",
     "{'tags#': 2, 'tags[1]': 'b c', 'protected': true}"},
    {"minimal.xml", "{'tags':['x']}", "{'tags[0]': 'x'}"},
    {"minimal.xml", "{'protected':true}", "{'protected': true, 'template': false}"},
    {"apply-base.xml", "{'template':true}", "{'template': true, 'protected': false}"},
    {"minimal.xml", "{'template':true, 'protected':true}", "{'template': true, 'protected': true}"},
    {"apply-base.xml", "{'tags':[]}", "{'tags#': 0}"},
    {"apply-base.xml", "{'autostart':true, 'uuid':null}",
     "{'uuid': '7d1c9a3e-5b2f-4e8a-9c6d-1f0e2b3a4c5d'}"},
};

static void test_change_scalars(void **state)
{
    (void)state;
    run_changes(scalar_changes, sizeof(scalar_changes) / sizeof(scalar_changes[0]));
}

static const struct change_case boot_changes[] = {
    {"apply-base.xml", "{'boot':['network','cdrom','hd']}", "{'boot#': 3, 'boot[0]': 'network'}"},
    /* Per-device form: the same list is fine, a new one is written as <boot order>. */
    {"boot-order.xml", "{'boot':['vda','net:52:54:00:01:02:03']}",
     "{'boot#': 2, 'boot[0]': 'vda', 'boot[1]': 'net:52:54:00:01:02:03'}"},
    {"boot-order.xml", "{'boot':['hd']}", "{'boot#': 1, 'boot[0]': 'hd'}"},
    {"apply-base.xml", "{'boot':[]}", "{'boot#': 0}"},
};

static void test_change_boot(void **state)
{
    (void)state;
    run_changes(boot_changes, sizeof(boot_changes) / sizeof(boot_changes[0]));
}

static const struct change_case disk_changes[] = {
    {"apply-base.xml",
     "{'disks':[{'target':'vda','bus':'sata','format':'raw','readonly':true},"
     "{'target':'vdb'},{'target':'sda'}]}",
     "{'disks[0].bus': 'sata', 'disks[0].format': 'raw', 'disks[0].readonly': true,"
     " 'disks[0].source': '/var/lib/libvirt/images/app1.qcow2'}"},
    /* Source, source type and device changes. */
    {"apply-base.xml",
     "{'disks':[{'target':'vda','source_type':'block','source':'/dev/vg/app1'},"
     "{'target':'sda','source':'/srv/iso/debian.iso'}]}",
     "{'disks#': 2, 'disks[0].source_type': 'block', 'disks[0].source': '/dev/vg/app1',"
     " 'disks[1].source': '/srv/iso/debian.iso', 'disks[1].device': 'cdrom'}"},
    /* Removing all. */
    {"apply-base.xml", "{'disks':[]}", "{'disks#': 0}"},
    /* A new file disk with defaults, and a volume disk on an existing volume. */
    {"minimal.xml",
     "{'disks':[{'target':'vda','source':'/srv/x.img'},{'target':'sdb','source_type':'volume',"
     "'source':'default/app1-data','format':'qcow2'}]}",
     "{'disks[0].bus': 'virtio', 'disks[0].format': 'raw', 'disks[0].source_type': 'file',"
     " 'disks[0].device': 'disk', 'disks[1].bus': 'sata', 'disks[1].source': 'default/app1-data',"
     " 'disks[1].format': 'qcow2'}"},
    /* Inserted in order before the existing ones. */
    {"apply-base.xml",
     "{'disks':[{'target':'hda','device':'cdrom'},{'target':'vda'},{'target':'vdb'},"
     "{'target':'sda'}]}",
     "{'disks[0].target': 'hda', 'disks[0].bus': 'ide', 'disks[0].source': null,"
     " 'disks[3].target': 'sda'}"},
};

static void test_change_disks(void **state)
{
    (void)state;
    run_changes(disk_changes, sizeof(disk_changes) / sizeof(disk_changes[0]));
}

static void test_new_volumes(void **state)
{
    (void)state;
    json_t *vols = NULL;
    AUTO_STR *out = hxt_apply_ok("apply-base.xml",
                                 "{'disks':[{'target':'vda'},{'target':'vdb','size_bytes':"
                                 "10737418240},{'target':'vdc','source_type':'volume',"
                                 "'source':'fast/app1-new','format':'qcow2','size_bytes':"
                                 "1073741824}]}",
                                 &vols);
    AUTO_JSON *v = vols;
    hxt_expect(v, "the new volumes",
               "{'#': 1, '[0].pool': 'fast', '[0].name': 'app1-new', '[0].format': 'qcow2',"
               " '[0].size_bytes': 1073741824}");
    AUTO_JSON *c = hxt_to_config(out);
    hxt_expect(c, "the config",
               "{'disks[2].source': 'fast/app1-new', 'disks[2].source_type': 'volume'}");
}

static const struct change_case nic_and_graphics_changes[] = {
    {"apply-base.xml",
     "{'nics':[{'mac':'52:54:00:00:00:01','type':'bridge','network':null,'bridge':'br0',"
     "'model':'e1000e'},{'mac':'52:54:00:aa:bb:cc','network':'lan'}]}",
     "{'nics[0].type': 'bridge', 'nics[0].bridge': 'br0', 'nics[0].network': null,"
     " 'nics[0].model': 'e1000e', 'nics[1].type': 'network', 'nics[1].network': 'lan',"
     " 'nics[1].model': 'virtio'}"},
    {"apply-base.xml", "{'nics':[{'mac':'52:54:00:00:00:01','network':'lan','model':null}]}",
     "{'nics[0].network': 'lan', 'nics[0].model': null}"},
    {"apply-base.xml", "{'nics':[]}", "{'nics#': 0}"},
    {"apply-base.xml",
     "{'graphics':[{'type':'vnc','port':5905,'listen':'0.0.0.0'},{'type':'spice'}]}",
     "{'graphics[0].port': 5905, 'graphics[0].listen': '0.0.0.0', 'graphics[1].type': 'spice',"
     " 'graphics[1].port': -1}"},
    {"apply-base.xml", "{'graphics':[]}", "{'graphics#': 0}"},
    {"minimal.xml",
     "{'nics':[{'mac':'52:54:00:aa:bb:01','type':'user'}],'graphics':[{'type':'vnc'}]}",
     "{'nics[0].type': 'user', 'graphics#': 1}"},
};

static void test_change_nics_and_graphics(void **state)
{
    (void)state;
    run_changes(nic_and_graphics_changes,
                sizeof(nic_and_graphics_changes) / sizeof(nic_and_graphics_changes[0]));
}

HXT_MAIN(cmocka_unit_test(test_round_trip_identity), cmocka_unit_test(test_round_trip_with_sizes),
         cmocka_unit_test(test_round_trip_keeps_unknown),
         cmocka_unit_test(test_reorder_and_mac_less_nic), cmocka_unit_test(test_change_scalars),
         cmocka_unit_test(test_change_boot), cmocka_unit_test(test_change_disks),
         cmocka_unit_test(test_new_volumes), cmocka_unit_test(test_change_nics_and_graphics))
