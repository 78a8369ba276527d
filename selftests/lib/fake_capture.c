/*
 * The kernel side of capture/capture.h, in memory: what the collector's
 * session code (userspace/session) writes into and reads from the BPF maps, for
 * programs that drive it with events of their own (the event fuzzer) and
 * load no BPF. Tables are small and fixed; a full one refuses, as a full
 * map would.
 */
#include <errno.h>
#include <string.h>

#include "capture/capture.h"
#include "fake_capture.h"
#include "session/hasher.h"

#define FAKE_MAX 64

static struct {
	unsigned nsessions, ntracked, nrelays;
	struct {
		uint64_t key;
		struct st_session s;
	} sessions[FAKE_MAX];
	uint32_t tracked[FAKE_MAX];
	struct {
		uint64_t id;
		struct st_relay r;
	} relays[FAKE_MAX];
} fake;

void fake_capture_reset(void)
{
	memset(&fake, 0, sizeof(fake));
}

int capture_add_listener(struct capture *c, uint32_t tgid)
{
	(void)c, (void)tgid;
	return 0;
}

int capture_remove_listener(struct capture *c, uint32_t tgid)
{
	(void)c, (void)tgid;
	return 0;
}

int capture_add_session(struct capture *c, uint64_t key, uint32_t leader)
{
	(void)c;
	capture_delete_session(c, key);
	if (fake.nsessions == FAKE_MAX)
		return -E2BIG;
	fake.sessions[fake.nsessions].key = key;
	fake.sessions[fake.nsessions++].s = (struct st_session){.leader_pid = leader};
	return 0;
}

int capture_get_session(struct capture *c, uint64_t key, struct st_session *out)
{
	(void)c;
	for (unsigned i = 0; i < fake.nsessions; i++) {
		if (fake.sessions[i].key == key) {
			*out = fake.sessions[i].s;
			return 0;
		}
	}
	return -ENOENT;
}

void capture_delete_session(struct capture *c, uint64_t key)
{
	(void)c;
	for (unsigned i = 0; i < fake.nsessions; i++)
		if (fake.sessions[i].key == key)
			fake.sessions[i--] = fake.sessions[--fake.nsessions];
}

int capture_track(struct capture *c, uint32_t tgid, uint64_t key, uint32_t flags)
{
	(void)key, (void)flags;
	if (capture_is_tracked(c, tgid))
		return 0;
	if (fake.ntracked == FAKE_MAX)
		return -E2BIG;
	fake.tracked[fake.ntracked++] = tgid;
	return 0;
}

bool capture_is_tracked(struct capture *c, uint32_t tgid)
{
	(void)c;
	for (unsigned i = 0; i < fake.ntracked; i++)
		if (fake.tracked[i] == tgid)
			return true;
	return false;
}

int capture_add_exe(struct capture *c, const char *path, uint8_t kind)
{
	(void)c, (void)path, (void)kind;
	return 0;
}

int capture_add_relay(struct capture *c, uint64_t ino, uint64_t key, uint32_t stream,
		      uint32_t flags)
{
	(void)c;
	if (fake.nrelays == FAKE_MAX)
		return -E2BIG;
	fake.relays[fake.nrelays].id = ino;
	fake.relays[fake.nrelays++].r =
	    (struct st_relay){.sess_key = key, .stream = stream, .flags = flags};
	return 0;
}

int capture_get_relay(struct capture *c, uint64_t conn_id, struct st_relay *out)
{
	(void)c;
	for (unsigned i = 0; i < fake.nrelays; i++) {
		if (fake.relays[i].id == conn_id) {
			*out = fake.relays[i].r;
			return 0;
		}
	}
	return -ENOENT;
}

void capture_counters(struct capture *c, uint64_t out[ST_CNT_MAX])
{
	(void)c;
	memset(out, 0, ST_CNT_MAX * sizeof(out[0]));
}

uint64_t capture_ring_used(const struct capture *c)
{
	(void)c;
	return 0;
}

void fake_hashes_fail(struct hasher *h, int err)
{
	for (struct hash_job *j = h->todo; j; j = j->next)
		j->err = err;
	h->done = h->todo;
	h->todo = h->todo_tail = NULL;
	h->pending = 0;
}
