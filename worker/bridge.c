/*
 * bridge.c - the audio path of a call, both ways, in a worker.  Caller
 * audio (Twilio media) becomes user_audio_chunk; agent audio becomes
 * Twilio media with the call's streamSid.  With ulaw_8000 both ways the
 * base64 text is passed through untouched; otherwise transcode.c
 * converts, with state kept per direction.  Barge-in: an interruption
 * clears Twilio's buffer and drops agent audio up to its event id.
 * The hot path uses this file's static buffers (one call per process),
 * logs nothing and only counts.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "transcode.h"
#include "util.h"
#include "worker.h"

#define BR_B64_MAX	(192 * 1024)		/* one message's audio */
#define BR_RAW_MAX	(BR_B64_MAX / 4 * 3)
#define BR_PCM_MAX	(BR_RAW_MAX * 12 + 64)	/* 8k ulaw -> 48k PCM16 */

static uint8_t	br_raw[BR_RAW_MAX];
static uint8_t	br_conv[BR_PCM_MAX];
static char	br_b64[BR_PCM_MAX / 3 * 4 + 8];
static char	br_msg[BR_PCM_MAX / 3 * 4 + 256];

#define BR_LIT(s)	(s), sizeof(s) - 1

/*
 * Appends n bytes to br_msg at *off, always leaving room for a NUL as
 * snprintf() did; -1 once the message would not fit.
 */
static int
br_put(size_t *off, const char *s, size_t n)
{
	if (n >= sizeof(br_msg) - *off)
		return -1;
	memcpy(br_msg + *off, s, n);
	*off += n;
	return 0;
}

int
bridge_formats(struct call *c, const char *fin, const char *fout)
{
	enum tc_fmt	in = tc_fmt_parse(fin), out = tc_fmt_parse(fout);

	if (in == TC_UNKNOWN || out == TC_UNKNOWN)
		return -1;
	c->c_passthrough_in = (in == TC_ULAW_8000);
	c->c_passthrough_out = (out == TC_ULAW_8000);
	if (!c->c_passthrough_in && (c->c_tc_in = tc_new_in(in)) == NULL)
		return -1;
	if (!c->c_passthrough_out && (c->c_tc_out = tc_new_out(out)) == NULL)
		return -1;
	return 0;
}

void
bridge_free(struct call *c)
{
	tc_free(c->c_tc_in);
	tc_free(c->c_tc_out);
	c->c_tc_in = c->c_tc_out = NULL;
}

/* Decode, convert with tc, encode again: base64 text in br_b64. */
static long
bridge_convert(struct tc *tc, const char *b64, size_t len)
{
	long	n;
	size_t	m;

	if (len > BR_B64_MAX ||
	    (n = b64_decode(b64, len, br_raw, sizeof(br_raw))) < 0)
		return -1;
	if (tc_max_out(tc, (size_t)n) > sizeof(br_conv))
		return -1;
	m = tc_run(tc, br_raw, (size_t)n, br_conv, sizeof(br_conv));
	return (long)b64_encode(br_conv, m, br_b64);
}

/*
 * Relay lag of a caller frame: its arrival in the kernel to its send to
 * the agent.  The worst of each second goes to the supervisor
 * (call_load_tick), whose admission control watches it.
 */
static void
bridge_lag(struct call *c)
{
	struct timespec	ts;
	uint64_t	rx = ws_rx_ns(c->c_tw), now;

	if (rx == 0 || clock_gettime(CLOCK_REALTIME, &ts) == -1)
		return;
	now = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	if (now > rx && now - rx > c->c_lag_max_ns)
		c->c_lag_max_ns = now - rx;
	c->c_lag_frames++;
}

/* Twilio media payload (base64 mu-law 8 kHz) -> user_audio_chunk. */
void
bridge_caller_audio(struct call *c, const char *b64, size_t len)
{
	const char	*p = b64;
	long		 n = (long)len;
	size_t		 m = 0;

	if (c->c_el_state != EL_READY) {
		c->c_cnt.dn_frames_dropped++;	/* never queued */
		return;
	}
	if (!c->c_passthrough_in) {
		if ((n = bridge_convert(c->c_tc_in, b64, len)) < 0) {
			c->c_cnt.dn_bad_messages++;
			return;
		}
		p = br_b64;
	}
	if ((size_t)n + 32 > sizeof(br_msg) ||
	    br_put(&m, BR_LIT("{\"user_audio_chunk\":\"")) == -1 ||
	    br_put(&m, p, (size_t)n) == -1 || br_put(&m, BR_LIT("\"}")) == -1) {
		c->c_cnt.dn_bad_messages++;
		return;
	}
	if (eleven_send_audio(c, br_msg, m) == 0) {
		c->c_cnt.dn_frames_in++;
		bridge_lag(c);
	} else
		c->c_cnt.dn_frames_dropped++;
}

/* Agent audio (base64 in the agent's output format) -> Twilio media. */
void
bridge_agent_audio(struct call *c, const char *b64, size_t len,
    long long event_id)
{
	const char	*p = b64;
	long		 n = (long)len;
	size_t		 m = 0;

	if (c->c_interrupted >= 0 && event_id <= c->c_interrupted) {
		c->c_cnt.dn_frames_dropped++;	/* stale after barge-in */
		return;
	}
	if (c->c_passthrough_out) {
		if (len > BR_B64_MAX || b64_check(b64, len) < 0) {
			c->c_cnt.dn_bad_messages++;
			return;
		}
	} else if ((n = bridge_convert(c->c_tc_out, b64, len)) < 0) {
		c->c_cnt.dn_bad_messages++;
		return;
	} else
		p = br_b64;
	if (n == 0)
		return;
	if (br_put(&m, BR_LIT("{\"event\":\"media\",\"streamSid\":\"")) ||
	    br_put(&m, c->c_stream_sid, strlen(c->c_stream_sid)) ||
	    br_put(&m, BR_LIT("\",\"media\":{\"payload\":\"")) ||
	    br_put(&m, p, (size_t)n) || br_put(&m, BR_LIT("\"}}")) ||
	    twilio_ws_send(c, br_msg, m) == -1) {
		c->c_cnt.dn_frames_dropped++;
		return;
	}
	if (c->c_end_tool)
		call_agent_audio_seen(c);
	if (c->c_cnt.dn_frames_out++ == 0) {
		c->c_cnt.dn_setup_ns = now_mono_ns() - c->c_t_started;
		log_info("first agent audio %llu ms after start",
		    (unsigned long long)(c->c_cnt.dn_setup_ns / 1000000));
		/* From here on, one wake-up per caller frame serves both. */
		if (wk.wk_cf->relay_coalesce > 0 && c->c_el != NULL) {
			if (ws_follow(c->c_tw, c->c_el,
			    (int)wk.wk_cf->relay_coalesce) == 0)
				log_debug("relay: the agent's socket is read on "
				    "the caller's frames (at most %ld ms late)",
				    wk.wk_cf->relay_coalesce);
			else
				log_debug("relay: agent socket not coalesced");
		}
		worker_settle_stack();
	}
}

/* Barge-in: Twilio drops what it buffered; stale agent audio is dropped. */
void
bridge_interruption(struct call *c, long long event_id)
{
	char	msg[160];
	int	n;

	if (event_id > c->c_interrupted)
		c->c_interrupted = event_id;
	if (c->c_tc_out != NULL)
		tc_reset(c->c_tc_out);	/* no tail of the cut-off speech */
	n = snprintf(msg, sizeof(msg), "{\"event\":\"clear\",\"streamSid\":"
	    "\"%s\"}", c->c_stream_sid);
	if (twilio_ws_send(c, msg, (size_t)n) == 0)
		c->c_cnt.dn_clears++;
	log_debug("interruption at agent event %lld: cleared", event_id);
}

int
bridge_mark(struct call *c, const char *name)
{
	char	msg[200];
	int	n;

	n = snprintf(msg, sizeof(msg), "{\"event\":\"mark\",\"streamSid\":"
	    "\"%s\",\"mark\":{\"name\":\"%s\"}}", c->c_stream_sid, name);
	return twilio_ws_send(c, msg, (size_t)n);
}
