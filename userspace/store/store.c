/* The embedded store: segments of records plus the SQLite index (store.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "store/store.h"

#define WBUF_FLUSH_BYTES (1u << 20)

/* The reader's last auditor unwrap: an X25519 agreement per record is slow. */
struct store_key_cache {
	uint32_t seg_no; /* 0: empty */
	uint8_t header[SEG_HEADER_V3_LEN];
	uint8_t key[SEAL_KEY_LEN];
};

static char *path_join(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

char *store_segment_path(const struct store *st, uint32_t seg_no)
{
	char *p;

	if (asprintf(&p, "%s/segments/seg-%08u.log", st->dir, seg_no) < 0)
		return NULL;
	return p;
}

static int mkdir_p(const char *dir, mode_t mode)
{
	char tmp[4096];

	if (snprintf(tmp, sizeof(tmp), "%s", dir) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

static int read_store_id(struct store *st, bool create)
{
	char *path = path_join(st->dir, "store-id");
	char hex[ST_ID_HEX + 1] = {0};
	int fd, err = 0;
	ssize_t n;

	if (!path)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && create) {
		if (RAND_bytes(st->id, ST_ID_LEN) != 1) {
			err = -EIO;
			goto out;
		}
		hex_encode(st->id, ST_ID_LEN, hex);
		hex[2 * ST_ID_LEN] = '\n';
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0 || write_all(fd, hex, 2 * ST_ID_LEN + 1) || fsync(fd)) {
			err = -errno;
			log_error("store %s: cannot write %s: %s", st->dir, path, strerror(errno));
		}
		goto out;
	}
	if (fd < 0) {
		err = -errno;
		log_error("%s: %s: is %s a sealtrail store? (sealtraild creates it on first start)",
			  path, strerror(errno), st->dir);
		goto out;
	}
	n = read(fd, hex, 2 * ST_ID_LEN + 1);
	if (n < 2 * ST_ID_LEN) {
		err = -EINVAL;
	} else {
		hex[2 * ST_ID_LEN] = 0;
		err = hex_decode(hex, st->id, ST_ID_LEN);
	}
	if (err)
		log_error("%s: not a 32-digit hex store id", path);
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return err;
}

static int seg_filter(const struct dirent *d)
{
	unsigned n;
	char tail;

	return sscanf(d->d_name, "seg-%8u.lo%c", &n, &tail) == 2 && tail == 'g';
}

uint32_t store_last_segment(const char *store_dir)
{
	struct dirent **list;
	char *dir = path_join(store_dir, "segments");
	uint32_t last = 0;
	int n;

	n = dir ? scandir(dir, &list, seg_filter, alphasort) : -1;
	for (int i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(list[i]->d_name, "seg-%8u", &v) == 1 && v > last)
			last = v;
		free(list[i]);
	}
	if (n >= 0)
		free(list);
	free(dir);
	return last;
}

static int flush_wbuf(struct store *st)
{
	size_t done = 0;
	int err = 0;

	while (done < st->wbuf.len) {
		ssize_t n = write(st->seg_fd, st->wbuf.data + done, st->wbuf.len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : -EIO;
			break;
		}
		done += n;
		st->unsynced = true;
	}
	/* keep only what is not on disk yet: a retry must not write bytes twice */
	memmove(st->wbuf.data, st->wbuf.data + done, st->wbuf.len - done);
	st->wbuf.len -= done;
	if (err)
		log_error("store %s: writing segment %u failed: %s (%zu bytes kept to retry)",
			  st->dir, st->seg_no, strerror(-err), st->wbuf.len);
	return err;
}

/* Length of the headers this writer writes: v3 with an auditor key, else v2. */
static uint32_t writer_header_len(const struct store *st)
{
	return st->auditor ? SEG_HEADER_V3_LEN : SEG_HEADER_LEN;
}

static int open_segment(struct store *st, uint32_t seg_no)
{
	char *path = store_segment_path(st, seg_no);
	uint8_t h[SEG_HEADER_MAX] = {0};
	uint32_t hlen = writer_header_len(st);
	int err;

	if (!path)
		return -ENOMEM;
	if (!st->have_kek) {
		free(path);
		return -ENOKEY;
	}
	st->seg_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
	if (st->seg_fd < 0) {
		err = -errno;
		log_error("store: cannot create segment %s: %s", path, strerror(errno));
		free(path);
		return err;
	}
	free(path);
	memcpy(h, st->auditor ? SEG_MAGIC_V3 : SEG_MAGIC, 8);
	put_be32(h + 8, st->auditor ? SEG_VERSION_V3 : SEG_VERSION);
	put_be32(h + 12, hlen);
	memcpy(h + 16, st->id, ST_ID_LEN);
	put_be64(h + 32, seg_no);
	put_be64(h + 40, clock_ns(CLOCK_REALTIME));
	/* a fresh key per segment, wrapped under the store's key-encryption key */
	if (RAND_bytes(st->dk, SEAL_KEY_LEN) != 1)
		return -EIO;
	err = seal_wrap(st->kek, st->dk, h, SEG_HEADER_AAD, h + SEG_HEADER_AAD);
	/* and to the auditor, whose private key is not on this host */
	if (!err && st->auditor) {
		memcpy(h + SEG_AUDITOR_PK, st->auditor_pk, AUDITOR_KEY_LEN);
		err = auditor_wrap(st->auditor_pk, st->id, seg_no, st->dk, h, SEG_HEADER_AAD,
				   h + SEG_AUDITOR_WRAP);
	}
	if (err)
		return err;
	st->seg_no = seg_no;
	st->seg_size = hlen;
	seal_chain_header(st->prev_hash, h, hlen);
	/*
	 * Written at once, not with the next record: a crash leaves a segment
	 * without its header only in the instant after it was created (which
	 * recovery and verify then take for a torn tail).
	 */
	err = buf_add(&st->wbuf, h, hlen);
	return err ?: flush_wbuf(st);
}

int seg_header_check(const uint8_t *h, size_t avail, const uint8_t id[ST_ID_LEN], uint32_t seg_no,
		     uint32_t *len)
{
	bool v2 = avail >= SEG_HEADER_LEN && !memcmp(h, SEG_MAGIC, 8) &&
		  get_be32(h + 8) == SEG_VERSION && get_be32(h + 12) == SEG_HEADER_LEN;
	bool v3 = avail >= SEG_HEADER_V3_LEN && !memcmp(h, SEG_MAGIC_V3, 8) &&
		  get_be32(h + 8) == SEG_VERSION_V3 && get_be32(h + 12) == SEG_HEADER_V3_LEN;

	if ((!v2 && !v3) || memcmp(h + 16, id, ST_ID_LEN) || get_be64(h + 32) != seg_no)
		return -EBADMSG;
	*len = v3 ? SEG_HEADER_V3_LEN : SEG_HEADER_LEN;
	return 0;
}

/* Unwrap a segment's key with the auditor's private key (readers off-host). */
static int auditor_segment_key(const struct store *st, const uint8_t *h, uint32_t hlen,
			       uint32_t seg_no, uint8_t key[SEAL_KEY_LEN], char why[128])
{
	struct store_key_cache *c = st->key_cache;
	char fp[AUDITOR_FP_LEN];

	if (hlen != SEG_HEADER_V3_LEN) {
		snprintf(why, 128,
			 "segment has no auditor wrap (written before an auditor key was set):"
			 " only keys/kek opens it");
		return -ENOKEY;
	}
	if (CRYPTO_memcmp(h + SEG_AUDITOR_PK, st->auditor_pk, AUDITOR_KEY_LEN)) {
		auditor_fingerprint(h + SEG_AUDITOR_PK, fp);
		snprintf(why, 128, "segment key is wrapped to auditor key %s, not to the one given",
			 fp);
		return -ENOKEY;
	}
	if (c && c->seg_no == seg_no && !memcmp(c->header, h, hlen)) {
		memcpy(key, c->key, SEAL_KEY_LEN);
		return 0;
	}
	if (auditor_unwrap(st->auditor_sk, st->auditor_pk, st->id, seg_no, h + SEG_AUDITOR_WRAP, h,
			   SEG_HEADER_AAD, key)) {
		snprintf(why, 128,
			 "segment key does not unwrap with the auditor key (header altered?)");
		return -EBADMSG;
	}
	if (c) {
		c->seg_no = seg_no;
		memcpy(c->header, h, hlen);
		memcpy(c->key, key, SEAL_KEY_LEN);
	}
	return 0;
}

/*
 * Check a segment header and unwrap its key (key may be NULL: check only);
 * hlen: the header's length.
 */
static int segment_header(const struct store *st, const uint8_t *h, size_t len, uint32_t seg_no,
			  uint8_t key[SEAL_KEY_LEN], uint32_t *hlen, char why[128])
{
	if (seg_header_check(h, len, st->id, seg_no, hlen)) {
		snprintf(why, 128, "bad segment header (magic, version, store id or number)");
		return -EBADMSG;
	}
	if (!key)
		return 0;
	if (st->have_auditor_sk)
		return auditor_segment_key(st, h, *hlen, seg_no, key, why);
	if (!st->have_kek) {
		snprintf(why, 128,
			 "no key to open it (DIR/keys/kek is root's: run as root, or pass"
			 " --auditor-key)");
		return -ENOKEY;
	}
	if (seal_unwrap(st->kek, h + SEG_HEADER_AAD, h, SEG_HEADER_AAD, key)) {
		snprintf(why, 128, "segment key does not unwrap (wrong or replaced keys/kek?)");
		return -EBADMSG;
	}
	return 0;
}

struct recover_state {
	struct store *st;
	uint64_t index_seq;
	uint64_t max_seq;
	uint64_t applied;
	uint32_t next_epoch; /* the epoch after the last epoch record */
	uint8_t next_pk[SEAL_PK_LEN];
	uint32_t newest_seg; /* the newest segment with a good header */
	uint32_t resume_seg; /* its header is in the chain already (DIR/resume) */
	bool pinned; /* its key is wrapped to pin, an auditor's */
	uint8_t pin[AUDITOR_KEY_LEN];
	bool tail_damaged; /* damage that no envelope of the chain follows */
	bool after_damage; /* the next envelope may be the writer's gap record */
	char damage_file[512];
	uint64_t damage_off;
	uint64_t damage_bytes;
	char damage_why[128];
};

/*
 * If env is an epoch record: the epoch after it and that epoch's key, and
 * (if asked) the size and root of the tree it signs. False otherwise.
 */
static bool epoch_seal_of(const struct seal_envelope *env, uint32_t *next_epoch,
			  uint8_t next_pk[SEAL_PK_LEN], uint64_t *tree_size,
			  uint8_t root[SEAL_HASH_LEN])
{
	const struct rec_field *pk, *r = NULL;
	struct record rec;
	char why[128];
	size_t used;
	uint64_t size = 0;

	if (env->h.type != REC_EPOCH || !(env->h.flags & SEAL_PLAIN) ||
	    env->h.epoch == UINT32_MAX ||
	    rec_parse(env->payload, env->payload_len, &rec, &used, why) ||
	    !(pk = rec_field(&rec, TAG_NEXT_PK)) || pk->len != SEAL_PK_LEN)
		return false;
	if (tree_size && (!rec_u64(&rec, TAG_TREE_SIZE, &size) ||
			  !(r = rec_field(&rec, TAG_ROOT)) || r->len != SEAL_HASH_LEN))
		return false;
	*next_epoch = env->h.epoch + 1;
	memcpy(next_pk, pk->data, SEAL_PK_LEN);
	if (tree_size) {
		*tree_size = size;
		memcpy(root, r->data, SEAL_HASH_LEN);
	}
	return true;
}

/* Every envelope, in order: the chain, the tree, the epoch we are in. */
static int recover_envelope(void *arg, const struct seal_envelope *env, uint32_t seg_no UNUSED,
			    uint64_t off UNUSED)
{
	struct recover_state *rs = arg;
	struct store *st = rs->st;

	/*
	 * Only what continues the chain counts: a damaged header could claim any
	 * seq. After a torn tail the writer's gap record may skip the torn
	 * record's seq (the index had seen it), never go back.
	 */
	if (memcmp(env->h.prev_hash, st->prev_hash, SEAL_HASH_LEN) ||
	    (env->h.seq != rs->max_seq + 1 &&
	     !(rs->after_damage && env->h.type == REC_GAP && env->h.seq > rs->max_seq)))
		return -EBADMSG;
	rs->after_damage = false;
	/*
	 * Only damage at the end of the log needs a gap: in the last segment, or
	 * followed by segments without any envelope (the writer died again after
	 * starting the next segment, before its gap was written).
	 */
	rs->tail_damaged = false;
	rs->max_seq = env->h.seq;
	seal_leaf_hash(env->bytes, env->len, st->prev_hash);
	merkle_append(&st->tree, st->prev_hash);
	epoch_seal_of(env, &rs->next_epoch, rs->next_pk, NULL, NULL);
	return 0;
}

static int recover_segment(void *arg, const uint8_t *header, uint32_t seg_no)
{
	struct recover_state *rs = arg;
	uint32_t hlen = get_be32(header + 12);

	if (seg_no != rs->resume_seg)
		seal_chain_header(rs->st->prev_hash, header, hlen);
	rs->newest_seg = seg_no;
	rs->pinned = hlen == SEG_HEADER_V3_LEN;
	if (rs->pinned)
		memcpy(rs->pin, header + SEG_AUDITOR_PK, AUDITOR_KEY_LEN);
	return 0;
}

/*
 * Whose key the new segments are wrapped to. Once a store has an auditor
 * key (its newest segment is wrapped to one), a writer keeps it unless
 * told to change or drop it: a restart with a lost option or another key
 * must not quietly leave the auditor unable to read what follows.
 */
static int choose_auditor(struct store *st, const struct recover_state *rs,
			  const struct store_options *o)
{
	char pin_fp[AUDITOR_FP_LEN], fp[AUDITOR_FP_LEN];
	enum store_auditor mode = o ? o->auditor : STORE_AUDITOR_KEEP;
	bool change = o && o->auditor_change;

	if (rs->pinned)
		auditor_fingerprint(rs->pin, pin_fp);
	if (mode == STORE_AUDITOR_KEEP) {
		st->auditor = rs->pinned;
		memcpy(st->auditor_pk, rs->pin, AUDITOR_KEY_LEN);
		return 0;
	}
	if (mode == STORE_AUDITOR_NONE) {
		if (rs->pinned && !change) {
			log_error("store %s: segment %u's key is wrapped to auditor key %s;"
				  " refusing to stop: pass that key (--auditor-pubkey FILE), or"
				  " --auditor-key-change to stop wrapping to it",
				  st->dir, rs->newest_seg, pin_fp);
			return -EKEYREJECTED;
		}
		if (rs->pinned)
			log_warn("store %s: new segments are no longer wrapped to auditor key %s"
				 " (--auditor-key-change): the auditor cannot read them",
				 st->dir, pin_fp);
		st->auditor = false;
		return 0;
	}
	auditor_fingerprint(o->auditor_pk, fp);
	if (rs->pinned && memcmp(rs->pin, o->auditor_pk, AUDITOR_KEY_LEN)) {
		if (!change) {
			log_error("store %s: segment %u's key is wrapped to auditor key %s, the"
				  " key given is %s; refusing to change it without"
				  " --auditor-key-change",
				  st->dir, rs->newest_seg, pin_fp, fp);
			return -EKEYREJECTED;
		}
		log_warn("store %s: the auditor key changes from %s to %s (--auditor-key-change)",
			 st->dir, pin_fp, fp);
	} else if (!rs->pinned) {
		log_info("store %s: segment keys are wrapped to auditor key %s from segment %u on",
			 st->dir, fp, rs->newest_seg + 1);
	} else {
		log_info("store %s: segment keys are also wrapped to auditor key %s", st->dir, fp);
	}
	st->auditor = true;
	memcpy(st->auditor_pk, o->auditor_pk, AUDITOR_KEY_LEN);
	return 0;
}

static int recover_record(void *arg, const struct record *rec, uint32_t seg_no, uint64_t off)
{
	struct recover_state *rs = arg;

	rs->applied++;
	return index_apply(&rs->st->index, rec, seg_no, off);
}

static void recover_damage(void *arg, const char *file, uint64_t off, uint64_t bytes,
			   const char *why)
{
	struct recover_state *rs = arg;

	log_warn("store: %s: %s at byte offset %llu (%llu bytes kept on disk, not read);"
		 " recording continues in a new segment",
		 file, why, (unsigned long long)off, (unsigned long long)bytes);
	snprintf(rs->damage_file, sizeof(rs->damage_file), "%s", file);
	snprintf(rs->damage_why, sizeof(rs->damage_why), "%s", why);
	rs->damage_off = off;
	rs->damage_bytes = bytes;
	rs->tail_damaged = true;
	rs->after_damage = true;
}

/* Records fed to the index while it is rebuilt, committed every 10000. */
struct reindex_state {
	struct store *st;
	uint64_t records;
};

static int reindex_record(void *arg, const struct record *rec, uint32_t seg_no, uint64_t off)
{
	struct reindex_state *rs = arg;

	rs->records++;
	if (rs->records % 10000 == 0) {
		int err = index_commit(&rs->st->index);

		if (err)
			return err;
	}
	return index_apply(&rs->st->index, rec, seg_no, off);
}

static void rebuild_damage(void *arg UNUSED, const char *file UNUSED, uint64_t off UNUSED,
			   uint64_t bytes UNUSED, const char *why UNUSED)
{
	/* recovery has reported it already */
}

/*
 * The index is committed only after the log is synced, so it can know
 * records the log lacks only when synced bytes were lost anyway (a disk
 * that acknowledged a flush it did not do, a segment restored from an
 * older backup). Its rows for those records would point at nothing and its
 * counters would include them: rebuild it from what the log holds.
 */
static int rebuild_index(struct store *st, uint64_t index_seq, uint64_t log_seq)
{
	struct reindex_state rs = {.st = st};
	struct store_visitor v = {
	    .record = reindex_record, .damage = rebuild_damage, .arg = &rs, .from_seg = 1};
	int err;

	log_warn("store %s: the index has seen records up to %llu but the log ends at %llu:"
		 " records that were synced are gone from the log; rebuilding the index from it",
		 st->dir, (unsigned long long)index_seq, (unsigned long long)log_seq);
	err = index_clear(&st->index);
	err = err ?: store_scan(st, &v);
	err = err ?: index_commit(&st->index);
	if (err)
		log_error("store %s: rebuilding the index failed: %s", st->dir, strerror(-err));
	return err;
}

/*
 * A torn tail ends the log of every session that was open when the writer
 * died: what it sealed for them just before is in the torn bytes or was
 * never written. Each gets its own gap, so that its timeline and its row in
 * `sealtrail sessions` say so (how much is unknown: no lost counts).
 */
static int gap_open_sessions(struct store *st, const struct recover_state *rs)
{
	struct buf ids = {0}, rec = {0};
	char why[320];
	int err;

	snprintf(why, sizeof(why),
		 "unreadable tail of the log (a torn write after a crash or power cut?): records"
		 " of this session sealed just before it may be lost (%s)",
		 rs->damage_why);
	err = index_open_sessions(&st->index, &ids);
	for (size_t i = 0; !err && i < ids.len; i += ST_ID_LEN) {
		err = rec_begin(&rec, REC_GAP, ids.data + i, clock_ns(CLOCK_REALTIME),
				clock_ns(CLOCK_BOOTTIME));
		err = err ?: rec_add_str(&rec, TAG_REASON, why);
		err = err ?: rec_add_str(&rec, TAG_FILE, rs->damage_file);
		err = err ?: rec_add_u64(&rec, TAG_FILE_OFFSET, rs->damage_off);
		err = err ?: store_append(st, &rec);
	}
	buf_free(&rec);
	buf_free(&ids);
	return err;
}

/*
 * Does DIR/resume still describe the log: is the envelope it ends with
 * there, with its seq and its leaf hash, and is it the epoch record that
 * signs the tree and names the next key the file holds? Then the chain and
 * the tree continue from it, and only what follows it is read.
 */
static bool resume_from(struct store *st, const struct store_resume *r, struct recover_state *rs,
			struct store_visitor *v)
{
	char *path = store_segment_path(st, r->seg_no), why[128] = "", what[700] = "";
	size_t len = r->seg_end - r->last_off, used;
	struct seal_envelope env;
	uint8_t leaf[SEAL_HASH_LEN], root[SEAL_HASH_LEN], signed_root[SEAL_HASH_LEN];
	uint8_t next_pk[SEAL_PK_LEN], *bytes = malloc(len);
	uint64_t signed_size, at = r->last_off;
	uint32_t next_epoch;
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;

	if (fd < 0 || !bytes) {
		snprintf(what, sizeof(what), "segment %u: %s", r->seg_no,
			 fd < 0 ? strerror(errno) : "out of memory");
		goto out;
	}
	if (pread(fd, bytes, len, at) != (ssize_t)len) {
		snprintf(what, sizeof(what), "%s ends before byte %llu", path,
			 (unsigned long long)r->seg_end);
		goto out;
	}
	if (seal_parse(bytes, len, &env, &used, why) || used != len) {
		snprintf(what, sizeof(what), "%s, byte %llu: not the envelope it names (%s)", path,
			 (unsigned long long)at, why[0] ? why : "another length");
		goto out;
	}
	seal_leaf_hash(bytes, len, leaf);
	if (memcmp(leaf, r->prev_hash, SEAL_HASH_LEN) || env.h.seq != r->last_seq ||
	    env.h.segment != r->seg_no) {
		snprintf(what, sizeof(what), "%s, byte %llu: another envelope than it names", path,
			 (unsigned long long)at);
		goto out;
	}
	merkle_root(&r->tree, root);
	if (!epoch_seal_of(&env, &next_epoch, next_pk, &signed_size, signed_root) ||
	    next_epoch != r->next_epoch || memcmp(next_pk, r->next_pk, SEAL_PK_LEN) ||
	    signed_size != r->tree.size || memcmp(root, signed_root, SEAL_HASH_LEN)) {
		snprintf(what, sizeof(what),
			 "%s, byte %llu: the epoch record signs another tree or key", path,
			 (unsigned long long)at);
		goto out;
	}
	memcpy(st->prev_hash, r->prev_hash, SEAL_HASH_LEN);
	st->tree = r->tree;
	merkle_append(&st->tree, r->prev_hash); /* the epoch record itself */
	st->resumed_seq = r->last_seq;
	rs->max_seq = r->last_seq;
	rs->next_epoch = r->next_epoch;
	memcpy(rs->next_pk, r->next_pk, SEAL_PK_LEN);
	rs->resume_seg = r->seg_no;
	v->from_seg = r->seg_no;
	v->from_off = r->seg_end;
out:
	if (what[0])
		log_warn("store %s: resume: %s; reading the whole log instead", st->dir, what);
	if (fd >= 0)
		close(fd);
	free(bytes);
	free(path);
	return !what[0];
}

/*
 * Walk every envelope to rebuild the hash chain and the tree, bring the
 * index up to the log (it may lag by up to a second after a crash), find
 * the next sequence number and the signing epoch, and start a new segment.
 */
static int open_writer(struct store *st, const struct store_options *o)
{
	struct store_resume resume;
	struct recover_state rs = {.st = st};
	struct store_visitor v = {.record = recover_record,
				  .damage = recover_damage,
				  .arg = &rs,
				  .from_seg = 1,
				  .envelope = recover_envelope,
				  .segment = recover_segment};
	uint32_t last = store_last_segment(st->dir), index_seg;
	int err;

	err = index_last(&st->index, &rs.index_seq, &index_seg);
	if (err)
		return err;
	v.min_seq = rs.index_seq + 1;
	/*
	 * Go on from DIR/resume unless the index lags behind it (its records
	 * are before that point: read them all, as without one).
	 */
	if (last && !store_load_resume(st, &resume) && resume.last_seq <= rs.index_seq &&
	    resume.seg_no <= last)
		resume_from(st, &resume, &rs, &v);
	/*
	 * One not used must go before anything is appended: the full read may
	 * find damage before its point, and the chain then forks there. A later
	 * start must not go back to the abandoned branch.
	 */
	if (!st->resumed_seq)
		store_drop_resume(st);
	if (last) {
		err = store_scan(st, &v);
		if (err)
			return err;
	}
	if (st->resumed_seq)
		log_info(
		    "store %s: went on from %s/resume (segment %u, seq %llu), read the log after"
		    " it: up to seq %llu",
		    st->dir, st->dir, v.from_seg, (unsigned long long)st->resumed_seq,
		    (unsigned long long)rs.max_seq);
	/* a seq the index has seen is never handed out again, even if the log lost it */
	st->next_seq = (rs.max_seq > rs.index_seq ? rs.max_seq : rs.index_seq) + 1;
	if (rs.applied)
		log_info("store %s: index caught up with %llu records from the log", st->dir,
			 (unsigned long long)rs.applied);
	if (rs.index_seq > rs.max_seq) {
		err = rebuild_index(st, rs.index_seq, rs.max_seq);
		if (err)
			return err;
	}
	err = store_load_epoch(st, rs.next_epoch, rs.next_pk);
	err = err ?: choose_auditor(st, &rs, o);
	if (err)
		return err;

	/* Never append after a damaged tail and never reopen a full segment. */
	err = open_segment(st, last + 1);
	if (err)
		return err;
	if (rs.tail_damaged) {
		struct buf rec = {0};
		char why[320];

		snprintf(why, sizeof(why),
			 "unreadable tail of the log (a torn write after a crash or power"
			 " cut?): %s",
			 rs.damage_why);
		err = rec_begin(&rec, REC_GAP, NULL, clock_ns(CLOCK_REALTIME),
				clock_ns(CLOCK_BOOTTIME));
		err = err ?: rec_add_str(&rec, TAG_REASON, why);
		err = err ?: rec_add_str(&rec, TAG_FILE, rs.damage_file);
		err = err ?: rec_add_u64(&rec, TAG_FILE_OFFSET, rs.damage_off);
		err = err ?: rec_add_u64(&rec, TAG_LOST_BYTES, rs.damage_bytes);
		err = err ?: store_append(st, &rec);
		buf_free(&rec);
		err = err ?: gap_open_sessions(st, &rs);
	}
	return err ?: store_sync(st);
}

struct fresh_state {
	struct store *st;
	uint32_t opened; /* segments whose key unwrapped */
	char why[128]; /* the first reason a segment did not open */
};

static int fresh_record(void *arg, const struct record *rec, uint32_t seg_no, uint64_t off)
{
	struct fresh_state *fs = arg;

	return index_apply(&fs->st->index, rec, seg_no, off);
}

static int fresh_segment(void *arg, const uint8_t *header UNUSED, uint32_t seg_no UNUSED)
{
	struct fresh_state *fs = arg;

	fs->opened++;
	return 0;
}

static void fresh_damage(void *arg, const char *file, uint64_t off, uint64_t bytes, const char *why)
{
	struct fresh_state *fs = arg;

	if (off == 0 && !fs->why[0])
		snprintf(fs->why, sizeof(fs->why), "%s", why);
	if (off == 0)
		log_warn("%s: not read: %s", file, why);
	else
		log_warn("%s: %s at byte offset %llu; %llu bytes after it are not read", file, why,
			 (unsigned long long)off, (unsigned long long)bytes);
}

/*
 * Index every segment into a temporary database: what a copy of the store
 * says about itself (its index) is not needed, nor trusted.
 */
static int fresh_index(struct store *st)
{
	struct fresh_state fs = {.st = st};
	struct store_visitor v = {.record = fresh_record,
				  .damage = fresh_damage,
				  .arg = &fs,
				  .from_seg = 1,
				  .segment = fresh_segment};
	uint32_t last = store_last_segment(st->dir);
	int err;

	err = index_open(&st->index, NULL, true, NULL, st->id);
	err = err ?: store_scan(st, &v);
	err = err ?: index_commit(&st->index);
	if (err)
		return err;
	if (last && !fs.opened) {
		log_error("store %s: none of its %u segment%s opens%s: %s", st->dir, last,
			  last == 1 ? "" : "s", st->have_auditor_sk ? " with this auditor key" : "",
			  fs.why);
		return -ENOKEY;
	}
	if (fs.opened < last)
		log_warn("store %s: %u of %u segments read; what the others hold is missing below",
			 st->dir, fs.opened, last);
	return 0;
}

int store_open(struct store *st, const char *dir, int flags)
{
	return store_open_with(st, dir, flags, NULL);
}

int store_open_with(struct store *st, const char *dir, int flags, const struct store_options *o)
{
	char *path = NULL;
	int err;

	memset(st, 0, sizeof(*st));
	st->lock_fd = -1;
	st->seg_fd = -1;
	st->backlog.fd = -1;
	st->flags = flags;
	st->seg_rotate_bytes = SEG_ROTATE_BYTES;
	/* the auditor's private key reads; it never writes, nor does a fresh index */
	if ((flags & STORE_WRITE) && ((flags & STORE_FRESH_INDEX) || (o && o->auditor_sk)))
		return -EINVAL;
	if (o && o->auditor == STORE_AUDITOR_SET && !o->auditor_pk)
		return -EINVAL;
	st->dir = strdup(dir);
	if (!st->dir)
		return -ENOMEM;
	if (o && o->auditor_sk) {
		memcpy(st->auditor_sk, o->auditor_sk, AUDITOR_KEY_LEN);
		st->have_auditor_sk = true;
		st->key_cache = calloc(1, sizeof(*st->key_cache));
		err = st->key_cache ? auditor_public(st->auditor_sk, st->auditor_pk) : -ENOMEM;
		if (err)
			goto fail;
	}
	if (flags & STORE_CREATE) {
		char *segs = path_join(dir, "segments");

		err = mkdir_p(dir, 0700);
		if (!err && segs && mkdir(segs, 0700) && errno != EEXIST)
			err = -errno;
		free(segs);
		if (err) {
			log_error("store %s: cannot create: %s", dir, strerror(-err));
			goto fail;
		}
	}
	/* not creating it: a directory that is not a store gets no LOCK file */
	if (!(flags & STORE_CREATE)) {
		err = read_store_id(st, false);
		if (err)
			goto fail;
	}
	if (flags & STORE_WRITE) {
		path = path_join(dir, "LOCK");
		st->lock_fd = path ? open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
		if (st->lock_fd < 0 || flock(st->lock_fd, LOCK_EX | LOCK_NB)) {
			err = errno == EWOULDBLOCK ? -EBUSY : -errno;
			log_error("store %s: %s", dir,
				  err == -EBUSY
				      ? "in use by another writer (is sealtraild running?)"
				      : strerror(-err));
			goto fail;
		}
		free(path);
		path = NULL;
		if (o && o->locked)
			o->locked(o->locked_arg);
	}
	if (flags & STORE_CREATE) {
		err = read_store_id(st, flags & STORE_WRITE);
		if (err)
			goto fail;
	}
	err = store_load_keys(st, (flags & STORE_CREATE) && (flags & STORE_WRITE));
	if (err)
		goto fail;
	path = path_join(dir, "index.sqlite");
	if (!path) {
		err = -ENOMEM;
		goto fail;
	}
	/* a reader of a copy without its index: what the segments say will do */
	if (!(flags & (STORE_WRITE | STORE_FRESH_INDEX)) && access(path, F_OK) && errno == ENOENT) {
		log_info("store %s has no index.sqlite: indexing its segments into a temporary one"
			 " (`sealtrail reindex` makes a lasting one)",
			 dir);
		flags |= STORE_FRESH_INDEX;
	}
	/* nor can a reader use an index in the clear, which the writer replaces */
	if (!(flags & (STORE_WRITE | STORE_FRESH_INDEX)) && index_is_plain(path)) {
		log_info("store %s: index.sqlite is from an older sealtrail, not encrypted:"
			 " indexing the segments into a temporary index instead (sealtraild, or"
			 " `sealtrail reindex`, replaces it with an encrypted one)",
			 dir);
		flags |= STORE_FRESH_INDEX;
	}
	if (flags & STORE_FRESH_INDEX) {
		err = fresh_index(st);
		if (err)
			goto fail;
		free(path);
		return 0;
	}
	if (!st->have_kek) {
		log_error(
		    "store %s: no keys/kek to open its index with (the index is encrypted"
		    " under it; it is root's): run as root, or read a copy with --auditor-key",
		    dir);
		err = -ENOKEY;
		goto fail;
	}
	err = index_open(&st->index, path, flags & STORE_WRITE, st->kek, st->id);
	if (err)
		goto fail;
	if ((flags & STORE_WRITE) && !(flags & STORE_INDEX_ONLY)) {
		err = open_writer(st, o);
		if (err)
			goto fail;
	}
	free(path);
	return 0;
fail:
	free(path);
	store_close(st);
	return err;
}

void store_close(struct store *st)
{
	store_backlog_close(st);
	buf_free(&st->dbuf);
	if (st->seg_fd >= 0) {
		store_sync(st);
		close(st->seg_fd);
	}
	index_close(&st->index);
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	buf_free(&st->wbuf);
	buf_free(&st->sbuf);
	OPENSSL_cleanse(st->kek, sizeof(st->kek));
	OPENSSL_cleanse(st->dk, sizeof(st->dk));
	OPENSSL_cleanse(st->epoch_sk, sizeof(st->epoch_sk));
	OPENSSL_cleanse(st->auditor_sk, sizeof(st->auditor_sk));
	if (st->key_cache) {
		OPENSSL_cleanse(st->key_cache, sizeof(*st->key_cache));
		free(st->key_cache);
	}
	free(st->dir);
	memset(st, 0, sizeof(*st));
	st->lock_fd = st->seg_fd = st->backlog.fd = -1;
}

/* Seal rec (a finished record) and queue it; plain for seal records. */
static int append_sealed(struct store *st, struct buf *rec, bool plain)
{
	struct seal_header h = {0};
	struct record parsed;
	char why[128];
	uint64_t off;
	int err;

	if (st->seg_fd < 0)
		return -EBADF;
	err = rec_finish(rec, st->next_seq);
	if (err)
		return err;
	/* never write what no reader could parse: it would hide what follows */
	if (rec_parse_built(rec->data, rec->len, &parsed, why)) {
		log_error("store %s: refusing to append an invalid record: %s", st->dir, why);
		return -EINVAL;
	}
	h.type = parsed.type;
	h.flags = plain ? SEAL_PLAIN : 0;
	h.seq = st->next_seq;
	h.epoch = st->epoch;
	/*
	 * The envelope carries when it was sealed, the record inside when its
	 * event happened: records arrive out of event order (a session start is
	 * written at login), seals never go back in time within a boot.
	 */
	h.wall_ns = clock_ns(CLOCK_REALTIME);
	h.mono_ns = clock_ns(CLOCK_BOOTTIME);
	memcpy(h.boot_id, st->boot_id, sizeof(h.boot_id));
	memcpy(h.store_id, st->id, ST_ID_LEN);
	for (int pass = 0; pass < 2; pass++) {
		/* both change when a new segment starts: its header is chained in */
		h.segment = st->seg_no;
		memcpy(h.prev_hash, st->prev_hash, SEAL_HASH_LEN);
		err = seal_build(&st->sbuf, &h, rec->data, rec->len, plain ? NULL : st->dk);
		if (err)
			return err;
		if (pass || st->seg_size + st->sbuf.len <= st->seg_rotate_bytes ||
		    st->seg_size <= writer_header_len(st))
			break;
		/* rotate, then seal again: the segment number and key are in it */
		err = store_sync(st);
		if (err)
			return err;
		close(st->seg_fd);
		st->seg_fd = -1;
		err = open_segment(st, st->seg_no + 1);
		if (err)
			return err;
	}
	off = st->last_off = st->seg_size;
	err = buf_add(&st->wbuf, st->sbuf.data, st->sbuf.len);
	if (err)
		return err;
	st->seg_size += st->sbuf.len;
	seal_leaf_hash(st->sbuf.data, st->sbuf.len, st->prev_hash);
	merkle_append(&st->tree, st->prev_hash);
	st->next_seq++;
	st->epoch_records++;
	/*
	 * The record is stored: an index that cannot take it (logged) is
	 * rebuilt from the log by `sealtrail reindex`, and must not make the
	 * caller give up what comes next (a session's end, say).
	 */
	if (index_apply(&st->index, &parsed, st->seg_no, off) && !st->index_errors++)
		log_error("store %s: record seq %llu (segment %u, byte %llu) is stored but not "
			  "indexed: `sealtrail reindex` rebuilds the index from the log",
			  st->dir, (unsigned long long)h.seq, st->seg_no, (unsigned long long)off);
	if (st->wbuf.len >= WBUF_FLUSH_BYTES)
		return flush_wbuf(st);
	return 0;
}

int store_backlog_open(struct store *st, uint64_t max)
{
	int err = backlog_open(&st->backlog, max);

	if (err)
		log_error("store %s: no backlog (%s): every record is sealed at once", st->dir,
			  strerror(-err));
	return err;
}

void store_pace(struct store *st, uint64_t now_ns)
{
	const struct backlog *b = &st->backlog;
	uint64_t tick = st->appended_bytes - st->paced_bytes;
	bool burst = tick >= (st->defer ? STORE_BURST_GOES_ON_BYTES : STORE_BURST_BYTES);

	st->paced_bytes = st->appended_bytes;
	st->defer = b->max && burst && (!b->records || now_ns - b->oldest_ns < BACKLOG_MAX_AGE_NS);
}

int store_drain(struct store *st, uint64_t budget)
{
	uint64_t done = 0;
	int n, err = 0;

	while (!err && (n = backlog_take(&st->backlog, &st->dbuf)) > 0) {
		done += st->dbuf.len;
		err = append_sealed(st, &st->dbuf, false);
		if (err)
			log_error("store %s: cannot seal a record from the backlog: %s", st->dir,
				  strerror(-err));
		if (done >= budget)
			break;
	}
	return err ?: n < 0 ? n : 0;
}

int store_append(struct store *st, struct buf *rec)
{
	struct backlog *b = &st->backlog;

	st->appended_bytes += rec->len;
	/* a burst shows before the tick ends: defer from here on (store_pace) */
	if (!st->defer && b->max && !b->records &&
	    st->appended_bytes - st->paced_bytes >= STORE_BURST_BYTES)
		st->defer = true;
	if (!b->max || !(st->defer || b->records))
		return append_sealed(st, rec, false);
	/* a full backlog: seal its oldest records until this one fits (failures are logged) */
	while (b->records && !backlog_fits(b, rec->len))
		store_drain(st, 1);
	if (backlog_put(b, rec->data, rec->len) == 0)
		return 0;
	/*
	 * Cannot queue it (no memory, or larger than the limit): seal what
	 * waits, then it, to keep the order. Rare, and it may take a while:
	 * the ring buffer can overflow meanwhile, which is counted as a gap.
	 */
	store_drain(st, UINT64_MAX);
	return append_sealed(st, rec, false);
}

void store_backlog_close(struct store *st)
{
	if (st->backlog.records)
		store_drain(st, UINT64_MAX);
	backlog_close(&st->backlog);
	st->defer = false;
}

int store_append_now(struct store *st, struct buf *rec)
{
	st->appended_bytes += rec->len;
	return append_sealed(st, rec, false);
}

int store_append_plain(struct store *st, struct buf *rec)
{
	return append_sealed(st, rec, true);
}

int store_sync(struct store *st)
{
	int err;

	if (st->seg_fd < 0)
		return 0;
	err = flush_wbuf(st);
	/* an idle tick costs no flush of the disk's cache */
	if (!err && st->unsynced && fdatasync(st->seg_fd)) {
		err = -errno;
		log_error("store %s: fdatasync of segment %u failed: %s", st->dir, st->seg_no,
			  strerror(errno));
	}
	if (!err)
		st->unsynced = false;
	return err ?: index_commit(&st->index);
}

/* Open an envelope: check the tag, decrypt, parse the record inside. */
static int open_envelope(const struct seal_envelope *env, const uint8_t key[SEAL_KEY_LEN],
			 struct buf *out, struct record *rec, char why[128])
{
	size_t used;
	int err;

	if ((env->h.flags & SEAL_PLAIN) && env->h.type != REC_EPOCH) {
		/* only seals are stored in the clear: anything else was downgraded */
		snprintf(why, 128, "envelope seq %llu of type %u is unencrypted",
			 (unsigned long long)env->h.seq, env->h.type);
		return -EBADMSG;
	}
	err = seal_open(env, key, out);
	if (err) {
		snprintf(why, 128, "envelope seq %llu does not open (%s): altered or wrong key",
			 (unsigned long long)env->h.seq, err == -EBADMSG ? "tag" : strerror(-err));
		return -EBADMSG;
	}
	err = rec_parse(out->data, out->len, rec, &used, why);
	if (!err && (used != out->len || rec->seq != env->h.seq || rec->type != env->h.type)) {
		snprintf(why, 128, "record inside envelope seq %llu does not match it",
			 (unsigned long long)env->h.seq);
		err = -EBADMSG;
	}
	return err ? -EBADMSG : 0;
}

int store_read_at(const struct store *st, uint32_t seg_no, uint64_t off, struct buf *out,
		  struct record *rec)
{
	char *path = store_segment_path(st, seg_no);
	uint8_t lenbuf[4], hdr[SEG_HEADER_MAX], key[SEAL_KEY_LEN];
	struct seal_envelope env;
	struct buf raw = {0};
	char why[128];
	size_t used;
	uint32_t len, hlen;
	ssize_t n;
	int fd, err = 0;

	if (!path)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		log_error("%s: %s", path, strerror(errno));
		goto out;
	}
	n = pread(fd, hdr, sizeof(hdr), 0);
	if (n < SEG_HEADER_LEN) {
		err = -EIO;
		log_error("%s: shorter than a segment header", path);
		goto out;
	}
	if (segment_header(st, hdr, n, seg_no, key, &hlen, why)) {
		err = -EIO;
		log_error("%s: %s", path, why);
		goto out;
	}
	if (off < hlen || pread(fd, lenbuf, 4, off) != 4) {
		err = -EIO;
		log_error("%s: no record at byte offset %llu", path, (unsigned long long)off);
		goto out;
	}
	len = get_be32(lenbuf);
	if (len > SEAL_MAX_LEN || buf_reserve(&raw, len) ||
	    pread(fd, raw.data, len, off) != (ssize_t)len ||
	    seal_parse(raw.data, len, &env, &used, why)) {
		err = -EIO;
		log_error("%s: bad envelope of %u bytes at byte offset %llu", path, len,
			  (unsigned long long)off);
		goto out;
	}
	err = open_envelope(&env, key, out, rec, why);
	if (err)
		log_error("%s: byte offset %llu: %s", path, (unsigned long long)off, why);
out:
	OPENSSL_cleanse(key, sizeof(key));
	buf_free(&raw);
	if (fd >= 0)
		close(fd);
	free(path);
	return err;
}

static int scan_segment(const struct store *st, uint32_t seg_no, const struct store_visitor *v)
{
	char *path = store_segment_path(st, seg_no);
	struct record *rec = NULL;
	uint8_t *map = MAP_FAILED, key[SEAL_KEY_LEN];
	struct buf plain = {0};
	struct stat sb;
	char why[128];
	uint64_t off;
	uint32_t hlen;
	int fd, err = 0;
	bool opened = false;

	if (!path)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			v->damage(v->arg, path, 0, 0, strerror(errno));
		goto out;
	}
	if (fstat(fd, &sb) || sb.st_size < SEG_HEADER_LEN) {
		v->damage(v->arg, path, 0, sb.st_size, "segment shorter than its header");
		goto out;
	}
	map = mmap(NULL, sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	rec = malloc(sizeof(*rec));
	if (map == MAP_FAILED || !rec) {
		err = -ENOMEM;
		goto out;
	}
	/* only records that will be opened need the key */
	if (segment_header(st, map, sb.st_size, seg_no, v->record ? key : NULL, &hlen, why)) {
		v->damage(v->arg, path, 0, sb.st_size, why);
		goto out;
	}
	opened = v->record != NULL;
	if (v->segment) {
		err = v->segment(v->arg, map, seg_no);
		if (err)
			goto out;
	}
	off = seg_no == v->from_seg && v->from_off > hlen ? v->from_off : hlen;
	while (off < (uint64_t)sb.st_size) {
		struct seal_envelope env;
		size_t used;
		int rc = seal_parse(map + off, sb.st_size - off, &env, &used, why);

		if (rc) {
			v->damage(v->arg, path, off, sb.st_size - off, why);
			break;
		}
		if (v->envelope) {
			err = v->envelope(v->arg, &env, seg_no, off);
			if (err == -EBADMSG) {
				/* the visitor found it out of place: damage, not a failure */
				snprintf(why, sizeof(why),
					 "envelope seq %llu does not continue the chain",
					 (unsigned long long)env.h.seq);
				v->damage(v->arg, path, off, sb.st_size - off, why);
				err = 0;
				break;
			}
			if (err)
				break;
		}
		if (v->record && env.h.seq >= v->min_seq) {
			if (open_envelope(&env, key, &plain, rec, why)) {
				v->damage(v->arg, path, off, sb.st_size - off, why);
				break;
			}
			err = v->record(v->arg, rec, seg_no, off);
			if (err)
				break;
		}
		off += used;
	}
out:
	if (opened)
		OPENSSL_cleanse(key, sizeof(key));
	buf_free(&plain);
	free(rec);
	if (map != MAP_FAILED)
		munmap(map, sb.st_size);
	if (fd >= 0)
		close(fd);
	free(path);
	return err;
}

int store_scan(const struct store *st, const struct store_visitor *v)
{
	uint32_t last = store_last_segment(st->dir);
	int err = 0;

	for (uint32_t n = v->from_seg ? v->from_seg : 1; n <= last && !err; n++)
		err = scan_segment(st, n, v);
	return err;
}

static void reindex_damage(void *arg UNUSED, const char *file, uint64_t off, uint64_t bytes,
			   const char *why)
{
	log_warn("reindex: %s: %s at byte offset %llu; %llu bytes after it are not indexed", file,
		 why, (unsigned long long)off, (unsigned long long)bytes);
}

int store_reindex(struct store *st, uint64_t *records)
{
	struct reindex_state rs = {.st = st};
	struct store_visitor v = {
	    .record = reindex_record, .damage = reindex_damage, .arg = &rs, .from_seg = 1};
	char *path = path_join(st->dir, "index.sqlite");
	int err;

	err = path ? store_sync(st) : -ENOMEM;
	err = err ?: index_recreate(&st->index, path, st->kek, st->id);
	free(path);
	err = err ?: store_scan(st, &v);
	err = err ?: index_commit(&st->index);
	*records = rs.records;
	return err;
}
