// pg.mjs - a throwaway PostgreSQL for the integration tests, started,
// queried and stopped by the same commands as the C tests: it runs
// tests/lib/pg.sh (initdb + pg_ctl in a fresh temp dir, 127.0.0.1 only,
// trust auth, fsync off; as root the server runs as the "postgres" user).
//
//   import { startPostgres } from '../lib/pg.mjs';
//   const pg = await startPostgres();          // schema.sql loaded
//   t.after(() => pg.stop());                  // or await pg.stop()
//   await pg.psql(`INSERT INTO users ("id", "name", "phone") VALUES ...`);
//   env.DATABASE_URL = pg.url;
//
// Options: schema (true: tests/lib/schema.sql, false: none, or a path),
// port (default: a free loopback port), ssl (null; {cert, key}: PEM files
// of the server's certificate, then ssl=on and pg_hba.conf hostssl only,
// so a client without TLS is refused: pg.sh PG_SSL_CERT).  Result: {port, url, dir,
// psql(sql, {db}) -> stdout trimmed (unaligned, tuples only; rejects on
// any SQL error), log() -> the server log, stop()}.
//
// A reaper child (its own process group, so ^C spares it) holds the other
// end of a pipe from this process: when the pipe closes - stop(), normal
// exit, crash or SIGKILL - it stops the server and removes the directory.
// Nothing here depends on a system-wide PostgreSQL service.
//
//   const pgb = await startPgbouncer(pg);      // pool_mode = transaction
//   env.DATABASE_URL = pgb.url;                // pgb.stop() (the reaper too)
//
// startPgbouncer(pg) runs pg.sh pgb_start in pg.dir on a free loopback
// port; null if there is no pgbouncer binary (pgbouncerMissing() says so).

import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const PG_SH = fileURLToPath(new URL('./pg.sh', import.meta.url));
export const PG_SCHEMA = fileURLToPath(new URL('./schema.sql', import.meta.url));

/* sh -c script with $0 = pg.sh, $1... = args; resolves to stdout. */
function sh(script, args, { timeoutMs = 60000, env } = {}) {
	return new Promise((resolve, reject) => {
		execFile('sh', ['-c', script, PG_SH, ...args.map(String)],
		    { timeout: timeoutMs, maxBuffer: 64 << 20, encoding: 'utf8',
		    ...(env ? { env: { ...process.env, ...env } } : {}) },
		    (err, stdout, stderr) => {
			if (err) {
				const e = new Error(`pg.sh: ${err.killed ? 'timed out' :
				    `exit ${err.code}`}: ${stderr.trim()}`);
				e.stderr = stderr;
				reject(e);
			} else {
				resolve(stdout);
			}
		});
	});
}

function freePort() {
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

/* The reaper: waits for EOF on stdin, then stops and removes dir. */
function startReaper(dir) {
	const child = spawn('sh', ['-c', 'cat >/dev/null; . "$0"; pgb_stop "$1"; pg_stop "$1"; rm -rf "$1"',
	    PG_SH, dir], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
	const exited = new Promise((resolve) => child.on('exit', resolve));
	child.stdin.on('error', () => {});
	child.unref();
	child.stdin.unref?.();
	return { child, exited };
}

export async function startPostgres({ schema = true, port, ssl = null } = {}) {
	const env = ssl ? { PG_SSL_CERT: ssl.cert, PG_SSL_KEY: ssl.key } : undefined;
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-pg-'));
	const reaper = startReaper(dir);
	let stopped = null;
	const stop = () => {
		if (stopped === null) {
			/* Referenced again: stop() is awaited, not abandoned. */
			reaper.child.ref();
			reaper.child.stdin.end();
			let timer;
			stopped = Promise.race([reaper.exited,
			    new Promise((r) => { timer = setTimeout(r, 15000); })])
			    .finally(() => clearTimeout(timer));
		}
		return stopped;
	};
	try {
		/* A free port can be taken before the server binds it: retry. */
		for (let attempt = 0; ; attempt++) {
			const p = port ?? await freePort();
			try {
				await sh('. "$0" && pg_start "$1" "$2"', [dir, p], { env });
				port = p;
				break;
			} catch (e) {
				if (port !== undefined || attempt >= 2) throw e;
			}
		}
		const file = schema === true ? PG_SCHEMA : schema;
		if (file)
			await sh('. "$0" && pg_psql "$1" < "$2"', [port, file]);
	} catch (e) {
		await stop();
		throw e;
	}
	return {
		port,
		dir,
		url: `postgres://postgres@127.0.0.1:${port}/postgres`,
		psql: async (sql, { db = 'postgres' } = {}) =>
		    (await sh('. "$0" && PG_DB="$3" && pg_psql "$1" "$2"',
		    [port, sql, db])).replace(/\n+$/, ''),
		log: () => {
			try {
				return fs.readFileSync(path.join(dir, 'postgres.log'), 'utf8');
			} catch {
				return '';
			}
		},
		stop,
	};
}

/* The reason startPgbouncer() would return null, or null if it would not. */
export async function pgbouncerMissing() {
	try {
		await sh('. "$0" && pgb_bin', ['-']);
		return null;
	} catch (e) {
		return e.stderr?.trim() || e.message;
	}
}

/*
 * A pgbouncer in transaction mode in front of pg (see pg.sh pgb_start),
 * stopped by stop() or with pg (its reaper runs pgb_stop first).
 */
export async function startPgbouncer(pg) {
	if (await pgbouncerMissing() !== null)
		return null;
	for (let attempt = 0; ; attempt++) {
		const port = await freePort();
		try {
			await sh('. "$0" && pgb_start "$1" "$2" "$3"', [pg.dir, port, pg.port]);
			return {
				port,
				url: `postgres://postgres@127.0.0.1:${port}/postgres`,
				log: () => {
					try {
						return fs.readFileSync(path.join(pg.dir, 'pgbouncer',
						    'pgbouncer.log'), 'utf8');
					} catch {
						return '';
					}
				},
				stop: () => sh('. "$0" && pgb_stop "$1"', [pg.dir]).catch(() => {}),
			};
		} catch (e) {
			await sh('. "$0" && pgb_stop "$1"', [pg.dir]).catch(() => {});
			if (attempt >= 2) throw e;
		}
	}
}
