// The comparison server of bench/waf_bench: oidc-provider (npm, 9.x) issuing RFC 9068 JWT
// access tokens signed with ES256 for the client_credentials grant, as a node cluster with
// one worker per core (the primary only hands connections to the workers).
//
// usage: OIDC_PORT=N OIDC_CLIENT_SECRET=S [OIDC_CLIENT_ID=bench] [OIDC_WORKERS=nproc] \
//          node oidc-provider-server.mjs
// Prints "oidc-provider: ready ..." once every worker listens; SIGTERM stops all of them.
//
// Configuration choices (what a deployment issuing the same tokens as waf-server would use):
// - one ES256 (P-256) signing key, made by the primary so that every worker signs with it;
// - the client authenticates with client_secret_basic, may use client_credentials only,
//   and may ask for the scopes "ims.lease metrics";
// - resource indicators: every client_credentials request gets the resource server
//   https://epcscf.home1.net/ (the default resource; "aud" epcscf.home1.net) whose tokens are JWTs (accessTokenFormat
//   'jwt') signed ES256 and valid 600 s, like waf-server's default lifetime;
// - the default in-memory adapter (JWT access tokens are not stored by oidc-provider);
// - development interactions off, NODE_ENV=production recommended (set by waf_bench).
import cluster from 'node:cluster';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const clientId = process.env.OIDC_CLIENT_ID || 'bench';
const clientSecret = process.env.OIDC_CLIENT_SECRET;
const workers = Number(process.env.OIDC_WORKERS || availableParallelism());
if (!Number.isInteger(port) || port <= 0 || !clientSecret || !(workers >= 1)) {
  console.error('usage: OIDC_PORT=N OIDC_CLIENT_SECRET=S [OIDC_WORKERS=N] node oidc-provider-server.mjs');
  process.exit(2);
}
const RESOURCE = 'https://epcscf.home1.net/'; // resource indicators are absolute URIs
const AUDIENCE = 'epcscf.home1.net'; // the "aud" of waf-server's bench client
const SCOPES = 'ims.lease metrics';

if (cluster.isPrimary) {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = {
    ...privateKey.export({ format: 'jwk' }),
    alg: 'ES256',
    use: 'sig',
    kid: randomBytes(8).toString('hex'),
  };
  const env = {
    OIDC_SIGNING_JWK: JSON.stringify(jwk),
    OIDC_COOKIE_KEY: randomBytes(32).toString('hex'),
  };
  let listening = 0;
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork(env);
  cluster.on('listening', () => {
    if (++listening === workers) {
      console.log(`oidc-provider: ready on http://127.0.0.1:${port} (${workers} workers, ES256 JWT access tokens)`);
    }
  });
  cluster.on('exit', (w, code, signal) => {
    if (!stopping) {
      console.error(`oidc-provider: worker ${w.process.pid} exited (${signal || code}); stopping`);
      stop(1);
    }
  });
  const stop = (code) => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    process.exitCode = code;
    setTimeout(() => process.exit(code), 2000).unref();
  };
  process.on('SIGTERM', () => stop(0));
  process.on('SIGINT', () => stop(0));
} else {
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: SCOPES,
        id_token_signed_response_alg: 'ES256',
      },
    ],
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    jwks: { keys: [JSON.parse(process.env.OIDC_SIGNING_JWK)] },
    cookies: { keys: [process.env.OIDC_COOKIE_KEY] },
    scopes: ['openid', 'offline_access', ...SCOPES.split(' ')],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => {
          if (resource !== RESOURCE) throw new Provider.errors.InvalidTarget();
          return {
            scope: SCOPES,
            audience: AUDIENCE,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
    ttl: { ClientCredentials: 600 },
  });
  provider.on('server_error', (ctx, err) => console.error('oidc-provider: server_error', err));
  provider.listen(port, '127.0.0.1');
  process.on('SIGTERM', () => process.exit(0));
}
