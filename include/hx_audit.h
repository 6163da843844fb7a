/* Persistent audit log: every change made through the tree (who, what path, what action, when,
 * result) is appended to a SQLite database in WAL mode that survives restarts. Reads are not
 * audited.
 *
 * The module owns the audit database file and its connection. Callers: the daemon's start and
 * stop (open, close), the tree's write path (append), the tree's renderers (count, render).
 * Locking: each handle has one mutex around its connection, held for one append, count or
 * render and never while calling out; every function but open and close may be called from
 * any thread. */
#pragma once

#include "hx_util.h"

#include <stddef.h>
#include <stdint.h>

typedef struct hx_audit hx_audit;

/* Opens (creating the file, its missing parent directories with mode 0700, and the schema) the
 * database at path, with journal_mode=WAL, synchronous=NORMAL and a busy timeout of 2000 ms. NULL
 * on failure with *err (when err is not NULL) a malloc'd sentence naming the path; nothing is
 * logged, the caller reports it. */
hx_audit *hx_audit_open(const char *path, char **err);
void hx_audit_close(hx_audit *a);

/* Appends one record: the wall-clock time (stored as integer ns, rendered as ISO-8601 UTC with
 * ms), uid, pid, path (the tree path, e.g. "/nodes/n1/vms/k00/state"), action (e.g. "write start",
 * "mkdir", "commit config.json"), result (0 or an errno value, either sign; its name, e.g.
 * "EINVAL", is stored too) and message (may be NULL). Thread-safe. Returns 0 or -EIO (logged
 * once, naming the database and the path). */
int hx_audit_append(hx_audit *a, unsigned uid, int pid, const char *path, const char *action,
                    int result, const char *message);

/* Number of records; it changes after each append, so it can serve as a cache version. */
uint64_t hx_audit_count(hx_audit *a);

/* The newest `limit` records, oldest first, appended to out as JSON lines, one compact object per
 * line: {"id":..,"time":"..","uid":..,"pid":..,"path":"..","action":"..","result":"ok" or
 * "EINVAL","message":.. or null}. Returns 0 or -EIO (logged once). */
int hx_audit_render(hx_audit *a, size_t limit, hx_buf *out);
