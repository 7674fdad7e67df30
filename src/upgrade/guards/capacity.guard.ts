import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../../config/config';
import { ConnectionManager } from '../../connection/connection-manager';
import type { UpgradeContext, UpgradeGuard } from '../upgrade-guard';
import { UpgradeRefusal } from '../upgrade-refusal';

/** Seconds a refused client should wait; short, since sockets free up all the time. */
const RETRY_AFTER_SECONDS = '5';

/** MAX_CONNECTIONS per node (503 at_capacity + Retry-After) and MAX_CONNECTIONS_PER_USER (429). */
@Injectable()
export class CapacityGuard implements UpgradeGuard {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly connections: ConnectionManager,
  ) {}

  canUpgrade(ctx: UpgradeContext): void {
    const { maxConnections, maxConnectionsPerUser } = this.config;
    if (maxConnections > 0 && this.connections.registry.size >= maxConnections) {
      throw new UpgradeRefusal(503, 'at_capacity', `this node is at its limit of ${maxConnections} connections`, {
        'Retry-After': RETRY_AFTER_SECONDS,
      });
    }
    if (maxConnectionsPerUser > 0 && ctx.user) {
      const open = this.connections.registry.ofUser(ctx.user.sub).size;
      if (open >= maxConnectionsPerUser) {
        throw new UpgradeRefusal(
          429,
          'too_many_connections',
          `this user already has ${open} open connections (limit ${maxConnectionsPerUser})`,
        );
      }
    }
  }
}
