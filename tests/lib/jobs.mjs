// jobs.mjs - the post-call job side of the integration tests: a real,
// unmodified BullMQ Worker (tests/peers/bull-consumer.mjs, BullMQ 5 or 6)
// on the queue naiberd writes, the jobs_cli driver of common/jobs.c, and
// the Redis checks that follow finished calls.
//
//   import { startConsumer, assertNoSessionKeys } from '../lib/jobs.mjs';
//   const consumer = await startConsumer('bullmq5', st.redis.port, { t });
//   ...calls...
//   const procs = await consumer.waitCompleted(2, { settleMs: 1500 });
//   await assertNoSessionKeys(st.redis);
//
// Every wait here is bounded; consumers and the driver are killed at
// process exit as a last resort.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { waitFor, withTimeout, sleep, REPO } from './harness.mjs';
import { scanKeys } from './stack.mjs';

export const CONSUMER = path.join(REPO, 'tests', 'peers', 'bull-consumer.mjs');

const consumers = new Set();
let cliDir = null;
let cliBuilt = null;
process.on('exit', () => {
	for (const c of consumers) try { c.proc.kill('SIGKILL'); } catch { /* gone */ }
	if (cliDir) fs.rmSync(cliDir, { recursive: true, force: true });
});

/*
 * A real BullMQ Worker (mod: bullmq5 or bullmq6) on the redis-server at
 * port, in bull-consumer.mjs processor mode `mode` ('ok'; 'auto' picks by
 * conversationId).  Resolves once the Worker is ready (15 s at most;
 * stopped if it is not).  With t (a node:test context) it is stopped when
 * the test ends, whatever happens (t.after); without, the caller stops it.
 *   c.events            its JSON lines, parsed
 *   c.version           the BullMQ version it reported
 *   c.processed()       the 'process' events
 *   c.completedIds()    the ids of the completed jobs (a Set)
 *   c.waitCompleted(n, {timeoutMs (15000), what, intervalMs, settleMs (0)})
 *                       waits until n distinct jobs have completed, then
 *                       settleMs more (a duplicate or a retry would show
 *                       by then); resolves to c.processed()
 *   c.stop()            SIGTERM, bounded, then SIGKILL
 */
export async function startConsumer(mod, port, { mode = 'ok', t = null } = {}) {
	if (!fs.existsSync(path.join(REPO, 'tests', 'peers', mod, 'node_modules', 'bullmq')))
		throw new Error(`tests/peers/${mod}/node_modules is missing: run npm ci there (make deps)`);
	const p = spawn(process.execPath, [CONSUMER, mod, String(port), mode],
	    { stdio: ['ignore', 'pipe', 'pipe'] });
	const c = { proc: p, events: [], log: '', exited: false };
	consumers.add(c);
	let buf = '';
	p.stdout.setEncoding('utf8').on('data', (d) => {
		buf += d;
		let i;
		while ((i = buf.indexOf('\n')) >= 0) {
			const line = buf.slice(0, i);
			buf = buf.slice(i + 1);
			if (line) c.events.push(JSON.parse(line));
		}
	});
	p.stderr.setEncoding('utf8').on('data', (d) => { c.log += d; });
	const gone = new Promise((resolve) => p.on('exit', () => { c.exited = true; resolve(); }));
	c.stop = async () => {
		if (!c.exited) {
			p.kill('SIGTERM');
			await withTimeout(gone, 5000, 'consumer exit').catch(() => p.kill('SIGKILL'));
		}
		consumers.delete(c);
	};
	t?.after(() => c.stop());
	try {
		await waitFor(() => {
			if (c.exited) throw new Error(`consumer exited: ${c.log}`);
			return c.events.some((e) => e.event === 'ready');
		}, 15000, `${mod} Worker ready`);
	} catch (e) {
		await c.stop();
		throw e;
	}
	c.version = c.events.find((e) => e.event === 'ready').version;
	c.processed = () => c.events.filter((e) => e.event === 'process');
	c.completedIds = () => new Set(c.events.filter((e) => e.event === 'completed').map((e) => e.id));
	c.waitCompleted = async (n = 1, { timeoutMs = 15000, what, intervalMs = 50, settleMs = 0 } = {}) => {
		await waitFor(() => c.completedIds().size >= n, timeoutMs,
		    what ?? (n === 1 ? 'the job completed' : `${n} jobs completed`), intervalMs);
		if (settleMs > 0) await sleep(settleMs);
		return c.processed();
	};
	return c;
}

/*
 * The jobs_cli driver (tests/unit/jobs_cli.c): JOBS_CLI, else make's
 * build/jobs_cli, else built here once with cc and pkg-config into a
 * temporary directory (not sanitized, like make's: it is timed).
 */
export function jobsCli() {
	if (process.env.JOBS_CLI) return process.env.JOBS_CLI;
	const made = path.join(REPO, 'build', 'jobs_cli');
	if (fs.existsSync(made)) return made;
	if (cliBuilt) return cliBuilt;
	cliDir = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-jobs-cli-'));
	const out = path.join(cliDir, 'jobs_cli');
	const pc = spawnSync('pkg-config', ['--cflags', '--libs', 'libevent', 'hiredis', 'jansson', 'libcrypto'],
	    { encoding: 'utf8' });
	assert.equal(pc.status, 0, `pkg-config: ${pc.stderr}`);
	const src = ['tests/unit/jobs_cli.c', 'common/jobs.c', 'common/redis.c', 'common/log.c', 'common/util.c']
	    .map((f) => path.join(REPO, f));
	const cc = spawnSync(process.env.CC ?? 'cc', ['-std=c11', '-D_GNU_SOURCE', '-O2', '-Wall', '-Wextra', '-Werror',
	    `-I${path.join(REPO, 'common')}`, '-o', out, ...src, ...pc.stdout.trim().split(/\s+/)],
	    { encoding: 'utf8', timeout: 120000 });
	assert.equal(cc.status, 0, `building jobs_cli failed:\n${cc.stderr}`);
	cliBuilt = out;
	return out;
}

/* Runs jobs_cli to completion (bounded); {code, lines (its JSON lines, parsed), stderr}. */
export function runCli(args, timeoutMs = 60000) {
	return new Promise((resolve, reject) => {
		const p = spawn(jobsCli(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
		let stdout = '', stderr = '';
		p.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
		p.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
		const timer = setTimeout(() => {
			p.kill('SIGKILL');
			reject(new Error(`jobs_cli ${args.join(' ')}: no exit in ${timeoutMs} ms\n${stderr}`));
		}, timeoutMs);
		p.on('error', (e) => { clearTimeout(timer); reject(e); });
		p.on('close', (code) => {
			clearTimeout(timer);
			resolve({ code, stderr, lines: stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)) });
		});
	});
}

/* No session:* and no rag:* key is left in Redis (SCAN, never KEYS). */
export async function assertNoSessionKeys(redis) {
	assert.deepEqual(await scanKeys(redis, 'session:*'), [], 'no session:* keys left');
	assert.deepEqual(await scanKeys(redis, 'rag:*'), [], 'no rag:* keys left');
}
