/* Shared only between the files of the node module (backend/node*.c): a queued request, and
 * the steps each file does for the others. Which thread may call what is said per function;
 * "node thread" means the node's own thread, the only one that uses n->conn unlocked. */
#pragma once

#include "auto.h"
#include "node.h"

#include <jansson.h>
#include <pthread.h>

struct hx_req {
    struct hx_req *next;
    hx_req_type type;
    char uuid[HX_UUID_LEN];
    char name[HX_VM_NAME_MAX];
    /* For calls: the caller waits on done_cond; refs is 2 while both sides hold it. */
    int is_call;
    int refs;
    int done;
    int rc;
    json_t *out;
    pthread_cond_t done_cond;
    /* HX_REQ_EXEC */
    hx_node_fn fn;
    json_t *in;
};

/* ---- node.c: the node object ---- */

/* Initialises c to time its waits by CLOCK_MONOTONIC (hx_node_deadline). */
void hx_node_cond_init(pthread_cond_t *c);
/* Sets status and reason; logs and emits only on a real change. Lock not held. */
void hx_node_set_status(hx_node *n, hx_node_status st, const char *why);
int hx_node_stopping(hx_node *n);

/* ---- node_thread.c: the thread's loop ---- */

void *hx_node_main(void *arg);

/* ---- node_conn.c: the connection (node thread) ---- */

/* Connects, subscribes, loads the node and goes online; -1 when libvirt refused (offline). */
int hx_node_connect(hx_node *n);
/* libvirt closed the connection for reason: the node goes offline and forgets its VMs. */
void hx_node_lost(hx_node *n, int reason);
/* At the thread's end: disconnects, or, when the process exits, leaves the connection to the
 * process's end (returns 1 then, 0 otherwise). */
int hx_node_finish_conn(hx_node *n);

/* ---- node_calls.c: the request queue ---- */

/* Answers r: frees it when nobody waits, or wakes its caller. */
void hx_req_finish(hx_node *n, hx_req *r, int rc);

/* ---- node_cache.c: the VM cache ---- */

/* Index of the VM with that UUID in n->doms, or -1. Lock held. */
ssize_t hx_node_find_uuid(hx_node *n, const char *uuid);
/* Stores d (taking its strings) in the cache; emits a change when something differs. */
void hx_node_store_dom(hx_node *n, hx_dom *d, uint64_t read_stamp);
void hx_node_forget_uuid(hx_node *n, const char *uuid);

/* ---- node_refresh.c: reading domains from libvirt (node thread) ---- */

void hx_node_refresh(hx_node *n, const char *uuid);
void hx_node_refresh_all(hx_node *n);

/* ---- node_info.c: host facts (node thread) ---- */

/* Host facts for info.json, gathered once per connection. */
json_t *hx_node_gather_info(hx_node *n);

/* ---- node_stats.c: live counters (node thread) ---- */

int hx_node_vm_stats(hx_node *n, hx_req *r);
int hx_node_node_stats(hx_node *n, hx_req *r);
