/*
 * The index encrypted on disk (store/cryptvfs.h): session content reaches
 * no byte of index.sqlite, its WAL or a temporary file, by any route SQLite
 * takes; it reads back (LIKE included); a changed byte, a moved page, another
 * key or another store is an error, never garbage; an index from before the
 * encryption is replaced.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/cryptvfs.h"
#include "store/store.h"
#include "test.h"

#define MARKER "QZXMARKER7731"
#define EXECS 3000

static const uint8_t key_a[INDEX_KEY_LEN] = {0xa1, 0xa2, 0xa3};
static const uint8_t key_b[INDEX_KEY_LEN] = {0xb1, 0xb2, 0xb3};
static const uint8_t id_a[ST_ID_LEN] = {0x11, 0x22};
static const uint8_t id_b[ST_ID_LEN] = {0x33, 0x44};

/*
 * A VFS under the others, as the default: it sees every file SQLite opens
 * on disk and every byte written to it, by whichever route (database, WAL,
 * journal, temporary file), and counts the marker in them.
 */
struct spy_file {
	sqlite3_file base;
	/* the root VFS's file follows */
};

static struct {
	sqlite3_vfs vfs;
	sqlite3_vfs *root;
	int opens, temp_opens, journal_opens;
	int marker_writes;
} spy;

#define SPY_REAL(f) ((sqlite3_file *)((struct spy_file *)(f) + 1))

static bool has_marker(const void *p, size_t n)
{
	/* any 8 bytes of it: a row may straddle two pages */
	static const char m[] = MARKER;

	for (size_t i = 0; i + 8 <= sizeof(m) - 1; i++)
		if (memmem(p, n, m + i, 8))
			return true;
	return false;
}

static int spy_close(sqlite3_file *f)
{
	return SPY_REAL(f)->pMethods->xClose(SPY_REAL(f));
}

static int spy_read(sqlite3_file *f, void *b, int n, sqlite3_int64 off)
{
	return SPY_REAL(f)->pMethods->xRead(SPY_REAL(f), b, n, off);
}

static int spy_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 off)
{
	spy.marker_writes += has_marker(b, n);
	return SPY_REAL(f)->pMethods->xWrite(SPY_REAL(f), b, n, off);
}

static int spy_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return SPY_REAL(f)->pMethods->xTruncate(SPY_REAL(f), size);
}

static int spy_sync(sqlite3_file *f, int flags)
{
	return SPY_REAL(f)->pMethods->xSync(SPY_REAL(f), flags);
}

static int spy_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return SPY_REAL(f)->pMethods->xFileSize(SPY_REAL(f), size);
}

static int spy_lock(sqlite3_file *f, int l)
{
	return SPY_REAL(f)->pMethods->xLock(SPY_REAL(f), l);
}

static int spy_unlock(sqlite3_file *f, int l)
{
	return SPY_REAL(f)->pMethods->xUnlock(SPY_REAL(f), l);
}

static int spy_reserved(sqlite3_file *f, int *out)
{
	return SPY_REAL(f)->pMethods->xCheckReservedLock(SPY_REAL(f), out);
}

static int spy_fcntl(sqlite3_file *f, int op, void *arg)
{
	return SPY_REAL(f)->pMethods->xFileControl(SPY_REAL(f), op, arg);
}

static int spy_sector(sqlite3_file *f)
{
	return SPY_REAL(f)->pMethods->xSectorSize(SPY_REAL(f));
}

static int spy_devchar(sqlite3_file *f)
{
	return SPY_REAL(f)->pMethods->xDeviceCharacteristics(SPY_REAL(f));
}

static int spy_shm_map(sqlite3_file *f, int pg, int sz, int ext, void volatile **p)
{
	return SPY_REAL(f)->pMethods->xShmMap(SPY_REAL(f), pg, sz, ext, p);
}

static int spy_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
	return SPY_REAL(f)->pMethods->xShmLock(SPY_REAL(f), off, n, flags);
}

static void spy_shm_barrier(sqlite3_file *f)
{
	SPY_REAL(f)->pMethods->xShmBarrier(SPY_REAL(f));
}

static int spy_shm_unmap(sqlite3_file *f, int del)
{
	return SPY_REAL(f)->pMethods->xShmUnmap(SPY_REAL(f), del);
}

static const sqlite3_io_methods spy_methods = {
    .iVersion = 2,
    .xClose = spy_close,
    .xRead = spy_read,
    .xWrite = spy_write,
    .xTruncate = spy_truncate,
    .xSync = spy_sync,
    .xFileSize = spy_size,
    .xLock = spy_lock,
    .xUnlock = spy_unlock,
    .xCheckReservedLock = spy_reserved,
    .xFileControl = spy_fcntl,
    .xSectorSize = spy_sector,
    .xDeviceCharacteristics = spy_devchar,
    .xShmMap = spy_shm_map,
    .xShmLock = spy_shm_lock,
    .xShmBarrier = spy_shm_barrier,
    .xShmUnmap = spy_shm_unmap,
};

static int spy_open(sqlite3_vfs *vfs UNUSED, const char *name, sqlite3_file *f, int flags, int *out)
{
	int rc;

	spy.opens++;
	if (flags & (SQLITE_OPEN_TEMP_DB | SQLITE_OPEN_TRANSIENT_DB | SQLITE_OPEN_TEMP_JOURNAL |
		     SQLITE_OPEN_SUBJOURNAL))
		spy.temp_opens++;
	if (flags & (SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_SUPER_JOURNAL))
		spy.journal_opens++;
	rc = spy.root->xOpen(spy.root, name, SPY_REAL(f), flags, out);
	f->pMethods = rc == SQLITE_OK ? &spy_methods : NULL;
	return rc;
}

static void spy_install(void)
{
	sqlite3_vfs *root = sqlite3_vfs_find(NULL);

	memset(&spy, 0, sizeof(spy));
	spy.root = root;
	spy.vfs = *root;
	spy.vfs.zName = "spy";
	spy.vfs.pNext = NULL;
	spy.vfs.szOsFile = (int)sizeof(struct spy_file) + root->szOsFile;
	spy.vfs.xOpen = spy_open;
	sqlite3_vfs_register(&spy.vfs, 1);
}

static void spy_remove(void)
{
	sqlite3_vfs_register(spy.root, 1);
	sqlite3_vfs_unregister(&spy.vfs);
}

static int apply(struct index *ix, struct buf *b, uint64_t seq)
{
	struct record rec;
	size_t used;
	char why[128];
	int err = rec_finish(b, seq);

	err = err ?: rec_parse(b->data, b->len, &rec, &used, why);
	err = err ?: index_apply(ix, &rec, 1, 128 + seq * 100);
	b->len = 0;
	return err;
}

/* A session whose user, command, execs and file paths all hold the marker. */
static int fill(struct index *ix)
{
	static const uint8_t sid[ST_ID_LEN] = {9, 9};
	uint64_t t = 1700000000000000000ull, seq = 1;
	struct buf b = {0};
	char argv[128];
	int n, err;

	err = rec_begin(&b, REC_SESSION_START, sid, t, 1);
	err = err ?: rec_add_str(&b, TAG_USER, "u" MARKER);
	err = err ?: rec_add_str(&b, TAG_TTY, "pts/3");
	err = err ?: rec_add_str(&b, TAG_KIND, "exec");
	err = err ?: rec_add_str(&b, TAG_COMMAND, "echo " MARKER);
	err = err ?: apply(ix, &b, seq++);
	for (int i = 0; !err && i < EXECS; i++) {
		n = snprintf(argv, sizeof(argv), "env%c" MARKER "=%d%ctrue", 0, i, 0);
		err = rec_begin(&b, REC_EXEC, sid, t + seq, seq);
		err = err ?: rec_add_u64(&b, TAG_PID, 1000 + i);
		err = err ?: rec_add_str(&b, TAG_FILENAME, "/usr/bin/" MARKER);
		err = err ?: rec_add_bytes(&b, TAG_ARGV, argv, n);
		err = err ?: apply(ix, &b, seq++);
		/* commits of a few records, as the daemon's once a second */
		if (!err && i % 50 == 49)
			err = index_commit(ix);
	}
	err = err ?: rec_begin(&b, REC_FILE, sid, t + seq, seq);
	err = err ?: rec_add_str(&b, TAG_PATH, "/home/u/" MARKER ".txt");
	err = err ?: rec_add_str(&b, TAG_DIRECTION, "upload");
	err = err ?: apply(ix, &b, seq++);
	err = err ?: index_commit(ix);
	buf_free(&b);
	return err;
}

static long long q_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	long long v = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		test_fail(__FILE__, __LINE__, "%s: %s", sql, sqlite3_errmsg(db));
		return -1;
	}
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/*
 * PRAGMA quick_check: SQLITE_OK if it says "ok", else the error it failed
 * with, or the error code in the first problem it reports.
 */
static int q_check(sqlite3 *db)
{
	sqlite3_stmt *st;
	const char *text, *code;
	int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL);

	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		text = (const char *)sqlite3_column_text(st, 0);
		code = text ? strstr(text, "error code=") : NULL;
		rc = text && !strcmp(text, "ok") ? SQLITE_OK : code ? atoi(code + 11) : -1;
	} else {
		rc = sqlite3_extended_errcode(db);
	}
	sqlite3_finalize(st);
	return rc;
}

/* SQLite's extended result of running sql to its end. */
static int q_rc(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? SQLITE_OK : sqlite3_extended_errcode(db);
}

static int read_whole(const char *path, struct buf *b)
{
	char chunk[65536];
	int fd = open(path, O_RDONLY), err = 0;
	ssize_t n;

	if (fd < 0)
		return -errno;
	b->len = 0;
	while (!err && (n = read(fd, chunk, sizeof(chunk))) > 0)
		err = buf_add(b, chunk, n);
	close(fd);
	return err;
}

/*
 * How many files in dir hold any 8 bytes of the marker (named if say);
 * files: how many were looked at.
 */
static int files_with_marker(const char *dir, int *files, bool say)
{
	struct dirent *e;
	struct buf b = {0};
	char path[600];
	DIR *d = opendir(dir);
	int hits = 0;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		struct stat sb;

		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (e->d_name[0] == '.' || stat(path, &sb) || !S_ISREG(sb.st_mode) ||
		    read_whole(path, &b))
			continue;
		(*files)++;
		if (has_marker(b.data, b.len)) {
			if (say)
				printf("    the marker is in %s\n", path);
			hits++;
		}
	}
	closedir(d);
	buf_free(&b);
	return hits;
}

static const char *index_path(void)
{
	static char p[512];

	snprintf(p, sizeof(p), "%s/ix/index.sqlite", test_dir());
	return p;
}

static int make_index_dir(void)
{
	char d[512];

	snprintf(d, sizeof(d), "%s/ix", test_dir());
	return mkdir(d, 0700) ? -errno : 0;
}

static void assert_no_marker_on_disk(const char *when)
{
	char d[512];
	int files = 0;

	snprintf(d, sizeof(d), "%s/ix", test_dir());
	if (!ASSERT_EQ(files_with_marker(d, &files, true), 0, when))
		printf("    (%s)\n", when);
	ASSERT_GT(files, 0, "files looked at");
}

TEST(cryptvfs_xaes_known_answers)
{
	/* c2sp.org/XAES-256-GCM test vectors */
	static const uint8_t nonce[] = "ABCDEFGHIJKLMNOPQRSTUVWX";
	static const uint8_t want1[] = {0xce, 0x54, 0x6e, 0xf6, 0x3c, 0x9c, 0xc6, 0x07, 0x65, 0x92,
					0x36, 0x09, 0xb3, 0x3a, 0x9a, 0x19, 0x74, 0xe9, 0x6e, 0x52,
					0xda, 0xf2, 0xfc, 0xf7, 0x07, 0x5e, 0x22, 0x71};
	static const uint8_t want2[] = {0x98, 0x6e, 0xc1, 0x83, 0x25, 0x93, 0xdf, 0x54, 0x43, 0xa1,
					0x79, 0x43, 0x7f, 0xd0, 0x83, 0xbf, 0x3f, 0xdb, 0x41, 0xab,
					0xd7, 0x40, 0xa2, 0x1f, 0x71, 0xeb, 0x76, 0x9d};
	static const char aad2[] = "c2sp.org/XAES-256-GCM";
	uint8_t key[32], out[28];

	memset(key, 0x01, sizeof(key));
	ASSERT_OK(cryptvfs_xaes_seal(key, nonce, NULL, 0, (const uint8_t *)"XAES-256-GCM", 12, out),
		  "seal");
	ASSERT_MEMEQ(out, want1, sizeof(want1), "vector 1: ciphertext and tag");
	memset(key, 0x03, sizeof(key));
	ASSERT_OK(cryptvfs_xaes_seal(key, nonce, (const uint8_t *)aad2, strlen(aad2),
				     (const uint8_t *)"XAES-256-GCM", 12, out),
		  "seal");
	ASSERT_MEMEQ(out, want2, sizeof(want2), "vector 2: with additional data");
}

TEST(cryptvfs_no_content_in_any_file_sqlite_writes)
{
	struct index ix;
	sqlite3 *db;
	int log, ckpt;

	if (!ASSERT_OK(make_index_dir(), "mkdir"))
		return;
	spy_install();
	if (!ASSERT_OK(index_open(&ix, index_path(), true, key_a, id_a), "index_open"))
		return;
	/* the daemon's WAL as it grows: no checkpoint yet */
	sqlite3_wal_autocheckpoint(ix.db, 0);
	ASSERT_OK(fill(&ix), "fill the index");
	assert_no_marker_on_disk("before a checkpoint: index.sqlite and its WAL");
	/*
	 * A sort bigger than the cache spills to a temporary file, and a temp
	 * table is one, unless temp_store is MEMORY (as index_open sets it):
	 * with FILE, the VFS keeps them in memory all the same.
	 */
	ASSERT_EQ(q_rc(ix.db, "PRAGMA temp_store = FILE"), SQLITE_OK, "temporary files");
	ASSERT_EQ(q_rc(ix.db, "PRAGMA cache_size = 1"), SQLITE_OK, "small cache");
	ASSERT_EQ(q_int(ix.db, "SELECT count(*) FROM (SELECT DISTINCT a.argv || b.seq AS k FROM"
			       " execs a, execs b WHERE b.seq <= 13 ORDER BY k DESC)"),
		  EXECS * 12, "a big sort");
	ASSERT_EQ(q_rc(ix.db, "CREATE TEMP TABLE t AS SELECT * FROM execs"), SQLITE_OK,
		  "a temp table");
	ASSERT_EQ(sqlite3_wal_checkpoint_v2(ix.db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &ckpt),
		  SQLITE_OK, "checkpoint");
	ASSERT_GT(ckpt, 100, "frames checkpointed");
	assert_no_marker_on_disk("after a checkpoint: the database and the WAL's old frames");
	index_close(&ix);
	assert_no_marker_on_disk("after close");
	ASSERT_EQ(spy.marker_writes, 0, "writes that held the marker, to any file");
	ASSERT_EQ(spy.temp_opens, 0, "temporary files opened on disk");
	ASSERT_EQ(spy.journal_opens, 0, "rollback journals opened");
	ASSERT_GT(spy.opens, 1, "database and WAL opened through the spy");

	/* it reads back, searching by substring too */
	if (ASSERT_OK(index_open(&ix, index_path(), false, key_a, id_a), "reopen to read")) {
		ASSERT_EQ(q_int(ix.db, "SELECT count(*) FROM sessions WHERE user LIKE '%" MARKER
				       "%' AND command = 'echo " MARKER "'"),
			  1, "the session by user and command");
		ASSERT_EQ(q_int(ix.db, "SELECT count(*) FROM execs WHERE filename LIKE '%MARKER77%'"
				       " AND instr(argv, CAST('" MARKER "=' AS BLOB)) > 0"),
			  EXECS, "execs by path and argv");
		ASSERT_EQ(q_int(ix.db, "SELECT count(*) FROM files WHERE path GLOB '*" MARKER "*'"),
			  1, "the file by path");
		ASSERT_EQ(q_rc(ix.db, "PRAGMA integrity_check"), SQLITE_OK, "integrity check");
		index_close(&ix);
	}

	/* not vacuous: the same work on a plain database puts the marker on disk */
	spy.marker_writes = spy.temp_opens = 0;
	if (ASSERT_EQ(sqlite3_open(test_path("plain.sqlite"), &db), SQLITE_OK, "plain")) {
		ASSERT_EQ(q_rc(db, "CREATE TABLE execs(seq INTEGER PRIMARY KEY, argv BLOB)"),
			  SQLITE_OK, "table");
		ASSERT_EQ(q_rc(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
				   " WHERE i < 30000) INSERT INTO execs SELECT i, CAST('env " MARKER
				   "=' || i AS BLOB) FROM n"),
			  SQLITE_OK, "rows");
		ASSERT_EQ(q_rc(db, "PRAGMA cache_size = 1"), SQLITE_OK, "small cache");
		ASSERT_EQ(q_rc(db, "SELECT argv || seq AS k FROM execs ORDER BY k DESC"), SQLITE_OK,
			  "the big sort");
		sqlite3_close(db);
		ASSERT_GT(spy.marker_writes, 0, "a plain database holds the marker");
		ASSERT_GT(spy.temp_opens, 0, "and the sort went to a temporary file");
	}
	spy_remove();
}

/* Flip one byte of a file. */
static int flip(const char *path, off_t off)
{
	int fd = open(path, O_RDWR), err = 0;
	uint8_t b;

	if (fd < 0)
		return -errno;
	if (pread(fd, &b, 1, off) != 1)
		err = -EIO;
	b ^= 0x10;
	if (!err && pwrite(fd, &b, 1, off) != 1)
		err = -EIO;
	close(fd);
	return err;
}

static int copy_page(const char *path, off_t from, off_t to)
{
	uint8_t page[CRYPTVFS_PAGE_SIZE];
	int fd = open(path, O_RDWR), err = 0;

	if (fd < 0)
		return -errno;
	if (pread(fd, page, sizeof(page), from) != (ssize_t)sizeof(page) ||
	    pwrite(fd, page, sizeof(page), to) != (ssize_t)sizeof(page))
		err = -EIO;
	close(fd);
	return err;
}

static int make_filled_index(void)
{
	struct index ix;
	int err = make_index_dir();

	err = err ?: index_open(&ix, index_path(), true, key_a, id_a);
	if (err)
		return err;
	err = fill(&ix);
	index_close(&ix);
	return err;
}

TEST(cryptvfs_changed_page_is_an_error_not_garbage)
{
	struct index ix;
	struct stat sb;
	off_t last;

	if (!ASSERT_OK(make_filled_index(), "make an index") ||
	    !ASSERT_OK(stat(index_path(), &sb), "stat"))
		return;
	ASSERT_EQ(sb.st_size % CRYPTVFS_PAGE_SIZE, 0, "whole pages");
	last = sb.st_size - CRYPTVFS_PAGE_SIZE;
	/* a byte of content, then one of the nonce, then one of the tag */
	for (int i = 0; i < 3; i++) {
		off_t at = last + (i == 0   ? 100
				   : i == 1 ? CRYPTVFS_PAGE_SIZE - CRYPTVFS_RESERVE + 3
					    : CRYPTVFS_PAGE_SIZE - 1);

		ASSERT_OK(flip(index_path(), at), "flip");
		if (ASSERT_OK(index_open(&ix, index_path(), false, key_a, id_a), "open")) {
			ASSERT_EQ(q_check(ix.db), SQLITE_IOERR_DATA,
				  "reading every page fails on the changed one");
			index_close(&ix);
		}
		ASSERT_OK(flip(index_path(), at), "flip back");
		if (ASSERT_OK(index_open(&ix, index_path(), false, key_a, id_a), "open")) {
			ASSERT_EQ(q_check(ix.db), SQLITE_OK, "flipped back");
			index_close(&ix);
		}
	}
	/* a page moved to another place does not open there either */
	ASSERT_OK(copy_page(index_path(), last, last - CRYPTVFS_PAGE_SIZE), "copy a page");
	if (ASSERT_OK(index_open(&ix, index_path(), false, key_a, id_a), "open")) {
		ASSERT_EQ(q_check(ix.db), SQLITE_IOERR_DATA, "a moved page");
		index_close(&ix);
	}
	/* page 1: the reader cannot open it; the writer starts an empty one */
	ASSERT_OK(flip(index_path(), 50), "flip in page 1");
	ASSERT_EQ(index_open(&ix, index_path(), false, key_a, id_a), -EBADMSG, "reader");
	if (ASSERT_OK(index_open(&ix, index_path(), true, key_a, id_a), "writer")) {
		ASSERT_EQ(q_int(ix.db, "SELECT count(*) FROM execs"), 0, "empty, to be rebuilt");
		index_close(&ix);
	}
}

TEST(cryptvfs_wrong_key_or_store_fails)
{
	struct index ix;

	if (!ASSERT_OK(make_filled_index(), "make an index"))
		return;
	ASSERT_EQ(index_open(&ix, index_path(), false, key_b, id_a), -EBADMSG, "another key");
	ASSERT_EQ(index_open(&ix, index_path(), false, key_a, id_b), -EBADMSG, "another store");
	if (ASSERT_OK(index_open(&ix, index_path(), false, key_a, id_a), "the right ones")) {
		ASSERT_EQ(q_int(ix.db, "SELECT count(*) FROM execs"), EXECS, "rows");
		index_close(&ix);
	}
}

static int copy_file(const char *from, const char *to)
{
	struct buf b = {0};
	int err = read_whole(from, &b);

	if (!err) {
		int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		err = fd < 0 || write_all(fd, b.data, b.len) ? -EIO : 0;
		if (fd >= 0)
			close(fd);
	}
	buf_free(&b);
	return err;
}

/*
 * Frames in the WAL: recovery (a reader without the WAL index) ends the log
 * at a frame that does not authenticate, as at a torn one; a frame the WAL
 * index points at is an error when read.
 */
TEST(cryptvfs_changed_wal_frame)
{
	char copy[600], wal[620], copy_wal[620];
	struct index w, r, r2;
	struct stat sb;
	long long frames;
	int err;

	if (!ASSERT_OK(make_index_dir(), "mkdir") ||
	    !ASSERT_OK(index_open(&w, index_path(), true, key_a, id_a), "writer"))
		return;
	sqlite3_wal_autocheckpoint(w.db, 0);
	ASSERT_OK(fill(&w), "fill");
	snprintf(wal, sizeof(wal), "%s-wal", index_path());
	snprintf(copy, sizeof(copy), "%s/ix/copy.sqlite", test_dir());
	snprintf(copy_wal, sizeof(copy_wal), "%s-wal", copy);
	ASSERT_OK(stat(wal, &sb), "the WAL");
	frames = (sb.st_size - 32) / (24 + CRYPTVFS_PAGE_SIZE);
	ASSERT_GT(frames, 100, "frames in the WAL");
	ASSERT_OK(copy_file(index_path(), copy), "copy the database");
	ASSERT_OK(copy_file(wal, copy_wal), "copy its WAL");
	index_close(&w);

	/* the last frame's page changed: the log ends before it, nothing else is lost */
	ASSERT_OK(flip(copy_wal, 32 + (frames - 1) * (24 + CRYPTVFS_PAGE_SIZE) + 24 + 200),
		  "flip in the last frame");
	if (ASSERT_OK(index_open(&r, copy, false, key_a, id_a), "open the copy")) {
		long long n = q_int(r.db, "SELECT count(*) FROM execs");

		ASSERT_TRUE(n >= EXECS - 50 && n <= EXECS, "at most the last commit lost");
		/* now the WAL index names the frames: change them under another reader */
		for (long long i = 0; i < frames - 1; i++)
			ASSERT_OK(flip(copy_wal, 32 + i * (24 + CRYPTVFS_PAGE_SIZE) + 24 + 200),
				  "flip in a frame");
		/* page 1 is among them: the reader fails at once, or else on a later page */
		err = index_open(&r2, copy, false, key_a, id_a);
		if (!err) {
			err = q_check(r2.db) == SQLITE_IOERR_DATA ? -EBADMSG : 0;
			index_close(&r2);
		}
		ASSERT_EQ(err, -EBADMSG,
			  "frames the WAL index names do not authenticate: an error");
		index_close(&r);
	}
}

static int make_plain_index(const char *path)
{
	sqlite3 *db;
	int rc = sqlite3_open(path, &db);

	/* as an older sealtrail left it: WAL mode, the WAL not checkpointed */
	if (rc == SQLITE_OK)
		rc = sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db,
				  "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;"
				  " CREATE TABLE sessions(id TEXT, user TEXT);"
				  " INSERT INTO sessions VALUES ('x', 'old" MARKER "');",
				  NULL, NULL, NULL);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -EIO;
}

TEST(cryptvfs_plain_index_of_an_older_version_is_replaced)
{
	uint8_t sid[ST_ID_LEN] = {7};
	char dir[512], path[600];
	struct buf rec = {0};
	struct store st;
	int files = 0;

	snprintf(dir, sizeof(dir), "%s/store", test_dir());
	snprintf(path, sizeof(path), "%s/index.sqlite", dir);
	if (!ASSERT_OK(store_open(&st, dir, STORE_WRITE | STORE_CREATE), "create"))
		return;
	ASSERT_OK(rec_begin(&rec, REC_SESSION_START, sid, 1, 1), "record");
	ASSERT_OK(rec_add_str(&rec, TAG_USER, "alice"), "user");
	ASSERT_OK(store_append(&st, &rec), "append");
	store_close(&st);
	buf_free(&rec);
	unlink(path);
	if (!ASSERT_OK(make_plain_index(path), "an index in the clear"))
		return;
	ASSERT_EQ(files_with_marker(dir, &files, false), 1, "the old index's WAL holds the marker");

	/* a reader leaves it alone and reads the segments instead */
	if (ASSERT_OK(store_open(&st, dir, 0), "reader")) {
		ASSERT_EQ(q_int(st.index.db, "SELECT count(*) FROM sessions WHERE user = 'alice'"),
			  1, "the session, from the segments");
		store_close(&st);
	}
	ASSERT_EQ(index_is_plain(path), 1, "the reader did not touch it");

	/* the writer erases it and rebuilds it from the log, encrypted */
	if (ASSERT_OK(store_open(&st, dir, STORE_WRITE), "writer")) {
		ASSERT_EQ(q_int(st.index.db, "SELECT count(*) FROM sessions"), 1, "rebuilt");
		store_close(&st);
	}
	ASSERT_EQ(index_is_plain(path), 0, "encrypted now");
	files = 0;
	ASSERT_EQ(files_with_marker(dir, &files, true), 0,
		  "the old content is gone from the store");
	if (ASSERT_OK(store_open(&st, dir, 0), "reader")) {
		ASSERT_EQ(q_int(st.index.db, "SELECT count(*) FROM sessions WHERE user = 'alice'"),
			  1, "the reader uses it");
		store_close(&st);
	}
}

/* `sealtrail reindex` rebuilds an index damaged past its first pages. */
TEST(cryptvfs_reindex_replaces_a_damaged_index)
{
	uint8_t sid[ST_ID_LEN] = {5};
	char dir[512], path[600];
	struct buf rec = {0};
	struct store st;
	struct stat sb;
	uint64_t n = 0;

	snprintf(dir, sizeof(dir), "%s/store", test_dir());
	snprintf(path, sizeof(path), "%s/index.sqlite", dir);
	if (!ASSERT_OK(store_open(&st, dir, STORE_WRITE | STORE_CREATE), "create"))
		return;
	for (int i = 0; i < 2000; i++) {
		ASSERT_OK(rec_begin(&rec, REC_EXEC, sid, 1000 + i, 1000 + i), "record");
		ASSERT_OK(rec_add_str(&rec, TAG_FILENAME, "/usr/bin/" MARKER), "filename");
		ASSERT_OK(store_append(&st, &rec), "append");
		rec.len = 0;
	}
	store_close(&st);
	buf_free(&rec);
	if (!ASSERT_OK(stat(path, &sb), "stat") ||
	    !ASSERT_GT(sb.st_size, 4 * CRYPTVFS_PAGE_SIZE, "several pages"))
		return;
	ASSERT_OK(flip(path, sb.st_size - 1000), "flip a byte in the last page");
	if (ASSERT_OK(store_open(&st, dir, 0), "reader")) {
		ASSERT_EQ(q_check(st.index.db), SQLITE_IOERR_DATA, "the damage shows");
		store_close(&st);
	}
	if (ASSERT_OK(store_open(&st, dir, STORE_WRITE), "writer")) {
		ASSERT_OK(store_reindex(&st, &n), "reindex");
		ASSERT_GE(n, 2000, "records");
		store_close(&st);
	}
	if (ASSERT_OK(store_open(&st, dir, 0), "reader")) {
		ASSERT_EQ(q_check(st.index.db), SQLITE_OK, "a sound index");
		ASSERT_EQ(q_int(st.index.db,
				"SELECT count(*) FROM execs WHERE filename LIKE '%" MARKER "'"),
			  2000, "every exec");
		store_close(&st);
	}
}
