// t_ops: the operations side.  -D with --pidfile (detaching, the pid file,
// a second instance refused, SIGTERM, a stale pid file), -u (supervisor
// and workers run as that user), refusing root without -u, the systemd
// unit (systemd-analyze verify), both man pages (mandoc -Tlint and
// tests/check-man.sh, including the checker catching disagreements), the
// sample configuration files, and `make install DESTDIR=... PREFIX=...`.
//
// The pid file is not removed when naiberd exits (naiberd(8)): the test
// checks that a stale one names the dead supervisor and that the next
// start overwrites it.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
	itest, runNaiberd, startNaiberd, baseEnv, freePort, http, waitFor, withTimeout,
	pidAlive, childPids, workerPidsOf, NAIBERD, REPO,
} from '../lib/harness.mjs';

const isRoot = process.geteuid?.() === 0;
const show = (r) => `exit ${r.code}\n--- stdout ---\n${r.stdout}--- stderr ---\n${r.stderr}`;

function have(cmd) {
	return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
}

function run(cmd, args, opts = {}) {
	const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120000, ...opts });
	if (r.error) throw r.error;
	return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '',
	    output: (r.stdout ?? '') + (r.stderr ?? '') };
}

function tmpDir(t, prefix = 'naiberd-ops-') {
	const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
	t.after(() => fs.rmSync(d, { recursive: true, force: true }));
	return d;
}

function passwdEntry(name) {
	for (const l of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
		const f = l.split(':');
		if (f[0] === name) return { uid: Number(f[2]), gid: Number(f[3]) };
	}
	return null;
}

/* /proc/<pid>/status as {Uid: [real, eff, saved, fs], Gid: [...], Groups: [...]} */
function procIds(pid) {
	const out = {};
	for (const l of fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
		const m = /^(Uid|Gid|Groups):\s*(.*)$/.exec(l);
		if (m) out[m[1]] = m[2].split(/\s+/).filter(Boolean).map(Number);
	}
	return out;
}

/* Session id (field 6 of /proc/<pid>/stat). */
function sessionOf(pid) {
	const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
	return Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[3]);
}

function exeOf(pid) {
	try {
		return fs.readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, '');
	} catch {
		return null;
	}
}

/* The option table, from the hidden --dump-options. */
function optionTable() {
	const r = run(NAIBERD, ['--dump-options']);
	assert.equal(r.code, 0, `naiberd --dump-options\n${r.output}`);
	return r.stdout.trim().split('\n').map((l) => {
		const [key, env, type, def, flags] = l.split('\t');
		const fl = new Set(flags.split(',').filter((f) => f && f !== '-'));
		return { key, env, type, def, secret: fl.has('secret'), noreload: fl.has('noreload'),
		    required: fl.has('required') };
	});
}

/*
 * A private prompts copy and spool, both usable by `owner` (a passwd
 * entry or null), in a directory others may traverse (-u drops root
 * before the prompts are loaded).
 */
function runtimeDirs(t, owner) {
	const dir = tmpDir(t);
	fs.chmodSync(dir, 0o755);
	const prompts = path.join(dir, 'prompts');
	fs.cpSync(path.join(REPO, 'prompts'), prompts, { recursive: true });
	const spool = path.join(dir, 'spool');
	fs.mkdirSync(spool, { mode: 0o700 });
	if (owner) fs.chownSync(spool, owner.uid, owner.gid);
	const conf = path.join(dir, 'naiberd.conf');
	fs.writeFileSync(conf, '', { mode: 0o600 });
	return { dir, prompts, spool, conf };
}

/*
 * Launch `naiberd -D ...` with stderr going to logPath; resolves with
 * the launching command's exit once it has returned.
 */
function launchDetached(args, env, logPath) {
	const fd = fs.openSync(logPath, 'a');
	const p = spawn(NAIBERD, args, { env, cwd: os.tmpdir(), stdio: ['ignore', 'ignore', fd] });
	fs.closeSync(fd);
	return withTimeout(new Promise((resolve, reject) => {
		p.on('error', reject);
		p.on('exit', (code, signal) => resolve({ code, signal, pid: p.pid }));
	}), 10000, `naiberd ${args.join(' ')} to return`);
}

function readPid(file) {
	try {
		const s = fs.readFileSync(file, 'utf8');
		return /^\d+\n$/.test(s) ? Number(s) : null;
	} catch {
		return null;
	}
}

/* SIGTERM a daemon we started (checked by its executable), then SIGKILL. */
async function stopDaemon(pid, exe) {
	if (!pid || !pidAlive(pid) || exeOf(pid) !== exe) return;
	const workers = childPids(pid);
	try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
	try {
		await waitFor(() => !pidAlive(pid), 10000, `naiberd ${pid} to exit`);
	} catch {
		try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
	}
	for (const w of workers)
		if (pidAlive(w) && exeOf(w) === exe) try { process.kill(w, 'SIGKILL'); } catch { /* gone */ }
}

// ------------------------------------------------------------- -D, pidfile

itest('-D detaches, --pidfile names the supervisor, a second instance is refused, SIGTERM stops it',
    { timeout: 60000 }, async (t) => {
	const nobody = isRoot ? passwdEntry('nobody') : null;
	if (isRoot) assert.ok(nobody, 'no user nobody in /etc/passwd');
	const rt = runtimeDirs(t, nobody);
	const pidFile = path.join(rt.dir, 'naiberd.pid');
	const log = path.join(rt.dir, 'daemon.log');
	const exe = fs.realpathSync(NAIBERD);
	const env = baseEnv({ NAIBER_PROMPTS_DIR: rt.prompts, NAIBER_SPOOL_DIR: rt.spool });
	const userArgs = isRoot ? ['-u', 'nobody'] : [];
	const daemonArgs = (port) => ['-c', rt.conf, '-l', '127.0.0.1', '-p', String(port), '-w', '1',
	    '-m', '2', '-D', '--pidfile', pidFile, ...userArgs];
	const started = [];
	t.after(async () => { for (const p of started) await stopDaemon(p, exe); });
	const logText = () => { try { return fs.readFileSync(log, 'utf8'); } catch { return ''; } };

	// The launching command returns (exit 0) while the daemon keeps running.
	const port = await freePort();
	const l = await launchDetached(daemonArgs(port), env, log);
	assert.deepEqual([l.code, l.signal], [0, null], `launcher exit\n${logText()}`);
	const pid = await waitFor(() => readPid(pidFile), 5000, 'the pid file').catch((e) => {
		throw new Error(`${e.message}\n${logText()}`);
	});
	started.push(pid);
	assert.notEqual(pid, l.pid, 'the pid file names the daemon, not the launcher');
	assert.ok(pidAlive(pid), `pid ${pid} from the pid file is alive\n${logText()}`);
	assert.equal(exeOf(pid), exe, 'the pid file names a naiberd process');
	assert.notEqual(sessionOf(pid), sessionOf(process.pid), 'the daemon left our session');

	// It serves, and it is the supervisor: the process with the workers.
	await waitFor(async () => (await http(port, 'GET', '/health', { timeoutMs: 1000 })).status === 200,
	    10000, 'GET /health from the daemon');
	await waitFor(() => workerPidsOf(pid).length === 1, 5000, 'one idle worker under the pid-file process');
	if (isRoot) {
		assert.deepEqual(procIds(pid).Uid, Array(4).fill(nobody.uid), 'supervisor uid after -u nobody');
		assert.match(logText(), /running as nobody/);
	}

	// A second instance with the same pid file is refused (foreground:
	// the exit status says so).
	const port2 = await freePort();
	const r2 = await runNaiberd(['-c', rt.conf, '-l', '127.0.0.1', '-p', String(port2),
	    '--pidfile', pidFile, ...userArgs], { env });
	assert.notEqual(r2.code, 0, `second instance must not start\n${show(r2)}`);
	assert.match(r2.output, new RegExp(`pid file .*already running as pid ${pid}`), show(r2));
	assert.equal(readPid(pidFile), pid, 'the pid file still names the first daemon');

	// A second detached instance: it logs the refusal, leaves the pid
	// file alone, and its launcher exits non-zero.
	const mark = logText().length;
	const l3 = await launchDetached(daemonArgs(port2), env, log);
	await waitFor(() => /already running as pid/.test(logText().slice(mark)), 5000,
	    'the detached second instance to log the refusal');
	assert.equal(readPid(pidFile), pid, 'the pid file still names the first daemon');
	await waitFor(async () => (await http(port2, 'GET', '/health', { timeoutMs: 1000 })
	    .then(() => null, (e) => e.code)) === 'ECONNREFUSED', 5000, 'the refused instance to be gone');
	assert.notEqual(l3.code, 0, 'the launcher of a refused detached instance fails');

	// SIGTERM: the supervisor and its workers exit.
	const workers = childPids(pid);
	process.kill(pid, 'SIGTERM');
	await waitFor(() => !pidAlive(pid), 10000, `supervisor ${pid} to exit after SIGTERM`);
	await waitFor(() => workers.every((w) => !pidAlive(w)), 5000, 'workers to exit');
	assert.match(logText(), /shutdown complete/);
	// The pid file stays behind, naming the dead supervisor ...
	if (fs.existsSync(pidFile)) assert.equal(readPid(pidFile), pid, 'a stale pid file names the old pid');
	// ... and the next start overwrites it: the lock died with it.
	const port4 = await freePort();
	const l4 = await launchDetached(daemonArgs(port4), env, log);
	assert.equal(l4.code, 0, logText());
	const pid4 = await waitFor(() => { const p = readPid(pidFile); return p !== pid && p; }, 5000,
	    'a new pid in the stale pid file').catch((e) => { throw new Error(`${e.message}\n${logText()}`); });
	started.push(pid4);
	await waitFor(async () => (await http(port4, 'GET', '/health', { timeoutMs: 1000 })).status === 200,
	    10000, 'GET /health from the restarted daemon');
	await stopDaemon(pid4, exe);
	assert.ok(!pidAlive(pid4));
});

itest('-D: a pid file naming a live process that holds no lock is taken over', async (t) => {
	const nobody = isRoot ? passwdEntry('nobody') : null;
	const rt = runtimeDirs(t, nobody);
	const pidFile = path.join(rt.dir, 'naiberd.pid');
	// A live process that is not naiberd is named, but holds no lock.
	fs.writeFileSync(pidFile, `${process.pid}\n`);
	const exe = fs.realpathSync(NAIBERD);
	// The pid is kept here: the directory (and the pid file) may be
	// gone by the time this hook runs.
	let pid = null;
	t.after(() => stopDaemon(pid ?? readPid(pidFile), exe));
	const log = path.join(rt.dir, 'daemon.log');
	const env = baseEnv({ NAIBER_PROMPTS_DIR: rt.prompts, NAIBER_SPOOL_DIR: rt.spool });
	const l = await launchDetached(['-c', rt.conf, '-l', '127.0.0.1', '-p', String(await freePort()),
	    '-D', '--pidfile', pidFile, ...(isRoot ? ['-u', 'nobody'] : [])], env, log);
	assert.equal(l.code, 0, 'launcher exit status');
	pid = await waitFor(() => readPid(pidFile) !== process.pid && readPid(pidFile), 5000, 'the new pid');
	assert.equal(exeOf(pid), exe, 'the pid file now names the naiberd supervisor');
});

// ----------------------------------------------------------------- -u, root

itest('-u nobody: the supervisor and every worker run as nobody', async (t) => {
	if (!isRoot) {
		t.skip('needs root: -u only works when started as root');
		return;
	}
	const nobody = passwdEntry('nobody');
	assert.ok(nobody, 'no user nobody in /etc/passwd');
	const rt = runtimeDirs(t, nobody);
	const d = await startNaiberd({
		workers: 3, maxCalls: 4, args: ['-u', 'nobody'],
		env: { NAIBER_PROMPTS_DIR: rt.prompts, NAIBER_SPOOL_DIR: rt.spool },
	});
	await d.waitLog(/running as nobody \(uid \d+\)/, 5000);
	const want = Array(4).fill(nobody.uid);
	const sv = procIds(d.pid);
	assert.deepEqual(sv.Uid, want, 'supervisor Uid (real, effective, saved, fs)');
	assert.deepEqual(sv.Gid, Array(4).fill(nobody.gid), 'supervisor Gid');
	assert.deepEqual(sv.Groups, [nobody.gid], 'supervisor supplementary groups');
	const workers = await waitFor(() => { const c = d.children(); return c.length === 3 && c; }, 5000,
	    '3 idle workers');
	for (const w of workers) {
		const ids = procIds(w);
		assert.deepEqual(ids.Uid, want, `worker ${w} Uid`);
		assert.deepEqual(ids.Gid, Array(4).fill(nobody.gid), `worker ${w} Gid`);
	}
	// Still serving after the drop.
	assert.equal((await d.http('GET', '/health')).status, 200);
});

/* se.slice from /proc/<pid>/sched (ns), or null where the kernel has none. */
function sliceOf(pid) {
	const m = fs.readFileSync(`/proc/${pid}/sched`, 'utf8').match(/^se\.slice\s*:\s*(\d+)/m);
	return m ? Number(m[1]) : null;
}

itest('sched_slice: supervisor and workers run with the asked slice; 0 leaves the default', async (t) => {
	if (sliceOf(process.pid) === null) {
		t.skip('this kernel shows no se.slice (EEVDF custom slices are Linux 6.12+)');
		return;
	}
	const d = await startNaiberd({ workers: 2, maxCalls: 4, env: { NAIBER_SCHED_SLICE: '250' } });
	const workers = await waitFor(() => { const c = d.children(); return c.length === 2 && c; }, 5000,
	    '2 idle workers');
	assert.equal(sliceOf(d.pid), 250000, 'supervisor slice (ns)');
	for (const w of workers)
		assert.equal(sliceOf(w), 250000, `worker ${w} slice (ns), inherited`);
	await d.stop();
	const def = sliceOf(process.pid);
	const d0 = await startNaiberd({ workers: 1, maxCalls: 4, env: { NAIBER_SCHED_SLICE: '0' } });
	assert.equal(sliceOf(d0.pid), def, 'slice 0: the kernel default, as for this test process');
});

itest('root without -u is refused on a port below 1024 and with -D', async (t) => {
	if (!isRoot) {
		t.skip('needs root');
		return;
	}
	const rt = runtimeDirs(t, null);
	const env = baseEnv({ NAIBER_PROMPTS_DIR: rt.prompts, NAIBER_SPOOL_DIR: rt.spool, NAIBER_USER: null });
	const r = await runNaiberd(['-c', rt.conf, '-l', '127.0.0.1', '-p', '80'], { env });
	assert.equal(r.code, 1, show(r));
	assert.match(r.output, /refusing to run as root/, show(r));
	assert.match(r.output, /-u/, `the message says how to fix it\n${show(r)}`);

	const r2 = await runNaiberd(['-c', rt.conf, '-l', '127.0.0.1', '-p', String(await freePort()), '-D'],
	    { env });
	assert.equal(r2.code, 1, show(r2));
	assert.match(r2.output, /refusing to run as root/, show(r2));
});

// ------------------------------------------------------------ systemd unit

const UNIT = path.join(REPO, 'etc', 'naiberd.service');

function analyzeVerify(unitPath, extraEnv = {}, man = false) {
	return run('systemd-analyze', ['verify', ...(man ? [] : ['--man=no']), unitPath],
	    { cwd: path.dirname(unitPath), env: { ...process.env, SYSTEMD_LOG_COLOR: '0', ...extraEnv } });
}

/* A copy of the unit whose ExecStart runs `bin` (verify needs it to exist). */
function unitCopy(dir, src, bin) {
	const text = fs.readFileSync(src, 'utf8');
	const m = /^ExecStart=(\S+)/m.exec(text);
	assert.ok(m, `${src}: no ExecStart=`);
	const p = path.join(dir, 'naiberd.service');
	fs.writeFileSync(p, text.replace(/^ExecStart=\S+/m, `ExecStart=${bin}`));
	return { path: p, execStart: m[1] };
}

function unitValue(text, key) {
	const m = new RegExp(`^${key}=(.*)$`, 'm').exec(text);
	return m ? m[1].trim() : undefined;
}

itest('etc/naiberd.service passes systemd-analyze verify and drains within TimeoutStopSec', async (t) => {
	const text = fs.readFileSync(UNIT, 'utf8');
	assert.equal(unitValue(text, 'Type'), 'notify');
	assert.equal(unitValue(text, 'NotifyAccess'), 'main');
	assert.equal(unitValue(text, 'KillMode'), 'mixed', 'SIGTERM to the supervisor only, so it drains');
	assert.equal(unitValue(text, 'ExecReload'), '/bin/kill -HUP $MAINPID');
	assert.equal(unitValue(text, 'Restart'), 'on-failure');
	assert.equal(unitValue(text, 'EnvironmentFile'), '-/etc/naiber/naiberd.env');
	assert.equal(unitValue(text, 'ExecStart'), '/usr/local/sbin/naiberd -c /etc/naiber/naiberd.conf -u naiber');
	assert.match(unitValue(text, 'WatchdogSec') ?? '', /^30s?$/);
	for (const k of ['NoNewPrivileges', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'ProtectKernelTunables',
	    'ProtectKernelModules', 'ProtectControlGroups', 'RestrictNamespaces', 'LockPersonality',
	    'MemoryDenyWriteExecute'])
		assert.equal(unitValue(text, k), 'yes', k);
	assert.equal(unitValue(text, 'ProtectSystem'), 'strict');
	assert.equal(unitValue(text, 'RestrictAddressFamilies'), 'AF_UNIX AF_INET AF_INET6');
	assert.equal(unitValue(text, 'SystemCallArchitectures'), 'native');
	assert.match(unitValue(text, 'ReadWritePaths') ?? '', /\/var\/spool\/naiberd$/);
	// The stop timeout covers the default drain plus the 15 s kill grace.
	const drain = Number(optionTable().find((o) => o.key === 'drain_timeout').def);
	const stop = /^(\d+)s?$/.exec(unitValue(text, 'TimeoutStopSec') ?? '');
	assert.ok(stop, 'TimeoutStopSec in seconds');
	assert.ok(Number(stop[1]) > drain + 15, `TimeoutStopSec ${stop[1]} must exceed drain_timeout ${drain} + 15`);

	if (!have('systemd-analyze')) {
		t.skip('systemd-analyze not found: install the Debian package systemd (make deps)');
		return;
	}
	const dir = tmpDir(t);
	const u = unitCopy(dir, UNIT, fs.realpathSync(NAIBERD));
	const r = analyzeVerify(u.path);
	assert.equal(r.code, 0, `systemd-analyze verify\n${r.output}`);
	assert.equal(r.output.trim(), '', `systemd-analyze verify warns\n${r.output}`);
});

// --------------------------------------------------------------- man pages

itest('both man pages are mandoc -Tlint clean and agree with the option table', async () => {
	assert.ok(have('mandoc'), 'mandoc not found: make deps installs it');
	const pages = ['naiberd.8', 'naiberd.conf.5'].map((p) => path.join(REPO, 'man', p));
	for (const p of pages) {
		const r = run('mandoc', ['-Tlint', '-W', 'warning', p]);
		assert.equal(r.code, 0, `mandoc -Tlint ${p}\n${r.output}`);
		assert.equal(r.output.trim(), '', `mandoc -Tlint ${p}\n${r.output}`);
	}
	const r = run('sh', [path.join(REPO, 'tests', 'check-man.sh'), NAIBERD, ...pages]);
	assert.equal(r.code, 0, `check-man.sh\n${r.output}`);
	assert.match(r.stdout, /flags agree/);
	assert.match(r.stdout, new RegExp(`${optionTable().length} keys agree`));
});

itest('check-man.sh fails when the option table and naiberd.conf.5 disagree, either way', async (t) => {
	const dir = tmpDir(t);
	const page8 = path.join(REPO, 'man', 'naiberd.8');
	const page5 = path.join(REPO, 'man', 'naiberd.conf.5');
	const dump = run(NAIBERD, ['--dump-options']).stdout;
	const check = (name, table, page = page5) => {
		const f = path.join(dir, `${name}.tsv`);
		fs.writeFileSync(f, table);
		return run('sh', [path.join(REPO, 'tests', 'check-man.sh'), NAIBERD, page8, page],
		    { env: { ...process.env, NAIBERD_OPTIONS: f } });
	};
	const edit = (re, to) => {
		assert.match(dump, re, `sample table has ${re}`);
		return dump.replace(re, to);
	};
	const cases = [
		['a key missing from the page', dump + 'zz_new\tNAIBER_ZZ\tstring\t-\t-\n',
		    /not documented in .*: zz_new/],
		['a documented key missing from the table', edit(/^head_timeout\t.*\n/m, ''),
		    /documented in .* but not in the option table: head_timeout/],
		['another environment name', edit(/^port\tPORT\t/m, 'port\tNAIBER_PORT\t'),
		    /port: environment is "PORT", the option table says "NAIBER_PORT"/],
		['another default', edit(/^(workers\t[^\t]*\t[^\t]*\t)4\t/m, (m, a) => `${a}8\t`),
		    /workers: default is "4", the option table says "8"/],
		['another type', edit(/^(openai_model\t[^\t]*\t)string\t/m, '$1url\t'),
		    /openai_model: type is "string", the option table says "url"/],
		['a secret no longer secret', edit(/^(api_token\t.*\t)secret,-$/m, '$1-'),
		    /api_token: flags is "secret", the option table says "-"/],
		['a key now fixed at start', edit(/^(workers\t.*\t)-$/m, '$1noreload,-'),
		    /workers: flags is "-", the option table says "noreload"/],
		['a key now required', edit(/^(phone_number\t.*\t)-$/m, '$1required,-'),
		    /phone_number: flags is "-", the option table says "required"/],
	];
	const ok = check('same', dump);
	assert.equal(ok.code, 0, `unchanged table\n${ok.output}`);
	for (const [what, table, re] of cases) {
		const r = check(what.replace(/\W+/g, '_'), table);
		assert.equal(r.code, 1, `${what}: check-man.sh must fail\n${r.output}`);
		assert.match(r.output, re, what);
	}
	// And from the page's side: an entry lost, an environment name changed.
	const text = fs.readFileSync(page5, 'utf8');
	const lost = path.join(dir, 'lost.5');
	fs.writeFileSync(lost, text.replace(/^\.It Ic user Ar user\n[\s\S]*?^\.El\n/m, ''));
	const r1 = check('lost', dump, lost);
	assert.equal(r1.code, 1, r1.output);
	assert.match(r1.output, /keys not documented in .*: user/);
	const renamed = path.join(dir, 'renamed.5');
	fs.writeFileSync(renamed, text.replace(/^\.Ev TLS_CA_FILE$/m, '.Ev TLS_CA'));
	const r2 = check('renamed', dump, renamed);
	assert.equal(r2.code, 1, r2.output);
	assert.match(r2.output, /tls_ca_file: environment is "TLS_CA"/);
});

// ---------------------------------------------------------- sample files

itest('the sample configuration holds no secrets, names every key and passes -t', async (t) => {
	const opts = optionTable();
	const conf = fs.readFileSync(path.join(REPO, 'etc', 'naiberd.conf'), 'utf8');
	for (const o of opts) {
		const re = new RegExp(`^\\s*#?\\s*${o.key}\\s*=`, 'm');
		if (o.secret) assert.doesNotMatch(conf, re, `etc/naiberd.conf must not set the secret ${o.key}`);
		else assert.match(conf, re, `etc/naiberd.conf shows ${o.key}`);
	}
	const active = conf.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
	for (const l of active) assert.match(l, /^[a-z_]+ = \S/, `sample line "${l}"`);

	const env = fs.readFileSync(path.join(REPO, 'etc', 'naiberd.env.example'), 'utf8');
	const names = new Set(opts.map((o) => o.env));
	for (const l of env.split('\n')) {
		if (l.trim() === '' || l.startsWith('#')) continue;
		const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(l);
		assert.ok(m, `naiberd.env.example: "${l}" is not NAME=value`);
		assert.ok(names.has(m[1]), `naiberd.env.example sets unknown ${m[1]}`);
		assert.equal(m[2], '', `naiberd.env.example: ${m[1]} must stay empty in the template`);
	}
	for (const o of opts) {
		if (o.secret)
			assert.match(env, new RegExp(`^${o.env}=$`, 'm'), `secret ${o.env} listed, empty`);
		else
			assert.match(env, new RegExp(`^#${o.env}=\\S`, 'm'), `${o.env} listed, commented, with a value`);
	}

	// The sample parses; with the required settings in the environment
	// (as the EnvironmentFile gives them) it is a valid configuration.
	const dir = tmpDir(t);
	const copy = path.join(dir, 'naiberd.conf');
	fs.copyFileSync(path.join(REPO, 'etc', 'naiberd.conf'), copy);
	fs.chmodSync(copy, 0o644);
	const r = await runNaiberd(['-t', '-c', copy], { env: baseEnv() });
	assert.equal(r.code, 0, show(r));
	assert.match(r.stdout, /configuration OK/);
});

// ------------------------------------------------------------ make install

function makeInstall(t, destdir, vars = []) {
	// Install the binary under test without rebuilding: B names a
	// directory holding it as "naiberd", marked old with -o.
	const b = tmpDir(t, 'naiberd-b-');
	fs.symlinkSync(fs.realpathSync(NAIBERD), path.join(b, 'naiberd'));
	const env = { ...process.env };
	for (const k of ['MAKEFLAGS', 'MFLAGS', 'MAKELEVEL', 'MAKEOVERRIDES', 'DESTDIR', 'PREFIX', 'SYSCONFDIR'])
		delete env[k];
	return run('make', ['-C', REPO, '--no-print-directory', 'install', `B=${b}`, '-o', `${b}/naiberd`,
	    `DESTDIR=${destdir}`, ...vars], { env });
}

function modeOf(p) {
	return fs.statSync(p).mode & 0o7777;
}

itest('make install DESTDIR=... PREFIX=/usr/local puts every file in place', { timeout: 120000 }, async (t) => {
	if (!have('make')) {
		t.skip('make not found');
		return;
	}
	const dest = tmpDir(t, 'naiberd-dest-');
	const r = makeInstall(t, dest, ['PREFIX=/usr/local']);
	assert.equal(r.code, 0, `make install\n${r.output}`);
	const at = (p) => path.join(dest, p);
	const files = {
		'usr/local/sbin/naiberd': 0o755,
		'usr/local/share/man/man8/naiberd.8': 0o644,
		'usr/local/share/man/man5/naiberd.conf.5': 0o644,
		'usr/local/lib/systemd/system/naiberd.service': 0o644,
		'etc/naiber/naiberd.conf': 0o644,
		'etc/naiber/naiberd.env.example': 0o600,
	};
	for (const [f, mode] of Object.entries(files)) {
		assert.ok(fs.statSync(at(f)).isFile(), `${f} installed`);
		assert.equal(modeOf(at(f)).toString(8), mode.toString(8), `${f} mode`);
	}
	assert.ok(fs.readFileSync(at('usr/local/sbin/naiberd')).equals(fs.readFileSync(NAIBERD)), 'binary copied');
	for (const m of ['man/naiberd.8', 'man/naiberd.conf.5', 'etc/naiberd.service', 'etc/naiberd.conf',
	    'etc/naiberd.env.example']) {
		const inst = { 'man/naiberd.8': 'usr/local/share/man/man8/naiberd.8',
		    'man/naiberd.conf.5': 'usr/local/share/man/man5/naiberd.conf.5',
		    'etc/naiberd.service': 'usr/local/lib/systemd/system/naiberd.service',
		    'etc/naiberd.conf': 'etc/naiber/naiberd.conf',
		    'etc/naiberd.env.example': 'etc/naiber/naiberd.env.example' }[m];
		assert.equal(fs.readFileSync(at(inst), 'utf8'), fs.readFileSync(path.join(REPO, m), 'utf8'),
		    `${m} installed unchanged for the default prefix`);
	}
	for (const p of fs.readdirSync(path.join(REPO, 'prompts')))
		assert.ok(fs.existsSync(at(`usr/local/share/naiberd/prompts/${p}`)), `prompt ${p} installed`);
	assert.ok(fs.statSync(at('var/spool/naiberd')).isDirectory(), 'spool directory');
	assert.equal(modeOf(at('var/spool/naiberd')).toString(8), '700', 'spool mode');

	// The installed binary reads the installed sample.
	const chk = run(at('usr/local/sbin/naiberd'), ['-t', '-c', at('etc/naiber/naiberd.conf')], { env: baseEnv() });
	assert.equal(chk.code, 0, `installed naiberd -t\n${chk.output}`);

	// The installed unit verifies, man pages of Documentation= included.
	if (have('systemd-analyze')) {
		const u = unitCopy(tmpDir(t), at('usr/local/lib/systemd/system/naiberd.service'),
		    at('usr/local/sbin/naiberd'));
		assert.equal(u.execStart, '/usr/local/sbin/naiberd');
		const v = analyzeVerify(u.path, { MANPATH: at('usr/local/share/man') }, have('man'));
		assert.equal(v.code, 0, `systemd-analyze verify of the installed unit\n${v.output}`);
		assert.equal(v.output.trim(), '', v.output);
	} else {
		t.diagnostic('systemd-analyze not found: installed unit not verified');
	}

	// A second install keeps an edited configuration.
	fs.appendFileSync(at('etc/naiber/naiberd.conf'), 'workers = 7\n');
	const r2 = makeInstall(t, dest, ['PREFIX=/usr/local']);
	assert.equal(r2.code, 0, r2.output);
	assert.match(fs.readFileSync(at('etc/naiber/naiberd.conf'), 'utf8'), /^workers = 7$/m,
	    'existing naiberd.conf kept');
});

itest('make install PREFIX=/usr SYSCONFDIR=/usr/local/etc rewrites the paths', { timeout: 120000 }, async (t) => {
	if (!have('make')) {
		t.skip('make not found');
		return;
	}
	const dest = tmpDir(t, 'naiberd-dest-');
	const r = makeInstall(t, dest, ['PREFIX=/usr', 'SYSCONFDIR=/usr/local/etc']);
	assert.equal(r.code, 0, `make install\n${r.output}`);
	const unit = fs.readFileSync(path.join(dest, 'usr/lib/systemd/system/naiberd.service'), 'utf8');
	assert.equal(unitValue(unit, 'ExecStart'), '/usr/sbin/naiberd -c /usr/local/etc/naiber/naiberd.conf -u naiber');
	assert.equal(unitValue(unit, 'EnvironmentFile'), '-/usr/local/etc/naiber/naiberd.env');
	const conf = fs.readFileSync(path.join(dest, 'usr/local/etc/naiber/naiberd.conf'), 'utf8');
	assert.match(conf, /^prompts_dir = \/usr\/share\/naiberd\/prompts$/m);
	assert.ok(fs.existsSync(path.join(dest, 'usr/sbin/naiberd')));
	assert.ok(fs.existsSync(path.join(dest, 'usr/share/naiberd/prompts/sections.conf')));
	assert.ok(fs.existsSync(path.join(dest, 'usr/share/man/man5/naiberd.conf.5')));
});
