// flood.mjs - the slow-body flood of issue 16, measured (not asserted):
// FLOOD_CONNS connections (default 1100) each send a POST head with
// Content-Length: 60000 and then one body byte every FLOOD_PERIOD_MS
// (default 5000), for FLOOD_SECONDS (default 30), against build/naiberd
// (or $NAIBERD) with max_conns_per_ip off; meanwhile GET /health and a
// signed POST /twiml are probed every 250 ms with a 2 s timeout.
// Prints one JSON line: probes ok/failed, latency p50/p99/max, the
// flood's connections still open at the end.
// Run: node --test tests/bench/flood.mjs
import net from 'node:net';
import {
	itest, startNaiberd, startRedis, http, twilioWebhook, voiceParams, newCallSid, sleep,
} from '../lib/harness.mjs';

const N = Number(process.env.FLOOD_CONNS ?? 1100);
const PERIOD = Number(process.env.FLOOD_PERIOD_MS ?? 5000);
const SECONDS = Number(process.env.FLOOD_SECONDS ?? 30);
const HEAD = 'POST /status-callback HTTP/1.1\r\nHost: naiberd.test\r\n' +
    'Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n';

const pct = (a, p) => (a.length ? a.slice().sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * p))] : null);

itest(`slow-body flood: ${N} connections, a byte every ${PERIOD} ms, ${SECONDS} s`, { timeout: (SECONDS + 120) * 1000 }, async () => {
	const redis = await startRedis();
	const d = await startNaiberd({ workers: 1, maxCalls: 4,
	    env: { REDIS_URL: redis.url, NAIBER_MAX_CONNS_PER_IP: '0' } });
	const socks = [];
	let open = 0;
	for (let i = 0; i < N; i++) {
		const s = net.connect({ port: d.port, host: '127.0.0.1' });
		s.on('error', () => {});
		s.on('connect', () => { open++; s.write(HEAD); });
		s.on('close', () => { open--; });
		s.timer = setInterval(() => { if (!s.destroyed) s.write('a'); }, PERIOD);
		socks.push(s);
		if (i % 100 === 99) await sleep(50);
	}
	const lat = { health: [], twiml: [] };
	const fail = { health: 0, twiml: 0 };
	const end = Date.now() + SECONDS * 1000;
	while (Date.now() < end) {
		for (const k of ['health', 'twiml']) {
			const t0 = Date.now();
			const r = await (k === 'health' ? http(d.port, 'GET', '/health', { timeoutMs: 2000 })
			    : twilioWebhook(d, '/twiml', voiceParams(newCallSid()), { timeoutMs: 2000 })).catch(() => null);
			if (r && r.status === 200) lat[k].push(Date.now() - t0);
			else fail[k]++;
		}
		await sleep(250);
	}
	const stillOpen = open;
	for (const s of socks) { clearInterval(s.timer); s.destroy(); }
	const out = { binary: process.env.NAIBERD ?? 'build/naiberd', conns: N, periodMs: PERIOD, seconds: SECONDS };
	for (const k of ['health', 'twiml'])
		out[k] = { ok: lat[k].length, failed: fail[k], p50: pct(lat[k], 0.5), p99: pct(lat[k], 0.99),
		    max: lat[k].length ? Math.max(...lat[k]) : null };
	out.floodOpenAtEnd = stillOpen;
	console.log(JSON.stringify(out));
});
