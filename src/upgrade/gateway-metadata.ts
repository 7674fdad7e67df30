import type { Type } from '@nestjs/common';
import type { ZodType } from 'zod';
import type { UpgradeGuard } from './upgrade-guard';

export interface RealtimeGatewayOptions {
  /** Metric label and log field: a short lowercase name, unique among the registered gateways. */
  name: string;
  /** Path pattern; `:param` segments arrive in `connection.params`. */
  path: string;
  /** Schema per client frame type; a frame of a listed type is validated before its handler runs. */
  frames?: Record<string, ZodType>;
  /** The path parameter that must equal the token's role (signaling's `userType`); documents the rule for tools. */
  roleParam?: string;
  /**
   * The channel a path endpoint is a shorthand for (`/ws/chat/:room` → `chat:<room>`): ChannelGuard admits it
   * by that channel's namespace, as `/ws` does.
   */
  channel?: (params: Readonly<Record<string, string>>) => string;
}

export interface GatewayMetadata extends RealtimeGatewayOptions {
  guards: Type<UpgradeGuard>[];
  roles: readonly string[];
}

const GATEWAY_OPTIONS = Symbol('realtime:gateway');
const GATEWAY_GUARDS = Symbol('realtime:upgrade-guards');
const ALLOWED_ROLES = Symbol('realtime:allowed-roles');

/** Key under which the gateway class travels in Nest's gateway options to the adapter's create(). */
export const GATEWAY_CLASS_OPTION = 'realtimeGatewayClass';

export function defineGatewayOptions(target: object, options: RealtimeGatewayOptions): void {
  Reflect.defineMetadata(GATEWAY_OPTIONS, options, target);
}

/** Declares the chain of checks an upgrade request must pass, in order, before the handshake. */
export function UpgradeGuards(...guards: Type<UpgradeGuard>[]): ClassDecorator {
  return (target) => Reflect.defineMetadata(GATEWAY_GUARDS, guards, target);
}

/** Roles allowed on a gateway (read by RolesGuard). */
export function AllowRoles(...roles: string[]): ClassDecorator & MethodDecorator {
  return (target: object, _key?: string | symbol, descriptor?: PropertyDescriptor) => {
    Reflect.defineMetadata(ALLOWED_ROLES, roles, descriptor ? descriptor.value : target);
  };
}

export function getAllowedRoles(target: object): readonly string[] | undefined {
  return Reflect.getMetadata(ALLOWED_ROLES, target);
}

export function hasGatewayMetadata(target: object): boolean {
  return Reflect.hasMetadata(GATEWAY_OPTIONS, target);
}

export function getGatewayMetadata(target: object): GatewayMetadata {
  const options: RealtimeGatewayOptions | undefined = Reflect.getMetadata(GATEWAY_OPTIONS, target);
  if (!options) throw new Error(`${(target as { name?: string }).name} is not declared with @RealtimeGateway`);
  return {
    ...options,
    guards: Reflect.getMetadata(GATEWAY_GUARDS, target) ?? [],
    roles: getAllowedRoles(target) ?? [],
  };
}
