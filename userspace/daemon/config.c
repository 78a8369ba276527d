/* DIR/config.json (config.h). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/config.h"
#include "store/auditor.h"

static void add_str(struct buf *b, const char *key, const char *s)
{
	buf_addf(b, ",\"%s\":", key);
	if (s)
		json_add_string(b, (const uint8_t *)s, strlen(s));
	else
		buf_addf(b, "null");
}

static void add_list(struct buf *b, const char *key, const char *const *v, unsigned n)
{
	buf_addf(b, ",\"%s\":[", key);
	for (unsigned i = 0; i < n; i++) {
		if (i)
			buf_addf(b, ",");
		json_add_string(b, (const uint8_t *)v[i], strlen(v[i]));
	}
	buf_addf(b, "]");
}

int config_write(const struct daemon_config *c)
{
	const char *files[SINKS_MAX], *commands[SINKS_MAX];
	char started[40], fp[AUDITOR_FP_LEN];
	struct buf b = {0};
	int err;

	format_rfc3339(c->started_ns, started);
	buf_addf(&b, "{\"version\":\"%s\",\"pid\":%d,\"started\":\"%s\"", SEALTRAIL_VERSION,
		 (int)getpid(), started);
	add_list(&b, "argv", (const char *const *)c->argv, (unsigned)c->argc);
	add_str(&b, "store", c->store_dir);
	add_list(&b, "sshd", c->t->sshd_paths, c->t->nsshd);
	add_list(&b, "subsystems", c->t->subsystems, c->t->nsubsystems);
	add_list(&b, "transfers", c->t->transfers, c->t->ntransfers);
	buf_addf(&b, ",\"capture_cap_bytes\":%llu,\"ringbuf_bytes\":%lu",
		 (unsigned long long)c->t->capture_cap, c->ringbuf);
	add_str(&b, "scheduling", c->scheduling);
	add_str(&b, "socket", c->socket_path);
	add_str(&b, "roles", c->roles_path);
	add_str(&b, "cli", c->cli_path);
	if (c->auditor_pk)
		auditor_fingerprint(c->auditor_pk, fp);
	add_str(&b, "auditor_key", c->auditor_pk ? fp : NULL);
	buf_addf(&b, ",\"auditor_key_change\":%s", c->auditor_change ? "true" : "false");
	for (unsigned i = 0; i < c->sinks->nfiles; i++)
		files[i] = c->sinks->files[i].path;
	for (unsigned i = 0; i < c->sinks->ncommands; i++)
		commands[i] = c->sinks->commands[i].cmd;
	add_list(&b, "checkpoint_files", files, c->sinks->nfiles);
	add_list(&b, "checkpoint_commands", commands, c->sinks->ncommands);
	buf_addf(&b, ",\"checkpoint_syslog\":%s}\n", c->sinks->syslog ? "true" : "false");
	/* root only: command sinks may carry credentials */
	err = write_file_replace(c->store_dir, "config.json", b.data, b.len, 0600);
	if (err)
		log_warn("cannot write %s/config.json: %s (`sealtrail config` shows an older one,"
			 " or none)",
			 c->store_dir, strerror(-err));
	buf_free(&b);
	return err;
}
