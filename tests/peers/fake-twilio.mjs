#!/usr/bin/env node
// fake-twilio.mjs - a fake Twilio REST API (the part naiberd uses) on
// node:http, for integration tests and the demo.
//
//   import { startFakeTwilio } from '../peers/fake-twilio.mjs';
//   const tw = await startFakeTwilio({ accountSid, authToken });
//   // naiberd: TWILIO_API_BASE=tw.url
//   ...
//   await tw.close();
//
// Routes (docs/protocols.md 1.7, 1.8):
//   POST /2010-04-01/Accounts/:sid/Calls.json            create a call
//   POST /2010-04-01/Accounts/:sid/Calls/:CallSid.json   update a call
// Anything else is 404 {"code":20404}.  Every request is checked like
// Twilio would (HTTP Basic auth with the account SID and auth token, form
// body), and recorded in `requests` with its parsed form (a repeated key
// keeps all its values, in order) for the test to assert on.
//
// Create checks every field naiberd must send (To, From, Url,
// StatusCallback, StatusCallbackMethod=POST, StatusCallbackEvent x4:
// initiated ringing answered completed, Timeout=30); a wrong or missing
// one is 400 {"code":21205} naming the field, a To that is not E.164 is
// 400 {"code":21211}.  Expected values of From/Url/StatusCallback can be
// set in `expect` (startup option or at run time); unset, they need only
// be absolute http(s) URLs / an E.164 number.
//
// Knobs, settable at run time:
//   tw.mode = 'normal' | 'hang' | 'close'
//       hang: read the request, never answer (until close());
//       close: destroy the socket without an answer.
//   tw.failNext({status, code, message})   the next create fails so
//   tw.failNextWith(...)                   (alias)
//   tw.hangNext() / tw.closeNext()          only the next request
//   tw.delayNext(ms)                        answer the next one ms later
// Helpers: tw.creates() (recorded create requests), tw.updates(),
// tw.calls (Map sid -> resource), tw.waitFor(pred, ms), tw.reset().
//
// As a CLI: node fake-twilio.mjs [PORT]  (ACCOUNT SID and token from
// TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN), prints "fake-twilio listening
// on http://127.0.0.1:PORT" and logs each request on stderr.

import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

const E164 = /^\+[1-9][0-9]{1,14}$/;
const EVENTS = ['initiated', 'ringing', 'answered', 'completed'];

/* "Tue, 03 Mar 2026 10:14:02 +0000", as Twilio writes dates. */
export function rfc2822(d = new Date()) {
	const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
	const mons = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
	const p = (n) => String(n).padStart(2, '0');
	return `${days[d.getUTCDay()]}, ${p(d.getUTCDate())} ${mons[d.getUTCMonth()]} ` +
	    `${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:` +
	    `${p(d.getUTCSeconds())} +0000`;
}

/* "(555) 867-5309" for +1 numbers, the number itself otherwise. */
function formatted(n) {
	const m = /^\+1(\d{3})(\d{3})(\d{4})$/.exec(n ?? '');
	return m ? `(${m[1]}) ${m[2]}-${m[3]}` : n;
}

/* Parse a form body; every key maps to the array of its values. */
export function parseForm(text) {
	const form = Object.create(null);
	for (const [k, v] of new URLSearchParams(text)) (form[k] ??= []).push(v);
	return form;
}

function isHttpUrl(s) {
	try {
		const u = new URL(s);
		return u.protocol === 'https:' || u.protocol === 'http:';
	} catch {
		return false;
	}
}

function twilioError(status, code, message) {
	return { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status };
}

export async function startFakeTwilio({ accountSid = 'AC00000000000000000000000000000000',
    authToken, mode = 'normal', port = 0, host = '127.0.0.1', expect = {}, log = null } = {}) {
	if (!authToken) throw new Error('startFakeTwilio: authToken required');
	const tw = {
		accountSid, authToken, mode, expect: { ...expect },
		requests: [], calls: new Map(), port: 0, url: '',
	};
	const oneShot = [];		// per-request overrides, consumed in order
	const waiters = new Set();
	const sockets = new Set();
	const hung = new Set();		// responses never answered

	const poke = () => { for (const w of waiters) w(); };

	const reply = (res, status, obj) => {
		const body = JSON.stringify(obj);
		res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8',
		    'Content-Length': Buffer.byteLength(body) });
		res.end(body);
	};

	const authOk = (req) => {
		const h = req.headers.authorization ?? '';
		const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(h);
		if (!m) return false;
		return Buffer.from(m[1], 'base64').toString('utf8') === `${accountSid}:${authToken}`;
	};

	/* The first problem with a create form, or null. */
	const checkCreate = (f) => {
		const one = (k) => (f[k] && f[k].length === 1) ? f[k][0] : undefined;
		const bad = (field, why) => ({ field, why });
		if (one('To') === undefined) return bad('To', 'To is required (exactly once)');
		if (!E164.test(one('To')))
			return { status: 400, code: 21211, message: `The 'To' number ${one('To')} is not a valid phone number.` };
		const from = one('From');
		if (from === undefined) return bad('From', 'From is required (exactly once)');
		if (tw.expect.from !== undefined ? from !== tw.expect.from : !E164.test(from))
			return bad('From', `From ${from} is not the expected number`);
		const url = one('Url');
		if (url === undefined) return bad('Url', 'Url is required (exactly once)');
		if (!isHttpUrl(url) || (tw.expect.url !== undefined && url !== tw.expect.url))
			return bad('Url', `Url ${url} is not the expected TwiML URL`);
		if (f.Twiml !== undefined || f.ApplicationSid !== undefined)
			return bad('Twiml', 'only one of Url, Twiml, ApplicationSid may be given');
		const cb = one('StatusCallback');
		if (cb === undefined || !isHttpUrl(cb) ||
		    (tw.expect.statusCallback !== undefined && cb !== tw.expect.statusCallback))
			return bad('StatusCallback', `StatusCallback ${cb} is not the expected URL`);
		if (one('StatusCallbackMethod') !== 'POST')
			return bad('StatusCallbackMethod', 'StatusCallbackMethod must be POST');
		const ev = f.StatusCallbackEvent ?? [];
		if (ev.length !== EVENTS.length || [...ev].sort().join() !== [...EVENTS].sort().join())
			return bad('StatusCallbackEvent', `StatusCallbackEvent must be given once each for ` +
			    `${EVENTS.join(', ')}; got [${ev.join(', ')}]`);
		if (one('Timeout') !== '30')
			return bad('Timeout', `Timeout must be 30, got ${f.Timeout}`);
		return null;
	};

	const resource = (sid, f, status) => {
		const now = rfc2822();
		return {
			sid, account_sid: accountSid, parent_call_sid: null,
			to: f.To[0], to_formatted: formatted(f.To[0]),
			from: f.From[0], from_formatted: formatted(f.From[0]),
			phone_number_sid: 'PN' + randomBytes(16).toString('hex'),
			status, start_time: null, end_time: null, duration: null,
			price: null, price_unit: 'USD', direction: 'outbound-api',
			answered_by: null, api_version: '2010-04-01', forwarded_from: null,
			group_sid: null, caller_name: null, queue_time: '0', trunk_sid: null,
			date_created: now, date_updated: now,
			uri: `/2010-04-01/Accounts/${accountSid}/Calls/${sid}.json`,
			subresource_uris: {
				notifications: `/2010-04-01/Accounts/${accountSid}/Calls/${sid}/Notifications.json`,
				recordings: `/2010-04-01/Accounts/${accountSid}/Calls/${sid}/Recordings.json`,
			},
		};
	};

	const handle = (req, res, body) => {
		const u = new URL(req.url, 'http://fake-twilio');
		const rec = {
			t: Date.now(), method: req.method, path: u.pathname, query: u.search,
			headers: req.headers, body, form: parseForm(body), kind: 'other',
			answer: null,
		};
		const mCreate = /^\/2010-04-01\/Accounts\/([^/]+)\/Calls\.json$/.exec(u.pathname);
		const mUpdate = /^\/2010-04-01\/Accounts\/([^/]+)\/Calls\/([^/]+)\.json$/.exec(u.pathname);
		if (mCreate) rec.kind = 'create';
		else if (mUpdate) rec.kind = 'update', rec.callSid = mUpdate[2];
		tw.requests.push(rec);
		log?.(`${req.method} ${u.pathname} ${body}`);

		const send = (status, obj) => {
			rec.answer = { status, body: obj };
			reply(res, status, obj);
			poke();
		};

		// A forced failure waits for a create; hang/close take any request.
		const oi = oneShot.findIndex((o) => !o.fail || rec.kind === 'create');
		const over = oi >= 0 ? oneShot.splice(oi, 1)[0] : null;
		const m = over?.mode ?? tw.mode;
		if (m === 'hang') {
			rec.answer = { hung: true };
			hung.add(res);
			res.on('close', () => hung.delete(res));
			poke();
			return;
		}
		if (m === 'delay') {
			rec.answer = { delayed: over.ms };
			poke();
			const t = setTimeout(() => answer(req, res, rec, mCreate, mUpdate, u, null, send), over.ms);
			res.on('close', () => clearTimeout(t));
			return;
		}
		if (m === 'close') {
			rec.answer = { closed: true };
			req.socket.destroy();
			poke();
			return;
		}
		answer(req, res, rec, mCreate, mUpdate, u, over, send);
	};

	/* The normal answer to a recorded request. */
	const answer = (req, res, rec, mCreate, mUpdate, u, over, send) => {
		if (!mCreate && !mUpdate)
			return send(404, twilioError(404, 20404, `The requested resource ${u.pathname} was not found`));
		if (req.method !== 'POST')
			return send(405, twilioError(405, 20004, 'Method not allowed'));
		const sid = (mCreate ?? mUpdate)[1];
		if (sid !== accountSid || !authOk(req))
			return send(401, twilioError(401, 20003, 'Authenticate'));
		if (!/^application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] ?? ''))
			return send(400, twilioError(400, 21205, 'Content-Type must be application/x-www-form-urlencoded'));
		if (over?.fail) {
			const f = over.fail;
			return send(f.status ?? 400, twilioError(f.status ?? 400, f.code ?? 21211,
			    f.message ?? 'Forced failure'));
		}
		const f = rec.form;
		if (mCreate) {
			const p = checkCreate(f);
			if (p && p.code) return send(p.status, twilioError(p.status, p.code, p.message));
			if (p) return send(400, twilioError(400, 21205, `Invalid parameter ${p.field}: ${p.why}`));
			const callSid = 'CA' + randomBytes(16).toString('hex');
			const r = resource(callSid, f, 'queued');
			tw.calls.set(callSid, { resource: r, form: f, updates: [] });
			rec.callSid = callSid;
			return send(201, r);
		}
		const call = tw.calls.get(mUpdate[2]);
		if (!call)
			return send(404, twilioError(404, 20404, `The requested resource ${u.pathname} was not found`));
		if (f.Status !== undefined) {
			const st = f.Status[0];
			if (st !== 'completed' && st !== 'canceled')
				return send(400, twilioError(400, 21205, `Invalid parameter Status: ${st}`));
			call.resource = { ...call.resource, status: st, date_updated: rfc2822() };
		} else if (f.Twiml !== undefined) {
			if (f.Twiml[0].length > 4000)
				return send(400, twilioError(400, 21205, 'Twiml is longer than 4000 characters'));
			call.twiml = f.Twiml[0];
			call.resource = { ...call.resource, date_updated: rfc2822() };
		} else if (f.Url === undefined) {
			return send(400, twilioError(400, 21205, 'Invalid parameter: nothing to update'));
		}
		call.updates.push(f);
		return send(200, call.resource);
	};

	const server = http.createServer((req, res) => {
		const chunks = [];
		req.on('data', (c) => chunks.push(c));
		req.on('end', () => {
			try {
				handle(req, res, Buffer.concat(chunks).toString('utf8'));
			} catch (e) {
				reply(res, 500, twilioError(500, 20500, `fake-twilio: ${e.message}`));
			}
		});
	});
	server.on('connection', (s) => {
		sockets.add(s);
		s.on('close', () => sockets.delete(s));
	});
	await new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(port, host, () => { server.off('error', reject); resolve(); });
	});
	tw.server = server;
	tw.port = server.address().port;
	tw.url = `http://${host}:${tw.port}`;

	tw.failNext = (fail = {}) => { oneShot.push({ fail }); };
	tw.failNextWith = tw.failNext;
	tw.hangNext = () => { oneShot.push({ mode: 'hang' }); };
	tw.closeNext = () => { oneShot.push({ mode: 'close' }); };
	tw.delayNext = (ms) => { oneShot.push({ mode: 'delay', ms }); };
	tw.creates = () => tw.requests.filter((r) => r.kind === 'create');
	tw.updates = () => tw.requests.filter((r) => r.kind === 'update');
	tw.reset = () => { tw.requests.length = 0; oneShot.length = 0; tw.mode = 'normal'; };

	/* Resolve with pred(tw)'s truthy value; reject after ms. */
	tw.waitFor = (pred, ms = 5000, what = 'fake-twilio condition') => new Promise((resolve, reject) => {
		const check = () => {
			let v;
			try { v = pred(tw); } catch (e) { done(); reject(e); return; }
			if (v) { done(); resolve(v); }
		};
		const timer = setTimeout(() => { done(); reject(new Error(`timeout after ${ms} ms: ${what}`)); }, ms);
		const done = () => { clearTimeout(timer); waiters.delete(check); };
		waiters.add(check);
		check();
	});

	let closing = null;
	tw.close = () => {
		closing ??= new Promise((resolve) => {
			for (const r of hung) r.destroy();
			server.close(() => resolve());
			for (const s of sockets) s.destroy();
		});
		return closing;
	};
	return tw;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
	const tw = await startFakeTwilio({
		accountSid: process.env.TWILIO_ACCOUNT_SID ?? 'AC00000000000000000000000000000000',
		authToken: process.env.TWILIO_AUTH_TOKEN ?? 'token',
		port: Number(process.argv[2] ?? 0),
		log: (s) => process.stderr.write(`fake-twilio: ${s}\n`),
	});
	process.stdout.write(`fake-twilio listening on ${tw.url}\n`);
	const stop = () => tw.close().then(() => process.exit(0));
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
}
