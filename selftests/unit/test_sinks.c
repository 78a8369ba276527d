/*
 * Checkpoint sinks (store/sinks.c) and reading notes back
 * (checkpoint_each_note in store/verify.c): files get every note appended,
 * syslog gets one parseable message per note on its socket, commands get
 * the note on stdin and are reaped, judged by their exit status, and
 * killed with their process group when they overrun, without the caller
 * ever waiting for them.
 */
#include <errno.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/sinks.h"
#include "store/verify.h"
#include "test.h"

static const uint8_t ID[ST_ID_LEN] = {0xab, 0xcd, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
#define ORIGIN "sealtrail/abcd0102030405060708090a0b0c0d0e"

/* A note shaped like sealtraild's (the signature is not checked here). */
static void make_note(struct buf *b, uint32_t epoch, uint64_t size)
{
	b->len = 0;
	buf_addf(b,
		 ORIGIN "\n%llu\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\nepoch %u\n\n"
			"\u2014 sealtrail-abcd010203040506 "
			"c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl"
			"c2lnbmF0dXJlc2lnbmF0dXJl\n",
		 (unsigned long long)size, epoch);
}

static bool process_gone(pid_t pid)
{
	char path[64], stat[256] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return true;
	if (!fgets(stat, sizeof(stat), f))
		stat[0] = 0;
	fclose(f);
	/* a zombie reparented to init counts as gone */
	return strstr(stat, ") Z ") != NULL;
}

struct found {
	unsigned n;
	char notes[4][1024];
	uint64_t off[4];
};

static int collect(void *arg, const char *note, uint64_t off)
{
	struct found *f = arg;

	if (f->n < 4) {
		snprintf(f->notes[f->n], sizeof(f->notes[0]), "%s", note);
		f->off[f->n] = off;
	}
	f->n++;
	return 0;
}

TEST(sinks_files_get_every_note)
{
	struct checkpoint_sinks s = {0};
	struct buf n1 = {0}, n2 = {0}, got = {0}, want = {0};
	char a[512], b[512];

	snprintf(a, sizeof(a), "%s", test_path("a.notes"));
	snprintf(b, sizeof(b), "%s", test_path("b.notes"));
	make_note(&n1, 1, 10);
	make_note(&n2, 2, 20);
	ASSERT_OK(sinks_add_file(&s, a), "file a");
	ASSERT_OK(sinks_add_file(&s, b), "file b");
	ASSERT_OK(sinks_add_file(&s, test_path("missing/dir/c.notes")), "file c");
	ASSERT_TRUE(sinks_any(&s), "sinks configured");
	/* each written before the next comes: a newer note replaces a waiting one */
	ASSERT_EQ(sinks_send(&s, ID, 1, 10, &n1), 0, "handed to every file's thread");
	sinks_drain(&s);
	ASSERT_EQ(sinks_send(&s, ID, 2, 20, &n2), 0, "handed to every file's thread");
	sinks_drain(&s);
	ASSERT_EQ(s.files[0].written, 2, "a: both written");
	ASSERT_EQ(s.files[1].written, 2, "b: both written");
	ASSERT_EQ(s.files[2].failed, 2, "c: both failed (no such directory)");
	ASSERT_EQ(s.files[2].written, 0, "c: none written");
	buf_add(&want, n1.data, n1.len);
	buf_add(&want, n2.data, n2.len);
	if (ASSERT_OK(buf_read_file(&got, a, 0), "read a"))
		ASSERT_BYTES_EQ(got.data, got.len, want.data, want.len, "a: both notes appended");
	if (ASSERT_OK(buf_read_file(&got, b, 0), "read b"))
		ASSERT_BYTES_EQ(got.data, got.len, want.data, want.len, "b: both notes appended");
	for (int i = 0; i < SINKS_MAX - 3; i++)
		sinks_add_file(&s, a);
	ASSERT_EQ(sinks_add_file(&s, a), -E2BIG, "at most SINKS_MAX files");
	sinks_free(&s);
	buf_free(&n1);
	buf_free(&n2);
	buf_free(&got);
	buf_free(&want);
}

/*
 * A file sink that hangs (here a FIFO nobody reads yet: open() waits for a
 * reader) never holds up the caller; while it hangs only the newest note
 * waits, and once it writes again that one follows the note under way.
 */
TEST(sinks_file_that_hangs_does_not_stop_the_sender)
{
	struct checkpoint_sinks s = {0};
	struct buf n1 = {0}, n2 = {0}, n3 = {0}, got = {0};
	char fifo[512], chunk[4096];
	uint64_t t0;
	int rd = -1;
	ssize_t n;

	snprintf(fifo, sizeof(fifo), "%s", test_path("fifo.notes"));
	if (!ASSERT_OK(mkfifo(fifo, 0600) ? -errno : 0, "mkfifo"))
		return;
	make_note(&n1, 3, 30);
	make_note(&n2, 4, 40);
	make_note(&n3, 5, 50);
	ASSERT_OK(sinks_add_file(&s, fifo), "fifo sink");
	t0 = clock_ns(CLOCK_MONOTONIC);
	ASSERT_EQ(sinks_send(&s, ID, 3, 30, &n1), 0, "handed over");
	/* the thread has taken note 1 and hangs in open(): 2 waits, 3 replaces it */
	for (int i = 0; i < 1000; i++) {
		bool taken;

		pthread_mutex_lock(&s.files[0].lock);
		taken = s.files[0].busy_since_ns != 0;
		pthread_mutex_unlock(&s.files[0].lock);
		if (taken)
			break;
		usleep(1000);
	}
	ASSERT_EQ(sinks_send(&s, ID, 4, 40, &n2), 0, "handed over");
	ASSERT_EQ(sinks_send(&s, ID, 5, 50, &n3), 0, "handed over");
	ASSERT_LT(clock_ns(CLOCK_MONOTONIC) - t0, 1000000000ull, "without waiting for a reader");
	ASSERT_EQ(s.files[0].superseded, 1, "note 2 replaced by note 3");
	sinks_poll(&s); /* not hung for long yet: nothing to say, nothing blocks */
	ASSERT_FALSE(s.files[0].warned_stuck, "not reported as hung yet");
	s.stuck_ns = 1;
	sinks_poll(&s);
	ASSERT_TRUE(s.files[0].warned_stuck, "reported as hung");
	/* shutdown gives it timeout_ns, then goes on */
	s.timeout_ns = 100000000ull;
	t0 = clock_ns(CLOCK_MONOTONIC);
	sinks_drain(&s);
	ASSERT_LT(clock_ns(CLOCK_MONOTONIC) - t0, 2000000000ull, "drain gave up on it");
	ASSERT_EQ(s.files[0].written, 0, "nothing written yet");
	s.timeout_ns = 0;
	/* a reader comes: the pipe holds both notes, so the writes need no reading */
	rd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (ASSERT_GE(rd, 0, "open the reader")) {
		sinks_drain(&s);
		ASSERT_EQ(s.files[0].written, 2, "notes 1 and 3 written");
		sinks_poll(&s);
		ASSERT_FALSE(s.files[0].warned_stuck, "reported as writing again");
		while ((n = read(rd, chunk, sizeof(chunk))) > 0)
			buf_add(&got, chunk, n);
		buf_add(&n1, n3.data, n3.len);
		ASSERT_BYTES_EQ(got.data, got.len, n1.data, n1.len, "note 1, then note 3");
		close(rd);
	}
	sinks_free(&s);
	buf_free(&n1);
	buf_free(&n2);
	buf_free(&n3);
	buf_free(&got);
}

TEST(sinks_syslog_one_message_per_note)
{
	struct checkpoint_sinks s = {.syslog = true};
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct buf note = {0};
	struct found f = {0};
	char msg[4096], want[256], *body;
	ssize_t n;
	int fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", test_path("log"));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (!ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), "bind a syslog socket"))
		return;
	setenv(SINK_SYSLOG_ENV, sa.sun_path, 1);
	make_note(&note, 7, 1234);
	ASSERT_EQ(sinks_send(&s, ID, 7, 1234, &note), 0, "sent");
	n = recv(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT);
	if (!ASSERT_GT(n, 0, "one datagram"))
		goto out;
	msg[n] = 0;
	ASSERT_EQ(recv(fd, msg + n, 1, MSG_DONTWAIT), -1, "only one");
	/* <authpriv.notice>Mmm dd hh:mm:ss sealtraild[pid]: sealtrail-checkpoint ... */
	ASSERT_TRUE(!strncmp(msg, "<85>", 4), "facility authpriv, severity notice");
	snprintf(want, sizeof(want),
		 " sealtraild[%d]: " SINK_SYSLOG_TAG " store=%s epoch=7 size=1234 note=",
		 (int)getpid(), ORIGIN + 10);
	body = strstr(msg, want);
	if (!ASSERT_TRUE(body != NULL, "tag, store, epoch, size"))
		goto out;
	ASSERT_EQ(strcspn(msg, "\n"), (size_t)n, "one line");
	/* read back as an auditor would paste it, among other lines */
	strcat(msg, "\nNov 24 10:00:00 host other[1]: hello\n");
	ASSERT_OK(checkpoint_each_note(msg, strlen(msg), collect, &f), "scan");
	if (ASSERT_EQ(f.n, 1, "one note found")) {
		ASSERT_STREQ(f.notes[0], (char *)note.data, "the note, byte for byte");
		ASSERT_EQ(f.off[0], body + strlen(want) - msg, "at its base64");
	}
	/* no logger listening: a failure, reported */
	close(fd);
	fd = -1;
	unlink(sa.sun_path);
	ASSERT_EQ(sinks_send(&s, ID, 8, 1235, &note), 1, "no logger: failed");
out:
	if (fd >= 0)
		close(fd);
	unsetenv(SINK_SYSLOG_ENV);
	buf_free(&note);
}

/* Signed notes as written, several in a row, between other text, and broken ones. */
TEST(checkpoint_each_note_finds_signed_notes)
{
	struct buf n1 = {0}, n2 = {0}, text = {0};
	struct found f = {0};

	make_note(&n1, 1, 10);
	make_note(&n2, 2, 20);
	buf_addf(&text, "%s%s", (char *)n1.data, (char *)n2.data);
	buf_addf(&text, "some other line\n%s", (char *)n1.data);
	buf_addf(&text, ORIGIN "\n30\nnot a note\n");
	ASSERT_OK(checkpoint_each_note((char *)text.data, text.len, collect, &f), "scan");
	if (ASSERT_EQ(f.n, 4, "notes found")) {
		ASSERT_STREQ(f.notes[0], (char *)n1.data, "first");
		ASSERT_STREQ(f.notes[1], (char *)n2.data, "second, right after it");
		ASSERT_STREQ(f.notes[2], (char *)n1.data, "third, after another line");
		ASSERT_EQ(f.off[1], n1.len, "offset of the second");
		ASSERT_STREQ(f.notes[3], ORIGIN "\n30\nnot a note\n",
			     "an unfinished one, as it is");
	}
	buf_free(&n1);
	buf_free(&n2);
	buf_free(&text);
}

TEST(sinks_command_gets_the_note_and_is_reaped)
{
	struct checkpoint_sinks s = {0};
	struct buf note = {0}, got = {0};
	char cmd[1024];
	pid_t pid;

	snprintf(cmd, sizeof(cmd),
		 "cat > %s/note; echo \"$SEALTRAIL_STORE_ID $SEALTRAIL_EPOCH $SEALTRAIL_TREE_SIZE\""
		 " > %s/env",
		 test_dir(), test_dir());
	ASSERT_OK(sinks_add_command(&s, cmd), "command");
	make_note(&note, 4, 99);
	ASSERT_EQ(sinks_send(&s, ID, 4, 99, &note), 0, "started");
	if (!ASSERT_EQ(s.commands[0].nruns, 1, "running, not waited for"))
		goto out;
	pid = s.commands[0].runs[0].pid;
	sinks_drain(&s);
	ASSERT_EQ(s.commands[0].nruns, 0, "finished");
	ASSERT_TRUE(waitpid(pid, NULL, WNOHANG) < 0 && errno == ECHILD, "reaped: no zombie");
	if (ASSERT_OK(buf_read_file(&got, test_path("note"), 0), "note file"))
		ASSERT_BYTES_EQ(got.data, got.len, note.data, note.len, "the note on stdin");
	if (ASSERT_OK(buf_read_file(&got, test_path("env"), 0), "env file"))
		ASSERT_STREQ((char *)got.data, "abcd0102030405060708090a0b0c0d0e 4 99\n",
			     "store id, epoch and tree size in the environment");
out:
	buf_free(&note);
	buf_free(&got);
}

/*
 * A failing command is reaped like any other; a hanging one is killed at
 * its timeout with everything in its process group; a command never has
 * more than SINK_COMMAND_RUNS runs, the newest checkpoint waits for one to
 * end; sinks_send and sinks_poll never wait.
 */
TEST(sinks_command_failing_and_hanging)
{
	struct checkpoint_sinks s = {.timeout_ns = 300000000ull};
	struct buf note = {0}, bg = {0};
	char hang[512];
	pid_t pids[SINK_COMMAND_RUNS], fail_pid, bg_pid = 0;
	uint64_t t0;
	int n = 0;

	snprintf(hang, sizeof(hang), "sleep 30 & echo $! > %s/bg; sleep 30", test_dir());
	ASSERT_OK(sinks_add_command(&s, "exit 3"), "failing command");
	ASSERT_OK(sinks_add_command(&s, hang), "hanging command");
	make_note(&note, 1, 1);
	t0 = clock_ns(CLOCK_MONOTONIC);
	for (int i = 0; i < SINK_COMMAND_RUNS; i++)
		n += sinks_send(&s, ID, 1 + i, 1, &note);
	ASSERT_EQ(n, 0, "all started");
	/* one run too many of the hanging command: the newest note waits for a free run */
	ASSERT_EQ(sinks_send(&s, ID, 9, 1, &note), 0, "queued");
	ASSERT_EQ(sinks_send(&s, ID, 10, 1, &note), 0, "queued instead");
	ASSERT_LT(clock_ns(CLOCK_MONOTONIC) - t0, 250000000ull, "sending never waits");
	ASSERT_TRUE(s.commands[1].has_pending && s.commands[1].pending_epoch == 10,
		    "the newest checkpoint waits");
	if (!ASSERT_EQ(s.commands[1].nruns, SINK_COMMAND_RUNS, "hanging runs"))
		goto out;
	for (int i = 0; i < SINK_COMMAND_RUNS; i++)
		pids[i] = s.commands[1].runs[i].pid;
	fail_pid = s.commands[0].nruns ? s.commands[0].runs[0].pid : 0;
	sinks_drain(&s);
	/* 4 runs killed at 0.3 s, then the waiting one at 0.6 s */
	ASSERT_LT(clock_ns(CLOCK_MONOTONIC) - t0, 2000000000ull, "killed at the timeout");
	ASSERT_EQ(s.commands[0].nruns + s.commands[1].nruns, 0, "all runs done");
	ASSERT_FALSE(s.commands[1].has_pending, "the waiting checkpoint was given a run");
	for (int i = 0; i < SINK_COMMAND_RUNS; i++)
		ASSERT_TRUE(waitpid(pids[i], NULL, WNOHANG) < 0 && errno == ECHILD,
			    "hanging run reaped");
	if (fail_pid)
		ASSERT_TRUE(waitpid(fail_pid, NULL, WNOHANG) < 0 && errno == ECHILD,
			    "failing run reaped");
	if (ASSERT_OK(buf_read_file(&bg, test_path("bg"), 0), "the background sleep's pid"))
		bg_pid = atoi((char *)bg.data);
	if (ASSERT_GT(bg_pid, 0, "pid")) {
		for (int i = 0; i < 100 && !process_gone(bg_pid); i++)
			usleep(10000);
		ASSERT_TRUE(process_gone(bg_pid), "what the command started is killed too");
	}
out:
	sinks_free(&s);
	buf_free(&note);
	buf_free(&bg);
}
