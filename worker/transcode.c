/*
 * transcode.c - owns struct tc: per-call, per-direction streaming
 * conversion between Twilio's mu-law 8 kHz and an ElevenLabs PCM16 LE
 * format (8000 to 48000 Hz), run by the worker on every media frame
 * when the agent did not negotiate ulaw_8000 (protocols.md 2.8).  Pure:
 * no I/O, no logging, one malloc per struct tc, in tc_new_*().
 *
 * One polyphase FIR per direction, ratio l/m = out/in reduced (2, 3, 6,
 * 441/160, 441/80 and inverses), prototype at l * in Hz: Kaiser-windowed
 * sinc cut at 3700 Hz (pass 3400, stop 4000: the narrow side is always
 * 8 kHz).  k taps per phase = Kaiser's estimate for 45 dB rounded up to
 * a multiple of 8; beta fits what k allows.  Q14 taps, each phase at
 * exactly unity DC gain.  Response of the quantized filters, passband
 * within 0.05 dB to 3400 Hz; worst level at and above 4000 Hz:
 *	in  (8 kHz side)  k 40                        -50.2 dB
 *	out 16000 k 72 -45.4, 22050 k 96 -45.2, 24000 k 104 -44.1,
 *	    44100 k 192 -45.2, 48000 k 208 -44.6 dB
 * Delay about k/2 input samples (2.5 ms); cost k multiply-adds per
 * output sample, 1 to 3 us per 20 ms frame on x86-64 (SSE2).  Coefficient
 * memory l * k * 2 bytes: 35 KiB at most (8 -> 22050/44100 Hz).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "transcode.h"

#define TC_PASS_HZ	3400.0
#define TC_STOP_HZ	4000.0
#define TC_ATT_DB	45.0
#define TC_KMAX		256	/* taps per phase: tc_design()'s row */
#define TC_Q		14	/* coefficient fraction bits */
#define TC_HBLK		256	/* history slack: one memmove per TC_HBLK in */

enum tc_dir {
	TC_IN,			/* mu-law 8 kHz -> PCM16 LE */
	TC_OUT			/* PCM16 LE -> mu-law 8 kHz */
};

struct tc {
	enum tc_dir	 tc_dir;
	int		 tc_l;		/* interpolation factor */
	int		 tc_m;		/* decimation factor */
	int		 tc_k;		/* taps per phase; 0: no resampling */
	int		 tc_phase;	/* see tc_render() */
	int		 tc_carry;	/* odd PCM16 byte held over, or -1 */
	size_t		 tc_hn;		/* samples in tc_hist, >= tc_k - 1 */
	size_t		 tc_hcap;
	int16_t		*tc_hist;	/* newest input last */
	int16_t		 tc_coef[];	/* tc_l rows of tc_k taps, reversed */
};

static const struct {
	const char	*name;
	int		 rate;
} tc_fmts[] = {
	[TC_ULAW_8000] = { "ulaw_8000", 8000 },
	[TC_PCM_8000] = { "pcm_8000", 8000 },
	[TC_PCM_16000] = { "pcm_16000", 16000 },
	[TC_PCM_22050] = { "pcm_22050", 22050 },
	[TC_PCM_24000] = { "pcm_24000", 24000 },
	[TC_PCM_44100] = { "pcm_44100", 44100 },
	[TC_PCM_48000] = { "pcm_48000", 48000 },
};

/* G.711 mu-law expansion, as G.191's ulaw_expand() computes it. */
static const int16_t tc_ulaw_tab[256] = {
	-32124, -31100, -30076, -29052, -28028, -27004, -25980, -24956,
	-23932, -22908, -21884, -20860, -19836, -18812, -17788, -16764,
	-15996, -15484, -14972, -14460, -13948, -13436, -12924, -12412,
	-11900, -11388, -10876, -10364,  -9852,  -9340,  -8828,  -8316,
	 -7932,  -7676,  -7420,  -7164,  -6908,  -6652,  -6396,  -6140,
	 -5884,  -5628,  -5372,  -5116,  -4860,  -4604,  -4348,  -4092,
	 -3900,  -3772,  -3644,  -3516,  -3388,  -3260,  -3132,  -3004,
	 -2876,  -2748,  -2620,  -2492,  -2364,  -2236,  -2108,  -1980,
	 -1884,  -1820,  -1756,  -1692,  -1628,  -1564,  -1500,  -1436,
	 -1372,  -1308,  -1244,  -1180,  -1116,  -1052,   -988,   -924,
	  -876,   -844,   -812,   -780,   -748,   -716,   -684,   -652,
	  -620,   -588,   -556,   -524,   -492,   -460,   -428,   -396,
	  -372,   -356,   -340,   -324,   -308,   -292,   -276,   -260,
	  -244,   -228,   -212,   -196,   -180,   -164,   -148,   -132,
	  -120,   -112,   -104,    -96,    -88,    -80,    -72,    -64,
	   -56,    -48,    -40,    -32,    -24,    -16,     -8,      0,
	 32124,  31100,  30076,  29052,  28028,  27004,  25980,  24956,
	 23932,  22908,  21884,  20860,  19836,  18812,  17788,  16764,
	 15996,  15484,  14972,  14460,  13948,  13436,  12924,  12412,
	 11900,  11388,  10876,  10364,   9852,   9340,   8828,   8316,
	  7932,   7676,   7420,   7164,   6908,   6652,   6396,   6140,
	  5884,   5628,   5372,   5116,   4860,   4604,   4348,   4092,
	  3900,   3772,   3644,   3516,   3388,   3260,   3132,   3004,
	  2876,   2748,   2620,   2492,   2364,   2236,   2108,   1980,
	  1884,   1820,   1756,   1692,   1628,   1564,   1500,   1436,
	  1372,   1308,   1244,   1180,   1116,   1052,    988,    924,
	   876,    844,    812,    780,    748,    716,    684,    652,
	   620,    588,    556,    524,    492,    460,    428,    396,
	   372,    356,    340,    324,    308,    292,    276,    260,
	   244,    228,    212,    196,    180,    164,    148,    132,
	   120,    112,    104,     96,     88,     80,     72,     64,
	    56,     48,     40,     32,     24,     16,      8,      0,
};

/* G.711 segment of a biased 14-bit magnitude, indexed by magnitude >> 6. */
static const uint8_t tc_seg[128] = {
	0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4,
	5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
	6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
	6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
	7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
	7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
	7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
	7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
};

static struct tc	*tc_new(enum tc_dir, enum tc_fmt);
static int		 tc_taps(int);
static int		 tc_design(struct tc *, int);
static double		 tc_i0(double);
static double		 tc_kaiser_beta(double);
static long long	 tc_quantize(int16_t *, const double *, int);
static size_t		 tc_take(struct tc *, const uint8_t *, size_t,
			    size_t *);
static inline int16_t	 tc_s16(int, int);
static size_t		 tc_render(struct tc *, size_t, uint8_t *, size_t,
			    size_t);
static inline int32_t	 tc_dot(const int16_t *, const int16_t *, int);
static inline size_t	 tc_emit(uint8_t *, size_t, size_t, int32_t);
static int		 tc_gcd(int, int);

enum tc_fmt
tc_fmt_parse(const char *s)
{
	size_t	i;

	if (s == NULL)
		return TC_UNKNOWN;
	for (i = 0; i < sizeof(tc_fmts) / sizeof(tc_fmts[0]); i++)
		if (strcmp(s, tc_fmts[i].name) == 0)
			return (enum tc_fmt)i;
	return TC_UNKNOWN;
}

const char *
tc_fmt_name(enum tc_fmt f)
{
	if ((unsigned)f >= TC_UNKNOWN)
		return "unknown";
	return tc_fmts[f].name;
}

int
tc_fmt_rate(enum tc_fmt f)
{
	if ((unsigned)f >= TC_UNKNOWN)
		return 0;
	return tc_fmts[f].rate;
}

struct tc *
tc_new_in(enum tc_fmt agent_in)
{
	return tc_new(TC_IN, agent_in);
}

struct tc *
tc_new_out(enum tc_fmt agent_out)
{
	return tc_new(TC_OUT, agent_out);
}

/*
 * One allocation: the struct, tc_l * tc_k coefficients, then the
 * history (tc_k - 1 old samples plus TC_HBLK slack).
 */
static struct tc *
tc_new(enum tc_dir dir, enum tc_fmt f)
{
	struct tc	*t;
	int		 rate, in, out, g, l, m, k;
	size_t		 ncoef, hcap;

	if (f == TC_ULAW_8000 || (rate = tc_fmt_rate(f)) == 0) {
		errno = EINVAL;
		return NULL;
	}
	in = dir == TC_IN ? 8000 : rate;
	out = dir == TC_IN ? rate : 8000;
	g = tc_gcd(in, out);
	l = out / g;
	m = in / g;
	k = l == m ? 0 : tc_taps(in);
	ncoef = (size_t)l * (size_t)k;
	hcap = (k > 0 ? (size_t)k - 1 : 0) + TC_HBLK;
	t = calloc(1, sizeof(*t) + (ncoef + hcap) * sizeof(int16_t));
	if (t == NULL)
		return NULL;
	t->tc_dir = dir;
	t->tc_l = l;
	t->tc_m = m;
	t->tc_k = k;
	t->tc_hcap = hcap;
	t->tc_hist = t->tc_coef + ncoef;
	if (k > 0 && tc_design(t, in) == -1) {
		free(t);
		errno = EINVAL;
		return NULL;
	}
	tc_reset(t);
	return t;
}

void
tc_reset(struct tc *t)
{
	t->tc_phase = 0;
	t->tc_carry = -1;
	memset(t->tc_hist, 0, t->tc_hcap * sizeof(int16_t));
	t->tc_hn = t->tc_k > 0 ? (size_t)t->tc_k - 1 : 0;
}

void
tc_free(struct tc *t)
{
	free(t);
}

/* Taps per phase for a TC_ATT_DB Kaiser filter, rounded up to 8. */
static int
tc_taps(int in)
{
	double	span;
	int	k;

	span = (TC_ATT_DB - 8.0) /
	    (2.285 * 2.0 * M_PI * (TC_STOP_HZ - TC_PASS_HZ)) * in;
	k = ((int)ceil(span) + 7) / 8 * 8;
	return k > TC_KMAX ? TC_KMAX : k;
}

/*
 * Fill tc_coef.  Prototype tap n of N = l * k, at l * in Hz, belongs to
 * phase n % l; row p holds its phase reversed, so that tc_dot() walks
 * coefficients and history (oldest first) in the same direction.
 * Returns -1 if a tap or a row's absolute sum could overflow tc_dot().
 */
static int
tc_design(struct tc *t, int in)
{
	double	 row[TC_KMAX], fs, wc, beta, ib, att, c, r, x, sum;
	int	 l = t->tc_l, k = t->tc_k, n, p, j;
	int	 len = l * k;

	fs = (double)l * in;
	wc = (TC_PASS_HZ + TC_STOP_HZ) / fs;	/* 2 fc / fs */
	att = 2.285 * (len - 1) * 2.0 * M_PI * (TC_STOP_HZ - TC_PASS_HZ) /
	    fs + 8.0;
	beta = tc_kaiser_beta(att > 70.0 ? 70.0 : att);
	ib = tc_i0(beta);
	c = (len - 1) / 2.0;
	for (p = 0; p < l; p++) {
		sum = 0.0;
		for (j = 0; j < k; j++) {
			n = p + (k - 1 - j) * l;
			x = n - c;
			r = x / c;
			row[j] = (x == 0.0 ? wc : sin(M_PI * wc * x) /
			    (M_PI * x)) * tc_i0(beta * sqrt(1.0 - r * r)) / ib;
			sum += row[j];
		}
		for (j = 0; j < k; j++)
			if (fabs(row[j] /= sum) >= 1.0)
				return -1;
		/* |input| <= 32768: the sum of |taps| bounds every acc. */
		if (tc_quantize(t->tc_coef + (size_t)p * k, row, k) * 32768 >
		    INT32_MAX - (1 << (TC_Q - 1)))
			return -1;
	}
	return 0;
}

/*
 * Round to Q14, give the rounding residue to the largest tap (exact
 * unity DC gain per phase) and return the sum of |taps|.
 */
static long long
tc_quantize(int16_t *q, const double *row, int k)
{
	long long	sum = 0, asum = 0;
	int		j, big = 0;

	for (j = 0; j < k; j++) {
		q[j] = (int16_t)lrint(row[j] * (1 << TC_Q));
		sum += q[j];
		if (abs(q[j]) > abs(q[big]))
			big = j;
	}
	q[big] = (int16_t)(q[big] + ((1LL << TC_Q) - sum));
	for (j = 0; j < k; j++)
		asum += abs(q[j]);
	return asum;
}

/* Kaiser's empirical beta for a stopband attenuation in dB. */
static double
tc_kaiser_beta(double att)
{
	if (att > 50.0)
		return 0.1102 * (att - 8.7);
	if (att >= 21.0)
		return 0.5842 * pow(att - 21.0, 0.4) +
		    0.07886 * (att - 21.0);
	return 0.0;
}

/* Modified Bessel function of the first kind, order 0 (power series). */
static double
tc_i0(double x)
{
	double	sum = 1.0, term = 1.0, q = x * x / 4.0;
	int	i;

	for (i = 1; i < 64 && term > sum * 1e-12; i++) {
		term *= q / ((double)i * i);
		sum += term;
	}
	return sum;
}

size_t
tc_max_out(const struct tc *t, size_t inlen)
{
	size_t	n, l = (size_t)t->tc_l, m = (size_t)t->tc_m;

	if (t->tc_dir == TC_OUT)
		n = inlen / 2 + (inlen % 2 == 1 && t->tc_carry >= 0);
	else
		n = inlen;
	if (n > SIZE_MAX / 4 / l)
		return SIZE_MAX;
	/* tc_phase >= 0, so n inputs give at most ceil(n l / m) outputs. */
	n = (n * l + m - 1) / m;
	return t->tc_dir == TC_IN ? n * 2 : n;
}

size_t
tc_run(struct tc *t, const uint8_t *in, size_t inlen, uint8_t *out,
    size_t outcap)
{
	size_t	i = 0, o = 0, n, keep;

	for (;;) {
		if (t->tc_hn == t->tc_hcap) {
			keep = t->tc_k > 0 ? (size_t)t->tc_k - 1 : 0;
			memmove(t->tc_hist, t->tc_hist + t->tc_hn - keep,
			    keep * sizeof(int16_t));
			t->tc_hn = keep;
		}
		if ((n = tc_take(t, in, inlen, &i)) == 0)
			return o;
		o = tc_render(t, n, out, outcap, o);
	}
}

/*
 * Append input from in[*ip] to the history, as much as fits; hold a
 * last odd PCM16 byte.  Returns the number of samples appended.
 */
static size_t
tc_take(struct tc *t, const uint8_t *in, size_t len, size_t *ip)
{
	int16_t	*h = t->tc_hist + t->tc_hn;
	size_t	 room = t->tc_hcap - t->tc_hn, n = 0, i = *ip;

	if (t->tc_dir == TC_IN) {
		for (; n < room && i < len; n++, i++)
			h[n] = tc_ulaw_tab[in[i]];
		*ip = i;
		return n;
	}
	if (t->tc_carry >= 0 && i < len) {
		h[n++] = tc_s16(t->tc_carry, in[i++]);
		t->tc_carry = -1;
	}
	for (; n < room && i + 1 < len; n++, i += 2)
		h[n] = tc_s16(in[i], in[i + 1]);
	if (i + 1 == len)
		t->tc_carry = in[i++];
	*ip = i;
	return n;
}

static inline int16_t
tc_s16(int lo, int hi)
{
	int	v = lo | hi << 8;

	return (int16_t)(v >= 0x8000 ? v - 0x10000 : v);
}

/*
 * Emit every output that falls on the n samples just appended.  On the
 * l-times-upsampled grid output j sits at j * m and input i covers
 * [i * l, i * l + l); tc_phase is the next output's offset from the
 * start of the next input to arrive.  Output without room is skipped,
 * so the stream keeps time.
 */
static size_t
tc_render(struct tc *t, size_t n, uint8_t *out, size_t cap, size_t o)
{
	const int16_t	*h = t->tc_hist;
	size_t		 s = t->tc_hn, end = s + n;
	size_t		 w = t->tc_dir == TC_IN ? 2 : 1;
	int		 p = t->tc_phase, l = t->tc_l, m = t->tc_m;
	int		 k = t->tc_k;

	for (;;) {
		for (; p >= l && s < end; p -= l)
			s++;
		if (s == end)
			break;
		if (o + w <= cap)
			o = tc_emit(out, o, w, k == 0 ? h[s] * (1 << TC_Q) :
			    tc_dot(t->tc_coef + (size_t)p * k, h + s + 1 - k,
			    k));
		p += m;
	}
	t->tc_phase = p;
	t->tc_hn = end;
	return o;
}

/*
 * k is a multiple of 8.  SSE2 (every x86-64) multiplies and pairs eight
 * taps per pmaddwd; elsewhere eight lanes let the compiler vectorize.
 * tc_design() bounds the sum of |taps|, so no lane can overflow.
 */
static inline int32_t
tc_dot(const int16_t *c, const int16_t *x, int k)
{
#ifdef __SSE2__
	__m128i	acc = _mm_setzero_si128();
	int	i;

	for (i = 0; i < k; i += 8)
		acc = _mm_add_epi32(acc, _mm_madd_epi16(
		    _mm_loadu_si128((const __m128i *)(const void *)(c + i)),
		    _mm_loadu_si128((const __m128i *)(const void *)(x + i))));
	acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, 0x4e));
	acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, 0xb1));
	return _mm_cvtsi128_si32(acc);
#else
	int32_t	acc[8] = { 0 };
	int	i, j;

	for (i = 0; i < k; i += 8)
		for (j = 0; j < 8; j++)
			acc[j] += (int32_t)c[i + j] * x[i + j];
	for (j = 0; j < 4; j++)
		acc[j] += acc[j + 4];
	return acc[0] + acc[1] + acc[2] + acc[3];
#endif
}

/* acc is Q14: round, saturate, store w bytes: PCM16 LE or mu-law. */
static inline size_t
tc_emit(uint8_t *out, size_t o, size_t w, int32_t acc)
{
	int32_t	y;

	/* >> of a negative value is arithmetic with GCC and Clang. */
	y = (acc + (1 << (TC_Q - 1))) >> TC_Q;
	if (y > 32767)
		y = 32767;
	else if (y < -32768)
		y = -32768;
	if (w == 1) {
		out[o++] = tc_ulaw_encode((int16_t)y);
	} else {
		out[o++] = (uint8_t)(y & 0xff);
		out[o++] = (uint8_t)((y >> 8) & 0xff);
	}
	return o;
}

/*
 * G.191's ulaw_compress(): the 14-bit magnitude (one's complement for
 * negatives, so -1 is "negative zero"), biased by 33, clipped, split
 * into a 3-bit segment and a 4-bit step, sent inverted.
 */
uint8_t
tc_ulaw_encode(int16_t s)
{
	int	neg = -(s < 0), mag, seg;

	/* s ^ neg is ~s for negatives, without a branch to mispredict. */
	mag = ((s ^ neg) >> 2) + 33;
	if (mag > 0x1fff)
		mag = 0x1fff;
	seg = tc_seg[mag >> 6];
	return (uint8_t)((0x7f ^ (seg << 4 | ((mag >> (seg + 1)) & 0xf))) |
	    (~neg & 0x80));
}

int16_t
tc_ulaw_decode(uint8_t u)
{
	return tc_ulaw_tab[u];
}

static int
tc_gcd(int a, int b)
{
	int	r;

	while (b != 0) {
		r = a % b;
		a = b;
		b = r;
	}
	return a;
}
