// t_ngrok: USE_DYNAMIC_NGROK=true without STREAM_URL/TWILIO_URL: the
// supervisor asks the ngrok agent API (GET /api/tunnels) for the https
// tunnel to its port and uses that public URL for the stream signature
// check, the create-call Url/StatusCallback and the TwiML.  The call then
// runs on the full stack (tests/lib/stack.mjs) over the stream Twilio
// would open to the tunnel.
import assert from 'node:assert/strict';
import nodeHttp from 'node:http';
import {
	itest, apiPost, apiGet, callContext, callStreamUrl, freePort, waitFor, twilioWebhook,
	voiceParams, parseXml, xmlFindAll, RX, doneLine, withTimeout,
} from '../lib/harness.mjs';
import { startStack } from '../lib/stack.mjs';

const PUBLIC = 'https://abc.ngrok.test';

/* A fake ngrok agent API; `tunnels` can be changed at run time. */
async function fakeNgrok(tunnels) {
	const ng = { tunnels, requests: [] };
	const server = nodeHttp.createServer((req, res) => {
		ng.requests.push({ method: req.method, url: req.url });
		if (req.method === 'GET' && req.url === '/api/tunnels') {
			const body = JSON.stringify({ tunnels: ng.tunnels, uri: '/api/tunnels' });
			res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
			res.end(body);
		} else {
			res.writeHead(404, { 'Content-Type': 'application/json' });
			res.end('{"error_code":100,"status_code":404,"msg":"not found"}');
		}
	});
	await new Promise((r) => server.listen(0, '127.0.0.1', r));
	ng.port = server.address().port;
	ng.url = `http://127.0.0.1:${ng.port}`;
	ng.close = () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); });
	return ng;
}

itest('USE_DYNAMIC_NGROK: public URL from the ngrok API drives stream auth, /call and TwiML', { timeout: 40000 }, async () => {
	const port = await freePort();
	const tunnel = { name: 'command_line', public_url: PUBLIC, proto: 'https',
	    config: { addr: `http://localhost:${port}`, inspect: true } };
	const ng = await fakeNgrok([]);	// no tunnel yet
	try {
		// Not ready until the tunnel exists (no public URL): wait for Redis only.
		const st = await startStack({
			workers: 2, port, waitReady: false,
			env: { USE_DYNAMIC_NGROK: 'true', NGROK_API_URL: ng.url, STREAM_URL: null, TWILIO_URL: null },
			twilio: { expect: { from: '+15550001111', url: `${PUBLIC}/twiml`, statusCallback: `${PUBLIC}/status-callback` } },
		});
		const { d, redis, tw } = st;
		await waitFor(async () => (await apiGet(d, '/sessions', { timeoutMs: 1000 })).status === 200,
		    5000, 'GET /sessions to answer 200 (naiberd connected to Redis)', 50);
		await waitFor(() => ng.requests.some((r) => r.url === '/api/tunnels'), 5000, 'GET /api/tunnels at the fake ngrok');

		// Before a tunnel exists nothing can be dialled.
		const early = await apiPost(d, '/call', undefined);
		assert.notEqual(early.status, 200, `no public URL yet: ${early.status} ${early.body}`);
		assert.equal(early.json?.success, false);
		assert.equal(tw.requests.length, 0, 'Twilio not called without a public URL');

		// The tunnel appears: the supervisor picks it up.
		ng.tunnels = [tunnel];
		await d.waitLog(`ngrok: public URL ${PUBLIC}`, 20000);

		// Fresh workers hold the new URL.
		await waitFor(async () => {
			const m = await d.metrics();
			return m['naiberd_workers{state="idle"}'] === 2 && m['naiberd_workers{state="exiting"}'] === 0;
		}, 5000, 'idle pool of 2 after the URL change');

		// Stream signed for the ngrok URL: accepted; for the default one: 403.
		const mark = d.logMark();
		const wrong = d.stream({ streamUrl: 'wss://bridge.test/outbound-media-stream' });
		const err = await wrong.opened.then(() => null, (e) => e);
		assert.equal(err?.status, 403, 'stream signed for another URL refused');

		// /call dials with the ngrok URLs.
		const sid = (await st.placeCall()).callSid;
		const c = tw.creates()[0];
		assert.deepEqual(c.form.Url, [`${PUBLIC}/twiml`]);
		assert.deepEqual(c.form.StatusCallback, [`${PUBLIC}/status-callback`]);
		assert.equal(c.answer.status, 201);

		// TwiML (signed over the ngrok URL) streams to the ngrok wss URL.
		const r = await twilioWebhook(d, '/twiml', voiceParams(sid), { twilioUrl: PUBLIC });
		assert.equal(r.status, 200, r.body);
		const streams = xmlFindAll(parseXml(r.body), 'Stream');
		assert.equal(streams.length, 1, r.body);
		assert.equal(streams[0].attrs.url, callStreamUrl('wss://abc.ngrok.test/outbound-media-stream',
		    d.authToken, sid));
		assert.equal((await twilioWebhook(d, '/twiml', voiceParams(sid),
		    { twilioUrl: 'https://bridge.test' })).status, 403, 'TwiML signed for the old URL refused');

		// The stream Twilio would open: signed for the ngrok wss URL, bound by the nonce.
		const ctx = await callContext(redis, sid);
		const s = await st.openStream({ callSid: sid, nonce: ctx.nonce }, { since: mark,
		    streamUrl: 'wss://abc.ngrok.test/outbound-media-stream' });
		assert.equal(s.upgradeStatus, 101);
		const acc = await d.waitLog(RX.accepted, 5000, mark);
		await d.waitLog(new RegExp(`worker\\[${acc[1]}\\][^\\n]*stream bound: type=general`), 5000, mark);
		assert.equal(s.workerPid, Number(acc[1]));
		await s.sendMedia(4);
		await s.elConv.waitAudioBytes(4 * 160);
		await s.sendStop();
		const done = await doneLine(d, sid, 5000, mark);
		assert.equal(done[2], 'stop');
		assert.equal(Number(done[3]), 4);
		await withTimeout(s.closed, 5000, 'stream closed');
	} finally {
		await ng.close();
	}
});
