/*
 * The access socket (access.h). Everything here runs in the recording
 * loop, so nothing blocks: the listening socket and the connections are
 * non-blocking, a request must arrive whole within 5 s, the command runs in
 * a child that is reaped with WNOHANG, and a caller that goes away has its
 * command killed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "access/roles.h"
#include "common/log.h"
#include "daemon/access.h"

#define REQUEST_TIMEOUT_NS (5ull * 1000000000ull)
#define MAX_PASSED_FDS 4

static int bind_path(int fd, const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};

	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	return bind(fd, (struct sockaddr *)&a, sizeof(a)) ? -errno : 0;
}

/* Is a sealtraild answering on path? */
static bool socket_alive(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool alive;

	if (fd < 0)
		return false;
	strcpy(a.sun_path, path);
	alive = !connect(fd, (struct sockaddr *)&a, sizeof(a));
	close(fd);
	return alive;
}

int access_server_open(struct access_server *s, const char *path, const char *roles_path,
		       const char *cli_path, struct store *st)
{
	struct stat sb;
	int err;

	memset(s, 0, sizeof(*s));
	s->listen_fd = -1;
	for (int i = 0; i < ACCESS_MAX_CONNS; i++)
		s->conns[i].fd = -1;
	s->roles_path = roles_path;
	s->cli_path = cli_path;
	s->store = st;
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0)
		return -errno;
	err = bind_path(s->listen_fd, path);
	if (err == -EADDRINUSE) {
		if (socket_alive(path)) {
			log_error("--socket %s: another sealtraild is serving it; not serving"
				  " requests (give this one its own --socket)",
				  path);
			goto fail;
		}
		unlink(path); /* stale: left by a sealtraild that was killed */
		err = bind_path(s->listen_fd, path);
	}
	/* anyone may connect: who they are is checked with SO_PEERCRED */
	if (err || chmod(path, 0666) || listen(s->listen_fd, ACCESS_MAX_CONNS) || stat(path, &sb)) {
		err = err ?: -errno;
		log_error("--socket %s: %s; not serving requests", path, strerror(-err));
		goto fail;
	}
	s->dev = sb.st_dev;
	s->ino = sb.st_ino;
	s->path = strdup(path);
	if (!s->path) {
		err = -ENOMEM;
		goto fail;
	}
	return 0;
fail:
	close(s->listen_fd);
	s->listen_fd = -1;
	return err ?: -EADDRINUSE;
}

static void conn_close(struct access_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	if (c->out_fd >= 0)
		close(c->out_fd);
	if (c->err_fd >= 0)
		close(c->err_fd);
	if (c->in_fd >= 0)
		close(c->in_fd);
	req_free(&c->req);
	c->fd = c->out_fd = c->err_fd = c->in_fd = -1;
	c->child = 0;
}

static void reply(struct access_conn *c, uint32_t status)
{
	uint8_t b[4];

	put_be32(b, status);
	if (write(c->fd, b, sizeof(b)) != sizeof(b))
		log_debug("access: caller pid %d went away before its exit status", (int)c->pid);
	conn_close(c);
}

/*
 * The sealed access record, synced before anything is served (ahead of
 * any backlog: it belongs to no session).
 */
static int record_access(struct access_server *s, struct access_conn *c, const char *user,
			 enum access_role role, const char *cmd, bool allowed, const char *why)
{
	struct buf rec = {0}, args = {0};
	int err;

	for (int i = 0; i < c->req.argc; i++)
		buf_add(&args, c->req.argv[i], strlen(c->req.argv[i]) + 1);
	err = rec_begin(&rec, REC_ACCESS, NULL, clock_ns(CLOCK_REALTIME), clock_ns(CLOCK_BOOTTIME));
	err = err ?: rec_add_u64(&rec, TAG_UID, c->uid);
	err = err ?: rec_add_u64(&rec, TAG_GID, c->gid);
	err = err ?: rec_add_u64(&rec, TAG_PID, c->pid);
	err = err ?: rec_add_str(&rec, TAG_USER, user);
	err = err ?: rec_add_str(&rec, TAG_ROLE, access_role_name(role));
	err = err ?: rec_add_str(&rec, TAG_COMMAND, cmd ? cmd : "");
	err = err ?: rec_add_bytes(&rec, TAG_ARGV, args.data, args.len);
	err = err ?: rec_add_str(&rec, TAG_DECISION, allowed ? "allowed" : "denied");
	if (!allowed)
		err = err ?: rec_add_str(&rec, TAG_REASON, why);
	err = err ?: store_append_now(s->store, &rec);
	err = err ?: store_sync(s->store);
	buf_free(&rec);
	buf_free(&args);
	return err;
}

/*
 * One record for the refused requests of a uid that were only counted:
 * how many, since when. Synced like every access record.
 */
static void record_suppressed(struct access_server *s, struct access_limit *l, uint64_t now)
{
	struct buf rec = {0};
	struct roles none = {0};
	char user[64], why[256];
	int err;

	roles_lookup(&none, l->uid, l->gid, user, sizeof(user));
	snprintf(why, sizeof(why),
		 "%llu more refused requests of %s (uid %u) in the last %llu s, not recorded one"
		 " by one: over %d at once or %d a second",
		 (unsigned long long)l->suppressed, user, (unsigned)l->uid,
		 (unsigned long long)((now - l->first_ns) / 1000000000ull + 1), ACCESS_DENY_BURST,
		 ACCESS_DENY_PER_S);
	err = rec_begin(&rec, REC_ACCESS, NULL, clock_ns(CLOCK_REALTIME), clock_ns(CLOCK_BOOTTIME));
	err = err ?: rec_add_u64(&rec, TAG_UID, l->uid);
	err = err ?: rec_add_u64(&rec, TAG_GID, l->gid);
	err = err ?: rec_add_str(&rec, TAG_USER, user);
	err = err ?: rec_add_str(&rec, TAG_ROLE, access_role_name(l->role));
	err = err ?: rec_add_str(&rec, TAG_COMMAND, "");
	err = err ?: rec_add_bytes(&rec, TAG_ARGV, "", 0);
	err = err ?: rec_add_str(&rec, TAG_DECISION, "denied");
	err = err ?: rec_add_str(&rec, TAG_REASON, why);
	err = err ?: rec_add_u64(&rec, TAG_REQUESTS, l->suppressed);
	err = err ?: store_append_now(s->store, &rec);
	err = err ?: store_sync(s->store);
	buf_free(&rec);
	if (err) {
		log_error("access: cannot record %s: %s", why, strerror(-err));
		l->first_ns = now; /* still counted; tried again in ACCESS_DENY_SUMMARY_S */
		return;
	}
	log_warn("access: %s", why);
	l->suppressed = 0;
}

/* Record what was counted: after ACCESS_DENY_SUMMARY_S, or all of it (force). */
static void flush_suppressed(struct access_server *s, bool force)
{
	uint64_t now = clock_ns(CLOCK_MONOTONIC);

	for (int i = 0; i < ACCESS_LIMITS; i++) {
		struct access_limit *l = &s->limits[i];

		if (l->used && l->suppressed &&
		    (force || now - l->first_ns >= ACCESS_DENY_SUMMARY_S * 1000000000ull))
			record_suppressed(s, l, now);
	}
}

static struct access_limit *limit_of(struct access_server *s, uid_t uid)
{
	struct access_limit *spare = NULL;

	for (int i = 0; i < ACCESS_LIMITS; i++) {
		struct access_limit *l = &s->limits[i];

		if (l->used && l->uid == uid)
			return l;
		/* a free slot, else the one that went longest without a request */
		if (!l->suppressed &&
		    (!spare || !l->used || (spare->used && l->tat_ns < spare->tat_ns)))
			spare = l;
	}
	if (spare) {
		memset(spare, 0, sizeof(*spare));
		spare->used = true;
		spare->uid = uid;
	}
	return spare;
}

/*
 * May this refused request be recorded on its own? Up to ACCESS_DENY_BURST
 * at once per uid, then ACCESS_DENY_PER_S a second (GCRA); the others are
 * counted for record_suppressed().
 */
static bool deny_recordable(struct access_server *s, struct access_conn *c, enum access_role role)
{
	const uint64_t step = 1000000000ull / ACCESS_DENY_PER_S;
	uint64_t now = clock_ns(CLOCK_MONOTONIC), tat;
	struct access_limit *l = limit_of(s, c->uid);

	if (!l) {
		/* every slot holds a count: write them out and take one */
		flush_suppressed(s, true);
		l = limit_of(s, c->uid);
		if (!l)
			return true;
	}
	l->gid = c->gid;
	l->role = role;
	tat = l->tat_ns > now ? l->tat_ns : now;
	if (tat - now > (ACCESS_DENY_BURST - 1) * step) {
		if (!l->suppressed++) {
			l->first_ns = now;
			log_warn("access: uid %u: more than %d refused requests at once; counting"
				 " them instead of recording each",
				 (unsigned)c->uid, ACCESS_DENY_BURST);
		}
		return false;
	}
	l->tat_ns = tat + step;
	return true;
}

static void deny(struct access_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void deny(struct access_conn *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > (int)sizeof(msg) - 2)
		n = sizeof(msg) - 2;
	msg[n++] = '\n';
	if (c->err_fd >= 0 && write_all(c->err_fd, msg, n))
		log_debug("access: cannot tell caller pid %d why it was refused", (int)c->pid);
	reply(c, REQ_DENIED);
}

/* The child: the sealtrail binary on the daemon's store, output to the caller. */
static pid_t run_command(struct access_server *s, struct access_conn *c)
{
	char *argv[REQ_MAX_ARGS + 4];
	char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL};
	int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	pid_t pid;

	argv[0] = (char *)s->cli_path;
	argv[1] = "--store";
	argv[2] = s->store->dir;
	for (int i = 0; i <= c->req.argc; i++)
		argv[3 + i] = c->req.argv[i];
	if (null_fd < 0)
		return -errno;
	pid = fork();
	if (pid == 0) {
		/* own session: killable as a group, out of the daemon's autogroup and nice */
		setsid();
		setpriority(PRIO_PROCESS, 0, 0);
		signal(SIGPIPE, SIG_DFL);
		/* stdin: what the caller opened itself, never a path we open as root */
		if (dup2(c->in_fd >= 0 ? c->in_fd : null_fd, 0) < 0 || dup2(c->out_fd, 1) < 0 ||
		    dup2(c->err_fd, 2) < 0)
			_exit(127);
		syscall(SYS_close_range, 3, ~0u, 0);
		execve(s->cli_path, argv, envp);
		_exit(127);
	}
	close(null_fd);
	return pid < 0 ? -errno : pid;
}

static void serve(struct access_server *s, struct access_conn *c)
{
	char why[256] = "", user[64], err[256] = "";
	const char *cmd = NULL;
	enum access_role needed = ROLE_NONE, role;
	struct roles roles;
	bool allowed, broken;
	pid_t pid;

	broken = roles_load(&roles, s->roles_path, err) != 0;
	if (broken)
		log_error("roles file %s: refusing every caller but root", err);
	role = roles_lookup(&roles, c->uid, c->gid, user, sizeof(user));
	roles_free(&roles);
	if (c->out_fd < 0 || c->err_fd < 0)
		snprintf(why, sizeof(why), "request without the caller's stdout and stderr");
	else if (!access_check_argv(c->req.argc, c->req.argv, &cmd, &needed, why))
		why[0] = 0;
	if (!why[0] && role == ROLE_NONE && broken)
		snprintf(why, sizeof(why),
			 "user %s (uid %u): the roles file %s is not valid (sealtraild's log says"
			 " why); only root has access until it is fixed",
			 user, (unsigned)c->uid, s->roles_path);
	else if (!why[0] && role == ROLE_NONE)
		snprintf(why, sizeof(why), "user %s (uid %u) has no sealtrail role; see %s", user,
			 (unsigned)c->uid, s->roles_path);
	else if (!why[0] && role < needed)
		snprintf(why, sizeof(why), "user %s (uid %u) is %s; `%s` needs the %s role; see %s",
			 user, (unsigned)c->uid,
			 role == ROLE_AUDITOR ? "an auditor" : access_role_name(role), cmd,
			 access_role_name(needed), s->roles_path);
	allowed = !why[0];
	if (!allowed && !deny_recordable(s, c, role)) {
		deny(c,
		     "sealtrail: %s (too many refused requests: this one is counted, not"
		     " recorded by itself)",
		     why);
		return;
	}
	log_info("access: %s (uid %u, pid %d, role %s) ran %s: %s%s%s", user, (unsigned)c->uid,
		 (int)c->pid, access_role_name(role), cmd ? cmd : "(refused request)",
		 allowed ? "allowed" : "denied", allowed ? "" : ": ", why);
	if (record_access(s, c, user, role, cmd, allowed, why)) {
		log_error("access: cannot record the request of %s (uid %u) in the store; refused",
			  user, (unsigned)c->uid);
		deny(c, "sealtrail: sealtraild cannot record this access in its store; refused");
		return;
	}
	if (!allowed) {
		deny(c, "sealtrail: %s", why);
		return;
	}
	pid = run_command(s, c);
	if (pid < 0) {
		log_error("access: cannot run %s: %s", s->cli_path, strerror(-pid));
		deny(c, "sealtrail: sealtraild cannot run the command: %s", strerror(-pid));
		return;
	}
	c->child = pid;
	/* the child holds the caller's descriptors now */
	close(c->out_fd);
	close(c->err_fd);
	if (c->in_fd >= 0)
		close(c->in_fd);
	c->out_fd = c->err_fd = c->in_fd = -1;
}

/* Read what there is of the request and the file descriptors passed with it. */
static void read_request(struct access_server *s, struct access_conn *c)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(MAX_PASSED_FDS * sizeof(int))];
	} ctl;
	uint8_t data[4096];
	struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	int r;

	for (;;) {
		ssize_t n;

		m.msg_control = ctl.b;
		m.msg_controllen = sizeof(ctl.b);
		n = recvmsg(c->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (clock_ns(CLOCK_MONOTONIC) > c->deadline_ns) {
				log_warn("access: caller pid %d (uid %u) sent no whole request"
					 " within 5 s; dropped",
					 (int)c->pid, (unsigned)c->uid);
				conn_close(c);
			}
			return;
		}
		if (n <= 0) {
			conn_close(c); /* gone before asking anything */
			return;
		}
		for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
			int fds[MAX_PASSED_FDS];
			size_t nfds;
			bool take;

			if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
				continue;
			nfds = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			memcpy(fds, CMSG_DATA(h), nfds * sizeof(int));
			/*
			 * exactly stdout and stderr, and maybe the command's stdin
			 * (a file the caller opened), once; anything else is closed
			 */
			take = (nfds == 2 || nfds == 3) && c->out_fd < 0;
			for (size_t i = 0; i < nfds; i++) {
				if (take && i == 0)
					c->out_fd = fds[i];
				else if (take && i == 1)
					c->err_fd = fds[i];
				else if (take && i == 2)
					c->in_fd = fds[i];
				else
					close(fds[i]);
			}
		}
		r = req_feed(&c->req, data, n);
		if (r < 0 && !deny_recordable(s, c, ROLE_NONE)) {
			req_free(&c->req);
			deny(c, "sealtrail: malformed request (too many refused requests: counted,"
				" not recorded by itself)");
			return;
		}
		if (r < 0) {
			log_warn("access: caller pid %d (uid %u): bad request: %s", (int)c->pid,
				 (unsigned)c->uid, c->req.err);
			/* a request that does not parse is recorded too, without arguments */
			req_free(&c->req);
			{
				char user[64];
				struct roles none = {0};
				enum access_role role =
				    roles_lookup(&none, c->uid, c->gid, user, sizeof(user));

				record_access(s, c, user, role, NULL, false, "malformed request");
			}
			deny(c, "sealtrail: malformed request");
			return;
		}
		if (r == 1) {
			serve(s, c);
			return;
		}
	}
}

static void accept_new(struct access_server *s)
{
	for (int i = 0; i < ACCESS_MAX_CONNS; i++) {
		struct access_conn *c = &s->conns[i];
		struct ucred cred;
		socklen_t len = sizeof(cred);
		int fd;

		if (c->fd >= 0)
			continue;
		fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return; /* EAGAIN: nobody waiting */
		memset(c, 0, sizeof(*c));
		c->fd = fd;
		c->out_fd = c->err_fd = c->in_fd = -1;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len)) {
			log_warn("access: SO_PEERCRED: %s; connection dropped", strerror(errno));
			conn_close(c);
			continue;
		}
		c->pid = cred.pid;
		c->uid = cred.uid;
		c->gid = cred.gid;
		c->deadline_ns = clock_ns(CLOCK_MONOTONIC) + REQUEST_TIMEOUT_NS;
		read_request(s, c);
	}
}

/* A command whose caller hung up (Ctrl-C on replay) is stopped. */
static void check_hangups(struct access_server *s)
{
	struct pollfd pfd[ACCESS_MAX_CONNS];
	int idx[ACCESS_MAX_CONNS], n = 0;

	for (int i = 0; i < ACCESS_MAX_CONNS; i++) {
		if (s->conns[i].fd < 0 || !s->conns[i].child)
			continue;
		pfd[n].fd = s->conns[i].fd;
		pfd[n].events = POLLRDHUP;
		idx[n++] = i;
	}
	if (n <= 0 || poll(pfd, n, 0) <= 0)
		return;
	for (int k = 0; k < n; k++)
		if (pfd[k].revents & (POLLRDHUP | POLLHUP | POLLERR))
			kill(-s->conns[idx[k]].child, SIGTERM);
}

void access_server_poll(struct access_server *s)
{
	if (s->listen_fd < 0)
		return;
	accept_new(s);
	flush_suppressed(s, false);
	for (int i = 0; i < ACCESS_MAX_CONNS; i++) {
		struct access_conn *c = &s->conns[i];
		int status;

		if (c->fd < 0)
			continue;
		if (!c->child) {
			read_request(s, c);
			continue;
		}
		if (waitpid(c->child, &status, WNOHANG) != c->child)
			continue;
		if (WIFSIGNALED(status))
			log_info("access: command of caller pid %d ended by signal %d", (int)c->pid,
				 WTERMSIG(status));
		reply(c, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	}
	check_hangups(s);
}

void access_server_close(struct access_server *s)
{
	struct stat sb;

	if (s->listen_fd < 0)
		return; /* never listened: no connections either */
	flush_suppressed(s, true);
	for (int i = 0; i < ACCESS_MAX_CONNS; i++) {
		struct access_conn *c = &s->conns[i];

		if (c->fd >= 0 && c->child) {
			kill(-c->child, SIGTERM);
			waitpid(c->child, NULL, 0);
		}
		if (c->fd >= 0)
			conn_close(c);
	}
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		/* only our own socket: another sealtraild may have replaced it */
		if (s->path && !stat(s->path, &sb) && sb.st_dev == s->dev && sb.st_ino == s->ino)
			unlink(s->path);
	}
	free(s->path);
	s->path = NULL;
	s->listen_fd = -1;
}
