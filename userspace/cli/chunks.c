/*
 * The recorded writes of a session's streams, in the order they happened
 * (cli.h: cli_each_chunk). Each stream's records are in sequence order, but
 * the collector gathers streams in separate records (a command's stdout and
 * stderr, a terminal's input and output), so the streams asked for are
 * merged by the time of each write, one record per stream in memory.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/log.h"

struct cursor {
	sqlite3_stmt *st; /* this stream's records, by sequence number */
	struct buf raw;
	struct record rec;
	const struct rec_field *data, *timing; /* timing NULL: one write */
	uint32_t next, off; /* next timing entry, its offset in data */
	uint32_t winsize; /* the record's TAG_WINSIZE, for its first write */
	bool live; /* a write is ready: ch */
	struct chunk ch;
};

/* The login's own pty; those of sudo, tmux or script inside it are kept apart. */
static const char chunk_sql[] =
    "SELECT seq, segment, offset FROM chunks WHERE session = ?1 AND stream = ?2"
    " AND (stream >= 2 OR tty = coalesce("
    " (SELECT CAST(substr(tty, 5) AS INTEGER) FROM sessions"
    "  WHERE id = ?1 AND tty LIKE 'pts/%'),"
    " (SELECT tty FROM chunks WHERE session = ?1 AND stream < 2 ORDER BY seq LIMIT 1)))"
    " ORDER BY seq";

/* Load the stream's next readable record; 0 and !live at its end. */
static int next_record(struct cli *c, const char *id, struct cursor *k)
{
	while (sqlite3_step(k->st) == SQLITE_ROW) {
		uint64_t seq = sqlite3_column_int64(k->st, 0);

		if (store_read_at(&c->store, sqlite3_column_int64(k->st, 1),
				  sqlite3_column_int64(k->st, 2), &k->raw, &k->rec)) {
			log_error("session %s: record %llu unreadable; output continues after it",
				  id, (unsigned long long)seq);
			continue;
		}
		k->data = rec_field(&k->rec, TAG_DATA);
		if (k->rec.seq != seq || k->rec.type != REC_TTY || !k->data) {
			log_error(
			    "session %s: index points at record %llu but the log has %llu (%s);"
			    " run `sealtrail reindex`",
			    id, (unsigned long long)seq, (unsigned long long)k->rec.seq,
			    rec_type_name(k->rec.type));
			return -EIO;
		}
		k->timing = rec_field(&k->rec, TAG_TIMING);
		if (k->timing && !rec_timing_ok(k->timing, k->data->len)) {
			log_warn("session %s: record %llu: write times do not match its %u bytes;"
				 " replaying them as one write",
				 id, (unsigned long long)seq, k->data->len);
			k->timing = NULL;
		}
		k->next = k->off = 0;
		k->ch.seq = seq;
		{
			uint64_t ws = 0;

			k->winsize = rec_u64(&k->rec, TAG_WINSIZE, &ws) ? (uint32_t)ws : 0;
		}
		return 1;
	}
	return 0;
}

/* Make the cursor's next write ready in k->ch (k->live false at the end). */
static int advance(struct cli *c, const char *id, struct cursor *k)
{
	bool more = k->live && k->timing && k->next < k->timing->len;
	int err;

	k->ch.winsize = 0;
	if (!more) {
		err = next_record(c, id, k);
		k->live = err > 0;
		if (err <= 0)
			return err;
		k->ch.winsize = k->winsize;
	}
	if (!k->timing) {
		k->ch.wall_ns = k->rec.wall_ns;
		k->ch.data = k->data->data;
		k->ch.len = k->data->len;
		k->next = UINT32_MAX; /* the record's one write */
		return 0;
	}
	k->ch.wall_ns = k->rec.wall_ns + get_be32(k->timing->data + k->next);
	k->ch.len = get_be32(k->timing->data + k->next + 4);
	k->ch.data = k->data->data + k->off;
	k->off += k->ch.len;
	k->next += TIMING_ENTRY_LEN;
	return 0;
}

int cli_each_chunk(struct cli *c, const char *id, unsigned streams,
		   int (*fn)(void *arg, const struct chunk *ch), void *arg)
{
	struct cursor *k = calloc(STREAM_MAX, sizeof(*k));
	int err = k ? 0 : -ENOMEM;

	for (unsigned s = 0; s < STREAM_MAX && !err; s++) {
		if (!(streams & 1u << s))
			continue;
		if (sqlite3_prepare_v2(c->store.index.db, chunk_sql, -1, &k[s].st, NULL) !=
		    SQLITE_OK) {
			log_error("session %s: %s", id, sqlite3_errmsg(c->store.index.db));
			err = -EIO;
			break;
		}
		sqlite3_bind_text(k[s].st, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_int(k[s].st, 2, (int)s);
		err = advance(c, id, &k[s]);
	}
	while (!err) {
		struct cursor *first = NULL;

		/* the earliest write; at equal times the earlier record */
		for (unsigned s = 0; s < STREAM_MAX; s++)
			if (k[s].live &&
			    (!first || k[s].ch.wall_ns < first->ch.wall_ns ||
			     (k[s].ch.wall_ns == first->ch.wall_ns && k[s].ch.seq < first->ch.seq)))
				first = &k[s];
		if (!first)
			break;
		err = fn(arg, &first->ch);
		err = err ?: advance(c, id, first);
	}
	if (err == CHUNK_STOP)
		err = 0;
	for (unsigned s = 0; k && s < STREAM_MAX; s++) {
		sqlite3_finalize(k[s].st);
		buf_free(&k[s].raw);
	}
	free(k);
	return err;
}
