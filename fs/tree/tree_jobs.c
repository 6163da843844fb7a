/* The table's callbacks for the long operations (jobs) and a VM's clone file, which starts one. */
#include "hx_clone.h"
#include "hx_jobs.h"
#include "tree_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int hx_tree_jobs_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    if (o->sub[0] && !hx_jobs_exists(o->sub))
        return -ENOENT;
    *version = hx_jobs_version();
    *changed_ns = hx_now_real_ns();
    return 0;
}

int hx_tree_job_list(const hx_obj *dir, char ***names)
{
    (void)dir;
    *names = hx_jobs_list();
    return *names ? 0 : -ENOMEM;
}

static int hx_tree_job_check(hx_obj *o, const char *name)
{
    (void)o;
    return hx_jobs_exists(name) ? 0 : -ENOENT;
}

int hx_tree_job_capture(hx_obj *o, const char *name)
{
    return hx_tree_capture_field(o, o->sub, sizeof(o->sub), name, hx_tree_job_check);
}

int hx_tree_job_cancel_ctl(const hx_obj *o, const char *cmd, size_t len, char **msg)
{
    while (len > 0 && (cmd[len - 1] == '\n' || cmd[len - 1] == ' '))
        len--;
    if (!(len == 1 && cmd[0] == '1') && !(len == 6 && memcmp(cmd, "cancel", 6) == 0)) {
        if (asprintf(msg, "job %s: write 1 (or cancel) to cancel it", o->sub) < 0)
            *msg = NULL;
        return -EINVAL;
    }
    return hx_jobs_cancel(o->sub, msg);
}

/* The VM's clone file follows the VM and the jobs. */
int hx_tree_vm_clone_version(const hx_obj *o, uint64_t *version, long long *changed_ns)
{
    int r = hx_tree_parent_version(o, version, changed_ns);
    if (r == 0)
        *version = *version * 1000003u + hx_jobs_version();
    return r;
}

int hx_tree_vm_clone_ctl(const hx_obj *o, const char *cmd, size_t len, char **msg)
{
    return hx_clone_start(hx_tree_cluster(), o->node, o->vm, o->vm_uuid, cmd, len, msg);
}
