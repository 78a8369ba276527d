/*
 * The writer's backlog (backlog.h): a memfd used as a FIFO of records,
 * each framed by its length (4 bytes) and when it was queued (8 bytes,
 * CLOCK_MONOTONIC), big-endian. Taken-out memory is
 * given back as it goes (hole punching) and the file is emptied whenever
 * the backlog is, so it holds only what waits.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/log.h"
#include "store/backlog.h"
#include "store/record.h"

/* give memory back in steps of this much */
#define PUNCH_STEP (8ull << 20)
#define FRAME_LEN 12

uint64_t backlog_default_max(uint64_t cgroup_limit)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	uint64_t max = BACKLOG_DEFAULT_MAX;

	if (pages > 0 && page > 0 && (uint64_t)pages * (uint64_t)page / 16 < max)
		max = (uint64_t)pages * (uint64_t)page / 16;
	if (cgroup_limit && cgroup_limit / 4 < max)
		max = cgroup_limit / 4;
	return max;
}

int backlog_open(struct backlog *b, uint64_t max)
{
	memset(b, 0, sizeof(*b));
	b->fd = -1;
	if (!max)
		return 0;
	b->fd = memfd_create("sealtrail-backlog", MFD_CLOEXEC);
	if (b->fd < 0)
		return -errno;
	b->max = max;
	return 0;
}

void backlog_close(struct backlog *b)
{
	if (b->max)
		close(b->fd);
	b->max = 0;
	b->fd = -1;
}

bool backlog_fits(const struct backlog *b, size_t len)
{
	return b->max && backlog_bytes(b) + FRAME_LEN + len <= b->max;
}

int backlog_put(struct backlog *b, const void *rec, size_t len)
{
	uint8_t hdr[FRAME_LEN];
	struct iovec iov[2] = {{hdr, sizeof(hdr)}, {(void *)rec, len}};
	uint64_t now = clock_ns(CLOCK_MONOTONIC);
	ssize_t n;

	if (len > REC_MAX_LEN || !backlog_fits(b, len))
		return -ENOSPC;
	put_be32(hdr, (uint32_t)len);
	put_be64(hdr + 4, now);
	do
		n = pwritev(b->fd, iov, 2, (off_t)b->tail);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if ((size_t)n != sizeof(hdr) + len)
		return -EIO; /* not appended: tail stays, the next write overwrites it */
	if (!b->records++)
		b->oldest_ns = now;
	b->tail += (uint64_t)n;
	b->queued_records++;
	if (backlog_bytes(b) > b->peak_bytes)
		b->peak_bytes = backlog_bytes(b);
	return 0;
}

static int read_at(int fd, void *out, size_t len, uint64_t off)
{
	ssize_t n;

	do
		n = pread(fd, out, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

/* The backlog is empty: start the file afresh, or give back what was taken. */
static void give_back(struct backlog *b)
{
	if (!b->records) {
		if (ftruncate(b->fd, 0) == 0)
			b->head = b->tail = b->punched = 0;
		return;
	}
	if (b->head - b->punched < PUNCH_STEP)
		return;
	uint64_t to = b->head & ~(uint64_t)(sysconf(_SC_PAGESIZE) - 1);

	if (to > b->punched && fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					 (off_t)b->punched, (off_t)(to - b->punched)) == 0)
		b->punched = to;
}

int backlog_take(struct backlog *b, struct buf *out)
{
	uint8_t hdr[FRAME_LEN];
	uint32_t len;
	int err;

	if (!b->records)
		return 0;
	err = read_at(b->fd, hdr, sizeof(hdr), b->head);
	len = err ? 0 : get_be32(hdr);
	if (!err && (len > REC_MAX_LEN || b->head + sizeof(hdr) + len > b->tail))
		err = -EIO;
	out->len = 0;
	err = err ?: buf_reserve(out, len + REC_TRAILER_LEN);
	err = err ?: read_at(b->fd, out->data, len, b->head + sizeof(hdr));
	if (err) {
		/* our own memory: cannot happen short of a bug; do not loop on it */
		log_error("store backlog: record at offset %llu does not read back (%s); "
			  "dropping the %llu records queued",
			  (unsigned long long)b->head, strerror(-err),
			  (unsigned long long)b->records);
		b->dropped += b->records;
		b->records = 0;
		give_back(b);
		return err;
	}
	out->len = len;
	b->head += sizeof(hdr) + len;
	if (--b->records && read_at(b->fd, hdr, sizeof(hdr), b->head) == 0)
		b->oldest_ns = get_be64(hdr + 4);
	give_back(b);
	return 1;
}
