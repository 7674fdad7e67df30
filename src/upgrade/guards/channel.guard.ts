import { Injectable } from '@nestjs/common';
import { ChannelPermissions, type ChannelRefusal } from '../../channels/permissions';
import type { UpgradeContext, UpgradeGuard } from '../upgrade-guard';
import { UpgradeRefusal } from '../upgrade-refusal';

function refuse(refusal: ChannelRefusal | undefined): void {
  if (refusal) throw new UpgradeRefusal(refusal.status, refusal.code, refusal.message, refusal.status === 503 ? { 'Retry-After': '2' } : undefined);
}

/**
 * A path endpoint is a shorthand for one channel: it is admitted by that channel's namespace exactly as a
 * `/ws` subscribe is (roles, `claim`, `user:<sub>`, the subscribe proxy), before any seat or membership is taken,
 * so a stranger at an occupied seat learns nothing about its occupant. Runs after AuthenticateGuard and the
 * path's own checks. Synchronous unless the namespace is `proxy` (then the upgrade waits for the backend, at
 * most PROXY_TIMEOUT_MS, and is answered 403 or 503 before the handshake).
 */
@Injectable()
export class ChannelGuard implements UpgradeGuard {
  constructor(private readonly permissions: ChannelPermissions) {}

  canUpgrade(ctx: UpgradeContext): void | Promise<void> {
    if (!ctx.user) throw new Error('ChannelGuard must come after AuthenticateGuard');
    if (ctx.channel === undefined) throw new Error(`gateway ${ctx.gateway} declares no channel for ChannelGuard`);
    const checked = this.permissions.check(ctx.user, ctx.channel);
    if (checked instanceof Promise) return checked.then(refuse);
    refuse(checked);
  }
}
