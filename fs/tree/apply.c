/* The one path every change through the tree takes (see apply.h). */
#include "hx_tree_apply.h"
#include "hx_log.h"
#include "hx_stats.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static hx_events *hx_ap_events;
static hx_audit *hx_ap_audit;
static void (*hx_ap_changed)(const hx_obj *o);
static void (*hx_ap_entry_changed)(uint64_t dir_ino, const char *name);

void hx_apply_init(hx_events *ev, hx_audit *audit)
{
    hx_ap_events = ev;
    hx_ap_audit = audit;
}

hx_events *hx_apply_events(void)
{
    return hx_ap_events;
}

hx_audit *hx_apply_audit(void)
{
    return hx_ap_audit;
}

void hx_apply_set_changed(void (*fn)(const hx_obj *o))
{
    hx_ap_changed = fn;
}

void hx_apply_set_entry_changed(void (*fn)(uint64_t dir_ino, const char *name))
{
    hx_ap_entry_changed = fn;
}

void hx_apply_changed(const hx_obj *o, const char *name)
{
    if (name && hx_ap_entry_changed)
        hx_ap_entry_changed(hx_tree_ino(o), name);
    else if (!name && hx_ap_changed)
        hx_ap_changed(o);
}

/* ---- last_error: one line per object directory, kept in memory ---- */

typedef struct hx_lasterr {
    char path[512];
    char *line;
} hx_lasterr;

static pthread_mutex_t hx_le_lock = PTHREAD_MUTEX_INITIALIZER;
static hx_lasterr *hx_le;
static size_t hx_n_le, hx_cap_le;
static _Atomic uint64_t hx_le_version = 1;
/* Bounded: beyond it the oldest lines are dropped (their objects show an empty last_error). */
#define HX_LASTERR_MAX 65536

uint64_t hx_lasterr_version(void)
{
    return atomic_load(&hx_le_version);
}

char *hx_lasterr_get(const hx_obj *d)
{
    char path[512];
    hx_tree_path(d, path, sizeof(path));
    char *out = NULL;
    pthread_mutex_lock(&hx_le_lock);
    for (size_t i = 0; i < hx_n_le && !out; i++)
        if (strcmp(hx_le[i].path, path) == 0)
            out = strdup(hx_le[i].line);
    pthread_mutex_unlock(&hx_le_lock);
    return out ? out : strdup("");
}

static void hx_lasterr_set(const hx_obj *d, char *line)
{
    char path[512];
    hx_tree_path(d, path, sizeof(path));
    pthread_mutex_lock(&hx_le_lock);
    size_t i = 0;
    while (i < hx_n_le && strcmp(hx_le[i].path, path) != 0)
        i++;
    if (i == hx_n_le) {
        if (hx_n_le == HX_LASTERR_MAX) {
            free(hx_le[0].line);
            memmove(&hx_le[0], &hx_le[1], (hx_n_le - 1) * sizeof(*hx_le));
            i = --hx_n_le;
        }
        if (hx_n_le == hx_cap_le) {
            size_t cap = hx_cap_le ? hx_cap_le * 2 : 64;
            hx_lasterr *nl = realloc(hx_le, cap * sizeof(*hx_le));
            if (!nl) {
                pthread_mutex_unlock(&hx_le_lock);
                free(line);
                return;
            }
            hx_le = nl;
            hx_cap_le = cap;
        }
        hx_strlcpy(hx_le[i].path, path, sizeof(hx_le[i].path));
        hx_le[i].line = NULL;
        hx_n_le++;
    }
    free(hx_le[i].line);
    hx_le[i].line = line;
    atomic_fetch_add(&hx_le_version, 1);
    pthread_mutex_unlock(&hx_le_lock);
}

/* ---- the wrapper ---- */

/* The word for op in logs, audit records and last_error lines. */
static const char *hx_op_name(hx_op op)
{
    static const char *const names[] = {
        [HX_OP_CTL] = "write",    [HX_OP_COMMIT] = "commit", [HX_OP_MKDIR] = "mkdir",
        [HX_OP_RMDIR] = "rmdir",  [HX_OP_CREATE] = "create", [HX_OP_UNLINK] = "unlink",
        [HX_OP_RENAME] = "rename"};
    return (size_t)op < sizeof(names) / sizeof(names[0]) ? names[op] : "change";
}

/* The nearest directory (d or above) that shows a last_error: a snapshot's failures go to its
 * VM's. */
static void hx_apply_errdir_shown(hx_obj *d)
{
    while (d->kind != HX_KIND_ROOT && hx_tree_child_kind(d->kind, "last_error") < 0) {
        hx_obj up;
        hx_tree_parent(d, &up);
        *d = up;
    }
}

/* The directory whose last_error tells about a change to o. */
static void hx_apply_errdir(hx_op op, const hx_obj *o, hx_obj *d)
{
    if (op == HX_OP_RMDIR) {
        *d = *o; /* the VM still exists when its rmdir failed */
        return;
    }
    /* A file's directory; for mkdir or create in nodes/<n>/vms, the node's directory. A
     * directory without a last_error of its own (a VM's cloudinit/) tells through the nearest one
     * above. */
    hx_tree_parent(o, d);
    hx_apply_errdir_shown(d);
}

int hx_apply(hx_op op, const hx_obj *o, const char *name, const char *data, size_t len,
             const hx_caller *who)
{
    const hx_kind *k = &hx_kinds[o->kind];
    char path[1024];
    hx_tree_path(o, path, sizeof(path));
    if (name) {
        size_t pl = strlen(path);
        snprintf(path + pl, sizeof(path) - pl, "%s%s", pl > 1 ? "/" : "", name);
    }
    /* The action as recorded: the command word for control files, the verb otherwise. */
    char action[96];
    if (op == HX_OP_CTL) {
        size_t n = len;
        while (n > 0 && (data[n - 1] == '\n' || data[n - 1] == ' '))
            n--;
        snprintf(action, sizeof(action), "write %.*s", (int)(n > 64 ? 64 : n), data);
        for (char *p = action; *p; p++)
            if ((unsigned char)*p < 0x20)
                *p = '?';
    } else {
        snprintf(action, sizeof(action), "%s", hx_op_name(op));
    }

    hx_autofree char *msg = NULL;
    int r;
    /* Deny by default: only root changes the cluster until users and permissions exist. */
    if (who->uid != 0) {
        r = -EACCES;
        if (asprintf(&msg, "%s: only root may change the cluster", path) < 0)
            msg = NULL;
    } else if (op == HX_OP_CTL && k->ctl) {
        r = k->ctl(o, data, len, &msg);
    } else if (op == HX_OP_COMMIT && k->commit) {
        r = k->commit(o, data, len, &msg);
    } else if (op == HX_OP_UNLINK && k->commit && (k->flags & HX_KF_UNLINK_CLEARS)) {
        r = k->commit(o, "", 0, &msg);
    } else if (op == HX_OP_MKDIR && k->mkdir) {
        r = k->mkdir(o, name, &msg);
    } else if (op == HX_OP_RMDIR && k->rmdir) {
        r = k->rmdir(o, &msg);
    } else {
        r = -EPERM;
        if (asprintf(&msg, "%s: cannot %s here", path, hx_op_name(op)) < 0)
            msg = NULL;
    }
    if (r < 0 && !msg && asprintf(&msg, "%s: %s", path, strerror(-r)) < 0)
        msg = NULL;

    if (r < 0)
        hx_info("%s %s by uid %u failed: %s", action, path, who->uid, msg ? msg : "");
    else
        hx_info("%s %s by uid %u", action, path, who->uid);
    if (hx_ap_audit)
        hx_audit_append(hx_ap_audit, who->uid, who->pid, path, action, r < 0 ? -r : 0, msg);
    if (hx_ap_events) {
        json_t *ev = json_pack("{s:s,s:s,s:s,s:i,s:s}", "type", r < 0 ? "action.failed" : "action",
                               "path", path, "action", action, "uid", (int)who->uid, "result",
                               r < 0 ? strerrorname_np(-r) : "ok");
        if (ev && r < 0 && msg)
            json_object_set_new(ev, "message", json_string(msg));
        if (ev)
            hx_events_post(hx_ap_events, ev);
    }
    if (r < 0) {
        hx_obj d;
        hx_apply_errdir(op, o, &d);
        hx_apply_errdir_shown(&d);
        char when[40];
        hx_stats_iso_time(hx_now_real_ns(), when, sizeof(when));
        char *line = NULL;
        if (asprintf(&line, "%s uid=%u %s %s: %s: %s\n", when, who->uid, action, path,
                     strerrorname_np(-r) ? strerrorname_np(-r) : "error", msg ? msg : "") < 0)
            line = NULL;
        if (line) {
            hx_lasterr_set(&d, line);
            if (hx_ap_changed) {
                d.kind = hx_tree_child_kind(d.kind, "last_error");
                if (d.kind >= 0)
                    hx_ap_changed(&d);
            }
        }
    }
    if (hx_ap_changed) {
        hx_obj a = {.kind = hx_tree_kind("/cluster/audit")};
        hx_ap_changed(&a);
    }
    return r;
}

/* ---- events from the backend ---- */

void hx_apply_post_change(const hx_change *c)
{
    if (!hx_ap_events)
        return;
    json_t *ev = NULL;
    switch (c->kind) {
    case HX_CHANGE_NODES:
        ev = json_pack("{s:s,s:s?}", "type", "cluster.nodes", "node", c->node);
        break;
    case HX_CHANGE_NODE:
        ev =
            json_pack("{s:s,s:s,s:s?}", "type", "node.status", "node", c->node, "status", c->state);
        break;
    case HX_CHANGE_VM:
        if (c->vanished)
            ev = json_pack("{s:s,s:s,s:s,s:s?}", "type", "vm.deleted", "node", c->node, "vm",
                           c->vm_name, "uuid", c->vm_uuid);
        else if (c->appeared)
            ev = json_pack("{s:s,s:s,s:s,s:s?,s:s?}", "type", "vm.created", "node", c->node, "vm",
                           c->vm_name, "uuid", c->vm_uuid, "state", c->state);
        if (ev) {
            hx_events_post(hx_ap_events, ev);
            ev = NULL;
            if (c->vanished)
                return;
        }
        if (c->state_changed && !c->appeared)
            hx_events_post(hx_ap_events,
                           json_pack("{s:s,s:s,s:s,s:s?,s:s?}", "type", "vm.state", "node", c->node,
                                     "vm", c->vm_name, "uuid", c->vm_uuid, "state", c->state));
        if (c->config_changed)
            ev = json_pack("{s:s,s:s,s:s,s:s?}", "type", "vm.config", "node", c->node, "vm",
                           c->vm_name, "uuid", c->vm_uuid);
        break;
    case HX_CHANGE_POOL:
        /* A refresh event that moved nothing we show is no event for readers. */
        if (c->vanished)
            ev = json_pack("{s:s,s:s,s:s}", "type", "pool.deleted", "node", c->node, "pool",
                           c->pool);
        else if (c->appeared)
            ev = json_pack("{s:s,s:s,s:s,s:s?}", "type", "pool.created", "node", c->node, "pool",
                           c->pool, "state", c->state);
        else if (c->state_changed)
            ev = json_pack("{s:s,s:s,s:s,s:s?}", "type", "pool.state", "node", c->node, "pool",
                           c->pool, "state", c->state);
        break;
    }
    if (ev)
        hx_events_post(hx_ap_events, ev);
}
