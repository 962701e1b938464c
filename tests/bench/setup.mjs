// setup.mjs - call setup time: Twilio `start` sent to naiberd -> the
// init message sent to ElevenLabs (the worker's "init sent (..., M ms
// after start)" line), for N calls whose first message was PREPAREd while
// the phone rang, and N calls without PREPARE data (the answering worker
// waits --first-message-wait, here 1500 ms, then renders the template).
// Full stack: Redis, PostgreSQL, fake ElevenLabs (TLS), fake Twilio.
// Usage: node tests/bench/setup.mjs [N]
import { newCallSid, sleep } from '../lib/harness.mjs';
import { putCallContext } from '../lib/bind.mjs';
import { startStack } from '../lib/stack.mjs';

const N = Number(process.argv[2] || 30);
const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]; };

async function one(st, call) {
	const since = st.d.log.length;
	const s = await st.openStream(call, { timeoutMs: 20000 });
	const m = st.d.log.slice(since).match(new RegExp(
	    `callSid=${call.callSid} [^\\n]*init sent \\(\\d+ bytes, (\\d+) ms after start\\)`));
	await s.sendStop();
	await sleep(300);
	if (!m) throw new Error(`no init line for ${call.callSid}`);
	return Number(m[1]);
}

const st = await startStack({ workers: 4, maxCalls: 20 });
const prepared = [], plain = [];
try {
	for (let i = 0; i < N; i++) {
		const call = await st.placeCall();
		await sleep(1600);	/* the phone rings; PREPARE runs */
		prepared.push(await one(st, call));
	}
	for (let i = 0; i < N; i++) {
		const callSid = newCallSid();
		const nonce = await putCallContext(st.redis, callSid);
		plain.push(await one(st, { callSid, nonce, ctx: {} }));
	}
} finally {
	await st.stop();
}
const r = { bench: 'setup_start_to_init', calls: N,
	prepared_ms_p50: pct(prepared, 50), prepared_ms_p99: pct(prepared, 99),
	without_prepare_ms_p50: pct(plain, 50), without_prepare_ms_p99: pct(plain, 99),
	first_message_wait_ms: 1500 };
console.log(JSON.stringify(r));
process.exit(0);
