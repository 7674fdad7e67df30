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

function main() {
  const { config } = loadConfig({ JWT_SECRET: secret });
  const verifier = new JwtVerifier(new JwtService({ secret }), config, createLogger('silent', 'bench'));
  const nestString = new JwtService({ secret });
  const nestKey = new JwtService({ secret: config.jwt.keys[0].key, verifyOptions: { algorithms: ['HS256'] } });
  const results = [
    rate('jsonwebtoken, string secret', () => jwt.verify(token, secret, { algorithms: ['HS256'] })),
    rate('@nestjs/jwt, string secret (stock setup)', () => nestString.verify(token)),
    rate('@nestjs/jwt, KeyObject', () => nestKey.verify(token)),
    rate('gateway JwtVerifier', () => verifier.verify(token)),
  ];
  return results;
}

module.exports = { main };
if (require.main === module) {
  for (const r of main()) console.log(`${r.name.padEnd(48)} ${Math.round(r.perSec).toString().padStart(8)}/s  ${r.usPerOp.toFixed(1)} µs/op`);
}
