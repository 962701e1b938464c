// harness.mjs - integration test harness for naiberd.
//
// Starts the real binary (build/naiberd) on a free loopback port in a fresh
// temporary directory, talks to it with raw sockets, node:http and a Twilio
// Media Streams client built on the `ws` package, and cleans up after every
// test: spawned processes are killed by PID (supervisor, its workers, helper
// servers), temp dirs removed.  The daemon's log is printed only when the
// test failed (NAIBERD_TEST_LOGS=always prints it for passing tests too;
// NAIBERD=/path/to/binary tests another build).
//
// Use itest() instead of node:test's test() so cleanup and log printing are
// tied to the test:
//
//   import { itest, startNaiberd } from '../lib/harness.mjs';
//   itest('name', async (t) => { const d = await startNaiberd({workers: 2}); ... });
//
// Every wait here has a bound; nothing sleeps to assert timing.

import { test } from 'node:test';
import { spawn, spawnSync } from 'node:child_process';
import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire } from 'node:module';
import { createHmac, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import nodeTls from 'node:tls';
import nodeHttp from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(new URL('../peers/package.json', import.meta.url));
export const WebSocket = require('ws');
export const twilio = require('twilio');

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const NAIBERD = process.env.NAIBERD ?? path.join(REPO, 'build', 'naiberd');
export const DEFAULT_STREAM_URL = 'wss://bridge.test/outbound-media-stream';

// ---------------------------------------------------------------- utilities

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const hex = (n) => randomBytes(n).toString('hex');
export const newCallSid = () => 'CA' + hex(16);
export const newStreamSid = () => 'MZ' + hex(16);

/* Race a promise against a timer; the error names what was awaited. */
export function withTimeout(p, ms, what = 'operation') {
	let timer;
	const t = new Promise((_, rej) => {
		timer = setTimeout(() => rej(new Error(`timeout after ${ms} ms: ${what}`)), ms);
	});
	return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/* Poll fn() until it returns a truthy value; returns that value. */
export async function waitFor(fn, timeoutMs = 5000, what = 'condition', intervalMs = 50) {
	const end = Date.now() + timeoutMs;
	let last, lastErr;
	for (;;) {
		try {
			last = await fn();
			if (last) return last;
		} catch (e) {
			lastErr = e;
		}
		if (Date.now() >= end) {
			const extra = lastErr ? ` (last error: ${lastErr.message})` : '';
			throw new Error(`timeout after ${timeoutMs} ms waiting for ${what}${extra}`);
		}
		await sleep(intervalMs);
	}
}

export function freePort() {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.unref();
		s.on('error', reject);
		s.listen(0, '127.0.0.1', () => {
			const { port } = s.address();
			s.close(() => resolve(port));
		});
	});
}

export function pidAlive(pid) {
	try {
		process.kill(pid, 0);
	} catch (e) {
		return e.code === 'EPERM';
	}
	// A zombie still answers kill(0); treat it as gone.
	try {
		const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
		const state = st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3);
		return state !== 'Z' && state !== 'X';
	} catch {
		return false;
	}
}

/* Is pid the fork server (named naiberd-fork)? */
export function isForkServer(pid) {
	try {
		return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'naiberd-fork';
	} catch {
		return false;
	}
}

/* The workers of supervisor pid: its children but the fork server. */
export function workerPidsOf(pid) {
	return childPids(pid).filter((p) => !isForkServer(p));
}

/* PIDs whose parent is pid (the workers of a supervisor). */
export function childPids(pid) {
	const out = new Set();
	let tasks = [];
	try {
		tasks = fs.readdirSync(`/proc/${pid}/task`);
	} catch {
		return [];
	}
	let ok = false;
	for (const t of tasks) {
		try {
			const s = fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8');
			ok = true;
			for (const w of s.split(/\s+/)) if (w) out.add(Number(w));
		} catch { /* no CONFIG_PROC_CHILDREN */ }
	}
	if (!ok) {
		const r = spawnSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' });
		for (const w of (r.stdout ?? '').split(/\s+/)) if (w) out.add(Number(w));
	}
	// Drop zombies: a reaped-later child is not a live worker.
	return [...out].filter(pidAlive).sort((a, b) => a - b);
}

function exeOf(pid) {
	try {
		return fs.readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, '');
	} catch {
		return null;
	}
}

// ------------------------------------------------------- per-test cleanup

class Scope {
	constructor(name) {
		this.name = name;
		this.cleanups = [];	// async fns, run last-in first-out
		this.logs = [];		// {label, text()}
	}
	defer(fn) { this.cleanups.push(fn); }
	addLog(label, textFn) { this.logs.push({ label, text: textFn }); }
	async cleanup(failed) {
		if (failed || process.env.NAIBERD_TEST_LOGS === 'always') this.printLogs();
		while (this.cleanups.length) {
			const fn = this.cleanups.pop();
			try {
				await withTimeout(Promise.resolve().then(fn), 10000, 'cleanup');
			} catch (e) {
				process.stderr.write(`harness: cleanup error: ${e.message}\n`);
			}
		}
	}
	printLogs() {
		for (const { label, text } of this.logs) {
			let s = '';
			try { s = text(); } catch { /* ignore */ }
			const safe = this.name.replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 60);
			const keep = path.join(os.tmpdir(), `naiberd-failed-${safe}-${label}-${Date.now()}.log`);
			try { fs.writeFileSync(keep, s); } catch { /* ignore */ }
			process.stderr.write(`\n===== ${label} log (test "${this.name}", kept in ${keep}) =====\n` +
			    s + (s.endsWith('\n') ? '' : '\n') + `===== end of ${label} log =====\n`);
		}
	}
}

const als = new AsyncLocalStorage();
const globalScope = new Scope('(outside itest)');
const liveProcs = new Map();	// pid -> {exe} for the last-resort exit handler
const liveDirs = new Set();

process.on('exit', () => {
	for (const [pid, { exe }] of liveProcs) {
		if (!pidAlive(pid)) continue;
		if (exe && exeOf(pid) !== exe) continue;	// PID reused
		try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
	}
	for (const d of liveDirs) {
		try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* ignore */ }
	}
});

function scope() {
	return als.getStore() ?? globalScope;
}

function trackProc(pid, exe) {
	liveProcs.set(pid, { exe });
}

export function makeTempDir(prefix) {
	const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
	liveDirs.add(d);
	scope().defer(() => {
		fs.rmSync(d, { recursive: true, force: true });
		liveDirs.delete(d);
	});
	return d;
}

/*
 * itest(name, [options], fn): a node:test test with a cleanup scope and an
 * internal timeout (default 60 s), so processes are killed and logs shown
 * even when the test hangs.
 */
export function itest(name, opts, fn) {
	if (typeof opts === 'function') {
		fn = opts;
		opts = {};
	}
	const timeout = opts.timeout ?? 60000;
	const { timeout: _t, ...rest } = opts;
	return test(name, { ...rest, timeout: timeout + 20000 }, async (t) => {
		const sc = new Scope(name);
		let failed = false;
		try {
			await als.run(sc, () => withTimeout(Promise.resolve().then(() => fn(t)),
			    timeout, `test "${name}"`));
		} catch (e) {
			failed = true;
			throw e;
		} finally {
			await als.run(sc, () => sc.cleanup(failed));
		}
	});
}

// --------------------------------------------------------------- processes

/* The environment a test instance needs; tokens are fresh per instance. */
export function baseEnv(over = {}) {
	const env = {
		PATH: process.env.PATH ?? '/usr/bin:/bin',
		LANG: 'C',
		TWILIO_ACCOUNT_SID: 'AC00000000000000000000000000000000',
		TWILIO_AUTH_TOKEN: hex(16),
		TWILIO_NUMBER: '+15550001111',
		ELEVENLABS_API_KEY: 'x',
		ELEVENLABS_AGENT_ID: 'agent_test',
		DATABASE_URL: 'postgres://127.0.0.1:1/none',
		STREAM_URL: DEFAULT_STREAM_URL,
		TWILIO_URL: 'https://bridge.test',
		NAIBER_API_TOKEN: hex(16),
		// Redis on a closed port: nothing here may depend on a system
		// service.  Tests that need Redis pass REDIS_URL from startRedis().
		REDIS_URL: 'redis://127.0.0.1:1',
		// Admission by relay lag is measured by the unit tests and the
		// bench's overload level; here instances share a busy CI machine
		// (or run under valgrind/ASan: NAIBER_TEST_ADMISSION_LAG), where
		// one slow frame must not turn a functional test's /call into 503.
		NAIBER_ADMISSION_LAG: process.env.NAIBER_TEST_ADMISSION_LAG ?? '100',
	};
	for (const [k, v] of Object.entries(over)) {
		if (v === null || v === undefined) delete env[k];
		else env[k] = String(v);
	}
	return env;
}

/* Run naiberd to completion (for -t, -h, -V); bounded. */
export function runNaiberd(args, { env, timeoutMs = 10000, cwd } = {}) {
	return new Promise((resolve, reject) => {
		const p = spawn(NAIBERD, args, { env: env ?? baseEnv(), cwd: cwd ?? os.tmpdir(),
		    stdio: ['ignore', 'pipe', 'pipe'] });
		let stdout = '', stderr = '';
		p.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
		p.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
		const timer = setTimeout(() => {
			try { p.kill('SIGKILL'); } catch { /* gone */ }
			reject(new Error(`naiberd ${args.join(' ')}: no exit within ${timeoutMs} ms\n${stdout}${stderr}`));
		}, timeoutMs);
		p.on('error', (e) => { clearTimeout(timer); reject(e); });
		p.on('close', (code, signal) => {
			clearTimeout(timer);
			resolve({ code, signal, stdout, stderr, output: stdout + stderr });
		});
	});
}

/*
 * Start a supervisor.  Options:
 *   workers (2), maxCalls (10), drainTimeout (5), env (overrides, null
 *   deletes), args (extra flags), confText (config file body, mode 600),
 *   waitHealthy (true), healthTimeoutMs (10000), listen ('127.0.0.1':
 *   the -l address, e.g. '::1'; kept as inst.host, which inst.http(),
 *   inst.stream(), inst.metrics(), apiGet(), apiPost() and
 *   twilioWebhook() connect to).
 */
export async function startNaiberd(opts = {}) {
	if (!fs.existsSync(NAIBERD))
		throw new Error(`${NAIBERD} does not exist: run make -C ${REPO}`);
	const sc = scope();
	const dir = makeTempDir('naiberd-it-');
	const confPath = path.join(dir, 'naiberd.conf');
	fs.writeFileSync(confPath, opts.confText ?? '', { mode: 0o600 });
	fs.chmodSync(confPath, 0o600);
	const spoolDir = path.join(dir, 'spool');
	fs.mkdirSync(spoolDir, { mode: 0o700 });
	const port = opts.port ?? await freePort();
	const env = baseEnv({
		NAIBER_SPOOL_DIR: spoolDir,
		NAIBER_PROMPTS_DIR: path.join(REPO, 'prompts'),
		...(opts.env ?? {}),
	});
	const workers = opts.workers ?? 2;
	const maxCalls = opts.maxCalls ?? 10;
	const drainTimeout = opts.drainTimeout ?? 5;
	const host = opts.listen ?? '127.0.0.1';
	const args = ['-c', confPath, '-l', host, '-p', String(port),
	    '-w', String(workers), '-m', String(maxCalls), '--log-level', 'debug',
	    '--drain-timeout', String(drainTimeout), ...(opts.args ?? [])];
	const exe = fs.realpathSync(NAIBERD);
	const proc = spawn(NAIBERD, args, { env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
	const inst = {
		port, host, pid: proc.pid, proc, dir, confPath, env, args,
		authToken: env.TWILIO_AUTH_TOKEN, apiToken: env.NAIBER_API_TOKEN,
		streamUrl: env.STREAM_URL, log: '', stdout: '',
		exitInfo: null, workerPids: new Set(),
	};
	trackProc(proc.pid, exe);
	const waiters = new Set();
	const poke = () => { for (const w of waiters) w(); };
	proc.stderr.setEncoding('utf8').on('data', (d) => {
		inst.log += d;
		for (const m of d.matchAll(/\bworker\[(\d+)\]|\bworker (\d+)\b/g)) {
			const pid = Number(m[1] ?? m[2]);
			if (!inst.workerPids.has(pid)) {
				inst.workerPids.add(pid);
				trackProc(pid, exe);
			}
		}
		poke();
	});
	proc.stdout.setEncoding('utf8').on('data', (d) => { inst.stdout += d; poke(); });
	inst.exited = new Promise((resolve) => {
		proc.on('exit', (code, signal) => {
			inst.exitInfo = { code, signal };
			poke();
			resolve({ code, signal });
		});
		proc.on('error', (e) => {
			inst.exitInfo = { code: null, signal: null, error: e };
			poke();
			resolve(inst.exitInfo);
		});
	});
	sc.addLog(`naiberd-${port}`, () => inst.log +
	    (inst.stdout ? `\n--- stdout ---\n${inst.stdout}` : '') +
	    (inst.exitInfo ? `\n--- exit: ${JSON.stringify(inst.exitInfo)} ---\n` : '\n--- still running ---\n'));

	inst.logMark = () => inst.log.length;

	/*
	 * Wait until the log (from offset `since`) matches pattern (string,
	 * RegExp or predicate on the text).  Resolves with the RegExp match
	 * (or {index, 0: pattern}).  Rejects on timeout or if the daemon exits
	 * without logging it.
	 */
	inst.waitLog = (pattern, timeoutMs = 5000, since = 0) => new Promise((resolve, reject) => {
		const check = () => {
			const text = inst.log.slice(since);
			let m = null;
			if (typeof pattern === 'string') {
				const i = text.indexOf(pattern);
				if (i >= 0) m = Object.assign([pattern], { index: i + since });
			} else if (pattern instanceof RegExp) {
				const re = new RegExp(pattern.source, pattern.flags.replace('g', ''));
				m = re.exec(text);
				if (m) m.index += since;
			} else {
				m = pattern(text);
			}
			if (m) { done(); resolve(m); return; }
			if (inst.exitInfo) {
				// Give a last chance to buffered stderr, then fail.
				setTimeout(() => {
					const t2 = inst.log.slice(since);
					const hit = typeof pattern === 'string' ? t2.includes(pattern)
					    : pattern instanceof RegExp ? new RegExp(pattern.source, pattern.flags.replace('g', '')).test(t2)
					    : pattern(t2);
					done();
					if (hit) resolve(inst.waitLog(pattern, 100, since));
					else reject(new Error(`naiberd exited (${JSON.stringify(inst.exitInfo)}) before logging ${pattern}`));
				}, 100);
				waiters.delete(check);
			}
		};
		const timer = setTimeout(() => {
			done();
			reject(new Error(`timeout after ${timeoutMs} ms waiting for log ${pattern}`));
		}, timeoutMs);
		const done = () => { clearTimeout(timer); waiters.delete(check); };
		waiters.add(check);
		check();
	});

	/* All matches of a global RegExp in the log since `since`. */
	inst.logMatches = (re, since = 0) => {
		const g = new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g');
		return [...inst.log.slice(since).matchAll(g)];
	};

	/* Wait until the log holds at least n matches of re; returns them. */
	inst.waitLogCount = async (re, n, timeoutMs = 5000, since = 0) => {
		await inst.waitLog((text) => {
			const g = new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g');
			return ([...text.matchAll(g)].length >= n) ? [true] : null;
		}, timeoutMs, since).catch((e) => {
			const have = inst.logMatches(re, since).length;
			throw new Error(`${e.message} (wanted ${n} matches of ${re}, have ${have})`);
		});
		return inst.logMatches(re, since);
	};

	inst.kill = (sig = 'SIGTERM') => process.kill(proc.pid, sig);
	inst.alive = () => inst.exitInfo === null && pidAlive(proc.pid);
	/* Workers only: the fork server is a child too (named in the log). */
	inst.forkServers = () => [...inst.log.matchAll(/fork server (\d+) started/g)].map((m) => Number(m[1]));
	inst.forkServer = () => inst.forkServers().filter(pidAlive).at(-1) ?? null;
	inst.allChildren = () => childPids(proc.pid);
	inst.children = () => {
		const fs_ = new Set(inst.forkServers());
		return childPids(proc.pid).filter((p) => !fs_.has(p));
	};
	inst.metrics = (token = inst.apiToken) => metrics(port, token, host);
	inst.http = (method, p, o) => http(port, method, p, { host, ...o });
	inst.stream = (o = {}) => twilioStream(port, { token: inst.authToken, streamUrl: inst.streamUrl, host, ...o });

	/* SIGTERM, wait (bounded), SIGKILL; then kill any leftover workers. */
	inst.stop = async (graceMs = 3000) => {
		for (const c of inst.allChildren()) inst.workerPids.add(c);
		if (inst.exitInfo === null) {
			try { proc.kill('SIGTERM'); } catch { /* gone */ }
			const r = await Promise.race([inst.exited, sleep(graceMs).then(() => null)]);
			if (r === null) {
				for (const c of inst.allChildren()) inst.workerPids.add(c);
				try { proc.kill('SIGKILL'); } catch { /* gone */ }
				await withTimeout(inst.exited, 5000, 'supervisor exit after SIGKILL').catch(() => {});
			}
		}
		for (const w of inst.workerPids) {
			if (pidAlive(w) && exeOf(w) === exe) {
				try { process.kill(w, 'SIGKILL'); } catch { /* gone */ }
			}
		}
		liveProcs.delete(proc.pid);
		for (const w of inst.workerPids) liveProcs.delete(w);
	};
	sc.defer(() => inst.stop(2000));

	if (opts.waitHealthy !== false) {
		try {
			await waitFor(async () => {
				if (inst.exitInfo) throw new Error(`naiberd exited during start: ${JSON.stringify(inst.exitInfo)}`);
				const r = await http(port, 'GET', '/health', { timeoutMs: 1000, host });
				return r.status === 200;
			}, opts.healthTimeoutMs ?? 10000, 'GET /health to answer 200', 50);
		} catch (e) {
			if (inst.exitInfo) e.message += `\n${inst.log}`;
			throw e;
		}
	}
	return inst;
}

// -------------------------------------------------------------------- HTTP

/* One request with node:http on a fresh connection (to host: 127.0.0.1 unless given). */
export function http(port, method, p, { headers = {}, body, timeoutMs = 5000, host = '127.0.0.1' } = {}) {
	return new Promise((resolve, reject) => {
		const req = nodeHttp.request({ host, port, method, path: p, headers, agent: false });
		const timer = setTimeout(() => {
			req.destroy(new Error(`timeout after ${timeoutMs} ms: ${method} ${p}`));
		}, timeoutMs);
		req.on('error', (e) => { clearTimeout(timer); reject(e); });
		req.on('response', (res) => {
			const chunks = [];
			res.on('data', (c) => chunks.push(c));
			res.on('error', (e) => { clearTimeout(timer); reject(e); });
			res.on('end', () => {
				clearTimeout(timer);
				const text = Buffer.concat(chunks).toString('utf8');
				let json;
				try { json = JSON.parse(text); } catch { /* not JSON */ }
				resolve({ status: res.statusCode, headers: res.headers, body: text, json });
			});
		});
		if (body !== undefined) req.write(body);
		req.end();
	});
}

/*
 * Parse as many complete HTTP/1.x responses as buf holds.  A response
 * without Content-Length (and not chunked) takes the rest of the buffer
 * when `eof` is set.  Returns {responses, rest}.
 */
export function parseResponses(buf, eof = false) {
	const responses = [];
	let off = 0;
	while (off < buf.length) {
		const end = buf.indexOf('\r\n\r\n', off);
		if (end < 0) break;
		const head = buf.subarray(off, end).toString('latin1');
		const lines = head.split('\r\n');
		const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
		if (!m) break;
		const headers = {};
		for (const l of lines.slice(1)) {
			const i = l.indexOf(':');
			if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
		}
		const status = Number(m[2]);
		let bodyEnd;
		const bodyStart = end + 4;
		if (status === 101 || status === 204 || status === 304 || (status >= 100 && status < 200)) {
			bodyEnd = bodyStart;
		} else if (headers['content-length'] !== undefined) {
			bodyEnd = bodyStart + Number(headers['content-length']);
			if (bodyEnd > buf.length) break;
		} else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
			let p = bodyStart;
			const parts = [];
			let ok = false;
			for (;;) {
				const le = buf.indexOf('\r\n', p);
				if (le < 0) break;
				const n = parseInt(buf.subarray(p, le).toString('latin1'), 16);
				if (Number.isNaN(n)) break;
				if (n === 0) {
					const te = buf.indexOf('\r\n\r\n', le - 2);
					if (te < 0) break;
					p = te + 4;
					ok = true;
					break;
				}
				if (le + 2 + n + 2 > buf.length) break;
				parts.push(buf.subarray(le + 2, le + 2 + n));
				p = le + 2 + n + 2;
			}
			if (!ok) break;
			responses.push({ version: m[1], status, reason: m[3] ?? '', headers,
			    body: Buffer.concat(parts).toString('utf8') });
			off = p;
			continue;
		} else if (eof) {
			bodyEnd = buf.length;
		} else {
			break;
		}
		responses.push({ version: m[1], status, reason: m[3] ?? '', headers,
		    body: buf.subarray(bodyStart, bodyEnd).toString('utf8') });
		off = bodyEnd;
	}
	return { responses, rest: buf.subarray(off) };
}

/*
 * Raw TCP exchange.  data: string | Buffer | array of them (written in
 * order, `gapMs` apart).  Resolves when the server closes, when
 * `responses` complete responses have arrived, or after timeoutMs
 * (timedOut set; the socket is then destroyed).  Never rejects on
 * ECONNRESET/EPIPE: they count as a close.  Result: {buf, text, closed,
 * timedOut, error, responses, status (of the first response or null)}.
 */
export function raw(port, data, { timeoutMs = 5000, responses: want = 0, end = false,
    gapMs = 0 } = {}) {
	return new Promise((resolve) => {
		const sock = net.connect({ host: '127.0.0.1', port });
		const chunks = [];
		let closed = false, timedOut = false, error = null, finished = false;
		const finish = () => {
			if (finished) return;
			finished = true;
			clearTimeout(timer);
			sock.destroy();
			const buf = Buffer.concat(chunks);
			const { responses } = parseResponses(buf, closed);
			resolve({ buf, text: buf.toString('latin1'), closed, timedOut, error, responses,
			    status: responses[0]?.status ?? null });
		};
		const timer = setTimeout(() => { timedOut = true; finish(); }, timeoutMs);
		sock.on('data', (c) => {
			chunks.push(c);
			if (want > 0 && parseResponses(Buffer.concat(chunks)).responses.length >= want) finish();
		});
		sock.on('error', (e) => { error = e; closed = true; finish(); });
		sock.on('close', () => { closed = true; finish(); });
		sock.on('connect', async () => {
			const parts = Array.isArray(data) ? data : [data];
			for (let i = 0; i < parts.length; i++) {
				if (finished) return;
				if (i > 0 && gapMs) await sleep(gapMs);
				if (finished) return;
				sock.write(parts[i]);
			}
			if (end && !finished) sock.end();
		});
	});
}

/*
 * Open a raw connection and keep it (for slowloris and keep-alive
 * checks).  Returns {sock, write, closed (promise of {buf, error}), data()}.
 */
export function rawConn(port) {
	const sock = net.connect({ host: '127.0.0.1', port });
	const chunks = [];
	const closed = new Promise((resolve) => {
		let error = null;
		sock.on('error', (e) => { error = e; });
		sock.on('close', () => resolve({ buf: Buffer.concat(chunks), error }));
	});
	const connected = new Promise((resolve, reject) => {
		sock.once('connect', resolve);
		sock.once('error', reject);
	});
	connected.catch(() => {});
	sock.on('data', (c) => chunks.push(c));
	scope().defer(() => sock.destroy());
	return {
		sock, closed, connected,
		write: (d) => new Promise((r) => sock.write(d, () => r())),
		data: () => Buffer.concat(chunks),
		destroy: () => sock.destroy(),
	};
}

/* GET /metrics, parsed to { 'name{labels}': number }. */
export async function metrics(port, token, host) {
	const headers = token ? { Authorization: `Bearer ${token}` } : {};
	const r = await http(port, 'GET', '/metrics', { headers, host });
	if (r.status !== 200) throw new Error(`GET /metrics: status ${r.status}: ${r.body.slice(0, 200)}`);
	return parseMetrics(r.body);
}

export function parseMetrics(text) {
	const out = {};
	for (const line of text.split('\n')) {
		if (!line || line.startsWith('#')) continue;
		const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)(?:\s+\d+)?$/.exec(line.trim());
		if (m) out[m[1]] = Number(m[2]);
	}
	return out;
}

// ------------------------------------------------------- Twilio stream peer

/* 160 bytes of μ-law (20 ms at 8 kHz), different per chunk. */
export function mulawFrame(chunk) {
	const b = Buffer.alloc(160);
	for (let i = 0; i < 160; i++) b[i] = (0x7f + ((i * 7 + chunk * 13) & 0x3f)) & 0xff;
	return b;
}

/*
 * A Twilio Media Streams client (Twilio is the WebSocket client) for
 * ws://127.0.0.1:<port>/outbound-media-stream, signed with
 * base64(HMAC-SHA1(token, streamUrl)) computed by the twilio package.
 * Options: callSid, streamSid, token, streamUrl, customParameters,
 * signature (string overrides, null omits the header), headers, path,
 * accountSid, host (127.0.0.1; an IPv6 address is bracketed in the URL).
 *
 * s.opened resolves on 101 and rejects with err.status set on any other
 * answer (err.code for connection errors).  s.closed resolves with
 * {code, reason}.  s.received holds parsed messages from naiberd.
 */
export function twilioStream(port, o = {}) {
	const callSid = o.callSid ?? newCallSid();
	const streamSid = o.streamSid ?? newStreamSid();
	const accountSid = o.accountSid ?? 'AC00000000000000000000000000000000';
	const streamUrl = o.streamUrl ?? DEFAULT_STREAM_URL;
	const customParameters = o.customParameters ?? { call_type: 'general' };
	const headers = { ...(o.headers ?? {}) };
	let signature = o.signature;
	if (signature === undefined) {
		if (!o.token) throw new Error('twilioStream: token needed to sign');
		signature = twilio.getExpectedTwilioSignature(o.token, streamUrl, {});
	}
	if (signature !== null) headers['X-Twilio-Signature'] = signature;
	const host = o.host ?? '127.0.0.1';
	const url = `ws://${host.includes(':') ? `[${host}]` : host}:${port}${o.path ?? '/outbound-media-stream'}`;
	const ws = new WebSocket(url, { headers, perMessageDeflate: false,
	    handshakeTimeout: o.handshakeTimeoutMs ?? 5000 });
	let seq = 0, chunk = 0;
	const s = {
		ws, callSid, streamSid, accountSid, signature, received: [],
		framesSent: 0, upgradeStatus: null, closeInfo: null,
	};
	s.opened = new Promise((resolve, reject) => {
		ws.on('open', () => { s.upgradeStatus = 101; resolve(); });
		ws.on('unexpected-response', (req, res) => {
			s.upgradeStatus = res.statusCode;
			const chunks = [];
			res.on('data', (c) => chunks.push(c));
			let failed = false;
			const fail = () => {
				if (failed) return;
				failed = true;
				const e = new Error(`upgrade answered ${res.statusCode} instead of 101`);
				e.status = res.statusCode;
				e.body = Buffer.concat(chunks).toString('utf8');
				reject(e);
				// Aborts the handshake: 'close' follows.
				ws.terminate();
			};
			res.on('end', fail);
			res.on('error', fail);
			setTimeout(fail, 1000);
		});
		ws.on('error', (e) => reject(e));
	});
	s.opened.catch(() => {});
	s.closed = new Promise((resolve) => {
		ws.on('close', (code, reason) => {
			s.closeInfo = { code, reason: reason.toString() };
			resolve(s.closeInfo);
		});
	});
	ws.on('error', () => {});
	ws.on('message', (data, isBinary) => {
		if (isBinary) { s.received.push({ binary: true, data }); return; }
		try { s.received.push(JSON.parse(data.toString())); }
		catch { s.received.push({ text: data.toString() }); }
	});
	scope().defer(() => { if (ws.readyState !== WebSocket.CLOSED) ws.terminate(); });

	const send = (obj) => new Promise((resolve, reject) => {
		if (ws.readyState !== WebSocket.OPEN)
			return reject(new Error(`stream ${callSid}: send on a socket in state ${ws.readyState}`));
		ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj), (err) => err ? reject(err) : resolve());
	});
	s.send = send;
	s.sendConnected = () => send({ event: 'connected', protocol: 'Call', version: '1.0.0' });
	s.sendStart = () => send({
		event: 'start', sequenceNumber: String(++seq), streamSid,
		start: { streamSid, accountSid, callSid, tracks: ['inbound'], customParameters,
		    mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } },
	});
	/* n media frames back to back; resolves when the last is written. */
	s.sendMedia = async (n = 1) => {
		// Every send's promise is awaited (Promise.all), so a refused
		// one is this call's rejection, never an unhandled one.
		let batch = [];
		for (let i = 0; i < n; i++) {
			chunk++;
			batch.push(send({ event: 'media', sequenceNumber: String(++seq), streamSid,
			    media: { track: 'inbound', chunk: String(chunk), timestamp: String(chunk * 20),
			    payload: mulawFrame(chunk).toString('base64') } }));
			s.framesSent++;
			if (i % 64 === 63) {
				await Promise.all(batch);
				batch = [];
			}
		}
		await Promise.all(batch);
	};
	/* n media frames paced every intervalMs (real-time audio). */
	s.sendMediaPaced = async (n, intervalMs = 20) => {
		for (let i = 0; i < n; i++) {
			await s.sendMedia(1);
			await sleep(intervalMs);
		}
	};
	s.sendDtmf = (digit) => send({ event: 'dtmf', sequenceNumber: String(++seq), streamSid,
	    dtmf: { track: 'inbound_track', digit: String(digit) } });
	s.sendMark = (name) => send({ event: 'mark', sequenceNumber: String(++seq), streamSid,
	    mark: { name } });
	s.sendStop = () => send({ event: 'stop', sequenceNumber: String(++seq), streamSid,
	    stop: { accountSid, callSid } });
	s.close = (code = 1000) => {
		if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(code);
		return s.closed;
	};
	s.terminate = () => ws.terminate();
	s.isOpen = () => ws.readyState === WebSocket.OPEN;
	return s;
}

// ------------------------------------------------------------------- Redis

function opensslRun(args, cwd) {
	const r = spawnSync('openssl', args, { cwd, encoding: 'utf8', timeout: 30000 });
	if (r.error) throw new Error(`openssl ${args.join(' ')}: ${r.error.message}`);
	if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
	return r.stdout;
}

/*
 * A throw-away PKI made with the openssl CLI in dir (EC P-256, 2 days):
 *   caFile, caKeyFile           the CA ("naiberd test Redis CA")
 *   certFile, keyFile           server certificate by that CA, SANs
 *                               opts.sans (default IP:127.0.0.1, IP:::1,
 *                               DNS:localhost, DNS:redis.naiber.test)
 *   clientCertFile, clientKeyFile  client certificate by that CA (mTLS)
 *   wrongCaFile, wrongCaKeyFile an unrelated CA, same key type, other name
 */
export function makeTlsPki(dir, opts = {}) {
	const sans = opts.sans ?? 'IP:127.0.0.1,IP:::1,DNS:localhost,DNS:redis.naiber.test';
	const f = (n) => path.join(dir, n);
	const ca = (name, cn) => opensslRun(['req', '-x509', '-newkey', 'ec', '-pkeyopt',
	    'ec_paramgen_curve:P-256', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.pem`),
	    '-days', '2', '-subj', `/O=naiberd tests/CN=${cn}`,
	    '-addext', 'basicConstraints=critical,CA:TRUE',
	    '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
	const leaf = (name, cn, ext) => {
		fs.writeFileSync(f(`${name}.ext`), `basicConstraints=critical,CA:FALSE\n` +
		    `keyUsage=critical,digitalSignature,keyEncipherment\n${ext}` +
		    `subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n`);
		opensslRun(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
		    '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/O=naiberd tests/CN=${cn}`], dir);
		opensslRun(['x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
		    '-set_serial', '0x' + randomBytes(8).toString('hex'), '-days', '2',
		    '-out', f(`${name}.pem`), '-extfile', f(`${name}.ext`)], dir);
	};
	ca('ca', 'naiberd test Redis CA');
	ca('wrong-ca', 'unrelated test CA');
	leaf('server', opts.cn ?? 'redis.naiber.test', `extendedKeyUsage=serverAuth\nsubjectAltName=${sans}\n`);
	leaf('client', 'naiberd test client', 'extendedKeyUsage=clientAuth\n');
	for (const n of ['ca.key', 'wrong-ca.key', 'server.key', 'client.key']) fs.chmodSync(f(n), 0o600);
	return {
		dir, caFile: f('ca.pem'), caKeyFile: f('ca.key'), certFile: f('server.pem'), keyFile: f('server.key'),
		clientCertFile: f('client.pem'), clientKeyFile: f('client.key'),
		wrongCaFile: f('wrong-ca.pem'), wrongCaKeyFile: f('wrong-ca.key'),
	};
}

/* redis-cli with args; resolves {code, stdout, stderr} (never rejects on exit status). */
function redisCli(args, timeoutMs) {
	return new Promise((resolve) => {
		const p = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] });
		let stdout = '', stderr = '';
		p.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
		p.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
		const timer = setTimeout(() => { try { p.kill('SIGKILL'); } catch { /* gone */ } }, timeoutMs);
		p.on('error', (e) => { clearTimeout(timer); resolve({ code: null, stdout, stderr: stderr + e.message }); });
		p.on('close', (code, signal) => {
			clearTimeout(timer);
			resolve({ code, signal, stdout, stderr });
		});
	});
}

/*
 * A real redis-server on a free loopback port (or opts.port, e.g. to
 * restart one on the port a daemon already uses) in a temp dir.
 * Options (all optional; none changes the default instance):
 *   tls         true: TLS only (--port 0 --tls-port PORT, --tls-auth-clients
 *               from tlsAuthClients, default 'no'), with a throw-away PKI
 *               (makeTlsPki) or opts.tlsFiles (r.tlsFiles of an earlier
 *               instance, to restart with the same certificates).  Then
 *               r.port = r.tlsPort, r.url = rediss://127.0.0.1:PORT, and
 *               r.caFile, r.wrongCaFile, r.certFile, r.keyFile,
 *               r.clientCertFile, r.clientKeyFile, r.tlsFiles; r.conn
 *               ({port, tls: {ca}}, plus the client certificate when
 *               tlsAuthClients is 'yes') is what redisCall / redisPipeline /
 *               redisMonitor take (a bare r.port would speak plain TCP
 *               to the TLS port: callContext(r, ...) does not work on a
 *               TLS-only instance); r.connWith({ca, servername, cert,
 *               key, ...}) the same with other node:tls options.
 *   plainPort   with tls: also a plain TCP port, r.plainPort
 *   aclUser     {name, password}: an ACL user with every right
 *               (--user NAME on >PASSWORD ~* &* +@all); the default user
 *               stays (nopass).  r.aclUser, r.userUrl
 *               (redis[s]://NAME:PASSWORD@127.0.0.1:PORT).  For other
 *               users, a test sends ACL SETUSER itself.
 *   bind        '127.0.0.1' (e.g. '127.0.0.1 ::1')
 *   args        extra redis-server arguments
 * r.cli(args, {cacert, timeoutMs}) runs redis-cli against the instance
 * (with --tls --cacert r.caFile on a TLS one; cacert: another CA file)
 * and resolves {code, stdout, stderr}.
 */
export async function startRedis(opts = {}) {
	const sc = scope();
	const dir = makeTempDir('naiberd-redis-');
	const port = opts.port ?? await freePort();
	const bin = 'redis-server';
	const tlsFiles = !opts.tls ? null : opts.tlsFiles ?? makeTlsPki(makeTempDir('naiberd-redis-tls-'));
	const plainPort = tlsFiles && opts.plainPort ? await freePort() : null;
	const portArgs = !tlsFiles ? ['--port', String(port)]
	    : ['--port', String(plainPort ?? 0), '--tls-port', String(port),
		'--tls-cert-file', tlsFiles.certFile, '--tls-key-file', tlsFiles.keyFile,
		'--tls-ca-cert-file', tlsFiles.caFile, '--tls-auth-clients', opts.tlsAuthClients ?? 'no'];
	const aclArgs = opts.aclUser ? ['--user', opts.aclUser.name, 'on', `>${opts.aclUser.password}`,
	    '~*', '&*', '+@all'] : [];
	const proc = spawn(bin, [...portArgs, '--bind', ...(opts.bind ?? '127.0.0.1').split(/\s+/), '--save', '',
	    '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--protected-mode', 'no',
	    ...aclArgs, ...(opts.args ?? [])],
	    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
	const r = { port, url: `redis://127.0.0.1:${port}`, proc, pid: proc.pid, dir, log: '', exitInfo: null };
	r.conn = port;
	if (tlsFiles) {
		const ca = fs.readFileSync(tlsFiles.caFile);
		r.connWith = (over = {}) => ({
			port, host: '127.0.0.1', tls: { ca, ...over },
			toString: () => `tls:127.0.0.1:${port}`,
		});
		// With tlsAuthClients 'yes', r.conn presents the client certificate.
		const client = opts.tlsAuthClients === 'yes'
		    ? { cert: fs.readFileSync(tlsFiles.clientCertFile), key: fs.readFileSync(tlsFiles.clientKeyFile) } : {};
		Object.assign(r, tlsFiles, { tlsFiles, tlsPort: port, plainPort, url: `rediss://127.0.0.1:${port}`,
		    conn: r.connWith(client) });
	}
	if (opts.aclUser) {
		const u = opts.aclUser;
		r.aclUser = { ...u };
		r.userUrl = `${tlsFiles ? 'rediss' : 'redis'}://${encodeURIComponent(u.name)}:` +
		    `${encodeURIComponent(u.password)}@127.0.0.1:${port}`;
	}
	r.cli = (args, { cacert, timeoutMs = 5000 } = {}) => redisCli(['-h', '127.0.0.1', '-p', String(port),
	    ...(tlsFiles ? ['--tls', '--cacert', cacert ?? tlsFiles.caFile] : []), ...args], timeoutMs);
	let exe = null;
	proc.stdout.setEncoding('utf8').on('data', (d) => { r.log += d; });
	proc.stderr.setEncoding('utf8').on('data', (d) => { r.log += d; });
	r.exited = new Promise((resolve) => proc.on('exit', (code, signal) => {
		r.exitInfo = { code, signal };
		resolve(r.exitInfo);
	}));
	trackProc(proc.pid, null);
	sc.addLog(`redis-${port}`, () => r.log);
	r.stop = async () => {
		if (r.exitInfo === null) {
			try { proc.kill('SIGKILL'); } catch { /* gone */ }
			await withTimeout(r.exited, 5000, 'redis exit').catch(() => {});
		}
		liveProcs.delete(proc.pid);
	};
	sc.defer(r.stop);
	await waitFor(async () => {
		if (r.exitInfo) throw new Error(`redis-server exited: ${r.log}`);
		if (tlsFiles) {
			const res = await redisPipeline(r.conn, [['PING']], { timeoutMs: 500 }).catch(() => null);
			return res && res[0] === 'PONG';
		}
		const res = await raw(port, 'PING\r\n', { timeoutMs: 500 }).catch(() => null);
		return res && res.text.startsWith('+PONG');
	}, 10000, 'redis-server to answer PING');
	exe = exeOf(proc.pid);
	trackProc(proc.pid, exe);
	/* One command via RESP inline protocol; returns the raw reply text. */
	r.cmd = async (...argv) => {
		const enc = `*${argv.length}\r\n` + argv.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('');
		if (tlsFiles) return rawRedisTls(r.conn, enc, 300);
		const res = await raw(port, enc, { timeoutMs: 300 });
		return res.text;
	};
	/* One command, reply parsed (RESP); an error reply is thrown. */
	r.call = (...argv) => redisCall(r.conn, ...argv);
	r.pipeline = (cmds, o) => redisPipeline(r.conn, cmds, o);
	return r;
}

/* r.cmd over TLS: what arrives within timeoutMs (or until close), as text. */
function rawRedisTls(target, data, timeoutMs) {
	return new Promise((resolve) => {
		const sock = redisConnect(target);
		const chunks = [];
		let done = false;
		const finish = () => {
			if (done) return;
			done = true;
			clearTimeout(timer);
			sock.destroy();
			resolve(Buffer.concat(chunks).toString('latin1'));
		};
		const timer = setTimeout(finish, timeoutMs);
		sock.on('data', (c) => chunks.push(c));
		sock.on('error', finish);
		sock.on('close', finish);
		sock.write(data);
	});
}

// -------------------------------------------------------------- log helpers

/* Regexes for the supervisor's log lines (DESIGN / test brief). */
export const RX = {
	accepted: /worker (\d+) accepted stream[^\n]*?handoff (\d+) us/,
	callInfo: /worker (\d+) call (CA[0-9a-fA-F]+) stream (MZ[0-9a-fA-F]+) type (\S+)/,
	// A reason may hold spaces ("stream not bound"): up to " frames_in=".
	done: /worker (\d+) call (CA[0-9a-fA-F]+) done: reason=(.+?) frames_in=(\d+)/,
	badSig: /refused: bad X-Twilio-Signature/,
};

export function callInfoLine(inst, callSid, since = 0) {
	return inst.waitLog(new RegExp(`worker (\\d+) call ${callSid} stream (MZ[0-9a-fA-F]+) type (\\S+)`), 5000, since);
}

export function doneLine(inst, callSid, timeoutMs = 5000, since = 0) {
	return inst.waitLog(new RegExp(`worker (\\d+) call ${callSid} done: reason=(.+?) frames_in=(\\d+)`), timeoutMs, since);
}

// ======================================================================
// Call-path helpers: a RESP client, the fake Twilio REST API, signed
// Twilio webhooks, a strict little XML parser and a whole "stack"
// (redis-server + fake Twilio + naiberd wired together).
// ======================================================================

import { startFakeTwilio as startFakeTwilioPeer } from '../peers/fake-twilio.mjs';
import { startFakeDns as startFakeDnsPeer } from '../peers/fake-dns.mjs';

// ------------------------------------------------------- RESP (Redis) client

export class RedisError extends Error {}

/* One RESP2 reply at buf[off]: {value, off} or null when incomplete. */
export function respParse(buf, off = 0) {
	const le = buf.indexOf('\r\n', off);
	if (le < 0) return null;
	const type = String.fromCharCode(buf[off]);
	const line = buf.subarray(off + 1, le).toString('utf8');
	const next = le + 2;
	switch (type) {
	case '+': return { value: line, off: next };
	case '-': return { value: new RedisError(line), off: next };
	case ':': return { value: Number(line), off: next };
	case '$': {
		const n = Number(line);
		if (n < 0) return { value: null, off: next };
		if (buf.length < next + n + 2) return null;
		return { value: buf.subarray(next, next + n).toString('utf8'), off: next + n + 2 };
	}
	case '*': {
		const n = Number(line);
		if (n < 0) return { value: null, off: next };
		const arr = [];
		let o = next;
		for (let i = 0; i < n; i++) {
			const r = respParse(buf, o);
			if (!r) return null;
			arr.push(r.value);
			o = r.off;
		}
		return { value: arr, off: o };
	}
	default:
		throw new Error(`RESP: unexpected type byte ${JSON.stringify(type)}`);
	}
}

function respEncode(argv) {
	const parts = [`*${argv.length}\r\n`];
	for (const a of argv) {
		const s = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
		parts.push(`$${s.length}\r\n`, s, '\r\n');
	}
	return Buffer.concat(parts.map((p) => Buffer.isBuffer(p) ? p : Buffer.from(p)));
}

/*
 * A connection to Redis.  target: a port (plain TCP to 127.0.0.1, as
 * everywhere here) or {port, host ('127.0.0.1'), tls} where tls, when
 * set, holds node:tls connect options ({ca, servername, cert, key, ...}):
 * startRedis({tls: true}) gives one as r.conn (r.connWith(over) for
 * another CA or name).  redisPipeline, redisCall and redisMonitor take
 * either.
 */
export function redisConnect(target) {
	if (target !== null && typeof target === 'object') {
		const host = target.host ?? '127.0.0.1';
		return target.tls ? nodeTls.connect({ host, port: target.port, ...target.tls })
		    : net.connect({ host, port: target.port });
	}
	return net.connect({ host: '127.0.0.1', port: target });
}

/*
 * Send commands (arrays of arguments) on a fresh connection, pipelined;
 * resolves with their replies in order (error replies as RedisError
 * values, not thrown).  Bounded by timeoutMs.
 */
export function redisPipeline(port, cmds, { timeoutMs = 3000 } = {}) {
	return new Promise((resolve, reject) => {
		const sock = redisConnect(port);
		let buf = Buffer.alloc(0);
		const out = [];
		let off = 0, settled = false;
		const finish = (err) => {
			if (settled) return;
			settled = true;
			clearTimeout(timer);
			sock.destroy();
			if (err) reject(err); else resolve(out);
		};
		const timer = setTimeout(() => finish(new Error(`redis ${port}: no reply within ${timeoutMs} ms`)), timeoutMs);
		sock.on('error', (e) => finish(e));
		sock.on('close', () => finish(new Error(`redis ${port}: connection closed after ${out.length}/${cmds.length} replies`)));
		sock.on('connect', () => sock.write(Buffer.concat(cmds.map(respEncode))));
		sock.on('data', (c) => {
			buf = Buffer.concat([buf, c]);
			for (;;) {
				let r;
				try { r = respParse(buf, off); } catch (e) { finish(e); return; }
				if (!r) break;
				out.push(r.value);
				off = r.off;
				if (out.length === cmds.length) { finish(null); return; }
			}
		});
	});
}

/* One command; an error reply is thrown. */
export async function redisCall(port, ...argv) {
	const [v] = await redisPipeline(port, [argv]);
	if (v instanceof RedisError) throw v;
	return v;
}

/*
 * MONITOR on its own connection: m.lines collects every command line
 * Redis reports ('+1700000000.123 [0 127.0.0.1:5555] "SCAN" "0" ...');
 * await m.ready before acting; m.stop() closes it.  m.commands() gives
 * the upper-cased command names.
 */
export function redisMonitor(port) {
	const sock = redisConnect(port);
	const m = { lines: [] };
	let buf = '';
	let readyResolve, readyReject;
	m.ready = new Promise((res, rej) => { readyResolve = res; readyReject = rej; });
	m.ready.catch(() => {});
	const timer = setTimeout(() => readyReject(new Error('MONITOR: no +OK within 3000 ms')), 3000);
	sock.on('error', (e) => { clearTimeout(timer); readyReject(e); });
	sock.on('connect', () => sock.write('MONITOR\r\n'));
	sock.setEncoding('utf8').on('data', (d) => {
		buf += d;
		let i;
		while ((i = buf.indexOf('\r\n')) >= 0) {
			const line = buf.slice(0, i);
			buf = buf.slice(i + 2);
			if (line === '+OK') { clearTimeout(timer); readyResolve(); continue; }
			if (line.startsWith('+')) m.lines.push(line.slice(1));
		}
	});
	m.commands = () => m.lines.map((l) => {
		const x = /\] "([^"]*)"/.exec(l);
		return x ? x[1].toUpperCase() : '';
	});
	m.stop = () => { clearTimeout(timer); sock.destroy(); };
	scope().defer(m.stop);
	return m;
}

// ---------------------------------------------------------- fake Twilio

/* startFakeTwilio from tests/peers, stopped at the end of the test. */
export async function startFakeTwilio(opts) {
	const tw = await startFakeTwilioPeer(opts);
	scope().defer(() => tw.close());
	scope().addLog(`fake-twilio-${tw.port}`, () => tw.requests.map((r) =>
	    `${new Date(r.t).toISOString()} ${r.method} ${r.path} ${r.body} -> ` +
	    JSON.stringify(r.answer)).join('\n'));
	return tw;
}

// ------------------------------------------------------------- fake DNS

/*
 * startFakeDns from tests/peers/fake-dns.mjs (an authoritative DNS server
 * on UDP and TCP, same port; see that file), closed at the end of the
 * test.  Point naiberd's resolver at dns.resolvConf.  Its queries are
 * printed with the logs of a failed test.
 */
export async function startFakeDns(opts = {}) {
	const dir = opts.dir ?? makeTempDir('naiberd-dns-');
	const dns = await startFakeDnsPeer({ ...opts, dir });
	scope().defer(() => dns.close());
	scope().addLog(`fake-dns-${dns.port}`, () => `${dns.resolvConfText}mode ${dns.mode}\n` +
	    dns.queries.map((q) => `${new Date(q.time).toISOString()} ${q.proto} ${q.from} ` +
	    `id ${q.id} ${q.type} ${q.name}`).join('\n'));
	return dns;
}

// ----------------------------------------------------------------- stack

export const TEST_PHONE = '+15550002222';

/*
 * redis-server + fake Twilio + naiberd, wired: REDIS_URL,
 * TWILIO_API_BASE, PHONE_NUMBER and the Twilio credentials agree.
 * Options: those of startNaiberd, plus redis (an existing startRedis()
 * instance), twilio (extra startFakeTwilio options), waitRedis (true:
 * poll GET /sessions until naiberd answers from Redis).  The fake
 * expects From/Url/StatusCallback from the instance's configuration
 * when it is static.  Returns {d, redis, tw}.
 */
export async function startCallStack(opts = {}) {
	const { redis: givenRedis, twilio: twOpts = {}, waitRedis = true, env: envOver = {}, ...rest } = opts;
	const redis = givenRedis ?? await startRedis();
	const accountSid = envOver.TWILIO_ACCOUNT_SID ?? 'AC00000000000000000000000000000000';
	const authToken = envOver.TWILIO_AUTH_TOKEN ?? hex(16);
	const twilioUrl = 'TWILIO_URL' in envOver ? envOver.TWILIO_URL : 'https://bridge.test';
	const expect = { from: envOver.TWILIO_NUMBER ?? '+15550001111' };
	if (twilioUrl) {
		expect.url = `${twilioUrl}/twiml`;
		expect.statusCallback = `${twilioUrl}/status-callback`;
	}
	const tw = await startFakeTwilio({ accountSid, authToken, expect, ...twOpts });
	const d = await startNaiberd({
		...rest,
		env: {
			REDIS_URL: redis.url, TWILIO_API_BASE: tw.url, PHONE_NUMBER: TEST_PHONE,
			TWILIO_ACCOUNT_SID: accountSid, TWILIO_AUTH_TOKEN: authToken, ...envOver,
		},
	});
	if (waitRedis) {
		await waitFor(async () => (await apiGet(d, '/sessions', { timeoutMs: 1000 })).status === 200,
		    5000, 'GET /sessions to answer 200 (naiberd connected to Redis)', 50);
	}
	return { d, redis, tw };
}

// ------------------------------------------------------------- API calls

/*
 * POST to a token route.  body: undefined (none), a string (sent as
 * is) or a value (JSON).  token: d.apiToken unless given; null (or no
 * token configured) sends no Authorization header.
 */
export function apiPost(d, p, body, { token = d.apiToken, headers = {}, timeoutMs = 5000 } = {}) {
	const h = { ...headers };
	if (token !== null && token !== undefined) h.Authorization = `Bearer ${token}`;
	let b;
	if (body !== undefined) {
		b = typeof body === 'string' ? body : JSON.stringify(body);
		h['Content-Type'] ??= 'application/json';
	}
	return http(d.port, 'POST', p, { headers: h, body: b, timeoutMs, host: d.host });
}

export function apiGet(d, p, { token = d.apiToken, headers = {}, timeoutMs = 5000 } = {}) {
	const h = { ...headers };
	if (token !== null && token !== undefined) h.Authorization = `Bearer ${token}`;
	return http(d.port, 'GET', p, { headers: h, timeoutMs, host: d.host });
}

/* POST /call (or /call/health-check) that must succeed; returns the sid. */
export async function placeCall(d, { path: p = '/call', body } = {}) {
	const r = await apiPost(d, p, body, { timeoutMs: 15000 });
	if (r.status !== 200 || r.json?.success !== true || typeof r.json?.callSid !== 'string')
		throw new Error(`POST ${p} ${JSON.stringify(body)}: ${r.status} ${r.body}`);
	return r.json.callSid;
}

/* The stored call:{sid} context, parsed (null if absent). */
export async function callContext(redis, sid) {
	const v = await redisCall(redis.port, 'GET', `call:${sid}`);
	return v === null ? null : JSON.parse(v);
}

// ------------------------------------------------------ Twilio webhooks

/* Form encoding; an array value repeats the key. */
export function formEncode(params) {
	const u = new URLSearchParams();
	for (const [k, v] of Object.entries(params)) {
		if (Array.isArray(v)) for (const x of v) u.append(k, x);
		else u.append(k, v);
	}
	return u.toString();
}

/* What Twilio posts to the TwiML URL of an answered outbound call. */
export function voiceParams(callSid, over = {}) {
	return {
		AccountSid: 'AC00000000000000000000000000000000', ApiVersion: '2010-04-01',
		CallSid: callSid, CallStatus: 'in-progress', Called: TEST_PHONE, Caller: '+15550001111',
		Direction: 'outbound-api', From: '+15550001111', To: TEST_PHONE, ...over,
	};
}

/* What Twilio posts to the StatusCallback URL. */
export function statusParams(callSid, callStatus, seq = 0, over = {}) {
	const p = voiceParams(callSid, {
		CallStatus: callStatus, CallbackSource: 'call-progress-events',
		Timestamp: 'Tue, 03 Mar 2026 10:14:45 +0000', SequenceNumber: String(seq), ...over,
	});
	if (['completed', 'busy', 'no-answer', 'failed', 'canceled'].includes(callStatus) && !('CallDuration' in over)) {
		p.CallDuration = callStatus === 'completed' ? '42' : '0';
		p.Duration = callStatus === 'completed' ? '1' : '0';
	}
	return p;
}

/*
 * A Twilio webhook POST to naiberd: form body from `params` (or
 * `sendParams`, to tamper with what was signed), X-Twilio-Signature
 * computed by the twilio package over `url` (default TWILIO_URL + route)
 * and `params`.  signature: a string overrides, null omits the header.
 */
/*
 * The per-call Media Stream URL naiberd puts in its TwiML, computed here
 * independently: base + "/" + CallSid + "." + base64url of the first 16
 * bytes of HMAC-SHA256(auth token, "naiberd stream " + CallSid).
 */
export function streamToken(authToken, callSid) {
	const mac = createHmac('sha256', authToken).update(`naiberd stream ${callSid}`).digest().subarray(0, 16);
	return `${callSid}.${mac.toString('base64url')}`;
}

export function callStreamUrl(base, authToken, callSid) {
	return `${base}/${streamToken(authToken, callSid)}`;
}

export function twilioWebhook(d, route, params, { url, token = d.authToken, signature,
    sendParams, headers = {}, timeoutMs = 5000, twilioUrl } = {}) {
	const base = twilioUrl ?? d.env.TWILIO_URL;
	const signUrl = url ?? `${base}${route}`;
	const sig = signature === undefined ? twilio.getExpectedTwilioSignature(token, signUrl, params) : signature;
	const h = { 'Content-Type': 'application/x-www-form-urlencoded', ...headers };
	if (sig !== null) h['X-Twilio-Signature'] = sig;
	return http(d.port, 'POST', route, { headers: h, body: formEncode(sendParams ?? params), timeoutMs,
	    host: d.host });
}

// ------------------------------------------------------------------- XML

/*
 * A strict parser for small XML documents such as TwiML: optional
 * <?xml ...?> prolog, elements, attributes ("..." or '...'), text,
 * comments, the five predefined entities and character references.
 * Throws on anything malformed (unescaped < or & in values, duplicate
 * attributes, mismatched or unclosed tags, content after the root,
 * DOCTYPE).  Returns the root {name, attrs, children, text}; children
 * are elements only, text is the concatenated character data.
 */
export function parseXml(src) {
	let i = 0;
	const fail = (why) => { throw new Error(`XML: ${why} at offset ${i}: ${JSON.stringify(src.slice(i, i + 40))}`); };
	const NAME = /[A-Za-z_:][-A-Za-z0-9_.:]*/y;
	const ws = () => { while (i < src.length && /[ \t\r\n]/.test(src[i])) i++; };
	const name = () => {
		NAME.lastIndex = i;
		const m = NAME.exec(src);
		if (!m) fail('expected a name');
		i += m[0].length;
		return m[0];
	};
	const decode = (s, where) => s.replace(/&([^;]*);|&/g, (all, ent) => {
		if (ent === undefined) fail(`bare & in ${where}`);
		const named = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
		if (ent in named) return named[ent];
		let m = /^#x([0-9A-Fa-f]+)$/.exec(ent) ?? /^#([0-9]+)$/.exec(ent);
		if (!m) fail(`unknown entity &${ent}; in ${where}`);
		return String.fromCodePoint(parseInt(m[1], ent[1] === 'x' ? 16 : 10));
	});
	const misc = () => {
		for (;;) {
			ws();
			if (src.startsWith('<!--', i)) {
				const e = src.indexOf('-->', i + 4);
				if (e < 0) fail('unclosed comment');
				i = e + 3;
			} else return;
		}
	};
	const element = () => {
		if (src[i] !== '<') fail('expected <');
		i++;
		const el = { name: name(), attrs: {}, children: [], text: '' };
		for (;;) {
			const hadWs = /[ \t\r\n]/.test(src[i] ?? '');
			ws();
			if (src.startsWith('/>', i)) { i += 2; return el; }
			if (src[i] === '>') { i++; break; }
			if (!hadWs) fail('expected whitespace before an attribute');
			const an = name();
			ws();
			if (src[i] !== '=') fail('expected =');
			i++;
			ws();
			const q = src[i];
			if (q !== '"' && q !== "'") fail('expected a quoted attribute value');
			const e = src.indexOf(q, i + 1);
			if (e < 0) fail('unclosed attribute value');
			const rawv = src.slice(i + 1, e);
			if (rawv.includes('<')) fail(`< in the value of attribute ${an}`);
			if (Object.hasOwn(el.attrs, an)) fail(`duplicate attribute ${an}`);
			el.attrs[an] = decode(rawv, `attribute ${an}`);
			i = e + 1;
		}
		for (;;) {
			if (i >= src.length) fail(`unclosed element <${el.name}>`);
			if (src.startsWith('</', i)) {
				i += 2;
				const n = name();
				if (n !== el.name) fail(`</${n}> closes <${el.name}>`);
				ws();
				if (src[i] !== '>') fail('expected >');
				i++;
				return el;
			}
			if (src.startsWith('<!--', i)) { misc(); continue; }
			if (src.startsWith('<![CDATA[', i)) {
				const e = src.indexOf(']]>', i);
				if (e < 0) fail('unclosed CDATA');
				el.text += src.slice(i + 9, e);
				i = e + 3;
				continue;
			}
			if (src.startsWith('<!', i) || src.startsWith('<?', i)) fail('unsupported markup');
			if (src[i] === '<') { el.children.push(element()); continue; }
			const e = src.indexOf('<', i);
			const t = src.slice(i, e < 0 ? src.length : e);
			el.text += decode(t, `text of <${el.name}>`);
			i += t.length;
		}
	};
	if (src.startsWith('\ufeff')) i = 1;
	if (src.startsWith('<?xml', i)) {
		const e = src.indexOf('?>', i);
		if (e < 0) fail('unclosed XML declaration');
		if (!/^<\?xml\s+version=(["'])1\.[0-9]\1(\s+encoding=(["'])[A-Za-z0-9._-]+\3)?(\s+standalone=(["'])(yes|no)\5)?\s*$/
		    .test(src.slice(i, e))) fail('malformed XML declaration');
		i = e + 2;
	}
	misc();
	if (src.startsWith('<!DOCTYPE', i)) fail('DOCTYPE not allowed');
	const root = element();
	misc();
	if (i !== src.length) fail('content after the root element');
	return root;
}

/* Every element named `name` in the tree (the root included). */
export function xmlFindAll(el, name, out = []) {
	if (el.name === name) out.push(el);
	for (const c of el.children) xmlFindAll(c, name, out);
	return out;
}

// ------------------------------------------------------------ log helpers

/* A done line whose reason may hold spaces ("stream not bound"). */
export const RX_DONE_ANY = /worker (\d+) call (\S+) done: reason=(.+?) frames_in=(\d+)/;

/* Sum of the metrics whose key matches re (labels included). */
export function metricSum(m, re) {
	let s = 0, n = 0;
	for (const [k, v] of Object.entries(m)) if (re.test(k)) { s += v; n++; }
	return n ? s : undefined;
}
