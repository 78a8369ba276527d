/* SHA-256 of files in a worker thread (hasher.h). */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "session/hasher.h"

/*
 * Open the file a job names for reading, if it still is the one that was
 * transferred. A user controls the path, and it is hashed after the
 * transfer, as root: by then a directory on it may be a symlink to /proc
 * (kcore never ends) or to files the user could not read. So the path is
 * first opened as a handle only (no open side effects: no FIFO to block
 * on, no device to touch), checked to be a regular file with the inode
 * and mount the kernel saw opened, and only then reopened through that
 * handle.
 */
static int open_transferred(struct hash_job *job, uint64_t *size)
{
	int path_fd = open(job->path, O_PATH | O_NOFOLLOW | O_CLOEXEC), fd;
	struct statx sx;
	char self[64];

	if (path_fd < 0)
		return -errno;
	if (statx(path_fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_INO | STATX_SIZE | STATX_MNT_ID,
		  &sx) ||
	    !S_ISREG(sx.stx_mode)) {
		close(path_fd);
		return -EINVAL; /* "not hashed: Invalid argument": not a regular file now */
	}
	/* the mount, not the device: btrfs subvolumes stat as devices of their own */
	if (job->ino && (sx.stx_ino != job->ino ||
			 ((sx.stx_mask & STATX_MNT_ID) && sx.stx_mnt_id != job->mnt_id))) {
		close(path_fd);
		snprintf(job->why, sizeof(job->why),
			 "the path names another file than the one transferred");
		return -ENOENT;
	}
	*size = sx.stx_size;
	snprintf(self, sizeof(self), "/proc/self/fd/%d", path_fd);
	/* O_NONBLOCK: a lease on the file makes open fail instead of wait */
	fd = open(self, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		fd = -errno;
	close(path_fd);
	return fd;
}

/* Has the drain given up on what is left? Then say so in the job. */
static bool abandoned(struct hasher *h, struct hash_job *job)
{
	if (!__atomic_load_n(&h->abandon, __ATOMIC_RELAXED))
		return false;
	job->err = -ECANCELED;
	snprintf(job->why, sizeof(job->why), "sealtraild stopped before it was hashed");
	return true;
}

static void hash_file(struct hasher *h, struct hash_job *job)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t buf[1 << 16], md[EVP_MAX_MD_SIZE];
	uint64_t size = 0, moved = job->bytes_read > job->bytes_written ? job->bytes_read
									: job->bytes_written;
	unsigned mdlen = 0;
	ssize_t n = 0;
	int fd = open_transferred(job, &size);

	job->size = 0;
	if (fd < 0 || !ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		job->err = fd < 0 ? fd : -ENOMEM;
		goto out;
	}
	if (size > moved * HASH_MAX_FACTOR + HASH_MAX_SLACK) {
		job->err = -EFBIG;
		snprintf(job->why, sizeof(job->why),
			 "%llu bytes, far more than the %llu the transfer moved",
			 (unsigned long long)size, (unsigned long long)moved);
		goto out;
	}
	/* what the file held when it was looked at: one that keeps growing ends too */
	while (job->size < size && (n = read(fd, buf, sizeof(buf))) > 0) {
		if (abandoned(h, job))
			goto out;
		if ((uint64_t)n > size - job->size)
			n = (ssize_t)(size - job->size);
		EVP_DigestUpdate(ctx, buf, n);
		job->size += n;
	}
	if (n < 0) {
		job->err = -errno;
		goto out;
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	hex_encode(md, mdlen, job->sha256);
	job->err = 0;
out:
	if (fd >= 0)
		close(fd);
	EVP_MD_CTX_free(ctx);
}

static void *worker(void *arg)
{
	struct hasher *h = arg;

	pthread_mutex_lock(&h->lock);
	for (;;) {
		struct hash_job *job, **tail;

		while (!h->todo && !h->stop)
			pthread_cond_wait(&h->wake, &h->lock);
		job = h->todo;
		if (!job)
			break; /* stop requested and nothing left */
		h->todo = job->next;
		if (!h->todo)
			h->todo_tail = NULL;
		pthread_mutex_unlock(&h->lock);
		if (!abandoned(h, job))
			hash_file(h, job);
		pthread_mutex_lock(&h->lock);
		job->next = NULL;
		for (tail = &h->done; *tail; tail = &(*tail)->next)
			;
		*tail = job;
		h->pending--;
		pthread_cond_broadcast(&h->wake);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

int hasher_start(struct hasher *h)
{
	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->wake, NULL);
	if (pthread_create(&h->thread, NULL, worker, h))
		return -errno;
	h->started = true;
	return 0;
}

void hasher_stop(struct hasher *h)
{
	if (!h->started)
		return;
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	pthread_cond_broadcast(&h->wake);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->thread, NULL);
	h->started = false;
}

void hasher_submit(struct hasher *h, struct hash_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&h->lock);
	if (h->todo_tail)
		h->todo_tail->next = job;
	else
		h->todo = job;
	h->todo_tail = job;
	h->pending++;
	pthread_cond_broadcast(&h->wake);
	pthread_mutex_unlock(&h->lock);
}

struct hash_job *hasher_take(struct hasher *h)
{
	struct hash_job *done;

	pthread_mutex_lock(&h->lock);
	done = h->done;
	h->done = NULL;
	pthread_mutex_unlock(&h->lock);
	return done;
}

void hasher_drain(struct hasher *h, uint64_t timeout_ns)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ns / 1000000000ull;
	until.tv_nsec += timeout_ns % 1000000000ull;
	if (until.tv_nsec >= 1000000000l)
		until.tv_sec++, until.tv_nsec -= 1000000000l;
	pthread_mutex_lock(&h->lock);
	while (h->pending && h->started) {
		if (pthread_cond_timedwait(&h->wake, &h->lock, &until) == ETIMEDOUT && h->pending) {
			__atomic_store_n(&h->abandon, true, __ATOMIC_RELAXED);
			while (h->pending && h->started)
				pthread_cond_wait(&h->wake, &h->lock);
		}
	}
	pthread_mutex_unlock(&h->lock);
}
