/* `sealtrail keys` and `sealtrail config`: what an admin checks of a store and its daemon. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access/roles.h"
#include "cli/cli.h"
#include "common/log.h"
#include "store/auditor.h"

/* Key files only root may read (keys/, keys/kek, keys/epoch): index into r->files. */
static bool secret_file(unsigned i)
{
	return i < 3;
}

/* A problem with file i of r, or NULL. */
static const char *file_problem(const struct keys_report *r, unsigned i)
{
	const struct keys_file *f = &r->files[i];

	if (!f->exists)
		return i == 0 || i == 1 ? "missing: segments cannot be read on this host" : NULL;
	if (f->uid != 0)
		return "not owned by root";
	if (secret_file(i) && (f->mode & 077))
		return "group or others have access: chmod go= it";
	if (!secret_file(i) && (f->mode & 022))
		return "writable by group or others";
	return NULL;
}

int cmd_keys(struct cli *c, int argc, char **argv)
{
	char id[ST_ID_HEX], first[2 * SEAL_PK_LEN + 1], epoch[2 * SEAL_PK_LEN + 1];
	char fp[AUDITOR_FP_LEN];
	struct keys_report r;
	struct buf line = {0};
	unsigned problems = 0;
	int err = cli_no_args(c, argc, argv, "keys");

	if (err)
		return err;
	err = store_keys_report(c->store_dir, &r);
	if (err) {
		log_error("%s/store-id: %s: is %s a sealtrail store?", c->store_dir, strerror(-err),
			  c->store_dir);
		return 1;
	}
	hex_encode(r.id, ST_ID_LEN, id);
	hex_encode(r.first_pk, SEAL_PK_LEN, first);
	hex_encode(r.epoch_pk, SEAL_PK_LEN, epoch);
	if (r.segment_auditor)
		auditor_fingerprint(r.auditor_pk, fp);
	for (unsigned i = 0; i < 4; i++)
		problems += file_problem(&r, i) != NULL;
	if (c->json) {
		buf_addf(&line, "{\"store\":\"%s\",\"first_key\":", id);
		buf_addf(&line, r.have_first ? "\"%s\"" : "null", first);
		buf_addf(&line, ",\"epoch\":");
		buf_addf(&line,
			 r.have_epoch ? "%u,\"epoch_key\":\"%s\"" : "null,\"epoch_key\":null",
			 r.epoch, epoch);
		if (r.have_checkpoint)
			buf_addf(&line, ",\"checkpoint\":{\"epoch\":%u,\"tree_size\":%llu}",
				 r.checkpoint_epoch, (unsigned long long)r.checkpoint_size);
		else
			buf_addf(&line, ",\"checkpoint\":null");
		buf_addf(&line, ",\"newest_segment\":%u,\"auditor_key\":", r.newest_segment);
		buf_addf(&line, r.segment_auditor ? "\"%s\"" : "null", fp);
		buf_addf(&line, ",\"files\":[");
		for (unsigned i = 0; i < 4; i++) {
			const struct keys_file *f = &r.files[i];
			const char *why = file_problem(&r, i);

			buf_addf(&line, "%s{\"path\":\"%s\",\"exists\":%s", i ? "," : "", f->name,
				 f->exists ? "true" : "false");
			if (f->exists)
				buf_addf(&line, ",\"mode\":\"%04o\",\"uid\":%u", f->mode, f->uid);
			buf_addf(&line, ",\"problem\":");
			if (why)
				json_add_string(&line, (const uint8_t *)why, strlen(why));
			else
				buf_addf(&line, "null");
			buf_addf(&line, "}");
		}
		printf("%s]}\n", line.data);
		buf_free(&line);
		return problems ? 1 : 0;
	}
	printf("store:             %s\n", id);
	if (r.have_first)
		printf("first key:         %s (keys/first.pub: the auditor pins it, `verify"
		       " --pubkey`)\n",
		       first);
	else
		printf("first key:         none (keys/first.pub is missing or unreadable)\n");
	if (r.have_epoch)
		printf("signing epoch:     %u, public key %s\n", r.epoch, epoch);
	else
		printf("signing epoch:     unknown (keys/epoch is missing or unreadable)\n");
	if (r.have_checkpoint)
		printf("latest checkpoint: epoch %u, tree size %llu (checkpoints/latest)\n",
		       r.checkpoint_epoch, (unsigned long long)r.checkpoint_size);
	else
		printf("latest checkpoint: none yet\n");
	if (!r.newest_segment)
		printf("auditor key:       no segment yet\n");
	else if (r.segment_auditor)
		printf(
		    "auditor key:       %s (segment %u's key is wrapped to it and to keys/kek)\n",
		    fp, r.newest_segment);
	else
		printf("auditor key:       none (segment %u's key is wrapped to keys/kek only:"
		       " a copy off this host cannot be read)\n",
		       r.newest_segment);
	for (unsigned i = 0; i < 4; i++) {
		const struct keys_file *f = &r.files[i];
		const char *why = file_problem(&r, i);

		if (f->exists)
			printf("%-18s %04o uid %u%s%s\n", f->name, f->mode, f->uid, why ? ": " : "",
			       why ? why : "");
		else
			printf("%-18s absent%s%s\n", f->name, why ? ": " : "", why ? why : "");
	}
	if (problems)
		fprintf(stderr, "sealtrail: %u key file problem%s (above)\n", problems,
			problems == 1 ? "" : "s");
	return problems ? 1 : 0;
}

/*
 * Our own config.json, one top-level member a line: "key  value" with the
 * value as JSON. Strings with escaped quotes and nested arrays are skipped
 * over correctly; nothing else is expected.
 */
static void print_members(const char *json)
{
	const char *p = strchr(json, '{'), *start;
	int depth = 0;
	bool in_str = false;

	if (!p)
		return;
	start = ++p;
	for (; *p; p++) {
		if (in_str) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '"')
				in_str = false;
			continue;
		}
		if (*p == '"') {
			in_str = true;
		} else if (*p == '[' || *p == '{') {
			depth++;
		} else if ((*p == ']' || *p == '}') && depth) {
			depth--;
		} else if ((*p == ',' || *p == '}') && !depth) {
			const char *colon = memchr(start, ':', p - start);

			if (colon && colon > start + 1 && *start == '"')
				printf("%-20.*s %.*s\n", (int)(colon - start - 2), start + 1,
				       (int)(p - colon - 1), colon + 1);
			start = p + 1;
			if (*p == '}')
				return;
		}
	}
}

int cmd_config(struct cli *c, int argc, char **argv)
{
	char path[4200], why[256], roles_path[4096] = ROLES_DEFAULT_PATH;
	struct buf json = {0};
	struct roles roles = {0};
	const char *p;
	int err = cli_no_args(c, argc, argv, "config");

	if (err)
		return err;
	snprintf(path, sizeof(path), "%s/config.json", c->store_dir);
	err = buf_read_file(&json, path, 1 << 20);
	if (err) {
		log_error("%s: %s (sealtraild writes it when it starts)", path, strerror(-err));
		buf_free(&json);
		return 1;
	}
	if (c->json) {
		fputs((const char *)json.data, stdout);
		buf_free(&json);
		return 0;
	}
	printf("%-20s %s\n", "file", path);
	print_members((const char *)json.data);
	/* the roles file as the daemon reads it for each request */
	p = strstr((const char *)json.data, "\"roles\":\"");
	if (p) {
		size_t n = strcspn(p + 9, "\"");

		snprintf(roles_path, sizeof(roles_path), "%.*s", (int)n, p + 9);
	}
	if (roles_load(&roles, roles_path, why)) {
		printf("%-20s %s\n", "roles now", why);
	} else {
		printf("%-20s %u member%s in %s (read now; root is always admin)\n", "roles now",
		       roles.n, roles.n == 1 ? "" : "s", roles_path);
		for (unsigned i = 0; i < roles.n; i++)
			printf("%-20s %s%s\n", access_role_name(roles.m[i].role),
			       roles.m[i].group ? "@" : "", roles.m[i].name);
	}
	roles_free(&roles);
	buf_free(&json);
	return 0;
}
