// A real OpenID Connect provider (oidc-provider) for the hub's OIDC tests and local trials.
// Never for production: accounts log in by name alone, with no password.
//
//   node provider.mjs CONFIG.json [PORT]   serve on 127.0.0.1:PORT (default $PORT, else a free
//                                          port); issuer http://127.0.0.1:PORT; prints one line
//                                          `ready <issuer>` on stdout once listening
//   node provider.mjs keygen [ALG...]      print {"keys": [...]} for the config: a fresh
//                                          signing key per ALG (default RS256 ES256 EdDSA)
//
// CONFIG.json (every part optional):
//   {
//     "keys": [{ "kid": "k1", "alg": "RS256", "pem": "-----BEGIN ... PRIVATE KEY-----..." }],
//         signing keys, the first of an alg signs; fresh ones (RS256, ES256, EdDSA) when absent
//     "resources": { "urn:hub:idva": { "alg": "RS256", "ttl": 600, "scope": "hub", "audience": "..." } },
//         resource servers (agency services): JWT access tokens with aud = audience (default:
//         the resource indicator), signed with alg (default RS256), valid ttl seconds
//     "clients": [ oidc-provider client metadata, plus
//         "hub_resources": [indicators the client may get tokens for; the only one is the default],
//         "hub_agency": "idva", "hub_roles": ["caseworker"]   (claims of its client_credentials tokens) ],
//     "accounts": { "alice": { "hub_agency": "idva", "hub_roles": ["caseworker"] } },
//         staff who log in at the authorization endpoint; their hub_agency and hub_roles are in
//         the ID token (scope openid) and in access tokens issued for them
//     "ttl": { "AuthorizationCode": 60, "IdToken": 3600, ... }   oidc-provider's ttl settings
//   }
//
// Browser login, scriptable over plain HTTP: the authorization endpoint redirects to
// /interaction/<uid>; POST `account=<name>` there (form encoded, with the cookies the provider
// set) logs that account in, and a second POST at the consent step grants what the client
// asked for; each answer redirects back to the authorization endpoint, which ends at the
// client's redirect_uri with code and state. GET /interaction/<uid> shows the form.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { Provider, errors } from 'oidc-provider';

const HUB_CLAIMS = ['hub_agency', 'hub_roles'];
const DEFAULT_ALGS = ['RS256', 'ES256', 'EdDSA'];

function generateKey(alg) {
  const kid = `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}`;
  let pair;
  if (alg.startsWith('RS') || alg.startsWith('PS')) {
    pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  } else if (alg === 'ES256') {
    pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  } else if (alg === 'ES384') {
    pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' });
  } else if (alg === 'EdDSA' || alg === 'Ed25519') {
    pair = crypto.generateKeyPairSync('ed25519');
  } else {
    throw new Error(`keygen: no key type for alg ${alg}`);
  }
  // RSA as PKCS#1, the others as PKCS#8: the DER forms JWT libraries load directly.
  const type = pair.privateKey.asymmetricKeyType === 'rsa' ? 'pkcs1' : 'pkcs8';
  return { kid, alg, pem: pair.privateKey.export({ type, format: 'pem' }) };
}

function privateJwk({ kid, alg, pem }) {
  const jwk = crypto.createPrivateKey(pem).export({ format: 'jwk' });
  return { ...jwk, kid, alg, use: 'sig' };
}

function hubClaims(source) {
  const claims = {};
  for (const name of HUB_CLAIMS) {
    if (source?.[name] !== undefined) claims[name] = source[name];
  }
  return claims;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 64 * 1024) reject(new Error('form too large'));
    });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function configuration(config) {
  const accounts = config.accounts ?? {};
  const resources = config.resources ?? {};
  const keys = config.keys?.length ? config.keys : DEFAULT_ALGS.map(generateKey);
  return {
    clients: config.clients ?? [],
    jwks: { keys: keys.map(privateJwk) },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    // Explicit lifetimes (oidc-provider nags about its defaults); a resource's own ttl wins.
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? 600,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? 600,
      AuthorizationCode: 60,
      IdToken: 600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      ...config.ttl,
    },
    pkce: { required: () => true },
    claims: { openid: ['sub', ...HUB_CLAIMS] },
    // The hub reads roles and agency from the ID token, not from the userinfo endpoint.
    conformIdTokenClaims: false,
    async findAccount(_ctx, id) {
      const account = accounts[id];
      if (!account) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, ...hubClaims(account) }) };
    },
    extraClientMetadata: {
      properties: ['hub_agency', 'hub_roles', 'hub_resources'],
      validator(_ctx, key, value) {
        if (value === undefined) return;
        const strings = Array.isArray(value) && value.every((v) => typeof v === 'string');
        if (key === 'hub_agency' ? typeof value !== 'string' : !strings) {
          throw new errors.InvalidClientMetadata(`${key} has the wrong type`);
        }
      },
    },
    async extraTokenClaims(ctx, token) {
      if (token.accountId) return hubClaims(accounts[token.accountId]);
      return hubClaims(ctx.oidc.client);
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        async defaultResource(_ctx, client, oneOf) {
          if (oneOf) return oneOf;
          const mine = client.hub_resources ?? [];
          return mine.length === 1 ? mine[0] : undefined;
        },
        useGrantedResource: async () => true,
        async getResourceServerInfo(_ctx, indicator, client) {
          const server = resources[indicator];
          if (!server || !(client.hub_resources ?? []).includes(indicator)) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: server.scope ?? 'hub',
            audience: server.audience ?? indicator,
            accessTokenTTL: server.ttl ?? 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: server.alg ?? 'RS256' } },
          };
        },
      },
    },
  };
}

// The login and consent steps: a form post names the account; no password.
async function interaction(provider, accounts, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, uid } = details;
  if (req.method === 'GET') {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(`<!doctype html><title>${escapeHtml(prompt.name)}</title>
<form method="post" action="/interaction/${escapeHtml(uid)}">
<p>${escapeHtml(params.client_id)} asks to ${escapeHtml(prompt.name)}.</p>
<label>Account <input name="account" autofocus></label> <button>Continue</button></form>`);
    return;
  }
  if (req.method !== 'POST') {
    res.statusCode = 405;
    res.end();
    return;
  }
  const form = new URLSearchParams(await readBody(req));
  if (prompt.name === 'login') {
    const accountId = form.get('account');
    const result = accounts[accountId]
      ? { login: { accountId } }
      : { error: 'access_denied', error_description: 'no such account' };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    const consent = details.grantId ? {} : { grantId };
    await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
    return;
  }
  res.statusCode = 400;
  res.end(`unhandled prompt ${prompt.name}`);
}

async function serve(configPath, port) {
  const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration(config));
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  const handle = provider.callback();
  const accounts = config.accounts ?? {};
  server.on('request', (req, res) => {
    if (!req.url.startsWith('/interaction/')) {
      handle(req, res);
      return;
    }
    interaction(provider, accounts, req, res).catch((err) => {
      res.statusCode = err.statusCode ?? 400;
      res.end(`interaction failed: ${err.message}`);
    });
  });
  console.log(`ready ${issuer}`);
}

const [command, ...rest] = process.argv.slice(2);
if (command === 'keygen') {
  const algs = rest.length ? rest : DEFAULT_ALGS;
  console.log(JSON.stringify({ keys: algs.map(generateKey) }, null, 2));
} else if (command) {
  await serve(command, Number(rest[0] ?? process.env.PORT ?? 0));
} else {
  console.error('usage: node provider.mjs CONFIG.json [PORT] | node provider.mjs keygen [ALG...]');
  process.exit(2);
}
