/*
 * fuzz_audio.c - libFuzzer target for the audio path's pure code:
 * b64_encode()/b64_decode() in common/util.c and the transcoder in
 * worker/transcode.c.  Byte 0 picks the format and direction (and
 * whether the rest is base64 text to decode first, as bridge.c does),
 * byte 1 how the audio is cut into pieces, byte 2 a short output
 * buffer.  Each piece runs through three struct tc side by side: with
 * outcap = tc_max_out() in an exact-size heap buffer (ASan sees any
 * write past it), with room to spare (nothing more may come out: the
 * bound holds) and with less room (a prefix, the stream kept in time).
 * The three are made once per format and direction and tc_reset() for
 * each input.  Links common/util.c, worker/transcode.c.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transcode.h"
#include "util.h"

#define FZ_CHECK(c)	do { if (!(c)) fz_fail(__LINE__, #c); } while (0)
#define FZ_NFMT		8	/* pcm_8000 .. pcm_48000, ulaw, ? */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

struct fz_run {
	struct tc	*fr_tc[3];
	int		 fr_w;		/* bytes per output sample */
	uint8_t		 fr_short;	/* third outcap: this / 256 */
};

static void	 fz_fail(int, const char *) __attribute__((noreturn));
static void	*fz_dup(const void *, size_t);
static void	 fz_b64(const uint8_t *, size_t);
static uint8_t	*fz_b64_input(const uint8_t *, size_t, size_t *);
static void	 fz_piece(struct fz_run *, const uint8_t *, size_t);
static int	 fz_get(struct fz_run *, enum tc_fmt, int);
static void	 fz_transcode(uint8_t, uint8_t, uint8_t, const uint8_t *,
		    size_t);

static void
fz_fail(int line, const char *what)
{
	fprintf(stderr, "fuzz_audio.c:%d: invariant failed: %s\n", line,
	    what);
	abort();
}

static void *
fz_dup(const void *p, size_t n)
{
	void	*c;

	if ((c = malloc(n)) == NULL)
		abort();
	memcpy(c, p, n);
	return c;
}

/* Encode, decode back into exactly n bytes, and refuse n - 1. */
static void
fz_b64(const uint8_t *in, size_t n)
{
	size_t	 el = b64_enc_len(n);
	char	*enc;
	uint8_t	*dec, *small;

	if ((enc = malloc(el + 1)) == NULL || (dec = malloc(n)) == NULL)
		abort();
	FZ_CHECK(b64_encode(in, n, enc) == el);
	FZ_CHECK(enc[el] == '\0' && strlen(enc) == el);
	FZ_CHECK(b64_decode(enc, el, dec, n) == (long)n);
	FZ_CHECK(memcmp(dec, in, n) == 0);
	if (n > 0) {
		if ((small = malloc(n - 1)) == NULL)
			abort();
		FZ_CHECK(b64_decode(enc, el, small, n - 1) == -1);
		free(small);
	}
	free(dec);
	free(enc);
}

/* The bridge's path: base64 text from a peer, decoded strictly. */
static uint8_t *
fz_b64_input(const uint8_t *in, size_t n, size_t *outlen)
{
	char	*txt = fz_dup(in, n);
	size_t	 cap = n / 4 * 3;
	uint8_t	*raw;
	long	 r;

	if ((raw = malloc(cap)) == NULL)
		abort();
	r = b64_decode(txt, n, raw, cap);
	free(txt);
	if (r < 0) {
		free(raw);
		return NULL;
	}
	FZ_CHECK((size_t)r <= cap && (size_t)r + 2 >= cap);
	fz_b64(raw, (size_t)r);
	*outlen = (size_t)r;
	return raw;
}

static void
fz_piece(struct fz_run *fr, const uint8_t *p, size_t n)
{
	uint8_t	*in = fz_dup(p, n), *o1, *o2, *o3;
	size_t	 cap, cap3, r1, r2, r3, want;

	cap = tc_max_out(fr->fr_tc[0], n);
	FZ_CHECK(cap == tc_max_out(fr->fr_tc[1], n));
	cap3 = cap * fr->fr_short / 256;
	if ((o1 = malloc(cap)) == NULL || (o2 = malloc(cap + 64)) == NULL ||
	    (o3 = malloc(cap3)) == NULL)
		abort();
	r1 = tc_run(fr->fr_tc[0], in, n, o1, cap);
	r2 = tc_run(fr->fr_tc[1], in, n, o2, cap + 64);
	r3 = tc_run(fr->fr_tc[2], in, n, o3, cap3);
	FZ_CHECK(r1 <= cap);
	FZ_CHECK(r1 % (size_t)fr->fr_w == 0);
	/* tc_max_out() is an upper bound: more room gives nothing more. */
	FZ_CHECK(r2 == r1 && memcmp(o2, o1, r1) == 0);
	/* Less room: whole samples of the same output, then nothing. */
	want = cap3 / (size_t)fr->fr_w * (size_t)fr->fr_w;
	FZ_CHECK(r3 == (r1 < want ? r1 : want));
	FZ_CHECK(memcmp(o3, o1, r3) == 0);
	free(o3);
	free(o2);
	free(o1);
	free(in);
}

/*
 * Designing a filter costs up to a millisecond: each struct tc is made
 * once per format and direction, then tc_reset() (which must make it
 * as good as new) starts every input.
 */
static int
fz_get(struct fz_run *fr, enum tc_fmt f, int in)
{
	static struct tc	*cache[2][TC_UNKNOWN][3];
	int			 i;

	for (i = 0; i < 3; i++) {
		if (cache[in][f][i] == NULL) {
			errno = 0;
			cache[in][f][i] = in ? tc_new_in(f) : tc_new_out(f);
			if (f == TC_ULAW_8000) {
				FZ_CHECK(cache[in][f][i] == NULL &&
				    errno == EINVAL);
				return -1;
			}
			FZ_CHECK(cache[in][f][i] != NULL);
		}
		fr->fr_tc[i] = cache[in][f][i];
		tc_reset(fr->fr_tc[i]);
	}
	return 0;
}

/* Cut the audio into pieces of 1 .. 8 * cut + 1 bytes. */
static void
fz_transcode(uint8_t sel, uint8_t cut, uint8_t shortb, const uint8_t *a,
    size_t n)
{
	static const enum tc_fmt fmts[FZ_NFMT] = { TC_PCM_8000, TC_PCM_16000,
	    TC_PCM_22050, TC_PCM_24000, TC_PCM_44100, TC_PCM_48000,
	    TC_ULAW_8000, TC_UNKNOWN };
	struct fz_run	 fr;
	enum tc_fmt	 f = fmts[sel % FZ_NFMT];
	int		 in = (sel & 8) == 0, i;
	uint32_t	 rng = 0x9e3779b9u ^ cut;
	size_t		 pos = 0, len;

	if (f == TC_UNKNOWN) {
		errno = 0;
		FZ_CHECK((in ? tc_new_in(f) : tc_new_out(f)) == NULL &&
		    errno == EINVAL);
		return;
	}
	if (fz_get(&fr, f, in) == -1)
		return;
	fr.fr_w = in ? 2 : 1;
	fr.fr_short = shortb;
	while (pos < n) {
		rng = rng * 1103515245u + 12345u;
		len = 1 + (rng >> 8) % (8u * cut + 1);
		if (len > n - pos)
			len = n - pos;
		fz_piece(&fr, a + pos, len);
		pos += len;
		if ((sel & 0x80) && (rng >> 28) == 0)	/* a barge-in */
			for (i = 0; i < 3; i++)
				tc_reset(fr.fr_tc[i]);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t	*a;
	uint8_t		*raw = NULL;
	size_t		 n, i;

	if (size < 3)
		return 0;
	a = data + 3;
	n = size - 3;
	fz_b64(a, n);
	for (i = 0; i < n; i++)
		FZ_CHECK(tc_ulaw_decode(tc_ulaw_encode(tc_ulaw_decode(a[i]))) ==
		    tc_ulaw_decode(a[i]));
	if (data[0] & 0x10) {
		if ((raw = fz_b64_input(a, n, &n)) == NULL)
			return 0;
		a = raw;
	}
	fz_transcode(data[0], data[1], data[2], a, n);
	free(raw);
	return 0;
}
