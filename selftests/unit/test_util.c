/*
 * common/util.c: time parsing and formatting, JSON strings of untrusted
 * bytes, hex ids and the growable buffer; common/crc32.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/crc32.h"
#include "common/util.h"
#include "test.h"

#define NS 1000000000ull
/* 2023-11-14T22:13:20.123456789Z, the "now" of the relative-time tests */
#define NOW (1700000000ull * NS + 123456789ull)

static void check_time(const char *file, int line, const char *s, int want_rc, uint64_t want)
{
	uint64_t got = 0xdeadbeef;
	int rc = parse_time(s, NOW, &got);

	if (rc != want_rc)
		test_fail(file, line, "parse_time(\"%s\"): returned %d (%s), want %d", s, rc,
			  rc ? strerror(-rc) : "ok", want_rc);
	else if (!rc && got != want)
		test_fail(file, line, "parse_time(\"%s\"): got %llu, want %llu", s,
			  (unsigned long long)got, (unsigned long long)want);
}
#define CHECK_TIME(s, want) check_time(__FILE__, __LINE__, s, 0, want)
#define CHECK_TIME_ERR(s, rc) check_time(__FILE__, __LINE__, s, rc, 0)

TEST(parse_time_rfc3339)
{
	CHECK_TIME("2024-02-29T12:34:56Z", 1709210096ull * NS);
	CHECK_TIME("2024-02-29T12:34:56z", 1709210096ull * NS);
	CHECK_TIME("2024-02-29 12:34:56Z", 1709210096ull * NS);
	CHECK_TIME("2024-02-29t12:34:56.5z", 1709210096ull * NS + 500000000);
	CHECK_TIME("1970-01-01T00:00:00Z", 0);
	CHECK_TIME("2001-09-09T01:46:40Z", 1000000000ull * NS);
	/* offsets: local time minus the offset is UTC */
	CHECK_TIME("2024-02-29T14:34:56+02:00", 1709210096ull * NS);
	CHECK_TIME("2024-02-29T07:04:56-05:30", 1709210096ull * NS);
	CHECK_TIME("2024-02-29T12:34:56+00:00", 1709210096ull * NS);
	CHECK_TIME("2024-02-29T12:34:56-00:00", 1709210096ull * NS);
	CHECK_TIME("2024-01-01T00:30:00+01:00", 1704067200ull * NS - 1800 * NS);
	/* fractions: any number of digits, ns resolution, the rest dropped */
	CHECK_TIME("2024-02-29T12:34:56.123456789Z", 1709210096ull * NS + 123456789);
	CHECK_TIME("2024-02-29T12:34:56.5Z", 1709210096ull * NS + 500000000);
	CHECK_TIME("2024-02-29T12:34:56.000000001Z", 1709210096ull * NS + 1);
	CHECK_TIME("2024-02-29T12:34:56.1234567899Z", 1709210096ull * NS + 123456789);
	CHECK_TIME("2024-02-29T14:34:56.25+02:00", 1709210096ull * NS + 250000000);
	/* the largest time a u64 of ns holds */
	CHECK_TIME("2554-07-21T23:34:33.709551615Z", UINT64_MAX);
}

TEST(parse_time_relative)
{
	CHECK_TIME("0s", NOW);
	CHECK_TIME("90s", NOW - 90 * NS);
	CHECK_TIME("15m", NOW - 15 * 60 * NS);
	CHECK_TIME("2h", NOW - 2 * 3600 * NS);
	CHECK_TIME("7d", NOW - 7 * 86400 * NS);
	CHECK_TIME("1w", NOW - 7 * 86400 * NS);
	CHECK_TIME("2810w", NOW - 2810ull * 7 * 86400 * NS);
	CHECK_TIME_ERR("2811w", -ERANGE); /* before 1970 */
	CHECK_TIME_ERR("99999999999999999999s", -EINVAL); /* strtoull overflow */
}

TEST(parse_time_rejects)
{
	CHECK_TIME_ERR("", -EINVAL);
	CHECK_TIME_ERR("garbage", -EINVAL);
	CHECK_TIME_ERR("5x", -EINVAL);
	CHECK_TIME_ERR("5", -EINVAL);
	CHECK_TIME_ERR("h", -EINVAL);
	CHECK_TIME_ERR("5hh", -EINVAL);
	CHECK_TIME_ERR("5H", -EINVAL);
	CHECK_TIME_ERR("1.5h", -EINVAL);
	CHECK_TIME_ERR("-5s", -EINVAL);
	CHECK_TIME_ERR("2024-02-29T12:34:56", -EINVAL); /* no zone */
	CHECK_TIME_ERR("2024-02-29", -EINVAL);
	CHECK_TIME_ERR("2024-02-29T12:34", -EINVAL);
	CHECK_TIME_ERR("2024-02-29T12:34:56.Z", -EINVAL); /* dot without digits */
	CHECK_TIME_ERR("2024-02-29T12:34:56ZZ", -EINVAL);
	CHECK_TIME_ERR("2024-02-29T12:34:56Z ", -EINVAL);
	CHECK_TIME_ERR("2024-02-29T12:34:56+0200", -EINVAL);
	CHECK_TIME_ERR("2024-02-29T12:34:56+02", -EINVAL);
	CHECK_TIME_ERR("2024-02-29T12:34:56+24:00", -EINVAL);
	CHECK_TIME_ERR("2024-02-29T12:34:56+02:60", -EINVAL);
	CHECK_TIME_ERR("2024-02-29T12:34:56+02:00x", -EINVAL);
	CHECK_TIME_ERR("2024-02-29T12:34:56 +02:00", -EINVAL);
	CHECK_TIME_ERR("2024-13-01T00:00:00Z", -EINVAL);
	CHECK_TIME_ERR("2024-02-29T25:00:00Z", -EINVAL);
	CHECK_TIME_ERR("1969-12-31T23:59:59Z", -ERANGE);
	CHECK_TIME_ERR("1970-01-01T00:30:00+01:00", -ERANGE);
	ASSERT_EQ(parse_time(NULL, NOW, &(uint64_t){0}), -EINVAL, "NULL");
}

/*
 * A zone offset is "+hh:mm" with two digits each. parse_time reads it with
 * sscanf("%2d:%2d"), which also takes one digit, a sign or a space, and then
 * skips 6 bytes whatever it read, so the check for trailing garbage reads
 * past the string's NUL: the byte after it for "+2:00", the second byte
 * after it for "+2:0" (an ASan build reports a buffer overflow in parse_time).
 */
TEST(parse_time_rejects_malformed_zone_offset)
{
	/* the bytes after the NUL are zero, as the next object in memory might be */
	char s[40] = "2024-02-29T12:34:56+2:0";

	ASSERT_EQ(parse_time(s, NOW, &(uint64_t){0}), -EINVAL,
		  "\"+2:0\" (and the read past its NUL)");
	CHECK_TIME_ERR("2024-02-29T12:34:56+2:00", -EINVAL);
	CHECK_TIME_ERR("2024-02-29T12:34:56+-1:00", -EINVAL);
	CHECK_TIME_ERR("2024-02-29T12:34:56+ 1:00", -EINVAL);
	CHECK_TIME_ERR("2024-02-29T12:34:56+01:-5", -EINVAL);
}

/*
 * Times after 2554-07-21T23:34:33.709551615Z do not fit a u64 of ns; they
 * must be refused like times before 1970, not wrapped around to a date in
 * the past ("9999-12-31" as "until forever" would select nothing).
 */
TEST(parse_time_rejects_times_past_u64)
{
	CHECK_TIME_ERR("2554-07-21T23:34:33.709551616Z", -ERANGE);
	CHECK_TIME_ERR("2554-07-21T23:34:34Z", -ERANGE);
	CHECK_TIME_ERR("2600-01-01T00:00:00Z", -ERANGE);
	CHECK_TIME_ERR("9999-12-31T23:59:59Z", -ERANGE);
}

TEST(format_rfc3339_known_values)
{
	static const struct {
		uint64_t ns;
		const char *want;
	} cases[] = {
	    {0, "1970-01-01T00:00:00.000000000Z"},
	    {1, "1970-01-01T00:00:00.000000001Z"},
	    {999999999, "1970-01-01T00:00:00.999999999Z"},
	    {NOW, "2023-11-14T22:13:20.123456789Z"},
	    {1709210096ull * NS, "2024-02-29T12:34:56.000000000Z"},
	    {UINT64_MAX, "2554-07-21T23:34:33.709551615Z"},
	};
	char out[40];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		format_rfc3339(cases[i].ns, out);
		ASSERT_STREQ(out, cases[i].want, "format_rfc3339");
	}
}

TEST(format_then_parse_round_trip)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;

	for (int i = 0; i < 1000; i++) {
		char s[40];
		uint64_t back = 0;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		format_rfc3339(x, s);
		if (!ASSERT_OK(parse_time(s, NOW, &back), s) || !ASSERT_EQ(back, x, s))
			break;
	}
}

/* Reference: Unicode 15, table 3-7, well-formed UTF-8 byte sequences. */
static size_t ref_utf8_len(const uint8_t *s, size_t len)
{
	uint8_t lo = 0x80, hi = 0xbf;
	size_t n;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0;
	if (s[0] == 0xed)
		hi = 0x9f;
	if (s[0] == 0xf0)
		lo = 0x90;
	if (s[0] == 0xf4)
		hi = 0x8f;
	if (len < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* What json_add_string should produce, written independently of it. */
static void ref_json(struct buf *b, const uint8_t *s, size_t len)
{
	buf_add(b, "\"", 1);
	for (size_t i = 0; i < len;) {
		size_t n;

		if (s[i] == '"' || s[i] == '\\') {
			buf_add(b, "\\", 1);
			buf_add(b, s + i, 1);
		} else if (s[i] == '\n') {
			buf_add(b, "\\n", 2);
		} else if (s[i] == '\r') {
			buf_add(b, "\\r", 2);
		} else if (s[i] == '\t') {
			buf_add(b, "\\t", 2);
		} else if (s[i] < 0x20 || s[i] == 0x7f) {
			buf_addf(b, "\\u00%c%c", "0123456789abcdef"[s[i] >> 4],
				 "0123456789abcdef"[s[i] & 15]);
		} else if ((n = ref_utf8_len(s + i, len - i)) > 0) {
			buf_add(b, s + i, n);
			i += n;
			continue;
		} else {
			buf_add(b, "\xef\xbf\xbd", 3);
		}
		i++;
	}
	buf_add(b, "\"", 1);
}

static void check_json(const char *file, int line, const void *in, size_t len, const char *want)
{
	struct buf b = {0};

	if (json_add_string(&b, in, len))
		test_fail(file, line, "json_add_string failed");
	else if (b.len != strlen(want) || memcmp(b.data, want, b.len))
		test_fail_mem(file, line, "json_add_string", b.data, b.len, want, strlen(want));
	buf_free(&b);
}
#define CHECK_JSON(in, want) check_json(__FILE__, __LINE__, in, sizeof(in) - 1, want)

#define FFFD "\xef\xbf\xbd"

TEST(json_string_escapes)
{
	CHECK_JSON("", "\"\"");
	CHECK_JSON("plain text", "\"plain text\"");
	CHECK_JSON("say \"hi\"", "\"say \\\"hi\\\"\"");
	CHECK_JSON("C:\\dir", "\"C:\\\\dir\"");
	CHECK_JSON("a\nb\rc\td", "\"a\\nb\\rc\\td\"");
	CHECK_JSON("\x01\x1b[31m\x1f\x7f", "\"\\u0001\\u001b[31m\\u001f\\u007f\"");
	CHECK_JSON("a\0b", "\"a\\u0000b\"");
	CHECK_JSON("/ <script>", "\"/ <script>\"");
}

TEST(json_string_utf8)
{
	/* valid sequences of every length are kept, including the extremes */
	CHECK_JSON("caf\xc3\xa9", "\"caf\xc3\xa9\"");
	CHECK_JSON("\xe2\x82\xac 5", "\"\xe2\x82\xac 5\"");
	CHECK_JSON("\xf0\x9d\x84\x9e", "\"\xf0\x9d\x84\x9e\"");
	CHECK_JSON("\xc2\x80\xdf\xbf", "\"\xc2\x80\xdf\xbf\"");
	CHECK_JSON("\xe0\xa0\x80\xef\xbf\xbf", "\"\xe0\xa0\x80\xef\xbf\xbf\"");
	CHECK_JSON("\xed\x9f\xbf\xee\x80\x80", "\"\xed\x9f\xbf\xee\x80\x80\"");
	CHECK_JSON("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"");
	CHECK_JSON(FFFD, "\"" FFFD "\"");
	/* invalid bytes: each becomes one U+FFFD */
	CHECK_JSON("a\x80z", "\"a" FFFD "z\"");
	CHECK_JSON("\xbf\xfe\xff", "\"" FFFD FFFD FFFD "\"");
	CHECK_JSON("\xf8\x88\x80\x80\x80", "\"" FFFD FFFD FFFD FFFD FFFD "\"");
	/* truncated sequences, at the end and before other characters */
	CHECK_JSON("\xc3", "\"" FFFD "\"");
	CHECK_JSON("\xe2\x82", "\"" FFFD FFFD "\"");
	CHECK_JSON("\xf0\x9d\x84", "\"" FFFD FFFD FFFD "\"");
	CHECK_JSON("\xe2\x82"
		   "A",
		   "\"" FFFD FFFD "A\"");
	CHECK_JSON("\xc3\n", "\"" FFFD "\\n\"");
	/* overlong encodings */
	CHECK_JSON("\xc0\xaf", "\"" FFFD FFFD "\"");
	CHECK_JSON("\xc1\xbf", "\"" FFFD FFFD "\"");
	CHECK_JSON("\xe0\x80\xaf", "\"" FFFD FFFD FFFD "\"");
	CHECK_JSON("\xe0\x9f\xbf", "\"" FFFD FFFD FFFD "\"");
	CHECK_JSON("\xf0\x80\x80\xaf", "\"" FFFD FFFD FFFD FFFD "\"");
	CHECK_JSON("\xf0\x8f\xbf\xbf", "\"" FFFD FFFD FFFD FFFD "\"");
	/* UTF-16 surrogates and code points above U+10FFFF */
	CHECK_JSON("\xed\xa0\x80", "\"" FFFD FFFD FFFD "\"");
	CHECK_JSON("\xed\xbf\xbf", "\"" FFFD FFFD FFFD "\"");
	CHECK_JSON("\xf4\x90\x80\x80", "\"" FFFD FFFD FFFD FFFD "\"");
	CHECK_JSON("\xf5\x80\x80\x80", "\"" FFFD FFFD FFFD FFFD "\"");
}

TEST(json_string_appends)
{
	struct buf b = {0};

	ASSERT_OK(buf_add(&b, "{\"k\":", 5), "buf_add");
	ASSERT_OK(json_add_string(&b, (const uint8_t *)"v", 1), "json_add_string");
	ASSERT_OK(buf_add(&b, "}", 1), "buf_add");
	ASSERT_STREQ((char *)b.data, "{\"k\":\"v\"}", "appended");
	buf_free(&b);
}

/* Every 1- and 2-byte input, every 3-byte one with a 3-byte lead, a 4-byte sample. */
TEST(json_string_matches_reference)
{
	static const uint8_t tails[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90,
					0x9f, 0xa0, 0xbf, 0xc0, 0xff};
	struct buf got = {0}, want = {0};
	uint8_t in[4];
	unsigned long checked = 0, wrong = 0;

	for (unsigned len = 1; len <= 4; len++) {
		unsigned long count = len == 1	 ? 256
				      : len == 2 ? 65536
				      : len == 3 ? 16ul * 65536
						 : 16ul * 256 * 121;

		for (unsigned long k = 0; k < count; k++) {
			if (len <= 2) {
				in[0] = k & 0xff;
				in[1] = k >> 8;
			} else if (len == 3) {
				in[0] = 0xe0 | (k >> 16);
				in[1] = k >> 8;
				in[2] = k;
			} else {
				in[0] = 0xf0 | (k / (256 * 121));
				in[1] = k / 121 % 256;
				in[2] = tails[k % 121 / 11];
				in[3] = tails[k % 11];
			}
			got.len = want.len = 0;
			json_add_string(&got, in, len);
			ref_json(&want, in, len);
			checked++;
			if ((got.len != want.len || memcmp(got.data, want.data, got.len)) &&
			    wrong++ < 5)
				test_fail_mem(__FILE__, __LINE__, "json_add_string vs reference",
					      got.data, got.len, want.data, want.len);
		}
	}
	ASSERT_EQ(wrong, 0, "inputs that differ from the reference");
	ASSERT_GT(checked, 1000000, "inputs checked");
	buf_free(&got);
	buf_free(&want);
}

TEST(hex_round_trip)
{
	uint8_t in[256], out[256];
	char hex[2 * 256 + 1];

	for (int i = 0; i < 256; i++)
		in[i] = i;
	hex_encode(in, sizeof(in), hex);
	ASSERT_EQ(strlen(hex), 512, "hex length");
	ASSERT_TRUE(!strncmp(hex, "000102", 6), "starts 000102");
	ASSERT_TRUE(!strcmp(hex + 506, "fdfeff"), "ends fdfeff (lower case)");
	if (ASSERT_OK(hex_decode(hex, out, sizeof(out)), "decode"))
		ASSERT_MEMEQ(out, in, sizeof(in), "round trip");
	hex_encode(in, 0, hex);
	ASSERT_STREQ(hex, "", "empty");
	ASSERT_OK(hex_decode("ABCDEF", out, 3), "upper case accepted");
	ASSERT_TRUE(out[0] == 0xab && out[1] == 0xcd && out[2] == 0xef, "upper case value");
	ASSERT_OK(hex_decode("", out, 0), "empty");
}

TEST(hex_decode_rejects)
{
	uint8_t out[4];
	const char high[] = {'0', (char)0xc3, 0};

	ASSERT_EQ(hex_decode("0g", out, 1), -EINVAL, "g");
	ASSERT_EQ(hex_decode("g0", out, 1), -EINVAL, "g first");
	ASSERT_EQ(hex_decode("0 ", out, 1), -EINVAL, "space");
	ASSERT_EQ(hex_decode("-1", out, 1), -EINVAL, "sign");
	ASSERT_EQ(hex_decode("0x", out, 1), -EINVAL, "0x");
	ASSERT_EQ(hex_decode(high, out, 1), -EINVAL, "byte >= 0x80");
	ASSERT_EQ(hex_decode("abc", out, 2), -EINVAL, "odd length, too short");
	ASSERT_EQ(hex_decode("ab", out, 2), -EINVAL, "too short");
	ASSERT_EQ(hex_decode("", out, 1), -EINVAL, "empty");
	ASSERT_EQ(hex_decode("abcd", out, 1), -EINVAL, "too long");
	ASSERT_EQ(hex_decode("abc", out, 1), -EINVAL, "one digit too many");
}

TEST(buf_grows_and_stays_terminated)
{
	struct buf b = {0};

	ASSERT_OK(buf_add(&b, NULL, 0), "empty add");
	ASSERT_TRUE(b.data && b.data[0] == 0, "terminated when empty");
	for (int i = 0; i < 1000; i++)
		if (!ASSERT_OK(buf_addf(&b, "%d,", i % 10), "buf_addf"))
			break;
	ASSERT_EQ(b.len, 2000, "len");
	ASSERT_GT(b.cap, b.len, "room for the NUL");
	ASSERT_EQ(b.data[b.len], 0, "terminated");
	ASSERT_TRUE(!strncmp((char *)b.data, "0,1,2,", 6), "content");
	ASSERT_OK(buf_add(&b, "xyz", 3), "buf_add");
	ASSERT_STREQ((char *)b.data + 2000, "xyz", "appended");
	buf_free(&b);
	ASSERT_TRUE(!b.data && !b.len && !b.cap, "freed");
}

/* common/crc32.c must give zlib's value at every length, offset and start. */
TEST(crc32_matches_zlib)
{
	static uint8_t b[3 * 65536 + 64];
	uint32_t seed = 12345;

	for (size_t i = 0; i < sizeof(b); i++) {
		seed = seed * 1103515245u + 12345u;
		b[i] = (uint8_t)(seed >> 16);
	}
	ASSERT_EQ(st_crc32(0, "123456789", 9), 0xcbf43926u, "check value of CRC-32");
	ASSERT_EQ(st_crc32(0, b, 0), 0u, "empty");
	/* every length around the 16- and 64-byte folding steps, every misalignment */
	for (size_t off = 0; off < 16; off++)
		for (size_t len = 0; len < 600; len++)
			if (st_crc32(0xffffffffu - len, b + off, len) !=
			    crc32(0xffffffffu - len, b + off, (uInt)len)) {
				test_fail(__FILE__, __LINE__, "offset %zu length %zu differs", off,
					  len);
				return;
			}
	/* long buffers, and a CRC continued across calls */
	ASSERT_EQ(st_crc32(7, b + 3, sizeof(b) - 3), crc32(7, b + 3, sizeof(b) - 3), "192 KiB");
	ASSERT_EQ(st_crc32(st_crc32(0, b, 1000), b + 1000, 70000), crc32(0, b, 71000), "continued");
}

/* status.json and config.json: old or new file, never a torn one, and the mode asked for. */
TEST(write_file_replace_swaps_the_whole_file)
{
	struct buf got = {0};
	struct stat sb;
	char tmp[512];

	ASSERT_OK(write_file_replace(test_dir(), "f.json", "{\"a\":1}\n", 8, 0600), "first");
	ASSERT_OK(write_file_replace(test_dir(), "f.json", "{}\n", 3, 0600), "replace");
	if (ASSERT_OK(buf_read_file(&got, test_path("f.json"), 0), "read"))
		ASSERT_BYTES_EQ(got.data, got.len, "{}\n", 3, "the new content only");
	if (ASSERT_OK(stat(test_path("f.json"), &sb) ? -errno : 0, "stat"))
		ASSERT_EQ(sb.st_mode & 07777, 0600, "mode");
	snprintf(tmp, sizeof(tmp), "%s/.f.json.tmp", test_dir());
	ASSERT_TRUE(access(tmp, F_OK) != 0, "no temporary file left");
	ASSERT_EQ(write_file_replace("/nonexistent-dir", "f.json", "x", 1, 0600), -ENOENT,
		  "a missing directory is an error");
	buf_free(&got);
}
