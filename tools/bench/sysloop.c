// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * N iterations of write(1 byte) + read(1 byte) on a pipe; prints the mean
 * nanoseconds per iteration (two syscalls, each passing sys_enter and
 * sys_exit tracepoints). Built and run by tools/bench/run.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 5000000, i, bad = 0;
	int p[2];
	char c = 'x';
	double t0, t1;

	if (n <= 0 || pipe(p)) {
		perror("sysloop");
		return 1;
	}
	for (i = 0; i < 10000; i++) /* warm up */
		if (write(p[1], &c, 1) != 1 || read(p[0], &c, 1) != 1)
			bad++;
	t0 = now_ns();
	for (i = 0; i < n; i++)
		if (write(p[1], &c, 1) != 1 || read(p[0], &c, 1) != 1)
			bad++;
	t1 = now_ns();
	if (bad) {
		fprintf(stderr, "sysloop: %ld failed iterations\n", bad);
		return 1;
	}
	printf("%.3f\n", (t1 - t0) / n);
	return 0;
}
