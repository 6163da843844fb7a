/* Unit tests: the SQLite audit log (persistence, WAL, concurrency, JSON rendering, errors). */
#include "hxtest.h"

#include "hx_audit.h"
#include "hx_util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static hx_audit *open_ok(const char *path)
{
    char *err = NULL;
    hx_audit *a = hx_audit_open(path, &err);
    if (!a)
        fail_msg("hx_audit_open(%s): %s", path, err ? err : "(no message)");
    assert_null(err);
    return a;
}

/* Renders the newest `limit` records and parses each line. Returns the line count. */
static size_t render(hx_audit *a, size_t limit, json_t **objs, size_t max)
{
    hx_autobuf hx_buf out = {0};
    assert_int_equal(hx_audit_render(a, limit, &out), 0);
    return hxt_json_lines(out.data ? out.data : "", objs, max);
}

static void append_render_reopen(void **state)
{
    hx_autofree char *path = hxt_tmp_path(state, "audit.db");
    hx_audit *a = open_ok(path);
    assert_int_equal(hx_audit_count(a), 0);
    assert_int_equal(
        hx_audit_append(a, 1000, 42, "/nodes/n1/vms/k00/state", "write start", 0, "started"), 0);
    assert_int_equal(hx_audit_append(a, 0, 43, "/nodes/n1/vms/new", "mkdir", EEXIST, NULL), 0);
    assert_int_equal(hx_audit_append(a, 7, 44, "/x", "rmdir", -ENOTEMPTY, "busy"), 0);
    assert_int_equal(hx_audit_count(a), 3);

    json_t *o[8];
    size_t n = render(a, 10, o, 8);
    assert_int_equal(n, 3);
    assert_int_equal(hxt_int(o[0], "id"), 1);
    assert_int_equal(hxt_int(o[0], "uid"), 1000);
    assert_int_equal(hxt_int(o[0], "pid"), 42);
    assert_string_equal(hxt_str(o[0], "path"), "/nodes/n1/vms/k00/state");
    assert_string_equal(hxt_str(o[0], "action"), "write start");
    assert_string_equal(hxt_str(o[0], "result"), "ok");
    assert_string_equal(hxt_str(o[0], "message"), "started");
    const char *t = hxt_str(o[0], "time");
    assert_non_null(t);
    assert_int_equal(strlen(t), 24);
    assert_int_equal(t[10], 'T');
    assert_int_equal(t[23], 'Z');
    assert_string_equal(hxt_str(o[1], "result"), "EEXIST");
    assert_true(json_is_null(json_object_get(o[1], "message")));
    assert_string_equal(hxt_str(o[2], "result"), "ENOTEMPTY"); /* either sign */
    hxt_json_free(o, n);

    /* The newest two, oldest first. */
    n = render(a, 2, o, 8);
    assert_int_equal(n, 2);
    assert_int_equal(hxt_int(o[0], "id"), 2);
    assert_int_equal(hxt_int(o[1], "id"), 3);
    hxt_json_free(o, n);
    hx_audit_close(a);

    a = open_ok(path);
    assert_int_equal(hx_audit_count(a), 3);
    assert_int_equal(hx_audit_append(a, 1, 2, "/y", "commit config.json", EHOSTDOWN, NULL), 0);
    assert_int_equal(hx_audit_count(a), 4);
    n = render(a, 100, o, 8);
    assert_int_equal(n, 4);
    assert_string_equal(hxt_str(o[0], "action"), "write start");
    assert_int_equal(hxt_int(o[3], "id"), 4);
    assert_string_equal(hxt_str(o[3], "result"), "EHOSTDOWN");
    hxt_json_free(o, n);
    hx_audit_close(a);

    /* The log is private to its owner. */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void wal_mode_on(void **state)
{
    hx_autofree char *path = hxt_tmp_path(state, "wal.db");
    hx_audit *a = open_ok(path);
    assert_int_equal(hx_audit_append(a, 1, 1, "/p", "mkdir", 0, NULL), 0);
    /* A second, independent connection sees the mode persisted in the file. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM audit", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
    hx_audit_close(a);
}

enum { THREADS = 4, PER_THREAD = 250 };

struct worker {
    hx_audit *a;
    unsigned uid;
    int failures;
};

static void *appender(void *opaque)
{
    struct worker *w = opaque;
    for (int i = 0; i < PER_THREAD; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/t/%u/%d", w->uid, i);
        if (hx_audit_append(w->a, w->uid, i, path, "write start", i % 2 ? EINVAL : 0, NULL) < 0)
            w->failures++;
    }
    return NULL;
}

static void concurrent_appends(void **state)
{
    hx_autofree char *path = hxt_tmp_path(state, "conc.db");
    hx_audit *a = open_ok(path);
    pthread_t t[THREADS];
    struct worker w[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.a = a, .uid = i};
        assert_int_equal(pthread_create(&t[i], NULL, appender, &w[i]), 0);
    }
    for (unsigned i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    assert_int_equal(hx_audit_count(a), THREADS * PER_THREAD);
    json_t **o = calloc(THREADS * PER_THREAD + 1, sizeof(*o));
    assert_non_null(o);
    size_t n = render(a, THREADS * PER_THREAD + 10, o, THREADS * PER_THREAD + 1);
    assert_int_equal(n, THREADS * PER_THREAD);
    int per_uid[THREADS] = {0};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(hxt_int(o[i], "id"), i + 1);
        per_uid[hxt_int(o[i], "uid")]++;
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(per_uid[i], PER_THREAD);
    hxt_json_free(o, n);
    free(o);
    hx_audit_close(a);
}

static void creates_parent_dirs(void **state)
{
    hx_autofree char *dir = hxt_tmp_path(state, "state/horcrux");
    hx_autofree char *path = hxt_tmp_path(state, "state/horcrux/audit.db");
    hx_audit *a = open_ok(path);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0077, 0);
    hx_autofree char *top = hxt_tmp_path(state, "state");
    assert_int_equal(stat(top, &st), 0);
    assert_int_equal(st.st_mode & 0077, 0);
    hx_audit_close(a);
}

static void awkward_strings_render_valid_json(void **state)
{
    hx_autofree char *path = hxt_tmp_path(state, "json.db");
    hx_audit *a = open_ok(path);
    const char *weird = "/nodes/n\"1\"/vms/a\nb\\c\t\x01/state";
    assert_int_equal(
        hx_audit_append(a, 5, 6, weird, "write \"start\"\n", ETIMEDOUT, "line one\nline \"two\""),
        0);
    assert_int_equal(hx_audit_append(a, 5, 6, "/bad/\xff\xfe/utf8", "mkdir", 12345, NULL), 0);
    json_t *o[4];
    size_t n = render(a, 10, o, 4);
    assert_int_equal(n, 2);
    assert_string_equal(hxt_str(o[0], "path"), weird);
    assert_string_equal(hxt_str(o[0], "action"), "write \"start\"\n");
    assert_string_equal(hxt_str(o[0], "message"), "line one\nline \"two\"");
    assert_string_equal(hxt_str(o[0], "result"), "ETIMEDOUT");
    /* Bytes that are not UTF-8 become U+FFFD; an uncommon errno keeps its number. */
    assert_string_equal(hxt_str(o[1], "path"), "/bad/\xef\xbf\xbd\xef\xbf\xbd/utf8");
    assert_string_equal(hxt_str(o[1], "result"), "errno 12345");
    assert_true(json_is_null(json_object_get(o[1], "message")));
    hxt_json_free(o, n);
    hx_audit_close(a);
}

static void open_failure_names_path(void **state)
{
    hx_autofree char *file = hxt_tmp_path(state, "plain");
    int fd = open(file, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    hx_autofree char *path = hxt_tmp_path(state, "plain/sub/audit.db");
    char *err = NULL;
    assert_null(hx_audit_open(path, &err));
    assert_non_null(err);
    assert_non_null(strstr(err, path));
    free(err);
    /* Directly under the regular file. */
    hx_autofree char *path2 = hxt_tmp_path(state, "plain/audit.db");
    assert_null(hx_audit_open(path2, &err));
    assert_non_null(err);
    assert_non_null(strstr(err, path2));
    free(err);
    /* A database file that is not one. */
    hx_autofree char *junk = hxt_tmp_path(state, "junk.db");
    FILE *f = fopen(junk, "w");
    assert_non_null(f);
    for (int i = 0; i < 64; i++)
        fputs("this is not an SQLite database, just text\n", f);
    fclose(f);
    assert_null(hx_audit_open(junk, &err));
    assert_non_null(err);
    assert_non_null(strstr(err, junk));
    free(err);
}

/* Each test in a temporary directory of its own. */
#define T(f) cmocka_unit_test_setup_teardown(f, hxt_tmpdir_setup, hxt_tmpdir_teardown)

HXT_MAIN(T(append_render_reopen), T(wal_mode_on), T(concurrent_appends), T(creates_parent_dirs),
         T(awkward_strings_render_valid_json), T(open_failure_names_path))
