/* Clones of VMs as jobs. */
#include "hx_clone.h"
#include "hx_jobs.h"

#include <errno.h>
#include <stdio.h>

void hx_clone_init(hx_cluster *cl)
{
    (void)cl;
}

int hx_clone_start(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                   const char *req, size_t len, char **msg)
{
    (void)cl;
    (void)node;
    (void)uuid;
    (void)req;
    (void)len;
    if (asprintf(msg, "VM %s: clones are not available yet", vm) < 0)
        *msg = NULL;
    return -ENOTSUP;
}
