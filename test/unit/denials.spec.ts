import pino from 'pino';
import { loadConfig } from '../../src/config/config';
import { LocalDenialStore } from '../../src/presence/denial-store';
import { Denials } from '../../src/presence/denials';
import { LocalPresence } from '../../src/presence/local-presence';

/** What a revocation covers (SPEC v3 POST /api/revoke), asked as the door asks: synchronously, per principal. */
describe('Denials.revoked', () => {
  const { config } = loadConfig({ JWT_SECRET: 'a-test-secret-of-at-least-thirty-two-bytes' });
  const denials = () => new Denials(new LocalDenialStore(), new LocalPresence(config), pino({ level: 'silent' }));
  const now = Date.now();
  const hour = now + 3_600_000;

  it('covers a jti, whoever holds it, and nothing else', () => {
    const d = denials();
    d.rememberRevocation({ jti: 'phone' }, hour);
    expect(d.revoked({ sub: 'ann', jti: 'phone', iat: 1 })).toBe(true);
    expect(d.revoked({ sub: 'bob', jti: 'phone' })).toBe(true);
    expect(d.revoked({ sub: 'ann', jti: 'laptop', iat: 1 })).toBe(false);
    expect(d.revoked({ sub: 'ann' })).toBe(false);
  });

  it("covers a user's tokens issued before the time, and those without iat", () => {
    const d = denials();
    d.rememberRevocation({ user: 'ann', issuedBefore: 1000 }, hour);
    expect(d.revoked({ sub: 'ann', iat: 999 })).toBe(true);
    expect(d.revoked({ sub: 'ann' })).toBe(true);
    expect(d.revoked({ sub: 'ann', iat: 1000 })).toBe(false);
    expect(d.revoked({ sub: 'ann ', iat: 999 })).toBe(false); // the sub exactly
  });

  it('lapses at until', () => {
    const d = denials();
    d.rememberRevocation({ jti: 'tab' }, now + 1000);
    expect(d.revoked({ sub: 'ann', jti: 'tab' }, now + 999)).toBe(true);
    expect(d.revoked({ sub: 'ann', jti: 'tab' }, now + 1000)).toBe(false);
  });

  it('announces each new logout, not one a later one covers; a wider, longer one outlives a later, shorter one', () => {
    const d = denials();
    const told: number[] = [];
    d.onRevoked(() => told.push(1));
    for (let t = 1; t <= 50; t++) d.rememberRevocation({ user: 'ann', issuedBefore: 1000 + t }, hour + t);
    expect(told.length).toBe(50);
    d.rememberRevocation({ user: 'ann', issuedBefore: 1010 }, hour); // covered by a later one: no news
    expect(told.length).toBe(50);
    expect(d.revoked({ sub: 'ann', iat: 1049 })).toBe(true);
    expect(d.revoked({ sub: 'ann', iat: 1050 })).toBe(false);
    // A later cut that holds for a shorter time does not cut the earlier one short.
    d.rememberRevocation({ user: 'ann', issuedBefore: 5000 }, now + 1000);
    expect(d.revoked({ sub: 'ann', iat: 4000 }, now + 999)).toBe(true);
    expect(d.revoked({ sub: 'ann', iat: 4000 }, now + 1001)).toBe(false);
    expect(d.revoked({ sub: 'ann', iat: 1049 }, now + 1001)).toBe(true);
  });
});
