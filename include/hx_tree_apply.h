/* Every change made through the tree passes here: rights, the backend call, the audit record,
 * the event, and the last_error line of the object's directory. FUSE and HTTP both call it. */
#pragma once

#include "hx_audit.h"
#include "hx_events.h"
#include "hx_tree.h"

typedef enum {
    HX_OP_CTL,
    HX_OP_COMMIT,
    HX_OP_MKDIR,
    HX_OP_RMDIR,
    /* Changes no kind takes: refused (EPERM), but audited like any attempt. */
    HX_OP_CREATE,
    HX_OP_UNLINK, /* taken by kinds with HX_KF_UNLINK_CLEARS: an empty commit */
    HX_OP_RENAME,
} hx_op;

/* The services the tree writes to; set once at start (either may be NULL in unit tests). */
void hx_apply_init(hx_events *ev, hx_audit *audit);
hx_events *hx_apply_events(void);
hx_audit *hx_apply_audit(void);

/* Runs op on o (for MKDIR and CREATE, o is the directory and name the new child; otherwise name
 * is NULL).
 * Returns 0 or -errno; a failure leaves its sentence in last_error and an event. */
int hx_apply(hx_op op, const hx_obj *o, const char *name, const char *data, size_t len,
             const hx_caller *who);

/* last_error of the directory d: its line (malloc'd, "" when none) and its version. */
char *hx_lasterr_get(const hx_obj *d);
uint64_t hx_lasterr_version(void);

/* Called when a last_error or the audit changed, to drop the kernel's copy (set by FUSE). */
void hx_apply_set_changed(void (*fn)(const hx_obj *o));
/* And for a name inside a directory (a cached entry, or a cached miss), set by FUSE. */
void hx_apply_set_entry_changed(void (*fn)(uint64_t dir_ino, const char *name));
/* For changes the backend announces no event for (snapshots): drops the kernel's copy of o, or
 * with name, of the entry name inside the directory o. */
void hx_apply_changed(const hx_obj *o, const char *name);

/* The backend's change listener part that posts events (hx_cluster_new's listener calls it). */
void hx_apply_post_change(const hx_change *c);
