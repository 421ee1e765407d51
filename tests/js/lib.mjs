// Shared helpers for the black-box tests of imsauth-verify (interop.test.mjs,
// attacks.test.mjs) and for the attack-corpus generator (gen-attacks.mjs).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BUILD_DIR = process.env.IMS_BUILD_DIR || join(REPO_DIR, 'build', 'debug');
export const CLI = join(BUILD_DIR, 'validator-lib', 'imsauth-verify');
export const ATTACKS_DIR = join(REPO_DIR, 'tests', 'data', 'attacks');

/** How many CLI processes run at once (the CI machine has 2 cores). */
export const PARALLEL = Math.max(2, Math.min(4, availableParallelism()));

export const ALL_ALGS = [
  'ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA',
];
/** IMSAUTH_ALGS_DEFAULT: what the CLI accepts without --algs. */
export const DEFAULT_ALGS = ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'];

/**
 * Verification outcomes as validator-lib/src/result.c names them:
 * reason -> [SIP status, RFC 6750 error code or null].
 */
export const OUTCOMES = Object.freeze({
  ok: [200, null],
  missing: [401, null],
  malformed: [400, 'invalid_request'],
  too_large: [400, 'invalid_request'],
  unsupported_scheme: [401, null],
  malformed_token: [401, 'invalid_token'],
  wrong_type: [401, 'invalid_token'],
  alg_not_allowed: [401, 'invalid_token'],
  unknown_kid: [401, 'invalid_token'],
  bad_signature: [401, 'invalid_token'],
  missing_claim: [401, 'invalid_token'],
  bad_claim: [401, 'invalid_token'],
  wrong_issuer: [401, 'invalid_token'],
  wrong_audience: [401, 'invalid_token'],
  expired: [401, 'invalid_token'],
  not_yet_valid: [401, 'invalid_token'],
  insufficient_scope: [403, 'insufficient_scope'],
  identity_not_granted: [403, null],
  revoked: [401, 'invalid_token'],
  unavailable: [503, null],
});

/** Expected {reason, status, error} of a verification outcome. */
export function outcome(reason) {
  assert.ok(Object.hasOwn(OUTCOMES, reason), `unknown reason ${reason}`);
  const [status, error] = OUTCOMES[reason];
  return { reason, status, error };
}

/** Configuration the attack corpus was generated for (see tests/data/attacks/README.md). */
export const ATTACK_CONFIG = Object.freeze({
  issuer: 'https://waf.home1.net',
  audience: 'pcscf.home1.net',
  realm: 'home1.net',
  now: 1900000000,
});

export const b64url = {
  encode: (data) => Buffer.from(data).toString('base64url'),
  decode: (s) => Buffer.from(s, 'base64url'),
};

/** The TNA header imsauth-verify builds for impi (Request-URI defaults to sip:<realm>). */
export function expectedTna(impi, realm) {
  return `Digest username="${impi}", realm="${realm}", uri="sip:${realm}", nonce="", ` +
    'response="", integrity-protected="auth-done"';
}

/** Small seeded PRNG (mulberry32): the same seed gives the same sequence on every run. */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs at most n async jobs at once. */
export function limiter(n) {
  let active = 0;
  const queue = [];
  const next = () => {
    if (active >= n || queue.length === 0) return;
    active++;
    const { job, ok, fail } = queue.shift();
    job().then(ok, fail).finally(() => {
      active--;
      next();
    });
  };
  return (job) => new Promise((ok, fail) => {
    queue.push({ job, ok, fail });
    next();
  });
}

const cliSlots = limiter(PARALLEL);

/** ASan options that make a leak or any sanitizer report fail the run. */
function asanOptions() {
  const base = process.env.ASAN_OPTIONS;
  return `${base ? `${base}:` : ''}detect_leaks=1:abort_on_error=1`;
}

function spawnCli(args, stdin, timeoutMs) {
  return new Promise((done, fail) => {
    const child = spawn(CLI, args, {
      env: { ...process.env, ASAN_OPTIONS: asanOptions() },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out = [];
    const err = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    child.stdin.on('error', () => {}); // the CLI may exit before reading everything
    child.on('error', (e) => {
      clearTimeout(timer);
      fail(new Error(`cannot run ${CLI}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      let json = null;
      try {
        json = JSON.parse(stdout);
      } catch {
        // left null: the assertions report stdout
      }
      done({ code, signal, stdout, stderr: Buffer.concat(err).toString('utf8'), json });
    });
    child.stdin.end(stdin);
  });
}

/**
 * Runs imsauth-verify with args and stdin (string or Buffer, passed byte for byte).
 * Resolves to {code, signal, stdout, stderr, json}.
 */
export function runCli(args, stdin, { timeoutMs = 30000 } = {}) {
  return cliSlots(() => spawnCli(args, stdin, timeoutMs));
}

/** Command line for a JWKS file and a verifier configuration. */
export function cliArgs({ jwks, issuer, audience, realm, now, impu, algs }) {
  const args = ['--jwks', jwks, '--issuer', issuer, '--audience', audience, '--realm', realm];
  if (now !== undefined) args.push('--now', String(now));
  if (impu) args.push('--impu', impu);
  if (algs) args.push('--algs', algs.join(','));
  return args;
}

function describeRun(label, res) {
  return `${label}: exit=${res.code} signal=${res.signal}\nstdout: ${res.stdout}\n` +
    `stderr: ${res.stderr}`;
}

/** The run ended normally (no crash, no sanitizer report) and printed one JSON object. */
export function assertCleanRun(res, label) {
  const why = describeRun(label, res);
  assert.equal(res.signal, null, why);
  assert.equal(res.stderr, '', why);
  assert.ok(res.json && typeof res.json === 'object', why);
}

/** The run accepted the token: exit 0, valid true. Returns the JSON. */
export function assertValid(res, label) {
  assertCleanRun(res, label);
  const why = describeRun(label, res);
  assert.equal(res.code, 0, why);
  assert.equal(res.json.valid, true, why);
  return res.json;
}

/**
 * The run rejected the token with exactly this {reason, status, error}, and the challenge
 * is a Bearer challenge carrying the same error (or none when error is null).
 */
export function assertRejected(res, want, label) {
  assertCleanRun(res, label);
  const why = describeRun(label, res);
  assert.equal(res.code, 1, why);
  const j = res.json;
  assert.equal(j.valid, false, why);
  assert.equal(j.reason, want.reason, why);
  assert.equal(j.sip_status, want.status, why);
  assert.equal(j.error, want.error, why);
  assert.equal(typeof j.challenge, 'string', why);
  assert.ok(j.challenge.startsWith('Bearer realm="'), why);
  if (want.error) assert.ok(j.challenge.includes(`error="${want.error}"`), why);
  else assert.ok(!j.challenge.includes('error='), why);
}
