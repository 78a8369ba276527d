/* Reading the process table and TCP connections from /proc (procfs.h). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "session/procfs.h"

static uint64_t ticks_to_ns(unsigned long long ticks)
{
	static long hz;

	if (!hz)
		hz = sysconf(_SC_CLK_TCK);
	return ticks * (1000000000ull / (hz > 0 ? hz : 100));
}

int procfs_parse_stat(const char *text, uint32_t *ppid, uint32_t *tty_nr, uint64_t *start_ticks)
{
	/* comm, the program's own name, may hold spaces, parentheses and digits */
	const char *p = strrchr(text, ')');
	unsigned long long start;
	unsigned pp, tty;
	int used = 0;

	if (!p || p[1] != ' ' || !p[2] || p[3] != ' ')
		return -EINVAL;
	if (sscanf(p + 4,
		   "%u %*d %*d %u %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu%n",
		   &pp, &tty, &start, &used) != 3 ||
	    !used || (p[4 + used] && p[4 + used] != ' ' && p[4 + used] != '\n'))
		return -EINVAL;
	*ppid = pp;
	*tty_nr = tty;
	*start_ticks = start;
	return 0;
}

/*
 * exe, and pid, ppid, tty and start time unless want() says no: what a
 * scan needs of every process. /proc/PID/stat is the costly read (the
 * kernel builds all 52 fields), the exe link the cheap one. With want(), a
 * process without an exe (a kernel thread, a zombie) is left out: -ENOENT.
 */
static int read_brief(uint32_t pid, struct proc_info *out, bool (*want)(const char *exe, void *arg),
		      void *arg)
{
	char path[64], text[1024];
	uint64_t start;
	ssize_t n;
	int err;

	memset(out, 0, sizeof(*out));
	out->pid = pid;
	out->loginuid = out->sessionid = NO_UID;
	snprintf(path, sizeof(path), "/proc/%u/exe", pid);
	n = readlink(path, out->exe, sizeof(out->exe) - 1);
	if (n <= 0 && want)
		return -ENOENT;
	out->exe[n > 0 ? n : 0] = 0;
	/* an exe replaced on disk reads as "PATH (deleted)" */
	if (n > 10 && !strcmp(out->exe + n - 10, " (deleted)"))
		out->exe[n - 10] = 0;
	if (want && !want(out->exe, arg))
		return 0;
	snprintf(path, sizeof(path), "/proc/%u/stat", pid);
	err = read_text_file(path, text, sizeof(text));
	if (err)
		return err;
	err = procfs_parse_stat(text, &out->ppid, &out->tty_nr, &start);
	if (err)
		return err;
	out->start_boot_ns = ticks_to_ns(start);
	return 0;
}

int procfs_read(uint32_t pid, struct proc_info *out)
{
	char path[64], text[1024], *p;
	int err = read_brief(pid, out, NULL, NULL);

	if (err)
		return err;
	snprintf(path, sizeof(path), "/proc/%u/status", pid);
	if (read_text_file(path, text, sizeof(text)) == 0 && (p = strstr(text, "\nUid:")))
		out->uid = strtoul(p + 5, NULL, 10);
	snprintf(path, sizeof(path), "/proc/%u/loginuid", pid);
	if (read_text_file(path, text, sizeof(text)) == 0)
		out->loginuid = strtoul(text, NULL, 10);
	snprintf(path, sizeof(path), "/proc/%u/sessionid", pid);
	if (read_text_file(path, text, sizeof(text)) == 0)
		out->sessionid = strtoul(text, NULL, 10);
	return 0;
}

int procfs_list(struct proc_info **out, size_t *n, bool full,
		bool (*want)(const char *exe, void *arg), void *arg)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	size_t cap = 0;

	*out = NULL;
	*n = 0;
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		char *end;
		unsigned long pid = strtoul(e->d_name, &end, 10);

		if (*end || !pid)
			continue;
		if (*n == cap) {
			struct proc_info *p =
			    realloc(*out, (cap = cap ? 2 * cap : 256) * sizeof(**out));

			if (!p) {
				closedir(d);
				return -ENOMEM;
			}
			*out = p;
		}
		if ((full ? procfs_read(pid, &(*out)[*n])
			  : read_brief(pid, &(*out)[*n], want, arg)) == 0)
			(*n)++;
	}
	closedir(d);
	return 0;
}

/* Parse "HEX:PORT" of /proc/net/tcp{,6} into text address and port. */
static int parse_addr(const char *s, bool v6, char *ip, size_t size, uint16_t *port)
{
	uint32_t words[4];
	const char *colon = strchr(s, ':');

	if (!colon)
		return -EINVAL;
	for (int i = 0; i < (v6 ? 4 : 1); i++) {
		char word[9];

		memcpy(word, s + 8 * i, 8);
		word[8] = 0;
		/* each 32-bit word is printed in host byte order */
		words[i] = strtoul(word, NULL, 16);
	}
	*port = strtoul(colon + 1, NULL, 16);
	if (v6) {
		struct in6_addr a;

		memcpy(&a, words, sizeof(a));
		if (IN6_IS_ADDR_V4MAPPED(&a))
			return inet_ntop(AF_INET, &a.s6_addr[12], ip, size) ? 0 : -EINVAL;
		return inet_ntop(AF_INET6, &a, ip, size) ? 0 : -EINVAL;
	}
	return inet_ntop(AF_INET, &words[0], ip, size) ? 0 : -EINVAL;
}

static int find_inode(uint32_t pid, const char *table, bool v6, const unsigned long *inodes,
		      size_t ninodes, struct conn_addr *out, unsigned want_state)
{
	char path[64], line[512];
	FILE *f;
	int found = -ENOENT;

	snprintf(path, sizeof(path), "/proc/%u/net/%s", pid, table);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (found && fgets(line, sizeof(line), f)) {
		char local[64], remote[64];
		unsigned state;
		unsigned long inode;

		if (sscanf(line, " %*d: %63s %63s %x %*s %*s %*s %*u %*u %lu", local, remote,
			   &state, &inode) != 4 ||
		    state != want_state)
			continue;
		for (size_t i = 0; i < ninodes; i++) {
			if (inodes[i] != inode)
				continue;
			if (parse_addr(local, v6, out->local_ip, sizeof(out->local_ip),
				       &out->local_port) ||
			    parse_addr(remote, v6, out->source_ip, sizeof(out->source_ip),
				       &out->source_port))
				continue;
			found = 0;
			break;
		}
	}
	fclose(f);
	return found;
}

static size_t socket_inodes(uint32_t pid, unsigned long *inodes, size_t max)
{
	char path[64];
	struct dirent *e;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%u/fd", pid);
	d = opendir(path);
	if (!d)
		return 0;
	while ((e = readdir(d)) && n < max) {
		char link[300], target[64];
		ssize_t len;

		snprintf(link, sizeof(link), "/proc/%u/fd/%s", pid, e->d_name);
		len = readlink(link, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = 0;
		if (sscanf(target, "socket:[%lu]", &inodes[n]) == 1)
			n++;
	}
	closedir(d);
	return n;
}

static int tcp_socket(uint32_t pid, unsigned state, struct conn_addr *out)
{
	unsigned long inodes[64];
	size_t n = socket_inodes(pid, inodes, 64);

	memset(out, 0, sizeof(*out));
	if (!n)
		return -ENOENT;
	if (find_inode(pid, "tcp", false, inodes, n, out, state) == 0)
		return 0;
	return find_inode(pid, "tcp6", true, inodes, n, out, state);
}

int procfs_tcp_conn(uint32_t pid, struct conn_addr *out)
{
	return tcp_socket(pid, 1 /* TCP_ESTABLISHED */, out);
}

bool procfs_tcp_listening(uint32_t pid)
{
	struct conn_addr addr;

	return tcp_socket(pid, 10 /* TCP_LISTEN */, &addr) == 0;
}

int procfs_pts_index(uint32_t tty_nr)
{
	unsigned major = (tty_nr >> 8) & 0xfff,
		 minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);

	/* Unix98 pty slaves: majors 136..143 */
	if (major < 136 || major > 143)
		return -1;
	return (major - 136) * 256 + minor;
}

void procfs_stdio_pipes(uint32_t pid, uint64_t out[3])
{
	for (int fd = 0; fd < 3; fd++) {
		char path[64], link[64];
		unsigned long long ino;
		ssize_t n;

		out[fd] = 0;
		snprintf(path, sizeof(path), "/proc/%u/fd/%d", pid, fd);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		if (sscanf(link, "pipe:[%llu]", &ino) == 1)
			out[fd] = ino;
	}
}

int procfs_cmdline(uint32_t pid, char *out, size_t size)
{
	char path[64];
	ssize_t n;

	if (size < 2)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/%u/cmdline", pid);
	n = read_file_once(path, out, size - 1);
	if (n < 0)
		return (int)n;
	if (n == 0 || out[n - 1])
		out[n++] = 0;
	return (int)n;
}

void procfs_command(char *argv, int n, bool shell, bool truncated, char *cmd, size_t size)
{
	const char *a1 = n > 0 ? memchr(argv, 0, n) : NULL;

	if (!size)
		return;
	cmd[0] = 0;
	if (n <= 0 || argv[0] == '-' || argv[n - 1])
		return; /* none, a login shell, or not as procfs_cmdline() leaves it */
	if (shell && a1 && a1 + 4 < argv + n && !strcmp(a1 + 1, "-c")) {
		snprintf(cmd, size, "%s", a1 + 4);
		return;
	}
	for (int i = 0; i < n - 1; i++)
		if (!argv[i])
			argv[i] = ' ';
	snprintf(cmd, size, "%s%s", argv, truncated ? " [truncated]" : "");
}

bool procfs_env_find(const char *env, size_t n, const char *name, char *out, size_t size)
{
	size_t len = strlen(name);

	for (size_t off = 0; off < n;) {
		const char *e = env + off, *end = memchr(e, 0, n - off);
		size_t elen = end ? (size_t)(end - e) : n - off;

		if (elen > len && e[len] == '=' && !memcmp(e, name, len)) {
			size_t vlen = elen - len - 1;

			if (!size)
				return false;
			if (vlen >= size)
				vlen = size - 1;
			memcpy(out, e + len + 1, vlen);
			out[vlen] = 0;
			return true;
		}
		off += elen + 1;
	}
	return false;
}

bool procfs_env(uint32_t pid, const char *name, char *out, size_t size)
{
	char path[64], env[32768];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%u/environ", pid);
	n = read_file_once(path, env, sizeof(env));
	if (n == (ssize_t)sizeof(env)) {
		/* a full buffer may have cut its last entry: leave that one out */
		while (n > 0 && env[n - 1])
			n--;
	}
	return n > 0 && procfs_env_find(env, n, name, out, size);
}

/* v1 says "no limit" with a number near 2^63 */
#define CGROUP_NO_LIMIT (1ull << 60)

/* The number after "key " in a cgroup v1 memory.stat, or 0. */
static uint64_t stat_value(const char *path, const char *key)
{
	struct buf b = {0};
	uint64_t v = 0;
	size_t klen = strlen(key);

	if (buf_read_file(&b, path, 1 << 16) == 0 && buf_add(&b, "", 1) == 0) {
		for (const char *l = (const char *)b.data; l && *l; l = strchr(l, '\n')) {
			l += *l == '\n';
			if (!strncmp(l, key, klen) && l[klen] == ' ') {
				v = strtoull(l + klen + 1, NULL, 10);
				break;
			}
		}
	}
	buf_free(&b);
	return v;
}

/* A cgroup v2 limit file: its number, or 0 for "max", absent or unreadable. */
static uint64_t limit_file(const char *dir, const char *name)
{
	char path[4200], text[64], *end;
	unsigned long long v;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path) ||
	    read_text_file(path, text, sizeof(text)))
		return 0;
	v = strtoull(text, &end, 10);
	return end != text && (*end == '\n' || !*end) ? v : 0;
}

static uint64_t lower(uint64_t a, uint64_t b)
{
	return !a || (b && b < a) ? b : a;
}

uint64_t procfs_cgroup_memory_limit(const char *proc_cgroup, const char *root)
{
	char text[8192], dir[4200], *line, *save = NULL;
	uint64_t v1 = 0, v2 = 0;
	bool found_v1 = false;

	if (read_text_file(proc_cgroup, text, sizeof(text)))
		return 0;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		/* hierarchy-ID:controller-list:path */
		char *ctl = strchr(line, ':'), *path = ctl ? strchr(ctl + 1, ':') : NULL;
		bool memory = false;

		if (!path || path[1] != '/')
			continue;
		*path++ = 0;
		*ctl++ = 0;
		for (char *c = ctl, *s2 = NULL, *tok; (tok = strtok_r(c, ",", &s2)); c = NULL)
			memory |= !strcmp(tok, "memory");
		if (memory) {
			/* v1: the limit of the cgroup and its ancestors, in memory.stat */
			if ((size_t)snprintf(dir, sizeof(dir), "%s/memory%s/memory.stat", root,
					     path) < sizeof(dir))
				v1 = stat_value(dir, "hierarchical_memory_limit");
			found_v1 = true;
		} else if (!strcmp(line, "0") && !*ctl) {
			/* v2: each of the cgroup and its ancestors (no files at the root) */
			size_t n;

			if ((size_t)snprintf(dir, sizeof(dir), "%s%s", root, path) >= sizeof(dir))
				continue;
			for (n = strlen(dir); n > strlen(root); n = strlen(dir)) {
				v2 = lower(v2, limit_file(dir, "memory.max"));
				v2 = lower(v2, limit_file(dir, "memory.high"));
				while (n > strlen(root) && dir[n - 1] != '/')
					n--;
				dir[n ? n - 1 : 0] = 0;
			}
		}
	}
	if (found_v1)
		return v1 >= CGROUP_NO_LIMIT ? 0 : v1;
	return v2 >= CGROUP_NO_LIMIT ? 0 : v2;
}
