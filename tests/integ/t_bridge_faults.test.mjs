// t_bridge_faults: the bridge when a peer misbehaves (docs/protocols.md
// sections 2.1, 2.3, 2.4, 2.7; DESIGN.md section 6).  Every fault ends in
// a clean, bounded way or is absorbed: ElevenLabs with a certificate from
// the wrong CA or for the wrong host (on the HTTPS API and on the
// WebSocket separately), a rejected API key, an override the agent does
// not allow, no metadata ever, error closes 1002/1008/1011 (their
// error_event logged), malformed JSON and bad base64 from Twilio and from
// ElevenLabs (dropped, counted as bad=, the call continues), unknown
// event types and RFC 6455 ping frames (ignored / answered, not errors).
import assert from 'node:assert/strict';
import { withTimeout } from '../lib/harness.mjs';
import { boundDone } from '../lib/bind.mjs';
import {
	btest, startBridge, openCall, conversationOf, assertTwilioShapes, assertNoViolations,
	callerFrame, agentChunk, agentIdOf, PKI,
} from '../lib/bridge.mjs';

const mediaIds = (s) => s.mediaIn().map((x) => agentIdOf(Buffer.from(x.m.media.payload, 'base64')));

/*
 * The call ended on its own, cleanly and in bounded time: naiberd closed
 * the Twilio socket with a close frame and the supervisor has a done line.
 */
async function assertEndsCleanly(b, s, what, ms = 15000) {
	const cl = await withTimeout(s.closed, ms, `${what}: naiberd ending the call (closing the Twilio socket)`);
	assert.notEqual(cl.code, 1006, `${what}: the Twilio socket got a close frame, not a reset: ${JSON.stringify(cl)}`);
	const done = await boundDone(b.d, s.callSid, { timeoutMs: 8000, since: s.since });
	assert.ok(b.d.alive(), `${what}: supervisor alive`);
	assertTwilioShapes(s);
	return done;
}

/* The lines the worker of s logged since the stream was opened. */
const workerLines = (b, s) => b.d.log.slice(s.since).split('\n')
    .filter((l) => l.includes(`worker[${s.workerPid}]`));

// ------------------------------------------------------------------- tests

btest('TLS: ElevenLabs API certificate from an unrelated CA: nothing sent to it, call ended cleanly, reason logged',
    { timeout: 40000 }, async (ctx) => {
	const b = await startBridge(ctx, { el: { cert: PKI.otherCert, key: PKI.otherKey } });
	const s = await openCall(b);
	await assertEndsCleanly(b, s, 'wrong CA');
	await b.el.waitFor((el) => el.tlsErrors.length >= 1, 3000, 'the fake saw the client abort the handshake');
	assert.equal(b.el.requests.length, 0, 'no HTTP request (the API key never crossed an untrusted connection)');
	assert.equal(b.el.conversations.length, 0);
	assert.ok(workerLines(b, s).some((l) => /elevenlabs/i.test(l) && /certif|verif|issuer|ssl|tls/i.test(l)),
	    `a worker log line names the TLS failure:\n${workerLines(b, s).join('\n')}`);
});

btest('TLS: WebSocket certificate from an unrelated CA (API trusted): no conversation, call ended cleanly',
    { timeout: 40000 }, async (ctx) => {
	const b = await startBridge(ctx, { el: { wsCert: PKI.otherCert, wsKey: PKI.otherKey } });
	const s = await openCall(b);
	await b.el.waitFor((el) => el.signedUrlRequests().length === 1, 10000, 'the signed URL fetched');
	await assertEndsCleanly(b, s, 'wrong CA on the WebSocket');
	assert.equal(b.el.signedUrlRequests()[0].status, 200);
	await b.el.waitFor((el) => el.tlsErrors.some((e) => e.server === 'ws'), 3000, 'handshake aborted on the WebSocket port');
	assert.equal(b.el.upgrades.length, 0, 'no WebSocket upgrade over the untrusted connection');
	assert.equal(b.el.conversations.length, 0);
});

btest('TLS: WebSocket certificate from the right CA but for another host: no conversation, call ended cleanly',
    { timeout: 40000 }, async (ctx) => {
	const b = await startBridge(ctx, { el: { wsCert: PKI.wrongHostCert, wsKey: PKI.wrongHostKey } });
	const s = await openCall(b);
	await b.el.waitFor((el) => el.signedUrlRequests().length === 1, 10000, 'the signed URL fetched');
	await assertEndsCleanly(b, s, 'wrong host name');
	await b.el.waitFor((el) => el.tlsErrors.some((e) => e.server === 'ws'), 3000,
	    'handshake aborted on the WebSocket port (host name verified)');
	assert.equal(b.el.upgrades.length, 0, 'no WebSocket upgrade to a host the certificate does not name');
	assert.equal(b.el.conversations.length, 0);
});

btest('signed URL refused (401 invalid_api_key): call ended cleanly, status logged', { timeout: 40000 }, async (ctx) => {
	const b = await startBridge(ctx, { el: { apiKey: 'the-key-naiberd-does-not-have' } });
	const s = await openCall(b);
	await assertEndsCleanly(b, s, '401');
	const su = b.el.signedUrlRequests();
	assert.ok(su.length >= 1 && su.every((r) => r.status === 401), 'signed-URL request(s) answered 401');
	assert.ok(su.length <= 3, `no retry storm on 401 (${su.length} requests)`);
	assert.equal(b.el.upgrades.length, 0);
	assert.ok(workerLines(b, s).some((l) => /elevenlabs/i.test(l) && /401/.test(l)),
	    `a worker log line names the 401:\n${workerLines(b, s).join('\n')}`);
});

btest('an override the agent does not allow (override_error, close 1008 before metadata): call ended cleanly, logged',
    { timeout: 40000 }, async (ctx) => {
	const allowed = ['agent.prompt.prompt', 'agent.first_message', 'agent.language'];
	const b = await startBridge(ctx, { el: { allowedOverrides: allowed } });
	const s = await openCall(b);
	const conv = await b.el.waitFor((el) => el.conversations.find((c) => c.rejected), 10000, 'the init rejected');
	assert.equal(conv.rejected.errorType, 'override_error', `rejected for the voice override: ${conv.rejected.message}`);
	assert.match(conv.rejected.message, /tts\.voice_id/);
	await assertEndsCleanly(b, s, 'override_error');
	assert.ok(workerLines(b, s).some((l) => l.includes('override_error')),
	    `the worker logs the error_event's error_type:\n${workerLines(b, s).join('\n')}`);
});

btest('no conversation_initiation_metadata ever: the setup wait is bounded, call ended cleanly', { timeout: 50000 }, async (ctx) => {
	const b = await startBridge(ctx, { el: { metadata: 'manual' } });
	const s = await openCall(b);
	const conv = await b.el.nextConversation(10000);
	await s.mediaAll(Array.from({ length: 5 }, (_, k) => callerFrame(k)));
	await assertEndsCleanly(b, s, 'no metadata', 30000);
	assert.equal(conv.audio.length, 0, 'no caller audio sent before the metadata');
	const cl = await conv.waitClosed(5000);
	assert.equal(cl.code, 1000, `naiberd closed the conversation it gave up on with 1000: ${JSON.stringify(cl)}`);
});

btest('ElevenLabs error closes 1002, 1008, 1011: error_event logged (error_type and message), call ended cleanly',
    { timeout: 60000 }, async (ctx) => {
	const b = await startBridge(ctx, { workers: 2 });
	const cases = [
		{ code: 1002, errorType: 'llm_timeout', message: 'LLM did not answer within 20 seconds' },
		{ code: 1008, errorType: 'missing_dynamic_variable', message: 'Missing required dynamic variable user_mood' },
		{ code: 1011, errorType: 'unknown_websocket_crash', message: 'Unexpected server crash number 4711' },
	];
	for (const c of cases) {
		const s = await openCall(b);
		const conv = await conversationOf(b, s);
		await conv.sendAudio(Buffer.concat([agentChunk(1), agentChunk(2)]), { eventId: 1 });
		await s.waitMedia(2);
		await conv.closeWith(c.code, { errorType: c.errorType, message: c.message });
		const done = await assertEndsCleanly(b, s, `close ${c.code}`);
		assert.ok(!['stop', 'closed'].includes(done.reason), `close ${c.code}: done reason ${done.reason} is not a caller hang-up`);
		const lines = workerLines(b, s);
		assert.ok(lines.some((l) => l.includes(c.errorType) && l.includes(c.message)),
		    `close ${c.code}: one worker line with error_type ${c.errorType} and the message:\n${lines.join('\n')}`);
		assert.ok(lines.some((l) => l.includes(String(c.code))), `close ${c.code}: the close code is logged`);
		assert.equal(mediaIds(s).join(), '1,2', `close ${c.code}: the audio before the error still went out`);
		assertNoViolations(conv);
	}
});

btest('malformed JSON and bad base64 from both sides: dropped, counted (bad=), the call and its audio continue',
    { timeout: 40000 }, async (ctx) => {
	const b = await startBridge(ctx);
	const s = await openCall(b);
	const conv = await conversationOf(b, s);
	const frames = Array.from({ length: 10 }, (_, k) => callerFrame(k));

	await s.mediaAll(frames.slice(0, 5));
	await conv.sendAudio(Buffer.concat([1, 2, 3, 4, 5].map(agentChunk)), { eventId: 1 });
	await conv.waitAudioBytes(5 * 160);
	await s.waitMedia(5);

	// Twilio side: a truncated JSON text, then a media message whose payload is not base64.
	await s.rawSend('{"event":"media","sequenceNumber":"9","streamSid":"' + s.streamSid + '","media":{"payload":"AAAA"');
	await s.send({ event: 'media', sequenceNumber: s.nextSeq(), streamSid: s.streamSid,
	    media: { track: 'inbound', chunk: '6', timestamp: '120', payload: '%%%not*base64!!' } });
	// ElevenLabs side: the same two faults.
	await conv.sendBadJson();
	await conv.sendBadBase64Audio(6);

	await s.mediaAll(frames.slice(5));
	await conv.sendAudio(Buffer.concat([7, 8, 9, 10, 11].map(agentChunk)), { eventId: 7 });
	await conv.waitAudioBytes(10 * 160);
	await s.waitMedia(10);

	assert.ok(conv.audioBytes().equals(Buffer.concat(frames)), 'caller audio: exactly the good frames, in order');
	assert.equal(conv.audio.length, 10, 'nothing forwarded for the bad Twilio messages');
	assert.deepEqual(mediaIds(s), [1, 2, 3, 4, 5, 7, 8, 9, 10, 11], 'agent audio: exactly the good chunks, in order');
	assertTwilioShapes(s);
	assertNoViolations(conv);
	assert.equal(conv.state, 'active', 'ElevenLabs conversation still open');

	await s.stop();
	const done = await boundDone(b.d, s.callSid, { timeoutMs: 8000, since: s.since });
	assert.equal(done.reason, 'stop', 'the bad messages did not end the call');
	assert.ok(done.bad >= 4, `each of the 4 bad messages counted (bad=${done.bad})`);
	assert.equal(done.framesOut, 10);
	assert.equal((await conv.waitClosed(5000)).code, 1000);
});

btest('unknown and ignorable event types, RFC 6455 pings: ignored / answered, never errors', { timeout: 40000 }, async (ctx) => {
	const b = await startBridge(ctx);
	const s = await openCall(b);
	const conv = await conversationOf(b, s);

	await conv.sendAudio(agentChunk(1), { eventId: 1 });
	await conv.sendUnknown();
	await conv.sendUnknown('mcp_connection_status');
	await conv.sendIgnorable();		// includes agent_tool_response for a tool other than end_call
	conv.sendPingFrame(Buffer.from('naiberd-ping-1'));
	await conv.sendAudio(agentChunk(2), { eventId: 2 });
	await s.send({ event: 'a_future_twilio_event', sequenceNumber: s.nextSeq(), streamSid: s.streamSid, future: { x: 1 } });
	await s.send({ event: 'dtmf', sequenceNumber: s.nextSeq(), streamSid: s.streamSid, dtmf: { track: 'inbound_track', digit: '5' } });
	await s.mediaAll([callerFrame(0), callerFrame(1)]);

	await s.waitMedia(2);
	await conv.waitAudioBytes(2 * 160);
	await conv.waitFor((c) => c.pongFrames.some((p) => p.data.toString() === 'naiberd-ping-1'), 5000,
	    'a pong frame with the ping\'s payload (RFC 6455 5.5.3)');
	assert.deepEqual(mediaIds(s), [1, 2], 'agent audio around the unknown events');
	assert.ok(conv.audioBytes().equals(Buffer.concat([callerFrame(0), callerFrame(1)])), 'caller audio after them');
	assert.ok(!s.log.some((x) => x.m.event === 'clear'), 'no clear');
	assert.equal(conv.state, 'active', 'the conversation is still open: a non-end_call tool response does not hang up');
	assert.ok(s.isOpen(), 'the Twilio stream is still open');
	assertTwilioShapes(s);
	assertNoViolations(conv);

	await s.stop();
	const done = await boundDone(b.d, s.callSid, { timeoutMs: 8000, since: s.since });
	assert.equal(done.reason, 'stop');
	assert.equal(done.bad, 0, 'unknown event types are ignored, not counted as bad (section 2.4: never errors)');
});
