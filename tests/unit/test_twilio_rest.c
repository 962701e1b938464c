/*
 * test_twilio_rest.c - the pure parts of the Twilio REST client: form
 * encoding, SID checks, and how Twilio's answers (success, error JSON,
 * "already over" codes, garbage) become a twilio_result.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "twilio_rest.h"

static void
test_form(void **state)
{
	char	buf[128];
	size_t	len = 0;

	(void)state;
	assert_int_equal(twilio_form_append(buf, sizeof(buf), &len, "To",
	    "+15558675309"), 0);
	assert_int_equal(twilio_form_append(buf, sizeof(buf), &len, "Url",
	    "https://b.example/twiml?a=1&b=2"), 0);
	assert_int_equal(twilio_form_append(buf, sizeof(buf), &len, "Twiml",
	    "<Say>hi & bye</Say>"), 0);
	assert_string_equal(buf, "To=%2B15558675309&Url=https%3A%2F%2F"
	    "b.example%2Ftwiml%3Fa%3D1%26b%3D2&Twiml=%3CSay%3Ehi%20%26%20bye"
	    "%3C%2FSay%3E");
	assert_int_equal(len, strlen(buf));
	/* Too small: refused, nothing half-written beyond the buffer. */
	len = 0;
	assert_int_equal(twilio_form_append(buf, 8, &len, "Status",
	    "completed"), -1);
}

static void
test_sid(void **state)
{
	(void)state;
	assert_true(twilio_sid_ok("CA0123456789abcdef0123456789abcdef", "CA"));
	assert_false(twilio_sid_ok("CA0123456789abcdef0123456789abcde", "CA"));
	assert_false(twilio_sid_ok("MZ0123456789abcdef0123456789abcdef", "CA"));
	assert_false(twilio_sid_ok("CA0123456789abcdef0123456789abcdeg", "CA"));
	assert_false(twilio_sid_ok("CA../../Accounts/x/Calls/abcdef01234", "CA"));
	assert_false(twilio_sid_ok(NULL, "CA"));
}

static void
test_created(void **state)
{
	struct twilio_result	r;
	const char *b = "{\"sid\":\"CA9a44aa44aa44aa44aa44aa44aa44aa44\","
	    "\"status\":\"queued\",\"to\":\"+15558675309\"}";

	(void)state;
	twilio_parse_result(201, b, strlen(b), 0, &r);
	assert_true(r.tr_ok);
	assert_string_equal(r.tr_call_sid,
	    "CA9a44aa44aa44aa44aa44aa44aa44aa44");
	assert_string_equal(r.tr_call_status, "queued");
}

static void
test_errors(void **state)
{
	struct twilio_result	r;
	const char *e = "{\"code\":21211,\"message\":\"The 'To' number 555 is "
	    "not a valid phone number.\",\"more_info\":\"x\",\"status\":400}";
	const char *nf = "{\"code\":20404,\"message\":\"not found\"}";
	const char *st = "{\"code\":21220,\"message\":\"Call is not in-progress"
	    "\"}";

	(void)state;
	twilio_parse_result(400, e, strlen(e), 0, &r);
	assert_false(r.tr_ok);
	assert_int_equal(r.tr_code, 21211);
	assert_non_null(strstr(r.tr_error, "not a valid phone number"));
	assert_non_null(strstr(r.tr_error, "21211"));
	/* Ending a call that is already over is success. */
	twilio_parse_result(404, nf, strlen(nf), 1, &r);
	assert_true(r.tr_ok);
	assert_true(r.tr_already_over);
	twilio_parse_result(400, st, strlen(st), 1, &r);
	assert_true(r.tr_ok);
	assert_true(r.tr_already_over);
	/* The same codes on create are failures. */
	twilio_parse_result(404, nf, strlen(nf), 0, &r);
	assert_false(r.tr_ok);
	/* Garbage and empty bodies still give a clear message. */
	twilio_parse_result(500, "<html>oops", 10, 0, &r);
	assert_false(r.tr_ok);
	assert_non_null(strstr(r.tr_error, "500"));
	twilio_parse_result(401, NULL, 0, 0, &r);
	assert_false(r.tr_ok);
	twilio_parse_result(400, "[1,2]", 5, 0, &r);
	assert_false(r.tr_ok);
	assert_int_equal(r.tr_code, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_form),
		cmocka_unit_test(test_sid),
		cmocka_unit_test(test_created),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
