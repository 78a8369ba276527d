/* Encoding and strict decoding of store records (format in record.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/crc32.h"
#include "store/record.h"

int rec_begin(struct buf *b, uint16_t type, const uint8_t session[ST_ID_LEN], uint64_t wall_ns,
	      uint64_t mono_ns)
{
	uint8_t h[REC_HEADER_LEN] = {0};

	b->len = 0;
	put_be16(h + 4, type);
	put_be64(h + 16, wall_ns);
	put_be64(h + 24, mono_ns);
	if (session)
		memcpy(h + 32, session, ST_ID_LEN);
	return buf_add(b, h, sizeof(h));
}

int rec_add_bytes(struct buf *b, uint16_t tag, const void *data, size_t len)
{
	uint8_t h[6];

	if (len > REC_MAX_LEN || b->len + len + 6 + REC_TRAILER_LEN > REC_MAX_LEN)
		return -E2BIG;
	put_be16(h, tag);
	put_be32(h + 2, len);
	if (buf_add(b, h, sizeof(h)))
		return -ENOMEM;
	return buf_add(b, data, len);
}

int rec_add_u64(struct buf *b, uint16_t tag, uint64_t v)
{
	uint8_t be[8];

	put_be64(be, v);
	return rec_add_bytes(b, tag, be, sizeof(be));
}

int rec_add_str(struct buf *b, uint16_t tag, const char *s)
{
	return rec_add_bytes(b, tag, s, strlen(s));
}

int rec_finish(struct buf *b, uint64_t seq)
{
	uint8_t crc[REC_TRAILER_LEN];

	if (b->len < REC_HEADER_LEN || b->len + REC_TRAILER_LEN > REC_MAX_LEN)
		return -EINVAL;
	put_be32(b->data, b->len + REC_TRAILER_LEN);
	put_be64(b->data + 8, seq);
	put_be32(crc, st_crc32(0, b->data, b->len));
	return buf_add(b, crc, sizeof(crc));
}

static int parse(const uint8_t *p, size_t avail, struct record *rec, size_t *used, char *err,
		 bool check_crc)
{
	size_t off;
	uint32_t len;

	if (avail < 4) {
		snprintf(err, 128, "%zu bytes left, a record needs at least %d", avail,
			 REC_MIN_LEN);
		return -EAGAIN;
	}
	len = get_be32(p);
	if (len < REC_MIN_LEN || len > REC_MAX_LEN) {
		snprintf(err, 128, "record length %u outside [%d, %u]", len, REC_MIN_LEN,
			 REC_MAX_LEN);
		return -EBADMSG;
	}
	if (len > avail) {
		snprintf(err, 128, "record of %u bytes but only %zu left (torn write)", len, avail);
		return -EAGAIN;
	}
	if (check_crc &&
	    st_crc32(0, p, len - REC_TRAILER_LEN) != get_be32(p + len - REC_TRAILER_LEN)) {
		snprintf(err, 128, "CRC mismatch in record of %u bytes", len);
		return -EBADMSG;
	}
	rec->len = len;
	rec->type = get_be16(p + 4);
	rec->flags = get_be16(p + 6);
	rec->seq = get_be64(p + 8);
	rec->wall_ns = get_be64(p + 16);
	rec->mono_ns = get_be64(p + 24);
	memcpy(rec->session, p + 32, ST_ID_LEN);
	if (rec->type == 0 || rec->type >= REC_TYPE_MAX || rec->flags) {
		snprintf(err, 128, "unknown record type %u / flags %#x", rec->type, rec->flags);
		return -EBADMSG;
	}
	rec->nfields = 0;
	for (off = REC_HEADER_LEN; off < len - REC_TRAILER_LEN;) {
		struct rec_field *f;
		uint32_t flen;

		if (len - REC_TRAILER_LEN - off < 6) {
			snprintf(err, 128, "field header cut at record offset %zu", off);
			return -EBADMSG;
		}
		flen = get_be32(p + off + 2);
		if (flen > len - REC_TRAILER_LEN - off - 6) {
			snprintf(err, 128, "field of %u bytes overruns the record at offset %zu",
				 flen, off);
			return -EBADMSG;
		}
		if (rec->nfields == REC_MAX_FIELDS) {
			snprintf(err, 128, "more than %d fields", REC_MAX_FIELDS);
			return -EBADMSG;
		}
		f = &rec->fields[rec->nfields++];
		f->tag = get_be16(p + off);
		f->len = flen;
		f->data = p + off + 6;
		off += 6 + flen;
	}
	*used = len;
	return 0;
}

int rec_parse(const uint8_t *p, size_t avail, struct record *rec, size_t *used, char *err)
{
	return parse(p, avail, rec, used, err, true);
}

int rec_parse_built(const uint8_t *p, size_t len, struct record *rec, char *err)
{
	size_t used;

	return parse(p, len, rec, &used, err, false);
}

const struct rec_field *rec_field(const struct record *rec, uint16_t tag)
{
	for (unsigned i = 0; i < rec->nfields; i++)
		if (rec->fields[i].tag == tag)
			return &rec->fields[i];
	return NULL;
}

bool rec_u64(const struct record *rec, uint16_t tag, uint64_t *v)
{
	const struct rec_field *f = rec_field(rec, tag);

	if (!f || f->len != 8)
		return false;
	*v = get_be64(f->data);
	return true;
}

const char *rec_str(const struct record *rec, uint16_t tag, char *out, size_t size)
{
	const struct rec_field *f = rec_field(rec, tag);
	size_t n = f ? f->len : 0;

	if (!size)
		return out;
	if (n >= size)
		n = size - 1;
	if (n)
		memcpy(out, f->data, n);
	out[n] = 0;
	return out;
}

const char *rec_type_name(uint16_t type)
{
	static const char *names[REC_TYPE_MAX] = {
	    [REC_DAEMON] = "daemon",
	    [REC_SESSION_START] = "session_start",
	    [REC_SESSION_ATTR] = "session_attr",
	    [REC_SESSION_END] = "session_end",
	    [REC_TTY] = "tty",
	    [REC_EXEC] = "exec",
	    [REC_FORK] = "fork",
	    [REC_EXIT] = "exit",
	    [REC_GAP] = "gap",
	    [REC_CHANNEL_OPEN] = "channel_open",
	    [REC_CHANNEL_CLOSE] = "channel_close",
	    [REC_CAPPED] = "capped",
	    [REC_STREAM_END] = "stream_end",
	    [REC_FILE] = "file",
	    [REC_EPOCH] = "epoch",
	    [REC_ACCESS] = "access",
	};

	return type < REC_TYPE_MAX && names[type] ? names[type] : "unknown";
}

static const struct {
	const char *name;
	bool text;
} tags[TAG_MAX] = {
    [TAG_HOST] = {"host", true},
    [TAG_BOOT_ID] = {"boot_id", true},
    [TAG_VERSION] = {"version", true},
    [TAG_EVENT] = {"event", true},
    [TAG_USER] = {"user", true},
    [TAG_LOGINUID] = {"loginuid", false},
    [TAG_UID] = {"uid", false},
    [TAG_EUID] = {"euid", false},
    [TAG_GID] = {"gid", false},
    [TAG_SESSIONID] = {"audit_session", false},
    [TAG_SOURCE_IP] = {"source_ip", true},
    [TAG_SOURCE_PORT] = {"source_port", false},
    [TAG_LOCAL_IP] = {"local_ip", true},
    [TAG_LOCAL_PORT] = {"local_port", false},
    [TAG_TTY] = {"tty", true},
    [TAG_LEADER_PID] = {"leader_pid", false},
    [TAG_LISTENER_PID] = {"listener_pid", false},
    [TAG_ADOPTED] = {"adopted", false},
    [TAG_PID] = {"pid", false},
    [TAG_PPID] = {"ppid", false},
    [TAG_CHILD_PID] = {"child_pid", false},
    [TAG_FILENAME] = {"filename", true},
    [TAG_ARGV] = {"argv", true},
    [TAG_ARGV_TOTAL] = {"argv_bytes", false},
    [TAG_ARGV_TRUNCATED] = {"argv_truncated", false},
    [TAG_STREAM] = {"stream", false},
    [TAG_DATA] = {"data", true},
    [TAG_OFFSET] = {"offset", false},
    [TAG_STATUS] = {"status", false},
    [TAG_LOST_EVENTS] = {"lost_events", false},
    [TAG_LOST_BYTES] = {"lost_bytes", false},
    [TAG_REASON] = {"reason", true},
    [TAG_BYTES_IN] = {"bytes_in", false},
    [TAG_BYTES_OUT] = {"bytes_out", false},
    [TAG_FILE] = {"file", true},
    [TAG_FILE_OFFSET] = {"file_offset", false},
    [TAG_KIND] = {"kind", true},
    [TAG_COMMAND] = {"command", true},
    [TAG_CONN_ID] = {"conn_id", false},
    [TAG_DEST_IP] = {"dest_ip", true},
    [TAG_DEST_PORT] = {"dest_port", false},
    [TAG_BYTES_SENT] = {"bytes_sent", false},
    [TAG_BYTES_RECV] = {"bytes_recv", false},
    [TAG_BYTES] = {"bytes", false},
    [TAG_STORED] = {"stored", false},
    [TAG_SHA256] = {"sha256", true},
    [TAG_CAP] = {"cap", false},
    [TAG_TTY_INDEX] = {"tty_index", false},
    [TAG_PATH] = {"path", true},
    [TAG_DIRECTION] = {"direction", true},
    [TAG_SIZE] = {"size", false},
    [TAG_EPOCH] = {"epoch", false},
    [TAG_TREE_SIZE] = {"tree_size", false},
    [TAG_ROOT] = {"root", true},
    [TAG_NEXT_PK] = {"next_pk", true},
    [TAG_SIGNATURE] = {"signature", true},
    [TAG_TIMING] = {"timing", false},
    [TAG_DECISION] = {"decision", true},
    [TAG_ROLE] = {"role", true},
    [TAG_REQUESTS] = {"requests", false},
    [TAG_WINSIZE] = {"winsize", false},
    [TAG_CWD] = {"cwd", true},
    [TAG_TERM] = {"term", true},
};

const char *rec_tag_name(uint16_t tag)
{
	return tag < TAG_MAX ? tags[tag].name : NULL;
}

bool rec_tag_is_text(uint16_t tag)
{
	return tag < TAG_MAX && tags[tag].text;
}

bool rec_timing_ok(const struct rec_field *timing, uint32_t data_len)
{
	uint64_t sum = 0;

	if (!timing || !timing->len || timing->len % TIMING_ENTRY_LEN)
		return false;
	for (uint32_t i = 0; i < timing->len; i += TIMING_ENTRY_LEN)
		sum += get_be32(timing->data + i + 4);
	return sum == data_len;
}
