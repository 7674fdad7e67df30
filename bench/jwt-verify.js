// JWT verification cost: jsonwebtoken with a string HS256 secret (what @nestjs/jwt passes through when it is
// configured with a string), jsonwebtoken with a pre-built KeyObject, and the gateway's JwtVerifier (its own
// JwsVerifier over the KeyObject).
'use strict';
require('reflect-metadata');
const jwt = require('jsonwebtoken');
const { JwtService } = require('@nestjs/jwt');
const { loadConfig } = require('../dist/config/config');
const { JwtVerifier } = require('../dist/auth/jwt-verifier');
const { createLogger } = require('../dist/logging/logger');

const secret = 'bench-secret-bench-secret-bench-secret!!';
const token = jwt.sign({ sub: 'u1', role: 'authority' }, secret, { expiresIn: 3600 });

function rate(name, fn, ms = 1500) {
  for (let i = 0; i < 2000; i++) fn(); // warm-up
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(ms) * 1_000_000n;
  while (process.hrtime.bigint() < end) {
    for (let i = 0; i < 100; i++) fn();
    n += 100;
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { name, perSec: n / seconds, usPerOp: (seconds * 1e6) / n };
}

/** A JWKS served on a free loopback port, for the verifier's identity-provider path. */
async function serveJwks(jwks) {
  const server = require('node:http').createServer((req, res) => res.end(JSON.stringify(jwks)));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}/jwks.json`, close: () => server.close() };
}

async function remoteVerifier(jwksUrl) {
  const { config } = loadConfig({ JWT_JWKS_URL: jwksUrl });
  const verifier = new JwtVerifier(new JwtService({}), config, createLogger('silent', 'bench'));
  verifier.onModuleInit();
  while (!verifier.isReady()) await new Promise((resolve) => setTimeout(resolve, 5));
  return verifier;
}

async function main() {
  const { config } = loadConfig({ JWT_SECRET: secret });
  const verifier = new JwtVerifier(new JwtService({ secret }), config, createLogger('silent', 'bench'));
  const nestString = new JwtService({ secret });
  const nestKey = new JwtService({ secret: config.jwt.keys[0].key, verifyOptions: { algorithms: ['HS256'] } });
  const previous = 'bench-previous-bench-previous-bench-previous';
  const rotating = new JwtVerifier(new JwtService({}), loadConfig({ JWT_SECRET: 'bench-current-bench-current-bench-current!', JWT_SECRET_PREVIOUS: previous }).config, createLogger('silent', 'bench'));
  const tokenOfPrevious = jwt.sign({ sub: 'u1', role: 'authority' }, previous, { expiresIn: 3600 });

  const { generateKeyPairSync } = require('node:crypto');
  const claims = { sub: 'u1', role: 'authority' };
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ed = generateKeyPairSync('ed25519');
  const pem = new JwtVerifier(new JwtService({}), loadConfig({ JWT_PUBLIC_KEY: rsa.publicKey.export({ type: 'spki', format: 'pem' }) }).config, createLogger('silent', 'bench'));
  const rs256 = jwt.sign(claims, rsa.privateKey, { algorithm: 'RS256', keyid: 'rsa', expiresIn: 3600 });
  const es256 = jwt.sign(claims, ec.privateKey, { algorithm: 'ES256', keyid: 'ec', expiresIn: 3600 });
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const edInput = `${b64({ alg: 'EdDSA', typ: 'JWT', kid: 'ed' })}.${b64({ ...claims, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  const eddsa = `${edInput}.${require('node:crypto').sign(null, Buffer.from(edInput), ed.privateKey).toString('base64url')}`;
  const jwk = (key, kid) => ({ ...key.export({ format: 'jwk' }), kid, use: 'sig' });
  const jwks = await serveJwks({ keys: [jwk(rsa.publicKey, 'rsa'), jwk(ec.publicKey, 'ec'), jwk(ed.publicKey, 'ed')] });
  const remote = await remoteVerifier(jwks.url);
  jwks.close();

  const results = [
    rate('jsonwebtoken, string secret', () => jwt.verify(token, secret, { algorithms: ['HS256'] })),
    rate('@nestjs/jwt, string secret (stock setup)', () => nestString.verify(token)),
    rate('@nestjs/jwt, KeyObject', () => nestKey.verify(token)),
    rate('gateway JwtVerifier', () => verifier.verify(token)),
    rate('gateway, HS256 of JWT_SECRET_PREVIOUS', () => rotating.verify(tokenOfPrevious)),
    rate('jsonwebtoken, RS256 KeyObject', () => jwt.verify(rs256, rsa.publicKey, { algorithms: ['RS256'] })),
    rate('gateway, RS256 PEM', () => pem.verify(rs256)),
    rate('gateway, RS256 from a JWKS (by kid)', () => remote.verify(rs256)),
    rate('gateway, ES256 from a JWKS (by kid)', () => remote.verify(es256)),
    rate('gateway, EdDSA from a JWKS (by kid)', () => remote.verify(eddsa)),
  ];
  remote.onModuleDestroy();
  return results;
}

module.exports = { main };
if (require.main === module) {
  main().then((results) => {
    for (const r of results) console.log(`${r.name.padEnd(48)} ${Math.round(r.perSec).toString().padStart(8)}/s  ${r.usPerOp.toFixed(1)} µs/op`);
  });
}
