/*
 * A small unit-test framework in the style of the kernel's BPF selftests.
 *
 *   TEST(record_round_trip)
 *   {
 *           if (!ASSERT_OK(rec_begin(...), "rec_begin"))
 *                   return;
 *           ASSERT_EQ(rec.nfields, 3, "nfields");
 *   }
 *
 * TEST() registers the function at startup; test_main.c runs every test in a
 * child process with its own temporary directory (test_dir(), test_path()),
 * prints "PASS name" or "FAIL name" and ends with "N passed, N failed".
 * A failed ASSERT_* prints file:line, the label and both values, marks the
 * test failed and evaluates to false; it does not abort the test, so a test
 * returns early only where carrying on makes no sense.
 */
#ifndef SEALTRAIL_SELFTEST_H
#define SEALTRAIL_SELFTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef void (*test_fn)(void);

void test_register(const char *name, test_fn fn, const char *file, int line);

#define TEST(name)                                                                                 \
	static void test_##name(void);                                                             \
	__attribute__((constructor)) static void test_register_##name(void)                        \
	{                                                                                          \
		test_register(#name, test_##name, __FILE__, __LINE__);                             \
	}                                                                                          \
	static void test_##name(void)

/* The current test's temporary directory; removed after the test. */
const char *test_dir(void);
/* test_dir()/name in a static buffer that the next call overwrites. */
const char *test_path(const char *name);

/* Mark the current test failed with a message (printf format). */
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Both buffers in hex around the first byte where they differ. */
void test_fail_mem(const char *file, int line, const char *what, const void *got, size_t got_len,
		   const void *want, size_t want_len);
bool test_failed(void);

#define ASSERT_EQ(got, want, what)                                                                 \
	({                                                                                         \
		long long ___g = (long long)(got), ___w = (long long)(want);                       \
		bool ___ok = ___g == ___w;                                                         \
		if (!___ok)                                                                        \
			test_fail(__FILE__, __LINE__, "%s: got %lld (%#llx), want %lld (%#llx)",   \
				  (what), ___g, (unsigned long long)___g, ___w,                    \
				  (unsigned long long)___w);                                       \
		___ok;                                                                             \
	})

#define ASSERT_NEQ(got, unwanted, what)                                                            \
	({                                                                                         \
		long long ___g = (long long)(got), ___u = (long long)(unwanted);                   \
		bool ___ok = ___g != ___u;                                                         \
		if (!___ok)                                                                        \
			test_fail(__FILE__, __LINE__, "%s: got %lld, want anything else", (what),  \
				  ___g);                                                           \
		___ok;                                                                             \
	})

#define ASSERT_CMP(got, op, bound, what)                                                           \
	({                                                                                         \
		long long ___g = (long long)(got), ___b = (long long)(bound);                      \
		bool ___ok = ___g op ___b;                                                         \
		if (!___ok)                                                                        \
			test_fail(__FILE__, __LINE__, "%s: got %lld, want %s %lld", (what), ___g,  \
				  #op, ___b);                                                      \
		___ok;                                                                             \
	})
#define ASSERT_GT(got, bound, what) ASSERT_CMP(got, >, bound, what)
#define ASSERT_GE(got, bound, what) ASSERT_CMP(got, >=, bound, what)
#define ASSERT_LT(got, bound, what) ASSERT_CMP(got, <, bound, what)
#define ASSERT_LE(got, bound, what) ASSERT_CMP(got, <=, bound, what)

/* An error code that should be 0; prints it as an errno name on failure. */
#define ASSERT_OK(err, what)                                                                       \
	({                                                                                         \
		long long ___e = (long long)(err);                                                 \
		bool ___ok = ___e == 0;                                                            \
		if (!___ok)                                                                        \
			test_fail(__FILE__, __LINE__, "%s: failed with %lld (%s)", (what), ___e,   \
				  strerror(___e < 0 ? (int)-___e : (int)___e));                    \
		___ok;                                                                             \
	})

#define ASSERT_TRUE(cond, what)                                                                    \
	({                                                                                         \
		bool ___ok = !!(cond);                                                             \
		if (!___ok)                                                                        \
			test_fail(__FILE__, __LINE__, "%s: unexpectedly false: %s", (what),        \
				  #cond);                                                          \
		___ok;                                                                             \
	})

#define ASSERT_FALSE(cond, what)                                                                   \
	({                                                                                         \
		bool ___ok = !(cond);                                                              \
		if (!___ok)                                                                        \
			test_fail(__FILE__, __LINE__, "%s: unexpectedly true: %s", (what), #cond); \
		___ok;                                                                             \
	})

#define ASSERT_STREQ(got, want, what)                                                              \
	({                                                                                         \
		const char *___g = (got), *___w = (want);                                          \
		bool ___ok = ___g && ___w && !strcmp(___g, ___w);                                  \
		if (!___ok)                                                                        \
			test_fail(__FILE__, __LINE__, "%s: got \"%s\", want \"%s\"", (what),       \
				  ___g ? ___g : "(null)", ___w ? ___w : "(null)");                 \
		___ok;                                                                             \
	})

#define ASSERT_MEMEQ(got, want, len, what)                                                         \
	({                                                                                         \
		const void *___g = (got), *___w = (want);                                          \
		size_t ___n = (len);                                                               \
		bool ___ok = !___n || (___g && ___w && !memcmp(___g, ___w, ___n));                 \
		if (!___ok)                                                                        \
			test_fail_mem(__FILE__, __LINE__, (what), ___g, ___n, ___w, ___n);         \
		___ok;                                                                             \
	})

/* Two buffers of possibly different lengths must be identical. */
#define ASSERT_BYTES_EQ(got, got_len, want, want_len, what)                                        \
	({                                                                                         \
		const void *___g = (got), *___w = (want);                                          \
		size_t ___gn = (got_len), ___wn = (want_len);                                      \
		bool ___ok = ___gn == ___wn && (!___gn || !memcmp(___g, ___w, ___gn));             \
		if (!___ok)                                                                        \
			test_fail_mem(__FILE__, __LINE__, (what), ___g, ___gn, ___w, ___wn);       \
		___ok;                                                                             \
	})

#define ASSERT_NOT_NULL(ptr, what) ASSERT_TRUE((ptr) != NULL, what)

#endif
