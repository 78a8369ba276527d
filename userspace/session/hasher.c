/* SHA-256 of files in a worker thread (hasher.h). */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
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
 * the kernel saw opened, and only then reopened through that handle.
 */
static int open_transferred(const struct hash_job *job)
{
	int path_fd = open(job->path, O_PATH | O_NOFOLLOW | O_CLOEXEC), fd;
	char self[64];
	struct stat sb;

	if (path_fd < 0)
		return -errno;
	if (fstat(path_fd, &sb) || !S_ISREG(sb.st_mode)) {
		close(path_fd);
		return -EINVAL; /* "not hashed: Invalid argument": not a regular file now */
	}
	if (job->ino &&
	    (sb.st_ino != job->ino || sb.st_dev != makedev(job->dev >> 20, job->dev & 0xfffff))) {
		close(path_fd);
		return -ESTALE;
	}
	snprintf(self, sizeof(self), "/proc/self/fd/%d", path_fd);
	fd = open(self, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		fd = -errno;
	close(path_fd);
	return fd;
}

static void hash_file(struct hash_job *job)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t buf[1 << 16], md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	ssize_t n;
	int fd = open_transferred(job);

	job->size = 0;
	if (fd < 0 || !ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		job->err = fd < 0 ? fd : -ENOMEM;
		goto out;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
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
		hash_file(job);
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

void hasher_drain(struct hasher *h)
{
	pthread_mutex_lock(&h->lock);
	while (h->pending && h->started)
		pthread_cond_wait(&h->wake, &h->lock);
	pthread_mutex_unlock(&h->lock);
}
