/* Turns libvirt's statistics (typed parameters) into JSON documents, unchanged in value. */
#pragma once

#include <jansson.h>
#include <libvirt/libvirt.h>

/* Groups bulk-stats fields ("cpu.time", "block.0.rd.bytes", "block.count") by their first
 * component: {"cpu": {"time": N}, "block": {"items": [{"rd_bytes": N}]}}. Indexed entries go to
 * "items" in index order, "count" is dropped (it is the length of items), and the rest of a
 * field's name is kept with '.' replaced by '_'. Values keep libvirt's units. */
json_t *hx_stats_group(const virTypedParameter *params, int n);

/* Name of a virDomainState: running, paused, shutoff, ... (see docs/tree.md). */
const char *hx_stats_state_name(int state, int reason);

/* Percent of one host CPU used between two samples of cumulative CPU time (ns), or -1 when the
 * samples cannot be compared (first sample, counter went back, no time passed). */
double hx_stats_cpu_percent(unsigned long long prev_cpu_ns, long long prev_wall_ns,
                            unsigned long long cpu_ns, long long wall_ns);

/* ISO 8601 UTC with milliseconds for a wall-clock time in ns, into buf (>= 32 bytes). */
void hx_stats_iso_time(long long wall_ns, char *buf, size_t size);
