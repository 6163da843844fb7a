/* Small helpers shared by every module: scoped cleanup and string buffers. */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

/* Scoped cleanup: `hx_autofree char *s = ...;` frees s when it leaves scope. */
static inline void hx_freep(void *p)
{
    free(*(void **)p);
}
#define hx_autofree __attribute__((cleanup(hx_freep)))

/* Takes ownership out of a scoped variable: `return hx_steal(&s);` */
static inline void *hx_steal_ptr(void *pp)
{
    void **p = pp;
    void *v = *p;
    *p = NULL;
    return v;
}
#define hx_steal(pp) hx_steal_ptr(pp)

/* A growable byte buffer. data is NUL-terminated for convenience; len excludes the NUL. */
typedef struct hx_buf {
    char *data;
    size_t len;
    size_t cap;
} hx_buf;

int hx_buf_append(hx_buf *b, const void *data, size_t len);
int hx_buf_puts(hx_buf *b, const char *s);
int hx_buf_printf(hx_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Moves the content out (caller frees) and leaves b empty. */
char *hx_buf_steal(hx_buf *b, size_t *len);
void hx_buf_clear(hx_buf *b);
static inline void hx_buf_clearp(hx_buf *b)
{
    hx_buf_clear(b);
}
#define hx_autobuf __attribute__((cleanup(hx_buf_clearp)))

/* Monotonic and wall clocks in nanoseconds. */
long long hx_now_mono_ns(void);
long long hx_now_real_ns(void);

/* Bounded copy that always terminates; returns -1 when truncated. */
int hx_strlcpy(char *dst, const char *src, size_t size);

/* Sets *msg (when msg is not NULL) to a formatted sentence for the caller to report, and returns
 * err, a negative errno: `return hx_fail(msg, -EINVAL, "VM %s: ...", name);` */
int hx_fail(char **msg, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
