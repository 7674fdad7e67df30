import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { Request } from 'express';
import { getAllowedRoles } from '../gateway/gateway-metadata';
import { ApiError } from '../http/api-error';
import { extractToken } from './token-extractor';
import { AuthError, JwtVerifier, WWW_AUTHENTICATE } from './jwt-verifier';
import type { Principal } from './principal';

export type AuthenticatedRequest = Request & { principal: Principal };

/**
 * HTTP twin of the upgrade guards: bearer token (header or ?token=), verified by the same JwtVerifier,
 * role checked against @AllowRoles on the handler.
 */
@Injectable()
export class HttpAuthGuard implements CanActivate {
  constructor(private readonly verifier: JwtVerifier) {}

  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const query = new URLSearchParams(req.url.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '');
    const found = extractToken(req.headers, query);
    try {
      if (found.token === undefined) throw new AuthError('token_missing', `no token: ${found.hint}`);
      req.principal = this.verifier.verify(found.token);
    } catch (error) {
      if (error instanceof AuthError) {
        throw new ApiError(401, error.code, error.message, { 'WWW-Authenticate': WWW_AUTHENTICATE });
      }
      throw error;
    }
    const roles = getAllowedRoles(context.getHandler()) ?? getAllowedRoles(context.getClass()) ?? [];
    if (roles.length && !roles.includes(req.principal.role)) {
      throw new ApiError(
        403,
        'forbidden_role',
        `role "${req.principal.role}" may not call this endpoint (allowed: ${roles.join(', ')})`,
      );
    }
    return true;
  }
}
