// call_rt.mjs - POST /call round trip against the fake Twilio REST API:
// N sequential requests (default 500), each dialled, context stored in
// Redis, answered; reports p50/p99/max as JSON.  The supervisor does the
// whole thing on its event loop (libcurl multi + hiredis async).
// Usage: node tests/bench/call_rt.mjs [N]
import { startCallStack, apiPost } from '../lib/harness.mjs';

const N = Number(process.argv[2] || 500);
const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]; };

const { d, redis, tw } = await startCallStack({ workers: 1, maxCalls: N + 10,
	env: { DATABASE_URL: 'postgres://127.0.0.1:1/none' } });
const ms = [];
try {
	for (let i = 0; i < N; i++) {
		const t0 = process.hrtime.bigint();
		const r = await apiPost(d, '/call', {});
		ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
		if (r.status !== 200) throw new Error(`POST /call ${r.status} ${r.body}`);
	}
} finally {
	await d.stop?.(); await tw.close?.(); await redis.stop?.();
}
const r = { bench: 'call_round_trip', requests: N, ms_p50: +pct(ms, 50).toFixed(2),
	ms_p99: +pct(ms, 99).toFixed(2), ms_max: +Math.max(...ms).toFixed(2) };
console.log(JSON.stringify(r));
process.exit(0);
