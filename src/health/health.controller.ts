import { Controller, Get, Header, HttpStatus, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import { BROKER, type Broker } from '../channels/broker';
import { ConnectionManager } from '../connection/connection-manager';

@Controller()
export class HealthController {
  constructor(
    private readonly connections: ConnectionManager,
    @Inject(BROKER) private readonly bus: Broker,
  ) {}

  /** Liveness: the process answers. */
  @Get('healthz')
  @Header('Cache-Control', 'no-store')
  health() {
    return { status: 'ok' };
  }

  /** Readiness: 503 while draining, or in cluster mode while Redis is unreachable. */
  @Get('readyz')
  @Header('Cache-Control', 'no-store')
  ready(@Res() res: Response): void {
    if (this.connections.draining) {
      res.status(HttpStatus.SERVICE_UNAVAILABLE).json({ status: 'draining' });
    } else if (!this.bus.isReady()) {
      res.status(HttpStatus.SERVICE_UNAVAILABLE).json({ status: 'redis_unavailable' });
    } else {
      res.json({ status: 'ready', mode: this.bus.mode, connections: this.connections.registry.size });
    }
  }
}
