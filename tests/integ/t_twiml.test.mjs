// t_twiml: the Twilio webhooks.  POST /twiml answers the <Connect><Stream>
// document built from call:{CallSid} (XML-escaped), or an apology for an
// unknown call; POST /status-callback forgets a finished call.  Both
// check X-Twilio-Signature over TWILIO_URL + route with the form
// parameters, accepting what twilio-node's validateRequest accepts
// (port variants) and nothing it refuses.
import assert from 'node:assert/strict';
import {
	itest, startCallStack, placeCall, callContext, twilioWebhook, voiceParams, statusParams,
	parseXml, xmlFindAll, twilio, hex, newCallSid, metricSum,
} from '../lib/harness.mjs';

/* Parse a TwiML answer; checks status and content type. */
function twimlOf(r) {
	assert.equal(r.status, 200, `TwiML status ${r.status}: ${r.body}`);
	assert.match(r.headers['content-type'] ?? '', /^(text|application)\/xml\b/, 'XML content type');
	assert.match(r.body, /^<\?xml /, 'starts with the XML declaration');
	const root = parseXml(r.body);
	assert.equal(root.name, 'Response');
	return root;
}

/* The <Connect><Stream> document, compared field by field with the context. */
function assertStreamTwiml(root, { streamUrl, ctx, agentId }) {
	assert.deepEqual(root.children.map((c) => c.name), ['Connect'], 'Response holds one Connect');
	const connect = root.children[0];
	assert.deepEqual(connect.children.map((c) => c.name), ['Stream'], 'Connect holds one Stream');
	const stream = connect.children[0];
	assert.deepEqual(Object.keys(stream.attrs), ['url'], 'Stream has a url, nothing else');
	// The call's own URL: STREAM_URL/CallSid.MAC (the MAC is checked in t_call_e2e).
	assert.match(stream.attrs.url, new RegExp(`^${streamUrl.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}` +
	    '/CA[0-9a-f]{32}\\.[A-Za-z0-9_-]{22}$'), 'Stream url = STREAM_URL/token');
	assert.equal(xmlFindAll(root, 'Stream').length, 1, 'exactly one Stream');
	assert.equal(xmlFindAll(root, 'Hangup').length, 0, 'no Hangup');
	assert.equal(xmlFindAll(root, 'Say').length, 0, 'no Say');
	assert.ok(stream.children.every((c) => c.name === 'Parameter'), 'Stream holds Parameters only');
	const params = {};
	for (const p of stream.children) {
		assert.deepEqual(Object.keys(p.attrs).sort(), ['name', 'value'], 'Parameter has name and value');
		assert.ok(!(p.attrs.name in params), `Parameter ${p.attrs.name} once`);
		params[p.attrs.name] = p.attrs.value;
		assert.ok((p.attrs.name + p.attrs.value).length < 500, 'name+value under 500 characters');
	}
	assert.deepEqual(params, {
		call_type: ctx.callType, nonce: ctx.nonce, agent_id: agentId,
		stream_format: 'mulaw', stream_sample_rate: '8000',
	});
	assert.equal(stream.children[0].attrs.name, 'call_type', 'call_type first');
}

function assertApology(root) {
	assert.equal(xmlFindAll(root, 'Stream').length, 0, 'no Stream for an unknown call');
	assert.equal(xmlFindAll(root, 'Connect').length, 0, 'no Connect');
	const say = xmlFindAll(root, 'Say');
	assert.equal(say.length, 1, 'one Say');
	assert.ok(say[0].text.trim().length > 5, `an apology is spoken: ${JSON.stringify(say[0].text)}`);
	assert.equal(xmlFindAll(root, 'Hangup').length, 1, 'then Hangup');
	const names = root.children.map((c) => c.name);
	assert.ok(names.indexOf('Say') < names.indexOf('Hangup'), 'Say before Hangup');
}

itest('POST /twiml answers <Connect><Stream> from call:{CallSid}; unknown calls get an apology', { timeout: 30000 }, async () => {
	const { d, redis } = await startCallStack({ workers: 1 });
	for (const p of ['/call', '/call/health-check']) {
		const sid = await placeCall(d, { path: p });
		const ctx = await callContext(redis, sid);
		const r = await twilioWebhook(d, '/twiml', voiceParams(sid));
		assertStreamTwiml(twimlOf(r), { streamUrl: d.env.STREAM_URL, ctx, agentId: d.env.ELEVENLABS_AGENT_ID });
		assert.equal(ctx.callType, p === '/call' ? 'general' : 'health_check');
	}

	// Unknown call (well-formed sid nobody placed): apology + Hangup.
	assertApology(twimlOf(await twilioWebhook(d, '/twiml', voiceParams(newCallSid()))));
	// Malformed CallSid, no CallSid at all.
	assertApology(twimlOf(await twilioWebhook(d, '/twiml', voiceParams('CA123'))));
	const noSid = voiceParams('x');
	delete noSid.CallSid;
	assertApology(twimlOf(await twilioWebhook(d, '/twiml', noSid)));

	// A finished call (context deleted by its status callback): apology.
	const sid = await placeCall(d);
	assert.equal((await twilioWebhook(d, '/status-callback', statusParams(sid, 'completed', 3))).status, 204);
	assertApology(twimlOf(await twilioWebhook(d, '/twiml', voiceParams(sid))));

	// A context that lost its nonce is not streamed.
	const sid2 = await placeCall(d);
	const ctx2 = await callContext(redis, sid2);
	delete ctx2.nonce;
	await redis.call('SET', `call:${sid2}`, JSON.stringify(ctx2), 'EX', '300');
	assertApology(twimlOf(await twilioWebhook(d, '/twiml', voiceParams(sid2))));
	assert.ok(d.alive());
});

itest('webhooks: bad signatures are 403; port variants follow twilio-node', { timeout: 30000 }, async () => {
	const { d, redis } = await startCallStack({ workers: 1 });
	const sid = await placeCall(d);
	const ctx = await callContext(redis, sid);
	const params = voiceParams(sid);
	const good = twilio.getExpectedTwilioSignature(d.authToken, `${d.env.TWILIO_URL}/twiml`, params);

	const refused = async (what, route, p, o) => {
		const r = await twilioWebhook(d, route, p, o);
		assert.equal(r.status, 403, `${route} ${what}: got ${r.status} ${r.body}`);
		assert.ok(!/<Stream/.test(r.body), `${what}: no Stream document`);
	};
	for (const route of ['/twiml', '/status-callback']) {
		const p = route === '/twiml' ? params : statusParams(sid, 'completed', 3);
		const sig = twilio.getExpectedTwilioSignature(d.authToken, `${d.env.TWILIO_URL}${route}`, p);
		await refused('missing signature', route, p, { signature: null });
		await refused('empty signature', route, p, { signature: '' });
		await refused('one character changed', route, p, { signature: (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1) });
		await refused('garbage', route, p, { signature: 'not-a-signature!' });
		await refused('other token', route, p, { token: hex(16) });
		await refused('tampered parameter', route, p, { sendParams: { ...p, CallSid: newCallSid() } });
		await refused('added parameter', route, p, { sendParams: { ...p, Extra: '1' } });
		const { To: _drop, ...fewer } = p;
		await refused('removed parameter', route, p, { sendParams: fewer });
		await refused('signed for the local URL', route, p, { url: `http://127.0.0.1:${d.port}${route}` });
		await refused('signed for the other route', route, p,
		    { url: `${d.env.TWILIO_URL}${route === '/twiml' ? '/status-callback' : '/twiml'}` });
	}
	assert.ok(d.logMatches(/POST \/twiml refused: bad X-Twilio-Signature/).length >= 1, 'refusals logged');
	// The refused status callbacks did not delete anything.
	assert.deepEqual(await callContext(redis, sid), ctx, 'context untouched by refused callbacks');

	// The right signature works (also with a header name in another case).
	assertStreamTwiml(twimlOf(await twilioWebhook(d, '/twiml', params, { signature: null,
	    headers: { 'x-twilio-signature': good } })),
	    { streamUrl: d.env.STREAM_URL, ctx, agentId: d.env.ELEVENLABS_AGENT_ID });

	// Variants of the signed URL: naiberd agrees with twilio-node's
	// validateRequest(token, sig, TWILIO_URL + route, params), widened
	// only by the exact URL.
	const base = d.env.TWILIO_URL;	// https://bridge.test
	const variants = [
		'https://bridge.test:443', 'https://bridge.test:80', 'https://bridge.test:8443',
		'http://bridge.test', 'http://bridge.test:443', 'https://bridge.test.', 'https://evil.test',
		'https://evil.test:443',
	];
	for (const v of variants) {
		for (const route of ['/twiml', '/status-callback']) {
			const p = route === '/twiml' ? params : statusParams(sid, 'ringing', 1);
			const url = `${v}${route}`;
			const sig = twilio.getExpectedTwilioSignature(d.authToken, url, p);
			const want = twilio.validateRequest(d.authToken, sig, `${base}${route}`, p);
			const r = await twilioWebhook(d, route, p, { url });
			if (want) {
				assert.ok(r.status === 200 || r.status === 204, `${url} accepted by twilio-node: got ${r.status}`);
				if (route === '/twiml')
					assertStreamTwiml(twimlOf(r), { streamUrl: d.env.STREAM_URL, ctx, agentId: d.env.ELEVENLABS_AGENT_ID });
			} else {
				assert.equal(r.status, 403, `${url} refused by twilio-node: got ${r.status}`);
			}
		}
	}
	// The :443 form must be among the accepted (protocols.md 1.10 V1).
	assert.ok(twilio.validateRequest(d.authToken,
	    twilio.getExpectedTwilioSignature(d.authToken, `${base}:443/status-callback`, { a: '1' }),
	    `${base}/status-callback`, { a: '1' }));
	const st = await twilioWebhook(d, '/status-callback', statusParams(sid, 'completed', 3),
	    { url: 'https://bridge.test:443/status-callback' });
	assert.equal(st.status, 204, 'status callback signed over :443 accepted');
	assert.equal(await callContext(redis, sid), null, 'and acted on');
});

itest('TWILIO_URL with an explicit :443 accepts the port-less signature', { timeout: 20000 }, async () => {
	const { d, redis } = await startCallStack({ workers: 1, env: { TWILIO_URL: 'https://bridge.test:443' } });
	const sid = await placeCall(d);
	const ctx = await callContext(redis, sid);
	for (const url of ['https://bridge.test/twiml', 'https://bridge.test:443/twiml']) {
		const r = await twilioWebhook(d, '/twiml', voiceParams(sid), { url });
		assertStreamTwiml(twimlOf(r), { streamUrl: d.env.STREAM_URL, ctx, agentId: d.env.ELEVENLABS_AGENT_ID });
	}
	const r = await twilioWebhook(d, '/twiml', voiceParams(sid), { url: 'https://bridge.test:8443/twiml' });
	assert.equal(r.status, 403);
});

itest('TwiML attribute values are XML-escaped (agent id and stored context injection)', { timeout: 20000 }, async () => {
	const agent = 'a"/><Hangup/><Say x="&amp;\'<>';
	const { d, redis } = await startCallStack({ workers: 1, env: {
		ELEVENLABS_AGENT_ID: agent,
	} });
	const sid = await placeCall(d);
	const ctx = await callContext(redis, sid);
	const r = await twilioWebhook(d, '/twiml', voiceParams(sid));
	const root = twimlOf(r);
	assertStreamTwiml(root, { streamUrl: d.env.STREAM_URL, ctx, agentId: agent });
	assert.equal(xmlFindAll(root, 'Parameter').length, 5, 'exactly five Parameters');

	// Values that came from Redis are escaped too (a context someone
	// else wrote: another instance, an older version).
	const evil = { ...ctx, callType: 'general"/><Hangup/><x y="', nonce: ctx.nonce + '&<>"\'' };
	await redis.call('SET', `call:${sid}`, JSON.stringify(evil), 'EX', '300');
	const r2 = await twilioWebhook(d, '/twiml', voiceParams(sid));
	const root2 = twimlOf(r2);
	assert.equal(xmlFindAll(root2, 'Hangup').length, 0, `no injected Hangup: ${r2.body}`);
	assert.equal(xmlFindAll(root2, 'x').length, 0, 'no injected element');
	const streams = xmlFindAll(root2, 'Stream');
	if (streams.length === 1) {
		const params = Object.fromEntries(streams[0].children.map((p) => [p.attrs.name, p.attrs.value]));
		assert.equal(params.call_type, evil.callType, 'call_type round-trips exactly');
		assert.equal(params.nonce, evil.nonce, 'nonce round-trips exactly');
	} else {
		assertApology(root2);	// refusing an odd context is fine too
	}
});

itest('POST /status-callback: 204, non-final keeps the context, final outcomes delete it', { timeout: 30000 }, async () => {
	const { d, redis } = await startCallStack({ workers: 1, maxCalls: 20 });

	const sid = await placeCall(d);
	const ctx = await callContext(redis, sid);
	let seq = 0;
	for (const st of ['initiated', 'queued', 'ringing', 'in-progress']) {
		const r = await twilioWebhook(d, '/status-callback', statusParams(sid, st, seq++));
		assert.equal(r.status, 204, `${st}: ${r.status} ${r.body}`);
		assert.equal(r.body, '', '204 with an empty body');
	}
	assert.deepEqual(await callContext(redis, sid), ctx, 'non-final statuses keep call:');
	assert.equal(await redis.call('EXISTS', `call_type:${sid}`), 1, 'and call_type:');

	for (const st of ['completed', 'busy', 'no-answer', 'failed', 'canceled']) {
		const s = await placeCall(d);
		const other = await placeCall(d);
		assert.ok(await callContext(redis, s));
		const r = await twilioWebhook(d, '/status-callback', statusParams(s, st, 4));
		assert.equal(r.status, 204, `${st}: ${r.status} ${r.body}`);
		assert.equal(await redis.call('EXISTS', `call:${s}`), 0, `${st}: call:${s} deleted`);
		assert.equal(await redis.call('EXISTS', `call_type:${s}`), 0, `${st}: call_type:${s} deleted`);
		assert.ok(await callContext(redis, other), `${st}: another call's context untouched`);
		// A repeat (Twilio retries) is harmless.
		assert.equal((await twilioWebhook(d, '/status-callback', statusParams(s, st, 4))).status, 204);
	}

	// Out of order: a late ringing after completed does not resurrect.
	const s2 = await placeCall(d);
	assert.equal((await twilioWebhook(d, '/status-callback', statusParams(s2, 'completed', 3))).status, 204);
	assert.equal((await twilioWebhook(d, '/status-callback', statusParams(s2, 'ringing', 1))).status, 204);
	assert.equal(await redis.call('EXISTS', `call:${s2}`), 0);

	// A callback for a call we never placed: accepted, nothing breaks.
	assert.equal((await twilioWebhook(d, '/status-callback', statusParams(newCallSid(), 'completed', 3))).status, 204);
	assert.ok(d.alive());
	assert.ok(d.logMatches(new RegExp(`call ${sid}[^\\n]*ringing`)).length >= 1, 'status changes logged with the callSid');
});

itest('call outcomes from status callbacks are counted in /metrics', { timeout: 20000 }, async () => {
	const { d } = await startCallStack({ workers: 1 });
	const m0 = await d.metrics();
	const outcomes = ['completed', 'busy', 'no-answer', 'failed', 'canceled'];
	for (const st of outcomes) {
		const sid = await placeCall(d);
		assert.equal((await twilioWebhook(d, '/status-callback', statusParams(sid, st, 4))).status, 204);
	}
	const m1 = await d.metrics();
	// No metric names are assumed: for each outcome, some naiberd_
	// series naming it must have gone up by one.
	for (const st of outcomes) {
		const re = new RegExp(`^naiberd_.*${st.replace('-', '[-_]').replace('canceled', 'cancell?ed')}`);
		const after = metricSum(m1, re);
		assert.ok(after !== undefined, `a naiberd_ series naming "${st}" in /metrics (have: ` +
		    `${Object.keys(m1).filter((k) => /call|outcome|status/.test(k)).join(', ')})`);
		assert.equal(after - (metricSum(m0, re) ?? 0), 1, `${st} counted once`);
	}
});
