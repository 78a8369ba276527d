/*
 * sealtraild's access socket: non-root users run `sealtrail` commands
 * through it. The caller is whoever the kernel says connected
 * (SO_PEERCRED), its role comes from the roles file (access/roles.h), and
 * every request, allowed or not, is appended to the store as a sealed
 * REC_ACCESS record before anything is read for it. An allowed command runs
 * as the sealtrail binary in a child, with --store forced to the daemon's
 * store and the output going straight to the caller's stdout and stderr.
 */
#ifndef SEALTRAIL_DAEMON_ACCESS_H
#define SEALTRAIL_DAEMON_ACCESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "access/request.h"
#include "store/store.h"

#define ACCESS_DEFAULT_SOCKET "/run/sealtrail.sock"
#define ACCESS_MAX_CONNS 16

struct access_conn {
	int fd; /* -1: free slot */
	pid_t pid, child; /* the caller (SO_PEERCRED); the command's process */
	uid_t uid;
	gid_t gid;
	int out_fd, err_fd; /* the caller's stdout and stderr */
	int in_fd; /* -1, or a file the caller opened for `--against -` / `--decode -` */
	uint64_t deadline_ns; /* CLOCK_MONOTONIC: the whole request must be in by then */
	struct req_parser req;
};

/*
 * Refused requests are recorded one by one up to ACCESS_DENY_BURST at once
 * per uid, then ACCESS_DENY_PER_S per second; past that they are counted
 * and recorded as one record per uid every ACCESS_DENY_SUMMARY_S (and at
 * shutdown): anyone may connect, and must not fill the store or keep the
 * recording loop busy with synced records.
 */
#define ACCESS_DENY_BURST 20
#define ACCESS_DENY_PER_S 1
#define ACCESS_DENY_SUMMARY_S 10
#define ACCESS_LIMITS 64

struct access_limit {
	bool used;
	uid_t uid;
	gid_t gid;
	uint64_t tat_ns; /* when the bucket is full again (GCRA) */
	uint64_t suppressed; /* refused and not yet recorded */
	uint64_t first_ns; /* CLOCK_MONOTONIC of the first of them */
	enum access_role role; /* the caller's role at the last of them */
};

struct access_server {
	int listen_fd;
	char *path;
	dev_t dev;
	ino_t ino;
	const char *roles_path;
	const char *cli_path;
	const char *host;
	struct store *store;
	struct access_conn conns[ACCESS_MAX_CONNS];
	struct access_limit limits[ACCESS_LIMITS];
};

/*
 * Listen on path (mode 0666: authorization is by SO_PEERCRED). A stale
 * socket is replaced; a live one (another sealtraild) is left alone and
 * -EADDRINUSE returned.
 */
int access_server_open(struct access_server *s, const char *path, const char *roles_path,
		       const char *cli_path, struct store *st);
/* Accept, read, serve and reap without blocking; call once per loop turn. */
void access_server_poll(struct access_server *s);
/* Stop listening; running commands are killed (SIGTERM) and reaped. */
void access_server_close(struct access_server *s);

#endif
