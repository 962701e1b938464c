// t_session_keys: the session keys of a live call (DESIGN.md section 4),
// through real calls.  On conversation_initiation_metadata the worker
// writes session:{conversationId} (compact JSON {callSid, conversationId,
// userId, phone, streamSid, startedAt, lastMessageAt, callType}, ISO 8601
// times, TTL 3600 s), rag:user:{userId} and rag:phone:{phone} (the
// conversation id, TTL 3600 s).  At the end the session key is deleted,
// and each rag:* key only if it still holds this call's conversation id,
// so a newer call for the same person keeps its keys.
import assert from 'node:assert/strict';
import { itest, withTimeout, waitFor } from '../lib/harness.mjs';
import { startStack, DEFAULT_PERSON } from '../lib/stack.mjs';

const P = DEFAULT_PERSON;
const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

function stest(name, opts, fn) {
	return itest(name, opts, async (t) => {
		const ctx = { t, st: null };
		try {
			ctx.st = await startStack({ workers: 2, maxCalls: 10 });
			await fn(ctx, ctx.st);
		} finally {
			if (ctx.st) await withTimeout(ctx.st.stop(), 20000, 'stack stop').catch(() => {});
		}
	});
}

const get = (st, k) => st.redis.call('GET', k);
const ttl = (st, k) => st.redis.call('TTL', k);

/* A live call whose session keys are written: {call, s, conv, since, tStart, tUp}. */
async function liveCall(st, { callType = 'general' } = {}) {
	const since = st.d.logMark();
	const call = await st.placeCall({ callType });
	await st.d.waitLog(`prepare ${call.callSid}: first message stored`, 10000, since);
	const tStart = Date.now();
	const s = await st.openStream(call, { since });
	await waitFor(async () => (await get(st, `session:${s.conversationId}`)) !== null, 5000,
	    `session:${s.conversationId} written`);
	return { call, s, conv: s.conversationId, since, tStart, tUp: Date.now() };
}

async function hangUp(st, r) {
	await r.s.sendStop().catch(() => {});
	const m = await st.d.waitLog(new RegExp(`worker \\d+ call ${r.call.callSid} done: reason=(.+?) frames_in=`), 10000, r.since);
	return m[1];
}

/* The exact session value, and the TTLs of the three keys. */
async function checkSession(st, r, callType) {
	const raw = await get(st, `session:${r.conv}`);
	const v = JSON.parse(raw);
	assert.deepEqual(Object.keys(v).sort(), ['callSid', 'callType', 'conversationId', 'lastMessageAt', 'phone',
	    'startedAt', 'streamSid', 'userId'], raw);
	assert.match(v.startedAt, ISO_MS, 'startedAt: ISO 8601 UTC with milliseconds');
	assert.match(v.lastMessageAt, ISO_MS, 'lastMessageAt: ISO 8601 UTC with milliseconds');
	const started = Date.parse(v.startedAt), last = Date.parse(v.lastMessageAt);
	assert.ok(started >= r.tStart - 1000 && started <= r.tUp + 1000,
	    `startedAt ${v.startedAt} is when the stream started (${new Date(r.tStart).toISOString()}..)`);
	assert.ok(last >= started && last <= Date.now() + 1000, 'lastMessageAt is not before startedAt');
	// Exactly: compact, in the documented field order.
	const want = {
		callSid: r.call.callSid, conversationId: r.conv, userId: P.id, phone: P.phone,
		streamSid: r.s.streamSid, startedAt: v.startedAt, lastMessageAt: v.lastMessageAt, callType,
	};
	assert.equal(raw, JSON.stringify(want), 'the session JSON, byte for byte');
	assert.equal(await get(st, `rag:user:${P.id}`), r.conv);
	assert.equal(await get(st, `rag:phone:${P.phone}`), r.conv);
	for (const k of [`session:${r.conv}`, `rag:user:${P.id}`, `rag:phone:${P.phone}`]) {
		const t = await ttl(st, k);
		assert.ok(t > 3590 && t <= 3600, `${k}: TTL ${t}, about 3600 s`);
	}
}

stest('session keys: exact JSON during the call, all three removed at the end', { timeout: 60000 },
    async (ctx, st) => {
	for (const callType of ['general', 'health_check']) {
		await ctx.t.test(callType, async () => {
			const r = await liveCall(st, { callType });
			await checkSession(st, r, callType);
			assert.equal(await hangUp(st, r), 'stop');
			for (const k of [`session:${r.conv}`, `rag:user:${P.id}`, `rag:phone:${P.phone}`])
				assert.equal(await get(st, k), null, `${k} deleted at the end`);
		});
	}
});

stest('a newer call for the same person keeps its rag keys when the older call ends', { timeout: 60000 },
    async (ctx, st) => {
	const a = await liveCall(st);
	await checkSession(st, a, 'general');
	const b = await liveCall(st);			// same phone, same person, A still live
	assert.notEqual(b.conv, a.conv);
	assert.equal(await get(st, `rag:user:${P.id}`), b.conv, 'the newer call owns rag:user');
	assert.equal(await get(st, `rag:phone:${P.phone}`), b.conv, 'the newer call owns rag:phone');
	assert.ok(a.s.isOpen(), 'call A is still live');

	assert.equal(await hangUp(st, a), 'stop');
	assert.equal(await get(st, `session:${a.conv}`), null, 'the older session is deleted');
	assert.equal(await get(st, `rag:user:${P.id}`), b.conv, 'rag:user still points at the newer call');
	assert.equal(await get(st, `rag:phone:${P.phone}`), b.conv, 'rag:phone still points at the newer call');
	assert.notEqual(await get(st, `session:${b.conv}`), null, 'the newer session is untouched');
	const tt = await ttl(st, `rag:user:${P.id}`);
	assert.ok(tt > 3500, `rag:user keeps its TTL (${tt})`);

	assert.equal(await hangUp(st, b), 'stop');
	for (const k of [`session:${b.conv}`, `rag:user:${P.id}`, `rag:phone:${P.phone}`])
		assert.equal(await get(st, k), null, `${k} deleted when the newer call ends`);
});

stest('a rag key taken over by another conversation is left alone', { timeout: 60000 }, async (ctx, st) => {
	const r = await liveCall(st);
	const other = 'conv_newer_' + Date.now();
	assert.equal(await st.redis.call('SET', `rag:user:${P.id}`, other, 'EX', '3600'), 'OK');
	assert.equal(await hangUp(st, r), 'stop');
	assert.equal(await get(st, `rag:user:${P.id}`), other, 'rag:user of the other conversation kept');
	assert.equal(await get(st, `rag:phone:${P.phone}`), null, 'rag:phone (still ours) deleted');
	assert.equal(await get(st, `session:${r.conv}`), null, 'our session deleted');
});
