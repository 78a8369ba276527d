/*
 * libFuzzer target for reading saved checkpoints (store/verify.c): the
 * input is a file given to `sealtrail verify --against`, as an auditor
 * collects it from a sink: signed notes one after another, syslog lines
 * with a base64 note, anything else around them. checkpoint_each_note
 * must hand out NUL-terminated notes inside their bounds at offsets inside
 * the input, and store_verify against a real, sealed store must run to a
 * verdict without crashing, whatever the notes say.
 *
 * The first input byte is a mode:
 *   bit 0  every "sealtrail/STORE" in the input becomes this store's
 *          origin, so that notes get past the store check to the
 *          signature, epoch, size and root checks
 *   bit 1  the store's real latest checkpoint is appended, so that good
 *          notes meet bad ones
 *
 *   build/fuzz/fuzz_checkpoint selftests/fuzz/corpus/fuzz_checkpoint
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "common/log.h"
#include "store/store.h"
#include "store/verify.h"

static char base[64], dir[128], against[128];
static char origin[64]; /* sealtrail/<store id> */
static struct buf latest;

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

static void cleanup(void)
{
	if (base[0])
		nftw(base, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* A small sealed store: records, three closed epochs, its latest checkpoint. */
static void make_store(void)
{
	const char *tmp = access("/dev/shm", W_OK) ? getenv("TMPDIR") : "/dev/shm";
	char idhex[ST_ID_HEX], path[256];
	struct store st;
	struct buf rec = {0};

	snprintf(base, sizeof(base), "%s/fuzz-checkpoint-XXXXXX", tmp ? tmp : "/tmp");
	CHECK(mkdtemp(base));
	atexit(cleanup);
	snprintf(dir, sizeof(dir), "%s/store", base);
	snprintf(against, sizeof(against), "%s/against", base);
	log_set_level(LOG_ERROR);
	CHECK(store_open(&st, dir, STORE_WRITE | STORE_CREATE) == 0);
	for (int i = 0; i < 9; i++) {
		CHECK(rec_begin(&rec, REC_TTY, NULL, clock_ns(CLOCK_REALTIME),
				clock_ns(CLOCK_BOOTTIME)) == 0);
		CHECK(rec_add_bytes(&rec, TAG_DATA, "output", 6) == 0);
		CHECK(store_append(&st, &rec) == 0);
		if (i % 3 == 2)
			CHECK(store_seal_epoch(&st, "fuzz") == 0);
	}
	hex_encode(st.id, ST_ID_LEN, idhex);
	snprintf(origin, sizeof(origin), "sealtrail/%s", idhex);
	store_close(&st);
	buf_free(&rec);
	snprintf(path, sizeof(path), "%s/checkpoints/latest", dir);
	CHECK(buf_read_file(&latest, path, 0) == 0 && latest.len);
}

struct seen {
	const char *text;
	size_t len;
	unsigned notes;
};

static int on_note(void *arg, const char *note, uint64_t off)
{
	struct seen *s = arg;

	CHECK(off <= s->len);
	CHECK(strlen(note) <= 4096);
	s->notes++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct buf in;
	struct verify_opts o = {.against_file = against};
	struct verify_result r;
	struct seen s;
	FILE *f;

	if (!base[0])
		make_store();
	if (size < 1)
		return 0;
	in.len = 0;
	CHECK(buf_add(&in, data + 1, size - 1) == 0);
	if (data[0] & 1) {
		/* this store's origin in place of the placeholder */
		struct buf out = {0};
		const char *p = (const char *)in.data, *end = p + in.len, *hit;

		while ((hit = memmem(p, end - p, "sealtrail/STORE", 15))) {
			CHECK(buf_add(&out, p, hit - p) == 0);
			CHECK(buf_add(&out, origin, strlen(origin)) == 0);
			p = hit + 15;
		}
		CHECK(buf_add(&out, p, end - p) == 0);
		buf_free(&in);
		in = out;
	}
	if (data[0] & 2)
		CHECK(buf_add(&in, latest.data, latest.len) == 0);

	s = (struct seen){(const char *)in.data, in.len, 0};
	CHECK(checkpoint_each_note((const char *)in.data, in.len, on_note, &s) == 0);

	f = fopen(against, "we");
	CHECK(f);
	CHECK(fwrite(in.data, 1, in.len, f) == in.len || !in.len);
	fclose(f);
	CHECK(store_verify(dir, &o, &r) == 0);
	/* a verdict, with a reason when it is no */
	CHECK(r.ok || r.reason[0]);
	if (r.ok)
		CHECK(r.checkpoints >= 1 && r.checkpoint_ok && s.notes >= r.checkpoints);
	return 0;
}
