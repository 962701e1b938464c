#!/usr/bin/env node
// gen-sig-vectors.mjs - X-Twilio-Signature vectors for
// tests/unit/test_twilio_sig.c, computed by the real twilio npm package
// (getExpectedTwilioSignature, validateRequest, validateRequestWithBody).
//
// usage: node gen-sig-vectors.mjs OUTFILE [SEED]
//
// Deterministic: a mulberry32 PRNG seeded from SEED (default below).
// One vector per line, TAB-separated (no field holds a TAB or newline):
//   C token url params sig        sig = getExpectedTwilioSignature(url as given)
//   V token url params sig 0|1    twilio_sig_check() verdict
//   B token url body sig 0|1      twilio_sig_check_body() verdict
//   S token url sig 0|1           twilio_sig_check_stream() verdict
// params is URLSearchParams-encoded; a repeated name is an array for node.
//
// V and B verdicts are twilio-node's, widened by the one form naiberd
// adds (twilio.h): the signature over the URL exactly as given.  S
// verdicts follow protocols.md 1.5 (wss and https, with and without
// the port); twilio-node has no such call, but its validateRequest() is
// used to confirm the https half.

import { writeFileSync } from "node:fs";
import querystring from "node:querystring";
import twilio from "twilio";

const DEFAULT_SEED = 20260303;
const NCASES = 200;
const NBODY = 40;
const NSTREAM = 40;

const {
  getExpectedTwilioSignature: sign,
  getExpectedBodyHash: bodyHash,
  validateRequest,
  validateRequestWithBody,
} = twilio;

function mulberry32(a) {
  return function () {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function seedOf(s) {
  if (s === undefined) return DEFAULT_SEED;
  if (/^\d+$/.test(s)) return Number(s) >>> 0;
  let h = 2166136261;
  for (const ch of s) h = Math.imul(h ^ ch.codePointAt(0), 16777619);
  return h >>> 0;
}

const out = process.argv[2];
if (!out) {
  console.error("usage: gen-sig-vectors.mjs OUTFILE [SEED]");
  process.exit(2);
}
const rnd = mulberry32(seedOf(process.argv[3]));
const rint = (n) => Math.floor(rnd() * n);
const pick = (a) => a[rint(a.length)];
const chance = (p) => rnd() < p;

// Characters for names and values: ASCII specials, Latin, CJK, astral
// (sorts before U+E000..U+FFFF in UTF-16), private use, fullwidth.
const CHARS = [
  ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
  ..." +&=%/?#,:;@~*'\"<>!$()[]{}|^`\\-._",
  "\t", "\n", "é", "ñ", "ü", "\u00a0", "名", "前", "\u2028",
  "😀", "𝄞", "\uff01", "\ue000", "\ufffd",
];
const NAMES = [
  "CallSid", "CallStatus", "CallbackSource", "To", "From", "Caller",
  "Digits", "AccountSid", "StatusCallbackEvent", "Timestamp",
  "SequenceNumber", "a", "A", "b", "1", "10", "2", "é", "😀",
  "\uff01x", "a b", "a+b", "x&y", "k=v", "",
];

function rstr(max) {
  let s = "";
  for (let n = rint(max + 1); n > 0; n--) s += pick(CHARS);
  return s;
}

function token() {
  if (chance(0.8)) {
    let s = "";
    for (let i = 0; i < 32; i++) s += "0123456789abcdef"[rint(16)];
    return s;
  }
  let s = "";
  for (let n = 1 + rint(40); n > 0; n--) s += String.fromCharCode(33 + rint(94));
  return s;
}

function params() {
  const pairs = [];
  for (let n = rint(13); n > 0; n--) {
    const name = chance(0.6) ? pick(NAMES) : rstr(8);
    const val = chance(0.2) && pairs.length ? pick(pairs)[1] : rstr(16);
    pairs.push([name, val]);
    if (chance(0.15)) pairs.push([name, chance(0.5) ? val : rstr(6)]);
  }
  const obj = Object.create(null);
  for (const [k, v] of pairs) {
    if (!(k in obj)) obj[k] = v;
    else if (Array.isArray(obj[k])) obj[k].push(v);
    else obj[k] = [obj[k], v];
  }
  return { obj, enc: new URLSearchParams(pairs).toString() };
}

const QNAMES = ["a", "b", "From", "1", "2", "0", "01", "10", "%31", "x+y",
  "n%20m", "é", "bodySHA256", ""];
const QVALS = ["1", "a b", "a+b", "%20", "%2B", "%zz", "%E9", "%ED%A0%80",
  "%C3%A9", "é", "😀", "'q'", "\"", "<>", "`", "|^", "=", "?", "/", "%",
  "%4", "%F0%9F%98", "~*!()", "", "{x}"];

function query() {
  if (chance(0.1)) return "?";
  const parts = [];
  for (let n = 1 + rint(6); n > 0; n--) {
    const r = rint(10);
    if (r === 0) parts.push("");
    else if (r === 1) parts.push(pick(QNAMES));
    else parts.push(pick(QNAMES) + "=" + pick(QVALS) + (chance(0.3) ? pick(QVALS) : ""));
  }
  return "?" + parts.join("&");
}

const SEGS = ["status-callback", "twiml", "a b", "é", ".", "..", "%2e",
  "%2E%2e", "%41", "%zz", "x^y|z", "`{}", "\"q\"", "<>", "it's", "😀",
  "~user", "a%2Fb", "", "x.y", "...", "[x]", "@", ":"];

function url(schemes) {
  for (;;) {
    let u = pick(schemes) + ":" + (chance(0.05) ? "\\\\" : "//");
    if (chance(0.1)) u += pick(["user:pass@", "u s@", ":p@", "a@b@", "@", "u:@"]);
    u += pick(["bridge.example.org", "Bridge.Example.ORG", "api.naiber.test",
      "127.0.0.1", "0x7f.1", "h", "EX%41mple.com", "xn--bcher-kva.example",
      "a..b", "10.1.258"]);
    u += pick(["", "", "", "", ":443", ":80", ":8443", ":0443", ":", ":8080"]);
    for (let n = rint(5); n > 0; n--) u += (chance(0.05) ? "\\" : "/") + pick(SEGS);
    if (chance(0.6)) u += query();
    if (chance(0.1)) u += "#" + pick(["", "f", "a b", "x?y#z", "`é"]);
    if (chance(0.05)) u = " " + u + "  ";
    try {
      new URL(u);
      return u;
    } catch {
      // not a URL node can parse: Twilio could not have signed it
    }
  }
}

// URLs Twilio might have signed for the configured one
function candidates(raw) {
  const u = new URL(raw);
  const np = new URL(u);
  np.port = "";
  const host = (x) => x.host;
  const auth = (x) => (x.username || x.password
    ? x.username + (x.password ? ":" + x.password : "") + "@" : "");
  const withPort = (x, p) => `${x.protocol}//${auth(x)}${x.hostname}:${p}` +
    `${x.pathname}${x.search}${x.hash}`;
  const c = [raw, u.href, np.href, withPort(np, 443), withPort(np, 80),
    withPort(np, 8443), u.href.replace(host(u), host(np) + ":443"),
    u.href.replace(host(u), host(np) + ":80")];
  if (u.search) {
    const leg = querystring.stringify(querystring.parse(u.search.slice(1)));
    for (const x of [u, np]) {
      const y = new URL(x);
      y.search = "";
      c.push(y.href + "?" + leg);
      c.push(withPort(y, 443).replace(/#.*$/, "") + "?" + leg);
    }
    c.push(np.origin + np.pathname + "?" + u.searchParams.toString());
  }
  return c;
}

function tamper(sig) {
  const i = rint(sig.length - 1);
  const ch = sig[i] === "A" ? "B" : "A";
  return sig.slice(0, i) + ch + sig.slice(i + 1);
}

const lines = [];
const emit = (...f) => {
  for (const x of f) {
    if (/[\t\n\r]/.test(String(x))) throw new Error("field with TAB/newline");
  }
  lines.push(f.join("\t"));
};

function formCase() {
  const tok = token();
  const raw = url(["https", "https", "http", "HTTPS", "Http"]);
  const p = params();
  emit("C", tok, raw, p.enc, sign(tok, raw, p.obj));
  const asGiven = sign(tok, raw, p.obj);
  const sigs = candidates(raw).map((x) => sign(tok, x, p.obj));
  sigs.push(tamper(sigs[1]), sign(tok + "x", raw, p.obj));
  for (const s of new Set(sigs)) {
    const ok = validateRequest(tok, s, raw, p.obj) || s === asGiven;
    emit("V", tok, raw, p.enc, s, ok ? 1 : 0);
  }
}

function bodyCase() {
  const tok = token();
  const obj = { CallSid: "CA" + rstr(8), CallStatus: pick(["completed", "busy"]),
    Note: rstr(20), N: rint(1000) };
  const body = JSON.stringify(obj);
  let base = url(["https", "http"]).trim().replace(/#.*$/, "");
  const hash = chance(0.85) ? bodyHash(body) : bodyHash(body + " ");
  base += (base.includes("?") ? "&" : "?") + "bodySHA256=" + hash;
  const u = new URL(base);
  const sigs = [base, u.href, base.replace(u.host, u.hostname + ":443"),
    base.replace(u.host, u.hostname + ":8443")].map((x) => sign(tok, x, {}));
  sigs.push(tamper(sigs[0]), sign(tok + "x", base, {}));
  for (const s of new Set(sigs)) {
    for (const b of [body, body.replace(/"N":\d+/, '"N":-1')]) {
      const hashOk = u.searchParams.get("bodySHA256") === bodyHash(b);
      const node = validateRequestWithBody(tok, s, base, b);
      if (node !== (hashOk && validateRequest(tok, s, base, {})))
        throw new Error("validateRequestWithBody disagrees");
      const ok = hashOk && (validateRequest(tok, s, base, {}) ||
        s === sign(tok, base, {}));
      emit("B", tok, base, b, s, ok ? 1 : 0);
    }
  }
}

function streamCase() {
  const tok = token();
  const host = pick(["bridge.example.org", "Bridge.Example.org", "h.test"]);
  const port = pick(["", "", ":443", ":8443"]);
  const path = pick(["/outbound-media-stream", "/s", "/a b", "/"]);
  const raw = pick(["wss", "WSS"]) + "://" + host + port + path;
  const u = new URL(raw);
  const p = u.port || "443";
  const norm = (s, pp) => `${s}://${u.hostname}${pp}${u.pathname}`;
  const good = [raw];
  for (const s of ["wss", "https"]) good.push(norm(s, ""), norm(s, ":" + p));
  const bad = [norm("http", ""), norm("ws", ":80"), norm("wss", ":80"),
    norm("https", ":8080"), norm("wss", "") + "x"];
  const goodSigs = new Set(good.map((x) => sign(tok, x, {})));
  for (const x of good.filter((y) => y.startsWith("https:"))) {
    if (!validateRequest(tok, sign(tok, x, {}), norm("https", ""), {}) &&
        p === "443")
      throw new Error("validateRequest refuses an https form");
  }
  const sigs = [...good, ...bad].map((x) => sign(tok, x, {}));
  sigs.push(tamper(sigs[0]), sign(tok + "x", raw, {}));
  for (const s of new Set(sigs)) emit("S", tok, raw, s, goodSigs.has(s) ? 1 : 0);
}

lines.push(`# twilio ${twilio.VERSION ?? ""} seed ${seedOf(process.argv[3])}`);
// empty token: node signs with an empty HMAC key
emit("C", "", "https://a/", "", sign("", "https://a/", {}));
for (let i = 0; i < NCASES; i++) formCase();
for (let i = 0; i < NBODY; i++) bodyCase();
for (let i = 0; i < NSTREAM; i++) streamCase();
writeFileSync(out, lines.join("\n") + "\n");
