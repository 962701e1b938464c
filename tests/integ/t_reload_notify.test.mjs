// t_reload_notify: sd_notify messages (READY, RELOADING, STOPPING) and
// SIGHUP reloads, good and broken.  After each reload a whole call runs on
// the full stack (tests/lib/stack.mjs).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { itest, waitFor, withTimeout, doneLine } from '../lib/harness.mjs';
import { startStack } from '../lib/stack.mjs';

// Node has no AF_UNIX datagram sockets: a small Python listener prints
// each datagram as one JSON string per line.
const LISTENER = `
import json, os, socket, sys
p = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(p)
print("LISTENING", flush=True)
while True:
    d = s.recv(65536)
    print(json.dumps(d.decode("utf-8", "replace")), flush=True)
`;

async function notifyListener(t) {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-notify-'));
	const sockPath = path.join(dir, 'notify.sock');
	const proc = spawn('python3', ['-u', '-c', LISTENER, sockPath], { stdio: ['ignore', 'pipe', 'pipe'] });
	const l = { sockPath, proc, messages: [], err: '' };
	let buf = '';
	let listening;
	const ready = new Promise((r) => { listening = r; });
	proc.stdout.setEncoding('utf8').on('data', (d) => {
		buf += d;
		let i;
		while ((i = buf.indexOf('\n')) >= 0) {
			const line = buf.slice(0, i);
			buf = buf.slice(i + 1);
			if (line === 'LISTENING') listening();
			else l.messages.push(JSON.parse(line));
		}
	});
	proc.stderr.setEncoding('utf8').on('data', (d) => { l.err += d; });
	const exited = new Promise((r) => proc.on('exit', r));
	t.after(async () => {
		try { proc.kill('SIGKILL'); } catch { /* gone */ }
		await withTimeout(exited, 3000, 'notify listener exit').catch(() => {});
		fs.rmSync(dir, { recursive: true, force: true });
	});
	await withTimeout(ready, 5000, 'python notify listener to bind');
	/* Index of the first datagram at or after `from` holding line `want`. */
	l.find = (want, from = 0) => {
		for (let i = from; i < l.messages.length; i++)
			if (l.messages[i].split('\n').includes(want)) return i;
		return -1;
	};
	l.wait = (want, from = 0, timeoutMs = 5000) => waitFor(() => {
		const i = l.find(want, from);
		return i >= 0 ? { index: i } : null;
	}, timeoutMs, `sd_notify ${want} (got ${JSON.stringify(l.messages)})`).then((r) => r.index);
	return l;
}

/* A placed call runs (conversation up) and counts its frames. */
async function callWorks(st, frames, since) {
	const s = await st.openStream(await st.placeCall());
	await s.sendMedia(frames);
	await s.elConv.waitAudioBytes(frames * 160);
	await s.sendStop();
	const dn = await doneLine(st.d, s.callSid, 5000, since);
	assert.equal(dn[2], 'stop');
	assert.equal(Number(dn[3]), frames);
}

itest('sd_notify READY/RELOADING/STOPPING; SIGHUP good and broken config', { timeout: 40000 }, async (t) => {
	const l = await notifyListener(t);
	const st = await startStack({ workers: 2, maxCalls: 4, env: { NOTIFY_SOCKET: l.sockPath } });
	const { d } = st;

	const iReady = await l.wait('READY=1');
	assert.equal(l.find('RELOADING=1'), -1);
	assert.equal(l.find('STOPPING=1'), -1);

	// A changed, valid configuration.
	let mark = d.logMark();
	fs.writeFileSync(d.confPath, 'max_call_seconds = 120\nhead_timeout = 20\n', { mode: 0o600 });
	d.kill('SIGHUP');
	await d.waitLog('configuration reloaded', 5000, mark);
	const iReloading = await l.wait('RELOADING=1', iReady + 1);
	await l.wait('READY=1', iReloading + 1);
	assert.equal((await d.http('GET', '/health')).status, 200);
	await callWorks(st, 4, mark);

	// A broken configuration: the old one keeps working.
	mark = d.logMark();
	const before = l.messages.length;
	fs.writeFileSync(d.confPath, 'unknown_key = 1\n', { mode: 0o600 });
	d.kill('SIGHUP');
	await d.waitLog('reload failed', 5000, mark);
	assert.ok(/unknown_key/.test(d.log.slice(mark)), 'the failed reload names the bad key');
	assert.ok(!d.log.slice(mark).includes('configuration reloaded'), 'no "configuration reloaded" for a broken file');
	assert.ok(d.alive(), 'supervisor alive after a failed reload');
	assert.equal((await d.http('GET', '/health')).status, 200);
	await callWorks(st, 3, mark);
	// If RELOADING=1 was sent for the failed attempt, READY=1 must follow.
	const iBad = l.find('RELOADING=1', before);
	if (iBad >= 0) await l.wait('READY=1', iBad + 1);
	const m = await d.metrics();
	assert.equal(m['naiberd_worker_crashes_total'], 0);

	// SIGTERM: STOPPING=1, exit 0.
	const beforeStop = l.messages.length;
	d.kill('SIGTERM');
	await l.wait('STOPPING=1', beforeStop);
	const ex = await withTimeout(d.exited, 10000, 'supervisor exit after SIGTERM');
	assert.deepEqual(ex, { code: 0, signal: null });
});
