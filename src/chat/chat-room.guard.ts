import { Inject, Injectable } from '@nestjs/common';
import { ConnectionManager } from '../connection/connection-manager';
import { PRESENCE, type Presence } from '../presence/presence';
import { claimForUpgrade } from '../upgrade/guards/claim';
import type { UpgradeContext, UpgradeGuard } from '../upgrade/upgrade-guard';
import { UpgradeRefusal } from '../upgrade/upgrade-refusal';
import { chatChannel } from './chat-channel';
import { ROOM_NAME } from './chat.frames';

/** A well-formed room name (400). */
@Injectable()
export class ChatRoomGuard implements UpgradeGuard {
  canUpgrade(ctx: UpgradeContext): void {
    if (!ROOM_NAME.test(ctx.params.room)) {
      throw new UpgradeRefusal(400, 'bad_request', 'room must be 1-64 letters, digits, _ . or -');
    }
  }
}

/** One connection per user per room, across all replicas: the same `sub` again gets 409 `duplicate_user`. */
@Injectable()
export class ChatMemberGuard implements UpgradeGuard {
  constructor(
    @Inject(PRESENCE) private readonly presence: Presence,
    private readonly connections: ConnectionManager,
  ) {}

  readonly reserves = true;

  canUpgrade(ctx: UpgradeContext): Promise<void> {
    return claimForUpgrade(this.presence, this.connections.registry, ctx, chatChannel(ctx.params.room), ctx.user!.sub, () =>
      new UpgradeRefusal(409, 'duplicate_user', 'this user is already connected to this room (one connection per user per room)'),
    );
  }
}
