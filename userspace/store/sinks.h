/*
 * Checkpoint sinks: where each signed checkpoint goes besides
 * DIR/checkpoints/latest, so that it leaves the host (docs/SEALING.md).
 *
 *   file     appended to and fdatasync()ed (a file on another mount, or a
 *            FIFO a shipper reads) by a thread of its own, never in the
 *            recording loop: while a write hangs (a stale network mount, a
 *            FIFO nobody reads) the newest checkpoint waits and replaces
 *            older waiting ones, and sinks_poll() says so after
 *            SINK_FILE_STUCK_NS
 *   command  /bin/sh -c CMD with the note on its stdin, never waited for in
 *            the recording loop: reaped by sinks_poll(), killed (its whole
 *            process group) when it runs past the timeout; at most
 *            SINK_COMMAND_RUNS at a time, then the newest note waits
 *   syslog   one RFC 3164 message per checkpoint to /dev/log, facility
 *            authpriv, severity notice: "sealtrail-checkpoint store=HEX
 *            epoch=N size=N note=BASE64" (the whole note, base64: syslog
 *            daemons escape newlines and bytes outside ASCII differently);
 *            `sealtrail verify --against` and `sealtrail checkpoint
 *            --decode` read such lines back
 *
 * A sink that fails is logged (with the command's exit status) and never
 * stops recording; the checkpoint stays in DIR/checkpoints/latest.
 */
#ifndef SEALTRAIL_SINKS_H
#define SEALTRAIL_SINKS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/util.h"

#define SINKS_MAX 8 /* of each kind */
#define SINK_COMMAND_RUNS 4 /* runs of one command at a time */
#define SINK_COMMAND_TIMEOUT_NS (5ull * 1000000000ull)
#define SINK_FILE_STUCK_NS (10ull * 1000000000ull)
#define SINK_SYSLOG_PATH "/dev/log"
/* tests only: another socket than /dev/log, to not disturb a real logger */
#define SINK_SYSLOG_ENV "SEALTRAIL_SYSLOG_SOCKET"
#define SINK_SYSLOG_TAG "sealtrail-checkpoint"

struct sink_run {
	pid_t pid;
	uint32_t epoch;
	uint64_t deadline_ns; /* CLOCK_MONOTONIC */
	bool killed;
};

struct sink_command {
	const char *cmd;
	struct sink_run runs[SINK_COMMAND_RUNS];
	unsigned nruns;
	/*
	 * With every run busy, the newest checkpoint waits here for one to end
	 * (it signs everything an older one does, which it replaces)
	 */
	bool has_pending;
	struct buf pending;
	uint8_t pending_id[ST_ID_LEN];
	uint32_t pending_epoch;
	uint64_t pending_size;
};

/* A file sink and its writer thread; the fields below lock are under it. */
struct sink_file {
	const char *path;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t wake; /* a note waits, or stop */
	pthread_cond_t idle; /* a write ended */
	bool has_pending;
	struct buf pending; /* the newest note not yet taken by the thread */
	uint32_t pending_epoch;
	uint32_t writing_epoch;
	uint64_t busy_since_ns; /* CLOCK_MONOTONIC when the write under way began; 0: none */
	bool stop;
	bool warned_stuck;
	unsigned written, failed, superseded; /* notes */
};

struct checkpoint_sinks {
	struct sink_file files[SINKS_MAX];
	unsigned nfiles;
	struct sink_command commands[SINKS_MAX];
	unsigned ncommands;
	bool syslog;
	uint64_t timeout_ns; /* for commands and sinks_drain; 0 = SINK_COMMAND_TIMEOUT_NS */
	uint64_t stuck_ns; /* a file write hung this long is reported; 0 = SINK_FILE_STUCK_NS */
};

/* Add a sink; -E2BIG past SINKS_MAX of a kind. */
int sinks_add_file(struct checkpoint_sinks *s, const char *path);
int sinks_add_command(struct checkpoint_sinks *s, const char *cmd);
bool sinks_any(const struct checkpoint_sinks *s);

/*
 * Send a note to every sink. Files and commands are handed the note, not
 * waited for. Returns the number of sinks that failed at once (whether a
 * file write or a command succeeded is known later: logged, and counted
 * in struct sink_file).
 */
int sinks_send(struct checkpoint_sinks *s, const uint8_t store_id[ST_ID_LEN], uint32_t epoch,
	       uint64_t size, const struct buf *note);
/* Reap finished commands, kill the overdue ones, warn of hung file writes; never blocks. */
void sinks_poll(struct checkpoint_sinks *s);
/*
 * At shutdown: start what waits, let running commands finish until their
 * deadline, then kill them; give file writes as long.
 */
void sinks_drain(struct checkpoint_sinks *s);
/* Stop the file threads (one still hung in a write is left to the exit). */
void sinks_free(struct checkpoint_sinks *s);

/* The syslog message for a note (also what `sealtrail checkpoint --decode` reads). */
int sinks_syslog_line(const uint8_t store_id[ST_ID_LEN], uint32_t epoch, uint64_t size,
		      const struct buf *note, struct buf *out);

#endif
