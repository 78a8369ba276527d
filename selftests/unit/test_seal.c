/*
 * Sealed envelopes (store/seal.h): the RFC 9162 tree against the RFC 6962
 * test vectors, AES-256-GCM sealing that refuses any change, Ed25519 epoch
 * signatures, key wrapping.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/record.h"
#include "store/seal.h"
#include "test.h"

static void hex32(const char *hex, uint8_t out[32])
{
	hex_decode(hex, out, 32);
}

TEST(merkle_matches_rfc6962_vectors)
{
	static const char *roots[8] = {
	    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
	    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
	    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
	    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
	    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
	    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
	    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
	    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	};
	static const struct {
		const char *data;
		size_t len;
	} leaves[8] = {
	    {"", 0},
	    {"\x00", 1},
	    {"\x10", 1},
	    {"\x20\x21", 2},
	    {"\x30\x31", 2},
	    {"\x40\x41\x42\x43", 4},
	    {"\x50\x51\x52\x53\x54\x55\x56\x57", 8},
	    {"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f", 16},
	};
	struct merkle m;
	uint8_t leaf[32], root[32], want[32];

	merkle_init(&m);
	merkle_root(&m, root);
	hex32("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", want);
	ASSERT_MEMEQ(root, want, 32, "root of the empty tree");
	for (int i = 0; i < 8; i++) {
		seal_leaf_hash((const uint8_t *)leaves[i].data, leaves[i].len, leaf);
		merkle_append(&m, leaf);
		merkle_root(&m, root);
		hex32(roots[i], want);
		ASSERT_MEMEQ(root, want, 32, "root after each leaf");
	}
}

static void header(struct seal_header *h, uint16_t flags)
{
	memset(h, 0, sizeof(*h));
	h->type = 5;
	h->flags = flags;
	h->seq = 42;
	h->epoch = 3;
	h->segment = 7;
	h->wall_ns = 1000;
	h->mono_ns = 2000;
	memset(h->store_id, 0xab, sizeof(h->store_id));
	memset(h->prev_hash, 0xcd, sizeof(h->prev_hash));
}

TEST(seal_round_trip_and_header_bound)
{
	uint8_t key[32], record[3000];
	struct seal_header h;
	struct seal_envelope env;
	struct buf out = {0}, back = {0};
	char err[128];
	size_t used;

	memset(key, 7, sizeof(key));
	for (size_t i = 0; i < sizeof(record); i++)
		record[i] = "MARKER-text "[i % 12];
	header(&h, 0);
	ASSERT_EQ(seal_build(&out, &h, record, sizeof(record), key), 0, "seal");
	ASSERT_TRUE(out.len < sizeof(record), "compressed before encryption");
	ASSERT_TRUE(!memmem(out.data, out.len, "MARKER", 6), "no plaintext in the envelope");
	ASSERT_EQ(seal_parse(out.data, out.len, &env, &used, err), 0, "parse");
	ASSERT_EQ(used, out.len, "whole envelope used");
	ASSERT_EQ(env.h.seq, 42, "seq");
	ASSERT_EQ(env.h.epoch, 3, "epoch");
	ASSERT_EQ(env.h.segment, 7, "segment");
	ASSERT_MEMEQ(env.h.prev_hash, h.prev_hash, 32, "prev hash");
	ASSERT_EQ(seal_open(&env, key, &back), 0, "open");
	ASSERT_EQ(back.len, sizeof(record), "length back");
	ASSERT_MEMEQ(back.data, record, sizeof(record), "bytes back");

	/* every bit of header, payload and tag is covered */
	for (size_t bit = 0; bit < out.len * 8; bit += 7) {
		int rc;

		out.data[bit / 8] ^= 1 << (bit % 8);
		rc = seal_parse(out.data, out.len, &env, &used, err);
		if (rc == 0)
			rc = seal_open(&env, key, &back);
		ASSERT_TRUE(rc != 0, "a flipped bit is detected");
		out.data[bit / 8] ^= 1 << (bit % 8);
	}
	key[0] ^= 1;
	ASSERT_EQ(seal_parse(out.data, out.len, &env, &used, err), 0, "parse");
	ASSERT_EQ(seal_open(&env, key, &back), -EBADMSG, "wrong key refused");
	buf_free(&out);
	buf_free(&back);
}

TEST(seal_nonces_differ)
{
	uint8_t key[32] = {1};
	struct seal_header h;
	struct buf a = {0}, b = {0};

	header(&h, 0);
	ASSERT_EQ(seal_build(&a, &h, (const uint8_t *)"same", 4, key), 0, "seal a");
	ASSERT_EQ(seal_build(&b, &h, (const uint8_t *)"same", 4, key), 0, "seal b");
	ASSERT_TRUE(memcmp(a.data + 104, b.data + 104, SEAL_NONCE_LEN) != 0,
		    "a fresh random nonce per envelope");
	buf_free(&a);
	buf_free(&b);
}

/*
 * Nonces come from a per-thread buffer: 1000 in a row are all different,
 * and a fork() child does not get the nonces its parent will use next.
 */
TEST(seal_random_never_repeats_across_fork)
{
	static uint8_t seen[1000][SEAL_NONCE_LEN];
	uint8_t mine[SEAL_NONCE_LEN], childs[SEAL_NONCE_LEN];
	int fds[2], status;
	pid_t pid;

	for (int i = 0; i < 1000; i++) {
		ASSERT_EQ(seal_random(seen[i], SEAL_NONCE_LEN), 0, "seal_random");
		for (int j = 0; j < i; j++)
			if (!memcmp(seen[i], seen[j], SEAL_NONCE_LEN)) {
				ASSERT_TRUE(false, "a nonce repeated");
				return;
			}
	}
	ASSERT_EQ(pipe(fds), 0, "pipe");
	pid = fork();
	if (pid == 0) {
		ssize_t w = -1;

		if (seal_random(childs, sizeof(childs)) == 0)
			w = write(fds[1], childs, sizeof(childs));
		_exit(w == (ssize_t)sizeof(childs) ? 0 : 1);
	}
	ASSERT_GT(pid, 0, "fork");
	close(fds[1]);
	ASSERT_EQ(read(fds[0], childs, sizeof(childs)), (long)sizeof(childs), "child's nonce");
	close(fds[0]);
	ASSERT_EQ(waitpid(pid, &status, 0), pid, "waitpid");
	ASSERT_EQ(seal_random(mine, sizeof(mine)), 0, "parent's next nonce");
	ASSERT_TRUE(memcmp(mine, childs, sizeof(mine)) != 0,
		    "the child drew its own nonce, not the parent's next one");
}

TEST(seal_plain_envelopes)
{
	struct seal_header h;
	struct seal_envelope env;
	struct buf out = {0}, back = {0};
	char err[128];
	size_t used;

	header(&h, SEAL_PLAIN);
	ASSERT_EQ(seal_build(&out, &h, (const uint8_t *)"epoch", 5, NULL), 0, "plain seal");
	ASSERT_EQ(seal_parse(out.data, out.len, &env, &used, err), 0, "parse");
	ASSERT_EQ(seal_open(&env, NULL, &back), 0, "open without a key");
	ASSERT_MEMEQ(back.data, "epoch", 5, "payload");
	out.data[out.len - 1] = 1;
	ASSERT_EQ(seal_parse(out.data, out.len, &env, &used, err), -EBADMSG, "plain with a tag");
	header(&h, 0);
	ASSERT_EQ(seal_build(&out, &h, (const uint8_t *)"x", 1, NULL), -EINVAL,
		  "encrypted envelope needs a key");
	buf_free(&out);
	buf_free(&back);
}

TEST(seal_parse_rejects_torn_and_short)
{
	uint8_t key[32] = {2};
	struct seal_header h;
	struct seal_envelope env;
	struct buf out = {0};
	char err[128];
	size_t used;

	header(&h, 0);
	ASSERT_EQ(seal_build(&out, &h, (const uint8_t *)"abc", 3, key), 0, "seal");
	for (size_t n = 0; n < out.len; n++)
		ASSERT_EQ(seal_parse(out.data, n, &env, &used, err), n < 4 ? -EAGAIN : -EAGAIN,
			  "every truncation is a torn tail");
	put_be32(out.data, 10);
	ASSERT_EQ(seal_parse(out.data, out.len, &env, &used, err), -EBADMSG, "too short");
	buf_free(&out);
}

TEST(epoch_signatures)
{
	uint8_t sk[32], pk[32], sk2[32], pk2[32], root[32] = {9}, sig[64], store[16] = {1};
	struct buf msg = {0};

	ASSERT_EQ(seal_keygen(sk, pk), 0, "keygen");
	ASSERT_EQ(seal_keygen(sk2, pk2), 0, "keygen next");
	seal_epoch_message(store, 4, 100, root, pk2, &msg);
	ASSERT_EQ(seal_sign(sk, msg.data, msg.len, sig), 0, "sign");
	ASSERT_TRUE(seal_verify(pk, msg.data, msg.len, sig), "verifies");
	ASSERT_TRUE(!seal_verify(pk2, msg.data, msg.len, sig), "not with another key");
	seal_epoch_message(store, 4, 101, root, pk2, &msg);
	ASSERT_TRUE(!seal_verify(pk, msg.data, msg.len, sig), "not for another tree size");
	seal_epoch_message(store, 5, 100, root, pk2, &msg);
	ASSERT_TRUE(!seal_verify(pk, msg.data, msg.len, sig), "not for another epoch");
	buf_free(&msg);
}

TEST(key_wrapping)
{
	uint8_t kek[32] = {3}, key[32] = {4}, wrapped[SEAL_WRAPPED_LEN], back[32];

	ASSERT_EQ(seal_wrap(kek, key, (const uint8_t *)"seg-1", 5, wrapped), 0, "wrap");
	ASSERT_TRUE(!memmem(wrapped, sizeof(wrapped), key, sizeof(key)), "key not in the clear");
	ASSERT_EQ(seal_unwrap(kek, wrapped, (const uint8_t *)"seg-1", 5, back), 0, "unwrap");
	ASSERT_MEMEQ(back, key, 32, "same key");
	ASSERT_EQ(seal_unwrap(kek, wrapped, (const uint8_t *)"seg-2", 5, back), -EBADMSG,
		  "bound to its segment");
	/* GCM decrypts before the tag fails: the right key must not be left in back */
	ASSERT_TRUE(!memmem(back, sizeof(back), key, 8), "no unverified key bytes left behind");
	wrapped[20] ^= 1;
	ASSERT_EQ(seal_unwrap(kek, wrapped, (const uint8_t *)"seg-1", 5, back), -EBADMSG,
		  "tampered wrap refused");
}
