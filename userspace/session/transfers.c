/* Forwarded connections and files moved by scp, sftp, rsync (session.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "session/session.h"

int channel_close(struct tracker *t, struct session *s, uint64_t conn_id, uint64_t sent,
		  uint64_t recv, uint64_t boot_ns, const char *reason)
{
	int err;

	for (unsigned i = 0; i < s->nchannels; i++) {
		if (s->channels[i] == conn_id) {
			s->channels[i] = s->channels[--s->nchannels];
			break;
		}
	}
	err = session_begin(t, s, REC_CHANNEL_CLOSE, boot_ns);
	err = err ?: rec_add_u64(&t->rec, TAG_CONN_ID, conn_id);
	err = err ?: rec_add_u64(&t->rec, TAG_BYTES_SENT, sent);
	err = err ?: rec_add_u64(&t->rec, TAG_BYTES_RECV, recv);
	if (reason)
		err = err ?: rec_add_str(&t->rec, TAG_REASON, reason);
	return err ?: session_emit(t, s);
}

int channel_open(struct tracker *t, struct session *s, const struct st_ev_connect *ev)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	int err = 0;

	inet_ntop(ev->family == 2 ? AF_INET : AF_INET6, ev->addr, ip, sizeof(ip));
	if (!s->materialized) {
		session_learn_person_from_proc(t, s, ev->hdr.pid);
		if (!s->kind)
			s->kind = KIND_FORWARD;
		err = session_materialize(t, s);
	}
	if (s->nchannels < MAX_CHANNELS)
		s->channels[s->nchannels++] = ev->conn_id;
	err = err ?: session_begin(t, s, REC_CHANNEL_OPEN, ev->hdr.ts_ns);
	err = err ?: rec_add_u64(&t->rec, TAG_CONN_ID, ev->conn_id);
	if (ev->accepted) {
		/* ssh -R: someone connected to the port sshd listens on for the client */
		err = err ?: rec_add_str(&t->rec, TAG_DIRECTION, "accepted");
		err = err ?: rec_add_str(&t->rec, TAG_SOURCE_IP, ip);
		err = err ?: rec_add_u64(&t->rec, TAG_SOURCE_PORT, ev->port);
		err = err ?: rec_add_u64(&t->rec, TAG_LOCAL_PORT, ev->local_port);
	} else {
		err = err ?: rec_add_str(&t->rec, TAG_DIRECTION, "connected");
		err = err ?: rec_add_str(&t->rec, TAG_DEST_IP, ip);
		err = err ?: rec_add_u64(&t->rec, TAG_DEST_PORT, ev->port);
	}
	err = err ?: rec_add_u64(&t->rec, TAG_PID, ev->hdr.pid);
	return err ?: session_emit(t, s);
}

/*
 * Fallback when the kernel could not walk the path: the absolute path of
 * what pid named, relative to its directory fd or cwd as they are when we
 * get the event (wrong if the process has since closed or reused that fd,
 * changed directory or exited), else the opened fd's own link.
 */
static void absolute_path(uint32_t pid, int fd, int dirfd, const char *path, char *out, size_t size)
{
	char link[64], dir[4096];
	ssize_t n;

	if (path[0] == '/') {
		snprintf(out, size, "%s", path);
		return;
	}
	if (dirfd == -100 /* AT_FDCWD */)
		snprintf(link, sizeof(link), "/proc/%u/cwd", pid);
	else
		snprintf(link, sizeof(link), "/proc/%u/fd/%d", pid, dirfd);
	n = readlink(link, dir, sizeof(dir) - 1);
	if (n <= 0 && fd >= 0) {
		snprintf(link, sizeof(link), "/proc/%u/fd/%d", pid, fd);
		n = readlink(link, out, size - 1);
		if (n > 0 && out[0] == '/') {
			out[n] = 0;
			return;
		}
	}
	dir[n > 0 ? n : 0] = 0;
	if (snprintf(out, size, "%s/%s", n > 0 ? dir : "?", path) >= (int)size)
		log_debug("pid %u: path %s/%s truncated", pid, dir, path);
}

/* session.h */
bool kernel_path(const char *dir, unsigned len, unsigned flags, const char *name, char *out,
		 size_t size)
{
	const char *comp[ST_DIR_DEPTH + 8];
	unsigned n = 0, off = 0;
	struct buf b = {0};
	bool ok;

	if (!(flags & (ST_DIR_OK | ST_DIR_TRUNCATED)) || len > ST_DIR_BYTES)
		return false;
	while (off < len && n < sizeof(comp) / sizeof(comp[0])) {
		size_t l = strnlen(dir + off, len - off);

		if (off + l == len)
			break; /* not NUL-terminated: cut short */
		comp[n++] = dir + off;
		off += l + 1;
	}
	if (name && name[0] == '/')
		n = 0, flags = ST_DIR_OK; /* absolute: the directory does not matter */
	if (!(flags & ST_DIR_OK))
		buf_addf(&b, "?");
	while (n--)
		buf_addf(&b, "/%s", comp[n]);
	if (name && name[0])
		buf_addf(&b, "%s%s", name[0] == '/' ? "" : "/", name);
	else if (!b.len)
		buf_addf(&b, "/");
	ok = b.data && snprintf(out, size, "%s", b.data) < (int)size;
	buf_free(&b);
	return ok;
}

static unsigned id_bucket(uint64_t file_id)
{
	return (unsigned)((file_id * 0x9e3779b97f4a7c15ull) >> 52) & (XFER_BUCKETS - 1);
}

static uint32_t path_hash(const char *p)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	while (*p)
		h = (h ^ (uint8_t)*p++) * 16777619u;
	return h;
}

static void unlink_id(struct session *s, struct xfer_file *f)
{
	struct xfer_file **pp = &s->xfer_index->by_id[id_bucket(f->file_id)];

	while (*pp && *pp != f)
		pp = &(*pp)->id_next;
	if (*pp)
		*pp = f->id_next;
}

static void unlink_path(struct session *s, struct xfer_file *f)
{
	struct xfer_file **pp = &s->xfer_index->by_path[f->path_hash & (XFER_BUCKETS - 1)];

	while (*pp && *pp != f)
		pp = &(*pp)->path_next;
	if (*pp)
		*pp = f->path_next;
}

static void link_path(struct session *s, struct xfer_file *f)
{
	struct xfer_file **head;

	f->path_hash = path_hash(f->path);
	head = &s->xfer_index->by_path[f->path_hash & (XFER_BUCKETS - 1)];
	f->path_next = *head;
	*head = f;
}

/* An open file of the session by the kernel's id for it (never 0). */
static struct xfer_file *find_file(struct session *s, uint64_t file_id)
{
	if (!file_id || !s->xfer_index)
		return NULL;
	for (struct xfer_file *f = s->xfer_index->by_id[id_bucket(file_id)]; f; f = f->id_next)
		if (f->file_id == file_id)
			return f;
	return NULL;
}

/* Queue the hash of the files pid closed (all files if pid is 0). */
void transfer_hash_closed(struct tracker *t, struct session *s, uint32_t pid)
{
	struct xfer_file **pp = &s->files;

	while (*pp) {
		struct xfer_file *f = *pp;
		struct hash_job *job;

		if (f->file_id || (pid && f->pid != pid) || !(job = calloc(1, sizeof(*job)))) {
			pp = &f->next;
			continue;
		}
		job->sess_key = s->key;
		snprintf(job->path, sizeof(job->path), "%s", f->path);
		job->ino = f->ino;
		job->mnt_id = f->mnt_id;
		job->ts_ns = f->close_ns;
		job->pid = f->pid;
		job->bytes_read = f->bytes_read;
		job->bytes_written = f->bytes_written;
		hasher_submit(&t->hasher, job);
		s->hashing++;
		*pp = f->next;
		s->nfiles--;
		unlink_path(s, f); /* closed: no longer under its id */
		free(f);
	}
	s->files_tail = pp; /* the walk went to the end */
}

/* A file of the C library's lookups, named from the root the library sees. */
static bool lookup_name(const char *path)
{
	static const char *const files[] = {"/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
					    "/etc/localtime", "/etc/ld.so.cache"};
	static const char *const dirs[] = {"/usr/share/zoneinfo/", "/var/lib/sss/mc/"};
	static const char *const libdirs[] = {"/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/"};
	const char *base = strrchr(path, '/');

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if (!strcmp(path, files[i]))
			return true;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (!strncmp(path, dirs[i], strlen(dirs[i])))
			return true;
	/* an NSS module the library loads for a lookup: libnss_*.so* */
	if (!base || strncmp(base + 1, "libnss_", 7))
		return false;
	for (size_t i = 0; i < sizeof(libdirs) / sizeof(libdirs[0]); i++)
		if (!strncmp(path, libdirs[i], strlen(libdirs[i])))
			return true;
	return false;
}

/*
 * A file the C library reads for the program's own lookups: user and group
 * names (for `ls -l`: NSS, its modules, sssd's cache), the time zone.
 * glibc opens them read-only with O_CLOEXEC; sftp-server, scp and rsync
 * open what the protocol names without it, so downloading /etc/passwd is
 * still a transfer. where is the file as the kernel walked it (links
 * followed, up to the global root); name is what the program opened: in
 * a chroot, where is the chroot's directory followed by name.
 */
static bool lookup_file(const struct st_ev_file *ev, const char *where, const char *name)
{
	size_t lw = strlen(where), ln = strlen(name);

	if (!(ev->flags & O_CLOEXEC) || (ev->flags & O_ACCMODE) != O_RDONLY)
		return false;
	if (lookup_name(where))
		return true;
	return name[0] == '/' && lookup_name(name) && lw > ln && !strcmp(where + lw - ln, name);
}

int transfer_file_event(struct tracker *t UNUSED, struct session *s, const struct st_ev_file *ev)
{
	char path[ST_PATH_MAX + 1], path2[ST_PATH_MAX + 1],
	    where[sizeof(((struct xfer_file *)0)->path)];
	struct xfer_file *f;

	memcpy(path, ev->path, ST_PATH_MAX);
	path[ST_PATH_MAX] = 0;
	memcpy(path2, ev->path2, ST_PATH_MAX);
	path2[ST_PATH_MAX] = 0;
	switch (ev->hdr.type) {
	case ST_EV_FILE_OPEN:
		if (!kernel_path(ev->dir, ev->dir_len, ev->dir_flags, NULL, where, sizeof(where)))
			absolute_path(ev->hdr.pid, ev->fd, ev->dirfd, path, where, sizeof(where));
		if (lookup_file(ev, where, path))
			return 0;
		if (s->nfiles >= MAX_XFER_FILES || !(f = calloc(1, sizeof(*f)))) {
			/* not summarised: said in a gap record at the session's end */
			if (!s->files_dropped++)
				log_warn(
				    "session %s: a transfer has more than %u files open or"
				    " not yet hashed; further files are counted, not summarised",
				    s->idhex, MAX_XFER_FILES);
			return 0;
		}
		if (!s->xfer_index && !(s->xfer_index = calloc(1, sizeof(*s->xfer_index)))) {
			free(f);
			return -ENOMEM;
		}
		f->file_id = ev->file_id;
		f->pid = ev->hdr.pid;
		f->ino = ev->ino;
		f->mnt_id = ev->mnt_id;
		snprintf(f->path, sizeof(f->path), "%s", where);
		/* in open order, at the tail */
		if (!s->files || !s->files_tail)
			s->files_tail = &s->files;
		*s->files_tail = f;
		s->files_tail = &f->next;
		if (f->file_id) {
			struct xfer_file **head = &s->xfer_index->by_id[id_bucket(f->file_id)];

			f->id_next = *head;
			*head = f;
		}
		link_path(s, f);
		s->nfiles++;
		return 0;
	case ST_EV_FILE_CLOSE:
		f = find_file(s, ev->file_id);
		if (!f)
			return 0;
		unlink_id(s, f);
		f->file_id = 0; /* closed: hashed when its program exits (after renames) */
		f->bytes_read = ev->bytes_read;
		f->bytes_written = ev->bytes_written;
		f->close_ns = ev->hdr.ts_ns;
		return 0;
	case ST_EV_FILE_RENAME: {
		char from[4096], to[4096];

		/* rsync writes a temporary file and renames it over the target */
		if (!kernel_path(ev->dir, ev->dir_len, ev->dir_flags, path, from, sizeof(from)))
			absolute_path(ev->hdr.pid, -1, ev->dirfd, path, from, sizeof(from));
		if (!kernel_path(ev->dir2, ev->dir2_len, ev->dir2_flags, path2, to, sizeof(to)))
			absolute_path(ev->hdr.pid, -1, ev->dirfd2, path2, to, sizeof(to));
		if (!s->xfer_index)
			return 0;
		/* every file at that path (gather first: each moves to another bucket) */
		{
			uint32_t h = path_hash(from);
			struct xfer_file *moved = NULL, *next;

			for (f = s->xfer_index->by_path[h & (XFER_BUCKETS - 1)]; f; f = next) {
				next = f->path_next;
				if (f->path_hash == h && !strcmp(f->path, from)) {
					unlink_path(s, f);
					f->path_next = moved;
					moved = f;
				}
			}
			for (f = moved; f; f = next) {
				next = f->path_next;
				snprintf(f->path, sizeof(f->path), "%s", to);
				link_path(s, f);
			}
		}
		return 0;
	}
	}
	return 0;
}

int tracker_files_done(struct tracker *t, bool drain)
{
	struct hash_job *job;
	int err = 0;

	if (drain)
		hasher_drain(&t->hasher, HASH_DRAIN_NS);
	job = hasher_take(&t->hasher);
	while (job) {
		struct hash_job *next = job->next;
		struct session *s = session_find(t, job->sess_key);

		if (s && s->hashing)
			s->hashing--;
		/* untouched files (opened, neither read nor written) are not transfers */
		if (s && (job->bytes_read || job->bytes_written)) {
			bool up = job->bytes_written > 0;
			int e;

			e = session_begin(t, s, REC_FILE, job->ts_ns);
			e = e ?: rec_add_str(&t->rec, TAG_PATH, job->path);
			e = e ?: rec_add_str(&t->rec, TAG_DIRECTION, up ? "upload" : "download");
			e = e
				?: rec_add_u64(&t->rec, TAG_BYTES,
					       up ? job->bytes_written : job->bytes_read);
			e = e ?: rec_add_u64(&t->rec, TAG_PID, job->pid);
			if (!job->err) {
				e = e ?: rec_add_u64(&t->rec, TAG_SIZE, job->size);
				e = e ?: rec_add_str(&t->rec, TAG_SHA256, job->sha256);
			} else {
				char why[128];

				snprintf(why, sizeof(why), "not hashed: %s",
					 job->why[0] ? job->why : strerror(-job->err));
				e = e ?: rec_add_str(&t->rec, TAG_REASON, why);
			}
			e = e ?: session_emit(t, s);
			err = err ?: e;
		}
		free(job);
		job = next;
	}
	/* sessions that ended while their files were hashed: end them now, or give up waiting */
	for (struct session *s = t->sessions; s; s = s->next) {
		uint64_t waited = s->end_waits ? clock_ns(CLOCK_MONOTONIC) - s->end_waits_since : 0;
		int e;

		if (!s->end_waits || (s->hashing && waited < t->end_hash_wait_ns))
			continue;
		if (s->hashing)
			log_warn("session %s: ended %llu s ago; its end record does not wait longer"
				 " for %u file hashes (their records will follow it)",
				 s->idhex, (unsigned long long)(waited / 1000000000ull),
				 s->hashing);
		e = end_session_finish(t, s);
		err = err ?: e;
	}
	return err;
}

/* Files a transfer opened past MAX_XFER_FILES: one gap record says how many. */
int transfer_files_dropped(struct tracker *t, struct session *s, uint64_t boot_ns)
{
	char why[128];
	int err;

	if (!s->files_dropped)
		return 0;
	snprintf(why, sizeof(why),
		 "files of a transfer past the %u followed at once: not summarised",
		 MAX_XFER_FILES);
	err = session_begin(t, s, REC_GAP, boot_ns);
	err = err ?: rec_add_u64(&t->rec, TAG_LOST_EVENTS, s->files_dropped);
	err = err ?: rec_add_u64(&t->rec, TAG_LOST_BYTES, 0);
	err = err ?: rec_add_str(&t->rec, TAG_REASON, why);
	s->files_dropped = 0;
	return err ?: session_emit(t, s);
}
