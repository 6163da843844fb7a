/* The tree, declared in one table of node kinds. FUSE, HTTP and docs/tree.md all follow it.
 *
 * A kind names a path pattern ("/nodes/{node}/vms/{vm}/state"), the kind of file, its mode, the
 * scope whose version it follows, and how it renders. A path resolves to an hx_obj: the kind plus
 * the identities it captured (node name, VM name and UUID). Inode numbers derive from identity
 * (a VM's UUID, not its name), so they are stable across restarts and never reused.
 *
 * Owns: the table (fs/tree/tree.c), resolution and listing over it (fs/tree/tree_lookup.c,
 * fs/tree/tree_list.c), the callbacks it names (fs/tree/tree_cluster.c, tree_storage.c,
 * tree_snapshots.c, tree_jobs.c), inode numbers (fs/tree/ino.c), renderings (fs/tree/render.c) and
 * the write path (fs/tree/apply.c). Callers: the front ends (fs/fuse/fuse*.c, fs/fuse/notify.c,
 * fs/fuse/inodes.c, fs/fuse/main.c) and the unit tests; never the backend. Locking: hx_tree_init
 * runs once before any other call; the table is immutable, and the tree's one lock
 * (fs/tree/apply.c's, over the last_error lines) is held alone, never around a backend call; the
 * backend calls take the backend's own. Any thread may call in.
 */
#pragma once

#include "hx_cluster.h"
#include "hx_util.h"

#include <stdint.h>
#include <sys/types.h>

typedef enum {
    HX_FT_DIR,    /* directory */
    HX_FT_DOC,    /* document: rendered whole, true size, page cache (file-semantics.md 1) */
    HX_FT_CTL,    /* control file (file-semantics.md 3) */
    HX_FT_STREAM, /* stream (file-semantics.md 4) */
    HX_FT_LINK,   /* symbolic link */
} hx_ftype;

typedef enum {
    HX_SCOPE_STATIC,  /* never changes while the daemon runs */
    HX_SCOPE_CLUSTER, /* changes with anything in the cluster */
    HX_SCOPE_NODE,    /* a node's own facts and its VM list; readable while offline */
    HX_SCOPE_ONLINE,  /* like NODE, but only while the node is online (else EHOSTDOWN) */
    HX_SCOPE_VM,      /* one VM; only while its node is online */
} hx_scope;

#define HX_SUB_MAX 256

typedef struct hx_obj {
    int kind;
    char node[HX_NODE_NAME_MAX];
    char vm[HX_VM_NAME_MAX];
    char vm_uuid[HX_UUID_LEN];
    char sub[HX_SUB_MAX];  /* {pool} or {job} */
    char item[HX_SUB_MAX]; /* {vol} or {snap} */
} hx_obj;

typedef int (*hx_render_fn)(const hx_obj *o, hx_buf *out);
/* Writes (fs/tree/apply.c wraps each with rights, audit, events and last_error). Each returns 0 or
 * -errno with *msg a malloc'd sentence naming the object. */
typedef int (*hx_ctl_fn)(const hx_obj *o, const char *cmd, size_t len, char **msg);
typedef int (*hx_commit_fn)(const hx_obj *o, const char *doc, size_t len, char **msg);
typedef int (*hx_mkdir_fn)(const hx_obj *dir, const char *name, char **msg);
typedef int (*hx_rmdir_fn)(const hx_obj *o, char **msg);
typedef int (*hx_version_fn)(const hx_obj *o, uint64_t *version, long long *changed_ns);
/* A wildcard segment ("{pool}"): the names it has inside dir (NULL-terminated, free with
 * hx_strv_free), and whether name exists (filling o's identity field for the segment).
 * Both return 0, -ENOENT or -EHOSTDOWN. */
typedef int (*hx_list_fn)(const hx_obj *dir, char ***names);
typedef int (*hx_capture_fn)(hx_obj *o, const char *name);
/* A wildcard segment whose children are cheaper to list with their identities in one call than
 * by list and a capture of each name: appends them to out (fs/tree/tree_list.c). */
struct hx_tree_list;
typedef int (*hx_list_all_fn)(const hx_obj *child, struct hx_tree_list *out, size_t *cap);
/* A symbolic link's target (relative), into buf. */
typedef int (*hx_link_fn)(const hx_obj *o, char *buf, size_t size);

/* Kind flags. */
enum {
    HX_KF_SCRATCH = 1, /* a directory where new names are scratch files (file-semantics.md 2) */
    /* A writable document for which empty is a valid content (`: > f` clears it). Others commit
     * nothing on a truncating open without a write. */
    HX_KF_EMPTY_OK = 1 << 3,
    /* A writable document that may be empty: unlink, and truncate to 0 without an open file,
     * commit an empty document (it clears it) instead of failing with EPERM. */
    HX_KF_UNLINK_CLEARS = 2,
};

/* Who asks, from the FUSE request. */
typedef struct hx_caller {
    unsigned uid, gid;
    int pid;
} hx_caller;

typedef struct hx_kind {
    const char *pattern;
    hx_ftype type;
    mode_t mode;
    hx_scope scope;
    /* A rendering stays valid while the scope's version holds and, when ttl_ms > 0, for at most
     * that long (for live counters that change without an event). */
    int ttl_ms;
    hx_render_fn render;
    /* Documentation, checked against docs/tree.md by the unit tests. */
    const char *doc;
    hx_ctl_fn ctl;           /* control file: each write(2) is one command */
    hx_commit_fn commit;     /* writable document: a whole new content, committed at once */
    hx_mkdir_fn mkdir;       /* directory: mkdir of a new child */
    hx_rmdir_fn rmdir;       /* directory: rmdir of this object */
    hx_version_fn version;   /* own version instead of the scope's, also for the kinds below */
    hx_list_fn list;         /* wildcard segments: the names */
    hx_capture_fn capture;   /* wildcard segments: one name */
    hx_list_all_fn list_all; /* wildcard segments: every child at once (instead of list) */
    hx_link_fn link;         /* HX_FT_LINK */
    unsigned flags;
} hx_kind;

extern const hx_kind hx_kinds[];
extern const size_t hx_n_kinds;

enum { HX_KIND_ROOT = 0 };

/* Must be called once before the rest; the cluster backs every dynamic kind. */
void hx_tree_init(hx_cluster *cl);
hx_cluster *hx_tree_cluster(void);

int hx_tree_parent_kind(int kind);
/* Index of the kind with exactly this pattern (the root when none has it). */
int hx_tree_kind(const char *pattern);
/* The child kind of dir_kind with that fixed last segment, or -1. */
int hx_tree_child_kind(int dir_kind, const char *segment);
/* Last segment of a kind's pattern ("state", "{vm}"). */
const char *hx_tree_segment(int kind);
/* Resolves name inside directory dir. -ENOENT, -ENOTDIR, -EHOSTDOWN. */
int hx_tree_lookup(const hx_obj *dir, const char *name, hx_obj *out);
/* The directory that holds o (the root's parent is the root). */
void hx_tree_parent(const hx_obj *o, hx_obj *out);

/* Children of a directory, in listing order. Free with hx_tree_list_free. */
typedef struct hx_tree_list {
    hx_obj *objs;
    char **names;
    size_t n;
} hx_tree_list;
int hx_tree_list_dir(const hx_obj *dir, hx_tree_list *out);
void hx_tree_list_free(hx_tree_list *l);

/* Whether o still exists, and the version and change time of what it shows.
 * -ENOENT, -EHOSTDOWN. */
int hx_tree_version(const hx_obj *o, uint64_t *version, long long *changed_ns);
/* Renders a document. -errno on failure. */
int hx_tree_render(const hx_obj *o, hx_buf *out);

/* Identity and inode number. The root is inode 1 (FUSE_ROOT_ID). */
void hx_tree_identity(const hx_obj *o, char *buf, size_t size);
uint64_t hx_tree_ino(const hx_obj *o);
/* The path of o inside the tree, for messages. */
void hx_tree_path(const hx_obj *o, char *buf, size_t size);
