import { Injectable } from '@nestjs/common';
import { parseStreamId } from '../bus/stream-id';
import type { UpgradeContext, UpgradeGuard } from '../upgrade/upgrade-guard';
import { UpgradeRefusal } from '../upgrade/upgrade-refusal';

/** `?since=<id>` must be an alert id; it is handed to the gateway as `attributes.since`. */
@Injectable()
export class ResumeGuard implements UpgradeGuard {
  canUpgrade(ctx: UpgradeContext): void {
    const since = ctx.query.get('since');
    if (since === null) return;
    if (!parseStreamId(since)) {
      throw new UpgradeRefusal(400, 'bad_request', 'since must be an alert id as received, e.g. 1700000000000-0');
    }
    ctx.attributes.since = since;
  }
}
