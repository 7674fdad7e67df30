import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../../config/config';
import { ConnectionManager } from '../../connection/connection-manager';
import { PRESENCE, type Presence } from '../../presence/presence';
import type { UpgradeContext, UpgradeGuard } from '../upgrade-guard';
import { UpgradeRefusal } from '../upgrade-refusal';

/** Seconds a refused client should wait; short, since sockets free up all the time. */
const RETRY_AFTER_SECONDS = '5';

/**
 * MAX_CONNECTIONS per node (503 at_capacity + Retry-After) and MAX_CONNECTIONS_PER_USER (429), the latter
 * across the whole deployment in cluster mode (a slot in Redis, released when the connection closes).
 */
@Injectable()
export class CapacityGuard implements UpgradeGuard {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly connections: ConnectionManager,
    @Inject(PRESENCE) private readonly presence: Presence,
  ) {}

  readonly reserves = true;

  // Synchronous unless a per-user slot must be taken: an upgrade with nothing to wait for skips a promise.
  canUpgrade(ctx: UpgradeContext): void | Promise<void> {
    const { maxConnections, maxConnectionsPerUser } = this.config;
    if (maxConnections > 0 && this.connections.registry.size >= maxConnections) {
      throw new UpgradeRefusal(503, 'at_capacity', `this node is at its limit of ${maxConnections} connections`, {
        'Retry-After': RETRY_AFTER_SECONDS,
      });
    }
    if (maxConnectionsPerUser > 0 && ctx.user) {
      return this.presence.acquireUserSlot(ctx.user.sub, maxConnectionsPerUser).then((slot) => {
        if (!slot.ok) {
          throw new UpgradeRefusal(
            429,
            'too_many_connections',
            `this user already has ${slot.open} open connections (limit ${maxConnectionsPerUser})`,
          );
        }
        ctx.releases.push(slot.release);
      });
    }
  }
}
