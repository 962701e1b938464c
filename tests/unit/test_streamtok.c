/*
 * test_streamtok.c - unit tests for common/streamtok.c: the per-call
 * stream token against a vector computed independently (Node's crypto:
 * HMAC-SHA256("secret-token", "naiberd stream " CallSid), 16 bytes,
 * base64url), tokens refused when any part is wrong, and the routes a
 * path maps to.  Pure functions; runs under ASan and UBSan.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "streamtok.h"

#define SID	"CA0123456789abcdef0123456789abcdef"
#define KEY	"secret-token"
#define VECTOR	SID "._R8Kyku6l8WDEx1x-KvOsg"

static void	test_token_vector(void **);
static void	test_token_refused(void **);
static void	test_routes(void **);

static void
test_token_vector(void **state)
{
	char	tok[STREAM_TOKEN_MAX + 1], sid[40];

	(void)state;
	assert_int_equal(stream_token(KEY, SID, tok, sizeof(tok)), 0);
	assert_string_equal(tok, VECTOR);
	assert_int_equal(stream_token_check(KEY, tok, sid, sizeof(sid)), 1);
	assert_string_equal(sid, SID);
	/* Too small a buffer, not a CallSid, no secret. */
	assert_int_equal(stream_token(KEY, SID, tok, 56), -1);
	assert_int_equal(stream_token(KEY, "CA123", tok, sizeof(tok)), -1);
	assert_int_equal(stream_token(KEY, "MZ0123456789abcdef0123456789abcdef",
	    tok, sizeof(tok)), -1);
	assert_int_equal(stream_token("", SID, tok, sizeof(tok)), -1);
	assert_int_equal(stream_token(NULL, SID, tok, sizeof(tok)), -1);
}

static void
test_token_refused(void **state)
{
	static const char *const bad[] = {
		SID "._R8Kyku6l8WDEx1x-KvOsh",		/* last char */
		SID "._R8Kyku6l8WDEx1x-KvOs",		/* short */
		SID "._R8Kyku6l8WDEx1x-KvOsgw",		/* long */
		"CA0123456789abcdef0123456789abcdee._R8Kyku6l8WDEx1x-KvOsg",
		SID "_R8Kyku6l8WDEx1x-KvOsg",		/* no dot */
		"._R8Kyku6l8WDEx1x-KvOsg", SID ".", "", "..",
		"CA0123456789abcdef0123456789abcdeg._R8Kyku6l8WDEx1x-KvOsg",
	};
	char	sid[40];
	size_t	i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(stream_token_check(KEY, bad[i], sid,
		    sizeof(sid)), 0);
	/* Another instance's auth token. */
	assert_int_equal(stream_token_check("other", VECTOR, sid, sizeof(sid)),
	    0);
	assert_int_equal(stream_token_check(KEY, NULL, sid, sizeof(sid)), 0);
	/* No room for the CallSid. */
	assert_int_equal(stream_token_check(KEY, VECTOR, sid, 34), 0);
}

static void
test_routes(void **state)
{
	const char	*tok;

	(void)state;
	assert_int_equal(stream_route("/outbound-media-stream", &tok),
	    SR_SHARED);
	assert_null(tok);
	assert_int_equal(stream_route("/outbound-media-stream/" VECTOR, &tok),
	    SR_CALL);
	assert_string_equal(tok, VECTOR);
	assert_int_equal(stream_route("/outbound-media-stream/", &tok),
	    SR_NONE);
	assert_int_equal(stream_route("/outbound-media-stream/a/b", &tok),
	    SR_NONE);
	assert_int_equal(stream_route("/outbound-media-streamX", &tok),
	    SR_NONE);
	assert_int_equal(stream_route("/twiml", &tok), SR_NONE);
	assert_int_equal(stream_route(NULL, &tok), SR_NONE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_vector),
		cmocka_unit_test(test_token_refused),
		cmocka_unit_test(test_routes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
