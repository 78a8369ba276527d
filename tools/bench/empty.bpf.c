// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Benchmark baseline: empty programs on exactly the attach points that
 * bpf/sealtrail.bpf.c uses. Whatever a process outside any session pays
 * with these attached is the floor for any recorder built on the same
 * tracepoints; sealtraild's added cost is measured against it.
 *
 * The two raw_tp/sys_* programs are only loaded by `empty_loader raw`
 * (together with the three sched ones): the alternative design that hooks
 * every syscall once instead of read/write/readv/writev at enter and exit.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EMPTY(sec, name)            \
	SEC(sec)                    \
	int name(void *ctx)         \
	{                           \
		return 0;           \
	}

EMPTY("raw_tp/sched_process_fork", empty_fork)
EMPTY("tp/sched/sched_process_exec", empty_exec)
EMPTY("tp/sched/sched_process_exit", empty_exit)
EMPTY("tp/syscalls/sys_enter_write", empty_enter_write)
EMPTY("tp/syscalls/sys_enter_read", empty_enter_read)
EMPTY("tp/syscalls/sys_enter_writev", empty_enter_writev)
EMPTY("tp/syscalls/sys_enter_readv", empty_enter_readv)
EMPTY("tp/syscalls/sys_exit_write", empty_exit_write)
EMPTY("tp/syscalls/sys_exit_read", empty_exit_read)
EMPTY("tp/syscalls/sys_exit_writev", empty_exit_writev)
EMPTY("tp/syscalls/sys_exit_readv", empty_exit_readv)

/* alternative attach points, loaded only in "raw" mode */
EMPTY("raw_tp/sys_enter", empty_raw_sys_enter)
EMPTY("raw_tp/sys_exit", empty_raw_sys_exit)
