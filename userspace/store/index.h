/*
 * The SQLite index: sessions, terminal chunks (where each lives in the log),
 * execs and gaps. Derived from records only, so it can always be rebuilt.
 * Its pages are encrypted on disk under a key derived from the store's KEK
 * (cryptvfs.h); queries see plaintext, LIKE included.
 */
#ifndef SEALTRAIL_INDEX_H
#define SEALTRAIL_INDEX_H

#include <stdbool.h>
#include <stdint.h>

#include "common/util.h"
#include "store/record.h"

struct sqlite3;
struct sqlite3_stmt;

struct cryptvfs;

#define INDEX_KEY_LEN 32

/*
 * Terminal bytes not yet added to their session's totals: one UPDATE per
 * session and pty at the next other record or commit, not one per record.
 */
#define INDEX_PENDING_BYTES 16
struct index_bytes {
	char sid[ST_ID_HEX];
	uint64_t tty; /* pts index */
	uint64_t any_tty; /* 2: a pipe stream, counted whatever the session's tty */
	uint64_t in, out;
};

struct index {
	struct sqlite3 *db;
	struct cryptvfs *vfs;
	bool writable;
	bool in_tx;
	struct sqlite3_stmt *stmts[32];
	struct index_bytes pending[INDEX_PENDING_BYTES];
	unsigned npending;
	uint64_t last_seq; /* highest sequence number applied */
	uint32_t last_seg; /* and the segment it lives in */
};

/*
 * Open the index at path, encrypted under keys derived from key (the
 * store's KEK) and bound to the store id. path NULL: a temporary index in
 * memory (its key is random). A writer replaces an index it cannot use (one
 * from before the encryption, one that does not decrypt) with an empty one
 * that the caller fills from the log; a reader fails with -EBADMSG then.
 */
int index_open(struct index *ix, const char *path, bool writable, const uint8_t key[INDEX_KEY_LEN],
	       const uint8_t id[ST_ID_LEN]);
/*
 * Close ix and replace the index at path with an empty one: a new file
 * rather than emptied tables, so that a damaged index is no obstacle and
 * no free pages of the old one stay behind (`sealtrail reindex`).
 */
int index_recreate(struct index *ix, const char *path, const uint8_t key[INDEX_KEY_LEN],
		   const uint8_t id[ST_ID_LEN]);
/* An index written in the clear by an older sealtrail is at path (1), or not (0). */
int index_is_plain(const char *path);
void index_close(struct index *ix);
int index_apply(struct index *ix, const struct record *rec, uint32_t seg_no, uint64_t off);
int index_commit(struct index *ix);
int index_clear(struct index *ix);
/* Highest sequence number and its segment the index has seen (0 if none). */
int index_last(struct index *ix, uint64_t *seq, uint32_t *seg_no);
/* Ids of the sessions without an end record, appended to ids (ST_ID_LEN each). */
int index_open_sessions(struct index *ix, struct buf *ids);
/*
 * The last daemon event ("start", "stop") of host into out, "" if none:
 * a "start" not followed by a "stop" was a crash.
 */
void index_daemon_event(struct index *ix, const char *host, char *out, size_t size);

#endif
