/* Scratch files (file-semantics.md section 2): any new name in a directory that holds writable
 * documents. Editors and config management write a temporary file next to the target and rename
 * it over the target; the scratch file holds those bytes until then. It is never cluster state,
 * belongs to its creator, is bounded in size and count per directory, and disappears on unlink,
 * after its rename committed, or when left untouched for HX_SCRATCH_IDLE_S.
 */
#pragma once

#include "hx_tree.h"

#include <sys/stat.h>

#define HX_SCRATCH_MAX_BYTES (1024 * 1024)
#define HX_SCRATCH_MAX_PER_DIR 64
#define HX_SCRATCH_IDLE_S 600
/* Scratch inode numbers have the top bit set; tree inode numbers never do (fs/tree/ino.c). */
#define HX_SCRATCH_INO_BIT (1ULL << 63)

typedef struct hx_scratch hx_scratch;

/* A new scratch file name in directory dir (inode parent). -EEXIST, -ENOSPC (too many). */
int hx_scratch_create(uint64_t parent, const hx_obj *dir, const char *name, unsigned uid,
                      unsigned gid, mode_t mode, hx_scratch **out);
/* By name or inode; each returns a reference (hx_scratch_unref), or NULL. */
hx_scratch *hx_scratch_lookup(uint64_t parent, const char *name);
hx_scratch *hx_scratch_find(uint64_t ino);
void hx_scratch_unref(hx_scratch *s);

uint64_t hx_scratch_ino(const hx_scratch *s);
/* The directory it was created in. */
void hx_scratch_dir(const hx_scratch *s, hx_obj *out);
void hx_scratch_stat(hx_scratch *s, struct stat *st);

/* Data. -EFBIG beyond HX_SCRATCH_MAX_BYTES. */
int hx_scratch_write(hx_scratch *s, const char *buf, size_t size, off_t off);
size_t hx_scratch_read(hx_scratch *s, char *buf, size_t size, off_t off);
int hx_scratch_truncate(hx_scratch *s, off_t size);
/* Applies mode, owner and times from a setattr (to_set uses FUSE_SET_ATTR_* bits). */
void hx_scratch_setattr(hx_scratch *s, const struct stat *attr, int to_set);
/* A copy of the content (malloc'd, NUL-terminated). */
char *hx_scratch_data(hx_scratch *s, size_t *len);

/* Removes the name; open handles keep the data until they close. -ENOENT. */
int hx_scratch_unlink(uint64_t parent, const char *name);
/* Renames within scratch names, replacing an existing scratch file of that name. */
int hx_scratch_rename(hx_scratch *s, uint64_t newparent, const char *newname);
/* After a rename committed it over a document: the name is gone and the inode serves as an
 * alias of that document until the kernel forgets it. */
void hx_scratch_committed(hx_scratch *s, const hx_obj *target);
/* The document a committed scratch inode stands for; 0 when it is one. */
int hx_scratch_alias(hx_scratch *s, hx_obj *out);
