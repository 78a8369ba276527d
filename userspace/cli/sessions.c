/* `sealtrail sessions` and `sealtrail events`: what the index knows. */
#include <errno.h>
#include <getopt.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/timeline.h"
#include "common/log.h"

static void json_text(struct buf *b, const char *key, const char *val, bool comma)
{
	buf_addf(b, "%s\"%s\":", comma ? "," : "", key);
	if (val)
		json_add_string(b, (const uint8_t *)val, strlen(val));
	else
		buf_add(b, "null", 4);
}

static void json_int(struct buf *b, const char *key, sqlite3_stmt *st, int col)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		buf_addf(b, ",\"%s\":null", key);
	else
		buf_addf(b, ",\"%s\":%lld", key, (long long)sqlite3_column_int64(st, col));
}

static void json_time(struct buf *b, const char *key, sqlite3_stmt *st, int col)
{
	char t[40];

	if (sqlite3_column_type(st, col) == SQLITE_NULL) {
		buf_addf(b, ",\"%s\":null", key);
		return;
	}
	format_rfc3339(sqlite3_column_int64(st, col), t);
	buf_addf(b, ",\"%s\":\"%s\"", key, t);
}

static const char *col_text(sqlite3_stmt *st, int col)
{
	return (const char *)sqlite3_column_text(st, col);
}

/* Prepare a listing whose ?1 and ?2 are the --since/--until window. */
static sqlite3_stmt *window_query(struct cli *c, const char *sql, const struct cli_window *w)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(c->store.index.db, sql, -1, &st, NULL) != SQLITE_OK) {
		log_error("%s/index.sqlite: %s", c->store_dir, sqlite3_errmsg(c->store.index.db));
		store_close(&c->store);
		return NULL;
	}
	sqlite3_bind_int64(st, 1, w->since > INT64_MAX ? INT64_MAX : (sqlite3_int64)w->since);
	sqlite3_bind_int64(st, 2, w->until > INT64_MAX ? INT64_MAX : (sqlite3_int64)w->until);
	return st;
}

int cmd_sessions(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"since", required_argument, NULL, 's'},
	    {"until", required_argument, NULL, 'u'},
	    {"user", required_argument, NULL, 'U'},
	    {"kind", required_argument, NULL, 'K'},
	    CLI_COMMON_OPTS,
	    {0},
	};
	const char *sql =
	    "SELECT id, user, loginuid, uid, source_ip, source_port, local_port, tty, host,"
	    " start_ns, end_ns, bytes_in, bytes_out, lost_events, lost_bytes, end_reason,"
	    " leader_pid, kind, command,"
	    " (SELECT count(*) FROM gaps WHERE gaps.session = sessions.id), term"
	    " FROM sessions WHERE (end_ns IS NULL OR end_ns >= ?1) AND start_ns <= ?2"
	    " AND (?3 IS NULL OR user = ?3) AND (?4 IS NULL OR kind = ?4) ORDER BY start_ns, id";
	uint64_t now = clock_ns(CLOCK_REALTIME);
	struct cli_window w = CLI_WINDOW_ALL;
	const char *user = NULL, *kind = NULL;
	struct buf line = {0};
	sqlite3_stmt *st;
	int opt, rows = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int win = cli_window_opt(&w, opt, optarg, now);

		if (win < 0)
			return 2;
		if (win)
			continue;
		if (opt == 'U') {
			user = optarg;
		} else if (opt == 'K') {
			if (strcmp(optarg, "shell") && strcmp(optarg, "exec") &&
			    strcmp(optarg, "subsystem") && strcmp(optarg, "forward")) {
				log_error("--kind %s: need shell, exec, subsystem or forward",
					  optarg);
				return 2;
			}
			kind = optarg;
		} else if (cli_common_opt(c, opt)) {
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "usage: sealtrail sessions [--since T] [--until T] [--user U]"
				" [--kind K]\n");
		return 2;
	}
	if (cli_window_check(&w))
		return 2;
	if (cli_open(c))
		return 1;
	st = window_query(c, sql, &w);
	if (!st)
		return 1;
	if (user)
		sqlite3_bind_text(st, 3, user, -1, SQLITE_STATIC);
	if (kind)
		sqlite3_bind_text(st, 4, kind, -1, SQLITE_STATIC);
	if (!c->json)
		printf("%-32s  %-10s %-9s %-21s %-6s %-7s %-30s %-30s %10s %10s %5s %4s\n", "ID",
		       "USER", "KIND", "SOURCE", "LPORT", "TTY", "START", "END", "IN", "OUT",
		       "LOST", "GAPS");
	while (sqlite3_step(st) == SQLITE_ROW) {
		char start[40], end[40], src[96];

		rows++;
		if (c->json) {
			line.len = 0;
			json_text(&line, "id", col_text(st, 0), false);
			json_text(&line, "user", col_text(st, 1), true);
			json_int(&line, "loginuid", st, 2);
			json_int(&line, "uid", st, 3);
			json_text(&line, "source_ip", col_text(st, 4), true);
			json_int(&line, "source_port", st, 5);
			json_int(&line, "local_port", st, 6);
			json_text(&line, "tty", col_text(st, 7), true);
			json_text(&line, "host", col_text(st, 8), true);
			json_time(&line, "start", st, 9);
			json_time(&line, "end", st, 10);
			json_int(&line, "bytes_in", st, 11);
			json_int(&line, "bytes_out", st, 12);
			json_int(&line, "lost_events", st, 13);
			json_int(&line, "lost_bytes", st, 14);
			json_text(&line, "end_reason", col_text(st, 15), true);
			json_int(&line, "leader_pid", st, 16);
			json_text(&line, "kind", col_text(st, 17), true);
			json_text(&line, "command", col_text(st, 18), true);
			json_int(&line, "gaps", st, 19);
			json_text(&line, "term", col_text(st, 20), true);
			printf("{%s}\n", line.data);
			continue;
		}
		format_rfc3339(sqlite3_column_int64(st, 9), start);
		if (sqlite3_column_type(st, 10) == SQLITE_NULL)
			snprintf(end, sizeof(end), "(live)");
		else
			format_rfc3339(sqlite3_column_int64(st, 10), end);
		snprintf(src, sizeof(src), "%s:%lld", col_text(st, 4) ? col_text(st, 4) : "?",
			 (long long)sqlite3_column_int64(st, 5));
		printf(
		    "%-32s  %-10s %-9s %-21s %-6lld %-7s %-30s %-30s %10lld %10lld %5lld %4lld\n",
		    col_text(st, 0), col_text(st, 1) ? col_text(st, 1) : "?",
		    col_text(st, 17) ? col_text(st, 17) : "-", src,
		    (long long)sqlite3_column_int64(st, 6), col_text(st, 7) ? col_text(st, 7) : "-",
		    start, end, (long long)sqlite3_column_int64(st, 11),
		    (long long)sqlite3_column_int64(st, 12),
		    (long long)sqlite3_column_int64(st, 13),
		    (long long)sqlite3_column_int64(st, 19));
	}
	if (!c->json && !rows)
		printf("(no sessions in this window)\n");
	sqlite3_finalize(st);
	buf_free(&line);
	store_close(&c->store);
	return 0;
}

/*
 * Every gap record: losses in a session (ring buffer full, ...) and damage
 * of the store itself (a torn tail after a crash), which belongs to no
 * session and so shows in no session's timeline.
 */
int cmd_gaps(struct cli *c, int argc, char **argv)
{
	const char *sql = "SELECT seq, session, wall_ns, lost_events, lost_bytes, reason, file,"
			  " file_offset FROM gaps WHERE wall_ns >= ?1 AND wall_ns <= ?2"
			  " ORDER BY seq";
	struct cli_window w;
	char zero[ST_ID_HEX];
	struct buf line = {0};
	sqlite3_stmt *st;
	int rows = 0;

	if (cli_window_args(c, argc, argv, &w, "gaps"))
		return 2;
	if (cli_open(c))
		return 1;
	st = window_query(c, sql, &w);
	if (!st)
		return 1;
	/* store-level records carry the zero session id */
	hex_encode((const uint8_t[ST_ID_LEN]){0}, ST_ID_LEN, zero);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *sid = col_text(st, 1);
		char t[40];

		if (sid && !strcmp(sid, zero))
			sid = NULL;
		rows++;
		if (c->json) {
			line.len = 0;
			buf_addf(&line, "\"seq\":%lld", (long long)sqlite3_column_int64(st, 0));
			json_time(&line, "time", st, 2);
			json_text(&line, "session", sid, true);
			json_int(&line, "lost_events", st, 3);
			json_int(&line, "lost_bytes", st, 4);
			json_text(&line, "reason", col_text(st, 5), true);
			json_text(&line, "file", col_text(st, 6), true);
			json_int(&line, "file_offset", st, 7);
			printf("{%s}\n", line.data);
			continue;
		}
		format_rfc3339(sqlite3_column_int64(st, 2), t);
		printf("%s  %-32s  %s", t, sid ? sid : "(store)",
		       col_text(st, 5) ? col_text(st, 5) : "?");
		if (sqlite3_column_int64(st, 3) || sqlite3_column_int64(st, 4))
			printf("; %lld events, %lld bytes lost",
			       (long long)sqlite3_column_int64(st, 3),
			       (long long)sqlite3_column_int64(st, 4));
		if (col_text(st, 6))
			printf("; %s at byte offset %lld", col_text(st, 6),
			       (long long)sqlite3_column_int64(st, 7));
		printf("\n");
	}
	if (!c->json && !rows)
		printf("(no gaps in this window)\n");
	sqlite3_finalize(st);
	buf_free(&line);
	store_close(&c->store);
	return 0;
}

/*
 * The session's records in time order, each read where the index says it
 * lives: a session from last month costs what it holds, not a scan of the
 * log written since. Terminal chunks and forks only with --json.
 */
static const char events_sql[] =
    "SELECT seq, wall_ns, segment, offset FROM records"
    " WHERE session = ?1 AND (?2 OR type != ?3)"
    " UNION ALL SELECT seq, wall_ns, segment, offset FROM chunks WHERE session = ?1 AND ?2"
    " ORDER BY 2, 1";

static int print_events(struct cli *c, const char *id)
{
	uint8_t sid[ST_ID_LEN];
	struct buf raw = {0}, line = {0};
	struct record rec;
	sqlite3_stmt *st;
	uint64_t bad = 0, total = 0;
	int rc;

	hex_decode(id, sid, ST_ID_LEN);
	if (sqlite3_prepare_v2(c->store.index.db, events_sql, -1, &st, NULL) != SQLITE_OK) {
		const char *msg = sqlite3_errmsg(c->store.index.db);

		log_error("index of %s: %s%s", c->store.dir, msg,
			  strstr(msg, "no such table")
			      ? ": it is from an older sealtrail; sealtraild rebuilds it when it "
				"starts, or run `sealtrail reindex`"
			      : "");
		return 1;
	}
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, c->json);
	sqlite3_bind_int(st, 3, REC_FORK);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t seq = sqlite3_column_int64(st, 0), off = sqlite3_column_int64(st, 3);
		uint32_t seg = sqlite3_column_int64(st, 2);

		total++;
		/* store_read_at() has said what is wrong with the bytes there */
		if (store_read_at(&c->store, seg, off, &raw, &rec)) {
			log_error("session %s: record %llu (segment %u, byte offset %llu) is "
				  "unreadable; the timeline goes on without it (`sealtrail verify` "
				  "lists all damage)",
				  id, (unsigned long long)seq, seg, (unsigned long long)off);
			bad++;
			continue;
		}
		if (rec.seq != seq || memcmp(rec.session, sid, ST_ID_LEN)) {
			log_error("session %s: the index places record %llu at segment %u, byte "
				  "offset %llu, but record %llu is there; run `sealtrail reindex`",
				  id, (unsigned long long)seq, seg, (unsigned long long)off,
				  (unsigned long long)rec.seq);
			bad++;
			continue;
		}
		if (timeline_line(&line, &rec, c->json))
			printf("%.*s\n", (int)line.len, line.data ? (char *)line.data : "");
	}
	if (rc != SQLITE_DONE) {
		log_error("index of %s: %s", c->store.dir, sqlite3_errmsg(c->store.index.db));
		bad++;
	}
	sqlite3_finalize(st);
	buf_free(&raw);
	buf_free(&line);
	if (bad)
		log_error("session %s: %llu of %llu records could not be shown", id,
			  (unsigned long long)bad, (unsigned long long)total);
	return bad ? 1 : 0;
}

int cmd_events(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {CLI_COMMON_OPTS, {0}};
	char id[ST_ID_HEX];
	int opt, err;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1)
		if (cli_common_opt(c, opt))
			return 2;
	if (optind != argc - 1) {
		fprintf(stderr, "usage: sealtrail events SESSION\n");
		return 2;
	}
	if (cli_open(c))
		return 1;
	if (cli_session_id(c, argv[optind], id)) {
		store_close(&c->store);
		return 1;
	}
	err = print_events(c, id);
	store_close(&c->store);
	return err;
}
