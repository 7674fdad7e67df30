import { createECDH, createPublicKey, createSecretKey, KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { z } from 'zod';
import { DEFAULT_EVENT_TYPES, EVENT_TYPES, type EventType } from './event-types';
import { loadNamespaces, type NamespaceConfig } from './namespaces';

/**
 * The documented development key. Tokens signed with it are worthless outside a laptop: the service refuses
 * to start with it when NODE_ENV=production.
 */
export const DEV_JWT_SECRET = 'realtime-gateway-dev-secret-change-me';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** JWS algorithms the gateway verifies (RFC 7518 §3.1, and EdDSA from RFC 8037). `none` is never one. */
export type Algorithm =
  | 'HS256' | 'HS384' | 'HS512'
  | 'RS256' | 'RS384' | 'RS512'
  | 'PS256' | 'PS384' | 'PS512'
  | 'ES256' | 'ES384' | 'ES512'
  | 'EdDSA';

/** A key a token may be verified with, and the algorithms it may be used with (pinned: no algorithm confusion). */
export interface VerificationKey {
  /** Pre-built key: jsonwebtoken re-derives a string key on every verify (~50x slower). */
  key: KeyObject;
  algorithms: readonly Algorithm[];
  /** The JWK `kid`, for keys from a key set. */
  kid?: string;
}

export interface JwtConfig {
  /**
   * Static keys, tried in order: JWT_SECRET then JWT_SECRET_PREVIOUS, or the JWT_PUBLIC_KEY. Empty when the
   * keys come from an identity provider (jwksUrl / oidcIssuerUrl).
   */
  keys: VerificationKey[];
  /** JWT_JWKS_URL: a JWKS document, keys chosen by `kid`. */
  jwksUrl?: string;
  /** OIDC_ISSUER_URL: discovery gives the JWKS URL and the expected `iss`. */
  oidcIssuerUrl?: string;
  issuer?: string;
  audience?: string;
  /** True when no key was configured and the documented dev key is in use. */
  usingDevKey: boolean;
  /** Only for the dev token command; undefined with a public key. */
  signingSecret?: string;
}

/** One TRUSTED_PROXIES entry: a CIDR (an address alone is a /32 or /128). */
export interface TrustedProxy {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** A host and port of a Redis node or Sentinel. */
export interface RedisAddress {
  host: string;
  port: number;
}

/** Where Redis is, from REDIS_URL: a standalone server, a Sentinel group, or a Redis Cluster. */
export type RedisTarget =
  | { kind: 'standalone'; url: string }
  | {
      kind: 'sentinel';
      sentinels: RedisAddress[];
      /** The master name the sentinels monitor. */
      name: string;
      db: number;
      username?: string;
      password?: string;
      /** `?sentinelPassword=`: the sentinels' own password, when they require one. */
      sentinelPassword?: string;
      tls: boolean;
    }
  | { kind: 'cluster'; nodes: RedisAddress[]; username?: string; password?: string; tls: boolean };

const REDIS_URL_FORMS =
  'must be redis://host:6379/0 (or rediss://), redis+sentinel://[:password@]host1:26379,host2:26379/<master>[/<db>], or redis+cluster://[:password@]host1:7000,host2:7001';

function parseAddresses(list: string, defaultPort: number): RedisAddress[] | undefined {
  const addresses: RedisAddress[] = [];
  for (const entry of list.split(',')) {
    // host, host:port, [v6]:port
    const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(entry.trim());
    if (!match) return undefined;
    const port = match[2] === undefined ? defaultPort : Number(match[2]);
    if (port < 1 || port > 65535) return undefined;
    addresses.push({ host: match[1].replace(/^\[|\]$/g, ''), port });
  }
  return addresses.length ? addresses : undefined;
}

/** Parses REDIS_URL; throws ConfigError naming the form it expected (never echoing the value: it may hold a password). */
export function parseRedisUrl(raw: string): RedisTarget {
  const scheme = /^([a-z+]+):\/\//.exec(raw)?.[1];
  if (scheme === 'redis' || scheme === 'rediss') {
    if (!/^rediss?:\/\/\S+$/.test(raw)) throw new ConfigError('REDIS_URL', REDIS_URL_FORMS);
    // Checked here as ioredis would read it, so that a bad port or encoding is one config line, not a stack
    // trace that prints the URL (and its password) from inside ioredis.
    let url: URL;
    try {
      url = new URL(raw);
      if (url.username) decodeURIComponent(url.username);
      if (url.password) decodeURIComponent(url.password);
    } catch {
      throw new ConfigError('REDIS_URL', `${REDIS_URL_FORMS} (it does not parse as a URL: check the port and any %-encoding)`);
    }
    if (!url.hostname) throw new ConfigError('REDIS_URL', `${REDIS_URL_FORMS} (no host)`);
    const db = url.pathname.replace(/^\//, '');
    if (db !== '' && !/^\d{1,2}$/.test(db)) throw new ConfigError('REDIS_URL', `${REDIS_URL_FORMS} (the path is the database number, 0-15)`);
    return { kind: 'standalone', url: raw };
  }
  const sentinel = scheme === 'redis+sentinel' || scheme === 'rediss+sentinel';
  const cluster = scheme === 'redis+cluster' || scheme === 'rediss+cluster';
  if (!sentinel && !cluster) throw new ConfigError('REDIS_URL', REDIS_URL_FORMS);
  const rest = raw.slice(scheme!.length + 3);
  const [beforeQuery, query = ''] = rest.split('?', 2);
  const at = beforeQuery.lastIndexOf('@');
  const auth = at === -1 ? '' : beforeQuery.slice(0, at);
  const [hostsPart, ...path] = (at === -1 ? beforeQuery : beforeQuery.slice(at + 1)).split('/');
  let username: string | undefined;
  let password: string | undefined;
  if (auth) {
    const colon = auth.indexOf(':');
    username = decodeURIComponent(colon === -1 ? auth : auth.slice(0, colon)) || undefined;
    password = colon === -1 ? undefined : decodeURIComponent(auth.slice(colon + 1)) || undefined;
  }
  const tls = scheme!.startsWith('rediss');
  if (cluster) {
    const nodes = parseAddresses(hostsPart, 6379);
    if (!nodes) throw new ConfigError('REDIS_URL', `${REDIS_URL_FORMS} (each seed node is host:port, with a port from 1 to 65535)`);
    if (path.some(Boolean)) throw new ConfigError('REDIS_URL', `${REDIS_URL_FORMS} (Redis Cluster has no database number)`);
    return { kind: 'cluster', nodes, username, password, tls };
  }
  const sentinels = parseAddresses(hostsPart, 26379);
  const [name, dbText = '0', ...extra] = path;
  if (!sentinels || !name || !/^[A-Za-z0-9._-]{1,128}$/.test(name) || !/^\d{1,2}$/.test(dbText) || extra.length) {
    throw new ConfigError('REDIS_URL', `${REDIS_URL_FORMS} (a Sentinel URL names the master after the hosts)`);
  }
  const sentinelPassword = new URLSearchParams(query).get('sentinelPassword') ?? undefined;
  return { kind: 'sentinel', sentinels, name, db: Number(dbText), username, password, sentinelPassword, tls };
}

/** Ephemeral TURN credentials for signaling: the TURN REST API scheme that coturn's `use-auth-secret` checks. */
export interface TurnConfig {
  /** TURN_SECRET: the TURN server's `static-auth-secret`. Never logged, never sent: only HMACs of it leave. */
  secret: string;
  /** TURN_URLS: the `urls` of the one ICE server in the `ice-servers` frame. */
  urls: string[];
  /** TURN_TTL_S: how long a credential is valid from the moment the frame is built. */
  ttlSeconds: number;
}

/**
 * Why one TURN_URLS entry is not a STUN/TURN URI (RFC 7064, RFC 7065), or undefined. Checked at start because
 * a client hands the list to `new RTCPeerConnection({iceServers})`, which throws for the whole list on one bad URL.
 */
export function iceUrlProblem(entry: string): string | undefined {
  // Credentials come from TURN_SECRET; a user:password in the URL would be a long-lived secret sent to every client.
  if (entry.includes('@')) return 'holds an @: a TURN URL carries no user or password (they come from TURN_SECRET)';
  const match = /^(stun|turns?):(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?(\?transport=(?:udp|tcp))?$/.exec(entry);
  const example = 'turn:turn.example.com:3478?transport=udp, turns:turn.example.com:5349?transport=tcp or stun:stun.example.com:3478';
  if (!match) {
    // `turn://host` is the usual slip: these URIs have no authority part.
    const hint = /^[a-z]+:\/\//i.test(entry) ? ' (no // after the scheme)' : '';
    return `"${entry.slice(0, 64)}" is not a turn:, turns: or stun: URL such as ${example}${hint}`;
  }
  if (match[2].startsWith('[') && isIP(match[2].slice(1, -1)) !== 6) return `"${entry.slice(0, 64)}" has a malformed IPv6 address`;
  const port = match[3] === undefined ? undefined : Number(match[3]);
  if (port !== undefined && (port < 1 || port > 65535)) return `"${entry.slice(0, 64)}" has a port outside 1-65535`;
  // RFC 7064: a stun: URI has no query; only RFC 7065's turn: and turns: take ?transport=.
  if (match[1] === 'stun' && match[4]) return `"${entry.slice(0, 64)}" is a stun: URL with ?transport= (only turn: and turns: take one)`;
  return undefined;
}

export interface AppConfig {
  /** The public listener: WebSocket endpoints and health only. */
  port: number;
  host: string;
  /** The internal listener: metrics, health, the server API and its OpenAPI document, /admin, /demo. */
  internalPort: number;
  internalHost: string;
  /** Serve /demo on the internal port (DEMO; default: on unless NODE_ENV=production). */
  demo: boolean;
  nodeEnv: string;
  nodeId: string;
  jwt: JwtConfig;
  /** REDIS_URL as given (cluster mode when set). */
  redisUrl?: string;
  /** REDIS_URL, parsed. */
  redis?: RedisTarget;
  redisPrefix: string;
  allowedOrigins: string[];
  heartbeatIntervalMs: number;
  /** SSE_HEARTBEAT_MS: a comment line on every SSE stream this often (at most 15 s: docs/protocol.md "Heartbeats"), so proxies keep it. */
  sseHeartbeatMs: number;
  idleTimeoutMs: number;
  maxMessageBytes: number;
  rateLimitPerSec: number;
  rateLimitBurst: number;
  maxConnections: number;
  maxConnectionsPerUser: number;
  slowConsumerBytes: number;
  shutdownGraceMs: number;
  /** Closes on SIGTERM are spread over this long, so clients do not all reconnect in the same instant. */
  drainWindowMs: number;
  /** LISTEN_BACKLOG: the public listener's accept queue (the kernel caps it at net.core.somaxconn). */
  listenBacklog: number;
  /** New upgrades accepted per second on this node (0: no limit); beyond it 503 at_capacity. */
  maxUpgradesPerSec: number;
  /** Upgrades per client address per second (0: off); beyond it 429 too_many_upgrades, before any token work. */
  maxUpgradesPerIpPerSec: number;
  /** Peers whose X-Forwarded-For names the client address. */
  trustedProxies: TrustedProxy[];
  logLevel: (typeof LOG_LEVELS)[number];
  /**
   * CONNECTION_LOG_INTERVAL_MS: connects and closes are told at info as one summary line per this long (when any
   * happened); each one's own line is at debug.
   */
  connectionLogIntervalMs: number;
  /** Messages kept per history channel (HISTORY_SIZE, formerly ALERT_HISTORY_SIZE). */
  historySize: number;
  /** A history channel nobody wrote to for this long is dropped, and its epoch with it (0: kept forever). */
  historyTtlMs: number;
  /** Largest published message, in bytes of JSON. */
  maxPublishBytes: number;
  /** Deepest JSON nesting accepted from clients and publishers. */
  maxJsonDepth: number;
  /** A Redis link that answers nothing for this long counts as down. */
  redisTimeoutMs: number;
  /** History publishes wait (WAIT) until this many replicas have them; 0: acknowledged by the master alone. */
  redisMinReplicasAck: number;
  /** Cluster mode: a crashed node's presence entries vanish after about this long. */
  presenceTtlMs: number;
  /**
   * A member whose last connection to a channel ended and who comes back within this long (on any replica) never
   * left: no leave/join frames, no presence.left/presence.joined (0: the leave is told at once).
   */
  presenceGraceMs: number;
  /** The channel namespaces: the built-in set, with CHANNELS_FILE's entries replacing those of the same name. */
  namespaces: NamespaceConfig[];
  /** Channels one `/ws` connection may hold (MAX_SUBSCRIPTIONS_PER_CONNECTION). */
  maxSubscriptionsPerConnection: number;
  /** TURN_SECRET and TURN_URLS both set: signaling connections start with an `ice-servers` frame. */
  turn?: TurnConfig;
  /** The backend asked about `proxy` namespaces (SUBSCRIBE_PROXY_URL); undefined when none is configured. */
  subscribeProxy?: SubscribeProxyConfig;
  /** Events out (WEBHOOK_URL and WEBHOOK_SECRET); undefined when no receiver is configured. */
  webhook?: WebhookConfig;
  /** Web Push (VAPID_PUBLIC_KEY, VAPID_PRIVATE_KEY, VAPID_SUBJECT, all three); undefined when push is off. */
  vapid?: VapidConfig;
}

/** The application server's VAPID identity (RFC 8292). The private key is never logged or shown. */
export interface VapidConfig {
  /** The uncompressed P-256 point, base64url (65 bytes): what browsers take as `applicationServerKey`. */
  publicKey: string;
  /** The P-256 private scalar, base64url (32 bytes). */
  privateKey: string;
  /** `mailto:` or `https:` contact the push services may use (the JWT's `sub`). */
  subject: string;
}

const VAPID_HOW = 'make a pair with `npm run vapid` (or `realtime-gateway vapid`)';

/** The bytes of an unpadded (or padded) base64url string, or undefined when it is not one. */
function base64url(value: string): Buffer | undefined {
  const text = value.trim().replace(/=+$/, '');
  return /^[A-Za-z0-9_-]+$/.test(text) ? Buffer.from(text, 'base64url') : undefined;
}

/** Why VAPID_PUBLIC_KEY / VAPID_PRIVATE_KEY / VAPID_SUBJECT cannot be used, each with its variable. */
export function vapidProblems(publicKey: string | undefined, privateKey: string | undefined, subject: string | undefined): ConfigProblem[] {
  const set = { VAPID_PUBLIC_KEY: publicKey, VAPID_PRIVATE_KEY: privateKey, VAPID_SUBJECT: subject };
  const given = Object.entries(set).filter(([, v]) => v !== undefined);
  if (given.length === 0) return [];
  if (given.length < 3) {
    // Half a setup would serve a key browsers subscribe with, and then never push (or push with no key to show).
    return Object.entries(set)
      .filter(([, v]) => v === undefined)
      .map(([variable]) => ({ variable, problem: `is required when ${given.map(([name]) => name).join(' and ')} ${given.length === 1 ? 'is' : 'are'} set: Web Push needs all three VAPID_* variables (${VAPID_HOW})` }));
  }
  const problems: ConfigProblem[] = [];
  const pub = base64url(publicKey!);
  let point: Buffer | undefined;
  if (!pub || pub.length !== 65 || pub[0] !== 4) {
    problems.push({ variable: 'VAPID_PUBLIC_KEY', problem: `must be an uncompressed P-256 public key, base64url (65 bytes, 87 characters)${pub ? ` (it decodes to ${pub.length} bytes${pub.length === 65 ? ' not starting with 0x04' : ''})` : ''}; ${VAPID_HOW}` });
  } else {
    try {
      createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: pub.subarray(1, 33).toString('base64url'), y: pub.subarray(33).toString('base64url') }, format: 'jwk' });
      point = pub;
    } catch {
      problems.push({ variable: 'VAPID_PUBLIC_KEY', problem: `is not a point on the P-256 curve; ${VAPID_HOW}` });
    }
  }
  const priv = base64url(privateKey!);
  if (!priv || priv.length !== 32) {
    problems.push({ variable: 'VAPID_PRIVATE_KEY', problem: `must be a P-256 private key, base64url (32 bytes, 43 characters)${priv ? ` (it decodes to ${priv.length} bytes)` : ''}; ${VAPID_HOW}` });
  } else if (point) {
    let derived: Buffer | undefined;
    try {
      const ecdh = createECDH('prime256v1');
      ecdh.setPrivateKey(priv);
      derived = ecdh.getPublicKey();
    } catch {
      problems.push({ variable: 'VAPID_PRIVATE_KEY', problem: `is not a valid P-256 private key; ${VAPID_HOW}` });
    }
    // A private key from another pair signs JWTs every push service refuses (403): better not to start.
    if (derived && !derived.equals(point)) problems.push({ variable: 'VAPID_PRIVATE_KEY', problem: 'does not belong to VAPID_PUBLIC_KEY (they are not one pair): set both from the same `npm run vapid` output' });
  }
  let subjectOk = false;
  try {
    const url = new URL(subject!.trim());
    subjectOk = (url.protocol === 'mailto:' && /^[^@\s]+@[^@\s]+$/.test(decodeURIComponent(url.pathname))) || (url.protocol === 'https:' && url.hostname !== '');
  } catch {
    subjectOk = false;
  }
  if (!subjectOk) problems.push({ variable: 'VAPID_SUBJECT', problem: 'must be a mailto: address or an https: URL where push services can reach you, e.g. mailto:ops@example.com' });
  return problems;
}

/** WEBHOOK_URL, WEBHOOK_SECRET, WEBHOOK_EVENTS, WEBHOOK_RETRY_S, WEBHOOK_QUEUE_MAX. URL and secret are never logged or shown. */
export interface WebhookConfig {
  url: string;
  /** `whsec_<base64>` as given (the Standard Webhooks form; the key is the decoded bytes). */
  secret: string;
  /** The event types sent; the others are never queued. */
  events: readonly EventType[];
  /** An event the receiver has not taken this long after it was queued is dropped (counted `dropped`). */
  retryMs: number;
  /** Events waiting at most (cluster: in the whole cluster's queue); beyond it new events are dropped. */
  queueMax: number;
}

/** Why WEBHOOK_SECRET is not a Standard Webhooks secret, or undefined. */
export function webhookSecretProblem(secret: string): string | undefined {
  const form = 'must be whsec_ followed by the base64 of 24 to 64 random bytes, e.g. whsec_$(openssl rand -base64 32)';
  const match = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(secret);
  if (!match || match[1].length % 4 !== 0) return `${form} (a trailing newline from a secret file?)`;
  // The Standard Webhooks specification: keys of 24 to 64 bytes; shorter ones can be brute-forced offline
  // from any one signed request.
  const bytes = Buffer.from(match[1], 'base64').length;
  if (bytes < 24 || bytes > 64) return `${form} (it decodes to ${bytes} bytes)`;
  return undefined;
}

/** SUBSCRIBE_PROXY_URL, PROXY_SECRET, PROXY_TIMEOUT_MS. The secret is never logged or shown. */
export interface SubscribeProxyConfig {
  url: string;
  /** Sent as `Authorization: Bearer <secret>`, so the backend knows the question comes from the gateway. */
  secret: string;
  /** No complete answer within this long refuses the subscribe (503 proxy_unavailable). */
  timeoutMs: number;
}

export interface ConfigProblem {
  variable: string;
  problem: string;
}

/** One or more bad variables: the message has one line per variable, `<VARIABLE>: <problem>`. */
export class ConfigError extends Error {
  readonly problems: ConfigProblem[];

  constructor(variable: string | ConfigProblem[], problem = '') {
    const problems = typeof variable === 'string' ? [{ variable, problem }] : variable;
    super(problems.map((p) => `${p.variable}: ${p.problem}`).join('\n'));
    this.problems = problems;
  }

  /** The first bad variable. */
  get variable(): string {
    return this.problems[0].variable;
  }
}

const blankIsUnset = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);

const int = (min: number, max: number, fallback: number) =>
  z.preprocess(
    (v) => {
      const value = blankIsUnset(v);
      if (value === undefined) return fallback;
      return typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value;
    },
    z
      .number({ message: `must be a whole number between ${min} and ${max}` })
      .int()
      .min(min, `must be at least ${min}`)
      .max(max, `must be at most ${max}`),
  );

const optionalString = z.preprocess(blankIsUnset, z.string().optional());

/** An http(s) URL without credentials or a fragment (its value is never echoed: it may name a private host). */
const httpUrl = (example: string) =>
  z.string().refine((raw) => {
    try {
      const url = new URL(raw);
      return (url.protocol === 'https:' || url.protocol === 'http:') && !url.username && !url.password && !url.hash;
    } catch {
      return false;
    }
  }, `must be an http(s) URL without credentials, e.g. ${example}`);

const envSchema = z.object({
  PORT: int(0, 65535, 8080),
  HOST: z.preprocess(blankIsUnset, z.string().default('0.0.0.0')),
  INTERNAL_PORT: int(0, 65535, 9090),
  INTERNAL_HOST: z.preprocess(blankIsUnset, z.string().default('0.0.0.0')),
  DEMO: z.preprocess(blankIsUnset, z.enum(['on', 'off'], { message: 'must be on or off' }).optional()),
  NODE_ENV: z.preprocess(blankIsUnset, z.string().default('development')),
  NODE_ID: z.preprocess(
    blankIsUnset,
    z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'may only hold letters, digits and . _ : - (at most 128)').optional(),
  ),
  JWT_SECRET: optionalString,
  JWT_SECRET_PREVIOUS: optionalString,
  JWT_PUBLIC_KEY: optionalString,
  JWT_JWKS_URL: z.preprocess(blankIsUnset, httpUrl('a JWKS document such as https://idp.example.com/.well-known/jwks.json').optional()),
  OIDC_ISSUER_URL: z.preprocess(blankIsUnset, httpUrl('an issuer such as https://idp.example.com/realms/main').optional()),
  JWT_ISSUER: optionalString,
  JWT_AUDIENCE: optionalString,
  REDIS_URL: z.preprocess(
    blankIsUnset,
    z
      .string()
      .superRefine((raw, ctx) => {
        try {
          parseRedisUrl(raw);
        } catch (error) {
          if (!(error instanceof ConfigError)) throw error;
          ctx.addIssue({ code: 'custom', message: error.problems[0].problem });
        }
      })
      .optional(),
  ),
  REDIS_PREFIX: z.preprocess(
    blankIsUnset,
    z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'may only hold letters, digits and _ . : - (at most 64)').default('rt'),
  ),
  ALLOWED_ORIGINS: z.preprocess(blankIsUnset, z.string().optional()),
  HEARTBEAT_INTERVAL_MS: int(100, 3_600_000, 30_000),
  SSE_HEARTBEAT_MS: int(100, 15_000, 15_000),
  IDLE_TIMEOUT_MS: int(0, 86_400_000, 0),
  MAX_MESSAGE_BYTES: int(16, 100 * 1024 * 1024, 65_536),
  RATE_LIMIT_PER_SEC: int(1, 1_000_000, 20),
  RATE_LIMIT_BURST: int(1, 1_000_000, 40),
  MAX_CONNECTIONS: int(0, 10_000_000, 0),
  MAX_CONNECTIONS_PER_USER: int(0, 1_000_000, 0),
  SLOW_CONSUMER_BYTES: int(1024, 1024 * 1024 * 1024, 1_048_576),
  SHUTDOWN_GRACE_MS: int(0, 3_600_000, 10_000),
  DRAIN_WINDOW_MS: int(0, 3_600_000, 5_000),
  LISTEN_BACKLOG: int(1, 65_535, 511),
  MAX_UPGRADES_PER_SEC: int(0, 1_000_000, 1_000),
  MAX_UPGRADES_PER_IP_PER_SEC: int(0, 1_000_000, 0),
  TRUSTED_PROXIES: z.preprocess(blankIsUnset, z.string().optional()),
  LOG_LEVEL: z.preprocess(
    (v) => (typeof blankIsUnset(v) === 'string' ? String(v).toLowerCase() : undefined),
    z.enum(LOG_LEVELS, { message: `must be one of ${LOG_LEVELS.join(', ')}` }).default('info'),
  ),
  CONNECTION_LOG_INTERVAL_MS: int(100, 3_600_000, 10_000),
  HISTORY_SIZE: z.preprocess(blankIsUnset, z.unknown().optional()),
  ALERT_HISTORY_SIZE: z.preprocess(blankIsUnset, z.unknown().optional()),
  HISTORY_TTL_MS: int(0, 365 * 86_400_000, 86_400_000),
  MAX_PUBLISH_BYTES: int(64, 64 * 1024 * 1024, 65_536),
  MAX_JSON_DEPTH: int(2, 1000, 32),
  REDIS_TIMEOUT_MS: int(100, 600_000, 5000),
  REDIS_MIN_REPLICAS_ACK: int(0, 16, 0),
  PRESENCE_TTL_MS: int(1000, 600_000, 15_000),
  // At most an hour: a user who left is told as gone at the latest this long after; longer is a session, not a
  // reconnect.
  PRESENCE_GRACE_MS: int(0, 3_600_000, 5000),
  CHANNELS_FILE: optionalString,
  MAX_SUBSCRIPTIONS_PER_CONNECTION: int(1, 100_000, 128),
  TURN_SECRET: optionalString,
  TURN_URLS: z.preprocess(
    blankIsUnset,
    z
      .string()
      .superRefine((raw, ctx) => {
        const entries = commaList(raw);
        // The first bad entry only: one line per variable, as for every other problem.
        const problem = entries.length === 0 ? 'must list at least one turn:, turns: or stun: URL' : entries.map(iceUrlProblem).find(Boolean);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
  ),
  // At least a minute: a credential must outlive ICE gathering on a slow network and some clock skew between
  // the gateway and the TURN server. At most a week: how long a leaked credential can open relays.
  TURN_TTL_S: int(60, 604_800, 3600),
  SUBSCRIBE_PROXY_URL: z.preprocess(blankIsUnset, httpUrl('a backend endpoint such as https://auth.internal/realtime/subscribe').optional()),
  // Sent in a header: a space, a control character or a trailing newline (a secret file written with echo)
  // would make every request invalid, and so every proxy subscribe a 503.
  PROXY_SECRET: z.preprocess(
    blankIsUnset,
    z.string().regex(/^[\x21-\x7e]{1,4096}$/, 'must be printable ASCII without spaces or line breaks (it is sent as Authorization: Bearer <PROXY_SECRET>; a trailing newline from a secret file?)').optional(),
  ),
  // 50 ms: less is shorter than a round trip inside most clusters; 30 s: a client waits this long for its
  // subscribe (or upgrade) to be answered, and longer only holds sockets open for a backend that is down.
  PROXY_TIMEOUT_MS: int(50, 30_000, 2000),
  WEBHOOK_URL: z.preprocess(blankIsUnset, httpUrl('a backend endpoint such as https://backend.internal/realtime/events').optional()),
  WEBHOOK_SECRET: optionalString,
  WEBHOOK_EVENTS: optionalString,
  // At least 1 s (docs/events.md); at most a week: an event older than that describes a world long gone.
  WEBHOOK_RETRY_S: int(1, 604_800, 3600),
  // 100,000 events of ~300 bytes is ~30 MB of Redis (or of this process's memory in embedded mode).
  WEBHOOK_QUEUE_MAX: int(1, 10_000_000, 100_000),
  VAPID_PUBLIC_KEY: optionalString,
  VAPID_PRIVATE_KEY: optionalString,
  VAPID_SUBJECT: optionalString,
});

/** The non-empty entries of a comma list. */
function commaList(raw: string | undefined): string[] {
  return (raw ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
}

/** WEBHOOK_EVENTS: the default set when unset; an unknown name is a start error listing the valid ones. */
function parseEventTypes(raw: string | undefined): readonly EventType[] {
  if (raw === undefined) return DEFAULT_EVENT_TYPES;
  const names = commaList(raw);
  const unknown = names.filter((name) => !(EVENT_TYPES as readonly string[]).includes(name));
  if (unknown.length) {
    const shown = unknown.map((name) => `"${name.slice(0, 64)}"`).join(', ');
    throw new ConfigError('WEBHOOK_EVENTS', `${shown} ${unknown.length === 1 ? 'is not an event' : 'are not events'}; valid: ${EVENT_TYPES.join(', ')}`);
  }
  if (names.length === 0) throw new ConfigError('WEBHOOK_EVENTS', `must list at least one event (valid: ${EVENT_TYPES.join(', ')}), or be unset for all but connection.*`);
  return [...new Set(names)] as EventType[];
}

function parseProxies(raw: string | undefined): TrustedProxy[] {
  return commaList(raw).map((entry) => {
    const [address, bits, extra] = entry.split('/');
    const family = isIP(address);
    const max = family === 6 ? 128 : 32;
    const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
    if (!family || extra !== undefined || !(prefix >= 0 && prefix <= max)) {
      throw new ConfigError('TRUSTED_PROXIES', `"${entry.slice(0, 64)}" is not an address or CIDR such as 10.0.0.0/8 or fd00::/8`);
    }
    return { address, prefix, family: family === 6 ? 'ipv6' : 'ipv4' };
  });
}

function parseOrigins(raw: string | undefined): string[] {
  return commaList(raw).map((o) => {
    if (o === '*') return o;
    let url: URL;
    try {
      url = new URL(o);
    } catch {
      throw new ConfigError('ALLOWED_ORIGINS', `"${o}" is not an origin such as https://app.example.com`);
    }
    if (url.origin === 'null' || url.pathname !== '/' || url.search || url.hash) {
      throw new ConfigError('ALLOWED_ORIGINS', `"${o}" is not an origin such as https://app.example.com`);
    }
    return url.origin;
  });
}

const EC_ALGORITHMS: Record<string, Algorithm> = {
  prime256v1: 'ES256',
  secp384r1: 'ES384',
  secp521r1: 'ES512',
};

/** RSA keys verify both padding schemes (RFC 7518 §3.3, §3.5); forging either needs the private key. */
export const RSA_ALGORITHMS: readonly Algorithm[] = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];

/** The algorithms an asymmetric public key may verify, or a reason it cannot be used. */
export function algorithmsOf(key: KeyObject): readonly Algorithm[] | string {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      // RFC 7518 §3.3: 2048 bits or more; shorter moduli are factorable (a JWKS could carry one by mistake).
      return (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048 ? RSA_ALGORITHMS : 'RSA keys must have at least 2048 bits';
    case 'ec': {
      // An EC key signs with the one ES algorithm of its curve (RFC 7518 §3.4).
      const alg = EC_ALGORITHMS[key.asymmetricKeyDetails?.namedCurve ?? ''];
      return alg ? [alg] : 'EC keys must be on P-256, P-384 or P-521';
    }
    case 'ed25519':
    case 'ed448':
      return ['EdDSA'];
    default:
      return `key type ${key.asymmetricKeyType} is not supported (use RSA, EC or Ed25519)`;
  }
}

function hmacKey(variable: string, secret: string, warnings: string[]): VerificationKey {
  if (Buffer.byteLength(secret) < 32) warnings.push(`${variable} is shorter than 32 bytes: HS256 keys that short can be brute-forced.`);
  return { key: createSecretKey(Buffer.from(secret, 'utf8')), algorithms: ['HS256', 'HS384', 'HS512'] };
}

function buildJwt(env: z.infer<typeof envSchema>): { jwt: JwtConfig; warnings: string[] } {
  const warnings: string[] = [];
  const common = { issuer: env.JWT_ISSUER, audience: env.JWT_AUDIENCE };
  // One key source: tokens from two sources would need two issuers' keys kept apart (centrifugo#1142).
  const sources = (['JWT_SECRET', 'JWT_PUBLIC_KEY', 'JWT_JWKS_URL', 'OIDC_ISSUER_URL'] as const).filter((v) => env[v]);
  if (sources.length > 1) {
    throw new ConfigError(sources[1], `set one key source, not ${sources.join(' and ')}`);
  }
  for (const variable of ['JWT_SECRET', 'JWT_SECRET_PREVIOUS'] as const) {
    // A PEM here would be used as an HMAC secret: anyone holding the public key could sign admin tokens.
    if (env[variable] && /-----BEGIN [A-Z ]*KEY-----/.test(env[variable]!)) {
      throw new ConfigError(variable, 'holds a PEM key; a public key goes in JWT_PUBLIC_KEY (an HMAC secret is random bytes, not a key file)');
    }
  }
  if (env.JWT_SECRET_PREVIOUS && !env.JWT_SECRET) {
    throw new ConfigError('JWT_SECRET_PREVIOUS', 'is the key being rotated out; it needs JWT_SECRET (the new key) beside it');
  }
  if (env.JWT_JWKS_URL || env.OIDC_ISSUER_URL) {
    // An identity provider signs tokens for every application it serves with the same keys (a Keycloak realm,
    // an Auth0 tenant): without an audience check, a token minted for another application gets in here.
    if (!env.JWT_AUDIENCE) {
      warnings.push(
        `${sources[0]} is set without JWT_AUDIENCE: a token your identity provider issued for any other application is accepted here. Set JWT_AUDIENCE to this gateway's audience.`,
      );
    }
    if (env.JWT_JWKS_URL && !env.JWT_ISSUER) {
      warnings.push('JWT_JWKS_URL is set without JWT_ISSUER: tokens are not checked for their issuer. Set JWT_ISSUER (or use OIDC_ISSUER_URL, which checks it).');
    }
  }
  if (env.JWT_JWKS_URL) return { jwt: { keys: [], jwksUrl: env.JWT_JWKS_URL, usingDevKey: false, ...common }, warnings };
  if (env.OIDC_ISSUER_URL) {
    return { jwt: { keys: [], oidcIssuerUrl: env.OIDC_ISSUER_URL, usingDevKey: false, ...common }, warnings };
  }
  if (env.JWT_PUBLIC_KEY) {
    // PEMs in env files often arrive with literal "\n".
    const pem = env.JWT_PUBLIC_KEY.replace(/\\n/g, '\n');
    let key: KeyObject;
    try {
      key = createPublicKey(pem);
    } catch {
      throw new ConfigError('JWT_PUBLIC_KEY', 'is not a PEM public key (-----BEGIN PUBLIC KEY-----)');
    }
    const algorithms = algorithmsOf(key);
    if (typeof algorithms === 'string') throw new ConfigError('JWT_PUBLIC_KEY', algorithms);
    return { jwt: { keys: [{ key, algorithms }], usingDevKey: false, ...common }, warnings };
  }
  let secret = env.JWT_SECRET;
  let usingDevKey = false;
  if (!secret) {
    if (env.NODE_ENV === 'production') {
      throw new ConfigError('JWT_SECRET', 'is required when NODE_ENV=production (or set JWT_PUBLIC_KEY, JWT_JWKS_URL or OIDC_ISSUER_URL)');
    }
    secret = DEV_JWT_SECRET;
    usingDevKey = true;
    warnings.push(
      'JWT_SECRET is not set: using the public development key. Anyone can forge tokens for this instance. ' +
        'Set JWT_SECRET (or JWT_PUBLIC_KEY, JWT_JWKS_URL, OIDC_ISSUER_URL) before exposing it.',
    );
  }
  const keys = [usingDevKey ? { key: createSecretKey(Buffer.from(secret, 'utf8')), algorithms: ['HS256', 'HS384', 'HS512'] as Algorithm[] } : hmacKey('JWT_SECRET', secret, warnings)];
  if (env.JWT_SECRET_PREVIOUS) keys.push(hmacKey('JWT_SECRET_PREVIOUS', env.JWT_SECRET_PREVIOUS, warnings));
  return { jwt: { keys, usingDevKey, signingSecret: secret, ...common }, warnings };
}

/** Variables of the environment that are not ours but often set beside a service: never "near misses". */
const FOREIGN = /^(npm_|NODE_OPTIONS$|NODE_PATH$|NODE_EXTRA_CA_CERTS$|NODE_TLS_REJECT_UNAUTHORIZED$|KUBERNETES_|HOSTNAME$|HOME$|PATH$|PWD$|SHLVL$|TERM|LANG|LC_|TZ$|USER$|SHELL$|_$)/;

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

/**
 * Unknown variables that look like one of ours (`REDIS_URI`, `JWT_SECERT`, `MAX_CONNECTION`): a typo would
 * otherwise silently give the default (embedded mode for a mistyped REDIS_URL). One warning each, naming the
 * variable it resembles; the value is never shown.
 */
export function nearMisses(source: NodeJS.ProcessEnv): string[] {
  const known = Object.keys(envSchema.shape);
  const warnings: string[] = [];
  for (const name of Object.keys(source)) {
    if (known.includes(name) || FOREIGN.test(name) || !/^[A-Z][A-Z0-9_]*$/.test(name)) continue;
    let best: string | undefined;
    let distance = Infinity;
    for (const candidate of known) {
      const d = editDistance(name, candidate);
      if (d < distance) [best, distance] = [candidate, d];
    }
    // One edit for short names, two (a swapped pair: JWT_SECERT) for longer ones, three past 16 characters.
    if (best && distance <= (best.length <= 5 ? 1 : best.length <= 16 ? 2 : 3)) warnings.push(`${name} is not a setting of this service and is ignored: did you mean ${best}?`);
  }
  return warnings;
}

/**
 * Parses and validates the whole environment once. Throws ConfigError naming every bad variable, one line
 * each; never echoes a secret value. Warns about unknown variables that look like ours.
 */
export function loadConfig(source: NodeJS.ProcessEnv = process.env): { config: AppConfig; warnings: string[] } {
  const parsed = envSchema.safeParse(source);
  if (!parsed.success) {
    // Every bad variable at once, one line each (its first problem), in the order they are declared.
    const problems: ConfigProblem[] = [];
    for (const issue of parsed.error.issues) {
      const variable = String(issue.path[0] ?? 'environment');
      if (problems.some((p) => p.variable === variable)) continue;
      const raw = source[variable];
      const shown = raw === undefined || /SECRET|KEY|URL|PASSWORD/.test(variable) ? '' : ` (got "${raw}")`;
      // The limit that holds across variables too, so one round of fixing is enough.
      const also = variable === 'MAX_PUBLISH_BYTES' ? '; it must also be at most SLOW_CONSUMER_BYTES / 4 (262144 with the default SLOW_CONSUMER_BYTES)' : '';
      problems.push({ variable, problem: `${issue.message}${shown}${also}` });
    }
    throw new ConfigError(problems);
  }
  const env = parsed.data;
  // The checks across variables: each adds its problem, and all are reported together.
  const problems: ConfigProblem[] = [];
  const check = <T>(run: () => T): T | undefined => {
    try {
      return run();
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(...error.problems);
      return undefined;
    }
  };
  const built = check(() => buildJwt(env));
  // HISTORY_SIZE is the v2 name; ALERT_HISTORY_SIZE stays accepted (the new name wins when both are set).
  const historyVariable = env.HISTORY_SIZE !== undefined ? 'HISTORY_SIZE' : 'ALERT_HISTORY_SIZE';
  const history = int(1, 10_000_000, 10_000).safeParse(env.HISTORY_SIZE ?? env.ALERT_HISTORY_SIZE);
  if (!history.success) problems.push({ variable: historyVariable, problem: history.error.issues[0].message });
  if (env.MAX_PUBLISH_BYTES > env.SLOW_CONSUMER_BYTES / 4) {
    problems.push({
      variable: 'MAX_PUBLISH_BYTES',
      problem: `must be at most SLOW_CONSUMER_BYTES / 4 (${Math.floor(env.SLOW_CONSUMER_BYTES / 4)}), or one message could close every subscriber as a slow consumer`,
    });
  }
  const redis = env.REDIS_URL === undefined ? undefined : check(() => parseRedisUrl(env.REDIS_URL!));
  if (env.REDIS_MIN_REPLICAS_ACK > 0 && redis?.kind === 'cluster') {
    // WAIT counts the replicas of the node a connection last wrote to; a cluster client spreads writes over nodes.
    problems.push({ variable: 'REDIS_MIN_REPLICAS_ACK', problem: 'is not supported with redis+cluster:// yet (WAIT is per node); use it with a standalone Redis or Sentinel' });
  }
  // Half a TURN setup would send clients no credentials (or credentials for no server) without anyone noticing.
  if (env.TURN_SECRET && !env.TURN_URLS) {
    problems.push({ variable: 'TURN_URLS', problem: 'is required when TURN_SECRET is set: the turn: / turns: URLs of the TURN server that shares the secret' });
  }
  if (env.TURN_URLS && !env.TURN_SECRET) {
    problems.push({ variable: 'TURN_SECRET', problem: "is required when TURN_URLS is set: the TURN server's static-auth-secret (coturn use-auth-secret)" });
  }
  if (env.PORT !== 0 && env.PORT === env.INTERNAL_PORT) {
    problems.push({ variable: 'INTERNAL_PORT', problem: `must differ from PORT (${env.PORT}): the internal port serves what the public one must not` });
  }
  // After the variables it takes defaults from: a file is only read once they are good.
  const channels = history.success ? loadNamespaces(env.CHANNELS_FILE, { historySize: history.data!, historyTtlMs: env.HISTORY_TTL_MS, maxPublishBytes: env.MAX_PUBLISH_BYTES }) : undefined;
  if (channels) problems.push(...channels.problems);
  if (env.SUBSCRIBE_PROXY_URL && !env.PROXY_SECRET) {
    problems.push({ variable: 'PROXY_SECRET', problem: 'is required when SUBSCRIBE_PROXY_URL is set: the backend checks it (Authorization: Bearer <PROXY_SECRET>); set a random string, e.g. openssl rand -hex 32' });
  }
  const proxied = channels?.namespaces.filter((ns) => ns.subscribe.mode === 'proxy') ?? [];
  if (!env.SUBSCRIBE_PROXY_URL) {
    // Such a namespace would admit nobody (never admitted without an answer): better not to start.
    for (const ns of proxied) {
      problems.push({
        variable: 'CHANNELS_FILE',
        problem: `namespaces.${ns.name}.subscribe.mode: proxy needs SUBSCRIBE_PROXY_URL, which is not set; set SUBSCRIBE_PROXY_URL and PROXY_SECRET, or use mode any or claim`,
      });
    }
  }
  const webhookEvents = check(() => parseEventTypes(env.WEBHOOK_EVENTS));
  if (env.WEBHOOK_URL) {
    const problem = env.WEBHOOK_SECRET ? webhookSecretProblem(env.WEBHOOK_SECRET) : 'is required when WEBHOOK_URL is set: the receiver checks every event\'s signature with it; generate one with echo whsec_$(openssl rand -base64 32)';
    if (problem) problems.push({ variable: 'WEBHOOK_SECRET', problem });
  }
  problems.push(...vapidProblems(env.VAPID_PUBLIC_KEY, env.VAPID_PRIVATE_KEY, env.VAPID_SUBJECT));
  if (problems.length > 0 || !built || !history.success || !channels) throw new ConfigError(problems);
  const { jwt, warnings } = built;
  warnings.push(...channels.warnings);
  if (env.SUBSCRIBE_PROXY_URL && proxied.length === 0) {
    warnings.push('SUBSCRIBE_PROXY_URL is set, but no namespace has subscribe mode proxy (CHANNELS_FILE), so it is never asked. Give the namespaces it should admit { subscribe: { mode: proxy } }.');
  }
  if (env.PROXY_SECRET && !env.SUBSCRIBE_PROXY_URL) warnings.push('PROXY_SECRET is set without SUBSCRIBE_PROXY_URL: it is not used.');
  for (const variable of ['WEBHOOK_SECRET', 'WEBHOOK_EVENTS'] as const) {
    if (env[variable] && !env.WEBHOOK_URL) warnings.push(`${variable} is set without WEBHOOK_URL: no event is sent. Set WEBHOOK_URL to the receiver's endpoint.`);
  }
  warnings.push(...nearMisses(source));
  if (env.VAPID_SUBJECT && /^https:\/\/(localhost|127\.|\[::1\])/i.test(env.VAPID_SUBJECT)) {
    warnings.push("VAPID_SUBJECT names localhost: Apple's push service refuses such a JWT (BadJwtToken). Use a mailto: address or your public https: URL.");
  }
  const turnUrls = commaList(env.TURN_URLS);
  if (env.TURN_SECRET && !turnUrls.some((url) => url.startsWith('turn'))) {
    warnings.push('TURN_URLS lists no turn: or turns: URL: the credentials of the ice-servers frame are for a TURN server, and a stun: server ignores them.');
  }
  const config: AppConfig = {
    port: env.PORT,
    host: env.HOST,
    internalPort: env.INTERNAL_PORT,
    internalHost: env.INTERNAL_HOST,
    demo: env.DEMO === undefined ? env.NODE_ENV !== 'production' : env.DEMO === 'on',
    nodeEnv: env.NODE_ENV,
    nodeId: env.NODE_ID ?? `${hostname()}-${process.pid}`,
    jwt,
    redisUrl: env.REDIS_URL,
    redis,
    redisPrefix: env.REDIS_PREFIX,
    allowedOrigins: parseOrigins(env.ALLOWED_ORIGINS),
    heartbeatIntervalMs: env.HEARTBEAT_INTERVAL_MS,
    sseHeartbeatMs: env.SSE_HEARTBEAT_MS,
    idleTimeoutMs: env.IDLE_TIMEOUT_MS,
    maxMessageBytes: env.MAX_MESSAGE_BYTES,
    rateLimitPerSec: env.RATE_LIMIT_PER_SEC,
    rateLimitBurst: env.RATE_LIMIT_BURST,
    maxConnections: env.MAX_CONNECTIONS,
    maxConnectionsPerUser: env.MAX_CONNECTIONS_PER_USER,
    slowConsumerBytes: env.SLOW_CONSUMER_BYTES,
    shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
    drainWindowMs: env.DRAIN_WINDOW_MS,
    listenBacklog: env.LISTEN_BACKLOG,
    maxUpgradesPerSec: env.MAX_UPGRADES_PER_SEC,
    maxUpgradesPerIpPerSec: env.MAX_UPGRADES_PER_IP_PER_SEC,
    trustedProxies: parseProxies(env.TRUSTED_PROXIES),
    logLevel: env.LOG_LEVEL,
    connectionLogIntervalMs: env.CONNECTION_LOG_INTERVAL_MS,
    historySize: history.data!,
    historyTtlMs: env.HISTORY_TTL_MS,
    maxPublishBytes: env.MAX_PUBLISH_BYTES,
    maxJsonDepth: env.MAX_JSON_DEPTH,
    redisTimeoutMs: env.REDIS_TIMEOUT_MS,
    redisMinReplicasAck: env.REDIS_MIN_REPLICAS_ACK,
    presenceTtlMs: env.PRESENCE_TTL_MS,
    presenceGraceMs: env.PRESENCE_GRACE_MS,
    namespaces: channels.namespaces,
    maxSubscriptionsPerConnection: env.MAX_SUBSCRIPTIONS_PER_CONNECTION,
    turn: env.TURN_SECRET && env.TURN_URLS ? { secret: env.TURN_SECRET, urls: turnUrls, ttlSeconds: env.TURN_TTL_S } : undefined,
    subscribeProxy: env.SUBSCRIBE_PROXY_URL ? { url: env.SUBSCRIBE_PROXY_URL, secret: env.PROXY_SECRET!, timeoutMs: env.PROXY_TIMEOUT_MS } : undefined,
    webhook: env.WEBHOOK_URL
      ? { url: env.WEBHOOK_URL, secret: env.WEBHOOK_SECRET!, events: webhookEvents!, retryMs: env.WEBHOOK_RETRY_S * 1000, queueMax: env.WEBHOOK_QUEUE_MAX }
      : undefined,
    vapid: env.VAPID_PUBLIC_KEY && env.VAPID_PRIVATE_KEY && env.VAPID_SUBJECT
      ? { publicKey: env.VAPID_PUBLIC_KEY.trim().replace(/=+$/, ''), privateKey: env.VAPID_PRIVATE_KEY.trim().replace(/=+$/, ''), subject: env.VAPID_SUBJECT.trim() }
      : undefined,
  };
  return { config, warnings };
}

/** Nest injection token for AppConfig. */
export const APP_CONFIG = Symbol('APP_CONFIG');
