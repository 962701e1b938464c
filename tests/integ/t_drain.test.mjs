// t_drain: SIGTERM stops new streams, lets live ones finish, then exits 0;
// --drain-timeout ends calls that do not finish (post-call job still
// enqueued).  Live calls run on the full stack (tests/lib/stack.mjs):
// placed by POST /call, bound, ElevenLabs conversation up.
import assert from 'node:assert/strict';
import { itest, waitFor, withTimeout, pidAlive, sleep, callInfoLine, doneLine } from '../lib/harness.mjs';
import { startStack } from '../lib/stack.mjs';

/* A new upgrade during drain (for a call we placed): connection refused or 503, never 101. */
async function expectNoNewStream(d, call) {
	const s = d.stream({ callSid: call.callSid, customParameters: { call_type: 'general', nonce: call.nonce } });
	const err = await s.opened.then(() => null, (e) => e);
	assert.ok(err, 'a new stream must not be accepted while draining');
	assert.ok(err.status === 503 || err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET',
	    `new stream while draining: want 503 or connection refused, got ${err.status ?? err.code ?? err.message}`);
	await s.closed;
}

itest('SIGTERM drains: live call finishes, new ones refused, exit 0', { timeout: 30000 }, async () => {
	const st = await startStack({ workers: 2, maxCalls: 4, drainTimeout: 30 });
	const { d } = st;
	await waitFor(() => d.children().length === 2, 5000, '2 idle workers');
	const mark = d.logMark();

	const s = await st.openStream(await st.placeCall());
	// Placed before the drain (POST /call is refused while draining); its
	// stream comes only once the drain has begun.
	const late = await st.placeCall();
	await s.sendMedia(10);
	const ci = await callInfoLine(d, s.callSid, mark);
	const wpid = Number(ci[1]);

	d.kill('SIGTERM');
	await d.waitLog('draining', 5000, mark);
	await expectNoNewStream(d, late);

	// The live call keeps working for another second of audio.
	assert.ok(s.isOpen(), 'live stream still open after SIGTERM');
	await s.sendMediaPaced(50, 20);
	assert.ok(s.isOpen(), 'live stream still open after a second of draining');
	assert.ok(d.alive(), 'supervisor waits for the live call');
	await expectNoNewStream(d, late);

	await s.sendStop();
	const dn = await doneLine(d, s.callSid, 5000, mark);
	assert.equal(Number(dn[1]), wpid);
	assert.equal(dn[2], 'stop');
	assert.equal(Number(dn[3]), 60);
	await s.elConv.waitAudioBytes(60 * 160);
	assert.equal((await s.elConv.waitClosed()).code, 1000, 'ElevenLabs closed normally');

	const ex = await withTimeout(d.exited, 10000, 'supervisor exit after the last call');
	assert.deepEqual(ex, { code: 0, signal: null }, 'supervisor exit status');
	await waitFor(() => !pidAlive(wpid), 5000, `worker ${wpid} gone`);
	for (const w of d.workerPids) assert.ok(!pidAlive(w), `worker ${w} left behind`);
});

itest('drain timeout ends a call that never stops, exit 0', { timeout: 30000 }, async () => {
	const st = await startStack({ workers: 1, maxCalls: 2, drainTimeout: 1 });
	const { d } = st;
	await waitFor(() => d.children().length === 1, 5000, '1 idle worker');
	const mark = d.logMark();

	// Twilio echoes the goodbye mark (nothing left to play).
	const s = await st.openStream(await st.placeCall(), { echoMarks: true });
	const ci = await callInfoLine(d, s.callSid, mark);
	const wpid = Number(ci[1]);

	// Audio keeps flowing until naiberd hangs up.
	let sending = true;
	const pump = (async () => {
		while (sending && s.isOpen()) {
			await s.sendMedia(1).catch(() => {});
			await sleep(20);
		}
	})();

	d.kill('SIGTERM');
	await d.waitLog('draining', 5000, mark);
	const ex = await withTimeout(d.exited, 5000, 'supervisor exit within a few seconds of the drain timeout');
	sending = false;
	await pump;
	assert.deepEqual(ex, { code: 0, signal: null }, 'supervisor exit status');

	// The call was ended by naiberd, not killed: a WebSocket close frame
	// reached Twilio and the worker reported DONE.
	const cl = await withTimeout(s.closed, 5000, 'stream closed by naiberd');
	assert.notEqual(cl.code, 1006, `stream closed without a close frame (code ${cl.code})`);
	const dn = await doneLine(d, s.callSid, 1000, mark);
	assert.equal(Number(dn[1]), wpid);
	assert.ok(Number(dn[3]) > 0, 'audio flowed until the end');
	assert.ok(!/killed by signal/.test(d.log.slice(mark)), 'no worker killed by a signal');
	// Ended cleanly: ElevenLabs closed normally, the post-call job enqueued.
	assert.equal((await s.elConv.waitClosed()).code, 1000, 'ElevenLabs closed normally');
	const jobs = (await st.postCallJobs()).filter((j) => j.data?.conversationId === s.conversationId);
	assert.equal(jobs.length, 1, 'the post-call job of the call ended by the drain');
	await waitFor(() => !pidAlive(wpid), 5000, `worker ${wpid} gone`);
	for (const w of d.workerPids) assert.ok(!pidAlive(w), `worker ${w} left behind`);
});
