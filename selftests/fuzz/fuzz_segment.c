/*
 * libFuzzer target for reading a segment (store/store.c, store/seal.c,
 * store/index.c, store/verify.c): the input is the body of segment 1 of a
 * real store, after the valid v2 header (magic STRLSEG2, store id, the
 * segment's data key wrapped under DIR/keys/kek) the store wrote when this
 * process created it. Each run scans it read-only, opening every envelope,
 * reads every record again by its position, verifies the store, then
 * opens it for writing, which rebuilds the hash chain and tree, indexes
 * what it finds and, after a damaged tail, starts segment 2 with a GAP
 * record and one more for each session left open. Checked: nothing
 * crashes; store_read_at agrees with the scan, record for record and at
 * the damage; store_verify runs and never calls
 * a fuzzed store sealed (no input can hold a signature by this run's
 * first key); the writer's next sequence number, its refusal to continue
 * a log whose last seal hands over to a key it does not hold, and the GAP
 * all follow from what the scan saw (recovery trusts only the envelopes
 * that continue the hash chain and the sequence); and where segment 1 is
 * consistent
 * (or consistent up to a torn tail), so is the store the writer leaves:
 * its chain, sequence and tree are the ones verify walks.
 *
 * The first input byte is a mode:
 *   bit 0  SEAL: the body is a run of envelopes in the clear, each one a
 *          116-byte envelope header, the record, and 16 bytes for the tag
 *          (the length field counts all three); each is sealed right before
 *          writing, with this store's id, segment 1 and segment 1's key
 *          (or left plain if its flags say SEAL_PLAIN) and a boot id that
 *          is not the running one's, so that mutations get past AES-GCM to
 *          the record parser and the index. What does not parse as such an
 *          envelope is copied as it is.
 *   bit 1  CRC (with SEAL): each record's length, type, seq and CRC made to
 *          match its envelope.
 *   bit 2  CHAIN (with SEAL): prev_hash made as the writer makes it: the
 *          leaf hash of the envelope before, the header's chain value for
 *          the first.
 * Without SEAL the body is written as it is: real envelopes of another
 * store do not open here (other key), plain ones (seals) do.
 *
 * One store under /dev/shm (or $TMPDIR) is made once; each run rewrites
 * segment 1 and removes segment 2 and the index.
 *
 *   build/fuzz/fuzz_segment selftests/fuzz/corpus/fuzz_segment
 *
 * With SEALTRAIL_FUZZ_SEEDS=DIR set, it writes seeds instead of fuzzing
 * (selftests/fuzz/corpus/make_seeds.py): for each DIR/NAME.rec, a run of
 * records (record.h; a REC_EPOCH record there means "close an epoch"), it
 * makes a new store, appends them with store_append, and writes segment 1's
 * body as stored to DIR/NAME.sealed and in the SEAL form above to
 * DIR/NAME.open, then exits.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <sanitizer/common_interface_defs.h>
#include <sqlite3.h>

#include "common/log.h"
#include "store/store.h"
#include "store/verify.h"

static int err_fd = 2; /* stderr, also while it is muted */

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			dprintf(err_fd, "fuzz_segment: %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/*
 * The store logs an error for what is expected to fail here (a read where
 * the scan found damage, a writer that refuses): stderr goes to /dev/null
 * around those calls only. Sanitizer reports and CHECK use a copy of it.
 */
static int devnull_fd = -1;

static void mute(bool on)
{
	fflush(stderr);
	dup2(on ? devnull_fd : err_fd, 2);
}

enum { MODE_SEAL = 1, MODE_CRC = 2, MODE_CHAIN = 4 };

static char base[64]; /* the temporary directory, removed at exit */
static char dir[128]; /* the store in it */
static char seg1[256], seg2[256], index_files[3][256];
static struct store reader; /* open read-only for the whole run: dir, id and kek */
static uint8_t header[SEG_HEADER_LEN]; /* segment 1's, as the store wrote it */
static uint8_t dk[SEAL_KEY_LEN]; /* segment 1's data key */

struct scan_state {
	const struct store *st;
	uint64_t records;
	uint64_t envelopes;
	uint64_t max_seq;
	uint64_t last_off; /* of the last envelope visited */
	/*
	 * What recovery trusts: the envelopes that continue the chain (prev_hash
	 * and seq), up to the first that does not (for the writer, damage).
	 */
	uint8_t chain[SEAL_HASH_LEN];
	bool chain_broken;
	uint64_t chain_seq; /* of the last envelope that continued it */
	uint64_t chain_envelopes;
	uint32_t next_epoch; /* what the writer will want, from the last seal in it */
	uint64_t damage;
	uint64_t damage_off;
	uint64_t damage_bytes;
	bool damage_in_seg1;
	struct buf raw;
};

static int on_envelope(void *arg, const struct seal_envelope *env, uint32_t seg_no, uint64_t off)
{
	struct scan_state *s = arg;
	struct record rec;
	const struct rec_field *pk;
	char why[128];
	size_t used;

	CHECK(off >= SEG_HEADER_LEN && env->len >= SEAL_HEADER_LEN + SEAL_TAG_LEN);
	CHECK(env->h.seq && env->h.type && !(env->h.flags & ~SEAL_PLAIN));
	s->envelopes++;
	s->last_off = off;
	if (env->h.seq > s->max_seq)
		s->max_seq = env->h.seq;
	if (s->chain_broken || memcmp(env->h.prev_hash, s->chain, SEAL_HASH_LEN) ||
	    env->h.seq != s->chain_seq + 1) {
		s->chain_broken = true;
		return 0;
	}
	s->chain_seq = env->h.seq;
	s->chain_envelopes++;
	seal_leaf_hash(env->bytes, env->len, s->chain);
	/* the writer continues the epoch the last seal in the chain hands over to */
	if (env->h.type == REC_EPOCH && (env->h.flags & SEAL_PLAIN) &&
	    rec_parse(env->payload, env->payload_len, &rec, &used, why) == 0 &&
	    (pk = rec_field(&rec, TAG_NEXT_PK)) && pk->len == SEAL_PK_LEN)
		s->next_epoch = env->h.epoch + 1;
	return 0;
}

static int on_segment(void *arg, const uint8_t *hdr, uint32_t seg_no)
{
	struct scan_state *s = arg;

	seal_chain_header(s->chain, hdr, SEG_HEADER_LEN);
	return 0;
}

static int on_record(void *arg, const struct record *rec, uint32_t seg_no, uint64_t off)
{
	struct scan_state *s = arg;
	struct record again;

	s->records++;
	CHECK(off == s->last_off); /* opened right after the envelope was visited */
	/* the index's way in: the record at this position is the same record */
	CHECK(store_read_at(s->st, seg_no, off, &s->raw, &again) == 0);
	CHECK(again.len == rec->len && again.seq == rec->seq && again.type == rec->type &&
	      again.flags == rec->flags && again.wall_ns == rec->wall_ns &&
	      again.mono_ns == rec->mono_ns && again.nfields == rec->nfields &&
	      !memcmp(again.session, rec->session, ST_ID_LEN));
	for (unsigned i = 0; i < rec->nfields; i++)
		CHECK(again.fields[i].tag == rec->fields[i].tag &&
		      again.fields[i].len == rec->fields[i].len &&
		      !memcmp(again.fields[i].data, rec->fields[i].data, rec->fields[i].len));
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
	if (reader.dir) /* opened (store_close wants a store store_open set up) */
		store_close(&reader);
	if (base[0])
		nftw(base, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static int write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), err;

	if (fd < 0)
		return -errno;
	err = write_all(fd, data, len);
	close(fd);
	return err;
}

/* Segment 1's key, unwrapped from its header with the store's kek. */
static int segment_key(const char *store, const uint8_t *hdr, uint8_t key[SEAL_KEY_LEN])
{
	char path[512];
	struct buf kek = {0};
	int err;

	snprintf(path, sizeof(path), "%s/keys/kek", store);
	err = buf_read_file(&kek, path, 0);
	if (!err && kek.len != SEAL_KEY_LEN)
		err = -EINVAL;
	err = err ?: seal_unwrap(kek.data, hdr + SEG_HEADER_AAD, hdr, SEG_HEADER_AAD, key);
	buf_free(&kek);
	return err;
}

/*
 * Seeds: each DIR/NAME.rec through a new store, segment 1's body written
 * out as stored (NAME.sealed) and with every envelope opened (NAME.open).
 */
static void write_seeds(const char *seeds)
{
	struct buf in = {0}, seg = {0}, sealed = {0}, open_form = {0}, rec = {0}, plain = {0};
	char path[512], sdir[256];
	struct dirent *d;
	DIR *dp = opendir(seeds);
	int n = 0;

	if (!dp) {
		perror(seeds);
		exit(1);
	}
	while ((d = readdir(dp))) {
		size_t len = strlen(d->d_name);
		struct store st;
		uint8_t key[SEAL_KEY_LEN];

		if (len < 5 || strcmp(d->d_name + len - 4, ".rec"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", seeds, d->d_name);
		snprintf(sdir, sizeof(sdir), "%s/seed-%d", base, n++);
		CHECK(buf_read_file(&in, path, 0) == 0);
		CHECK(store_open(&st, sdir, STORE_WRITE | STORE_CREATE) == 0);
		for (size_t off = 0, used; off < in.len; off += used) {
			struct record r;
			char why[128];

			if (rec_parse(in.data + off, in.len - off, &r, &used, why)) {
				fprintf(stderr, "fuzz_segment: %s at %zu: %s\n", path, off, why);
				exit(1);
			}
			if (r.type == REC_EPOCH) {
				CHECK(store_seal_epoch(&st, "seed") == 0);
				continue;
			}
			rec.len = 0;
			CHECK(buf_add(&rec, in.data + off, used - REC_TRAILER_LEN) == 0);
			CHECK(store_append(&st, &rec) == 0);
		}
		store_close(&st);
		snprintf(path, sizeof(path), "%s/segments/seg-00000001.log", sdir);
		CHECK(buf_read_file(&seg, path, 0) == 0 && seg.len >= SEG_HEADER_LEN);
		CHECK(segment_key(sdir, seg.data, key) == 0);
		sealed.len = open_form.len = 0;
		CHECK(buf_add(&sealed, seg.data + SEG_HEADER_LEN, seg.len - SEG_HEADER_LEN) == 0);
		for (size_t off = SEG_HEADER_LEN, used; off < seg.len; off += used) {
			struct seal_envelope env;
			uint8_t h[SEAL_HEADER_LEN];
			char why[128];

			CHECK(seal_parse(seg.data + off, seg.len - off, &env, &used, why) == 0);
			CHECK(seal_open(&env, key, &plain) == 0);
			memcpy(h, env.bytes, SEAL_HEADER_LEN);
			put_be32(h, SEAL_HEADER_LEN + plain.len + SEAL_TAG_LEN);
			CHECK(buf_add(&open_form, h, sizeof(h)) == 0);
			CHECK(buf_add(&open_form, plain.data, plain.len) == 0);
			CHECK(buf_add(&open_form, env.tag, SEAL_TAG_LEN) == 0);
		}
		len -= 4;
		snprintf(path, sizeof(path), "%s/%.*s.sealed", seeds, (int)len, d->d_name);
		CHECK(write_file(path, sealed.data, sealed.len) == 0);
		snprintf(path, sizeof(path), "%s/%.*s.open", seeds, (int)len, d->d_name);
		CHECK(write_file(path, open_form.data, open_form.len) == 0);
	}
	closedir(dp);
	buf_free(&in);
	buf_free(&seg);
	buf_free(&sealed);
	buf_free(&open_form);
	buf_free(&rec);
	buf_free(&plain);
	exit(0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	struct store st;

	/* the recovery warnings would be one per run */
	log_set_level(LOG_ERROR);
	err_fd = dup(2);
	devnull_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (err_fd < 0 || devnull_fd < 0) {
		perror("fuzz_segment: stderr");
		exit(1);
	}
	__sanitizer_set_report_fd((void *)(intptr_t)err_fd);
	snprintf(base, sizeof(base), "%s/sealtrail-fuzz-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(base)) {
		perror(base);
		exit(1);
	}
	atexit(cleanup);
	if (getenv("SEALTRAIL_FUZZ_SEEDS"))
		write_seeds(getenv("SEALTRAIL_FUZZ_SEEDS"));
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
	if (store_open(&reader, dir, 0) || !reader.have_kek) {
		fprintf(stderr, "fuzz_segment: cannot open %s read-only with its kek\n", dir);
		exit(1);
	}
	/* the header segment 1 got, store id, wrapped key and all */
	{
		int fd = open(seg1, O_RDONLY);

		if (fd < 0 || read(fd, header, sizeof(header)) != sizeof(header) ||
		    memcmp(header, SEG_MAGIC, 8) || get_be32(header + 8) != SEG_VERSION) {
			fprintf(stderr, "fuzz_segment: cannot read a v2 header from %s\n", seg1);
			exit(1);
		}
		close(fd);
	}
	if (segment_key(dir, header, dk)) {
		fprintf(stderr, "fuzz_segment: segment 1's key does not unwrap\n");
		exit(1);
	}
	return 0;
}

/* Seal every envelope of an open-form body (see the top), into out after the header. */
static void seal_body(const uint8_t *p, size_t size, int mode, struct buf *out)
{
	static struct buf rec, sealed;
	uint8_t prev[SEAL_HASH_LEN] = {0};
	size_t off = 0;

	seal_chain_header(prev, header, SEG_HEADER_LEN); /* segment 1's, after nothing */
	while (off < size) {
		struct seal_header h;
		const uint8_t *e = p + off;
		uint32_t len;

		if (size - off < 4)
			break;
		len = get_be32(e);
		if (len < SEAL_HEADER_LEN + SEAL_TAG_LEN || len > size - off)
			break;
		h.type = get_be16(e + 4);
		h.flags = get_be16(e + 6);
		h.seq = get_be64(e + 8);
		h.epoch = get_be32(e + 16);
		h.segment = 1;
		h.wall_ns = get_be64(e + 24);
		h.mono_ns = get_be64(e + 32);
		memcpy(h.boot_id, e + 40, 16);
		/*
		 * Never this boot's id: the writer's GAP (real clocks, this boot)
		 * would be held to the made-up times before it. A boot change at a
		 * GAP is what a crash and reboot look like.
		 */
		if (!memcmp(h.boot_id, reader.boot_id, 16))
			h.boot_id[0] ^= 0x80;
		memcpy(h.store_id, reader.id, ST_ID_LEN);
		memcpy(h.prev_hash, mode & MODE_CHAIN ? prev : e + 72, SEAL_HASH_LEN);
		rec.len = 0;
		CHECK(buf_add(&rec, e + SEAL_HEADER_LEN, len - SEAL_HEADER_LEN - SEAL_TAG_LEN) ==
		      0);
		if ((mode & MODE_CRC) && rec.len >= REC_MIN_LEN) {
			put_be32(rec.data, rec.len);
			put_be16(rec.data + 4, h.type);
			put_be64(rec.data + 8, h.seq);
			put_be32(rec.data + rec.len - REC_TRAILER_LEN,
				 crc32(0, rec.data, rec.len - REC_TRAILER_LEN));
		}
		if (seal_build(&sealed, &h, rec.data, rec.len, h.flags & SEAL_PLAIN ? NULL : dk)) {
			CHECK(buf_add(out, e, len) == 0); /* as it is */
		} else {
			CHECK(buf_add(out, sealed.data, sealed.len) == 0);
			seal_leaf_hash(sealed.data, sealed.len, prev);
		}
		off += len;
	}
	CHECK(buf_add(out, p + off, size - off) == 0);
}

static void write_segment(const uint8_t *data, size_t size, int mode)
{
	static struct buf seg;

	seg.len = 0;
	CHECK(buf_add(&seg, header, sizeof(header)) == 0);
	if (mode & MODE_SEAL)
		seal_body(data, size, mode, &seg);
	else
		CHECK(buf_add(&seg, data, size) == 0);
	CHECK(write_file(seg1, seg.data, seg.len) == 0);
	unlink(seg2);
	for (int i = 0; i < 3; i++)
		unlink(index_files[i]);
}

static long long file_size(const char *path)
{
	struct stat sb;

	return stat(path, &sb) ? -1 : (long long)sb.st_size;
}

/* Sessions the index holds without an end (the writer's GAPs do not end them). */
static uint64_t open_sessions(struct store *st)
{
	sqlite3_stmt *q;
	uint64_t n = 0;

	CHECK(sqlite3_prepare_v2(st->index.db, "SELECT count(*) FROM sessions WHERE end_ns IS NULL",
				 -1, &q, NULL) == SQLITE_OK);
	if (sqlite3_step(q) == SQLITE_ROW)
		n = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t input_size)
{
	struct scan_state s = {.st = &reader}, after = {.st = &reader};
	struct store_visitor v = {.record = on_record,
				  .damage = on_damage,
				  .arg = &s,
				  .envelope = on_envelope,
				  .segment = on_segment};
	struct verify_opts vo = {0};
	struct verify_result vr;
	struct store w;
	struct buf raw = {0};
	struct record rec;
	uint64_t gap = 0;
	long long size;
	bool consistent;
	int rc;

	if (input_size < 1)
		return 0;
	write_segment(input + 1, input_size - 1, input[0]);
	size = file_size(seg1);
	CHECK(size >= SEG_HEADER_LEN);

	CHECK(store_scan(&reader, &v) == 0);
	CHECK(s.damage == s.damage_in_seg1);
	CHECK(s.records <= s.envelopes && s.envelopes <= s.records + 1);
	if (s.damage) {
		CHECK(s.damage_off >= SEG_HEADER_LEN && s.damage_off < (uint64_t)size);
		CHECK(s.damage_off + s.damage_bytes == (uint64_t)size);
		/* where the scan stopped, store_read_at fails too */
		mute(true);
		rc = store_read_at(&reader, 1, s.damage_off, &raw, &rec);
		mute(false);
		CHECK(rc != 0);
	} else {
		CHECK(s.records == s.envelopes);
	}

	/* verify walks what the scan walked, without a key, and finds no seal it trusts */
	CHECK(store_verify(dir, &vo, &vr) == 0);
	CHECK(!vr.ok && vr.reason[0]);
	/*
	 * Segment 1 consistent (only unsealed), or consistent up to a torn
	 * tail: the writer must continue the chain, the sequence and the tree
	 * exactly as verify walks them, with a GAP for the torn bytes.
	 */
	consistent = (!s.damage && !s.chain_broken && strstr(vr.reason, "no seals")) ||
		     (s.damage && s.records == s.envelopes && vr.offset == s.damage_off &&
		      (strstr(vr.reason, "torn write") || strstr(vr.reason, "bytes left")));

	/* recovery: index what is there, GAP after a damaged tail */
	mute(s.next_epoch != 0);
	rc = store_open(&w, dir, STORE_WRITE);
	mute(false);
	if (s.next_epoch != 0) {
		/* the chain's last seal hands over to epoch N; keys/epoch is epoch 0's */
		CHECK(rc == -EKEYREJECTED);
		CHECK(file_size(seg2) < 0);
		goto out;
	}
	CHECK(rc == 0);
	CHECK(w.seg_no == 2);
	CHECK(w.epoch == 0);
	/*
	 * A GAP for the damage, or for where the chain stops, and one more for
	 * every session the records before it left open
	 */
	gap = s.damage || s.chain_broken ? 1 + open_sessions(&w) : 0;
	CHECK(w.next_seq == s.chain_seq + 1 + gap);
	CHECK(w.tree.size == s.chain_envelopes + gap);
	store_close(&w);

	/* segment 2 holds the GAP, if any, and nothing else */
	v.arg = &after;
	v.from_seg = 2;
	CHECK(store_scan(&reader, &v) == 0);
	CHECK(after.damage == 0);
	CHECK(after.records == gap && after.envelopes == gap);
	if (gap)
		CHECK(after.max_seq == s.chain_seq + gap);
	if (consistent) {
		CHECK(store_verify(dir, &vo, &vr) == 0);
		/* fuzzed times may lie ahead of the writer's clock: not the writer's fault */
		if (strstr(vr.reason, "clock") || strstr(vr.reason, "boot id"))
			goto out;
		if (!strstr(vr.reason, "no seals"))
			dprintf(err_fd, "fuzz_segment: after recovery: %s (seq %llu, %s @%llu)\n",
				vr.reason, (unsigned long long)vr.seq, vr.file,
				(unsigned long long)vr.offset);
		CHECK(!vr.ok && strstr(vr.reason, "no seals"));
		CHECK(vr.records == s.chain_envelopes + gap);
	}
out:
	buf_free(&raw);
	buf_free(&s.raw);
	buf_free(&after.raw);
	return 0;
}
