/* Jobs: undo. The undo function of each job type, running a job's recorded undo, and cleaning up
 * after the jobs a daemon left queued or running when it died (marked "interrupted" at open,
 * their undo run by a thread of its own). */
#include "jobs_priv.h"
#include "auto.h"
#include "hx_log.h"

#include <string.h>

typedef struct hx_undo_type {
    char type[32];
    hx_job_undo_fn fn;
} hx_undo_type;

static hx_undo_type hx_jb_undo[8];
static size_t hx_jb_n_undo;

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

void hx_jb_mark_interrupted_locked(void)
{
    /* Jobs a dead daemon left behind: their thread is gone, their undo is still to do. */
    hx_jb_exec("mark interrupted jobs",
               "UPDATE jobs SET state='interrupted', finished_ns=?1, cleanup='pending',"
               " message=coalesce(message, 'the daemon stopped while the job ran')"
               " WHERE state IN ('queued','running')",
               "i", hx_now_real_ns());
}

void hx_jb_run_undo(long long id, const char *type, const char *undo_text)
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
        if (hx_jb_prepare(&st,
                          "SELECT id, type, undo FROM jobs WHERE"
                          " cleanup IN ('pending','failed') ORDER BY id",
                          "") == SQLITE_OK)
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
    hx_jb_thread_done();
    return NULL;
}

void hx_jobs_recover(void)
{
    HX_JB_LOCKED;
    if (hx_jb_spawn_locked(hx_jb_recover_main, NULL) != 0)
        hx_err("jobs: cannot start the recovery thread");
}
