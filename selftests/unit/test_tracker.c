/*
 * The collector's session code (session/tracker.c), driven with events of
 * our own: the kernel maps are selftests/lib/fake_capture.c, the pids are
 * above the kernel's limit (no /proc entry), the store is a real one.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../lib/fake_capture.h"
#include "session/tracker.h"
#include "store/record.h"
#include "store/store.h"
#include "test.h"

#define PID(n) (ST_PID_LIMIT + 1 + (n))
#define KEY 1

static uint64_t ts = 1000000000ull;

static void hdr(struct st_event_hdr *h, uint32_t type, uint32_t size, uint32_t pid)
{
	*h = (struct st_event_hdr){.type = type,
				   .size = size,
				   .ts_ns = ts += 1000000,
				   .sess_key = KEY,
				   .pid = pid,
				   .tid = pid};
}

static int send_session(struct tracker *t, uint32_t type, uint32_t pid)
{
	struct st_ev_session ev = {.listener_pid = PID(9)};

	hdr(&ev.hdr, type, sizeof(ev), pid);
	return tracker_on_event(t, &ev, sizeof(ev));
}

static int send_exec(struct tracker *t, uint32_t pid, uint32_t ppid, const char *path,
		     const char *args, size_t args_len)
{
	static struct st_ev_exec ev;
	size_t size = offsetof(struct st_ev_exec, args) + args_len;

	memset(&ev, 0, sizeof(ev));
	hdr(&ev.hdr, ST_EV_EXEC, size, pid);
	ev.ppid = ppid;
	ev.uid = ev.euid = ev.gid = ev.loginuid = 1000;
	ev.args_len = ev.args_total = args_len;
	ev.flags = ST_EXEC_FROM_SSHD;
	snprintf(ev.filename, sizeof(ev.filename), "%s", path);
	memcpy(ev.args, args, args_len);
	return tracker_on_event(t, &ev, size);
}

static int send_file(struct tracker *t, uint32_t type, uint32_t pid, const char *path,
		     uint64_t written)
{
	static struct st_ev_file ev;

	memset(&ev, 0, sizeof(ev));
	hdr(&ev.hdr, type, sizeof(ev), pid);
	ev.file_id = 77;
	ev.fd = 5;
	ev.flags = O_WRONLY | O_CREAT | O_TRUNC;
	ev.bytes_written = written;
	ev.dirfd = ev.dirfd2 = -100;
	snprintf(ev.path, sizeof(ev.path), "%s", path);
	return tracker_on_event(t, &ev, sizeof(ev));
}

static int send_exit(struct tracker *t, uint32_t pid, int status)
{
	struct st_ev_exit ev = {.exit_code = status};

	hdr(&ev.hdr, ST_EV_EXIT, sizeof(ev), pid);
	return tracker_on_event(t, &ev, sizeof(ev));
}

/* Types of the records stored since seq from, in order. */
struct types {
	uint16_t type[64];
	char sha256[65]; /* of the REC_FILE, if there is one */
	unsigned n;
};

static int note_type(void *arg, const struct record *rec, uint32_t seg_no, uint64_t off)
{
	struct types *ty = arg;

	(void)seg_no, (void)off;
	if (rec->type == REC_FILE)
		rec_str(rec, TAG_SHA256, ty->sha256, sizeof(ty->sha256));
	if (ty->n < sizeof(ty->type) / sizeof(ty->type[0]))
		ty->type[ty->n++] = rec->type;
	return 0;
}

static int stored_types(struct store *st, uint64_t from, struct types *ty)
{
	struct store_visitor v = {.record = note_type, .arg = ty, .from_seg = 1, .min_seq = from};

	memset(ty, 0, sizeof(*ty));
	return store_sync(st) ?: store_scan(st, &v);
}

static int find_type(const struct types *ty, uint16_t type)
{
	for (unsigned i = 0; i < ty->n; i++)
		if (ty->type[i] == type)
			return (int)i;
	return -1;
}

/*
 * A transfer's end waits for its files' hashes (their records go before the
 * end record), but the event loop must not: hashing a large upload takes
 * seconds, and the ring buffer fills meanwhile with every other session's
 * bytes. The hasher is not started until the end has been handled, so the
 * hash cannot be done in time.
 */
TEST(tracker_session_end_waits_for_file_hashes_not_the_event_loop)
{
	static const char shell[] = "bash\0-c\0scp -t up.bin", scp[] = "scp\0-t\0up.bin";
	struct tracker t;
	struct store st;
	struct capture cap = {0};
	struct hash_job *queued;
	struct types ty;
	char file[512];
	uint64_t from;
	int fd;

	snprintf(file, sizeof(file), "%s", test_path("up.bin"));
	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (!ASSERT_TRUE(fd >= 0 && write(fd, "hello", 5) == 5, "the uploaded file"))
		return;
	close(fd);
	if (!ASSERT_OK(store_open(&st, test_path("store"), STORE_WRITE | STORE_CREATE), "store"))
		return;
	from = st.next_seq;
	fake_capture_reset();
	tracker_init(&t, &st, &cap);

	ASSERT_OK(send_session(&t, ST_EV_SESSION_START, PID(0)), "start");
	/* what sshd runs for `scp -O file host:`, then what the shell execs */
	ASSERT_OK(send_exec(&t, PID(1), PID(0), "/bin/bash", shell, sizeof(shell)), "the shell");
	ASSERT_OK(send_exec(&t, PID(1), PID(0), "/usr/bin/scp", scp, sizeof(scp)), "scp -t");
	ASSERT_OK(send_file(&t, ST_EV_FILE_OPEN, PID(1), file, 0), "open");
	ASSERT_OK(send_file(&t, ST_EV_FILE_CLOSE, PID(1), file, 5), "close");
	ASSERT_OK(send_exit(&t, PID(1), 0), "scp exits: its file is hashed");
	ASSERT_OK(send_session(&t, ST_EV_SESSION_END, PID(0)), "end");

	ASSERT_OK(stored_types(&st, from, &ty), "read the log");
	ASSERT_GE(find_type(&ty, REC_EXEC), 0, "the exec is stored");
	ASSERT_EQ(find_type(&ty, REC_SESSION_END), -1, "no end record while the hash is not done");
	ASSERT_EQ(find_type(&ty, REC_FILE), -1, "nor a file record");
	ASSERT_EQ(t.ends_pending, 0, "nothing to settle yet");

	/* the hasher gets to it (hasher_start() empties the queue: submit again) */
	queued = t.hasher.todo;
	ASSERT_EQ(t.hasher.pending, 1, "one file queued");
	ASSERT_OK(hasher_start(&t.hasher), "start the hasher");
	while (queued) {
		struct hash_job *next = queued->next;

		hasher_submit(&t.hasher, queued);
		queued = next;
	}
	/* the file record, then the end */
	ASSERT_OK(tracker_files_done(&t, true), "hashes done");
	ASSERT_OK(stored_types(&st, from, &ty), "read the log again");
	ASSERT_GE(find_type(&ty, REC_FILE), 0, "the file record");
	ASSERT_EQ(find_type(&ty, REC_SESSION_END), (int)ty.n - 1, "the end record, last");
	ASSERT_LT(find_type(&ty, REC_FILE), find_type(&ty, REC_SESSION_END), "file before end");
	ASSERT_STREQ(ty.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
		     "SHA-256 of the upload");
	ASSERT_EQ(t.ends_pending, 1, "the end is settled at the next tick");

	hasher_stop(&t.hasher);
	tracker_fini(&t);
	store_close(&st);
}
