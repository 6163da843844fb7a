/* Jobs: the reads the tree makes. The list of ids, a job's status document (status.json and a
 * VM's last job) and its log text, rendered from the database. */
#include "jobs_priv.h"
#include "hx_stats.h"

#include <errno.h>
#include <string.h>

char **hx_jobs_list(void)
{
    HX_JB_LOCKED;
    hx_autostmt sqlite3_stmt *st = NULL;
    size_t n = 0, cap = 16;
    char **out = calloc(cap + 1, sizeof(char *));
    if (!out || hx_jb_prepare(&st, "SELECT id FROM jobs ORDER BY id", "") != SQLITE_OK)
        return out;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            char **no = realloc(out, (cap * 2 + 1) * sizeof(char *));
            if (!no)
                break;
            out = no;
            cap *= 2;
        }
        char id[HX_JOB_ID_LEN];
        hx_jb_fmt_id(sqlite3_column_int64(st, 0), id);
        out[n] = strdup(id);
        if (out[n])
            n++;
        out[n] = NULL;
    }
    return out;
}

int hx_jobs_exists(const char *id)
{
    long long v = hx_jb_parse_id(id);
    if (v < 0)
        return 0;
    HX_JB_LOCKED;
    hx_autostmt sqlite3_stmt *st = NULL;
    return hx_jb_prepare(&st, "SELECT 1 FROM jobs WHERE id=?1", "i", v) == SQLITE_OK &&
           sqlite3_step(st) == SQLITE_ROW;
}

static json_t *hx_jb_time(sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return json_null();
    char when[40];
    hx_stats_iso_time(sqlite3_column_int64(st, col), when, sizeof(when));
    return json_string(when);
}

static json_t *hx_jb_text(sqlite3_stmt *st, int col)
{
    const char *s = (const char *)sqlite3_column_text(st, col);
    return s ? json_string(s) : json_null();
}

#define HX_JB_COLS                                                                                 \
    "SELECT id, type, target, state, phase, bytes_done, bytes_total, created_ns, started_ns,"      \
    " finished_ns, message, result, cleanup FROM jobs "

static json_t *hx_jb_row(sqlite3_stmt *st)
{
    char id[HX_JOB_ID_LEN];
    hx_jb_fmt_id(sqlite3_column_int64(st, 0), id);
    const char *res = (const char *)sqlite3_column_text(st, 11);
    json_t *result = res ? json_loads(res, 0, NULL) : NULL;
    return json_pack(
        "{s:s,s:o,s:o,s:o,s:o,s:I,s:I,s:o,s:o,s:o,s:o,s:o,s:o}", "id", id, "type",
        hx_jb_text(st, 1), "target", hx_jb_text(st, 2), "state", hx_jb_text(st, 3), "phase",
        hx_jb_text(st, 4), "bytes_done", (json_int_t)sqlite3_column_int64(st, 5), "bytes_total",
        (json_int_t)sqlite3_column_int64(st, 6), "created", hx_jb_time(st, 7), "started",
        hx_jb_time(st, 8), "finished", hx_jb_time(st, 9), "message", hx_jb_text(st, 10), "result",
        result ? result : json_null(), "cleanup", hx_jb_text(st, 12));
}

/* The status document of the first row a query on HX_JB_COLS finds (values bound as
 * hx_jb_prepare). 0, -ENOENT, -EIO, -ENOMEM. */
static int hx_jb_status_of(json_t **out, const char *sql, const char *fmt, ...)
{
    HX_JB_LOCKED;
    hx_autostmt sqlite3_stmt *st = NULL;
    va_list ap;
    va_start(ap, fmt);
    int rc = hx_jb_vprepare(&st, sql, fmt, ap);
    va_end(ap);
    if (rc != SQLITE_OK)
        return -EIO;
    if (sqlite3_step(st) != SQLITE_ROW)
        return -ENOENT;
    *out = hx_jb_row(st);
    return *out ? 0 : -ENOMEM;
}

int hx_jobs_status(const char *id, json_t **out)
{
    long long v = hx_jb_parse_id(id);
    if (v < 0)
        return -ENOENT;
    return hx_jb_status_of(out, HX_JB_COLS "WHERE id=?1", "i", v);
}

int hx_jobs_last_of(const char *type, const char *owner, json_t **out)
{
    return hx_jb_status_of(out, HX_JB_COLS "WHERE type=?1 AND owner=?2 ORDER BY id DESC LIMIT 1",
                           "tt", type, owner);
}

int hx_jobs_log_text(const char *id, hx_buf *out)
{
    long long v = hx_jb_parse_id(id);
    if (v < 0)
        return -ENOENT;
    HX_JB_LOCKED;
    hx_autostmt sqlite3_stmt *st = NULL;
    if (hx_jb_prepare(&st, "SELECT time_ns, line FROM job_log WHERE job=?1 ORDER BY seq", "i", v) !=
        SQLITE_OK)
        return -EIO;
    while (sqlite3_step(st) == SQLITE_ROW) {
        char when[40];
        hx_stats_iso_time(sqlite3_column_int64(st, 0), when, sizeof(when));
        if (hx_buf_printf(out, "%s %s\n", when, (const char *)sqlite3_column_text(st, 1)) < 0)
            return -ENOMEM;
    }
    return 0;
}
