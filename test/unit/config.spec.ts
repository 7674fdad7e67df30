import { generateKeyPairSync } from 'node:crypto';
import { ConfigError, DEV_JWT_SECRET, loadConfig, parseRedisUrl } from '../../src/config/config';

const fails = (env: Record<string, string>) => {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).message;
  }
  throw new Error('expected a ConfigError');
};

describe('configuration', () => {
  it('has the SPEC defaults with an empty environment', () => {
    const { config, warnings } = loadConfig({});
    expect(config).toMatchObject({
      port: 8080,
      host: '0.0.0.0',
      redisPrefix: 'rt',
      allowedOrigins: [],
      heartbeatIntervalMs: 30000,
      idleTimeoutMs: 0,
      maxMessageBytes: 65536,
      rateLimitPerSec: 20,
      rateLimitBurst: 40,
      maxConnections: 0,
      maxConnectionsPerUser: 0,
      slowConsumerBytes: 1048576,
      shutdownGraceMs: 10000,
      logLevel: 'info',
      historySize: 10000,
      historyTtlMs: 86_400_000,
      maxPublishBytes: 65_536,
      maxJsonDepth: 32,
      redisTimeoutMs: 5000,
    });
    expect(config.redisUrl).toBeUndefined();
    expect(config.turn).toBeUndefined();
    expect(config.nodeId).toMatch(/-\d+$/);
    expect(config.jwt).toMatchObject({ usingDevKey: true, signingSecret: DEV_JWT_SECRET });
    expect(config.jwt.keys.map((k) => k.algorithms)).toEqual([['HS256', 'HS384', 'HS512']]);
    expect(warnings.join()).toMatch(/JWT_SECRET is not set/);
  });

  it('reads PRESENCE_GRACE_MS: 5000 by default, 0 for "at once", and names a value that is not whole milliseconds', () => {
    expect(loadConfig({}).config.presenceGraceMs).toBe(5000);
    expect(loadConfig({ PRESENCE_GRACE_MS: '0' }).config.presenceGraceMs).toBe(0);
    expect(loadConfig({ PRESENCE_GRACE_MS: '30000' }).config.presenceGraceMs).toBe(30000);
    for (const bad of ['-1', '1.5', 'soon']) expect(fails({ PRESENCE_GRACE_MS: bad })).toMatch(/^PRESENCE_GRACE_MS: must be a whole number between 0 and 3600000/);
    expect(fails({ PRESENCE_GRACE_MS: '3600001' })).toMatch(/^PRESENCE_GRACE_MS: must be at most 3600000/);
  });

  it('refuses a PEM key given as JWT_SECRET (it would be an HMAC secret anyone with the public key knows)', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(fails({ JWT_SECRET: pem })).toMatch(/^JWT_SECRET: holds a PEM key; a public key goes in JWT_PUBLIC_KEY/);
    expect(fails({ JWT_SECRET: 'x'.repeat(40), JWT_SECRET_PREVIOUS: pem })).toMatch(/^JWT_SECRET_PREVIOUS: holds a PEM key/);
  });

  it('refuses a standalone REDIS_URL that would not parse, in one line and without its password', () => {
    for (const url of ['redis://:hunter2@127.0.0.1:notaport/0', 'redis://:hunter2@127.0.0.1:99999/0', 'redis://:%ZZhunter2@h:6379/0', 'redis://:hunter2@h:6379/zero']) {
      const message = fails({ REDIS_URL: url });
      expect(message).toMatch(/^REDIS_URL: must be redis:\/\//);
      expect(message).not.toContain('hunter2');
    }
  });

  it('refuses to start in production without a key', () => {
    expect(fails({ NODE_ENV: 'production' })).toMatch(/^JWT_SECRET: is required when NODE_ENV=production/);
  });

  it('accepts a secret without warnings when it is long enough, and warns when it is short', () => {
    expect(loadConfig({ JWT_SECRET: 'x'.repeat(32) }).warnings).toEqual([]);
    expect(loadConfig({ JWT_SECRET: 'short' }).warnings.join()).toMatch(/shorter than 32 bytes/);
  });

  it('builds a KeyObject once, so verification never re-derives the key', () => {
    const { config } = loadConfig({ JWT_SECRET: 'x'.repeat(32) });
    expect(config.jwt.keys.map((k) => k.key.type)).toEqual(['secret']);
  });

  it('takes an RSA or EC public key (also with literal \\n) and picks the algorithms from it (an EC key: its curve\'s one)', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(loadConfig({ JWT_PUBLIC_KEY: rsa.replace(/\n/g, '\\n') }).config.jwt.keys[0].algorithms).toEqual(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(loadConfig({ JWT_PUBLIC_KEY: ec }).config.jwt).toMatchObject({ keys: [{ algorithms: ['ES256'] }], usingDevKey: false });
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(loadConfig({ JWT_PUBLIC_KEY: p384 }).config.jwt.keys[0].algorithms).toEqual(['ES384']);
    const ed = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(loadConfig({ JWT_PUBLIC_KEY: ed }).config.jwt.keys[0].algorithms).toEqual(['EdDSA']);
    const pss = generateKeyPairSync('rsa-pss', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(fails({ JWT_PUBLIC_KEY: pss })).toMatch(/key type rsa-pss is not supported/);
    expect(fails({ JWT_PUBLIC_KEY: ec, JWT_SECRET: 'x'.repeat(32) })).toMatch(/^JWT_PUBLIC_KEY: set one key source, not JWT_SECRET and JWT_PUBLIC_KEY/);
  });

  it('takes keys from an identity provider, one key source at a time, and warns when audience or issuer go unchecked', () => {
    const oidc = loadConfig({ OIDC_ISSUER_URL: 'https://sso.example.com/realms/main', JWT_AUDIENCE: 'realtime-gateway', NODE_ENV: 'production' });
    expect(oidc.config.jwt).toMatchObject({ keys: [], oidcIssuerUrl: 'https://sso.example.com/realms/main', usingDevKey: false });
    expect(oidc.warnings).toEqual([]);
    expect(loadConfig({ OIDC_ISSUER_URL: 'https://sso.example.com/realms/main' }).warnings.join()).toMatch(/without JWT_AUDIENCE/);
    const jwks = loadConfig({ JWT_JWKS_URL: 'https://idp.example.com/jwks.json', JWT_AUDIENCE: 'gw' });
    expect(jwks.config.jwt.jwksUrl).toBe('https://idp.example.com/jwks.json');
    expect(jwks.warnings.join()).toMatch(/without JWT_ISSUER/);
    expect(fails({ JWT_JWKS_URL: 'https://idp.example.com/jwks.json', OIDC_ISSUER_URL: 'https://idp.example.com' })).toMatch(/^OIDC_ISSUER_URL: set one key source, not JWT_JWKS_URL and OIDC_ISSUER_URL/);
    expect(fails({ JWT_JWKS_URL: 'ftp://idp.example.com/jwks' })).toMatch(/^JWT_JWKS_URL: must be an http\(s\) URL/);
    expect(fails({ OIDC_ISSUER_URL: 'https://user:pw@idp.example.com' })).not.toMatch(/pw/);
    expect(fails({ JWT_SECRET_PREVIOUS: 'x'.repeat(40) })).toMatch(/^JWT_SECRET_PREVIOUS: .*needs JWT_SECRET/);
  });

  it('reads the subscribe proxy: URL, a secret it requires, a bounded timeout; never showing the secret', () => {
    const secret = 'proxy-secret-0123456789abcdef0123456789';
    const url = 'https://auth.internal/realtime/subscribe';
    expect(loadConfig({}).config.subscribeProxy).toBeUndefined();
    expect(loadConfig({ SUBSCRIBE_PROXY_URL: url, PROXY_SECRET: secret }).config.subscribeProxy).toEqual({ url, secret, timeoutMs: 2000 });
    expect(loadConfig({ SUBSCRIBE_PROXY_URL: url, PROXY_SECRET: secret, PROXY_TIMEOUT_MS: '300' }).config.subscribeProxy?.timeoutMs).toBe(300);
    // Set, but no namespace asks it: said at start, since nothing else would show it is unused.
    expect(loadConfig({ SUBSCRIBE_PROXY_URL: url, PROXY_SECRET: secret }).warnings.join('\n')).toContain('no namespace has subscribe mode proxy');
    expect(loadConfig({ PROXY_SECRET: secret }).warnings.join('\n')).toContain('PROXY_SECRET is set without SUBSCRIBE_PROXY_URL');
    expect(fails({ SUBSCRIBE_PROXY_URL: url })).toMatch(/^PROXY_SECRET: is required when SUBSCRIBE_PROXY_URL is set/);
    expect(fails({ SUBSCRIBE_PROXY_URL: 'ftp://auth.internal/x', PROXY_SECRET: secret })).toMatch(/^SUBSCRIBE_PROXY_URL: must be an http\(s\) URL without credentials/);
    expect(fails({ SUBSCRIBE_PROXY_URL: 'https://u:hunter2@auth.internal/x', PROXY_SECRET: secret })).not.toContain('hunter2');
    const newline = fails({ SUBSCRIBE_PROXY_URL: url, PROXY_SECRET: `${secret}\n` });
    expect(newline).toMatch(/^PROXY_SECRET: must be printable ASCII without spaces or line breaks/);
    expect(newline).not.toContain(secret);
    expect(fails({ SUBSCRIBE_PROXY_URL: url, PROXY_SECRET: secret, PROXY_TIMEOUT_MS: '10' })).toMatch(/^PROXY_TIMEOUT_MS: must be at least 50 \(got "10"\)/);
    expect(fails({ SUBSCRIBE_PROXY_URL: url, PROXY_SECRET: secret, PROXY_TIMEOUT_MS: '60000' })).toMatch(/^PROXY_TIMEOUT_MS: must be at most 30000/);
    // Every bad one at once, one line each.
    expect(fails({ SUBSCRIBE_PROXY_URL: 'nope', PROXY_SECRET: 'has space', PROXY_TIMEOUT_MS: 'x' }).split('\n').map((line) => line.split(':')[0])).toEqual([
      'SUBSCRIBE_PROXY_URL',
      'PROXY_SECRET',
      'PROXY_TIMEOUT_MS',
    ]);
  });

  it('reads the webhook settings: a URL, a whsec_ secret it requires, known event types, a bounded retry window; never showing the URL or secret', () => {
    const url = 'https://backend.internal/realtime/events';
    const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
    expect(loadConfig({}).config.webhook).toBeUndefined();
    expect(loadConfig({ WEBHOOK_URL: url, WEBHOOK_SECRET: secret }).config.webhook).toEqual({
      url,
      secret,
      events: ['channel.occupied', 'channel.vacated', 'presence.joined', 'presence.left', 'user.disconnected', 'token.revoked', 'alert.unacknowledged'],
      retryMs: 3_600_000,
      queueMax: 100_000,
    });
    const chosen = loadConfig({ WEBHOOK_URL: url, WEBHOOK_SECRET: secret, WEBHOOK_EVENTS: 'connection.opened, connection.closed', WEBHOOK_RETRY_S: '1', WEBHOOK_QUEUE_MAX: '10' }).config.webhook;
    expect(chosen).toMatchObject({ events: ['connection.opened', 'connection.closed'], retryMs: 1000, queueMax: 10 });
    expect(fails({ WEBHOOK_URL: url })).toMatch(/^WEBHOOK_SECRET: is required when WEBHOOK_URL is set: .*whsec_\$\(openssl rand -base64 32\)$/);
    for (const bad of ['not-whsec', `whsec_${Buffer.alloc(8).toString('base64')}`, `${secret}\n`, 'whsec_!!!!']) {
      const message = fails({ WEBHOOK_URL: url, WEBHOOK_SECRET: bad });
      expect(message).toMatch(/^WEBHOOK_SECRET: must be whsec_ followed by the base64 of 24 to 64 random bytes/);
      expect(message.split('\n')).toHaveLength(1);
      expect(message).not.toContain(bad.trim());
    }
    expect(fails({ WEBHOOK_URL: url, WEBHOOK_SECRET: secret, WEBHOOK_EVENTS: 'channel.occupied,room.opened' })).toBe(
      'WEBHOOK_EVENTS: "room.opened" is not an event; valid: channel.occupied, channel.vacated, presence.joined, presence.left, user.disconnected, token.revoked, alert.unacknowledged, connection.opened, connection.closed',
    );
    expect(fails({ WEBHOOK_URL: url, WEBHOOK_SECRET: secret, WEBHOOK_RETRY_S: '0' })).toBe('WEBHOOK_RETRY_S: must be at least 1 (got "0")');
    const hidden = fails({ WEBHOOK_URL: 'ftp://user:hunter2@backend.internal/x', WEBHOOK_SECRET: secret });
    expect(hidden).toMatch(/^WEBHOOK_URL: must be an http\(s\) URL without credentials/);
    expect(hidden).not.toContain('hunter2');
    // Every bad one at once, one line each.
    expect(fails({ WEBHOOK_URL: 'nope', WEBHOOK_EVENTS: 'x', WEBHOOK_RETRY_S: 'y' }).split('\n').map((line) => line.split(':')[0])).toEqual(['WEBHOOK_URL', 'WEBHOOK_RETRY_S']);
    expect(fails({ WEBHOOK_URL: url, WEBHOOK_EVENTS: 'x' }).split('\n').map((line) => line.split(':')[0])).toEqual(['WEBHOOK_EVENTS', 'WEBHOOK_SECRET']);
    expect(loadConfig({ WEBHOOK_SECRET: secret }).warnings.join('\n')).toContain('WEBHOOK_SECRET is set without WEBHOOK_URL');
  });

  it('reads TRUSTED_PROXIES as addresses and CIDRs, and names a bad entry', () => {
    expect(loadConfig({ TRUSTED_PROXIES: '10.0.0.0/8, 192.168.1.7 ,fd00::/8' }).config.trustedProxies).toEqual([
      { address: '10.0.0.0', prefix: 8, family: 'ipv4' },
      { address: '192.168.1.7', prefix: 32, family: 'ipv4' },
      { address: 'fd00::', prefix: 8, family: 'ipv6' },
    ]);
    expect(fails({ TRUSTED_PROXIES: '10.0.0.0/33' })).toMatch(/^TRUSTED_PROXIES: "10.0.0.0\/33" is not an address or CIDR/);
    expect(fails({ TRUSTED_PROXIES: 'proxy.internal' })).toMatch(/^TRUSTED_PROXIES:/);
  });

  it('reads the three REDIS_URL forms and names the expected ones on a mistake, never echoing a password', () => {
    expect(loadConfig({ REDIS_URL: 'redis://:pw@127.0.0.1:6379/2' }).config.redis).toEqual({ kind: 'standalone', url: 'redis://:pw@127.0.0.1:6379/2' });
    expect(loadConfig({ REDIS_URL: 'redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/3?sentinelPassword=other' }).config.redis).toEqual({
      kind: 'sentinel',
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: '10.0.0.2', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      name: 'mymaster',
      db: 3,
      username: undefined,
      password: 's3cret',
      sentinelPassword: 'other',
      tls: false,
    });
    expect(parseRedisUrl('rediss+cluster://u:pw@h1:7000,h2:7001')).toEqual({ kind: 'cluster', nodes: [{ host: 'h1', port: 7000 }, { host: 'h2', port: 7001 }], username: 'u', password: 'pw', tls: true });
    expect(loadConfig({ REDIS_URL: 'redis+cluster://h1:7000' }).config.redis).toMatchObject({ kind: 'cluster', nodes: [{ host: 'h1', port: 7000 }] });
    expect(fails({ REDIS_URL: 'redis+cluster://h1:7000', REDIS_MIN_REPLICAS_ACK: '1' })).toMatch(/^REDIS_MIN_REPLICAS_ACK: is not supported with redis\+cluster/);
    for (const bad of ['redis+sentinel://:hunter2@h1:26379', 'redis+sentinel://:hunter2@h1:99999/m', 'mysql://:hunter2@h', 'redis+sentinel://:hunter2@h1/m/x/y']) {
      const message = fails({ REDIS_URL: bad });
      expect(message).toMatch(/^REDIS_URL: must be redis:\/\/host:6379\/0/);
      expect(message).not.toContain('hunter2');
    }
  });

  it.each([
    ['PORT', '70000', /^PORT: must be at most 65535 \(got "70000"\)/],
    ['PORT', '8o8o', /^PORT: must be a whole number/],
    ['MAX_MESSAGE_BYTES', '1.5', /^MAX_MESSAGE_BYTES: must be a whole number/],
    ['RATE_LIMIT_BURST', '0', /^RATE_LIMIT_BURST: must be at least 1/],
    ['LOG_LEVEL', 'verbose', /^LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent/],
    ['REDIS_PREFIX', 'has space', /^REDIS_PREFIX:/],
    ['NODE_ID', 'a/b', /^NODE_ID:/],
    ['ALLOWED_ORIGINS', 'https://ok.example, https://x.example/path', /^ALLOWED_ORIGINS: "https:\/\/x.example\/path"/],
  ])('names %s when its value %s is bad', (name, value, message) => {
    expect(fails({ [name]: value })).toMatch(message);
  });

  it('reads TURN_SECRET, TURN_URLS and TURN_TTL_S (default 3600) together, and names the missing half of a TURN setup', () => {
    const turnSecret = 'coturn-static-auth-secret-value';
    expect(loadConfig({ TURN_SECRET: turnSecret, TURN_URLS: ' turn:turn.example.com:3478?transport=udp, turns:turn.example.com:5349?transport=tcp,stun:[2001:db8::1]:3478 ' }).config.turn).toEqual({
      secret: turnSecret,
      urls: ['turn:turn.example.com:3478?transport=udp', 'turns:turn.example.com:5349?transport=tcp', 'stun:[2001:db8::1]:3478'],
      ttlSeconds: 3600,
    });
    expect(loadConfig({ TURN_SECRET: turnSecret, TURN_URLS: 'turn:10.0.0.5', TURN_TTL_S: '86400' }).config.turn?.ttlSeconds).toBe(86400);
    expect(loadConfig({ TURN_TTL_S: '600' }).config.turn).toBeUndefined();
    const urlsMissing = fails({ TURN_SECRET: turnSecret });
    expect(urlsMissing).toMatch(/^TURN_URLS: is required when TURN_SECRET is set/);
    expect(urlsMissing).not.toContain(turnSecret);
    expect(fails({ TURN_URLS: 'turn:turn.example.com' })).toMatch(/^TURN_SECRET: is required when TURN_URLS is set/);
    // Only stun: URLs: allowed (a STUN-only setup), but the credentials then serve nothing.
    expect(loadConfig({ TURN_SECRET: turnSecret, TURN_URLS: 'stun:stun.example.com' }).warnings.join()).toMatch(/TURN_URLS lists no turn: or turns: URL/);
    expect(loadConfig({ JWT_SECRET: 'x'.repeat(32), TURN_SECRET: turnSecret, TURN_URLS: 'turn:turn.example.com' }).warnings).toEqual([]);
  });

  it.each([
    ['turn://turn.example.com:3478', /^TURN_URLS: "turn:\/\/turn.example.com:3478" is not a turn:, turns: or stun: URL .*\(no \/\/ after the scheme\)$/],
    ['https://turn.example.com', /^TURN_URLS: "https:\/\/turn.example.com" is not a turn:, turns: or stun: URL/],
    ['turn:turn.example.com, turn.example.com:3478', /^TURN_URLS: "turn.example.com:3478" is not a turn:, turns: or stun: URL/],
    ['turn:turn.example.com:70000', /^TURN_URLS: "turn:turn.example.com:70000" has a port outside 1-65535$/],
    ['turn:turn.example.com?transport=sctp', /^TURN_URLS: "turn:turn.example.com\?transport=sctp" is not/],
    ['stun:stun.example.com?transport=udp', /^TURN_URLS: "stun:stun.example.com\?transport=udp" is a stun: URL with \?transport=/],
    ['turn:[2001:db8::zz]:3478', /^TURN_URLS: "turn:\[2001:db8::zz\]:3478" is not/],
    ['turn:[1:2]:3478', /^TURN_URLS: "turn:\[1:2\]:3478" has a malformed IPv6 address$/],
    [' , ', /^TURN_URLS: must list at least one turn:, turns: or stun: URL$/],
  ])('refuses TURN_URLS=%j in one line naming the bad entry', (urls, message) => {
    expect(fails({ TURN_SECRET: 'coturn-secret', TURN_URLS: urls })).toMatch(message);
  });

  it('refuses a TURN URL with a user and password without showing them, and reports every bad TURN variable at once', () => {
    const message = fails({ TURN_SECRET: 'coturn-secret', TURN_URLS: 'turn:alice:hunter2@turn.example.com', TURN_TTL_S: '30' });
    expect(message.split('\n')).toEqual([
      'TURN_URLS: holds an @: a TURN URL carries no user or password (they come from TURN_SECRET)',
      'TURN_TTL_S: must be at least 60 (got "30")',
    ]);
    expect(message).not.toContain('hunter2');
    expect(fails({ TURN_TTL_S: '604801' })).toMatch(/^TURN_TTL_S: must be at most 604800/);
    expect(fails({ TURN_TTL_S: '1h' })).toMatch(/^TURN_TTL_S: must be a whole number between 60 and 604800/);
  });

  it('never shows the value of a secret-bearing variable', () => {
    expect(fails({ REDIS_URL: 'http://user:pa55word@host' })).not.toContain('pa55word');
  });

  it('treats blank values as unset and normalises origins', () => {
    const { config } = loadConfig({ PORT: ' ', ALLOWED_ORIGINS: 'https://App.Example.com , http://localhost:3000', LOG_LEVEL: 'DEBUG' });
    expect(config.port).toBe(8080);
    expect(config.allowedOrigins).toEqual(['https://app.example.com', 'http://localhost:3000']);
    expect(config.logLevel).toBe('debug');
  });
});
