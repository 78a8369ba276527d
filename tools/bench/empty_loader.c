// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Loads empty.bpf.o (through its bpftool skeleton), attaches its programs,
 * prints "ready" and waits for SIGTERM or SIGINT, then detaches.
 *
 *   empty_loader           the eleven attach points of bpf/sealtrail.bpf.c
 *   empty_loader raw       raw_tp/sys_enter + raw_tp/sys_exit + the sched ones
 *
 * Built and run by tools/bench/run.py.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "empty.skel.h"

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, args);
}

int main(int argc, char **argv)
{
	bool raw = argc > 1 && !strcmp(argv[1], "raw");
	struct bpf_program *prog;
	struct empty_bpf *skel;
	sigset_t set;
	int sig, err, n = 0;

	if (argc > 2 || (argc == 2 && !raw)) {
		fprintf(stderr, "usage: empty_loader [raw]\n");
		return 2;
	}
	libbpf_set_print(quiet_print);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);

	skel = empty_bpf__open();
	if (!skel) {
		fprintf(stderr, "empty_loader: open failed: %s\n", strerror(errno));
		return 1;
	}
	bpf_object__for_each_program(prog, skel->obj) {
		const char *sec = bpf_program__section_name(prog);
		bool sched = strstr(sec, "sched_process_") != NULL;
		bool raw_sys = !strcmp(sec, "raw_tp/sys_enter") || !strcmp(sec, "raw_tp/sys_exit");

		bpf_program__set_autoload(prog, sched || raw_sys == raw);
	}
	err = empty_bpf__load(skel);
	if (!err)
		err = empty_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "empty_loader: load/attach failed: %s\n", strerror(-err));
		empty_bpf__destroy(skel);
		return 1;
	}
	bpf_object__for_each_program(prog, skel->obj)
		n += bpf_program__autoload(prog);
	printf("ready %d\n", n);
	fflush(stdout);
	sigwait(&set, &sig);
	empty_bpf__destroy(skel);
	return 0;
}
