/* The inodes the kernel has been told about, and the rendering each document shows.
 *
 * Entries are created at lookup/readdir and kept for the life of the daemon: inode numbers come
 * from identity (fs/tree/ino.c), so an entry is never reused for another object, and keeping them
 * lets notifications and NFS handles find them again. An entry is a few hundred bytes.
 */
#pragma once

#include "hx_tree.h"

#include <stdatomic.h>
#include <sys/stat.h>

/* An immutable rendering, shared by the memo and the open files that pinned it. */
typedef struct hx_blob {
    atomic_int refs;
    size_t len;
    char data[];
} hx_blob;

hx_blob *hx_blob_ref(hx_blob *b);
void hx_blob_unref(hx_blob *b);

typedef struct hx_inode hx_inode;

/* The entry for o, created when new. */
hx_inode *hx_inodes_intern(const hx_obj *o);
/* The entry for ino, or NULL when this daemon has not handed it out. */
hx_inode *hx_inodes_find(uint64_t ino);
uint64_t hx_inode_ino(const hx_inode *e);
void hx_inode_obj(hx_inode *e, hx_obj *out);
/* The kind of the object: fixed for an inode's life, read without a copy of the object. */
int hx_inode_kind(const hx_inode *e);

/* The current rendering of a document, rendered again when its object changed or its TTL ran
 * out. Returns a reference, or -errno. */
int hx_inode_content(hx_inode *e, hx_blob **out);
/* An open that pins b. Returns 0 when it may read through the page cache (*keep_cache: the
 * cache may already hold exactly b), 1 when it must bypass it because older open files read
 * other bytes through it (each open file keeps the rendering it pinned). A 0 is paired with
 * hx_inode_close_cached at release. */
int hx_inode_open_cached(hx_inode *e, hx_blob *b, int *keep_cache);
void hx_inode_close_cached(hx_inode *e);
/* 1 while files opened before the last change are open (they read older bytes). */
int hx_inode_old_readers(hx_inode *e);
/* Attributes; pinned, when given, is the rendering an open file holds. */
int hx_inode_stat(hx_inode *e, hx_blob *pinned, struct stat *st);
/* Remembers the size last told to the kernel, and returns the previous one (-1: none). */
long long hx_inode_reported(hx_inode *e, long long size);
/* Calls fn for every entry whose object lies on node (NULL: every entry). */
void hx_inodes_foreach_node(const char *node, void (*fn)(hx_inode *e, void *opaque), void *opaque);
