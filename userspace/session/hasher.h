/*
 * A worker thread that computes SHA-256 of files (transferred by scp, sftp,
 * rsync) off the collector's event loop: hashing a 1 GiB upload must not
 * stop the ring buffer from being drained.
 */
#ifndef SEALTRAIL_HASHER_H
#define SEALTRAIL_HASHER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct hash_job {
	struct hash_job *next;
	uint64_t sess_key;
	char path[4096];
	/* the file that was transferred (ino 0: unknown): the path may name another now */
	uint64_t ino;
	uint32_t dev; /* kernel encoding: major << 20 | minor */
	/* filled by the worker */
	int err; /* 0 or -errno, or -ESTALE: the path names another file now */
	uint64_t size;
	char sha256[65];
	/* opaque to the worker: what the caller needs to write the record */
	uint64_t ts_ns;
	uint32_t pid;
	uint64_t bytes_read;
	uint64_t bytes_written;
};

struct hasher {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct hash_job *todo, *todo_tail;
	struct hash_job *done;
	unsigned pending; /* submitted, not yet done */
	bool stop;
	bool started;
};

int hasher_start(struct hasher *h);
/* Stop after the queued jobs; finished ones stay for hasher_take. */
void hasher_stop(struct hasher *h);
/* Takes ownership of job (malloc()ed). */
void hasher_submit(struct hasher *h, struct hash_job *job);
/* Finished jobs in submission order; the caller frees them. */
struct hash_job *hasher_take(struct hasher *h);
/* Wait until the queue is empty (used at shutdown). */
void hasher_drain(struct hasher *h);

#endif
