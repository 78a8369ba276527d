// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Benchmark baseline: empty programs on the attach points that
 * bpf/sealtrail.bpf.c uses. Whatever a process outside any session pays
 * with these attached is the floor for any recorder built on the same
 * tracepoints; sealtraild's added cost is measured against it.
 *
 * This file holds a superset: run.py reads the sections of the sealtrail
 * object it benchmarks and tells empty_loader to load exactly those, so the
 * baseline follows sealtrail when it gains or drops a hook. If sealtrail
 * starts using an attach point that is missing here, run.py stops and says
 * which one to add.
 *
 * raw_tp/sys_enter + raw_tp/sys_exit are the alternative design (one hook per
 * syscall direction, paid by every syscall); `empty_loader raw` loads them
 * with the sched ones, for comparison.
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

/* process tree */
EMPTY("raw_tp/sched_process_fork", empty_fork)
EMPTY("tp/sched/sched_process_exec", empty_exec)
EMPTY("tp/sched/sched_process_exit", empty_exit)

/* terminal and pipe streams */
EMPTY("tp/syscalls/sys_enter_write", empty_enter_write)
EMPTY("tp/syscalls/sys_enter_read", empty_enter_read)
EMPTY("tp/syscalls/sys_enter_writev", empty_enter_writev)
EMPTY("tp/syscalls/sys_enter_readv", empty_enter_readv)
EMPTY("tp/syscalls/sys_exit_write", empty_exit_write)
EMPTY("tp/syscalls/sys_exit_read", empty_exit_read)
EMPTY("tp/syscalls/sys_exit_writev", empty_exit_writev)
EMPTY("tp/syscalls/sys_exit_readv", empty_exit_readv)

/* files */
EMPTY("tp/syscalls/sys_enter_openat", empty_enter_openat)
EMPTY("tp/syscalls/sys_exit_openat", empty_exit_openat)
EMPTY("tp/syscalls/sys_enter_rename", empty_enter_rename)
EMPTY("tp/syscalls/sys_exit_rename", empty_exit_rename)
EMPTY("tp/syscalls/sys_enter_renameat", empty_enter_renameat)
EMPTY("tp/syscalls/sys_exit_renameat", empty_exit_renameat)
EMPTY("tp/syscalls/sys_enter_renameat2", empty_enter_renameat2)
EMPTY("tp/syscalls/sys_exit_renameat2", empty_exit_renameat2)
EMPTY("tp/syscalls/sys_enter_unlinkat", empty_enter_unlinkat)
EMPTY("tp/syscalls/sys_exit_unlinkat", empty_exit_unlinkat)

/* connections and descriptors */
EMPTY("tp/syscalls/sys_enter_accept", empty_enter_accept)
EMPTY("tp/syscalls/sys_exit_accept", empty_exit_accept)
EMPTY("tp/syscalls/sys_enter_connect", empty_enter_connect)
EMPTY("tp/syscalls/sys_exit_connect", empty_exit_connect)
EMPTY("tp/syscalls/sys_enter_close", empty_enter_close)
EMPTY("tp/syscalls/sys_exit_close", empty_exit_close)
EMPTY("tp/syscalls/sys_enter_sendto", empty_enter_sendto)
EMPTY("tp/syscalls/sys_exit_sendto", empty_exit_sendto)
EMPTY("tp/syscalls/sys_enter_recvfrom", empty_enter_recvfrom)
EMPTY("tp/syscalls/sys_exit_recvfrom", empty_exit_recvfrom)
EMPTY("tp/syscalls/sys_enter_sendmsg", empty_enter_sendmsg)
EMPTY("tp/syscalls/sys_exit_sendmsg", empty_exit_sendmsg)
EMPTY("tp/syscalls/sys_enter_recvmsg", empty_enter_recvmsg)
EMPTY("tp/syscalls/sys_exit_recvmsg", empty_exit_recvmsg)
EMPTY("tp/syscalls/sys_enter_accept4", empty_enter_accept4)
EMPTY("tp/syscalls/sys_exit_accept4", empty_exit_accept4)
EMPTY("tp/syscalls/sys_enter_dup2", empty_enter_dup2)
EMPTY("tp/syscalls/sys_exit_dup2", empty_exit_dup2)
EMPTY("tp/syscalls/sys_enter_dup3", empty_enter_dup3)
EMPTY("tp/syscalls/sys_exit_dup3", empty_exit_dup3)

/* the alternative: every syscall, once each way */
EMPTY("raw_tp/sys_enter", empty_raw_sys_enter)
EMPTY("raw_tp/sys_exit", empty_raw_sys_exit)
