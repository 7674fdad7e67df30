import 'reflect-metadata';
import type { DynamicModule, INestApplication, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AlertsModule } from './alerts/alerts.module';
import { PublishEndpoint } from './alerts/publish-endpoint';
import { AppModule } from './app.module';
import type { AppConfig } from './config/config';
import { ConnectionManager } from './connection/connection-manager';
import { HttpExceptionFilter } from './http/http-exception.filter';
import { dispatch, GatewayHttpAdapter } from './http/http-server';
import { createLogger, NestPinoLogger, type Logger } from './logging/logger';
import { Metrics } from './metrics/metrics';
import { GatewayAdapter } from './upgrade/gateway-adapter';

export interface RunningGateway {
  app: INestApplication;
  /** The port actually bound (PORT=0 picks a free one). */
  port: number;
  log: Logger;
  connections: ConnectionManager;
  /** Drain (1012) and stop. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Extra feature modules (more gateways) served by the same core. */
  imports?: (Type | DynamicModule)[];
}

/** Builds and starts the service on config.host:config.port. Used by main.ts and by the tests alike. */
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
  const gateways = new GatewayAdapter(app, { config, log, connections, metrics: app.get(Metrics) });
  app.useWebSocketAdapter(gateways);
  const server: HttpServer = app.getHttpServer();
  const publish = app.select(AlertsModule).get(PublishEndpoint);
  // POST /api/alerts and plain requests for WebSocket paths go to their own handlers; everything else to
  // Express (and through it, Nest).
  dispatch(server, [(req, res) => publish.handles(req) && (publish.handle(req, res), true), (req, res) => gateways.handlePlainRequest(req, res)], config.maxPublishBytes);
  server.on('clientError', gateways.onClientError);
  await app.listen(config.port, config.host);
  const port = (app.getHttpServer().address() as AddressInfo).port;
  const running: RunningGateway = {
    app,
    port,
    log,
    connections,
    // Sockets first, then Nest's hooks: the alert tail and presence keep working while clients are drained.
    close: async () => {
      await connections.drain();
      await app.close();
    },
  };
  return running;
}
