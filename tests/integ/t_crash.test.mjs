// t_crash: a worker killed by SIGSEGV mid-call harms only its own call.
// The calls run on the full stack (tests/lib/stack.mjs): placed by POST
// /call, bound, each with its ElevenLabs conversation up.  The supervisor
// cleans up after the dead worker (DESIGN section 6): session keys
// deleted, post-call job enqueued, the Twilio call ended by REST.
import assert from 'node:assert/strict';
import { itest, waitFor, withTimeout, RX, callInfoLine, doneLine, TEST_PHONE } from '../lib/harness.mjs';
import { startStack, DEFAULT_PERSON } from '../lib/stack.mjs';

itest('SIGSEGV in one busy worker leaves the other calls running', { timeout: 40000 }, async () => {
	const st = await startStack({ workers: 2, maxCalls: 10 });
	const { d, redis, tw } = st;
	await waitFor(() => d.children().length === 2, 5000, '2 idle workers');
	const mark = d.logMark();

	const streams = [];
	for (let i = 0; i < 3; i++) {
		const s = await st.openStream(await st.placeCall());
		await s.sendMedia(10);
		streams.push(s);
	}
	const pid = new Map();
	for (const s of streams) {
		const m = await callInfoLine(d, s.callSid, mark);
		pid.set(s.callSid, Number(m[1]));
		assert.equal(Number(m[1]), s.workerPid);
	}
	assert.equal(new Set(pid.values()).size, 3, 'three distinct workers');

	const [victim, ...others] = streams;
	const vpid = pid.get(victim.callSid);
	// The supervisor knows the victim's conversation before the crash.
	await d.waitLog(`worker ${vpid} call ${victim.callSid} stream ${victim.streamSid} type general ` +
	    `conversation ${victim.conversationId}`, 5000, mark);
	await victim.elConv.waitAudioBytes(10 * 160);
	assert.ok(d.children().includes(vpid), `victim ${vpid} is a child of the supervisor`);
	process.kill(vpid, 'SIGSEGV');

	await d.waitLog(`worker ${vpid} (call ${victim.callSid}) killed by signal 11`, 5000, mark);
	// The victim's Twilio socket goes away (the kernel closes it with the process).
	await withTimeout(victim.closed, 5000, 'victim stream to close');

	// The other two calls keep working.
	for (const s of others) assert.ok(s.isOpen(), `stream ${s.callSid} still open after the crash`);
	await Promise.all(others.map(async (s) => {
		await s.sendMedia(20);
		await s.sendStop();
	}));
	for (const s of others) {
		const m = await doneLine(d, s.callSid, 5000, mark);
		assert.equal(Number(m[1]), pid.get(s.callSid));
		assert.equal(m[2], 'stop');
		assert.equal(Number(m[3]), 30, `frames_in of ${s.callSid}`);
		assert.equal(s.elConv.audioBytes().length, 30 * 160, `audio of ${s.callSid} at ElevenLabs`);
	}
	assert.ok(!new RegExp(`call ${victim.callSid} done:`).test(d.log.slice(mark)),
	    'no DONE line for the crashed call');

	const m = await d.metrics();
	assert.equal(m['naiberd_worker_crashes_total'], 1);

	// Clean-up after the crashed call: its session keys go, its post-call
	// job is enqueued (the conversation was known), its Twilio call is
	// ended by REST.
	const cid = victim.conversationId;
	await waitFor(async () => (await redis.call('EXISTS', `session:${cid}`)) === 0, 5000,
	    `session:${cid} deleted after the crash`);
	const job = await waitFor(async () => (await st.postCallJobs()).find((j) => j.data?.conversationId === cid), 5000,
	    `a post-call job for the crashed call's conversation ${cid}`);
	assert.equal(job.name, 'process-post-call');
	assert.equal(job.data.userId, DEFAULT_PERSON.id);
	await tw.waitFor(() => tw.updates().some((u) => u.callSid === victim.callSid &&
	    (u.form.Status ?? []).includes('completed')), 5000, `REST Status=completed for ${victim.callSid}`);
	// The rag keys belong to the newest call of the same person (another
	// live call may hold them): they never point at the crashed one.
	for (const k of [`rag:user:${DEFAULT_PERSON.id}`, `rag:phone:${TEST_PHONE}`])
		assert.notEqual(await redis.call('GET', k), cid, `${k} still points at the crashed conversation`);

	// Pool refills: two idle, none busy, two children.
	await waitFor(async () => {
		const mm = await d.metrics();
		return mm['naiberd_workers{state="idle"}'] === 2 && mm['naiberd_workers{state="busy"}'] === 0 &&
		    d.children().length === 2;
	}, 10000, 'pool back to 2 idle workers');
	assert.ok(!d.children().includes(vpid), 'crashed worker reaped');

	const h = await d.http('GET', '/health');
	assert.equal(h.status, 200);
	assert.ok(d.alive(), 'supervisor alive');

	// And a new call still works.
	const s = await st.openStream(await st.placeCall());
	await s.sendMedia(3);
	await s.sendStop();
	const dn = await doneLine(d, s.callSid, 5000, mark);
	assert.equal(Number(dn[3]), 3);
	assert.equal(RX.done.test(d.log), true);
});
