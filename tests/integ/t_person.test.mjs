// t_person: the person a call is for, through a real call (POST /call ->
// PREPARE -> stream -> profile -> ElevenLabs init), against a real
// PostgreSQL and Redis, the fake ElevenLabs and the fake Twilio REST API
// (tests/lib/stack.mjs).  Profile variants are checked in the init message
// the fake ElevenLabs received: the system prompt must be exactly the
// templates of prompts/sections.conf rendered with the person's variables
// (as sections.conf documents them), and the first message exactly the
// first_new / first_returning template.  Then the refusals: a phone that
// is not E.164 (SQL-injection shaped) is a 400 and dials nobody; a valid
// but unknown phone and a stopped PostgreSQL both give the callee a short
// apology (REST redirect with <Say> + <Hangup/>) and end the call with the
// reason logged, never a hang.  DESIGN.md sections 3, 4, 5, 6.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { itest, apiPost, withTimeout, waitFor, REPO, parseXml } from '../lib/harness.mjs';
import { startStack, DEFAULT_PERSON, TEST_PHONE } from '../lib/stack.mjs';

// ------------------------------------------------------------ prompt model
// An independent rendering of prompts/ as prompts/sections.conf documents it.

const PROMPTS = path.join(REPO, 'prompts');

function template(name) {
	return fs.readFileSync(path.join(PROMPTS, `${name}.txt`), 'utf8').replace(/[ \t\r\n]+$/, '');
}

function sectionsConf() {
	const out = {};
	for (const raw of fs.readFileSync(path.join(PROMPTS, 'sections.conf'), 'utf8').split('\n')) {
		const line = raw.replace(/#.*/, '').trim();
		if (!line) continue;
		const m = /^([a-z_]+):\s*(.*)$/.exec(line);
		if (m) out[m[1]] = m[2].split(/\s+/).filter(Boolean);
	}
	return out;
}

/* {{name}} -> value, once, never expanded again; unknown names throw. */
function render(text, vars) {
	return text.replace(/\{\{[ \t]*([a-z_]+)[ \t]*\}\}/g, (all, n) => {
		if (!Object.hasOwn(vars, n)) throw new Error(`test renderer: no variable ${n}`);
		return vars[n];
	});
}

function systemPrompt(callType, vars) {
	return sectionsConf()[callType].map((n) => render(template(n), vars)).join('\n\n');
}

/* "a", "a and b", "a, b and c" */
function phrase(list) {
	if (list.length <= 1) return list.join('');
	return `${list.slice(0, -1).join(', ')} and ${list[list.length - 1]}`;
}

/* The general-call variables of sections.conf for person p (health ones unused there). */
function personVars(p, callType, partOfDay) {
	const list = (a) => (a ?? []).filter((x) => x !== null && x !== undefined);
	const interests = list(p.interests), dislikes = list(p.dislikes), sums = list(p.summaries).slice(0, 5);
	return {
		user_id: p.id, phone: p.phone, name: p.name,
		age: p.age === null || p.age === undefined ? 'not known' : String(p.age),
		gender: p.gender ?? 'not known',
		interests: interests.length ? phrase(interests) : 'the things you enjoy',
		dislikes: dislikes.length ? phrase(dislikes) : 'none known',
		last_summary: sums.length ? sums[0] : 'none yet',
		recent_summaries: sums.length ? sums.map((s) => `- ${s}`).join('\n') : 'none yet',
		part_of_day: partOfDay,
		is_first_call: p.isFirstCall ? 'yes' : 'no',
		call_type: callType,
	};
}

const PARTS_OF_DAY = ['morning', 'afternoon', 'evening'];

/* The part of day the worker used, read from the prompt's own line (checked against the clock). */
function partOfDayIn(prompt, t0, t1) {
	const m = /^Part of the day where they are: (\S+)$/m.exec(prompt);
	assert.ok(m, 'the prompt has its "Part of the day" line');
	const pod = (t) => { const h = new Date(t).getHours(); return h < 12 ? 'morning' : h < 18 ? 'afternoon' : 'evening'; };
	assert.ok(PARTS_OF_DAY.includes(m[1]), `part of day "${m[1]}"`);
	// naiberd gets no TZ from the harness: compare with the clock only when this process has none either.
	if (process.env.TZ === undefined)
		assert.ok([pod(t0), pod(t1)].includes(m[1]),
		    `part of day "${m[1]}" matches the local clock (${pod(t0)}..${pod(t1)})`);
	return m[1];
}

// ------------------------------------------------------------------ glue

const reEsc = (s) => String(s).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function dumpStack(st) {
	if (!st?.el) return '';
	const convs = st.el.conversations.map((c) => `conversation ${c.n} id=${c.id} state=${c.state} ` +
	    `init=${c.initRaw?.slice(0, 400)} violations=${JSON.stringify(c.violations)} close=${JSON.stringify(c.closeInfo)}`);
	const tw = st.tw.requests.map((r) => `${r.method} ${r.path} ${r.body} -> ${JSON.stringify(r.answer?.status)}`);
	return `\n===== fake ElevenLabs =====\n${st.el.trace()}\n${convs.join('\n')}\n` +
	    `===== fake Twilio =====\n${tw.join('\n')}\n===== end =====\n`;
}

/* itest() with the stack stopped at the end (failed or not) and the fakes dumped on failure. */
function ptest(name, opts, fn) {
	return itest(name, opts, async (t) => {
		const ctx = { t, st: null };
		ctx.stack = async (o) => (ctx.st = await startStack(o));
		try {
			await fn(ctx);
		} catch (e) {
			process.stderr.write(dumpStack(ctx.st));
			throw e;
		} finally {
			if (ctx.st) await withTimeout(ctx.st.stop(), 20000, 'stack stop').catch(() => {});
		}
	});
}

/* POST /call for p, wait for PREPARE to store the first message, open the stream, get the init. */
async function callInit(st, p, { callType = 'general' } = {}) {
	const since = st.d.logMark();
	const t0 = Date.now();
	const call = await st.placeCall({ phone: p.phone, callType });
	await st.d.waitLog(`prepare ${call.callSid}: first message stored`, 10000, since);
	const ctx = JSON.parse(await st.redis.call('GET', `call:${call.callSid}`));
	const s = await st.openStream(call, { since });
	const t1 = Date.now();
	const init = s.elConv.init;
	assert.deepEqual(s.elConv.violations, [], 'the init follows docs/protocols.md section 2.3');
	return { call, s, ctx, init, since, t0, t1 };
}

async function hangUp(st, s) {
	await s.sendStop().catch(() => {});
	const m = await st.d.waitLog(new RegExp(`worker \\d+ call ${reEsc(s.call.callSid)} done: reason=(.+?) frames_in=`),
	    10000);
	return m[1];
}

/* Everything a profile variant must satisfy; returns the prompt and first message. */
function checkInit(r, p, callType = 'general') {
	const { init } = r;
	assert.equal(init.type, 'conversation_initiation_client_data');
	assert.equal(init.user_id, p.id, 'user_id is the person id');
	assert.deepEqual(init.custom_llm_extra_body, { naiber_user_id: p.id, call_type: callType });
	const prompt = init.conversation_config_override?.agent?.prompt?.prompt;
	const first = init.conversation_config_override?.agent?.first_message;
	assert.equal(typeof prompt, 'string');
	assert.equal(typeof first, 'string');
	assert.deepEqual(prompt.split('\n').slice(0, 2), [`User ID: ${p.id}`, `Phone: ${p.phone}`],
	    'the system prompt begins with the User ID and Phone lines');
	for (const [what, text] of [['system prompt', prompt], ['first message', first]])
		assert.doesNotMatch(text, /\bnull\b|\bundefined\b|\bNaN\b|\[object /, `no null/undefined in the ${what}`);
	const pod = partOfDayIn(prompt, r.t0, r.t1);
	const vars = personVars(p, callType, pod);
	assert.equal(prompt, systemPrompt(callType, vars), 'the system prompt is the rendered sections of sections.conf');
	assert.equal(first, r.ctx.firstMessage, 'the init carries the first message PREPARE stored');
	return { prompt, first, vars };
}

// ------------------------------------------------------------------ people

const person = (over) => ({
	id: randomUUID(), age: null, gender: null, interests: [], dislikes: [], isFirstCall: true,
	lastCallAt: null, summaries: [], conditions: [], medications: [], ...over,
});

const FIRST_TIMER = person({
	name: 'Edith Clarke', phone: '+15550003001', age: 79, gender: 'FEMALE',
	interests: ['knitting', 'birdwatching'], dislikes: ['loud music'], isFirstCall: true,
});

const RETURNING = person({
	name: 'Arthur Pennington', phone: '+15550003002', age: 88, gender: 'MALE',
	interests: ['chess', 'brass bands', 'his allotment'], dislikes: ['football', 'the news'],
	isFirstCall: false, lastCallAt: new Date(Date.now() - 2 * 86400000).toISOString(),
	// newest first; six, so the oldest must be left out (five newest)
	summaries: [
		'Arthur said his leeks won a prize at the village show.',
		'He talked about the brass band concert on Sunday.',
		'He mentioned his knee was a little stiff in the cold.',
		'He described teaching his grandson to play chess.',
		'He remembered working at the colliery as a young man.',
		'OLDEST-SUMMARY-NOT-SENT: the first ever call.',
	],
});

const NULLS = person({
	name: 'Nobody Known', phone: '+15550003003', age: null, gender: null, interests: null,
	dislikes: null, isFirstCall: false, lastCallAt: null, summaries: [],
});

const ARRAYS = person({
	name: 'Zoë Ångström-Łukasiewicz', phone: '+15550003004', age: 91, gender: 'NON_BINARY',
	interests: ['knitting, crochet and quilting', 'the "Archers" on the radio', "Bach's cello suites",
	    null, 'café visits ☕', '日本の庭園', 'back\\slash & <tags>', '{{name}} games', 'a {single} brace'],
	dislikes: ['politics; "debates"', null, 'émigré gossip'],
	isFirstCall: false,
	summaries: ['She said "hello" to the neighbours, then: café; \\n tea\nand a second line.'],
});

const OBRIEN = person({
	name: "Siobhán O'Brien", phone: '+15550003005', age: 84, gender: 'PREFER_NOT_TO_SAY',
	interests: [], dislikes: [], isFirstCall: false,
	summaries: ["Siobhán talked about her late husband's fiddle."],
});

// ------------------------------------------------------------------- tests

ptest('profile variants reach ElevenLabs exactly: first-time, returning, NULLs, odd arrays, O\'Brien',
    { timeout: 120000 }, async (ctx) => {
	const st = await ctx.stack({ workers: 2 });
	for (const p of [FIRST_TIMER, RETURNING, NULLS, ARRAYS, OBRIEN]) await st.addPerson(p);

	await ctx.t.test('first-time person: the first_new template', async () => {
		const r = await callInit(st, FIRST_TIMER);
		const { prompt, first, vars } = checkInit(r, FIRST_TIMER);
		assert.equal(first, render(template('first_new'), vars));
		assert.notEqual(first, render(template('first_returning'), vars));
		assert.match(prompt, /^First call with them: yes$/m);
		assert.match(prompt, /^Age: 79$/m);
		assert.match(prompt, /^Gender: FEMALE$/m);
		assert.match(prompt, /^Summary of your last conversation: none yet$/m);
		await st.d.waitLog(new RegExp(`callSid=${r.call.callSid} profile loaded: user ${FIRST_TIMER.id} \\(first call\\)`),
		    1000, r.since);
		assert.equal(await hangUp(st, r.s), 'stop');
	});

	await ctx.t.test('returning person with summaries: first_returning names an interest', async () => {
		const r = await callInit(st, RETURNING);
		const { prompt, first, vars } = checkInit(r, RETURNING);
		assert.equal(first, render(template('first_returning'), vars));
		assert.ok(first.includes('chess, brass bands and his allotment'),
		    `the first message mentions the interests: ${first}`);
		assert.match(prompt, /^First call with them: no$/m);
		assert.ok(prompt.includes(`Summary of your last conversation: ${RETURNING.summaries[0]}`),
		    'the last summary is the newest');
		assert.ok(prompt.includes(RETURNING.summaries.slice(0, 5).map((s) => `- ${s}`).join('\n')),
		    'the five newest summaries, newest first, one per line');
		assert.ok(!prompt.includes('OLDEST-SUMMARY-NOT-SENT'), 'the sixth summary is left out');
		assert.equal(await hangUp(st, r.s), 'stop');
	});

	await ctx.t.test('NULL age, gender, lastCallAt, interests, dislikes: readable words, no "null"', async () => {
		const r = await callInit(st, NULLS);
		const { prompt, first, vars } = checkInit(r, NULLS);
		assert.match(prompt, /^Age: not known$/m);
		assert.match(prompt, /^Gender: not known$/m);
		assert.match(prompt, /^Interests: the things you enjoy$/m);
		assert.match(prompt, /^Topics they dislike: none known$/m);
		assert.match(prompt, /^Summary of your last conversation: none yet$/m);
		assert.equal(first, render(template('first_returning'), vars));
		assert.ok(first.includes('the things you enjoy'), first);
		assert.equal(await hangUp(st, r.s), 'stop');
	});

	await ctx.t.test('arrays with commas, quotes, backslashes, braces, unicode and NULL elements', async () => {
		const r = await callInit(st, ARRAYS);
		const { prompt, first, vars } = checkInit(r, ARRAYS);
		const interests = 'knitting, crochet and quilting, the "Archers" on the radio, Bach\'s cello suites, ' +
		    'café visits ☕, 日本の庭園, back\\slash & <tags>, {{name}} games and a {single} brace';
		assert.equal(vars.interests, interests, 'test model');
		assert.ok(prompt.includes(`\nInterests: ${interests}\n`), 'interests verbatim, in order, NULL elements skipped');
		assert.ok(prompt.includes('\nTopics they dislike: politics; "debates" and émigré gossip\n'));
		assert.ok(prompt.includes('{{name}} games'), 'a value is never expanded again');
		assert.ok(prompt.includes(`\nName: ${ARRAYS.name}\n`));
		assert.equal(first, render(template('first_returning'), vars));
		assert.ok(first.includes(interests), 'the first message carries the same phrase');
		assert.ok(prompt.includes(ARRAYS.summaries[0]), 'a summary with quotes, backslash and newline verbatim');
		assert.equal(await hangUp(st, r.s), 'stop');
	});

	await ctx.t.test("a name with an apostrophe (O'Brien)", async () => {
		const r = await callInit(st, OBRIEN);
		const { prompt, first, vars } = checkInit(r, OBRIEN);
		assert.ok(prompt.includes("\nName: Siobhán O'Brien\n"));
		assert.equal(first, render(template('first_returning'), vars));
		assert.ok(first.includes("Siobhán O'Brien"), first);
		assert.match(prompt, /^Gender: PREFER_NOT_TO_SAY$/m);
		assert.match(prompt, /^Interests: the things you enjoy$/m, 'an empty array reads like a NULL one');
		assert.equal(await hangUp(st, r.s), 'stop');
	});
});

ptest('a phone that is not E.164 (SQL-injection shaped) is refused with 400 and dials nobody',
    { timeout: 90000 }, async (ctx) => {
	const st = await ctx.stack({ workers: 1 });
	const before = (await st.pg.psql('SELECT count(*) FROM "users"')).trim();
	const shapes = [
		`${TEST_PHONE}'; DROP TABLE "users"; --`,
		"' OR '1'='1",
		`${TEST_PHONE}' OR '1'='1`,
		'+1555000222 OR 1=1',
		`+15550002222); DELETE FROM "users" WHERE (1=1`,
		'+1555\u00000002222',
		'+1 (555) 000-2222',
		'15550002222',
	];
	for (const [route, phone] of [...shapes.map((p) => ['/call', p]), ['/call/health-check', shapes[0]]]) {
		const r = await apiPost(st.d, route, { phone });
		assert.equal(r.status, 400, `${route} ${JSON.stringify(phone)}: ${r.status} ${r.body}`);
		assert.equal(r.json?.success, false, r.body);
		assert.equal(typeof r.json?.error, 'string', r.body);
		assert.ok(!r.body.includes('DROP') && !r.body.includes('DELETE'), 'the error does not echo the input');
	}
	assert.equal(st.tw.creates().length, 0, 'no call was created at Twilio');
	const keys = await st.redis.call('SCAN', '0', 'MATCH', 'call:*', 'COUNT', '1000');
	assert.deepEqual(keys[1], [], 'no call context stored');
	assert.equal((await st.pg.psql('SELECT count(*) FROM "users"')).trim(), before, 'the users table is intact');
	// And the valid number still works afterwards.
	const ok = await st.placeCall();
	assert.match(ok.callSid, /^CA[0-9a-f]{32}$/);
});

/* Wait for the apology redirect of callSid at the fake Twilio; check its TwiML. */
async function apologyRedirect(st, callSid, ms) {
	const rec = await st.tw.waitFor((tw) => tw.updates().find((u) => u.callSid === callSid && u.form.Twiml),
	    ms, `a REST redirect (Twiml=) for ${callSid}`);
	assert.equal(rec.answer?.status, 200, `the fake Twilio accepted it: ${JSON.stringify(rec.answer)}`);
	assert.equal(rec.form.Twiml.length, 1);
	assert.equal(rec.form.Status, undefined, 'a redirect, not a hang-up');
	const doc = parseXml(rec.form.Twiml[0]);
	assert.equal(doc.name, 'Response');
	assert.deepEqual(doc.children.map((c) => c.name), ['Say', 'Hangup'], rec.form.Twiml[0]);
	assert.ok(doc.children[0].text.trim().length > 10, 'a sentence to say');
	assert.doesNotMatch(doc.children[0].text, /error|exception|postgres|database|null/i,
	    'the apology leaks no details');
	return rec;
}

ptest('a valid phone nobody has: apology redirect and reason=unknown person, no prompt sent',
    { timeout: 60000 }, async (ctx) => {
	const st = await ctx.stack({ workers: 2 });
	const phone = '+15550003999';
	const since = st.d.logMark();
	const call = await st.placeCall({ phone });
	await st.d.waitLog(`prepare ${call.callSid}: unknown person`, 10000, since);
	const ctxAfter = JSON.parse(await st.redis.call('GET', `call:${call.callSid}`));
	assert.equal(ctxAfter.firstMessage, undefined, 'nothing prepared for an unknown person');
	const t0 = Date.now();
	const s = await st.openStream(call, { since, waitConversation: false });
	await apologyRedirect(st, call.callSid, 8000);
	const done = await st.d.waitLog(new RegExp(`worker \\d+ call ${call.callSid} done: reason=(.+?) frames_in=`),
	    8000, since);
	assert.equal(done[1], 'unknown person');
	await st.d.waitLog(new RegExp(`callSid=${call.callSid} no profile for ${reEsc(phone)}: unknown person`), 1000, since);
	const closed = await withTimeout(s.closed, 5000, 'naiberd closing the Twilio stream');
	assert.ok(closed.code >= 1000, JSON.stringify(closed));
	ctx.t.diagnostic(`unknown person: start -> done line ${Date.now() - t0} ms`);
	assert.equal(st.el.conversations.filter((c) => c.init).length, 0,
	    'no system prompt (a real person\'s or anyone\'s) went to ElevenLabs');
	const left = await st.redis.call('SCAN', '0', 'MATCH', 'session:*', 'COUNT', '1000');
	assert.deepEqual(left[1], [], 'no session keys');
});

ptest('PostgreSQL stopped after startup: apology redirect and reason=database unavailable within seconds',
    { timeout: 60000 }, async (ctx) => {
	const st = await ctx.stack({ workers: 2 });
	await st.pg.stop();
	const since = st.d.logMark();
	const call = await st.placeCall();
	// PREPARE fails too (its own line); the answering worker does not wait for it.
	await st.d.waitLog(new RegExp(`prepare ${call.callSid}: `), 8000, since);
	assert.doesNotMatch(st.d.log.slice(since), new RegExp(`prepare ${call.callSid}: first message stored`));
	const t0 = Date.now();
	const s = await st.openStream(call, { since, waitConversation: false });
	await apologyRedirect(st, call.callSid, 8000);
	const done = await st.d.waitLog(new RegExp(`worker \\d+ call ${call.callSid} done: reason=(.+?) frames_in=`),
	    8000, since);
	const ms = Date.now() - t0;
	assert.equal(done[1], 'database unavailable');
	assert.ok(ms < 5000, `ended ${ms} ms after the start event (bounded by the profile timeout)`);
	await withTimeout(s.closed, 5000, 'naiberd closing the Twilio stream');
	ctx.t.diagnostic(`database down: start -> done line ${ms} ms`);
	assert.equal(st.el.conversations.filter((c) => c.init).length, 0, 'no init sent to ElevenLabs');
	assert.ok(st.d.alive(), 'the supervisor is still up');
});

ptest('PostgreSQL that accepts but never answers: apology within the profile timeout, never a hang',
    { timeout: 60000 }, async (ctx) => {
	const net = await import('node:net');
	const held = new Set();
	const sink = net.createServer((c) => { held.add(c); c.on('error', () => {}); c.on('close', () => held.delete(c)); });
	await new Promise((r) => sink.listen(0, '127.0.0.1', r));
	try {
		const st = await ctx.stack({ workers: 2, waitReady: false,
		    env: { DATABASE_URL: `postgres://postgres@127.0.0.1:${sink.address().port}/postgres` } });
		await waitFor(async () => (await st.redis.call('PING')) === 'PONG' &&
		    st.d.log.includes('redis: connected'), 10000, 'naiberd connected to Redis');
		const since = st.d.logMark();
		const call = await st.placeCall();
		const t0 = Date.now();
		const s = await st.openStream(call, { since, waitConversation: false });
		await apologyRedirect(st, call.callSid, 10000);
		const done = await st.d.waitLog(new RegExp(`worker \\d+ call ${call.callSid} done: reason=(.+?) frames_in=`),
		    10000, since);
		const ms = Date.now() - t0;
		assert.equal(done[1], 'database unavailable');
		assert.ok(ms < 6000, `ended ${ms} ms after the start event (profile timeout 3 s + slack)`);
		await withTimeout(s.closed, 5000, 'naiberd closing the Twilio stream');
		ctx.t.diagnostic(`database silent: start -> done line ${ms} ms`);
		await st.d.waitLog(new RegExp(`prepare ${call.callSid}: `), 8000, since);
	} finally {
		for (const c of held) c.destroy();
		await new Promise((r) => sink.close(r));
	}
});
