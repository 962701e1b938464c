#!/usr/bin/env node
// http-echo.mjs - HTTP and HTTPS peer for tests/unit/test_evcurl.c.
//
// usage: node http-echo.mjs [CERT KEY [--cleanup]]
//
// Listens on 127.0.0.1 on kernel-chosen ports and prints "PORT <n>",
// then with CERT and KEY (PEM) an HTTPS listener's "TLSPORT <n>", then
// "READY".  Exits on SIGTERM, or when stdin closes so a crashed test
// does not leave it behind; with --cleanup it then removes CERT, KEY
// and their directory if that is left empty (the test's scratch
// directory).  Node built-ins only.
//
// Routes (any method):
//   /hello            200 "hello, world\n"
//   /echo             200 JSON {method, url, headers, body}; header names
//                     lower case, body as UTF-8 text
//   /status/<n>       status n, body "status <n>"
//   /hang             reads the request, never answers
//   /big?n=&chunked=1 n bytes of 'x' (default 2 MiB), with Content-Length
//                     unless chunked=1
//   /slow?ms=&id=     200 "id <id>" after ms milliseconds

import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import path from 'node:path';

const hanging = new Set();

function big(res, q) {
	const n = Number(q.get('n') ?? 2 * 1024 * 1024);
	const headers = { 'content-type': 'application/octet-stream' };
	if (q.get('chunked') !== '1')
		headers['content-length'] = String(n);
	res.writeHead(200, headers);
	const chunk = Buffer.alloc(64 * 1024, 'x');
	let left = n;
	const more = () => {
		while (left > 0) {
			const k = Math.min(left, chunk.length);
			const part = chunk.subarray(0, k);
			left -= k;
			if (!res.write(part))
				return void res.once('drain', more);
		}
		res.end();
	};
	res.on('error', () => {});
	more();
}

function handle(req, res, body) {
	const url = new URL(req.url, 'http://127.0.0.1');
	const q = url.searchParams;
	const p = url.pathname;
	const st = /^\/status\/(\d{3})$/.exec(p);

	if (p === '/hello') {
		res.writeHead(200, { 'content-type': 'text/plain' });
		res.end('hello, world\n');
	} else if (p === '/echo') {
		res.writeHead(200, { 'content-type': 'application/json' });
		res.end(JSON.stringify({ method: req.method, url: req.url,
		    headers: req.headers, body: body.toString('utf8') }));
	} else if (st) {
		res.writeHead(Number(st[1]), { 'content-type': 'text/plain' });
		res.end(`status ${st[1]}`);
	} else if (p === '/hang') {
		hanging.add(res);
		res.on('close', () => hanging.delete(res));
	} else if (p === '/big') {
		big(res, q);
	} else if (p === '/slow') {
		setTimeout(() => {
			res.writeHead(200, { 'content-type': 'text/plain' });
			res.end(`id ${q.get('id')}`);
		}, Number(q.get('ms') ?? 100));
	} else {
		res.writeHead(404);
		res.end('no such route');
	}
}

function onRequest(req, res) {
	const parts = [];
	req.on('data', (c) => parts.push(c));
	req.on('end', () => handle(req, res, Buffer.concat(parts)));
}

function listen(server) {
	// never time out a request ourselves: /hang must hang
	server.requestTimeout = 0;
	server.headersTimeout = 0;
	return new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(0, '127.0.0.1',
		    () => resolve(server.address().port));
	});
}

const plain = http.createServer(onRequest);
process.stdout.write(`PORT ${await listen(plain)}\n`);
if (process.argv.length >= 4) {
	const tls = https.createServer({
		cert: fs.readFileSync(process.argv[2]),
		key: fs.readFileSync(process.argv[3]),
	}, onRequest);
	tls.on('tlsClientError', () => {});
	process.stdout.write(`TLSPORT ${await listen(tls)}\n`);
}
process.stdout.write('READY\n');

if (process.argv[4] === '--cleanup') {
	process.on('exit', () => {
		for (const f of process.argv.slice(2, 4))
			fs.rmSync(f, { force: true });
		try {
			fs.rmdirSync(path.dirname(process.argv[2]));
		} catch {
			// not empty, or already gone
		}
	});
}
process.on('SIGTERM', () => process.exit(0));
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
