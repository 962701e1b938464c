// t_badinput: the supervisor's HTTP surface under bad and hostile input, and
// the basic API behaviours (health, metrics auth, 404/405, keep-alive).
// Strict parsing: HTTP/0.9, HTTP/2.0, HTTP/9.9 -> 400 or 505; a malformed
// request line or header ("Host : x") -> 400; an unknown but well-formed
// method -> 501; GET /call -> 405 (POST /call needs a Bearer token).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { itest, startNaiberd, waitFor, raw, rawConn, withTimeout, twilio, hex, parseMetrics } from '../lib/harness.mjs';
import { startStack } from '../lib/stack.mjs';

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

itest('GET /health answers the original JSON', { timeout: 20000 }, async () => {
	const d = await startNaiberd({ workers: 1, maxCalls: 2 });
	const h = await d.http('GET', '/health');
	assert.equal(h.status, 200);
	assert.match(h.headers['content-type'] ?? '', /^application\/json/);
	assert.deepEqual(Object.keys(h.json), ['status', 'service', 'timestamp']);
	assert.equal(h.json.status, 'healthy');
	assert.equal(h.json.service, 'naiber-server');
	assert.match(h.json.timestamp, ISO_MS);
	assert.ok(Math.abs(Date.parse(h.json.timestamp) - Date.now()) < 60000, 'timestamp is now');
});

itest('/metrics needs the API token', { timeout: 20000 }, async () => {
	const d = await startNaiberd({ workers: 1, maxCalls: 2 });
	assert.equal((await d.http('GET', '/metrics')).status, 401, '/metrics without token');
	assert.equal((await d.http('GET', '/metrics', { headers: { Authorization: 'Bearer wrong' } })).status, 401,
	    '/metrics with a wrong token');
	assert.equal((await d.http('GET', '/metrics', { headers: { Authorization: d.apiToken } })).status, 401,
	    '/metrics with the token but no Bearer scheme');
	const mr = await d.http('GET', '/metrics', { headers: { Authorization: `Bearer ${d.apiToken}` } });
	assert.equal(mr.status, 200);
	assert.match(mr.headers['content-type'] ?? '', /^text\/plain/);
	const m = parseMetrics(mr.body);
	for (const k of ['naiberd_workers{state="idle"}', 'naiberd_workers{state="busy"}', 'naiberd_handoffs_total',
	    'naiberd_worker_crashes_total', 'naiberd_calls_done_total', 'naiberd_frames_in_total'])
		assert.ok(k in m, `metric ${k} present`);
	assert.ok(!mr.body.includes(d.authToken) && !mr.body.includes(d.apiToken), 'no secret in /metrics');
});

itest('unknown path 404, known path with the wrong method 405', { timeout: 20000 }, async () => {
	const d = await startNaiberd({ workers: 1, maxCalls: 2 });
	assert.equal((await d.http('GET', '/no-such-path')).status, 404);
	assert.equal((await d.http('DELETE', '/health')).status, 405);
	assert.equal((await d.http('POST', '/health', { body: '{}' })).status, 405);
	assert.equal((await d.http('POST', '/metrics', { headers: { Authorization: `Bearer ${d.apiToken}` } })).status, 405);
	assert.equal((await d.http('GET', '/call')).status, 405, 'GET /call');
	assert.equal((await d.http('GET', '/call', { headers: { Authorization: `Bearer ${d.apiToken}` } })).status, 405,
	    'GET /call with the API token: still the wrong method');
	assert.equal((await d.http('POST', '/call', { headers: { 'Content-Type': 'application/json' }, body: '{}' })).status, 401,
	    'POST /call without a Bearer token');
});

/* One request per spec case, exact statuses, the supervisor up after each. */
itest('strict request line, versions and methods', { timeout: 30000 }, async () => {
	const d = await startNaiberd({ workers: 1, maxCalls: 2 });
	const cases = [
		['HTTP/0.9', 'GET /health HTTP/0.9\r\nHost: x\r\n\r\n', [400, 505]],
		['HTTP/2.0', 'GET /health HTTP/2.0\r\nHost: x\r\n\r\n', [400, 505]],
		['HTTP/9.9', 'GET /health HTTP/9.9\r\nHost: x\r\n\r\n', [400, 505]],
		['space before colon', 'GET /health HTTP/1.1\r\nHost : x\r\n\r\n', [400]],
		['garbage request line', 'GARBAGE\r\n\r\n', [400]],
		['method only', 'GET\r\n\r\n', [400]],
		['no version', 'GET /health\r\n\r\n', [400]],
		['extra token', 'GET /health HTTP/1.1 extra\r\nHost: x\r\n\r\n', [400]],
		['HTTP/1.x', 'GET /health HTTP/1.x\r\nHost: x\r\n\r\n', [400]],
		['FOO/1.1', 'GET /health FOO/1.1\r\nHost: x\r\n\r\n', [400]],
		['unknown method', 'BREW /x HTTP/1.1\r\nHost: x\r\n\r\n', [501]],
		['unknown method on a known path', 'BREW /health HTTP/1.1\r\nHost: x\r\n\r\n', [501]],
		['GET /call', 'GET /call HTTP/1.1\r\nHost: x\r\n\r\n', [405]],
	];
	const bad = [];
	for (const [name, data, want] of cases) {
		const r = await raw(d.port, Buffer.from(data, 'latin1'), { responses: 1, timeoutMs: 5000 });
		const st = r.status ?? (r.closed ? 'closed' : 'timeout');
		if (!want.includes(st)) bad.push(`${name}: want ${want.join('|')}, got ${st} ${JSON.stringify(r.text.slice(0, 80))}`);
		if (!d.alive()) assert.fail(`supervisor died (${JSON.stringify(d.exitInfo)}) after "${name}"; ` +
		    `log tail:\n${d.log.trimEnd().split('\n').slice(-4).join('\n')}`);
	}
	assert.deepEqual(bad, [], 'statuses per the HTTP strictness spec');
	assert.equal((await d.http('GET', '/health')).status, 200, 'still serving');
});

itest('keep-alive, pipelining and Connection: close', { timeout: 20000 }, async () => {
	const d = await startNaiberd({ workers: 1, maxCalls: 2 });
	// Keep-alive: three requests, one socket, three answers in order.
	const req = (p) => `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
	const ka = await raw(d.port, [req('/health'), req('/nope'), req('/health')], { responses: 3, gapMs: 50 });
	assert.equal(ka.responses.length, 3, `three responses on one connection, got: ${JSON.stringify(ka.text.slice(0, 400))}`);
	assert.deepEqual(ka.responses.map((r) => r.status), [200, 404, 200]);
	assert.ok(!ka.closed, 'connection kept open');
	// Pipelined in one write.
	const pl = await raw(d.port, req('/health') + req('/health'), { responses: 2 });
	assert.deepEqual(pl.responses.map((r) => r.status), [200, 200], 'pipelined requests');
	// Connection: close is honoured.
	const cc = await raw(d.port, 'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', { timeoutMs: 3000 });
	assert.equal(cc.status, 200);
	assert.ok(cc.closed && !cc.timedOut, 'closed after Connection: close');
});

/* Builders for the bad requests; each returns {name, data, want, opts}. */
function badRequests(d) {
	const sig = twilio.getExpectedTwilioSignature(d.authToken, d.streamUrl, {});
	const auth = `Authorization: Bearer ${d.apiToken}\r\n`;
	const printable = () => {
		const b = randomBytes(40 + Math.floor(Math.random() * 200));
		for (let i = 0; i < b.length; i++) if (b[i] === 13 || b[i] === 10) b[i] = 0x41;
		return Buffer.concat([b, Buffer.from('\r\n\r\n')]);
	};
	const ANY_ERR = [400, 404, 405, 408, 411, 413, 431, 501, 505, 'closed'];
	return [
		// malformed request lines
		{ name: 'garbage line', data: 'GARBAGE\r\n\r\n', want: [400] },
		{ name: 'method only', data: 'GET\r\n\r\n', want: [400] },
		{ name: 'no version', data: 'GET /health\r\n\r\n', want: [400] },
		{ name: 'extra token', data: 'GET /health HTTP/1.1 extra\r\nHost: x\r\n\r\n', want: [400] },
		{ name: 'empty target', data: 'GET  HTTP/1.1\r\nHost: x\r\n\r\n', want: [400] },
		{ name: 'control chars in target', data: 'GET /he\x01alth HTTP/1.1\r\nHost: x\r\n\r\n', want: [400] },
		{ name: 'header without colon', data: 'GET /health HTTP/1.1\r\nHost x\r\n\r\n', want: [400] },
		{ name: 'space before colon', data: 'GET /health HTTP/1.1\r\nHost : x\r\n\r\n', want: [400] },
		{ name: 'NUL in header', data: 'GET /health HTTP/1.1\r\nX-A: a\x00b\r\n\r\n', want: [400] },
		{ name: 'bad Content-Length', data: `POST /call HTTP/1.1\r\n${auth}Content-Length: abc\r\n\r\n`, want: [400] },
		{ name: 'negative Content-Length', data: `POST /call HTTP/1.1\r\n${auth}Content-Length: -5\r\n\r\n`, want: [400] },
		{ name: 'two Content-Lengths', data: `POST /call HTTP/1.1\r\n${auth}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}`, want: [400] },
		// garbage bytes
		{ name: 'garbage bytes', data: printable, want: [400] },
		{ name: 'garbage then EOF', data: () => randomBytes(300), want: [400, 'closed'], opts: { end: true } },
		// invalid HTTP versions
		{ name: 'HTTP/0.9', data: 'GET /health HTTP/0.9\r\nHost: x\r\n\r\n', want: [400, 505] },
		{ name: 'HTTP/2.0', data: 'GET /health HTTP/2.0\r\nHost: x\r\n\r\n', want: [400, 505] },
		// not an HTTP-version at all: a malformed request line
		{ name: 'HTTP/1.x', data: 'GET /health HTTP/1.x\r\nHost: x\r\n\r\n', want: [400] },
		{ name: 'FOO/1.1', data: 'GET /health FOO/1.1\r\nHost: x\r\n\r\n', want: [400] },
		{ name: 'HTTP/9.9', data: 'GET /health HTTP/9.9\r\nHost: x\r\n\r\n', want: [400, 505] },
		// oversized heads
		{ name: 'long header', data: `GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(9000)}\r\n\r\n`, want: [431] },
		{ name: 'many headers', data: 'GET /health HTTP/1.1\r\n' +
		    Array.from({ length: 300 }, (_, i) => `X-H${i}: ${'b'.repeat(30)}\r\n`).join('') + '\r\n', want: [431] },
		{ name: 'long target', data: `GET /${'c'.repeat(9000)} HTTP/1.1\r\nHost: x\r\n\r\n`, want: [431, 414] },
		// oversized body: answered without reading it all
		{ name: '10 MB body', data: `POST /call HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\n` +
		    `Content-Length: ${10 * 1024 * 1024}\r\n\r\n{"phone":"`, want: [413] },
		{ name: '65 KiB + 1 body', data: `POST /call HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\n` +
		    `Content-Length: ${64 * 1024 + 1}\r\n\r\n`, want: [413] },
		// bad chunked encoding
		{ name: 'bad chunk size', data: `POST /call HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\nZZZ\r\nabc\r\n0\r\n\r\n`,
		    want: [400, 411, 501] },
		{ name: 'chunk size overflow', data: `POST /call HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nabc\r\n`,
		    want: [400, 411, 413, 501] },
		{ name: 'chunked + Content-Length', data: `POST /call HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`,
		    want: [400, 411, 501] },
		{ name: 'unknown transfer coding', data: `POST /call HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: gzip\r\n\r\n`,
		    want: [400, 411, 501] },
		// upgrades that are not valid WebSocket handshakes
		{ name: 'upgrade without key', data: 'GET /outbound-media-stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n' +
		    `Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nX-Twilio-Signature: ${sig}\r\n\r\n`, want: [400] },
		{ name: 'upgrade wrong version', data: 'GET /outbound-media-stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n' +
		    `Connection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: ${Buffer.from(hex(8)).toString('base64')}\r\n` +
		    `X-Twilio-Signature: ${sig}\r\n\r\n`, want: [400, 426] },
		{ name: 'POST to stream path', data: `POST /outbound-media-stream HTTP/1.1\r\nHost: x\r\nX-Twilio-Signature: ${sig}\r\nContent-Length: 0\r\n\r\n`,
		    want: [400, 405, 426] },
		// defined statuses
		{ name: 'unknown path', data: 'GET /etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n', want: [404] },
		{ name: 'dot-dot path', data: 'GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n', want: [400, 404] },
		{ name: 'wrong method', data: 'PUT /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n', want: [405] },
		{ name: 'unknown method', data: 'BREW /x HTTP/1.1\r\nHost: x\r\n\r\n', want: [501] },
		{ name: 'unknown method, known path', data: 'BREW /health HTTP/1.1\r\nHost: x\r\n\r\n', want: [501] },
		{ name: 'GET /call', data: 'GET /call HTTP/1.1\r\nHost: x\r\n\r\n', want: [405] },
		{ name: 'bad JSON body', data: `POST /call HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: 9\r\n\r\n{"phone":`,
		    want: [400] },
		{ name: 'absurd header value', data: 'GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n', want: [200, 400] },
	].map((r) => ({ ...r, anyErr: ANY_ERR }));
}

function statusOf(res) {
	if (res.status !== null) return res.status;
	if (res.closed) return 'closed';
	return 'timeout';
}

itest('200 bad requests: right statuses, supervisor and pool intact', { timeout: 60000 }, async () => {
	// The full stack: the call at the end must bind and reach ElevenLabs.
	const st = await startStack({ workers: 2, maxCalls: 4 });
	const { d } = st;
	await waitFor(() => d.children().length === 2, 5000, '2 idle workers');
	const mark = d.logMark();

	// 10 slowloris connections: a few bytes, then nothing.
	const slow = [];
	for (let i = 0; i < 10; i++) {
		const c = rawConn(d.port);
		await c.connected;
		await c.write(i % 2 ? 'GET /health HTTP/1.1\r\nHo' : 'G');
		slow.push(c);
	}

	const kinds = badRequests(d);
	const jobs = [];
	for (let i = 0; jobs.length < 190; i++) jobs.push(kinds[i % kinds.length]);

	const failures = new Map();	// message -> {n, sample}
	const fail = (msg, sample) => {
		const f = failures.get(msg) ?? { n: 0, sample };
		f.n++;
		failures.set(msg, f);
	};
	const BATCH = 20;
	for (let i = 0; i < jobs.length; i += BATCH) {
		const batch = jobs.slice(i, i + BATCH);
		const results = await Promise.all(batch.map((k) => {
			const data = typeof k.data === 'function' ? k.data() : k.data;
			return raw(d.port, Buffer.isBuffer(data) ? data : Buffer.from(data, 'latin1'),
			    { responses: 1, timeoutMs: 5000, ...(k.opts ?? {}) }).then((res) => ({ k, res }));
		}));
		for (const { k, res } of results) {
			const st = statusOf(res);
			if (!k.want.includes(st))
				fail(`${k.name}: want ${k.want.join('|')}, got ${st}`,
				    res.text ? JSON.stringify(res.text.slice(0, 120)) : '');
			if (res.text.includes(d.authToken) || res.text.includes(d.apiToken))
				fail(`${k.name}: response leaks a secret`, '');
		}
		// A dead supervisor makes every later result meaningless: stop here.
		await new Promise((r) => setTimeout(r, 20));
		if (!d.alive()) {
			const tail = d.log.trimEnd().split('\n').slice(-4).join('\n    ');
			assert.fail(`supervisor died ${JSON.stringify(d.exitInfo)} during batch ${i / BATCH + 1} ` +
			    `(${[...new Set(batch.map((k) => k.name))].join(', ')}); log tail:\n    ${tail}\n` +
			    `  expectations failed so far:\n  ` + [...failures].map(([msg, f]) =>
			    `${msg} (x${f.n})${f.sample ? ' e.g. ' + f.sample : ''}`).join('\n  '));
		}
	}

	// The slowloris connections are closed by the supervisor after the
	// 10 s head timeout (408 or a bare close).
	const slowRes = await Promise.all(slow.map((c) => withTimeout(c.closed, 16000,
	    'slowloris connection closed by the head timeout').then((r) => r, (e) => ({ timeout: e }))));
	slowRes.forEach((r, i) => {
		if (r.timeout) {
			fail('slowloris: still open after 16 s', '');
			return;
		}
		const text = r.buf.toString('latin1');
		if (text && !/^HTTP\/1\.[01] 408 /.test(text))
			fail('slowloris: want 408 or a bare close', JSON.stringify(text.slice(0, 80)));
	});

	if (failures.size > 0)
		assert.fail(`bad-input expectations failed:\n  ` + [...failures].map(([msg, f]) =>
		    `${msg} (x${f.n})${f.sample ? ' e.g. ' + f.sample : ''}`).join('\n  '));

	// The supervisor survived, answers, and the pool is intact.
	assert.ok(d.alive(), 'supervisor alive');
	const h = await d.http('GET', '/health');
	assert.equal(h.status, 200);
	await waitFor(async () => {
		const m = await d.metrics();
		return m['naiberd_workers{state="idle"}'] === 2 && m['naiberd_workers{state="busy"}'] === 0 &&
		    d.children().length === 2;
	}, 10000, 'pool of 2 idle workers');
	const m = await d.metrics();
	assert.equal(m['naiberd_worker_crashes_total'], 0, 'no worker crashed');
	assert.ok(!/killed by signal/.test(d.log.slice(mark)), 'no "killed by signal" line');

	// Nothing above placed a call.
	assert.equal(st.tw.creates().length, 0, 'no bad request reached Twilio');

	// A real call still works: placed, bound, conversation up, audio counted.
	const s = await st.openStream(await st.placeCall());
	await s.sendMedia(2);
	await s.elConv.waitAudioBytes(2 * 160);
	await s.sendStop();
	await d.waitLog(new RegExp(`call ${s.callSid} done: reason=stop frames_in=2 `), 5000, mark);
});

itest('deferred accept: 50 connections that send nothing take no connection slot; once they speak they are served',
    { timeout: 30000 }, async () => {
	const d = await startNaiberd({ workers: 1, maxCalls: 2 });
	const silent = [];
	for (let i = 0; i < 50; i++) {
		const c = rawConn(d.port);
		await c.connected;
		silent.push(c);
	}
	// The kernel holds them until their first bytes: the supervisor has
	// only the /metrics request's own connection open.
	await new Promise((r) => setTimeout(r, 300));
	const m = await d.metrics();
	assert.ok(m.naiberd_connections <= 1, `naiberd_connections ${m.naiberd_connections} with 50 silent clients`);
	// A silent client that then sends a request is answered as usual.
	const c = silent[7];
	await c.write('GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
	const res = await withTimeout(c.closed, 5000, 'the late request to be answered');
	assert.match(res.buf.toString('latin1'), /^HTTP\/1\.1 200 /, res.buf.toString('latin1').slice(0, 100));
});
