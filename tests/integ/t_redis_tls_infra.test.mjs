// t_redis_tls_infra: the harness's TLS Redis (startRedis({tls: true})),
// tested on its own, without naiberd: the throw-away PKI (server
// certificate SANs), PING over TLS with the right CA (Node client and
// redis-cli) and its failure with the unrelated CA or a name the
// certificate does not hold, no plain TCP on the TLS port, MONITOR over
// TLS, the ACL user option, client certificates (tlsAuthClients 'yes'),
// a restart on the same port with the same certificates, and the
// default (plain) instance unchanged.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import {
	itest, startRedis, redisCall, redisPipeline, redisMonitor, RedisError, raw, waitFor,
} from '../lib/harness.mjs';

const noIPv6 = await new Promise((resolve) => {
	const s = net.createServer();
	s.once('error', (e) => resolve(`no IPv6 loopback on this machine (listen on ::1: ${e.code})`));
	s.listen(0, '::1', () => s.close(() => resolve(null)));
});

itest('default startRedis() is unchanged: plain TCP, redis:// URL, r.conn is the port', async () => {
	const r = await startRedis();
	assert.equal(r.url, `redis://127.0.0.1:${r.port}`);
	assert.equal(r.conn, r.port);
	assert.equal(r.caFile, undefined);
	assert.equal(await redisCall(r.port, 'PING'), 'PONG');
	assert.equal(await r.call('PING'), 'PONG');
	assert.match(await r.cmd('PING'), /^\+PONG\r\n/);
	const c = await r.cli(['PING']);
	assert.equal(c.code, 0, c.stderr);
	assert.equal(c.stdout.trim(), 'PONG');
});

itest('TLS Redis: certificates, PING with the right CA, failure with the wrong CA', async () => {
	const r = await startRedis({ tls: true });
	assert.equal(r.tlsPort, r.port);
	assert.equal(r.url, `rediss://127.0.0.1:${r.tlsPort}`);
	for (const f of [r.caFile, r.wrongCaFile, r.certFile, r.keyFile, r.clientCertFile, r.clientKeyFile])
		assert.ok(fs.existsSync(f), f);
	assert.equal(fs.statSync(r.keyFile).mode & 0o077, 0, 'key files are private');

	// The server certificate: SANs, issuer, chains to the CA only.
	const x = spawnSync('openssl', ['x509', '-in', r.certFile, '-noout', '-text'], { encoding: 'utf8' });
	assert.equal(x.status, 0, x.stderr);
	assert.match(x.stdout, /IP Address:127\.0\.0\.1/);
	assert.match(x.stdout, /IP Address:0:0:0:0:0:0:0:1/);
	assert.match(x.stdout, /DNS:localhost/);
	assert.match(x.stdout, /DNS:redis\.naiber\.test/);
	assert.match(x.stdout, /TLS Web Server Authentication/);
	const ok = spawnSync('openssl', ['verify', '-CAfile', r.caFile, r.certFile], { encoding: 'utf8' });
	assert.equal(ok.status, 0, ok.stdout + ok.stderr);
	const bad = spawnSync('openssl', ['verify', '-CAfile', r.wrongCaFile, r.certFile], { encoding: 'utf8' });
	assert.notEqual(bad.status, 0, 'the wrong CA must not verify the server certificate');

	// Node client: right CA by IP (default) and by each DNS name.
	assert.equal(await r.call('PING'), 'PONG');
	assert.equal(await redisCall(r.conn, 'SET', 'k', 'v'), 'OK');
	assert.equal(await redisCall(r.connWith({ servername: 'redis.naiber.test' }), 'GET', 'k'), 'v');
	assert.equal(await redisCall(r.connWith({ servername: 'localhost' }), 'PING'), 'PONG');
	assert.deepEqual(await r.pipeline([['INCR', 'n'], ['INCR', 'n']]), [1, 2]);
	assert.match(await r.cmd('PING'), /^\+PONG\r\n/);

	// The wrong CA, and a name not in the certificate: the handshake fails.
	const wrongCa = fs.readFileSync(r.wrongCaFile);
	await assert.rejects(redisCall(r.connWith({ ca: wrongCa }), 'PING'),
	    (e) => /UNABLE_TO_VERIFY|unable to (get|verify)|self.signed|certificate/i.test(`${e.code} ${e.message}`));
	await assert.rejects(redisCall(r.connWith({ servername: 'other.naiber.test' }), 'PING'),
	    (e) => e.code === 'ERR_TLS_CERT_ALTNAME_INVALID');

	// redis-cli: right CA PONG, wrong CA an error, nothing on stdout.
	const good = await r.cli(['PING']);
	assert.equal(good.code, 0, good.stderr);
	assert.equal(good.stdout.trim(), 'PONG');
	const sniGood = await r.cli(['--sni', 'redis.naiber.test', 'PING']);
	assert.equal(sniGood.stdout.trim(), 'PONG', sniGood.stderr);
	const wrong = await r.cli(['PING'], { cacert: r.wrongCaFile });
	assert.doesNotMatch(wrong.stdout, /PONG/);
	assert.match(wrong.stdout + wrong.stderr, /certificate verify failed|SSL|TLS/i);

	// Plain TCP on the TLS port gets no PONG (and no plain port is open).
	const plain = await raw(r.tlsPort, 'PING\r\n', { timeoutMs: 1000 });
	assert.doesNotMatch(plain.text, /\+PONG/);
	assert.equal(r.plainPort, null);

	// MONITOR over TLS.
	const m = redisMonitor(r.conn);
	await m.ready;
	await r.call('SET', 'watched', '1');
	await waitFor(() => m.commands().includes('SET'), 3000, 'MONITOR to see SET');
	m.stop();
});

itest('TLS Redis with an ACL user (and plainPort)', async () => {
	const user = { name: 'naiber', password: 'p@ss w:rd/1' };
	const r = await startRedis({ tls: true, aclUser: user, plainPort: true });
	assert.equal(r.userUrl, `rediss://naiber:${encodeURIComponent(user.password)}@127.0.0.1:${r.tlsPort}`);
	const u = new URL(r.userUrl);
	assert.equal(decodeURIComponent(u.password), user.password);
	assert.deepEqual(await r.pipeline([['AUTH', user.name, user.password], ['ACL', 'WHOAMI'],
	    ['SET', 'a', '1'], ['GET', 'a']]), ['OK', user.name, 'OK', '1']);
	const [e] = await r.pipeline([['AUTH', user.name, 'nope']]);
	assert.ok(e instanceof RedisError && /WRONGPASS/.test(e.message), String(e));
	// The default user stays (nopass).
	assert.equal(await r.call('ACL', 'WHOAMI'), 'default');
	const cli = await r.cli(['--user', user.name, '--pass', user.password, '--no-auth-warning', 'ACL', 'WHOAMI']);
	assert.equal(cli.stdout.trim(), user.name, cli.stderr);
	// The plain port is the same server.
	assert.equal(typeof r.plainPort, 'number');
	assert.equal(await redisCall(r.plainPort, 'GET', 'a'), '1');
});

itest('plain Redis with an ACL user', async () => {
	const r = await startRedis({ aclUser: { name: 'u1', password: 'pw1' } });
	assert.equal(r.url, `redis://127.0.0.1:${r.port}`);
	assert.equal(r.userUrl, `redis://u1:pw1@127.0.0.1:${r.port}`);
	assert.deepEqual(await r.pipeline([['AUTH', 'u1', 'pw1'], ['ACL', 'WHOAMI']]), ['OK', 'u1']);
});

itest('TLS Redis requiring client certificates; restart with the same files', async () => {
	const r = await startRedis({ tls: true, tlsAuthClients: 'yes' });
	const cert = fs.readFileSync(r.clientCertFile), key = fs.readFileSync(r.clientKeyFile);
	assert.equal(await redisCall(r.connWith({ cert, key }), 'PING'), 'PONG');
	await assert.rejects(redisPipeline(r.connWith(), [['PING']], { timeoutMs: 2000 }));
	assert.equal(await r.call('PING'), 'PONG', 'r.conn presents the client certificate');
	const c = await r.cli(['--cert', r.clientCertFile, '--key', r.clientKeyFile, 'PING']);
	assert.equal(c.stdout.trim(), 'PONG', c.stderr);

	// Restart on the same port with the same certificates.
	const port = r.tlsPort;
	await r.stop();
	const r2 = await startRedis({ tls: true, port, tlsFiles: r.tlsFiles });
	assert.equal(r2.tlsPort, port);
	assert.equal(r2.caFile, r.caFile);
	assert.equal(await r2.call('PING'), 'PONG');
});

itest('TLS Redis on ::1 (bind option, IP SAN ::1)', { skip: noIPv6 ?? false }, async () => {
	const r = await startRedis({ tls: true, bind: '127.0.0.1 ::1' });
	const ca = fs.readFileSync(r.caFile);
	// Node 18 (Debian's) compares an IPv6 SAN textually (0:0:...:1 vs ::1):
	// check the IP SAN with X509Certificate.checkIP, which both Node 18 and 20 do right.
	const ipSan = (host, cert) => (new X509Certificate(cert.raw).checkIP('::1') ? undefined
	    : new Error('no IP SAN ::1 in the server certificate'));
	assert.equal(await redisCall({ port: r.tlsPort, host: '::1', tls: { ca, checkServerIdentity: ipSan } }, 'PING'),
	    'PONG');
	assert.deepEqual(await redisPipeline({ port: r.tlsPort, host: '::1', tls: { ca, servername: 'redis.naiber.test' } },
	    [['PING']]), ['PONG']);
});
