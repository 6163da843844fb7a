/* Unit tests: snapshot names, the free space estimate, info.json from libvirt's XML. */
#include "hxtest.h"

#include "hx_snapshots.h"

#include <errno.h>
#include <string.h>

#define MIB (1024ULL * 1024ULL)

static void names(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(hx_snap_check_name("before-upgrade", &why), 0);
    assert_int_equal(hx_snap_check_name("été 2026", &why), 0);
    const char *bad[] = {"", ".hidden", "a/b", "current", "tab\there", "\x7f", "\xff\xfe"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        assert_int_equal(hx_snap_check_name(bad[i], &why), -EINVAL);
        assert_non_null(why);
    }
    char longname[HX_SNAP_NAME_MAX + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(hx_snap_check_name(longname, &why), -EINVAL);
    longname[HX_SNAP_NAME_MAX] = '\0';
    assert_int_equal(hx_snap_check_name(longname, &why), 0);
}

static void space(void **state)
{
    (void)state;
    /* A shut-off VM: disk growth alone, at least 1 MiB per disk. */
    assert_int_equal(hx_snap_space_needed(0, 16 * MIB, 1), 1 * MIB);
    assert_int_equal(hx_snap_space_needed(0, 64 * 1024 * MIB, 2), 2 * 1024 * MIB);
    /* A running VM of 64 MiB with a 16 MiB disk: memory + 1/16 + 1 MiB = 69 MiB, more than a
     * 16 MiB pool has (the integration test's ENOSPC case). */
    uint64_t need = hx_snap_space_needed(64 * MIB, 16 * MIB, 1);
    assert_int_equal(need, 64 * MIB + 4 * MIB + 1 * MIB);
    assert_true(need > 16 * MIB);
}

static const char snap_xml[] =
    "<domainsnapshot><name>s2</name><description>before &lt;it&gt;</description>"
    "<state>running</state><parent><name>s1</name></parent>"
    "<creationTime>1796167948</creationTime><memory snapshot='internal'/>"
    "<disks><disk name='vda' snapshot='internal'/><disk name='vdb' snapshot='no'/></disks>"
    "<domain type='qemu'><name>100</name></domain></domainsnapshot>";

static void info(void **state)
{
    (void)state;
    json_t *kids = json_pack("[s]", "s3");
    json_t *j = hx_snap_info_from_xml(snap_xml, 1, kids, "application");
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "s2");
    assert_string_equal(json_string_value(json_object_get(j, "parent")), "s1");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "children"), 0)), "s3");
    assert_string_equal(json_string_value(json_object_get(j, "created")),
                        "2026-12-01T23:32:28.000Z");
    assert_string_equal(json_string_value(json_object_get(j, "state")), "running");
    assert_true(json_is_true(json_object_get(j, "memory")));
    assert_true(json_is_false(json_object_get(j, "disk_only")));
    assert_string_equal(json_string_value(json_object_get(j, "consistency")), "application");
    assert_string_equal(json_string_value(json_object_get(j, "description")), "before <it>");
    assert_true(json_is_true(json_object_get(j, "current")));
    json_t *d = json_array_get(json_object_get(j, "disks"), 1);
    assert_string_equal(json_string_value(json_object_get(d, "target")), "vdb");
    assert_string_equal(json_string_value(json_object_get(d, "snapshot")), "no");
    json_decref(j);
    json_decref(kids);

    /* A root snapshot of a shut-off VM, no description. */
    j = hx_snap_info_from_xml("<domainsnapshot><name>a</name><state>shutoff</state>"
                              "<creationTime>0</creationTime><memory snapshot='no'/>"
                              "</domainsnapshot>",
                              0, NULL, NULL);
    assert_non_null(j);
    assert_true(json_is_null(json_object_get(j, "parent")));
    assert_true(json_is_false(json_object_get(j, "memory")));
    assert_string_equal(json_string_value(json_object_get(j, "consistency")), "crash");
    assert_string_equal(json_string_value(json_object_get(j, "description")), "");
    assert_int_equal(json_array_size(json_object_get(j, "children")), 0);
    json_decref(j);

    assert_null(hx_snap_info_from_xml("not xml", 0, NULL, NULL));
    assert_null(hx_snap_info_from_xml("<domainsnapshot/>", 0, NULL, NULL));
}

/* The btrfs copies recorded in a domain's metadata: those of kind btrfs only, by namespace. */
static void btrfs_volumes(void **state)
{
    (void)state;
    json_t *v = hx_snap_btrfs_volumes(
        "<domain><name>a</name><metadata>"
        "<s:snapshots xmlns:s='https://horcrux.dev/xmlns/snapshots/1' current='x'>"
        "<s:snapshot name='x' kind='btrfs'><s:disk target='vda' pool='fast' volume='a.img' "
        "copy='.a.img@x'/><s:disk target='vdb' pool='p2' volume='b.img' copy='.b.img@x'/>"
        "</s:snapshot><s:snapshot name='y' consistency='application'/></s:snapshots>"
        "<other:snapshots xmlns:other='urn:other'><other:snapshot kind='btrfs'>"
        "<other:disk pool='fast' copy='mine'/></other:snapshot></other:snapshots>"
        "</metadata></domain>");
    assert_int_equal(json_array_size(v), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(v, 0), "pool")), "fast");
    assert_string_equal(json_string_value(json_object_get(json_array_get(v, 0), "name")),
                        ".a.img@x");
    assert_string_equal(json_string_value(json_object_get(json_array_get(v, 1), "name")),
                        ".b.img@x");
    json_decref(v);
    v = hx_snap_btrfs_volumes("<domain/>");
    assert_int_equal(json_array_size(v), 0);
    json_decref(v);
    v = hx_snap_btrfs_volumes(NULL);
    assert_int_equal(json_array_size(v), 0);
    json_decref(v);
}

HXT_MAIN(cmocka_unit_test(names), cmocka_unit_test(space), cmocka_unit_test(info),
         cmocka_unit_test(btrfs_volumes))
