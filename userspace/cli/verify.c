/* `sealtrail verify` and `sealtrail checkpoint`. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/log.h"
#include "store/verify.h"

int cmd_verify(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"against", required_argument, NULL, 'a'},
	    {"pubkey", required_argument, NULL, 'p'},
	    CLI_COMMON_OPTS,
	    {0},
	};
	struct verify_opts o = {0};
	struct verify_result r;
	struct buf line = {0};
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'a')
			o.against_file = optarg;
		else if (opt == 'p')
			o.pubkey_file = optarg;
		else if (cli_common_opt(c, opt))
			return 2;
	}
	if (optind != argc || c->auditor_key) {
		fprintf(stderr,
			"usage: sealtrail verify [--against CHECKPOINT_FILE] [--pubkey FILE]"
			" [--json]\n%s",
			c->auditor_key ? "  (verify needs no decryption key: drop --auditor-key)\n"
				       : "");
		return 2;
	}
	if (store_verify(c->store_dir, &o, &r)) {
		log_error("%s: cannot verify", c->store_dir);
		return 2;
	}
	if (c->json) {
		buf_addf(&line,
			 "{\"ok\":%s,\"pinned\":%s,\"records\":%llu,\"covered\":%llu,"
			 "\"uncovered\":%llu,\"epochs\":%u",
			 r.ok ? "true" : "false", r.pinned ? "true" : "false",
			 (unsigned long long)r.records, (unsigned long long)r.covered,
			 (unsigned long long)(r.records - r.covered), r.epochs);
		if (o.against_file)
			buf_addf(&line,
				 ",\"checkpoints\":%llu,\"checkpoint_size\":%llu,"
				 "\"checkpoint_ok\":%s",
				 (unsigned long long)r.checkpoints,
				 (unsigned long long)r.checkpoint_size,
				 r.checkpoint_ok ? "true" : "false");
		buf_addf(&line, ",\"auditor_keys\":[");
		for (uint32_t i = 0; i < r.nwraps; i++) {
			const struct verify_wrap *w = &r.wraps[i];
			char fp[AUDITOR_FP_LEN];

			buf_addf(&line, "%s{\"first_segment\":%u,\"last_segment\":%u", i ? "," : "",
				 w->first_seg, w->last_seg);
			if (w->auditor) {
				auditor_fingerprint(w->pk, fp);
				buf_addf(&line, ",\"fingerprint\":\"%s\"}", fp);
			} else {
				buf_addf(&line, ",\"fingerprint\":null}");
			}
		}
		buf_addf(&line, "]");
		if (!r.ok) {
			buf_addf(&line, ",\"file\":");
			json_add_string(&line, (const uint8_t *)r.file, strlen(r.file));
			buf_addf(&line, ",\"offset\":%llu,\"seq\":%llu,\"reason\":",
				 (unsigned long long)r.offset, (unsigned long long)r.seq);
			json_add_string(&line, (const uint8_t *)r.reason, strlen(r.reason));
		}
		printf("%s}\n", line.data);
		buf_free(&line);
	} else if (r.ok) {
		printf("OK: %llu records, %u epochs signed, %llu records under a signed tree head,"
		       " %llu not yet covered%s\n",
		       (unsigned long long)r.records, r.epochs, (unsigned long long)r.covered,
		       (unsigned long long)(r.records - r.covered),
		       r.pinned ? ""
				: " (first key taken from the store: pass --pubkey to pin it)");
		if (o.against_file)
			printf("checkpoints in %s: %llu of this store, all consistent (largest tree"
			       " size %llu)\n",
			       o.against_file, (unsigned long long)r.checkpoints,
			       (unsigned long long)r.checkpoint_size);
	} else {
		printf("FAILED: %s: byte offset %llu, sequence %llu: %s\n", r.file,
		       (unsigned long long)r.offset, (unsigned long long)r.seq, r.reason);
	}
	for (uint32_t i = 0; !c->json && i < r.nwraps; i++) {
		const struct verify_wrap *w = &r.wraps[i];
		char fp[AUDITOR_FP_LEN], segs[32];

		if (w->first_seg == w->last_seg)
			snprintf(segs, sizeof(segs), "segment %u", w->first_seg);
		else
			snprintf(segs, sizeof(segs), "segments %u-%u", w->first_seg, w->last_seg);
		if (w->auditor) {
			auditor_fingerprint(w->pk, fp);
			printf("%s: data keys wrapped to auditor key %s\n", segs, fp);
		} else {
			printf("%s: data keys wrapped under keys/kek only (no auditor key)\n",
			       segs);
		}
	}
	return r.ok ? 0 : 1;
}

struct decode_state {
	const char *path;
	unsigned bad;
};

static int print_note(void *arg, const char *note, uint64_t off)
{
	struct decode_state *d = arg;

	if (strncmp(note, "sealtrail/", 10) || !strstr(note, "\n\n")) {
		log_error("%s: byte offset %llu: not a checkpoint note", d->path,
			  (unsigned long long)off);
		d->bad++;
		return 0;
	}
	fputs(note, stdout);
	return 0;
}

/* Every note in FILE ("-": stdin), syslog lines of --checkpoint-syslog decoded. */
static int decode_notes(const char *path)
{
	struct decode_state d = {.path = path};
	struct buf text = {0};
	int err =
	    strcmp(path, "-") ? buf_read_file(&text, path, 0) : buf_read_fd(&text, STDIN_FILENO, 0);

	if (!err && text.len)
		err = checkpoint_each_note((const char *)text.data, text.len, print_note, &d);
	buf_free(&text);
	if (err)
		log_error("%s: %s", path, strerror(-err));
	return err || d.bad ? 1 : 0;
}

int cmd_checkpoint(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"decode", required_argument, NULL, 'd'},
	    CLI_COMMON_OPTS,
	    {0},
	};
	const char *decode = NULL;
	char path[4200];
	FILE *f;
	int opt, ch;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'd')
			decode = optarg;
		else if (cli_common_opt(c, opt))
			return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "usage: sealtrail checkpoint [--decode FILE]\n");
		return 2;
	}
	if (decode)
		return decode_notes(decode);
	snprintf(path, sizeof(path), "%s/checkpoints/latest", c->store_dir);
	f = fopen(path, "re");
	if (!f) {
		log_error("%s: %s (sealtraild writes it when it closes an epoch)", path,
			  strerror(errno));
		return 1;
	}
	while ((ch = fgetc(f)) != EOF)
		putchar(ch);
	fclose(f);
	return 0;
}
