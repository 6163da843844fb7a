/* Persistent audit log: one SQLite connection in WAL mode, guarded by a mutex, with its statements
 * prepared once. */
#include "hx_audit.h"
#include "auto.h"
#include "hx_log.h"
#include "hx_stats.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct hx_audit {
    pthread_mutex_t mu; /* guards everything below: the connection is opened SQLITE_OPEN_NOMUTEX */
    char *path;
    sqlite3 *db;
    sqlite3_stmt *insert;
    sqlite3_stmt *recent;
    uint64_t count; /* counted at open, then one more per append through this handle */
};

static const char hx_audit_schema[] = "CREATE TABLE IF NOT EXISTS audit ("
                                      " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                                      " time_ns INTEGER NOT NULL,"
                                      " time TEXT NOT NULL,"
                                      " uid INTEGER NOT NULL,"
                                      " pid INTEGER NOT NULL,"
                                      " path TEXT NOT NULL,"
                                      " action TEXT NOT NULL,"
                                      " result INTEGER NOT NULL,"
                                      " result_name TEXT NOT NULL,"
                                      " message TEXT)";

static const char hx_audit_insert_sql[] =
    "INSERT INTO audit (time_ns, time, uid, pid, path, action, result, result_name, message)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

static const char hx_audit_recent_sql[] =
    "SELECT id, time_ns, uid, pid, path, action, result_name, message FROM"
    " (SELECT * FROM audit ORDER BY id DESC LIMIT ?1) ORDER BY id";

static const struct {
    int value;
    const char *name;
} hx_audit_errnos[] = {
    {EINVAL, "EINVAL"},       {EPERM, "EPERM"},         {EACCES, "EACCES"},
    {ENOENT, "ENOENT"},       {EEXIST, "EEXIST"},       {EBUSY, "EBUSY"},
    {EHOSTDOWN, "EHOSTDOWN"}, {ETIMEDOUT, "ETIMEDOUT"}, {EIO, "EIO"},
    {ENOTSUP, "ENOTSUP"},     {ENOSPC, "ENOSPC"},       {EFBIG, "EFBIG"},
    {ENOMEM, "ENOMEM"},       {ENOTEMPTY, "ENOTEMPTY"},
};

/* "ok" for 0, the name of a common errno (either sign), else "errno N". */
static const char *hx_audit_result_name(int result, char *buf, size_t size)
{
    int e = result < 0 ? -result : result;
    if (e == 0)
        return "ok";
    for (size_t i = 0; i < sizeof(hx_audit_errnos) / sizeof(hx_audit_errnos[0]); i++)
        if (hx_audit_errnos[i].value == e)
            return hx_audit_errnos[i].name;
    snprintf(buf, size, "errno %d", e);
    return buf;
}

void hx_audit_close(hx_audit *a)
{
    if (!a)
        return;
    sqlite3_finalize(a->insert);
    sqlite3_finalize(a->recent);
    /* The last connection to close checkpoints the WAL into the database and removes it. */
    sqlite3_close(a->db);
    pthread_mutex_destroy(&a->mu);
    free(a->path);
    free(a);
}

static void hx_audit_closep(hx_audit **a)
{
    hx_audit_close(*a);
}

static void hx_audit_finalizep(sqlite3_stmt **st)
{
    sqlite3_finalize(*st);
}

/* Resets a reused statement when it leaves scope, so it holds no read snapshot (which would keep
 * the WAL from being checkpointed) and no bound pointers. */
static void hx_audit_resetp(sqlite3_stmt **st)
{
    sqlite3_reset(*st);
    sqlite3_clear_bindings(*st);
}

static void hx_audit_unlockp(pthread_mutex_t **mu)
{
    pthread_mutex_unlock(*mu);
}

static pthread_mutex_t *hx_audit_lock(hx_audit *a)
{
    pthread_mutex_lock(&a->mu);
    return &a->mu;
}

static void hx_audit_fail(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void hx_audit_fail(char **err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(err, fmt, ap) < 0)
        *err = NULL;
    va_end(ap);
}

/* Creates the missing directories leading to the file at path, each with mode 0700. */
static int hx_audit_mkdirs(const char *path, char **err)
{
    hx_autofree char *dir = strdup(path);
    if (!dir) {
        hx_audit_fail(err, "Out of memory opening the audit database %s.", path);
        return -1;
    }
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0; /* in the current directory or in / */
    *slash = '\0';
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
            hx_audit_fail(err, "Cannot create the directory %s for the audit database %s: %s.", dir,
                          path, strerror(errno));
            return -1;
        }
        /* mkdir reports EEXIST for any kind of file; only a directory will do. */
        struct stat st;
        int e = stat(dir, &st) < 0 ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
        if (e) {
            hx_audit_fail(err, "Cannot use %s as the directory of the audit database %s: %s.", dir,
                          path, strerror(e));
            return -1;
        }
        *p = c;
        if (c == '\0')
            return 0;
    }
}

static int hx_audit_prepare(hx_audit *a, const char *sql, sqlite3_stmt **st, char **err)
{
    if (sqlite3_prepare_v3(a->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
        hx_audit_fail(err, "Cannot prepare a statement on the audit database %s: %s.", a->path,
                      sqlite3_errmsg(a->db));
        return -1;
    }
    return 0;
}

/* Checks that WAL mode took, from the answer to "PRAGMA journal_mode=WAL": SQLite answers with
 * the mode in effect, and stays in its rollback journal where WAL is impossible (e.g. a
 * filesystem without shared-memory mmap). */
static int hx_audit_wal_on(hx_audit *a, sqlite3_stmt *st, char **err)
{
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    if (!mode || strcmp(mode, "wal") != 0) {
        hx_audit_fail(err, "The audit database %s cannot use WAL mode (journal mode is %s).",
                      a->path, mode ? mode : "unknown");
        return -1;
    }
    return 0;
}

static int hx_audit_take_count(hx_audit *a, sqlite3_stmt *st, char **err)
{
    (void)err;
    a->count = (uint64_t)sqlite3_column_int64(st, 0);
    return 0;
}

/* Runs a query of one row at open and hands the row to use; on failure *err says "Cannot <what>
 * the audit database <path>: <reason>." */
static int hx_audit_one_row(hx_audit *a, const char *sql, const char *what,
                            int (*use)(hx_audit *a, sqlite3_stmt *st, char **err), char **err)
{
    __attribute__((cleanup(hx_audit_finalizep))) sqlite3_stmt *st = NULL;
    if (hx_audit_prepare(a, sql, &st, err) < 0)
        return -1;
    if (sqlite3_step(st) != SQLITE_ROW) {
        hx_audit_fail(err, "Cannot %s the audit database %s: %s.", what, a->path,
                      sqlite3_errmsg(a->db));
        return -1;
    }
    return use(a, st, err);
}

hx_audit *hx_audit_open(const char *path, char **err)
{
    if (err)
        *err = NULL;
    if (!path || !*path) {
        hx_audit_fail(err, "No path given for the audit database.");
        return NULL;
    }
    if (hx_audit_mkdirs(path, err) < 0)
        return NULL;
    /* SQLite creates the database with mode 0644 and gives its -wal and -shm files the
     * database's mode; creating it first with 0600 keeps the whole log private. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        hx_audit_fail(err, "Cannot create the audit database %s: %s.", path, strerror(errno));
        return NULL;
    }
    close(fd);

    __attribute__((cleanup(hx_audit_closep))) hx_audit *a = calloc(1, sizeof(*a));
    if (a)
        pthread_mutex_init(&a->mu, NULL);
    if (!a || !(a->path = strdup(path))) {
        hx_audit_fail(err, "Out of memory opening the audit database %s.", path);
        return NULL;
    }
    int rc = sqlite3_open_v2(
        path, &a->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        hx_audit_fail(err, "Cannot open the audit database %s: %s.", path,
                      a->db ? sqlite3_errmsg(a->db) : sqlite3_errstr(rc));
        return NULL;
    }
    sqlite3_extended_result_codes(a->db, 1);
    sqlite3_busy_timeout(a->db, 2000);
    if (hx_audit_one_row(a, "PRAGMA journal_mode=WAL", "set WAL mode on", hx_audit_wal_on, err) < 0)
        return NULL;
    /* NORMAL in WAL mode: a commit survives a crash of the process, and only the last commits
     * may be lost on power failure; it is a per-connection setting. */
    char *msg = NULL;
    if (sqlite3_exec(a->db, "PRAGMA synchronous=NORMAL", NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(a->db, hx_audit_schema, NULL, NULL, &msg) != SQLITE_OK) {
        hx_audit_fail(err, "Cannot set up the audit database %s: %s.", path,
                      msg ? msg : sqlite3_errmsg(a->db));
        sqlite3_free(msg);
        return NULL;
    }
    if (hx_audit_prepare(a, hx_audit_insert_sql, &a->insert, err) < 0 ||
        hx_audit_prepare(a, hx_audit_recent_sql, &a->recent, err) < 0 ||
        hx_audit_one_row(a, "SELECT count(*) FROM audit", "count the records of",
                         hx_audit_take_count, err) < 0)
        return NULL;
    return hx_steal(&a);
}

int hx_audit_append(hx_audit *a, unsigned uid, int pid, const char *path, const char *action,
                    int result, const char *message)
{
    char buf[24];
    const char *name = hx_audit_result_name(result, buf, sizeof(buf));
    int e = result < 0 ? -result : result;

    __attribute__((cleanup(hx_audit_unlockp))) pthread_mutex_t *lock = hx_audit_lock(a);
    __attribute__((cleanup(hx_audit_resetp))) sqlite3_stmt *st = a->insert;
    /* Read the clock under the lock, so that ids and times are in the same order. */
    long long now = hx_now_real_ns();
    char when[40];
    hx_stats_iso_time(now, when, sizeof(when));
    /* SQLITE_STATIC: the strings outlive the statement's use, which ends with the reset. Each
     * step runs only while the previous ones returned SQLITE_OK (0). */
    int rc = sqlite3_bind_int64(st, 1, now);
    rc = rc ?: sqlite3_bind_text(st, 2, when, -1, SQLITE_STATIC);
    rc = rc ?: sqlite3_bind_int64(st, 3, uid);
    rc = rc ?: sqlite3_bind_int(st, 4, pid);
    rc = rc ?: sqlite3_bind_text(st, 5, path, -1, SQLITE_STATIC);
    rc = rc ?: sqlite3_bind_text(st, 6, action, -1, SQLITE_STATIC);
    rc = rc ?: sqlite3_bind_int(st, 7, e);
    rc = rc ?: sqlite3_bind_text(st, 8, name, -1, SQLITE_STATIC);
    rc = rc ?: sqlite3_bind_text(st, 9, message, -1, SQLITE_STATIC); /* NULL binds SQL NULL */
    rc = rc ?: sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        hx_err("audit %s: cannot record \"%s\" on %s: %s", a->path, action ? action : "(null)",
               path ? path : "(null)", sqlite3_errmsg(a->db));
        return -EIO;
    }
    a->count++;
    return 0;
}

uint64_t hx_audit_count(hx_audit *a)
{
    __attribute__((cleanup(hx_audit_unlockp))) pthread_mutex_t *lock = hx_audit_lock(a);
    return a->count;
}

/* A JSON string for text from the database. Paths come from the file system and need not be
 * UTF-8, which JSON requires: bytes that do not form valid UTF-8 become U+FFFD. */
static json_t *hx_audit_json_text(sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return json_null();
    const unsigned char *s = sqlite3_column_text(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    json_t *j = json_stringn((const char *)s, n);
    if (j || !s)
        return j;
    hx_autobuf hx_buf b = {0};
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80             ? 1
                     : (c & 0xe0) == 0xc0 ? 2
                     : (c & 0xf0) == 0xe0 ? 3
                     : (c & 0xf8) == 0xf0 ? 4
                                          : 0;
        /* Let jansson judge the sequence (overlong forms, surrogates, range). */
        json_t *one = len && i + len <= n ? json_stringn((const char *)s + i, len) : NULL;
        if (one) {
            json_decref(one);
            hx_buf_append(&b, s + i, len);
            i += len;
        } else {
            hx_buf_puts(&b, "\xef\xbf\xbd");
            i++;
        }
    }
    return b.data ? json_stringn(b.data, b.len) : NULL;
}

/* Appends one result row as a JSON line; -1 when out of memory. */
static int hx_audit_render_row(sqlite3_stmt *st, hx_buf *out)
{
    char when[40];
    hx_stats_iso_time(sqlite3_column_int64(st, 1), when, sizeof(when));
    hx_autojson json_t *o = json_object();
    if (!o || json_object_set_new(o, "id", json_integer(sqlite3_column_int64(st, 0))) < 0 ||
        json_object_set_new(o, "time", json_string(when)) < 0 ||
        json_object_set_new(o, "uid", json_integer(sqlite3_column_int64(st, 2))) < 0 ||
        json_object_set_new(o, "pid", json_integer(sqlite3_column_int64(st, 3))) < 0 ||
        json_object_set_new(o, "path", hx_audit_json_text(st, 4)) < 0 ||
        json_object_set_new(o, "action", hx_audit_json_text(st, 5)) < 0 ||
        json_object_set_new(o, "result", hx_audit_json_text(st, 6)) < 0 ||
        json_object_set_new(o, "message", hx_audit_json_text(st, 7)) < 0)
        return -1;
    hx_autofree char *line = json_dumps(o, JSON_COMPACT);
    if (!line || hx_buf_puts(out, line) < 0 || hx_buf_append(out, "\n", 1) < 0)
        return -1;
    return 0;
}

int hx_audit_render(hx_audit *a, size_t limit, hx_buf *out)
{
    size_t start = out->len;
    __attribute__((cleanup(hx_audit_unlockp))) pthread_mutex_t *lock = hx_audit_lock(a);
    __attribute__((cleanup(hx_audit_resetp))) sqlite3_stmt *st = a->recent;
    if (sqlite3_bind_int64(st, 1, limit > INT64_MAX ? INT64_MAX : (sqlite3_int64)limit) !=
        SQLITE_OK) {
        hx_err("audit %s: cannot query records: %s", a->path, sqlite3_errmsg(a->db));
        return -EIO;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (hx_audit_render_row(st, out) < 0) {
            hx_err("audit %s: out of memory rendering record %lld", a->path,
                   (long long)sqlite3_column_int64(st, 0));
            rc = SQLITE_NOMEM;
            break;
        }
    }
    if (rc != SQLITE_DONE) {
        if (rc != SQLITE_NOMEM)
            hx_err("audit %s: cannot read records: %s", a->path, sqlite3_errmsg(a->db));
        /* Leave out as it was: no half a rendering. */
        if (out->data) {
            out->len = start;
            out->data[start] = '\0';
        }
        return -EIO;
    }
    return 0;
}
