import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { ownerOf, releaseOnce, sharedMember, UserCounts, type ClaimResult, type HoldResult, type NodeInfo, type Presence, type PresenceLeave, type ShareResult, type SlotResult } from './presence';

/** Embedded mode: one process is the whole deployment, so presence is a few maps (and no node ever dies). */
@Injectable()
export class LocalPresence implements Presence {
  private readonly slots = new UserCounts();
  private readonly groups = new Map<string, Map<string, string>>();
  /** Shared memberships per group and user (`<group>\0<user>` → member keys): who joins first, who leaves last. */
  private readonly shared = new Map<string, Set<string>>();

  /** Presence holds per channel and user (`<channel>\0<user>` → connection ids): the first and the last decide. */
  private readonly holds = new Map<string, Set<string>>();
  /** Per channel, the users holding it or within the grace of leaving it: the first occupies, the last vacates. */
  private readonly present = new Map<string, Set<string>>();
  /**
   * Leaves not yet due (`<channel>\0<user>` → due at, ms). One grace for every entry, so insertion order is due
   * order and sweep() stops at the first entry not due.
   */
  private readonly leaving = new Map<string, number>();

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  async hold(channel: string, user: string, connectionId: string): Promise<HoldResult> {
    const key = `${channel}\u0000${user}`;
    let holds = this.holds.get(key);
    if (!holds) this.holds.set(key, (holds = new Set()));
    holds.add(connectionId);
    let joined = false;
    let occupied = false;
    if (holds.size === 1 && !this.leaving.delete(key)) {
      let users = this.present.get(channel);
      if (!users) this.present.set(channel, (users = new Set()));
      joined = !users.has(user);
      users.add(user);
      occupied = joined && users.size === 1;
    }
    let released = false;
    return {
      joined,
      occupied,
      release: async () => {
        if (released) return undefined;
        released = true;
        const left = this.holds.get(key);
        if (!left?.delete(connectionId) || left.size > 0) return undefined;
        this.holds.delete(key);
        this.leaving.set(key, Date.now() + this.config.presenceGraceMs);
        return Math.max(this.config.presenceGraceMs, 1);
      },
    };
  }

  async sweep(max: number): Promise<PresenceLeave[]> {
    const now = Date.now();
    const leaves: PresenceLeave[] = [];
    for (const [key, due] of this.leaving) {
      if (due > now || leaves.length >= max) break;
      this.leaving.delete(key);
      const at = key.indexOf('\u0000');
      const channel = key.slice(0, at);
      const user = key.slice(at + 1);
      const users = this.present.get(channel);
      users?.delete(user);
      const vacated = !users?.size;
      if (vacated) this.present.delete(channel);
      leaves.push({ channel, user, vacated });
    }
    return leaves;
  }

  async acquireUserSlot(user: string, limit: number): Promise<SlotResult> {
    const open = this.slots.get(user);
    if (open >= limit) return { ok: false, open };
    this.slots.increment(user);
    return { ok: true, release: releaseOnce(() => this.slots.decrement(user)) };
  }

  async claim(group: string, member: string, connectionId: string): Promise<ClaimResult> {
    let members = this.groups.get(group);
    const holder = members?.get(member);
    if (holder !== undefined) return { ok: false, holder };
    if (!members) this.groups.set(group, (members = new Map()));
    const owner = ownerOf(this.config.nodeId, connectionId);
    members.set(member, owner);
    return {
      ok: true,
      release: () => {
        const current = this.groups.get(group);
        if (current?.get(member) !== owner) return;
        current.delete(member);
        if (current.size === 0) this.groups.delete(group);
      },
    };
  }

  async share(group: string, user: string, connectionId: string): Promise<ShareResult> {
    const member = sharedMember(user, connectionId);
    let members = this.groups.get(group);
    if (!members) this.groups.set(group, (members = new Map()));
    members.set(member, ownerOf(this.config.nodeId, connectionId));
    const key = `${group}\u0000${user}`;
    let connections = this.shared.get(key);
    if (!connections) this.shared.set(key, (connections = new Set()));
    connections.add(member);
    const first = connections.size === 1 && !members.has(user);
    let released = false;
    return {
      first,
      release: async () => {
        if (released) return false;
        released = true;
        const current = this.groups.get(group);
        current?.delete(member);
        if (current?.size === 0) this.groups.delete(group);
        const left = this.shared.get(key);
        left?.delete(member);
        if (left?.size === 0) this.shared.delete(key);
        return !left?.size && !current?.has(user);
      },
    };
  }

  async members(group: string): Promise<Map<string, string>> {
    return new Map(this.groups.get(group));
  }

  onNodeGone(): () => void {
    return () => undefined;
  }

  private describe: () => NodeInfo | Promise<NodeInfo> = () => ({ id: this.config.nodeId });

  onResync(): void {
    // One process: nothing to write back.
  }

  describeNode(describe: () => NodeInfo | Promise<NodeInfo>): void {
    this.describe = describe;
  }

  async nodes(): Promise<NodeInfo[]> {
    return [await this.describe()];
  }
}
