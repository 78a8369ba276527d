/*
 * cli/timeline.c: the lines of `sealtrail events`. Records come from the
 * store, but their text was typed or chosen by the people recorded: the
 * human form must never hand it to the terminal raw, nor let one record's
 * text show up in the next line.
 */
#include <stdio.h>
#include <string.h>

#include "cli/timeline.h"
#include "test.h"

static const uint8_t SID[ST_ID_LEN] = {1, 2, 3};
#define WALL 1795600000123456789ull /* 2026-11-25T09:46:40.123456789Z */

static struct buf built;
static struct record rec;

/* Begin a record of SID at WALL; add fields with rec_add_*(&built, ...). */
static void begin(uint16_t type)
{
	rec_begin(&built, type, SID, WALL, 1000);
}

static const struct record *done(void)
{
	char err[128];

	if (rec_finish(&built, 42) || rec_parse_built(built.data, built.len, &rec, err))
		test_fail(__FILE__, __LINE__, "record does not build: %s", err);
	return &rec;
}

/* The line as a C string (NULL: no human line for this type). */
static const char *line_of(const struct record *r, bool json)
{
	static struct buf line;
	static char out[1024];

	if (!timeline_line(&line, r, json))
		return NULL;
	snprintf(out, sizeof(out), "%.*s", (int)line.len, line.data ? (char *)line.data : "");
	return out;
}

TEST(timeline_json_keeps_every_field)
{
	static const char argv[] = "sh\0-c\0echo \"hi\"\n\0";

	begin(REC_EXEC);
	rec_add_u64(&built, TAG_PID, 7);
	rec_add_u64(&built, TAG_LOGINUID, UINT32_MAX);
	rec_add_bytes(&built, TAG_ARGV, argv, sizeof(argv) - 1);
	rec_add_u64(&built, TAG_SIZE, UINT64_MAX);
	rec_add_u64(&built, TAG_WINSIZE, 24u << 16 | 80);
	ASSERT_STREQ(line_of(done(), true),
		     "{\"seq\":42,\"time\":\"2026-11-25T09:46:40.123456789Z\",\"type\":\"exec\","
		     "\"pid\":7,\"loginuid\":null,\"argv\":[\"sh\",\"-c\",\"echo \\\"hi\\\"\\n\"],"
		     "\"size\":18446744073709551615,\"winsize\":\"80x24\"}",
		     "exec as JSON, the largest u64 a number");
}

TEST(timeline_exec_and_exit_in_columns)
{
	static const char argv[] = "printf\0\033[2J\\\0";

	begin(REC_EXEC);
	rec_add_u64(&built, TAG_PID, 4242);
	rec_add_bytes(&built, TAG_ARGV, argv, sizeof(argv) - 1);
	rec_add_u64(&built, TAG_ARGV_TRUNCATED, 1);
	rec_add_str(&built, TAG_CWD, "/home/al\033ice");
	ASSERT_STREQ(line_of(done(), false),
		     "2026-11-25T09:46:40.123456789Z  exec   pid 4242    printf \\x1b[2J\\x5c "
		     "[argv truncated]  (in /home/al\\x1bice)",
		     "escape sequences and backslashes escaped, the working directory last");

	begin(REC_EXIT);
	rec_add_u64(&built, TAG_PID, 4242);
	rec_add_u64(&built, TAG_STATUS, 9);
	ASSERT_STREQ(line_of(done(), false),
		     "2026-11-25T09:46:40.123456789Z  exit   pid 4242    killed by signal 9",
		     "killed");
	begin(REC_EXIT);
	rec_add_u64(&built, TAG_PID, 4242);
	rec_add_u64(&built, TAG_STATUS, 3 << 8);
	ASSERT_STREQ(line_of(done(), false),
		     "2026-11-25T09:46:40.123456789Z  exit   pid 4242    status 3", "exit status");
}

TEST(timeline_other_records_as_name_value)
{
	begin(REC_SESSION_START);
	rec_add_str(&built, TAG_USER, "alice");
	rec_add_str(&built, TAG_HOST, "bastion \"one\"");
	rec_add_u64(&built, TAG_LOGINUID, UINT32_MAX);
	rec_add_bytes(&built, TAG_TTY, "pts/\0001", 6);
	rec_add_u64(&built, 0x7ff0, 5); /* a tag of a newer sealtrail */
	ASSERT_STREQ(line_of(done(), false),
		     "2026-11-25T09:46:40.123456789Z  session_start user=alice "
		     "host=\"bastion \\x22one\\x22\" loginuid=unset tty=\"pts/\\x001\"",
		     "quoted when needed, NUL and quotes escaped, unknown tags left out");

	begin(REC_GAP);
	rec_add_u64(&built, TAG_LOST_BYTES, UINT64_MAX);
	rec_add_str(&built, TAG_REASON, "");
	ASSERT_STREQ(line_of(done(), false),
		     "2026-11-25T09:46:40.123456789Z  gap    lost_bytes=18446744073709551615 "
		     "reason=\"\"",
		     "the largest u64 a number, empty text quoted");
}

TEST(timeline_lines_do_not_carry_over)
{
	const char *l;

	begin(REC_SESSION_ATTR);
	rec_add_str(&built, TAG_USER, "a-long-user-name-from-before");
	ASSERT_STREQ(
	    line_of(done(), false),
	    "2026-11-25T09:46:40.123456789Z  session_attr user=a-long-user-name-from-before",
	    "first line");
	begin(REC_SESSION_END);
	l = line_of(done(), false);
	ASSERT_STREQ(l, "2026-11-25T09:46:40.123456789Z  session_end", "a record without fields");
	begin(REC_EXEC);
	rec_add_u64(&built, TAG_PID, 9);
	ASSERT_STREQ(line_of(done(), false), "2026-11-25T09:46:40.123456789Z  exec   pid 9       ",
		     "an exec without argv");
	begin(REC_TTY);
	rec_add_bytes(&built, TAG_DATA, "x", 1);
	ASSERT_TRUE(line_of(done(), false) == NULL, "no human line for chunks");
	ASSERT_STREQ(line_of(&rec, true),
		     "{\"seq\":42,\"time\":\"2026-11-25T09:46:40.123456789Z\",\"type\":\"tty\","
		     "\"bytes\":1}",
		     "... but a JSON one");
}
