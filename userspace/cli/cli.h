/* Shared pieces of the `sealtrail` subcommands. */
#ifndef SEALTRAIL_CLI_H
#define SEALTRAIL_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

struct sqlite3;

struct cli {
	const char *store_dir;
	bool json;
	const char *auditor_key; /* read with the auditor's private key, not keys/kek */
	struct store store;
};

/* --store, --json and --auditor-key are accepted after the command too. */
#define OPT_STORE 1000
#define OPT_JSON 1001
#define OPT_AUDITOR_KEY 1002
#define CLI_COMMON_OPTS                                                                            \
	{"store", required_argument, NULL, OPT_STORE}, {"json", no_argument, NULL, OPT_JSON},      \
	{                                                                                          \
		"auditor-key", required_argument, NULL, OPT_AUDITOR_KEY                            \
	}
int cli_common_opt(struct cli *c, int opt);
/* A command without arguments of its own: the common options only; 0, or 2 (usage printed). */
int cli_no_args(struct cli *c, int argc, char **argv, const char *name);
/* --since T and --until T (RFC 3339 or an age such as 2h, 7d), as options 's' and 'u' */
struct cli_window {
	uint64_t since, until;
};
#define CLI_WINDOW_ALL ((struct cli_window){.since = 0, .until = UINT64_MAX})
/* 1: opt was --since or --until, stored in w; 0: another option; -EINVAL: bad T (logged) */
int cli_window_opt(struct cli_window *w, int opt, const char *arg, uint64_t now);
/* After the options: 0, or -EINVAL (logged) when --since is after --until. */
int cli_window_check(const struct cli_window *w);
/*
 * A command whose only options are the window and the common ones:
 * parse them into *w; 0, or 2 (usage or the error printed).
 */
int cli_window_args(struct cli *c, int argc, char **argv, struct cli_window *w, const char *name);

/*
 * Open the store read-only; prints an error naming the store on failure.
 * With --auditor-key: segments are opened with the auditor's private key
 * and indexed afresh (a copy's index may be absent or stale).
 */
int cli_open(struct cli *c);
/* A store_visitor's damage callback for the reading commands: a warning naming file and offset. */
void cli_scan_damage(void *arg, const char *file, uint64_t off, uint64_t bytes, const char *why);
/* Resolve a session id or unique prefix to the full id. */
int cli_session_id(struct cli *c, const char *arg, char id[ST_ID_HEX]);

/* Visit the terminal chunks of a session's primary tty, in order. */
struct chunk {
	uint64_t seq;
	uint64_t wall_ns;
	const uint8_t *data;
	uint32_t len;
	uint32_t winsize; /* rows << 16 | cols from this write on; 0: as before */
};
/* streams: a mask of 1 << STREAM_*; fn returns 0, CHUNK_STOP (done, no error) or -errno */
#define CHUNK_STOP 1
int cli_each_chunk(struct cli *c, const char *id, unsigned streams,
		   int (*fn)(void *arg, const struct chunk *ch), void *arg);
#define STREAMS_INPUT (1u << STREAM_IN | 1u << STREAM_STDIN)
#define STREAMS_OUTPUT (1u << STREAM_OUT | 1u << STREAM_STDOUT)
int cli_session_start(struct cli *c, const char *id, uint64_t *start_ns, char *term,
		      size_t term_size);

int cmd_sessions(struct cli *c, int argc, char **argv);
int cmd_events(struct cli *c, int argc, char **argv);
int cmd_gaps(struct cli *c, int argc, char **argv);
int cmd_replay(struct cli *c, int argc, char **argv);
int cmd_export(struct cli *c, int argc, char **argv);
int cmd_status(struct cli *c, int argc, char **argv);
int cmd_reindex(struct cli *c, int argc, char **argv);
int cmd_verify(struct cli *c, int argc, char **argv);
int cmd_checkpoint(struct cli *c, int argc, char **argv);
int cmd_auditor_keygen(struct cli *c, int argc, char **argv);
int cmd_access_log(struct cli *c, int argc, char **argv);
int cmd_keys(struct cli *c, int argc, char **argv);
int cmd_config(struct cli *c, int argc, char **argv);

/*
 * Run argv (the command and its arguments) in sealtraild through its
 * socket at path; returns the command's exit status (77: refused).
 */
#define CLI_DEFAULT_SOCKET "/run/sealtrail.sock"
int cli_remote(const char *path, bool json, int argc, char **argv);

#endif
