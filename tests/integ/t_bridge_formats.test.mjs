// t_bridge_formats: transcoding when the agent does not talk mu-law 8 kHz
// (docs/protocols.md section 2.8, DESIGN.md section 3.2 step 6).  The fake
// ElevenLabs announces pcm_16000 (16-bit signed little-endian mono) in
// conversation_initiation_metadata; naiberd must turn agent PCM16 16 kHz
// into mu-law 8 kHz for Twilio and caller mu-law 8 kHz into PCM16 16 kHz
// for ElevenLabs.  Checked with a 1 kHz sine, decoded on the far side
// with an independent G.711 mu-law codec (tests/peers/fake-eleven.mjs):
//
//   frequency within +-2 % of 1000 Hz (peak of a 0.25 Hz DFT scan),
//   level within +-1.5 dB of the sine sent (-6 dBFS, least-squares fit),
//   SINAD >= 20 dB (what is left after removing the fitted sine: a
//     resampler without a proper anti-alias / anti-imaging filter, a
//     byte-order or codec mistake, or a resampler restarted per chunk
//     fails this; G.711 alone gives about 38 dB),
//   duration kept: every sample of the tone and the silence after it
//     arrives (a resampler may lag by up to 100 ms), nothing invented.
//
// The steady part of each tone is analysed (100 ms cut at both ends, so
// filter delay and start-up do not matter).  A format naiberd cannot
// handle ends the call cleanly with the format named in the log.
import assert from 'node:assert/strict';
import { withTimeout, waitFor } from '../lib/harness.mjs';
import { boundDone } from '../lib/bind.mjs';
import { btest, startBridge, openCall, conversationOf, assertTwilioShapes, assertNoViolations } from '../lib/bridge.mjs';
import { strictBase64, sinePcm16, ulawEncode, ulawDecode, pcm16le, fromPcm16le } from '../peers/fake-eleven.mjs';

// ----------------------------------------------------------- tone analysis

const F0 = 1000;
const AMP = 0.5;			/* of full scale: -6 dBFS */
const FREQ_TOL = 0.02;			/* +-2 % */
const LEVEL_TOL_DB = 1.5;		/* +-1.5 dB */
const MIN_SINAD_DB = 20;

/* Frequency, amplitude and SINAD of the tone in x (samples at rate). */
function analyse(x, rate) {
	const n = x.length;
	let mean = 0;
	for (let i = 0; i < n; i++) mean += x[i];
	mean /= n;
	const power = (f) => {
		const w = 2 * Math.PI * f / rate;
		let re = 0, im = 0;
		for (let i = 0; i < n; i++) {
			const v = x[i] - mean;
			re += v * Math.cos(w * i);
			im -= v * Math.sin(w * i);
		}
		return re * re + im * im;
	};
	let best = -1, freq = 0;
	for (let f = 800; f <= 1200; f += 2) {
		const p = power(f);
		if (p > best) { best = p; freq = f; }
	}
	for (let f = freq - 2; f <= freq + 2; f += 0.25) {
		const p = power(f);
		if (p > best) { best = p; freq = f; }
	}
	// Least-squares fit of A sin + B cos at that frequency.
	const w = 2 * Math.PI * freq / rate;
	let ss = 0, cc = 0, sc = 0, xs = 0, xc = 0;
	for (let i = 0; i < n; i++) {
		const s = Math.sin(w * i), c = Math.cos(w * i), v = x[i] - mean;
		ss += s * s; cc += c * c; sc += s * c; xs += v * s; xc += v * c;
	}
	const det = ss * cc - sc * sc;
	const A = (xs * cc - xc * sc) / det, B = (xc * ss - xs * sc) / det;
	let res = 0;
	for (let i = 0; i < n; i++) {
		const r = x[i] - mean - A * Math.sin(w * i) - B * Math.cos(w * i);
		res += r * r;
	}
	const amp = Math.hypot(A, B);
	const resRms = Math.sqrt(res / n);
	return { freq, amp, sinadDb: 20 * Math.log10((amp / Math.SQRT2) / Math.max(resRms, 1e-9)), n };
}

function assertTone(what, samples, rate, diag) {
	const cut = Math.round(rate * 0.1);
	const seg = samples.subarray(cut, samples.length - cut);
	const r = analyse(seg, rate);
	const levelDb = 20 * Math.log10(r.amp / (AMP * 32767));
	const desc = `${what}: ${r.n} samples at ${rate} Hz: ${r.freq} Hz, level ${levelDb.toFixed(2)} dB, ` +
	    `SINAD ${r.sinadDb.toFixed(1)} dB`;
	assert.ok(Math.abs(r.freq - F0) <= F0 * FREQ_TOL, `${desc}: frequency not within +-2 % of ${F0} Hz`);
	assert.ok(Math.abs(levelDb) <= LEVEL_TOL_DB, `${desc}: level not within +-${LEVEL_TOL_DB} dB`);
	assert.ok(r.sinadDb >= MIN_SINAD_DB, `${desc}: SINAD below ${MIN_SINAD_DB} dB`);
	diag?.(desc);
	return r;
}

/*
 * Agent -> caller: 1 s of sine as PCM16 16 kHz, 250 ms of silence, then
 * 100 ms more silence so that a resampler's delay cannot hold back any of
 * the first 1.25 s; in 1000-byte chunks (31.25 ms: not a multiple of
 * 20 ms, so the resampler's state must carry across chunks).  Twilio must
 * get all 1.25 s as mu-law 8 kHz (10000 bytes), and no more than the
 * 1.35 s sent.
 */
async function agentSineToCaller(ctx, conv, s, eventId) {
	const before = s.mediaBytes().length;
	const pcm = Buffer.concat([pcm16le(sinePcm16(F0, 16000, 1.0, AMP)), Buffer.alloc(16000 * 2 * 0.35)]);
	await conv.sendAudio(pcm, { chunkBytes: 1000, eventId });
	const want = 8000 * 1.25;
	await s.waitMediaBytes(before + want, 10000);
	const got = s.mediaBytes().subarray(before);
	ctx.t.diagnostic(`agent audio: ${got.length} mu-law bytes so far for 10800 samples' worth sent`);
	assert.ok(got.length <= 8000 * 1.35 + 8, `agent audio: ${got.length} mu-law bytes for 1.35 s: nothing invented`);
	const out = ulawDecode(got);
	return assertTone('agent -> Twilio (pcm_16000 -> mu-law 8 kHz)', out.subarray(0, 8000), 8000,
	    (m) => ctx.t.diagnostic(m));
}

/*
 * Caller -> agent: 1 s of sine as mu-law 8 kHz in 50 Twilio frames, 13
 * frames of mu-law silence, then 5 more (100 ms) to flush; ElevenLabs
 * must get the first 63 frames whole as PCM16 16 kHz (40320 bytes) and
 * no more than the 68 frames sent.
 */
async function callerSineToAgent(ctx, conv, s) {
	const before = conv.audioBytes().length;
	const ulaw = ulawEncode(sinePcm16(F0, 8000, 1.0, AMP));
	const frames = [];
	for (let i = 0; i < 50; i++) frames.push(ulaw.subarray(i * 160, i * 160 + 160));
	for (let i = 0; i < 18; i++) frames.push(Buffer.alloc(160, 0xff));
	await s.mediaAll(frames);
	const want = 63 * 160 * 2 * 2;	/* bytes of PCM16 at 16 kHz */
	await conv.waitAudioBytes(before + want, 10000);
	const got = conv.audioBytes().subarray(before);
	ctx.t.diagnostic(`caller audio: ${got.length / 2} PCM16 samples so far for 68 frames (21760 samples' worth) sent`);
	assert.equal(got.length % 2, 0, 'whole PCM16 samples');
	assert.ok(got.length <= 68 * 160 * 2 * 2 + 16, `caller audio: ${got.length} PCM16 bytes for 68 frames: nothing invented`);
	const pcm = fromPcm16le(got);
	return assertTone('Twilio -> agent (mu-law 8 kHz -> pcm_16000)', pcm.subarray(0, 16000), 16000,
	    (m) => ctx.t.diagnostic(m));
}

// ------------------------------------------------------------------- tests

btest('pcm_16000 both ways: agent PCM16 16 kHz -> mu-law 8 kHz, caller mu-law -> PCM16 16 kHz (1 kHz sine)',
    { timeout: 45000 }, async (ctx) => {
	const b = await startBridge(ctx, { el: { formats: { input: 'pcm_16000', output: 'pcm_16000' } } });
	const s = await openCall(b);
	const conv = await conversationOf(b, s, { input: 'pcm_16000', output: 'pcm_16000' });
	await agentSineToCaller(ctx, conv, s, 1);
	await callerSineToAgent(ctx, conv, s);
	assertTwilioShapes(s);
	assertNoViolations(conv);
	await s.stop();
	assert.equal((await conv.waitClosed(5000)).code, 1000);
	const done = await boundDone(b.d, s.callSid, { timeoutMs: 8000, since: s.since });
	assert.equal(done.reason, 'stop');
	assert.equal(done.framesIn, 68);
	assert.equal(done.bad, 0);
});

btest('mixed formats: caller mu-law passes through unchanged, agent pcm_16000 is transcoded', { timeout: 45000 }, async (ctx) => {
	const b = await startBridge(ctx, { el: { formats: { input: 'ulaw_8000', output: 'pcm_16000' } } });
	const s = await openCall(b);
	const conv = await conversationOf(b, s, { input: 'ulaw_8000', output: 'pcm_16000' });
	const frames = Array.from({ length: 30 }, (_, k) => { const f = Buffer.alloc(160); f.writeUInt16BE(k, 0);
		for (let i = 2; i < 160; i++) f[i] = (k * 29 + i * 5) & 0xff; return f; });
	await s.mediaAll(frames);
	await conv.waitAudioBytes(30 * 160);
	assert.ok(conv.audioBytes().equals(Buffer.concat(frames)), 'caller mu-law byte-exact');
	await agentSineToCaller(ctx, conv, s, 1);
	assertTwilioShapes(s);
	assertNoViolations(conv);
	await s.stop();
	assert.equal((await conv.waitClosed(5000)).code, 1000);
});

btest('mixed formats: agent mu-law passes through unchanged, caller audio becomes pcm_16000', { timeout: 45000 }, async (ctx) => {
	const b = await startBridge(ctx, { el: { formats: { input: 'pcm_16000', output: 'ulaw_8000' } } });
	const s = await openCall(b);
	const conv = await conversationOf(b, s, { input: 'pcm_16000', output: 'ulaw_8000' });
	const chunks = Array.from({ length: 30 }, (_, k) => { const f = Buffer.alloc(160, 0); f[0] = 0xa5; f.writeUInt16BE(k + 1, 1);
		for (let i = 3; i < 160; i++) f[i] = (k * 13 + i * 3) & 0xff; return f; });
	await conv.sendAudio(Buffer.concat(chunks), { eventId: 1 });
	await s.waitMedia(30);
	assert.ok(s.mediaBytes().equals(Buffer.concat(chunks)), 'agent mu-law byte-exact');
	await callerSineToAgent(ctx, conv, s);
	assertTwilioShapes(s);
	assertNoViolations(conv);
	await s.stop();
	assert.equal((await conv.waitClosed(5000)).code, 1000);
});

btest('an agent audio format naiberd cannot carry ends the call cleanly, naming the format', { timeout: 40000 }, async (ctx) => {
	const b = await startBridge(ctx, { el: { formats: { input: 'ulaw_8000', output: 'mp3_44100_128' } } });
	const s = await openCall(b);
	const conv = await b.el.nextConversation(10000);
	await waitFor(() => conv.metadataSent, 5000, 'metadata sent');
	const cl = await withTimeout(s.closed, 15000, 'naiberd ending the call (Twilio socket closed)');
	assert.notEqual(cl.code, 1006, `the Twilio socket got a close frame: ${JSON.stringify(cl)}`);
	const done = await boundDone(b.d, s.callSid, { timeoutMs: 8000, since: s.since });
	assert.ok(done.reason.length > 0);
	assert.match(b.d.log.slice(s.since), new RegExp(`worker\\[${s.workerPid}\\][^\\n]*mp3_44100_128`),
	    'the worker log names the unsupported format');
	assert.ok(!s.log.some((x) => x.m.event === 'media' && x.m.media && strictBase64(x.m.media.payload) === null),
	    'nothing malformed sent to Twilio');
	const ec = await conv.waitClosed(5000);
	assert.equal(ec.code, 1000, `ElevenLabs closed normally by naiberd: ${JSON.stringify(ec)}`);
});
