/*
 * The collector's scheduling: it must drain the ring buffer ahead of the
 * sessions that fill it.
 *
 * Under a hundred busy logins, each its own autogroup (Debian's default),
 * a collector at nice 0 gets a hundredth of a CPU and bytes become gaps.
 * Nice -20 for the thread and its autogroup fixes that, but one busy
 * session on two CPUs then ran 5-8% slower than with SCHED_FIFO (likely the
 * load balancer, which counts a mostly sleeping nice -20 task as several
 * busy nice-0 ones). A realtime thread (SCHED_FIFO, lowest priority) runs
 * as soon as it wakes and is not counted in that load; the kernel's RT
 * throttling keeps 5% of each second for everything else should it ever
 * spin. (Letting it run at nice 0 or SCHED_IDLE until the ring backs up
 * made no difference to one session and lost bytes under a hundred:
 * docs/PERFORMANCE.md.)
 */
#ifndef SEALTRAIL_DAEMON_PRIORITY_H
#define SEALTRAIL_DAEMON_PRIORITY_H

/*
 * For the calling thread (file hashing stays as it is): SCHED_FIFO at
 * rt_priority if it is > 0, else or if that is refused, nice_level for the
 * thread and its autogroup. Returns a word for the log and status.
 */
const char *priority_set(int rt_priority, int nice_level);

#endif
