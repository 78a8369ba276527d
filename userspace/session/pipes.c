/* A command's stdin, stdout and stderr when it runs without a pty (session.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "session/session.h"

/*
 * Bytes between sshd and a command's stdin/stdout/stderr: stored while the
 * session is under capture_cap bytes, counted and hashed always.
 */
int pipe_bytes(struct tracker *t, struct session *s, unsigned stream, uint32_t pid, uint64_t ts_ns,
	       const void *data, uint64_t len)
{
	struct pipe_stream *p = &s->pipes[stream];
	uint64_t keep = len;
	int err;

	if (!p->sha) {
		p->sha = EVP_MD_CTX_new();
		if (!p->sha || EVP_DigestInit_ex(p->sha, EVP_sha256(), NULL) != 1)
			return -ENOMEM;
	}
	EVP_DigestUpdate(p->sha, data, len);
	p->bytes += len;
	if (s->transfer) {
		keep = 0; /* summarised per file instead */
	} else if (t->capture_cap) {
		uint64_t room =
		    t->capture_cap > s->stored_total ? t->capture_cap - s->stored_total : 0;

		keep = keep < room ? keep : room;
	}
	err = session_materialize(t, s);
	if (!err && keep) {
		err = chunk_add(t, s, stream, -1, pid, 0, ts_ns, data, (uint32_t)keep);
		p->stored += keep;
		s->stored_total += keep;
	}
	if (!err && keep < len && !p->capped && !s->transfer) {
		p->capped = true;
		log_info("session %s: stream %u passed the capture cap of %llu bytes; counting and"
			 " hashing the rest",
			 s->idhex, stream, (unsigned long long)t->capture_cap);
		err = session_begin(t, s, REC_CAPPED, ts_ns);
		err = err ?: rec_add_u64(&t->rec, TAG_STREAM, stream);
		err = err ?: rec_add_u64(&t->rec, TAG_BYTES, p->bytes - len + keep);
		err = err ?: rec_add_u64(&t->rec, TAG_CAP, t->capture_cap);
		err = err ?: session_emit(t, s);
	}
	return err;
}

/* Which stream a pipe is, once the command's exec told us; else -1. */
int pipe_stream_of(const struct session *s, uint64_t object)
{
	for (unsigned i = 0; i < s->npipe_objs; i++)
		if (s->pipe_objs[i].object == object)
			return s->pipe_objs[i].stream;
	return -1;
}

/* Keep bytes on a pipe not yet tied to a command (bounded). */
int pipe_hold(struct tracker *t UNUSED, struct session *s, const struct st_ev_tty *ev)
{
	struct held_chunk h = {ev->object, ev->hdr.ts_ns, ev->hdr.pid, ev->len};

	if (s->held.len + sizeof(h) + ev->len > HELD_MAX) {
		/* written as a gap record when the pipes are tied */
		s->held_dropped_events++;
		s->held_dropped_bytes += ev->len;
		return 0;
	}
	if (buf_add(&s->held, &h, sizeof(h)) || buf_add(&s->held, ev->data, ev->len))
		return -ENOMEM;
	return 0;
}

/*
 * The command started: tie its pipes (stdio: inode numbers of fds 0-2) to
 * streams and write what was held. counted: a transfer's, whose bytes the
 * kernel counts from now on.
 */
int pipes_tie(struct tracker *t, struct session *s, const __u64 stdio[3], bool counted,
	      uint64_t boot_ns)
{
	static const unsigned streams[3] = {STREAM_STDIN, STREAM_STDOUT, STREAM_STDERR};
	size_t off = 0;
	int err = 0;

	if (counted)
		s->pipes_counted = true;
	for (unsigned i = 0; i < 3; i++) {
		if (!stdio[i] || s->npipe_objs == 8 || pipe_stream_of(s, stdio[i]) >= 0)
			continue;
		s->pipe_objs[s->npipe_objs].object = stdio[i];
		s->pipe_objs[s->npipe_objs++].stream = streams[i];
	}
	/*
	 * What the other pipes held is dropped: those are sshd's own (a few
	 * bytes through its startup and re-exec pipes at every login, seen
	 * here), not the user's.
	 */
	while (!err && off + sizeof(struct held_chunk) <= s->held.len) {
		struct held_chunk h;
		int stream;

		memcpy(&h, s->held.data + off, sizeof(h));
		stream = pipe_stream_of(s, h.object);
		if (stream >= 0)
			err = pipe_bytes(t, s, stream, h.pid, h.ts_ns,
					 s->held.data + off + sizeof(h), h.len);
		off += sizeof(h) + h.len;
	}
	s->held.len = 0;
	if (!err && s->held_dropped_events) {
		log_warn("session %s: %llu pipe bytes sent before the command started were over"
			 " %u and not kept",
			 s->idhex, (unsigned long long)s->held_dropped_bytes, HELD_MAX);
		err = session_begin(t, s, REC_GAP, boot_ns);
		err = err ?: rec_add_u64(&t->rec, TAG_LOST_EVENTS, s->held_dropped_events);
		err = err ?: rec_add_u64(&t->rec, TAG_LOST_BYTES, s->held_dropped_bytes);
		err = err
			  ?: rec_add_str(&t->rec, TAG_REASON,
					 "pipe bytes before the command started");
		err = err ?: session_emit(t, s);
		s->held_dropped_events = s->held_dropped_bytes = 0;
	}
	return err;
}

/* Bytes of a stream the kernel counted instead of copying (a transfer's). */
static uint64_t counted_bytes(struct tracker *t, const struct session *s, unsigned stream)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < s->npipe_objs; i++) {
		struct st_relay r;

		if (s->pipe_objs[i].stream == stream &&
		    !capture_get_relay(t->cap, s->pipe_objs[i].object, &r) &&
		    (r.flags & ST_RELAY_COUNT))
			n += r.bytes_sent + r.bytes_recv;
	}
	return n;
}

/*
 * Size and SHA-256 of each whole pipe stream, at the end of the session. A
 * transfer's streams were counted in the kernel once its program started:
 * their size is known, their hash is not (its files carry theirs).
 */
int pipes_end(struct tracker *t, struct session *s, uint64_t boot_ns)
{
	int err = 0;

	for (unsigned i = STREAM_STDIN; i < STREAM_MAX && !err; i++) {
		struct pipe_stream *p = &s->pipes[i];
		uint64_t counted = s->pipes_counted ? counted_bytes(t, s, i) : 0;
		uint8_t md[EVP_MAX_MD_SIZE];
		char hex[2 * EVP_MAX_MD_SIZE + 1];
		unsigned mdlen = 0;

		if (!p->sha && !counted)
			continue;
		if (p->sha)
			EVP_DigestFinal_ex(p->sha, md, &mdlen);
		hex_encode(md, mdlen, hex);
		err = session_begin(t, s, REC_STREAM_END, boot_ns);
		err = err ?: rec_add_u64(&t->rec, TAG_STREAM, i);
		err = err ?: rec_add_u64(&t->rec, TAG_BYTES, p->bytes + counted);
		err = err ?: rec_add_u64(&t->rec, TAG_STORED, p->stored);
		if (s->pipes_counted)
			err = err
				  ?: rec_add_str(&t->rec, TAG_REASON,
						 "a transfer: counted in the kernel, not hashed;"
						 " its files are hashed");
		else
			err = err ?: rec_add_str(&t->rec, TAG_SHA256, hex);
		err = err ?: session_emit(t, s);
	}
	return err;
}
