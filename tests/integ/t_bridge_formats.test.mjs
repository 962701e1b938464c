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
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { itest, startFakeTwilio, withTimeout, waitFor, hex, TEST_PHONE } from '../lib/harness.mjs';
import { startBoundNaiberd, prepareBoundStream, boundDone } from '../lib/bind.mjs';
import { startPostgres } from '../lib/pg.mjs';
import {
	makeTestCA, startFakeEleven, strictBase64, sinePcm16, ulawEncode, ulawDecode, pcm16le, fromPcm16le,
} from '../peers/fake-eleven.mjs';

// ------------------------------------------------------------ bridge glue
// (the same in t_bridge, t_bridge_formats and t_bridge_faults)

const PKI_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-pki-'));
process.on('exit', () => fs.rmSync(PKI_DIR, { recursive: true, force: true }));
const PKI = makeTestCA(PKI_DIR);
const ACCOUNT_SID = 'AC00000000000000000000000000000000';
const VOICE_ID = 'EXAVITQu4vr4xnSDxMaL';
const reEsc = (s) => String(s).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/*
 * One PostgreSQL for the file (tests/lib/pg.mjs: stopped after the last
 * test, or by its reaper if this process dies) holding the person called:
 * no profile, no call (DESIGN section 6).
 */
const USER_ID = 'u_' + hex(8);
let pgStarted = null;
function postgres() {
	pgStarted ??= (async () => {
		const pg = await startPostgres();
		await pg.psql(`INSERT INTO users ("id", "name", "age", "phone", "gender", "interests", "dislikes", ` +
		    `"isFirstCall") VALUES ('${USER_ID}', 'Margaret', 82, '${TEST_PHONE}', 'FEMALE', ` +
		    `ARRAY['gardening', 'the radio'], ARRAY['loud music'], false)`);
		return pg;
	})();
	return pgStarted;
}
after(async () => {
	const pg = await pgStarted?.catch(() => null);
	await pg?.stop();
});

function dumpEleven(el) {
	const convs = el.conversations.map((c) => `conversation ${c.n} id=${c.id} state=${c.state} ` +
	    `init=${c.initRaw?.slice(0, 600)} violations=${JSON.stringify(c.violations)} ` +
	    `audio_chunks=${c.audio.length} pongs=${c.pongs.length} close=${JSON.stringify(c.closeInfo)}`);
	return `\n===== fake-eleven ${el.url} =====\n${el.trace()}\n${convs.join('\n')}\n` +
	    `tls errors: ${JSON.stringify(el.tlsErrors)}\n===== end of fake-eleven =====\n`;
}

/* itest(); the fake ElevenLabs servers are closed and, on failure, traced. */
function btest(name, opts, fn) {
	return itest(name, opts, async (t) => {
		const ctx = { t, fakes: [] };
		try {
			await fn(ctx);
		} catch (e) {
			for (const el of ctx.fakes) process.stderr.write(dumpEleven(el));
			throw e;
		} finally {
			await Promise.all(ctx.fakes.map((el) => el.close()));
		}
	});
}

/*
 * fake ElevenLabs + fake Twilio REST + redis-server + PostgreSQL (the
 * file's) + naiberd, wired.
 * o.el: options of startFakeEleven (cert/key default to the good ones);
 * o.env: extra naiberd environment (null deletes).
 */
async function startBridge(ctx, o = {}) {
	const apiKey = 'xi-' + hex(12);
	const agentId = 'agent_' + hex(6);
	const el = await startFakeEleven({ cert: PKI.cert, key: PKI.key, apiKey, agentId, ...(o.el ?? {}) });
	ctx.fakes.push(el);
	ctx.t.after(() => el.close());
	const pg = await postgres();
	const authToken = hex(16);
	const tw = await startFakeTwilio({ accountSid: ACCOUNT_SID, authToken });
	const d = await startBoundNaiberd({
		workers: o.workers ?? 1, maxCalls: 10,
		env: {
			ELEVENLABS_BASE_URL: el.url, ELEVENLABS_API_KEY: apiKey, ELEVENLABS_AGENT_ID: agentId,
			ELEVENLABS_VOICE_ID: VOICE_ID, TLS_CA_FILE: PKI.caCert,
			TWILIO_API_BASE: tw.url, TWILIO_ACCOUNT_SID: ACCOUNT_SID, TWILIO_AUTH_TOKEN: authToken,
			PHONE_NUMBER: TEST_PHONE, DATABASE_URL: pg.url, ...(o.env ?? {}),
		},
	});
	return { d, el, tw, apiKey, agentId, authToken };
}

/*
 * A bound Twilio stream for a call the fake Twilio knows (so REST
 * Status=completed finds it).  Records every message from naiberd with
 * its arrival time in s.log, echoes marks like Twilio (s.echoMarks,
 * default true, after s.echoDelayMs as if audio were still playing;
 * s.echoes records {t, name} of each echo, t taken before sending), and
 * sends its own numbered media/stop/mark messages.
 */
async function openCall(b, o = {}) {
	const { echoMarks = true, echoDelayMs = 0, ...rest } = o;
	const s = await prepareBoundStream(b.d, rest);
	b.tw.calls.set(s.callSid, {
		resource: { sid: s.callSid, account_sid: ACCOUNT_SID, status: 'in-progress' },
		form: {}, updates: [],
	});
	s.log = [];
	s.echoMarks = echoMarks;
	s.echoDelayMs = echoDelayMs;
	s.echoes = [];
	s.closedT = null;
	s.closed.then(() => { s.closedT = Date.now(); });
	let seq = 1, chunk = 0;
	const next = () => String(++seq);
	s.echo = (name) => {
		s.echoes.push({ t: Date.now(), name });
		return s.send({ event: 'mark', sequenceNumber: next(), streamSid: s.streamSid, mark: { name } });
	};
	s.ws.on('message', (data, isBinary) => {
		const t = Date.now();
		let m;
		if (isBinary) m = { binary: true };
		else try { m = JSON.parse(data.toString()); } catch { m = { notJson: data.toString() }; }
		s.log.push({ t, m });
		if (m.event === 'mark' && s.echoMarks && typeof m.mark?.name === 'string') {
			const name = m.mark.name;
			if (s.echoDelayMs > 0) setTimeout(() => { if (s.isOpen()) s.echo(name).catch(() => {}); }, s.echoDelayMs);
			else s.echo(name).catch(() => {});
		}
	});
	s.media = (buf) => {
		chunk++;
		return s.send({ event: 'media', sequenceNumber: next(), streamSid: s.streamSid,
		    media: { track: 'inbound', chunk: String(chunk), timestamp: String(chunk * 20),
		    payload: buf.toString('base64') } });
	};
	s.mediaAll = async (bufs) => { for (const x of bufs) await s.media(x); };
	s.stop = () => s.send({ event: 'stop', sequenceNumber: next(), streamSid: s.streamSid,
	    stop: { accountSid: s.accountSid, callSid: s.callSid } });
	s.rawSend = (text) => s.send(text);
	s.nextSeq = next;
	s.mediaIn = () => s.log.filter((x) => x.m.event === 'media');
	s.mediaBytes = () => Buffer.concat(s.mediaIn().map((x) => Buffer.from(x.m.media.payload, 'base64')));
	s.waitMedia = (n, ms = 10000) => waitFor(() => s.mediaIn().length >= n, ms,
	    `${n} media messages at the Twilio side (have ${s.mediaIn().length})`, 10);
	s.waitMediaBytes = (n, ms = 10000) => waitFor(() => s.mediaBytes().length >= n, ms,
	    `${n} bytes of audio at the Twilio side (have ${s.mediaBytes().length})`, 20);
	s.since = b.d.logMark();
	await s.bind();
	return s;
}

/* Every message naiberd sent to Twilio has exactly the documented fields (section 1.3). */
function assertTwilioShapes(s) {
	const keys = (o) => Object.keys(o ?? {}).sort().join(',');
	for (const [i, { m }] of s.log.entries()) {
		const where = `message ${i} to Twilio ${JSON.stringify(m).slice(0, 200)}`;
		assert.ok(!m.binary && m.notJson === undefined, `${where}: a JSON text frame`);
		assert.equal(m.streamSid, s.streamSid, `${where}: streamSid`);
		switch (m.event) {
		case 'media':
			assert.equal(keys(m), 'event,media,streamSid', `${where}: fields`);
			assert.equal(keys(m.media), 'payload', `${where}: media fields (no track, chunk, timestamp)`);
			assert.ok(strictBase64(m.media.payload)?.length > 0, `${where}: payload is non-empty canonical base64`);
			break;
		case 'mark':
			assert.equal(keys(m), 'event,mark,streamSid', `${where}: fields`);
			assert.equal(keys(m.mark), 'name', `${where}: mark fields`);
			assert.ok(typeof m.mark.name === 'string' && m.mark.name.length > 0, `${where}: mark name`);
			break;
		case 'clear':
			assert.equal(keys(m), 'event,streamSid', `${where}: fields`);
			break;
		default:
			assert.fail(`${where}: not one of media, mark, clear`);
		}
	}
}

/* The conversation of this call, once naiberd logged its metadata line. */
async function conversationOf(b, s, { input = 'ulaw_8000', output = 'ulaw_8000', timeoutMs = 10000 } = {}) {
	const conv = await b.el.nextConversation(timeoutMs);
	await b.d.waitLog(new RegExp(`callSid=${s.callSid}[^\\n]*elevenlabs: conversation ${reEsc(conv.id)} ` +
	    `formats in=${input} out=${output}`), timeoutMs, s.since);
	return conv;
}

function assertNoViolations(conv) {
	assert.deepEqual(conv.violations, [], 'every client message followed docs/protocols.md section 2');
	assert.equal(conv.audioBeforeMetadata, 0, 'no user_audio_chunk before conversation_initiation_metadata');
}

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
