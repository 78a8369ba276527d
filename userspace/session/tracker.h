/*
 * Per-session state in the collector: turns kernel events into store
 * records, attributes sessions to a person, adopts sessions from /proc,
 * and turns kernel loss counters into gap records.
 */
#ifndef SEALTRAIL_TRACKER_H
#define SEALTRAIL_TRACKER_H

#include <stdbool.h>
#include <stdint.h>

#include "capture/capture.h"
#include "session/hasher.h"
#include "common/util.h"
#include "store/store.h"

#define TRACKER_MAX_SSHD 8
#define TRACKER_MAX_LISTENERS 64
#define TRACKER_MAX_SUBSYSTEMS 8
#define TRACKER_DEFAULT_CAP (8ull << 20)

struct session;

struct tracker {
	struct store *store;
	struct capture *cap;
	char host[256];
	char boot_id[64];
	const char *sshd_paths[TRACKER_MAX_SSHD];
	unsigned nsshd;
	const char *subsystems[TRACKER_MAX_SUBSYSTEMS]; /* programs that make a login "subsystem" */
	const char *transfers[TRACKER_MAX_SUBSYSTEMS]; /* programs summarised per file */
	unsigned ntransfers;
	unsigned nsubsystems;
	uint64_t capture_cap; /* pipe bytes stored per session; 0 = all */
	uint64_t end_hash_wait_ns; /* END_HASH_WAIT_NS: how long an end waits for file hashes */
	struct hasher hasher; /* SHA-256 of transferred files, off the event loop */
	uint32_t privsep_uid; /* sshd's pre-auth user, never a person */
	uint32_t listeners[TRACKER_MAX_LISTENERS];
	unsigned nlisteners;
	struct session *sessions; /* list, newest first */
	unsigned live;
	uint64_t next_adopt_key;
	int64_t wall_offset_ns; /* CLOCK_REALTIME - CLOCK_BOOTTIME */
	struct buf rec; /* scratch for building records */
	unsigned open_chunks; /* sessions with stream bytes not yet in a record */
	unsigned ends_pending; /* sessions ended since tracker_settle() */
	/* counters for status */
	uint64_t records;
	uint64_t sessions_total;
	uint64_t bad_events;
	uint64_t preauth_dropped;
};

int tracker_init(struct tracker *t, struct store *store, struct capture *cap);
void tracker_fini(struct tracker *t);
/* Ring-buffer callback. */
int tracker_on_event(void *arg, void *data, size_t size);
/*
 * Store the stream bytes sessions have gathered for CHUNK_HOLD_NS (after
 * each ring-buffer drain), or all of them (at shutdown).
 */
int tracker_flush_chunks(struct tracker *t, bool all);
/* Close the signing epoch (which syncs the store) if sessions have ended. */
int tracker_settle(struct tracker *t);
/* Find sshd listeners, adopt their untracked connection handlers. */
int tracker_scan(struct tracker *t);
/* Gap records for kernel losses; end sessions whose leader is gone. */
int tracker_tick(struct tracker *t);
/* Record that the collector starts or stops. */
int tracker_daemon_record(struct tracker *t, const char *event);
/* Write file records whose hashes are done (wait for all if drain). */
int tracker_files_done(struct tracker *t, bool drain);
/*
 * End the sessions a previous run left open (their processes that still
 * live are adopted afresh); if that run did not stop cleanly, each first
 * gets a gap record for the bytes it had not written.
 */
int tracker_close_stale(struct tracker *t, bool unclean);
/*
 * Did the previous sealtraild on this host stop without its "stop" record
 * (kill -9, a crash, a power cut)? Ask before writing our own "start".
 */
bool tracker_previous_run_unclean(struct tracker *t);

#endif
