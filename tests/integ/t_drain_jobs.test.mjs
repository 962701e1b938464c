// t_drain_jobs: SIGTERM with live calls loses nothing (DESIGN §6 SIGTERM:
// "busy calls finish up to --drain-timeout, then are ended cleanly
// (post-call job still enqueued)").  Three live calls, a short drain
// timeout: the calls keep running until it expires, then each is ended
// from our side the clean way (ElevenLabs closed 1000, a goodbye mark
// after the last agent audio, echoed, then Status=completed by REST, a
// WebSocket close frame to Twilio), each gives exactly one post-call job
// that a real BullMQ 5 Worker consumes, no session keys are left, and the
// supervisor exits 0.  A second case: a second SIGTERM ends the calls at
// once, the same clean way.  Then the drain meets faults, where DESIGN §6
// still wants the job: busy workers SIGKILLed during the drain (the orphan
// clean-up must run, also for the last worker, whose death ends the
// supervisor's loop), and a Twilio that neither echoes the goodbye mark nor
// answers the REST hang-up (5 s + 10 s, against the supervisor's 15 s
// grace before it SIGKILLs what is left).
import assert from 'node:assert/strict';
import { itest, waitFor, withTimeout, sleep, pidAlive } from '../lib/harness.mjs';
import { startStack, echoMarks, scanKeys, reEsc, JOB_PREFIX } from '../lib/stack.mjs';
import { startConsumer, assertNoSessionKeys } from '../lib/jobs.mjs';

// --------------------------------------------------------------- helpers

const PEOPLE = [
	{ id: 'u-0000drain1', name: 'Albert', phone: '+15550006661', isFirstCall: true },
	{ id: 'u-0000drain2', name: 'Beatrice', phone: '+15550006662', isFirstCall: false,
	    summaries: ['Beatrice spoke about her cat.'] },
];

/*
 * Three live calls on st: the default person (general), Albert (health
 * check), Beatrice (general).  Caller audio every 60 ms and agent audio
 * every 200 ms keep flowing until each stream closes.
 */
async function threeLiveCalls(st) {
	const people = [null, ...(await Promise.all(PEOPLE.map((p) => st.addPerson(p))))];
	const calls = [];
	for (const [i, p] of people.entries()) {
		const call = await st.placeCall(p ? { phone: p.phone, health: i === 1 } : {});
		const s = await st.openStream(call);
		echoMarks(s);
		const c = { call, s, health: i === 1, pumping: true };
		c.pump = (async () => {
			let n = 0;
			while (c.pumping && s.isOpen()) {
				await s.sendMedia(1).catch(() => {});
				if (n++ % 3 === 0 && s.elConv.state === 'active')
					await s.elConv.sendAudio(Buffer.alloc(160, 0x40 + (n & 0x1f))).catch(() => {});
				await sleep(60);
			}
		})();
		calls.push(c);
	}
	for (const c of calls) await c.s.elConv.waitAudioBytes(1600, 5000);
	return calls;
}

/* What every drained call must show: clean end, goodbye, REST, one job. */
async function assertEndedCleanly(st, d, calls, consumer, mark) {
	for (const c of calls) {
		const sid = reEsc(c.call.callSid);
		const dn = await d.waitLog(new RegExp(`worker (\\d+) call ${sid} done: reason=(.+?) frames_in=`), 1000, mark);
		assert.equal(dn[2], 'shutdown', `call ${c.call.callSid} done reason`);
		const cl = await withTimeout(c.s.closed, 2000, 'stream closed');
		assert.notEqual(cl.code, 1006, `call ${c.call.callSid}: Twilio socket closed with a close frame, not dropped`);
		// Goodbye: the mark follows the last agent audio, and came back.
		const rx = c.s.received;
		const mi = rx.findIndex((m) => m.event === 'mark');
		assert.ok(mi >= 0, `call ${c.call.callSid}: a goodbye mark was sent to Twilio`);
		assert.ok(!rx.slice(mi + 1).some((m) => m.event === 'media'), 'no agent audio after the goodbye mark');
		assert.ok(c.s.marks.length >= 1, 'the mark was echoed');
		// ElevenLabs closed normally by us.
		const ec = await c.s.elConv.waitClosed(2000);
		assert.equal(ec.code, 1000, `ElevenLabs close code for ${c.call.callSid}`);
		assert.equal(ec.by, 'client');
		// Ended by REST, after the mark came back.
		const up = st.tw.updates().filter((r) => r.callSid === c.call.callSid && r.form.Status?.[0] === 'completed');
		assert.equal(up.length, 1, `call ${c.call.callSid}: one Status=completed REST request`);
		assert.ok(up[0].t >= c.s.marks[0].t, 'REST hang-up after the goodbye mark was echoed');
		assert.match(d.log.slice(mark), new RegExp(`callSid=${sid} [^\\n]*post-call job added as \\d+`));
	}
	// One job each, consumed once.
	const procs = await consumer.waitCompleted(calls.length, { settleMs: 1500 });
	assert.equal(procs.length, calls.length, `one job per call: ${JSON.stringify(procs.map((p) => p.data))}`);
	for (const c of calls) {
		const mine = procs.filter((p) => p.data.conversationId === c.s.conversationId);
		assert.equal(mine.length, 1, `one job for ${c.s.conversationId}`);
		assert.equal(mine[0].data.callType, c.health ? 'health_check' : 'general');
	}
	assert.equal(await st.redis.call('GET', `${JOB_PREFIX}id`), String(calls.length));
	await assertNoSessionKeys(st.redis);
}

// ----------------------------------------------------------------- tests

itest('SIGTERM with 3 live calls and --drain-timeout 2: calls run until the timeout, then end cleanly ' +
    '(goodbye, REST), one job each, no session keys, exit 0', { timeout: 90000 }, async (t) => {
	const DRAIN = 2;
	const st = await startStack({ workers: 2, maxCalls: 10, drainTimeout: DRAIN });
	const { d } = st;
	const consumer = await startConsumer('bullmq5', st.redis.port, { t });
	const calls = await threeLiveCalls(st);
	const pids = calls.map((c) => c.s.workerPid);
	const mark = d.logMark();

	const tTerm = Date.now();
	d.kill('SIGTERM');
	await d.waitLog(/SIGTERM: draining 3 live calls for up to 2 s/, 5000, mark);
	// Until the drain timeout, the calls go on.
	await sleep(DRAIN * 1000 - 400);
	for (const c of calls) assert.ok(c.s.isOpen(), `call ${c.call.callSid} still live during the drain`);
	assert.ok(!/ done: /.test(d.log.slice(mark)), 'no call ended before the drain timeout');

	const ex = await withTimeout(d.exited, 20000, 'supervisor exit after the drain');
	const tExit = Date.now();
	for (const c of calls) c.pumping = false;
	await Promise.all(calls.map((c) => c.pump));
	t.diagnostic(`supervisor exited ${tExit - tTerm} ms after SIGTERM (drain timeout ${DRAIN} s)`);
	assert.deepEqual(ex, { code: 0, signal: null }, 'supervisor exit status');
	await d.waitLog(/ending 3 live calls/, 1000, mark);
	assert.doesNotMatch(d.log.slice(mark), /killed by signal|did not stop in|lost its worker/);
	for (const c of calls) {
		const dn = new RegExp(`worker \\d+ call ${reEsc(c.call.callSid)} done: `).exec(d.log);
		assert.ok(dn, `done line for ${c.call.callSid}`);
	}
	await assertEndedCleanly(st, d, calls, consumer, mark);
	for (const p of pids) await waitFor(() => !pidAlive(p), 5000, `worker ${p} gone`);
});

itest('a second SIGTERM ends the live calls at once, just as cleanly, one job each, exit 0',
    { timeout: 90000 }, async (t) => {
	const st = await startStack({ workers: 2, maxCalls: 10, drainTimeout: 60 });
	const { d } = st;
	const consumer = await startConsumer('bullmq5', st.redis.port, { t });
	const calls = await threeLiveCalls(st);
	const mark = d.logMark();

	d.kill('SIGTERM');
	await d.waitLog(/SIGTERM: draining 3 live calls for up to 60 s/, 5000, mark);
	await sleep(300);
	for (const c of calls) assert.ok(c.s.isOpen(), 'still live after the first SIGTERM');
	const t2 = Date.now();
	d.kill('SIGTERM');
	await d.waitLog(/SIGTERM again: ending live calls now/, 5000, mark);
	const ex = await withTimeout(d.exited, 20000, 'supervisor exit after the second SIGTERM');
	for (const c of calls) c.pumping = false;
	await Promise.all(calls.map((c) => c.pump));
	t.diagnostic(`supervisor exited ${Date.now() - t2} ms after the second SIGTERM`);
	assert.deepEqual(ex, { code: 0, signal: null }, 'supervisor exit status');
	assert.ok(Date.now() - t2 < 15000, 'not held by the 60 s drain timeout');
	assert.doesNotMatch(d.log.slice(mark), /killed by signal|did not stop in|lost its worker/);
	await assertEndedCleanly(st, d, calls, consumer, mark);
});

itest('busy workers that die during the drain still get their job enqueued and their Twilio call ended by ' +
    'REST, the last one too', { timeout: 90000 }, async (t) => {
	const st = await startStack({ workers: 2, maxCalls: 10, drainTimeout: 60 });
	const { d } = st;
	const consumer = await startConsumer('bullmq5', st.redis.port, { t });
	const [a, b, c] = await threeLiveCalls(st);
	const mark = d.logMark();
	const pidOf = (x) => Number(new RegExp(`supervisor\\[\\d+\\] info: worker (\\d+) call ${reEsc(x.call.callSid)} stream `)
	    .exec(d.log)?.[1]);
	const orphanJob = (x) => new RegExp(`call ${reEsc(x.call.callSid)} conversation ${reEsc(x.s.conversationId)}: ` +
	    'post-call job (added|already queued|spooled) after the worker died');
	const restEnded = (x) => st.tw.updates().some((r) => r.callSid === x.call.callSid && r.form.Status?.[0] === 'completed');

	d.kill('SIGTERM');
	await d.waitLog(/SIGTERM: draining 3 live calls for up to 60 s/, 5000, mark);

	// c ends normally during the drain.
	await c.s.sendStop();
	await d.waitLog(new RegExp(`worker \\d+ call ${reEsc(c.call.callSid)} done: reason=stop`), 10000, mark);

	// a's worker dies while b is still live: clean-up as in normal running.
	process.kill(pidOf(a), 'SIGKILL');
	await d.waitLog(orphanJob(a), 10000, mark);
	await st.tw.waitFor(() => restEnded(a), 10000, 'REST end of the first killed call');
	assert.ok(d.alive(), 'supervisor still draining b');

	// b's worker dies, the last one: the supervisor is about to exit.
	const pb = pidOf(b);
	process.kill(pb, 'SIGKILL');
	const ex = await withTimeout(d.exited, 15000, 'supervisor exit after the last worker');
	for (const x of [a, b, c]) x.pumping = false;
	await Promise.all([a, b, c].map((x) => x.pump));
	assert.deepEqual(ex, { code: 0, signal: null }, 'supervisor exit status');
	await d.waitLog(`worker ${pb} (call ${b.call.callSid}) killed by signal 9`, 1000, mark);

	const lostB = !orphanJob(b).test(d.log.slice(mark));
	t.diagnostic(`last killed worker: clean-up logged: ${!lostB}, REST end: ${restEnded(b)}`);
	await consumer.waitCompleted(2, { what: 'a and c jobs' });
	await sleep(4500);	// b's job, if it was added, is due by now
	const convs = consumer.processed().map((p) => p.data.conversationId);
	t.diagnostic(`jobs consumed: ${convs.length} (a ${convs.includes(a.s.conversationId)}, ` +
	    `b ${convs.includes(b.s.conversationId)}, c ${convs.includes(c.s.conversationId)})`);
	assert.equal(convs.filter((x) => x === a.s.conversationId).length, 1, 'one job for a (killed, b still live)');
	assert.equal(convs.filter((x) => x === c.s.conversationId).length, 1, 'one job for c (ended normally)');
	assert.equal(convs.filter((x) => x === b.s.conversationId).length, 1,
	    'one job for b (killed last, while the supervisor was exiting)');
	assert.ok(restEnded(b), 'b\'s Twilio call ended by REST');
	await assertNoSessionKeys(st.redis);
});

itest('drain with a slow Twilio (goodbye mark never echoed, REST hang-up never answered): the job is still ' +
    'enqueued, exit 0', { timeout: 90000 }, async (t) => {
	const st = await startStack({ workers: 1, maxCalls: 10, drainTimeout: 1 });
	const { d } = st;
	const consumer = await startConsumer('bullmq5', st.redis.port, { t });
	const call = await st.placeCall();
	const s = await st.openStream(call);	// marks are not echoed
	await s.sendMedia(10);
	await s.elConv.waitAudioBytes(1600);
	const mark = d.logMark();
	st.tw.mode = 'hang';			// every REST request from now on hangs

	const tTerm = Date.now();
	d.kill('SIGTERM');
	await d.waitLog(/SIGTERM: draining 1 live calls for up to 1 s/, 5000, mark);
	const ex = await withTimeout(d.exited, 40000, 'supervisor exit');
	t.diagnostic(`supervisor exited ${Date.now() - tTerm} ms after SIGTERM`);
	assert.deepEqual(ex, { code: 0, signal: null });
	const log = d.log.slice(mark);
	t.diagnostic(`worker outcome: ${/post-call job added as \d+/.exec(log)?.[0] ??
	    (/killed by signal 9/.test(log) ? 'SIGKILLed by the supervisor before its post-call steps' : 'none')}`);
	assert.ok(st.tw.updates().some((r) => r.callSid === call.callSid && r.form.Status?.[0] === 'completed'),
	    'a REST hang-up was attempted');
	await sleep(4500);	// a job added at the end is due by now
	const procs = consumer.processed();
	assert.equal(procs.filter((p) => p.data.conversationId === s.conversationId).length, 1,
	    `one job for the drained call (jobs in Redis: ${await st.redis.call('GET', `${JOB_PREFIX}id`)})`);
	assert.deepEqual(await scanKeys(st.redis, 'session:*'), [], 'no session:* keys left');
});
