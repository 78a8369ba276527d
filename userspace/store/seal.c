/* Sealed envelopes, the Merkle tree and epoch signatures (seal.h). */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <zstd.h>

#include "store/record.h"
#include "store/seal.h"

static void put_header(uint8_t *p, const struct seal_header *h, uint32_t len)
{
	put_be32(p, len);
	put_be16(p + 4, h->type);
	put_be16(p + 6, h->flags);
	put_be64(p + 8, h->seq);
	put_be32(p + 16, h->epoch);
	put_be32(p + 20, h->segment);
	put_be64(p + 24, h->wall_ns);
	put_be64(p + 32, h->mono_ns);
	memcpy(p + 40, h->boot_id, 16);
	memcpy(p + 56, h->store_id, ST_ID_LEN);
	memcpy(p + 72, h->prev_hash, SEAL_HASH_LEN);
	/* nonce at 104..116 */
}

int seal_parse(const uint8_t *p, size_t avail, struct seal_envelope *env, size_t *used,
	       char err[128])
{
	uint32_t len;

	if (avail < 4) {
		snprintf(err, 128, "%zu bytes left, an envelope needs at least %d", avail,
			 SEAL_HEADER_LEN + SEAL_TAG_LEN);
		return -EAGAIN;
	}
	len = get_be32(p);
	if (len < SEAL_HEADER_LEN + SEAL_TAG_LEN || len > SEAL_MAX_LEN) {
		snprintf(err, 128, "envelope length %u outside [%d, %u]", len,
			 SEAL_HEADER_LEN + SEAL_TAG_LEN, SEAL_MAX_LEN);
		return -EBADMSG;
	}
	if (len > avail) {
		snprintf(err, 128, "envelope of %u bytes but only %zu left (torn write)", len,
			 avail);
		return -EAGAIN;
	}
	env->len = len;
	env->bytes = p;
	env->h.type = get_be16(p + 4);
	env->h.flags = get_be16(p + 6);
	env->h.seq = get_be64(p + 8);
	env->h.epoch = get_be32(p + 16);
	env->h.segment = get_be32(p + 20);
	env->h.wall_ns = get_be64(p + 24);
	env->h.mono_ns = get_be64(p + 32);
	memcpy(env->h.boot_id, p + 40, 16);
	memcpy(env->h.store_id, p + 56, ST_ID_LEN);
	memcpy(env->h.prev_hash, p + 72, SEAL_HASH_LEN);
	env->nonce = p + 104;
	env->payload = p + SEAL_HEADER_LEN;
	env->payload_len = len - SEAL_HEADER_LEN - SEAL_TAG_LEN;
	env->tag = p + len - SEAL_TAG_LEN;
	if (env->h.flags & ~SEAL_PLAIN) {
		snprintf(err, 128, "unknown envelope flags %#x", env->h.flags);
		return -EBADMSG;
	}
	if (env->h.type == 0 || env->h.seq == 0) {
		snprintf(err, 128, "envelope type %u, sequence %llu: zero is not allowed",
			 env->h.type, (unsigned long long)env->h.seq);
		return -EBADMSG;
	}
	if ((env->h.flags & SEAL_PLAIN) &&
	    CRYPTO_memcmp(env->tag, (uint8_t[SEAL_TAG_LEN]){0}, SEAL_TAG_LEN)) {
		snprintf(err, 128, "plain envelope with a non-zero tag");
		return -EBADMSG;
	}
	*used = len;
	return 0;
}

static const EVP_MD *sha256_md(void)
{
	static __thread EVP_MD *md;

	if (!md)
		md = EVP_MD_fetch(NULL, "SHA256", NULL);
	return md;
}

void seal_leaf_hash(const uint8_t *bytes, size_t len, uint8_t out[SEAL_HASH_LEN])
{
	static __thread EVP_MD_CTX *ctx;
	uint8_t zero = 0;
	unsigned n;

	if (!ctx)
		ctx = EVP_MD_CTX_new();
	EVP_DigestInit_ex(ctx, sha256_md(), NULL);
	EVP_DigestUpdate(ctx, &zero, 1);
	EVP_DigestUpdate(ctx, bytes, len);
	EVP_DigestFinal_ex(ctx, out, &n);
}

void seal_chain_header(uint8_t prev[SEAL_HASH_LEN], const uint8_t *header, size_t len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t two = 2;
	unsigned n;

	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, &two, 1);
	EVP_DigestUpdate(ctx, prev, SEAL_HASH_LEN);
	EVP_DigestUpdate(ctx, header, len);
	EVP_DigestFinal_ex(ctx, prev, &n);
	EVP_MD_CTX_free(ctx);
}

static void node_hash(const uint8_t l[SEAL_HASH_LEN], const uint8_t r[SEAL_HASH_LEN],
		      uint8_t out[SEAL_HASH_LEN])
{
	uint8_t buf[1 + 2 * SEAL_HASH_LEN];
	unsigned n;

	buf[0] = 1;
	memcpy(buf + 1, l, SEAL_HASH_LEN);
	memcpy(buf + 1 + SEAL_HASH_LEN, r, SEAL_HASH_LEN);
	EVP_Digest(buf, sizeof(buf), out, &n, sha256_md(), NULL);
}

void merkle_init(struct merkle *m)
{
	memset(m, 0, sizeof(*m));
}

/*
 * frontier[h] holds the root of a perfect subtree of 2^h leaves when bit h
 * of size is set: appending carries like a binary counter.
 */
void merkle_append(struct merkle *m, const uint8_t leaf[SEAL_HASH_LEN])
{
	uint8_t carry[SEAL_HASH_LEN];
	unsigned h = 0;

	memcpy(carry, leaf, SEAL_HASH_LEN);
	while (m->size & (1ull << h)) {
		node_hash(m->frontier[h], carry, carry);
		h++;
	}
	memcpy(m->frontier[h], carry, SEAL_HASH_LEN);
	m->size++;
}

void merkle_root(const struct merkle *m, uint8_t out[SEAL_HASH_LEN])
{
	bool have = false;
	unsigned n;

	if (!m->size) {
		EVP_Digest("", 0, out, &n, EVP_sha256(), NULL);
		return;
	}
	/* RFC 9162: the left subtree is the largest power of two; fold right to left */
	for (unsigned h = 0; h < 64; h++) {
		if (!(m->size & (1ull << h)))
			continue;
		if (!have)
			memcpy(out, m->frontier[h], SEAL_HASH_LEN);
		else
			node_hash(m->frontier[h], out, out);
		have = true;
	}
}

/*
 * Random bytes for nonces, drawn from OpenSSL's DRBG 4 KiB at a time: one
 * RAND_bytes per record cost more than its zstd frame for a keystroke
 * (it also checks getpid each time). A child of fork() must never seal
 * with its parent's nonces, so the buffer is emptied in the child.
 */
static __thread uint8_t rand_buf[4096];
static __thread size_t rand_left;
static pthread_once_t rand_once = PTHREAD_ONCE_INIT;

static void rand_forget(void)
{
	OPENSSL_cleanse(rand_buf, sizeof(rand_buf));
	rand_left = 0;
}

static void rand_register(void)
{
	pthread_atfork(NULL, NULL, rand_forget);
}

int seal_random(uint8_t *out, size_t n)
{
	pthread_once(&rand_once, rand_register);
	if (n > sizeof(rand_buf))
		return RAND_bytes(out, (int)n) == 1 ? 0 : -EIO;
	if (rand_left < n) {
		if (RAND_bytes(rand_buf, sizeof(rand_buf)) != 1)
			return -EIO;
		rand_left = sizeof(rand_buf);
	}
	/* take from the end and wipe what was taken: no nonce is handed out twice */
	rand_left -= n;
	memcpy(out, rand_buf + rand_left, n);
	OPENSSL_cleanse(rand_buf + rand_left, n);
	return 0;
}

/*
 * Encrypt a record (or wrap a key). The context, with its key schedule,
 * lives as long as the thread and is keyed again only when the key changes
 * (a new segment, a key wrap): a context and a key schedule per record cost
 * more than encrypting a typed line. It holds nothing more than the writer
 * already keeps: the segment's data key, or the KEK it is wrapped with.
 */
static int gcm_seal(const uint8_t key[SEAL_KEY_LEN], const uint8_t nonce[SEAL_NONCE_LEN],
		    const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t len, uint8_t *out,
		    uint8_t tag[SEAL_TAG_LEN])
{
	static __thread EVP_CIPHER_CTX *ctx;
	static __thread uint8_t ctx_key[SEAL_KEY_LEN];
	static __thread bool keyed;
	bool rekey = !keyed || CRYPTO_memcmp(ctx_key, key, SEAL_KEY_LEN);
	int n, ok;

	if (!ctx) {
		EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);

		ctx = cipher ? EVP_CIPHER_CTX_new() : NULL;
		ok = ctx && EVP_EncryptInit_ex(ctx, cipher, NULL, NULL, NULL) == 1 &&
		     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SEAL_NONCE_LEN, NULL) == 1;
		EVP_CIPHER_free(cipher);
		if (!ok) {
			EVP_CIPHER_CTX_free(ctx);
			ctx = NULL;
			return -EIO;
		}
	}
	keyed = false; /* until this record is through */
	ok = EVP_EncryptInit_ex(ctx, NULL, NULL, rekey ? key : NULL, nonce) == 1 &&
	     EVP_EncryptUpdate(ctx, NULL, &n, aad, aad_len) == 1 &&
	     (len == 0 || EVP_EncryptUpdate(ctx, out, &n, in, len) == 1) &&
	     EVP_EncryptFinal_ex(ctx, out + len, &n) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, tag) == 1;
	if (ok && rekey)
		memcpy(ctx_key, key, SEAL_KEY_LEN);
	keyed = ok;
	return ok ? 0 : -EIO;
}

/* Decrypt and check the tag; a tag that fails leaves no plaintext behind. */
static int gcm_open(const uint8_t key[SEAL_KEY_LEN], const uint8_t nonce[SEAL_NONCE_LEN],
		    const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t len, uint8_t *out,
		    const uint8_t tag[SEAL_TAG_LEN])
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	static __thread EVP_CIPHER *cipher;
	int n, ok;

	if (!cipher)
		cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	ok = ctx && EVP_DecryptInit_ex(ctx, cipher, NULL, NULL, NULL) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SEAL_NONCE_LEN, NULL) == 1 &&
	     EVP_DecryptInit_ex(ctx, NULL, NULL, key, nonce) == 1 &&
	     EVP_DecryptUpdate(ctx, NULL, &n, aad, aad_len) == 1 &&
	     (len == 0 || EVP_DecryptUpdate(ctx, out, &n, in, len) == 1) &&
	     /* the tag is checked before the caller sees any plaintext it could trust */
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, (void *)tag) == 1 &&
	     EVP_DecryptFinal_ex(ctx, out + len, &n) == 1;
	EVP_CIPHER_CTX_free(ctx);
	/* no unverified plaintext behind (keys, records) */
	if (!ok && len)
		OPENSSL_cleanse(out, len);
	return ok ? 0 : -EBADMSG;
}

int seal_build(struct buf *out, const struct seal_header *h, const uint8_t *record, size_t len,
	       const uint8_t key[SEAL_KEY_LEN])
{
	size_t bound = key ? ZSTD_compressBound(len) : len, plen;
	uint8_t *p;
	int err;

	if ((key == NULL) != ((h->flags & SEAL_PLAIN) != 0))
		return -EINVAL;
	if (SEAL_HEADER_LEN + bound + SEAL_TAG_LEN > SEAL_MAX_LEN)
		return -E2BIG;
	out->len = 0;
	err = buf_reserve(out, SEAL_HEADER_LEN + bound + SEAL_TAG_LEN);
	if (err)
		return err;
	p = out->data;
	if (key) {
		/*
		 * One context and one buffer per thread: creating a context
		 * per record costs more than compressing, and a fresh 64 KiB
		 * buffer per record went back to the kernel and faulted in again.
		 */
		static __thread ZSTD_CCtx *cctx;
		static __thread struct buf tmp;

		if (!cctx)
			cctx = ZSTD_createCCtx();
		err = buf_reserve(&tmp, bound);
		if (err)
			return err;
		plen = cctx ? ZSTD_compressCCtx(cctx, tmp.data, bound, record, len, 1) : (size_t)-1;
		if (ZSTD_isError(plen) || seal_random(p + 104, SEAL_NONCE_LEN))
			return -EIO;
		put_header(p, h, SEAL_HEADER_LEN + plen + SEAL_TAG_LEN);
		err = gcm_seal(key, p + 104, p, SEAL_HEADER_LEN, tmp.data, plen,
			       p + SEAL_HEADER_LEN, p + SEAL_HEADER_LEN + plen);
		if (err)
			return err;
	} else {
		plen = len;
		memset(p + 104, 0, SEAL_NONCE_LEN);
		put_header(p, h, SEAL_HEADER_LEN + plen + SEAL_TAG_LEN);
		memcpy(p + SEAL_HEADER_LEN, record, len);
		memset(p + SEAL_HEADER_LEN + plen, 0, SEAL_TAG_LEN);
	}
	out->len = SEAL_HEADER_LEN + plen + SEAL_TAG_LEN;
	return 0;
}

int seal_open(const struct seal_envelope *env, const uint8_t key[SEAL_KEY_LEN], struct buf *record)
{
	uint8_t *plain;
	unsigned long long size;
	size_t n;
	int err;

	record->len = 0;
	if (env->h.flags & SEAL_PLAIN)
		return buf_add(record, env->payload, env->payload_len);
	if (!key)
		return -ENOKEY;
	plain = malloc(env->payload_len ? env->payload_len : 1);
	if (!plain)
		return -ENOMEM;
	err = gcm_open(key, env->nonce, env->bytes, SEAL_HEADER_LEN, env->payload, env->payload_len,
		       plain, (uint8_t *)env->tag);
	if (err)
		goto out;
	size = ZSTD_getFrameContentSize(plain, env->payload_len);
	if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN ||
	    size > REC_MAX_LEN) {
		err = -EBADMSG;
		goto out;
	}
	err = buf_reserve(record, size);
	if (err)
		goto out;
	{
		static __thread ZSTD_DCtx *dctx;

		if (!dctx)
			dctx = ZSTD_createDCtx();
		n = dctx ? ZSTD_decompressDCtx(dctx, record->data, size, plain, env->payload_len)
			 : (size_t)-1;
	}
	if (ZSTD_isError(n) || n != size) {
		err = -EBADMSG;
		goto out;
	}
	record->len = n;
out:
	free(plain);
	return err;
}

int seal_raw_keygen(int type, uint8_t *sk, size_t sk_len, uint8_t *pk, size_t pk_len)
{
	EVP_PKEY *key = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(type, NULL);
	size_t n1 = sk_len, n2 = pk_len;
	int ok;

	ok = ctx && EVP_PKEY_keygen_init(ctx) == 1 && EVP_PKEY_keygen(ctx, &key) == 1 &&
	     EVP_PKEY_get_raw_private_key(key, sk, &n1) == 1 && n1 == sk_len &&
	     EVP_PKEY_get_raw_public_key(key, pk, &n2) == 1 && n2 == pk_len;
	EVP_PKEY_free(key);
	EVP_PKEY_CTX_free(ctx);
	return ok ? 0 : -EIO;
}

int seal_keygen(uint8_t sk[SEAL_KEY_LEN], uint8_t pk[SEAL_PK_LEN])
{
	return seal_raw_keygen(EVP_PKEY_ED25519, sk, SEAL_KEY_LEN, pk, SEAL_PK_LEN);
}

int seal_sign(const uint8_t sk[SEAL_KEY_LEN], const uint8_t *msg, size_t len,
	      uint8_t sig[SEAL_SIG_LEN])
{
	EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, sk, SEAL_KEY_LEN);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t n = SEAL_SIG_LEN;
	int ok;

	ok = key && ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1 &&
	     EVP_DigestSign(ctx, sig, &n, msg, len) == 1 && n == SEAL_SIG_LEN;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(key);
	return ok ? 0 : -EIO;
}

bool seal_verify(const uint8_t pk[SEAL_PK_LEN], const uint8_t *msg, size_t len,
		 const uint8_t sig[SEAL_SIG_LEN])
{
	EVP_PKEY *key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pk, SEAL_PK_LEN);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok;

	ok = key && ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1 &&
	     EVP_DigestVerify(ctx, sig, SEAL_SIG_LEN, msg, len) == 1;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(key);
	return ok;
}

void seal_epoch_message(const uint8_t store_id[ST_ID_LEN], uint32_t epoch, uint64_t tree_size,
			const uint8_t root[SEAL_HASH_LEN], const uint8_t next_pk[SEAL_PK_LEN],
			struct buf *msg)
{
	static const char label[] = "sealtrail epoch v1";
	uint8_t be[12];

	msg->len = 0;
	buf_add(msg, label, sizeof(label)); /* with its NUL: domain separation */
	buf_add(msg, store_id, ST_ID_LEN);
	put_be32(be, epoch);
	put_be64(be + 4, tree_size);
	buf_add(msg, be, sizeof(be));
	buf_add(msg, root, SEAL_HASH_LEN);
	buf_add(msg, next_pk, SEAL_PK_LEN);
}

int seal_wrap(const uint8_t kek[SEAL_KEY_LEN], const uint8_t key[SEAL_KEY_LEN], const uint8_t *aad,
	      size_t aad_len, uint8_t out[SEAL_WRAPPED_LEN])
{
	if (seal_random(out, SEAL_NONCE_LEN))
		return -EIO;
	return gcm_seal(kek, out, aad, aad_len, key, SEAL_KEY_LEN, out + SEAL_NONCE_LEN,
			out + SEAL_NONCE_LEN + SEAL_KEY_LEN);
}

int seal_unwrap(const uint8_t kek[SEAL_KEY_LEN], const uint8_t in[SEAL_WRAPPED_LEN],
		const uint8_t *aad, size_t aad_len, uint8_t key[SEAL_KEY_LEN])
{
	uint8_t tag[SEAL_TAG_LEN];

	memcpy(tag, in + SEAL_NONCE_LEN + SEAL_KEY_LEN, SEAL_TAG_LEN);
	return gcm_open(kek, in, aad, aad_len, in + SEAL_NONCE_LEN, SEAL_KEY_LEN, key, tag);
}
