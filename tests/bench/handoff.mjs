// handoff.mjs - handoff latency benchmark: accept -> the worker owns the
// stream socket.  Starts build/naiberd on a free loopback port, opens N
// signed Media Streams upgrades (C at a time), each sending start + stop,
// then reads the supervisor's per-handoff lines ("handoff <us> us", taken
// from the worker's ACCEPTED report) and prints p50/p99/max as JSON and
// a short table.  Usage: node tests/bench/handoff.mjs [N] [C] [workers]
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';

const require = createRequire(new URL('../peers/package.json', import.meta.url));
const WebSocket = require('ws');
const twilio = require('twilio');

const N = Number(process.argv[2] || 1000);
const C = Number(process.argv[3] || 8);
const W = Number(process.argv[4] || 8);
const bin = process.env.NAIBERD || new URL('../../build/naiberd', import.meta.url).pathname;
const token = 'bench' + Math.random().toString(16).slice(2);
const streamUrl = 'wss://bench.invalid/outbound-media-stream';

function freePort() {
	return new Promise((res, rej) => {
		const s = net.createServer().listen(0, '127.0.0.1', () => {
			const p = s.address().port; s.close(() => res(p));
		}).on('error', rej);
	});
}

function pct(a, p) {
	const s = [...a].sort((x, y) => x - y);
	return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))];
}

const dir = mkdtempSync(join(tmpdir(), 'naiberd-bench-'));
writeFileSync(join(dir, 'naiberd.conf'), '', { mode: 0o600 });
const port = await freePort();
// Streams carry no nonce: each worker takes the socket (what is measured
// here), then refuses the stream at `start` and exits.
const env = { ...process.env, TWILIO_ACCOUNT_SID: 'AC' + '0'.repeat(32),
	TWILIO_AUTH_TOKEN: token, TWILIO_NUMBER: '+15550001111',
	ELEVENLABS_API_KEY: 'x', ELEVENLABS_AGENT_ID: 'agent_bench',
	DATABASE_URL: 'postgres://127.0.0.1:1/none', STREAM_URL: streamUrl,
	TWILIO_URL: 'https://bench.invalid', NAIBER_API_TOKEN: token,
	NAIBER_PROMPTS_DIR: new URL('../../prompts', import.meta.url).pathname,
	NAIBER_SPOOL_DIR: dir, REDIS_URL: 'redis://127.0.0.1:1' };
const sv = spawn(bin, ['-c', join(dir, 'naiberd.conf'), '-l', '127.0.0.1',
	'-p', String(port), '-w', String(W), '-m', String(Math.max(W, C) * 4)],
	{ env, stdio: ['ignore', 'ignore', 'pipe'] });
let log = '';
sv.stderr.on('data', (d) => { log += d; });
const sig = twilio.getExpectedTwilioSignature(token, streamUrl, {});

for (let i = 0; i < 100; i++) {
	if (/listening on/.test(log)) break;
	await new Promise((r) => setTimeout(r, 50));
}

function one(i) {
	return new Promise((resolve, reject) => {
		const t0 = process.hrtime.bigint();
		const ws = new WebSocket(`ws://127.0.0.1:${port}/outbound-media-stream`,
			{ headers: { 'X-Twilio-Signature': sig } });
		ws.on('open', () => {
			const up = Number(process.hrtime.bigint() - t0) / 1e3;
			const sid = 'MZ' + String(i).padStart(32, '0');
			ws.send(JSON.stringify({ event: 'start', sequenceNumber: '1',
				streamSid: sid, start: { streamSid: sid,
				accountSid: env.TWILIO_ACCOUNT_SID,
				callSid: 'CA' + String(i).padStart(32, '0'),
				tracks: ['inbound'], customParameters: {},
				mediaFormat: { encoding: 'audio/x-mulaw',
				sampleRate: 8000, channels: 1 } } }));
			ws.send(JSON.stringify({ event: 'stop', streamSid: sid }));
			ws.on('close', () => resolve(up));
		});
		ws.on('error', reject);
	});
}

const upgrades = [];
const t0 = Date.now();
let next = 0;
async function lane() {
	while (next < N) {
		const i = next++;
		upgrades.push(await one(i));
	}
}
await Promise.all(Array.from({ length: C }, lane));
const secs = (Date.now() - t0) / 1000;
await new Promise((r) => setTimeout(r, 300));
sv.kill('SIGTERM');
await new Promise((r) => sv.on('exit', r));
rmSync(dir, { recursive: true, force: true });

const lines = [...log.matchAll(/accepted stream \(handoff (\d+) us, channel (\d+) us\)/g)];
const hand = lines.map((m) => Number(m[1]));
const chan = lines.map((m) => Number(m[2]));
if (hand.length !== N) {
	console.error(`expected ${N} handoff lines, found ${hand.length}`);
	process.exit(1);
}
const r = { bench: 'handoff', handoffs: N, concurrency: C, workers: W,
	seconds: secs, handoff_us_p50: pct(hand, 50),
	handoff_us_p99: pct(hand, 99), handoff_us_max: Math.max(...hand),
	channel_us_p50: pct(chan, 50), channel_us_p99: pct(chan, 99),
	upgrade_us_p50: Math.round(pct(upgrades, 50)),
	upgrade_us_p99: Math.round(pct(upgrades, 99)) };
console.log(JSON.stringify(r));
console.log(`handoff (accept -> worker owns fd): p50 ${r.handoff_us_p50} us, ` +
	`p99 ${r.handoff_us_p99} us, max ${r.handoff_us_max} us over ${N}`);
console.log(`channel (send -> worker owns fd):   p50 ${r.channel_us_p50} us, ` +
	`p99 ${r.channel_us_p99} us`);
console.log(`client upgrade round trip:         p50 ${r.upgrade_us_p50} us, ` +
	`p99 ${r.upgrade_us_p99} us; ${(N / secs).toFixed(0)} calls/s`);
