/* Scratch files: see scratch.h. A small table guarded by one lock; each entry is refcounted
 * so an open handle keeps the data after unlink or expiry. */
#include "scratch.h"
#include "hx_log.h"

#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <string.h>

struct hx_scratch {
    int refs;   /* the table's (while named or aliased) and each user's */
    int linked; /* has a name in the table */
    int aliased;
    uint64_t ino, parent;
    hx_obj dir, alias;
    char name[256];
    unsigned uid, gid;
    mode_t mode;
    hx_buf data;
    long long atime_ns, mtime_ns, ctime_ns;
    long long touched_mono_ns;
};

static pthread_mutex_t hx_sc_lock = PTHREAD_MUTEX_INITIALIZER;
static hx_scratch **hx_sc;
static size_t hx_n_sc, hx_cap_sc;
static uint64_t hx_sc_next = 1;

static void hx_scratch_free(hx_scratch *s)
{
    hx_buf_clear(&s->data);
    free(s);
}

void hx_scratch_unref(hx_scratch *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&hx_sc_lock);
    int last = --s->refs == 0;
    pthread_mutex_unlock(&hx_sc_lock);
    if (last)
        hx_scratch_free(s);
}

/* Drops table entry i (lock held); the table's reference goes with it. */
static void hx_scratch_drop_at(size_t i)
{
    hx_scratch *s = hx_sc[i];
    hx_sc[i] = hx_sc[--hx_n_sc];
    s->linked = 0;
    s->aliased = 0;
    if (--s->refs == 0)
        hx_scratch_free(s);
}

/* Forgets entries nobody touched for HX_SCRATCH_IDLE_S (lock held). */
static void hx_scratch_expire(void)
{
    long long now = hx_now_mono_ns();
    for (size_t i = 0; i < hx_n_sc;) {
        if (now - hx_sc[i]->touched_mono_ns > (long long)HX_SCRATCH_IDLE_S * 1000000000LL) {
            hx_debug("scratch file %s expired", hx_sc[i]->name);
            hx_scratch_drop_at(i);
        } else {
            i++;
        }
    }
}

static hx_scratch *hx_scratch_named(uint64_t parent, const char *name)
{
    for (size_t i = 0; i < hx_n_sc; i++)
        if (hx_sc[i]->linked && hx_sc[i]->parent == parent && strcmp(hx_sc[i]->name, name) == 0)
            return hx_sc[i];
    return NULL;
}

int hx_scratch_create(uint64_t parent, const hx_obj *dir, const char *name, unsigned uid,
                      unsigned gid, mode_t mode, hx_scratch **out)
{
    if (strlen(name) >= sizeof(((hx_scratch *)0)->name))
        return -ENAMETOOLONG;
    pthread_mutex_lock(&hx_sc_lock);
    hx_scratch_expire();
    if (hx_scratch_named(parent, name)) {
        pthread_mutex_unlock(&hx_sc_lock);
        return -EEXIST;
    }
    size_t in_dir = 0;
    for (size_t i = 0; i < hx_n_sc; i++)
        in_dir += hx_sc[i]->linked && hx_sc[i]->parent == parent;
    if (in_dir >= HX_SCRATCH_MAX_PER_DIR) {
        pthread_mutex_unlock(&hx_sc_lock);
        return -ENOSPC;
    }
    if (hx_n_sc == hx_cap_sc) {
        size_t cap = hx_cap_sc ? hx_cap_sc * 2 : 16;
        hx_scratch **n = realloc(hx_sc, cap * sizeof(*n));
        if (!n) {
            pthread_mutex_unlock(&hx_sc_lock);
            return -ENOMEM;
        }
        hx_sc = n;
        hx_cap_sc = cap;
    }
    hx_scratch *s = calloc(1, sizeof(*s));
    if (!s) {
        pthread_mutex_unlock(&hx_sc_lock);
        return -ENOMEM;
    }
    s->refs = 2; /* the table's and the caller's */
    s->linked = 1;
    s->ino = HX_SCRATCH_INO_BIT | hx_sc_next++;
    s->parent = parent;
    s->dir = *dir;
    hx_strlcpy(s->name, name, sizeof(s->name));
    s->uid = uid;
    s->gid = gid;
    s->mode = S_IFREG | (mode & 07777);
    s->atime_ns = s->mtime_ns = s->ctime_ns = hx_now_real_ns();
    s->touched_mono_ns = hx_now_mono_ns();
    hx_sc[hx_n_sc++] = s;
    pthread_mutex_unlock(&hx_sc_lock);
    *out = s;
    return 0;
}

hx_scratch *hx_scratch_lookup(uint64_t parent, const char *name)
{
    pthread_mutex_lock(&hx_sc_lock);
    hx_scratch_expire();
    hx_scratch *s = hx_scratch_named(parent, name);
    if (s)
        s->refs++;
    pthread_mutex_unlock(&hx_sc_lock);
    return s;
}

hx_scratch *hx_scratch_find(uint64_t ino)
{
    if (!(ino & HX_SCRATCH_INO_BIT))
        return NULL;
    hx_scratch *s = NULL;
    pthread_mutex_lock(&hx_sc_lock);
    for (size_t i = 0; i < hx_n_sc && !s; i++)
        if (hx_sc[i]->ino == ino)
            s = hx_sc[i];
    if (s)
        s->refs++;
    pthread_mutex_unlock(&hx_sc_lock);
    return s;
}

uint64_t hx_scratch_ino(const hx_scratch *s)
{
    return s->ino;
}

void hx_scratch_dir(const hx_scratch *s, hx_obj *out)
{
    *out = s->dir;
}

static void hx_ts(struct timespec *ts, long long ns)
{
    ts->tv_sec = (time_t)(ns / 1000000000LL);
    ts->tv_nsec = (long)(ns % 1000000000LL);
}

void hx_scratch_stat(hx_scratch *s, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    pthread_mutex_lock(&hx_sc_lock);
    st->st_ino = s->ino;
    st->st_mode = s->mode;
    st->st_nlink = s->linked ? 1 : 0;
    st->st_uid = s->uid;
    st->st_gid = s->gid;
    st->st_size = (off_t)s->data.len;
    st->st_blocks = (blkcnt_t)((s->data.len + 511) / 512);
    st->st_blksize = 4096;
    hx_ts(&st->st_atim, s->atime_ns);
    hx_ts(&st->st_mtim, s->mtime_ns);
    hx_ts(&st->st_ctim, s->ctime_ns);
    pthread_mutex_unlock(&hx_sc_lock);
}

/* Grows the buffer to len bytes, zero-filled (lock held). */
static int hx_scratch_grow(hx_scratch *s, size_t len)
{
    if (len <= s->data.len)
        return 0;
    size_t add = len - s->data.len;
    char *zeros = calloc(1, add);
    if (!zeros)
        return -ENOMEM;
    int r = hx_buf_append(&s->data, zeros, add);
    free(zeros);
    return r < 0 ? -ENOMEM : 0;
}

static void hx_scratch_touch(hx_scratch *s)
{
    s->mtime_ns = s->ctime_ns = hx_now_real_ns();
    s->touched_mono_ns = hx_now_mono_ns();
}

int hx_scratch_write(hx_scratch *s, const char *buf, size_t size, off_t off)
{
    if (off < 0)
        return -EINVAL;
    if ((size_t)off + size > HX_SCRATCH_MAX_BYTES)
        return -EFBIG;
    pthread_mutex_lock(&hx_sc_lock);
    int r = hx_scratch_grow(s, (size_t)off + size);
    if (r == 0) {
        memcpy(s->data.data + off, buf, size);
        hx_scratch_touch(s);
    }
    pthread_mutex_unlock(&hx_sc_lock);
    return r;
}

size_t hx_scratch_read(hx_scratch *s, char *buf, size_t size, off_t off)
{
    pthread_mutex_lock(&hx_sc_lock);
    size_t n = 0;
    if (off >= 0 && (size_t)off < s->data.len) {
        n = s->data.len - (size_t)off;
        if (n > size)
            n = size;
        memcpy(buf, s->data.data + off, n);
    }
    s->touched_mono_ns = hx_now_mono_ns();
    pthread_mutex_unlock(&hx_sc_lock);
    return n;
}

int hx_scratch_truncate(hx_scratch *s, off_t size)
{
    if (size < 0)
        return -EINVAL;
    if ((size_t)size > HX_SCRATCH_MAX_BYTES)
        return -EFBIG;
    pthread_mutex_lock(&hx_sc_lock);
    int r = 0;
    if ((size_t)size < s->data.len) {
        s->data.len = (size_t)size;
        s->data.data[size] = '\0';
    } else {
        r = hx_scratch_grow(s, (size_t)size);
    }
    if (r == 0)
        hx_scratch_touch(s);
    pthread_mutex_unlock(&hx_sc_lock);
    return r;
}

void hx_scratch_setattr(hx_scratch *s, const struct stat *attr, int to_set)
{
    long long now = hx_now_real_ns();
    pthread_mutex_lock(&hx_sc_lock);
    if (to_set & FUSE_SET_ATTR_MODE)
        s->mode = S_IFREG | (attr->st_mode & 07777);
    if (to_set & FUSE_SET_ATTR_UID)
        s->uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID)
        s->gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW)
        s->atime_ns = now;
    else if (to_set & FUSE_SET_ATTR_ATIME)
        s->atime_ns = attr->st_atim.tv_sec * 1000000000LL + attr->st_atim.tv_nsec;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW)
        s->mtime_ns = now;
    else if (to_set & FUSE_SET_ATTR_MTIME)
        s->mtime_ns = attr->st_mtim.tv_sec * 1000000000LL + attr->st_mtim.tv_nsec;
    s->ctime_ns = now;
    s->touched_mono_ns = hx_now_mono_ns();
    pthread_mutex_unlock(&hx_sc_lock);
}

char *hx_scratch_data(hx_scratch *s, size_t *len)
{
    pthread_mutex_lock(&hx_sc_lock);
    char *out = malloc(s->data.len + 1);
    if (out) {
        if (s->data.len)
            memcpy(out, s->data.data, s->data.len);
        out[s->data.len] = '\0';
        *len = s->data.len;
    }
    pthread_mutex_unlock(&hx_sc_lock);
    return out;
}

int hx_scratch_unlink(uint64_t parent, const char *name)
{
    pthread_mutex_lock(&hx_sc_lock);
    int r = -ENOENT;
    for (size_t i = 0; i < hx_n_sc; i++)
        if (hx_sc[i]->linked && hx_sc[i]->parent == parent && strcmp(hx_sc[i]->name, name) == 0) {
            hx_scratch_drop_at(i);
            r = 0;
            break;
        }
    pthread_mutex_unlock(&hx_sc_lock);
    return r;
}

int hx_scratch_rename(hx_scratch *s, uint64_t newparent, const char *newname)
{
    if (strlen(newname) >= sizeof(s->name))
        return -ENAMETOOLONG;
    pthread_mutex_lock(&hx_sc_lock);
    if (!s->linked) {
        pthread_mutex_unlock(&hx_sc_lock);
        return -ENOENT;
    }
    for (size_t i = 0; i < hx_n_sc; i++)
        if (hx_sc[i] != s && hx_sc[i]->linked && hx_sc[i]->parent == newparent &&
            strcmp(hx_sc[i]->name, newname) == 0) {
            hx_scratch_drop_at(i);
            break;
        }
    s->parent = newparent;
    hx_strlcpy(s->name, newname, sizeof(s->name));
    s->ctime_ns = hx_now_real_ns();
    s->touched_mono_ns = hx_now_mono_ns();
    pthread_mutex_unlock(&hx_sc_lock);
    return 0;
}

void hx_scratch_committed(hx_scratch *s, const hx_obj *target)
{
    pthread_mutex_lock(&hx_sc_lock);
    s->linked = 0;
    s->aliased = 1;
    s->alias = *target;
    s->name[0] = '\0';
    /* The data is not needed any more: reads go to the document. */
    hx_buf_clear(&s->data);
    s->touched_mono_ns = hx_now_mono_ns();
    pthread_mutex_unlock(&hx_sc_lock);
}

int hx_scratch_alias(hx_scratch *s, hx_obj *out)
{
    pthread_mutex_lock(&hx_sc_lock);
    int a = s->aliased;
    if (a)
        *out = s->alias;
    pthread_mutex_unlock(&hx_sc_lock);
    return a;
}
