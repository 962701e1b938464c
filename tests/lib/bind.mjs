// bind.mjs - bound Twilio Media Streams for the integration tests.
//
// A stream is served only once it is bound to a call we placed: on the
// Twilio `start` event the worker GETs call:{callSid} from REDIS_URL and
// compares start.customParameters.nonce with the stored nonce.  Anything
// else (no nonce, wrong nonce, unknown callSid, Redis down) closes the
// stream with done reason "stream not bound"; media that arrives before
// binding completes is counted as dropped, not as frames_in.
//
// These helpers give a test a real redis-server (the harness's
// startRedis(), killed at the end of the test), write call contexts the
// way POST /call does, and open streams that are bound before any media
// is sent:
//
//   import { startBoundNaiberd, openBoundStream } from '../lib/bind.mjs';
//   const d = await startBoundNaiberd({ workers: 2 });	// d.redis is its Redis
//   const s = await openBoundStream(d);			// bound: media now counts
//   await s.sendMedia(10); await s.sendStop();
//
// Nothing here sleeps to assert timing; every wait is bounded.

import {
	startRedis, startNaiberd, redisCall, hex, newCallSid, TEST_PHONE,
} from './harness.mjs';

export const NONCE_HEX_LEN = 32;
export const CONTEXT_TTL_S = 300;

/*
 * The supervisor's done line with every counter:
 * [1] pid, [2] callSid ("-" when the stream never bound), [3] reason
 * (may hold spaces: "stream not bound"), [4] frames_in, [5] frames_out,
 * [6] dropped, [7] bad.
 */
export const RX_DONE_FULL =
    /worker (\d+) call (\S+) done: reason=(.+?) frames_in=(\d+) frames_out=(\d+) dropped=(\d+) bad=(\d+)/;

const reEsc = (s) => String(s).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/* A real redis-server for this test (harness startRedis; stopped at test end). */
export function startTestRedis(opts = {}) {
	return startRedis(opts);
}

/*
 * redis-server + naiberd with REDIS_URL pointing at it.  opts are those
 * of startNaiberd, plus redis (an existing startTestRedis() instance).
 * opts.env is merged over REDIS_URL, so a test may still override it.
 * Returns the naiberd instance with .redis set.
 */
export async function startBoundNaiberd(opts = {}) {
	const { redis: given, env = {}, ...rest } = opts;
	const redis = given ?? await startTestRedis();
	const d = await startNaiberd({ ...rest, env: { REDIS_URL: redis.url, ...env } });
	d.redis = redis;
	return d;
}

function redisOf(d, o) {
	const r = o.redis ?? d?.redis;
	if (!r) throw new Error('bind.mjs: no Redis (start naiberd with startBoundNaiberd or pass {redis})');
	return r;
}

/*
 * Store the call context POST /call would store: SET call:{callSid}
 * '{"callType","phone","nonce","createdAt"}' EX 300.  Returns the nonce
 * (random 32 hex unless given).
 */
export async function putCallContext(redis, callSid, { callType = 'general', phone = TEST_PHONE,
    nonce = hex(NONCE_HEX_LEN / 2), ttl = CONTEXT_TTL_S } = {}) {
	const value = JSON.stringify({ callType, phone, nonce, createdAt: new Date().toISOString() });
	const r = await redisCall(redis.port, 'SET', `call:${callSid}`, value, 'EX', String(ttl));
	if (r !== 'OK') throw new Error(`SET call:${callSid}: ${JSON.stringify(r)}`);
	return nonce;
}

/*
 * Wait until callSid is bound: the supervisor's CALL_INFO line
 * ("worker <pid> call <sid> stream <streamSid> type <type>") or the
 * worker's "stream bound" line for it.  Fails at once, with the worker's
 * reason, if the worker refused the stream instead.  Resolves with
 * {pid, streamSid, type} (streamSid/type null when only the worker's
 * line was seen).
 */
export async function waitBound(d, callSid, { timeoutMs = 10000, since = 0 } = {}) {
	const sid = reEsc(callSid);
	const info = new RegExp(`worker (\\d+) call ${sid} stream (MZ[0-9a-fA-F]+) type (\\S+)`);
	const bound = new RegExp(`worker\\[(\\d+)\\][^\\n]*callSid=${sid} stream bound: type=(\\S+)`);
	const refused = new RegExp(`worker\\[(\\d+)\\][^\\n]*callSid=${sid} stream refused: ([^\\n]*)`);
	const m = await d.waitLog((text) => {
		let x = info.exec(text);
		if (x) return { kind: 'info', pid: Number(x[1]), streamSid: x[2], type: x[3] };
		x = bound.exec(text);
		if (x) return { kind: 'bound', pid: Number(x[1]), streamSid: null, type: x[2] };
		x = refused.exec(text);
		if (x) return { kind: 'refused', pid: Number(x[1]), why: x[2] };
		return null;
	}, timeoutMs, since).catch((e) => {
		throw new Error(`stream ${callSid} not bound: ${e.message}`);
	});
	if (m.kind === 'refused')
		throw new Error(`stream ${callSid} refused by worker ${m.pid} instead of bound: ${m.why}`);
	return m;
}

/*
 * A stream for a call we "placed": call:{callSid} is written to Redis
 * first, and the stream carries customParameters {call_type, nonce}.
 * Not yet started: s.opened as usual, then s.bind() sends connected +
 * start and resolves once the stream is bound (media sent after that is
 * counted).  Options: those of d.stream() plus redis, callType (stored
 * type, 'general'), streamType (the call_type parameter, = callType),
 * nonce (stored nonce, random), sendNonce (what the stream presents,
 * = nonce; null omits it), bindTimeoutMs (10000).
 * Sets s.nonce, and after bind() s.workerPid and s.boundType.
 */
export async function prepareBoundStream(d, o = {}) {
	const { redis: _r, callType = 'general', streamType, nonce: want, sendNonce,
	    bindTimeoutMs = 10000, customParameters = {}, ...rest } = o;
	const redis = redisOf(d, o);
	const callSid = rest.callSid ?? newCallSid();
	const nonce = await putCallContext(redis, callSid, { callType, nonce: want });
	const params = { call_type: streamType ?? callType, ...customParameters };
	const presented = sendNonce === undefined ? nonce : sendNonce;
	if (presented !== null) params.nonce = presented;
	const s = d.stream({ ...rest, callSid, customParameters: params });
	s.nonce = nonce;
	s.bind = async ({ timeoutMs = bindTimeoutMs } = {}) => {
		await s.opened;
		const since = d.logMark();
		await s.sendConnected();
		await s.sendStart();
		const b = await waitBound(d, callSid, { timeoutMs, since });
		s.workerPid = b.pid;
		s.boundType = b.type;
		return b;
	};
	return s;
}

/* prepareBoundStream + opened + bound: ready for counted media. */
export async function openBoundStream(d, o = {}) {
	const s = await prepareBoundStream(d, o);
	await s.bind();
	return s;
}

/*
 * Wait for the done line of a stream that never bound (the supervisor
 * logs it as "call -"): the worker is found by its "callSid=<sid> stream
 * refused:" line.  Resolves {pid, why, reason, framesIn, framesOut,
 * dropped, bad}.
 */
export async function unboundDone(d, callSid, { timeoutMs = 8000, since = 0 } = {}) {
	const ref = await d.waitLog(new RegExp(`worker\\[(\\d+)\\][^\\n]*callSid=${reEsc(callSid)} stream refused: ([^\\n]*)`),
	    timeoutMs, since);
	const pid = Number(ref[1]);
	const dn = await d.waitLog(new RegExp(`worker ${pid} call (\\S+) done: reason=(.+?) ` +
	    'frames_in=(\\d+) frames_out=(\\d+) dropped=(\\d+) bad=(\\d+)'), timeoutMs, since);
	return { pid, why: ref[2], callSid: dn[1], reason: dn[2], framesIn: Number(dn[3]), framesOut: Number(dn[4]),
	    dropped: Number(dn[5]), bad: Number(dn[6]) };
}

/* The full done line of a bound call (see RX_DONE_FULL). */
export async function boundDone(d, callSid, { timeoutMs = 8000, since = 0 } = {}) {
	const m = await d.waitLog(new RegExp(`worker (\\d+) call ${reEsc(callSid)} done: reason=(.+?) ` +
	    'frames_in=(\\d+) frames_out=(\\d+) dropped=(\\d+) bad=(\\d+)'), timeoutMs, since);
	return { pid: Number(m[1]), reason: m[2], framesIn: Number(m[3]), framesOut: Number(m[4]),
	    dropped: Number(m[5]), bad: Number(m[6]) };
}
