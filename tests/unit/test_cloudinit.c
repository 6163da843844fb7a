/* Unit tests: cloud-init documents as a domain XML's metadata records them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hx_cloudinit.h"
#include "hx_util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *xml_with(const char *inner)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf),
             "<domain type='qemu'><name>v</name><metadata>%s</metadata><devices/></domain>", inner);
    return buf;
}

static void unset_files_read_empty(void **state)
{
    (void)state;
    for (int i = 0; hx_ci_files[i]; i++) {
        char *out = NULL;
        size_t len = 99;
        assert_int_equal(hx_ci_read(xml_with(""), hx_ci_files[i], &out, &len), 0);
        assert_non_null(out);
        assert_int_equal(len, 0);
        free(out);
    }
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(hx_ci_read(NULL, "user-data", &out, &len), 0);
    assert_int_equal(len, 0);
    free(out);
}

static void base64_elements_decode(void **state)
{
    (void)state;
    /* "#cloud-config\n" and three bytes with a NUL, as libvirt stores our element. */
    const char *xml = xml_with("<hxci:cloudinit xmlns:hxci='" HX_CI_NS "'>"
                               "<user-data>I2Nsb3VkLWNvbmZpZwo=</user-data>"
                               "<network-config>AQAC</network-config></hxci:cloudinit>");
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(hx_ci_read(xml, "user-data", &out, &len), 0);
    assert_int_equal(len, 14);
    assert_memory_equal(out, "#cloud-config\n", 14);
    free(out);
    assert_int_equal(hx_ci_read(xml, "network-config", &out, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(out, "\x01\x00\x02", 3);
    free(out);
    assert_int_equal(hx_ci_read(xml, "meta-data", &out, &len), 0);
    assert_int_equal(len, 0);
    free(out);
}

static void other_namespaces_ignored(void **state)
{
    (void)state;
    const char *xml = xml_with("<x:cloudinit xmlns:x='urn:other'><user-data>eA==</user-data>"
                               "</x:cloudinit>");
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(hx_ci_read(xml, "user-data", &out, &len), 0);
    assert_int_equal(len, 0);
    free(out);
}

static void unknown_file_einval(void **state)
{
    (void)state;
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(hx_ci_read(xml_with(""), "vendor-data", &out, &len), -EINVAL);
    assert_true(hx_ci_is_file("meta-data"));
    assert_false(hx_ci_is_file("meta"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unset_files_read_empty),
        cmocka_unit_test(base64_elements_decode),
        cmocka_unit_test(other_namespaces_ignored),
        cmocka_unit_test(unknown_file_einval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
