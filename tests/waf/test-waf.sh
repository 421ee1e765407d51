#!/usr/bin/env bash
# Black-box test of waf-server as a real process against the dev stack's PostgreSQL, in a
# database of its own: start-up (first signing key, bootstrap admin client), metadata,
# JWKS, the client_credentials grant with every client-authentication and request error,
# introspection and revocation (the jti reaching the Redis set libimsauth reads)
# (tests/js/waf.test.mjs, with the jose library), and a clean SIGTERM shutdown
# (LeakSanitizer runs at exit in the sanitizer build).
# usage: test-waf.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
bin=$build/waf-server/waf-server
imspool=$build/pool-manager/imspool
: "${DATABASE_URL:?run under scripts/devstack (DATABASE_URL)}"
: "${REDIS_URL:?run under scripts/devstack (REDIS_URL)}"
db="waf_it_$$"
tmp=$(mktemp -d)
pid=
cleanup() {
    for p in $pid ${pid2:-} ${pid3:-} ${pid4:-} ${pid5:-}; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    true
    psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    redis-cli -u "$REDIS_URL" DEL "$db:revoked" "$db:revoked:exp" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$tmp/waf.log" ] && tail -20 "$tmp/waf.log" >&2; exit 1; }

url=$("$src/scripts/devstack" db "$db")
"$imspool" --db "$url" migrate >/dev/null
openssl rand -hex 32 >"$tmp/kek.hex"
openssl rand -hex 32 >"$tmp/server-key.hex"
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
port=$(free_port)
aport=$(free_port)
admin_secret=$(openssl rand -base64 33 | tr '+/' '-_')
svc_secret=$(openssl rand -base64 33 | tr '+/' '-_')

export WAF_ISSUER="http://127.0.0.1:$port"
export WAF_PUBLIC_LISTEN="127.0.0.1:$port" WAF_ADMIN_LISTEN="127.0.0.1:$aport"
export WAF_DATABASE_URL="$url" WAF_REDIS_URL="$REDIS_URL"
export WAF_KEYS_KEK_FILE="$tmp/kek.hex" WAF_SECRETS_SERVER_KEY_FILE="$tmp/server-key.hex"
export WAF_BOOTSTRAP_ADMIN_CLIENT_SECRET="$admin_secret"
export WAF_REDIS_REVOKED_KEY="$db:revoked" # libimsauth's set, private to this run
export WAF_RATE_LOGIN_PER_MINUTE=1000 # the rate-limit instance below tests the limit
export WAF_TOKEN_EPCSCF_WSS_URL="wss://epcscf.home1.net:7443/ws" WAF_TOKEN_WWSF="https://wwsf.home1.net"

"$bin" --check-config >"$tmp/check.txt" || fail "--check-config: $(cat "$tmp/check.txt")"
grep -q "^configuration ok" "$tmp/check.txt" || fail "--check-config output"
if grep -q "$admin_secret" "$tmp/check.txt"; then fail "--check-config shows a secret"; fi
set +e
WAF_PUBLIC_LISTEN=0.0.0.0:1 "$bin" --check-config >/dev/null 2>"$tmp/err.txt"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "not a loopback address" "$tmp/err.txt" || fail "plain HTTP off loopback: $rc"

# A service client, as the admin API will create it: HMAC of its secret under the server key.
mac=$(printf %s "$svc_secret" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$(cat "$tmp/server-key.hex")" | sed 's/^.*= //')
psql "$url" -qc "INSERT INTO oauth_clients (client_id, name, client_type, grant_types, scopes, audience, secret_mac)
  VALUES ('svc', 'service', 'confidential', '{client_credentials}', '{ims.lease,metrics}', 'epcscf.home1.net', '\\x$mac')"
# A pool of three temporary identities (pooled grants, tests/js/waf-ims.test.mjs).
"$imspool" --db "$url" pool create anon --realm home1.net --lease-ttl 3600 --quarantine 0 >/dev/null
"$imspool" --db "$url" member add anon --impu 'sip:anon-{1..3}@home1.net' \
    --impi 'anon-{1..3}@home1.net' >/dev/null
cbport=$(free_port) # the portal's callback the browser test serves
psql "$url" -qc "INSERT INTO oauth_clients (client_id, name, client_type, grant_types, redirect_uris, scopes, audience)
  VALUES ('wic', 'browser', 'public', '{authorization_code,refresh_token}',
          '{https://wwsf.home1.net/cb,http://127.0.0.1:$cbport/cb}',
          '{ims,openid}', 'epcscf.home1.net')"
psql "$url" -qc "INSERT INTO oauth_clients (client_id, name, client_type, grant_types, redirect_uris, scopes, audience, allow_pool)
  VALUES ('wic-pool', 'browser with a pool', 'public', '{authorization_code,refresh_token}',
          '{http://127.0.0.1:$cbport/cb,http://127.0.0.1:9/cb?x=1}', '{ims}', 'epcscf.home1.net', 'anon')"
# Local web users with scrypt passwords (PHC, as waf_password_hash writes them): carol is
# mapped to a subscription, dave is not (pooled at wic-pool), erin gets locked out.
phc() {
    python3 -c 'import base64, hashlib, os, sys
salt = os.urandom(16)
h = hashlib.scrypt(sys.argv[1].encode(), salt=salt, n=1 << 14, r=8, p=1, dklen=32, maxmem=64 << 20)
b = lambda x: base64.b64encode(x).decode().rstrip("=")
print("$scrypt$ln=14,r=8,p=1$" + b(salt) + "$" + b(h))' "$1"
}
for u in carol dave erin; do
    psql "$url" -q -v u="$u" -v h="$(phc "pw-of-$u")" <<'SQL'
WITH w AS (INSERT INTO web_identities (issuer, subject, display_name) VALUES ('local', :'u', :'u') RETURNING id)
INSERT INTO password_credentials (web_identity_id, username, password_hash) SELECT id, :'u', :'h' FROM w;
SQL
done
psql "$url" -q <<'SQL'
WITH s AS (INSERT INTO ims_subscriptions (impi, realm) VALUES ('carol@home1.net', 'home1.net') RETURNING id),
     i AS (INSERT INTO impus (subscription_id, uri) SELECT id, 'sip:carol@home1.net' FROM s RETURNING id, subscription_id)
INSERT INTO identity_mappings (web_identity_id, subscription_id, default_impu_id)
  SELECT w.id, i.subscription_id, i.id FROM i, web_identities w WHERE w.issuer = 'local' AND w.subject = 'carol';
SQL

# IMS identities: a pool of three temporary identities; a portal client that exchanges
# assertions signed by its own key (JWKS registered) and may lease from the pool; a
# second portal without a pool; a web user of the portal mapped to a subscription with
# a barred IMPU; an eP-CSCF client allowed the lease API.
(cd "$src/tests/js" && node --input-type=module -e "
import { generateKeyPair, exportJWK } from 'jose';
import { writeFileSync } from 'node:fs';
for (const name of ['portal', 'portal2']) {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const pub = { ...(await exportJWK(publicKey)), kid: name + '-1', use: 'sig', alg: 'ES256' };
  const priv = { ...(await exportJWK(privateKey)), kid: name + '-1', alg: 'ES256' };
  writeFileSync('$tmp/' + name + '.jwk', JSON.stringify(priv));
  writeFileSync('$tmp/' + name + '.jwks', JSON.stringify({ keys: [pub] }));
}") || fail "portal keys"
psql "$url" -q -v jwks="$(cat "$tmp/portal.jwks")" -v jwks2="$(cat "$tmp/portal2.jwks")" <<'SQL'
INSERT INTO oauth_clients (client_id, name, client_type, grant_types, scopes, audience, jwks, allow_pool)
  VALUES ('portal', 'portal', 'confidential', '{urn:ietf:params:oauth:grant-type:token-exchange}',
          '{ims,openid}', 'epcscf.home1.net', :'jwks'::jsonb, 'anon');
INSERT INTO oauth_clients (client_id, name, client_type, grant_types, scopes, audience, jwks)
  VALUES ('portal2', 'portal without a pool', 'confidential',
          '{urn:ietf:params:oauth:grant-type:token-exchange,client_credentials}', '{ims}',
          'epcscf.home1.net', :'jwks2'::jsonb);
WITH w AS (INSERT INTO web_identities (issuer, subject, display_name) VALUES ('portal', 'alice', 'Alice') RETURNING id),
     s AS (INSERT INTO ims_subscriptions (impi, realm) VALUES ('alice@home1.net', 'home1.net') RETURNING id),
     i AS (INSERT INTO impus (subscription_id, uri, barred)
           SELECT s.id, u.uri, u.barred FROM s, (VALUES ('sip:alice@home1.net', false),
             ('tel:+15551234', false), ('sip:alice-old@home1.net', true)) u(uri, barred) RETURNING id, uri)
INSERT INTO identity_mappings (web_identity_id, subscription_id, default_impu_id)
  SELECT w.id, s.id, i.id FROM w, s, i WHERE i.uri = 'sip:alice@home1.net';
INSERT INTO web_identities (issuer, subject, status) VALUES ('portal', 'mallory', 'disabled');
SQL
psql "$url" -qc "INSERT INTO oauth_clients (client_id, name, client_type, grant_types, scopes, audience, secret_mac)
  VALUES ('epcscf', 'eP-CSCF', 'confidential', '{client_credentials}', '{ims.lease}', 'epcscf.home1.net', '\\x$mac')"

"$bin" >"$tmp/waf.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || fail "waf-server exited at start"
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$aport/healthz" >/dev/null || fail "admin listener"
[ "$(psql "$url" -Atc "SELECT count(*) FROM signing_keys WHERE state = 'active'")" = 1 ] \
    || fail "no active signing key created"
[ "$(psql "$url" -Atc "SELECT count(*) FROM oauth_clients WHERE client_id = 'admin' AND secret_mac IS NOT NULL")" = 1 ] \
    || fail "bootstrap admin client missing"
before=$(psql "$url" -Atc "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM (SELECT client_id, secret_mac, jwks, scopes, grant_types FROM oauth_clients) t")

WAF_URL="http://127.0.0.1:$port" ADMIN_SECRET="$admin_secret" SVC_SECRET="$svc_secret" \
    REVOKED_KEY="$WAF_REDIS_REVOKED_KEY" node --test "$src/tests/js/waf.test.mjs" || fail "tests/js/waf.test.mjs"
WAF_URL="http://127.0.0.1:$port" SVC_SECRET="$svc_secret" DATABASE_URL="$url" KEYS_DIR="$tmp" \
    IMSAUTH_VERIFY="$build/validator-lib/imsauth-verify" REVOKED_KEY="$WAF_REDIS_REVOKED_KEY" \
    node --test --test-concurrency=1 "$src/tests/js/waf-ims.test.mjs" || fail "tests/js/waf-ims.test.mjs"
WAF_URL="http://127.0.0.1:$port" SVC_SECRET="$svc_secret" DATABASE_URL="$url" CB_PORT="$cbport" \
    node --test --test-concurrency=1 "$src/tests/js/waf-browser.test.mjs" || fail "tests/js/waf-browser.test.mjs"

after=$(psql "$url" -Atc "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM (SELECT client_id, secret_mac, jwks, scopes, grant_types FROM oauth_clients) t")
[ "$before" = "$after" ] || fail "bad requests changed oauth_clients"
if grep -qE "$admin_secret|$svc_secret|eyJ" "$tmp/waf.log"; then fail "a secret or token in the log"; fi

# A second instance on the same database whose Redis is gone: up, but not ready.
p2=$(free_port)
a2=$(free_port)
WAF_PUBLIC_LISTEN="127.0.0.1:$p2" WAF_ADMIN_LISTEN="127.0.0.1:$a2" WAF_REDIS_URL=redis://127.0.0.1:1 \
    "$bin" >"$tmp/waf2.log" 2>&1 &
pid2=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$p2/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
code=$(curl -s -o "$tmp/ready2.json" -w '%{http_code}' "http://127.0.0.1:$p2/readyz")
# Rate limits fail open without Redis: tokens are still issued.
tcode=$(curl -s -o /dev/null -w '%{http_code}' -u "svc:$svc_secret" \
    -d grant_type=client_credentials "http://127.0.0.1:$p2/token")
[ "$tcode" = 200 ] || fail "token without Redis: $tcode"
kill -TERM "$pid2"
wait "$pid2" || fail "second instance exit status"
[ "$code" = 503 ] && grep -q '"redis":"unreachable"' "$tmp/ready2.json" \
    && grep -q '"database":"ok"' "$tmp/ready2.json" || fail "readyz without Redis: $code $(cat "$tmp/ready2.json")"

# A second instance of the same deployment (same issuer, database and Redis), as behind
# a load balancer: both publish the same keys, a token issued by one is active at the
# other, and a revocation at the other is seen by the first.
p4=$(free_port)
a4=$(free_port)
WAF_PUBLIC_LISTEN="127.0.0.1:$p4" WAF_ADMIN_LISTEN="127.0.0.1:$a4" "$bin" >"$tmp/waf4.log" 2>&1 &
pid4=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$p4/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
tok=$(curl -s -u "svc:$svc_secret" -d grant_type=client_credentials "http://127.0.0.1:$port/token" |
    sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[ -n "$tok" ] || fail "no token from the first instance"
at_b=$(curl -s -u "admin:$admin_secret" --data-urlencode "token=$tok" "http://127.0.0.1:$p4/introspect")
[[ $at_b == *'"active":true'* ]] || fail "a token of instance A is not active at B: $at_b"
rc_b=$(curl -s -o /dev/null -w '%{http_code}' -u "svc:$svc_secret" --data-urlencode "token=$tok" \
    "http://127.0.0.1:$p4/revoke")
at_a=$(curl -s -u "admin:$admin_secret" --data-urlencode "token=$tok" "http://127.0.0.1:$port/introspect")
jwks_b=$(curl -s "http://127.0.0.1:$p4/jwks.json")
# An authorization code issued at A is redeemed at B (codes live in PostgreSQL).
ver=$(openssl rand -hex 32)
chal=$(printf %s "$ver" | openssl dgst -sha256 -binary | basenc --base64url | tr -d '=')
q2="response_type=code&client_id=wic&redirect_uri=https%3A%2F%2Fwwsf.home1.net%2Fcb&scope=ims&code_challenge_method=S256&code_challenge=$chal"
csrf=$(curl -s -c "$tmp/cj" "http://127.0.0.1:$port/authorize?$q2" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p')
loc=$(curl -s -b "$tmp/cj" -o /dev/null -w '%{redirect_url}' \
    -d "$q2&csrf=$csrf&username=carol&password=pw-of-carol" "http://127.0.0.1:$port/authorize")
code=$(sed -n 's/.*[?&]code=\([^&]*\).*/\1/p' <<<"$loc")
red_b=$(curl -s -d "grant_type=authorization_code&client_id=wic&code=$code&code_verifier=$ver" \
    --data-urlencode "redirect_uri=https://wwsf.home1.net/cb" "http://127.0.0.1:$p4/token")
kill -TERM "$pid4"
wait "$pid4" || fail "instance B exit status"
[ "$rc_b" = 200 ] && [ "$at_a" = '{"active":false}' ] \
    || fail "a revocation at B is not seen at A: $rc_b $at_a"
[ "$jwks_b" = "$(curl -s "http://127.0.0.1:$port/jwks.json")" ] && [[ $jwks_b == *'"kid"'* ]] \
    || fail "the two instances publish different keys"
[ -n "$code" ] && [[ $red_b == *'"impi":"carol@home1.net"'* ]] \
    || fail "a code of instance A is not redeemed at B: $loc $red_b"

# A third instance with a limit of 3 token requests per client, 5 per IP and 2 logins per
# IP a minute.
p3=$(free_port)
a3=$(free_port)
WAF_PUBLIC_LISTEN="127.0.0.1:$p3" WAF_ADMIN_LISTEN="127.0.0.1:$a3" WAF_ISSUER="http://127.0.0.1:$p3" \
    WAF_RATE_TOKEN_PER_MINUTE=3 WAF_RATE_TOKEN_PER_IP_PER_MINUTE=5 WAF_RATE_LOGIN_PER_MINUTE=2 \
    "$bin" >"$tmp/waf3.log" 2>&1 &
pid3=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$p3/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
codes=
for _ in 1 2 3 4; do
    codes="$codes $(curl -s -o "$tmp/rl.json" -D "$tmp/rl.h" -w '%{http_code}' -u "svc:wrong" \
        -d grant_type=client_credentials "http://127.0.0.1:$p3/token")"
done
other=$(curl -s -o /dev/null -w '%{http_code}' -u "admin:$admin_secret" \
    -d grant_type=client_credentials "http://127.0.0.1:$p3/token")
# The sixth token request from this IP exceeds the per-IP limit (5), whatever the client.
ipcode=$(curl -s -o /dev/null -w '%{http_code}' -u "admin:$admin_secret" \
    -d grant_type=client_credentials "http://127.0.0.1:$p3/token")
# Login attempts per IP (2 a minute here): the third gets 429 with Retry-After.
q='response_type=code&client_id=wic&redirect_uri=https%3A%2F%2Fwwsf.home1.net%2Fcb&scope=ims&code_challenge_method=S256&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'
lcodes=
for _ in 1 2 3; do
    lcodes="$lcodes $(curl -s -o /dev/null -D "$tmp/login.h" -w '%{http_code}' \
        -d "$q&username=carol&password=wrong&csrf=x" "http://127.0.0.1:$p3/authorize")"
done
kill -TERM "$pid3"
wait "$pid3" || fail "third instance exit status"
[ "$codes" = " 401 401 401 429" ] || fail "rate limit: $codes"
grep -qi '^retry-after: [1-9]' "$tmp/rl.h" && grep -q '"error":"slow_down"' "$tmp/rl.json" \
    || fail "429 without Retry-After or error: $(cat "$tmp/rl.h" "$tmp/rl.json")"
[ "$other" = 200 ] || fail "another client limited too: $other"
[ "$ipcode" = 429 ] || fail "per-IP token limit: $ipcode"
[ "$lcodes" = " 400 400 429" ] && grep -qi '^retry-after: [1-9]' "$tmp/login.h" \
    || fail "login rate limit: $lcodes"

# A fifth instance on HTTPS (the only way off loopback): TLS 1.2 and 1.3 only, no plain
# HTTP on its port, tokens over TLS.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$tmp/tls.key" -out "$tmp/tls.crt" 2>/dev/null
WAF_PUBLIC_LISTEN=0.0.0.0:1 WAF_PUBLIC_TLS_CERT="$tmp/tls.crt" WAF_PUBLIC_TLS_KEY="$tmp/tls.key" \
    "$bin" --check-config >/dev/null || fail "HTTPS off loopback refused by --check-config"
p5=$(free_port)
a5=$(free_port)
WAF_PUBLIC_LISTEN="127.0.0.1:$p5" WAF_ADMIN_LISTEN="127.0.0.1:$a5" WAF_ISSUER="https://127.0.0.1:$p5" \
    WAF_PUBLIC_TLS_CERT="$tmp/tls.crt" WAF_PUBLIC_TLS_KEY="$tmp/tls.key" "$bin" >"$tmp/waf5.log" 2>&1 &
pid5=$!
for _ in $(seq 1 100); do
    curl -fsS --cacert "$tmp/tls.crt" "https://127.0.0.1:$p5/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
tls_tok=$(curl -s --cacert "$tmp/tls.crt" -u "svc:$svc_secret" -d grant_type=client_credentials \
    "https://127.0.0.1:$p5/token")
plain=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p5/healthz" || true)
v12=$(openssl s_client -connect "127.0.0.1:$p5" -tls1_2 </dev/null 2>&1 | grep -c '^New, TLSv1.2, Cipher is [A-Z]' || true)
v13=$(openssl s_client -connect "127.0.0.1:$p5" -tls1_3 </dev/null 2>&1 | grep -c '^New, TLSv1.3, Cipher is [A-Z]' || true)
v11=$(openssl s_client -connect "127.0.0.1:$p5" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' </dev/null 2>&1 |
    grep -c '^New, TLSv1.1, Cipher is [A-Z]' || true)
kill -TERM "$pid5"
wait "$pid5" || fail "TLS instance exit status"
[[ $tls_tok == *'"access_token":"ey'* ]] || fail "no token over TLS: $tls_tok"
[ "$plain" != 200 ] || fail "plain HTTP answered on the TLS port"
[ "$v12" -ge 1 ] && [ "$v13" -ge 1 ] && [ "$v11" = 0 ] || fail "TLS versions: 1.2=$v12 1.3=$v13 1.1=$v11"

kill -TERM "$pid"
set +e
wait "$pid"; rc=$?
set -e
pid=
[ $rc -eq 0 ] || fail "waf-server exit status $rc after SIGTERM"
[ "$(psql "$url" -Atc "SELECT count(*) FROM revoked_tokens")" -ge 1 ] || fail "no revocation recorded"
echo "waf-server: start-up, metadata, JWKS, every grant, IMS identities and pools, browser flow, introspection, revocation, readiness, metrics, rate limits, two instances, TLS, shutdown: ok"
