// t_chaos: nothing lost when workers die mid-call (DESIGN §6 "worker
// crashes mid-call").  50 concurrent calls (-w 10 -m 60), each placed by
// POST /call for its own person and streamed; 10 of them have their busy
// worker SIGKILLed at a random moment after the conversation started (the
// PID from the supervisor's "worker <pid> call <sid>" line).  Then:
//   - the other 40 end normally (Twilio stop) with their done lines;
//   - exactly one post-call job per conversation, all 50, consumed once by
//     a real BullMQ 5 Worker (the killed ones through the supervisor's
//     orphan clean-up), data matching the call and the person;
//   - no session:* or rag:* key is left once everything ended;
//   - every killed call's Twilio call was ended by REST (Status=completed).
// The numbers, and the enqueue latency seen in the worker log ("call
// ended:" to "post-call job added as"), are printed for the record, not
// asserted (DESIGN §11).  CHAOS_SEED=<n> replays a run's random choices.
import assert from 'node:assert/strict';
import { itest, waitFor, withTimeout, sleep, pidAlive } from '../lib/harness.mjs';
import { startStack, personSql, scanKeys, reEsc, JOB_PREFIX } from '../lib/stack.mjs';
import { startConsumer } from '../lib/jobs.mjs';

const CALLS = 50;
const KILLS = 10;
const WORKERS = 10;
const MAX_CALLS = 60;

// --------------------------------------------------------------- helpers

/* mulberry32: a small seeded PRNG, so a failing run can be replayed. */
function prng(seed) {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6D2B79F5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

/* The timestamp (ms) of the log line holding index i. */
function lineTime(log, i) {
	const start = log.lastIndexOf('\n', i) + 1;
	const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)/.exec(log.slice(start, start + 30));
	return m ? Date.parse(m[1]) : NaN;
}

function pct(sorted, p) {
	if (!sorted.length) return NaN;
	return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))];
}

// ------------------------------------------------------------------ test

itest(`chaos: ${CALLS} concurrent calls, ${KILLS} busy workers SIGKILLed mid-conversation: ` +
    'one job per conversation, no session keys left, killed calls ended by REST', { timeout: 240000 }, async (t) => {
	const seed = Number(process.env.CHAOS_SEED ?? (Date.now() % 1000000));
	const rnd = prng(seed);
	console.log(`chaos: seed ${seed} (CHAOS_SEED=${seed} replays the choices)`);

	const st = await startStack({ workers: WORKERS, maxCalls: MAX_CALLS, person: false });
	const { d } = st;
	assert.ok(d.args.includes('-w') && d.args[d.args.indexOf('-w') + 1] === String(WORKERS));
	assert.ok(d.args.includes('-m') && d.args[d.args.indexOf('-m') + 1] === String(MAX_CALLS));

	// One person per call: every other one on a first call; every third
	// call a health check.
	const plan = [];
	for (let i = 0; i < CALLS; i++) {
		plan.push({
			i,
			person: {
				id: `u-chaos-${String(i).padStart(2, '0')}`, name: `Person ${i}`,
				phone: `+1555010${String(i).padStart(4, '0')}`, age: 70 + (i % 25), gender: i % 2 ? 'MALE' : 'FEMALE',
				interests: ['music'], dislikes: [], isFirstCall: i % 2 === 0, lastCallAt: null,
				summaries: i % 2 === 0 ? [] : [`Talked about the weather (${i}).`],
				conditions: [], medications: [],
			},
			health: i % 3 === 0,
			victim: false,
		});
	}
	await st.pg.psql(plan.map((c) => personSql(c.person)).join('\n'));
	// The victims: KILLS distinct calls, chosen by the seeded PRNG.
	const order = plan.map((c) => c.i);
	for (let i = order.length - 1; i > 0; i--) {
		const j = Math.floor(rnd() * (i + 1));
		[order[i], order[j]] = [order[j], order[i]];
	}
	for (const i of order.slice(0, KILLS)) plan[i].victim = true;
	for (const c of plan) {
		c.startGap = Math.floor(rnd() * 40);		// ms after the previous call
		c.holdMs = c.victim ? 50 + Math.floor(rnd() * 2950) : 800 + Math.floor(rnd() * 3200);
	}

	const consumer = await startConsumer('bullmq5', st.redis.port, { t });
	await waitFor(() => d.children().length >= WORKERS, 10000, `${WORKERS} idle workers`);
	const mark = d.logMark();
	const tBegin = Date.now();

	const runCall = async (c) => {
		c.call = await st.placeCall({ phone: c.person.phone, health: c.health });
		const s = await st.openStream(c.call, { timeoutMs: 30000 });
		c.s = s;
		c.conv = s.conversationId;
		// Caller audio, 20 ms frames every 100 ms, until the stream closes.
		let pumping = true;
		const pump = (async () => {
			while (pumping && s.isOpen()) {
				await s.sendMedia(1).catch(() => {});
				await sleep(100);
			}
		})();
		await sleep(c.holdMs);
		if (c.victim) {
			// The PID of the busy worker, from the supervisor's CALL_INFO line.
			const m = new RegExp(`supervisor\\[\\d+\\] info: worker (\\d+) call ${reEsc(c.call.callSid)} stream `)
			    .exec(d.log.slice(mark));
			assert.ok(m, `supervisor line "worker <pid> call ${c.call.callSid}"`);
			c.pid = Number(m[1]);
			assert.ok(d.children().includes(c.pid) && pidAlive(c.pid), `worker ${c.pid} is a live child`);
			c.killedAt = Date.now();
			process.kill(c.pid, 'SIGKILL');
			await d.waitLog(`worker ${c.pid} (call ${c.call.callSid}) killed by signal 9`, 15000, mark);
			await withTimeout(s.closed, 10000, `stream of killed call ${c.call.callSid} closed`);
			pumping = false;
			await pump;
		} else {
			pumping = false;
			await pump;
			c.framesSent = s.framesSent;
			await s.sendStop();
			const m = await d.waitLog(new RegExp(`worker (\\d+) call ${reEsc(c.call.callSid)} done: ` +
			    'reason=(.+?) frames_in=(\\d+)'), 20000, mark);
			c.pid = Number(m[1]);
			c.doneReason = m[2];
			c.framesIn = Number(m[3]);
		}
	};

	const tasks = [];
	for (const c of plan) {
		await sleep(c.startGap);
		tasks.push(runCall(c).then(() => { c.ok = true; }, (e) => { c.err = e; }));
	}
	await Promise.all(tasks);
	const failed = plan.filter((c) => c.err);
	assert.equal(failed.length, 0, `calls that failed: ${failed.map((c) => `#${c.i}${c.victim ? ' (victim)' : ''}: ` +
	    c.err.message).join('; ')}`);
	const victims = plan.filter((c) => c.victim);
	const normal = plan.filter((c) => !c.victim);
	const tCalls = Date.now() - tBegin;

	// The 40: done lines, ended by Twilio's stop, every frame counted.
	for (const c of normal) {
		assert.equal(c.doneReason, 'stop', `call #${c.i} ${c.call.callSid} done reason`);
		assert.equal(c.framesIn, c.framesSent, `call #${c.i}: frames_in ${c.framesIn} of ${c.framesSent} sent`);
	}
	assert.equal(new Set(plan.map((c) => c.conv)).size, CALLS, 'distinct conversation ids');
	assert.equal(new Set(victims.map((c) => c.pid)).size, KILLS, 'distinct victim workers');

	// The 10: orphan clean-up by the supervisor, no DONE line.
	const since = d.log.slice(mark);
	for (const c of victims) {
		assert.doesNotMatch(since, new RegExp(`call ${reEsc(c.call.callSid)} done:`), `no done line for killed #${c.i}`);
		await d.waitLog(new RegExp(`call ${reEsc(c.call.callSid)} conversation ${reEsc(c.conv)}: post-call job ` +
		    '(added|already queued) after the worker died'), 15000, mark);
	}

	// Every killed call ended by REST at Twilio.
	await st.tw.waitFor((tw) => victims.every((c) => tw.updates().some((r) => r.callSid === c.call.callSid &&
	    r.form.Status?.[0] === 'completed' && r.answer?.status === 200)), 15000,
	    'Status=completed for every killed call');
	const restEnded = victims.filter((c) => st.tw.updates().some((r) => r.callSid === c.call.callSid &&
	    r.form.Status?.[0] === 'completed')).length;

	// Exactly one job per conversation, consumed once.
	const procs = await consumer.waitCompleted(CALLS, { timeoutMs: 30000, intervalMs: 100, settleMs: 2000 });
	const perConv = new Map();
	for (const p of procs) perConv.set(p.data.conversationId, (perConv.get(p.data.conversationId) ?? 0) + 1);
	const jobsInRedis = Number(await st.redis.call('GET', `${JOB_PREFIX}id`));
	for (const c of plan) {
		assert.equal(perConv.get(c.conv), 1, `call #${c.i}${c.victim ? ' (killed)' : ''} conversation ${c.conv}: ` +
		    `${perConv.get(c.conv) ?? 0} jobs`);
		const j = procs.find((p) => p.data.conversationId === c.conv);
		assert.equal(j.name, 'process-post-call');
		assert.equal(j.data.userId, c.person.id, `call #${c.i}: userId`);
		assert.equal(j.data.isFirstCall, c.person.isFirstCall, `call #${c.i}: isFirstCall`);
		assert.equal(j.data.callType, c.health ? 'health_check' : 'general', `call #${c.i}: callType`);
		assert.ok(Number.isInteger(j.data.timestamp));
	}
	assert.equal(procs.length, CALLS, 'no extra job');
	assert.equal(jobsInRedis, CALLS, 'job ids taken in Redis');

	// No session keys left once everything ended.
	let leftSession = [], leftRag = [];
	await waitFor(async () => {
		leftSession = await scanKeys(st.redis, 'session:*');
		leftRag = await scanKeys(st.redis, 'rag:*');
		return leftSession.length === 0 && leftRag.length === 0;
	}, 5000, 'no session:* / rag:* keys', 200).catch(() => {});

	// Enqueue latency from the worker log: "call ended:" -> "post-call job added as".
	const log = d.log.slice(mark);
	const lat = [];
	for (const c of normal) {
		const sid = reEsc(c.call.callSid);
		const e = new RegExp(`callSid=${sid} [^\\n]*call ended: `).exec(log);
		const a = new RegExp(`callSid=${sid} [^\\n]*post-call job added as `).exec(log);
		if (e && a) lat.push(lineTime(log, a.index) - lineTime(log, e.index));
	}
	lat.sort((x, y) => x - y);
	// Orphan path: "killed by signal" -> "post-call job added after the worker died".
	const olat = [];
	for (const c of victims) {
		const sid = reEsc(c.call.callSid);
		const k = new RegExp(`worker ${c.pid} \\(call ${sid}\\) killed by signal`).exec(log);
		const a = new RegExp(`call ${sid} conversation \\S+: post-call job added after the worker died`).exec(log);
		if (k && a) olat.push(lineTime(log, a.index) - lineTime(log, k.index));
	}
	olat.sort((x, y) => x - y);
	const m = await d.metrics();

	console.log(`chaos: calls ${CALLS} (-w ${WORKERS} -m ${MAX_CALLS}), completed normally ${normal.length}, ` +
	    `kills ${victims.length} (SIGKILL ${victims.map((c) => c.holdMs).sort((a, b) => a - b).join('/')} ms after ` +
	    `the conversation started), calls took ${tCalls} ms`);
	console.log(`chaos: jobs in Redis ${jobsInRedis}, consumed ${procs.length} for ${perConv.size} distinct ` +
	    `conversations (max per conversation ${Math.max(...perConv.values())}), ` +
	    `killed calls ended by REST ${restEnded}/${victims.length}`);
	console.log(`chaos: leftover keys session:* ${leftSession.length}, rag:* ${leftRag.length}` +
	    (leftSession.length + leftRag.length ? ` (${[...leftSession, ...leftRag].join(' ')})` : ''));
	console.log(`chaos: metrics naiberd_worker_crashes_total ${m.naiberd_worker_crashes_total}`);
	console.log(`chaos: enqueue latency (worker log "call ended:" -> "post-call job added as", ms resolution) ` +
	    `n ${lat.length} p50 ${pct(lat, 50)} ms p99 ${pct(lat, 99)} ms max ${lat.at(-1)} ms`);
	console.log(`chaos: orphan clean-up (supervisor "killed by signal" -> "post-call job added after the worker ` +
	    `died") n ${olat.length} p50 ${pct(olat, 50)} ms p99 ${pct(olat, 99)} ms max ${olat.at(-1)} ms`);

	assert.deepEqual(leftSession, [], 'no session:* keys left');
	assert.deepEqual(leftRag, [], 'no rag:* keys left');
	assert.equal(m.naiberd_worker_crashes_total, KILLS, 'crashes counted');
	assert.equal(lat.length, normal.length, 'both log lines found for every normal call');
	assert.ok(d.alive(), 'supervisor alive');
	const h = await d.http('GET', '/health');
	assert.equal(h.status, 200);
});
