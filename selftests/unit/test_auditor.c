/*
 * The auditor's wrap of segment keys (store/auditor.h): X25519 + HKDF +
 * AES-256-GCM that opens only with the auditor's private key and only for
 * the store, segment and header it was made for; v3 segment headers that
 * carry it inside the hash chain; a store copy read with that key alone
 * (no keys/kek, no index); a writer that does not drop or swap the key
 * unless told to; verify saying which key each segment is wrapped to.
 */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/auditor.h"
#include "store/store.h"
#include "store/verify.h"
#include "test.h"

static const uint8_t SESSION[ST_ID_LEN] = {0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5,
					   0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0x01};

struct keypair {
	uint8_t sk[AUDITOR_KEY_LEN];
	uint8_t pk[AUDITOR_KEY_LEN];
};

static bool keypair(struct keypair *k)
{
	return ASSERT_OK(auditor_keygen(k->sk, k->pk), "auditor_keygen");
}

static const char *store_dir(void)
{
	static char dir[256];

	snprintf(dir, sizeof(dir), "%s/store", test_dir());
	return dir;
}

static const char *seg_path(uint32_t n)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/segments/seg-%08u.log", store_dir(), n);
	return path;
}

static const char *store_file(const char *name)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/%s", store_dir(), name);
	return path;
}

/* The first len bytes of segment n's file. */
static int read_header(uint32_t n, uint8_t *h, size_t len)
{
	int fd = open(seg_path(n), O_RDONLY);
	ssize_t got;

	if (fd < 0)
		return -errno;
	got = pread(fd, h, len, 0);
	close(fd);
	return got == (ssize_t)len ? 0 : -EIO;
}

static int poke_xor(const char *path, uint64_t off, uint8_t mask)
{
	int fd = open(path, O_RDWR);
	uint8_t b;
	int err = 0;

	if (fd < 0)
		return -errno;
	if (pread(fd, &b, 1, off) != 1)
		err = -EIO;
	b ^= mask;
	if (!err && pwrite(fd, &b, 1, off) != 1)
		err = -EIO;
	close(fd);
	return err;
}

/* A session start, n terminal output chunks "chunk I\n" and an epoch close. */
static int write_session(struct store *st, int n)
{
	struct buf rec = {0};
	uint64_t now = clock_ns(CLOCK_REALTIME);
	int err;

	err = rec_begin(&rec, REC_SESSION_START, SESSION, now, clock_ns(CLOCK_BOOTTIME));
	err = err ?: rec_add_str(&rec, TAG_USER, "alice");
	err = err ?: rec_add_str(&rec, TAG_TTY, "pts/1");
	err = err ?: store_append(st, &rec);
	for (int i = 0; i < n && !err; i++) {
		char data[32];

		snprintf(data, sizeof(data), "chunk %d\n", i);
		err = rec_begin(&rec, REC_TTY, SESSION, now + i, clock_ns(CLOCK_BOOTTIME));
		err = err ?: rec_add_u64(&rec, TAG_STREAM, STREAM_OUT);
		err = err ?: rec_add_u64(&rec, TAG_TTY_INDEX, 1);
		err = err ?: rec_add_bytes(&rec, TAG_DATA, data, strlen(data));
		err = err ?: store_append(st, &rec);
	}
	buf_free(&rec);
	return err ?: store_seal_epoch(st, "test");
}

static long long q_int(struct store *st, const char *sql)
{
	sqlite3_stmt *stmt;
	long long v = -1;

	if (sqlite3_prepare_v2(st->index.db, sql, -1, &stmt, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(stmt) == SQLITE_ROW)
		v = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return v;
}

/* Read every chunk the index lists back through store_read_at: "chunk 0\nchunk 1\n..." */
static int read_output(struct store *st, struct buf *out)
{
	sqlite3_stmt *stmt;
	struct buf raw = {0};
	struct record rec;
	int err = 0;

	out->len = 0;
	if (sqlite3_prepare_v2(st->index.db, "SELECT segment, offset FROM chunks ORDER BY seq", -1,
			       &stmt, NULL) != SQLITE_OK)
		return -EIO;
	while (!err && sqlite3_step(stmt) == SQLITE_ROW) {
		const struct rec_field *f;

		err = store_read_at(st, sqlite3_column_int64(stmt, 0),
				    sqlite3_column_int64(stmt, 1), &raw, &rec);
		f = err ? NULL : rec_field(&rec, TAG_DATA);
		err = err ?: (f ? buf_add(out, f->data, f->len) : -EBADMSG);
	}
	sqlite3_finalize(stmt);
	buf_free(&raw);
	return err;
}

static void expected_output(struct buf *out, int from, int to)
{
	out->len = 0;
	for (int i = from; i < to; i++)
		buf_addf(out, "chunk %d\n", i);
}

static int open_writer(struct store *st, enum store_auditor mode, const uint8_t *pk, bool change)
{
	struct store_options o = {.auditor = mode, .auditor_pk = pk, .auditor_change = change};

	return store_open_with(st, store_dir(), STORE_WRITE | STORE_CREATE, &o);
}

static int open_auditor(struct store *st, const struct keypair *k)
{
	struct store_options o = {.auditor_sk = k->sk};

	return store_open_with(st, store_dir(), STORE_FRESH_INDEX, &o);
}

/* What the off-host copy lacks: the store's own key and its index. */
static void remove_kek_and_index(void)
{
	ASSERT_OK(unlink(store_file("keys/kek")), "rm keys/kek");
	unlink(store_file("index.sqlite"));
	unlink(store_file("index.sqlite-wal"));
	unlink(store_file("index.sqlite-shm"));
}

/* ---- the wrap itself ---- */

TEST(auditor_wrap_round_trip)
{
	uint8_t id[ST_ID_LEN], dk[SEAL_KEY_LEN], back[SEAL_KEY_LEN], aad[SEG_HEADER_AAD];
	uint8_t w1[AUDITOR_WRAP_LEN], w2[AUDITOR_WRAP_LEN];
	struct keypair a;
	uint8_t pk[AUDITOR_KEY_LEN];

	if (!keypair(&a))
		return;
	ASSERT_OK(auditor_public(a.sk, pk), "auditor_public");
	ASSERT_MEMEQ(pk, a.pk, AUDITOR_KEY_LEN, "public key from the private one");
	memset(id, 0x11, sizeof(id));
	memset(dk, 0x22, sizeof(dk));
	memset(aad, 0x33, sizeof(aad));
	if (!ASSERT_OK(auditor_wrap(a.pk, id, 7, dk, aad, sizeof(aad), w1), "wrap"))
		return;
	ASSERT_FALSE(memmem(w1, sizeof(w1), dk, 8), "the data key is not in the wrap");
	if (ASSERT_OK(auditor_unwrap(a.sk, a.pk, id, 7, w1, aad, sizeof(aad), back), "unwrap"))
		ASSERT_MEMEQ(back, dk, SEAL_KEY_LEN, "the data key back");
	/* a new ephemeral key and nonce every time */
	ASSERT_OK(auditor_wrap(a.pk, id, 7, dk, aad, sizeof(aad), w2), "wrap again");
	ASSERT_TRUE(memcmp(w1, w2, AUDITOR_KEY_LEN), "ephemeral keys differ");
	ASSERT_TRUE(memcmp(w1 + AUDITOR_KEY_LEN, w2 + AUDITOR_KEY_LEN, SEAL_NONCE_LEN),
		    "nonces differ");
	if (ASSERT_OK(auditor_unwrap(a.sk, a.pk, id, 7, w2, aad, sizeof(aad), back), "unwrap 2"))
		ASSERT_MEMEQ(back, dk, SEAL_KEY_LEN, "the data key back again");
}

TEST(auditor_unwrap_refuses_other_keys)
{
	uint8_t id[ST_ID_LEN] = {1}, dk[SEAL_KEY_LEN] = {2}, back[SEAL_KEY_LEN];
	uint8_t aad[SEG_HEADER_AAD] = {3}, w[AUDITOR_WRAP_LEN];
	struct keypair a, b;

	if (!keypair(&a) || !keypair(&b))
		return;
	if (!ASSERT_OK(auditor_wrap(a.pk, id, 1, dk, aad, sizeof(aad), w), "wrap to a"))
		return;
	memset(back, 0, sizeof(back));
	ASSERT_EQ(auditor_unwrap(b.sk, b.pk, id, 1, w, aad, sizeof(aad), back), -EBADMSG,
		  "another auditor's key");
	ASSERT_EQ(auditor_unwrap(b.sk, a.pk, id, 1, w, aad, sizeof(aad), back), -EBADMSG,
		  "another private key claiming a's public key");
	ASSERT_EQ(auditor_unwrap(a.sk, b.pk, id, 1, w, aad, sizeof(aad), back), -EBADMSG,
		  "a's private key with another public key in the binding");
	/* X25519's low-order points give an all-zero secret: never a key */
	{
		uint8_t zero_pk[AUDITOR_KEY_LEN] = {0};

		ASSERT_NEQ(auditor_wrap(zero_pk, id, 1, dk, aad, sizeof(aad), w), 0,
			   "wrap to a low-order point");
	}
}

TEST(auditor_unwrap_refuses_any_changed_bit)
{
	uint8_t id[ST_ID_LEN] = {9}, dk[SEAL_KEY_LEN], back[SEAL_KEY_LEN];
	uint8_t aad[SEG_HEADER_AAD] = {4}, w[AUDITOR_WRAP_LEN];
	struct keypair a;
	int opened = 0;

	memset(dk, 0x5a, sizeof(dk));
	if (!keypair(&a) || !ASSERT_OK(auditor_wrap(a.pk, id, 3, dk, aad, sizeof(aad), w), "wrap"))
		return;
	/* ephemeral key, nonce, wrapped key and tag: every bit counts */
	for (size_t bit = 0; bit < sizeof(w) * 8; bit++) {
		w[bit / 8] ^= 1 << (bit % 8);
		opened += auditor_unwrap(a.sk, a.pk, id, 3, w, aad, sizeof(aad), back) == 0;
		w[bit / 8] ^= 1 << (bit % 8);
	}
	ASSERT_EQ(opened, 0, "wraps with a flipped bit that opened");
	ASSERT_OK(auditor_unwrap(a.sk, a.pk, id, 3, w, aad, sizeof(aad), back), "unchanged opens");
}

TEST(auditor_unwrap_bound_to_header_store_and_segment)
{
	uint8_t id[ST_ID_LEN], other[ST_ID_LEN], dk[SEAL_KEY_LEN] = {7}, back[SEAL_KEY_LEN];
	uint8_t aad[SEG_HEADER_AAD], w[AUDITOR_WRAP_LEN];
	struct keypair a;
	int opened = 0;

	memset(id, 0x42, sizeof(id));
	memcpy(other, id, sizeof(id));
	other[15] ^= 1;
	for (size_t i = 0; i < sizeof(aad); i++)
		aad[i] = i;
	if (!keypair(&a) || !ASSERT_OK(auditor_wrap(a.pk, id, 5, dk, aad, sizeof(aad), w), "wrap"))
		return;
	ASSERT_OK(auditor_unwrap(a.sk, a.pk, id, 5, w, aad, sizeof(aad), back), "as made");
	ASSERT_EQ(auditor_unwrap(a.sk, a.pk, other, 5, w, aad, sizeof(aad), back), -EBADMSG,
		  "another store id");
	ASSERT_EQ(auditor_unwrap(a.sk, a.pk, id, 6, w, aad, sizeof(aad), back), -EBADMSG,
		  "another segment number");
	ASSERT_EQ(auditor_unwrap(a.sk, a.pk, id, 5 + (1ull << 32), w, aad, sizeof(aad), back),
		  -EBADMSG, "segment number differing in the high half");
	memset(back, 0, sizeof(back));
	ASSERT_EQ(auditor_unwrap(a.sk, a.pk, id, 5, w, aad, sizeof(aad) - 1, back), -EBADMSG,
		  "shorter AAD");
	/* the right key decrypts before the tag fails: none of that reaches the caller */
	ASSERT_MEMEQ(back, (uint8_t[SEAL_KEY_LEN]){0}, SEAL_KEY_LEN, "nothing written on failure");
	for (size_t i = 0; i < sizeof(aad); i++) {
		aad[i] ^= 0x80;
		opened += auditor_unwrap(a.sk, a.pk, id, 5, w, aad, sizeof(aad), back) == 0;
		aad[i] ^= 0x80;
	}
	ASSERT_EQ(opened, 0, "changed header bytes (AAD) that opened");
}

/* ---- key files ---- */

TEST(auditor_key_files)
{
	uint8_t pk[AUDITOR_KEY_LEN], pk2[AUDITOR_KEY_LEN], sk[AUDITOR_KEY_LEN];
	uint8_t id[ST_ID_LEN] = {1}, dk[SEAL_KEY_LEN] = {2}, w[AUDITOR_WRAP_LEN];
	char priv[512], pub[512], fp[AUDITOR_FP_LEN], cmd[2048];
	struct stat sb;

	snprintf(priv, sizeof(priv), "%s/auditor.key", test_dir());
	snprintf(pub, sizeof(pub), "%s/auditor.pub", test_dir());
	if (!ASSERT_OK(auditor_write_keys(test_dir(), pk), "auditor_write_keys"))
		return;
	if (ASSERT_OK(stat(priv, &sb), "stat auditor.key"))
		ASSERT_EQ(sb.st_mode & 0777, 0600, "private key mode");
	if (ASSERT_OK(stat(pub, &sb), "stat auditor.pub"))
		ASSERT_EQ(sb.st_mode & 0777, 0644, "public key mode");
	if (ASSERT_OK(auditor_read_public(pub, pk2), "read auditor.pub"))
		ASSERT_MEMEQ(pk2, pk, AUDITOR_KEY_LEN, "public key as written");
	if (ASSERT_OK(auditor_read_private(priv, sk, pk2), "read auditor.key"))
		ASSERT_MEMEQ(pk2, pk, AUDITOR_KEY_LEN, "the private key's public half");
	/* what was wrapped to the file's public key opens with the file's private key */
	ASSERT_OK(auditor_wrap(pk, id, 1, dk, id, sizeof(id), w), "wrap");
	ASSERT_OK(auditor_unwrap(sk, pk, id, 1, w, id, sizeof(id), dk), "unwrap");
	auditor_fingerprint(pk, fp);
	ASSERT_EQ(strlen(fp), AUDITOR_FP_LEN - 1, "fingerprint length");
	ASSERT_EQ(strncmp(fp, "SHA256:", 7), 0, "fingerprint prefix");
	/* never overwritten; the wrong half of a pair is refused by name */
	ASSERT_EQ(auditor_write_keys(test_dir(), pk2), -EEXIST, "second keygen into the same dir");
	if (ASSERT_OK(auditor_read_public(pub, pk2), "still the first pair"))
		ASSERT_MEMEQ(pk2, pk, AUDITOR_KEY_LEN, "unchanged");
	ASSERT_NEQ(auditor_read_public(priv, pk2), 0, "a private key as the public one");
	ASSERT_NEQ(auditor_read_private(pub, sk, pk2), 0, "the public key as the private one");
	ASSERT_NEQ(auditor_read_public(test_path("missing"), pk2), 0, "missing file");
	/* an Ed25519 key is a key, but not the auditor's kind */
	snprintf(cmd, sizeof(cmd),
		 "openssl genpkey -algorithm ED25519 -out %s/ed.key 2>/dev/null &&"
		 " openssl pkey -in %s/ed.key -pubout -out %s/ed.pub 2>/dev/null",
		 test_dir(), test_dir(), test_dir());
	if (system(cmd) == 0)
		ASSERT_NEQ(auditor_read_public(test_path("ed.pub"), pk2), 0, "an Ed25519 key");
	/* keys made by the openssl tool work the same */
	snprintf(cmd, sizeof(cmd),
		 "openssl genpkey -algorithm X25519 -out %s/x.key 2>/dev/null &&"
		 " openssl pkey -in %s/x.key -pubout -out %s/x.pub 2>/dev/null",
		 test_dir(), test_dir(), test_dir());
	if (system(cmd) == 0) {
		uint8_t xpk[AUDITOR_KEY_LEN];

		if (ASSERT_OK(auditor_read_public(test_path("x.pub"), xpk),
			      "openssl's public key") &&
		    ASSERT_OK(auditor_read_private(test_path("x.key"), sk, pk2),
			      "openssl's private key"))
			ASSERT_MEMEQ(pk2, xpk, AUDITOR_KEY_LEN, "openssl's pair belongs together");
	} else {
		printf("    (openssl tool not found: interoperability not checked)\n");
	}
}

/* ---- the store ---- */

TEST(auditor_store_copy_reads_without_kek_or_index)
{
	struct buf got = {0}, want = {0};
	uint8_t h[SEG_HEADER_V3_LEN];
	struct verify_opts vo = {0};
	struct verify_result r;
	struct keypair a, b;
	struct store st;
	uint32_t nseg;

	if (!keypair(&a) || !keypair(&b))
		return;
	if (!ASSERT_OK(open_writer(&st, STORE_AUDITOR_SET, a.pk, false), "writer with auditor"))
		return;
	st.seg_rotate_bytes = 1200; /* several segments, each with its own key */
	ASSERT_OK(write_session(&st, 40), "write a session");
	nseg = st.seg_no;
	store_close(&st);
	ASSERT_GT(nseg, 2, "segments written");

	/* a v3 header: the first 128 bytes as v2, then the auditor's key and the wrap */
	if (ASSERT_OK(read_header(1, h, sizeof(h)), "read header")) {
		ASSERT_MEMEQ(h, SEG_MAGIC_V3, 8, "magic");
		ASSERT_EQ(get_be32(h + 8), SEG_VERSION_V3, "version");
		ASSERT_EQ(get_be32(h + 12), SEG_HEADER_V3_LEN, "header length");
		ASSERT_MEMEQ(h + SEG_AUDITOR_PK, a.pk, AUDITOR_KEY_LEN, "auditor public key");
		ASSERT_EQ(SEG_AUDITOR_WRAP + AUDITOR_WRAP_LEN, 252, "wrap ends at 252");
		ASSERT_MEMEQ(h + 252, "\0\0\0\0", 4, "zero after it");
	}
	/* verify needs no key and says whose key the segments are wrapped to */
	if (ASSERT_OK(store_verify(store_dir(), &vo, &r), "verify")) {
		ASSERT_TRUE(r.ok, r.reason);
		if (ASSERT_EQ(r.nwraps, 1, "one run of segments")) {
			ASSERT_TRUE(r.wraps[0].auditor, "wrapped to an auditor");
			ASSERT_MEMEQ(r.wraps[0].pk, a.pk, AUDITOR_KEY_LEN, "to a");
			ASSERT_EQ(r.wraps[0].first_seg, 1, "from segment 1");
			ASSERT_EQ(r.wraps[0].last_seg, nseg, "to the last");
		}
	}

	/* the copy holds segments/ and store-id, nothing else */
	remove_kek_and_index();
	{
		char cmd[1024];

		snprintf(cmd, sizeof(cmd), "cd %s && rm -rf keys checkpoints LOCK status.json",
			 store_dir());
		ASSERT_OK(system(cmd), "strip the copy to segments/ and store-id");
	}
	expected_output(&want, 0, 40);
	if (ASSERT_OK(open_auditor(&st, &a), "open with the auditor's key alone")) {
		ASSERT_FALSE(st.have_kek, "no kek in the copy");
		ASSERT_EQ(q_int(&st, "SELECT count(*) FROM sessions WHERE user = 'alice'"), 1,
			  "the session, indexed afresh");
		ASSERT_EQ(q_int(&st, "SELECT count(*) FROM chunks"), 40, "its chunks");
		if (ASSERT_OK(read_output(&st, &got), "read the output back"))
			ASSERT_BYTES_EQ(got.data, got.len, want.data, want.len, "output");
		store_close(&st);
	}
	ASSERT_EQ(access(store_file("index.sqlite"), F_OK), -1, "no index written into the copy");
	/* another auditor's key opens nothing, and says so */
	ASSERT_EQ(open_auditor(&st, &b), -ENOKEY, "another auditor's key");
	/* the key does not write */
	{
		struct store_options o = {.auditor_sk = a.sk};

		ASSERT_EQ(store_open_with(&st, store_dir(), STORE_WRITE, &o), -EINVAL,
			  "a writer with the auditor's key");
	}
	buf_free(&got);
	buf_free(&want);
}

TEST(auditor_key_pinned_by_the_store)
{
	struct verify_opts vo = {0};
	struct verify_result r;
	struct keypair a, b;
	struct store st;
	uint8_t h[SEG_HEADER_V3_LEN];
	uint32_t seg;

	if (!keypair(&a) || !keypair(&b))
		return;
	if (!ASSERT_OK(open_writer(&st, STORE_AUDITOR_SET, a.pk, false), "create, auditor a"))
		return;
	ASSERT_OK(write_session(&st, 2), "write");
	seg = st.seg_no;
	store_close(&st);

	/* dropped or swapped without being told: refused, nothing written */
	ASSERT_EQ(open_writer(&st, STORE_AUDITOR_NONE, NULL, false), -EKEYREJECTED,
		  "a writer without the auditor key");
	ASSERT_EQ(open_writer(&st, STORE_AUDITOR_SET, b.pk, false), -EKEYREJECTED,
		  "a writer with another auditor key");
	ASSERT_EQ(access(seg_path(seg + 1), F_OK), -1, "no segment written by refused writers");
	/* the same key again, and a writer that keeps what the store has (reindex) */
	if (ASSERT_OK(open_writer(&st, STORE_AUDITOR_SET, a.pk, false), "the same key")) {
		ASSERT_OK(write_session(&st, 2), "write");
		seg = st.seg_no;
		store_close(&st);
	}
	if (ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE), "a writer keeping the key")) {
		ASSERT_TRUE(st.auditor, "kept");
		seg = st.seg_no;
		store_close(&st);
	}
	if (ASSERT_OK(read_header(seg, h, sizeof(h)), "header"))
		ASSERT_MEMEQ(h + SEG_AUDITOR_PK, a.pk, AUDITOR_KEY_LEN, "still wrapped to a");
	/* told to: b from now on, then none */
	if (ASSERT_OK(open_writer(&st, STORE_AUDITOR_SET, b.pk, true), "change to b")) {
		ASSERT_OK(write_session(&st, 2), "write");
		seg = st.seg_no;
		store_close(&st);
	}
	if (ASSERT_OK(read_header(seg, h, sizeof(h)), "header"))
		ASSERT_MEMEQ(h + SEG_AUDITOR_PK, b.pk, AUDITOR_KEY_LEN, "wrapped to b");
	ASSERT_EQ(open_writer(&st, STORE_AUDITOR_SET, a.pk, false), -EKEYREJECTED,
		  "now pinned to b: a is the other key");
	if (ASSERT_OK(open_writer(&st, STORE_AUDITOR_NONE, NULL, true), "stop wrapping")) {
		ASSERT_OK(write_session(&st, 2), "write");
		seg = st.seg_no;
		store_close(&st);
	}
	if (ASSERT_OK(read_header(seg, h, SEG_HEADER_LEN), "header"))
		ASSERT_EQ(get_be32(h + 12), SEG_HEADER_LEN, "a v2 segment again");
	if (ASSERT_OK(open_writer(&st, STORE_AUDITOR_NONE, NULL, false), "no key, none pinned"))
		store_close(&st);

	/* every change is in the chain and in verify's report */
	if (ASSERT_OK(store_verify(store_dir(), &vo, &r), "verify")) {
		ASSERT_TRUE(r.ok, r.reason);
		if (ASSERT_EQ(r.nwraps, 3, "runs: a, b, none")) {
			ASSERT_MEMEQ(r.wraps[0].pk, a.pk, AUDITOR_KEY_LEN, "first run: a");
			ASSERT_TRUE(r.wraps[1].auditor && !memcmp(r.wraps[1].pk, b.pk, 32),
				    "second run: b");
			ASSERT_FALSE(r.wraps[2].auditor, "third run: none");
			ASSERT_EQ(r.wraps[0].first_seg, 1, "runs start at 1");
			ASSERT_EQ(r.wraps[1].first_seg, r.wraps[0].last_seg + 1, "runs follow");
			ASSERT_EQ(r.wraps[2].first_seg, r.wraps[1].last_seg + 1, "runs follow");
		}
	}
	/* each auditor reads its own segments; the rest is reported, not fatal */
	remove_kek_and_index();
	if (ASSERT_OK(open_auditor(&st, &a), "a reads its part")) {
		ASSERT_EQ(q_int(&st, "SELECT count(*) FROM chunks"), 4, "a's two sessions' chunks");
		store_close(&st);
	}
	if (ASSERT_OK(open_auditor(&st, &b), "b reads its part")) {
		ASSERT_EQ(q_int(&st, "SELECT count(*) FROM chunks"), 2, "b's session's chunks");
		store_close(&st);
	}
}

TEST(auditor_added_to_an_old_store)
{
	struct verify_opts vo = {0};
	struct verify_result r;
	struct buf got = {0}, want = {0};
	struct keypair a;
	struct store st;
	uint32_t v2_last;

	if (!keypair(&a))
		return;
	/* a store from before auditor keys: v2 segments */
	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "old store"))
		return;
	ASSERT_OK(write_session(&st, 3), "write");
	v2_last = st.seg_no;
	store_close(&st);
	if (!ASSERT_OK(open_writer(&st, STORE_AUDITOR_SET, a.pk, false), "auditor added"))
		return;
	ASSERT_OK(write_session(&st, 3), "write");
	store_close(&st);
	if (ASSERT_OK(store_verify(store_dir(), &vo, &r), "verify")) {
		ASSERT_TRUE(r.ok, r.reason);
		if (ASSERT_EQ(r.nwraps, 2, "runs: none, a")) {
			ASSERT_FALSE(r.wraps[0].auditor, "old segments: kek only");
			ASSERT_EQ(r.wraps[0].last_seg, v2_last, "up to the last old one");
			ASSERT_TRUE(r.wraps[1].auditor, "new ones: a");
		}
	}
	/* the store's own key reads both formats */
	if (ASSERT_OK(store_open(&st, store_dir(), 0), "read with keys/kek")) {
		ASSERT_EQ(q_int(&st, "SELECT count(*) FROM chunks"), 6, "all chunks");
		expected_output(&want, 0, 3);
		buf_add(&want, want.data, want.len);
		if (ASSERT_OK(read_output(&st, &got), "read"))
			ASSERT_BYTES_EQ(got.data, got.len, want.data, want.len, "both sessions");
		store_close(&st);
	}
	/* the auditor reads what was wrapped to it, and hears about the rest */
	remove_kek_and_index();
	if (ASSERT_OK(open_auditor(&st, &a), "the auditor's copy")) {
		ASSERT_EQ(q_int(&st, "SELECT count(*) FROM chunks"), 3, "only the new chunks");
		store_close(&st);
	}
	buf_free(&got);
	buf_free(&want);
}

TEST(auditor_header_changes_detected)
{
	struct verify_opts vo = {0};
	struct verify_result r;
	struct keypair a;
	struct store st;
	char kek_copy[1400];
	uint32_t nseg;

	if (!keypair(&a) || !ASSERT_OK(open_writer(&st, STORE_AUDITOR_SET, a.pk, false), "create"))
		return;
	st.seg_rotate_bytes = 1000;
	ASSERT_OK(write_session(&st, 20), "write");
	nseg = st.seg_no;
	store_close(&st);
	ASSERT_GT(nseg, 3, "segments");
	snprintf(kek_copy, sizeof(kek_copy), "cp -p %s %s/kek.copy", store_file("keys/kek"),
		 test_dir());
	ASSERT_OK(system(kek_copy), "keep a copy of the kek");

	/* segment 2's wrap and segment 3's auditor key: verify sees both (chain) */
	ASSERT_OK(poke_xor(seg_path(2), SEG_AUDITOR_WRAP + AUDITOR_KEY_LEN + 20, 0x01),
		  "flip a bit of the wrapped key");
	if (ASSERT_OK(store_verify(store_dir(), &vo, &r), "verify")) {
		ASSERT_FALSE(r.ok, "a changed wrap breaks the chain");
		ASSERT_TRUE(strstr(r.file, "seg-00000002") != NULL, r.file);
	}
	ASSERT_OK(poke_xor(seg_path(3), SEG_AUDITOR_PK, 0x40), "change the auditor key");
	remove_kek_and_index();
	if (ASSERT_OK(open_auditor(&st, &a), "the auditor reads what is intact")) {
		long long chunks = q_int(&st, "SELECT count(*) FROM chunks");
		long long seg2 = q_int(&st, "SELECT count(*) FROM chunks WHERE segment IN (2, 3)");

		ASSERT_GT(chunks, 0, "chunks from intact segments");
		ASSERT_EQ(seg2, 0, "none from the changed ones");
		store_close(&st);
	}
	/* the KEK wrap does not cover the auditor's: the store's key still reads them */
	snprintf(kek_copy, sizeof(kek_copy), "cp -p %s/kek.copy %s", test_dir(),
		 store_file("keys/kek"));
	ASSERT_OK(system(kek_copy), "the kek back");
	{
		struct store_options o = {0};

		if (ASSERT_OK(store_open_with(&st, store_dir(), STORE_FRESH_INDEX, &o),
			      "read with keys/kek, fresh index")) {
			ASSERT_EQ(q_int(&st, "SELECT count(*) FROM chunks"), 20, "every chunk");
			store_close(&st);
		}
	}
	/* a header byte under both AADs (creation time): neither key opens it */
	ASSERT_OK(poke_xor(seg_path(4), 41, 0x01), "change the creation time");
	if (ASSERT_OK(store_open_with(&st, store_dir(), STORE_FRESH_INDEX, NULL), "kek reader")) {
		ASSERT_EQ(q_int(&st, "SELECT count(*) FROM chunks WHERE segment = 4"), 0,
			  "kek: segment 4 unreadable");
		store_close(&st);
	}
	unlink(store_file("keys/kek"));
	if (ASSERT_OK(open_auditor(&st, &a), "auditor reader")) {
		ASSERT_EQ(q_int(&st, "SELECT count(*) FROM chunks WHERE segment = 4"), 0,
			  "auditor: segment 4 unreadable");
		store_close(&st);
	}
}

/* A copy with its keys/kek but without its index: readers index it afresh. */
TEST(auditor_reader_without_index_indexes_afresh)
{
	struct buf got = {0}, want = {0};
	struct store st;

	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		return;
	ASSERT_OK(write_session(&st, 5), "write");
	store_close(&st);
	unlink(store_file("index.sqlite"));
	unlink(store_file("index.sqlite-wal"));
	unlink(store_file("index.sqlite-shm"));
	if (ASSERT_OK(store_open(&st, store_dir(), 0), "read-only open without an index")) {
		expected_output(&want, 0, 5);
		if (ASSERT_OK(read_output(&st, &got), "read"))
			ASSERT_BYTES_EQ(got.data, got.len, want.data, want.len, "output");
		store_close(&st);
	}
	ASSERT_EQ(access(store_file("index.sqlite"), F_OK), -1, "the reader wrote no index");
	/* without the kek too: nothing opens, and the open says so */
	unlink(store_file("keys/kek"));
	ASSERT_EQ(store_open(&st, store_dir(), 0), -ENOKEY, "no index, no key");
	buf_free(&got);
	buf_free(&want);
}

/* A record larger than the rotation size goes into the empty v3 segment, as into a v2 one. */
TEST(auditor_big_record_fills_an_empty_v3_segment)
{
	uint8_t big[2000];
	struct buf rec = {0};
	struct keypair a;
	struct store st;

	memset(big, 'x', sizeof(big));
	if (!keypair(&a) || !ASSERT_OK(open_writer(&st, STORE_AUDITOR_SET, a.pk, false), "create"))
		return;
	st.seg_rotate_bytes = 300;
	ASSERT_EQ(st.seg_size, SEG_HEADER_V3_LEN, "a new segment holds its v3 header");
	for (int i = 0; i < 2; i++) {
		uint32_t before = st.seg_no;

		ASSERT_OK(rec_begin(&rec, REC_TTY, SESSION, 1, 1), "rec_begin");
		ASSERT_OK(rec_add_bytes(&rec, TAG_DATA, big, sizeof(big)), "data");
		ASSERT_OK(store_append(&st, &rec), "append");
		ASSERT_EQ(st.seg_no, before + (i ? 1 : 0),
			  i ? "the next one rotates" : "the first stays in the empty segment");
	}
	store_close(&st);
	buf_free(&rec);
}
