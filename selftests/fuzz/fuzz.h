/* What the libFuzzer targets share. */
#ifndef SEALTRAIL_FUZZ_H
#define SEALTRAIL_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

/* An invariant the code under test broke: say which, and crash for libFuzzer. */
#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);                 \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif
