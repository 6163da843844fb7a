/* The clone job: accepting a request on the caller's thread (checks, locks, plan, submission),
 * running it on the job's thread (volumes, copies, definition, start, result), and undoing
 * what an unfinished clone created, also after a daemon restart. */
#include "auto.h"
#include "clone_priv.h"
#include "hx_jobs.h"
#include "hx_log.h"
#include "hx_util.h"
#include "vmops_priv.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* How long the cleanup of an interrupted clone waits for its node after a daemon start. */
#define HX_CLONE_UNDO_WAIT_MS 60000

static hx_cluster *hx_clone_cl;

static void hx_cl_viewp(hx_vm_view *v)
{
    hx_vm_view_clear(v);
}

static void hx_clone_reqp(hx_clone_req **q)
{
    hx_clone_req_free(*q);
}

/* Creates the new volume of one planned disk d (recorded in undo first) and fills it: a reflink
 * copy, a qcow2 overlay over the template's file (linked), or a streamed copy. */
static int hx_clone_make_disk(hx_job *j, const hx_clone_req *q, virConnectPtr sc, virConnectPtr dc,
                              json_t *d, json_t *undo, uint64_t *done, uint64_t *total, char **msg)
{
    const char *pool = json_string_value(json_object_get(d, "dst_pool"));
    const char *vol = json_string_value(json_object_get(d, "dst_vol"));
    char phase[600];
    snprintf(phase, sizeof(phase), "creating %s", vol);
    hx_job_phase(j, phase);
    json_array_append_new(json_object_get(undo, "volumes"),
                          json_pack("{s:s,s:s}", "pool", pool, "name", vol));
    hx_job_set_undo(j, undo);
    hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(dc, pool);
    const char *fmt = json_string_value(json_object_get(d, "dst_format"));
    int overlay = q->linked && !json_is_true(json_object_get(d, "reflink"));
    /* Sparse (allocation 0); for linked clones, a qcow2 over a backing file. */
    hx_autofree char *xml =
        hx_volume_xml(vol, (unsigned long long)json_integer_value(json_object_get(d, "capacity")),
                      fmt, 1, overlay ? json_string_value(json_object_get(d, "src_path")) : NULL,
                      json_string_value(json_object_get(d, "format")));
    hx_autovol virStorageVolPtr nv = NULL;
    const char *method = overlay ? "backing" : "stream";
    if (json_is_true(json_object_get(d, "reflink")) && p && xml) {
        /* libvirt clones the file's extents (FICLONE) and fails rather than falling back
         * to a byte copy when the filesystem cannot: then the copy is streamed. */
        hx_autovol virStorageVolPtr sv =
            hx_clone_vol(sc, json_string_value(json_object_get(d, "src_pool")),
                         json_string_value(json_object_get(d, "src_vol")));
        nv = sv ? virStorageVolCreateXMLFrom(p, xml, sv, VIR_STORAGE_VOL_CREATE_REFLINK) : NULL;
        if (nv) {
            method = "reflink";
            hx_job_log(j, "created volume %s/%s as a reflink copy of %s (shared extents)", pool,
                       vol, json_string_value(json_object_get(d, "src_vol")));
        } else {
            hx_job_log(j, "disk %s: no reflink copy (%s): the copy is streamed",
                       json_string_value(json_object_get(d, "target")), virGetLastErrorMessage());
            hx_clone_undo_vol(dc, pool, vol);
            if (q->linked)
                *total += (uint64_t)json_integer_value(json_object_get(d, "bytes"));
        }
    }
    if (!nv) {
        nv = p && xml ? virStorageVolCreateXML(p, xml, 0) : NULL;
        if (!nv)
            return hx_fail(msg, -EIO, "clone %s: cannot create volume %s/%s on node %s: %s",
                           q->name, pool, vol, q->dst_node, virGetLastErrorMessage());
        hx_job_log(j, "created volume %s/%s", pool, vol);
    }
    json_object_set_new(d, "method", json_string(method));
    if (!overlay && !(q->linked && strcmp(method, "reflink") == 0)) {
        int r = hx_clone_copy_disk(j, sc, dc, d, strcmp(method, "reflink") == 0, done, total, msg);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The job's result: the new VM, how its disks were made, and their digests. */
static json_t *hx_clone_result(const hx_clone_req *q)
{
    size_t i;
    json_t *d;
    hx_autojson json_t *disks = json_array();
    const char *method = NULL;
    json_array_foreach (q->disks, i, d) {
        char src[600], copy[600];
        snprintf(src, sizeof(src), "%s/%s", json_string_value(json_object_get(d, "src_pool")),
                 json_string_value(json_object_get(d, "src_vol")));
        snprintf(copy, sizeof(copy), "%s/%s", json_string_value(json_object_get(d, "dst_pool")),
                 json_string_value(json_object_get(d, "dst_vol")));
        json_array_append_new(disks, json_pack("{s:O,s:s,s:s,s:O,s:O?,s:O?,s:O?}", "target",
                                               json_object_get(d, "target"), "source", src, "copy",
                                               copy, "method", json_object_get(d, "method"),
                                               "bytes", json_object_get(d, "copied"),
                                               "sha256_source", json_object_get(d, "sha256_source"),
                                               "sha256_copy", json_object_get(d, "sha256_copy")));
        const char *m = json_string_value(json_object_get(d, "method"));
        method = !method || strcmp(method, m) == 0 ? m : "mixed";
    }
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:O}", "vm", q->name, "node", q->dst_node, "uuid",
                     q->new_uuid, "mode", q->linked ? "linked" : "full", "method",
                     method ? method : "none", "verified", q->linked ? json_null() : json_true(),
                     "disks", disks);
}

static int hx_clone_run(hx_job *j, void *arg, char **msg)
{
    hx_clone_req *q = arg;
    hx_autonode hx_node *sn = hx_cluster_get(hx_clone_cl, q->src_node);
    hx_autonode hx_node *dn = hx_cluster_get(hx_clone_cl, q->dst_node);
    hx_autoconn virConnectPtr sc = sn ? hx_node_conn(sn) : NULL;
    hx_autoconn virConnectPtr dc = dn ? hx_node_conn(dn) : NULL;
    if (!sc || !dc)
        return hx_fail(msg, -EHOSTDOWN, "clone %s: node %s is offline", q->name,
                       sc ? q->dst_node : q->src_node);
    hx_job_log(j, "%s clone of VM %s on node %s to %s on node %s", q->linked ? "linked" : "full",
               q->vm, q->src_node, q->name, q->dst_node);
    /* What the job creates, recorded before it is created: the cleanup's only source. */
    hx_autojson json_t *undo =
        json_pack("{s:s,s:s,s:[]}", "node", q->dst_node, "name", q->name, "volumes");
    uint64_t done = 0, total = 0;
    size_t i;
    json_t *d;
    json_array_foreach (q->disks, i, d)
        total += q->linked ? 0 : (uint64_t)json_integer_value(json_object_get(d, "bytes"));
    hx_job_progress(j, 0, total);
    json_array_foreach (q->disks, i, d) {
        int r = hx_clone_make_disk(j, q, sc, dc, d, undo, &done, &total, msg);
        if (r < 0)
            return r;
        if (hx_job_check(j) < 0)
            return -ECANCELED;
    }
    hx_job_phase(j, "defining");
    hx_autofree char *xml = hx_clone_domxml(q, dc);
    if (!xml)
        return hx_fail(msg, -EIO, "clone %s: cannot build its domain XML", q->name);
    /* mkdir checks running clones' names, but one may have passed its check before ours. */
    char where[HX_NODE_NAME_MAX];
    if (hx_vm_name_taken(hx_clone_cl, q->name, where, sizeof(where)))
        return hx_fail(msg, -EEXIST, "clone %s: the name was taken on node %s meanwhile", q->name,
                       where);
    json_object_set_new(undo, "domain", json_string(q->new_uuid));
    hx_job_set_undo(j, undo);
    if (hx_job_check(j) < 0)
        return -ECANCELED;
    hx_autodom virDomainPtr dom = virDomainDefineXML(dc, xml);
    if (!dom)
        return hx_fail(msg, -EIO, "clone %s: libvirt refused its definition on node %s: %s",
                       q->name, q->dst_node, virGetLastErrorMessage());
    hx_job_log(j, "defined VM %s (%s) on node %s", q->name, q->new_uuid, q->dst_node);
    if (q->start) {
        hx_job_phase(j, "starting");
        if (virDomainCreate(dom) < 0)
            return hx_fail(msg, -EIO, "clone %s: cannot start: %s", q->name,
                           virGetLastErrorMessage());
    }
    hx_vm_refresh(dn, q->name, q->new_uuid);
    /* Complete: nothing to undo any more. */
    hx_job_set_undo(j, json_null());
    hx_job_set_result(j, hx_clone_result(q));
    hx_job_progress(j, done, total);
    return 0;
}

/* Removes what an unfinished clone created: its domain (by the UUID it was given), then its
 * volumes. Waits for the node after a daemon start. */
static int hx_clone_undo(const json_t *undo)
{
    const char *node = json_string_value(json_object_get(undo, "node"));
    const char *name = json_string_value(json_object_get(undo, "name"));
    const char *uuid = json_string_value(json_object_get(undo, "domain"));
    if (!node)
        return 0;
    /* After a start the node may not even be configured yet, let alone connected. */
    hx_node *n0 = NULL;
    virConnectPtr c0 = NULL;
    for (int waited = 0;; waited += 100) {
        n0 = hx_cluster_get(hx_clone_cl, node);
        c0 = n0 ? hx_node_conn(n0) : NULL;
        if (c0)
            break;
        if (n0)
            hx_node_unref(n0);
        n0 = NULL;
        if (waited >= HX_CLONE_UNDO_WAIT_MS || hx_jobs_stopping())
            break;
        usleep(100000);
    }
    hx_autonode hx_node *n = n0;
    hx_autoconn virConnectPtr c = c0;
    if (!c) {
        hx_err("clone %s: node %s is offline: cannot remove what the clone created", name, node);
        return -1;
    }
    if (uuid) {
        hx_autodom virDomainPtr d = virDomainLookupByUUIDString(c, uuid);
        if (d) {
            virDomainDestroy(d);
            if (virDomainUndefineFlags(d, VIR_DOMAIN_UNDEFINE_NVRAM |
                                              VIR_DOMAIN_UNDEFINE_MANAGED_SAVE) < 0)
                hx_err("clone %s: cannot undefine it on node %s: %s", name, node,
                       virGetLastErrorMessage());
            else
                hx_info("clone %s: undefined the unfinished VM on node %s", name, node);
        }
    }
    if (uuid && name)
        hx_vm_refresh(n, name, uuid);
    /* libvirtd refuses to delete a volume while a stream of a client that went away (a daemon
     * that died mid-upload) still holds it: it lets go within a moment, so try a few times. */
    for (int attempt = 0; attempt < 20; attempt++) {
        hx_volumes_delete(c, json_object_get(undo, "volumes"), name ? name : "clone");
        int left = 0;
        size_t i;
        json_t *v;
        json_array_foreach (json_object_get(undo, "volumes"), i, v) {
            hx_autovol virStorageVolPtr vol =
                hx_clone_vol(c, json_string_value(json_object_get(v, "pool")),
                             json_string_value(json_object_get(v, "name")));
            left |= vol != NULL;
        }
        if (!left)
            return 0;
        usleep(250000);
    }
    return -1;
}

void hx_clone_init(hx_cluster *cl)
{
    hx_clone_cl = cl;
    hx_jobs_register("clone", hx_clone_undo);
}

int hx_clone_start(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                   const char *req, size_t len, char **msg)
{
    /* Until the source is locked, a plain allocation; then hx_clone_req_free (held). */
    hx_autofree hx_clone_req *fresh = calloc(1, sizeof(*fresh));
    hx_clone_req *q = fresh;
    if (!q)
        return -ENOMEM;
    hx_strlcpy(q->src_node, node, sizeof(q->src_node));
    hx_strlcpy(q->dst_node, node, sizeof(q->dst_node));
    hx_strlcpy(q->vm, vm, sizeof(q->vm));
    int r = hx_clone_parse_req(q, vm, req, len, msg);
    if (r < 0)
        return r;
    if (q->linked && strcmp(q->dst_node, node) != 0)
        return hx_fail(msg, -EINVAL,
                       "clone of VM %s: field \"node\": a linked clone stays on node %s", vm, node);
    hx_autonode hx_node *sn = hx_cluster_get(cl, node);
    hx_autonode hx_node *dn = hx_cluster_get(cl, q->dst_node);
    if (!sn || !dn)
        return hx_fail(msg, -ENOENT, "clone of VM %s: node %s does not exist", vm,
                       sn ? q->dst_node : node);
    __attribute__((cleanup(hx_cl_viewp))) hx_vm_view view = {0};
    r = hx_cluster_vm_view(cl, node, vm, uuid, &view);
    if (r < 0)
        return hx_fail(msg, r, r == -EHOSTDOWN ? "node %s is offline" : "VM %s does not exist",
                       r == -EHOSTDOWN ? node : vm);
    /* From here the source is locked and the name reserved; hx_clone_req_free undoes both. */
    r = hx_vm_trylock(view.uuid);
    if (r < 0)
        return hx_fail(msg, r, "VM %s is busy with another operation", vm);
    hx_strlcpy(q->uuid, view.uuid, sizeof(q->uuid));
    if (hx_clone_name_reserve(q->name) < 0) {
        hx_vm_unlock(q->uuid);
        return hx_fail(msg, -EEXIST, "cannot clone VM %s to %s: a clone of that name is running",
                       vm, q->name);
    }
    __attribute__((cleanup(hx_clone_reqp))) hx_clone_req *held = hx_steal(&fresh);
    char where[HX_NODE_NAME_MAX];
    if (hx_vm_name_taken(cl, q->name, where, sizeof(where)))
        return hx_fail(msg, -EEXIST, "cannot clone VM %s to %s: the name is taken on node %s", vm,
                       q->name, where);
    int template = hx_vm_is_template(view.config_json);
    if (q->linked && !template)
        return hx_fail(msg, -EINVAL,
                       "clone of VM %s: field \"mode\": linked clones need a template "
                       "(\"template\": true in config.json)",
                       vm);
    if (view.state != VIR_DOMAIN_SHUTOFF)
        return hx_fail(msg, -EBUSY,
                       "cannot clone VM %s: it is not shut off (its disks would change under the "
                       "copy)",
                       vm);
    q->xml = view.xml_config ? strdup(view.xml_config) : NULL;
    if (!q->xml)
        return hx_fail(msg, -EIO, "VM %s: no domain XML", vm);
    if (hx_clone_new_uuid(q->new_uuid) < 0)
        return hx_fail(msg, -EIO, "clone of VM %s: no random bytes for a UUID", vm);
    hx_autoconn virConnectPtr sc = hx_node_conn(sn);
    hx_autoconn virConnectPtr dc = hx_node_conn(dn);
    if (!sc || !dc)
        return hx_fail(msg, -EHOSTDOWN, "clone of VM %s: node %s is offline", vm,
                       sc ? q->dst_node : node);
    r = hx_clone_plan_disks(q, sc, dc, msg);
    if (r < 0)
        return r;
    char target[HX_NODE_NAME_MAX + HX_VM_NAME_MAX + 16];
    snprintf(target, sizeof(target), "/nodes/%s/vms/%s", q->dst_node, q->name);
    char id[HX_JOB_ID_LEN];
    return hx_jobs_submit("clone", target, q->uuid, hx_clone_run, hx_steal(&held),
                          hx_clone_req_free, id, msg);
}
