/* Unit tests for backend/domxml_new.c, domxml_device.c and domxml_name.c: the XML of a new VM,
 * one device's XML, VM names. */
#include "hxtest_domxml.h"

#include <errno.h>
#include <string.h>

static void test_new_vm(void **state)
{
    (void)state;
    char *err = NULL;
    AUTO_STR *xml = hx_domxml_new("fresh & <new>", "kvm", &err);
    assert_non_null(xml);
    AUTO_JSON *c = hxt_to_config(xml);
    hxt_expect(
        c, "a new VM's config",
        "{'name': 'fresh & <new>', 'type': 'kvm', 'vcpus': 1, 'max_vcpus': 1, 'memory_mib': 512,"
        " 'max_memory_mib': 512, 'machine': null, 'arch': 'x86_64', 'firmware': 'bios',"
        " 'boot#': 1, 'disks#': 0, 'nics#': 0, 'graphics#': 0}");
    assert_non_null(strstr(xml, "<on_poweroff>destroy</on_poweroff>"));
    assert_non_null(strstr(xml, "<on_reboot>restart</on_reboot>"));
    assert_non_null(strstr(xml, "<on_crash>destroy</on_crash>"));
    /* And it can be configured by writing config.json. */
    AUTO_JSON *w = json_deep_copy(c);
    json_object_set_new(w, "disks", json_pack("[{s:s, s:s}]", "target", "vda", "source", "/x.img"));
    AUTO_STR *out = NULL;
    AUTO_STR *err2 = NULL;
    AUTO_JSON *vols = NULL;
    assert_int_equal(hx_domxml_apply(xml, w, &hxt_node, &out, &vols, &err2), 0);
    AUTO_JSON *c2 = hxt_to_config(out);
    hxt_expect(c2, "the config written", "{'disks[0].source': '/x.img'}");
}

static void test_device(void **state)
{
    (void)state;
    AUTO_STR *xml = hxt_load("apply-base.xml");
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

HXT_MAIN(cmocka_unit_test(test_new_vm), cmocka_unit_test(test_device),
         cmocka_unit_test(test_check_name))
