/* Live counters of a VM and of a node's host (metrics.json), read from libvirt on the node's
 * thread when a reader asks (hx_node_call).
 */
#include "node_priv.h"
#include "hx_log.h"
#include "hx_stats.h"
#include "hx_util.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <string.h>

int hx_node_vm_stats(hx_node *n, hx_req *r)
{
    hx_autodom virDomainPtr dom = virDomainLookupByUUIDString(n->conn, r->uuid);
    if (!dom)
        return virGetLastErrorCode() == VIR_ERR_NO_DOMAIN ? -ENOENT : -EIO;
    virDomainPtr list[2] = {dom, NULL};
    virDomainStatsRecordPtr *recs = NULL;
    unsigned int what = VIR_DOMAIN_STATS_STATE | VIR_DOMAIN_STATS_CPU_TOTAL |
                        VIR_DOMAIN_STATS_BALLOON | VIR_DOMAIN_STATS_VCPU |
                        VIR_DOMAIN_STATS_INTERFACE | VIR_DOMAIN_STATS_BLOCK;
    long long wall = hx_now_real_ns();
    int nr = virDomainListGetStats(list, what, &recs, 0);
    if (nr < 1) {
        hx_err("node %s: cannot read statistics of domain %s: %s", n->name, r->name,
               virGetLastErrorMessage());
        if (recs)
            virDomainStatsRecordListFree(recs);
        return -EIO;
    }
    json_t *doc = hx_stats_group(recs[0]->params, recs[0]->nparams);
    virDomainStatsRecordListFree(recs);
    json_t *st = json_object_get(doc, "state");
    int state = (int)json_integer_value(json_object_get(st, "state"));
    int reason = (int)json_integer_value(json_object_get(st, "reason"));
    json_object_set_new(doc, "state", json_string(hx_stats_state_name(state, reason)));
    json_t *cpu = json_object_get(doc, "cpu");
    json_t *t = json_object_get(cpu, "time");
    double pct = -1;
    if (json_is_integer(t)) {
        unsigned long long now_cpu = (unsigned long long)json_integer_value(t);
        pthread_mutex_lock(&n->lock);
        ssize_t i = hx_node_find_uuid(n, r->uuid);
        if (i >= 0) {
            hx_dom *d = &n->doms[i];
            pct = hx_stats_cpu_percent(d->prev_cpu_ns, d->prev_wall_ns, now_cpu, wall);
            d->prev_cpu_ns = now_cpu;
            d->prev_wall_ns = wall;
        }
        pthread_mutex_unlock(&n->lock);
    }
    json_object_set_new(doc, "cpu_percent", pct < 0 ? json_null() : json_real(pct));
    char when[40];
    hx_stats_iso_time(wall, when, sizeof(when));
    json_object_set_new(doc, "sampled_at", json_string(when));
    r->out = doc;
    return 0;
}

/* One of libvirt's host statistics calls, for hx_node_read_stats. */
typedef int (*hx_host_stats_fn)(virConnectPtr c, void *params, int *n);

static int hx_host_cpu_stats(virConnectPtr c, void *params, int *n)
{
    return virNodeGetCPUStats(c, VIR_NODE_CPU_STATS_ALL_CPUS, params, n, 0);
}

static int hx_host_memory_stats(virConnectPtr c, void *params, int *n)
{
    return virNodeGetMemoryStats(c, VIR_NODE_MEMORY_STATS_ALL_CELLS, params, n, 0);
}

/* libvirt's two-step read of host statistics: how many there are (at least one when
 * need_some), then at most max of them into params. -1 when libvirt failed. */
static int hx_node_read_stats(virConnectPtr c, hx_host_stats_fn get, void *params, int max, int *n,
                              int need_some)
{
    *n = 0;
    if (get(c, NULL, n) < 0 || (need_some && *n <= 0))
        return -1;
    if (*n > max)
        *n = max;
    return get(c, params, n) < 0 ? -1 : 0;
}

int hx_node_node_stats(hx_node *n, hx_req *r)
{
    int np, nm;
    virNodeCPUStats cpu[16];
    virNodeMemoryStats mem[16];
    if (hx_node_read_stats(n->conn, hx_host_cpu_stats, cpu, 16, &np, 1) < 0 ||
        hx_node_read_stats(n->conn, hx_host_memory_stats, mem, 16, &nm, 0) < 0) {
        hx_err("node %s: cannot read host statistics: %s", n->name, virGetLastErrorMessage());
        return -EIO;
    }
    long long wall = hx_now_real_ns();
    json_t *doc = json_object();
    json_t *jc = json_object();
    unsigned long long busy = 0, total = 0;
    for (int i = 0; i < np; i++) {
        char key[VIR_NODE_CPU_STATS_FIELD_LENGTH + 4];
        snprintf(key, sizeof(key), "%.*s_ns", VIR_NODE_CPU_STATS_FIELD_LENGTH - 1, cpu[i].field);
        json_object_set_new(jc, key, json_integer((json_int_t)cpu[i].value));
        if (strcmp(cpu[i].field, VIR_NODE_CPU_STATS_IDLE) != 0 &&
            strcmp(cpu[i].field, VIR_NODE_CPU_STATS_IOWAIT) != 0)
            busy += cpu[i].value;
        total += cpu[i].value;
    }
    json_object_set_new(doc, "cpu", jc);
    pthread_mutex_lock(&n->lock);
    double pct = -1;
    if (n->prev_total_ns && total > n->prev_total_ns && busy >= n->prev_busy_ns)
        pct = (double)(busy - n->prev_busy_ns) * 100.0 / (double)(total - n->prev_total_ns);
    n->prev_busy_ns = busy;
    n->prev_total_ns = total;
    pthread_mutex_unlock(&n->lock);
    json_object_set_new(doc, "cpu_percent", pct < 0 ? json_null() : json_real(pct));
    json_t *jm = json_object();
    unsigned long long mtotal = 0, mfree = 0, mbuf = 0, mcache = 0;
    for (int i = 0; i < nm; i++) {
        char key[VIR_NODE_MEMORY_STATS_FIELD_LENGTH + 5];
        snprintf(key, sizeof(key), "%.*s_kib", VIR_NODE_MEMORY_STATS_FIELD_LENGTH - 1,
                 mem[i].field);
        json_object_set_new(jm, key, json_integer((json_int_t)mem[i].value));
        if (strcmp(mem[i].field, VIR_NODE_MEMORY_STATS_TOTAL) == 0)
            mtotal = mem[i].value;
        else if (strcmp(mem[i].field, VIR_NODE_MEMORY_STATS_FREE) == 0)
            mfree = mem[i].value;
        else if (strcmp(mem[i].field, VIR_NODE_MEMORY_STATS_BUFFERS) == 0)
            mbuf = mem[i].value;
        else if (strcmp(mem[i].field, VIR_NODE_MEMORY_STATS_CACHED) == 0)
            mcache = mem[i].value;
    }
    if (mtotal >= mfree + mbuf + mcache)
        json_object_set_new(jm, "used_kib",
                            json_integer((json_int_t)(mtotal - mfree - mbuf - mcache)));
    json_object_set_new(doc, "memory", jm);
    char when[40];
    hx_stats_iso_time(wall, when, sizeof(when));
    json_object_set_new(doc, "sampled_at", json_string(when));
    r->out = doc;
    return 0;
}
