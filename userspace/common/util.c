/* Small helpers shared by daemon, CLI and store. */
#include <ctype.h>
#include <fcntl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

int buf_reserve(struct buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;
	uint8_t *p;

	if (need <= b->cap)
		return 0;
	if (need < b->cap * 2)
		need = b->cap * 2;
	if (need < 64)
		need = 64;
	p = realloc(b->data, need);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = need;
	return 0;
}

int buf_add(struct buf *b, const void *data, size_t len)
{
	if (buf_reserve(b, len))
		return -ENOMEM;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = 0;
	return 0;
}

int buf_read_fd(struct buf *b, int fd, size_t max)
{
	b->len = 0;
	for (;;) {
		ssize_t n;

		if (max && b->len > max)
			return -EFBIG;
		if (buf_reserve(b, 65536))
			return -ENOMEM;
		n = read(fd, b->data + b->len, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		b->len += n;
		b->data[b->len] = 0;
	}
	b->data[b->len] = 0;
	return 0;
}

int buf_read_file(struct buf *b, const char *path, size_t max)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), err;

	if (fd < 0) {
		b->len = 0;
		return -errno;
	}
	err = buf_read_fd(b, fd, max);
	close(fd);
	return err;
}

int buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, n))
		return -ENOMEM;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, n + 1, fmt, ap);
	va_end(ap);
	b->len += n;
	return 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = 0;
}

static int hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int hex_decode(const char *in, uint8_t *out, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		int hi = hex_value(in[2 * i]), lo;

		if (hi < 0)
			return -EINVAL;
		lo = hex_value(in[2 * i + 1]);
		if (lo < 0)
			return -EINVAL;
		out[i] = hi << 4 | lo;
	}
	return in[2 * len] ? -EINVAL : 0;
}

uint64_t clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

void format_rfc3339(uint64_t wall_ns, char out[40])
{
	time_t secs = wall_ns / 1000000000ull;
	struct tm tm;

	gmtime_r(&secs, &tm);
	snprintf(out, 40, "%04u-%02u-%02uT%02u:%02u:%02u.%09uZ",
		 (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
		 (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
		 (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u,
		 (unsigned)(wall_ns % 1000000000ull));
}

static int parse_relative(const char *s, uint64_t now_ns, uint64_t *wall_ns)
{
	char *end;
	unsigned long long n;
	uint64_t unit;

	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || end == s || end[0] == 0 || end[1] != 0)
		return -EINVAL;
	switch (*end) {
	case 's':
		unit = 1;
		break;
	case 'm':
		unit = 60;
		break;
	case 'h':
		unit = 3600;
		break;
	case 'd':
		unit = 86400;
		break;
	case 'w':
		unit = 7 * 86400;
		break;
	default:
		return -EINVAL;
	}
	if (n > now_ns / 1000000000ull / unit)
		return -ERANGE;
	*wall_ns = now_ns - n * unit * 1000000000ull;
	return 0;
}

int parse_time(const char *s, uint64_t now_ns, uint64_t *wall_ns)
{
	struct tm tm = {0};
	const char *p;
	uint64_t frac = 0, scale = 100000000ull;
	long offset = 0;
	time_t secs;

	if (!s || !*s)
		return -EINVAL;
	if (!strchr(s, '-'))
		return parse_relative(s, now_ns, wall_ns);
	/* RFC 3339 5.6: T may be t, or (NOTE) a space */
	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		p = strptime(s, "%Y-%m-%dt%H:%M:%S", &tm);
	if (!p)
		p = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
	if (!p)
		return -EINVAL;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		for (; isdigit((unsigned char)*p); p++) {
			frac += (*p - '0') * scale;
			scale /= 10;
		}
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1, hh, mm;

		/* exactly [+-]HH:MM */
		if (!isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) || p[3] != ':' ||
		    !isdigit((unsigned char)p[4]) || !isdigit((unsigned char)p[5]))
			return -EINVAL;
		hh = (p[1] - '0') * 10 + (p[2] - '0');
		mm = (p[4] - '0') * 10 + (p[5] - '0');
		if (hh > 23 || mm > 59)
			return -EINVAL;
		offset = sign * (hh * 3600L + mm * 60L);
		p += 6;
	} else {
		return -EINVAL; /* RFC 3339 requires a zone */
	}
	if (*p)
		return -EINVAL;
	secs = timegm(&tm) - offset;
	/* before 1970, or past what u64 nanoseconds hold (2554-07-21) */
	if (secs < 0 || (uint64_t)secs > UINT64_MAX / 1000000000ull ||
	    ((uint64_t)secs == UINT64_MAX / 1000000000ull && frac > UINT64_MAX % 1000000000ull))
		return -ERANGE;
	*wall_ns = (uint64_t)secs * 1000000000ull + frac;
	return 0;
}

/* Length of a valid UTF-8 sequence at s, or 0 if it is not one. */
static size_t utf8_sequence(const uint8_t *s, size_t len)
{
	size_t n;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n > len)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

int json_add_string(struct buf *b, const uint8_t *s, size_t len)
{
	int err = buf_add(b, "\"", 1);

	for (size_t i = 0; i < len && !err;) {
		uint8_t c = s[i];
		size_t n;

		if (c == '"' || c == '\\') {
			err = buf_addf(b, "\\%c", c);
			i++;
		} else if (c == '\n') {
			err = buf_add(b, "\\n", 2);
			i++;
		} else if (c == '\r') {
			err = buf_add(b, "\\r", 2);
			i++;
		} else if (c == '\t') {
			err = buf_add(b, "\\t", 2);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			err = buf_addf(b, "\\u%04x", c);
			i++;
		} else if ((n = utf8_sequence(s + i, len - i)) > 0) {
			err = buf_add(b, s + i, n);
			i += n;
		} else {
			err = buf_add(b, "\xef\xbf\xbd", 3);
			i++;
		}
	}
	return err ? err : buf_add(b, "\"", 1);
}

int write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= n;
	}
	return 0;
}

ssize_t read_file_once(const char *path, void *out, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, out, size);
	if (n < 0)
		n = -errno;
	close(fd);
	return n;
}

int read_text_file(const char *path, char *out, size_t size)
{
	ssize_t n = read_file_once(path, out, size - 1);

	if (n < 0)
		return (int)n;
	out[n] = 0;
	return 0;
}

int write_file_replace(const char *dir, const char *name, const void *data, size_t len,
		       unsigned mode)
{
	char path[4200], tmp[4200];
	int fd, err = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	err = fchmod(fd, mode) ? -errno : write_all(fd, data, len);
	if (close(fd) && !err)
		err = -errno;
	if (!err && rename(tmp, path))
		err = -errno;
	if (err)
		unlink(tmp);
	return err;
}
