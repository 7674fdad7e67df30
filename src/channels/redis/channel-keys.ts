import { createHash } from 'node:crypto';

/**
 * The Redis names of a channel C under the prefix P: every key a script touches for C is in one hash slot, so
 * the same layout works on a standalone Redis, behind Sentinel and on Redis Cluster (docs/cluster.md):
 *
 *   C = alerts (the SPEC's fixed names)      any other C (`user:<sub>`, `chat:<room>`, `signaling:<id>`)
 *   stream  P:alerts:stream                   P:{C}:stream
 *   meta    {P:alerts:stream}:meta            P:{C}:meta      hash: epoch, last
 *   idem    {P:alerts:stream}:idem:<sha1>     P:{C}:idem:<sha1>
 *   live    P:alerts (PUBLISH everywhere)     P:{C} (PUBLISH; SPUBLISH on Redis Cluster)
 *
 * `{...}` is a hash tag: Redis Cluster hashes only what is inside it, so `{P:alerts:stream}:meta` lives in the
 * slot of `P:alerts:stream`, and everything of `chat:lobby` in the slot of `chat:lobby`.
 */
export interface ChannelKeys {
  stream: string;
  meta: string;
  /** The pub/sub channel: live publications, and history publications' notices. */
  live: string;
  /** Whether `live` is a shard channel on Redis Cluster (alerts keeps classic pub/sub, the SPEC's contract). */
  sharded: boolean;
  /** The key of an Idempotency-Key's first answer, in the channel's slot. */
  idempotency(key: string): string;
}

export function channelKeys(prefix: string, channel: string): ChannelKeys {
  const tag = channel === 'alerts' ? `{${prefix}:alerts:stream}` : `${prefix}:{${channel}}`;
  const idem = (key: string) => `${tag}:idem:${createHash('sha1').update(key).digest('hex')}`;
  if (channel === 'alerts') {
    return { stream: `${prefix}:alerts:stream`, meta: `${tag}:meta`, live: `${prefix}:alerts`, sharded: false, idempotency: idem };
  }
  return { stream: `${tag}:stream`, meta: `${tag}:meta`, live: tag, sharded: true, idempotency: idem };
}

/** The channel a pub/sub message arrived on, from its Redis channel name (undefined: not one of ours). */
export function channelOf(prefix: string, redisChannel: string): string | undefined {
  if (redisChannel === `${prefix}:alerts`) return 'alerts';
  const open = `${prefix}:{`;
  if (redisChannel.startsWith(open) && redisChannel.endsWith('}')) return redisChannel.slice(open.length, -1);
  return undefined;
}
