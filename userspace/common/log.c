/* Logger: "prefix: level: message" lines on stderr. */
#include <stdarg.h>
#include <stdio.h>

#include "common/log.h"

static enum log_level current_level = LOG_INFO;
static const char *current_prefix = "sealtrail";

void log_set_level(enum log_level level)
{
	current_level = level;
}

void log_set_prefix(const char *prefix)
{
	current_prefix = prefix;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *names[] = {"error", "warning", "info", "debug"};
	va_list ap;

	if (level > current_level)
		return;
	flockfile(stderr); /* one line, also when threads log at once */
	fprintf(stderr, "%s: %s: ", current_prefix, names[level]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	funlockfile(stderr);
}
