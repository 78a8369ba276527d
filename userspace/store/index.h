/*
 * The SQLite index: sessions, terminal chunks (where each lives in the log),
 * execs and gaps. Derived from records only, so it can always be rebuilt.
 */
#ifndef SEALTRAIL_INDEX_H
#define SEALTRAIL_INDEX_H

#include <stdbool.h>
#include <stdint.h>

#include "common/util.h"
#include "store/record.h"

struct sqlite3;
struct sqlite3_stmt;

struct index {
	struct sqlite3 *db;
	bool writable;
	bool in_tx;
	struct sqlite3_stmt *stmts[32];
	uint64_t last_seq; /* highest sequence number applied */
	uint32_t last_seg; /* and the segment it lives in */
};

int index_open(struct index *ix, const char *path, bool writable);
void index_close(struct index *ix);
int index_apply(struct index *ix, const struct record *rec, uint32_t seg_no, uint64_t off);
int index_commit(struct index *ix);
int index_clear(struct index *ix);
/* Highest sequence number and its segment the index has seen (0 if none). */
int index_last(struct index *ix, uint64_t *seq, uint32_t *seg_no);
/* Ids of the sessions without an end record, appended to ids (ST_ID_LEN each). */
int index_open_sessions(struct index *ix, struct buf *ids);

#endif
