import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BROKER, BrokerUnavailableError, type Broker } from '../channels/broker';
import { APP_CONFIG, type AppConfig } from '../config/config';
import type { Connection } from '../connection/connection';
import { ConnectionManager } from '../connection/connection-manager';
import { SseSocket } from '../connection/sse-socket';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';
import { AuthenticateGuard } from './guards/authenticate.guard';
import { OriginGuard } from './guards/origin.guard';
import { parseTarget } from './handshake';
import { parseSession, STREAM_ATTRIBUTE, type StreamRequest } from './stream-request';
import type { UpgradeContext } from './upgrade-guard';
import { UpgradeRefusal, writeRefusalResponse } from './upgrade-refusal';
import { readLimited } from '../http/http-server';

export const SEND_PATH = '/sse/send';
/** Streams' `gateway` label (the adapter's STREAM_GATEWAY). */
const STREAM_GATEWAY_NAME = 'sse';
/** How long a send waits for the replica that holds the stream; silent that long, the stream is gone. */
const ROUTE_TIMEOUT_MS = 3000;
/** The envelope around the frame (`{"session":"…","frame":…}`) on top of MAX_MESSAGE_BYTES. */
const ENVELOPE_BYTES = 1024;
const JSON_TYPE = /^application\/json\s*(;\s*charset\s*=\s*"?utf-8"?\s*)?$/i;

/** The bus channel of one node's stream sends (live only, like `control`; no client can subscribe to it). */
function sendChannel(node: string): string {
  return `control:sse:${node}`;
}

interface SendCommand {
  op: 'send';
  rid: string;
  from: string;
  session: string;
  sub: string;
  frame: string;
}

interface SentReply {
  op: 'sent';
  rid: string;
  found: boolean;
}

function unknownSession(): UpgradeRefusal {
  return new UpgradeRefusal(404, 'unknown_session', 'no open stream with this session for this user (it ended, or it is not yours): open GET /sse again and use the session of its welcome');
}

/**
 * `POST /sse/send` (docs/protocol.md): a frame for an SSE stream, handled exactly as a WebSocket text frame of that stream's
 * connection (the same pipeline: rate limit, size, JSON, schema, handler), whichever replica the POST reaches.
 * The session names its node; a send for another node travels on the bus to it and waits for its answer, so
 * no sticky sessions are needed. Also writes every stream's comment heartbeat.
 */
@Injectable()
export class Streams implements OnModuleInit, OnModuleDestroy {
  private readonly waiting = new Map<string, (found: boolean) => void>();
  private unsubscribe: (() => void) | undefined;
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(BROKER) private readonly broker: Broker,
    private readonly connections: ConnectionManager,
    private readonly origin: OriginGuard,
    private readonly authenticate: AuthenticateGuard,
    @Inject(LOGGER) private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  onModuleInit(): void {
    const subscription = this.broker.subscribe(sendChannel(this.config.nodeId), (publication) => this.onBus(publication.data), { history: false });
    this.unsubscribe = subscription;
    this.heartbeat = setInterval(() => {
      for (const conn of this.connections.registry.inGateway('sse')) (conn.ws as SseSocket).comment();
    }, this.config.sseHeartbeatMs).unref();
  }

  onModuleDestroy(): void {
    this.unsubscribe?.();
    clearInterval(this.heartbeat);
    for (const resolve of this.waiting.values()) resolve(false);
  }

  /** The public port's handler: false when the path is not /sse/send. */
  handle(req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): boolean {
    let pathname: string;
    let query: URLSearchParams;
    try {
      ({ pathname, query } = parseTarget(req.url));
    } catch {
      return false;
    }
    if (pathname !== SEND_PATH) return false;
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...cors, 'Access-Control-Allow-Methods': 'POST', 'Access-Control-Allow-Headers': 'Authorization, Content-Type', 'Access-Control-Max-Age': '600' });
      res.end();
      return true;
    }
    this.send(req, query).then(
      () => {
        const body = '{"accepted":true}';
        res.writeHead(202, { ...cors, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
        res.end(body);
      },
      (error: unknown) => {
        if (!(error instanceof UpgradeRefusal)) {
          this.log.error({ err: error }, 'unexpected error in POST /sse/send');
          error = new UpgradeRefusal(500, 'internal_error', 'unexpected server error');
        }
        const refusal = error as UpgradeRefusal;
        // Refused sends are visible to operators (a run of unknown_session is someone guessing), never logged one by one.
        this.metrics.frameErrors.labels(STREAM_GATEWAY_NAME, refusal.error).inc();
        if (!res.headersSent) writeRefusalResponse(res, refusal, cors);
      },
    );
    return true;
  }

  private async send(req: IncomingMessage, query: URLSearchParams): Promise<void> {
    if (req.method !== 'POST') throw new UpgradeRefusal(405, 'method_not_allowed', 'send a frame with POST /sse/send', { Allow: 'POST, OPTIONS' });
    // The same door as the stream's: origin, token, revocation, ban.
    const ctx = { req, query, protocols: [], gateway: 'sse', attributes: {}, releases: [] } as unknown as UpgradeContext;
    this.origin.canUpgrade(ctx);
    await this.authenticate.canUpgrade(ctx);
    const sub = ctx.user!.sub;
    if (!JSON_TYPE.test(req.headers['content-type'] ?? '')) throw new UpgradeRefusal(415, 'unsupported_media_type', 'send the body as application/json (UTF-8): {"session":"<id>","frame":{...}}');
    const limit = this.config.maxMessageBytes + ENVELOPE_BYTES;
    const body = await readLimited(req, limit);
    if (body === undefined) {
      throw new UpgradeRefusal(413, 'too_large', `a request to /sse/send is at most ${limit} bytes: a frame of at most ${this.config.maxMessageBytes} bytes of JSON (MAX_MESSAGE_BYTES) and its envelope`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw new UpgradeRefusal(400, 'invalid_json', 'the body is not valid JSON; send {"session":"<id>","frame":{...}}');
    }
    const { session, frame } = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as { session?: unknown; frame?: unknown };
    if (typeof session !== 'string' || typeof frame !== 'object' || frame === null || Array.isArray(frame)) {
      throw new UpgradeRefusal(400, 'bad_request', 'send {"session":"<id from the welcome>","frame":{...a /ws frame...}}');
    }
    const text = JSON.stringify(frame);
    if (Buffer.byteLength(text) > this.config.maxMessageBytes) throw tooLarge(this.config.maxMessageBytes);
    const target = parseSession(session);
    if (!target) throw unknownSession();
    if (target.node === this.config.nodeId) {
      if (!this.deliver(session, target.connectionId, sub, text)) throw unknownSession();
      return;
    }
    // Embedded mode is one node: a session of another is no stream of this deployment.
    if (this.broker.mode === 'embedded') throw unknownSession();
    if (!(await this.route(target.node, { op: 'send', rid: '', from: this.config.nodeId, session, sub, frame: text }))) throw unknownSession();
  }

  /** Hands the frame to the stream's connection if it is here, open, and this user's. */
  private deliver(session: string, connectionId: string, sub: string, frame: string): boolean {
    const conn: Connection | undefined = this.connections.registry.get(connectionId);
    if (!conn || !conn.isOpen || conn.user.sub !== sub || (conn.attributes[STREAM_ATTRIBUTE] as StreamRequest | undefined)?.session !== session) return false;
    (conn.ws as SseSocket).receive(Buffer.from(frame, 'utf8'));
    return true;
  }

  private async route(node: string, command: SendCommand): Promise<boolean> {
    const rid = randomBytes(9).toString('base64url');
    let timer: NodeJS.Timeout | undefined;
    const answered = new Promise<boolean>((resolve) => {
      this.waiting.set(rid, resolve);
      timer = setTimeout(() => resolve(false), ROUTE_TIMEOUT_MS);
    });
    try {
      await this.broker.publish(sendChannel(node), { ...command, rid } as unknown as Record<string, unknown>, { history: false });
      return await answered;
    } catch (error) {
      if (error instanceof BrokerUnavailableError) throw new UpgradeRefusal(503, 'unavailable', 'the replica holding this stream cannot be reached right now (Redis is down); retry shortly', { 'Retry-After': '2' });
      throw error;
    } finally {
      clearTimeout(timer);
      this.waiting.delete(rid);
    }
  }

  private onBus(data: Record<string, unknown>): void {
    if (data.op === 'sent') {
      const reply = data as unknown as SentReply;
      this.waiting.get(reply.rid)?.(reply.found === true);
      return;
    }
    if (data.op !== 'send') return;
    const command = data as unknown as SendCommand;
    if (typeof command.session !== 'string' || typeof command.sub !== 'string' || typeof command.frame !== 'string' || typeof command.from !== 'string') return;
    const target = parseSession(command.session);
    const found = target !== undefined && target.node === this.config.nodeId && this.deliver(command.session, target.connectionId, command.sub, command.frame);
    const reply: SentReply = { op: 'sent', rid: command.rid, found };
    this.broker.publish(sendChannel(command.from), reply as unknown as Record<string, unknown>, { history: false }).catch((error: unknown) => {
      this.log.debug({ err: error }, 'could not answer a routed stream send');
    });
  }
}

function tooLarge(limit: number): UpgradeRefusal {
  return new UpgradeRefusal(413, 'too_large', `a frame is at most ${limit} bytes of JSON (MAX_MESSAGE_BYTES)`);
}
