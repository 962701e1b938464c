/*
 * transcode.h - streaming audio conversion between Twilio's G.711 mu-law
 * 8 kHz and the PCM16 formats an ElevenLabs agent may be configured for
 * (docs/protocols.md sections 2.3 and 2.8).  One struct tc per call and
 * direction; pure code, no I/O, no logging, no allocation after tc_new_*.
 */
#ifndef NAIBER_TRANSCODE_H
#define NAIBER_TRANSCODE_H

#include <stddef.h>
#include <stdint.h>

/* ElevenLabs audio format names, in the order of tc_fmt_parse()'s table. */
enum tc_fmt {
	TC_ULAW_8000,
	TC_PCM_8000,
	TC_PCM_16000,
	TC_PCM_22050,
	TC_PCM_24000,
	TC_PCM_44100,
	TC_PCM_48000,
	TC_UNKNOWN
};

struct tc;

enum tc_fmt	 tc_fmt_parse(const char *);
const char	*tc_fmt_name(enum tc_fmt);
int		 tc_fmt_rate(enum tc_fmt);

/*
 * tc_new_in: mu-law 8 kHz (Twilio) -> the agent's input format.
 * tc_new_out: the agent's output format -> mu-law 8 kHz.
 * Both return NULL with errno EINVAL for TC_ULAW_8000 (pass the bytes
 * through instead) and TC_UNKNOWN, ENOMEM if allocation fails.
 */
struct tc	*tc_new_in(enum tc_fmt) __attribute__((warn_unused_result));
struct tc	*tc_new_out(enum tc_fmt) __attribute__((warn_unused_result));

/* Upper bound of tc_run()'s output for inlen more input bytes. */
size_t		 tc_max_out(const struct tc *, size_t);

/*
 * Convert inlen bytes (any split: an odd PCM16 byte is kept for the next
 * call), write at most outcap bytes and return how many were written.
 * All input is always consumed; with outcap < tc_max_out() the output
 * beyond outcap is dropped, so the stream stays in time.
 */
size_t		 tc_run(struct tc *, const uint8_t *, size_t, uint8_t *,
		    size_t);

/* Forget history, phase and held byte (e.g. after a barge-in clear). */
void		 tc_reset(struct tc *);
void		 tc_free(struct tc *);

/* G.711 mu-law, bit-exact with the ITU-T G.191 reference (16-bit PCM). */
uint8_t		 tc_ulaw_encode(int16_t);
int16_t		 tc_ulaw_decode(uint8_t);

#endif
