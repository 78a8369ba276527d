/*
 * The collector's session code (session/tracker.c), driven with events of
 * our own: the kernel maps are selftests/lib/fake_capture.c, the pids are
 * above the kernel's limit (no /proc entry), the store is a real one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/fake_capture.h"
#include "session/session.h"
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
	struct statx sx;

	memset(&ev, 0, sizeof(ev));
	hdr(&ev.hdr, type, sizeof(ev), pid);
	ev.file_id = 77;
	ev.fd = 5;
	ev.flags = O_WRONLY | O_CREAT | O_TRUNC;
	ev.bytes_written = written;
	ev.dirfd = ev.dirfd2 = -100;
	snprintf(ev.path, sizeof(ev.path), "%s", path);
	/* which file it is, as the kernel says it: inode and mount */
	if (!statx(AT_FDCWD, path, 0, STATX_INO | STATX_MNT_ID, &sx)) {
		ev.ino = sx.stx_ino;
		ev.mnt_id = (uint32_t)sx.stx_mnt_id;
	}
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
	char reason[256]; /* ... and why it has none */
	unsigned n;
};

static int note_type(void *arg, const struct record *rec, uint32_t seg_no, uint64_t off)
{
	struct types *ty = arg;

	(void)seg_no, (void)off;
	if (rec->type == REC_FILE) {
		rec_str(rec, TAG_SHA256, ty->sha256, sizeof(ty->sha256));
		rec_str(rec, TAG_REASON, ty->reason, sizeof(ty->reason));
	}
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

/* `scp -O up.bin host:` of a file holding "hello": a login, its file, its end. */
static void upload(struct tracker *t, const char *file)
{
	static const char shell[] = "bash\0-c\0scp -t up.bin", scp[] = "scp\0-t\0up.bin";

	ASSERT_OK(send_session(t, ST_EV_SESSION_START, PID(0)), "start");
	/* what sshd runs, then what the shell execs */
	ASSERT_OK(send_exec(t, PID(1), PID(0), "/bin/bash", shell, sizeof(shell)), "the shell");
	ASSERT_OK(send_exec(t, PID(1), PID(0), "/usr/bin/scp", scp, sizeof(scp)), "scp -t");
	ASSERT_OK(send_file(t, ST_EV_FILE_OPEN, PID(1), file, 0), "open");
	ASSERT_OK(send_file(t, ST_EV_FILE_CLOSE, PID(1), file, 5), "close");
	ASSERT_OK(send_exit(t, PID(1), 0), "scp exits: its file is hashed");
	ASSERT_OK(send_session(t, ST_EV_SESSION_END, PID(0)), "end");
}

static bool write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	bool ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text);

	if (fd >= 0)
		close(fd);
	return ok;
}

/*
 * Start the hasher and hand it the jobs queued while it was not running
 * (hasher_start() empties the queue); written, if set, replaces what each
 * file's transfer wrote.
 */
static void start_hasher(struct tracker *t, uint64_t written)
{
	struct hash_job *queued = t->hasher.todo;

	ASSERT_OK(hasher_start(&t->hasher), "start the hasher");
	while (queued) {
		struct hash_job *next = queued->next;

		if (written)
			queued->bytes_written = written;
		hasher_submit(&t->hasher, queued);
		queued = next;
	}
}

/* Run the jobs queued while the hasher was not started, and write their records. */
static void run_hasher(struct tracker *t)
{
	start_hasher(t, 0);
	ASSERT_OK(tracker_files_done(t, true), "hashes done");
}

/* A fresh tracker on st, fresh kernel maps; the seq its records start at. */
static uint64_t start_tracker(struct store *st, struct tracker *t)
{
	static struct capture cap;

	fake_capture_reset();
	tracker_init(t, st, &cap);
	return st->next_seq;
}

/* A tracker on st that has seen file uploaded; the seq its records start at. */
static uint64_t tracked_upload(struct store *st, struct tracker *t, const char *file)
{
	uint64_t from = start_tracker(st, t);

	upload(t, file);
	return from;
}

static void tracker_done(struct tracker *t)
{
	hasher_stop(&t->hasher);
	tracker_fini(t);
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
	struct tracker t;
	struct store st;
	struct types ty;
	char file[512];
	uint64_t from;

	snprintf(file, sizeof(file), "%s", test_path("up.bin"));
	if (!ASSERT_TRUE(write_file(file, "hello"), "the uploaded file") ||
	    !ASSERT_OK(store_open(&st, test_path("store"), STORE_WRITE | STORE_CREATE), "store"))
		return;
	from = tracked_upload(&st, &t, file);

	ASSERT_OK(stored_types(&st, from, &ty), "read the log");
	ASSERT_GE(find_type(&ty, REC_EXEC), 0, "the exec is stored");
	ASSERT_EQ(find_type(&ty, REC_SESSION_END), -1, "no end record while the hash is not done");
	ASSERT_EQ(find_type(&ty, REC_FILE), -1, "nor a file record");
	ASSERT_EQ(t.ends_pending, 0, "nothing to settle yet");
	ASSERT_EQ(t.hasher.pending, 1, "one file queued");

	run_hasher(&t);
	ASSERT_OK(stored_types(&st, from, &ty), "read the log again");
	ASSERT_GE(find_type(&ty, REC_FILE), 0, "the file record");
	ASSERT_EQ(find_type(&ty, REC_SESSION_END), (int)ty.n - 1, "the end record, last");
	ASSERT_LT(find_type(&ty, REC_FILE), find_type(&ty, REC_SESSION_END), "file before end");
	ASSERT_STREQ(ty.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
		     "SHA-256 of the upload");
	ASSERT_EQ(t.ends_pending, 1, "the end is settled at the next tick");

	tracker_done(&t);
	store_close(&st);
}

/*
 * The path is hashed after the transfer, as root, and the user controls
 * it: by then another file may be there (or a directory on the way a
 * symlink to /proc, whose kcore never ends). Only the file the kernel saw
 * opened is hashed; anything else is said, not read.
 */
TEST(tracker_hashes_only_the_file_that_was_transferred)
{
	struct tracker t;
	struct store st;
	struct types ty;
	char file[512], other[512], dir[400], link[512];
	uint64_t from;

	snprintf(file, sizeof(file), "%s", test_path("up.bin"));
	snprintf(other, sizeof(other), "%s", test_path("other"));
	if (!ASSERT_TRUE(write_file(file, "hello") && write_file(other, "secret"), "files") ||
	    !ASSERT_OK(store_open(&st, test_path("store"), STORE_WRITE | STORE_CREATE), "store"))
		return;
	from = tracked_upload(&st, &t, file);
	/* after the transfer, before the hash: another file at its path */
	ASSERT_OK(rename(other, file), "replace it");
	run_hasher(&t);
	ASSERT_OK(stored_types(&st, from, &ty), "read the log");
	ASSERT_GE(find_type(&ty, REC_FILE), 0, "the file record");
	ASSERT_STREQ(ty.sha256, "", "no hash of what is there now");
	ASSERT_STREQ(ty.reason, "not hashed: the path names another file than the one transferred",
		     "says why");
	tracker_done(&t);

	/* a symlink as the last component is not followed */
	snprintf(dir, sizeof(dir), "%s", test_path("d"));
	snprintf(link, sizeof(link), "%s/up.bin", dir);
	ASSERT_OK(mkdir(dir, 0700), "a directory");
	ASSERT_TRUE(write_file(link, "hello"), "a file in it");
	from = tracked_upload(&st, &t, link);
	ASSERT_OK(unlink(link), "remove it");
	ASSERT_OK(symlink("/proc/kcore", link), "a symlink to kcore there");
	run_hasher(&t);
	ASSERT_OK(stored_types(&st, from, &ty), "read the log");
	ASSERT_STREQ(ty.sha256, "", "no hash through the symlink");
	ASSERT_STREQ(ty.reason, "not hashed: Invalid argument", "not a regular file");
	tracker_done(&t);

	/* a directory on the way swapped for a symlink: another file at the end */
	ASSERT_OK(unlink(link), "remove the symlink");
	ASSERT_TRUE(write_file(link, "hello"), "the file again");
	from = tracked_upload(&st, &t, link);
	snprintf(other, sizeof(other), "%s", test_path("d.moved"));
	ASSERT_OK(rename(dir, other), "move the directory away");
	ASSERT_OK(mkdir(dir, 0700), "a new one");
	ASSERT_TRUE(write_file(link, "hello"), "the same bytes, another file");
	run_hasher(&t);
	ASSERT_OK(stored_types(&st, from, &ty), "read the log");
	ASSERT_STREQ(ty.sha256, "", "not hashed");
	ASSERT_STREQ(ty.reason, "not hashed: the path names another file than the one transferred",
		     "another inode");
	tracker_done(&t);
	store_close(&st);
}

static int send_tty(struct tracker *t, uint32_t pid, const char *text)
{
	static struct st_ev_tty ev;
	size_t len = strlen(text), size = offsetof(struct st_ev_tty, data) + len;

	memset(&ev, 0, sizeof(ev));
	hdr(&ev.hdr, ST_EV_TTY, size, pid);
	ev.dir = ST_TTY_OUT;
	ev.tty_index = 3;
	ev.len = len;
	ev.rows = 24;
	ev.cols = 80;
	memcpy(ev.data, text, len);
	return tracker_on_event(t, &ev, size);
}

/*
 * A session the kernel's map knows but never marked ended (its leader
 * exited just before an adoption put it there, or the start event was lost
 * and so was the exit): once its sshd processes are all gone, three ticks
 * end it. Before, it stayed live for good.
 */
TEST(tracker_session_whose_leader_is_gone_ends_though_the_map_says_live)
{
	struct tracker t;
	struct store st;
	struct types ty;
	uint64_t from;

	if (!ASSERT_OK(store_open(&st, test_path("store"), STORE_WRITE | STORE_CREATE), "store"))
		return;
	from = start_tracker(&st, &t);
	/* no start event: the session is learnt from the map, leader PID(0) (no such pid) */
	ASSERT_OK(capture_add_session(t.cap, KEY, PID(0)), "the kernel's map");
	ASSERT_OK(send_tty(&t, PID(0), "$ "), "output makes it a login");
	for (int i = 0; i < 3; i++)
		ASSERT_OK(tracker_tick(&t), "tick");
	ASSERT_OK(stored_types(&st, from, &ty), "read the log");
	ASSERT_GE(find_type(&ty, REC_SESSION_START), 0, "started");
	ASSERT_EQ(find_type(&ty, REC_SESSION_END), (int)ty.n - 1, "and ended");
	ASSERT_EQ(t.live, 0, "nothing live");
	tracker_done(&t);
	store_close(&st);
}

/*
 * A connection that ended before its login was authenticated is forgotten
 * (port scans, failed logins): an event of its processes after that must
 * not make it a login that never ends.
 */
TEST(tracker_session_ended_before_login_is_not_stored_by_a_late_event)
{
	struct tracker t;
	struct store st;
	struct types ty;
	uint64_t from;

	if (!ASSERT_OK(store_open(&st, test_path("store"), STORE_WRITE | STORE_CREATE), "store"))
		return;
	from = start_tracker(&st, &t);
	ASSERT_OK(send_session(&t, ST_EV_SESSION_START, PID(0)), "start");
	ASSERT_OK(send_session(&t, ST_EV_SESSION_END, PID(0)), "ends before any login");
	ASSERT_OK(send_tty(&t, PID(0), "late"), "a late event of it");
	ASSERT_OK(tracker_flush_chunks(&t, true), "flush");
	ASSERT_OK(stored_types(&st, from, &ty), "read the log");
	ASSERT_EQ(find_type(&ty, REC_SESSION_START), -1, "no login stored");
	ASSERT_EQ(find_type(&ty, REC_TTY), -1, "nor its bytes");
	tracker_done(&t);
	store_close(&st);
}

/*
 * Hashing is bounded. A file far larger than what its transfer moved (a
 * sparse exabyte made at the same inode after the upload) is not read; an
 * end waits for its hashes only so long; at shutdown the hasher is given a
 * time, then what is left is reported as not hashed.
 */
TEST(tracker_hashing_is_bounded)
{
	struct tracker t;
	struct store st;
	struct types ty;
	char file[512];
	uint64_t from;
	int fd;

	snprintf(file, sizeof(file), "%s", test_path("up.bin"));
	if (!ASSERT_TRUE(write_file(file, "hello"), "the uploaded file") ||
	    !ASSERT_OK(store_open(&st, test_path("store"), STORE_WRITE | STORE_CREATE), "store"))
		return;
	from = tracked_upload(&st, &t, file);
	ASSERT_OK(truncate(file, 1ll << 40), "the same inode, now 1 TiB of holes");
	run_hasher(&t);
	ASSERT_OK(stored_types(&st, from, &ty), "read the log");
	ASSERT_STREQ(ty.sha256, "", "not hashed");
	ASSERT_STREQ(ty.reason,
		     "not hashed: 1099511627776 bytes, far more than the 5 the transfer moved",
		     "says why");
	tracker_done(&t);

	/* the end does not wait past end_hash_wait_ns; the file record follows it */
	ASSERT_OK(truncate(file, 5), "back to 5 bytes");
	from = start_tracker(&st, &t);
	t.end_hash_wait_ns = 0;
	upload(&t, file);
	ASSERT_OK(tracker_files_done(&t, false), "a tick");
	ASSERT_OK(stored_types(&st, from, &ty), "read the log");
	ASSERT_EQ(find_type(&ty, REC_SESSION_END), (int)ty.n - 1, "the end is written");
	ASSERT_EQ(find_type(&ty, REC_FILE), -1, "without the file record");
	run_hasher(&t);
	ASSERT_OK(stored_types(&st, from, &ty), "read the log again");
	ASSERT_EQ(find_type(&ty, REC_FILE), (int)ty.n - 1, "the file record follows it");
	tracker_done(&t);

	/* shutdown: 1 ns for a 256 MiB file, then it is abandoned */
	fd = open(file, O_WRONLY);
	ASSERT_TRUE(fd >= 0 && !ftruncate(fd, 256 << 20), "256 MiB of holes");
	if (fd >= 0)
		close(fd);
	from = tracked_upload(&st, &t, file);
	start_hasher(&t, 256 << 20); /* as if all of it was uploaded */
	hasher_drain(&t.hasher, 1);
	ASSERT_OK(tracker_files_done(&t, false), "write what the hasher said");
	ASSERT_OK(stored_types(&st, from, &ty), "read the log");
	ASSERT_STREQ(ty.reason, "not hashed: sealtraild stopped before it was hashed",
		     "abandoned, and said so");
	ASSERT_EQ(find_type(&ty, REC_SESSION_END), (int)ty.n - 1, "then the end");
	tracker_done(&t);
	store_close(&st);
}

/* rsync-style: write .NAME.tmp, close, rename it to NAME; ids reused after close. */
static int send_write_and_rename(struct tracker *t, uint64_t file_id, const char *tmp,
				 const char *final)
{
	static struct st_ev_file ev;
	int err = 0;

	for (int k = 0; k < 3 && !err; k++) {
		memset(&ev, 0, sizeof(ev));
		hdr(&ev.hdr,
		    k == 0   ? ST_EV_FILE_OPEN
		    : k == 1 ? ST_EV_FILE_CLOSE
			     : ST_EV_FILE_RENAME,
		    sizeof(ev), PID(1));
		ev.file_id = k < 2 ? file_id : 0;
		ev.fd = 5;
		ev.flags = O_WRONLY | O_CREAT | O_EXCL;
		ev.bytes_written = k == 1 ? 1 : 0;
		ev.dirfd = ev.dirfd2 = -100;
		snprintf(ev.path, sizeof(ev.path), "%s", tmp);
		snprintf(ev.path2, sizeof(ev.path2), "%s", final);
		err = tracker_on_event(t, &ev, sizeof(ev));
	}
	return err;
}

static int note_paths(void *arg, const struct record *rec, uint32_t seg_no, uint64_t off)
{
	struct buf *b = arg;
	char path[256];

	(void)seg_no, (void)off;
	if (rec->type != REC_FILE || !rec_str(rec, TAG_PATH, path, sizeof(path)))
		return 0;
	return buf_addf(b, "%s;", path);
}

/*
 * Thousands of files at once (rsync): each is found by its kernel id at
 * close and by its path at rename, renamed files keep their place in open
 * order, and a kernel id reused after a close names the new file only.
 */
TEST(tracker_follows_thousands_of_renamed_files)
{
	static const char shell[] = "bash\0-c\0rsync --server -logDtpre.iLsfxCIvu . many/";
	struct store_visitor v = {.record = note_paths, .from_seg = 1};
	struct buf paths = {0}, want = {0};
	struct tracker t;
	struct store st;
	char tmp[64], final[64];

	if (!ASSERT_OK(store_open(&st, test_path("store"), STORE_WRITE | STORE_CREATE), "store"))
		return;
	v.min_seq = start_tracker(&st, &t);
	v.arg = &paths;
	ASSERT_OK(send_session(&t, ST_EV_SESSION_START, PID(0)), "start");
	ASSERT_OK(send_exec(&t, PID(1), PID(0), "/bin/bash", shell, sizeof(shell)), "rsync");
	for (int i = 0; i < 3000; i++) {
		snprintf(tmp, sizeof(tmp), "/m/.f%04d.XXXX", i);
		snprintf(final, sizeof(final), "/m/f%04d", i);
		/* the same few struct file addresses again and again, as the kernel reuses them */
		ASSERT_OK(
		    send_write_and_rename(&t, 0xffff888000000000ull + (i % 7) * 256, tmp, final),
		    "a file");
		if (i < 3 || i >= 2997)
			buf_addf(&want, "%s;", final);
	}
	ASSERT_OK(send_exit(&t, PID(1), 0), "rsync exits: its files are hashed");
	ASSERT_EQ(t.sessions->nfiles, 0, "every file handed to the hasher");
	fake_hashes_fail(&t.hasher, -ENOENT); /* not on this disk: reported as not hashed */
	ASSERT_OK(tracker_files_done(&t, false), "their records");
	ASSERT_OK(store_sync(&st) ?: store_scan(&st, &v), "read the log");
	ASSERT_EQ(paths.len, 3000 * strlen("/m/f0000;"), "3000 file records, renamed");
	if (paths.len == 3000 * strlen("/m/f0000;")) {
		ASSERT_MEMEQ(paths.data, want.data, 3 * strlen("/m/f0000;"),
			     "first, in open order");
		ASSERT_MEMEQ(paths.data + paths.len - 3 * strlen("/m/f0000;"),
			     want.data + 3 * strlen("/m/f0000;"), 3 * strlen("/m/f0000;"),
			     "last, in open order");
	}
	buf_free(&paths);
	buf_free(&want);
	tracker_done(&t);
	store_close(&st);
}
