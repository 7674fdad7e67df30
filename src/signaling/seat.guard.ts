import { Inject, Injectable } from '@nestjs/common';
import { ConnectionManager } from '../connection/connection-manager';
import { PRESENCE, type Presence } from '../presence/presence';
import { claimForUpgrade } from '../upgrade/guards/claim';
import type { UpgradeContext, UpgradeGuard } from '../upgrade/upgrade-guard';
import { UpgradeRefusal } from '../upgrade/upgrade-refusal';
import { signalingChannel } from './signaling-channel';

/** One seat per role per consultation, across all replicas: a second doctor gets 409 `role_taken`. */
@Injectable()
export class SeatGuard implements UpgradeGuard {
  constructor(
    @Inject(PRESENCE) private readonly presence: Presence,
    private readonly connections: ConnectionManager,
  ) {}

  readonly reserves = true;

  canUpgrade(ctx: UpgradeContext): Promise<void> {
    const { consultationId, userType } = ctx.params;
    return claimForUpgrade(this.presence, this.connections.registry, ctx, signalingChannel(consultationId), userType, () =>
      new UpgradeRefusal(409, 'role_taken', `the ${userType} seat of this consultation is taken (one connection per role)`),
    );
  }
}
