/*
 * The collector's once-a-second /proc scan (procfs_list, brief): CPU per
 * scan reading /proc/PID/stat of every process (the baseline, as before)
 * and only of sshd's (as sealtraild scans now), alternated in the same
 * run, with the ratio. More processes make it costlier: run it on a busy
 * machine, or with --spawn N idle children.
 *
 *   build/scan-bench [--rounds N] [--spawn N]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "session/procfs.h"

static bool is_sshd(const char *exe, void *arg)
{
	(void)arg;
	return !strcmp(exe, "/usr/sbin/sshd") || !strcmp(exe, "/usr/sbin/sshd-session");
}

static double cpu_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* CPU seconds per scan over scans scans; *n: processes listed. */
static double scan(bool (*want)(const char *, void *), int scans, size_t *n)
{
	double t0 = cpu_now();

	for (int i = 0; i < scans; i++) {
		struct proc_info *p = NULL;

		if (procfs_list(&p, n, false, want, NULL)) {
			perror("procfs_list");
			exit(1);
		}
		free(p);
	}
	return (cpu_now() - t0) / scans;
}

int main(int argc, char **argv)
{
	int rounds = 5, spawn = 0, scans = 50;
	double all = 0, sshd = 0;
	size_t n_all = 0, n_sshd = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--spawn") && i + 1 < argc)
			spawn = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: scan-bench [--rounds N] [--spawn N]\n");
			return 2;
		}
	}
	for (int i = 0; i < spawn; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			pause();
			_exit(0);
		}
	}
	for (int r = 0; r < rounds; r++) {
		/* alternate which goes first: the machine's noise falls on both */
		double a, s;

		if (r % 2) {
			s = scan(is_sshd, scans, &n_sshd);
			a = scan(NULL, scans, &n_all);
		} else {
			a = scan(NULL, scans, &n_all);
			s = scan(is_sshd, scans, &n_sshd);
		}
		printf("round %d: stat of all %.1f us, of sshd only %.1f us (%zu processes)\n",
		       r + 1, a * 1e6, s * 1e6, n_all);
		all += a;
		sshd += s;
	}
	printf("scan of %zu processes (%zu with an exe): %.1f us CPU as before, %.1f us now: "
	       "%.2fx of before\n",
	       n_all, n_sshd, all / rounds * 1e6, sshd / rounds * 1e6, sshd / all);
	return 0;
}
