import { BrokerUnavailableError } from '../../channels/broker';
import { CloseCode } from '../../connection/close-codes';
import type { ConnectionRegistry } from '../../connection/connection-registry';
import type { Presence } from '../../presence/presence';
import type { UpgradeContext } from '../upgrade-guard';
import { UpgradeRefusal } from '../upgrade-refusal';

/**
 * Claims `member` of `group` for the connection being upgraded, or refuses the upgrade: 409 with `error` when
 * a live connection (on any replica) holds it, 503 `redis_unavailable` when exclusivity cannot be checked.
 * The claim is released when the connection closes; if it is ever taken over (this replica was cut off from
 * Redis for longer than the presence TTL), the connection is closed 1001 so its client reconnects.
 */
export async function claimForUpgrade(
  presence: Presence,
  registry: ConnectionRegistry,
  ctx: UpgradeContext,
  group: string,
  member: string,
  refusal: () => UpgradeRefusal,
): Promise<void> {
  let result;
  try {
    result = await presence.claim(group, member, ctx.connectionId, () =>
      registry.get(ctx.connectionId)?.close(CloseCode.GOING_AWAY, 'taken over by another connection'),
    );
  } catch (error) {
    if (!(error instanceof BrokerUnavailableError)) throw error;
    throw new UpgradeRefusal(503, 'redis_unavailable', 'presence is unreachable right now; retry shortly', { 'Retry-After': '2' });
  }
  if (!result.ok) throw refusal();
  ctx.releases.push(result.release);
}
