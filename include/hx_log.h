/* Logging with levels. Each error is reported once, where it happens, naming the object. */
#pragma once

typedef enum { HX_LOG_ERROR = 0, HX_LOG_WARN, HX_LOG_INFO, HX_LOG_DEBUG } hx_log_level;

void hx_log_set_level(hx_log_level level);
/* Parses "error", "warn", "info", "debug"; returns -1 for anything else. */
int hx_log_parse_level(const char *s);
hx_log_level hx_log_get_level(void);
void hx_log(hx_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define hx_err(...) hx_log(HX_LOG_ERROR, __VA_ARGS__)
#define hx_warn(...) hx_log(HX_LOG_WARN, __VA_ARGS__)
#define hx_info(...) hx_log(HX_LOG_INFO, __VA_ARGS__)
#define hx_debug(...)                                                                              \
    do {                                                                                           \
        if (hx_log_get_level() >= HX_LOG_DEBUG)                                                    \
            hx_log(HX_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)
