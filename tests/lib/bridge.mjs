// bridge.mjs - the glue of the audio bridge tests (t_bridge,
// t_bridge_formats, t_bridge_faults): one bound call on the stack of
// stack.mjs (fake ElevenLabs over TLS, fake Twilio REST, redis-server,
// PostgreSQL, naiberd), with a Twilio stream that records everything
// naiberd sends and echoes marks like Twilio.
//
//   import { btest, startBridge, openCall, conversationOf } from '../lib/bridge.mjs';
//   btest('x', { timeout: 40000 }, async (ctx) => {
//       const b = await startBridge(ctx, { el: { metadata: 'manual' } });
//       const s = await openCall(b);
//       const conv = await conversationOf(b, s);
//       ...
//   });
//
// Per test file: one test CA (PKI: naiberd trusts PKI.caCert; it also holds
// the wrong-CA and wrong-host certificates) and one PostgreSQL holding the
// person called (USER_ID, phone TEST_PHONE): no profile, no call (DESIGN
// section 6), stopped after the file's last test (or by its reaper if the
// process dies).  Everything else is the stack's, per test.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { itest, waitFor, hex, TEST_PHONE } from './harness.mjs';
import { prepareBoundStream } from './bind.mjs';
import { startPostgres } from './pg.mjs';
import { startStack, personSql, reEsc } from './stack.mjs';
import { makeTestCA, strictBase64 } from '../peers/fake-eleven.mjs';

const PKI_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-pki-'));
process.on('exit', () => fs.rmSync(PKI_DIR, { recursive: true, force: true }));
export const PKI = makeTestCA(PKI_DIR);
export const ACCOUNT_SID = 'AC00000000000000000000000000000000';
export const VOICE_ID = 'EXAVITQu4vr4xnSDxMaL';
export const USER_ID = 'u_' + hex(8);

/* The file's PostgreSQL, started (and the person inserted) on first use. */
let pgStarted = null;
function postgres() {
	pgStarted ??= (async () => {
		const pg = await startPostgres();
		await pg.psql(personSql({
			id: USER_ID, name: 'Margaret', age: 82, phone: TEST_PHONE, gender: 'FEMALE',
			interests: ['gardening', 'the radio'], dislikes: ['loud music'], isFirstCall: false,
		}));
		return pg;
	})();
	return pgStarted;
}
after(async () => {
	const pg = await pgStarted?.catch(() => null);
	await pg?.stop();
});

function dumpEleven(el) {
	const convs = el.conversations.map((c) => `conversation ${c.n} id=${c.id} state=${c.state} ` +
	    `init=${c.initRaw?.slice(0, 600)} violations=${JSON.stringify(c.violations)} ` +
	    `audio_chunks=${c.audio.length} pongs=${c.pongs.length} close=${JSON.stringify(c.closeInfo)}`);
	return `\n===== fake-eleven ${el.url} =====\n${el.trace()}\n${convs.join('\n')}\n` +
	    `tls errors: ${JSON.stringify(el.tlsErrors)}\n===== end of fake-eleven =====\n`;
}

/*
 * itest(); on failure the fake ElevenLabs servers are traced.  (The stack
 * closes them, with everything else, at the end of the test.)
 */
export function btest(name, opts, fn) {
	return itest(name, opts, async (t) => {
		const ctx = { t, fakes: [] };
		try {
			await fn(ctx);
		} catch (e) {
			for (const el of ctx.fakes) process.stderr.write(dumpEleven(el));
			throw e;
		}
	});
}

/*
 * fake ElevenLabs + fake Twilio REST + redis-server + PostgreSQL (the
 * file's) + naiberd, wired by startStack.  Returns the stack with apiKey
 * and agentId (fresh per test: naiberd's ELEVENLABS_API_KEY and
 * ELEVENLABS_AGENT_ID; the fake expects the same unless o.el says
 * otherwise) and authToken (Twilio's).
 * o.el: options of startFakeEleven (cert/key default to PKI's good ones);
 * o.env: extra naiberd environment (null deletes); o.workers (1).
 */
export async function startBridge(ctx, o = {}) {
	const apiKey = 'xi-' + hex(12);
	const agentId = 'agent_' + hex(6);
	const st = await startStack({
		pg: await postgres(), ca: PKI, person: false, workers: o.workers ?? 1, maxCalls: 10,
		eleven: { apiKey, agentId, ...(o.el ?? {}) },
		env: {
			ELEVENLABS_API_KEY: apiKey, ELEVENLABS_AGENT_ID: agentId, ELEVENLABS_VOICE_ID: VOICE_ID,
			TWILIO_ACCOUNT_SID: ACCOUNT_SID, ...(o.env ?? {}),
		},
	});
	ctx.fakes.push(st.el);
	return Object.assign(st, { apiKey, agentId, authToken: st.env.TWILIO_AUTH_TOKEN });
}

/*
 * A bound Twilio stream for a call the fake Twilio knows (so REST
 * Status=completed finds it).  Records every message from naiberd with
 * its arrival time in s.log, echoes marks like Twilio (s.echoMarks,
 * default true, after s.echoDelayMs as if audio were still playing;
 * s.echoes records {t, name} of each echo, t taken before sending), and
 * sends its own numbered media/stop/mark messages.
 */
export async function openCall(b, o = {}) {
	const { echoMarks = true, echoDelayMs = 0, ...rest } = o;
	const s = await prepareBoundStream(b.d, { redis: b.redis, ...rest });
	b.tw.calls.set(s.callSid, {
		resource: { sid: s.callSid, account_sid: ACCOUNT_SID, status: 'in-progress' },
		form: {}, updates: [],
	});
	s.log = [];
	s.echoMarks = echoMarks;
	s.echoDelayMs = echoDelayMs;
	s.echoes = [];
	s.closedT = null;
	s.closed.then(() => { s.closedT = Date.now(); });
	let seq = 1, chunk = 0;
	const next = () => String(++seq);
	s.echo = (name) => {
		s.echoes.push({ t: Date.now(), name });
		return s.send({ event: 'mark', sequenceNumber: next(), streamSid: s.streamSid, mark: { name } });
	};
	s.ws.on('message', (data, isBinary) => {
		const t = Date.now();
		let m;
		if (isBinary) m = { binary: true };
		else try { m = JSON.parse(data.toString()); } catch { m = { notJson: data.toString() }; }
		s.log.push({ t, m });
		if (m.event === 'mark' && s.echoMarks && typeof m.mark?.name === 'string') {
			const name = m.mark.name;
			if (s.echoDelayMs > 0) setTimeout(() => { if (s.isOpen()) s.echo(name).catch(() => {}); }, s.echoDelayMs);
			else s.echo(name).catch(() => {});
		}
	});
	s.media = (buf) => {
		chunk++;
		return s.send({ event: 'media', sequenceNumber: next(), streamSid: s.streamSid,
		    media: { track: 'inbound', chunk: String(chunk), timestamp: String(chunk * 20),
		    payload: buf.toString('base64') } });
	};
	s.mediaAll = async (bufs) => { for (const x of bufs) await s.media(x); };
	s.stop = () => s.send({ event: 'stop', sequenceNumber: next(), streamSid: s.streamSid,
	    stop: { accountSid: s.accountSid, callSid: s.callSid } });
	s.rawSend = (text) => s.send(text);
	s.nextSeq = next;
	s.mediaIn = () => s.log.filter((x) => x.m.event === 'media');
	s.mediaBytes = () => Buffer.concat(s.mediaIn().map((x) => Buffer.from(x.m.media.payload, 'base64')));
	s.waitMedia = (n, ms = 10000) => waitFor(() => s.mediaIn().length >= n, ms,
	    `${n} media messages at the Twilio side (have ${s.mediaIn().length})`, 10);
	s.waitMediaBytes = (n, ms = 10000) => waitFor(() => s.mediaBytes().length >= n, ms,
	    `${n} bytes of audio at the Twilio side (have ${s.mediaBytes().length})`, 20);
	s.since = b.d.logMark();
	await s.bind();
	return s;
}

/* Every message naiberd sent to Twilio has exactly the documented fields (section 1.3). */
export function assertTwilioShapes(s) {
	const keys = (o) => Object.keys(o ?? {}).sort().join(',');
	for (const [i, { m }] of s.log.entries()) {
		const where = `message ${i} to Twilio ${JSON.stringify(m).slice(0, 200)}`;
		assert.ok(!m.binary && m.notJson === undefined, `${where}: a JSON text frame`);
		assert.equal(m.streamSid, s.streamSid, `${where}: streamSid`);
		switch (m.event) {
		case 'media':
			assert.equal(keys(m), 'event,media,streamSid', `${where}: fields`);
			assert.equal(keys(m.media), 'payload', `${where}: media fields (no track, chunk, timestamp)`);
			assert.ok(strictBase64(m.media.payload)?.length > 0, `${where}: payload is non-empty canonical base64`);
			break;
		case 'mark':
			assert.equal(keys(m), 'event,mark,streamSid', `${where}: fields`);
			assert.equal(keys(m.mark), 'name', `${where}: mark fields`);
			assert.ok(typeof m.mark.name === 'string' && m.mark.name.length > 0, `${where}: mark name`);
			break;
		case 'clear':
			assert.equal(keys(m), 'event,streamSid', `${where}: fields`);
			break;
		default:
			assert.fail(`${where}: not one of media, mark, clear`);
		}
	}
}

/* The conversation of this call, once naiberd logged its metadata line. */
export async function conversationOf(b, s, { input = 'ulaw_8000', output = 'ulaw_8000', timeoutMs = 10000 } = {}) {
	const conv = await b.el.nextConversation(timeoutMs);
	await b.d.waitLog(new RegExp(`callSid=${s.callSid}[^\\n]*elevenlabs: conversation ${reEsc(conv.id)} ` +
	    `formats in=${input} out=${output}`), timeoutMs, s.since);
	return conv;
}

export function assertNoViolations(conv) {
	assert.deepEqual(conv.violations, [], 'every client message followed docs/protocols.md section 2');
	assert.equal(conv.audioBeforeMetadata, 0, 'no user_audio_chunk before conversation_initiation_metadata');
}

// ------------------------------------------------------------ audio patterns

/* Caller frame k: 160 mu-law bytes, the counter k in the first two. */
export function callerFrame(k) {
	const f = Buffer.alloc(160);
	f.writeUInt16BE(k, 0);
	for (let i = 2; i < 160; i++) f[i] = (k * 31 + i * 7) & 0xff;
	return f;
}

/* Agent chunk for event e: 160 bytes, 0xA5 then e in the next two (one argument: usable in map()). */
export function agentChunk(e) {
	const f = Buffer.alloc(160);
	f[0] = 0xa5;
	f.writeUInt16BE(e, 1);
	for (let i = 3; i < 160; i++) f[i] = (e * 13 + i * 3 + 0x11) & 0xff;
	return f;
}

export const agentIdOf = (buf) => (buf[0] === 0xa5 ? buf.readUInt16BE(1) : -1);
