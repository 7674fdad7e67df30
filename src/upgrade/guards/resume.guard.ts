import { Inject, Injectable } from '@nestjs/common';
import { BROKER, type Broker } from '../../channels/broker';
import { parseStreamId } from '../../channels/stream-id';
import type { UpgradeContext, UpgradeGuard } from '../upgrade-guard';
import { UpgradeRefusal } from '../upgrade-refusal';

export interface ResumeRequest {
  /** `since` / `epoch`: the endpoint's main channel (`alerts`, or the chat room). */
  main?: { id: string; epoch?: string };
  /** `user_since` / `user_epoch`: the personal channel of an alerts connection. */
  user?: { id: string; epoch?: string };
}

const EPOCH = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * `?since=<id>&epoch=<epoch>` (and `user_since` / `user_epoch` on the alerts endpoint) must be an id and an
 * epoch as received; they are handed to the gateway as `attributes.resume`. While the history is unreachable
 * (Redis down) a resume is refused with 503 rather than answered with a replay that is not there.
 */
@Injectable()
export class ResumeGuard implements UpgradeGuard {
  constructor(@Inject(BROKER) private readonly broker: Broker) {}

  canUpgrade(ctx: UpgradeContext): void {
    const main = this.position(ctx.query, 'since', 'epoch');
    const user = this.position(ctx.query, 'user_since', 'user_epoch');
    if (!main && !user) return;
    if (!this.broker.isReady()) {
      throw new UpgradeRefusal(503, 'redis_unavailable', 'history is unreachable right now; retry shortly', { 'Retry-After': '2' });
    }
    ctx.attributes.resume = { main, user } satisfies ResumeRequest;
  }

  private position(query: URLSearchParams, idName: string, epochName: string): { id: string; epoch?: string } | undefined {
    const id = query.get(idName);
    const epoch = query.get(epochName) ?? undefined;
    if (id === null) {
      if (epoch !== undefined) throw new UpgradeRefusal(400, 'bad_request', `${epochName} is only meaningful with ${idName}`);
      return undefined;
    }
    if (!parseStreamId(id)) throw new UpgradeRefusal(400, 'bad_request', `${idName} must be a message id as received, e.g. 1700000000000-0`);
    if (epoch !== undefined && !EPOCH.test(epoch)) throw new UpgradeRefusal(400, 'bad_request', `${epochName} must be an epoch as received in the welcome frame`);
    return { id, epoch };
  }
}
