/*
 * test_util.c - unit tests for common/util.c: base64 both ways (round
 * trips of random bytes, RFC 4648 section 10 vectors, strict decoding,
 * b64_check() agreeing with b64_decode() on every short string),
 * JSON string escaping and its bounds, ISO 8601 timestamps, constant
 * time string comparison and the loopback address check.
 * Pure functions: no I/O, no allocation; runs under ASan and UBSan.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "util.h"

static uint32_t	rnd_next(uint32_t *);
static int	v4_loop(const char *);
static int	v6_loop(const char *);
static void	test_b64_roundtrip(void **);
static void	test_b64_rfc4648(void **);
static void	test_b64_enc_len(void **);
static void	test_b64_reject_length(void **);
static void	test_b64_reject_chars(void **);
static void	test_b64_reject_padding(void **);
static void	test_b64_small_output(void **);
static void	b64_agree(const char *, size_t);
static void	test_b64_check(void **);
static void	test_b64_every_byte(void **);
static void	test_dec_digits(void **);
static void	test_json_escape(void **);
static void	test_json_escape_short(void **);
static void	test_json_escape_exact_fit(void **);
static void	test_iso8601(void **);
static void	test_ct_streq(void **);
static void	test_strlcpy_n(void **);
static void	test_loopback(void **);

static const struct {
	const char	*plain;
	const char	*enc;
} rfc4648[] = {
	{ "", "" },
	{ "f", "Zg==" },
	{ "fo", "Zm8=" },
	{ "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" },
	{ "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
};

/* xorshift32: reproducible "random" bytes. */
static uint32_t
rnd_next(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void
test_b64_roundtrip(void **state)
{
	uint8_t		in[64], out[64 + 8];
	char		enc[128];
	uint32_t	seed = 0x9e3779b9;
	size_t		n, i, k;
	long		r;

	(void)state;
	for (k = 0; k < 8; k++) {
		for (n = 0; n <= 64; n++) {
			for (i = 0; i < n; i++)
				in[i] = (uint8_t)rnd_next(&seed);
			memset(enc, 'X', sizeof(enc));
			assert_int_equal(b64_encode(in, n, enc),
			    b64_enc_len(n));
			assert_int_equal(strlen(enc), b64_enc_len(n));
			memset(out, 0xA5, sizeof(out));
			r = b64_decode(enc, strlen(enc), out, n);
			assert_int_equal(r, (long)n);
			if (n > 0)
				assert_memory_equal(in, out, n);
			/* Nothing written past the decoded bytes. */
			assert_int_equal(out[n], 0xA5);
		}
	}
}

static void
test_b64_rfc4648(void **state)
{
	char	enc[32];
	uint8_t	dec[32];
	size_t	i, pl;
	long	r;

	(void)state;
	for (i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
		pl = strlen(rfc4648[i].plain);
		assert_int_equal(b64_encode((const uint8_t *)rfc4648[i].plain,
		    pl, enc), strlen(rfc4648[i].enc));
		assert_string_equal(enc, rfc4648[i].enc);
		r = b64_decode(rfc4648[i].enc, strlen(rfc4648[i].enc), dec,
		    sizeof(dec));
		assert_int_equal(r, (long)pl);
		if (pl > 0)
			assert_memory_equal(dec, rfc4648[i].plain, pl);
	}
}

static void
test_b64_enc_len(void **state)
{
	(void)state;
	assert_int_equal(b64_enc_len(0), 0);
	assert_int_equal(b64_enc_len(1), 4);
	assert_int_equal(b64_enc_len(3), 4);
	assert_int_equal(b64_enc_len(4), 8);
	assert_int_equal(b64_enc_len(160), 216);	/* one Twilio frame */
}

static void
test_b64_reject_length(void **state)
{
	static const char *const bad[] = { "Z", "Zg", "Zg=", "Zm9vY",
	    "Zm9vYg=", "Zm9vYmFy=" };
	uint8_t	out[32];
	size_t	i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(b64_decode(bad[i], strlen(bad[i]), out,
		    sizeof(out)), -1);
}

static void
test_b64_reject_chars(void **state)
{
	static const char *const bad[] = { "Zm9v!A==", "Zm 9", "Zm9v\n",
	    "Zm-_", "Zm9\x80", "Zm9.", "Zm9vYmF\t" };
	uint8_t	out[32];
	size_t	i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(b64_decode(bad[i], strlen(bad[i]), out,
		    sizeof(out)), -1);
	/* A NUL inside the counted length is a bad character too. */
	assert_int_equal(b64_decode("Zm\0v", 4, out, sizeof(out)), -1);
}

static void
test_b64_reject_padding(void **state)
{
	static const char *const bad[] = { "Zg=a", "=Zg=", "====", "Z===",
	    "Zg==Zg==", "Zm=vYmFy", "Zm9=Zm9v", "=Zm9", "Z=g=" };
	uint8_t	out[32];
	size_t	i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(b64_decode(bad[i], strlen(bad[i]), out,
		    sizeof(out)), -1);
}

static void
test_b64_small_output(void **state)
{
	uint8_t	out[8];

	(void)state;
	/* "foobar" needs 6 bytes, "fooba" 5, "f" 1. */
	assert_int_equal(b64_decode("Zm9vYmFy", 8, out, 5), -1);
	assert_int_equal(b64_decode("Zm9vYmFy", 8, out, 6), 6);
	assert_int_equal(b64_decode("Zm9vYmE=", 8, out, 4), -1);
	assert_int_equal(b64_decode("Zm9vYmE=", 8, out, 5), 5);
	assert_int_equal(b64_decode("Zg==", 4, out, 0), -1);
	assert_int_equal(b64_decode("Zg==", 4, out, 1), 1);
	assert_int_equal(out[0], 'f');
	assert_int_equal(b64_decode("", 0, out, 0), 0);
}

/* b64_check() says what b64_decode() with room enough says. */
static void
b64_agree(const char *s, size_t n)
{
	uint8_t	out[64];
	long	r;

	assert_true(n / 4 * 3 <= sizeof(out));
	r = b64_decode(s, n, out, sizeof(out));
	if (b64_check(s, n) != r)
		fail_msg("b64_check disagrees on \"%.*s\" (%zu bytes)",
		    (int)n, s, n);
}

static void
test_b64_check(void **state)
{
	/* Valid and invalid letters, pad, NUL: every string up to 8. */
	static const char	 alpha[] = { 'A', '/', '+', 'z', '=', '-', '\0' };
	static const char *const bad[] = { "Zg=a", "=Zg=", "====", "Z===",
	    "Zg==Zg==", "Zm=vYmFy", "Zm9=Zm9v", "=Zm9", "Z=g=", "Zm9v!A==",
	    "Zm 9", "Zm9v\n", "Zm-_", "Zm9\x80", "Z", "Zg", "Zg=",
	    "Zm9vYmFy=" };
	char		 s[48];
	uint32_t	 seed = 0x4a55;
	size_t		 len, i, j, k, combos;

	(void)state;
	for (i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
		assert_int_equal(b64_check(rfc4648[i].enc,
		    strlen(rfc4648[i].enc)), strlen(rfc4648[i].plain));
		b64_agree(rfc4648[i].enc, strlen(rfc4648[i].enc));
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(b64_check(bad[i], strlen(bad[i])), -1);
		b64_agree(bad[i], strlen(bad[i]));
	}
	assert_int_equal(b64_check("Zm\0v", 4), -1);
	for (len = 0; len <= 8; len++) {
		for (combos = 1, i = 0; i < len; i++)
			combos *= sizeof(alpha);
		for (k = 0; k < combos; k++) {
			for (i = 0, j = k; i < len; i++, j /= sizeof(alpha))
				s[i] = alpha[j % sizeof(alpha)];
			b64_agree(s, len);
		}
	}
	/* Longer strings: valid text with one byte changed. */
	for (k = 0; k < 20000; k++) {
		len = 4 * (1 + rnd_next(&seed) % 10);
		for (i = 0; i < len; i++)
			s[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"
			    "ghijklmnopqrstuvwxyz0123456789+/"
			    [rnd_next(&seed) % 64];
		if (k % 3 == 0)
			s[len - 1] = '=';
		if (k % 6 == 0)
			s[len - 2] = '=';
		if (k % 2 == 0)
			s[rnd_next(&seed) % len] =
			    alpha[rnd_next(&seed) % sizeof(alpha)];
		b64_agree(s, len);
	}
}

/* The decoding table against the alphabet, byte by byte. */
static void
test_b64_every_byte(void **state)
{
	static const char	 alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789+/";
	const char		*at;
	char			 s[4] = { 'Q', 'Q', 'Q', 'Q' };
	uint8_t			 out[3];
	int			 c;

	(void)state;
	for (c = 0; c < 256; c++) {
		s[1] = (char)c;
		at = c != 0 ? strchr(alpha, c) : NULL;
		if (at == NULL) {
			assert_int_equal(b64_check(s, 4), -1);
			assert_int_equal(b64_decode(s, 4, out, sizeof(out)), -1);
			continue;
		}
		assert_int_equal(b64_check(s, 4), 3);
		assert_int_equal(b64_decode(s, 4, out, sizeof(out)), 3);
		/* 'Q' is 16: the second byte's value lands in out[0..1]. */
		assert_int_equal(out[0], 16 << 2 | (at - alpha) >> 4);
		assert_int_equal(out[1], ((at - alpha) & 15) << 4 | 16 >> 2);
	}
}

static void
test_dec_digits(void **state)
{
	long	v = -7;

	(void)state;
	assert_int_equal(dec_digits("0", 1, 18, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(dec_digits("781", 3, 18, &v), 0);
	assert_int_equal(v, 781);
	assert_int_equal(dec_digits("000123", 6, 18, &v), 0);
	assert_int_equal(v, 123);
	assert_int_equal(dec_digits("999999999999999999", 18, 18, &v), 0);
	assert_true(v == 999999999999999999L);
	v = -7;
	/* Too many, none, or anything but a digit: -1, v untouched. */
	assert_int_equal(dec_digits("1234567890123456789", 19, 18, &v), -1);
	assert_int_equal(dec_digits("12345678", 8, 7, &v), -1);
	assert_int_equal(dec_digits("1", 1, 19, &v), -1);
	assert_int_equal(dec_digits("", 0, 18, &v), -1);
	assert_int_equal(dec_digits("+1", 2, 18, &v), -1);
	assert_int_equal(dec_digits("-1", 2, 18, &v), -1);
	assert_int_equal(dec_digits(" 1", 2, 18, &v), -1);
	assert_int_equal(dec_digits("1a", 2, 18, &v), -1);
	assert_int_equal(dec_digits("1\0", 2, 18, &v), -1);
	assert_int_equal(dec_digits("1.5", 3, 18, &v), -1);
	assert_int_equal(v, -7);
	/* Only the counted bytes are read. */
	assert_int_equal(dec_digits("12x", 2, 18, &v), 0);
	assert_int_equal(v, 12);
}

static void
test_json_escape(void **state)
{
	char	out[128];

	(void)state;
	assert_int_equal(json_escape("plain text", out, sizeof(out)), 0);
	assert_string_equal(out, "plain text");
	assert_int_equal(json_escape("", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(json_escape("say \"hi\"", out, sizeof(out)), 0);
	assert_string_equal(out, "say \\\"hi\\\"");
	assert_int_equal(json_escape("a\\b", out, sizeof(out)), 0);
	assert_string_equal(out, "a\\\\b");
	assert_int_equal(json_escape("x\001y", out, sizeof(out)), 0);
	assert_string_equal(out, "x\\u0001y");
	assert_int_equal(json_escape("\037\177", out, sizeof(out)), 0);
	assert_string_equal(out, "\\u001f\\u007f");
	assert_int_equal(json_escape("l1\nl2\tx\r", out, sizeof(out)), 0);
	assert_string_equal(out, "l1\\nl2\\tx\\u000d");
	/* UTF-8 passes through untouched. */
	assert_int_equal(json_escape("caf\xc3\xa9", out, sizeof(out)), 0);
	assert_string_equal(out, "caf\xc3\xa9");
}

static void
test_json_escape_short(void **state)
{
	char	out[64];

	(void)state;
	assert_int_equal(json_escape("x", out, 0), -1);
	assert_int_equal(json_escape("", out, 0), -1);
	assert_int_equal(json_escape("hello", out, 5), -1);
	/* "\u0001" needs 6 bytes plus the NUL. */
	assert_int_equal(json_escape("\001", out, 3), -1);
	assert_int_equal(json_escape("\"\"\"\"", out, 8), -1);
	/* Roomy enough, to show the failures above are about size. */
	assert_int_equal(json_escape("\001", out, sizeof(out)), 0);
	assert_int_equal(json_escape("hello", out, sizeof(out)), 0);
}

/*
 * "returns -1 if short": a buffer exactly large enough for the escaped
 * text and its NUL is not short.
 */
static void
test_json_escape_exact_fit(void **state)
{
	char	out[16];

	(void)state;
	assert_int_equal(json_escape("", out, 1), 0);
	assert_string_equal(out, "");
	assert_int_equal(json_escape("abc", out, 4), 0);
	assert_string_equal(out, "abc");
	assert_int_equal(json_escape("a\"", out, 4), 0);
	assert_string_equal(out, "a\\\"");
	assert_int_equal(json_escape("\001", out, 7), 0);
	assert_string_equal(out, "\\u0001");
}

static void
test_iso8601(void **state)
{
	char	buf[32];

	(void)state;
	iso8601_ms(0, buf);
	assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
	iso8601_ms(1764000000123ULL, buf);
	assert_string_equal(buf, "2025-11-24T16:00:00.123Z");
	iso8601_ms(1764000000007ULL, buf);
	assert_string_equal(buf, "2025-11-24T16:00:00.007Z");
	iso8601_ms(951825599999ULL, buf);	/* leap day, last ms */
	assert_string_equal(buf, "2000-02-29T11:59:59.999Z");
}

static void
test_ct_streq(void **state)
{
	(void)state;
	assert_true(ct_streq("", ""));
	assert_true(ct_streq("secret", "secret"));
	assert_false(ct_streq("secret", "secreT"));
	assert_false(ct_streq("secret", "secrets"));
	assert_false(ct_streq("secrets", "secret"));
	assert_false(ct_streq("", "x"));
	assert_false(ct_streq("x", ""));
	assert_false(ct_streq("abc", "xbc"));
}

static void
test_strlcpy_n(void **state)
{
	char	buf[4];

	(void)state;
	assert_int_equal(strlcpy_n(buf, "ab", sizeof(buf)), 2);
	assert_string_equal(buf, "ab");
	assert_int_equal(strlcpy_n(buf, "abcdef", sizeof(buf)), 6);
	assert_string_equal(buf, "abc");
	buf[0] = 'z';
	assert_int_equal(strlcpy_n(buf, "abc", 0), 3);
	assert_int_equal(buf[0], 'z');
}

static int
v4_loop(const char *a)
{
	struct sockaddr_in	sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, a, &sin.sin_addr), 1);
	return is_loopback_addr(&sin);
}

static int
v6_loop(const char *a)
{
	struct sockaddr_in6	sin6;

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, a, &sin6.sin6_addr), 1);
	return is_loopback_addr(&sin6);
}

static void
test_loopback(void **state)
{
	struct sockaddr_storage	ss;

	(void)state;
	assert_true(v4_loop("127.0.0.1"));
	assert_true(v4_loop("127.9.9.9"));
	assert_true(v4_loop("127.255.255.254"));
	assert_false(v4_loop("10.0.0.1"));
	assert_false(v4_loop("128.0.0.1"));
	assert_false(v4_loop("1.0.0.127"));
	assert_false(v4_loop("0.0.0.0"));
	assert_true(v6_loop("::1"));
	assert_true(v6_loop("::ffff:127.0.0.1"));
	assert_true(v6_loop("::ffff:127.1.2.3"));
	assert_false(v6_loop("::ffff:10.0.0.1"));
	assert_false(v6_loop("::"));
	assert_false(v6_loop("::2"));
	assert_false(v6_loop("fe80::1"));
	assert_false(v6_loop("2001:db8::7f00:1"));
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	assert_false(is_loopback_addr(&ss));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64_roundtrip),
		cmocka_unit_test(test_b64_rfc4648),
		cmocka_unit_test(test_b64_enc_len),
		cmocka_unit_test(test_b64_reject_length),
		cmocka_unit_test(test_b64_reject_chars),
		cmocka_unit_test(test_b64_reject_padding),
		cmocka_unit_test(test_b64_small_output),
		cmocka_unit_test(test_b64_every_byte),
		cmocka_unit_test(test_dec_digits),
		cmocka_unit_test(test_b64_check),
		cmocka_unit_test(test_json_escape),
		cmocka_unit_test(test_json_escape_short),
		cmocka_unit_test(test_json_escape_exact_fit),
		cmocka_unit_test(test_iso8601),
		cmocka_unit_test(test_ct_streq),
		cmocka_unit_test(test_strlcpy_n),
		cmocka_unit_test(test_loopback),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
