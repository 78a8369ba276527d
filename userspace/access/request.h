/*
 * The request a `sealtrail` client sends to sealtraild over the Unix socket
 * (README.md, "Access for auditors"): its arguments after the program name, framed as
 *
 *   u32 body length (big-endian), then the body:
 *   u16 argc, then argc times: u16 length, that many bytes (no NUL)
 *
 * with the client's stdout and stderr passed as SCM_RIGHTS on the first
 * byte. The reply is one u32: the command's exit status. The daemon parses
 * the frame from untrusted bytes: req_feed() takes them as they come.
 */
#ifndef SEALTRAIL_ACCESS_REQUEST_H
#define SEALTRAIL_ACCESS_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

#define REQ_MAX_ARGS 64
#define REQ_MAX_ARG 4096
#define REQ_MAX_BODY (64u << 10)
/* exit status of a request that was refused (EX_NOPERM of sysexits.h) */
#define REQ_DENIED 77

struct req_parser {
	struct buf in; /* the frame so far, at most 4 + REQ_MAX_BODY bytes */
	int argc; /* once complete: the arguments, NUL-terminated copies */
	char *argv[REQ_MAX_ARGS + 1];
	char err[128];
};

/* Frame argv[0..argc) into out; -E2BIG past the limits. */
int req_encode(struct buf *out, int argc, char *const *argv);
/*
 * Feed bytes of a frame. Returns 0 while more are needed, 1 once the frame
 * is complete (argc, argv set), -EBADMSG (err says why) if the bytes are
 * not a valid frame or go on past its end.
 */
int req_feed(struct req_parser *p, const uint8_t *data, size_t len);
void req_free(struct req_parser *p);

/* Roles, weakest first. */
enum access_role {
	ROLE_NONE = 0,
	ROLE_AUDITOR = 1,
	ROLE_ADMIN = 2,
};
const char *access_role_name(enum access_role role);

/*
 * Options that read a file may read stdin instead ("-"): the caller's
 * client opens the file itself and passes it as the command's stdin.
 * Is arg one of them, spelled out (--against, --decode)? 1 if its value is
 * in it (*value points at it), 2 if the value is the next argument, else 0.
 */
int req_stdin_option(const char *arg, const char **value);

/*
 * May these arguments be run by the daemon, and with which role? Only
 * --json may come before the command; options that name a file or a store
 * (--store, --auditor-key, --output/-o, --pubkey, --against, --decode,
 * --out, and any abbreviation getopt would take for them) are refused,
 * since the daemon reads as root; only `--against -`, `--against=-`,
 * `--decode -` and `--decode=-` pass: the command's stdin is then a file
 * the caller opened itself. Returns 0 and sets *cmd (an argv entry)
 * and *needed, or -EPERM with why (at least 160 bytes) filled in.
 */
int access_check_argv(int argc, char *const *argv, const char **cmd, enum access_role *needed,
		      char *why);

#endif
