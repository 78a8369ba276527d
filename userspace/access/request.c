/* Framing of socket requests, and which commands a role may run (request.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access/request.h"
#include "store/record.h"

int req_encode(struct buf *out, int argc, char *const *argv)
{
	size_t body = 2;
	uint8_t h[4];
	int err;

	if (argc < 1 || argc > REQ_MAX_ARGS)
		return -E2BIG;
	for (int i = 0; i < argc; i++) {
		size_t n = strlen(argv[i]);

		if (n > REQ_MAX_ARG)
			return -E2BIG;
		body += 2 + n;
	}
	if (body > REQ_MAX_BODY)
		return -E2BIG;
	put_be32(h, body);
	err = buf_add(out, h, 4);
	put_be16(h, argc);
	err = err ?: buf_add(out, h, 2);
	for (int i = 0; !err && i < argc; i++) {
		size_t n = strlen(argv[i]);

		put_be16(h, n);
		err = buf_add(out, h, 2) ?: buf_add(out, argv[i], n);
	}
	return err;
}

static int bad(struct req_parser *p, const char *why)
{
	snprintf(p->err, sizeof(p->err), "%s", why);
	return -EBADMSG;
}

static int parse_body(struct req_parser *p, const uint8_t *b, size_t len)
{
	size_t off = 2;
	unsigned argc;

	if (len < 2)
		return bad(p, "request body shorter than its argument count");
	argc = get_be16(b);
	if (argc < 1 || argc > REQ_MAX_ARGS)
		return bad(p, "request has no arguments or more than 64");
	for (unsigned i = 0; i < argc; i++) {
		unsigned n;

		if (len - off < 2)
			return bad(p, "request ends inside an argument's length");
		n = get_be16(b + off);
		off += 2;
		if (n > REQ_MAX_ARG || n > len - off)
			return bad(p,
				   "request argument longer than 4096 bytes or than the request");
		if (memchr(b + off, 0, n))
			return bad(p, "request argument holds a NUL byte");
		p->argv[i] = strndup((const char *)b + off, n);
		if (!p->argv[i])
			return bad(p, "out of memory");
		p->argc = i + 1;
		off += n;
	}
	if (off != len)
		return bad(p, "bytes after the request's last argument");
	p->argv[p->argc] = NULL;
	return 1;
}

int req_feed(struct req_parser *p, const uint8_t *data, size_t len)
{
	size_t want = 4;

	if (p->err[0])
		return -EBADMSG;
	if (p->argc)
		return len ? bad(p, "bytes after a complete request") : 1;
	/* never buffer more than the frame says it has */
	while (len) {
		size_t take;

		if (p->in.len >= 4) {
			if (get_be32(p->in.data) > REQ_MAX_BODY)
				return bad(p, "request longer than 64 KiB");
			want = 4 + (size_t)get_be32(p->in.data);
		}
		if (p->in.len == want)
			break;
		take = want - p->in.len < len ? want - p->in.len : len;
		if (buf_add(&p->in, data, take))
			return bad(p, "out of memory");
		data += take;
		len -= take;
	}
	if (p->in.len < 4)
		return 0;
	if (get_be32(p->in.data) > REQ_MAX_BODY)
		return bad(p, "request longer than 64 KiB");
	if (p->in.len < 4 + (size_t)get_be32(p->in.data))
		return 0;
	if (len)
		return bad(p, "bytes after a complete request");
	return parse_body(p, p->in.data + 4, p->in.len - 4);
}

void req_free(struct req_parser *p)
{
	for (int i = 0; i < p->argc; i++)
		free(p->argv[i]);
	buf_free(&p->in);
	memset(p, 0, sizeof(*p));
}

const char *access_role_name(enum access_role role)
{
	return role == ROLE_ADMIN ? "admin" : role == ROLE_AUDITOR ? "auditor" : "none";
}

static const struct {
	const char *name;
	enum access_role role;
} commands[] = {
    {"sessions", ROLE_AUDITOR},	  {"events", ROLE_AUDITOR}, {"replay", ROLE_AUDITOR},
    {"export", ROLE_AUDITOR},	  {"gaps", ROLE_AUDITOR},   {"status", ROLE_AUDITOR},
    {"checkpoint", ROLE_AUDITOR}, {"verify", ROLE_ADMIN},   {"reindex", ROLE_ADMIN},
    {"access-log", ROLE_ADMIN},	  {"keys", ROLE_ADMIN},	    {"config", ROLE_ADMIN},
};

/* options that name a file or a store: the daemon opens them as root */
static const char *const path_options[] = {
    "store", "auditor-key", "output", "pubkey", "against", "decode", "out",
};

static const char *const stdin_options[] = {"against", "decode"};

int req_stdin_option(const char *arg, const char **value)
{
	const char *name = arg + 2, *eq;
	size_t n;

	if (strncmp(arg, "--", 2) || !arg[2])
		return 0;
	eq = strchr(name, '=');
	n = eq ? (size_t)(eq - name) : strlen(name);
	for (size_t i = 0; i < sizeof(stdin_options) / sizeof(stdin_options[0]); i++) {
		/* spelled out: an abbreviation could be another option's too */
		if (n == strlen(stdin_options[i]) && !strncmp(name, stdin_options[i], n)) {
			*value = eq ? eq + 1 : NULL;
			return eq ? 1 : 2;
		}
	}
	return 0;
}

static int refused_option(const char *arg, char *why)
{
	const char *name, *eq;
	size_t n;

	if (arg[0] != '-' || !arg[1])
		return 0;
	if (arg[1] != '-') {
		/* a short option cluster: export's -o FILE is the only one there is */
		if ((arg[1] >= 'a' && arg[1] <= 'z') || (arg[1] >= 'A' && arg[1] <= 'Z')) {
			snprintf(why, 160, "option %.40s is not available over the socket", arg);
			return -EPERM;
		}
		return 0;
	}
	name = arg + 2;
	eq = strchr(name, '=');
	n = eq ? (size_t)(eq - name) : strlen(name);
	if (!n)
		return 0; /* "--" */
	for (size_t i = 0; i < sizeof(path_options) / sizeof(path_options[0]); i++) {
		if (n <= strlen(path_options[i]) && !strncmp(name, path_options[i], n)) {
			snprintf(why, 160,
				 "option --%s is not available over the socket: sealtraild"
				 " reads its own store and writes to your terminal only",
				 path_options[i]);
			return -EPERM;
		}
	}
	return 0;
}

int access_check_argv(int argc, char *const *argv, const char **cmd, enum access_role *needed,
		      char *why)
{
	int i = 0;

	while (i < argc && !strcmp(argv[i], "--json"))
		i++;
	if (i == argc) {
		snprintf(why, 160, "no command given");
		return -EPERM;
	}
	if (argv[i][0] == '-') {
		snprintf(why, 160, "option %.40s before the command: only --json may come there",
			 argv[i]);
		return -EPERM;
	}
	*cmd = argv[i];
	*needed = ROLE_NONE;
	for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
		if (!strcmp(argv[i], commands[k].name))
			*needed = commands[k].role;
	if (*needed == ROLE_NONE) {
		snprintf(why, 160, "command %.40s is not available over the socket", argv[i]);
		return -EPERM;
	}
	for (i++; i < argc; i++) {
		const char *value;
		int in = req_stdin_option(argv[i], &value);

		if (in == 1 && !strcmp(value, "-"))
			continue; /* --against=- */
		if (in == 2 && i + 1 < argc && !strcmp(argv[i + 1], "-")) {
			i++; /* --against - */
			continue;
		}
		if (refused_option(argv[i], why))
			return -EPERM;
	}
	return 0;
}
