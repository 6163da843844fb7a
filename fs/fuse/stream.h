/* Stream files (file-semantics.md section 4) over the event ring: each open has its own cursor;
 * a read with nothing to return is parked (no worker thread waits) and answered by the stream
 * thread when an event arrives, or with EINTR when the reader is interrupted; poll works. */
#pragma once

#include "hx_events.h"

#include <fuse_lowlevel.h>

typedef struct hx_stream hx_stream;

/* Starts the thread that answers parked reads; wakes come from hx_events_set_wake. */
int hx_stream_start(hx_events *ev);
void hx_stream_stop(void);

hx_stream *hx_stream_open(hx_events *ev);
void hx_stream_close(hx_stream *s);
/* Replies now when data is pending, EAGAIN when nonblock, else parks req. */
void hx_stream_read(hx_stream *s, fuse_req_t req, size_t size, int nonblock);
void hx_stream_poll(hx_stream *s, fuse_req_t req, struct fuse_pollhandle *ph);
