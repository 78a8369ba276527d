// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Loads empty.bpf.o (through its bpftool skeleton), attaches the programs of
 * the given sections, prints "ready N" (N programs attached) and waits for
 * SIGTERM or SIGINT, then detaches.
 *
 *   empty_loader SECTION...   e.g. tp/syscalls/sys_enter_write raw_tp/sched_process_fork
 *   empty_loader raw          raw_tp/sys_enter + raw_tp/sys_exit + the sched ones
 *
 * Exits 3 if a section is not in empty.bpf.c. Built and run by
 * tools/bench/run.py.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "empty.skel.h"

static const char *raw_set[] = {
	"raw_tp/sys_enter",
	"raw_tp/sys_exit",
	"raw_tp/sched_process_fork",
	"tp/sched/sched_process_exec",
	"tp/sched/sched_process_exit",
};

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, args);
}

static bool wanted(const char *sec, const char **want, int nwant)
{
	for (int i = 0; i < nwant; i++)
		if (!strcmp(sec, want[i]))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	const char **want = (const char **)argv + 1;
	int nwant = argc - 1, sig, err, n = 0;
	struct bpf_program *prog;
	struct empty_bpf *skel;
	sigset_t set;

	if (nwant < 1) {
		fprintf(stderr, "usage: empty_loader raw | SECTION...\n");
		return 2;
	}
	if (nwant == 1 && !strcmp(want[0], "raw")) {
		want = raw_set;
		nwant = sizeof(raw_set) / sizeof(raw_set[0]);
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
	for (int i = 0; i < nwant; i++) {
		bool found = false;

		bpf_object__for_each_program(prog, skel->obj)
			found |= !strcmp(bpf_program__section_name(prog), want[i]);
		if (!found) {
			fprintf(stderr, "empty_loader: no program for section %s in empty.bpf.c\n",
				want[i]);
			empty_bpf__destroy(skel);
			return 3;
		}
	}
	bpf_object__for_each_program(prog, skel->obj) {
		bool on = wanted(bpf_program__section_name(prog), want, nwant);

		bpf_program__set_autoload(prog, on);
		n += on;
	}
	err = empty_bpf__load(skel);
	if (!err)
		err = empty_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "empty_loader: load/attach failed: %s\n", strerror(-err));
		empty_bpf__destroy(skel);
		return 1;
	}
	printf("ready %d\n", n);
	fflush(stdout);
	sigwait(&set, &sig);
	empty_bpf__destroy(skel);
	return 0;
}
