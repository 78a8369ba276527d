/*
 * The store (store/store.c, store/index.c): records go in, come back out
 * byte for byte with continuous sequence numbers, across rotation, reopen,
 * a torn tail and a damaged segment; the SQLite index says what the records
 * say, and rebuilding it gives the same tables. On disk every record is a
 * sealed envelope (store/seal.h) after a 128-byte v2 segment header that
 * carries the segment's key wrapped under DIR/keys/kek: offsets are those
 * of envelopes, and no record's content is on disk in the clear.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"
#include "store/verify.h"
#include "test.h"

#define NS 1000000000ull
#define T0 (1700000000ull * NS)

static const uint8_t S1[ST_ID_LEN] = {0x51, 0x51, 0x51, 0x51, 0x51, 0x51, 0x51, 0x51,
				      0x51, 0x51, 0x51, 0x51, 0x51, 0x51, 0x51, 0x01};
static const uint8_t S2[ST_ID_LEN] = {0x52, 0x52, 0x52, 0x52, 0x52, 0x52, 0x52, 0x52,
				      0x52, 0x52, 0x52, 0x52, 0x52, 0x52, 0x52, 0x02};

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

static long long file_size(const char *path)
{
	struct stat sb;

	return stat(path, &sb) ? -1 : (long long)sb.st_size;
}

static int count_segments(void)
{
	char dir[512];
	struct dirent *d;
	DIR *dp;
	int n = 0;

	snprintf(dir, sizeof(dir), "%s/segments", store_dir());
	dp = opendir(dir);
	if (!dp)
		return -1;
	while ((d = readdir(dp)))
		n += !strncmp(d->d_name, "seg-", 4);
	closedir(dp);
	return n;
}

/* Length of the envelope stored at off of segment seg (0 if there is none). */
static uint32_t env_len_at(uint32_t seg, uint64_t off)
{
	uint8_t len[4];
	int fd = open(seg_path(seg), O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = pread(fd, len, sizeof(len), off);
	close(fd);
	return n == sizeof(len) ? get_be32(len) : 0;
}

/* Incompressible bytes (xorshift), so that sealed sizes follow record sizes. */
static void fill_random(uint8_t *p, size_t len, uint64_t seed)
{
	uint64_t x = seed | 1;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = x >> 24;
	}
}

/* ---- building and remembering records ---- */

/* Every record appended, as finished (seq, CRC) by store_append. */
struct kept {
	size_t n;
	struct buf recs[512];
};

static void kept_free(struct kept *k)
{
	for (size_t i = 0; i < k->n; i++)
		buf_free(&k->recs[i]);
	k->n = 0;
}

struct rb {
	struct buf b;
	int err;
};

static void rb_begin(struct rb *r, uint16_t type, const uint8_t *session, uint64_t wall)
{
	r->err = rec_begin(&r->b, type, session, wall, wall / 1000);
}

static void rb_u64(struct rb *r, uint16_t tag, uint64_t v)
{
	r->err = r->err ?: rec_add_u64(&r->b, tag, v);
}

static void rb_str(struct rb *r, uint16_t tag, const char *s)
{
	r->err = r->err ?: rec_add_str(&r->b, tag, s);
}

static void rb_bytes(struct rb *r, uint16_t tag, const void *p, size_t len)
{
	r->err = r->err ?: rec_add_bytes(&r->b, tag, p, len);
}

/* Append r's record, keep a copy of its final bytes. */
static int rb_append(struct store *st, struct rb *r, struct kept *k)
{
	int err = r->err ?: store_append(st, &r->b);

	if (!err && k) {
		if (k->n == sizeof(k->recs) / sizeof(k->recs[0]))
			return -ENOSPC;
		k->recs[k->n] = (struct buf){0};
		err = buf_add(&k->recs[k->n], r->b.data, r->b.len);
		k->n++;
	}
	return err;
}

static int append_tty(struct store *st, struct kept *k, const uint8_t *session, int stream,
		      uint64_t tty, const void *data, size_t len, uint64_t wall)
{
	struct rb r = {0};
	int err;

	rb_begin(&r, REC_TTY, session, wall);
	rb_u64(&r, TAG_STREAM, stream);
	rb_u64(&r, TAG_TTY_INDEX, tty);
	rb_u64(&r, TAG_PID, 4242);
	rb_bytes(&r, TAG_DATA, data, len);
	err = rb_append(st, &r, k);
	buf_free(&r.b);
	return err;
}

/*
 * Two sessions' worth of every record type. Session 1 (alice, pts/3) typed
 * 3 bytes and got 14 (the 8 on pts/4 are sudo's pty, not summed), ran ls
 * which exited 1, lost 5 events / 150 bytes and logged out. Session 2 (bob,
 * no tty yet) typed 1000 bytes, exec'ed twice as pid 6000 and is still open.
 */
#define SCRIPT_RECORDS 16
#define SCRIPT_ARGV "ls\0-la\0"

static int append_script(struct store *st, struct kept *k)
{
	static char thousand[1000];
	struct rb r = {0};
	uint64_t w = T0;
	int err = 0;

	memset(thousand, 'x', sizeof(thousand));
#define NEXT(type, session)                                                                        \
	(err = err ?: rb_append(st, &r, k), rb_begin(&r, type, session, w += NS))
	rb_begin(&r, REC_DAEMON, NULL, w);
	rb_str(&r, TAG_EVENT, "start");
	rb_str(&r, TAG_HOST, "web1");
	NEXT(REC_SESSION_START, S1);
	rb_str(&r, TAG_HOST, "web1");
	rb_str(&r, TAG_BOOT_ID, "0f1e2d3c");
	rb_str(&r, TAG_USER, "alice");
	rb_u64(&r, TAG_LOGINUID, 1000);
	rb_u64(&r, TAG_UID, 1000);
	rb_str(&r, TAG_SOURCE_IP, "192.0.2.10");
	rb_u64(&r, TAG_SOURCE_PORT, 50022);
	rb_str(&r, TAG_LOCAL_IP, "192.0.2.1");
	rb_u64(&r, TAG_LOCAL_PORT, 22);
	rb_str(&r, TAG_TTY, "pts/3");
	rb_str(&r, TAG_TERM, "xterm-256color");
	rb_u64(&r, TAG_LEADER_PID, 4242);
	rb_u64(&r, TAG_LISTENER_PID, 800);
	rb_u64(&r, TAG_ADOPTED, 0);
	NEXT(REC_TTY, S1);
	rb_u64(&r, TAG_STREAM, STREAM_IN);
	rb_u64(&r, TAG_TTY_INDEX, 3);
	rb_bytes(&r, TAG_DATA, "ls\r", 3);
	NEXT(REC_TTY, S1);
	rb_u64(&r, TAG_STREAM, STREAM_OUT);
	rb_u64(&r, TAG_TTY_INDEX, 3);
	rb_bytes(&r, TAG_DATA, "file1  file2\r\n", 14);
	NEXT(REC_EXEC, S1);
	rb_u64(&r, TAG_PID, 5000);
	rb_u64(&r, TAG_PPID, 4242);
	rb_u64(&r, TAG_UID, 1000);
	rb_u64(&r, TAG_EUID, 1000);
	rb_u64(&r, TAG_GID, 1000);
	rb_u64(&r, TAG_LOGINUID, 1000);
	rb_u64(&r, TAG_SESSIONID, 7);
	rb_str(&r, TAG_FILENAME, "/usr/bin/ls");
	rb_str(&r, TAG_CWD, "/home/alice");
	rb_bytes(&r, TAG_ARGV, SCRIPT_ARGV, sizeof(SCRIPT_ARGV) - 1);
	rb_u64(&r, TAG_ARGV_TOTAL, 7);
	rb_u64(&r, TAG_ARGV_TRUNCATED, 0);
	NEXT(REC_EXIT, S1);
	rb_u64(&r, TAG_PID, 5000);
	rb_u64(&r, TAG_STATUS, 1 << 8);
	NEXT(REC_TTY, S1);
	rb_u64(&r, TAG_STREAM, STREAM_OUT);
	rb_u64(&r, TAG_TTY_INDEX, 4);
	rb_bytes(&r, TAG_DATA, "sudo pty", 8);
	NEXT(REC_GAP, S1);
	rb_u64(&r, TAG_LOST_EVENTS, 3);
	rb_u64(&r, TAG_LOST_BYTES, 100);
	rb_str(&r, TAG_REASON, "ring buffer full");
	NEXT(REC_GAP, S1);
	rb_u64(&r, TAG_LOST_EVENTS, 2);
	rb_u64(&r, TAG_LOST_BYTES, 50);
	rb_str(&r, TAG_REASON, "ring buffer full");
	NEXT(REC_SESSION_START, S2);
	rb_str(&r, TAG_USER, "bob");
	rb_u64(&r, TAG_UID, 1001);
	NEXT(REC_TTY, S2);
	rb_u64(&r, TAG_STREAM, STREAM_IN);
	rb_u64(&r, TAG_TTY_INDEX, 0);
	rb_bytes(&r, TAG_DATA, thousand, sizeof(thousand));
	NEXT(REC_EXEC, S2);
	rb_u64(&r, TAG_PID, 6000);
	rb_str(&r, TAG_FILENAME, "/bin/sh");
	NEXT(REC_EXEC, S2);
	rb_u64(&r, TAG_PID, 6000);
	rb_str(&r, TAG_FILENAME, "/usr/bin/vim");
	NEXT(REC_EXIT, S2);
	rb_u64(&r, TAG_PID, 6000);
	rb_u64(&r, TAG_STATUS, 9); /* killed by SIGKILL */
	NEXT(REC_SESSION_ATTR, S2);
	rb_u64(&r, TAG_UID, 0);
	rb_str(&r, TAG_TERM, "vt220");
	NEXT(REC_SESSION_END, S1);
	rb_str(&r, TAG_REASON, "logout");
	err = err ?: rb_append(st, &r, k);
#undef NEXT
	buf_free(&r.b);
	return err;
}

/* ---- scanning ---- */

struct seen_rec {
	struct buf bytes; /* the parsed record encoded again */
	uint64_t seq;
	uint16_t type;
	uint32_t seg;
	uint64_t off;
};

struct seen_damage {
	char file[512];
	uint64_t off;
	uint64_t bytes;
	char why[128];
};

struct seen {
	size_t n;
	struct seen_rec r[512];
	size_t ndamage;
	struct seen_damage damage[8];
	size_t stop_after; /* visitor returns 1 after this many (0: never) */
};

static int seen_record(void *arg, const struct record *rec, uint32_t seg_no, uint64_t off)
{
	struct seen *s = arg;
	struct seen_rec *r;
	int err;

	if (s->n == sizeof(s->r) / sizeof(s->r[0]))
		return -ENOSPC;
	r = &s->r[s->n++];
	*r = (struct seen_rec){.seq = rec->seq, .type = rec->type, .seg = seg_no, .off = off};
	/* the format is canonical: encoding what was parsed gives the same bytes */
	err = rec_begin(&r->bytes, rec->type, rec->session, rec->wall_ns, rec->mono_ns);
	for (unsigned i = 0; i < rec->nfields && !err; i++)
		err = rec_add_bytes(&r->bytes, rec->fields[i].tag, rec->fields[i].data,
				    rec->fields[i].len);
	err = err ?: rec_finish(&r->bytes, rec->seq);
	if (err)
		return err;
	return s->stop_after && s->n >= s->stop_after ? 1 : 0;
}

static void seen_damage(void *arg, const char *file, uint64_t off, uint64_t bytes, const char *why)
{
	struct seen *s = arg;
	struct seen_damage *d;

	if (s->ndamage == sizeof(s->damage) / sizeof(s->damage[0]))
		return;
	d = &s->damage[s->ndamage++];
	snprintf(d->file, sizeof(d->file), "%s", file);
	snprintf(d->why, sizeof(d->why), "%s", why);
	d->off = off;
	d->bytes = bytes;
}

static int scan(const struct store *st, struct seen *s, uint32_t from_seg)
{
	struct store_visitor v = {
	    .record = seen_record, .damage = seen_damage, .arg = s, .from_seg = from_seg};

	return store_scan(st, &v);
}

static void seen_free(struct seen *s)
{
	for (size_t i = 0; i < s->n; i++)
		buf_free(&s->r[i].bytes);
	free(s);
}

/* Open the store read-only and scan all of it; NULL (and a failure) if that fails. */
static struct seen *scan_all(void)
{
	struct seen *s = calloc(1, sizeof(*s));
	struct store st;

	if (!ASSERT_NOT_NULL(s, "calloc"))
		return NULL;
	if (!ASSERT_OK(store_open(&st, store_dir(), 0), "store_open read-only")) {
		free(s);
		return NULL;
	}
	if (!ASSERT_OK(scan(&st, s, 0), "store_scan")) {
		seen_free(s);
		s = NULL;
	}
	store_close(&st);
	return s;
}

/* Records seen[from..] are kept[0..], byte for byte. */
static void check_same(const struct seen *s, size_t from, const struct kept *k, const char *what)
{
	char label[128];

	if (!ASSERT_GE(s->n - from, k->n, what))
		return;
	for (size_t i = 0; i < k->n; i++) {
		snprintf(label, sizeof(label), "%s: record %zu", what, i);
		if (!ASSERT_BYTES_EQ(s->r[from + i].bytes.data, s->r[from + i].bytes.len,
				     k->recs[i].data, k->recs[i].len, label))
			break;
	}
}

/* Sequence numbers are first, first + 1, ... */
static bool check_seq_from(const struct seen *s, uint64_t first, const char *what)
{
	for (size_t i = 0; i < s->n; i++)
		if (!ASSERT_EQ(s->r[i].seq, first + i, what))
			return false;
	return true;
}

/* ---- querying the index ---- */

#define Q_NULL LLONG_MIN

/* First column of the first row as an integer; Q_NULL if NULL, no row or error. */
static long long q_int(struct store *st, const char *fmt, ...)
{
	sqlite3_stmt *stmt = NULL;
	long long v = Q_NULL;
	va_list ap;
	char *sql;

	va_start(ap, fmt);
	sql = sqlite3_vmprintf(fmt, ap);
	va_end(ap);
	if (sql && sqlite3_prepare_v2(st->index.db, sql, -1, &stmt, NULL) != SQLITE_OK)
		test_fail(__FILE__, __LINE__, "%s: %s", sql, sqlite3_errmsg(st->index.db));
	else if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL)
		v = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	sqlite3_free(sql);
	return v;
}

/* Same for text, in one of 4 rotating static buffers; "(null)" if none. */
static const char *q_text(struct store *st, const char *fmt, ...)
{
	static char out[4][512];
	static int next;
	char *res = out[next++ % 4];
	sqlite3_stmt *stmt = NULL;
	va_list ap;
	char *sql;

	snprintf(res, sizeof(out[0]), "(null)");
	va_start(ap, fmt);
	sql = sqlite3_vmprintf(fmt, ap);
	va_end(ap);
	if (sql && sqlite3_prepare_v2(st->index.db, sql, -1, &stmt, NULL) != SQLITE_OK)
		test_fail(__FILE__, __LINE__, "%s: %s", sql, sqlite3_errmsg(st->index.db));
	else if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL)
		snprintf(res, sizeof(out[0]), "%s", sqlite3_column_text(stmt, 0));
	sqlite3_finalize(stmt);
	sqlite3_free(sql);
	return res;
}

/* Names of the index's tables, sorted, in one string: "chunks execs ...". */
static int index_tables(struct store *st, char *out, size_t size)
{
	sqlite3_stmt *stmt;
	size_t len = 0;

	out[0] = 0;
	if (sqlite3_prepare_v2(st->index.db,
			       "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
			       -1, &stmt, NULL) != SQLITE_OK)
		return -EIO;
	while (sqlite3_step(stmt) == SQLITE_ROW && len < size)
		len += snprintf(out + len, size - len, "%s ", sqlite3_column_text(stmt, 0));
	sqlite3_finalize(stmt);
	return len < size ? 0 : -ENOSPC;
}

/* Every row of one table as text, for comparing two indexes. */
static int dump_table(struct store *st, const char *table, struct buf *out)
{
	sqlite3_stmt *stmt;
	char sql[512];
	int err = 0, len, ncols;

	/* ordered by every column, so equal tables dump equal */
	out->len = 0;
	len = snprintf(sql, sizeof(sql), "SELECT * FROM \"%s\"", table);
	if (sqlite3_prepare_v2(st->index.db, sql, -1, &stmt, NULL) != SQLITE_OK)
		return -EIO;
	ncols = sqlite3_column_count(stmt);
	sqlite3_finalize(stmt);
	for (int c = 1; c <= ncols && len < (int)sizeof(sql); c++)
		len +=
		    snprintf(sql + len, sizeof(sql) - len, "%s%d", c == 1 ? " ORDER BY " : ", ", c);
	if (len >= (int)sizeof(sql) ||
	    sqlite3_prepare_v2(st->index.db, sql, -1, &stmt, NULL) != SQLITE_OK)
		return -EIO;
	err = buf_add(out, "", 0);
	while (!err && sqlite3_step(stmt) == SQLITE_ROW) {
		for (int c = 0; c < sqlite3_column_count(stmt) && !err; c++) {
			switch (sqlite3_column_type(stmt, c)) {
			case SQLITE_INTEGER:
				err = buf_addf(out, "%lld|", sqlite3_column_int64(stmt, c));
				break;
			case SQLITE_TEXT:
				err = buf_addf(out, "'%s'|", sqlite3_column_text(stmt, c));
				break;
			case SQLITE_BLOB: {
				const uint8_t *p = sqlite3_column_blob(stmt, c);
				int n = sqlite3_column_bytes(stmt, c);

				err = buf_add(out, "x'", 2);
				for (int i = 0; i < n && !err; i++)
					err = buf_addf(out, "%02x", p[i]);
				err = err ?: buf_add(out, "'|", 2);
				break;
			}
			case SQLITE_NULL:
				err = buf_add(out, "NULL|", 5);
				break;
			default:
				err = buf_addf(out, "%g|", sqlite3_column_double(stmt, c));
			}
		}
		err = err ?: buf_add(out, "\n", 1);
	}
	sqlite3_finalize(stmt);
	return err;
}

#define MAX_TABLES 16

/* A snapshot of every table of an index. */
struct index_dump {
	char names[512];
	int n;
	char *table[MAX_TABLES];
	struct buf rows[MAX_TABLES];
};

static void index_dump_free(struct index_dump *d)
{
	for (int i = 0; i < d->n; i++)
		buf_free(&d->rows[i]);
	memset(d, 0, sizeof(*d));
}

static int index_dump(struct store *st, struct index_dump *d)
{
	char *save = NULL;
	int err;

	index_dump_free(d);
	err = index_tables(st, d->names, sizeof(d->names));
	for (char *t = strtok_r(d->names, " ", &save); t && !err; t = strtok_r(NULL, " ", &save)) {
		if (d->n == MAX_TABLES)
			return -ENOSPC;
		d->table[d->n] = t;
		err = dump_table(st, t, &d->rows[d->n++]);
	}
	return err;
}

static size_t index_dump_rows(const struct index_dump *d)
{
	size_t rows = 0;

	for (int i = 0; i < d->n; i++)
		for (size_t j = 0; j < d->rows[i].len; j++)
			rows += d->rows[i].data[j] == '\n';
	return rows;
}

/* Table by table, so that one wrong table does not hide the others. */
static void check_same_index(const char *file, int line, const struct index_dump *got,
			     const struct index_dump *want, const char *what)
{
	if (got->n != want->n) {
		test_fail(file, line, "%s: %d tables, want %d", what, got->n, want->n);
		return;
	}
	for (int i = 0; i < got->n; i++) {
		char label[128];

		snprintf(label, sizeof(label), "%s: table %s", what, got->table[i]);
		if (strcmp(got->table[i], want->table[i]))
			test_fail(file, line, "%s: table %s, want %s", what, got->table[i],
				  want->table[i]);
		else if (got->rows[i].len != want->rows[i].len ||
			 memcmp(got->rows[i].data, want->rows[i].data, got->rows[i].len))
			test_fail_mem(file, line, label, got->rows[i].data, got->rows[i].len,
				      want->rows[i].data, want->rows[i].len);
	}
}
#define CHECK_SAME_INDEX(got, want, what) check_same_index(__FILE__, __LINE__, got, want, what)

static bool has_substr(const char *s, const char *sub)
{
	return s && strstr(s, sub);
}

/* ---- tests ---- */

TEST(store_create_layout)
{
	uint8_t h[SEG_HEADER_LEN], id[ST_ID_LEN], dk[SEAL_KEY_LEN], kek[SEAL_KEY_LEN];
	uint8_t key[SEAL_KEY_LEN], epoch_file[4 + SEAL_KEY_LEN + SEAL_PK_LEN];
	uint8_t zero[SEG_HEADER_LEN - SEG_HEADER_AAD - SEAL_WRAPPED_LEN] = {0};
	char hex[64] = "", text[256] = "", want[256], pkhex[2 * SEAL_PK_LEN + 1];
	struct store st;
	struct stat sb;
	uint64_t now = clock_ns(CLOCK_REALTIME);
	int fd;

	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		return;
	ASSERT_EQ(st.next_seq, 1, "next_seq of a new store");
	ASSERT_EQ(st.seg_no, 1, "first segment");
	ASSERT_TRUE(st.have_kek, "the writer holds the kek");
	ASSERT_EQ(st.epoch, 0, "a new store signs epoch 0");
	memcpy(dk, st.dk, sizeof(dk)); /* segment 1's data key */
	store_close(&st);

	fd = open(test_path("store/store-id"), O_RDONLY);
	if (ASSERT_GE(fd, 0, "store-id exists")) {
		ASSERT_EQ(read(fd, hex, sizeof(hex)), 2 * ST_ID_LEN + 1,
			  "store-id: 32 hex digits and \\n");
		close(fd);
	}
	ASSERT_EQ(hex[2 * ST_ID_LEN], '\n', "newline");
	hex[2 * ST_ID_LEN] = 0;
	ASSERT_OK(hex_decode(hex, id, ST_ID_LEN), "store-id is hex");
	ASSERT_GE(file_size(test_path("store/index.sqlite")), 0, "index.sqlite exists");
	ASSERT_GE(file_size(test_path("store/LOCK")), 0, "LOCK exists");
	ASSERT_EQ(count_segments(), 1, "segments");
	ASSERT_EQ(file_size(seg_path(1)), SEG_HEADER_LEN, "empty segment is just its header");

	/* keys: root's only, the first public key published for pinning */
	if (ASSERT_OK(stat(test_path("store/keys"), &sb), "keys/"))
		ASSERT_EQ(sb.st_mode & 0777, 0700, "keys/ mode");
	if (ASSERT_OK(stat(test_path("store/keys/kek"), &sb), "keys/kek")) {
		ASSERT_EQ(sb.st_size, SEAL_KEY_LEN, "kek size");
		ASSERT_EQ(sb.st_mode & 0777, 0600, "kek mode");
	}
	if (ASSERT_OK(stat(test_path("store/keys/epoch"), &sb), "keys/epoch")) {
		ASSERT_EQ(sb.st_size, sizeof(epoch_file), "keys/epoch size");
		ASSERT_EQ(sb.st_mode & 0777, 0600, "keys/epoch mode");
	}
	fd = open(test_path("store/keys/kek"), O_RDONLY);
	if (!ASSERT_GE(fd, 0, "open kek"))
		return;
	ASSERT_EQ(read(fd, kek, sizeof(kek)), SEAL_KEY_LEN, "read kek");
	close(fd);
	fd = open(test_path("store/keys/epoch"), O_RDONLY);
	if (!ASSERT_GE(fd, 0, "open keys/epoch"))
		return;
	ASSERT_EQ(read(fd, epoch_file, sizeof(epoch_file)), sizeof(epoch_file), "read keys/epoch");
	close(fd);
	ASSERT_EQ(get_be32(epoch_file), 0, "keys/epoch is epoch 0's");
	fd = open(test_path("store/keys/first.pub"), O_RDONLY);
	if (ASSERT_GE(fd, 0, "first.pub exists")) {
		ASSERT_GT(read(fd, text, sizeof(text) - 1), 0, "read first.pub");
		close(fd);
	}
	hex_encode(epoch_file + 4 + SEAL_KEY_LEN, SEAL_PK_LEN, pkhex);
	snprintf(want, sizeof(want), "store %s\nfirst-key %s\n", hex, pkhex);
	ASSERT_STREQ(text, want, "first.pub: store id and epoch 0's public key");

	fd = open(seg_path(1), O_RDONLY);
	if (!ASSERT_GE(fd, 0, "open segment"))
		return;
	ASSERT_EQ(read(fd, h, sizeof(h)), SEG_HEADER_LEN, "read header");
	close(fd);
	ASSERT_EQ(SEG_HEADER_LEN, 128, "v2 header length");
	ASSERT_MEMEQ(h, "STRLSEG2", 8, "magic");
	ASSERT_EQ(get_be32(h + 8), 2, "version");
	ASSERT_EQ(get_be32(h + 12), SEG_HEADER_LEN, "header length");
	ASSERT_MEMEQ(h + 16, id, ST_ID_LEN, "store id");
	ASSERT_EQ(get_be64(h + 32), 1, "segment number");
	ASSERT_GE((long long)(get_be64(h + 40) - now), 0, "creation time not before the open");
	ASSERT_LT((long long)(get_be64(h + 40) - now), 60 * NS, "creation time within a minute");
	/* 48..108: the segment key wrapped under the kek, bound to bytes 0..48 */
	ASSERT_EQ(SEG_HEADER_AAD + SEAL_WRAPPED_LEN, 108, "wrapped key ends at 108");
	ASSERT_TRUE(memmem(h, sizeof(h), dk, sizeof(dk)) == NULL,
		    "the plaintext segment key is not in the header");
	ASSERT_TRUE(memmem(h, sizeof(h), kek, sizeof(kek)) == NULL, "nor is the kek");
	if (ASSERT_OK(seal_unwrap(kek, h + SEG_HEADER_AAD, h, SEG_HEADER_AAD, key),
		      "the kek unwraps bytes 48..108"))
		ASSERT_MEMEQ(key, dk, SEAL_KEY_LEN, "to the key segment 1 was written with");
	ASSERT_MEMEQ(h + SEG_HEADER_AAD + SEAL_WRAPPED_LEN, zero, sizeof(zero),
		     "108..128 reserved, zero");
	for (int i = 0; i < SEG_HEADER_AAD; i += 7) {
		h[i] ^= 0x20;
		ASSERT_NEQ(seal_unwrap(kek, h + SEG_HEADER_AAD, h, SEG_HEADER_AAD, key), 0,
			   "the wrapped key is bound to every byte of 0..48");
		h[i] ^= 0x20;
	}

	/* opening again read-only reads the same id, and creates nothing */
	if (ASSERT_OK(store_open(&st, store_dir(), 0), "open read-only")) {
		ASSERT_MEMEQ(st.id, id, ST_ID_LEN, "id read back");
		ASSERT_EQ(store_append(&st, &(struct buf){0}), -EBADF, "append to read-only store");
		store_close(&st);
	}
	ASSERT_EQ(count_segments(), 1, "read-only open adds no segment");
}

TEST(store_open_missing_or_bad)
{
	struct store st;
	int fd;

	ASSERT_NEQ(store_open(&st, store_dir(), 0), 0, "read-only open of nothing");
	ASSERT_NEQ(store_open(&st, store_dir(), STORE_WRITE), 0, "writer open without create");
	if (!ASSERT_OK(mkdir(store_dir(), 0700), "mkdir"))
		return;
	ASSERT_EQ(store_open(&st, store_dir(), 0), -ENOENT, "directory without store-id");
	/* `sealtrail reindex` pointed at the wrong directory leaves nothing in it */
	ASSERT_EQ(store_open(&st, store_dir(), STORE_WRITE | STORE_INDEX_ONLY), -ENOENT,
		  "writer open of a directory without store-id");
	ASSERT_NEQ(access(test_path("store/LOCK"), F_OK), 0, "no LOCK file left there");
	/* a read-only open never creates, even when asked to */
	ASSERT_NEQ(store_open(&st, store_dir(), STORE_CREATE), 0, "create without write");
	fd = open(test_path("store/store-id"), O_WRONLY | O_CREAT, 0600);
	if (!ASSERT_GE(fd, 0, "create store-id"))
		return;
	ASSERT_EQ(write(fd, "not hex at all, not hex at all!!\n", 33), 33, "write store-id");
	close(fd);
	ASSERT_EQ(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), -EINVAL,
		  "bad store-id");
}

TEST(store_append_scan_round_trip)
{
	uint8_t prev[SEAL_HASH_LEN] = {0};
	struct buf seg = {0};
	struct kept k = {0};
	struct store st;
	struct seen *s = NULL;
	int err;

	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		return;
	err = append_script(&st, &k);
	ASSERT_OK(err, "append");
	ASSERT_EQ(st.next_seq, SCRIPT_RECORDS + 1, "next_seq");
	ASSERT_OK(store_sync(&st), "sync");
	store_close(&st);
	if (err)
		goto out;

	s = scan_all();
	if (!s)
		goto out;
	ASSERT_EQ(s->ndamage, 0, "damage reports");
	ASSERT_EQ(s->n, SCRIPT_RECORDS, "records scanned");
	check_seq_from(s, 1, "seq 1..N");
	check_same(s, 0, &k, "scanned back");
	/*
	 * On disk: envelopes back to back after the header, one per record, at
	 * the offsets the scan reports, chained by the leaf hash of the previous
	 * (the first one: by the header's chain value).
	 */
	if (ASSERT_OK(buf_read_file(&seg, seg_path(1), 0), "read segment 1")) {
		uint64_t off = SEG_HEADER_LEN;

		/* the segment header is chained in before its first envelope */
		seal_chain_header(prev, seg.data, SEG_HEADER_LEN);

		for (size_t i = 0; i < s->n; i++) {
			struct seal_envelope env;
			char why[128] = "";
			size_t used;

			ASSERT_EQ(s->r[i].seg, 1, "all in segment 1");
			ASSERT_EQ(s->r[i].off, off, "offset: right after the previous envelope");
			if (!ASSERT_OK(seal_parse(seg.data + off, seg.len - off, &env, &used, why),
				       why))
				break;
			ASSERT_EQ(env.h.seq, s->r[i].seq, "envelope seq");
			ASSERT_EQ(env.h.type, s->r[i].type, "envelope type");
			ASSERT_EQ(env.h.flags, 0, "encrypted");
			ASSERT_EQ(env.h.segment, 1, "envelope segment");
			ASSERT_EQ(env.h.epoch, 0, "epoch 0");
			ASSERT_MEMEQ(env.h.store_id, seg.data + 16, ST_ID_LEN, "envelope store id");
			ASSERT_MEMEQ(env.h.prev_hash, prev, SEAL_HASH_LEN, "hash chain");
			ASSERT_EQ(env.payload_len + SEAL_HEADER_LEN + SEAL_TAG_LEN, used,
				  "header, payload, tag");
			seal_leaf_hash(env.bytes, env.len, prev);
			off += used;
		}
		ASSERT_EQ(seg.len, off, "segment ends with the last envelope");
	}

	/* every record can be read back by its position alone */
	if (ASSERT_OK(store_open(&st, store_dir(), 0), "open read-only")) {
		struct buf raw = {0};
		struct record rec;

		for (size_t i = 0; i < s->n; i++) {
			if (!ASSERT_OK(store_read_at(&st, s->r[i].seg, s->r[i].off, &raw, &rec),
				       "store_read_at"))
				break;
			ASSERT_BYTES_EQ(raw.data, raw.len, k.recs[i].data, k.recs[i].len,
					"read_at bytes");
			ASSERT_EQ(rec.seq, i + 1, "read_at seq");
		}
		buf_free(&raw);
		store_close(&st);
	}
out:
	buf_free(&seg);
	if (s)
		seen_free(s);
	kept_free(&k);
}

TEST(store_read_at_chunk_row)
{
	struct store st;
	struct buf raw = {0};
	struct record rec;
	const struct rec_field *f;
	long long seg, off, len;

	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		return;
	ASSERT_OK(append_script(&st, NULL), "append");
	store_close(&st);
	if (!ASSERT_OK(store_open(&st, store_dir(), 0), "open read-only"))
		return;

	/* the output chunk of session 1: "file1  file2\r\n", record 4 */
	seg = q_int(&st, "SELECT segment FROM chunks WHERE seq = 4");
	off = q_int(&st, "SELECT offset FROM chunks WHERE seq = 4");
	len = q_int(&st, "SELECT len FROM chunks WHERE seq = 4");
	ASSERT_EQ(seg, 1, "chunk segment");
	ASSERT_GT(off, SEG_HEADER_LEN, "chunk offset");
	ASSERT_EQ(len, 14, "chunk len is the data length");
	ASSERT_EQ(q_int(&st, "SELECT stream FROM chunks WHERE seq = 4"), STREAM_OUT, "stream");
	ASSERT_EQ(q_int(&st, "SELECT tty FROM chunks WHERE seq = 4"), 3, "tty");
	ASSERT_EQ(q_int(&st, "SELECT wall_ns FROM chunks WHERE seq = 4"), T0 + 3 * NS, "wall_ns");
	ASSERT_EQ(q_int(&st, "SELECT count(*) FROM chunks"), 4, "chunk rows");
	if (ASSERT_OK(store_read_at(&st, seg, off, &raw, &rec), "store_read_at")) {
		ASSERT_EQ(rec.type, REC_TTY, "type");
		ASSERT_EQ(rec.seq, 4, "seq");
		ASSERT_MEMEQ(rec.session, S1, ST_ID_LEN, "session");
		f = rec_field(&rec, TAG_DATA);
		if (ASSERT_NOT_NULL(f, "data field"))
			ASSERT_BYTES_EQ(f->data, f->len, "file1  file2\r\n", 14, "data");
		ASSERT_EQ(raw.len, rec.len, "raw holds the record");
	}
	/* positions that are not a record start */
	ASSERT_NEQ(store_read_at(&st, seg, off + 1, &raw, &rec), 0, "one byte off");
	ASSERT_NEQ(store_read_at(&st, seg, 0, &raw, &rec), 0, "segment header");
	ASSERT_EQ(store_read_at(&st, seg, 1 << 20, &raw, &rec), -EIO, "past the end");
	ASSERT_NEQ(store_read_at(&st, 99, off, &raw, &rec), 0, "missing segment");
	buf_free(&raw);
	store_close(&st);
}

TEST(store_reopen_continues_seq)
{
	struct kept k = {0};
	struct store st;
	struct seen *s = NULL;
	uint64_t w = T0;

	for (int round = 0; round < 3; round++) {
		if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "open"))
			goto out;
		/* a writer never appends to an old segment: one new segment per open */
		ASSERT_EQ(st.seg_no, round + 1, "segment of this writer");
		ASSERT_EQ(st.next_seq, 5 * round + 1, "next_seq after reopen");
		for (int i = 0; i < 5; i++)
			ASSERT_OK(append_tty(&st, &k, S1, STREAM_OUT, 0, "abc", 3, w += NS),
				  "append");
		store_close(&st);
	}
	/* opening and closing without appending moves to an empty segment only */
	if (ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE), "open again")) {
		ASSERT_EQ(st.next_seq, 16, "next_seq");
		store_close(&st);
	}
	ASSERT_EQ(count_segments(), 4, "segments");
	ASSERT_EQ(file_size(seg_path(4)), SEG_HEADER_LEN, "last segment is empty");
	s = scan_all();
	if (!s)
		goto out;
	ASSERT_EQ(s->ndamage, 0, "damage reports");
	ASSERT_EQ(s->n, 15, "records");
	check_seq_from(s, 1, "seq across reopens");
	check_same(s, 0, &k, "bytes across reopens");
	for (size_t i = 0; i < s->n; i++)
		ASSERT_EQ(s->r[i].seg, i / 5 + 1, "segment of record");
out:
	if (s)
		seen_free(s);
	kept_free(&k);
}

TEST(store_rotation)
{
	static uint8_t big[3000];
	struct kept k = {0};
	struct store st;
	struct seen *s = NULL;
	uint32_t seg = 0;
	size_t big_at = 0;
	char data[40];

	/* incompressible: its envelope is larger than a segment, like the record */
	fill_random(big, sizeof(big), 1);
	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		return;
	st.seg_rotate_bytes = 1024;
	for (int i = 0; i < 100; i++) {
		snprintf(data, sizeof(data), "line %03d of output...............\r\n", i);
		if (!ASSERT_OK(append_tty(&st, &k, S1, STREAM_OUT, 0, data, strlen(data), T0 + i),
			       "append"))
			break;
		/* a record larger than a whole segment gets a segment of its own */
		if (i == 50) {
			big_at = k.n;
			ASSERT_OK(append_tty(&st, &k, S1, STREAM_OUT, 0, big, sizeof(big), T0 + i),
				  "append big");
		}
	}
	store_close(&st);

	ASSERT_GT(count_segments(), 10, "segments after rotation");
	s = scan_all();
	if (!s)
		goto out;
	ASSERT_EQ(s->ndamage, 0, "damage reports");
	ASSERT_EQ(s->n, 101, "records");
	check_seq_from(s, 1, "seq across rotation");
	check_same(s, 0, &k, "bytes across rotation");
	for (size_t i = 0; i < s->n; i++) {
		if (s->r[i].seg != seg) {
			ASSERT_EQ(s->r[i].seg, seg + 1, "segments in order, none skipped");
			ASSERT_EQ(s->r[i].off, SEG_HEADER_LEN,
				  "first record right after the header");
			seg = s->r[i].seg;
		}
		/* nothing but the big record's envelope crosses the limit */
		if (i != big_at)
			ASSERT_LE(s->r[i].off + env_len_at(s->r[i].seg, s->r[i].off), 1024,
				  "segment size within limit");
		/* segments end with their last envelope */
		if (i + 1 == s->n || s->r[i + 1].seg != s->r[i].seg)
			ASSERT_EQ(file_size(seg_path(s->r[i].seg)),
				  s->r[i].off + env_len_at(s->r[i].seg, s->r[i].off),
				  "segment ends with its last envelope");
		else
			ASSERT_EQ(s->r[i + 1].off,
				  s->r[i].off + env_len_at(s->r[i].seg, s->r[i].off),
				  "envelopes back to back");
	}
	if (big_at && ASSERT_LT(big_at + 1, s->n, "big record seen")) {
		ASSERT_GT(env_len_at(s->r[big_at].seg, s->r[big_at].off), 1024,
			  "big envelope larger than a segment");
		ASSERT_EQ(s->r[big_at].off, SEG_HEADER_LEN, "big record starts a segment");
		ASSERT_NEQ(s->r[big_at + 1].seg, s->r[big_at].seg,
			   "and the next one starts another");
		ASSERT_EQ(file_size(seg_path(s->r[big_at].seg)),
			  SEG_HEADER_LEN + env_len_at(s->r[big_at].seg, s->r[big_at].off),
			  "big record alone in its segment");
	}
	/* the index points at the same positions */
	if (ASSERT_OK(store_open(&st, store_dir(), 0), "open read-only")) {
		for (size_t i = 0; i < s->n; i += 7) {
			ASSERT_EQ(q_int(&st, "SELECT segment FROM chunks WHERE seq = %llu",
					(unsigned long long)s->r[i].seq),
				  s->r[i].seg, "indexed segment");
			ASSERT_EQ(q_int(&st, "SELECT offset FROM chunks WHERE seq = %llu",
					(unsigned long long)s->r[i].seq),
				  s->r[i].off, "indexed offset");
		}
		store_close(&st);
	}
out:
	if (s)
		seen_free(s);
	kept_free(&k);
}

/* Append n TTY records, close, and cut the last segment in the middle of its last record. */
static bool make_torn_tail(int n, struct kept *k, uint64_t *torn_off, uint64_t *kept_bytes)
{
	struct store st;
	struct seen *s;
	uint64_t len;

	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		return false;
	for (int i = 0; i < n; i++)
		ASSERT_OK(append_tty(&st, k, S1, STREAM_OUT, 0, "0123456789abcdef", 16, T0 + i),
			  "append");
	store_close(&st);
	s = scan_all();
	if (!s || !ASSERT_EQ(s->n, n, "records before the cut")) {
		if (s)
			seen_free(s);
		return false;
	}
	*torn_off = s->r[n - 1].off;
	len = env_len_at(1, *torn_off); /* the envelope, not the record inside */
	ASSERT_EQ(*torn_off + len, file_size(seg_path(1)), "last envelope ends the segment");
	*kept_bytes = len / 2;
	seen_free(s);
	return ASSERT_OK(truncate(seg_path(1), *torn_off + *kept_bytes), "truncate");
}

/* The GAP that recovery appended names the torn segment, offset and bytes. */
static void check_recovery_gap(struct store *st, const struct seen *s, size_t at, uint64_t seq,
			       uint64_t torn_off, uint64_t kept_bytes)
{
	uint64_t v;

	if (!ASSERT_LT(at, s->n, "GAP record present"))
		return;
	ASSERT_EQ(s->r[at].type, REC_GAP, "recovery record type");
	ASSERT_EQ(s->r[at].seq, seq, "GAP seq");
	ASSERT_EQ(s->r[at].seg, 2, "GAP starts the new segment");
	ASSERT_EQ(s->r[at].off, SEG_HEADER_LEN, "GAP offset");
	{
		struct record rec;
		char why[128], str[512];
		size_t used;

		if (!ASSERT_OK(rec_parse(s->r[at].bytes.data, s->r[at].bytes.len, &rec, &used, why),
			       why))
			return;
		ASSERT_STREQ(rec_str(&rec, TAG_FILE, str, sizeof(str)), seg_path(1), "TAG_FILE");
		ASSERT_TRUE(rec_u64(&rec, TAG_FILE_OFFSET, &v), "TAG_FILE_OFFSET present");
		ASSERT_EQ(v, torn_off, "TAG_FILE_OFFSET");
		ASSERT_TRUE(rec_u64(&rec, TAG_LOST_BYTES, &v), "TAG_LOST_BYTES present");
		ASSERT_EQ(v, kept_bytes, "TAG_LOST_BYTES");
		ASSERT_TRUE(has_substr(rec_str(&rec, TAG_REASON, str, sizeof(str)), "torn"),
			    "TAG_REASON says torn write");
	}
	ASSERT_EQ(q_int(st, "SELECT count(*) FROM gaps WHERE file = %Q AND file_offset = %llu",
			seg_path(1), (unsigned long long)torn_off),
		  1, "gaps row for the torn tail");
}

TEST(store_torn_tail_recovery)
{
	struct kept k = {0}, k2 = {0};
	struct store st;
	struct seen *s = NULL;
	uint64_t torn_off = 0, kept_bytes = 0;
	const int n = 10;

	if (!make_torn_tail(n, &k, &torn_off, &kept_bytes))
		goto out;
	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE), "reopen after the cut"))
		goto out;
	/*
	 * The index had seen record n before it was cut off, so its seq is not
	 * handed out again: the GAP is n + 1.
	 */
	ASSERT_EQ(st.seg_no, 2, "appending moved to a new segment");
	ASSERT_EQ(st.next_seq, n + 2, "next_seq after the GAP");
	ASSERT_OK(append_tty(&st, &k2, S1, STREAM_IN, 0, "after", 5, T0 + 100), "append after");
	store_close(&st);
	ASSERT_EQ(file_size(seg_path(1)), torn_off + kept_bytes, "torn bytes left on disk");

	s = scan_all();
	if (!s)
		goto out;
	/* n - 1 good records, the GAP, the new one */
	ASSERT_EQ(s->n, n + 1, "records");
	k.n--; /* the torn one is gone */
	check_same(s, 0, &k, "records before the cut intact");
	k.n++;
	if (ASSERT_EQ(s->ndamage, 1, "damage reports")) {
		ASSERT_STREQ(s->damage[0].file, seg_path(1), "damaged file");
		ASSERT_EQ(s->damage[0].off, torn_off, "damage offset");
		ASSERT_EQ(s->damage[0].bytes, kept_bytes, "damaged bytes");
	}
	if (ASSERT_OK(store_open(&st, store_dir(), 0), "open read-only")) {
		check_recovery_gap(&st, s, n - 1, n + 1, torn_off, kept_bytes);
		store_close(&st);
	}
	if (ASSERT_EQ(s->n, n + 1, "new record present")) {
		ASSERT_EQ(s->r[n].seq, n + 2, "new record seq");
		check_same(s, n, &k2, "new record");
	}
	seen_free(s);
	s = NULL;

	/* the damage is old news now: no second GAP, seq goes on */
	if (ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE), "reopen again")) {
		ASSERT_EQ(st.next_seq, n + 3, "next_seq");
		store_close(&st);
	}
	s = scan_all();
	if (s) {
		ASSERT_EQ(s->n, n + 1, "no record added by the second reopen");
		ASSERT_EQ(s->ndamage, 1, "still one damage report, in segment 1");
	}
out:
	if (s)
		seen_free(s);
	kept_free(&k);
	kept_free(&k2);
}

/*
 * A crash as it happens: records written (the write buffer flushes at
 * 1 MiB) but never synced, so the index never committed them, and the
 * last one torn. Recovery indexes the good ones and the GAP takes the seq
 * right after the last good record: no hole.
 */
TEST(store_crash_torn_tail)
{
	static uint8_t chunk[300000];
	struct store st;
	struct seen *s = NULL;
	uint64_t torn_off, kept_bytes;
	int status;
	pid_t pid;

	/* incompressible: 4 sealed chunks must still pass the 1 MiB write buffer */
	fill_random(chunk, sizeof(chunk), 2);
	pid = fork();
	if (pid == 0) {
		int err = store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE);

		for (int i = 0; i < 5 && !err; i++)
			err = append_tty(&st, NULL, S1, STREAM_OUT, 0, "synced", 6, T0 + i);
		err = err ?: store_sync(&st);
		/* 4 x 300 kB: the 4th crosses 1 MiB and is written, not synced */
		for (int i = 0; i < 4 && !err; i++)
			err = append_tty(&st, NULL, S1, STREAM_OUT, 0, chunk, sizeof(chunk),
					 T0 + 10 + i);
		_exit(err ? 1 : 0); /* no store_close: this is the crash */
	}
	if (!ASSERT_GT(pid, 0, "fork") || !ASSERT_EQ(waitpid(pid, &status, 0), pid, "waitpid") ||
	    !ASSERT_EQ(status, 0, "writer exit status"))
		return;

	s = scan_all();
	if (!s || !ASSERT_EQ(s->n, 9, "records on disk after the crash"))
		goto out;
	torn_off = s->r[8].off;
	ASSERT_GT(env_len_at(1, torn_off), sizeof(chunk), "sealed chunk is not smaller");
	kept_bytes = env_len_at(1, torn_off) / 2;
	seen_free(s);
	s = NULL;
	if (!ASSERT_OK(truncate(seg_path(1), torn_off + kept_bytes), "truncate"))
		goto out;

	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE), "recover"))
		goto out;
	ASSERT_EQ(st.next_seq, 10, "next_seq: GAP took 9");
	store_close(&st);

	s = scan_all();
	if (!s)
		goto out;
	ASSERT_EQ(s->n, 9, "8 good records and the GAP");
	check_seq_from(s, 1, "seq without holes");
	ASSERT_EQ(s->ndamage, 1, "damage reports");
	if (ASSERT_OK(store_open(&st, store_dir(), 0), "open read-only")) {
		check_recovery_gap(&st, s, 8, 9, torn_off, kept_bytes);
		/* the index caught up with the 3 good unsynced chunks */
		ASSERT_EQ(q_int(&st, "SELECT count(*) FROM chunks"), 8, "chunks indexed");
		ASSERT_EQ(q_int(&st, "SELECT max(seq) FROM chunks"), 8, "last chunk indexed");
		ASSERT_EQ(q_int(&st, "SELECT value FROM meta WHERE key = 'last_seq'"), 9,
			  "meta last_seq");
		store_close(&st);
	}
out:
	if (s)
		seen_free(s);
}

/*
 * Recovery decides whether the damage is in the last segment by looking
 * for "seg-" in the damaged file's path: the first "seg-" is in the store
 * directory's own name here, so the torn tail is taken for an old one and
 * no GAP is recorded for the lost bytes.
 */
TEST(store_torn_tail_recovery_in_dir_named_seg)
{
	char dir[4096];
	struct store st;
	struct kept k = {0};
	uint64_t torn_off = 0, kept_bytes = 0;
	int gaps = -1;

	/* store_dir() is test_dir()/store: make that a link to a "seg-" directory */
	snprintf(dir, sizeof(dir), "%s/seg-archive", test_dir());
	if (!ASSERT_OK(mkdir(dir, 0700), "mkdir") ||
	    !ASSERT_OK(symlink("seg-archive", store_dir()), "symlink"))
		return;
	if (!make_torn_tail(4, &k, &torn_off, &kept_bytes))
		goto out;
	/* open through the real name, the one an operator would configure */
	if (!ASSERT_OK(store_open(&st, dir, STORE_WRITE), "reopen after the cut"))
		goto out;
	gaps = q_int(&st, "SELECT count(*) FROM gaps");
	ASSERT_EQ(st.next_seq, 6, "next_seq after the GAP");
	store_close(&st);
	ASSERT_EQ(gaps, 1, "GAP recorded for the torn tail");
out:
	kept_free(&k);
}

/*
 * A crash tore the last record while S1 was open and S2 had ended: S1 gets
 * a gap of its own that names the torn file and offset (its timeline and
 * `sealtrail sessions` show it), S2 none. The torn record had been indexed
 * (the store was closed before the cut, as a disk that lost synced bytes
 * would leave it): the index is rebuilt from the log, so no row points at
 * the bytes that are gone.
 */
TEST(store_torn_tail_gaps_open_sessions)
{
	char s1[ST_ID_HEX], s2[ST_ID_HEX];
	struct rb r = {0};
	struct store st;
	uint64_t torn_off, len;
	struct seen *s;
	int err;

	hex_encode(S1, ST_ID_LEN, s1);
	hex_encode(S2, ST_ID_LEN, s2);
	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		return;
	rb_begin(&r, REC_SESSION_START, S1, T0);
	rb_str(&r, TAG_USER, "alice");
	err = rb_append(&st, &r, NULL);
	rb_begin(&r, REC_SESSION_START, S2, T0 + NS);
	rb_str(&r, TAG_USER, "bob");
	err = err ?: rb_append(&st, &r, NULL);
	rb_begin(&r, REC_SESSION_END, S2, T0 + 2 * NS);
	rb_str(&r, TAG_REASON, "logout");
	err = err ?: rb_append(&st, &r, NULL);
	for (int i = 0; i < 2 && !err; i++)
		err = append_tty(&st, NULL, S1, STREAM_OUT, 0, "output", 6, T0 + (3 + i) * NS);
	rb_begin(&r, REC_EXEC, S1, T0 + 5 * NS);
	rb_u64(&r, TAG_PID, 5000);
	err = err ?: rb_append(&st, &r, NULL);
	buf_free(&r.b);
	if (!err)
		ASSERT_EQ(q_int(&st, "SELECT count(*) FROM records WHERE seq = 6"), 1,
			  "the exec to be torn is indexed");
	store_close(&st);
	if (!ASSERT_OK(err, "append"))
		return;
	s = scan_all();
	if (!s || !ASSERT_EQ(s->n, 6, "records before the cut"))
		goto out;
	torn_off = s->r[5].off;
	len = env_len_at(1, torn_off);
	if (!ASSERT_OK(truncate(seg_path(1), torn_off + len / 2), "truncate"))
		goto out;

	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE), "reopen after the cut"))
		goto out;
	ASSERT_EQ(st.next_seq, 9, "6 keeps its seq; 7 and 8 are the gaps");
	ASSERT_EQ(q_int(&st, "SELECT count(*) FROM gaps"), 2, "gaps");
	ASSERT_EQ(q_int(&st,
			"SELECT count(*) FROM gaps WHERE session = %Q AND file = %Q"
			" AND file_offset = %llu AND lost_bytes = %llu",
			"00000000000000000000000000000000", seg_path(1),
			(unsigned long long)torn_off, (unsigned long long)(len / 2)),
		  1, "store gap (session zero): file, offset, bytes");
	ASSERT_EQ(q_int(&st,
			"SELECT count(*) FROM gaps WHERE session = %Q AND file = %Q"
			" AND file_offset = %llu",
			s1, seg_path(1), (unsigned long long)torn_off),
		  1, "the open session's gap names the torn tail");
	ASSERT_TRUE(
	    has_substr(q_text(&st, "SELECT reason FROM gaps WHERE session = %Q", s1), "torn write"),
	    "its reason says torn write");
	ASSERT_EQ(q_int(&st, "SELECT count(*) FROM gaps WHERE session = %Q", s2), 0,
		  "no gap for the ended session");
	ASSERT_EQ(q_int(&st, "SELECT lost_events FROM sessions WHERE id = %Q", s1), 0,
		  "unknown losses are not counted as lost events");
	ASSERT_EQ(q_int(&st, "SELECT count(*) FROM chunks"), 2, "index rebuilt: 2 chunks left");
	ASSERT_EQ(q_int(&st, "SELECT count(*) FROM records WHERE seq = 6"), 0,
		  "no row for the torn record (`events` would fail on it)");
	ASSERT_EQ(q_int(&st, "SELECT count(*) FROM execs"), 0, "nor an exec");
	store_close(&st);
out:
	if (s)
		seen_free(s);
}

TEST(store_second_writer_is_busy)
{
	struct store a, b, r;
	struct seen *s;

	if (!ASSERT_OK(store_open(&a, store_dir(), STORE_WRITE | STORE_CREATE), "first writer"))
		return;
	ASSERT_OK(append_tty(&a, NULL, S1, STREAM_IN, 0, "x", 1, T0), "append");
	ASSERT_OK(store_sync(&a), "sync");
	ASSERT_EQ(store_open(&b, store_dir(), STORE_WRITE), -EBUSY, "second writer");
	ASSERT_EQ(store_open(&b, store_dir(), STORE_WRITE | STORE_CREATE), -EBUSY,
		  "second writer with create");
	/* readers are welcome while the writer works */
	if (ASSERT_OK(store_open(&r, store_dir(), 0), "reader")) {
		s = calloc(1, sizeof(*s));
		if (ASSERT_NOT_NULL(s, "calloc")) {
			ASSERT_OK(scan(&r, s, 0), "scan while writing");
			ASSERT_EQ(s->n, 1, "reader sees the synced record");
			seen_free(s);
		}
		ASSERT_EQ(q_int(&r, "SELECT count(*) FROM chunks"), 1, "reader sees the index");
		store_close(&r);
	}
	ASSERT_EQ(count_segments(), 1, "the refused writer made no segment");
	store_close(&a);
	if (ASSERT_OK(store_open(&b, store_dir(), STORE_WRITE), "writer after the first closed")) {
		ASSERT_EQ(b.next_seq, 2, "next_seq");
		store_close(&b);
	}
}

TEST(store_index_contents)
{
	char s1[ST_ID_HEX], s2[ST_ID_HEX];
	struct store st;

	hex_encode(S1, ST_ID_LEN, s1);
	hex_encode(S2, ST_ID_LEN, s2);
	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		return;
	ASSERT_OK(append_script(&st, NULL), "append");
	store_close(&st);
	if (!ASSERT_OK(store_open(&st, store_dir(), 0), "open read-only"))
		return;

	ASSERT_EQ(q_int(&st, "SELECT count(*) FROM sessions"), 2, "sessions");
	ASSERT_STREQ(q_text(&st, "SELECT user FROM sessions WHERE id = %Q", s1), "alice", "user");
	ASSERT_STREQ(q_text(&st, "SELECT host FROM sessions WHERE id = %Q", s1), "web1", "host");
	ASSERT_STREQ(q_text(&st, "SELECT boot_id FROM sessions WHERE id = %Q", s1), "0f1e2d3c",
		     "boot_id");
	ASSERT_EQ(q_int(&st, "SELECT loginuid FROM sessions WHERE id = %Q", s1), 1000, "loginuid");
	ASSERT_EQ(q_int(&st, "SELECT uid FROM sessions WHERE id = %Q", s1), 1000, "uid");
	ASSERT_STREQ(q_text(&st, "SELECT source_ip FROM sessions WHERE id = %Q", s1), "192.0.2.10",
		     "source_ip");
	ASSERT_EQ(q_int(&st, "SELECT source_port FROM sessions WHERE id = %Q", s1), 50022,
		  "source_port");
	ASSERT_STREQ(q_text(&st, "SELECT local_ip FROM sessions WHERE id = %Q", s1), "192.0.2.1",
		     "local_ip");
	ASSERT_EQ(q_int(&st, "SELECT local_port FROM sessions WHERE id = %Q", s1), 22,
		  "local_port");
	ASSERT_STREQ(q_text(&st, "SELECT tty FROM sessions WHERE id = %Q", s1), "pts/3", "tty");
	ASSERT_STREQ(q_text(&st, "SELECT term FROM sessions WHERE id = %Q", s1), "xterm-256color",
		     "term from the start record");
	ASSERT_STREQ(q_text(&st, "SELECT term FROM sessions WHERE id = %Q", s2), "vt220",
		     "term from an attribute record");
	ASSERT_EQ(q_int(&st, "SELECT leader_pid FROM sessions WHERE id = %Q", s1), 4242, "leader");
	ASSERT_EQ(q_int(&st, "SELECT listener_pid FROM sessions WHERE id = %Q", s1), 800,
		  "listener");
	ASSERT_EQ(q_int(&st, "SELECT adopted FROM sessions WHERE id = %Q", s1), 0, "adopted");
	ASSERT_EQ(q_int(&st, "SELECT start_ns FROM sessions WHERE id = %Q", s1), T0 + NS,
		  "start_ns");
	ASSERT_EQ(q_int(&st, "SELECT end_ns FROM sessions WHERE id = %Q", s1), T0 + 15 * NS,
		  "end_ns");
	ASSERT_STREQ(q_text(&st, "SELECT end_reason FROM sessions WHERE id = %Q", s1), "logout",
		     "end_reason");
	/* only the login's own pty (pts/3) counts */
	ASSERT_EQ(q_int(&st, "SELECT bytes_in FROM sessions WHERE id = %Q", s1), 3, "bytes_in");
	ASSERT_EQ(q_int(&st, "SELECT bytes_out FROM sessions WHERE id = %Q", s1), 14, "bytes_out");
	ASSERT_EQ(q_int(&st, "SELECT lost_events FROM sessions WHERE id = %Q", s1), 5,
		  "lost_events");
	ASSERT_EQ(q_int(&st, "SELECT lost_bytes FROM sessions WHERE id = %Q", s1), 150,
		  "lost_bytes");

	ASSERT_STREQ(q_text(&st, "SELECT user FROM sessions WHERE id = %Q", s2), "bob", "user 2");
	ASSERT_EQ(q_int(&st, "SELECT uid FROM sessions WHERE id = %Q", s2), 0, "uid 2 after ATTR");
	ASSERT_EQ(q_int(&st, "SELECT loginuid FROM sessions WHERE id = %Q", s2), Q_NULL,
		  "absent loginuid is NULL");
	ASSERT_EQ(q_int(&st, "SELECT source_port FROM sessions WHERE id = %Q", s2), Q_NULL,
		  "absent port is NULL");
	ASSERT_STREQ(q_text(&st, "SELECT tty FROM sessions WHERE id = %Q", s2), "(null)", "tty 2");
	ASSERT_EQ(q_int(&st, "SELECT bytes_in FROM sessions WHERE id = %Q", s2), 1000,
		  "bytes_in 2");
	ASSERT_EQ(q_int(&st, "SELECT bytes_out FROM sessions WHERE id = %Q", s2), 0, "bytes_out 2");
	ASSERT_EQ(q_int(&st, "SELECT end_ns FROM sessions WHERE id = %Q", s2), Q_NULL,
		  "session 2 still open");
	ASSERT_EQ(q_int(&st, "SELECT lost_events FROM sessions WHERE id = %Q", s2), 0, "lost 2");

	ASSERT_EQ(q_int(&st, "SELECT count(*) FROM execs"), 3, "execs");
	ASSERT_EQ(q_int(&st, "SELECT exit_status FROM execs WHERE session = %Q AND pid = 5000", s1),
		  256, "exit status of ls");
	ASSERT_EQ(q_int(&st, "SELECT exit_ns FROM execs WHERE session = %Q AND pid = 5000", s1),
		  T0 + 5 * NS, "exit time of ls");
	ASSERT_STREQ(
	    q_text(&st, "SELECT filename FROM execs WHERE session = %Q AND pid = 5000", s1),
	    "/usr/bin/ls", "filename");
	ASSERT_STREQ(
	    q_text(&st, "SELECT hex(argv) FROM execs WHERE session = %Q AND pid = 5000", s1),
	    "6C73002D6C6100", "argv blob keeps its NULs");
	ASSERT_EQ(q_int(&st, "SELECT ppid FROM execs WHERE pid = 5000"), 4242, "ppid");
	ASSERT_STREQ(q_text(&st, "SELECT cwd FROM execs WHERE pid = 5000"), "/home/alice", "cwd");
	ASSERT_STREQ(q_text(&st, "SELECT cwd FROM execs WHERE filename = '/bin/sh'"), "(null)",
		     "no cwd recorded: NULL");
	ASSERT_EQ(q_int(&st, "SELECT sessionid FROM execs WHERE pid = 5000"), 7, "sessionid");
	ASSERT_EQ(q_int(&st, "SELECT argv_total FROM execs WHERE pid = 5000"), 7, "argv_total");
	/* pid 6000 exec'ed twice: the exit belongs to the last image */
	ASSERT_EQ(q_int(&st, "SELECT exit_status FROM execs WHERE filename = '/bin/sh'"), Q_NULL,
		  "first image of pid 6000 has no exit");
	ASSERT_EQ(q_int(&st, "SELECT exit_status FROM execs WHERE filename = '/usr/bin/vim'"), 9,
		  "second image of pid 6000 exited");

	ASSERT_EQ(q_int(&st, "SELECT count(*) FROM gaps"), 2, "gaps");
	ASSERT_EQ(q_int(&st, "SELECT sum(lost_events) FROM gaps WHERE session = %Q", s1), 5,
		  "gap events");
	ASSERT_EQ(q_int(&st, "SELECT sum(lost_bytes) FROM gaps WHERE session = %Q", s1), 150,
		  "gap bytes");
	ASSERT_STREQ(q_text(&st, "SELECT reason FROM gaps WHERE seq = 8"), "ring buffer full",
		     "gap reason");

	ASSERT_EQ(q_int(&st, "SELECT value FROM meta WHERE key = 'last_seq'"), SCRIPT_RECORDS,
		  "meta last_seq");
	ASSERT_EQ(q_int(&st, "SELECT value FROM meta WHERE key = 'last_segment'"), 1,
		  "meta last_segment");
	store_close(&st);
}

/*
 * `sealtrail events` reads a session's records where the index places them:
 * every record of a session but its terminal chunks has a row, and each
 * row leads to that record, in any segment.
 */
TEST(store_index_locates_session_records)
{
	char s1[ST_ID_HEX];
	struct buf raw = {0};
	struct record rec;
	sqlite3_stmt *q;
	struct store st;
	int rows = 0;

	hex_encode(S1, ST_ID_LEN, s1);
	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		return;
	st.seg_rotate_bytes = 600; /* records in several segments */
	ASSERT_OK(append_script(&st, NULL), "append");
	ASSERT_OK(store_sync(&st), "sync");
	ASSERT_GT(st.seg_no, 2, "several segments");
	/* S1: start, exec, exit, two gaps, end; its 3 chunks are in `chunks` */
	ASSERT_EQ(q_int(&st, "SELECT count(*) FROM records WHERE session = %Q", s1), 6,
		  "session 1's records other than chunks");
	ASSERT_EQ(q_int(&st, "SELECT count(*) FROM records WHERE type = %d", REC_TTY), 0,
		  "no chunk twice");
	ASSERT_EQ(q_int(&st, "SELECT count(*) FROM records WHERE type = %d", REC_DAEMON), 0,
		  "store-level records belong to no session");
	if (!ASSERT_EQ(sqlite3_prepare_v2(st.index.db,
					  "SELECT seq, session, type, wall_ns, segment, offset"
					  " FROM records ORDER BY seq",
					  -1, &q, NULL),
		       SQLITE_OK, "query"))
		goto out;
	while (sqlite3_step(q) == SQLITE_ROW) {
		char sid[ST_ID_HEX];

		rows++;
		if (!ASSERT_OK(store_read_at(&st, sqlite3_column_int64(q, 4),
					     sqlite3_column_int64(q, 5), &raw, &rec),
			       "read where the index says"))
			break;
		hex_encode(rec.session, ST_ID_LEN, sid);
		ASSERT_EQ(rec.seq, (uint64_t)sqlite3_column_int64(q, 0), "seq");
		ASSERT_STREQ(sid, (const char *)sqlite3_column_text(q, 1), "session");
		ASSERT_EQ(rec.type, sqlite3_column_int(q, 2), "type");
		ASSERT_EQ(rec.wall_ns, (uint64_t)sqlite3_column_int64(q, 3), "wall_ns");
	}
	sqlite3_finalize(q);
	ASSERT_GE(rows, 10, "rows of both sessions");
out:
	buf_free(&raw);
	store_close(&st);
}

struct locked_probe {
	struct store *st;
	int calls;
	bool lock_held, index_open;
};

static void on_locked(void *arg)
{
	struct locked_probe *p = arg;
	int fd = open(test_path("store/LOCK"), O_RDONLY | O_CLOEXEC);

	p->calls++;
	p->lock_held = fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) && errno == EWOULDBLOCK;
	p->index_open = p->st->index.db != NULL;
	if (fd >= 0)
		close(fd);
}

/*
 * sealtraild says "starting" from here (status.json): the LOCK is held, so
 * no other writer runs, and nothing slow (reading the log back, rebuilding
 * the index) has happened yet. Readers never call it.
 */
TEST(store_locked_callback_before_the_log_is_read)
{
	struct store st;
	struct locked_probe p = {.st = &st};
	struct store_options o = {.locked = on_locked, .locked_arg = &p};

	if (!ASSERT_OK(store_open_with(&st, store_dir(), STORE_WRITE | STORE_CREATE, &o), "create"))
		return;
	ASSERT_EQ(p.calls, 1, "called once");
	ASSERT_TRUE(p.lock_held, "with the LOCK held");
	ASSERT_FALSE(p.index_open, "before the index is opened");
	ASSERT_OK(append_script(&st, NULL), "append");
	store_close(&st);
	p = (struct locked_probe){.st = &st};
	if (ASSERT_OK(store_open_with(&st, store_dir(), 0, &o), "open to read"))
		store_close(&st);
	ASSERT_EQ(p.calls, 0, "not for a reader");
}

static void unlink_index(void)
{
	unlink(test_path("store/index.sqlite"));
	unlink(test_path("store/index.sqlite-wal"));
	unlink(test_path("store/index.sqlite-shm"));
}

TEST(store_reindex_gives_identical_tables)
{
	struct index_dump before = {0}, after = {0};
	struct store st;
	uint64_t records = 0;

	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		return;
	st.seg_rotate_bytes = 600; /* chunks in several segments */
	ASSERT_OK(append_script(&st, NULL), "append");
	ASSERT_OK(store_sync(&st), "sync");
	ASSERT_OK(index_dump(&st, &before), "dump");
	ASSERT_GE(index_dump_rows(&before), 2 + 2 + 4 + 3 + 2, "rows in the index");
	ASSERT_GT(st.seg_no, 2, "several segments");

	/* 1: rebuild in place */
	ASSERT_OK(store_reindex(&st, &records), "reindex");
	ASSERT_EQ(records, SCRIPT_RECORDS, "records reindexed");
	ASSERT_OK(index_dump(&st, &after), "dump");
	CHECK_SAME_INDEX(&after, &before, "after reindex");

	/* 2: after every row is gone */
	ASSERT_EQ(sqlite3_exec(st.index.db,
			       "DELETE FROM sessions; DELETE FROM chunks; DELETE FROM execs;"
			       " DELETE FROM gaps; DELETE FROM meta; DELETE FROM records;",
			       NULL, NULL, NULL),
		  SQLITE_OK, "delete all rows");
	ASSERT_OK(index_dump(&st, &after), "dump");
	ASSERT_EQ(index_dump_rows(&after), 0, "tables are empty");
	ASSERT_OK(store_reindex(&st, &records), "reindex");
	ASSERT_OK(index_dump(&st, &after), "dump");
	CHECK_SAME_INDEX(&after, &before, "after delete and reindex");

	/* 3: as `sealtrail reindex` opens it: the writer's lock, but no new segment */
	{
		int segs = count_segments();
		struct store ro;

		store_close(&st);
		unlink_index();
		if (ASSERT_OK(store_open(&ro, store_dir(), STORE_WRITE | STORE_INDEX_ONLY),
			      "open to reindex")) {
			ASSERT_EQ(ro.seg_fd, -1, "no segment opened");
			ASSERT_EQ(store_open(&st, store_dir(), STORE_WRITE), -EBUSY,
				  "a second writer is refused meanwhile");
			ASSERT_OK(store_reindex(&ro, &records), "reindex");
			ASSERT_EQ(records, SCRIPT_RECORDS, "records reindexed");
			ASSERT_OK(index_dump(&ro, &after), "dump");
			CHECK_SAME_INDEX(&after, &before, "after reindex without a writer");
			store_close(&ro);
		}
		ASSERT_EQ(count_segments(), segs, "no segment added by reindex");
	}

	/* 4: index.sqlite deleted: the writer's open catches up from the log */
	unlink_index();
	if (ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE), "reopen without index")) {
		ASSERT_EQ(st.next_seq, SCRIPT_RECORDS + 1, "next_seq");
		ASSERT_OK(index_dump(&st, &after), "dump");
		CHECK_SAME_INDEX(&after, &before, "rebuilt on open");
		store_close(&st);
	}
	index_dump_free(&before);
	index_dump_free(&after);
}

/* Write len bytes at off of a file. */
static int poke(const char *path, off_t off, const void *p, size_t len)
{
	int fd = open(path, O_WRONLY);
	int err = 0;

	if (fd < 0)
		return -errno;
	if (pwrite(fd, p, len, off) != (ssize_t)len)
		err = errno ? -errno : -EIO;
	close(fd);
	return err;
}

/* Four segments of TTY records, several in each; returns the number of records. */
static int make_segments(struct kept *k)
{
	struct store st;
	int n = 0;

	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		return 0;
	st.seg_rotate_bytes = 1000; /* 3 envelopes of about 230 bytes */
	while (st.seg_no < 4 &&
	       ASSERT_OK(append_tty(&st, k, S1, STREAM_OUT, 0, "output", 6, T0 + n), "append"))
		n++;
	store_close(&st);
	return n;
}

TEST(store_bad_segment_header_is_damage)
{
	static const struct {
		const char *what;
		off_t off;
		const char *why;
	} cases[] = {
	    {"bad magic", 0, "header"},
	    {"bad version", 11, "header"},
	    {"bad header length", 15, "header"},
	    {"wrong store id", 16, "header"},
	    {"wrong store id, last byte", 31, "header"},
	    {"wrong segment number", 39, "header"},
	    /* the wrapped key is bound to bytes 0..48: it no longer unwraps */
	    {"creation time", 44, "unwrap"},
	    {"wrapped key: nonce", SEG_HEADER_AAD + 3, "unwrap"},
	    {"wrapped key: key", SEG_HEADER_AAD + SEAL_NONCE_LEN + 5, "unwrap"},
	    {"wrapped key: tag", SEG_HEADER_AAD + SEAL_WRAPPED_LEN - 1, "unwrap"},
	};
	struct kept k = {0};
	uint8_t orig[SEG_HEADER_LEN];
	int n = make_segments(&k), fd;

	if (!ASSERT_GT(n, 0, "records") || !ASSERT_GE(count_segments(), 4, "segments"))
		goto out;
	fd = open(seg_path(2), O_RDONLY);
	if (!ASSERT_GE(fd, 0, "open segment 2"))
		goto out;
	ASSERT_EQ(read(fd, orig, sizeof(orig)), SEG_HEADER_LEN, "read header");
	close(fd);

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		uint8_t bad = orig[cases[c].off] ^ 0x01;
		struct seen *s;
		size_t in_seg2 = 0;

		if (!ASSERT_OK(poke(seg_path(2), cases[c].off, &bad, 1), "corrupt header"))
			break;
		s = scan_all();
		if (s && ASSERT_EQ(s->ndamage, 1, cases[c].what)) {
			ASSERT_STREQ(s->damage[0].file, seg_path(2), "damaged file");
			ASSERT_EQ(s->damage[0].off, 0, "damage at offset 0");
			ASSERT_EQ(s->damage[0].bytes, file_size(seg_path(2)), "whole segment");
			ASSERT_TRUE(has_substr(s->damage[0].why, cases[c].why),
				    "reason names the header or the key");
		}
		if (s) {
			/* segments 1, 3 and 4 are all there, in order */
			for (size_t i = 0; i < s->n; i++)
				in_seg2 += s->r[i].seg == 2;
			ASSERT_EQ(in_seg2, 0, "nothing read from segment 2");
			ASSERT_GT(s->n, 0, "records from the other segments");
			for (size_t i = 0, j = 0; i < k.n && j < s->n; i++) {
				if (get_be64(k.recs[i].data + 8) != s->r[j].seq)
					continue; /* one of segment 2's */
				if (!ASSERT_BYTES_EQ(s->r[j].bytes.data, s->r[j].bytes.len,
						     k.recs[i].data, k.recs[i].len,
						     "other segments intact"))
					break;
				j++;
			}
			ASSERT_EQ(s->r[s->n - 1].seq, n, "scan went on to the last record");
			seen_free(s);
		}
		ASSERT_OK(poke(seg_path(2), 0, orig, sizeof(orig)), "restore header");
	}

	/* a segment shorter than its header */
	if (ASSERT_OK(truncate(seg_path(2), 10), "truncate segment 2")) {
		struct seen *s = scan_all();

		if (s && ASSERT_EQ(s->ndamage, 1, "short segment")) {
			ASSERT_STREQ(s->damage[0].file, seg_path(2), "damaged file");
			ASSERT_EQ(s->damage[0].bytes, 10, "bytes");
			ASSERT_EQ(s->r[s->n - 1].seq, n, "scan went on to the last record");
		}
		if (s)
			seen_free(s);
	}
out:
	kept_free(&k);
}

TEST(store_bad_header_of_last_segment_gets_a_gap)
{
	struct kept k = {0};
	struct store st;
	struct seen *s;
	int n = make_segments(&k), last = count_segments();
	uint8_t bad = 0;

	if (!ASSERT_GT(n, 0, "records") || !ASSERT_OK(poke(seg_path(last), 16, &bad, 1), "corrupt"))
		goto out;
	if (ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE), "reopen")) {
		ASSERT_EQ(st.seg_no, last + 1, "new segment");
		store_close(&st);
	}
	s = scan_all();
	if (s && ASSERT_GT(s->n, 0, "records")) {
		ASSERT_EQ(s->r[s->n - 1].type, REC_GAP, "GAP for the unreadable segment");
		ASSERT_EQ(s->r[s->n - 1].seg, last + 1, "GAP in the new segment");
		ASSERT_EQ(s->r[s->n - 1].seq, n + 1, "GAP seq");
	}
	if (s)
		seen_free(s);
out:
	kept_free(&k);
}

/*
 * One byte changed in an envelope in the middle of segment 1, in its
 * ciphertext, in its header (the GCM AAD) or in its tag: the envelope does
 * not open, the scan reports damage at its offset and goes on with the
 * next segment; nothing of the changed record is handed out.
 */
TEST(store_corrupt_record_in_the_middle)
{
	static const struct {
		const char *what;
		uint64_t at; /* from the envelope's start; ~0 = in its tag */
	} cases[] = {
	    {"ciphertext", SEAL_HEADER_LEN + 10},
	    {"header: wall time (AAD)", 24 + 7},
	    {"header: boot id (AAD)", 40},
	    {"header: nonce (AAD)", 104},
	    {"tag", ~0ull},
	};
	struct kept k = {0};
	struct seen *s;
	uint64_t off = 0, len = 0;
	uint8_t orig;
	int n = make_segments(&k), fd;

	s = scan_all();
	if (!ASSERT_GT(n, 4, "records") || !s)
		goto out;
	/* the 2nd record of segment 1, which holds at least 3 */
	for (size_t i = 0; i < s->n; i++)
		if (s->r[i].seq == 2)
			off = s->r[i].off;
	ASSERT_EQ(s->r[2].seg, 1, "3 records in segment 1");
	seen_free(s);
	if (!ASSERT_EQ(off > 0, 1, "record 2 found"))
		goto out;
	len = env_len_at(1, off);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		uint64_t at = off + (cases[c].at == ~0ull ? len - 3 : cases[c].at);
		uint8_t bad;

		fd = open(seg_path(1), O_RDONLY);
		if (!ASSERT_GE(fd, 0, "open") || !ASSERT_EQ(pread(fd, &orig, 1, at), 1, "read"))
			break;
		close(fd);
		bad = orig ^ 0x04;
		if (!ASSERT_OK(poke(seg_path(1), at, &bad, 1), "corrupt"))
			break;
		s = scan_all();
		if (s && ASSERT_EQ(s->ndamage, 1, cases[c].what)) {
			ASSERT_STREQ(s->damage[0].file, seg_path(1), "file");
			ASSERT_EQ(s->damage[0].off, off, "offset of the bad record");
			ASSERT_EQ(s->damage[0].bytes, file_size(seg_path(1)) - off,
				  "rest of the segment");
			ASSERT_TRUE(has_substr(s->damage[0].why, "does not open"), "reason");
			ASSERT_EQ(s->r[0].seq, 1, "record before it");
			ASSERT_EQ(s->r[1].seg, 2, "then the next segment");
			ASSERT_GT(s->r[1].seq, 3, "past the rest of segment 1");
			ASSERT_EQ(s->r[1].off, SEG_HEADER_LEN, "from its start");
			ASSERT_EQ(s->r[s->n - 1].seq, n, "to the end");
		}
		if (s)
			seen_free(s);
		/* the index's way in fails the same way */
		{
			struct store st;
			struct buf raw = {0};
			struct record rec;

			if (ASSERT_OK(store_open(&st, store_dir(), 0), "open read-only")) {
				ASSERT_EQ(store_read_at(&st, 1, off, &raw, &rec), -EBADMSG,
					  "store_read_at of the changed envelope");
				ASSERT_OK(store_read_at(&st, 1, SEG_HEADER_LEN, &raw, &rec),
					  "store_read_at of the one before");
				store_close(&st);
			}
			buf_free(&raw);
		}
		ASSERT_OK(poke(seg_path(1), at, &orig, 1), "restore");
	}
out:
	kept_free(&k);
}

TEST(store_scan_from_segment_and_early_stop)
{
	struct kept k = {0};
	struct store st;
	struct seen *s = calloc(1, sizeof(*s));
	int n = make_segments(&k);

	if (!ASSERT_NOT_NULL(s, "calloc") || !ASSERT_GT(n, 0, "records") ||
	    !ASSERT_OK(store_open(&st, store_dir(), 0), "open read-only"))
		goto out;
	ASSERT_OK(scan(&st, s, 3), "scan from segment 3");
	ASSERT_GT(s->n, 0, "records");
	for (size_t i = 0; i < s->n; i++)
		ASSERT_GE(s->r[i].seg, 3, "segment");
	ASSERT_EQ(s->r[s->n - 1].seq, n, "up to the last");
	for (size_t i = 0; i < s->n; i++)
		buf_free(&s->r[i].bytes);
	memset(s, 0, sizeof(*s));
	s->stop_after = 3;
	ASSERT_EQ(scan(&st, s, 0), 1, "visitor's return value comes back");
	ASSERT_EQ(s->n, 3, "stopped after 3");
	store_close(&st);
out:
	if (s)
		seen_free(s);
	kept_free(&k);
}

/*
 * store_append finishes and queues whatever it is given; when rec_parse
 * rejects the result it only skips indexing it. A record that cannot be
 * parsed (65 fields, type 0) thus goes to disk, and every reader stops at
 * it: the records after it in that segment are lost. No caller builds such
 * a record today, but the store should refuse it and keep the log readable.
 */
TEST(store_append_refuses_unreadable_records)
{
	struct store st;
	struct seen *s;
	struct rb r = {0};
	int rc;

	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		return;
	ASSERT_OK(append_tty(&st, NULL, S1, STREAM_OUT, 0, "before", 6, T0), "good record");
	rb_begin(&r, REC_SESSION_ATTR, S1, T0 + 1);
	for (int i = 0; i < REC_MAX_FIELDS + 1; i++)
		rb_u64(&r, TAG_PID, i);
	rc = rb_append(&st, &r, NULL);
	ASSERT_LT(rc, 0, "record with more than REC_MAX_FIELDS fields refused");
	rb_begin(&r, 0, S1, T0 + 2);
	rc = rb_append(&st, &r, NULL);
	ASSERT_LT(rc, 0, "record of type 0 refused");
	ASSERT_OK(append_tty(&st, NULL, S1, STREAM_OUT, 0, "after", 5, T0 + 3), "good record");
	store_close(&st);
	buf_free(&r.b);

	s = scan_all();
	if (!s)
		return;
	ASSERT_EQ(s->ndamage, 0, "damage reports");
	if (ASSERT_EQ(s->n, 2, "both good records read back"))
		check_seq_from(s, 1, "refused records use no seq");
	seen_free(s);
}

/* ---- sealing: what is on disk, and what a reader without the kek gets ---- */

#define MARKER "tty-secret:7d1c9b2e5f08a4c6:PASSWORD=hunter2:e3b0c44298fc1c14"
#define MARKER_WINDOW 8

static const char *leak_file; /* set by find_marker: the first file holding it */
static char leak_path[512];

/* Does any MARKER_WINDOW-byte piece of MARKER appear in p[0..len)? */
static bool has_marker_piece(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i + MARKER_WINDOW <= sizeof(MARKER) - 1; i++)
		if (memmem(p, len, MARKER + i, MARKER_WINDOW))
			return true;
	return false;
}

static int find_marker(const char *path, const struct stat *sb UNUSED, int flag,
		       struct FTW *ftw UNUSED)
{
	struct buf b = {0};

	if (flag == FTW_F && !buf_read_file(&b, path, 0) && has_marker_piece(b.data, b.len)) {
		snprintf(leak_path, sizeof(leak_path), "%s", path);
		leak_file = leak_path;
	}
	buf_free(&b);
	return 0;
}

TEST(store_no_plaintext_on_disk)
{
	static char big[5000];
	struct buf seg = {0};
	struct store st;
	struct seen *s;
	size_t found = 0;
	int nseg;

	/* the marker many times over, in small and large chunks, across segments */
	for (size_t i = 0; i + sizeof(MARKER) <= sizeof(big); i += sizeof(MARKER))
		memcpy(big + i, MARKER, sizeof(MARKER));
	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		return;
	st.seg_rotate_bytes = 2000;
	ASSERT_OK(append_script(&st, NULL), "append script");
	for (int i = 0; i < 10; i++)
		ASSERT_OK(append_tty(&st, NULL, S1, i & 1 ? STREAM_OUT : STREAM_IN, 3, MARKER,
				     sizeof(MARKER) - 1, T0 + 100 * NS + i),
			  "append marker");
	ASSERT_OK(append_tty(&st, NULL, S1, STREAM_OUT, 3, big, sizeof(big), T0 + 200 * NS),
		  "append big");
	ASSERT_OK(store_seal_epoch(&st, "test"), "seal an epoch: a plain envelope too");
	store_close(&st);
	/* and once more after a recovery, which appends on reopen */
	if (ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE), "reopen")) {
		ASSERT_OK(append_tty(&st, NULL, S1, STREAM_IN, 3, MARKER, sizeof(MARKER) - 1,
				     T0 + 300 * NS),
			  "append marker after reopen");
		store_close(&st);
	}

	/* not vacuous: the marker is there for a reader with the key */
	s = scan_all();
	if (s) {
		for (size_t i = 0; i < s->n; i++)
			found += has_marker_piece(s->r[i].bytes.data, s->r[i].bytes.len);
		ASSERT_EQ(found, 12, "records that hold the marker, read back");
		seen_free(s);
	}
	nseg = count_segments();
	ASSERT_GT(nseg, 2, "several segments");
	for (int n = 1; n <= nseg; n++) {
		if (!ASSERT_OK(buf_read_file(&seg, seg_path(n), 0), "read segment"))
			continue;
		ASSERT_GT(seg.len, 0, "segment read");
		if (!ASSERT_FALSE(has_marker_piece(seg.data, seg.len),
				  "no 8 bytes of the TTY data in the clear in the segment"))
			printf("    ... in %s\n", seg_path(n));
	}
	buf_free(&seg);
	/* nor anywhere else in the store (the index keeps no TTY data) */
	leak_file = NULL;
	ASSERT_OK(nftw(store_dir(), find_marker, 8, FTW_PHYS), "walk the store");
	if (!ASSERT_TRUE(leak_file == NULL, "no TTY data in the clear in any file of the store"))
		printf("    ... in %s\n", leak_file);
}

struct counts {
	size_t records, envelopes, damage;
};

/* A TTY record stamped with the real clocks, as the daemon writes them. */
static int append_tty_now(struct store *st, const char *data)
{
	struct buf b = {0};
	int err;

	err = rec_begin(&b, REC_TTY, S1, clock_ns(CLOCK_REALTIME), clock_ns(CLOCK_BOOTTIME));
	err = err ?: rec_add_u64(&b, TAG_STREAM, STREAM_OUT);
	err = err ?: rec_add_u64(&b, TAG_TTY_INDEX, 3);
	err = err ?: rec_add_bytes(&b, TAG_DATA, data, strlen(data));
	err = err ?: store_append(st, &b);
	buf_free(&b);
	return err;
}

static int count_record(void *arg, const struct record *rec UNUSED, uint32_t seg_no UNUSED,
			uint64_t off UNUSED)
{
	((struct counts *)arg)->records++;
	return 0;
}

static int count_envelope(void *arg, const struct seal_envelope *env UNUSED, uint32_t seg_no UNUSED,
			  uint64_t off UNUSED)
{
	((struct counts *)arg)->envelopes++;
	return 0;
}

static void count_damage(void *arg, const char *file UNUSED, uint64_t off UNUSED,
			 uint64_t bytes UNUSED, const char *why UNUSED)
{
	((struct counts *)arg)->damage++;
}

/*
 * Whoever can read the store but not DIR/keys/kek (an auditor's copy, a
 * backup without the keys) can verify it but not read a record: every read
 * fails with an error, nothing crashes, nothing is written.
 */
TEST(store_read_only_without_kek)
{
	char kek[512], away[512];
	struct verify_opts o = {0};
	struct verify_result r;
	struct buf raw = {0};
	struct record rec;
	struct store st;
	struct seen *s;
	long long off = 0;
	int nseg;

	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		return;
	st.seg_rotate_bytes = 1500;
	/* real clocks: verify checks them against the epoch record's */
	for (int i = 0; i < SCRIPT_RECORDS; i++)
		ASSERT_OK(append_tty_now(&st, "some terminal output\r\n"), "append");
	ASSERT_OK(store_seal_epoch(&st, "test"), "seal");
	store_close(&st);
	nseg = count_segments();
	ASSERT_GT(nseg, 1, "segments");
	snprintf(kek, sizeof(kek), "%s/keys/kek", store_dir());
	snprintf(away, sizeof(away), "%s/kek.away", test_dir());
	if (!ASSERT_OK(rename(kek, away), "take keys/kek away"))
		return;

	/* verify needs no key */
	ASSERT_OK(store_verify(store_dir(), &o, &r), "store_verify runs");
	ASSERT_TRUE(r.ok, r.reason);
	ASSERT_EQ(r.records, SCRIPT_RECORDS + 1, "records verified");
	ASSERT_EQ(r.epochs, 1, "epochs");

	/* the index is encrypted under a key derived from the kek too */
	ASSERT_EQ(store_open(&st, store_dir(), 0), -ENOKEY, "read-only open without the kek");
	/* the segments' side of it: a reader whose kek is gone once its index is open */
	if (ASSERT_OK(rename(away, kek), "put keys/kek back") &&
	    ASSERT_OK(store_open(&st, store_dir(), 0), "read-only open") &&
	    ASSERT_OK(rename(kek, away), "take keys/kek away again")) {
		struct counts c = {0};
		struct store_visitor ev = {
		    .damage = count_damage, .arg = &c, .envelope = count_envelope};

		off = q_int(&st, "SELECT offset FROM chunks WHERE seq = 4");
		ASSERT_GT(off, SEG_HEADER_LEN, "the index says where");
		memset(st.kek, 0, sizeof(st.kek));
		st.have_kek = false;
		ASSERT_NEQ(store_read_at(&st, 1, off, &raw, &rec), 0, "store_read_at fails");
		ASSERT_NEQ(store_read_at(&st, 1, SEG_HEADER_LEN, &raw, &rec), 0,
			   "store_read_at of the first record fails");
		ASSERT_EQ(raw.len, 0, "no plaintext handed out");
		/* a scan that opens records: one damage report per segment, no record */
		s = calloc(1, sizeof(*s));
		if (ASSERT_NOT_NULL(s, "calloc")) {
			ASSERT_OK(scan(&st, s, 0), "store_scan");
			ASSERT_EQ(s->n, 0, "no record opened");
			ASSERT_EQ(s->ndamage, nseg, "every segment reported");
			for (size_t i = 0; i < s->ndamage; i++)
				ASSERT_TRUE(has_substr(s->damage[i].why, "no key"), "reason");
			seen_free(s);
		}
		/* a scan of the envelopes alone needs no key */
		ASSERT_OK(store_scan(&st, &ev), "envelope-only scan");
		ASSERT_EQ(c.envelopes, SCRIPT_RECORDS + 1, "every envelope visited");
		ASSERT_EQ(c.damage, 0, "no damage");
		ev.record = count_record;
		c = (struct counts){0};
		ASSERT_OK(store_scan(&st, &ev), "scan with records");
		ASSERT_EQ(c.records, 0, "no record opened");
		ASSERT_EQ(c.damage, nseg, "damage reported per segment");
		store_close(&st);
	}
	/* the writer refuses: it could not seal anything */
	ASSERT_NEQ(store_open(&st, store_dir(), STORE_WRITE), 0, "writer without the kek");
	ASSERT_EQ(count_segments(), nseg, "no segment added");

	/* with the kek back, everything reads again */
	if (ASSERT_OK(rename(away, kek), "put keys/kek back") &&
	    ASSERT_OK(store_open(&st, store_dir(), 0), "read-only open")) {
		if (ASSERT_OK(store_read_at(&st, 1, off, &raw, &rec), "store_read_at"))
			ASSERT_EQ(rec.seq, 4, "seq");
		store_close(&st);
	}
	buf_free(&raw);
}

/*
 * A damaged tail whose header claims seq 2^64 - 1 (changing it takes no
 * key). Recovery once took the next sequence number from the largest seq
 * of any header it walked, so next_seq wrapped to 0: the GAP and all that
 * followed were sealed with seq 0, which seal_parse rejects, and the new
 * segment read as damage from its first byte. Whatever recovery makes of
 * such a header, what the writer writes after it must stay readable.
 */
TEST(store_recovery_seq_overflow)
{
	uint8_t max[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	struct store st;
	struct seen *s;
	uint64_t last = 0;
	int rc;

	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		return;
	for (int i = 0; i < 3; i++)
		ASSERT_OK(append_tty(&st, NULL, S1, STREAM_OUT, 0, "output", 6, T0 + i), "append");
	store_close(&st);
	s = scan_all();
	if (!s || !ASSERT_EQ(s->n, 3, "records"))
		goto out;
	last = s->r[2].off;
	seen_free(s);
	s = NULL;
	/* the last envelope's seq field, in its header (the tag no longer matches) */
	if (!ASSERT_OK(poke(seg_path(1), last + 8, max, sizeof(max)), "seq := 2^64 - 1"))
		goto out;
	rc = store_open(&st, store_dir(), STORE_WRITE);
	if (rc == 0) {
		ASSERT_NEQ(st.next_seq, 0, "next_seq did not wrap to 0");
		ASSERT_OK(append_tty(&st, NULL, S1, STREAM_OUT, 0, "after", 5, T0 + 10),
			  "append after recovery");
		store_close(&st);
	}
	s = scan_all();
	if (!s)
		goto out;
	for (size_t i = 0; i < s->ndamage; i++)
		if (!ASSERT_STREQ(s->damage[i].file, seg_path(1),
				  "damage only where the header was changed"))
			printf("    ... %s @%llu: %s\n", s->damage[i].file,
			       (unsigned long long)s->damage[i].off, s->damage[i].why);
	if (rc == 0)
		ASSERT_EQ(s->n, 2 + 2, "2 good records, the GAP and the new one, all readable");
out:
	if (s)
		seen_free(s);
}

/* ---- DIR/resume: a writer goes on from the last epoch close ---- */

static const char *resume_path(void)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/resume", store_dir());
	return path;
}

/*
 * The whole store verifies, and the latest checkpoint signs the tree of the
 * first signed_size records (all before the last epoch record).
 */
static void check_verifies(const char *what, uint64_t records, uint32_t epochs,
			   uint64_t signed_size)
{
	char latest[600];
	struct verify_opts o = {.against_file = latest};
	struct verify_result r;

	snprintf(latest, sizeof(latest), "%s/checkpoints/latest", store_dir());
	if (!ASSERT_OK(store_verify(store_dir(), &o, &r), "store_verify runs"))
		return;
	if (!ASSERT_TRUE(r.ok, r.reason))
		fprintf(stderr, "  %s: %s at %s byte %llu, seq %llu\n", what, r.reason, r.file,
			(unsigned long long)r.offset, (unsigned long long)r.seq);
	ASSERT_EQ(r.records, records, "records verified");
	ASSERT_EQ(r.epochs, epochs, "closed epochs");
	ASSERT_TRUE(r.checkpoint_ok, "checkpoints/latest agrees with the log");
	ASSERT_EQ(r.checkpoint_size, signed_size, "tree size the latest checkpoint signs");
}

/*
 * One writer session: open, n records, an epoch closed, m more records
 * (after the resume point, so a restart must read them), close. Returns
 * what st.resumed_seq was at the open.
 */
static uint64_t writer_run(struct kept *k, int n, int m, uint64_t *w)
{
	struct store st;
	uint64_t resumed;

	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "open writer"))
		return UINT64_MAX;
	resumed = st.resumed_seq;
	for (int i = 0; i < n + m; i++) {
		ASSERT_OK(append_tty(&st, k, S1, STREAM_OUT, 0, "resume me", 9, *w += NS),
			  "append");
		if (i == n - 1)
			ASSERT_OK(store_seal_epoch(&st, "test"), "close an epoch");
	}
	store_close(&st);
	return resumed;
}

TEST(store_resume_goes_on_from_the_last_close)
{
	struct kept k = {0};
	struct seen *s = NULL;
	uint64_t w = T0, resumed;
	struct stat sb;

	ASSERT_EQ(writer_run(&k, 4, 2, &w), 0, "a new store has nothing to resume from");
	if (!ASSERT_OK(stat(resume_path(), &sb), "the epoch close wrote DIR/resume"))
		goto out;
	ASSERT_EQ(sb.st_mode & 0777, 0600, "DIR/resume is root's only");
	/* records 1-4, the epoch record 5, then 6 and 7 after it */
	resumed = writer_run(&k, 3, 1, &w);
	ASSERT_EQ(resumed, 5, "the second writer went on after the epoch record");
	/* 8-10, epoch record 11, 12; then 13, 14, epoch record 15 */
	resumed = writer_run(&k, 2, 0, &w);
	ASSERT_EQ(resumed, 11, "the third from the second's close");
	/*
	 * The chain and the tree it went on with are the log's: verify says so,
	 * and the checkpoint signed last covers the log it recomputes.
	 */
	check_verifies("after two resumed writers", 15, 3, 14);
	s = scan_all();
	if (s) {
		ASSERT_EQ(s->ndamage, 0, "damage reports");
		check_seq_from(s, 1, "seq across resumed writers");
		ASSERT_EQ(s->n, 15, "records");
	}
out:
	if (s)
		seen_free(s);
	kept_free(&k);
}

static int rewrite_resume_with(const struct buf *b);

static int rewrite_resume(void (*change)(struct buf *b))
{
	struct buf b = {0};
	int err = buf_read_file(&b, resume_path(), 0);

	if (!err) {
		change(&b);
		err = rewrite_resume_with(&b);
	}
	buf_free(&b);
	return err;
}

static void flip_a_byte(struct buf *b)
{
	b->data[100] ^= 1;
}

static void cut_short(struct buf *b)
{
	b->len -= 7;
}

static void fix_checksum(struct buf *b);

/* Another position with a right checksum: as if the file had been forged. */
static void point_elsewhere(struct buf *b)
{
	uint8_t *pos = b->data + 24 + ST_ID_LEN + 4; /* last_off */

	put_be64(pos, get_be64(pos) - 1);
	fix_checksum(b);
}

static void fix_checksum(struct buf *b)
{
	unsigned mdlen;

	EVP_Digest(b->data, b->len - SEAL_HASH_LEN, b->data + b->len - SEAL_HASH_LEN, &mdlen,
		   EVP_sha256(), NULL);
}

/* A tree the epoch record does not sign, with a right checksum. */
static void forge_tree(struct buf *b)
{
	b->data[STORE_RESUME_LEN - SEAL_HASH_LEN - 64 * SEAL_HASH_LEN] ^= 0x80;
	fix_checksum(b);
}

/* Another next key than the epoch record certifies, with a right checksum. */
static void forge_next_key(struct buf *b)
{
	b->data[24 + ST_ID_LEN + 28 + SEAL_HASH_LEN + 4] ^= 1;
	fix_checksum(b);
}

TEST(store_resume_ignored_unless_it_matches_the_log)
{
	static void (*const changes[])(struct buf *) = {flip_a_byte, cut_short, point_elsewhere,
							forge_tree, forge_next_key};
	struct kept k = {0};
	uint64_t w = T0, records = 0;
	uint32_t epochs = 0;

	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		writer_run(&k, 2, 1, &w);
		records += 4;
		epochs++;
		if (!ASSERT_OK(rewrite_resume(changes[i]), "change DIR/resume"))
			break;
		if (i == 0) {
			struct store st;

			/* the full read may fork the chain: a later start must not go back */
			if (ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE), "open")) {
				ASSERT_EQ(st.resumed_seq, 0, "not used");
				ASSERT_NEQ(access(resume_path(), F_OK), 0,
					   "an unused DIR/resume is removed at once");
				store_close(&st);
			}
		}
		/* read the whole log instead, as without the file: the same result */
		ASSERT_EQ(writer_run(&k, 1, 1, &w), 0, "a wrong DIR/resume is not used");
		records += 3;
		epochs++;
		check_verifies("after a wrong DIR/resume", records, epochs, records - 2);
	}
	/* one from another store, and none at all */
	writer_run(&k, 1, 0, &w);
	{
		struct store_resume r;
		struct buf b = {0};
		uint8_t other[ST_ID_LEN] = {1};
		char why[128];

		if (ASSERT_OK(buf_read_file(&b, resume_path(), 0), "read DIR/resume")) {
			ASSERT_EQ(store_resume_parse(b.data, b.len, other, &r, why), -EINVAL,
				  "another store's id");
			ASSERT_STREQ(why, "from another store", "why");
			b.data[3] ^= 1;
			ASSERT_EQ(store_resume_parse(b.data, b.len, other, &r, why), -EINVAL,
				  "magic checked first");
			b.data[3] ^= 1;
			b.data[50] ^= 1;
			ASSERT_EQ(store_resume_parse(b.data, b.len, other, &r, why), -EBADMSG,
				  "then the checksum");
		}
		buf_free(&b);
	}
	ASSERT_OK(unlink(resume_path()), "remove DIR/resume");
	ASSERT_EQ(writer_run(&k, 1, 0, &w), 0, "no DIR/resume: the whole log is read");
	check_verifies("without DIR/resume", records + 4, epochs + 2, records + 3);
	kept_free(&k);
}

static int rewrite_resume_with(const struct buf *b)
{
	int fd = open(resume_path(), O_WRONLY | O_TRUNC | O_CLOEXEC), err;

	err = fd < 0 ? -errno : write_all(fd, b->data, b->len);
	if (fd >= 0)
		close(fd);
	return err;
}

/* An old DIR/resume (a crash before the next one was written) is still a good start. */
TEST(store_resume_from_an_older_close)
{
	struct kept k = {0};
	struct buf old = {0};
	uint64_t w = T0;

	writer_run(&k, 2, 0, &w); /* 1, 2, epoch 3 */
	if (!ASSERT_OK(buf_read_file(&old, resume_path(), 0), "keep this DIR/resume"))
		goto out;
	writer_run(&k, 2, 2, &w); /* 4, 5, epoch 6, 7, 8 */
	if (!ASSERT_OK(rewrite_resume_with(&old), "put the older one back"))
		goto out;
	ASSERT_EQ(writer_run(&k, 1, 0, &w), 3, "went on from the older close"); /* 9, epoch 10 */
	check_verifies("from an older DIR/resume", 10, 3, 9);
out:
	buf_free(&old);
	kept_free(&k);
}

/* The tail after the resume point is read as before: a torn record there is a gap. */
TEST(store_resume_then_torn_tail)
{
	struct kept k = {0};
	struct seen *s = NULL;
	struct store st;
	uint64_t w = T0, off, len;

	writer_run(&k, 2, 3, &w); /* 1, 2, epoch 3, 4, 5, 6 */
	s = scan_all();
	if (!s || !ASSERT_EQ(s->n, 6, "records"))
		goto out;
	off = s->r[5].off;
	len = env_len_at(1, off);
	if (!ASSERT_OK(truncate(seg_path(1), off + len / 2), "tear record 6"))
		goto out;
	seen_free(s);
	s = NULL;
	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE), "reopen after the tear"))
		goto out;
	ASSERT_EQ(st.resumed_seq, 3, "went on from the epoch record");
	ASSERT_EQ(st.next_seq, 8, "the gap took seq 7, after the torn 6 the index had seen");
	store_close(&st);
	s = scan_all();
	if (s) {
		ASSERT_EQ(s->ndamage, 1, "the torn record is damage");
		ASSERT_EQ(s->n, 6, "records 1-5 and the gap");
		if (s->n == 6)
			ASSERT_EQ(s->r[5].type, REC_GAP, "the last record is the gap");
	}
out:
	if (s)
		seen_free(s);
	kept_free(&k);
}

/* An index behind DIR/resume (deleted, or from another schema) needs the whole log. */
TEST(store_resume_not_used_when_the_index_lags)
{
	struct kept k = {0};
	uint64_t w = T0;
	struct store st;

	writer_run(&k, 3, 1, &w); /* 1-3, epoch 4, 5 */
	unlink_index();
	if (ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE), "reopen without an index")) {
		ASSERT_EQ(st.resumed_seq, 0, "whole log read");
		ASSERT_EQ(q_int(&st, "SELECT count(*) FROM chunks"), 4,
			  "every chunk indexed again");
		store_close(&st);
	}
	kept_free(&k);
}

/* The epoch record is the first envelope of a new segment (rotation). */
TEST(store_resume_after_a_rotation)
{
	struct kept k = {0};
	struct store st;
	uint64_t w = T0;

	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		goto out;
	st.seg_rotate_bytes = SEG_HEADER_LEN + 1; /* every envelope in a segment of its own */
	for (int i = 0; i < 3; i++)
		ASSERT_OK(append_tty(&st, &k, S1, STREAM_OUT, 0, "rotate", 6, w += NS), "append");
	ASSERT_OK(store_seal_epoch(&st, "test"), "close an epoch");
	ASSERT_EQ(st.seg_no, 4, "the epoch record rotated into segment 4");
	store_close(&st);
	ASSERT_EQ(writer_run(&k, 1, 0, &w), 4, "resumed from it");
	check_verifies("after a rotated epoch record", 6, 2, 5);
out:
	kept_free(&k);
}

/*
 * A crash after the resume point: records the index never committed are
 * read back from the log after it, and indexed.
 */
TEST(store_resume_catches_the_index_up_after_it)
{
	struct kept k = {0};
	struct store st;
	uint64_t w = T0;
	int status;
	pid_t pid;

	writer_run(&k, 2, 0, &w); /* 1, 2, epoch 3 */
	pid = fork();
	if (pid == 0) {
		static uint8_t chunk[300000];
		int err = store_open(&st, store_dir(), STORE_WRITE);

		fill_random(chunk, sizeof(chunk), 3);
		/* 4 x 300 kB: written past the 1 MiB buffer, never synced nor indexed */
		for (int i = 0; i < 4 && !err; i++)
			err = append_tty(&st, NULL, S1, STREAM_OUT, 0, chunk, sizeof(chunk),
					 T0 + 100 + i);
		_exit(err ? 1 : 0);
	}
	if (!ASSERT_GT(pid, 0, "fork") || !ASSERT_EQ(waitpid(pid, &status, 0), pid, "waitpid") ||
	    !ASSERT_EQ(status, 0, "writer exit status"))
		goto out;
	if (ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE), "reopen after the crash")) {
		ASSERT_EQ(st.resumed_seq, 3, "went on from the epoch record");
		ASSERT_EQ(q_int(&st, "SELECT count(*) FROM chunks"), 2 + 4,
			  "the 4 chunks on disk after it indexed");
		ASSERT_EQ(st.next_seq, 8, "seq goes on after them");
		store_close(&st);
	}
out:
	kept_free(&k);
}

/* ---- the backlog (store/backlog.h) ---- */

/*
 * Queue a tty record of len bytes through store_append(); keep it as it
 * will be once sealed as the seq-th record (queued ones are finished only
 * when they come out).
 */
static int append_expect(struct store *st, struct kept *k, size_t len, uint64_t seq)
{
	static uint8_t data[200000];
	struct rb r = {0};
	int err;

	fill_random(data, len, seq);
	rb_begin(&r, REC_TTY, S1, T0 + seq * NS);
	rb_u64(&r, TAG_STREAM, STREAM_OUT);
	rb_bytes(&r, TAG_DATA, data, len);
	if (k && k->n < sizeof(k->recs) / sizeof(k->recs[0])) {
		k->recs[k->n] = (struct buf){0};
		r.err = r.err ?: buf_add(&k->recs[k->n], r.b.data, r.b.len);
		r.err = r.err ?: rec_finish(&k->recs[k->n], seq);
		k->n++;
	}
	err = r.err ?: store_append(st, &r.b);
	buf_free(&r.b);
	return err;
}

/* A new store whose writer has a backlog of max bytes. */
static bool open_with_backlog(struct store *st, uint64_t max)
{
	return ASSERT_OK(store_open(st, store_dir(), STORE_WRITE | STORE_CREATE), "create") &&
	       ASSERT_OK(store_backlog_open(st, max), "backlog");
}

/* The log holds exactly the records of k, with seq 1, 2, ..., byte for byte. */
static void check_log_is(const struct kept *k)
{
	struct seen *s = scan_all();

	if (!s)
		return;
	ASSERT_EQ(s->n, k->n, "records in the log");
	check_seq_from(s, 1, "seq");
	check_same(s, 0, k, "in order, byte for byte");
	seen_free(s);
}

/*
 * A record the index cannot take is stored all the same, and the caller
 * is told all is well: the log is what counts, the index is rebuilt from
 * it (a session's end must not be given up because its index row failed).
 */
TEST(store_append_stores_what_the_index_refuses)
{
	struct kept k = {0};
	struct store st;
	uint64_t seq = 1;

	if (!ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE | STORE_CREATE), "create"))
		goto out;
	ASSERT_OK(append_expect(&st, &k, 100, seq++), "append");
	ASSERT_OK(store_sync(&st), "sync");
	ASSERT_EQ(sqlite3_exec(st.index.db, "DROP TABLE chunks", NULL, NULL, NULL), SQLITE_OK,
		  "break the index");
	ASSERT_OK(append_expect(&st, &k, 200, seq++), "append what the index refuses");
	ASSERT_OK(append_expect(&st, &k, 300, seq++), "and the next");
	ASSERT_EQ(st.index_errors, 2, "counted");
	ASSERT_EQ(st.next_seq, seq, "both sealed");
	store_close(&st);
	check_log_is(&k);
out:
	kept_free(&k);
}

static long long memfd_blocks(int fd)
{
	struct stat sb;

	return fstat(fd, &sb) ? -1 : (long long)sb.st_blocks;
}

/* First in, first out, byte for byte, and the memory goes back as it goes. */
TEST(backlog_fifo_gives_memory_back)
{
	static uint8_t rec[1 << 20];
	struct buf out = {0};
	struct backlog b;

	if (!ASSERT_OK(backlog_open(&b, 64ull << 20), "backlog_open"))
		return;
	for (int i = 0; i < 24; i++) {
		memset(rec, 'a' + i, sizeof(rec));
		if (!ASSERT_OK(backlog_put(&b, rec, sizeof(rec) - i), "put"))
			goto out;
	}
	ASSERT_EQ(b.records, 24, "records queued");
	ASSERT_EQ(backlog_bytes(&b), 24 * (12 + sizeof(rec)) - (23 * 24 / 2), "bytes queued");
	ASSERT_GE(memfd_blocks(b.fd) * 512, 24ll << 20, "memory held");
	for (int i = 0; i < 20; i++) {
		if (!ASSERT_EQ(backlog_take(&b, &out), 1, "take") ||
		    !ASSERT_EQ(out.len, sizeof(rec) - i, "length"))
			goto out;
		memset(rec, 'a' + i, sizeof(rec));
		if (!ASSERT_MEMEQ(out.data, rec, out.len, "bytes"))
			goto out;
	}
	/* 20 MiB taken out: all but the last 8 MiB step of it given back */
	ASSERT_LT(memfd_blocks(b.fd) * 512, 13ll << 20, "taken-out memory given back");
	while (backlog_take(&b, &out) == 1)
		;
	ASSERT_EQ(b.records, 0, "empty");
	ASSERT_EQ(memfd_blocks(b.fd), 0, "an empty backlog holds no memory");
	ASSERT_EQ(b.head, 0, "starts afresh");
	ASSERT_EQ(backlog_take(&b, &out), 0, "nothing more");
	ASSERT_EQ(b.peak_bytes, 24 * (12 + sizeof(rec)) - (23 * 24 / 2), "peak");
	ASSERT_EQ(b.queued_records, 24, "queued in total");
	/* the limit holds, framing included */
	ASSERT_EQ(backlog_put(&b, rec, 1 << 20), 0, "fits");
	ASSERT_FALSE(backlog_fits(&b, 63ull << 20), "63 MiB more does not");
out:
	buf_free(&out);
	backlog_close(&b);
}

/* The default limit: 512 MiB, 1/16 of RAM, 1/4 of the cgroup's memory limit: the lowest. */
TEST(backlog_default_max_fits_the_cgroup)
{
	uint64_t ram = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t want = ram / 16 < BACKLOG_DEFAULT_MAX ? ram / 16 : BACKLOG_DEFAULT_MAX;

	ASSERT_EQ(backlog_default_max(0), want, "no cgroup limit");
	ASSERT_EQ(backlog_default_max(256ull << 20), 64ull << 20, "a quarter of 256 MiB");
	ASSERT_EQ(backlog_default_max(64ull << 30), want, "a cgroup limit above RAM's share");
}

/*
 * Deferred records are sealed later, in the order they came, with the
 * seq of that order; once one waits, the next waits too, deferring or
 * not; a drain seals at least one record and at most its budget's worth.
 */
TEST(store_backlog_keeps_order)
{
	struct kept k = {0};
	struct store st;
	uint64_t seq = 1;

	if (!open_with_backlog(&st, 16ull << 20))
		goto out;
	st.defer = true;
	for (int i = 0; i < 10; i++)
		ASSERT_OK(append_expect(&st, &k, 1000 * (i + 1), seq++), "append deferred");
	ASSERT_EQ(st.next_seq, 1, "nothing sealed yet");
	ASSERT_EQ(st.backlog.records, 10, "queued");
	st.defer = false;
	ASSERT_OK(append_expect(&st, &k, 5, seq++), "append behind the queue");
	ASSERT_EQ(st.backlog.records, 11, "queued behind the others");
	ASSERT_OK(store_drain(&st, 1), "drain one");
	ASSERT_EQ(st.next_seq, 2, "at least one record sealed");
	ASSERT_OK(store_drain(&st, 2500), "drain 2500 bytes");
	ASSERT_EQ(st.next_seq, 4, "records of 2000 and 3000 bytes: the second one ends it");
	ASSERT_OK(store_drain(&st, UINT64_MAX), "drain all");
	ASSERT_EQ(st.backlog.records, 0, "empty");
	ASSERT_OK(append_expect(&st, &k, 7, seq++), "append");
	ASSERT_EQ(st.next_seq, seq, "no backlog, not deferring: sealed at once");
	ASSERT_EQ(st.backlog.queued_records, 11, "queued in total");
	ASSERT_OK(store_sync(&st), "sync");
	store_close(&st);
	check_log_is(&k);
out:
	kept_free(&k);
}

/* A full backlog seals its oldest to make room; a record over the limit goes after it. */
TEST(store_backlog_full_seals_the_oldest)
{
	struct kept k = {0};
	struct store st;
	uint64_t seq = 1;

	if (!open_with_backlog(&st, 100000))
		goto out;
	st.defer = true;
	for (int i = 0; i < 30; i++) {
		ASSERT_OK(append_expect(&st, &k, 20000, seq++), "append");
		ASSERT_LE(backlog_bytes(&st.backlog), 100000, "within the limit");
	}
	ASSERT_EQ(st.backlog.records, 4, "as many as fit");
	ASSERT_EQ(st.next_seq, 27, "the others sealed, oldest first");
	ASSERT_OK(append_expect(&st, &k, 150000, seq++), "a record larger than the limit");
	ASSERT_EQ(st.backlog.records, 0, "sealed after all that waited");
	ASSERT_OK(append_expect(&st, &k, 10, seq++), "append");
	ASSERT_EQ(st.backlog.records, 1, "deferring again");
	/* closing seals what waits */
	store_close(&st);
	check_log_is(&k);
out:
	kept_free(&k);
}

/*
 * store_pace: a tick with STORE_BURST_BYTES appended turns deferring on,
 * one with STORE_BURST_GOES_ON_BYTES keeps it on, a quieter one off, and
 * a backlog older than BACKLOG_MAX_AGE_NS is sealed however busy the
 * ticks; store_append notices a burst before the tick.
 * Access records go ahead of the queue.
 */
TEST(store_backlog_pace)
{
	struct kept k = {0};
	struct store st;
	uint64_t seq = 1, now;
	struct buf acc = {0};

	if (!open_with_backlog(&st, 64ull << 20))
		goto out;
	for (uint64_t n = 0; n < STORE_BURST_BYTES; n += 190000)
		ASSERT_OK(append_expect(&st, &k, 190000, seq++), "append");
	ASSERT_TRUE(st.defer, "a burst within the tick: deferring");
	ASSERT_EQ(st.backlog.records, 1, "and queueing from there on");
	now = st.backlog.oldest_ns + 1;
	store_pace(&st, now);
	ASSERT_TRUE(st.defer, "the tick was busy: deferring");
	for (uint64_t n = 0; n < 2 * STORE_BURST_GOES_ON_BYTES; n += 190000)
		ASSERT_OK(append_expect(&st, &k, 190000, seq++), "append");
	store_pace(&st, now + 1);
	ASSERT_TRUE(st.defer, "a tick with less than a burst keeps a burst going");
	for (uint64_t n = 0; n < STORE_BURST_GOES_ON_BYTES - 190000; n += 190000)
		ASSERT_OK(append_expect(&st, &k, 190000, seq++), "append");
	store_pace(&st, now + 1);
	ASSERT_FALSE(st.defer, "a quiet tick: sealing");
	for (uint64_t n = 0; n < 2 * STORE_BURST_GOES_ON_BYTES; n += 190000)
		ASSERT_OK(append_expect(&st, &k, 190000, seq++), "append");
	store_pace(&st, now + 1);
	ASSERT_FALSE(st.defer, "the same tick does not start one");
	for (uint64_t n = 0; n < STORE_BURST_BYTES; n += 190000)
		ASSERT_OK(append_expect(&st, &k, 190000, seq++), "append");
	ASSERT_FALSE(st.defer, "not before the tick while the backlog drains");
	store_pace(&st, now + 2);
	ASSERT_TRUE(st.defer, "a busy tick: deferring");
	if (ASSERT_OK(rec_begin(&acc, REC_ACCESS, NULL, T0, 1), "access record")) {
		uint64_t sealed = st.next_seq;

		rec_add_str(&acc, TAG_COMMAND, "sessions");
		ASSERT_OK(store_append_now(&st, &acc), "store_append_now");
		ASSERT_EQ(st.next_seq, sealed + 1, "access record sealed ahead of the backlog");
	}
	for (uint64_t n = 0; n < STORE_BURST_BYTES; n += 190000)
		ASSERT_OK(append_expect(&st, NULL, 190000, seq++), "append");
	store_pace(&st, now + BACKLOG_MAX_AGE_NS);
	ASSERT_FALSE(st.defer, "busy, but the oldest record waited 10 s: sealing");
	ASSERT_OK(store_drain(&st, UINT64_MAX), "drain");
	store_close(&st);
	/* without a backlog nothing is ever deferred */
	if (ASSERT_OK(store_open(&st, store_dir(), STORE_WRITE), "reopen")) {
		for (uint64_t n = 0; n < 2 * STORE_BURST_BYTES; n += 190000)
			ASSERT_OK(append_expect(&st, NULL, 190000, 1), "append");
		store_pace(&st, now);
		ASSERT_FALSE(st.defer, "no backlog: never deferring");
		store_close(&st);
	}
out:
	buf_free(&acc);
	kept_free(&k);
}

/*
 * Closing the backlog (sealtraild's shutdown) seals what waits, and
 * everything after is sealed at once however large; the access record
 * sealed ahead of the queue is in the log before what waited.
 */
TEST(store_backlog_close_seals_and_stops_deferring)
{
	struct kept k = {0};
	struct seen *s = NULL;
	struct buf acc = {0};
	struct store st;
	uint64_t seq = 1;

	if (!open_with_backlog(&st, 16ull << 20))
		goto out;
	st.defer = true;
	for (int i = 0; i < 3; i++)
		ASSERT_OK(append_expect(&st, &k, 1000, seq + 1 + i), "append deferred");
	if (ASSERT_OK(rec_begin(&acc, REC_ACCESS, NULL, T0, 1), "access record")) {
		rec_add_str(&acc, TAG_COMMAND, "status");
		ASSERT_OK(store_append_now(&st, &acc), "store_append_now");
		ASSERT_EQ(st.next_seq, 2, "sealed ahead: seq 1");
	}
	store_backlog_close(&st);
	ASSERT_EQ(st.next_seq, 5, "what waited is sealed");
	ASSERT_FALSE(st.defer, "not deferring");
	seq = 5;
	for (uint64_t n = 0; n < 2 * STORE_BURST_BYTES; n += 190000)
		ASSERT_OK(append_expect(&st, NULL, 190000, seq++), "append");
	ASSERT_EQ(st.next_seq, seq, "a burst after the close is sealed at once");
	store_close(&st);
	s = scan_all();
	if (s && ASSERT_EQ(s->n, seq - 1, "records in the log")) {
		ASSERT_EQ(s->r[0].type, REC_ACCESS, "the access record first");
		check_seq_from(s, 1, "seq");
		/* k holds the 3 deferred records, as sealed with seq 2, 3, 4 */
		check_same(s, 1, &k, "then what waited, byte for byte");
	}
out:
	if (s)
		seen_free(s);
	buf_free(&acc);
	kept_free(&k);
}

/*
 * The mark sealtraild takes when a session ends: reached once what was
 * queued before it is sealed, although more was queued after it.
 */
TEST(store_backlog_mark_ignores_what_came_after)
{
	struct store st;
	uint64_t mark, seq = 1;

	if (!open_with_backlog(&st, 16ull << 20))
		return;
	ASSERT_TRUE(store_backlog_sealed(&st, store_backlog_mark(&st)), "nothing queued");
	st.defer = true;
	for (int i = 0; i < 5; i++)
		ASSERT_OK(append_expect(&st, NULL, 1000, seq++), "append");
	mark = store_backlog_mark(&st);
	for (int i = 0; i < 50; i++)
		ASSERT_OK(append_expect(&st, NULL, 1000, seq++), "append after the mark");
	ASSERT_OK(store_drain(&st, 4000), "drain 4 records");
	ASSERT_FALSE(store_backlog_sealed(&st, mark), "one of the 5 still waits");
	ASSERT_OK(store_drain(&st, 1), "drain 1 record");
	ASSERT_TRUE(store_backlog_sealed(&st, mark), "the 5 are sealed");
	ASSERT_EQ(st.backlog.records, 50, "what came after still waits");
	store_close(&st);
}
