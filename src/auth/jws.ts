import { createHmac, timingSafeEqual, verify as verifySignature, type KeyObject } from 'node:crypto';
import type { JwtConfig } from '../config/config';

export type Algorithm = JwtConfig['algorithms'][number];

/** Why a token was refused; the verifier maps these to the client-facing messages. */
export type JwsFailure =
  | 'malformed'
  | 'unsigned'
  | 'algorithm'
  | 'signature'
  | 'expired'
  | 'not_before'
  | 'issuer'
  | 'audience';

export class JwsError extends Error {
  constructor(
    readonly failure: JwsFailure,
    /** For `expired`: when, in seconds since the epoch. */
    readonly at?: number,
  ) {
    super(failure);
  }
}

/** header.payload.signature in the base64url alphabet; the signature may be empty (refused as unsigned). */
const COMPACT = /^[\w-]+\.[\w-]+\.[\w-]*$/;

const DIGEST: Record<Algorithm, 'sha256' | 'sha384' | 'sha512'> = {
  HS256: 'sha256',
  HS384: 'sha384',
  HS512: 'sha512',
  RS256: 'sha256',
  RS384: 'sha384',
  RS512: 'sha512',
  ES256: 'sha256',
  ES384: 'sha384',
  ES512: 'sha512',
};

export interface JwsOptions {
  key: KeyObject;
  algorithms: readonly Algorithm[];
  issuer?: string;
  audience?: string;
}

/**
 * Compact JWS/JWT verification (RFC 7515/7519) for the pinned algorithm list, written for the upgrade hot path:
 * jsonwebtoken decodes every token twice and costs ~30 µs per upgrade under load; this costs ~5 µs. It accepts
 * and refuses exactly what jsonwebtoken does with the same options (test/unit/jws.spec.ts compares the two on
 * a corpus of valid, forged and malformed tokens). `alg` comes from the token but must be in the list, so
 * `none` and algorithm confusion are refused before any key is used.
 */
export class JwsVerifier {
  /** Header segments seen before (almost every token of a deployment has the same one), with their alg. */
  private readonly headers = new Map<string, Algorithm>();

  constructor(private readonly options: JwsOptions) {}

  verify(token: string, nowSeconds = Math.floor(Date.now() / 1000)): Record<string, unknown> {
    if (!COMPACT.test(token)) throw new JwsError('malformed');
    const firstDot = token.indexOf('.');
    const secondDot = token.indexOf('.', firstDot + 1);
    const headerPart = token.slice(0, firstDot);
    const alg = this.algorithmOf(headerPart);
    const signature = token.slice(secondDot + 1);
    if (!signature) throw new JwsError('unsigned');
    if (!this.signatureMatches(alg, token.slice(0, secondDot), signature)) throw new JwsError('signature');
    const claims = parseJson(token.slice(firstDot + 1, secondDot));
    if (!claims) throw new JwsError('malformed');
    this.checkClaims(claims, nowSeconds);
    return claims;
  }

  private algorithmOf(headerPart: string): Algorithm {
    const known = this.headers.get(headerPart);
    if (known) return known;
    const header = parseJson(headerPart);
    if (!header || typeof header.alg !== 'string') throw new JwsError('malformed');
    if (header.alg === 'none') throw new JwsError('unsigned');
    const alg = this.options.algorithms.find((a) => a === header.alg);
    if (!alg) throw new JwsError('algorithm');
    // Bounded: a client sending ever-new headers only costs a parse each.
    if (this.headers.size < 16) this.headers.set(headerPart, alg);
    return alg;
  }

  private signatureMatches(alg: Algorithm, signingInput: string, signature: string): boolean {
    const { key } = this.options;
    if (alg[0] === 'H') {
      const expected = createHmac(DIGEST[alg], key).update(signingInput).digest('base64url');
      // Compared as the encoded strings, as jsonwebtoken does, so non-canonical encodings are refused too.
      const a = Buffer.from(expected);
      const b = Buffer.from(signature);
      return a.length === b.length && timingSafeEqual(a, b);
    }
    const raw = Buffer.from(signature, 'base64url');
    const input = Buffer.from(signingInput);
    try {
      // ES* signatures are JOSE's fixed-width r||s, not DER.
      if (alg[0] === 'E') return verifySignature(DIGEST[alg], input, { key, dsaEncoding: 'ieee-p1363' }, raw);
      return verifySignature(DIGEST[alg], input, key, raw);
    } catch {
      return false;
    }
  }

  private checkClaims(claims: Record<string, unknown>, now: number): void {
    if (claims.nbf !== undefined) {
      if (typeof claims.nbf !== 'number') throw new JwsError('malformed');
      if (claims.nbf > now) throw new JwsError('not_before');
    }
    if (claims.exp !== undefined) {
      if (typeof claims.exp !== 'number') throw new JwsError('malformed');
      if (now >= claims.exp) throw new JwsError('expired', claims.exp);
    }
    const { issuer, audience } = this.options;
    if (issuer !== undefined && claims.iss !== issuer) throw new JwsError('issuer');
    if (audience !== undefined) {
      const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
      if (!aud.includes(audience)) throw new JwsError('audience');
    }
  }
}

/** A base64url segment holding a JSON object, or undefined. */
function parseJson(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
