/* The clone request: its JSON fields, the name it reserves while its job runs (unique in the
 * cluster), a UUID for the new VM, and the request's lifetime. */
#include "auto.h"
#include "clone_priv.h"
#include "hx_domxml.h"
#include "hx_util.h"
#include "vmops_priv.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

/* ---- names being cloned to: unique in the cluster while their job runs ---- */

static pthread_mutex_t hx_clone_mu = PTHREAD_MUTEX_INITIALIZER;
static json_t *hx_clone_names; /* array of strings */

/* Where name is in the table, or -1; hx_clone_mu is held. */
static ssize_t hx_clone_name_find(const char *name)
{
    for (size_t i = 0; i < json_array_size(hx_clone_names); i++)
        if (strcmp(json_string_value(json_array_get(hx_clone_names, i)), name) == 0)
            return (ssize_t)i;
    return -1;
}

int hx_clone_name_reserve(const char *name)
{
    pthread_mutex_lock(&hx_clone_mu);
    if (!hx_clone_names)
        hx_clone_names = json_array();
    int r = hx_clone_name_find(name) >= 0 ? -EEXIST : 0;
    if (r == 0)
        json_array_append_new(hx_clone_names, json_string(name));
    pthread_mutex_unlock(&hx_clone_mu);
    return r;
}

int hx_clone_name_busy(const char *name)
{
    pthread_mutex_lock(&hx_clone_mu);
    int busy = hx_clone_name_find(name) >= 0;
    pthread_mutex_unlock(&hx_clone_mu);
    return busy;
}

static void hx_clone_name_release(const char *name)
{
    pthread_mutex_lock(&hx_clone_mu);
    ssize_t i = hx_clone_name_find(name);
    if (i >= 0)
        json_array_remove(hx_clone_names, (size_t)i);
    pthread_mutex_unlock(&hx_clone_mu);
}

void hx_clone_req_free(void *p)
{
    hx_clone_req *q = p;
    if (!q)
        return;
    hx_vm_unlock(q->uuid);
    hx_clone_name_release(q->name);
    free(q->xml);
    json_decref(q->disks);
    free(q);
}

int hx_clone_new_uuid(char out[HX_UUID_LEN])
{
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        return -EIO;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    snprintf(out, HX_UUID_LEN,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return 0;
}

int hx_clone_parse_req(hx_clone_req *q, const char *vm, const char *req, size_t len, char **msg)
{
    hx_autojson json_t *r = NULL;
    int e = hx_vm_json_object(req, len, "clone of VM", vm, "the request must be a JSON object", &r,
                              msg);
    if (e < 0)
        return e;
    const char *key;
    json_t *v;
    json_object_foreach (r, key, v) {
        static const char *const known[] = {"name", "node", "mode", "start", "keep_macs", NULL};
        int ok = 0;
        for (const char *const *k = known; *k; k++)
            ok |= strcmp(*k, key) == 0;
        if (!ok)
            return hx_fail(msg, -EINVAL,
                           "clone of VM %s: unknown field \"%s\" (name, node, mode, start, "
                           "keep_macs)",
                           vm, key);
    }
    json_t *name = json_object_get(r, "name"), *node = json_object_get(r, "node");
    json_t *mode = json_object_get(r, "mode");
    if (!json_is_string(name))
        return hx_fail(msg, -EINVAL, "clone of VM %s: field \"name\" must be a string", vm);
    hx_autofree char *err = NULL;
    if (hx_domxml_check_name(json_string_value(name), &err) < 0)
        return hx_fail(msg, -EINVAL, "clone of VM %s: field \"name\": %s", vm,
                       err ? err : "invalid");
    if (node && (!json_is_string(node) || strlen(json_string_value(node)) >= sizeof(q->dst_node)))
        return hx_fail(msg, -EINVAL, "clone of VM %s: field \"node\" must be a node name", vm);
    if (mode && (!json_is_string(mode) || (strcmp(json_string_value(mode), "full") != 0 &&
                                           strcmp(json_string_value(mode), "linked") != 0)))
        return hx_fail(msg, -EINVAL,
                       "clone of VM %s: field \"mode\" must be \"full\" or \"linked\"", vm);
    static const char *const bools[] = {"start", "keep_macs"};
    for (size_t i = 0; i < 2; i++) {
        json_t *b = json_object_get(r, bools[i]);
        if (b && !json_is_boolean(b))
            return hx_fail(msg, -EINVAL, "clone of VM %s: field \"%s\" must be true or false", vm,
                           bools[i]);
    }
    hx_strlcpy(q->name, json_string_value(name), sizeof(q->name));
    if (node)
        hx_strlcpy(q->dst_node, json_string_value(node), sizeof(q->dst_node));
    q->linked = mode && strcmp(json_string_value(mode), "linked") == 0;
    q->start = json_is_true(json_object_get(r, "start"));
    q->keep_macs = json_is_true(json_object_get(r, "keep_macs"));
    return 0;
}
