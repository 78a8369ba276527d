/*
 * The writer's backlog: records handed to store_append() but not sealed
 * yet, in order, in memory outside the heap (a memfd).
 *
 * Sealing costs ~1 ns of CPU per byte of terminal output (zstd, mostly).
 * On a small bastion that CPU is taken from the session being recorded:
 * one `cat` of a big file keeps two CPUs ~87% busy, and any work beside it
 * slows it down. During such a burst the daemon queues records here
 * (3 copies per byte, no compression) and seals them once the burst is
 * over, or as soon as the backlog is older than BACKLOG_MAX_AGE_NS or
 * fuller than its limit. Records keep their order: once anything waits
 * here, every later record queues behind it.
 *
 * A clean stop seals the backlog first; a crash loses it (the next start
 * writes the usual "did not stop cleanly" gap for every open session;
 * session starts are never queued, so that every session is known).
 * README.md, "Durability", says what that costs.
 */
#ifndef SEALTRAIL_BACKLOG_H
#define SEALTRAIL_BACKLOG_H

#include <stdbool.h>
#include <stdint.h>

#include "common/util.h"

/* a queued record is sealed at the latest this long after it was queued */
#define BACKLOG_MAX_AGE_NS (10ull * 1000000000ull)
/* at most this much, and at most 1/16 of the machine's memory */
#define BACKLOG_DEFAULT_MAX (512ull << 20)

struct backlog {
	int fd; /* memfd (when max is not 0) */
	uint64_t max; /* bytes queued at most, framing included; 0: no backlog */
	uint64_t head, tail; /* next record to take out, where the next goes */
	uint64_t punched; /* memory before this offset is given back */
	uint64_t records; /* records queued now */
	uint64_t oldest_ns; /* CLOCK_MONOTONIC when the oldest one was queued */
	/* totals since open, for status.json */
	uint64_t queued_records, peak_bytes;
	uint64_t dropped; /* records that did not read back (a bug: logged) */
};

/*
 * The default limit for this machine: BACKLOG_DEFAULT_MAX, 1/16 of RAM or
 * 1/4 of cgroup_limit (the collector's cgroup's memory limit, 0 for none:
 * the memfd is charged to it), whichever is lowest.
 */
uint64_t backlog_default_max(uint64_t cgroup_limit);
/* max 0: no backlog. -errno if the memfd cannot be made. */
int backlog_open(struct backlog *b, uint64_t max);
void backlog_close(struct backlog *b);
static inline uint64_t backlog_bytes(const struct backlog *b)
{
	return b->tail - b->head;
}
/* Can len more bytes of record wait here? */
bool backlog_fits(const struct backlog *b, size_t len);
/* Queue one record (unfinished: no seq, no CRC). */
int backlog_put(struct backlog *b, const void *rec, size_t len);
/* Take the oldest record out into out: 1, 0 if none, -errno. */
int backlog_take(struct backlog *b, struct buf *out);

#endif
