// t_pgbouncer: naiberd with DATABASE_URL pointing at a pgbouncer in
// transaction pooling mode (Debian 12's 1.18: no protocol-level prepared
// statements in that mode) in front of the harness PostgreSQL.  Each
// worker opens its warm connection through the pooler before it is idle
// and prepares the profile statement there; its call's load then runs on
// whichever backend pgbouncer picks, so it may meet SQLSTATE 26000 and
// must redo the load with the unnamed statement.  Calls one after the
// other (a new worker each) and at once must all reach ElevenLabs with
// the person's id, with no database error and no fallback to a fresh
// connection.  Skipped, saying why, without a pgbouncer binary (make deps
// installs it).  The unit test test_profile covers the 26000 and 42P05
// paths deterministically; this checks the wiring end to end.
import assert from 'node:assert/strict';
import { itest } from '../lib/harness.mjs';
import { startPostgres, startPgbouncer, pgbouncerMissing } from '../lib/pg.mjs';
import { startStack, DEFAULT_PERSON, reEsc } from '../lib/stack.mjs';

const missing = await pgbouncerMissing();

/* One call: placed, streamed, the init checked, hung up. */
async function oneCall(st) {
	const since = st.d.logMark();
	const call = await st.placeCall({ phone: DEFAULT_PERSON.phone });
	const s = await st.openStream(call, { since });
	assert.equal(s.elConv.init.user_id, DEFAULT_PERSON.id, 'the person came through pgbouncer');
	await st.d.waitLog(new RegExp(`callSid=${reEsc(call.callSid)} profile loaded: user ${reEsc(DEFAULT_PERSON.id)}`),
	    2000, since);
	await s.sendStop().catch(() => {});
	const m = await st.d.waitLog(new RegExp(`worker \\d+ call ${reEsc(call.callSid)} done: reason=(.+?) frames_in=`),
	    10000, since);
	assert.equal(m[1], 'stop');
}

itest('profiles load through pgbouncer in transaction mode, call after call and at once',
    { timeout: 120000, skip: missing ?? false }, async () => {
	const pg = await startPostgres();
	let pgb = null, st = null;
	try {
		pgb = await startPgbouncer(pg);
		st = await startStack({ workers: 3, maxCalls: 10, pg: { ...pg, url: pgb.url } });
		for (let i = 0; i < 4; i++)
			await oneCall(st);
		await Promise.all([oneCall(st), oneCall(st), oneCall(st)]);
		const log = st.d.log;
		assert.match(pgb.log(), /login attempt: db=postgres/, 'the workers went through pgbouncer');
		assert.doesNotMatch(log, /profile: (query|connect|prepare) failed/);
		assert.doesNotMatch(log, /warm connection (failed|is gone)|warm connection: /);
		assert.doesNotMatch(log, /unsupported startup parameter/);
		// Logged once per worker process at most.
		const pids = [...log.matchAll(/worker\[(\d+)\][^\n]*does not keep prepared statements/g)].map((x) => x[1]);
		assert.equal(new Set(pids).size, pids.length, `switched twice in one process: ${pids}`);
	} finally {
		if (st) await st.stop().catch(() => {});
		if (pgb) await pgb.stop();
		await pg.stop();
	}
});
