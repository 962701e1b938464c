// t_bind: a correctly signed stream must also belong to a call we placed.
// On `start` the worker reads call:{callSid} and compares the nonce
// <Parameter> with the stored one; a missing or wrong nonce, or an
// unknown callSid, closes the stream ("stream refused: ...", done
// reason "stream not bound"); the right one binds it and the call runs on
// the full stack (tests/lib/stack.mjs: person, ElevenLabs conversation).
import assert from 'node:assert/strict';
import {
	itest, callContext, waitFor, withTimeout, newCallSid, hex,
	RX, RX_DONE_ANY, doneLine, callInfoLine, twilioWebhook, voiceParams, parseXml, xmlFindAll,
} from '../lib/harness.mjs';
import { startStack } from '../lib/stack.mjs';

/* Open a stream, send connected + start; returns {s, pid}. */
async function openAndStart(d, opts, mark) {
	const s = d.stream(opts);
	await s.opened;
	assert.equal(s.upgradeStatus, 101, 'the signature is valid: upgrade accepted');
	const acc = await d.waitLog(RX.accepted, 5000, mark);
	await s.sendConnected();
	await s.sendStart();
	return { s, pid: Number(acc[1]) };
}

async function expectRefused(d, what, opts) {
	const mark = d.logMark();
	const { s, pid } = await openAndStart(d, opts, mark);
	// A would-be attacker keeps talking; none of it matters.
	await s.sendMedia(3).catch(() => {});
	const closed = await withTimeout(s.closed, 6000, `${what}: naiberd closing the stream`);
	assert.notEqual(closed.code, 1006, `${what}: closed with a WebSocket close frame (got ${JSON.stringify(closed)})`);
	await d.waitLog(new RegExp(`worker\\[${pid}\\][^\\n]*stream refused:`), 5000, mark)
	    .catch((e) => { throw new Error(`${what}: ${e.message}`); });
	const done = await d.waitLog(new RegExp(`worker ${pid} call \\S+ done: reason=(.+?) frames_in=`), 5000, mark);
	assert.equal(done[1], 'stream not bound', `${what}: done reason`);
	const text = d.log.slice(mark);
	assert.ok(!new RegExp(`worker\\[${pid}\\][^\\n]*stream bound`).test(text), `${what}: never bound`);
	assert.ok(!new RegExp(`worker ${pid} call \\S+ stream MZ`).test(text), `${what}: no CALL_INFO for it`);
	assert.ok(!s.received.some((m) => m.event === 'media'), `${what}: no audio sent to the caller`);
	return done;
}

async function expectBound(st, sid, nonce, type, { streamType = 'general', frames = 7 } = {}) {
	const { d } = st;
	const mark = d.logMark();
	const s = await st.openStream({ callSid: sid, nonce }, { since: mark,
	    customParameters: { call_type: streamType, nonce } });
	assert.equal(s.upgradeStatus, 101, 'the signature is valid: upgrade accepted');
	const acc = await d.waitLog(RX.accepted, 5000, mark);
	const pid = Number(acc[1]);
	assert.equal(s.workerPid, pid, 'bound on the worker that accepted the stream');
	const b = await d.waitLog(new RegExp(`worker\\[${pid}\\][^\\n]*stream bound: type=(\\S+)`), 5000, mark);
	assert.equal(b[1], type, 'bound with the type of the call we placed');
	const info = await callInfoLine(d, sid, mark);
	assert.equal(Number(info[1]), pid);
	assert.equal(info[2], s.streamSid);
	assert.equal(info[3], type);
	assert.ok(s.isOpen(), 'the bound stream stays open');
	assert.equal(s.elConv.init.custom_llm_extra_body?.call_type, type, 'the conversation has the call type we placed');
	await s.sendMedia(frames);
	await s.elConv.waitAudioBytes(frames * 160);
	await s.sendStop();
	const done = await doneLine(d, sid, 8000, mark);
	assert.equal(Number(done[1]), pid);
	assert.equal(done[2], 'stop');
	assert.equal(Number(done[3]), frames, 'frames_in counts the media sent once the call was up');
	await withTimeout(s.closed, 5000, 'stream closed after stop');
	return s;
}

itest('stream binding: missing, wrong or foreign nonce and unknown callSid are refused; the right nonce binds', { timeout: 50000 }, async () => {
	const st = await startStack({ workers: 2, maxCalls: 10 });
	const { d, redis } = st;
	// The contexts as they stay once the first message is prepared.
	const prepared = (x) => waitFor(async () => {
		const c = await callContext(redis, x);
		return c?.firstMessage ? c : null;
	}, 5000, `call:${x} with the prepared first message`);
	const sid = (await st.placeCall()).callSid;
	const ctx = await prepared(sid);
	const other = (await st.placeCall()).callSid;
	const otherCtx = await prepared(other);
	assert.notEqual(ctx.nonce, otherCtx.nonce);

	await expectRefused(d, 'missing nonce', { callSid: sid, customParameters: { call_type: 'general' } });
	await expectRefused(d, 'no customParameters', { callSid: sid, customParameters: {} });
	await expectRefused(d, 'empty nonce', { callSid: sid, customParameters: { call_type: 'general', nonce: '' } });
	await expectRefused(d, 'wrong nonce', { callSid: sid, customParameters: { call_type: 'general', nonce: hex(16) } });
	await expectRefused(d, 'nonce one character off', { callSid: sid, customParameters: { call_type: 'general',
	    nonce: ctx.nonce.slice(0, -1) + (ctx.nonce.endsWith('0') ? '1' : '0') } });
	await expectRefused(d, 'nonce prefix', { callSid: sid, customParameters: { call_type: 'general',
	    nonce: ctx.nonce.slice(0, 16) } });
	await expectRefused(d, 'nonce of another call', { callSid: sid, customParameters: { call_type: 'general',
	    nonce: otherCtx.nonce } });
	await expectRefused(d, 'unknown callSid', { callSid: newCallSid(), customParameters: { call_type: 'general',
	    nonce: ctx.nonce } });
	assert.ok(d.alive());

	// Refusals did not burn the call: the real stream still binds.
	assert.deepEqual(await callContext(redis, sid), ctx, 'context untouched by refused streams');
	await expectBound(st, sid, ctx.nonce, 'general');

	// The nonce Twilio gets in the TwiML is the one that binds.
	const r = await twilioWebhook(d, '/twiml', voiceParams(other));
	const p = Object.fromEntries(xmlFindAll(parseXml(r.body), 'Parameter').map((x) => [x.attrs.name, x.attrs.value]));
	assert.equal(p.nonce, otherCtx.nonce);
	await expectBound(st, other, p.nonce, 'general', { frames: 25 });
});

itest('stream binding: the call type comes from the call we placed', { timeout: 30000 }, async () => {
	const st = await startStack({ workers: 2 });
	const { redis } = st;
	const sid = (await st.placeCall({ health: true })).callSid;
	const ctx = await callContext(redis, sid);
	assert.equal(ctx.callType, 'health_check');
	// The stream claims "general"; what we stored wins.
	await expectBound(st, sid, ctx.nonce, 'health_check', { streamType: 'general', frames: 3 });
});

itest('stream binding: a context that expired (deleted) is refused', { timeout: 30000 }, async () => {
	const st = await startStack({ workers: 2 });
	const { d, redis } = st;
	const sid = (await st.placeCall()).callSid;
	const ctx = await callContext(redis, sid);
	await redis.call('DEL', `call:${sid}`);
	await expectRefused(d, 'expired context', { callSid: sid, customParameters: { call_type: 'general', nonce: ctx.nonce } });
	// A done line for each refusal, and nothing stuck: the pool is whole.
	assert.ok(d.logMatches(RX_DONE_ANY).length >= 1);
});
