/*
 * test_admission.c - the admission decision (supervisor/admission.c):
 * closing on each signal, smoothing, hysteresis, the hold before
 * reopening, unknown samples and signals turned off.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "supervisor.h"

/* admission.c uses no other symbol of the supervisor. */

static struct adm_limits
limits(void)
{
	struct adm_limits	l;
	int			s;

	for (s = 0; s < ADM_NSIG; s++)
		l.al_on[s] = 1;
	l.al_hi[ADM_LAG] = 10, l.al_lo[ADM_LAG] = 5;
	l.al_hi[ADM_CPU] = 60, l.al_lo[ADM_CPU] = 30;	/* as configured */
	l.al_hi[ADM_MEM] = 256, l.al_lo[ADM_MEM] = 384;
	l.al_hold_ms = 5000;
	return l;
}

/* One sample a second from t (ms); returns how often it flipped. */
static int
feed(struct adm *a, const struct adm_limits *l, uint64_t *t, double lag,
    double cpu, double mem, int n)
{
	double	raw[ADM_NSIG] = { lag, cpu, mem };
	int	flips = 0;

	while (n-- > 0) {
		flips += adm_step(a, l, raw, *t);
		*t += 1000;
	}
	return flips;
}

static void
test_open_when_healthy(void **state)
{
	struct adm		a;
	struct adm_limits	l = limits();
	uint64_t		t = 0;

	(void)state;
	adm_init(&a);
	assert_int_equal(feed(&a, &l, &t, 1, 5, 20000, 30), 0);
	assert_true(a.ad_open);
	assert_int_equal(a.ad_why, -1);
}

static void
test_close_each_signal(void **state)
{
	struct adm_limits	l = limits();
	struct adm		a;
	uint64_t		t = 0;

	(void)state;
	adm_init(&a);
	feed(&a, &l, &t, 1, 5, 20000, 3);
	/* One bad second of lag at 30 ms: smoothed 15.5 >= 10, closes. */
	assert_int_equal(feed(&a, &l, &t, 30, 5, 20000, 1), 1);
	assert_false(a.ad_open);
	assert_int_equal(a.ad_why, ADM_LAG);
	assert_string_equal(adm_signal_name(a.ad_why), "relay lag");

	adm_init(&a);
	t = 0;
	assert_int_equal(feed(&a, &l, &t, 0, 100, 20000, 1), 1);
	assert_int_equal(a.ad_why, ADM_CPU);

	adm_init(&a);
	t = 0;
	/* Memory is bad when low. */
	assert_int_equal(feed(&a, &l, &t, 0, 0, 100, 1), 1);
	assert_int_equal(a.ad_why, ADM_MEM);
	assert_string_equal(adm_signal_name(ADM_MEM), "memory");
}

static void
test_smoothing_ignores_one_blip(void **state)
{
	struct adm_limits	l = limits();
	struct adm		a;
	uint64_t		t = 0;

	(void)state;
	adm_init(&a);
	feed(&a, &l, &t, 2, 10, 20000, 5);
	/* A single 16 ms second after a calm run: (2 + 16) / 2 = 9 < 10. */
	assert_int_equal(feed(&a, &l, &t, 16, 10, 20000, 1), 0);
	assert_true(a.ad_open);
	/* Two in a row do close it. */
	assert_int_equal(feed(&a, &l, &t, 16, 10, 20000, 1), 1);
	assert_false(a.ad_open);
}

static void
test_hysteresis_and_hold(void **state)
{
	struct adm_limits	l = limits();
	struct adm		a;
	uint64_t		t = 0;
	int			i;

	(void)state;
	adm_init(&a);
	assert_int_equal(feed(&a, &l, &t, 0, 90, 20000, 2), 1);
	assert_false(a.ad_open);
	/* Between the marks (40 %: below 60, above 30): stays closed. */
	assert_int_equal(feed(&a, &l, &t, 0, 40, 20000, 30), 0);
	assert_false(a.ad_open);
	/*
	 * Calm (10 %): the smoothed value falls below 30 after one sample
	 * (25), then 5 s of calm are needed: reopens on the 6th sample.
	 */
	for (i = 0; i < 5; i++) {
		assert_int_equal(feed(&a, &l, &t, 0, 10, 20000, 1), 0);
		assert_false(a.ad_open);
	}
	assert_int_equal(feed(&a, &l, &t, 0, 10, 20000, 1), 1);
	assert_true(a.ad_open);
	assert_int_equal(a.ad_why, ADM_CPU);	/* what closed it last */
}

static void
test_relapse_restarts_hold(void **state)
{
	struct adm_limits	l = limits();
	struct adm		a;
	uint64_t		t = 0;

	(void)state;
	adm_init(&a);
	feed(&a, &l, &t, 20, 0, 20000, 1);
	assert_false(a.ad_open);
	feed(&a, &l, &t, 0, 0, 20000, 4);	/* 4 calm seconds */
	/* A second between the marks (smoothed 6 > 5) resets the hold. */
	assert_int_equal(feed(&a, &l, &t, 12, 0, 20000, 1), 0);
	assert_int_equal(feed(&a, &l, &t, 0, 0, 20000, 5), 0);
	assert_false(a.ad_open);
	assert_int_equal(feed(&a, &l, &t, 0, 0, 20000, 1), 1);
	assert_true(a.ad_open);
}

static void
test_unknown_and_off(void **state)
{
	struct adm_limits	l = limits();
	struct adm		a;
	uint64_t		t = 0;

	(void)state;
	adm_init(&a);
	/* Nothing known: open, nothing to decide on. */
	assert_int_equal(feed(&a, &l, &t, -1, -1, -1, 10), 0);
	assert_true(a.ad_open);
	/* Unknown samples keep the last value: closed stays closed. */
	feed(&a, &l, &t, -1, 95, -1, 1);
	assert_false(a.ad_open);
	assert_int_equal(feed(&a, &l, &t, -1, -1, -1, 20), 0);
	assert_false(a.ad_open);

	/* A signal turned off never closes it. */
	adm_init(&a);
	l.al_on[ADM_CPU] = 0;
	assert_int_equal(feed(&a, &l, &t, 0, 100, 20000, 10), 0);
	assert_true(a.ad_open);
	l.al_on[ADM_LAG] = l.al_on[ADM_MEM] = 0;
	assert_int_equal(feed(&a, &l, &t, 500, 100, 1, 10), 0);
	assert_true(a.ad_open);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_when_healthy),
		cmocka_unit_test(test_close_each_signal),
		cmocka_unit_test(test_smoothing_ignores_one_blip),
		cmocka_unit_test(test_hysteresis_and_hold),
		cmocka_unit_test(test_relapse_restarts_hold),
		cmocka_unit_test(test_unknown_and_off),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
