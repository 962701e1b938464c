// t_sessions: GET /sessions lists the JSON values of every session:* key,
// found with SCAN (several rounds here), never KEYS; values that are not
// JSON objects are skipped; the API token is required.
import assert from 'node:assert/strict';
import { itest, startCallStack, apiGet, redisMonitor, sleep } from '../lib/harness.mjs';

const BULK = 350;

function session(i) {
	return {
		callSid: `CA${String(i).padStart(32, '0')}`, conversationId: `conv_${i}`, userId: `user_${i}`,
		phone: `+1555${String(i).padStart(7, '0')}`, streamSid: `MZ${String(i).padStart(32, '0')}`,
		startedAt: '2026-03-03T10:14:02.000Z', lastMessageAt: '2026-03-03T10:15:02.000Z',
		callType: i % 2 ? 'general' : 'health_check',
	};
}

itest('GET /sessions: token required; lists session:* JSON via SCAN, skipping junk', { timeout: 40000 }, async () => {
	const { d, redis } = await startCallStack({ workers: 1 });

	// Empty.
	const r0 = await apiGet(d, '/sessions');
	assert.equal(r0.status, 200, r0.body);
	assert.match(r0.headers['content-type'] ?? '', /application\/json/);
	assert.deepEqual(r0.json, { count: 0, sessions: [] });

	// Auth.
	for (const [what, token, headers] of [
		['no token', null, {}], ['wrong token', 'y' + d.apiToken.slice(1), {}],
		['Basic', null, { Authorization: `Basic ${Buffer.from('a:' + d.apiToken).toString('base64')}` }],
	]) {
		const r = await apiGet(d, '/sessions', { token, headers });
		assert.equal(r.status, 401, `${what}: ${r.status} ${r.body}`);
		assert.ok(!r.body.includes('conv_'), 'nothing leaked');
	}

	// Three hand-written sessions, junk, and enough bulk for several
	// SCAN rounds; plus keys of other kinds that must not be listed.
	const named = [session(1), session(2), { ...session(3), note: 'ünïcödé "quoted" \\ \n' }];
	const cmds = named.map((s) => ['SET', `session:${s.conversationId}`, JSON.stringify(s), 'EX', '3600']);
	for (let i = 0; i < BULK; i++)
		cmds.push(['SET', `session:bulk_${i}`, JSON.stringify(session(1000 + i)), 'EX', '3600']);
	cmds.push(['SET', 'session:junk', 'not json at all']);
	cmds.push(['SET', 'session:truncated', '{"callSid":"CA1"']);
	cmds.push(['SET', 'session:array', '[1,2,3]']);
	cmds.push(['SET', 'session:number', '42']);
	cmds.push(['HSET', 'session:hash', 'callSid', 'CA1']);
	cmds.push(['SET', 'call:CAxx', JSON.stringify({ callType: 'general', nonce: 'n' })]);
	cmds.push(['SET', 'rag:user:1', 'conv_1']);
	cmds.push(['SET', 'sessionx:conv_9', JSON.stringify(session(9))]);
	cmds.push(['SET', 'xsession:conv_8', JSON.stringify(session(8))]);
	const replies = await redis.pipeline(cmds, { timeoutMs: 10000 });
	assert.equal(replies.length, cmds.length);
	assert.ok(replies.every((x) => !(x instanceof Error)), 'all writes succeeded');

	const mon = redisMonitor(redis.port);
	await mon.ready;
	const r = await apiGet(d, '/sessions', { timeoutMs: 10000 });
	await sleep(200);	// let MONITOR lines arrive
	mon.stop();

	assert.equal(r.status, 200, r.body.slice(0, 300));
	assert.equal(typeof r.json?.count, 'number');
	assert.ok(Array.isArray(r.json.sessions));
	assert.equal(r.json.count, named.length + BULK, 'count: every JSON session, nothing else');
	assert.equal(r.json.sessions.length, r.json.count, 'count equals the listed sessions');
	const byConv = new Map(r.json.sessions.map((s) => [s.conversationId, s]));
	assert.equal(byConv.size, r.json.count, 'each session once');
	for (const s of named) assert.deepEqual(byConv.get(s.conversationId), s, `session ${s.conversationId} verbatim`);
	for (let i = 0; i < BULK; i++) assert.ok(byConv.has(`conv_${1000 + i}`), `bulk session ${i}`);
	assert.ok(!byConv.has('conv_9') && !byConv.has('conv_8'), 'only the session: prefix');

	// How it asked Redis: SCAN, several rounds, never KEYS.
	const cmdsSeen = mon.commands();
	assert.ok(cmdsSeen.length > 0, 'MONITOR saw the request');
	assert.ok(!cmdsSeen.includes('KEYS'), `no KEYS: ${cmdsSeen.join(' ')}`);
	const scans = cmdsSeen.filter((c) => c === 'SCAN').length;
	assert.ok(scans >= 2, `several SCAN rounds for ${BULK + 10} keys (saw ${scans})`);

	// Expired/deleted keys drop out.
	await redis.call('DEL', 'session:conv_1');
	const r2 = await apiGet(d, '/sessions');
	assert.equal(r2.json.count, named.length + BULK - 1);
	assert.ok(!r2.json.sessions.some((s) => s.conversationId === 'conv_1'));
	assert.ok(d.alive());
});
