/* The daemon's configuration file: which nodes make up the cluster.
 *
 * Format (documented in docs/architecture.md, "Configuration"):
 *   # comment
 *   [node NAME]
 *   uri = LIBVIRT-URI
 * NAME is 1-63 characters of [A-Za-z0-9_.-], not starting with '.' or '-'.
 */
#pragma once

#include <stddef.h>

#define HX_NODE_NAME_MAX 64

typedef struct hx_conf_node {
    char name[HX_NODE_NAME_MAX];
    char *uri;
} hx_conf_node;

typedef struct hx_conf {
    hx_conf_node *nodes;
    size_t n_nodes;
} hx_conf;

/* Parses text. On error returns -1 and sets *err to a malloc'd sentence with the line number. */
int hx_conf_parse(const char *text, const char *origin, hx_conf *out, char **err);
int hx_conf_load(const char *path, hx_conf *out, char **err);
void hx_conf_clear(hx_conf *c);
/* 1 when name is a valid node name. */
int hx_conf_valid_node_name(const char *name);
