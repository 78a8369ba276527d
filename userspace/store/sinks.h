/*
 * Checkpoint sinks: where each signed checkpoint goes besides
 * DIR/checkpoints/latest, so that it leaves the host (docs/SEALING.md).
 *
 *   file     appended to, fdatasync()ed (a file on another mount); opened
 *            O_NONBLOCK, so a FIFO without a reader fails instead of
 *            stopping the recording loop (a hung network mount still
 *            blocks it: prefer a command sink there)
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

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/util.h"

#define SINKS_MAX 8 /* of each kind */
#define SINK_COMMAND_RUNS 4 /* runs of one command at a time */
#define SINK_COMMAND_TIMEOUT_NS (5ull * 1000000000ull)
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

struct checkpoint_sinks {
	const char *files[SINKS_MAX];
	unsigned nfiles;
	struct sink_command commands[SINKS_MAX];
	unsigned ncommands;
	bool syslog;
	uint64_t timeout_ns; /* for commands; 0 = SINK_COMMAND_TIMEOUT_NS */
};

/* Add a sink; -E2BIG past SINKS_MAX of a kind. */
int sinks_add_file(struct checkpoint_sinks *s, const char *path);
int sinks_add_command(struct checkpoint_sinks *s, const char *cmd);
bool sinks_any(const struct checkpoint_sinks *s);

/*
 * Send a note to every sink. Commands are started, not waited for. Returns
 * the number of sinks that failed at once (a command's exit status is
 * known later, in sinks_poll()).
 */
int sinks_send(struct checkpoint_sinks *s, const uint8_t store_id[ST_ID_LEN], uint32_t epoch,
	       uint64_t size, const struct buf *note);
/* Reap finished commands, kill the overdue ones; never blocks. */
void sinks_poll(struct checkpoint_sinks *s);
/*
 * At shutdown: start what waits, let running commands finish until their
 * deadline, then kill them.
 */
void sinks_drain(struct checkpoint_sinks *s);
void sinks_free(struct checkpoint_sinks *s);

/* The syslog message for a note (also what `sealtrail checkpoint --decode` reads). */
int sinks_syslog_line(const uint8_t store_id[ST_ID_LEN], uint32_t epoch, uint64_t size,
		      const struct buf *note, struct buf *out);

#endif
