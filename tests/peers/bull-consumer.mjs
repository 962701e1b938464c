// bull-consumer.mjs - a real, unmodified BullMQ Worker on the post-call
// queue, as the LLM service runs it: it proves that the job naiberd's Lua
// script writes is consumed by BullMQ 5.x (the original's) and 6.x.
//
// usage: node bull-consumer.mjs <bullmq5|bullmq6|module-dir> <redis-port>
//            [auto|ok|fail2|failall|pause|resume] [prefix]
//
// One JSON line on stdout per event: {"event":"ready",...} once the Worker
// is connected, {"event":"process",...} per processor call (name, data,
// opts, attemptsMade, processedOn, timestamp, delta = processedOn -
// timestamp), then {"event":"completed"|"failed",...} per outcome.
// Processor modes: fail2 throws on attempts 1 and 2, failall on every
// attempt, ok never; auto (the default) picks by conversationId prefix
// ("fail2-...", "failall-...", anything else ok).  SIGTERM closes it.
// pause and resume run no Worker: Queue.pause() or Queue.resume(), then
// {"event":"paused"|"resumed"} and exit.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const [modArg, portArg, mode = 'auto', prefix = 'bull'] = process.argv.slice(2);
if (!modArg || !/^\d+$/.test(portArg ?? '') || !['auto', 'ok', 'fail2', 'failall', 'pause', 'resume'].includes(mode)) {
	process.stderr.write('usage: bull-consumer.mjs <bullmq5|bullmq6|dir> <port> ' +
	    '[auto|ok|fail2|failall|pause|resume] [prefix]\n');
	process.exit(2);
}
const modDir = modArg.includes('/') ? path.resolve(modArg) : path.join(here, modArg);
const require = createRequire(path.join(modDir, 'package.json'));
const { Queue, Worker } = require('bullmq');
const version = require('bullmq/package.json').version;
const connection = { host: '127.0.0.1', port: Number(portArg), maxRetriesPerRequest: null };

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

if (mode === 'pause' || mode === 'resume') {
	const q = new Queue('post-call-processing', { prefix, connection });
	await (mode === 'pause' ? q.pause() : q.resume());
	await q.close();
	out({ event: mode === 'pause' ? 'paused' : 'resumed', version });
	process.exit(0);
}

function behaviour(job) {
	if (mode !== 'auto') return mode;
	const id = String(job.data?.conversationId ?? '');
	if (id.startsWith('fail2-')) return 'fail2';
	if (id.startsWith('failall-')) return 'failall';
	return 'ok';
}

const worker = new Worker('post-call-processing', async (job) => {
	out({
		event: 'process', version, id: job.id, name: job.name, data: job.data,
		opts: job.opts, attemptsMade: job.attemptsMade, processedOn: job.processedOn,
		timestamp: job.timestamp, delta: job.processedOn - job.timestamp,
	});
	const b = behaviour(job);
	// attemptsMade counts the attempts before this one.
	if (b === 'failall' || (b === 'fail2' && job.attemptsMade < 2))
		throw new Error(`planned failure on attempt ${job.attemptsMade + 1}`);
	return { ok: true };
}, {
	prefix,
	concurrency: 50,
	connection,
});

worker.on('completed', (job) => out({ event: 'completed', id: job.id,
    attemptsMade: job.attemptsMade, finishedOn: job.finishedOn }));
worker.on('failed', (job, err) => out({ event: 'failed', id: job?.id,
    attemptsMade: job?.attemptsMade, finishedOn: job?.finishedOn, error: err?.message }));
worker.on('error', (err) => process.stderr.write(`worker error: ${err.message}\n`));

await worker.waitUntilReady();
out({ event: 'ready', version });

async function stop() {
	await worker.close().catch(() => {});
	process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
