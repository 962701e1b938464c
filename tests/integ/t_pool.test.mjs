// t_pool: 20 concurrent Twilio streams, each served by its own pre-forked
// worker; the idle pool refills afterwards.  Every call runs on the full
// stack (tests/lib/stack.mjs): placed by POST /call, its stream bound by
// the nonce, the person loaded from PostgreSQL, an ElevenLabs conversation
// up before any media is sent, so every frame counts and reaches the
// agent.  An unbound stream is closed without counting frames.
import assert from 'node:assert/strict';
import { itest, waitFor, withTimeout, hex, RX, mulawFrame } from '../lib/harness.mjs';
import { prepareBoundStream, waitBound, boundDone, unboundDone } from '../lib/bind.mjs';
import { startStack } from '../lib/stack.mjs';

const N = 20;
const FRAMES = 50;
const IDLE = 4;

/* CALL_INFO lines; the second report of a call carries its conversation. */
const RX_INFO = /worker (\d+) call (CA[0-9a-fA-F]+) stream (MZ[0-9a-fA-F]+) type (\S+)(?: conversation (\S+))?/;

/* What s.sendMedia(n) sends, as bytes: frames 1..n. */
const sentBytes = (n) => Buffer.concat(Array.from({ length: n }, (_, i) => mulawFrame(i + 1)));

/* The pool is back to `idle` idle workers, nothing busy or exiting. */
async function poolSettled(d, idle, what) {
	await waitFor(async () => {
		const m = await d.metrics();
		return m['naiberd_workers{state="idle"}'] === idle && m['naiberd_workers{state="busy"}'] === 0 &&
		    (m['naiberd_workers{state="exiting"}'] ?? 0) === 0 && d.children().length === idle;
	}, 10000, what);
}

itest('20 concurrent streams, one distinct worker each, pool refills', { timeout: 60000 }, async () => {
	const st = await startStack({ workers: IDLE, maxCalls: 30 });
	const { d } = st;

	// The idle pool is there before any call, warm (READY).
	await poolSettled(d, IDLE, `${IDLE} idle workers at start`);
	const m0 = await d.metrics();
	assert.equal(m0['naiberd_workers{state="idle"}'], IDLE);
	assert.equal(m0['naiberd_workers{state="busy"}'], 0);
	assert.equal(m0['naiberd_handoffs_total'], 0);

	// Twenty calls placed (each prepared by an idle worker while it rings).
	const calls = await Promise.all(Array.from({ length: N }, () => st.placeCall()));
	await poolSettled(d, IDLE, `${IDLE} idle workers after the calls were prepared`);

	// Twenty streams live at once: each bound, its conversation up.  They
	// open five at a time, so twenty PostgreSQL backends do not all fork
	// in the same instant (the profile load has a 3 s bound).
	const mark = d.logMark();
	const streams = [];
	for (let i = 0; i < N; i += 5)
		streams.push(...await Promise.all(calls.slice(i, i + 5).map((c) =>
		    st.openStream(c, { since: mark, timeoutMs: 15000 }))));
	for (const s of streams) assert.ok(s.isOpen(), `stream ${s.callSid} still open`);

	// Every upgrade was handed to a worker.
	const accepted = await d.waitLogCount(RX.accepted, N, 10000, mark);
	assert.equal(accepted.length, N, 'one "accepted stream ... handoff N us" line per stream');

	// Map each call to the worker that reports it (CALL_INFO at binding,
	// and again with the conversation id).
	await d.waitLogCount(/worker \d+ call CA[0-9a-fA-F]+ stream MZ[0-9a-fA-F]+ type \S+ conversation /, N, 10000, mark);
	const infos = d.logMatches(RX_INFO, mark);
	const pidOf = new Map();
	for (const m of infos) {
		const pid = Number(m[1]);
		assert.ok(!pidOf.has(m[2]) || pidOf.get(m[2]) === pid, `call ${m[2]} reported by two workers`);
		pidOf.set(m[2], pid);
	}
	for (const s of streams) {
		assert.ok(pidOf.has(s.callSid), `no "worker <pid> call ${s.callSid} stream ..." line`);
		const lines = infos.filter((m) => m[2] === s.callSid);
		assert.equal(lines.length, 2, `CALL_INFO of ${s.callSid}: at binding and with the conversation`);
		for (const line of lines) {
			assert.equal(line[3], s.streamSid, `stream sid of ${s.callSid}`);
			assert.equal(line[4], 'general', `call type of ${s.callSid}`);
		}
		assert.equal(lines[1][5], s.conversationId, `conversation of ${s.callSid}`);
		assert.equal(pidOf.get(s.callSid), s.workerPid, `${s.callSid} bound on the worker that reports it`);
	}
	const pids = [...pidOf.values()];
	assert.equal(pids.length, N);
	assert.equal(new Set(pids).size, N, `20 distinct worker PIDs, got ${pids.join(' ')}`);
	assert.equal(new Set(streams.map((s) => s.conversationId)).size, N, '20 distinct conversations');

	// The accepted-stream PIDs are the same workers.
	const acceptedPids = new Set(accepted.map((m) => Number(m[1])));
	for (const p of pids) assert.ok(acceptedPids.has(p), `worker ${p} has no "accepted stream" line`);

	// All busy workers are children of the supervisor (while they are busy).
	const kids = new Set(d.children());
	for (const p of pids) assert.ok(kids.has(p), `worker ${p} is not a child of supervisor ${d.pid}`);
	const mBusy = await d.metrics();
	assert.equal(mBusy['naiberd_workers{state="busy"}'], N, 'busy workers while all calls are live');

	// Fifty frames each; every byte reaches that call's conversation.
	await Promise.all(streams.map(async (s) => {
		await s.sendMedia(FRAMES);
		await s.elConv.waitAudioBytes(FRAMES * 160, 10000);
		await s.sendStop();
	}));
	const want = sentBytes(FRAMES);
	for (const s of streams)
		assert.ok(s.elConv.audioBytes().equals(want), `audio of ${s.callSid} reached ElevenLabs byte-identical`);

	const dones = await d.waitLogCount(RX.done, N, 15000, mark);
	for (const s of streams) {
		const m = dones.find((x) => x[2] === s.callSid);
		assert.ok(m, `no done line for ${s.callSid}`);
		assert.equal(Number(m[1]), pidOf.get(s.callSid), `done line of ${s.callSid} comes from its worker`);
		assert.equal(m[3], 'stop', `reason of ${s.callSid}`);
		assert.equal(Number(m[4]), FRAMES, `frames_in of ${s.callSid}`);
		const full = await boundDone(d, s.callSid, { since: mark });
		assert.equal(full.dropped, 0, `dropped of ${s.callSid} (all media sent once the conversation was up)`);
	}

	// Every stream ends; the workers exit and the idle pool is back to 4.
	await Promise.all(streams.map((s) => s.closed.then(() => {}, () => {})));
	await poolSettled(d, IDLE, 'idle pool back to 4 (metrics and children)');
	for (const p of pids) assert.ok(!d.children().includes(p), `worker ${p} still a child after its call`);

	const m1 = await d.metrics();
	assert.equal(m1['naiberd_handoffs_total'], N);
	assert.equal(m1['naiberd_calls_done_total'], N);
	assert.equal(m1['naiberd_frames_in_total'], N * FRAMES);
	assert.equal(m1['naiberd_worker_crashes_total'], 0);
	assert.ok(d.alive(), 'supervisor alive');
});

itest('at capacity (busy == max calls) a new stream gets 503 and consumes nothing', { timeout: 30000 }, async () => {
	const st = await startStack({ workers: 1, maxCalls: 2 });
	const { d } = st;
	await waitFor(() => d.children().length === 1, 5000, '1 idle worker');
	const mark = d.logMark();
	const live = [];
	for (let i = 0; i < 2; i++) live.push(await st.openStream(await st.placeCall()));
	await d.waitLogCount(RX.callInfo, 2, 5000, mark);
	const m0 = await d.metrics();
	assert.equal(m0['naiberd_workers{state="busy"}'], 2);

	// A stream for a call that was placed (its context is in the shared
	// Redis: placed by another instance, since this one's POST /call is
	// itself at capacity): capacity is the only reason to refuse it.
	const extra = await prepareBoundStream(d, { redis: st.redis });
	const err = await extra.opened.then(() => null, (e) => e);
	assert.ok(err, 'third stream must not be accepted at capacity');
	assert.equal(err.status, 503, `third stream: ${err.message}`);
	const m1 = await d.metrics();
	assert.equal(m1['naiberd_handoffs_total'], m0['naiberd_handoffs_total'], 'no handoff for the refused stream');
	assert.ok((await d.http('GET', '/health')).status === 200, '/health still answers at capacity');

	// One call ends; a new stream is accepted again.
	await live[0].sendMedia(3);
	await live[0].sendStop();
	await d.waitLog(new RegExp(`call ${live[0].callSid} done: reason=stop frames_in=3 `), 5000, mark);
	await waitFor(async () => (await d.metrics())['naiberd_workers{state="busy"}'] === 1, 5000, 'one busy worker');
	const again = await st.openStream(await st.placeCall());
	await again.sendMedia(2);
	await again.sendStop();
	await d.waitLog(new RegExp(`call ${again.callSid} done: reason=stop frames_in=2 `), 5000, mark);
	await live[1].sendStop();
	await d.waitLog(new RegExp(`call ${live[1].callSid} done: reason=stop frames_in=0 `), 5000, mark);
});

itest('a stream closed without stop ends with reason=closed', { timeout: 20000 }, async () => {
	const st = await startStack({ workers: 1, maxCalls: 2 });
	const { d } = st;
	const mark = d.logMark();
	const s = await st.openStream(await st.placeCall());
	await s.sendMedia(7);
	await d.waitLog(new RegExp(`call ${s.callSid} stream`), 5000, mark);
	await s.close(1000);
	const m = await d.waitLog(new RegExp(`worker (\\d+) call ${s.callSid} done: reason=(\\S+) frames_in=(\\d+)`), 5000, mark);
	assert.equal(m[2], 'closed');
	assert.equal(Number(m[3]), 7);
	// TCP loss without a close frame counts the same.
	const t = await st.openStream(await st.placeCall());
	await t.sendMedia(4);
	await d.waitLog(new RegExp(`call ${t.callSid} stream`), 5000, mark);
	await t.elConv.waitAudioBytes(4 * 160);
	t.terminate();
	const m2 = await d.waitLog(new RegExp(`worker (\\d+) call ${t.callSid} done: reason=(\\S+) frames_in=(\\d+)`), 5000, mark);
	assert.equal(m2[2], 'closed');
	assert.equal(Number(m2[3]), 4);
});

itest('the pool path enforces binding: a stream without the right nonce is closed and counts no frames', { timeout: 30000 }, async () => {
	const st = await startStack({ workers: 2, maxCalls: 4 });
	const { d } = st;

	// Calls we did place (call:{callSid} is in Redis), but the stream
	// does not present their nonce.
	const cases = [['no nonce', null], ['wrong nonce', hex(16)]];
	const placed = [];
	for (let i = 0; i < cases.length + 1; i++) placed.push(await st.placeCall());
	await poolSettled(d, 2, '2 idle workers');
	const m0 = await d.metrics();
	const mark = d.logMark();

	for (const [i, [what, nonce]] of cases.entries()) {
		const call = placed[i];
		const params = { call_type: 'general' };
		if (nonce !== null) params.nonce = nonce;
		const s = d.stream({ callSid: call.callSid, customParameters: params });
		await s.opened;
		assert.equal(s.upgradeStatus, 101, `${what}: the signature is valid, so the upgrade is accepted`);
		await s.sendConnected();
		await s.sendStart();
		// Audio right behind the start; it may race naiberd's close.
		await s.sendMedia(5).catch(() => {});
		const cl = await withTimeout(s.closed, 6000, `${what}: naiberd closing the unbound stream`);
		assert.notEqual(cl.code, 1006, `${what}: closed with a close frame (got ${JSON.stringify(cl)})`);
		const u = await unboundDone(d, s.callSid, { since: mark });
		assert.equal(u.reason, 'stream not bound', `${what}: done reason`);
		assert.equal(u.framesIn, 0, `${what}: frames_in`);
		assert.ok(u.dropped <= 5, `${what}: dropped=${u.dropped} counts at most the 5 frames sent`);
		// The done line may name the callSid the stream claimed (from the
		// DONE report) or '-'; never CALL_INFO (below) for an unbound stream.
		assert.ok(u.callSid === '-' || u.callSid === s.callSid, `${what}: done line names ${u.callSid}`);
		const text = d.log.slice(mark);
		assert.ok(!new RegExp(`call ${s.callSid} stream MZ`).test(text), `${what}: no CALL_INFO line`);
		assert.ok(!new RegExp(`callSid=${s.callSid} stream bound`).test(text), `${what}: never bound`);
		assert.ok(!s.received.some((m) => m.event === 'media'), `${what}: no audio sent to the caller`);
	}
	assert.equal(st.el.requests.length, 0, 'no ElevenLabs request for an unbound stream');

	// Nothing counted, nothing crashed, and the pool refills.
	await poolSettled(d, 2, 'pool back to 2 idle workers');
	const m1 = await d.metrics();
	assert.equal(m1['naiberd_frames_in_total'], m0['naiberd_frames_in_total'], 'no frames_in from unbound streams');
	assert.equal(m1['naiberd_handoffs_total'], m0['naiberd_handoffs_total'] + cases.length);
	assert.equal(m1['naiberd_worker_crashes_total'], 0);

	// The same daemon serves a bound stream.  Media sent before binding
	// completes is dropped, media after the conversation is up is counted:
	// Redis is paused (CLIENT PAUSE ALL, well under the 3 s bind bound) so
	// the 5 frames sent right behind the start arrive while the lookup is
	// pending.
	const since = d.logMark();
	const s = await st.openStream(placed[cases.length], {
		since,
		afterStart: async (x) => {
			assert.equal(await st.redis.call('CLIENT', 'PAUSE', '1000', 'ALL'), 'OK');
			await x.sendMedia(5);
		},
	});
	const b = await waitBound(d, s.callSid, { since, timeoutMs: 5000 });
	assert.equal(b.type, 'general');
	assert.ok(d.log.slice(since).indexOf(`callSid=${s.callSid} stream bound`) >
	    d.log.slice(since).indexOf(`callSid=${s.callSid} stream started`), 'bound after the start');
	await s.sendMedia(10);
	await s.sendStop();
	const dn = await boundDone(d, s.callSid, { since });
	assert.equal(dn.reason, 'stop');
	assert.equal(dn.framesIn, 10, 'frames_in counts only the frames sent once the conversation was up');
	assert.equal(dn.dropped, 5, 'the frames sent before binding completed are dropped');
	assert.equal(s.elConv.audio.length, 10, 'ElevenLabs got only the counted frames');
	assert.equal(s.elConv.audioBeforeMetadata, 0);
	const m2 = await d.metrics();
	assert.equal(m2['naiberd_frames_in_total'], m0['naiberd_frames_in_total'] + 10);
	assert.ok(d.alive(), 'supervisor alive');
});
