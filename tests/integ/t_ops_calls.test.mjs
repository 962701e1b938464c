// t_ops_calls - operations seen through real calls: /metrics is valid
// Prometheus text and its counters add up after two calls; /ready turns
// 503 when Redis goes away; SIGHUP with a changed prompt template gives
// the next call the new text while a live call keeps running untouched.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { itest, apiGet, waitFor, sleep, REPO } from '../lib/harness.mjs';
import { startStack } from '../lib/stack.mjs';

/* Prometheus text format 0.0.4, strictly enough to catch a broken line. */
function parseProm(text) {
	const types = new Map(), samples = new Map();
	for (const line of text.split('\n')) {
		if (line === '') continue;
		let m;
		if ((m = line.match(/^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/))) {
			assert.ok(!types.has(m[1]), `TYPE given twice for ${m[1]}`);
			types.set(m[1], m[2]);
			continue;
		}
		if (/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+$/.test(line)) continue;
		m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})? (-?[0-9.e+]+|\+Inf|NaN)$/);
		assert.ok(m, `not a Prometheus sample line: ${JSON.stringify(line)}`);
		const base = m[1].replace(/_(bucket|sum|count)$/, '');
		assert.ok(types.has(m[1]) || types.has(base), `sample without TYPE: ${m[1]}`);
		samples.set(m[1] + (m[2] ?? ''), Number(m[3]));
	}
	return samples;
}

itest('/metrics is valid Prometheus text and counts two calls', async () => {
	const st = await startStack({ workers: 2, maxCalls: 6 });
	const before = parseProm((await apiGet(st.d, '/metrics')).body);
	for (let i = 0; i < 2; i++) {
		const s = await st.openStream(await st.placeCall());
		await s.sendMedia(20);
		await s.elConv.waitAudioBytes(160 * 20, 10000);
		// The agent speaks: the call's set-up time is measured.
		s.elConv.sendAudio(Buffer.alloc(800, 0x7f), { chunkBytes: 160 });
		await waitFor(() => (st.d.log.match(/first agent audio \d+ ms after start/g) || []).length === i + 1,
		    10000, 'first agent audio');
		await s.sendStop();
	}
	await waitFor(() => (st.d.log.match(/ done: reason=stop/g) || []).length === 2, 10000, 'two done lines');
	const m = parseProm((await apiGet(st.d, '/metrics')).body);
	const d = (k) => m.get(k) - (before.get(k) ?? 0);
	assert.equal(d('naiberd_calls_placed_total'), 2);
	assert.equal(d('naiberd_handoffs_total'), 2);
	assert.equal(d('naiberd_calls_done_total'), 2);
	assert.equal(d('naiberd_frames_in_total'), 40);
	assert.equal(d('naiberd_jobs_enqueued_total'), 2);
	assert.equal(d('naiberd_handoff_seconds_count'), 2);
	// Both calls heard the agent: two set-up times, in the +Inf bucket too.
	assert.equal(d('naiberd_setup_seconds_count'), 2);
	assert.equal(d('naiberd_setup_seconds_bucket{le="+Inf"}'), 2);
	assert.ok(d('naiberd_setup_seconds_sum') > 0);
	assert.equal(m.get('naiberd_calls_active'), 0);
	assert.equal(m.get('naiberd_worker_crashes_total'), 0);
	assert.ok(m.get('naiberd_workers{state="idle"}') >= 1);
	await st.stop();
});

itest('/ready is 200, then 503 naming Redis when Redis stops', async () => {
	const st = await startStack({ workers: 1, maxCalls: 4 });
	const ok = await apiGet(st.d, '/ready');
	assert.equal(ok.status, 200, ok.body);
	await st.redis.stop();
	await waitFor(async () => (await apiGet(st.d, '/ready')).status === 503, 10000, '/ready to turn 503');
	const r = await apiGet(st.d, '/ready');
	assert.match(r.body, /Redis/);
	assert.equal((await apiGet(st.d, '/health')).status, 200, 'still alive');
	await st.stop();
});

itest('SIGHUP with a changed prompt: the next call gets it, a live call is untouched', async () => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-prompts-'));
	fs.cpSync(path.join(REPO, 'prompts'), dir, { recursive: true });
	const st = await startStack({ workers: 2, maxCalls: 6, env: { NAIBER_PROMPTS_DIR: dir } });
	try {
		const a = await st.openStream(await st.placeCall());
		const marker = `RELOAD-MARKER-${process.pid}`;
		assert.ok(!a.elConv.initRaw.includes(marker));
		fs.appendFileSync(path.join(dir, 'persona.txt'), `\n${marker}\n`);
		const since = st.d.log.length;
		process.kill(st.d.pid, 'SIGHUP');
		await waitFor(() => st.d.log.slice(since).includes('configuration reloaded'), 10000, 'the reload');
		const b = await st.openStream(await st.placeCall());
		assert.ok(b.elConv.initRaw.includes(marker), 'the next call carries the new template text');
		// The live call goes on: its audio still flows after the reload.
		await a.sendMedia(10);
		await a.elConv.waitAudioBytes(1600, 10000);
		await a.sendStop();
		await b.sendStop();
		await waitFor(() => (st.d.log.match(/ done: reason=stop/g) || []).length === 2, 10000, 'both calls done');
		// A broken template on reload is refused; the old set stays.
		fs.appendFileSync(path.join(dir, 'persona.txt'), '\n{{no_such_variable}}\n');
		const since2 = st.d.log.length;
		process.kill(st.d.pid, 'SIGHUP');
		await waitFor(() => /reload failed: prompts/.test(st.d.log.slice(since2)), 10000, 'the refused reload');
		const c = await st.openStream(await st.placeCall());
		assert.ok(c.elConv.initRaw.includes(marker) && !c.elConv.initRaw.includes('no_such_variable'));
		await c.sendStop();
		await sleep(300);
	} finally {
		await st.stop();
		fs.rmSync(dir, { recursive: true, force: true });
	}
});
