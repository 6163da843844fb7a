/* The cluster's event stream: a bounded ring of serialized JSON lines with per-reader cursors. */
#include "hx_events.h"
#include "hx_log.h"
#include "hx_stats.h"
#include "hx_util.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>

typedef struct hx_events_slot {
    char *line; /* "{...}\n", owned */
    size_t len;
} hx_events_slot;

struct hx_events {
    /* Posters take post_mu for the whole post so that seq, time and ring order agree; the
     * serialization happens under post_mu only. ring_mu guards the ring and every reader's
     * cursor, and is held just for a pointer swap (posters) or one read's copy (readers), so a
     * poster never waits for a slow reader beyond that copy. Order: post_mu, then ring_mu. */
    pthread_mutex_t post_mu;
    pthread_mutex_t ring_mu;
    size_t cap;
    hx_events_slot *slots; /* seq s lives in slots[(s - 1) % cap] */
    uint64_t next_seq;     /* seq of the next post; written under both locks */
    void (*wake)(void *opaque);
    void *wake_opaque;
};

struct hx_events_reader {
    hx_events *ev;
    uint64_t next; /* seq of the next line to deliver from the ring */
    /* A line being delivered across reads (a private copy, so dropping it from the ring cannot
     * cut it), or the overflow record. NULL when none. */
    char *part;
    size_t part_len;
    size_t part_off;
};

hx_events *hx_events_new(size_t capacity)
{
    if (capacity == 0)
        capacity = 1;
    hx_events *ev = calloc(1, sizeof(*ev));
    if (!ev)
        return NULL;
    ev->slots = calloc(capacity, sizeof(*ev->slots));
    if (!ev->slots) {
        free(ev);
        return NULL;
    }
    ev->cap = capacity;
    ev->next_seq = 1;
    pthread_mutex_init(&ev->post_mu, NULL);
    pthread_mutex_init(&ev->ring_mu, NULL);
    return ev;
}

void hx_events_free(hx_events *ev)
{
    if (!ev)
        return;
    for (size_t i = 0; i < ev->cap; i++)
        free(ev->slots[i].line);
    free(ev->slots);
    pthread_mutex_destroy(&ev->post_mu);
    pthread_mutex_destroy(&ev->ring_mu);
    free(ev);
}

void hx_events_set_wake(hx_events *ev, void (*fn)(void *opaque), void *opaque)
{
    pthread_mutex_lock(&ev->ring_mu);
    ev->wake = fn;
    ev->wake_opaque = opaque;
    pthread_mutex_unlock(&ev->ring_mu);
}

static void hx_events_json_decrefp(json_t **j)
{
    json_decref(*j);
}
#define hx_events_autojson __attribute__((cleanup(hx_events_json_decrefp)))

/* Serializes {"seq": seq, "time": now, ...body} as one line with its '\n'; NULL when out of
 * memory. body may be NULL. */
static char *hx_events_line(uint64_t seq, json_t *body, size_t *len)
{
    char when[40];
    hx_stats_iso_time(hx_now_real_ns(), when, sizeof(when));
    hx_events_autojson json_t *o = json_object();
    if (!o || json_object_set_new(o, "seq", json_integer((json_int_t)seq)) < 0 ||
        json_object_set_new(o, "time", json_string(when)) < 0)
        return NULL;
    /* jansson keeps insertion order when dumping, so seq and time stay first. */
    if (body && json_object_update(o, body) < 0)
        return NULL;
    hx_autofree char *s = json_dumps(o, JSON_COMPACT);
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *line = malloc(n + 2);
    if (!line)
        return NULL;
    memcpy(line, s, n);
    line[n] = '\n';
    line[n + 1] = '\0';
    *len = n + 1;
    return line;
}

void hx_events_post(hx_events *ev, json_t *obj)
{
    hx_events_autojson json_t *body = obj;
    if (!json_is_object(body)) {
        hx_err("events: dropping a posted event that is not a JSON object");
        return;
    }
    json_object_del(body, "seq");
    json_object_del(body, "time");

    pthread_mutex_lock(&ev->post_mu);
    uint64_t seq = ev->next_seq; /* only posters write it, and they hold post_mu */
    size_t len = 0;
    char *line = hx_events_line(seq, body, &len);
    if (!line) {
        pthread_mutex_unlock(&ev->post_mu);
        hx_err("events: out of memory serializing event %llu; dropped", (unsigned long long)seq);
        return;
    }
    pthread_mutex_lock(&ev->ring_mu);
    hx_events_slot *slot = &ev->slots[(seq - 1) % ev->cap];
    char *old = slot->line;
    slot->line = line;
    slot->len = len;
    ev->next_seq = seq + 1;
    void (*wake)(void *) = ev->wake;
    void *wake_opaque = ev->wake_opaque;
    pthread_mutex_unlock(&ev->ring_mu);
    pthread_mutex_unlock(&ev->post_mu);

    free(old);
    if (wake)
        wake(wake_opaque);
}

void hx_events_post_kv(hx_events *ev, const char *type, ...)
{
    json_t *obj = json_object();
    if (!obj) {
        hx_err("events: out of memory building a %s event; dropped", type);
        return;
    }
    int rc = json_object_set_new(obj, "type", json_string(type));
    va_list ap;
    va_start(ap, type);
    for (const char *key = va_arg(ap, const char *); key; key = va_arg(ap, const char *)) {
        const char *value = va_arg(ap, const char *);
        rc |= json_object_set_new(obj, key, value ? json_string(value) : json_null());
    }
    va_end(ap);
    if (rc < 0) {
        json_decref(obj);
        hx_err("events: cannot build a %s event (out of memory or invalid UTF-8); dropped", type);
        return;
    }
    hx_events_post(ev, obj);
}

hx_events_reader *hx_events_reader_new(hx_events *ev)
{
    hx_events_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->ev = ev;
    pthread_mutex_lock(&ev->ring_mu);
    r->next = ev->next_seq;
    pthread_mutex_unlock(&ev->ring_mu);
    return r;
}

void hx_events_reader_free(hx_events_reader *r)
{
    if (!r)
        return;
    free(r->part);
    free(r);
}

/* Oldest seq still in the ring. Called with ring_mu held. */
static uint64_t hx_events_oldest(const hx_events *ev)
{
    return ev->next_seq > ev->cap ? ev->next_seq - ev->cap : 1;
}

/* Puts the overflow record into r->part and moves r to the oldest line held. Called with ring_mu
 * held; returns -1 when out of memory (the reader then just skips ahead). */
static int hx_events_overflow(hx_events_reader *r, uint64_t oldest)
{
    uint64_t lost = oldest - r->next;
    r->next = oldest;
    hx_events_autojson json_t *body = json_object();
    if (!body || json_object_set_new(body, "type", json_string("overflow")) < 0 ||
        json_object_set_new(body, "lost", json_integer((json_int_t)lost)) < 0)
        return -1;
    /* Its seq is that of the last lost event, so a reader's seqs stay increasing. */
    r->part = hx_events_line(oldest - 1, body, &r->part_len);
    r->part_off = 0;
    return r->part ? 0 : -1;
}

size_t hx_events_read(hx_events_reader *r, char *buf, size_t size)
{
    hx_events *ev = r->ev;
    size_t n = 0;
    pthread_mutex_lock(&ev->ring_mu);
    while (n < size) {
        if (r->part) {
            size_t left = r->part_len - r->part_off;
            /* A whole line that merely does not fit after what we copied waits for the next
             * read; only a line longer than a whole buffer is split. */
            if (r->part_off == 0 && n > 0 && left > size - n)
                break;
            size_t k = left < size - n ? left : size - n;
            memcpy(buf + n, r->part + r->part_off, k);
            n += k;
            r->part_off += k;
            if (r->part_off < r->part_len)
                break;
            free(r->part);
            r->part = NULL;
            continue;
        }
        if (r->next >= ev->next_seq)
            break;
        uint64_t oldest = hx_events_oldest(ev);
        if (r->next < oldest) {
            if (hx_events_overflow(r, oldest) < 0)
                hx_err("events: out of memory building an overflow record for a reader");
            continue;
        }
        const hx_events_slot *slot = &ev->slots[(r->next - 1) % ev->cap];
        if (slot->len <= size - n) {
            memcpy(buf + n, slot->line, slot->len);
            n += slot->len;
            r->next++;
            continue;
        }
        if (n > 0)
            break;
        r->part = malloc(slot->len);
        if (!r->part) {
            hx_err("events: out of memory copying event %llu for a reader",
                   (unsigned long long)r->next);
            break;
        }
        memcpy(r->part, slot->line, slot->len);
        r->part_len = slot->len;
        r->part_off = 0;
        r->next++;
    }
    pthread_mutex_unlock(&ev->ring_mu);
    return n;
}

int hx_events_pending(hx_events_reader *r)
{
    pthread_mutex_lock(&r->ev->ring_mu);
    int pending = r->part != NULL || r->next < r->ev->next_seq;
    pthread_mutex_unlock(&r->ev->ring_mu);
    return pending;
}

uint64_t hx_events_last_seq(hx_events *ev)
{
    pthread_mutex_lock(&ev->ring_mu);
    uint64_t seq = ev->next_seq - 1;
    pthread_mutex_unlock(&ev->ring_mu);
    return seq;
}
