/*
 * Runner for the C unit tests (test.h): every test runs in a child process,
 * so a crash or a hang fails that test only, with its own temporary
 * directory under /tmp and its stderr (the store's log lines) captured and
 * shown only when it fails.
 *
 *   unit-tests [-v] [-l] [SUBSTRING]
 *
 * -v shows the captured stderr of passing tests too, -l lists the tests,
 * SUBSTRING runs only the tests whose name contains it. The last line is
 * "N passed, N failed"; the exit status is 1 if anything failed.
 */
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "test.h"

#define MAX_TESTS 512
#define TEST_TIMEOUT_S 120

struct test {
	const char *name;
	test_fn fn;
	const char *file;
	int line;
};

static struct test tests[MAX_TESTS];
static int ntests;

/* SIGINT/SIGTERM/SIGHUP to the runner: kill the test, clean up, then die of it. */
static volatile sig_atomic_t stop_signal;

/* State of the test running in this (child) process. */
static char cur_dir[64];
static bool cur_failed;

void test_register(const char *name, test_fn fn, const char *file, int line)
{
	if (ntests == MAX_TESTS) {
		fprintf(stderr, "unit-tests: more than %d tests, raise MAX_TESTS\n", MAX_TESTS);
		exit(2);
	}
	tests[ntests++] = (struct test){name, fn, file, line};
}

const char *test_dir(void)
{
	return cur_dir;
}

const char *test_path(const char *name)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s/%s", cur_dir, name);
	return path;
}

bool test_failed(void)
{
	return cur_failed;
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	cur_failed = true;
	printf("    %s:%d: ", file, line);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void hex_line(const char *label, const uint8_t *p, size_t len, size_t from)
{
	size_t to = from + 24 < len ? from + 24 : len;

	printf("      %s [%zu bytes] @%zu:", label, len, from);
	for (size_t i = from; i < to; i++)
		printf(" %02x", p[i]);
	printf("%s  |", to < len ? " ..." : "");
	for (size_t i = from; i < to; i++)
		putchar(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '.');
	printf("|\n");
}

void test_fail_mem(const char *file, int line, const char *what, const void *got, size_t got_len,
		   const void *want, size_t want_len)
{
	const uint8_t *g = got, *w = want;
	size_t n = got_len < want_len ? got_len : want_len, at = 0;

	if (!g || !w) {
		test_fail(file, line, "%s: NULL buffer (got %p, want %p)", what, got, want);
		return;
	}
	while (at < n && g[at] == w[at])
		at++;
	test_fail(file, line, "%s: buffers differ at byte %zu (lengths %zu and %zu)", what, at,
		  got_len, want_len);
	at = at > 8 ? at - 8 : 0;
	hex_line("got ", g, got_len, at);
	hex_line("want", w, want_len, at);
	fflush(stdout);
}

static int remove_entry(const char *path, const struct stat *sb UNUSED, int flag UNUSED,
			struct FTW *ftw UNUSED)
{
	if (remove(path))
		fprintf(stderr, "unit-tests: cannot remove %s: %s\n", path, strerror(errno));
	return 0;
}

static void on_stop_signal(int sig)
{
	stop_signal = sig;
}

static void catch_stop_signals(void (*handler)(int))
{
	struct sigaction sa = {.sa_handler = handler}; /* no SA_RESTART: waitpid returns */

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

static int by_file_and_line(const void *a, const void *b)
{
	const struct test *x = a, *y = b;
	int c = strcmp(x->file, y->file);

	return c ? c : x->line - y->line;
}

/* Copy what the test wrote to stderr to stdout, indented. */
static void show_log(FILE *log)
{
	char line[1024];

	fflush(log);
	rewind(log);
	while (fgets(line, sizeof(line), log))
		printf("    | %s%s", line, strchr(line, '\n') ? "" : "\n");
}

/* Run one test in a child; true if it passed. */
static bool run_one(const struct test *t, bool verbose)
{
	FILE *log = tmpfile();
	bool passed = false;
	int status;
	pid_t pid;

	snprintf(cur_dir, sizeof(cur_dir), "/tmp/sealtrail-unit-XXXXXX");
	if (!log || !mkdtemp(cur_dir)) {
		printf("    cannot set up %s: %s\n", t->name, strerror(errno));
		if (log)
			fclose(log);
		return false;
	}
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		catch_stop_signals(SIG_DFL);
		dup2(fileno(log), STDERR_FILENO);
		alarm(TEST_TIMEOUT_S);
		cur_failed = false;
		t->fn();
		fflush(stdout);
		fflush(stderr);
		_exit(cur_failed ? 1 : 0);
	}
	while (pid > 0 && waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			printf("    waitpid: %s\n", strerror(errno));
			pid = 0;
		} else if (stop_signal) {
			kill(pid, SIGKILL);
		}
	}
	if (pid < 0) {
		printf("    fork: %s\n", strerror(errno));
	} else if (pid == 0) {
		/* waitpid failed, said so above */
	} else if (WIFSIGNALED(status)) {
		printf("    %s:%d: %s killed by signal %d (%s)\n", t->file, t->line, t->name,
		       WTERMSIG(status),
		       WTERMSIG(status) == SIGALRM ? "timed out" : strsignal(WTERMSIG(status)));
	} else {
		passed = WEXITSTATUS(status) == 0;
	}
	if (!passed || verbose)
		show_log(log);
	fclose(log);
	nftw(cur_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	printf("%s %s\n", passed ? "PASS" : "FAIL", t->name);
	fflush(stdout);
	return passed;
}

int main(int argc, char **argv)
{
	const char *filter = NULL;
	bool verbose = false, list = false;
	int passed = 0, failed = 0, opt;

	while ((opt = getopt(argc, argv, "vlh")) != -1) {
		switch (opt) {
		case 'v':
			verbose = true;
			break;
		case 'l':
			list = true;
			break;
		default:
			fprintf(stderr,
				"usage: %s [-v] [-l] [SUBSTRING]\n"
				"  run the unit tests whose name contains SUBSTRING (all if none)\n"
				"  -v  show what passing tests logged too\n"
				"  -l  list the tests instead of running them\n",
				argv[0]);
			return opt == 'h' ? 0 : 2;
		}
	}
	if (optind < argc)
		filter = argv[optind];
	qsort(tests, ntests, sizeof(tests[0]), by_file_and_line);
	setvbuf(stdout, NULL, _IOLBF, 0);
	catch_stop_signals(on_stop_signal);
	for (int i = 0; i < ntests && !stop_signal; i++) {
		if (filter && !strstr(tests[i].name, filter))
			continue;
		if (list) {
			printf("%s\n", tests[i].name);
			continue;
		}
		if (run_one(&tests[i], verbose))
			passed++;
		else
			failed++;
	}
	if (list)
		return 0;
	if (stop_signal) {
		printf("interrupted by signal %d\n", (int)stop_signal);
		catch_stop_signals(SIG_DFL);
		raise(stop_signal);
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
