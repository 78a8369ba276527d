/*
 * An SQLite VFS that keeps the index encrypted on disk: argv, commands, file
 * paths and user names are session content, and SQLite would otherwise
 * write them in the clear to index.sqlite and its -wal file (design and
 * threat model in docs/SEALING.md, "The index").
 *
 * Every page of the database, in the database file and in the WAL, is
 * sealed on its own with XAES-256-GCM (C2SP: AES-256-GCM under a subkey
 * derived from half of a random 192-bit nonce, so random nonces stay safe
 * for as many page writes as an index will ever see). The nonce and the
 * tag live in the page's reserved bytes, which SQLite leaves to extensions
 * (as ext/misc/cksumvfs.c uses them for a checksum); the AAD binds the page
 * to its number and the store. SQLite sees plaintext pages, so its own
 * code (b-trees, WAL checksums, recovery, LIKE) is unchanged.
 *
 * The keys come from the caller's 32-byte root key (the store's KEK) by
 * HKDF-SHA256 with the store id as salt and their own labels. Each struct
 * cryptvfs is registered under its own name, so that two indexes (or a
 * test's two stores) in one process never share keys.
 *
 * Everything else SQLite might put on disk is kept off it: temporary files
 * (sorter spills, temp tables, statement journals) live in memory, and a
 * rollback journal is refused, since the index is in WAL mode for good.
 */
#ifndef SEALTRAIL_CRYPTVFS_H
#define SEALTRAIL_CRYPTVFS_H

#include <stdint.h>

#include "store/record.h"

/* Every encrypted database has this page size and this many reserved bytes. */
#define CRYPTVFS_PAGE_SIZE 4096
#define CRYPTVFS_NONCE_LEN 24
#define CRYPTVFS_TAG_LEN 16
#define CRYPTVFS_RESERVE (CRYPTVFS_NONCE_LEN + CRYPTVFS_TAG_LEN)
#define CRYPTVFS_KEY_LEN 32

struct cryptvfs;

/* A new VFS over the default one, keyed from root_key and bound to id. */
int cryptvfs_new(const uint8_t root_key[CRYPTVFS_KEY_LEN], const uint8_t id[ST_ID_LEN],
		 struct cryptvfs **out);
/* The name to give sqlite3_open_v2(). */
const char *cryptvfs_name(const struct cryptvfs *v);
/* Unregister and erase it; every connection opened on it must be closed. */
void cryptvfs_free(struct cryptvfs *v);

/*
 * Whether path is an SQLite database in the clear (an index written before
 * the encryption): 1 if so, 0 if not or absent, negative errno if unreadable.
 */
int cryptvfs_file_is_plain(const char *path);

/* XAES-256-GCM, for the known-answer tests: out gets len bytes, then the tag. */
int cryptvfs_xaes_seal(const uint8_t key[CRYPTVFS_KEY_LEN], const uint8_t nonce[CRYPTVFS_NONCE_LEN],
		       const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t len,
		       uint8_t *out);

#endif
