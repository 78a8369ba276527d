/* `sealtrail status` and `sealtrail reindex`. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/log.h"

/* The daemon holds an exclusive flock on DIR/LOCK while it runs. */
static bool daemon_running(const char *dir)
{
	char path[4096];
	int fd;
	bool held;

	snprintf(path, sizeof(path), "%s/LOCK", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	held = flock(fd, LOCK_SH | LOCK_NB) && errno == EWOULDBLOCK;
	close(fd);
	return held;
}

/* Value of "key" in our own flat status JSON, copied into out. */
static const char *json_get(const char *json, const char *key, char *out, size_t size)
{
	char pat[64];
	const char *p;
	size_t n;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = json ? strstr(json, pat) : NULL;
	if (!p) {
		snprintf(out, size, "?");
		return out;
	}
	p += strlen(pat);
	if (*p == '"')
		p++; /* strings without their quotes */
	n = *p == '[' ? strcspn(p, "]") + 1 : p[-1] == '"' ? strcspn(p, "\"") : strcspn(p, ",}");
	if (n >= size)
		n = size - 1;
	memcpy(out, p, n);
	out[n] = 0;
	return out;
}

/* A JSON array of names or numbers as "N: a, b, c" (no quotes). */
static const char *json_list(const char *json, const char *key, char *out, size_t size)
{
	char raw[1024];
	size_t n = 0, o;

	json_get(json, key, raw, sizeof(raw));
	if (raw[0] != '[') {
		snprintf(out, size, "?");
		return out;
	}
	for (const char *p = raw + 1; *p && *p != ']'; p++)
		n += p == raw + 1 || *p == ',';
	o = (size_t)snprintf(out, size, "%zu%s", n, n ? ":" : "");
	for (const char *p = raw + 1; *p && *p != ']' && o + 3 < size; p++) {
		if (*p == ',' || p == raw + 1)
			out[o++] = *p == ',' ? ',' : ' ';
		if (*p == ',')
			out[o++] = ' ';
		if (*p != '"' && *p != ',')
			out[o++] = *p;
	}
	out[o] = 0;
	return out;
}

/* The records a burst left to seal (store/backlog.h), in MiB. */
static void print_backlog(const char *json)
{
	char v[32];
	double mib = 1 << 20, limit, now, peak;

	limit = strtod(json_get(json, "backlog_limit", v, sizeof(v)), NULL) / mib;
	now = strtod(json_get(json, "backlog_bytes", v, sizeof(v)), NULL) / mib;
	peak = strtod(json_get(json, "backlog_peak", v, sizeof(v)), NULL) / mib;
	if (!strcmp(v, "?")) /* a daemon from before the backlog */
		return;
	if (!limit) {
		printf("backlog:        none (--backlog 0, or it could not be made: see the log);"
		       " every record sealed at once\n");
		return;
	}
	printf("backlog:        %.1f MiB in %s records waiting to be sealed, at most %.1f of"
	       " %.0f MiB\n",
	       now, json_get(json, "backlog_records", v, sizeof(v)), peak, limit);
}

int cmd_status(struct cli *c, int argc, char **argv)
{
	char path[4096], v[1024], v2[32], v3[32];
	struct buf file = {0};
	const char *json = NULL;
	bool running, starting, indexed = false;
	long long live = 0;
	sqlite3_stmt *st;

	if (cli_no_args(c, argc, argv, "status"))
		return 2;
	running = daemon_running(c->store_dir);
	snprintf(path, sizeof(path), "%s/status.json", c->store_dir);
	if (buf_read_file(&file, path, 1 << 20) == 0 && file.len && !buf_add(&file, "", 1)) {
		file.data[strcspn((char *)file.data, "\n")] = 0;
		json = (const char *)file.data;
	}
	/* the daemon holds the store but is still reading it back, not recording yet */
	starting = running && json && !strcmp(json_get(json, "state", v, sizeof(v)), "starting");
	if (cli_open(c) == 0) {
		if (sqlite3_prepare_v2(c->store.index.db,
				       "SELECT count(*) FROM sessions WHERE end_ns IS NULL", -1,
				       &st, NULL) == SQLITE_OK) {
			if (sqlite3_step(st) == SQLITE_ROW) {
				live = sqlite3_column_int64(st, 0);
				indexed = true;
			}
			sqlite3_finalize(st);
		}
		store_close(&c->store);
	}
	if (c->json) {
		/* the daemon's last status, with "running" as seen now */
		struct buf dir = {0};

		json_add_string(&dir, (const uint8_t *)c->store_dir, strlen(c->store_dir));
		char open_sessions[32] = "null";

		if (indexed)
			snprintf(open_sessions, sizeof(open_sessions), "%lld", live);
		/* daemon_stale: "daemon" is what a daemon no longer running wrote last */
		printf("{\"running\":%s,\"state\":\"%s\",\"store\":%s,\"open_sessions\":%s,"
		       "\"daemon_stale\":%s,\"daemon\":%s}\n",
		       running ? "true" : "false",
		       starting	 ? "starting"
		       : running ? "recording"
				 : "stopped",
		       dir.data, open_sessions, json && !running ? "true" : "false",
		       json ? json : "null");
		buf_free(&dir);
	} else {
		printf("sealtraild:     %s\n", starting	 ? "starting"
					       : running ? "running"
							 : "not running");
		printf("store:          %s\n", c->store_dir);
		if (starting) {
			printf("pid:            %s\n", json_get(json, "pid", v, sizeof(v)));
			printf("since:          %s\n", json_get(json, "started", v, sizeof(v)));
			printf("\nIt holds the store and is reading it back (after an upgrade that "
			       "changed\nthe index, rebuilding the index), then it attaches its "
			       "programs:\nrecording begins after that. Its log says when.\n");
			json = NULL; /* nothing below is this run's yet */
		}
		if (json && !running)
			printf("\nwhat sealtraild (pid %s) last wrote, at %s, before it stopped:\n",
			       json_get(json, "pid", v, sizeof(v)),
			       json_get(json, "updated", v2, sizeof(v2)));
		if (json) {
			if (running)
				printf("pid:            %s\n", json_get(json, "pid", v, sizeof(v)));
			printf("started:        %s\n", json_get(json, "started", v, sizeof(v)));
			if (running)
				printf("last update:    %s\n",
				       json_get(json, "updated", v, sizeof(v)));
			printf("programs:       %s\n", json_list(json, "programs", v, sizeof(v)));
			printf("sshd listeners: %s\n", json_list(json, "listeners", v, sizeof(v)));
			printf("live sessions:  %s\n",
			       json_get(json, "live_sessions", v, sizeof(v)));
			printf("events:         %s\n", json_get(json, "events", v, sizeof(v)));
			printf("lost events:    %s", json_get(json, "lost_events", v, sizeof(v)));
			printf(" (%s terminal bytes)\n",
			       json_get(json, "lost_bytes", v, sizeof(v)));
			printf("records:        %s\n", json_get(json, "records", v, sizeof(v)));
			printf(
			    "ring buffer:    %s bytes, at most %s waiting, longest drain %s ms\n",
			    json_get(json, "ringbuf_bytes", v, sizeof(v)),
			    json_get(json, "ringbuf_peak_used", v2, sizeof(v2)),
			    json_get(json, "longest_drain_ms", v3, sizeof(v3)));
			printf("scheduling:     %s\n", json_get(json, "scheduling", v, sizeof(v)));
			print_backlog(json);
			if (strtoull(json_get(json, "index_errors", v, sizeof(v)), NULL, 10))
				printf("index:          %s records stored but not indexed (see the "
				       "log): `sealtrail reindex` rebuilds it\n",
				       v);
		}
		if (json && !running)
			printf("\n");
		if (indexed && !starting)
			printf("open sessions:  %lld in the index%s\n", live,
			       running ? "" : " (closed when sealtraild starts again)");
	}
	buf_free(&file);
	return running ? 0 : 3;
}

int cmd_reindex(struct cli *c, int argc, char **argv)
{
	uint64_t n = 0;
	int err;

	if (cli_no_args(c, argc, argv, "reindex"))
		return 2;
	if (c->auditor_key) {
		log_error("reindex rewrites the store's own index (a writer, with keys/kek);"
			  " with --auditor-key every command indexes the segments afresh itself");
		return 2;
	}
	/* the writer's lock, not a writer: no new segment for an index */
	err = store_open(&c->store, c->store_dir, STORE_WRITE | STORE_INDEX_ONLY);
	if (err == -EBUSY)
		log_error("reindex needs the store to itself: stop sealtraild first (it brings"
			  " the index up to the log itself when it starts)");
	if (err)
		return 1;
	err = store_reindex(&c->store, &n);
	store_close(&c->store);
	if (err) {
		log_error("reindex of %s failed: %s", c->store_dir, strerror(-err));
		return 1;
	}
	if (c->json)
		printf("{\"records\":%llu}\n", (unsigned long long)n);
	else
		printf("reindexed %llu records in %s\n", (unsigned long long)n, c->store_dir);
	return 0;
}
