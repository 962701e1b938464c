// t_call_e2e: one complete call through the public surface only, the way
// Twilio and the LLM service see it: POST /call -> Twilio REST create ->
// signed TwiML webhook -> the stream Twilio opens with the TwiML's nonce ->
// person loaded, ElevenLabs conversation up -> audio both ways byte-exact
// -> session keys (DESIGN section 4) -> caller stop -> ElevenLabs closed
// 1000 -> session keys gone, the BullMQ post-call job in Redis, DONE.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
	itest, apiPost, twilioWebhook, callStreamUrl, voiceParams, parseXml, xmlFindAll, mulawFrame, waitFor, withTimeout,
	TEST_PHONE,
} from '../lib/harness.mjs';
import { startStack, DEFAULT_PERSON, AGENT_ID } from '../lib/stack.mjs';

const FRAMES = 50;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$/;
const SESSION_KEYS = ['callSid', 'conversationId', 'userId', 'phone', 'streamSid', 'startedAt',
    'lastMessageAt', 'callType'];

itest('a complete call: dial, TwiML, stream, conversation, audio both ways, session keys, post-call job', { timeout: 40000 }, async () => {
	const st = await startStack({ workers: 2 });
	const { d, redis, tw, el } = st;
	const t0 = Date.now();

	// 1. POST /call: Twilio gets the create.
	const r = await apiPost(d, '/call', {}, { timeoutMs: 15000 });
	assert.equal(r.status, 200, r.body);
	assert.equal(r.json.success, true);
	const callSid = r.json.callSid;
	assert.match(callSid, /^CA[0-9a-f]{32}$/);
	const creates = tw.creates();
	assert.equal(creates.length, 1, 'one create-call request');
	assert.equal(creates[0].answer.status, 201, JSON.stringify(creates[0].answer));
	assert.equal(creates[0].callSid, callSid, 'the callSid answered is the one Twilio created');
	assert.deepEqual(creates[0].form.To, [TEST_PHONE]);
	assert.deepEqual(creates[0].form.Url, ['https://bridge.test/twiml']);

	// 2. Twilio fetches the TwiML (signed).
	const tr = await twilioWebhook(d, '/twiml', voiceParams(callSid));
	assert.equal(tr.status, 200, tr.body);
	assert.match(tr.headers['content-type'] ?? '', /^(text|application)\/xml/);
	const root = parseXml(tr.body);
	assert.equal(root.name, 'Response');
	const streams = xmlFindAll(root, 'Stream');
	assert.equal(streams.length, 1, tr.body);
	assert.equal(xmlFindAll(root, 'Connect').length, 1, 'bidirectional <Connect><Stream>');
	assert.equal(streams[0].attrs.url, callStreamUrl(d.streamUrl, d.authToken, callSid), 'the call\'s own stream URL');
	const params = Object.fromEntries(xmlFindAll(streams[0], 'Parameter').map((p) => [p.attrs.name, p.attrs.value]));
	assert.equal(params.call_type, 'general');
	assert.match(params.nonce ?? '', /^\S{16,}$/, 'a nonce parameter');
	assert.equal(params.agent_id, AGENT_ID);
	assert.equal(params.stream_format, 'mulaw');
	assert.equal(params.stream_sample_rate, '8000');

	// 3. The stream Twilio opens: every <Parameter> as customParameters.
	const call = { callSid, nonce: params.nonce, callType: params.call_type };
	const s = await st.openStream(call, { customParameters: params });
	assert.equal(s.boundType, 'general');
	assert.deepEqual(s.formats, { in: 'ulaw_8000', out: 'ulaw_8000' });
	const conv = s.elConv;
	assert.equal(conv.init.user_id, DEFAULT_PERSON.id, 'the person loaded from PostgreSQL is the ElevenLabs user');
	assert.equal(conv.audioBeforeMetadata, 0, 'no caller audio before the metadata');

	// 4. 50 frames each way, byte-identical.
	const up = Buffer.concat(Array.from({ length: FRAMES }, (_, i) => mulawFrame(i + 1)));
	await s.sendMedia(FRAMES);
	await conv.waitAudioBytes(up.length, 5000);
	assert.equal(conv.audio.length, FRAMES, 'one user_audio_chunk per Twilio media frame');
	assert.ok(conv.audioBytes().equals(up), 'caller audio reached ElevenLabs byte-identical');
	assert.deepEqual(conv.violations, [], 'nothing sent to ElevenLabs broke the protocol');

	const down = randomBytes(FRAMES * 160);
	await conv.sendAudio(down, { chunkBytes: 160 });
	const media = () => s.received.filter((m) => m.event === 'media');
	await waitFor(() => media().length >= FRAMES, 5000, `${FRAMES} media messages to the caller`);
	const got = media();
	assert.equal(got.length, FRAMES);
	for (const m of got) {
		assert.deepEqual(Object.keys(m).sort(), ['event', 'media', 'streamSid']);
		assert.deepEqual(Object.keys(m.media), ['payload']);
		assert.equal(m.streamSid, s.streamSid);
	}
	assert.ok(Buffer.concat(got.map((m) => Buffer.from(m.media.payload, 'base64'))).equals(down),
	    'agent audio reached the caller byte-identical');

	// 5. Session keys while the call runs.
	const cid = s.conversationId;
	const userId = DEFAULT_PERSON.id;
	const sessKey = `session:${cid}`, ragUser = `rag:user:${userId}`, ragPhone = `rag:phone:${TEST_PHONE}`;
	const raw = await redis.call('GET', sessKey);
	assert.ok(raw, `${sessKey} exists`);
	const sess = JSON.parse(raw);
	assert.deepEqual(Object.keys(sess).sort(), [...SESSION_KEYS].sort(), `exactly the session fields: ${raw}`);
	assert.deepEqual(Object.keys(sess), SESSION_KEYS, `session fields in the original's order: ${raw}`);
	assert.equal(sess.callSid, callSid);
	assert.equal(sess.conversationId, cid);
	assert.equal(sess.userId, userId);
	assert.equal(sess.phone, TEST_PHONE);
	assert.equal(sess.streamSid, s.streamSid);
	assert.equal(sess.callType, 'general');
	for (const k of ['startedAt', 'lastMessageAt']) {
		assert.equal(typeof sess[k], 'string', `${k} is a string`);
		assert.match(sess[k], ISO, `${k} is ISO 8601`);
		const t = Date.parse(sess[k]);
		assert.ok(t >= t0 - 2000 && t <= Date.now() + 2000, `${k} ${sess[k]} is during this call`);
	}
	assert.ok(Date.parse(sess.startedAt) <= Date.parse(sess.lastMessageAt), 'startedAt <= lastMessageAt');
	assert.equal(await redis.call('GET', ragUser), cid, ragUser);
	assert.equal(await redis.call('GET', ragPhone), cid, ragPhone);
	for (const k of [sessKey, ragUser, ragPhone]) {
		const ttl = await redis.call('TTL', k);
		assert.ok(ttl > 0 && ttl <= 3600, `TTL of ${k} is ${ttl}, want 0 < TTL <= 3600`);
	}

	// 6. The caller hangs up: ElevenLabs is closed normally.
	const mark = d.logMark();
	await s.sendStop();
	const cl = await withTimeout(conv.closed, 5000, 'ElevenLabs socket closed after the caller stop');
	assert.equal(cl.code, 1000, `ElevenLabs close code (${JSON.stringify(cl)})`);
	assert.equal(cl.by, 'client');

	// 7. Within a few seconds: session keys gone, the post-call job queued.
	await waitFor(async () => (await redis.call('EXISTS', sessKey, ragUser, ragPhone)) === 0, 5000,
	    'the three session keys deleted');
	const jobs = await waitFor(async () => {
		const j = (await st.postCallJobs()).filter((x) => x.data?.conversationId === cid);
		return j.length ? j : null;
	}, 5000, `a post-call job for ${cid}`);
	assert.equal(jobs.length, 1, 'exactly one post-call job for the conversation');
	const job = jobs[0];
	assert.equal(job.name, 'process-post-call');
	assert.deepEqual(Object.keys(job.data).sort(), ['callType', 'conversationId', 'isFirstCall', 'timestamp', 'userId'],
	    `job data fields: ${job.hash.data}`);
	assert.equal(job.data.conversationId, cid);
	assert.equal(job.data.userId, userId);
	assert.equal(typeof job.data.isFirstCall, 'boolean');
	assert.equal(job.data.isFirstCall, DEFAULT_PERSON.isFirstCall);
	assert.equal(job.data.callType, 'general');
	assert.equal(typeof job.data.timestamp, 'number');
	assert.ok(Number.isInteger(job.data.timestamp) && job.data.timestamp >= t0 - 1000 &&
	    job.data.timestamp <= Date.now() + 1000, `job timestamp ${job.data.timestamp} is now, in ms`);
	assert.equal(job.opts?.attempts, 3, `opts: ${job.hash.opts}`);
	assert.deepEqual(job.opts?.backoff, { type: 'exponential', delay: 1000 }, `opts: ${job.hash.opts}`);
	assert.equal(job.opts?.delay, 3000, `opts: ${job.hash.opts}`);
	assert.equal(job.delay, 3000, 'job hash delay field');
	const rc = job.opts?.removeOnComplete, rf = job.opts?.removeOnFail;
	assert.ok(rc === 100 || rc?.count === 100, `removeOnComplete 100: ${job.hash.opts}`);
	assert.ok(rf === 50 || rf?.count === 50, `removeOnFail 50: ${job.hash.opts}`);
	assert.notEqual(await redis.call('ZSCORE', 'bull:post-call-processing:delayed', job.id), null,
	    'the job waits in the delayed set');

	// 8. The supervisor's DONE line for the call.
	const dn = await d.waitLog(new RegExp(`worker (\\d+) call ${callSid} done: reason=(.+?) frames_in=(\\d+) ` +
	    'frames_out=(\\d+) dropped=(\\d+) bad=(\\d+)'), 5000, mark);
	assert.equal(Number(dn[1]), s.workerPid, 'DONE from the worker that ran the call');
	assert.equal(dn[2], 'stop');
	assert.equal(Number(dn[3]), FRAMES, 'frames_in');
	assert.equal(Number(dn[4]), FRAMES, 'frames_out');
	assert.equal(Number(dn[5]), 0, 'dropped');
	assert.equal(Number(dn[6]), 0, 'bad');
	await withTimeout(s.closed, 5000, 'Twilio stream closed');
	assert.equal(el.signedUrlRequests().length, 1, 'one signed URL for the one call');
});
