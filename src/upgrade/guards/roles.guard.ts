import { Injectable } from '@nestjs/common';
import type { UpgradeContext, UpgradeGuard } from '../upgrade-guard';
import { UpgradeRefusal } from '../upgrade-refusal';

/** The token's role must be one of the gateway's @AllowRoles (403 forbidden_role). Runs after AuthenticateGuard. */
@Injectable()
export class RolesGuard implements UpgradeGuard {
  canUpgrade(ctx: UpgradeContext): void {
    if (!ctx.user) throw new Error('RolesGuard must come after AuthenticateGuard');
    if (ctx.allowedRoles.length === 0 || ctx.allowedRoles.includes(ctx.user.role)) return;
    throw new UpgradeRefusal(
      403,
      'forbidden_role',
      `role "${ctx.user.role}" may not connect to ${ctx.pattern} (allowed: ${ctx.allowedRoles.join(', ')})`,
    );
  }
}
