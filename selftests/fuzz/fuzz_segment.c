/*
 * libFuzzer target for reading a segment (store/store.c, store/index.c):
 * the input is the body of segment 1 of a real store, after a valid 64-byte
 * header. Each run scans it read-only, reads every record again by its
 * position, then opens the store for writing, which indexes what it finds
 * and, after a damaged tail, starts segment 2 with a GAP record. Checked:
 * nothing crashes, store_read_at agrees with the scan, and the writer's
 * next sequence number and GAP follow from what the scan saw.
 *
 * The first input byte is a mode: if its low bit is set, the CRC of every
 * record along the chain of length fields is made right before writing, so
 * that mutations get past the CRC to the field parser and the index.
 *
 * One store under /dev/shm (or $TMPDIR) is made once; each run rewrites
 * segment 1 and removes segment 2 and the index.
 *
 *   build/fuzz/fuzz_segment selftests/fuzz/corpus/fuzz_segment
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "common/log.h"
#include "store/store.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_segment: %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static char base[64]; /* the temporary directory, removed at exit */
static char dir[128]; /* the store in it */
static char seg1[256], seg2[256], index_files[3][256];
static struct store reader; /* open read-only for the whole run: dir and id */
static uint8_t header[SEG_HEADER_LEN];

struct scan_state {
	const struct store *st;
	uint64_t records;
	uint64_t max_seq;
	uint64_t damage;
	uint64_t damage_off;
	uint64_t damage_bytes;
	bool damage_in_seg1;
	struct buf raw;
};

static int on_record(void *arg, const struct record *rec, uint32_t seg_no, uint64_t off)
{
	struct scan_state *s = arg;
	struct record again;

	s->records++;
	if (rec->seq > s->max_seq)
		s->max_seq = rec->seq;
	CHECK(off >= SEG_HEADER_LEN);
	/* the index's way in: the record at this position is the same record */
	CHECK(store_read_at(s->st, seg_no, off, &s->raw, &again) == 0);
	CHECK(again.len == rec->len && again.seq == rec->seq && again.type == rec->type &&
	      again.nfields == rec->nfields);
	return 0;
}

static void on_damage(void *arg, const char *file, uint64_t off, uint64_t bytes, const char *why)
{
	struct scan_state *s = arg;

	CHECK(why && *why);
	s->damage++;
	if (!strcmp(file, seg1)) {
		s->damage_in_seg1 = true;
		s->damage_off = off;
		s->damage_bytes = bytes;
	}
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

static void cleanup(void)
{
	store_close(&reader);
	if (base[0])
		nftw(base, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	struct store st;

	/* the recovery warnings would be one per run */
	log_set_level(LOG_ERROR);
	snprintf(base, sizeof(base), "%s/sealtrail-fuzz-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(base)) {
		perror(base);
		exit(1);
	}
	atexit(cleanup);
	snprintf(dir, sizeof(dir), "%s/store", base);
	snprintf(seg1, sizeof(seg1), "%s/segments/seg-%08u.log", dir, 1);
	snprintf(seg2, sizeof(seg2), "%s/segments/seg-%08u.log", dir, 2);
	snprintf(index_files[0], sizeof(index_files[0]), "%s/index.sqlite", dir);
	snprintf(index_files[1], sizeof(index_files[1]), "%s/index.sqlite-wal", dir);
	snprintf(index_files[2], sizeof(index_files[2]), "%s/index.sqlite-shm", dir);
	if (store_open(&st, dir, STORE_WRITE | STORE_CREATE)) {
		fprintf(stderr, "fuzz_segment: cannot create a store in %s\n", dir);
		exit(1);
	}
	store_close(&st);
	if (store_open(&reader, dir, 0)) {
		fprintf(stderr, "fuzz_segment: cannot open %s read-only\n", dir);
		exit(1);
	}
	/* the header segment 1 got, store id and all */
	{
		int fd = open(seg1, O_RDONLY);

		if (fd < 0 || read(fd, header, sizeof(header)) != sizeof(header)) {
			fprintf(stderr, "fuzz_segment: cannot read %s\n", seg1);
			exit(1);
		}
		close(fd);
	}
	return 0;
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

static void write_segment(const uint8_t *data, size_t size)
{
	int fd = open(seg1, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	CHECK(fd >= 0);
	CHECK(write_all(fd, header, sizeof(header)) == 0);
	CHECK(write_all(fd, data, size) == 0);
	close(fd);
	unlink(seg2);
	for (int i = 0; i < 3; i++)
		unlink(index_files[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t input_size)
{
	struct scan_state s = {.st = &reader}, after = {.st = &reader};
	struct store_visitor v = {on_record, on_damage, &s, 0};
	static struct buf body;
	struct store w;
	uint64_t gap = 0;
	size_t size;

	if (input_size < 1)
		return 0;
	size = input_size - 1;
	body.len = 0;
	CHECK(buf_add(&body, input + 1, size) == 0);
	if (input[0] & 1)
		fix_crcs(body.data, size);
	write_segment(body.data, size);

	CHECK(store_scan(&reader, &v) == 0);
	CHECK(s.damage == s.damage_in_seg1);
	if (s.damage) {
		CHECK(s.damage_off >= SEG_HEADER_LEN && s.damage_off < SEG_HEADER_LEN + size);
		CHECK(s.damage_off + s.damage_bytes == SEG_HEADER_LEN + size);
	}

	/* recovery: index what is there, GAP after a damaged tail */
	CHECK(store_open(&w, dir, STORE_WRITE) == 0);
	CHECK(w.seg_no == 2);
	gap = s.damage ? 1 : 0;
	CHECK(w.next_seq == s.max_seq + 1 + gap);
	store_close(&w);

	/* segment 2 holds the GAP, if any, and nothing else */
	v.arg = &after;
	v.from_seg = 2;
	CHECK(store_scan(&reader, &v) == 0);
	CHECK(after.damage == 0);
	CHECK(after.records == gap);
	if (gap)
		CHECK(after.max_seq == s.max_seq + 1);

	buf_free(&s.raw);
	buf_free(&after.raw);
	return 0;
}
