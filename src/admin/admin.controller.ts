import { Controller, Get, Header, HttpCode, Inject, NotFoundException, Post } from '@nestjs/common';
import { JwtService } from '@nestjs/jwt';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { ADMIN_PAGE } from './admin-page';

/** How long a development admin token lasts. */
const DEV_TOKEN_TTL_S = 3600;

/**
 * The admin console, `GET /admin` on the internal port. `POST /admin/dev-token` hands out an admin token, but
 * only while the service runs on the public development key and not in production: anyone can sign tokens with
 * that key anyway, so the button adds no power, only convenience.
 */
@Controller('admin')
export class AdminController {
  private readonly page: string;
  private readonly devTokens: boolean;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly jwt: JwtService,
  ) {
    this.devTokens = config.jwt.usingDevKey && config.nodeEnv !== 'production';
    this.page = ADMIN_PAGE.replace('__DEV_TOKEN__', String(this.devTokens));
  }

  @Get()
  @Header('Content-Type', 'text/html; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  @Header('Content-Security-Policy', "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'")
  @Header('X-Frame-Options', 'DENY')
  show(): string {
    return this.page;
  }

  @Post('dev-token')
  @HttpCode(200)
  @Header('Cache-Control', 'no-store')
  devToken(): { token: string; expires_in: number } {
    if (!this.devTokens) throw new NotFoundException();
    return { token: this.jwt.sign({ sub: 'admin-console', role: 'admin' }, { expiresIn: DEV_TOKEN_TTL_S }), expires_in: DEV_TOKEN_TTL_S };
  }
}
