// t_dedup_two_instances: two naiberd instances share nothing but Redis and
// PostgreSQL (DESIGN §12), here also the fake Twilio and ElevenLabs.
//   1. Dial on A (POST /call to A), stream on B (the upgrade, with the
//      nonce A stored, goes to B): the call works and gives one job.
//   2. One conversationId finished on both instances at once (the fake
//      ElevenLabs reuses the id), then enqueued a third time by another
//      process (the jobs_cli driver of common/jobs.c): one job (DESIGN §4,
//      "at most one job per conversationId within 5 minutes across all
//      processes and hosts"), consumed once by a real BullMQ 5 Worker.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { itest, startNaiberd, apiPost, waitFor, withTimeout, sleep, hex, REPO } from '../lib/harness.mjs';
import { waitBound } from '../lib/bind.mjs';
import { startStack, DEFAULT_PERSON, JOB_PREFIX } from '../lib/stack.mjs';

const CONSUMER = path.join(REPO, 'tests', 'peers', 'bull-consumer.mjs');
const reEsc = (s) => String(s).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// --------------------------------------------------------------- helpers

const consumers = new Set();
let cliDir = null;
process.on('exit', () => {
	for (const c of consumers) try { c.proc.kill('SIGKILL'); } catch { /* gone */ }
	if (cliDir) fs.rmSync(cliDir, { recursive: true, force: true });
});

/* A real BullMQ Worker on port; stopped when the test ends (t.after). */
async function startConsumer(t, mod, port) {
	if (!fs.existsSync(path.join(REPO, 'tests', 'peers', mod, 'node_modules', 'bullmq')))
		throw new Error(`tests/peers/${mod}/node_modules is missing: run npm ci there (make deps)`);
	const p = spawn(process.execPath, [CONSUMER, mod, String(port), 'ok'],
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
	t.after(() => c.stop());
	await waitFor(() => {
		if (c.exited) throw new Error(`consumer exited: ${c.log}`);
		return c.events.some((e) => e.event === 'ready');
	}, 15000, `${mod} Worker ready`);
	c.processed = () => c.events.filter((e) => e.event === 'process');
	return c;
}

/* The jobs_cli driver: JOBS_CLI, build/jobs_cli, or built here once. */
function jobsCli() {
	if (process.env.JOBS_CLI) return process.env.JOBS_CLI;
	const built = path.join(REPO, 'build', 'jobs_cli');
	if (fs.existsSync(built)) return built;
	if (cliDir) return path.join(cliDir, 'jobs_cli');
	cliDir = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-jobs-cli-'));
	const out = path.join(cliDir, 'jobs_cli');
	const pc = spawnSync('pkg-config', ['--cflags', '--libs', 'libevent', 'hiredis', 'jansson', 'libcrypto'],
	    { encoding: 'utf8' });
	assert.equal(pc.status, 0, `pkg-config: ${pc.stderr}`);
	const src = ['tests/unit/jobs_cli.c', 'common/jobs.c', 'common/redis.c', 'common/log.c', 'common/util.c']
	    .map((f) => path.join(REPO, f));
	const cc = spawnSync(process.env.CC ?? 'cc', ['-std=c11', '-D_GNU_SOURCE', '-O2', '-Wall', '-Wextra',
	    `-I${path.join(REPO, 'common')}`, '-o', out, ...src, ...pc.stdout.trim().split(/\s+/)],
	    { encoding: 'utf8', timeout: 120000 });
	assert.equal(cc.status, 0, `building jobs_cli failed:\n${cc.stderr}`);
	return out;
}

/* jobs_cli to completion (bounded); its JSON lines. */
function runCli(args, timeoutMs = 20000) {
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

/* Every key matching pattern (SCAN, never KEYS). */
async function scanKeys(redis, pattern) {
	const out = [];
	let cursor = '0';
	do {
		const [next, batch] = await redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', '1000');
		out.push(...batch);
		cursor = next;
	} while (cursor !== '0');
	return out;
}

/*
 * Instance B: same environment as the stack's naiberd (Redis, PostgreSQL,
 * fakes, Twilio credentials, STREAM_URL), its own port, temp dir and
 * spool directory.  Stopped by the harness at the end of the test.
 */
async function startSecond(st, opts = {}) {
	const { NAIBER_SPOOL_DIR: _own, ...env } = st.env;
	const b = await startNaiberd({ workers: 2, maxCalls: 10, ...opts, env });
	await waitFor(async () => {
		if (b.exitInfo) throw new Error(`instance B exited: ${JSON.stringify(b.exitInfo)}`);
		return (await b.http('GET', '/ready', { timeoutMs: 2000 })).status === 200;
	}, 10000, 'instance B /ready 200');
	return b;
}

/* POST /call to instance d (any instance), as st.placeCall does for st.d. */
async function placeCallOn(st, d, body) {
	const r = await apiPost(d, '/call', body, { timeoutMs: 15000 });
	assert.equal(r.status, 200, `POST /call to port ${d.port}: ${r.status} ${r.body}`);
	const callSid = r.json.callSid;
	const ctx = JSON.parse(await st.redis.call('GET', `call:${callSid}`));
	return { callSid, nonce: ctx.nonce, ctx, phone: ctx.phone, callType: ctx.callType };
}

/*
 * The Twilio stream for `call` opened on instance d (st.openStream always
 * uses st.d): bound, then its ElevenLabs conversation up.  Sets
 * s.workerPid, s.conversationId, s.elConv.
 */
async function openStreamOn(st, d, call, { timeoutMs = 10000 } = {}) {
	const s = d.stream({ callSid: call.callSid,
	    customParameters: { call_type: call.callType, nonce: call.nonce } });
	await s.opened;
	const mark = d.logMark();
	await s.sendConnected();
	await s.sendStart();
	const b = await waitBound(d, call.callSid, { timeoutMs, since: mark });
	s.workerPid = b.pid;
	const sid = reEsc(call.callSid);
	const m = await d.waitLog(new RegExp(`worker\\[(\\d+)\\][^\\n]*callSid=${sid}[^\\n]*elevenlabs: conversation (\\S+) `),
	    timeoutMs, mark);
	s.conversationId = m[2];
	// With a reused id several fake conversations carry it: take the newest.
	s.elConv = await st.el.waitFor((el) => el.conversations.filter((c) => c.id === m[2] && c.state !== 'closed')
	    .at(-1), 5000, `fake ElevenLabs conversation ${m[2]}`);
	return s;
}

function doneOn(d, callSid, since = 0) {
	return d.waitLog(new RegExp(`worker (\\d+) call ${reEsc(callSid)} done: reason=(.+?) frames_in=(\\d+)`),
	    15000, since).then((m) => ({ pid: Number(m[1]), reason: m[2], framesIn: Number(m[3]) }));
}

// ----------------------------------------------------------------- tests

itest('dial on A, stream on B: the call works on B and gives exactly one job', { timeout: 60000 }, async (t) => {
	const st = await startStack({ workers: 2 });
	const A = st.d;
	const B = await startSecond(st);
	assert.notEqual(A.port, B.port);
	const consumer = await startConsumer(t, 'bullmq5', st.redis.port);
	const markA = A.logMark(), markB = B.logMark();

	const call = await placeCallOn(st, A, undefined);
	assert.equal(st.tw.creates().length, 1, 'A dialled through Twilio');
	const s = await openStreamOn(st, B, call);
	assert.ok(B.children().includes(s.workerPid), `the stream's worker ${s.workerPid} is B's`);

	// Audio both ways through B.
	await s.sendMedia(25);
	await s.elConv.waitAudioBytes(25 * 160);
	await s.elConv.sendAudio(Buffer.alloc(8 * 160, 0x55));
	await waitFor(() => s.received.filter((m) => m.event === 'media').length >= 8, 5000,
	    '8 media frames from ElevenLabs at Twilio');
	const tStop = Date.now();
	await s.sendStop();
	const dn = await doneOn(B, call.callSid, markB);
	assert.equal(dn.reason, 'stop');
	assert.equal(dn.framesIn, 25);

	// The job: added by B's worker, consumed once.
	await waitFor(() => consumer.events.some((e) => e.event === 'completed'), 15000, 'the job completed');
	await sleep(1500);
	const procs = consumer.processed();
	assert.equal(procs.length, 1, `exactly one job: ${JSON.stringify(procs.map((p) => p.data))}`);
	assert.equal(procs[0].name, 'process-post-call');
	assert.equal(procs[0].data.conversationId, s.conversationId);
	assert.equal(procs[0].data.userId, DEFAULT_PERSON.id);
	assert.equal(procs[0].data.isFirstCall, DEFAULT_PERSON.isFirstCall);
	assert.equal(procs[0].data.callType, 'general');
	assert.ok(procs[0].data.timestamp >= tStop - 50, 'timestamp at the end of the call');
	assert.equal(await st.redis.call('GET', `${JOB_PREFIX}id`), '1', 'one job id ever taken');
	assert.match(B.log.slice(markB), new RegExp(`callSid=${reEsc(call.callSid)} [^\\n]*post-call job added as 1\\b`));
	// A placed it and never served it: no worker of A saw the stream.
	assert.match(A.log.slice(markA), new RegExp(`call ${reEsc(call.callSid)} placed to`));
	assert.doesNotMatch(A.log.slice(markA), new RegExp(`worker \\d+ call ${reEsc(call.callSid)} (stream|done)`));
	assert.doesNotMatch(A.log.slice(markA), /post-call job/);

	assert.deepEqual(await scanKeys(st.redis, 'session:*'), [], 'no session:* keys left');
	assert.deepEqual(await scanKeys(st.redis, 'rag:*'), [], 'no rag:* keys left');
});

itest('one conversationId finished on A and on B at once, then enqueued again by another process: one job',
    { timeout: 60000 }, async (t) => {
	const st = await startStack({ workers: 2 });
	const A = st.d;
	const B = await startSecond(st);
	const second = await st.addPerson({ id: 'u-0000second', name: 'Edith', phone: '+15550005555',
	    isFirstCall: true });
	const consumer = await startConsumer(t, 'bullmq5', st.redis.port);
	const shared = 'conv_shared_' + hex(8);
	// Every conversation from now on gets the same id.
	st.el.onConversation = (conv) => { conv.sendMetadata({ conversation_id: shared }).catch(() => {}); };
	const markA = A.logMark(), markB = B.logMark();

	const callA = await placeCallOn(st, A, undefined);
	const sA = await openStreamOn(st, A, callA);
	const callB = await placeCallOn(st, B, { phone: second.phone });
	const sB = await openStreamOn(st, B, callB);
	assert.equal(sA.conversationId, shared);
	assert.equal(sB.conversationId, shared);
	await Promise.all([sA.sendMedia(5), sB.sendMedia(5)]);

	// Both end at the same moment: two workers on two instances race.
	await Promise.all([sA.sendStop(), sB.sendStop()]);
	const [dA, dB] = await Promise.all([doneOn(A, callA.callSid, markA), doneOn(B, callB.callSid, markB)]);
	assert.equal(dA.reason, 'stop');
	assert.equal(dB.reason, 'stop');

	const outcomes = [...A.log.slice(markA).matchAll(/post-call job (added|duplicate|spooled)(?: as (\S+))?/g),
	    ...B.log.slice(markB).matchAll(/post-call job (added|duplicate|spooled)(?: as (\S+))?/g)]
	    .map((m) => `${m[1]} ${m[2] ?? ''}`.trim()).sort();
	t.diagnostic(`worker outcomes for ${shared}: ${outcomes.join(', ')}`);
	assert.deepEqual(outcomes, ['added 1', 'duplicate 1'], 'one worker added the job, the other found it');

	// A third enqueue from another process: the dedup key answers.
	const spool = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-dedup-spool-'));
	t.after(() => fs.rmSync(spool, { recursive: true, force: true }));
	const cli = await runCli(['-u', 'someone-else', '-s', spool, st.redis.url, shared]);
	assert.equal(cli.code, 0, cli.stderr);
	assert.deepEqual(cli.lines.map((l) => [l.outcome, l.id]), [['duplicate', '1']], cli.stderr);
	assert.deepEqual(fs.readdirSync(spool), [], 'nothing spooled by the driver');

	// One job in Redis, processed once.
	await waitFor(() => consumer.events.some((e) => e.event === 'completed'), 15000, 'the job completed');
	await sleep(1500);
	const procs = consumer.processed();
	assert.equal(procs.length, 1, `exactly one job: ${JSON.stringify(procs.map((p) => p.data))}`);
	assert.equal(procs[0].data.conversationId, shared);
	assert.equal(await st.redis.call('GET', `${JOB_PREFIX}id`), '1', 'one job id ever taken');
	const jobs = await st.postCallJobs();
	assert.equal(jobs.length, 1, 'one job hash');
	assert.equal(jobs[0].hash.deid, shared);
	const ttl = await st.redis.call('PTTL', `${JOB_PREFIX}de:${shared}`);
	assert.ok(ttl > 280000 && ttl <= 300000, `dedup key TTL ${ttl} ms (5 minutes)`);
	assert.deepEqual(await scanKeys(st.redis, 'session:*'), [], 'no session:* keys left');
	assert.deepEqual(await scanKeys(st.redis, 'rag:*'), [], 'no rag:* keys left');
});
