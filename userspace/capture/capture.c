/* Loading, attaching and talking to the BPF side (capture.h). */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "capture/capture.h"
#include "common/log.h"
#include "common/util.h"
#include "sealtrail.skel.h"

#define TRACEFS_MAGIC 0x74726163
#define BPF_FS_MAGIC 0xcafe4a11

static int mount_if_missing(const char *dir, const char *type, long magic)
{
	struct statfs sfs;

	if (statfs(dir, &sfs) == 0 && (long)sfs.f_type == magic)
		return 0;
	if (mount(type, dir, type, 0, NULL)) {
		log_error("cannot mount %s on %s: %s", type, dir, strerror(errno));
		return -errno;
	}
	log_info("mounted %s on %s", type, dir);
	return 0;
}

int capture_mount_fs(void)
{
	int err = mount_if_missing("/sys/kernel/tracing", "tracefs", TRACEFS_MAGIC);

	/* bpffs is for pinning (a later release); failing to mount it is not fatal */
	if (mount_if_missing("/sys/fs/bpf", "bpf", BPF_FS_MAGIC))
		log_warn("continuing without bpffs");
	return err;
}

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[1024];

	if (level == LIBBPF_DEBUG)
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = 0;
	log_msg(level == LIBBPF_WARN ? LOG_WARN : LOG_INFO, "libbpf: %s", line);
	return 0;
}

/* Map the ring's position pages read-only; only statistics depend on it. */
static void map_positions(struct capture *c, int fd, uint32_t ringbuf_bytes)
{
	long page = sysconf(_SC_PAGESIZE);
	void *cons = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, 0);
	void *prod = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, page);

	if (cons == MAP_FAILED || prod == MAP_FAILED) {
		if (cons != MAP_FAILED)
			munmap(cons, page);
		if (prod != MAP_FAILED)
			munmap(prod, page);
		log_debug("ring buffer positions not mapped: %s", strerror(errno));
		return;
	}
	c->consumer_pos = cons;
	c->producer_pos = prod;
	c->ring_bytes = ringbuf_bytes;
}

uint64_t capture_ring_used(const struct capture *c)
{
	return c->consumer_pos ? *c->producer_pos - *c->consumer_pos : 0;
}

int capture_open(struct capture *c, uint32_t ringbuf_bytes, capture_event_fn fn, void *arg)
{
	struct bpf_program *prog;
	int err;

	memset(c, 0, sizeof(*c));
	libbpf_set_print(libbpf_log);
	c->skel = sealtrail_bpf__open();
	if (!c->skel) {
		log_error("cannot open the BPF object: %s", strerror(errno));
		return -errno;
	}
	c->skel->rodata->self_tgid = getpid();
	/* bulk bytes wake us at 1/8 full; capture_poll drains the rest on its timer */
	c->skel->rodata->wakeup_bytes = ringbuf_bytes / 8;
	err = bpf_map__set_max_entries(c->skel->maps.events, ringbuf_bytes);
	if (err) {
		log_error("ring buffer size %u: %s (a power of two, at least the page size)",
			  ringbuf_bytes, strerror(-err));
		goto fail;
	}
	err = sealtrail_bpf__load(c->skel);
	if (err) {
		log_error("cannot load the BPF programs: %s (is this kernel built with BTF and"
			  " CONFIG_BPF_SYSCALL, and are we root?)",
			  strerror(-err));
		goto fail;
	}
	err = sealtrail_bpf__attach(c->skel);
	if (err) {
		log_error("cannot attach the BPF programs: %s", strerror(-err));
		goto fail;
	}
	bpf_object__for_each_program (prog, c->skel->obj)
		c->nprogs++;
	c->rb = ring_buffer__new(bpf_map__fd(c->skel->maps.events), fn, arg, NULL);
	map_positions(c, bpf_map__fd(c->skel->maps.events), ringbuf_bytes);
	if (!c->rb) {
		err = -errno;
		log_error("cannot open the ring buffer: %s", strerror(errno));
		goto fail;
	}
	return 0;
fail:
	capture_close(c);
	return err;
}

void capture_close(struct capture *c)
{
	long page = sysconf(_SC_PAGESIZE);

	if (c->consumer_pos) {
		munmap((void *)c->consumer_pos, page);
		munmap((void *)c->producer_pos, page);
	}
	ring_buffer__free(c->rb);
	sealtrail_bpf__destroy(c->skel);
	memset(c, 0, sizeof(*c));
}

int capture_poll(struct capture *c, int timeout_ms)
{
	struct epoll_event ev;
	uint64_t used, t0, took;
	int n;

	/*
	 * Wait ourselves rather than in ring_buffer__poll(), to see how full
	 * the ring got before draining it; bulk data does not wake us (see
	 * wakeup_bytes), so drain on the timeout too.
	 */
	if (epoll_wait(ring_buffer__epoll_fd(c->rb), &ev, 1, timeout_ms) < 0 && errno != EINTR)
		return -errno;
	used = capture_ring_used(c);
	t0 = clock_ns(CLOCK_MONOTONIC);
	n = ring_buffer__consume(c->rb);
	took = clock_ns(CLOCK_MONOTONIC) - t0;
	c->last_used = used;
	if (used > c->peak_used)
		c->peak_used = used;
	if (took > c->longest_drain_ns)
		c->longest_drain_ns = took;
	if (took > 200000000ull)
		log_debug("ring buffer: a drain of %llu bytes took %llu ms",
			  (unsigned long long)used, (unsigned long long)(took / 1000000));
	return n;
}

const char *capture_prog_name(struct capture *c, unsigned i)
{
	struct bpf_program *prog;
	unsigned n = 0;

	bpf_object__for_each_program (prog, c->skel->obj)
		if (n++ == i)
			return bpf_program__name(prog);
	return "?";
}

int capture_add_listener(struct capture *c, uint32_t tgid)
{
	uint8_t one = 1;

	return bpf_map__update_elem(c->skel->maps.listeners, &tgid, sizeof(tgid), &one, 1, BPF_ANY);
}

int capture_remove_listener(struct capture *c, uint32_t tgid)
{
	return bpf_map__delete_elem(c->skel->maps.listeners, &tgid, sizeof(tgid), 0);
}

int capture_add_session(struct capture *c, uint64_t key, uint32_t leader)
{
	struct st_session s = {.leader_pid = leader};

	return bpf_map__update_elem(c->skel->maps.sessions, &key, sizeof(key), &s, sizeof(s),
				    BPF_NOEXIST);
}

int capture_get_session(struct capture *c, uint64_t key, struct st_session *out)
{
	return bpf_map__lookup_elem(c->skel->maps.sessions, &key, sizeof(key), out, sizeof(*out),
				    0);
}

void capture_delete_session(struct capture *c, uint64_t key)
{
	bpf_map__delete_elem(c->skel->maps.sessions, &key, sizeof(key), 0);
}

int capture_track(struct capture *c, uint32_t tgid, uint64_t key, uint32_t flags)
{
	struct st_proc p = {.sess_key = key, .flags = flags};
	int err;

	if (tgid >= ST_PID_LIMIT)
		return -ERANGE;
	err =
	    bpf_map__update_elem(c->skel->maps.procs, &tgid, sizeof(tgid), &p, sizeof(p), BPF_ANY);
	if (err)
		return err;
	/* .bss is mmap()ed: set the filter bit the same way the BPF side does */
	__atomic_fetch_or(&c->skel->bss->tracked_bits[tgid / 64], 1ull << (tgid % 64),
			  __ATOMIC_SEQ_CST);
	return 0;
}

int capture_add_relay(struct capture *c, uint64_t ino, uint64_t key, uint32_t stream,
		      uint32_t flags)
{
	struct st_relay r = {.sess_key = key, .stream = stream, .flags = flags};

	return bpf_map__update_elem(c->skel->maps.relays, &ino, sizeof(ino), &r, sizeof(r),
				    BPF_ANY);
}

int capture_add_exe(struct capture *c, const char *path, uint8_t kind)
{
	struct st_exe_id id = {0};
	struct stat sb;

	if (stat(path, &sb))
		return -errno;
	id.ino = sb.st_ino;
	id.dev = (major(sb.st_dev) << 20) | minor(sb.st_dev); /* the kernel's MKDEV */
	return bpf_map__update_elem(c->skel->maps.sshd_exes, &id, sizeof(id), &kind, 1, BPF_ANY);
}

int capture_get_relay(struct capture *c, uint64_t conn_id, struct st_relay *out)
{
	return bpf_map__lookup_elem(c->skel->maps.relays, &conn_id, sizeof(conn_id), out,
				    sizeof(*out), 0);
}

bool capture_is_tracked(struct capture *c, uint32_t tgid)
{
	struct st_proc p;

	return bpf_map__lookup_elem(c->skel->maps.procs, &tgid, sizeof(tgid), &p, sizeof(p), 0) ==
	       0;
}

void capture_counters(struct capture *c, uint64_t out[ST_CNT_MAX])
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t vals[ncpu > 0 ? ncpu : 1];

	for (uint32_t k = 0; k < ST_CNT_MAX; k++) {
		out[k] = 0;
		if (ncpu <= 0 || bpf_map__lookup_elem(c->skel->maps.counters, &k, sizeof(k), vals,
						      sizeof(uint64_t) * ncpu, 0))
			continue;
		for (int i = 0; i < ncpu; i++)
			out[k] += vals[i];
	}
}
