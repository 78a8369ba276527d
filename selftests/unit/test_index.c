/* The index is derived data: an index of another schema version is rebuilt. */
#include <sqlite3.h>
#include <string.h>

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
	uint8_t sid[ST_ID_LEN] = {7};
	struct store st;
	struct buf rec = {0};
	sqlite3 *db;

	ASSERT_EQ(store_open(&st, test_path("store"), STORE_WRITE | STORE_CREATE), 0, "create");
	ASSERT_EQ(rec_begin(&rec, REC_SESSION_START, sid, 1, 1), 0, "record");
	ASSERT_EQ(rec_add_str(&rec, TAG_USER, "alice"), 0, "user");
	ASSERT_EQ(store_append(&st, &rec), 0, "append");
	store_close(&st);

	ASSERT_EQ(sqlite3_open(test_path("store/index.sqlite"), &db), SQLITE_OK, "open index");
	ASSERT_EQ(
	    sqlite3_exec(db, "PRAGMA user_version = 1; DELETE FROM sessions;", NULL, NULL, NULL),
	    SQLITE_OK, "make it look old and lose a row");
	sqlite3_close(db);

	ASSERT_EQ(store_open(&st, test_path("store"), STORE_WRITE), 0, "reopen");
	ASSERT_EQ(count_sessions(&st), 1, "the session is back, rebuilt from the log");
	store_close(&st);
	buf_free(&rec);
}
