#!/usr/bin/env node
// fake-dns.mjs - a small authoritative DNS server (RFC 1035 wire format)
// on node:dgram (UDP) and node:net (TCP, 2-byte length prefix, RFC 1035
// 4.2.2), no npm packages, for tests that point naiberd's resolver
// (libevent 2.1 evdns) at it through a resolv.conf.
//
//   import { startFakeDns } from '../peers/fake-dns.mjs';
//   const dns = await startFakeDns({ records: { 'redis.naiber.test': { a: ['127.0.0.1'] } } });
//   // naiberd: its resolv.conf setting = dns.resolvConf
//   dns.set('api.naiber.test', { a: ['127.0.0.1'], aaaa: ['::1'] });
//   dns.setMode('silent');
//   assert.ok(dns.queries.some((q) => q.name === 'api.naiber.test' && q.type === 'AAAA'));
//   await dns.close();
// (tests/lib/harness.mjs re-exports startFakeDns with close() tied to the
// test's cleanup scope.)
//
// startFakeDns(opts) options (all optional):
//   host        '127.0.0.1' (or '::1'); UDP and TCP listen on the same port
//   port        0: a free one
//   records     { name: rec } initial records (see set())
//   mode        'answer' (default) | 'silent' | 'servfail' | 'nxdomain-all' | 'refused'
//   ttl         5: TTL of answers and of the SOA (negative caching, RFC 2308)
//   delayMs     0: answer this much later (setDelay())
//   dir         where to write resolv.conf (default: a fresh temp dir,
//               removed by close())
//   resolvOptions  e.g. ['timeout:1', 'attempts:1']: adds an `options` line
//               (naiberd's common/dns.c sets timeout: and attempts: itself
//               after parsing, so they would be overridden there)
//   questionCase  'echo' (default: the question section of an answer is
//               the query's name byte for byte) | 'lower' (lower-cases it,
//               like resolvers that do not keep the case)
//
// Returns {
//   host, port, resolvConf (path), resolvConfText,
//   set(name, {a: [...], aaaa: [...], cname, ttl})  (re)define a name; a
//       name with no a/aaaa is NODATA for every type; cname is exclusive
//       with a/aaaa and is followed (within this server) like an
//       authoritative server does;  remove(name);  clear()
//   setMode(mode), setDelay(ms), setQuestionCase('echo'|'lower')
//   queries     every question received (also in silent mode), in order:
//       {name (as sent, case kept, no trailing dot), type ('A', 'AAAA',
//       'TYPE99'...), qtype, qclass, proto ('udp'|'tcp'), from, id, time}
//   waitQuery(pred, {timeoutMs = 5000, since = 0})  resolves with the
//       first query (from index since) matching pred (a function, or a
//       name compared case-insensitively)
//   resetQueries()
//   stats       {received, answered, dropped, malformed}
//   close()     idempotent
// }
//
// Behaviour:
//   - names are case-insensitive; the answer echoes the question section
//     exactly (evdns 2.1 with randomize-case:0 compares it with strcmp);
//     answer owner names are a compression pointer to it (0xC00C)
//   - known name: A / AAAA / ANY (both) answers, AA set, TTL `ttl`; other
//     types, or no record of the type: NOERROR, empty answer (NODATA) with
//     the SOA in the authority section
//   - unknown name: NXDOMAIN (rcode 3), AA set, SOA in authority
//   - class other than IN / ANY: REFUSED;  opcode other than QUERY:
//     NOTIMP;  QDCOUNT other than 1, or a malformed question or
//     additional section: FORMERR;  QR set (a response) or fewer than 12
//     bytes: dropped.  Compression pointers in queries are followed
//     (bounded: backwards only, 32 jumps, 255 bytes).  Nothing a peer
//     sends can throw out of the handlers.
//   - EDNS(0) (RFC 6891): a query's OPT is answered with an OPT (UDP
//     payload 1232, version 0); version > 0 gets BADVERS.  UDP answers
//     above the peer's limit (512, or its EDNS payload size up to 1232)
//     are sent truncated (TC, no records), as RFC 1035 4.2.1 says; TCP
//     answers are never truncated.
//   - 'servfail': rcode 2;  'nxdomain-all': NXDOMAIN for every name;
//     'refused': rcode 5;  'silent': queries are read and recorded but
//     never answered.
//   - naiberd's evdns may also send probes (A www.google.com) after
//     timeouts; they are answered like any name (NXDOMAIN, which evdns
//     counts as the server being up) and recorded in `queries`.

import dgram from 'node:dgram';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

export const TYPES = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28,
    SRV: 33, OPT: 41, ANY: 255 };
const TYPE_NAMES = Object.fromEntries(Object.entries(TYPES).map(([k, v]) => [v, k]));
export const typeName = (t) => TYPE_NAMES[t] ?? `TYPE${t}`;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };
const CLASS_IN = 1, CLASS_ANY = 255;
const MODES = new Set(['answer', 'silent', 'servfail', 'nxdomain-all', 'refused']);
const EDNS_PAYLOAD = 1232;

class ParseError extends Error {}

// ------------------------------------------------------------- names

/* Presentation form of one label: \. \\ and \DDD for what is not printable. */
function labelText(b) {
	let s = '';
	for (const c of b) {
		if (c === 0x2e || c === 0x5c) s += '\\' + String.fromCharCode(c);
		else if (c > 0x20 && c < 0x7f) s += String.fromCharCode(c);
		else s += '\\' + String(c).padStart(3, '0');
	}
	return s;
}

const namesText = (labels) => labels.length ? labels.map(labelText).join('.') : '.';

/* The lookup key of a name: ASCII letters lower-cased, no trailing dot. */
function nameKey(s) {
	let k = String(s).replace(/\.$/, '').replace(/[A-Z]/g, (c) => c.toLowerCase());
	return k === '' ? '.' : k;
}

/*
 * The name at buf[off]: {labels (Buffers), end (offset after it where it
 * started)}.  Follows compression pointers backwards only, 32 at most.
 */
function readName(buf, off) {
	const labels = [];
	let p = off, end = -1, jumps = 0, total = 1;
	for (;;) {
		if (p >= buf.length) throw new ParseError('name runs past the end');
		const len = buf[p];
		if ((len & 0xc0) === 0xc0) {
			if (p + 1 >= buf.length) throw new ParseError('truncated pointer');
			const ptr = ((len & 0x3f) << 8) | buf[p + 1];
			if (end < 0) end = p + 2;
			if (ptr >= p || ++jumps > 32) throw new ParseError('bad compression pointer');
			p = ptr;
			continue;
		}
		if (len & 0xc0) throw new ParseError('reserved label type');
		if (len === 0) {
			if (end < 0) end = p + 1;
			return { labels, end };
		}
		if (p + 1 + len > buf.length) throw new ParseError('label runs past the end');
		total += len + 1;
		if (total > 255) throw new ParseError('name longer than 255 bytes');
		labels.push(buf.subarray(p + 1, p + 1 + len));
		p += 1 + len;
	}
}

function encodeLabels(labels) {
	const parts = [];
	for (const l of labels) parts.push(Buffer.from([l.length]), l);
	parts.push(Buffer.from([0]));
	return Buffer.concat(parts);
}

/* A dotted text name (no escapes) to wire form; checks the limits. */
function encodeName(s) {
	const t = String(s).replace(/\.$/, '');
	const labels = t === '' ? [] : t.split('.').map((l) => Buffer.from(l, 'latin1'));
	for (const l of labels)
		if (l.length < 1 || l.length > 63) throw new Error(`bad DNS name ${JSON.stringify(s)}`);
	const w = encodeLabels(labels);
	if (w.length > 255) throw new Error(`DNS name too long: ${s}`);
	return w;
}

// --------------------------------------------------------- addresses

function ipv4Bytes(s) {
	if (net.isIPv4(s) !== true) throw new Error(`not an IPv4 address: ${s}`);
	return Buffer.from(s.split('.').map(Number));
}

function ipv6Bytes(s) {
	if (!net.isIPv6(s)) throw new Error(`not an IPv6 address: ${s}`);
	// A trailing dotted quad (::ffff:1.2.3.4) becomes two hex words.
	const str = s.replace(/%.*$/, '').replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/,
	    (_, a, b, c, d) => `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`);
	const words = (part) => part === '' ? [] : part.split(':').map((x) => parseInt(x, 16));
	let w;
	if (str.includes('::')) {
		const [head, tail] = str.split('::');
		const hw = words(head), tw = words(tail);
		w = [...hw, ...Array(8 - hw.length - tw.length).fill(0), ...tw];
	} else {
		w = words(str);
	}
	if (w.length !== 8 || w.some((x) => !(x >= 0 && x <= 0xffff))) throw new Error(`cannot parse IPv6 address ${s}`);
	const b = Buffer.alloc(16);
	w.forEach((x, i) => b.writeUInt16BE(x, i * 2));
	return b;
}

// ----------------------------------------------------------- messages

/* An RR; name is a wire-form Buffer. */
function rr(name, type, cls, ttl, rdata) {
	const h = Buffer.alloc(10);
	h.writeUInt16BE(type, 0);
	h.writeUInt16BE(cls, 2);
	h.writeUInt32BE(ttl >>> 0, 4);
	h.writeUInt16BE(rdata.length, 8);
	return Buffer.concat([name, h, rdata]);
}

/*
 * Parse a query.  null: drop it (too short, or a response).  Otherwise
 * {id, opcode, rd, cd, qdcount, question: {labels, qtype, qclass} | null,
 * edns: {payload, version} | null, error: rcode | 0}.
 */
function parseQuery(msg) {
	if (msg.length < 12) return null;
	const id = msg.readUInt16BE(0), flags = msg.readUInt16BE(2);
	if (flags & 0x8000) return null;
	const q = {
		id, opcode: (flags >> 11) & 0xf, rd: (flags >> 8) & 1, cd: (flags >> 4) & 1,
		qdcount: msg.readUInt16BE(4), question: null, edns: null, error: 0,
	};
	const an = msg.readUInt16BE(6), ns = msg.readUInt16BE(8), ar = msg.readUInt16BE(10);
	if (q.opcode !== 0) { q.error = RCODE.NOTIMP; return q; }
	if (q.qdcount !== 1) { q.error = RCODE.FORMERR; return q; }
	try {
		const { labels, end } = readName(msg, 12);
		if (end + 4 > msg.length) throw new ParseError('question runs past the end');
		q.question = { labels, qtype: msg.readUInt16BE(end), qclass: msg.readUInt16BE(end + 2) };
		let p = end + 4;
		for (let i = 0; i < an + ns + ar; i++) {
			const n = readName(msg, p);
			p = n.end;
			if (p + 10 > msg.length) throw new ParseError('RR runs past the end');
			const type = msg.readUInt16BE(p), cls = msg.readUInt16BE(p + 2);
			const ttl = msg.readUInt32BE(p + 4), rdlen = msg.readUInt16BE(p + 8);
			p += 10 + rdlen;
			if (p > msg.length) throw new ParseError('RDATA runs past the end');
			if (i >= an + ns && type === TYPES.OPT) {
				if (q.edns || n.labels.length) throw new ParseError('bad OPT record');
				q.edns = { payload: cls, version: (ttl >>> 16) & 0xff };
			}
		}
	} catch (e) {
		if (!(e instanceof ParseError)) throw e;
		q.error = RCODE.FORMERR;
	}
	return q;
}

function buildResponse(q, { rcode = 0, aa = false, answers = [], authority = [], qname = null,
    tc = false }) {
	const parts = [];
	const h = Buffer.alloc(12);
	h.writeUInt16BE(q.id, 0);
	const ext = rcode >> 4;
	const flags = 0x8000 | (q.opcode << 11) | (aa ? 0x0400 : 0) | (tc ? 0x0200 : 0) |
	    (q.rd << 8) | (q.cd << 4) | (rcode & 0xf);
	h.writeUInt16BE(flags, 2);
	const withQ = q.question && qname;
	h.writeUInt16BE(withQ ? 1 : 0, 4);
	h.writeUInt16BE(answers.length, 6);
	h.writeUInt16BE(authority.length, 8);
	h.writeUInt16BE(q.edns ? 1 : 0, 10);
	parts.push(h);
	if (withQ) {
		const t = Buffer.alloc(4);
		t.writeUInt16BE(q.question.qtype, 0);
		t.writeUInt16BE(q.question.qclass, 2);
		parts.push(qname, t);
	}
	parts.push(...answers, ...authority);
	if (q.edns) {
		// OPT: root owner, class = our UDP payload size, TTL = ext-rcode/version/flags.
		parts.push(rr(Buffer.from([0]), TYPES.OPT, EDNS_PAYLOAD, (ext & 0xff) << 24, Buffer.alloc(0)));
	}
	return Buffer.concat(parts);
}

// ------------------------------------------------------------- server

export async function startFakeDns(opts = {}) {
	const host = opts.host ?? '127.0.0.1';
	let mode = opts.mode ?? 'answer';
	let ttl = opts.ttl ?? 5;
	let delayMs = opts.delayMs ?? 0;
	let questionCase = opts.questionCase ?? 'echo';
	if (!MODES.has(mode)) throw new Error(`fake-dns: unknown mode ${mode}`);
	const records = new Map();	// key -> {a: [Buffer], aaaa: [Buffer], cname: Buffer|null, cnameKey, ttl}
	const queries = [];
	const stats = { received: 0, answered: 0, dropped: 0, malformed: 0 };
	const timers = new Set();
	const conns = new Set();
	const waiters = new Set();
	let closed = false;

	const soa = () => {
		const rd = Buffer.concat([encodeName('ns.fake-dns.test'), encodeName('hostmaster.fake-dns.test'),
		    Buffer.alloc(20)]);
		const o = rd.length - 20;
		rd.writeUInt32BE(1, o);		// serial
		rd.writeUInt32BE(3600, o + 4);	// refresh
		rd.writeUInt32BE(600, o + 8);	// retry
		rd.writeUInt32BE(86400, o + 12);	// expire
		rd.writeUInt32BE(ttl, o + 16);	// minimum: negative-caching TTL
		return rr(Buffer.from([0]), TYPES.SOA, CLASS_IN, ttl, rd);
	};

	const set = (name, rec = {}) => {
		const a = (rec.a ?? []).map(ipv4Bytes);
		const aaaa = (rec.aaaa ?? []).map(ipv6Bytes);
		if (rec.cname && (a.length || aaaa.length))
			throw new Error(`fake-dns: ${name}: a CNAME cannot have other records`);
		encodeName(name);
		records.set(nameKey(name), {
			a, aaaa, cname: rec.cname ? encodeName(rec.cname) : null,
			cnameKey: rec.cname ? nameKey(rec.cname) : null, ttl: rec.ttl,
		});
	};
	for (const [n, r] of Object.entries(opts.records ?? {})) set(n, r);

	/* The answer to a parsed query, or null (do not answer). */
	const answer = (q, proto) => {
		if (q.error) return buildResponse(q, { rcode: q.error });
		if (q.edns && q.edns.version > 0) return buildResponse(q, { rcode: 16 });	// BADVERS
		const { labels, qtype, qclass } = q.question;
		const qname = questionCase === 'lower'
		    ? encodeLabels(labels.map((l) => Buffer.from(l.toString('latin1').toLowerCase(), 'latin1')))
		    : encodeLabels(labels);
		if (mode === 'servfail') return buildResponse(q, { rcode: RCODE.SERVFAIL, qname });
		if (mode === 'refused') return buildResponse(q, { rcode: RCODE.REFUSED, qname });
		if (qclass !== CLASS_IN && qclass !== CLASS_ANY)
			return buildResponse(q, { rcode: RCODE.REFUSED, qname });
		if (mode === 'nxdomain-all')
			return buildResponse(q, { rcode: RCODE.NXDOMAIN, aa: true, qname, authority: [soa()] });
		const answers = [];
		let owner = Buffer.from([0xc0, 0x0c]);	// pointer to the question's name
		let key = nameKey(namesText(labels));
		let rec = records.get(key);
		for (let hops = 0; rec && rec.cname && qtype !== TYPES.CNAME && hops < 8; hops++) {
			answers.push(rr(owner, TYPES.CNAME, CLASS_IN, rec.ttl ?? ttl, rec.cname));
			owner = rec.cname;
			key = rec.cnameKey;
			rec = records.get(key);
		}
		if (!rec)
			return buildResponse(q, { rcode: RCODE.NXDOMAIN, aa: true, qname, answers, authority: [soa()] });
		const t = rec.ttl ?? ttl;
		if (qtype === TYPES.A || qtype === TYPES.ANY)
			for (const b of rec.a) answers.push(rr(owner, TYPES.A, CLASS_IN, t, b));
		if (qtype === TYPES.AAAA || qtype === TYPES.ANY)
			for (const b of rec.aaaa) answers.push(rr(owner, TYPES.AAAA, CLASS_IN, t, b));
		if (qtype === TYPES.CNAME && rec.cname)
			answers.push(rr(owner, TYPES.CNAME, CLASS_IN, t, rec.cname));
		const authority = answers.length ? [] : [soa()];
		let out = buildResponse(q, { aa: true, qname, answers, authority });
		if (proto === 'udp') {
			const limit = q.edns ? Math.max(512, Math.min(q.edns.payload, EDNS_PAYLOAD)) : 512;
			if (out.length > limit) out = buildResponse(q, { aa: true, qname, tc: true });
		}
		return out;
	};

	/* One message from a peer; reply(buf) sends an answer. */
	const handle = (msg, proto, from, reply) => {
		stats.received++;
		let q;
		try {
			q = parseQuery(msg);
		} catch {
			q = null;
		}
		if (!q) { stats.dropped++; return; }
		if (q.error) stats.malformed++;
		if (q.question) {
			const entry = {
				name: namesText(q.question.labels),
				type: typeName(q.question.qtype), qtype: q.question.qtype, qclass: q.question.qclass,
				proto, from, id: q.id, time: Date.now(),
			};
			queries.push(entry);
			for (const w of [...waiters]) w();
		}
		if (mode === 'silent') return;
		let out;
		try {
			out = answer(q, proto);
		} catch {
			stats.malformed++;
			out = null;
		}
		if (!out) return;
		const send = () => {
			if (closed) return;
			stats.answered++;
			try { reply(out); } catch { /* peer gone */ }
		};
		if (delayMs > 0) {
			const t = setTimeout(() => { timers.delete(t); send(); }, delayMs);
			timers.add(t);
		} else {
			send();
		}
	};

	// UDP and TCP on the same port: retry with another port if the TCP
	// one is taken.
	let udp, tcp, port;
	for (let attempt = 0; ; attempt++) {
		udp = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4' });
		await new Promise((resolve, reject) => {
			udp.once('error', reject);
			udp.bind(opts.port ?? 0, host, () => { udp.off('error', reject); resolve(); });
		});
		port = udp.address().port;
		tcp = net.createServer();
		try {
			await new Promise((resolve, reject) => {
				tcp.once('error', reject);
				tcp.listen(port, host, () => { tcp.off('error', reject); resolve(); });
			});
			break;
		} catch (e) {
			udp.close();
			if (opts.port || e.code !== 'EADDRINUSE' || attempt >= 20) throw e;
		}
	}
	udp.on('error', () => { /* keep serving */ });
	udp.on('message', (msg, rinfo) => {
		handle(msg, 'udp', `${rinfo.address}:${rinfo.port}`,
		    (out) => udp.send(out, rinfo.port, rinfo.address, () => {}));
	});
	tcp.on('error', () => {});
	tcp.on('connection', (sock) => {
		conns.add(sock);
		const from = `${sock.remoteAddress}:${sock.remotePort}`;
		let buf = Buffer.alloc(0);
		sock.setTimeout(30000, () => sock.destroy());
		sock.on('error', () => {});
		sock.on('close', () => conns.delete(sock));
		sock.on('data', (c) => {
			buf = buf.length ? Buffer.concat([buf, c]) : c;
			while (buf.length >= 2) {
				const n = buf.readUInt16BE(0);
				if (buf.length < 2 + n) break;
				const msg = buf.subarray(2, 2 + n);
				buf = buf.subarray(2 + n);
				handle(msg, 'tcp', from, (out) => {
					if (sock.destroyed) return;
					const len = Buffer.alloc(2);
					len.writeUInt16BE(out.length);
					sock.write(Buffer.concat([len, out]));
				});
			}
		});
	});

	let ownDir = null;
	const dir = opts.dir ?? (ownDir = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-fakedns-')));
	const hostPort = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
	const resolvConfText = `nameserver ${hostPort}\n` +
	    (opts.resolvOptions?.length ? `options ${opts.resolvOptions.join(' ')}\n` : '');
	const resolvConf = path.join(dir, 'resolv.conf');
	fs.writeFileSync(resolvConf, resolvConfText);

	const d = {
		host, port, resolvConf, resolvConfText, queries, stats,
		get mode() { return mode; },
		set,
		remove: (name) => records.delete(nameKey(name)),
		clear: () => records.clear(),
		setMode: (m) => {
			if (!MODES.has(m)) throw new Error(`fake-dns: unknown mode ${m}`);
			mode = m;
		},
		setDelay: (ms) => { delayMs = ms; },
		setTtl: (s) => { ttl = s; },
		setQuestionCase: (c) => { questionCase = c; },
		resetQueries: () => { queries.length = 0; },
		waitQuery: (pred, { timeoutMs = 5000, since = 0 } = {}) => new Promise((resolve, reject) => {
			const match = typeof pred === 'function' ? pred
			    : (q) => nameKey(q.name) === nameKey(pred);
			let timer = null;
			const check = () => {
				for (let i = since; i < queries.length; i++) {
					if (match(queries[i])) {
						waiters.delete(check);
						clearTimeout(timer);
						resolve(queries[i]);
						return true;
					}
				}
				return false;
			};
			if (check()) return;
			timer = setTimeout(() => {
				waiters.delete(check);
				reject(new Error(`fake-dns: no matching query within ${timeoutMs} ms ` +
				    `(have: ${queries.map((q) => `${q.type} ${q.name}`).join(', ') || 'none'})`));
			}, timeoutMs);
			waiters.add(check);
		}),
		close: async () => {
			if (closed) return;
			closed = true;
			for (const t of timers) clearTimeout(t);
			timers.clear();
			for (const s of conns) s.destroy();
			await Promise.all([
				new Promise((r) => { try { udp.close(() => r()); } catch { r(); } }),
				new Promise((r) => tcp.close(() => r())),
			]);
			if (ownDir) fs.rmSync(ownDir, { recursive: true, force: true });
		},
	};
	return d;
}

// Standalone: node fake-dns.mjs [port] name=ip,ip ... (prints resolv.conf path)
if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
	const args = process.argv.slice(2);
	const port = /^\d+$/.test(args[0] ?? '') ? Number(args.shift()) : 0;
	const records = {};
	for (const a of args) {
		const [n, v = ''] = a.split('=');
		const ips = v.split(',').filter(Boolean);
		records[n] = { a: ips.filter((x) => net.isIPv4(x)), aaaa: ips.filter((x) => net.isIPv6(x)) };
	}
	const d = await startFakeDns({ port, records });
	process.stdout.write(`fake-dns on ${d.host}:${d.port} (udp+tcp); resolv.conf: ${d.resolvConf}\n`);
	const stop = () => d.close().then(() => process.exit(0));
	process.on('SIGINT', stop);
	process.on('SIGTERM', stop);
}
