/* The fixtures every unit test (tests/unit/test_*.c, cmocka) shares, linked into each of them by
 * tests/meson.build: scoped cleanup, reading files, JSON fields and lines, expectations on JSON
 * documents, a private temporary directory per test, and the main() of a test group.
 *
 * The helpers that check something fail the running test (cmocka's fail_msg and assert_*), so
 * they may be called only from inside a test. Single-threaded, like cmocka's assertions. */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>

/* Scoped cleanup: `AUTO_STR *s = ...;` frees s, `AUTO_JSON *j = ...;` drops j's reference. */
void hxt_free_str(char **p);
void hxt_free_json(json_t **p);
#define AUTO_STR __attribute__((cleanup(hxt_free_str))) char
#define AUTO_JSON __attribute__((cleanup(hxt_free_json))) json_t

/* The whole file at path, NUL-terminated (free it); NULL when it cannot be opened. */
char *hxt_read_file(const char *path);
/* tests/unit/data/<name>, the directory from $HX_TEST_DATA or -DHX_TEST_DATA; fails the test when
 * the file cannot be opened. */
char *hxt_load(const char *name);

/* The string, integer or object at key of obj; fails the test when it is not one. */
const char *hxt_str(const json_t *obj, const char *key);
json_int_t hxt_int(const json_t *obj, const char *key);
json_t *hxt_item(const json_t *obj, const char *key, size_t index); /* obj[key][index] */

/* JSON text written with ' where JSON has " (tables of cases read better without escapes; a
 * string in it cannot hold a '). Any JSON value; fails the test when it is not JSON. */
json_t *hxt_json(const char *text);
/* Checks doc against expect, an object in hxt_json's notation: each key is a path into doc
 * ("name", "disks[1].bus", "[0].pool"; "" is doc itself) and its value what doc must hold there,
 * of the same type and value (json_equal; a path that leads nowhere fails). A path ending in '#'
 * expects instead the size of the array there (0 when there is none). what names doc in the
 * message of a failure. */
void hxt_expect(const json_t *doc, const char *what, const char *expect);

/* Splits text into lines (each must end in '\n' and be JSON) parsed into objs; at most max.
 * Returns the count. */
size_t hxt_json_lines(const char *text, json_t **objs, size_t max);
void hxt_json_free(json_t **objs, size_t n);

/* cmocka setup and teardown: *state is a fresh private temporary directory (a char *), removed
 * afterwards with everything the test put in it. */
int hxt_tmpdir_setup(void **state);
int hxt_tmpdir_teardown(void **state);
/* name in the test's temporary directory (free it). */
char *hxt_tmp_path(void **state, const char *name);

/* Defines main(): runs the tests listed (cmocka_unit_test(f), ...) as one group. A macro, as C
 * leaves no other way: cmocka names each test after its function, which only the preprocessor
 * can spell. */
#define HXT_MAIN(...)                                                                              \
    int main(void)                                                                                 \
    {                                                                                              \
        const struct CMUnitTest hxt_tests[] = {__VA_ARGS__};                                       \
        return cmocka_run_group_tests_name("tests", hxt_tests, NULL, NULL);                        \
    }
