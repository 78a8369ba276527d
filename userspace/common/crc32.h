/*
 * CRC-32 as zlib's crc32() computes it (reflected, polynomial 0xEDB88320,
 * inverted in and out), folded with carry-less multiplication where the
 * CPU has it: the store checks one over every record's bytes, and zlib's
 * table version was a tenth of the collector's CPU time for bulk output.
 */
#ifndef SEALTRAIL_COMMON_CRC32_H
#define SEALTRAIL_COMMON_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* The same value as zlib's crc32(crc, buf, len), for any buf and len. */
uint32_t st_crc32(uint32_t crc, const void *buf, size_t len);

#endif
