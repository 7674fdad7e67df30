import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { ownerOf, releaseOnce, sharedMember, UserCounts, type ClaimResult, type NodeInfo, type Presence, type ShareResult, type SlotResult } from './presence';

/** Embedded mode: one process is the whole deployment, so presence is a few maps (and no node ever dies). */
@Injectable()
export class LocalPresence implements Presence {
  private readonly slots = new UserCounts();
  private readonly groups = new Map<string, Map<string, string>>();
  /** Shared memberships per group and user (`<group>\0<user>` → member keys): who joins first, who leaves last. */
  private readonly shared = new Map<string, Set<string>>();

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

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
