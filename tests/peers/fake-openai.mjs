#!/usr/bin/env node
// fake-openai.mjs - a fake OpenAI Chat Completions endpoint (the part
// naiberd uses for the first spoken message) on node:http, for the
// integration tests.  docs/protocols.md section 3.
//
//   import { startFakeOpenAI } from '../peers/fake-openai.mjs';
//   const oa = await startFakeOpenAI({ mode: 'ok' });
//   // naiberd: OPENAI_API_KEY=oa.apiKey OPENAI_BASE_URL=oa.baseUrl
//   ...
//   await oa.close();
//
// Route: POST /v1/chat/completions (so the base URL, which must include
// /v1, is oa.baseUrl = http://127.0.0.1:PORT/v1).  Anything else is 404
// (wrong method on the route: 405), in OpenAI's error shape
// {"error":{"message","type","param","code"}}.  Each request is checked
// like the real service would: `Authorization: Bearer <apiKey>` (else 401
// invalid_api_key), Content-Type application/json and a JSON body with a
// string `model`, a non-empty `messages` array whose first element is
// {"role":"system","content":<non-empty string>} and every element a
// {role, content} pair (else 400 invalid_request_error).  Problems are
// listed in the request record.
//
// Modes (option `mode`, settable at run time as oa.mode):
//   ok         200 with choices[0].message.content = oa.content
//   slow       the same answer, oa.delayMs (default 5000) later
//   status500  500 {"error":{... "type":"server_error"}} (x-should-retry
//              not sent: a client that retries may retry)
//   malformed  200 with a body that is not JSON
//   empty      200, content ""
//   blank      200, content "  \n " (only white space)
//   null       200, content null with a refusal (docs: treat as failure)
//   nochoices  200, "choices": []
//   hang       read the request, never answer (until close())
//
// oa.content defaults to a distinctive sentence with a random tag
// (oa.tag) so a test can tell the generated message from any template.
//
// Records: oa.requests, one per request: {t, method, path, headers, body
// (text), json (parsed or undefined), problems (array of strings; empty
// when the request is well formed), mode (the mode it was answered in),
// status (HTTP status sent, null while pending or if never answered),
// aborted (the client went away before the answer), answeredT}.
// Helpers: oa.completions() (the requests to the route), oa.waitFor(pred,
// ms, what), oa.reset().
//
// As a CLI: node fake-openai.mjs [PORT] [MODE]  (key from OPENAI_API_KEY,
// default "test").

import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

export const MODES = ['ok', 'slow', 'status500', 'malformed', 'empty', 'blank', 'null',
    'nochoices', 'hang'];

function errorBody(message, type, code = null, param = null) {
	return { error: { message, type, param, code } };
}

/* The problems with a chat-completions request body (empty: fine). */
export function checkCompletionRequest(json) {
	const p = [];
	const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
	if (!isObj(json)) return ['body is not a JSON object'];
	if (typeof json.model !== 'string' || json.model === '') p.push('model must be a non-empty string');
	if (!Array.isArray(json.messages) || json.messages.length === 0) {
		p.push('messages must be a non-empty array');
		return p;
	}
	json.messages.forEach((m, i) => {
		if (!isObj(m)) { p.push(`messages[${i}] is not an object`); return; }
		if (!['system', 'developer', 'user', 'assistant', 'tool'].includes(m.role))
			p.push(`messages[${i}].role ${JSON.stringify(m.role)} is not a role`);
		if (typeof m.content !== 'string' || m.content.trim() === '')
			p.push(`messages[${i}].content must be a non-empty string`);
	});
	if (isObj(json.messages[0]) && json.messages[0].role !== 'system')
		p.push(`messages[0].role must be "system", got ${JSON.stringify(json.messages[0].role)}`);
	if ('temperature' in json && (typeof json.temperature !== 'number' ||
	    json.temperature < 0 || json.temperature > 2))
		p.push('temperature must be a number in [0, 2]');
	if ('max_tokens' in json && (!Number.isInteger(json.max_tokens) || json.max_tokens < 1))
		p.push('max_tokens must be a positive integer');
	return p;
}

export async function startFakeOpenAI({ mode = 'ok', apiKey = 'test', content, delayMs = 5000,
    port = 0, host = '127.0.0.1', log = null } = {}) {
	if (!MODES.includes(mode)) throw new Error(`startFakeOpenAI: unknown mode ${mode}`);
	const tag = randomBytes(4).toString('hex');
	const oa = {
		mode, apiKey, delayMs, tag,
		content: content ?? `Hello there, this is the fake OpenAI greeting ${tag}. ` +
		    'How lovely to hear your voice today!',
		requests: [], port: 0, url: '', baseUrl: '',
	};
	const waiters = new Set();
	const sockets = new Set();
	const timers = new Set();
	const pending = new Set();	// responses not answered yet
	const poke = () => { for (const w of waiters) w(); };

	const send = (rec, res, status, body, { raw = false, headers = {} } = {}) => {
		if (res.writableEnded || res.destroyed) return;
		const text = raw ? body : JSON.stringify(body);
		res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length':
		    Buffer.byteLength(text), 'x-request-id': 'req_' + randomBytes(8).toString('hex'), ...headers });
		res.end(text);
		pending.delete(res);
		rec.status = status;
		rec.answeredT = Date.now();
		log?.(`-> ${status}`);
		poke();
	};

	const completion = (rec, c, refusal = null) => ({
		id: 'chatcmpl-' + randomBytes(12).toString('hex'), object: 'chat.completion',
		created: Math.floor(Date.now() / 1000), model: `${rec.json?.model ?? 'gpt-4o'}-2024-08-06`,
		system_fingerprint: 'fp_fake', service_tier: 'default',
		choices: [{ index: 0, finish_reason: 'stop', logprobs: null,
		    message: { role: 'assistant', content: c, refusal, annotations: [] } }],
		usage: { prompt_tokens: 212, completion_tokens: 31, total_tokens: 243,
		    prompt_tokens_details: { cached_tokens: 0 },
		    completion_tokens_details: { reasoning_tokens: 0 } },
	});

	const handle = (req, res, body) => {
		const u = new URL(req.url, 'http://fake-openai');
		const rec = { t: Date.now(), method: req.method, path: u.pathname, headers: req.headers,
		    body, json: undefined, problems: [], mode: oa.mode, status: null, aborted: false,
		    answeredT: null };
		oa.requests.push(rec);
		pending.add(res);
		res.on('close', () => {
			if (rec.status === null) { rec.aborted = true; poke(); }
			pending.delete(res);
		});
		log?.(`${req.method} ${u.pathname} ${body.slice(0, 200)}`);
		poke();
		if (u.pathname !== '/v1/chat/completions')
			return send(rec, res, 404, errorBody(`Unknown request URL: ${req.method} ${u.pathname}.`,
			    'invalid_request_error', 'unknown_url'));
		if (req.method !== 'POST')
			return send(rec, res, 405, errorBody(`Method ${req.method} not allowed.`,
			    'invalid_request_error', 'method_not_allowed'));
		const auth = req.headers.authorization ?? '';
		if (auth !== `Bearer ${oa.apiKey}`) {
			rec.problems.push(`Authorization is ${JSON.stringify(auth)}, not "Bearer <key>"`);
			return send(rec, res, 401, errorBody('Incorrect API key provided.',
			    'invalid_request_error', 'invalid_api_key'));
		}
		if (!/^application\/json\b/i.test(req.headers['content-type'] ?? ''))
			rec.problems.push(`Content-Type is ${JSON.stringify(req.headers['content-type'])}`);
		try { rec.json = JSON.parse(body); } catch { rec.problems.push('body is not JSON'); }
		if (rec.json !== undefined) rec.problems.push(...checkCompletionRequest(rec.json));
		if (rec.problems.length)
			return send(rec, res, 400, errorBody(rec.problems.join('; '), 'invalid_request_error'));
		switch (rec.mode) {
		case 'ok':
			return send(rec, res, 200, completion(rec, oa.content));
		case 'slow': {
			const ms = oa.delayMs;
			const tm = setTimeout(() => { timers.delete(tm); send(rec, res, 200, completion(rec, oa.content)); }, ms);
			timers.add(tm);
			return;
		}
		case 'status500':
			return send(rec, res, 500, errorBody('The server had an error while processing your request.',
			    'server_error'));
		case 'malformed':
			return send(rec, res, 200, '{"id":"chatcmpl-x","choices":[{"message":{"role":"assistant",' +
			    '"content":"Hello', { raw: true });
		case 'empty':
			return send(rec, res, 200, completion(rec, ''));
		case 'blank':
			return send(rec, res, 200, completion(rec, '  \n '));
		case 'null':
			return send(rec, res, 200, completion(rec, null, 'I cannot help with that.'));
		case 'nochoices':
			return send(rec, res, 200, { ...completion(rec, 'x'), choices: [] });
		case 'hang':
			return;
		default:
			return send(rec, res, 500, errorBody(`fake-openai: unknown mode ${rec.mode}`, 'server_error'));
		}
	};

	const server = http.createServer((req, res) => {
		const chunks = [];
		req.on('data', (c) => chunks.push(c));
		req.on('end', () => {
			try {
				handle(req, res, Buffer.concat(chunks).toString('utf8'));
			} catch (e) {
				if (!res.headersSent) {
					res.writeHead(500, { 'Content-Type': 'application/json' });
					res.end(JSON.stringify(errorBody(`fake-openai: ${e.message}`, 'server_error')));
				}
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
	oa.server = server;
	oa.port = server.address().port;
	oa.url = `http://${host}:${oa.port}`;
	oa.baseUrl = `${oa.url}/v1`;

	oa.completions = () => oa.requests.filter((r) => r.path === '/v1/chat/completions');
	oa.reset = () => { oa.requests.length = 0; };

	/* Resolve with pred(oa)'s truthy value; reject after ms. */
	oa.waitFor = (pred, ms = 5000, what = 'fake-openai condition') => new Promise((resolve, reject) => {
		const check = () => {
			let v;
			try { v = pred(oa); } catch (e) { done(); reject(e); return; }
			if (v) { done(); resolve(v); }
		};
		const timer = setTimeout(() => { done(); reject(new Error(`timeout after ${ms} ms: ${what}`)); }, ms);
		const done = () => { clearTimeout(timer); waiters.delete(check); };
		waiters.add(check);
		check();
	});

	let closing = null;
	oa.close = () => {
		closing ??= new Promise((resolve) => {
			for (const tm of timers) clearTimeout(tm);
			timers.clear();
			for (const r of pending) r.destroy();
			server.close(() => resolve());
			for (const s of sockets) s.destroy();
		});
		return closing;
	};
	return oa;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
	const oa = await startFakeOpenAI({
		apiKey: process.env.OPENAI_API_KEY ?? 'test',
		port: Number(process.argv[2] ?? 0),
		mode: process.argv[3] ?? 'ok',
		log: (s) => process.stderr.write(`fake-openai: ${s}\n`),
	});
	process.stdout.write(`fake-openai listening on ${oa.url} (OPENAI_BASE_URL=${oa.baseUrl})\n`);
	const stop = () => oa.close().then(() => process.exit(0));
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
}
