import { JwtService } from '@nestjs/jwt';
import type { IncomingMessage } from 'node:http';
import pino from 'pino';
import { MemoryBroker } from '../../src/channels/memory-broker';
import { JwtVerifier } from '../../src/auth/jwt-verifier';
import { loadConfig, type AppConfig } from '../../src/config/config';
import { createLogger } from '../../src/logging/logger';
import type { Connection } from '../../src/connection/connection';
import { ConnectionManager } from '../../src/connection/connection-manager';
import { Metrics } from '../../src/metrics/metrics';
import { LocalDenialStore } from '../../src/presence/denial-store';
import { Denials } from '../../src/presence/denials';
import { LocalPresence } from '../../src/presence/local-presence';
import { AuthenticateGuard } from '../../src/upgrade/guards/authenticate.guard';
import { CapacityGuard } from '../../src/upgrade/guards/capacity.guard';
import { OriginGuard } from '../../src/upgrade/guards/origin.guard';
import { ResumeGuard } from '../../src/upgrade/guards/resume.guard';
import { RolesGuard } from '../../src/upgrade/guards/roles.guard';
import type { UpgradeContext } from '../../src/upgrade/upgrade-guard';
import { UpgradeRefusal } from '../../src/upgrade/upgrade-refusal';
import { TEST_SECRET, token, unsignedToken } from '../support/tokens';

function context(overrides: Partial<UpgradeContext> & { headers?: Record<string, string>; search?: string } = {}): UpgradeContext {
  const { headers = {}, search = '', ...rest } = overrides;
  return {
    connectionId: 'c1',
    req: { headers } as unknown as IncomingMessage,
    gateway: 'alerts',
    pattern: '/api/alerts/subscribe',
    params: {},
    query: new URLSearchParams(search),
    protocols: [],
    allowedRoles: [],
    attributes: {},
    releases: [],
    ...rest,
  };
}

function refusalOf(run: () => unknown): Pick<UpgradeRefusal, 'status' | 'error' | 'headers'> & { message: string } {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(UpgradeRefusal);
    const r = error as UpgradeRefusal;
    return { status: r.status, error: r.error, headers: r.headers, message: r.message };
  }
  throw new Error('expected a refusal');
}

function verifier(config: AppConfig): JwtVerifier {
  const service = new JwtService({ secret: config.jwt.signingSecret });
  return new JwtVerifier(service, config, createLogger('silent', 'test'));
}

describe('OriginGuard', () => {
  const guard = new OriginGuard(loadConfig({ ALLOWED_ORIGINS: 'https://app.example.com' }).config);
  it('lets listed origins and origin-less (non-browser) clients through', () => {
    expect(() => guard.canUpgrade(context({ headers: { origin: 'https://app.example.com' } }))).not.toThrow();
    expect(() => guard.canUpgrade(context())).not.toThrow();
  });
  it('refuses other origins with 403 forbidden_origin', () => {
    expect(refusalOf(() => guard.canUpgrade(context({ headers: { origin: 'https://evil.example' } })))).toMatchObject({ status: 403, error: 'forbidden_origin' });
  });
  it('allows everything when the list is empty', () => {
    const open = new OriginGuard(loadConfig({}).config);
    expect(() => open.canUpgrade(context({ headers: { origin: 'https://any' } }))).not.toThrow();
  });
});

describe('AuthenticateGuard', () => {
  const config = loadConfig({ JWT_SECRET: TEST_SECRET }).config;
  const bans = new Denials(new LocalDenialStore(), new LocalPresence(config), pino({ level: 'silent' }));
  const guard = new AuthenticateGuard(verifier(config), bans);

  it('refuses a banned user with 403 banned and Retry-After, and lets them in once the ban ends', () => {
    bans.rememberBan('u-banned', Date.now() + 90_000);
    const ctx = context({ search: `token=${token({ sub: 'u-banned', role: 'admin' })}` });
    const refusal = refusalOf(() => guard.canUpgrade(ctx));
    expect(refusal).toMatchObject({ status: 403, error: 'banned' });
    expect(Number(refusal.headers['Retry-After'])).toBeGreaterThanOrEqual(89);
    expect(bans.bannedUntil('u-banned', Date.now() + 91_000)).toBeUndefined();
    expect(ctx.user).toBeUndefined();
  });

  it('sets the verified user', () => {
    const ctx = context({ search: `token=${token({ sub: 'u1', role: 'admin', email: 'u1@x' })}` });
    guard.canUpgrade(ctx);
    expect(ctx.user).toMatchObject({ sub: 'u1', role: 'admin', email: 'u1@x', exp: expect.any(Number) });
  });

  it.each([
    ['missing', context(), 'token_missing'],
    ['expired', context({ search: `token=${token({}, { ttl: -1 })}` }), 'token_expired'],
    ['unsigned', context({ search: `token=${unsignedToken()}` }), 'token_invalid'],
    ['wrongly signed', context({ protocols: ['bearer', token({}, { secret: 'y'.repeat(40) })] }), 'token_invalid'],
  ])('refuses a %s token with 401 and WWW-Authenticate', (_what, ctx, error) => {
    const r = refusalOf(() => guard.canUpgrade(ctx));
    expect(r).toMatchObject({ status: 401, error, headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' } });
    expect(ctx.user).toBeUndefined();
  });
});

describe('RolesGuard', () => {
  const guard = new RolesGuard();
  it('checks the role against @AllowRoles', () => {
    const user = { sub: 'a', role: 'authority' };
    expect(() => guard.canUpgrade(context({ user, allowedRoles: ['authority', 'admin'] }))).not.toThrow();
    expect(() => guard.canUpgrade(context({ user, allowedRoles: [] }))).not.toThrow();
    expect(refusalOf(() => guard.canUpgrade(context({ user, allowedRoles: ['admin'] })))).toMatchObject({
      status: 403,
      error: 'forbidden_role',
      message: 'role "authority" may not connect to /api/alerts/subscribe (allowed: admin)',
    });
  });
  it('is a programming error without an authenticated user', () => {
    expect(() => guard.canUpgrade(context({ allowedRoles: ['admin'] }))).toThrow(/after AuthenticateGuard/);
  });
});

describe('CapacityGuard', () => {
  const config = loadConfig({ MAX_CONNECTIONS: '2', MAX_CONNECTIONS_PER_USER: '1' }).config;
  const manager = new ConnectionManager(config, new Metrics(), pino({ level: 'silent' }));
  afterAll(() => manager.onModuleDestroy());
  const guard = new CapacityGuard(config, manager, new LocalPresence(config));
  const fake = (id: string, sub: string) => ({ id, gateway: 'alerts', user: { sub, role: 'r' } }) as unknown as Connection;
  const refusal = (ctx: UpgradeContext) =>
    Promise.resolve()
      .then(() => guard.canUpgrade(ctx))
      .then(
      () => undefined,
      (error: UpgradeRefusal) => ({ status: error.status, error: error.error, headers: error.headers }),
    );

  it('admits under the limits, answers 429 per user and 503 at_capacity per node', async () => {
    const user = (sub: string) => context({ user: { sub, role: 'r' } });
    const first = user('a');
    expect(await refusal(first)).toBeUndefined();
    expect(first.releases).toHaveLength(1); // the user's slot, given back when the connection closes
    expect(await refusal(user('a'))).toMatchObject({ status: 429, error: 'too_many_connections' });
    first.releases[0]();
    expect(await refusal(user('a'))).toBeUndefined();
    manager.registry.add(fake('1', 'a'));
    manager.registry.add(fake('2', 'b'));
    expect(await refusal(user('c'))).toMatchObject({ status: 503, error: 'at_capacity', headers: { 'Retry-After': '5' } });
  });
});

describe('ResumeGuard', () => {
  const broker = new MemoryBroker(loadConfig({}).config, new Metrics(), pino({ level: 'silent' }));
  afterAll(() => broker.onModuleDestroy());
  const guard = new ResumeGuard(broker);
  it('hands a valid since and epoch to the gateway and refuses malformed ones with 400', () => {
    const ctx = context({ search: 'since=1700000000000-3&epoch=ab12&user_since=1700000000001-0' });
    guard.canUpgrade(ctx);
    expect(ctx.attributes.resume).toEqual({ main: { id: '1700000000000-3', epoch: 'ab12' }, user: { id: '1700000000001-0', epoch: undefined } });
    expect(refusalOf(() => guard.canUpgrade(context({ search: 'since=abc' })))).toMatchObject({ status: 400, error: 'bad_request' });
    expect(refusalOf(() => guard.canUpgrade(context({ search: 'since=1-0&epoch=a%20b' })))).toMatchObject({ status: 400, error: 'bad_request' });
    expect(refusalOf(() => guard.canUpgrade(context({ search: 'epoch=ab12' })))).toMatchObject({ status: 400, error: 'bad_request' });
    const none = context();
    guard.canUpgrade(none);
    expect(none.attributes).toEqual({});
  });
});
