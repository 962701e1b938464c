// t_memcheck - whole calls with the supervisor and its workers under
// valgrind memcheck: no invalid reads or writes, no use of uninitialised
// values, no definitely lost memory, in any process.  Run by
// `make check-memcheck` (which sets NAIBERD to valgrind-naiberd.sh and
// VG_DIR); slow, so it is not part of tests/integ.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { itest, sleep, waitFor } from '../lib/harness.mjs';
import { startStack } from '../lib/stack.mjs';

const VG_DIR = process.env.VG_DIR;

function reports() {
	return fs.readdirSync(VG_DIR).filter((f) => f.startsWith('vg.'))
	    .map((f) => ({ f, text: fs.readFileSync(path.join(VG_DIR, f), 'utf8') }));
}

itest('complete calls under valgrind leave clean reports', { timeout: 240000 }, async () => {
	assert.ok(VG_DIR, 'VG_DIR is set by make check-memcheck');
	for (const f of fs.readdirSync(VG_DIR))
		fs.rmSync(path.join(VG_DIR, f));
	const st = await startStack({ workers: 2, maxCalls: 6,
	    healthTimeoutMs: 60000, args: ['--first-message-wait', '3000'],
	    env: { NAIBER_DATABASE_TIMEOUT: '30000',
	    NAIBER_ELEVENLABS_TIMEOUT: '30000',
	    // The first call relays agent audio coalesced (its ElevenLabs socket
	    // read on the caller's frames); the ASan subset covers the default.
	    NAIBER_RELAY_COALESCE: '30' } });
	// Caller hangs up.
	let call = await st.placeCall();
	let s = await st.openStream(call, { timeoutMs: 60000 });
	await s.sendMedia(25);
	await s.elConv.waitAudioBytes(160 * 25, 30000);
	s.elConv.sendAudio(Buffer.alloc(1600, 0x7f), { chunkBytes: 160 });
	await sleep(1000);
	await s.sendStop();
	await waitFor(() => /done: reason=stop/.test(st.d.log), 30000, 'first call done');
	// Agent hangs up (close 1000): goodbye mark, REST hang-up.
	call = await st.placeCall();
	s = await st.openStream(call, { timeoutMs: 60000 });
	await s.sendMedia(10);
	s.elConv.closeWith(1000);
	await waitFor(() => (st.d.log.match(/ done: reason=/g) || []).length >= 2,
	    40000, 'second call done');
	await sleep(2000);
	await st.stop();
	await sleep(500);
	const reps = reports();
	assert.ok(reps.length >= 3, `valgrind reports from the supervisor and workers (${reps.length})`);
	const bad = reps.filter(({ text }) =>
	    /Invalid (read|write|free)|uninitialised|Conditional jump|definitely lost in|Syscall param/.test(text));
	for (const { f, text } of bad)
		console.log(`--- ${f}\n${text}`);
	assert.equal(bad.length, 0, `${bad.length} of ${reps.length} processes with memcheck errors`);
	console.log(`memcheck: ${reps.length} processes, 0 errors, 0 definite leaks`);
});
