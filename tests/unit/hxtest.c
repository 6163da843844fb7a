/* The fixtures the unit tests share (see hxtest.h). */
#include "hxtest.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void hxt_free_str(char **p)
{
    free(*p);
}

void hxt_free_json(json_t **p)
{
    json_decref(*p);
}

char *hxt_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    assert_non_null(mem);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, mem);
    fclose(f);
    fclose(mem);
    return buf;
}

char *hxt_load(const char *name)
{
    const char *dir = getenv("HX_TEST_DATA");
#ifdef HX_TEST_DATA
    if (!dir)
        dir = HX_TEST_DATA;
#endif
    if (!dir)
        dir = "tests/unit/data";
    AUTO_STR *path = NULL;
    assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
    char *text = hxt_read_file(path);
    if (!text)
        fail_msg("cannot open %s", path);
    return text;
}

const char *hxt_str(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        fail_msg("%s is not a string", key);
    return json_string_value(v);
}

json_int_t hxt_int(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        fail_msg("%s is not an integer", key);
    return json_integer_value(v);
}

json_t *hxt_item(const json_t *obj, const char *key, size_t index)
{
    json_t *v = json_array_get(json_object_get(obj, key), index);
    assert_true(json_is_object(v));
    return v;
}

json_t *hxt_json(const char *text)
{
    AUTO_STR *t = strdup(text);
    assert_non_null(t);
    for (char *p = t; *p; p++)
        if (*p == '\'')
            *p = '"';
    json_error_t e;
    json_t *j = json_loads(t, JSON_DECODE_ANY, &e);
    if (!j)
        fail_msg("not JSON: %s: %s", e.text, t);
    return j;
}

/* The value at path in doc (see hxt_expect); NULL when the path leads nowhere. */
static const json_t *hxt_at(const json_t *doc, const char *path)
{
    const json_t *v = doc;
    for (const char *p = path; v && *p;) {
        if (*p == '[') {
            char *end;
            unsigned long i = strtoul(p + 1, &end, 10);
            if (*end != ']')
                fail_msg("bad path %s", path);
            v = json_array_get(v, i);
            p = end + 1;
            continue;
        }
        if (*p == '.')
            p++;
        size_t n = strcspn(p, ".[");
        v = json_object_getn(v, p, n);
        p += n;
    }
    return v;
}

static char *hxt_dump(const json_t *v)
{
    return v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : strdup("nothing");
}

void hxt_expect(const json_t *doc, const char *what, const char *expect)
{
    AUTO_JSON *want = hxt_json(expect);
    if (!json_is_object(want))
        fail_msg("%s: the expectation is not an object: %s", what, expect);
    const char *path;
    json_t *value;
    json_object_foreach (want, path, value) {
        size_t len = strlen(path);
        if (len && path[len - 1] == '#') {
            AUTO_STR *array = strndup(path, len - 1);
            size_t size = json_array_size(hxt_at(doc, array));
            if (!json_is_integer(value) || (json_int_t)size != json_integer_value(value)) {
                AUTO_STR *w = hxt_dump(value);
                fail_msg("%s: %s has %zu items, not %s", what, array, size, w);
            }
            continue;
        }
        const json_t *got = hxt_at(doc, path);
        if (!json_equal(got, value)) {
            AUTO_STR *g = hxt_dump(got);
            AUTO_STR *w = hxt_dump(value);
            fail_msg("%s: %s is %s, not %s", what, path, g, w);
        }
    }
}

size_t hxt_json_lines(const char *text, json_t **objs, size_t max)
{
    size_t count = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        assert_true(count < max);
        json_error_t e;
        objs[count] = json_loadb(p, (size_t)(nl - p), 0, &e);
        if (!objs[count])
            fail_msg("line %zu is not JSON: %s: %.*s", count, e.text, (int)(nl - p), p);
        count++;
        p = nl + 1;
    }
    return count;
}

void hxt_json_free(json_t **objs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_decref(objs[i]);
}

int hxt_tmpdir_setup(void **state)
{
    char *dir = strdup("/tmp/hx_unit_test.XXXXXX");
    if (!dir || !mkdtemp(dir)) {
        free(dir);
        return -1;
    }
    *state = dir;
    return 0;
}

static int hxt_remove(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int hxt_tmpdir_teardown(void **state)
{
    /* Depth first, not following links: what the test left goes before its directory. */
    int rc = nftw(*state, hxt_remove, 16, FTW_DEPTH | FTW_PHYS);
    free(*state);
    return rc == 0 ? 0 : -1;
}

char *hxt_tmp_path(void **state, const char *name)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", (char *)*state, name) > 0);
    return p;
}
