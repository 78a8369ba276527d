/* The index is derived data: an index of another schema version is rebuilt. */
#include <sqlite3.h>
#include <string.h>

#include "store/cryptvfs.h"
#include "store/store.h"
#include "test.h"

static int count_sessions(struct store *st)
{
	sqlite3_stmt *q;
	int n = -1;

	if (sqlite3_prepare_v2(st->index.db, "SELECT count(*) FROM sessions", -1, &q, NULL))
		return -1;
	if (sqlite3_step(q) == SQLITE_ROW)
		n = sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	return n;
}

TEST(index_of_an_old_schema_is_rebuilt_from_the_log)
{
	uint8_t sid[ST_ID_LEN] = {7}, kek[INDEX_KEY_LEN], id[ST_ID_LEN];
	struct cryptvfs *vfs;
	struct store st;
	struct buf rec = {0};
	sqlite3 *db;

	ASSERT_EQ(store_open(&st, test_path("store"), STORE_WRITE | STORE_CREATE), 0, "create");
	ASSERT_EQ(rec_begin(&rec, REC_SESSION_START, sid, 1, 1), 0, "record");
	ASSERT_EQ(rec_add_str(&rec, TAG_USER, "alice"), 0, "user");
	ASSERT_EQ(store_append(&st, &rec), 0, "append");
	memcpy(kek, st.kek, sizeof(kek));
	memcpy(id, st.id, sizeof(id));
	store_close(&st);

	if (!ASSERT_EQ(cryptvfs_new(kek, id, &vfs), 0, "the index's vfs"))
		return;
	ASSERT_EQ(sqlite3_open_v2(test_path("store/index.sqlite"), &db, SQLITE_OPEN_READWRITE,
				  cryptvfs_name(vfs)),
		  SQLITE_OK, "open index");
	ASSERT_EQ(
	    sqlite3_exec(db, "PRAGMA user_version = 1; DELETE FROM sessions;", NULL, NULL, NULL),
	    SQLITE_OK, "make it look old and lose a row");
	sqlite3_close(db);
	cryptvfs_free(vfs);

	ASSERT_EQ(store_open(&st, test_path("store"), STORE_WRITE), 0, "reopen");
	ASSERT_EQ(count_sessions(&st), 1, "the session is back, rebuilt from the log");
	store_close(&st);
	buf_free(&rec);
}
