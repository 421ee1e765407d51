// Interop: tokens minted by an independent JOSE implementation (npm jose) against
// imsauth-verify, for every algorithm the CLI knows; then one-byte changes of those tokens,
// which must all be caught, and a seeded random single-byte mutation run.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as jose from 'jose';

import {
  ALL_ALGS, DEFAULT_ALGS, OUTCOMES, PARALLEL, assertCleanRun, assertRejected, assertValid,
  b64url, cliArgs, expectedTna, mulberry32, outcome, runCli,
} from './lib.mjs';

const CONFIG = {
  issuer: 'https://waf.interop.test',
  audience: 'pcscf.interop.test',
  realm: 'home1.net',
  now: 1900000000,
};
const IMPI = 'alice@home1.net';
const IMPU = ['sip:alice@home1.net', 'tel:+15551234'];
const FUZZ_SEED = Number(process.env.IMS_FUZZ_SEED ?? 0x1a5eed);
const FUZZ_RUNS = 50;

let workDir;
let jwksPath;
/** alg -> { token, claims } */
const minted = new Map();

const kidFor = (alg) => `interop-${alg.toLowerCase()}`;

/** The token profile's claims (docs/token-profile.md), valid at CONFIG.now. */
function claimsFor(alg) {
  return {
    iss: CONFIG.issuer,
    sub: `user-${alg}`,
    aud: [CONFIG.audience, 'https://other-rs.interop.test'],
    exp: CONFIG.now + 600,
    iat: CONFIG.now - 60,
    nbf: CONFIG.now - 60,
    jti: `jti-${alg}-${randomUUID()}`,
    client_id: 'wwsf.interop.test',
    scope: 'openid ims',
    impi: IMPI,
    impu: IMPU,
  };
}

/** A key pair for alg; the public half as a JWK with a kid. */
async function makeKey(alg) {
  const { publicKey, privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await jose.exportJWK(publicKey)), kid: kidFor(alg), use: 'sig' };
  return { alg, privateKey, jwk };
}

async function mint({ alg, privateKey }) {
  const claims = claimsFor(alg);
  const token = await new jose.SignJWT(claims)
    .setProtectedHeader({ typ: 'at+jwt', alg, kid: kidFor(alg) })
    .sign(privateKey);
  return { token, claims };
}

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'imsauth-interop-'));
  jwksPath = join(workDir, 'jwks.json');
  const keys = await Promise.all(ALL_ALGS.map(makeKey));
  await writeFile(jwksPath, JSON.stringify({ keys: keys.map((k) => k.jwk) }, null, 2));
  for (const k of keys) minted.set(k.alg, await mint(k));
});

after(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

/** Runs the CLI on one header value; algs null passes no --algs (the CLI default list). */
function verify(header, { algs = ALL_ALGS, impu = IMPU[0] } = {}) {
  return runCli(cliArgs({ ...CONFIG, jwks: jwksPath, impu, algs }), header);
}

/** Number of positions at which two equally long strings differ. */
function diffCount(a, b) {
  assert.equal(a.length, b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

/**
 * Re-encodes the JOSE header with typ in another letter case (the CLI compares typ
 * case-insensitively, so the header means the same) while the signed bytes differ.
 */
function changeHeaderTyp(token, typ) {
  const [h, p, s] = token.split('.');
  const text = b64url.decode(h).toString('utf8');
  const changed = text.replace('"typ":"at+jwt"', `"typ":"${typ}"`);
  assert.notEqual(changed, text);
  assert.equal(changed.toLowerCase(), text.toLowerCase());
  return [b64url.encode(changed), p, s].join('.');
}

/** Re-encodes the payload with one character of sub changed. */
function changePayloadSub(token) {
  const [h, p, s] = token.split('.');
  const text = b64url.decode(p).toString('utf8');
  const changed = text.replace('"sub":"user-', '"sub":"vser-');
  assert.equal(diffCount(text, changed), 1, text);
  return [h, b64url.encode(changed), s].join('.');
}

/** Changes one base64url character in the middle of the signature segment. */
function changeSignatureChar(token) {
  const [h, p, s] = token.split('.');
  const mid = Math.floor(s.length / 2);
  const c = s[mid] === 'A' ? 'B' : 'A';
  return [h, p, s.slice(0, mid) + c + s.slice(mid + 1)].join('.');
}

describe('jose tokens of every algorithm verify (--algs lists all ten)', { concurrency: PARALLEL },
  () => {
    for (const alg of ALL_ALGS) {
      it(alg, async () => {
        const { token, claims } = minted.get(alg);
        const j = assertValid(await verify(`Bearer ${token}`), alg);
        assert.equal(j.impi, claims.impi);
        assert.deepEqual(j.impu, claims.impu);
        assert.equal(j.sub, claims.sub);
        assert.equal(j.jti, claims.jti);
        assert.equal(j.exp, claims.exp);
        assert.equal(j.client_id, claims.client_id);
        assert.equal(j.scope, claims.scope);
        assert.equal(j.tna, expectedTna(claims.impi, CONFIG.realm));
      });
    }
  });

describe('default --algs accepts exactly ES256, ES384, RS256, PS256, EdDSA',
  { concurrency: PARALLEL }, () => {
    for (const alg of ALL_ALGS) {
      const allowed = DEFAULT_ALGS.includes(alg);
      it(`${alg} ${allowed ? 'accepted' : 'rejected: alg_not_allowed'}`, async () => {
        const res = await verify(`Bearer ${minted.get(alg).token}`, { algs: null });
        if (allowed) assertValid(res, alg);
        else assertRejected(res, outcome('alg_not_allowed'), alg);
      });
    }
  });

describe('one-byte changes of a token are caught by the signature', { concurrency: PARALLEL },
  () => {
    const changes = {
      'header: typ at+jwt -> at+Jwt (one byte, same meaning)': (t) => changeHeaderTyp(t, 'at+Jwt'),
      'header: typ at+jwt -> at+JWT (same meaning)': (t) => changeHeaderTyp(t, 'at+JWT'),
      'payload: one character of sub': changePayloadSub,
      'signature: one base64url character': changeSignatureChar,
    };
    for (const alg of ALL_ALGS) {
      for (const [what, change] of Object.entries(changes)) {
        it(`${alg}: ${what}`, async () => {
          const changed = change(minted.get(alg).token);
          assert.notEqual(changed, minted.get(alg).token);
          assertRejected(await verify(`Bearer ${changed}`), outcome('bad_signature'), alg);
        });
      }
    }
  });

describe('header forms', { concurrency: PARALLEL }, () => {
  // RFC 8898 section 4 (RFC 6750 b64token) and the TS 24.371 Annex A auth-param form.
  const forms = {
    'RFC 8898: Bearer <token>': (t) => `Bearer ${t}`,
    'TS 24.371 Annex A: Bearer access_token="<token>"': (t) => `Bearer access_token="${t}"`,
  };
  for (const [what, form] of Object.entries(forms)) {
    it(what, async () => {
      const j = assertValid(await verify(form(minted.get('ES256').token)), what);
      assert.equal(j.impi, IMPI);
    });
  }
});

const B64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * FUZZ_RUNS distinct positions inside the token, each with a replacement byte: any byte for
 * half of them (mostly stops at the header parser), a base64url character for the other
 * half (gets through to base64url, JSON and signature checks).
 */
function mutations(length, seed) {
  const rand = mulberry32(seed);
  const positions = new Set();
  while (positions.size < FUZZ_RUNS) positions.add(Math.floor(rand() * length));
  return [...positions].map((pos, i) => ({
    pos,
    byte: i % 2 === 0 ? Math.floor(rand() * 256)
      : B64URL_ALPHABET.charCodeAt(Math.floor(rand() * B64URL_ALPHABET.length)),
  }));
}

describe(`seeded single-byte mutations of a valid token (seed ${FUZZ_SEED}; IMS_FUZZ_SEED ` +
  'overrides)', { concurrency: PARALLEL }, () => {
  const prefix = Buffer.from('Bearer ');
  let plan; // drawn on first use: the token only exists once before() ran
  for (let i = 0; i < FUZZ_RUNS; i++) {
    it(`mutation ${i}`, async (t) => {
      const token = Buffer.from(minted.get('ES256').token);
      plan ??= mutations(token.length, FUZZ_SEED);
      const { pos, byte } = plan[i];
      const header = Buffer.concat([prefix, token]);
      const unchanged = token[pos] === byte;
      header[prefix.length + pos] = byte;
      const label = `token byte ${pos} ${JSON.stringify(String.fromCharCode(token[pos]))} -> ` +
        `0x${byte.toString(16).padStart(2, '0')}`;
      const res = await verify(header);
      if (unchanged) {
        assertValid(res, label);
        return;
      }
      // Never a crash or a sanitizer report, never accepted, always a known reason with
      // the status and error that go with it.
      assertCleanRun(res, label);
      assert.equal(res.code, 1, label);
      assert.equal(res.json.valid, false, label);
      assert.ok(Object.hasOwn(OUTCOMES, res.json.reason) && res.json.reason !== 'ok',
        `${label}: unknown reason ${res.json.reason}`);
      assertRejected(res, outcome(res.json.reason), label);
      t.diagnostic(`${label}: ${res.json.reason}`);
    });
  }
});
