/* A node's host facts (info.json), gathered once per connection on the node's thread. */
#include "node_priv.h"
#include "xmltext.h"
#include "hx_log.h"
#include "hx_stats.h"
#include "hx_util.h"

#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <stdio.h>
#include <string.h>

static void hx_json_set_str(json_t *o, const char *k, const char *v)
{
    json_object_set_new(o, k, v ? json_string(v) : json_null());
}

static json_t *hx_version_json(unsigned long v)
{
    char s[48];
    snprintf(s, sizeof(s), "%lu.%lu.%lu", v / 1000000, (v / 1000) % 1000, v % 1000);
    return json_string(s);
}

json_t *hx_node_gather_info(hx_node *n)
{
    virConnectPtr c = n->conn;
    json_t *info = json_object();
    hx_autofree char *host = virConnectGetHostname(c);
    hx_json_set_str(info, "hostname", host);
    hx_autofree char *caps = virConnectGetCapabilities(c);
    hx_autoxml xmlDocPtr doc =
        caps ? xmlReadMemory(caps, (int)strlen(caps), "capabilities.xml", NULL,
                             XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
             : NULL;
    hx_autofree char *host_uuid = doc ? hx_xml_text(doc, "/capabilities/host/uuid") : NULL;
    hx_autofree char *cpu_model = doc ? hx_xml_text(doc, "/capabilities/host/cpu/model") : NULL;
    hx_autofree char *cpu_vendor = doc ? hx_xml_text(doc, "/capabilities/host/cpu/vendor") : NULL;
    hx_json_set_str(info, "host_uuid", host_uuid);
    virNodeInfo ni;
    if (virNodeGetInfo(c, &ni) == 0) {
        json_t *cpu = json_object();
        json_object_set_new(cpu, "arch", json_string(ni.model));
        hx_json_set_str(cpu, "model", cpu_model);
        hx_json_set_str(cpu, "vendor", cpu_vendor);
        json_object_set_new(cpu, "cpus", json_integer(ni.cpus));
        json_object_set_new(cpu, "mhz", json_integer(ni.mhz));
        json_object_set_new(cpu, "numa_nodes", json_integer(ni.nodes));
        json_object_set_new(cpu, "sockets", json_integer(ni.sockets));
        json_object_set_new(cpu, "cores", json_integer(ni.cores));
        json_object_set_new(cpu, "threads", json_integer(ni.threads));
        json_object_set_new(info, "cpu", cpu);
        json_object_set_new(info, "memory_mib", json_integer((json_int_t)(ni.memory / 1024)));
    } else {
        hx_warn("node %s: cannot read node info: %s", n->name, virGetLastErrorMessage());
    }
    unsigned long lib = 0, hv = 0;
    if (virConnectGetLibVersion(c, &lib) == 0)
        json_object_set_new(info, "libvirt_version", hx_version_json(lib));
    const char *type = virConnectGetType(c);
    hx_json_set_str(info, "hypervisor", type);
    if (virConnectGetVersion(c, &hv) == 0)
        json_object_set_new(info, "hypervisor_version", hx_version_json(hv));
    char when[40];
    hx_stats_iso_time(hx_now_real_ns(), when, sizeof(when));
    json_object_set_new(info, "connected_at", json_string(when));
    return info;
}
