import type { Type } from '@nestjs/common';
import { RouteTable } from './route-table';
import { getGatewayMetadata, hasGatewayMetadata, type GatewayMetadata } from './gateway-metadata';

/** Nest keeps a module's providers under this metadata key (@Module({ providers })). */
const PROVIDERS = 'providers';

/** The gateways the feature modules declare (each @RealtimeGateway among their providers), without booting Nest. */
export function gatewaysOf(modules: readonly Type[]): GatewayMetadata[] {
  const found: GatewayMetadata[] = [];
  for (const module of modules) {
    const providers: unknown[] = Reflect.getMetadata(PROVIDERS, module) ?? [];
    for (const provider of providers) {
      if (typeof provider === 'function' && hasGatewayMetadata(provider)) found.push(getGatewayMetadata(provider));
    }
  }
  return found;
}

/** The route table of those gateways: what the door matches and what a 404 lists. */
export function routeTableOf(modules: readonly Type[]): RouteTable<GatewayMetadata> {
  const table = new RouteTable<GatewayMetadata>();
  for (const meta of gatewaysOf(modules)) table.add(meta.path, meta);
  return table;
}
