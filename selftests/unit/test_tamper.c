/*
 * Tamper suite for store_verify() (store/verify.c) and the readers' GCM
 * checks (store/store.c): every attack is played by someone who holds
 * what root on the bastion holds today, DIR/keys/kek (so every segment's
 * data key) and DIR/keys/epoch (the key of the epoch still open), and who
 * can therefore open, change and re-seal envelopes and recompute the hash
 * chain. What they lack are the secret keys of closed epochs, and the
 * first public key and the checkpoints the auditor keeps elsewhere.
 *
 * Each test builds the same store (fixture_build): epochs 0, 1, 2 (empty)
 * and 3 closed, a few records in the open epoch 4, several segments and
 * one writer restart, with a copy of checkpoints/latest after each close
 * and a snapshot of the whole store after epoch 1. Each attack works on a
 * copy of the store (attack_copy) and must make store_verify() say
 * ok == false with a reason that names what it saw, at the right record.
 *
 * The model (model_load ... model_write) is the attacker's toolkit: every
 * envelope of every segment with its record in the clear, re-sealed with
 * seal_build under its segment's key after a change.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"
#include "store/verify.h"
#include "test.h"

#define NS 1000000000ull
#define NEPOCHS 4 /* closed by the fixture: 0, 1, 2 (empty), 3; epoch 4 stays open */
#define MAX_SEGS 64
#define MAX_ENVS 512
#define EPOCH_FILE_LEN (4 + SEAL_KEY_LEN + SEAL_PK_LEN)

static const uint8_t SESSION[ST_ID_LEN] = "sealtrail-tamper"; /* 16 bytes, no NUL */

/* ---- files ---- */

static int write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode), err;

	if (fd < 0)
		return -errno;
	err = write_all(fd, data, len);
	close(fd);
	return err;
}

static const char *cp_from, *cp_to;

static int copy_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw UNUSED)
{
	char dst[4096];
	struct buf b = {0};
	int err = 0;

	snprintf(dst, sizeof(dst), "%s%s", cp_to, path + strlen(cp_from));
	if (flag == FTW_D)
		return mkdir(dst, sb->st_mode & 07777) && errno != EEXIST ? -1 : 0;
	if (flag != FTW_F)
		return 0;
	err = buf_read_file(&b, path, 0) ?: write_file(dst, b.data, b.len, sb->st_mode & 07777);
	buf_free(&b);
	return err ? -1 : 0;
}

/* cp -a, for directories of regular files. */
static int copy_tree(const char *from, const char *to)
{
	cp_from = from;
	cp_to = to;
	return nftw(from, copy_entry, 16, FTW_PHYS) ? -EIO : 0;
}

static int remove_entry(const char *path, const struct stat *sb UNUSED, int flag UNUSED,
			struct FTW *ftw UNUSED)
{
	return remove(path) ? -1 : 0;
}

static int remove_tree(const char *dir)
{
	return nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) ? -EIO : 0;
}

static int copy_file(const char *from, const char *to)
{
	struct buf b = {0};
	int err = buf_read_file(&b, from, 0) ?: write_file(to, b.data, b.len, 0644);

	buf_free(&b);
	return err;
}

static const char *seg_file(const char *dir, uint32_t seg)
{
	static char path[4][600];
	static int next;
	char *p = path[next++ % 4];

	snprintf(p, sizeof(path[0]), "%s/segments/seg-%08u.log", dir, seg);
	return p;
}

static const char *in_dir(const char *dir, const char *name)
{
	static char path[4][600];
	static int next;
	char *p = path[next++ % 4];

	snprintf(p, sizeof(path[0]), "%s/%s", dir, name);
	return p;
}

/* ---- the store every test starts from ---- */

struct fixture {
	char dir[512];
	char pinned[512]; /* keys/first.pub, as the auditor pinned it at creation */
	char cp[NEPOCHS][512]; /* checkpoints/latest right after epoch k closed */
	char snapshot[512]; /* the whole store right after epoch 1 closed */
	uint8_t sk[NEPOCHS + 1][SEAL_KEY_LEN]; /* every epoch's secret key; [4]: current */
	uint64_t seal_seq[NEPOCHS]; /* seq of the record that closed epoch k */
	uint64_t cp_size[NEPOCHS]; /* tree size that checkpoint k signs */
	uint64_t records; /* envelopes in the store */
	uint32_t segments;
};

/* A record as the daemon writes it: real clocks, this boot. */
static int append_now(struct store *st, int i)
{
	char text[128];
	struct buf b = {0};
	int err;

	err = rec_begin(&b, i % 3 == 2 ? REC_EXEC : REC_TTY, SESSION, clock_ns(CLOCK_REALTIME),
			clock_ns(CLOCK_BOOTTIME));
	if (i % 3 == 2) {
		snprintf(text, sizeof(text), "/usr/bin/cmd%d", i);
		err = err ?: rec_add_u64(&b, TAG_PID, 5000 + i);
		err = err ?: rec_add_str(&b, TAG_FILENAME, text);
	} else {
		snprintf(text, sizeof(text), "line %d of what the user saw\r\n", i);
		err = err ?: rec_add_u64(&b, TAG_STREAM, i % 3);
		err = err ?: rec_add_u64(&b, TAG_TTY_INDEX, 3);
		err = err ?: rec_add_bytes(&b, TAG_DATA, text, strlen(text));
	}
	err = err ?: store_append(st, &b);
	buf_free(&b);
	return err;
}

static int read_epoch_key(const char *dir, uint32_t *epoch, uint8_t sk[SEAL_KEY_LEN],
			  uint8_t pk[SEAL_PK_LEN])
{
	struct buf b = {0};
	int err = buf_read_file(&b, in_dir(dir, "keys/epoch"), 0);

	if (!err && b.len != EPOCH_FILE_LEN)
		err = -EINVAL;
	if (!err) {
		*epoch = get_be32(b.data);
		memcpy(sk, b.data + 4, SEAL_KEY_LEN);
		if (pk)
			memcpy(pk, b.data + 4 + SEAL_KEY_LEN, SEAL_PK_LEN);
	}
	buf_free(&b);
	return err;
}

static const int per_epoch[NEPOCHS + 1] = {6, 8, 0, 6, 3};

static bool fixture_build(struct fixture *f)
{
	struct store st;
	uint32_t epoch;
	int i = 0;

	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "%s/store", test_dir());
	snprintf(f->pinned, sizeof(f->pinned), "%s/pinned.pub", test_dir());
	snprintf(f->snapshot, sizeof(f->snapshot), "%s/snapshot", test_dir());
	if (!ASSERT_OK(store_open(&st, f->dir, STORE_WRITE | STORE_CREATE), "create the store"))
		return false;
	st.seg_rotate_bytes = 1500; /* about 5 envelopes per segment */
	ASSERT_OK(copy_file(in_dir(f->dir, "keys/first.pub"), f->pinned), "pin first.pub");
	for (int k = 0; k <= NEPOCHS; k++) {
		for (int j = 0; j < per_epoch[k]; j++)
			if (!ASSERT_OK(append_now(&st, i++), "append"))
				goto fail;
		if (!ASSERT_OK(read_epoch_key(f->dir, &epoch, f->sk[k], NULL), "keys/epoch") ||
		    !ASSERT_EQ(epoch, k, "keys/epoch is the open epoch's") ||
		    !ASSERT_MEMEQ(st.epoch_sk, f->sk[k], SEAL_KEY_LEN, "the writer's key"))
			goto fail;
		if (k == NEPOCHS)
			break;
		if (!ASSERT_OK(store_seal_epoch(&st, "test"), "close an epoch"))
			goto fail;
		f->seal_seq[k] = st.next_seq - 1;
		f->cp_size[k] = f->seal_seq[k] - 1;
		snprintf(f->cp[k], sizeof(f->cp[k]), "%s/checkpoint-epoch%d", test_dir(), k);
		if (!ASSERT_OK(copy_file(in_dir(f->dir, "checkpoints/latest"), f->cp[k]),
			       "keep the checkpoint"))
			goto fail;
		if (k == 1) {
			/* a writer restart, and a backup taken while it was down */
			store_close(&st);
			if (!ASSERT_OK(copy_tree(f->dir, f->snapshot), "snapshot") ||
			    !ASSERT_OK(store_open(&st, f->dir, STORE_WRITE), "restart the writer"))
				return false;
			st.seg_rotate_bytes = 1500;
		}
	}
	f->records = st.next_seq - 1;
	f->segments = st.seg_no;
	ASSERT_OK(store_sync(&st), "sync");
	store_close(&st);
	ASSERT_EQ(f->records, 6 + 8 + 6 + 3 + NEPOCHS, "records in the fixture");
	ASSERT_GE(f->segments, 5, "segments in the fixture");
	return !test_failed();
fail:
	store_close(&st);
	return false;
}

/* A copy of the fixture's store to attack: test_dir()/name. */
static const char *attack_copy(const struct fixture *f, const char *name)
{
	static char dir[4][512];
	static int next;
	char *d = dir[next++ % 4];

	snprintf(d, sizeof(dir[0]), "%s/%s", test_dir(), name);
	if (!ASSERT_OK(copy_tree(f->dir, d), "copy the store"))
		return NULL;
	return d;
}

/* ---- the attacker's model of a store ---- */

struct menv {
	uint32_t seg; /* segment it is written to */
	struct seal_header h;
	struct buf rec; /* the record inside, in the clear */
	struct buf bytes; /* the envelope as it will be written */
};

struct model {
	uint8_t kek[SEAL_KEY_LEN];
	uint32_t nseg;
	uint8_t hdr[MAX_SEGS + 1][SEG_HEADER_LEN];
	uint8_t dk[MAX_SEGS + 1][SEAL_KEY_LEN];
	size_t n;
	struct menv e[MAX_ENVS];
};

static void model_free(struct model *m)
{
	for (size_t i = 0; i < m->n; i++) {
		buf_free(&m->e[i].rec);
		buf_free(&m->e[i].bytes);
	}
	free(m);
}

/* Read every segment, unwrap every key, open every envelope. */
static struct model *model_load(const char *dir)
{
	struct model *m = calloc(1, sizeof(*m));
	struct buf b = {0};
	bool ok = true;

	if (!ASSERT_NOT_NULL(m, "calloc"))
		return NULL;
	ok = ASSERT_OK(buf_read_file(&b, in_dir(dir, "keys/kek"), 0), "read keys/kek") &&
	     ASSERT_EQ(b.len, SEAL_KEY_LEN, "kek size");
	if (ok)
		memcpy(m->kek, b.data, SEAL_KEY_LEN);
	for (uint32_t seg = 1; ok && seg <= MAX_SEGS && !buf_read_file(&b, seg_file(dir, seg), 0);
	     seg++) {
		ok = ASSERT_GE(b.len, SEG_HEADER_LEN, "segment header");
		if (!ok)
			break;
		memcpy(m->hdr[seg], b.data, SEG_HEADER_LEN);
		ok = ASSERT_OK(seal_unwrap(m->kek, m->hdr[seg] + SEG_HEADER_AAD, m->hdr[seg],
					   SEG_HEADER_AAD, m->dk[seg]),
			       "unwrap the segment key");
		for (size_t off = SEG_HEADER_LEN; ok && off < b.len;) {
			struct seal_envelope env;
			struct menv *e = &m->e[m->n];
			char why[128] = "";
			size_t used;

			ok =
			    ASSERT_LT(m->n, MAX_ENVS, "envelopes") &&
			    ASSERT_OK(seal_parse(b.data + off, b.len - off, &env, &used, why), why);
			if (!ok)
				break;
			m->n++;
			*e = (struct menv){.seg = seg, .h = env.h};
			ok = ASSERT_OK(buf_add(&e->bytes, env.bytes, env.len), "copy") &&
			     ASSERT_OK(seal_open(&env, m->dk[seg], &e->rec), "open the envelope");
			off += used;
		}
		m->nseg = seg;
	}
	buf_free(&b);
	if (!ok || !ASSERT_GT(m->n, 0, "envelopes in the store")) {
		model_free(m);
		return NULL;
	}
	return m;
}

static size_t model_find(const struct model *m, uint64_t seq)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->e[i].h.seq == seq)
			return i;
	test_fail(__FILE__, __LINE__, "no envelope with seq %llu", (unsigned long long)seq);
	return 0;
}

/* Byte offset of envelope i in its segment, as model_write lays it out. */
static uint64_t model_off(const struct model *m, size_t i)
{
	uint64_t off = SEG_HEADER_LEN;

	for (size_t j = 0; j < i; j++)
		if (m->e[j].seg == m->e[i].seg)
			off += m->e[j].bytes.len;
	return off;
}

/* Seal envelope i again from its header and record, as the writer would. */
static bool model_reseal(struct model *m, size_t i)
{
	struct menv *e = &m->e[i];
	bool plain = e->h.flags & SEAL_PLAIN;

	e->h.segment = e->seg;
	return ASSERT_OK(
	    seal_build(&e->bytes, &e->h, e->rec.data, e->rec.len, plain ? NULL : m->dk[e->seg]),
	    "seal_build");
}

/*
 * Recompute the hash chain as the writer makes it (every segment header
 * chained in before its envelopes, seal_chain_header), re-sealing every
 * envelope from `from` on.
 */
static bool model_rechain(struct model *m, size_t from)
{
	uint8_t prev[SEAL_HASH_LEN] = {0};
	size_t i = 0;

	for (uint32_t seg = 1; seg <= m->nseg; seg++) {
		seal_chain_header(prev, m->hdr[seg], SEG_HEADER_LEN);
		for (; i < m->n && m->e[i].seg == seg; i++) {
			if (i >= from) {
				memcpy(m->e[i].h.prev_hash, prev, SEAL_HASH_LEN);
				if (!model_reseal(m, i))
					return false;
			}
			seal_leaf_hash(m->e[i].bytes.data, m->e[i].bytes.len, prev);
		}
	}
	return ASSERT_EQ(i, m->n, "envelopes in segment order");
}

/* The record's own header fields, with its CRC made again. */
static bool rec_rewrite(struct buf *rec, uint64_t seq, uint64_t wall, uint64_t mono)
{
	rec->len -= REC_TRAILER_LEN;
	put_be64(rec->data + 16, wall);
	put_be64(rec->data + 24, mono);
	return ASSERT_OK(rec_finish(rec, seq), "rec_finish");
}

/* Sequence numbers 1..n again, in the headers and in the records. */
static bool model_renumber(struct model *m)
{
	for (size_t i = 0; i < m->n; i++) {
		struct menv *e = &m->e[i];

		e->h.seq = i + 1;
		if (!rec_rewrite(&e->rec, i + 1, get_be64(e->rec.data + 16),
				 get_be64(e->rec.data + 24)))
			return false;
	}
	return true;
}

static void model_delete(struct model *m, size_t i)
{
	buf_free(&m->e[i].rec);
	buf_free(&m->e[i].bytes);
	memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof(m->e[0]));
	m->n--;
}

/* Insert a deep copy of src before position i. */
static bool model_insert(struct model *m, size_t i, const struct menv *src)
{
	struct menv copy = {.seg = src->seg, .h = src->h};

	if (!ASSERT_LT(m->n, MAX_ENVS, "room") ||
	    !ASSERT_OK(buf_add(&copy.rec, src->rec.data, src->rec.len), "copy") ||
	    !ASSERT_OK(buf_add(&copy.bytes, src->bytes.data, src->bytes.len), "copy"))
		return false;
	memmove(&m->e[i + 1], &m->e[i], (m->n - i) * sizeof(m->e[0]));
	m->e[i] = copy;
	m->n++;
	return true;
}

/* Write segments 1..nseg (header, then their envelopes); remove any after them. */
static bool model_write(const struct model *m, const char *dir)
{
	struct buf b = {0};
	bool ok = true;

	for (uint32_t seg = 1; ok && seg <= m->nseg; seg++) {
		b.len = 0;
		ok = ASSERT_OK(buf_add(&b, m->hdr[seg], SEG_HEADER_LEN), "header");
		for (size_t i = 0; ok && i < m->n; i++)
			if (m->e[i].seg == seg)
				ok = ASSERT_OK(buf_add(&b, m->e[i].bytes.data, m->e[i].bytes.len),
					       "envelope");
		ok = ok && ASSERT_OK(write_file(seg_file(dir, seg), b.data, b.len, 0600),
				     "write segment");
	}
	for (uint32_t seg = m->nseg + 1; seg <= MAX_SEGS; seg++)
		unlink(seg_file(dir, seg));
	buf_free(&b);
	return ok;
}

/* Write one segment only (the others are as the model has them on disk). */
static bool model_write_seg(const struct model *m, const char *dir, uint32_t seg)
{
	struct buf b = {0};
	bool ok = ASSERT_OK(buf_add(&b, m->hdr[seg], SEG_HEADER_LEN), "header");

	for (size_t i = 0; ok && i < m->n; i++)
		if (m->e[i].seg == seg)
			ok = ASSERT_OK(buf_add(&b, m->e[i].bytes.data, m->e[i].bytes.len),
				       "envelope");
	ok = ok && ASSERT_OK(write_file(seg_file(dir, seg), b.data, b.len, 0600), "write segment");
	buf_free(&b);
	return ok;
}

/* ---- verifying ---- */

/* A copy of the fixture's store (attack_copy), loaded into a model. */
static struct model *attack_model(const struct fixture *f, const char *name, const char **dir)
{
	*dir = attack_copy(f, name);
	return *dir ? model_load(*dir) : NULL;
}

/* Delete envelope i, then renumber and re-chain what follows, as an attacker would. */
static bool model_cut(struct model *m, size_t i)
{
	model_delete(m, i);
	return model_renumber(m) && model_rechain(m, i);
}

static bool quiet; /* no line per verify (the bit flip loops run thousands) */

static bool run_verify(const char *dir, const char *pubkey, const char *against,
		       struct verify_result *r)
{
	struct verify_opts o = {.pubkey_file = pubkey, .against_file = against};

	memset(r, 0, sizeof(*r));
	if (!ASSERT_OK(store_verify(dir, &o, r), "store_verify runs"))
		return false;
	/* shown with -v, and with the failure */
	if (!quiet)
		fprintf(stderr, "verify %s%s%s: %s%s (seq %llu, %s @%llu)\n", dir,
			against ? " --against " : "", against ? against : "",
			r->ok ? "OK" : "FAILED: ", r->ok ? "" : r->reason,
			(unsigned long long)r->seq, r->file, (unsigned long long)r->offset);
	return r->ok;
}

/* verify must say no, and why: its reason holds `why`. */
#define REJECTED(r, why, what) rejected(__FILE__, __LINE__, r, why, what)
static bool rejected(const char *file, int line, const struct verify_result *r, const char *why,
		     const char *what)
{
	if (r->ok) {
		test_fail(file, line,
			  "%s: NOT DETECTED: store_verify says ok (%llu records, %llu covered, %u"
			  " epochs)",
			  what, (unsigned long long)r->records, (unsigned long long)r->covered,
			  r->epochs);
		return false;
	}
	if (why && !strstr(r->reason, why)) {
		test_fail(file, line, "%s: reason \"%s\" does not say \"%s\"", what, r->reason,
			  why);
		return false;
	}
	return true;
}

/* ... and at this record: seq, and file + offset when file is given. */
#define AT(r, seq, file, off) at(__FILE__, __LINE__, r, seq, file, off)
static void at(const char *src, int line, const struct verify_result *r, uint64_t seq,
	       const char *file, uint64_t off)
{
	if (r->seq != seq)
		test_fail(src, line, "failure reported at seq %llu, want %llu",
			  (unsigned long long)r->seq, (unsigned long long)seq);
	if (file && strcmp(r->file, file))
		test_fail(src, line, "failure reported in %s, want %s", r->file, file);
	if (file && r->offset != off)
		test_fail(src, line, "failure reported at offset %llu, want %llu",
			  (unsigned long long)r->offset, (unsigned long long)off);
}

/* verify dir (no pinned key, no checkpoint): rejected for `why`, at that record */
#define REJECTED_AT(dir, why, what, seq, file, off)                                                \
	do {                                                                                       \
		struct verify_result r_;                                                           \
                                                                                                   \
		run_verify(dir, NULL, NULL, &r_);                                                  \
		if (REJECTED(&r_, why, what))                                                      \
			AT(&r_, seq, file, off);                                                   \
	} while (0)

#define SETUP(f)                                                                                   \
	static struct fixture f;                                                                   \
	if (!fixture_build(&f))                                                                    \
	return

/* ---- the untouched store ---- */

TEST(tamper_untouched_store_verifies)
{
	struct verify_result r;

	SETUP(f);
	if (ASSERT_TRUE(run_verify(f.dir, NULL, NULL, &r), r.reason)) {
		ASSERT_EQ(r.records, f.records, "records");
		ASSERT_EQ(r.epochs, NEPOCHS, "closed epochs");
		ASSERT_EQ(r.covered, f.cp_size[NEPOCHS - 1], "covered by the last seal");
		ASSERT_FALSE(r.pinned, "first key from the store");
	}
	if (ASSERT_TRUE(run_verify(f.dir, f.pinned, NULL, &r), r.reason))
		ASSERT_TRUE(r.pinned, "pinned first key");
	for (int k = 0; k < NEPOCHS; k++)
		if (ASSERT_TRUE(run_verify(f.dir, f.pinned, f.cp[k], &r), r.reason)) {
			ASSERT_TRUE(r.checkpoint_ok, "checkpoint checked");
			ASSERT_EQ(r.checkpoint_size, f.cp_size[k], "checkpoint size");
		}
	if (ASSERT_TRUE(run_verify(f.dir, NULL, in_dir(f.dir, "checkpoints/latest"), &r), r.reason))
		ASSERT_EQ(r.checkpoint_size, f.cp_size[NEPOCHS - 1], "latest checkpoint");
	/* the empty epoch signs the same tree as the epoch before it, plus that seal */
	ASSERT_EQ(f.cp_size[2], f.cp_size[1] + 1, "empty epoch 2");
	/* an older copy is consistent in itself and with the checkpoints it saw */
	ASSERT_TRUE(run_verify(f.snapshot, f.pinned, f.cp[1], &r), r.reason);
}

/* ---- bytes changed anywhere ---- */

static uint32_t seg_of_path(const char *path)
{
	const char *base = strrchr(path, '/');
	unsigned n = 0;

	return base && sscanf(base, "/seg-%8u.log", &n) == 1 ? n : 0;
}

/*
 * One bit flipped, at every byte of every envelope a closed epoch signs
 * and every byte of the headers of segments that hold envelopes: each must
 * be caught, and not before the envelope it is in. Then 300 times several
 * bytes at once.
 */
TEST(tamper_flip_bits_everywhere)
{
	struct verify_result r;
	struct model *m;
	const char *dir;
	size_t flips = 0, missed = 0;

	SETUP(f);
	m = attack_model(&f, "flips", &dir);
	if (!m)
		return;
	quiet = true;
	/*
	 * Headers of segments that hold envelopes: what verify reads (magic,
	 * version, store id, number) and the rest (header length, creation time,
	 * wrapped key), which the chain covers.
	 */
	for (uint32_t seg = 1; seg <= m->nseg; seg++) {
		bool used = false;

		for (size_t i = 0; i < m->n; i++)
			used |= m->e[i].seg == seg;
		for (int p = 0; used && p < SEG_HEADER_LEN; p++) {
			uint8_t b = m->hdr[seg][p];

			m->hdr[seg][p] ^= 1 << (p % 8);
			if (!model_write_seg(m, dir, seg))
				goto out;
			run_verify(dir, NULL, NULL, &r);
			flips++;
			if (!REJECTED(&r, NULL, "bit flipped in a segment header")) {
				printf("    ... segment %u byte %d\n", seg, p);
				missed++;
			} else if (seg_of_path(r.file) != seg ||
				   (r.offset != 0 && r.offset != SEG_HEADER_LEN)) {
				/* the header itself, or the first envelope's link to it */
				test_fail(__FILE__, __LINE__, "header flip reported at %s @%llu",
					  r.file, (unsigned long long)r.offset);
			}
			m->hdr[seg][p] = b;
		}
		if (!model_write_seg(m, dir, seg))
			goto out;
	}
	/* every byte of every envelope under the last seal's tree */
	for (size_t i = 0; i < m->n && m->e[i].h.seq <= f.cp_size[NEPOCHS - 1]; i++) {
		struct menv *e = &m->e[i];
		uint64_t off = model_off(m, i);

		for (size_t p = 0; p < e->bytes.len; p++) {
			e->bytes.data[p] ^= 1 << (p % 8);
			if (!model_write_seg(m, dir, e->seg))
				goto out;
			run_verify(dir, NULL, NULL, &r);
			flips++;
			if (!REJECTED(&r, NULL, "bit flipped in a sealed envelope")) {
				printf("    ... envelope seq %llu byte %zu\n",
				       (unsigned long long)e->h.seq, p);
				missed++;
			} else if (seg_of_path(r.file) < e->seg ||
				   (seg_of_path(r.file) == e->seg && r.offset < off)) {
				test_fail(__FILE__, __LINE__,
					  "flip in seq %llu (segment %u @%llu) reported before it,"
					  " at %s @%llu",
					  (unsigned long long)e->h.seq, e->seg,
					  (unsigned long long)off, r.file,
					  (unsigned long long)r.offset);
			}
			e->bytes.data[p] ^= 1 << (p % 8);
		}
		if (!model_write_seg(m, dir, e->seg))
			goto out;
		if (missed > 20)
			break;
	}
	/* and several bytes at once (2 to 8), anywhere under the last seal */
	for (int t = 0; t < 300 && missed <= 20; t++) {
		static uint64_t x = 0x5eed;
		size_t idx[8], pos[8], nflip = 2 + t % 7, covered = 0, k, j;
		uint8_t orig[8];

		while (covered < m->n && m->e[covered].h.seq <= f.cp_size[NEPOCHS - 1])
			covered++;
		for (k = 0; k < nflip; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			idx[k] = x % covered;
			pos[k] = (x >> 20) % m->e[idx[k]].bytes.len;
			for (j = 0; j < k && (idx[j] != idx[k] || pos[j] != pos[k]); j++)
				;
			if (j < k) { /* that byte again: leave it at one change */
				nflip = k;
				break;
			}
			orig[k] = m->e[idx[k]].bytes.data[pos[k]];
			m->e[idx[k]].bytes.data[pos[k]] ^= (uint8_t)(x >> 40) | 1;
		}
		if (!model_write(m, dir))
			goto out;
		run_verify(dir, NULL, NULL, &r);
		flips++;
		if (!REJECTED(&r, NULL, "several bytes changed under the last seal"))
			missed++;
		for (k = 0; k < nflip; k++)
			m->e[idx[k]].bytes.data[pos[k]] = orig[k];
	}
	quiet = false;
	fprintf(stderr, "%zu changes (single bits, then several bytes), %zu not caught\n", flips,
		missed);
	ASSERT_EQ(missed, 0, "changes verify did not catch");
	ASSERT_GT(flips, 3000, "positions tried");
	/* and the copy, put back, verifies again */
	if (model_write(m, dir))
		ASSERT_TRUE(run_verify(dir, NULL, NULL, &r), "restored copy verifies");
out:
	model_free(m);
}

/*
 * The bytes of a segment header verify does not read itself: the creation
 * time and the wrapped data key (48..108). Changing any of them makes
 * every record of the segment unreadable for good (the key no longer
 * unwraps), i.e. deletes the content of closed epochs; the chain covers
 * them (seal_chain_header), so verify must see it, also when the attacker
 * re-chains everything after it. The header length it reads (v2 and v3
 * headers differ in it): a changed one is a bad header.
 */
TEST(tamper_segment_header_key_area)
{
	static const struct {
		const char *what;
		int off;
		const char *why;
	} cases[] = {
	    {"header length", 15, "bad segment header"},
	    {"creation time", 47, NULL},
	    {"wrapped key: nonce", SEG_HEADER_AAD, NULL},
	    {"wrapped key: key", SEG_HEADER_AAD + SEAL_NONCE_LEN + 1, NULL},
	    {"wrapped key: tag", SEG_HEADER_AAD + SEAL_WRAPPED_LEN - 1, NULL},
	    {"reserved", SEG_HEADER_LEN - 1, NULL},
	};
	struct verify_result r;
	const char *dir;
	struct model *m;
	size_t first2 = 0;

	SETUP(f);
	m = attack_model(&f, "headers", &dir);
	if (!m)
		return;
	/* segment 2 holds records of closed epochs */
	while (first2 < m->n && m->e[first2].seg < 2)
		first2++;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		uint8_t b = m->hdr[2][cases[c].off];
		struct store st;
		struct buf raw = {0};
		struct record rec;
		int rc = 0;

		m->hdr[2][cases[c].off] ^= 0x10;
		if (!model_write(m, dir))
			break;
		if (ASSERT_OK(store_open(&st, dir, 0), "open read-only")) {
			rc = store_read_at(&st, 2, SEG_HEADER_LEN, &raw, &rec);
			store_close(&st);
		}
		buf_free(&raw);
		if (cases[c].off < SEG_HEADER_AAD + SEAL_WRAPPED_LEN)
			ASSERT_NEQ(rc, 0, "segment 2 is unreadable now");
		REJECTED_AT(dir, cases[c].why ?: "hash chain broken", cases[c].what,
			    m->e[first2].h.seq, seg_file(dir, 2),
			    cases[c].why ? 0 : SEG_HEADER_LEN);
		m->hdr[2][cases[c].off] = b;
	}
	model_free(m);

	/* a new key wrapped in, every envelope of the segment re-sealed, chain recomputed */
	m = attack_model(&f, "headers-rewrapped", &dir);
	if (!m)
		return;
	if (ASSERT_OK(RAND_bytes(m->dk[2], SEAL_KEY_LEN) == 1 ? 0 : -EIO, "new key") &&
	    ASSERT_OK(
		seal_wrap(m->kek, m->dk[2], m->hdr[2], SEG_HEADER_AAD, m->hdr[2] + SEG_HEADER_AAD),
		"wrap it") &&
	    model_rechain(m, first2) && model_write(m, dir)) {
		run_verify(dir, NULL, NULL, &r);
		REJECTED(&r, "signs a tree", "segment 2 re-keyed and re-chained");
	}
	model_free(m);
}

/* ---- records changed, removed, added, moved ---- */

/* A TTY record of closed epoch 1, not the first or last of its segment. */
static size_t pick_victim(const struct fixture *f, const struct model *m)
{
	for (size_t i = 1; i + 1 < m->n; i++)
		if (m->e[i].h.seq > f->seal_seq[0] && m->e[i].h.seq < f->seal_seq[1] &&
		    m->e[i].h.type == REC_TTY && m->e[i - 1].seg == m->e[i].seg &&
		    m->e[i + 1].seg == m->e[i].seg)
			return i;
	test_fail(__FILE__, __LINE__, "no victim record in epoch 1");
	return 0;
}

/* Change the TTY data of record i: what was shown is not what is stored. */
static bool edit_record(struct model *m, size_t i)
{
	struct buf *rec = &m->e[i].rec;
	struct record parsed;
	const struct rec_field *data;
	char why[128];
	size_t used;

	if (!ASSERT_OK(rec_parse(rec->data, rec->len, &parsed, &used, why), why))
		return false;
	data = rec_field(&parsed, TAG_DATA);
	if (!ASSERT_NOT_NULL(data, "TTY data") || !ASSERT_GT(data->len, 4, "data length"))
		return false;
	memcpy((uint8_t *)data->data, "rm -", 4);
	return rec_rewrite(rec, parsed.seq, parsed.wall_ns, parsed.mono_ns) && model_reseal(m, i);
}

TEST(tamper_edit_closed_record)
{
	struct verify_result r;
	struct model *m;
	const char *dir;
	size_t i;

	SETUP(f);
	/* 1: re-encrypted with its segment key: its tag is right, its leaf is not */
	m = attack_model(&f, "edit", &dir);
	if (!m)
		return;
	i = pick_victim(&f, m);
	if (edit_record(m, i) && model_write(m, dir)) {
		struct store st;
		struct buf raw = {0};
		struct record rec;

		/* the readers take it: only the seal can tell */
		if (ASSERT_OK(store_open(&st, dir, 0), "open read-only")) {
			ASSERT_OK(store_read_at(&st, m->e[i].seg, model_off(m, i), &raw, &rec),
				  "the edited envelope opens");
			store_close(&st);
		}
		buf_free(&raw);
		REJECTED_AT(dir, "hash chain broken", "edited record, tag fixed", m->e[i + 1].h.seq,
			    seg_file(dir, m->e[i + 1].seg), model_off(m, i + 1));
	}
	model_free(m);

	/* 2: ... and the chain recomputed after it, seals and all */
	m = attack_model(&f, "edit-rechained", &dir);
	if (!m)
		return;
	i = pick_victim(&f, m);
	if (edit_record(m, i) && model_rechain(m, i + 1) && model_write(m, dir)) {
		size_t s1 = model_find(m, f.seal_seq[1]);

		REJECTED_AT(dir, "signs a tree", "edited record, chain recomputed", f.seal_seq[1],
			    seg_file(dir, m->e[s1].seg), model_off(m, s1));
		run_verify(dir, f.pinned, f.cp[1], &r);
		REJECTED(&r, NULL, "edited record, chain recomputed, --against");
	}
	model_free(m);
}

TEST(tamper_delete_middle_record)
{
	struct model *m;
	const char *dir;
	size_t i;
	uint64_t seq, off;

	SETUP(f);
	m = attack_model(&f, "delete", &dir);
	if (!m)
		return;
	i = pick_victim(&f, m);
	seq = m->e[i].h.seq;
	off = model_off(m, i);
	model_delete(m, i);
	if (model_write(m, dir)) {
		REJECTED_AT(dir, "sequence", "record deleted", seq + 1, seg_file(dir, m->e[i].seg),
			    off);
	}
	model_free(m);

	/* renumbered and re-chained: only the seal of epoch 1 can tell */
	m = attack_model(&f, "delete-rechained", &dir);
	if (!m)
		return;
	i = pick_victim(&f, m);
	if (model_cut(m, i) && model_write(m, dir)) {
		size_t s1 = model_find(m, f.seal_seq[1] - 1);

		REJECTED_AT(dir, "signs a tree", "record deleted, renumbered, chain recomputed",
			    f.seal_seq[1] - 1, seg_file(dir, m->e[s1].seg), model_off(m, s1));
	}
	model_free(m);
}

TEST(tamper_swap_records)
{
	struct model *m;
	struct menv tmp;
	const char *dir;
	size_t i;

	SETUP(f);
	m = attack_model(&f, "swap", &dir);
	if (!m)
		return;
	i = pick_victim(&f, m);
	tmp = m->e[i];
	m->e[i] = m->e[i + 1];
	m->e[i + 1] = tmp;
	if (model_write(m, dir)) {
		REJECTED_AT(dir, "sequence", "two records swapped", m->e[i].h.seq,
			    seg_file(dir, m->e[i].seg), model_off(m, i));
	}
	model_free(m);

	m = attack_model(&f, "swap-rechained", &dir);
	if (!m)
		return;
	/* the records change places, their times stay in order */
	i = pick_victim(&f, m);
	tmp = m->e[i];
	m->e[i] = m->e[i + 1];
	m->e[i + 1] = tmp;
	{
		uint64_t w0 = m->e[i].h.wall_ns, m0 = m->e[i].h.mono_ns;

		m->e[i].h.wall_ns = m->e[i + 1].h.wall_ns;
		m->e[i].h.mono_ns = m->e[i + 1].h.mono_ns;
		m->e[i + 1].h.wall_ns = w0;
		m->e[i + 1].h.mono_ns = m0;
	}
	if (rec_rewrite(&m->e[i].rec, m->e[i].h.seq, m->e[i].h.wall_ns, m->e[i].h.mono_ns) &&
	    rec_rewrite(&m->e[i + 1].rec, m->e[i + 1].h.seq, m->e[i + 1].h.wall_ns,
			m->e[i + 1].h.mono_ns) &&
	    model_renumber(m) && model_rechain(m, i) && model_write(m, dir)) {
		REJECTED_AT(dir, "signs a tree", "two records swapped, renumbered, re-chained",
			    f.seal_seq[1], NULL, 0);
	}
	model_free(m);
}

TEST(tamper_duplicate_record)
{
	struct model *m;
	const char *dir;
	size_t i;

	SETUP(f);
	m = attack_model(&f, "dup", &dir);
	if (!m)
		return;
	i = pick_victim(&f, m);
	if (model_insert(m, i + 1, &m->e[i]) && model_write(m, dir)) {
		REJECTED_AT(dir, "sequence", "record duplicated", m->e[i].h.seq,
			    seg_file(dir, m->e[i].seg), model_off(m, i + 1));
	}
	model_free(m);

	m = attack_model(&f, "dup-rechained", &dir);
	if (!m)
		return;
	i = pick_victim(&f, m);
	if (model_insert(m, i + 1, &m->e[i]) && model_renumber(m) && model_rechain(m, i + 1) &&
	    model_write(m, dir)) {
		REJECTED_AT(dir, "signs a tree", "record duplicated, renumbered, re-chained",
			    f.seal_seq[1] + 1, NULL, 0);
	}
	model_free(m);
}

/* Cut the store right after the envelope with this seq (0: keep nothing). */
static bool truncate_after(struct model *m, uint64_t seq)
{
	size_t keep = 0;

	while (keep < m->n && m->e[keep].h.seq <= seq)
		keep++;
	if (keep)
		m->nseg = m->e[keep - 1].seg;
	while (m->n > keep)
		model_delete(m, m->n - 1);
	return true;
}

TEST(tamper_rollback_truncate_below_checkpoint)
{
	struct verify_result r;
	struct model *m;
	const char *dir;

	SETUP(f);
	/* cut right after the seal of epoch 0: a store consistent in itself */
	m = attack_model(&f, "truncated", &dir);
	if (!m)
		return;
	if (truncate_after(m, f.seal_seq[0]) && model_write(m, dir)) {
		/* without a checkpoint from outside nothing shows: this is what they are for */
		ASSERT_TRUE(run_verify(dir, f.pinned, NULL, &r),
			    "a store cut at a seal is consistent in itself");
		run_verify(dir, f.pinned, f.cp[1], &r);
		REJECTED(&r, "truncated or rolled back",
			 "cut below the saved checkpoint of epoch 1");
		run_verify(dir, f.pinned, f.cp[NEPOCHS - 1], &r);
		REJECTED(&r, "truncated or rolled back", "cut below the latest checkpoint");
	}
	model_free(m);

	/* cut inside epoch 1, below what its checkpoint signs */
	m = attack_model(&f, "truncated-mid", &dir);
	if (!m)
		return;
	if (truncate_after(m, f.seal_seq[1] - 3) && model_write(m, dir)) {
		run_verify(dir, f.pinned, f.cp[1], &r);
		if (REJECTED(&r, "fewer than", "cut inside epoch 1"))
			AT(&r, f.cp_size[1], f.cp[1], 0);
	}
	model_free(m);

	/* the tail cut in the middle of an envelope */
	m = attack_model(&f, "torn", &dir);
	if (!m)
		return;
	if (truncate_after(m, f.seal_seq[1] + 3)) {
		m->e[m->n - 1].bytes.len /= 2;
		if (model_write(m, dir)) {
			run_verify(dir, f.pinned, NULL, &r);
			REJECTED(&r, "torn", "tail cut inside an envelope");
		}
	}
	model_free(m);
}

/* A new envelope after the last one, sealed by whoever holds the kek. */
static bool forge_append(struct model *m, uint32_t epoch)
{
	struct menv *last = &m->e[m->n - 1], *e = &m->e[m->n];
	struct buf b = {0};

	if (!ASSERT_LT(m->n, MAX_ENVS, "room") ||
	    !ASSERT_OK(
		rec_begin(&b, REC_TTY, SESSION, clock_ns(CLOCK_REALTIME), clock_ns(CLOCK_BOOTTIME)),
		"rec_begin") ||
	    !ASSERT_OK(rec_add_str(&b, TAG_DATA, "nothing to see here\r\n"), "field") ||
	    !ASSERT_OK(rec_finish(&b, last->h.seq + 1), "rec_finish")) {
		buf_free(&b);
		return false;
	}
	*e = (struct menv){.seg = last->seg, .h = last->h, .rec = b};
	e->h.type = REC_TTY;
	e->h.flags = 0;
	e->h.seq = last->h.seq + 1;
	e->h.epoch = epoch;
	e->h.wall_ns = get_be64(b.data + 16);
	e->h.mono_ns = get_be64(b.data + 24);
	m->n++;
	return model_rechain(m, m->n - 1);
}

TEST(tamper_truncate_and_keep_writing)
{
	uint8_t sk[SEAL_KEY_LEN], pk[SEAL_PK_LEN], file[EPOCH_FILE_LEN];
	char idhex[ST_ID_HEX], pkhex[2 * SEAL_PK_LEN + 1], text[256], orig[256];
	struct verify_result r;
	struct store st;
	struct model *m;
	const char *dir;
	uint64_t seal0;

	SETUP(f);
	/*
	 * 1: cut inside epoch 1, below its checkpoint. The writer will not go
	 * on (keys/epoch is epoch 4's, the log hands over to epoch 1), so the
	 * attacker seals new records by hand until the store is longer than
	 * the checkpoint again.
	 */
	m = attack_model(&f, "rewrite", &dir);
	if (!m)
		return;
	if (truncate_after(m, f.seal_seq[0] + 2) && model_write(m, dir)) {
		ASSERT_EQ(store_open(&st, dir, STORE_WRITE), -EKEYREJECTED,
			  "the writer refuses a log its signing key does not continue");
		while (m->n < f.cp_size[1] + 3)
			if (!forge_append(m, 1))
				break;
		if (model_write(m, dir)) {
			run_verify(dir, f.pinned, f.cp[1], &r);
			if (REJECTED(&r, "not the ones the checkpoint signs",
				     "cut below the checkpoint and written again"))
				AT(&r, f.cp_size[1], f.cp[1], 0);
		}
	}
	model_free(m);

	/*
	 * 2: cut before the first seal, where the writer checks no public key:
	 * a new epoch-0 key, a new first.pub, the index removed, and the store
	 * API writes and seals a new history with real epoch records.
	 */
	m = attack_model(&f, "rewrite-api", &dir);
	if (!m)
		return;
	seal0 = f.seal_seq[0];
	if (!truncate_after(m, seal0 - 1) || !model_write(m, dir))
		goto out;
	model_free(m);
	m = NULL;
	unlink(in_dir(dir, "index.sqlite"));
	unlink(in_dir(dir, "index.sqlite-wal"));
	unlink(in_dir(dir, "index.sqlite-shm"));
	if (!ASSERT_OK(seal_keygen(sk, pk), "keygen"))
		goto out;
	memset(file, 0, 4);
	memcpy(file + 4, sk, SEAL_KEY_LEN);
	memcpy(file + 4 + SEAL_KEY_LEN, pk, SEAL_PK_LEN);
	ASSERT_OK(write_file(in_dir(dir, "keys/epoch"), file, sizeof(file), 0600), "keys/epoch");
	ASSERT_EQ(store_open(&st, dir, STORE_WRITE), -EKEYREJECTED,
		  "the writer refuses an epoch-0 key that is not first.pub's");
	/* the attacker owns the disk: they replace first.pub too, and keep the original */
	if (!ASSERT_OK(read_text_file(in_dir(dir, "keys/first.pub"), orig, sizeof(orig)),
		       "keep first.pub"))
		goto out;
	hex_encode(pk, SEAL_PK_LEN, pkhex);
	{
		char fake[256], sid[ST_ID_HEX];

		sscanf(orig, "store %32s", sid);
		snprintf(fake, sizeof(fake), "store %s\nfirst-key %s\n", sid, pkhex);
		ASSERT_OK(write_file(in_dir(dir, "keys/first.pub"), fake, strlen(fake), 0644),
			  "fake first.pub");
	}
	if (!ASSERT_OK(store_open(&st, dir, STORE_WRITE), "the writer takes a new epoch-0 key"))
		goto out;
	ASSERT_EQ(st.next_seq, seal0, "seq goes on where the cut was");
	for (int i = 0; i < 30; i++)
		ASSERT_OK(append_now(&st, i), "append");
	ASSERT_OK(store_seal_epoch(&st, "forged"), "seal");
	ASSERT_OK(store_seal_epoch(&st, "forged"), "seal");
	ASSERT_OK(append_now(&st, 99), "append");
	hex_encode(st.id, ST_ID_LEN, idhex);
	store_close(&st);
	/* first, as if the attacker had left first.pub alone */
	ASSERT_OK(write_file(in_dir(dir, "keys/first.pub"), orig, strlen(orig), 0644),
		  "original first.pub back");

	/* the forged history under the store's own first.pub: epoch 0 does not verify */
	REJECTED_AT(dir, "epoch 0 signature", "new history, old first.pub", seal0 + 30, NULL, 0);
	/* ... so the attacker replaces first.pub too: only what the auditor kept tells */
	hex_encode(pk, SEAL_PK_LEN, pkhex);
	snprintf(text, sizeof(text), "store %s\nfirst-key %s\n", idhex, pkhex);
	ASSERT_OK(write_file(in_dir(dir, "keys/first.pub"), text, strlen(text), 0644), "first.pub");
	run_verify(dir, f.pinned, NULL, &r);
	if (REJECTED(&r, "epoch 0 signature", "new history, pinned first key"))
		AT(&r, seal0 + 30, NULL, 0);
	run_verify(dir, NULL, f.cp[1], &r);
	REJECTED(&r, "checkpoint signature does not verify", "new history, saved checkpoint");
	run_verify(dir, f.pinned, f.cp[1], &r);
	REJECTED(&r, NULL, "new history, pinned key and saved checkpoint");
out:
	if (m)
		model_free(m);
	OPENSSL_cleanse(sk, sizeof(sk));
}

/* ---- seals: re-sealed records, removed seals ---- */

TEST(tamper_reseal_old_record_in_current_epoch)
{
	struct model *m;
	const char *dir;
	size_t i;

	SETUP(f);
	m = attack_model(&f, "reseal", &dir);
	if (!m)
		return;
	/* a record of closed epoch 1, edited and sealed as if written in epoch 4 */
	i = pick_victim(&f, m);
	m->e[i].h.epoch = NEPOCHS;
	if (edit_record(m, i) && model_rechain(m, i) && model_write(m, dir)) {
		REJECTED_AT(dir, "sealed in epoch 4 while epoch 1 was open",
			    "old record re-sealed in the current epoch", m->e[i].h.seq,
			    seg_file(dir, m->e[i].seg), model_off(m, i));
	}
	model_free(m);

	/* every record of epoch 3 moved to epoch 4, so that the attacker may rewrite them */
	m = attack_model(&f, "reseal-all", &dir);
	if (!m)
		return;
	for (size_t j = 0; j < m->n; j++)
		if (m->e[j].h.epoch == 3 && !(m->e[j].h.flags & SEAL_PLAIN))
			m->e[j].h.epoch = NEPOCHS;
	if (model_rechain(m, model_find(m, f.seal_seq[2] + 1)) && model_write(m, dir)) {
		REJECTED_AT(dir, "sealed in epoch 4 while epoch 3 was open",
			    "epoch 3 re-sealed as epoch 4", f.seal_seq[2] + 1, NULL, 0);
	}
	model_free(m);
}

TEST(tamper_delete_epoch_record)
{
	struct model *m;
	const char *dir;
	size_t i;

	SETUP(f);
	/* the seal of epoch 1, renumbered and re-chained */
	m = attack_model(&f, "no-seal-1", &dir);
	if (!m)
		return;
	i = model_find(m, f.seal_seq[1]);
	if (model_cut(m, i) && model_write(m, dir)) {
		REJECTED_AT(dir, "sealed in epoch 2 while epoch 1 was open",
			    "seal of epoch 1 deleted", f.seal_seq[1], NULL, 0);
	}
	model_free(m);

	/* the seal of the empty epoch 2 */
	m = attack_model(&f, "no-seal-2", &dir);
	if (!m)
		return;
	i = model_find(m, f.seal_seq[2]);
	if (model_cut(m, i) && model_write(m, dir)) {
		REJECTED_AT(dir, "sealed in epoch 3 while epoch 2 was open",
			    "seal of the empty epoch 2 deleted", f.seal_seq[2], NULL, 0);
	}
	model_free(m);

	/* ... and every later envelope's epoch moved down to hide it */
	m = attack_model(&f, "no-seal-2-shifted", &dir);
	if (!m)
		return;
	i = model_find(m, f.seal_seq[2]);
	model_delete(m, i);
	for (size_t j = i; j < m->n; j++)
		m->e[j].h.epoch--;
	if (model_renumber(m) && model_rechain(m, i) && model_write(m, dir)) {
		REJECTED_AT(dir, "epoch record says epoch 3, expected 2",
			    "seal of epoch 2 deleted, epochs shifted", f.seal_seq[3] - 1, NULL, 0);
	}
	model_free(m);
}

TEST(tamper_strip_all_seals)
{
	struct verify_result r;
	struct model *m;
	const char *dir;

	SETUP(f);
	m = attack_model(&f, "stripped", &dir);
	if (!m)
		return;
	for (size_t i = m->n; i-- > 0;)
		if (m->e[i].h.type == REC_EPOCH)
			model_delete(m, i);
	for (size_t i = 0; i < m->n; i++)
		m->e[i].h.epoch = 0;
	ASSERT_EQ(m->n, f.records - NEPOCHS, "records left");
	if (model_renumber(m) && model_rechain(m, 0) && model_write(m, dir)) {
		run_verify(dir, NULL, NULL, &r);
		if (REJECTED(&r, "no seals", "every seal removed"))
			ASSERT_EQ(r.records, f.records - NEPOCHS, "records walked");
		run_verify(dir, f.pinned, NULL, &r);
		REJECTED(&r, "no seals", "every seal removed, pinned key");
		run_verify(dir, f.pinned, f.cp[0], &r);
		REJECTED(&r, NULL, "every seal removed, against epoch 0's checkpoint");
	}
	model_free(m);
}

/* ---- records from elsewhere ---- */

/* Another store, with records and seals of its own; id forced if given. */
static bool build_other_store(const char *dir, const uint8_t *id, int records)
{
	struct store st;

	if (id) {
		char hex[ST_ID_HEX + 1];

		hex_encode(id, ST_ID_LEN, hex);
		hex[2 * ST_ID_LEN] = '\n';
		if (!ASSERT_OK(mkdir(dir, 0700), "mkdir") ||
		    !ASSERT_OK(write_file(in_dir(dir, "store-id"), hex, 2 * ST_ID_LEN + 1, 0644),
			       "store-id"))
			return false;
	}
	if (!ASSERT_OK(store_open(&st, dir, STORE_WRITE | STORE_CREATE), "create another store"))
		return false;
	st.seg_rotate_bytes = 1500;
	for (int i = 0; i < records; i++) {
		ASSERT_OK(append_now(&st, i), "append");
		if (i % 7 == 6)
			ASSERT_OK(store_seal_epoch(&st, "other"), "seal");
	}
	ASSERT_OK(store_seal_epoch(&st, "other"), "seal");
	store_close(&st);
	return !test_failed();
}

TEST(tamper_splice_from_another_store)
{
	char other[512];
	struct verify_result r;
	struct model *m, *o;
	const char *dir;
	uint64_t seg2_seq;
	size_t i, j;

	SETUP(f);
	snprintf(other, sizeof(other), "%s/other", test_dir());
	if (!build_other_store(other, NULL, 30))
		return;
	m = model_load(f.dir);
	if (!m)
		return;
	for (i = 0; i < m->n && m->e[i].seg < 2; i++)
		;
	seg2_seq = m->e[i].h.seq; /* the first seq of our segment 2 */
	model_free(m);
	o = model_load(other);
	m = attack_model(&f, "spliced", &dir);
	if (!m || !o)
		goto out;
	/* its envelope with the same seq, as it is, instead of ours */
	i = pick_victim(&f, m);
	j = model_find(o, m->e[i].h.seq);
	buf_free(&m->e[i].bytes);
	m->e[i].bytes = o->e[j].bytes;
	o->e[j].bytes = (struct buf){0};
	if (model_write(m, dir)) {
		REJECTED_AT(dir, "another store", "envelope of another store", m->e[i].h.seq,
			    seg_file(dir, m->e[i].seg), model_off(m, i));
	}
	model_free(m);

	/* its record, re-sealed as ours (header, key, chain) */
	m = attack_model(&f, "spliced-resealed", &dir);
	if (!m)
		goto out;
	i = pick_victim(&f, m);
	for (j = 0; j < o->n && o->e[j].h.type != REC_TTY; j++)
		;
	if (!ASSERT_LT(j, o->n, "a TTY record in the other store"))
		goto out;
	m->e[i].rec.len = 0;
	ASSERT_OK(buf_add(&m->e[i].rec, o->e[j].rec.data, o->e[j].rec.len), "copy");
	if (rec_rewrite(&m->e[i].rec, m->e[i].h.seq, m->e[i].h.wall_ns, m->e[i].h.mono_ns) &&
	    model_rechain(m, i) && model_write(m, dir)) {
		REJECTED_AT(dir, "signs a tree", "record of another store, re-sealed",
			    f.seal_seq[1], NULL, 0);
	}
	model_free(m);

	/* a whole segment of the other store */
	dir = attack_copy(&f, "spliced-segment");
	if (dir && ASSERT_OK(copy_file(seg_file(other, 2), seg_file(dir, 2)), "copy segment")) {
		run_verify(dir, NULL, NULL, &r);
		if (REJECTED(&r, "bad segment header", "segment of another store"))
			AT(&r, seg2_seq, seg_file(dir, 2), 0); /* the seq due there */
	}
	m = NULL;
out:
	if (m)
		model_free(m);
	if (o)
		model_free(o);
}

TEST(tamper_restore_old_snapshot)
{
	struct verify_result r;
	const char *dir;

	SETUP(f);
	/* the backup taken after epoch 1, put back in place of the store */
	dir = attack_copy(&f, "restored");
	if (!dir || !ASSERT_OK(remove_tree(dir), "remove") ||
	    !ASSERT_OK(copy_tree(f.snapshot, dir), "restore the snapshot"))
		return;
	ASSERT_TRUE(run_verify(dir, f.pinned, f.cp[1], &r),
		    "consistent with what was checkpointed when it was taken");
	run_verify(dir, f.pinned, f.cp[NEPOCHS - 1], &r);
	REJECTED(&r, "closes only 2 epochs", "old snapshot against the latest checkpoint");
	/* epoch 2 was empty: its checkpoint signs exactly what the snapshot holds */
	ASSERT_TRUE(run_verify(dir, f.pinned, f.cp[2], &r),
		    "consistent with the empty epoch 2's checkpoint");
}

TEST(tamper_replace_whole_store)
{
	uint8_t id[ST_ID_LEN];
	struct verify_result r;
	struct store st;
	char fresh[512];
	const char *dir;

	SETUP(f);
	if (!ASSERT_OK(store_open(&st, f.dir, 0), "open"))
		return;
	memcpy(id, st.id, ST_ID_LEN);
	store_close(&st);

	/* a fresh store, its own first key and all, in place of ours */
	snprintf(fresh, sizeof(fresh), "%s/fresh", test_dir());
	dir = attack_copy(&f, "replaced");
	if (!dir || !build_other_store(fresh, NULL, 40) || !ASSERT_OK(remove_tree(dir), "rm") ||
	    !ASSERT_OK(copy_tree(fresh, dir), "replace"))
		return;
	ASSERT_TRUE(run_verify(dir, NULL, NULL, &r),
		    "consistent in itself: why the auditor pins the first key");
	run_verify(dir, f.pinned, NULL, &r);
	REJECTED(&r, "bad segment header", "new store, pinned first key");
	run_verify(dir, NULL, f.cp[NEPOCHS - 1], &r);
	REJECTED(&r, "another store", "new store, saved checkpoint");

	/* ... made with our store id */
	snprintf(fresh, sizeof(fresh), "%s/fresh-same-id", test_dir());
	dir = attack_copy(&f, "replaced-same-id");
	if (!dir || !build_other_store(fresh, id, 40) || !ASSERT_OK(remove_tree(dir), "rm") ||
	    !ASSERT_OK(copy_tree(fresh, dir), "replace"))
		return;
	ASSERT_TRUE(run_verify(dir, NULL, NULL, &r), "consistent in itself");
	run_verify(dir, f.pinned, NULL, &r);
	if (REJECTED(&r, "epoch 0 signature", "new store with our id, pinned first key"))
		AT(&r, 8, NULL, 0);
	run_verify(dir, NULL, f.cp[NEPOCHS - 1], &r);
	REJECTED(&r, "checkpoint", "new store with our id, saved checkpoint");
}

/* ---- time ---- */

/*
 * Wall time of record seq moved back by an hour (header and record), the
 * chain recomputed, and then the attacker, who holds the open epoch's key,
 * closes the epoch with the writer: every seal is valid.
 */
static void clock_backwards(const struct fixture *f, const char *name, uint64_t seq,
			    bool new_boot_id, const char *why)
{
	struct verify_result r;
	struct store st;
	struct model *m;
	const char *dir;
	size_t i;

	m = attack_model(f, name, &dir);
	if (!m)
		return;
	i = model_find(m, seq);
	m->e[i].h.wall_ns -= 3600 * NS;
	if (new_boot_id)
		RAND_bytes(m->e[i].h.boot_id, sizeof(m->e[i].h.boot_id));
	if (!rec_rewrite(&m->e[i].rec, seq, m->e[i].h.wall_ns, get_be64(m->e[i].rec.data + 24)) ||
	    !model_rechain(m, i) || !model_write(m, dir))
		goto out;
	if (seq > f->seal_seq[NEPOCHS - 1] &&
	    ASSERT_OK(store_open(&st, dir, STORE_WRITE), "the attacker's writer")) {
		ASSERT_OK(store_seal_epoch(&st, "attacker"), "seal the open epoch");
		store_close(&st);
	}
	run_verify(dir, f->pinned, f->cp[NEPOCHS - 1], &r);
	if (REJECTED(&r, why, name))
		AT(&r, seq, seg_file(dir, m->e[i].seg), model_off(m, i));
out:
	model_free(m);
}

TEST(tamper_clock_backwards)
{
	SETUP(f);
	/* in the open epoch, sealed by the attacker: only the clocks tell */
	clock_backwards(&f, "clock-open-epoch", f.seal_seq[NEPOCHS - 1] + 2, false,
			"wall clock moved backwards");
	/* in a closed epoch: the time check comes before the tree's */
	clock_backwards(&f, "clock-closed-epoch", f.seal_seq[0] + 3, false,
			"wall clock moved backwards");
}

/*
 * The same with a made-up boot id on the record, so that no time check
 * applies to it: a writer reads the boot id once and writes a collector
 * start (or, after a crash, a gap) first, so the boot id may change only
 * at such a record.
 */
TEST(tamper_clock_backwards_new_boot_id)
{
	SETUP(f);
	clock_backwards(&f, "clock-boot-id", f.seal_seq[NEPOCHS - 1] + 2, true,
			"boot id changes without a collector start");
	clock_backwards(&f, "clock-boot-id-closed", f.seal_seq[0] + 3, true,
			"boot id changes without a collector start");
}

/*
 * The reason says by how much the wall clock went back: an hour here (it
 * once said -18446740473.710 s, from unsigned differences that wrapped).
 */
TEST(tamper_clock_backwards_reports_the_amount)
{
	struct verify_result r;
	struct model *m;
	const char *dir;
	size_t i;

	SETUP(f);
	m = attack_model(&f, "clock-amount", &dir);
	if (!m)
		return;
	i = model_find(m, f.seal_seq[NEPOCHS - 1] + 2);
	m->e[i].h.wall_ns -= 3600 * NS;
	if (model_rechain(m, i) && model_write(m, dir)) {
		run_verify(dir, NULL, NULL, &r);
		if (REJECTED(&r, "wall clock moved backwards", "wall clock back by an hour"))
			ASSERT_TRUE(strstr(r.reason, "by 3600.") != NULL,
				    "the reason says by how much (3600.x s)");
	}
	model_free(m);
}

/*
 * Bytes added after the last envelope of a segment that is not the last
 * one. They look like a torn tail, but after a crash the writer always
 * starts the next segment with a GAP record (its type is visible without a
 * key), and here there is none (tamper_genuine_crash_verifies is the real
 * thing).
 */
TEST(tamper_junk_after_closed_segment)
{
	static const uint8_t junk[][8] = {
	    {0, 0, 0},
	    {0, 0, 0x10, 0, 'j', 'u', 'n', 'k'}, /* an envelope of 4096 bytes, cut short */
	};
	struct verify_result r;
	struct buf b = {0};
	const char *dir;

	SETUP(f);
	dir = attack_copy(&f, "junk");
	if (!dir || !ASSERT_OK(buf_read_file(&b, seg_file(dir, 2), 0), "read segment 2"))
		return;
	for (size_t c = 0; c < sizeof(junk) / sizeof(junk[0]); c++) {
		size_t len = b.len, n = c ? sizeof(junk[c]) : 3;

		if (!ASSERT_OK(buf_add(&b, junk[c], n), "junk") ||
		    !ASSERT_OK(write_file(seg_file(dir, 2), b.data, b.len, 0600), "write"))
			break;
		run_verify(dir, f.pinned, f.cp[NEPOCHS - 1], &r);
		if (REJECTED(&r, NULL, "bytes after the last envelope of segment 2")) {
			ASSERT_STREQ(r.file, seg_file(dir, 2), "reported in segment 2");
			ASSERT_EQ(r.offset, len, "at the junk");
		}
		b.len = len;
	}
	buf_free(&b);
}

/* Incompressible TTY data, as after a binary transfer over a terminal. */
static int append_big(struct store *st, size_t len, uint64_t seed)
{
	struct buf b = {0};
	uint8_t *data = malloc(len);
	uint64_t x = seed | 1;
	int err;

	if (!data)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		data[i] = x >> 24;
	}
	err = rec_begin(&b, REC_TTY, SESSION, clock_ns(CLOCK_REALTIME), clock_ns(CLOCK_BOOTTIME));
	err = err ?: rec_add_u64(&b, TAG_STREAM, STREAM_OUT);
	err = err ?: rec_add_bytes(&b, TAG_DATA, data, len);
	err = err ?: store_append(st, &b);
	buf_free(&b);
	free(data);
	return err;
}

/*
 * Not an attack: the writer dies with records written but not synced, the
 * last one torn, and starts again (recovery: GAP, new segment), then
 * closes an epoch. That store must verify, against every checkpoint.
 */
TEST(tamper_genuine_crash_verifies)
{
	struct verify_result r;
	struct store st;
	struct model *m;
	const char *dir;
	uint64_t len;
	int status;
	pid_t pid;

	SETUP(f);
	dir = attack_copy(&f, "crashed");
	if (!dir)
		return;
	pid = fork();
	if (pid == 0) {
		int err = store_open(&st, dir, STORE_WRITE);

		for (int i = 0; i < 3 && !err; i++)
			err = append_now(&st, i);
		err = err ?: store_sync(&st);
		/* 4 x 300 kB: the last passes the 1 MiB buffer, is written, not synced */
		for (int i = 0; i < 4 && !err; i++)
			err = append_big(&st, 300000, i + 1);
		_exit(err ? 1 : 0);
	}
	if (!ASSERT_GT(pid, 0, "fork") || !ASSERT_EQ(waitpid(pid, &status, 0), pid, "waitpid") ||
	    !ASSERT_EQ(status, 0, "writer exit status"))
		return;
	/* the OS kept half of the last envelope */
	m = model_load(dir);
	if (!m)
		return;
	len = m->e[m->n - 1].bytes.len;
	ASSERT_GT(len, 300000, "the last envelope is the big one");
	ASSERT_OK(truncate(seg_file(dir, m->e[m->n - 1].seg), model_off(m, m->n - 1) + len / 2),
		  "tear it");
	model_free(m);
	if (!ASSERT_OK(store_open(&st, dir, STORE_WRITE), "recover"))
		return;
	ASSERT_OK(append_now(&st, 7), "append after the crash");
	ASSERT_OK(store_seal_epoch(&st, "test"), "close the epoch");
	store_close(&st);
	ASSERT_TRUE(run_verify(dir, f.pinned, NULL, &r), r.reason);
	for (int k = 0; k < NEPOCHS; k++)
		ASSERT_TRUE(run_verify(dir, f.pinned, f.cp[k], &r), r.reason);
	ASSERT_TRUE(run_verify(dir, f.pinned, in_dir(dir, "checkpoints/latest"), &r), r.reason);
}

/*
 * Not an attack: the writer dies in the instant after creating a segment,
 * before its header is written (at a rotation, or at start): an empty last
 * segment. Recovery takes it for a torn tail and starts the next segment
 * with a GAP; verify accepts it as one.
 */
TEST(tamper_genuine_crash_at_segment_creation_verifies)
{
	struct verify_result r;
	struct store st;
	const char *dir;

	SETUP(f);
	dir = attack_copy(&f, "crashed-at-creation");
	if (!dir || !ASSERT_OK(write_file(seg_file(dir, f.segments + 1), "", 0, 0600), "empty"))
		return;
	run_verify(dir, f.pinned, NULL, &r);
	REJECTED(&r, "shorter than a segment header", "empty last segment before recovery");
	if (!ASSERT_OK(store_open(&st, dir, STORE_WRITE), "recover"))
		return;
	ASSERT_EQ(st.seg_no, f.segments + 2, "appending in the segment after the empty one");
	ASSERT_OK(append_now(&st, 7), "append after the crash");
	ASSERT_OK(store_seal_epoch(&st, "test"), "close the epoch");
	store_close(&st);
	ASSERT_TRUE(run_verify(dir, f.pinned, NULL, &r), r.reason);
	ASSERT_TRUE(run_verify(dir, f.pinned, f.cp[NEPOCHS - 1], &r), r.reason);
}

/*
 * Not an attack: a torn tail, and the writer dies again while recovering,
 * after it created the next segment and before its GAP reached the disk.
 * The next start must still acknowledge the torn bytes with a GAP.
 */
TEST(tamper_genuine_crash_during_recovery_verifies)
{
	struct verify_result r;
	struct store st;
	const char *dir;
	struct model *m;

	SETUP(f);
	m = attack_model(&f, "crashed-twice", &dir);
	if (!m)
		return;
	ASSERT_OK(truncate(seg_file(dir, f.segments),
			   model_off(m, m->n - 1) + m->e[m->n - 1].bytes.len / 2),
		  "tear the last envelope");
	model_free(m);
	if (!ASSERT_OK(store_open(&st, dir, STORE_WRITE), "first recovery"))
		return;
	store_close(&st);
	/* what the second crash left of it: the new segment's header */
	if (!ASSERT_OK(truncate(seg_file(dir, f.segments + 1), SEG_HEADER_LEN), "lose the GAP") ||
	    !ASSERT_OK(store_open(&st, dir, STORE_WRITE), "second recovery"))
		return;
	ASSERT_EQ(st.seg_no, f.segments + 2, "appending after the header-only segment");
	ASSERT_OK(append_now(&st, 7), "append after the crashes");
	ASSERT_OK(store_seal_epoch(&st, "test"), "close the epoch");
	store_close(&st);
	ASSERT_TRUE(run_verify(dir, f.pinned, NULL, &r), r.reason);
}

/*
 * Torn bytes at the end of a segment acknowledged by no GAP because no
 * record follows at all: the segments after it hold only headers (easy to
 * make, verify does not open segment keys). Still unacknowledged bytes.
 */
TEST(tamper_torn_tail_followed_by_empty_segments)
{
	struct verify_result r;
	struct buf b = {0};
	const char *dir;
	struct model *m;
	uint64_t off, len;

	SETUP(f);
	m = attack_model(&f, "torn-then-empty", &dir);
	if (!m)
		return;
	off = model_off(m, m->n - 1);
	len = m->e[m->n - 1].bytes.len;
	ASSERT_OK(truncate(seg_file(dir, f.segments), off + len / 2), "tear the last envelope");
	/* a copy of the last header, renumbered */
	if (ASSERT_OK(buf_add(&b, m->hdr[f.segments], SEG_HEADER_LEN), "header")) {
		put_be64(b.data + 32, f.segments + 1);
		ASSERT_OK(write_file(seg_file(dir, f.segments + 1), b.data, b.len, 0600), "write");
	}
	model_free(m);
	buf_free(&b);
	run_verify(dir, f.pinned, NULL, &r);
	if (REJECTED(&r, "no gap record acknowledges", "torn tail, then only headers"))
		AT(&r, f.records, seg_file(dir, f.segments), off);
}

/* A collector start: the record a daemon writes first, in a new boot too. */
static int append_daemon_start(struct store *st)
{
	struct buf b = {0};
	int err;

	err = rec_begin(&b, REC_DAEMON, NULL, clock_ns(CLOCK_REALTIME), clock_ns(CLOCK_BOOTTIME));
	err = err ?: rec_add_str(&b, TAG_EVENT, "start");
	err = err ?: store_append(st, &b);
	buf_free(&b);
	return err;
}

/*
 * Not an attack: the bastion reboots (a new boot id) and the collector
 * starts again, its start record first. Within the new boot the clocks
 * start over; across boots verify does not compare them. The same restart
 * whose first record is anything else is rejected: the boot id may change
 * only at a collector start or a gap.
 */
TEST(tamper_genuine_reboot_verifies)
{
	struct verify_result r;
	struct store st;
	const char *dir;

	SETUP(f);
	dir = attack_copy(&f, "rebooted");
	if (!dir || !ASSERT_OK(store_open(&st, dir, STORE_WRITE), "writer after the reboot"))
		return;
	RAND_bytes(st.boot_id, sizeof(st.boot_id)); /* what /proc says after a reboot */
	ASSERT_OK(append_daemon_start(&st), "collector start");
	for (int i = 0; i < 3; i++)
		ASSERT_OK(append_now(&st, i), "append");
	ASSERT_OK(store_seal_epoch(&st, "test"), "close the epoch");
	store_close(&st);
	ASSERT_TRUE(run_verify(dir, f.pinned, f.cp[NEPOCHS - 1], &r), r.reason);

	dir = attack_copy(&f, "rebooted-no-start");
	if (!dir || !ASSERT_OK(store_open(&st, dir, STORE_WRITE), "writer after the reboot"))
		return;
	RAND_bytes(st.boot_id, sizeof(st.boot_id));
	for (int i = 0; i < 3; i++)
		ASSERT_OK(append_now(&st, i), "append");
	ASSERT_OK(append_daemon_start(&st), "collector start, too late");
	ASSERT_OK(store_seal_epoch(&st, "test"), "close the epoch");
	store_close(&st);
	run_verify(dir, f.pinned, NULL, &r);
	if (REJECTED(&r, "boot id changes without a collector start", "new boot, no start first"))
		AT(&r, f.records + 1, NULL, 0);
}

/* ---- the readers' tag check ---- */

struct damage_seen {
	size_t records;
	size_t damage;
	uint64_t off;
	uint32_t seg;
	char why[128];
	uint64_t bad_seq; /* a record with this seq must not be handed out */
	bool bad_seen;
};

static int ds_record(void *arg, const struct record *rec, uint32_t seg_no UNUSED,
		     uint64_t off UNUSED)
{
	struct damage_seen *d = arg;

	d->records++;
	d->bad_seen |= rec->seq == d->bad_seq;
	return 0;
}

static void ds_damage(void *arg, const char *file, uint64_t off, uint64_t bytes UNUSED,
		      const char *why)
{
	struct damage_seen *d = arg;

	if (!d->damage++) {
		d->off = off;
		d->seg = seg_of_path(file);
		snprintf(d->why, sizeof(d->why), "%s", why);
	}
}

/* The envelope at (seg, off) must not open, by store_read_at nor by a scan. */
static void expect_unreadable(const char *dir, uint32_t seg, uint64_t off, uint64_t seq,
			      const char *what)
{
	struct damage_seen d = {.bad_seq = seq};
	struct store_visitor v = {.record = ds_record, .damage = ds_damage, .arg = &d};
	struct buf raw = {0};
	struct record rec;
	struct store st;
	int rc;

	if (!ASSERT_OK(store_open(&st, dir, 0), "open read-only"))
		return;
	rc = store_read_at(&st, seg, off, &raw, &rec);
	if (!ASSERT_NEQ(rc, 0, what)) {
		const struct rec_field *data = rec_field(&rec, TAG_DATA);

		printf("    ... store_read_at handed out seq %llu, type %u, data \"%.*s\"\n",
		       (unsigned long long)rec.seq, rec.type, data ? (int)data->len : 0,
		       data ? (const char *)data->data : "");
	}
	ASSERT_OK(store_scan(&st, &v), "store_scan");
	if (ASSERT_GE(d.damage, 1, what)) {
		ASSERT_EQ(d.seg, seg, "damage in the segment");
		ASSERT_EQ(d.off, off, "damage at the envelope");
	}
	ASSERT_FALSE(d.bad_seen, "the changed record is not handed out by the scan");
	store_close(&st);
	buf_free(&raw);
}

TEST(tamper_gcm_tag_and_aad)
{
	static const struct {
		const char *what;
		int at; /* byte to change: >= 0 from the start, < 0 from the end */
	} flips[] = {
	    {"tag, last byte", -1},
	    {"tag, first byte", -SEAL_TAG_LEN},
	    {"ciphertext", SEAL_HEADER_LEN + 1},
	    {"AAD: type", 5},
	    {"AAD: flags", 6},
	    {"AAD: seq", 15},
	    {"AAD: epoch", 19},
	    {"AAD: segment", 23},
	    {"AAD: wall time", 31},
	    {"AAD: mono time", 39},
	    {"AAD: boot id", 41},
	    {"AAD: store id", 60},
	    {"AAD: prev_hash", 80},
	    {"AAD: nonce", 110},
	};
	struct model *m;
	const char *dir;
	size_t i;
	uint64_t seq, off;
	uint32_t seg;

	SETUP(f);
	m = attack_model(&f, "gcm", &dir);
	if (!m)
		return;
	i = pick_victim(&f, m);
	seq = m->e[i].h.seq;
	seg = m->e[i].seg;
	off = model_off(m, i);
	for (size_t c = 0; c < sizeof(flips) / sizeof(flips[0]); c++) {
		struct buf *b = &m->e[i].bytes;
		size_t p = flips[c].at >= 0 ? (size_t)flips[c].at : b->len + flips[c].at;

		b->data[p] ^= 0x01;
		if (model_write(m, dir))
			expect_unreadable(dir, seg, off, seq, flips[c].what);
		b->data[p] ^= 0x01;
	}
	/* a shorter tag: the envelope cut by 4 bytes, its length field to match */
	{
		struct buf *b = &m->e[i].bytes;
		uint8_t save[4];

		memcpy(save, b->data + b->len - 4, 4);
		b->len -= 4;
		put_be32(b->data, b->len);
		if (model_write(m, dir))
			expect_unreadable(dir, seg, off, seq, "tag cut to 12 bytes");
		b->len += 4;
		put_be32(b->data, b->len);
		memcpy(b->data + b->len - 4, save, 4);
	}
	/* no tag at all: ciphertext and tag cut off, an empty payload */
	{
		struct buf *b = &m->e[i].bytes;
		size_t len = b->len;

		b->len = SEAL_HEADER_LEN + SEAL_TAG_LEN;
		put_be32(b->data, b->len);
		memset(b->data + SEAL_HEADER_LEN, 0, SEAL_TAG_LEN);
		if (model_write(m, dir))
			expect_unreadable(dir, seg, off, seq, "empty payload, zero tag");
		b->len = len;
		model_reseal(m, i);
		put_be32(b->data, b->len);
	}
	/* sealed under another segment's key */
	{
		uint32_t other = seg == 1 ? 2 : 1;

		memcpy(m->dk[seg], m->dk[other], SEAL_KEY_LEN);
		if (model_reseal(m, i) && model_write(m, dir))
			expect_unreadable(dir, seg, off, seq, "sealed under another segment's key");
	}
	model_free(m);
}

/*
 * An envelope flagged SEAL_PLAIN, with a zero tag and a record of the
 * attacker's choosing in the clear, in place of an encrypted one. It takes
 * no key at all to write: verify rejects it (only seals are unencrypted),
 * and the readers must not hand it out either.
 */
TEST(tamper_reader_plain_downgrade)
{
	struct verify_result r;
	struct model *m;
	const char *dir;
	size_t i;

	SETUP(f);
	m = attack_model(&f, "plain", &dir);
	if (!m)
		return;
	i = pick_victim(&f, m);
	m->e[i].h.flags = SEAL_PLAIN;
	if (edit_record(m, i) && model_write(m, dir)) {
		run_verify(dir, NULL, NULL, &r);
		REJECTED(&r, NULL, "plain envelope in place of a sealed one");
		expect_unreadable(dir, m->e[i].seg, model_off(m, i), m->e[i].h.seq,
				  "a plain non-seal envelope must not be handed out");
	}
	model_free(m);
}

/* ---- erased keys ---- */

static const uint8_t (*key_needles)[SEAL_KEY_LEN];
static int key_count;
static char key_found[512];
static int key_found_epoch;

static int find_keys(const char *path, const struct stat *sb UNUSED, int flag,
		     struct FTW *ftw UNUSED)
{
	struct buf b = {0};

	if (flag == FTW_F && !buf_read_file(&b, path, 0))
		for (int k = 0; k < key_count; k++)
			if (memmem(b.data, b.len, key_needles[k], SEAL_KEY_LEN)) {
				snprintf(key_found, sizeof(key_found), "%s", path);
				key_found_epoch = k;
			}
	buf_free(&b);
	return 0;
}

/* Where in dir the first of keys[0..n) is found ("" if nowhere). */
static const char *search_keys(const char *dir, const uint8_t (*keys)[SEAL_KEY_LEN], int n)
{
	key_needles = keys;
	key_count = n;
	key_found[0] = 0;
	ASSERT_OK(nftw(dir, find_keys, 16, FTW_PHYS), "walk the store");
	return key_found;
}

TEST(tamper_erased_keys)
{
	struct store st;
	uint32_t epoch;
	uint8_t current[1][SEAL_KEY_LEN];
	const char *where;

	SETUP(f);
	/* the search works: the open epoch's key is in keys/epoch */
	where = search_keys(f.dir, &f.sk[NEPOCHS], 1);
	ASSERT_STREQ(where, in_dir(f.dir, "keys/epoch"), "current key found in keys/epoch");
	/* no closed epoch's key anywhere: segments, index, checkpoints, keys */
	where = search_keys(f.dir, f.sk, NEPOCHS);
	if (!ASSERT_STREQ(where, "", "secret keys of closed epochs left in the store"))
		printf("    ... epoch %d's secret key in %s\n", key_found_epoch, where);
	ASSERT_TRUE(access(in_dir(f.dir, "keys/epoch.next"), F_OK) != 0, "no keys/epoch.next");
	ASSERT_TRUE(access(in_dir(f.dir, "keys/epoch.next.tmp"), F_OK) != 0,
		    "no keys/epoch.next.tmp");

	/* while a writer runs, with the WAL in place, after closing one more epoch */
	if (!ASSERT_OK(store_open(&st, f.dir, STORE_WRITE), "writer"))
		return;
	ASSERT_OK(append_now(&st, 1), "append");
	ASSERT_OK(store_seal_epoch(&st, "test"), "close epoch 4");
	ASSERT_OK(append_now(&st, 2), "append");
	ASSERT_OK(store_sync(&st), "sync");
	ASSERT_TRUE(access(in_dir(f.dir, "index.sqlite-wal"), F_OK) == 0, "the WAL is there");
	where = search_keys(f.dir, f.sk, NEPOCHS + 1);
	if (!ASSERT_STREQ(where, "", "secret keys of closed epochs, writer running"))
		printf("    ... epoch %d's secret key in %s\n", key_found_epoch, where);
	store_close(&st);
	if (ASSERT_OK(read_epoch_key(f.dir, &epoch, current[0], NULL), "keys/epoch"))
		ASSERT_EQ(epoch, NEPOCHS + 1, "keys/epoch moved on to epoch 5");
	where = search_keys(f.dir, f.sk, NEPOCHS + 1);
	if (!ASSERT_STREQ(where, "", "secret keys of closed epochs, writer stopped"))
		printf("    ... epoch %d's secret key in %s\n", key_found_epoch, where);
}

/* ---- checkpoints ---- */

TEST(tamper_forged_checkpoints)
{
	char path[512], *nl;
	struct verify_result r;
	struct buf b = {0};

	SETUP(f);
	snprintf(path, sizeof(path), "%s/forged-checkpoint", test_dir());
	/* a larger size than was signed */
	if (!ASSERT_OK(buf_read_file(&b, f.cp[1], 0), "read checkpoint"))
		return;
	nl = strchr((char *)b.data, '\n');
	if (ASSERT_NOT_NULL(nl, "origin line")) {
		nl[1] = nl[1] == '9' ? '8' : nl[1] + 1;
		ASSERT_OK(write_file(path, b.data, b.len, 0644), "write");
		run_verify(f.dir, f.pinned, path, &r);
		REJECTED(&r, "checkpoint signature does not verify", "checkpoint size changed");
	}
	/* the epoch line changed: the signature is checked with another key */
	buf_read_file(&b, f.cp[1], 0);
	nl = strstr((char *)b.data, "epoch 1\n");
	if (ASSERT_NOT_NULL(nl, "epoch line")) {
		nl[6] = '3';
		ASSERT_OK(write_file(path, b.data, b.len, 0644), "write");
		run_verify(f.dir, f.pinned, path, &r);
		REJECTED(&r, "checkpoint signature does not verify", "checkpoint epoch changed");
	}
	/* garbage */
	ASSERT_OK(write_file(path, "hello\n", 6, 0644), "write");
	run_verify(f.dir, f.pinned, path, &r);
	REJECTED(&r, "not a sealtrail checkpoint", "not a checkpoint");
	buf_free(&b);
}

/*
 * What a sink collects: every checkpoint appended to one file (a
 * --checkpoint-file or a command's), syslog lines among other lines, and
 * notes of other bastions' stores in a central log. verify checks every
 * note of this store and skips the others; one bad note fails it, at the
 * note's byte offset; another store's notes alone are no checkpoint.
 */
TEST(tamper_checkpoint_file_with_many_notes)
{
	char path[512], other[512];
	struct verify_result r;
	struct buf all = {0}, b = {0}, line = {0};
	struct store st;
	uint64_t forged_off;
	char *nl;

	SETUP(f);
	snprintf(path, sizeof(path), "%s/sink", test_dir());
	snprintf(other, sizeof(other), "%s/other", test_dir());
	if (!build_other_store(other, NULL, 5))
		return;
	ASSERT_OK(buf_read_file(&b, in_dir(other, "checkpoints/latest"), 0),
		  "another store's note");
	buf_addf(&all, "%s", (char *)b.data);
	for (int k = 0; k < NEPOCHS; k++) {
		ASSERT_OK(buf_read_file(&b, f.cp[k], 0), "read checkpoint");
		buf_addf(&all, "%s", (char *)b.data);
	}
	/* epoch 2's again, as --checkpoint-syslog sent it, between other lines */
	if (!ASSERT_OK(buf_read_file(&b, f.cp[2], 0), "read checkpoint") ||
	    !ASSERT_OK(store_open(&st, f.dir, 0), "open"))
		goto out;
	buf_addf(&line, "Nov 24 10:00:00 bastion sealtraild[42]: ");
	sinks_syslog_line(st.id, 2, f.cp_size[2], &b, &line);
	store_close(&st);
	buf_addf(&all, "Nov 24 10:00:00 bastion sshd[7]: Accepted publickey\n%s\n",
		 (char *)line.data);
	ASSERT_OK(write_file(path, all.data, all.len, 0644), "write");
	if (ASSERT_TRUE(run_verify(f.dir, f.pinned, path, &r), r.reason)) {
		ASSERT_EQ(r.checkpoints, NEPOCHS + 1, "every note of this store checked");
		ASSERT_EQ(r.checkpoint_size, f.cp_size[NEPOCHS - 1], "the largest");
	}

	/* one more note, its size changed */
	forged_off = all.len;
	ASSERT_OK(buf_read_file(&b, f.cp[1], 0), "read checkpoint");
	nl = strchr((char *)b.data, '\n');
	if (ASSERT_NOT_NULL(nl, "origin line")) {
		nl[1] = nl[1] == '9' ? '8' : nl[1] + 1;
		buf_addf(&all, "%s", (char *)b.data);
		ASSERT_OK(write_file(path, all.data, all.len, 0644), "write");
		run_verify(f.dir, f.pinned, path, &r);
		if (REJECTED(&r, "checkpoint signature does not verify",
			     "a forged note among good"))
			AT(&r, r.seq, path, forged_off);
	}

	/* a syslog line whose note was garbled */
	all.len = forged_off;
	buf_addf(&all, "x sealtraild[1]: " SINK_SYSLOG_TAG " store=00 epoch=1 size=1 note=AAAA\n");
	ASSERT_OK(write_file(path, all.data, all.len, 0644), "write");
	run_verify(f.dir, f.pinned, path, &r);
	REJECTED(&r, "not a sealtrail checkpoint", "a garbled syslog line");

	/* only another store's */
	ASSERT_OK(copy_file(in_dir(other, "checkpoints/latest"), path), "copy");
	run_verify(f.dir, f.pinned, path, &r);
	REJECTED(&r, "another store", "another store's note only");
out:
	buf_free(&all);
	buf_free(&b);
	buf_free(&line);
}

/*
 * check_checkpoint() decodes the note's root (up to 127 base64 characters)
 * into root[64] and its signature (up to 255) into sig[128]: a note with
 * long fields writes past them. A checkpoint is input from outside (the
 * sink, a copy of DIR/checkpoints/latest an attacker could have written):
 * verify must reject it, not overflow.
 */
TEST(tamper_checkpoint_oversized_fields)
{
	char idhex[ST_ID_HEX], note[1024], root[125], sig[253], path[512];
	struct verify_result r;
	struct store st;

	SETUP(f);
	if (!ASSERT_OK(store_open(&st, f.dir, 0), "open"))
		return;
	hex_encode(st.id, ST_ID_LEN, idhex);
	store_close(&st);
	memset(root, 'A', sizeof(root) - 1);
	root[sizeof(root) - 1] = 0;
	memset(sig, 'B', sizeof(sig) - 1);
	sig[sizeof(sig) - 1] = 0;
	snprintf(note, sizeof(note), "sealtrail/%s\n5\n%s\nepoch 1\n\n\u2014 sealtrail-x %s\n",
		 idhex, root, sig);
	snprintf(path, sizeof(path), "%s/long-checkpoint", test_dir());
	if (!ASSERT_OK(write_file(path, note, strlen(note), 0644), "write"))
		return;
	run_verify(f.dir, f.pinned, path, &r);
	REJECTED(&r, NULL, "checkpoint with oversized root and signature");
}
