import * as crypto from 'node:crypto';
import { constants, createHmac, timingSafeEqual, verify as verifySignature, type KeyObject } from 'node:crypto';
import type { Algorithm, VerificationKey } from '../config/config';

export type { Algorithm } from '../config/config';

/** Why a token was refused; the verifier maps these to the client-facing messages. */
export type JwsFailure =
  | 'malformed'
  | 'unsigned'
  | 'algorithm'
  | 'critical'
  | 'unknown_key'
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

/**
 * Where verification keys come from: a fixed list (secrets, a PEM) or an identity provider's key set. Lookups
 * are synchronous: the upgrade hot path never waits for a key it already has.
 */
export interface KeyLookup {
  /**
   * The keys a token signed with `alg` under `kid` may be verified with, in the order to try them; empty when
   * none may verify that algorithm; undefined when the key set has no such `kid` (it may be refreshed).
   */
  keysFor(kid: string | undefined, alg: Algorithm): readonly KeyObject[] | undefined;
}

/** Keys that do not change: the secrets (current, then previous) or the PEM. `kid` is not consulted. */
export class StaticKeys implements KeyLookup {
  private readonly byAlgorithm = new Map<Algorithm, KeyObject[]>();

  constructor(keys: readonly VerificationKey[]) {
    for (const { key, algorithms } of keys) {
      for (const alg of algorithms) {
        const list = this.byAlgorithm.get(alg) ?? [];
        list.push(key);
        this.byAlgorithm.set(alg, list);
      }
    }
  }

  keysFor(_kid: string | undefined, alg: Algorithm): readonly KeyObject[] {
    return this.byAlgorithm.get(alg) ?? [];
  }

  algorithms(): Algorithm[] {
    return [...this.byAlgorithm.keys()];
  }
}

/** header.payload.signature in the base64url alphabet; the signature may be empty (refused as unsigned). */
const COMPACT = /^[\w-]+\.[\w-]+\.[\w-]*$/;

const DIGEST: Record<Algorithm, 'sha256' | 'sha384' | 'sha512' | null> = {
  HS256: 'sha256',
  HS384: 'sha384',
  HS512: 'sha512',
  RS256: 'sha256',
  RS384: 'sha384',
  RS512: 'sha512',
  PS256: 'sha256',
  PS384: 'sha384',
  PS512: 'sha512',
  ES256: 'sha256',
  ES384: 'sha384',
  ES512: 'sha512',
  EdDSA: null, // Ed25519/Ed448 hash internally
};

/** HMAC block sizes (RFC 2104 `B`) of the HS* digests. */
const BLOCK = { sha256: 64, sha384: 128, sha512: 128 } as const;
type HmacDigest = keyof typeof BLOCK;

/** crypto.hash (Node >= 20.12): a one-shot digest, no Hash object and no per-call digest lookup. */
type OneShotHash = (algorithm: string, data: Buffer, outputEncoding: string) => Buffer | string;
const oneShotHash = (crypto as unknown as { hash?: OneShotHash }).hash;

/**
 * HMAC (RFC 2104) of an ASCII signing input, base64url: H(K^opad || H(K^ipad || m)) with the padded keys built
 * once per key. createHmac does the same but builds an Hmac object and re-initialises the key on every call:
 * under an upgrade storm it was 5.9% of the gateway's CPU profile (its `init` alone 2.7%), 5.2% with this.
 * Undefined where crypto.hash is missing (Node < 20.12): createHmac is used there. test/unit/jws.spec.ts checks
 * it against createHmac for every HS digest and key lengths around both block sizes.
 */
export function hmacSigner(digest: HmacDigest, key: KeyObject): ((input: string) => string) | undefined {
  const hash = oneShotHash;
  if (!hash) return undefined;
  const block = BLOCK[digest];
  let secret: Buffer = key.export();
  if (secret.length > block) secret = hash(digest, secret, 'buffer') as Buffer;
  const ipad = Buffer.alloc(block);
  const opad = Buffer.alloc(block);
  for (let i = 0; i < block; i++) {
    const byte = i < secret.length ? secret[i] : 0;
    ipad[i] = byte ^ 0x36;
    opad[i] = byte ^ 0x5c;
  }
  return (input) => {
    // ASCII only (verify() checked the compact form first), so one byte per character.
    const inner = Buffer.allocUnsafe(block + input.length);
    ipad.copy(inner, 0);
    inner.write(input, block, 'latin1');
    const innerDigest = hash(digest, inner, 'buffer') as Buffer;
    const outer = Buffer.allocUnsafe(block + innerDigest.length);
    opad.copy(outer, 0);
    innerDigest.copy(outer, block);
    return hash(digest, outer, 'base64url') as string;
  };
}

/** The latest instant a JavaScript Date can hold, in seconds (±8.64e15 ms). */
const MAX_DATE_SECONDS = 8.64e12;

export interface JwsOptions {
  /** A single key (shorthand for `keys: new StaticKeys([{ key, algorithms }])`). */
  key?: KeyObject;
  keys?: KeyLookup;
  /** The algorithms accepted at all (pinned): `alg` comes from the token but must be one of these. */
  algorithms: readonly Algorithm[];
  issuer?: string;
  audience?: string;
}

interface Header {
  alg: Algorithm;
  kid: string | undefined;
}

/**
 * Compact JWS/JWT verification (RFC 7515/7519) for the pinned algorithm list, written for the upgrade hot path:
 * jsonwebtoken decodes every token twice and costs ~30 µs per upgrade under load; this costs ~5 µs. It accepts
 * and refuses what jsonwebtoken does with the same options (test/unit/jws.spec.ts compares the two on a corpus
 * of valid, forged and malformed tokens), and more strictly where jsonwebtoken is lax: a `crit` header is
 * refused (RFC 7515 §4.1.11: we understand no extension), and `exp`/`nbf`/`iat` must be finite numbers
 * (JSON's 1e400 is Infinity: a token that never expires). `alg` comes from the token but must be in the list
 * and allowed for the key, so `none` and algorithm confusion are refused before any key is used.
 */
export class JwsVerifier {
  /** Header segments seen before (almost every token of a deployment has one of a few), parsed. */
  private readonly headers = new Map<string, Header>();
  private readonly keys: KeyLookup;
  /** Precomputed HMACs, per secret key and digest (the keys of a deployment: one or two). */
  private readonly hmacs = new WeakMap<KeyObject, Map<HmacDigest, (input: string) => string>>();
  /** Checked against `iss` when set; an OIDC verifier sets it once discovery has named the issuer. */
  issuer: string | undefined;

  constructor(private readonly options: JwsOptions) {
    const keys = options.keys ?? (options.key ? new StaticKeys([{ key: options.key, algorithms: options.algorithms }]) : undefined);
    if (!keys) throw new Error('JwsVerifier needs a key or a key lookup');
    this.keys = keys;
    this.issuer = options.issuer;
  }

  verify(token: string, nowSeconds = Math.floor(Date.now() / 1000)): Record<string, unknown> {
    if (!COMPACT.test(token)) throw new JwsError('malformed');
    const firstDot = token.indexOf('.');
    const secondDot = token.indexOf('.', firstDot + 1);
    const headerPart = token.slice(0, firstDot);
    const { alg, kid } = this.headerOf(headerPart);
    const signature = token.slice(secondDot + 1);
    if (!signature) throw new JwsError('unsigned');
    const keys = this.keys.keysFor(kid, alg);
    if (keys === undefined) throw new JwsError('unknown_key');
    if (keys.length === 0) throw new JwsError('algorithm');
    if (!this.signatureMatches(keys, alg, token.slice(0, secondDot), signature)) throw new JwsError('signature');
    const claims = parseJson(token.slice(firstDot + 1, secondDot));
    if (!claims) throw new JwsError('malformed');
    this.checkClaims(claims, nowSeconds);
    return claims;
  }

  private headerOf(headerPart: string): Header {
    const known = this.headers.get(headerPart);
    if (known) return known;
    const header = parseJson(headerPart);
    if (!header || typeof header.alg !== 'string') throw new JwsError('malformed');
    if (header.alg === 'none') throw new JwsError('unsigned');
    if (header.crit !== undefined) throw new JwsError('critical');
    if (header.kid !== undefined && (typeof header.kid !== 'string' || header.kid.length > 256)) throw new JwsError('malformed');
    const alg = this.options.algorithms.find((a) => a === header.alg);
    if (!alg) throw new JwsError('algorithm');
    const parsed: Header = { alg, kid: header.kid as string | undefined };
    // Bounded: a client sending ever-new headers only costs a parse each.
    if (this.headers.size < 64) this.headers.set(headerPart, parsed);
    return parsed;
  }

  private signatureMatches(keys: readonly KeyObject[], alg: Algorithm, signingInput: string, signature: string): boolean {
    if (alg[0] === 'H') {
      // Compared as the encoded strings, as jsonwebtoken does, so non-canonical encodings are refused too.
      const b = Buffer.from(signature);
      for (const key of keys) {
        const a = Buffer.from(this.hmac(DIGEST[alg] as HmacDigest, key, signingInput));
        if (a.length === b.length && timingSafeEqual(a, b)) return true;
      }
      return false;
    }
    const raw = Buffer.from(signature, 'base64url');
    const input = Buffer.from(signingInput);
    for (const key of keys) {
      try {
        if (verifyWith(alg, input, key, raw)) return true;
      } catch {
        // a signature of the wrong length for the key, or a key that cannot do this algorithm
      }
    }
    return false;
  }

  private hmac(digest: HmacDigest, key: KeyObject, input: string): string {
    let signers = this.hmacs.get(key);
    if (!signers) this.hmacs.set(key, (signers = new Map()));
    let signer = signers.get(digest);
    if (signer === undefined) {
      signer = hmacSigner(digest, key) ?? ((text: string) => createHmac(digest, key).update(text).digest('base64url'));
      signers.set(digest, signer);
    }
    return signer(input);
  }

  private checkClaims(claims: Record<string, unknown>, now: number): void {
    if (claims.iat !== undefined && !Number.isFinite(claims.iat)) throw new JwsError('malformed');
    if (claims.nbf !== undefined) {
      if (!Number.isFinite(claims.nbf)) throw new JwsError('malformed');
      if ((claims.nbf as number) > now) throw new JwsError('not_before');
    }
    if (claims.exp !== undefined) {
      if (!Number.isFinite(claims.exp)) throw new JwsError('malformed');
      const exp = claims.exp as number;
      if (now >= exp) throw new JwsError('expired', Math.abs(exp) <= MAX_DATE_SECONDS ? exp : undefined);
    }
    const { audience } = this.options;
    if (this.issuer !== undefined && claims.iss !== this.issuer) throw new JwsError('issuer');
    if (audience !== undefined) {
      const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
      if (!aud.includes(audience)) throw new JwsError('audience');
    }
  }
}

function verifyWith(alg: Algorithm, input: Buffer, key: KeyObject, signature: Buffer): boolean {
  switch (alg[0]) {
    case 'E':
      if (alg === 'EdDSA') return verifySignature(null, input, key, signature);
      // ES* signatures are JOSE's fixed-width r||s, not DER.
      return verifySignature(DIGEST[alg], input, { key, dsaEncoding: 'ieee-p1363' }, signature);
    case 'P':
      return verifySignature(
        DIGEST[alg],
        input,
        { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST },
        signature,
      );
    default:
      return verifySignature(DIGEST[alg], input, key, signature);
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
