/* Jobs: running them. Submitting a job, its thread (start, body, undo on failure, final state),
 * the calls a job's body makes (phase, progress, log, undo and result documents) and cancel. */
#include "jobs_priv.h"
#include "hx_log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Progress goes to the database at most this often. */
#define HX_JOB_FLUSH_NS 250000000LL

/* ---- the job thread ---- */

static void hx_jb_flush_locked(hx_job *j)
{
    hx_jb_exec("record progress", "UPDATE jobs SET bytes_done=?1, bytes_total=?2 WHERE id=?3",
               "iii", (long long)j->done, (long long)j->total, j->id);
    j->flushed_ns = hx_now_mono_ns();
}

/* One text column of the row a query on a job's id finds (malloc'd), NULL when none. */
static char *hx_jb_text_of_locked(const char *sql, long long id)
{
    hx_autostmt sqlite3_stmt *st = NULL;
    if (hx_jb_prepare(&st, sql, "i", id) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW ||
        !sqlite3_column_text(st, 0))
        return NULL;
    return strdup((const char *)sqlite3_column_text(st, 0));
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
        hx_autofree char *t = hx_jb_text_of_locked("SELECT target FROM jobs WHERE id=?1", j->id);
        if (t)
            hx_strlcpy(target, t, sizeof(target));
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
            undo = hx_jb_text_of_locked("SELECT undo FROM jobs WHERE id=?1", j->id);
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
    hx_jb_thread_done();
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
    else if (hx_jobs_stopping() || !hx_jb_db)
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
        if (hx_jb_spawn_locked(hx_jb_main, j) != 0) {
            r = -EAGAIN;
            hx_jb_exec("fail a job",
                       "UPDATE jobs SET state='failed', message='cannot start a thread' WHERE"
                       " id=?1",
                       "i", j->id);
        } else {
            j->next = hx_jb_running;
            hx_jb_running = j;
            hx_strlcpy(id, j->idstr, HX_JOB_ID_LEN);
            hx_jb_post(j->id, type, target, "queued", NULL);
        }
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

/* Asks a running job to stop at its next check. */
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
