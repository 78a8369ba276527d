/* sealtrail: the investigator's command line over a sealtrail store. */
#include <errno.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/log.h"

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: sealtrail [--store DIR] [--json] [--auditor-key FILE] [--socket PATH]\n"
	    "                 COMMAND [ARGS]\n"
	    "List, replay and export ssh sessions recorded by sealtraild.\n\n"
	    "commands:\n"
	    "  sessions [--since T] [--until T] [--user U] [--kind K]\n"
	    "                                                 sessions active in the window;\n"
	    "                                                 K: shell, exec, subsystem, forward\n"
	    "  events SESSION                                 the session's timeline: execs with\n"
	    "                                                 argv and exit status, files,\n"
	    "                                                 forwarded connections, gaps, in\n"
	    "                                                 time order (--json: also terminal\n"
	    "                                                 chunks and forks)\n"
	    "  gaps [--since T] [--until T]                   every gap: losses in sessions and\n"
	    "                                                 damage of the store (torn tails)\n"
	    "  replay SESSION [--speed X] [--at SECONDS]      play the output with its timing\n"
	    "                                                 (--speed 0: no delays); says so\n"
	    "                                                 if your terminal is smaller than\n"
	    "                                                 the recorded one\n"
	    "  export SESSION [--format asciicast|raw] [--output FILE]\n"
	    "         [--stream out|in|stdout|stderr|stdin]  out/in: terminal (or stdout/stdin)\n"
	    "  status                                         is sealtraild recording, losses\n"
	    "  reindex                                        rebuild the index from the "
	    "records\n"
	    "  verify [--pubkey FILE] [--against FILE]        check the seal offline (no key),\n"
	    "                                                 and the saved checkpoints in FILE\n"
	    "                                                 (notes or syslog lines) against it\n"
	    "  checkpoint [--decode FILE]                     the latest signed checkpoint; or\n"
	    "                                                 the notes in FILE (syslog lines\n"
	    "                                                 decoded, - for stdin)\n"
	    "  keys                                           the store's keys: id, pinned first\n"
	    "                                                 key, signing epoch, auditor key,\n"
	    "                                                 key file modes (exit 1: unsafe)\n"
	    "  config                                         what sealtraild runs with, and\n"
	    "                                                 who has which role now\n"
	    "  auditor-keygen --out DIR                       new auditor key pair, off-host:\n"
	    "                                                 DIR/auditor.key, DIR/auditor.pub\n"
	    "  access-log [--since T] [--until T]             every request sealtraild served\n"
	    "                                                 or refused on its socket: who,\n"
	    "                                                 what, when, allowed or denied\n\n"
	    "options (before or after the command):\n"
	    "  --store DIR   store directory (default " STORE_DEFAULT_DIR ")\n"
	    "  --json        one JSON object per line instead of a table\n"
	    "  --auditor-key FILE  open segments with the auditor's X25519 private key\n"
	    "                instead of DIR/keys/kek, e.g. in a copy of the store taken\n"
	    "                off-host; its segments are indexed afresh first\n"
	    "  --socket PATH ask sealtraild on this socket (default $SEALTRAIL_SOCKET or\n"
	    "                " CLI_DEFAULT_SOCKET ") even as root\n\n"
	    "Only root reads the store directly. Anyone else (without --store or\n"
	    "--auditor-key) asks sealtraild, which runs the command if the roles file\n"
	    "gives them a role: auditor (sessions, events, gaps, replay, export, status,\n"
	    "checkpoint) or admin (also verify, reindex, access-log, keys, config); a\n"
	    "refusal exits with status 77. Every request is stored as a sealed access\n"
	    "record. Options naming files (--store, --output, --pubkey) are not taken\n"
	    "over the socket: redirect the output instead; the files of --against and\n"
	    "--decode are opened by this client, as you, and passed to the command.\n\n"
	    "SESSION is a session id or a unique prefix of one. T is RFC 3339\n"
	    "(2026-11-24T09:00:00Z) or an age: 90s, 15m, 2h, 7d, 1w.\n");
}

int cli_window_opt(struct cli_window *w, int opt, const char *arg, uint64_t now)
{
	if (opt != 's' && opt != 'u')
		return 0;
	if (!parse_time(arg, now, opt == 's' ? &w->since : &w->until))
		return 1;
	log_error("--%s %s: not RFC 3339 (2026-11-24T09:00:00Z) nor an age (2h, 7d)",
		  opt == 's' ? "since" : "until", arg);
	return -EINVAL;
}

int cli_window_check(const struct cli_window *w)
{
	char since[40], until[40];

	if (w->since <= w->until)
		return 0;
	format_rfc3339(w->since, since);
	format_rfc3339(w->until, until);
	log_error("--since %s is after --until %s: nothing can be in that window (an age "
		  "counts back from now: --since 2h --until 1h)",
		  since, until);
	return -EINVAL;
}

int cli_window_args(struct cli *c, int argc, char **argv, struct cli_window *w, const char *name)
{
	static const struct option opts[] = {
	    {"since", required_argument, NULL, 's'},
	    {"until", required_argument, NULL, 'u'},
	    CLI_COMMON_OPTS,
	    {0},
	};
	uint64_t now = clock_ns(CLOCK_REALTIME);
	int opt;

	*w = CLI_WINDOW_ALL;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int win = cli_window_opt(w, opt, optarg, now);

		if (win < 0 || (!win && cli_common_opt(c, opt)))
			return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "usage: sealtrail %s [--since T] [--until T] [--json]\n", name);
		return 2;
	}
	return cli_window_check(w) ? 2 : 0;
}

int cli_common_opt(struct cli *c, int opt)
{
	if (opt == OPT_STORE)
		c->store_dir = optarg;
	else if (opt == OPT_JSON)
		c->json = true;
	else if (opt == OPT_AUDITOR_KEY)
		c->auditor_key = optarg;
	else
		return -EINVAL;
	return 0;
}

void cli_scan_damage(void *arg UNUSED, const char *file, uint64_t off, uint64_t bytes,
		     const char *why)
{
	log_warn("%s: %s at byte offset %llu (%llu bytes after it not read)", file, why,
		 (unsigned long long)off, (unsigned long long)bytes);
}

int cli_no_args(struct cli *c, int argc, char **argv, const char *name)
{
	static const struct option opts[] = {CLI_COMMON_OPTS, {0}};
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1)
		if (cli_common_opt(c, opt))
			return 2;
	if (optind != argc) {
		fprintf(stderr, "usage: sealtrail %s (takes no arguments)\n", name);
		return 2;
	}
	return 0;
}

int cli_open(struct cli *c)
{
	uint8_t sk[AUDITOR_KEY_LEN], pk[AUDITOR_KEY_LEN];
	struct store_options o = {.auditor_sk = sk};
	char fp[AUDITOR_FP_LEN];
	int err;

	if (!c->auditor_key)
		return store_open(&c->store, c->store_dir, 0);
	err = auditor_read_private(c->auditor_key, sk, pk);
	if (!err) {
		auditor_fingerprint(pk, fp);
		log_info("reading %s with auditor key %s: indexing its segments first",
			 c->store_dir, fp);
		err = store_open_with(&c->store, c->store_dir, STORE_FRESH_INDEX, &o);
	}
	OPENSSL_cleanse(sk, sizeof(sk));
	return err;
}

int cli_session_id(struct cli *c, const char *arg, char id[ST_ID_HEX])
{
	sqlite3_stmt *st;
	char pattern[ST_ID_HEX + 1];
	int n = 0;

	if (strlen(arg) < 4 || strlen(arg) > ST_ID_HEX - 1 ||
	    strspn(arg, "0123456789abcdef") != strlen(arg)) {
		log_error("%s: not a session id (32 hex digits, or a unique prefix of at least 4)",
			  arg);
		return -EINVAL;
	}
	snprintf(pattern, sizeof(pattern), "%s%%", arg);
	if (sqlite3_prepare_v2(c->store.index.db,
			       "SELECT id FROM sessions WHERE id LIKE ?1 LIMIT 2", -1, &st,
			       NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, pattern, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (n++ == 0)
			snprintf(id, ST_ID_HEX, "%s", (const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	if (n == 1)
		return 0;
	log_error("session %s: %s in store %s (see `sealtrail sessions`)", arg,
		  n ? "prefix matches several sessions" : "not found", c->store_dir);
	return -ENOENT;
}

int cli_session_start(struct cli *c, const char *id, uint64_t *start_ns, char *term,
		      size_t term_size)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(c->store.index.db,
			       "SELECT start_ns, term FROM sessions WHERE id = ?1", -1, &st,
			       NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	*start_ns = 0;
	if (term_size)
		term[0] = 0;
	if (sqlite3_step(st) == SQLITE_ROW) {
		*start_ns = sqlite3_column_int64(st, 0);
		if (term_size && sqlite3_column_text(st, 1))
			snprintf(term, term_size, "%s", (const char *)sqlite3_column_text(st, 1));
	}
	sqlite3_finalize(st);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(struct cli *c, int argc, char **argv);
	} cmds[] = {
	    {"sessions", cmd_sessions},
	    {"events", cmd_events},
	    {"replay", cmd_replay},
	    {"export", cmd_export},
	    {"status", cmd_status},
	    {"reindex", cmd_reindex},
	    {"verify", cmd_verify},
	    {"checkpoint", cmd_checkpoint},
	    {"gaps", cmd_gaps},
	    {"auditor-keygen", cmd_auditor_keygen},
	    {"access-log", cmd_access_log},
	    {"keys", cmd_keys},
	    {"config", cmd_config},
	};
	const char *socket_path = getenv("SEALTRAIL_SOCKET");
	bool force_socket = false, store_given = false;
	struct cli c = {.store_dir = STORE_DEFAULT_DIR};
	int i;

	log_set_prefix("sealtrail");
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--store") && i + 1 < argc) {
			c.store_dir = argv[++i];
			store_given = true;
		} else if (!strncmp(argv[i], "--store=", 8)) {
			c.store_dir = argv[i] + 8;
			store_given = true;
		} else if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
			socket_path = argv[++i];
			force_socket = true;
		} else if (!strncmp(argv[i], "--socket=", 9)) {
			socket_path = argv[i] + 9;
			force_socket = true;
		} else if (!strcmp(argv[i], "--json")) {
			c.json = true;
		} else if (!strcmp(argv[i], "--auditor-key") && i + 1 < argc) {
			c.auditor_key = argv[++i];
		} else if (!strncmp(argv[i], "--auditor-key=", 14)) {
			c.auditor_key = argv[i] + 14;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--version")) {
			printf("sealtrail %s\n", SEALTRAIL_VERSION);
			return 0;
		} else {
			fprintf(stderr, "sealtrail: unknown option %s\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (i == argc) {
		usage(stderr);
		return 2;
	}
	if (force_socket && (store_given || c.auditor_key)) {
		fprintf(stderr,
			"sealtrail: --%s is not taken over the socket: sealtraild reads its"
			" own store\n",
			store_given ? "store" : "auditor-key");
		return 2;
	}
	/* not root: the store is not ours to open, sealtraild decides */
	if (force_socket ||
	    (geteuid() != 0 && !store_given && !c.auditor_key && strcmp(argv[i], "auditor-keygen")))
		return cli_remote(socket_path && *socket_path ? socket_path : CLI_DEFAULT_SOCKET,
				  c.json, argc - i, argv + i);
	for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
		if (strcmp(argv[i], cmds[k].name))
			continue;
		/* let subcommands see --store/--json after the command too */
		return cmds[k].fn(&c, argc - i, argv + i);
	}
	fprintf(stderr, "sealtrail: unknown command %s\n", argv[i]);
	usage(stderr);
	return 2;
}
