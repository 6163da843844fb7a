/* Private to the jobs module (backend/jobs_*.c): a job in memory, the state the module's files
 * share, and their common helpers.
 *
 * Locking: hx_jb_mu guards the connection hx_jb_db, the list hx_jb_running, the thread count and
 * the undo registry. Take it with HX_JB_LOCKED; never hold it while a job's body or an undo
 * function runs. hx_jb_exec, hx_jb_prepare and the functions named *_locked expect it held.
 */
#pragma once

#include "hx_jobs.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>

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

extern pthread_mutex_t hx_jb_mu; /* the connection and the lists */
extern sqlite3 *hx_jb_db;
extern hx_job *hx_jb_running;

static inline void hx_jb_unlockp(pthread_mutex_t **m)
{
    if (*m)
        pthread_mutex_unlock(*m);
}
static inline pthread_mutex_t *hx_jb_lock(void)
{
    pthread_mutex_lock(&hx_jb_mu);
    return &hx_jb_mu;
}
#define HX_JB_LOCKED                                                                               \
    __attribute__((cleanup(hx_jb_unlockp))) pthread_mutex_t *hx_jb_held_ = hx_jb_lock()

static inline void hx_jb_finalizep(sqlite3_stmt **st)
{
    sqlite3_finalize(*st);
}
#define hx_autostmt __attribute__((cleanup(hx_jb_finalizep)))

/* ---- jobs_db.c: the connection, ids, notices ---- */

void hx_jb_fmt_id(long long id, char out[HX_JOB_ID_LEN]);
/* The integer of an id string; -1 when it is not one of ours. */
long long hx_jb_parse_id(const char *s);
/* After a job's record changed (id NULL = the list): a new version, the tree's callback. */
void hx_jb_touch(const char *id);
/* Posts a "job.state" event (message may be NULL). */
void hx_jb_post(long long id, const char *type, const char *target, const char *state,
                const char *message);
/* Prepares sql on the connection and binds values: fmt letters i int64 (long long), t text
 * (NULL ok). SQLITE_OK, or the SQLite error (SQLITE_MISUSE when the database is closed). */
int hx_jb_prepare(sqlite3_stmt **st, const char *sql, const char *fmt, ...);
int hx_jb_vprepare(sqlite3_stmt **st, const char *sql, const char *fmt, va_list ap);
/* Runs one statement with bound values (as hx_jb_prepare). Returns 0 or -EIO (logged once,
 * naming the statement's purpose). */
int hx_jb_exec(const char *what, const char *sql, const char *fmt, ...);
void hx_jb_log_locked(long long id, const char *line);
/* Starts fn(arg) on a detached thread that hx_jobs_close waits for. 0 or the pthread_create
 * error. */
int hx_jb_spawn_locked(void *(*fn)(void *), void *arg);
/* The last call of such a thread (takes the lock). */
void hx_jb_thread_done(void);

/* ---- jobs_recover.c: undo ---- */

/* Marks the jobs a dead daemon left queued or running as "interrupted", their undo pending. */
void hx_jb_mark_interrupted_locked(void);
/* Runs the undo recorded for job id (outside the lock) and marks the cleanup done. */
void hx_jb_run_undo(long long id, const char *type, const char *undo_text);
