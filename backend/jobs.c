/* Jobs: long operations on threads of their own, recorded in SQLite (see hx_jobs.h). */
#include "hx_jobs.h"
#include "hx_cluster.h"
#include "hx_log.h"
#include "hx_stats.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char hx_jobs_schema[] = "CREATE TABLE IF NOT EXISTS jobs ("
                                     " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                                     " type TEXT NOT NULL,"
                                     " target TEXT NOT NULL,"
                                     " owner TEXT,"
                                     " state TEXT NOT NULL,"
                                     " phase TEXT,"
                                     " bytes_done INTEGER NOT NULL DEFAULT 0,"
                                     " bytes_total INTEGER NOT NULL DEFAULT 0,"
                                     " created_ns INTEGER NOT NULL,"
                                     " started_ns INTEGER,"
                                     " finished_ns INTEGER,"
                                     " message TEXT,"
                                     " result TEXT,"
                                     " undo TEXT,"
                                     " cleanup TEXT);"
                                     "CREATE TABLE IF NOT EXISTS job_log ("
                                     " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                                     " job INTEGER NOT NULL,"
                                     " time_ns INTEGER NOT NULL,"
                                     " line TEXT NOT NULL);"
                                     "CREATE INDEX IF NOT EXISTS job_log_job ON job_log (job);"
                                     "CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (type, owner)";

/* Progress goes to the database at most this often. */
#define HX_JOB_FLUSH_NS 250000000LL
/* How long recovery waits for the node an interrupted job worked on. */
#define HX_JOB_RECOVER_WAIT_S 60

struct hx_job {
    hx_job *next;
    long long id;
    char idstr[HX_JOB_ID_LEN];
    char type[32];
    atomic_int stop; /* 1 cancel, 2 daemon stopping */
    hx_job_fn fn;
    void *arg;
    void (*free_arg)(void *);
    uint64_t done, total;
    long long flushed_ns;
};

typedef struct hx_undo_type {
    char type[32];
    hx_job_undo_fn fn;
} hx_undo_type;

static pthread_mutex_t hx_jb_mu = PTHREAD_MUTEX_INITIALIZER; /* the connection and the lists */
static pthread_cond_t hx_jb_cond = PTHREAD_COND_INITIALIZER;
static sqlite3 *hx_jb_db;
static hx_events *hx_jb_events;
static hx_job *hx_jb_running;
static int hx_jb_threads; /* job and recovery threads alive */
static atomic_int hx_jb_closing;
static hx_undo_type hx_jb_undo[8];
static size_t hx_jb_n_undo;
static _Atomic uint64_t hx_jb_version = 1;
static void (*_Atomic hx_jb_changed)(const char *id);

static void hx_jb_unlockp(pthread_mutex_t **m)
{
    if (*m)
        pthread_mutex_unlock(*m);
}
static pthread_mutex_t *hx_jb_lock(void)
{
    pthread_mutex_lock(&hx_jb_mu);
    return &hx_jb_mu;
}
#define HX_JB_LOCKED                                                                               \
    __attribute__((cleanup(hx_jb_unlockp))) pthread_mutex_t *hx_jb_held_ = hx_jb_lock()

static void hx_jb_finalizep(sqlite3_stmt **st)
{
    sqlite3_finalize(*st);
}
#define hx_autostmt __attribute__((cleanup(hx_jb_finalizep)))

static void hx_jb_jsonp(json_t **j)
{
    json_decref(*j);
}
#define hx_autojson __attribute__((cleanup(hx_jb_jsonp)))

static void hx_jb_fmt_id(long long id, char out[HX_JOB_ID_LEN])
{
    snprintf(out, HX_JOB_ID_LEN, "%08lld", id);
}

/* The integer of an id string; -1 when it is not one of ours. */
static long long hx_jb_parse_id(const char *s)
{
    if (!s || strlen(s) != 8)
        return -1;
    long long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

static void hx_jb_touch(const char *id)
{
    atomic_fetch_add(&hx_jb_version, 1);
    void (*fn)(const char *) = atomic_load(&hx_jb_changed);
    if (fn)
        fn(id);
}

/* Runs one statement with bound values under the lock. fmt letters: i int64, t text (NULL ok).
 * Returns 0 or -EIO (logged once, naming the statement's purpose). */
static int hx_jb_exec(const char *what, const char *sql, const char *fmt, ...)
{
    if (!hx_jb_db)
        return -EIO;
    hx_autostmt sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(hx_jb_db, sql, -1, &st, NULL);
    va_list ap;
    va_start(ap, fmt);
    for (int i = 0; rc == SQLITE_OK && fmt[i]; i++) {
        if (fmt[i] == 'i')
            rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, long long));
        else
            rc = sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
    }
    va_end(ap);
    rc = rc ?: sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        hx_err("jobs: cannot %s: %s", what, sqlite3_errmsg(hx_jb_db));
        return -EIO;
    }
    return 0;
}

static void hx_jb_log_locked(long long id, const char *line)
{
    hx_jb_exec("append to a job log", "INSERT INTO job_log (job, time_ns, line) VALUES (?1,?2,?3)",
               "iit", id, hx_now_real_ns(), line);
}

static void hx_jb_post(long long id, const char *type, const char *target, const char *state,
                       const char *message)
{
    if (!hx_jb_events)
        return;
    char idstr[HX_JOB_ID_LEN];
    hx_jb_fmt_id(id, idstr);
    json_t *ev = json_pack("{s:s,s:s,s:s?,s:s?,s:s}", "type", "job.state", "job", idstr, "job_type",
                           type, "target", target, "state", state);
    if (ev && message)
        json_object_set_new(ev, "message", json_string(message));
    if (ev)
        hx_events_post(hx_jb_events, ev);
}

int hx_jobs_open(const char *path, hx_events *ev, char **err)
{
    *err = NULL;
    HX_JB_LOCKED;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    char *emsg = NULL;
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db, 2000);
        rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", NULL, NULL,
                          &emsg);
        rc = rc ?: sqlite3_exec(db, hx_jobs_schema, NULL, NULL, &emsg);
    }
    if (rc != SQLITE_OK) {
        if (asprintf(err, "Cannot open the jobs tables in %s: %s.", path,
                     emsg ? emsg
                     : db ? sqlite3_errmsg(db)
                          : sqlite3_errstr(rc)) < 0)
            *err = NULL;
        sqlite3_free(emsg);
        sqlite3_close(db);
        return -1;
    }
    hx_jb_db = db;
    hx_jb_events = ev;
    hx_jb_closing = 0;
    /* Jobs a dead daemon left behind: their thread is gone, their undo is still to do. */
    hx_jb_exec("mark interrupted jobs",
               "UPDATE jobs SET state='interrupted', finished_ns=?1, cleanup='pending',"
               " message=coalesce(message, 'the daemon stopped while the job ran')"
               " WHERE state IN ('queued','running')",
               "i", hx_now_real_ns());
    return 0;
}

void hx_jobs_register(const char *type, hx_job_undo_fn undo)
{
    HX_JB_LOCKED;
    if (hx_jb_n_undo < sizeof(hx_jb_undo) / sizeof(hx_jb_undo[0])) {
        hx_strlcpy(hx_jb_undo[hx_jb_n_undo].type, type, sizeof(hx_jb_undo[0].type));
        hx_jb_undo[hx_jb_n_undo++].fn = undo;
    }
}

static hx_job_undo_fn hx_jb_undo_of(const char *type)
{
    for (size_t i = 0; i < hx_jb_n_undo; i++)
        if (strcmp(hx_jb_undo[i].type, type) == 0)
            return hx_jb_undo[i].fn;
    return NULL;
}

int hx_jobs_stopping(void)
{
    return atomic_load(&hx_jb_closing);
}

void hx_jobs_set_changed(void (*fn)(const char *id))
{
    atomic_store(&hx_jb_changed, fn);
}

/* Runs the undo recorded for job id (outside the lock) and marks the cleanup done. */
static void hx_jb_run_undo(long long id, const char *type, const char *undo_text)
{
    hx_job_undo_fn fn = NULL;
    {
        HX_JB_LOCKED;
        fn = hx_jb_undo_of(type);
    }
    hx_autojson json_t *undo = undo_text ? json_loads(undo_text, 0, NULL) : NULL;
    int r = fn && json_is_object(undo) ? fn(undo) : 0;
    HX_JB_LOCKED;
    if (r < 0) {
        /* The undo stays in the record: the next daemon start tries again. */
        hx_jb_exec("record a cleanup", "UPDATE jobs SET cleanup='failed' WHERE id=?1", "i", id);
        hx_jb_log_locked(id, "cleanup failed: see the daemon's log; it is tried again at the "
                             "next start");
        return;
    }
    hx_jb_exec("record a cleanup", "UPDATE jobs SET cleanup='done', undo=NULL WHERE id=?1", "i",
               id);
    hx_jb_log_locked(id, json_is_object(undo)
                             ? "cleanup done: everything the job created is removed"
                             : "cleanup done: the job had created nothing");
}

static void *hx_jb_recover_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "jobs-recover");
    hx_autojson json_t *todo = json_array();
    {
        HX_JB_LOCKED;
        hx_autostmt sqlite3_stmt *st = NULL;
        if (hx_jb_db && sqlite3_prepare_v2(hx_jb_db,
                                           "SELECT id, type, undo FROM jobs WHERE"
                                           " cleanup IN ('pending','failed') ORDER BY id",
                                           -1, &st, NULL) == SQLITE_OK)
            while (sqlite3_step(st) == SQLITE_ROW)
                json_array_append_new(
                    todo, json_pack("{s:I,s:s,s:s?}", "id", (json_int_t)sqlite3_column_int64(st, 0),
                                    "type", (const char *)sqlite3_column_text(st, 1), "undo",
                                    (const char *)sqlite3_column_text(st, 2)));
    }
    size_t i;
    json_t *t;
    json_array_foreach (todo, i, t) {
        long long id = json_integer_value(json_object_get(t, "id"));
        hx_info("jobs: cleaning up after interrupted job %08lld", id);
        hx_jb_run_undo(id, json_string_value(json_object_get(t, "type")),
                       json_string_value(json_object_get(t, "undo")));
        char idstr[HX_JOB_ID_LEN];
        hx_jb_fmt_id(id, idstr);
        hx_jb_touch(idstr);
    }
    HX_JB_LOCKED;
    hx_jb_threads--;
    pthread_cond_broadcast(&hx_jb_cond);
    return NULL;
}

void hx_jobs_recover(void)
{
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    HX_JB_LOCKED;
    if (pthread_create(&t, &a, hx_jb_recover_main, NULL) == 0)
        hx_jb_threads++;
    else
        hx_err("jobs: cannot start the recovery thread");
    pthread_attr_destroy(&a);
}

void hx_jobs_close(void)
{
    pthread_mutex_lock(&hx_jb_mu);
    hx_jb_closing = 1;
    for (hx_job *j = hx_jb_running; j; j = j->next)
        atomic_store(&j->stop, 2);
    /* Each job stops at its next chunk and runs its undo; bounded, in case libvirt hangs. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += HX_JOB_RECOVER_WAIT_S;
    while (hx_jb_threads > 0)
        if (pthread_cond_timedwait(&hx_jb_cond, &hx_jb_mu, &until) == ETIMEDOUT) {
            hx_warn("jobs: %d job threads still busy at exit", hx_jb_threads);
            break;
        }
    /* A thread still running keeps the database open: the process ends anyway. */
    if (hx_jb_threads == 0 && hx_jb_db) {
        sqlite3_close(hx_jb_db);
        hx_jb_db = NULL;
    }
    pthread_mutex_unlock(&hx_jb_mu);
}

/* ---- the job thread ---- */

static void hx_jb_flush_locked(hx_job *j)
{
    hx_jb_exec("record progress", "UPDATE jobs SET bytes_done=?1, bytes_total=?2 WHERE id=?3",
               "iii", (long long)j->done, (long long)j->total, j->id);
    j->flushed_ns = hx_now_mono_ns();
}

static void *hx_jb_main(void *arg)
{
    hx_job *j = arg;
    char name[16];
    snprintf(name, sizeof(name), "job-%lld", j->id);
    pthread_setname_np(pthread_self(), name);
    char target[1024] = "";
    {
        HX_JB_LOCKED;
        hx_jb_exec("start a job", "UPDATE jobs SET state='running', started_ns=?1 WHERE id=?2",
                   "ii", hx_now_real_ns(), j->id);
        hx_autostmt sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(hx_jb_db, "SELECT target FROM jobs WHERE id=?1", -1, &st, NULL) ==
                SQLITE_OK &&
            sqlite3_bind_int64(st, 1, j->id) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
            hx_strlcpy(target, (const char *)sqlite3_column_text(st, 0), sizeof(target));
    }
    hx_jb_post(j->id, j->type, target, "running", NULL);
    hx_jb_touch(j->idstr);

    hx_autofree char *msg = NULL;
    int r = j->fn(j, j->arg, &msg);
    int stop = atomic_load(&j->stop);
    const char *state = r == 0                         ? "done"
                        : r == -ECANCELED && stop == 2 ? "interrupted"
                        : r == -ECANCELED              ? "cancelled"
                                                       : "failed";
    if (r == -ECANCELED && !msg)
        msg = strdup(stop == 2 ? "the daemon stopped while the job ran"
                               : "cancelled (a write to its cancel file)");
    if (r < 0 && !msg && asprintf(&msg, "job %s: %s", j->idstr, strerror(-r)) < 0)
        msg = NULL;
    hx_autofree char *undo = NULL;
    {
        HX_JB_LOCKED;
        hx_jb_flush_locked(j);
        if (r < 0) {
            hx_autostmt sqlite3_stmt *st = NULL;
            if (sqlite3_prepare_v2(hx_jb_db, "SELECT undo FROM jobs WHERE id=?1", -1, &st, NULL) ==
                    SQLITE_OK &&
                sqlite3_bind_int64(st, 1, j->id) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
                sqlite3_column_text(st, 0))
                undo = strdup((const char *)sqlite3_column_text(st, 0));
            /* The phase stays where the job stopped; cleanup tells how the undo goes. */
            hx_jb_exec("record a cleanup", "UPDATE jobs SET cleanup='pending' WHERE id=?1", "i",
                       j->id);
            hx_jb_log_locked(j->id, msg ? msg : state);
            hx_jb_log_locked(j->id, "cleaning up");
        }
    }
    if (r < 0) {
        hx_jb_touch(j->idstr);
        hx_jb_run_undo(j->id, j->type, undo);
    }
    {
        HX_JB_LOCKED;
        hx_jb_exec("finish a job",
                   "UPDATE jobs SET state=?1, finished_ns=?2, message=?3,"
                   " phase=CASE WHEN ?1='done' THEN 'finished' ELSE phase END WHERE id=?4",
                   "titi", state, hx_now_real_ns(), msg, j->id);
        hx_jb_log_locked(j->id, state);
        for (hx_job **p = &hx_jb_running; *p; p = &(*p)->next)
            if (*p == j) {
                *p = j->next;
                break;
            }
    }
    if (r < 0)
        hx_warn("job %s (%s %s): %s: %s", j->idstr, j->type, target, state, msg ? msg : "");
    else
        hx_info("job %s (%s %s): done", j->idstr, j->type, target);
    hx_jb_post(j->id, j->type, target, state, msg);
    hx_jb_touch(j->idstr);
    if (j->free_arg)
        j->free_arg(j->arg);
    free(j);
    HX_JB_LOCKED;
    hx_jb_threads--;
    pthread_cond_broadcast(&hx_jb_cond);
    return NULL;
}

int hx_jobs_submit(const char *type, const char *target, const char *owner, hx_job_fn fn, void *arg,
                   void (*free_arg)(void *), char id[HX_JOB_ID_LEN], char **msg)
{
    hx_job *j = calloc(1, sizeof(*j));
    pthread_mutex_lock(&hx_jb_mu);
    int r = 0;
    if (!j)
        r = -ENOMEM;
    else if (hx_jb_closing || !hx_jb_db)
        r = -ESHUTDOWN;
    else
        r = hx_jb_exec("record a new job",
                       "INSERT INTO jobs (type, target, owner, state, phase, created_ns)"
                       " VALUES (?1, ?2, ?3, 'queued', 'queued', ?4)",
                       "ttti", type, target, owner, hx_now_real_ns());
    if (r == 0) {
        j->id = sqlite3_last_insert_rowid(hx_jb_db);
        hx_jb_fmt_id(j->id, j->idstr);
        hx_strlcpy(j->type, type, sizeof(j->type));
        j->fn = fn;
        j->arg = arg;
        j->free_arg = free_arg;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        pthread_t t;
        if (pthread_create(&t, &a, hx_jb_main, j) != 0) {
            r = -EAGAIN;
            hx_jb_exec("fail a job",
                       "UPDATE jobs SET state='failed', message='cannot start a thread' WHERE"
                       " id=?1",
                       "i", j->id);
        } else {
            j->next = hx_jb_running;
            hx_jb_running = j;
            hx_jb_threads++;
            hx_strlcpy(id, j->idstr, HX_JOB_ID_LEN);
            hx_jb_post(j->id, type, target, "queued", NULL);
        }
        pthread_attr_destroy(&a);
    }
    pthread_mutex_unlock(&hx_jb_mu);
    if (r < 0) {
        if (free_arg)
            free_arg(arg);
        free(j);
        if (asprintf(msg, "%s: cannot start a %s job: %s", target, type,
                     r == -ESHUTDOWN ? "the daemon is stopping" : strerror(-r)) < 0)
            *msg = NULL;
        return r;
    }
    hx_jb_touch(NULL);
    return 0;
}

/* ---- the job's own calls ---- */

const char *hx_job_id(const hx_job *j)
{
    return j->idstr;
}

int hx_job_check(hx_job *j)
{
    return atomic_load(&j->stop) ? -ECANCELED : 0;
}

void hx_job_phase(hx_job *j, const char *phase)
{
    {
        HX_JB_LOCKED;
        hx_jb_exec("record a phase", "UPDATE jobs SET phase=?1 WHERE id=?2", "ti", phase, j->id);
        hx_jb_flush_locked(j);
        hx_jb_log_locked(j->id, phase);
    }
    hx_jb_touch(j->idstr);
}

void hx_job_progress(hx_job *j, uint64_t done, uint64_t total)
{
    j->done = done;
    j->total = total;
    if (hx_now_mono_ns() - j->flushed_ns < HX_JOB_FLUSH_NS)
        return;
    {
        HX_JB_LOCKED;
        hx_jb_flush_locked(j);
    }
    hx_jb_touch(j->idstr);
}

void hx_job_log(hx_job *j, const char *fmt, ...)
{
    hx_autofree char *line = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&line, fmt, ap) < 0)
        line = NULL;
    va_end(ap);
    if (!line)
        return;
    {
        HX_JB_LOCKED;
        hx_jb_log_locked(j->id, line);
    }
    hx_jb_touch(j->idstr);
}

void hx_job_set_undo(hx_job *j, json_t *undo)
{
    hx_autofree char *text = json_dumps(undo, JSON_COMPACT);
    HX_JB_LOCKED;
    hx_jb_exec("record what a job created", "UPDATE jobs SET undo=?1 WHERE id=?2", "ti", text,
               j->id);
}

void hx_job_set_result(hx_job *j, json_t *result)
{
    hx_autofree char *text = json_dumps(result, JSON_COMPACT);
    json_decref(result);
    {
        HX_JB_LOCKED;
        hx_jb_exec("record a job's result", "UPDATE jobs SET result=?1 WHERE id=?2", "ti", text,
                   j->id);
    }
    hx_jb_touch(j->idstr);
}

/* ---- reads ---- */

uint64_t hx_jobs_version(void)
{
    return atomic_load(&hx_jb_version);
}

char **hx_jobs_list(void)
{
    HX_JB_LOCKED;
    hx_autostmt sqlite3_stmt *st = NULL;
    size_t n = 0, cap = 16;
    char **out = calloc(cap + 1, sizeof(char *));
    if (!out || !hx_jb_db ||
        sqlite3_prepare_v2(hx_jb_db, "SELECT id FROM jobs ORDER BY id", -1, &st, NULL) != SQLITE_OK)
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
    return hx_jb_db &&
           sqlite3_prepare_v2(hx_jb_db, "SELECT 1 FROM jobs WHERE id=?1", -1, &st, NULL) ==
               SQLITE_OK &&
           sqlite3_bind_int64(st, 1, v) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW;
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

int hx_jobs_status(const char *id, json_t **out)
{
    long long v = hx_jb_parse_id(id);
    if (v < 0)
        return -ENOENT;
    HX_JB_LOCKED;
    hx_autostmt sqlite3_stmt *st = NULL;
    if (!hx_jb_db ||
        sqlite3_prepare_v2(hx_jb_db, HX_JB_COLS "WHERE id=?1", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_int64(st, 1, v) != SQLITE_OK)
        return -EIO;
    if (sqlite3_step(st) != SQLITE_ROW)
        return -ENOENT;
    *out = hx_jb_row(st);
    return *out ? 0 : -ENOMEM;
}

int hx_jobs_last_of(const char *type, const char *owner, json_t **out)
{
    HX_JB_LOCKED;
    hx_autostmt sqlite3_stmt *st = NULL;
    if (!hx_jb_db ||
        sqlite3_prepare_v2(hx_jb_db,
                           HX_JB_COLS "WHERE type=?1 AND owner=?2 ORDER BY id DESC LIMIT 1", -1,
                           &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC) != SQLITE_OK)
        return -EIO;
    if (sqlite3_step(st) != SQLITE_ROW)
        return -ENOENT;
    *out = hx_jb_row(st);
    return *out ? 0 : -ENOMEM;
}

int hx_jobs_log_text(const char *id, hx_buf *out)
{
    long long v = hx_jb_parse_id(id);
    if (v < 0)
        return -ENOENT;
    HX_JB_LOCKED;
    hx_autostmt sqlite3_stmt *st = NULL;
    if (!hx_jb_db ||
        sqlite3_prepare_v2(hx_jb_db, "SELECT time_ns, line FROM job_log WHERE job=?1 ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_int64(st, 1, v) != SQLITE_OK)
        return -EIO;
    while (sqlite3_step(st) == SQLITE_ROW) {
        char when[40];
        hx_stats_iso_time(sqlite3_column_int64(st, 0), when, sizeof(when));
        if (hx_buf_printf(out, "%s %s\n", when, (const char *)sqlite3_column_text(st, 1)) < 0)
            return -ENOMEM;
    }
    return 0;
}

int hx_jobs_cancel(const char *id, char **msg)
{
    long long v = hx_jb_parse_id(id);
    HX_JB_LOCKED;
    for (hx_job *j = hx_jb_running; j; j = j->next)
        if (j->id == v) {
            atomic_store(&j->stop, 1);
            hx_jb_log_locked(v, "cancel requested");
            return 0;
        }
    if (asprintf(msg, "job %s is not running: only a running job can be cancelled", id) < 0)
        *msg = NULL;
    return -EINVAL;
}
