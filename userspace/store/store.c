/* The embedded store: segments of records plus the SQLite index (store.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

/* Highest segment number present, 0 if none. */
static uint32_t last_segment(const struct store *st)
{
	struct dirent **list;
	char *dir = path_join(st->dir, "segments");
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

static int open_segment(struct store *st, uint32_t seg_no)
{
	char *path = store_segment_path(st, seg_no);
	uint8_t h[SEG_HEADER_LEN] = {0};

	if (!path)
		return -ENOMEM;
	st->seg_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
	if (st->seg_fd < 0) {
		int err = -errno;

		log_error("store: cannot create segment %s: %s", path, strerror(errno));
		free(path);
		return err;
	}
	free(path);
	memcpy(h, SEG_MAGIC, 8);
	put_be32(h + 8, SEG_VERSION);
	put_be32(h + 12, SEG_HEADER_LEN);
	memcpy(h + 16, st->id, ST_ID_LEN);
	put_be64(h + 32, seg_no);
	put_be64(h + 40, clock_ns(CLOCK_REALTIME));
	st->seg_no = seg_no;
	st->seg_size = SEG_HEADER_LEN;
	return buf_add(&st->wbuf, h, sizeof(h));
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
	}
	/* keep only what is not on disk yet: a retry must not write bytes twice */
	memmove(st->wbuf.data, st->wbuf.data + done, st->wbuf.len - done);
	st->wbuf.len -= done;
	if (err)
		log_error("store %s: writing segment %u failed: %s (%zu bytes kept to retry)",
			  st->dir, st->seg_no, strerror(-err), st->wbuf.len);
	return err;
}

struct recover_state {
	struct store *st;
	uint64_t index_seq;
	uint64_t max_seq;
	uint64_t applied;
	bool tail_damaged;
	char damage_file[512];
	uint64_t damage_off;
	uint64_t damage_bytes;
	char damage_why[128];
};

static int recover_record(void *arg, const struct record *rec, uint32_t seg_no, uint64_t off)
{
	struct recover_state *rs = arg;

	if (rec->seq > rs->max_seq)
		rs->max_seq = rec->seq;
	if (rec->seq <= rs->index_seq)
		return 0;
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
}

/*
 * Bring the index up to the log (it may lag by up to a second after a
 * crash), find the next sequence number, and pick the segment to append to.
 */
static int open_writer(struct store *st)
{
	struct recover_state rs = {.st = st};
	struct store_visitor v = {recover_record, recover_damage, &rs, 0};
	uint32_t last = last_segment(st), index_seg;
	int err;

	err = index_last(&st->index, &rs.index_seq, &index_seg);
	if (err)
		return err;
	v.from_seg = index_seg ? index_seg : 1;
	if (last) {
		err = store_scan(st, &v);
		if (err)
			return err;
		/* only damage in the last segment matters for appending */
		if (rs.tail_damaged) {
			const char *base = strrchr(rs.damage_file, '/');
			unsigned n;

			if (!base || sscanf(base, "/seg-%8u.log", &n) != 1 || n != last)
				rs.tail_damaged = false;
		}
	}
	st->next_seq = (rs.max_seq > rs.index_seq ? rs.max_seq : rs.index_seq) + 1;
	if (rs.applied)
		log_info("store %s: index caught up with %llu records from the log", st->dir,
			 (unsigned long long)rs.applied);

	/* Never append after a damaged tail and never reopen a full segment. */
	err = open_segment(st, last + 1);
	if (err)
		return err;
	if (rs.tail_damaged) {
		struct buf rec = {0};

		err = rec_begin(&rec, REC_GAP, NULL, clock_ns(CLOCK_REALTIME),
				clock_ns(CLOCK_BOOTTIME));
		err = err ?: rec_add_str(&rec, TAG_REASON, rs.damage_why);
		err = err ?: rec_add_str(&rec, TAG_FILE, rs.damage_file);
		err = err ?: rec_add_u64(&rec, TAG_FILE_OFFSET, rs.damage_off);
		err = err ?: rec_add_u64(&rec, TAG_LOST_BYTES, rs.damage_bytes);
		err = err ?: store_append(st, &rec);
		buf_free(&rec);
	}
	return err ?: store_sync(st);
}

int store_open(struct store *st, const char *dir, int flags)
{
	char *path = NULL;
	int err;

	memset(st, 0, sizeof(*st));
	st->lock_fd = -1;
	st->seg_fd = -1;
	st->flags = flags;
	st->seg_rotate_bytes = SEG_ROTATE_BYTES;
	st->dir = strdup(dir);
	if (!st->dir)
		return -ENOMEM;
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
	}
	err = read_store_id(st, (flags & STORE_CREATE) && (flags & STORE_WRITE));
	if (err)
		goto fail;
	path = path_join(dir, "index.sqlite");
	if (!path) {
		err = -ENOMEM;
		goto fail;
	}
	err = index_open(&st->index, path, flags & STORE_WRITE);
	if (err)
		goto fail;
	if (flags & STORE_WRITE) {
		err = open_writer(st);
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
	if (st->seg_fd >= 0) {
		store_sync(st);
		close(st->seg_fd);
	}
	index_close(&st->index);
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	buf_free(&st->wbuf);
	free(st->dir);
	memset(st, 0, sizeof(*st));
	st->lock_fd = st->seg_fd = -1;
}

int store_append(struct store *st, struct buf *rec)
{
	struct record parsed;
	char why[128];
	size_t used;
	uint64_t off;
	int err;

	if (st->seg_fd < 0)
		return -EBADF;
	err = rec_finish(rec, st->next_seq);
	if (err)
		return err;
	/* never write what no reader could parse: it would hide what follows */
	if (rec_parse(rec->data, rec->len, &parsed, &used, why)) {
		log_error("store %s: refusing to append an invalid record: %s", st->dir, why);
		return -EINVAL;
	}
	if (st->seg_size + rec->len > st->seg_rotate_bytes && st->seg_size > SEG_HEADER_LEN) {
		err = store_sync(st);
		if (err)
			return err;
		close(st->seg_fd);
		st->seg_fd = -1;
		err = open_segment(st, st->seg_no + 1);
		if (err)
			return err;
	}
	off = st->seg_size;
	err = buf_add(&st->wbuf, rec->data, rec->len);
	if (err)
		return err;
	st->seg_size += rec->len;
	st->next_seq++;
	err = index_apply(&st->index, &parsed, st->seg_no, off);
	if (st->wbuf.len >= WBUF_FLUSH_BYTES)
		err = err ?: flush_wbuf(st);
	return err;
}

int store_sync(struct store *st)
{
	int err;

	if (st->seg_fd < 0)
		return 0;
	err = flush_wbuf(st);
	if (!err && fdatasync(st->seg_fd)) {
		err = -errno;
		log_error("store %s: fdatasync of segment %u failed: %s", st->dir, st->seg_no,
			  strerror(errno));
	}
	return err ?: index_commit(&st->index);
}

int store_read_at(const struct store *st, uint32_t seg_no, uint64_t off, struct buf *out,
		  struct record *rec)
{
	char *path = store_segment_path(st, seg_no);
	uint8_t lenbuf[4];
	char why[128];
	size_t used;
	uint32_t len;
	int fd, err = 0;

	if (!path)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		log_error("%s: %s", path, strerror(errno));
		goto out;
	}
	if (pread(fd, lenbuf, 4, off) != 4) {
		err = -EIO;
		log_error("%s: no record at byte offset %llu (file shorter)", path,
			  (unsigned long long)off);
		goto out;
	}
	len = get_be32(lenbuf);
	out->len = 0;
	if (len < REC_MIN_LEN || len > REC_MAX_LEN || buf_reserve(out, len) ||
	    pread(fd, out->data, len, off) != (ssize_t)len) {
		err = -EIO;
		log_error("%s: bad record length %u at byte offset %llu", path, len,
			  (unsigned long long)off);
		goto out;
	}
	out->len = len;
	err = rec_parse(out->data, len, rec, &used, why);
	if (err)
		log_error("%s: byte offset %llu: %s", path, (unsigned long long)off, why);
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return err;
}

static int scan_segment(const struct store *st, uint32_t seg_no, const struct store_visitor *v)
{
	char *path = store_segment_path(st, seg_no);
	struct record *rec = NULL;
	uint8_t *map = MAP_FAILED;
	struct stat sb;
	char why[128];
	uint64_t off;
	int fd, err = 0;

	if (!path)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			v->damage(v->arg, path, 0, 0, strerror(errno));
		goto out;
	}
	if (fstat(fd, &sb) || sb.st_size < SEG_HEADER_LEN) {
		v->damage(v->arg, path, 0, fd >= 0 ? sb.st_size : 0,
			  "segment shorter than its header");
		goto out;
	}
	map = mmap(NULL, sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	rec = malloc(sizeof(*rec));
	if (map == MAP_FAILED || !rec) {
		err = -ENOMEM;
		goto out;
	}
	if (memcmp(map, SEG_MAGIC, 8) || get_be32(map + 8) != SEG_VERSION ||
	    memcmp(map + 16, st->id, ST_ID_LEN) || get_be64(map + 32) != seg_no) {
		v->damage(v->arg, path, 0, sb.st_size,
			  "bad segment header (magic, version, store id or number)");
		goto out;
	}
	for (off = SEG_HEADER_LEN; off < (uint64_t)sb.st_size;) {
		size_t used;
		int rc = rec_parse(map + off, sb.st_size - off, rec, &used, why);

		if (rc) {
			v->damage(v->arg, path, off, sb.st_size - off, why);
			break;
		}
		err = v->record(v->arg, rec, seg_no, off);
		if (err)
			break;
		off += used;
	}
out:
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
	uint32_t last = last_segment(st);
	int err = 0;

	for (uint32_t n = v->from_seg ? v->from_seg : 1; n <= last && !err; n++)
		err = scan_segment(st, n, v);
	return err;
}

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

static void reindex_damage(void *arg, const char *file, uint64_t off, uint64_t bytes,
			   const char *why)
{
	log_warn("reindex: %s: %s at byte offset %llu; %llu bytes after it are not indexed", file,
		 why, (unsigned long long)off, (unsigned long long)bytes);
}

int store_reindex(struct store *st, uint64_t *records)
{
	struct reindex_state rs = {.st = st};
	struct store_visitor v = {reindex_record, reindex_damage, &rs, 1};
	int err;

	err = store_sync(st);
	err = err ?: index_clear(&st->index);
	err = err ?: store_scan(st, &v);
	err = err ?: index_commit(&st->index);
	*records = rs.records;
	return err;
}
