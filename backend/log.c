/* Logging to stderr with a level, a timestamp and the thread's name; shared string buffer helpers.
 */
#include "hx_log.h"
#include "hx_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static _Atomic int hx_log_level_cur = HX_LOG_INFO;
static const char *const hx_log_names[] = {"error", "warn", "info", "debug"};

void hx_log_set_level(hx_log_level level)
{
    atomic_store(&hx_log_level_cur, (int)level);
}

hx_log_level hx_log_get_level(void)
{
    return (hx_log_level)atomic_load(&hx_log_level_cur);
}

int hx_log_parse_level(const char *s)
{
    for (size_t i = 0; i < sizeof(hx_log_names) / sizeof(hx_log_names[0]); i++)
        if (strcmp(s, hx_log_names[i]) == 0)
            return (int)i;
    return -1;
}

void hx_log(hx_log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load(&hx_log_level_cur))
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char thread[16] = "";
    pthread_getname_np(pthread_self(), thread, sizeof(thread));
    /* One fprintf per line: stdio locks the stream, so lines from threads do not interleave. */
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%s] %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
            hx_log_names[level], thread, msg);
}

int hx_buf_append(hx_buf *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *n = realloc(b->data, cap);
        if (!n)
            return -1;
        b->data = n;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int hx_buf_puts(hx_buf *b, const char *s)
{
    return hx_buf_append(b, s, strlen(s));
}

int hx_buf_printf(hx_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    int r = hx_buf_append(b, s, (size_t)n);
    free(s);
    return r;
}

char *hx_buf_steal(hx_buf *b, size_t *len)
{
    if (!b->data && hx_buf_append(b, "", 0) < 0)
        return NULL;
    char *d = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

void hx_buf_clear(hx_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

long long hx_now_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

long long hx_now_real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int hx_strlcpy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);
    if (n >= size) {
        memcpy(dst, src, size - 1);
        dst[size - 1] = '\0';
        return -1;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

int hx_fail(char **msg, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (msg && vasprintf(msg, fmt, ap) < 0)
        *msg = NULL;
    va_end(ap);
    return err;
}
