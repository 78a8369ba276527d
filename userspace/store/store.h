/*
 * The embedded store: a directory with an append-only record log split in
 * segments, plus a SQLite index derived from it.
 *
 *   DIR/store-id                 16 random bytes (hex), made on creation
 *   DIR/segments/seg-NNNNNNNN.log header (128 or 256 bytes), then sealed records
 *   DIR/index.sqlite             derived data, `sealtrail reindex` rebuilds it;
 *                                its pages encrypted under keys/kek (cryptvfs.h)
 *   DIR/LOCK                     flock()ed by the one writer
 *   DIR/status.json              written by a running sealtraild
 *
 * Durability: appends are buffered in memory and written and fdatasync()ed
 * by store_sync(), which the daemon calls every 200 ms, at every session
 * end and at shutdown (stream bytes wait up to 1 s before that, to be
 * coalesced into records); the index commits in the same call (WAL,
 * synchronous=NORMAL). During a burst records wait in the backlog
 * (backlog.h), up to 10 s, before they are sealed. A crash loses at most
 * the last ~1.5 s, and during a burst what waits there; a torn record
 * at the tail is kept on disk untouched, reported as a gap, and appending
 * continues in a new segment.
 */
#ifndef SEALTRAIL_STORE_H
#define SEALTRAIL_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/util.h"
#include "store/auditor.h"
#include "store/backlog.h"
#include "store/index.h"
#include "store/record.h"
#include "store/seal.h"
#include "store/sinks.h"

#define STORE_DEFAULT_DIR "/var/lib/sealtrail"
/*
 * Segment headers (docs/STORE.md). v2: 128 bytes, the data key wrapped
 * under keys/kek. v3: the same 128 bytes (magic and version aside), then
 * the auditor's public key and the data key wrapped to it (auditor.h).
 * Writers write v3 exactly when the store has an auditor key.
 */
#define SEG_MAGIC "STRLSEG2"
#define SEG_VERSION 2
#define SEG_HEADER_LEN 128
#define SEG_MAGIC_V3 "STRLSEG3"
#define SEG_VERSION_V3 3
#define SEG_HEADER_V3_LEN 256
#define SEG_HEADER_MAX SEG_HEADER_V3_LEN
/* bytes of the header the wrapped segment key is bound to (its AAD) */
#define SEG_HEADER_AAD 48
/* v3: the auditor's X25519 public key, then the wrap (AUDITOR_WRAP_LEN), then zero */
#define SEG_AUDITOR_PK 128
#define SEG_AUDITOR_WRAP 160
#define SEG_ROTATE_BYTES (64ull << 20)

enum store_flags {
	STORE_WRITE = 1, /* take the writer lock, open the index for writing */
	STORE_CREATE = 2, /* create the directory and store id if missing */
	/*
	 * Readers: index the segments afresh into a temporary index in memory
	 * instead of using DIR/index.sqlite (a copy's index may be absent or
	 * stale).
	 */
	STORE_FRESH_INDEX = 4,
	/*
	 * With STORE_WRITE: the writer lock and the index for writing, but no
	 * new segment, no recovery records (sealtrail reindex).
	 */
	STORE_INDEX_ONLY = 8,
};

/* Whose key the writer wraps each new segment's data key to, besides the KEK. */
enum store_auditor {
	STORE_AUDITOR_KEEP, /* the key the newest segment is wrapped to, if any */
	STORE_AUDITOR_SET, /* auditor_pk; refused if the store is pinned to another */
	STORE_AUDITOR_NONE, /* none; refused if the store is pinned to one */
};

struct store_options {
	enum store_auditor auditor;
	const uint8_t *auditor_pk; /* STORE_AUDITOR_SET: X25519 public key */
	bool auditor_change; /* SET or NONE may replace or drop the pinned key */
	/* readers: open segments with the auditor's private key, not keys/kek */
	const uint8_t *auditor_sk;
	/*
	 * Writers: called once the store's LOCK is held, before the log is
	 * read back and the index caught up or rebuilt (minutes, for a big
	 * store whose index is from another schema).
	 */
	void (*locked)(void *arg);
	void *locked_arg;
};

struct store {
	char *dir;
	int flags;
	int lock_fd;
	uint8_t id[ST_ID_LEN];
	struct index index;
	/* writer state */
	uint64_t next_seq;
	uint32_t seg_no;
	int seg_fd;
	uint64_t seg_size; /* bytes in the segment, buffered ones included */
	uint64_t last_off; /* where the last envelope starts in it */
	uint64_t resumed_seq; /* open: the last seq of DIR/resume it went on from, 0 if none */
	struct buf wbuf; /* records not yet written to seg_fd */
	bool unsynced; /* seg_fd has bytes written since its last fdatasync */
	uint64_t seg_rotate_bytes;
	/* sealing (see docs/SEALING.md) */
	bool have_kek;
	uint8_t kek[SEAL_KEY_LEN]; /* DIR/keys/kek: wraps every segment's key */
	uint8_t boot_id[16];
	uint8_t dk[SEAL_KEY_LEN]; /* key of the segment being written */
	uint8_t prev_hash[SEAL_HASH_LEN];
	struct merkle tree; /* over every envelope of the store */
	uint32_t epoch; /* signing epoch being written */
	uint8_t epoch_sk[SEAL_KEY_LEN];
	uint8_t epoch_pk[SEAL_PK_LEN];
	uint64_t epoch_records; /* envelopes sealed in this epoch */
	uint64_t epoch_start_ns; /* CLOCK_MONOTONIC when it began */
	struct checkpoint_sinks *sinks; /* where checkpoints also go (optional) */
	struct buf sbuf;
	/* the auditor's key (auditor.h, docs/SEALING.md) */
	bool auditor; /* writer: wrap every new segment's key to auditor_pk too */
	uint8_t auditor_pk[AUDITOR_KEY_LEN]; /* writer: the auditor's; reader: its own */
	bool have_auditor_sk; /* reader: segments open with the auditor's key only */
	uint8_t auditor_sk[AUDITOR_KEY_LEN];
	struct store_key_cache *key_cache; /* reader: the last unwrapped auditor wrap */
	/* writer: records waiting to be sealed during a burst (backlog.h) */
	struct backlog backlog;
	bool defer; /* queue what store_append() gets, do not seal it yet */
	uint64_t appended_bytes; /* record bytes store_append() got, in total */
	uint64_t paced_bytes; /* appended_bytes at the last store_pace() */
	struct buf dbuf; /* a record taken out of the backlog */
	uint64_t index_errors; /* records stored that the index could not take */
};

int store_open(struct store *st, const char *dir, int flags);
/* store_open with options (NULL: the defaults, i.e. zeroed options). */
int store_open_with(struct store *st, const char *dir, int flags, const struct store_options *o);
/*
 * Check a segment header against the store id and segment number; avail
 * is how many bytes of it there are. Sets its length (v2 or v3).
 */
int seg_header_check(const uint8_t *h, size_t avail, const uint8_t id[ST_ID_LEN], uint32_t seg_no,
		     uint32_t *len);
void store_close(struct store *st);
/*
 * Finish rec (sequence number, CRC), seal it, queue it for writing and
 * index it; or, during a burst, put it in the backlog to do that later.
 */
int store_append(struct store *st, struct buf *rec);
/*
 * The backlog (backlog.h): max bytes at most, 0 for none. Writers only;
 * without it every record is sealed in store_append().
 */
int store_backlog_open(struct store *st, uint64_t max);
/* Seal what waits in it and close it: from here on every record is sealed at once. */
void store_backlog_close(struct store *st);
/* Minimum bytes a tick's appends make a burst that the backlog takes. */
#define STORE_BURST_BYTES (4u << 20)
/*
 * Minimum bytes a tick's appends keep a burst going: output near
 * STORE_BURST_BYTES a tick would otherwise turn deferring on and off
 * from tick to tick.
 */
#define STORE_BURST_GOES_ON_BYTES (1u << 20)
/*
 * Called once a tick (the daemon's 200 ms): a tick that brought
 * STORE_BURST_BYTES or more turns deferring on; while deferring, a tick
 * below STORE_BURST_GOES_ON_BYTES turns it off, and so does a backlog
 * older than BACKLOG_MAX_AGE_NS.
 */
void store_pace(struct store *st, uint64_t now_ns);
/*
 * Seal rec at once, ahead of the backlog: for records in no session
 * (access records), whose order among the others does not matter.
 */
int store_append_now(struct store *st, struct buf *rec);
/*
 * A mark of what the backlog has queued so far; store_backlog_sealed()
 * tells when all of that is sealed, whatever was queued after it.
 */
static inline uint64_t store_backlog_mark(const struct store *st)
{
	return st->backlog.queued_records;
}
static inline bool store_backlog_sealed(const struct store *st, uint64_t mark)
{
	return st->backlog.queued_records - st->backlog.records >= mark;
}
/* Seal up to budget bytes of the backlog's oldest records (at least one). */
int store_drain(struct store *st, uint64_t budget);
/* Write queued records, fdatasync them, commit the index. */
int store_sync(struct store *st);

/* Path of segment n (caller frees). */
char *store_segment_path(const struct store *st, uint32_t seg_no);
/* Read the record at (seg_no, off) into out and parse it. */
int store_read_at(const struct store *st, uint32_t seg_no, uint64_t off, struct buf *out,
		  struct record *rec);

/*
 * Visit every record of every segment in order. A damaged segment is
 * reported through on_damage (file, offset, reason) and the scan goes on
 * with the next segment. Stops early if fn returns non-zero.
 */
struct store_visitor {
	int (*record)(void *arg, const struct record *rec, uint32_t seg_no, uint64_t off);
	void (*damage)(void *arg, const char *file, uint64_t off, uint64_t bytes, const char *why);
	void *arg;
	uint32_t from_seg; /* first segment to visit (0 = all) */
	uint64_t from_off; /* in from_seg, the first envelope's offset (0 = after the header) */
	/* optional: every envelope as stored, before it is opened */
	int (*envelope)(void *arg, const struct seal_envelope *env, uint32_t seg_no, uint64_t off);
	uint64_t min_seq; /* records below this are not opened (0 = all) */
	/* optional: each segment's header (checked: its length is at byte 12) */
	int (*segment)(void *arg, const uint8_t *header, uint32_t seg_no);
};
int store_scan(const struct store *st, const struct store_visitor *v);

/*
 * Close the signing epoch: sign the tree so far and the next epoch's key
 * with this epoch's key, then erase it; write the checkpoint. Empty epochs
 * are closed too. reason goes into the epoch record.
 */
int store_seal_epoch(struct store *st, const char *reason);
/* Append a record that must be readable without keys (seal records). */
int store_append_plain(struct store *st, struct buf *rec);
/* Keys (sealing.c): load DIR/keys, creating them with a new store. */
int store_load_keys(struct store *st, bool create);
/* The writer's epoch key; next_epoch/next_pk: what the log's last seal says. */
int store_load_epoch(struct store *st, uint32_t next_epoch, const uint8_t next_pk[SEAL_PK_LEN]);
/*
 * DIR/resume: where the writer's chain and tree stood after the last
 * epoch it closed (sealing.c), so that the next writer continues from
 * there instead of reading and hashing the whole log. Advisory: open
 * checks it against the log's envelope at that point and ignores it
 * otherwise. store_resume_parse() checks a file's bytes (store id, layout,
 * checksum); 0 or a reason in why.
 */
struct store_resume {
	uint32_t seg_no; /* segment of the last envelope */
	uint64_t last_off, seg_end; /* its first byte and the byte after it */
	uint64_t last_seq;
	uint8_t prev_hash[SEAL_HASH_LEN]; /* its leaf hash: the chain so far */
	struct merkle tree; /* over every envelope before it: the tree it signs */
	uint32_t next_epoch; /* the epoch after the last epoch record ... */
	uint8_t next_pk[SEAL_PK_LEN]; /* ... and its public key */
};
#define STORE_RESUME_LEN                                                                           \
	(24 + ST_ID_LEN + 4 + 8 * 3 + SEAL_HASH_LEN + 4 + SEAL_PK_LEN + 8 + 64 * SEAL_HASH_LEN +   \
	 SEAL_HASH_LEN)
int store_resume_parse(const uint8_t *p, size_t len, const uint8_t id[ST_ID_LEN],
		       struct store_resume *r, char why[128]);
/* After the epoch record that signed signed_tree went to disk. */
int store_save_resume(const struct store *st, const struct merkle *signed_tree, uint32_t next_epoch,
		      const uint8_t next_pk[SEAL_PK_LEN]);
/* 0 and r filled, or -ENOENT (none), or another error logged (ignored by the caller) */
int store_load_resume(const struct store *st, struct store_resume *r);
/* Remove DIR/resume (durably): the writer goes on another way. */
void store_drop_resume(const struct store *st);

/* Path of the checkpoint file sealtraild keeps (caller frees). */
char *store_checkpoint_path(const struct store *st);

/* Highest segment number in store_dir/segments, 0 if none. */
uint32_t store_last_segment(const char *store_dir);

/* What `sealtrail keys` shows of a store's keys: public halves and file modes only. */
struct keys_file {
	const char *name; /* under DIR */
	bool exists;
	uint32_t mode; /* st_mode & 07777 */
	uint32_t uid;
};
struct keys_report {
	uint8_t id[ST_ID_LEN];
	bool have_first;
	uint8_t first_pk[SEAL_PK_LEN]; /* keys/first.pub: what the auditor pins */
	bool have_epoch;
	uint32_t epoch; /* keys/epoch: the epoch being signed, and its public key */
	uint8_t epoch_pk[SEAL_PK_LEN];
	bool have_checkpoint; /* checkpoints/latest */
	uint32_t checkpoint_epoch;
	uint64_t checkpoint_size;
	uint32_t newest_segment; /* 0: none */
	bool segment_auditor; /* the newest segment's key is wrapped to an auditor key too */
	uint8_t auditor_pk[AUDITOR_KEY_LEN];
	struct keys_file files[4]; /* keys/, keys/kek, keys/epoch, keys/first.pub */
};
/*
 * Read DIR's key state without opening the store (root: keys/epoch is
 * read for its public half, the secret half is wiped at once). What is
 * missing stays false/0; -errno only if DIR has no store-id.
 */
int store_keys_report(const char *dir, struct keys_report *r);

/* Rebuild the index from the segments (writer lock required). */
int store_reindex(struct store *st, uint64_t *records);

#endif
