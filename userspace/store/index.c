/* The SQLite index over the record log (see index.h). */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "store/cryptvfs.h"
#include "store/index.h"

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER);"
    "CREATE TABLE IF NOT EXISTS sessions("
    " id TEXT PRIMARY KEY, host TEXT, boot_id TEXT, user TEXT, loginuid INTEGER, uid INTEGER,"
    " source_ip TEXT, source_port INTEGER, local_ip TEXT, local_port INTEGER, tty TEXT,"
    " leader_pid INTEGER, listener_pid INTEGER, adopted INTEGER DEFAULT 0,"
    " start_ns INTEGER, end_ns INTEGER, end_reason TEXT,"
    " bytes_in INTEGER DEFAULT 0, bytes_out INTEGER DEFAULT 0,"
    " lost_events INTEGER DEFAULT 0, lost_bytes INTEGER DEFAULT 0, kind TEXT, command TEXT,"
    " term TEXT);"
    "CREATE INDEX IF NOT EXISTS sessions_start ON sessions(start_ns);"
    "CREATE TABLE IF NOT EXISTS chunks(seq INTEGER PRIMARY KEY, session TEXT, stream INTEGER,"
    " tty INTEGER, wall_ns INTEGER, mono_ns INTEGER, segment INTEGER, offset INTEGER, len INTEGER);"
    "CREATE INDEX IF NOT EXISTS chunks_session ON chunks(session, seq);"
    "CREATE TABLE IF NOT EXISTS execs(seq INTEGER PRIMARY KEY, session TEXT, wall_ns INTEGER,"
    " pid INTEGER, ppid INTEGER, uid INTEGER, euid INTEGER, gid INTEGER, loginuid INTEGER,"
    " sessionid INTEGER, filename TEXT, argv BLOB, argv_total INTEGER, argv_truncated INTEGER,"
    " exit_status INTEGER, exit_ns INTEGER, cwd TEXT);"
    "CREATE INDEX IF NOT EXISTS execs_session ON execs(session, pid);"
    "CREATE TABLE IF NOT EXISTS gaps(seq INTEGER PRIMARY KEY, session TEXT, wall_ns INTEGER,"
    " lost_events INTEGER, lost_bytes INTEGER, reason TEXT, file TEXT, file_offset INTEGER);"
    "CREATE INDEX IF NOT EXISTS gaps_session ON gaps(session);"
    "CREATE TABLE IF NOT EXISTS channels(session TEXT, conn_id INTEGER, dest_ip TEXT,"
    " dest_port INTEGER, pid INTEGER, open_ns INTEGER, close_ns INTEGER, bytes_sent INTEGER,"
    " bytes_recv INTEGER, direction TEXT, source_ip TEXT, source_port INTEGER,"
    " listen_port INTEGER, PRIMARY KEY(session, conn_id, open_ns));"
    "CREATE TABLE IF NOT EXISTS streams(session TEXT, stream INTEGER, bytes INTEGER,"
    " stored INTEGER, sha256 TEXT, capped INTEGER, PRIMARY KEY(session, stream));"
    "CREATE TABLE IF NOT EXISTS files(seq INTEGER PRIMARY KEY, session TEXT, wall_ns INTEGER,"
    " pid INTEGER, path TEXT, direction TEXT, bytes INTEGER, size INTEGER, sha256 TEXT);"
    "CREATE INDEX IF NOT EXISTS files_session ON files(session);"
    /* where each record of a session other than its terminal chunks lives */
    "CREATE TABLE IF NOT EXISTS records(session TEXT, wall_ns INTEGER, seq INTEGER,"
    " type INTEGER, segment INTEGER, offset INTEGER, PRIMARY KEY(session, wall_ns, seq))"
    " WITHOUT ROWID;";

enum stmt_id {
	S_BEGIN,
	S_COMMIT,
	S_META,
	S_SESSION_START,
	S_SESSION_END,
	S_ATTR_USER,
	S_ATTR_LOGINUID,
	S_ATTR_UID,
	S_ATTR_TTY,
	S_CHUNK,
	S_BYTES,
	S_EXEC,
	S_EXIT,
	S_GAP,
	S_LOST,
	S_ATTR_KIND,
	S_CHANNEL_OPEN,
	S_CHANNEL_CLOSE,
	S_STREAM_END,
	S_FILE,
	S_RECORD,
	S_ATTR_TERM,
	S_COUNT,
};

_Static_assert(S_COUNT <= sizeof(((struct index *)0)->stmts) / sizeof(void *), "stmts size");

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN",
    [S_COMMIT] = "COMMIT",
    [S_META] = "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
    [S_SESSION_START] =
	"INSERT OR REPLACE INTO sessions(id, host, boot_id, user, loginuid, uid, source_ip,"
	" source_port, local_ip, local_port, tty, leader_pid, listener_pid, adopted, start_ns)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    [S_SESSION_END] = "UPDATE sessions SET end_ns = ?2, end_reason = ?3 WHERE id = ?1",
    [S_ATTR_USER] = "UPDATE sessions SET user = ?2 WHERE id = ?1",
    [S_ATTR_LOGINUID] = "UPDATE sessions SET loginuid = ?2 WHERE id = ?1",
    [S_ATTR_UID] = "UPDATE sessions SET uid = ?2 WHERE id = ?1",
    [S_ATTR_TTY] = "UPDATE sessions SET tty = ?2 WHERE id = ?1",
    [S_CHUNK] = "INSERT OR REPLACE INTO chunks(seq, session, stream, tty, wall_ns, mono_ns,"
		" segment, offset, len) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    /* bytes of the login's own pty; sudo's or tmux's ptys are kept but not summed */
    [S_BYTES] = "UPDATE sessions SET bytes_in = bytes_in + ?2, bytes_out = bytes_out + ?3"
		" WHERE id = ?1 AND (?5 >= 2 OR tty IS NULL OR tty = 'pts/' || ?4)",
    [S_EXEC] = "INSERT OR REPLACE INTO execs(seq, session, wall_ns, pid, ppid, uid, euid, gid,"
	       " loginuid, sessionid, filename, argv, argv_total, argv_truncated, cwd)"
	       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    [S_EXIT] = "UPDATE execs SET exit_status = ?3, exit_ns = ?4 WHERE seq ="
	       " (SELECT max(seq) FROM execs WHERE session = ?1 AND pid = ?2)",
    [S_GAP] = "INSERT OR REPLACE INTO gaps(seq, session, wall_ns, lost_events, lost_bytes,"
	      " reason, file, file_offset) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [S_ATTR_TERM] = "UPDATE sessions SET term = ?2 WHERE id = ?1",
    [S_ATTR_KIND] = "UPDATE sessions SET kind = ?2, command = coalesce(?3, command) WHERE id = ?1",
    [S_CHANNEL_OPEN] = "INSERT OR REPLACE INTO channels(session, conn_id, dest_ip, dest_port, pid,"
		       " open_ns, direction, source_ip, source_port, listen_port)"
		       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [S_CHANNEL_CLOSE] = "UPDATE channels SET close_ns = ?3, bytes_sent = ?4, bytes_recv = ?5"
			" WHERE session = ?1 AND conn_id = ?2 AND close_ns IS NULL",
    [S_STREAM_END] =
	"INSERT OR REPLACE INTO streams(session, stream, bytes, stored, sha256, capped)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_FILE] = "INSERT OR REPLACE INTO files(seq, session, wall_ns, pid, path, direction, bytes,"
	       " size, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [S_RECORD] = "INSERT OR REPLACE INTO records(seq, session, type, wall_ns, segment, offset)"
		 " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_LOST] = "UPDATE sessions SET lost_events = lost_events + ?2,"
	       " lost_bytes = lost_bytes + ?3 WHERE id = ?1",
};

/*
 * The index is derived data: when its schema is from another version, drop
 * it; the writer then rebuilds it from the log (index_last() says 0).
 */
#define INDEX_SCHEMA_VERSION 5

static int rebuild_if_old(struct index *ix, const char *path)
{
	sqlite3_stmt *st;
	int version = 0, tables = 0;
	char *msg = NULL, sql[64];

	if (sqlite3_prepare_v2(ix->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			version = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	if (sqlite3_prepare_v2(ix->db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
			       -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			tables = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	if (version == INDEX_SCHEMA_VERSION)
		return 0;
	if (tables)
		log_info(
		    "index %s: schema version %d, this sealtrail uses %d: rebuilding it from the"
		    " log",
		    path, version, INDEX_SCHEMA_VERSION);
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", INDEX_SCHEMA_VERSION);
	if (sqlite3_exec(ix->db,
			 "DROP TABLE IF EXISTS sessions; DROP TABLE IF EXISTS chunks;"
			 " DROP TABLE IF EXISTS execs; DROP TABLE IF EXISTS gaps;"
			 " DROP TABLE IF EXISTS meta; DROP TABLE IF EXISTS channels;"
			 " DROP TABLE IF EXISTS streams; DROP TABLE IF EXISTS files;"
			 " DROP TABLE IF EXISTS records;",
			 NULL, NULL, &msg) != SQLITE_OK ||
	    sqlite3_exec(ix->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		log_error("index %s: cannot rebuild: %s", path, msg);
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

static const char *const index_files[] = {"", "-wal", "-shm"};

/*
 * Overwrite a file with zeros, then remove it: an index in the clear should
 * not stay readable on the disk (the blocks of a copy-on-write file system,
 * a snapshot or an SSD's spare area may keep it anyway). The -shm file
 * holds no content: it is only removed.
 */
static int erase_file(const char *path, bool zero)
{
	static const uint8_t zeros[1 << 16];
	struct stat sb;
	int fd = zero ? open(path, O_WRONLY | O_CLOEXEC) : -1, err = 0;

	if (!zero)
		return unlink(path) && errno != ENOENT ? -errno : 0;
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &sb))
		err = -errno;
	for (off_t done = 0; !err && done < sb.st_size; done += sizeof(zeros)) {
		size_t n = sb.st_size - done < (off_t)sizeof(zeros) ? (size_t)(sb.st_size - done)
								    : sizeof(zeros);

		if (write_all(fd, zeros, n))
			err = -errno;
	}
	if (!err && fdatasync(fd))
		err = -errno;
	close(fd);
	if (unlink(path) && errno != ENOENT && !err)
		err = -errno;
	return err;
}

/*
 * The index at path, its WAL and its shared memory; only_sidecars: not the
 * first. zero: overwrite them first (they may be in the clear).
 */
static int erase_index(const char *path, bool only_sidecars, bool zero)
{
	char name[4200];
	int err = 0;

	for (size_t i = only_sidecars; i < sizeof(index_files) / sizeof(index_files[0]); i++) {
		int e;

		snprintf(name, sizeof(name), "%s%s", path, index_files[i]);
		e = erase_file(name, zero && strcmp(index_files[i], "-shm"));
		if (e) {
			log_error("index %s: cannot erase %s: %s", path, name, strerror(-e));
			err = err ?: e;
		}
	}
	return err;
}

int index_is_plain(const char *path)
{
	return cryptvfs_file_is_plain(path) > 0;
}

static int exec_sql(struct index *ix, const char *name, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(ix->db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	log_error("index %s: %s: %s", name, sql, msg ? msg : sqlite3_errmsg(ix->db));
	sqlite3_free(msg);
	return -EIO;
}

/*
 * Read the schema and the page count: the first pages any query needs. A
 * page that does not decrypt (the VFS logged which) makes the index
 * unusable: -EBADMSG.
 */
static int probe(struct index *ix, const char *name, int *pages)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(ix->db, "PRAGMA page_count", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*pages = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
		return 0;
	}
	rc = sqlite3_extended_errcode(ix->db);
	log_error("index %s does not open: %s", name, sqlite3_errmsg(ix->db));
	sqlite3_finalize(st);
	return rc == SQLITE_IOERR_DATA || rc == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT
		   ? -EBADMSG
		   : -EIO;
}

/*
 * A new database: the page size and reserved bytes the encryption needs,
 * set before its first page exists, then WAL for good. The switch to WAL
 * is a transaction of its own, made without a rollback journal (the VFS
 * refuses one: it would hold pages in the clear).
 */
static int setup_new(struct index *ix, const char *name)
{
	int reserve = CRYPTVFS_RESERVE, got = -1, err;
	char sql[64];
	sqlite3_stmt *st;
	const char *mode;

	snprintf(sql, sizeof(sql), "PRAGMA page_size = %d", CRYPTVFS_PAGE_SIZE);
	err = exec_sql(ix, name, sql);
	if (!err &&
	    (sqlite3_file_control(ix->db, "main", SQLITE_FCNTL_RESERVE_BYTES, &reserve) !=
		 SQLITE_OK ||
	     sqlite3_file_control(ix->db, "main", SQLITE_FCNTL_RESERVE_BYTES, &got) != SQLITE_OK ||
	     got != CRYPTVFS_RESERVE)) {
		log_error("index %s: cannot reserve bytes in its pages", name);
		err = -EIO;
	}
	err = err ?: exec_sql(ix, name, "PRAGMA journal_mode = OFF");
	if (err)
		return err;
	if (sqlite3_prepare_v2(ix->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) != SQLITE_OK) {
		log_error("index %s: %s", name, sqlite3_errmsg(ix->db));
		return -EIO;
	}
	mode = sqlite3_step(st) == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
	if (!mode || strcmp(mode, "wal")) {
		log_error("index %s: cannot use WAL mode (%s)", name,
			  mode ? mode : sqlite3_errmsg(ix->db));
		err = -EIO;
	}
	sqlite3_finalize(st);
	return err;
}

static int open_db(struct index *ix, const char *path, bool writable,
		   const uint8_t key[INDEX_KEY_LEN], const uint8_t id[ST_ID_LEN])
{
	int flags = writable ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY;
	const char *name = path ? path : ":memory:";
	int pages = 0, err;

	memset(ix, 0, sizeof(*ix));
	ix->writable = writable;
	err = cryptvfs_new(key, id, &ix->vfs);
	if (err) {
		log_error("index %s: cannot set up its encryption: %s", name, strerror(-err));
		return err;
	}
	/* this reads the header of page 1 already */
	if (sqlite3_open_v2(name, &ix->db, flags, cryptvfs_name(ix->vfs)) != SQLITE_OK) {
		log_error("index %s does not open: %s", name,
			  ix->db ? sqlite3_errmsg(ix->db) : "out of memory");
		err = ix->db && sqlite3_extended_errcode(ix->db) == SQLITE_IOERR_DATA ? -EBADMSG
										      : -EIO;
		goto fail;
	}
	sqlite3_busy_timeout(ix->db, 5000);
	err = probe(ix, name, &pages);
	/* temporary tables and indices in memory (the VFS keeps other temp files there too) */
	err = err ?: exec_sql(ix, name, "PRAGMA temp_store = MEMORY");
	if (err || !writable)
		goto out;
	if (path && !pages)
		err = setup_new(ix, name);
	if (!err && rebuild_if_old(ix, name))
		err = -EIO;
	err = err ?: exec_sql(ix, name, schema);
	for (int i = 0; !err && i < S_COUNT; i++) {
		if (sqlite3_prepare_v2(ix->db, stmt_sql[i], -1, (sqlite3_stmt **)&ix->stmts[i],
				       NULL) != SQLITE_OK) {
			log_error("index %s: %s", name, sqlite3_errmsg(ix->db));
			err = -EIO;
		}
	}
out:
	if (!err)
		return 0;
fail:
	index_close(ix);
	return err;
}

int index_open(struct index *ix, const char *path, bool writable, const uint8_t key[INDEX_KEY_LEN],
	       const uint8_t id[ST_ID_LEN])
{
	uint8_t temp_key[INDEX_KEY_LEN];
	struct stat sb;
	int err;

	if (!path) {
		/* a temporary index: nothing outlives the process, not even its key */
		if (RAND_bytes(temp_key, sizeof(temp_key)) != 1)
			return -EIO;
		err = open_db(ix, NULL, true, temp_key, id);
		OPENSSL_cleanse(temp_key, sizeof(temp_key));
		return err;
	}
	if (writable && index_is_plain(path)) {
		log_info(
		    "index %s was written in the clear by an older sealtrail: erasing it"
		    " (overwritten with zeros, then removed) and rebuilding it, encrypted, from"
		    " the log",
		    path);
		err = erase_index(path, false, true);
		if (err)
			return err;
	} else if (writable && (stat(path, &sb) || !sb.st_size)) {
		/* a new index: a WAL left over from another one must not be replayed into it */
		err = erase_index(path, true, true);
		if (err)
			return err;
	}
	err = open_db(ix, path, writable, key, id);
	if (err == -EBADMSG && writable) {
		log_error("index %s: removing it; it is rebuilt from the log", path);
		err = erase_index(path, false, false);
		err = err ?: open_db(ix, path, writable, key, id);
	}
	return err;
}

int index_recreate(struct index *ix, const char *path, const uint8_t key[INDEX_KEY_LEN],
		   const uint8_t id[ST_ID_LEN])
{
	int err;

	index_close(ix);
	/* readers that have the old one open keep reading it */
	err = erase_index(path, false, false);
	return err ?: open_db(ix, path, true, key, id);
}

void index_close(struct index *ix)
{
	if (ix->db) {
		if (ix->in_tx)
			index_commit(ix);
		for (int i = 0; i < S_COUNT; i++)
			sqlite3_finalize((sqlite3_stmt *)ix->stmts[i]);
		if (sqlite3_close(ix->db) != SQLITE_OK) {
			/* a statement is still open: the VFS must outlive it */
			log_error("index: cannot close: %s", sqlite3_errmsg(ix->db));
			ix->vfs = NULL;
		}
	}
	cryptvfs_free(ix->vfs);
	memset(ix, 0, sizeof(*ix));
}

/* Bind arguments by type letter: i = int64, t = text (NULL if empty), b = blob. */
static int run(struct index *ix, enum stmt_id id, const char *types, ...)
{
	sqlite3_stmt *st = (sqlite3_stmt *)ix->stmts[id];
	va_list ap;
	int rc;

	va_start(ap, types);
	for (int i = 0; types[i]; i++) {
		if (types[i] == 'i') {
			sqlite3_bind_int64(st, i + 1, (sqlite3_int64)va_arg(ap, uint64_t));
		} else if (types[i] == 't') {
			const char *s = va_arg(ap, const char *);

			if (s && *s)
				sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT);
			else
				sqlite3_bind_null(st, i + 1);
		} else if (types[i] == 'b') {
			const void *p = va_arg(ap, const void *);
			int n = va_arg(ap, int);

			sqlite3_bind_blob(st, i + 1, p, n, SQLITE_TRANSIENT);
		} else {
			sqlite3_bind_null(st, i + 1);
			(void)va_arg(ap, uint64_t);
		}
	}
	va_end(ap);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		log_error("index: %s", sqlite3_errmsg(ix->db));
		return -EIO;
	}
	return 0;
}

static uint64_t get_u64(const struct record *rec, uint16_t tag, uint64_t dflt)
{
	uint64_t v;

	return rec_u64(rec, tag, &v) ? v : dflt;
}

/* Integer column that stays NULL when the record does not carry it. */
#define OPT(tag) (rec_u64(rec, tag, &v) ? 'i' : 'n')

/* The meta key of a host's last daemon event. */
static void daemon_key(const char *host, char *key, size_t size)
{
	snprintf(key, size, "daemon:%s", host);
}

void index_daemon_event(struct index *ix, const char *host, char *out, size_t size)
{
	sqlite3_stmt *st;
	char key[300];

	out[0] = 0;
	daemon_key(host, key, sizeof(key));
	if (sqlite3_prepare_v2(ix->db, "SELECT value FROM meta WHERE key = ?1", -1, &st, NULL) !=
	    SQLITE_OK)
		return;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		snprintf(out, size, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
}

static int flush_bytes(struct index *ix)
{
	int err = 0;

	for (unsigned i = 0; i < ix->npending && !err; i++) {
		const struct index_bytes *b = &ix->pending[i];

		err = run(ix, S_BYTES, "tiiii", b->sid, b->in, b->out, b->tty, b->any_tty);
	}
	ix->npending = 0;
	return err;
}

/*
 * S_BYTES, deferred: the WHERE depends only on the session's tty, which no
 * terminal record changes, and every other record flushes first.
 */
static int add_bytes(struct index *ix, const char *sid, uint64_t stream, uint64_t tty, uint64_t n)
{
	uint64_t any_tty = stream >= 2 ? 2 : 0;
	struct index_bytes *b = NULL;

	for (unsigned i = 0; i < ix->npending && !b; i++)
		if (ix->pending[i].tty == tty && ix->pending[i].any_tty == any_tty &&
		    !strcmp(ix->pending[i].sid, sid))
			b = &ix->pending[i];
	if (!b) {
		if (ix->npending == INDEX_PENDING_BYTES) {
			int err = flush_bytes(ix);

			if (err)
				return err;
		}
		b = &ix->pending[ix->npending++];
		memset(b, 0, sizeof(*b));
		memcpy(b->sid, sid, ST_ID_HEX);
		b->tty = tty;
		b->any_tty = any_tty;
	}
	if (stream_is_input(stream))
		b->in += n;
	else
		b->out += n;
	return 0;
}

/* Store-level records (daemon start and stop, epochs) have no session: all zero. */
static bool has_session(const struct record *rec)
{
	for (unsigned i = 0; i < ST_ID_LEN; i++)
		if (rec->session[i])
			return true;
	return false;
}

int index_apply(struct index *ix, const struct record *rec, uint32_t seg_no, uint64_t off)
{
	char sid[ST_ID_HEX], s1[256], s2[256], s3[256], s4[256], s5[64], path[4096];
	const struct rec_field *f;
	uint64_t v;
	int err = 0;

	if (!ix->in_tx) {
		if (run(ix, S_BEGIN, ""))
			return -EIO;
		ix->in_tx = true;
	}
	if (rec->type != REC_TTY && ix->npending && flush_bytes(ix))
		return -EIO;
	hex_encode(rec->session, ST_ID_LEN, sid);
	switch (rec->type) {
	case REC_SESSION_START: {
		char types[] = "ttttiitititiiii";

		types[4] = OPT(TAG_LOGINUID);
		types[5] = OPT(TAG_UID);
		types[7] = OPT(TAG_SOURCE_PORT);
		types[9] = OPT(TAG_LOCAL_PORT);
		err = run(
		    ix, S_SESSION_START, types, sid, rec_str(rec, TAG_HOST, s1, sizeof(s1)),
		    rec_str(rec, TAG_BOOT_ID, s5, sizeof(s5)),
		    rec_str(rec, TAG_USER, s2, sizeof(s2)), get_u64(rec, TAG_LOGINUID, 0),
		    get_u64(rec, TAG_UID, 0), rec_str(rec, TAG_SOURCE_IP, s3, sizeof(s3)),
		    get_u64(rec, TAG_SOURCE_PORT, 0), rec_str(rec, TAG_LOCAL_IP, s4, sizeof(s4)),
		    get_u64(rec, TAG_LOCAL_PORT, 0), "", get_u64(rec, TAG_LEADER_PID, 0),
		    get_u64(rec, TAG_LISTENER_PID, 0), get_u64(rec, TAG_ADOPTED, 0), rec->wall_ns);
		if (!err && rec_field(rec, TAG_TTY))
			err = run(ix, S_ATTR_TTY, "tt", sid, rec_str(rec, TAG_TTY, s1, sizeof(s1)));
		if (!err && rec_field(rec, TAG_KIND))
			err =
			    run(ix, S_ATTR_KIND, "ttt", sid, rec_str(rec, TAG_KIND, s1, sizeof(s1)),
				rec_str(rec, TAG_COMMAND, s2, sizeof(s2)));
		if (!err && rec_field(rec, TAG_TERM))
			err =
			    run(ix, S_ATTR_TERM, "tt", sid, rec_str(rec, TAG_TERM, s1, sizeof(s1)));
		break;
	}
	case REC_SESSION_ATTR:
		if (rec_field(rec, TAG_KIND))
			err |=
			    run(ix, S_ATTR_KIND, "ttt", sid, rec_str(rec, TAG_KIND, s1, sizeof(s1)),
				rec_str(rec, TAG_COMMAND, s2, sizeof(s2)));
		if (rec_field(rec, TAG_USER))
			err |=
			    run(ix, S_ATTR_USER, "tt", sid, rec_str(rec, TAG_USER, s1, sizeof(s1)));
		if (rec_u64(rec, TAG_LOGINUID, &v))
			err |= run(ix, S_ATTR_LOGINUID, "ti", sid, v);
		if (rec_u64(rec, TAG_UID, &v))
			err |= run(ix, S_ATTR_UID, "ti", sid, v);
		if (rec_field(rec, TAG_TTY))
			err |=
			    run(ix, S_ATTR_TTY, "tt", sid, rec_str(rec, TAG_TTY, s1, sizeof(s1)));
		if (rec_field(rec, TAG_TERM))
			err |=
			    run(ix, S_ATTR_TERM, "tt", sid, rec_str(rec, TAG_TERM, s1, sizeof(s1)));
		break;
	case REC_SESSION_END:
		err = run(ix, S_SESSION_END, "tit", sid, rec->wall_ns,
			  rec_str(rec, TAG_REASON, s1, sizeof(s1)));
		break;
	case REC_TTY: {
		uint64_t stream = get_u64(rec, TAG_STREAM, 0);

		f = rec_field(rec, TAG_DATA);
		v = f ? f->len : 0;
		err = run(ix, S_CHUNK, "itiiiiiii", rec->seq, sid, stream,
			  get_u64(rec, TAG_TTY_INDEX, 0), rec->wall_ns, rec->mono_ns,
			  (uint64_t)seg_no, off, v);
		if (!err)
			err = add_bytes(ix, sid, stream, get_u64(rec, TAG_TTY_INDEX, 0), v);
		break;
	}
	case REC_EXEC:
		f = rec_field(rec, TAG_ARGV);
		err = run(
		    ix, S_EXEC, "itiiiiiiiitbiit", rec->seq, sid, rec->wall_ns,
		    get_u64(rec, TAG_PID, 0), get_u64(rec, TAG_PPID, 0), get_u64(rec, TAG_UID, 0),
		    get_u64(rec, TAG_EUID, 0), get_u64(rec, TAG_GID, 0),
		    get_u64(rec, TAG_LOGINUID, 0), get_u64(rec, TAG_SESSIONID, 0),
		    rec_str(rec, TAG_FILENAME, s1, sizeof(s1)), f ? f->data : (const uint8_t *)"",
		    f ? (int)f->len : 0, get_u64(rec, TAG_ARGV_TOTAL, 0),
		    get_u64(rec, TAG_ARGV_TRUNCATED, 0), rec_str(rec, TAG_CWD, path, sizeof(path)));
		break;
	case REC_EXIT:
		err = run(ix, S_EXIT, "tiii", sid, get_u64(rec, TAG_PID, 0),
			  get_u64(rec, TAG_STATUS, 0), rec->wall_ns);
		break;
	case REC_CHANNEL_OPEN:
		err = run(ix, S_CHANNEL_OPEN, "titiiittii", sid, get_u64(rec, TAG_CONN_ID, 0),
			  rec_str(rec, TAG_DEST_IP, s1, sizeof(s1)), get_u64(rec, TAG_DEST_PORT, 0),
			  get_u64(rec, TAG_PID, 0), rec->wall_ns,
			  rec_str(rec, TAG_DIRECTION, s2, sizeof(s2)),
			  rec_str(rec, TAG_SOURCE_IP, s3, sizeof(s3)),
			  get_u64(rec, TAG_SOURCE_PORT, 0), get_u64(rec, TAG_LOCAL_PORT, 0));
		break;
	case REC_CHANNEL_CLOSE:
		err = run(ix, S_CHANNEL_CLOSE, "tiiii", sid, get_u64(rec, TAG_CONN_ID, 0),
			  rec->wall_ns, get_u64(rec, TAG_BYTES_SENT, 0),
			  get_u64(rec, TAG_BYTES_RECV, 0));
		break;
	case REC_STREAM_END: {
		uint64_t stream = get_u64(rec, TAG_STREAM, 0), bytes = get_u64(rec, TAG_BYTES, 0);
		uint64_t stored = get_u64(rec, TAG_STORED, 0),
			 rest = bytes > stored ? bytes - stored : 0;

		err = run(ix, S_STREAM_END, "tiiiti", sid, stream, bytes, stored,
			  rec_str(rec, TAG_SHA256, s1, sizeof(s1)), (uint64_t)(bytes > stored));
		/* bytes past the cap were counted, not stored: add them to the totals */
		if (!err && rest)
			err = run(ix, S_BYTES, "tiiii", sid, stream_is_input(stream) ? rest : 0,
				  stream_is_input(stream) ? 0 : rest, (uint64_t)0, stream);
		break;
	}
	case REC_FILE:
		err = run(ix, S_FILE, "itiittiit", rec->seq, sid, rec->wall_ns,
			  get_u64(rec, TAG_PID, 0), rec_str(rec, TAG_PATH, path, sizeof(path)),
			  rec_str(rec, TAG_DIRECTION, s2, sizeof(s2)), get_u64(rec, TAG_BYTES, 0),
			  get_u64(rec, TAG_SIZE, 0), rec_str(rec, TAG_SHA256, s3, sizeof(s3)));
		break;
	case REC_DAEMON: {
		/* the last start or stop per host: a start not followed by a stop was a crash */
		char key[300];

		daemon_key(rec_str(rec, TAG_HOST, s1, sizeof(s1)), key, sizeof(key));
		err = run(ix, S_META, "tt", key, rec_str(rec, TAG_EVENT, s2, sizeof(s2)));
		break;
	}
	case REC_GAP: {
		uint64_t events = get_u64(rec, TAG_LOST_EVENTS, 0),
			 bytes = get_u64(rec, TAG_LOST_BYTES, 0);

		err = run(ix, S_GAP, "itiiitti", rec->seq, sid, rec->wall_ns, events, bytes,
			  rec_str(rec, TAG_REASON, s1, sizeof(s1)),
			  rec_str(rec, TAG_FILE, s2, sizeof(s2)), get_u64(rec, TAG_FILE_OFFSET, 0));
		if (!err)
			err = run(ix, S_LOST, "tii", sid, events, bytes);
		break;
	}
	default:
		break;
	}
	/* `sealtrail events` reads a session's records from here, not the whole log */
	if (!err && rec->type != REC_TTY && has_session(rec))
		err = run(ix, S_RECORD, "itiiii", rec->seq, sid, (uint64_t)rec->type, rec->wall_ns,
			  (uint64_t)seg_no, off);
	if (rec->seq > ix->last_seq) {
		ix->last_seq = rec->seq;
		ix->last_seg = seg_no;
	}
	return err ? -EIO : 0;
}

int index_commit(struct index *ix)
{
	int err, commit;

	if (!ix->in_tx)
		return 0;
	err = flush_bytes(ix);
	err |= run(ix, S_META, "ti", "last_seq", ix->last_seq);
	err |= run(ix, S_META, "ti", "last_segment", (uint64_t)ix->last_seg);
	commit = run(ix, S_COMMIT, "");
	/*
	 * What SQLite did, not what we asked: a COMMIT that failed busy leaves
	 * the transaction open, and the next commit retries it (a BEGIN in it
	 * would fail, and nothing would be indexed from then on); an error
	 * that rolled it back closed it, and its rows are not in the index.
	 */
	ix->in_tx = !sqlite3_get_autocommit(ix->db);
	if (commit && !ix->in_tx)
		log_error("index: a transaction was rolled back: run `sealtrail reindex` if "
			  "sessions or events are missing");
	return err || commit ? -EIO : 0;
}

int index_clear(struct index *ix)
{
	char *msg = NULL;

	if (sqlite3_exec(ix->db,
			 "DELETE FROM sessions; DELETE FROM chunks; DELETE FROM execs;"
			 " DELETE FROM gaps; DELETE FROM meta; DELETE FROM channels;"
			 " DELETE FROM streams; DELETE FROM files; DELETE FROM records;",
			 NULL, NULL, &msg) != SQLITE_OK) {
		log_error("index: cannot clear: %s", msg);
		sqlite3_free(msg);
		return -EIO;
	}
	ix->last_seq = 0;
	ix->last_seg = 0;
	ix->npending = 0;
	return 0;
}

int index_last(struct index *ix, uint64_t *seq, uint32_t *seg_no)
{
	sqlite3_stmt *st;

	*seq = 0;
	*seg_no = 0;
	if (sqlite3_prepare_v2(ix->db, "SELECT key, value FROM meta", -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(st, 0);

		if (k && !strcmp(k, "last_seq"))
			*seq = sqlite3_column_int64(st, 1);
		else if (k && !strcmp(k, "last_segment"))
			*seg_no = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	ix->last_seq = *seq;
	ix->last_seg = *seg_no;
	return 0;
}

int index_open_sessions(struct index *ix, struct buf *ids)
{
	sqlite3_stmt *st;
	int err = 0;

	if (sqlite3_prepare_v2(ix->db, "SELECT id FROM sessions WHERE end_ns IS NULL ORDER BY id",
			       -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	while (!err && sqlite3_step(st) == SQLITE_ROW) {
		const char *hex = (const char *)sqlite3_column_text(st, 0);
		uint8_t id[ST_ID_LEN];

		if (hex && strlen(hex) == 2 * ST_ID_LEN && !hex_decode(hex, id, ST_ID_LEN))
			err = buf_add(ids, id, ST_ID_LEN);
	}
	sqlite3_finalize(st);
	return err;
}
