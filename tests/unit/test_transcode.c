/*
 * test_transcode.c - unit tests for worker/transcode.c: G.711 mu-law
 * against a transcription of the ITU-T G.191 reference, and the
 * streaming resamplers in both directions at every ElevenLabs rate:
 * frequency, level, length, continuity across pieces of any size,
 * anti-aliasing and anti-imaging (swept, worst level printed), output
 * bounds.  Timing is printed, never asserted (DESIGN.md section 11).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "transcode.h"

#define AMP	16384.0		/* -6 dBFS */
#define SECS	0.5		/* signal length of the tone tests */
#define SKIP	0.04		/* settling time skipped before measuring */

struct sig {
	double	*s_x;		/* decoded output samples */
	size_t	 s_n;
	int	 s_rate;
};

static uint8_t	 ref_compress(int);
static int	 ref_expand(uint8_t);
static uint8_t	*gen_in(double, double, size_t);
static uint8_t	*gen_out(int, double, double, size_t);
static size_t	 feed(struct tc *, const uint8_t *, size_t, size_t,
		    uint8_t **);
static struct sig tone(int, enum tc_fmt, double, size_t, size_t *);
static void	 sig_free(struct sig *);
static double	 zc_freq(const struct sig *, size_t);
static double	 rms(const struct sig *, size_t);
static double	 goertzel(const struct sig *, size_t, double);
static double	 fit_resid(const struct sig *, size_t, double);
static double	 max_jump(const struct sig *, size_t);
static double	 db(double);
static void	 check_tone(int, enum tc_fmt, double, size_t);
static void	 test_ulaw_reference(void **);
static void	 test_ulaw_known(void **);
static void	 test_ulaw_roundtrip(void **);
static void	 test_fmt(void **);
static void	 test_new_null(void **);
static void	 test_tones(void **);
static void	 test_pieces_identical(void **);
static void	 test_odd_carry(void **);
static void	 test_alias_out(void **);
static void	 test_image_in(void **);
static void	 test_energy_above_4k(void **);
static void	 test_outcap(void **);
static void	 test_drop_keeps_time(void **);
static void	 test_reset(void **);
static void	 test_timing(void **);

static const enum tc_fmt pcm_fmts[] = {
	TC_PCM_8000, TC_PCM_16000, TC_PCM_22050, TC_PCM_24000,
	TC_PCM_44100, TC_PCM_48000
};
#define NFMTS	(sizeof(pcm_fmts) / sizeof(pcm_fmts[0]))

/* ITU-T G.191 (STL) g711.c ulaw_compress(), one sample, as written. */
static uint8_t
ref_compress(int lin)
{
	int	absno, segno, i, low, high, out;

	absno = lin < 0 ? ((~lin) >> 2) + 33 : (lin >> 2) + 33;
	if (absno > 0x1FFF)
		absno = 0x1FFF;
	i = absno >> 6;
	segno = 1;
	while (i != 0) {
		segno++;
		i >>= 1;
	}
	high = 0x0008 - segno;
	low = 0x000F - ((absno >> segno) & 0x000F);
	out = (high << 4) | low;
	if (lin >= 0)
		out |= 0x0080;
	return (uint8_t)out;
}

/* ITU-T G.191 (STL) g711.c ulaw_expand(), one sample. */
static int
ref_expand(uint8_t log)
{
	int	sign, mant, expo, step;

	sign = log < 0x80 ? -1 : 1;
	mant = ~log;
	expo = (mant >> 4) & 0x7;
	mant &= 0xF;
	step = 4 << (expo + 1);
	return sign * ((0x80 << expo) + step * mant + step / 2 - 4 * 33);
}

/* n mu-law bytes of a sine at 8 kHz, encoded by the reference. */
static uint8_t *
gen_in(double f, double amp, size_t n)
{
	uint8_t	*b;
	size_t	 i;

	b = malloc(n);
	assert_non_null(b);
	for (i = 0; i < n; i++)
		b[i] = ref_compress((int)lrint(amp *
		    sin(2 * M_PI * f * (double)i / 8000.0 + 0.3)));
	return b;
}

/* n samples (2n bytes) of a PCM16 LE sine at rate. */
static uint8_t *
gen_out(int rate, double f, double amp, size_t n)
{
	uint8_t	*b;
	size_t	 i;
	long	 v;

	b = malloc(2 * n);
	assert_non_null(b);
	for (i = 0; i < n; i++) {
		v = lrint(amp * sin(2 * M_PI * f * (double)i / rate + 0.3));
		b[2 * i] = (uint8_t)(v & 0xff);
		b[2 * i + 1] = (uint8_t)((v >> 8) & 0xff);
	}
	return b;
}

/*
 * Run len bytes through t in pieces of piece bytes, each piece into a
 * buffer of exactly tc_max_out() bytes (ASan catches a write past it).
 */
static size_t
feed(struct tc *t, const uint8_t *in, size_t len, size_t piece,
    uint8_t **outp)
{
	uint8_t	*out, *buf;
	size_t	 off, n, max, got, total = 0;

	out = malloc(tc_max_out(t, len) + 16);
	assert_non_null(out);
	for (off = 0; off < len; off += n) {
		n = len - off < piece ? len - off : piece;
		max = tc_max_out(t, n);
		buf = malloc(max > 0 ? max : 1);
		assert_non_null(buf);
		got = tc_run(t, in + off, n, buf, max);
		assert_true(got <= max);
		memcpy(out + total, buf, got);
		total += got;
		free(buf);
	}
	*outp = out;
	return total;
}

/*
 * Send a tone of f Hz, nin input samples, through one direction of fmt
 * (dir 0: inbound, 1: outbound) in pieces; decode what comes out.
 */
static struct sig
tone(int dir, enum tc_fmt fmt, double f, size_t piece, size_t *nin)
{
	struct sig	 s;
	struct tc	*t;
	uint8_t		*in, *out;
	size_t		 n, len, i;
	int		 rate = tc_fmt_rate(fmt);

	*nin = (size_t)(SECS * (dir == 0 ? 8000 : rate));
	in = dir == 0 ? gen_in(f, AMP, *nin) : gen_out(rate, f, AMP, *nin);
	len = dir == 0 ? *nin : 2 * *nin;
	t = dir == 0 ? tc_new_in(fmt) : tc_new_out(fmt);
	assert_non_null(t);
	n = feed(t, in, len, piece, &out);
	s.s_rate = dir == 0 ? rate : 8000;
	s.s_n = dir == 0 ? n / 2 : n;
	s.s_x = calloc(s.s_n + 1, sizeof(double));
	assert_non_null(s.s_x);
	for (i = 0; i < s.s_n; i++)
		s.s_x[i] = dir == 0 ?
		    (int16_t)(out[2 * i] | out[2 * i + 1] << 8) :
		    ref_expand(out[i]);
	if (dir == 0)
		assert_int_equal(n % 2, 0);
	free(in);
	free(out);
	tc_free(t);
	return s;
}

static void
sig_free(struct sig *s)
{
	free(s->s_x);
}

/* Frequency from linearly interpolated rising zero crossings. */
static double
zc_freq(const struct sig *s, size_t from)
{
	double	first = -1, last = 0, t;
	size_t	i, count = 0;

	for (i = from; i + 1 < s->s_n; i++) {
		if (!(s->s_x[i] < 0 && s->s_x[i + 1] >= 0))
			continue;
		t = i + s->s_x[i] / (s->s_x[i] - s->s_x[i + 1]);
		if (first < 0)
			first = t;
		last = t;
		count++;
	}
	assert_true(count >= 3);
	return (count - 1) * s->s_rate / (last - first);
}

static double
rms(const struct sig *s, size_t from)
{
	double	sum = 0;
	size_t	i;

	for (i = from; i < s->s_n; i++)
		sum += s->s_x[i] * s->s_x[i];
	return sqrt(sum / (double)(s->s_n - from));
}

/* Amplitude of the component at f Hz, Hann-windowed Goertzel. */
static double
goertzel(const struct sig *s, size_t from, double f)
{
	double	w, c, s0, s1 = 0, s2 = 0, wsum = 0, re, im;
	size_t	i, n = s->s_n - from;

	c = 2 * cos(2 * M_PI * f / s->s_rate);
	for (i = 0; i < n; i++) {
		w = 0.5 - 0.5 * cos(2 * M_PI * (double)i / (double)n);
		wsum += w;
		s0 = w * s->s_x[from + i] + c * s1 - s2;
		s2 = s1;
		s1 = s0;
	}
	re = s1 - s2 * cos(2 * M_PI * f / s->s_rate);
	im = s2 * sin(2 * M_PI * f / s->s_rate);
	return 2 * sqrt(re * re + im * im) / wsum;
}

/* Largest deviation from the least-squares sine of frequency f. */
static double
fit_resid(const struct sig *s, size_t from, double f)
{
	double	scc = 0, sss = 0, scs = 0, sxc = 0, sxs = 0, c, sn, a, b;
	double	det, e, worst = 0;
	size_t	i;

	for (i = from; i < s->s_n; i++) {
		c = cos(2 * M_PI * f * (double)i / s->s_rate);
		sn = sin(2 * M_PI * f * (double)i / s->s_rate);
		scc += c * c;
		sss += sn * sn;
		scs += c * sn;
		sxc += s->s_x[i] * c;
		sxs += s->s_x[i] * sn;
	}
	det = scc * sss - scs * scs;
	a = (sxc * sss - sxs * scs) / det;
	b = (sxs * scc - sxc * scs) / det;
	for (i = from; i < s->s_n; i++) {
		e = fabs(s->s_x[i] - a * cos(2 * M_PI * f * (double)i /
		    s->s_rate) - b * sin(2 * M_PI * f * (double)i / s->s_rate));
		if (e > worst)
			worst = e;
	}
	return worst;
}

static double
max_jump(const struct sig *s, size_t from)
{
	double	worst = 0;
	size_t	i;

	for (i = from; i + 1 < s->s_n; i++)
		if (fabs(s->s_x[i + 1] - s->s_x[i]) > worst)
			worst = fabs(s->s_x[i + 1] - s->s_x[i]);
	return worst;
}

static double
db(double ratio)
{
	return 20 * log10(ratio);
}

static void
test_ulaw_reference(void **state)
{
	int	x, u;

	(void)state;
	for (x = -32768; x <= 32767; x++)
		if (tc_ulaw_encode((int16_t)x) != ref_compress(x))
			fail_msg("encode(%d) = 0x%02x, G.191 0x%02x", x,
			    tc_ulaw_encode((int16_t)x), ref_compress(x));
	for (u = 0; u < 256; u++)
		assert_int_equal(tc_ulaw_decode((uint8_t)u),
		    ref_expand((uint8_t)u));
}

static void
test_ulaw_known(void **state)
{
	int	u;

	(void)state;
	assert_int_equal(tc_ulaw_encode(0), 0xFF);
	assert_int_equal(tc_ulaw_encode(-1), 0x7F);	/* negative zero */
	assert_int_equal(tc_ulaw_decode(0xFF), 0);
	assert_int_equal(tc_ulaw_decode(0x7F), 0);
	assert_int_equal(tc_ulaw_encode(32767), 0x80);
	assert_int_equal(tc_ulaw_encode(-32768), 0x00);
	assert_int_equal(tc_ulaw_encode(-32767), 0x00);
	assert_int_equal(tc_ulaw_decode(0x80), 32124);
	assert_int_equal(tc_ulaw_decode(0x00), -32124);
	assert_int_equal(tc_ulaw_decode(0xFE), 8);
	assert_int_equal(tc_ulaw_decode(0x7E), -8);
	/* Every code but negative zero survives decode then encode. */
	for (u = 0; u < 256; u++)
		if (u != 0x7F)
			assert_int_equal(tc_ulaw_encode(
			    tc_ulaw_decode((uint8_t)u)), u);
	/* Decoding is monotonic within each sign. */
	for (u = 0x81; u < 0x100; u++)
		assert_true(tc_ulaw_decode((uint8_t)u) <
		    tc_ulaw_decode((uint8_t)(u - 1)));
}

/*
 * |decode(encode(x)) - x| is at most half a step of x's segment plus
 * the 2 bits G.711 drops (4), except above the last level (clipping).
 */
static void
test_ulaw_roundtrip(void **state)
{
	int	x, y, u, step, bound;

	(void)state;
	for (x = -32768; x <= 32767; x++) {
		u = tc_ulaw_encode((int16_t)x);
		y = tc_ulaw_decode((uint8_t)u);
		step = 8 << ((~u & 0x70) >> 4);
		bound = step / 2 + 4;
		if (abs(x) - 32124 > bound)
			bound = abs(x) - 32124;
		if (abs(y - x) > bound)
			fail_msg("x %d -> 0x%02x -> %d, bound %d", x, u, y,
			    bound);
	}
}

static void
test_fmt(void **state)
{
	static const char *const names[] = { "ulaw_8000", "pcm_8000",
	    "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100",
	    "pcm_48000" };
	static const int rates[] = { 8000, 8000, 16000, 22050, 24000,
	    44100, 48000 };
	int	i;

	(void)state;
	for (i = 0; i < 7; i++) {
		assert_int_equal(tc_fmt_parse(names[i]), i);
		assert_string_equal(tc_fmt_name((enum tc_fmt)i), names[i]);
		assert_int_equal(tc_fmt_rate((enum tc_fmt)i), rates[i]);
	}
	assert_int_equal(tc_fmt_parse(NULL), TC_UNKNOWN);
	assert_int_equal(tc_fmt_parse(""), TC_UNKNOWN);
	assert_int_equal(tc_fmt_parse("PCM_16000"), TC_UNKNOWN);
	assert_int_equal(tc_fmt_parse("pcm_16000 "), TC_UNKNOWN);
	assert_int_equal(tc_fmt_parse("pcm_mulaw"), TC_UNKNOWN);
	assert_int_equal(tc_fmt_parse("pcm_32000"), TC_UNKNOWN);
	assert_int_equal(tc_fmt_rate(TC_UNKNOWN), 0);
	assert_string_equal(tc_fmt_name(TC_UNKNOWN), "unknown");
}

static void
test_new_null(void **state)
{
	(void)state;
	errno = 0;
	assert_null(tc_new_in(TC_ULAW_8000));
	assert_int_equal(errno, EINVAL);
	assert_null(tc_new_out(TC_ULAW_8000));
	assert_null(tc_new_in(TC_UNKNOWN));
	assert_null(tc_new_out(TC_UNKNOWN));
	assert_null(tc_new_in((enum tc_fmt)42));
	assert_null(tc_new_out((enum tc_fmt)-1));
	tc_free(NULL);
}

/*
 * One tone through one direction: frequency within 1 %, level within
 * 1 dB, length per the rate ratio, close to a pure sine throughout (a
 * click would be a large residual or jump).
 */
static void
check_tone(int dir, enum tc_fmt fmt, double f, size_t piece)
{
	struct sig	s;
	size_t		nin, from, expect;
	double		got, lvl, jump, resid, qerr;
	int		rate = tc_fmt_rate(fmt);

	s = tone(dir, fmt, f, piece, &nin);
	expect = dir == 0 ? nin * rate / 8000 : nin * 8000 / rate;
	if (s.s_n + 2 < expect || s.s_n > expect + 2)
		fail_msg("%s dir %d: %zu samples out, want %zu",
		    tc_fmt_name(fmt), dir, s.s_n, expect);
	from = (size_t)(SKIP * s.s_rate);
	got = zc_freq(&s, from);
	assert_true(fabs(got - f) <= 0.01 * f);
	lvl = db(rms(&s, from) / (AMP / sqrt(2)));
	assert_true(fabs(lvl) <= 1.0);
	/* mu-law error at this level is at most 516 (G.711 segment 7). */
	qerr = 516 + 2;
	jump = max_jump(&s, from);
	assert_true(jump <= 2 * AMP * sin(M_PI * f / s.s_rate) * 1.02 +
	    2 * qerr);
	resid = fit_resid(&s, from, f);
	if (resid > 1.5 * qerr)
		fail_msg("%s dir %d %.0f Hz piece %zu: residual %.0f",
		    tc_fmt_name(fmt), dir, f, piece, resid);
	sig_free(&s);
}

static void
test_tones(void **state)
{
	static const double freqs[] = { 300, 1000, 3000 };
	size_t	i, j, dir, frame;

	(void)state;
	for (i = 0; i < NFMTS; i++)
		for (dir = 0; dir < 2; dir++)
			for (j = 0; j < 3; j++) {
				frame = dir == 0 ? 160 : (size_t)
				    tc_fmt_rate(pcm_fmts[i]) / 50 * 2;
				check_tone((int)dir, pcm_fmts[i], freqs[j],
				    frame);
				check_tone((int)dir, pcm_fmts[i], freqs[j], 37);
			}
}

/* Any split of the input gives the very same bytes. */
static void
test_pieces_identical(void **state)
{
	static const size_t pieces[] = { 1, 2, 3, 37, 160, 881, 4096 };
	struct tc	*t;
	uint8_t		*in, *ref, *out;
	size_t		 i, p, dir, n, len, nref, nout;
	int		 rate;

	(void)state;
	for (i = 0; i < NFMTS; i++)
		for (dir = 0; dir < 2; dir++) {
			rate = tc_fmt_rate(pcm_fmts[i]);
			n = (size_t)rate / 10;
			in = dir == 0 ? gen_in(1234, AMP, n) :
			    gen_out(rate, 1234, AMP, n);
			len = dir == 0 ? n : 2 * n;
			t = dir == 0 ? tc_new_in(pcm_fmts[i]) :
			    tc_new_out(pcm_fmts[i]);
			assert_non_null(t);
			nref = feed(t, in, len, len, &ref);
			for (p = 0; p < sizeof(pieces) / sizeof(pieces[0]);
			    p++) {
				tc_reset(t);
				nout = feed(t, in, len, pieces[p], &out);
				assert_int_equal(nout, nref);
				assert_memory_equal(out, ref, nref);
				free(out);
			}
			tc_free(t);
			free(ref);
			free(in);
		}
}

/* An odd PCM16 byte is held: samples split across calls stay whole. */
static void
test_odd_carry(void **state)
{
	struct tc	*t;
	uint8_t		 in[4] = { 0x00, 0x40, 0x00, 0xc0 }, out[8];
	size_t		 n;

	(void)state;
	t = tc_new_out(TC_PCM_8000);	/* no resampling: 1 in, 1 out */
	assert_non_null(t);
	assert_int_equal(tc_max_out(t, 1), 0);
	assert_int_equal(tc_run(t, in, 1, out, sizeof(out)), 0);
	assert_int_equal(tc_max_out(t, 1), 1);
	n = tc_run(t, in + 1, 2, out, sizeof(out));
	assert_int_equal(n, 1);
	assert_int_equal(out[0], tc_ulaw_encode(16384));
	n = tc_run(t, in + 3, 1, out, sizeof(out));
	assert_int_equal(n, 1);
	assert_int_equal(out[0], tc_ulaw_encode(-16384));
	tc_free(t);
	/* Inbound at 8 kHz: decode only, little-endian output. */
	t = tc_new_in(TC_PCM_8000);
	assert_non_null(t);
	in[0] = 0x80;
	assert_int_equal(tc_run(t, in, 1, out, sizeof(out)), 2);
	assert_int_equal(out[0], 32124 & 0xff);
	assert_int_equal(out[1], 32124 >> 8);
	tc_free(t);
}

/*
 * Outbound tones above 4 kHz (swept to the agent's Nyquist, 6 and 10
 * kHz included) come out at least 40 dB below a 1 kHz tone.
 */
static void
test_alias_out(void **state)
{
	struct sig	s;
	size_t		i, nin, from;
	double		f, ref, lvl, worst, wf, step = 25;
	int		rate;

	(void)state;
	for (i = 1; i < NFMTS; i++) {
		rate = tc_fmt_rate(pcm_fmts[i]);
		s = tone(1, pcm_fmts[i], 1000, 4096, &nin);
		from = (size_t)(SKIP * s.s_rate);
		ref = rms(&s, from);
		sig_free(&s);
		worst = -200;
		wf = 0;
		for (f = 4005; f < rate / 2.0; f += step) {
			step = f < 5000 ? 25 : f < 6000 ? 100 : 250;
			if (f > 5900 && f < 6000)
				f = 6000;
			if (f > 9800 && f < 10000)
				f = 10000;
			s = tone(1, pcm_fmts[i], f, 4096, &nin);
			lvl = db(rms(&s, from) / ref);
			sig_free(&s);
			if (lvl > -40)
				fail_msg("%s out: %.0f Hz only %.1f dB down",
				    tc_fmt_name(pcm_fmts[i]), f, -lvl);
			if (lvl > worst) {
				worst = lvl;
				wf = f;
			}
		}
		print_message("out %-9s worst alias %.1f dB (at %.0f Hz)\n",
		    tc_fmt_name(pcm_fmts[i]), worst, wf);
	}
}

/*
 * Inbound: each input tone up to 3950 Hz has images at k 8000 +- f;
 * every one above 4 kHz must stay 40 dB below the -6 dBFS input.
 */
static void
test_image_in(void **state)
{
	struct sig	s;
	size_t		i, nin, from;
	double		f, img, lvl, worst, wf;
	int		rate, k, sg;

	(void)state;
	for (i = 1; i < NFMTS; i++) {
		rate = tc_fmt_rate(pcm_fmts[i]);
		worst = -200;
		wf = 0;
		for (f = 100; f <= 3950; f += f < 3400 ? 100 : 25) {
			s = tone(0, pcm_fmts[i], f, 160, &nin);
			from = (size_t)(SKIP * s.s_rate);
			for (k = 1; k * 8000 - f < rate / 2.0; k++)
				for (sg = -1; sg <= 1; sg += 2) {
					img = k * 8000 + sg * f;
					if (img >= rate / 2.0)
						continue;
					lvl = db(goertzel(&s, from, img) / AMP);
					if (lvl > -40)
						fail_msg("%s in: %.0f Hz image"
						    " at %.0f: %.1f dB",
						    tc_fmt_name(pcm_fmts[i]), f,
						    img, lvl);
					if (lvl > worst) {
						worst = lvl;
						wf = img;
					}
				}
			sig_free(&s);
		}
		print_message("in  %-9s worst image %.1f dB (at %.0f Hz)\n",
		    tc_fmt_name(pcm_fmts[i]), worst, wf);
	}
}

/*
 * 8 -> 16 kHz, by plain DFT over 100 ms (a whole number of periods):
 * all energy above 4 kHz, images and filtered mu-law noise alike,
 * is under -40 dB of the total.
 */
static void
test_energy_above_4k(void **state)
{
	static const double freqs[] = { 300, 1000, 3000, 3350 };
	struct sig	s;
	size_t		nin, from = 1600, n = 1600, i, j, b;
	double		re, im, hi, tot, ph;

	(void)state;
	for (j = 0; j < sizeof(freqs) / sizeof(freqs[0]); j++) {
		s = tone(0, TC_PCM_16000, freqs[j], 160, &nin);
		assert_true(s.s_n >= from + n);
		hi = tot = 0;
		for (b = 1; b < n / 2; b++) {
			re = im = 0;
			for (i = 0; i < n; i++) {
				ph = 2 * M_PI * (double)(b * i % n) / n;
				re += s.s_x[from + i] * cos(ph);
				im -= s.s_x[from + i] * sin(ph);
			}
			tot += re * re + im * im;
			if (b * 16000 / n > 4000)
				hi += re * re + im * im;
		}
		print_message("in  pcm_16000 %4.0f Hz: energy above 4 kHz "
		    "%.1f dB\n", freqs[j], 10 * log10(hi / tot));
		assert_true(10 * log10(hi / tot) < -40);
		sig_free(&s);
	}
}

/* tc_run() never writes past outcap, whatever outcap is. */
static void
test_outcap(void **state)
{
	static const size_t caps[] = { 0, 1, 2, 3, 7, 100 };
	struct tc	*t;
	uint8_t		*in, *out;
	size_t		 i, c, dir, n, len, got;

	(void)state;
	for (i = 0; i < NFMTS; i++)
		for (dir = 0; dir < 2; dir++)
			for (c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
				n = (size_t)tc_fmt_rate(pcm_fmts[i]) / 50;
				in = dir == 0 ? gen_in(1000, AMP, 160) :
				    gen_out(tc_fmt_rate(pcm_fmts[i]), 1000, AMP,
				    n);
				len = dir == 0 ? 160 : 2 * n;
				t = dir == 0 ? tc_new_in(pcm_fmts[i]) :
				    tc_new_out(pcm_fmts[i]);
				assert_non_null(t);
				/* Exact size: ASan reports any overrun. */
				out = caps[c] > 0 ? malloc(caps[c]) : NULL;
				got = tc_run(t, in, len, out, caps[c]);
				assert_true(got <= caps[c]);
				if (dir == 0)
					assert_int_equal(got % 2, 0);
				if (caps[c] >= 2)
					assert_true(got >= caps[c] - 1);
				free(out);
				free(in);
				tc_free(t);
			}
}

/* Output dropped for lack of room does not shift what follows. */
static void
test_drop_keeps_time(void **state)
{
	struct tc	*a, *b;
	uint8_t		*in, ra[4096], rb[4096];
	size_t		 i, dir, f, frame, na, nb;
	int		 rate;

	(void)state;
	for (i = 1; i < NFMTS; i++)
		for (dir = 0; dir < 2; dir++) {
			rate = tc_fmt_rate(pcm_fmts[i]);
			frame = dir == 0 ? 160 : (size_t)rate / 50 * 2;
			in = dir == 0 ? gen_in(700, AMP, 160 * 10) :
			    gen_out(rate, 700, AMP, (size_t)rate / 5);
			a = dir == 0 ? tc_new_in(pcm_fmts[i]) :
			    tc_new_out(pcm_fmts[i]);
			b = dir == 0 ? tc_new_in(pcm_fmts[i]) :
			    tc_new_out(pcm_fmts[i]);
			assert_non_null(a);
			assert_non_null(b);
			for (f = 0; f < 10; f++) {
				na = tc_run(a, in + f * frame, frame, ra,
				    sizeof(ra));
				nb = tc_run(b, in + f * frame, frame, rb,
				    f == 4 ? 10 : sizeof(rb));
				if (f == 4)
					continue;
				assert_int_equal(na, nb);
				assert_memory_equal(ra, rb, na);
			}
			tc_free(a);
			tc_free(b);
			free(in);
		}
}

/* After tc_reset() a converter behaves as a new one (odd byte too). */
static void
test_reset(void **state)
{
	struct tc	*a, *b;
	uint8_t		*in, ra[2048], rb[2048];
	size_t		 na, nb;

	(void)state;
	in = gen_out(48000, 440, AMP, 960);
	a = tc_new_out(TC_PCM_48000);
	b = tc_new_out(TC_PCM_48000);
	assert_non_null(a);
	assert_non_null(b);
	(void)tc_run(a, in, 1001, ra, sizeof(ra));
	tc_reset(a);
	na = tc_run(a, in, 1920, ra, sizeof(ra));
	nb = tc_run(b, in, 1920, rb, sizeof(rb));
	assert_int_equal(na, 160);
	assert_int_equal(na, nb);
	assert_memory_equal(ra, rb, na);
	tc_free(a);
	tc_free(b);
	free(in);
}

/* Printed, never asserted: ns per 20 ms frame, and set-up time. */
static void
test_timing(void **state)
{
	struct timespec	 t0, t1;
	struct tc	*t;
	uint8_t		*in, out[4096];
	size_t		 i, dir, f, len, frames = 2000;
	double		 ns, init;
	int		 rate;

	(void)state;
	for (i = 0; i < NFMTS; i++)
		for (dir = 0; dir < 2; dir++) {
			rate = tc_fmt_rate(pcm_fmts[i]);
			in = dir == 0 ? gen_in(1000, AMP, 160) :
			    gen_out(rate, 1000, AMP, (size_t)rate / 50);
			len = dir == 0 ? 160 : (size_t)rate / 50 * 2;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			t = dir == 0 ? tc_new_in(pcm_fmts[i]) :
			    tc_new_out(pcm_fmts[i]);
			clock_gettime(CLOCK_MONOTONIC, &t1);
			assert_non_null(t);
			init = (t1.tv_sec - t0.tv_sec) * 1e6 +
			    (t1.tv_nsec - t0.tv_nsec) / 1e3;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			for (f = 0; f < frames; f++)
				assert_true(tc_run(t, in, len, out,
				    sizeof(out)) > 0);
			clock_gettime(CLOCK_MONOTONIC, &t1);
			ns = ((t1.tv_sec - t0.tv_sec) * 1e9 +
			    (t1.tv_nsec - t0.tv_nsec)) / (double)frames;
			print_message("%s %-9s %8.0f ns per 20 ms frame, "
			    "init %6.0f us\n", dir == 0 ? "in " : "out",
			    tc_fmt_name(pcm_fmts[i]), ns, init);
			tc_free(t);
			free(in);
		}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ulaw_reference),
		cmocka_unit_test(test_ulaw_known),
		cmocka_unit_test(test_ulaw_roundtrip),
		cmocka_unit_test(test_fmt),
		cmocka_unit_test(test_new_null),
		cmocka_unit_test(test_tones),
		cmocka_unit_test(test_pieces_identical),
		cmocka_unit_test(test_odd_carry),
		cmocka_unit_test(test_alias_out),
		cmocka_unit_test(test_image_in),
		cmocka_unit_test(test_energy_above_4k),
		cmocka_unit_test(test_outcap),
		cmocka_unit_test(test_drop_keeps_time),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_timing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
