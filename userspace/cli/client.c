/*
 * The client half of the access socket (access/request.h): a user who is
 * not root cannot open the store, so `sealtrail` hands its arguments to
 * sealtraild, which checks who is asking, records the request and runs it
 * with the output going straight to this process's stdout and stderr.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "access/request.h"
#include "cli/cli.h"

int cli_remote(const char *path, bool json, int argc, char **argv)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	char *args[REQ_MAX_ARGS + 1];
	int fds[2] = {STDOUT_FILENO, STDERR_FILENO}, n = 0, fd = -1, rc = 1;
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(fds))];
	} ctl = {0};
	struct buf frame = {0};
	struct iovec iov;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	uint8_t status[4];
	size_t got = 0;

	if (json)
		args[n++] = "--json";
	for (int i = 0; i < argc && n < REQ_MAX_ARGS + 1; i++)
		args[n++] = argv[i];
	if (n > REQ_MAX_ARGS || req_encode(&frame, n, args)) {
		fprintf(stderr, "sealtrail: too many or too long arguments for sealtraild\n");
		return 2;
	}
	if (strlen(path) >= sizeof(a.sun_path)) {
		fprintf(stderr, "sealtrail: socket path %s too long\n", path);
		goto out;
	}
	strcpy(a.sun_path, path);
	signal(SIGPIPE, SIG_IGN); /* a daemon that hangs up is reported, not fatal */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		fprintf(stderr,
			"sealtrail: cannot reach sealtraild at %s: %s\n"
			"  only root reads the store directly; others ask sealtraild, which must"
			" be running (see --socket)\n",
			path, strerror(errno));
		goto out;
	}
	/* the first byte carries our stdout and stderr: the command writes to them */
	iov.iov_base = frame.data;
	iov.iov_len = 1;
	m.msg_control = ctl.b;
	m.msg_controllen = sizeof(ctl.b);
	ctl.h.cmsg_level = SOL_SOCKET;
	ctl.h.cmsg_type = SCM_RIGHTS;
	ctl.h.cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(&ctl.h), fds, sizeof(fds));
	if (sendmsg(fd, &m, 0) != 1 || write_all(fd, frame.data + 1, frame.len - 1)) {
		fprintf(stderr, "sealtrail: sending the request to sealtraild at %s: %s\n", path,
			strerror(errno));
		goto out;
	}
	/* the connection stays open while the command runs: closing it stops it */
	while (got < sizeof(status)) {
		ssize_t r = read(fd, status + got, sizeof(status) - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr,
				"sealtrail: sealtraild at %s closed the connection without"
				" an exit status (see its log)\n",
				path);
			goto out;
		}
		got += r;
	}
	rc = get_be32(status) > 255 ? 255 : (int)get_be32(status);
out:
	if (fd >= 0)
		close(fd);
	buf_free(&frame);
	return rc;
}
