// t_fake_dns: tests/peers/fake-dns.mjs on its own, without naiberd.
// node:dns (c-ares, UDP) for A, AAAA, TTL, NXDOMAIN, NODATA, CNAME,
// SERVFAIL, nxdomain-all and a silent server timing out; hand-built
// RFC 1035 messages (parsed here independently of the server) for the
// question's case echoed byte for byte, TCP framing (pipelined and split
// writes), FORMERR / NOTIMP, EDNS(0), UDP truncation, compression
// pointers and garbage; and libevent 2.1 evdns itself (a small C program
// built against the system libevent, like naiberd's common/dns.c) reading
// the resolv.conf the server wrote.
import assert from 'node:assert/strict';
import { spawnSync, execFile } from 'node:child_process';
import dgram from 'node:dgram';
import dnsMod from 'node:dns';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { itest, startFakeDns, withTimeout, sleep } from '../lib/harness.mjs';
import { startFakeDns as startFakeDnsBare } from '../peers/fake-dns.mjs';

const { Resolver } = dnsMod.promises;

function resolverFor(dns, o = {}) {
	const r = new Resolver({ timeout: 2000, tries: 1, ...o });
	r.setServers([`127.0.0.1:${dns.port}`]);
	return r;
}

// ------------------------------------------------ hand-built messages

function encName(name) {
	const parts = [];
	for (const l of name.split('.').filter(Boolean)) {
		const b = Buffer.from(l, 'latin1');
		parts.push(Buffer.from([b.length]), b);
	}
	parts.push(Buffer.from([0]));
	return Buffer.concat(parts);
}

/* A query message.  qname: a name or a raw Buffer (wire form). */
function mkQuery({ id = 0x1234, flags = 0x0100, qname, qtype = 1, qclass = 1, qdcount = 1,
    edns = null } = {}) {
	const h = Buffer.alloc(12);
	h.writeUInt16BE(id, 0);
	h.writeUInt16BE(flags, 2);
	h.writeUInt16BE(qdcount, 4);
	h.writeUInt16BE(edns ? 1 : 0, 10);
	const parts = [h];
	if (qname !== undefined) {
		const t = Buffer.alloc(4);
		t.writeUInt16BE(qtype, 0);
		t.writeUInt16BE(qclass, 2);
		parts.push(Buffer.isBuffer(qname) ? qname : encName(qname), t);
	}
	if (edns) {
		const o = Buffer.alloc(11);
		o.writeUInt16BE(41, 1);			// root owner, type OPT
		o.writeUInt16BE(edns.payload ?? 4096, 3);
		o.writeUInt8(edns.version ?? 0, 6);	// TTL: ext-rcode, version, flags
		parts.push(o);
	}
	return Buffer.concat(parts);
}

/* Name at off (pointers followed): {text, end, raw (bytes where it started)}. */
function readName(buf, off) {
	const labels = [];
	let p = off, end = -1;
	for (let hops = 0; hops < 64; hops++) {
		const n = buf[p];
		if ((n & 0xc0) === 0xc0) {
			if (end < 0) end = p + 2;
			p = ((n & 0x3f) << 8) | buf[p + 1];
			continue;
		}
		if (n === 0) {
			if (end < 0) end = p + 1;
			return { text: labels.join('.'), end, raw: buf.subarray(off, end) };
		}
		labels.push(buf.subarray(p + 1, p + 1 + n).toString('latin1'));
		p += 1 + n;
	}
	throw new Error('pointer loop in the answer');
}

function parseMsg(buf) {
	const f = buf.readUInt16BE(2);
	const m = {
		id: buf.readUInt16BE(0), qr: f >> 15, opcode: (f >> 11) & 0xf, aa: (f >> 10) & 1,
		tc: (f >> 9) & 1, rd: (f >> 8) & 1, ra: (f >> 7) & 1, rcode: f & 0xf,
		qd: buf.readUInt16BE(4), an: buf.readUInt16BE(6), ns: buf.readUInt16BE(8), ar: buf.readUInt16BE(10),
		questions: [], answers: [], authority: [], additional: [],
	};
	let p = 12;
	for (let i = 0; i < m.qd; i++) {
		const n = readName(buf, p);
		m.questions.push({ name: n.text, raw: n.raw, qtype: buf.readUInt16BE(n.end), qclass: buf.readUInt16BE(n.end + 2) });
		p = n.end + 4;
	}
	for (const [sec, count] of [['answers', m.an], ['authority', m.ns], ['additional', m.ar]]) {
		for (let i = 0; i < count; i++) {
			const n = readName(buf, p);
			const o = n.end;
			const rd = buf.subarray(o + 10, o + 10 + buf.readUInt16BE(o + 8));
			const r = { name: n.text, ownerRaw: n.raw, type: buf.readUInt16BE(o), cls: buf.readUInt16BE(o + 2),
			    ttl: buf.readUInt32BE(o + 4), rdata: rd };
			if (r.type === 1) r.addr = [...rd].join('.');
			if (r.type === 28) r.addr = ipv6Text(rd);
			if (r.type === 5) r.target = readName(buf, o + 10).text;
			m[sec].push(r);
			p = o + 10 + rd.length;
		}
	}
	assert.equal(p, buf.length, 'no bytes after the last record');
	return m;
}

function ipv6Text(b) {
	const w = [];
	for (let i = 0; i < 16; i += 2) w.push(b.readUInt16BE(i).toString(16));
	// Canonical enough for comparisons: through node's own parser.
	return new net.SocketAddress({ address: w.join(':'), family: 'ipv6' }).address;
}

/* One UDP exchange; resolves the answer Buffer or null after timeoutMs. */
function udpAsk(port, msg, timeoutMs = 1000) {
	return new Promise((resolve) => {
		const s = dgram.createSocket('udp4');
		const t = setTimeout(() => { s.close(); resolve(null); }, timeoutMs);
		s.on('message', (b) => { clearTimeout(t); s.close(); resolve(b); });
		s.send(msg, port, '127.0.0.1');
	});
}

/* Send UDP datagrams without waiting for anything. */
function udpFire(port, msgs) {
	return new Promise((resolve) => {
		const s = dgram.createSocket('udp4');
		let n = 0;
		for (const m of msgs) s.send(m, port, '127.0.0.1', () => { if (++n === msgs.length) { s.close(); resolve(); } });
	});
}

/*
 * TCP: write `writes` (Buffers, gapMs apart), collect `want` length-
 * prefixed messages; resolves them (array of Buffers).
 */
function tcpAsk(port, writes, want, { gapMs = 0, timeoutMs = 3000 } = {}) {
	return new Promise((resolve, reject) => {
		const sock = net.connect({ host: '127.0.0.1', port });
		let buf = Buffer.alloc(0);
		const out = [];
		const timer = setTimeout(() => { sock.destroy(); reject(new Error(`tcp: ${out.length}/${want} answers`)); }, timeoutMs);
		sock.on('error', (e) => { clearTimeout(timer); reject(e); });
		sock.on('data', (c) => {
			buf = Buffer.concat([buf, c]);
			while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
				out.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
				buf = buf.subarray(2 + buf.readUInt16BE(0));
			}
			if (out.length >= want) { clearTimeout(timer); sock.destroy(); resolve(out); }
		});
		sock.on('connect', async () => {
			for (const w of writes) {
				sock.write(w);
				if (gapMs) await sleep(gapMs);
			}
		});
	});
}

const framed = (msg) => {
	const l = Buffer.alloc(2);
	l.writeUInt16BE(msg.length);
	return Buffer.concat([l, msg]);
};

// ---------------------------------------------------------------- tests

let closedByScope = null;

itest('A, AAAA, TTL, NXDOMAIN, NODATA and CNAME through node:dns; resolv.conf text', async () => {
	const dns = await startFakeDns({ records: { 'redis.naiber.test': { a: ['127.0.0.1'] } } });
	closedByScope = dns;
	assert.equal(dns.host, '127.0.0.1');
	assert.equal(fs.readFileSync(dns.resolvConf, 'utf8'), `nameserver 127.0.0.1:${dns.port}\n`);
	dns.set('both.naiber.test', { a: ['127.0.0.1', '10.1.2.3'], aaaa: ['::1', '2001:db8::5', '::ffff:192.0.2.1'] });
	dns.set('v6only.naiber.test', { aaaa: ['::1'] });
	dns.set('empty.naiber.test', {});
	dns.set('alias.naiber.test', { cname: 'Both.Naiber.Test' });
	dns.set('dangling.naiber.test', { cname: 'gone.naiber.test' });
	const r = resolverFor(dns);

	assert.deepEqual(await r.resolve4('redis.naiber.test'), ['127.0.0.1']);
	assert.deepEqual(await r.resolve4('redis.naiber.test', { ttl: true }), [{ address: '127.0.0.1', ttl: 5 }]);
	assert.deepEqual(await r.resolve4('both.naiber.test'), ['127.0.0.1', '10.1.2.3']);
	assert.deepEqual(await r.resolve6('both.naiber.test'), ['::1', '2001:db8::5', '::ffff:192.0.2.1']);
	assert.deepEqual(await r.resolve6('v6only.naiber.test'), ['::1']);
	assert.deepEqual(await r.resolve4('alias.naiber.test'), ['127.0.0.1', '10.1.2.3']);

	await assert.rejects(r.resolve4('nowhere.naiber.test'), { code: 'ENOTFOUND' });
	await assert.rejects(r.resolve4('dangling.naiber.test'), { code: 'ENOTFOUND' });
	await assert.rejects(r.resolve6('redis.naiber.test'), { code: 'ENODATA' });
	await assert.rejects(r.resolve4('v6only.naiber.test'), { code: 'ENODATA' });
	await assert.rejects(r.resolve4('empty.naiber.test'), { code: 'ENODATA' });
	await assert.rejects(r.resolveMx('redis.naiber.test'), { code: 'ENODATA' });

	// Redefine, remove.
	dns.set('redis.naiber.test', { a: ['192.0.2.7'] });
	assert.deepEqual(await r.resolve4('redis.naiber.test'), ['192.0.2.7']);
	dns.remove('REDIS.naiber.test.');
	await assert.rejects(r.resolve4('redis.naiber.test'), { code: 'ENOTFOUND' });

	// Every question is recorded.
	const q = dns.queries.find((x) => x.name === 'v6only.naiber.test' && x.type === 'AAAA');
	assert.ok(q && q.proto === 'udp' && q.qtype === 28 && q.qclass === 1 && typeof q.time === 'number', JSON.stringify(q));
	assert.ok(dns.queries.some((x) => x.name === 'redis.naiber.test' && x.type === 'MX'));
	assert.equal((await dns.waitQuery('NOWHERE.naiber.test')).type, 'A');
	await assert.rejects(dns.waitQuery('never.asked', { timeoutMs: 100 }), /no matching query/);

	assert.throws(() => dns.set('x.test', { a: ['::1'] }), /IPv4/);
	assert.throws(() => dns.set('x.test', { cname: 'y.test', a: ['127.0.0.1'] }), /CNAME/);
});

itest('the harness closed the previous test\'s server (scope cleanup)', async () => {
	assert.ok(closedByScope, 'previous test ran');
	// Both ports are free again: the server let them go.
	const u = dgram.createSocket('udp4');
	await new Promise((res, rej) => { u.once('error', rej); u.bind(closedByScope.port, '127.0.0.1', res); });
	u.close();
	const s = net.createServer();
	await new Promise((res, rej) => { s.once('error', rej); s.listen(closedByScope.port, '127.0.0.1', res); });
	await new Promise((res) => s.close(res));
	assert.equal(fs.existsSync(closedByScope.resolvConf), false, 'temp dir removed');
});

itest('the question is echoed byte for byte; owner names point to it; AA set, RD echoed', async () => {
	const dns = await startFakeDns({ records: { 'redis.naiber.test': { a: ['127.0.0.1', '127.0.0.2'] } } });
	for (const [name, rd] of [['ReDiS.NaIbEr.TeSt', 1], ['REDIS.NAIBER.TEST', 0]]) {
		const qm = mkQuery({ id: 0xbeef, flags: rd ? 0x0100 : 0, qname: name });
		const a = parseMsg(await udpAsk(dns.port, qm));
		assert.equal(a.id, 0xbeef);
		assert.equal(a.qr, 1);
		assert.equal(a.aa, 1);
		assert.equal(a.rd, rd);
		assert.equal(a.ra, 0);
		assert.equal(a.rcode, 0);
		assert.equal(a.qd, 1);
		assert.deepEqual(a.questions[0].raw, encName(name), 'question name bytes echoed');
		assert.equal(a.questions[0].qtype, 1);
		assert.deepEqual(a.answers.map((x) => x.addr), ['127.0.0.1', '127.0.0.2']);
		for (const x of a.answers) {
			assert.deepEqual(x.ownerRaw, Buffer.from([0xc0, 0x0c]));
			assert.equal(x.name, name);
			assert.equal(x.ttl, 5);
			assert.equal(x.cls, 1);
		}
	}
	assert.ok(dns.queries.some((q) => q.name === 'ReDiS.NaIbEr.TeSt'), 'recorded with its case');

	// NXDOMAIN: AA, SOA in authority (negative TTL 5).
	const nx = parseMsg(await udpAsk(dns.port, mkQuery({ qname: 'No.Such.Test' })));
	assert.equal(nx.rcode, 3);
	assert.equal(nx.aa, 1);
	assert.equal(nx.an, 0);
	assert.deepEqual(nx.questions[0].raw, encName('No.Such.Test'));
	assert.equal(nx.authority.length, 1);
	assert.equal(nx.authority[0].type, 6);
	assert.equal(nx.authority[0].rdata.readUInt32BE(nx.authority[0].rdata.length - 4), 5);
	// NODATA: NOERROR, no answer, AA, SOA.
	const nd = parseMsg(await udpAsk(dns.port, mkQuery({ qname: 'redis.naiber.test', qtype: 28 })));
	assert.deepEqual([nd.rcode, nd.aa, nd.an, nd.ns], [0, 1, 0, 1]);
	// ANY: every address record.
	dns.set('redis.naiber.test', { a: ['127.0.0.1'], aaaa: ['::1'] });
	const any = parseMsg(await udpAsk(dns.port, mkQuery({ qname: 'redis.naiber.test', qtype: 255 })));
	assert.deepEqual(any.answers.map((x) => [x.type, x.addr]), [[1, '127.0.0.1'], [28, '::1']]);
	// Class CH: refused.
	const ch = parseMsg(await udpAsk(dns.port, mkQuery({ qname: 'redis.naiber.test', qclass: 3 })));
	assert.equal(ch.rcode, 5);

	// questionCase 'lower' (a resolver that does not keep the case).
	dns.setQuestionCase('lower');
	const lo = parseMsg(await udpAsk(dns.port, mkQuery({ qname: 'ReDiS.naiber.test' })));
	assert.deepEqual(lo.questions[0].raw, encName('redis.naiber.test'));
	assert.equal(lo.answers.length, 1);
});

itest('TCP: 2-byte length prefix, pipelined and split writes, no truncation', async () => {
	const dns = await startFakeDns({ records: { 'redis.naiber.test': { a: ['127.0.0.1'], aaaa: ['::1'] } } });
	const q1 = mkQuery({ id: 1, qname: 'Redis.Naiber.Test' });
	const q2 = mkQuery({ id: 2, qname: 'redis.naiber.test', qtype: 28 });
	const q3 = mkQuery({ id: 3, qname: 'nope.naiber.test' });
	// Three messages in one write.
	const [a1, a2, a3] = (await tcpAsk(dns.port, [Buffer.concat([framed(q1), framed(q2), framed(q3)])], 3)).map(parseMsg);
	assert.deepEqual([a1.id, a2.id, a3.id], [1, 2, 3]);
	assert.deepEqual(a1.answers.map((x) => x.addr), ['127.0.0.1']);
	assert.deepEqual(a1.questions[0].raw, encName('Redis.Naiber.Test'));
	assert.deepEqual(a2.answers.map((x) => x.addr), ['::1']);
	assert.equal(a3.rcode, 3);
	// One message a byte at a time.
	const bytes = [...framed(mkQuery({ id: 9, qname: 'redis.naiber.test' }))].map((b) => Buffer.from([b]));
	const [a9] = (await tcpAsk(dns.port, bytes, 1, { gapMs: 2 })).map(parseMsg);
	assert.equal(a9.id, 9);
	assert.equal(a9.answers.length, 1);
	assert.ok(dns.queries.filter((q) => q.proto === 'tcp').length >= 4);

	// Many records: UDP without EDNS is truncated (TC, no records), TCP
	// and UDP with a large enough EDNS payload are not.
	const many = Array.from({ length: 60 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);
	dns.set('many.naiber.test', { a: many });
	const u = parseMsg(await udpAsk(dns.port, mkQuery({ qname: 'many.naiber.test' })));
	assert.deepEqual([u.tc, u.an, u.rcode, u.qd], [1, 0, 0, 1]);
	const [t] = (await tcpAsk(dns.port, [framed(mkQuery({ qname: 'many.naiber.test' }))], 1)).map(parseMsg);
	assert.equal(t.tc, 0);
	assert.deepEqual(t.answers.map((x) => x.addr), many);
	const e = parseMsg(await udpAsk(dns.port, mkQuery({ qname: 'many.naiber.test', edns: { payload: 1232 } })));
	assert.equal(e.tc, 0);
	assert.equal(e.an, 60);
	const e512 = parseMsg(await udpAsk(dns.port, mkQuery({ qname: 'many.naiber.test', edns: { payload: 100 } })));
	assert.equal(e512.tc, 1, 'payload below 512 counts as 512');
});

itest('EDNS(0): OPT answered, BADVERS for version 1', async () => {
	const dns = await startFakeDns({ records: { 'redis.naiber.test': { a: ['127.0.0.1'] } } });
	const a = parseMsg(await udpAsk(dns.port, mkQuery({ qname: 'redis.naiber.test', edns: { payload: 4096 } })));
	assert.equal(a.rcode, 0);
	assert.equal(a.answers.length, 1);
	assert.equal(a.additional.length, 1);
	assert.deepEqual([a.additional[0].type, a.additional[0].cls, a.additional[0].ttl], [41, 1232, 0]);
	const b = parseMsg(await udpAsk(dns.port, mkQuery({ qname: 'redis.naiber.test', edns: { version: 1 } })));
	assert.equal(b.an, 0);
	assert.equal(b.additional[0].type, 41);
	assert.equal(((b.additional[0].ttl >>> 24) << 4) | b.rcode, 16, 'BADVERS');
});

itest('FORMERR, NOTIMP, compression pointers and garbage never crash the server', async () => {
	const dns = await startFakeDns({ records: { 'b.a': { a: ['127.0.0.9'] }, 'redis.naiber.test': { a: ['127.0.0.1'] } } });
	const ask = async (m) => { const b = await udpAsk(dns.port, m, 500); return b && parseMsg(b); };

	// QDCOUNT 0 and 2: FORMERR, id kept.
	const z = await ask(mkQuery({ id: 77, qdcount: 0 }));
	assert.deepEqual([z.id, z.qr, z.rcode, z.qd, z.an], [77, 1, 1, 0, 0]);
	const two = Buffer.concat([mkQuery({ id: 78, qname: 'redis.naiber.test', qdcount: 2 }),
	    encName('redis.naiber.test'), Buffer.from([0, 1, 0, 1])]);
	assert.equal((await ask(two)).rcode, 1);
	// Opcode 2 (STATUS): NOTIMP.
	const st = await ask(mkQuery({ flags: 2 << 11, qname: 'redis.naiber.test' }));
	assert.deepEqual([st.rcode, st.opcode], [4, 2]);
	// A truncated question, a label running past the end, a reserved label type.
	assert.equal((await ask(mkQuery({ qname: 'redis.naiber.test' }).subarray(0, 20))).rcode, 1);
	assert.equal((await ask(Buffer.concat([mkQuery({ qdcount: 1 }), Buffer.from([40, 0x61])]))).rcode, 1);
	assert.equal((await ask(Buffer.concat([mkQuery({ qdcount: 1 }), Buffer.from([0x80, 0, 0, 1, 0, 1])]))).rcode, 1);
	// A legitimate pointer: id 0x0161 + flags 0 read as a name is "a";
	// the question "b" + pointer to offset 0 is b.a.
	const ptrQ = mkQuery({ id: 0x0161, flags: 0, qname: Buffer.from([1, 0x62, 0xc0, 0x00]) });
	const pa = await ask(ptrQ);
	assert.equal(pa.rcode, 0);
	assert.deepEqual(pa.answers.map((x) => x.addr), ['127.0.0.9']);
	assert.ok(dns.queries.some((q) => q.name === 'b.a'));
	// Pointer loops (to itself, forwards): FORMERR, not a hang.
	assert.equal((await ask(mkQuery({ qname: Buffer.from([0xc0, 0x0c]) }))).rcode, 1);
	assert.equal((await ask(mkQuery({ qname: Buffer.from([1, 0x61, 0xc0, 0x0c]) }))).rcode, 1);
	assert.equal((await ask(mkQuery({ qname: Buffer.from([0xc0, 0x20]) }))).rcode, 1);
	// A name over 255 bytes.
	const long = Buffer.concat([...Array(5)].map(() => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x61)])));
	assert.equal((await ask(mkQuery({ qname: Buffer.concat([long, Buffer.from([0])]) }))).rcode, 1);
	// Bad additional section (OPT running past the end): FORMERR.
	const badAr = mkQuery({ qname: 'redis.naiber.test', edns: {} });
	assert.equal((await ask(badAr.subarray(0, badAr.length - 3))).rcode, 1);

	// Dropped without an answer: short packets, responses (QR set), empty.
	const before = dns.stats.dropped;
	assert.equal(await ask(Buffer.from([1, 2, 3])), null);
	assert.equal(await ask(mkQuery({ flags: 0x8180, qname: 'redis.naiber.test' })), null);
	await udpFire(dns.port, [Buffer.alloc(0)]);
	// Random garbage, over UDP and TCP.
	const junk = Array.from({ length: 300 }, (_, i) => {
		const b = Buffer.alloc(1 + ((i * 37) % 200));
		for (let j = 0; j < b.length; j++) b[j] = (i * 131 + j * 17 + (j * j) % 251) & 0xff;
		return b;
	});
	await udpFire(dns.port, junk);
	await new Promise((resolve) => {
		const s = net.connect({ host: '127.0.0.1', port: dns.port }, () => {
			s.write(Buffer.concat(junk.slice(0, 50).map(framed)));
			s.write(Buffer.from([0, 0, 0, 5, 1, 2]));	// zero-length message, then half a message
			setTimeout(() => { s.destroy(); resolve(); }, 100);
		});
		s.on('error', resolve);
	});
	assert.ok(dns.stats.dropped > before);
	// Still serving, both ways.
	const ok = await ask(mkQuery({ qname: 'redis.naiber.test' }));
	assert.deepEqual(ok.answers.map((x) => x.addr), ['127.0.0.1']);
	const [t] = await tcpAsk(dns.port, [framed(mkQuery({ qname: 'redis.naiber.test' }))], 1);
	assert.equal(parseMsg(t).answers.length, 1);
	assert.deepEqual(await resolverFor(dns).resolve4('redis.naiber.test'), ['127.0.0.1']);
});

itest('modes: silent times out (queries still recorded), servfail, nxdomain-all, refused, delay', async () => {
	const dns = await startFakeDns({ records: { 'redis.naiber.test': { a: ['127.0.0.1'] } } });
	const r = resolverFor(dns, { timeout: 300, tries: 1 });

	dns.setMode('silent');
	assert.equal(dns.mode, 'silent');
	const t0 = Date.now();
	await assert.rejects(withTimeout(r.resolve4('redis.naiber.test'), 5000, 'resolve4 in silent mode'),
	    { code: 'ETIMEOUT' });
	assert.ok(Date.now() - t0 >= 250, 'it waited for its timeout');
	assert.ok(dns.queries.some((q) => q.name === 'redis.naiber.test' && q.type === 'A'));
	assert.equal(await udpAsk(dns.port, mkQuery({ qname: 'redis.naiber.test' }), 300), null);
	await assert.rejects(tcpAsk(dns.port, [framed(mkQuery({ qname: 'redis.naiber.test' }))], 1, { timeoutMs: 300 }),
	    /0\/1 answers/);

	dns.setMode('servfail');
	await assert.rejects(r.resolve4('redis.naiber.test'), { code: 'ESERVFAIL' });
	const sf = parseMsg(await udpAsk(dns.port, mkQuery({ qname: 'Redis.naiber.test' })));
	assert.deepEqual([sf.rcode, sf.aa, sf.an], [2, 0, 0]);
	assert.deepEqual(sf.questions[0].raw, encName('Redis.naiber.test'));

	dns.setMode('nxdomain-all');
	await assert.rejects(r.resolve4('redis.naiber.test'), { code: 'ENOTFOUND' });

	dns.setMode('refused');
	await assert.rejects(r.resolve4('redis.naiber.test'), { code: 'EREFUSED' });

	assert.throws(() => dns.setMode('bogus'), /unknown mode/);
	dns.setMode('answer');
	assert.deepEqual(await r.resolve4('redis.naiber.test'), ['127.0.0.1']);

	dns.setDelay(200);
	const t1 = Date.now();
	assert.deepEqual(await resolverFor(dns).resolve4('redis.naiber.test'), ['127.0.0.1']);
	assert.ok(Date.now() - t1 >= 180, `answered after ${Date.now() - t1} ms`);
	// A delayed answer still pending at close() is never sent (no throw).
	udpFire(dns.port, [mkQuery({ qname: 'redis.naiber.test' })]);
	await sleep(20);
	await dns.close();
	await dns.close();
});

itest('standalone module: options, resolvOptions, fixed port, close()', async () => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-dns-t-'));
	try {
		const a = await startFakeDnsBare({ dir, ttl: 30, resolvOptions: ['timeout:1', 'attempts:1'],
		    records: { 'x.test': { a: ['127.0.0.1'] } } });
		assert.equal(a.resolvConf, path.join(dir, 'resolv.conf'));
		assert.equal(fs.readFileSync(a.resolvConf, 'utf8'),
		    `nameserver 127.0.0.1:${a.port}\noptions timeout:1 attempts:1\n`);
		assert.deepEqual(await resolverFor(a).resolve4('x.test', { ttl: true }), [{ address: '127.0.0.1', ttl: 30 }]);
		const port = a.port;
		await a.close();
		assert.equal(fs.existsSync(dir), true, 'a given dir is left alone');
		const b = await startFakeDnsBare({ port, dir, records: { 'x.test': { a: ['127.0.0.2'] } } });
		assert.equal(b.port, port);
		assert.deepEqual(await resolverFor(b).resolve4('x.test'), ['127.0.0.2']);
		await b.close();
	} finally {
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

// ------------------------------------------------ libevent evdns itself

const EVDNS_PROBE = `
#include <event2/event.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

static struct event_base *base;
static int pending, failed;

static void
cb(int err, struct evutil_addrinfo *ai, void *arg)
{
	char buf[64];
	if (err) {
		printf("%s ERR %s\\n", (char *)arg, evutil_gai_strerror(err));
		failed = 1;
	} else {
		for (struct evutil_addrinfo *p = ai; p; p = p->ai_next) {
			const void *a = p->ai_family == AF_INET
			    ? (void *)&((struct sockaddr_in *)p->ai_addr)->sin_addr
			    : (void *)&((struct sockaddr_in6 *)p->ai_addr)->sin6_addr;
			printf("%s %s\\n", (char *)arg, inet_ntop(p->ai_family, a, buf, sizeof(buf)));
		}
		evutil_freeaddrinfo(ai);
	}
	if (--pending == 0)
		event_base_loopexit(base, NULL);
}

int
main(int argc, char **argv)
{
	struct evdns_base *db;
	struct evutil_addrinfo hints;
	int rc;

	base = event_base_new();
	db = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	/* Like naiberd's common/dns.c. */
	rc = evdns_base_resolv_conf_parse(db, DNS_OPTIONS_ALL, argv[1]);
	printf("parse %d nameservers %d\\n", rc, evdns_base_count_nameservers(db));
	evdns_base_set_option(db, "timeout:", "0.5");
	evdns_base_set_option(db, "attempts:", "1");
	evdns_base_set_option(db, "randomize-case:", "0");
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	for (int i = 2; i < argc; i++) {
		pending++;
		evdns_getaddrinfo(db, argv[i], "6379", &hints, cb, argv[i]);
	}
	if (pending)
		event_base_dispatch(base);
	evdns_base_free(db, 0);
	event_base_free(base);
	return failed;
}
`;

function buildEvdnsProbe() {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-dns-evdns-'));
	const src = path.join(dir, 'probe.c'), bin = path.join(dir, 'probe');
	fs.writeFileSync(src, EVDNS_PROBE);
	const r = spawnSync('cc', ['-std=c11', '-D_POSIX_C_SOURCE=200809L', '-o', bin, src, '-levent'],
	    { encoding: 'utf8', timeout: 60000 });
	if (r.error || r.status !== 0) {
		fs.rmSync(dir, { recursive: true, force: true });
		return { skip: `cannot build an evdns probe (cc, libevent-dev): ${r.error?.message ?? r.stderr}` };
	}
	return { bin, dir };
}

const probe = buildEvdnsProbe();
process.on('exit', () => { if (probe.dir) fs.rmSync(probe.dir, { recursive: true, force: true }); });

function runProbe(resolvConf, names) {
	return new Promise((resolve) => {
		execFile(probe.bin, [resolvConf, ...names], { timeout: 15000, encoding: 'utf8' },
		    (err, stdout, stderr) => resolve({ code: err ? (err.code ?? 1) : 0, out: stdout + stderr }));
	});
}

itest('libevent 2.1 evdns reads the resolv.conf and resolves through the fake', { skip: probe.skip ?? false }, async () => {
	const dns = await startFakeDns({ records: { 'redis.naiber.test': { a: ['127.0.0.1'], aaaa: ['::1'] } } });
	dns.set('v4.naiber.test', { a: ['192.0.2.10'] });
	const r1 = await runProbe(dns.resolvConf, ['Redis.Naiber.Test', 'v4.naiber.test', 'nope.naiber.test']);
	assert.match(r1.out, /^parse 0 nameservers 1$/m, r1.out);
	const lines = r1.out.split('\n');
	assert.deepEqual(lines.filter((l) => l.startsWith('Redis.Naiber.Test ')).sort(),
	    ['Redis.Naiber.Test 127.0.0.1', 'Redis.Naiber.Test ::1'], r1.out);
	assert.deepEqual(lines.filter((l) => l.startsWith('v4.naiber.test ')), ['v4.naiber.test 192.0.2.10'], r1.out);
	assert.match(r1.out, /^nope\.naiber\.test ERR /m);
	// evdns asked A and AAAA over UDP with the caller's case.
	assert.ok(dns.queries.some((q) => q.name === 'Redis.Naiber.Test' && q.type === 'A' && q.proto === 'udp'));
	assert.ok(dns.queries.some((q) => q.name === 'Redis.Naiber.Test' && q.type === 'AAAA'));

	// With randomize-case:0, evdns 2.1 compares the answer's question with
	// strcmp: a server that lower-cases it is not believed for a
	// mixed-case name (a lower-case name still works).
	dns.setQuestionCase('lower');
	const r2 = await runProbe(dns.resolvConf, ['Redis.Naiber.Test', 'v4.naiber.test']);
	assert.match(r2.out, /^Redis\.Naiber\.Test ERR /m, r2.out);
	assert.match(r2.out, /^v4\.naiber\.test 192\.0\.2\.10$/m, r2.out);
	dns.setQuestionCase('echo');

	// Silent: evdns times out.
	dns.setMode('silent');
	const r3 = await runProbe(dns.resolvConf, ['redis.naiber.test']);
	assert.match(r3.out, /^redis\.naiber\.test ERR /m, r3.out);
});
