#!/usr/bin/env node
// Mints test access tokens (RFC 9068 JWT profile, docs 3.9 of the requirements) with the
// independent JOSE implementation `jose`, for the eP-CSCF protocol cases
// (tests/epcscf/run_cases.py) and anyone else who needs a token on the command line.
//
//   node mint-token.mjs keygen DIR
//       DIR/key.json   private ES256 JWK (with kid, alg, use)
//       DIR/jwks.json  {"keys": [public JWK]} for the verifier's token.jwks_file
//   node mint-token.mjs sign DIR '<claims JSON>' ['<header JSON>']
//       prints one compact JWS
//   node mint-token.mjs sign-many DIR FILE      (FILE "-" = standard input)
//       one JSON per line -> one token per line, in order. A line is either the claims
//       object, or {"claims": {...}, "header": {...}, "key": "OTHER_DIR/key.json"}.
//
// Defaults: header {"typ": "at+jwt", "alg": "ES256", "kid": <kid of the key>}; claims
// iat = now, exp = now + 300, jti = random. Claims given override them; a claim set to
// null is left out (e.g. {"exp": null}); iat, exp and nbf given as a string "+N" or "-N"
// are relative to now in seconds. Header "alg": "none" gives an unsecured JWT
// (RFC 7519 6.1: empty signature part), for the tests that must refuse it. "key" signs
// with another private key while keeping the header given (with the default kid of DIR's
// key unless "kid" is set), which yields a token whose signature does not verify.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, importJWK, SignJWT, base64url } from 'jose';

function usage() {
  process.stderr.write('usage: mint-token.mjs keygen DIR | sign DIR CLAIMS [HEADER] | sign-many DIR FILE\n');
  process.exit(2);
}

async function keygen(dir) {
  mkdirSync(dir, { recursive: true });
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = `test-${randomBytes(6).toString('hex')}`;
  const priv = { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' };
  const pub = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  writeFileSync(join(dir, 'key.json'), JSON.stringify(priv) + '\n', { mode: 0o600 });
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [pub] }) + '\n');
}

const keyCache = new Map();
function loadJwk(path) {
  if (!keyCache.has(path)) keyCache.set(path, JSON.parse(readFileSync(path, 'utf8')));
  return keyCache.get(path);
}

function relativeTime(name, value, now) {
  if (typeof value === 'string' && ['iat', 'exp', 'nbf'].includes(name) && /^[+-]\d+$/.test(value)) {
    return now + Number(value);
  }
  return value;
}

async function sign(dir, spec) {
  const now = Math.floor(Date.now() / 1000);
  const given = spec.claims !== undefined && typeof spec.claims === 'object' && !Array.isArray(spec.claims)
    ? spec : { claims: spec };
  const ownJwk = loadJwk(join(dir, 'key.json'));
  const signJwk = given.key ? loadJwk(given.key) : ownJwk;
  const claims = { iat: now, exp: now + 300, jti: randomUUID() };
  for (const [name, value] of Object.entries(given.claims || {})) {
    if (value === null) delete claims[name];
    else claims[name] = relativeTime(name, value, now);
  }
  const header = { typ: 'at+jwt', alg: 'ES256', kid: ownJwk.kid };
  for (const [name, value] of Object.entries(given.header || {})) {
    if (value === null) delete header[name];
    else header[name] = value;
  }
  if (header.alg === 'none') {
    const enc = (o) => base64url.encode(JSON.stringify(o));
    return `${enc(header)}.${enc(claims)}.`;
  }
  const key = await importJWK(signJwk, header.alg);
  return new SignJWT(claims).setProtectedHeader(header).sign(key);
}

async function main() {
  const [cmd, dir, arg, headerArg] = process.argv.slice(2);
  if (!cmd || !dir) usage();
  if (cmd === 'keygen') {
    await keygen(dir);
  } else if (cmd === 'sign') {
    if (!arg) usage();
    const spec = { claims: JSON.parse(arg), header: headerArg ? JSON.parse(headerArg) : {} };
    process.stdout.write((await sign(dir, spec)) + '\n');
  } else if (cmd === 'sign-many') {
    if (!arg) usage();
    const text = readFileSync(arg === '-' ? 0 : arg, 'utf8');
    const out = [];
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      out.push(await sign(dir, JSON.parse(line)));
    }
    process.stdout.write(out.map((t) => t + '\n').join(''));
  } else {
    usage();
  }
}

main().catch((err) => {
  process.stderr.write(`mint-token: ${err.message}\n`);
  process.exit(1);
});
