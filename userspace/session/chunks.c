/*
 * A session's stream bytes, coalesced (session.h): writes of one stream
 * (terminal input, terminal output, a pipe) become one REC_TTY record of up
 * to CHUNK_MAX_BYTES, with the time and length of every write in
 * TAG_TIMING, so replay keeps the original timing while the store seals,
 * compresses and indexes one record per stretch of a stream instead of one
 * per keystroke, echo or 4 KiB piece the kernel hands over.
 *
 * Each stream has its own slot, so typing and its echo do not cut each
 * other's records short. A record is written when it is full, when a write
 * comes CHUNK_SPAN_NS after its first, when it has waited CHUNK_HOLD_NS,
 * and before any other record of its session (exec, exit, end...): each
 * stream's records stay in order, and a record of another kind comes after
 * every byte written before it. A pty's window size (TAG_WINSIZE) goes
 * with the first record written after it changed, and a change ends the
 * record it would fall in, so the size holds from a record's start.
 */
#include <errno.h>
#include <stdbool.h>

#include "session/session.h"

/* Does this record have to say the pty's window size (it changed)? */
static bool winsize_news(struct session *s, const struct chunk_acc *c)
{
	unsigned i, spare = 0;

	if (c->tty_index < 0 || !c->winsize)
		return false;
	for (i = 0; i < CHUNK_SLOTS; i++) {
		if (s->winsizes[i].winsize && s->winsizes[i].tty_index == c->tty_index) {
			if (s->winsizes[i].winsize == c->winsize)
				return false;
			break;
		}
		if (!s->winsizes[i].winsize)
			spare = i;
	}
	/* a pty not seen yet takes a free entry, else the first one */
	if (i == CHUNK_SLOTS)
		i = spare;
	s->winsizes[i].tty_index = c->tty_index;
	s->winsizes[i].winsize = c->winsize;
	return true;
}

static int flush_slot(struct tracker *t, struct session *s, struct chunk_acc *c)
{
	int err;

	if (!c->open)
		return 0;
	c->open = false; /* first: session_begin() below comes back to chunk_flush() */
	t->open_chunks--;
	err = session_begin(t, s, REC_TTY, c->first_ns);
	err = err ?: rec_add_u64(&t->rec, TAG_STREAM, c->stream);
	if (c->tty_index >= 0)
		err = err ?: rec_add_u64(&t->rec, TAG_TTY_INDEX, (uint64_t)c->tty_index);
	err = err ?: rec_add_u64(&t->rec, TAG_PID, c->pid);
	if (winsize_news(s, c))
		err = err ?: rec_add_u64(&t->rec, TAG_WINSIZE, c->winsize);
	err = err ?: rec_add_bytes(&t->rec, TAG_DATA, c->data.data, c->data.len);
	if (c->writes > 1)
		err = err ?: rec_add_bytes(&t->rec, TAG_TIMING, c->timing.data, c->timing.len);
	c->data.len = c->timing.len = 0;
	c->writes = 0;
	return err ?: session_emit(t, s);
}

/* The open slot whose first write is oldest (NULL if none is open). */
static struct chunk_acc *oldest_slot(struct session *s)
{
	struct chunk_acc *old = NULL;

	for (unsigned i = 0; i < CHUNK_SLOTS; i++)
		if (s->chunks[i].open && (!old || s->chunks[i].first_ns < old->first_ns))
			old = &s->chunks[i];
	return old;
}

/* Write all of the session's open chunks, oldest first. */
int chunk_flush(struct tracker *t, struct session *s)
{
	struct chunk_acc *c;
	int err = 0;

	while (!err && (c = oldest_slot(s)))
		err = flush_slot(t, s, c);
	return err;
}

/* Add one write of a stream (tty_index -1 for a pipe) to the session's chunks. */
int chunk_add(struct tracker *t, struct session *s, unsigned stream, int tty_index, uint32_t pid,
	      uint32_t winsize, uint64_t ts_ns, const void *data, uint32_t len)
{
	struct chunk_acc *c = NULL, *free_slot = NULL;
	uint8_t entry[TIMING_ENTRY_LEN];
	int err = 0;

	for (unsigned i = 0; i < CHUNK_SLOTS; i++) {
		struct chunk_acc *x = &s->chunks[i];

		if (!x->open)
			free_slot = free_slot ?: x;
		else if (x->stream == stream && x->tty_index == tty_index && x->pid == pid)
			c = x;
	}
	if (c && (c->data.len + len > CHUNK_MAX_BYTES || ts_ns < c->last_ns ||
		  ts_ns - c->first_ns >= CHUNK_SPAN_NS || (winsize && winsize != c->winsize))) {
		err = flush_slot(t, s, c);
		free_slot = c;
		c = NULL;
	}
	if (!c && !free_slot) {
		/* a fourth stream at once (sudo's pty, tmux...): make room */
		free_slot = oldest_slot(s);
		err = err ?: flush_slot(t, s, free_slot);
	}
	if (err)
		return err;
	if (!c) {
		c = free_slot;
		c->open = true;
		t->open_chunks++;
		c->stream = stream;
		c->tty_index = tty_index;
		c->pid = pid;
		c->winsize = winsize;
		c->first_ns = ts_ns;
	}
	c->last_ns = ts_ns;
	put_be32(entry, (uint32_t)(ts_ns - c->first_ns));
	put_be32(entry + 4, len);
	if (buf_add(&c->data, data, len) || buf_add(&c->timing, entry, sizeof(entry)))
		return -ENOMEM;
	c->writes++;
	/* a full chunk goes now: nothing can be added to it */
	return c->data.len >= CHUNK_MAX_BYTES ? flush_slot(t, s, c) : 0;
}

/* Write the chunks that have waited CHUNK_HOLD_NS (all of them if all). */
int tracker_flush_chunks(struct tracker *t, bool all)
{
	uint64_t now = clock_ns(CLOCK_BOOTTIME);
	int err = 0;

	for (struct session *s = t->sessions; s && t->open_chunks; s = s->next) {
		struct chunk_acc *c;

		while ((c = oldest_slot(s)) && (all || now - c->first_ns >= CHUNK_HOLD_NS)) {
			int e = flush_slot(t, s, c);

			err = err ?: e;
			if (e)
				break;
		}
	}
	return err;
}

void chunks_free(struct session *s)
{
	for (unsigned i = 0; i < CHUNK_SLOTS; i++) {
		buf_free(&s->chunks[i].data);
		buf_free(&s->chunks[i].timing);
	}
}
