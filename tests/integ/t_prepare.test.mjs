// t_prepare: the first message prepared while the phone rings (DESIGN.md
// section 3.1).  After POST /call the supervisor sends PREPARE to an idle
// worker, which loads the person, renders the first message (here with a
// fake OpenAI that takes 1 s), merges it into call:{sid} as firstMessage
// (TTL kept) and exits.  The answering worker then uses it at once; if it
// is not there yet it polls call:{sid} for up to --first-message-wait ms,
// then falls back to the template.  Setup time (Twilio start -> init sent)
// is taken from the worker's "init sent (N bytes, M ms after start)" line
// and reported; only the path taken is asserted, not the speed.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { itest, withTimeout, sleep, newCallSid, REPO } from '../lib/harness.mjs';
import { putCallContext } from '../lib/bind.mjs';
import { startStack, DEFAULT_PERSON } from '../lib/stack.mjs';
import { startFakeOpenAI } from '../peers/fake-openai.mjs';

const OPENAI_DELAY_MS = 1000;

const PROMPTS = path.join(REPO, 'prompts');
const template = (name) => fs.readFileSync(path.join(PROMPTS, `${name}.txt`), 'utf8').replace(/[ \t\r\n]+$/, '');
const render = (text, vars) => text.replace(/\{\{[ \t]*([a-z_]+)[ \t]*\}\}/g, (a, n) => {
	if (!Object.hasOwn(vars, n)) throw new Error(`test renderer: no variable ${n}`);
	return vars[n];
});
const phrase = (l) => l.length <= 1 ? l.join('') : `${l.slice(0, -1).join(', ')} and ${l[l.length - 1]}`;

/* The default person's template first message, with the part of day the prompt says. */
function templateFirst(init) {
	const prompt = init.conversation_config_override.agent.prompt.prompt;
	const pod = /^Part of the day where they are: (\S+)$/m.exec(prompt)?.[1];
	assert.ok(pod);
	return render(template('first_returning'), { name: DEFAULT_PERSON.name, part_of_day: pod,
	    interests: phrase(DEFAULT_PERSON.interests) });
}

const initSentRx = (sid) => new RegExp(`callSid=${sid} elevenlabs: init sent \\((\\d+) bytes, (\\d+) ms after start\\)`);
const callLines = (st, sid, since) => st.d.log.slice(since).split('\n').filter((l) => l.includes(sid)).join('\n');

function otest(name, opts, fn) {
	return itest(name, opts, async (t) => {
		const ctx = { t, st: null, oa: null };
		try {
			await fn(ctx);
		} catch (e) {
			if (ctx.oa) process.stderr.write('\n===== fake OpenAI requests =====\n' + ctx.oa.requests.map((r) =>
			    `${new Date(r.t).toISOString()} ${r.path} mode=${r.mode} status=${r.status} aborted=${r.aborted}`)
			    .join('\n') + '\n');
			throw e;
		} finally {
			if (ctx.st) await withTimeout(ctx.st.stop(), 20000, 'stack stop').catch(() => {});
			if (ctx.oa) await ctx.oa.close();
		}
	});
}

async function hangUp(st, s, since) {
	await s.sendStop().catch(() => {});
	await st.d.waitLog(new RegExp(`worker \\d+ call ${s.call.callSid} done: reason=`), 10000, since);
}

otest('PREPARE while ringing: the answering worker uses the stored OpenAI message at once',
    { timeout: 90000 }, async (ctx) => {
	ctx.oa = await startFakeOpenAI({ mode: 'slow', delayMs: OPENAI_DELAY_MS });
	const st = ctx.st = await startStack({ workers: 2, openaiUrl: ctx.oa.baseUrl });

	await ctx.t.test('stream opened 1.5 s after POST /call: prepared path, OpenAI text', async () => {
		const since = st.d.logMark();
		const t0 = Date.now();
		const call = await st.placeCall();
		await st.d.waitLog(`prepare ${call.callSid}: first message stored`, 8000, since);
		const preparedAfter = Date.now() - t0;
		await sleep(Math.max(0, 1500 - (Date.now() - t0)));
		assert.ok(Date.now() - t0 >= 1500);
		const raw = await st.redis.call('GET', `call:${call.callSid}`);
		const stored = JSON.parse(raw);
		assert.equal(stored.firstMessage, ctx.oa.content, 'PREPARE stored the OpenAI text');
		const { firstMessage: _a, ...rest } = stored;
		const { firstMessage: _b, ...placed } = call.ctx;
		assert.deepEqual(rest, placed, 'the rest of the context is unchanged');
		const ttl = await st.redis.call('TTL', `call:${call.callSid}`);
		assert.ok(ttl > 0 && ttl <= 300, `the context keeps its TTL (TTL ${ttl})`);
		assert.ok(ttl >= 290, `TTL ${ttl}: the original 300 s, not reset or lost`);

		const s = await st.openStream(call, { since });
		const lines = callLines(st, call.callSid, since);
		assert.match(lines, /stream bound: type=general \(first message prepared while ringing\)/);
		assert.doesNotMatch(lines, /no prepared first message/);
		const sent = await st.d.waitLog(initSentRx(call.callSid), 1000, since);
		assert.equal(s.elConv.init.conversation_config_override.agent.first_message, ctx.oa.content,
		    'the init carries the OpenAI text');
		assert.equal(ctx.oa.completions().length, 1, 'OpenAI asked once, by PREPARE');
		ctx.t.diagnostic(`with PREPARE: prepared ${preparedAfter} ms after POST /call; ` +
		    `init sent ${sent[2]} ms after start (${sent[1]} bytes)`);
		await hangUp(st, s, since);
	});

	await ctx.t.test('stream opened at once, PREPARE still waiting on OpenAI: the message arrives by polling', async () => {
		const since = st.d.logMark();
		const n0 = ctx.oa.completions().length;
		const call = await st.placeCall();
		const s = await st.openStream(call, { since });
		const sent = await st.d.waitLog(initSentRx(call.callSid), 1000, since);
		const lines = callLines(st, call.callSid, since);
		ctx.t.diagnostic(`PREPARE racing the answer: init sent ${sent[2]} ms after start`);
		assert.equal(ctx.oa.completions().length, n0 + 1, 'PREPARE asked OpenAI');
		assert.match(lines, /prepare \S+: first message stored/, 'PREPARE stored it within first-message-wait');
		assert.match(lines, /prepared first message arrived/, 'the answering worker picked it up while polling');
		assert.doesNotMatch(lines, /no prepared first message within/);
		assert.equal(s.elConv.init.conversation_config_override.agent.first_message, ctx.oa.content,
		    'the init carries the OpenAI text, not the template');
		await hangUp(st, s, since);
	});
});

otest('no PREPARE data: the template after --first-message-wait (300 ms)', { timeout: 60000 }, async (ctx) => {
	const st = ctx.st = await startStack({ workers: 2, args: ['--first-message-wait', '300'] });
	const since = st.d.logMark();
	// As if POST /call had stored the context on another instance, and no PREPARE ran.
	const callSid = newCallSid();
	const nonce = await putCallContext(st.redis, callSid, { callType: 'general', phone: DEFAULT_PERSON.phone });
	const s = await st.openStream({ callSid, nonce, callType: 'general' }, { since });
	const lines = callLines(st, callSid, since);
	assert.match(lines, /stream bound: type=general$/m, 'bound without a prepared message');
	assert.doesNotMatch(lines, /first message prepared while ringing/);
	assert.match(lines, /no prepared first message within 300 ms: template/);
	const sent = await st.d.waitLog(initSentRx(callSid), 1000, since);
	const ms = Number(sent[2]);
	assert.ok(ms >= 300, `waited first-message-wait before the template (${ms} ms)`);
	assert.equal(s.elConv.init.conversation_config_override.agent.first_message, templateFirst(s.elConv.init));
	ctx.t.diagnostic(`without PREPARE (--first-message-wait 300): init sent ${ms} ms after start`);
	await hangUp(st, s, since);
});
