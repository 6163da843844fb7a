/* Every change made through the tree passes here: rights, the backend call, the audit record,
 * the event, and the last_error line of the object's directory. FUSE and HTTP both call it. */
#pragma once

#include "hx_audit.h"
#include "hx_events.h"
#include "hx_tree.h"

/* HX_OP_UNLINK: unlink of a document whose kind has HX_KF_UNLINK_CLEARS, committed as an empty
 * document. */
typedef enum { HX_OP_CTL, HX_OP_COMMIT, HX_OP_MKDIR, HX_OP_RMDIR, HX_OP_UNLINK } hx_op;

/* The services the tree writes to; set once at start (either may be NULL in unit tests). */
void hx_apply_init(hx_events *ev, hx_audit *audit);
hx_events *hx_apply_events(void);
hx_audit *hx_apply_audit(void);

/* Runs op on o (for MKDIR, o is the directory and name the new child; otherwise name is NULL).
 * Returns 0 or -errno; a failure leaves its sentence in last_error and an event. */
int hx_apply(hx_op op, const hx_obj *o, const char *name, const char *data, size_t len,
             const hx_caller *who);

/* last_error of the directory d: its line (malloc'd, "" when none) and its version. */
char *hx_lasterr_get(const hx_obj *d);
uint64_t hx_lasterr_version(void);

/* Called when a last_error or the audit changed, to drop the kernel's copy (set by FUSE). */
void hx_apply_set_changed(void (*fn)(const hx_obj *o));

/* The backend's change listener part that posts events (hx_cluster_new's listener calls it). */
void hx_apply_post_change(const hx_change *c);
