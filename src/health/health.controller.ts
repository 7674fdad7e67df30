import { Controller, Get, Header, Res } from '@nestjs/common';
import type { Response } from 'express';
import { Readiness, type HealthAnswer } from './readiness';

/** `/healthz` and `/readyz` on the internal port (the public port answers them from the same Readiness). */
@Controller()
export class HealthController {
  constructor(private readonly readiness: Readiness) {}

  @Get('healthz')
  @Header('Cache-Control', 'no-store')
  health(@Res() res: Response): void {
    send(res, this.readiness.live());
  }

  @Get('readyz')
  @Header('Cache-Control', 'no-store')
  ready(@Res() res: Response): void {
    send(res, this.readiness.ready());
  }
}

function send(res: Response, answer: HealthAnswer): void {
  res.status(answer.status).json(answer.body);
}
