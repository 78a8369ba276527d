/* SHA-256 of files in a worker thread (hasher.h). */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "session/hasher.h"

static void hash_file(struct hash_job *job)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t buf[1 << 16], md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	ssize_t n;
	/* a user controls the path: never block on a FIFO or read a device */
	int fd = open(job->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	struct stat sb;

	job->size = 0;
	if (fd < 0 || !ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		job->err = fd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
		job->err = -EINVAL; /* "not hashed: Invalid argument": not a regular file now */
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
