/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Maps and load-time configuration shared by all sealtrail programs, and the
 * session filter every hook runs first.
 *
 * The filter is a bitmap indexed by tgid in .bss: a process outside any
 * session pays one helper call, a shift and a load, not a hash lookup. Only
 * tracked tgids (bit set) go on to the processes hash map for their session.
 */
#ifndef SEALTRAIL_BPF_MAPS_H
#define SEALTRAIL_BPF_MAPS_H

#include "sealtrail/events.h"

#define ST_BITMAP_WORDS (ST_PID_LIMIT / 64)

/* The collector's own tgid: never tracked, whatever its ancestry. */
const volatile __u32 self_tgid = 0;
/*
 * Terminal and pipe bytes wake the collector only once this much is
 * waiting in the ring buffer; it also drains on a timer. Waking it for
 * every 4 KiB chunk costs more context switches than the recording itself.
 */
const volatile __u64 wakeup_bytes = 0;

__u64 tracked_bits[ST_BITMAP_WORDS] SEC(".bss");
/* Kernel-made session keys count up from 1; adopted ones have bit 63 set. */
__u64 next_sess_key = 1;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 32 * 1024 * 1024); /* set by the collector */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32); /* tgid */
	__type(value, struct st_proc);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* sess_key */
	__type(value, struct st_session);
} sessions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32); /* tgid of an sshd listener */
	__type(value, __u8);
} listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* sshd, sshd-session, sshd-auth and transfer programs, old inodes after upgrades too */
	__uint(max_entries, 64);
	__type(key, struct st_exe_id);
	__type(value, __u8);
} sshd_exes SEC(".maps");

/* Pipes between sshd and commands, forwarded connections (st_relay). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* inode number, or struct file address (see st_relay) */
	__type(value, struct st_relay);
} relays SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(enum st_counter c, __u64 n)
{
	__u32 key = c;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);

	if (v)
		*v += n;
}

static __always_inline __u32 bit_word(__u32 tgid)
{
	return (tgid >> 6) & (ST_BITMAP_WORDS - 1);
}

static __always_inline bool is_tracked(__u32 tgid)
{
	return tracked_bits[bit_word(tgid)] & (1ULL << (tgid & 63));
}

static __always_inline void track(__u32 tgid, __u64 sess_key, __u32 flags)
{
	struct st_proc p = {.sess_key = sess_key, .flags = flags};

	if (tgid == self_tgid)
		return;
	if (bpf_map_update_elem(&procs, &tgid, &p, BPF_ANY)) {
		count(ST_CNT_PROC_FULL, 1);
		return;
	}
	__sync_fetch_and_or(&tracked_bits[bit_word(tgid)], 1ULL << (tgid & 63));
}

static __always_inline void untrack(__u32 tgid)
{
	__sync_fetch_and_and(&tracked_bits[bit_word(tgid)], ~(1ULL << (tgid & 63)));
	bpf_map_delete_elem(&procs, &tgid);
}

/* The entry of a tracked tgid, NULL if it is not (or no longer) tracked. */
static __always_inline struct st_proc *proc_of(__u32 tgid)
{
	if (!is_tracked(tgid))
		return NULL;
	return bpf_map_lookup_elem(&procs, &tgid);
}

/* Session key of a tracked tgid, 0 if it is not (or no longer) tracked. */
static __always_inline __u64 session_of(__u32 tgid)
{
	struct st_proc *p = proc_of(tgid);

	return p ? p->sess_key : 0;
}

static __always_inline void fill_hdr(struct st_event_hdr *h, __u32 type, __u32 size, __u64 sess_key)
{
	__u64 id = bpf_get_current_pid_tgid();

	h->type = type;
	h->size = size;
	h->ts_ns = bpf_ktime_get_boot_ns();
	h->sess_key = sess_key;
	h->pid = id >> 32;
	h->tid = (__u32)id;
}

/*
 * Count an event that could not be delivered, in total and against its
 * session, so the collector can write a gap record with the same numbers.
 */
static __always_inline void count_lost(__u64 sess_key, __u64 lost_bytes)
{
	struct st_session *s;

	count(ST_CNT_LOST_EVENTS, 1);
	count(ST_CNT_LOST_BYTES, lost_bytes);
	s = bpf_map_lookup_elem(&sessions, &sess_key);
	if (s) {
		__sync_fetch_and_add(&s->lost_events, 1);
		__sync_fetch_and_add(&s->lost_bytes, lost_bytes);
	}
}

/*
 * Submit an event; a full ring buffer makes it a counted loss. Bulk data
 * (lost_bytes > 0) waits for the collector's timer or for wakeup_bytes to
 * pile up; other events wake it if it is idle.
 */
static __always_inline void submit(void *ev, __u64 size, __u64 sess_key, __u64 lost_bytes)
{
	__u64 flags = 0;

	if (lost_bytes && wakeup_bytes)
		flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes
			    ? BPF_RB_FORCE_WAKEUP
			    : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&events, ev, size, flags) == 0)
		count(ST_CNT_EVENTS, 1);
	else
		count_lost(sess_key, lost_bytes);
}

#endif
