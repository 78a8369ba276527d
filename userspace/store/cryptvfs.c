/* The encrypting SQLite VFS of the index (cryptvfs.h, docs/SEALING.md). */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "store/cryptvfs.h"
#include "store/seal.h"

#define PAGE CRYPTVFS_PAGE_SIZE
#define RESERVE CRYPTVFS_RESERVE
#define USABLE (PAGE - RESERVE)
/* WAL layout (SQLite's file format): a 32-byte header, then frames */
#define WAL_HDR 32
#define FRAME_HDR 24
#define FRAME (FRAME_HDR + PAGE)

/* XAES-256-GCM (c2sp.org/XAES-256-GCM) with contexts kept between pages. */
struct xaes {
	EVP_CIPHER_CTX *ecb; /* AES-256 under the input key: the subkey KDF */
	EVP_CIPHER_CTX *enc, *dec; /* AES-256-GCM, keyed per message */
	uint8_t k1[16];
};

static void xaes_free(struct xaes *x)
{
	EVP_CIPHER_CTX_free(x->ecb);
	EVP_CIPHER_CTX_free(x->enc);
	EVP_CIPHER_CTX_free(x->dec);
	OPENSSL_cleanse(x, sizeof(*x));
}

static int xaes_init(struct xaes *x, const uint8_t key[CRYPTVFS_KEY_LEN])
{
	uint8_t zero[16] = {0}, l[16];
	int n;

	memset(x, 0, sizeof(*x));
	x->ecb = EVP_CIPHER_CTX_new();
	x->enc = EVP_CIPHER_CTX_new();
	x->dec = EVP_CIPHER_CTX_new();
	if (!x->ecb || !x->enc || !x->dec ||
	    EVP_EncryptInit_ex(x->ecb, EVP_aes_256_ecb(), NULL, key, NULL) != 1 ||
	    EVP_CIPHER_CTX_set_padding(x->ecb, 0) != 1 ||
	    EVP_EncryptInit_ex(x->enc, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_DecryptInit_ex(x->dec, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_EncryptUpdate(x->ecb, l, &n, zero, 16) != 1) {
		xaes_free(x);
		return -ENOMEM;
	}
	/* K1 = L << 1 in GF(2^128), L = AES-256(key, 0^128): CMAC's first subkey */
	for (int i = 0; i < 16; i++)
		x->k1[i] = (uint8_t)(l[i] << 1) | (i < 15 ? l[i + 1] >> 7 : 0);
	if (l[0] & 0x80)
		x->k1[15] ^= 0x87;
	OPENSSL_cleanse(l, sizeof(l));
	return 0;
}

/* Kx = AES(key, M1 ^ K1) || AES(key, M2 ^ K1), Mi = 0x00 i 'X' 0x00 || N[:12] */
static int xaes_subkey(struct xaes *x, const uint8_t nonce[CRYPTVFS_NONCE_LEN], uint8_t kx[32])
{
	uint8_t m[32];
	int n, ok;

	for (int i = 0; i < 2; i++) {
		m[16 * i] = 0;
		m[16 * i + 1] = (uint8_t)(i + 1);
		m[16 * i + 2] = 'X';
		m[16 * i + 3] = 0;
		memcpy(m + 16 * i + 4, nonce, 12);
		for (int j = 0; j < 16; j++)
			m[16 * i + j] ^= x->k1[j];
	}
	ok = EVP_EncryptUpdate(x->ecb, kx, &n, m, sizeof(m)) == 1 && n == 32;
	return ok ? 0 : -EIO;
}

static int xaes_seal(struct xaes *x, const uint8_t nonce[CRYPTVFS_NONCE_LEN], const uint8_t *aad,
		     size_t aad_len, const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag)
{
	uint8_t kx[32];
	int n, ok;

	ok = !xaes_subkey(x, nonce, kx) &&
	     EVP_EncryptInit_ex(x->enc, NULL, NULL, kx, nonce + 12) == 1 &&
	     EVP_EncryptUpdate(x->enc, NULL, &n, aad, (int)aad_len) == 1 &&
	     EVP_EncryptUpdate(x->enc, out, &n, in, (int)len) == 1 &&
	     EVP_EncryptFinal_ex(x->enc, out + n, &n) == 1 &&
	     EVP_CIPHER_CTX_ctrl(x->enc, EVP_CTRL_GCM_GET_TAG, CRYPTVFS_TAG_LEN, tag) == 1;
	OPENSSL_cleanse(kx, sizeof(kx));
	return ok ? 0 : -EIO;
}

/* out gets nothing but zeros unless the tag is right. */
static int xaes_open(struct xaes *x, const uint8_t nonce[CRYPTVFS_NONCE_LEN], const uint8_t *aad,
		     size_t aad_len, const uint8_t *in, size_t len, const uint8_t *tag,
		     uint8_t *out)
{
	uint8_t kx[32];
	int n, ok;

	ok =
	    !xaes_subkey(x, nonce, kx) &&
	    EVP_DecryptInit_ex(x->dec, NULL, NULL, kx, nonce + 12) == 1 &&
	    EVP_DecryptUpdate(x->dec, NULL, &n, aad, (int)aad_len) == 1 &&
	    EVP_DecryptUpdate(x->dec, out, &n, in, (int)len) == 1 &&
	    EVP_CIPHER_CTX_ctrl(x->dec, EVP_CTRL_GCM_SET_TAG, CRYPTVFS_TAG_LEN, (void *)tag) == 1 &&
	    EVP_DecryptFinal_ex(x->dec, out + n, &n) == 1;
	OPENSSL_cleanse(kx, sizeof(kx));
	if (!ok)
		OPENSSL_cleanse(out, len);
	return ok ? 0 : -EBADMSG;
}

int cryptvfs_xaes_seal(const uint8_t key[CRYPTVFS_KEY_LEN], const uint8_t nonce[CRYPTVFS_NONCE_LEN],
		       const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t len,
		       uint8_t *out)
{
	struct xaes x;
	int err = xaes_init(&x, key);

	err = err ?: xaes_seal(&x, nonce, aad, aad_len, in, len, out, out + len);
	xaes_free(&x);
	return err;
}

struct cryptvfs {
	sqlite3_vfs base; /* first: SQLite hands it back to us */
	sqlite3_vfs *root; /* the default VFS that does the I/O */
	uint8_t page_key[CRYPTVFS_KEY_LEN];
	uint8_t mask_key[CRYPTVFS_KEY_LEN];
	uint8_t id[ST_ID_LEN];
	char name[48];
};

enum cfile_kind { CF_DB, CF_WAL, CF_MEM };

struct cfile {
	sqlite3_file base; /* first, as SQLite requires */
	struct cryptvfs *vfs;
	const char *name;
	enum cfile_kind kind;
	struct xaes x; /* database and WAL */
	EVP_CIPHER_CTX *mask; /* WAL: AES-256 under the checksum mask key */
	int64_t hdr_frame; /* WAL: the frame whose header was written last, */
	uint32_t hdr_pgno; /* and the page it holds */
	uint8_t *data; /* memory files */
	size_t size, cap;
	uint8_t raw[FRAME], plain[FRAME];
	/* the root VFS's file follows (database and WAL) */
};

#define REAL(f) ((sqlite3_file *)((struct cfile *)(f) + 1))

static bool all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return !acc;
}

/* AAD of a page: the store id and the page number (big-endian). */
static void page_aad(const struct cfile *f, uint32_t pgno, uint8_t aad[ST_ID_LEN + 4])
{
	memcpy(aad, f->vfs->id, ST_ID_LEN);
	put_be32(aad + ST_ID_LEN, pgno);
}

/*
 * Seal page pgno from in to out: bytes 0..USABLE encrypted, then the
 * nonce and the tag in the reserved bytes. SQLite keeps the reserved bytes
 * of its pages zero (it gets zeros from every read), and a WAL frame's
 * checksum covers them: anything else there would not survive a recovery,
 * so it is refused.
 */
static int page_seal(struct cfile *f, uint32_t pgno, const uint8_t *in, uint8_t *out)
{
	uint8_t aad[ST_ID_LEN + 4], *nonce = out + USABLE;

	if (!all_zero(in + USABLE, RESERVE)) {
		log_error("index %s: SQLite wrote page %u with its reserved bytes in use; the"
			  " encryption needs them: refused",
			  f->name, pgno);
		return -EINVAL;
	}
	if (seal_random(nonce, CRYPTVFS_NONCE_LEN))
		return -EIO;
	page_aad(f, pgno, aad);
	return xaes_seal(&f->x, nonce, aad, sizeof(aad), in, USABLE, out,
			 nonce + CRYPTVFS_NONCE_LEN);
}

static int page_open(struct cfile *f, uint32_t pgno, const uint8_t *in, uint8_t *out)
{
	uint8_t aad[ST_ID_LEN + 4];
	const uint8_t *nonce = in + USABLE;

	page_aad(f, pgno, aad);
	memset(out + USABLE, 0, RESERVE);
	return xaes_open(&f->x, nonce, aad, sizeof(aad), in, USABLE, nonce + CRYPTVFS_NONCE_LEN,
			 out);
}

/* File size from the root VFS, or -1. */
static sqlite3_int64 real_size(struct cfile *f)
{
	sqlite3_file *real = REAL(f);
	sqlite3_int64 size;

	return real->pMethods->xFileSize(real, &size) == SQLITE_OK ? size : -1;
}

/*
 * Database file: whole pages only. A read of part of a page (SQLite reads
 * the 100-byte header of page 1 so) opens the whole page and hands out the
 * slice.
 */
static int db_read(struct cfile *f, uint8_t *dst, int amt, sqlite3_int64 off)
{
	sqlite3_file *real = REAL(f);

	while (amt > 0) {
		sqlite3_int64 start = off - off % PAGE;
		int skip = (int)(off - start), n = amt < PAGE - skip ? amt : PAGE - skip;
		uint32_t pgno = (uint32_t)(start / PAGE) + 1;
		bool whole = skip == 0 && n == PAGE;
		int rc = real->pMethods->xRead(real, f->raw, PAGE, start);

		if (rc == SQLITE_IOERR_SHORT_READ) {
			sqlite3_int64 size = real_size(f);

			if (size > start) {
				log_error("index %s: page %u is cut short at byte %lld: damaged",
					  f->name, pgno, (long long)size);
				return SQLITE_IOERR_DATA;
			}
			memset(dst, 0, amt); /* past the end: zeros, as SQLite expects */
			return SQLITE_IOERR_SHORT_READ;
		}
		if (rc != SQLITE_OK)
			return rc;
		if (page_open(f, pgno, f->raw, whole ? dst : f->plain)) {
			log_error("index %s: page %u does not authenticate (damaged, or not this"
				  " store's index): `sealtrail reindex` rebuilds the index",
				  f->name, pgno);
			memset(dst, 0, amt);
			return SQLITE_IOERR_DATA;
		}
		if (!whole)
			memcpy(dst, f->plain + skip, n);
		dst += n;
		off += n;
		amt -= n;
	}
	return SQLITE_OK;
}

static int db_write(struct cfile *f, const uint8_t *src, int amt, sqlite3_int64 off)
{
	sqlite3_file *real = REAL(f);
	uint32_t pgno = (uint32_t)(off / PAGE) + 1;

	if (amt != PAGE || off % PAGE) {
		log_error("index %s: a write of %d bytes at byte %lld is not one whole page:"
			  " refused (pages are encrypted whole)",
			  f->name, amt, (long long)off);
		return SQLITE_IOERR_WRITE;
	}
	/* the header of page 1 must say what every page is sealed with */
	if (pgno == 1 && (get_be32(src + 16) >> 16 != PAGE || src[20] != RESERVE)) {
		log_error("index %s: page size %u and %u reserved bytes in the header; the"
			  " encryption needs %u and %u: refused",
			  f->name, get_be32(src + 16) >> 16, src[20], PAGE, RESERVE);
		return SQLITE_IOERR_WRITE;
	}
	if (page_seal(f, pgno, src, f->raw))
		return SQLITE_IOERR_WRITE;
	return real->pMethods->xWrite(real, f->raw, PAGE, off);
}

/*
 * The WAL: its 32-byte header and each frame's 24-byte header hold no
 * content (page number, database size after a commit, salts, checksum) and
 * stay as SQLite wrote them, except the frame checksum: SQLite computes it
 * over the plaintext page, so it would tell a disk thief who guesses most
 * of a page whether the rest is guessed right. It is XORed with
 * AES-256(mask key, salts || frame number), unique per frame of one WAL
 * generation (SQLite changes the salts at every restart of the WAL). The
 * page is sealed like a database page, bound to the page number in the
 * frame header.
 */
static int wal_mask(struct cfile *f, uint8_t hdr[FRAME_HDR], sqlite3_int64 frame)
{
	uint8_t in[16], out[16];
	int n;

	memcpy(in, hdr + 8, 8); /* salt-1, salt-2 */
	put_be64(in + 8, (uint64_t)frame);
	if (EVP_EncryptUpdate(f->mask, out, &n, in, 16) != 1 || n != 16)
		return -EIO;
	for (int i = 0; i < 8; i++)
		hdr[16 + i] ^= out[i];
	return 0;
}

static int wal_read(struct cfile *f, uint8_t *dst, int amt, sqlite3_int64 off)
{
	sqlite3_file *real = REAL(f);

	if (off < WAL_HDR) {
		int n = amt < WAL_HDR - off ? amt : (int)(WAL_HDR - off);
		int rc = real->pMethods->xRead(real, dst, n, off);

		if (rc != SQLITE_OK) {
			if (rc == SQLITE_IOERR_SHORT_READ)
				memset(dst, 0, amt);
			return rc;
		}
		dst += n;
		off += n;
		amt -= n;
	}
	while (amt > 0) {
		sqlite3_int64 frame = (off - WAL_HDR) / FRAME, start = WAL_HDR + frame * FRAME;
		int skip = (int)(off - start), n = amt < FRAME - skip ? amt : FRAME - skip;
		bool page = skip + n > FRAME_HDR, whole = skip == 0 && n == FRAME;
		uint32_t pgno;
		int rc = real->pMethods->xRead(real, f->raw, FRAME, start);

		if (rc == SQLITE_IOERR_SHORT_READ) {
			sqlite3_int64 have = real_size(f) - start;

			/* a frame cut short has no page to hand out; its header may do */
			if (page || have < FRAME_HDR) {
				if (have > 0)
					log_warn(
					    "index %s: WAL frame %lld is cut short at byte %lld",
					    f->name, (long long)frame + 1,
					    (long long)(start + have));
				memset(dst, 0, amt);
				return SQLITE_IOERR_SHORT_READ;
			}
		} else if (rc != SQLITE_OK) {
			return rc;
		}
		memcpy(f->plain, f->raw, FRAME_HDR);
		if (wal_mask(f, f->plain, frame))
			return SQLITE_IOERR_READ;
		pgno = get_be32(f->raw);
		if (page && page_open(f, pgno, f->raw + FRAME_HDR, f->plain + FRAME_HDR)) {
			if (!whole) {
				log_error(
				    "index %s: WAL frame %lld (page %u) does not authenticate"
				    " (damaged, or not this store's index): `sealtrail reindex`"
				    " rebuilds the index",
				    f->name, (long long)frame + 1, pgno);
				memset(dst, 0, amt);
				return SQLITE_IOERR_DATA;
			}
			/*
			 * A whole frame is read when SQLite recovers the WAL: a frame
			 * torn by a crash ends the log there, and so does one that
			 * does not authenticate. Hand out a frame whose salts cannot
			 * match: SQLite takes the log as ending before it.
			 */
			log_warn("index %s: WAL frame %lld (page %u) does not authenticate: the"
				 " log is taken to end before it",
				 f->name, (long long)frame + 1, pgno);
			for (int i = 8; i < 16; i++)
				f->plain[i] = ~f->raw[i];
		}
		memcpy(dst, f->plain + skip, n);
		dst += n;
		off += n;
		amt -= n;
	}
	return SQLITE_OK;
}

static int wal_write(struct cfile *f, const uint8_t *src, int amt, sqlite3_int64 off)
{
	sqlite3_file *real = REAL(f);
	sqlite3_int64 frame = (off - WAL_HDR) / FRAME, start = WAL_HDR + frame * FRAME;
	uint32_t pgno;

	if (off == 0 && amt == WAL_HDR) {
		if (get_be32(src + 8) != PAGE) {
			log_error(
			    "index %s: a WAL of %u-byte pages; the encryption needs %u: refused",
			    f->name, get_be32(src + 8), PAGE);
			return SQLITE_IOERR_WRITE;
		}
		return real->pMethods->xWrite(real, src, amt, off);
	}
	if (off >= WAL_HDR && off == start && (amt == FRAME_HDR || amt == FRAME)) {
		memcpy(f->raw, src, FRAME_HDR);
		pgno = get_be32(src);
		if (wal_mask(f, f->raw, frame))
			return SQLITE_IOERR_WRITE;
		if (amt == FRAME && page_seal(f, pgno, src + FRAME_HDR, f->raw + FRAME_HDR))
			return SQLITE_IOERR_WRITE;
		f->hdr_frame = frame;
		f->hdr_pgno = pgno;
		return real->pMethods->xWrite(real, f->raw, amt, off);
	}
	if (off >= WAL_HDR && off == start + FRAME_HDR && amt == PAGE) {
		/* SQLite writes a frame's header, then its page; or overwrites a page */
		if (f->hdr_frame == frame) {
			pgno = f->hdr_pgno;
		} else {
			uint8_t hdr[FRAME_HDR];
			int rc = real->pMethods->xRead(real, hdr, FRAME_HDR, start);

			if (rc != SQLITE_OK) {
				log_error(
				    "index %s: WAL frame %lld has no header to bind its page to",
				    f->name, (long long)frame + 1);
				return SQLITE_IOERR_WRITE;
			}
			pgno = get_be32(hdr);
		}
		if (page_seal(f, pgno, src, f->raw))
			return SQLITE_IOERR_WRITE;
		return real->pMethods->xWrite(real, f->raw, PAGE, off);
	}
	log_error("index %s: a WAL write of %d bytes at byte %lld is neither a header nor a page:"
		  " refused",
		  f->name, amt, (long long)off);
	return SQLITE_IOERR_WRITE;
}

static int cf_read(sqlite3_file *file, void *buf, int amt, sqlite3_int64 off)
{
	struct cfile *f = (struct cfile *)file;

	return f->kind == CF_DB ? db_read(f, buf, amt, off) : wal_read(f, buf, amt, off);
}

static int cf_write(sqlite3_file *file, const void *buf, int amt, sqlite3_int64 off)
{
	struct cfile *f = (struct cfile *)file;

	return f->kind == CF_DB ? db_write(f, buf, amt, off) : wal_write(f, buf, amt, off);
}

static int cf_close(sqlite3_file *file)
{
	struct cfile *f = (struct cfile *)file;
	sqlite3_file *real = REAL(f);
	int rc = real->pMethods ? real->pMethods->xClose(real) : SQLITE_OK;

	xaes_free(&f->x);
	EVP_CIPHER_CTX_free(f->mask);
	f->mask = NULL;
	OPENSSL_cleanse(f->plain, sizeof(f->plain));
	return rc;
}

/* The rest goes straight to the root VFS's file. */
static int cf_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int cf_sync(sqlite3_file *f, int flags)
{
	return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int cf_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int cf_lock(sqlite3_file *f, int lock)
{
	return REAL(f)->pMethods->xLock(REAL(f), lock);
}

static int cf_unlock(sqlite3_file *f, int lock)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), lock);
}

static int cf_check_reserved_lock(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int cf_file_control(sqlite3_file *file, int op, void *arg)
{
	struct cfile *f = (struct cfile *)file;
	int rc = REAL(f)->pMethods->xFileControl(REAL(f), op, arg);

	if (rc == SQLITE_OK && op == SQLITE_FCNTL_VFSNAME)
		*(char **)arg = sqlite3_mprintf("%s/%z", f->vfs->name, *(char **)arg);
	return rc;
}

static int cf_sector_size(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int cf_device_characteristics(sqlite3_file *f)
{
	int c = REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));

	/* writes stay whole pages: no atomic batches, no reads of parts of pages */
	c &= ~SQLITE_IOCAP_BATCH_ATOMIC;
#ifdef SQLITE_IOCAP_SUBPAGE_READ
	c &= ~SQLITE_IOCAP_SUBPAGE_READ;
#endif
	return c;
}

static int cf_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **p)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, p);
}

static int cf_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void cf_shm_barrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int cf_shm_unmap(sqlite3_file *f, int delete_flag)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}

/* Version 2: shared memory for the WAL index, but no xFetch: no mmap of ciphertext. */
static const sqlite3_io_methods crypt_methods = {
    .iVersion = 2,
    .xClose = cf_close,
    .xRead = cf_read,
    .xWrite = cf_write,
    .xTruncate = cf_truncate,
    .xSync = cf_sync,
    .xFileSize = cf_file_size,
    .xLock = cf_lock,
    .xUnlock = cf_unlock,
    .xCheckReservedLock = cf_check_reserved_lock,
    .xFileControl = cf_file_control,
    .xSectorSize = cf_sector_size,
    .xDeviceCharacteristics = cf_device_characteristics,
    .xShmMap = cf_shm_map,
    .xShmLock = cf_shm_lock,
    .xShmBarrier = cf_shm_barrier,
    .xShmUnmap = cf_shm_unmap,
};

/*
 * Temporary files (sorter spills, temp tables, statement journals): a
 * buffer in memory, erased when SQLite closes it. SQLite opens them
 * through the database's VFS whatever temp_store says.
 */
static int mem_close(sqlite3_file *file)
{
	struct cfile *f = (struct cfile *)file;

	if (f->data)
		OPENSSL_cleanse(f->data, f->cap);
	free(f->data);
	f->data = NULL;
	f->size = f->cap = 0;
	return SQLITE_OK;
}

static int mem_read(sqlite3_file *file, void *buf, int amt, sqlite3_int64 off)
{
	struct cfile *f = (struct cfile *)file;
	size_t have = (size_t)off < f->size ? f->size - (size_t)off : 0;
	size_t n = have < (size_t)amt ? have : (size_t)amt;

	if (n)
		memcpy(buf, f->data + off, n);
	if (n == (size_t)amt)
		return SQLITE_OK;
	memset((uint8_t *)buf + n, 0, amt - n);
	return SQLITE_IOERR_SHORT_READ;
}

static int mem_write(sqlite3_file *file, const void *buf, int amt, sqlite3_int64 off)
{
	struct cfile *f = (struct cfile *)file;
	size_t end = (size_t)off + (size_t)amt;

	if (end > f->cap) {
		size_t cap = f->cap ? f->cap : 64 * 1024;
		uint8_t *p;

		while (cap < end)
			cap *= 2;
		p = malloc(cap);
		if (!p)
			return SQLITE_IOERR_NOMEM;
		if (f->data) {
			memcpy(p, f->data, f->size);
			OPENSSL_cleanse(f->data, f->cap);
			free(f->data);
		}
		memset(p + f->size, 0, cap - f->size);
		f->data = p;
		f->cap = cap;
	}
	if ((size_t)off > f->size)
		memset(f->data + f->size, 0, (size_t)off - f->size);
	memcpy(f->data + off, buf, amt);
	if (end > f->size)
		f->size = end;
	return SQLITE_OK;
}

static int mem_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	struct cfile *f = (struct cfile *)file;

	if ((size_t)size < f->size) {
		OPENSSL_cleanse(f->data + size, f->size - (size_t)size);
		f->size = (size_t)size;
	}
	return SQLITE_OK;
}

static int mem_sync(sqlite3_file *file UNUSED, int flags UNUSED)
{
	return SQLITE_OK;
}

static int mem_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	*size = (sqlite3_int64)((struct cfile *)file)->size;
	return SQLITE_OK;
}

static int mem_lock(sqlite3_file *file UNUSED, int lock UNUSED)
{
	return SQLITE_OK;
}

static int mem_check_reserved_lock(sqlite3_file *file UNUSED, int *out)
{
	*out = 0;
	return SQLITE_OK;
}

static int mem_file_control(sqlite3_file *file UNUSED, int op UNUSED, void *arg UNUSED)
{
	return SQLITE_NOTFOUND;
}

static int mem_sector_size(sqlite3_file *file UNUSED)
{
	return 4096;
}

static int mem_device_characteristics(sqlite3_file *file UNUSED)
{
	return 0;
}

static const sqlite3_io_methods mem_methods = {
    .iVersion = 1,
    .xClose = mem_close,
    .xRead = mem_read,
    .xWrite = mem_write,
    .xTruncate = mem_truncate,
    .xSync = mem_sync,
    .xFileSize = mem_file_size,
    .xLock = mem_lock,
    .xUnlock = mem_lock,
    .xCheckReservedLock = mem_check_reserved_lock,
    .xFileControl = mem_file_control,
    .xSectorSize = mem_sector_size,
    .xDeviceCharacteristics = mem_device_characteristics,
};

#define ROOT(vfs) (((struct cryptvfs *)(vfs))->root)

static int cv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
		   int *out_flags)
{
	struct cryptvfs *v = (struct cryptvfs *)vfs;
	struct cfile *f = (struct cfile *)file;
	int rc;

	memset(f, 0, sizeof(*f));
	f->vfs = v;
	f->name = name ? name : "(temporary file)";
	f->hdr_frame = -1;
	if (flags & (SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_SUPER_JOURNAL)) {
		/* it would hold pages in the clear: the index is in WAL mode for good */
		log_error("index %s: SQLite asked for a rollback journal; the index must stay in"
			  " WAL mode (refused: it would hold pages in the clear)",
			  f->name);
		return SQLITE_CANTOPEN;
	}
	if (!name || (flags & (SQLITE_OPEN_TEMP_DB | SQLITE_OPEN_TRANSIENT_DB |
			       SQLITE_OPEN_TEMP_JOURNAL | SQLITE_OPEN_SUBJOURNAL))) {
		f->kind = CF_MEM;
		f->base.pMethods = &mem_methods;
		if (out_flags)
			*out_flags = flags;
		return SQLITE_OK;
	}
	if (!(flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL))) {
		log_error("index %s: SQLite asked for a file of an unknown kind (%#x): refused",
			  f->name, flags);
		return SQLITE_CANTOPEN;
	}
	f->kind = flags & SQLITE_OPEN_WAL ? CF_WAL : CF_DB;
	REAL(f)->pMethods = NULL;
	if (xaes_init(&f->x, v->page_key))
		return SQLITE_NOMEM;
	if (f->kind == CF_WAL) {
		f->mask = EVP_CIPHER_CTX_new();
		if (!f->mask ||
		    EVP_EncryptInit_ex(f->mask, EVP_aes_256_ecb(), NULL, v->mask_key, NULL) != 1 ||
		    EVP_CIPHER_CTX_set_padding(f->mask, 0) != 1) {
			cf_close(file);
			return SQLITE_NOMEM;
		}
	}
	rc = v->root->xOpen(v->root, name, REAL(f), flags, out_flags);
	if (rc != SQLITE_OK) {
		REAL(f)->pMethods = NULL; /* a failed xOpen needs no xClose */
		cf_close(file);
		return rc;
	}
	f->base.pMethods = &crypt_methods;
	return SQLITE_OK;
}

static int cv_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	return ROOT(vfs)->xDelete(ROOT(vfs), name, sync_dir);
}

static int cv_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	return ROOT(vfs)->xAccess(ROOT(vfs), name, flags, out);
}

static int cv_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	return ROOT(vfs)->xFullPathname(ROOT(vfs), name, n, out);
}

static void *cv_dl_open(sqlite3_vfs *vfs, const char *name)
{
	return ROOT(vfs)->xDlOpen(ROOT(vfs), name);
}

static void cv_dl_error(sqlite3_vfs *vfs, int n, char *msg)
{
	ROOT(vfs)->xDlError(ROOT(vfs), n, msg);
}

static void (*cv_dl_sym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
	return ROOT(vfs)->xDlSym(ROOT(vfs), h, sym);
}

static void cv_dl_close(sqlite3_vfs *vfs, void *h)
{
	ROOT(vfs)->xDlClose(ROOT(vfs), h);
}

static int cv_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	return ROOT(vfs)->xRandomness(ROOT(vfs), n, out);
}

static int cv_sleep(sqlite3_vfs *vfs, int us)
{
	return ROOT(vfs)->xSleep(ROOT(vfs), us);
}

static int cv_current_time(sqlite3_vfs *vfs, double *t)
{
	return ROOT(vfs)->xCurrentTime(ROOT(vfs), t);
}

static int cv_get_last_error(sqlite3_vfs *vfs, int n, char *msg)
{
	return ROOT(vfs)->xGetLastError(ROOT(vfs), n, msg);
}

static int cv_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *t)
{
	return ROOT(vfs)->xCurrentTimeInt64(ROOT(vfs), t);
}

static int hkdf(const uint8_t *ikm, const uint8_t salt[ST_ID_LEN], const char *info,
		uint8_t out[CRYPTVFS_KEY_LEN])
{
	EVP_PKEY_CTX *kdf = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
	size_t n = CRYPTVFS_KEY_LEN;
	int ok;

	ok =
	    kdf && EVP_PKEY_derive_init(kdf) == 1 &&
	    EVP_PKEY_CTX_set_hkdf_md(kdf, EVP_sha256()) == 1 &&
	    EVP_PKEY_CTX_set1_hkdf_salt(kdf, salt, ST_ID_LEN) == 1 &&
	    EVP_PKEY_CTX_set1_hkdf_key(kdf, ikm, CRYPTVFS_KEY_LEN) == 1 &&
	    EVP_PKEY_CTX_add1_hkdf_info(kdf, (const unsigned char *)info, (int)strlen(info)) == 1 &&
	    EVP_PKEY_derive(kdf, out, &n) == 1 && n == CRYPTVFS_KEY_LEN;
	EVP_PKEY_CTX_free(kdf);
	return ok ? 0 : -EIO;
}

int cryptvfs_new(const uint8_t root_key[CRYPTVFS_KEY_LEN], const uint8_t id[ST_ID_LEN],
		 struct cryptvfs **out)
{
	sqlite3_vfs *root = sqlite3_vfs_find(NULL);
	struct cryptvfs *v;
	int err;

	*out = NULL;
	if (!root)
		return -ENOENT;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->root = root;
	memcpy(v->id, id, ST_ID_LEN);
	err = hkdf(root_key, id, "sealtrail index pages v1", v->page_key);
	err = err ?: hkdf(root_key, id, "sealtrail index wal checksums v1", v->mask_key);
	if (err) {
		cryptvfs_free(v);
		return err;
	}
	snprintf(v->name, sizeof(v->name), "sealtrail-crypt-%p", (void *)v);
	v->base = (sqlite3_vfs){
	    .iVersion = 2,
	    .szOsFile = (int)sizeof(struct cfile) + root->szOsFile,
	    .mxPathname = root->mxPathname,
	    .zName = v->name,
	    .pAppData = v,
	    .xOpen = cv_open,
	    .xDelete = cv_delete,
	    .xAccess = cv_access,
	    .xFullPathname = cv_full_pathname,
	    .xDlOpen = cv_dl_open,
	    .xDlError = cv_dl_error,
	    .xDlSym = cv_dl_sym,
	    .xDlClose = cv_dl_close,
	    .xRandomness = cv_randomness,
	    .xSleep = cv_sleep,
	    .xCurrentTime = cv_current_time,
	    .xGetLastError = cv_get_last_error,
	    .xCurrentTimeInt64 =
		root->iVersion >= 2 && root->xCurrentTimeInt64 ? cv_current_time_int64 : NULL,
	};
	if (sqlite3_vfs_register(&v->base, 0) != SQLITE_OK) {
		cryptvfs_free(v);
		return -EIO;
	}
	*out = v;
	return 0;
}

const char *cryptvfs_name(const struct cryptvfs *v)
{
	return v->name;
}

void cryptvfs_free(struct cryptvfs *v)
{
	if (!v)
		return;
	if (v->base.zName)
		sqlite3_vfs_unregister(&v->base);
	OPENSSL_cleanse(v, sizeof(*v));
	free(v);
}

int cryptvfs_file_is_plain(const char *path)
{
	static const char magic[16] = "SQLite format 3";
	char head[16];
	int fd = open(path, O_RDONLY | O_CLOEXEC), err;
	ssize_t n;

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	n = pread(fd, head, sizeof(head), 0);
	err = n < 0 ? -errno : 0;
	close(fd);
	if (err)
		return err;
	return n == (ssize_t)sizeof(head) && !memcmp(head, magic, sizeof(magic));
}
