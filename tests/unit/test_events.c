/* Unit tests: the event stream's ring, readers, overflow records and partial reads. */
#include "hxtest.h"

#include "hx_events.h"
#include "hx_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

static void free_events(hx_events **ev)
{
    hx_events_free(*ev);
}

static void free_reader(hx_events_reader **r)
{
    hx_events_reader_free(*r);
}

/* Scoped rings and readers; declared after their ring, readers go first. */
#define AUTO_EVENTS __attribute__((cleanup(free_events))) hx_events
#define AUTO_READER __attribute__((cleanup(free_reader))) hx_events_reader

/* Everything pending for r, read with a buffer of bufsize bytes. */
static char *read_all(hx_events_reader *r, size_t bufsize)
{
    hx_buf out = {0};
    char *buf = malloc(bufsize);
    assert_non_null(buf);
    size_t n;
    while ((n = hx_events_read(r, buf, bufsize)) > 0)
        assert_int_equal(hx_buf_append(&out, buf, n), 0);
    free(buf);
    assert_int_equal(hx_events_pending(r), 0);
    return hx_buf_steal(&out, NULL);
}

/* Splits text into lines (each must end in '\n' and be a JSON object); returns the count. */
static size_t parse_lines(const char *text, json_t **objs, size_t max)
{
    size_t count = hxt_json_lines(text, objs, max);
    for (size_t i = 0; i < count; i++)
        assert_true(json_is_object(objs[i]));
    return count;
}

/* Reads everything pending for r (with a buffer of bufsize bytes) into n objects. */
static void read_lines(hx_events_reader *r, size_t bufsize, json_t **objs, size_t max, size_t n)
{
    AUTO_STR *text = read_all(r, bufsize);
    assert_int_equal(parse_lines(text, objs, max), n);
}

/* Asserts objs[0..n) have the seqs first, first + 1, ... */
static void assert_seqs(json_t **objs, size_t n, json_int_t first)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(hxt_int(objs[i], "seq"), first + (json_int_t)i);
}

/* Reads everything pending for r (with a buffer of bufsize bytes): n events of the seqs first,
 * first + 1, ... */
static void expect_seqs(hx_events_reader *r, size_t bufsize, size_t n, json_int_t first)
{
    json_t *o[16];
    read_lines(r, bufsize, o, 16, n);
    assert_seqs(o, n, first);
    hxt_json_free(o, n);
}

static void assert_time_format(json_t *o)
{
    const char *t = json_string_value(json_object_get(o, "time"));
    assert_non_null(t);
    /* 2026-12-01T23:14:47.123Z */
    assert_int_equal(strlen(t), 24);
    assert_int_equal(t[4], '-');
    assert_int_equal(t[10], 'T');
    assert_int_equal(t[19], '.');
    assert_int_equal(t[23], 'Z');
}

static void single_reader_in_order(void **state)
{
    (void)state;
    AUTO_EVENTS *ev = hx_events_new(16);
    AUTO_READER *r = hx_events_reader_new(ev);
    assert_int_equal(hx_events_pending(r), 0);
    hx_events_post_kv(ev, "vm.state", "node", "n1", "vm", "k00", "state", "running", NULL);
    hx_events_post_kv(ev, "vm.state", "node", "n1", "vm", "k01", "state", NULL, NULL);
    json_t *extra = json_pack("{s:s, s:i, s:s}", "type", "node.up", "seq", 99, "node", "n2");
    hx_events_post(ev, extra);
    assert_int_equal(hx_events_last_seq(ev), 3);
    assert_int_equal(hx_events_pending(r), 1);

    char *text = read_all(r, 4096);
    /* seq and time come first, serialized compactly. */
    assert_true(strncmp(text, "{\"seq\":1,\"time\":\"", 17) == 0);
    assert_non_null(strstr(text, "Z\",\"type\":\"vm.state\",\"node\":\"n1\",\"vm\":\"k00\","
                                 "\"state\":\"running\"}\n{\"seq\":2,"));
    json_t *o[8];
    assert_int_equal(parse_lines(text, o, 8), 3);
    assert_seqs(o, 3, 1);
    for (size_t i = 0; i < 3; i++)
        assert_time_format(o[i]);
    assert_true(json_is_null(json_object_get(o[1], "state")));
    assert_string_equal(hxt_str(o[2], "type"), "node.up");
    hxt_json_free(o, 3);
    free(text);
}

static void two_readers_independent(void **state)
{
    (void)state;
    AUTO_EVENTS *ev = hx_events_new(16);
    AUTO_READER *a = hx_events_reader_new(ev);
    hx_events_post_kv(ev, "e", "i", "1", NULL);
    AUTO_READER *b = hx_events_reader_new(ev);
    hx_events_post_kv(ev, "e", "i", "2", NULL);

    expect_seqs(a, 4096, 2, 1);
    /* a's reading moved only a. */
    assert_int_equal(hx_events_pending(b), 1);
    hx_events_post_kv(ev, "e", "i", "3", NULL);
    expect_seqs(b, 4096, 2, 2);
    expect_seqs(a, 4096, 1, 3);
}

static void late_reader_sees_no_old_events(void **state)
{
    (void)state;
    AUTO_EVENTS *ev = hx_events_new(16);
    for (int i = 0; i < 5; i++)
        hx_events_post_kv(ev, "old", NULL);
    AUTO_READER *r = hx_events_reader_new(ev);
    assert_int_equal(hx_events_pending(r), 0);
    char buf[256];
    assert_int_equal(hx_events_read(r, buf, sizeof(buf)), 0);
    hx_events_post_kv(ev, "new", NULL);
    json_t *o[2];
    read_lines(r, sizeof(buf), o, 2, 1);
    assert_int_equal(hxt_int(o[0], "seq"), 6);
    assert_string_equal(hxt_str(o[0], "type"), "new");
    hxt_json_free(o, 1);
}

static void overflow_record(void **state)
{
    (void)state;
    enum { CAP = 8, EXTRA = 5 };
    AUTO_EVENTS *ev = hx_events_new(CAP);
    AUTO_READER *r = hx_events_reader_new(ev);
    for (int i = 0; i < CAP + EXTRA; i++)
        hx_events_post_kv(ev, "e", NULL);
    json_t *o[CAP + 2];
    read_lines(r, 4096, o, CAP + 2, CAP + 1);
    assert_string_equal(hxt_str(o[0], "type"), "overflow");
    assert_int_equal(hxt_int(o[0], "lost"), EXTRA);
    assert_int_equal(hxt_int(o[0], "seq"), EXTRA);
    assert_time_format(o[0]);
    assert_seqs(o + 1, CAP, EXTRA + 1);
    hxt_json_free(o, CAP + 1);
    /* Caught up: no further overflow. */
    hx_events_post_kv(ev, "e", NULL);
    expect_seqs(r, 4096, 1, CAP + EXTRA + 1);
}

static char *long_value(size_t len)
{
    char *v = malloc(len + 1);
    assert_non_null(v);
    for (size_t i = 0; i < len; i++)
        v[i] = (char)('a' + i % 26);
    v[len] = '\0';
    return v;
}

static void partial_reads_reassemble(void **state)
{
    (void)state;
    AUTO_EVENTS *ev = hx_events_new(4);
    AUTO_READER *tiny = hx_events_reader_new(ev);
    AUTO_READER *big = hx_events_reader_new(ev);
    char *v = long_value(1000);
    hx_events_post_kv(ev, "long", "v", v, NULL);
    hx_events_post_kv(ev, "short", NULL);
    char *whole = read_all(big, 65536);
    char *pieces = read_all(tiny, 7);
    assert_string_equal(pieces, whole);
    free(pieces);

    /* A line longer than the buffer stays intact even when the ring drops it mid-delivery,
     * and the overflow record then comes as a line of its own. */
    AUTO_READER *r = hx_events_reader_new(ev);
    hx_events_post_kv(ev, "long", "v", v, NULL);
    char buf[16];
    hx_buf got = {0};
    size_t n = hx_events_read(r, buf, sizeof(buf));
    assert_int_equal(n, sizeof(buf));
    assert_int_equal(hx_buf_append(&got, buf, n), 0);
    for (int i = 0; i < 10; i++)
        hx_events_post_kv(ev, "short", NULL);
    char *rest = read_all(r, sizeof(buf));
    assert_int_equal(hx_buf_puts(&got, rest), 0);
    free(rest);
    json_t *o[8];
    assert_int_equal(parse_lines(got.data, o, 8), 1 + 1 + 4);
    assert_string_equal(hxt_str(o[0], "v"), v);
    assert_string_equal(hxt_str(o[1], "type"), "overflow");
    assert_int_equal(hxt_int(o[1], "lost"), 6);
    assert_int_equal(hxt_int(o[2], "seq"), 10);
    hxt_json_free(o, 1 + 1 + 4);
    hx_buf_clear(&got);
    free(whole);
    free(v);
}

static void whole_lines_when_they_fit(void **state)
{
    (void)state;
    AUTO_EVENTS *ev = hx_events_new(4);
    AUTO_READER *r = hx_events_reader_new(ev);
    hx_events_post_kv(ev, "a", NULL);
    hx_events_post_kv(ev, "b", NULL);
    char buf[256];
    size_t n = hx_events_read(r, buf, sizeof(buf));
    size_t line = (size_t)(memchr(buf, '\n', n) - (void *)buf) + 1;
    assert_int_equal(n, 2 * line); /* same length: seq 1 and 2, same time format */
    hx_events_post_kv(ev, "a", NULL);
    hx_events_post_kv(ev, "b", NULL);
    /* Room for one and a half lines: one whole line, then the other. */
    n = hx_events_read(r, buf, line + line / 2);
    assert_int_equal(n, line);
    assert_int_equal(buf[n - 1], '\n');
    n = hx_events_read(r, buf, line + line / 2);
    assert_int_equal(n, line);
    assert_int_equal(hx_events_read(r, buf, sizeof(buf)), 0);
}

struct wake_state {
    hx_events *ev;
    atomic_int calls;
};

static void wake_count(void *opaque)
{
    struct wake_state *w = opaque;
    /* Called outside the module's locks: taking them here must not deadlock. */
    (void)hx_events_last_seq(w->ev);
    atomic_fetch_add(&w->calls, 1);
}

static void wake_per_post(void **state)
{
    (void)state;
    struct wake_state w = {.ev = hx_events_new(4)};
    hx_events_set_wake(w.ev, wake_count, &w);
    for (int i = 0; i < 7; i++)
        hx_events_post_kv(w.ev, "e", NULL);
    assert_int_equal(atomic_load(&w.calls), 7);
    /* A dropped event (not an object) wakes no one. */
    hx_events_post(w.ev, json_array());
    assert_int_equal(atomic_load(&w.calls), 7);
    assert_int_equal(hx_events_last_seq(w.ev), 7);
    hx_events_set_wake(w.ev, NULL, NULL);
    hx_events_post_kv(w.ev, "e", NULL);
    assert_int_equal(atomic_load(&w.calls), 7);
    hx_events_free(w.ev);
}

enum { POSTERS = 4, PER_POSTER = 10000 };

struct concurrent {
    hx_events *ev;
    hx_events_reader *r;
    atomic_int posters_left;
    size_t lines;
    uint64_t lost;
    uint64_t overflows;
    size_t bad; /* problems seen by the reader thread; cmocka asserts only on the main thread */
};

static void *poster(void *opaque)
{
    struct concurrent *c = opaque;
    char id[16];
    snprintf(id, sizeof(id), "%p", (void *)pthread_self());
    for (int i = 0; i < PER_POSTER; i++)
        hx_events_post_kv(c->ev, "load", "thread", id, NULL);
    atomic_fetch_sub(&c->posters_left, 1);
    return NULL;
}

static void *reader(void *opaque)
{
    struct concurrent *c = opaque;
    char buf[4096];
    hx_buf acc = {0};
    uint64_t last = 0;
    for (;;) {
        int done = atomic_load(&c->posters_left) == 0;
        size_t n = hx_events_read(c->r, buf, sizeof(buf));
        if (n == 0) {
            if (done && !hx_events_pending(c->r))
                break;
            sched_yield();
            continue;
        }
        if (hx_buf_append(&acc, buf, n) < 0) {
            c->bad++;
            break;
        }
        size_t used = 0;
        for (char *nl; (nl = memchr(acc.data + used, '\n', acc.len - used));) {
            json_t *o = json_loadb(acc.data + used, (size_t)(nl - acc.data - used), 0, NULL);
            if (!o) {
                c->bad++;
                break;
            }
            uint64_t seq = (uint64_t)json_integer_value(json_object_get(o, "seq"));
            const char *type = json_string_value(json_object_get(o, "type"));
            if (type && strcmp(type, "overflow") == 0) {
                uint64_t lost = (uint64_t)json_integer_value(json_object_get(o, "lost"));
                c->bad += seq != last + lost;
                c->lost += lost;
                c->overflows++;
            } else {
                c->bad += seq != last + 1;
                c->lines++;
            }
            last = seq;
            json_decref(o);
            used = (size_t)(nl - acc.data) + 1;
        }
        memmove(acc.data, acc.data + used, acc.len - used);
        acc.len -= used;
    }
    c->bad += acc.len != 0;
    hx_buf_clear(&acc);
    return NULL;
}

static void run_concurrent(size_t capacity, struct concurrent *c)
{
    c->ev = hx_events_new(capacity);
    c->r = hx_events_reader_new(c->ev);
    atomic_store(&c->posters_left, POSTERS);
    pthread_t rt, pt[POSTERS];
    assert_int_equal(pthread_create(&rt, NULL, reader, c), 0);
    for (int i = 0; i < POSTERS; i++)
        assert_int_equal(pthread_create(&pt[i], NULL, poster, c), 0);
    for (int i = 0; i < POSTERS; i++)
        pthread_join(pt[i], NULL);
    pthread_join(rt, NULL);
    assert_int_equal(c->bad, 0);
    assert_int_equal(hx_events_last_seq(c->ev), POSTERS * PER_POSTER);
    assert_int_equal(c->lines + c->lost, POSTERS * PER_POSTER);
    hx_events_reader_free(c->r);
    hx_events_free(c->ev);
}

static void concurrent_no_loss_with_room(void **state)
{
    (void)state;
    struct concurrent c = {0};
    run_concurrent(POSTERS * PER_POSTER, &c);
    assert_int_equal(c.lost, 0);
    assert_int_equal(c.overflows, 0);
}

static void concurrent_small_ring_accounts_every_event(void **state)
{
    (void)state;
    struct concurrent c = {0};
    run_concurrent(64, &c);
    print_message("small ring: %zu read, %llu lost in %llu overflow records\n", c.lines,
                  (unsigned long long)c.lost, (unsigned long long)c.overflows);
}

HXT_MAIN(cmocka_unit_test(single_reader_in_order), cmocka_unit_test(two_readers_independent),
         cmocka_unit_test(late_reader_sees_no_old_events), cmocka_unit_test(overflow_record),
         cmocka_unit_test(partial_reads_reassemble), cmocka_unit_test(whole_lines_when_they_fit),
         cmocka_unit_test(wake_per_post), cmocka_unit_test(concurrent_no_loss_with_room),
         cmocka_unit_test(concurrent_small_ring_accounts_every_event))
