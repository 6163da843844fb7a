/* Unit tests for backend/domxml_apply.c: config.json documents it refuses, each with a message
 * naming the field at fault. */
#include "hxtest_domxml.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
        AUTO_STR *xml = hxt_load(i < n ? bad_cases[i].file : "apply-base.xml");
        AUTO_JSON *config = NULL;
        const char *field;
        if (i < n) {
            config = hxt_patched(xml, bad_cases[i].patch);
            field = bad_cases[i].field;
        } else {
            config = hxt_to_config(xml);
            json_object_set_new(config, "description", json_string(long_desc));
            field = "description";
        }
        AUTO_STR *out = NULL;
        AUTO_STR *err = NULL;
        json_t *vols = NULL;
        int rc = hx_domxml_apply(xml, config, &hxt_node, &out, &vols, &err);
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
    AUTO_STR *xml = hxt_load("apply-base.xml");
    AUTO_JSON *arr = json_array();
    char *out = NULL, *err = NULL;
    json_t *vols = NULL;
    assert_int_equal(hx_domxml_apply(xml, arr, &hxt_node, &out, &vols, &err), -EINVAL);
    assert_non_null(strstr(err, "must be a JSON object"));
    free(err);
    AUTO_JSON *c = hxt_to_config(xml);
    assert_int_equal(hx_domxml_apply("<domain><oops", c, &hxt_node, &out, &vols, &err), -EIO);
    assert_non_null(err);
    free(err);
    /* No env: no reference checks. */
    AUTO_JSON *c2 = hxt_patched(xml, "{'nics':[{'mac':'52:54:00:00:00:01','network':'x'}]}");
    assert_int_equal(hx_domxml_apply(xml, c2, NULL, &out, &vols, NULL), 0);
    free(out);
    json_decref(vols);
}

HXT_MAIN(cmocka_unit_test(test_invalid_documents), cmocka_unit_test(test_not_an_object_and_bad_xml))
