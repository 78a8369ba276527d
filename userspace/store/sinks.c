/* Checkpoint sinks: file, command, syslog (sinks.h). */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "store/sinks.h"

extern char **environ;

/* <syslog.h> would clash with log.h's level names: LOG_AUTHPRIV | LOG_NOTICE */
#define SYSLOG_PRI (10 << 3 | 5)

int sinks_add_file(struct checkpoint_sinks *s, const char *path)
{
	pthread_condattr_t monotonic;
	struct sink_file *f;

	if (s->nfiles == SINKS_MAX)
		return -E2BIG;
	f = &s->files[s->nfiles++];
	*f = (struct sink_file){.path = path};

	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->wake, NULL);
	/* wait_file's deadline is CLOCK_MONOTONIC, as every deadline here */
	pthread_condattr_init(&monotonic);
	pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
	pthread_cond_init(&f->idle, &monotonic);
	pthread_condattr_destroy(&monotonic);
	return 0;
}

int sinks_add_command(struct checkpoint_sinks *s, const char *cmd)
{
	if (s->ncommands == SINKS_MAX)
		return -E2BIG;
	s->commands[s->ncommands++] = (struct sink_command){.cmd = cmd};
	return 0;
}

bool sinks_any(const struct checkpoint_sinks *s)
{
	return s->nfiles || s->ncommands || s->syslog;
}

static int write_note(int fd, const struct buf *note);

/*
 * On the sink's own thread, so it may block: a FIFO waits for its reader.
 * A FIFO or a character device cannot be fdatasync()ed (EINVAL): what it
 * was given is all there is to do.
 */
static int write_file(const char *path, uint32_t epoch, const struct buf *note)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0644), err = 0;

	if (fd < 0)
		err = -errno;
	else if ((err = write_note(fd, note)) == 0 && fdatasync(fd) && errno != EINVAL)
		err = -errno;
	if (fd >= 0)
		close(fd);
	if (err)
		log_warn("checkpoint sink %s: %s: the checkpoint of epoch %u stays only in the"
			 " store's checkpoints/latest",
			 path, strerror(-err), epoch);
	return err;
}

static void *file_thread(void *arg)
{
	struct sink_file *f = arg;
	struct buf note = {0};

	pthread_mutex_lock(&f->lock);
	for (;;) {
		struct buf taken;
		int err;

		while (!f->has_pending && !f->stop)
			pthread_cond_wait(&f->wake, &f->lock);
		if (!f->has_pending)
			break;
		/* swap: the loop's next note goes into the buffer just written */
		taken = f->pending;
		f->pending = note;
		note = taken;
		f->has_pending = false;
		f->writing_epoch = f->pending_epoch;
		f->busy_since_ns = clock_ns(CLOCK_MONOTONIC);
		pthread_mutex_unlock(&f->lock);
		err = write_file(f->path, f->writing_epoch, &note);
		pthread_mutex_lock(&f->lock);
		f->busy_since_ns = 0;
		if (err)
			f->failed++;
		else
			f->written++;
		pthread_cond_broadcast(&f->idle);
	}
	pthread_mutex_unlock(&f->lock);
	buf_free(&note);
	return NULL;
}

/* Hand the note to the file's thread; a note still waiting is replaced. */
static int send_file(struct sink_file *f, uint32_t epoch, const struct buf *note)
{
	int err = 0;

	pthread_mutex_lock(&f->lock);
	if (!f->started) {
		sigset_t all, old;

		/* signals are the event loop's to take */
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		err = -pthread_create(&f->thread, NULL, file_thread, f);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		f->started = !err;
	}
	if (!err && f->has_pending) {
		/* the newer checkpoint signs everything the older one does */
		f->superseded++;
		log_debug("checkpoint sink %s: the checkpoint of epoch %u replaced that of epoch"
			  " %u, which had not been written yet",
			  f->path, epoch, f->pending_epoch);
	}
	if (!err) {
		f->pending.len = 0;
		err = buf_add(&f->pending, note->data, note->len);
	}
	if (!err) {
		f->has_pending = true;
		f->pending_epoch = epoch;
		pthread_cond_signal(&f->wake);
	}
	pthread_mutex_unlock(&f->lock);
	if (err)
		log_warn("checkpoint sink %s: %s: the checkpoint of epoch %u stays only in the"
			 " store's checkpoints/latest",
			 f->path, strerror(-err), epoch);
	return err;
}

/* Say once per hang that a write has not returned, and when it does. */
static void poll_file(struct sink_file *f, uint64_t now, uint64_t stuck_ns)
{
	pthread_mutex_lock(&f->lock);
	if (f->busy_since_ns && now - f->busy_since_ns >= stuck_ns && !f->warned_stuck) {
		f->warned_stuck = true;
		log_warn("checkpoint sink %s: writing the checkpoint of epoch %u has not returned"
			 " for %llu s (a hung network mount, a FIFO nobody reads?); recording goes"
			 " on, and only the newest checkpoint waits for it",
			 f->path, f->writing_epoch,
			 (unsigned long long)((now - f->busy_since_ns) / 1000000000ull));
	} else if (!f->busy_since_ns && f->warned_stuck) {
		f->warned_stuck = false;
		log_info("checkpoint sink %s: writing again (%u checkpoints replaced by newer"
			 " ones so far)",
			 f->path, f->superseded);
	}
	pthread_mutex_unlock(&f->lock);
}

/* Wait until f has written what it was given, at most until deadline. */
static bool wait_file(struct sink_file *f, uint64_t deadline_ns)
{
	bool done;

	pthread_mutex_lock(&f->lock);
	for (;;) {
		struct timespec ts;
		uint64_t now = clock_ns(CLOCK_MONOTONIC);

		done = !f->has_pending && !f->busy_since_ns;
		if (done || now >= deadline_ns)
			break;
		ts.tv_sec = (time_t)(deadline_ns / 1000000000ull);
		ts.tv_nsec = (long)(deadline_ns % 1000000000ull);
		pthread_cond_timedwait(&f->idle, &f->lock, &ts);
	}
	pthread_mutex_unlock(&f->lock);
	return done;
}

int sinks_syslog_line(const uint8_t store_id[ST_ID_LEN], uint32_t epoch, uint64_t size,
		      const struct buf *note, struct buf *out)
{
	char idhex[ST_ID_HEX];
	size_t b64 = 4 * ((note->len + 2) / 3);
	int err;

	hex_encode(store_id, ST_ID_LEN, idhex);
	err = buf_addf(out, SINK_SYSLOG_TAG " store=%s epoch=%u size=%llu note=", idhex, epoch,
		       (unsigned long long)size);
	err = err ?: buf_reserve(out, b64 + 1);
	if (err)
		return err;
	EVP_EncodeBlock(out->data + out->len, note->data, note->len);
	out->len += b64;
	out->data[out->len] = 0;
	return 0;
}

/*
 * Not syslog(3): it drops a message silently when no logger listens and its
 * socket is fixed at /dev/log. Here a failure is reported, so the operator
 * learns that checkpoints do not leave the host, and tests can use their
 * own socket (SINK_SYSLOG_ENV). The format is what glibc sends.
 */
static int send_syslog(const uint8_t store_id[ST_ID_LEN], uint32_t epoch, uint64_t size,
		       const struct buf *note)
{
	const char *path = getenv(SINK_SYSLOG_ENV);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct buf msg = {0};
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	int fd = -1, err;

	if (!path || !*path)
		path = SINK_SYSLOG_PATH;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		err = -ENAMETOOLONG;
		goto out;
	}
	memcpy(sa.sun_path, path, strlen(path));
	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%b %e %T", &tm);
	err = buf_addf(&msg, "<%d>%s sealtraild[%d]: ", SYSLOG_PRI, stamp, (int)getpid());
	err = err ?: sinks_syslog_line(store_id, epoch, size, note, &msg);
	if (err)
		goto out;
	/* non-blocking: a logger that does not keep up must not stall recording */
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 ||
	    sendto(fd, msg.data, msg.len, MSG_NOSIGNAL, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		err = -errno;
out:
	if (err)
		log_warn("checkpoint sink syslog (%s): %s%s: the checkpoint of epoch %u stays only"
			 " in the store's checkpoints/latest",
			 path, strerror(-err),
			 err == -ENOENT || err == -ECONNREFUSED ? " (no system logger listening?)"
								: "",
			 epoch);
	if (fd >= 0)
		close(fd);
	buf_free(&msg);
	return err;
}

/* The daemon's environment and what the command may want to name its files. */
static char **command_env(const uint8_t store_id[ST_ID_LEN], uint32_t epoch, uint64_t size,
			  char extra[3][80])
{
	static const char *const names[] = {
	    "SEALTRAIL_STORE_ID=", "SEALTRAIL_EPOCH=", "SEALTRAIL_TREE_SIZE="};
	char idhex[ST_ID_HEX];
	size_t n = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + 4, sizeof(*env));
	if (!env)
		return NULL;
	hex_encode(store_id, ST_ID_LEN, idhex);
	snprintf(extra[0], 80, "%s%s", names[0], idhex);
	snprintf(extra[1], 80, "%s%u", names[1], epoch);
	snprintf(extra[2], 80, "%s%llu", names[2], (unsigned long long)size);
	for (size_t i = 0; i < n; i++) {
		bool ours = false;

		for (size_t j = 0; j < 3; j++)
			ours |= !strncmp(environ[i], names[j], strlen(names[j]));
		if (!ours)
			env[k++] = environ[i];
	}
	for (size_t j = 0; j < 3; j++)
		env[k++] = extra[j];
	return env;
}

/*
 * Without SIGPIPE, whoever calls us: the daemon ignores it, a test or
 * another program may not. A pipe has no MSG_NOSIGNAL: block the signal
 * for this thread and take back the one the write raised.
 */
static int write_note(int fd, const struct buf *note)
{
	static const struct timespec now = {0};
	sigset_t pipe_set, old;
	int err;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	err = write_all(fd, note->data, note->len);
	if (err == -EPIPE)
		sigtimedwait(&pipe_set, NULL, &now);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return err;
}

/*
 * posix_spawn, not fork: the daemon has threads, and a child in its own
 * process group, so that a timeout kills what the shell started too. The
 * pipe is the only descriptor it gets besides stdout and stderr (all of
 * the daemon's are O_CLOEXEC).
 */
static int start_command(struct checkpoint_sinks *s, struct sink_command *c,
			 const uint8_t store_id[ST_ID_LEN], uint32_t epoch, uint64_t size,
			 const struct buf *note)
{
	char *argv[] = {"sh", "-c", (char *)c->cmd, NULL}, extra[3][80], **env = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	short flags = POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
	sigset_t none, dflt;
	int pipefd[2], err;
	pid_t pid;

	if (c->nruns == SINK_COMMAND_RUNS) {
		if (c->has_pending)
			log_debug(
			    "checkpoint command `%s`: epoch %u's checkpoint replaces epoch %u's,"
			    " which was still waiting",
			    c->cmd, epoch, c->pending_epoch);
		else
			log_info("checkpoint command `%s`: %d runs still going; the checkpoint of"
				 " epoch %u waits for one to end",
				 c->cmd, SINK_COMMAND_RUNS, epoch);
		c->pending.len = 0;
		err = buf_add(&c->pending, note->data, note->len);
		if (err)
			return err;
		memcpy(c->pending_id, store_id, ST_ID_LEN);
		c->pending_epoch = epoch;
		c->pending_size = size;
		c->has_pending = true;
		return 0;
	}
	if (pipe2(pipefd, O_CLOEXEC)) {
		err = -errno;
		log_warn("checkpoint command `%s`: pipe: %s", c->cmd, strerror(errno));
		return err;
	}
	if (pipefd[0] == 0) {
		/* the daemon runs with stdin closed: dup2 onto itself would keep O_CLOEXEC */
		int fd = fcntl(pipefd[0], F_DUPFD_CLOEXEC, 3);

		close(pipefd[0]);
		pipefd[0] = fd;
		if (fd < 0) {
			close(pipefd[1]);
			return -EMFILE;
		}
	}
	env = command_env(store_id, epoch, size, extra);
	sigemptyset(&none);
	sigemptyset(&dflt);
	sigaddset(&dflt, SIGPIPE); /* ignored by the daemon; ignored signals are inherited */
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	err = posix_spawn_file_actions_adddup2(&fa, pipefd[0], 0);
	err = err ?: posix_spawnattr_setsigmask(&attr, &none);
	err = err ?: posix_spawnattr_setsigdefault(&attr, &dflt);
	err = err ?: posix_spawnattr_setpgroup(&attr, 0);
	err = err ?: posix_spawnattr_setflags(&attr, flags);
	err = err ?: (env ? 0 : ENOMEM);
	err = err ?: posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	free(env);
	close(pipefd[0]);
	if (err) {
		close(pipefd[1]);
		log_warn("checkpoint command `%s`: cannot start /bin/sh: %s; the checkpoint of"
			 " epoch %u stays only in the store's checkpoints/latest",
			 c->cmd, strerror(err), epoch);
		return -err;
	}
	/*
	 * A note is a few hundred bytes: less than PIPE_BUF, written at once
	 * into the empty pipe, never blocking. A command that exits without
	 * reading it (EPIPE) is judged by its exit status.
	 */
	fcntl(pipefd[1], F_SETFL, O_NONBLOCK);
	err = write_note(pipefd[1], note);
	if (err && err != -EPIPE)
		log_warn("checkpoint command `%s` (pid %d): writing the note: %s", c->cmd, (int)pid,
			 strerror(-err));
	close(pipefd[1]);
	c->runs[c->nruns++] = (struct sink_run){
	    .pid = pid,
	    .epoch = epoch,
	    .deadline_ns = clock_ns(CLOCK_MONOTONIC) +
			   (s->timeout_ns ? s->timeout_ns : SINK_COMMAND_TIMEOUT_NS),
	};
	log_debug("checkpoint command `%s`: pid %d started for epoch %u", c->cmd, (int)pid, epoch);
	return 0;
}

int sinks_send(struct checkpoint_sinks *s, const uint8_t store_id[ST_ID_LEN], uint32_t epoch,
	       uint64_t size, const struct buf *note)
{
	int failed = 0;

	sinks_poll(s); /* room for new runs, and a zombie less */
	for (unsigned i = 0; i < s->nfiles; i++)
		failed += send_file(&s->files[i], epoch, note) != 0;
	for (unsigned i = 0; i < s->ncommands; i++)
		failed += start_command(s, &s->commands[i], store_id, epoch, size, note) != 0;
	if (s->syslog)
		failed += send_syslog(store_id, epoch, size, note) != 0;
	return failed;
}

static void run_done(struct sink_command *c, unsigned i, int status, bool known)
{
	struct sink_run *r = &c->runs[i];

	if (r->killed)
		log_warn("checkpoint command `%s` (pid %d) still ran at its timeout: killed; the"
			 " checkpoint of epoch %u may not have reached it",
			 c->cmd, (int)r->pid, r->epoch);
	else if (!known)
		log_warn("checkpoint command `%s` (pid %d): exit status unknown (reaped elsewhere)",
			 c->cmd, (int)r->pid);
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		log_debug("checkpoint command `%s` (pid %d): epoch %u delivered", c->cmd,
			  (int)r->pid, r->epoch);
	else if (WIFEXITED(status))
		log_warn("checkpoint command `%s` (pid %d) exited with status %d: the checkpoint of"
			 " epoch %u may not have reached it",
			 c->cmd, (int)r->pid, WEXITSTATUS(status), r->epoch);
	else
		log_warn("checkpoint command `%s` (pid %d) killed by signal %d: the checkpoint of"
			 " epoch %u may not have reached it",
			 c->cmd, (int)r->pid, WIFSIGNALED(status) ? WTERMSIG(status) : 0, r->epoch);
	c->runs[i] = c->runs[--c->nruns];
}

void sinks_poll(struct checkpoint_sinks *s)
{
	uint64_t now = clock_ns(CLOCK_MONOTONIC);

	for (unsigned i = 0; i < s->nfiles; i++)
		poll_file(&s->files[i], now, s->stuck_ns ? s->stuck_ns : SINK_FILE_STUCK_NS);
	for (unsigned k = 0; k < s->ncommands; k++) {
		struct sink_command *c = &s->commands[k];

		for (unsigned i = 0; i < c->nruns;) {
			struct sink_run *r = &c->runs[i];
			int status = 0;
			pid_t got = waitpid(r->pid, &status, WNOHANG);

			if (got == r->pid || (got < 0 && errno == ECHILD)) {
				run_done(c, i, status, got == r->pid);
				continue; /* run i is now another run */
			}
			if (!r->killed && now >= r->deadline_ns) {
				/* the process group: what the shell started goes too */
				kill(-r->pid, SIGKILL);
				r->killed = true;
			}
			i++;
		}
		if (c->has_pending && c->nruns < SINK_COMMAND_RUNS) {
			c->has_pending = false;
			start_command(s, c, c->pending_id, c->pending_epoch, c->pending_size,
				      &c->pending);
		}
	}
}

void sinks_drain(struct checkpoint_sinks *s)
{
	uint64_t deadline =
	    clock_ns(CLOCK_MONOTONIC) + (s->timeout_ns ? s->timeout_ns : SINK_COMMAND_TIMEOUT_NS);

	for (unsigned i = 0; i < s->nfiles; i++)
		if (s->files[i].started && !wait_file(&s->files[i], deadline))
			log_warn("checkpoint sink %s: still writing at shutdown: the last"
				 " checkpoint may not have reached it",
				 s->files[i].path);
	for (;;) {
		uint64_t last_deadline = 0;
		unsigned left = 0;
		bool pending = false;

		sinks_poll(s);
		for (unsigned k = 0; k < s->ncommands; k++) {
			struct sink_command *c = &s->commands[k];

			left += c->nruns;
			pending |= c->has_pending;
			for (unsigned i = 0; i < c->nruns; i++)
				if (c->runs[i].deadline_ns > last_deadline)
					last_deadline = c->runs[i].deadline_ns;
		}
		if (!left && !pending)
			return;
		/* killed at their deadline; a second more to be reaped */
		if (!pending && clock_ns(CLOCK_MONOTONIC) > last_deadline + 1000000000ull) {
			log_warn("checkpoint commands: %u runs did not end even when killed", left);
			return;
		}
		usleep(20000);
	}
}

void sinks_free(struct checkpoint_sinks *s)
{
	for (unsigned i = 0; i < s->nfiles; i++) {
		struct sink_file *f = &s->files[i];
		bool hung;

		if (!f->started)
			continue;
		pthread_mutex_lock(&f->lock);
		f->stop = true;
		f->has_pending = false; /* drained already: what is left goes */
		hung = f->busy_since_ns != 0;
		pthread_cond_signal(&f->wake);
		pthread_mutex_unlock(&f->lock);
		if (hung) {
			/* blocked in the kernel: it may still use its note; exit takes it */
			pthread_detach(f->thread);
			continue;
		}
		pthread_join(f->thread, NULL);
		buf_free(&f->pending);
		f->started = false;
	}
	for (unsigned k = 0; k < s->ncommands; k++)
		buf_free(&s->commands[k].pending);
}
