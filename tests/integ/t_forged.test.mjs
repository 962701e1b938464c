// t_forged: upgrades without a valid X-Twilio-Signature get 403, never 101,
// and consume no worker.  Every stream here belongs to a call we placed
// (POST /call on the full stack, tests/lib/stack.mjs: its nonce in the
// stream's parameters), so the signature is the only defect; the correctly
// signed stream then runs the call.
import assert from 'node:assert/strict';
import { itest, waitFor, raw, twilio, hex, RX, doneLine } from '../lib/harness.mjs';
import { startStack } from '../lib/stack.mjs';

async function expectRefused(d, call, opts, what) {
	const s = d.stream({ callSid: call.callSid, customParameters: { call_type: 'general', nonce: call.nonce }, ...opts });
	const err = await s.opened.then(() => null, (e) => e);
	assert.ok(err, `${what}: upgrade must not succeed`);
	assert.equal(err.status, 403, `${what}: status (error: ${err.message})`);
	assert.notEqual(s.upgradeStatus, 101);
	await s.closed;
}

itest('forged, missing and wrong-URL signatures are refused with 403', { timeout: 30000 }, async () => {
	const st = await startStack({ workers: 2, maxCalls: 4 });
	const { d } = st;
	// The call the forged streams claim (prepared by an idle worker while
	// it rings): placed first, and the pool settled, so the idle PIDs are
	// stable from here on.
	const call = await st.placeCall();
	await waitFor(async () => {
		const m = await d.metrics();
		return m['naiberd_workers{state="idle"}'] === 2 && (m['naiberd_workers{state="exiting"}'] ?? 0) === 0 &&
		    d.children().length === 2;
	}, 5000, '2 idle workers, the preparing one gone');
	const idleBefore = d.children();
	const m0 = await d.metrics();
	const handoffs0 = m0['naiberd_handoffs_total'];
	assert.equal(handoffs0, 0);

	const mark = d.logMark();
	const right = twilio.getExpectedTwilioSignature(d.authToken, d.streamUrl, {});

	// Bytes on the wire: a raw upgrade with a forged signature gets 403.
	const key = Buffer.from(hex(8)).toString('base64');
	const rawUp = (sig) => raw(d.port,
	    'GET /outbound-media-stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n' +
	    'Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
	    `Sec-WebSocket-Key: ${key}\r\n` + (sig === null ? '' : `X-Twilio-Signature: ${sig}\r\n`) + '\r\n',
	    { responses: 1, timeoutMs: 5000 });
	const r1 = await rawUp('AAAAAAAAAAAAAAAAAAAAAAAAAAA=');
	assert.equal(r1.status, 403, `raw forged upgrade: got ${JSON.stringify(r1.text.slice(0, 200))}`);
	assert.ok(!/^HTTP\/1\.1 101/m.test(r1.text), 'no 101 on the wire');
	assert.ok(!/Sec-WebSocket-Accept/i.test(r1.text), 'no Sec-WebSocket-Accept on the wire');

	// Same signature with one character changed.
	const flipped = (right[0] === 'A' ? 'B' : 'A') + right.slice(1);
	await expectRefused(d, call, { signature: flipped }, 'one-character change');
	await expectRefused(d, call, { signature: 'bm90IGEgc2lnbmF0dXJl' }, 'forged signature');
	await expectRefused(d, call, { signature: null }, 'missing signature');
	await expectRefused(d, call, { signature: '' }, 'empty signature');
	// Signed for the local URL the client actually dialled, not STREAM_URL.
	await expectRefused(d, call, { streamUrl: `ws://127.0.0.1:${d.port}/outbound-media-stream` }, 'local ws:// URL');
	await expectRefused(d, call, { streamUrl: 'wss://evil.test/outbound-media-stream' }, 'other host');
	await expectRefused(d, call, { streamUrl: 'wss://bridge.test/outbound-media-stream?x=1' }, 'URL with query');
	// Signed with another account's token.
	await expectRefused(d, call, { token: hex(16) }, 'wrong auth token');

	// Each refusal with a signature present is logged.
	const refusals = d.logMatches(RX.badSig, mark).length;
	assert.ok(refusals >= 7, `"refused: bad X-Twilio-Signature" logged for each forged upgrade (got ${refusals})`);
	assert.ok(!RX.accepted.test(d.log.slice(mark)), 'no worker accepted a forged stream');

	// No worker was consumed.
	assert.deepEqual(d.children(), idleBefore, 'idle worker PIDs unchanged');
	const m1 = await d.metrics();
	assert.equal(m1['naiberd_handoffs_total'], handoffs0, 'handoffs unchanged');
	assert.equal(m1['naiberd_workers{state="idle"}'], 2);
	assert.equal(m1['naiberd_workers{state="busy"}'], 0);

	assert.equal(st.el.requests.length, 0, 'nothing reached ElevenLabs for a forged stream');

	// The correctly signed (and bound) stream is accepted and served.
	const s = await st.openStream(call, { since: mark });
	assert.equal(s.upgradeStatus, 101);
	const acc = await d.waitLog(RX.accepted, 5000, mark);
	assert.ok(idleBefore.includes(Number(acc[1])), `the stream went to one of the idle workers ${idleBefore}`);
	assert.equal(s.workerPid, Number(acc[1]), 'bound on the worker that accepted it');
	assert.equal(d.logMatches(RX.accepted, mark).length, 1, 'one stream accepted in all');
	await s.sendMedia(5);
	await s.elConv.waitAudioBytes(5 * 160);
	await s.sendStop();
	const done = await doneLine(d, s.callSid, 5000, mark);
	assert.equal(done[2], 'stop');
	assert.equal(Number(done[3]), 5);
	const m2 = await d.metrics();
	assert.equal(m2['naiberd_handoffs_total'], handoffs0 + 1);
});
