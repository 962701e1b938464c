// t_forksrv: workers come from the fork server, are the supervisor's own
// children, and are warm before they are idle: Redis and PostgreSQL
// connected (seen from the servers' side), READY counted in /metrics.  A
// fork server that dies is replaced and calls go on; SIGHUP makes a new
// one and the old one leaves; a stream finds a worker even while every
// worker is still warming up.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { itest, waitFor, redisCall, pidAlive, sleep } from '../lib/harness.mjs';
import { startStack } from '../lib/stack.mjs';

const ppidOf = (pid) => {
	const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
	return Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
};

/* Redis clients whose name-less connections come from pid's sockets. */
async function redisClients(port) {
	const list = String(await redisCall(port, 'CLIENT', 'LIST'));
	return list.split('\n').filter((l) => l.includes('cmd=') && !/cmd=client\|list/.test(l)).length;
}

async function idleSettled(d, n) {
	await waitFor(async () => {
		const m = await d.metrics();
		return m['naiberd_workers{state="idle"}'] === n &&
		    (m['naiberd_workers{state="starting"}'] ?? 0) === 0 && d.children().length === n;
	}, 10000, `${n} warm idle workers`);
}

itest('workers are forked by the fork server, are the supervisor\'s children, and are warm when idle',
    { timeout: 60000 }, async () => {
	const st = await startStack({ workers: 3, maxCalls: 6 });
	const { d } = st;
	await idleSettled(d, 3);
	const fsrv = d.forkServer();
	assert.ok(fsrv, `a "fork server N started" line\n${d.log}`);
	assert.equal(ppidOf(fsrv), d.pid, 'the fork server is the supervisor\'s child');
	for (const w of d.children()) {
		assert.equal(ppidOf(w), d.pid, `worker ${w} is the supervisor's child`);
		assert.notEqual(w, fsrv);
	}
	const m = await d.metrics();
	assert.ok(m['naiberd_worker_warmup_seconds_count'] >= 3, 'three READY reports');
	assert.ok(m['naiberd_worker_warmup_seconds_sum'] > 0);
	assert.match(d.log, /worker \d+ ready in \d+ us\n/, 'READY with everything up');

	// Each idle worker holds its Redis and PostgreSQL connections already.
	assert.ok(await redisClients(st.redis.port) >= 4, 'supervisor + 3 workers connected to Redis');
	const backends = Number(await st.pg.psql(
	    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"));
	assert.ok(backends >= 3, `3 idle workers hold PostgreSQL connections (${backends})`);

	// A call on a warm worker: bound, person loaded, conversation up.
	const call = await st.placeCall();
	const s = await st.openStream(call);
	assert.ok(d.children().includes(s.workerPid));
	assert.equal(ppidOf(s.workerPid), d.pid);
	await s.sendMedia(5);
	await s.elConv.waitAudioBytes(5 * 160, 5000);
	await s.sendStop();
	await waitFor(() => !pidAlive(s.workerPid), 10000, 'the call\'s worker exits');
	await idleSettled(d, 3);
	assert.equal(d.forkServer(), fsrv, 'the same fork server served the refill');
});

itest('a fork server that dies is logged and replaced; calls go on', { timeout: 60000 }, async () => {
	const st = await startStack({ workers: 2, maxCalls: 6 });
	const { d } = st;
	await idleSettled(d, 2);
	const old = d.forkServer();
	process.kill(old, 'SIGKILL');
	await d.waitLog(new RegExp(`fork server ${old} killed by signal 9`), 5000);
	await waitFor(() => d.forkServer() !== null && d.forkServer() !== old, 10000, 'a new fork server');
	assert.ok(d.alive(), 'supervisor alive');
	// Both idle workers outlived it; calls use them, and refills come
	// from the new fork server.
	const calls = [await st.placeCall(), await st.placeCall(), await st.placeCall()];
	for (const c of calls) {
		const s = await st.openStream(c, { timeoutMs: 15000 });
		await s.sendStop();
	}
	await idleSettled(d, 2);
	for (const w of d.children()) assert.equal(ppidOf(w), d.pid);
	assert.equal((await d.metrics())['naiberd_worker_crashes_total'], 0);
});

itest('SIGHUP starts a new fork server; the old one leaves, idle workers are replaced', { timeout: 60000 },
    async () => {
	const st = await startStack({ workers: 2, maxCalls: 6 });
	const { d } = st;
	await idleSettled(d, 2);
	const old = d.forkServer();
	const oldIdle = d.children();
	d.kill('SIGHUP');
	await d.waitLog(/SIGHUP: configuration reloaded/, 5000);
	await waitFor(() => !pidAlive(old), 5000, `old fork server ${old} gone`);
	await waitFor(() => d.forkServer() !== null && d.forkServer() !== old, 5000, 'a new fork server');
	await idleSettled(d, 2);
	for (const w of d.children()) assert.ok(!oldIdle.includes(w), `idle worker ${w} replaced`);
	const s = await st.openStream(await st.placeCall());
	await s.sendStop();
});

itest('streams find workers while the only ones are still warming up', { timeout: 60000 }, async () => {
	// One idle worker; four streams at once: three land on workers asked
	// for on the spot (STARTING), and every call sets up.
	const st = await startStack({ workers: 1, maxCalls: 8 });
	const { d } = st;
	await idleSettled(d, 1);
	const calls = await Promise.all([0, 1, 2, 3].map(() => st.placeCall()));
	await idleSettled(d, 1);	/* the PREPAREs are done */
	const streams = await Promise.all(calls.map((c) => st.openStream(c, { timeoutMs: 15000 })));
	assert.equal(new Set(streams.map((s) => s.workerPid)).size, 4, 'four distinct workers');
	for (const s of streams) await s.sendStop();
	await sleep(100);
	assert.ok(d.alive());
});
