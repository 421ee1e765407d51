#!/usr/bin/env node
// Writes the attack corpus under tests/data/attacks/: one NN-name.case file per attack on
// imsauth-verify, the public jwks.json and README.md. Usage: node tests/js/gen-attacks.mjs
//
// Deterministic: the test keys are generated once and then read from keys/ (test-only
// private JWKs, committed on purpose), every claim and time is fixed, and the tokens are
// signed with Ed25519 and RSA PKCS#1 v1.5, which are deterministic. Only the ES256 cases
// change on every run (ECDSA signatures are randomised); they stay valid.
//
// Expected reasons follow validator-lib/src (header.c, verify.c, token.c, jwk.c) and the
// statuses and errors validator-lib/src/result.c, mirrored by OUTCOMES in lib.mjs.
import {
  constants, createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, sign,
} from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { ATTACKS_DIR, ATTACK_CONFIG, b64url, expectedTna, outcome } from './lib.mjs';

const { issuer: ISS, audience: AUD, realm: REALM, now: NOW } = ATTACK_CONFIG;
const KEYS_DIR = join(ATTACKS_DIR, 'keys');
const IMPI = 'alice@home1.net';
const IMPU = 'sip:alice@home1.net';
const TNA = expectedTna(IMPI, REALM);
const MAX_TOKEN = 8192; // DEFAULT_MAX_TOKEN in validator-lib/src/ctx.c
const NEVER_FETCHED = 'http://127.0.0.1:9'; // discard port: nothing may ever be fetched

// ---- keys -------------------------------------------------------------------------------

/** Test keys; the attacker key is not in jwks.json. */
const KEY_SPECS = [
  { name: 'ed25519', kid: 'ed25519-1', type: 'ed25519' },
  { name: 'es256', kid: 'es256-1', type: 'ec', options: { namedCurve: 'P-256' } },
  { name: 'rsa', kid: 'rsa-1', type: 'rsa', options: { modulusLength: 2048 } },
  { name: 'attacker-ed25519', kid: 'attacker-1', type: 'ed25519', attacker: true },
];

const KEYS_README = `# Test-only keys

These private JWKs sign the attack corpus in \`..\` (see \`../README.md\`). They are
**test keys, published on purpose**: never trust them anywhere, never reuse them.
\`attacker-ed25519\` plays the attacker and is deliberately absent from \`../jwks.json\`.

\`tests/js/gen-attacks.mjs\` creates a key only when its file is missing, so regenerating
the corpus keeps these keys. Delete this directory to rotate them (every case changes).
`;

/** Reads a test key from keys/, creating it first if it does not exist yet. */
function loadKey(spec) {
  const path = join(KEYS_DIR, `${spec.name}.private.jwk.json`);
  if (!existsSync(path)) {
    const { privateKey } = generateKeyPairSync(spec.type, spec.options);
    const jwk = { ...privateKey.export({ format: 'jwk' }), kid: spec.kid };
    writeFileSync(path, `${JSON.stringify(jwk, null, 2)}\n`);
  }
  const jwk = JSON.parse(readFileSync(path, 'utf8'));
  const privateKey = createPrivateKey({ key: jwk, format: 'jwk' });
  const publicKey = createPublicKey(privateKey);
  const publicJwk = { ...publicKey.export({ format: 'jwk' }), kid: jwk.kid, use: 'sig' };
  return { ...spec, kid: jwk.kid, privateKey, publicKey, publicJwk };
}

function loadKeys() {
  mkdirSync(KEYS_DIR, { recursive: true });
  writeFileSync(join(KEYS_DIR, 'README.md'), KEYS_README);
  return Object.fromEntries(KEY_SPECS.map((s) => [s.name, loadKey(s)]));
}

// ---- JWS --------------------------------------------------------------------------------

/** Raw JWS signature over input (RFC 7518 encodings: R||S for ECDSA). */
function signWith(alg, key, input) {
  switch (alg) {
    case 'EdDSA': return sign(null, input, key);
    case 'ES256': return sign('sha256', input, { key, dsaEncoding: 'ieee-p1363' });
    case 'RS256': return sign('sha256', input, { key, padding: constants.RSA_PKCS1_PADDING });
    case 'PS256':
      return sign('sha256', input, {
        key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32,
      });
    default: throw new Error(`no signer for ${alg}`);
  }
}

const asBytes = (x) => (Buffer.isBuffer(x) ? x
  : Buffer.from(typeof x === 'string' ? x : JSON.stringify(x), 'utf8'));

/**
 * Compact JWS. header and payload are objects (serialised as JSON) or exact text/bytes.
 * The signature is signer(signingInput) when given, else signWith(alg, key).
 */
function jws({ header, payload, key, alg, signer }) {
  return signSegments(b64url.encode(asBytes(header)), b64url.encode(asBytes(payload)),
    { key, alg, signer });
}

/** Compact JWS over two segments taken as they are (even if they are not base64url). */
function signSegments(h, p, { key, alg, signer }) {
  const input = Buffer.from(`${h}.${p}`);
  const sig = signer ? signer(input) : signWith(alg, key, input);
  return `${h}.${p}.${b64url.encode(sig)}`;
}

/** The profile's claims, valid at NOW; over adds, replaces, or (undefined) removes claims. */
function claims(over = {}) {
  return {
    iss: ISS,
    sub: 'user-alice',
    aud: AUD,
    exp: NOW + 600,
    iat: NOW - 60,
    nbf: NOW - 60,
    jti: 'attack-corpus-0001',
    client_id: 'wwsf.home1.net',
    scope: 'openid ims',
    impi: IMPI,
    impu: [IMPU, 'tel:+15551234'],
    ...over,
  };
}

// ---- cases ------------------------------------------------------------------------------

/**
 * Every case: name, doc (what it proves, one line), reason, stdin (string or Buffer),
 * optional impu (--impu; default IMPU, null for none), now, challengeContains, tna.
 */
function buildCases(k) {
  const ed = k.ed25519;
  const hdr = (over = {}) => ({ typ: 'at+jwt', alg: 'EdDSA', kid: ed.kid, ...over });
  const edToken = (over = {}, headerOver = {}) =>
    jws({ header: hdr(headerOver), payload: claims(over), key: ed.privateKey, alg: 'EdDSA' });
  const good = edToken();
  const [goodH, goodP, goodS] = good.split('.');
  const esPem = k.es256.publicKey.export({ type: 'spki', format: 'pem' });
  const attacker = k['attacker-ed25519'];
  const attackerToken = (extra) => jws({
    header: hdr(extra), payload: claims(), key: attacker.privateKey, alg: 'EdDSA',
  });
  const bearer = (t) => `Bearer ${t}`;

  return [
    // -- baseline: the corpus' keys and configuration accept well-formed tokens
    { name: 'valid-eddsa', reason: 'ok', tna: TNA, stdin: bearer(good),
      doc: 'baseline: an EdDSA token of the profile is accepted (keys and config are right)' },
    { name: 'valid-es256', reason: 'ok', tna: TNA,
      doc: 'baseline: an ES256 token (R||S signature) is accepted',
      stdin: bearer(jws({ header: hdr({ alg: 'ES256', kid: k.es256.kid }), payload: claims(),
        key: k.es256.privateKey, alg: 'ES256' })) },
    { name: 'valid-rs256', reason: 'ok', tna: TNA,
      doc: 'baseline: an RS256 token is accepted',
      stdin: bearer(jws({ header: hdr({ alg: 'RS256', kid: k.rsa.kid }), payload: claims(),
        key: k.rsa.privateKey, alg: 'RS256' })) },

    // -- algorithm attacks
    { name: 'alg-none-empty-signature', reason: 'malformed_token',
      doc: 'alg none with the empty signature segment is refused as a broken JWS',
      stdin: bearer(`${b64url.encode('{"alg":"none","typ":"at+jwt"}')}.${goodP}.`) },
    { name: 'alg-none-with-signature', reason: 'alg_not_allowed',
      doc: 'alg none is never an allowed algorithm, whatever the signature segment holds',
      stdin: bearer(`${b64url.encode('{"alg":"none","typ":"at+jwt"}')}.${goodP}.${goodS}`) },
    { name: 'hs256-keyed-with-es256-public-pem', reason: 'alg_not_allowed',
      doc: 'HMAC keyed with the EC public key PEM (RS/HS confusion) is refused: no HS* ' +
        'without a configured secret',
      stdin: bearer(jws({ header: hdr({ alg: 'HS256', kid: k.es256.kid }), payload: claims(),
        signer: (input) => createHmac('sha256', esPem).update(input).digest() })) },
    { name: 'es512-not-in-default-algs', reason: 'alg_not_allowed',
      doc: 'a known algorithm outside the allowed list (default --algs) is refused',
      // refused before any key or signature is looked at: any signature will do
      stdin: bearer(jws({ header: hdr({ alg: 'ES512', kid: k.es256.kid }), payload: claims(),
        key: ed.privateKey, alg: 'EdDSA' })) },
    { name: 'eddsa-alg-with-ec-kid', reason: 'alg_not_allowed',
      doc: 'a kid naming a key of another type than alg is refused (no key/alg confusion)',
      stdin: bearer(edToken({}, { kid: k.es256.kid })) },
    { name: 'rs256-signature-claimed-as-ps256', reason: 'bad_signature',
      doc: 'a PKCS#1 v1.5 signature does not pass as PSS when the header says PS256',
      stdin: bearer(jws({ header: hdr({ alg: 'PS256', kid: k.rsa.kid }), payload: claims(),
        key: k.rsa.privateKey, alg: 'RS256' })) },
    { name: 'es256-der-signature', reason: 'bad_signature',
      doc: 'an ECDSA signature in DER form instead of JOSE R||S is refused',
      stdin: bearer(jws({ header: hdr({ alg: 'ES256', kid: k.es256.kid }), payload: claims(),
        signer: (input) => sign('sha256', input, k.es256.privateKey) })) },

    // -- key selection attacks
    { name: 'unknown-kid', reason: 'unknown_kid',
      doc: 'a kid that no configured key has is refused',
      stdin: bearer(edToken({}, { kid: 'no-such-key' })) },
    { name: 'kid-path-traversal', reason: 'unknown_kid',
      doc: 'a kid with path characters is only compared, never used as a file name',
      stdin: bearer(edToken({}, { kid: '../../etc/passwd' })) },
    { name: 'kid-sql-injection', reason: 'unknown_kid',
      doc: 'a kid with SQL characters is only compared, never used in a query',
      stdin: bearer(edToken({}, { kid: "' OR '1'='1" })) },
    { name: 'kid-not-a-string', reason: 'malformed_token',
      doc: 'a non-string kid is a broken JOSE header',
      stdin: bearer(edToken({}, { kid: 1 })) },
    { name: 'kid-too-long', reason: 'malformed_token',
      doc: 'a kid longer than 256 bytes is refused before any key lookup',
      stdin: bearer(edToken({}, { kid: 'k'.repeat(257) })) },
    { name: 'kid-json-escaped', reason: 'ok', tna: TNA,
      doc: 'a kid written with a JSON escape (\\u002d for -) names the same key',
      stdin: bearer(jws({ header: JSON.stringify(hdr()).replace(`"${ed.kid}"`,
        `"${ed.kid.replace('-', '\\u002d')}"`), payload: claims(), key: ed.privateKey,
      alg: 'EdDSA' })) },
    { name: 'kid-absent-several-keys', reason: 'unknown_kid',
      doc: 'without a kid, a key set of several keys has no unambiguous key',
      stdin: bearer(edToken({}, { kid: undefined })) },
    { name: 'jku-attacker-key', reason: 'bad_signature',
      doc: 'jku is ignored: the token signed by the key it links is checked with our key',
      stdin: bearer(attackerToken({ jku: `${NEVER_FETCHED}/jwks.json` })) },
    { name: 'x5u-attacker-key', reason: 'bad_signature',
      doc: 'x5u is ignored: the token signed by the key it links is checked with our key',
      stdin: bearer(attackerToken({ x5u: `${NEVER_FETCHED}/cert.pem` })) },
    { name: 'jwk-embedded-attacker-key', reason: 'bad_signature',
      doc: 'an embedded jwk is ignored: the token signed by that key is checked with our key',
      stdin: bearer(attackerToken({ jwk: { ...attacker.publicJwk, kid: ed.kid } })) },
    { name: 'jwk-embedded-attacker-kid', reason: 'unknown_kid',
      doc: 'an embedded jwk never adds a key: its own kid stays unknown',
      stdin: bearer(attackerToken({ kid: attacker.kid, jwk: attacker.publicJwk,
        jku: `${NEVER_FETCHED}/jwks.json` })) },

    // -- JOSE header
    { name: 'typ-jwt', reason: 'wrong_type',
      doc: 'typ JWT (an ID token or other JWT) is not an access token (RFC 9068 section 4)',
      stdin: bearer(edToken({}, { typ: 'JWT' })) },
    { name: 'typ-missing', reason: 'wrong_type',
      doc: 'a header without typ is not an access token',
      stdin: bearer(edToken({}, { typ: undefined })) },
    { name: 'typ-application-at-jwt', reason: 'ok', tna: TNA,
      doc: 'typ application/at+jwt in other letter case is accepted (RFC 9068, RFC 7515 4.1.9)',
      stdin: bearer(edToken({}, { typ: 'application/AT+JWT' })) },
    { name: 'crit-header', reason: 'malformed_token',
      doc: 'a crit header parameter we cannot honour is refused (RFC 7515 section 4.1.11)',
      stdin: bearer(edToken({}, { crit: ['exp'], exp: NOW })) },
    { name: 'duplicate-header-alg', reason: 'malformed_token',
      doc: 'a header naming alg twice is refused, not resolved in favour of either',
      stdin: bearer(jws({ header: `{"typ":"at+jwt","alg":"EdDSA","alg":"none","kid":"${ed.kid}"}`,
        payload: claims(), key: ed.privateKey, alg: 'EdDSA' })) },

    // -- JWS structure
    { name: 'header-bad-base64url-plus', reason: 'malformed_token',
      doc: "a '+' (base64, not base64url) in the header segment is refused",
      stdin: bearer(`${goodH.slice(0, 5)}+${goodH.slice(6)}.${goodP}.${goodS}`) },
    { name: 'jwe-five-segments', reason: 'malformed_token',
      doc: 'a JWE-looking token of five segments is refused (only JWS is supported)',
      stdin: bearer([b64url.encode('{"alg":"RSA-OAEP","enc":"A256GCM","typ":"at+jwt"}'),
        'OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGe',
        '48V1_ALb6US04U3b', '5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6ji',
        'XFBoMYUZodetZdvTiFvSkQ'].join('.')) },
    { name: 'signature-stripped', reason: 'malformed_token',
      doc: 'a valid header and payload with the signature cut off are refused',
      stdin: bearer(`${goodH}.${goodP}.`) },
    { name: 'payload-changed-signature-kept', reason: 'bad_signature',
      doc: 'a payload granting another identity under the original signature is refused',
      stdin: bearer(`${goodH}.${b64url.encode(JSON.stringify(claims({
        impu: ['sip:bob@home1.net'] })))}.${goodS}`) },

    // -- payload structure (correctly signed, so only the parser decides)
    { name: 'payload-json-array', reason: 'malformed_token',
      doc: 'a correctly signed payload that is a JSON array, not an object, is refused',
      stdin: bearer(jws({ header: hdr(), payload: JSON.stringify([claims()]), key: ed.privateKey,
        alg: 'EdDSA' })) },
    { name: 'payload-nul-byte', reason: 'malformed_token',
      doc: 'a raw NUL byte inside the signed payload JSON is refused, not truncated at',
      stdin: bearer(jws({ header: hdr(), key: ed.privateKey, alg: 'EdDSA',
        payload: Buffer.from(JSON.stringify(claims({ sub: 'user-alice\u0000admin' }))
          .replace('\\u0000', '\u0000'), 'utf8') })) },
    { name: 'payload-segment-not-base64url-signed', reason: 'malformed_token',
      doc: 'a correctly signed payload segment that is not base64url (4n+1 long) is refused',
      stdin: bearer(signSegments(goodH, `${goodP}A`, { key: ed.privateKey, alg: 'EdDSA' })) },
    { name: 'payload-invalid-utf8', reason: 'malformed_token',
      doc: 'a correctly signed payload with invalid UTF-8 (0xff) in a claim is refused',
      stdin: bearer(jws({ header: hdr(), key: ed.privateKey, alg: 'EdDSA',
        // latin1 turns U+00FF into the lone byte 0xff: not UTF-8
        payload: Buffer.from(JSON.stringify(claims({ sub: 'user-\u00ff' })), 'latin1') })) },
    { name: 'impu-escaped-nul', reason: 'malformed_token',
      doc: 'an impu with an escaped NUL (\\u0000) is refused, never cut at the NUL and granted',
      stdin: bearer(jws({ header: hdr(), key: ed.privateKey, alg: 'EdDSA',
        payload: JSON.stringify(claims({ impu: ['sip:alice@home1.net'] }))
          .replace('"sip:alice@home1.net"', '"sip:alice@home1.net\\u0000.evil.example"') })) },
    { name: 'impi-json-escaped', reason: 'ok', tna: TNA,
      doc: 'JSON escapes in a claim are decoded: alice\\u0040home1.net is alice@home1.net',
      stdin: bearer(jws({ header: hdr(), key: ed.privateKey, alg: 'EdDSA',
        payload: JSON.stringify(claims()).replace(`"impi":"${IMPI}"`,
          '"impi":"alice\\u0040home1.net"') })) },
    { name: 'duplicate-claim-impu', reason: 'malformed_token',
      doc: 'duplicate claim names (impu twice) are refused, so no parser differential',
      stdin: bearer(jws({ header: hdr(), key: ed.privateKey, alg: 'EdDSA',
        payload: JSON.stringify(claims()).replace(/}$/, ',"impu":["sip:bob@home1.net"]}') })) },

    { name: 'duplicate-claim-escaped-name', reason: 'malformed_token',
      doc: 'names are compared decoded: "imp\\u0075" duplicates "impu" and is refused',
      stdin: bearer(jws({ header: hdr(), key: ed.privateKey, alg: 'EdDSA',
        payload: JSON.stringify(claims())
          .replace(/}$/, ',"imp\\u0075":["sip:bob@home1.net"]}') })) },

    // -- claims
    { name: 'expired', reason: 'expired',
      doc: 'a token that expired an hour ago is refused',
      stdin: bearer(edToken({ exp: NOW - 3600, iat: NOW - 4200, nbf: NOW - 4200 })) },
    { name: 'exp-within-leeway', reason: 'ok', tna: TNA,
      doc: 'exp 29 s in the past, inside the default 30 s leeway, is still accepted',
      stdin: bearer(edToken({ exp: NOW - 29 })) },
    { name: 'exp-just-past-leeway', reason: 'expired',
      doc: 'exp exactly 30 s in the past is refused: now must be before exp + leeway (RFC 7519)',
      stdin: bearer(edToken({ exp: NOW - 30 })) },
    { name: 'nbf-future', reason: 'not_yet_valid',
      doc: 'a token whose nbf is an hour in the future is refused',
      stdin: bearer(edToken({ nbf: NOW + 3600 })) },
    { name: 'iat-future', reason: 'not_yet_valid',
      doc: 'a token issued an hour in the future is refused',
      stdin: bearer(edToken({ iat: NOW + 3600, nbf: undefined })) },
    { name: 'wrong-issuer', reason: 'wrong_issuer',
      doc: 'a token from another issuer is refused',
      stdin: bearer(edToken({ iss: 'https://evil.example' })) },
    { name: 'wrong-audience', reason: 'wrong_audience',
      doc: 'a token for another audience is refused',
      stdin: bearer(edToken({ aud: 'https://other-rs.home1.net' })) },
    { name: 'aud-array-without-us', reason: 'wrong_audience',
      doc: 'an aud array that does not contain our audience is refused',
      stdin: bearer(edToken({ aud: ['https://a.home1.net', `${AUD}.evil`] })) },
    { name: 'scope-missing', reason: 'insufficient_scope', challengeContains: 'scope="ims"',
      doc: 'a token without scope lacks the ims scope: 403 with scope in the challenge',
      stdin: bearer(edToken({ scope: undefined })) },
    { name: 'scope-ims-prefix-only', reason: 'insufficient_scope',
      doc: 'scope "imsx openid" does not contain the scope token ims',
      stdin: bearer(edToken({ scope: 'imsx openid' })) },
    { name: 'impu-not-granted', reason: 'identity_not_granted', impu: 'sip:bob@home1.net',
      doc: 'a request for an IMPU the token does not list is refused with 403 (no scope error)',
      stdin: bearer(good) },
    { name: 'impu-name-addr-host-case', reason: 'ok', tna: TNA,
      impu: '"Alice" <sip:alice@HOME1.NET;transport=ws>',
      doc: 'the request IMPU matches as a URI: display name, <>, host case and parameters aside',
      stdin: bearer(good) },
    { name: 'impi-missing', reason: 'missing_claim',
      doc: 'a token without impi cannot build the TNA header and is refused',
      stdin: bearer(edToken({ impi: undefined })) },
    { name: 'impi-crlf-injection', reason: 'bad_claim',
      doc: 'an impi with CR LF (SIP header injection via the TNA header) is refused',
      stdin: bearer(edToken({ impi: 'alice@home1.net\r\nRoute: <sip:evil.example;lr>' })) },
    { name: 'impu-claim-name-addr', reason: 'bad_claim',
      doc: 'an impu claim in name-addr form (<...>) is not a plain URI and is refused',
      stdin: bearer(edToken({ impu: ['<sip:alice@home1.net>'] })) },

    // -- size
    { name: 'token-8192-bytes', reason: 'ok', tna: TNA,
      doc: 'a token of exactly 8192 bytes (the default limit) is accepted',
      stdin: bearer(tokenOfLength(MAX_TOKEN, ed)) },
    { name: 'token-8193-bytes', reason: 'too_large',
      doc: 'a token of 8193 bytes, one beyond the limit, is refused with 400',
      stdin: bearer(tokenOfLength(MAX_TOKEN + 1, ed)) },
    { name: 'token-oversized', reason: 'too_large',
      doc: 'a 20000-byte token is refused before it is parsed',
      stdin: bearer(tokenOfLength(20000, ed)) },

    // -- Authorization header syntax
    { name: 'no-credentials', reason: 'missing', impu: null, challengeContains: 'scope="ims"',
      doc: 'empty input is no credentials: 401 without error, challenge with scope',
      stdin: '' },
    { name: 'digest-credentials', reason: 'unsupported_scheme', challengeContains: 'scope="ims"',
      doc: 'Digest credentials are another scheme: 401 without error and a Bearer challenge',
      stdin: `Digest username="${IMPI}", realm="${REALM}", nonce="4a2b", uri="sip:${REALM}", ` +
        'response="0123456789abcdef0123456789abcdef", algorithm=MD5' },
    { name: 'empty-bearer', reason: 'malformed',
      doc: '"Bearer " without a token is a malformed request (400)',
      stdin: 'Bearer ' },
    { name: 'two-tokens-space', reason: 'malformed',
      doc: 'two Bearer credentials separated by a space are refused, not the first taken',
      stdin: `${bearer(good)} ${bearer(good)}` },
    { name: 'two-tokens-comma', reason: 'malformed',
      doc: 'two Bearer credentials in a comma list are refused, not the first taken',
      stdin: `${bearer(good)}, ${bearer(good)}` },
    { name: 'lowercase-scheme', reason: 'ok', tna: TNA,
      doc: 'the auth-scheme is case-insensitive: "bearer" is accepted',
      stdin: `bearer ${good}` },
    { name: 'tab-and-trailing-spaces', reason: 'ok', tna: TNA,
      doc: 'a tab between scheme and token and trailing spaces are accepted whitespace',
      stdin: `Bearer\t${good}   ` },
    { name: 'annex-a-access-token-param', reason: 'ok', tna: TNA,
      doc: 'the TS 24.371 Annex A form Bearer access_token="<token>" is accepted',
      stdin: `Bearer access_token="${good}"` },
    { name: 'crlf-header-injection', reason: 'malformed',
      doc: 'CR LF inside the value (a smuggled header line) is refused',
      stdin: `${bearer(good)}\r\nP-Asserted-Identity: <sip:admin@home1.net>` },
    { name: 'crlf-line-fold', reason: 'malformed',
      doc: 'CR LF between scheme and token (obsolete line folding) is refused',
      stdin: `Bearer\r\n ${good}` },
    { name: 'nul-byte-after-token', reason: 'malformed',
      doc: 'a NUL byte after the token is refused, not taken as the end of the value',
      stdin: Buffer.from(`${bearer(good)}\u0000garbage`, 'latin1') },
  ];
}

/** An Ed25519 token of exactly length bytes: a pad claim and header whitespace fill it. */
function tokenOfLength(length, ed) {
  const header = JSON.stringify({ typ: 'at+jwt', alg: 'EdDSA', kid: ed.kid });
  const make = (pad, spaces) => jws({
    header: `{${' '.repeat(spaces)}${header.slice(1)}`,
    payload: claims({ pad: 'x'.repeat(pad) }),
    key: ed.privateKey,
    alg: 'EdDSA',
  });
  // 3 pad bytes add 4 base64url characters: start just below the length wanted.
  const start = Math.max(0, Math.floor(((length - make(0, 0).length) * 3) / 4) - 6);
  for (let pad = start; pad < start + 12; pad++) {
    // base64url never yields a length of 4n+1; one or two header spaces get around that
    for (const spaces of [0, 1, 2]) {
      const t = make(pad, spaces);
      if (t.length === length) return t;
    }
  }
  throw new Error(`no token of ${length} bytes`);
}

// ---- output -----------------------------------------------------------------------------

/** Whether stdin can sit on a "header:" line as it is. */
function printable(buf) {
  const s = buf.toString('latin1');
  return s.length > 0 && /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(s);
}

function caseText(c) {
  const want = outcome(c.reason);
  const stdin = Buffer.isBuffer(c.stdin) ? c.stdin : Buffer.from(c.stdin, 'utf8');
  const impu = c.impu === undefined ? IMPU : c.impu;
  const lines = [
    `# ${c.doc}`,
    `reason: ${want.reason}`,
    `status: ${want.status}`,
    `error: ${want.error ?? 'null'}`,
  ];
  if (impu) lines.push(`impu: ${impu}`);
  lines.push(`now: ${c.now ?? NOW}`);
  if (c.challengeContains) lines.push(`challenge-contains: ${c.challengeContains}`);
  if (c.tna) lines.push(`tna: ${c.tna}`);
  lines.push(printable(stdin) ? `header: ${stdin.toString('latin1')}`
    : `header-b64:${stdin.length ? ` ${stdin.toString('base64')}` : ''}`);
  return `${lines.join('\n')}\n`;
}

const README = `# Attack corpus for imsauth-verify

Black-box cases replayed by \`tests/js/attacks.test.mjs\` (CTest \`js.attacks\`, label
\`attacks\`). Each \`NN-name.case\` file is one Authorization header value and the verdict
\`imsauth-verify\` must give for it.

## Format

Plain text, one \`key: value\` per line; lines starting with \`#\` are comments (the first
says what the case proves).

| key | meaning |
|-----|---------|
| \`reason\` | expected \`reason\` (\`imsauth_strerror\` name); \`ok\` for an accepted token |
| \`status\` | expected \`sip_status\` (200 for \`ok\`) |
| \`error\` | expected RFC 6750 \`error\`, or \`null\` |
| \`impu\` | value of \`--impu\` (absent: no \`--impu\`) |
| \`now\` | value of \`--now\` (Unix seconds) |
| \`challenge-contains\` | optional: a substring the rejection's \`challenge\` must contain |
| \`tna\` | optional, accepted tokens: the exact \`tna\` header expected |
| \`header\` | the exact stdin bytes (the rest of the line after \`header: \`) |
| \`header-b64\` | instead of \`header\`: base64 of the exact stdin bytes (see below) |

\`header-b64\` is used when the value cannot sit on a text line as it is: control bytes
(NUL, CR LF, tab), leading or trailing spaces, or empty input.

Every case runs as

\`\`\`
imsauth-verify --jwks tests/data/attacks/jwks.json --issuer ${ISS} \\
  --audience ${AUD} --realm ${REALM} --now NOW [--impu IMPU] < header
\`\`\`

with exit 0 expected for \`ok\` and 1 otherwise. For rejections the test also checks that
\`challenge\` starts with \`Bearer realm="\` and carries \`error="<error>"\` (or no error
when \`error\` is \`null\`). Fewer than 25 cases fail the test.

## Regenerating

\`\`\`
node tests/js/gen-attacks.mjs
\`\`\`

rewrites every \`.case\` file, \`jwks.json\` and this README from \`tests/js/gen-attacks.mjs\`.
Keys come from \`keys/\` (test-only private JWKs, see \`keys/README.md\`) and are created only
when missing, so the output is identical on every run except the ES256 cases (ECDSA
signatures are randomised). Edit the generator, never the \`.case\` files by hand.
`;

function main() {
  mkdirSync(ATTACKS_DIR, { recursive: true });
  const keys = loadKeys();
  const cases = buildCases(keys);
  for (const f of readdirSync(ATTACKS_DIR)) {
    if (f.endsWith('.case')) rmSync(join(ATTACKS_DIR, f));
  }
  cases.forEach((c, i) => {
    const file = `${String(i + 1).padStart(2, '0')}-${c.name}.case`;
    writeFileSync(join(ATTACKS_DIR, file), caseText(c));
  });
  const jwks = { keys: Object.values(keys).filter((k) => !k.attacker).map((k) => k.publicJwk) };
  writeFileSync(join(ATTACKS_DIR, 'jwks.json'), `${JSON.stringify(jwks, null, 2)}\n`);
  writeFileSync(join(ATTACKS_DIR, 'README.md'), README);
  console.log(`wrote ${cases.length} cases to ${ATTACKS_DIR}`);
}

main();
