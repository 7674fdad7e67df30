import { UseFilters } from '@nestjs/common';
import { WebSocketGateway } from '@nestjs/websockets';
import type { Connection } from '../connection/connection';
import { ConnectionExceptionFilter } from './connection-exception.filter';
import { defineGatewayOptions, GATEWAY_CLASS_OPTION, type RealtimeGatewayOptions } from './gateway-metadata';

/**
 * Nest calls handleConnection/handleDisconnect from an rxjs subscription, where a throw becomes an uncaught
 * exception that kills the whole process. Wrap them so an error closes only that connection (1011).
 */
function containLifecycleHook(prototype: Record<string, unknown>, name: 'handleConnection' | 'handleDisconnect') {
  const original = prototype[name];
  if (typeof original !== 'function') return;
  prototype[name] = function (this: unknown, conn: Connection, ...rest: unknown[]) {
    try {
      const result = original.call(this, conn, ...rest);
      if (result && typeof (result as Promise<unknown>).then === 'function') {
        (result as Promise<unknown>).then(undefined, (error) => conn.fail(error));
      }
      return result;
    } catch (error) {
      conn.fail(error);
    }
  };
}

/**
 * A WebSocket gateway on the shared HTTP port, served by GatewayAdapter: path patterns, upgrade-time guards
 * (see @UpgradeGuards), schema-checked frames, and handlers that receive a Connection (never the raw socket).
 */
export function RealtimeGateway(options: RealtimeGatewayOptions): ClassDecorator {
  return (target) => {
    defineGatewayOptions(target, options);
    containLifecycleHook(target.prototype, 'handleConnection');
    containLifecycleHook(target.prototype, 'handleDisconnect');
    UseFilters(new ConnectionExceptionFilter())(target);
    WebSocketGateway({ path: options.path, [GATEWAY_CLASS_OPTION]: target })(target);
  };
}
