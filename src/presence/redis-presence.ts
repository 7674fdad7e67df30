import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { BROKER, BrokerUnavailableError, type Broker } from '../channels/broker';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { LOGGER, type Logger } from '../logging/logger';
import { RedisConnections } from '../redis/redis-connections';
import { ownerOf, releaseOnce, sharedMember, UserCounts, type Claim, type ClaimResult, type HoldResult, type NodeInfo, type Presence, type PresenceLeave, type ShareResult, type SlotResult } from './presence';
import { ACQUIRE_SLOT, CLAIM, HEARTBEAT, HOLD, MEMBERS, REAP, RELEASE, RELEASE_SLOT, SET_SLOTS, SHARE, SWEEP, UNHOLD, UNSHARE } from './presence-scripts';

/** Bus channel on which the node that reaped a dead node tells every node what vanished. */
export const PRESENCE_CHANNEL = 'presence';

interface NodeGone {
  node: string;
  claims: [group: string, member: string, owner: string][];
}

interface Held extends Claim {
  onLost?: () => void;
  /** A shared membership of this user (SHARE / UNSHARE keep its shared set too). */
  user?: string;
}

const SEP = '\0';

/** A presence hold of this node (its entry in the node's holds set is the key it is kept under here). */
interface PresenceHold {
  channel: string;
  user: string;
  token: string;
  /** Known to be in Redis (HOLD answered, here or on a resync): only such a hold has a leave to tell. */
  written?: boolean;
}

/**
 * Cluster-mode presence in Redis (layout in presence-scripts.ts). A timer refreshes this node's liveness key
 * every TTL/3 and reaps nodes whose key expired: their claims and connection counts are removed atomically
 * and the reaper announces them on the bus. After a Redis outage (or a restart that lost everything) this
 * node writes back what it still holds; while Redis is down, per-user limits hold per node.
 */
@Injectable()
export class RedisPresence implements Presence, OnApplicationBootstrap, OnModuleDestroy {
  private readonly prefix: string;
  private readonly nodeId: string;
  private readonly ttlMs: number;
  /** This node's open connections per user: the truth that Redis is resynchronised to. */
  private readonly slots = new UserCounts();
  /** Users whose count in Redis may be stale because a write failed. */
  private readonly unsynced = new Set<string>();
  private readonly held = new Map<string, Held>();
  /** Claims released while Redis was unreachable: they must not linger there and block others. */
  private readonly unreleased = new Map<string, Claim & { user?: string }>();
  private readonly listeners = new Set<(node: string, claims: Claim[]) => void>();
  /** Presence holds of this node's connections, by holds entry: written back after an outage like claims. */
  private readonly holding = new Map<string, PresenceHold>();
  /** Holds released while Redis was unreachable: ended (and their leaves scheduled) when it returns. */
  private readonly unreleasedHolds = new Map<string, PresenceHold>();
  private readonly graceMs: number;
  /** Told after each successful resync (start, and every reconnect): what lives in memory is written back then. */
  private readonly resynced = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private clearedPreviousIncarnation = false;
  private syncing: Promise<void> | undefined;
  private readonly maxAnnounceBytes: number;
  private describe: () => NodeInfo | Promise<NodeInfo>;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly redis: RedisConnections,
    @Inject(BROKER) private readonly broker: Broker,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    // Every presence key under one hash tag, `{P}`: the scripts read other nodes' liveness keys by name, which
    // Redis Cluster allows only within the script's slot. Presence is connection churn, not message traffic, so
    // one slot carries it (docs/cluster.md).
    this.prefix = `{${config.redisPrefix}}`;
    this.nodeId = config.nodeId;
    this.ttlMs = config.presenceTtlMs;
    this.graceMs = config.presenceGraceMs;
    this.maxAnnounceBytes = Math.floor(config.maxPublishBytes / 2);
    this.describe = () => ({ id: this.nodeId });
  }

  onApplicationBootstrap(): void {
    this.unsubscribe = this.broker.subscribe(PRESENCE_CHANNEL, (publication) => this.announce(publication.data as unknown as NodeGone), { history: false });
    this.redis.onReady(() => void this.resync());
    this.timer = setInterval(() => void this.beat(), Math.max(250, Math.floor(this.ttlMs / 3)));
    this.timer.unref();
    if (this.redis.command.status === 'ready') void this.resync();
  }

  /** A clean stop says goodbye at once instead of letting the others wait for the TTL. */
  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    this.unsubscribe?.();
    if (!this.up()) return;
    try {
      await this.redis.command.del(this.nodeKey(this.nodeId));
      await this.redis.command.hdel(this.infoKey(), this.nodeId);
      await this.reap(this.nodeId, 'stopped');
    } catch {
      // Redis went away as we stopped: the TTL cleans up.
    }
  }

  /** Stops the heartbeat without a goodbye (tests use it to play a crashed node). */
  stopHeartbeat(): void {
    clearInterval(this.timer);
    this.unsubscribe?.();
  }

  async acquireUserSlot(user: string, limit: number): Promise<SlotResult> {
    const local = this.slots.get(user);
    let reply: [number, number] | undefined;
    if (this.up()) {
      try {
        reply = (await ACQUIRE_SLOT.run(this.redis.command, [this.key('conns', user), this.holdsKey(this.nodeId)], [
          this.nodeId,
          limit,
          this.prefix,
          `u${SEP}${user}`,
        ])) as [number, number];
      } catch {
        reply = undefined;
      }
    }
    if (reply && reply[0] === 0) return { ok: false, open: reply[1] };
    if (!reply) {
      // Redis is unreachable: enforce the limit on this node alone; the count is written back on recovery.
      if (local >= limit) return { ok: false, open: local };
      this.unsynced.add(user);
    }
    this.slots.increment(user);
    return { ok: true, release: releaseOnce(() => this.releaseSlot(user)) };
  }

  async claim(group: string, member: string, connectionId: string, onLost?: () => void): Promise<ClaimResult> {
    const owner = ownerOf(this.nodeId, connectionId);
    const holder: unknown = await this.available(() =>
      CLAIM.run(this.redis.command, [this.key('claims', group), this.holdsKey(this.nodeId)], [member, owner, this.prefix, `c${SEP}${group}${SEP}${member}`]),
    );
    if (typeof holder === 'string') return { ok: false, holder };
    const id = `${group}${SEP}${member}`;
    this.held.set(id, { group, member, owner, onLost });
    return {
      ok: true,
      release: () => {
        if (this.held.get(id)?.owner !== owner) return;
        this.held.delete(id);
        void this.release({ group, member, owner });
      },
    };
  }

  async share(group: string, user: string, connectionId: string): Promise<ShareResult> {
    const member = sharedMember(user, connectionId);
    const owner = ownerOf(this.nodeId, connectionId);
    const id = `${group}${SEP}${member}`;
    const first = await this.available(() =>
      SHARE.run(this.redis.command, [this.key('claims', group), this.holdsKey(this.nodeId), this.sharedKey(group, user)], [member, owner, `c${SEP}${id}`, user]),
    );
    this.held.set(id, { group, member, owner, user });
    return {
      first: first === 1,
      release: async () => {
        if (this.held.get(id)?.owner !== owner) return false;
        this.held.delete(id);
        try {
          if (!this.up()) throw new BrokerUnavailableError();
          const last = await UNSHARE.run(this.redis.command, [this.key('claims', group), this.holdsKey(this.nodeId), this.sharedKey(group, user)], [member, owner, `c${SEP}${id}`, user]);
          return last === 1;
        } catch {
          // Written when Redis is back (resync); nobody is told of a leave that could not be decided.
          this.unreleased.set(id, { group, member, owner, user });
          return false;
        }
      },
    };
  }

  async hold(channel: string, user: string, connectionId: string): Promise<HoldResult> {
    const held: PresenceHold = { channel, user, token: ownerOf(this.nodeId, connectionId) };
    const entry = `h${SEP}${channel}${SEP}${user}${SEP}${held.token}`;
    this.holding.set(entry, held);
    let change = 0;
    try {
      if (!this.up()) throw new BrokerUnavailableError();
      change = Number(await HOLD.run(this.redis.command, [this.holdsKey(this.nodeId)], [this.prefix, channel, user, held.token, entry]));
      held.written = true;
    } catch {
      // Written back on resync (this.holding); a join that could not be decided is not told.
    }
    let released = false;
    return {
      joined: change > 0,
      occupied: change === 2,
      release: async () => {
        if (released) return undefined;
        released = true;
        this.holding.delete(entry);
        try {
          if (!this.up()) throw new BrokerUnavailableError();
          const due = Number(await UNHOLD.run(this.redis.command, [this.holdsKey(this.nodeId)], [this.prefix, channel, user, held.token, entry, this.graceMs]));
          return due > 0 ? due : undefined;
        } catch {
          // Ended when Redis is back (resync); its leave is then swept like any other. A hold Redis never had
          // was never a join: nothing to end.
          if (held.written) this.unreleasedHolds.set(entry, held);
          return undefined;
        }
      },
    };
  }

  async sweep(max: number): Promise<PresenceLeave[]> {
    const flat = (await this.available(() => SWEEP.run(this.redis.command, [`${this.prefix}:leaving`], [this.prefix, max]))) as (string | number)[];
    const leaves: PresenceLeave[] = [];
    for (let i = 0; i + 2 < flat.length; i += 3) leaves.push({ channel: String(flat[i]), user: String(flat[i + 1]), vacated: Number(flat[i + 2]) === 1 });
    return leaves;
  }

  /** The set of a user's shared member keys in a group (same slot as every presence key: the `{P}` tag). */
  private sharedKey(group: string, user: string): string {
    return `${this.prefix}:shared:${group}${SEP}${user}`;
  }

  async members(group: string): Promise<Map<string, string>> {
    const flat = (await this.available(() => MEMBERS.run(this.redis.command, [this.key('claims', group)], [this.prefix]))) as string[];
    const members = new Map<string, string>();
    for (let i = 0; i + 1 < flat.length; i += 2) members.set(flat[i], flat[i + 1]);
    return members;
  }

  onNodeGone(listener: (node: string, claims: Claim[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private up(): boolean {
    // Connected and not found silent by the watchdog: a frozen Redis answers 503 at once, not after a timeout.
    return this.redis.isCommandReady();
  }

  private key(kind: 'conns' | 'claims', name: string): string {
    return `${this.prefix}:${kind}:${name}`;
  }

  /** Hash: node → its description as of its last heartbeat (JSON, with `seen`). */
  private infoKey(): string {
    return `${this.prefix}:nodeinfo`;
  }

  /** A Redis call, or BrokerUnavailableError (503 at the API) when the link is down, silent or timing out. */
  private async available<T>(run: () => Promise<T>): Promise<T> {
    if (!this.up()) throw new BrokerUnavailableError();
    try {
      return await run();
    } catch {
      throw new BrokerUnavailableError();
    }
  }

  describeNode(describe: () => NodeInfo | Promise<NodeInfo>): void {
    this.describe = describe;
  }

  async nodes(): Promise<NodeInfo[]> {
    const [info, members] = await this.available(() => Promise.all([this.redis.command.hgetall(this.infoKey()), this.redis.command.smembers(`${this.prefix}:nodes`)]));
    const live = new Set(members);
    const now = Date.now();
    const nodes: NodeInfo[] = [await this.describe()];
    for (const [node, json] of Object.entries(info)) {
      if (node === this.nodeId) continue;
      let parsed: NodeInfo & { seen?: number };
      try {
        parsed = JSON.parse(json) as NodeInfo & { seen?: number };
      } catch {
        continue;
      }
      // Reaped nodes leave the set; a description older than the TTL is a node that stopped beating.
      if (!live.has(node) || typeof parsed.seen !== 'number' || now - parsed.seen > this.ttlMs) continue;
      delete parsed.seen;
      nodes.push(parsed);
    }
    return nodes.sort((a, b) => a.id.localeCompare(b.id));
  }

  private nodeKey(node: string): string {
    return `${this.prefix}:node:${node}`;
  }

  private holdsKey(node: string): string {
    return `${this.nodeKey(node)}:holds`;
  }

  private releaseSlot(user: string): void {
    this.slots.decrement(user);
    if (!this.up()) {
      this.unsynced.add(user);
      return;
    }
    RELEASE_SLOT.run(this.redis.command, [this.key('conns', user), this.holdsKey(this.nodeId)], [this.nodeId, `u${SEP}${user}`]).catch(
      () => this.unsynced.add(user),
    );
  }

  private async release(claim: Claim): Promise<void> {
    const id = `${claim.group}${SEP}${claim.member}`;
    try {
      if (!this.up()) throw new BrokerUnavailableError();
      await RELEASE.run(this.redis.command, [this.key('claims', claim.group), this.holdsKey(this.nodeId)], [
        claim.member,
        claim.owner,
        `c${SEP}${id}`,
      ]);
      this.unreleased.delete(id);
    } catch {
      this.unreleased.set(id, claim);
    }
  }

  /** Refreshes this node's liveness, and reaps nodes whose liveness expired. */
  private async beat(): Promise<void> {
    if (!this.up()) return;
    let dead: string[];
    try {
      dead = (await HEARTBEAT.run(this.redis.command, [this.nodeKey(this.nodeId), `${this.prefix}:nodes`], [
        this.ttlMs,
        this.nodeId,
        this.prefix,
      ])) as string[];
    } catch (error) {
      this.log.debug({ err: (error as Error).message }, 'presence heartbeat failed');
      return;
    }
    try {
      await this.redis.command.hset(this.infoKey(), this.nodeId, JSON.stringify({ ...(await this.describe()), seen: Date.now() }));
    } catch (error) {
      this.log.debug({ err: (error as Error).message }, 'node description not written');
    }
    for (const node of dead) if (node !== this.nodeId) await this.reap(node, 'expired');
  }

  /**
   * Removes a node's registrations: `expired` (its liveness key ran out: only if still expired and not reaped
   * by another node first), `restarted` (this node's previous incarnation), `stopped` (this node, cleanly).
   */
  private async reap(node: string, why: 'expired' | 'restarted' | 'stopped'): Promise<void> {
    const force = why !== 'expired';
    let reply: string[];
    try {
      reply = (await REAP.run(
        this.redis.command,
        [this.holdsKey(node), `${this.prefix}:nodes`, this.nodeKey(node)],
        [node, this.prefix, force ? '1' : '0', this.graceMs],
      )) as string[];
    } catch (error) {
      this.log.debug({ err: (error as Error).message, gone: node }, 'presence reap failed');
      return;
    }
    if (Number(reply[0]) !== 1) return;
    await this.redis.command.hdel(this.infoKey(), node).catch(() => undefined);
    const claims: NodeGone['claims'] = [];
    for (let i = 1; i + 2 < reply.length; i += 3) claims.push([reply[i], reply[i + 1], reply[i + 2]]);
    if (why === 'restarted' && claims.length === 0) return; // a fresh start: nothing to announce
    // `gone`, not `node`: every line already carries `node` (the replica that writes it).
    this.log.info({ event: 'node_gone', gone: node, why, claims: claims.length }, 'removed the presence of a node that is gone');
    try {
      // In batches well under MAX_PUBLISH_BYTES (which every node checks on receipt): a node with thousands of
      // seats and rooms would otherwise be announced in one message the others drop.
      let batch: NodeGone['claims'] = [];
      let bytes = 0;
      for (const claim of claims) {
        const size = claim[0].length + claim[1].length + claim[2].length + 16;
        if (batch.length > 0 && bytes + size > this.maxAnnounceBytes) {
          await this.broker.publish(PRESENCE_CHANNEL, { node, claims: batch } satisfies NodeGone, { history: false });
          batch = [];
          bytes = 0;
        }
        batch.push(claim);
        bytes += size;
      }
      await this.broker.publish(PRESENCE_CHANNEL, { node, claims: batch } satisfies NodeGone, { history: false });
    } catch {
      this.log.warn({ event: 'node_gone_unannounced', gone: node }, 'could not announce a dead node (Redis unreachable)');
    }
  }

  private announce(gone: NodeGone): void {
    if (!gone || typeof gone.node !== 'string' || !Array.isArray(gone.claims)) return;
    const claims = gone.claims.map(([group, member, owner]) => ({ group, member, owner }));
    for (const listener of this.listeners) {
      try {
        listener(gone.node, claims);
      } catch (error) {
        this.log.error({ err: error }, 'node-gone listener failed');
      }
    }
  }

  /** After start and after every outage: liveness first, then everything this node still holds. */
  private resync(): Promise<void> {
    this.syncing ??= this.doResync().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async doResync(): Promise<void> {
    try {
      if (!this.clearedPreviousIncarnation) {
        // A restarted process may reuse its NODE_ID: whatever the previous one registered is gone now.
        await this.reap(this.nodeId, 'restarted');
        this.clearedPreviousIncarnation = true;
      }
      await this.beat();
      for (const [id, held] of this.held) {
        if (held.user !== undefined) {
          // A shared membership is never taken over: written back as it is (its set with it).
          await SHARE.run(this.redis.command, [this.key('claims', held.group), this.holdsKey(this.nodeId), this.sharedKey(held.group, held.user)], [held.member, held.owner, `c${SEP}${id}`, held.user]);
          continue;
        }
        const holder = await CLAIM.run(this.redis.command, [this.key('claims', held.group), this.holdsKey(this.nodeId)], [
          held.member,
          held.owner,
          this.prefix,
          `c${SEP}${id}`,
        ]);
        if (typeof holder === 'string') {
          this.held.delete(id);
          this.log.warn({ event: 'claim_lost', group: held.group }, 'a claim was taken over while Redis was unreachable');
          held.onLost?.();
        }
      }
      for (const [id, claim] of this.unreleased) {
        if (claim.user !== undefined) {
          await UNSHARE.run(this.redis.command, [this.key('claims', claim.group), this.holdsKey(this.nodeId), this.sharedKey(claim.group, claim.user)], [claim.member, claim.owner, `c${SEP}${id}`, claim.user]);
          this.unreleased.delete(id);
          continue;
        }
        await RELEASE.run(this.redis.command, [this.key('claims', claim.group), this.holdsKey(this.nodeId)], [claim.member, claim.owner, `c${SEP}${id}`]);
        this.unreleased.delete(id);
      }
      // Presence holds as they are (a restarted Redis lost them; an intact one answers "nothing new").
      for (const [entry, held] of this.holding) {
        await HOLD.run(this.redis.command, [this.holdsKey(this.nodeId)], [this.prefix, held.channel, held.user, held.token, entry]);
        held.written = true;
      }
      for (const [entry, held] of this.unreleasedHolds) {
        // Taken again first: a Redis restarted empty lost the hold, and the user's leave must still be told
        // (an intact one already has it: "nothing new"). Released then as it would have been.
        await HOLD.run(this.redis.command, [this.holdsKey(this.nodeId)], [this.prefix, held.channel, held.user, held.token, entry]);
        await UNHOLD.run(this.redis.command, [this.holdsKey(this.nodeId)], [this.prefix, held.channel, held.user, held.token, entry, this.graceMs]);
        this.unreleasedHolds.delete(entry);
      }
      // Every count, not only the ones whose writes failed: a restarted Redis may have lost them all.
      for (const user of new Set([...this.slots.users(), ...this.unsynced])) {
        await SET_SLOTS.run(this.redis.command, [this.key('conns', user), this.holdsKey(this.nodeId)], [
          this.nodeId,
          this.slots.get(user),
          `u${SEP}${user}`,
        ]);
        this.unsynced.delete(user);
      }
    } catch (error) {
      this.log.warn({ err: (error as Error).message }, 'presence resync failed; retried when Redis is ready again');
      return;
    }
    for (const listener of this.resynced) listener();
  }

  onResync(listener: () => void): void {
    this.resynced.add(listener);
  }
}
