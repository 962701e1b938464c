// t_dns_tls_redis: host names resolved on the event loops through a
// resolver we control (tests/peers/fake-dns.mjs, named by resolv_conf),
// every address tried in order, a resolver that never answers; and
// rediss:// (TLS, certificate and host name checked, ACL user) against
// Debian's redis-server with tls-port and a throw-away CA (issue 15,
// items 2 and 3).
import assert from 'node:assert/strict';
import { itest, startNaiberd, startFakeDns, startRedis, makeTlsPki, makeTempDir, http, sleep, waitFor }
	from '../lib/harness.mjs';
import { startStack } from '../lib/stack.mjs';

const lc = (q) => q.name.toLowerCase();

/* A whole call; returns after the post-call job was added. */
async function wholeCall(st) {
	const call = await st.placeCall();
	const s = await st.openStream(call);
	await s.sendMedia(10);
	await s.elConv.waitAudioBytes(160 * 10, 10000);
	await s.sendStop();
	await st.d.waitLog(new RegExp(`call ${call.callSid} done: reason=stop`), 10000);
	await st.d.waitLog(/post-call job added as \d+/, 10000);
	return call;
}

itest('names through our resolver: Redis, PostgreSQL, Twilio and ElevenLabs; a refused first address, then the next',
    { timeout: 90000 }, async () => {
	const dns = await startFakeDns();
	// 127.0.0.2 and .3 are loopback too, but nothing listens there.
	dns.set('redis.naiber.test', { a: ['127.0.0.2', '127.0.0.1'] });
	dns.set('db.naiber.test', { a: ['127.0.0.3', '127.0.0.1'] });
	dns.set('twilio.naiber.test', { a: ['127.0.0.1'] });
	dns.set('eleven.naiber.test', { a: ['127.0.0.1'] });
	const pki = makeTlsPki(makeTempDir('naiberd-el-pki-'),
	    { sans: 'IP:127.0.0.1,DNS:localhost,DNS:eleven.naiber.test' });
	const st = await startStack({
		ca: { caCert: pki.caFile, cert: pki.certFile, key: pki.keyFile },
		eleven: { signedUrlHost: 'eleven.naiber.test' },
		env: { NAIBER_RESOLV_CONF: dns.resolvConf },
		envFn: (s) => ({
			REDIS_URL: `redis://redis.naiber.test:${s.redis.port}`,
			DATABASE_URL: s.pg.url.replace('127.0.0.1', 'db.naiber.test'),
			TWILIO_API_BASE: s.tw.url.replace('127.0.0.1', 'twilio.naiber.test'),
			ELEVENLABS_BASE_URL: s.el.url.replace('127.0.0.1', 'eleven.naiber.test'),
		}),
	});
	const d = st.d;
	await d.waitLog(new RegExp(`redis redis\\.naiber\\.test:${st.redis.port}/0: connected`), 5000);
	// The first address refused, the second taken: logged, not fatal.
	assert.match(d.log, new RegExp(`connect to 127\\.0\\.0\\.2:${st.redis.port} \\(redis\\.naiber\\.test\\): ` +
	    'Connection refused; trying the next address'));
	// Idle workers looked the peers up already: the call will not wait for it.
	await waitFor(() => ['eleven.naiber.test', 'twilio.naiber.test'].every((n) =>
	    dns.queries.some((q) => lc(q) === n)), 5000, 'peers prefetched by idle workers');
	const call = await wholeCall(st);
	assert.match(d.log, new RegExp(`callSid=${call.callSid} .*profile loaded: user`));
	assert.match(d.log, /elevenlabs: connected/);
	const names = new Set(dns.queries.map(lc));
	for (const n of ['redis.naiber.test', 'db.naiber.test', 'twilio.naiber.test', 'eleven.naiber.test'])
		assert.ok(names.has(n), `${n} was asked of our resolver (asked: ${[...names].join(', ')})`);
	// libpq was given both addresses, in order, and took the second.
	const rows = await st.pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'naiberd'");
	assert.match(String(rows), /[1-9]/, 'naiberd connected to PostgreSQL by name');
	// Twilio's REST API was reached by name (the dial).
	assert.ok(st.tw.requests.some((r) => r.method === 'POST' && /Calls\.json/.test(r.path ?? r.url)),
	    'the call was dialled through twilio.naiber.test');
});

itest('a resolver that never answers: /health answers throughout, each lookup gives up after dns_timeout, logged; /ready 503',
    { timeout: 60000 }, async () => {
	const dns = await startFakeDns({ mode: 'silent' });
	const d = await startNaiberd({ workers: 1, maxCalls: 2, env: {
		NAIBER_RESOLV_CONF: dns.resolvConf, NAIBER_DNS_TIMEOUT: '1500',
		REDIS_URL: 'redis://redis.naiber.test:6390',
		DATABASE_URL: 'postgres://naiber@db.naiber.test:5439/naiber',
	} });
	// While lookups hang, the supervisor's loop serves /health.
	for (let i = 0; i < 5; i++) {
		const h = await http(d.port, 'GET', '/health', { timeoutMs: 1000 });
		assert.equal(h.status, 200, '/health while the resolver is silent');
		await sleep(200);
	}
	await d.waitLog(/redis redis\.naiber\.test:6390\/0: cannot connect: cannot resolve redis\.naiber\.test: no answer within 1500 ms/, 8000);
	const r = await http(d.port, 'GET', '/ready', { timeoutMs: 3000 });
	assert.equal(r.status, 503);
	assert.match(r.body, /Redis unavailable/);
	await d.waitLog(/cannot resolve db\.naiber\.test: no answer within 1500 ms/, 8000);
	assert.ok(dns.queries.some((q) => lc(q) === 'redis.naiber.test'), 'Redis name asked');
	assert.ok(dns.queries.some((q) => lc(q) === 'db.naiber.test'), 'database name asked');
	// Still alive and answering after the timeouts.
	assert.equal((await http(d.port, 'GET', '/health', { timeoutMs: 1000 })).status, 200);
	// The resolver comes back: the next attempt connects by name.
	const redis = await startRedis();
	dns.set('redis.naiber.test', { a: ['127.0.0.1'] });
	dns.setMode('answer');
	const d2 = await startNaiberd({ workers: 1, maxCalls: 2, env: {
		NAIBER_RESOLV_CONF: dns.resolvConf, REDIS_URL: `redis://redis.naiber.test:${redis.port}/2`,
	} });
	await d2.waitLog(new RegExp(`redis redis\\.naiber\\.test:${redis.port}/2: connected`), 8000);
	// A name the resolver does not know: NXDOMAIN, said plainly.
	const d3 = await startNaiberd({ workers: 1, maxCalls: 2, env: {
		NAIBER_RESOLV_CONF: dns.resolvConf, REDIS_URL: 'redis://nowhere.naiber.test:6379',
	} });
	await d3.waitLog(/redis nowhere\.naiber\.test:6379\/0: cannot connect: cannot resolve nowhere\.naiber\.test: /, 8000);
	assert.doesNotMatch(d3.log, /no answer within/);
});

itest('rediss:// with an ACL user: a whole call, session keys and the post-call job over TLS', { timeout: 90000 }, async () => {
	const pki = makeTlsPki(makeTempDir('naiberd-redis-pki-'));
	const st = await startStack({
		redisOpts: { tls: true, tlsFiles: pki, aclUser: { name: 'naiber', password: 's3cret pw' } },
		extraCaFiles: [pki.caFile],
		envFn: (s) => ({ REDIS_URL: s.redis.userUrl }),
	});
	const d = st.d;
	await d.waitLog(new RegExp(`redis tls:127\\.0\\.0\\.1:${st.redis.tlsPort}/0: connected`), 5000);
	assert.doesNotMatch(d.log, /s3cret/, 'the password is never logged');
	await wholeCall(st);
	const jobs = await st.postCallJobs();
	assert.ok(jobs.length >= 1, 'the post-call job is in the TLS Redis');
	// The connection is the ACL user's, over TLS.
	const clients = await st.redis.call('CLIENT', 'LIST');
	assert.match(String(clients), /user=naiber/);
});

itest('rediss:// refused: an unknown CA, a name the certificate does not hold; logged, /ready 503', { timeout: 60000 }, async () => {
	const redis = await startRedis({ tls: true });
	const dns = await startFakeDns();
	dns.set('redis.naiber.test', { a: ['127.0.0.1'] });
	dns.set('other.naiber.test', { a: ['127.0.0.1'] });
	const common = { NAIBER_RESOLV_CONF: dns.resolvConf };
	// The server's CA is not trusted (only the unrelated one is).
	const d1 = await startNaiberd({ workers: 1, maxCalls: 2, env: { ...common,
		REDIS_URL: redis.url, TLS_CA_FILE: redis.wrongCaFile } });
	await d1.waitLog(new RegExp(`redis tls:127\\.0\\.0\\.1:${redis.tlsPort}/0: cannot connect: TLS with ` +
	    `127\\.0\\.0\\.1:${redis.tlsPort} \\(127\\.0\\.0\\.1\\): certificate not accepted: (unable to get local issuer certificate|self-signed certificate in certificate chain)`), 8000);
	let r = await http(d1.port, 'GET', '/ready', { timeoutMs: 3000 });
	assert.equal(r.status, 503);
	assert.match(r.body, /Redis unavailable/);
	// Right CA, wrong name: other.naiber.test is not in the certificate.
	const d2 = await startNaiberd({ workers: 1, maxCalls: 2, env: { ...common,
		REDIS_URL: `rediss://other.naiber.test:${redis.tlsPort}`, TLS_CA_FILE: redis.caFile } });
	await d2.waitLog(new RegExp(`redis tls:other\\.naiber\\.test:${redis.tlsPort}/0: cannot connect: TLS with ` +
	    `127\\.0\\.0\\.1:${redis.tlsPort} \\(other\\.naiber\\.test\\): certificate not accepted: hostname mismatch`), 8000);
	r = await http(d2.port, 'GET', '/ready', { timeoutMs: 3000 });
	assert.equal(r.status, 503);
	// Right CA, a name it holds: connected.
	const d3 = await startNaiberd({ workers: 1, maxCalls: 2, env: { ...common,
		REDIS_URL: `rediss://redis.naiber.test:${redis.tlsPort}/1`, TLS_CA_FILE: redis.caFile } });
	await d3.waitLog(new RegExp(`redis tls:redis\\.naiber\\.test:${redis.tlsPort}/1: connected`), 8000);
	// Plain redis:// to the TLS port: the server hangs up, said so, retried.
	const d4 = await startNaiberd({ workers: 1, maxCalls: 2, env: { ...common,
		REDIS_URL: `redis://127.0.0.1:${redis.tlsPort}` } });
	await d4.waitLog(new RegExp(`redis 127\\.0\\.0\\.1:${redis.tlsPort}/0: cannot connect: `), 8000);
	assert.equal((await http(d4.port, 'GET', '/ready', { timeoutMs: 3000 })).status, 503);
});
