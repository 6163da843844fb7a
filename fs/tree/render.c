/* How each document of the tree renders, from the backend's views. */
#include "render.h"
#include "hx_jobs.h"
#include "hx_tree_apply.h"
#include "hx_pools.h"
#include "hx_snapshots.h"
#include "hx_cloudinit.h"
#include "hx_stats.h"

#include <errno.h>
#include <libvirt/libvirt.h>
#include <string.h>

static void hx_jsonp(json_t **j)
{
    json_decref(*j);
}
#define hx_autojson __attribute__((cleanup(hx_jsonp)))

static void hx_node_viewp(hx_node_view *v)
{
    hx_node_view_clear(v);
}
static void hx_vm_viewp(hx_vm_view *v)
{
    hx_vm_view_clear(v);
}

/* Documents are JSON indented by 2 with keys in insertion order and a final newline. */
static int hx_render_json(const json_t *doc, hx_buf *out)
{
    hx_autofree char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!s)
        return -ENOMEM;
    if (hx_buf_puts(out, s) < 0 || hx_buf_puts(out, "\n") < 0)
        return -ENOMEM;
    return 0;
}

/* A document the backend built (r: its result), rendered and released. */
static int hx_render_owned(int r, json_t *doc, hx_buf *out)
{
    if (r >= 0)
        r = hx_render_json(doc, out);
    json_decref(doc);
    return r;
}

static json_t *hx_json_str0(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *hx_json_time(long long ns)
{
    char t[40];
    hx_stats_iso_time(ns, t, sizeof(t));
    return json_string(t);
}

int hx_render_readme(const hx_obj *o, hx_buf *out)
{
    (void)o;
    static const char text[] =
        "Horcrux: this directory tree is a live view of a KVM cluster.\n"
        "\n"
        "  cluster/status              nodes and VMs, counted\n"
        "  nodes/<node>/status         online | offline | connecting\n"
        "  nodes/<node>/info.json      host facts; why the node is offline\n"
        "  nodes/<node>/metrics.json   host CPU and memory counters\n"
        "  cluster/jobs/<id>/          long operations (clones): status.json, log, cancel\n"
        "  nodes/<node>/vms/<vm>/      state, config.json, clone, live.json, domain.xml,\n"
        "                              metrics.json\n"
        "  nodes/<node>/storage/<pool>/  status.json; volumes/<vol>/info.json\n"
        "  nodes/<node>/vms/<vm>/snapshots/   mkdir takes a snapshot; info.json, revert\n"
        "\n"
        "Every file is documented in docs/tree.md of the Horcrux sources: its format, what a\n"
        "read returns, what a write does, and the errors (EHOSTDOWN: the node is offline;\n"
        "ETIMEDOUT: the node did not answer in time; EIO: libvirt failed).\n";
    return hx_buf_puts(out, text) < 0 ? -ENOMEM : 0;
}

int hx_render_version(const hx_obj *o, hx_buf *out)
{
    (void)o;
    unsigned long lib = 0;
    virGetVersion(&lib, NULL, NULL);
    char libv[32];
    snprintf(libv, sizeof(libv), "%lu.%lu.%lu", lib / 1000000, (lib / 1000) % 1000, lib % 1000);
    hx_autojson json_t *doc = json_object();
    json_object_set_new(doc, "horcruxfs", json_string(HX_VERSION));
    json_object_set_new(doc, "tree_format", json_integer(HX_TREE_FORMAT));
    json_object_set_new(doc, "libvirt_client", json_string(libv));
    return hx_render_json(doc, out);
}

int hx_render_cluster_status(const hx_obj *o, hx_buf *out)
{
    (void)o;
    hx_cluster_counts c;
    hx_cluster_counts_get(hx_tree_cluster(), &c);
    hx_autojson json_t *doc = json_object();
    json_t *nodes = json_object();
    json_object_set_new(nodes, "total", json_integer(c.nodes));
    json_object_set_new(nodes, "online", json_integer(c.online));
    json_object_set_new(nodes, "offline", json_integer(c.offline));
    json_object_set_new(nodes, "connecting", json_integer(c.connecting));
    json_object_set_new(doc, "nodes", nodes);
    json_t *vms = json_object();
    json_object_set_new(vms, "total", json_integer(c.vms));
    json_object_set_new(vms, "running", json_integer(c.running));
    json_object_set_new(doc, "vms", vms);
    /* VMs are counted on online nodes only: an offline node's VMs are not known. */
    const char *health = c.nodes == 0          ? "empty"
                         : c.online == c.nodes ? "ok"
                         : c.online == 0       ? "down"
                                               : "degraded";
    json_object_set_new(doc, "health", json_string(health));
    return hx_render_json(doc, out);
}

int hx_render_node_uri(const hx_obj *o, hx_buf *out)
{
    __attribute__((cleanup(hx_node_viewp))) hx_node_view v;
    int r = hx_cluster_node_view(hx_tree_cluster(), o->node, &v);
    if (r < 0)
        return r;
    return hx_buf_printf(out, "%s\n", v.uri) < 0 ? -ENOMEM : 0;
}

int hx_render_node_status(const hx_obj *o, hx_buf *out)
{
    __attribute__((cleanup(hx_node_viewp))) hx_node_view v;
    int r = hx_cluster_node_view(hx_tree_cluster(), o->node, &v);
    if (r < 0)
        return r;
    return hx_buf_printf(out, "%s\n", hx_node_status_str(v.status)) < 0 ? -ENOMEM : 0;
}

int hx_render_node_info(const hx_obj *o, hx_buf *out)
{
    __attribute__((cleanup(hx_node_viewp))) hx_node_view v;
    int r = hx_cluster_node_view(hx_tree_cluster(), o->node, &v);
    if (r < 0)
        return r;
    hx_autojson json_t *doc = json_object();
    json_object_set_new(doc, "name", json_string(v.name));
    json_object_set_new(doc, "uri", json_string(v.uri));
    json_object_set_new(doc, "status", json_string(hx_node_status_str(v.status)));
    json_object_set_new(doc, "status_since", hx_json_time(v.status_since_ns));
    json_object_set_new(doc, "last_error", hx_json_str0(v.last_error));
    /* Host facts are those of the last connection; null before the first one. */
    json_object_set_new(doc, "host", v.info ? json_incref(v.info) : json_null());
    return hx_render_json(doc, out);
}

int hx_render_node_metrics(const hx_obj *o, hx_buf *out)
{
    json_t *doc = NULL;
    int r = hx_cluster_node_stats(hx_tree_cluster(), o->node, &doc);
    return hx_render_owned(r, doc, out);
}

int hx_render_vm_state(const hx_obj *o, hx_buf *out)
{
    __attribute__((cleanup(hx_vm_viewp))) hx_vm_view v;
    int r = hx_cluster_vm_view(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, &v);
    if (r < 0)
        return r;
    return hx_buf_printf(out, "%s\n", hx_stats_state_name(v.state, v.reason)) < 0 ? -ENOMEM : 0;
}

int hx_render_vm_config(const hx_obj *o, hx_buf *out)
{
    __attribute__((cleanup(hx_vm_viewp))) hx_vm_view v;
    int r = hx_cluster_vm_view(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, &v);
    if (r < 0)
        return r;
    if (!v.config_json)
        return -EIO; /* the converter's reason was logged when the domain was loaded */
    return hx_buf_puts(out, v.config_json) < 0 ? -ENOMEM : 0;
}

int hx_render_vm_live(const hx_obj *o, hx_buf *out)
{
    __attribute__((cleanup(hx_vm_viewp))) hx_vm_view v;
    int r = hx_cluster_vm_view(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, &v);
    if (r < 0)
        return r;
    hx_autojson json_t *doc = json_object();
    json_object_set_new(doc, "state", json_string(hx_stats_state_name(v.state, v.reason)));
    json_object_set_new(doc, "id", v.id >= 0 ? json_integer(v.id) : json_null());
    json_object_set_new(doc, "persistent", json_boolean(v.persistent));
    json_t *running = v.live_json ? json_loads(v.live_json, 0, NULL) : NULL;
    hx_autojson json_t *config = v.config_json ? json_loads(v.config_json, 0, NULL) : NULL;
    /* Top-level fields of config.json whose running value differs: they take effect at the
     * next boot. */
    json_t *pending = json_array();
    if (running && config) {
        const char *key;
        json_t *val;
        json_object_foreach (config, key, val) {
            if (!json_equal(val, json_object_get(running, key)))
                json_array_append_new(pending, json_string(key));
        }
    }
    json_object_set_new(doc, "pending_changes", pending);
    json_object_set_new(doc, "running", running ? running : json_null());
    return hx_render_json(doc, out);
}

int hx_render_vm_domxml(const hx_obj *o, hx_buf *out)
{
    __attribute__((cleanup(hx_vm_viewp))) hx_vm_view v;
    int r = hx_cluster_vm_view(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, &v);
    if (r < 0)
        return r;
    /* What `virsh dumpxml` shows: the live XML while running, else the persistent one. */
    const char *xml = v.xml_live ? v.xml_live : v.xml_config;
    return hx_buf_puts(out, xml ? xml : "") < 0 ? -ENOMEM : 0;
}

/* cloudinit/<file>: its bytes from the persistent XML's metadata; empty when not set. */
int hx_render_vm_cloudinit(const hx_obj *o, hx_buf *out)
{
    __attribute__((cleanup(hx_vm_viewp))) hx_vm_view v;
    int r = hx_cluster_vm_view(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, &v);
    if (r < 0)
        return r;
    hx_autofree char *data = NULL;
    size_t len = 0;
    r = hx_ci_read(v.xml_config, hx_tree_segment(o->kind), &data, &len);
    if (r < 0)
        return r;
    if (len == 0)
        return hx_buf_append(out, "", 0) < 0 ? -ENOMEM : 0;
    return hx_buf_append(out, data, len) < 0 ? -ENOMEM : 0;
}

int hx_render_vm_metrics(const hx_obj *o, hx_buf *out)
{
    json_t *doc = NULL;
    int r = hx_cluster_vm_stats(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, &doc);
    return hx_render_owned(r, doc, out);
}

int hx_render_last_error(const hx_obj *o, hx_buf *out)
{
    hx_obj d;
    hx_tree_parent(o, &d);
    hx_autofree char *line = hx_lasterr_get(&d);
    return !line || hx_buf_puts(out, line) < 0 ? -ENOMEM : 0;
}

/* The newest records; the whole history stays in the database. */
#define HX_AUDIT_SHOWN 1000

int hx_render_audit(const hx_obj *o, hx_buf *out)
{
    (void)o;
    hx_audit *a = hx_apply_audit();
    if (!a)
        return 0;
    return hx_audit_render(a, HX_AUDIT_SHOWN, out);
}

int hx_render_pool_status(const hx_obj *o, hx_buf *out)
{
    json_t *doc = NULL;
    int r = hx_cluster_pool_status(hx_tree_cluster(), o->node, o->sub, &doc);
    return hx_render_owned(r, doc, out);
}

int hx_render_vol_info(const hx_obj *o, hx_buf *out)
{
    json_t *doc = NULL;
    int r = hx_cluster_vol_info(hx_tree_cluster(), o->node, o->sub, o->item, &doc);
    return hx_render_owned(r, doc, out);
}

int hx_render_snap_info(const hx_obj *o, hx_buf *out)
{
    json_t *doc = NULL;
    int r = hx_snap_info(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, o->item, &doc);
    return hx_render_owned(r, doc, out);
}

int hx_render_snap_description(const hx_obj *o, hx_buf *out)
{
    hx_autofree char *d = NULL;
    int r = hx_snap_description(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, o->item, &d);
    if (r < 0)
        return r;
    /* Text with a final newline when there is any text. */
    if (*d && (hx_buf_puts(out, d) < 0 || hx_buf_puts(out, "\n") < 0))
        return -ENOMEM;
    return 0;
}

int hx_render_empty(const hx_obj *o, hx_buf *out)
{
    (void)o;
    (void)out;
    return 0;
}

int hx_render_job_status(const hx_obj *o, hx_buf *out)
{
    json_t *st = NULL;
    int r = hx_jobs_status(o->sub, &st);
    return hx_render_owned(r, st, out);
}

int hx_render_job_log(const hx_obj *o, hx_buf *out)
{
    return hx_jobs_log_text(o->sub, out);
}

/* The VM's last clone job, or nothing. */
int hx_render_vm_clone(const hx_obj *o, hx_buf *out)
{
    json_t *st = NULL;
    int r = hx_jobs_last_of("clone", o->vm_uuid, &st);
    if (r == -ENOENT)
        return 0;
    return hx_render_owned(r, st, out);
}
