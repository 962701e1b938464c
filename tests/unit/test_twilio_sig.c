/*
 * test_twilio_sig.c - common/twilio.c: X-Twilio-Signature compute and
 * checks, form body parsing.  The fixed vectors are docs/protocols.md
 * 1.10; test_node_vectors replays a file written by the real twilio
 * npm package (tests/peers/gen-sig-vectors.mjs), named by $TWILIO_VECTORS.
 * Its lines are TAB-separated, by kind:
 *	C token url params sig		twilio_sig_compute() == sig
 *	V token url params sig 0|1	twilio_sig_check() == verdict
 *	B token url body sig 0|1	twilio_sig_check_body() == verdict
 *	S token url sig 0|1		twilio_sig_check_stream() == verdict
 * params is x-www-form-urlencoded; '#' starts a comment line.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "twilio.h"

#define MAXP		256
#define NFIELD		6

#define V_TOKEN		"f3a1c0de5eed0ddba11c0ffee0dd5ea1"
#define V1_URL		"https://bridge.example.org/status-callback"
#define V1_URL443	"https://bridge.example.org:443/status-callback"
#define V1_SIG		"X3c2mhBs0ELlZyvYudyvDMSGELE="
#define V1_SIG443	"DPRp0E1wlxiSLzx6CtTXesfci44="
#define V2_URL		"wss://bridge.example.org/outbound-media-stream"
#define V2_HTTPS	"https://bridge.example.org/outbound-media-stream"
#define V2_SIG		"wSyspFgci7zouuPCv9sDcrZGLwE="
#define V2_SIGHTTPS	"GvX8ZP3f1kFk00R9T8p/LIFd7f8="
#define V3_BODY		"{\"CallSid\":\"CAfedcba9876543210fedcba9876543210\"," \
			"\"CallStatus\":\"completed\"}"
#define V3_HASH		"5113ff76f6d5b2ee1e56c0a5a05302df" \
			"982329e12fb1ad8bacac985780adb4ce"
#define V3_URL		"https://bridge.example.org/json-hook?bodySHA256=" \
			V3_HASH
#define V3_SIG		"J8fuiCfXNFEHkz6YV1C/CahANqI="
#define V4_URL		"https://bridge.example.org/x"
#define V4_SIG		"hAcngPqWGXwauEp3p8pGkjwFE0g="

struct counts {
	int	 n[4];		/* C, V, B, S lines */
	int	 fail;
};

static const struct tw_param v1_params[] = {
	{ "AccountSid", "AC0123456789abcdef0123456789abcdef" },
	{ "CallSid", "CAfedcba9876543210fedcba9876543210" },
	{ "CallStatus", "completed" },
	{ "CallDuration", "42" },
	{ "CallbackSource", "call-progress-events" },
	{ "SequenceNumber", "3" },
	{ "Timestamp", "Tue, 03 Mar 2026 10:15:00 +0000" },
	{ "To", "+15558675309" },
	{ "From", "+15551234567" },
};
#define V1_N	(sizeof(v1_params) / sizeof(v1_params[0]))

static const struct tw_param v4_params[] = {
	{ "To", "+15558675309" },
	{ "StatusCallbackEvent", "ringing" },
	{ "StatusCallbackEvent", "answered" },
	{ "StatusCallbackEvent", "ringing" },
};
#define V4_N	(sizeof(v4_params) / sizeof(v4_params[0]))

static void	assert_sig(const char *, const char *, const struct tw_param *,
		    size_t, const char *);
static char	*sig_of(const char *, const char *, const struct tw_param *,
		    size_t, char [TWILIO_SIG_LEN]);
static int	parse_params(char *, struct tw_param *);
static void	run_line(char *, struct counts *);
static void	run_cv(char **, int, struct counts *);

static void
assert_sig(const char *token, const char *url, const struct tw_param *p,
    size_t n, const char *want)
{
	char	 sig[TWILIO_SIG_LEN];

	assert_int_equal(twilio_sig_compute(token, url, p, n, sig), 0);
	assert_string_equal(sig, want);
}

static char *
sig_of(const char *token, const char *url, const struct tw_param *p,
    size_t n, char sig[TWILIO_SIG_LEN])
{
	assert_int_equal(twilio_sig_compute(token, url, p, n, sig), 0);
	return sig;
}

static void
test_doc_example(void **state)
{
	static const struct tw_param p[] = {
		{ "CallSid", "CA1234567890ABCDE" },
		{ "Caller", "+12349013030" },
		{ "Digits", "1234" },
		{ "From", "+12349013030" },
		{ "To", "+18005551212" },
	};
	const char	*url = "https://mycompany.com/myapp.php?foo=1&bar=2";

	(void)state;
	assert_sig("12345", url, p, 5, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
	assert_int_equal(twilio_sig_check("12345", url, p, 5,
	    "0/KCTR6DLpKmkAf8muzZqo1nDgQ="), 1);
}

static void
test_v1_status_callback(void **state)
{
	(void)state;
	assert_sig(V_TOKEN, V1_URL, v1_params, V1_N, V1_SIG);
	assert_sig(V_TOKEN, V1_URL443, v1_params, V1_N, V1_SIG443);
	/* the printed string, as a bare HMAC */
	assert_sig(V_TOKEN, "https://bridge.example.org/status-callback"
	    "AccountSidAC0123456789abcdef0123456789abcdefCallDuration42"
	    "CallSidCAfedcba9876543210fedcba9876543210CallStatuscompleted"
	    "CallbackSourcecall-progress-eventsFrom+15551234567"
	    "SequenceNumber3TimestampTue, 03 Mar 2026 10:15:00 +0000"
	    "To+15558675309", NULL, 0, V1_SIG);
	/* port quirk, both ways */
	assert_int_equal(twilio_sig_check(V_TOKEN, V1_URL, v1_params, V1_N,
	    V1_SIG), 1);
	assert_int_equal(twilio_sig_check(V_TOKEN, V1_URL, v1_params, V1_N,
	    V1_SIG443), 1);
	assert_int_equal(twilio_sig_check(V_TOKEN, V1_URL443, v1_params,
	    V1_N, V1_SIG), 1);
	assert_int_equal(twilio_sig_check(V_TOKEN, V1_URL443, v1_params,
	    V1_N, V1_SIG443), 1);
	/* a param missing, a value changed */
	assert_int_equal(twilio_sig_check(V_TOKEN, V1_URL, v1_params,
	    V1_N - 1, V1_SIG), 0);
	assert_int_equal(twilio_sig_check(V_TOKEN, V1_URL, v4_params, V4_N,
	    V1_SIG), 0);
}

static void
test_v2_stream(void **state)
{
	char	 sig[TWILIO_SIG_LEN];

	(void)state;
	assert_sig(V_TOKEN, V2_URL, NULL, 0, V2_SIG);
	assert_sig(V_TOKEN, V2_HTTPS, NULL, 0, V2_SIGHTTPS);
	assert_int_equal(twilio_sig_check_stream(V_TOKEN, V2_URL, V2_SIG), 1);
	assert_int_equal(twilio_sig_check_stream(V_TOKEN, V2_URL,
	    V2_SIGHTTPS), 1);
	assert_int_equal(twilio_sig_check_stream(V_TOKEN, V2_URL,
	    sig_of(V_TOKEN, "wss://bridge.example.org:443/outbound-media-"
	    "stream", NULL, 0, sig)), 1);
	assert_int_equal(twilio_sig_check_stream(V_TOKEN, V2_URL,
	    sig_of(V_TOKEN, "https://bridge.example.org:443/outbound-media-"
	    "stream", NULL, 0, sig)), 1);
	/* configured with :443, signed without */
	assert_int_equal(twilio_sig_check_stream(V_TOKEN,
	    "wss://bridge.example.org:443/outbound-media-stream", V2_SIG), 1);
	/* not accepted: http, :80, another path, another token */
	assert_int_equal(twilio_sig_check_stream(V_TOKEN, V2_URL,
	    sig_of(V_TOKEN, "http://bridge.example.org/outbound-media-"
	    "stream", NULL, 0, sig)), 0);
	assert_int_equal(twilio_sig_check_stream(V_TOKEN, V2_URL,
	    sig_of(V_TOKEN, "wss://bridge.example.org:80/outbound-media-"
	    "stream", NULL, 0, sig)), 0);
	assert_int_equal(twilio_sig_check_stream(V_TOKEN,
	    "wss://bridge.example.org/other", V2_SIG), 0);
	assert_int_equal(twilio_sig_check_stream("f3a1c0de5eed0ddba11c0ffee0d"
	    "d5ea2", V2_URL, V2_SIG), 0);
}

static void
test_v3_body(void **state)
{
	const char	*body = V3_BODY;
	char		 tampered[] = V3_BODY;
	char		 sig[TWILIO_SIG_LEN];

	(void)state;
	assert_sig(V_TOKEN, V3_URL, NULL, 0, V3_SIG);
	assert_int_equal(twilio_sig_check_body(V_TOKEN, V3_URL, body,
	    strlen(body), V3_SIG), 1);
	tampered[strlen(tampered) - 3] = 'D';
	assert_int_equal(twilio_sig_check_body(V_TOKEN, V3_URL, tampered,
	    strlen(tampered), V3_SIG), 0);
	assert_int_equal(twilio_sig_check_body(V_TOKEN, V3_URL, body,
	    strlen(body) - 1, V3_SIG), 0);
	/* the hash is checked, but the signature must still match */
	assert_int_equal(twilio_sig_check_body(V_TOKEN, V3_URL, body,
	    strlen(body), V1_SIG), 0);
	/* no bodySHA256 in the URL: refused even if the URL is signed */
	assert_int_equal(twilio_sig_check_body(V_TOKEN, V4_URL, body,
	    strlen(body), sig_of(V_TOKEN, V4_URL, NULL, 0, sig)), 0);
	/* upper-case hex is not what Twilio sends */
	assert_int_equal(twilio_sig_check_body(V_TOKEN,
	    "https://bridge.example.org/json-hook?bodySHA256="
	    "5113FF76F6D5B2EE1E56C0A5A05302DF982329E12FB1AD8BACAC985780ADB4CE",
	    body, strlen(body), sig_of(V_TOKEN, "https://bridge.example.org/"
	    "json-hook?bodySHA256=5113FF76F6D5B2EE1E56C0A5A05302DF982329E12FB"
	    "1AD8BACAC985780ADB4CE", NULL, 0, sig)), 0);
	/* the :443 form is accepted here too */
	assert_int_equal(twilio_sig_check_body(V_TOKEN, V3_URL, body,
	    strlen(body), sig_of(V_TOKEN, "https://bridge.example.org:443/"
	    "json-hook?bodySHA256=" V3_HASH, NULL, 0, sig)), 1);
	assert_int_equal(twilio_sig_check_body(V_TOKEN, V3_URL, NULL, 5,
	    V3_SIG), 0);
}

static void
test_v4_repeated(void **state)
{
	static const struct tw_param shuffled[] = {
		{ "StatusCallbackEvent", "ringing" },
		{ "StatusCallbackEvent", "ringing" },
		{ "To", "+15558675309" },
		{ "StatusCallbackEvent", "answered" },
	};

	(void)state;
	assert_sig(V_TOKEN, V4_URL, v4_params, V4_N, V4_SIG);
	assert_sig(V_TOKEN, V4_URL, shuffled, 4, V4_SIG);
	assert_sig(V_TOKEN, V4_URL "StatusCallbackEventanswered"
	    "StatusCallbackEventringingTo+15558675309", NULL, 0, V4_SIG);
	assert_int_equal(twilio_sig_check(V_TOKEN, V4_URL, v4_params, V4_N,
	    V4_SIG), 1);
	assert_int_equal(twilio_sig_check(V_TOKEN, V4_URL, v4_params, 2,
	    V4_SIG), 0);
}

static void
test_rejects(void **state)
{
	char	 bad[] = V1_SIG;

	(void)state;
	bad[3] ^= 1;
	assert_int_equal(twilio_sig_check(V_TOKEN, V1_URL, v1_params, V1_N,
	    bad), 0);
	assert_int_equal(twilio_sig_check("f3a1c0de5eed0ddba11c0ffee0dd5ea2",
	    V1_URL, v1_params, V1_N, V1_SIG), 0);
	assert_int_equal(twilio_sig_check(V_TOKEN, V1_URL, v1_params, V1_N,
	    ""), 0);
	assert_int_equal(twilio_sig_check(V_TOKEN, V1_URL, v1_params, V1_N,
	    "X3c2mhBs0ELlZyvYudyvDMSGELE"), 0);
	assert_int_equal(twilio_sig_check(V_TOKEN, V1_URL, v1_params, V1_N,
	    V1_SIG "="), 0);
	assert_int_equal(twilio_sig_check(V_TOKEN, V1_URL, v1_params, V1_N,
	    NULL), 0);
	assert_int_equal(twilio_sig_check(NULL, V1_URL, v1_params, V1_N,
	    V1_SIG), 0);
	assert_int_equal(twilio_sig_check("", V1_URL, NULL, 0,
	    "Y64SJbf+zy5NCcjXXWTNglrpF6Q="), 0);
	assert_int_equal(twilio_sig_check(V_TOKEN, NULL, v1_params, V1_N,
	    V1_SIG), 0);
	assert_int_equal(twilio_sig_check(V_TOKEN, V1_URL, NULL, V1_N,
	    V1_SIG), 0);
	assert_int_equal(twilio_sig_check_body(V_TOKEN, V3_URL, "", 0,
	    NULL), 0);
	assert_int_equal(twilio_sig_check_body(NULL, V3_URL, "", 0,
	    V3_SIG), 0);
	assert_int_equal(twilio_sig_check_stream(V_TOKEN, NULL, V2_SIG), 0);
	assert_int_equal(twilio_sig_check_stream(NULL, V2_URL, V2_SIG), 0);
	assert_int_equal(twilio_sig_check_stream(V_TOKEN, V2_URL, ""), 0);
}

static void
test_null_params(void **state)
{
	struct tw_param	 p[2] = { { "a", "1" }, { "b", NULL } };
	char		 sig[TWILIO_SIG_LEN];

	(void)state;
	assert_int_equal(twilio_sig_compute(V_TOKEN, V4_URL, p, 2, sig), -1);
	assert_string_equal(sig, "");
	p[1].tp_name = NULL;
	p[1].tp_value = "2";
	assert_int_equal(twilio_sig_compute(V_TOKEN, V4_URL, p, 2, sig), -1);
	assert_int_equal(twilio_sig_compute(NULL, V4_URL, p, 1, sig), -1);
	assert_int_equal(twilio_sig_compute(V_TOKEN, NULL, p, 1, sig), -1);
	assert_int_equal(twilio_sig_compute(V_TOKEN, V4_URL, NULL, 1, sig),
	    -1);
	assert_int_equal(twilio_sig_check(V_TOKEN, V4_URL, p, 2,
	    sig_of(V_TOKEN, V4_URL, p, 1, sig)), 0);
	/* what twilio-node gives for an empty token */
	assert_sig("", "https://a/", NULL, 0, "Y64SJbf+zy5NCcjXXWTNglrpF6Q=");
}

static void
test_bounds(void **state)
{
	static struct tw_param	 p[MAXP + 1];
	char			 url[4200], sig[TWILIO_SIG_LEN];
	size_t			 i;

	(void)state;
	for (i = 0; i <= MAXP; i++) {
		p[i].tp_name = "n";
		p[i].tp_value = "v";
	}
	assert_int_equal(twilio_sig_compute(V_TOKEN, V4_URL, p, MAXP, sig), 0);
	assert_int_equal(twilio_sig_check(V_TOKEN, V4_URL, p, MAXP, sig), 1);
	assert_int_equal(twilio_sig_compute(V_TOKEN, V4_URL, p, MAXP + 1,
	    sig), -1);
	assert_int_equal(twilio_sig_check(V_TOKEN, V4_URL, p, MAXP + 1,
	    sig_of(V_TOKEN, V4_URL, p, 1, sig)), 0);

	memset(url, 'a', sizeof(url));
	memcpy(url, "https://h/", 10);
	url[4096] = '\0';
	assert_int_equal(twilio_sig_check(V_TOKEN, url, NULL, 0,
	    sig_of(V_TOKEN, url, NULL, 0, sig)), 1);
	url[4096] = 'a';
	url[4097] = '\0';
	assert_int_equal(twilio_sig_check(V_TOKEN, url, NULL, 0,
	    sig_of(V_TOKEN, url, NULL, 0, sig)), 0);
	assert_int_equal(twilio_sig_check_stream(V_TOKEN, url,
	    sig_of(V_TOKEN, url, NULL, 0, sig)), 0);
}

/*
 * validateRequest() normalises the URL (WHATWG) and also tries the query
 * re-encoded by Node's querystring; these are the forms it accepts.
 */
static void
test_url_forms(void **state)
{
	static const char *const cases[][2] = {
		{ "HTTPS://Bridge.EXAMPLE.org:0443/a b/./c/../d?x=1 2",
		  "https://bridge.example.org/a%20b/d?x=1%202" },
		{ "HTTPS://Bridge.EXAMPLE.org:0443/a b/./c/../d?x=1 2",
		  "https://bridge.example.org:443/a%20b/d?x=1%202" },
		{ "https://h/p?a=1 2&b='x'&b=%zz&2=y&1=z#f",
		  "https://h/p#f?1=z&2=y&a=1%202&b='x'&b=%25zz" },
		{ "https://h/p?a=%E9&c=%ED%A0%80",
		  "https://h/p?a=%EF%BF%BD&c=%EF%BF%BD%EF%BF%BD%EF%BF%BD" },
		{ "https://h:8443/p?q=a+b",
		  "https://h:8443/p?q=a%20b" },
		{ "https://h/p?", "https://h:443/p" },
		{ "http://h/p", "http://h:80/p" },
		{ " https:\\\\u s:p@w@0x7f.1\\a\\%2e%2E\\b\t ",
		  "https://u%20s:p%40w@127.0.0.1/b" },
		{ "https://h/é`{}\"^|?'\"`", "https://h/%C3%A9%60%7B%7D%22^|"
		  "?%27%22`" },
	};
	char	 sig[TWILIO_SIG_LEN];
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sig_of(V_TOKEN, cases[i][1], v4_params, V4_N, sig);
		if (twilio_sig_check(V_TOKEN, cases[i][0], v4_params, V4_N,
		    sig) != 1)
			fail_msg("%s not accepted for %s", cases[i][1],
			    cases[i][0]);
	}
	/* ports other than the default are not added */
	assert_int_equal(twilio_sig_check(V_TOKEN, "https://h/p", NULL, 0,
	    sig_of(V_TOKEN, "https://h:80/p", NULL, 0, sig)), 0);
	/* refused URLs: unknown scheme, bad port, IPv6, bad IPv4 */
	assert_int_equal(twilio_sig_check(V_TOKEN, "ftp://h/", NULL, 0,
	    sig_of(V_TOKEN, "ftp://h:443/", NULL, 0, sig)), 0);
	assert_int_equal(twilio_sig_check(V_TOKEN, "https://h:99999/", NULL,
	    0, sig_of(V_TOKEN, "https://h/", NULL, 0, sig)), 0);
	assert_int_equal(twilio_sig_check(V_TOKEN, "https://[::1]/", NULL,
	    0, sig_of(V_TOKEN, "https://[::1]:443/", NULL, 0, sig)), 0);
	assert_int_equal(twilio_sig_check(V_TOKEN, "https://1.2.3.256/",
	    NULL, 0, sig_of(V_TOKEN, "https://1.2.3.256:443/", NULL, 0,
	    sig)), 0);
}

/* JavaScript sorts by UTF-16 code unit: U+1F600 before U+FF01. */
static void
test_sort_order(void **state)
{
	static const struct tw_param p[] = {
		{ "\xef\xbc\x81", "1" },		/* U+FF01 */
		{ "\xf0\x9f\x98\x80", "2" },		/* U+1F600 */
		{ "a", "z" }, { "a", "Z" }, { "B", "" },
	};

	(void)state;
	assert_sig(V_TOKEN, V4_URL, p, 5, sig_of(V_TOKEN, V4_URL "Ba" "Z"
	    "a" "z" "\xf0\x9f\x98\x80" "2" "\xef\xbc\x81" "1", NULL, 0,
	    (char[TWILIO_SIG_LEN]){ 0 }));
}

static void
test_form_basic(void **state)
{
	struct tw_param	 p[8];
	char		 b1[] = "a=1+2&b=%2B%20x&c=&d&&=e&f=%C3%A9&";
	char		 b2[] = "";

	(void)state;
	assert_int_equal(twilio_form_parse(b1, strlen(b1), p, 8), 6);
	assert_string_equal(p[0].tp_name, "a");
	assert_string_equal(p[0].tp_value, "1 2");
	assert_string_equal(p[1].tp_name, "b");
	assert_string_equal(p[1].tp_value, "+ x");
	assert_string_equal(p[2].tp_name, "c");
	assert_string_equal(p[2].tp_value, "");
	assert_string_equal(p[3].tp_name, "d");
	assert_string_equal(p[3].tp_value, "");
	assert_string_equal(p[4].tp_name, "");
	assert_string_equal(p[4].tp_value, "e");
	assert_string_equal(p[5].tp_name, "f");
	assert_string_equal(p[5].tp_value, "\xc3\xa9");
	assert_int_equal(twilio_form_parse(b2, 0, p, 8), 0);
	assert_int_equal(twilio_form_parse(NULL, 0, NULL, 0), 0);
}

static void
test_form_v1(void **state)
{
	char		 body[] =
	    "AccountSid=AC0123456789abcdef0123456789abcdef"
	    "&CallSid=CAfedcba9876543210fedcba9876543210&CallStatus=completed"
	    "&CallDuration=42&CallbackSource=call-progress-events"
	    "&SequenceNumber=3&Timestamp=Tue%2C+03+Mar+2026+10%3A15%3A00+%2B"
	    "0000&To=%2B15558675309&From=%2B15551234567";
	struct tw_param	 p[16];
	int		 n;

	(void)state;
	n = twilio_form_parse(body, strlen(body), p, 16);
	assert_int_equal(n, 9);
	assert_string_equal(p[6].tp_value, "Tue, 03 Mar 2026 10:15:00 +0000");
	assert_int_equal(twilio_sig_check(V_TOKEN, V1_URL, p, (size_t)n,
	    V1_SIG), 1);
}

static void
test_form_bad(void **state)
{
	static const char *const bad[] = {
		"a=%zz", "a=%", "a=%4", "a%g1=1", "a=%00", "%00=1", "b=1&a=%0",
	};
	struct tw_param	 p[4];
	char		 buf[32];
	size_t		 i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		strcpy(buf, bad[i]);
		if (twilio_form_parse(buf, strlen(buf), p, 4) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
	}
	memcpy(buf, "a=1\0b=2", 8);
	assert_int_equal(twilio_form_parse(buf, 7, p, 4), -1);
	strcpy(buf, "a=1&b=2&c=3");
	assert_int_equal(twilio_form_parse(buf, strlen(buf), p, 2), -1);
	strcpy(buf, "a=1");
	assert_int_equal(twilio_form_parse(buf, strlen(buf), NULL, 0), -1);
}

static void
test_form_many(void **state)
{
	static struct tw_param	 p[MAXP + 8];
	static char		 buf[4 * (MAXP + 1) + 1];
	size_t			 i;

	(void)state;
	for (i = 0; i < MAXP + 1; i++)
		memcpy(buf + 4 * i, "a=1&", 4);
	buf[4 * MAXP - 1] = '\0';
	assert_int_equal(twilio_form_parse(buf, strlen(buf), p, MAXP + 8),
	    MAXP);
	for (i = 0; i < MAXP + 1; i++)
		memcpy(buf + 4 * i, "a=1&", 4);
	buf[4 * (MAXP + 1) - 1] = '\0';
	assert_int_equal(twilio_form_parse(buf, strlen(buf), p, MAXP + 8),
	    -1);
}

/* params field to tw_param, in place */
static int
parse_params(char *s, struct tw_param *p)
{
	return twilio_form_parse(s, strlen(s), p, MAXP);
}

static void
run_cv(char **f, int nf, struct counts *ct)
{
	struct tw_param	 p[MAXP];
	char		 sig[TWILIO_SIG_LEN];
	int		 n, got;

	if (nf < (f[0][0] == 'C' ? 5 : 6) || (n = parse_params(f[3], p)) < 0) {
		print_error("bad %s line: %s %s\n", f[0], f[1], f[2]);
		ct->fail++;
		return;
	}
	if (f[0][0] == 'C') {
		ct->n[0]++;
		if (twilio_sig_compute(f[1], f[2], p, (size_t)n, sig) != 0 ||
		    strcmp(sig, f[4]) != 0) {
			print_error("C: token %s url %s: got %s want %s\n",
			    f[1], f[2], sig, f[4]);
			ct->fail++;
		}
		return;
	}
	ct->n[1]++;
	got = twilio_sig_check(f[1], f[2], p, (size_t)n, f[4]);
	if (got != atoi(f[5])) {
		print_error("V: token %s url %s sig %s: got %d want %s\n",
		    f[1], f[2], f[4], got, f[5]);
		ct->fail++;
	}
}

static void
run_line(char *line, struct counts *ct)
{
	char	*f[NFIELD], *s = line;
	int	 nf = 0, got = -1, want = 0;

	while (nf < NFIELD && s != NULL)
		f[nf++] = strsep(&s, "\t");
	switch (f[0][0]) {
	case 'C':
	case 'V':
		run_cv(f, nf, ct);
		return;
	case 'B':
		if (nf < 6)
			break;
		ct->n[2]++;
		want = atoi(f[5]);
		got = twilio_sig_check_body(f[1], f[2], f[3], strlen(f[3]),
		    f[4]);
		break;
	case 'S':
		if (nf < 5)
			break;
		ct->n[3]++;
		want = atoi(f[4]);
		got = twilio_sig_check_stream(f[1], f[2], f[3]);
		break;
	default:
		break;
	}
	if (got == -1 || got != want) {
		print_error("%s: token %s url %s: got %d\n", f[0], f[1],
		    nf > 2 ? f[2] : "", got);
		ct->fail++;
	}
}

static void
test_node_vectors(void **state)
{
	struct counts	 ct;
	const char	*path;
	FILE		*fp;
	char		*line = NULL;
	size_t		 cap = 0;
	ssize_t		 len;

	(void)state;
	if ((path = getenv("TWILIO_VECTORS")) == NULL)
		skip();
	memset(&ct, 0, sizeof(ct));
	if ((fp = fopen(path, "r")) == NULL)
		fail_msg("%s: cannot open", path);
	while ((len = getline(&line, &cap, fp)) != -1) {
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (len > 0 && line[0] != '#')
			run_line(line, &ct);
	}
	free(line);
	fclose(fp);
	print_message("node vectors: %d C, %d V, %d B, %d S, %d failed\n",
	    ct.n[0], ct.n[1], ct.n[2], ct.n[3], ct.fail);
	assert_int_equal(ct.fail, 0);
	assert_true(ct.n[0] >= 50 && ct.n[1] >= 50);
	assert_true(ct.n[2] >= 10 && ct.n[3] >= 10);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doc_example),
		cmocka_unit_test(test_v1_status_callback),
		cmocka_unit_test(test_v2_stream),
		cmocka_unit_test(test_v3_body),
		cmocka_unit_test(test_v4_repeated),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_null_params),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_url_forms),
		cmocka_unit_test(test_sort_order),
		cmocka_unit_test(test_form_basic),
		cmocka_unit_test(test_form_v1),
		cmocka_unit_test(test_form_bad),
		cmocka_unit_test(test_form_many),
		cmocka_unit_test(test_node_vectors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
