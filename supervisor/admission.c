/*
 * admission.c - whether this host can take one more call without
 * hurting the live ones: the decision, with its smoothing and
 * hysteresis, from three signals sampled once a second by headroom.c.
 * Pure: no I/O, no clock of its own, so tests/unit/test_admission.c
 * drives it with made-up samples.
 *
 *   ADM_LAG  the workers' relay lag: of the calls that reported in the
 *            last second, the 90th percentile of each call's largest
 *            kernel-receive-to-send delay of a caller frame (ms);
 *   ADM_CPU  CPU pressure: the share of wall time in which some task
 *            waited for a CPU (PSI "some", %), or the run queue per CPU
 *            from loadavg where the kernel has no PSI (x 100);
 *   ADM_MEM  memory headroom: MemAvailable (MiB), bad when low.
 *
 * Each raw sample is smoothed (EWMA, weight ADM_ALPHA).  Admission
 * closes as soon as one smoothed signal reaches its high mark, and
 * reopens once every signal has stayed below its low mark for hold_ms:
 * the gap between the marks and the hold keep it from flapping.
 */
#include <stddef.h>

#include "supervisor.h"

#define ADM_ALPHA	0.5	/* weight of the newest sample */

static const char *const adm_names[ADM_NSIG] = { "relay lag",
    "CPU pressure", "memory" };

void
adm_init(struct adm *a)
{
	int	i;

	a->ad_open = 1;
	a->ad_why = -1;
	a->ad_calming = 0;
	a->ad_calm_since = 0;
	for (i = 0; i < ADM_NSIG; i++) {
		a->ad_val[i] = -1;
		a->ad_have[i] = 0;
	}
}

const char *
adm_signal_name(int s)
{
	return s >= 0 && s < ADM_NSIG ? adm_names[s] : "none";
}

/* Past the high mark (closing) or not below the low mark (calm). */
static int
adm_bad(const struct adm_limits *l, int s, double v, int high)
{
	double	mark = high ? l->al_hi[s] : l->al_lo[s];

	if (s == ADM_MEM)
		return high ? v <= mark : v < mark;
	return high ? v >= mark : v > mark;
}

/*
 * One sample per signal (negative: not known this time, the old value
 * stands).  Returns 1 if admission opened or closed.
 */
int
adm_step(struct adm *a, const struct adm_limits *l,
    const double *raw, uint64_t now_ms)
{
	int	s, worst = -1, calm = 1;

	for (s = 0; s < ADM_NSIG; s++) {
		if (raw[s] < 0)
			continue;
		a->ad_val[s] = a->ad_have[s] ? ADM_ALPHA * raw[s] +
		    (1 - ADM_ALPHA) * a->ad_val[s] : raw[s];
		a->ad_have[s] = 1;
	}
	for (s = 0; s < ADM_NSIG; s++) {
		if (!a->ad_have[s] || !l->al_on[s])
			continue;
		if (worst == -1 && adm_bad(l, s, a->ad_val[s], 1))
			worst = s;
		if (adm_bad(l, s, a->ad_val[s], 0))
			calm = 0;
	}
	if (a->ad_open) {
		if (worst == -1)
			return 0;
		a->ad_open = 0;
		a->ad_why = worst;
		a->ad_calming = 0;
		return 1;
	}
	if (!calm) {
		a->ad_calming = 0;
		if (worst != -1)
			a->ad_why = worst;
		return 0;
	}
	if (!a->ad_calming) {
		a->ad_calming = 1;
		a->ad_calm_since = now_ms;
	}
	if (now_ms - a->ad_calm_since < l->al_hold_ms)
		return 0;
	a->ad_open = 1;
	a->ad_calming = 0;
	return 1;
}
