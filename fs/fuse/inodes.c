/* Inode table (open addressing on the inode number) and per-document rendering memo. */
#include "inodes.h"
#include "hx_log.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

struct hx_inode {
    uint64_t ino;
    int kind;             /* obj.kind, set once: read without the lock */
    pthread_mutex_t lock; /* guards obj's names and the memo */
    hx_obj obj;
    hx_blob *memo;
    uint64_t memo_version;
    long long memo_at_ns; /* monotonic */
    long long mtime_ns;   /* wall clock of the last change of content */
    hx_blob *page_blob;   /* the rendering whose bytes the page cache may hold (a reference) */
    int n_cached;         /* open handles reading page_blob through the page cache */
    long long reported;   /* size in the last attributes sent to the kernel, -1: none */
};

static pthread_rwlock_t hx_inodes_lock = PTHREAD_RWLOCK_INITIALIZER;
static hx_inode **hx_slots;
static size_t hx_n_slots, hx_n_used;

hx_blob *hx_blob_ref(hx_blob *b)
{
    if (b)
        atomic_fetch_add(&b->refs, 1);
    return b;
}

void hx_blob_unref(hx_blob *b)
{
    if (b && atomic_fetch_sub(&b->refs, 1) == 1)
        free(b);
}

static size_t hx_slot_of(uint64_t ino, size_t n)
{
    /* Inode numbers are already uniform (SHA-256 bits); the root (1) lands in slot 1. */
    return (size_t)(ino % n);
}

static hx_inode *hx_inodes_find_locked(uint64_t ino)
{
    if (!hx_n_slots)
        return NULL;
    for (size_t i = hx_slot_of(ino, hx_n_slots);; i = (i + 1) % hx_n_slots) {
        hx_inode *e = hx_slots[i];
        if (!e)
            return NULL;
        if (e->ino == ino)
            return e;
    }
}

static int hx_inodes_grow(void)
{
    size_t n = hx_n_slots ? hx_n_slots * 2 : 1024;
    hx_inode **s = calloc(n, sizeof(*s));
    if (!s)
        return -1;
    for (size_t i = 0; i < hx_n_slots; i++) {
        hx_inode *e = hx_slots[i];
        if (!e)
            continue;
        size_t j = hx_slot_of(e->ino, n);
        while (s[j])
            j = (j + 1) % n;
        s[j] = e;
    }
    free(hx_slots);
    hx_slots = s;
    hx_n_slots = n;
    return 0;
}

hx_inode *hx_inodes_find(uint64_t ino)
{
    pthread_rwlock_rdlock(&hx_inodes_lock);
    hx_inode *e = hx_inodes_find_locked(ino);
    pthread_rwlock_unlock(&hx_inodes_lock);
    return e;
}

hx_inode *hx_inodes_intern(const hx_obj *o)
{
    uint64_t ino = hx_tree_ino(o);
    hx_inode *e = hx_inodes_find(ino);
    if (e) {
        /* Same identity; the VM's name may have changed (rename keeps the UUID). The rest of
         * the object is its identity: the copy is only needed when the name differs. */
        pthread_mutex_lock(&e->lock);
        if (e->obj.kind == o->kind && strcmp(e->obj.vm, o->vm) != 0)
            e->obj = *o;
        else if (e->obj.kind != o->kind)
            hx_err("inode %llu: identity collision between %s and %s", (unsigned long long)ino,
                   hx_kinds[e->obj.kind].pattern, hx_kinds[o->kind].pattern);
        pthread_mutex_unlock(&e->lock);
        return e;
    }
    pthread_rwlock_wrlock(&hx_inodes_lock);
    e = hx_inodes_find_locked(ino);
    if (!e && (hx_n_used + 1) * 2 > hx_n_slots && hx_inodes_grow() < 0) {
        pthread_rwlock_unlock(&hx_inodes_lock);
        return NULL;
    }
    if (!e && (e = calloc(1, sizeof(*e)))) {
        e->ino = ino;
        e->kind = o->kind;
        e->obj = *o;
        e->reported = -1;
        pthread_mutex_init(&e->lock, NULL);
        size_t i = hx_slot_of(ino, hx_n_slots);
        while (hx_slots[i])
            i = (i + 1) % hx_n_slots;
        hx_slots[i] = e;
        hx_n_used++;
    }
    pthread_rwlock_unlock(&hx_inodes_lock);
    return e;
}

uint64_t hx_inode_ino(const hx_inode *e)
{
    return e->ino;
}

int hx_inode_kind(const hx_inode *e)
{
    return e->kind;
}

void hx_inode_obj(hx_inode *e, hx_obj *out)
{
    pthread_mutex_lock(&e->lock);
    *out = e->obj;
    pthread_mutex_unlock(&e->lock);
}

static hx_blob *hx_blob_new(const char *data, size_t len)
{
    hx_blob *b = malloc(sizeof(*b) + len + 1);
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->len = len;
    memcpy(b->data, data, len);
    b->data[len] = '\0';
    return b;
}

static int hx_inode_render(hx_inode *e, hx_blob **out, int honor_ttl);

int hx_inode_content(hx_inode *e, hx_blob **out)
{
    return hx_inode_render(e, out, 1);
}

/* honor_ttl 0: a rendering whose object has not changed is kept even when its TTL ran out.
 * stat and fstat use it: the kernel sends fstat without the file handle, so a TTL re-render
 * there would report a size other than the one the reader's open pinned; the next open
 * renders again anyway. */
static int hx_inode_render(hx_inode *e, hx_blob **out, int honor_ttl)
{
    hx_obj o;
    hx_inode_obj(e, &o);
    const hx_kind *k = &hx_kinds[o.kind];
    if (k->type != HX_FT_DOC)
        return -EISDIR;
    uint64_t ver;
    long long changed;
    int r = hx_tree_version(&o, &ver, &changed);
    if (r < 0)
        return r;
    long long now = hx_now_mono_ns();
    pthread_mutex_lock(&e->lock);
    if (e->memo && e->memo_version == ver &&
        (k->ttl_ms == 0 || !honor_ttl || now - e->memo_at_ns < (long long)k->ttl_ms * 1000000LL)) {
        *out = hx_blob_ref(e->memo);
        pthread_mutex_unlock(&e->lock);
        return 0;
    }
    pthread_mutex_unlock(&e->lock);

    /* Render outside the lock: it may wait for a node's thread. */
    hx_autobuf hx_buf b = {0};
    r = hx_tree_render(&o, &b);
    if (r < 0)
        return r;
    pthread_mutex_lock(&e->lock);
    if (e->memo && e->memo->len == b.len &&
        memcmp(e->memo->data, b.data ? b.data : "", b.len) == 0) {
        /* Same bytes: keep the blob, so mtime and the kernel's pages stay valid. */
        e->memo_version = ver;
        e->memo_at_ns = now;
    } else {
        hx_blob *nb = hx_blob_new(b.data ? b.data : "", b.len);
        if (!nb) {
            pthread_mutex_unlock(&e->lock);
            return -ENOMEM;
        }
        /* The first rendering is dated by the object's change; later ones by when we saw the
         * bytes change. */
        e->mtime_ns = e->memo ? hx_now_real_ns() : changed;
        hx_blob_unref(e->memo);
        e->memo = nb;
        e->memo_version = ver;
        e->memo_at_ns = now;
    }
    *out = hx_blob_ref(e->memo);
    pthread_mutex_unlock(&e->lock);
    return 0;
}

/* Every file belongs to the daemon's user. Asked once: getuid and getgid are system calls, and
 * a listing of 10000 VMs reports attributes 10000 times. */
static uid_t hx_owner_uid;
static gid_t hx_owner_gid;
static pthread_once_t hx_owner_once = PTHREAD_ONCE_INIT;

static void hx_owner_init(void)
{
    hx_owner_uid = getuid();
    hx_owner_gid = getgid();
}

static void hx_set_time(struct timespec *ts, long long ns)
{
    ts->tv_sec = (time_t)(ns / 1000000000LL);
    ts->tv_nsec = (long)(ns % 1000000000LL);
}

int hx_inode_stat(hx_inode *e, hx_blob *pinned, struct stat *st)
{
    hx_obj o;
    hx_inode_obj(e, &o);
    const hx_kind *k = &hx_kinds[o.kind];
    memset(st, 0, sizeof(*st));
    st->st_ino = e->ino;
    st->st_mode = k->mode;
    pthread_once(&hx_owner_once, hx_owner_init);
    st->st_uid = hx_owner_uid;
    st->st_gid = hx_owner_gid;
    st->st_blksize = 4096;
    long long mtime;
    if (k->type == HX_FT_DOC) {
        hx_blob *b = NULL;
        if (pinned) {
            b = hx_blob_ref(pinned);
        } else {
            int r = hx_inode_render(e, &b, 0);
            if (r < 0)
                return r;
        }
        st->st_nlink = 1;
        st->st_size = (off_t)b->len;
        st->st_blocks = (blkcnt_t)((b->len + 511) / 512);
        pthread_mutex_lock(&e->lock);
        mtime = e->mtime_ns;
        pthread_mutex_unlock(&e->lock);
        hx_blob_unref(b);
    } else {
        uint64_t ver;
        int r = hx_tree_version(&o, &ver, &mtime);
        if (r < 0)
            return r;
        /* Streams have no length: size 0 (file-semantics.md 4). */
        st->st_nlink = k->type == HX_FT_DIR ? 2 : 1;
        if (k->type == HX_FT_LINK) {
            char target[1024];
            r = k->link ? k->link(&o, target, sizeof(target)) : -EIO;
            if (r < 0)
                return r;
            st->st_size = (off_t)strlen(target);
        }
    }
    hx_set_time(&st->st_mtim, mtime);
    st->st_ctim = st->st_mtim;
    st->st_atim = st->st_mtim;
    return 0;
}

int hx_inode_open_cached(hx_inode *e, hx_blob *b, int *keep_cache)
{
    pthread_mutex_lock(&e->lock);
    int direct = e->n_cached > 0 && e->page_blob != b;
    if (!direct) {
        *keep_cache = e->page_blob == b;
        if (e->page_blob != b) {
            hx_blob_unref(e->page_blob);
            e->page_blob = hx_blob_ref(b);
        }
        e->n_cached++;
    }
    pthread_mutex_unlock(&e->lock);
    return direct;
}

int hx_inode_old_readers(hx_inode *e)
{
    pthread_mutex_lock(&e->lock);
    int r = e->n_cached > 0 && e->page_blob != e->memo;
    pthread_mutex_unlock(&e->lock);
    return r;
}

void hx_inode_close_cached(hx_inode *e)
{
    pthread_mutex_lock(&e->lock);
    e->n_cached--;
    pthread_mutex_unlock(&e->lock);
}

long long hx_inode_reported(hx_inode *e, long long size)
{
    pthread_mutex_lock(&e->lock);
    long long prev = e->reported;
    if (size >= 0)
        e->reported = size;
    pthread_mutex_unlock(&e->lock);
    return prev;
}

void hx_inodes_foreach_node(const char *node, void (*fn)(hx_inode *e, void *opaque), void *opaque)
{
    pthread_rwlock_rdlock(&hx_inodes_lock);
    for (size_t i = 0; i < hx_n_slots; i++) {
        hx_inode *e = hx_slots[i];
        if (e && (!node || strcmp(e->obj.node, node) == 0))
            fn(e, opaque);
    }
    pthread_rwlock_unlock(&hx_inodes_lock);
}
