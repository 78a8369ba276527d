/*
 * `sealtrail access-log`: every request sealtraild served or refused on
 * its socket, from the sealed REC_ACCESS records (a scan of the log: the
 * index does not hold them).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/log.h"

struct access_visit {
	struct cli *c;
	struct cli_window w;
	struct buf line;
	unsigned rows;
};

static void add_text(struct buf *b, const char *key, const struct record *rec, uint16_t tag)
{
	const struct rec_field *f = rec_field(rec, tag);

	buf_addf(b, ",\"%s\":", key);
	json_add_string(b, f ? f->data : (const uint8_t *)"", f ? f->len : 0);
}

static int access_record(void *arg, const struct record *rec, uint32_t seg_no UNUSED,
			 uint64_t off UNUSED)
{
	struct access_visit *v = arg;
	const struct rec_field *args = rec_field(rec, TAG_ARGV);
	char when[40], user[64], role[16], decision[16], reason[512];
	uint64_t uid = 0, gid = 0, pid = 0, requests;

	if (rec->type != REC_ACCESS || rec->wall_ns < v->w.since || rec->wall_ns > v->w.until)
		return 0;
	format_rfc3339(rec->wall_ns, when);
	rec_u64(rec, TAG_UID, &uid);
	rec_u64(rec, TAG_GID, &gid);
	rec_u64(rec, TAG_PID, &pid);
	v->line.len = 0;
	if (v->c->json) {
		buf_addf(&v->line,
			 "{\"seq\":%llu,\"time\":\"%s\",\"uid\":%llu,\"gid\":%llu,\"pid\":%llu",
			 (unsigned long long)rec->seq, when, (unsigned long long)uid,
			 (unsigned long long)gid, (unsigned long long)pid);
		add_text(&v->line, "user", rec, TAG_USER);
		add_text(&v->line, "role", rec, TAG_ROLE);
		add_text(&v->line, "command", rec, TAG_COMMAND);
		add_text(&v->line, "decision", rec, TAG_DECISION);
		buf_addf(&v->line, ",\"argv\":[");
		for (uint32_t i = 0, start = 0; args && i < args->len; i++) {
			if (args->data[i])
				continue;
			buf_addf(&v->line, "%s", start ? "," : "");
			json_add_string(&v->line, args->data + start, i - start);
			start = i + 1;
		}
		buf_addf(&v->line, "]");
		if (rec_field(rec, TAG_REASON))
			add_text(&v->line, "reason", rec, TAG_REASON);
		/* one record for many refused requests past the rate limit */
		if (rec_u64(rec, TAG_REQUESTS, &requests))
			buf_addf(&v->line, ",\"requests\":%llu", (unsigned long long)requests);
		printf("%s}\n", v->line.data);
	} else {
		if (!v->rows)
			printf("%-30s %-8s %6s %-16s %-8s %s\n", "TIME", "DECISION", "UID", "USER",
			       "ROLE", "REQUEST");
		/* NUL-separated, NUL-terminated: spaces between, none after */
		for (uint32_t i = 0; args && i + 1 < args->len; i++) {
			char ch = args->data[i];

			buf_add(&v->line, ch ? &ch : " ", 1);
		}
		printf("%-30s %-8s %6llu %-16s %-8s %s\n", when,
		       rec_str(rec, TAG_DECISION, decision, sizeof(decision)),
		       (unsigned long long)uid, rec_str(rec, TAG_USER, user, sizeof(user)),
		       rec_str(rec, TAG_ROLE, role, sizeof(role)),
		       v->line.len ? (const char *)v->line.data : "-");
		if (rec_str(rec, TAG_REASON, reason, sizeof(reason))[0])
			printf("%-30s   why: %s\n", "", reason);
	}
	v->rows++;
	return 0;
}

int cmd_access_log(struct cli *c, int argc, char **argv)
{
	struct access_visit v = {.c = c};
	struct store_visitor sv = {.record = access_record, .damage = cli_scan_damage, .arg = &v};
	int err;

	if (cli_window_args(c, argc, argv, &v.w, "access-log"))
		return 2;
	if (cli_open(c))
		return 1;
	err = store_scan(&c->store, &sv);
	buf_free(&v.line);
	store_close(&c->store);
	return err ? 1 : 0;
}
