// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Loads empty.bpf.o (through its bpftool skeleton), attaches every program,
 * prints "ready" and waits for SIGTERM or SIGINT, then detaches.
 * Built and run by tools/bench/run.py.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>

#include <bpf/libbpf.h>

#include "empty.skel.h"

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, args);
}

int main(void)
{
	struct empty_bpf *skel;
	sigset_t set;
	int sig, err;

	libbpf_set_print(quiet_print);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);

	skel = empty_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "empty_loader: open/load failed: %s\n", strerror(errno));
		return 1;
	}
	err = empty_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "empty_loader: attach failed: %s\n", strerror(-err));
		empty_bpf__destroy(skel);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	sigwait(&set, &sig);
	empty_bpf__destroy(skel);
	return 0;
}
