import { Injectable, Optional } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import { NamespaceRegistry, type NamespaceConfig } from './namespaces';
import { SubscribeProxy } from './subscribe-proxy';

/** Why a subscription is refused; path endpoints answer it as an HTTP refusal, `/ws` as an error frame. */
export interface ChannelRefusal {
  status: 400 | 403 | 503;
  code: 'unknown_channel' | 'forbidden_role' | 'forbidden_channel' | 'proxy_unavailable';
  message: string;
}

/**
 * Whether a `channels` claim entry admits a channel: the exact name, or a prefix ending in `*` that names its
 * namespace (`signaling:c-12*`, `chat:*`). A prefix without a namespace (`*`, `sig*`) admits nothing: one entry
 * must never open every claim-mode namespace at once.
 */
export function claimAdmits(claims: readonly string[] | undefined, channel: string): boolean {
  if (!claims) return false;
  for (const claim of claims) {
    if (!claim.endsWith('*')) {
      if (claim === channel) return true;
      continue;
    }
    const prefix = claim.slice(0, -1);
    const colon = prefix.indexOf(':');
    if (colon > 0 && channel.startsWith(prefix)) return true;
  }
  return false;
}

/**
 * A channel of a `proxy` namespace that passed every check the gateway makes itself (roles, `user:<sub>`): only
 * the backend can decide now. `ask()` makes the one round trip; callers make it at most once per subscribe.
 */
export class ProxyQuestion {
  constructor(
    private readonly proxy: SubscribeProxy | undefined,
    readonly user: Principal,
    readonly channel: string,
    readonly namespace: string,
  ) {}

  async ask(): Promise<ChannelRefusal | undefined> {
    const ns = this.namespace;
    if (!this.proxy?.configured) {
      // Start-up refuses a proxy namespace without SUBSCRIBE_PROXY_URL; this is for a ChannelPermissions made
      // without a SubscribeProxy (unit tests): never admitted without an answer.
      return { status: 503, code: 'proxy_unavailable', message: `${ns} channels are admitted by the subscribe proxy, which is not configured (SUBSCRIBE_PROXY_URL)` };
    }
    const verdict = await this.proxy.ask(this.user, this.channel, ns);
    switch (verdict.result) {
      case 'allowed':
        return undefined;
      case 'denied':
        return {
          status: 403,
          code: 'forbidden_channel',
          message: verdict.reason ? `not admitted to this ${ns} channel: ${verdict.reason}` : `not admitted to this ${ns} channel (the backend that admits ${ns} channels refused it)`,
        };
      default:
        // What failed stays in the gateway's log: the client learns only that retrying later may help.
        return { status: 503, code: 'proxy_unavailable', message: `${ns} channels are admitted by a backend that ${verdict.result === 'timeout' ? 'did not answer in time' : 'could not answer'}; retry in a few seconds` };
    }
  }
}

/** A refusal, undefined (admitted), or, for a `proxy` namespace, the answer to come. */
export type ChannelCheck = ChannelRefusal | undefined | Promise<ChannelRefusal | undefined>;

/**
 * Who may subscribe to which channel, decided by its namespace (docs/namespaces.md): the roles, then the mode (`any`,
 * `claim`: the token's `channels` claim names it, `proxy`: the backend decides), and `user:<sub>` for `<sub>`
 * only whatever the file says. Permission comes before occupancy: callers check it before taking a seat.
 * Synchronous except for `proxy` namespaces, and those are asked only after every local check passed: an
 * `any` or `claim` subscribe (every upgrade of the built-in set) never waits on a promise.
 */
@Injectable()
export class ChannelPermissions {
  constructor(
    private readonly namespaces: NamespaceRegistry,
    @Optional() private readonly proxy?: SubscribeProxy,
  ) {}

  /** Undefined when `user` may subscribe to `channel`; otherwise the refusal; a promise of either for `proxy`. */
  check(user: Principal, channel: string): ChannelCheck {
    const local = this.checkLocally(user, channel);
    return local instanceof ProxyQuestion ? local.ask() : local;
  }

  /**
   * The checks that need no round trip: a refusal, undefined (admitted), or the question for the backend (a
   * `proxy` namespace whose roles and `user:<sub>` rule pass). `/ws` uses it to answer what it can before asking.
   */
  checkLocally(user: Principal, channel: string): ChannelRefusal | undefined | ProxyQuestion {
    const parsed = this.namespaces.parse(channel);
    if ('problem' in parsed) return { status: 400, code: 'unknown_channel', message: parsed.problem };
    return this.checkIn(user, parsed.namespace, channel, parsed.name);
  }

  private checkIn(user: Principal, ns: NamespaceConfig, channel: string, name: string): ChannelRefusal | undefined | ProxyQuestion {
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
    // Last: a role that cannot pass, or another user's personal channel, costs the backend nothing.
    if (mode === 'proxy') return new ProxyQuestion(this.proxy, user, channel, ns.name);
    return undefined;
  }
}
