/*
 * The store's record format: canonical big-endian bytes, self-describing,
 * with a per-store sequence number, so records can later be sealed (hash
 * chain, AES-256-GCM, signatures) exactly as they are stored.
 *
 *   u32 len        bytes of the whole record, this field and the CRC included
 *   u16 type       enum rec_type
 *   u16 flags      0 for now
 *   u64 seq        per-store sequence number, from 1, no holes
 *   u64 wall_ns    CLOCK_REALTIME of the event, ns since the epoch
 *   u64 mono_ns    CLOCK_BOOTTIME of the event
 *   u8  session[16] session id (all zero for store-level records)
 *   fields         repeated: u16 tag, u32 len, len bytes (integers: u64 BE)
 *   u32 crc32      zlib CRC-32 of everything before it
 */
#ifndef SEALTRAIL_RECORD_H
#define SEALTRAIL_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

#define REC_HEADER_LEN 48
#define REC_TRAILER_LEN 4
#define REC_MIN_LEN (REC_HEADER_LEN + REC_TRAILER_LEN)
#define REC_MAX_LEN (4u << 20)
#define REC_MAX_FIELDS 64

enum rec_type {
	REC_DAEMON = 1, /* collector started or stopped */
	REC_SESSION_START = 2, /* a login: who, from where, which tty */
	REC_SESSION_ATTR = 3, /* attributes learnt after the start */
	REC_SESSION_END = 4,
	REC_TTY = 5, /* a chunk of one terminal stream */
	REC_EXEC = 6, /* a session process ran a program */
	REC_FORK = 7,
	REC_EXIT = 8,
	REC_GAP = 9, /* something was lost: counts and reason */
	REC_CHANNEL_OPEN = 10, /* sshd opened a forwarded connection */
	REC_CHANNEL_CLOSE = 11, /* ... and closed it: bytes each way */
	REC_CAPPED = 12, /* a stream passed capture_cap_bytes: only counted now */
	REC_STREAM_END = 13, /* size and SHA-256 of a whole pipe stream */
	REC_FILE = 14, /* a file a transfer program wrote or read */
	REC_EPOCH = 15, /* a signing epoch closes: signed tree head, next key */
	REC_ACCESS = 16, /* someone asked sealtraild to read the store: who, what, decision */
	REC_TYPE_MAX,
};

enum rec_tag {
	TAG_HOST = 1,
	TAG_BOOT_ID,
	TAG_VERSION,
	TAG_EVENT, /* REC_DAEMON: "start" / "stop" */
	TAG_USER,
	TAG_LOGINUID,
	TAG_UID,
	TAG_EUID,
	TAG_GID,
	TAG_SESSIONID,
	TAG_SOURCE_IP,
	TAG_SOURCE_PORT,
	TAG_LOCAL_IP,
	TAG_LOCAL_PORT,
	TAG_TTY, /* "pts/N" */
	TAG_LEADER_PID,
	TAG_LISTENER_PID,
	TAG_ADOPTED,
	TAG_PID,
	TAG_PPID,
	TAG_CHILD_PID,
	TAG_FILENAME,
	TAG_ARGV, /* NUL-separated as in /proc/PID/cmdline */
	TAG_ARGV_TOTAL,
	TAG_ARGV_TRUNCATED,
	TAG_STREAM, /* REC_TTY: 0 input, 1 output */
	TAG_DATA,
	TAG_OFFSET,
	TAG_STATUS, /* wait(2) status */
	TAG_LOST_EVENTS,
	TAG_LOST_BYTES,
	TAG_REASON,
	TAG_BYTES_IN,
	TAG_BYTES_OUT,
	TAG_FILE,
	TAG_FILE_OFFSET,
	TAG_KIND, /* shell, exec, subsystem, forward */
	TAG_COMMAND,
	TAG_CONN_ID,
	TAG_DEST_IP,
	TAG_DEST_PORT,
	TAG_BYTES_SENT,
	TAG_BYTES_RECV,
	TAG_BYTES, /* REC_STREAM_END, REC_CAPPED: bytes of the stream */
	TAG_STORED,
	TAG_SHA256,
	TAG_CAP,
	TAG_TTY_INDEX, /* REC_TTY: N of /dev/pts/N */
	TAG_PATH,
	TAG_DIRECTION, /* REC_FILE: "upload" (written on the bastion) or "download" */
	TAG_SIZE, /* REC_FILE: size of the file when hashed */
	TAG_EPOCH,
	TAG_TREE_SIZE,
	TAG_ROOT,
	TAG_NEXT_PK,
	TAG_SIGNATURE,
	TAG_TIMING, /* REC_TTY of several writes: per write u32 ns after the record, u32 len */
	TAG_DECISION, /* REC_ACCESS: "allowed" or "denied" */
	TAG_ROLE, /* REC_ACCESS: the caller's role then: "auditor", "admin" or "none" */
	TAG_REQUESTS, /* REC_ACCESS: refused requests this record stands for (absent: 1) */
	TAG_WINSIZE, /* REC_TTY of pty output: rows << 16 | cols, when it differs from the last */
	TAG_CWD, /* REC_EXEC: the working directory ("?/..." if only its end was reached) */
	TAG_TERM, /* REC_SESSION_START/ATTR: TERM of a terminal login, as the client sent it */
	TAG_MAX,
};

/* Streams of a session: a terminal's two directions, or a command's pipes. */
enum rec_stream {
	STREAM_IN = 0, /* terminal input: what the client typed */
	STREAM_OUT = 1, /* terminal output: what the client saw */
	STREAM_STDIN = 2,
	STREAM_STDOUT = 3,
	STREAM_STDERR = 4,
	STREAM_MAX,
};

/* Did the client send (1) or receive (0) the bytes of this stream? */
static inline int stream_is_input(unsigned stream)
{
	return stream == STREAM_IN || stream == STREAM_STDIN;
}

struct rec_field {
	uint16_t tag;
	uint32_t len;
	const uint8_t *data;
};

/* A parsed record; fields point into the bytes it was parsed from. */
struct record {
	uint32_t len;
	uint16_t type;
	uint16_t flags;
	uint64_t seq;
	uint64_t wall_ns;
	uint64_t mono_ns;
	uint8_t session[ST_ID_LEN];
	unsigned nfields;
	struct rec_field fields[REC_MAX_FIELDS];
};

/* Building: begin, add fields, then rec_finish with the sequence number. */
int rec_begin(struct buf *b, uint16_t type, const uint8_t session[ST_ID_LEN], uint64_t wall_ns,
	      uint64_t mono_ns);
int rec_add_u64(struct buf *b, uint16_t tag, uint64_t v);
int rec_add_bytes(struct buf *b, uint16_t tag, const void *data, size_t len);
int rec_add_str(struct buf *b, uint16_t tag, const char *s);
/* Sets length, sequence number and CRC of the record that starts at b[0]. */
int rec_finish(struct buf *b, uint64_t seq);

/*
 * Parse one record from p[0..avail). Returns 0 and sets *used, -EAGAIN if
 * the bytes end inside a record (a torn tail), -EBADMSG if they are not a
 * valid record; err (at least 128 bytes) then says why.
 */
int rec_parse(const uint8_t *p, size_t avail, struct record *rec, size_t *used, char *err);
/*
 * Parse a record this process has just finished (rec_finish): the same
 * checks but the CRC, which rec_finish computed over these very bytes.
 */
int rec_parse_built(const uint8_t *p, size_t len, struct record *rec, char *err);

const struct rec_field *rec_field(const struct record *rec, uint16_t tag);

/*
 * A REC_TTY record may hold several writes of its stream: TAG_TIMING then
 * has one entry per write, u32 nanoseconds after the record's time and u32
 * bytes, and the lengths add up to TAG_DATA's. Without TAG_TIMING the
 * record is one write. rec_timing_ok() checks an entry list against data.
 */
#define TIMING_ENTRY_LEN 8
bool rec_timing_ok(const struct rec_field *timing, uint32_t data_len);
bool rec_u64(const struct record *rec, uint16_t tag, uint64_t *v);
/* Copy a string field into out (truncated, NUL-terminated); "" if absent. */
const char *rec_str(const struct record *rec, uint16_t tag, char *out, size_t size);
const char *rec_type_name(uint16_t type);
/* Name of a field tag for JSON output (NULL if unknown), and whether it is text. */
const char *rec_tag_name(uint16_t tag);
bool rec_tag_is_text(uint16_t tag);

static inline void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}
static inline void put_be32(uint8_t *p, uint32_t v)
{
	put_be16(p, v >> 16);
	put_be16(p + 2, v);
}
static inline void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, v >> 32);
	put_be32(p + 4, v);
}
static inline uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)p[0] << 8 | p[1];
}
static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)get_be16(p) << 16 | get_be16(p + 2);
}
static inline uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

#endif
