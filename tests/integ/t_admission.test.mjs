// t_admission: admission from measured headroom.  Memory (a floor above
// what the machine has) and CPU pressure (busy-loop hogs beside naiberd)
// close it: POST /call answers 503 with Retry-After and a JSON reason and
// nothing is dialled, /ready turns 503, /metrics and one log line say so;
// a stream for a call dialled before is still served.  It reopens, logged,
// within 10 s of the pressure going away; admission = false keeps only
// max_calls.  The relay lag of a live call reaches /metrics.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { itest, waitFor, sleep, apiPost, TEST_PHONE } from '../lib/harness.mjs';
import { startStack } from '../lib/stack.mjs';

const HUGE_MIB = 1048576;	/* 1 TiB: more than any test machine has */

async function callRaw(st) {
	return apiPost(st.d, '/call', { phone: TEST_PHONE });
}

async function metric(d, name) {
	return (await d.metrics())[name];
}

itest('memory below the floor closes admission: 503 + Retry-After before any dial, /ready 503; reload reopens it',
    { timeout: 60000 }, async () => {
	const st = await startStack({ workers: 1, maxCalls: 4, waitReady: false,
	    confText: `admission_memory = ${HUGE_MIB}\n` });
	const { d, tw } = st;
	await d.waitLog(/admission: closed by memory: \d+\.\d MiB available \(limit 1048576\)/, 5000);
	const before = tw.creates().length;
	const r = await callRaw(st);
	assert.equal(r.status, 503, r.body);
	assert.equal(r.headers['retry-after'], '30');
	const j = JSON.parse(r.body);
	assert.equal(j.success, false);
	assert.equal(j.reason, 'memory');
	assert.equal(j.retryAfter, 30);
	assert.equal(tw.creates().length, before, 'nothing dialled');
	await d.waitLog(/POST \/call refused: no headroom \(memory\)/, 3000);
	const rd = await d.http('GET', '/ready');
	assert.equal(rd.status, 503);
	assert.equal(rd.headers['retry-after'], '30');
	assert.equal(JSON.parse(rd.body).reason, 'memory');
	assert.equal(await metric(d, 'naiberd_admission_open'), 0);
	assert.equal(await metric(d, 'naiberd_calls_refused_total{cause="headroom"}'), 1);
	assert.equal(await metric(d, 'naiberd_calls_admitted_total'), 0);
	assert.equal(await metric(d, 'naiberd_admission_closings_total'), 1);
	assert.ok(await metric(d, 'naiberd_headroom{signal="memory_available_mib"}') > 0);
	// One closing line, however long it stays closed.
	await sleep(2500);
	assert.equal(d.logMatches(/admission: closed by/g).length, 1, 'logged once');

	// The floor back to normal: open again after the 5 s hold, logged.
	const mark = d.logMark();
	fs.writeFileSync(d.confPath, 'admission_memory = 64\n', { mode: 0o600 });
	const t0 = Date.now();
	d.kill('SIGHUP');
	await d.waitLog(/admission: open again after \d+ s \(memory back to \d+\.\d\)/, 10000, mark);
	assert.ok(Date.now() - t0 < 10000, 'reopened within 10 s');
	assert.equal(await metric(d, 'naiberd_admission_open'), 1);
	assert.equal((await d.http('GET', '/ready')).status, 200);
	const call = await st.placeCall();
	assert.match(call.callSid, /^CA/);
	assert.equal(await metric(d, 'naiberd_calls_admitted_total'), 1);
});

itest('a stream for a call dialled before admission closed is served', { timeout: 60000 }, async () => {
	const st = await startStack({ workers: 1, maxCalls: 4 });
	const { d } = st;
	const call = await st.placeCall();
	const mark = d.logMark();
	fs.writeFileSync(d.confPath, `admission_memory = ${HUGE_MIB}\n`, { mode: 0o600 });
	d.kill('SIGHUP');
	await d.waitLog(/admission: closed by memory/, 5000, mark);
	assert.equal((await callRaw(st)).status, 503);
	const s = await st.openStream(call);
	await s.sendMedia(10);
	await s.elConv.waitAudioBytes(1600, 5000);
	await s.sendStop();
	await d.waitLog(new RegExp(`call ${call.callSid} done: reason=stop`), 10000, mark);
});

itest('admission = false: only max_calls limits calls', { timeout: 30000 }, async () => {
	const st = await startStack({ workers: 1, maxCalls: 4,
	    confText: `admission = false\nadmission_memory = ${HUGE_MIB}\n` });
	const { d } = st;
	await sleep(2500);
	assert.doesNotMatch(d.log, /admission: closed/);
	assert.equal(await metric(d, 'naiberd_admission_open'), 1);
	await st.placeCall();
	assert.equal((await d.http('GET', '/ready')).status, 200);
});

itest('CPU pressure from hogs beside naiberd closes admission; it reopens once they stop', { timeout: 60000 },
    async (t) => {
	const st = await startStack({ workers: 1, maxCalls: 4, confText: 'admission_cpu = 40\n' });
	const { d } = st;
	await sleep(2000);
	assert.equal(await metric(d, 'naiberd_admission_open'), 1, 'open on a quiet machine');
	const n = os.availableParallelism() * 2 + 1;
	const hogs = Array.from({ length: n }, () =>
	    spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }));
	const stop = () => { for (const h of hogs) try { h.kill('SIGKILL'); } catch { /* gone */ } };
	t.after(stop);
	try {
		await d.waitLog(/admission: closed by CPU pressure: \d+\.\d %/, 10000);
		const r = await callRaw(st);
		assert.equal(r.status, 503);
		assert.equal(JSON.parse(r.body).reason, 'CPU pressure');
		assert.ok(await metric(d, 'naiberd_headroom{signal="cpu_pressure_percent"}') >= 40);
	} finally {
		stop();
	}
	const t0 = Date.now();
	await d.waitLog(/admission: open again after \d+ s \(CPU pressure back to/, 15000);
	assert.ok(Date.now() - t0 < 12000, `reopened ${Date.now() - t0} ms after the hogs stopped`);
	assert.equal((await callRaw(st)).status, 200);
});

itest('the relay lag of a live call reaches /metrics', { timeout: 30000 }, async () => {
	const st = await startStack({ workers: 1, maxCalls: 4 });
	const { d } = st;
	const s = await st.openStream(await st.placeCall());
	for (let i = 0; i < 3; i++) {
		await s.sendMedia(50);
		await sleep(1000);
	}
	await waitFor(async () => await metric(d, 'naiberd_headroom{signal="relay_lag_ms"}') > 0, 5000,
	    'a relay lag from the worker');
	const lag = await metric(d, 'naiberd_headroom{signal="relay_lag_ms"}');
	assert.ok(lag > 0 && lag < 1000, `lag ${lag} ms`);
	await s.sendStop();
});
