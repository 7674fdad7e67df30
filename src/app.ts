import 'reflect-metadata';
import type { DynamicModule, INestApplication, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppModule } from './app.module';
import type { AppConfig } from './config/config';
import { ConnectionManager } from './connection/connection-manager';
import { HttpExceptionFilter } from './http/http-exception.filter';
import { createBoundedServer, dispatch, GatewayHttpAdapter, jsonAnswer } from './http/http-server';
import { JsonApi } from './http/json-api';
import { Listeners } from './http/listeners';
import { openApiDocument, type NamespaceSummary } from './http/openapi';
import { channelForm, NamespaceRegistry } from './channels/namespaces';
import { Readiness } from './health/readiness';
import { BROKER, type Broker } from './channels/broker';
import { Denials } from './presence/denials';
import { createLogger, NestPinoLogger, type Logger } from './logging/logger';
import { Metrics } from './metrics/metrics';
import { answerClientError, GatewayAdapter } from './upgrade/gateway-adapter';
import { Streams } from './upgrade/streams';
import { PushEndpoints } from './push/push-endpoints';

export interface RunningGateway {
  app: INestApplication;
  /** The public port actually bound (PORT=0 picks a free one): WebSocket endpoints and health. */
  port: number;
  /** The internal port actually bound (INTERNAL_PORT=0 picks a free one): metrics, server API, /admin, /demo. */
  internalPort: number;
  log: Logger;
  connections: ConnectionManager;
  /** Drain (1012) and stop. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Extra feature modules (more gateways) served by the same core. */
  imports?: (Type | DynamicModule)[];
}

const VERSION = (JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;

/** The one answer of the public port to anything that is not a WebSocket path or health (the paths registered). */
const notPublic = (paths: string[]) => `no endpoint at this path: this port serves the WebSocket endpoints (${paths.join(', ')}), /sse and /sse/send (the same channels over Server-Sent Events), /push/vapid-public-key and /push/subscriptions (Web Push), /healthz and /readyz`;

/** The namespaces as the OpenAPI document lists them. */
function namespaceSummaries(registry: NamespaceRegistry): NamespaceSummary[] {
  return registry.all().map((ns) => ({
    name: ns.name,
    channel: channelForm(ns),
    history: ns.historySize,
    ttl_s: ns.historyTtlMs / 1000,
    presence: ns.presence,
    join_leave: ns.joinLeave,
    subscribe: { mode: ns.subscribe.mode, roles: [...ns.subscribe.roles] },
    publish: ns.publish,
    max_message_bytes: ns.maxMessageBytes,
  }));
}

/** A listener that could not open, said as what to change: main.ts prints the message as the one line about it. */
export class ListenError extends Error {}

function listen(server: HttpServer, port: number, host: string, variable: 'PORT' | 'INTERNAL_PORT', backlog?: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const failed = (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE') reject(new ListenError(`port ${port} (${variable}) is already in use on ${host}: stop what listens there, or set ${variable} to a free port`));
      else if (error.code === 'EACCES') reject(new ListenError(`port ${port} (${variable}) needs privileges this process does not have: set ${variable} to 1024 or above`));
      else if (error.code === 'EADDRNOTAVAIL') reject(new ListenError(`${host} (${variable === 'PORT' ? 'HOST' : 'INTERNAL_HOST'}) is not an address of this machine: set it to one, or 0.0.0.0 for all`));
      else reject(error);
    };
    server.once('error', failed);
    server.listen({ port, host, backlog }, () => {
      server.off('error', failed);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** The kernel caps a listener's accept queue at net.core.somaxconn without a word: say so (Linux only). */
function warnIfBacklogCapped(backlog: number, log: Logger): void {
  let somaxconn: number;
  try {
    somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim());
  } catch {
    return;
  }
  if (!(backlog > somaxconn)) return;
  log.warn(
    { event: 'listen_backlog_capped', listen_backlog: backlog, somaxconn },
    `LISTEN_BACKLOG ${backlog} is capped at ${somaxconn} by the kernel: raise net.core.somaxconn to at least ${backlog} (docs/deploy.md, "Limits to raise")`,
  );
}

/**
 * Builds and starts the service: the public listener (config.host:config.port) and the internal one
 * (config.internalHost:config.internalPort). Used by main.ts and by the tests alike.
 */
export async function startGateway(
  config: AppConfig,
  log: Logger = createLogger(config.logLevel, config.nodeId),
  options: StartOptions = {},
): Promise<RunningGateway> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config, log, options.imports), new GatewayHttpAdapter(), {
    logger: new NestPinoLogger(log),
    bodyParser: false,
  });
  app.useGlobalFilters(new HttpExceptionFilter(log));
  const connections = app.get(ConnectionManager);
  // The public listener is ours alone: upgrades, plain requests for WebSocket paths, health, and a JSON 404.
  const publicServer = createBoundedServer();
  const broker = app.get<Broker>(BROKER);
  const gateways = new GatewayAdapter(app, { config, log, connections, metrics: app.get(Metrics), server: publicServer, denials: app.get(Denials), channelsReady: () => broker.isReady() });
  app.useWebSocketAdapter(gateways);
  const internal: HttpServer = app.getHttpServer();
  const readiness = app.get(Readiness);
  const health = (req: IncomingMessage, res: ServerResponse): boolean => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const path = (req.url ?? '').split('?', 1)[0];
    const answer = path === '/healthz' ? readiness.live() : path === '/readyz' ? readiness.ready() : undefined;
    if (!answer) return false;
    const body = JSON.stringify(answer.body);
    res.writeHead(answer.status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  };
  const streams = app.get(Streams);
  const push = app.get(PushEndpoints);
  dispatch(
    publicServer,
    [
      (req, res) => gateways.handleStream(req, res),
      (req, res) => streams.handle(req, res, gateways.corsHeaders(req)),
      (req, res) => push.handle(req, res, gateways.corsHeaders(req)),
      (req, res) => gateways.handlePlainRequest(req, res),
      health,
    ],
    config.maxPublishBytes,
    (_req, res) => jsonAnswer(res, 404, 'unknown_path', notPublic(gateways.paths())),
  );
  publicServer.on('clientError', gateways.onClientError);

  // The internal listener: the server API and its document straight from the request event (the hot path),
  // everything else (health, metrics, /admin, /demo) through Nest.
  const api = app.get(JsonApi);
  let openapi: string | undefined;
  const serveOpenApi = (req: IncomingMessage, res: ServerResponse): boolean => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || (req.url ?? '').split('?', 1)[0] !== '/api/openapi.json') return false;
    openapi ??= JSON.stringify(openApiDocument(api.routes(), VERSION, namespaceSummaries(app.get(NamespaceRegistry))), null, 1);
    res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(openapi), 'Cache-Control': 'no-cache' });
    res.end(req.method === 'HEAD' ? undefined : openapi);
    return true;
  };
  dispatch(internal, [serveOpenApi, (req, res) => api.handles(req) && (api.handle(req, res), true)], config.maxPublishBytes);
  // Malformed requests on the internal port get the same JSON answers, but are no refused WebSocket upgrades.
  internal.on('clientError', answerClientError);
  internal.on('upgrade', (_req: IncomingMessage, socket: Duplex) => {
    // Names the port to use (the doctor reads it from here to suggest the right URL); 0 while it is not open yet.
    const publicPort = app.get(Listeners).publicPort;
    const body = JSON.stringify({ error: 'unknown_path', message: `WebSocket endpoints are on the public port (PORT${publicPort ? `, here ${publicPort}` : ''}), not the internal one` });
    socket.on('error', () => undefined);
    socket.end(`HTTP/1.1 404 Not Found\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });

  // Not app.listen(): Nest logs a failed listen itself, and main.ts says it again on stderr (EADDRINUSE twice).
  await app.init();
  let internalPort: number;
  let port: number;
  try {
    internalPort = await listen(internal, config.internalPort, config.internalHost, 'INTERNAL_PORT');
    // LISTEN_BACKLOG: the accept queue a reconnect storm fills between two turns of the event loop (the kernel
    // takes the smaller of it and net.core.somaxconn; Node's own default is 511).
    port = await listen(publicServer, config.port, config.host, 'PORT', config.listenBacklog);
    warnIfBacklogCapped(config.listenBacklog, log);
  } catch (error) {
    await app.close();
    throw error;
  }
  Object.assign(app.get(Listeners), { publicPort: port, internalPort });
  const running: RunningGateway = {
    app,
    port,
    internalPort,
    log,
    connections,
    // Sockets first, then the public listener, then Nest's hooks: the alert tail and presence keep working
    // while clients are drained.
    close: async () => {
      await connections.drain();
      publicServer.closeAllConnections();
      await new Promise<void>((resolve) => publicServer.close(() => resolve()));
      await app.close();
    },
  };
  return running;
}
