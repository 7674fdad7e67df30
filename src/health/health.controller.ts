import { Controller, Get, Header, HttpStatus, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import { JwtVerifier } from '../auth/jwt-verifier';
import { BROKER, type Broker } from '../channels/broker';
import { ChannelHub } from '../channels/channel-hub';
import { ConnectionManager } from '../connection/connection-manager';

@Controller()
export class HealthController {
  constructor(
    private readonly connections: ConnectionManager,
    @Inject(BROKER) private readonly bus: Broker,
    private readonly hub: ChannelHub,
    private readonly verifier: JwtVerifier,
  ) {}

  /** Liveness: the process answers. */
  @Get('healthz')
  @Header('Cache-Control', 'no-store')
  health() {
    return { status: 'ok' };
  }

  /**
   * Readiness: 503 while draining, in cluster mode while Redis is unreachable or silent, and until the
   * channels every node serves (`alerts`) are subscribed and positioned (`starting`), and until an identity
   * provider's keys are loaded (`keys_unavailable`: JWT_JWKS_URL / OIDC_ISSUER_URL).
   */
  @Get('readyz')
  @Header('Cache-Control', 'no-store')
  ready(@Res() res: Response): void {
    if (this.connections.draining) {
      res.status(HttpStatus.SERVICE_UNAVAILABLE).json({ status: 'draining' });
    } else if (!this.bus.isReady()) {
      res.status(HttpStatus.SERVICE_UNAVAILABLE).json({ status: 'redis_unavailable' });
    } else if (!this.verifier.isReady()) {
      res.status(HttpStatus.SERVICE_UNAVAILABLE).json({ status: 'keys_unavailable' });
    } else if (!this.hub.isReady()) {
      res.status(HttpStatus.SERVICE_UNAVAILABLE).json({ status: 'starting' });
    } else {
      res.json({ status: 'ready', mode: this.bus.mode, connections: this.connections.registry.size });
    }
  }
}
