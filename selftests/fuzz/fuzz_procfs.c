/*
 * libFuzzer target for the /proc/PID/stat parser (session/procfs.c): the
 * kernel writes the line, but its comm is any name a program gives itself.
 *
 * The first input byte is a mode. 0: the rest is a whole line, parsed as
 * it is (it must not crash, nor read past its end). 1: the next 16 bytes
 * are ppid, tty and start, the rest a comm; the line is built as the
 * kernel prints it, and the parser must return exactly those fields.
 * 2: the rest is a command line (any bytes: a program sets its own), read
 * by procfs_command() as adoption reads /proc/PID/cmdline; the next byte
 * picks the options and the size of the output. 3: the rest is an
 * environment (any bytes, as /proc/PID/environ), searched for TERM.
 *
 *   build/fuzz/fuzz_procfs selftests/fuzz/corpus/fuzz_procfs
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "session/procfs.h"

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t ppid, tty;
	uint64_t start;
	char *text;

	if (size < 1)
		return 0;
	if (data[0] == 1 && size >= 17) {
		/* what the kernel prints for a task named data[17..] (NUL ends a comm) */
		uint32_t want_ppid = get32(data + 1), want_tty = get32(data + 5);
		uint64_t want_start = get32(data + 9) | (uint64_t)get32(data + 13) << 32;
		size_t n = strnlen((const char *)data + 17, size - 17), len;

		len = n + 256;
		text = malloc(len);
		if (!text)
			return 0;
		snprintf(text, len,
			 "1 (%.*s) S %u 1 1 %u 1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %llu 0 0\n",
			 (int)n, (const char *)data + 17, want_ppid, want_tty,
			 (unsigned long long)want_start);
		CHECK(procfs_parse_stat(text, &ppid, &tty, &start) == 0);
		CHECK(ppid == want_ppid && tty == want_tty && start == want_start);
		free(text);
		return 0;
	}
	if (data[0] == 2 && size >= 2) {
		/* as procfs_cmdline() leaves it: NUL-terminated, in a buffer just that long */
		size_t n = size - 2, out_size = 1 + (data[1] >> 2) * 4;
		char *argv = malloc(n + 1), *cmd = malloc(out_size);

		if (!argv || !cmd) {
			free(argv);
			free(cmd);
			return 0;
		}
		memcpy(argv, data + 2, n);
		argv[n] = 0;
		procfs_command(argv, (int)n + 1, data[1] & 1, data[1] & 2, cmd, out_size);
		CHECK(strnlen(cmd, out_size) < out_size);
		if (n && argv[0] == '-')
			CHECK(cmd[0] == 0);
		free(argv);
		free(cmd);
		return 0;
	}
	if (data[0] == 3 && size >= 2) {
		/* exactly the environment's bytes: no terminating NUL to lean on */
		size_t n = size - 2, out_size = 1 + (data[1] & 63);
		char *env = malloc(n ? n : 1), *term = malloc(out_size);

		if (env && term) {
			memcpy(env, data + 2, n);
			if (procfs_env_find(env, n, "TERM", term, out_size))
				CHECK(strnlen(term, out_size) < out_size);
		}
		free(env);
		free(term);
		return 0;
	}
	/* exactly the input's bytes, NUL-terminated, so ASan sees any read past them */
	text = malloc(size);
	if (!text)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = 0;
	procfs_parse_stat(text, &ppid, &tty, &start);
	free(text);
	return 0;
}
