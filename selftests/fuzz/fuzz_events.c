/*
 * libFuzzer target for the collector's event handling: tracker_on_event()
 * and what it calls (session/tracker.c, chunks.c, pipes.c, transfers.c),
 * writing into a real store. The events come from our BPF programs, but
 * what they carry is any process's: argv, environments, terminal and pipe
 * bytes, file names, and the sizes of what was copied. The kernel maps are
 * selftests/lib/fake_capture.c. Every pid in an event is one of a few above
 * the kernel's PID_MAX_LIMIT, so nothing in /proc is ever found for them:
 * runs are the same on any machine.
 *
 * The first input byte is a mode (modulo 3).
 * 0: any events. The rest is a run of [u8 kind][u16 len][len bytes]: kind
 *    picks the type (low 4 bits), whether the event has its type's size
 *    (bit 4; else the size is len, whatever the type) and whether a
 *    variable length field may disagree with the size (bit 5). The bytes
 *    are the event, header first; the header and pids are fixed up so that the
 *    events meet the sessions they name (keys 1-3; the kernel's map has 3,
 *    as if its start event had been lost). At the end, the collector's tick
 *    ends the sessions whose leader is gone (all of them). Checked: no
 *    crash; every record the tracker stored reads back from the log, in
 *    order, with a well-formed timing table; and every session ended, and
 *    every one stored has one end record after its start (file hashes are
 *    not computed: they come back as not found, and ends that waited for
 *    them are written then).
 * 1: one terminal login. A session starts, then the rest is a run of
 *    [u8 flags][u8 rows][u8 cols][u16 len][len bytes] pty reads and writes
 *    of its sshd (flags: bit 0 output, bit 1 time goes back, bits 2-7 the
 *    time since the previous one), then the session ends. Checked: the
 *    stored input and output equal, byte for byte, what the events carried;
 *    every write keeps its length and time (TAG_TIMING); and each output
 *    byte is stored under the window size it was read with.
 * 2: one command without a pty (`ssh host cmd`). A session starts, then
 *    the rest is a run of [u8 flags][u16 len][len bytes] moved by sshd
 *    through the command's pipes (flags: bits 0-1 stdin, stdout or stderr,
 *    bit 2 the kernel does not know which pipe it is, bit 3 the command's
 *    exec comes first, bits 4-7 the time since the previous one). Before
 *    the exec no pipe is known (the collector holds those bytes); if no
 *    flag brings it, it comes last. Checked: each stream stored equals,
 *    byte for byte and write by write, what the events carried, and its
 *    end record counts and hashes all of it.
 *
 *   build/fuzz/fuzz_events selftests/fuzz/corpus/fuzz_events
 *   (FUZZ_EVENTS_LOG=1 shows the collector's log lines; seeds:
 *   selftests/fuzz/corpus/make_event_seeds.py)
 */
#include <errno.h>
#include <ftw.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "../lib/fake_capture.h"
#include "common/log.h"
#include "session/session.h"
#include "session/tracker.h"
#include "store/record.h"
#include "store/store.h"

#define FAKE_PID(b) (ST_PID_LIMIT + 1 + (uint32_t)(b) % 8)
#define LEADER FAKE_PID(0)
#define KEY 1
#define TTY 7
#define MAX_WRITES 4096
#define PIPE_INO(fd) (21 + (uint64_t)(fd)) /* the command's stdin, stdout, stderr */

static char base[64];
static struct store st;
static struct capture cap;

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	remove(path);
	return 0;
}

static void cleanup(void)
{
	if (st.dir)
		store_close(&st);
	if (base[0])
		nftw(base, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	char dir[128];

	(void)argc, (void)argv;
	/* malformed events are logged, one line each: keep the run readable */
	log_set_level(getenv("FUZZ_EVENTS_LOG") ? LOG_DEBUG : LOG_ERROR);
	snprintf(base, sizeof(base), "%s/sealtrail-fuzz-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(base)) {
		perror(base);
		exit(1);
	}
	/* closing the store at exit seals index pages: OpenSSL must not be torn down first */
	OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
	atexit(cleanup);
	snprintf(dir, sizeof(dir), "%s/store", base);
	if (store_open(&st, dir, STORE_WRITE | STORE_CREATE)) {
		fprintf(stderr, "fuzz_events: cannot create a store in %s\n", dir);
		exit(1);
	}
	return 0;
}

/* What the stored records of one input say, gathered by a scan of the log. */
struct stored {
	uint64_t first_seq, next_seq, records;
	bool damaged;
	struct buf data[STREAM_MAX]; /* modes 1 and 2: the bytes of each stream */
	uint64_t writes[STREAM_MAX][MAX_WRITES][2]; /* boot time, length of each write */
	unsigned nwrites[STREAM_MAX];
	struct {
		bool seen;
		uint64_t bytes;
		char sha256[65];
	} stream_end[STREAM_MAX]; /* mode 2: REC_STREAM_END */
	uint32_t winsize[MAX_WRITES * 2]; /* mode 1: of each output write */
	uint32_t cur_winsize;
	/* sessions that started in the store, and whether they ended there */
	struct {
		uint8_t id[ST_ID_LEN];
		bool ended;
	} sessions[64];
	unsigned nsessions;
};

static int stored_session(struct stored *s, const uint8_t id[ST_ID_LEN])
{
	for (unsigned i = 0; i < s->nsessions; i++)
		if (!memcmp(s->sessions[i].id, id, ST_ID_LEN))
			return (int)i;
	return -1;
}

static int on_record(void *arg, const struct record *rec, uint32_t seg_no, uint64_t off)
{
	struct stored *s = arg;
	const struct rec_field *data, *timing;
	uint64_t stream, ws;

	(void)seg_no, (void)off;
	CHECK(rec->seq == s->first_seq + s->records);
	s->records++;
	if (rec->type == REC_SESSION_START) {
		CHECK(stored_session(s, rec->session) < 0);
		CHECK(s->nsessions < sizeof(s->sessions) / sizeof(s->sessions[0]));
		memcpy(s->sessions[s->nsessions++].id, rec->session, ST_ID_LEN);
	} else if (rec->type == REC_SESSION_END) {
		int i = stored_session(s, rec->session);

		CHECK(i >= 0 && !s->sessions[i].ended); /* one end, after the start */
		s->sessions[i].ended = true;
	} else if (rec->type == REC_STREAM_END && rec_u64(rec, TAG_STREAM, &stream) &&
		   stream < STREAM_MAX) {
		CHECK(!s->stream_end[stream].seen);
		s->stream_end[stream].seen = true;
		CHECK(rec_u64(rec, TAG_BYTES, &s->stream_end[stream].bytes));
		rec_str(rec, TAG_SHA256, s->stream_end[stream].sha256,
			sizeof(s->stream_end[stream].sha256));
	}
	if (rec->type != REC_TTY)
		return 0;
	data = rec_field(rec, TAG_DATA);
	timing = rec_field(rec, TAG_TIMING);
	CHECK(data);
	CHECK(rec_u64(rec, TAG_STREAM, &stream) && stream < STREAM_MAX);
	CHECK(!timing || rec_timing_ok(timing, data->len));
	if (rec_u64(rec, TAG_WINSIZE, &ws)) {
		CHECK(stream == STREAM_OUT && ws <= UINT32_MAX);
		s->cur_winsize = (uint32_t)ws;
	}
	CHECK(buf_add(&s->data[stream], data->data, data->len) == 0);
	/* one write per record without a timing table, else one per entry */
	for (uint32_t i = 0, n = timing ? timing->len / 8 : 1; i < n; i++) {
		unsigned w = s->nwrites[stream]++;
		const uint8_t *e = timing ? timing->data + 8 * i : NULL;

		CHECK(w < MAX_WRITES);
		s->writes[stream][w][0] = rec->mono_ns + (e ? get_be32(e) : 0);
		s->writes[stream][w][1] = e ? get_be32(e + 4) : data->len;
		if (stream == STREAM_OUT)
			s->winsize[w] = s->cur_winsize;
	}
	return 0;
}

static void on_damage(void *arg, const char *file, uint64_t off, uint64_t bytes, const char *why)
{
	struct stored *s = arg;

	fprintf(stderr, "%s: %s at byte offset %llu (%llu bytes)\n", file, why,
		(unsigned long long)off, (unsigned long long)bytes);
	s->damaged = true;
}

/* Read back every record stored since first_seq, at first_off of first_seg. */
static void read_back(struct stored *s, uint32_t first_seg, uint64_t first_off)
{
	struct store_visitor v = {.record = on_record,
				  .damage = on_damage,
				  .arg = s,
				  .from_seg = first_seg,
				  .from_off = first_off,
				  .min_seq = s->first_seq};

	CHECK(store_sync(&st) == 0);
	s->next_seq = st.next_seq;
	CHECK(store_scan(&st, &v) == 0);
	CHECK(!s->damaged);
	CHECK(s->records == s->next_seq - s->first_seq);
}

static size_t clamp(size_t n, size_t lo, size_t hi)
{
	return n < lo ? lo : n > hi ? hi : n;
}

/* The size the BPF side gives an event of this type that carries n bytes. */
static size_t natural_size(uint32_t type, size_t n)
{
	switch (type) {
	case ST_EV_SESSION_START:
	case ST_EV_SESSION_END:
		return sizeof(struct st_ev_session);
	case ST_EV_FORK:
		return sizeof(struct st_ev_fork);
	case ST_EV_EXEC:
		return clamp(n, offsetof(struct st_ev_exec, args), sizeof(struct st_ev_exec));
	case ST_EV_EXIT:
		return sizeof(struct st_ev_exit);
	case ST_EV_TTY:
		return clamp(n, offsetof(struct st_ev_tty, data), sizeof(struct st_ev_tty));
	case ST_EV_CONNECT:
		return sizeof(struct st_ev_connect);
	case ST_EV_CLOSE:
		return sizeof(struct st_ev_close);
	case ST_EV_FILE_OPEN:
	case ST_EV_FILE_CLOSE:
	case ST_EV_FILE_RENAME:
		return sizeof(struct st_ev_file);
	case ST_EV_INTERNAL_SFTP:
		return sizeof(struct st_ev_sftp);
	case ST_EV_ENV:
		return clamp(n, offsetof(struct st_ev_env, env), sizeof(struct st_ev_env));
	default:
		return clamp(n, sizeof(struct st_event_hdr), sizeof(struct st_ev_exec));
	}
}

/* The pids an event names, mapped to the fake ones; lengths made to fit. */
static void fix_up(void *ev, size_t size, bool lie)
{
	struct st_event_hdr *h = ev;
	size_t head;

	h->pid = FAKE_PID(h->pid);
	h->tid = h->pid;
	h->sess_key = 1 + h->sess_key % 3;
	switch (h->type) {
	case ST_EV_SESSION_START:
		if (size >= sizeof(struct st_ev_session))
			((struct st_ev_session *)ev)->listener_pid = FAKE_PID(7);
		break;
	case ST_EV_FORK:
		if (size >= sizeof(struct st_ev_fork))
			((struct st_ev_fork *)ev)->child_pid =
			    FAKE_PID(((struct st_ev_fork *)ev)->child_pid);
		break;
	case ST_EV_EXEC:
		head = offsetof(struct st_ev_exec, args);
		if (size >= head) {
			((struct st_ev_exec *)ev)->ppid = FAKE_PID(((struct st_ev_exec *)ev)->ppid);
			if (!lie)
				((struct st_ev_exec *)ev)->args_len = (uint32_t)(size - head);
		}
		break;
	case ST_EV_TTY:
		head = offsetof(struct st_ev_tty, data);
		if (size >= head && !lie)
			((struct st_ev_tty *)ev)->len = (uint32_t)(size - head);
		break;
	case ST_EV_ENV:
		head = offsetof(struct st_ev_env, env);
		if (size >= head && !lie)
			((struct st_ev_env *)ev)->env_len = (uint32_t)(size - head);
		break;
	case ST_EV_INTERNAL_SFTP:
		if (size >= sizeof(struct st_ev_sftp))
			((struct st_ev_sftp *)ev)->ppid = FAKE_PID(((struct st_ev_sftp *)ev)->ppid);
		break;
	}
}

static void event_soup(struct tracker *t, const uint8_t *p, size_t left)
{
	static uint8_t ev[sizeof(struct st_ev_exec) + 64] __attribute__((aligned(8)));
	uint64_t ts = 1000000000ull;

	/* the kernel knows session 3, whose start event the ring buffer lost */
	capture_add_session(&cap, 3, FAKE_PID(0));
	while (left >= 3) {
		uint8_t kind = p[0];
		size_t len = (size_t)p[1] | (size_t)p[2] << 8, size;
		uint32_t type = kind & 15;
		struct st_event_hdr *h = (struct st_event_hdr *)ev;

		p += 3, left -= 3;
		if (len > left)
			len = left;
		size = kind & 16 ? natural_size(type, len) : len;
		if (size > sizeof(ev))
			size = sizeof(ev);
		memset(ev, 0, size);
		memcpy(ev, p, len < size ? len : size);
		h->type = type;
		h->size = (uint32_t)size;
		ts += h->ts_ns % 2000000000ull; /* up to 2 s on, so chunks span and hold */
		h->ts_ns = ts;
		fix_up(ev, size, kind & 32);
		CHECK(tracker_on_event(t, ev, size) == 0);
		p += len, left -= len;
	}
	CHECK(tracker_flush_chunks(t, true) == 0);
	/* no pid of these sessions lives: after three ticks every one has ended */
	for (int i = 0; i < 3; i++)
		tracker_tick(t);
	for (struct session *s = t->sessions; s; s = s->next)
		CHECK(s->ended);
	tracker_settle(t);
}

/* Every session stored has its end stored. */
static void check_ends(const struct stored *got)
{
	for (unsigned i = 0; i < got->nsessions; i++)
		CHECK(got->sessions[i].ended);
}

/* Modes 1 and 2: what went through the pty or the pipes, as the events carried it. */
struct sent {
	struct buf data[STREAM_MAX];
	uint64_t writes[STREAM_MAX][MAX_WRITES][2];
	unsigned nwrites[STREAM_MAX];
	uint32_t winsize[MAX_WRITES];
	uint32_t cur_winsize;
};

static void send(struct tracker *t, uint32_t type, uint32_t pid, uint64_t ts)
{
	struct st_ev_session ev = {.hdr = {.type = type,
					   .size = sizeof(ev),
					   .ts_ns = ts,
					   .sess_key = KEY,
					   .pid = pid,
					   .tid = pid},
				   .listener_pid = FAKE_PID(7)};

	CHECK(tracker_on_event(t, &ev, sizeof(ev)) == 0);
}

static void terminal_login(struct tracker *t, const uint8_t *p, size_t left, struct sent *sent)
{
	static struct st_ev_tty ev;
	uint64_t ts = 1000000000ull;

	send(t, ST_EV_SESSION_START, LEADER, ts);
	while (left >= 5 && sent->nwrites[0] + sent->nwrites[1] < MAX_WRITES) {
		uint8_t flags = p[0];
		unsigned dir = flags & 1, w;
		size_t len = (size_t)p[3] | (size_t)p[4] << 8;
		uint64_t step = (uint64_t)(flags >> 2) * 40000000ull; /* up to 2.5 s */

		if (len > ST_TTY_CHUNK)
			len = ST_TTY_CHUNK;
		if (len > left - 5)
			len = left - 5;
		ts = flags & 2 && ts > step ? ts - step : ts + step;
		memset(&ev, 0, offsetof(struct st_ev_tty, data));
		ev.hdr = (struct st_event_hdr){.type = ST_EV_TTY,
					       .size = offsetof(struct st_ev_tty, data) + len,
					       .ts_ns = ts,
					       .sess_key = KEY,
					       .pid = LEADER,
					       .tid = LEADER};
		ev.dir = dir ? ST_TTY_OUT : ST_TTY_IN;
		ev.tty_index = TTY;
		ev.len = (uint32_t)len;
		ev.rows = p[1];
		ev.cols = p[2];
		memcpy(ev.data, p + 5, len);
		CHECK(tracker_on_event(t, &ev, ev.hdr.size) == 0);

		w = sent->nwrites[dir]++;
		sent->writes[dir][w][0] = ts;
		sent->writes[dir][w][1] = len;
		CHECK(buf_add(&sent->data[dir], p + 5, len) == 0);
		if (dir) {
			/* input carries no size; output of 0x0 keeps the one before */
			if (ev.rows || ev.cols)
				sent->cur_winsize = (uint32_t)ev.rows << 16 | ev.cols;
			sent->winsize[w] = sent->cur_winsize;
		}
		p += 5 + len, left -= 5 + len;
	}
	send(t, ST_EV_SESSION_END, LEADER, ts + 1);
	CHECK(tracker_flush_chunks(t, true) == 0);
	tracker_settle(t);
}

/* A pipe event of the command's sshd: dir ST_PIPE_*, object the pipe's inode. */
static void pipe_event(struct tracker *t, unsigned dir, uint64_t object, uint64_t ts,
		       const uint8_t *data, size_t len)
{
	static struct st_ev_tty ev;

	memset(&ev, 0, offsetof(struct st_ev_tty, data));
	ev.hdr = (struct st_event_hdr){.type = ST_EV_TTY,
				       .size = offsetof(struct st_ev_tty, data) + len,
				       .ts_ns = ts,
				       .sess_key = KEY,
				       .pid = LEADER,
				       .tid = LEADER};
	ev.dir = dir;
	ev.tty_index = 0;
	ev.len = (uint32_t)len;
	ev.object = object;
	memcpy(ev.data, data, len);
	CHECK(tracker_on_event(t, &ev, ev.hdr.size) == 0);
}

/* `ssh host cmd`: its shell, bash -c cmd, started by sshd with three pipes. */
static void command_exec(struct tracker *t, uint64_t ts)
{
	static const char args[] = "bash\0-c\0cmd";
	static struct st_ev_exec ev;
	size_t size = offsetof(struct st_ev_exec, args) + sizeof(args);

	memset(&ev, 0, sizeof(ev));
	ev.hdr = (struct st_event_hdr){.type = ST_EV_EXEC,
				       .size = (uint32_t)size,
				       .ts_ns = ts,
				       .sess_key = KEY,
				       .pid = FAKE_PID(1),
				       .tid = FAKE_PID(1)};
	ev.ppid = LEADER;
	ev.uid = ev.euid = ev.gid = ev.loginuid = 1000;
	ev.args_len = ev.args_total = sizeof(args);
	ev.flags = ST_EXEC_FROM_SSHD;
	for (int i = 0; i < 3; i++)
		ev.stdio[i] = PIPE_INO(i);
	memcpy(ev.filename, "/bin/bash", sizeof("/bin/bash"));
	memcpy(ev.args, args, sizeof(args));
	CHECK(tracker_on_event(t, &ev, size) == 0);
}

/*
 * Mode 2: sshd moves bytes through the command's pipes. Before the exec the
 * kernel cannot tell which pipe is which (ST_PIPE_UNKNOWN, held by the
 * collector); after it, either.
 */
static void command_pipes(struct tracker *t, const uint8_t *p, size_t left, struct sent *sent)
{
	static const unsigned streams[3] = {STREAM_STDIN, STREAM_STDOUT, STREAM_STDERR};
	uint64_t ts = 1000000000ull;
	bool execd = false;

	send(t, ST_EV_SESSION_START, LEADER, ts);
	while (left >= 3 && sent->nwrites[2] + sent->nwrites[3] + sent->nwrites[4] < MAX_WRITES) {
		uint8_t flags = p[0];
		unsigned fd = flags & 3 ? (flags & 3) - 1 : 0, stream = streams[fd], w;
		size_t len = (size_t)p[1] | (size_t)p[2] << 8;

		if (len > ST_TTY_CHUNK)
			len = ST_TTY_CHUNK;
		if (len > left - 3)
			len = left - 3;
		ts += (uint64_t)(flags >> 4) * 100000000ull; /* up to 1.5 s */
		if (!execd && (flags & 8)) {
			command_exec(t, ts);
			execd = true;
		}
		if (!len) {
			p += 3, left -= 3;
			continue; /* a read or write of nothing makes no event */
		}
		if (!execd || (flags & 4))
			pipe_event(t, ST_PIPE_UNKNOWN, PIPE_INO(fd), ts, p + 3, len);
		else
			pipe_event(t, ST_PIPE_STDIN + fd, 0, ts, p + 3, len);
		w = sent->nwrites[stream]++;
		sent->writes[stream][w][0] = ts;
		sent->writes[stream][w][1] = len;
		CHECK(buf_add(&sent->data[stream], p + 3, len) == 0);
		p += 3 + len, left -= 3 + len;
	}
	if (!execd)
		command_exec(t, ts + 1);
	send(t, ST_EV_SESSION_END, LEADER, ts + 2);
	CHECK(tracker_flush_chunks(t, true) == 0);
	tracker_settle(t);
}

/* Mode 2: each stream's end record counts and hashes what went through it. */
static void check_stream_ends(const struct sent *sent, const struct stored *got)
{
	for (unsigned d = STREAM_STDIN; d < STREAM_MAX; d++) {
		uint8_t md[32];
		char hex[65];

		if (!sent->nwrites[d])
			continue;
		CHECK(got->stream_end[d].seen);
		CHECK(got->stream_end[d].bytes == sent->data[d].len);
		SHA256(sent->data[d].data, sent->data[d].len, md);
		hex_encode(md, sizeof(md), hex);
		CHECK(!strcmp(got->stream_end[d].sha256, hex));
	}
}

static void check_streams(const struct sent *sent, const struct stored *got)
{
	for (unsigned d = 0; d < STREAM_MAX; d++) {
		CHECK(got->data[d].len == sent->data[d].len);
		CHECK(!sent->data[d].len ||
		      !memcmp(got->data[d].data, sent->data[d].data, sent->data[d].len));
		CHECK(got->nwrites[d] == sent->nwrites[d]);
		for (unsigned w = 0; w < sent->nwrites[d]; w++) {
			CHECK(got->writes[d][w][0] == sent->writes[d][w][0]);
			CHECK(got->writes[d][w][1] == sent->writes[d][w][1]);
			if (d == 1)
				CHECK(got->winsize[w] == sent->winsize[w]);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct stored got;
	static struct sent sent;
	struct tracker t;
	uint32_t first_seg = st.seg_no;
	uint64_t first_off = st.seg_size; /* where this input's first envelope goes */
	unsigned mode;

	if (size < 1)
		return 0;
	for (unsigned d = 0; d < STREAM_MAX; d++) {
		buf_free(&got.data[d]);
		buf_free(&sent.data[d]);
	}
	memset(&got, 0, sizeof(got));
	memset(&sent, 0, sizeof(sent));
	got.first_seq = st.next_seq;
	fake_capture_reset();
	tracker_init(&t, &st, &cap);
	mode = data[0] % 3;
	if (mode == 1)
		terminal_login(&t, data + 1, size - 1, &sent);
	else if (mode == 2)
		command_pipes(&t, data + 1, size - 1, &sent);
	else
		event_soup(&t, data + 1, size - 1);
	/*
	 * File hashes were queued for a worker this target does not start:
	 * they come back as not found, and the ends that waited for them are
	 * written.
	 */
	fake_hashes_fail(&t.hasher, -ENOENT);
	CHECK(tracker_files_done(&t, false) == 0);
	for (struct session *s = t.sessions; s; s = s->next)
		CHECK(!s->end_waits && !s->hashing);
	read_back(&got, first_seg, first_off);
	check_ends(&got);
	tracker_fini(&t);
	if (mode)
		check_streams(&sent, &got);
	if (mode == 2)
		check_stream_ends(&sent, &got);
	return 0;
}
