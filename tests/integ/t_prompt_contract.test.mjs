// t_prompt_contract: the prompt contract with the LLM service (DESIGN.md
// section 4, docs/protocols.md section 2.3), through real calls of both
// types.  The llm-server (the original's ConversationResolver) resolves a
// conversation from the system prompt ElevenLabs forwards to it with two
// regular expressions; both must find this call's person in the prompt
// naiberd sent, and lead (through rag:user / rag:phone) to this call's
// session.  The prompt begins with exactly "User ID: <id>" and
// "Phone: <phone>", nothing earlier says "phone", no "{{" is left, and the
// health check-in prompt carries the health section with the person's
// active conditions and medications and none of the inactive ones.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { itest, withTimeout, waitFor, REPO } from '../lib/harness.mjs';
import { startStack } from '../lib/stack.mjs';

// The llm-server's expressions, verbatim (ConversationResolver.ts).
const RX_USER_ID = /user\s*ID[:\s]+([a-f0-9\-]+)/i;
const RX_PHONE = /phone[:\s]+(\+?[\d\s\-()]+)/i;
const resolverUserId = (prompt) => prompt.match(RX_USER_ID)?.[1] ?? null;
const resolverPhone = (prompt) => prompt.match(RX_PHONE)?.[1].replace(/[\s\-()]/g, '') ?? null;

const PROMPTS = path.join(REPO, 'prompts');
const template = (name) => fs.readFileSync(path.join(PROMPTS, `${name}.txt`), 'utf8').replace(/[ \t\r\n]+$/, '');

function sectionsConf() {
	const out = {};
	for (const raw of fs.readFileSync(path.join(PROMPTS, 'sections.conf'), 'utf8').split('\n')) {
		const line = raw.replace(/#.*/, '').trim();
		const m = /^([a-z_]+):\s*(.*)$/.exec(line);
		if (m) out[m[1]] = m[2].split(/\s+/).filter(Boolean);
	}
	return out;
}

const reEsc = (s) => String(s).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function ptest(name, opts, fn) {
	return itest(name, opts, async (t) => {
		const ctx = { t, st: null };
		ctx.stack = async (o) => (ctx.st = await startStack(o));
		try {
			await fn(ctx);
		} catch (e) {
			if (ctx.st?.el) process.stderr.write(`\n===== fake ElevenLabs =====\n${ctx.st.el.trace()}\n` +
			    ctx.st.el.conversations.map((c) => `${c.id} ${c.state} ${c.initRaw?.slice(0, 300)} ` +
			    JSON.stringify(c.violations)).join('\n') + '\n');
			throw e;
		} finally {
			if (ctx.st) await withTimeout(ctx.st.stop(), 20000, 'stack stop').catch(() => {});
		}
	});
}

const PERSON = {
	id: randomUUID(),
	name: 'Dorothy Hughes', phone: '+447700900123', age: 86, gender: 'FEMALE',
	interests: ['crosswords', 'her cat Biscuit'], dislikes: ['shopping centres'],
	isFirstCall: false, lastCallAt: new Date(Date.now() - 86400000).toISOString(),
	summaries: ['Dorothy talked about her cat and a crossword clue she could not solve.'],
	conditions: [
		{ condition: 'type 2 diabetes', severity: 'mild', isActive: true },
		{ condition: 'osteoarthritis', severity: null, isActive: true },
		{ condition: 'INACTIVE-broken wrist', severity: 'healed', isActive: false },
	],
	medications: [
		{ name: 'metformin', dosage: '500 mg', frequency: 'twice a day', isActive: true },
		{ name: 'paracetamol', dosage: null, frequency: 'as needed', isActive: true },
		{ name: 'INACTIVE-amoxicillin', dosage: '250 mg', frequency: 'three times a day', isActive: false },
	],
};

/* No conditions or medications at all. */
const BARE = {
	id: randomUUID(), name: 'Walter Brown', phone: '+15550004002', age: 77, gender: 'MALE',
	interests: [], dislikes: [], isFirstCall: true, summaries: [], conditions: [], medications: [],
};

/* Place a call of type callType for p, get the init and wait for the session keys. */
async function callOf(st, p, callType) {
	const since = st.d.logMark();
	const call = await st.placeCall({ phone: p.phone, callType });
	assert.equal(call.callType, callType);
	const s = await st.openStream(call, { since });
	assert.deepEqual(s.elConv.violations, []);
	await waitFor(async () => (await st.redis.call('GET', `rag:user:${p.id}`)) === s.conversationId,
	    5000, `rag:user:${p.id} = ${s.conversationId}`);
	return { call, s, init: s.elConv.init, since };
}

async function hangUp(st, s) {
	await s.sendStop().catch(() => {});
	await st.d.waitLog(new RegExp(`worker \\d+ call ${reEsc(s.call.callSid)} done: reason=`), 10000);
}

/* The contract every system prompt must meet, for any call type. */
async function checkContract(st, p, r, callType) {
	const prompt = r.init.conversation_config_override.agent.prompt.prompt;
	const lines = prompt.split('\n');
	assert.equal(lines[0], `User ID: ${p.id}`, 'first line, exactly');
	assert.equal(lines[1], `Phone: ${p.phone}`, 'second line, exactly');
	assert.ok(prompt.startsWith(`User ID: ${p.id}\nPhone: ${p.phone}\n`));
	assert.equal(prompt.search(/phone/i), lines[0].length + 1, 'no text before the Phone line says "phone"');
	assert.equal(resolverUserId(prompt), p.id, `the llm-server's user-ID expression ${RX_USER_ID} finds the id`);
	assert.equal(resolverPhone(prompt), p.phone, `the llm-server's phone expression ${RX_PHONE} finds the phone`);
	assert.ok(!prompt.includes('{{') && !prompt.includes('}}'), 'no template variable left');
	assert.equal(r.init.user_id, p.id);
	assert.deepEqual(r.init.custom_llm_extra_body, { naiber_user_id: p.id, call_type: callType });
	// What the resolver does next, on the live Redis: id -> rag:user -> session, phone -> rag:phone -> session.
	const byUser = await st.redis.call('GET', `rag:user:${resolverUserId(prompt)}`);
	const byPhone = await st.redis.call('GET', `rag:phone:${resolverPhone(prompt)}`);
	assert.equal(byUser, r.s.conversationId);
	assert.equal(byPhone, r.s.conversationId);
	const session = JSON.parse(await st.redis.call('GET', `session:${byUser}`));
	assert.equal(session.userId, p.id);
	assert.equal(session.phone, p.phone);
	assert.equal(session.callSid, r.call.callSid);
	assert.equal(session.callType, callType);
	return prompt;
}

/* Every line of the template without a variable appears in the prompt, in order. */
function assertSectionPresent(prompt, name) {
	let at = 0;
	for (const line of template(name).split('\n')) {
		if (line.includes('{{') || line.trim() === '') continue;
		const i = prompt.indexOf(line, at);
		assert.ok(i >= 0, `section ${name}: line ${JSON.stringify(line)} present, in order`);
		at = i + line.length;
	}
}

const headingOf = (name) => template(name).split('\n')[0];

ptest('prompt contract for general and health_check calls', { timeout: 120000 }, async (ctx) => {
	const st = await ctx.stack({ workers: 2 });
	await st.addPerson(PERSON);
	await st.addPerson(BARE);
	const conf = sectionsConf();
	assert.ok(conf.general && conf.health_check, 'sections.conf has both call types');

	await ctx.t.test('general call', async () => {
		const r = await callOf(st, PERSON, 'general');
		const prompt = await checkContract(st, PERSON, r, 'general');
		for (const n of conf.general) assertSectionPresent(prompt, n);
		for (const n of conf.health_check.filter((x) => !conf.general.includes(x)))
			assert.ok(!prompt.includes(headingOf(n)), `the general prompt has no ${n} section`);
		await hangUp(st, r.s);
	});

	await ctx.t.test('health_check call', async () => {
		const r = await callOf(st, PERSON, 'health_check');
		const prompt = await checkContract(st, PERSON, r, 'health_check');
		for (const n of conf.health_check) assertSectionPresent(prompt, n);
		for (const n of conf.general.filter((x) => !conf.health_check.includes(x)))
			assert.ok(!prompt.includes(headingOf(n)), `the health prompt has no ${n} section`);
		assert.ok(conf.health_check.includes('health_checkin'), 'sections.conf: health_check has health_checkin');
		assert.ok(prompt.includes(`This call is a scheduled health check-in with ${PERSON.name}.`) ||
		    prompt.includes(PERSON.name), 'the health section names the person');
		const conds = /^- Health conditions: (.*)$/m.exec(prompt)?.[1];
		const meds = /^- Medications: (.*)$/m.exec(prompt)?.[1];
		assert.ok(conds, 'a "Health conditions" line');
		assert.ok(meds, 'a "Medications" line');
		for (const w of ['type 2 diabetes', 'mild', 'osteoarthritis'])
			assert.ok(conds.includes(w), `active condition text ${w} in: ${conds}`);
		for (const w of ['metformin', '500 mg', 'twice a day', 'paracetamol', 'as needed'])
			assert.ok(meds.includes(w), `active medication text ${w} in: ${meds}`);
		for (const w of ['INACTIVE', 'broken wrist', 'healed', 'amoxicillin', '250 mg', 'three times a day'])
			assert.ok(!prompt.includes(w), `nothing inactive in the prompt: ${w}`);
		assert.doesNotMatch(prompt, /\bnull\b|\bundefined\b/, 'a NULL severity or dosage is left out, not printed');
		const first = r.init.conversation_config_override.agent.first_message;
		assert.equal(first, template('first_health').replace(/\{\{[ \t]*name[ \t]*\}\}/g, PERSON.name),
		    'the fixed health first message');
		await hangUp(st, r.s);
	});

	await ctx.t.test('health_check call for a person with no conditions or medications', async () => {
		const r = await callOf(st, BARE, 'health_check');
		const prompt = await checkContract(st, BARE, r, 'health_check');
		assert.match(prompt, /^- Health conditions: none recorded$/m);
		assert.match(prompt, /^- Medications: none recorded$/m);
		await hangUp(st, r.s);
	});
});
