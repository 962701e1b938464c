// t_bridge: the audio bridge of one bound call, end to end, against a fake
// ElevenLabs ConvAI server (tests/peers/fake-eleven.mjs, TLS with a test
// CA) and a fake Twilio REST API: the signed URL, the init message, every
// audio byte unchanged and in order both ways (mu-law 8 kHz on both
// sides), pings answered at once with the same ids, interruption ->
// exactly one Twilio clear and stale agent audio dropped, caller audio
// before the metadata dropped (not queued), agent hang-up (close 1000 or
// the end_call tool) -> mark after the last audio, its echo awaited
// (at most 5 s), REST Status=completed, then the Twilio socket closed,
// and caller hang-up (stop, close, TCP loss) -> ElevenLabs closed 1000.
// docs/protocols.md sections 1.3, 1.4, 2; DESIGN.md section 3.2.
import assert from 'node:assert/strict';
import { withTimeout, waitFor, sleep, TEST_PHONE } from '../lib/harness.mjs';
import { boundDone } from '../lib/bind.mjs';
import {
	btest, startBridge, openCall, conversationOf, assertTwilioShapes, assertNoViolations,
	callerFrame, agentChunk, agentIdOf, ACCOUNT_SID, VOICE_ID, USER_ID,
} from '../lib/bridge.mjs';

// ------------------------------------------------------------------- tests

btest('signed URL (documented path, key header) and conversation_initiation_client_data (documented overrides, user id, phone)',
    { timeout: 40000 }, async (ctx) => {
	const b = await startBridge(ctx);
	const { d, el } = b;
	const s = await openCall(b);
	const conv = await conversationOf(b, s);

	// The signed URL: one GET on the documented path, with the key header.
	const su = el.signedUrlRequests();
	assert.equal(su.length, 1, 'one signed-URL request per call');
	assert.equal(su[0].method, 'GET');
	assert.equal(su[0].query.agent_id, b.agentId, 'agent_id query parameter');
	assert.equal(su[0].headers['xi-api-key'], b.apiKey, 'xi-api-key header');
	assert.equal(su[0].status, 200);
	assert.ok(!el.requests.some((r) => r.path.includes('get_signed_url')), 'the deprecated /get_signed_url path is never used');
	assert.equal(conv.token, new URL(su[0].answer.signed_url).searchParams.get('token'),
	    'connected to the signed URL as given');
	assert.equal(conv.tokenOk, true);

	// The init message: documented fields only (the fake closes 1008 otherwise).
	const init = conv.init;
	assert.equal(init.type, 'conversation_initiation_client_data');
	const ov = init.conversation_config_override;
	assert.ok(ov && typeof ov === 'object', 'conversation_config_override present');
	const prompt = ov.agent?.prompt?.prompt;
	assert.equal(typeof prompt, 'string', 'system prompt override');
	const lines = prompt.split('\n');
	assert.equal(lines[0], `User ID: ${USER_ID}`, 'the prompt begins with "User ID: <id of the person>"');
	assert.equal(lines[1], `Phone: ${TEST_PHONE}`, 'second line "Phone: <phone of the call>"');
	assert.equal(typeof ov.agent.first_message, 'string');
	assert.ok(ov.agent.first_message.trim().length > 0, 'a first message');
	assert.equal(ov.tts?.voice_id, VOICE_ID, 'tts.voice_id = ELEVENLABS_VOICE_ID');
	assert.equal(init.user_id, USER_ID, 'user_id = the person\'s id');
	assert.ok(init.custom_llm_extra_body && typeof init.custom_llm_extra_body === 'object',
	    'custom_llm_extra_body object');
	assert.ok(Object.values(init.custom_llm_extra_body).includes(USER_ID),
	    `custom_llm_extra_body carries the user id: ${JSON.stringify(init.custom_llm_extra_body)}`);
	for (const bad of ['auto_start_conversation']) assert.ok(!(bad in (ov.agent ?? {})), `no agent.${bad}`);
	assert.ok(!('llm' in ov) && !('asr' in ov && 'quality' in ov.asr), 'no invented overrides');

	assertNoViolations(conv);
	await s.stop();
	assert.equal((await conv.waitClosed(5000)).code, 1000);
});

btest('full call: 200 frames each way byte-exact and in order, 25 pings answered, caller stop -> ElevenLabs close 1000',
    { timeout: 60000 }, async (ctx) => {
	const b = await startBridge(ctx);
	const { d, el } = b;
	const s = await openCall(b);
	const conv = await conversationOf(b, s);

	// Both directions at once: 200 caller frames, 200 agent chunks (ids
	// 1..200) with 25 pings in between.
	const N = 200;
	const frames = Array.from({ length: N }, (_, k) => callerFrame(k));
	const agent = Array.from({ length: N }, (_, k) => agentChunk(k + 1));
	const pingIds = [];
	const agentSide = (async () => {
		for (let g = 0; g < N / 10; g++) {
			await conv.sendAudio(Buffer.concat(agent.slice(g * 10, g * 10 + 10)), { chunkBytes: 160, eventId: g * 10 + 1 });
			pingIds.push(await conv.sendPing(1000 + pingIds.length));
		}
		for (let i = 0; i < 5; i++) pingIds.push(await conv.sendPing(1000 + pingIds.length, 3000));
	})();
	await Promise.all([agentSide, s.mediaAll(frames)]);

	await conv.waitAudioBytes(N * 160, 10000);
	await s.waitMedia(N, 10000);
	await conv.waitPongs(pingIds.length, 5000);

	// Caller -> ElevenLabs: the same bytes, in order, one chunk per frame.
	assert.equal(conv.audio.length, N, 'one user_audio_chunk per Twilio media message');
	assert.ok(conv.audioBytes().equals(Buffer.concat(frames)), 'caller audio byte-exact and in order');
	for (let k = 0; k < N; k++) assert.ok(conv.audio[k].equals(frames[k]), `caller frame ${k} unchanged`);
	// ElevenLabs -> Twilio: the same bytes, in order, one media per audio event.
	const got = s.mediaIn().map((x) => Buffer.from(x.m.media.payload, 'base64'));
	assert.equal(got.length, N, 'one Twilio media message per audio event');
	for (let k = 0; k < N; k++) assert.ok(got[k].equals(agent[k]), `agent chunk ${k + 1} unchanged, in order (got id ${agentIdOf(got[k])})`);
	assert.ok(!s.log.some((x) => x.m.event === 'clear'), 'no clear without an interruption');
	assertTwilioShapes(s);

	// Every ping answered once, with its own id, in order, at once: not
	// after ping_ms (the last 5 pings say 3000 ms; the answer must not wait
	// for it, section 2.5).
	assert.deepEqual(conv.pongs, pingIds, 'pong event_ids = ping event_ids');
	const lat = conv.pingLog.map((p, i) => conv.pongT[i] - p.t);
	assert.ok(Math.max(...lat) < 1000, `every pong within 1 s of its ping (latencies ${lat.join(' ')} ms)`);
	assert.equal(conv.pingLog[0].pingMs, null, 'the first ping had ping_ms null');
	assertNoViolations(conv);

	// Caller hangs up: ElevenLabs is closed with 1000, the call is done.
	await s.stop();
	const cl = await conv.waitClosed(5000);
	assert.equal(cl.code, 1000, `ElevenLabs closed with 1000 (got ${JSON.stringify(cl)})`);
	assert.equal(cl.by, 'client', 'naiberd closed it');
	const done = await boundDone(d, s.callSid, { timeoutMs: 8000, since: s.since });
	assert.equal(done.reason, 'stop');
	assert.equal(done.framesIn, N);
	assert.equal(done.framesOut, N);
	assert.equal(done.bad, 0);
	await withTimeout(s.closed, 5000, 'Twilio socket closed after stop');
	assert.equal(el.conversations.length, 1, 'one ElevenLabs conversation for one call');
});

btest('caller audio before conversation_initiation_metadata is dropped, not queued', { timeout: 40000 }, async (ctx) => {
	const b = await startBridge(ctx, { el: { metadata: 'manual' } });
	const s = await openCall(b);
	const conv = await b.el.nextConversation(10000);
	// ElevenLabs is connected and has the init, but no metadata yet.
	const early = Array.from({ length: 10 }, (_, k) => Buffer.alloc(160, 0xee - k));
	await s.mediaAll(early);
	// Give naiberd time to read them before the metadata exists (ordering
	// only: nothing below depends on how long this takes).
	await sleep(300);
	assert.equal(conv.audio.length, 0, 'nothing forwarded before the metadata');
	await conv.sendMetadata();
	await b.d.waitLog(new RegExp(`callSid=${s.callSid}[^\\n]*elevenlabs: conversation ${conv.id} formats in=ulaw_8000 out=ulaw_8000`),
	    5000, s.since);
	const frames = Array.from({ length: 50 }, (_, k) => callerFrame(k));
	await s.mediaAll(frames);
	await conv.waitAudioBytes(50 * 160, 8000);
	assert.ok(conv.audioBytes().equals(Buffer.concat(frames)),
	    `exactly the frames sent after the metadata (got ${conv.audio.length} chunks, first byte ${conv.audio[0]?.[0]?.toString(16)})`);
	assertNoViolations(conv);
	await s.stop();
	const done = await boundDone(b.d, s.callSid, { timeoutMs: 8000, since: s.since });
	assert.ok(done.dropped >= 10, `the 10 early frames are counted as dropped (dropped=${done.dropped})`);
	assert.equal((await conv.waitClosed(5000)).code, 1000);
});

btest('interruption: one Twilio clear at once, stale audio (event_id <= N) dropped, newer audio flows',
    { timeout: 40000 }, async (ctx) => {
	const b = await startBridge(ctx);
	const s = await openCall(b);
	const conv = await conversationOf(b, s);

	await conv.sendAudio(Buffer.concat([1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((e) => agentChunk(e))), { eventId: 1 });
	await s.waitMedia(10);
	await conv.sendInterruption(10);
	// Stale: sent after the interruption, ids <= 10.
	await conv.sendAudio(agentChunk(9), { eventId: 9 });
	await conv.sendAudio(agentChunk(10), { eventId: 10 });
	await conv.sendAudio(Buffer.concat([11, 12, 13, 14, 15].map((e) => agentChunk(e))), { eventId: 11 });
	await s.waitMedia(15);
	await waitFor(() => s.log.some((x) => x.m.event === 'clear'), 3000, 'a clear');

	const seq = s.log.map((x) => x.m.event === 'media' ? agentIdOf(Buffer.from(x.m.media.payload, 'base64')) : x.m.event)
	    .filter((x) => x !== 'mark');
	assert.deepEqual(seq, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 'clear', 11, 12, 13, 14, 15],
	    'media 1..10, exactly one clear, then only the newer audio 11..15');

	// A second interruption: a second clear, and the ids after it flow.
	await conv.sendInterruption(15);
	await conv.sendAudio(agentChunk(14), { eventId: 14 });
	await conv.sendAudio(agentChunk(16), { eventId: 16 });
	await s.waitMedia(16);
	const seq2 = s.log.map((x) => x.m.event === 'media' ? agentIdOf(Buffer.from(x.m.media.payload, 'base64')) : x.m.event)
	    .filter((x) => x !== 'mark');
	assert.deepEqual(seq2.slice(16), ['clear', 16], 'second interruption: one clear, id 14 dropped, 16 flows');
	assertTwilioShapes(s);
	assertNoViolations(conv);

	await s.stop();
	const done = await boundDone(b.d, s.callSid, { timeoutMs: 8000, since: s.since });
	assert.equal(done.framesOut, 16, 'frames_out counts only the audio sent to Twilio');
	assert.equal((await conv.waitClosed(5000)).code, 1000);
});

/*
 * Agent hang-up checks shared by the close-1000 and end_call variants:
 * a mark after the last audio, REST Status=completed only after the echo,
 * then the Twilio socket closed by naiberd.
 */
async function assertAgentHangup(b, s, n, { echoed = true } = {}) {
	const { tw, d } = b;
	await s.waitMedia(n);
	const lastMedia = s.log.findLastIndex((x) => x.m.event === 'media');
	const markAt = await waitFor(() => {
		const i = s.log.findIndex((x, j) => j > lastMedia && x.m.event === 'mark');
		return i >= 0 ? i + 1 : 0;
	}, 5000, 'a Twilio mark after the last agent audio') - 1;
	const mark = s.log[markAt];
	assert.equal(s.mediaIn().length, n, 'all agent audio went out before the mark');
	const path = `/2010-04-01/Accounts/${ACCOUNT_SID}/Calls/${s.callSid}.json`;
	const rest = await tw.waitFor(() => tw.requests.find((r) => r.path === path), echoed ? 8000 : 9000,
	    `POST ${path} (end the call by REST)`);
	assert.equal(rest.method, 'POST');
	assert.deepEqual(rest.form.Status, ['completed'], 'Status=completed');
	assert.equal(rest.headers.authorization,
	    `Basic ${Buffer.from(`${ACCOUNT_SID}:${b.authToken}`).toString('base64')}`, 'HTTP Basic auth');
	assert.equal(rest.answer?.status, 200, `the fake Twilio accepted it: ${JSON.stringify(rest.answer)}`);
	// The set-up's HTTP client was let go once the init message went out
	// (worker_settle), before any audio: this REST end came from one made
	// again.
	const init = d.log.indexOf('elevenlabs: init sent');
	const settled = d.log.search(/call set up: its set-up memory given back in \d+ us/);
	const first = d.log.indexOf('first agent audio');
	assert.ok(init >= 0 && settled > init && first > settled,
	    `set-up memory given back after the init message, before the first agent audio (init at ${init}, ` +
	    `given back at ${settled}, first audio at ${first})`);
	if (echoed) {
		const echo = s.echoes.find((e) => e.name === mark.m.mark.name);
		assert.ok(echo, 'the mark was echoed');
		assert.ok(rest.t >= echo.t, `REST end (${rest.t}) only after the mark echo (${echo.t})`);
	} else {
		const waited = rest.t - mark.t;
		assert.ok(waited >= 1000 && waited <= 7500,
		    `without an echo the REST end comes after a bounded wait (<= 5 s + slack), waited ${waited} ms`);
	}
	const cl = await withTimeout(s.closed, 5000, 'naiberd closing the Twilio socket');
	assert.equal(cl.code, 1000, `Twilio socket closed normally: ${JSON.stringify(cl)}`);
	assert.ok(s.closedT >= rest.t, 'the Twilio socket is closed after the REST end');
	assert.equal(tw.requests.filter((r) => r.path === path).length, 1, 'one REST end');
	const done = await boundDone(d, s.callSid, { timeoutMs: 8000, since: s.since });
	assert.ok(!['stop', 'closed'].includes(done.reason), `done reason names the agent hang-up, got ${done.reason}`);
	assert.equal(done.framesOut, n);
	assertTwilioShapes(s);
	return { done, rest, mark };
}

btest('agent hang-up (ElevenLabs closes 1000): mark after the last audio, echo awaited, REST completed, Twilio closed',
    { timeout: 40000 }, async (ctx) => {
	const b = await startBridge(ctx);
	// The echo comes 1.5 s after the mark, as if the goodbye were still
	// playing: the REST end must wait for it.
	const s = await openCall(b, { echoDelayMs: 1500 });
	const conv = await conversationOf(b, s);
	const goodbye = Array.from({ length: 20 }, (_, k) => agentChunk(k + 1));
	await conv.sendAudio(Buffer.concat(goodbye), { eventId: 1 });
	await conv.closeWith(1000);
	await assertAgentHangup(b, s, 20);
	const got = s.mediaIn().map((x) => Buffer.from(x.m.media.payload, 'base64'));
	assert.ok(Buffer.concat(got).equals(Buffer.concat(goodbye)), 'the goodbye went out whole');
	assert.equal(conv.closeInfo.code, 1000);
	assertNoViolations(conv);
});

btest('agent hang-up (end_call tool response): mark, echo, REST completed, Twilio closed, ElevenLabs closed 1000',
    { timeout: 40000 }, async (ctx) => {
	const b = await startBridge(ctx);
	const s = await openCall(b, { echoDelayMs: 800 });
	const conv = await conversationOf(b, s);
	await conv.sendAudio(Buffer.concat(Array.from({ length: 12 }, (_, k) => agentChunk(k + 1))), { eventId: 1 });
	await conv.sendEndCall(13);
	await assertAgentHangup(b, s, 12);
	const cl = await conv.waitClosed(5000);
	assert.equal(cl.code, 1000, `naiberd closed ElevenLabs with 1000: ${JSON.stringify(cl)}`);
	assert.equal(cl.by, 'client');
	assertNoViolations(conv);
});

btest('agent hang-up without a mark echo: the wait is bounded (5 s), then REST completed and Twilio closed',
    { timeout: 40000 }, async (ctx) => {
	const b = await startBridge(ctx);
	const s = await openCall(b, { echoMarks: false });
	const conv = await conversationOf(b, s);
	await conv.sendAudio(Buffer.concat(Array.from({ length: 5 }, (_, k) => agentChunk(k + 1))), { eventId: 1 });
	await conv.closeWith(1000);
	await assertAgentHangup(b, s, 5, { echoed: false });
});

btest('caller hang-up without stop (close frame, then TCP loss): ElevenLabs closed with 1000 each time',
    { timeout: 50000 }, async (ctx) => {
	const b = await startBridge(ctx, { workers: 2 });
	for (const how of ['close', 'terminate']) {
		const s = await openCall(b);
		const conv = await conversationOf(b, s);
		await s.mediaAll(Array.from({ length: 5 }, (_, k) => callerFrame(k)));
		await conv.waitAudioBytes(5 * 160);
		if (how === 'close') await s.close(1000);
		else s.terminate();
		const cl = await conv.waitClosed(5000).catch((e) => { throw new Error(`${how}: ${e.message}`); });
		assert.equal(cl.code, 1000, `${how}: ElevenLabs closed with 1000 (got ${JSON.stringify(cl)})`);
		assert.equal(cl.by, 'client', `${how}: by naiberd`);
		const done = await boundDone(b.d, s.callSid, { timeoutMs: 8000, since: s.since });
		assert.equal(done.reason, 'closed', `${how}: done reason`);
		assert.equal(done.framesIn, 5);
		assertNoViolations(conv);
	}
});

btest('no ELEVENLABS_VOICE_ID: no tts override at all (nothing null or empty)', { timeout: 30000 }, async (ctx) => {
	const b = await startBridge(ctx, { env: { ELEVENLABS_VOICE_ID: null } });
	const s = await openCall(b);
	const conv = await conversationOf(b, s);
	const ov = conv.init.conversation_config_override;
	assert.ok(!('tts' in ov), `no tts object without a configured voice: ${JSON.stringify(ov.tts)}`);
	assertNoViolations(conv);
	await s.stop();
	assert.equal((await conv.waitClosed(5000)).code, 1000);
});
