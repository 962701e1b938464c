#!/usr/bin/env node
// bench.mjs - the driver behind `make bench` (DESIGN section 11).
//
// Starts a real redis-server and a real PostgreSQL (tests/lib/pg.sh through
// pg.mjs) in temporary directories, one person per concurrent call slot
// (id "bu<i>", phone +1555<i>), then for each concurrency N: a fresh
// build/naiberd (-w/-m sized for N, --log-level info, log to a file) and
// build/loadgen, which plays both Twilio (N signed Media Streams, 20 ms
// media each way) and ElevenLabs (signed-URL endpoint + ConvAI WebSocket,
// plain http:// and ws:// on loopback).  The load generator is the only
// peer: instead of POST /call + a fake Twilio REST API, the driver writes
// each call's `call:{sid}` context (callType, phone, nonce, createdAt and
// the firstMessage a PREPARE worker would have stored while the phone rang)
// and `call_type:{sid}` straight into Redis, exactly as the supervisor
// would.  Calls start at BENCH_RAMP per second; relay latency, loss and CPU
// are measured over the steady-state window (BENCH_SECONDS), while the
// set-up figures (upgrade round trip, handoff, setup) cover every call of
// the level, i.e. the ramp.
//
// The floor: at each level the driver also runs relayfloor (../shared/bench/
// floor, built into build/relayfloor by bench.mk) in `proc` mode at the same
// N and window, just before or just after naiberd's level (the order
// alternates from level to level): the cheapest process-per-call relay of
// the same traffic, whose CPU per call-minute naiberd is judged against.
// Without relayfloor the run says so and goes on without floor columns.
// Once per run it also records the machine's syscall (relayfloor syscall)
// and fork + _exit + waitpid (build/forkcost) costs.
//
// Output: one JSON line per N and a summary JSON line on stdout, tables on
// stderr, and tests/bench/RESULTS.md (re)written with the figures, the
// command lines, the machine and the date, next to results.dat and
// results.svg (gnuplot, tests/bench/results.gp).
//
// The overload level (issue 14 item 4), after the others: twice the
// capacity found (the largest N meeting the relay target), offered through
// POST /call at BENCH_RAMP per second against a fresh naiberd whose Twilio
// REST API is a fake in this driver (201 + a fresh CA sid per create).
// Each admitted call's nonce is read from Redis call:{sid} and the call is
// handed at once to loadgen in follow mode (one line on its stdin), so it
// streams while later calls are still offered; 503s are counted by reason
// (Retry-After and JSON reason checked).  Then a window (relay figures of
// the admitted calls, compared with the capacity level's), the end of the
// calls, and GET /ready polled every 250 ms until admission has reopened.
//
// Levels run in increasing N; once a level collapses (more than 1% of the
// calls failed, or p99 above 100 ms) higher ones are skipped, and the
// largest passing N is then narrowed down by bisection (BENCH_REFINE steps)
// as long as the time budget allows.  Before each level the driver waits
// (bounded) for the machine to be quiet, and reports the background load.
//
// Environment (all optional):
//   BENCH_CALLS    levels, default "1 50 200 430 500 900 1200"
//   BENCH_SECONDS  steady-state window per level, default 60
//   BENCH_RAMP     calls started per second, default 50
//   BENCH_SETTLE   seconds between the last setup and the window, default 2
//   BENCH_WORKERS  idle pool (-w), default 32 (-m is N + 64)
//   BENCH_BUDGET   seconds for the whole run, default 1440 (a level is run
//                  only if it and the overload level it implies still fit);
//                  BENCH_REFINE 2
//   BENCH_FLOOR=0  no relayfloor runs; BENCH_FLOOR_WARMUP its warm-up (3 s)
//   BENCH_FLOOR_PRIO  fifo / nice / none for relayfloor's generator (its
//                  relays always run at normal priority), default as loadgen
//   BENCH_QUICKACK=1  the fake ElevenLabs ACKs every read at once (hides a
//                  missing TCP_NODELAY in naiberd; off by default)
//   BENCH_DATABASE_PARAMS  query string added to DATABASE_URL (e.g.
//                  gssencmode=disable), default none
//   BENCH_LOADGEN_PRIO fifo (default: chrt -f 10), nice (-10) or none
//   BENCH_QUIET_WAIT / BENCH_QUIET_CORES  wait up to 60 s for < 0.2 busy cores
//   BENCH_PERF=N   perf record (DWARF call graphs) the supervisor and 16
//                  workers for 10 s inside level N's window
//   BENCH_RESULTS  output file (default tests/bench/RESULTS.md; "-" = none)
//   BENCH_KEEP=1   keep the per-level directories (logs, calls, perf.data)
//   BENCH_RENDER=FILE  only rewrite RESULTS.md from a saved stdout of a run
//   BENCH_OVERLOAD  1 (default): the overload level after the others; 0: none;
//                  only: nothing but the overload level (no capacity known:
//                  2 x the largest of BENCH_CALLS offered)
//   BENCH_OVERLOAD_CALLS  calls offered at the overload level (default 2 x
//                  capacity); BENCH_OVERLOAD_SECONDS its window (default 30,
//                  or BENCH_SECONDS if shorter)
//   BENCH_ADMISSION_ENV  "NAIBER_ADMISSION_CPU=5 NAIBER_ADMISSION_LAG=3 ...":
//                  put into naiberd's environment at the overload level (only
//                  NAIBER_ADMISSION* names), e.g. to make admission close in a
//                  short development run
//   BENCH_NAIBERD_ENV  "NAIBER_RELAY_COALESCE=25 ...": put into naiberd's
//                  environment at every level (only NAIBER_* names)
//   NAIBERD, LOADGEN, RELAYFLOOR, FORKCOST  the binaries (default
//                  build/<name>; RELAYFLOOR empty or missing: no floor)

import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startPostgres } from '../lib/pg.mjs';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const NAIBERD = process.env.NAIBERD ?? path.join(REPO, 'build', 'naiberd');
const LOADGEN = process.env.LOADGEN ?? path.join(REPO, 'build', 'loadgen');
const RELAYFLOOR = process.env.RELAYFLOOR ?? path.join(REPO, 'build', 'relayfloor');
const FORKCOST = process.env.FORKCOST ?? path.join(REPO, 'build', 'forkcost');
// 430: the PSS target's level (and the largest N held so far).
const LEVELS = (process.env.BENCH_CALLS ?? '1 50 200 430 500 900 1200')
	.split(/[\s,]+/).filter(Boolean).map(Number);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 60);
const RAMP = Number(process.env.BENCH_RAMP ?? 50);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 32);
const SETTLE = Number(process.env.BENCH_SETTLE ?? 2);
const RESULTS = process.env.BENCH_RESULTS ?? path.join(REPO, 'tests', 'bench', 'RESULTS.md');
const PERF = Number(process.env.BENCH_PERF ?? 0);
const QUICKACK = process.env.BENCH_QUICKACK === '1';
const DB_PARAMS = process.env.BENCH_DATABASE_PARAMS ?? '';	// e.g. gssencmode=disable
// The load generator stands for peers on other machines: by default it
// runs SCHED_FIFO (chrt -f 10) so naiberd's load does not delay its own
// clock (a woken worker cannot preempt it).  BENCH_LOADGEN_PRIO=nice
// (nice -n -10) or none.  The kernel's RT throttling still bounds it.
const LG_PRIO = process.env.BENCH_LOADGEN_PRIO ?? 'fifo';
const LG_PREFIX = LG_PRIO === 'fifo' ? ['chrt', '-f', '10'] : LG_PRIO === 'nice' ? ['nice', '-n', '-10'] : [];
const QUIET_WAIT = Number(process.env.BENCH_QUIET_WAIT ?? 60);
const QUIET_CORES = Number(process.env.BENCH_QUIET_CORES ?? 0.2);
const TARGET_P99_US = 5000;
const BUDGET = Number(process.env.BENCH_BUDGET ?? 1440);	// seconds for the whole run
// relayfloor's generator gets loadgen's priority (it stands for the same
// remote peers); SCHED_RESET_ON_FORK (chrt -R) puts its relays back to
// SCHED_OTHER at nice 0, where naiberd's workers run.
const FLOOR = process.env.BENCH_FLOOR !== '0' && Boolean(RELAYFLOOR) && fs.existsSync(RELAYFLOOR);
const FLOOR_WARMUP = Number(process.env.BENCH_FLOOR_WARMUP ?? 3);
const FLOOR_PRIO = process.env.BENCH_FLOOR_PRIO ?? LG_PRIO;
const FLOOR_PREFIX = FLOOR_PRIO === 'fifo' ? ['chrt', '-f', '-R', '10'] :
    FLOOR_PRIO === 'nice' ? ['nice', '-n', '-10', 'chrt', '-o', '-R', '0'] : [];
const GNUPLOT_SCRIPT = path.join(REPO, 'tests', 'bench', 'results.gp');
const REFINE = Number(process.env.BENCH_REFINE ?? 2);
// The overload level (after the others): BENCH_OVERLOAD=0 skips it,
// "only" runs nothing else.
const OVERLOAD = process.env.BENCH_OVERLOAD ?? '1';
const OV_ON = OVERLOAD !== '0';
const OV_ONLY = OVERLOAD === 'only';
const OV_CALLS = Number(process.env.BENCH_OVERLOAD_CALLS ?? 0);
const OV_SECONDS = Number(process.env.BENCH_OVERLOAD_SECONDS ?? Math.min(30, SECONDS));
/* NAME=VALUE words of the variable `name`, each NAME matching re (else exit 2). */
function envWords(name, re, form) {
	const str = (process.env[name] ?? '').trim();
	const env = {};
	for (const w of str.split(/\s+/).filter(Boolean)) {
		const m = new RegExp(`^(${re.source})=(.*)$`).exec(w);
		if (!m) {
			console.error(`bench: ${name}: "${w}" is not ${form}`);
			process.exit(2);
		}
		env[m[1]] = m[2];
	}
	return [str, env];
}
const [ADMISSION_ENV_STR, ADMISSION_ENV] = envWords('BENCH_ADMISSION_ENV',
    /NAIBER_ADMISSION(?:_[A-Z]+)?/, 'NAIBER_ADMISSION[_X]=VALUE');
const [NAIBERD_ENV_STR, NAIBERD_ENV] = envWords('BENCH_NAIBERD_ENV', /NAIBER_[A-Z_]+/, 'NAIBER_X=VALUE');
const skipped = [];

/* A level so far gone that higher ones can only be worse. */
function collapseOf(r) {
	return Boolean(r.error) || (r.failed ?? 0) > 0.01 * r.calls ||
	    (r.up?.p99_us ?? 0) > 100000 || (r.down?.p99_us ?? 0) > 100000 ||
	    (r.set_up ?? 0) < 0.99 * r.calls;
}
const STREAM_URL = 'wss://bench.invalid/outbound-media-stream';

const hex = (n) => randomBytes(n).toString('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (s) => process.stderr.write(`bench: ${s}\n`);

for (const [what, f] of [['naiberd', NAIBERD], ['loadgen', LOADGEN]]) {
	if (!fs.existsSync(f)) {
		console.error(`bench: ${f} missing: run make (naiberd) / make build/loadgen`);
		process.exit(1);
	}
	void what;
}
if (!LEVELS.length || LEVELS.some((n) => !Number.isInteger(n) || n < 1) ||
    !(SECONDS > 0) || !(RAMP > 0)) {
	console.error('bench: BENCH_CALLS must be positive integers, BENCH_SECONDS and BENCH_RAMP > 0');
	process.exit(2);
}
if (!['0', '1', 'only'].includes(OVERLOAD) || !Number.isInteger(OV_CALLS) || OV_CALLS < 0 || !(OV_SECONDS > 0)) {
	console.error('bench: BENCH_OVERLOAD must be 0, 1 or only; BENCH_OVERLOAD_CALLS a whole number; BENCH_OVERLOAD_SECONDS > 0');
	process.exit(2);
}
const MAXN = Math.max(...LEVELS);

// Every child gets the hard file-descriptor limit: 1200 calls need
// several thousand descriptors in naiberd's supervisor and in loadgen.
const UL = 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"';
function spawnUl(cmd, args, opts) {
	return spawn('sh', ['-c', UL, 'sh', cmd, ...args], opts);
}
const fdLimit = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim();

function freePort() {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.on('error', reject);
		s.listen(0, '127.0.0.1', () => {
			const { port } = s.address();
			s.close(() => resolve(port));
		});
	});
}

function pidAlive(pid) {
	try { process.kill(pid, 0); } catch { return false; }
	try {
		const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
		const s = st[st.lastIndexOf(')') + 2];
		return s !== 'Z' && s !== 'X';
	} catch { return false; }
}

function childrenOf(pid) {
	const out = [];
	try {
		for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
			const s = fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8');
			for (const w of s.split(/\s+/)) if (w) out.push(Number(w));
		}
	} catch { /* gone */ }
	return out;
}

function procCpuS(pid) {
	try {
		const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
		const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
		return (Number(f[11]) + Number(f[12])) / 100;
	} catch { return NaN; }
}

/* Busy CPUs (cores) of the whole machine over `ms`, from /proc/stat. */
function statBusy() {
	const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
	return { busy: f[0] + f[1] + f[2] + f[5] + f[6] + f[7], all: f.slice(0, 8).reduce((a, b) => a + b, 0) };
}
async function busyCores(ms) {
	const a = statBusy();
	await sleep(ms);
	const b = statBusy();
	return (b.busy - a.busy) / 100 / (ms / 1000);
}

/*
 * Other work on the machine skews every figure: before a level, wait
 * (up to BENCH_QUIET_WAIT seconds) until less than BENCH_QUIET_CORES of
 * CPU is busy; the background load found is reported with the level.
 */
async function waitQuiet() {
	const end = Date.now() + QUIET_WAIT * 1000;
	let b;
	for (;;) {
		b = await busyCores(1000);
		if (b <= QUIET_CORES || Date.now() >= end) break;
		log(`machine busy (${b.toFixed(2)} cores used by other processes): waiting for it to calm down`);
		await sleep(2000);
	}
	return Math.round(b * 1000) / 1000;
}

const pct = (a, p) => {
	if (!a.length) return null;
	const s = [...a].sort((x, y) => x - y);
	return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))];
};

// ------------------------------------------------------------ the peers

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-bench-'));
const cleanups = [];
async function cleanupAll() {
	while (cleanups.length) {
		try { await cleanups.pop()(); } catch (e) { log(`cleanup: ${e.message}`); }
	}
	if (process.env.BENCH_KEEP) log(`kept ${tmp}`);
	else fs.rmSync(tmp, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM']) {
	process.on(sig, async () => { log(`${sig}: cleaning up`); await cleanupAll(); process.exit(130); });
}

async function startRedis() {
	const port = await freePort();
	const dir = path.join(tmp, 'redis');
	fs.mkdirSync(dir);
	const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
		'--appendonly', 'no', '--dir', dir, '--daemonize', 'no',
		'--protected-mode', 'no', '--maxclients', '15000', '--loglevel', 'warning'];
	const p = spawnUl('redis-server', args, { stdio: ['ignore', 'ignore', 'inherit'] });
	cleanups.push(async () => { p.kill('SIGKILL'); });
	for (let i = 0; i < 100; i++) {
		const r = spawnSync('redis-cli', ['-p', String(port), 'PING'], { encoding: 'utf8' });
		if (r.stdout?.trim() === 'PONG') {
			// spawnUl: the shell exec()s redis-server, so the pid is its own.
			return { port, pid: p.pid, cmd: `redis-server ${args.map((a) => a === '' ? "''" : a).join(' ')}` };
		}
		await sleep(50);
	}
	throw new Error('redis-server did not answer PING');
}

function redisPipe(port, cmds) {
	const enc = (argv) => `*${argv.length}\r\n` +
	    argv.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('');
	const r = spawnSync('redis-cli', ['-p', String(port), '--pipe'],
	    { input: cmds.map(enc).join(''), encoding: 'utf8', maxBuffer: 64 << 20 });
	if (r.status !== 0 || !/errors: 0,/.test(r.stdout))
		throw new Error(`redis-cli --pipe: ${r.stdout} ${r.stderr}`);
}

// ------------------------------------------------------------- machine

function machine() {
	const cpu = fs.readFileSync('/proc/cpuinfo', 'utf8');
	const model = /^model name\s*:\s*(.*)$/m.exec(cpu)?.[1] ?? 'unknown';
	const mem = /^MemTotal:\s*(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1];
	return {
		nproc: Number(execFileSync('nproc', { encoding: 'utf8' }).trim()),
		cpu: model,
		mem_gib: mem ? Math.round(Number(mem) / 1048576 * 10) / 10 : null,
		kernel: `${os.type()} ${os.release()}`,
		host: os.hostname(),
		fd_hard_limit: Number(fdLimit) || fdLimit,
	};
}

// --------------------------------------------------------------- a level

function personPhone(i) { return '+1555' + String(i).padStart(7, '0'); }

/*
 * A fresh naiberd for one level in `dir`: -w/-m as given, --log-level
 * info, log to dir/naiberd.log; the Twilio REST API at twilioBase
 * (default: loadgen's HTTP port, which answers 200 {} to it) and extra
 * environment (the overload level's BENCH_ADMISSION_ENV).  Resolves once
 * it listens and its idle pool is forked.
 */
async function startNaiberd(dir, conf, ctx, { workers, maxCalls, twilioBase, extraEnv }) {
	const { redis, pg, elPort, token, apiToken } = ctx;
	const port = await freePort();
	const env = {
		PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C',
		TWILIO_ACCOUNT_SID: 'AC00000000000000000000000000000000',
		TWILIO_AUTH_TOKEN: token, TWILIO_NUMBER: '+15550001111',
		TWILIO_API_BASE: twilioBase ?? `http://127.0.0.1:${elPort}`,
		ELEVENLABS_API_KEY: 'bench-key', ELEVENLABS_AGENT_ID: 'agent_bench',
		ELEVENLABS_BASE_URL: `http://127.0.0.1:${elPort}`,
		DATABASE_URL: pg.url + (DB_PARAMS ? `?${DB_PARAMS}` : ''), REDIS_URL: `redis://127.0.0.1:${redis.port}`,
		STREAM_URL, TWILIO_URL: 'https://bench.invalid', NAIBER_API_TOKEN: apiToken,
		PHONE_NUMBER: personPhone(0),
		NAIBER_SPOOL_DIR: path.join(dir, 'spool'),
		NAIBER_PROMPTS_DIR: path.join(REPO, 'prompts'),
		...NAIBERD_ENV,
		...(extraEnv ?? {}),
	};
	const nArgs = ['-c', conf, '-l', '127.0.0.1', '-p', String(port), '-w', String(workers),
		'-m', String(maxCalls), '--log-level', 'info'];
	const logFile = path.join(dir, 'naiberd.log');
	const logFd = fs.openSync(logFile, 'w');
	const sv = spawnUl(NAIBERD, nArgs, { env, cwd: dir, stdio: ['ignore', logFd, logFd] });
	fs.closeSync(logFd);
	const nd = { port, svPid: sv.pid, logFile, nArgs, exit: null };	// sh exec()s naiberd: same pid
	sv.on('exit', (code, signal) => { nd.exit = { code, signal }; });
	nd.killAll = () => {
		for (const c of childrenOf(nd.svPid)) { try { process.kill(c, 'SIGKILL'); } catch { /* gone */ } }
		try { process.kill(nd.svPid, 'SIGKILL'); } catch { /* gone */ }
	};
	cleanups.push(async () => nd.killAll());

	for (let i = 0; ; i++) {
		if (nd.exit) throw new Error(`naiberd exited at start: ${JSON.stringify(nd.exit)}\n${fs.readFileSync(logFile, 'utf8')}`);
		if (/listening on/.test(fs.readFileSync(logFile, 'utf8'))) break;
		if (i > 200) throw new Error('naiberd did not start listening in 10 s');
		await sleep(50);
	}
	// Wait for the idle pool to be forked.
	for (let i = 0; i < 100 && childrenOf(nd.svPid).length < workers; i++) await sleep(50);
	return nd;
}

async function runLevel(N, ctx) {
	const { redis, elPort, token } = ctx;
	const label = `n${N}`;
	const dir = path.join(tmp, label);
	fs.mkdirSync(dir);
	fs.mkdirSync(path.join(dir, 'spool'), { mode: 0o700 });
	const conf = path.join(dir, 'naiberd.conf');
	fs.writeFileSync(conf, '', { mode: 0o600 });

	// The calls: what POST /call would have stored (plus the prepared
	// first message), one person per call slot.
	redisPipe(redis.port, [['FLUSHALL']]);
	const lines = [];
	const cmds = [];
	const created = new Date().toISOString();
	for (let i = 0; i < N; i++) {
		const sid = 'CA' + hex(16), ssid = 'MZ' + hex(16), nonce = hex(16);
		lines.push(`${sid} ${ssid} ${nonce}`);
		const c = { callType: 'general', phone: personPhone(i), nonce, createdAt: created,
			firstMessage: `Good morning, Person ${i}! It's nAIber. How are you today?` };
		cmds.push(['SET', `call_type:${sid}`, 'general', 'EX', '3600']);
		cmds.push(['SET', `call:${sid}`, JSON.stringify(c), 'EX', '3600']);
	}
	redisPipe(redis.port, cmds);
	const callsFile = path.join(dir, 'calls.txt');
	fs.writeFileSync(callsFile, lines.join('\n') + '\n');

	const workers = Math.min(WORKERS, N + 8);
	const maxCalls = Math.max(N + 64, workers);
	const nd = await startNaiberd(dir, conf, ctx, { workers, maxCalls });
	const { port, svPid, logFile, nArgs, killAll } = nd;

	const background = await waitQuiet();
	const lArgs = ['-p', String(port), '-e', String(elPort), '-f', callsFile, '-t', token,
		'-u', STREAM_URL, '-s', String(SECONDS), '-r', String(RAMP), '-S', String(SETTLE),
		'-P', String(svPid), '-l', label, ...(QUICKACK ? ['-q'] : [])];
	const peerCpu0 = { redis: procCpuS(redis.pid) };
	const lgCmd = [...LG_PREFIX, LOADGEN, ...lArgs];
	const lg = spawnUl(lgCmd[0], lgCmd.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
	let out = '';
	lg.stdout.setEncoding('utf8').on('data', (d) => { out += d; });

	// Optional profile of the supervisor and one busy worker.
	let perf = null;
	if (PERF && N === PERF) perf = startPerf(svPid, N, dir);
	// A hung load generator must not hang the run.
	const lgTimer = setTimeout(() => { log(`loadgen N=${N} overran: killed`); lg.kill('SIGKILL'); },
	    (N / RAMP + SETTLE + SECONDS + 120) * 1000);

	const lgExit = await new Promise((r) => lg.on('exit', (code, signal) => r({ code, signal })));
	clearTimeout(lgTimer);
	const perfOut = perf ? await perf : null;
	const peerCpu = { redis_s: Math.round((procCpuS(redis.pid) - peerCpu0.redis) * 100) / 100 };
	const crashedDuring = nd.exit;

	// Stop naiberd: SIGTERM drains (no calls left), then make sure.
	try { process.kill(svPid, 'SIGTERM'); } catch { /* gone */ }
	for (let i = 0; i < 100 && !nd.exit; i++) await sleep(100);
	killAll();

	let res;
	try {
		res = JSON.parse(out.trim().split('\n').pop());
	} catch {
		res = { label, calls: N, error: `loadgen produced no result (exit ${JSON.stringify(lgExit)})` };
	}
	const text = fs.readFileSync(logFile, 'utf8');
	const hand = [...text.matchAll(/accepted stream \(handoff (\d+) us, channel (\d+) us\)/g)];
	const hus = hand.map((m) => Number(m[1]));
	const cus = hand.map((m) => Number(m[2]));
	res.handoff_us = { n: hus.length, p50: pct(hus, 50), p99: pct(hus, 99), max: hus.length ? Math.max(...hus) : null,
		channel_p50: pct(cus, 50), channel_p99: pct(cus, 99) };
	const done = [...text.matchAll(/call (CA[0-9a-f]+) done: reason=(.+?) frames_in=/g)];
	const reasons = {};
	for (const m of done) reasons[m[2]] = (reasons[m[2]] ?? 0) + 1;
	res.naiberd = {
		calls_done: done.length, done_reasons: reasons,
		warnings: (text.match(/\bWARN|warn(ing)?:/gi) ?? []).length,
		worker_deaths: (text.match(/died|killed by signal|exited with status [1-9]/g) ?? []).length,
		supervisor_exit_during_run: crashedDuring,
		workers: workers, max_calls: maxCalls,
	};
	// A few distinct warning lines, for the report.
	const warnLines = [...new Set(text.split('\n').filter((l) => /warn|error|died|panic|refused|capacity/i.test(l))
		.map((l) => l.replace(/^\S+\s+\S+\s+/, '').replace(/\b(CA|MZ)[0-9a-f]{32}\b/g, '$1…').replace(/\[\d+\]/g, '[…]').replace(/\d+/g, 'N')))].slice(0, 8);
	res.naiberd.warning_samples = warnLines;
	res.peers_cpu = peerCpu;
	res.background_cores_before = background;
	if (perfOut) res.perf = perfOut;
	res.cmd = {
		naiberd: `${NAIBERD_ENV_STR ? NAIBERD_ENV_STR + ' ' : ''}${path.relative(REPO, NAIBERD)} ${nArgs.join(' ').replace(tmp, '$TMP')}`,
		loadgen: `${LG_PREFIX.length ? LG_PREFIX.join(' ') + ' ' : ''}${path.relative(REPO, LOADGEN)} ${lArgs.join(' ').replace(tmp, '$TMP')}`,
	};
	res.meets_target = meets(res);
	if (!process.env.BENCH_KEEP) fs.rmSync(dir, { recursive: true, force: true });
	else log(`kept ${dir}`);
	return res;
}

function meets(r) {
	return !r.error && r.failed === 0 && r.set_up === r.calls &&
	    r.up?.p99_us < TARGET_P99_US && r.down?.p99_us < TARGET_P99_US &&
	    r.up?.lost === 0 && r.down?.lost === 0 &&
	    r.up?.gaps_after_setup === 0 && r.down?.gaps_after_setup === 0 &&
	    r.up?.misrouted === 0 && r.down?.misrouted === 0 &&
	    r.up?.received > 0 && r.down?.received > 0;
}

// ------------------------------------------------------------ overload

/* A minimal Redis client (RESP2) for GETs from the overload driver. */
function respClient(port) {
	const sock = net.connect(port, '127.0.0.1');
	sock.setNoDelay(true);
	let buf = Buffer.alloc(0);
	const q = [];
	const parse = () => {
		while (q.length && buf.length) {
			const nl = buf.indexOf('\r\n');
			if (nl < 0) return;
			const t = String.fromCharCode(buf[0]), head = buf.toString('utf8', 1, nl);
			let v, used;
			if (t === '$') {
				const n = Number(head);
				if (n < 0) { v = null; used = nl + 2; } else {
					if (buf.length < nl + 2 + n + 2) return;
					v = buf.toString('utf8', nl + 2, nl + 2 + n);
					used = nl + 2 + n + 2;
				}
			} else if (t === '-') { v = new Error(head); used = nl + 2; }
			else { v = t === ':' ? Number(head) : head; used = nl + 2; }
			buf = buf.subarray(used);
			const { resolve, reject } = q.shift();
			if (v instanceof Error) reject(v); else resolve(v);
		}
	};
	sock.on('data', (d) => { buf = Buffer.concat([buf, d]); parse(); });
	sock.on('error', (e) => { while (q.length) q.shift().reject(e); });
	const cmd = (...argv) => new Promise((resolve, reject) => {
		q.push({ resolve, reject });
		sock.write(`*${argv.length}\r\n` + argv.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join(''));
	});
	return { get: (k) => cmd('GET', k), close: () => sock.destroy() };
}

/* One HTTP request to naiberd (new connection each): {status, headers, body} or {error}. */
function httpReq(port, method, p, { token, body, timeoutMs = 30000 } = {}) {
	return new Promise((resolve) => {
		const headers = { Connection: 'close' };
		if (token) headers.Authorization = `Bearer ${token}`;
		if (body !== undefined) {
			headers['Content-Type'] = 'application/json';
			headers['Content-Length'] = Buffer.byteLength(body);
		}
		const req = http.request({ host: '127.0.0.1', port, method, path: p, headers, agent: false }, (res) => {
			let b = '';
			res.setEncoding('utf8').on('data', (d) => { b += d; });
			res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: b }));
			res.on('error', (e) => resolve({ error: e.code ?? e.message }));
		});
		req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')));
		req.on('error', (e) => resolve({ error: e.code ?? e.message }));
		req.end(body);
	});
}

/*
 * The fake Twilio REST API of the overload level: a create
 * (POST .../Calls.json) gets 201 and a fresh CA sid, an update
 * (POST .../Calls/{sid}.json: the hang-up) 200; anything else 404.
 */
async function startFakeRest() {
	const st = { creates: 0, updates: 0, other: 0, other_sample: [] };
	const srv = http.createServer((req, res) => {
		let b = '';
		req.setEncoding('utf8').on('data', (d) => { b += d; });
		req.on('end', () => {
			const send = (code, o) => {
				const body = JSON.stringify(o);
				res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
				res.end(body);
			};
			const u = req.url.split('?')[0];
			const mc = /^\/2010-04-01\/Accounts\/(AC[0-9a-f]{32})\/Calls\.json$/.exec(u);
			const mu = /^\/2010-04-01\/Accounts\/(AC[0-9a-f]{32})\/Calls\/(CA[0-9a-f]{32})\.json$/.exec(u);
			if (req.method === 'POST' && mc) {
				st.creates++;
				const f = new URLSearchParams(b);
				return send(201, { sid: 'CA' + hex(16), account_sid: mc[1], status: 'queued',
					to: f.get('To'), from: f.get('From'), api_version: '2010-04-01' });
			}
			if (req.method === 'POST' && mu) {
				st.updates++;
				return send(200, { sid: mu[2], account_sid: mu[1], status: 'completed' });
			}
			st.other++;
			if (st.other_sample.length < 3) st.other_sample.push(`${req.method} ${u}`);
			send(404, { code: 20404, message: 'not found', status: 404 });
		});
	});
	srv.keepAliveTimeout = 1000;
	await new Promise((r) => srv.listen(0, '127.0.0.1', r));
	const close = () => new Promise((r) => { srv.closeAllConnections?.(); srv.close(() => r()); });
	cleanups.push(close);
	return { port: srv.address().port, st, close };
}

/* The Prometheus figures the overload level reads. */
function promFigures(text) {
	const g = (re) => { const m = re.exec(text); return m ? Number(m[1]) : null; };
	return {
		admission_open: g(/^naiberd_admission_open (\S+)$/m),
		relay_lag_ms: g(/^naiberd_headroom\{signal="relay_lag_ms"\} (\S+)$/m),
		cpu_pressure_percent: g(/^naiberd_headroom\{signal="cpu_pressure_percent"\} (\S+)$/m),
		memory_available_mib: g(/^naiberd_headroom\{signal="memory_available_mib"\} (\S+)$/m),
		closings: g(/^naiberd_admission_closings_total (\S+)$/m),
		admitted_total: g(/^naiberd_calls_admitted_total (\S+)$/m),
		refused_headroom_total: g(/^naiberd_calls_refused_total\{cause="headroom"\} (\S+)$/m),
		refused_capacity_total: g(/^naiberd_calls_refused_total\{cause="capacity"\} (\S+)$/m),
		placed_total: g(/^naiberd_calls_placed_total (\S+)$/m),
	};
}

/* How many calls the overload level offers, and why. */
function overloadPlan(rows) {
	const cap = Math.max(0, ...rows.filter((r) => r.meets_target).map((r) => r.calls));
	const capRow = cap ? rows.find((r) => r.calls === cap && r.meets_target) : null;
	if (OV_CALLS) return { offered: OV_CALLS, capacity_n: cap || null, capRow, basis: 'BENCH_OVERLOAD_CALLS' };
	if (cap) return { offered: 2 * cap, capacity_n: cap, capRow, basis: '2 x capacity, the largest N meeting the relay target in this run' };
	return { offered: 2 * MAXN, capacity_n: null, capRow: null, basis: `capacity unknown: 2 x the largest level (${MAXN})` };
}
const ovEstimate = (n) => n / RAMP + SETTLE + OV_SECONDS + 45;

/*
 * The overload level: POST /call at BENCH_RAMP per second, 2 x capacity
 * of them, against a naiberd whose Twilio REST API is the fake above.
 * Each admitted call's nonce is read from call:{sid} and the call handed
 * at once to loadgen (follow mode: one line on its stdin), which opens
 * its stream: the load builds while calls are still being offered.  Then
 * the window, the end of the calls (loadgen's Twilio `stop`), and GET
 * /ready polled every 250 ms (up to 30 s) until admission reopened.
 */
async function runOverload(plan, ctx) {
	const { redis, elPort, token, apiToken } = ctx;
	const N = plan.offered;
	const label = 'overload';
	const dir = path.join(tmp, label);
	fs.mkdirSync(dir);
	fs.mkdirSync(path.join(dir, 'spool'), { mode: 0o700 });
	const conf = path.join(dir, 'naiberd.conf');
	fs.writeFileSync(conf, '', { mode: 0o600 });
	redisPipe(redis.port, [['FLUSHALL']]);

	const rest = await startFakeRest();
	const workers = Math.min(WORKERS, N + 8);
	const maxCalls = Math.max(N + 64, workers);	// so max_calls never refuses
	const nd = await startNaiberd(dir, conf, ctx, { workers, maxCalls,
		twilioBase: `http://127.0.0.1:${rest.port}`, extraEnv: ADMISSION_ENV });
	const { port, svPid, logFile, nArgs, killAll } = nd;
	const background = await waitQuiet();
	// Offer only to a ready instance (admission open: a start-up burst
	// of CPU pressure can close it for a few seconds).
	const tReady = Date.now();
	let ready0 = null;
	while (Date.now() - tReady < 30000) {
		ready0 = await httpReq(port, 'GET', '/ready', { timeoutMs: 2000 });
		if (ready0.status === 200) break;
		await sleep(250);
	}
	const readyWait = Math.round((Date.now() - tReady) / 100) / 10;
	if (ready0?.status !== 200) log(`overload: naiberd not ready after 30 s (${ready0?.status ?? ready0?.error}: ${ready0?.body ?? ''}); offering anyway`);
	const rc = respClient(redis.port);
	cleanups.push(async () => rc.close());

	const lArgs = ['-p', String(port), '-e', String(elPort), '-f', '-', '-n', String(N), '-t', token,
		'-u', STREAM_URL, '-s', String(OV_SECONDS), '-S', String(SETTLE), '-P', String(svPid),
		'-l', label, ...(QUICKACK ? ['-q'] : [])];
	const lgCmd = [...LG_PREFIX, LOADGEN, ...lArgs];
	const lg = spawnUl(lgCmd[0], lgCmd.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
	let out = '', errBuf = '', lgReady = false, tStop = null;
	const phases = {};
	lg.stdin.on('error', () => { /* loadgen gone: its exit says why */ });
	lg.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
	lg.stderr.setEncoding('utf8').on('data', (d) => {
		process.stderr.write(d);
		errBuf += d;
		let i;
		while ((i = errBuf.indexOf('\n')) >= 0) {
			const l = errBuf.slice(0, i);
			errBuf = errBuf.slice(i + 1);
			if (/from stdin/.test(l)) lgReady = true;
			const m = / phase (\d+)$/.exec(l);
			if (m) {
				phases[m[1]] = Date.now();
				if (m[1] === '6') tStop = Date.now();
			}
		}
	});
	const lgExited = new Promise((r) => lg.on('exit', (code, signal) => r({ code, signal })));
	const lgTimer = setTimeout(() => { log('loadgen overload overran: killed'); lg.kill('SIGKILL'); },
	    (N / RAMP + 15 + SETTLE + OV_SECONDS + 150) * 1000);
	for (let i = 0; i < 200 && !lgReady; i++) await sleep(25);

	// Once a second: the admission gauges (peaks) and /ready.
	const mon = { samples: 0, peak: {}, min_memory_mib: null, open_seen: new Set() };
	let monOn = true;
	const monitor = (async () => {
		while (monOn) {
			const r = await httpReq(port, 'GET', '/metrics', { token: apiToken, timeoutMs: 5000 });
			if (r.status === 200) {
				const f = promFigures(r.body);
				mon.samples++;
				for (const k of ['relay_lag_ms', 'cpu_pressure_percent'])
					if (f[k] !== null) mon.peak[k] = Math.max(mon.peak[k] ?? 0, f[k]);
				if (f.memory_available_mib !== null)
					mon.min_memory_mib = Math.min(mon.min_memory_mib ?? Infinity, f.memory_available_mib);
				if (f.admission_open !== null) mon.open_seen.add(f.admission_open);
			}
			await sleep(1000);
		}
	})();

	// Offer the calls.
	const res = { offered: N, admitted: 0, refused: 0, by_reason: {}, with_retry_after: 0, with_json_reason: 0,
		retry_after_values: {}, refused_samples: [], refused_other: 0, other_by: {}, admitted_no_context: 0 };
	let firstRefusal = null;
	const admittedIdx = [];
	const lgLines = [];
	const t0 = Date.now();
	const offerOne = async (i) => {
		const r = await httpReq(port, 'POST', '/call', { token: apiToken, body: JSON.stringify({ phone: personPhone(i) }) });
		let j = null;
		try { j = JSON.parse(r.body); } catch { /* not JSON */ }
		if (r.status === 200 && j?.success && typeof j.callSid === 'string') {
			res.admitted++;
			admittedIdx.push(i);
			let ctxJ = null;
			try { ctxJ = JSON.parse(await rc.get(`call:${j.callSid}`)); } catch { /* below */ }
			if (!ctxJ?.nonce) { res.admitted_no_context++; return; }
			const line = `${j.callSid} MZ${hex(16)} ${ctxJ.nonce} ${i}\n`;
			lgLines.push(line);
			lg.stdin.write(line);
			return;
		}
		if (r.status === 503) {
			res.refused++;
			if (firstRefusal === null || i < firstRefusal.offer)
				firstRefusal = { offer: i, s: Math.round((Date.now() - t0) / 100) / 10 };
			const ra = r.headers?.['retry-after'];
			if (ra !== undefined) {
				res.with_retry_after++;
				res.retry_after_values[ra] = (res.retry_after_values[ra] ?? 0) + 1;
			}
			const why = typeof j?.reason === 'string' && j.reason ? j.reason : null;
			if (why) res.with_json_reason++;
			const key = why ?? `(no reason: ${j?.error ?? r.body.slice(0, 60)})`;
			res.by_reason[key] = (res.by_reason[key] ?? 0) + 1;
			if (res.refused_samples.length < 2) res.refused_samples.push({ retry_after: ra ?? null, body: r.body.slice(0, 200) });
			return;
		}
		res.refused_other++;
		const key = r.error ? `error ${r.error}` : `${r.status} ${(j?.error ?? r.body).slice(0, 60)}`;
		res.other_by[key] = (res.other_by[key] ?? 0) + 1;
	};
	const tasks = [];
	for (let i = 0; i < N; i++) {
		const due = t0 + i * 1000 / RAMP;
		const w = due - Date.now();
		if (w > 0) await sleep(w);
		tasks.push(offerOne(i));
	}
	await Promise.all(tasks);
	const offerS = (Date.now() - t0) / 1000;
	// Offers made after the first refused one that were still admitted
	// (admission reopened, or flapped).
	const admittedAfterRefusal = firstRefusal ? admittedIdx.filter((i) => i > firstRefusal.offer).length : 0;
	lg.stdin.end();
	log(`overload: ${N} offered in ${offerS.toFixed(1)} s: ${res.admitted} admitted, ${res.refused} refused (503), ${res.refused_other} other`);

	// At loadgen's `stop` (the load drops): poll /ready until it is 200.
	while (tStop === null && lg.exitCode === null && lg.signalCode === null) await sleep(50);
	const reopen = { poll_ms: 250, limit_s: 30, closed_at_stop: null, seconds: null, polls: 0, last: null };
	if (tStop !== null) {
		const tEnd = tStop + reopen.limit_s * 1000;
		for (;;) {
			const tq = Date.now();
			const r = await httpReq(port, 'GET', '/ready', { timeoutMs: 2000 });
			reopen.polls++;
			reopen.last = r.status ?? r.error;
			if (reopen.closed_at_stop === null) reopen.closed_at_stop = r.status !== 200;
			if (r.status === 200) { reopen.seconds = Math.round((tq - tStop) / 10) / 100; break; }
			if (Date.now() >= tEnd) break;
			await sleep(Math.max(0, tq + reopen.poll_ms - Date.now()));
		}
	}
	const lgExit = await lgExited;
	clearTimeout(lgTimer);
	monOn = false;
	await monitor;
	const fin = await httpReq(port, 'GET', '/metrics', { token: apiToken, timeoutMs: 5000 });
	const metricsEnd = fin.status === 200 ? promFigures(fin.body) : { error: fin.error ?? `HTTP ${fin.status}` };
	rc.close();
	const crashedDuring = nd.exit;
	try { process.kill(svPid, 'SIGTERM'); } catch { /* gone */ }
	for (let i = 0; i < 100 && !nd.exit; i++) await sleep(100);
	killAll();
	await rest.close();

	let lgRes;
	try { lgRes = JSON.parse(out.trim().split('\n').pop()); } catch {
		lgRes = { calls: 0, error: `loadgen produced no result (exit ${JSON.stringify(lgExit)})` };
	}
	fs.writeFileSync(path.join(dir, 'calls.txt'), lgLines.join(''));
	const text = fs.readFileSync(logFile, 'utf8');
	// The admission lines, each with its time from the first offer
	// (negative: before the offering began, e.g. at start-up).
	const t0Wall = t0;	// Date.now(): wall clock, as naiberd's log
	const admLines = (re) => text.split('\n').filter((l) => re.test(l)).map((l) => {
		const ts = Date.parse(l.split(/\s/)[0]);
		return { at_s: Number.isNaN(ts) ? null : Math.round((ts - t0Wall) / 100) / 10,
			line: l.replace(/^\S+\s+\S+\s+(\w+: )?/, '') };
	});
	const closedLines = admLines(/admission: closed by /);
	const reopenLines = admLines(/admission: open again after /);
	const done = [...text.matchAll(/call (CA[0-9a-f]+) done: reason=(.+?) frames_in=/g)];
	const reasons = {};
	for (const m of done) reasons[m[2]] = (reasons[m[2]] ?? 0) + 1;

	const cap = plan.capRow;
	const ratio = (a, b) => (a > 0 && b > 0) ? Math.round(a / b * 100) / 100 : null;
	const r = {
		overload: true, label, offered: N, basis: plan.basis, capacity_n: plan.capacity_n,
		ramp_per_s: RAMP, window_s: OV_SECONDS, offer_s: Math.round(offerS * 10) / 10,
		admission_env: ADMISSION_ENV, ready_wait_s: readyWait, ready_before: ready0?.status === 200,
		...res,
		first_refusal: firstRefusal, admitted_after_first_refusal: admittedAfterRefusal,
		streamed: lgRes.calls ?? 0,
		admitted_calls: {
			set_up: lgRes.set_up ?? 0, failed: lgRes.failed ?? null, fail_reasons: lgRes.fail_reasons ?? {},
			setups_failed: res.admitted - (lgRes.set_up ?? 0),
			up: lgRes.up ?? null, down: lgRes.down ?? null,
			setup_ms: lgRes.setup_ms ?? null, upgrade_ms: lgRes.upgrade_ms ?? null,
			cpu: lgRes.cpu ?? null, loadgen: lgRes.loadgen ?? null, window_s: lgRes.window_s ?? null,
			other_http: lgRes.other_http ?? 0, error: lgRes.error ?? null,
		},
		capacity_p99_us: cap ? { up: cap.up?.p99_us ?? null, down: cap.down?.p99_us ?? null } : null,
		p99_vs_capacity: cap ? { up: ratio(lgRes.up?.p99_us, cap.up?.p99_us), down: ratio(lgRes.down?.p99_us, cap.down?.p99_us) } : null,
		reopen,
		stop_at_s: tStop !== null ? Math.round((tStop - t0) / 100) / 10 : null,	// from the first offer
		window_at_s: phases['3'] ? Math.round((phases['3'] - t0) / 100) / 10 : null,
		metrics: { end: metricsEnd, samples: mon.samples, peak: mon.peak, min_memory_mib: mon.min_memory_mib,
			admission_open_values_seen: [...mon.open_seen] },
		log: { closed: closedLines, reopened: reopenLines, closed_while_offering: closedLines.filter((x) => x.at_s >= 0 && x.at_s <= offerS + 1).length,
			calls_done: done.length, done_reasons: reasons },
		twilio_rest: rest.st,
		naiberd: { workers, max_calls: maxCalls, supervisor_exit_during_run: crashedDuring,
			worker_deaths: (text.match(/died|killed by signal|exited with status [1-9]/g) ?? []).length },
		background_cores_before: background,
		cmd: {
			naiberd: `${[NAIBERD_ENV_STR, ADMISSION_ENV_STR].filter(Boolean).map((x) => x + ' ').join('')}${path.relative(REPO, NAIBERD)} ${nArgs.join(' ').replace(tmp, '$TMP')}`,
			loadgen: `${LG_PREFIX.length ? LG_PREFIX.join(' ') + ' ' : ''}${path.relative(REPO, LOADGEN)} ${lArgs.join(' ').replace(tmp, '$TMP')} < (one line per admitted call)`,
		},
	};
	r.verdicts = overloadVerdicts(r);
	if (!process.env.BENCH_KEEP) fs.rmSync(dir, { recursive: true, force: true });
	else log(`kept ${dir}`);
	return r;
}

/* The overload targets: true / false, or null where not applicable. */
function overloadVerdicts(o) {
	if (!o || o.error) return { closed: false, refusals_well_formed: false, p99_within_2x: null, reopen_le_10s: null, admitted_healthy: false };
	const a = o.admitted_calls ?? {};
	const closed = o.log ? o.log.closed_while_offering > 0 : (o.metrics?.end?.closings ?? 0) > 0;
	const pv = o.p99_vs_capacity;
	const worst = pv && pv.up !== null && pv.down !== null ? Math.max(pv.up, pv.down) : null;
	return {
		closed_while_offering: closed,
		closed: closed && o.refused > 0,
		refusals_well_formed: o.refused_other === 0 && o.with_retry_after === o.refused && o.with_json_reason === o.refused,
		p99_vs_capacity_worst: worst,
		p99_within_2x: !o.admitted ? null : worst === null ? (o.capacity_n ? false : null) : worst <= 2,
		reopen_le_10s: !closed ? null : o.reopen?.seconds !== null && o.reopen?.seconds !== undefined && o.reopen.seconds <= 10,
		admitted_healthy: o.admitted > 0 && o.admitted_no_context === 0 && a.setups_failed === 0 && (a.failed ?? 1) === 0 &&
		    a.up?.lost === 0 && a.down?.lost === 0,
	};
}

// ------------------------------------------------------------- the floor

/* "key=value key=value ..." (relayfloor's and forkcost's output), numbers parsed. */
function kv(line) {
	const o = {};
	for (const f of line.trim().split(/\s+/)) {
		const i = f.indexOf('=');
		if (i <= 0) continue;
		const v = f.slice(i + 1);
		o[f.slice(0, i)] = /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
	}
	return o;
}

function floorMeets(f) {
	return !f.error && f.c2a_p99 < TARGET_P99_US && f.a2c_p99 < TARGET_P99_US &&
	    f.lost === 0 && f.lost_win === 0 && f.bad === 0 && f.gen_drop === 0 &&
	    f.relay_err === 0 && f.msgs > 0;
}

/*
 * relayfloor proc N: N forked relays, each owning its call's two loopback
 * sockets, fed by relayfloor's own generator (20 ms frames each way, the
 * same 334-byte messages), same window as naiberd's level.
 */
async function runFloor(N) {
	const background = await waitQuiet();
	const args = ['proc', String(N), String(SECONDS), String(FLOOR_WARMUP)];
	const cmd = [...FLOOR_PREFIX, RELAYFLOOR, ...args];
	const t = Date.now();
	const p = spawnUl(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
	let out = '', err = '';
	p.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
	p.stderr.setEncoding('utf8').on('data', (d) => { err += d; });
	// sh exec()s chrt, which exec()s relayfloor: one pid; its relays die
	// with it (PR_SET_PDEATHSIG).
	let ex = null;
	const exited = new Promise((r) => p.on('exit', (code, signal) => { ex = { code, signal }; r(); }));
	const kill = async () => { if (!ex) { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } } };
	cleanups.push(kill);
	const timer = setTimeout(() => { log(`relayfloor N=${N} overran: killed`); kill(); },
	    (SECONDS + FLOOR_WARMUP + 60 + N / 20) * 1000);
	await exited;
	clearTimeout(timer);
	const line = out.split('\n').find((l) => l.startsWith('mode='));
	const f = line ? kv(line) : { error: `relayfloor produced no result (exit ${JSON.stringify(ex)}` +
	    `${err.trim() ? `: ${err.trim().split('\n').pop()}` : ''})` };
	f.meets_target = floorMeets(f);
	f.background_cores_before = background;
	f.seconds = Math.round((Date.now() - t) / 100) / 10;
	f.cmd = `${FLOOR_PREFIX.length ? FLOOR_PREFIX.join(' ') + ' ' : ''}${path.relative(REPO, RELAYFLOOR)} ${args.join(' ')}`;
	return f;
}

/*
 * What a syscall and a process cost here: relayfloor syscall (getppid,
 * clock_gettime; 200000 each) and build/forkcost (fork + _exit + waitpid
 * of a small process, 200 times; its getppid figure stands in when
 * relayfloor is missing).
 */
async function machineCosts() {
	const c = { quiet_cores_before: await waitQuiet() };
	const run = (bin, args) => {
		if (!bin || !fs.existsSync(bin)) return null;
		const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 60000 });
		const line = (r.stdout ?? '').split('\n').find((l) => l.includes('='));
		return line ? kv(line) : null;
	};
	const sc = FLOOR ? run(RELAYFLOOR, ['syscall']) : null;
	const fk = run(FORKCOST, ['200']);
	if (sc) c.syscall = { getppid_ns: sc.getppid_ns, clock_gettime_ns: sc.clock_gettime_ns, by: 'relayfloor syscall' };
	else if (fk) c.syscall = { getppid_ns: fk.getppid_ns, by: 'build/forkcost' };
	if (fk) c.fork_exit_wait_us = { iters: fk.iters, p50: fk.p50_us, p90: fk.p90_us, min: fk.min_us, max: fk.max_us };
	return c;
}

// perf: the supervisor and a few busy workers, 10 s inside the window,
// with DWARF call graphs; self and inclusive top symbols.
async function startPerf(svPid, N, dir) {
	const which = spawnSync('sh', ['-c', 'command -v perf'], { encoding: 'utf8' });
	if (which.status !== 0) return { error: 'perf not installed' };
	// Wait until the ramp is done and the window has begun.
	await sleep((N / RAMP + SETTLE + 8) * 1000);
	const kids = childrenOf(svPid);
	// The oldest children got the first calls; 8 busy workers + supervisor.
	const pids = [svPid, ...kids.slice(0, 16)];
	const f = path.join(dir, 'perf.data');
	await new Promise((resolve) => {
		const p = spawn('perf', ['record', '-q', '--call-graph', 'dwarf,8192', '-F', '499', '-o', f,
			'-p', pids.join(','), '--', 'sleep', '10'], { stdio: 'ignore' });
		p.on('exit', resolve);
		p.on('error', resolve);
	});
	const rep = (args) => {
		const r = spawnSync('perf', ['report', '-i', f, '--stdio', ...args],
		    { encoding: 'utf8', maxBuffer: 64 << 20 });
		return (r.stdout ?? '').split('\n').filter((l) => /^\s+\d+\.\d+%/.test(l))
		    .slice(0, 30).map((l) => l.replace(/\s+-\s+-\s*$/, '').trimEnd());
	};
	return {
		self: rep(['--no-children', '--sort', 'dso,symbol', '-g', 'none', '--percent-limit', '1']),
		inclusive: rep(['--children', '--sort', 'symbol', '-g', 'none', '--percent-limit', '4']),
	};
}

// --------------------------------------------------------------- report

function fmt(v, d = 0) {
	if (v === null || v === undefined || Number.isNaN(v)) return '-';
	return typeof v === 'number' ? v.toFixed(d) : String(v);
}

function mdTable(head, body) {
	const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
	const line = (cells) => '| ' + cells.map((c, i) => c.padEnd(w[i])).join(' | ') + ' |';
	return [line(head), '|' + w.map((x) => '-'.repeat(x + 2)).join('|') + '|', ...body.map(line)].join('\n');
}

const hasFloor = (rows) => rows.some((r) => r.floor);

function table(rows) {
	const fl = hasFloor(rows);
	const head = ['N', 'ok', 'up p50/p99/max us', 'down p50/p99/max us', 'lost up/down',
		'setup p50/p99 ms', 'upgrade p50/p99 ms', 'handoff p50/p99 us (n)', 'CPU-s/call-min',
		...(fl ? ['floor CPU-s/call-min', 'x floor'] : []), 'PSS KiB/call', 'loadgen CPU%', 'target'];
	const body = rows.map((r) => [
		String(r.calls), `${r.set_up ?? 0}/${r.calls}`,
		`${fmt(r.up?.p50_us)}/${fmt(r.up?.p99_us)}/${fmt(r.up?.max_us)}`,
		`${fmt(r.down?.p50_us)}/${fmt(r.down?.p99_us)}/${fmt(r.down?.max_us)}`,
		`${fmt(r.up?.lost)}/${fmt(r.down?.lost)}`,
		`${fmt(r.setup_ms?.p50, 1)}/${fmt(r.setup_ms?.p99, 1)}`,
		`${fmt(r.upgrade_ms?.p50, 2)}/${fmt(r.upgrade_ms?.p99, 2)}`,
		`${fmt(r.handoff_us?.p50)}/${fmt(r.handoff_us?.p99)} (${fmt(r.handoff_us?.n)})`,
		fmt(r.cpu?.per_call_minute_s, 4),
		...(fl ? [fmt(r.floor?.cpu_s_per_call_min, 4), fmt(r.cpu_vs_floor, 2)] : []),
		fmt(r.pss?.per_call_kib, 0),
		`${fmt(r.loadgen?.main_cpu_pct, 0)}${r.loadgen?.main_cpu_pct > 80 ? ' (!)' : ''}`,
		r.meets_target ? 'yes' : 'NO',
	]);
	return mdTable(head, body);
}

/* relayfloor proc at each level, next to naiberd's CPU. */
function floorTable(rows) {
	const head = ['N', 'floor run', 'floor CPU-s/call-min', 'naiberd CPU-s/call-min', 'naiberd / floor',
		'floor c->a p50/p99/max us', 'floor a->c p50/p99/max us', 'floor lost', 'wakes/msg', 'syscalls/msg',
		'floor generator CPU%', 'floor holds p99 < 5 ms, 0 lost'];
	const body = rows.filter((r) => r.floor).map((r) => {
		const f = r.floor;
		return [String(r.calls), `${f.order ?? '-'} naiberd`, fmt(f.cpu_s_per_call_min, 4), fmt(r.cpu?.per_call_minute_s, 4),
			fmt(r.cpu_vs_floor, 2), `${fmt(f.c2a_p50)}/${fmt(f.c2a_p99)}/${fmt(f.c2a_max)}`,
			`${fmt(f.a2c_p50)}/${fmt(f.a2c_p99)}/${fmt(f.a2c_max)}`, fmt(f.lost), fmt(f.wakes_per_msg, 2),
			fmt(f.sysc_per_msg, 2), `${fmt(f.gen_cpu_pct, 0)}${f.gen_cpu_pct > 80 ? ' (!)' : ''}`,
			f.error ? `NO (${f.error})` : f.meets_target ? 'yes' : 'NO'];
	});
	return mdTable(head, body);
}

function summarize(rows, m, startedAt, seconds, ov) {
	const ok = rows.filter((r) => r.meets_target);
	const best = ok.length ? Math.max(...ok.map((r) => r.calls)) : 0;
	const firstFail = rows.filter((r) => !r.meets_target).map((r) => r.calls).sort((a, b) => a - b)[0] ?? null;
	// The floor's capacity: the largest N at which relayfloor proc held
	// p99 < 5 ms each way with nothing lost (0: nowhere; null: no floor).
	const floorRows = rows.filter((r) => r.floor);
	const held = floorRows.filter((r) => r.floor.meets_target);
	const floorCap = floorRows.length ? Math.max(0, ...held.map((r) => r.calls)) : null;
	// Set-up figures (ramp included) are judged at every level up to the
	// floor's capacity; without a floor, at the levels that met the relay
	// target (else those that did not collapse).
	const judged = floorCap !== null ? rows.filter((r) => r.calls <= floorCap) :
	    ok.length ? ok : rows.filter((r) => !collapseOf(r));
	const worst = (f) => {
		const v = judged.map(f).filter((x) => x !== null && x !== undefined);
		return v.length ? Math.max(...v) : null;
	};
	// A judged level without the figure (nothing set up) misses the target.
	const every = (f, lim) => judged.length ? judged.every((r) => (f(r) ?? Infinity) <= lim) : null;
	const ratioAt = {};
	for (const n of [50, 200]) ratioAt[n] = rows.find((r) => r.calls === n)?.cpu_vs_floor ?? null;
	const ratios = Object.values(ratioAt).filter((x) => x !== null);
	const relayMissed = held.filter((r) => !r.meets_target).map((r) => r.calls);
	const at430 = rows.find((r) => r.calls === 430);
	// "Below capacity": up to the larger of naiberd's and the floor's.
	const capN = Math.max(best, floorCap ?? 0);
	const belowCap = rows.filter((r) => r.calls <= capN);
	const setupFailed = belowCap.filter((r) => r.error || (r.failed ?? 0) > 0 || (r.set_up ?? 0) < r.calls)
	    .map((r) => r.calls);
	return {
		summary: true, date: startedAt, seconds_total: seconds, machine: m,
		levels: rows.map((r) => r.calls), requested_levels: LEVELS, window_s: SECONDS, ramp_per_s: RAMP,
		largest_n_meeting_p99_5ms_zero_loss: best,
		first_n_failing: firstFail,
		floor_capacity: floorCap,
		targets: {
			judged_levels_setup: judged.map((r) => r.calls),
			judged_up_to: floorCap !== null ? 'floor capacity' : 'levels meeting the relay target (no floor)',
			setup_p99_max_ms: worst((r) => r.setup_ms?.p99),
			setup_p99_le_30ms: every((r) => r.setup_ms?.p99, 30),
			handoff_p99_max_us: worst((r) => r.handoff_us?.p99),
			handoff_p99_le_1ms: every((r) => r.handoff_us?.p99, 1000),
			upgrade_p99_max_ms: worst((r) => r.upgrade_ms?.p99),
			upgrade_p99_le_5ms: every((r) => r.upgrade_ms?.p99, 5),
			cpu_vs_floor_at: ratioAt,
			cpu_le_1_1x_floor: ratios.length ? ratios.every((x) => x <= 1.1) : null,
			relay_levels_floor_holds: held.map((r) => r.calls),
			relay_missed_where_floor_holds: relayMissed,
			relay_where_floor_holds: held.length ? relayMissed.length === 0 : null,
			pss_per_call_at_430_kib: at430?.pss?.per_call_kib ?? null,
			pss_at_430_le_300kib: at430?.pss ? at430.pss.per_call_kib <= 300 : null,
			pss_at_430_le_256kib: at430?.pss ? at430.pss.per_call_kib <= 256 : null,
			capacity_n: capN,
			setup_failed_levels: setupFailed,
			no_setup_failure_below_capacity: belowCap.length ? setupFailed.length === 0 : null,
		},
		loadgen_saturated_levels: rows.filter((r) => r.loadgen?.main_cpu_pct > 80).map((r) => r.calls),
		floor_generator_saturated_levels: floorRows.filter((r) => r.floor.gen_cpu_pct > 80).map((r) => r.calls),
		skipped_levels: skipped,
		quickack_workaround: QUICKACK,
		floor: floorRows.length ? { prio: FLOOR_PRIO, warmup_s: FLOOR_WARMUP } : null,
		redis_cmd: renderCtx.redisCmd ?? null,
		settle_s: SETTLE, workers: WORKERS,
		overload: ov ? {
			offered: ov.offered, basis: ov.basis, capacity_n: ov.capacity_n ?? null, window_s: ov.window_s ?? null,
			admitted: ov.admitted ?? null, refused_503: ov.refused ?? null, refused_by_reason: ov.by_reason ?? null,
			refused_with_retry_after: ov.with_retry_after ?? null, refused_with_json_reason: ov.with_json_reason ?? null,
			refused_other: ov.refused_other ?? null,
			up_p99_us: ov.admitted_calls?.up?.p99_us ?? null, down_p99_us: ov.admitted_calls?.down?.p99_us ?? null,
			p99_vs_capacity: ov.p99_vs_capacity ?? null, reopen_s: ov.reopen?.seconds ?? null,
			closings: ov.metrics?.end?.closings ?? null, error: ov.error ?? null,
			verdicts: overloadVerdicts(ov),
		} : null,
	};
}

/* " (it reopened N s after the first offer, ...)" from the log, if it did. */
function reopenedEarly(o) {
	const last = (o.log?.reopened ?? []).filter((x) => typeof x === 'object' && x.at_s !== null && x.at_s <= (o.stop_at_s ?? Infinity)).pop();
	return last ? ` (it reopened ${fmt(last.at_s, 1)} s after the first offer, while the admitted calls still ran)` : '';
}

/* The overload level: one line per figure. */
function overloadRows(o) {
	const a = o.admitted_calls ?? {};
	const dist = (obj) => Object.entries(obj ?? {}).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none';
	const q = (s) => '`' + String(s).replace(/\b(CA|MZ)[0-9a-f]{32}\b/g, '$1…').replace(/\|/g, '\\|') + '`';
	const pv = o.p99_vs_capacity;
	const R = [];
	if (o.error) R.push(['error', o.error]);
	R.push(['calls offered (POST /call at ' + fmt(o.ramp_per_s ?? RAMP) + '/s)', `${o.offered} (${o.basis}${o.capacity_n ? `; capacity N = ${o.capacity_n}` : ''})` +
	    (o.offer_s != null ? `, offered over ${fmt(o.offer_s, 1)} s` : '')]);
	R.push(['admitted (200, dialled through the fake Twilio REST)', `${fmt(o.admitted)}` +
	    (o.first_refusal ? ` (${o.admitted_after_first_refusal} of them offered after the first refused offer)` : '') +
	    (o.admitted_no_context ? `; ${o.admitted_no_context} without call:{sid} in Redis` : '')]);
	R.push(['refused with 503, by reason', `${fmt(o.refused)}${o.refused ? ` (${dist(o.by_reason)})` : ''}` +
	    (o.first_refusal ? `; first at offer #${o.first_refusal.offer + 1}, ${fmt(o.first_refusal.s, 1)} s in` : '')]);
	R.push(['503s with Retry-After / with a JSON reason', o.refused ? `${o.with_retry_after}/${o.refused} (Retry-After: ${dist(o.retry_after_values)}) / ` +
	    `${o.with_json_reason}/${o.refused}` : '-']);
	R.push(['refused another way (should be 0)', `${fmt(o.refused_other)}${o.refused_other ? ` (${dist(o.other_by)})` : ''}`]);
	R.push(['admitted calls streamed / set up / setups failed', `${fmt(o.streamed)} / ${fmt(a.set_up)} / ${fmt(a.setups_failed)}` +
	    (Object.keys(a.fail_reasons ?? {}).length ? ` (${dist(a.fail_reasons)})` : '')]);
	const none = !o.streamed;
	R.push([`admitted calls: relay up p50/p99/max us (${fmt(a.window_s, 0)} s window)`, none ? '-' : `${fmt(a.up?.p50_us)}/${fmt(a.up?.p99_us)}/${fmt(a.up?.max_us)}`]);
	R.push(['admitted calls: relay down p50/p99/max us', none ? '-' : `${fmt(a.down?.p50_us)}/${fmt(a.down?.p99_us)}/${fmt(a.down?.max_us)}`]);
	R.push(['admitted calls: frames lost up/down', none ? '-' : `${fmt(a.up?.lost)}/${fmt(a.down?.lost)}`]);
	R.push(['admitted calls: setup p50/p99 ms', none ? '-' : `${fmt(a.setup_ms?.p50, 1)}/${fmt(a.setup_ms?.p99, 1)}`]);
	R.push(['relay p99 vs the same at capacity (up, down)', !o.admitted ? 'no call admitted' : pv ? `${fmt(pv.up, 2)}x, ${fmt(pv.down, 2)}x ` +
	    `(capacity N = ${o.capacity_n}: up ${fmt(o.capacity_p99_us?.up)} us, down ${fmt(o.capacity_p99_us?.down)} us)` : 'no capacity measured in this run']);
	R.push(['time to reopen (calls ended -> GET /ready 200, polled every 250 ms)', !o.reopen ? '-' :
	    o.reopen.closed_at_stop === false ? `0 s: admission was open again when the calls ended${reopenedEarly(o)}` :
	    o.reopen.seconds !== null ? `${fmt(o.reopen.seconds, 2)} s` : `not within ${o.reopen.limit_s} s (last: ${o.reopen.last})`]);
	const me = o.metrics?.end ?? {};
	R.push(['admission closings (/metrics, whole run of this naiberd)', `${fmt(me.closings)} (${fmt(o.log?.closed_while_offering)} while offering); naiberd_calls_admitted_total ${fmt(me.admitted_total)}, ` +
	    `refused_total{cause="headroom"} ${fmt(me.refused_headroom_total)}, {cause="capacity"} ${fmt(me.refused_capacity_total)}`]);
	R.push(['peak smoothed signals (/metrics once a second)', o.metrics ? `relay lag ${fmt(o.metrics.peak?.relay_lag_ms, 1)} ms, ` +
	    `CPU pressure ${fmt(o.metrics.peak?.cpu_pressure_percent, 1)} %, lowest MemAvailable ${fmt(o.metrics.min_memory_mib)} MiB` : '-']);
	const at = (x) => x.at_s === null || x.at_s === undefined ? '' : ` (${x.at_s < 0 ? `${fmt(-x.at_s, 1)} s before the first offer` : `${fmt(x.at_s, 1)} s after the first offer`})`;
	const norm = (x) => typeof x === 'string' ? { line: x, at_s: null } : x;	// older output: plain lines
	for (const x of (o.log?.closed ?? []).map(norm).slice(0, 4)) R.push(['log: closing', q(x.line) + at(x)]);
	if ((o.log?.closed?.length ?? 0) > 4) R.push(['log: closing', `... ${o.log.closed.length} in all`]);
	for (const x of (o.log?.reopened ?? []).map(norm).slice(0, 4)) R.push(['log: reopening', q(x.line) + at(x)]);
	if ((o.log?.reopened?.length ?? 0) > 4) R.push(['log: reopening', `... ${o.log.reopened.length} in all`]);
	if (o.stop_at_s != null) R.push(['timeline (from the first offer)', `offers answered ${fmt(o.offer_s, 1)} s, window ${fmt(o.window_at_s, 1)} s, ` +
	    `calls ended ${fmt(o.stop_at_s, 1)} s${o.ready_wait_s ? `; before offering, waited ${fmt(o.ready_wait_s, 1)} s for GET /ready 200` : ''}`]);
	if (o.log && !o.log.closed.length) R.push(['log: closing', 'none']);
	if (o.log && !o.log.reopened.length) R.push(['log: reopening', 'none']);
	if (o.twilio_rest) R.push(['fake Twilio REST requests', `${o.twilio_rest.creates} creates, ${o.twilio_rest.updates} updates (hang-ups)` +
	    (o.twilio_rest.other ? `, ${o.twilio_rest.other} other (${o.twilio_rest.other_sample.join('; ')})` : '')]);
	if (a.loadgen) R.push(['loadgen CPU% (window)', `${fmt(a.loadgen.main_cpu_pct, 0)}${a.loadgen.main_cpu_pct > 80 ? ' (near saturation)' : ''}`]);
	if (o.admission_env && Object.keys(o.admission_env).length)
		R.push(['naiberd admission settings (BENCH_ADMISSION_ENV)', Object.entries(o.admission_env).map(([k, v]) => `${k}=${v}`).join(' ')]);
	return R;
}

function overloadTable(o) {
	return mdTable(['overload level', 'measured'], overloadRows(o));
}

/*
 * results.dat (one line per level, "-" where not measured) and, from it,
 * results.svg through tests/bench/results.gp.  Returns the SVG's path, or
 * why there is none.
 */
function writePlot(rows, sum) {
	if (!rows.length) return { error: 'no levels run' };
	// From the summary: BENCH_RENDER re-renders another run's figures.
	const WIN = sum.window_s ?? SECONDS, RMP = sum.ramp_per_s ?? RAMP;
	const dir = path.dirname(RESULTS);
	const dat = path.join(dir, 'results.dat'), svg = path.join(dir, 'results.svg');
	const ms = (us) => (us === null || us === undefined) ? null : us / 1000;
	const col = (v, d) => (v === null || v === undefined || Number.isNaN(v)) ? '-' : v.toFixed(d);
	const L = ['# naiberd benchmark, one line per level (tests/bench/bench.mjs; plotted by results.gp)',
		`# ${sum.date}, window ${WIN} s, ramp ${RMP} calls/s; "-" = not measured`,
		'# N up_p99_ms down_p99_ms floor_c2a_p99_ms floor_a2c_p99_ms cpu_s_per_call_min floor_cpu_s_per_call_min setup_p99_ms handoff_p99_ms upgrade_p99_ms'];
	for (const r of rows) {
		L.push([r.calls, col(ms(r.up?.p99_us), 3), col(ms(r.down?.p99_us), 3), col(ms(r.floor?.c2a_p99), 3),
			col(ms(r.floor?.a2c_p99), 3), col(r.cpu?.per_call_minute_s, 5), col(r.floor?.cpu_s_per_call_min, 5),
			col(r.setup_ms?.p99, 3), col(ms(r.handoff_us?.p99), 3), col(r.upgrade_ms?.p99, 3)].join(' '));
	}
	fs.writeFileSync(dat, L.join('\n') + '\n');
	if (spawnSync('sh', ['-c', 'command -v gnuplot'], { encoding: 'utf8' }).status !== 0)
		return { error: 'gnuplot not installed (make bench-deps installs gnuplot-nox)', dat };
	const q = (s) => `'${s.replace(/'/g, "''")}'`;
	const sub = `${sum.date.slice(0, 10)}, ${sum.machine.nproc} CPUs, ${WIN} s window per level after a ramp of ${RMP} calls/s` +
	    (rows.some((r) => r.floor) ? '' : '; relayfloor not run');
	const r = spawnSync('gnuplot', ['-e', `dat=${q(dat)}; out=${q(svg)}; subtitle=${q(sub)}`, GNUPLOT_SCRIPT],
	    { encoding: 'utf8' });
	if (r.status !== 0) return { error: `gnuplot failed: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' ')}`, dat };
	log(`wrote ${path.relative(REPO, svg)}`);
	return { svg, dat };
}

function writeResults(rows, sum, ctx, ov) {
	if (RESULTS === '-') return;
	const m = sum.machine;
	const yes = (b) => b === null || b === undefined ? 'n/a' : b ? 'met' : '**not met**';
	const t = sum.targets;
	const fl = hasFloor(rows);
	const plot = writePlot(rows, sum);
	const WIN = sum.window_s ?? SECONDS, RMP = sum.ramp_per_s ?? RAMP;
	const L = [];
	L.push('# naiberd benchmark results');
	L.push('');
	L.push(`Generated by \`make bench\` (tests/bench/bench.mjs) on ${sum.date}` +
	    (sum.rendered_at ? ` (table re-rendered from that run's output on ${sum.rendered_at})` : '') + '; do not edit by hand.');
	L.push('');
	L.push('## Machine');
	L.push('');
	L.push(`- ${m.nproc} CPUs: ${m.cpu}`);
	L.push(`- memory: ${m.mem_gib} GiB; kernel: ${m.kernel}; fd hard limit ${m.fd_hard_limit}`);
	const c = m.costs ?? {};
	if (c.syscall)
		L.push(`- one trivial syscall (getppid): ${fmt(c.syscall.getppid_ns)} ns` +
		    (c.syscall.clock_gettime_ns != null ? `; clock_gettime (vDSO): ${fmt(c.syscall.clock_gettime_ns)} ns` : '') +
		    ` (\`${c.syscall.by}\`, mean of 200000)`);
	if (c.fork_exit_wait_us)
		L.push(`- fork + _exit + waitpid of a small process: median ${fmt(c.fork_exit_wait_us.p50, 0)} us ` +
		    `(p90 ${fmt(c.fork_exit_wait_us.p90, 0)}, min ${fmt(c.fork_exit_wait_us.min, 0)}, max ${fmt(c.fork_exit_wait_us.max, 0)} us; ` +
		    `${c.fork_exit_wait_us.iters} runs of build/forkcost, tests/bench/forkcost.c)`);
	if (c.quiet_cores_before !== undefined)
		L.push(`- both measured once before the first level, with ${fmt(c.quiet_cores_before, 2)} cores busy in other processes`);
	L.push(`- load generator, naiberd, ${fl ? 'relayfloor, ' : ''}redis-server and PostgreSQL all on this machine`);
	L.push('');
	L.push('## Result');
	L.push('');
	L.push(`Largest concurrency holding per-frame relay p99 < 5 ms both ways with zero frames lost: **N = ${sum.largest_n_meeting_p99_5ms_zero_loss}**` +
	    (sum.first_n_failing ? ` (first level missing it: ${sum.first_n_failing}).` : ' (every level measured met it).') +
	    (sum.floor_capacity === null ? ' relayfloor was not run (../shared/bench/floor not found, or BENCH_FLOOR=0): no floor figures, and the targets relative to it are n/a.' :
	    ` relayfloor proc (a bare process-per-call relay of the same traffic) held it up to **N = ${sum.floor_capacity}** ` +
	    '(the floor\'s capacity on this machine, among the levels run).'));
	L.push('');
	if (plot.svg)
		L.push(`![p99 relay latency each way, setup p99 and CPU per call-minute against N, naiberd and relayfloor proc](${path.relative(path.dirname(RESULTS), plot.svg)})`, '',
		    `[${path.relative(path.dirname(RESULTS), plot.svg)}](${path.relative(path.dirname(RESULTS), plot.svg)}): drawn by gnuplot (tests/bench/results.gp) from ${path.relative(path.dirname(RESULTS), plot.dat)}.`, '');
	else
		L.push(`No plot: ${plot.error}.`, '');
	const upTo = t.judged_up_to === 'floor capacity' ? 'at every level up to the floor\'s capacity' : 'at every level meeting the relay target (no floor)';
	const lv = t.judged_levels_setup.length ? `N = ${t.judged_levels_setup.join(', ')}` : 'no level';
	const ratio = (n) => {
		const r = rows.find((x) => x.calls === n);
		return r?.cpu_vs_floor != null ? `N = ${n}: ${fmt(r.cpu.per_call_minute_s, 4)} / ${fmt(r.floor.cpu_s_per_call_min, 4)} = ${fmt(r.cpu_vs_floor, 2)}x` :
		    `N = ${n}: not measured`;
	};
	L.push('| target | measured | verdict |');
	L.push('|---|---|---|');
	L.push(`| setup (start -> first agent audio) p99 <= 30 ms ${upTo}, ramp included | worst of ${lv}: ${fmt(t.setup_p99_max_ms, 1)} ms | ${yes(t.setup_p99_le_30ms)} |`);
	L.push(`| handoff p99 <= 1 ms ${upTo}, ramp included | worst of ${lv}: ${fmt(t.handoff_p99_max_us)} us | ${yes(t.handoff_p99_le_1ms)} |`);
	L.push(`| upgrade round trip (Twilio side: upgrade request written -> 101 received) p99 <= 5 ms, same levels | worst of ${lv}: ${fmt(t.upgrade_p99_max_ms, 2)} ms | ${yes(t.upgrade_p99_le_5ms)} |`);
	L.push(`| CPU-s per call-minute (supervisor + workers, window) <= 1.1 x relayfloor proc at N = 50 and 200 | ${ratio(50)}; ${ratio(200)} | ${yes(t.cpu_le_1_1x_floor)} |`);
	L.push(`| relay p99 < 5 ms each way with zero loss at every N where relayfloor proc holds it | ${!fl ? 'relayfloor not run' : 'floor held at '}${!fl ? '' : t.relay_levels_floor_holds.length ? `N = ${t.relay_levels_floor_holds.join(', ')}` : 'no level'}` +
	    `${t.relay_missed_where_floor_holds.length ? `; naiberd missed at N = ${t.relay_missed_where_floor_holds.join(', ')}` : t.relay_levels_floor_holds.length ? '; naiberd held at all of them' : ''} | ${yes(t.relay_where_floor_holds)} |`);
	L.push(`| PSS <= 300 KiB per active call at 430 calls (stretch: 256) | ${fmt(t.pss_per_call_at_430_kib, 0)} KiB | ${yes(t.pss_at_430_le_300kib)}` +
	    `${t.pss_at_430_le_300kib ? `; stretch ${yes(t.pss_at_430_le_256kib)}` : ''} |`);
	L.push(`| no call fails set-up below capacity (N <= ${t.capacity_n}: ${fl ? 'the larger of naiberd\'s and the floor\'s' : 'naiberd\'s'}) | ` +
	    `${t.setup_failed_levels.length ? `failures at N = ${t.setup_failed_levels.join(', ')}` : 'none'} | ${yes(t.no_setup_failure_below_capacity)} |`);
	if (ov) {
		const v = overloadVerdicts(ov);
		const a = ov.admitted_calls ?? {};
		const oc = `overload (${ov.offered} offered, ${ov.basis === 'BENCH_OVERLOAD_CALLS' ? `BENCH_OVERLOAD_CALLS${ov.capacity_n ? `; capacity ${ov.capacity_n}` : ''}` :
		    ov.capacity_n ? `2 x capacity ${ov.capacity_n}` : 'capacity unknown'})`;
		L.push(`| ${oc}: admission closes, refused calls get 503 with Retry-After and a JSON reason, none refused another way | ` +
		    `${fmt(ov.refused)} refused (${Object.entries(ov.by_reason ?? {}).map(([k, n]) => `${k}: ${n}`).join(', ') || 'none'}); ` +
		    `Retry-After ${fmt(ov.with_retry_after)}/${fmt(ov.refused)}, reason ${fmt(ov.with_json_reason)}/${fmt(ov.refused)}; other ${fmt(ov.refused_other)}; ` +
		    `closed ${fmt(ov.log?.closed_while_offering)} time(s) while offering | ${yes(v.closed && v.refusals_well_formed)} |`);
		L.push(`| ${oc}: admitted calls' relay p99 within 2 x the p99 at capacity, each way | ` +
		    (ov.p99_vs_capacity ? `up ${fmt(a.up?.p99_us)} us = ${fmt(ov.p99_vs_capacity.up, 2)}x, down ${fmt(a.down?.p99_us)} us = ${fmt(ov.p99_vs_capacity.down, 2)}x` :
		    'no capacity in this run') + ` | ${yes(v.p99_within_2x)} |`);
		L.push(`| ${oc}: admitted calls all set up, no frame lost | ${fmt(ov.admitted)} admitted, ${fmt(a.setups_failed)} setups failed, ` +
		    `lost ${fmt(a.up?.lost)}/${fmt(a.down?.lost)} | ${yes(v.admitted_healthy)} |`);
		L.push(`| ${oc}: admission reopens (GET /ready 200) <= 10 s after the calls end | ` +
		    (!(v.closed_while_offering ?? v.closed) ? 'admission did not close while offering' : ov.reopen?.closed_at_stop === false ? `0 s: open again when the calls ended${reopenedEarly(ov)}` :
		    ov.reopen?.seconds != null ? `${fmt(ov.reopen.seconds, 2)} s` : `not within ${ov.reopen?.limit_s ?? 30} s`) + ` | ${yes(v.reopen_le_10s)} |`);
	}
	// A caller->agent tail near half the 20 ms frame period while the
	// other direction is fine is the signature of a sender held by
	// Nagle's algorithm until the peer's next frame carries the ACK.
	const nagle = rows.filter((r) => !QUICKACK && r.up?.p99_us > 8000 && r.up?.p99_us < 12500 && r.down?.p99_us < 5000);
	if (nagle.length)
		L.push('', `Note: at N = ${nagle.map((r) => r.calls).join(', ')} the caller -> agent p99 sits near 10 ms (half the 20 ms frame period) ` +
		    'while agent -> caller stays low: the pattern of a socket without TCP_NODELAY whose small writes wait for the delayed ACK ' +
		    'that the peer\'s next frame carries (Nagle). BENCH_QUICKACK=1 makes the fake ElevenLabs ACK at once, to measure the rest.');
	for (const k of sum.skipped_levels)
		L.push('', `Level N = ${k.calls} not run: ${k.why}.`);
	if (QUICKACK)
		L.push('', 'Run with BENCH_QUICKACK=1: the fake ElevenLabs acknowledges every read at once (TCP_QUICKACK), which hides a sender ' +
		    'that lacks TCP_NODELAY (Nagle + delayed ACK). Without it the figures are what the real service would see.');
	if (sum.loadgen_saturated_levels.length)
		L.push('', `Note: the load generator's event loop used more than 80% of a core at N = ${sum.loadgen_saturated_levels.join(', ')}; there the figures measure the load generator as much as naiberd.`);
	if (sum.floor_generator_saturated_levels?.length)
		L.push('', `Note: relayfloor's generator used more than 80% of a core at N = ${sum.floor_generator_saturated_levels.join(', ')}; there its figures measure its generator as much as the relays.`);
	L.push('');
	L.push('## Per level');
	L.push('');
	L.push(`Steady-state window ${WIN} s per level after a ramp of ${RMP} calls/s and ${sum.settle_s ?? SETTLE} s settle. ` +
	    '"up" = caller -> agent (Twilio media -> user_audio_chunk), "down" = agent -> caller (audio -> Twilio media); ' +
	    'latency = receive time - send time written into the audio bytes (CLOCK_MONOTONIC), loopback TCP both ways included. ' +
	    'lost = frames sent inside the window that had not arrived 1 s after it (up to 10 s while some were still missing). ' +
	    `Setup, upgrade and handoff percentiles are over every call of the level (n = N), and every call is started during the ramp at ${RMP} calls/s ` +
	    '(N/' + RMP + ' s), while the calls already up relay audio: the ramp\'s set-ups and handoffs are included, not just a quiet machine\'s. ' +
	    'Relay latency, loss and CPU are over the window only.' +
	    (fl ? ' "floor CPU-s/call-min" and "x floor": relayfloor proc at the same N and window length (next section).' : ''));
	L.push('');
	L.push(table(rows));
	L.push('');
	L.push('| N | ramp s | server cores busy | supervisor CPU-s | workers CPU-s | whole-run CPU-s/call-min (setup+teardown incl.) | PSS total MiB (procs) | PSS anon/file KiB/call | connect+upgrade p99 ms | other processes before the level (cores) | loadgen process CPU% | tick lag p99 us | failed | notes |');
	L.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
	for (const r of rows) {
		const notes = [];
		if (r.error) notes.push(r.error);
		for (const [k, v] of Object.entries(r.fail_reasons ?? {})) notes.push(`${v}x ${k}`);
		if (r.naiberd?.worker_deaths) notes.push(`${r.naiberd.worker_deaths} worker deaths`);
		if (r.naiberd?.supervisor_exit_during_run) notes.push(`supervisor exited ${JSON.stringify(r.naiberd.supervisor_exit_during_run)}`);
		if (r.other_http) notes.push(`${r.other_http} unexpected HTTP requests (e.g. ${[...new Set((r.other_http_sample ?? [])
		    .map((x) => x.replace(/\b(CA|AC)[0-9a-f]{32}\b/g, '$1…').replace(/ HTTP\/1\.1$/, '')))].join('; ')})`);
		if (r.loadgen?.main_cpu_pct > 80) notes.push('loadgen near saturation');
		if (r.loadgen?.skipped_window_ms) notes.push(`loadgen fell behind real time: ${r.loadgen.skipped_window_ms} ms of frames skipped`);
		if (r.background_cores_before > QUIET_CORES) notes.push(`machine not quiet before the level (${r.background_cores_before} cores busy)`);
		if (r.floor?.background_cores_before > QUIET_CORES) notes.push(`machine not quiet before relayfloor (${r.floor.background_cores_before} cores busy)`);
		if (r.handoff_us && r.set_up && r.handoff_us.n < r.set_up) notes.push(`${r.handoff_us.n} handoff lines for ${r.set_up} calls`);
		L.push(`| ${r.calls} | ${fmt(r.ramp_s, 1)} | ${fmt(r.cpu?.server_cores, 3)} | ${fmt(r.cpu?.supervisor_s, 2)} | ${fmt(r.cpu?.workers_s, 2)} | ` +
		    `${fmt(r.cpu?.run_per_call_minute_s, 4)} | ${r.pss ? `${fmt(r.pss.total_kib / 1024, 1)} (${r.pss.procs})` : '-'} | ` +
		    `${r.pss ? `${fmt(r.pss.anon_kib / r.calls, 0)}/${fmt(r.pss.file_kib / r.calls, 0)}` : '-'} | ${fmt(r.connect_upgrade_ms?.p99, 2)} | ` +
		    `${fmt(r.background_cores_before, 2)} | ` +
		    `${fmt(r.loadgen?.process_cpu_pct, 0)} | ${fmt(r.loadgen?.tick_lag_p99_us)} | ${r.failed ?? '-'} | ${notes.join('; ') || '-'} |`);
	}
	L.push('');
	L.push('## The floor: relayfloor proc at each level');
	L.push('');
	if (fl) {
		L.push(`relayfloor (../shared/bench/floor/relayfloor.c, built into build/relayfloor) in \`proc\` mode at the same N, for the same ${WIN} s window ` +
		    `(after ${sum.floor?.warmup_s ?? FLOOR_WARMUP} s of warm-up), in the same run right before or right after naiberd's level ("floor run"; the order alternates): ` +
		    'N forked relays, each owning its call\'s two loopback TCP sockets (TCP_NODELAY) with one epoll, one read and one send per 334-byte message, ' +
		    'fed by relayfloor\'s own generator with the traffic shape of this benchmark (a frame every 20 ms each way per call, each call on its own phase). ' +
		    'It is the cheapest process-per-call relay of this traffic: naiberd\'s CPU is judged against it. CPU = the relays\' CPU clocks over the window ' +
		    '(generator excluded, as loadgen is for naiberd); c->a / a->c = relay latency each way (send stamp -> arrival at the generator); lost = sent - received after 1 s; ' +
		    'wakes/msg = relay schedule-ins per relayed message; syscalls/msg = (epoll_wait + read + send) per message. ' +
		    (sum.floor?.prio === 'fifo' ? 'Its generator runs under `chrt -f -R 10` like loadgen (SCHED_FIFO), its relays at normal priority (SCHED_RESET_ON_FORK), where naiberd\'s workers run.' :
		    sum.floor?.prio === 'nice' ? 'Its generator runs at nice -10 like loadgen, its relays at nice 0 (SCHED_RESET_ON_FORK).' :
		    'Its generator and relays run at normal priority.'));
		L.push('');
		L.push(floorTable(rows));
	} else {
		L.push('relayfloor was not run (../shared/bench/floor/relayfloor.c not found, or BENCH_FLOOR=0): no floor figures.');
	}
	const perfRow = rows.find((r) => r.perf);
	if (perfRow) {
		L.push('', `## Profile (perf record -F 499 --call-graph dwarf, the supervisor and 16 busy workers, 10 s inside the N = ${perfRow.calls} window)`, '');
		for (const [k, v] of Object.entries(perfRow.perf)) {
			L.push(`${k}:`, '', '```', ...(Array.isArray(v) ? v : [String(v)]), '```', '');
		}
	}
	if (ov) {
		L.push('', '## Overload', '');
		L.push(`After the other levels, one level offers more calls than the machine holds: ${ov.offered} calls (${ov.basis}) through \`POST /call\` at ` +
		    `${fmt(ov.ramp_per_s ?? RAMP)} calls/s, against a fresh naiberd with admission control on` +
		    (ov.admission_env && Object.keys(ov.admission_env).length ? ` (limits from BENCH_ADMISSION_ENV: ${Object.entries(ov.admission_env).map(([k, x]) => `${k}=${x}`).join(' ')})` : ' (default limits)') +
		    ` and max_calls above the offer, so only measured headroom refuses. Every admitted call streams from the moment it was admitted; the relay figures are over a ${fmt(ov.window_s)} s window ` +
		    'that starts once the last offer was answered and every admitted call was set up, then the calls are ended and GET /ready is polled until admission has reopened.');
		L.push('');
		L.push(overloadTable(ov));
	}
	L.push('');
	L.push('## How it was measured');
	L.push('');
	L.push('- `build/loadgen` (tests/bench/loadgen.c, C, one epoll loop + a /proc sampler thread) plays both peers: N Twilio Media Streams ' +
	    '(plain TCP, signed upgrade, masked frames, `connected` + `start` with the call\'s nonce, then 160-byte mu-law `media` every 20 ms) and ' +
	    'the ElevenLabs side (signed-URL HTTP endpoint answering a ws:// URL back to itself, the ConvAI WebSocket: expects ' +
	    '`conversation_initiation_client_data`, answers `conversation_initiation_metadata` with ulaw_8000 both ways, then an agent `audio` event every 20 ms). ' +
	    'Each frame carries its call index, sequence number and send time inside the audio bytes.');
	L.push('- No POST /call and no fake Twilio REST at the levels (the overload level below has both): the driver writes `call:{sid}` (callType, phone, nonce, createdAt and a prepared ' +
	    '`firstMessage`, as a PREPARE worker leaves it while the phone rings) and `call_type:{sid}` into Redis itself. The worker still checks the nonce, ' +
	    'loads the person from PostgreSQL (one person per call: id `bu<i>`, one summary, condition and medication each), fetches the signed URL, ' +
	    'connects, sends the init message and bridges after the metadata.');
	L.push('- Setup = Twilio `start` sent -> first agent `media` received on the Twilio socket. The peers answer at once, so this is naiberd\'s own ' +
	    'setup (Redis GET, PostgreSQL connect + profile query, signed-URL GET, WebSocket connect, init) plus loopback.');
	L.push('- Upgrade round trip = the Twilio side\'s upgrade request written -> the 101 received (kernel receive time); "connect+upgrade" also counts the TCP connect. ' +
	    'It covers the supervisor\'s accept, head parse, signature check and handoff, and the worker\'s WebSocket handshake.');
	L.push('- Handoff: the supervisor\'s `accepted stream (handoff N us, channel M us)` lines at --log-level info, one per call (n in the table).');
	L.push('- CPU: utime+stime from /proc/PID/stat of the supervisor and all its children (reaped children through cutime+cstime), sampled ' +
	    'at the window edges by loadgen\'s sampler thread; per call-minute = CPU-s / (N x window minutes). The whole-run figure also ' +
	    'includes ramp, setup and teardown. PSS: smaps_rollup of the supervisor and every child (busy and idle workers) after the window, calls still live, divided by N.');
	L.push('- Other processes: busy CPU from /proc/stat over 1 s just before each level and each relayfloor run (the driver waits up to BENCH_QUIET_WAIT s for it to fall ' +
	    'below BENCH_QUIET_CORES). The JSON also has machine_busy_cores / other_cores for the window, from /proc/stat\'s tick-sampled counters: ' +
	    'on this VM they can undercount short bursts, so read them as a rough hint only.');
	L.push('- loadgen CPU%: its event-loop thread\'s CPU time over the window (a core = 100%); above ~80% the generator, not naiberd, is the limit.');
	L.push('- The plot: tests/bench/results.dat (written by bench.mjs, one line per level) drawn by gnuplot with tests/bench/results.gp.');
	if (ov)
		L.push('- Overload level: the driver itself is the client of `POST /call` (Bearer token, `{"phone": ...}`, one person per offer), one request every ' +
		    `1/${fmt(ov.ramp_per_s ?? RAMP)} s without waiting for the answers, and naiberd\'s TWILIO_API_BASE points at a fake Twilio REST API in the driver ` +
		    '(201 and a fresh CA sid per create, 200 per hang-up update). For each 200 the driver reads the nonce from Redis `call:{sid}` and at once writes ' +
		    '"sid streamSid nonce person" to the stdin of a loadgen started in follow mode (`-f - -n MAX`), which opens that call\'s stream as soon as it reads the line: ' +
		    'so each admitted call streams while the next ones are still offered, and the load builds as in production (no batches; loadgen starts each call the ' +
		    'moment its line arrives, and its ramp ends at end of input). Every 503 is counted as refused, by its JSON `reason`, with a check for `Retry-After`; ' +
		    'anything else (another status, a connection error) counts as refused another way. After the window loadgen ends every call (Twilio `stop`); from that ' +
		    'moment the driver polls GET /ready every 250 ms (up to 30 s): time to reopen = the first 200. Admission closings and the admitted/refused totals come from ' +
		    '/metrics at the end; the peak smoothed signals from /metrics read once a second; the closing and reopening lines from naiberd\'s log. ' +
		    'The first message is not pre-stored here: a PREPARE worker makes it, as in production.');
	L.push('');
	L.push('## Command lines');
	L.push('');
	L.push('```');
	L.push(`make bench   # = node tests/bench/bench.mjs, BENCH_CALLS="${(sum.requested_levels ?? LEVELS).join(' ')}" BENCH_SECONDS=${WIN} BENCH_RAMP=${RMP} BENCH_WORKERS=${sum.workers ?? WORKERS}`);
	if (c.syscall?.by === 'relayfloor syscall') L.push('build/relayfloor syscall');
	if (c.fork_exit_wait_us) L.push('build/forkcost 200');
	L.push(ctx.redisCmd.replace(tmp, '$TMP'));
	L.push('sh tests/lib/pg.sh start $TMP/pg PORT; psql < tests/lib/schema.sql; persons inserted with generate_series');
	for (const r of rows) {
		if (!r.cmd && !r.floor?.cmd) continue;
		L.push(`# N = ${r.calls}`);
		if (r.floor?.cmd && r.floor.order === 'before') L.push(r.floor.cmd);
		if (r.cmd) L.push(r.cmd.naiberd, r.cmd.loadgen);
		if (r.floor?.cmd && r.floor.order !== 'before') L.push(r.floor.cmd);
	}
	if (ov?.cmd) L.push(`# overload: ${ov.offered} x POST /call at ${fmt(ov.ramp_per_s ?? RAMP)}/s from the driver`, ov.cmd.naiberd, ov.cmd.loadgen);
	L.push('```');
	L.push('');
	L.push('Environment of naiberd: TWILIO_* (fresh auth token), STREAM_URL=' + STREAM_URL + (DB_PARAMS ? `, DATABASE_URL with ?${DB_PARAMS}` : '') +
	    ', ELEVENLABS_BASE_URL and TWILIO_API_BASE = http://127.0.0.1:<loadgen port>, DATABASE_URL and REDIS_URL of the throwaway servers' +
	    (ov ? '; at the overload level TWILIO_API_BASE = the driver\'s fake Twilio REST API, plus BENCH_ADMISSION_ENV if set.' : '.'));
	L.push('');
	L.push('## Raw JSON');
	L.push('');
	L.push('```');
	for (const r of rows) {
		const { cmd: _c, perf: _p, ...rest } = r;
		L.push(JSON.stringify(rest));
	}
	if (ov) {
		const { cmd: _c, ...rest } = ov;
		L.push(JSON.stringify(rest));
	}
	L.push(JSON.stringify(sum));
	L.push('```');
	fs.writeFileSync(RESULTS, L.join('\n') + '\n');
	log(`wrote ${path.relative(REPO, RESULTS)}`);
}

// ----------------------------------------------------------------- main

const renderCtx = {};

// BENCH_RENDER=FILE: rewrite RESULTS.md from the stdout (JSON lines) of an
// earlier run, without running anything (e.g. after a template change).
if (process.env.BENCH_RENDER) {
	const lines = fs.readFileSync(process.env.BENCH_RENDER, 'utf8').split('\n')
	    .filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
	const old = lines.find((l) => l.summary);
	const rows = lines.filter((l) => !l.summary && !l.overload && l.calls).sort((a, b) => a.calls - b.calls);
	const ovOld = lines.find((l) => l.overload) ?? null;
	if (!old || (!rows.length && !ovOld)) {
		console.error('bench: BENCH_RENDER: no result lines');
		process.exit(1);
	}
	skipped.push(...(old.skipped_levels ?? []));
	renderCtx.redisCmd = old.redis_cmd ?? "redis-server --port PORT --bind 127.0.0.1 --save '' --appendonly no " +
	    '--dir $TMP/redis --daemonize no --protected-mode no --maxclients 15000 --loglevel warning';
	const sum = summarize(rows, old.machine, old.date, old.seconds_total, ovOld);
	// That run's settings, not this environment's.
	for (const k of ['window_s', 'ramp_per_s', 'settle_s', 'workers', 'floor', 'quickack_workaround'])
		if (k in old) sum[k] = old[k];
	sum.requested_levels = old.requested_levels ?? null;
	sum.rendered_at = new Date().toISOString();
	writeResults(rows, sum, { redisCmd: renderCtx.redisCmd }, ovOld);
	fs.rmSync(tmp, { recursive: true, force: true });
	process.exit(0);
}

const t0 = Date.now();
const startedAt = new Date().toISOString();
const m = machine();
log(`machine: ${m.nproc} x ${m.cpu}, ${m.mem_gib} GiB, ${m.kernel}; levels ${LEVELS.join(' ')}, ${SECONDS} s each`);
if (!FLOOR)
	log(process.env.BENCH_FLOOR === '0' ? 'BENCH_FLOOR=0: no relayfloor runs' :
	    `relayfloor not found (${RELAYFLOOR || 'RELAYFLOOR empty'}; its source is ../shared/bench/floor): ` +
	    'running without the floor columns');
const rows = [];
let ov = null;
// One person per call slot; the overload level offers up to 2 x MAXN.
const PERSONS = Math.max(MAXN, OV_ON ? (OV_CALLS || 2 * MAXN) : 0);
try {
	const redis = await startRedis();
	const pg = await startPostgres();
	cleanups.push(() => pg.stop());
	await pg.psql(`
INSERT INTO users ("id","name","phone","age","gender","interests","dislikes","isFirstCall","lastCallAt","updatedAt")
  SELECT 'bu'||i, 'Person '||i, '+1555'||lpad(i::text,7,'0'), 70 + i % 25, 'FEMALE',
         ARRAY['gardening','the radio'], ARRAY['politics'], false, now() - interval '1 day', now()
  FROM generate_series(0, ${PERSONS - 1}) i;
INSERT INTO conversation_summaries ("userId","conversationId","summaryText")
  SELECT 'bu'||i, 'conv_prev_'||i, 'Talked about the garden and the grandchildren visiting on Sunday.'
  FROM generate_series(0, ${PERSONS - 1}) i;
INSERT INTO user_health_conditions ("userId","condition","severity")
  SELECT 'bu'||i, 'arthritis', 'mild' FROM generate_series(0, ${PERSONS - 1}) i;
INSERT INTO user_medications ("userId","name","dosage","frequency")
  SELECT 'bu'||i, 'paracetamol', '500 mg', 'as needed' FROM generate_series(0, ${PERSONS - 1}) i;
ANALYZE;`);
	const elPort = await freePort();
	const ctx = { redis, pg, elPort, token: hex(16), apiToken: hex(16), redisCmd: redis.cmd };
	renderCtx.redisCmd = redis.cmd.replace(tmp, '$TMP');
	m.costs = await machineCosts();
	log(`machine costs: ${JSON.stringify(m.costs)}`);
	let nrun = 0;
	const one = async (N, why) => {
		const t = Date.now();
		// The floor's turn alternates: after naiberd at the 1st, 3rd, ...
		// level run, before it at the 2nd, 4th, ...
		const floorFirst = FLOOR && nrun++ % 2 === 1;
		log(`level N=${N}${why ? ` (${why})` : ''}`);
		let fl = null;
		if (floorFirst) {
			log(`relayfloor proc N=${N} (before naiberd)`);
			fl = await runFloor(N);
		}
		let r;
		try {
			r = await runLevel(N, ctx);
		} catch (e) {
			r = { label: `n${N}`, calls: N, error: e.message.split('\n')[0], meets_target: false };
			log(`level N=${N} failed: ${e.message}`);
		}
		if (FLOOR && !floorFirst) {
			log(`relayfloor proc N=${N} (after naiberd)`);
			fl = await runFloor(N);
		}
		if (fl) {
			fl.order = floorFirst ? 'before' : 'after';
			r.floor = fl;
			const nc = r.cpu?.per_call_minute_s, fc = fl.cpu_s_per_call_min;
			r.cpu_vs_floor = nc > 0 && fc > 0 ? Math.round(nc / fc * 1000) / 1000 : null;
		}
		r.level_seconds = Math.round((Date.now() - t) / 100) / 10;
		if (why) r.refine = why;
		rows.push(r);
		console.log(JSON.stringify(r));
		return r;
	};
	const left = () => BUDGET - (Date.now() - t0) / 1000;
	// A level also keeps the time the overload level would need if it
	// set the capacity (2 N offered).
	const estimate = (N) => N / RAMP + SETTLE + SECONDS + 25 + N / 100 +
	    (FLOOR ? SECONDS + FLOOR_WARMUP + 6 + N / 100 : 0) +
	    (OV_ON ? ovEstimate(OV_CALLS || 2 * N) : 0);
	let collapsed = null;
	for (const N of OV_ONLY ? [] : [...LEVELS].sort((a, b) => a - b)) {
		if (collapsed !== null) {
			skipped.push({ calls: N, why: `N=${collapsed} already collapsed` });
			continue;
		}
		if (estimate(N) > left() && rows.length) {
			skipped.push({ calls: N, why: 'time budget' });
			continue;
		}
		const r = await one(N);
		if (collapseOf(r)) collapsed = N;
	}
	// Narrow down the largest passing N between the best pass and the
	// first failure (bisection, steps of 10 calls), within the budget.
	for (let i = 0; i < (OV_ONLY ? 0 : REFINE); i++) {
		const pass = Math.max(0, ...rows.filter((r) => r.meets_target).map((r) => r.calls));
		const fails = rows.filter((r) => !r.meets_target && r.calls > pass).map((r) => r.calls);
		if (!pass || !fails.length) break;
		const fail = Math.min(...fails);
		const mid = Math.round((pass + fail) / 2 / 10) * 10;
		if (mid <= pass || mid >= fail || fail - pass <= 20) break;
		if (estimate(mid) > left()) { skipped.push({ calls: mid, why: 'time budget (refinement)' }); break; }
		await one(mid, `bisecting between ${pass} and ${fail}`);
	}
	rows.sort((a, b) => a.calls - b.calls);
	if (OV_ON) {
		const plan = overloadPlan(rows);
		log(`overload level: offering ${plan.offered} calls through POST /call (${plan.basis})`);
		const t = Date.now();
		try {
			ov = await runOverload(plan, ctx);
		} catch (e) {
			log(`overload level failed: ${e.message}`);
			ov = { overload: true, label: 'overload', offered: plan.offered, basis: plan.basis,
				capacity_n: plan.capacity_n, error: e.message.split('\n')[0] };
			ov.verdicts = overloadVerdicts(ov);
		}
		ov.level_seconds = Math.round((Date.now() - t) / 100) / 10;
		console.log(JSON.stringify(ov));
	}
	const sum = summarize(rows, m, startedAt, Math.round((Date.now() - t0) / 1000), ov);
	console.log(JSON.stringify(sum));
	process.stderr.write('\n' + table(rows) + '\n\n' + (hasFloor(rows) ? floorTable(rows) + '\n\n' : '') +
	    (ov ? overloadTable(ov) + '\n\n' : ''));
	log(`largest N meeting p99 < 5 ms with zero loss: ${sum.largest_n_meeting_p99_5ms_zero_loss}`);
	writeResults(rows, sum, ctx, ov);
} finally {
	await cleanupAll();
}
