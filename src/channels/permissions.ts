import { Injectable } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import { NamespaceRegistry, type NamespaceConfig } from './namespaces';

/** Why a subscription is refused; path endpoints answer it as an HTTP refusal, `/ws` as an error frame. */
export interface ChannelRefusal {
  status: 400 | 403 | 503;
  code: 'unknown_channel' | 'forbidden_role' | 'forbidden_channel' | 'proxy_unavailable';
  message: string;
}

/** Whether a `channels` claim entry admits a channel: the exact name, or a prefix ending in `*`. */
export function claimAdmits(claims: readonly string[] | undefined, channel: string): boolean {
  if (!claims) return false;
  for (const claim of claims) {
    if (claim.endsWith('*') ? channel.startsWith(claim.slice(0, -1)) : claim === channel) return true;
  }
  return false;
}

/**
 * Who may subscribe to which channel, decided by its namespace (SPEC v3): the roles, then the mode (`any`,
 * `claim`: the token's `channels` claim names it, `proxy`: the backend decides), and `user:<sub>` for `<sub>`
 * only whatever the file says. Permission comes before occupancy: callers check it before taking a seat.
 */
@Injectable()
export class ChannelPermissions {
  constructor(private readonly namespaces: NamespaceRegistry) {}

  /** Undefined when `user` may subscribe to `channel`; otherwise the refusal. */
  check(user: Principal, channel: string): ChannelRefusal | undefined {
    const parsed = this.namespaces.parse(channel);
    if ('problem' in parsed) return { status: 400, code: 'unknown_channel', message: parsed.problem };
    return this.checkIn(user, parsed.namespace, channel, parsed.name);
  }

  private checkIn(user: Principal, ns: NamespaceConfig, channel: string, name: string): ChannelRefusal | undefined {
    const { roles, mode } = ns.subscribe;
    if (roles.length > 0 && !roles.includes(user.role)) {
      return { status: 403, code: 'forbidden_role', message: `role "${user.role}" may not subscribe to ${ns.name} channels (allowed: ${roles.join(', ')})` };
    }
    if (ns.name === 'user' && name !== user.sub) {
      return { status: 403, code: 'forbidden_channel', message: 'a personal channel is open to its own user only (user:<your sub>)' };
    }
    if (mode === 'claim' && !claimAdmits(user.channels, channel)) {
      return {
        status: 403,
        code: 'forbidden_channel',
        message: `this token does not name this ${ns.name} channel: ${ns.name} channels need a "channels" claim listing them (e.g. ["${ns.name}:<name>"] or ["${ns.name}:<prefix>*"]); get a token issued for it`,
      };
    }
    if (mode === 'proxy') {
      // Asked of the backend (SUBSCRIBE_PROXY_URL); never admitted on a failure, so never without it.
      return { status: 503, code: 'proxy_unavailable', message: `${ns.name} channels are admitted by the subscribe proxy, which is not configured (SUBSCRIBE_PROXY_URL)` };
    }
    return undefined;
  }
}
