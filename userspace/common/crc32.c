#include "common/crc32.h"

#include <stdbool.h>
#include <zlib.h>

#if defined(__x86_64__)
#include <immintrin.h>

/*
 * Folding constants for the reflected CRC-32 polynomial (Intel, "Fast CRC
 * Computation for Generic Polynomials Using PCLMULQDQ", 2009): x^(k) mod P
 * for the distances folded, bit-reflected, as Linux's crc32-pclmul uses.
 */
#define K1 0x154442bd4ull /* fold 512 bits: low qword */
#define K2 0x1c6e41596ull /* fold 512 bits: high qword */
#define K3 0x1751997d0ull /* fold 128 bits: low qword */
#define K4 0x0ccaa009eull /* fold 128 bits: high qword */
#define K5 0x163cd6124ull /* 64 -> 32 bits */
#define P_X 0x1db710641ull /* the polynomial, reflected, with its x^32 bit */
#define U_PRIME 0x1f7011641ull /* floor(x^64 / P), reflected */

/* One 128-bit lane folded over 'distance' bits onto the next 16 bytes. */
__attribute__((target("pclmul,sse4.1"))) static inline __m128i fold(__m128i x, __m128i k,
								    __m128i next)
{
	return _mm_xor_si128(
	    _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)),
	    next);
}

/*
 * The raw CRC state (not inverted) over len bytes, len >= 64 and a
 * multiple of 16.
 */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc_fold(uint32_t crc, const uint8_t *p,
								  size_t len)
{
	const __m128i k12 = _mm_set_epi64x(K2, K1), k34 = _mm_set_epi64x(K4, K3);
	const __m128i mask32 = _mm_set_epi32(0, 0, 0, -1);
	__m128i x0 = _mm_loadu_si128((const __m128i *)p),
		x1 = _mm_loadu_si128((const __m128i *)(p + 16)),
		x2 = _mm_loadu_si128((const __m128i *)(p + 32)),
		x3 = _mm_loadu_si128((const __m128i *)(p + 48)), t;

	x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)crc));
	p += 64;
	len -= 64;
	for (; len >= 64; p += 64, len -= 64) {
		x0 = fold(x0, k12, _mm_loadu_si128((const __m128i *)p));
		x1 = fold(x1, k12, _mm_loadu_si128((const __m128i *)(p + 16)));
		x2 = fold(x2, k12, _mm_loadu_si128((const __m128i *)(p + 32)));
		x3 = fold(x3, k12, _mm_loadu_si128((const __m128i *)(p + 48)));
	}
	/* four lanes into one, then the 16-byte blocks left */
	x0 = fold(x0, k34, x1);
	x0 = fold(x0, k34, x2);
	x0 = fold(x0, k34, x3);
	for (; len >= 16; p += 16, len -= 16)
		x0 = fold(x0, k34, _mm_loadu_si128((const __m128i *)p));
	/* 128 -> 64 bits, appending 32 zero bits */
	t = _mm_clmulepi64_si128(x0, k34, 0x10); /* low qword of x0 times K4 */
	x0 = _mm_xor_si128(_mm_srli_si128(x0, 8), t);
	/* 64 -> 32 bits */
	t = _mm_srli_si128(x0, 4);
	x0 = _mm_clmulepi64_si128(_mm_and_si128(x0, mask32), _mm_set_epi64x(0, K5), 0x00);
	x0 = _mm_xor_si128(x0, t);
	/* Barrett reduction to the 32-bit remainder */
	t = x0;
	x0 = _mm_clmulepi64_si128(_mm_and_si128(x0, mask32), _mm_set_epi64x(U_PRIME, P_X), 0x10);
	x0 = _mm_clmulepi64_si128(_mm_and_si128(x0, mask32), _mm_set_epi64x(U_PRIME, P_X), 0x00);
	x0 = _mm_xor_si128(x0, t);
	return (uint32_t)_mm_extract_epi32(x0, 1);
}

static bool have_pclmul(void)
{
	static int have = -1;

	if (have < 0) {
		__builtin_cpu_init();
		have = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
	}
	return have;
}
#endif

uint32_t st_crc32(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

#if defined(__x86_64__)
	if (len >= 64 && have_pclmul()) {
		size_t n = len & ~(size_t)15;

		/* zlib's value is the raw state inverted in and out */
		crc = ~crc_fold(~crc, p, n);
		p += n;
		len -= n;
	}
#endif
	return (uint32_t)crc32_z(crc, len ? p : (const uint8_t *)"", len);
}
