/* Lifecycle actions on VMs: the words of the action file, the states each one is allowed in, the
 * libvirt call each one makes. */
#include "hx_cloudinit.h"
#include "node.h"
#include "vmops_priv.h"

#include <ctype.h>
#include <errno.h>
#include <libvirt/virterror.h>
#include <string.h>

#define ST(s) (1u << (s))
#define ST_RUN (ST(VIR_DOMAIN_RUNNING) | ST(VIR_DOMAIN_BLOCKED))

typedef struct hx_action {
    const char *word;
    unsigned allowed;      /* virDomainState bits in which the action makes sense */
    const char *forbidden; /* why not, for the message */
} hx_action;

static const hx_action hx_actions[] = {
    {"start", ST(VIR_DOMAIN_SHUTOFF), "it is not shut off"},
    {"shutdown", ST_RUN, "it is not running"},
    {"stop",
     ST_RUN | ST(VIR_DOMAIN_PAUSED) | ST(VIR_DOMAIN_SHUTDOWN) | ST(VIR_DOMAIN_CRASHED) |
         ST(VIR_DOMAIN_PMSUSPENDED),
     "it is already shut off"},
    {"reboot", ST_RUN, "it is not running"},
    {"reset", ST_RUN | ST(VIR_DOMAIN_PAUSED), "it is not running"},
    {"pause", ST_RUN, "it is not running"},
    {"resume", ST(VIR_DOMAIN_PAUSED), "it is not paused"},
};

const char *const hx_vm_action_words[] = {"start", "shutdown", "stop",   "reboot",
                                          "reset", "pause",    "resume", NULL};

static int hx_action_run(virDomainPtr d, const char *word)
{
    if (strcmp(word, "start") == 0)
        return virDomainCreate(d);
    if (strcmp(word, "shutdown") == 0)
        return virDomainShutdown(d); /* ACPI: returns once the guest was asked */
    if (strcmp(word, "stop") == 0)
        return virDomainDestroy(d);
    if (strcmp(word, "reboot") == 0)
        return virDomainReboot(d, 0);
    if (strcmp(word, "reset") == 0)
        return virDomainReset(d, 0);
    if (strcmp(word, "pause") == 0)
        return virDomainSuspend(d);
    return virDomainResume(d);
}

int hx_vm_action(hx_cluster *cl, const char *node, const char *vm, const char *uuid,
                 const char *word, size_t len, char **msg)
{
    /* One command per write: blanks and one trailing newline around the word are fine. */
    while (len > 0 && isspace((unsigned char)word[len - 1]))
        len--;
    while (len > 0 && isspace((unsigned char)*word)) {
        word++;
        len--;
    }
    const hx_action *a = NULL;
    for (size_t i = 0; i < sizeof(hx_actions) / sizeof(hx_actions[0]) && !a; i++)
        if (strlen(hx_actions[i].word) == len && memcmp(hx_actions[i].word, word, len) == 0)
            a = &hx_actions[i];
    if (!a)
        return hx_fail(msg, -EINVAL,
                       "VM %s: unknown action \"%.*s\" (start, shutdown, stop, reboot, reset, "
                       "pause, resume)",
                       vm, (int)(len > 64 ? 64 : len), word);
    hx_vm_autoctx hx_vmctx c;
    int r = hx_vmctx_open(cl, node, vm, uuid, &c, msg);
    if (r < 0)
        return r;
    int st = c.view.state, reason;
    /* The cache can trail libvirt by a refresh still in flight; a refusal asks libvirt. */
    if ((st < 0 || st >= 32 || !(a->allowed & ST(st))) &&
        virDomainGetState(c.dom, &st, &reason, 0) < 0)
        st = c.view.state;
    if (st < 0 || st >= 32 || !(a->allowed & ST(st)))
        return hx_fail(msg, -EBUSY, "VM %s cannot %s: %s", vm, a->word, a->forbidden);
    if (strcmp(a->word, "start") == 0 && hx_vm_is_template(c.view.config_json))
        return hx_fail(msg, -EPERM, "VM %s is a template and cannot be started", vm);
    /* The cloud-init ISO is made (or removed) now, from the documents as they are at this
     * start: QEMU opens the cdrom's file when the domain starts. */
    if (strcmp(a->word, "start") == 0) {
        r = hx_ci_prepare(c.conn, c.dom, vm, msg);
        if (r < 0) {
            hx_vm_refresh(c.n, vm, c.view.uuid);
            return r;
        }
    }
    if (hx_action_run(c.dom, a->word) < 0) {
        int e = hx_virt_errno();
        r = hx_fail(msg, e, "VM %s: %s failed: %s", vm, a->word, virGetLastErrorMessage());
        hx_vm_refresh(c.n, vm, c.view.uuid);
        return r;
    }
    /* pause and resume change the state alone: the cache takes the known result now (a
     * refresh costs several libvirt round trips, more than the action itself), and libvirt's
     * lifecycle event refreshes the rest as usual. Other actions change the live XML too. */
    if (strcmp(a->word, "pause") == 0)
        hx_node_note_state(c.n, c.view.uuid, VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_USER);
    else if (strcmp(a->word, "resume") == 0)
        hx_node_note_state(c.n, c.view.uuid, VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_UNPAUSED);
    else
        hx_vm_refresh(c.n, vm, c.view.uuid);
    return 0;
}
