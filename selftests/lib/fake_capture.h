/* capture/capture.h without BPF: maps in memory (fake_capture.c). */
#ifndef SEALTRAIL_FAKE_CAPTURE_H
#define SEALTRAIL_FAKE_CAPTURE_H

/* Empty every table, as a fresh load of the programs would. */
void fake_capture_reset(void);

struct hasher;
/*
 * The jobs queued on a hasher that was never started come back done, each
 * with error err (not hashed), as tracker_files_done() then takes them.
 */
void fake_hashes_fail(struct hasher *h, int err);

#endif
