import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { algorithmsOf, type Algorithm, type VerificationKey } from '../config/config';
import type { Logger } from '../logging/logger';
import type { KeyLookup } from './jws';

/** An unknown `kid` refreshes the key set at most this often, so random kids cannot make us hammer the provider. */
export const UNKNOWN_KID_REFRESH_MS = 10_000;
/**
 * Bounds on the provider's Cache-Control max-age. Below a minute, a provider saying `no-cache` would be fetched
 * on every refresh tick; above a day, a rotated-out key would stay trusted too long.
 */
export const MIN_REFRESH_MS = 60_000;
export const MAX_REFRESH_MS = 86_400_000;
/** Without a max-age: Keycloak and Auth0 rotate with days of overlap, so ten minutes notices a rotation early. */
export const DEFAULT_REFRESH_MS = 600_000;
/** A fetch that takes longer than this has failed (the provider is down or a proxy holds the request). */
export const FETCH_TIMEOUT_MS = 5_000;
/** Larger documents are refused: a JWKS holds a handful of keys (~1-2 KB each). */
const MAX_DOCUMENT_BYTES = 1_048_576;
/** While failing: retries back off from 1 s to this; warn lines are at most one per this long. */
const MAX_RETRY_MS = 30_000;
const WARN_EVERY_MS = 60_000;

/** For logs: scheme, host and path only (a query may carry an API key). */
export function describeUrl(raw: string): string {
  try {
    const url = new URL(raw);
    return `${url.origin}${url.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

class FetchFailure extends Error {}

async function fetchJson(url: string): Promise<{ body: unknown; maxAgeMs: number | undefined }> {
  let response: Response;
  try {
    // No redirects: a key set is trust, and a redirect to another host would quietly move it there.
    response = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), headers: { accept: 'application/json' }, redirect: 'manual' });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    if ((error as Error).name === 'TimeoutError') throw new FetchFailure(`no answer within ${FETCH_TIMEOUT_MS} ms`);
    throw new FetchFailure(cause?.code ?? cause?.message ?? (error as Error).message);
  }
  if (response.status >= 300 && response.status < 400) {
    await response.body?.cancel();
    throw new FetchFailure(`HTTP ${response.status}: redirects are not followed; configure the final URL`);
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new FetchFailure(`HTTP ${response.status}`);
  }
  if (Number(response.headers.get('content-length')) > MAX_DOCUMENT_BYTES) {
    await response.body?.cancel();
    throw new FetchFailure(`document larger than ${MAX_DOCUMENT_BYTES} bytes`);
  }
  const text = await readCapped(response);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new FetchFailure('the answer is not JSON');
  }
  return { body, maxAgeMs: maxAgeOf(response.headers.get('cache-control')) };
}

/**
 * The body as text, refusing it as soon as it passes MAX_DOCUMENT_BYTES: a provider (or whatever answers at
 * that URL) streaming without a Content-Length must not make the gateway buffer it whole (1.6 GB was seen).
 */
async function readCapped(response: Response): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > MAX_DOCUMENT_BYTES) {
        await reader.cancel();
        throw new FetchFailure(`document larger than ${MAX_DOCUMENT_BYTES} bytes`);
      }
      chunks.push(value);
    }
  } catch (error) {
    if (error instanceof FetchFailure) throw error;
    throw new FetchFailure((error as Error).name === 'TimeoutError' ? `no answer within ${FETCH_TIMEOUT_MS} ms` : 'connection lost while reading');
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** `max-age` in ms (`no-cache` / `no-store`: 0), or undefined when the header says nothing about it. */
export function maxAgeOf(cacheControl: string | null): number | undefined {
  if (!cacheControl) return undefined;
  if (/(^|,)\s*(no-cache|no-store)\s*(,|$)/i.test(cacheControl)) return 0;
  const match = /(^|,)\s*max-age\s*=\s*"?(\d{1,10})"?\s*(,|$)/i.exec(cacheControl);
  return match ? Number(match[2]) * 1000 : undefined;
}

/** When to fetch a key set again, given the max-age its response carried. */
export function refreshDelay(maxAgeMs: number | undefined): number {
  return Math.min(MAX_REFRESH_MS, Math.max(MIN_REFRESH_MS, maxAgeMs ?? DEFAULT_REFRESH_MS));
}

const JOSE_ALGORITHMS = new Set<string>(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']);

/** The usable signature keys of a JWKS document, and why the others were skipped. */
export function keysFromJwks(body: unknown): { keys: VerificationKey[]; skipped: string[] } {
  const list = (body as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(list)) throw new FetchFailure('the document has no "keys" array (is this a JWKS?)');
  const keys: VerificationKey[] = [];
  const skipped: string[] = [];
  for (const [i, jwk] of list.entries()) {
    const name = typeof jwk?.kid === 'string' ? `kid ${JSON.stringify(jwk.kid.slice(0, 64))}` : `key #${i}`;
    const why = unusable(jwk);
    if (why) {
      skipped.push(`${name}: ${why}`);
      continue;
    }
    let key: KeyObject;
    try {
      key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
    } catch {
      skipped.push(`${name}: not a valid public key`);
      continue;
    }
    const algorithms = algorithmsOf(key);
    if (typeof algorithms === 'string') {
      skipped.push(`${name}: ${algorithms}`);
      continue;
    }
    // A key that names its algorithm is used with that one only (RFC 7517 §4.4).
    const pinned = typeof jwk.alg === 'string' ? algorithms.filter((a) => a === jwk.alg) : algorithms;
    if (!pinned.length) {
      skipped.push(`${name}: alg ${JSON.stringify(String(jwk.alg).slice(0, 16))} does not fit its key type`);
      continue;
    }
    keys.push({ key, algorithms: pinned, kid: typeof jwk.kid === 'string' ? jwk.kid : undefined });
  }
  return { keys, skipped };
}

function unusable(jwk: Record<string, unknown> | null): string | undefined {
  if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk)) return 'not an object';
  if (jwk.kty === 'oct') return 'a symmetric key in a public key set is ignored';
  if (jwk.use !== undefined && jwk.use !== 'sig') return `use "${String(jwk.use).slice(0, 16)}" is not "sig"`;
  if (Array.isArray(jwk.key_ops) && !jwk.key_ops.includes('verify')) return 'key_ops does not include "verify"';
  if (jwk.alg !== undefined && !JOSE_ALGORITHMS.has(String(jwk.alg))) return `alg ${JSON.stringify(String(jwk.alg).slice(0, 16))} is not supported`;
  if (jwk.d !== undefined) return 'a private key was published; it is ignored (rotate it: it is no longer secret)';
  return undefined;
}

export interface RemoteKeysOptions {
  jwksUrl?: string;
  oidcIssuerUrl?: string;
  log: Logger;
  /** Called once the issuer is known (OIDC discovery): the `iss` every token must carry. */
  onIssuer?: (issuer: string) => void;
}

interface KeySet {
  byKid: Map<string, VerificationKey>;
  all: VerificationKey[];
}

/**
 * An identity provider's key set (JWT_JWKS_URL, or the `jwks_uri` of OIDC_ISSUER_URL's discovery document),
 * looked up synchronously by `kid` from memory. Refreshed in the background on the provider's Cache-Control
 * (bounded to 1 min – 24 h), and at most once per 10 s when a token names a `kid` we do not have (a rotation
 * we have not seen yet). When the provider cannot be reached the last good set stays in use; a warn line names
 * the URL and the reason. Until a first set is loaded the gateway is not ready (/readyz 503).
 */
export class RemoteKeys implements KeyLookup {
  private set: KeySet | undefined;
  private jwksUrl: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private lastUnknownKidRefresh = 0;
  private failures = 0;
  private lastWarn = 0;
  private stopped = false;
  /** Number of JWKS fetches made (tests and logs). */
  fetches = 0;

  constructor(private readonly options: RemoteKeysOptions) {
    this.jwksUrl = options.jwksUrl;
  }

  start(): void {
    void this.refresh();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  isReady(): boolean {
    return this.set !== undefined;
  }

  keysFor(kid: string | undefined, alg: Algorithm): readonly KeyObject[] | undefined {
    const set = this.set;
    if (!set) return undefined;
    if (kid === undefined) {
      // Without a kid, every key for this algorithm is tried (a provider publishes a handful; at most 4 are
      // tried, so a flood of kid-less forgeries costs at most 4 verifications each).
      return set.all.filter((k) => k.algorithms.includes(alg)).slice(0, 4).map((k) => k.key);
    }
    const found = set.byKid.get(kid);
    if (!found) return undefined;
    return found.algorithms.includes(alg) ? [found.key] : [];
  }

  /**
   * A token named a kid we do not have: fetch the set again unless that was done less than 10 s ago.
   * Resolves when the refresh is over (whatever its outcome); undefined when no refresh is allowed now.
   */
  refreshForUnknownKid(now = Date.now()): Promise<void> | undefined {
    if (this.inFlight) return this.inFlight;
    if (now - this.lastUnknownKidRefresh < UNKNOWN_KID_REFRESH_MS) return undefined;
    this.lastUnknownKidRefresh = now;
    return this.refresh();
  }

  /** One refresh at a time; every caller waits for the same one. */
  private refresh(): Promise<void> {
    this.inFlight ??= this.load().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async load(): Promise<void> {
    clearTimeout(this.timer);
    let url = this.options.oidcIssuerUrl ?? this.jwksUrl!;
    try {
      if (!this.jwksUrl) this.jwksUrl = await this.discover();
      url = this.jwksUrl;
      this.fetches++;
      const { body, maxAgeMs } = await fetchJson(url);
      const { keys, skipped } = keysFromJwks(body);
      if (!keys.length) throw new FetchFailure(`no usable signature key${skipped.length ? ` (${skipped.join('; ')})` : ''}`);
      const byKid = new Map<string, VerificationKey>();
      for (const key of keys) if (key.kid !== undefined && !byKid.has(key.kid)) byKid.set(key.kid, key);
      const first = this.set === undefined;
      this.set = { byKid, all: keys };
      if (first || this.failures > 0) {
        this.options.log.info(
          { event: 'jwks_loaded', url: describeUrl(url), keys: keys.length, skipped: skipped.length },
          `verification keys loaded from ${describeUrl(url)}: ${keys.length} key(s)${skipped.length ? `; skipped ${skipped.join('; ')}` : ''}`,
        );
      }
      this.failures = 0;
      this.schedule(refreshDelay(maxAgeMs));
    } catch (error) {
      if (!(error instanceof FetchFailure)) throw error;
      this.failures++;
      const now = Date.now();
      if (this.failures === 1 || now - this.lastWarn >= WARN_EVERY_MS) {
        this.lastWarn = now;
        const kept = this.set ? `keeping the ${this.set.all.length} key(s) loaded before` : 'no key loaded yet: tokens cannot be verified (readiness 503)';
        this.options.log.warn(
          { event: 'jwks_unreachable', url: describeUrl(url), reason: error.message, failures: this.failures },
          `cannot load verification keys from ${describeUrl(url)}: ${error.message}; ${kept}; retrying`,
        );
      }
      this.schedule(Math.min(MAX_RETRY_MS, 1000 * 2 ** Math.min(this.failures - 1, 5)));
    }
  }

  /** OIDC discovery: the document must name the issuer we were given (OpenID Connect Discovery §4.3). */
  private async discover(): Promise<string> {
    const issuerUrl = this.options.oidcIssuerUrl!;
    const { body } = await fetchJson(`${issuerUrl.replace(/\/+$/, '')}/.well-known/openid-configuration`);
    const doc = body as { issuer?: unknown; jwks_uri?: unknown } | null;
    const issuer = doc?.issuer;
    if (typeof issuer !== 'string' || issuer.replace(/\/+$/, '') !== issuerUrl.replace(/\/+$/, '')) {
      throw new FetchFailure('the discovery document names another issuer (OIDC_ISSUER_URL must be the issuer exactly)');
    }
    const jwksUri = doc?.jwks_uri;
    if (typeof jwksUri !== 'string' || !/^https?:\/\//.test(jwksUri)) {
      throw new FetchFailure('the discovery document has no http(s) jwks_uri');
    }
    this.options.onIssuer?.(issuer);
    return jwksUri;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), ms);
    this.timer.unref();
  }
}
