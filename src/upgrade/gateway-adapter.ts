import type { INestApplicationContext, Type } from '@nestjs/common';
import { WsAdapter } from '@nestjs/platform-ws';
import type { MessageMappingProperties } from '@nestjs/websockets';
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { BEARER_PROTOCOL, extractToken, parseProtocols } from '../auth/token-extractor';
import type { AppConfig } from '../config/config';
import type { Connection, FrameHandler, FrameHandlerEntry } from '../connection/connection';
import type { ConnectionManager } from '../connection/connection-manager';
import { TokenBucket } from '../connection/token-bucket';
import { GATEWAY_CLASS_OPTION, getGatewayMetadata, type GatewayMetadata } from './gateway-metadata';
import type { Logger } from '../logging/logger';
import type { Metrics } from '../metrics/metrics';
import { AddressLimiter, ClientAddress, limitKey } from './client-address';
import { offeredProtocols, parseTarget, validateHandshake } from './handshake';
import { RouteTable } from './route-table';
import type { UpgradeContext, UpgradeGuard } from './upgrade-guard';
import { Denials } from '../presence/denials';
import { bannedRefusal, revokedRefusal } from './guards/authenticate.guard';
import { refusalForClientError, UpgradeRefusal, writeRefusal, writeRefusalResponse } from './upgrade-refusal';
import { RECONNECT, SseSocket } from '../connection/sse-socket';
import { newSession, readStreamRequest, STREAM_ATTRIBUTE } from './stream-request';

/** SSE streams (docs/protocol.md "Without WebSocket: Server-Sent Events"): the `/ws` gateway's channels and checks over GET /sse. */
export const STREAM_PATH = '/sse';
/** The gateway whose guards and frames a stream has: `/ws`, one connection for many channels. */
const STREAM_GATEWAY_PATH = '/ws';
/** The `gateway` label and name of stream connections. */
export const STREAM_GATEWAY = 'sse';

interface GatewayRoute {
  wss: WebSocketServer;
  meta: GatewayMetadata;
  guards: UpgradeGuard[];
}

export interface GatewayAdapterDeps {
  config: AppConfig;
  metrics: Metrics;
  log: Logger;
  connections: ConnectionManager;
  /** The public listener whose upgrades this adapter owns (the internal one serves no WebSocket endpoint). */
  server: HttpServer;
  /** The bans and revocations in force on this node, looked at again as the connection is handed over. */
  denials: Denials;
  /**
   * Whether the channel layer can serve now (Redis reachable in cluster mode). A stream asked for while it cannot
   * is refused 503 before it starts: its welcome would wait for Redis with nothing to tell the client.
   */
  channelsReady?: () => boolean;
}

/** Refusal log lines: at most one per kind (gateway, status, error) per this long. */
const REFUSAL_LOG_EVERY_MS = 10_000;

/** Runs and forgets each release (a reservation is given back exactly once). */
function runAll(releases: (() => void)[]): void {
  for (const release of releases.splice(0)) release();
}

// Built outside handleUpgrade on purpose: a closure created there would keep the whole upgrade scope (the
// request, its URL, the context) alive for the life of the connection, about 3 KB of heap per socket.
function releaser(releases: (() => void)[]): () => void {
  return () => runAll(releases);
}

function releaseAfterFinishing(conn: Connection, releases: (() => void)[]): () => void {
  return () => void conn.finished().then(() => runAll(releases));
}

/**
 * Node's HTTP parser refused a request (malformed, headers too large, too slow): answered in the JSON form of
 * every refusal. Returns what was answered. The public port also counts it (it may have been an upgrade); the
 * internal port only answers.
 */
export function answerClientError(error: NodeJS.ErrnoException, socket: Duplex): UpgradeRefusal | undefined {
  socket.on('error', ignoreSocketError);
  const refusal = refusalForClientError(error.code);
  const response = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (!refusal || !socket.writable || response?.headersSent) {
    socket.destroy();
    return undefined;
  }
  writeRefusal(socket, refusal);
  return refusal;
}

/** A peer that closes while we verify its token must not crash anything. */
const ignoreSocketError = () => undefined;

/** Echo the `bearer` subprotocol when offered (browsers fail the handshake unless one is selected). */
function selectProtocol(protocols: Set<string>): string | false {
  for (const protocol of protocols) if (protocol.toLowerCase() === BEARER_PROTOCOL) return protocol;
  return false;
}

/**
 * Owns the HTTP `upgrade` event for every @RealtimeGateway: routes by path pattern, runs the gateway's guard
 * chain, and answers refusals with an HTTP status and a JSON body before any handshake. Accepted sockets are
 * handed to the ConnectionManager, and gateways receive its Connection objects instead of raw sockets.
 *
 * The stock WsAdapter matches exact paths only, destroys unknown-path sockets without a status, and
 * terminates clients with 1006 on shutdown; this replaces those parts.
 */
export class GatewayAdapter extends WsAdapter {
  private readonly routes = new RouteTable<GatewayRoute>();

  /** The WebSocket path patterns served, sorted (for answers that list them). */
  paths(): string[] {
    return this.routes.patterns();
  }
  /** Gateways that implement handleDisconnect; for the others Nest's per-socket disconnect hook is skipped. */
  private readonly disconnectAware = new Set<string>();
  private upgradeServer: HttpServer | undefined;
  /** MAX_UPGRADES_PER_SEC: a reconnect storm is shed with 503 before it costs a token verification. */
  private readonly admission: TokenBucket | undefined;
  /** MAX_UPGRADES_PER_IP_PER_SEC: one address's flood is refused first, so it never uses up the node's budget. */
  private readonly perAddress: AddressLimiter | undefined;
  private readonly addresses: ClientAddress;
  /** Refusals by kind: the cached counter child and the log rate limit (bounded: the labels are). */
  private readonly refusals = new Map<string, { counter: { inc(): void }; loggedAt: number; unlogged: number }>();
  /** ALLOWED_ORIGINS, for the CORS headers of answers to plain requests (browsers read them to learn why). */
  private readonly corsOrigins: ReadonlySet<string>;

  constructor(
    private readonly app: INestApplicationContext,
    private readonly deps: GatewayAdapterDeps,
  ) {
    super(app);
    const rate = deps.config.maxUpgradesPerSec;
    if (rate > 0) this.admission = new TokenBucket(rate, rate, Date.now());
    if (deps.config.maxUpgradesPerIpPerSec > 0) this.perAddress = new AddressLimiter(deps.config.maxUpgradesPerIpPerSec);
    this.addresses = new ClientAddress(deps.config.trustedProxies);
    this.corsOrigins = new Set(deps.config.allowedOrigins);
  }

  override create(port: number, options: Record<string, unknown> = {}): WebSocketServer {
    const gatewayClass = options[GATEWAY_CLASS_OPTION] as Type | undefined;
    if (!gatewayClass) throw new Error('WebSocket gateways must be declared with @RealtimeGateway');
    if (port !== 0) throw new Error('@RealtimeGateway gateways share the public port; set no port');
    const meta = getGatewayMetadata(gatewayClass);
    // closeTimeout is a ws >= 8.21 option that @types/ws does not list yet.
    const wss = new WebSocketServer({
      noServer: true,
      clientTracking: false, // the ConnectionManager's registry tracks sockets
      perMessageDeflate: false, // per-socket compression would defeat serialise-once broadcasts
      maxPayload: this.deps.config.maxMessageBytes,
      closeTimeout: 5000, // a peer that ignores our close frame is dropped after this
      handleProtocols: selectProtocol,
    } as ConstructorParameters<typeof WebSocketServer>[0]);
    wss.on('error', (error) => this.deps.log.error({ err: error, gateway: meta.name }, 'WebSocket server error'));
    const guards = meta.guards.map((guard) => this.app.get<UpgradeGuard>(guard, { strict: false }));
    if (typeof gatewayClass.prototype.handleDisconnect === 'function') this.disconnectAware.add(meta.name);
    this.routes.add(meta.path, { wss, meta, guards });
    this.deps.metrics.initGateway(meta.name);
    if (meta.path === STREAM_GATEWAY_PATH) this.deps.metrics.initGateway(STREAM_GATEWAY);
    this.listen(this.deps.server);
    return wss;
  }

  override bindMessageHandlers(conn: Connection, handlers: MessageMappingProperties[]): void {
    if (!handlers.length) return;
    // Nest's own list for this socket, kept as it is when every frame type is a string (always, with
    // @SubscribeMessage('<type>')).
    conn.handlers = handlers.every((h) => typeof h.message === 'string')
      ? (handlers as unknown as FrameHandlerEntry[])
      : handlers.filter((h) => typeof h.message === 'string').map((h) => ({ message: h.message as string, callback: h.callback as FrameHandler }));
  }

  override bindClientDisconnect(conn: Connection, callback: () => void): void {
    // Nest's callback only feeds an rxjs Subject that handleDisconnect subscribes to; without one it is a
    // closure per socket that nothing reads.
    if (this.disconnectAware.has(conn.gateway)) conn.onClose(callback);
  }

  /** Nest calls this per gateway server on shutdown: close sockets with 1012, not the stock 1006 terminate. */
  override async close(server: WebSocketServer): Promise<void> {
    await this.deps.connections.drain();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  override async dispose(): Promise<void> {
    this.upgradeServer?.off('upgrade', this.onUpgrade);
    this.upgradeServer = undefined;
    await super.dispose();
  }

  private listen(server: HttpServer): void {
    if (this.upgradeServer) return;
    this.upgradeServer = server;
    server.on('upgrade', this.onUpgrade);
  }

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    // An upgrade pipelined behind a request whose answer is still being written (keep-alive, `GET /healthz`
    // then the upgrade in one packet) waits for that answer: answering first would put the 101 ahead of it,
    // and the earlier answer would then be written into the WebSocket stream.
    const pending = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (pending && !pending.writableFinished) {
      const waiting = () => undefined; // a peer that leaves meanwhile must not crash anything
      socket.on('error', waiting);
      pending.once('finish', () => {
        socket.off('error', waiting);
        this.onUpgrade(req, socket, head);
      });
      pending.once('close', () => {
        if (!pending.writableFinished) socket.destroy();
      });
      return;
    }
    socket.on('error', ignoreSocketError);
    try {
      this.handleUpgrade(req, socket, head)?.catch((error) => this.unexpected(socket, error));
    } catch (error) {
      this.unexpected(socket, error);
    }
  };

  private unexpected(socket: Duplex, error: unknown): void {
    this.deps.log.error({ err: error }, 'unexpected error during an upgrade');
    writeRefusal(socket, new UpgradeRefusal(500, 'internal_error', 'unexpected server error'));
  }

  /**
   * Synchronous unless a guard returns a promise (the rest of the chain then runs in resumeUpgrade): most
   * upgrades have nothing to wait for, and an async function cost each of them a promise, a rejection handler
   * and a microtask turn.
   */
  private handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> | undefined {
    let gateway = 'unknown';
    const releases: (() => void)[] = [];
    let resumed = false;
    try {
      if (this.deps.connections.draining) throw this.drainingRefusal();
      this.limitAddress(req);
      const url = parseTarget(req.url);
      const match = this.routes.match(url.pathname);
      if (!match) throw new UpgradeRefusal(404, 'unknown_path', this.routes.explainMiss(url.pathname));
      const route = match.target;
      const { meta, guards } = route;
      gateway = meta.name;
      validateHandshake(req);
      const protocols = offeredProtocols(req.headers['sec-websocket-protocol']);
      if (this.admission && !this.admission.take(Date.now())) {
        throw new UpgradeRefusal(503, 'at_capacity', 'this node is taking too many new connections right now; retry shortly', {
          'Retry-After': '1',
        });
      }
      const ctx: UpgradeContext = {
        connectionId: this.deps.connections.newConnectionId(),
        req,
        gateway: meta.name,
        pattern: match.pattern,
        params: match.params,
        query: url.query,
        protocols,
        allowedRoles: meta.roles,
        channel: meta.channel?.(match.params),
        attributes: {},
        releases,
      };
      for (let i = 0; i < guards.length; i++) {
        const pending = guards[i].canUpgrade(ctx);
        if (pending) {
          resumed = true; // resumeUpgrade owns the releases from here
          return this.resumeUpgrade(pending, i + 1, req, socket, head, route, ctx);
        }
      }
      this.handOver(req, socket, head, route, ctx);
    } catch (error) {
      this.refuse(error, gateway, socket);
    } finally {
      // Empty once handed over: handOver took them for the connection.
      if (!resumed) runAll(releases);
    }
    return undefined;
  }

  private async resumeUpgrade(
    pending: Promise<void>,
    next: number,
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    route: GatewayRoute,
    ctx: UpgradeContext,
  ): Promise<void> {
    try {
      await pending;
      for (let i = next; i < route.guards.length; i++) {
        const later = route.guards[i].canUpgrade(ctx);
        if (later) await later;
      }
      this.handOver(req, socket, head, route, ctx);
    } catch (error) {
      this.refuse(error, route.meta.name, socket);
    } finally {
      runAll(ctx.releases);
    }
  }

  /** Every guard passed: the handshake, the connection, the gateway's handleConnection, the welcome. */
  private handOver(req: IncomingMessage, socket: Duplex, head: Buffer, route: GatewayRoute, ctx: UpgradeContext): void {
    const { wss, meta } = route;
    if (!ctx.user) throw new Error(`gateway ${meta.name} has no authentication guard`);
    if (socket.destroyed) return; // the client gave up while we checked
    if (this.deps.connections.draining) throw this.drainingRefusal();
    // Again here, not only at the door: a ban or revocation issued while a later guard waited (a Redis round trip,
    // the subscribe proxy) closed the matching registered connections, and this one is not registered yet. Map
    // lookups.
    if (this.deps.denials.revoked(ctx.user)) throw revokedRefusal();
    const until = this.deps.denials.bannedUntil(ctx.user.sub);
    if (until !== undefined) throw bannedRefusal(until);
    // From here the connection (or the abandoned socket) releases what the guards reserved, not the caller.
    const releases = ctx.releases.length ? ctx.releases.splice(0) : ctx.releases;
    // ws destroys the socket without calling back when the handshake cannot complete.
    const abandoned = releases.length ? releaser(releases) : undefined;
    if (abandoned) socket.once('close', abandoned);
    // The 101 response and the first frame (the welcome, queued by handleConnection inside emit) leave in
    // one write: a second small write per upgrade cost ~90 µs of server CPU on loopback (bench, upgrades).
    socket.cork();
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      socket.off('error', ignoreSocketError);
      if (abandoned) socket.off('close', abandoned);
      const conn = this.deps.connections.accept(ws, ctx, meta.frames);
      wss.emit('connection', conn, req);
      this.deps.connections.flushNow(conn);
      // Registered after the gateway's own close listeners (handleConnection runs inside emit), so their
      // `finishing` work is known when this runs.
      if (releases.length) conn.onClose(releaseAfterFinishing(conn, releases));
    });
    socket.uncork();
  }

  /** A refusal is answered (and counted, and logged); anything else is unexpected and rethrown. */
  private refuse(error: unknown, gateway: string, socket: Duplex): void {
    if (!(error instanceof UpgradeRefusal)) throw error;
    this.count(gateway, error);
    writeRefusal(socket, error);
  }

  /**
   * A request for a WebSocket path that is not an upgrade: a proxy that dropped the Upgrade header, or a
   * browser SDK asking why its upgrade failed (browsers hide a refused upgrade's status). GET and HEAD get
   * the answer the upgrade would have had from the checks that reserve nothing (path, origin, token, role),
   * or 426 `upgrade_required` when those pass or no token was sent; OPTIONS is the CORS preflight of that
   * request. False when the path is not a WebSocket path (the framework answers it).
   */
  handlePlainRequest(req: IncomingMessage, res: ServerResponse): boolean {
    const method = req.method;
    if (method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS') return false;
    let url: ReturnType<typeof parseTarget>;
    try {
      url = parseTarget(req.url);
    } catch {
      return false;
    }
    const match = this.routes.match(url.pathname);
    // A browser asking about a path that is not ours (a mistyped one) is told so in a form it can read: a
    // cross-origin preflight, then a GET with the token in Authorization, as the SDK sends them. Any other
    // request for an unknown path is the framework's.
    const asking = req.headers.origin !== undefined && (method === 'OPTIONS' ? req.headers['access-control-request-method'] !== undefined : req.headers.authorization !== undefined);
    if (!match && !asking) return false;
    const cors = this.corsHeaders(req);
    if (method === 'OPTIONS') {
      res.writeHead(204, { ...cors, 'Access-Control-Allow-Methods': 'GET', 'Access-Control-Allow-Headers': 'Authorization', 'Access-Control-Max-Age': '600' });
      res.end();
      return true;
    }
    if (!match) {
      const refusal = new UpgradeRefusal(404, 'unknown_path', this.routes.explainMiss(url.pathname));
      this.count('unknown', refusal);
      writeRefusalResponse(res, refusal, cors, method === 'HEAD');
      return true;
    }
    const { meta, guards } = match.target;
    const answer = (refusal: UpgradeRefusal) => {
      this.count(meta.name, refusal);
      writeRefusalResponse(res, refusal, cors, method === 'HEAD');
    };
    const ctx: UpgradeContext = {
      connectionId: '-',
      req,
      gateway: meta.name,
      pattern: match.pattern,
      params: match.params,
      query: url.query,
      protocols: parseProtocols(req.headers['sec-websocket-protocol']),
      allowedRoles: meta.roles,
      channel: meta.channel?.(match.params),
      attributes: {},
      releases: [],
    };
    const diagnose = async () => {
      if (this.deps.connections.draining) throw this.drainingRefusal();
      this.limitAddress(req);
      if (extractToken(req.headers, url.query, ctx.protocols).token === undefined) throw upgradeRequired(false);
      for (const guard of guards) {
        if (guard.reserves) break; // what follows would take a seat or a slot
        const pending = guard.canUpgrade(ctx);
        if (pending) await pending;
      }
      throw upgradeRequired(true);
    };
    diagnose().catch((error: unknown) => {
      if (error instanceof UpgradeRefusal) return answer(error);
      this.deps.log.error({ err: error }, 'unexpected error while answering a plain request for a WebSocket path');
      answer(new UpgradeRefusal(500, 'internal_error', 'unexpected server error'));
    });
    return true;
  }

  /**
   * `GET /sse`: the `/ws` gateway's door (draining, the address limit, the admission bucket, its guard chain, the
   * denials again at hand-over) on a plain request, then an event stream instead of a WebSocket. Refusals are the
   * upgrade's statuses and JSON bodies, counted under `gateway="sse"`. False when the path is not `/sse`.
   */
  handleStream(req: IncomingMessage, res: ServerResponse): boolean {
    let url: ReturnType<typeof parseTarget>;
    try {
      url = parseTarget(req.url);
    } catch {
      return false;
    }
    if (url.pathname !== STREAM_PATH) return false;
    const cors = this.corsHeaders(req);
    const method = req.method;
    if (method === 'OPTIONS') {
      res.writeHead(204, { ...cors, 'Access-Control-Allow-Methods': 'GET', 'Access-Control-Allow-Headers': 'Authorization, Last-Event-ID', 'Access-Control-Max-Age': '600' });
      res.end();
      return true;
    }
    const releases: (() => void)[] = [];
    let resumed = false;
    try {
      if (method !== 'GET') throw new UpgradeRefusal(405, 'method_not_allowed', 'open a stream with GET /sse; send frames with POST /sse/send', { Allow: 'GET, OPTIONS' });
      if (this.deps.connections.draining) {
        // Not a 503: an EventSource gives up for good on any status but 200. Told to reconnect, as the streams
        // this node is closing are, it comes back through the load balancer to another node.
        this.count(STREAM_GATEWAY, this.drainingRefusal());
        res.writeHead(200, { ...cors, 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' });
        res.end(RECONNECT);
        return true;
      }
      this.limitAddress(req);
      const match = this.routes.match(STREAM_GATEWAY_PATH);
      if (!match) throw new UpgradeRefusal(404, 'unknown_path', this.routes.explainMiss(url.pathname));
      if (this.deps.channelsReady && !this.deps.channelsReady()) {
        throw new UpgradeRefusal(503, 'unavailable', 'the channels are unreachable right now (Redis is down); retry shortly', { 'Retry-After': '2' });
      }
      const accept = req.headers.accept;
      if (accept !== undefined && !/text\/event-stream|text\/\*|\*\/\*/i.test(accept)) {
        throw new UpgradeRefusal(406, 'not_acceptable', 'this path answers with an event stream: send Accept: text/event-stream');
      }
      if (this.admission && !this.admission.take(Date.now())) {
        throw new UpgradeRefusal(503, 'at_capacity', 'this node is taking too many new connections right now; retry shortly', { 'Retry-After': '1' });
      }
      const route = match.target;
      const connectionId = this.deps.connections.newConnectionId();
      const stream = readStreamRequest(req, url.query, newSession(this.deps.config.nodeId, connectionId), this.deps.config.maxSubscriptionsPerConnection);
      const ctx: UpgradeContext = {
        connectionId,
        req,
        gateway: STREAM_GATEWAY,
        pattern: STREAM_PATH,
        params: {},
        query: url.query,
        protocols: [],
        allowedRoles: route.meta.roles,
        attributes: { [STREAM_ATTRIBUTE]: stream },
        releases,
      };
      for (let i = 0; i < route.guards.length; i++) {
        const pending = route.guards[i].canUpgrade(ctx);
        if (pending) {
          resumed = true;
          void this.resumeStream(pending, i + 1, res, route, ctx, cors);
          return true;
        }
      }
      this.openStream(res, route, ctx, cors);
    } catch (error) {
      this.refuseStream(error, res, cors);
    } finally {
      if (!resumed) runAll(releases);
    }
    return true;
  }

  private async resumeStream(pending: Promise<void>, next: number, res: ServerResponse, route: GatewayRoute, ctx: UpgradeContext, cors: Record<string, string>): Promise<void> {
    try {
      await pending;
      for (let i = next; i < route.guards.length; i++) {
        const later = route.guards[i].canUpgrade(ctx);
        if (later) await later;
      }
      this.openStream(res, route, ctx, cors);
    } catch (error) {
      this.refuseStream(error, res, cors);
    } finally {
      runAll(ctx.releases);
    }
  }

  /** Every guard passed: the response head, the connection, the gateway's handleConnection (the welcome). */
  private openStream(res: ServerResponse, route: GatewayRoute, ctx: UpgradeContext, cors: Record<string, string>): void {
    const { wss, meta } = route;
    if (!ctx.user) throw new Error(`gateway ${meta.name} has no authentication guard`);
    if (res.destroyed || res.socket?.destroyed) return; // the client gave up while we checked
    // Pipelined behind another request on its connection: node:http has not given it the socket yet.
    if (!res.socket) throw new UpgradeRefusal(400, 'pipelined_request', 'open a stream on a connection of its own, not pipelined behind another request');
    if (this.deps.connections.draining) throw this.drainingRefusal();
    if (this.deps.denials.revoked(ctx.user)) throw revokedRefusal();
    const until = this.deps.denials.bannedUntil(ctx.user.sub);
    if (until !== undefined) throw bannedRefusal(until);
    const releases = ctx.releases.length ? ctx.releases.splice(0) : ctx.releases;
    res.socket.setNoDelay(true);
    res.socket.setKeepAlive(true, 30_000);
    res.writeHead(200, {
      ...cors,
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache',
      'X-Accel-Buffering': 'no',
      // The connection ends with the stream (SseSocket): a client must not pool it for its next request.
      Connection: 'close',
    });
    // The head and the welcome in one write when the welcome is ready at once.
    const tcp = res.socket;
    tcp.cork();
    // From here the stream holds the TCP socket, not the request or the response (SseSocket.open).
    const socket = SseSocket.open(ctx.req, res);
    const conn = this.deps.connections.accept(socket, ctx, meta.frames);
    conn.wrapper = socket;
    wss.emit('connection', conn, ctx.req);
    this.deps.connections.flushNow(conn);
    tcp.uncork();
    if (releases.length) conn.onClose(releaseAfterFinishing(conn, releases));
  }

  private refuseStream(error: unknown, res: ServerResponse, cors: Record<string, string>): void {
    if (!(error instanceof UpgradeRefusal)) {
      this.deps.log.error({ err: error }, 'unexpected error while opening a stream');
      error = new UpgradeRefusal(500, 'internal_error', 'unexpected server error');
    }
    const refusal = error as UpgradeRefusal;
    this.count(STREAM_GATEWAY, refusal);
    if (res.headersSent || res.destroyed) return;
    writeRefusalResponse(res, refusal, cors);
  }

  /**
   * What Node's HTTP parser refuses before any handler runs (headers over 16 KB, a malformed request line, a
   * request that took too long): the same JSON form and counter as every other refusal, never Node's plain text.
   */
  readonly onClientError = (error: NodeJS.ErrnoException, socket: Duplex): void => {
    const refusal = answerClientError(error, socket);
    if (refusal) this.count('unknown', refusal);
  };

  /**
   * Counts a refusal, and logs it: the first of each kind (gateway, status, error) at once, then at most one
   * line per kind per 10 s carrying how many were not logged, so a flood of refused upgrades (thousands per
   * second from one address) cannot flood the logs too. The counter has every one.
   */
  private count(gateway: string, refusal: UpgradeRefusal): void {
    const key = `${gateway} ${refusal.status} ${refusal.error}`;
    let kind = this.refusals.get(key);
    if (!kind) {
      kind = { counter: this.deps.metrics.upgradesRejected.labels(gateway, String(refusal.status), refusal.error), loggedAt: -Infinity, unlogged: 0 };
      this.refusals.set(key, kind);
    }
    kind.counter.inc();
    const now = Date.now();
    if (now - kind.loggedAt < REFUSAL_LOG_EVERY_MS) {
      kind.unlogged++;
      return;
    }
    const suppressed = kind.unlogged;
    kind.loggedAt = now;
    kind.unlogged = 0;
    this.deps.log.info(
      { event: 'upgrade_refused', gateway, status: refusal.status, error: refusal.error, ...(suppressed ? { suppressed } : {}) },
      suppressed ? `upgrade refused (and ${suppressed} more like it since the last line)` : 'upgrade refused',
    );
  }

  /** MAX_UPGRADES_PER_IP_PER_SEC, before anything that costs more than a map lookup. */
  private limitAddress(req: IncomingMessage): void {
    if (!this.perAddress) return;
    const now = Date.now();
    if (this.perAddress.take(limitKey(this.addresses.of(req)), now)) return;
    throw new UpgradeRefusal(
      429,
      'too_many_upgrades',
      `too many connection attempts from this address (limit ${this.deps.config.maxUpgradesPerIpPerSec} per second); retry later`,
      { 'Retry-After': String(this.perAddress.retryAfter(now)) },
    );
  }

  /** CORS for answers to plain requests: any origin when ALLOWED_ORIGINS is empty, else the listed ones. */
  corsHeaders(req: IncomingMessage): Record<string, string> {
    const origin = req.headers.origin;
    if (origin === undefined) return {};
    const expose = { 'Access-Control-Expose-Headers': 'Retry-After, WWW-Authenticate', Vary: 'Origin' };
    if (this.corsOrigins.size === 0 || this.corsOrigins.has('*')) return { 'Access-Control-Allow-Origin': '*', ...expose };
    for (const allowed of this.corsOrigins) if (allowed === origin) return { 'Access-Control-Allow-Origin': allowed, ...expose };
    return { Vary: 'Origin' };
  }

  private drainingRefusal(): UpgradeRefusal {
    return new UpgradeRefusal(503, 'draining', 'this node is shutting down; reconnect (another node will answer)', {
      'Retry-After': '1',
    });
  }
}

function upgradeRequired(checked: boolean): UpgradeRefusal {
  return new UpgradeRefusal(
    426,
    'upgrade_required',
    checked
      ? 'the token, role and origin are accepted here, but this path only speaks WebSocket: connect with an Upgrade: websocket request'
      : 'this path only speaks WebSocket: connect with an Upgrade: websocket request (a proxy in between may have dropped the Upgrade header)',
    { Upgrade: 'websocket' },
  );
}
