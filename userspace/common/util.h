/* Small helpers shared by daemon, CLI and store: time, hex ids, buffers. */
#ifndef SEALTRAIL_UTIL_H
#define SEALTRAIL_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* A callback's parameter its signature needs and its body does not use. */
#define UNUSED __attribute__((unused))

#define ST_ID_LEN 16
#define ST_ID_HEX (2 * ST_ID_LEN + 1)

/* Growable byte buffer; data is always NUL-terminated for convenience. */
struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

int buf_reserve(struct buf *b, size_t extra);
int buf_add(struct buf *b, const void *data, size_t len);
int buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_free(struct buf *b);
/*
 * Replace what b holds with all that fd gives until its end (EINTR is
 * retried): 0, -errno, or -EFBIG past max bytes (0: no limit).
 */
int buf_read_fd(struct buf *b, int fd, size_t max);
/* The same for the file at path (not "-"; give stdin to buf_read_fd). */
int buf_read_file(struct buf *b, const char *path, size_t max);

void hex_encode(const uint8_t *in, size_t len, char *out);
int hex_decode(const char *in, uint8_t *out, size_t len);

uint64_t clock_ns(clockid_t clock);
/* RFC 3339 UTC with nanoseconds, e.g. 2026-11-24T19:44:56.123456789Z. */
void format_rfc3339(uint64_t wall_ns, char out[40]);
/*
 * Parse a time bound: RFC 3339 (with or without fraction and zone) or a
 * relative age like 90s, 15m, 2h, 7d, 1w meaning that long before now_ns.
 */
int parse_time(const char *s, uint64_t now_ns, uint64_t *wall_ns);

/* JSON string literal of arbitrary bytes (invalid UTF-8 becomes U+FFFD). */
int json_add_string(struct buf *b, const uint8_t *s, size_t len);

int write_all(int fd, const void *data, size_t len);
/* One read(2) of up to size bytes of path (a /proc file): the bytes read, or -errno. */
ssize_t read_file_once(const char *path, void *out, size_t size);
/* Read a small text file into out (NUL-terminated, cut at size - 1). */
int read_text_file(const char *path, char *out, size_t size);
/*
 * Replace dir/name with data through dir/.name.tmp and rename(), so that
 * readers see the old file or the new one (not synced: for status files).
 */
int write_file_replace(const char *dir, const char *name, const void *data, size_t len,
		       unsigned mode);

#endif
