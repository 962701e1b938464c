// t_spool_full: Redis down and the spool directory refusing writes at the
// same time (issue 16 item 5).  The post-call job is then held in memory
// by the supervisor, which retries Redis and the spool every sweep (5 s)
// and on a Redis reconnect; /ready answers 503 "post-call jobs held in
// memory (spool unwritable)" and naiberd_jobs_held counts it meanwhile.
//   1. A whole call ends with Redis stopped and the spool full: the worker
//      cannot save the job and says so in DONE; the supervisor holds it
//      (log line, /ready, metrics), passes keep failing without writing a
//      file; Redis back on the same port: the job is added exactly once
//      with the call's data, consumed once, /ready 200, nothing lost.
//   2. The same, but the spool accepts files again before Redis is back:
//      the held job is spooled on the next pass (/ready now says Redis),
//      then replayed once Redis returns.
//   3. A worker killed mid-call under the same outage: the supervisor's
//      own clean-up cannot save the job either and holds it; Redis back:
//      added once.
//   4. naiberd stopped while it holds a job and both still fail: the job
//      is logged at error level with its data (so it can be added by
//      hand), the loss is counted in the last line, exit 0.
// How the spool is made to refuse writes depends on who runs the tests:
// not root: chmod 0500 (EACCES); root: a 64 KiB tmpfs mounted on the
// spool directory and filled (ENOSPC), or where mount is not allowed the
// directory swapped for a regular file (ENOTDIR).  Skipped, with the
// reason, only if none of these takes.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { itest, startRedis, waitFor, sleep, makeTempDir } from '../lib/harness.mjs';
import { boundDone } from '../lib/bind.mjs';
import { startStack, DEFAULT_PERSON, reEsc, JOB_PREFIX } from '../lib/stack.mjs';
import { startConsumer } from '../lib/jobs.mjs';

const HELD_REASON = 'post-call jobs held in memory (spool unwritable)';
const SWEEP_MS = 5000;

// --------------------------------------------------------------- helpers

/* True if a new file cannot be written into dir now. */
function refusesWrites(dir) {
	const probe = path.join(dir, `.probe-${process.pid}`);
	try {
		fs.writeFileSync(probe, 'x');
		return false;
	} catch {
		return true;
	} finally {
		// A full file system creates the file, then refuses its byte.
		try { fs.rmSync(probe, { force: true }); } catch { /* not a directory */ }
	}
}

/*
 * Make the spool directory refuse new files while naiberd runs.
 * Resolves {how, errno, reopen(), release()}: reopen() lets it take
 * files again (the same directory, same path), release() undoes
 * everything (idempotent; must run before the temp dir is removed).
 * null if nothing works here.
 */
function blockSpool(dir) {
	if (process.getuid() !== 0) {
		fs.chmodSync(dir, 0o500);
		if (refusesWrites(dir)) {
			const reopen = () => fs.chmodSync(dir, 0o700);
			return { how: 'chmod 0500', errno: 'Permission denied', reopen, release: reopen };
		}
		fs.chmodSync(dir, 0o700);
	}
	if (process.getuid() === 0) {
		let mounted = false;
		try {
			execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'naiberd-spool-full', dir],
			    { stdio: 'pipe' });
			mounted = true;
			const filler = path.join(dir, 'filler');
			const fd = fs.openSync(filler, 'w', 0o600);
			try {
				for (;;) fs.writeSync(fd, Buffer.alloc(4096, 0x2e));
			} catch (e) {
				if (e.code !== 'ENOSPC') throw e;
			} finally {
				fs.closeSync(fd);
			}
			if (refusesWrites(dir)) {
				const reopen = () => fs.rmSync(filler, { force: true });
				const release = () => {
					if (!mounted) return;
					try {
						execFileSync('umount', [dir], { stdio: 'pipe' });
					} catch {
						execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
					}
					mounted = false;
				};
				return { how: 'a full 64 KiB tmpfs', errno: 'No space left on device', reopen, release };
			}
			execFileSync('umount', [dir], { stdio: 'pipe' });
			mounted = false;
		} catch {
			if (mounted) try { execFileSync('umount', ['-l', dir], { stdio: 'pipe' }); } catch { /* gone */ }
		}
	}
	// Anyone: the directory moved aside and a regular file in its place.
	const away = `${dir}.away`;
	fs.renameSync(dir, away);
	fs.writeFileSync(dir, '', { mode: 0o600 });
	if (refusesWrites(dir)) {
		let swapped = true;
		const reopen = () => {
			if (!swapped) return;
			fs.rmSync(dir, { force: true });
			fs.renameSync(away, dir);
			swapped = false;
		};
		return { how: 'the directory swapped for a regular file', errno: 'Not a directory', reopen,
		    release: reopen };
	}
	fs.rmSync(dir, { force: true });
	fs.renameSync(away, dir);
	return null;
}

/* Spool entries that are jobs or temp files (not our filler). */
const spoolFiles = (dir) => (fs.statSync(dir).isDirectory() ? fs.readdirSync(dir) : [])
    .filter((f) => f !== 'filler').sort();

async function ready(d) {
	const r = await d.http('GET', '/ready');
	return { status: r.status, error: r.json?.error, body: r.body };
}

async function metric(d, name) {
	return (await d.metrics())[name];
}

/*
 * A stack with one call whose conversation is up; Redis is stopped and
 * is stopped (the spool is blocked by the caller).  Returns {st, d,
 * spool, call, s, conv, port, mark}.
 */
async function outage({ health = false } = {}) {
	const st = await startStack({ workers: 2 });
	const { d } = st;
	const spool = d.env.NAIBER_SPOOL_DIR;
	assert.deepEqual(fs.readdirSync(spool), [], 'spool directory empty at start');
	const mark = d.logMark();
	const call = await st.placeCall(health ? { health: true } : undefined);
	const s = await st.openStream(call);
	await s.sendMedia(5);
	const conv = s.conversationId;
	const port = st.redis.port;
	await st.redis.stop();
	await d.waitLog('redis: connection lost', 10000, mark);
	return { st, d, spool, call, s, conv, port, mark };
}

/* The held state, as the log, /ready and /metrics show it. */
async function assertHeld(d, conv, mark) {
	await d.waitLog(new RegExp(`supervisor\\[\\d+\\] warn: jobs: conversation ${reEsc(conv)}: neither Redis nor ` +
	    'the spool took it: held in memory \\(1 held\\)'), 15000, mark);
	const r = await ready(d);
	assert.equal(r.status, 503, r.body);
	assert.equal(r.error, HELD_REASON);
	assert.equal(await metric(d, 'naiberd_jobs_held'), 1);
	assert.equal(await metric(d, 'naiberd_jobs_lost_total'), 0);
}

async function checkJob(st, conv, { callType, tMin, tMax }) {
	const jobs = await st.postCallJobs();
	assert.equal(jobs.length, 1, `exactly one job: ${JSON.stringify(jobs.map((j) => j.data))}`);
	const [job] = jobs;
	assert.equal(job.name, 'process-post-call');
	assert.deepEqual(Object.keys(job.data).sort(), ['callType', 'conversationId', 'isFirstCall', 'timestamp', 'userId']);
	assert.equal(job.data.conversationId, conv);
	assert.equal(job.data.userId, DEFAULT_PERSON.id);
	assert.equal(job.data.isFirstCall, DEFAULT_PERSON.isFirstCall);
	assert.equal(job.data.callType, callType);
	assert.ok(Number.isInteger(job.data.timestamp) && job.data.timestamp >= tMin - 50 &&
	    job.data.timestamp <= tMax + 50, `timestamp ${job.data.timestamp} in [${tMin}, ${tMax}]`);
	assert.equal(job.opts.delay, 3000);
	assert.equal(await st.redis.call('GET', `${JOB_PREFIX}id`), '1', 'one job id ever taken');
	return job;
}

// ----------------------------------------------------------------- tests

itest('Redis down and the spool full at call end: the job is held in memory (log, /ready 503, ' +
    'naiberd_jobs_held 1); Redis back: added once with the call\'s data, /ready 200, nothing lost',
{ timeout: 120000 }, async (t) => {
	const { st, d, spool, call, s, conv, port, mark } = await outage();
	const blk = blockSpool(spool);
	if (blk === null) {
		t.skip('no way to make the spool directory refuse writes here (not chmod, not tmpfs, not a file)');
		return;
	}
	t.diagnostic(`spool made unwritable with ${blk.how}`);
	try {
		const tStop = Date.now();
		await s.sendStop();
		const dn = await boundDone(d, call.callSid, { timeoutMs: 15000, since: mark });
		assert.equal(dn.reason, 'stop');
		const tDone = Date.now();
		const log = () => d.log.slice(mark);
		assert.match(log(), new RegExp(`jobs: conversation ${reEsc(conv)}: Redis did not take it \\([^)]*\\) ` +
		    'and the spool failed: not saved'));
		assert.match(log(), new RegExp(`callSid=${reEsc(call.callSid)} [^\\n]*post-call job for ${reEsc(conv)} ` +
		    'could not be queued or spooled'));
		await assertHeld(d, conv, mark);
		assert.deepEqual(spoolFiles(spool), [], 'no job file, no temp file left in the spool');

		// Passes keep failing (one warning, not one per pass) and write nothing.
		await d.waitLog(new RegExp(`jobs: 1 post-call jobs held in memory: the spool ${reEsc(spool)} still fails ` +
		    `\\(${blk.errno}\\); retrying`), SWEEP_MS + 3000, mark);
		await sleep(SWEEP_MS + 1000);
		assert.equal(d.logMatches(/post-call jobs held in memory: the spool .* still fails/, mark).length, 1);
		assert.equal(await metric(d, 'naiberd_jobs_held'), 1);
		assert.equal((await ready(d)).error, HELD_REASON);
		assert.deepEqual(spoolFiles(spool), []);

		// Redis back on the same port, empty: the held job goes to it.
		const mark2 = d.logMark();
		const tUp = Date.now();
		st.redis = await startRedis({ port });
		await d.waitLog(new RegExp(`jobs: conversation ${reEsc(conv)}: held job added as job 1`), 15000, mark2);
		t.diagnostic(`held job in Redis ${Date.now() - tUp} ms after redis-server was started again`);
		await d.waitLog('jobs: no post-call job held in memory any more', 5000, mark2);
		await checkJob(st, conv, { callType: 'general', tMin: tStop, tMax: tDone });
		assert.equal(await metric(d, 'naiberd_jobs_held'), 0);
		await waitFor(async () => (await ready(d)).status === 200, 10000, '/ready 200 again', 200);
		assert.deepEqual(spoolFiles(spool), [], 'the spool was never needed');

		// Later passes add nothing; nothing was lost.
		await sleep(SWEEP_MS + 1000);
		assert.equal((await st.postCallJobs()).length, 1);
		assert.equal(await metric(d, 'naiberd_jobs_lost_total'), 0);
		assert.equal(await metric(d, 'naiberd_jobs_enqueued_total'), 1);
		assert.doesNotMatch(d.log.slice(mark), /LOST/);
		const consumer = await startConsumer('bullmq5', port, { t });
		await consumer.waitCompleted(1, { what: 'the held job completed', settleMs: 1500 });
		assert.equal(consumer.processed().length, 1);
		assert.equal(consumer.processed()[0].data.conversationId, conv);
		assert.ok(d.alive(), 'supervisor alive');
	} finally {
		blk.release();
	}
});

itest('spool writable again before Redis is back: the held job is spooled on the next pass, then replayed ' +
    'once Redis returns', { timeout: 120000 }, async (t) => {
	const { st, d, spool, call, s, conv, port, mark } = await outage();
	const blk = blockSpool(spool);
	if (blk === null) {
		t.skip('no way to make the spool directory refuse writes here (not chmod, not tmpfs, not a file)');
		return;
	}
	t.diagnostic(`spool made unwritable with ${blk.how}`);
	try {
		const tStop = Date.now();
		await s.sendStop();
		await boundDone(d, call.callSid, { timeoutMs: 15000, since: mark });
		const tDone = Date.now();
		await assertHeld(d, conv, mark);

		// The spool takes files again; Redis is still down.
		const mark2 = d.logMark();
		blk.reopen();
		await d.waitLog(new RegExp(`jobs: conversation ${reEsc(conv)}: held job spooled to ` +
		    `${reEsc(spool)}/${reEsc(conv)}\\.job`), SWEEP_MS + 5000, mark2);
		assert.deepEqual(spoolFiles(spool), [`${conv}.job`]);
		const sp = JSON.parse(fs.readFileSync(path.join(spool, `${conv}.job`), 'utf8'));
		assert.equal(sp.prefix, 'bull');
		assert.equal(sp.data.conversationId, conv);
		assert.equal(sp.data.userId, DEFAULT_PERSON.id);
		assert.equal(sp.data.callType, 'general');
		assert.equal(await metric(d, 'naiberd_jobs_held'), 0);
		assert.equal(await metric(d, 'naiberd_jobs_spooled_total'), 1);
		const r = await ready(d);
		assert.equal(r.status, 503);
		assert.equal(r.error, 'Redis unavailable', 'no job held any more: the reason is Redis');

		// Redis back: the spool is replayed.
		const mark3 = d.logMark();
		st.redis = await startRedis({ port });
		await d.waitLog(/spool: 1 post-call jobs replayed, 0 left/, 15000, mark3);
		assert.deepEqual(spoolFiles(spool), []);
		const job = await checkJob(st, conv, { callType: 'general', tMin: tStop, tMax: tDone });
		assert.deepEqual(job.data, sp.data, 'the job carries the spooled data unchanged');
		await waitFor(async () => (await ready(d)).status === 200, 10000, '/ready 200 again', 200);
		assert.equal(await metric(d, 'naiberd_jobs_lost_total'), 0);
		assert.doesNotMatch(d.log.slice(mark3), /held job added/, 'not added a second time from memory');
	} finally {
		blk.release();
	}
});

itest('worker killed during the same outage: the supervisor\'s clean-up holds the orphan\'s job; Redis back: ' +
    'added once', { timeout: 90000 }, async (t) => {
	const { st, d, spool, call, conv, port, mark } = await outage({ health: true });
	const blk = blockSpool(spool);
	if (blk === null) {
		t.skip('no way to make the spool directory refuse writes here (not chmod, not tmpfs, not a file)');
		return;
	}
	t.diagnostic(`spool made unwritable with ${blk.how}`);
	try {
		const pid = Number(new RegExp(`supervisor\\[\\d+\\] info: worker (\\d+) call ${reEsc(call.callSid)} stream `)
		    .exec(d.log.slice(mark))?.[1]);
		assert.ok(d.children().includes(pid), `worker ${pid} of the call`);
		const tKill = Date.now();
		process.kill(pid, 'SIGKILL');
		await d.waitLog(new RegExp(`call ${reEsc(call.callSid)} conversation ${reEsc(conv)}: post-call job held ` +
		    'in memory after the worker died'), 10000, mark);
		const tHeld = Date.now();
		await assertHeld(d, conv, mark);
		assert.deepEqual(spoolFiles(spool), []);

		const mark2 = d.logMark();
		st.redis = await startRedis({ port });
		await d.waitLog(new RegExp(`jobs: conversation ${reEsc(conv)}: held job added as job 1`), 15000, mark2);
		await checkJob(st, conv, { callType: 'health_check', tMin: tKill, tMax: tHeld });
		await waitFor(async () => (await ready(d)).status === 200, 10000, '/ready 200 again', 200);
		assert.equal(await metric(d, 'naiberd_jobs_held'), 0);
		assert.equal(await metric(d, 'naiberd_jobs_lost_total'), 0);
	} finally {
		blk.release();
	}
});

itest('stopped while a job is held and the spool still refuses it: the job is logged with its data at ' +
    'error level, counted, exit 0', { timeout: 90000 }, async (t) => {
	const { d, spool, call, conv, mark } = await outage();
	const blk = blockSpool(spool);
	if (blk === null) {
		t.skip('no way to make the spool directory refuse writes here (not chmod, not tmpfs, not a file)');
		return;
	}
	t.diagnostic(`spool made unwritable with ${blk.how}`);
	try {
		const pid = Number(new RegExp(`supervisor\\[\\d+\\] info: worker (\\d+) call ${reEsc(call.callSid)} stream `)
		    .exec(d.log.slice(mark))?.[1]);
		process.kill(pid, 'SIGKILL');
		await assertHeld(d, conv, mark);
		const mark2 = d.logMark();
		await d.stop(15000);
		assert.deepEqual(d.exitInfo, { code: 0, signal: null });
		const m = new RegExp(`supervisor\\[\\d+\\] error: jobs: conversation ${reEsc(conv)}: LOST at exit: neither ` +
		    'Redis nor the spool took it; its data: (\\{.*\\})\n').exec(d.log.slice(mark2));
		assert.ok(m, 'the lost job logged with its data');
		const data = JSON.parse(m[1]);
		assert.equal(data.conversationId, conv);
		assert.equal(data.userId, DEFAULT_PERSON.id);
		assert.equal(data.callType, 'general');
		assert.match(d.log.slice(mark2), /error: jobs: 1 of the 1 post-call jobs held in memory at exit are lost/);
		assert.deepEqual(spoolFiles(spool), []);
	} finally {
		blk.release();
	}
});

// Not a test of naiberd: the helper itself, so a skip above means what it says.
itest('blockSpool makes a directory refuse writes and reopen() gives it back', async (t) => {
	const dir = path.join(makeTempDir('naiberd-spoolfull-'), 'spool');
	fs.mkdirSync(dir, { mode: 0o700 });
	const blk = blockSpool(dir);
	if (blk === null) {
		t.skip('no way to make a directory refuse writes here');
		return;
	}
	try {
		t.diagnostic(blk.how);
		assert.ok(refusesWrites(dir));
		blk.reopen();
		assert.ok(!refusesWrites(dir));
	} finally {
		blk.release();
	}
});
