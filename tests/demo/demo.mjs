#!/usr/bin/env node
// demo.mjs - `make demo`: one phone call through naiberd, end to end, with
// every outside party simulated on this machine.  No accounts, no real
// phone, nothing leaves 127.0.0.1.
//
//   make demo                  (installs what is missing, builds, runs this)
//   node tests/demo/demo.mjs   (after `make deps all`)
//
// It starts, each on a free loopback port and in a temporary directory:
// redis-server; PostgreSQL (tests/lib/pg.mjs: initdb, the Prisma schema
// from tests/lib/schema.sql, and one person, Margaret, 82, a returning
// caller with two earlier conversation summaries); a simulated Twilio
// REST API (tests/peers/fake-twilio.mjs); a simulated ElevenLabs agent
// over TLS with a throw-away CA (tests/peers/fake-eleven.mjs); a real,
// unmodified BullMQ 5 Worker on the post-call queue
// (tests/peers/bull-consumer.mjs); and build/naiberd in the foreground.
// This script then plays Twilio's part of the call (webhooks, the Media
// Stream WebSocket) and scripts the agent's part, and prints each step as
// it happens: the dial, the TwiML, the stream binding, the agent's init
// message, audio both ways, the Redis session keys, barge-in, pings, the
// goodbye and hang-up, the key clean-up, the post-call job and the
// daemon's own summary.  Then it stops everything it started and checks
// that nothing is left (no child process, no listening port, no temp dir).
//
// naiberd's full log (debug level) is kept in build/demo/naiberd.log.
// Colour only on a terminal (NO_COLOR=1 turns it off).  NAIBERD=/path
// runs another binary.  Exit status: 0 on success; 1 if any step failed
// (the step, the error and the last 40 lines of naiberd's log are
// printed, and everything is still stopped); 130 after Ctrl-C.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

import {
	startNaiberd, startRedis, redisCall, redisPipeline, twilioStream, apiPost, http,
	twilioWebhook, voiceParams, statusParams, parseXml, xmlFindAll, waitFor, withTimeout,
	sleep, pidAlive, childPids, REPO, NAIBERD, twilio,
} from '../lib/harness.mjs';
import { startPostgres } from '../lib/pg.mjs';
import { startFakeTwilio } from '../peers/fake-twilio.mjs';
import { makeTestCA, startFakeEleven, ulawEncode, sinePcm16 } from '../peers/fake-eleven.mjs';

// ------------------------------------------------------------ constants

const ACCOUNT_SID = 'AC' + '0'.repeat(32);
const AUTH_TOKEN = randomBytes(16).toString('hex');
const API_TOKEN = randomBytes(16).toString('hex');
const XI_KEY = 'xi-demo-' + randomBytes(8).toString('hex');
const AGENT_ID = 'agent_demo_naiber';
const OUR_NUMBER = '+15550001111';		// TWILIO_NUMBER, the caller id
const PHONE = '+15550002222';			// Margaret's phone
const PUBLIC = 'https://demo.naiber.test';	// TWILIO_URL (signatures use it)
const STREAM_URL = 'wss://demo.naiber.test/outbound-media-stream';
const FRAME = 160;				// 20 ms of mu-law at 8 kHz
const AUDIO_SECONDS = 3;
const TOTAL_LIMIT_MS = 120000;
const LOG_DIR = path.join(REPO, 'build', 'demo');
const LOG_FILE = path.join(LOG_DIR, 'naiberd.log');

// --------------------------------------------------------------- output

const COLOR = process.stdout.isTTY === true && !process.env.NO_COLOR && process.env.TERM !== 'dumb';
const sgr = (code) => (s) => COLOR ? `\x1b[${code}m${s}\x1b[0m` : String(s);
const bold = sgr('1'), dim = sgr('2'), red = sgr('31'), green = sgr('32'),
    yellow = sgr('33'), cyan = sgr('36'), magenta = sgr('35');

const T0 = Date.now();
const stamp = (t = Date.now()) => `+${((t - T0) / 1000).toFixed(2)}s`.padStart(8);
const INDENT = ' '.repeat(13);
/*
 * The call's steps print with out(); once the demo fails or is
 * interrupted they are muted (they may still be winding down) and only
 * the failure report and the shutdown, printed with write(), are shown.
 */
let muted = false;
const write = (s = '') => process.stdout.write(s + '\n');
const out = (s = '') => { if (!muted) write(s); };

let current = null;		// {n, title} of the running step, for errors

function header(n, title) {
	current = { n, title };
	out(`${dim(stamp())}  ${bold(cyan(String(n).padStart(2)))}  ${bold(title)}`);
}

/* An indented detail line: a dim label column, then the text. */
function detail(label, text, w = out) {
	const lines = String(text).split('\n');
	w(`${INDENT}${dim(label.padEnd(10))} ${lines[0]}`);
	for (const l of lines.slice(1)) w(`${INDENT}${' '.repeat(11)}${l}`);
}

/* A detail line with its own time stamp (the setup's pieces). */
function detailT(label, text, w = out) {
	const lines = String(text).split('\n');
	w(`${dim(stamp())}     ${dim(label.padEnd(10))} ${lines[0]}`);
	for (const l of lines.slice(1)) w(`${INDENT}${' '.repeat(11)}${l}`);
}

const ok = (s) => `${green('✓')} ${s}`;
const short = (s, n = 96) => (s.length > n ? s.slice(0, n - 1) + '…' : s);
const q = (s) => JSON.stringify(s);

/* key=value pairs, wrapped into lines of at most `width` characters. */
function kv(obj, width = 92) {
	const lines = [];
	let line = '';
	for (const [k, v] of Object.entries(obj)) {
		const item = `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`;
		if (line && line.length + 2 + item.length > width) {
			lines.push(line);
			line = item;
		} else {
			line = line ? `${line}  ${item}` : item;
		}
	}
	if (line) lines.push(line);
	return lines.join('\n');
}

// ------------------------------------------------------- naiberd's log

/*
 * "2026-11-26T02:21:32.224Z worker[30075] info: callSid=CA.. stream bound"
 * -> "worker 30075: stream bound" (the callSid is shown once, elsewhere).
 */
const RX_LOGLINE = /^\S+ (supervisor|worker)\[(\d+)\] (\w+): (?:callSid=\S+ )?(?:conversationId=\S+ )?(.*)$/;
function fmtLog(line) {
	const m = RX_LOGLINE.exec(line);
	if (!m) return line;
	const who = m[1] === 'worker' ? `worker ${m[2]}` : 'supervisor';
	return `${magenta(who)}: ${m[4]}`;
}

/* Wait for a log line (after offset `since`) matching re; the whole line. */
async function logLine(d, re, { since = 0, timeoutMs = 5000 } = {}) {
	const lineRe = new RegExp(`[^\\n]*(?:${re.source})[^\\n]*`, re.flags.replace('g', ''));
	const m = await d.waitLog(lineRe, timeoutMs, since);
	return m[0];
}

async function showLog(d, re, opts) {
	detail('naiberd', fmtLog(await logLine(d, re, opts)));
}

const reEsc = (s) => String(s).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// --------------------------------------------------------- bookkeeping

const st = {
	pki: null, pg: null, redis: null, el: null, tw: null, d: null, bull: null,
	stream: null, ports: [], pids: [], dirs: [], starting: new Set(),
};

/*
 * A start in progress: shutdown() waits for it, so what it starts is
 * stopped.  Takes a function; once the demo is failing or interrupted
 * nothing new is started.
 */
function starting(fn) {
	if (muted) return Promise.reject(new Error('stopping: nothing more is started'));
	const p = fn();
	st.starting.add(p);
	const forget = () => st.starting.delete(p);
	p.then(forget, forget);
	return p;
}

function procOf(pid) {
	try {
		return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
	} catch {
		return '?';
	}
}

/* Loopback TCP ports in LISTEN state (/proc/net/tcp and tcp6). */
function listeningPorts() {
	const ports = new Set();
	for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
		let text = '';
		try { text = fs.readFileSync(f, 'utf8'); } catch { continue; }
		for (const line of text.split('\n').slice(1)) {
			const cols = line.trim().split(/\s+/);
			if (cols.length > 3 && cols[3] === '0A') ports.add(parseInt(cols[1].split(':')[1], 16));
		}
	}
	return ports;
}

/* Our own child processes (none may be left at the end). */
function ourChildren() {
	return childPids(process.pid);
}

// ------------------------------------------------------------- BullMQ

/* A real BullMQ 5 Worker (tests/peers/bull-consumer.mjs), JSON lines out. */
function startBullWorker(redisPort) {
	const script = path.join(REPO, 'tests', 'peers', 'bull-consumer.mjs');
	const proc = spawn(process.execPath, [script, 'bullmq5', String(redisPort), 'ok'],
	    { cwd: path.dirname(script), stdio: ['ignore', 'pipe', 'pipe'] });
	const b = { proc, pid: proc.pid, events: [], stderr: '', exitInfo: null };
	const waiters = new Set();
	const poke = () => { for (const w of [...waiters]) w(); };
	readline.createInterface({ input: proc.stdout }).on('line', (l) => {
		try { b.events.push({ t: Date.now(), ...JSON.parse(l) }); } catch { b.stderr += l + '\n'; }
		poke();
	});
	proc.stderr.setEncoding('utf8').on('data', (s) => { b.stderr += s; });
	b.exited = new Promise((resolve) => proc.on('exit', (code, signal) => {
		b.exitInfo = { code, signal };
		poke();
		resolve(b.exitInfo);
	}));
	proc.on('error', (e) => { b.exitInfo = { error: e.message }; poke(); });
	b.waitEvent = (pred, ms, what) => new Promise((resolve, reject) => {
		const check = () => {
			const e = b.events.find(pred);
			if (e) { done(); resolve(e); return; }
			if (b.exitInfo) { done(); reject(new Error(`the BullMQ Worker exited (${JSON.stringify(b.exitInfo)}): ${b.stderr.trim()}`)); }
		};
		const timer = setTimeout(() => { done(); reject(new Error(`timeout after ${ms} ms: ${what}${b.stderr ? ` (worker stderr: ${b.stderr.trim()})` : ''}`)); }, ms);
		const done = () => { clearTimeout(timer); waiters.delete(check); };
		waiters.add(check);
		check();
	});
	b.stop = async () => {
		if (b.exitInfo) return b.exitInfo;
		try { proc.kill('SIGTERM'); } catch { /* gone */ }
		const r = await Promise.race([b.exited, sleep(5000).then(() => null)]);
		if (r) return r;
		try { proc.kill('SIGKILL'); } catch { /* gone */ }
		return withTimeout(b.exited, 3000, 'BullMQ Worker exit');
	};
	return b;
}

// ---------------------------------------------------------- the person

async function seedPerson(pg) {
	const id = (await pg.psql(`INSERT INTO users ("name", "age", "phone", "gender", "interests", ` +
	    `"dislikes", "isFirstCall", "lastCallAt") VALUES ('Margaret', 82, '${PHONE}', 'FEMALE', ` +
	    `ARRAY['gardening', 'the radio'], ARRAY['loud music'], false, now() - interval '2 days') ` +
	    `RETURNING "id"`)).trim();
	await pg.psql(`INSERT INTO conversation_summaries ("userId", "conversationId", "summaryText", "createdAt") VALUES
	    ('${id}', 'conv_demo_earlier_1', 'Margaret talked about planting spring bulbs with her neighbour ' ||
	     'and asked about the best time to prune her roses.', now() - interval '9 days'),
	    ('${id}', 'conv_demo_earlier_2', 'Margaret enjoyed a radio play about a lighthouse keeper and ' ||
	     'said her tomatoes are coming along nicely; her knee was a little stiff.', now() - interval '2 days')`);
	return id;
}

// ------------------------------------------------------- Twilio's side

/*
 * The Media Stream as Twilio plays it: a WebSocket client with the
 * X-Twilio-Signature header, that records what naiberd sends and echoes
 * marks after their audio has "played".
 */
function openMediaStream(d, callSid, streamUrl, customParameters) {
	// Twilio connects to the URL the TwiML gave (the call's own) and signs it.
	const s = twilioStream(d.port, { callSid, token: AUTH_TOKEN, streamUrl, customParameters,
	    accountSid: ACCOUNT_SID, path: new URL(streamUrl).pathname });
	Object.assign(s, { seq: 1, chunk: 0, mediaMsgs: 0, mediaBufs: [], mediaBytes: 0, marks: [],
	    clears: [], echoes: [], callerSent: [], markEchoDelayMs: 0, closedT: null });
	s.closed.then(() => { s.closedT = Date.now(); });
	s.opened.then(() => { s.t0Open = Date.now(); }, () => {});
	s.ws.on('message', (data, isBinary) => {
		if (isBinary) return;
		let m;
		try { m = JSON.parse(data.toString()); } catch { return; }
		const t = Date.now();
		if (m.event === 'media') {
			const b = Buffer.from(m.media?.payload ?? '', 'base64');
			s.mediaMsgs++;
			s.mediaBufs.push(b);
			s.mediaBytes += b.length;
		} else if (m.event === 'mark') {
			const name = m.mark?.name;
			s.marks.push({ t, name, mediaBytes: s.mediaBytes, raw: m });
			setTimeout(() => {
				if (!s.isOpen()) return;
				s.echoes.push({ t: Date.now(), name });
				s.send({ event: 'mark', sequenceNumber: String(++s.seq), streamSid: s.streamSid,
				    mark: { name } }).catch(() => {});
			}, s.markEchoDelayMs);
		} else if (m.event === 'clear') {
			s.clears.push({ t, raw: m });
		}
	});
	/* One caller frame (mu-law bytes), as a Twilio media message. */
	s.media = (buf) => {
		s.chunk++;
		s.callerSent.push(buf);
		return s.send({ event: 'media', sequenceNumber: String(++s.seq), streamSid: s.streamSid,
		    media: { track: 'inbound', chunk: String(s.chunk), timestamp: String(s.chunk * 20),
		    payload: buf.toString('base64') } });
	};
	s.start = () => { s.seq = 1; return s.sendStart(); };
	return s;
}

const frames = (buf) => {
	const outv = [];
	for (let o = 0; o < buf.length; o += FRAME) outv.push(buf.subarray(o, Math.min(buf.length, o + FRAME)));
	return outv;
};
const tone = (hz, seconds, amp = 0.3) => ulawEncode(sinePcm16(hz, 8000, seconds, amp));

// ------------------------------------------------------------ the demo

async function setup() {
	header('·', 'Starting the pieces (loopback ports, temporary directories)');
	if (!fs.existsSync(NAIBERD)) throw new Error(`${NAIBERD} does not exist: run make first`);
	fs.mkdirSync(LOG_DIR, { recursive: true });

	// PostgreSQL (initdb) is the slow one: start it first, the rest meanwhile.
	const pgP = starting(() => startPostgres()).then((p) => {
		st.pg = p;
		st.dirs.push(p.dir);
		st.ports.push(['PostgreSQL', p.port]);
		try {
			const pm = fs.readFileSync(path.join(p.dir, 'data', 'postmaster.pid'), 'utf8');
			if (Number(pm.split('\n')[0]) > 0) st.pids.push(['postgres', Number(pm.split('\n')[0])]);
		} catch { /* not readable: the port check still covers it */ }
		return p;
	});
	pgP.catch(() => {});
	const redis = await starting(() => startRedis()).then((r) => {
		st.redis = r;
		st.dirs.push(r.dir);
		st.ports.push(['redis-server', r.port]);
		st.pids.push(['redis-server', r.pid]);
		return r;
	});
	const redisVer = (await redisCall(redis.port, 'INFO', 'server')).match(/redis_version:(\S+)/)?.[1] ?? '?';
	detailT('Redis', `redis-server ${redisVer} on 127.0.0.1:${redis.port}, no persistence`);

	const pkiDir = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-demo-pki-'));
	st.dirs.push(pkiDir);
	st.pki = makeTestCA(pkiDir);

	const pg = await pgP;
	const pgVer = (await pg.psql('SHOW server_version')).split(' ')[0];
	const userId = await seedPerson(pg);
	detailT('PostgreSQL', `PostgreSQL ${pgVer} on 127.0.0.1:${pg.port}: the Prisma schema and one person:`);
	detail('', `Margaret, 82, ${PHONE}, likes gardening and the radio, returning caller,\n` +
	    `2 earlier conversation summaries  (users.id ${userId})`);

	await starting(() => startFakeEleven({ cert: st.pki.cert, key: st.pki.key, apiKey: XI_KEY, agentId: AGENT_ID }))
	    .then((e) => { st.el = e; st.ports.push(['simulated ElevenLabs', e.port]); });
	detailT('ElevenLabs', `simulated agent API on ${st.el.url} (TLS, certificate from a throw-away CA)`);

	await starting(() => startFakeTwilio({ accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN,
	    expect: { from: OUR_NUMBER, url: `${PUBLIC}/twiml`, statusCallback: `${PUBLIC}/status-callback` } }))
	    .then((t) => { st.tw = t; st.ports.push(['simulated Twilio', t.port]); });
	detailT('Twilio', `simulated REST API on ${st.tw.url}; this script plays the webhooks and the Media Stream`);

	await starting(async () => {
		st.bull = startBullWorker(redis.port);
		st.pids.push(['BullMQ Worker', st.bull.pid]);
	});
	const ready = await st.bull.waitEvent((e) => e.event === 'ready', 15000, 'the BullMQ Worker to connect');
	detailT('BullMQ', `BullMQ ${ready.version} Worker (pid ${st.bull.pid}) waiting on queue "post-call-processing"`);

	const d = await starting(() => startNaiberd({
		workers: 2, maxCalls: 4, drainTimeout: 5,
		env: {
			REDIS_URL: redis.url, DATABASE_URL: pg.url,
			TWILIO_API_BASE: st.tw.url, TWILIO_ACCOUNT_SID: ACCOUNT_SID, TWILIO_AUTH_TOKEN: AUTH_TOKEN,
			TWILIO_NUMBER: OUR_NUMBER, PHONE_NUMBER: PHONE, TWILIO_URL: PUBLIC, STREAM_URL,
			ELEVENLABS_BASE_URL: st.el.url, ELEVENLABS_API_KEY: XI_KEY, ELEVENLABS_AGENT_ID: AGENT_ID,
			TLS_CA_FILE: st.pki.caCert, NAIBER_API_TOKEN: API_TOKEN,
		},
	})).then((x) => {
		st.d = x;
		st.dirs.push(x.dir);
		st.ports.push(['naiberd', x.port]);
		st.pids.push(['naiberd', x.pid]);
		return x;
	});
	fs.writeFileSync(LOG_FILE, d.log);
	d.proc.stderr.on('data', (s) => { try { fs.appendFileSync(LOG_FILE, s); } catch { /* ignore */ } });
	await waitFor(async () => (await http(d.port, 'GET', '/ready', { timeoutMs: 1000 })).status === 200,
	    10000, 'GET /ready to answer 200 (Redis and PostgreSQL reachable)', 100);
	detailT('naiberd', `${path.relative(REPO, NAIBERD)} pid ${d.pid} on 127.0.0.1:${d.port}, 2 idle workers; ` +
	    `GET /ready → 200`);
	detail('', dim(`full log: ${path.relative(process.cwd(), LOG_FILE) || LOG_FILE}`));
	await showLog(d, /listening on/);
	return { userId };
}

async function theCall({ userId }) {
	const d = st.d, tw = st.tw, el = st.el, redis = st.redis;
	const res = {};

	// 1 ------------------------------------------------------------- dial
	header(1, 'Place a call: POST /call with the API token');
	let since = d.logMark();
	const body = { phone: PHONE, callType: 'general' };
	const r = await apiPost(d, '/call', body, { token: API_TOKEN, timeoutMs: 10000 });
	detail('request', `POST /call  Authorization: Bearer <NAIBER_API_TOKEN>  ${q(body)}`);
	if (r.status !== 200 || r.json?.success !== true) throw new Error(`POST /call answered ${r.status}: ${r.body}`);
	const callSid = r.json.callSid;
	res.callSid = callSid;
	detail('answer', `${r.status} ${r.body}`);
	// Until the goodbye (step 11), the call ending is a failure: say why at once.
	let endExpected = false;
	d.waitLog(new RegExp(`call ${callSid} done: reason=(.*?) frames_in`), TOTAL_LIMIT_MS, since).then((m) => {
		if (!endExpected) fail(new Error(`naiberd ended the call early: reason=${m[1]} (its log is below)`));
	}, (e) => {
		if (!endExpected && !d.alive()) fail(new Error(`naiberd exited during the call: ${e.message}`));
	});
	await showLog(d, new RegExp(`call ${callSid} placed`), { since });
	const [ctv, cttl, cv, cvttl] = await redisPipeline(redis.port, [['GET', `call_type:${callSid}`],
	    ['TTL', `call_type:${callSid}`], ['GET', `call:${callSid}`], ['TTL', `call:${callSid}`]]);
	detail('Redis', `call_type:${callSid} = ${ctv}  (TTL ${cttl} s)`);
	detail('Redis', `call:${callSid} = {${Object.keys(JSON.parse(cv ?? '{}')).join(', ')}}  (TTL ${cvttl} s)`);

	// 2 --------------------------------------------- Twilio REST create
	header(2, 'Twilio REST received the create-call request');
	const cr = await tw.waitFor(() => tw.creates().find((x) => x.callSid === callSid), 3000,
	    'the create-call request at the simulated Twilio');
	const f = cr.form;
	detail('Twilio', `POST ${cr.path}  (HTTP Basic ${ACCOUNT_SID.slice(0, 6)}…:<auth token>) → ${cr.answer.status} queued`);
	detail('', kv({ To: f.To[0], From: f.From[0], Timeout: f.Timeout[0] }));
	detail('', kv({ Url: f.Url[0], StatusCallback: f.StatusCallback[0] }));
	detail('', kv({ StatusCallbackEvent: f.StatusCallbackEvent.join(',') }));
	// While "the phone rings", an idle worker PREPAREs the first message.
	const prep = await logLine(d, new RegExp(`prepare ${callSid}: `), { since, timeoutMs: 5000 });
	detail('naiberd', fmtLog(prep));
	if (/first message stored/.test(prep))
		detail('', dim('(the phone is ringing; meanwhile a worker loaded the profile and wrote the first message)'));

	// 3 ----------------------------------------------------------- TwiML
	header(3, 'Margaret answers: Twilio fetches POST /twiml (signed)');
	const vp = voiceParams(callSid, { AccountSid: ACCOUNT_SID, Called: PHONE, To: PHONE,
	    Caller: OUR_NUMBER, From: OUR_NUMBER });
	const sig = twilio.getExpectedTwilioSignature(AUTH_TOKEN, `${PUBLIC}/twiml`, vp);
	const tr = await twilioWebhook(d, '/twiml', vp, { token: AUTH_TOKEN, twilioUrl: PUBLIC });
	detail('request', `POST /twiml  CallSid=${callSid} CallStatus=in-progress  X-Twilio-Signature: ${sig}`);
	if (tr.status !== 200) throw new Error(`POST /twiml answered ${tr.status}: ${tr.body}`);
	const xml = parseXml(tr.body);
	const streamEl = xmlFindAll(xml, 'Stream')[0];
	if (!streamEl) throw new Error(`no <Stream> in the TwiML: ${tr.body}`);
	const params = {};
	for (const p of xmlFindAll(streamEl, 'Parameter')) params[p.attrs.name] = p.attrs.value;
	detail('answer', `${tr.status} ${tr.headers['content-type']}: <Response><Connect><Stream url="${streamEl.attrs.url}">`);
	detail('', kv(params));
	res.nonce = params.nonce;

	// 4 --------------------------------------------------- Media Stream
	header(4, 'Twilio opens the Media Stream (signed WebSocket upgrade), sends connected + start');
	since = d.logMark();
	const s = openMediaStream(d, callSid, streamEl.attrs.url, params);
	st.stream = s;
	await withTimeout(s.opened, 5000, 'the WebSocket upgrade');
	detail('Twilio', `GET ${new URL(streamEl.attrs.url).pathname}  Upgrade: websocket  ` +
	    'X-Twilio-Signature (over that URL: this call\'s own) → 101');
	await showLog(d, /worker \d+ accepted stream/, { since });
	await s.sendConnected();
	await s.start();
	res.streamSid = s.streamSid;
	await showLog(d, new RegExp(`callSid=${callSid} stream started`), { since });
	const bound = await logLine(d, new RegExp(`callSid=${callSid} stream (?:bound|refused)`), { since });
	if (/stream refused/.test(bound)) throw new Error(`naiberd refused the stream: ${fmtLog(bound)}`);
	detail('naiberd', fmtLog(bound));
	const ctx = JSON.parse(await redisCall(redis.port, 'GET', `call:${callSid}`) ?? 'null');
	if (!ctx) throw new Error(`call:${callSid} is not in Redis`);
	detail('binding', `nonce ${params.nonce} (TwiML <Parameter>) = nonce in Redis call:${callSid.slice(0, 10)}… ${ctx.nonce === params.nonce ? green('✓') : red('✗')}`);
	detail('first msg', ctx.firstMessage ? `${short(q(ctx.firstMessage), 60)}  (prepared while ringing, in call:${callSid.slice(0, 10)}…)`
	    : '(none prepared in time: the template first message is used)');
	res.firstMessage = ctx.firstMessage;

	// 5 ------------------------------------------------ ElevenLabs init
	header(5, 'ElevenLabs: signed URL, TLS WebSocket, and the init message it received');
	const conv = await el.nextConversation(10000);
	const su = el.signedUrlRequests().at(-1);
	detail('ElevenLabs', `GET ${su.path}?agent_id=${su.query.agent_id}  xi-api-key: <key> → ${su.status}`);
	const init = conv.init;
	const ov = init.conversation_config_override ?? {};
	const prompt = ov.agent?.prompt?.prompt ?? '';
	const plines = prompt.split('\n');
	const shown = plines.filter((l) => l.trim() !== '').slice(0, 4);
	const lastSummary = plines.find((l) => l.startsWith('Summary of your last conversation'));
	detail('init', `${init.type}  (${conv.initRaw.length} bytes, user_id ${init.user_id ?? '-'})`);
	detail('prompt', shown.map((l) => short(l)).join('\n') +
	    (lastSummary && !shown.includes(lastSummary) ? `\n${dim('…')}\n${short(lastSummary)}` : '') +
	    `\n${dim(`… (${plines.length} lines, ${prompt.length} characters in all)`)}`);
	detail('first msg', q(ov.agent?.first_message ?? '(none)'));
	const extra = [];
	if (ov.agent?.language) extra.push(`language ${ov.agent.language}`);
	if (ov.tts?.voice_id) extra.push(`voice ${ov.tts.voice_id}`);
	if (init.custom_llm_extra_body) extra.push(`custom_llm_extra_body ${q(init.custom_llm_extra_body)}`);
	if (extra.length) detail('', extra.join('  '));
	if (res.firstMessage && ov.agent?.first_message !== res.firstMessage)
		detail('', yellow('(differs from the prepared first message)'));
	await showLog(d, new RegExp(`callSid=${callSid} elevenlabs: init sent`), { since });

	// 6 --------------------------------------------------- conversation
	header(6, 'ElevenLabs answers with the conversation id');
	const convId = await conv.waitFor((c) => c.id, 5000, 'conversation_initiation_metadata');
	res.convId = convId;
	detail('ElevenLabs', `conversation_initiation_metadata  conversation_id ${convId}  formats ulaw_8000 both ways`);
	await showLog(d, new RegExp(`elevenlabs: conversation ${reEsc(convId)}`), { since });
	await showLog(d, new RegExp(`call ${callSid} stream \\S+ type \\S+ conversation ${reEsc(convId)}`), { since });

	// 7 ---------------------------------------------------------- audio
	header(7, `Audio both ways: ${AUDIO_SECONDS} s of caller frames and ${AUDIO_SECONDS} s of agent speech, in real time`);
	const callerAudio = tone(300, AUDIO_SECONDS);
	const agentAudio = tone(440, AUDIO_SECONDS);
	const callerFrames = frames(callerAudio), agentFrames = frames(agentAudio);
	const n = callerFrames.length;
	const elBase = conv.audioBytes().length, twBase = s.mediaBytes;
	let sentIn = 0, sentOut = 0;
	const firstId = conv.nextAudioEventId;
	const arrivedIn = () => (conv.audioBytes().length - elBase) / FRAME;
	const arrivedOut = () => (s.mediaBytes - twBase) / FRAME;
	const counter = () => `caller → agent: sent ${String(sentIn).padStart(3)}/${n}, ` +
	    `arrived ${String(Math.floor(arrivedIn())).padStart(3)}   │   agent → caller: sent ` +
	    `${String(sentOut).padStart(3)}/${n}, arrived ${String(Math.floor(arrivedOut())).padStart(3)}`;
	let lastShown = '';
	// Rewrite one line in place on a terminal wide enough, else a line a second.
	const inPlace = COLOR && (process.stdout.columns ?? 0) > INDENT.length + 11 + counter().length;
	const showCounter = (final) => {
		if (muted) return;
		const c = counter();
		if (inPlace) {
			process.stdout.write(`\r\x1b[K${INDENT}${dim('frames'.padEnd(10))} ${c}${final ? '\n' : ''}`);
		} else if (c !== lastShown) {
			out(`${INDENT}${'frames'.padEnd(10)} ${c}  ${dim(`(${stamp().trim()})`)}`);
		}
		lastShown = c;
	};
	if (inPlace) showCounter(false);
	const ticker = setInterval(() => showCounter(false), 1000);
	const pending = [];
	let sendErr = null;
	const track = (p) => pending.push(p.catch((e) => { sendErr ??= e; }));
	try {
		const tStart = Date.now();
		for (let i = 0; i < n && !sendErr && !muted; i++) {
			const wait = tStart + i * 20 - Date.now();
			if (wait > 0) await sleep(wait);
			track(s.media(callerFrames[i]));
			sentIn++;
			// Explicit ids: these sends overlap, one audio event each.
			track(conv.sendAudio(agentFrames[i], { chunkBytes: FRAME, eventId: firstId + i }));
			sentOut++;
		}
		await Promise.all(pending);
		if (sendErr) throw sendErr;
		await waitFor(() => arrivedIn() >= n && arrivedOut() >= n, 5000, 'all frames', 20).catch(() => {
			throw new Error(`not all frames arrived within 5 s: caller → agent ${arrivedIn()}/${n}, ` +
			    `agent → caller ${arrivedOut()}/${n}`);
		});
	} finally {
		clearInterval(ticker);
	}
	showCounter(true);
	const inSame = conv.audioBytes().subarray(elBase).equals(callerAudio);
	const outSame = Buffer.concat(s.mediaBufs).subarray(twBase).equals(agentAudio);
	if (!inSame || !outSame) throw new Error(`audio changed on the way (caller → agent identical: ${inSame}, agent → caller identical: ${outSame})`);
	detail('', ok(`${n} frames (${callerAudio.length} bytes) each way, byte for byte unchanged (μ-law 8 kHz passed through)`));
	await showLog(d, /first agent audio \d+ ms after start/, { since });
	res.framesIn = n;
	res.framesOut = n;

	// 8 ------------------------------------------------------------ Redis
	header(8, 'The live session in Redis');
	const sk = `session:${convId}`, uk = `rag:user:${userId}`, pk = `rag:phone:${PHONE}`;
	await waitFor(async () => (await redisCall(redis.port, 'EXISTS', sk, uk, pk)) === 3, 5000,
	    'the three session keys', 50);
	const [sv, stl, uv, utl, pv, ptl] = await redisPipeline(redis.port, [['GET', sk], ['TTL', sk],
	    ['GET', uk], ['TTL', uk], ['GET', pk], ['TTL', pk]]);
	detail('Redis', `${sk}  TTL ${stl} s`);
	detail('', kv(JSON.parse(sv)));
	detail('Redis', `${uk}  TTL ${utl} s  → ${uv}`);
	detail('Redis', `${pk}  TTL ${ptl} s  → ${pv}`);

	// 9 ----------------------------------------------------- barge-in
	header(9, 'Barge-in: Margaret talks over the agent; ElevenLabs sends an interruption');
	const speech = tone(392, 1);
	const twBefore = s.mediaBytes;
	const sent = await conv.sendAudio(speech, { chunkBytes: FRAME });
	res.framesOut += sent.chunks;
	await waitFor(() => s.mediaBytes - twBefore >= speech.length, 5000, 'the agent\'s 1 s sentence at Twilio', 10);
	detail('agent', `speaks 1 s (audio events ${sent.first}…${sent.last}); Twilio has it queued for playback`);
	for (const fr of frames(tone(250, 0.2))) await s.media(fr);
	res.framesIn += 10;
	detail('Twilio', 'Margaret starts talking: 10 caller frames');
	const tInt = Date.now();
	await conv.sendInterruption(sent.last);
	detail('agent', `{"type":"interruption","interruption_event":{"event_id":${sent.last}}}`);
	const clr = await waitFor(() => s.clears[0], 3000, 'a clear message at Twilio', 5);
	detail('Twilio', `got ${JSON.stringify(clr.raw)}  (${clr.t - tInt} ms later; Twilio drops the agent audio it had queued)`);
	await showLog(d, new RegExp(`interruption at agent event ${sent.last}: cleared`), { since });
	const twAfterClear = s.mediaBytes;
	await conv.sendAudio(speech.subarray(speech.length - 3 * FRAME), { chunkBytes: FRAME, eventId: sent.last - 2 });
	res.stale = 3;
	// A ping after them: once its pong is back, the stale chunks were handled.
	await conv.sendPing();
	await conv.waitPongs(1, 3000);
	if (s.mediaBytes !== twAfterClear) throw new Error('audio of the interrupted turn reached the caller after the clear');
	detail('agent', `3 late chunks of the interrupted turn (events ${sent.last - 2}…${sent.last}): ` +
	    `${ok('dropped by naiberd, none reached Margaret')}`);

	// 10 ---------------------------------------------------------- pings
	header(10, 'Keep-alive: ElevenLabs pings, naiberd answers with pongs');
	const pongBase = conv.pongs.length;
	for (let i = 0; i < 3; i++) {
		const id = await conv.sendPing();
		const t1 = Date.now();
		await conv.waitPongs(pongBase + i + 1, 3000);
		const got = conv.pongs[pongBase + i];
		if (got !== id) throw new Error(`pong event_id ${got} answers ping ${id}`);
		detail('ping', `{"type":"ping","ping_event":{"event_id":${id}}}  →  {"type":"pong","event_id":${got}}  ` +
		    `(${conv.pongT[pongBase + i] - t1} ms)`);
	}

	// 11 -------------------------------------------------------- goodbye
	header(11, 'Goodbye: the agent says goodbye and ends the call (end_call tool)');
	endExpected = true;
	s.markEchoDelayMs = 500;		// as if Twilio still played 0.5 s
	const bye = tone(523, 0.5);
	const twBye = s.mediaBytes;
	const byeSent = await conv.sendAudio(bye, { chunkBytes: FRAME });
	res.framesOut += byeSent.chunks;
	const tEnd = Date.now();
	// When naiberd's close frame arrives (the 'close' event waits for TCP).
	let closeFrameT = null;
	const cfPoll = setInterval(() => {
		if (closeFrameT === null && conv.ws._closeFrameReceived === true) closeFrameT = Date.now();
		if (closeFrameT !== null || conv.closeInfo) clearInterval(cfPoll);
	}, 2);
	await conv.sendEndCall();
	const rel = (t) => `+${t - tEnd} ms`;
	detail('agent', `0.5 s of goodbye audio (${byeSent.chunks} chunks), then agent_tool_response end_call`);
	const ci = await conv.waitClosed(5000);
	detail('ElevenLabs', `WebSocket closed by naiberd: ${ci.code} ${ci.reason ? q(ci.reason) : ''}  (close frame ${closeFrameT ? rel(closeFrameT) : '?'}, TCP ${rel(ci.t)})`);
	const mk = await waitFor(() => s.marks[0], 6000, 'the goodbye mark at Twilio', 5);
	const byeBefore = (mk.mediaBytes - twBye) / FRAME;
	detail('Twilio', `got ${JSON.stringify(mk.raw)}  (${rel(mk.t)}, after all ${byeBefore} goodbye frames)`);
	const echo = await waitFor(() => s.echoes[0], 3000, 'the mark echo', 5);
	detail('Twilio', `plays the last 0.5 s, then echoes mark ${q(echo.name)}  (${rel(echo.t)})`);
	const up = await tw.waitFor(() => tw.updates().find((x) => x.callSid === callSid && x.answer), 6000,
	    'the REST hang-up at the simulated Twilio');
	detail('Twilio', `POST ${up.path.replace(callSid, callSid.slice(0, 10) + '…')}  ${kv(Object.fromEntries(
	    Object.entries(up.form).map(([k, v]) => [k, v.join(',')])))} → ${up.answer.status}  (${rel(up.t)})`);
	const sc = await withTimeout(s.closed, 5000, 'naiberd to close the Media Stream');
	detail('Twilio', `Media Stream closed by naiberd: ${sc.code}${sc.reason ? ' ' + q(sc.reason) : ''}  (${rel(s.closedT)})`);
	const dur = Math.max(1, Math.round((Date.now() - s.t0Open) / 1000)) || 1;
	const cb = await twilioWebhook(d, '/status-callback', statusParams(callSid, 'completed', 3,
	    { AccountSid: ACCOUNT_SID, CallDuration: String(dur), Duration: '1' }), { token: AUTH_TOKEN, twilioUrl: PUBLIC });
	detail('Twilio', `POST /status-callback CallStatus=completed (signed) → ${cb.status}`);
	await showLog(d, new RegExp(`call ${callSid} status completed`), { since });

	// 12 ------------------------------------------------------- clean-up
	header(12, 'The session keys are deleted');
	await waitFor(async () => (await redisCall(redis.port, 'EXISTS', sk, uk, pk)) === 0, 8000,
	    'the session keys to be deleted', 50);
	for (const k of [sk, uk, pk]) detail('Redis', `${k}  ${ok('gone')}`);
	const ck = [`call:${callSid}`, `call_type:${callSid}`];
	await waitFor(async () => (await redisCall(redis.port, 'EXISTS', ...ck)) === 0, 3000,
	    'the call context to be deleted after the completed status callback', 50);
	detail('Redis', `${ck.join(', ')}  ${ok('gone')} (the completed status callback)`);

	// 13 ----------------------------------------------------- post-call job
	header(13, 'The post-call job reaches the BullMQ Worker (after its 3 s delay)');
	await showLog(d, new RegExp(`post-call job \\S+`), { since, timeoutMs: 8000 });
	const job = await st.bull.waitEvent((e) => e.event === 'process' && e.data?.conversationId === convId,
	    15000, 'the BullMQ Worker to receive the post-call job');
	detail('BullMQ', `job ${job.id} ${q(job.name)} on queue post-call-processing, processed ${job.delta} ms after it was added`);
	detail('data', JSON.stringify(job.data));
	detail('opts', JSON.stringify({ attempts: job.opts.attempts, backoff: job.opts.backoff, delay: job.opts.delay,
	    removeOnComplete: job.opts.removeOnComplete, removeOnFail: job.opts.removeOnFail }));
	await st.bull.waitEvent((e) => e.event === 'completed' && e.id === job.id, 5000, 'the job to complete');
	detail('BullMQ', ok(`job ${job.id} completed`));

	// 14 -------------------------------------------------------- summary
	header(14, 'The supervisor\'s summary line for the call');
	const done = await logLine(d, new RegExp(`worker \\d+ call ${callSid} done: `), { since, timeoutMs: 8000 });
	detail('naiberd', fmtLog(done));
	const m = /frames_in=(\d+) frames_out=(\d+) dropped=(\d+)/.exec(done);
	if (m) {
		const agree = Number(m[1]) === res.framesIn && Number(m[2]) === res.framesOut && Number(m[3]) === res.stale;
		detail('', (agree ? ok('matches') : yellow('differs from')) + ` what the simulated peers counted: ` +
		    `${res.framesIn} caller frames in, ${res.framesOut} agent frames out, ${res.stale} stale agent chunks dropped`);
	}
	return res;
}

// ------------------------------------------------------------ shutdown

let ending = null;

/* Stop everything, in order, each bounded; returns problems found. */
async function stopAll(quiet = false) {
	const problems = [];
	const say = (label, text) => { if (!quiet) detailT(label, text, write); };
	const step = async (what, fn) => {
		try {
			return await withTimeout(Promise.resolve().then(fn), 20000, `stopping ${what}`);
		} catch (e) {
			problems.push(`${what}: ${e.message}`);
			return null;
		}
	};
	if (st.stream && st.stream.ws.readyState !== 3) st.stream.terminate();
	if (st.bull) {
		const r = await step('the BullMQ Worker', () => st.bull.stop());
		if (r) say('BullMQ', `Worker exited (${r.signal ?? `status ${r.code}`})`);
	}
	if (st.d) {
		const d = st.d;
		for (const w of [...d.logMatches(/\bworker\[(\d+)\]|\bworker (\d+)\b/)])
			d.workerPids.add(Number(w[1] ?? w[2]));
		for (const c of d.children()) d.workerPids.add(c);
		await step('naiberd', () => d.stop(5000));
		const ei = d.exitInfo ?? {};
		say('naiberd', `SIGTERM → exited (${ei.signal ?? `status ${ei.code}`}); ` +
		    `workers seen during the run: ${d.workerPids.size}`);
		for (const w of d.workerPids) st.pids.push(['naiberd worker', w]);
		const bye = d.log.split('\n').filter((l) => /shutting down|exiting|drain/i.test(l)).slice(-1)[0];
		if (bye && !quiet) detail('naiberd', fmtLog(bye), write);
	}
	if (st.el) await step('the simulated ElevenLabs', () => st.el.close());
	if (st.tw) await step('the simulated Twilio', () => st.tw.close());
	if (st.el || st.tw) say('peers', 'simulated ElevenLabs and Twilio closed');
	if (st.redis) {
		const rd = st.redis;
		await step('redis-server', async () => {
			if (!rd.exitInfo) {
				try { rd.proc.kill('SIGTERM'); } catch { /* gone */ }
				await Promise.race([rd.exited, sleep(3000)]);
			}
			await rd.stop();
		});
		say('Redis', `redis-server exited (${rd.exitInfo?.signal ?? `status ${rd.exitInfo?.code}`})`);
	}
	if (st.pg) {
		await step('PostgreSQL', () => st.pg.stop());
		say('PostgreSQL', 'stopped (pg_ctl stop), data directory removed');
	}
	for (const dir of st.dirs) {
		try { fs.rmSync(dir, { recursive: true, force: true }); } catch (e) { problems.push(`rm ${dir}: ${e.message}`); }
	}
	return problems;
}

/* Nothing of ours may be left: processes, ports, directories. */
async function verifyNothingLeft() {
	const problems = [];
	// Processes exit a moment after their sockets close; wait a little.
	await waitFor(() => ourChildren().length === 0 && st.pids.every(([, p]) => !pidAlive(p)) &&
	    st.ports.every(([, p]) => !listeningPorts().has(p)), 5000, 'everything to be gone', 50).catch(() => {});
	for (const c of ourChildren()) problems.push(`child process ${c} still running: ${procOf(c)}`);
	for (const [what, pid] of st.pids) if (pidAlive(pid)) problems.push(`${what} (pid ${pid}) still running: ${procOf(pid)}`);
	const lp = listeningPorts();
	for (const [what, port] of st.ports) if (lp.has(port)) problems.push(`port ${port} (${what}) still listening`);
	for (const dir of st.dirs) if (fs.existsSync(dir)) problems.push(`temporary directory ${dir} still there`);
	return problems;
}

async function shutdown(code, { quiet = false } = {}) {
	ending ??= (async () => {
		if (!quiet) write(`${dim(stamp())}  ${bold(cyan(' ·'))}  ${bold('Stopping everything this demo started')}`);
		// Something still starting (Ctrl-C during setup): let it finish first.
		if (st.starting.size)
			await withTimeout(Promise.allSettled([...st.starting]), 30000, 'starts in progress').catch(() => {});
		const p1 = await stopAll(quiet);
		const p2 = await verifyNothingLeft();
		const problems = [...p1, ...p2];
		if (problems.length) {
			for (const p of problems) detail('left over', red(p), write);
			if (code === 0) code = 1;
		} else if (!quiet) {
			const np = st.pids.length;
			detailT('check', ok(`nothing left: no child processes, ${np} processes gone, ` +
			    `${st.ports.length} ports closed (${st.ports.map(([, p]) => p).join(' ')}), ` +
			    `${st.dirs.length} temporary directories removed`), write);
		}
		return code;
	})();
	return ending;
}

function recap(res, seconds) {
	out('');
	out(bold('What you just saw'));
	const items = [
		`POST /call (API token) made naiberd ask Twilio's REST API to dial ${PHONE}, and store the call's context and a fresh nonce in Redis.`,
		'While the phone rang, an idle worker loaded Margaret\'s profile from PostgreSQL and wrote her first message, so there is no silence when she answers.',
		'Twilio\'s signed webhook got TwiML pointing at the Media Stream; the signed stream presented the nonce, so naiberd knew it was a call it placed, and handed the socket to one worker process.',
		'That worker opened ElevenLabs over TLS with a signed URL, sent the system prompt built from her profile (User ID and Phone first) and the first message.',
		'Audio flowed both ways byte for byte; the live session sat in Redis; barge-in cleared Twilio\'s buffer; pings got pongs.',
		'The agent said goodbye: naiberd waited for the mark so the goodbye was heard, hung up by REST, closed both sockets, deleted the session keys and queued the post-call job, which a stock BullMQ Worker received 3 s later.',
	];
	for (const it of items) out(`  • ${it}`);
	out(`  ${dim(`call ${res.callSid}, conversation ${res.convId}; naiberd's log: ${path.relative(process.cwd(), LOG_FILE) || LOG_FILE}`)}`);
	out(`  ${dim(`demo run time ${seconds.toFixed(1)} s`)}`);
}

function lastLogLines(n) {
	const text = st.d ? st.d.log : '';
	if (!text) return '(naiberd was not started)';
	return text.split('\n').filter(Boolean).slice(-n).join('\n');
}

async function fail(e) {
	if (ending || muted) return;	// interrupted, or already failing
	muted = true;
	if (COLOR) process.stdout.write('\r\x1b[K');
	const where = current ? `step ${String(current.n).trim()} (${current.title})` : 'setup';
	write('');
	write(red(bold(`✗ The demo failed at ${where}:`)));
	write(red(`  ${e?.message ?? e}`));
	if (process.env.DEMO_DEBUG && e?.stack) write(dim(e.stack));
	write('');
	write(bold('Last 40 lines of naiberd\'s log') + dim(st.d ? `  (all of it: ${LOG_FILE})` : ''));
	write(lastLogLines(40).split('\n').map((l) => '  ' + l).join('\n'));
	write('');
	const code = await shutdown(1);
	process.exit(code || 1);
}

let interrupted = false;
function onSignal(sig) {
	if (interrupted) {
		// Second ^C: no more patience.
		for (const [, pid] of st.pids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
		process.exit(130);
	}
	interrupted = true;
	muted = true;
	if (COLOR) process.stdout.write('\r\x1b[K');
	write('');
	write(yellow(bold(`${sig}: stopping everything this demo started (press Ctrl-C again to kill at once)`)));
	shutdown(130).then((c) => process.exit(c === 130 ? 130 : c || 130));
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => onSignal(sig));
process.on('unhandledRejection', (e) => { fail(e); });

// ---------------------------------------------------------------- main

async function main() {
	out(bold('naiberd demo: one simulated phone call, end to end'));
	out(dim('Redis, PostgreSQL, Twilio, ElevenLabs and a BullMQ Worker all run here, on 127.0.0.1; no accounts needed.'));
	const watchdog = sleep(TOTAL_LIMIT_MS).then(() => {
		throw new Error(`the demo did not finish within ${TOTAL_LIMIT_MS / 1000} s`);
	});
	const run = (async () => {
		const person = await setup();
		return theCall(person);
	})();
	const res = await Promise.race([run, watchdog]);
	const code = await shutdown(0);
	const seconds = (Date.now() - T0) / 1000;
	if (code !== 0) {
		out(red(bold('✗ The call worked, but something was left running (see above).')));
		process.exit(code);
	}
	recap(res, seconds);
	process.exit(0);
}

main().catch(fail);
