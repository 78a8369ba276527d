/* The auditor's X25519 wrap of segment keys and its key files (auditor.h). */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "store/auditor.h"
#include "store/record.h"
#include "store/seal.h"

int auditor_keygen(uint8_t sk[AUDITOR_KEY_LEN], uint8_t pk[AUDITOR_KEY_LEN])
{
	return seal_raw_keygen(EVP_PKEY_X25519, sk, AUDITOR_KEY_LEN, pk, AUDITOR_KEY_LEN);
}

int auditor_public(const uint8_t sk[AUDITOR_KEY_LEN], uint8_t pk[AUDITOR_KEY_LEN])
{
	EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, sk, AUDITOR_KEY_LEN);
	size_t n = AUDITOR_KEY_LEN;
	int ok = key && EVP_PKEY_get_raw_public_key(key, pk, &n) == 1;

	EVP_PKEY_free(key);
	return ok ? 0 : -EIO;
}

void auditor_fingerprint(const uint8_t pk[AUDITOR_KEY_LEN], char out[AUDITOR_FP_LEN])
{
	uint8_t md[32];
	char b64[48];
	unsigned n;

	EVP_Digest(pk, AUDITOR_KEY_LEN, md, &n, EVP_sha256(), NULL);
	EVP_EncodeBlock((unsigned char *)b64, md, sizeof(md));
	/* 43 characters: without the padding, as ssh-keygen prints it */
	memcpy(out, "SHA256:", 7);
	memcpy(out + 7, b64, 43);
	out[50] = 0;
}

/*
 * The GCM key of one wrap: HKDF-SHA256 over the X25519 shared secret of sk
 * and peer, bound to the store, the segment and both public keys.
 */
static int wrap_key(const uint8_t sk[AUDITOR_KEY_LEN], const uint8_t peer[AUDITOR_KEY_LEN],
		    const uint8_t eph_pk[AUDITOR_KEY_LEN],
		    const uint8_t auditor_pk[AUDITOR_KEY_LEN], const uint8_t store_id[ST_ID_LEN],
		    uint64_t seg_no, uint8_t out[SEAL_KEY_LEN])
{
	static const char label[] = "sealtrail auditor wrap v1";
	static const uint8_t zero[AUDITOR_KEY_LEN];
	EVP_PKEY *mine = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, sk, AUDITOR_KEY_LEN);
	EVP_PKEY *theirs =
	    EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, AUDITOR_KEY_LEN);
	EVP_PKEY_CTX *dh = mine ? EVP_PKEY_CTX_new(mine, NULL) : NULL;
	EVP_PKEY_CTX *kdf = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
	uint8_t secret[AUDITOR_KEY_LEN], salt[ST_ID_LEN + 8];
	uint8_t info[sizeof(label) - 1 + 2 * AUDITOR_KEY_LEN];
	size_t n = sizeof(secret), outlen = SEAL_KEY_LEN;
	int ok;

	memcpy(salt, store_id, ST_ID_LEN);
	put_be64(salt + ST_ID_LEN, seg_no);
	memcpy(info, label, sizeof(label) - 1);
	memcpy(info + sizeof(label) - 1, eph_pk, AUDITOR_KEY_LEN);
	memcpy(info + sizeof(label) - 1 + AUDITOR_KEY_LEN, auditor_pk, AUDITOR_KEY_LEN);
	/* OpenSSL refuses an all-zero secret (a low-order point) too; check anyway */
	ok = theirs && dh && kdf && EVP_PKEY_derive_init(dh) == 1 &&
	     EVP_PKEY_derive_set_peer(dh, theirs) == 1 && EVP_PKEY_derive(dh, secret, &n) == 1 &&
	     n == sizeof(secret) && CRYPTO_memcmp(secret, zero, sizeof(secret)) != 0 &&
	     EVP_PKEY_derive_init(kdf) == 1 && EVP_PKEY_CTX_set_hkdf_md(kdf, EVP_sha256()) == 1 &&
	     EVP_PKEY_CTX_set1_hkdf_salt(kdf, salt, sizeof(salt)) == 1 &&
	     EVP_PKEY_CTX_set1_hkdf_key(kdf, secret, sizeof(secret)) == 1 &&
	     EVP_PKEY_CTX_add1_hkdf_info(kdf, info, sizeof(info)) == 1 &&
	     EVP_PKEY_derive(kdf, out, &outlen) == 1 && outlen == SEAL_KEY_LEN;
	OPENSSL_cleanse(secret, sizeof(secret));
	EVP_PKEY_CTX_free(kdf);
	EVP_PKEY_CTX_free(dh);
	EVP_PKEY_free(theirs);
	EVP_PKEY_free(mine);
	return ok ? 0 : -EBADMSG;
}

int auditor_wrap(const uint8_t pk[AUDITOR_KEY_LEN], const uint8_t store_id[ST_ID_LEN],
		 uint64_t seg_no, const uint8_t key[SEAL_KEY_LEN], const uint8_t *aad,
		 size_t aad_len, uint8_t out[AUDITOR_WRAP_LEN])
{
	uint8_t eph_sk[AUDITOR_KEY_LEN], kw[SEAL_KEY_LEN];
	int err;

	/* a fresh ephemeral key per wrap: its secret half is erased right here */
	err = auditor_keygen(eph_sk, out);
	err = err ?: wrap_key(eph_sk, pk, out, pk, store_id, seg_no, kw);
	err = err ?: seal_wrap(kw, key, aad, aad_len, out + AUDITOR_KEY_LEN);
	OPENSSL_cleanse(eph_sk, sizeof(eph_sk));
	OPENSSL_cleanse(kw, sizeof(kw));
	return err;
}

int auditor_unwrap(const uint8_t sk[AUDITOR_KEY_LEN], const uint8_t pk[AUDITOR_KEY_LEN],
		   const uint8_t store_id[ST_ID_LEN], uint64_t seg_no,
		   const uint8_t in[AUDITOR_WRAP_LEN], const uint8_t *aad, size_t aad_len,
		   uint8_t key[SEAL_KEY_LEN])
{
	uint8_t kw[SEAL_KEY_LEN], out[SEAL_KEY_LEN];
	int err;

	err = wrap_key(sk, in, in, pk, store_id, seg_no, kw);
	/* GCM decrypts before it checks the tag: hand out nothing that failed it */
	err = err ?: seal_unwrap(kw, in + AUDITOR_KEY_LEN, aad, aad_len, out);
	if (!err)
		memcpy(key, out, SEAL_KEY_LEN);
	OPENSSL_cleanse(out, sizeof(out));
	OPENSSL_cleanse(kw, sizeof(kw));
	return err ? -EBADMSG : 0;
}

/* An X25519 key from a PEM file, private or public; NULL (logged) if not one. */
static EVP_PKEY *read_pem(const char *path, bool private)
{
	const char *want = private ? "an X25519 private key (PEM \"PRIVATE KEY\")"
				   : "an X25519 public key (PEM \"PUBLIC KEY\")";
	FILE *f = fopen(path, "re");
	EVP_PKEY *key = NULL;
	char line[128] = "";

	if (!f) {
		log_error("auditor key %s: %s", path, strerror(errno));
		return NULL;
	}
	key = private ? PEM_read_PrivateKey(f, NULL, NULL, NULL)
		      : PEM_read_PUBKEY(f, NULL, NULL, NULL);
	if (!key) {
		rewind(f);
		if (!fgets(line, sizeof(line), f))
			line[0] = 0;
	}
	fclose(f);
	if (key && EVP_PKEY_id(key) == EVP_PKEY_X25519)
		return key;
	if (!private && strstr(line, "PRIVATE KEY"))
		log_error("auditor key %s: this is a private key; the bastion needs only the"
			  " public one (auditor.pub): keep the private key off this host",
			  path);
	else if (private && strstr(line, "ENCRYPTED"))
		log_error("auditor key %s: cannot decrypt it (wrong passphrase?)", path);
	else if (private && strstr(line, "PUBLIC KEY"))
		log_error("auditor key %s: this is the public key; opening segments takes the"
			  " private one (auditor.key)",
			  path);
	else
		log_error("auditor key %s: not %s (made by `sealtrail auditor-keygen` or"
			  " `openssl genpkey -algorithm X25519`)",
			  path, want);
	EVP_PKEY_free(key);
	return NULL;
}

int auditor_read_public(const char *path, uint8_t pk[AUDITOR_KEY_LEN])
{
	EVP_PKEY *key = read_pem(path, false);
	size_t n = AUDITOR_KEY_LEN;
	int ok = key && EVP_PKEY_get_raw_public_key(key, pk, &n) == 1 && n == AUDITOR_KEY_LEN;

	EVP_PKEY_free(key);
	return ok ? 0 : -EINVAL;
}

int auditor_read_private(const char *path, uint8_t sk[AUDITOR_KEY_LEN], uint8_t pk[AUDITOR_KEY_LEN])
{
	EVP_PKEY *key = read_pem(path, true);
	size_t n1 = AUDITOR_KEY_LEN, n2 = AUDITOR_KEY_LEN;
	int ok = key && EVP_PKEY_get_raw_private_key(key, sk, &n1) == 1 &&
		 EVP_PKEY_get_raw_public_key(key, pk, &n2) == 1;

	EVP_PKEY_free(key);
	return ok ? 0 : -EINVAL;
}

/* Create path (never replacing a file) and write key to it as PEM. */
static int write_pem(const char *path, EVP_PKEY *key, bool private)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, private ? 0600 : 0644);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	int err = 0;

	if (!f) {
		err = -errno;
		log_error("%s: %s%s", path, strerror(errno),
			  errno == EEXIST ? " (not replaced: move it away first)" : "");
		if (fd >= 0)
			close(fd);
		return err;
	}
	if (!(private ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
		      : PEM_write_PUBKEY(f, key)) ||
	    fflush(f) || fsync(fd))
		err = -EIO;
	if (fclose(f))
		err = err ?: -errno;
	if (err) {
		log_error("%s: cannot write the key", path);
		unlink(path);
	}
	return err;
}

int auditor_write_keys(const char *dir, uint8_t pk[AUDITOR_KEY_LEN])
{
	uint8_t sk[AUDITOR_KEY_LEN];
	char *priv = NULL, *pub = NULL;
	EVP_PKEY *key = NULL;
	int err;

	if (asprintf(&priv, "%s/auditor.key", dir) < 0)
		priv = NULL;
	if (asprintf(&pub, "%s/auditor.pub", dir) < 0)
		pub = NULL;
	if (!priv || !pub) {
		err = -ENOMEM;
		goto out;
	}
	err = auditor_keygen(sk, pk);
	key = err ? NULL : EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, sk, sizeof(sk));
	if (!key) {
		err = -EIO;
		goto out;
	}
	if (access(pub, F_OK) == 0) {
		log_error("%s: exists (not replaced: move it away first)", pub);
		err = -EEXIST;
		goto out;
	}
	err = write_pem(priv, key, true);
	if (!err) {
		err = write_pem(pub, key, false);
		if (err)
			unlink(priv);
	}
out:
	OPENSSL_cleanse(sk, sizeof(sk));
	EVP_PKEY_free(key);
	free(priv);
	free(pub);
	return err;
}
