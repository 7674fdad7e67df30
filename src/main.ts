import { ListenError, startGateway } from './app';
import { BROKER, type Broker } from './channels/broker';
import { ConfigError, loadConfig } from './config/config';
import { createLogger, stdoutDestination } from './logging/logger';

async function main(): Promise<void> {
  let loaded: ReturnType<typeof loadConfig>;
  try {
    loaded = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    // One line per bad variable, all of them: a deploy is fixed in one round, not one variable per restart.
    for (const { variable, problem } of error.problems) process.stderr.write(`realtime-gateway: invalid configuration: ${variable}: ${problem}\n`);
    process.exit(1);
  }
  const { config, warnings } = loaded;
  const log = createLogger(config.logLevel, config.nodeId, stdoutDestination(config.nodeEnv));
  for (const warning of warnings) {
    log.warn({ event: 'config_warning' }, warning);
    process.stderr.write(`\n  WARNING: ${warning}\n\n`);
  }

  const gateway = await startGateway(config, log);
  const mode = gateway.app.get<Broker>(BROKER).mode;
  log.info(
    { event: 'listening', host: config.host, port: gateway.port, internal_host: config.internalHost, internal_port: gateway.internalPort, mode },
    `realtime-gateway listening on http://${config.host}:${gateway.port} (WebSocket endpoints, health), internal http://${config.internalHost}:${gateway.internalPort} (metrics, server API, /admin${config.demo ? ', /demo' : ''}) (${mode} mode)`,
  );
  log.flush(); // whoever waits for this line (a supervisor, a test) should not wait for the batch

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ event: 'shutdown_forced', signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ event: 'shutdown', signal, connections: gateway.connections.registry.size }, 'draining');
    // Readiness and new upgrades flip at once; Nest's close then waits for the same drain.
    void gateway.connections.drain();
    gateway.close().then(
      () => {
        log.info({ event: 'stopped' }, 'stopped');
        log.flush();
        process.exit(0);
      },
      (error) => {
        log.error({ err: error }, 'error during shutdown');
        log.flush();
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error) => {
  // A taken port says which variable to change, and nothing else is needed: no "failed to start" wrapper.
  if (error instanceof ListenError) process.stderr.write(`realtime-gateway: ${error.message}\n`);
  else process.stderr.write(`realtime-gateway: failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
