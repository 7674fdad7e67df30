import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../../config/config';
import type { UpgradeContext, UpgradeGuard } from '../upgrade-guard';
import { UpgradeRefusal } from '../upgrade-refusal';

/**
 * ALLOWED_ORIGINS allow-list (empty: any). Only browsers send Origin, so a request without one (a backend
 * client) passes; cross-site WebSocket hijacking needs a browser.
 */
@Injectable()
export class OriginGuard implements UpgradeGuard {
  private readonly allowed: ReadonlySet<string>;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.allowed = new Set(config.allowedOrigins);
  }

  canUpgrade(ctx: UpgradeContext): void {
    if (this.allowed.size === 0 || this.allowed.has('*')) return;
    const origin = ctx.req.headers.origin;
    if (origin === undefined || this.allowed.has(origin)) return;
    throw new UpgradeRefusal(403, 'forbidden_origin', 'this Origin is not in ALLOWED_ORIGINS');
  }
}
