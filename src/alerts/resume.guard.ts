import { Inject, Injectable } from '@nestjs/common';
import { parseStreamId } from '../bus/stream-id';
import type { UpgradeContext, UpgradeGuard } from '../upgrade/upgrade-guard';
import { UpgradeRefusal } from '../upgrade/upgrade-refusal';
import { ALERT_LOG, type AlertLog } from './alert-log';

/**
 * `?since=<id>` must be an alert id; it is handed to the gateway as `attributes.since`. While the history is
 * unreachable (Redis down) a resume is refused with 503 rather than answered with a replay that is not there.
 */
@Injectable()
export class ResumeGuard implements UpgradeGuard {
  constructor(@Inject(ALERT_LOG) private readonly alertLog: AlertLog) {}

  canUpgrade(ctx: UpgradeContext): void {
    const raw = ctx.query.get('since');
    if (raw === null) return;
    const since = parseStreamId(raw);
    if (!since) {
      throw new UpgradeRefusal(400, 'bad_request', 'since must be an alert id as received, e.g. 1700000000000-0');
    }
    if (!this.alertLog.isReady()) {
      throw new UpgradeRefusal(503, 'redis_unavailable', 'alert history is unreachable right now; retry shortly', {
        'Retry-After': '2',
      });
    }
    ctx.attributes.since = since;
  }
}
