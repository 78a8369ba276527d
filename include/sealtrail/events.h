/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The wire format between the BPF programs and the collector: every event a
 * program puts on the ring buffer starts with struct st_event_hdr and its
 * `type` says which struct follows. This header is the only place the format
 * is written; both sides include it and assert the sizes.
 */
#ifndef SEALTRAIL_EVENTS_H
#define SEALTRAIL_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Bytes of terminal data in one ring-buffer event; larger reads and writes
 * are split into several events (power of two: the BPF side masks with it). */
#define ST_TTY_CHUNK 4096
/* argv bytes copied per exec; longer ones are flagged as truncated. */
#define ST_ARGS_MAX 16384
#define ST_PATH_MAX 256
#define ST_DIR_BYTES 512 /* a path walked in the kernel, components leaf first */
#define ST_DIR_DEPTH 32 /* at most this many components */
#define ST_ENV_MAX 4096 /* bytes of a login shell's environment sent (st_ev_env) */
/* iovecs followed per readv/writev call; the rest is counted as lost. */
#define ST_IOV_MAX 16
/* Highest pid the kernel can hand out (PID_MAX_LIMIT on 64-bit). */
#define ST_PID_LIMIT (4 * 1024 * 1024)
/* Kernel's MKDEV(5, 2): the /dev/ptmx multiplexer, i.e. a pty master. */
#define ST_PTMX_RDEV ((5u << 20) | 2u)

enum st_event_type {
	ST_EV_SESSION_START = 1, /* listener forked a connection handler */
	ST_EV_SESSION_END = 2, /* the connection handler's group exited */
	ST_EV_FORK = 3,
	ST_EV_EXEC = 4,
	ST_EV_EXIT = 5,
	ST_EV_TTY = 6, /* bytes of a pty or of a command's pipe (struct st_ev_tty) */
	ST_EV_CONNECT = 7, /* sshd opened a forwarded TCP connection */
	ST_EV_CLOSE = 8, /* sshd closed it: byte counts */
	ST_EV_FILE_OPEN = 9, /* a transfer program (sftp-server, scp, rsync) opened a file */
	ST_EV_FILE_CLOSE = 10, /* ... and closed it: bytes read and written */
	ST_EV_FILE_RENAME = 11,
	ST_EV_INTERNAL_SFTP = 12, /* a forked sshd began serving SFTP (struct st_ev_sftp) */
	ST_EV_ENV = 13, /* the environment a terminal login's shell started with */
};

/* Which stream a chunk of bytes belongs to (st_ev_tty.dir). */
enum st_tty_dir {
	ST_TTY_IN = 0, /* written to the pty master: what the client sent */
	ST_TTY_OUT = 1, /* read from the pty master: what the client received */
	ST_PIPE_STDIN = 2, /* sshd wrote it to a command's stdin (no pty) */
	ST_PIPE_STDOUT = 3, /* sshd read it from the command's stdout */
	ST_PIPE_STDERR = 4, /* sshd read it from the command's stderr */
	ST_FORWARD = 5, /* a forwarded TCP connection: counted, not copied */
	ST_PIPE_UNKNOWN = 6, /* sshd moved it through a pipe not yet tied to a command */
	ST_FILE = 7, /* a file a transfer program opened: counted, not copied */
};

/* Indexes of the per-CPU counters map (exported by `sealtrail status`). */
enum st_counter {
	ST_CNT_EVENTS = 0, /* events submitted */
	ST_CNT_LOST_EVENTS, /* ring buffer full */
	ST_CNT_LOST_BYTES, /* terminal bytes in lost events */
	ST_CNT_READ_FAILED, /* bpf_probe_read_* failed */
	ST_CNT_ARGS_TRUNCATED, /* exec argv longer than ST_ARGS_MAX */
	ST_CNT_PROC_FULL, /* process map full: a child is not tracked */
	ST_CNT_IOV_TRUNCATED, /* readv/writev with more than ST_IOV_MAX */
	ST_CNT_MAX,
};

struct st_event_hdr {
	__u32 type; /* enum st_event_type */
	__u32 size; /* bytes of the whole event, header included */
	__u64 ts_ns; /* CLOCK_BOOTTIME, converted to wall time in userspace */
	__u64 sess_key; /* kernel-side session key, see struct st_session */
	__u32 pid; /* tgid of the process the event is about */
	__u32 tid;
};

struct st_ev_session {
	struct st_event_hdr hdr;
	__u32 listener_pid; /* parent of the connection handler (start) */
	__s32 exit_code; /* wait status of the handler (end) */
	__u64 lost_events; /* per-session loss counters at the end */
	__u64 lost_bytes;
};

struct st_ev_fork {
	struct st_event_hdr hdr;
	__u32 child_pid;
	__u32 pad;
};

struct st_ev_exec {
	struct st_event_hdr hdr;
	__u32 ppid;
	__u32 uid;
	__u32 euid;
	__u32 gid;
	__u32 loginuid;
	__u32 sessionid;
	__u32 args_len; /* bytes of argv copied into args[] */
	__u32 args_total; /* bytes of argv the process really has */
	__u32 flags; /* ST_EXEC_* */
	__u32 pad;
	__u64 stdio[3]; /* pipes on fds 0, 1, 2: their inode numbers, or 0 */
	__u16 cwd_len; /* bytes of cwd[] */
	__u8 cwd_flags; /* ST_DIR_*: 0 if the walk failed */
	__u8 pad2[5];
	char filename[ST_PATH_MAX];
	char cwd[ST_DIR_BYTES]; /* the working directory, as walk_path() writes it */
	char args[ST_ARGS_MAX]; /* NUL-separated, only args_len are sent */
};
#define ST_EXEC_ARGS_TRUNCATED 1u
#define ST_EXEC_READ_FAILED 2u
#define ST_EXEC_FROM_SSHD 4u /* the parent is one of the session's sshd processes */
#define ST_EXEC_IS_SSHD 8u /* the new program is an sshd binary */
#define ST_EXEC_STDIN_TTY 16u /* fd 0 is a pty slave: a terminal login */
/*
 * sshd started a transfer program (scp, rsync, sftp-server): from now on
 * its stdio pipes' bytes are counted in the kernel (st_relay), not copied;
 * its files are summarised instead.
 */
#define ST_EXEC_PIPES_COUNTED 32u

#define ST_RELAY_COUNT 1u /* a pipe whose bytes are counted, not copied */

struct st_ev_exit {
	struct st_event_hdr hdr;
	__s32 exit_code; /* wait(2) status: code << 8, or the signal number */
	__u32 pad;
};

struct st_ev_tty {
	struct st_event_hdr hdr;
	__u32 dir; /* enum st_tty_dir */
	__u32 tty_index; /* N of /dev/pts/N */
	__u32 len; /* bytes in data[], at most ST_TTY_CHUNK */
	__u16 rows, cols; /* the pty's window size at the syscall; 0: a pipe */
	__u64 offset; /* offset of this chunk within the syscall's data */
	__u64 object; /* pipes: inode number of the pipe (never reused soon, unlike its address) */
	char data[ST_TTY_CHUNK];
};

struct st_ev_connect {
	struct st_event_hdr hdr;
	__s32 fd;
	__s32 ret; /* connect(2) result: 0 or -EINPROGRESS */
	__u16 family; /* AF_INET or AF_INET6 */
	__u16 port; /* host byte order: destination, or the peer for accepted ones */
	__u16 local_port; /* accepted: the port sshd listens on for ssh -R */
	__u8 accepted; /* 1: sshd accepted it (ssh -R), 0: sshd connected (-L/-D/-W) */
	__u8 pad;
	__u8 addr[16]; /* IPv4 in the first 4 bytes */
	__u64 conn_id; /* inode number of the socket: pairs with close */
};

struct st_ev_close {
	struct st_event_hdr hdr;
	__u64 conn_id;
	__u64 bytes_sent; /* written by sshd into the connection */
	__u64 bytes_recv; /* read by sshd from it */
};

/*
 * Value of the relays map, keyed by inode number (pipefs and sockfs numbers
 * are not reused soon, kernel addresses are): the pipes between sshd and a
 * command, and forwarded connections; and by struct file address for the
 * files of transfer programs (removed at close).
 */
struct st_relay {
	__u64 sess_key;
	__u32 stream; /* enum st_tty_dir */
	__u32 flags; /* ST_RELAY_* */
	__u64 bytes_sent;
	__u64 bytes_recv;
};

/* Key of the sshd_exes map: which executables are sshd. */
struct st_exe_id {
	__u64 ino;
	__u32 dev; /* kernel encoding: major << 20 | minor */
	__u32 pad;
};

/* Value of the sessions map, shared by BPF and the collector. */
struct st_session {
	__u32 leader_pid; /* the connection handler forked by the listener */
	__u32 ended; /* set by BPF when the leader exits */
	__u64 lost_events;
	__u64 lost_bytes;
};

/* Value of the processes map: which session a tracked tgid belongs to. */
struct st_proc {
	__u64 sess_key;
	__u32 flags; /* ST_PROC_* */
	__u32 pad;
};
#define ST_PROC_SSHD 1u /* runs an sshd binary: its pipes and sockets are relays */
#define ST_PROC_TRANSFER 2u /* runs a transfer program: its files are summarised */
#define ST_PROC_XFER_ACTIVE 4u /* ... and it has read its stdin: the transfer began */
#define ST_PROC_SSHD_FORK 8u /* an sshd forked by an sshd of the session, not exec'd since */
#define ST_PROC_STDIN_SEEN 16u /* ... whose first bytes read from stdin were looked at */

/* Values of the sshd_exes map (which also lists transfer programs). */
#define ST_EXE_SSHD 1
#define ST_EXE_TRANSFER 2

/*
 * OpenSSH's internal-sftp (`Subsystem sftp internal-sftp`, `ForceCommand
 * internal-sftp`) execs nothing: the session's sshd forks a child that
 * calls sftp_server_main() on its stdin/stdout, pipes (or a socketpair) to
 * its parent. The kernel knows it by the first bytes it reads from stdin:
 * an SSH_FXP_INIT packet (uint32 length, byte type 1, uint32 version). From
 * then on it is a transfer program like an exec'd sftp-server: its stdio
 * pipes are counted, its files summarised.
 */
struct st_ev_sftp {
	struct st_event_hdr hdr;
	__u32 ppid; /* the sshd that forked it */
	__u32 uid; /* it already runs as the user */
	__u32 loginuid;
	__u32 sessionid;
	__u32 version; /* SFTP version the client asked for */
	__u32 pad;
	__u64 stdio[3]; /* pipes on fds 0, 1, 2: their inode numbers, or 0 */
};
/*
 * Right after the exec of a program sshd starts on a pty (the login shell):
 * the start of its environment, copied at the exec so that TERM is known
 * however late the collector reads the event. Only env_len bytes are sent.
 */
struct st_ev_env {
	struct st_event_hdr hdr;
	__u32 env_len;
	__u32 pad;
	char env[ST_ENV_MAX]; /* NAME=value entries, NUL-separated, maybe cut */
};

#define ST_SFTP_FXP_INIT 1
#define ST_SFTP_INIT_LEN 9 /* length, type, version */
#define ST_SFTP_MAX_MSG (256 * 1024) /* OpenSSH's SFTP_MAX_MSG_LENGTH */

struct st_ev_file {
	struct st_event_hdr hdr;
	__u64 file_id; /* kernel address of the struct file: pairs open and close */
	__s32 fd;
	__u32 flags; /* open(2) flags */
	__u64 bytes_read;
	__u64 bytes_written;
	__s32 dirfd; /* what path is relative to (AT_FDCWD = -100) */
	__s32 dirfd2; /* rename: what path2 is relative to */
	char path[ST_PATH_MAX]; /* open: as given to openat; rename: old name */
	char path2[ST_PATH_MAX]; /* rename: new name */
	/*
	 * Resolved in the kernel when the event happens (the process may be
	 * gone when the collector reads it): open: the opened file; rename:
	 * the directories path and path2 are relative to. dir holds the path's
	 * components leaf first, each NUL-terminated, in dir_len bytes.
	 */
	char dir[ST_DIR_BYTES];
	char dir2[ST_DIR_BYTES];
	__u16 dir_len;
	__u16 dir2_len;
	__u8 dir_flags; /* enum st_dir_flags */
	__u8 dir2_flags;
	__u16 pad;
	/*
	 * open: which file it is (0 for a rename). The path is hashed later,
	 * when the program has exited; by then it may name another file.
	 */
	__u64 ino;
	__u32 mnt_id; /* the mount's id (not the device: btrfs subvolumes differ) */
	__u32 pad2;
};

enum st_dir_flags {
	ST_DIR_OK = 1, /* reached the root */
	ST_DIR_TRUNCATED = 2, /* too deep or too long: a suffix only */
};

_Static_assert(sizeof(struct st_event_hdr) == 32, "st_event_hdr layout");
_Static_assert(sizeof(struct st_ev_session) == 56, "st_ev_session layout");
_Static_assert(sizeof(struct st_ev_fork) == 40, "st_ev_fork layout");
_Static_assert(sizeof(struct st_ev_exec) == 104 + ST_PATH_MAX + ST_DIR_BYTES + ST_ARGS_MAX,
	       "st_ev_exec layout");
_Static_assert(sizeof(struct st_ev_exit) == 40, "st_ev_exit layout");
_Static_assert(sizeof(struct st_ev_tty) == 64 + ST_TTY_CHUNK, "st_ev_tty layout");
_Static_assert(sizeof(struct st_session) == 24, "st_session layout");
_Static_assert(sizeof(struct st_ev_connect) == 72, "st_ev_connect layout");
_Static_assert(sizeof(struct st_ev_close) == 56, "st_ev_close layout");
_Static_assert(sizeof(struct st_relay) == 32, "st_relay layout");
_Static_assert(sizeof(struct st_ev_sftp) == 80, "st_ev_sftp layout");
_Static_assert(sizeof(struct st_ev_env) == 40 + ST_ENV_MAX, "st_ev_env layout");
_Static_assert(sizeof(struct st_ev_file) == 96 + 2 * ST_PATH_MAX + 2 * ST_DIR_BYTES,
	       "st_ev_file layout");

#endif
