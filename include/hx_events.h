/* The cluster's event stream, served as /events: one compact JSON object per line, for every
 * change in the cluster. Lines live in a bounded ring; each reader keeps its own cursor, and a
 * reader that falls behind by more than the ring holds gets an explicit overflow record instead of
 * making the ring grow.
 *
 * The module owns the ring and the readers' cursors. Callers: the daemon (new, free, set_wake),
 * any module that reports a change (post, from any thread: the tree's write path, the jobs),
 * the /events front end (readers). Locking: internal, a post lock then a ring lock, held only
 * for one post or one read's copy; the wake callback runs outside both. */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hx_events hx_events;
typedef struct hx_events_reader hx_events_reader;

/* A ring of `capacity` lines (e.g. 4096; at least 1). NULL when out of memory. */
hx_events *hx_events_new(size_t capacity);
/* Frees the ring. Every reader must have been freed before. */
void hx_events_free(hx_events *ev);

/* Called (outside any lock of this module) after each post, e.g. to wake parked FUSE reads. */
void hx_events_set_wake(hx_events *ev, void (*fn)(void *opaque), void *opaque);

/* Appends an event. obj is a JSON object whose reference is stolen. The module adds "seq" (1, 2,
 * 3...) and "time" (UTC ISO-8601 with milliseconds, e.g. "2026-12-01T23:14:47.123Z") as the first
 * keys (replacing any the object had) and serializes it compactly as one line ending in '\n'.
 * Thread-safe; never waits for readers beyond the copy of one read. */
void hx_events_post(hx_events *ev, json_t *obj);

/* Convenience: builds {"type": type, key: value, ...} from NULL-terminated key/value pairs and
 * posts it: hx_events_post_kv(ev, "vm.state", "node", "n1", "vm", "k00", "state", "running",
 * NULL). String values only; a NULL value becomes JSON null. */
void hx_events_post_kv(hx_events *ev, const char *type, ... /* key, value pairs, NULL */);

/* A reader starts at the end: it sees events posted after it was created. NULL when out of
 * memory. */
hx_events_reader *hx_events_reader_new(hx_events *ev);
void hx_events_reader_free(hx_events_reader *r);

/* Copies pending bytes for r into buf (at most size). Whole lines when they fit; a line longer
 * than size is delivered across several reads (the reader keeps its offset inside the line, and
 * the line stays intact even if the ring drops it meanwhile). When the reader fell behind by more
 * than the ring holds, it first gets one line
 * {"seq":S,"time":"..","type":"overflow","lost":N}, where S is the seq of the last lost event, and
 * continues at the oldest line still held. Returns bytes copied, 0 when nothing is pending.
 * Calls on one reader may come from several threads. */
size_t hx_events_read(hx_events_reader *r, char *buf, size_t size);

/* 1 when a read would return data, else 0. */
int hx_events_pending(hx_events_reader *r);

/* The seq of the newest event posted, 0 before the first. */
uint64_t hx_events_last_seq(hx_events *ev);
