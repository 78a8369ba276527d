/*
 * `sealtrail auditor-keygen`: the auditor's X25519 key pair, made off-host.
 * The public half goes to the bastion (sealtraild --auditor-pubkey); the
 * private half opens copies of the store (--auditor-key) and stays away.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "common/log.h"
#include "store/auditor.h"

int cmd_auditor_keygen(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"out", required_argument, NULL, 'o'},
	    CLI_COMMON_OPTS,
	    {0},
	};
	uint8_t pk[AUDITOR_KEY_LEN];
	char fp[AUDITOR_FP_LEN];
	const char *dir = NULL;
	struct buf b = {0};
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'o')
			dir = optarg;
		else if (cli_common_opt(c, opt))
			return 2;
	}
	if (optind != argc || !dir) {
		fprintf(stderr, "usage: sealtrail auditor-keygen --out DIR\n"
				"  writes DIR/auditor.key (private, 0600) and DIR/auditor.pub\n");
		return 2;
	}
	if (mkdir(dir, 0700) && errno != EEXIST) {
		log_error("--out %s: %s", dir, strerror(errno));
		return 1;
	}
	if (auditor_write_keys(dir, pk))
		return 1;
	auditor_fingerprint(pk, fp);
	if (c->json) {
		static const char *const names[2] = {"private_key", "public_key"};
		static const char *const files[2] = {"auditor.key", "auditor.pub"};

		buf_addf(&b, "{\"fingerprint\":\"%s\"", fp);
		for (int i = 0; i < 2; i++) {
			struct buf path = {0};

			buf_addf(&path, "%s/%s", dir, files[i]);
			buf_addf(&b, ",\"%s\":", names[i]);
			json_add_string(&b, path.data, path.len);
			buf_free(&path);
		}
		printf("%s}\n", b.data);
		buf_free(&b);
		return 0;
	}
	printf("auditor key %s\n"
	       "  %s/auditor.pub  give it to the bastion: sealtraild --auditor-pubkey FILE\n"
	       "  %s/auditor.key  private: keep it off the bastion; it opens copies of the\n"
	       "                  store with `sealtrail --store COPY --auditor-key FILE ...`\n",
	       fp, dir, dir);
	return 0;
}
