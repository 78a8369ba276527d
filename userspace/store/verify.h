/*
 * Offline verification of a store's seal: needs no decryption key, only
 * the files and the first public key (pinned by the auditor).
 */
#ifndef SEALTRAIL_VERIFY_H
#define SEALTRAIL_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/auditor.h"

struct verify_opts {
	const char *pubkey_file; /* "store HEX\nfirst-key HEX\n"; default DIR/keys/first.pub */
	/*
	 * Saved checkpoints: C2SP signed notes, one or many (a --checkpoint-file),
	 * and syslog lines of --checkpoint-syslog; notes of other stores are
	 * skipped, every one of this store must be consistent with it
	 */
	const char *against_file;
};

/* A run of consecutive segments whose data keys are wrapped alike. */
struct verify_wrap {
	uint32_t first_seg, last_seg;
	bool auditor; /* also wrapped to pk, an auditor's key (v3 header) */
	uint8_t pk[AUDITOR_KEY_LEN];
};
#define VERIFY_MAX_WRAPS 16

struct verify_result {
	bool ok;
	bool pinned; /* the first key came from --pubkey, not from the store */
	/* the first failure */
	char file[512];
	uint64_t offset;
	uint64_t seq;
	char reason[256];
	/* what was checked */
	uint64_t records;
	uint64_t covered; /* records under a signed tree head */
	uint32_t epochs; /* closed epochs */
	uint64_t checkpoint_size; /* the largest tree a checked checkpoint signs */
	uint64_t checkpoints; /* this store's checkpoints checked */
	bool checkpoint_ok;
	/* to whom the segments walked are wrapped, in runs (the last run absorbs any more) */
	struct verify_wrap wraps[VERIFY_MAX_WRAPS];
	uint32_t nwraps;
};

/* 0 when verification ran (see r->ok), negative errno when it could not. */
int store_verify(const char *dir, const struct verify_opts *o, struct verify_result *r);

/*
 * Every checkpoint note in text (len bytes): signed notes as sealtraild
 * writes them, and the base64 note after "note=" of each syslog line
 * tagged "sealtrail-checkpoint" (sinks.h). fn gets each as NUL-terminated
 * text (empty or cut if it is not a note) and its byte offset in text.
 */
int checkpoint_each_note(const char *text, size_t len,
			 int (*fn)(void *arg, const char *note, uint64_t off), void *arg);

#endif
