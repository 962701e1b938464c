// t_config: naiberd -t, -h, -V and refusing bad configurations.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { itest, runNaiberd, startNaiberd, waitFor, freePort, baseEnv, NAIBERD, REPO } from '../lib/harness.mjs';

function tmpConf(t, text, mode = 0o600) {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-conf-'));
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const p = path.join(dir, 'naiberd.conf');
	fs.writeFileSync(p, text, { mode });
	fs.chmodSync(p, mode);
	return p;
}

const show = (r) => `exit ${r.code}\n--- stdout ---\n${r.stdout}--- stderr ---\n${r.stderr}`;
const lines = (s) => s.split('\n').filter((l) => l.trim() !== '');

test('binary exists', () => {
	assert.ok(fs.existsSync(NAIBERD), `${NAIBERD} missing`);
});

itest('-t with a complete configuration prints "configuration OK"', async (t) => {
	const conf = tmpConf(t, '');
	const r = await runNaiberd(['-t', '-c', conf, '-l', '127.0.0.1', '-p', '3999', '-w', '2', '-m', '4']);
	assert.equal(r.code, 0, show(r));
	assert.match(r.output, /configuration OK/, show(r));
});

itest('-t names every missing required setting, one line each', async (t) => {
	const conf = tmpConf(t, '');
	const required = ['TWILIO_ACCOUNT_SID', 'TWILIO_AUTH_TOKEN', 'TWILIO_NUMBER', 'ELEVENLABS_API_KEY',
	    'ELEVENLABS_AGENT_ID', 'DATABASE_URL', 'STREAM_URL', 'TWILIO_URL'];
	const env = baseEnv(Object.fromEntries([...required, 'NAIBER_API_TOKEN', 'REDIS_URL'].map((k) => [k, null])));
	const r = await runNaiberd(['-t', '-c', conf], { env });
	assert.equal(r.code, 1, show(r));
	assert.doesNotMatch(r.output, /configuration OK/);
	const ls = lines(r.output);
	const seen = new Map();
	for (const name of required) {
		const re = new RegExp(`\\b(${name}|${name.toLowerCase()})\\b`);
		const idx = ls.findIndex((l) => re.test(l));
		assert.ok(idx >= 0, `no line names ${name}\n${show(r)}`);
		seen.set(name, idx);
	}
	assert.equal(new Set(seen.values()).size, required.length,
	    `each missing setting on its own line\n${show(r)}`);
});

itest('-t reports every invalid value at once', async (t) => {
	const conf = tmpConf(t, '');
	const r = await runNaiberd(['-t', '-c', conf, '-p', '70000', '-w', 'abc', '--log-level', 'loud']);
	assert.equal(r.code, 1, show(r));
	const ls = lines(r.output);
	const i1 = ls.findIndex((l) => l.includes('70000'));
	const i2 = ls.findIndex((l) => l.includes('abc'));
	const i3 = ls.findIndex((l) => l.includes('loud'));
	assert.ok(i1 >= 0, `port 70000 not reported\n${show(r)}`);
	assert.ok(i2 >= 0, `workers abc not reported\n${show(r)}`);
	assert.ok(i3 >= 0, `log level loud not reported\n${show(r)}`);
	assert.equal(new Set([i1, i2, i3]).size, 3, `one line per problem\n${show(r)}`);

	// Invalid values from the environment and the file too, with missing ones.
	const conf2 = tmpConf(t, 'workers = many\n');
	const env = baseEnv({ PORT: '0', TWILIO_NUMBER: null });
	const r2 = await runNaiberd(['-t', '-c', conf2], { env });
	assert.equal(r2.code, 1, show(r2));
	assert.ok(lines(r2.output).some((l) => /\bmany\b/.test(l)), `file value reported\n${show(r2)}`);
	assert.ok(lines(r2.output).some((l) => /\bPORT\b|\bport\b/.test(l) && /\b0\b/.test(l)), `PORT=0 reported\n${show(r2)}`);
	assert.ok(lines(r2.output).some((l) => /TWILIO_NUMBER|twilio_number/.test(l)), `missing TWILIO_NUMBER reported\n${show(r2)}`);
});

itest('a secret in a group/world-readable file is refused', async (t) => {
	const conf = tmpConf(t, 'twilio_auth_token = x\n', 0o644);
	const env = baseEnv({ TWILIO_AUTH_TOKEN: null });
	const r = await runNaiberd(['-t', '-c', conf], { env });
	assert.equal(r.code, 1, show(r));
	assert.match(r.output, /chmod 600/, show(r));
	assert.doesNotMatch(r.output, /configuration OK/);

	// The same file with mode 600 is fine.
	fs.chmodSync(conf, 0o600);
	const ok = await runNaiberd(['-t', '-c', conf], { env });
	assert.equal(ok.code, 0, show(ok));
	assert.match(ok.output, /configuration OK/);
	// And the secret's value never appears in the output.
	const conf3 = tmpConf(t, 'twilio_auth_token = s3cr3t-value-42\n', 0o640);
	const r3 = await runNaiberd(['-t', '-c', conf3], { env });
	assert.equal(r3.code, 1, show(r3));
	assert.doesNotMatch(r3.output, /s3cr3t-value-42/);
});

itest('the daemon refuses to start with a bad configuration', async (t) => {
	const conf = tmpConf(t, '');
	const env = baseEnv({ DATABASE_URL: null });
	const r = await runNaiberd(['-c', conf, '-l', '127.0.0.1', '-p', '3998'], { env });
	assert.equal(r.code, 1, show(r));
	assert.match(r.output, /DATABASE_URL|database_url/, show(r));
});

itest('-h prints usage and exits 0', async () => {
	const r = await runNaiberd(['-h'], { env: { PATH: process.env.PATH } });
	assert.equal(r.code, 0, show(r));
	assert.match(r.output, /usage/i);
	// Single-letter flags either alone ("-c file") or bundled ("[-htV]").
	const mentions = (f) => f.startsWith('--') ? r.output.includes(f)
	    : new RegExp(`(^|[\\s\\[|])-${f[1]}\\b|\\[-[A-Za-z]*${f[1]}[A-Za-z]*\\]`).test(r.output);
	for (const f of ['-c', '-p', '-l', '-w', '-m', '-t', '-V', '-h', '--drain-timeout', '--log-level'])
		assert.ok(mentions(f), `usage mentions ${f}\n${show(r)}`);
});

itest('-V prints the version and exits 0', async () => {
	const r = await runNaiberd(['-V'], { env: { PATH: process.env.PATH } });
	assert.equal(r.code, 0, show(r));
	assert.match(r.output, /naiberd\S*\s+v?\d+\.\d+\.\d+/, show(r));
});

itest('an unknown flag is a usage error', async () => {
	const r = await runNaiberd(['--no-such-flag'], { env: { PATH: process.env.PATH } });
	assert.notEqual(r.code, 0, show(r));
	assert.match(r.output, /usage|unknown|unrecognized|invalid/i, show(r));
});

itest('run from a checkout without prompts_dir, naiberd uses the checkout\'s prompts', async () => {
	const d = await startNaiberd({ env: { NAIBER_PROMPTS_DIR: null } });
	await waitFor(() => /prompts from (\S+)/.test(d.log), 5000, 'the prompts line');
	const dir = d.log.match(/prompts from (\S+)/)[1];
	assert.equal(fs.realpathSync(dir), fs.realpathSync(path.join(REPO, 'prompts')), d.log);
});

itest('the same binary outside a checkout looks in the installation prefix', async (t) => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-inst-'));
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const exe = path.join(dir, 'sbin', 'naiberd');
	fs.mkdirSync(path.dirname(exe));
	fs.copyFileSync(fs.realpathSync(NAIBERD), exe);
	fs.chmodSync(exe, 0o755);
	const { spawn } = await import('node:child_process');
	const p = spawn(exe, ['-l', '127.0.0.1', '-p', String(await freePort()), '-w', '1', '-m', '1',
	    '-c', tmpConf(t, '')], { env: baseEnv({ NAIBER_SPOOL_DIR: dir }),
	    stdio: ['ignore', 'pipe', 'pipe'] });
	let out = '';
	p.stderr.setEncoding('utf8').on('data', (s) => { out += s; });
	t.after(() => { try { p.kill('SIGKILL'); } catch { /* gone */ } });
	// Either the prefix holds prompts (naiberd was installed here) or
	// it does not and naiberd says so; never the checkout's.
	await waitFor(() => /prompts (from|in) \//.test(out), 5000, 'a prompts line');
	assert.match(out, /prompts (from|in) \/usr\/local\/share\/naiberd\/prompts\b/, out);
	assert.doesNotMatch(out, new RegExp(path.join(REPO, 'prompts')), out);
});
