/*
 * session/procfs.c: the /proc/PID/stat parser. The kernel writes the line,
 * but its comm is whatever the program named itself (prctl PR_SET_NAME,
 * or its file name): spaces, parentheses and digits included.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "session/procfs.h"
#include "test.h"

/* A stat line as the kernel prints it, with this comm and these fields. */
static void stat_line(char *out, size_t size, const char *comm, unsigned ppid, unsigned tty,
		      unsigned long long start)
{
	snprintf(out, size,
		 "4242 (%s) S %u 4242 4242 %u 4242 4194560 100 0 0 0 1 2 0 0 20 0 1 0 %llu"
		 " 9000000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
		 comm, ppid, tty, start);
}

static void expect_fields(const char *file, int line, const char *comm)
{
	char text[512];
	uint32_t ppid = 0, tty = 0;
	uint64_t start = 0;
	int rc;

	stat_line(text, sizeof(text), comm, 31337, 34817, 123456789012ull);
	rc = procfs_parse_stat(text, &ppid, &tty, &start);
	if (rc || ppid != 31337 || tty != 34817 || start != 123456789012ull)
		test_fail(file, line,
			  "comm \"%s\": rc %d, ppid %u, tty %u, start %llu (want 0, 31337, 34817,"
			  " 123456789012)",
			  comm, rc, ppid, tty, (unsigned long long)start);
}

TEST(procfs_stat_fields_whatever_the_comm)
{
	expect_fields(__FILE__, __LINE__, "sshd");
	expect_fields(__FILE__, __LINE__, "a b c");
	/* a program that names itself like the rest of the line */
	expect_fields(__FILE__, __LINE__, "x) R 1 2 3");
	expect_fields(__FILE__, __LINE__, ") S 7 7 7 7");
	expect_fields(__FILE__, __LINE__, "((((");
	expect_fields(__FILE__, __LINE__, "))))");
	expect_fields(__FILE__, __LINE__, "");
}

TEST(procfs_stat_refuses_what_is_not_a_stat_line)
{
	static const char *const bad[] = {
	    "",
	    "4242",
	    "4242 (cat",
	    "4242 (cat)",
	    "4242 (cat) ",
	    "4242 (cat) S",
	    "4242 (cat) S 1 2 3",
	    "4242 (cat)S 1 1 1 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 5 ",
	    "4242 (cat) S x 1 1 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 5 ",
	    "4242 (cat) S 1 1 1 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 5x",
	};
	uint32_t ppid, tty;
	uint64_t start;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (procfs_parse_stat(bad[i], &ppid, &tty, &start) != -EINVAL)
			test_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
}

TEST(procfs_stat_of_this_process)
{
	char text[1024];
	uint32_t ppid = 0, tty;
	uint64_t start = 0;

	if (!ASSERT_OK(read_text_file("/proc/self/stat", text, sizeof(text)), "read"))
		return;
	ASSERT_OK(procfs_parse_stat(text, &ppid, &tty, &start), "parse");
	ASSERT_EQ(ppid, (uint32_t)getppid(), "ppid");
	ASSERT_NEQ(start, 0, "start time");
}

static bool is_this_exe(const char *exe, void *arg)
{
	return !strcmp(exe, arg);
}

static const struct proc_info *listed(const struct proc_info *p, size_t n, uint32_t pid)
{
	for (size_t i = 0; i < n; i++)
		if (p[i].pid == pid)
			return &p[i];
	return NULL;
}

/*
 * The scan every second: exe of all, parent and start only where want()
 * says so; without want() (or full) every process, kernel threads too.
 */
TEST(procfs_list_reads_stat_only_where_wanted)
{
	char self[256];
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	struct proc_info *p = NULL;
	const struct proc_info *me, *other;
	size_t n = 0;

	if (!ASSERT_GT(len, 0, "readlink /proc/self/exe"))
		return;
	self[len] = 0;
	if (!ASSERT_OK(procfs_list(&p, &n, false, is_this_exe, self), "brief list, wanted"))
		return;
	me = listed(p, n, getpid());
	/* any process running another program (the shell that started us) */
	for (other = p; other < p + n && !strcmp(other->exe, self); other++)
		;
	if (other == p + n)
		other = NULL;
	if (ASSERT_TRUE(me != NULL, "this process listed")) {
		ASSERT_STREQ(me->exe, self, "its exe");
		ASSERT_EQ(me->ppid, (uint32_t)getppid(), "its parent, read: it was wanted");
		ASSERT_NEQ(me->start_boot_ns, 0, "its start");
	}
	if (ASSERT_TRUE(other != NULL, "a process of another exe listed")) {
		ASSERT_TRUE(other->exe[0] != 0, "with its exe");
		ASSERT_EQ(other->ppid, 0, "but no stat read: not wanted");
		ASSERT_EQ(other->start_boot_ns, 0, "no start either");
	}
	for (size_t i = 0; i < n; i++)
		if (!p[i].exe[0])
			ASSERT_EQ(p[i].pid, 0, "no process without an exe (kernel threads) listed");
	free(p);
	p = NULL;
	if (!ASSERT_OK(procfs_list(&p, &n, false, NULL, NULL), "brief list of all"))
		return;
	/* kernel threads, where there are (not in every pid namespace), listed too */
	if (!access("/proc/2/comm", F_OK) && listed(p, n, 2) == NULL)
		ASSERT_TRUE(false, "pid 2 listed without want()");
	me = listed(p, n, getpid());
	if (ASSERT_TRUE(me != NULL, "this process listed"))
		ASSERT_EQ(me->ppid, (uint32_t)getppid(), "its parent");
	free(p);
}

/* procfs_command() on argv as /proc/PID/cmdline holds it (a NUL after each). */
static const char *command_of(const char *argv, size_t n, bool shell, bool truncated)
{
	static char buf[256], cmd[64];

	memcpy(buf, argv, n);
	procfs_command(buf, (int)n, shell, truncated, cmd, sizeof(cmd));
	return cmd;
}
#define COMMAND(lit, shell, truncated) command_of(lit, sizeof(lit), shell, truncated)

TEST(procfs_command_as_ssh_gave_it)
{
	ASSERT_STREQ(COMMAND("bash\0-c\0cd /srv && ls -la", true, false), "cd /srv && ls -la",
		     "the user's shell running SHELL -c cmd: cmd");
	ASSERT_STREQ(COMMAND("python3\0-c\0print(1)", false, false), "python3 -c print(1)",
		     "another program's -c is one of its arguments");
	ASSERT_STREQ(COMMAND("-bash", true, false), "", "a login shell: no command");
	ASSERT_STREQ(COMMAND("/usr/lib/openssh/sftp-server", false, false),
		     "/usr/lib/openssh/sftp-server", "a program alone");
	ASSERT_STREQ(COMMAND("rsync\0--server\0-vlogDtpre.iLsfxCIvu\0.\0/srv/in", false, true),
		     "rsync --server -vlogDtpre.iLsfxCIvu . /srv/in [truncated]",
		     "arguments joined, a cut marked");
	ASSERT_STREQ(COMMAND("bash\0-c", true, false), "bash -c", "-c without its argument");
	ASSERT_STREQ(
	    COMMAND("0123456789012345678901234567890123456789012345678901234567890123456789", false,
		    false),
	    "012345678901234567890123456789012345678901234567890123456789012",
	    "cut to the output's size");
	ASSERT_STREQ(command_of("", 0, true, false), "", "nothing read");
}

TEST(procfs_env_finds_the_first_exact_name)
{
	static const char env[] =
	    "TERMINAL=no\0XTERM=no\0TERM=xterm-256color\0TERM=second\0PATH=/bin";
	static const char cut[] = "A=1\0TERM=vt2"; /* no NUL after the last */
	char out[16];

	ASSERT_TRUE(procfs_env_find(env, sizeof(env) - 1, "TERM", out, sizeof(out)), "found");
	ASSERT_STREQ(out, "xterm-256color", "TERM, not TERMINAL nor XTERM");
	ASSERT_TRUE(procfs_env_find(env, sizeof(env) - 1, "PATH", out, 4), "last entry");
	ASSERT_STREQ(out, "/bi", "cut to the output");
	ASSERT_TRUE(procfs_env_find(cut, sizeof(cut) - 1, "TERM", out, sizeof(out)),
		    "unterminated");
	ASSERT_STREQ(out, "vt2", "up to the end of what was read");
	ASSERT_FALSE(procfs_env_find(env, sizeof(env) - 1, "HOME", out, sizeof(out)), "absent");
	ASSERT_FALSE(procfs_env_find("TERM", 4, "TERM", out, sizeof(out)), "a name without =");
	ASSERT_TRUE(procfs_env_find("TERM=", 5, "TERM", out, sizeof(out)), "an empty value");
	ASSERT_STREQ(out, "", "is empty");
	ASSERT_FALSE(procfs_env_find("TERM=x", 6, "TERM", out, 0), "no room at all");
	ASSERT_FALSE(procfs_env_find("", 0, "TERM", out, sizeof(out)), "nothing read");
}

/* Write text to test_dir()/rel, making its directories. */
static void put_file(const char *rel, const char *text)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", test_dir(), rel);
	for (char *p = path + strlen(test_dir()) + 1; (p = strchr(p, '/')); p++) {
		*p = 0;
		mkdir(path, 0755);
		*p = '/';
	}
	f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f))
		test_fail(__FILE__, __LINE__, "cannot write %s", path);
}

static uint64_t limit_of(const char *proc_cgroup)
{
	char root[512];

	put_file("self-cgroup", proc_cgroup);
	snprintf(root, sizeof(root), "%s/cg", test_dir());
	return procfs_cgroup_memory_limit(test_path("self-cgroup"), root);
}

/*
 * The memory limit of the collector's cgroup, which its backlog's memfd
 * is charged to: on v2 the lowest memory.max or memory.high on the way
 * up, on v1 (here, hybrid) the hierarchical limit; "max" and v1's
 * "unlimited" are no limit.
 */
TEST(procfs_cgroup_memory_limit_v1_and_v2)
{
	put_file("cg/system.slice/memory.max", "max\n");
	put_file("cg/system.slice/memory.high", "805306368\n");
	put_file("cg/system.slice/sealtraild.service/memory.max", "1073741824\n");
	put_file("cg/system.slice/sealtraild.service/memory.high", "max\n");
	ASSERT_EQ(limit_of("0::/system.slice/sealtraild.service\n"), 805306368,
		  "v2: the parent's memory.high is lower");
	put_file("cg/system.slice/sealtraild.service/memory.max", "268435456\n");
	ASSERT_EQ(limit_of("0::/system.slice/sealtraild.service\n"), 268435456,
		  "v2: its own memory.max is lower");
	ASSERT_EQ(limit_of("0::/\n"), 0, "v2: the root has no limit");
	ASSERT_EQ(limit_of("0::/user.slice\n"), 0, "v2: no files, no limit");
	put_file("cg/other/memory.max", "max\n");
	ASSERT_EQ(limit_of("0::/other\n"), 0, "v2: max is no limit");

	put_file("cg/memory/sess/memory.stat",
		 "cache 0\nrss 4096\nhierarchical_memory_limit 536870912\n"
		 "hierarchical_memsw_limit 9223372036854771712\n");
	put_file("cg/memory/free/memory.stat", "cache 0\n"
					       "hierarchical_memory_limit 9223372036854771712\n");
	ASSERT_EQ(limit_of("9:name=systemd:/\n4:memory:/sess\n3:cpuset:/\n0::/\n"), 536870912,
		  "v1: the hierarchical limit");
	ASSERT_EQ(limit_of("5:cpu,memory:/sess\n0::/other\n"), 536870912,
		  "v1: memory among other controllers, and ahead of v2");
	ASSERT_EQ(limit_of("4:memory:/free\n0::/system.slice/sealtraild.service\n"), 0,
		  "v1 unlimited: no limit (v1 holds the memory controller)");
	ASSERT_EQ(limit_of("4:memory:/gone\n"), 0, "v1: no memory.stat, no limit");
	ASSERT_EQ(limit_of("garbage\n::\n4:memory\n"), 0, "lines that are not cgroups");
	ASSERT_EQ(procfs_cgroup_memory_limit("/nonexistent/cgroup", "/sys/fs/cgroup"), 0,
		  "no /proc/PID/cgroup");
}
