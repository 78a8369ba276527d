/*
 * seal-bench: how fast the store seals terminal output on one core, and
 * how many bytes it keeps for them (issue #3). tools/bench/seal.py drives it.
 *
 *   seal-bench --plan FILE --corpus FILE --store DIR [--chunk BYTES]
 *              [--cpu N] [--tick-ms MS] [--min-output BYTES] [--keys-per-record N]
 *              [--no-input]
 *
 * The corpus is the raw terminal bytes of a session mix, in the order they
 * are replayed; the plan says what they are, one step per line:
 *
 *   S SID TTY                 a login starts (session start record)
 *   I SID LEN                 the client typed LEN bytes (one write)
 *   K SID LEN                 the terminal echoed typed bytes (one write)
 *   O SID LEN                 the terminal printed LEN bytes (writes of 4 KiB)
 *
 * Writes are gathered as userspace/session/chunks.c does: one slot for
 * input and one for output per session, a record when a slot holds
 * --chunk bytes, before any other record of the session, and when it has
 * waited CHUNK_HOLD_NS. The plan has no times, so that wait is modelled
 * as --keys-per-record typed writes (input) or echoes with nothing else
 * (output): 7 by default, 1 s of typing at ~150 ms per key.
 * --keys-per-record 1 --chunk 4096 gives the daemon before coalescing.
 *   X SID PID PPID PATH ARGV  the shell forked PID and it ran PATH (fork and
 *                             exec records); ARGV is hex of the NUL-separated
 *                             argument vector, as in /proc/PID/cmdline
 *   Q SID PID STATUS          PID exited (exit record)
 *   E SID STATUS              the login ended (session end record)
 *
 * The records are built with the fields sealtraild's tracker writes
 * (userspace/session/tracker.c) and go through the same calls in the same
 * order: store_append per record; every tick (200 ms, the daemon's
 * TICK_NS) store_sync, then an epoch closes if sessions ended since the
 * last tick, or after 10 s or 100k records, as in the daemon's loop;
 * at the end a last sync and the "shutdown" epoch. The store is created
 * before and closed after the timed part. --min-output N replays only the
 * session starts and ends and the O steps of at least N bytes (bulk output
 * such as cat's); --no-input replays all but the I steps (the terminal's
 * output, echo included, and the process records); the bytes of the steps
 * left out are not counted.
 *
 * Pinned to one CPU, it times that loop (wall clock and the process's CPU
 * time, user and system apart) and prints one JSON object on stdout: bytes
 * in, records, time in store_sync and store_seal_epoch, and the bytes the
 * store holds afterwards (segments, index, the whole directory).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "sealtrail/events.h"
#include "store/store.h"

#define NS 1000000000ull
/* as in userspace/daemon/main.c */
#define TICK_NS (200ull * 1000000ull)
#define EPOCH_NS (10ull * NS)
#define EPOCH_RECORDS 100000
#define MAX_SESSIONS 4096
/* read the clocks (event times, the sync tick) once per this many steps */
#define CLOCK_EVERY 8
#define SSHD_PID_BASE 40000u

enum step_kind {
	STEP_START = 'S',
	STEP_INPUT = 'I',
	STEP_ECHO = 'K',
	STEP_OUTPUT = 'O',
	STEP_EXEC = 'X',
	STEP_EXIT = 'Q',
	STEP_END = 'E',
};

struct step {
	char kind;
	uint32_t sid;
	uint32_t pid, ppid; /* X, Q */
	uint32_t status; /* Q, E */
	uint32_t tty; /* S */
	uint64_t off, len; /* I, K, O: bytes of the corpus */
	char *path; /* X */
	uint8_t *argv; /* X */
	size_t argv_len;
};

struct plan {
	struct step *steps;
	size_t n, cap;
	uint64_t corpus_used;
};

/* A session's open record of one stream, as chunk_add() gathers it. */
struct slot {
	struct buf data, timing;
	unsigned writes;
	bool has_output; /* more than echoes */
};

struct bench {
	struct store st;
	struct buf rec, timing;
	struct slot *slots; /* [sid * 2 + is_output] */
	unsigned keys_per_record;
	const uint8_t *corpus;
	size_t chunk;
	uint64_t tick_ns;
	uint64_t min_output;
	bool no_input;
	bool ends_pending; /* a session ended since the last epoch */
	uint64_t ev_wall, ev_boot; /* the event time of the step being replayed */
	uint32_t tty_of[MAX_SESSIONS];
	/* results */
	uint64_t raw_in, raw_echo, raw_out, records, tty_in_records, tty_echo_records,
	    tty_out_records;
	uint64_t syncs, epochs, sync_ns, seal_ns;
	/* envelope bytes by what they hold (the store leaves the last one in sbuf) */
	uint64_t *sealed_to; /* where emit() counts the next envelope */
	uint64_t sealed_in, sealed_echo, sealed_out, sealed_other, sealed_epochs;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: seal-bench --plan FILE --corpus FILE --store DIR [--chunk BYTES]"
		   " [--cpu N] [--tick-ms MS] [--min-output BYTES]\n"
		   "       [--keys-per-record N] [--no-input]\n"
		   "Replays a terminal session mix through the store on one CPU; prints JSON.\n");
}

static void session_id(uint32_t sid, uint8_t id[ST_ID_LEN])
{
	memset(id, 0x5e, ST_ID_LEN);
	put_be32(id + ST_ID_LEN - 4, sid);
}

static int parse_line(struct plan *p, char *line, unsigned lineno)
{
	struct step s = {0};
	char path[4096], hex[65536];
	unsigned long long len;
	int n = 0;

	s.kind = line[0];
	switch (s.kind) {
	case STEP_START:
		n = sscanf(line, "S %u %u", &s.sid, &s.tty) == 2;
		break;
	case STEP_INPUT:
	case STEP_ECHO:
	case STEP_OUTPUT:
		n = sscanf(line + 1, " %u %llu", &s.sid, &len) == 2 && len > 0;
		s.len = len;
		s.off = p->corpus_used;
		p->corpus_used += len;
		break;
	case STEP_EXEC:
		n = sscanf(line, "X %u %u %u %4095s %65535s", &s.sid, &s.pid, &s.ppid, path, hex) ==
			5 &&
		    strlen(hex) % 2 == 0;
		if (n) {
			s.argv_len = strlen(hex) / 2;
			s.argv = malloc(s.argv_len + 1);
			s.path = strdup(path);
			if (!s.argv || !s.path || hex_decode(hex, s.argv, s.argv_len))
				n = 0;
		}
		break;
	case STEP_EXIT:
		n = sscanf(line, "Q %u %u %u", &s.sid, &s.pid, &s.status) == 3;
		break;
	case STEP_END:
		n = sscanf(line, "E %u %u", &s.sid, &s.status) == 2;
		break;
	}
	if (!n || s.sid >= MAX_SESSIONS) {
		fprintf(stderr, "plan line %u: cannot parse: %.60s\n", lineno, line);
		return -EINVAL;
	}
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 4096;
		struct step *steps = realloc(p->steps, cap * sizeof(*steps));

		if (!steps)
			return -ENOMEM;
		p->steps = steps;
		p->cap = cap;
	}
	p->steps[p->n++] = s;
	return 0;
}

static int read_plan(const char *path, struct plan *p)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	int err = 0;

	if (!f) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -errno;
	}
	while (!err && getline(&line, &cap, f) > 0) {
		lineno++;
		line[strcspn(line, "\n")] = 0;
		if (line[0] && line[0] != '#')
			err = parse_line(p, line, lineno);
	}
	free(line);
	fclose(f);
	return err;
}

/* Keep the session starts and ends and the output steps of at least min bytes. */
/*
 * --min-output N: only session starts and ends and output writes of at
 * least N bytes; --no-input: everything but what the client typed.
 */
static void keep_steps(struct plan *p, uint64_t min, bool no_input)
{
	size_t n = 0;

	for (size_t i = 0; i < p->n; i++) {
		struct step *s = &p->steps[i];
		bool keep = min ? s->kind == STEP_START || s->kind == STEP_END ||
				      (s->kind == STEP_OUTPUT && s->len >= min)
				: !(no_input && s->kind == STEP_INPUT);

		if (keep) {
			p->steps[n++] = *s;
		} else {
			free(s->path);
			free(s->argv);
		}
	}
	p->n = n;
}

static void free_plan(struct plan *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->steps[i].path);
		free(p->steps[i].argv);
	}
	free(p->steps);
}

static int begin(struct bench *b, uint16_t type, uint32_t sid)
{
	uint8_t id[ST_ID_LEN];

	session_id(sid, id);
	return rec_begin(&b->rec, type, id, b->ev_wall, b->ev_boot);
}

static int emit(struct bench *b)
{
	int err = store_append(&b->st, &b->rec);

	b->records++;
	*b->sealed_to += b->st.sbuf.len;
	b->sealed_to = &b->sealed_other;
	return err;
}

static int sync_store(struct bench *b)
{
	uint64_t t0 = clock_ns(CLOCK_MONOTONIC);
	int err = store_sync(&b->st);

	b->sync_ns += clock_ns(CLOCK_MONOTONIC) - t0;
	b->syncs++;
	return err;
}

static int seal_epoch(struct bench *b, const char *reason)
{
	uint64_t t0 = clock_ns(CLOCK_MONOTONIC);
	int err = store_seal_epoch(&b->st, reason);

	b->ends_pending = false;
	b->seal_ns += clock_ns(CLOCK_MONOTONIC) - t0;
	b->epochs++;
	b->records++;
	b->sealed_epochs += b->st.sbuf.len;
	return err;
}

/* The fields session_materialize() writes for an interactive login. */
static int session_start(struct bench *b, const struct step *s)
{
	char tty[32];
	int err;

	b->tty_of[s->sid] = s->tty;
	snprintf(tty, sizeof(tty), "pts/%u", s->tty);
	err = begin(b, REC_SESSION_START, s->sid);
	err = err ?: rec_add_str(&b->rec, TAG_HOST, "bastion-bench");
	err = err ?: rec_add_str(&b->rec, TAG_BOOT_ID, "5e5e5e5e-5e5e-5e5e-5e5e-5e5e5e5e5e5e");
	err = err ?: rec_add_u64(&b->rec, TAG_LEADER_PID, SSHD_PID_BASE + s->sid);
	err = err ?: rec_add_u64(&b->rec, TAG_LISTENER_PID, 812);
	err = err ?: rec_add_u64(&b->rec, TAG_ADOPTED, 0);
	err = err ?: rec_add_str(&b->rec, TAG_SOURCE_IP, "203.0.113.17");
	err = err ?: rec_add_u64(&b->rec, TAG_SOURCE_PORT, 50000 + s->sid % 10000);
	err = err ?: rec_add_str(&b->rec, TAG_LOCAL_IP, "192.0.2.10");
	err = err ?: rec_add_u64(&b->rec, TAG_LOCAL_PORT, 22);
	err = err ?: rec_add_str(&b->rec, TAG_USER, "alice");
	err = err ?: rec_add_u64(&b->rec, TAG_LOGINUID, 1001);
	err = err ?: rec_add_u64(&b->rec, TAG_UID, 1001);
	err = err ?: rec_add_str(&b->rec, TAG_TTY, tty);
	err = err ?: rec_add_str(&b->rec, TAG_KIND, "shell");
	return err ?: emit(b);
}

/* Write a session's slot as on_tty()/chunk_add() would: one REC_TTY record. */
static int flush_slot(struct bench *b, uint32_t sid, bool out)
{
	struct slot *sl = &b->slots[sid * 2 + out];
	int err;

	if (!sl->writes)
		return 0;
	err = begin(b, REC_TTY, sid);
	err = err ?: rec_add_u64(&b->rec, TAG_STREAM, out ? STREAM_OUT : STREAM_IN);
	err = err ?: rec_add_u64(&b->rec, TAG_TTY_INDEX, b->tty_of[sid]);
	err = err ?: rec_add_u64(&b->rec, TAG_PID, SSHD_PID_BASE + sid);
	err = err ?: rec_add_bytes(&b->rec, TAG_DATA, sl->data.data, sl->data.len);
	if (sl->writes > 1)
		err = err ?: rec_add_bytes(&b->rec, TAG_TIMING, sl->timing.data, sl->timing.len);
	b->sealed_to = !out ? &b->sealed_in : sl->has_output ? &b->sealed_out : &b->sealed_echo;
	err = err ?: emit(b);
	if (!out)
		b->tty_in_records++;
	else if (sl->has_output)
		b->tty_out_records++;
	else
		b->tty_echo_records++;
	sl->data.len = sl->timing.len = 0;
	sl->writes = 0;
	sl->has_output = false;
	return err;
}

/* Before any other record of the session: its gathered bytes. */
static int flush_session(struct bench *b, uint32_t sid)
{
	int err = flush_slot(b, sid, false);

	return err ?: flush_slot(b, sid, true);
}

/* One write of a stream into its slot; entries 15 us apart. */
static int add_write(struct bench *b, uint32_t sid, bool out, const uint8_t *p, size_t n)
{
	struct slot *sl = &b->slots[sid * 2 + out];
	uint8_t entry[TIMING_ENTRY_LEN];
	int err = 0;

	if (sl->writes && sl->data.len + n > b->chunk)
		err = flush_slot(b, sid, out);
	put_be32(entry, (uint32_t)(sl->writes * 15000));
	put_be32(entry + 4, (uint32_t)n);
	err = err ?: buf_add(&sl->data, p, n);
	err = err ?: buf_add(&sl->timing, entry, sizeof(entry));
	sl->writes++;
	return err ?: sl->data.len >= b->chunk ? flush_slot(b, sid, out) : 0;
}

/*
 * on_tty() through chunk_add(): input comes from sshd writing the master,
 * output from reading it, in 4 KiB events.
 */
static int tty_records(struct bench *b, const struct step *s)
{
	bool in = s->kind == STEP_INPUT, echo = s->kind == STEP_ECHO;
	struct slot *sl = &b->slots[s->sid * 2 + !in];
	int err = 0;

	if (in || echo) {
		err = add_write(b, s->sid, !in, b->corpus + s->off, s->len);
		/* the hold: a few keystrokes' time, then the record goes */
		if (!err && !sl->has_output && sl->writes >= b->keys_per_record)
			err = flush_slot(b, s->sid, !in);
	} else {
		sl->has_output = true;
		for (uint64_t done = 0; !err && done < s->len; done += ST_TTY_CHUNK) {
			size_t n = s->len - done < ST_TTY_CHUNK ? s->len - done : ST_TTY_CHUNK;

			err = add_write(b, s->sid, true, b->corpus + s->off + done, n);
		}
	}
	if (in)
		b->raw_in += s->len;
	else if (echo)
		b->raw_echo += s->len;
	else
		b->raw_out += s->len;
	return err;
}

/* The REC_FORK of the ST_EV_FORK case and the fields of on_exec(). */
static int exec_records(struct bench *b, const struct step *s)
{
	int err;

	err = begin(b, REC_FORK, s->sid);
	err = err ?: rec_add_u64(&b->rec, TAG_PID, s->ppid);
	err = err ?: rec_add_u64(&b->rec, TAG_CHILD_PID, s->pid);
	err = err ?: emit(b);
	err = err ?: begin(b, REC_EXEC, s->sid);
	err = err ?: rec_add_u64(&b->rec, TAG_PID, s->pid);
	err = err ?: rec_add_u64(&b->rec, TAG_PPID, s->ppid);
	err = err ?: rec_add_u64(&b->rec, TAG_UID, 1001);
	err = err ?: rec_add_u64(&b->rec, TAG_EUID, 1001);
	err = err ?: rec_add_u64(&b->rec, TAG_GID, 1001);
	err = err ?: rec_add_u64(&b->rec, TAG_LOGINUID, 1001);
	err = err ?: rec_add_u64(&b->rec, TAG_SESSIONID, 100 + s->sid);
	err = err ?: rec_add_str(&b->rec, TAG_FILENAME, s->path);
	/* a typical working directory: a project under the user's home */
	err = err ?: rec_add_str(&b->rec, TAG_CWD, "/home/operator/deploy/site-config");
	err = err ?: rec_add_bytes(&b->rec, TAG_ARGV, s->argv, s->argv_len);
	err = err ?: rec_add_u64(&b->rec, TAG_ARGV_TOTAL, s->argv_len);
	err = err ?: rec_add_u64(&b->rec, TAG_ARGV_TRUNCATED, 0);
	return err ?: emit(b);
}

static int exit_record(struct bench *b, const struct step *s)
{
	int err;

	err = begin(b, REC_EXIT, s->sid);
	err = err ?: rec_add_u64(&b->rec, TAG_PID, s->pid);
	err = err ?: rec_add_u64(&b->rec, TAG_STATUS, s->status);
	return err ?: emit(b);
}

/* end_session(): the end record; the epoch closes at the next tick (tracker_settle()). */
static int session_end(struct bench *b, const struct step *s)
{
	int err;

	err = begin(b, REC_SESSION_END, s->sid);
	err = err ?: rec_add_str(&b->rec, TAG_REASON, "logout");
	err = err ?: rec_add_u64(&b->rec, TAG_STATUS, s->status);
	b->ends_pending = true;
	return err ?: emit(b);
}

static int replay(struct bench *b, const struct plan *p)
{
	uint64_t last_tick = clock_ns(CLOCK_MONOTONIC);
	int err = 0;

	for (size_t i = 0; i < p->n && !err; i++) {
		const struct step *s = &p->steps[i];
		bool clocks = i % CLOCK_EVERY == 0;
		uint64_t now;

		/*
		 * Events carry their kernel timestamp, so the daemon reads no
		 * clock per event: read them every CLOCK_EVERY steps (they were
		 * 3% of the loop) and count up by a nanosecond in between.
		 */
		if (clocks) {
			b->ev_wall = clock_ns(CLOCK_REALTIME);
			b->ev_boot = clock_ns(CLOCK_BOOTTIME);
		} else {
			b->ev_wall++;
			b->ev_boot++;
		}
		switch (s->kind) {
		case STEP_START:
			err = session_start(b, s);
			break;
		case STEP_INPUT:
		case STEP_ECHO:
		case STEP_OUTPUT:
			err = tty_records(b, s);
			break;
		case STEP_EXEC:
			err = flush_session(b, s->sid) ?: exec_records(b, s);
			break;
		case STEP_EXIT:
			err = flush_session(b, s->sid) ?: exit_record(b, s);
			break;
		case STEP_END:
			err = flush_session(b, s->sid) ?: session_end(b, s);
			break;
		}
		if (!clocks)
			continue;
		now = clock_ns(CLOCK_MONOTONIC);
		if (!err && now - last_tick >= b->tick_ns) {
			err = sync_store(b);
			if (!err && b->ends_pending)
				err = seal_epoch(b, "session end");
			else if (!err && (now - b->st.epoch_start_ns >= EPOCH_NS ||
					  b->st.epoch_records >= EPOCH_RECORDS))
				err = seal_epoch(
				    b, now - b->st.epoch_start_ns >= EPOCH_NS ? "time" : "count");
			last_tick = now;
		}
	}
	/* the daemon's shutdown: gathered bytes, a sync, then the last epoch */
	for (uint32_t sid = 0; sid < MAX_SESSIONS && !err; sid++)
		err = flush_session(b, sid);
	err = err ?: sync_store(b);
	err = err ?: (b->ends_pending ? seal_epoch(b, "session end") : 0);
	return err ?: seal_epoch(b, "shutdown");
}

/* Apparent bytes of the regular files under dir whose names start with prefix (NULL: all). */
static uint64_t dir_bytes(const char *dir, const char *prefix)
{
	char path[4200];
	struct dirent *d;
	uint64_t sum = 0;
	DIR *dp = opendir(dir);

	if (!dp)
		return 0;
	while ((d = readdir(dp))) {
		struct stat sb;

		if (d->d_name[0] == '.' || (prefix && strncmp(d->d_name, prefix, strlen(prefix))))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		if (lstat(path, &sb))
			continue;
		if (S_ISDIR(sb.st_mode))
			sum += dir_bytes(path, NULL);
		else if (S_ISREG(sb.st_mode))
			sum += sb.st_size;
	}
	closedir(dp);
	return sum;
}

static double tv_s(struct timeval tv)
{
	return tv.tv_sec + tv.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"plan", required_argument, NULL, 'p'},
	    {"corpus", required_argument, NULL, 'c'},
	    {"store", required_argument, NULL, 's'},
	    {"chunk", required_argument, NULL, 'k'},
	    {"cpu", required_argument, NULL, 'u'},
	    {"tick-ms", required_argument, NULL, 't'},
	    {"min-output", required_argument, NULL, 'm'},
	    {"keys-per-record", required_argument, NULL, 'K'},
	    {"no-input", no_argument, NULL, 'I'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	const char *plan_path = NULL, *corpus_path = NULL, *dir = NULL;
	struct bench b = {.chunk = 65536, .tick_ns = TICK_NS, .keys_per_record = 7};
	struct plan plan = {0};
	struct rusage ru0, ru1;
	struct stat sb;
	char path[4200];
	uint8_t *map = MAP_FAILED;
	uint64_t wall0, wall1, cpu0, cpu1;
	int opt, cpu = -1, fd = -1, err, rc = 1;
	bool opened = false;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			plan_path = optarg;
			break;
		case 'c':
			corpus_path = optarg;
			break;
		case 's':
			dir = optarg;
			break;
		case 'k':
			b.chunk = strtoul(optarg, NULL, 0);
			break;
		case 'u':
			cpu = atoi(optarg);
			break;
		case 't':
			b.tick_ns = strtoull(optarg, NULL, 0) * 1000000ull;
			break;
		case 'm':
			b.min_output = strtoull(optarg, NULL, 0);
			break;
		case 'K':
			b.keys_per_record = strtoul(optarg, NULL, 0);
			break;
		case 'I':
			b.no_input = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!plan_path || !corpus_path || !dir || optind != argc || b.chunk == 0 ||
	    b.chunk > REC_MAX_LEN / 2 || b.tick_ns == 0 || b.keys_per_record == 0) {
		usage(stderr);
		return 2;
	}
	log_set_level(LOG_WARN);
	if (cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set)) {
			fprintf(stderr, "seal-bench: cannot pin to CPU %d: %s\n", cpu,
				strerror(errno));
			return 1;
		}
	}
	if (read_plan(plan_path, &plan))
		goto out;
	b.slots = calloc(2 * MAX_SESSIONS, sizeof(*b.slots));
	if (!b.slots)
		goto out;
	/* before the clock starts: the steps left out must cost nothing */
	if (b.min_output || b.no_input)
		keep_steps(&plan, b.min_output, b.no_input);
	fd = open(corpus_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb)) {
		fprintf(stderr, "%s: %s\n", corpus_path, strerror(errno));
		goto out;
	}
	if ((uint64_t)sb.st_size != plan.corpus_used) {
		fprintf(stderr, "%s: %lld bytes, but the plan uses %llu\n", corpus_path,
			(long long)sb.st_size, (unsigned long long)plan.corpus_used);
		goto out;
	}
	/* in memory before the clock starts, as the daemon's ring buffer is */
	map = mmap(NULL, sb.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	if (map == MAP_FAILED) {
		fprintf(stderr, "%s: cannot map: %s\n", corpus_path, strerror(errno));
		goto out;
	}
	b.corpus = map;
	err = store_open(&b.st, dir, STORE_WRITE | STORE_CREATE);
	if (err) {
		fprintf(stderr, "seal-bench: cannot create the store %s: %s\n", dir,
			strerror(-err));
		goto out;
	}
	opened = true;
	b.records = b.st.next_seq - 1; /* what store_open wrote */
	b.sealed_to = &b.sealed_other;

	getrusage(RUSAGE_SELF, &ru0);
	wall0 = clock_ns(CLOCK_MONOTONIC);
	cpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	err = replay(&b, &plan);
	cpu1 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	wall1 = clock_ns(CLOCK_MONOTONIC);
	getrusage(RUSAGE_SELF, &ru1);
	if (err) {
		fprintf(stderr, "seal-bench: replay failed: %s\n", strerror(-err));
		goto out;
	}
	if (b.records != b.st.next_seq - 1) {
		fprintf(stderr, "seal-bench: %llu records counted, the store has %llu\n",
			(unsigned long long)b.records, (unsigned long long)(b.st.next_seq - 1));
		goto out;
	}
	store_close(&b.st);
	opened = false;

#define U(x) ((unsigned long long)(x))
	printf("{\"chunk\":%zu,\"keys_per_record\":%u,\"min_output\":%llu,\"cpu\":%d,"
	       "\"tick_ms\":%llu,\"steps\":%zu,",
	       b.chunk, b.keys_per_record, U(b.min_output), cpu, U(b.tick_ns / 1000000), plan.n);
	printf("\"raw_bytes\":%llu,\"raw_in\":%llu,\"raw_echo\":%llu,\"raw_out\":%llu,",
	       U(b.raw_in + b.raw_echo + b.raw_out), U(b.raw_in), U(b.raw_echo), U(b.raw_out));
	printf("\"records\":%llu,\"tty_in_records\":%llu,\"tty_echo_records\":%llu,"
	       "\"tty_out_records\":%llu,",
	       U(b.records), U(b.tty_in_records), U(b.tty_echo_records), U(b.tty_out_records));
	printf("\"wall_s\":%.6f,\"cpu_s\":%.6f,\"user_s\":%.6f,\"sys_s\":%.6f,",
	       (wall1 - wall0) / 1e9, (cpu1 - cpu0) / 1e9, tv_s(ru1.ru_utime) - tv_s(ru0.ru_utime),
	       tv_s(ru1.ru_stime) - tv_s(ru0.ru_stime));
	printf("\"syncs\":%llu,\"sync_s\":%.6f,\"epochs\":%llu,\"seal_s\":%.6f,"
	       "\"vol_ctxsw\":%ld,\"invol_ctxsw\":%ld,",
	       U(b.syncs), b.sync_ns / 1e9, U(b.epochs), b.seal_ns / 1e9,
	       ru1.ru_nvcsw - ru0.ru_nvcsw, ru1.ru_nivcsw - ru0.ru_nivcsw);
	printf("\"sealed_in\":%llu,\"sealed_echo\":%llu,\"sealed_out\":%llu,"
	       "\"sealed_other\":%llu,\"sealed_epochs\":%llu,",
	       U(b.sealed_in), U(b.sealed_echo), U(b.sealed_out), U(b.sealed_other),
	       U(b.sealed_epochs));
	snprintf(path, sizeof(path), "%s/segments", dir);
	printf("\"segment_bytes\":%llu,\"index_bytes\":%llu,\"store_bytes\":%llu}\n",
	       U(dir_bytes(path, "seg-")), U(dir_bytes(dir, "index.sqlite")),
	       U(dir_bytes(dir, NULL)));
#undef U
	rc = 0;
out:
	if (opened)
		store_close(&b.st);
	buf_free(&b.rec);
	buf_free(&b.timing);
	if (map != MAP_FAILED)
		munmap(map, sb.st_size);
	if (fd >= 0)
		close(fd);
	free_plan(&plan);
	return rc;
}
