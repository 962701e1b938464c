// t_jobs_bullmq: the post-call job that common/jobs.c writes (driven by
// the test program tests/unit/jobs_cli.c) is consumed by real, unmodified
// BullMQ Workers, 5.x (the original's) and 6.x (tests/peers/bullmq5 and
// bullmq6, run by tests/peers/bull-consumer.mjs), each on its own
// redis-server: exact name, data types, opts, the 3 s delay, dedup, three
// attempts with growing back-off, and the removeOnComplete/removeOnFail
// trimming.  Then a job spooled while Redis was down is replayed and
// consumed once, and the enqueue latency over 1000 jobs is printed (not
// asserted: DESIGN §11).
//
// JOBS_CLI=/path/to/jobs_cli uses a prebuilt driver; otherwise make's
// build/jobs_cli if it exists, else one compiled with cc and pkg-config
// into a temporary directory (tests/lib/jobs.mjs).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { itest, startRedis, waitFor, freePort } from '../lib/harness.mjs';
import { JOB_PREFIX as Q } from '../lib/stack.mjs';
import { CONSUMER, startConsumer as startWorker, runCli } from '../lib/jobs.mjs';

const VERSIONS = [['bullmq5', /^5\./], ['bullmq6', /^6\./]];

/* A real BullMQ Worker in bull-consumer.mjs's auto mode (fail2-* and failall-* ids fail); the test stops it. */
const startConsumer = (mod, port) => startWorker(mod, port, { mode: 'auto' });

/* Queue.pause() or Queue.resume() with that BullMQ. */
function queueCmd(mod, port, what) {
	const r = spawnSync(process.execPath, [CONSUMER, mod, String(port), what],
	    { encoding: 'utf8', timeout: 15000 });
	assert.equal(r.status, 0, `${what}: ${r.stderr}`);
}

function hashOf(arr) {
	const o = {};
	for (let i = 0; i < arr.length; i += 2) o[arr[i]] = arr[i + 1];
	return o;
}

const EXPECTED_OPTS = {
	attempts: 3, backoff: { type: 'exponential', delay: 1000 },
	removeOnComplete: 100, removeOnFail: 50, delay: 3000,
};

for (const [mod, verRx] of VERSIONS) {
	itest(`${mod}: real Worker consumes the job (name, data types, opts, 3 s delay, dedup, ` +
	    'retries with back-off, removeOnComplete/removeOnFail trimming)', { timeout: 90000 }, async (t) => {
		const redis = await startRedis();
		const spool = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-jobs-spool-'));
		let consumer = null;
		try {
			// Two jobs, one duplicate: 1 and 2 added, then 1 again.
			const t0 = Date.now();
			const a = await runCli(['-f', '-u', 'user-1', '-s', spool, redis.url, 'conv-basic-1']);
			const b = await runCli(['-t', 'health_check', '-u', 'user-2', '-s', spool, redis.url,
			    'conv-basic-2', 'conv-basic-1']);
			const t1 = Date.now();
			assert.equal(a.code, 0, a.stderr);
			assert.equal(b.code, 0, b.stderr);
			assert.deepEqual([...a.lines, ...b.lines].map((l) => [l.outcome, l.id]),
			    [['added', '1'], ['added', '2'], ['duplicate', '1']]);
			assert.equal(fs.readdirSync(spool).length, 0, 'nothing spooled');

			// The hash before any Worker touched it.
			const h = hashOf(await redis.call('HGETALL', `${Q}1`));
			assert.deepEqual(Object.keys(h).sort(),
			    ['data', 'deid', 'delay', 'name', 'opts', 'priority', 'timestamp']);
			assert.equal(h.name, 'process-post-call');
			assert.equal(h.delay, '3000');
			assert.equal(h.priority, '0');
			assert.equal(h.deid, 'conv-basic-1');
			assert.ok(Number(h.timestamp) >= t0 - 1000 && Number(h.timestamp) <= t1 + 1000);
			assert.deepEqual(JSON.parse(h.opts),
			    { ...EXPECTED_OPTS, de: { id: 'conv-basic-1', ttl: 300000 } });
			assert.match(h.data, /^\{"conversationId":"conv-basic-1","userId":"user-1","isFirstCall":true,"callType":"general","timestamp":\d+\}$/);

			// Retries, and the trimming load: 105 that succeed, 55 that
			// always fail (3 attempts each, 1 s then 2 s back-off).
			const keep = Array.from({ length: 105 }, (_, i) => `keep-${i}`);
			const fail = Array.from({ length: 55 }, (_, i) => `failall-${i}`);
			const c = await runCli(['-s', spool, redis.url, 'fail2-retry', ...keep, ...fail]);
			assert.equal(c.code, 0, c.stderr);
			assert.equal(c.lines.length, 161);
			assert.ok(c.lines.every((l) => l.outcome === 'added'), JSON.stringify(c.lines.find((l) => l.outcome !== 'added')));

			consumer = await startConsumer(mod, redis.port);
			const ready = consumer.events.find((e) => e.event === 'ready');
			assert.match(ready.version, verRx);
			const ev = consumer.events;
			await waitFor(() => ev.filter((e) => e.event === 'completed').length >= 108 &&
			    ev.filter((e) => e.event === 'failed' && e.attemptsMade === 3).length >= 55,
			    40000, '108 completed and 55 finally failed jobs');

			// The two basic jobs: once each, exact data types and opts,
			// not before 3 s.
			const procs = ev.filter((e) => e.event === 'process');
			const basic = procs.filter((e) => e.data.conversationId.startsWith('conv-basic-'));
			assert.equal(basic.length, 2, 'one job per conversation');
			for (const e of basic) {
				const first = e.data.conversationId === 'conv-basic-1';
				assert.equal(e.name, 'process-post-call');
				assert.deepEqual(Object.keys(e.data),
				    ['conversationId', 'userId', 'isFirstCall', 'callType', 'timestamp']);
				assert.equal(e.data.userId, first ? 'user-1' : 'user-2');
				assert.equal(typeof e.data.isFirstCall, 'boolean');
				assert.equal(e.data.isFirstCall, first);
				assert.equal(e.data.callType, first ? 'general' : 'health_check');
				assert.equal(typeof e.data.timestamp, 'number');
				assert.ok(Number.isInteger(e.data.timestamp));
				assert.ok(e.data.timestamp >= t0 - 1000 && e.data.timestamp <= t1 + 1000);
				assert.equal(e.opts.attempts, 3);
				assert.deepEqual(e.opts.backoff, { type: 'exponential', delay: 1000 });
				assert.equal(e.opts.removeOnComplete, 100);
				assert.equal(e.opts.removeOnFail, 50);
				assert.equal(e.opts.delay, 3000);
				assert.equal(e.attemptsMade, 0);
				assert.ok(e.delta >= 2900, `processed ${e.delta} ms after enqueue (delay 3000)`);
			}

			// Thrown on attempts 1 and 2: three attempts, ~1 s then ~2 s.
			const r = procs.filter((e) => e.data.conversationId === 'fail2-retry');
			assert.deepEqual(r.map((e) => e.attemptsMade), [0, 1, 2]);
			const g1 = r[1].processedOn - r[0].processedOn;
			const g2 = r[2].processedOn - r[1].processedOn;
			t.diagnostic(`${mod}: retry gaps ${g1} ms, ${g2} ms`);
			assert.ok(g1 >= 950 && g1 < 1900, `first back-off ${g1} ms (1000 expected)`);
			assert.ok(g2 >= 1950 && g2 < 3500, `second back-off ${g2} ms (2000 expected)`);
			assert.ok(ev.some((e) => e.event === 'completed' && e.id === r[0].id));

			// 108 completed (removeOnComplete 100), 55 failed (removeOnFail 50).
			assert.equal(procs.filter((e) => e.data.conversationId.startsWith('failall-')).length, 165);
			assert.equal(await redis.call('ZCARD', `${Q}completed`), 100);
			assert.equal(await redis.call('ZCARD', `${Q}failed`), 50);
		} finally {
			if (consumer) await consumer.stop();
			fs.rmSync(spool, { recursive: true, force: true });
		}
	});
}

for (const [mod] of VERSIONS) {
	itest(`${mod}: a paused queue is respected: the due job waits for resume()`, { timeout: 60000 }, async () => {
		const redis = await startRedis();
		const spool = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-jobs-spool-'));
		let consumer = null;
		try {
			queueCmd(mod, redis.port, 'pause');
			const r = await runCli(['-s', spool, redis.url, 'conv-paused']);
			assert.equal(r.lines[0].outcome, 'added', r.stderr);
			consumer = await startConsumer(mod, redis.port);
			// Due after 3 s; a Worker polling a paused queue leaves it.
			await new Promise((res) => setTimeout(res, 4500));
			assert.equal(consumer.events.filter((e) => e.event === 'process').length, 0,
			    'processed while the queue was paused');
			queueCmd(mod, redis.port, 'resume');
			await consumer.waitCompleted(1, { what: 'the job completed after resume()' });
		} finally {
			if (consumer) await consumer.stop();
			fs.rmSync(spool, { recursive: true, force: true });
		}
	});
}

itest('Redis down: spooled; Redis up: replayed once, consumed once by BullMQ 5', { timeout: 60000 }, async () => {
	const port = await freePort();
	const spool = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-jobs-spool-'));
	let consumer = null;
	try {
		const down = await runCli(['-s', spool, '-W', '300', `redis://127.0.0.1:${port}`, 'conv-down']);
		assert.equal(down.lines[0].outcome, 'spooled', down.stderr);
		assert.deepEqual(fs.readdirSync(spool), ['conv-down.job']);
		const redis = await startRedis({ port });
		const r1 = await runCli(['-r', '-s', spool, redis.url]);
		assert.deepEqual(r1.lines, [{ replayed: 1, left: 0 }], r1.stderr);
		assert.deepEqual(fs.readdirSync(spool), []);
		// The same job spooled again (say, by a worker that timed out):
		// the replay finds the dedup key.
		const again = await runCli(['-s', spool, '-W', '300', 'redis://127.0.0.1:1', 'conv-down']);
		assert.equal(again.lines[0].outcome, 'spooled');
		const r2 = await runCli(['-r', '-s', spool, redis.url]);
		assert.deepEqual(r2.lines, [{ replayed: 1, left: 0 }], r2.stderr);
		assert.deepEqual(fs.readdirSync(spool), []);
		assert.equal(await redis.call('GET', `${Q}id`), '1', 'one job');
		consumer = await startConsumer('bullmq5', port);
		await consumer.waitCompleted(1);
		const procs = consumer.events.filter((e) => e.event === 'process');
		assert.equal(procs.length, 1);
		assert.equal(procs[0].data.conversationId, 'conv-down');
	} finally {
		if (consumer) await consumer.stop();
		fs.rmSync(spool, { recursive: true, force: true });
	}
});

itest('enqueue latency over 1000 jobs (printed, not asserted)', { timeout: 60000 }, async (t) => {
	const redis = await startRedis();
	const spool = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-jobs-spool-'));
	try {
		const r = await runCli(['-l', '1000', '-P', 'lat', '-s', spool, redis.url]);
		assert.equal(r.code, 0, r.stderr);
		const m = r.lines[0];
		assert.equal(m.n, 1000);
		assert.equal(m.notAdded, 0);
		t.diagnostic(`enqueue latency (jobs_enqueue to callback, one at a time, ` +
		    `loopback redis-server): p50 ${m.p50_us} us, p99 ${m.p99_us} us, max ${m.max_us} us`);
		assert.equal(await redis.call('GET', 'lat:post-call-processing:id'), '1000');
	} finally {
		fs.rmSync(spool, { recursive: true, force: true });
	}
});
