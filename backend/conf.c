/* Parser for the daemon's configuration file (see hx_conf.h for the format). */
#include "hx_conf.h"
#include "hx_util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static void hx_conf_fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

int hx_conf_valid_node_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= HX_NODE_NAME_MAX || name[0] == '.' || name[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("_.-", name[i]))
            return 0;
    return 1;
}

static char *hx_conf_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int hx_conf_fail(char **err, const char *origin, int line, const char *what)
{
    if (asprintf(err, "%s:%d: %s", origin, line, what) < 0)
        *err = NULL;
    return -1;
}

void hx_conf_clear(hx_conf *c)
{
    for (size_t i = 0; i < c->n_nodes; i++)
        free(c->nodes[i].uri);
    free(c->nodes);
    c->nodes = NULL;
    c->n_nodes = 0;
}

static void hx_conf_clearp(hx_conf *c)
{
    hx_conf_clear(c);
}

int hx_conf_parse(const char *text, const char *origin, hx_conf *out, char **err)
{
    __attribute__((cleanup(hx_conf_clearp))) hx_conf c = {0};
    hx_autofree char *copy = strdup(text);
    if (!copy)
        return hx_conf_fail(err, origin, 0, "out of memory");
    hx_conf_node *cur = NULL;
    int line = 0;
    char *save = NULL;
    /* strtok_r would merge empty lines and lose line numbers: walk by hand. */
    for (char *p = copy; p; p = save) {
        line++;
        char *nl = strchr(p, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        char *s = hx_conf_trim(p);
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end || hx_conf_trim(end + 1)[0] != '\0')
                return hx_conf_fail(err, origin, line, "section header must be '[node NAME]'");
            *end = '\0';
            char *inner = hx_conf_trim(s + 1);
            if (strncmp(inner, "node", 4) != 0 || !isspace((unsigned char)inner[4]))
                return hx_conf_fail(err, origin, line, "unknown section (only '[node NAME]')");
            char *name = hx_conf_trim(inner + 4);
            if (!hx_conf_valid_node_name(name))
                return hx_conf_fail(err, origin, line,
                                    "node name must be 1-63 characters of A-Z a-z 0-9 _ . -");
            for (size_t i = 0; i < c.n_nodes; i++)
                if (strcmp(c.nodes[i].name, name) == 0)
                    return hx_conf_fail(err, origin, line, "node is declared twice");
            hx_conf_node *n = realloc(c.nodes, (c.n_nodes + 1) * sizeof(*n));
            if (!n)
                return hx_conf_fail(err, origin, line, "out of memory");
            c.nodes = n;
            cur = &c.nodes[c.n_nodes++];
            memset(cur, 0, sizeof(*cur));
            hx_strlcpy(cur->name, name, sizeof(cur->name));
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq)
            return hx_conf_fail(err, origin, line, "expected 'key = value'");
        *eq = '\0';
        char *key = hx_conf_trim(s);
        char *val = hx_conf_trim(eq + 1);
        if (!cur)
            return hx_conf_fail(err, origin, line, "setting outside a [node NAME] section");
        if (strcmp(key, "uri") != 0)
            return hx_conf_fail(err, origin, line, "unknown key (a node has only 'uri')");
        if (*val == '\0')
            return hx_conf_fail(err, origin, line, "uri is empty");
        if (cur->uri)
            return hx_conf_fail(err, origin, line, "uri is set twice for this node");
        cur->uri = strdup(val);
        if (!cur->uri)
            return hx_conf_fail(err, origin, line, "out of memory");
    }
    for (size_t i = 0; i < c.n_nodes; i++)
        if (!c.nodes[i].uri) {
            hx_autofree char *msg = NULL;
            if (asprintf(&msg, "node %s has no uri", c.nodes[i].name) < 0)
                msg = NULL;
            return hx_conf_fail(err, origin, line, msg ? msg : "a node has no uri");
        }
    *out = c;
    c.nodes = NULL;
    c.n_nodes = 0;
    return 0;
}

int hx_conf_load(const char *path, hx_conf *out, char **err)
{
    __attribute__((cleanup(hx_conf_fclosep))) FILE *f = fopen(path, "re");
    if (!f) {
        if (asprintf(err, "cannot open configuration %s: %s", path, strerror(errno)) < 0)
            *err = NULL;
        return -1;
    }
    hx_autobuf hx_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b.len + n > (1u << 20)) {
            if (asprintf(err, "configuration %s is larger than 1 MiB", path) < 0)
                *err = NULL;
            return -1;
        }
        hx_buf_append(&b, chunk, n);
    }
    if (ferror(f)) {
        if (asprintf(err, "cannot read configuration %s: %s", path, strerror(errno)) < 0)
            *err = NULL;
        return -1;
    }
    return hx_conf_parse(b.data ? b.data : "", path, out, err);
}
