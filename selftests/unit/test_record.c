/*
 * Record format (store/record.h): building, the exact big-endian bytes, and
 * rec_parse's refusal of anything that is not a whole, valid record.
 */
#include <errno.h>
#include <stdlib.h>
#include <zlib.h>

#include "store/record.h"
#include "test.h"

static const uint8_t sid[ST_ID_LEN] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
				       0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};

/* Recompute length and CRC of a hand-edited record of len bytes at p. */
static void reseal(uint8_t *p, uint32_t len)
{
	put_be32(p, len);
	put_be32(p + len - REC_TRAILER_LEN, crc32(0, p, len - REC_TRAILER_LEN));
}

/* A TTY record with two fields: 48 + (6 + 8) + (6 + 2) + 4 = 74 bytes. */
static int build_small(struct buf *b)
{
	int err;

	err = rec_begin(b, REC_TTY, sid, 0x0102030405060708ull, 0x1112131415161718ull);
	err = err ?: rec_add_u64(b, TAG_STREAM, STREAM_OUT);
	err = err ?: rec_add_bytes(b, TAG_DATA, "hi", 2);
	return err ?: rec_finish(b, 0x2122232425262728ull);
}

TEST(record_layout_is_big_endian)
{
	static const uint8_t want[74] = {
	    0x00, 0x00, 0x00, 0x4a, /* len 74 */
	    0x00, 0x05, /* type REC_TTY */
	    0x00, 0x00, /* flags */
	    0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, /* seq */
	    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* wall_ns */
	    0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, /* mono_ns */
	    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, /* session */
	    0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
	    0x00, 0x1a, 0x00, 0x00, 0x00, 0x08, /* TAG_STREAM (26), 8 bytes */
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, /* STREAM_OUT */
	    0x00, 0x1b, 0x00, 0x00, 0x00, 0x02, /* TAG_DATA (27), 2 bytes */
	    'h',  'i',
	    /* CRC filled in below */
	};
	uint8_t expect[sizeof(want)];
	struct buf b = {0};

	if (!ASSERT_OK(build_small(&b), "build"))
		goto out;
	memcpy(expect, want, sizeof(want));
	put_be32(expect + 70, crc32(0, want, 70));
	ASSERT_EQ(b.len, 74, "record length");
	ASSERT_EQ(get_be32(b.data), 74, "len field at offset 0");
	ASSERT_EQ(get_be16(b.data + 4), REC_TTY, "type at offset 4");
	ASSERT_EQ(get_be64(b.data + 8), 0x2122232425262728ull, "seq at offset 8");
	ASSERT_EQ(get_be64(b.data + 16), 0x0102030405060708ull, "wall at offset 16");
	ASSERT_EQ(get_be64(b.data + 24), 0x1112131415161718ull, "mono at offset 24");
	ASSERT_MEMEQ(b.data + 32, sid, ST_ID_LEN, "session at offset 32");
	ASSERT_EQ(get_be16(b.data + REC_HEADER_LEN), TAG_STREAM, "first field tag at offset 48");
	ASSERT_EQ(get_be32(b.data + 70), crc32(0, b.data, 70), "CRC-32 trailer");
	ASSERT_BYTES_EQ(b.data, b.len, expect, sizeof(expect), "whole record");
out:
	buf_free(&b);
}

/* Type and tag numbers are on disk: new ones go at the end, never between. */
TEST(record_numbers_are_stable)
{
	ASSERT_EQ(REC_DAEMON, 1, "REC_DAEMON");
	ASSERT_EQ(REC_SESSION_START, 2, "REC_SESSION_START");
	ASSERT_EQ(REC_SESSION_ATTR, 3, "REC_SESSION_ATTR");
	ASSERT_EQ(REC_SESSION_END, 4, "REC_SESSION_END");
	ASSERT_EQ(REC_TTY, 5, "REC_TTY");
	ASSERT_EQ(REC_EXEC, 6, "REC_EXEC");
	ASSERT_EQ(REC_FORK, 7, "REC_FORK");
	ASSERT_EQ(REC_EXIT, 8, "REC_EXIT");
	ASSERT_EQ(REC_GAP, 9, "REC_GAP");
	ASSERT_EQ(TAG_HOST, 1, "TAG_HOST");
	ASSERT_EQ(TAG_USER, 5, "TAG_USER");
	ASSERT_EQ(TAG_TTY, 15, "TAG_TTY");
	ASSERT_EQ(TAG_PID, 19, "TAG_PID");
	ASSERT_EQ(TAG_ARGV, 23, "TAG_ARGV");
	ASSERT_EQ(TAG_STREAM, 26, "TAG_STREAM");
	ASSERT_EQ(TAG_DATA, 27, "TAG_DATA");
	ASSERT_EQ(TAG_STATUS, 29, "TAG_STATUS");
	ASSERT_EQ(TAG_LOST_EVENTS, 30, "TAG_LOST_EVENTS");
	ASSERT_EQ(TAG_LOST_BYTES, 31, "TAG_LOST_BYTES");
	ASSERT_EQ(TAG_REASON, 32, "TAG_REASON");
	ASSERT_EQ(TAG_FILE, 35, "TAG_FILE");
	ASSERT_EQ(TAG_FILE_OFFSET, 36, "TAG_FILE_OFFSET");
	ASSERT_EQ(TAG_SIGNATURE, 56, "TAG_SIGNATURE");
	ASSERT_EQ(TAG_TIMING, 57, "TAG_TIMING");
	ASSERT_EQ(STREAM_IN, 0, "STREAM_IN");
	ASSERT_EQ(STREAM_OUT, 1, "STREAM_OUT");
}

TEST(record_round_trip_every_field_type)
{
	static const uint8_t binary[] = {0x00, 0xff, 0x00, 0x80, '\n', 0x1b, '[', 'm'};
	struct buf b = {0};
	struct record rec;
	const struct rec_field *f;
	uint8_t *big = NULL;
	char err[128] = "", s[64];
	size_t used = 0, big_len = 65536;
	uint64_t v;
	int rc;

	big = malloc(big_len);
	if (!ASSERT_NOT_NULL(big, "malloc"))
		return;
	for (size_t i = 0; i < big_len; i++)
		big[i] = i * 7 + 3;
	rc = rec_begin(&b, REC_EXEC, sid, 1700000000123456789ull, 42);
	rc = rc ?: rec_add_u64(&b, TAG_PID, 0);
	rc = rc ?: rec_add_u64(&b, TAG_PPID, 1);
	rc = rc ?: rec_add_u64(&b, TAG_UID, UINT64_MAX);
	rc = rc ?: rec_add_u64(&b, TAG_EUID, 0x8000000000000001ull);
	rc = rc ?: rec_add_str(&b, TAG_FILENAME, "/usr/bin/ls");
	rc = rc ?: rec_add_str(&b, TAG_HOST, "");
	rc = rc ?: rec_add_bytes(&b, TAG_ARGV, binary, sizeof(binary));
	rc = rc ?: rec_add_bytes(&b, TAG_DATA, NULL, 0);
	rc = rc ?: rec_add_bytes(&b, TAG_OFFSET, big, big_len);
	rc = rc ?: rec_finish(&b, 7);
	if (!ASSERT_OK(rc, "build"))
		goto out;

	rc = rec_parse(b.data, b.len, &rec, &used, err);
	if (!ASSERT_OK(rc, err))
		goto out;
	ASSERT_EQ(used, b.len, "used");
	ASSERT_EQ(rec.len, b.len, "len");
	ASSERT_EQ(rec.type, REC_EXEC, "type");
	ASSERT_EQ(rec.flags, 0, "flags");
	ASSERT_EQ(rec.seq, 7, "seq");
	ASSERT_EQ(rec.wall_ns, 1700000000123456789ull, "wall_ns");
	ASSERT_EQ(rec.mono_ns, 42, "mono_ns");
	ASSERT_MEMEQ(rec.session, sid, ST_ID_LEN, "session");
	ASSERT_EQ(rec.nfields, 9, "nfields");

	ASSERT_TRUE(rec_u64(&rec, TAG_PID, &v) && v == 0, "pid 0");
	ASSERT_TRUE(rec_u64(&rec, TAG_PPID, &v) && v == 1, "ppid 1");
	ASSERT_TRUE(rec_u64(&rec, TAG_UID, &v) && v == UINT64_MAX, "uid max");
	ASSERT_TRUE(rec_u64(&rec, TAG_EUID, &v) && v == 0x8000000000000001ull, "euid top bit");
	ASSERT_STREQ(rec_str(&rec, TAG_FILENAME, s, sizeof(s)), "/usr/bin/ls", "filename");
	f = rec_field(&rec, TAG_HOST);
	ASSERT_TRUE(f && f->len == 0, "empty string present");
	ASSERT_STREQ(rec_str(&rec, TAG_HOST, s, sizeof(s)), "", "empty string");
	f = rec_field(&rec, TAG_ARGV);
	if (ASSERT_NOT_NULL(f, "argv field"))
		ASSERT_BYTES_EQ(f->data, f->len, binary, sizeof(binary), "binary bytes");
	f = rec_field(&rec, TAG_DATA);
	ASSERT_TRUE(f && f->len == 0, "empty bytes present");
	f = rec_field(&rec, TAG_OFFSET);
	if (ASSERT_NOT_NULL(f, "big field"))
		ASSERT_BYTES_EQ(f->data, f->len, big, big_len, "64 KiB field");
	/* fields keep their order and point into the parsed bytes */
	ASSERT_EQ(rec.fields[0].tag, TAG_PID, "first field");
	ASSERT_EQ(rec.fields[8].tag, TAG_OFFSET, "last field");
	ASSERT_TRUE(rec.fields[0].data == b.data + REC_HEADER_LEN + 6,
		    "field data points into record");

	/* absent and mistyped fields */
	ASSERT_TRUE(rec_field(&rec, TAG_USER) == NULL, "absent field");
	ASSERT_FALSE(rec_u64(&rec, TAG_USER, &v), "rec_u64 of an absent field");
	ASSERT_FALSE(rec_u64(&rec, TAG_FILENAME, &v), "rec_u64 of an 11-byte field");
	ASSERT_FALSE(rec_u64(&rec, TAG_DATA, &v), "rec_u64 of an empty field");
	ASSERT_STREQ(rec_str(&rec, TAG_USER, s, sizeof(s)), "", "rec_str of an absent field");
out:
	free(big);
	buf_free(&b);
}

TEST(record_without_session_or_fields)
{
	static const uint8_t zero[ST_ID_LEN] = {0};
	struct buf b = {0};
	struct record rec;
	char err[128];
	size_t used;

	if (!ASSERT_OK(rec_begin(&b, REC_DAEMON, NULL, 0, 0), "begin") ||
	    !ASSERT_OK(rec_finish(&b, 1), "finish"))
		goto out;
	ASSERT_EQ(b.len, REC_MIN_LEN, "minimal record length");
	if (ASSERT_OK(rec_parse(b.data, b.len, &rec, &used, err), err)) {
		ASSERT_EQ(rec.nfields, 0, "no fields");
		ASSERT_MEMEQ(rec.session, zero, ST_ID_LEN, "NULL session is all zero");
	}
out:
	buf_free(&b);
}

TEST(record_duplicate_tag_first_wins)
{
	struct buf b = {0};
	struct record rec;
	char err[128], s[16];
	size_t used;
	int rc;

	rc = rec_begin(&b, REC_SESSION_ATTR, sid, 1, 2);
	rc = rc ?: rec_add_str(&b, TAG_USER, "alice");
	rc = rc ?: rec_add_str(&b, TAG_USER, "mallory");
	rc = rc ?: rec_finish(&b, 3);
	if (ASSERT_OK(rc, "build") && ASSERT_OK(rec_parse(b.data, b.len, &rec, &used, err), err)) {
		ASSERT_EQ(rec.nfields, 2, "both fields kept");
		ASSERT_STREQ(rec_str(&rec, TAG_USER, s, sizeof(s)), "alice", "first wins");
	}
	buf_free(&b);
}

TEST(record_parse_ignores_bytes_after_it)
{
	struct buf b = {0};
	struct record rec;
	char err[128];
	size_t used = 0, off = 0, n = 0;
	uint8_t *two = NULL;

	if (!ASSERT_OK(build_small(&b), "build"))
		goto out;
	/* two records back to back, as in a segment: each parses on its own */
	two = malloc(2 * b.len);
	if (!ASSERT_NOT_NULL(two, "malloc"))
		goto out;
	memcpy(two, b.data, b.len);
	memcpy(two + b.len, b.data, b.len);
	while (off < 2 * b.len && rec_parse(two + off, 2 * b.len - off, &rec, &used, err) == 0) {
		ASSERT_EQ(used, b.len, "used is one record");
		off += used;
		n++;
	}
	ASSERT_EQ(n, 2, "records parsed");
	ASSERT_EQ(off, 2 * b.len, "consumed");
out:
	free(two);
	buf_free(&b);
}

TEST(record_every_bit_flip_is_detected)
{
	struct buf b = {0};
	struct record rec;
	char err[128];
	size_t used;
	uint8_t *copy = NULL;
	int undetected = 0;

	if (!ASSERT_OK(build_small(&b), "build"))
		goto out;
	/* alone, and followed by a second record as in a segment */
	copy = malloc(2 * b.len);
	if (!ASSERT_NOT_NULL(copy, "malloc"))
		goto out;
	for (int followed = 0; followed <= 1; followed++) {
		size_t avail = followed ? 2 * b.len : b.len;

		for (size_t bit = 0; bit < 8 * b.len; bit++) {
			int rc;

			memcpy(copy, b.data, b.len);
			memcpy(copy + b.len, b.data, b.len);
			copy[bit / 8] ^= 1u << (bit % 8);
			err[0] = 0;
			rc = rec_parse(copy, avail, &rec, &used, err);
			if (rc == 0 && undetected++ < 5)
				ASSERT_NEQ(rc, 0, followed ? "flip before another record" : "flip");
			if (rc != 0 && rc != -EBADMSG && rc != -EAGAIN)
				ASSERT_EQ(rc, -EBADMSG, "error code");
			if (rc != 0 && !err[0])
				ASSERT_TRUE(err[0], "error text set");
		}
	}
	ASSERT_EQ(undetected, 0, "undetected bit flips");
out:
	free(copy);
	buf_free(&b);
}

TEST(record_every_truncation_is_a_torn_tail)
{
	struct buf b = {0};
	struct record rec;
	char err[128];
	size_t used;
	int wrong = 0;

	if (!ASSERT_OK(build_small(&b), "build"))
		goto out;
	for (size_t n = 0; n < b.len; n++) {
		/* a copy of exactly n bytes, so a read past them is an ASan report */
		uint8_t *p = malloc(n ? n : 1);
		int rc;

		if (!ASSERT_NOT_NULL(p, "malloc"))
			break;
		memcpy(p, b.data, n);
		rc = rec_parse(p, n, &rec, &used, err);
		if (rc != -EAGAIN && wrong++ < 5)
			test_fail(__FILE__, __LINE__,
				  "truncated to %zu of %zu bytes: got %d, want -EAGAIN", n, b.len,
				  rc);
		free(p);
	}
	ASSERT_EQ(wrong, 0, "truncations not reported as -EAGAIN");
out:
	buf_free(&b);
}

TEST(record_length_out_of_bounds)
{
	uint8_t p[REC_MIN_LEN + 16] = {0};
	struct record rec;
	char err[128];
	size_t used;

	/* length checks come before the CRC: no need to reseal */
	put_be32(p, 0);
	ASSERT_EQ(rec_parse(p, sizeof(p), &rec, &used, err), -EBADMSG, "length 0");
	put_be32(p, REC_MIN_LEN - 1);
	ASSERT_EQ(rec_parse(p, sizeof(p), &rec, &used, err), -EBADMSG, "length below minimum");
	put_be32(p, REC_MAX_LEN + 1);
	ASSERT_EQ(rec_parse(p, sizeof(p), &rec, &used, err), -EBADMSG, "length above maximum");
	put_be32(p, UINT32_MAX);
	ASSERT_EQ(rec_parse(p, sizeof(p), &rec, &used, err), -EBADMSG, "length 2^32-1");
	/* a plausible length with too few bytes is a torn tail, not garbage */
	put_be32(p, REC_MAX_LEN);
	ASSERT_EQ(rec_parse(p, sizeof(p), &rec, &used, err), -EAGAIN, "maximum length, short");

	/* the minimum itself is fine once the CRC matches */
	put_be16(p + 4, REC_DAEMON);
	reseal(p, REC_MIN_LEN);
	ASSERT_OK(rec_parse(p, sizeof(p), &rec, &used, err), err);
}

TEST(record_maximum_size)
{
	size_t room = REC_MAX_LEN - REC_HEADER_LEN - 6 - REC_TRAILER_LEN;
	uint8_t *data = calloc(1, room + 1);
	struct buf b = {0};
	struct record rec;
	char err[128];
	size_t used;

	if (!ASSERT_NOT_NULL(data, "calloc"))
		return;
	ASSERT_OK(rec_begin(&b, REC_TTY, sid, 1, 1), "begin");
	ASSERT_EQ(rec_add_bytes(&b, TAG_DATA, data, room + 1), -E2BIG, "one byte too many");
	ASSERT_EQ(b.len, REC_HEADER_LEN, "refused field not added");
	ASSERT_EQ(rec_add_bytes(&b, TAG_DATA, data, (size_t)REC_MAX_LEN + 1), -E2BIG, "huge field");
	if (ASSERT_OK(rec_add_bytes(&b, TAG_DATA, data, room), "largest field") &&
	    ASSERT_OK(rec_finish(&b, 1), "finish")) {
		ASSERT_EQ(b.len, REC_MAX_LEN, "record of REC_MAX_LEN bytes");
		ASSERT_OK(rec_parse(b.data, b.len, &rec, &used, err), err);
		ASSERT_EQ(rec_add_u64(&b, TAG_PID, 1), -E2BIG, "nothing fits after it");
	}
	free(data);
	buf_free(&b);
}

TEST(record_finish_needs_a_header)
{
	struct buf b = {0};

	ASSERT_OK(buf_add(&b, "short", 5), "buf_add");
	ASSERT_EQ(rec_finish(&b, 1), -EINVAL, "finish without header");
	buf_free(&b);
}

TEST(record_field_overrunning_record)
{
	struct buf b = {0};
	struct record rec;
	char err[128];
	size_t used;
	uint8_t *p;

	if (!ASSERT_OK(build_small(&b), "build"))
		goto out;
	p = b.data;
	/* 22 bytes of fields: the first may claim 16 (swallowing the second), not 17 */
	put_be32(p + REC_HEADER_LEN + 2, 16);
	reseal(p, b.len);
	ASSERT_OK(rec_parse(p, b.len, &rec, &used, err), "field swallowing the next one");
	ASSERT_EQ(rec.nfields, 1, "one field left");
	put_be32(p + REC_HEADER_LEN + 2, 17);
	reseal(p, b.len);
	ASSERT_EQ(rec_parse(p, b.len, &rec, &used, err), -EBADMSG, "field one byte too long");
	put_be32(p + REC_HEADER_LEN + 2, UINT32_MAX);
	reseal(p, b.len);
	ASSERT_EQ(rec_parse(p, b.len, &rec, &used, err), -EBADMSG, "field length 2^32-1");
	put_be32(p + REC_HEADER_LEN + 2, UINT32_MAX - 5);
	reseal(p, b.len);
	ASSERT_EQ(rec_parse(p, b.len, &rec, &used, err), -EBADMSG, "field length wrapping +6");
	/* last field claims 3 bytes: it would swallow the first CRC byte */
	put_be32(p + REC_HEADER_LEN + 2, 8);
	put_be32(p + REC_HEADER_LEN + 14 + 2, 3);
	reseal(p, b.len);
	ASSERT_EQ(rec_parse(p, b.len, &rec, &used, err), -EBADMSG, "field into the CRC");
	/* and exactly right again */
	put_be32(p + REC_HEADER_LEN + 14 + 2, 2);
	reseal(p, b.len);
	ASSERT_OK(rec_parse(p, b.len, &rec, &used, err), err);
out:
	buf_free(&b);
}

TEST(record_field_header_cut)
{
	for (uint32_t extra = 1; extra < 6; extra++) {
		uint8_t p[REC_MIN_LEN + 6] = {0};
		uint32_t len = REC_MIN_LEN + extra;
		struct record rec;
		char err[128];
		size_t used;

		put_be16(p + 4, REC_TTY);
		reseal(p, len);
		ASSERT_EQ(rec_parse(p, len, &rec, &used, err), -EBADMSG, "partial field header");
	}
}

TEST(record_unknown_type_or_flags)
{
	static const uint16_t bad_types[] = {0, REC_TYPE_MAX, REC_TYPE_MAX + 1, 0x8000, 0xffff};
	struct buf b = {0};
	struct record rec;
	char err[128];
	size_t used;

	if (!ASSERT_OK(build_small(&b), "build"))
		goto out;
	for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
		put_be16(b.data + 4, bad_types[i]);
		reseal(b.data, b.len);
		ASSERT_EQ(rec_parse(b.data, b.len, &rec, &used, err), -EBADMSG, "unknown type");
	}
	for (uint16_t t = REC_DAEMON; t < REC_TYPE_MAX; t++) {
		put_be16(b.data + 4, t);
		reseal(b.data, b.len);
		ASSERT_OK(rec_parse(b.data, b.len, &rec, &used, err), rec_type_name(t));
	}
	put_be16(b.data + 6, 1);
	reseal(b.data, b.len);
	ASSERT_EQ(rec_parse(b.data, b.len, &rec, &used, err), -EBADMSG, "flags 1");
	put_be16(b.data + 6, 0x8000);
	reseal(b.data, b.len);
	ASSERT_EQ(rec_parse(b.data, b.len, &rec, &used, err), -EBADMSG, "flags 0x8000");
out:
	buf_free(&b);
}

TEST(record_field_count_limit)
{
	struct buf b = {0};
	struct record rec;
	char err[128];
	size_t used;
	int rc;

	rc = rec_begin(&b, REC_SESSION_ATTR, sid, 1, 2);
	for (int i = 0; i < REC_MAX_FIELDS; i++)
		rc = rc ?: rec_add_u64(&b, TAG_PID, i);
	rc = rc ?: rec_finish(&b, 1);
	if (!ASSERT_OK(rc, "build 64 fields"))
		goto out;
	if (ASSERT_OK(rec_parse(b.data, b.len, &rec, &used, err), err))
		ASSERT_EQ(rec.nfields, REC_MAX_FIELDS, "nfields");

	rc = rec_begin(&b, REC_SESSION_ATTR, sid, 1, 2);
	for (int i = 0; i < REC_MAX_FIELDS + 1; i++)
		rc = rc ?: rec_add_bytes(&b, TAG_DATA, "", 0);
	rc = rc ?: rec_finish(&b, 1);
	if (ASSERT_OK(rc, "build 65 fields"))
		ASSERT_EQ(rec_parse(b.data, b.len, &rec, &used, err), -EBADMSG, "65 fields");
out:
	buf_free(&b);
}

TEST(record_str_truncates)
{
	struct buf b = {0};
	struct record rec;
	char err[128], s[16];
	size_t used;
	int rc;

	rc = rec_begin(&b, REC_SESSION_START, sid, 1, 2);
	rc = rc ?: rec_add_str(&b, TAG_USER, "abcdef");
	rc = rc ?: rec_add_bytes(&b, TAG_HOST, "ab\0cd", 5);
	rc = rc ?: rec_finish(&b, 1);
	if (!ASSERT_OK(rc, "build") || !ASSERT_OK(rec_parse(b.data, b.len, &rec, &used, err), err))
		goto out;
	ASSERT_STREQ(rec_str(&rec, TAG_USER, s, sizeof(s)), "abcdef", "fits");
	ASSERT_STREQ(rec_str(&rec, TAG_USER, s, 7), "abcdef", "exactly fits with NUL");
	ASSERT_STREQ(rec_str(&rec, TAG_USER, s, 6), "abcde", "one short");
	ASSERT_STREQ(rec_str(&rec, TAG_USER, s, 4), "abc", "size 4");
	ASSERT_STREQ(rec_str(&rec, TAG_USER, s, 1), "", "size 1");
	memset(s, 'x', sizeof(s));
	rec_str(&rec, TAG_USER, s, 4);
	ASSERT_EQ(s[4], 'x', "nothing written past size");
	/* an embedded NUL ends the C string, whatever follows */
	ASSERT_STREQ(rec_str(&rec, TAG_HOST, s, sizeof(s)), "ab", "embedded NUL");
out:
	buf_free(&b);
}

TEST(record_type_names)
{
	ASSERT_STREQ(rec_type_name(REC_SESSION_START), "session_start", "session_start");
	ASSERT_STREQ(rec_type_name(REC_TTY), "tty", "tty");
	ASSERT_STREQ(rec_type_name(REC_GAP), "gap", "gap");
	ASSERT_STREQ(rec_type_name(0), "unknown", "0");
	ASSERT_STREQ(rec_type_name(REC_TYPE_MAX), "unknown", "REC_TYPE_MAX");
	ASSERT_STREQ(rec_type_name(0xffff), "unknown", "0xffff");
}

TEST(record_be_helpers)
{
	uint8_t p[8];

	put_be16(p, 0xa1b2);
	ASSERT_TRUE(p[0] == 0xa1 && p[1] == 0xb2, "put_be16 bytes");
	ASSERT_EQ(get_be16(p), 0xa1b2, "get_be16");
	put_be32(p, 0xa1b2c3d4u);
	ASSERT_TRUE(p[0] == 0xa1 && p[3] == 0xd4, "put_be32 bytes");
	ASSERT_EQ(get_be32(p), 0xa1b2c3d4u, "get_be32");
	put_be64(p, 0xf1e2d3c4b5a69788ull);
	ASSERT_TRUE(p[0] == 0xf1 && p[7] == 0x88, "put_be64 bytes");
	ASSERT_EQ(get_be64(p), 0xf1e2d3c4b5a69788ull, "get_be64");
}

TEST(record_timing_entries_must_cover_the_data)
{
	/* three writes: 3 bytes at +0, 1 byte at +5 us, 2 bytes at +1 ms */
	uint8_t t[3 * TIMING_ENTRY_LEN];
	struct rec_field f = {TAG_TIMING, sizeof(t), t};

	put_be32(t, 0);
	put_be32(t + 4, 3);
	put_be32(t + 8, 5000);
	put_be32(t + 12, 1);
	put_be32(t + 16, 1000000);
	put_be32(t + 20, 2);
	ASSERT_TRUE(rec_timing_ok(&f, 6), "lengths add up to the data");
	ASSERT_FALSE(rec_timing_ok(&f, 5), "one byte short");
	ASSERT_FALSE(rec_timing_ok(&f, 7), "one byte over");
	f.len = sizeof(t) - 1;
	ASSERT_FALSE(rec_timing_ok(&f, 6), "not whole entries");
	f.len = 0;
	ASSERT_FALSE(rec_timing_ok(&f, 0), "empty list");
	ASSERT_FALSE(rec_timing_ok(NULL, 0), "absent");
	/* lengths that would overflow a u32 sum */
	put_be32(t + 4, 0xffffffffu);
	put_be32(t + 12, 1);
	put_be32(t + 20, 0);
	f.len = sizeof(t);
	ASSERT_FALSE(rec_timing_ok(&f, 0), "wrapping sum");
}

TEST(record_parse_built_skips_only_the_crc)
{
	uint8_t sid[ST_ID_LEN] = {1};
	struct buf b = {0};
	struct record rec;
	char why[128];
	size_t used;

	if (!ASSERT_OK(rec_begin(&b, REC_TTY, sid, 1, 2), "begin") ||
	    !ASSERT_OK(rec_add_str(&b, TAG_DATA, "hello"), "field") ||
	    !ASSERT_OK(rec_finish(&b, 7), "finish"))
		goto out;
	ASSERT_OK(rec_parse_built(b.data, b.len, &rec, why), "a record just built parses");
	ASSERT_EQ(rec.seq, 7, "seq");
	b.data[b.len - 1] ^= 1; /* the CRC only */
	ASSERT_OK(rec_parse_built(b.data, b.len, &rec, why), "the CRC is not checked");
	ASSERT_EQ(rec_parse(b.data, b.len, &rec, &used, why), -EBADMSG, "rec_parse checks it");
	b.data[b.len - 1] ^= 1;
	put_be16(b.data + 6, 1); /* flags: still refused */
	ASSERT_EQ(rec_parse_built(b.data, b.len, &rec, why), -EBADMSG, "other checks stay");
out:
	buf_free(&b);
}
