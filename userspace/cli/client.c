/*
 * The client half of the access socket (access/request.h): a user who is
 * not root cannot open the store, so `sealtrail` hands its arguments to
 * sealtraild, which checks who is asking, records the request and runs it
 * with the output going straight to this process's stdout and stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "access/request.h"
#include "cli/cli.h"

/*
 * `--against FILE` and `--decode FILE` read a file: sealtraild will not
 * open a path for us (it runs as root), so open it here, as the caller,
 * and hand it over as the command's stdin; the argument becomes "-".
 * Returns the descriptor (STDIN_FILENO for "-"), -1 if there is none, or
 * -2 after saying why the file cannot be read.
 */
static int stdin_file(int n, char **args)
{
	static char inline_arg[32]; /* "--against=-": one such option per request */

	for (int i = 0; i < n; i++) {
		const char *file = NULL;
		int kind = req_stdin_option(args[i], &file), fd;

		if (kind == 2 && i + 1 < n) {
			file = args[i + 1];
			args[i + 1] = "-";
		} else if (kind == 1 && (size_t)(file - args[i]) < sizeof(inline_arg) - 1) {
			snprintf(inline_arg, sizeof(inline_arg), "%.*s-", (int)(file - args[i]),
				 args[i]);
			args[i] = inline_arg;
		} else {
			continue;
		}
		if (!strcmp(file, "-"))
			return STDIN_FILENO;
		fd = open(file, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			fprintf(stderr, "sealtrail: %s: %s\n", file, strerror(errno));
			return -2;
		}
		return fd;
	}
	return -1;
}

int cli_remote(const char *path, bool json, int argc, char **argv)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	char *args[REQ_MAX_ARGS + 1];
	int fds[3] = {STDOUT_FILENO, STDERR_FILENO, -1}, n = 0, fd = -1, rc = 1;
	size_t nfds = 2;
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
	if (n > REQ_MAX_ARGS) {
		fprintf(stderr, "sealtrail: too many or too long arguments for sealtraild\n");
		return 2;
	}
	fds[2] = stdin_file(n, args);
	if (fds[2] == -2)
		return 2;
	if (fds[2] >= 0)
		nfds = 3;
	if (req_encode(&frame, n, args)) {
		fprintf(stderr, "sealtrail: too many or too long arguments for sealtraild\n");
		rc = 2;
		goto out;
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
	ctl.h.cmsg_level = SOL_SOCKET;
	ctl.h.cmsg_type = SCM_RIGHTS;
	m.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
	ctl.h.cmsg_len = CMSG_LEN(nfds * sizeof(int));
	memcpy(CMSG_DATA(&ctl.h), fds, nfds * sizeof(int));
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
	if (fds[2] > STDERR_FILENO)
		close(fds[2]);
	buf_free(&frame);
	return rc;
}
