/*
 * headroom.c - the signals admission.c decides on, sampled once a second
 * on the supervisor's loop: the relay lag the busy workers report
 * (MSG_LOAD), CPU pressure from /proc/pressure/cpu (the "some" total, so
 * the share of the last second, not PSI's own 10 s average, which would
 * reopen admission too late), or the instantaneous run queue from
 * /proc/loadavg where the kernel has no PSI, and MemAvailable from
 * /proc/meminfo.  Logs when admission closes and reopens, with the signal
 * that did it; renders the signals for /metrics.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "supervisor.h"

#define HR_TICK_MS	1000
#define HR_HOLD_MS	5000	/* calm this long before reopening */
#define HR_LAG_MAX	4096	/* reports kept per second */
#define HR_RETRY_SECS	30	/* Retry-After while closed */

static struct adm	 hr_adm;
static struct adm_limits hr_lim;
static struct event	*hr_ev;
static uint32_t		 hr_lag[HR_LAG_MAX];
static unsigned		 hr_nlag;
static uint64_t		 hr_psi_us, hr_psi_t_ns;
static int		 hr_no_psi;
static double		 hr_raw[ADM_NSIG];
static uint64_t		 hr_closed_ms;	/* when it closed last */

static void	headroom_tick(int, short, void *);

/* Read a small /proc file whole; -1 if not there. */
static ssize_t
hr_read(const char *path, char *buf, size_t cap)
{
	ssize_t	n;
	int	fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return n;
}

/* Thresholds from the configuration (at start and after a reload). */
void
headroom_config(void)
{
	const struct config	*cf = sv.sv_cf;

	memset(&hr_lim, 0, sizeof(hr_lim));
	hr_lim.al_on[ADM_LAG] = cf->admission;
	hr_lim.al_hi[ADM_LAG] = (double)cf->admission_lag;
	hr_lim.al_lo[ADM_LAG] = (double)cf->admission_lag / 2;
	hr_lim.al_on[ADM_CPU] = cf->admission;
	hr_lim.al_hi[ADM_CPU] = (double)cf->admission_cpu;
	hr_lim.al_lo[ADM_CPU] = (double)cf->admission_cpu / 2;
	hr_lim.al_on[ADM_MEM] = cf->admission && cf->admission_memory > 0;
	hr_lim.al_hi[ADM_MEM] = (double)cf->admission_memory;
	hr_lim.al_lo[ADM_MEM] = (double)cf->admission_memory * 1.5;
	hr_lim.al_hold_ms = HR_HOLD_MS;
	if (!cf->admission && !hr_adm.ad_open) {
		hr_adm.ad_open = 1;
		log_info("admission: open (admission = false: only max_calls "
		    "limits calls)");
	}
}

void
headroom_start(void)
{
	struct timeval	tv = { HR_TICK_MS / 1000, (HR_TICK_MS % 1000) * 1000 };

	adm_init(&hr_adm);
	headroom_config();
	if ((hr_ev = event_new(sv.sv_base, -1, EV_PERSIST, headroom_tick,
	    NULL)) == NULL || event_add(hr_ev, &tv) == -1)
		fatalx("cannot add the headroom timer");
	headroom_tick(-1, 0, NULL);
}

/* A busy worker's largest lag of the last second (MSG_LOAD). */
void
headroom_lag(uint32_t us)
{
	if (hr_nlag < HR_LAG_MAX)
		hr_lag[hr_nlag++] = us;
}

int
headroom_open(void)
{
	return hr_adm.ad_open;
}

const char *
headroom_reason(void)
{
	return hr_adm.ad_open ? NULL : adm_signal_name(hr_adm.ad_why);
}

unsigned
headroom_retry_after(void)
{
	return HR_RETRY_SECS;
}

static int
hr_cmp(const void *a, const void *b)
{
	uint32_t	x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* 90th percentile of the calls' worst lag this second, ms; 0 if none. */
static double
hr_sample_lag(void)
{
	double	v;

	if (hr_nlag == 0)
		return 0;
	qsort(hr_lag, hr_nlag, sizeof(hr_lag[0]), hr_cmp);
	v = hr_lag[(hr_nlag * 9) / 10 < hr_nlag ? (hr_nlag * 9) / 10 :
	    hr_nlag - 1] / 1000.0;
	hr_nlag = 0;
	return v;
}

/* Share of the last tick in which some task waited for a CPU, %. */
static double
hr_sample_cpu(void)
{
	char		 buf[512], *p;
	unsigned long long total;
	uint64_t	 now = now_mono_ns();
	double		 v = -1, running;
	long		 ncpu;

	if (!hr_no_psi && hr_read("/proc/pressure/cpu", buf, sizeof(buf)) > 0 &&
	    strncmp(buf, "some ", 5) == 0 &&
	    (p = strstr(buf, "total=")) != NULL &&
	    sscanf(p, "total=%llu", &total) == 1) {
		if (hr_psi_t_ns != 0 && now > hr_psi_t_ns && total >= hr_psi_us)
			v = (double)(total - hr_psi_us) * 1000.0 * 100.0 /
			    (double)(now - hr_psi_t_ns);
		hr_psi_us = total;
		hr_psi_t_ns = now;
		return v > 100 ? 100 : v;
	}
	if (!hr_no_psi) {
		hr_no_psi = 1;
		log_info("admission: no /proc/pressure/cpu: CPU pressure from "
		    "the run queue (/proc/loadavg)");
	}
	/* "0.71 0.50 0.75 3/353 19125": tasks runnable now, us included. */
	if (hr_read("/proc/loadavg", buf, sizeof(buf)) <= 0 ||
	    (p = strchr(buf, '/')) == NULL)
		return -1;
	while (p > buf && p[-1] != ' ')
		p--;
	running = strtod(p, NULL) - 1;
	if ((ncpu = sysconf(_SC_NPROCESSORS_ONLN)) <= 0)
		ncpu = 1;
	v = running > ncpu ? (running - ncpu) * 100.0 / ncpu : 0;
	return v > 100 ? 100 : v;
}

static double
hr_sample_mem(void)
{
	char		 buf[4096], *p;
	long long	 kb;

	if (hr_read("/proc/meminfo", buf, sizeof(buf)) <= 0 ||
	    (p = strstr(buf, "MemAvailable:")) == NULL ||
	    sscanf(p, "MemAvailable: %lld kB", &kb) != 1 || kb < 0)
		return -1;
	return (double)kb / 1024.0;
}

static void
headroom_tick(int fd, short ev, void *arg)
{
	uint64_t	now = now_mono_ns() / 1000000;
	int		s;

	(void)fd, (void)ev, (void)arg;
	hr_raw[ADM_LAG] = hr_sample_lag();
	hr_raw[ADM_CPU] = hr_sample_cpu();
	hr_raw[ADM_MEM] = hr_sample_mem();
	if (!adm_step(&hr_adm, &hr_lim, hr_raw, now))
		return;
	s = hr_adm.ad_why;
	if (!hr_adm.ad_open) {
		hr_closed_ms = now;
		metrics.m_adm_closings++;
		log_warnx("admission: closed by %s: %.1f %s (limit %.0f); new "
		    "calls get 503 until it is back past %.0f for %d s",
		    adm_signal_name(s), hr_adm.ad_val[s], s == ADM_LAG ? "ms" :
		    s == ADM_CPU ? "%" : "MiB available", hr_lim.al_hi[s],
		    hr_lim.al_lo[s], HR_HOLD_MS / 1000);
	} else
		log_info("admission: open again after %llu s (%s back to "
		    "%.1f)", (unsigned long long)((now - hr_closed_ms) / 1000),
		    adm_signal_name(s), hr_adm.ad_val[s]);
}

void
headroom_metrics(FILE *fp)
{
	fprintf(fp, "# HELP naiberd_admission_open 1 while new calls are "
	    "admitted, 0 while headroom is gone.\n"
	    "# TYPE naiberd_admission_open gauge\n"
	    "naiberd_admission_open %d\n", hr_adm.ad_open);
	fprintf(fp, "# HELP naiberd_headroom Smoothed admission signals: "
	    "relay lag (ms), CPU pressure (%%), memory available (MiB).\n"
	    "# TYPE naiberd_headroom gauge\n"
	    "naiberd_headroom{signal=\"relay_lag_ms\"} %.3f\n"
	    "naiberd_headroom{signal=\"cpu_pressure_percent\"} %.3f\n"
	    "naiberd_headroom{signal=\"memory_available_mib\"} %.0f\n",
	    hr_adm.ad_val[ADM_LAG] < 0 ? 0 : hr_adm.ad_val[ADM_LAG],
	    hr_adm.ad_val[ADM_CPU] < 0 ? 0 : hr_adm.ad_val[ADM_CPU],
	    hr_adm.ad_val[ADM_MEM] < 0 ? 0 : hr_adm.ad_val[ADM_MEM]);
	fprintf(fp, "# HELP naiberd_admission_closings_total Times admission "
	    "closed.\n# TYPE naiberd_admission_closings_total counter\n"
	    "naiberd_admission_closings_total %llu\n",
	    (unsigned long long)metrics.m_adm_closings);
}
