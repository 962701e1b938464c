// t_tls_ipv6: TLS to PostgreSQL and IPv6 on the listener (issue 15, item
// 4).  PostgreSQL runs with ssl=on and a pg_hba.conf of hostssl lines only
// (tests/lib/pg.sh PG_SSL_CERT), its certificate from a throw-away CA made
// with the openssl CLI (IP SAN 127.0.0.1, DNS SAN localhost); naiberd's
// DATABASE_URL asks sslmode=verify-full with sslrootcert.  The right CA:
// /ready is 200, the workers' connections are TLS (pg_stat_ssl), and a
// whole call loads the person, by IP and by host name.  An unrelated CA:
// /ready is 503 "PostgreSQL unavailable" and the log says the certificate
// failed verification, from /ready and from each worker, whose warm
// connection is retried on its health-check period, not in a loop.  Then
// `-l ::1` with TWILIO_URL / STREAM_URL / BASE_URL on https://[::1]:PORT:
// signed webhooks over that URL are accepted and anything else refused,
// and a whole call streams over ws://[::1]:PORT.  DESIGN.md sections 3, 5.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
	itest, apiGet, twilioWebhook, voiceParams, statusParams, parseXml, xmlFindAll, waitFor, withTimeout,
	freePort, http, sleep, RX, callStreamUrl,
} from '../lib/harness.mjs';
import { startPostgres } from '../lib/pg.mjs';
import { startStack, DEFAULT_PERSON, reEsc } from '../lib/stack.mjs';
import { makeTestCA } from '../peers/fake-eleven.mjs';

/* Why the IPv6 test cannot run here, or null: a listener on ::1. */
const noIPv6 = await new Promise((resolve) => {
	const s = net.createServer();
	s.once('error', (e) => resolve(`no IPv6 loopback on this machine (listen on ::1: ${e.code})`));
	s.listen(0, '::1', () => s.close(() => resolve(null)));
});

/* A throw-away CA and PostgreSQL with TLS only; stopped by the returned stop(). */
async function tlsPostgres() {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-pgtls-'));
	let pg = null;
	try {
		const pki = makeTestCA(dir);
		pg = await startPostgres({ ssl: { cert: pki.cert, key: pki.key } });
		const stop = async () => {
			await pg.stop();
			fs.rmSync(dir, { recursive: true, force: true });
		};
		return { pki, pg, stop };
	} catch (e) {
		if (pg) await pg.stop();
		fs.rmSync(dir, { recursive: true, force: true });
		throw e;
	}
}

const pgUrl = (host, port, caFile) =>
    `postgres://postgres@${host}:${port}/postgres?sslmode=verify-full&sslrootcert=${encodeURIComponent(caFile)}`;

/* psql with a connection URL; resolves {ok, out} (stderr when it failed). */
function psqlUrl(url, sql) {
	return new Promise((resolve) => {
		execFile('psql', ['-X', '-A', '-t', '-c', sql, url], { timeout: 15000, encoding: 'utf8',
		    env: { ...process.env, PGCONNECT_TIMEOUT: '5' } },
		(err, stdout, stderr) => resolve(err ? { ok: false, out: stderr } : { ok: true, out: stdout.trim() }));
	});
}

/* One call on instance d: placed, streamed, the person loaded, hung up. */
async function wholeCall(st, d = st.d) {
	const since = d.logMark();
	const call = await st.placeCall({ d });
	const s = await st.openStream(call, { d, since });
	assert.equal(s.elConv.init.user_id, DEFAULT_PERSON.id, 'the person reached ElevenLabs');
	await d.waitLog(new RegExp(`callSid=${reEsc(call.callSid)} profile loaded: user ${reEsc(DEFAULT_PERSON.id)}`),
	    5000, since);
	await s.sendMedia(10);
	await s.elConv.waitAudioBytes(1600, 5000);
	await s.sendStop();
	const m = await d.waitLog(new RegExp(`worker \\d+ call ${reEsc(call.callSid)} done: reason=(.+?) frames_in=(\\d+)`),
	    10000, since);
	assert.equal(m[1], 'stop');
	assert.equal(Number(m[2]), 10, 'frames_in');
	return { call, s, since };
}

itest('sslmode=verify-full, right CA: the server is TLS-only, /ready is 200, calls load the person by IP and by name',
    { timeout: 90000 }, async () => {
	const { pki, pg, stop } = await tlsPostgres();
	let st = null;
	try {
		// The server refuses a connection without TLS: the URLs below must use it.
		const plain = await psqlUrl(`${pg.url}?sslmode=disable`, 'SELECT 1');
		assert.equal(plain.ok, false, 'a plain connection is refused');
		assert.match(plain.out, /no pg_hba\.conf entry .*no encryption/);

		// IP SAN: 127.0.0.1.
		st = await startStack({ workers: 2, pg: { ...pg, url: pgUrl('127.0.0.1', pg.port, pki.caCert) },
		    ca: pki });
		const r = await apiGet(st.d, '/ready');
		assert.equal(r.status, 200, r.body);
		assert.equal(r.json?.status, 'ready');
		await wholeCall(st);
		// The workers' warm connections (application_name naiberd) are TLS.
		const rows = await waitFor(async () => {
			const out = await pg.psql("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) " +
			    "WHERE a.application_name = 'naiberd'");
			return out ? out.split('\n') : null;
		}, 5000, 'a naiberd connection in pg_stat_activity');
		assert.ok(rows.every((x) => x === 't'), `every naiberd connection is TLS: ${rows}`);
		assert.doesNotMatch(st.d.log, /warm connection: connect failed|profile: connect failed|ready: PostgreSQL/);

		// DNS SAN: localhost (the certificate names both).
		const d2 = await st.startInstance({ workers: 1,
		    env: { DATABASE_URL: pgUrl('localhost', pg.port, pki.caCert) } });
		const r2 = await apiGet(d2, '/ready');
		assert.equal(r2.status, 200, r2.body);
		await wholeCall(st, d2);
		assert.doesNotMatch(d2.log, /warm connection: connect failed|profile: connect failed|ready: PostgreSQL/);
	} finally {
		if (st) await withTimeout(st.stop(), 20000, 'stack stop').catch(() => {});
		await stop();
	}
});

itest('sslmode=verify-full, wrong CA: /ready is 503, the log names the certificate failure, workers do not spin',
    { timeout: 90000 }, async () => {
	const { pki, pg, stop } = await tlsPostgres();
	let st = null;
	try {
		const workers = 2;
		st = await startStack({ workers, waitReady: false, pg: { ...pg, url: pgUrl('127.0.0.1', pg.port, pki.otherCaCert) },
		    ca: pki });
		const d = st.d;
		await waitFor(async () => (await apiGet(d, '/sessions', { timeoutMs: 1000 })).status === 200,
		    10000, 'GET /sessions to answer 200 (naiberd connected to Redis)');

		// /ready: 503, and for the database (not Redis, capacity or workers).
		let last = null;
		await waitFor(async () => {
			last = await http(d.port, 'GET', '/ready', { host: d.host, timeoutMs: 5000 });
			return last.status === 503 && last.json?.error === 'PostgreSQL unavailable';
		}, 15000, '/ready 503 "PostgreSQL unavailable"', 200).catch((e) => {
			throw new Error(`${e.message}; last answer ${last?.status} ${last?.body}`);
		});

		// The supervisor says why /ready fails: libpq's reason, whole.
		const certFail = 'SSL error: certificate verify failed';
		const rl = await d.waitLog(/ready: PostgreSQL does not answer: ([^\n]*)/, 5000);
		assert.ok(rl[1].includes(certFail), `the /ready log line names the certificate failure: ${rl[0]}`);
		assert.match(rl[1], new RegExp(`127\\.0\\.0\\.1.*port ${pg.port}`), 'and the server');

		// Each worker: one warning naming the failure (then debug), its pid known.
		const warnRe = /worker\[(\d+)\][^\n]*profile: warm connection: connect failed: ([^\n]*)/;
		const warns = await d.waitLogCount(warnRe, workers, 10000);
		for (const w of warns)
			assert.ok(w[2].includes(certFail), `worker ${w[1]} names the certificate failure: ${w[0]}`);
		assert.equal(new Set(warns.map((w) => w[1])).size, warns.length, 'one warning per worker process');
		assert.match(pg.log(), /could not accept SSL connection: .*unknown ca/, 'the server saw the handshake fail');

		// No spinning: over a quiet window the workers stay the same processes
		// and the server sees at most a handful of handshakes.
		await d.waitLog(/warm-up: not all up within \d+ ms \(Redis up, PostgreSQL down\): ready anyway/, 10000);
		const handshakes = () => (pg.log().match(/could not accept SSL connection/g) ?? []).length;
		const kids0 = d.children();
		const n0 = handshakes(), mark = d.logMark();
		await sleep(3000);
		const n1 = handshakes();
		assert.ok(n1 - n0 <= workers, `${n1 - n0} TLS handshakes in 3 s with ${workers} idle workers`);
		assert.deepEqual(d.children(), kids0, 'no worker restarted');
		assert.equal(d.logMatches(/profile: warm connection: connect failed/, mark).length <= workers, true,
		    'no retry loop in the log');
		assert.ok(d.alive(), 'naiberd still runs');

		// Still 503 when asked again (the cached answer expires after 2 s).
		const again = await apiGet(d, '/ready');
		assert.equal(again.status, 503, again.body);
		assert.equal(again.json?.error, 'PostgreSQL unavailable');
	} finally {
		if (st) await withTimeout(st.stop(), 20000, 'stack stop').catch(() => {});
		await stop();
	}
});

itest('-l ::1 with public URLs on https://[::1]:PORT: signed webhooks and a whole call over IPv6',
    { timeout: 60000, skip: noIPv6 ?? false }, async () => {
	const port = await freePort();
	const pub = `https://[::1]:${port}`;
	const streamUrl = `wss://[::1]:${port}/outbound-media-stream`;
	const st = await startStack({ workers: 2, port, listen: '::1',
	    env: { TWILIO_URL: pub, BASE_URL: pub, STREAM_URL: streamUrl } });
	try {
		const { d, tw, redis } = st;
		assert.equal(d.host, '::1');
		assert.match(d.log, /listening on \[?::1\]?[ :]/, 'the supervisor says it listens on ::1');
		// Not on IPv4: the listener is ::1 only.
		const v4 = await http(port, 'GET', '/health', { host: '127.0.0.1', timeoutMs: 2000 }).catch((e) => e);
		assert.equal(v4.code, 'ECONNREFUSED', `127.0.0.1:${port} is not served: ${v4.status ?? v4.message}`);
		assert.equal((await apiGet(d, '/ready')).status, 200);

		// POST /call: Twilio is told the IPv6 URLs (the fake checks Url and StatusCallback).
		const call = await st.placeCall();
		const creates = tw.creates();
		assert.equal(creates.length, 1);
		assert.equal(creates[0].answer.status, 201, JSON.stringify(creates[0].answer));
		assert.deepEqual(creates[0].form.Url, [`${pub}/twiml`]);
		assert.deepEqual(creates[0].form.StatusCallback, [`${pub}/status-callback`]);

		// TwiML signed over https://[::1]:PORT/twiml: accepted, the Stream URL is STREAM_URL.
		const tr = await twilioWebhook(d, '/twiml', voiceParams(call.callSid));
		assert.equal(tr.status, 200, tr.body);
		const streams = xmlFindAll(parseXml(tr.body), 'Stream');
		assert.equal(streams.length, 1, tr.body);
		assert.equal(streams[0].attrs.url, callStreamUrl(streamUrl, d.authToken, call.callSid));
		const params = Object.fromEntries(xmlFindAll(streams[0], 'Parameter').map((p) => [p.attrs.name, p.attrs.value]));
		assert.equal(params.nonce, call.nonce);

		// Refused: a wrong signature, one over the IPv4 URL, one over another port.
		let mark = d.logMark();
		for (const o of [{ signature: 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=' }, { url: `https://127.0.0.1:${port}/twiml` },
		    { url: `https://[::1]:${port + 1}/twiml` }]) {
			const bad = await twilioWebhook(d, '/twiml', voiceParams(call.callSid), o);
			assert.equal(bad.status, 403, `${JSON.stringify(o)}: ${bad.status} ${bad.body}`);
		}
		await d.waitLogCount(RX.badSig, 3, 3000, mark);

		// The stream: ws://[::1]:PORT, signed over STREAM_URL; a wrong signature is 403.
		mark = d.logMark();
		const forged = d.stream({ callSid: call.callSid, signature: 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=' });
		await assert.rejects(forged.opened, (e) => e.status === 403);
		const otherHost = d.stream({ callSid: call.callSid,
		    streamUrl: `wss://127.0.0.1:${port}/outbound-media-stream` });
		await assert.rejects(otherHost.opened, (e) => e.status === 403);
		await d.waitLogCount(/stream upgrade refused: bad X-Twilio-Signature/, 2, 3000, mark);

		const since = d.logMark();
		const s = await st.openStream(call, { customParameters: params, since });
		assert.equal(s.elConv.init.user_id, DEFAULT_PERSON.id, 'the person reached ElevenLabs');
		await d.waitLog(new RegExp(`callSid=${reEsc(call.callSid)} profile loaded: user ${reEsc(DEFAULT_PERSON.id)}`),
		    5000, since);
		await s.sendMedia(20);
		await s.elConv.waitAudioBytes(3200, 5000);
		await s.sendStop();
		const done = await d.waitLog(new RegExp(`worker \\d+ call ${reEsc(call.callSid)} done: reason=(.+?) frames_in=(\\d+)`),
		    10000, since);
		assert.equal(done[1], 'stop');
		assert.equal(Number(done[2]), 20, 'frames_in');

		// Status callback signed over https://[::1]:PORT/status-callback: 204, the context is gone.
		assert.notEqual(await redis.call('GET', `call:${call.callSid}`), null, 'call context before the callback');
		const badCb = await twilioWebhook(d, '/status-callback', statusParams(call.callSid, 'completed', 3),
		    { url: `https://127.0.0.1:${port}/status-callback` });
		assert.equal(badCb.status, 403, badCb.body);
		assert.notEqual(await redis.call('GET', `call:${call.callSid}`), null, 'a refused callback changes nothing');
		const cb = await twilioWebhook(d, '/status-callback', statusParams(call.callSid, 'completed', 3));
		assert.equal(cb.status, 204, cb.body);
		await waitFor(async () => await redis.call('GET', `call:${call.callSid}`) === null, 3000,
		    'call context deleted after the final status');
	} finally {
		await withTimeout(st.stop(), 20000, 'stack stop').catch(() => {});
	}
});
