// t_call: POST /call and /call/health-check against a fake Twilio REST API
// and a real redis-server: the create-call request Twilio sees, the
// context stored in Redis, auth, input validation, Twilio failures
// (error answer, unreachable, hanging), and the --max-calls bound on
// calls placed but not yet streaming or finished.
import assert from 'node:assert/strict';
import {
	itest, startCallStack, apiPost, apiGet, placeCall, callContext, twilioWebhook,
	statusParams, freePort, http, metricSum, waitFor, callInfoLine, doneLine, TEST_PHONE,
} from '../lib/harness.mjs';

const SID_RE = /^CA[0-9a-f]{32}$/;
const ISO_MS_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function assertCreateRequest(req, d, tw, to) {
	assert.equal(req.method, 'POST');
	assert.equal(req.path, `/2010-04-01/Accounts/${d.env.TWILIO_ACCOUNT_SID}/Calls.json`);
	const basic = Buffer.from(`${d.env.TWILIO_ACCOUNT_SID}:${d.env.TWILIO_AUTH_TOKEN}`).toString('base64');
	assert.equal(req.headers.authorization, `Basic ${basic}`, 'HTTP Basic auth with sid:token');
	assert.match(req.headers['content-type'] ?? '', /^application\/x-www-form-urlencoded/);
	const f = req.form;
	assert.deepEqual(f.To, [to], 'To');
	assert.deepEqual(f.From, [d.env.TWILIO_NUMBER], 'From = TWILIO_NUMBER');
	assert.deepEqual(f.Url, [`${d.env.TWILIO_URL}/twiml`], 'Url');
	assert.deepEqual(f.StatusCallback, [`${d.env.TWILIO_URL}/status-callback`], 'StatusCallback');
	assert.deepEqual(f.StatusCallbackMethod, ['POST'], 'StatusCallbackMethod');
	assert.deepEqual([...f.StatusCallbackEvent].sort(), ['answered', 'completed', 'initiated', 'ringing'],
	    'StatusCallbackEvent repeated once per event');
	assert.deepEqual(f.Timeout, ['30'], 'Timeout');
	assert.equal(f.Twiml, undefined, 'no inline Twiml next to Url');
	assert.equal(req.answer?.status, 201, `the fake accepted the request: ${JSON.stringify(req.answer)}`);
}

async function assertStored(redis, sid, type, phone, t0) {
	assert.equal(await redis.call('GET', `call_type:${sid}`), type, `call_type:${sid}`);
	const ttl1 = await redis.call('TTL', `call_type:${sid}`);
	assert.ok(ttl1 > 50 && ttl1 <= 60, `call_type TTL ${ttl1} (want 60)`);
	const raw = await redis.call('GET', `call:${sid}`);
	assert.ok(raw, `call:${sid} stored`);
	const ctx = JSON.parse(raw);
	assert.equal(ctx.callType, type);
	assert.equal(ctx.phone, phone);
	assert.match(ctx.nonce, /^[0-9a-fA-F]{32}$/, 'nonce: 32 hex characters');
	assert.match(ctx.createdAt, ISO_MS_RE, 'createdAt: ISO 8601 with ms and Z');
	const at = Date.parse(ctx.createdAt);
	assert.ok(at >= t0 - 2000 && at <= Date.now() + 2000, `createdAt ${ctx.createdAt} is now`);
	const ttl2 = await redis.call('TTL', `call:${sid}`);
	assert.ok(ttl2 > 290 && ttl2 <= 300, `call TTL ${ttl2} (want 300)`);
	return ctx;
}

itest('POST /call dials through Twilio and stores the call context', { timeout: 30000 }, async () => {
	const { d, redis, tw } = await startCallStack({ workers: 1 });
	const t0 = Date.now();

	// No body: phone defaults to PHONE_NUMBER, type general.
	const r1 = await apiPost(d, '/call', undefined);
	assert.equal(r1.status, 200, r1.body);
	assert.match(r1.headers['content-type'] ?? '', /application\/json/);
	assert.equal(r1.json.success, true);
	assert.match(r1.json.callSid, SID_RE);
	assert.equal(tw.creates().length, 1, 'one create-call request');
	const c1 = tw.creates()[0];
	assert.equal(c1.callSid, r1.json.callSid, 'callSid is the sid Twilio returned');
	assertCreateRequest(c1, d, tw, TEST_PHONE);
	const ctx1 = await assertStored(redis, r1.json.callSid, 'general', TEST_PHONE, t0);

	// Empty JSON object: same defaults.
	const sidE = await placeCall(d, { body: {} });
	assertCreateRequest(tw.creates()[1], d, tw, TEST_PHONE);
	await assertStored(redis, sidE, 'general', TEST_PHONE, t0);

	// Explicit phone and type.
	const r2 = await apiPost(d, '/call', { phone: '+15550003333', callType: 'health_check' });
	assert.equal(r2.status, 200, r2.body);
	assert.deepEqual(Object.keys(r2.json).sort(), ['callSid', 'success']);
	assertCreateRequest(tw.creates()[2], d, tw, '+15550003333');
	const ctx2 = await assertStored(redis, r2.json.callSid, 'health_check', '+15550003333', t0);
	assert.notEqual(ctx1.nonce, ctx2.nonce, 'a fresh nonce per call');

	// /call/health-check: type health_check, phone default or given.
	const sid3 = await placeCall(d, { path: '/call/health-check' });
	assertCreateRequest(tw.creates()[3], d, tw, TEST_PHONE);
	await assertStored(redis, sid3, 'health_check', TEST_PHONE, t0);
	const sid4 = await placeCall(d, { path: '/call/health-check', body: { phone: '+447700900123' } });
	assertCreateRequest(tw.creates()[4], d, tw, '+447700900123');
	await assertStored(redis, sid4, 'health_check', '+447700900123', t0);

	assert.equal(new Set([r1.json.callSid, sidE, r2.json.callSid, sid3, sid4]).size, 5, 'distinct sids');
	assert.ok(d.alive());
});

itest('POST /call: 401 without the API token, 400 for bad input, and Twilio is not called', { timeout: 30000 }, async () => {
	const { d, tw } = await startCallStack({ workers: 1 });

	for (const [what, token, hdr] of [
		['no Authorization', null, {}],
		['wrong token', 'x' + d.apiToken.slice(1), {}],
		['empty bearer', '', {}],
		['Basic scheme', null, { Authorization: `Basic ${Buffer.from('u:' + d.apiToken).toString('base64')}` }],
		['token without scheme', null, { Authorization: d.apiToken }],
	]) {
		for (const p of ['/call', '/call/health-check']) {
			const r = await apiPost(d, p, { phone: TEST_PHONE }, { token, headers: hdr });
			assert.equal(r.status, 401, `${p} ${what}: ${r.status} ${r.body}`);
		}
	}

	const bad = [
		['malformed JSON', '{"phone":'],
		['JSON array', '[]'],
		['JSON string', '"+15550002222"'],
		['JSON number', '42'],
		['JSON null', 'null'],
		['trailing garbage', '{"phone":"+15550002222"} x'],
		['phone without +', { phone: '15550002222' }],
		['phone with letters', { phone: '+1555000222a' }],
		['phone with spaces', { phone: '+1 555 000 2222' }],
		['phone too short', { phone: '+1' }],
		['phone too long', { phone: '+1234567890123456' }],
		['phone starting with 0', { phone: '+05550002222' }],
		['phone empty', { phone: '' }],
		['phone a number', { phone: 15550002222 }],
		['phone an object', { phone: { n: '+15550002222' } }],
		['unknown callType', { callType: 'sales' }],
		['callType wrong case', { callType: 'General' }],
		['callType a number', { callType: 1 }],
		['callType empty', { callType: '' }],
	];
	for (const [what, body] of bad) {
		const r = await apiPost(d, '/call', body);
		assert.equal(r.status, 400, `${what}: got ${r.status} ${r.body}`);
		assert.equal(r.json?.success, false, `${what}: body ${r.body}`);
		assert.equal(typeof r.json?.error, 'string', `${what}: error text`);
		assert.ok(r.json.error.length > 0);
		assert.ok(!r.json.error.includes(d.authToken) && !r.json.error.includes(d.apiToken), 'no secrets');
	}
	for (const [what, body] of bad.filter(([w]) => w.startsWith('phone') || w.startsWith('malformed'))) {
		const r = await apiPost(d, '/call/health-check', body);
		assert.equal(r.status, 400, `/call/health-check ${what}: got ${r.status} ${r.body}`);
		assert.equal(r.json?.success, false);
	}
	assert.equal(tw.requests.length, 0, 'Twilio never called for refused requests');
	assert.ok(d.alive());

	// Still works afterwards.
	await placeCall(d);
	assert.equal(tw.creates().length, 1);
});

itest('POST /call: Twilio errors, unreachable and hanging Twilio give 502; the supervisor stays responsive', { timeout: 50000 }, async () => {
	const { d, redis, tw } = await startCallStack({ workers: 1 });

	// Twilio refuses the number: 502 carrying Twilio's message and code.
	const msg = "The 'To' number +15550002222 is not a valid phone number.";
	tw.failNext({ status: 400, code: 21211, message: msg });
	const r1 = await apiPost(d, '/call', undefined);
	assert.equal(r1.status, 502, r1.body);
	assert.equal(r1.json?.success, false);
	assert.ok(r1.json.error.includes(msg), `error carries Twilio's message: ${r1.json.error}`);
	assert.ok(r1.json.error.includes('21211'), `error carries Twilio's code: ${r1.json.error}`);
	assert.ok(!r1.json.error.includes(d.authToken), 'no secrets in the error');
	assert.deepEqual(await redis.call('KEYS', 'call*'), [], 'nothing stored for a call Twilio refused');

	// Auth failure at Twilio: also 502.
	tw.failNext({ status: 401, code: 20003, message: 'Authenticate' });
	const r1b = await apiPost(d, '/call', undefined);
	assert.equal(r1b.status, 502, r1b.body);
	assert.ok(r1b.json.error.includes('20003'), r1b.json.error);

	// The next one succeeds again.
	await placeCall(d);

	// Twilio drops every connection without answering: 502.  (Only
	// persistently: libcurl may resend once on a fresh connection when
	// a reused one dies.)
	tw.mode = 'close';
	const r2 = await apiPost(d, '/call', undefined, { timeoutMs: 12000 });
	assert.equal(r2.status, 502, r2.body);
	assert.equal(r2.json?.success, false);
	tw.mode = 'normal';

	// Twilio never answers: 502 within the request timeout (~10 s), and
	// the supervisor answers other requests meanwhile.
	tw.hangNext();
	const n0 = tw.requests.length;
	const t0 = Date.now();
	const pending = apiPost(d, '/call', undefined, { timeoutMs: 20000 });
	await tw.waitFor(() => tw.requests.length > n0, 5000, 'the create request at the fake');
	for (let i = 0; i < 3; i++) {
		const t1 = Date.now();
		const h = await http(d.port, 'GET', '/health', { timeoutMs: 1000 });
		assert.equal(h.status, 200);
		assert.ok(Date.now() - t1 < 1000, '/health answers promptly while Twilio hangs');
		const m = await apiGet(d, '/metrics', { timeoutMs: 1000 });
		assert.equal(m.status, 200);
	}
	const r3 = await pending;
	const took = Date.now() - t0;
	assert.equal(r3.status, 502, r3.body);
	assert.equal(r3.json?.success, false);
	assert.ok(took >= 3000, `the hang was waited on (${took} ms)`);
	assert.ok(took <= 14000, `502 within the ~10 s Twilio timeout, took ${took} ms`);

	// Twilio unreachable (connection refused): 502 quickly.
	await tw.close();
	const t2 = Date.now();
	const r4 = await apiPost(d, '/call', undefined, { timeoutMs: 12000 });
	assert.equal(r4.status, 502, r4.body);
	assert.equal(r4.json?.success, false);
	assert.ok(Date.now() - t2 < 3000, `refused connection answered in ${Date.now() - t2} ms`);
	assert.ok(d.alive());
	assert.equal((await http(d.port, 'GET', '/health')).status, 200);
});

itest('POST /call to a Twilio API base nobody listens on: 502', { timeout: 20000 }, async () => {
	const closed = await freePort();
	const { d } = await startCallStack({ workers: 1, env: { TWILIO_API_BASE: `http://127.0.0.1:${closed}` } });
	const t0 = Date.now();
	const r = await apiPost(d, '/call', { phone: TEST_PHONE }, { timeoutMs: 12000 });
	assert.equal(r.status, 502, r.body);
	assert.equal(r.json?.success, false);
	assert.ok(Date.now() - t0 < 3000, `answered in ${Date.now() - t0} ms`);
});

itest('--max-calls bounds placed calls; a no-answer status callback frees a slot', { timeout: 30000 }, async () => {
	const { d, redis, tw } = await startCallStack({ workers: 1, maxCalls: 2 });
	const m0 = await d.metrics();

	const a = await placeCall(d);
	const b = await placeCall(d, { path: '/call/health-check' });
	const r3 = await apiPost(d, '/call', undefined);
	assert.equal(r3.status, 503, `third call at -m 2: ${r3.status} ${r3.body}`);
	assert.equal(r3.json?.success, false);
	assert.equal(typeof r3.json.error, 'string');
	const r3b = await apiPost(d, '/call/health-check', undefined);
	assert.equal(r3b.status, 503, r3b.body);
	assert.equal(tw.creates().length, 2, 'no Twilio request for refused calls');

	// A non-final status changes nothing.
	const s1 = await twilioWebhook(d, '/status-callback', statusParams(a, 'ringing', 1));
	assert.equal(s1.status, 204, s1.body);
	assert.equal((await apiPost(d, '/call', undefined)).status, 503, 'ringing still counts');

	// no-answer for call a: its slot and its context go.
	const s2 = await twilioWebhook(d, '/status-callback', statusParams(a, 'no-answer', 2));
	assert.equal(s2.status, 204, s2.body);
	assert.equal(await callContext(redis, a), null, `call:${a} deleted`);
	assert.equal(await redis.call('EXISTS', `call_type:${a}`), 0, `call_type:${a} deleted`);
	assert.ok(await callContext(redis, b), `call:${b} untouched`);

	const c = await placeCall(d);
	assert.equal(tw.creates().length, 3);
	assert.equal((await apiPost(d, '/call', undefined)).status, 503, 'full again');

	// busy for b frees another.
	assert.equal((await twilioWebhook(d, '/status-callback', statusParams(b, 'busy', 2))).status, 204);
	const e = await placeCall(d);
	assert.equal((await apiPost(d, '/call', undefined)).status, 503, 'full again');

	// A placed call that starts streaming still counts (now as a busy
	// worker, not twice); when its stream ends, the slot is free.
	const mark = d.logMark();
	const ctx = await callContext(redis, c);
	const s = d.stream({ callSid: c, customParameters: { call_type: 'general', nonce: ctx.nonce } });
	await s.opened;
	await s.sendConnected();
	await s.sendStart();
	await d.waitLog(/stream bound: type=general/, 5000, mark);
	await callInfoLine(d, c, mark);
	const r5 = await apiPost(d, '/call', undefined);
	assert.equal(r5.status, 503, `streaming + placed = 2 = -m: ${r5.status} ${r5.body}`);
	// No database here: the worker may already have apologised and
	// closed the stream; sending to a closed stream is not the point.
	await s.sendMedia(2).catch(() => {});
	await s.sendStop().catch(() => {});
	await doneLine(d, c, 5000, mark);
	await waitFor(async () => (await d.metrics())['naiberd_workers{state="busy"}'] === 0, 5000, 'no busy worker');
	await placeCall(d);
	assert.equal((await apiPost(d, '/call', undefined)).status, 503, 'full again');

	// completed for e (as Twilio sends after the call) frees one more.
	assert.equal((await twilioWebhook(d, '/status-callback', statusParams(e, 'completed', 3))).status, 204);
	await placeCall(d);

	// The outcome is counted, if /metrics has such a series.
	const m1 = await d.metrics();
	const noAnswer = (m) => metricSum(m, /no[-_]answer/);
	if (noAnswer(m1) !== undefined)
		assert.equal(noAnswer(m1) - (noAnswer(m0) ?? 0), 1, 'no-answer counted once');
	assert.ok(d.alive());
});

itest('no NAIBER_API_TOKEN configured: loopback clients may dial, startup warns', { timeout: 20000 }, async () => {
	const { d, tw } = await startCallStack({ workers: 1, env: { NAIBER_API_TOKEN: null } });
	assert.match(d.log, /warn[^\n]*(NAIBER_API_TOKEN|API token)/i, 'startup warns that no API token is set');
	const r = await apiPost(d, '/call', { phone: TEST_PHONE }, { token: null });
	assert.equal(r.status, 200, `loopback client without a token: ${r.status} ${r.body}`);
	assert.equal(r.json.success, true);
	assert.equal(tw.creates().length, 1);
	// A bearer token that cannot match anything changes nothing for loopback.
	const r2 = await apiPost(d, '/call/health-check', undefined, { token: 'whatever' });
	assert.equal(r2.status, 200, r2.body);
});
