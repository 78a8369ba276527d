/*
 * Sealed envelopes: what the store will write around each record so that
 * nobody, root on the bastion included, can read or change it unnoticed.
 *
 *   u32 len        whole envelope
 *   u16 type       type of the record inside (visible: verify needs no key)
 *   u16 flags      SEAL_PLAIN: payload not encrypted (seal records only)
 *   u64 seq        per-store sequence number
 *   u32 epoch      signing epoch the record was sealed in
 *   u32 segment    segment file it lives in
 *   u64 wall_ns, u64 mono_ns  when it was sealed (CLOCK_REALTIME, CLOCK_BOOTTIME)
 *   u8  boot_id[16], u8 store_id[16]
 *   u8  prev_hash[32]  leaf hash of the previous envelope (zero for seq 1)
 *   u8  nonce[12]      random per envelope (safe across crashes and clones)
 *   payload            AES-256-GCM(zstd(record)) under the segment's key
 *   u8  tag[16]        GCM tag over the payload, with the header as AAD
 *
 * Leaf hash = SHA-256(0x00 || envelope), nodes SHA-256(0x01 || L || R), as
 * in RFC 9162; the tree over all envelopes of a store is what epoch
 * signatures and checkpoints commit to.
 */
#ifndef SEALTRAIL_SEAL_H
#define SEALTRAIL_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

#define SEAL_HEADER_LEN 116
#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN 16
#define SEAL_HASH_LEN 32
#define SEAL_KEY_LEN 32
#define SEAL_PK_LEN 32
#define SEAL_SIG_LEN 64
#define SEAL_WRAPPED_LEN (SEAL_NONCE_LEN + SEAL_KEY_LEN + SEAL_TAG_LEN)
#define SEAL_MAX_LEN (8u << 20)
#define SEAL_PLAIN 1u

struct seal_header {
	uint16_t type;
	uint16_t flags;
	uint64_t seq;
	uint32_t epoch;
	uint32_t segment;
	uint64_t wall_ns;
	uint64_t mono_ns;
	uint8_t boot_id[16];
	uint8_t store_id[ST_ID_LEN];
	uint8_t prev_hash[SEAL_HASH_LEN];
};

/* A parsed envelope; pointers into the bytes it was parsed from. */
struct seal_envelope {
	struct seal_header h;
	uint32_t len;
	const uint8_t *bytes; /* the whole envelope */
	const uint8_t *nonce;
	const uint8_t *payload;
	uint32_t payload_len;
	const uint8_t *tag;
};

/* Strict parse; 0, -EAGAIN (ends inside the envelope) or -EBADMSG + err. */
int seal_parse(const uint8_t *p, size_t avail, struct seal_envelope *env, size_t *used,
	       char err[128]);
void seal_leaf_hash(const uint8_t *bytes, size_t len, uint8_t out[SEAL_HASH_LEN]);
/*
 * Chain a segment header in: the first envelope of a segment is sealed
 * after SHA-256(0x02 || previous hash || header), so headers are covered
 * by the chain too.
 */
void seal_chain_header(uint8_t prev[SEAL_HASH_LEN], const uint8_t *header, size_t len);

/*
 * n fresh random bytes for a nonce, from OpenSSL's DRBG through a
 * per-thread buffer that a fork() child never inherits. 0 or -EIO.
 */
int seal_random(uint8_t *out, size_t n);

/*
 * Seal record bytes into out: compressed and encrypted under key, or in the
 * clear when key is NULL (then flags must carry SEAL_PLAIN).
 */
int seal_build(struct buf *out, const struct seal_header *h, const uint8_t *record, size_t len,
	       const uint8_t key[SEAL_KEY_LEN]);
/* Check the tag and decrypt an envelope back to the record bytes. */
int seal_open(const struct seal_envelope *env, const uint8_t key[SEAL_KEY_LEN], struct buf *record);

/* RFC 9162 Merkle tree, appended to one leaf at a time. */
struct merkle {
	uint64_t size;
	uint8_t frontier[64][SEAL_HASH_LEN]; /* roots of the perfect subtrees */
};
void merkle_init(struct merkle *m);
void merkle_append(struct merkle *m, const uint8_t leaf[SEAL_HASH_LEN]);
/* Root of the tree so far (SHA-256 of "" for the empty tree). */
void merkle_root(const struct merkle *m, uint8_t out[SEAL_HASH_LEN]);

/* Ed25519 keys of signing epochs, and AES-256-GCM key wrapping. */
/* A raw key pair of an OpenSSL EVP_PKEY_* type (Ed25519, X25519). */
int seal_raw_keygen(int type, uint8_t *sk, size_t sk_len, uint8_t *pk, size_t pk_len);
int seal_keygen(uint8_t sk[SEAL_KEY_LEN], uint8_t pk[SEAL_PK_LEN]);
int seal_sign(const uint8_t sk[SEAL_KEY_LEN], const uint8_t *msg, size_t len,
	      uint8_t sig[SEAL_SIG_LEN]);
bool seal_verify(const uint8_t pk[SEAL_PK_LEN], const uint8_t *msg, size_t len,
		 const uint8_t sig[SEAL_SIG_LEN]);
/*
 * What closing epoch `epoch` signs: the tree of the first tree_size
 * envelopes and the public key of the next epoch.
 */
void seal_epoch_message(const uint8_t store_id[ST_ID_LEN], uint32_t epoch, uint64_t tree_size,
			const uint8_t root[SEAL_HASH_LEN], const uint8_t next_pk[SEAL_PK_LEN],
			struct buf *msg);
int seal_wrap(const uint8_t kek[SEAL_KEY_LEN], const uint8_t key[SEAL_KEY_LEN], const uint8_t *aad,
	      size_t aad_len, uint8_t out[SEAL_WRAPPED_LEN]);
int seal_unwrap(const uint8_t kek[SEAL_KEY_LEN], const uint8_t in[SEAL_WRAPPED_LEN],
		const uint8_t *aad, size_t aad_len, uint8_t key[SEAL_KEY_LEN]);

#endif
