// Replays the attack corpus (tests/data/attacks/*.case, written by gen-attacks.mjs) against
// imsauth-verify: every case must end with exactly the verdict its file states.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import {
  ATTACKS_DIR, ATTACK_CONFIG, PARALLEL, assertRejected, assertValid, cliArgs, runCli,
} from './lib.mjs';

const MIN_CASES = 25; // an emptied or truncated corpus must not pass
const JWKS = join(ATTACKS_DIR, 'jwks.json');
const KEYS = new Set([
  'reason', 'status', 'error', 'impu', 'now', 'challenge-contains', 'tna', 'header',
  'header-b64',
]);

const caseFiles = readdirSync(ATTACKS_DIR).filter((f) => f.endsWith('.case')).sort();

/** Splits a .case file into its comment and its key: value fields. */
function parseLines(text, file) {
  const fields = {};
  const comments = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      comments.push(line.slice(1).trim());
      continue;
    }
    const m = /^([a-z0-9-]+):(?: (.*))?$/s.exec(line);
    assert.ok(m && KEYS.has(m[1]), `${file}: bad line ${JSON.stringify(line.slice(0, 80))}`);
    assert.ok(!Object.hasOwn(fields, m[1]), `${file}: ${m[1]} given twice`);
    fields[m[1]] = m[2] ?? '';
  }
  return { fields, comments };
}

/** The exact stdin bytes of a case: header (as written) or header-b64 (decoded). */
function stdinOf(fields, file) {
  const plain = Object.hasOwn(fields, 'header');
  assert.ok(plain !== Object.hasOwn(fields, 'header-b64'),
    `${file}: needs exactly one of header, header-b64`);
  if (plain) return Buffer.from(fields.header, 'latin1');
  const bytes = Buffer.from(fields['header-b64'], 'base64');
  assert.equal(bytes.toString('base64'), fields['header-b64'], `${file}: header-b64 is not base64`);
  return bytes;
}

function loadCase(file) {
  const { fields, comments } = parseLines(readFileSync(join(ATTACKS_DIR, file), 'latin1'), file);
  for (const key of ['reason', 'status', 'error', 'now']) {
    assert.ok(Object.hasOwn(fields, key), `${file}: ${key} missing`);
  }
  assert.ok(comments.length > 0, `${file}: no comment saying what the case proves`);
  assert.match(fields.status, /^\d{3}$/, `${file}: status`);
  assert.match(fields.now, /^\d+$/, `${file}: now`);
  return {
    reason: fields.reason,
    status: Number(fields.status),
    error: fields.error === 'null' ? null : fields.error,
    impu: fields.impu,
    now: Number(fields.now),
    challengeContains: fields['challenge-contains'],
    tna: fields.tna,
    stdin: stdinOf(fields, file),
  };
}

async function runCase(file) {
  const c = loadCase(file);
  const args = cliArgs({ ...ATTACK_CONFIG, jwks: JWKS, now: c.now, impu: c.impu });
  const res = await runCli(args, c.stdin);
  if (c.reason === 'ok') {
    assert.equal(c.status, 200, `${file}: an accepted case has status 200`);
    assert.equal(c.error, null, `${file}: an accepted case has no error`);
    const j = assertValid(res, file);
    if (c.tna !== undefined) assert.equal(j.tna, c.tna, file);
    return;
  }
  assertRejected(res, c, file);
  if (c.challengeContains !== undefined) {
    assert.ok(res.json.challenge.includes(c.challengeContains),
      `${file}: challenge ${res.json.challenge} lacks ${c.challengeContains}`);
  }
}

it(`the corpus holds at least ${MIN_CASES} cases`, () => {
  assert.ok(caseFiles.length >= MIN_CASES,
    `only ${caseFiles.length} .case files in ${ATTACKS_DIR}`);
});

describe('attack corpus', { concurrency: PARALLEL }, () => {
  for (const file of caseFiles) it(file, () => runCase(file));
});
