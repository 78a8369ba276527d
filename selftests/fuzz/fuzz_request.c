/*
 * libFuzzer target for what sealtraild reads from callers it does not
 * trust: the request frame on its socket (access/request.c), fed in pieces
 * the way non-blocking reads hand it over, then the argv policy on what
 * parsed; and the roles file parser (access/roles.c).
 *
 * The first input byte is a mode: low bit set, the rest is a roles file;
 * otherwise the rest is a request fed in pieces of (byte >> 1) + 1 bytes.
 * A frame that parses must encode back to exactly the bytes it came from.
 *
 *   build/fuzz/fuzz_request selftests/fuzz/corpus/fuzz_request
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "access/request.h"
#include "access/roles.h"

static bool names_path_option(const char *arg)
{
	static const char *const long_opts[] = {"store",  "output",  "auditor-key",
						"pubkey", "against", "decode"};
	size_t n;

	if (!strncmp(arg, "-o", 2))
		return true;
	if (strncmp(arg, "--", 2))
		return false; /* arg may be shorter than 2: nothing past its end is read */
	n = strcspn(arg + 2, "=");
	if (!n)
		return false;
	for (size_t k = 0; k < sizeof(long_opts) / sizeof(long_opts[0]); k++)
		if (n <= strlen(long_opts[k]) && !strncmp(arg + 2, long_opts[k], n))
			return true;
	return false;
}

static void check_request(const uint8_t *data, size_t len, size_t step)
{
	struct req_parser p = {0};
	size_t off = 0;
	int r = 0;

	while (off < len) {
		size_t n = len - off < step ? len - off : step;

		r = req_feed(&p, data + off, n);
		off += n;
		if (r != 0)
			break;
	}
	CHECK(r == 0 || r == 1 || r == -EBADMSG);
	CHECK(r != -EBADMSG || p.err[0]);
	CHECK(p.in.len <= 4 + REQ_MAX_BODY);
	if (r == 1) {
		struct buf again = {0};
		const char *cmd = NULL;
		enum access_role role = ROLE_NONE;
		char why[160];

		CHECK(p.argc >= 1 && p.argc <= REQ_MAX_ARGS && !p.argv[p.argc]);
		for (int i = 0; i < p.argc; i++)
			CHECK(strlen(p.argv[i]) <= REQ_MAX_ARG);
		/* canonical: the frame is exactly what encoding its arguments gives */
		CHECK(req_encode(&again, p.argc, p.argv) == 0);
		CHECK(again.len == p.in.len && !memcmp(again.data, p.in.data, again.len));
		CHECK(off == len || req_feed(&p, data + off, len - off) == -EBADMSG);
		buf_free(&again);
		if (!access_check_argv(p.argc, p.argv, &cmd, &role, why)) {
			CHECK(cmd && (role == ROLE_AUDITOR || role == ROLE_ADMIN));
			/* nothing getopt_long would take for a store or file option gets through */
			for (int i = 0; i < p.argc; i++) {
				const char *a = p.argv[i];
				bool spelled = !strcmp(a, "--against") || !strcmp(a, "--decode");

				/* except a file read from stdin, which the caller opened */
				if (!strcmp(a, "--against=-") || !strcmp(a, "--decode=-"))
					continue;
				if (spelled && i + 1 < p.argc && !strcmp(p.argv[i + 1], "-")) {
					i++;
					continue;
				}
				CHECK(!names_path_option(a));
			}
		}
	}
	req_free(&p);
}

static void check_roles(const uint8_t *data, size_t len)
{
	char err[256] = "";
	struct roles r;

	if (roles_parse(&r, (const char *)data, len, "fuzz", err)) {
		CHECK(!strncmp(err, "fuzz:", 5) && r.n == 0);
		return;
	}
	for (unsigned i = 0; i < r.n; i++) {
		CHECK(r.m[i].role == ROLE_AUDITOR || r.m[i].role == ROLE_ADMIN);
		CHECK(r.m[i].name[0] && strlen(r.m[i].name) < ROLES_MAX_NAME);
	}
	roles_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	if (!len)
		return 0;
	if (data[0] & 1)
		check_roles(data + 1, len - 1);
	else
		check_request(data + 1, len - 1, (data[0] >> 1) + 1);
	return 0;
}
