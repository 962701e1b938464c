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
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { itest, waitFor, hex } from '../lib/harness.mjs';
import { boundDone } from '../lib/bind.mjs';
import { startStack, DEFAULT_PERSON, reEsc, JOB_PREFIX } from '../lib/stack.mjs';
import { startConsumer, runCli, assertNoSessionKeys } from '../lib/jobs.mjs';

// --------------------------------------------------------------- helpers

/*
 * Instance B: st.startInstance() (the stack's environment, its own port,
 * temp dir and spool directory), stopped by the harness at the end of the
 * test.  Calls are placed on and streamed to either instance through
 * st.placeCall({d}) and st.openStream(call, {d}): with a conversation id
 * the fake ElevenLabs reuses, s.elConv is the newest open one.
 */
const doneOn = (d, callSid, since = 0) => boundDone(d, callSid, { timeoutMs: 15000, since });

// ----------------------------------------------------------------- tests

itest('dial on A, stream on B: the call works on B and gives exactly one job', { timeout: 60000 }, async (t) => {
	const st = await startStack({ workers: 2 });
	const A = st.d;
	const B = await st.startInstance();
	assert.notEqual(A.port, B.port);
	const consumer = await startConsumer('bullmq5', st.redis.port, { t });
	const markA = A.logMark(), markB = B.logMark();

	const call = await st.placeCall({ d: A });
	assert.equal(st.tw.creates().length, 1, 'A dialled through Twilio');
	const s = await st.openStream(call, { d: B });
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
	const procs = await consumer.waitCompleted(1, { settleMs: 1500 });
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

	await assertNoSessionKeys(st.redis);
});

itest('one conversationId finished on A and on B at once, then enqueued again by another process: one job',
    { timeout: 60000 }, async (t) => {
	const st = await startStack({ workers: 2 });
	const A = st.d;
	const B = await st.startInstance();
	const second = await st.addPerson({ id: 'u-0000second', name: 'Edith', phone: '+15550005555',
	    isFirstCall: true });
	const consumer = await startConsumer('bullmq5', st.redis.port, { t });
	const shared = 'conv_shared_' + hex(8);
	// Every conversation from now on gets the same id.
	st.el.onConversation = (conv) => { conv.sendMetadata({ conversation_id: shared }).catch(() => {}); };
	const markA = A.logMark(), markB = B.logMark();

	const callA = await st.placeCall({ d: A });
	const sA = await st.openStream(callA, { d: A });
	const callB = await st.placeCall({ d: B, phone: second.phone });
	const sB = await st.openStream(callB, { d: B });
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
	const cli = await runCli(['-u', 'someone-else', '-s', spool, st.redis.url, shared], 20000);
	assert.equal(cli.code, 0, cli.stderr);
	assert.deepEqual(cli.lines.map((l) => [l.outcome, l.id]), [['duplicate', '1']], cli.stderr);
	assert.deepEqual(fs.readdirSync(spool), [], 'nothing spooled by the driver');

	// One job in Redis, processed once.
	const procs = await consumer.waitCompleted(1, { settleMs: 1500 });
	assert.equal(procs.length, 1, `exactly one job: ${JSON.stringify(procs.map((p) => p.data))}`);
	assert.equal(procs[0].data.conversationId, shared);
	assert.equal(await st.redis.call('GET', `${JOB_PREFIX}id`), '1', 'one job id ever taken');
	const jobs = await st.postCallJobs();
	assert.equal(jobs.length, 1, 'one job hash');
	assert.equal(jobs[0].hash.deid, shared);
	const ttl = await st.redis.call('PTTL', `${JOB_PREFIX}de:${shared}`);
	assert.ok(ttl > 280000 && ttl <= 300000, `dedup key TTL ${ttl} ms (5 minutes)`);
	await assertNoSessionKeys(st.redis);
});
