/* The copies of a clone's disks, on the job's thread: libvirt storage volume streams from the
 * source node to the new volume (sparse: holes travel as their length), then the copy read
 * back and its SHA-256 compared with the source's. */
#include "auto.h"
#include "clone_priv.h"
#include "hx_log.h"
#include "hx_util.h"
#include "vmops_priv.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <string.h>

/* libvirt's stream messages carry at most 256 KiB of data; a larger buffer gains nothing. */
#define HX_CLONE_CHUNK (256 * 1024)

/* Reads the whole of a volume through a download stream, sparse, hashing its content (holes as
 * zeros); when out is not NULL, sends every chunk and hole to it. done counts the bytes, and
 * progress is reported for copies. Returns 0, -ECANCELED, or -errno with *msg. */
static int hx_clone_stream(hx_job *j, virStreamPtr in, virStreamPtr out, uint64_t *done,
                           uint64_t total, char hex[65], const char *what, char **msg)
{
    __attribute__((cleanup(hx_clone_sum_clear))) hx_clone_sum sum;
    hx_autofree char *buf = malloc(HX_CLONE_CHUNK);
    if (hx_clone_sum_init(&sum) < 0 || !buf)
        return hx_fail(msg, -ENOMEM, "%s: out of memory", what);
    for (;;) {
        if (hx_job_check(j) < 0)
            return -ECANCELED;
        /* STOP_AT_HOLE: -3 says a hole comes next, whose length virStreamRecvHole gives. */
        int n = virStreamRecvFlags(in, buf, HX_CLONE_CHUNK, VIR_STREAM_RECV_STOP_AT_HOLE);
        if (n == 0)
            break;
        if (n == -3) {
            long long hole = 0;
            if (virStreamRecvHole(in, &hole, 0) < 0)
                return hx_fail(msg, -EIO, "%s: %s", what, virGetLastErrorMessage());
            if (out && virStreamSendHole(out, hole, 0) < 0)
                return hx_fail(msg, -EIO, "%s: %s", what, virGetLastErrorMessage());
            hx_clone_sum_zeros(&sum, (unsigned long long)hole);
            *done += (uint64_t)hole;
        } else if (n < 0) {
            return hx_fail(msg, -EIO, "%s: %s", what, virGetLastErrorMessage());
        } else {
            hx_clone_sum_update(&sum, buf, (size_t)n);
            for (int sent = 0; out && sent < n;) {
                int s = virStreamSend(out, buf + sent, (size_t)(n - sent));
                if (s < 0)
                    return hx_fail(msg, -EIO, "%s: %s", what, virGetLastErrorMessage());
                sent += s;
            }
            *done += (uint64_t)n;
        }
        if (out)
            hx_job_progress(j, *done, *done > total ? *done : total);
    }
    hx_clone_sum_final(&sum, hex);
    return 0;
}

/* Ends two streams: finished when r is 0, aborted otherwise. */
static int hx_clone_streams_end(int r, virStreamPtr in, virStreamPtr out, const char *what,
                                char **msg)
{
    if (r < 0) {
        if (in)
            virStreamAbort(in);
        if (out)
            virStreamAbort(out);
        return r;
    }
    if (virStreamFinish(in) < 0) {
        if (out)
            virStreamAbort(out);
        return hx_fail(msg, -EIO, "%s: %s", what, virGetLastErrorMessage());
    }
    if (out && virStreamFinish(out) < 0)
        return hx_fail(msg, -EIO, "%s: %s", what, virGetLastErrorMessage());
    return 0;
}

virStorageVolPtr hx_clone_vol(virConnectPtr c, const char *pool, const char *name)
{
    hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(c, pool);
    return p ? virStorageVolLookupByName(p, name) : NULL;
}

/* Deletes a volume that a failed reflink copy may have left (libvirt removes it itself). */
void hx_clone_undo_vol(virConnectPtr c, const char *pool, const char *vol)
{
    hx_autovol virStorageVolPtr v = hx_clone_vol(c, pool, vol);
    if (v && virStorageVolDelete(v, 0) < 0)
        hx_err("clone: cannot delete volume %s/%s after a failed reflink copy: %s", pool, vol,
               virGetLastErrorMessage());
}

/* Copies one disk from the source node to its new volume, then reads the copy back and
 * compares the SHA-256 of both. After a reflink copy (reflinked) the source is only read and
 * hashed: the copy was made by the filesystem, and the verification checks it the same way. */
int hx_clone_copy_disk(hx_job *j, virConnectPtr sc, virConnectPtr dc, json_t *d, int reflinked,
                       uint64_t *done, uint64_t *total, char **msg)
{
    const char *t = json_string_value(json_object_get(d, "target"));
    hx_autovol virStorageVolPtr sv =
        hx_clone_vol(sc, json_string_value(json_object_get(d, "src_pool")),
                     json_string_value(json_object_get(d, "src_vol")));
    hx_autovol virStorageVolPtr dv =
        hx_clone_vol(dc, json_string_value(json_object_get(d, "dst_pool")),
                     json_string_value(json_object_get(d, "dst_vol")));
    if (!sv || !dv)
        return hx_fail(msg, -EIO, "disk %s: %s", t, virGetLastErrorMessage());
    char what[64];
    snprintf(what, sizeof(what), reflinked ? "hashing disk %s" : "copying disk %s", t);
    hx_job_phase(j, what);
    uint64_t expect = (uint64_t)json_integer_value(json_object_get(d, "bytes"));
    uint64_t start = *done;
    char src_hash[65] = "", copy_hash[65] = "";
    {
        hx_autostream virStreamPtr in = virStreamNew(sc, 0);
        hx_autostream virStreamPtr out = virStreamNew(dc, 0);
        /* Sparse streams: holes of the source travel as their length, and the upload seeks
         * over them, so the copy keeps the source's holes. */
        if (!in || !out ||
            virStorageVolDownload(sv, in, 0, 0, VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM) < 0)
            return hx_fail(msg, -EIO, "disk %s: cannot read the source: %s", t,
                           virGetLastErrorMessage());
        if (!reflinked &&
            virStorageVolUpload(dv, out, 0, 0, VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM) < 0) {
            virStreamAbort(in);
            return hx_fail(msg, -EIO, "disk %s: cannot write the copy: %s", t,
                           virGetLastErrorMessage());
        }
        virStreamPtr to = reflinked ? NULL : out;
        int r = hx_clone_stream(j, in, to, done, *total, src_hash, what, msg);
        r = hx_clone_streams_end(r, in, to, what, msg);
        if (r < 0)
            return r;
    }
    uint64_t copied = *done - start;
    /* The total follows what was measured: a file can grow between the check and the copy. */
    *total = *total - expect + copied;
    hx_job_progress(j, *done, *total);
    hx_job_log(j, "disk %s: %s %llu bytes, sha256 %s", t, reflinked ? "hashed" : "copied",
               (unsigned long long)copied, src_hash);

    snprintf(what, sizeof(what), "verifying disk %s", t);
    hx_job_phase(j, what);
    {
        hx_autostream virStreamPtr in = virStreamNew(dc, 0);
        if (!in || virStorageVolDownload(dv, in, 0, 0, VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM) < 0)
            return hx_fail(msg, -EIO, "disk %s: cannot read the copy: %s", t,
                           virGetLastErrorMessage());
        uint64_t n = 0;
        int r = hx_clone_stream(j, in, NULL, &n, 0, copy_hash, what, msg);
        r = hx_clone_streams_end(r, in, NULL, what, msg);
        if (r < 0)
            return r;
    }
    json_object_set_new(d, "sha256_source", json_string(src_hash));
    json_object_set_new(d, "sha256_copy", json_string(copy_hash));
    json_object_set_new(d, "copied", json_integer((json_int_t)copied));
    if (strcmp(src_hash, copy_hash) != 0)
        return hx_fail(msg, -EIO, "disk %s: the copy differs from the source (sha256 %s, %s)", t,
                       src_hash, copy_hash);
    hx_job_log(j, "disk %s: verified, the copy hashes the same", t);
    return 0;
}
