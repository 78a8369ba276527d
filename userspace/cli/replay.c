/* `sealtrail replay` and `sealtrail export`: the recorded terminal output. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/log.h"

struct replay {
	int fd;
	double speed;
	uint64_t at_ns; /* output before start + at is written at once */
	uint64_t start_ns;
	uint64_t prev_ns; /* time of the previous chunk */
};

static int replay_chunk(void *arg, const struct chunk *ch)
{
	struct replay *r = arg;

	if (r->speed > 0 && ch->wall_ns > r->prev_ns && ch->wall_ns >= r->start_ns + r->at_ns) {
		uint64_t from =
		    r->prev_ns > r->start_ns + r->at_ns ? r->prev_ns : r->start_ns + r->at_ns;
		double secs = (double)(ch->wall_ns - from) / 1e9 / r->speed;
		struct timespec ts = {(time_t)secs, (long)((secs - floor(secs)) * 1e9)};

		if (r->prev_ns)
			while (nanosleep(&ts, &ts) && errno == EINTR)
				;
	}
	if (ch->wall_ns > r->prev_ns)
		r->prev_ns = ch->wall_ns;
	return write_all(r->fd, ch->data, ch->len);
}

/*
 * The window size of the first write (0: none recorded). The first output
 * record of a pty always says it, so looking further would only read a
 * session recorded without sizes to its end.
 */
static int first_winsize(void *arg, const struct chunk *ch)
{
	*(uint32_t *)arg = ch->winsize;
	return CHUNK_STOP;
}

/*
 * Full-screen output replayed in a smaller terminal than it was drawn for
 * looks broken: say so (on stderr) before playing.
 */
static void warn_if_smaller(struct cli *c, const char *id)
{
	struct winsize ws;
	uint32_t rec = 0;

	if (!isatty(STDOUT_FILENO) || ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) || !ws.ws_col ||
	    cli_each_chunk(c, id, 1u << STREAM_OUT, first_winsize, &rec) || !rec)
		return;
	if ((rec & 0xffff) > ws.ws_col || rec >> 16 > ws.ws_row)
		fprintf(stderr,
			"sealtrail: session %s was recorded in a %ux%u terminal, this one is"
			" %ux%u: full-screen output may look broken (export --format asciicast"
			" keeps the size)\n",
			id, rec & 0xffff, rec >> 16, ws.ws_col, ws.ws_row);
}

int cmd_replay(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"speed", required_argument, NULL, 's'},
	    {"at", required_argument, NULL, 'a'},
	    CLI_COMMON_OPTS,
	    {0},
	};
	struct replay r = {.fd = STDOUT_FILENO, .speed = 1.0};
	char id[ST_ID_HEX], *end;
	const char *at_arg = NULL;
	double at = 0;
	int opt, err;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 's') {
			r.speed = strtod(optarg, &end);
			if (*end || !*optarg || !isfinite(r.speed) || r.speed < 0 ||
			    (r.speed > 0 && r.speed < 0.001)) {
				log_error(
				    "--speed %s: need 0 (no delays) or a number from 0.001 up",
				    optarg);
				return 2;
			}
		} else if (opt == 'a') {
			at_arg = optarg;
			at = strtod(optarg, &end);
			if (*end || !*optarg || !isfinite(at) || at < 0) {
				log_error("--at %s: need seconds from the session start", optarg);
				return 2;
			}
			if (at > 1e9)
				at = 1e9; /* 31 years: past any session's end */
		} else if (cli_common_opt(c, opt)) {
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: sealtrail replay SESSION [--speed X] [--at SECONDS]\n");
		return 2;
	}
	r.at_ns = (uint64_t)(at * 1e9);
	if (cli_open(c))
		return 1;
	err = cli_session_id(c, argv[optind], id);
	err = err ?: cli_session_start(c, id, &r.start_ns, NULL, 0);
	if (!err)
		warn_if_smaller(c, id);
	/* a terminal's output, or what a command wrote to stdout and stderr */
	err = err ?: cli_each_chunk(c, id, STREAMS_OUTPUT | 1u << STREAM_STDERR, replay_chunk, &r);
	if (!err && r.at_ns && r.prev_ns < r.start_ns + r.at_ns)
		fprintf(stderr,
			"sealtrail: --at %s: session %s has no output after %.3f s; all of it was"
			" written at once\n",
			at_arg, id, r.prev_ns > r.start_ns ? (r.prev_ns - r.start_ns) / 1e9 : 0.0);
	store_close(&c->store);
	return err ? 1 : 0;
}

struct asciicast {
	FILE *out;
	uint64_t start_ns;
	uint64_t last_ns;
	uint32_t winsize; /* rows << 16 | cols the player has now */
	uint8_t carry[5]; /* an incomplete UTF-8 sequence at the end of a chunk */
	size_t ncarry;
	struct buf line;
	struct buf data;
};

/* Bytes at the end of p that start a UTF-8 sequence the chunk cuts short. */
static size_t utf8_incomplete_tail(const uint8_t *p, size_t len)
{
	for (size_t back = 1; back <= 3 && back <= len; back++) {
		uint8_t c = p[len - back];
		size_t need;

		if ((c & 0xc0) == 0x80)
			continue; /* continuation byte: look further back */
		need = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 1;
		return need > back ? back : 0;
	}
	return 0;
}

static int asciicast_chunk(void *arg, const struct chunk *ch)
{
	struct asciicast *a = arg;
	size_t tail;

	/* a resize: asciicast's "r" event, COLSxROWS */
	if (ch->winsize && ch->winsize != a->winsize) {
		a->winsize = ch->winsize;
		a->line.len = 0;
		buf_addf(&a->line, "[%.6f, \"r\", \"%ux%u\"]\n",
			 ch->wall_ns > a->start_ns ? (double)(ch->wall_ns - a->start_ns) / 1e9
						   : 0.0,
			 ch->winsize & 0xffff, ch->winsize >> 16);
		if (fwrite(a->line.data, 1, a->line.len, a->out) != a->line.len)
			return -EIO;
	}

	a->last_ns = ch->wall_ns;
	a->data.len = 0;
	buf_add(&a->data, a->carry, a->ncarry);
	buf_add(&a->data, ch->data, ch->len);
	tail = ch->len ? utf8_incomplete_tail(a->data.data, a->data.len) : 0;
	a->ncarry = tail;
	memcpy(a->carry, a->data.data + a->data.len - tail, tail);
	a->data.len -= tail;
	if (!a->data.len)
		return 0;
	a->line.len = 0;
	buf_addf(&a->line, "[%.6f, \"o\", ",
		 ch->wall_ns > a->start_ns ? (double)(ch->wall_ns - a->start_ns) / 1e9 : 0.0);
	json_add_string(&a->line, a->data.data, a->data.len);
	buf_addf(&a->line, "]\n");
	return fwrite(a->line.data, 1, a->line.len, a->out) == a->line.len ? 0 : -EIO;
}

struct raw_out {
	int fd;
	uint64_t bytes;
};

static int raw_chunk(void *arg, const struct chunk *ch)
{
	struct raw_out *r = arg;

	r->bytes += ch->len;
	return write_all(r->fd, ch->data, ch->len);
}

int cmd_export(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"format", required_argument, NULL, 'f'},
	    {"output", required_argument, NULL, 'o'},
	    {"stream", required_argument, NULL, 'S'},
	    CLI_COMMON_OPTS,
	    {0},
	};
	const char *format = "asciicast", *output = NULL;
	int opt, err, fd = STDOUT_FILENO;
	unsigned streams = STREAMS_OUTPUT;
	char id[ST_ID_HEX];

	optind = 1;
	while ((opt = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		if (opt == 'f') {
			format = optarg;
		} else if (opt == 'o') {
			output = optarg;
		} else if (opt == 'S') {
			if (!strcmp(optarg, "stdin"))
				streams = 1u << STREAM_STDIN;
			else if (!strcmp(optarg, "stdout"))
				streams = 1u << STREAM_STDOUT;
			else if (!strcmp(optarg, "stderr"))
				streams = 1u << STREAM_STDERR;
			else if (!strcmp(optarg, "out") || !strcmp(optarg, "output"))
				streams = STREAMS_OUTPUT;
			else if (!strcmp(optarg, "in") || !strcmp(optarg, "input"))
				streams = STREAMS_INPUT;
			else {
				log_error("--stream %s: need out, in, stdout, stderr or stdin",
					  optarg);
				return 2;
			}
		} else if (cli_common_opt(c, opt)) {
			return 2;
		}
	}
	if (strcmp(format, "asciicast") && strcmp(format, "raw")) {
		log_error("--format %s: need asciicast or raw", format);
		return 2;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: sealtrail export SESSION [--format asciicast|raw]"
				" [--stream out|in|stdout|stderr|stdin] [--output FILE]\n");
		return 2;
	}
	if (cli_open(c))
		return 1;
	err = cli_session_id(c, argv[optind], id);
	if (err)
		goto out;
	if (output) {
		fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0) {
			log_error("--output %s: %s", output, strerror(errno));
			err = -errno;
			goto out;
		}
	}
	if (!strcmp(format, "raw")) {
		struct raw_out r = {.fd = fd};

		err = cli_each_chunk(c, id, streams, raw_chunk, &r);
		if (!err && !r.bytes)
			fprintf(stderr, "sealtrail: session %s recorded no bytes on that stream\n",
				id);
	} else {
		struct asciicast a = {0};
		char title[128], term[64];
		struct buf env = {0};

		a.out = fdopen(dup(fd), "w");
		if (!a.out) {
			err = -errno;
			goto out;
		}
		err = cli_session_start(c, id, &a.start_ns, term, sizeof(term));
		/* the size the terminal had first (80x24 if none was recorded) */
		err = err ?: cli_each_chunk(c, id, streams, first_winsize, &a.winsize);
		if (!a.winsize)
			a.winsize = 24u << 16 | 80u;
		snprintf(title, sizeof(title), "sealtrail session %s", id);
		/* "env" only with the TERM the client sent: a guess would mislead */
		if (term[0]) {
			buf_addf(&env, ", \"env\": {\"TERM\": ");
			json_add_string(&env, (const uint8_t *)term, strlen(term));
			buf_addf(&env, "}");
		}
		fprintf(a.out,
			"{\"version\": 2, \"width\": %u, \"height\": %u, \"timestamp\": %llu,"
			" \"title\": \"%s\"%s}\n",
			a.winsize & 0xffff, a.winsize >> 16,
			(unsigned long long)(a.start_ns / 1000000000ull), title,
			env.data ? (char *)env.data : "");
		buf_free(&env);
		err = err ?: cli_each_chunk(c, id, streams, asciicast_chunk, &a);
		if (!err && a.ncarry) {
			/* a sequence cut short by the end of the stream: U+FFFD for it */
			struct chunk last = {.wall_ns = a.last_ns};

			a.carry[a.ncarry++] = 0xff; /* never part of valid UTF-8 */
			err = asciicast_chunk(&a, &last);
		}
		if (fclose(a.out))
			err = err ?: -EIO;
		buf_free(&a.line);
		buf_free(&a.data);
	}
	if (output && close(fd))
		err = err ?: -errno;
out:
	store_close(&c->store);
	return err ? 1 : 0;
}
