/*
 * The auditor's wrap of segment keys: each segment's data key is wrapped,
 * besides the store's KEK, to an X25519 public key whose private half never
 * comes near the bastion, so that a copy of the store can be read off-host
 * by the auditor alone (docs/SEALING.md).
 *
 *   wrap = ephemeral public key (32) || nonce (12) || AES-256-GCM(data key) (32) || tag (16)
 *
 * The GCM key is HKDF-SHA256 of the X25519 shared secret between the
 * ephemeral key and the auditor's key, with salt = store id || segment
 * number (u64 BE) and info = "sealtrail auditor wrap v1" || ephemeral
 * public key || auditor public key; the GCM AAD is what the caller binds
 * (the segment header's fixed fields, as for the KEK wrap).
 *
 * Key files are PEM, as `openssl genpkey -algorithm X25519` and `openssl
 * pkey -pubout` make them: PKCS#8 "PRIVATE KEY" and SPKI "PUBLIC KEY".
 */
#ifndef SEALTRAIL_AUDITOR_H
#define SEALTRAIL_AUDITOR_H

#include <stddef.h>
#include <stdint.h>

#include "store/seal.h"

#define AUDITOR_KEY_LEN 32 /* X25519 private and public keys, raw */
#define AUDITOR_WRAP_LEN (AUDITOR_KEY_LEN + SEAL_WRAPPED_LEN)
/* "SHA256:" and the unpadded base64 of SHA-256(raw public key), as ssh-keygen -l; NUL */
#define AUDITOR_FP_LEN 51

int auditor_keygen(uint8_t sk[AUDITOR_KEY_LEN], uint8_t pk[AUDITOR_KEY_LEN]);
/* The public key that belongs to sk. */
int auditor_public(const uint8_t sk[AUDITOR_KEY_LEN], uint8_t pk[AUDITOR_KEY_LEN]);
void auditor_fingerprint(const uint8_t pk[AUDITOR_KEY_LEN], char out[AUDITOR_FP_LEN]);

/* Wrap key (a segment's data key) to the auditor's public key pk. */
int auditor_wrap(const uint8_t pk[AUDITOR_KEY_LEN], const uint8_t store_id[ST_ID_LEN],
		 uint64_t seg_no, const uint8_t key[SEAL_KEY_LEN], const uint8_t *aad,
		 size_t aad_len, uint8_t out[AUDITOR_WRAP_LEN]);
/*
 * Unwrap with the auditor's key pair; -EBADMSG when anything bound to the
 * wrap differs (key, store id, segment number, AAD, the wrap's bytes).
 */
int auditor_unwrap(const uint8_t sk[AUDITOR_KEY_LEN], const uint8_t pk[AUDITOR_KEY_LEN],
		   const uint8_t store_id[ST_ID_LEN], uint64_t seg_no,
		   const uint8_t in[AUDITOR_WRAP_LEN], const uint8_t *aad, size_t aad_len,
		   uint8_t key[SEAL_KEY_LEN]);

/* PEM key files; errors are logged with the path. */
int auditor_read_public(const char *path, uint8_t pk[AUDITOR_KEY_LEN]);
int auditor_read_private(const char *path, uint8_t sk[AUDITOR_KEY_LEN],
			 uint8_t pk[AUDITOR_KEY_LEN]);
/* A new key pair: DIR/auditor.key (0600) and DIR/auditor.pub; never overwrites. */
int auditor_write_keys(const char *dir, uint8_t pk[AUDITOR_KEY_LEN]);

#endif
