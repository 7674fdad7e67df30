import { Inject, Injectable } from '@nestjs/common';
import { JwtVerifier } from '../auth/jwt-verifier';
import { BROKER, type Broker } from '../channels/broker';
import { ChannelHub } from '../channels/channel-hub';
import { ConnectionManager } from '../connection/connection-manager';

export interface HealthAnswer {
  status: number;
  body: Record<string, unknown>;
}

/**
 * Liveness and readiness, answered the same on both ports (the public one for load balancers, the internal one
 * for operators and probes that may only reach it).
 */
@Injectable()
export class Readiness {
  /** Other parts that must be in place before this node takes traffic (e.g. the server API's command channel). */
  private readonly gates: (() => boolean)[] = [];

  constructor(
    private readonly connections: ConnectionManager,
    @Inject(BROKER) private readonly bus: Broker,
    private readonly hub: ChannelHub,
    private readonly verifier: JwtVerifier,
  ) {}

  /** Holds readiness at 503 `starting` until `isReady` says true. */
  gate(isReady: () => boolean): void {
    this.gates.push(isReady);
  }

  /** Liveness: the process answers. */
  live(): HealthAnswer {
    return { status: 200, body: { status: 'ok' } };
  }

  /**
   * Readiness: 503 while draining, in cluster mode while Redis is unreachable or silent, and until the
   * channels every node serves (`alerts`) and the server API's command channel are subscribed and positioned
   * (`starting`), and until an identity
   * provider's keys are loaded (`keys_unavailable`: JWT_JWKS_URL / OIDC_ISSUER_URL).
   */
  ready(): HealthAnswer {
    if (this.connections.draining) return { status: 503, body: { status: 'draining' } };
    if (!this.bus.isReady()) return { status: 503, body: { status: 'redis_unavailable' } };
    if (!this.verifier.isReady()) return { status: 503, body: { status: 'keys_unavailable' } };
    if (!this.hub.isReady() || !this.gates.every((gate) => gate())) return { status: 503, body: { status: 'starting' } };
    return { status: 200, body: { status: 'ready', mode: this.bus.mode, connections: this.connections.registry.size } };
  }
}
