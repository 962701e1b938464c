// t_coalesce: relay_coalesce (issue 13 item 3).  With it on, once the
// agent's first audio is out, the worker takes the ElevenLabs socket out of
// epoll and reads it right after each read of the Twilio socket (the
// caller's frames pace it), and from a timer at most relay_coalesce ms after
// its last read when the caller is quiet.  Asserted here: every byte still
// flows both ways in order with an interruption's single clear; the agent's
// audio waits for the caller's next frame (so it cannot be on its own
// wake-up); with the caller quiet the timer still delivers audio and the
// clear; and one wake-up of the worker serves a frame each way
// (voluntary context switches of the worker's threads, /proc).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { sleep, waitFor } from '../lib/harness.mjs';
import { boundDone } from '../lib/bind.mjs';
import {
	btest, startBridge, openCall, conversationOf, assertTwilioShapes, assertNoViolations,
	callerFrame, agentChunk, agentIdOf,
} from '../lib/bridge.mjs';

/* Voluntary context switches of every thread of pid (each one a wake-up after blocking). */
function wakeups(pid) {
	let n = 0;
	for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
		const st = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
		n += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(st)[1]);
	}
	return n;
}

const ids = (s) => s.log.map((x) => x.m.event === 'media' ? agentIdOf(Buffer.from(x.m.media.payload, 'base64')) : x.m.event)
    .filter((x) => x !== 'mark');

/* Start a call and get the agent's first audio out: coalescing starts there. */
async function coalescedCall(ctx, ms) {
	const b = await startBridge(ctx, { env: { NAIBER_RELAY_COALESCE: String(ms) } });
	const s = await openCall(b);
	const conv = await conversationOf(b, s);
	await conv.sendAudio(agentChunk(1), { eventId: 1 });
	await s.waitMedia(1);
	await b.d.waitLog(new RegExp(`callSid=${s.callSid}[^\\n]*relay: the agent's socket is read on the caller's frames \\(at most ${ms} ms late\\)`),
	    5000, s.since);
	return { b, s, conv };
}

btest('relay_coalesce 30: 100 paced frames each way byte-exact, one clear, about one worker wake-up per caller frame',
    { timeout: 60000 }, async (ctx) => {
	const { b, s, conv } = await coalescedCall(ctx, 30);
	const N = 100;
	const frames = Array.from({ length: N }, (_, k) => callerFrame(k));
	const w0 = wakeups(s.workerPid);
	// The bench's shape: a caller frame every 20 ms, the agent's 10 ms later.
	// Agent ids 2..101; an interruption after id 60 makes 61..70 stale.
	for (let k = 0; k < N; k++) {
		await s.media(frames[k]);
		await sleep(10);
		const id = k + 2;
		if (id === 61) await conv.sendInterruption(60);
		if (id > 60 && id <= 70) await conv.sendAudio(agentChunk(id - 10), { eventId: id - 10 });
		else await conv.sendAudio(agentChunk(id), { eventId: id });
		await sleep(10);
	}
	await conv.waitAudioBytes(N * 160, 10000);
	await waitFor(() => ids(s).includes(N + 1), 5000, `agent chunk ${N + 1} at the Twilio side`);
	const woke = wakeups(s.workerPid) - w0;

	assert.ok(conv.audioBytes().equals(Buffer.concat(frames)), 'caller audio byte-exact and in order');
	const want = [1, ...Array.from({ length: 59 }, (_, k) => k + 2), 'clear', ...Array.from({ length: 31 }, (_, k) => k + 71)];
	assert.deepEqual(ids(s), want, 'agent audio 1..60, one clear, the stale 51..60 resent after it dropped, then 71..101');
	for (const x of s.mediaIn()) {
		const id = agentIdOf(Buffer.from(x.m.media.payload, 'base64'));
		assert.ok(Buffer.from(x.m.media.payload, 'base64').equals(agentChunk(id)), `agent chunk ${id} unchanged`);
	}
	// Without coalescing each of the 2 x 100 messages (10 ms apart) wakes
	// the worker; with it the caller's 100 frames do, plus a few timers.
	assert.ok(woke <= N * 1.4, `${woke} worker wake-ups for ${N} frames each way (coalesced: about ${N})`);
	assertTwilioShapes(s);
	assertNoViolations(conv);

	await s.stop();
	const done = await boundDone(b.d, s.callSid, { timeoutMs: 8000, since: s.since });
	assert.equal(done.reason, 'stop');
	assert.equal(done.framesIn, N);
	assert.equal(done.framesOut, N + 1 - 10);
	assert.equal((await conv.waitClosed(5000)).code, 1000);
});

btest('relay_coalesce 1000: the agent\'s audio waits for the caller\'s next frame, not for its own wake-up',
    { timeout: 40000 }, async (ctx) => {
	const { b, s, conv } = await coalescedCall(ctx, 1000);
	for (let round = 2; round <= 4; round++) {
		await s.media(callerFrame(round));	// a read of the Twilio socket: re-arms the 1 s timer
		await conv.waitAudioBytes((2 * round - 3) * 160, 5000);	// 1, 3, 5 caller frames so far
		await conv.sendAudio(agentChunk(round), { eventId: round });
		// Well inside the timer: the chunk is in the worker's socket, unread.
		await sleep(250);
		assert.equal(s.mediaIn().length, round - 1, `round ${round}: agent chunk ${round} not relayed before a caller frame`);
		const t = Date.now();
		await s.media(callerFrame(100 + round));
		await s.waitMedia(round, 5000);
		// It came with that frame's wake-up, long before the 1 s timer.
		assert.ok(Date.now() - t < 700, `round ${round}: agent chunk relayed ${Date.now() - t} ms after the caller frame`);
	}
	assert.deepEqual(ids(s), [1, 2, 3, 4]);
	await s.stop();
	const done = await boundDone(b.d, s.callSid, { timeoutMs: 8000, since: s.since });
	assert.equal(done.framesOut, 4);
});

btest('relay_coalesce 100, caller quiet: the timer still relays agent audio and an interruption\'s clear',
    { timeout: 40000 }, async (ctx) => {
	const { b, s, conv } = await coalescedCall(ctx, 100);
	for (let id = 2; id <= 6; id++) {
		await conv.sendAudio(agentChunk(id), { eventId: id });
		await sleep(30);
	}
	await s.waitMedia(6, 5000);
	await conv.sendInterruption(6);
	await conv.sendAudio(agentChunk(6), { eventId: 6 });	// stale
	await conv.sendAudio(agentChunk(7), { eventId: 7 });
	await s.waitMedia(7, 5000);
	assert.deepEqual(ids(s), [1, 2, 3, 4, 5, 6, 'clear', 7], 'all audio, one clear, stale 6 dropped');
	// The ElevenLabs socket is still served: pings answered, close seen.
	const pid = await conv.sendPing(500);
	await conv.waitPongs(1, 5000);
	assert.deepEqual(conv.pongs, [pid]);
	assertTwilioShapes(s);
	await s.stop();
	const done = await boundDone(b.d, s.callSid, { timeoutMs: 8000, since: s.since });
	assert.equal(done.reason, 'stop');
	assert.equal((await conv.waitClosed(5000)).code, 1000);
});
