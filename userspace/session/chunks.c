/*
 * A session's stream bytes, coalesced (session.h): consecutive writes of
 * one stream become one REC_TTY record of up to CHUNK_MAX_BYTES, with the
 * time and length of every write in TAG_TIMING, so replay keeps the
 * original timing while the store seals, compresses and indexes one record
 * per run of output instead of one per 4 KiB the kernel hands over.
 */
#include <errno.h>

#include "session/session.h"

/*
 * Write the session's open chunk as a record. session_begin() calls this
 * before any other record of the session, so its records stay in order.
 */
int chunk_flush(struct tracker *t, struct session *s)
{
	struct chunk_acc *c = &s->chunk;
	int err;

	if (!c->open)
		return 0;
	c->open = false; /* first: session_begin() below comes back here */
	t->open_chunks--;
	err = session_begin(t, s, REC_TTY, c->first_ns);
	err = err ?: rec_add_u64(&t->rec, TAG_STREAM, c->stream);
	if (c->tty_index >= 0)
		err = err ?: rec_add_u64(&t->rec, TAG_TTY_INDEX, (uint64_t)c->tty_index);
	err = err ?: rec_add_u64(&t->rec, TAG_PID, c->pid);
	err = err ?: rec_add_bytes(&t->rec, TAG_DATA, c->data.data, c->data.len);
	if (c->writes > 1)
		err = err ?: rec_add_bytes(&t->rec, TAG_TIMING, c->timing.data, c->timing.len);
	c->data.len = c->timing.len = 0;
	c->writes = 0;
	return err ?: session_emit(t, s);
}

/* Add one write of a stream (tty_index -1 for a pipe) to the session's chunk. */
int chunk_add(struct tracker *t, struct session *s, unsigned stream, int tty_index, uint32_t pid,
	      uint64_t ts_ns, const void *data, uint32_t len)
{
	struct chunk_acc *c = &s->chunk;
	uint8_t entry[TIMING_ENTRY_LEN];
	int err = 0;

	if (c->open && (c->stream != stream || c->tty_index != tty_index || c->pid != pid ||
			c->data.len + len > CHUNK_MAX_BYTES || ts_ns < c->last_ns ||
			ts_ns - c->first_ns >= CHUNK_SPAN_NS))
		err = chunk_flush(t, s);
	if (err)
		return err;
	if (!c->open) {
		c->open = true;
		t->open_chunks++;
		c->stream = stream;
		c->tty_index = tty_index;
		c->pid = pid;
		c->first_ns = ts_ns;
	}
	c->last_ns = ts_ns;
	put_be32(entry, (uint32_t)(ts_ns - c->first_ns));
	put_be32(entry + 4, len);
	if (buf_add(&c->data, data, len) || buf_add(&c->timing, entry, sizeof(entry)))
		return -ENOMEM;
	c->writes++;
	/* a full chunk goes now: nothing can be added to it */
	return c->data.len >= CHUNK_MAX_BYTES ? chunk_flush(t, s) : 0;
}

int tracker_flush_chunks(struct tracker *t)
{
	int err = 0;

	for (struct session *s = t->sessions; s && t->open_chunks; s = s->next)
		if (s->chunk.open) {
			int e = chunk_flush(t, s);

			err = err ?: e;
		}
	return err;
}
