/*
 * Session state in the collector (tracker.h).
 *
 * A session starts when an sshd listener forks a connection handler (the
 * kernel sees the fork) or when we adopt a handler found in /proc. Until
 * the login is authenticated (a program other than sshd runs, or the pty
 * carries bytes) its records are held in memory: port scans and failed
 * logins never reach the store. The person is the audit loginuid when
 * pam_loginuid set it, otherwise the uid of the first program sshd starts
 * for the login; both survive sudo and su because later changes are
 * ignored.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pwd.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "session/procfs.h"
#include "session/session.h"
#include "session/tracker.h"

static uint64_t wall_of(const struct tracker *t, uint64_t boot_ns)
{
	return (uint64_t)((int64_t)boot_ns + t->wall_offset_ns);
}

static void update_wall_offset(struct tracker *t)
{
	t->wall_offset_ns = (int64_t)(clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_BOOTTIME));
}

static bool is_sshd(const struct tracker *t, const char *path)
{
	for (unsigned i = 0; i < t->nsshd; i++)
		if (!strcmp(path, t->sshd_paths[i]))
			return true;
	return false;
}

static bool is_sshd_exe(const char *path, void *t)
{
	return is_sshd(t, path);
}

struct session *session_find(struct tracker *t, uint64_t key)
{
	for (struct session *s = t->sessions; s; s = s->next)
		if (s->key == key)
			return s;
	return NULL;
}

static struct session *new_session(struct tracker *t, uint64_t key, uint32_t leader,
				   uint64_t start_boot_ns)
{
	struct session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->key = key;
	s->leader = leader;
	s->start_boot_ns = start_boot_ns;
	s->last_event_ns = start_boot_ns;
	s->tty = -1;
	s->loginuid = s->uid = NO_UID;
	s->sshd_pids[s->nsshd++] = leader;
	if (RAND_bytes(s->id, ST_ID_LEN) != 1) {
		free(s);
		return NULL;
	}
	hex_encode(s->id, ST_ID_LEN, s->idhex);
	s->have_addr = procfs_tcp_conn(leader, &s->addr) == 0;
	s->next = t->sessions;
	t->sessions = s;
	t->live++;
	return s;
}

static void free_session(struct session *s)
{
	for (unsigned i = 0; i < STREAM_MAX; i++)
		EVP_MD_CTX_free(s->pipes[i].sha);
	buf_free(&s->held);
	free(s->command);
	while (s->files) {
		struct xfer_file *f = s->files;

		s->files = f->next;
		free(f);
	}
	free(s->xfer_index);
	for (unsigned i = 0; i < s->npending; i++)
		buf_free(&s->pending[i]);
	chunks_free(s);
	free(s);
}

int session_begin(struct tracker *t, struct session *s, uint16_t type, uint64_t boot_ns)
{
	int err = s ? chunk_flush(t, s) : 0; /* the session's earlier bytes go first */

	if (err)
		return err;
	return rec_begin(&t->rec, type, s ? s->id : NULL, wall_of(t, boot_ns), boot_ns);
}

static int emit(struct tracker *t, struct session *s, bool now)
{
	int err;

	if (s && !s->materialized) {
		if (s->npending == PENDING_MAX) {
			s->pending_dropped++;
			return 0;
		}
		return buf_add(&s->pending[s->npending++], t->rec.data, t->rec.len);
	}
	err = now ? store_append_now(t->store, &t->rec) : store_append(t->store, &t->rec);
	if (err)
		log_error("session %s: cannot store a record: %s", s ? s->idhex : "-",
			  strerror(-err));
	else
		t->records++;
	return err;
}

/* Append the record in t->rec, or hold it until the login is authenticated. */
int session_emit(struct tracker *t, struct session *s)
{
	return emit(t, s, false);
}

static void person_name(uint32_t uid, char *out, size_t size)
{
	struct passwd pw, *res = NULL;
	char tmp[1024];

	if (getpwuid_r(uid, &pw, tmp, sizeof(tmp), &res) == 0 && res)
		snprintf(out, size, "%s", pw.pw_name);
	else
		snprintf(out, size, "%u", uid);
}

static int add_person(struct tracker *t, const struct session *s)
{
	char user[256];
	int err = 0;

	if (s->loginuid == NO_UID && s->uid == NO_UID)
		return 0;
	person_name(s->loginuid != NO_UID ? s->loginuid : s->uid, user, sizeof(user));
	err = rec_add_str(&t->rec, TAG_USER, user);
	if (s->loginuid != NO_UID)
		err = err ?: rec_add_u64(&t->rec, TAG_LOGINUID, s->loginuid);
	if (s->uid != NO_UID)
		err = err ?: rec_add_u64(&t->rec, TAG_UID, s->uid);
	return err;
}

/*
 * Learn who logged in from a process of the session: the audit loginuid
 * (pam_loginuid) as soon as any process carries it, and the login uid from
 * the first program sshd starts as the user (not root helpers that PAM runs
 * with the loginuid already set). Later changes (sudo, su) are ignored.
 */
static bool learn_person(struct tracker *t, struct session *s, const char *exe, uint32_t loginuid,
			 uint32_t uid)
{
	bool changed = false;

	if (s->loginuid == NO_UID && loginuid != NO_UID) {
		s->loginuid = loginuid;
		changed = true;
	}
	if (s->uid == NO_UID && !is_sshd(t, exe) && (loginuid == NO_UID || uid == loginuid)) {
		s->uid = uid;
		changed = true;
	}
	return changed;
}

static int add_tty(struct tracker *t, const struct session *s)
{
	char tty[32];

	if (s->tty < 0)
		return 0;
	snprintf(tty, sizeof(tty), "pts/%d", s->tty);
	return rec_add_str(&t->rec, TAG_TTY, tty);
}

/* The login is real: write its start, then what was held back. */
int session_materialize(struct tracker *t, struct session *s)
{
	int err;

	if (s->materialized)
		return 0;
	/*
	 * Ended before its login was authenticated: it is forgotten, whatever
	 * its processes still do (their records are held, then dropped with
	 * it). Made real now, it would be a login without an end.
	 */
	if (s->ended)
		return 0;
	s->materialized = true;
	t->sessions_total++;
	/* the connection, if it could not be read when the session started */
	if (!s->have_addr)
		s->have_addr = procfs_tcp_conn(s->leader, &s->addr) == 0;
	err = session_begin(t, s, REC_SESSION_START, s->start_boot_ns);
	err = err ?: rec_add_str(&t->rec, TAG_HOST, t->host);
	err = err ?: rec_add_str(&t->rec, TAG_BOOT_ID, t->boot_id);
	err = err ?: rec_add_u64(&t->rec, TAG_LEADER_PID, s->leader);
	err = err ?: rec_add_u64(&t->rec, TAG_LISTENER_PID, s->listener);
	err = err ?: rec_add_u64(&t->rec, TAG_ADOPTED, s->adopted);
	if (s->have_addr) {
		err = err ?: rec_add_str(&t->rec, TAG_SOURCE_IP, s->addr.source_ip);
		err = err ?: rec_add_u64(&t->rec, TAG_SOURCE_PORT, s->addr.source_port);
		err = err ?: rec_add_str(&t->rec, TAG_LOCAL_IP, s->addr.local_ip);
		err = err ?: rec_add_u64(&t->rec, TAG_LOCAL_PORT, s->addr.local_port);
	}
	err = err ?: add_person(t, s);
	err = err ?: add_tty(t, s);
	if (s->kind)
		err = err ?: rec_add_str(&t->rec, TAG_KIND, s->kind);
	if (s->command)
		err = err ?: rec_add_str(&t->rec, TAG_COMMAND, s->command);
	if (s->term[0])
		err = err ?: rec_add_str(&t->rec, TAG_TERM, s->term);
	/*
	 * Sealed at once, ahead of any backlog (nothing of the session can
	 * be there before its start): a crash must not lose the login itself,
	 * or the next start could not mark what it lost.
	 */
	err = err ?: emit(t, s, true);
	for (unsigned i = 0; i < s->npending; i++) {
		if (!err) {
			buf_free(&t->rec);
			t->rec = s->pending[i];
			s->pending[i] = (struct buf){0};
			err = session_emit(t, s);
		}
		buf_free(&s->pending[i]);
	}
	s->npending = 0;
	if (!err && s->pending_dropped) {
		err = session_begin(t, s, REC_GAP, s->start_boot_ns);
		err = err ?: rec_add_u64(&t->rec, TAG_LOST_EVENTS, s->pending_dropped);
		err = err ?: rec_add_str(&t->rec, TAG_REASON, "too many events before login");
		err = err ?: session_emit(t, s);
	}
	log_info("session %s: %s login (leader pid %u, from %s:%u)", s->idhex,
		 s->adopted ? "adopted" : "new", s->leader, s->have_addr ? s->addr.source_ip : "?",
		 s->have_addr ? s->addr.source_port : 0);
	return err;
}

int session_write_attrs(struct tracker *t, struct session *s, uint64_t boot_ns, bool person,
			bool tty)
{
	int err;

	if (!s->materialized)
		return 0;
	err = session_begin(t, s, REC_SESSION_ATTR, boot_ns);
	err = err ?: (person ? add_person(t, s) : 0);
	err = err ?: (tty ? add_tty(t, s) : 0);
	return err ?: session_emit(t, s);
}

/* What kind of login: decided by the program sshd starts as the user. */
int session_set_kind(struct tracker *t, struct session *s, const char *kind, const char *command,
		     uint64_t boot_ns)
{
	int err;

	if (s->kind == kind)
		return 0;
	s->kind = kind;
	if (command && !s->command)
		s->command = strdup(command);
	if (!s->materialized)
		return 0; /* the start record will carry it */
	err = session_begin(t, s, REC_SESSION_ATTR, boot_ns);
	err = err ?: rec_add_str(&t->rec, TAG_KIND, kind);
	if (command)
		err = err ?: rec_add_str(&t->rec, TAG_COMMAND, command);
	return err ?: session_emit(t, s);
}

int session_set_term(struct tracker *t, struct session *s, uint64_t boot_ns)
{
	int err;

	if (!s->materialized || !s->term[0])
		return 0; /* the start record will carry it */
	err = session_begin(t, s, REC_SESSION_ATTR, boot_ns);
	err = err ?: rec_add_str(&t->rec, TAG_TERM, s->term);
	return err ?: session_emit(t, s);
}

static bool is_subsystem(const struct tracker *t, const char *path, const char *command)
{
	for (unsigned i = 0; i < t->nsubsystems; i++)
		if (!strcmp(path, t->subsystems[i]) ||
		    (command && !strcmp(command, t->subsystems[i])))
			return true;
	return false;
}

/* Turn growth of the kernel's per-session loss counters into a gap record. */
static int check_losses(struct tracker *t, struct session *s, const struct st_session *ks,
			uint64_t boot_ns)
{
	uint64_t events = ks->lost_events - s->lost_events_seen;
	uint64_t bytes = ks->lost_bytes - s->lost_bytes_seen;
	int err;

	if (ks->lost_events <= s->lost_events_seen)
		return 0;
	s->lost_events_seen = ks->lost_events;
	s->lost_bytes_seen = ks->lost_bytes;
	log_warn("session %s: ring buffer full, %llu events (%llu terminal bytes) lost;"
		 " raise --ringbuf-size if this repeats",
		 s->idhex, (unsigned long long)events, (unsigned long long)bytes);
	err = session_begin(t, s, REC_GAP, boot_ns);
	err = err ?: rec_add_u64(&t->rec, TAG_LOST_EVENTS, events);
	err = err ?: rec_add_u64(&t->rec, TAG_LOST_BYTES, bytes);
	err = err ?: rec_add_str(&t->rec, TAG_REASON, "ring buffer full");
	return err ?: session_emit(t, s);
}

static bool sshd_has(const struct session *s, uint32_t pid)
{
	for (unsigned i = 0; i < s->nsshd; i++)
		if (s->sshd_pids[i] == pid)
			return true;
	return false;
}

static bool sshd_remove(struct session *s, uint32_t pid)
{
	for (unsigned i = 0; i < s->nsshd; i++) {
		if (s->sshd_pids[i] == pid) {
			s->sshd_pids[i] = s->sshd_pids[--s->nsshd];
			return true;
		}
	}
	return false;
}

static void sshd_add(struct session *s, uint32_t pid)
{
	if (s->nsshd < sizeof(s->sshd_pids) / sizeof(s->sshd_pids[0]))
		s->sshd_pids[s->nsshd++] = pid;
}

static bool sshd_all_gone(const struct session *s)
{
	for (unsigned i = 0; i < s->nsshd; i++)
		if (kill(s->sshd_pids[i], 0) == 0 || errno != ESRCH)
			return false;
	return true;
}

static int end_session(struct tracker *t, struct session *s, uint64_t boot_ns, int status,
		       const char *reason)
{
	struct st_session ks;
	char why[128];
	int err = 0;

	if (s->ended)
		return 0;
	s->ended = true;
	t->live--;
	if (capture_get_session(t->cap, s->key, &ks) == 0)
		err = check_losses(t, s, &ks, boot_ns);
	capture_delete_session(t->cap, s->key);
	if (!s->materialized) {
		t->preauth_dropped++;
		s->forget = true; /* never authenticated: forget it at the next tick */
		return 0;
	}
	if (!reason) {
		/* sshd's exit status says little (255 after a plain logout too) */
		if (WIFSIGNALED(status))
			snprintf(why, sizeof(why), "sshd killed by signal %d", WTERMSIG(status));
		else if (s->killed_sshd)
			snprintf(why, sizeof(why), "sshd killed by signal %d", s->killed_signal);
		else if (s->shell_exited && !WIFSIGNALED(s->shell_status))
			snprintf(why, sizeof(why), "logout");
		else
			snprintf(why, sizeof(why),
				 "connection closed while the session ran (sshd exit status %d)",
				 WEXITSTATUS(status));
		reason = why;
	}
	err = err ?: pipes_end(t, s, boot_ns);
	s->end_status = status;
	s->end_boot_ns = boot_ns;
	snprintf(s->end_reason, sizeof(s->end_reason), "%s", reason);
	/*
	 * File records go before the end record, with their hashes; a large
	 * upload takes seconds to hash, and the ring buffer must not wait for
	 * it: the end is written when the hashes are (tracker_files_done()).
	 */
	if (s->transfer || s->files || s->hashing) {
		transfer_hash_closed(t, s, 0);
		err = err ?: tracker_files_done(t, false);
		if (s->hashing) {
			s->end_waits = true;
			s->end_waits_since = clock_ns(CLOCK_MONOTONIC);
			log_debug("session %s: ended; its end waits for %u file hashes", s->idhex,
				  s->hashing);
			return err;
		}
	}
	return end_session_finish(t, s) ?: err;
}

/* session.h */
int end_session_finish(struct tracker *t, struct session *s)
{
	uint64_t boot_ns = s->end_boot_ns;
	int err, end;

	s->end_waits = false;
	err = transfer_files_dropped(t, s, boot_ns);
	while (!err && s->nchannels) {
		struct st_relay r = {0};
		uint64_t id = s->channels[0];

		capture_get_relay(t->cap, id, &r);
		err = channel_close(t, s, id, r.bytes_sent, r.bytes_recv, boot_ns, "session ended");
	}
	if (!err && !s->kind)
		err = session_set_kind(t, s, KIND_FORWARD, NULL, boot_ns);
	/* whatever failed before (logged): the session is over, and says so */
	end = session_begin(t, s, REC_SESSION_END, boot_ns);
	end = end ?: rec_add_str(&t->rec, TAG_REASON, s->end_reason);
	end = end ?: rec_add_u64(&t->rec, TAG_STATUS, (uint32_t)s->end_status);
	end = end ?: session_emit(t, s);
	t->ends_pending++; /* synced and signed by tracker_settle() */
	log_info("session %s: ended: %s", s->idhex, s->end_reason);
	return err ?: end;
}

/*
 * A session's end closes the signing epoch, so its records get signed and
 * its checkpoint leaves the host; the daemon calls this at the tick after
 * (at most 200 ms), so sessions that ended within one tick share one sync
 * and one epoch, or 100 logouts would stall the drain for 100 fsyncs while
 * the ring fills up.
 */
int tracker_settle(struct tracker *t)
{
	int err;

	if (!t->ends_pending)
		return 0;
	t->ends_pending = 0;
	/* the epoch's close syncs its records; if it fails, sync them anyway */
	err = store_seal_epoch(t->store, "session end");
	return err ? store_sync(t->store) ?: err : 0;
}

static struct session *session_for_event(struct tracker *t, const struct st_event_hdr *h)
{
	struct session *s = session_find(t, h->sess_key);
	struct st_session ks;

	if (s || h->type == ST_EV_SESSION_END)
		return s;
	/* its start event was lost (ring buffer full): learn the leader from the map */
	if (capture_get_session(t->cap, h->sess_key, &ks))
		return NULL;
	s = new_session(t, h->sess_key, ks.leader_pid, h->ts_ns);
	return s;
}

/* `ssh host cmd` runs the user's shell as SHELL -c cmd: cmd, or NULL. */
static const char *shell_command(const struct st_ev_exec *ev)
{
	const char *a1, *cmd, *end = ev->args + ev->args_len;

	a1 = memchr(ev->args, 0, ev->args_len);
	if (!a1 || ++a1 >= end || strncmp(a1, "-c", end - a1) || !(cmd = memchr(a1, 0, end - a1)) ||
	    ++cmd >= end || !memchr(cmd, 0, end - cmd))
		return NULL;
	return cmd;
}

/* What sshd runs as the user before the login itself: xauth, ~/.ssh/rc, sshrc. */
static bool is_login_helper(const char *cmd)
{
	return cmd && (strstr(cmd, "xauth") == cmd || strstr(cmd, "/xauth ") ||
		       strstr(cmd, ".ssh/rc") || strstr(cmd, "/etc/ssh/sshrc"));
}

/* Is pid running the program at path (the same file, whatever its name)? */
static bool runs_file(uint32_t pid, const char *path)
{
	struct stat a, b;
	char exe[64];

	snprintf(exe, sizeof(exe), "/proc/%u/exe", pid);
	return !stat(path, &a) && !stat(exe, &b) && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

/*
 * The environment the login shell started with, copied by the kernel at its
 * exec (struct st_ev_env): TERM, as sshd set it from the client's request.
 * Its bytes may have made the session a stored one already: then an
 * attribute record carries it.
 */
static int on_env(struct tracker *t, struct session *s, const struct st_ev_env *ev, size_t size)
{
	size_t head = offsetof(struct st_ev_env, env);

	if (size < head || size > sizeof(*ev) || ev->env_len != size - head ||
	    ev->hdr.pid != s->shell_pid || s->term[0])
		return 0;
	if (!procfs_env_find(ev->env, ev->env_len, "TERM", s->term, sizeof(s->term)))
		return 0;
	return session_set_term(t, s, ev->hdr.ts_ns);
}

static int on_exec(struct tracker *t, struct session *s, const struct st_ev_exec *ev, size_t size)
{
	size_t head = offsetof(struct st_ev_exec, args);
	bool person, helper;
	char path[ST_PATH_MAX + 1], cwd[ST_DIR_BYTES + 64];
	const char *cmd;
	int err;

	/* larger than the struct: args[] would be indexed past its end */
	if (size < head || size > sizeof(*ev) || ev->args_len > size - head)
		return -EBADMSG;
	memcpy(path, ev->filename, ST_PATH_MAX);
	path[ST_PATH_MAX] = 0;
	person = learn_person(t, s, path, ev->loginuid, ev->uid);
	err = 0;
	cmd = shell_command(ev);
	helper = (ev->flags & ST_EXEC_FROM_SSHD) && is_login_helper(cmd);
	/*
	 * The login shell (or command) is the first program sshd starts as the
	 * user, not PAM's root helpers nor xauth or ~/.ssh/rc before it.
	 */
	if (!s->shell_pid && s->uid != NO_UID && ev->uid == s->uid && !helper &&
	    !is_sshd(t, path) && (ev->flags & ST_EXEC_FROM_SSHD || s->adopted)) {
		s->shell_pid = ev->hdr.pid;
		if (ev->flags & ST_EXEC_STDIN_TTY) {
			/* its TERM comes next, in an ST_EV_ENV (on_env()) */
			err = session_set_kind(t, s, KIND_SHELL, cmd, ev->hdr.ts_ns);
		} else if (is_subsystem(t, path, cmd)) {
			s->transfer = true;
			err = session_set_kind(t, s, KIND_SUBSYSTEM, cmd, ev->hdr.ts_ns);
		} else {
			/* scp -t/-f and rsync --server move files: summarise those */
			s->transfer = cmd && (!strncmp(cmd, "scp ", 4) ||
					      !strncmp(cmd, "rsync --server", 14));
			err = session_set_kind(t, s, KIND_EXEC, cmd, ev->hdr.ts_ns);
		}
	}
	if (!is_sshd(t, path))
		sshd_remove(s, ev->hdr.pid);
	if (!s->materialized && !is_sshd(t, path))
		err = err ?: session_materialize(t, s);
	else if (person)
		err = err ?: session_write_attrs(t, s, ev->hdr.ts_ns, true, false);

	err = err ?: session_begin(t, s, REC_EXEC, ev->hdr.ts_ns);
	err = err ?: rec_add_u64(&t->rec, TAG_PID, ev->hdr.pid);
	err = err ?: rec_add_u64(&t->rec, TAG_PPID, ev->ppid);
	err = err ?: rec_add_u64(&t->rec, TAG_UID, ev->uid);
	err = err ?: rec_add_u64(&t->rec, TAG_EUID, ev->euid);
	err = err ?: rec_add_u64(&t->rec, TAG_GID, ev->gid);
	err = err ?: rec_add_u64(&t->rec, TAG_LOGINUID, ev->loginuid);
	err = err ?: rec_add_u64(&t->rec, TAG_SESSIONID, ev->sessionid);
	err = err ?: rec_add_str(&t->rec, TAG_FILENAME, path);
	/*
	 * Where the program started, as the kernel walked it at the exec, or
	 * nothing: /proc's link, read now, could name where the process has
	 * moved since, or another process with its pid.
	 */
	if (kernel_path(ev->cwd, ev->cwd_len, ev->cwd_flags, NULL, cwd, sizeof(cwd)))
		err = err ?: rec_add_str(&t->rec, TAG_CWD, cwd);
	err = err ?: rec_add_bytes(&t->rec, TAG_ARGV, ev->args, ev->args_len);
	err = err ?: rec_add_u64(&t->rec, TAG_ARGV_TOTAL, ev->args_total);
	err = err
		  ?: rec_add_u64(&t->rec, TAG_ARGV_TRUNCATED,
				 ev->flags & (ST_EXEC_ARGS_TRUNCATED | ST_EXEC_READ_FAILED));
	if (!err && (ev->flags & ST_EXEC_ARGS_TRUNCATED))
		log_info(
		    "session %s: pid %u: argv of %u bytes truncated to %u (flagged in the record)",
		    s->idhex, ev->hdr.pid, ev->args_total, ev->args_len);
	err = err ?: session_emit(t, s);
	if (!err && ev->hdr.pid == s->shell_pid && (ev->flags & ST_EXEC_FROM_SSHD))
		err = pipes_tie(t, s, ev->stdio, ev->flags & ST_EXEC_PIPES_COUNTED, ev->hdr.ts_ns);
	return err;
}

/*
 * OpenSSH's internal-sftp started (events.h, struct st_ev_sftp): a forked
 * sshd serves SFTP in-process, so no exec names the login's program. It is
 * the login's program all the same, as an exec'd sftp-server would be, and
 * the kernel already treats it as a transfer program: its files come as
 * ST_EV_FILE_* events and its stdio is counted.
 */
static int on_internal_sftp(struct tracker *t, struct session *s, const struct st_ev_sftp *ev)
{
	bool person = learn_person(t, s, INTERNAL_SFTP, ev->loginuid, ev->uid);
	bool login = !s->shell_pid;
	int err = 0;

	if (login) {
		s->shell_pid = ev->hdr.pid;
		s->transfer = true;
		err = session_set_kind(
		    t, s, is_subsystem(t, INTERNAL_SFTP, NULL) ? KIND_SUBSYSTEM : KIND_EXEC,
		    INTERNAL_SFTP, ev->hdr.ts_ns);
	}
	sshd_remove(s, ev->hdr.pid); /* it serves files now, not the connection */
	if (!s->materialized)
		err = err ?: session_materialize(t, s);
	else if (person)
		err = err ?: session_write_attrs(t, s, ev->hdr.ts_ns, true, false);
	log_debug("session %s: pid %u (forked by sshd %u) serves internal-sftp, version %u",
		  s->idhex, ev->hdr.pid, ev->ppid, ev->version);
	if (!err && login)
		err = pipes_tie(t, s, ev->stdio, true, ev->hdr.ts_ns);
	return err;
}

/* Person of a login that runs no program (ssh -N): its sshd runs as the user. */
void session_learn_person_from_proc(struct tracker *t, struct session *s, uint32_t pid)
{
	struct proc_info p;

	if (procfs_read(pid, &p) || p.uid == 0 || p.uid == t->privsep_uid)
		return;
	if (s->loginuid == NO_UID)
		s->loginuid = p.loginuid;
	if (s->uid == NO_UID)
		s->uid = p.uid;
}

static int on_tty(struct tracker *t, struct session *s, const struct st_ev_tty *ev, size_t size)
{
	size_t head = offsetof(struct st_ev_tty, data);
	int err = 0;

	if (size < head || ev->len > size - head || ev->len > ST_TTY_CHUNK ||
	    ev->dir > ST_PIPE_UNKNOWN || ev->dir == ST_FORWARD)
		return -EBADMSG;
	if (ev->dir == ST_PIPE_UNKNOWN) {
		int stream = pipe_stream_of(s, ev->object);

		return stream >= 0
			   ? pipe_bytes(t, s, stream, ev->hdr.pid, ev->hdr.ts_ns, ev->data, ev->len)
			   : pipe_hold(t, s, ev);
	}
	if (ev->dir >= ST_PIPE_STDIN)
		return pipe_bytes(t, s, ev->dir, ev->hdr.pid, ev->hdr.ts_ns, ev->data, ev->len);
	/* the login's pty is the one sshd relays; sudo, tmux or script open others */
	if (s->tty < 0 && sshd_has(s, ev->hdr.pid)) {
		s->tty = ev->tty_index;
		err = s->materialized ? session_write_attrs(t, s, ev->hdr.ts_ns, false, true) : 0;
	}
	err = err ?: session_materialize(t, s);
	return err
		   ?: chunk_add(t, s, ev->dir == ST_TTY_IN ? STREAM_IN : STREAM_OUT,
				(int)ev->tty_index, ev->hdr.pid,
				/* the size goes with the output, what a player shows */
				ev->dir == ST_TTY_OUT ? (uint32_t)ev->rows << 16 | ev->cols : 0,
				ev->hdr.ts_ns, ev->data, ev->len);
}

static int handle_event(void *arg, void *data, size_t size)
{
	struct tracker *t = arg;
	const struct st_event_hdr *h = data;
	struct session *s;
	int err = 0, status;

	if (size < sizeof(*h) || h->size != size) {
		t->bad_events++;
		log_warn(
		    "ring buffer: malformed event of %zu bytes (type %u, says %u bytes) ignored",
		    size, size >= sizeof(*h) ? h->type : 0, size >= sizeof(*h) ? h->size : 0);
		return 0;
	}
	if (h->type == ST_EV_SESSION_START) {
		const struct st_ev_session *ev = data;

		if (size != sizeof(*ev) || session_find(t, h->sess_key))
			return 0;
		s = new_session(t, h->sess_key, h->pid, h->ts_ns);
		if (s)
			s->listener = ev->listener_pid;
		return 0;
	}
	s = session_for_event(t, h);
	if (!s)
		return 0; /* a session we already forgot: its processes outlived it by an hour */
	s->last_event_ns = h->ts_ns;
	switch (h->type) {
	case ST_EV_SESSION_END:
		if (size != sizeof(struct st_ev_session))
			return 0;
		s->leader_exited = true;
		s->leader_status = ((const struct st_ev_session *)data)->exit_code;
		sshd_remove(s, s->leader);
		if (!s->nsshd)
			err = end_session(t, s, h->ts_ns, s->leader_status, NULL);
		break;
	case ST_EV_EXEC:
		err = on_exec(t, s, data, size);
		break;
	case ST_EV_TTY:
		err = on_tty(t, s, data, size);
		break;
	case ST_EV_ENV:
		err = on_env(t, s, data, size);
		break;
	case ST_EV_INTERNAL_SFTP:
		if (size != sizeof(struct st_ev_sftp))
			return 0;
		err = on_internal_sftp(t, s, data);
		break;
	case ST_EV_FILE_OPEN:
	case ST_EV_FILE_CLOSE:
	case ST_EV_FILE_RENAME:
		if (size != sizeof(struct st_ev_file))
			return 0;
		err = transfer_file_event(t, s, data);
		break;
	case ST_EV_CONNECT:
		if (size != sizeof(struct st_ev_connect))
			return 0;
		err = channel_open(t, s, data);
		break;
	case ST_EV_CLOSE: {
		const struct st_ev_close *ev = data;

		if (size != sizeof(*ev))
			return 0;
		err = channel_close(t, s, ev->conn_id, ev->bytes_sent, ev->bytes_recv, h->ts_ns,
				    NULL);
		break;
	}
	case ST_EV_FORK:
		if (size != sizeof(struct st_ev_fork))
			return 0;
		if (sshd_has(s, h->pid))
			sshd_add(s, ((const struct st_ev_fork *)data)->child_pid);
		err = session_begin(t, s, REC_FORK, h->ts_ns);
		err = err ?: rec_add_u64(&t->rec, TAG_PID, h->pid);
		err = err
			  ?: rec_add_u64(&t->rec, TAG_CHILD_PID,
					 ((const struct st_ev_fork *)data)->child_pid);
		err = err ?: session_emit(t, s);
		break;
	case ST_EV_EXIT:
		if (size != sizeof(struct st_ev_exit))
			return 0;
		status = ((const struct st_ev_exit *)data)->exit_code;
		if (h->pid == s->shell_pid) {
			s->shell_exited = true;
			s->shell_status = status;
		}
		if (s->files)
			transfer_hash_closed(t, s, h->pid);
		err = session_begin(t, s, REC_EXIT, h->ts_ns);
		err = err ?: rec_add_u64(&t->rec, TAG_PID, h->pid);
		err = err ?: rec_add_u64(&t->rec, TAG_STATUS, (uint32_t)status);
		err = err ?: session_emit(t, s);
		if (sshd_remove(s, h->pid)) {
			if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
				s->killed_sshd = h->pid;
				s->killed_signal = WTERMSIG(status);
			}
			if (s->leader_exited && !s->nsshd)
				err = err ?: end_session(t, s, h->ts_ns, s->leader_status, NULL);
		}
		break;
	default:
		err = -EBADMSG;
	}
	if (err == -EBADMSG) {
		t->bad_events++;
		log_warn("session %s: malformed event type %u of %zu bytes ignored", s->idhex,
			 h->type, size);
		err = 0;
	}
	/* a store error is logged where it happens; keep consuming events */
	return 0;
}

/*
 * `ssh -N` (forwards only) runs no program: the login shows as an sshd of
 * the session running as the user, which sshd only does after auth.
 */
static void login_without_program(struct tracker *t, struct session *s, uint64_t now)
{
	for (unsigned i = 0; i < s->nsshd && s->uid == NO_UID; i++)
		session_learn_person_from_proc(t, s, s->sshd_pids[i]);
	if (s->uid == NO_UID)
		return;
	if (s->materialized) {
		/* PAM helpers (motd) already made it real, as root: now we know who */
		session_write_attrs(t, s, now, true, false);
		if (!s->kind)
			session_set_kind(t, s, KIND_FORWARD, NULL, now);
		return;
	}
	if (!s->kind)
		s->kind = KIND_FORWARD;
	session_materialize(t, s);
}

int tracker_tick(struct tracker *t)
{
	uint64_t now = clock_ns(CLOCK_BOOTTIME);
	struct session **pp = &t->sessions;

	update_wall_offset(t);
	tracker_flush_chunks(t, false);
	while (*pp) {
		struct session *s = *pp;
		struct st_session ks;

		if (s->ended) {
			if (s->forget ||
			    (now - s->last_event_ns > ENDED_KEEP_NS && !s->end_waits)) {
				*pp = s->next;
				chunk_flush(t, s);
				free_session(s);
				continue;
			}
		} else if (capture_get_session(t->cap, s->key, &ks) == 0) {
			if (s->materialized)
				check_losses(t, s, &ks, now);
			if (s->uid == NO_UID && now - s->start_boot_ns > 1000000000ull)
				login_without_program(t, s, now);
			/*
			 * The leader is gone but an event that would have ended it
			 * was lost; or the kernel never saw it go (it exited just
			 * before an adoption put it in the map): three ticks on.
			 */
			if ((ks.ended || (kill(s->leader, 0) && errno == ESRCH)) &&
			    sshd_all_gone(s) && ++s->ended_ticks > 2)
				end_session(t, s, now, s->leader_status,
					    s->leader_exited ? NULL
					    : ks.ended	     ? "sshd exited (end event lost)"
							     : "sshd gone (end event lost)");
		} else if (kill(s->leader, 0) && errno == ESRCH && sshd_all_gone(s)) {
			end_session(t, s, now, 0, "sshd gone (end event lost)");
		}
		pp = &s->next;
	}
	return store_sync(t->store);
}

static int cmp_pid(const void *a, const void *b)
{
	uint32_t x = ((const struct proc_info *)a)->pid, y = ((const struct proc_info *)b)->pid;

	return x < y ? -1 : x > y;
}

/* pid in procs, sorted by cmp_pid. */
static const struct proc_info *find_proc(const struct proc_info *procs, size_t n, uint32_t pid)
{
	struct proc_info key = {.pid = pid};

	return bsearch(&key, procs, n, sizeof(*procs), cmp_pid);
}

/* Track proc and all its descendants in session key; returns how many. */
static unsigned track_tree(struct tracker *t, const struct proc_info *procs, size_t n,
			   uint32_t root, uint64_t key)
{
	uint32_t *queue = malloc(n * sizeof(*queue));
	size_t head = 0, tail = 0;

	if (!queue)
		return 0;
	queue[tail++] = root;
	while (head < tail) {
		uint32_t pid = queue[head++];

		uint32_t flags = 0;

		if (pid == (uint32_t)getpid())
			continue; /* never record ourselves */
		for (size_t i = 0; i < n; i++)
			if (procs[i].pid == pid && is_sshd(t, procs[i].exe))
				flags = ST_PROC_SSHD;
		capture_track(t->cap, pid, key, flags);
		for (size_t i = 0; i < n && tail < n; i++)
			if (procs[i].ppid == pid)
				queue[tail++] = procs[i].pid;
	}
	free(queue);
	return tail;
}

static bool is_descendant(const struct proc_info *procs, size_t n, uint32_t pid, uint32_t root)
{
	for (int depth = 0; depth < 64 && pid > 1; depth++) {
		const struct proc_info *p;

		if (pid == root)
			return true;
		p = find_proc(procs, n, pid);
		if (!p)
			return false;
		pid = p->ppid;
	}
	return false;
}

/* One of the programs the kernel summarises (--transfer), as exec_classify() decides. */
static bool runs_transfer(const struct tracker *t, uint32_t pid)
{
	for (unsigned i = 0; i < t->ntransfers; i++)
		if (runs_file(pid, t->transfers[i]))
			return true;
	return false;
}

/*
 * What an adopted login runs, from /proc/PID/cmdline, as on_exec() would
 * have named it: the user's shell running `SHELL -c cmd` gives cmd; a
 * login shell (argv[0] "-bash") none; another program its arguments
 * joined by spaces (the shell exec'd it: the quoting is gone).
 */
static void adopted_command(const struct proc_info *p, char *cmd, size_t size)
{
	char argv[ST_ARGS_MAX];
	int n = procfs_cmdline(p->pid, argv, sizeof(argv));
	const struct passwd *pw = n > 0 ? getpwuid(p->uid) : NULL;

	procfs_command(argv, n, pw && pw->pw_shell && runs_file(p->pid, pw->pw_shell),
		       n == (int)sizeof(argv), cmd, size);
}

/*
 * The login's program among the processes of an adopted login without a
 * terminal: what sshd started as the user (s_uid, if known; not xauth or
 * ~/.ssh/rc), or the sshd child serving internal-sftp, which sshd titles
 * "sshd: USER@internal-sftp" (*internal true).
 */
static const struct proc_info *login_program(const struct tracker *t, const struct proc_info *procs,
					     size_t n, uint32_t leader, uint32_t s_uid,
					     bool *internal)
{
	static const char title[] = "@" INTERNAL_SFTP;
	const struct proc_info *prog = NULL;
	char cmd[256];

	*internal = false;
	for (size_t i = 0; i < n; i++) {
		const struct proc_info *p = &procs[i], *parent = find_proc(procs, n, p->ppid);

		if (p->pid == leader || !parent || !is_sshd(t, parent->exe) ||
		    !is_descendant(procs, n, p->pid, leader))
			continue;
		if (!is_sshd(t, p->exe)) {
			adopted_command(p, cmd, sizeof(cmd));
			if (!is_login_helper(cmd) && (s_uid == NO_UID || p->uid == s_uid) &&
			    (!prog || p->pid < prog->pid))
				prog = p;
		} else if (!prog && procfs_cmdline(p->pid, cmd, sizeof(cmd)) > 0 &&
			   strlen(cmd) > sizeof(title) - 1 &&
			   !strcmp(cmd + strlen(cmd) - (sizeof(title) - 1), title)) {
			*internal = true;
			return p;
		}
	}
	return prog;
}

/*
 * The program of a login adopted while it runs gets what its exec would
 * have given it (on_exec(), exec_classify(), sftp_probe()): the session's
 * kind and command, and its pipes to sshd as the session's streams
 * (stdio). A transfer program's pipes are counted, not copied, and it and
 * every transfer program of the login summarise the files they open from
 * now on. Files already open, and bytes before now, are not known.
 */
static void adopt_program(struct tracker *t, struct session *s, const struct proc_info *procs,
			  size_t n, uint32_t leader, __u64 stdio[3])
{
	const struct proc_info *prog;
	bool internal, counted;
	uint64_t pipes[3];
	char cmd[ST_ARGS_MAX + 16];

	if (s->tty >= 0 || !(prog = login_program(t, procs, n, leader, s->uid, &internal)))
		return;
	learn_person(t, s, internal ? INTERNAL_SFTP : prog->exe, prog->loginuid, prog->uid);
	s->shell_pid = prog->pid;
	if (internal) {
		sshd_remove(s, prog->pid); /* it serves files now, not the connection */
		snprintf(cmd, sizeof(cmd), "%s", INTERNAL_SFTP);
	} else {
		adopted_command(prog, cmd, sizeof(cmd));
	}
	if (is_subsystem(t, internal ? INTERNAL_SFTP : prog->exe, cmd)) {
		s->kind = KIND_SUBSYSTEM;
		s->transfer = true;
	} else {
		s->kind = KIND_EXEC;
		s->transfer = !strncmp(cmd, "scp ", 4) || !strncmp(cmd, "rsync --server", 14);
	}
	if (cmd[0] && !s->command)
		s->command = strdup(cmd);
	/* the kernel's side, as exec_classify() decides it: by the program's file */
	counted = internal || runs_transfer(t, prog->pid);
	procfs_stdio_pipes(prog->pid, pipes);
	for (int fd = 0; fd < 3; fd++) {
		/* one pipe on two fds (2>&1) is the first one's stream, as relay_pipe() has it */
		stdio[fd] = fd && pipes[fd] == pipes[fd - 1] ? 0 : pipes[fd];
		if (counted && stdio[fd] &&
		    capture_add_relay(t->cap, stdio[fd], s->key, ST_PIPE_STDIN + fd,
				      ST_RELAY_COUNT))
			log_warn(
			    "session %s: pid %u: cannot count its fd %d in the kernel; its bytes"
			    " are recorded instead",
			    s->idhex, prog->pid, fd);
	}
	s->pipes_counted = counted;
	for (size_t i = 0; i < n; i++) {
		const struct proc_info *p = &procs[i];

		if ((p->pid == prog->pid && internal) ||
		    (is_descendant(procs, n, p->pid, leader) && !is_sshd(t, p->exe) &&
		     runs_transfer(t, p->pid))) {
			if (capture_track(t->cap, p->pid, s->key,
					  ST_PROC_TRANSFER | ST_PROC_XFER_ACTIVE))
				log_warn("session %s: pid %u: cannot follow its files", s->idhex,
					 p->pid);
		}
	}
}

static void adopt(struct tracker *t, const struct proc_info *procs, size_t n,
		  const struct proc_info *leader, uint32_t listener)
{
	uint64_t key = ADOPTED_KEY_BIT | t->next_adopt_key++;
	__u64 stdio[3] = {0};
	struct session *s;

	if (capture_add_session(t->cap, key, leader->pid))
		return;
	s = new_session(t, key, leader->pid, leader->start_boot_ns);
	if (!s) {
		capture_delete_session(t->cap, key);
		return;
	}
	s->adopted = true;
	s->listener = listener;
	track_tree(t, procs, n, leader->pid, key);
	/* who and which tty, from the processes the login already has */
	for (size_t i = 0; i < n; i++) {
		const struct proc_info *p = &procs[i];

		if (p->pid == leader->pid || !is_descendant(procs, n, p->pid, leader->pid))
			continue;
		if (s->uid == NO_UID && learn_person(t, s, p->exe, p->loginuid, p->uid) &&
		    s->uid != NO_UID)
			s->shell_pid = p->pid;
		if (is_sshd(t, p->exe)) {
			sshd_add(s, p->pid);
			if (!s->have_addr)
				s->have_addr = procfs_tcp_conn(p->pid, &s->addr) == 0;
		}
		if (s->tty < 0 && !is_sshd(t, p->exe))
			s->tty = procfs_pts_index(p->tty_nr);
	}
	adopt_program(t, s, procs, n, leader->pid, stdio);
	/* A program runs as the user: the login is authenticated. */
	if (s->shell_pid) {
		if (!s->kind)
			s->kind = s->tty >= 0 ? KIND_SHELL : KIND_EXEC;
		if (s->tty >= 0)
			procfs_env(s->shell_pid, "TERM", s->term, sizeof(s->term));
		if (!session_materialize(t, s) && (stdio[0] || stdio[1] || stdio[2]))
			pipes_tie(t, s, stdio, s->pipes_counted, clock_ns(CLOCK_BOOTTIME));
	}
}

int tracker_scan(struct tracker *t)
{
	/*
	 * Binaries are known by inode: after a package upgrade the new sshd or
	 * rsync has another one. Old inodes stay known for processes still
	 * running them.
	 */
	for (unsigned i = 0; i < t->nsshd; i++)
		capture_add_exe(t->cap, t->sshd_paths[i], ST_EXE_SSHD);
	for (unsigned i = 0; i < t->ntransfers; i++)
		capture_add_exe(t->cap, t->transfers[i], ST_EXE_TRANSFER);
	uint32_t old[TRACKER_MAX_LISTENERS];
	unsigned nold = t->nlisteners;
	struct proc_info *procs;
	bool orphans = false;
	size_t n;
	int err;

	/*
	 * Every second: the exe of every process, and parent and start only of
	 * sshd's (listeners and connection handlers are sshd processes, and
	 * only their parents matter); the full picture again only when there
	 * is something to adopt.
	 */
	err = procfs_list(&procs, &n, false, is_sshd_exe, t);
	if (err)
		return err;
	qsort(procs, n, sizeof(*procs), cmp_pid);
	memcpy(old, t->listeners, sizeof(old));
	/* listeners: sshd processes whose parent is not sshd */
	t->nlisteners = 0;
	for (size_t i = 0; i < n; i++) {
		const struct proc_info *p = &procs[i], *parent;
		bool known = false;

		if (!is_sshd(t, p->exe) || p->pid == (uint32_t)getpid())
			continue;
		parent = find_proc(procs, n, p->ppid);
		if (parent && is_sshd(t, parent->exe))
			continue;
		for (unsigned l = 0; l < nold; l++)
			known |= old[l] == p->pid;
		/*
		 * A connection handler outliving a restarted sshd has parent 1 too:
		 * only a process with a listening socket is a listener (a listener
		 * stays one: its socket table is read once, not every second).
		 */
		if (t->nlisteners == TRACKER_MAX_LISTENERS ||
		    (!known && !procfs_tcp_listening(p->pid)))
			continue;
		t->listeners[t->nlisteners++] = p->pid;
		capture_add_listener(t->cap, p->pid);
	}
	/* connection handlers the kernel did not see being forked */
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned l = 0; l < t->nlisteners; l++) {
			for (size_t i = 0; i < n; i++) {
				bool known = false;

				/*
				 * handlers are sshd (only theirs have a parent read,
				 * and a handler whose sshd-session is not a configured
				 * --sshd would be misread anyway)
				 */
				if (procs[i].ppid != t->listeners[l] || !is_sshd(t, procs[i].exe) ||
				    capture_is_tracked(t->cap, procs[i].pid))
					continue;
				for (struct session *s = t->sessions; s; s = s->next)
					known |= !s->ended && s->leader == procs[i].pid;
				if (known)
					continue;
				orphans = true;
				if (pass)
					adopt(t, procs, n, &procs[i], t->listeners[l]);
			}
		}
		if (!orphans)
			break;
		/* adoption needs each process's uid, loginuid and tty */
		free(procs);
		err = procfs_list(&procs, &n, true, NULL, NULL);
		if (err)
			return err;
		qsort(procs, n, sizeof(*procs), cmp_pid); /* find_proc() */
	}
	free(procs);
	return 0;
}

int tracker_daemon_record(struct tracker *t, const char *event)
{
	uint64_t now = clock_ns(CLOCK_BOOTTIME);
	int err;

	update_wall_offset(t);
	err = session_begin(t, NULL, REC_DAEMON, now);
	err = err ?: rec_add_str(&t->rec, TAG_EVENT, event);
	err = err ?: rec_add_str(&t->rec, TAG_HOST, t->host);
	err = err ?: rec_add_str(&t->rec, TAG_BOOT_ID, t->boot_id);
	err = err ?: rec_add_str(&t->rec, TAG_VERSION, SEALTRAIL_VERSION);
	err = err ?: session_emit(t, NULL);
	return err ?: store_sync(t->store);
}

bool tracker_previous_run_unclean(struct tracker *t)
{
	char event[16];

	index_daemon_event(&t->store->index, t->host, event, sizeof(event));
	return !strcmp(event, "start");
}

int tracker_close_stale(struct tracker *t, bool unclean)
{
	sqlite3_stmt *st;
	int err = 0;

	if (sqlite3_prepare_v2(t->store->index.db,
			       "SELECT id FROM sessions WHERE end_ns IS NULL AND host = ?1", -1,
			       &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, t->host, -1, SQLITE_STATIC);
	while (!err && sqlite3_step(st) == SQLITE_ROW) {
		struct session s = {0};
		const char *id = (const char *)sqlite3_column_text(st, 0);

		if (!id || hex_decode(id, s.id, ST_ID_LEN))
			continue;
		/*
		 * Killed, not stopped: what it had gathered but not written
		 * (up to ~1 s of this login's bytes, during a burst up to 10 s
		 * more in the backlog, and whatever waited in the kernel's ring
		 * buffer) is gone. Say so; how much is unknown.
		 */
		if (unclean) {
			err = rec_begin(&t->rec, REC_GAP, s.id, clock_ns(CLOCK_REALTIME),
					clock_ns(CLOCK_BOOTTIME));
			err =
			    err
				?: rec_add_str(&t->rec, TAG_REASON,
					       "sealtraild did not stop cleanly (killed, crashed or"
					       " power cut): this session's bytes it had not yet"
					       " written, up to its last ~1.5 s (~10 s during a"
					       " burst of output), are missing");
			err = err ?: rec_add_u64(&t->rec, TAG_LOST_EVENTS, 1);
			err = err ?: store_append(t->store, &t->rec);
			if (err)
				break;
			log_warn("session %s: the previous sealtraild did not stop cleanly; a gap"
				 " marks the bytes it had not written",
				 id);
		}
		/* the daemon was down: we cannot know when it ended */
		err = rec_begin(&t->rec, REC_SESSION_END, s.id, clock_ns(CLOCK_REALTIME),
				clock_ns(CLOCK_BOOTTIME));
		err = err
			  ?: rec_add_str(&t->rec, TAG_REASON,
					 "end not observed: sealtraild was stopped; recording of"
					 " its processes continues as an adopted session");
		err = err ?: store_append(t->store, &t->rec);
		log_info("session %s: closed (left open by a previous run)", id);
	}
	sqlite3_finalize(st);
	return err ?: store_sync(t->store);
}

static void read_boot_id(char *out, size_t size)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	out[0] = 0;
	if (f) {
		if (fgets(out, size, f))
			out[strcspn(out, "\n")] = 0;
		fclose(f);
	}
}

int tracker_init(struct tracker *t, struct store *store, struct capture *cap)
{
	memset(t, 0, sizeof(*t));
	t->store = store;
	t->cap = cap;
	if (gethostname(t->host, sizeof(t->host) - 1))
		snprintf(t->host, sizeof(t->host), "unknown");
	read_boot_id(t->boot_id, sizeof(t->boot_id));
	t->capture_cap = TRACKER_DEFAULT_CAP;
	t->end_hash_wait_ns = END_HASH_WAIT_NS;
	t->privsep_uid = NO_UID;
	{
		struct passwd *pw = getpwnam("sshd"); /* sshd's unprivileged pre-auth user */

		if (pw)
			t->privsep_uid = pw->pw_uid;
	}
	update_wall_offset(t);
	return 0;
}

void tracker_fini(struct tracker *t)
{
	while (t->sessions) {
		struct session *s = t->sessions;

		t->sessions = s->next;
		free_session(s);
	}
	buf_free(&t->rec);
}

int tracker_on_event(void *arg, void *data, size_t size)
{
	uint64_t t0 = clock_ns(CLOCK_MONOTONIC), took;
	int err = handle_event(arg, data, size);

	/* the ring fills while one event is handled: say which ones are slow */
	took = clock_ns(CLOCK_MONOTONIC) - t0;
	if (took > 20000000ull && size >= sizeof(struct st_event_hdr))
		log_debug("event type %u of pid %u took %llu ms",
			  ((struct st_event_hdr *)data)->type, ((struct st_event_hdr *)data)->pid,
			  (unsigned long long)(took / 1000000));
	return err;
}
