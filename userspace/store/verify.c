/*
 * `sealtrail verify`: walks every envelope of every segment without
 * opening any, and checks strict parsing, sequence continuity, store id and
 * segment numbers, the hash chain, that each envelope's epoch is the
 * epoch being signed, time consistency within a boot, and each epoch
 * record: its tree size and root against the recomputed tree, and its
 * signature by the key the previous epoch certified, starting from the
 * pinned first key. Optionally checks a saved checkpoint against the store.
 * Reports which auditor key each segment's data key is wrapped to.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/record.h"
#include "store/seal.h"
#include "store/store.h"
#include "store/sinks.h"
#include "store/verify.h"

struct walk {
	struct verify_result *r;
	uint8_t id[ST_ID_LEN];
	uint8_t first[SEAL_PK_LEN]; /* the pinned key of epoch 0 */
	uint8_t pk[SEAL_PK_LEN]; /* key of the epoch being walked */
	uint8_t (*pks)[SEAL_PK_LEN]; /* key of every epoch, for checkpoints */
	uint32_t npks;
	uint32_t epoch;
	uint64_t next_seq;
	uint8_t prev[SEAL_HASH_LEN];
	struct merkle tree;
	bool have_time;
	uint8_t boot[16];
	uint64_t wall, mono;
	/* checkpoints to compare: the root when the tree had each of these sizes */
	uint64_t *want_sizes; /* sorted, unique */
	uint8_t (*roots)[SEAL_HASH_LEN];
	size_t nwant, next_want;
	char torn[4200]; /* a segment ended in torn bytes: the next must start with a gap */
	uint64_t torn_off;
	bool first_in_segment;
};

static bool fail(struct verify_result *r, const char *file, uint64_t off, uint64_t seq,
		 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static bool fail(struct verify_result *r, const char *file, uint64_t off, uint64_t seq,
		 const char *fmt, ...)
{
	va_list ap;

	if (!r->ok)
		return false; /* keep the first failure */
	r->ok = false;
	snprintf(r->file, sizeof(r->file), "%s", file);
	r->offset = off;
	r->seq = seq;
	va_start(ap, fmt);
	vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
	va_end(ap);
	return false;
}

static bool check_epoch(struct walk *w, const struct seal_envelope *env, const char *file,
			uint64_t off)
{
	const struct rec_field *root, *next, *sig;
	uint64_t epoch, size;
	uint8_t want[SEAL_HASH_LEN];
	struct record rec;
	struct buf msg = {0};
	char why[128];
	size_t used;
	bool ok;

	if (rec_parse(env->payload, env->payload_len, &rec, &used, why) || used != env->payload_len)
		return fail(w->r, file, off, env->h.seq, "epoch record unreadable: %s", why);
	root = rec_field(&rec, TAG_ROOT);
	next = rec_field(&rec, TAG_NEXT_PK);
	sig = rec_field(&rec, TAG_SIGNATURE);
	if (!rec_u64(&rec, TAG_EPOCH, &epoch) || !rec_u64(&rec, TAG_TREE_SIZE, &size) || !root ||
	    root->len != SEAL_HASH_LEN || !next || next->len != SEAL_PK_LEN || !sig ||
	    sig->len != SEAL_SIG_LEN || rec.seq != env->h.seq)
		return fail(w->r, file, off, env->h.seq, "epoch record lacks a field");
	if (epoch != w->epoch || env->h.epoch != w->epoch)
		return fail(w->r, file, off, env->h.seq,
			    "epoch record says epoch %llu, expected %u (epochs must follow)",
			    (unsigned long long)epoch, w->epoch);
	merkle_root(&w->tree, want);
	if (size != w->tree.size || memcmp(want, root->data, SEAL_HASH_LEN))
		return fail(w->r, file, off, env->h.seq,
			    "epoch %u signs a tree of %llu records that is not this store's"
			    " (records before it were changed, removed or added)",
			    w->epoch, (unsigned long long)size);
	seal_epoch_message(w->id, w->epoch, size, root->data, next->data, &msg);
	ok = seal_verify(w->pk, msg.data, msg.len, sig->data);
	buf_free(&msg);
	if (!ok)
		return fail(w->r, file, off, env->h.seq,
			    "epoch %u signature does not verify with the key certified for it",
			    w->epoch);
	w->r->covered = size;
	w->r->epochs++;
	w->epoch++;
	memcpy(w->pk, next->data, SEAL_PK_LEN);
	w->pks = realloc(w->pks, (w->npks + 1) * sizeof(*w->pks));
	if (!w->pks)
		return fail(w->r, file, off, env->h.seq, "out of memory");
	memcpy(w->pks[w->npks++], w->pk, SEAL_PK_LEN);
	return true;
}

static bool check_envelope(struct walk *w, const struct seal_envelope *env, uint32_t seg_no,
			   const char *file, uint64_t off)
{
	uint8_t leaf[SEAL_HASH_LEN];

	/* after a torn tail the writer's gap may skip the torn record's seq */
	if (w->first_in_segment && w->torn[0] && env->h.type == REC_GAP && env->h.seq > w->next_seq)
		w->next_seq = env->h.seq;
	if (env->h.seq != w->next_seq)
		return fail(w->r, file, off, env->h.seq,
			    "sequence %llu where %llu was due (records removed, duplicated or"
			    " reordered)",
			    (unsigned long long)env->h.seq, (unsigned long long)w->next_seq);
	if (memcmp(env->h.store_id, w->id, ST_ID_LEN))
		return fail(w->r, file, off, env->h.seq, "record of another store");
	if (env->h.segment != seg_no)
		return fail(w->r, file, off, env->h.seq, "record says segment %u, found in %u",
			    env->h.segment, seg_no);
	if (memcmp(env->h.prev_hash, w->prev, SEAL_HASH_LEN))
		return fail(w->r, file, off, env->h.seq,
			    "hash chain broken: the previous record is not the one this record"
			    " was sealed after");
	if (env->h.epoch != w->epoch)
		return fail(w->r, file, off, env->h.seq,
			    "sealed in epoch %u while epoch %u was open (re-sealed with another"
			    " epoch's key?)",
			    env->h.epoch, w->epoch);
	if (w->first_in_segment && w->torn[0] && env->h.type != REC_GAP)
		return fail(w->r, w->torn, w->torn_off, env->h.seq,
			    "bytes after the last record that no gap record acknowledges");
	w->first_in_segment = false;
	w->torn[0] = 0;
	if (w->have_time && memcmp(w->boot, env->h.boot_id, 16) && env->h.type != REC_DAEMON &&
	    env->h.type != REC_GAP)
		return fail(w->r, file, off, env->h.seq,
			    "boot id changes without a collector start (record type %u)",
			    env->h.type);
	if (w->have_time && !memcmp(w->boot, env->h.boot_id, 16)) {
		/* within one boot: monotonic time never goes back, wall time follows it */
		/* differences of u64 times: subtract unsigned (no overflow), then sign them */
		int64_t dwall = (int64_t)(env->h.wall_ns - w->wall);
		int64_t dmono = (int64_t)(env->h.mono_ns - w->mono);

		if (dmono < 0)
			return fail(w->r, file, off, env->h.seq, "monotonic clock went backwards");
		if (dwall < dmono - 1000000000ll)
			return fail(w->r, file, off, env->h.seq,
				    "wall clock moved backwards by %.3f s within one boot",
				    ((double)dmono - (double)dwall) / 1e9);
	}
	if (env->h.flags & SEAL_PLAIN) {
		if (env->h.type != REC_EPOCH)
			return fail(w->r, file, off, env->h.seq,
				    "unencrypted record of type %u: only seals are", env->h.type);
		if (!check_epoch(w, env, file, off))
			return false;
	} else if (env->h.type == REC_EPOCH) {
		return fail(w->r, file, off, env->h.seq, "encrypted epoch record");
	}
	seal_leaf_hash(env->bytes, env->len, leaf);
	merkle_append(&w->tree, leaf);
	memcpy(w->prev, leaf, SEAL_HASH_LEN);
	if (w->next_want < w->nwant && w->tree.size == w->want_sizes[w->next_want])
		merkle_root(&w->tree, w->roots[w->next_want++]);
	memcpy(w->boot, env->h.boot_id, 16);
	w->wall = env->h.wall_ns;
	w->mono = env->h.mono_ns;
	w->have_time = true;
	w->next_seq++;
	w->r->records++;
	return true;
}

/* Note whose key segment seg_no (header h of length hlen) is wrapped to. */
static void note_wrap(struct verify_result *r, const uint8_t *h, uint32_t hlen, uint32_t seg_no)
{
	struct verify_wrap *last = r->nwraps ? &r->wraps[r->nwraps - 1] : NULL;
	bool auditor = hlen == SEG_HEADER_V3_LEN;
	const uint8_t *pk = h + SEG_AUDITOR_PK;

	if (last && last->auditor == auditor &&
	    (!auditor || !memcmp(last->pk, pk, AUDITOR_KEY_LEN))) {
		last->last_seg = seg_no;
		return;
	}
	if (r->nwraps == VERIFY_MAX_WRAPS) {
		last->last_seg = seg_no;
		return;
	}
	last = &r->wraps[r->nwraps++];
	last->first_seg = last->last_seg = seg_no;
	last->auditor = auditor;
	if (auditor)
		memcpy(last->pk, pk, AUDITOR_KEY_LEN);
}

/* Shorter than the header it starts: a v2 one, or the v3 its magic announces. */
static bool header_torn(const uint8_t *map, size_t size)
{
	return size < SEG_HEADER_LEN || (size < SEG_HEADER_V3_LEN && !memcmp(map, SEG_MAGIC_V3, 8));
}

static bool walk_segment(struct walk *w, const char *path, uint32_t seg_no, bool last)
{
	struct stat sb;
	uint8_t *map = MAP_FAILED;
	uint64_t off;
	uint32_t hlen = 0;
	bool ok = true, torn_header = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &sb)) {
		ok = fail(w->r, path, 0, w->next_seq, "cannot read: %s", strerror(errno));
	} else if (sb.st_size &&
		   (map = mmap(NULL, sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
		ok = fail(w->r, path, 0, w->next_seq, "cannot map");
	} else if (!last && header_torn(map, sb.st_size)) {
		/*
		 * The writer died right after creating it: torn like a tail (its
		 * header is not in the chain), the next segment must start with a gap
		 */
		snprintf(w->torn, sizeof(w->torn), "%s", path);
		w->torn_off = 0;
		torn_header = true;
	} else if (sb.st_size < SEG_HEADER_LEN) {
		ok = fail(w->r, path, 0, w->next_seq, "shorter than a segment header");
	} else if (seg_header_check(map, sb.st_size, w->id, seg_no, &hlen)) {
		ok = fail(w->r, path, 0, w->next_seq,
			  "bad segment header (magic, version, store id or number)");
	}
	if (ok && !torn_header) {
		/* the whole header, both key wraps included, is in the chain */
		seal_chain_header(w->prev, map, hlen);
		w->first_in_segment = true;
		note_wrap(w->r, map, hlen, seg_no);
	}
	for (off = hlen; ok && !torn_header && off < (uint64_t)sb.st_size;) {
		struct seal_envelope env;
		char why[128];
		size_t used;
		int rc = seal_parse(map + off, sb.st_size - off, &env, &used, why);

		if (rc == -EAGAIN && !last) {
			/* a torn tail: the writer went on in a new segment, with a gap */
			snprintf(w->torn, sizeof(w->torn), "%s", path);
			w->torn_off = off;
			break;
		}
		if (rc) {
			ok = fail(w->r, path, off, w->next_seq, "%s", why);
			break;
		}
		ok = check_envelope(w, &env, seg_no, path, off);
		off += used;
	}
	if (map != MAP_FAILED)
		munmap(map, sb.st_size);
	if (fd >= 0)
		close(fd);
	return ok;
}

#define NOTE_MAX 4096

/* A checkpoint note's fields (a C2SP signed note, see sealing.c). */
struct note {
	char origin[128];
	unsigned long long size;
	unsigned epoch;
	uint8_t root[64];
	uint8_t sig[128]; /* key id (4), Ed25519 signature */
	size_t body_len; /* the signed text: up to the blank line */
};

/* NULL, or why text is not a checkpoint note. */
static const char *parse_note(const char *text, struct note *n)
{
	char b64root[128], name[128], b64sig[256];
	const char *sep = strstr(text, "\n\n");

	if (!sep ||
	    sscanf(text, "%127[^\n]\n%llu\n%127[^\n]\nepoch %u\n", n->origin, &n->size, b64root,
		   &n->epoch) != 4 ||
	    sscanf(sep + 2, "\u2014 %127s %255s", name, b64sig) != 2)
		return "not a sealtrail checkpoint (signed note)";
	/* exact lengths first: EVP_DecodeBlock writes 3/4 of what it is given */
	if (strlen(b64root) != 44 || strlen(b64sig) != 92)
		return "checkpoint root or signature has the wrong length";
	if (EVP_DecodeBlock(n->root, (const unsigned char *)b64root, strlen(b64root)) <
		SEAL_HASH_LEN ||
	    EVP_DecodeBlock(n->sig, (const unsigned char *)b64sig, strlen(b64sig)) <
		4 + SEAL_SIG_LEN)
		return "checkpoint root or signature is not base64";
	n->body_len = sep + 1 - text;
	return NULL;
}

/* Find a line's end (the \n, or end). */
static size_t line_end(const char *text, size_t len, size_t pos)
{
	const char *nl = memchr(text + pos, '\n', len - pos);

	return nl ? (size_t)(nl - text) : len;
}

int checkpoint_each_note(const char *text, size_t len,
			 int (*fn)(void *arg, const char *note, uint64_t off), void *arg)
{
	static const char tag[] = SINK_SYSLOG_TAG " ";
	char note[NOTE_MAX + 1];
	size_t pos = 0;
	int err = 0;

	while (!err && pos < len) {
		size_t end = line_end(text, len, pos), n = end - pos, start = pos;
		const char *line = text + pos, *t, *b64;

		if ((t = memmem(line, n, tag, sizeof(tag) - 1)) &&
		    (b64 = memmem(t, line + n - t, " note=", 6))) {
			/* a syslog line: the note is base64 after note= */
			size_t k = 0;

			b64 += 6;
			while (b64 + k < line + n && b64[k] != ' ' && b64[k] != '\r' &&
			       b64[k] != '\t')
				k++;
			if (k % 4 || k / 4 * 3 > NOTE_MAX) {
				note[0] = 0; /* not a note: the caller says so */
			} else {
				int m = EVP_DecodeBlock((unsigned char *)note,
							(const unsigned char *)b64, k);

				m -= k && b64[k - 1] == '=' ? 1 + (k > 1 && b64[k - 2] == '=') : 0;
				note[m > 0 ? m : 0] = 0;
			}
			pos = end + 1;
			err = fn(arg, note, b64 - text);
			continue;
		}
		if (n < 10 || memcmp(line, "sealtrail/", 10)) {
			pos = end + 1;
			continue;
		}
		/* a signed note: its text lines, a blank line, its signature lines */
		bool body = true;

		for (int lines = 0; pos < len; lines++) {
			end = line_end(text, len, pos);
			if (body && end == pos)
				body = false;
			else if (!body && (end - pos < 4 || memcmp(text + pos, "\u2014 ", 4)))
				break;
			else if (body && lines > 8)
				break; /* no blank line: not a note, the caller says so */
			pos = end + 1;
		}
		if (pos > len)
			pos = len;
		n = pos - start < NOTE_MAX ? pos - start : NOTE_MAX;
		memcpy(note, text + start, n);
		note[n] = 0;
		err = fn(arg, note, start);
	}
	return err;
}

struct cp_check {
	struct walk *w;
	const char *path;
	char origin[128]; /* this store's: sealtrail/ID */
	uint64_t notes, other, ok;
	char other_origin[128];
};

/* Pass 1: the sizes this store's notes sign, so that the walk keeps those roots. */
static int collect_size(void *arg, const char *text, uint64_t off UNUSED)
{
	struct cp_check *c = arg;
	struct walk *w = c->w;
	struct note n;

	if (parse_note(text, &n) || strcmp(n.origin, c->origin) || !n.size)
		return 0;
	for (size_t i = 0; i < w->nwant; i++)
		if (w->want_sizes[i] == n.size)
			return 0;
	w->want_sizes = realloc(w->want_sizes, (w->nwant + 1) * sizeof(*w->want_sizes));
	if (!w->want_sizes)
		return -ENOMEM;
	w->want_sizes[w->nwant++] = n.size;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Pass 2: check one note against the keys the walk certified and its tree. */
static int check_note(void *arg, const char *text, uint64_t off)
{
	struct cp_check *c = arg;
	struct walk *w = c->w;
	const char *why;
	struct note n;
	size_t i;

	c->notes++;
	why = parse_note(text, &n);
	if (why) {
		fail(w->r, c->path, off, 0, "%s", why);
		return -EBADMSG;
	}
	if (strcmp(n.origin, c->origin)) {
		/* a log collected from several bastions: not this store's */
		c->other++;
		snprintf(c->other_origin, sizeof(c->other_origin), "%s", n.origin);
		return 0;
	}
	if (n.epoch >= w->npks + 1) {
		fail(w->r, c->path, off, n.size,
		     "checkpoint signed in epoch %u, but the store closes only %u epochs"
		     " (truncated or rolled back)",
		     n.epoch, w->npks);
		return -EBADMSG;
	}
	/* keys: pks[i] is the key of epoch i + 1; epoch 0's is the pinned key */
	if (!seal_verify(n.epoch ? w->pks[n.epoch - 1] : w->first, (const uint8_t *)text,
			 n.body_len, n.sig + 4)) {
		fail(w->r, c->path, off, n.size, "checkpoint signature does not verify");
		return -EBADMSG;
	}
	if (n.size > w->r->records) {
		fail(w->r, c->path, off, n.size,
		     "the store has %llu records, fewer than the %llu a saved checkpoint signs"
		     " (truncated or rolled back)",
		     (unsigned long long)w->r->records, n.size);
		return -EBADMSG;
	}
	for (i = 0; i < w->next_want && w->want_sizes[i] != n.size; i++)
		;
	if (n.size && (i == w->next_want || memcmp(w->roots[i], n.root, SEAL_HASH_LEN))) {
		fail(w->r, c->path, off, n.size,
		     "the first %llu records are not the ones the checkpoint signs", n.size);
		return -EBADMSG;
	}
	c->ok++;
	if (n.size > w->r->checkpoint_size)
		w->r->checkpoint_size = n.size;
	return 0;
}

/* The notes of a checkpoint file, read once; NULL (and r failed) if unreadable. */
/* The saved checkpoints: a file, or stdin for "-" (the socket passes one so). */
#define NOTES_MAX (256u << 20)
static char *read_notes(struct verify_result *r, const char *path, size_t *len)
{
	bool is_stdin = !strcmp(path, "-");
	struct buf text = {0};
	int err = is_stdin ? buf_read_fd(&text, STDIN_FILENO, NOTES_MAX)
			   : buf_read_file(&text, path, NOTES_MAX);

	if (err) {
		buf_free(&text);
		fail(r, is_stdin ? "(stdin)" : path, 0, 0, "cannot read the checkpoint: %s",
		     strerror(-err));
		return NULL;
	}
	*len = text.len;
	return (char *)text.data; /* NUL-terminated */
}

static int seg_filter(const struct dirent *d)
{
	unsigned n;
	char tail;

	return sscanf(d->d_name, "seg-%8u.lo%c", &n, &tail) == 2 && tail == 'g';
}

int store_verify(const char *dir, const struct verify_opts *o, struct verify_result *r)
{
	struct walk w = {.r = r, .next_seq = 1};
	char path[4200], text[4096], idhex[ST_ID_HEX + 1], pkhex[2 * SEAL_PK_LEN + 1];
	struct cp_check cp = {.w = &w, .path = o->against_file};
	struct dirent **list = NULL;
	char *notes = NULL;
	size_t notes_len = 0;
	uint8_t first_pk[SEAL_PK_LEN];
	int n, err;

	memset(r, 0, sizeof(*r));
	r->ok = true;
	snprintf(path, sizeof(path), "%s/keys/first.pub", dir);
	r->pinned = o->pubkey_file != NULL;
	err = read_text_file(o->pubkey_file ? o->pubkey_file : path, text, sizeof(text));
	if (err || sscanf(text, "store %32s\nfirst-key %64s", idhex, pkhex) != 2 ||
	    hex_decode(idhex, w.id, ST_ID_LEN) || hex_decode(pkhex, first_pk, SEAL_PK_LEN)) {
		fail(r, o->pubkey_file ? o->pubkey_file : path, 0, 0,
		     "no pinned first key (\"store HEX\\nfirst-key HEX\\n\"): %s",
		     err ? strerror(-err) : "malformed");
		return 0;
	}
	memcpy(w.pk, first_pk, SEAL_PK_LEN);
	memcpy(w.first, first_pk, SEAL_PK_LEN);
	if (o->against_file) {
		notes = read_notes(r, o->against_file, &notes_len);
		if (!notes)
			return 0;
		snprintf(cp.origin, sizeof(cp.origin), "sealtrail/%s", idhex);
		err = checkpoint_each_note(notes, notes_len, collect_size, &cp);
		if (!err && w.nwant) {
			qsort(w.want_sizes, w.nwant, sizeof(*w.want_sizes), cmp_u64);
			w.roots = calloc(w.nwant, sizeof(*w.roots));
			err = w.roots ? 0 : -ENOMEM;
		}
		if (err) {
			free(notes);
			free(w.want_sizes);
			return err;
		}
	}
	snprintf(path, sizeof(path), "%s/segments", dir);
	n = scandir(path, &list, seg_filter, alphasort);
	if (n < 0) {
		fail(r, path, 0, 0, "cannot list segments: %s", strerror(errno));
		return 0;
	}
	for (int i = 0; i < n; i++) {
		unsigned seg = 0;

		sscanf(list[i]->d_name, "seg-%8u", &seg);
		if (r->ok && seg != (unsigned)i + 1)
			fail(r, list[i]->d_name, 0, w.next_seq, "segment %u missing", i + 1);
		snprintf(path, sizeof(path), "%s/segments/%s", dir, list[i]->d_name);
		if (r->ok)
			walk_segment(&w, path, seg, i == n - 1);
		free(list[i]);
	}
	free(list);
	if (r->ok && w.torn[0])
		fail(r, w.torn, w.torn_off, w.next_seq,
		     "bytes after the last record that no gap record acknowledges");
	if (r->ok && o->against_file) {
		checkpoint_each_note(notes, notes_len, check_note, &cp);
		if (r->ok && !cp.notes)
			fail(r, o->against_file, 0, 0, "not a sealtrail checkpoint (signed note)");
		else if (r->ok && !cp.ok)
			fail(r, o->against_file, 0, 0,
			     "no checkpoint of this store: %llu of another store (%s)",
			     (unsigned long long)cp.other, cp.other_origin);
		r->checkpoints = cp.ok;
		r->checkpoint_ok = r->ok;
	}
	if (r->ok && !r->epochs)
		fail(r, dir, 0, 0, "no seals: no epoch record signs any of the %llu records",
		     (unsigned long long)r->records);
	free(w.pks);
	free(w.want_sizes);
	free(w.roots);
	free(notes);
	return 0;
}
