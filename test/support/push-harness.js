'use strict';
/**
 * The built service, started as dist/main.js starts it, with one addition for the push tests: the test process
 * can call PUSH_OUT.pushToUsers over this process's IPC channel, exactly as the alerts and receipts code calls it
 * in-process. A separate process because the gateway must trust the test push service's throwaway CA, and Node
 * reads NODE_EXTRA_CA_CERTS only at start. Message: {op: 'push', rid, users, payload} -> {op: 'pushed', rid}.
 */
const { startGateway } = require('../../dist/app');
const { loadConfig } = require('../../dist/config/config');
const { createLogger, stdoutDestination } = require('../../dist/logging/logger');
const { PUSH_OUT } = require('../../dist/push/push-out');
const { BROKER } = require('../../dist/channels/broker');

async function main() {
  const { config } = loadConfig();
  const log = createLogger(config.logLevel, config.nodeId, stdoutDestination(config.nodeEnv));
  const gateway = await startGateway(config, log);
  const push = gateway.app.get(PUSH_OUT);
  process.on('message', (message) => {
    if (message && message.op === 'push') {
      push.pushToUsers(message.users, message.payload);
      process.send({ op: 'pushed', rid: message.rid });
    }
  });
  process.on('disconnect', () => process.exit(0));
  const stop = () => gateway.close().then(() => process.exit(0), () => process.exit(1));
  process.on('SIGTERM', stop);
  const mode = gateway.app.get(BROKER).mode;
  log.info({ event: 'listening', port: gateway.port, internal_port: gateway.internalPort, mode }, 'push harness listening');
  log.flush();
}

main().catch((error) => {
  process.stderr.write(`push harness: ${error && error.stack}\n`);
  process.exit(1);
});
