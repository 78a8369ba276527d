/*
 * libFuzzer target for DIR/resume (store_resume_parse in store/sealing.c):
 * where a writer goes on from, read at every sealtraild start from a file
 * anyone with write access to the store could have changed. The parser
 * must accept only a file of the exact layout, this store's id and a
 * right checksum, and hand out only positions a writer can check against
 * the log (one envelope of at most SEAL_MAX_LEN bytes, seq >= 1).
 *
 * The first input byte is a mode:
 *   bit 0  the checksum is made right, so that mutations reach the fields
 *   bit 1  the magic and the store id are made this store's
 *
 *   build/fuzz/fuzz_resume selftests/fuzz/corpus/fuzz_resume
 */
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "store/store.h"

static const uint8_t ID[ST_ID_LEN] = "fuzz-resume-id..";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[STORE_RESUME_LEN + 64];
	struct store_resume r;
	unsigned mdlen = 0;
	char why[128] = "";
	size_t len;
	uint8_t mode;
	int err;

	if (!size)
		return 0;
	mode = data[0];
	len = size - 1 < sizeof(buf) ? size - 1 : sizeof(buf);
	memcpy(buf, data + 1, len);
	if ((mode & 2) && len >= 24 + ST_ID_LEN) {
		memcpy(buf, "sealtrail-resume v1\0\0\0\0\0", 24);
		memcpy(buf + 24, ID, ST_ID_LEN);
	}
	if ((mode & 1) && len > SEAL_HASH_LEN)
		CHECK(EVP_Digest(buf, len - SEAL_HASH_LEN, buf + len - SEAL_HASH_LEN, &mdlen,
				 EVP_sha256(), NULL));
	err = store_resume_parse(buf, len, ID, &r, why);
	CHECK(memchr(why, 0, sizeof(why)));
	if (err) {
		CHECK(why[0]);
		return 0;
	}
	CHECK(len == STORE_RESUME_LEN);
	/* the tree the epoch record signs holds the envelopes before it */
	CHECK(r.seg_no >= 1 && r.last_seq >= 1 && r.tree.size < r.last_seq);
	CHECK(r.last_off < r.seg_end && r.seg_end - r.last_off <= SEAL_MAX_LEN);
	return 0;
}
