import { Injectable } from '@nestjs/common';
import { AuthError, JwtVerifier, KeysUnavailableError, WWW_AUTHENTICATE } from '../../auth/jwt-verifier';
import type { Principal } from '../../auth/principal';
import { extractToken } from '../../auth/token-extractor';
import { Denials } from '../../presence/denials';
import type { UpgradeContext, UpgradeGuard } from '../upgrade-guard';
import { UpgradeRefusal } from '../upgrade-refusal';

/** The answer to a token that cannot be verified, as an upgrade refusal. */
export function authRefusal(error: unknown): UpgradeRefusal {
  if (error instanceof AuthError) return new UpgradeRefusal(401, error.code, error.message, { 'WWW-Authenticate': WWW_AUTHENTICATE });
  if (error instanceof KeysUnavailableError) return new UpgradeRefusal(503, 'keys_unavailable', error.message, { 'Retry-After': '2' });
  throw error;
}

/** 403 `banned` with the seconds left, as every door answers a banned user. */
export function bannedRefusal(until: number, now = Date.now()): UpgradeRefusal {
  const seconds = Math.max(1, Math.ceil((until - now) / 1000));
  return new UpgradeRefusal(403, 'banned', `this user is banned from connecting for another ${seconds} s`, { 'Retry-After': String(seconds) });
}

/** 401 `token_revoked` (POST /api/revoke), as every door answers a revoked token. */
export function revokedRefusal(): UpgradeRefusal {
  return authRefusal(new AuthError('token_revoked', 'this token was revoked; get a new one'));
}

/**
 * Finds the token (header, subprotocol or query), verifies it and sets `ctx.user`; 401 otherwise (503 while
 * an identity provider's keys are not loaded yet; 401 `token_revoked` for a token revoked by POST /api/revoke),
 * 403 `banned` while the user is banned (POST /api/disconnect with ban_seconds). Synchronous unless the token names a key we do not have.
 */
@Injectable()
export class AuthenticateGuard implements UpgradeGuard {
  constructor(
    private readonly verifier: JwtVerifier,
    private readonly denials: Denials,
  ) {}

  private admit(ctx: UpgradeContext, user: Principal): void {
    if (this.denials.revoked(user)) throw revokedRefusal();
    const until = this.denials.bannedUntil(user.sub);
    if (until !== undefined) throw bannedRefusal(until);
    ctx.user = user;
  }

  canUpgrade(ctx: UpgradeContext): void | Promise<void> {
    const found = extractToken(ctx.req.headers, ctx.query, ctx.protocols);
    let verified: Principal | Promise<Principal>;
    try {
      if (found.token === undefined) throw new AuthError('token_missing', `no token: ${found.hint}`);
      verified = this.verifier.verifyOrRefresh(found.token);
    } catch (error) {
      throw authRefusal(error);
    }
    if (!(verified instanceof Promise)) return this.admit(ctx, verified);
    return verified.then(
      (user) => this.admit(ctx, user),
      (error: unknown) => {
        throw authRefusal(error);
      },
    );
  }
}
