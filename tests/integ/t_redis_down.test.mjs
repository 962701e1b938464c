// t_redis_down: Redis goes away under a running supervisor.  POST /call
// answers 503 naming Redis (and no call is left ringing without its
// context), the supervisor keeps serving, and once redis-server is back
// on the same port /call works again within the reconnect back-off.
import assert from 'node:assert/strict';
import {
	itest, startCallStack, startRedis, apiPost, placeCall, callContext, http, sleep,
} from '../lib/harness.mjs';

itest('Redis down: /call 503 naming Redis, supervisor up; Redis back on the same port: /call works again', { timeout: 50000 }, async () => {
	const redis = await startRedis();
	const { d, tw } = await startCallStack({ workers: 1, redis });

	const sid0 = await placeCall(d);
	assert.ok(await callContext(redis, sid0), 'sanity: context stored while Redis is up');

	// Redis dies while Twilio is creating a call: the call cannot be
	// stored, so it is answered 503 and ended at Twilio, not left ringing
	// with no context.
	tw.delayNext(800);
	const n0 = tw.requests.length;
	const inflight = apiPost(d, '/call', undefined, { timeoutMs: 12000 });
	await tw.waitFor(() => tw.requests.length > n0, 5000, 'the create request at the fake');
	await redis.stop();
	assert.ok(redis.exitInfo, 'redis-server stopped');
	const ri = await inflight;
	const created = tw.requests[n0];
	assert.equal(created.answer?.status, 201, 'Twilio created that call');
	assert.equal(ri.status, 503, `call created while Redis died: ${ri.status} ${ri.body}`);
	assert.equal(ri.json?.success, false);
	assert.match(ri.json.error, /redis/i, ri.json.error);
	await tw.waitFor(() => tw.updates().some((u) => u.callSid === created.callSid &&
	    u.form.Status?.[0] === 'completed' && u.answer?.status === 200), 5000,
	    `call ${created.callSid} ended by REST (Status=completed)`);

	// Every /call while Redis is down (long enough for the reconnect
	// back-off to reach its cap): 503 with an error naming Redis.
	const creates0 = tw.creates().length;
	const downAt = Date.now();
	for (let i = 0; Date.now() - downAt < 7000; i++) {
		const r = await apiPost(d, '/call', undefined, { timeoutMs: 8000 });
		assert.equal(r.status, 503, `attempt ${i}: ${r.status} ${r.body}`);
		assert.equal(r.json?.success, false);
		assert.match(r.json.error, /redis/i, `the error names Redis: ${r.json.error}`);
		const h = await http(d.port, 'GET', '/health', { timeoutMs: 1000 });
		assert.equal(h.status, 200, '/health still answers');
		await sleep(300);
	}
	const hc = await apiPost(d, '/call/health-check', undefined, { timeoutMs: 8000 });
	assert.equal(hc.status, 503, hc.body);
	assert.match(hc.json.error, /redis/i);
	assert.ok(d.alive(), 'supervisor alive');
	assert.ok(d.children().length >= 1, 'workers still there');

	// A call that reached Twilio but could not be stored must not be left
	// ringing: every create Twilio answered during the outage is ended.
	const placedDuringOutage = tw.creates().slice(creates0).filter((c) => c.answer?.status === 201);
	for (const c of placedDuringOutage) {
		await tw.waitFor(() => tw.updates().some((u) => u.callSid === c.callSid && u.form.Status?.[0] === 'completed'),
		    5000, `call ${c.callSid} (created while Redis was down) ended by REST`);
	}

	// Redis returns on the same port (empty: it kept nothing).
	const redis2 = await startRedis({ port: redis.port });
	const t0 = Date.now();
	let last;
	for (;;) {
		last = await apiPost(d, '/call', undefined, { timeoutMs: 8000 });
		if (last.status === 200) break;
		assert.equal(last.status, 503, `while reconnecting: ${last.status} ${last.body}`);
		assert.ok(Date.now() - t0 < 10000, `/call still failing 10 s after Redis came back ` +
		    `(reconnect back-off is at most 5 s): ${last.body}`);
		await sleep(250);
	}
	const sid = last.json.callSid;
	assert.match(sid, /^CA[0-9a-f]{32}$/);
	const ctx = await callContext(redis2, sid);
	assert.ok(ctx, 'context stored in the restarted Redis');
	assert.equal(ctx.callType, 'general');
	assert.equal(await redis2.call('GET', `call_type:${sid}`), 'general');
	assert.equal((await http(d.port, 'GET', '/health')).status, 200);
	assert.ok(d.alive());
});
