/*
 * Loading and attaching the BPF programs, the kernel maps the collector
 * writes (listeners, sessions, tracked processes) and the ring buffer.
 */
#ifndef SEALTRAIL_CAPTURE_H
#define SEALTRAIL_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sealtrail/events.h"

struct sealtrail_bpf;
struct ring_buffer;

typedef int (*capture_event_fn)(void *arg, void *data, size_t size);

struct capture {
	struct sealtrail_bpf *skel;
	struct ring_buffer *rb;
	unsigned nprogs;
	/* the ring's positions, read-only, to see how full it gets */
	const volatile uint64_t *consumer_pos;
	const volatile uint64_t *producer_pos;
	uint64_t ring_bytes;
	uint64_t last_used; /* bytes waiting when the last drain began */
	uint64_t peak_used; /* most bytes waiting when a drain began */
	uint64_t longest_drain_ns;
};

/* Mount tracefs and bpffs if they are missing (fresh machines lack them). */
int capture_mount_fs(void);
int capture_open(struct capture *c, uint32_t ringbuf_bytes, capture_event_fn fn, void *arg);
void capture_close(struct capture *c);
/*
 * Wait up to timeout_ms for a wakeup, then drain the ring buffer: terminal
 * bytes do not wake the collector until 1/8 of the ring is used, so call
 * this with a short timeout (that is the recording's latency).
 */
int capture_poll(struct capture *c, int timeout_ms);
/* Bytes waiting in the ring buffer now (0 if its positions are not mapped). */
uint64_t capture_ring_used(const struct capture *c);

int capture_add_listener(struct capture *c, uint32_t tgid);
int capture_remove_listener(struct capture *c, uint32_t tgid);
int capture_add_session(struct capture *c, uint64_t key, uint32_t leader);
int capture_get_session(struct capture *c, uint64_t key, struct st_session *out);
void capture_delete_session(struct capture *c, uint64_t key);
int capture_track(struct capture *c, uint32_t tgid, uint64_t key, uint32_t flags);
/*
 * Tell the BPF side what an executable is: ST_EXE_SSHD (its pipes and
 * sockets are relays) or ST_EXE_TRANSFER (its files are summarised).
 */
int capture_add_exe(struct capture *c, const char *path, uint8_t kind);
/*
 * A pipe of a session's program that the kernel did not see being set up
 * (the session was adopted): stream ST_PIPE_*, flags ST_RELAY_*.
 */
int capture_add_relay(struct capture *c, uint64_t ino, uint64_t key, uint32_t stream,
		      uint32_t flags);
/* Byte counters of a forwarded connection still open (conn_id from the kernel). */
int capture_get_relay(struct capture *c, uint64_t conn_id, struct st_relay *out);
bool capture_is_tracked(struct capture *c, uint32_t tgid);
void capture_counters(struct capture *c, uint64_t out[ST_CNT_MAX]);
/* Names of the attached programs, for status; i < nprogs. */
const char *capture_prog_name(struct capture *c, unsigned i);

#endif
