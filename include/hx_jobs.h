/* Long operations (clones, later migrations and snapshots) run as jobs: each in its own thread,
 * recorded in SQLite (table `jobs` and `job_log` in the audit database file, through a
 * connection of its own), shown as /cluster/jobs/<id>/{status.json,log,cancel}.
 *
 * A job's record holds an "undo" document: what it created so far (volumes, a domain), written
 * before each thing is created. When the job fails, is cancelled, or the daemon stops, the undo
 * function of its type runs from that record; a job left queued or running by a daemon that died
 * is marked "interrupted" at the next start and its undo runs then. Undo must be re-runnable.
 *
 * Ids are increasing integers shown zero-padded to 8 digits ("00000042"), so names sort in
 * creation order and listings show the newest last.
 *
 * The module owns the jobs tables, the job threads and the undo of their types. Callers: the
 * daemon's start and stop (open, register, recover, close), job types such as the clone
 * (backend/clone_job.c) (submit and the calls for a job's body, from the job's thread), the tree
 * (reads, cancel). Locking: one internal mutex guards the connection and the list of running jobs;
 * it is never held while a job's body, an undo function or the set_changed callback runs, so every
 * function here may be called from any thread (the calls for a job's body only on that job's
 * thread). Files: backend/jobs_db.c (store, open, close), jobs_run.c (threads, job calls, cancel),
 * jobs_read.c (reads), jobs_recover.c (undo, interrupted jobs); backend/jobs_priv.h between them.
 */
#pragma once

#include "hx_events.h"
#include "hx_util.h"

#include <jansson.h>
#include <stdint.h>

#define HX_JOB_ID_LEN 24

typedef struct hx_job hx_job;

/* The body of a job, on the job's thread: returns 0 or -errno with *msg a malloc'd sentence.
 * -ECANCELED when it stopped because hx_job_check said so. */
typedef int (*hx_job_fn)(hx_job *j, void *arg, char **msg);
/* Removes what the undo document names; runs on a job thread or the recovery thread. 0, or -1
 * when something could not be removed (the record then says cleanup "failed"). */
typedef int (*hx_job_undo_fn)(const json_t *undo);

/* Opens the database (tables created when missing), marks every job left queued or running as
 * "interrupted" (its undo still pending). 0 or -1 with *err a malloc'd sentence. */
int hx_jobs_open(const char *path, hx_events *ev, char **err);
/* Registers the undo of a job type (before hx_jobs_recover). */
void hx_jobs_register(const char *type, hx_job_undo_fn undo);
/* Runs the pending undo of interrupted jobs on a thread of its own (nodes connect meanwhile). */
void hx_jobs_recover(void);
/* Stops every running job ("interrupted", undo done), waits for them, closes the database. */
void hx_jobs_close(void);
/* 1 once hx_jobs_close began: long waits in undo functions give up. */
int hx_jobs_stopping(void);
/* Called (from any thread, must not block) after a job's record changed; id NULL = the list. */
void hx_jobs_set_changed(void (*fn)(const char *id));

/* Records a new job and starts its thread. owner: the UUID of the VM it works on (for the VM's
 * own view of its last job), may be NULL. arg is freed with free_arg when the job ends (also
 * when starting fails). Fills id. 0 or -errno with *msg. */
int hx_jobs_submit(const char *type, const char *target, const char *owner, hx_job_fn fn, void *arg,
                   void (*free_arg)(void *), char id[HX_JOB_ID_LEN], char **msg);

/* ---- for the job's body ---- */
const char *hx_job_id(const hx_job *j);
/* 0 to go on, -ECANCELED when cancelled or the daemon is stopping. Cheap: call between chunks. */
int hx_job_check(hx_job *j);
void hx_job_phase(hx_job *j, const char *phase);
/* Measured progress; written to the database at most 4 times a second (and at the end). */
void hx_job_progress(hx_job *j, uint64_t done, uint64_t total);
void hx_job_log(hx_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Replaces the undo document (reference taken) and writes it at once. */
void hx_job_set_undo(hx_job *j, json_t *undo);
/* Sets the result document shown in status.json (reference stolen). */
void hx_job_set_result(hx_job *j, json_t *result);

/* ---- for the tree ---- */
uint64_t hx_jobs_version(void);
/* Job ids, oldest first (NULL-terminated, free with hx_strv_free). */
char **hx_jobs_list(void);
int hx_jobs_exists(const char *id);
/* status.json: {"id","type","target","state","phase","bytes_done","bytes_total","created",
 * "started","finished","message","result","cleanup"}. 0, -ENOENT, -EIO. */
int hx_jobs_status(const char *id, json_t **out);
/* The newest job of a type on an owner, as hx_jobs_status; -ENOENT when none. */
int hx_jobs_last_of(const char *type, const char *owner, json_t **out);
/* The log lines, "TIME message\n" each. */
int hx_jobs_log_text(const char *id, hx_buf *out);
/* Asks a running job to stop at its next check. -ENOENT; -EINVAL when it already finished. */
int hx_jobs_cancel(const char *id, char **msg);
