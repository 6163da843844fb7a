/* Invalidation of the kernel's caches when the backend reports a change.
 *
 * libfuse's notify calls write to /dev/fuse and may wait on the kernel's locks for the inode;
 * called from a thread that serves a request for the same inode they can deadlock (see
 * fuse_lowlevel_notify_inval_entry in fuse_lowlevel.h). So backend threads only queue here, and
 * this thread, which serves no request, sends them.
 */
#include "hx_tree_apply.h"
#include "fuse_priv.h"
#include "hx_log.h"
#include "hx_tree.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

typedef struct hx_inval {
    struct hx_inval *next;
    uint64_t ino;    /* inode whose attributes and pages to drop */
    uint64_t parent; /* or, when name is set, the entry parent/name */
    char name[HX_VM_NAME_MAX];
} hx_inval;

static pthread_mutex_t hx_nt_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hx_nt_cond = PTHREAD_COND_INITIALIZER;
static hx_inval *hx_nt_head, *hx_nt_tail;
static size_t hx_nt_len;
static int hx_nt_stop;
static pthread_t hx_nt_thread;
static struct fuse_session *hx_nt_se;

/* Bounded queue: beyond it the oldest work is still done, new work is dropped with a warning;
 * the 1 s attribute timeout then catches up. */
#define HX_NOTIFY_MAX 65536

static void hx_notify_push(uint64_t ino, uint64_t parent, const char *name)
{
    hx_inval *v = calloc(1, sizeof(*v));
    if (!v)
        return;
    v->ino = ino;
    v->parent = parent;
    if (name)
        hx_strlcpy(v->name, name, sizeof(v->name));
    pthread_mutex_lock(&hx_nt_lock);
    if (hx_nt_len >= HX_NOTIFY_MAX) {
        pthread_mutex_unlock(&hx_nt_lock);
        free(v);
        hx_warn("invalidation queue full: dropping an invalidation");
        return;
    }
    if (hx_nt_tail)
        hx_nt_tail->next = v;
    else
        hx_nt_head = v;
    hx_nt_tail = v;
    hx_nt_len++;
    pthread_cond_signal(&hx_nt_cond);
    pthread_mutex_unlock(&hx_nt_lock);
}

/* Queues the inode of o if the kernel may have it. */
static void hx_notify_obj(const hx_obj *o)
{
    uint64_t ino = hx_tree_ino(o);
    if (hx_inodes_find(ino))
        hx_notify_push(ino, 0, NULL);
}

void hx_notify_object(const hx_obj *o)
{
    hx_notify_obj(o);
}

void hx_notify_entry(uint64_t parent, const char *name)
{
    hx_notify_push(0, parent, name);
}

static void hx_notify_kind_path(const char *pattern, const hx_obj *base)
{
    hx_obj o = *base;
    o.kind = hx_tree_kind(pattern);
    hx_notify_obj(&o);
}

/* Queues every kind that pick chooses, with the identities of base. */
static void hx_notify_kinds(const hx_obj *base, int (*pick)(const hx_kind *k))
{
    for (size_t k = 0; k < hx_n_kinds; k++)
        if (pick(&hx_kinds[k])) {
            hx_obj o = *base;
            o.kind = (int)k;
            hx_notify_obj(&o);
        }
}

/* A name appeared in or vanished from the directory of kind pattern (identities from base): its
 * attributes, and the entry itself, a cached one or a cached miss for a name that just appeared. */
static void hx_notify_listing(const hx_obj *base, const char *pattern, const char *name)
{
    hx_obj d = *base;
    d.kind = hx_tree_kind(pattern);
    hx_notify_obj(&d);
    hx_notify_push(0, hx_tree_ino(&d), name);
}

static int hx_notify_pick_vm(const hx_kind *k)
{
    return k->scope == HX_SCOPE_VM;
}

/* The pool's own files; volumes follow within a second (their documents have a TTL). */
static int hx_notify_pick_pool(const hx_kind *k)
{
    return strstr(k->pattern, "{pool}") && !strstr(k->pattern, "{vol}");
}

/* A VM or a pool changed: its files that pick chooses and, when it appeared or vanished, its
 * entry in its directory (kind pattern). */
static void hx_notify_member(const hx_change *c, const hx_obj *o, int (*pick)(const hx_kind *k),
                             const char *pattern, const char *name)
{
    hx_notify_kinds(o, pick);
    if (c->appeared || c->vanished)
        hx_notify_listing(o, pattern, name);
}

static void hx_notify_entry_cb(hx_inode *e, void *opaque)
{
    (void)opaque;
    hx_notify_push(hx_inode_ino(e), 0, NULL);
}

void hx_notify_change(const hx_change *c, void *opaque)
{
    (void)opaque;
    hx_apply_post_change(c);
    /* Every identity the change names: an inode number only depends on those its kind's
     * pattern holds. */
    hx_obj base = {0};
    if (c->node)
        hx_strlcpy(base.node, c->node, sizeof(base.node));
    if (c->vm_name)
        hx_strlcpy(base.vm, c->vm_name, sizeof(base.vm));
    if (c->vm_uuid)
        hx_strlcpy(base.vm_uuid, c->vm_uuid, sizeof(base.vm_uuid));
    if (c->pool)
        hx_strlcpy(base.sub, c->pool, sizeof(base.sub));
    /* Anything that changes also changes the counts. */
    hx_notify_kind_path("/cluster/status", &base);
    switch (c->kind) {
    case HX_CHANGE_NODES:
        hx_notify_listing(&base, "/nodes", c->node);
        hx_inodes_foreach_node(c->node, hx_notify_entry_cb, NULL);
        break;
    case HX_CHANGE_NODE:
        /* Status, facts, and everything below a node that went offline or came back. */
        hx_inodes_foreach_node(c->node, hx_notify_entry_cb, NULL);
        break;
    case HX_CHANGE_VM:
        hx_notify_member(c, &base, hx_notify_pick_vm, "/nodes/{node}/vms", c->vm_name);
        break;
    case HX_CHANGE_POOL:
        hx_notify_member(c, &base, hx_notify_pick_pool, "/nodes/{node}/storage", c->pool);
        break;
    }
}

static void *hx_notify_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "fuse-notify");
    for (;;) {
        pthread_mutex_lock(&hx_nt_lock);
        while (!hx_nt_stop && !hx_nt_head)
            pthread_cond_wait(&hx_nt_cond, &hx_nt_lock);
        if (hx_nt_stop) {
            pthread_mutex_unlock(&hx_nt_lock);
            break;
        }
        hx_inval *v = hx_nt_head;
        hx_nt_head = v->next;
        if (!hx_nt_head)
            hx_nt_tail = NULL;
        hx_nt_len--;
        pthread_mutex_unlock(&hx_nt_lock);
        int r;
        if (v->name[0])
            r = fuse_lowlevel_notify_inval_entry(hx_nt_se, v->parent, v->name, strlen(v->name));
        else
            r = fuse_lowlevel_notify_inval_inode(hx_nt_se, v->ino, 0, 0);
        /* ENOENT: the kernel does not have that inode or entry cached, nothing to drop.
         * ENOSYS: the kernel has not finished INIT yet, so it caches nothing either. */
        if (r < 0 && r != -ENOENT && r != -ENOSYS)
            hx_debug("invalidation of inode %llu failed: %s",
                     (unsigned long long)(v->ino ? v->ino : v->parent), strerror(-r));
        free(v);
    }
    return NULL;
}

int hx_notify_start(struct fuse_session *se)
{
    hx_nt_se = se;
    if (pthread_create(&hx_nt_thread, NULL, hx_notify_main, NULL) != 0) {
        hx_err("cannot start the invalidation thread");
        return -1;
    }
    return 0;
}

void hx_notify_stop(void)
{
    pthread_mutex_lock(&hx_nt_lock);
    hx_nt_stop = 1;
    pthread_cond_signal(&hx_nt_cond);
    pthread_mutex_unlock(&hx_nt_lock);
    pthread_join(hx_nt_thread, NULL);
    while (hx_nt_head) {
        hx_inval *v = hx_nt_head;
        hx_nt_head = v->next;
        free(v);
    }
    hx_nt_tail = NULL;
    hx_nt_len = 0;
}
