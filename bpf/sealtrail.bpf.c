// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Session capture: follows the process trees that sshd listeners fork for
 * each connection, and records what those processes exec, fork and exit
 * with, and every byte they move through a pty master (/dev/ptmx).
 *
 * Attach points are tracepoints and raw tracepoints only (no fentry, kprobe
 * or LSM on the target kernels). Each hook filters on the tracked-tgid bitmap
 * first; everything expensive happens after that test.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "lib/maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

union scratch {
	struct st_ev_exec exec;
	struct st_ev_tty tty;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, union scratch);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct st_ev_file);
} file_scratch SEC(".maps");

#define S_IFMT 00170000
#define S_IFIFO 0010000
#define S_IFSOCK 0140000
#define AF_UNIX 1
#define SOCK_STREAM 1
#define AF_INET 2
#define AF_INET6 10
#define EINPROGRESS 115

/*
 * A read/write/readv/writev between sys_enter and sys_exit: on a pty master,
 * or by sshd on a relay (a command's pipe, a forwarded connection).
 */
struct pty_io {
	__u32 active; /* between sys_enter and sys_exit of a call we record */
	__u32 pad;
	__u64 buf; /* user buffer, or the iovec array for readv/writev */
	__u32 nvec; /* 0 for read/write */
	__u32 dir; /* enum st_tty_dir */
	__u32 tty_index;
	__u32 is_write;
	__u16 rows, cols; /* window size of the pty */
	__u32 probe; /* enum stdin_probe: an sshd's read of its stdin */
	__u64 relay; /* relays key for forwarded connections (counted only) */
	__u64 object; /* relays key of pipes */
};

/*
 * A read of fd 0 by an sshd of the session forked and not exec'd, the first
 * one that returns bytes: is it internal-sftp (see struct st_ev_sftp)?
 */
enum stdin_probe {
	PROBE_NONE = 0,
	PROBE_PIPE = 1, /* a pipe: its bytes go out as before unless it is SFTP */
	PROBE_ONLY = 2, /* an AF_UNIX socket: only looked at */
};

/* connect() by sshd between sys_enter and sys_exit. */
struct connect_args {
	__u64 fd;
	__u64 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* tid */
	__type(value, struct connect_args);
} connects SEC(".maps");

/*
 * Per thread, in the task itself: found from the task pointer without a
 * hash, a lock or a tid key that a reused tid could collide with.
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pty_io);
} inflight SEC(".maps");

/*
 * A kernel pointer the verifier lets us dereference directly (loads that
 * cannot fault the kernel): one instruction a field instead of a helper
 * call per BPF_CORE_READ step. The call itself is rewritten to a move.
 */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;
#define kptr(ptr, type) ((type *)bpf_rdonly_cast((ptr), bpf_core_type_id_kernel(type)))

static __always_inline struct file *fd_file(struct task_struct *task, __u64 fd)
{
	struct fdtable *fdt = kptr(task, struct task_struct)->files->fdt;
	struct file **fds, *file = NULL;

	if (!fdt || fd >= fdt->max_fds)
		return NULL;
	fds = fdt->fd;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]))
		return NULL;
	return file;
}

/* ---- process tree ---------------------------------------------------- */

SEC("raw_tp/sched_process_fork")
int handle_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	__u64 key;

	if (ctgid == ptgid || (__u32)BPF_CORE_READ(child, pid) != ctgid)
		return 0; /* a new thread, not a new process */

	struct st_proc *pp = proc_of(ptgid);

	if (pp) {
		struct st_ev_fork ev = {};
		__u32 flags = pp->flags & ~ST_PROC_STDIN_SEEN;

		if (flags & ST_PROC_SSHD)
			flags |= ST_PROC_SSHD_FORK; /* maybe internal-sftp, see sftp_probe() */
		key = pp->sess_key;
		track(ctgid, key, flags);
		fill_hdr(&ev.hdr, ST_EV_FORK, sizeof(ev), key);
		ev.hdr.pid = ptgid;
		ev.child_pid = ctgid;
		submit(&ev, sizeof(ev), key, 0);
		return 0;
	}

	if (ptgid == self_tgid || !bpf_map_lookup_elem(&listeners, &ptgid))
		return 0;

	/* A listener forked: a new connection, so a new session. */
	struct st_session s = {.leader_pid = ctgid};
	struct st_ev_session ev = {};

	key = __sync_fetch_and_add(&next_sess_key, 1);
	if (bpf_map_update_elem(&sessions, &key, &s, BPF_NOEXIST)) {
		count(ST_CNT_PROC_FULL, 1);
		return 0;
	}
	track(ctgid, key, ST_PROC_SSHD); /* the connection handler is sshd */
	fill_hdr(&ev.hdr, ST_EV_SESSION_START, sizeof(ev), key);
	ev.hdr.pid = ctgid;
	ev.listener_pid = ptgid;
	submit(&ev, sizeof(ev), key, 0);
	return 0;
}

/* Remember a command's stdin/stdout/stderr pipes, whose other end sshd holds. */
static __always_inline void relay_pipe(struct task_struct *task, __u32 fd, __u32 stream,
				       __u64 sess_key, __u32 flags, __u64 *prev, __u64 *out)
{
	struct file *file = fd_file(task, fd);
	struct st_relay r = {.sess_key = sess_key, .stream = stream, .flags = flags};
	struct inode *inode;
	__u64 key;

	if (!file)
		return;
	inode = BPF_CORE_READ(file, f_inode);
	key = BPF_CORE_READ(inode, i_ino);
	if (!inode || key == *prev || (BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFIFO)
		return;
	*prev = key;
	*out = key;
	bpf_map_update_elem(&relays, &key, &r, BPF_ANY);
}

/*
 * Is the new program sshd (then its pipes and sockets are relays), was it
 * started by sshd (then its stdio pipes carry the session), and does it
 * run on a terminal?
 */
static __always_inline __u32 exec_classify(struct task_struct *task, __u32 tgid, __u32 ppid,
					   __u64 sess_key, __u64 stdio[3])
{
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	struct st_exe_id id = {
	    .ino = BPF_CORE_READ(exe, f_inode, i_ino),
	    .dev = BPF_CORE_READ(exe, f_inode, i_sb, s_dev),
	};
	struct st_proc *p = proc_of(tgid), *pp = proc_of(ppid);
	struct file *in = fd_file(task, 0);
	__u32 flags = 0, major;

	__u8 *exe_kind = bpf_map_lookup_elem(&sshd_exes, &id);

	if (exe_kind && *exe_kind == ST_EXE_SSHD)
		flags |= ST_EXEC_IS_SSHD;
	if (p) {
		p->flags &= ~(ST_PROC_SSHD | ST_PROC_TRANSFER | ST_PROC_XFER_ACTIVE |
			      ST_PROC_SSHD_FORK | ST_PROC_STDIN_SEEN);
		if (flags & ST_EXEC_IS_SSHD)
			p->flags |= ST_PROC_SSHD;
		else if (exe_kind && *exe_kind == ST_EXE_TRANSFER)
			p->flags |= ST_PROC_TRANSFER;
	}
	major = in ? BPF_CORE_READ(in, f_inode, i_rdev) >> 20 : 0;
	if (major >= 136 && major <= 143)
		flags |= ST_EXEC_STDIN_TTY;
	if (pp && (pp->flags & ST_PROC_SSHD)) {
		flags |= ST_EXEC_FROM_SSHD;
		if (!(flags & ST_EXEC_IS_SSHD)) {
			__u32 rflags = 0;
			__u64 prev = 0;

			/* a transfer's stream is its files: count it, do not copy it */
			if (exe_kind && *exe_kind == ST_EXE_TRANSFER) {
				flags |= ST_EXEC_PIPES_COUNTED;
				rflags = ST_RELAY_COUNT;
			}
			relay_pipe(task, 0, ST_PIPE_STDIN, sess_key, rflags, &prev, &stdio[0]);
			relay_pipe(task, 1, ST_PIPE_STDOUT, sess_key, rflags, &prev, &stdio[1]);
			relay_pipe(task, 2, ST_PIPE_STDERR, sess_key, rflags, &prev, &stdio[2]);
		}
	}
	return flags;
}

static __noinline __u16 walk_path(struct vfsmount *vfsmnt, struct dentry *dentry, char *out,
				  __u8 *flags);

/*
 * A login shell's environment as it starts (the exec event is sent: its
 * scratch is free again). The collector takes TERM from it.
 */
static __always_inline void send_env(struct task_struct *task, __u64 key, struct st_ev_env *ev)
{
	__u64 start = BPF_CORE_READ(task, mm, env_start), end = BPF_CORE_READ(task, mm, env_end);
	__u64 n = end > start ? end - start : 0;

	if (n > ST_ENV_MAX)
		n = ST_ENV_MAX;
	if (!n)
		return; /* an empty environment: no TERM */
	if (bpf_probe_read_user(ev->env, n & (2 * ST_ENV_MAX - 1), (void *)start)) {
		count(ST_CNT_READ_FAILED, 1);
		return;
	}
	ev->env_len = n;
	ev->pad = 0;
	fill_hdr(&ev->hdr, ST_EV_ENV, offsetof(struct st_ev_env, env) + n, key);
	submit(ev, offsetof(struct st_ev_env, env) + n, key, 0);
}

SEC("tp/sched/sched_process_exec")
int handle_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct task_struct *task;
	struct st_ev_exec *ev;
	__u64 key, start, end, total, n, size;
	__u32 zero = 0;

	key = session_of(tgid);
	if (!key)
		return 0;
	ev = bpf_map_lookup_elem(&scratch, &zero);
	if (!ev)
		return 0;

	task = (struct task_struct *)bpf_get_current_task();
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->stdio[0] = ev->stdio[1] = ev->stdio[2] = 0;
	ev->flags = exec_classify(task, tgid, ev->ppid, key, ev->stdio);
	ev->uid = BPF_CORE_READ(task, cred, uid.val);
	ev->euid = BPF_CORE_READ(task, cred, euid.val);
	ev->gid = BPF_CORE_READ(task, cred, gid.val);
	ev->loginuid = (__u32)-1;
	ev->sessionid = (__u32)-1;
	if (bpf_core_field_exists(task->loginuid)) {
		ev->loginuid = BPF_CORE_READ(task, loginuid.val);
		ev->sessionid = BPF_CORE_READ(task, sessionid);
	}
	ev->pad = 0;
	__builtin_memset(ev->pad2, 0, sizeof(ev->pad2));
	bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename),
				  (void *)ctx + (ctx->__data_loc_filename & 0xFFFF));
	/* where the command runs: relative paths in its argv start there */
	ev->cwd_len = walk_path(BPF_CORE_READ(task, fs, pwd.mnt),
				BPF_CORE_READ(task, fs, pwd.dentry), ev->cwd, &ev->cwd_flags);

	start = BPF_CORE_READ(task, mm, arg_start);
	end = BPF_CORE_READ(task, mm, arg_end);
	total = end > start ? end - start : 0;
	n = total;
	if (n > ST_ARGS_MAX) {
		n = ST_ARGS_MAX;
		ev->flags |= ST_EXEC_ARGS_TRUNCATED;
		count(ST_CNT_ARGS_TRUNCATED, 1);
	}
	if (n && bpf_probe_read_user(ev->args, n & (2 * ST_ARGS_MAX - 1), (void *)start)) {
		n = 0;
		ev->flags |= ST_EXEC_READ_FAILED;
		count(ST_CNT_READ_FAILED, 1);
	}
	ev->args_len = n;
	ev->args_total = total > 0xffffffffULL ? 0xffffffff : total;
	size = offsetof(struct st_ev_exec, args) + n;
	if (size > sizeof(*ev))
		size = sizeof(*ev);
	fill_hdr(&ev->hdr, ST_EV_EXEC, size, key);
	submit(ev, size, key, 0);
	if ((ev->flags & (ST_EXEC_FROM_SSHD | ST_EXEC_STDIN_TTY)) ==
	    (ST_EXEC_FROM_SSHD | ST_EXEC_STDIN_TTY))
		send_env(task, key, (struct st_ev_env *)ev);
	return 0;
}

/* Wait status of an exiting task, as wait(2) would report it. */
static __always_inline __s32 exit_status(struct task_struct *task)
{
	return BPF_CORE_READ(task, exit_code);
}

SEC("tp/sched/sched_process_exit")
int handle_exit(struct trace_event_raw_sched_process_exit *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct task_struct *task;
	struct st_session *s;
	struct st_ev_exit ev = {};
	bool group_dead;
	__u64 key;

	key = session_of(tgid);
	if (!key)
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	if (bpf_core_field_exists(ctx->group_dead))
		group_dead = BPF_CORE_READ(ctx, group_dead);
	else
		group_dead = BPF_CORE_READ(task, signal, live.counter) == 0;
	if (!group_dead)
		return 0;

	fill_hdr(&ev.hdr, ST_EV_EXIT, sizeof(ev), key);
	ev.hdr.pid = tgid;
	ev.exit_code = exit_status(task);
	submit(&ev, sizeof(ev), key, 0);
	untrack(tgid);

	s = bpf_map_lookup_elem(&sessions, &key);
	if (s && s->leader_pid == tgid) {
		struct st_ev_session end = {};

		s->ended = 1;
		fill_hdr(&end.hdr, ST_EV_SESSION_END, sizeof(end), key);
		end.hdr.pid = tgid;
		end.exit_code = ev.exit_code;
		end.lost_events = s->lost_events;
		end.lost_bytes = s->lost_bytes;
		submit(&end, sizeof(end), key, 0);
	}
	return 0;
}

/* ---- terminal streams ------------------------------------------------ */

/* Could this be what sshd gives a forked session child as stdin? */
static __always_inline enum stdin_probe stdin_probe_of(struct file *file, struct inode *inode)
{
	__u32 mode = BPF_CORE_READ(inode, i_mode) & S_IFMT;
	struct socket *sock;

	if (mode == S_IFIFO)
		return PROBE_PIPE;
	if (mode != S_IFSOCK)
		return PROBE_NONE;
	sock = BPF_CORE_READ(file, private_data);
	return BPF_CORE_READ(sock, sk, __sk_common.skc_family) == AF_UNIX ? PROBE_ONLY : PROBE_NONE;
}

/* Remember a call we record until its sys_exit. */
static __always_inline int begin_io(struct task_struct *task, const struct pty_io *io)
{
	struct pty_io *slot =
	    bpf_task_storage_get(&inflight, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (slot)
		*slot = *io;
	else if (io->probe != PROBE_ONLY) /* what the call moves is lost, and said so */
		count_lost(session_of(bpf_get_current_pid_tgid() >> 32), 0);
	return 0;
}

/*
 * Is this read/write one we record? Bytes on a pty master, and bytes sshd
 * moves through a relay (a command's pipe, a forwarded connection).
 */
static __always_inline int pty_enter(__u64 fd, __u64 buf, __u64 nvec, __u32 is_write)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pty_io io = {.active = 1, .buf = buf, .nvec = nvec, .is_write = is_write};
	struct task_struct *task;
	struct file *file;
	struct inode *inode;

	if (!is_tracked(id >> 32))
		return 0;
	task = bpf_get_current_task_btf();
	file = kptr(fd_file(task, fd), struct file);
	if (!file)
		return 0;
	inode = file->f_inode;
	if (inode->i_rdev == ST_PTMX_RDEV) {
		struct tty_struct *slave =
		    kptr(file->private_data, struct tty_file_private)->tty->link;

		io.dir = is_write ? ST_TTY_IN : ST_TTY_OUT;
		io.tty_index = slave->index;
		/*
		 * the slave's size, what programs see: sshd's TIOCSWINSZ on the
		 * master sets both ends, `stty` in the session only the slave
		 */
		io.rows = slave->winsize.ws_row;
		io.cols = slave->winsize.ws_col;
	} else {
		struct st_proc *p = proc_of(id >> 32);
		__u64 key = BPF_CORE_READ(inode, i_ino);
		struct st_relay *r;

		if (p && (p->flags & ST_PROC_TRANSFER)) {
			/*
			 * Files opened before the program first reads its stdin
			 * (the protocol) are the loader's and NSS's, not transfers.
			 */
			if (fd == 0 && !is_write)
				p->flags |= ST_PROC_XFER_ACTIVE;
			/* a transferred file: bytes counted, not copied */
			key = (__u64)file;
			r = bpf_map_lookup_elem(&relays, &key);
			if (!r || r->stream != ST_FILE)
				return 0;
			io.dir = ST_FILE;
			io.relay = key;
			return begin_io(task, &io);
		}
		if (!p || !(p->flags & ST_PROC_SSHD))
			return 0;
		/* a forked sshd's first read of its stdin: see sftp_probe() */
		if (fd == 0 && !is_write && !nvec &&
		    (p->flags & (ST_PROC_SSHD_FORK | ST_PROC_STDIN_SEEN)) == ST_PROC_SSHD_FORK)
			io.probe = stdin_probe_of(file, inode);
		r = bpf_map_lookup_elem(&relays, &key);
		if (r) {
			io.dir = r->stream;
			if (r->stream == ST_FORWARD || (r->flags & ST_RELAY_COUNT))
				io.relay = key;
		} else if ((BPF_CORE_READ(inode, i_mode) & S_IFMT) == S_IFIFO) {
			/*
			 * sshd can write a command's stdin before the command's
			 * exec tells us which pipe that is: send it with the
			 * pipe's identity, the collector sorts it out.
			 */
			io.dir = ST_PIPE_UNKNOWN;
		} else if (io.probe != PROBE_ONLY) {
			return 0;
		}
		io.object = key;
	}
	if (nvec > ST_IOV_MAX) {
		io.nvec = ST_IOV_MAX;
		count(ST_CNT_IOV_TRUNCATED, 1);
	}
	return begin_io(task, &io);
}

/* Walk over the bytes a syscall moved, one ring-buffer event per chunk. */
struct pty_walk {
	struct pty_io io;
	__u64 sess_key;
	__u64 seg; /* current user segment */
	__u64 seg_len;
	__u64 seg_off;
	__u64 left; /* bytes the syscall returned, not yet emitted */
	__u64 offset; /* bytes emitted so far */
	__u32 next_vec; /* next iovec to load */
};

static long pty_emit_chunk(__u64 i, struct pty_walk *w)
{
	struct st_ev_tty *ev;
	__u32 zero = 0;
	__u64 n, size;

	if (!w->left)
		return 1;
	if (w->seg_off >= w->seg_len) {
		struct iovec iov;

		if (!w->io.nvec || w->next_vec >= w->io.nvec)
			goto lost; /* more returned than we could follow */
		if (bpf_probe_read_user(&iov, sizeof(iov),
					(void *)(w->io.buf + w->next_vec * sizeof(iov))))
			goto lost;
		w->next_vec++;
		w->seg = (__u64)iov.iov_base;
		w->seg_len = iov.iov_len;
		w->seg_off = 0;
		return 0;
	}
	n = w->seg_len - w->seg_off;
	if (n > w->left)
		n = w->left;
	if (n > ST_TTY_CHUNK)
		n = ST_TTY_CHUNK;

	ev = bpf_map_lookup_elem(&scratch, &zero);
	if (!ev)
		return 1;
	if (bpf_probe_read_user(ev->data, n & (2 * ST_TTY_CHUNK - 1),
				(void *)(w->seg + w->seg_off))) {
		count(ST_CNT_READ_FAILED, 1);
		goto lost;
	}
	size = offsetof(struct st_ev_tty, data) + n;
	if (size > sizeof(*ev))
		size = sizeof(*ev);
	fill_hdr(&ev->hdr, ST_EV_TTY, size, w->sess_key);
	ev->dir = w->io.dir;
	ev->tty_index = w->io.tty_index;
	ev->len = n;
	ev->rows = w->io.rows;
	ev->cols = w->io.cols;
	ev->offset = w->offset;
	ev->object = w->io.object;
	submit(ev, size, w->sess_key, n);
	w->seg_off += n;
	w->left -= n;
	w->offset += n;
	return 0;
lost:
	/* Count what we cannot copy as one lost event of that many bytes. */
	count_lost(w->sess_key, w->left);
	w->left = 0;
	return 1;
}

/*
 * OpenSSH's internal-sftp (struct st_ev_sftp): an sshd of the session,
 * forked by another and never exec'd, whose first read of its stdin (a pipe
 * or socketpair to its parent) returns an SSH_FXP_INIT packet. sshd's own
 * processes read their connection, the monitor socket or /dev/null, never
 * SFTP; a command sshd starts reads its stdin only after its exec. Looked at
 * once per process. True if it is internal-sftp: it then becomes a transfer
 * program whose stdio is counted and whose files are summarised.
 */
static __always_inline bool sftp_probe(const struct pty_io *io, long ret)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct st_ev_sftp ev = {};
	struct task_struct *task;
	struct st_proc *p;
	__u8 init[ST_SFTP_INIT_LEN];
	__u64 prev = 0;
	__u32 len;

	p = proc_of(tgid);
	if (!p)
		return false;
	p->flags |= ST_PROC_STDIN_SEEN;
	if (ret < ST_SFTP_INIT_LEN)
		return false;
	if (bpf_probe_read_user(init, sizeof(init), (void *)io->buf)) {
		count(ST_CNT_READ_FAILED, 1);
		return false;
	}
	len = (__u32)init[0] << 24 | (__u32)init[1] << 16 | (__u32)init[2] << 8 | init[3];
	if (init[4] != ST_SFTP_FXP_INIT || len < ST_SFTP_INIT_LEN - 4 || len > ST_SFTP_MAX_MSG)
		return false;

	/* from now on like an exec'd sftp-server (exec_classify) */
	p->flags = (p->flags & ~(ST_PROC_SSHD | ST_PROC_SSHD_FORK)) | ST_PROC_TRANSFER |
		   ST_PROC_XFER_ACTIVE;
	task = (struct task_struct *)bpf_get_current_task();
	relay_pipe(task, 0, ST_PIPE_STDIN, p->sess_key, ST_RELAY_COUNT, &prev, &ev.stdio[0]);
	relay_pipe(task, 1, ST_PIPE_STDOUT, p->sess_key, ST_RELAY_COUNT, &prev, &ev.stdio[1]);
	relay_pipe(task, 2, ST_PIPE_STDERR, p->sess_key, ST_RELAY_COUNT, &prev, &ev.stdio[2]);
	ev.ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev.uid = BPF_CORE_READ(task, cred, uid.val);
	ev.loginuid = (__u32)-1;
	ev.sessionid = (__u32)-1;
	if (bpf_core_field_exists(task->loginuid)) {
		ev.loginuid = BPF_CORE_READ(task, loginuid.val);
		ev.sessionid = BPF_CORE_READ(task, sessionid);
	}
	ev.version = (__u32)init[5] << 24 | (__u32)init[6] << 16 | (__u32)init[7] << 8 | init[8];
	fill_hdr(&ev.hdr, ST_EV_INTERNAL_SFTP, sizeof(ev), p->sess_key);
	submit(&ev, sizeof(ev), p->sess_key, 0);
	return true;
}

static __always_inline int pty_exit(long ret, bool can_probe)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pty_io *io;
	struct pty_walk w = {};

	if (!is_tracked(id >> 32))
		return 0;
	io = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0, 0);
	if (!io || !io->active)
		return 0;
	w.io = *io;
	io->active = 0;
	if (ret <= 0)
		return 0;
	/* its protocol is counted from now on, as for an exec'd sftp-server */
	if (can_probe && w.io.probe && (sftp_probe(&w.io, ret) || w.io.probe == PROBE_ONLY))
		return 0;
	if (w.io.relay) {
		/* forwarded connections: bytes each way are counted, not copied */
		struct st_relay *r = bpf_map_lookup_elem(&relays, &w.io.relay);

		if (r) {
			if (w.io.is_write)
				__sync_fetch_and_add(&r->bytes_sent, ret);
			else
				__sync_fetch_and_add(&r->bytes_recv, ret);
		}
		return 0;
	}
	w.sess_key = session_of(id >> 32);
	if (!w.sess_key)
		return 0;
	w.left = ret;
	if (!w.io.nvec) {
		w.seg = w.io.buf;
		w.seg_len = ret;
	}
	bpf_loop(ret / ST_TTY_CHUNK + 2 * ST_IOV_MAX + 2, pty_emit_chunk, &w, 0);
	return 0;
}

SEC("tp/syscalls/sys_enter_write")
int enter_write(struct trace_event_raw_sys_enter *ctx)
{
	return pty_enter(ctx->args[0], ctx->args[1], 0, 1);
}

SEC("tp/syscalls/sys_enter_read")
int enter_read(struct trace_event_raw_sys_enter *ctx)
{
	return pty_enter(ctx->args[0], ctx->args[1], 0, 0);
}

SEC("tp/syscalls/sys_enter_writev")
int enter_writev(struct trace_event_raw_sys_enter *ctx)
{
	return pty_enter(ctx->args[0], ctx->args[1], ctx->args[2] ?: 1, 1);
}

SEC("tp/syscalls/sys_enter_readv")
int enter_readv(struct trace_event_raw_sys_enter *ctx)
{
	return pty_enter(ctx->args[0], ctx->args[1], ctx->args[2] ?: 1, 0);
}

SEC("tp/syscalls/sys_exit_write")
int exit_write(struct trace_event_raw_sys_exit *ctx)
{
	return pty_exit(ctx->ret, false);
}

SEC("tp/syscalls/sys_exit_read")
int exit_read(struct trace_event_raw_sys_exit *ctx)
{
	return pty_exit(ctx->ret, true); /* sftp-server reads with read(2) */
}

SEC("tp/syscalls/sys_exit_writev")
int exit_writev(struct trace_event_raw_sys_exit *ctx)
{
	return pty_exit(ctx->ret, false);
}

SEC("tp/syscalls/sys_exit_readv")
int exit_readv(struct trace_event_raw_sys_exit *ctx)
{
	return pty_exit(ctx->ret, false);
}

/* ---- forwarded connections ------------------------------------------- */

SEC("tp/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct connect_args a = {.fd = ctx->args[0], .addr = ctx->args[1]};
	struct st_proc *p;
	__u32 tid = (__u32)id;

	if (!is_tracked(id >> 32))
		return 0;
	p = proc_of(id >> 32);
	if (!p || !(p->flags & ST_PROC_SSHD))
		return 0;
	bpf_map_update_elem(&connects, &tid, &a, BPF_ANY);
	return 0;
}

/* A forwarded connection opened: follow its bytes, tell the collector. */
static __always_inline int forward_opened(struct file *file, struct st_ev_connect *ev,
					  __u64 sess_key)
{
	struct st_relay r = {.stream = ST_FORWARD, .sess_key = sess_key};
	__u64 key = BPF_CORE_READ(file, f_inode, i_ino);

	ev->conn_id = key;
	bpf_map_update_elem(&relays, &key, &r, BPF_ANY);
	fill_hdr(&ev->hdr, ST_EV_CONNECT, sizeof(*ev), sess_key);
	submit(ev, sizeof(*ev), sess_key, 0);
	return 0;
}

SEC("tp/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct st_ev_connect ev = {};
	struct connect_args *a;
	struct socket *sock;
	struct file *file;
	struct st_relay r = {.stream = ST_FORWARD};
	__u32 tid = (__u32)id;
	__u64 fd, addr;

	if (!is_tracked(id >> 32))
		return 0;
	a = bpf_map_lookup_elem(&connects, &tid);
	if (!a)
		return 0;
	fd = a->fd;
	addr = a->addr;
	bpf_map_delete_elem(&connects, &tid);
	if (ctx->ret != 0 && ctx->ret != -EINPROGRESS)
		return 0;
	r.sess_key = session_of(id >> 32);
	file = fd_file((struct task_struct *)bpf_get_current_task(), fd);
	if (!r.sess_key || !file)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	if (BPF_CORE_READ(sock, type) != SOCK_STREAM)
		return 0; /* e.g. a DNS lookup over UDP */
	if (bpf_probe_read_user(&ev.family, sizeof(ev.family), (void *)addr))
		return 0;
	if (ev.family == AF_INET) {
		bpf_probe_read_user(&ev.port, 2, (void *)addr + 2);
		bpf_probe_read_user(ev.addr, 4, (void *)addr + 4);
	} else if (ev.family == AF_INET6) {
		bpf_probe_read_user(&ev.port, 2, (void *)addr + 2);
		bpf_probe_read_user(ev.addr, 16, (void *)addr + 8);
	} else {
		return 0;
	}
	ev.port = bpf_ntohs(ev.port);
	ev.fd = fd;
	ev.ret = ctx->ret;
	return forward_opened(file, &ev, r.sess_key);
}

/* accept() by sshd: a connection to a port it listens on for ssh -R. */
static __always_inline int forward_accepted(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct st_ev_connect ev = {};
	struct st_proc *p;
	struct socket *sock;
	struct sock *sk;
	struct file *file;

	if (!is_tracked(id >> 32) || ret < 0)
		return 0;
	p = proc_of(id >> 32);
	if (!p || !(p->flags & ST_PROC_SSHD))
		return 0;
	file = fd_file((struct task_struct *)bpf_get_current_task(), ret);
	if (!file)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	if (BPF_CORE_READ(sock, type) != SOCK_STREAM)
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	ev.family = BPF_CORE_READ(sk, __sk_common.skc_family);
	/* whole addresses: BPF_CORE_READ_INTO into an array would copy one byte */
	if (ev.family == AF_INET) {
		__u32 a4 = BPF_CORE_READ(sk, __sk_common.skc_daddr);

		__builtin_memcpy(ev.addr, &a4, sizeof(a4));
	} else if (ev.family == AF_INET6) {
		struct in6_addr a6 = BPF_CORE_READ(sk, __sk_common.skc_v6_daddr);

		__builtin_memcpy(ev.addr, &a6, sizeof(a6));
	} else
		return 0; /* unix sockets: agent or X11 forwarding, not followed */
	ev.port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	ev.local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	ev.accepted = 1;
	ev.fd = ret;
	return forward_opened(file, &ev, p->sess_key);
}

SEC("tp/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return forward_accepted(ctx->ret);
}

SEC("tp/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return forward_accepted(ctx->ret);
}

SEC("tp/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct st_ev_close ev = {};
	struct st_relay *r;
	struct st_proc *p;
	struct file *file;
	__u64 key;

	if (!is_tracked(id >> 32))
		return 0;
	p = proc_of(id >> 32);
	if (!p || !(p->flags & (ST_PROC_SSHD | ST_PROC_TRANSFER)))
		return 0;
	file = fd_file((struct task_struct *)bpf_get_current_task(), ctx->args[0]);
	if (!file)
		return 0;
	if (p->flags & ST_PROC_TRANSFER) {
		struct st_ev_file *fe;
		__u32 zero = 0;

		key = (__u64)file;
		r = bpf_map_lookup_elem(&relays, &key);
		fe = bpf_map_lookup_elem(&file_scratch, &zero);
		if (!r || r->stream != ST_FILE || !fe)
			return 0;
		fill_hdr(&fe->hdr, ST_EV_FILE_CLOSE, sizeof(*fe), r->sess_key);
		fe->file_id = key;
		fe->fd = ctx->args[0];
		fe->flags = 0;
		fe->dirfd = fe->dirfd2 = 0;
		fe->bytes_read = r->bytes_recv;
		fe->bytes_written = r->bytes_sent;
		fe->path[0] = fe->path2[0] = 0;
		fe->dir_len = fe->dir2_len = 0;
		fe->dir_flags = fe->dir2_flags = 0;
		submit(fe, sizeof(*fe), r->sess_key, 0);
		bpf_map_delete_elem(&relays, &key);
		return 0;
	}
	key = BPF_CORE_READ(file, f_inode, i_ino);
	r = bpf_map_lookup_elem(&relays, &key);
	if (!r || r->stream != ST_FORWARD)
		return 0;
	fill_hdr(&ev.hdr, ST_EV_CLOSE, sizeof(ev), r->sess_key);
	ev.conn_id = key;
	ev.bytes_sent = r->bytes_sent;
	ev.bytes_recv = r->bytes_recv;
	submit(&ev, sizeof(ev), r->sess_key, 0);
	bpf_map_delete_elem(&relays, &key);
	return 0;
}

/* ---- files of transfer programs (sftp-server, scp, rsync) ------------ */

struct open_args {
	__u64 path;
	__u64 flags;
	__s64 dirfd;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* tid */
	__type(value, struct open_args);
} opens SEC(".maps");

#define O_DIRECTORY 0200000

/*
 * Write the path of (vfsmnt, dentry) into out as its components, leaf
 * first, each NUL-terminated (reversing them needs offsets the verifier
 * cannot bound). Mount points are crossed up to the global root, so a
 * chrooted sftp-server's files show with their real paths.
 */
static __noinline __u16 walk_path(struct vfsmount *vfsmnt, struct dentry *dentry, char *out,
				  __u8 *flags)
{
	struct mount *mnt = (void *)vfsmnt - bpf_core_field_offset(struct mount, mnt);
	__u32 off = 0;

	*flags = ST_DIR_TRUNCATED; /* unless the walk reaches the root */
	for (int i = 0; i < ST_DIR_DEPTH + 8 && dentry; i++) {
		struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
		const unsigned char *name;
		long n;

		if (dentry == BPF_CORE_READ(mnt, mnt.mnt_root) || dentry == parent) {
			struct mount *up = BPF_CORE_READ(mnt, mnt_parent);

			if (!up || up == mnt) {
				*flags = ST_DIR_OK;
				break;
			}
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = up;
			continue;
		}
		name = BPF_CORE_READ(dentry, d_name.name);
		n = bpf_probe_read_kernel_str(out + (off & (ST_DIR_BYTES / 2 - 1)),
					      ST_DIR_BYTES / 2, name);
		if (n <= 0) {
			*flags = 0;
			return 0;
		}
		off = (off & (ST_DIR_BYTES / 2 - 1)) + n;
		if (off >= ST_DIR_BYTES / 2)
			break;
		dentry = parent;
	}
	return off;
}

/* The directory a *at() call's relative names start from: dirfd or the cwd. */
static __always_inline __u16 walk_dirfd(__s32 dirfd, char *out, __u8 *flags)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *f;

	if (dirfd == -100 /* AT_FDCWD */)
		return walk_path(BPF_CORE_READ(task, fs, pwd.mnt),
				 BPF_CORE_READ(task, fs, pwd.dentry), out, flags);
	f = dirfd >= 0 ? fd_file(task, dirfd) : NULL;
	*flags = 0;
	return f ? walk_path(BPF_CORE_READ(f, f_path.mnt), BPF_CORE_READ(f, f_path.dentry), out,
			     flags)
		 : 0;
}

static __always_inline struct st_proc *transfer_proc(__u64 id)
{
	struct st_proc *p = proc_of(id >> 32);

	return p && (p->flags & ST_PROC_TRANSFER) ? p : NULL;
}

SEC("tp/syscalls/sys_enter_openat")
int enter_openat(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct open_args a = {.path = ctx->args[1], .flags = ctx->args[2], .dirfd = ctx->args[0]};
	__u32 tid = (__u32)id;

	struct st_proc *p;

	if (!is_tracked(id >> 32) || (a.flags & O_DIRECTORY))
		return 0;
	p = transfer_proc(id);
	if (!p || !(p->flags & ST_PROC_XFER_ACTIVE))
		return 0;
	bpf_map_update_elem(&opens, &tid, &a, BPF_ANY);
	return 0;
}

SEC("tp/syscalls/sys_exit_openat")
int exit_openat(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct st_relay r = {.stream = ST_FILE};
	struct st_ev_file *ev;
	struct open_args *a;
	struct st_proc *p;
	struct file *file;
	__u32 tid = (__u32)id, zero = 0;
	__u64 key;

	if (!is_tracked(id >> 32))
		return 0;
	a = bpf_map_lookup_elem(&opens, &tid);
	if (!a)
		return 0;
	ev = bpf_map_lookup_elem(&file_scratch, &zero);
	p = transfer_proc(id);
	if (!ev || !p || ctx->ret < 0) {
		bpf_map_delete_elem(&opens, &tid);
		return 0;
	}
	file = fd_file((struct task_struct *)bpf_get_current_task(), ctx->ret);
	if (!file || (BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != 0100000 /* S_IFREG */) {
		bpf_map_delete_elem(&opens, &tid);
		return 0;
	}
	r.sess_key = p->sess_key;
	key = (__u64)file;
	bpf_map_update_elem(&relays, &key, &r, BPF_ANY);
	fill_hdr(&ev->hdr, ST_EV_FILE_OPEN, sizeof(*ev), p->sess_key);
	ev->file_id = key;
	ev->fd = ctx->ret;
	ev->flags = a->flags;
	ev->dirfd = a->dirfd;
	ev->dirfd2 = 0;
	ev->bytes_read = ev->bytes_written = 0;
	bpf_probe_read_user_str(ev->path, sizeof(ev->path), (void *)a->path);
	ev->path2[0] = 0;
	ev->dir_len = walk_path(BPF_CORE_READ(file, f_path.mnt), BPF_CORE_READ(file, f_path.dentry),
				ev->dir, &ev->dir_flags);
	ev->dir2_len = 0;
	ev->dir2_flags = 0;
	ev->ino = BPF_CORE_READ(file, f_inode, i_ino);
	{
		struct vfsmount *vfsmnt = BPF_CORE_READ(file, f_path.mnt);
		struct mount *mnt = (void *)vfsmnt - bpf_core_field_offset(struct mount, mnt);

		ev->mnt_id = BPF_CORE_READ(mnt, mnt_id);
	}
	bpf_map_delete_elem(&opens, &tid);
	submit(ev, sizeof(*ev), p->sess_key, 0);
	return 0;
}

static __always_inline int file_rename(__s32 olddfd, __u64 oldname, __s32 newdfd, __u64 newname)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct st_ev_file *ev;
	struct st_proc *p;
	__u32 zero = 0;

	if (!is_tracked(id >> 32))
		return 0;
	p = transfer_proc(id);
	ev = bpf_map_lookup_elem(&file_scratch, &zero);
	if (!p || !ev)
		return 0;
	fill_hdr(&ev->hdr, ST_EV_FILE_RENAME, sizeof(*ev), p->sess_key);
	ev->file_id = 0;
	ev->fd = -1;
	ev->flags = 0;
	ev->dirfd = olddfd;
	ev->dirfd2 = newdfd;
	ev->bytes_read = ev->bytes_written = 0;
	bpf_probe_read_user_str(ev->path, sizeof(ev->path), (void *)oldname);
	bpf_probe_read_user_str(ev->path2, sizeof(ev->path2), (void *)newname);
	ev->dir_len = walk_dirfd(olddfd, ev->dir, &ev->dir_flags);
	ev->dir2_len = walk_dirfd(newdfd, ev->dir2, &ev->dir2_flags);
	ev->ino = 0;
	ev->mnt_id = 0;
	submit(ev, sizeof(*ev), p->sess_key, 0);
	return 0;
}

SEC("tp/syscalls/sys_enter_rename")
int enter_rename(struct trace_event_raw_sys_enter *ctx)
{
	return file_rename(-100, ctx->args[0], -100, ctx->args[1]);
}

SEC("tp/syscalls/sys_enter_renameat")
int enter_renameat(struct trace_event_raw_sys_enter *ctx)
{
	return file_rename(ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]);
}

SEC("tp/syscalls/sys_enter_renameat2")
int enter_renameat2(struct trace_event_raw_sys_enter *ctx)
{
	return file_rename(ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]);
}
