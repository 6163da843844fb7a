/* libvirt's event loop, on a thread of its own.
 *
 * libvirt delivers domain events, keepalive probes and close callbacks only from a registered
 * event loop; without one, a dead libvirtd is noticed only when a call fails. We use libvirt's
 * default implementation and run it here; callbacks must therefore be quick and never call
 * back into libvirt synchronously (they queue work for the node threads).
 */
#include "hx_evloop.h"
#include "hx_log.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdatomic.h>

static pthread_t hx_evloop_thread;
static atomic_int hx_evloop_quit;
static int hx_evloop_wake = -1;

static void hx_evloop_silence(void *opaque, virErrorPtr err)
{
    /* libvirt prints every error to stderr by default; ours are reported once, with the
     * object's name, where they happen. */
    (void)opaque;
    (void)err;
}

static void hx_evloop_tick(int timer, void *opaque)
{
    (void)timer;
    (void)opaque;
}

static void *hx_evloop_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "virt-events");
    while (!atomic_load(&hx_evloop_quit))
        if (virEventRunDefaultImpl() < 0)
            hx_err("libvirt event loop: %s", virGetLastErrorMessage());
    return NULL;
}

int hx_evloop_start(void)
{
    virSetErrorFunc(NULL, hx_evloop_silence);
    if (virInitialize() < 0 || virEventRegisterDefaultImpl() < 0) {
        hx_err("cannot start libvirt's event loop: %s", virGetLastErrorMessage());
        return -1;
    }
    if (pthread_create(&hx_evloop_thread, NULL, hx_evloop_main, NULL) != 0) {
        hx_err("cannot start the libvirt event thread");
        return -1;
    }
    return 0;
}

void hx_evloop_stop(void)
{
    atomic_store(&hx_evloop_quit, 1);
    /* A zero timeout makes the loop iterate once more and see the flag. */
    hx_evloop_wake = virEventAddTimeout(0, hx_evloop_tick, NULL, NULL);
    pthread_join(hx_evloop_thread, NULL);
    if (hx_evloop_wake >= 0)
        virEventRemoveTimeout(hx_evloop_wake);
}
