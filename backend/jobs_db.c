/* Jobs: the SQLite store (tables `jobs` and `job_log`, on a connection of the module's own), its
 * lock and statements, job ids, change notices and job.state events; opening, and closing once
 * every job and recovery thread has stopped. */
#include "jobs_priv.h"
#include "hx_log.h"

#include <errno.h>
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

/* How long recovery waits for the node an interrupted job worked on. */
#define HX_JOB_RECOVER_WAIT_S 60

pthread_mutex_t hx_jb_mu = PTHREAD_MUTEX_INITIALIZER;
sqlite3 *hx_jb_db;
hx_job *hx_jb_running;
static pthread_cond_t hx_jb_cond = PTHREAD_COND_INITIALIZER;
static hx_events *hx_jb_events;
static int hx_jb_threads; /* job and recovery threads alive */
static atomic_int hx_jb_closing;
static _Atomic uint64_t hx_jb_version = 1;
static void (*_Atomic hx_jb_changed)(const char *id);

void hx_jb_fmt_id(long long id, char out[HX_JOB_ID_LEN])
{
    snprintf(out, HX_JOB_ID_LEN, "%08lld", id);
}

long long hx_jb_parse_id(const char *s)
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

void hx_jb_touch(const char *id)
{
    atomic_fetch_add(&hx_jb_version, 1);
    void (*fn)(const char *) = atomic_load(&hx_jb_changed);
    if (fn)
        fn(id);
}

uint64_t hx_jobs_version(void)
{
    return atomic_load(&hx_jb_version);
}

void hx_jobs_set_changed(void (*fn)(const char *id))
{
    atomic_store(&hx_jb_changed, fn);
}

int hx_jobs_stopping(void)
{
    return atomic_load(&hx_jb_closing);
}

int hx_jb_vprepare(sqlite3_stmt **st, const char *sql, const char *fmt, va_list ap)
{
    if (!hx_jb_db)
        return SQLITE_MISUSE;
    int rc = sqlite3_prepare_v2(hx_jb_db, sql, -1, st, NULL);
    for (int i = 0; rc == SQLITE_OK && fmt[i]; i++) {
        if (fmt[i] == 'i')
            rc = sqlite3_bind_int64(*st, i + 1, va_arg(ap, long long));
        else
            rc = sqlite3_bind_text(*st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
    }
    return rc;
}

int hx_jb_prepare(sqlite3_stmt **st, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = hx_jb_vprepare(st, sql, fmt, ap);
    va_end(ap);
    return rc;
}

int hx_jb_exec(const char *what, const char *sql, const char *fmt, ...)
{
    if (!hx_jb_db)
        return -EIO;
    hx_autostmt sqlite3_stmt *st = NULL;
    va_list ap;
    va_start(ap, fmt);
    int rc = hx_jb_vprepare(&st, sql, fmt, ap);
    va_end(ap);
    rc = rc ?: sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        hx_err("jobs: cannot %s: %s", what, sqlite3_errmsg(hx_jb_db));
        return -EIO;
    }
    return 0;
}

void hx_jb_log_locked(long long id, const char *line)
{
    hx_jb_exec("append to a job log", "INSERT INTO job_log (job, time_ns, line) VALUES (?1,?2,?3)",
               "iit", id, hx_now_real_ns(), line);
}

void hx_jb_post(long long id, const char *type, const char *target, const char *state,
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
    hx_jb_mark_interrupted_locked();
    return 0;
}

int hx_jb_spawn_locked(void *(*fn)(void *), void *arg)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int e = pthread_create(&t, &a, fn, arg);
    if (e == 0)
        hx_jb_threads++;
    pthread_attr_destroy(&a);
    return e;
}

void hx_jb_thread_done(void)
{
    HX_JB_LOCKED;
    hx_jb_threads--;
    pthread_cond_broadcast(&hx_jb_cond);
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
