/*
 * What the collector reads from /proc: the process table (to find sshd
 * listeners and adopt sessions that started before it), and the TCP
 * connection a connection handler serves.
 */
#ifndef SEALTRAIL_PROCFS_H
#define SEALTRAIL_PROCFS_H

#include <stdbool.h>
#include <stdint.h>

#define NO_UID 0xffffffffu

struct proc_info {
	uint32_t pid;
	uint32_t ppid;
	uint64_t start_boot_ns; /* CLOCK_BOOTTIME at process start */
	uint32_t uid;
	uint32_t loginuid; /* NO_UID when unset */
	uint32_t sessionid;
	uint32_t tty_nr; /* st_rdev style: major << 8 | minor (see proc(5)) */
	char exe[256]; /* "" for kernel threads or if unreadable */
};

int procfs_read(uint32_t pid, struct proc_info *out);
/*
 * The fields of a /proc/PID/stat line a scan needs; start in clock ticks.
 * The line is the kernel's, but its comm is whatever the program named
 * itself: 0 or -EINVAL.
 */
int procfs_parse_stat(const char *text, uint32_t *ppid, uint32_t *tty_nr, uint64_t *start_ticks);
/*
 * All processes; *out is malloc()ed. Not full: only exe, and pid, ppid,
 * tty and start of those whose exe want() accepts (or of all, want NULL),
 * for the scan every second: one readlink a process, and /proc/PID/stat,
 * the costly read, only where it matters. uid is 0, loginuid and
 * sessionid NO_UID. With want(), processes without an exe are left out.
 */
int procfs_list(struct proc_info **out, size_t *n, bool full,
		bool (*want)(const char *exe, void *arg), void *arg);

struct conn_addr {
	char source_ip[64];
	uint16_t source_port;
	char local_ip[64];
	uint16_t local_port;
};

/* The established TCP connection among pid's fds (the ssh client's). */
int procfs_tcp_conn(uint32_t pid, struct conn_addr *out);
/* Does pid hold a listening TCP socket? */
bool procfs_tcp_listening(uint32_t pid);
/* If tty_nr is a pts, its index; else -1. */
int procfs_pts_index(uint32_t tty_nr);
/* The inode of the pipe on each of pid's fds 0, 1 and 2, or 0 (not a pipe, gone). */
void procfs_stdio_pipes(uint32_t pid, uint64_t out[3]);
/*
 * pid's command line, its arguments NUL-separated as in /proc (a NUL after
 * the last), cut at size - 1 bytes: its length, or -errno.
 */
int procfs_cmdline(uint32_t pid, char *out, size_t size);
/*
 * The command of a command line (n bytes of argv, NUL-separated, as
 * procfs_cmdline() read it; truncated: it was cut) into cmd, as `ssh host
 * cmd` gave it: a shell's `SHELL -c cmd` (shell: it runs the user's
 * shell) is cmd, a login shell ("-bash") none (""), anything else its
 * arguments joined by spaces. The arguments are the program's own:
 * any bytes.
 */
void procfs_command(char *argv, int n, bool shell, bool truncated, char *cmd, size_t size);
/*
 * The value of NAME in env (n bytes of NAME=value entries, NUL-separated,
 * as /proc/PID/environ holds them; any bytes) into out: true if found.
 */
bool procfs_env_find(const char *env, size_t n, const char *name, char *out, size_t size);
/* The same, read from pid's initial environment (/proc/PID/environ). */
bool procfs_env(uint32_t pid, const char *name, char *out, size_t size);
/*
 * The memory limit of the cgroup a process is in, in bytes, 0 for none:
 * on cgroup v2, the lowest memory.max or memory.high of its cgroup and
 * its ancestors; on v1, its memory controller's hierarchical limit.
 * proc_cgroup is its /proc/PID/cgroup, root where the cgroup file systems
 * are mounted (/sys/fs/cgroup).
 */
uint64_t procfs_cgroup_memory_limit(const char *proc_cgroup, const char *root);

#endif
