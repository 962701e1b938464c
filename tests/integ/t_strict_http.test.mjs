// t_strict_http: HTTP and WebSocket handshakes as strict as RFC 9112 and
// RFC 6455 let a server be (issue 16, item 4).  The supervisor: a bare
// LF or obs-fold in the head, a folded, repeated or unknown
// Transfer-Encoding, one with Content-Length -> 400; an expectation
// other than 100-continue -> 417; a WebSocket upgrade over HTTP/1.0, with
// a repeated or non-base64 Sec-WebSocket-Key -> 400, with version 8 ->
// 426 and "Sec-WebSocket-Version: 13".  The worker, on an upgraded
// stream: a ping of 126 bytes or with FIN clear gets a close frame 1002
// (it used to drop the TCP connection without one), a text message over
// 64 KiB a close 1009; each is logged once.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { itest, startNaiberd, raw, rawConn, waitFor, withTimeout, twilio } from '../lib/harness.mjs';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const TW_MAX_MSG = 64 * 1024;		/* worker/twilio_ws.c */

/* One client frame (masked unless told), with the shortest length form. */
function frame(op, payload, { fin = true, mask = true } = {}) {
	const len = payload.length;
	let hdr;
	if (len < 126) {
		hdr = Buffer.from([0, len]);
	} else if (len < 65536) {
		hdr = Buffer.alloc(4);
		hdr[1] = 126;
		hdr.writeUInt16BE(len, 2);
	} else {
		hdr = Buffer.alloc(10);
		hdr[1] = 127;
		hdr.writeBigUInt64BE(BigInt(len), 2);
	}
	hdr[0] = (fin ? 0x80 : 0) | op;
	if (!mask)
		return Buffer.concat([hdr, payload]);
	hdr[1] |= 0x80;
	const key = randomBytes(4);
	const body = Buffer.from(payload);
	for (let i = 0; i < body.length; i++) body[i] ^= key[i & 3];
	return Buffer.concat([hdr, key, body]);
}

/* The whole server frames in buf: [{fin, op, masked, payload}]. */
function parseFrames(buf) {
	const out = [];
	let off = 0;
	while (buf.length - off >= 2) {
		const b0 = buf[off], b1 = buf[off + 1];
		let len = b1 & 0x7f, h = 2;
		if (len === 126) {
			if (buf.length - off < 4) break;
			len = buf.readUInt16BE(off + 2);
			h = 4;
		} else if (len === 127) {
			if (buf.length - off < 10) break;
			len = Number(buf.readBigUInt64BE(off + 2));
			h = 10;
		}
		if (b1 & 0x80) h += 4;
		if (buf.length - off < h + len) break;
		out.push({ fin: !!(b0 & 0x80), op: b0 & 0x0f, masked: !!(b1 & 0x80),
		    payload: buf.subarray(off + h, off + h + len) });
		off += h + len;
	}
	return out;
}

/* A signed upgrade of the shared stream URL over a raw socket, up to the 101. */
async function rawStream(d) {
	const sig = twilio.getExpectedTwilioSignature(d.authToken, d.streamUrl, {});
	const key = randomBytes(16).toString('base64');
	const c = rawConn(d.port);
	await c.connected;
	await c.write(`GET /outbound-media-stream HTTP/1.1\r\nHost: 127.0.0.1:${d.port}\r\n` +
	    'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
	    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
	    `X-Twilio-Signature: ${sig}\r\n\r\n`);
	await waitFor(() => c.data().includes('\r\n\r\n'), 5000, 'the upgrade answer');
	const end = c.data().indexOf('\r\n\r\n');
	const head = c.data().subarray(0, end).toString('latin1');
	assert.match(head, /^HTTP\/1\.1 101 /, head);
	const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
	assert.match(head, new RegExp(`\r\nSec-WebSocket-Accept: ${accept.replace(/[+/]/g, '\\$&')}(\r\n|$)`, 'i'));
	c.frames = () => parseFrames(c.data().subarray(end + 4));
	c.closeFrame = async (what) => {
		await waitFor(() => c.frames().some((f) => f.op === 8), 5000, `a close frame after ${what}`);
		const f = c.frames().find((x) => x.op === 8);
		assert.ok(!f.masked && f.fin, 'a server frame: unmasked, whole');
		assert.ok(f.payload.length >= 2, `the close frame carries a status (${f.payload.length} bytes)`);
		return f.payload.readUInt16BE(0);
	};
	return c;
}

function status(res) {
	return res.status ?? (res.closed ? 'closed' : 'timeout');
}

itest('strict HTTP/1.1 heads: bare LF, obs-fold, Transfer-Encoding, Expect', { timeout: 30000 }, async () => {
	const d = await startNaiberd({ workers: 1, maxCalls: 2 });
	const auth = `Authorization: Bearer ${d.apiToken}\r\n`;
	const cases = [
		['bare LF after the request line', 'GET /health HTTP/1.1\nHost: x\r\n\r\n', 400],
		['bare LF after a header', 'GET /health HTTP/1.1\r\nHost: x\nAccept: */*\r\n\r\n', 400],
		['bare LF ending the head', 'GET /health HTTP/1.1\r\nHost: x\r\n\n', 400],
		['bare LF everywhere', 'GET /health HTTP/1.1\nHost: x\n\n', 400],
		['bare CR', 'GET /health HTTP/1.1\r\nHost: x\ry\r\n\r\n', 400],
		['obs-fold', 'GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  b\r\n\r\n', 400],
		['obs-fold with HTAB', 'GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n', 400],
		['whitespace before the first header', 'GET /health HTTP/1.1\r\n Host: x\r\n\r\n', 400],
		['space before colon', 'GET /health HTTP/1.1\r\nHost : x\r\n\r\n', 400],
		['folded Transfer-Encoding', `POST /call HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding:\r\n chunked\r\n\r\n` +
		    '0\r\n\r\n', 400],
		['repeated Transfer-Encoding', `POST /call HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n` +
		    'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
		['Content-Length then Transfer-Encoding', `POST /call HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 5\r\n` +
		    'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
		['gzip, chunked', `POST /call HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 400],
		['chunked in HTTP/1.0', `POST /call HTTP/1.0\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
		['unknown expectation', 'POST /health HTTP/1.1\r\nHost: x\r\nExpect: 100-continue, fast\r\n' +
		    'Content-Length: 2\r\n\r\n{}', 417],
		['unknown expectation without a body', 'GET /health HTTP/1.1\r\nHost: x\r\nExpect: nothing\r\n\r\n', 417],
	];
	const bad = [];
	for (const [name, data, want] of cases) {
		const r = await raw(d.port, Buffer.from(data, 'latin1'), { responses: 1, timeoutMs: 5000 });
		if (status(r) !== want)
			bad.push(`${name}: want ${want}, got ${status(r)} ${JSON.stringify(r.text.slice(0, 80))}`);
		assert.ok(d.alive(), `supervisor alive after "${name}"`);
	}
	assert.deepEqual(bad, [], 'statuses');
	await d.waitLog(/bad request: bare LF/, 3000);
	await d.waitLog(/bad request: obs-fold/, 3000);
	// What stays accepted: CRLF heads, an empty line before the request
	// line (RFC 9112 2.2), chunked alone, Expect: 100-continue itself.
	const good = [
		'GET /health HTTP/1.1\r\nHost: x\r\n\r\n',
		'\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n',
		'GET /health HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n',
	];
	for (const g of good) {
		const r = await raw(d.port, g, { responses: 1 });
		assert.equal(r.responses.at(-1)?.status, 200, JSON.stringify(g));
	}
});

itest('Expect: 100-continue gets "100 Continue" before the body is sent',
    { timeout: 20000 }, async () => {
	const d = await startNaiberd({ workers: 1, maxCalls: 2 });
	const c = rawConn(d.port);
	await c.connected;
	await c.write('POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n');
	await waitFor(() => c.data().includes('\r\n\r\n'), 3000, 'an interim answer before the body');
	assert.match(c.data().toString('latin1'), /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
	await c.write('{}');
	await waitFor(() => /\r\n\r\nHTTP\/1\.1 405 /.test(c.data().toString('latin1')), 3000, 'the final answer');
	// HTTP/1.0 ignores the expectation (RFC 9110 10.1.1): no 100.
	const r = await raw(d.port, 'POST /health HTTP/1.0\r\nHost: x\r\nContent-Length: 2\r\n' +
	    'Expect: 100-continue\r\n\r\n{}', { responses: 1 });
	assert.equal(r.responses[0]?.status, 405, r.text.slice(0, 80));
});

itest('strict WebSocket handshake: HTTP/1.0, Sec-WebSocket-Key, Sec-WebSocket-Version', { timeout: 30000 }, async () => {
	const d = await startNaiberd({ workers: 1, maxCalls: 2 });
	const sig = twilio.getExpectedTwilioSignature(d.authToken, d.streamUrl, {});
	const key = randomBytes(16).toString('base64');
	const upg = ({ version = '1.1', keys = [key], ws = ['13'], extra = '' } = {}) =>
	    `GET /outbound-media-stream HTTP/${version}\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n` +
	    'Connection: Upgrade\r\n' + keys.map((k) => `Sec-WebSocket-Key: ${k}\r\n`).join('') +
	    ws.map((v) => `Sec-WebSocket-Version: ${v}\r\n`).join('') + extra +
	    `X-Twilio-Signature: ${sig}\r\n\r\n`;
	const cases = [
		['over HTTP/1.0', upg({ version: '1.0' }), 400],
		['Sec-WebSocket-Key twice', upg({ keys: [key, randomBytes(16).toString('base64')] }), 400],
		['the same Sec-WebSocket-Key twice', upg({ keys: [key, key] }), 400],
		['non-base64 Sec-WebSocket-Key', upg({ keys: ['not*base64*at*all!!!!==='.slice(0, 24)] }), 400],
		['Sec-WebSocket-Key of 18 bytes', upg({ keys: [randomBytes(18).toString('base64')] }), 400],
		['base64url Sec-WebSocket-Key', upg({ keys: ['-_-_-_-_-_-_-_-_-_-_-w=='] }), 400],
		['no Sec-WebSocket-Key', upg({ keys: [] }), 400],
		['Upgrade without websocket', upg().replace('Upgrade: websocket', 'Upgrade: h2c'), 400],
	];
	const bad = [];
	for (const [name, data, want] of cases) {
		const r = await raw(d.port, data, { responses: 1 });
		if (status(r) !== want)
			bad.push(`${name}: want ${want}, got ${status(r)} ${JSON.stringify(r.text.slice(0, 80))}`);
	}
	for (const [name, ws] of [['version 8', ['8']], ['version 13 twice', ['13', '13']], ['no version', []]]) {
		const r = await raw(d.port, upg({ ws }), { responses: 1 });
		if (status(r) !== 426 || r.responses[0].headers['sec-websocket-version'] !== '13')
			bad.push(`${name}: want 426 with Sec-WebSocket-Version: 13, got ${status(r)} ` +
			    JSON.stringify(r.text.slice(0, 200)));
	}
	assert.deepEqual(bad, [], 'statuses');
	// Upgrade and Connection repeated: one list each (RFC 9110 5.3).
	const ok = await raw(d.port, upg({ extra: 'Upgrade: h2c\r\nConnection: keep-alive\r\n' }), { responses: 1 });
	assert.equal(ok.status, 101, ok.text.slice(0, 120));
});

itest('a bad control frame gets a close 1002, a message over 64 KiB a close 1009, before the TCP close',
    { timeout: 40000 }, async () => {
	const d = await startNaiberd({ workers: 2, maxCalls: 4 });
	const cases = [
		['a ping of 126 bytes', frame(0x9, Buffer.alloc(126, 0x70)), 1002, /control frame over 125 bytes/],
		['a ping with FIN clear', frame(0x9, Buffer.from('ping'), { fin: false }), 1002, /fragmented control frame/],
		['a pong of 200 bytes', frame(0xa, Buffer.alloc(200, 0x71)), 1002, /control frame over 125 bytes/],
		['a text message of 64 KiB + 1', frame(0x1, Buffer.alloc(TW_MAX_MSG + 1, 0x61)), 1009, /message too big/],
	];
	for (const [what, bytes, code, why] of cases) {
		const mark = d.logMark();
		const c = await rawStream(d);
		// The longest allowed ping first: answered with its pong.
		const pl = randomBytes(125);
		await c.write(frame(0x9, pl));
		await waitFor(() => c.frames().some((f) => f.op === 0xa), 5000, 'the pong');
		assert.ok(c.frames().find((f) => f.op === 0xa).payload.equals(pl), 'the pong carries the ping');
		await c.write(bytes);
		assert.equal(await c.closeFrame(what), code, `${what}: close code`);
		const ended = await withTimeout(c.closed, 10000, `${what}: the TCP close`);
		const frames = parseFrames(ended.buf.subarray(ended.buf.indexOf('\r\n\r\n') + 4));
		assert.equal(frames.at(-1).op, 8, `${what}: the close frame is the last thing sent`);
		const re = new RegExp(`broke RFC 6455 \\(${why.source}\\): sent close ${code}`);
		await d.waitLog(re, 5000, mark);
		await d.waitLog(/call \S* ?done: reason=/, 10000, mark);
		assert.equal(d.logMatches(/WebSocket client broke RFC 6455 \(/, mark).length, 1, `${what}: logged once`);
	}
	assert.ok(d.alive(), 'supervisor alive');
	assert.ok(!/killed by signal/.test(d.log), 'no worker crashed');
});
