/* The clone module's own declarations, shared between its files (backend/clone_*.c) only.
 *
 * A clone runs in two halves: hx_clone_start checks and plans on the caller's thread, then the
 * job (hx_clone_run) copies and defines on a job thread. The request owns the source VM's
 * operation lock and the reserved clone name from hx_clone_start until hx_clone_req_free, when
 * the job ends (or when the start fails). The name table's mutex is held only inside
 * clone_req.c's calls, never across a libvirt call.
 */
#pragma once

#include "hx_clone.h"
#include "hx_jobs.h"
#include "node.h"

#include <jansson.h>
#include <libvirt/libvirt.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the request: clone_req.c ---- */

/* The job's argument. */
typedef struct hx_clone_req {
    char src_node[HX_NODE_NAME_MAX];
    char dst_node[HX_NODE_NAME_MAX];
    char vm[HX_VM_NAME_MAX];
    char uuid[HX_UUID_LEN];
    char name[HX_VM_NAME_MAX];
    char new_uuid[HX_UUID_LEN];
    int linked, start, keep_macs;
    char *xml;     /* the source's persistent domain XML */
    json_t *disks; /* [{"target","src_pool","src_vol","src_path","format","capacity","bytes",
                       "dst_pool","dst_vol","dst_format","reflink"}] */
} hx_clone_req;

/* Releases the source's lock and the reserved name, then frees q (NULL is fine). */
void hx_clone_req_free(void *p);
/* Reserves a name for a clone being made: 0, or -EEXIST when another clone reserved it. */
int hx_clone_name_reserve(const char *name);
/* Fills q's name, dst_node, linked, start and keep_macs from the request's JSON; -EINVAL
 * naming the field, with *msg. */
int hx_clone_parse_req(hx_clone_req *q, const char *vm, const char *req, size_t len, char **msg);
/* A new random (version 4) UUID: 0 or -EIO. */
int hx_clone_new_uuid(char out[HX_UUID_LEN]);

/* ---- the plan: clone_plan.c ---- */

/* Fills q->disks from the source XML: every disk of device "disk" backed by a storage volume,
 * how each is copied, and checks the space on the target pools. Other disks (CD-ROMs) stay as
 * they are. 0, or -EINVAL, -EEXIST, -ENOENT, -ENOSPC, -EIO with *msg. */
int hx_clone_plan_disks(hx_clone_req *q, virConnectPtr sc, virConnectPtr dc, char **msg);

/* ---- the copies: clone_copy.c, clone_sum.c ---- */

/* The volume pool/name on connection c, or NULL (libvirt's error is reset by then). */
virStorageVolPtr hx_clone_vol(virConnectPtr c, const char *pool, const char *name);
/* Deletes a volume that a failed reflink copy may have left (libvirt removes it itself). */
void hx_clone_undo_vol(virConnectPtr c, const char *pool, const char *vol);
/* Copies one planned disk d to its new volume (or, reflinked, only reads the source), then
 * verifies the copy by SHA-256; records the digests and bytes in d. Advances *done and adjusts
 * *total. 0, -ECANCELED, or -EIO with *msg. */
int hx_clone_copy_disk(hx_job *j, virConnectPtr sc, virConnectPtr dc, json_t *d, int reflinked,
                       uint64_t *done, uint64_t *total, char **msg);

/* The content digest of a disk (clone_sum.c says how), fed from a stream: data as it comes,
 * holes as their length. hx_clone_sum_init: 0, or -1 out of memory; clear it even then. */
typedef struct hx_clone_sum {
    EVP_MD_CTX *outer;
    unsigned char *block;
    size_t fill;
    unsigned char zero[32]; /* digest of a whole block of zeros */
} hx_clone_sum;
int hx_clone_sum_init(hx_clone_sum *s);
void hx_clone_sum_clear(hx_clone_sum *s);
void hx_clone_sum_update(hx_clone_sum *s, const void *data, size_t n);
void hx_clone_sum_zeros(hx_clone_sum *s, unsigned long long n);
/* The digest as 64 hex digits and a NUL. */
void hx_clone_sum_final(hx_clone_sum *s, char hex[65]);

/* ---- the new domain: clone_domxml.c ---- */

/* The clone's domain XML (malloc'd), or NULL. */
char *hx_clone_domxml(hx_clone_req *q, virConnectPtr dc);
