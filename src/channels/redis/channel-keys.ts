import { createHash } from 'node:crypto';

/**
 * The Redis names of a channel C under the prefix P: every key a script touches for C is in one hash slot, so
 * the same layout works on a standalone Redis, behind Sentinel and on Redis Cluster (docs/cluster.md):
 *
 *   C = a `single` namespace's channel       any other C (`user:<sub>`, `chat:<room>`, `signaling:<id>`)
 *   (alerts, the fixed names of docs/cluster.md)
 *   stream  P:alerts:stream                   P:{C}:stream
 *   meta    {P:alerts:stream}:meta            P:{C}:meta      hash: epoch, last
 *   idem    {P:alerts:stream}:idem:<sha1>     P:{C}:idem:<sha1>
 *   live    P:alerts (PUBLISH everywhere)     P:{C} (PUBLISH; SPUBLISH on Redis Cluster)
 *
 * `{...}` is a hash tag: Redis Cluster hashes only what is inside it, so `{P:alerts:stream}:meta` lives in the
 * slot of `P:alerts:stream`, and everything of `chat:lobby` in the slot of `chat:lobby`.
 *
 * Which channels keep the fixed layout is the namespaces' knowledge (NamespaceRegistry: `single: true`), not
 * this file's: callers pass it in.
 */
export interface ChannelKeys {
  stream: string;
  meta: string;
  /** The pub/sub channel: live publications, and history publications' notices. */
  live: string;
  /** Whether `live` is a shard channel on Redis Cluster (a single namespace keeps classic pub/sub, the contract of docs/cluster.md). */
  sharded: boolean;
  /** The key of an Idempotency-Key's first answer, in the channel's slot. */
  idempotency(key: string): string;
}

/** `single`: C is the one channel of a `single` namespace (named like it), which keeps the fixed layout. */
export function channelKeys(prefix: string, channel: string, single: boolean): ChannelKeys {
  const tag = single ? `{${prefix}:${channel}:stream}` : `${prefix}:{${channel}}`;
  const idem = (key: string) => `${tag}:idem:${createHash('sha1').update(key).digest('hex')}`;
  if (single) {
    return { stream: `${prefix}:${channel}:stream`, meta: `${tag}:meta`, live: `${prefix}:${channel}`, sharded: false, idempotency: idem };
  }
  return { stream: `${tag}:stream`, meta: `${tag}:meta`, live: tag, sharded: true, idempotency: idem };
}

/**
 * The channel a pub/sub message arrived on, from its Redis channel name (undefined: not one of ours). `singles`:
 * the channels of the `single` namespaces, whose pub/sub channel is `P:C` rather than `P:{C}`. Every message
 * passes here, and nearly all are `P:{C}`, so that form is tried first; the two cannot overlap, since a
 * namespace name starts with a letter (NAMESPACE_NAME).
 */
export function channelOf(prefix: string, redisChannel: string, singles: ReadonlySet<string>): string | undefined {
  const open = `${prefix}:{`;
  if (redisChannel.startsWith(open)) return redisChannel.endsWith('}') ? redisChannel.slice(open.length, -1) : undefined;
  if (redisChannel.length <= prefix.length + 1 || !redisChannel.startsWith(prefix) || redisChannel[prefix.length] !== ':') return undefined;
  const rest = redisChannel.slice(prefix.length + 1);
  return singles.has(rest) ? rest : undefined;
}
