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
	uint32_t mnt_id; /* the mount it was opened on (statx's STATX_MNT_ID) */
	/* filled by the worker */
	int err; /* 0 or -errno; why says more, if set */
	char why[96]; /* not hashed, and not for a system error: why */
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
	bool abandon; /* drain timed out: the jobs left are not hashed */
	bool started;
};

/*
 * A file this much larger than what its transfer moved is not hashed: a
 * user could otherwise make a sparse file of exabytes at the path (the
 * same inode) and keep the worker busy for good.
 */
#define HASH_MAX_FACTOR 16
#define HASH_MAX_SLACK (1ull << 30)

int hasher_start(struct hasher *h);
/* Stop after the queued jobs; finished ones stay for hasher_take. */
void hasher_stop(struct hasher *h);
/* Takes ownership of job (malloc()ed). */
void hasher_submit(struct hasher *h, struct hash_job *job);
/* Finished jobs in submission order; the caller frees them. */
struct hash_job *hasher_take(struct hasher *h);
/*
 * Wait until the queue is empty (used at shutdown), at most timeout_ns:
 * then the file being hashed and those after it are abandoned (reported,
 * not hashed) and the wait ends as soon as the worker has said so.
 */
void hasher_drain(struct hasher *h, uint64_t timeout_ns);

#endif
