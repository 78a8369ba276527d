#include "daemon/priority.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/log.h"

/*
 * nice ranks a thread only within its autogroup, and every ssh login is
 * one: set the group's too.
 */
static const char *set_nice(int level)
{
	char val[16];
	int fd;

	if (setpriority(PRIO_PROCESS, 0, level)) {
		log_warn("cannot set the collector's priority to nice %d: %s; sessions may "
			 "outrun it under load",
			 level, strerror(errno));
		return "normal";
	}
	fd = open("/proc/self/autogroup", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return "nice"; /* no autogroup: cgroups (CPUWeight=) decide */
	snprintf(val, sizeof(val), "%d", level);
	if (write(fd, val, strlen(val)) < 0)
		log_warn("cannot set the collector's autogroup to nice %d: %s", level,
			 strerror(errno));
	close(fd);
	return "nice";
}

const char *priority_set(int rt_priority, int nice_level)
{
	struct sched_param sp = {.sched_priority = rt_priority};

	if (rt_priority <= 0)
		return set_nice(nice_level);
	/* reset-on-fork: commands and the hashing thread do not inherit it */
	if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) == 0)
		return "fifo";
	log_warn("cannot run the collector as SCHED_FIFO %d (%s): using nice %d instead",
		 rt_priority, strerror(errno), nice_level);
	return set_nice(nice_level);
}
