import { Inject, Injectable } from '@nestjs/common';
import { JwtService } from '@nestjs/jwt';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { JwsError, JwsVerifier, type JwsFailure } from './jws';
import type { Principal } from './principal';

export type AuthErrorCode = 'token_missing' | 'token_invalid' | 'token_expired';

/** A token problem, with a message safe to show the client (it never contains the token). */
export class AuthError extends Error {
  constructor(
    readonly code: AuthErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** The SPEC's header for every 401. */
export const WWW_AUTHENTICATE = 'Bearer error="invalid_token"';

const MESSAGES: Record<Exclude<JwsFailure, 'expired'>, string> = {
  malformed: 'token is malformed (expected a JWT: header.payload.signature)',
  unsigned: 'unsigned tokens (alg "none") are refused',
  algorithm: 'token is signed with an algorithm this server does not accept',
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

/**
 * Verifies JWTs with the configured key and pinned algorithm list (JwsVerifier: `alg: none` and algorithm
 * confusion are refused), then requires the `sub` and `role` claims. Signing (dev tooling, tests) goes through
 * @nestjs/jwt.
 */
@Injectable()
export class JwtVerifier {
  private readonly jws: JwsVerifier;

  constructor(
    private readonly jwt: JwtService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    const { key, algorithms, issuer, audience } = config.jwt;
    this.jws = new JwsVerifier({ key, algorithms, issuer, audience });
  }

  verify(token: string): Principal {
    let claims: Record<string, unknown>;
    try {
      claims = this.jws.verify(token);
    } catch (error) {
      if (error instanceof JwsError) throw describe(error);
      throw error;
    }
    if (!isClaim(claims.sub)) throw new AuthError('token_invalid', 'token lacks a "sub" claim (a non-empty string)');
    if (!isClaim(claims.role)) {
      throw new AuthError('token_invalid', 'token lacks a "role" claim (a non-empty string)');
    }
    const principal: Principal = { sub: claims.sub, role: claims.role };
    if (isClaim(claims.email)) principal.email = claims.email;
    if (typeof claims.exp === 'number') principal.exp = claims.exp;
    return principal;
  }

  /** Signs a token with the configured secret (dev tooling and tests; not available with a public key). */
  sign(claims: Record<string, unknown>, expiresInSeconds: number): string {
    if (!this.config.jwt.signingSecret) throw new Error('signing needs JWT_SECRET (a public key cannot sign)');
    return this.jwt.sign(claims, { expiresIn: expiresInSeconds });
  }
}
