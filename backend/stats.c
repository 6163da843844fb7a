/* Conversion of libvirt typed parameters to JSON and small derived figures. */
#include "hx_stats.h"
#include "hx_util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static json_t *hx_stats_value(const virTypedParameter *p)
{
    switch (p->type) {
    case VIR_TYPED_PARAM_INT:
        return json_integer(p->value.i);
    case VIR_TYPED_PARAM_UINT:
        return json_integer((json_int_t)p->value.ui);
    case VIR_TYPED_PARAM_LLONG:
        return json_integer(p->value.l);
    case VIR_TYPED_PARAM_ULLONG:
        /* Counters beyond 2^63 do not occur in practice; jansson integers are signed 64-bit. */
        return json_integer((json_int_t)p->value.ul);
    case VIR_TYPED_PARAM_DOUBLE:
        return json_real(p->value.d);
    case VIR_TYPED_PARAM_BOOLEAN:
        return json_boolean(p->value.b);
    case VIR_TYPED_PARAM_STRING:
        return json_string(p->value.s ? p->value.s : "");
    default:
        return NULL;
    }
}

static int hx_stats_is_index(const char *s, size_t len)
{
    if (len == 0 || len > 6)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* Copies name with '.' turned into '_' (JSON keys stay flat inside a group). */
static char *hx_stats_key(const char *name)
{
    char *k = strdup(name);
    if (k)
        for (char *p = k; *p; p++)
            if (*p == '.')
                *p = '_';
    return k;
}

json_t *hx_stats_group(const virTypedParameter *params, int n)
{
    json_t *root = json_object();
    if (!root)
        return NULL;
    for (int i = 0; i < n; i++) {
        const char *field = params[i].field;
        const char *dot = strchr(field, '.');
        if (!dot)
            continue;
        char group[VIR_TYPED_PARAM_FIELD_LENGTH];
        size_t glen = (size_t)(dot - field);
        memcpy(group, field, glen);
        group[glen] = '\0';
        json_t *g = json_object_get(root, group);
        if (!g) {
            g = json_object();
            json_object_set_new(root, group, g);
        }
        const char *rest = dot + 1;
        const char *dot2 = strchr(rest, '.');
        json_t *v = hx_stats_value(&params[i]);
        if (!v)
            continue;
        if (dot2 && hx_stats_is_index(rest, (size_t)(dot2 - rest))) {
            size_t idx = strtoul(rest, NULL, 10);
            json_t *items = json_object_get(g, "items");
            if (!items) {
                items = json_array();
                json_object_set_new(g, "items", items);
            }
            while (json_array_size(items) <= idx)
                json_array_append_new(items, json_object());
            hx_autofree char *key = hx_stats_key(dot2 + 1);
            json_object_set_new(json_array_get(items, idx), key, v);
        } else if (strcmp(rest, "count") == 0) {
            json_decref(v);
        } else {
            hx_autofree char *key = hx_stats_key(rest);
            json_object_set_new(g, key, v);
        }
    }
    return root;
}

const char *hx_stats_state_name(int state, int reason)
{
    switch (state) {
    case VIR_DOMAIN_RUNNING:
        /* An outgoing live migration leaves the source RUNNING with no distinct reason; the
         * migration job, not the state, says so. */
        return "running";
    case VIR_DOMAIN_BLOCKED:
        /* libvirt reports BLOCKED for a running guest waiting on a resource. */
        return "running";
    case VIR_DOMAIN_PAUSED:
        if (reason == VIR_DOMAIN_PAUSED_MIGRATION || reason == VIR_DOMAIN_PAUSED_POSTCOPY)
            return "migrating";
        return "paused";
    case VIR_DOMAIN_SHUTDOWN:
        return "stopping";
    case VIR_DOMAIN_SHUTOFF:
        return "shutoff";
    case VIR_DOMAIN_CRASHED:
        return "crashed";
    case VIR_DOMAIN_PMSUSPENDED:
        return "suspended";
    default:
        return "unknown";
    }
}

double hx_stats_cpu_percent(unsigned long long prev_cpu_ns, long long prev_wall_ns,
                            unsigned long long cpu_ns, long long wall_ns)
{
    if (prev_wall_ns <= 0 || wall_ns <= prev_wall_ns || cpu_ns < prev_cpu_ns)
        return -1;
    return (double)(cpu_ns - prev_cpu_ns) * 100.0 / (double)(wall_ns - prev_wall_ns);
}

void hx_stats_iso_time(long long wall_ns, char *buf, size_t size)
{
    time_t s = (time_t)(wall_ns / 1000000000LL);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (wall_ns / 1000000LL) % 1000);
}
