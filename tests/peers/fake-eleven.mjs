#!/usr/bin/env node
// fake-eleven.mjs - a fake ElevenLabs Conversational AI (Agents) server
// for integration tests and the demo, on node:https and the `ws` package,
// TLS only, with certificates from a throw-away test CA.
//
//   import { makeTestCA, startFakeEleven } from '../peers/fake-eleven.mjs';
//   const pki = makeTestCA(dir);		// openssl CLI; paths of PEM files
//   const el = await startFakeEleven({ apiKey: 'k', agentId: 'agent_x',
//       cert: pki.cert, key: pki.key });
//   // naiberd: ELEVENLABS_BASE_URL=el.url TLS_CA_FILE=pki.caCert ...
//   const conv = await el.nextConversation(10000);	// after a valid init
//   await conv.sendAudio(buf, { chunkBytes: 160 });
//   ...
//   await el.close();
//
// What it serves (docs/protocols.md section 2):
//   GET /v1/convai/conversation/get-signed-url?agent_id=ID
//       header xi-api-key must be the configured key, else 401
//       {"detail":{"status":"invalid_api_key","message":"Invalid API key"}};
//       no (or empty) agent_id is 422 {"detail":[{loc,msg,type}]}; an
//       agent other than `agentId` (when set) is 404.  200:
//       {"signed_url":"wss://HOST:PORT/v1/convai/conversation?agent_id=ID&token=T"}
//       with a fresh single-use token.  Every request is recorded.
//   GET /v1/convai/conversation/get_signed_url (deprecated underscore
//       path): 404, recorded, so a test can assert it was never used.
//   WebSocket /v1/convai/conversation?agent_id=ID&token=T
//       An unknown or reused token (or another agent's) is accepted at the
//       HTTP level, then closed 1008 after an `error` event.  The first
//       client message must be conversation_initiation_client_data; the
//       override object and the top-level fields are validated strictly
//       against section 2.3 (documented fields only, right types, no null
//       or empty strings, only overrides the agent allows); a violation
//       is an `error` event (error_type invalid_message / override_error)
//       then close 1008, before any metadata.  Then the server sends
//       conversation_initiation_metadata (conversation_id conv_<random>,
//       the configured formats) at once, after `metadataDelayMs`, or
//       when the test calls conv.sendMetadata() (metadata: 'manual').
//
// Per conversation (`conv`), recorded for assertions:
//   conv.init		the parsed init message (conv.initRaw: its text)
//   conv.messages	every client text message after the init {t, raw, json}
//   conv.audio		Buffers decoded from user_audio_chunk, in order
//   conv.audioBytes()	their concatenation
//   conv.audioBeforeMetadata	user_audio_chunk messages received before
//			the metadata was sent (the client must not send any)
//   conv.pongs		event_id of every pong, in order (conv.pongT: arrival times)
//   conv.pingLog		every ping sent {id, t, pingMs}
//   conv.pingFrames	payloads of RFC 6455 ping frames received (the ws
//			library answers them with pong frames itself)
//   conv.pongFrames	pong frames received (answers to conv.sendPingFrame())
//   conv.violations	every client message that breaks section 2 (not JSON,
//			binary frame, unknown message, pong without an integer
//			event_id, extra fields, non-canonical base64, odd-length
//			PCM16 chunk, a second init, ...); with strict (default)
//			the first one is answered like the real server: error
//			event + close 1008
//   conv.closeInfo	{code, reason, by: 'client'|'server'|'network', t}
//   conv.closed	promise of closeInfo
// and scripted from the test:
//   conv.sendMetadata(over)            (only needed with metadata: 'manual')
//   conv.sendAudio(buf, {chunkBytes, eventId, sameEventId, alignment})
//       -> {first, last, chunks}; event ids go up by one per chunk from
//       eventId (default: one past the last audio event id sent)
//   conv.sendPing(eventId?, pingMs?)   ping_ms null on the first ping
//   conv.startPings(intervalMs, count) / conv.stopPings()
//   conv.sendInterruption(eventId)
//   conv.sendEndCall(eventId?)         agent_tool_response, tool end_call
//   conv.sendUnknown(type?)            an event type the spec does not list
//   conv.sendIgnorable()               documented events a bridge ignores
//   conv.sendBadJson(text?)            a text frame that is not JSON
//   conv.sendBadBase64Audio(eventId?)  a valid audio event, bad base64
//   conv.sendJson(obj) / conv.sendRaw(text)
//   conv.sendPingFrame(data)           an RFC 6455 ping frame
//   conv.closeWith(code, {errorType, message, reason})  an error event
//       first for any code but 1000, then the close frame
//   conv.terminate()                   TCP reset, no close frame
//   conv.waitFor(pred, ms, what), conv.waitAudioBytes(n, ms),
//   conv.waitPongs(n, ms), conv.waitClosed(ms)
//
// Server knobs (options of startFakeEleven, also settable on `el` at run
// time): apiKey, agentId, formats {input, output} (default ulaw_8000 both),
// metadata 'auto' | 'manual', metadataDelayMs, pingIntervalMs (pings start
// after the metadata), allowedOverrides (array of dotted paths; default
// all documented), strict, signedUrlHost ('127.0.0.1'), signedUrlFail
// ({status, body} for every signed-URL request while set), wsCert/wsKey (serve the
// WebSocket on a second TLS port with this certificate: the signed URL
// then points there, so the WebSocket's TLS check is tested apart from
// the HTTP client's), onConversation(conv) (called after a valid init).
//
// Server records: el.requests (every HTTP request: {t, method, path,
// query, headers, status, body}), el.signedUrlRequests(), el.upgrades
// (every WebSocket upgrade request), el.tls (every TLS handshake:
// {t, port, servername, protocol}), el.tlsErrors (handshakes that failed,
// e.g. the client rejected the certificate: {t, port, code, message}),
// el.conversations (every WebSocket, valid init or not), el.tokens.
//
// Audio helpers for tests: ulawEncode / ulawDecode (ITU-T G.711 mu-law,
// the standard table), sinePcm16(freq, rate, seconds, amplitude).
//
// As a CLI: node fake-eleven.mjs [PORT]  (key and agent from
// ELEVENLABS_API_KEY / ELEVENLABS_AGENT_ID; a CA is made in a temp dir
// and its path printed), echoing caller audio back to the caller.

import https from 'node:https';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { WebSocketServer } = require('ws');

export const AUDIO_FORMATS = ['pcm_8000', 'pcm_16000', 'pcm_22050', 'pcm_24000',
    'pcm_44100', 'pcm_48000', 'ulaw_8000'];

/* Every override path section 2.3 documents, with its type. */
export const OVERRIDE_SCHEMA = {
	'agent.prompt.prompt': 'string',
	'agent.prompt.llm': 'string',
	'agent.prompt.native_mcp_server_ids': 'string[]',
	'agent.first_message': 'string',
	'agent.language': 'string',
	'tts.voice_id': 'string',
	'tts.speed': 'number',
	'tts.stability': 'number',
	'tts.similarity_boost': 'number',
	'asr.keywords': 'string[]',
	'conversation.text_only': 'boolean',
	'conversation.client_events': 'string[]',
};

const DEFAULT_ERROR_TYPE = {
	1002: 'llm_timeout', 1008: 'invalid_message', 1011: 'unknown_websocket_crash',
};
const DEFAULT_ERROR_MESSAGE = {
	1002: 'LLM did not answer in time', 1008: 'Invalid message',
	1011: 'Unknown websocket crash',
};

const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/* Canonical base64 (RFC 4648, padded) to bytes, or null. */
export function strictBase64(s) {
	if (typeof s !== 'string' || !B64_RE.test(s)) return null;
	return Buffer.from(s, 'base64');
}

// ------------------------------------------------------------- G.711 mu-law

const BIAS = 0x84, CLIP = 32635;

/* One 16-bit linear sample to a mu-law byte (G.711, with the bit inversion). */
export function linearToUlaw(sample) {
	let s = Math.max(-32768, Math.min(32767, Math.round(sample)));
	const sign = s < 0 ? 0x80 : 0;
	if (s < 0) s = -s;
	if (s > CLIP) s = CLIP;
	s += BIAS;
	let exp = 7;
	for (let mask = 0x4000; (s & mask) === 0 && exp > 0; mask >>= 1) exp--;
	const mant = (s >> (exp + 3)) & 0x0f;
	return (~(sign | (exp << 4) | mant)) & 0xff;
}

/* One mu-law byte to a 16-bit linear sample (range +-32124). */
export function ulawToLinear(u) {
	u = ~u & 0xff;
	const sign = u & 0x80, exp = (u >> 4) & 0x07, mant = u & 0x0f;
	const mag = (((mant << 3) + BIAS) << exp) - BIAS;
	return sign ? -mag : mag;
}

/* Int16Array (or array of numbers) -> Buffer of mu-law bytes. */
export function ulawEncode(samples) {
	const out = Buffer.alloc(samples.length);
	for (let i = 0; i < samples.length; i++) out[i] = linearToUlaw(samples[i]);
	return out;
}

/* Buffer of mu-law bytes -> Int16Array. */
export function ulawDecode(buf) {
	const out = new Int16Array(buf.length);
	for (let i = 0; i < buf.length; i++) out[i] = ulawToLinear(buf[i]);
	return out;
}

/* Int16Array -> Buffer of PCM16 little-endian, and back. */
export function pcm16le(samples) {
	const b = Buffer.alloc(samples.length * 2);
	for (let i = 0; i < samples.length; i++)
		b.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(samples[i]))), i * 2);
	return b;
}

export function fromPcm16le(buf) {
	const n = buf.length >> 1;
	const out = new Int16Array(n);
	for (let i = 0; i < n; i++) out[i] = buf.readInt16LE(i * 2);
	return out;
}

/* A sine of `seconds` at `rate` Hz; amplitude relative to full scale. */
export function sinePcm16(freq, rate, seconds, amplitude = 0.5, phase = 0) {
	const n = Math.round(rate * seconds);
	const out = new Int16Array(n);
	for (let i = 0; i < n; i++)
		out[i] = Math.round(amplitude * 32767 * Math.sin(2 * Math.PI * freq * i / rate + phase));
	return out;
}

// --------------------------------------------------------------- test PKI

function openssl(args, cwd) {
	const r = spawnSync('openssl', args, { cwd, encoding: 'utf8', timeout: 30000 });
	if (r.error) throw new Error(`openssl ${args.join(' ')}: ${r.error.message}`);
	if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
	return r.stdout;
}

function makeCA(dir, name, cn) {
	const key = path.join(dir, `${name}.key`), cert = path.join(dir, `${name}.pem`);
	openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
	    '-keyout', key, '-out', cert, '-days', '3', '-subj', `/O=naiberd tests/CN=${cn}`,
	    '-addext', 'basicConstraints=critical,CA:TRUE',
	    '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
	return { key, cert };
}

function makeLeaf(dir, name, ca, san, cn) {
	const key = path.join(dir, `${name}.key`), csr = path.join(dir, `${name}.csr`);
	const cert = path.join(dir, `${name}.pem`), ext = path.join(dir, `${name}.ext`);
	fs.writeFileSync(ext, `basicConstraints=critical,CA:FALSE\n` +
	    `keyUsage=critical,digitalSignature,keyEncipherment\n` +
	    `extendedKeyUsage=serverAuth\nsubjectAltName=${san}\n` +
	    `subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n`);
	openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
	    '-keyout', key, '-out', csr, '-subj', `/O=naiberd tests/CN=${cn}`], dir);
	openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key,
	    '-set_serial', '0x' + randomBytes(8).toString('hex'), '-days', '2',
	    '-out', cert, '-extfile', ext], dir);
	return { key, cert };
}

/*
 * A test CA and server certificates, made with the openssl CLI in dir:
 *   caCert, caKey          the CA naiberd trusts (TLS_CA_FILE)
 *   cert, key              server cert for IP 127.0.0.1 and DNS localhost, by that CA
 *   otherCaCert, otherCaKey   an unrelated CA
 *   otherCert, otherKey    the same names, signed by the unrelated CA ("wrong CA")
 *   wrongHostCert, wrongHostKey  by the right CA, but for DNS wrong.test and
 *                          IP 192.0.2.1 only (hostname verification)
 */
export function makeTestCA(dir) {
	fs.mkdirSync(dir, { recursive: true });
	const ca = makeCA(dir, 'ca', 'naiberd test CA');
	const other = makeCA(dir, 'other-ca', 'unrelated test CA');
	const good = makeLeaf(dir, 'server', ca, 'IP:127.0.0.1,DNS:localhost', '127.0.0.1');
	const bad = makeLeaf(dir, 'other-server', other, 'IP:127.0.0.1,DNS:localhost', '127.0.0.1');
	const wh = makeLeaf(dir, 'wrong-host', ca, 'DNS:wrong.test,IP:192.0.2.1', 'wrong.test');
	return {
		dir, caCert: ca.cert, caKey: ca.key, cert: good.cert, key: good.key,
		otherCaCert: other.cert, otherCaKey: other.key, otherCert: bad.cert, otherKey: bad.key,
		wrongHostCert: wh.cert, wrongHostKey: wh.key,
	};
}

// ------------------------------------------------------------- validation

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/* Problems with a conversation_config_override object (empty: valid). */
function checkOverride(ov, allowed) {
	const errs = [];
	if (!isObj(ov)) return ['conversation_config_override must be an object'];
	const walk = (o, prefix) => {
		for (const [k, v] of Object.entries(o)) {
			const p = prefix ? `${prefix}.${k}` : k;
			const type = OVERRIDE_SCHEMA[p];
			if (type === undefined) {
				const isBranch = Object.keys(OVERRIDE_SCHEMA).some((s) => s.startsWith(p + '.'));
				if (isBranch && isObj(v)) { walk(v, p); continue; }
				errs.push(`override ${p} is not a documented override field`);
				continue;
			}
			if (v === null) { errs.push(`override ${p} is null (omit it instead)`); continue; }
			if (type === 'string' && (typeof v !== 'string' || v === '')) {
				errs.push(`override ${p} must be a non-empty string, got ${JSON.stringify(v)}`);
				continue;
			}
			if (type === 'number' && (typeof v !== 'number' || !Number.isFinite(v))) {
				errs.push(`override ${p} must be a number`);
				continue;
			}
			if (type === 'boolean' && typeof v !== 'boolean') {
				errs.push(`override ${p} must be a boolean`);
				continue;
			}
			if (type === 'string[]' && (!Array.isArray(v) ||
			    v.some((x) => typeof x !== 'string' || x === ''))) {
				errs.push(`override ${p} must be an array of non-empty strings`);
				continue;
			}
			if (!allowed.has(p)) errs.push(`override for ${p} is not allowed by this agent`);
		}
	};
	walk(ov, '');
	return errs;
}

/* Problems with a conversation_initiation_client_data message. */
function checkInit(m, allowed) {
	const errs = { invalid: [], override: [] };
	for (const [k, v] of Object.entries(m)) {
		switch (k) {
		case 'type':
			break;
		case 'conversation_config_override':
			errs.override.push(...checkOverride(v, allowed));
			break;
		case 'custom_llm_extra_body':
			if (!isObj(v)) errs.invalid.push('custom_llm_extra_body must be an object');
			break;
		case 'dynamic_variables':
			if (!isObj(v)) { errs.invalid.push('dynamic_variables must be an object'); break; }
			for (const [n, x] of Object.entries(v)) {
				if (n.startsWith('system__')) errs.invalid.push(`dynamic variable ${n}: system__ names are reserved`);
				if (!['string', 'number', 'boolean'].includes(typeof x))
					errs.invalid.push(`dynamic variable ${n} must be a string, number or boolean`);
			}
			break;
		case 'user_id':
			if (typeof v !== 'string' || v === '') errs.invalid.push('user_id must be a non-empty string');
			break;
		case 'source_info':
			if (!isObj(v) || Object.entries(v).some(([a, b]) =>
			    !['source', 'version'].includes(a) || typeof b !== 'string'))
				errs.invalid.push('source_info must be {source, version} strings');
			break;
		default:
			errs.invalid.push(`unknown field ${k} in conversation_initiation_client_data`);
		}
	}
	return errs;
}

/* The first problem with a client message after the init, or null. */
function checkClientMessage(m, conv) {
	if (!isObj(m)) return 'message is not a JSON object';
	if (!('type' in m)) {
		if (!('user_audio_chunk' in m)) return 'message has neither type nor user_audio_chunk';
		const extra = Object.keys(m).filter((k) => k !== 'user_audio_chunk');
		if (extra.length) return `user_audio_chunk message has extra fields: ${extra.join(', ')}`;
		const b = strictBase64(m.user_audio_chunk);
		if (b === null) return 'user_audio_chunk is not canonical base64';
		if (conv.inputFormat.startsWith('pcm_') && b.length % 2)
			return `user_audio_chunk of ${b.length} bytes: PCM16 needs an even length`;
		return null;
	}
	const keys = (...allowed) => {
		const extra = Object.keys(m).filter((k) => !allowed.includes(k));
		return extra.length ? `${m.type} message has extra fields: ${extra.join(', ')}` : null;
	};
	switch (m.type) {
	case 'pong':
		if (!Number.isInteger(m.event_id)) return 'pong without an integer event_id';
		return keys('type', 'event_id');
	case 'contextual_update':
		if (typeof m.text !== 'string') return 'contextual_update without text';
		return keys('type', 'text', 'context_id');
	case 'user_message':
		if (typeof m.text !== 'string') return 'user_message without text';
		return keys('type', 'text');
	case 'user_activity':
		return keys('type');
	case 'client_tool_result':
		if (typeof m.tool_call_id !== 'string' || typeof m.result !== 'string')
			return 'client_tool_result needs tool_call_id and a string result';
		return keys('type', 'tool_call_id', 'result', 'is_error');
	case 'feedback':
		return keys('type', 'event_id', 'score');
	case 'conversation_initiation_client_data':
		return 'a second conversation_initiation_client_data';
	default:
		return `unknown client message type ${JSON.stringify(m.type)}`;
	}
}

// ------------------------------------------------------------------ server

function waitOn(list, pred, ms, what) {
	return new Promise((resolve, reject) => {
		const check = () => {
			let v;
			try { v = pred(); } catch (e) { done(); reject(e); return; }
			if (v) { done(); resolve(v); }
		};
		const timer = setTimeout(() => {
			done();
			reject(new Error(`timeout after ${ms} ms: ${what}`));
		}, ms);
		const done = () => { clearTimeout(timer); list.delete(check); };
		list.add(check);
		check();
	});
}

export async function startFakeEleven(opts = {}) {
	if (!opts.cert || !opts.key) throw new Error('startFakeEleven: cert and key (PEM paths) required');
	const el = {
		apiKey: opts.apiKey ?? 'test-xi-key',
		agentId: opts.agentId ?? null,
		formats: { input: 'ulaw_8000', output: 'ulaw_8000', ...(opts.formats ?? {}) },
		metadata: opts.metadata ?? 'auto',
		metadataDelayMs: opts.metadataDelayMs ?? 0,
		pingIntervalMs: opts.pingIntervalMs ?? 0,
		allowedOverrides: new Set(opts.allowedOverrides ?? Object.keys(OVERRIDE_SCHEMA)),
		strict: opts.strict ?? true,
		signedUrlHost: opts.signedUrlHost ?? '127.0.0.1',
		signedUrlFail: opts.signedUrlFail ?? null,
		onConversation: opts.onConversation ?? null,
		log: opts.log ?? null,
		requests: [], upgrades: [], tls: [], tlsErrors: [], conversations: [],
		tokens: new Map(),	// token -> {agentId, used}
		events: [],		// human-readable trace
		port: 0, wsPort: 0, url: '',
	};
	const host = opts.host ?? '127.0.0.1';
	const waiters = new Set();
	const poke = () => { for (const w of [...waiters]) w(); };
	const trace = (s) => {
		el.events.push(`${new Date().toISOString()} ${s}`);
		el.log?.(s);
	};
	const sockets = new Set();
	let convSeq = 0;

	const json = (res, status, obj) => {
		const body = JSON.stringify(obj);
		res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
		res.end(body);
	};

	const onRequest = (req, res) => {
		const chunks = [];
		req.on('data', (c) => chunks.push(c));
		req.on('end', () => {
			const u = new URL(req.url, 'https://fake-eleven');
			const rec = {
				t: Date.now(), method: req.method, path: u.pathname,
				query: Object.fromEntries(u.searchParams), rawQuery: u.search,
				headers: req.headers, servername: req.socket.servername ?? null,
				body: Buffer.concat(chunks).toString('utf8'), status: 0, answer: null,
			};
			el.requests.push(rec);
			const send = (status, obj) => {
				rec.status = status;
				rec.answer = obj;
				trace(`${req.method} ${req.url} -> ${status}`);
				json(res, status, obj);
				poke();
			};
			if (u.pathname === '/v1/convai/conversation/get-signed-url') {
				if (req.method !== 'GET')
					return send(405, { detail: 'Method Not Allowed' });
				if (req.headers['xi-api-key'] !== el.apiKey)
					return send(401, { detail: { status: 'invalid_api_key', message: 'Invalid API key' } });
				const agent = u.searchParams.get('agent_id');
				if (!agent)
					return send(422, { detail: [{ loc: ['query', 'agent_id'], msg: 'field required',
					    type: 'value_error.missing' }] });
				if (el.agentId !== null && agent !== el.agentId)
					return send(404, { detail: { status: 'agent_not_found',
					    message: `Agent ${agent} not found` } });
				if (el.signedUrlFail)
					return send(el.signedUrlFail.status ?? 500, el.signedUrlFail.body ??
					    { detail: { status: 'internal_error', message: 'Internal server error' } });
				const token = randomBytes(18).toString('base64url');
				el.tokens.set(token, { agentId: agent, used: false });
				const wsPort = el.wsPort || el.port;
				return send(200, { signed_url: `wss://${el.signedUrlHost}:${wsPort}` +
				    `/v1/convai/conversation?agent_id=${encodeURIComponent(agent)}&token=${token}` });
			}
			// The deprecated underscore path and everything else.
			return send(404, { detail: 'Not Found' });
		});
	};

	const servers = [];
	const makeServer = (cert, key, label) => {
		const srv = https.createServer({
			cert: fs.readFileSync(cert), key: fs.readFileSync(key),
			minVersion: 'TLSv1.2',
		}, onRequest);
		srv.on('connection', (s) => {
			sockets.add(s);
			s.on('close', () => sockets.delete(s));
		});
		srv.on('secureConnection', (s) => {
			el.tls.push({ t: Date.now(), server: label, servername: s.servername || null,
			    protocol: s.getProtocol() });
			poke();
		});
		srv.on('tlsClientError', (e) => {
			el.tlsErrors.push({ t: Date.now(), server: label, code: e.code ?? null, message: e.message });
			trace(`TLS handshake failed on ${label}: ${e.code ?? ''} ${e.message}`);
			poke();
		});
		const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024,
		    perMessageDeflate: false });
		srv.on('upgrade', (req, sock, head) => {
			const u = new URL(req.url, 'wss://fake-eleven');
			const up = { t: Date.now(), server: label, path: u.pathname,
			    query: Object.fromEntries(u.searchParams), headers: req.headers,
			    servername: sock.servername ?? null };
			el.upgrades.push(up);
			trace(`upgrade ${req.url}`);
			if (u.pathname !== '/v1/convai/conversation') {
				up.status = 404;
				sock.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
				poke();
				return;
			}
			wss.handleUpgrade(req, sock, head, (ws) => {
				up.status = 101;
				onConversationSocket(ws, req, u, up);
			});
		});
		servers.push({ srv, wss });
		return srv;
	};

	const listen = (srv, port) => new Promise((resolve, reject) => {
		srv.once('error', reject);
		srv.listen(port, host, () => { srv.off('error', reject); resolve(srv.address().port); });
	});

	// ---- one conversation
	const onConversationSocket = (ws, req, u, up) => {
		const conv = {
			n: ++convSeq, ws, upgrade: up, path: u.pathname, query: up.query,
			token: u.searchParams.get('token'), agentId: u.searchParams.get('agent_id'),
			id: null, state: 'await_init', init: null, initRaw: null, initErrors: null,
			messages: [], audio: [], audioT: [], audioBeforeMetadata: 0, pongs: [], pongT: [], pingLog: [], pingFrames: [], pongFrames: [],
			violations: [], sent: [], closeInfo: null, metadataSent: false, metadataT: null,
			inputFormat: el.formats.input, outputFormat: el.formats.output,
			nextAudioEventId: 1, nextPingEventId: 1, pingsSent: 0,
		};
		const cw = new Set();
		const cpoke = () => { for (const w of [...cw]) w(); poke(); };
		conv.waitFor = (pred, ms = 5000, what = 'conversation condition') =>
		    waitOn(cw, () => pred(conv), ms, `conversation ${conv.n}: ${what}`);
		el.conversations.push(conv);
		let serverClosing = false;
		let pingTimer = null;

		conv.closed = new Promise((resolve) => {
			ws.on('close', (code, reason) => {
				if (pingTimer) clearInterval(pingTimer);
				conv.closeInfo = { code, reason: reason.toString(), t: Date.now(),
				    by: serverClosing ? 'server' : code === 1006 ? 'network' : 'client' };
				conv.state = 'closed';
				trace(`conversation ${conv.n} closed ${code} by ${conv.closeInfo.by}`);
				resolve(conv.closeInfo);
				cpoke();
			});
		});
		conv.waitClosed = (ms = 5000) => conv.waitFor((c) => c.closeInfo, ms, 'socket closed');
		ws.on('error', (e) => trace(`conversation ${conv.n} socket error: ${e.message}`));
		ws.on('ping', (data) => { conv.pingFrames.push({ t: Date.now(), data: Buffer.from(data) }); cpoke(); });
		ws.on('pong', (data) => { conv.pongFrames.push({ t: Date.now(), data: Buffer.from(data) }); cpoke(); });
		/* An RFC 6455 ping frame; the client must answer with a pong frame. */
		conv.sendPingFrame = (data = Buffer.from('fake-eleven')) => ws.ping(data);

		const sendText = (text) => new Promise((resolve, reject) => {
			if (ws.readyState !== ws.OPEN)
				return reject(new Error(`conversation ${conv.n}: send on a socket in state ${ws.readyState}`));
			conv.sent.push({ t: Date.now(), raw: text });
			ws.send(text, (err) => err ? reject(err) : resolve());
		});
		conv.sendRaw = sendText;
		conv.sendJson = (obj) => sendText(JSON.stringify(obj));
		conv.closeWith = async (code = 1000, o = {}) => {
			if (ws.readyState !== ws.OPEN) return conv.closed;
			if (code !== 1000 && o.errorEvent !== false) {
				const ev = { code, error_type: o.errorType ?? DEFAULT_ERROR_TYPE[code] ?? 'error',
				    message: o.message ?? DEFAULT_ERROR_MESSAGE[code] ?? 'error' };
				if (o.reason !== undefined) ev.reason = o.reason;
				if (o.debugMessage !== undefined) ev.debug_message = o.debugMessage;
				await conv.sendJson({ type: 'error', error_event: ev }).catch(() => {});
			}
			serverClosing = true;
			ws.close(code, o.closeReason ?? (code === 1000 ? 'Conversation ended' : (o.message ??
			    DEFAULT_ERROR_MESSAGE[code] ?? 'error')).slice(0, 120));
			return conv.closed;
		};
		conv.terminate = () => { serverClosing = true; ws.terminate(); return conv.closed; };

		const reject1008 = (errorType, message) => {
			trace(`conversation ${conv.n} rejected: ${errorType}: ${message}`);
			conv.rejected = { errorType, message };
			conv.closeWith(1008, { errorType, message });
		};

		conv.sendMetadata = async (over = {}) => {
			if (conv.metadataSent) throw new Error('metadata already sent');
			conv.metadataSent = true;
			conv.id = over.conversation_id ?? ('conv_' + randomBytes(12).toString('hex'));
			if (over.user_input_audio_format !== undefined) conv.inputFormat = over.user_input_audio_format;
			if (over.agent_output_audio_format !== undefined) conv.outputFormat = over.agent_output_audio_format;
			const ev = { conversation_id: conv.id, agent_output_audio_format: conv.outputFormat,
			    user_input_audio_format: conv.inputFormat, ...over };
			conv.metadataT = Date.now();
			await conv.sendJson({ type: 'conversation_initiation_metadata',
			    conversation_initiation_metadata_event: ev });
			conv.state = 'active';
			if (el.pingIntervalMs > 0) conv.startPings(el.pingIntervalMs);
			cpoke();
			return conv.id;
		};

		conv.sendAudio = async (buf, o = {}) => {
			const chunkBytes = o.chunkBytes ?? 160;
			let id = o.eventId ?? conv.nextAudioEventId;
			const first = id;
			let last = id, chunks = 0, p;
			for (let off = 0; off < buf.length; off += chunkBytes) {
				const part = buf.subarray(off, Math.min(buf.length, off + chunkBytes));
				const ev = { audio_base_64: part.toString('base64'), event_id: id };
				if (o.alignment) ev.alignment = o.alignment;
				p = conv.sendJson({ type: 'audio', audio_event: ev });
				last = id;
				chunks++;
				if (!o.sameEventId) id++;
				if (chunks % 64 === 0) await p;
			}
			await p;
			conv.nextAudioEventId = Math.max(conv.nextAudioEventId, last + 1);
			return { first, last, chunks };
		};
		conv.sendPing = (eventId, pingMs) => {
			const id = eventId ?? conv.nextPingEventId;
			conv.nextPingEventId = Math.max(conv.nextPingEventId, id + 1);
			const ms = pingMs !== undefined ? pingMs : (conv.pingsSent === 0 ? null : 20 + (conv.pingsSent % 40));
			conv.pingsSent++;
			conv.pingLog.push({ id, t: Date.now(), pingMs: ms });
			return conv.sendJson({ type: 'ping', ping_event: { event_id: id, ping_ms: ms } }).then(() => id);
		};
		conv.startPings = (intervalMs, count = Infinity) => {
			conv.stopPings();
			let n = 0;
			pingTimer = setInterval(() => {
				if (ws.readyState !== ws.OPEN || n >= count) { conv.stopPings(); return; }
				n++;
				conv.sendPing().catch(() => {});
			}, intervalMs);
		};
		conv.stopPings = () => { if (pingTimer) clearInterval(pingTimer); pingTimer = null; };
		conv.sendInterruption = (eventId) => conv.sendJson({ type: 'interruption',
		    interruption_event: { event_id: eventId } });
		conv.sendEndCall = (eventId = conv.nextAudioEventId) => conv.sendJson({
			type: 'agent_tool_response',
			agent_tool_response: { tool_name: 'end_call', tool_call_id: 'end_call_' + randomBytes(6).toString('hex'),
			    tool_type: 'system', is_error: false, is_called: true, event_id: eventId },
		});
		conv.sendUnknown = (type = 'future_event_from_a_newer_server') => conv.sendJson({
			type, [`${type}_event`]: { event_id: 99999, note: 'a type this client has never seen' },
		});
		conv.sendIgnorable = async () => {
			const id = conv.nextAudioEventId;
			for (const m of [
				{ type: 'agent_response', agent_response_event: { agent_response: 'Hello there.', event_id: id } },
				{ type: 'user_transcript', user_transcription_event: { user_transcript: 'hi', event_id: id } },
				{ type: 'tentative_user_transcript', tentative_user_transcription_event: { user_transcript: 'h', event_id: id } },
				{ type: 'internal_tentative_agent_response', tentative_agent_response_internal_event: { tentative_agent_response: 'Hel' } },
				{ type: 'vad_score', vad_score_event: { vad_score: 0.42 } },
				{ type: 'agent_response_correction', agent_response_correction_event: {
				    original_agent_response: 'Hello there, how', corrected_agent_response: 'Hello there', event_id: id } },
				{ type: 'agent_tool_request', agent_tool_request: { tool_name: 'lookup', tool_call_id: 'tc_1',
				    tool_type: 'webhook', event_id: id } },
				{ type: 'agent_tool_response', agent_tool_response: { tool_name: 'lookup', tool_call_id: 'tc_1',
				    tool_type: 'webhook', is_error: false, is_called: true, event_id: id } },
				{ type: 'context_usage', context_usage_event: { used: 10 } },
			]) await conv.sendJson(m);
		};
		conv.sendBadJson = (text = '{"type":"audio","audio_event":{"audio_base_64":"AAAA",') => sendText(text);
		conv.sendBadBase64Audio = (eventId = conv.nextAudioEventId) => {
			conv.nextAudioEventId = Math.max(conv.nextAudioEventId, eventId + 1);
			return conv.sendJson({ type: 'audio', audio_event: { audio_base_64: '%%%not*base64!!', event_id: eventId } });
		};
		conv.audioBytes = () => Buffer.concat(conv.audio);
		conv.waitAudioBytes = (n, ms = 5000) => conv.waitFor((c) => c.audio.reduce((a, b) => a + b.length, 0) >= n,
		    ms, `${n} bytes of user audio (have ${conv.audio.reduce((a, b) => a + b.length, 0)})`);
		conv.waitPongs = (n, ms = 5000) => conv.waitFor((c) => c.pongs.length >= n, ms,
		    `${n} pongs (have ${conv.pongs.length})`);

		// Token check: issued, unused, same agent.
		const tok = conv.token && el.tokens.get(conv.token);
		if (!tok || tok.used || tok.agentId !== conv.agentId) {
			conv.tokenOk = false;
			reject1008('auth_error', !tok ? 'Invalid or missing token' :
			    tok.used ? 'Token already used' : 'Token issued for another agent');
			cpoke();
			return;
		}
		tok.used = true;
		conv.tokenOk = true;

		ws.on('message', (data, isBinary) => {
			const t = Date.now();
			if (isBinary) {
				conv.violations.push({ t, why: 'binary frame', raw: null });
				if (el.strict) reject1008('invalid_message', 'Binary frames are not supported');
				cpoke();
				return;
			}
			const raw = data.toString('utf8');
			let m;
			try { m = JSON.parse(raw); } catch { m = undefined; }
			if (conv.state === 'await_init') {
				conv.initRaw = raw;
				if (!isObj(m) || m.type !== 'conversation_initiation_client_data') {
					conv.violations.push({ t, why: 'first message is not conversation_initiation_client_data', raw });
					conv.state = 'rejected';
					reject1008('invalid_message', 'First message must be conversation_initiation_client_data');
					cpoke();
					return;
				}
				conv.init = m;
				const errs = checkInit(m, el.allowedOverrides);
				conv.initErrors = errs;
				if (errs.invalid.length || errs.override.length) {
					conv.state = 'rejected';
					if (errs.override.length) reject1008('override_error', errs.override.join('; '));
					else reject1008('invalid_message', errs.invalid.join('; '));
					cpoke();
					return;
				}
				conv.state = 'initiated';
				trace(`conversation ${conv.n} init ok`);
				try { el.onConversation?.(conv); } catch (e) { trace(`onConversation: ${e.message}`); }
				if (el.metadata === 'auto') {
					const go = () => {
						if (ws.readyState === ws.OPEN && !conv.metadataSent)
							conv.sendMetadata().catch(() => {});
					};
					if (el.metadataDelayMs > 0) setTimeout(go, el.metadataDelayMs);
					else go();
				}
				cpoke();
				return;
			}
			conv.messages.push({ t, raw, json: m });
			if (m === undefined) {
				conv.violations.push({ t, why: 'not JSON', raw });
				if (el.strict) reject1008('invalid_message', 'Message is not valid JSON');
				cpoke();
				return;
			}
			const why = checkClientMessage(m, conv);
			if (why) {
				conv.violations.push({ t, why, raw: raw.slice(0, 200) });
				if (el.strict && conv.state !== 'closed') reject1008('invalid_message', why);
				cpoke();
				return;
			}
			if ('user_audio_chunk' in m) {
				if (!conv.metadataSent) conv.audioBeforeMetadata++;
				conv.audio.push(strictBase64(m.user_audio_chunk));
				conv.audioT.push(t);
			} else if (m.type === 'pong') {
				conv.pongs.push(m.event_id);
				conv.pongT.push(t);
			}
			cpoke();
		});
		cpoke();
	};

	// ---- listen
	const main = makeServer(opts.cert, opts.key, 'api');
	el.port = await listen(main, opts.port ?? 0);
	if (opts.wsCert || opts.wsKey) {
		const wsSrv = makeServer(opts.wsCert ?? opts.cert, opts.wsKey ?? opts.key, 'ws');
		el.wsPort = await listen(wsSrv, opts.wsPort ?? 0);
	}
	el.url = `https://${host}:${el.port}`;

	el.signedUrlRequests = () => el.requests.filter((r) => r.path === '/v1/convai/conversation/get-signed-url');
	el.waitFor = (pred, ms = 5000, what = 'fake-eleven condition') => waitOn(waiters, () => pred(el), ms, what);
	/* The next conversation (in order of arrival) that passed its init. */
	let taken = 0;
	el.nextConversation = async (ms = 10000) => {
		const c = await el.waitFor(() => el.conversations.slice(taken).find((x) => x.init && !x.initErrors?.invalid.length &&
		    !x.initErrors?.override.length), ms, 'a conversation with a valid conversation_initiation_client_data');
		taken = el.conversations.indexOf(c) + 1;
		return c;
	};
	el.trace = () => el.events.join('\n');

	let closing = null;
	el.close = () => {
		closing ??= Promise.all(servers.map(({ srv, wss }) => new Promise((resolve) => {
			for (const c of wss.clients) c.terminate();
			wss.close();
			srv.close(() => resolve());
		}))).then(() => {});
		for (const c of el.conversations) c.stopPings?.();
		for (const s of sockets) s.destroy();
		return closing;
	};
	return el;
}

// --------------------------------------------------------------------- CLI

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-eleven-ca-'));
	const pki = makeTestCA(dir);
	const el = await startFakeEleven({
		cert: pki.cert, key: pki.key, port: Number(process.argv[2] ?? 0),
		apiKey: process.env.ELEVENLABS_API_KEY ?? 'test-xi-key',
		agentId: process.env.ELEVENLABS_AGENT_ID ?? null,
		log: (s) => process.stderr.write(`fake-eleven: ${s}\n`),
		onConversation: (conv) => {
			// Echo the caller back, one chunk per 20 ms of audio received.
			conv.ws.on('message', (d) => {
				try {
					const m = JSON.parse(d.toString());
					if (m.user_audio_chunk && conv.outputFormat === conv.inputFormat)
						conv.sendAudio(Buffer.from(m.user_audio_chunk, 'base64'), { chunkBytes: 1 << 20 }).catch(() => {});
				} catch { /* recorded as a violation */ }
			});
			conv.startPings(2000);
		},
	});
	process.stdout.write(`fake-eleven listening on ${el.url} (TLS_CA_FILE=${pki.caCert})\n`);
	const stop = () => el.close().then(() => { fs.rmSync(dir, { recursive: true, force: true }); process.exit(0); });
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
}
