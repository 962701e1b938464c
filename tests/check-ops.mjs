// check-ops.mjs - the operator files against what naiberd really exports.
//
// Starts build/naiberd (no Redis or PostgreSQL needed; NAIBER_API_TOKEN
// unset, so loopback may read /metrics), reads GET /metrics, and checks:
//
// - every naiberd_* name in the Grafana dashboard (any string in the
//   JSON) and in the alerting rules (anywhere in the YAML) is a series
//   naiberd exports (sample names, so _bucket/_sum/_count included);
// - every exact label matcher on such a name (signal="relay_lag_ms")
//   names a label value naiberd exports (instance and job excepted);
// - the dashboard parses, has a prometheus datasource variable
//   DS_PROMETHEUS and an instance variable, and every panel has that
//   datasource and at least one target with an expr and a unique refId;
// - every alerting rule has for:, a severity label, summary and
//   description annotations;
// - the dashboard's expressions parse as PromQL (promtool check rules on
//   a scratch rules file, Grafana's $variables replaced).
//
// usage: node tests/check-ops.mjs [dashboard.json [alerts.yml]]
// Exits 1 listing every problem.  NAIBERD=path tests another binary.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startNaiberd, http, REPO } from './lib/harness.mjs';

const dashPath = process.argv[2] ?? path.join(REPO, 'etc/grafana-naiberd.json');
const rulesPath = process.argv[3] ?? path.join(REPO, 'etc/naiberd-alerts.yml');
const problems = [];
const bad = (msg) => problems.push(msg);

/* GET /metrics of a fresh instance: series (name -> [{label: value}]) and families. */
async function exported() {
	const d = await startNaiberd({ workers: 1, env: { NAIBER_API_TOKEN: null } });
	try {
		const r = await http(d.port, 'GET', '/metrics');
		if (r.status !== 200) throw new Error(`GET /metrics: status ${r.status}`);
		const series = new Map();
		const families = new Set();
		for (const line of r.body.split('\n')) {
			const t = /^# TYPE (\S+) /.exec(line);
			if (t) families.add(t[1]);
			if (!line || line.startsWith('#')) continue;
			const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+\S+$/.exec(line);
			if (!m) throw new Error(`GET /metrics: unparsable line: ${line}`);
			const labels = {};
			for (const l of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) labels[l[1]] = l[2];
			if (!series.has(m[1])) series.set(m[1], []);
			series.get(m[1]).push(labels);
		}
		return { series, families };
	} finally {
		await d.stop();
	}
}

/* Every naiberd_ name and its exact label matchers, in text. */
function references(text) {
	const out = [];
	for (const m of text.matchAll(/\bnaiberd_\w*(\{[^}]*\})?/g)) {
		const name = m[0].replace(/\{.*$/s, '');
		const eq = [...(m[1] ?? '').matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)]
		    .filter((e) => e[2] === '=').map((e) => [e[1], e[3]]);
		out.push({ name, eq });
	}
	return out;
}

/*
 * Queries (strict) must name series; prose may also name a family (the
 * histogram naiberd_handoff_seconds).
 */
function checkNames(where, text, { series, families }, strict) {
	const refs = references(text);
	for (const { name, eq } of refs) {
		if (!series.has(name)) {
			if (strict || !families.has(name))
				bad(`${where}: ${name} is not ${families.has(name) ?
				    'a series (a family name; use _bucket, _sum or _count)' : 'exported by naiberd'}`);
			continue;
		}
		for (const [k, v] of eq) {
			if (k === 'instance' || k === 'job') continue;
			if (!series.get(name).some((l) => l[k] === v))
				bad(`${where}: ${name}{${k}="${v}"}: naiberd exports no such label value`);
		}
	}
	return refs.length;
}

function strings(v, out = []) {
	if (typeof v === 'string') out.push(v);
	else if (Array.isArray(v)) for (const e of v) strings(e, out);
	else if (v && typeof v === 'object') for (const e of Object.values(v)) strings(e, out);
	return out;
}

function checkDashboard(dash) {
	const where = path.basename(dashPath);
	if (!(dash.schemaVersion >= 36)) bad(`${where}: schemaVersion ${dash.schemaVersion} (want >= 36)`);
	if (!dash.title || !dash.uid) bad(`${where}: no title or uid`);
	const vars = dash.templating?.list ?? [];
	const ds = vars.find((v) => v.name === 'DS_PROMETHEUS');
	if (!ds || ds.type !== 'datasource' || ds.query !== 'prometheus')
		bad(`${where}: no datasource variable DS_PROMETHEUS of type prometheus`);
	const inst = vars.find((v) => v.name === 'instance');
	if (!inst || inst.type !== 'query' || !/label_values\(/.test(inst.definition ?? ''))
		bad(`${where}: no instance variable from label_values`);
	const exprs = [];
	const ids = new Set();
	const all = (dash.panels ?? []).flatMap((p) => [p, ...(p.panels ?? [])]);
	for (const p of all) {
		const name = `${where}: panel ${p.id} "${p.title}"`;
		if (ids.has(p.id)) bad(`${name}: duplicate id`);
		ids.add(p.id);
		if (!p.gridPos) bad(`${name}: no gridPos`);
		if (p.type === 'row') continue;
		if (p.datasource?.type !== 'prometheus' || p.datasource?.uid !== '${DS_PROMETHEUS}')
			bad(`${name}: datasource is not \${DS_PROMETHEUS}`);
		if (!Array.isArray(p.targets) || p.targets.length === 0) {
			bad(`${name}: no targets`);
			continue;
		}
		const refIds = new Set();
		for (const t of p.targets) {
			if (!t.expr) bad(`${name}: target ${t.refId} has no expr`);
			if (!t.refId || refIds.has(t.refId)) bad(`${name}: missing or duplicate refId`);
			refIds.add(t.refId);
			if (t.datasource && t.datasource.uid !== '${DS_PROMETHEUS}')
				bad(`${name}: target ${t.refId} has another datasource`);
			if (t.expr) exprs.push({ name: `${name} ${t.refId}`, expr: t.expr });
		}
	}
	if (exprs.length === 0) bad(`${where}: no panel expressions`);
	return exprs;
}

function checkRulesShape(text) {
	const where = path.basename(rulesPath);
	const blocks = text.split(/^\s*- alert:\s*/m).slice(1);
	if (blocks.length === 0) bad(`${where}: no alerting rules`);
	for (const b of blocks) {
		const name = b.split('\n')[0].trim();
		for (const [what, re] of [['for:', /^\s+for:\s*\S/m], ['severity label', /^\s+severity:\s*\S/m],
		    ['summary annotation', /^\s+summary:\s*\S/m], ['description annotation', /^\s+description:\s*\S/m]])
			if (!re.test(b)) bad(`${where}: alert ${name} has no ${what}`);
	}
	return blocks.length;
}

/* Parse the dashboard's PromQL with promtool, Grafana's variables filled in. */
function checkPromql(exprs) {
	const which = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' });
	if (which.status !== 0) {
		bad('promtool not found: install the Debian package prometheus (make deps)');
		return;
	}
	const fill = (e) => e.replaceAll('$__rate_interval', '1m').replaceAll('$__range', '6h')
	    .replaceAll('$__interval', '30s').replaceAll('$instance', '.*');
	const yml = ['groups:', '  - name: dashboard', '    rules:'];
	exprs.forEach((x, i) => yml.push(`      - record: dashboard:expr${i}`, `        expr: ${JSON.stringify(fill(x.expr))}`));
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'naiberd-check-ops-'));
	try {
		const f = path.join(dir, 'dashboard-exprs.yml');
		fs.writeFileSync(f, yml.join('\n') + '\n');
		const r = spawnSync('promtool', ['check', 'rules', f], { encoding: 'utf8' });
		if (r.status !== 0) {
			const out = (r.stdout + r.stderr).replace(/dashboard:expr(\d+)/g,
			    (_, i) => exprs[Number(i)].name);
			bad(`dashboard PromQL does not parse:\n${out}`);
		}
	} finally {
		fs.rmSync(dir, { recursive: true, force: true });
	}
}

/* The expr: values of a rules file (plain or block scalars). */
function ruleExprs(text) {
	const lines = text.split('\n');
	const out = [];
	for (let i = 0; i < lines.length; i++) {
		const m = /^(\s*)(?:- )?expr:\s*(.*)$/.exec(lines[i]);
		if (!m) continue;
		const parts = [m[2]];
		while (i + 1 < lines.length && (lines[i + 1].trim() === '' ||
		    lines[i + 1].search(/\S/) > m[1].length))
			parts.push(lines[++i]);
		out.push(parts.join('\n'));
	}
	return out;
}

const exp = await exported();
const dashName = path.basename(dashPath), rulesName = path.basename(rulesPath);
let dash = null;
try {
	dash = JSON.parse(fs.readFileSync(dashPath, 'utf8'));
} catch (e) {
	bad(`${dashName}: not JSON: ${e.message}`);
}
let nexpr = 0, nd = 0;
if (dash) {
	const exprs = checkDashboard(dash);
	nexpr = exprs.length;
	const queries = [...exprs.map((x) => x.expr),
	    ...(dash.templating?.list ?? []).flatMap((v) => strings([v.query, v.definition]))];
	nd = checkNames(dashName, queries.join('\n'), exp, true);
	checkNames(dashName, strings(dash).join('\n'), exp, false);
	checkPromql(exprs);
}
const rulesText = fs.readFileSync(rulesPath, 'utf8');
const nrules = checkRulesShape(rulesText);
const rexprs = ruleExprs(rulesText);
if (rexprs.length !== nrules) bad(`${rulesName}: ${nrules} alerts but ${rexprs.length} expr: lines`);
const nr = checkNames(rulesName, rexprs.join('\n'), exp, true);
checkNames(rulesName, rulesText, exp, false);
if (nd === 0) bad(`${dashName}: no naiberd_ series in any query`);
if (nr === 0) bad(`${rulesName}: no naiberd_ series in any expr`);

if (problems.length) {
	const uniq = [...new Set(problems)];
	process.stderr.write(`check-ops: ${uniq.length} problem(s):\n` + uniq.map((p) => `  ${p}\n`).join(''));
	process.exit(1);
}
console.log(`check-ops: OK: ${exp.series.size} series exported; ${dashName}: ${nexpr} panel ` +
    `expressions, ${nd} series references; ${rulesName}: ${nrules} alerts, ${nr} series references`);
process.exit(0);
