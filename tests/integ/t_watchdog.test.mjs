// t_watchdog: busy workers are watched (issue 16 item 2).  A busy worker
// sends LOAD, its heartbeat, each second from ACCEPTED to DONE; the
// supervisor SIGKILLs one silent for worker_stall seconds and cleans up
// after its call as after a crash (REST hang-up, session keys, post-call
// job), logged once at warn and counted in naiberd_worker_stalls_total.
// A healthy call, set-up included, is never taken for a stalled one.  A
// worker whose Twilio stream sends nothing for worker_stall seconds ends
// the call itself.  The calls run on the full stack (tests/lib/stack.mjs),
// with NAIBER_WORKER_STALL=3.
import assert from 'node:assert/strict';
import { itest, waitFor, withTimeout, pidAlive, sleep, doneLine } from '../lib/harness.mjs';
import { startStack, DEFAULT_PERSON, reEsc } from '../lib/stack.mjs';

const STALL = 3;

/* Caller audio every 20 ms, as Twilio sends it, until stopped. */
function pumpMedia(s) {
	const iv = setInterval(() => {
		if (s.isOpen()) s.sendMedia(1).catch(() => {});
	}, 20);
	return () => clearInterval(iv);
}

const stallRe = (pid, sid) => new RegExp(`supervisor\\[\\d+\\] warn: worker ${pid} call ${reEsc(sid)} ` +
    'stalled: no heartbeat for (\\d+) s; killed');

itest('a SIGSTOPped busy worker is killed after worker_stall; its call is hung up and cleaned up',
    { timeout: 60000 }, async () => {
	const st = await startStack({ workers: 2, maxCalls: 10, env: { NAIBER_WORKER_STALL: String(STALL) } });
	const { d, redis, tw } = st;
	await waitFor(() => d.children().length === 2, 5000, '2 idle workers');
	const mark = d.logMark();

	const s = await st.openStream(await st.placeCall());
	await s.sendMedia(10);
	const vpid = s.workerPid;
	const cid = s.conversationId;
	// The supervisor knows the call (CALL_INFO) before the worker stops.
	await d.waitLog(`worker ${vpid} call ${s.callSid} stream ${s.streamSid} type general ` +
	    `conversation ${cid}`, 5000, mark);
	await s.elConv.waitAudioBytes(10 * 160);
	await waitFor(async () => (await redis.call('EXISTS', `session:${cid}`)) === 1, 5000,
	    `session:${cid} written`);

	let stopPump = () => {};
	try {
		process.kill(vpid, 'SIGSTOP');
		const tStop = Date.now();
		// The caller keeps talking into the stopped worker.
		stopPump = pumpMedia(s);
		const m = await d.waitLog(stallRe(vpid, s.callSid), (STALL + 4) * 1000, mark);
		const took = Date.now() - tStop;
		assert.ok(took >= (STALL - 1) * 1000, `stall noticed ${took} ms after SIGSTOP, not before ${STALL - 1} s`);
		assert.ok(Number(m[1]) >= STALL, `logged ${m[1]} s without a heartbeat`);
		await d.waitLog(`worker ${vpid} (call ${s.callSid}) killed by signal 9`, 5000, mark);
		await waitFor(() => !pidAlive(vpid), 5000, `stalled worker ${vpid} gone`);
		await withTimeout(s.closed, 5000, 'the stalled call\'s Twilio socket to close');
	} finally {
		stopPump();
		if (pidAlive(vpid)) {
			try { process.kill(vpid, 'SIGCONT'); } catch { /* gone */ }
			try { process.kill(vpid, 'SIGKILL'); } catch { /* gone */ }
		}
	}

	// The crash clean-up ran: REST hang-up, session keys, post-call job.
	await tw.waitFor(() => tw.updates().some((u) => u.callSid === s.callSid &&
	    (u.form.Status ?? []).includes('completed')), 5000, `REST Status=completed for ${s.callSid}`);
	await d.waitLog(`call ${s.callSid} ended by REST after its worker died`, 5000, mark);
	await waitFor(async () => (await redis.call('EXISTS', `session:${cid}`)) === 0, 5000,
	    `session:${cid} deleted after the stall`);
	const job = await waitFor(async () => (await st.postCallJobs()).find((j) => j.data?.conversationId === cid),
	    5000, `a post-call job for the stalled call's conversation ${cid}`);
	assert.equal(job.name, 'process-post-call');
	assert.equal(job.data.userId, DEFAULT_PERSON.id);
	assert.ok(!new RegExp(`call ${reEsc(s.callSid)} done:`).test(d.log.slice(mark)), 'no DONE line for the stalled call');

	// Pool back to two idle workers; the stall was logged once and counted.
	await waitFor(async () => {
		const mm = await d.metrics();
		return mm['naiberd_workers{state="idle"}'] === 2 && mm['naiberd_workers{state="busy"}'] === 0 &&
		    mm['naiberd_workers{state="exiting"}'] === 0 && d.children().length === 2;
	}, 10000, 'pool back to 2 idle workers');
	const mm = await d.metrics();
	assert.equal(mm['naiberd_worker_stalls_total'], 1);
	assert.equal(mm['naiberd_worker_crashes_total'], 1);
	assert.equal(d.log.slice(mark).split('\n').filter((l) => / stalled: no heartbeat /.test(l)).length, 1,
	    'the stall is logged once');
	assert.ok(d.alive(), 'supervisor alive');

	// A new call afterwards works.
	const s2 = await st.openStream(await st.placeCall());
	await s2.sendMedia(3);
	await s2.sendStop();
	const dn = await doneLine(d, s2.callSid, 5000, mark);
	assert.equal(dn[2], 'stop');
	assert.equal(Number(dn[3]), 3);
	assert.equal((await d.metrics())['naiberd_worker_stalls_total'], 1);
});

itest('a healthy call longer than worker_stall, with a slow set-up, is never killed', { timeout: 60000 }, async () => {
	// The conversation starts 4.5 s after the stream: longer than
	// worker_stall, so the set-up itself must send heartbeats.
	const SETUP_MS = 4500;
	const st = await startStack({ workers: 1, maxCalls: 10, env: { NAIBER_WORKER_STALL: String(STALL) },
	    eleven: { metadataDelayMs: SETUP_MS } });
	const { d } = st;
	const mark = d.logMark();

	let stopPump = () => {};
	let tStart = 0;
	const s = await st.openStream(await st.placeCall(), {
		timeoutMs: 20000,
		afterStart: (x) => { tStart = Date.now(); stopPump = pumpMedia(x); },
	}).catch((e) => { stopPump(); throw e; });
	try {
		const setup = Date.now() - tStart;
		assert.ok(setup >= SETUP_MS - 500, `set-up took ${setup} ms, longer than worker_stall`);
		await sleep(8000);	// 8 s of caller audio, 20 ms frames
	} finally {
		stopPump();
	}
	assert.ok(s.isOpen(), 'the call is still up after 8 s of audio');
	await s.sendStop();
	const dn = await doneLine(d, s.callSid, 8000, mark);
	assert.equal(Number(dn[1]), s.workerPid);
	assert.equal(dn[2], 'stop');
	assert.ok(Number(dn[3]) >= 300, `frames_in ${dn[3]}: 8 s of audio relayed`);
	assert.ok(!/ stalled: no heartbeat /.test(d.log.slice(mark)), 'no stall logged');
	assert.ok(!/no media from Twilio/.test(d.log.slice(mark)), 'no silence logged');
	const mm = await d.metrics();
	assert.equal(mm['naiberd_worker_stalls_total'], 0);
	assert.equal(mm['naiberd_worker_crashes_total'], 0);
});

itest('a Twilio stream silent for worker_stall seconds: the worker hangs up and ends the call itself',
    { timeout: 60000 }, async () => {
	const st = await startStack({ workers: 1, maxCalls: 10, env: { NAIBER_WORKER_STALL: String(STALL) } });
	const { d, redis, tw } = st;
	const mark = d.logMark();

	const s = await st.openStream(await st.placeCall());
	await s.sendMedia(10);
	const cid = s.conversationId;
	await s.elConv.waitAudioBytes(10 * 160);
	const tQuiet = Date.now();
	// The socket stays open; nothing more comes from Twilio.
	await d.waitLog(new RegExp(`worker\\[${s.workerPid}\\] warn: callSid=${reEsc(s.callSid)}.* ` +
	    `no media from Twilio for ${STALL} s: ending the call`), (STALL + 4) * 1000, mark);
	assert.ok(Date.now() - tQuiet >= (STALL - 0.5) * 1000, 'not before worker_stall seconds of silence');
	await tw.waitFor(() => tw.updates().some((u) => u.callSid === s.callSid &&
	    (u.form.Status ?? []).includes('completed')), 5000, `REST Status=completed for ${s.callSid}`);
	const dn = await doneLine(d, s.callSid, 8000, mark);
	assert.equal(dn[2], 'no media from Twilio');
	assert.equal(Number(dn[3]), 10);
	await withTimeout(s.closed, 5000, 'naiberd to close the Twilio socket');
	await waitFor(async () => (await redis.call('EXISTS', `session:${cid}`)) === 0, 5000,
	    `session:${cid} deleted`);
	await waitFor(async () => (await st.postCallJobs()).some((j) => j.data?.conversationId === cid), 5000,
	    `a post-call job for ${cid}`);
	assert.ok(!/ stalled: no heartbeat /.test(d.log.slice(mark)), 'the worker itself was not stalled');
	const mm = await d.metrics();
	assert.equal(mm['naiberd_worker_stalls_total'], 0);
	assert.equal(mm['naiberd_worker_crashes_total'], 0);
});
