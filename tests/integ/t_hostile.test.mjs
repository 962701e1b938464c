// t_hostile: connections cannot be held cheaply, and unbound streams
// cannot hold slots (issue 16, items 1 and 3).  A slow-body flood past
// the connection cap while /health and a signed webhook keep answering;
// a trickle cannot extend its request's deadline; the per-address cap;
// per-call stream URLs (a replayed upgrade refused before a worker is
// used, a forged token refused, a URL of another call refused by the
// worker); a stream on the shared URL that never starts is let go
// within seconds.
import assert from 'node:assert/strict';
import net from 'node:net';
import {
	itest, startNaiberd, startRedis, http, twilioWebhook, voiceParams, newCallSid, sleep, waitFor,
	metrics, callStreamUrl,
} from '../lib/harness.mjs';
import { startStack } from '../lib/stack.mjs';

const SLOW_HEAD = 'POST /status-callback HTTP/1.1\r\nHost: naiberd.test\r\n' +
    'Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n';

/* n connections sending SLOW_HEAD, then one body byte every periodMs. */
async function slowFlood(port, n, periodMs) {
	const f = { socks: [], closed: 0, answered: { 408: 0, 503: 0, other: 0 }, opened: 0 };
	const one = () => new Promise((resolve) => {
		const s = net.connect({ port, host: '127.0.0.1' });
		let got = '';
		s.on('connect', () => {
			f.opened++;
			s.write(SLOW_HEAD);
			s.timer = setInterval(() => { if (!s.destroyed) s.write('a'); }, periodMs);
			resolve();
		});
		s.on('data', (d) => { got += d.toString('latin1'); });
		s.on('error', () => {});
		s.on('close', () => {
			clearInterval(s.timer);
			f.closed++;
			const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
			if (m && (m[1] === '408' || m[1] === '503')) f.answered[m[1]]++;
			else if (m) f.answered.other++;
			resolve();
		});
		f.socks.push(s);
	});
	for (let i = 0; i < n; i += 100)
		await Promise.all(Array.from({ length: Math.min(100, n - i) }, one));
	f.stop = () => { for (const s of f.socks) { clearInterval(s.timer); s.destroy(); } };
	return f;
}

itest('slow-body flood past the connection cap: /health and a signed webhook keep answering; trickles are shed or cut',
    { timeout: 120000 }, async () => {
	const redis = await startRedis();
	const d = await startNaiberd({ workers: 1, maxCalls: 4, env: {
		REDIS_URL: redis.url, NAIBER_MAX_CONNS_PER_IP: '0', NAIBER_HEAD_TIMEOUT: '30',
	} });
	const flood = await slowFlood(d.port, 1100, 1000);
	let worst = 0;
	try {
		for (let i = 0; i < 10; i++) {
			const t0 = Date.now();
			const h = await http(d.port, 'GET', '/health', { timeoutMs: 3000 });
			assert.equal(h.status, 200, `/health during the flood (round ${i})`);
			const w = await twilioWebhook(d, '/twiml', voiceParams(newCallSid()), { timeoutMs: 3000 });
			assert.equal(w.status, 200, `signed /twiml during the flood (round ${i}): ${w.body}`);
			assert.match(w.body, /<Response>/);
			worst = Math.max(worst, Date.now() - t0);
			await sleep(300);
		}
	} finally {
		flood.stop();
	}
	const m = await metrics(d.port, d.apiToken);
	const shed = m['naiberd_conns_closed_total{reason="shed"}'] ?? 0;
	const slow = m['naiberd_conns_closed_total{reason="slow"}'] ?? 0;
	console.log(`flood: ${flood.opened} opened, ${flood.closed} closed by naiberd or us, 408 ${flood.answered[408]}, ` +
	    `503 ${flood.answered[503]}; shed ${shed}, too slow ${slow}; worst /health + /twiml round ${worst} ms`);
	assert.ok(shed > 0, 'connections shed at the cap');
	assert.ok(slow > 0, 'trickling requests cut by request_min_rate');
	await d.waitLog(/connections open \(the cap\): closing the oldest unanswered ones/, 3000);
	await d.waitLog(/request too slow: \d+ bytes in \d+\.\d s \(request_min_rate 1024\)/, 3000);
	assert.equal((await http(d.port, 'GET', '/health', { timeoutMs: 2000 })).status, 200, 'alive after');
});

itest('a trickle cannot extend its deadline; the per-address cap closes the extra connections', { timeout: 60000 }, async () => {
	// No rate floor: only the whole-request deadline (3 s) applies.
	const d = await startNaiberd({ workers: 1, maxCalls: 2, env: {
		NAIBER_REQUEST_MIN_RATE: '0', NAIBER_HEAD_TIMEOUT: '3', NAIBER_MAX_CONNS_PER_IP: '20',
	} });
	const t0 = Date.now();
	const s = net.connect({ port: d.port, host: '127.0.0.1' });
	let got = '';
	s.on('data', (c) => { got += c; });
	s.on('error', () => {});
	await new Promise((r) => s.on('connect', r));
	s.write(SLOW_HEAD);
	const tick = setInterval(() => { if (!s.destroyed) s.write('a'); }, 500);
	await new Promise((r) => s.on('close', r));
	clearInterval(tick);
	const held = Date.now() - t0;
	assert.match(got, /^HTTP\/1\.1 408 /, 'answered 408');
	assert.ok(held < 6000, `closed at the 3 s deadline despite a byte every 500 ms (held ${held} ms)`);
	await d.waitLog(/request not received within 3 s \(\d+ bytes\)/, 3000);

	// 25 silent connections from one address: 20 kept, 5 closed unread.
	const socks = [];
	let early = 0;
	for (let i = 0; i < 25; i++) {
		const c = net.connect({ port: d.port, host: '127.0.0.1' });
		c.on('error', () => {});
		c.on('close', () => { early++; });
		c.write('GET /health HTTP/1.1\r\n');	/* partial head */
		socks.push(c);
		await sleep(20);
	}
	await waitFor(() => early >= 5, 3000, 'five connections closed');
	await sleep(300);
	assert.equal(early, 5, 'only the connections over the cap were closed');
	for (const c of socks) c.destroy();
	await sleep(200);
	const m = await metrics(d.port, d.apiToken);
	assert.equal(m['naiberd_conns_closed_total{reason="per_ip"}'], 5);
	await d.waitLog(/127\.0\.0\.1: 20 connections open from this address \(max_conns_per_ip\)/, 3000);
});

itest('per-call stream URLs: the call streams on its own URL; a replay, a forged token and another call\'s URL are refused',
    { timeout: 90000 }, async () => {
	const st = await startStack({ workers: 2, maxCalls: 4 });
	const d = st.d;
	const call = await st.placeCall();
	const tr = await twilioWebhook(d, '/twiml', voiceParams(call.callSid));
	assert.equal(tr.status, 200);
	const url = /<Stream url="([^"]+)"/.exec(tr.body)[1];
	assert.equal(url, callStreamUrl(d.streamUrl, d.authToken, call.callSid));
	const path = new URL(url).pathname;
	// Twilio connects to that URL, signed over it: a whole call.
	const s = await st.openStream(call, { path, streamUrl: url });
	await s.sendMedia(10);
	await s.elConv.waitAudioBytes(160 * 10, 10000);
	const busyBefore = (d.log.match(/accepted stream/g) || []).length;
	// The same upgrade replayed (same URL, same signature) while the call runs.
	const replay = d.stream({ callSid: call.callSid, path, streamUrl: url });
	const err = await replay.opened.then(() => null, (e) => e);
	assert.equal(err?.status, 403, 'replayed upgrade refused');
	await d.waitLog(/stream upgrade refused: this call's stream was taken already \(a replay\?\)/, 3000);
	assert.equal((d.log.match(/accepted stream/g) || []).length, busyBefore, 'no worker used for the replay');
	await s.sendStop();
	await d.waitLog(new RegExp(`call ${call.callSid} done: reason=stop`), 10000);

	// A token this auth token did not make, signed properly over its URL.
	const forgedTok = `${newCallSid()}.AAAAAAAAAAAAAAAAAAAAAA`;
	const fUrl = `${d.streamUrl}/${forgedTok}`;
	const f = d.stream({ path: new URL(fUrl).pathname, streamUrl: fUrl });
	assert.equal((await f.opened.then(() => null, (e) => e))?.status, 403, 'forged token refused');
	await d.waitLog(/stream upgrade refused: not a stream URL of ours/, 3000);

	// Call A's URL, but the start names call B: the worker refuses it.
	const a = await st.placeCall();
	const b = await st.placeCall();
	const aUrl = callStreamUrl(d.streamUrl, d.authToken, a.callSid);
	const mark = d.logMark();
	const x = d.stream({ callSid: b.callSid, path: new URL(aUrl).pathname, streamUrl: aUrl,
	    customParameters: { call_type: 'general', nonce: b.nonce } });
	await x.opened;
	await x.sendConnected();
	await x.sendStart();
	await d.waitLog(new RegExp(`stream URL of call ${a.callSid}, start of call ${b.callSid}: refused`), 5000, mark);
	await d.waitLog(/done: reason=stream URL of another call/, 5000, mark);
});

itest('a stream on the shared URL that never starts holds its worker about two seconds', { timeout: 30000 }, async () => {
	const st = await startStack({ workers: 1, maxCalls: 2 });
	const d = st.d;
	const mark = d.logMark();
	const t0 = Date.now();
	const s = d.stream({});
	await s.opened;
	await s.sendConnected();
	const m = await d.waitLog(/worker \d+ call \S* ?done: reason=no start event/, 8000, mark);
	const took = Date.now() - t0;
	assert.ok(m, 'ended for want of a start');
	assert.ok(took < 5000, `let go within seconds (${took} ms)`);
});
