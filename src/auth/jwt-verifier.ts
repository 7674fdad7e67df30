import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { JwtService } from '@nestjs/jwt';
import { APP_CONFIG, RSA_ALGORITHMS, type Algorithm, type AppConfig } from '../config/config';
import { LOGGER, type Logger } from '../logging/logger';
import { JwsError, JwsVerifier, StaticKeys, type JwsFailure } from './jws';
import { subProblem, type Principal } from './principal';
import { RemoteKeys } from './remote-keys';

export type AuthErrorCode = 'token_missing' | 'token_invalid' | 'token_expired' | 'token_revoked';

/** A token problem, with a message safe to show the client (it never contains the token). */
export class AuthError extends Error {
  constructor(
    readonly code: AuthErrorCode,
    message: string,
    /** Set for an unknown `kid` when the key set is being fetched again: verify once more when it settles. */
    readonly refreshed?: Promise<void>,
  ) {
    super(message);
  }
}

/** No verification key is loaded yet (the identity provider has not answered): 503, retry shortly. */
export class KeysUnavailableError extends Error {
  constructor() {
    super('token verification keys are not loaded yet (the identity provider has not answered); retry shortly');
  }
}

/** What a key set from an identity provider may sign with: asymmetric only, so no key is ever an HMAC secret. */
const PROVIDER_ALGORITHMS: readonly Algorithm[] = [...RSA_ALGORITHMS, 'ES256', 'ES384', 'ES512', 'EdDSA'];

/** The header of every 401 (docs/server-api.md, README's refusals table). */
export const WWW_AUTHENTICATE = 'Bearer error="invalid_token"';

const MESSAGES: Record<Exclude<JwsFailure, 'expired'>, string> = {
  malformed: 'token is malformed (expected a JWT: header.payload.signature, with numeric exp/nbf/iat)',
  unsigned: 'unsigned tokens (alg "none") are refused',
  algorithm: 'token is signed with an algorithm this server does not accept',
  critical: 'token uses critical header extensions ("crit") this server does not understand',
  unknown_key: 'token is signed by a key (kid) this server does not know; get a new token',
  signature: 'token signature does not match',
  not_before: 'token is not valid yet (nbf)',
  issuer: 'token issuer is not accepted',
  audience: 'token audience is not accepted',
};

function describe(error: JwsError): AuthError {
  if (error.failure === 'expired') {
    const at = error.at === undefined ? '' : ` at ${new Date(error.at * 1000).toISOString()}`;
    return new AuthError('token_expired', `token expired${at}; get a new one`);
  }
  return new AuthError('token_invalid', MESSAGES[error.failure]);
}

const MAX_CLAIM = 256;

function isClaim(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_CLAIM;
}

/** More entries than this is a token built wrong (a claim per channel belongs in a prefix such as `chat:ward-7-*`). */
const MAX_CHANNEL_CLAIMS = 1000;

/** The `channels` claim: an array of non-empty strings, or the token is invalid (docs/namespaces.md). */
function channelsClaim(value: unknown): readonly string[] {
  if (!Array.isArray(value) || value.length > MAX_CHANNEL_CLAIMS || !value.every(isClaim)) {
    throw new AuthError('token_invalid', `token's "channels" claim must be an array of at most ${MAX_CHANNEL_CLAIMS} channel names or prefixes ending in * (strings of 1-256 characters)`);
  }
  return value;
}

/**
 * Verifies JWTs with the configured keys and pinned algorithms (JwsVerifier: `alg: none` and algorithm
 * confusion are refused), then requires the `sub` and `role` claims. Keys are static (JWT_SECRET and
 * JWT_SECRET_PREVIOUS, or JWT_PUBLIC_KEY) or an identity provider's set (JWT_JWKS_URL, OIDC_ISSUER_URL),
 * always looked up synchronously. Signing (dev tooling, tests) goes through @nestjs/jwt.
 */
@Injectable()
export class JwtVerifier implements OnModuleInit, OnModuleDestroy {
  private readonly jws: JwsVerifier;
  private readonly remote: RemoteKeys | undefined;

  constructor(
    private readonly jwt: JwtService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(LOGGER) log: Logger,
  ) {
    const { keys, jwksUrl, oidcIssuerUrl, issuer, audience } = config.jwt;
    if (jwksUrl || oidcIssuerUrl) {
      this.remote = new RemoteKeys({
        jwksUrl,
        oidcIssuerUrl,
        log,
        // JWT_ISSUER, when set, wins; otherwise the issuer discovery named.
        onIssuer: (discovered) => (this.jws.issuer = issuer ?? discovered),
      });
      this.jws = new JwsVerifier({ keys: this.remote, algorithms: PROVIDER_ALGORITHMS, issuer, audience });
    } else {
      const lookup = new StaticKeys(keys);
      this.jws = new JwsVerifier({ keys: lookup, algorithms: lookup.algorithms(), issuer, audience });
    }
  }

  onModuleInit(): void {
    this.remote?.start();
  }

  onModuleDestroy(): void {
    this.remote?.stop();
  }

  /** False until an identity provider's key set is loaded (always true with static keys). */
  isReady(): boolean {
    return this.remote === undefined || this.remote.isReady();
  }

  /** JWKS fetches made so far (0 with static keys). */
  get keyFetches(): number {
    return this.remote?.fetches ?? 0;
  }

  /** Synchronous; throws AuthError (401) or KeysUnavailableError (503). */
  verify(token: string): Principal {
    if (!this.isReady()) throw new KeysUnavailableError();
    let claims: Record<string, unknown>;
    try {
      claims = this.jws.verify(token);
    } catch (error) {
      if (!(error instanceof JwsError)) throw error;
      const described = describe(error);
      if (error.failure === 'unknown_key') {
        const refreshed = this.remote?.refreshForUnknownKid();
        if (refreshed) throw new AuthError(described.code, described.message, refreshed);
      }
      throw described;
    }
    if (!isClaim(claims.sub)) throw new AuthError('token_invalid', 'token lacks a "sub" claim (a non-empty string)');
    const bad = subProblem(claims.sub);
    // Admitting a sub the server API cannot name would make that user impossible to disconnect or ban.
    if (bad) throw new AuthError('token_invalid', `token's "sub" claim ${bad}`);
    if (!isClaim(claims.role)) {
      throw new AuthError('token_invalid', 'token lacks a "role" claim (a non-empty string)');
    }
    const principal: Principal = { sub: claims.sub, role: claims.role };
    if (isClaim(claims.email)) principal.email = claims.email;
    if (typeof claims.exp === 'number') principal.exp = claims.exp;
    // For revocation (POST /api/revoke). A jti the server API could not name is not kept: such a token is revoked
    // by its user instead.
    if (typeof claims.iat === 'number') principal.iat = claims.iat;
    if (typeof claims.jti === 'string' && !subProblem(claims.jti)) principal.jti = claims.jti;
    if (claims.channels !== undefined) principal.channels = channelsClaim(claims.channels);
    return principal;
  }

  /**
   * verify(), except that a token naming a key we do not have yet waits for the key set to be fetched again
   * (at most once per 10 s) and is verified once more: the first client after a rotation gets in. Synchronous
   * (no promise) whenever the key is known.
   */
  verifyOrRefresh(token: string): Principal | Promise<Principal> {
    try {
      return this.verify(token);
    } catch (error) {
      if (!(error instanceof AuthError) || !error.refreshed) throw error;
      return error.refreshed.then(() => this.verify(token));
    }
  }

  /** Signs a token with the configured secret (dev tooling and tests; not available with a public key). */
  sign(claims: Record<string, unknown>, expiresInSeconds: number): string {
    if (!this.config.jwt.signingSecret) throw new Error('signing needs JWT_SECRET (a public key cannot sign)');
    return this.jwt.sign(claims, { expiresIn: expiresInSeconds });
  }
}
