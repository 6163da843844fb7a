/* Unit tests: cloud-init documents as a domain XML's metadata records them. */
#include "hxtest.h"

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

/* hx_ci_read(xml, file) succeeds with the len bytes of data; returns them (free them). */
static char *read_ok(const char *xml, const char *file, const char *data, size_t len)
{
    char *out = NULL;
    size_t got = 99;
    assert_int_equal(hx_ci_read(xml, file, &out, &got), 0);
    assert_int_equal(got, len);
    if (len)
        assert_memory_equal(out, data, len);
    return out;
}

static void unset_files_read_empty(void **state)
{
    (void)state;
    for (int i = 0; hx_ci_files[i]; i++) {
        AUTO_STR *out = read_ok(xml_with(""), hx_ci_files[i], NULL, 0);
        assert_non_null(out);
    }
    free(read_ok(NULL, "user-data", NULL, 0));
}

static void base64_elements_decode(void **state)
{
    (void)state;
    /* "#cloud-config\n" and three bytes with a NUL, as libvirt stores our element. */
    const char *xml = xml_with("<hxci:cloudinit xmlns:hxci='" HX_CI_NS "'>"
                               "<user-data>I2Nsb3VkLWNvbmZpZwo=</user-data>"
                               "<network-config>AQAC</network-config></hxci:cloudinit>");
    free(read_ok(xml, "user-data", "#cloud-config\n", 14));
    free(read_ok(xml, "network-config", "\x01\x00\x02", 3));
    free(read_ok(xml, "meta-data", NULL, 0));
}

static void other_namespaces_ignored(void **state)
{
    (void)state;
    const char *xml = xml_with("<x:cloudinit xmlns:x='urn:other'><user-data>eA==</user-data>"
                               "</x:cloudinit>");
    free(read_ok(xml, "user-data", NULL, 0));
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

HXT_MAIN(cmocka_unit_test(unset_files_read_empty), cmocka_unit_test(base64_elements_decode),
         cmocka_unit_test(other_namespaces_ignored), cmocka_unit_test(unknown_file_einval))
