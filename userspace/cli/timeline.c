/* One line of a session's timeline per record (timeline.h). */
#include <string.h>

#include "cli/timeline.h"

/*
 * Recorded bytes for a human: control characters, the backslash and (in
 * a quoted value) the double quote as \xNN, never raw to the terminal.
 * A NUL is nul if that is not 0 (argv: a space between arguments).
 */
static void human_text(struct buf *b, const uint8_t *p, uint32_t len, char nul, bool quoted)
{
	for (uint32_t i = 0; i < len; i++) {
		uint8_t c = p[i];

		if (!c && nul)
			buf_add(b, &nul, 1);
		else if (c < 0x20 || c == 0x7f || c == '\\' || (quoted && c == '"'))
			buf_addf(b, "\\x%02x", c);
		else
			buf_add(b, &c, 1);
	}
}

/* argv's arguments end in NULs: the last one is a terminator, not a space */
static uint32_t argv_len(const struct rec_field *f)
{
	return f->len && !f->data[f->len - 1] ? f->len - 1 : f->len;
}

static void json_argv(struct buf *b, const struct rec_field *f)
{
	buf_addf(b, "[");
	for (uint32_t a = 0, start = 0; a <= f->len; a++) {
		if (a < f->len && f->data[a])
			continue;
		if (a > start || a < f->len) {
			buf_addf(b, "%s", start ? "," : "");
			json_add_string(b, f->data + start, a - start);
		}
		start = a + 1;
	}
	buf_addf(b, "]");
}

/*
 * One field: `,"name":value` for JSON, ` name=value` for people (a value
 * with a space, a quote or a NUL between double quotes). Terminal bytes
 * are counted, not shown; tags of a newer sealtrail are left out.
 */
static void add_field(struct buf *b, const struct record *rec, const struct rec_field *f, bool json)
{
	const char *name = rec_tag_name(f->tag);
	bool num = false;
	uint64_t v = 0;

	if (f->tag == TAG_DATA)
		name = "bytes", v = f->len, num = true;
	else if (f->tag == TAG_TIMING)
		name = "writes", v = f->len / TIMING_ENTRY_LEN, num = true;
	else if (!name)
		return;
	else if (!rec_tag_is_text(f->tag) && f->tag != TAG_ARGV)
		num = rec_u64(rec, f->tag, &v);
	buf_addf(b, json ? ",\"%s\":" : " %s=", name);
	if (f->tag == TAG_ARGV && json) {
		json_argv(b, f);
	} else if (f->tag == TAG_WINSIZE && num) {
		/* COLSxROWS, as stty and asciicast say it */
		buf_addf(b, json ? "\"%llux%llu\"" : "%llux%llu", (unsigned long long)(v & 0xffff),
			 (unsigned long long)(v >> 16 & 0xffff));
	} else if ((f->tag == TAG_LOGINUID || f->tag == TAG_SESSIONID) && num && v == UINT32_MAX) {
		/* never set (no pam_loginuid): null, as `sessions` says it */
		buf_addf(b, json ? "null" : "unset");
	} else if (num) {
		buf_addf(b, "%llu", (unsigned long long)v);
	} else if (json) {
		json_add_string(b, f->data, f->len);
	} else {
		bool argv = f->tag == TAG_ARGV;
		uint32_t len = argv ? argv_len(f) : f->len;
		bool quote = !len || memchr(f->data, ' ', len) || memchr(f->data, '"', len) ||
			     memchr(f->data, 0, len);

		buf_addf(b, "%s", quote ? "\"" : "");
		human_text(b, f->data, len, argv ? ' ' : 0, quote);
		buf_addf(b, "%s", quote ? "\"" : "");
	}
}

bool timeline_line(struct buf *out, const struct record *rec, bool json)
{
	uint64_t pid = 0, v = 0;
	char t[40];

	format_rfc3339(rec->wall_ns, t);
	out->len = 0;
	if (json) {
		buf_addf(out, "{\"seq\":%llu,\"time\":\"%s\",\"type\":\"%s\"",
			 (unsigned long long)rec->seq, t, rec_type_name(rec->type));
		for (unsigned i = 0; i < rec->nfields; i++)
			add_field(out, rec, &rec->fields[i], true);
		buf_addf(out, "}");
		return true;
	}
	/* time, type, and the fields that matter for each */
	rec_u64(rec, TAG_PID, &pid);
	switch (rec->type) {
	case REC_EXEC: {
		const struct rec_field *f = rec_field(rec, TAG_ARGV);

		buf_addf(out, "%s  exec   pid %-7llu ", t, (unsigned long long)pid);
		if (f)
			human_text(out, f->data, argv_len(f), ' ', false);
		if (rec_u64(rec, TAG_ARGV_TRUNCATED, &v) && v)
			buf_addf(out, " [argv truncated]");
		f = rec_field(rec, TAG_CWD);
		if (f) {
			buf_addf(out, "  (in ");
			human_text(out, f->data, f->len, 0, false);
			buf_addf(out, ")");
		}
		return true;
	}
	case REC_EXIT:
		rec_u64(rec, TAG_STATUS, &v);
		if (v & 0x7f)
			buf_addf(out, "%s  exit   pid %-7llu killed by signal %llu", t,
				 (unsigned long long)pid, (unsigned long long)(v & 0x7f));
		else
			buf_addf(out, "%s  exit   pid %-7llu status %llu", t,
				 (unsigned long long)pid, (unsigned long long)((v >> 8) & 0xff));
		return true;
	case REC_TTY:
	case REC_FORK:
		return false;
	default:
		buf_addf(out, "%s  %-6s", t, rec_type_name(rec->type));
		for (unsigned i = 0; i < rec->nfields; i++)
			add_field(out, rec, &rec->fields[i], false);
		return true;
	}
}
