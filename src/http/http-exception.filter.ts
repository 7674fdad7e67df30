import { Catch, HttpException, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { Response } from 'express';
import type { Logger } from '../logging/logger';

const CODES: Record<number, string> = {
  400: 'bad_request',
  404: 'unknown_path',
  405: 'method_not_allowed',
};

/**
 * Express's own 404 text is `Cannot GET <the whole request URL>`: with `?token=` in it, that echoed the token.
 * No answer names the URL.
 */
const UNKNOWN_PATH =
  'no endpoint at this path: this (internal) port serves GET /healthz, /readyz, /metrics, /admin, /demo (unless off), the server API under /api/ (listed at /api/openapi.json); WebSocket clients connect to the public port';

/**
 * Framework routes on the internal port (/healthz, /readyz, /metrics, /admin, /demo, and unknown paths) answer errors as `{"error", "message"}`
 * like the rest of the API; unexpected errors are logged and answered 500 without details.
 */
@Catch()
export class HttpExceptionFilter implements ExceptionFilter {
  constructor(private readonly log: Logger) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    if (host.getType() !== 'http') throw exception;
    const res = host.switchToHttp().getResponse<Response>();
    if (res.headersSent) return;
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      const body = exception.getResponse();
      const raw = typeof body === 'string' ? body : (body as { message?: unknown }).message;
      const message = status === 404 ? UNKNOWN_PATH : Array.isArray(raw) ? raw.join('; ') : String(raw ?? exception.message);
      res.status(status).json({ error: CODES[status] ?? 'error', message });
      return;
    }
    this.log.error({ err: exception }, 'unhandled error in HTTP handler');
    res.status(500).json({ error: 'internal_error', message: 'unexpected server error' });
  }
}
