import { createPublicKey } from 'node:crypto';
import { BlockList, isIP } from 'node:net';

/**
 * A browser's push subscription as the gateway keeps it (the `PushSubscription` JSON, RFC 8030 §4, with the
 * RFC 8291 keys): the endpoint identifies it; `user` is whose it is now.
 */
export interface StoredSubscription {
  endpoint: string;
  /** The user agent's P-256 public key (65 bytes, uncompressed), base64url. */
  p256dh: string;
  /** The 16-byte authentication secret, base64url. */
  auth: string;
  /** ms since the epoch after which the browser drops it, or null (most browsers). */
  expirationTime: number | null;
  user: string;
}

/** Longest endpoint accepted: push services' URLs are 150-500 characters (FCM, Mozilla, Apple, Windows). */
export const MAX_ENDPOINT_LENGTH = 2048;
/** Largest request body on /push/subscriptions: a PushSubscription's JSON is well under 1 KB. */
export const MAX_SUBSCRIPTION_BODY_BYTES = 4096;

/** A body that is not a subscription the gateway could push to: the field and the rule, never the value. */
export class SubscriptionProblem extends Error {
  constructor(
    readonly code: 'invalid_subscription' | 'endpoint_not_allowed',
    message: string,
  ) {
    super(message);
  }
}

function invalid(message: string): SubscriptionProblem {
  return new SubscriptionProblem('invalid_subscription', message);
}

/**
 * The bytes of a base64url string, or undefined. Padding and the standard alphabet (+ /) are tolerated: some
 * client libraries send those instead of what PushSubscription.toJSON() gives.
 */
function base64url(value: unknown): Buffer | undefined {
  if (typeof value !== 'string') return undefined;
  const text = value.replace(/=+$/, '');
  return /^[A-Za-z0-9_+/-]+$/.test(text) ? Buffer.from(text.replace(/\+/g, '-').replace(/\//g, '_'), 'base64url') : undefined;
}

/** Whether 65 bytes are an uncompressed point on P-256 (RFC 8291 §3.1: the user agent's ECDH public key). */
export function isP256Point(bytes: Buffer): boolean {
  if (bytes.length !== 65 || bytes[0] !== 4) return false;
  try {
    createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: bytes.subarray(1, 33).toString('base64url'), y: bytes.subarray(33).toString('base64url') }, format: 'jwk' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Validates an endpoint URL (every mode: https, no credentials, at most MAX_ENDPOINT_LENGTH; in production also
 * not a private, loopback or link-local literal address nor `localhost`). Returns the URL.
 */
export function checkEndpoint(endpoint: unknown, production: boolean): URL {
  if (typeof endpoint !== 'string' || endpoint.length === 0) throw invalid('"endpoint" must be the subscription\'s push service URL (a string)');
  if (endpoint.length > MAX_ENDPOINT_LENGTH) throw invalid(`"endpoint" is longer than ${MAX_ENDPOINT_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw invalid('"endpoint" is not a URL');
  }
  if (url.protocol !== 'https:') throw invalid('"endpoint" must be an https:// URL (push services are only reached over HTTPS)');
  if (url.username || url.password) throw invalid('"endpoint" must not carry a user or password');
  if (url.hash) throw invalid('"endpoint" must not carry a #fragment');
  if (production) {
    const host = hostOf(url);
    // `localhost` itself is refused when it resolves (to loopback); its subdomains may not resolve at all.
    if (host.endsWith('.localhost')) throw new SubscriptionProblem('endpoint_not_allowed', '"endpoint" names localhost: in production a push service is a public host');
    if (isIP(host) && isPrivateAddress(host)) throw new SubscriptionProblem('endpoint_not_allowed', '"endpoint" is a private, loopback or link-local address: in production a push service is a public host');
  }
  return url;
}

/** The URL's host without IPv6 brackets or a trailing dot, lower case. */
export function hostOf(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
}

/** Parses and validates `POST /push/subscriptions`' body (the browser's `PushSubscription.toJSON()`). */
export function parseSubscription(body: unknown, user: string, production: boolean): StoredSubscription {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalid('send the browser\'s PushSubscription as JSON: {"endpoint":"https://...","keys":{"p256dh":"...","auth":"..."},"expirationTime":null}');
  }
  const { endpoint, keys, expirationTime } = body as Record<string, unknown>;
  const url = checkEndpoint(endpoint, production);
  if (typeof keys !== 'object' || keys === null || Array.isArray(keys)) throw invalid('"keys" must be an object with "p256dh" and "auth" (base64url), as PushSubscription.toJSON() gives');
  const { p256dh, auth } = keys as Record<string, unknown>;
  const point = base64url(p256dh);
  if (!point) throw invalid('"keys.p256dh" must be base64url');
  if (point.length !== 65 || point[0] !== 4) throw invalid(`"keys.p256dh" must be an uncompressed P-256 public key (65 bytes); it decodes to ${point.length} bytes${point.length === 65 ? ' not starting with 0x04' : ''}`);
  if (!isP256Point(point)) throw invalid('"keys.p256dh" is not a point on the P-256 curve');
  const secret = base64url(auth);
  if (!secret) throw invalid('"keys.auth" must be base64url');
  if (secret.length !== 16) throw invalid(`"keys.auth" must be the 16-byte authentication secret; it decodes to ${secret.length} bytes`);
  if (expirationTime !== undefined && expirationTime !== null && !(typeof expirationTime === 'number' && Number.isFinite(expirationTime) && expirationTime >= 0)) {
    throw invalid('"expirationTime" must be null or ms since the epoch');
  }
  if (typeof expirationTime === 'number' && expirationTime <= Date.now()) throw invalid('"expirationTime" is in the past: this subscription has expired; subscribe again');
  // Normalised (base64url without padding; the URL as WHATWG serialises it), so the same subscription is one entry.
  return {
    endpoint: url.href,
    p256dh: point.toString('base64url'),
    auth: secret.toString('base64url'),
    expirationTime: typeof expirationTime === 'number' ? expirationTime : null,
    user,
  };
}

/**
 * Addresses no public push service has: private (RFC 1918, RFC 4193), loopback, link-local, carrier-grade NAT,
 * unspecified, multicast, reserved and documentation ranges. IPv4-mapped IPv6 addresses are checked as IPv4.
 */
const PRIVATE = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) PRIVATE.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b:1::', 48],
  ['100::', 64],
  ['2001:db8::', 32],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
] as const) PRIVATE.addSubnet(net, prefix, 'ipv6');

/** Whether an IP address (v4 or v6, no brackets) is one a push service cannot have. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return PRIVATE.check(address, 'ipv4');
  if (family !== 6) return false;
  const lower = address.toLowerCase();
  // ::ffff:a.b.c.d, or the same in hex (the URL parser writes [::ffff:7f00:1]), is an IPv4 address.
  const mapped = /^(?:0*:)*?:?0*:?ffff:(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/.exec(lower);
  if (mapped) {
    const v4 = mapped[1] ?? [parseInt(mapped[2], 16) >> 8, parseInt(mapped[2], 16) & 255, parseInt(mapped[3], 16) >> 8, parseInt(mapped[3], 16) & 255].join('.');
    return PRIVATE.check(v4, 'ipv4');
  }
  return PRIVATE.check(address, 'ipv6');
}
