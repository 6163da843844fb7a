/* Streams: parked reads and poll over the event ring (see stream.h).
 *
 * A reader that waits must not hold a FUSE worker thread: with blocking reads, max_threads
 * readers wedge the whole mount and a killed reader stays in D state. So a read with nothing to
 * return is parked in its stream, and this module's thread answers it when an event arrives.
 */
#include "stream.h"
#include "hx_log.h"
#include "hx_util.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>

struct hx_stream {
    hx_stream *prev, *next; /* all open streams */
    hx_events_reader *r;
    pthread_mutex_t lock; /* guards the fields below */
    fuse_req_t parked;
    size_t parked_size;
    int armed;       /* the parked request's interrupt callback is registered */
    int interrupted; /* the interrupt came before it was armed */
    struct fuse_pollhandle *ph;
};

static pthread_mutex_t hx_st_lock = PTHREAD_MUTEX_INITIALIZER; /* list, wake flag, stop */
static pthread_cond_t hx_st_cond = PTHREAD_COND_INITIALIZER;
static hx_stream *hx_st_head;
static int hx_st_wake, hx_st_stop, hx_st_running;
static pthread_t hx_st_thread;

/* Replies to the parked read of s with what is pending, or EINTR (s->lock held). */
static void hx_stream_answer(hx_stream *s, int eintr)
{
    fuse_req_t req = s->parked;
    s->parked = NULL;
    s->armed = s->interrupted = 0;
    if (eintr) {
        fuse_reply_err(req, EINTR);
        return;
    }
    hx_autofree char *buf = malloc(s->parked_size);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    size_t n = hx_events_read(s->r, buf, s->parked_size);
    fuse_reply_buf(req, buf, n);
}

/* Answers what can be answered on s (s->lock held). */
static void hx_stream_service(hx_stream *s)
{
    int pending = hx_events_pending(s->r);
    if (s->parked && s->armed && (s->interrupted || pending))
        hx_stream_answer(s, s->interrupted);
    if (s->ph && pending) {
        fuse_lowlevel_notify_poll(s->ph);
        fuse_pollhandle_destroy(s->ph);
        s->ph = NULL;
    }
}

static void hx_stream_wake(void *opaque)
{
    (void)opaque;
    pthread_mutex_lock(&hx_st_lock);
    hx_st_wake = 1;
    pthread_cond_signal(&hx_st_cond);
    pthread_mutex_unlock(&hx_st_lock);
}

static void *hx_stream_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "streams");
    pthread_mutex_lock(&hx_st_lock);
    for (;;) {
        while (!hx_st_wake && !hx_st_stop)
            pthread_cond_wait(&hx_st_cond, &hx_st_lock);
        if (hx_st_stop)
            break;
        hx_st_wake = 0;
        /* The list lock is held while streams are served: a close waits for it, so no stream
         * is freed under us. Replies to /dev/fuse do not wait on readers. */
        for (hx_stream *s = hx_st_head; s; s = s->next) {
            pthread_mutex_lock(&s->lock);
            hx_stream_service(s);
            pthread_mutex_unlock(&s->lock);
        }
    }
    pthread_mutex_unlock(&hx_st_lock);
    return NULL;
}

int hx_stream_start(hx_events *ev)
{
    hx_events_set_wake(ev, hx_stream_wake, NULL);
    if (pthread_create(&hx_st_thread, NULL, hx_stream_main, NULL) != 0) {
        hx_err("cannot start the stream thread");
        return -1;
    }
    hx_st_running = 1;
    return 0;
}

void hx_stream_stop(void)
{
    if (!hx_st_running)
        return;
    pthread_mutex_lock(&hx_st_lock);
    hx_st_stop = 1;
    pthread_cond_signal(&hx_st_cond);
    pthread_mutex_unlock(&hx_st_lock);
    pthread_join(hx_st_thread, NULL);
    hx_st_running = 0;
}

hx_stream *hx_stream_open(hx_events *ev)
{
    hx_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->r = hx_events_reader_new(ev);
    if (!s->r) {
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_lock(&hx_st_lock);
    s->next = hx_st_head;
    if (hx_st_head)
        hx_st_head->prev = s;
    hx_st_head = s;
    pthread_mutex_unlock(&hx_st_lock);
    return s;
}

void hx_stream_close(hx_stream *s)
{
    pthread_mutex_lock(&hx_st_lock);
    if (s->prev)
        s->prev->next = s->next;
    else
        hx_st_head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&hx_st_lock);
    /* The kernel releases a file only when no read is in flight on it. */
    if (s->ph)
        fuse_pollhandle_destroy(s->ph);
    hx_events_reader_free(s->r);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void hx_stream_interrupted(fuse_req_t req, void *data)
{
    hx_stream *s = data;
    pthread_mutex_lock(&s->lock);
    if (s->parked == req) {
        if (s->armed)
            hx_stream_answer(s, 1);
        else
            s->interrupted = 1;
    }
    pthread_mutex_unlock(&s->lock);
}

void hx_stream_read(hx_stream *s, fuse_req_t req, size_t size, int nonblock)
{
    pthread_mutex_lock(&s->lock);
    if (s->parked) {
        /* One read at a time per open file (the kernel serializes them for us anyway). */
        pthread_mutex_unlock(&s->lock);
        fuse_reply_err(req, EBUSY);
        return;
    }
    s->parked = req;
    s->parked_size = size;
    s->armed = 1;
    if (hx_events_pending(s->r)) {
        hx_stream_answer(s, 0);
        pthread_mutex_unlock(&s->lock);
        return;
    }
    if (nonblock) {
        s->parked = NULL;
        pthread_mutex_unlock(&s->lock);
        fuse_reply_err(req, EAGAIN);
        return;
    }
    /* Registering the interrupt callback may call it at once (the interrupt already came), and
     * the request must not be answered by the stream thread before that returns: park unarmed,
     * register outside the lock, then arm. */
    s->armed = 0;
    pthread_mutex_unlock(&s->lock);
    fuse_req_interrupt_func(req, hx_stream_interrupted, s);
    pthread_mutex_lock(&s->lock);
    s->armed = 1;
    hx_stream_service(s);
    pthread_mutex_unlock(&s->lock);
}

void hx_stream_poll(hx_stream *s, fuse_req_t req, struct fuse_pollhandle *ph)
{
    pthread_mutex_lock(&s->lock);
    if (ph) {
        if (s->ph)
            fuse_pollhandle_destroy(s->ph);
        s->ph = ph;
    }
    unsigned revents = hx_events_pending(s->r) ? POLLIN | POLLRDNORM : 0;
    if (revents && s->ph) {
        fuse_pollhandle_destroy(s->ph);
        s->ph = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    fuse_reply_poll(req, revents);
}
