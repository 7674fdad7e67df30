import { Injectable } from '@nestjs/common';
import { AuthError, JwtVerifier, WWW_AUTHENTICATE } from '../../auth/jwt-verifier';
import { extractToken } from '../../auth/token-extractor';
import type { UpgradeContext, UpgradeGuard } from '../upgrade-guard';
import { UpgradeRefusal } from '../upgrade-refusal';

/** Finds the token (header, subprotocol or query), verifies it and sets `ctx.user`; 401 otherwise. */
@Injectable()
export class AuthenticateGuard implements UpgradeGuard {
  constructor(private readonly verifier: JwtVerifier) {}

  canUpgrade(ctx: UpgradeContext): void {
    const found = extractToken(ctx.req.headers, ctx.query, ctx.protocols);
    try {
      if (found.token === undefined) throw new AuthError('token_missing', `no token: ${found.hint}`);
      ctx.user = this.verifier.verify(found.token);
    } catch (error) {
      if (!(error instanceof AuthError)) throw error;
      throw new UpgradeRefusal(401, error.code, error.message, { 'WWW-Authenticate': WWW_AUTHENTICATE });
    }
  }
}
