/*
 * libFuzzer target for rec_parse (store/record.c): arbitrary bytes are read
 * as a run of records, the way a segment scan reads them, and every record
 * that parses is checked: its fields lie inside it, the accessors stay in
 * bounds, and encoding it again gives exactly the bytes it came from (the
 * format is canonical). After an error the scan resynchronises one byte
 * further on, so garbage between records is covered too.
 *
 * The first input byte is a mode: if its low bit is set, the CRC of every
 * record along the chain of length fields is made right before parsing, so
 * that mutations reach the field parser instead of stopping at the CRC.
 * Each input's CRC-32 from common/crc32.c is also checked against zlib's,
 * and each record's timeline lines (cli/timeline.c) are checked too.
 *
 *   build/fuzz/fuzz_record selftests/fuzz/corpus/fuzz_record
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "fuzz.h"
#include "common/crc32.h"
#include "cli/timeline.h"
#include "store/record.h"

static void check_record(const uint8_t *p, size_t used, const struct record *rec)
{
	static struct buf again;
	const uint8_t *end = p + used - REC_TRAILER_LEN;
	size_t field_bytes = 0;
	char small[3], big[300];
	uint64_t v;
	int err;

	CHECK(used >= REC_MIN_LEN && used <= REC_MAX_LEN && used == rec->len);
	CHECK(rec->type > 0 && rec->type < REC_TYPE_MAX && rec->flags == 0);
	CHECK(rec->nfields <= REC_MAX_FIELDS);
	for (unsigned i = 0; i < rec->nfields; i++) {
		const struct rec_field *f = &rec->fields[i];

		CHECK(f->data >= p + REC_HEADER_LEN + 6 && f->data <= end &&
		      f->len <= end - f->data);
		field_bytes += 6 + f->len;
	}
	CHECK(REC_HEADER_LEN + field_bytes + REC_TRAILER_LEN == used);

	/* the accessors, on every tag and a few beyond */
	for (uint16_t tag = 0; tag <= TAG_MAX + 1; tag++) {
		const struct rec_field *f = rec_field(rec, tag);

		CHECK(!f || f->tag == tag);
		if (rec_u64(rec, tag, &v))
			CHECK(f && f->len == 8 && v == get_be64(f->data));
		rec_str(rec, tag, small, sizeof(small));
		CHECK(strlen(small) < sizeof(small));
		rec_str(rec, tag, big, sizeof(big));
		CHECK(strlen(big) <= (f ? f->len : 0));
	}
	CHECK(rec_type_name(rec->type) != NULL);
	{
		const struct rec_field *t = rec_field(rec, TAG_TIMING),
				       *d = rec_field(rec, TAG_DATA);

		if (rec_timing_ok(t, d ? d->len : 0))
			CHECK(t->len % TIMING_ENTRY_LEN == 0 && t->len > 0);
	}

	/*
	 * `sealtrail events`: a JSON object, and a human line in which no
	 * recorded byte reaches the terminal as a control character
	 */
	{
		static struct buf line;

		CHECK(timeline_line(&line, rec, true));
		CHECK(line.len >= 2 && line.data[0] == '{' && line.data[line.len - 1] == '}');
		for (size_t i = 0; i < line.len; i++)
			CHECK(line.data[i] >= 0x20 && line.data[i] != 0x7f);
		if (timeline_line(&line, rec, false))
			for (size_t i = 0; i < line.len; i++)
				CHECK(line.data[i] >= 0x20 && line.data[i] != 0x7f);
		else
			CHECK(rec->type == REC_TTY || rec->type == REC_FORK);
	}

	/* canonical: the same record built again is the same bytes */
	err = rec_begin(&again, rec->type, rec->session, rec->wall_ns, rec->mono_ns);
	for (unsigned i = 0; i < rec->nfields && !err; i++)
		err = rec_add_bytes(&again, rec->fields[i].tag, rec->fields[i].data,
				    rec->fields[i].len);
	err = err ?: rec_finish(&again, rec->seq);
	CHECK(err == 0);
	CHECK(again.len == used && !memcmp(again.data, p, used));
}

/* Give every record along the chain of length fields a correct CRC. */
static void fix_crcs(uint8_t *p, size_t size)
{
	for (size_t off = 0; size - off >= REC_MIN_LEN;) {
		uint32_t len = get_be32(p + off);

		if (len < REC_MIN_LEN || len > size - off)
			break;
		put_be32(p + off + len - REC_TRAILER_LEN, crc32(0, p + off, len - REC_TRAILER_LEN));
		off += len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t input_size)
{
	static struct record rec;
	static uint8_t *data;
	size_t off = 0, size;

	if (input_size < 1)
		return 0;
	/* a copy of exactly the record bytes, so ASan sees any read past them */
	size = input_size - 1;
	free(data);
	data = malloc(size ? size : 1);
	CHECK(data);
	memcpy(data, input + 1, size);
	/* the folded CRC-32 the store uses is zlib's, byte for byte */
	CHECK(st_crc32(input[0], data, size) == crc32(input[0], data, (uInt)size));
	if (input[0] & 1)
		fix_crcs(data, size);

	while (off < size) {
		char err[128] = "";
		size_t used = 0;
		int rc = rec_parse(data + off, size - off, &rec, &used, err);

		if (rc == 0) {
			CHECK(used <= size - off);
			check_record(data + off, used, &rec);
			off += used;
			continue;
		}
		CHECK(rc == -EAGAIN || rc == -EBADMSG);
		CHECK(err[0] && memchr(err, 0, sizeof(err)));
		/* a torn tail is torn whatever follows: only the end can be short */
		if (rc == -EAGAIN)
			CHECK(size - off < 4 || get_be32(data + off) > size - off);
		off++;
	}
	return 0;
}
