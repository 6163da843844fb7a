/* Unit tests: the configuration file parser. */
#include "hxtest.h"

#include "hx_conf.h"

#include <stdlib.h>
#include <string.h>

static void parses_nodes(void **state)
{
    (void)state;
    hx_conf c = {0};
    char *err = NULL;
    const char *text = "# comment\n\n[node n1]\nuri = qemu+unix:///system?socket=/a/b\n"
                       "; other comment\n[ node  n-2.x ]\n  uri=qemu:///system  \n";
    assert_int_equal(hx_conf_parse(text, "t", &c, &err), 0);
    assert_null(err);
    assert_int_equal(c.n_nodes, 2);
    assert_string_equal(c.nodes[0].name, "n1");
    assert_string_equal(c.nodes[0].uri, "qemu+unix:///system?socket=/a/b");
    assert_string_equal(c.nodes[1].name, "n-2.x");
    assert_string_equal(c.nodes[1].uri, "qemu:///system");
    hx_conf_clear(&c);
}

static void empty_is_valid(void **state)
{
    (void)state;
    hx_conf c = {0};
    char *err = NULL;
    assert_int_equal(hx_conf_parse("", "t", &c, &err), 0);
    assert_int_equal(c.n_nodes, 0);
    hx_conf_clear(&c);
}

static void expect_error(const char *text, const char *needle)
{
    hx_conf c = {0};
    char *err = NULL;
    assert_int_equal(hx_conf_parse(text, "f.conf", &c, &err), -1);
    assert_non_null(err);
    if (!strstr(err, needle))
        fail_msg("error '%s' lacks '%s'", err, needle);
    assert_int_equal(c.n_nodes, 0);
    free(err);
}

static void rejects_bad_files(void **state)
{
    (void)state;
    expect_error("uri = x\n", "f.conf:1: setting outside");
    expect_error("[node n1]\n", "node n1 has no uri");
    expect_error("[node n1]\nuri = a\nuri = b\n", "f.conf:3: uri is set twice");
    expect_error("[node n1]\nuri = a\n[node n1]\nuri = b\n", "f.conf:3: node is declared twice");
    expect_error("[cluster]\n", "unknown section");
    expect_error("[node bad/name]\nuri = a\n", "node name must be");
    expect_error("[node .hidden]\nuri = a\n", "node name must be");
    expect_error("[node n1\nuri = a\n", "section header");
    expect_error("[node n1]\nport = 5\n", "unknown key");
    expect_error("[node n1]\nuri =   \n", "uri is empty");
    expect_error("[node n1]\njunk\n", "f.conf:2: expected 'key = value'");
}

static void node_names(void **state)
{
    (void)state;
    assert_true(hx_conf_valid_node_name("n1"));
    assert_true(hx_conf_valid_node_name("node_7.example-com"));
    assert_false(hx_conf_valid_node_name(""));
    assert_false(hx_conf_valid_node_name("-x"));
    assert_false(hx_conf_valid_node_name("a b"));
    char longname[80];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[79] = '\0';
    assert_false(hx_conf_valid_node_name(longname));
}

static void load_missing_file(void **state)
{
    (void)state;
    hx_conf c = {0};
    char *err = NULL;
    assert_int_equal(hx_conf_load("/nonexistent/horcrux.conf", &c, &err), -1);
    assert_non_null(strstr(err, "/nonexistent/horcrux.conf"));
    free(err);
}

HXT_MAIN(cmocka_unit_test(parses_nodes), cmocka_unit_test(empty_is_valid),
         cmocka_unit_test(rejects_bad_files), cmocka_unit_test(node_names),
         cmocka_unit_test(load_missing_file))
