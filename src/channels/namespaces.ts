import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/config';
import type { NamespaceConfig } from '../config/namespaces';
import { subProblem } from '../auth/principal';

export type { NamespaceConfig, SubscribeMode } from '../config/namespaces';

/** Room, consultation and other channel names (docs/protocol.md: `[A-Za-z0-9_.-]{1,64}`, not `.` or `..`). */
export const CHANNEL_NAME = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,64}$/;

/** How a namespace's channels are written, for people: `alerts`, `user:<sub>`, `chat:<name>`. */
export function channelForm(ns: NamespaceConfig): string {
  return ns.single ? ns.name : ns.name === 'user' ? 'user:<sub>' : `${ns.name}:<name>`;
}

/** What a channel name is, or why it is not one. */
export type ParsedChannel = { namespace: NamespaceConfig; name: string } | { problem: string };

/**
 * The one place that knows which channel families exist (docs/namespaces.md): the built-in
 * namespaces and those of CHANNELS_FILE. Everything that needs a channel's history size and TTL, its presence
 * and join/leave, who may subscribe and who may publish asks here, in both modes; no other code lists them.
 */
@Injectable()
export class NamespaceRegistry {
  private readonly byName = new Map<string, NamespaceConfig>();

  constructor(@Inject(APP_CONFIG) config: Pick<AppConfig, 'namespaces'>) {
    for (const ns of config.namespaces) this.byName.set(ns.name, ns);
  }

  /** Every namespace, built-in and configured, in declaration order. */
  all(): NamespaceConfig[] {
    return [...this.byName.values()];
  }

  /** The namespace of a channel (`chat:lobby` → chat), or undefined for a channel of no namespace. */
  of(channel: string): NamespaceConfig | undefined {
    const colon = channel.indexOf(':');
    return this.byName.get(colon === -1 ? channel : channel.slice(0, colon));
  }

  /** Like of(), for channels already validated: a missing namespace is a bug. */
  require(channel: string): NamespaceConfig {
    const ns = this.of(channel);
    if (!ns) throw new Error(`channel "${channel.slice(0, 80)}" belongs to no namespace`);
    return ns;
  }

  /**
   * Validates a channel a client or a service names. The problem text names the namespaces (never echoes the
   * input beyond its namespace), so a typo is fixed in one go.
   */
  parse(channel: unknown): ParsedChannel {
    if (typeof channel !== 'string' || channel.length === 0) return { problem: 'channel must be a non-empty string such as chat:lobby' };
    const colon = channel.indexOf(':');
    const prefix = colon === -1 ? channel : channel.slice(0, colon);
    const namespace = this.byName.get(prefix);
    if (!namespace) return { problem: `no namespace "${prefix.slice(0, 32)}" (known: ${this.describe()})` };
    if (namespace.single) return colon === -1 ? { namespace, name: '' } : { problem: `${namespace.name} is one channel; subscribe to "${namespace.name}"` };
    const name = colon === -1 ? '' : channel.slice(colon + 1);
    const valid = namespace.name === 'user' ? subProblem(name) === undefined : CHANNEL_NAME.test(name);
    if (!valid) {
      return {
        problem:
          namespace.name === 'user'
            ? 'a personal channel is user:<sub> (a sub as the door admits it: 1-256 bytes, no control characters)'
            : `a ${namespace.name} channel is ${namespace.name}:<name>, the name 1-64 letters, digits, _ . or - (not . or ..)`,
      };
    }
    return { namespace, name };
  }

  /** `alerts, user:<sub>, chat:<name>, …` for messages. */
  describe(): string {
    const forms = this.all().map(channelForm);
    // An error frame stays short however many namespaces a file declares; the OpenAPI document lists them all.
    return forms.length <= 12 ? forms.join(', ') : `${forms.slice(0, 12).join(', ')} and ${forms.length - 12} more (x-namespaces in /api/openapi.json)`;
  }
}
