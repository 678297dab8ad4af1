// A real OpenID Connect issuer for the workload-identity tests: panva's oidc-provider
// (installed by `make oidc-issuer` into var/oidc-issuer) on a loopback port, serving
// discovery and JWKS over HTTP and issuing signed JWT access tokens by client_credentials
// (the resourceIndicators feature with accessTokenFormat 'jwt'): iss, aud (the resource
// asked for), sub (the client id), jti, iat, exp, plus each client's own claims, as a CI
// platform puts `repository` and `ref` into its job tokens.
//
// Environment: ISSUER_MODULES (above), ISSUER_PORT (0: any free port), ISSUER_KEYS (a JSON list of private JWKs,
// the first signs), ISSUER_CLIENTS (a JSON list of {client_id, client_secret, claims}).
// Prints "listening <port>" once it accepts connections. Key rotation: the test starts it
// again on the same port with other keys.
import http from 'node:http';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

// ISSUER_MODULES: the directory `make oidc-issuer` installed into (ES modules ignore NODE_PATH).
const resolve = createRequire(`${process.env.ISSUER_MODULES}/`).resolve;
const { default: Provider } = await import(pathToFileURL(resolve('oidc-provider')).href);

const port = Number(process.env.ISSUER_PORT || 0);
const keys = JSON.parse(process.env.ISSUER_KEYS);
const clients = JSON.parse(process.env.ISSUER_CLIENTS);
const claimsOf = Object.fromEntries(clients.map((c) => [c.client_id, c.claims || {}]));

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const actual = server.address().port;
  const provider = new Provider(`http://127.0.0.1:${actual}`, {
    jwks: { keys },
    clients: clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
      id_token_signed_response_alg: keys[0].alg,
    })),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => ({
          scope: 'exchange',
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: keys[0].alg } },
        }),
      },
    },
    extraTokenClaims: (ctx, token) => claimsOf[token.clientId] || {},
  });
  provider.proxy = false;
  server.on('request', provider.callback());
  process.stdout.write(`listening ${actual}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
