import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BROKER, type Broker } from '../channels/broker';
import { ChannelHub } from '../channels/channel-hub';
import { memberUser } from '../presence/presence';
import type { NamespaceConfig } from '../channels/namespaces';
import { channelKind, isObject } from '../channels/publication';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { CloseCode } from '../connection/close-codes';
import { ConnectionManager } from '../connection/connection-manager';
import { EVENTS_OUT, type EventsOut } from '../events/events-out';
import { Readiness } from '../health/readiness';
import { HttpError, JsonApi } from '../http/json-api';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';
import { Denials, type Revocation } from '../presence/denials';
import { PRESENCE, type Presence } from '../presence/presence';
import {
  ChannelParam,
  DEFAULT_REVOKE_TTL_S,
  DisconnectAccepted,
  DisconnectInput,
  HistoryAnswer,
  HistoryQuery,
  NodesAnswer,
  PresenceAnswer,
  PublishAccepted,
  PublishInput,
  RevokeAccepted,
  RevokeInput,
} from './schemas';

/**
 * Commands every node carries out (live only): `disconnect` closes a user's connections there; `revoke` records
 * a revocation and closes the connections opened with a token it matches.
 */
export const CONTROL_CHANNEL = 'control';
const ROLES = ['service', 'admin'] as const;
/** Channels per node in GET /api/nodes: its busiest by local members. */
const BUSIEST_CHANNELS = 10;

/** A counter's value summed over its label sets. */
async function total(counter: { get(): Promise<{ values: { value: number }[] }> }): Promise<number> {
  return (await counter.get()).values.reduce((sum, v) => sum + v.value, 0);
}
const VERSION = (JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;

interface DisconnectCommand {
  op: 'disconnect';
  user: string;
  reason?: string;
  until?: number;
}

interface RevokeCommand {
  op: 'revoke';
  user?: string;
  issued_before?: number;
  jti?: string;
  until: number;
}

/**
 * The server API (docs/server-api.md): publish on any channel, disconnect (and ban) a user, revoke tokens, a
 * channel's presence and history, the live nodes. Every operation is cluster-wide: publications and commands
 * travel on the bus, presence, bans and revocations are in presence storage. Routes sit on the shared JsonApi (auth, body, errors).
 */
@Injectable()
export class ServerApi implements OnModuleInit, OnApplicationBootstrap, OnModuleDestroy {
  private readonly started = Date.now();
  private unsubscribe: (() => void) | undefined;
  /** The command channel is subscribed: until then a disconnect sent by anyone would miss this node. */
  private listening = false;

  constructor(
    private readonly api: JsonApi,
    private readonly hub: ChannelHub,
    @Inject(BROKER) private readonly broker: Broker,
    @Inject(PRESENCE) private readonly presence: Presence,
    private readonly denials: Denials,
    private readonly connections: ConnectionManager,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(LOGGER) private readonly log: Logger,
    private readonly metrics: Metrics,
    @Inject(EVENTS_OUT) private readonly events: EventsOut,
    readiness: Readiness,
  ) {
    readiness.gate(() => this.listening);
  }

  onModuleInit(): void {
    this.presence.describeNode(async () => ({
      id: this.config.nodeId,
      version: VERSION,
      uptime_s: Math.floor((Date.now() - this.started) / 1000),
      // Every gateway, with 0 for those without connections (ws_connections_active has a series per gateway).
      connections: Object.fromEntries((await this.metrics.connectionsActive.get()).values.map((v) => [String(v.labels.gateway), v.value])),
      channels: this.connections.registry.busiestRooms(BUSIEST_CHANNELS),
      // Totals since start; a reader that samples them twice has the rates (the admin console does).
      messages_sent: await total(this.metrics.messagesSent),
      connections_opened: await total(this.metrics.connectionsTotal),
    }));

    this.api.add({
      method: 'POST',
      path: '/api/publish',
      operationId: 'publish',
      summary: 'Publish on a channel',
      description:
        'alerts and user:<sub> arrive as alert frames on alerts connections; chat:<room> and signaling:<id> as {"type":"publication",...} frames (signaling without an id: it keeps no history).',
      body: PublishInput,
      status: 202,
      response: PublishAccepted,
      idempotent: true,
      roles: ROLES,
      errors: [413, 415, 503],
      handle: async ({ body, idempotencyKey }) => {
        const ns = this.namespaceOf(body.channel);
        const bytes = Buffer.byteLength(JSON.stringify(body.data)); // `data` itself, as on /ws
        if (bytes > ns.maxMessageBytes) throw new HttpError(413, 'too_large', `messages on ${ns.name} channels are limited to ${ns.maxMessageBytes} bytes of JSON (got ${bytes})`);
        const publication = await this.hub.publish(body.channel, { data: body.data }, { idempotencyKey });
        return { status: 202, body: { ...(publication.id ? { id: publication.id } : {}), ts: publication.key ? publication.key.ms : Math.floor(publication.ts) } };
      },
    });

    this.api.add({
      method: 'POST',
      path: '/api/disconnect',
      operationId: 'disconnect',
      summary: 'Close every connection of a user, on every replica (close code 4003)',
      description: 'With ban_seconds, the user\'s upgrades are refused with 403 banned for that long, on every replica.',
      body: DisconnectInput,
      status: 202,
      response: DisconnectAccepted,
      roles: ROLES,
      errors: [413, 415, 503],
      handle: async ({ body, caller }) => {
        const until = body.ban_seconds === undefined ? undefined : Date.now() + body.ban_seconds * 1000;
        // The audit line: who asked, for whom, for how long (every node that closes sockets logs its own line).
        this.log.info({ event: 'disconnect_requested', by: caller.sub, role: caller.role, sub: body.user, ban_seconds: body.ban_seconds ?? 0 }, 'disconnect requested (server API)');
        // The ban first: a connection that the command closes must not get straight back in.
        if (until !== undefined) await this.denials.ban(body.user, until);
        const command: DisconnectCommand = { op: 'disconnect', user: body.user, ...(body.reason ? { reason: body.reason } : {}), ...(until ? { until } : {}) };
        await this.broker.publish(CONTROL_CHANNEL, command as unknown as Record<string, unknown>, { history: false });
        // Here only, once per request: every node closes sockets, but one event says it happened.
        if (this.events.wants('user.disconnected')) {
          this.events.emit('user.disconnected', { user: body.user, reason: body.reason ?? '', ban_seconds: body.ban_seconds ?? 0, by: caller.sub });
        }
        return { status: 202, body: { user: body.user, ...(until ? { banned_until: until } : {}) } };
      },
    });

    this.api.add({
      method: 'POST',
      path: '/api/revoke',
      operationId: 'revoke',
      summary: 'Revoke a user\'s tokens issued before a time, or one token by its jti, on every replica (close code 4001)',
      description:
        'Matching tokens are refused at the door with 401 token_revoked, and every live connection opened with one closes with 4001 "token revoked" within 1 s, on every replica, until ttl_s has passed. A user\'s revocation also covers that user\'s tokens without iat.',
      body: RevokeInput,
      status: 202,
      response: RevokeAccepted,
      roles: ROLES,
      errors: [413, 415, 503],
      handle: async ({ body, caller }) => {
        const until = Date.now() + (body.ttl_s ?? DEFAULT_REVOKE_TTL_S) * 1000;
        // Default: the current second included, so a token minted just before this request (same iat) is covered.
        const revocation: Revocation =
          body.jti !== undefined ? { jti: body.jti } : { user: body.user!, issuedBefore: body.issued_before ?? Math.floor(Date.now() / 1000) + 1 };
        const named = 'jti' in revocation ? { jti: revocation.jti } : { user: revocation.user, issued_before: revocation.issuedBefore };
        // The audit line: who asked, what (never a token; a jti is an id, not a credential).
        this.log.info({ event: 'revoke_requested', by: caller.sub, role: caller.role, ...named, ttl_s: body.ttl_s ?? DEFAULT_REVOKE_TTL_S }, 'tokens revoked (server API)');
        // Stored first: a replica that misses the command (or starts later) reads it within DENIAL_REFRESH_MS.
        await this.denials.revoke(revocation, until);
        const command: RevokeCommand = { op: 'revoke', ...named, until };
        await this.broker.publish(CONTROL_CHANNEL, command as unknown as Record<string, unknown>, { history: false });
        if (this.events.wants('token.revoked')) this.events.emit('token.revoked', { ...named, by: caller.sub });
        return { status: 202, body: { ...named, revoked_until: until } };
      },
    });

    this.api.add({
      method: 'GET',
      path: '/api/channels/:channel/presence',
      operationId: 'presence',
      summary: 'Who is in a chat room or a consultation, on every replica',
      params: ChannelParam,
      status: 200,
      response: PresenceAnswer,
      roles: ROLES,
      errors: [503],
      handle: async ({ params }) => {
        const ns = this.namespaceOf(params.channel);
        if (!ns.presence) throw new HttpError(400, 'bad_request', `channel: ${ns.name} channels keep no presence (namespaces with presence: ${this.hub.namespaces.all().filter((n) => n.presence).map((n) => n.name).join(', ') || 'none'})`);
        const members = await this.presence.members(params.channel);
        // One entry per user and node: a path member is one connection, each /ws subscriber another.
        const byUserNode = new Map<string, { user: string; node: string; connections: number }>();
        for (const [member, holder] of members) {
          const user = memberUser(member);
          const node = holder.slice(0, holder.lastIndexOf('|'));
          const entry = byUserNode.get(`${user}\u0000${node}`);
          if (entry) entry.connections++;
          else byUserNode.set(`${user}\u0000${node}`, { user, node, connections: 1 });
        }
        return {
          status: 200,
          body: { members: [...byUserNode.values()].sort((a, b) => a.user.localeCompare(b.user) || a.node.localeCompare(b.node)) },
        };
      },
    });

    this.api.add({
      method: 'GET',
      path: '/api/channels/:channel/history',
      operationId: 'history',
      summary: 'A channel\'s kept messages, oldest first',
      description: 'Page through with since=<the last id of the previous page>. recovered is false when messages after since were lost (trimmed, or another epoch).',
      params: ChannelParam,
      query: HistoryQuery,
      status: 200,
      response: HistoryAnswer,
      roles: ROLES,
      errors: [503],
      handle: async ({ params, query }) => {
        const ns = this.namespaceOf(params.channel);
        if (!this.hub.keepsHistory(params.channel)) throw new HttpError(400, 'bad_request', `channel: ${ns.name} channels keep no history`);
        // Without `since`: from the start of the current history, so `recovered` says whether anything of it was
        // trimmed (the epoch is read first: from the start of *this* history, `0-0` is a proven position).
        const epoch = query.since === undefined ? (await this.broker.history(params.channel)).epoch : query.epoch;
        const page = await this.broker.history(params.channel, { id: query.since ?? '0-0', ...(epoch ? { epoch } : {}) }, query.limit);
        const messages = page.publications.map((p) => ({ id: p.id!, ts: p.key ? p.key.ms : Math.floor(p.ts), data: isObject(p.data.data) && Object.keys(p.data).length === 1 ? p.data.data : p.data }));
        return { status: 200, body: { epoch: page.epoch, messages, recovered: page.recovered } };
      },
    });

    this.api.add({
      method: 'GET',
      path: '/api/nodes',
      operationId: 'nodes',
      summary: 'Every live replica: version, uptime and connections per gateway',
      status: 200,
      response: NodesAnswer,
      roles: ROLES,
      errors: [503],
      handle: async () => ({ status: 200, body: { nodes: await this.presence.nodes() } }),
    });
  }

  onApplicationBootstrap(): void {
    // A revocation learned here (its command, or the periodic read for a node that missed it) closes what it
    // matches: one pass over this node's connections, a Map lookup or two each.
    this.denials.onRevoked(() => this.closeRevoked());
    const subscription = this.broker.subscribe(CONTROL_CHANNEL, (publication) => this.carryOut(publication.data), { history: false });
    this.unsubscribe = subscription;
    void subscription.ready.then(() => (this.listening = true));
  }

  onModuleDestroy(): void {
    this.unsubscribe?.();
  }

  private carryOut(data: Record<string, unknown>): void {
    if (data.op === 'revoke') return this.carryOutRevoke(data);
    if (data.op !== 'disconnect' || typeof data.user !== 'string') return;
    const command = data as unknown as DisconnectCommand;
    if (typeof command.until === 'number') this.denials.rememberBan(command.user, command.until);
    const reason = typeof command.reason === 'string' ? `disconnected: ${command.reason}` : 'disconnected';
    const targets = [...this.connections.registry.ofUser(command.user)];
    for (const conn of targets) conn.close(CloseCode.DISCONNECTED, reason);
    if (targets.length) this.log.info({ event: 'disconnected_by_api', sub: command.user, closed: targets.length, banned: command.until !== undefined }, 'closed a user\'s connections (server API)');
  }

  private carryOutRevoke(data: Record<string, unknown>): void {
    if (typeof data.until !== 'number') return;
    if (typeof data.jti === 'string') this.denials.rememberRevocation({ jti: data.jti }, data.until);
    else if (typeof data.user === 'string' && typeof data.issued_before === 'number') {
      this.denials.rememberRevocation({ user: data.user, issuedBefore: data.issued_before }, data.until);
    }
  }

  /** Closes every connection of this node opened with a token now revoked (4001, as an expired token). */
  private closeRevoked(): void {
    let closed = 0;
    for (const conn of this.connections.registry.all()) {
      if (!conn.isOpen || !this.denials.revoked(conn.user)) continue;
      conn.close(CloseCode.TOKEN_REVOKED, 'token revoked');
      closed++;
    }
    if (closed) this.log.info({ event: 'closed_revoked', closed }, 'closed connections opened with a revoked token');
  }

  /** The channel's namespace, or 400 unknown_channel naming the namespaces there are (docs/server-api.md). */
  private namespaceOf(channel: string): NamespaceConfig {
    const parsed = this.hub.namespaces.parse(channel);
    if ('problem' in parsed) throw new HttpError(400, 'unknown_channel', `channel: ${parsed.problem}`);
    return parsed.namespace;
  }
}
