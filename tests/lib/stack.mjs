// stack.mjs - the whole call stack for integration tests: naiberd wired to
// a real redis-server, a throw-away PostgreSQL (schema.sql, one person),
// the fake ElevenLabs (TLS, certificates from a test CA naiberd trusts via
// TLS_CA_FILE) and the fake Twilio REST API.  With it a test places a call
// through POST /call and opens the stream Twilio would open; the worker
// binds it (nonce), loads the person, talks to ElevenLabs, and caller media
// counts (frames_in) once the conversation is up.
//
//   import { itest } from '../lib/harness.mjs';
//   import { startStack } from '../lib/stack.mjs';
//   itest('x', async () => {
//       const st = await startStack({ workers: 2 });
//       const call = await st.placeCall();           // POST /call
//       const s = await st.openStream(call);         // bound, conversation up
//       await s.sendMedia(10);                       // counted as frames_in
//       await s.elConv.waitAudioBytes(1600);         // reached ElevenLabs
//       await s.sendStop();
//   });
//
// startStack(opts): workers (2), maxCalls (10), env ({}: over the stack's
// environment; null deletes), args ([]: extra flags), eleven ({}: options
// of startFakeEleven, e.g. formats, metadata, pingIntervalMs), openaiUrl
// (null; else OPENAI_API_KEY=test and OPENAI_BASE_URL=openaiUrl), person
// (true: insert DEFAULT_PERSON; an object: DEFAULT_PERSON with those fields;
// false: nobody), waitReady (true: naiberd answers from Redis, and /ready
// is 200 where it exists), twilio ({}: extra startFakeTwilio options, e.g.
// expect), pg (null: a fresh PostgreSQL; else an existing startPostgres()
// instance, e.g. one per test file, that the stack uses but never stops;
// person is then inserted into it as usual, so pass false after the
// first stack), ca (null: a fresh test CA; else an existing makeTestCA()
// result, not removed by the stack).  Any other option goes to
// startNaiberd (port, drainTimeout, confText, ...).
//
// Returns st = {d, redis, pg, el, tw, ca, env, addPerson, placeCall,
// openStream, startInstance, restart, stop}:
//   addPerson(p)     INSERT the person and their summaries (newest first),
//                    conditions and medications; resolves to the full record.
//   placeCall({phone, callType, health, body, d})
//                    POST /call (or /call/health-check when health or
//                    callType === 'health_check') to instance d (st.d);
//                    the stored call:{sid} context is read back:
//                    {callSid, nonce, ctx, phone, callType}.
//   openStream(call, {waitConversation, since, timeoutMs, nonce, callType,
//       customParameters, afterStart, echoMarks, d, ...options of d.stream()})
//                    the Twilio stream for `call` on instance d (st.d),
//                    signed, `connected` +
//                    `start` sent with the call's nonce (then
//                    `await afterStart(s)` if given; echoMarks: every mark
//                    naiberd sends is echoed at once, as Twilio does when
//                    nothing is left to play, see echoMarks below);
//                    resolves once the
//                    worker logged "elevenlabs: conversation <id>" for the
//                    callSid (or, waitConversation false, once bound).
//                    Adds s.call, s.nonce, s.workerPid, s.boundType, and with
//                    the conversation s.conversationId, s.formats {in, out},
//                    s.elConv (the fake's conversation record).  A refused
//                    stream or a call that ends before its conversation is
//                    up rejects with the reason.  Where the fake
//                    ElevenLabs reuses a conversation id, s.elConv is the
//                    newest conversation with it that is still open.
//   startInstance(opts)
//                    a second naiberd on the stack's environment (the same
//                    Redis, PostgreSQL, fakes and credentials) with its own
//                    port, temp dir and spool directory; opts are those of
//                    startNaiberd (workers and maxCalls: the stack's).
//                    Resolves once it is ready (as waitReady); stopped at
//                    the end of the test.
//   restart(opts)    stop naiberd (SIGTERM, bounded) and start it again on
//                    the same port with the same environment (opts.env over
//                    it); st.d is the new instance.
//   postCallJobs()   the post-call BullMQ job hashes in Redis, parsed.
//   stop()           stop everything now (idempotent).
//
// Also exported: echoMarks(s) (answer every mark on a stream at once, as
// Twilio does with nothing left to play: names in s.marksEchoed, {name, t}
// in s.marks, t taken before the echo is sent), scanKeys(redis, pattern)
// (SCAN, never KEYS), postCallJobs(redis), personSql(p), sqlLit(v), reEsc(s).
//
// Everything is also stopped at the end of the test, failed or not, by the
// harness's per-test cleanup (see deferToScope below); PostgreSQL by
// pg.stop(), whose reaper also stops it if this process dies.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
	startNaiberd, startRedis, startFakeTwilio, apiGet, apiPost, http, waitFor, withTimeout,
	hex, TEST_PHONE,
} from './harness.mjs';
import { waitBound } from './bind.mjs';
import { startPostgres } from './pg.mjs';
import { startFakeEleven, makeTestCA } from '../peers/fake-eleven.mjs';

export { TEST_PHONE };

export const AGENT_ID = 'agent_test';

/* The person every stack knows unless told otherwise (phone = PHONE_NUMBER). */
export const DEFAULT_PERSON = Object.freeze({
	id: 'u-0000test',
	name: 'Margaret',
	phone: TEST_PHONE,
	age: 82,
	gender: 'FEMALE',
	interests: ['gardening', 'the radio'],
	dislikes: ['politics'],
	isFirstCall: false,
	lastCallAt: null,
	summaries: ['Margaret talked about her tomatoes and a visit from her granddaughter.'],
	conditions: [{ condition: 'arthritis', severity: 'mild', isActive: true }],
	medications: [{ name: 'ibuprofen', dosage: '200 mg', frequency: 'as needed', isActive: true }],
});

export const reEsc = (s) => String(s).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// ------------------------------------------------------------------- SQL

/* A SQL literal (standard_conforming_strings: only ' is special). */
export function sqlLit(v) {
	if (v === null || v === undefined) return 'NULL';
	if (typeof v === 'boolean') return v ? 'TRUE' : 'FALSE';
	if (typeof v === 'number') {
		if (!Number.isFinite(v)) throw new Error(`sqlLit: ${v}`);
		return String(v);
	}
	const s = String(v);
	if (s.includes('\0')) throw new Error('sqlLit: NUL in a string');
	return `'${s.replace(/'/g, "''")}'`;
}

const sqlArr = (a) => a === null || a === undefined ? 'NULL' :
    `ARRAY[${a.map(sqlLit).join(', ')}]::text[]`;

/* A Date / ISO string as the UTC TIMESTAMP(3) Prisma stores. */
const sqlTs = (t) => t === null || t === undefined ? 'NULL' :
    `(${sqlLit(new Date(t).toISOString())}::timestamptz AT TIME ZONE 'UTC')`;

/* INSERT statements for one person and their rows. */
export function personSql(p) {
	const stmts = [];
	stmts.push(`INSERT INTO "users" ("id", "name", "age", "phone", "gender", "interests", "dislikes", ` +
	    `"isFirstCall", "lastCallAt") VALUES (${sqlLit(p.id)}, ${sqlLit(p.name)}, ${sqlLit(p.age)}, ` +
	    `${sqlLit(p.phone)}, ${p.gender == null ? 'NULL' : `${sqlLit(p.gender)}::"Gender"`}, ` +
	    `${sqlArr(p.interests)}, ${sqlArr(p.dislikes)}, ${sqlLit(p.isFirstCall)}, ${sqlTs(p.lastCallAt)});`);
	// Newest first: the first summary is the most recent (one day apart).
	const now = Date.now();
	(p.summaries ?? []).forEach((text, i) => {
		stmts.push(`INSERT INTO "conversation_summaries" ("userId", "conversationId", "summaryText", ` +
		    `"createdAt") VALUES (${sqlLit(p.id)}, ${sqlLit(`conv_seed_${hex(8)}`)}, ${sqlLit(text)}, ` +
		    `${sqlTs(now - (i + 1) * 86400000)});`);
	});
	for (const c of p.conditions ?? [])
		stmts.push(`INSERT INTO "user_health_conditions" ("userId", "condition", "severity", "isActive") ` +
		    `VALUES (${sqlLit(p.id)}, ${sqlLit(c.condition)}, ${sqlLit(c.severity ?? null)}, ` +
		    `${sqlLit(c.isActive ?? true)});`);
	for (const m of p.medications ?? [])
		stmts.push(`INSERT INTO "user_medications" ("userId", "name", "dosage", "frequency", "isActive") ` +
		    `VALUES (${sqlLit(p.id)}, ${sqlLit(m.name)}, ${sqlLit(m.dosage ?? null)}, ` +
		    `${sqlLit(m.frequency ?? null)}, ${sqlLit(m.isActive ?? true)});`);
	return `BEGIN;\n${stmts.join('\n')}\nCOMMIT;`;
}

// ----------------------------------------------------------------- BullMQ

export const JOB_PREFIX = 'bull:post-call-processing:';

/* Every key matching pattern (SCAN, never KEYS). */
export async function scanKeys(redis, pattern) {
	const out = [];
	let cursor = '0';
	do {
		const [next, batch] = await redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', '1000');
		out.push(...batch);
		cursor = next;
	} while (cursor !== '0');
	return out;
}

/*
 * Every job hash of the post-call queue in Redis (SCAN, never KEYS):
 * [{id, key, name, data, opts (parsed JSON), timestamp, delay, hash}],
 * by id.
 */
export async function postCallJobs(redis) {
	const keys = new Set((await scanKeys(redis, `${JOB_PREFIX}*`))
	    .filter((k) => /^\d+$/.test(k.slice(JOB_PREFIX.length))));
	const jobs = [];
	for (const key of keys) {
		const flat = await redis.call('HGETALL', key);
		const hash = {};
		for (let i = 0; i + 1 < flat.length; i += 2) hash[flat[i]] = flat[i + 1];
		const parse = (v) => { try { return JSON.parse(v); } catch { return undefined; } };
		jobs.push({ id: key.slice(JOB_PREFIX.length), key, name: hash.name, data: parse(hash.data),
		    opts: parse(hash.opts), timestamp: Number(hash.timestamp), delay: Number(hash.delay), hash });
	}
	return jobs.sort((a, b) => Number(a.id) - Number(b.id));
}

// ------------------------------------------------------------ streams

/*
 * Answer every mark naiberd sends on stream s at once, as Twilio does when
 * nothing is left to play: names in s.marksEchoed, {name, t} in s.marks
 * (t taken before the echo is sent).
 */
export function echoMarks(s) {
	s.marksEchoed ??= [];
	s.marks ??= [];
	s.ws.on('message', (data, isBinary) => {
		if (isBinary) return;
		let m;
		try { m = JSON.parse(data.toString()); } catch { return; }
		if (m?.event === 'mark' && typeof m.mark?.name === 'string' && s.isOpen()) {
			s.marksEchoed.push(m.mark.name);
			s.marks.push({ name: m.mark.name, t: Date.now() });
			s.sendMark(m.mark.name).catch(() => {});
		}
	});
}

// ---------------------------------------------------------- cleanup hook

/*
 * The harness keeps its per-test cleanup scope private: it exports no
 * defer().  Its fake Twilio, though, is closed by that scope at the end
 * of the test, after naiberd (cleanups run last-in first-out and the fake
 * Twilio is started first).  So the stack's other resources (PostgreSQL,
 * fake ElevenLabs, the CA directory) are released from there: once
 * naiberd has stopped, closing the stack's fake Twilio releases them too.
 * (A tw.close() while naiberd still runs closes only the fake Twilio.)
 * If the harness grows a defer(), this is the one place to change.
 */
function deferToScope(tw, isLast, fn) {
	const close = tw.close;
	tw.close = async () => {
		await close();
		if (isLast()) await fn();
	};
}

// ------------------------------------------------------------------ stack

export async function startStack(opts = {}) {
	const {
		workers = 2, maxCalls = 10, env: envOver = {}, args = [], eleven = {}, openaiUrl = null,
		person = true, waitReady = true, twilio: twOpts = {}, pg: givenPg = null, ca: givenCa = null,
		redisOpts = {}, envFn = null, extraCaFiles = [], ...rest
	} = opts;

	const accountSid = envOver.TWILIO_ACCOUNT_SID ?? 'AC00000000000000000000000000000000';
	const authToken = envOver.TWILIO_AUTH_TOKEN ?? hex(16);
	const twilioUrl = 'TWILIO_URL' in envOver ? envOver.TWILIO_URL : 'https://bridge.test';
	const expect = { from: envOver.TWILIO_NUMBER ?? '+15550001111' };
	if (twilioUrl) {
		expect.url = `${twilioUrl}/twiml`;
		expect.statusCallback = `${twilioUrl}/status-callback`;
	}

	const st = { d: null, redis: null, pg: null, el: null, tw: null, ca: null, env: null };
	let caDir = null, released = null;
	const release = () => {
		released ??= (async () => {
			const jobs = [];
			if (st.el) jobs.push(withTimeout(st.el.close(), 5000, 'fake ElevenLabs close').catch(() => {}));
			if (st.pg && st.pg !== givenPg) jobs.push(st.pg.stop().catch(() => {}));
			await Promise.all(jobs);
			if (caDir) fs.rmSync(caDir, { recursive: true, force: true });
		})();
		return released;
	};

	// First, so the harness closes it last: see deferToScope.
	st.tw = await startFakeTwilio({ accountSid, authToken, ...twOpts,
	    expect: { ...expect, ...(twOpts.expect ?? {}) } });
	deferToScope(st.tw, () => !st.d || !st.d.alive(), release);

	try {
		const [redis, pg, el] = await Promise.allSettled([
			startRedis(redisOpts),
			givenPg ?? startPostgres(),
			(async () => {
				if (givenCa) {
					st.ca = givenCa;
				} else {
					caDir = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-stack-ca-'));
					st.ca = makeTestCA(caDir);
				}
				return startFakeEleven({ cert: st.ca.cert, key: st.ca.key, agentId: AGENT_ID, ...eleven });
			})(),
		]);
		if (pg.status === 'fulfilled') st.pg = pg.value;
		if (el.status === 'fulfilled') st.el = el.value;
		if (redis.status === 'fulfilled') st.redis = redis.value;
		for (const r of [redis, pg, el]) if (r.status === 'rejected') throw r.reason;
	} catch (e) {
		await release();
		throw e;
	}

	st.addPerson = async (p) => {
		const full = {
			age: null, gender: null, interests: [], dislikes: [], isFirstCall: true, lastCallAt: null,
			summaries: [], conditions: [], medications: [], ...p,
		};
		if (!full.id || !full.name || !full.phone) throw new Error('addPerson: id, name and phone are required');
		await st.pg.psql(personSql(full));
		return full;
	};

	try {
		if (person) await st.addPerson(person === true ? DEFAULT_PERSON : { ...DEFAULT_PERSON, ...person });
	} catch (e) {
		await release();
		throw e;
	}

	const stackEnv = {
		REDIS_URL: st.redis.url,
		DATABASE_URL: st.pg.url,
		TWILIO_API_BASE: st.tw.url,
		TWILIO_ACCOUNT_SID: accountSid,
		TWILIO_AUTH_TOKEN: authToken,
		PHONE_NUMBER: TEST_PHONE,
		ELEVENLABS_BASE_URL: st.el.url,
		ELEVENLABS_API_KEY: st.el.apiKey,
		ELEVENLABS_AGENT_ID: AGENT_ID,
		TLS_CA_FILE: st.ca.caCert,
		...(openaiUrl ? { OPENAI_API_KEY: 'test', OPENAI_BASE_URL: openaiUrl } : {}),
		...envOver,
		// envFn(st): overrides that need the peers' ports.
		...(envFn ? envFn(st) : {}),
	};
	if (extraCaFiles.length > 0) {
		// One PEM file of trust anchors: the stack's and the extra ones.
		const both = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-stack-cas-')), 'cas.pem');
		fs.writeFileSync(both, [stackEnv.TLS_CA_FILE, ...extraCaFiles].map((f) => fs.readFileSync(f, 'utf8')).join('\n'));
		stackEnv.TLS_CA_FILE = both;
	}
	const nOpts = { ...rest, workers, maxCalls, args, env: stackEnv };

	const ready = async (d) => {
		await waitFor(async () => {
			if (d.exitInfo) throw new Error(`naiberd exited: ${JSON.stringify(d.exitInfo)}`);
			return (await apiGet(d, '/sessions', { timeoutMs: 1000 })).status === 200;
		}, 10000, 'GET /sessions to answer 200 (naiberd connected to Redis)', 50);
		// /ready: where the binary has it, it must say yes before a test starts.
		let last = null;
		await waitFor(async () => {
			last = await http(d.port, 'GET', '/ready', { timeoutMs: 3000, host: d.host });
			return last.status === 200 || last.status === 404;
		}, 10000, 'GET /ready to answer 200', 100).catch((e) => {
			throw new Error(`${e.message}; last answer ${last?.status} ${last?.body}`);
		});
	};

	const start = async (o = {}) => {
		const d = await startNaiberd({ ...nOpts, ...o, env: { ...nOpts.env, ...(o.env ?? {}) } });
		st.d = d;
		st.env = d.env;
		if (waitReady) await ready(d);
		return d;
	};
	try {
		await start();
	} catch (e) {
		if (st.d) await st.d.stop(2000).catch(() => {});
		await release();
		throw e;
	}

	st.placeCall = async ({ phone, callType, health = false, body, d = st.d } = {}) => {
		const p = health || callType === 'health_check' ? '/call/health-check' : '/call';
		let b = body;
		if (b === undefined && (phone !== undefined || (callType !== undefined && p === '/call'))) {
			b = {};
			if (phone !== undefined) b.phone = phone;
			if (callType !== undefined && p === '/call') b.callType = callType;
		}
		const r = await apiPost(d, p, b, { timeoutMs: 15000 });
		if (r.status !== 200 || r.json?.success !== true || typeof r.json?.callSid !== 'string')
			throw new Error(`POST ${p} ${JSON.stringify(b)}: ${r.status} ${r.body}`);
		const callSid = r.json.callSid;
		const raw = await st.redis.call('GET', `call:${callSid}`);
		if (raw === null) throw new Error(`POST ${p}: no call:${callSid} in Redis after success`);
		const ctx = JSON.parse(raw);
		if (typeof ctx.nonce !== 'string' || ctx.nonce === '')
			throw new Error(`call:${callSid} has no nonce: ${raw}`);
		return { callSid, nonce: ctx.nonce, ctx, phone: ctx.phone, callType: ctx.callType };
	};

	st.openStream = async (call, o = {}) => {
		const {
			waitConversation = true, since, timeoutMs = 10000, nonce, callType, customParameters,
			afterStart, echoMarks: echo = false, d = st.d, ...streamOpts
		} = o;
		const params = customParameters ?? {
			call_type: callType ?? call.callType ?? call.ctx?.callType ?? 'general',
			nonce: nonce ?? call.nonce,
		};
		const s = d.stream({ callSid: call.callSid, customParameters: params, ...streamOpts });
		s.call = call;
		s.nonce = params.nonce;
		s.marksEchoed = [];
		if (echo) echoMarks(s);
		await s.opened;
		const mark = since ?? d.logMark();
		await s.sendConnected();
		await s.sendStart();
		if (afterStart) await afterStart(s);
		const b = await waitBound(d, call.callSid, { timeoutMs, since: mark });
		s.workerPid = b.pid;
		s.boundType = b.type;
		if (!waitConversation) return s;

		const sid = reEsc(call.callSid);
		const conv = new RegExp(`worker\\[(\\d+)\\][^\\n]*callSid=${sid}[^\\n]*elevenlabs: conversation (\\S+) ` +
		    'formats in=(\\S+) out=(\\S+)');
		const done = new RegExp(`worker (\\d+) call ${sid} done: reason=(.+?) frames_in=`);
		const m = await d.waitLog((text) => {
			const c = conv.exec(text);
			if (c) return { pid: Number(c[1]), id: c[2], fin: c[3], fout: c[4] };
			const x = done.exec(text);
			if (x) return { ended: x[2] };
			return null;
		}, timeoutMs, mark).catch((e) => {
			throw new Error(`call ${call.callSid}: no ElevenLabs conversation: ${e.message}`);
		});
		if (m.ended)
			throw new Error(`call ${call.callSid} ended (reason=${m.ended}) before its ElevenLabs conversation was up`);
		s.workerPid ??= m.pid;
		s.conversationId = m.id;
		s.formats = { in: m.fin, out: m.fout };
		s.elConv = await st.el.waitFor((el) => {
			// A reused id (the fake may be told to reuse one): the newest still open.
			const same = el.conversations.filter((c) => c.id === m.id);
			return same.findLast((c) => c.state !== 'closed') ?? same[0];
		}, 5000, `fake ElevenLabs conversation ${m.id}`);
		return s;
	};

	st.startInstance = async (o = {}) => {
		const { NAIBER_SPOOL_DIR: _own, ...env } = st.env;
		const d = await startNaiberd({ workers, maxCalls, ...o, env: { ...env, ...(o.env ?? {}) } });
		if (waitReady) await ready(d);
		return d;
	};

	st.restart = async (o = {}) => {
		const { graceMs = 5000, ...so } = o;
		const old = st.d;
		await old.stop(graceMs);
		return start({ port: old.port, ...so });
	};

	st.postCallJobs = () => postCallJobs(st.redis);

	let stopping = null;
	st.stop = () => {
		stopping ??= (async () => {
			if (st.d) await st.d.stop(3000).catch(() => {});
			await st.tw.close().catch(() => {});
			await release();
			if (st.redis) await st.redis.stop().catch(() => {});
		})();
		return stopping;
	};
	return st;
}
