/* capture/capture.h without BPF: maps in memory (fake_capture.c). */
#ifndef SEALTRAIL_FAKE_CAPTURE_H
#define SEALTRAIL_FAKE_CAPTURE_H

/* Empty every table, as a fresh load of the programs would. */
void fake_capture_reset(void);

#endif
