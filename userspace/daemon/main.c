/*
 * sealtraild: loads the capture programs, follows sshd's sessions and writes
 * them to the store until SIGTERM or SIGINT.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "capture/capture.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/access.h"
#include "daemon/config.h"
#include "daemon/priority.h"
#include "access/roles.h"
#include "session/procfs.h"
#include "session/tracker.h"
#include "store/store.h"

#define DEFAULT_NICE -20
/*
 * sysexits' EX_CONFIG: the keys given do not fit the store (a changed or
 * missing auditor key, an epoch key that does not continue the log). The
 * unit file's RestartPreventExitStatus keeps systemd from retrying.
 */
#define EXIT_CONFIG 78
#define TICK_NS (200ull * 1000000ull)
#define SCAN_NS (1000ull * 1000000ull)
/* the backlog is sealed this much per loop, between looks at the ring (~4 ms) */
#define DRAIN_SLICE_BYTES (1u << 20)
#define EPOCH_NS (10ull * 1000000000ull)

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	stop_requested = sig;
}

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: sealtraild [options]\n"
	    "Record every ssh login on this host from the kernel into a store.\n\n"
	    "  --store DIR           store directory (default " STORE_DEFAULT_DIR ")\n"
	    "  --sshd PATH           sshd binary whose listeners are followed; repeatable\n"
	    "                        (default /usr/sbin/sshd, /usr/sbin/sshd-session, and\n"
	    "                        sshd-session and sshd-auth in /usr/lib/openssh and\n"
	    "                        /usr/libexec/openssh)\n"
	    "  --ringbuf-size BYTES  kernel ring buffer, a power of two (default 16 MiB)\n"
	    "  --capture-cap-bytes N bytes of a non-interactive login's stdin/stdout/stderr\n"
	    "                        stored per session (default 8 MiB, 0 = all); past it\n"
	    "                        the streams are counted and SHA-256-hashed\n"
	    "  --subsystem PATH      command that makes a login kind \"subsystem\"; repeatable\n"
	    "                        (default /usr/lib/openssh/sftp-server and internal-sftp,\n"
	    "                        sshd's in-process sftp, which the kernel recognises)\n"
	    "  --transfer PATH       program whose files are summarised (path, size, SHA-256);\n"
	    "                        repeatable (default sftp-server, /usr/bin/scp, rsync)\n"
	    "  --rt-priority N       run the collector's event loop as SCHED_FIFO N (default 1,\n"
	    "                        the lowest; 0 = not realtime): it must drain the\n"
	    "                        kernel's ring buffer ahead of the sessions filling it,\n"
	    "                        or their bytes become gaps\n"
	    "  --nice N              without realtime (0 above, or refused): nice of the event\n"
	    "                        loop and its autogroup (default -20)\n"
	    "  --auditor-pubkey FILE also wrap every segment's key to this X25519 public key\n"
	    "                        (PEM, from `sealtrail auditor-keygen`): its private key\n"
	    "                        reads a copy of the store off-host. Once a store has\n"
	    "                        one, starting without it or with another is refused\n"
	    "  --auditor-key-change  allow --auditor-pubkey to replace the store's auditor\n"
	    "                        key, or its absence to stop wrapping to it\n"
	    "  --backlog MIB         during a burst of output (4 MiB or more in 200 ms), queue\n"
	    "                        records in memory, up to MIB MiB and ~10 s, and seal\n"
	    "                        them once it is over: sealing's CPU (zstd, mostly) is\n"
	    "                        spent after the burst, not during it. Default: 1/16 of\n"
	    "                        RAM or 1/4 of this cgroup's memory limit, at most 512;\n"
	    "                        0: seal every record at once. A crash loses what waits\n"
	    "                        there\n"
	    "  --log-level LEVEL     error, warning, info (default) or debug\n"
	    "  --socket PATH         serve `sealtrail` commands of non-root users on this\n"
	    "                        Unix socket (default " ACCESS_DEFAULT_SOCKET ", mode 0666:\n"
	    "                        the caller's uid from the kernel is what counts)\n"
	    "  --no-socket           serve none: only root reads the store\n"
	    "  --roles FILE          who may ask (default " ROLES_DEFAULT_PATH "; absent:\n"
	    "                        only root): lines \"auditor: alice, @auditors\" and\n"
	    "                        \"admin: carol, @wheel\"; read at each request. Every\n"
	    "                        request is stored as a sealed access record first\n"
	    "                        (`sealtrail access-log`)\n"
	    "  --cli PATH            the sealtrail binary that runs the requests (default:\n"
	    "                        next to sealtraild, or ../bin/sealtrail from it)\n"
	    "  --consumer-delay-ms N testing: pause N ms after each ring-buffer read, to\n"
	    "                        force losses and check that they become gap records\n"
	    "  --version, --help\n\n"
	    "Checkpoint sinks: each signed checkpoint (a C2SP signed note, at least every\n"
	    "10 s, at each session end and at shutdown) also goes to every sink given;\n"
	    "each option may be repeated (up to 8 of a kind) and combined:\n"
	    "  --checkpoint-file PATH append it to PATH (fdatasync'ed), e.g. on another mount,\n"
	    "                        from a thread of its own: a hung mount stops no recording\n"
	    "  --checkpoint-command CMD\n"
	    "                        run /bin/sh -c CMD with the note on stdin and\n"
	    "                        SEALTRAIL_STORE_ID, SEALTRAIL_EPOCH, SEALTRAIL_TREE_SIZE\n"
	    "                        set; not waited for: killed (its process group) after\n"
	    "                        5 s; a failure is logged with its exit status\n"
	    "  --checkpoint-syslog   send it to syslog (/dev/log, facility authpriv, notice):\n"
	    "                        \"sealtrail-checkpoint store=ID epoch=N size=N note=B64\",\n"
	    "                        B64 the whole note; `sealtrail verify --against` reads\n"
	    "                        such lines, `sealtrail checkpoint --decode` prints notes\n"
	    "A sink that fails never stops recording.\n\n"
	    "Runs in the foreground and logs to stderr; stop it with SIGTERM or SIGINT,\n"
	    "which flushes and syncs the store. `sealtrail status` shows its state.\n");
}

/* What status.json says first, whatever the state: "{...," with no closing brace. */
static void status_head(struct buf *b, const char *state, uint64_t started_ns)
{
	char started[40], now[40];

	format_rfc3339(started_ns, started);
	format_rfc3339(clock_ns(CLOCK_REALTIME), now);
	buf_addf(b,
		 "{\"running\":%s,\"state\":\"%s\",\"pid\":%d,\"version\":\"%s\",\"started\":"
		 "\"%s\",\"updated\":\"%s\"",
		 strcmp(state, "stopped") ? "true" : "false", state, getpid(), SEALTRAIL_VERSION,
		 started, now);
}

/* Replace store_dir/status.json with b (freed). */
static int status_save(const char *store_dir, struct buf *b)
{
	int err =
	    b->data ? write_file_replace(store_dir, "status.json", b->data, b->len, 0644) : -ENOMEM;

	if (err)
		log_warn("cannot write %s/status.json: %s", store_dir, strerror(-err));
	buf_free(b);
	return err;
}

static int write_status(struct tracker *t, struct capture *cap, const char *sched,
			const char *store_dir, uint64_t started_ns, uint32_t ringbuf, bool running)
{
	const struct backlog *bl = &t->store->backlog;
	uint64_t cnt[ST_CNT_MAX];
	struct buf b = {0};

	capture_counters(cap, cnt);
	status_head(&b, running ? "recording" : "stopped", started_ns);
	buf_addf(&b, ",\"programs\":[");
	for (unsigned i = 0; i < cap->nprogs; i++)
		buf_addf(&b, "%s\"%s\"", i ? "," : "", capture_prog_name(cap, i));
	buf_addf(&b, "],\"listeners\":[");
	for (unsigned i = 0; i < t->nlisteners; i++)
		buf_addf(&b, "%s%u", i ? "," : "", t->listeners[i]);
	buf_addf(
	    &b,
	    "],\"live_sessions\":%u,\"sessions\":%llu,\"records\":%llu,\"events\":%llu,"
	    "\"lost_events\":%llu,\"lost_bytes\":%llu,\"args_truncated\":%llu,"
	    "\"read_failed\":%llu,\"untracked_children\":%llu,\"bad_events\":%llu,"
	    "\"preauth_dropped\":%llu,\"ringbuf_bytes\":%u,\"ringbuf_peak_used\":%llu,"
	    "\"longest_drain_ms\":%llu,\"scheduling\":\"%s\",\"backlog_limit\":%llu,"
	    "\"backlog_bytes\":%llu,\"backlog_records\":%llu,\"backlog_peak\":%llu,"
	    "\"backlog_queued_records\":%llu,\"backlog_dropped\":%llu,\"index_errors\":%llu}\n",
	    t->live, (unsigned long long)t->sessions_total, (unsigned long long)t->records,
	    (unsigned long long)cnt[ST_CNT_EVENTS], (unsigned long long)cnt[ST_CNT_LOST_EVENTS],
	    (unsigned long long)cnt[ST_CNT_LOST_BYTES],
	    (unsigned long long)cnt[ST_CNT_ARGS_TRUNCATED],
	    (unsigned long long)cnt[ST_CNT_READ_FAILED], (unsigned long long)cnt[ST_CNT_PROC_FULL],
	    (unsigned long long)t->bad_events, (unsigned long long)t->preauth_dropped, ringbuf,
	    (unsigned long long)cap->peak_used,
	    (unsigned long long)(cap->longest_drain_ns / 1000000), sched,
	    (unsigned long long)bl->max, (unsigned long long)backlog_bytes(bl),
	    (unsigned long long)bl->records, (unsigned long long)bl->peak_bytes,
	    (unsigned long long)bl->queued_records, (unsigned long long)bl->dropped,
	    (unsigned long long)t->store->index_errors);
	return status_save(store_dir, &b);
}

/*
 * The store is ours (its LOCK is held) but not open yet: say so in
 * status.json at once, or `sealtrail status` would show the last run's
 * numbers as this one's while the log is read back (and the index, after
 * an upgrade, rebuilt) and the programs are loaded.
 */
static void status_starting(void *arg)
{
	struct buf b = {0};

	status_head(&b, "starting", clock_ns(CLOCK_REALTIME));
	buf_addf(&b, "}\n");
	status_save(arg, &b);
}

/* The sealtrail binary that serves socket requests: installed or built alongside. */
static char *find_cli(void)
{
	static const char *const rel[] = {"sealtrail", "../bin/sealtrail"};
	char exe[4096], *slash, *path;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return NULL;
	exe[n] = 0;
	slash = strrchr(exe, '/');
	if (!slash)
		return NULL;
	*slash = 0;
	for (unsigned i = 0; i < 2; i++) {
		if (asprintf(&path, "%s/%s", exe, rel[i]) < 0)
			return NULL;
		if (!access(path, X_OK))
			return path;
		free(path);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"store", required_argument, NULL, 's'},
	    {"sshd", required_argument, NULL, 'd'},
	    {"ringbuf-size", required_argument, NULL, 'r'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"consumer-delay-ms", required_argument, NULL, 'c'},
	    {"capture-cap-bytes", required_argument, NULL, 'C'},
	    {"subsystem", required_argument, NULL, 'S'},
	    {"transfer", required_argument, NULL, 'T'},
	    {"checkpoint-file", required_argument, NULL, 'K'},
	    {"nice", required_argument, NULL, 'n'},
	    {"rt-priority", required_argument, NULL, 'F'},
	    {"auditor-pubkey", required_argument, NULL, 'A'},
	    {"auditor-key-change", no_argument, NULL, 'X'},
	    {"checkpoint-command", required_argument, NULL, 'P'},
	    {"checkpoint-syslog", no_argument, NULL, 'Y'},
	    {"socket", required_argument, NULL, 'O'},
	    {"no-socket", no_argument, NULL, 'N'},
	    {"roles", required_argument, NULL, 'R'},
	    {"cli", required_argument, NULL, 'L'},
	    {"backlog", required_argument, NULL, 'B'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	const char *store_dir = STORE_DEFAULT_DIR;
	unsigned long ringbuf = 16u << 20, delay_ms = 0;
	long nice_level = DEFAULT_NICE;
	long rt_priority = 1;
	bool unclean;
	unsigned long long cap = 0;
	/* the backlog's memfd is charged to our cgroup: its default stays well under the limit */
	uint64_t cgroup_limit = procfs_cgroup_memory_limit("/proc/self/cgroup", "/sys/fs/cgroup");
	uint64_t backlog_max = backlog_default_max(cgroup_limit);
	const char *auditor_file = NULL;
	uint8_t auditor_pk[AUDITOR_KEY_LEN];
	struct store_options store_opts = {.auditor = STORE_AUDITOR_NONE};
	struct checkpoint_sinks sinks = {0};
	bool cap_set = false;
	const char *subsystems[TRACKER_MAX_SUBSYSTEMS];
	unsigned nsub = 0;
	const char *transfers[8] = {"/usr/lib/openssh/sftp-server", "/usr/bin/scp",
				    "/usr/bin/rsync"};
	unsigned ntransfer = 0, ntransfer_default = 3;
	struct store store;
	struct capture capture = {0};
	const char *sched = "normal";
	struct tracker t;
	struct sigaction sa = {.sa_handler = on_signal};
	const char *socket_path = ACCESS_DEFAULT_SOCKET, *roles_path = ROLES_DEFAULT_PATH;
	char *cli_path = NULL;
	struct access_server server = {.listen_fd = -1};
	uint64_t started, last_tick, last_scan;
	/* sessions ended: tracker_settle() once the backlog has sealed settle_mark */
	bool settle_wait = false;
	uint64_t settle_mark = 0;
	int opt, err, ret;

	log_set_prefix("sealtraild");
	memset(&t, 0, sizeof(t));
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			store_dir = optarg;
			break;
		case 'd':
			if (t.nsshd < TRACKER_MAX_SSHD)
				t.sshd_paths[t.nsshd++] = optarg;
			break;
		case 'r':
			ringbuf = strtoul(optarg, NULL, 0);
			if (ringbuf < 4096 || ringbuf > (1ul << 30) || (ringbuf & (ringbuf - 1))) {
				fprintf(stderr,
					"sealtraild: --ringbuf-size %s: need a power of two"
					" between 4096 and 1 GiB\n",
					optarg);
				ret = 2;
				goto out_early;
			}
			break;
		case 'l':
			if (!strcmp(optarg, "error"))
				log_set_level(LOG_ERROR);
			else if (!strcmp(optarg, "warning"))
				log_set_level(LOG_WARN);
			else if (!strcmp(optarg, "info"))
				log_set_level(LOG_INFO);
			else if (!strcmp(optarg, "debug"))
				log_set_level(LOG_DEBUG);
			else {
				fprintf(stderr, "sealtraild: unknown log level %s\n", optarg);
				ret = 2;
				goto out_early;
			}
			break;
		case 'c':
			delay_ms = strtoul(optarg, NULL, 0);
			break;
		case 'C': {
			char *end;

			cap = strtoull(optarg, &end, 0);
			if (*end) {
				fprintf(stderr,
					"sealtraild: --capture-cap-bytes %s: not a number\n",
					optarg);
				ret = 2;
				goto out_early;
			}
			cap_set = true;
			break;
		}
		case 'S':
			if (nsub < TRACKER_MAX_SUBSYSTEMS)
				subsystems[nsub++] = optarg;
			break;
		case 'K':
		case 'P':
			if ((opt == 'K' ? sinks_add_file(&sinks, optarg)
					: sinks_add_command(&sinks, optarg))) {
				fprintf(stderr, "sealtraild: --%s: at most %d\n",
					opt == 'K' ? "checkpoint-file" : "checkpoint-command",
					SINKS_MAX);
				ret = 2;
				goto out_early;
			}
			break;
		case 'Y':
			sinks.syslog = true;
			break;
		case 'O':
			socket_path = optarg;
			break;
		case 'N':
			socket_path = NULL;
			break;
		case 'R':
			roles_path = optarg;
			break;
		case 'L':
			free(cli_path);
			cli_path = strdup(optarg);
			break;
		case 'n': {
			char *end;

			nice_level = strtol(optarg, &end, 10);
			if (*end || !*optarg || nice_level < -20 || nice_level > 19) {
				fprintf(stderr, "sealtraild: --nice %s: need -20 to 19\n", optarg);
				ret = 2;
				goto out_early;
			}
			break;
		}
		case 'F': {
			char *end;

			rt_priority = strtol(optarg, &end, 10);
			if (*end || !*optarg || rt_priority < 0 || rt_priority > 99) {
				fprintf(stderr, "sealtraild: --rt-priority %s: need 0 to 99\n",
					optarg);
				ret = 2;
				goto out_early;
			}
			break;
		}
		case 'B': {
			char *end;
			unsigned long long mib = strtoull(optarg, &end, 10);

			if (*end || !*optarg || *optarg == '-' || mib > (1ull << 20)) {
				fprintf(stderr,
					"sealtraild: --backlog %s: need MiB, 0 to 1048576\n",
					optarg);
				ret = 2;
				goto out_early;
			}
			backlog_max = mib << 20;
			break;
		}
		case 'A':
			auditor_file = optarg;
			break;
		case 'X':
			store_opts.auditor_change = true;
			break;
		case 'T':
			if (ntransfer < 8)
				transfers[ntransfer++] = optarg;
			break;
		case 'V':
			printf("sealtraild %s\n", SEALTRAIL_VERSION);
			ret = 0;
			goto out_early;
		case 'h':
			usage(stdout);
			ret = 0;
			goto out_early;
		default:
			usage(stderr);
			ret = 2;
			goto out_early;
		}
	}
	if (optind < argc) {
		usage(stderr);
		ret = 2;
		goto out_early;
	}
	if (geteuid() != 0) {
		log_error("must run as root (loads BPF programs, reads every process in /proc)");
		ret = 1;
		goto out_early;
	}

	/*
	 * Recording comes first: a broken roles file or a missing sealtrail
	 * binary is reported, and access fails closed (only root) while the
	 * sessions are still recorded.
	 */
	if (socket_path) {
		struct roles roles;
		char why[256];

		if (roles_load(&roles, roles_path, why))
			log_error("--roles %s; refusing every request but root's until it is fixed",
				  why);
		roles_free(&roles);
		if (!cli_path)
			cli_path = find_cli();
		if (!cli_path) {
			log_error("no sealtrail binary next to sealtraild nor in ../bin (give --cli"
				  " PATH): not serving requests on %s",
				  socket_path);
			socket_path = NULL;
		}
	}

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	err = capture_mount_fs();
	if (err) {
		ret = 1;
		goto out_early;
	}
	if (auditor_file) {
		if (auditor_read_public(auditor_file, auditor_pk)) {
			ret = EXIT_CONFIG;
			goto out_early;
		}
		store_opts.auditor = STORE_AUDITOR_SET;
		store_opts.auditor_pk = auditor_pk;
	}
	store_opts.locked = status_starting;
	store_opts.locked_arg = (void *)store_dir;
	err = store_open_with(&store, store_dir, STORE_WRITE | STORE_CREATE, &store_opts);
	if (err == -EKEYREJECTED) {
		/* a key the store refuses: starting again changes nothing */
		log_error("store %s refused the keys it was given (above); not recording. Exit"
			  " status %d: the unit file does not restart on it",
			  store_dir, EXIT_CONFIG);
		ret = EXIT_CONFIG;
		goto out_early;
	}
	if (err) {
		ret = 1;
		goto out_early;
	}
	store.sinks = &sinks;
	if (cgroup_limit && backlog_max > cgroup_limit / 2)
		log_warn("--backlog %llu: more than half of this cgroup's memory limit (%llu MiB): "
			 "a burst can get sealtraild killed; the default would be %llu",
			 (unsigned long long)(backlog_max >> 20),
			 (unsigned long long)(cgroup_limit >> 20),
			 (unsigned long long)(backlog_default_max(cgroup_limit) >> 20));
	store_backlog_open(&store, backlog_max);
	{
		struct tracker init;
		const char *paths[TRACKER_MAX_SSHD];
		unsigned n = t.nsshd;

		memcpy(paths, t.sshd_paths, sizeof(paths));
		tracker_init(&init, &store, &capture);
		t = init;
		if (n) {
			memcpy(t.sshd_paths, paths, sizeof(paths));
			t.nsshd = n;
		} else {
			t.sshd_paths[t.nsshd++] = "/usr/sbin/sshd";
			t.sshd_paths[t.nsshd++] = "/usr/sbin/sshd-session";
			/*
			 * OpenSSH 10 splits a connection in sshd-session and the
			 * pre-auth sshd-auth, where distributions put them
			 */
			t.sshd_paths[t.nsshd++] = "/usr/lib/openssh/sshd-session";
			t.sshd_paths[t.nsshd++] = "/usr/lib/openssh/sshd-auth";
			t.sshd_paths[t.nsshd++] = "/usr/libexec/openssh/sshd-session";
			t.sshd_paths[t.nsshd++] = "/usr/libexec/openssh/sshd-auth";
		}
		if (nsub) {
			memcpy(t.subsystems, subsystems, sizeof(subsystems));
			t.nsubsystems = nsub;
		} else {
			t.subsystems[t.nsubsystems++] = "/usr/lib/openssh/sftp-server";
			t.subsystems[t.nsubsystems++] = "internal-sftp";
		}
		if (cap_set)
			t.capture_cap = cap;
	}
	err = capture_open(&capture, ringbuf, tracker_on_event, &t);
	if (err)
		goto out_store;
	for (unsigned i = 0; i < t.nsshd; i++)
		if (capture_add_exe(&capture, t.sshd_paths[i], ST_EXE_SSHD) && errno != ENOENT)
			log_warn("--sshd %s: cannot follow it: %s", t.sshd_paths[i],
				 strerror(errno));
	t.ntransfers = ntransfer ? ntransfer : ntransfer_default;
	for (unsigned i = 0; i < t.ntransfers; i++) {
		t.transfers[i] = transfers[i];
		if (capture_add_exe(&capture, transfers[i], ST_EXE_TRANSFER) && errno != ENOENT)
			log_warn("--transfer %s: cannot follow it: %s", transfers[i],
				 strerror(errno));
	}
	err = hasher_start(&t.hasher);
	if (err) {
		log_error("cannot start the file hashing thread: %s", strerror(-err));
		goto out;
	}
	sched = priority_set((int)rt_priority, (int)nice_level);
	started = clock_ns(CLOCK_REALTIME);
	/* the start record first: after a reboot it is where the boot id may change */
	unclean = tracker_previous_run_unclean(&t);
	if (unclean)
		log_warn("store %s: the previous sealtraild did not stop cleanly", store_dir);
	err = tracker_daemon_record(&t, "start");
	err = err ?: tracker_close_stale(&t, unclean);
	err = err ?: tracker_scan(&t);
	err = err ?: tracker_settle(&t);
	if (err)
		goto out;
	if (socket_path && !access_server_open(&server, socket_path, roles_path, cli_path, &store))
		log_info("serving sealtrail commands on %s (roles: %s)", socket_path, roles_path);
	{
		struct daemon_config cfg = {
		    .argc = argc,
		    .argv = argv,
		    .store_dir = store_dir,
		    .t = &t,
		    .sinks = &sinks,
		    .ringbuf = ringbuf,
		    .scheduling = sched,
		    .socket_path = socket_path,
		    .roles_path = roles_path,
		    .cli_path = cli_path,
		    .auditor_pk = auditor_file ? auditor_pk : NULL,
		    .auditor_change = store_opts.auditor_change,
		    .started_ns = started,
		};

		config_write(&cfg);
	}
	write_status(&t, &capture, sched, store_dir, started, ringbuf, true);
	log_info("recording: store %s, %u programs attached, %u sshd listeners, scheduling %s",
		 store_dir, capture.nprogs, t.nlisteners, sched);

	last_tick = last_scan = clock_ns(CLOCK_MONOTONIC);
	while (!stop_requested) {
		uint64_t now;

		/* a backlog to seal: look at the ring, then seal a slice of it */
		bool draining = store.backlog.records && !store.defer;

		err = capture_poll(&capture, draining ? 0 : 100);
		if (err < 0) {
			log_error("ring buffer poll: %s", strerror(-err));
			break;
		}
		tracker_flush_chunks(&t, false);
		if (draining)
			store_drain(&store, DRAIN_SLICE_BYTES);
		if (delay_ms)
			usleep(delay_ms * 1000);
		now = clock_ns(CLOCK_MONOTONIC);
		if (now - last_tick >= TICK_NS) {
			tracker_files_done(&t, false);
			tracker_tick(&t);
			sinks_poll(&sinks);
			store_pace(&store, now);
			/*
			 * Epochs: at most 10 s or 100k records, empty ones
			 * included, and closed at the first tick after a session
			 * ended, so that logouts within one tick share a sync.
			 * A session's end must be sealed before its epoch closes:
			 * what the backlog held when the end was seen goes first
			 * (deferring stops until then; later records may wait).
			 */
			if (t.ends_pending && !settle_wait) {
				settle_wait = true;
				settle_mark = store_backlog_mark(&store);
			}
			if (settle_wait && store_backlog_sealed(&store, settle_mark)) {
				tracker_settle(&t);
				settle_wait = false;
			} else {
				if (settle_wait)
					store.defer = false;
				if (now - store.epoch_start_ns >= EPOCH_NS ||
				    store.epoch_records >= 100000)
					store_seal_epoch(&store,
							 now - store.epoch_start_ns >= EPOCH_NS
							     ? "time"
							     : "count");
			}
			last_tick = now;
		}
		if (now - last_scan >= SCAN_NS) {
			tracker_scan(&t);
			write_status(&t, &capture, sched, store_dir, started, ringbuf, true);
			last_scan = now;
		}
		access_server_poll(&server);
	}
	err = 0;
	access_server_close(&server);
	log_info("signal %d: flushing and closing the store", (int)stop_requested);
	/* what waits first; from here on every record is sealed at once */
	store_backlog_close(&store);
	ring_buffer__consume(capture.rb);
	tracker_flush_chunks(&t, true);
	/* a session the tick ends may wait for hashes: the drain comes after it */
	tracker_tick(&t);
	tracker_files_done(&t, true);
	tracker_settle(&t);
	tracker_daemon_record(&t, "stop");
	store_seal_epoch(&store, "shutdown");
	write_status(&t, &capture, sched, store_dir, started, ringbuf, false);
out:
	/* the last checkpoint matters most: let the commands deliver it */
	sinks_drain(&sinks);
	hasher_stop(&t.hasher);
	capture_close(&capture);
out_store:
	tracker_fini(&t);
	store_close(&store);
	sinks_free(&sinks);
	free(cli_path);
	return err ? 1 : 0;
out_early: /* nothing opened yet */
	sinks_free(&sinks);
	free(cli_path);
	return ret;
}
