/*
 * What the collector knows about one session, shared by the files that
 * turn its events into records: tracker.c (lifecycle, attribution,
 * terminals, adoption), pipes.c (a command's stdin/stdout/stderr) and
 * transfers.c (forwarded connections, files of scp/sftp/rsync).
 */
#ifndef SEALTRAIL_SESSION_H
#define SEALTRAIL_SESSION_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>

#include "session/procfs.h"
#include "session/tracker.h"

#define PENDING_MAX 64
#define MAX_CHANNELS 64
#define HELD_MAX (1u << 20)

struct xfer_file {
	struct xfer_file *next; /* in open order */
	struct xfer_file *id_next; /* chain of its file_id's bucket, while open */
	struct xfer_file *path_next; /* chain of its path's bucket */
	uint32_t path_hash;
	uint64_t file_id; /* 0 once closed */
	uint32_t pid;
	uint64_t bytes_read;
	uint64_t bytes_written;
	uint64_t close_ns;
	uint64_t ino; /* the file the program opened (0: unknown) */
	uint32_t mnt_id; /* on this mount */
	char path[4096];
};
#define MAX_XFER_FILES 4096
/*
 * A transfer's files by kernel file id and by path (rsync renames every
 * file it writes): thousands are open or waiting for their hash at once,
 * and a walk of the list for every open, close and rename fell behind the
 * ring buffer.
 */
#define XFER_BUCKETS 4096
struct xfer_index {
	struct xfer_file *by_id[XFER_BUCKETS];
	struct xfer_file *by_path[XFER_BUCKETS];
};

struct held_chunk {
	uint64_t object;
	uint64_t ts_ns;
	uint32_t pid;
	uint32_t len;
};
#define KIND_SHELL "shell"
#define KIND_EXEC "exec"
#define KIND_SUBSYSTEM "subsystem"
#define KIND_FORWARD "forward"
/* the command of a login served by OpenSSH's in-process sftp (no exec) */
#define INTERNAL_SFTP "internal-sftp"
#define ADOPTED_KEY_BIT (1ull << 63)
/* Ended sessions stay known this long, for late events of their processes. */
#define ENDED_KEEP_NS (3600ull * 1000000000ull)
/*
 * A session's end waits for its file hashes at most this long (then their
 * records follow it), and the hasher is given this long at shutdown.
 */
#define END_HASH_WAIT_NS (30ull * 1000000000ull)
#define HASH_DRAIN_NS (10ull * 1000000000ull)
/*
 * A REC_TTY record holds at most this many bytes, written over at most this
 * long, and waits at most CHUNK_HOLD_NS for more; CHUNK_SLOTS streams of a
 * session are gathered at once (chunks.c).
 */
#define CHUNK_MAX_BYTES (64u << 10)
#define CHUNK_SPAN_NS (1000ull * 1000000ull)
#define CHUNK_HOLD_NS (1000ull * 1000000ull)
#define CHUNK_SLOTS 3

/* Writes of one stream not yet stored: chunks.c */
struct chunk_acc {
	bool open;
	unsigned stream;
	int tty_index; /* -1: a pipe */
	uint32_t pid;
	uint32_t winsize; /* rows << 16 | cols of its writes; 0: unknown */
	uint64_t first_ns; /* CLOCK_BOOTTIME of the first write */
	uint64_t last_ns;
	unsigned writes;
	struct buf data;
	struct buf timing; /* TAG_TIMING entries */
};

struct session {
	struct session *next;
	uint64_t key;
	uint8_t id[ST_ID_LEN];
	char idhex[ST_ID_HEX];
	uint32_t leader;
	uint32_t listener;
	uint64_t start_boot_ns;
	uint64_t last_event_ns;
	bool materialized;
	bool adopted;
	bool ended;
	bool forget; /* ended before login: drop its state at the next tick */
	unsigned ended_ticks; /* ticks the kernel said ended but no end event came */
	uint32_t loginuid; /* NO_UID until known */
	uint32_t uid; /* NO_UID until known */
	bool have_addr;
	struct conn_addr addr;
	int tty;
	uint32_t shell_pid; /* first program sshd started for the login */
	bool shell_exited;
	int shell_status;
	/*
	 * The session's sshd processes (monitor, privsep child): the login is
	 * over when the leader and all of them are gone, not when the leader
	 * alone is (killing the monitor leaves the user's connection working).
	 */
	uint32_t sshd_pids[16];
	unsigned nsshd;
	bool leader_exited;
	int leader_status;
	uint32_t killed_sshd; /* an sshd of the session killed by a signal */
	int killed_signal;
	uint64_t lost_events_seen;
	uint64_t lost_bytes_seen;
	const char *kind; /* NULL until known, then KIND_* */
	char *command; /* what `ssh host CMD` asked for, if anything */
	char term[64]; /* TERM of a terminal login, from its shell's environment; "" if unknown */
	/* a command's pipes (no pty): stored up to the cap, hashed whole */
	struct pipe_stream {
		uint64_t bytes;
		uint64_t stored;
		EVP_MD_CTX *sha;
		bool capped;
	} pipes[STREAM_MAX];
	uint64_t stored_total; /* pipe bytes stored, against capture_cap */
	/* pipes sshd used before the command's exec said which stream they are */
	struct {
		uint64_t object;
		unsigned stream;
	} pipe_objs[8];
	unsigned npipe_objs;
	bool pipes_counted; /* a transfer program's pipes: the kernel counts them */
	struct buf held; /* chunks on pipes not yet tied: struct held_chunk + data */
	uint64_t held_dropped_events;
	uint64_t held_dropped_bytes;
	uint64_t channels[MAX_CHANNELS]; /* forwarded connections still open */
	/* a transfer (sftp, scp, rsync): summarised by file, payload not stored */
	bool transfer;
	struct xfer_file *files; /* opened by a transfer program, not yet hashed */
	struct xfer_file **files_tail; /* where the next one goes (NULL: at files) */
	struct xfer_index *xfer_index; /* of files, made with the first */
	unsigned nfiles;
	unsigned hashing; /* files given to the hasher whose records are not written */
	/*
	 * Ended while files were still being hashed: the end record waits for
	 * their records (tracker_files_done()), the event loop does not.
	 */
	bool end_waits;
	uint64_t end_waits_since; /* CLOCK_MONOTONIC */
	int end_status;
	uint64_t end_boot_ns;
	char end_reason[256];
	uint64_t files_dropped; /* opened past MAX_XFER_FILES: a gap at the end */
	unsigned nchannels;
	struct chunk_acc chunks[CHUNK_SLOTS];
	/* the window size last written per pty, so records say it only when it changes */
	struct {
		int tty_index;
		uint32_t winsize;
	} winsizes[CHUNK_SLOTS];
	struct buf pending[PENDING_MAX];
	unsigned npending;
	uint64_t pending_dropped;
};

/* Records of a session: begin one in t->rec, add fields, then emit it. */
int session_begin(struct tracker *t, struct session *s, uint16_t type, uint64_t boot_ns);
int session_emit(struct tracker *t, struct session *s);
int session_materialize(struct tracker *t, struct session *s);
int session_write_attrs(struct tracker *t, struct session *s, uint64_t boot_ns, bool person,
			bool tty);
int session_set_kind(struct tracker *t, struct session *s, const char *kind, const char *command,
		     uint64_t boot_ns);
/* The session's TERM (s->term) on an attribute record, if the start record is written already. */
int session_set_term(struct tracker *t, struct session *s, uint64_t boot_ns);
struct session *session_find(struct tracker *t, uint64_t key);
void session_learn_person_from_proc(struct tracker *t, struct session *s, uint32_t pid);

/* chunks.c: stream bytes coalesced into records */
int chunk_add(struct tracker *t, struct session *s, unsigned stream, int tty_index, uint32_t pid,
	      uint32_t winsize, uint64_t ts_ns, const void *data, uint32_t len);
int chunk_flush(struct tracker *t, struct session *s);
void chunks_free(struct session *s);

/* pipes.c: bytes between sshd and a command run without a pty */
int pipe_bytes(struct tracker *t, struct session *s, unsigned stream, uint32_t pid, uint64_t ts_ns,
	       const void *data, uint64_t len);
int pipe_stream_of(const struct session *s, uint64_t object);
int pipe_hold(struct tracker *t, struct session *s, const struct st_ev_tty *ev);
int pipes_tie(struct tracker *t, struct session *s, const __u64 stdio[3], bool counted,
	      uint64_t boot_ns);
int pipes_end(struct tracker *t, struct session *s, uint64_t boot_ns);

/* transfers.c: forwarded connections and transferred files */
/*
 * The path the kernel walked (events.h: components leaf first), with name
 * appended if it is relative; "?/" stands for a part the walk did not
 * reach. False if the kernel could not walk it.
 */
bool kernel_path(const char *dir, unsigned len, unsigned flags, const char *name, char *out,
		 size_t size);
int channel_open(struct tracker *t, struct session *s, const struct st_ev_connect *ev);
int channel_close(struct tracker *t, struct session *s, uint64_t conn_id, uint64_t sent,
		  uint64_t recv, uint64_t boot_ns, const char *reason);
int transfer_file_event(struct tracker *t, struct session *s, const struct st_ev_file *ev);
void transfer_hash_closed(struct tracker *t, struct session *s, uint32_t pid);
int transfer_files_dropped(struct tracker *t, struct session *s, uint64_t boot_ns);
/* The rest of a session's end, once its files are hashed: the end record. */
int end_session_finish(struct tracker *t, struct session *s);

#endif
