import { Controller, Get, Header, HttpCode, Inject, NotFoundException, Post } from '@nestjs/common';
import { JwtService } from '@nestjs/jwt';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { clientBundle } from '../http/client-bundle';
import { Listeners } from '../http/listeners';
import { ADMIN_PAGE } from './admin-page';

/** How long a development admin token lasts. */
const DEV_TOKEN_TTL_S = 3600;

/**
 * The page may open a WebSocket to the public port, or to whatever address the operator types (a proxy): any
 * `ws:`/`wss:` origin. `http:`/`https:` let the SDK ask that address why an upgrade was refused (browsers hide
 * the status); a WebSocket to any host could carry as much, so they widen nothing.
 */
const CSP = "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss: http: https:; img-src 'self'; frame-ancestors 'none'";

/**
 * The admin console, `GET /admin` on the internal port, and the SDK it watches channels with over `/ws`
 * (`GET /admin/client.js`, the same bundle as the demo's, served here too because `/demo` is off in production).
 * The page learns the public port (`__PUBLIC_PORT__`, known once the listeners listen) for its default
 * WebSocket address. `POST /admin/dev-token` hands out an admin token, but only while the service runs on the
 * public development key and not in production: anyone can sign tokens with that key anyway, so the button
 * adds no power, only convenience.
 */
@Controller('admin')
export class AdminController {
  private readonly page: string;
  private readonly devTokens: boolean;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly jwt: JwtService,
    private readonly listeners: Listeners,
  ) {
    this.devTokens = config.jwt.usingDevKey && config.nodeEnv !== 'production';
    this.page = ADMIN_PAGE.replace('__DEV_TOKEN__', String(this.devTokens));
  }

  @Get()
  @Header('Content-Type', 'text/html; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  @Header('Content-Security-Policy', CSP)
  @Header('X-Frame-Options', 'DENY')
  show(): string {
    return this.page.replace('__PUBLIC_PORT__', String(this.listeners.publicPort));
  }

  @Get('client.js')
  @Header('Content-Type', 'text/javascript; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  client(): string {
    return clientBundle();
  }

  @Post('dev-token')
  @HttpCode(200)
  @Header('Cache-Control', 'no-store')
  devToken(): { token: string; expires_in: number } {
    if (!this.devTokens) throw new NotFoundException();
    return { token: this.jwt.sign({ sub: 'admin-console', role: 'admin' }, { expiresIn: DEV_TOKEN_TTL_S }), expires_in: DEV_TOKEN_TTL_S };
  }
}
