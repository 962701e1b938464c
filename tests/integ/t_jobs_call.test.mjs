// t_jobs_call: whole calls, placed through POST /call and streamed, each
// produce exactly one post-call job that an unmodified BullMQ Worker
// consumes - 5.x (the original's) in one case, 6.x in the other (DESIGN §4,
// docs/bullmq.md).  Name process-post-call; data {conversationId, userId,
// isFirstCall (boolean), callType, timestamp (integer ms)} matching the
// call and the person; opts as the original's Queue.add; processed not
// before 3 s after the call ended (the delayed job replaces the original's
// sleep).  Two calls per case: a returning person's general call that
// Twilio ends (stop), and a first-call person's health check that the
// agent ends (end_call tool: goodbye mark, REST hang-up).
import assert from 'node:assert/strict';
import { itest } from '../lib/harness.mjs';
import { boundDone } from '../lib/bind.mjs';
import { startStack, DEFAULT_PERSON, echoMarks, reEsc, JOB_PREFIX } from '../lib/stack.mjs';
import { startConsumer, assertNoSessionKeys } from '../lib/jobs.mjs';

// --------------------------------------------------------------- helpers

/* The ISO timestamp (ms) at the start of the log line holding index i. */
function lineTime(log, i) {
	const start = log.lastIndexOf('\n', i) + 1;
	const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)/.exec(log.slice(start, start + 30));
	if (!m) throw new Error(`no timestamp on log line: ${log.slice(start, start + 120)}`);
	return Date.parse(m[1]);
}

/* The worker's "call ended:" line for callSid: {ms, reason}. */
async function callEnded(d, callSid, since) {
	const m = await d.waitLog(new RegExp(`callSid=${reEsc(callSid)} [^\\n]*call ended: reason=(.+?) duration_ms=`),
	    10000, since);
	return { ms: lineTime(d.log, m.index), reason: m[1] };
}

const doneFor = (d, callSid, since) => boundDone(d, callSid, { timeoutMs: 15000, since });

// ----------------------------------------------------------------- tests

const FIRST_TIMER = Object.freeze({
	id: 'u-0000first', name: 'Harold', phone: '+15550004444', age: 79, gender: 'MALE',
	interests: ['chess'], dislikes: [], isFirstCall: true,
	conditions: [{ condition: 'hypertension', severity: 'moderate', isActive: true }],
	medications: [{ name: 'lisinopril', dosage: '10 mg', frequency: 'daily', isActive: true }],
});

for (const [mod, verRx] of [['bullmq5', /^5\./], ['bullmq6', /^6\./]]) {
	itest(`${mod}: each completed call gives exactly one process-post-call job, matching the call, ` +
	    'processed not before 3 s after the call ended', { timeout: 90000 }, async (t) => {
		const st = await startStack({ workers: 2 });
		const { d } = st;
		const consumer = await startConsumer(mod, st.redis.port, { t });
		assert.match(consumer.version, verRx, `${mod} is BullMQ ${consumer.version}`);
		const harold = await st.addPerson(FIRST_TIMER);
		const mark = d.logMark();
		const calls = [];

		// 1. Returning person, general call, Twilio hangs up (stop).
		{
			const call = await st.placeCall();
			const s = await st.openStream(call);
			await s.sendMedia(10);
			await s.elConv.waitAudioBytes(1600);
			const tStop = Date.now();
			await s.sendStop();
			const ended = await callEnded(d, call.callSid, mark);
			const done = await doneFor(d, call.callSid, mark);
			assert.equal(done.reason, 'stop');
			assert.equal(done.framesIn, 10);
			calls.push({ call, s, tStop, ended, tDone: Date.now(), person: DEFAULT_PERSON, type: 'general' });
		}

		// 2. First call of another person, health check, the agent ends it.
		{
			const call = await st.placeCall({ phone: harold.phone, health: true });
			assert.equal(call.callType, 'health_check');
			const s = await st.openStream(call);
			echoMarks(s);
			await s.sendMedia(5);
			await s.elConv.waitAudioBytes(800);
			await s.elConv.sendAudio(Buffer.alloc(1600, 0x7f));
			const tStop = Date.now();
			await s.elConv.sendEndCall();
			const ended = await callEnded(d, call.callSid, mark);
			const done = await doneFor(d, call.callSid, mark);
			assert.equal(done.reason, 'agent ended the call');
			// Goodbye heard (mark echoed), then the Twilio call ended by REST.
			assert.ok(s.received.some((m) => m.event === 'mark'), 'a goodbye mark reached Twilio');
			assert.ok(st.tw.updates().some((r) => r.callSid === call.callSid && r.form.Status?.[0] === 'completed'),
			    'the agent-ended call was ended by REST (Status=completed)');
			calls.push({ call, s, tStop, ended, tDone: Date.now(), person: harold, type: 'health_check' });
		}

		// Both jobs processed and completed, once each.
		// Anything extra (a duplicate, a retry) would show within a moment (settleMs).
		const procs = await consumer.waitCompleted(calls.length, { timeoutMs: 20000, settleMs: 1500 });
		t.diagnostic(`${mod} ${consumer.version}: ${procs.length} jobs processed for ${calls.length} calls`);
		assert.equal(procs.length, calls.length, `one job per call: ${JSON.stringify(procs.map((p) => p.data))}`);
		assert.equal(consumer.events.filter((e) => e.event === 'failed').length, 0, 'no failed job');

		for (const c of calls) {
			const conv = c.s.conversationId;
			const mine = procs.filter((p) => p.data?.conversationId === conv);
			assert.equal(mine.length, 1, `exactly one job for conversation ${conv}`);
			const j = mine[0];
			assert.equal(j.name, 'process-post-call');
			assert.deepEqual(Object.keys(j.data).sort(),
			    ['callType', 'conversationId', 'isFirstCall', 'timestamp', 'userId']);
			assert.equal(j.data.userId, c.person.id, 'userId: the person called');
			assert.equal(typeof j.data.isFirstCall, 'boolean');
			assert.equal(j.data.isFirstCall, c.person.isFirstCall, 'isFirstCall: from the profile');
			assert.equal(j.data.callType, c.type);
			assert.equal(typeof j.data.timestamp, 'number');
			assert.ok(Number.isInteger(j.data.timestamp), `timestamp ${j.data.timestamp} is an integer`);
			assert.ok(j.data.timestamp >= c.tStop - 50 && j.data.timestamp <= c.tDone + 50,
			    `timestamp ${j.data.timestamp} is the call's end (${c.tStop}..${c.tDone})`);
			assert.equal(j.opts.attempts, 3);
			assert.deepEqual(j.opts.backoff, { type: 'exponential', delay: 1000 });
			assert.equal(j.opts.removeOnComplete, 100);
			assert.equal(j.opts.removeOnFail, 50);
			assert.equal(j.opts.delay, 3000);
			assert.equal(j.attemptsMade, 0);
			const after = j.processedOn - c.ended.ms;
			t.diagnostic(`${mod}: ${c.type} call ${c.call.callSid}: job ${j.id} processed ${after} ms ` +
			    `after "call ended" (${j.delta} ms after it was added)`);
			assert.ok(after >= 2950, `processed ${after} ms after the call ended: the 3 s delay`);
			assert.ok(after < 10000, `processed ${after} ms after the call ended: not stuck`);
			assert.ok(consumer.events.some((e) => e.event === 'completed' && e.id === j.id), `job ${j.id} completed`);
			// The worker logged the job it added.
			assert.match(d.log.slice(mark), new RegExp(`callSid=${reEsc(c.call.callSid)} [^\\n]*post-call job added as ${j.id}\\b`));
		}

		// Redis agrees: two ids taken, two dedup keys, no session keys left.
		assert.equal(await st.redis.call('GET', `${JOB_PREFIX}id`), String(calls.length));
		for (const c of calls)
			assert.ok(await st.redis.call('GET', `${JOB_PREFIX}de:${c.s.conversationId}`), 'dedup key set');
		await assertNoSessionKeys(st.redis);
	});
}
