/*
 * The store's keys and the closing of signing epochs (store.h; the design
 * is in docs/SEALING.md).
 *
 *   DIR/keys/kek        32 random bytes: wraps every segment's data key
 *   DIR/keys/epoch      u32 epoch || Ed25519 secret || public: the key that
 *                       signs the current epoch, replaced at each close
 *   DIR/keys/first.pub  store id and the first public key: pin it
 *   DIR/checkpoints/latest  the last signed checkpoint (C2SP signed note)
 *   DIR/resume          where the chain and tree stood at the last close
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "store/store.h"

#define EPOCH_FILE_LEN (4 + SEAL_KEY_LEN + SEAL_PK_LEN)

static char *store_path(const struct store *st, const char *name)
{
	char *p;

	return asprintf(&p, "%s/%s", st->dir, name) < 0 ? NULL : p;
}

static int read_exact(const char *path, uint8_t *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), err = 0;
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len);
	if (n != (ssize_t)len)
		err = n < 0 ? -errno : -EINVAL;
	close(fd);
	return err;
}

/*
 * Write a root-only file so that it is either old or new after a crash;
 * durable: on the disk when this returns, not only in the page cache.
 */
/* Make a rename or unlink of path durable: fsync the directory it is in. */
static void sync_parent(const char *path)
{
	char dir[4200], *slash;
	int fd;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		return;
	*slash = 0;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

static int write_replace(const char *path, const void *data, size_t len, bool durable)
{
	char tmp[4200];
	int fd, err = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write_all(fd, data, len) || (durable && fsync(fd)))
		err = -errno;
	close(fd);
	if (!err && rename(tmp, path))
		err = -errno;
	if (!err && durable)
		sync_parent(path);
	return err;
}

static int write_atomic(const char *path, const void *data, size_t len)
{
	return write_replace(path, data, len, true);
}

static void read_boot_id(uint8_t out[16])
{
	char text[64] = {0}, hex[33];
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
	size_t j = 0;

	memset(out, 0, 16);
	if (!f)
		return;
	if (fgets(text, sizeof(text), f))
		for (size_t i = 0; text[i] && j < 32; i++)
			if (text[i] != '-' && text[i] != '\n')
				hex[j++] = text[i];
	fclose(f);
	hex[j] = 0;
	if (j == 32)
		hex_decode(hex, out, 16);
}

int store_load_keys(struct store *st, bool create)
{
	char *dir = store_path(st, "keys"), *kek = store_path(st, "keys/kek");
	char *epoch = store_path(st, "keys/epoch"), *first = store_path(st, "keys/first.pub");
	int err = 0;

	if (!dir || !kek || !epoch || !first) {
		err = -ENOMEM;
		goto out;
	}
	read_boot_id(st->boot_id);
	if (create && mkdir(dir, 0700) && errno != EEXIST) {
		err = -errno;
		log_error("store %s: cannot create %s: %s", st->dir, dir, strerror(errno));
		goto out;
	}
	err = read_exact(kek, st->kek, SEAL_KEY_LEN);
	if (err == -ENOENT && create) {
		if (RAND_bytes(st->kek, SEAL_KEY_LEN) != 1)
			err = -EIO;
		else
			err = write_atomic(kek, st->kek, SEAL_KEY_LEN);
	}
	st->have_kek = err == 0;
	if (err && err != -EACCES && err != -ENOENT) {
		log_error("%s: %s", kek, err == -EINVAL ? "not a 32-byte key" : strerror(-err));
		goto out;
	}
	err = 0;
	if (create && access(epoch, F_OK)) {
		uint8_t buf[EPOCH_FILE_LEN] = {0};
		char pkhex[2 * SEAL_PK_LEN + 1], idhex[ST_ID_HEX], text[256];

		err = seal_keygen(buf + 4, buf + 4 + SEAL_KEY_LEN);
		err = err ?: write_atomic(epoch, buf, sizeof(buf));
		hex_encode(buf + 4 + SEAL_KEY_LEN, SEAL_PK_LEN, pkhex);
		hex_encode(st->id, ST_ID_LEN, idhex);
		snprintf(text, sizeof(text), "store %s\nfirst-key %s\n", idhex, pkhex);
		err = err ?: write_atomic(first, text, strlen(text));
		if (!err)
			chmod(first, 0644);
		OPENSSL_cleanse(buf, sizeof(buf));
		if (!err)
			log_info("store %s created; for the auditor to pin: store %s first-key %s"
				 " (also in %s)",
				 st->dir, idhex, pkhex, first);
	}
out:
	free(dir);
	free(kek);
	free(epoch);
	free(first);
	return err;
}

/* The first public key in a keys/first.pub ("store ID\nfirst-key HEX\n"). */
static int read_first_key(const char *path, uint8_t pk[SEAL_PK_LEN])
{
	char text[256], hex[2 * SEAL_PK_LEN + 1];

	if (read_text_file(path, text, sizeof(text)) ||
	    sscanf(text, "store %*32s\nfirst-key %64s", hex) != 1)
		return -EINVAL;
	return hex_decode(hex, pk, SEAL_PK_LEN);
}

int store_load_epoch(struct store *st, uint32_t next_epoch, const uint8_t next_pk[SEAL_PK_LEN])
{
	char *path = store_path(st, "keys/epoch"), *next = store_path(st, "keys/epoch.next");
	char *firstpub = store_path(st, "keys/first.pub");
	uint8_t buf[EPOCH_FILE_LEN];
	int err;

	if (!path || !next || !firstpub) {
		err = -ENOMEM;
		goto out;
	}
	/* a crash between writing the last epoch record and replacing the key */
	if (next_epoch && read_exact(next, buf, sizeof(buf)) == 0 && get_be32(buf) == next_epoch &&
	    !memcmp(buf + 4 + SEAL_KEY_LEN, next_pk, SEAL_PK_LEN)) {
		err = write_atomic(path, buf, sizeof(buf));
		if (err)
			goto out;
	}
	unlink(next);
	err = read_exact(path, buf, sizeof(buf));
	if (err) {
		log_error("store %s: cannot read the signing key %s: %s", st->dir, path,
			  strerror(-err));
		goto out;
	}
	if (!next_epoch) {
		/* no seal in the log yet: the key must be the store's first, as pinned */
		uint8_t first[SEAL_PK_LEN];

		if (read_first_key(firstpub, first) ||
		    memcmp(first, buf + 4 + SEAL_KEY_LEN, SEAL_PK_LEN)) {
			log_error("store %s: %s does not hold the first key of %s: records written"
				  " now could not be verified against the pinned key",
				  st->dir, path, firstpub);
			err = -EKEYREJECTED;
			goto out;
		}
	}
	if (get_be32(buf) != next_epoch ||
	    (next_epoch && memcmp(buf + 4 + SEAL_KEY_LEN, next_pk, SEAL_PK_LEN))) {
		log_error("store %s: the signing key in %s is for epoch %u but the log's last seal"
			  " hands over to epoch %u: records written now could not be verified;"
			  " restore the matching keys/epoch or start a new store",
			  st->dir, path, get_be32(buf), next_epoch);
		err = -EKEYREJECTED;
		goto out;
	}
	st->epoch = next_epoch;
	memcpy(st->epoch_sk, buf + 4, SEAL_KEY_LEN);
	memcpy(st->epoch_pk, buf + 4 + SEAL_KEY_LEN, SEAL_PK_LEN);
	st->epoch_records = 0;
	st->epoch_start_ns = clock_ns(CLOCK_MONOTONIC);
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	free(path);
	free(next);
	free(firstpub);
	return err;
}

int store_keys_report(const char *dir, struct keys_report *r)
{
	static const char *const names[] = {"keys", "keys/kek", "keys/epoch", "keys/first.pub"};
	char path[4200], text[256];
	uint8_t epoch[EPOCH_FILE_LEN], h[SEG_HEADER_MAX];
	uint32_t hlen;
	struct stat sb;
	int fd, err;

	memset(r, 0, sizeof(*r));
	snprintf(path, sizeof(path), "%s/store-id", dir);
	err = read_text_file(path, text, sizeof(text));
	text[strcspn(text, "\n")] = 0;
	if (err || hex_decode(text, r->id, ST_ID_LEN))
		return err ?: -EINVAL;
	for (unsigned i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		r->files[i].name = names[i];
		if (!lstat(path, &sb)) {
			r->files[i].exists = true;
			r->files[i].mode = sb.st_mode & 07777;
			r->files[i].uid = sb.st_uid;
		}
	}
	snprintf(path, sizeof(path), "%s/keys/first.pub", dir);
	r->have_first = !read_first_key(path, r->first_pk);
	snprintf(path, sizeof(path), "%s/keys/epoch", dir);
	if (!read_exact(path, epoch, sizeof(epoch))) {
		r->have_epoch = true;
		r->epoch = get_be32(epoch);
		memcpy(r->epoch_pk, epoch + 4 + SEAL_KEY_LEN, SEAL_PK_LEN);
	}
	OPENSSL_cleanse(epoch, sizeof(epoch));
	/* the note's body: origin, tree size, root, "epoch N" (checkpoint_note) */
	snprintf(path, sizeof(path), "%s/checkpoints/latest", dir);
	if (!read_text_file(path, text, sizeof(text))) {
		unsigned long long size;
		unsigned ep;

		r->have_checkpoint =
		    sscanf(text, "sealtrail/%*32s\n%llu\n%*s\nepoch %u", &size, &ep) == 2;
		r->checkpoint_size = size;
		r->checkpoint_epoch = ep;
	}
	r->newest_segment = store_last_segment(dir);
	snprintf(path, sizeof(path), "%s/segments/seg-%08u.log", dir, r->newest_segment);
	fd = r->newest_segment ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	if (fd >= 0) {
		ssize_t n = pread(fd, h, sizeof(h), 0);

		if (n > 0 && !seg_header_check(h, n, r->id, r->newest_segment, &hlen) &&
		    hlen == SEG_HEADER_V3_LEN) {
			r->segment_auditor = true;
			memcpy(r->auditor_pk, h + SEG_AUDITOR_PK, AUDITOR_KEY_LEN);
		}
		close(fd);
	}
	return 0;
}

char *store_checkpoint_path(const struct store *st)
{
	return store_path(st, "checkpoints/latest");
}

static void base64(const uint8_t *in, size_t len, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, len);
}

/*
 * A C2SP signed note: origin, tree size, root, an "epoch N" extension
 * line, then the Ed25519 signature of epoch N's key over those lines.
 */
static int checkpoint_note(const struct store *st, uint64_t size, const uint8_t root[32],
			   const uint8_t sk[SEAL_KEY_LEN], const uint8_t pk[SEAL_PK_LEN],
			   struct buf *note)
{
	char idhex[ST_ID_HEX], name[64], b64root[64], b64sig[128];
	uint8_t keyid_in[64 + 1 + 1 + SEAL_PK_LEN], md[32], sigblob[4 + SEAL_SIG_LEN];
	unsigned mdlen;
	size_t n, body;
	int err;

	hex_encode(st->id, ST_ID_LEN, idhex);
	snprintf(name, sizeof(name), "sealtrail-%.16s", idhex);
	base64(root, 32, b64root);
	note->len = 0;
	buf_addf(note, "sealtrail/%s\n%llu\n%s\nepoch %u\n", idhex, (unsigned long long)size,
		 b64root, st->epoch);
	body = note->len;
	/* key id: SHA-256(name || "\n" || 0x01 || public key)[:4], 0x01 = Ed25519 */
	n = strlen(name);
	memcpy(keyid_in, name, n);
	keyid_in[n] = '\n';
	keyid_in[n + 1] = 1;
	memcpy(keyid_in + n + 2, pk, SEAL_PK_LEN);
	EVP_Digest(keyid_in, n + 2 + SEAL_PK_LEN, md, &mdlen, EVP_sha256(), NULL);
	memcpy(sigblob, md, 4);
	err = seal_sign(sk, note->data, body, sigblob + 4);
	if (err)
		return err;
	base64(sigblob, sizeof(sigblob), b64sig);
	return buf_addf(note, "\n\u2014 %s %s\n", name, b64sig);
}

static void write_checkpoint(struct store *st, uint64_t size, const struct buf *note)
{
	char *dir = store_path(st, "checkpoints"), *path = store_checkpoint_path(st);

	if (dir && mkdir(dir, 0755) && errno != EEXIST)
		log_warn("store %s: cannot create %s: %s", st->dir, dir, strerror(errno));
	if (path && write_atomic(path, note->data, note->len))
		log_warn("store %s: cannot write the checkpoint %s", st->dir, path);
	if (path)
		chmod(path, 0644);
	if (st->sinks)
		sinks_send(st->sinks, st->id, st->epoch, size, note);
	free(dir);
	free(path);
}

int store_seal_epoch(struct store *st, const char *reason)
{
	uint8_t root[SEAL_HASH_LEN], sig[SEAL_SIG_LEN], next[EPOCH_FILE_LEN];
	char *path = store_path(st, "keys/epoch"), *next_path = store_path(st, "keys/epoch.next");
	struct buf msg = {0}, rec = {0}, note = {0};
	uint64_t size = st->tree.size;
	struct merkle signed_tree = st->tree;
	int err;

	if (st->seg_fd < 0 || !path || !next_path) {
		err = st->seg_fd < 0 ? -EBADF : -ENOMEM;
		goto out;
	}
	merkle_root(&st->tree, root);
	put_be32(next, st->epoch + 1);
	err = seal_keygen(next + 4, next + 4 + SEAL_KEY_LEN);
	if (err)
		goto out;
	seal_epoch_message(st->id, st->epoch, size, root, next + 4 + SEAL_KEY_LEN, &msg);
	err = seal_sign(st->epoch_sk, msg.data, msg.len, sig);
	err = err ?: checkpoint_note(st, size, root, st->epoch_sk, st->epoch_pk, &note);
	/* the next key is durable before the record that certifies it */
	err = err ?: write_atomic(next_path, next, sizeof(next));
	err = err
		  ?: rec_begin(&rec, REC_EPOCH, NULL, clock_ns(CLOCK_REALTIME),
			       clock_ns(CLOCK_BOOTTIME));
	err = err ?: rec_add_u64(&rec, TAG_EPOCH, st->epoch);
	err = err ?: rec_add_u64(&rec, TAG_TREE_SIZE, size);
	err = err ?: rec_add_bytes(&rec, TAG_ROOT, root, sizeof(root));
	err = err ?: rec_add_bytes(&rec, TAG_NEXT_PK, next + 4 + SEAL_KEY_LEN, SEAL_PK_LEN);
	err = err ?: rec_add_bytes(&rec, TAG_SIGNATURE, sig, sizeof(sig));
	err = err ?: rec_add_str(&rec, TAG_REASON, reason);
	err = err ?: store_append_plain(st, &rec);
	err = err ?: store_sync(st);
	if (err) {
		log_error("store %s: closing epoch %u failed: %s", st->dir, st->epoch,
			  strerror(-err));
		goto out;
	}
	write_checkpoint(st, size, &note);
	store_save_resume(st, &signed_tree, st->epoch + 1, next + 4 + SEAL_KEY_LEN);
	/* erase this epoch's key: from now on nobody can sign for it */
	if (rename(next_path, path))
		log_error("store %s: cannot replace %s: %s", st->dir, path, strerror(errno));
	OPENSSL_cleanse(st->epoch_sk, sizeof(st->epoch_sk));
	st->epoch++;
	memcpy(st->epoch_sk, next + 4, SEAL_KEY_LEN);
	memcpy(st->epoch_pk, next + 4 + SEAL_KEY_LEN, SEAL_PK_LEN);
	st->epoch_records = 0;
	st->epoch_start_ns = clock_ns(CLOCK_MONOTONIC);
out:
	OPENSSL_cleanse(next, sizeof(next));
	buf_free(&msg);
	buf_free(&rec);
	buf_free(&note);
	free(path);
	free(next_path);
	return err;
}

/* ---- DIR/resume ------------------------------------------------------ */

static const char resume_magic[24] = "sealtrail-resume v1";

/*
 * Layout (big-endian): magic[24], store id, seg_no u32, last_off u64,
 * seg_end u64, last_seq u64, prev_hash, next_epoch u32, next_pk, tree size
 * u64, the 64 frontier hashes, then SHA-256 of all that.
 */
int store_resume_parse(const uint8_t *p, size_t len, const uint8_t id[ST_ID_LEN],
		       struct store_resume *r, char why[128])
{
	uint8_t md[SEAL_HASH_LEN];
	unsigned mdlen = 0;

	if (len != STORE_RESUME_LEN) {
		snprintf(why, 128, "%zu bytes, not %d", len, STORE_RESUME_LEN);
		return -EINVAL;
	}
	if (memcmp(p, resume_magic, sizeof(resume_magic))) {
		snprintf(why, 128, "not a resume file (magic)");
		return -EINVAL;
	}
	if (!EVP_Digest(p, len - SEAL_HASH_LEN, md, &mdlen, EVP_sha256(), NULL) ||
	    memcmp(md, p + len - SEAL_HASH_LEN, SEAL_HASH_LEN)) {
		snprintf(why, 128, "checksum does not match (damaged or cut)");
		return -EBADMSG;
	}
	p += sizeof(resume_magic);
	if (memcmp(p, id, ST_ID_LEN)) {
		snprintf(why, 128, "from another store");
		return -EINVAL;
	}
	p += ST_ID_LEN;
	memset(r, 0, sizeof(*r));
	r->seg_no = get_be32(p);
	r->last_off = get_be64(p + 4);
	r->seg_end = get_be64(p + 12);
	r->last_seq = get_be64(p + 20);
	p += 28;
	memcpy(r->prev_hash, p, SEAL_HASH_LEN);
	p += SEAL_HASH_LEN;
	r->next_epoch = get_be32(p);
	memcpy(r->next_pk, p + 4, SEAL_PK_LEN);
	p += 4 + SEAL_PK_LEN;
	r->tree.size = get_be64(p);
	memcpy(r->tree.frontier, p + 8, sizeof(r->tree.frontier));
	/* the tree an epoch record signs holds the envelopes before it: fewer than its seq */
	if (!r->seg_no || r->last_off >= r->seg_end || r->seg_end - r->last_off > SEAL_MAX_LEN ||
	    !r->last_seq || r->tree.size >= r->last_seq || r->tree.size >= 1ull << 62) {
		snprintf(why, 128, "impossible position (segment %u, bytes %llu-%llu, seq %llu)",
			 r->seg_no, (unsigned long long)r->last_off, (unsigned long long)r->seg_end,
			 (unsigned long long)r->last_seq);
		return -EINVAL;
	}
	return 0;
}

int store_save_resume(const struct store *st, const struct merkle *signed_tree, uint32_t next_epoch,
		      const uint8_t next_pk[SEAL_PK_LEN])
{
	uint8_t out[STORE_RESUME_LEN], *p = out;
	char *path = store_path(st, "resume");
	unsigned mdlen = 0;
	int err;

	if (!path)
		return -ENOMEM;
	memcpy(p, resume_magic, sizeof(resume_magic));
	p += sizeof(resume_magic);
	memcpy(p, st->id, ST_ID_LEN);
	p += ST_ID_LEN;
	put_be32(p, st->seg_no);
	put_be64(p + 4, st->last_off);
	put_be64(p + 12, st->seg_size);
	put_be64(p + 20, st->next_seq - 1);
	p += 28;
	memcpy(p, st->prev_hash, SEAL_HASH_LEN);
	p += SEAL_HASH_LEN;
	put_be32(p, next_epoch);
	memcpy(p + 4, next_pk, SEAL_PK_LEN);
	p += 4 + SEAL_PK_LEN;
	put_be64(p, signed_tree->size);
	memcpy(p + 8, signed_tree->frontier, sizeof(signed_tree->frontier));
	p += 8 + sizeof(signed_tree->frontier);
	EVP_Digest(out, p - out, p, &mdlen, EVP_sha256(), NULL);
	/*
	 * Not synced: the log it points into is (store_sync ran before), and
	 * a resume file lost in a crash only costs the next start a full read.
	 */
	err = write_replace(path, out, sizeof(out), false);
	if (err)
		log_warn("store %s: cannot write %s: %s; the next start reads the whole log",
			 st->dir, path, strerror(-err));
	free(path);
	return err;
}

int store_load_resume(const struct store *st, struct store_resume *r)
{
	char *path = store_path(st, "resume"), why[128];
	struct buf b = {0};
	int err;

	if (!path)
		return -ENOMEM;
	err = buf_read_file(&b, path, STORE_RESUME_LEN + 1);
	if (err && err != -ENOENT)
		snprintf(why, sizeof(why), "%s", err == -EFBIG ? "too long" : strerror(-err));
	else if (!err)
		err = store_resume_parse(b.data, b.len, st->id, r, why);
	if (err && err != -ENOENT)
		log_warn("store %s: %s: %s; reading the whole log instead", st->dir, path, why);
	buf_free(&b);
	free(path);
	return err;
}

void store_drop_resume(const struct store *st)
{
	char *path = store_path(st, "resume");

	if (!path)
		return;
	if (!unlink(path))
		sync_parent(path);
	else if (errno != ENOENT)
		log_warn("store %s: cannot remove %s: %s", st->dir, path, strerror(errno));
	free(path);
}
